/** Argument helpers shared by the command modules. */
import type { Arguments } from 'yargs';
import { UsageError } from '../core/errors.js';
import { checkDuration } from '../core/units.js';

/** The user's command: everything after `--`, untouched (no shell, no re-quoting). */
export function commandAfterDashes(argv: Arguments): string[] {
  const rest = argv['--'];
  return Array.isArray(rest) ? rest.map(String) : [];
}

export function positiveInt(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} ${shown(value)}: must be a whole number of at least 1`);
  return n;
}

export function nonNegativeInt(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} ${shown(value)}: must be a whole number of at least 0`);
  return n;
}

export function positiveSeconds(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} ${shown(value)}: must be a number of seconds above 0`);
  return checkDuration(n, flag);
}

/** A flag's value as the user typed it (yargs gives strings, numbers or arrays). */
function shown(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/** `--success-exit 0,1`: a list of exit statuses. */
export function exitStatusList(value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  const codes = String(value).split(',').map((part) => part.trim());
  for (const code of codes) {
    if (!/^\d+$/.test(code) || Number(code) > 255) throw new UsageError(`--success-exit ${value}: give exit statuses from 0 to 255, separated by commas`, 'e.g. --success-exit 0,1 (grep exits 1 when nothing matched)');
  }
  return codes.map(Number);
}
