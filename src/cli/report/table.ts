/** Plain-text tables and rates for reports; colour codes do not count towards a column's width. */

 
const ansi = /\u001b\[[0-9;]*m/g;

export function visibleWidth(text: string): number {
  return text.replace(ansi, '').length;
}

export function table(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleWidth(r[i] ?? ''))));
  const format = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell + ' '.repeat(widths[i]! - visibleWidth(cell))))
      .join('  ')
      .trimEnd();
  return [format(headers), ...rows.map(format)];
}

/** 12/s, 4.8/s, 36/min, 5/h — whichever unit keeps the number readable. */
export function formatRate(perSecond: number): string {
  if (perSecond <= 0) return '0/s';
  if (perSecond >= 10) return `${Math.round(perSecond)}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  const perMinute = perSecond * 60;
  if (perMinute >= 1) return `${perMinute < 10 ? perMinute.toFixed(1) : Math.round(perMinute)}/min`;
  return `${(perMinute * 60).toFixed(1)}/h`;
}
