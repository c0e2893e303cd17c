/**
 * A lane's cgroup (v2), where the system offers one (root, a cgroup2 mount): every process a chunk's
 * command starts lives in it, including children that left its process group with setsid, so
 * that when the command ends — or times out, or the worker stops — all of it is killed before the
 * output is committed. Without it, a detached grandchild could keep writing into an output after
 * its commit (docs/protocol.md, "Known limits").
 *
 * A fork server's child joins the cgroup itself before it execs the command, so nothing the command
 * starts is born outside it. With node's spawn, the command is moved in as soon as its pid is known:
 * a child it forks in that first instant is not caught (a window of microseconds). Where no cgroup
 * can be made, process groups alone apply.
 */
import { promises as fs, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { processIsGone } from '../processes.js';

export class ChunkCgroup {
  readonly path: string;
  /** Where a process writes 0 to join the cgroup itself (a fork server's child, before its exec). */
  readonly procsFile: string;

  private constructor(folder: string) {
    this.path = folder;
    this.procsFile = path.join(folder, 'cgroup.procs');
  }

  /** A fresh cgroup for one lane, or undefined where the system offers none to this user. */
  static async open(label: string): Promise<ChunkCgroup | undefined> {
    const root = cgroup2Mount();
    if (!root || process.env.PIECEWORK_CGROUP === 'off') return undefined;
    const folder = path.join(root, `piecework-${label.replace(/[^A-Za-z0-9_.-]/g, '_')}`);
    await sweepLeftovers(root);
    try {
      await fs.mkdir(folder);
      await fs.access(path.join(folder, 'cgroup.kill'));
      return new ChunkCgroup(folder);
    } catch {
      await fs.rmdir(folder).catch(() => {});
      return undefined;
    }
  }

  /** Move a command's process into the cgroup; its later children are born there. */
  adopt(pid: number): void {
    try {
      writeFileSync(this.procsFile, String(pid));
    } catch {
      // Gone already, or not movable: its process group still applies.
    }
  }

  /** Kill everything left in the cgroup (the command is over) and wait until it is empty. */
  async killAll(): Promise<void> {
    if (!this.#populated()) return;
    try {
      await fs.writeFile(path.join(this.path, 'cgroup.kill'), '1');
    } catch {
      return;
    }
    // cgroup.kill sends SIGKILL to all; they are gone a moment later (zombies reaped by their parents).
    for (let i = 0; i < 100 && this.#populated(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  }

  async close(): Promise<void> {
    await this.killAll();
    await fs.rmdir(this.path).catch(() => {});
  }

  #populated(): boolean {
    try {
      return /populated 1/.test(readFileSync(path.join(this.path, 'cgroup.events'), 'utf8'));
    } catch {
      return false;
    }
  }
}

/**
 * Empty cgroups of workers that were SIGKILLed (they could not remove their own): rmdir removes
 * only an empty cgroup, so one still in use is never touched.
 */
async function sweepLeftovers(root: string): Promise<void> {
  const names = await fs.readdir(root).catch(() => [] as string[]);
  for (const name of names) {
    const match = /^piecework-.+\.(\d+)\.\d+$/.exec(name);
    if (match && processIsGone(Number(match[1]))) await fs.rmdir(path.join(root, name)).catch(() => {});
  }
}

/** Where the cgroup2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in a hybrid). */
function cgroup2Mount(): string | undefined {
  try {
    for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
      const [, mountPoint, type] = line.split(' ');
      if (type === 'cgroup2' && mountPoint) return mountPoint;
    }
  } catch {
    // not Linux
  }
  return undefined;
}
