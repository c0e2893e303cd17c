/**
 * Reporters for the core's event stream. Human: a redrawn status line on a terminal, only the
 * things worth knowing (failures, stops, warnings) otherwise. JSON: one event per line (NDJSON).
 */
import type { Writable } from 'node:stream';
import type { EventSink, PieceworkEvent } from '../../core/events.js';
import { formatBytes, formatDuration } from '../../core/units.js';
import { paint, useColor } from './format.js';

export function jsonEvents(stream: Writable): EventSink {
  return (event) => stream.write(JSON.stringify(event) + '\n');
}

export function humanEvents(stream: Writable & { isTTY?: boolean; columns?: number }, env: NodeJS.ProcessEnv, options: { interactive: boolean; quiet?: boolean }): EventSink & { finish(): void } {
  const color = paint(useColor(stream, env));
  let lineShown = false;
  let lastDraw = 0;
  let done = 0;
  let failed = 0;
  let total = 0;
  let started = Date.now();
  const clear = () => {
    if (lineShown) stream.write('\r\u001b[2K');
    lineShown = false;
  };
  const say = (text: string) => {
    clear();
    stream.write(text + '\n');
  };
  const draw = (text: string, force = false) => {
    if (!options.interactive || options.quiet) return;
    const now = Date.now();
    if (!force && now - lastDraw < 100) return;
    lastDraw = now;
    const width = (stream.columns ?? 100) - 1;
    stream.write('\r\u001b[2K' + text.slice(0, width));
    lineShown = true;
  };
  const sink = (event: PieceworkEvent) => {
    switch (event.type) {
      case 'split:progress': {
        const pct = event.totalBytes ? ` ${((100 * event.bytes) / event.totalBytes).toFixed(0)}%` : '';
        draw(`split:${pct} ${formatBytes(event.bytes)} → ${event.chunks} chunks`);
        break;
      }
      case 'work:start':
        total = event.chunks;
        started = Date.now();
        draw(`work: ${event.chunks} chunks, ${event.lanes} lanes`, true);
        break;
      case 'work:pass':
        done = event.done;
        break;
      case 'chunk:done': {
        done++;
        const rate = done / Math.max((Date.now() - started) / 1000, 0.001);
        const left = total - done;
        draw(`work: ${done}/${total} done${failed ? `, ${color.red(`${failed} failed`)}` : ''} · ${rate.toFixed(1)}/s · ETA ${formatDuration((left / Math.max(rate, 1e-9)) * 1000)}`);
        break;
      }
      case 'chunk:failed':
        if (event.final) failed++;
        if (!options.quiet) say(`${color.red('failed')} chunk ${event.chunk} (attempt ${event.attempt}${event.final ? ', no retries left' : ''}): ${event.reason}`);
        break;
      case 'claim:lost':
        if (!options.quiet) say(`${color.yellow('claim lost')} on chunk ${event.chunk}: ${event.reason}`);
        break;
      case 'work:stopping':
        if (!options.quiet && event.reason !== 'split-incomplete') say(`stopping (${event.reason === 'stop-file' ? 'STOP file' : event.reason}): taking no new chunks`);
        break;
      case 'work:waiting':
        draw(`work: waiting for ${event.splitIncomplete ? 'the split to add chunks' : 'claims held by other workers'}…`, true);
        break;
      case 'merge:progress':
        draw(`merge: ${event.outputs}/${event.totalOutputs} outputs, ${formatBytes(event.bytes)}`);
        break;
      case 'check:progress':
        draw(`check: ${event.checked}/${event.total}${event.bad ? `, ${color.red(`${event.bad} bad`)}` : ''}`);
        break;
      case 'warning':
        say(`piecework: warning: ${event.message}`);
        break;
      default:
        break;
    }
  };
  return Object.assign(sink, { finish: clear });
}
