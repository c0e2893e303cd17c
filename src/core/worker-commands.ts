/**
 * Which commands the workers of a job run. Hosts started by hand can be given different commands
 * (an old script on one, a typo on another); their outputs land side by side in out/ and merge
 * together, so the difference is said — by `status`, and by a worker that starts beside a live
 * one running another command. Not refused: another path to the same program is a difference too.
 */
import { isWorkerAlive, type HeartbeatRecord } from './heartbeat.js';

export interface CommandUse {
  command: string[];
  /** Workers that ran it on this job, and those of them alive now. */
  workers: number;
  alive: number;
  /** Chunks their workers committed. */
  done: number;
  hosts: string[];
}

const key = (command: string[]) => JSON.stringify(command);

/** The commands of a job's workers (heartbeats of this job only), the most used first. */
export function commandsInUse(heartbeats: HeartbeatRecord[], mountNow: number, staleMs: number): CommandUse[] {
  const byCommand = new Map<string, CommandUse>();
  for (const record of heartbeats) {
    if (record.command.length === 0) continue; // not said (a record of another version)
    let use = byCommand.get(key(record.command));
    if (!use) byCommand.set(key(record.command), (use = { command: record.command, workers: 0, alive: 0, done: 0, hosts: [] }));
    use.workers++;
    if (isWorkerAlive(record, mountNow, staleMs)) use.alive++;
    use.done += record.done;
    if (!use.hosts.includes(record.host)) use.hosts.push(record.host);
  }
  return [...byCommand.values()].sort((a, b) => b.workers - a.workers || b.done - a.done);
}

/** Live workers of the job, other than `self`, whose command is not `command`. */
export function liveWorkersWithOtherCommands(heartbeats: HeartbeatRecord[], self: string, command: string[], mountNow: number, staleMs: number): HeartbeatRecord[] {
  return heartbeats.filter((h) => h.worker !== self && h.command.length > 0 && key(h.command) !== key(command) && isWorkerAlive(h, mountNow, staleMs));
}
