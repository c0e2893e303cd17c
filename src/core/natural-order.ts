/**
 * The order of chunks is the natural order of their relative paths: folder by folder, runs of
 * digits compared as numbers. So `layer2/000010` comes before `layer10/000002`, and chunk 1000000
 * after 999999 even though the names have different widths.
 */

const digitRun = /(\d+)/;

export function compareNatural(a: string, b: string): number {
  if (a === b) return 0;
  const segmentsA = a.split('/');
  const segmentsB = b.split('/');
  const shared = Math.min(segmentsA.length, segmentsB.length);
  for (let i = 0; i < shared; i++) {
    const order = compareSegment(segmentsA[i]!, segmentsB[i]!);
    if (order !== 0) return order;
  }
  return segmentsA.length - segmentsB.length;
}

function compareSegment(a: string, b: string): number {
  if (a === b) return 0;
  // Fast path for the common case: two all-digit names.
  if (isDigits(a) && isDigits(b)) return compareDigits(a, b);
  const partsA = a.split(digitRun);
  const partsB = b.split(digitRun);
  const shared = Math.min(partsA.length, partsB.length);
  for (let i = 0; i < shared; i++) {
    const pa = partsA[i]!;
    const pb = partsB[i]!;
    // split() with a capture group alternates text (even) and digits (odd).
    const order = i % 2 === 1 ? compareDigits(pa, pb) : pa < pb ? -1 : pa > pb ? 1 : 0;
    if (order !== 0) return order;
  }
  return partsA.length - partsB.length;
}

function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

function compareDigits(a: string, b: string): number {
  const ta = a.replace(/^0+(?=\d)/, '');
  const tb = b.replace(/^0+(?=\d)/, '');
  if (ta.length !== tb.length) return ta.length - tb.length;
  if (ta !== tb) return ta < tb ? -1 : 1;
  // Same number, different padding: shorter padding first, so the order is total.
  return a.length - b.length;
}

export function sortNatural(names: string[]): string[] {
  return names.sort(compareNatural);
}
