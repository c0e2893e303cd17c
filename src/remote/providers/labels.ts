/**
 * Labels (GCE) and tags (EC2) users add with `launch --label KEY=VALUE`: checked by GCE's rules,
 * the stricter of the two, so one flag works on both. No imports: the CLI checks flags with it
 * before the remote layer loads.
 */
export function checkLabel(key: string, value: string): string | undefined {
  if (!/^[a-z][a-z0-9_-]{0,62}$/.test(key)) return `label key ${JSON.stringify(key)}: lowercase letters, digits, _ and -, starting with a letter, at most 63`;
  if (!/^[a-z0-9_-]{0,63}$/.test(value)) return `label value ${JSON.stringify(value)}: lowercase letters, digits, _ and -, at most 63`;
  if (key === 'piecework-job') return 'the label piecework-job is the one launch sets itself';
  return undefined;
}
