/**
 * `piecework status` for people: a headline, one progress line, the rate and ETA, the per-host
 * table, then only what needs attention (stale claims, failures, a STOP file).
 */
import type { JobStatus } from '../../core/status.js';
import { formatBytes, formatDuration } from '../../core/units.js';
import { quote, quoteArgv } from '../../remote/quote.js';
import { paint, plural } from './format.js';
import { formatRate, table } from './table.js';

const BAR_WIDTH = 30;

export function renderStatus(status: JobStatus, colored: boolean): string[] {
  const c = paint(colored);
  const n = status.counts;
  const fraction = n.chunks ? n.done / n.chunks : status.splitComplete ? 1 : 0;
  const filled = Math.round(fraction * BAR_WIDTH);
  const lines = [
    `${status.job}: ${headline(status, c)}  ${c.dim(`(job ${status.jobId})`)}`,
    `  ${c.green('█'.repeat(filled))}${c.dim('░'.repeat(BAR_WIDTH - filled))} ${(fraction * 100).toFixed(1)}%  ${n.done} of ${n.chunks} chunks done${status.splitComplete ? '' : ' so far (the split is still adding chunks)'}`,
    `  ${[`running ${n.running}`, `pending ${n.pending}${n.retrying ? ` (${n.retrying} to retry)` : ''}`, n.failed ? c.red(`failed ${n.failed}`) : 'failed 0', n.stale ? c.yellow(`stale ${n.stale}`) : ''].filter(Boolean).join(' · ')}`,
    `  rate ${formatRate(status.rate.chunksPerSecond)} over the last ${status.rate.windowMinutes} min · ${eta(status)}`,
    `  workers ${workers(status, c)}`,
  ];
  if (status.hosts.length) {
    lines.push('');
    const rows = status.hosts.map((h) => [
      h.host,
      h.state === 'alive' ? c.green(h.state) : h.state === 'dead' ? c.red(h.state) : c.dim(h.state),
      String(h.workers.alive),
      String(h.lanes),
      String(h.busy),
      String(h.done),
      h.failedAttempts ? c.red(String(h.failedAttempts)) : '0',
      formatRate(h.chunksPerSecond),
      `${formatDuration(h.lastHeartbeatSeconds * 1000)} ago`,
    ]);
    const head = ['HOST', 'STATE', 'WORKERS', 'LANES', 'BUSY', 'DONE', 'FAILED', 'RATE', 'LAST BEAT'];
    // Only with --warm workers: the memory of their long-lived processes, where a leak shows.
    if (status.hosts.some((h) => h.warm)) {
      head.push('WARM RSS');
      status.hosts.forEach((h, i) => rows[i]!.push(h.warm ? `${formatBytes(h.warm.rssKb * 1024)} in ${h.warm.processes}` : ''));
    }
    lines.push(...table(head, rows).map((l) => `  ${l}`));
  }
  lines.push(...attention(status, c));
  return lines;
}

function headline(status: JobStatus, c: ReturnType<typeof paint>): string {
  if (status.complete) return c.green('complete');
  if (status.stopRequested) return c.yellow(status.workers.alive ? 'stopping (STOP file)' : 'stopped (STOP file)');
  if (status.workers.alive) return c.bold('running');
  return c.yellow('idle — no live worker');
}

function workers(status: JobStatus, c: ReturnType<typeof paint>): string {
  const w = status.workers;
  const alive = w.alive ? `${w.alive} alive (${plural(w.lanes, 'lane')}) on ${plural(status.hosts.filter((h) => h.state === 'alive').length, 'host')}` : 'none alive';
  return [alive, w.dead ? c.yellow(`${w.dead} dead`) : '', w.exited ? `${w.exited} exited` : ''].filter(Boolean).join(' · ');
}

function eta(status: JobStatus): string {
  if (status.complete) return 'nothing left';
  if (status.etaSeconds === null) return status.workers.alive ? 'ETA unknown (no chunk finished lately)' : 'ETA unknown (no live worker)';
  const at = new Date(Date.now() + status.etaSeconds * 1000);
  return `ETA ${formatDuration(status.etaSeconds * 1000)} (about ${at.toLocaleTimeString('en-GB', { hour12: false })})`;
}

function attention(status: JobStatus, c: ReturnType<typeof paint>): string[] {
  const lines: string[] = [];
  const n = status.counts;
  if (n.stale) {
    lines.push('', c.yellow(`  stale claims: ${n.stale} — their workers went silent; any worker takes them over`));
    for (const s of status.staleClaims) lines.push(`    ${s.chunk}  silent ${formatDuration(s.ageSeconds * 1000)}${s.owner ? `, held by ${s.owner.host} pid ${s.owner.pid} lane ${s.owner.lane}` : ''}`);
    if (n.stale > status.staleClaims.length) lines.push(c.dim(`    … and ${n.stale - status.staleClaims.length} more (piecework verify lists them all)`));
  }
  if (status.failureReasons.length) {
    lines.push('', c.red(`  failures: ${n.failed} failed for good, ${n.retrying} waiting for a retry`));
    for (const r of status.failureReasons) lines.push(`    ${r.chunks}× ${r.reason}  (e.g. chunk ${r.example}${r.failedForGood ? `; ${r.failedForGood} for good` : ''})`);
    const latest = status.recentFailures.find((f) => f.stderrTail.trim());
    if (latest) lines.push(c.dim(`    latest stderr (${latest.chunk} on ${latest.host}): ${latest.stderrTail.trim().split('\n').slice(-2).join(' | ')}`));
    if (n.failed) lines.push(c.dim(`    fix the cause, then \`piecework verify --requeue ${quote(status.job)}\` gives those chunks new attempts`));
  }
  if (status.commands.length > 1) {
    lines.push('', c.yellow(`  commands: this job's workers ran ${status.commands.length} different commands — their outputs are merged together`));
    for (const use of status.commands) {
      lines.push(`    ${quoteArgv(use.command)}  (${plural(use.workers, 'worker')}${use.alive ? `, ${use.alive} alive` : ''}, ${use.done} done, on ${use.hosts.join(', ')})`);
    }
    lines.push(c.dim('    if one is a mistake: stop its workers; each worker\'s log in logs/ names the chunks it did'));
  }
  const dead = status.hosts.filter((h) => h.state === 'dead');
  if (dead.length) lines.push('', c.yellow(`  dead hosts: ${dead.map((h) => h.host).join(', ')} — no heartbeat for a while; their claims go stale and are redone`));
  if (status.stopRequested) lines.push('', c.yellow(`  a STOP file is present: workers take no new chunk (\`piecework stop --clear ${quote(status.job)}\` to resume)`));
  return lines;
}
