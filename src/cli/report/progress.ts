/**
 * The progress bar of split, work and merge, drawn by cli-progress on stderr when it is a
 * terminal. A MultiBar with one bar, because only MultiBar can print whole lines (failures,
 * warnings) above the bar without tearing it. When the stream is not a terminal nothing is drawn
 * and lines are written as they come.
 */
import cliProgress from 'cli-progress';
import type { Writable } from 'node:stream';
import { formatDuration } from '../../core/units.js';

export interface ProgressView {
  /** Start or update the bar; `total` undefined draws a line of text without a bar. */
  show(label: string, value: number, total: number | undefined, details: string): void;
  /** A whole line, kept in the scrollback above the bar. */
  line(text: string): void;
  /** Remove the bar (the command prints its summary next). */
  finish(): void;
}

interface Payload {
  label: string;
  details: string;
  bounded: boolean;
}

export function progressView(stream: Writable & { isTTY?: boolean }, enabled: boolean): ProgressView {
  let bars: cliProgress.MultiBar | undefined;
  let bar: cliProgress.SingleBar | undefined;
  let label = '';
  const stop = () => {
    // update() first: it writes the lines still waiting in the log buffer; stop() would drop them.
    bars?.update();
    bars?.stop();
    bars = bar = undefined;
  };
  return {
    show(newLabel, value, total, details) {
      if (!enabled) return;
      if (bar && newLabel !== label) stop();
      label = newLabel;
      const payload: Payload = { label, details, bounded: total !== undefined };
      if (!bar) {
        bars = newBars(stream);
        bar = bars.create(total ?? 0, value, payload);
        unrefTimer(bars);
      } else {
        if (total !== undefined && total !== bar.getTotal()) bar.setTotal(total);
        bar.update(value, payload);
      }
    },
    line(text) {
      if (bars) bars.log(text + '\n');
      else stream.write(text + '\n');
    },
    finish: stop,
  };
}

function newBars(stream: Writable): cliProgress.MultiBar {
  const bars = new cliProgress.MultiBar({
    stream: stream,
    format: formatLine,
    barCompleteChar: '█',
    barIncompleteChar: '░',
    barsize: 24,
    fps: 8,
    // The ETA follows the last 60 updates and is recomputed while nothing finishes, so it grows
    // honestly during a long chunk instead of freezing.
    etaBuffer: 60,
    etaAsynchronousUpdate: true,
    clearOnComplete: true,
    hideCursor: false,
    // Leave the terminal's modes alone: a command that dies mid-bar must not leave wrapping off.
    linewrap: true,
    gracefulExit: false,
  });
  bars.on('update-post', () => unrefTimer(bars));
  return bars;
}

/** The redraw timer must not keep a finished (or failed) command alive. */
function unrefTimer(bars: cliProgress.MultiBar): void {
  (bars as unknown as { timer?: NodeJS.Timeout | null }).timer?.unref();
}

function formatLine(options: cliProgress.Options, params: cliProgress.Params, payload: Payload): string {
  const width = Math.max(20, (params.maxWidth ?? 80) - 1);
  if (!payload.bounded) return `${payload.label} ${payload.details}`.slice(0, width);
  const bar = cliProgress.Format.BarFormat(params.progress, options);
  const percent = `${Math.floor(params.progress * 100)}%`.padStart(4);
  const eta = params.progress >= 1 ? '' : ` · ETA ${typeof params.eta === 'number' && Number.isFinite(params.eta) ? formatEta(params.eta) : '?'}`;
  return `${payload.label} ${bar} ${percent} ${payload.details}${eta}`.slice(0, width);
}

/** cli-progress estimates whole seconds: show them as such ("3s", "4m05s"). */
function formatEta(seconds: number): string {
  return seconds < 60 ? `${Math.round(seconds)}s` : formatDuration(seconds * 1000);
}
