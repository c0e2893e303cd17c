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

/** Splits a byte stream into lines; a partial last line waits for the rest. */
export class LineSplitter {
  #partial = '';

  push(chunk: string): string[] {
    const text = this.#partial + chunk;
    const lines = text.split('\n');
    this.#partial = lines.pop()!;
    return lines;
  }

  /** What is left when the stream ends (a last line without a newline). */
  end(): string[] {
    const rest = this.#partial;
    this.#partial = '';
    return rest ? [rest] : [];
  }
}
