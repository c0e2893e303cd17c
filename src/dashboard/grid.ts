/**
 * The chunk grid of the dashboard: at most MAX_CELLS cells, each standing for a run of
 * consecutive chunks in the job's order, with how many of them are in each state. The page
 * draws one canvas rectangle per cell — never one element per chunk — so a job of 1 000 000
 * chunks costs the browser what one of 4 000 does (DESIGN.md: dashboards die at scale).
 */
import { compareNatural } from '../core/natural-order.js';
import { orderChunks, type StatusScan } from '../core/status-scan.js';

export const MAX_CELLS = 4096;

export interface ChunkGrid {
  chunks: number;
  chunksPerCell: number;
  cells: number;
  /** Per cell: chunks with output, with a fresh claim, with a stale claim, failed for good, failed and waiting for a retry. */
  done: number[];
  running: number[];
  stale: number[];
  failed: number[];
  retrying: number[];
  /** Name of each cell's first chunk, for the page's tooltip. */
  firstChunk: string[];
}

export function chunkGrid(scan: StatusScan, maxCells = MAX_CELLS): ChunkGrid {
  const order = orderChunks(scan.chunks);
  const chunksPerCell = Math.max(1, Math.ceil(order.length / maxCells));
  const cells = Math.ceil(order.length / chunksPerCell);
  const counts = () => new Array<number>(cells).fill(0);
  const grid: ChunkGrid = { chunks: order.length, chunksPerCell, cells, done: counts(), running: counts(), stale: counts(), failed: counts(), retrying: counts(), firstChunk: [] };
  for (let i = 0; i < order.length; i++) {
    if (i % chunksPerCell === 0) grid.firstChunk.push(order[i]!);
    if (scan.done.has(order[i]!)) grid.done[Math.floor(i / chunksPerCell)]!++;
  }
  // The few chunks in other states are placed by binary search, not a million-entry index.
  const cellOf = (chunk: string) => {
    const index = indexIn(order, chunk);
    return index < 0 ? -1 : Math.floor(index / chunksPerCell);
  };
  const add = (list: number[], chunk: string) => {
    const cell = cellOf(chunk);
    if (cell >= 0) list[cell]!++;
  };
  const claimed = new Set<string>();
  for (const [list, claims] of [[grid.running, scan.running], [grid.stale, scan.stale]] as const) {
    for (const claim of claims) {
      claimed.add(claim.chunk);
      add(list, claim.chunk);
    }
  }
  for (const failure of scan.failed) if (!claimed.has(failure.chunk)) add(failure.final ? grid.failed : grid.retrying, failure.chunk);
  return grid;
}

/** Position of `chunk` in `order` (sorted by compareNatural), or -1. */
function indexIn(order: string[], chunk: string): number {
  let low = 0;
  let high = order.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const c = compareNatural(order[middle]!, chunk);
    if (c === 0) return middle;
    if (c < 0) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}
