/**
 * Resident memory of a warm process and what it started, for the worker's heartbeat: a program
 * that leaks shows up in `status` long before the kernel's OOM killer ends it mid-chunk.
 *
 * The tree is walked through /proc/PID/task/*\/children (a few small reads) rather than by
 * scanning all of /proc for the process group, which costs a read per process on the host.
 * Linux only; elsewhere, or when the process is gone, the answer is undefined.
 */
import { promises as fs } from 'node:fs';

const MAX_PROCESSES = 256;

async function rssKbOf(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) : 0;
}

async function childrenOf(pid: number): Promise<number[]> {
  try {
    const tasks = await fs.readdir(`/proc/${pid}/task`);
    const lists = await Promise.all(tasks.map((task) => fs.readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')));
    return lists.flatMap((list) => list.split(' ').filter(Boolean).map(Number));
  } catch {
    return [];
  }
}

/** RSS in kB of `pid` and its descendants; undefined when `pid` is not there. */
export async function treeRssKb(pid: number): Promise<number | undefined> {
  let total: number;
  try {
    total = await rssKbOf(pid);
  } catch {
    return undefined;
  }
  const queue = await childrenOf(pid);
  for (let seen = 0; queue.length > 0 && seen < MAX_PROCESSES; seen++) {
    const next = queue.shift()!;
    total += await rssKbOf(next).catch(() => 0);
    queue.push(...(await childrenOf(next)));
  }
  return total;
}
