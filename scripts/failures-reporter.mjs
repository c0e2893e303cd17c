// A node:test reporter that writes one JSON line per failed test (todo ones marked), so that
// run-tests.mjs can close the run with a short list of what failed and why: CI shows only the
// last lines of the output, and the spec reporter's own list ends with the known gaps (todo).
export default async function* failuresReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:fail') continue;
    const { name, file, todo, details } = event.data;
    const error = details?.error;
    const reason = error?.cause instanceof Error ? `${error.cause.name}: ${error.cause.message}` : String(error?.cause ?? error?.message ?? error);
    yield `${JSON.stringify({ name, file, todo: todo !== undefined && todo !== false, reason })}\n`;
  }
}
