/**
 * Run `fn` over `items` with at most `limit` at once; results keep the input order. Per-file reads
 * of a job (claims, failure records) go through here: enough in flight to hide a mount's latency,
 * never so many that 100 000 failed chunks run the process out of file handles.
 */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return results;
}
