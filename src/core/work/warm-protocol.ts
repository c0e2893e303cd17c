/**
 * The line protocol between a worker lane and its warm process (`work --warm`). Other people's
 * scripts speak it, so it is versioned and only ever grows by new request fields.
 *
 *   request (piecework → command's stdin), one JSON object per line, one per chunk:
 *     {"v":1,"in":"/job/chunks/000007","out":"/job/.tmp/…/000007","name":"000007",
 *      "files":["/data/a.png",…] | null,"attempt":1,"job":"/job"}
 *   reply (command's stdout → piecework), one line per request:
 *     ok                 the output is written to `out` (piecework commits it)
 *     fail <message>     this chunk failed; the message goes into its failure record
 *
 * Only a line that is exactly `ok`, exactly `fail`, or starts with `fail ` is a reply (a trailing
 * CR is ignored). Every other stdout line is a library's print, not an answer: it goes to the
 * chunk's log, so that a chatty import cannot break the protocol.
 */

export const WARM_PROTOCOL_VERSION = 1;

export interface WarmRequest {
  v: typeof WARM_PROTOCOL_VERSION;
  in: string;
  out: string;
  name: string;
  files: string[] | null;
  attempt: number;
  job: string;
}

export type WarmReply = { ok: true } | { ok: false; message: string };

export function encodeRequest(request: Omit<WarmRequest, 'v'>): string {
  // JSON escapes newlines inside strings, so a file name can never split a request in two.
  return JSON.stringify({ v: WARM_PROTOCOL_VERSION, ...request }) + '\n';
}

/** The reply a stdout line carries, or undefined when the line is just output. */
export function parseReply(line: string): WarmReply | undefined {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text === 'ok') return { ok: true };
  if (text === 'fail') return { ok: false, message: '' };
  if (text.startsWith('fail ')) return { ok: false, message: text.slice(5).trim() };
  return undefined;
}

/**
 * The longest stdout line kept whole. A reply is a few words (a `fail` message is cut here too); a
 * longer line is a program's print — results written to stdout by mistake, a progress bar without
 * newlines — and only its start is kept, for the log and the chunk's stderr tail. The rest is
 * counted and dropped, so the worker's memory and time stay bounded however much a program prints
 * without a newline.
 */
export const MAX_LINE_CHARS = 4096;

/**
 * Splits a text stream into lines; a partial last line waits for the rest. Each piece is searched
 * once, so a line arriving in many pieces costs its length, not its length times its pieces.
 */
export class LineSplitter {
  #partial: string[] = [];
  #partialLength = 0;
  #cut = 0;
  readonly #maxChars: number;

  constructor(maxChars = MAX_LINE_CHARS) {
    this.#maxChars = maxChars;
  }

  push(chunk: string): string[] {
    const lines: string[] = [];
    let from = 0;
    for (let newline = chunk.indexOf('\n'); newline !== -1; newline = chunk.indexOf('\n', from)) {
      this.#keep(chunk.slice(from, newline));
      lines.push(this.#take());
      from = newline + 1;
    }
    if (from < chunk.length) this.#keep(from === 0 ? chunk : chunk.slice(from));
    return lines;
  }

  /** What is left when the stream ends (a last line without a newline). */
  end(): string[] {
    return this.#partialLength > 0 || this.#cut > 0 ? [this.#take()] : [];
  }

  #keep(piece: string): void {
    const room = this.#maxChars - this.#partialLength;
    if (piece.length > room) {
      this.#cut += piece.length - room;
      piece = piece.slice(0, room);
    }
    if (piece.length === 0) return;
    this.#partial.push(piece);
    this.#partialLength += piece.length;
  }

  #take(): string {
    const line = this.#partial.length === 1 ? this.#partial[0]! : this.#partial.join('');
    const cut = this.#cut;
    this.#partial = [];
    this.#partialLength = 0;
    this.#cut = 0;
    return cut > 0 ? `${line}… (the line had ${line.length + cut} characters; the rest was cut)` : line;
  }
}
