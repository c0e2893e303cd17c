/**
 * Output for a report that repeats (`status --watch`): on a terminal each report replaces the
 * previous one in place, like watch(1); anywhere else each report is printed in full, so a log
 * file or a pipe gets a readable history.
 */
import { clearLine, clearScreenDown, cursorTo } from 'node:readline';
import type { Writable } from 'node:stream';
import { visibleWidth } from './table.js';

export interface ReportScreen {
  show(lines: string[]): void;
}

export function reportScreen(stream: Writable & { isTTY?: boolean; columns?: number; rows?: number }, options: { inPlace: boolean }): ReportScreen {
  if (!options.inPlace || !stream.isTTY) {
    let first = true;
    return {
      show(lines) {
        stream.write((first ? '' : '\n') + lines.join('\n') + '\n');
        first = false;
      },
    };
  }
  return {
    show(lines) {
      const width = stream.columns || 100; // 0 on a pty nobody sized
      // Lines longer than the terminal would wrap and push the report off its place; the top is
      // where the headline is, so a short terminal keeps the top.
      const fitted = lines.slice(0, Math.max(1, (stream.rows || 1000) - 1)).map((line) => (visibleWidth(line) < width ? line : cut(line, width - 1)));
      cursorTo(stream, 0, 0);
      for (const line of fitted) {
        stream.write(line);
        clearLine(stream, 1);
        stream.write('\n');
      }
      clearScreenDown(stream);
    },
  };
}

/** Cut to `width` visible characters; a cut line loses its colours rather than leak one. */
function cut(line: string, width: number): string {
   
  return line.replace(/\u001b\[[0-9;]*m/g, '').slice(0, width);
}
