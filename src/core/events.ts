/**
 * Progress is a stream of typed events; reporters (human, NDJSON) render it. The core never prints.
 */
export type PieceworkEvent =
  | { type: 'split:start'; job: string; totalBytes?: number; inputs: number }
  | { type: 'split:progress'; bytes: number; chunks: number; totalBytes?: number }
  | { type: 'split:done'; job: string; chunks: number; bytes: number; ms: number }
  | { type: 'work:start'; job: string; worker: string; lanes: number; chunks: number; pending: number; clockOffsetMs: number }
  | { type: 'work:pass'; pending: number; done: number; failed: number; busy: number }
  | { type: 'work:waiting'; heldByOthers: number; splitIncomplete: boolean }
  | { type: 'chunk:claimed'; chunk: string; lane: number; attempt: number }
  | { type: 'chunk:skipped'; chunk: string; lane: number; reason: 'output-exists' | 'failed-for-good' }
  | { type: 'chunk:done'; chunk: string; lane: number; ms: number; output: string }
  | { type: 'chunk:failed'; chunk: string; lane: number; ms: number; attempt: number; final: boolean; reason: string }
  | { type: 'claim:stale'; chunk: string; lane: number }
  | { type: 'claim:lost'; chunk: string; lane: number; reason: string }
  | { type: 'work:stopping'; reason: string }
  | { type: 'work:done'; done: number; failed: number; ms: number }
  | { type: 'merge:progress'; outputs: number; totalOutputs: number; bytes: number }
  | { type: 'check:progress'; checked: number; total: number; bad: number }
  | { type: 'warning'; message: string };

export type EventSink = (event: PieceworkEvent) => void;

export const ignoreEvents: EventSink = () => {};
