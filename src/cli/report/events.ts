/**
 * Reporters for the core's event stream. Human: a progress bar on a terminal (progress.ts), and
 * only the things worth knowing — failures, lost claims, stops, warnings — as lines, terminal or
 * not. JSON: one event per line (NDJSON).
 */
import type { Writable } from 'node:stream';
import type { EventSink, PieceworkEvent } from '../../core/events.js';
import { formatBytes } from '../../core/units.js';
import { paint, useColor } from './format.js';
import { progressView } from './progress.js';
import { RecentRate } from './recent-rate.js';

export function jsonEvents(stream: Writable): EventSink {
  return (event) => stream.write(JSON.stringify(event) + '\n');
}

export function humanEvents(stream: Writable & { isTTY?: boolean; columns?: number }, env: NodeJS.ProcessEnv, options: { interactive: boolean; quiet?: boolean }): EventSink & { finish(): void } {
  const color = paint(useColor(stream, env));
  const view = progressView(stream, options.interactive && !options.quiet);
  const say = (text: string) => {
    if (!options.quiet) view.line(text);
  };
  const rate = new RecentRate();
  // The bar shows the job, not this worker: each pass's listing of out/ counts every worker's
  // outputs, and between passes this worker adds what it commits and the outputs of others its
  // claims find (a skipped chunk was not in the listing, so nothing is counted twice). No I/O of
  // its own. This worker's share is shown beside it.
  let jobDone = 0;
  let mine = 0;
  let total = 0;
  let failed = 0;
  const showWork = () => {
    const perSecond = rate.perSecond();
    const share = `this worker ${mine}${perSecond > 0 ? ` at ${perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond)}/s` : ''}`;
    const details = [`${jobDone}/${total}`, share, failed ? `${failed} failed` : ''];
    view.show('work ', jobDone, total, details.filter(Boolean).join(' · '));
  };
  const sink = (event: PieceworkEvent) => {
    switch (event.type) {
      case 'split:progress':
        view.show('split', event.bytes, event.totalBytes, `${formatBytes(event.bytes)} → ${event.chunks} chunks`);
        break;
      case 'work:start':
        total = event.chunks;
        showWork();
        break;
      case 'work:pass':
        // A listing can lag (sshfs: 20 s) behind what this worker has seen: never go back.
        jobDone = Math.min(total, Math.max(jobDone, event.done));
        showWork();
        break;
      case 'chunk:done':
        jobDone = Math.min(total, jobDone + 1);
        mine++;
        rate.add();
        showWork();
        break;
      case 'chunk:skipped':
        if (event.reason === 'output-exists') {
          jobDone = Math.min(total, jobDone + 1);
          showWork();
        }
        break;
      case 'chunk:failed':
        if (event.final) failed++;
        say(`${color.red('failed')} chunk ${event.chunk} (attempt ${event.attempt}${event.final ? ', no retries left' : ''}): ${event.reason}`);
        break;
      case 'claim:lost':
        say(`${color.yellow('claim lost')} on chunk ${event.chunk}: ${event.reason}`);
        break;
      case 'work:stopping':
        if (event.reason !== 'split-incomplete') say(`stopping (${event.reason === 'stop-file' ? 'STOP file' : event.reason === 'halt' ? '--halt-after: too many chunks failed for good; STOP written for every worker' : event.reason}): taking no new chunks`);
        break;
      case 'work:waiting':
        view.show('work ', jobDone, total, `waiting for ${event.splitIncomplete ? 'the split to add chunks' : 'claims held by other workers'}…`);
        break;
      case 'merge:progress':
        view.show('merge', event.outputs, event.totalOutputs, `${event.outputs}/${event.totalOutputs} outputs · ${formatBytes(event.bytes)}`);
        break;
      case 'check:progress':
        view.show('check', event.checked, event.total, `${event.checked}/${event.total}${event.bad ? ` · ${event.bad} bad` : ''}`);
        break;
      case 'warning':
        view.line(`piecework: warning: ${event.message}`);
        break;
      default:
        break;
    }
  };
  return Object.assign(sink, { finish: () => view.finish() });
}
