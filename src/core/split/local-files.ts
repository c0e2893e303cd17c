/**
 * Split's inputs are the user's own files on this host (never a job folder): a plain lookup.
 */
import { promises as fs } from 'node:fs';
import { errorCode } from '../errors.js';

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return false;
    throw error;
  }
}
