import { UsageError } from './errors.js';

const multipliers: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** "64M", "1G", "512k", "100" → bytes (binary multiples, like coreutils split). */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?$/.exec(text.trim());
  if (!match) throw new UsageError(`${flag} ${text}: not a size`, 'use a number of bytes with an optional K, M, G or T suffix, e.g. 64M');
  const bytes = Math.floor(Number(match[1]) * multipliers[match[2]!.toUpperCase()]!);
  if (bytes < 1) throw new UsageError(`${flag} ${text}: must be at least one byte`);
  return bytes;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

/** The longest a timer can wait (2^31 − 1 ms): node fires a longer one at once. */
export const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** A duration in seconds a timer can hold: above 0, at most MAX_TIMER_SECONDS (about 24.8 days). */
export function checkDuration(seconds: number, flag: string): number {
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`${flag} ${seconds}: must be a number of seconds above 0`);
  if (seconds > MAX_TIMER_SECONDS) throw new UsageError(`${flag} ${seconds}: at most ${MAX_TIMER_SECONDS} seconds (about 24 days)`, 'a timer cannot wait longer; leave the flag out for no limit');
  return seconds;
}
