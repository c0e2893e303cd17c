// piecework's benchmark suite: runs each scenario side by side with its peers in one run, prints a
// table of medians and ratios (piecework / peer) with the machine it ran on, says which of the
// targets of issue 4 are met, and writes the same as Markdown.
//
//   node --import tsx bench/run.ts [--only NAME[,NAME…]] [--quick] [--repeats N] [--out FILE]
//
// Absolute times depend on the machine: nothing here passes or fails on them, only ratios
// measured in the same run are judged. Everything started (sshd, sshfs, proxies, namespaces,
// workers) is stopped and removed after each scenario, even when it fails.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { leftovers, runCleanups } from '../test/helpers/cleanup.js';
import { fmtMs, fmtRatio, med, median, pieceworkBundle, repoRoot, spawnCostMs, type Row, type Scenario, type ScenarioResult } from './lib.js';
import { local } from './scenarios/local.js';
import { sshfsLatency } from './scenarios/sshfs.js';
import { splitMerge } from './scenarios/split-merge.js';
import { tail } from './scenarios/tail.js';
import { scaling } from './scenarios/scaling.js';
import { warm } from './scenarios/warm.js';
import { hostsRtt } from './scenarios/hosts-rtt.js';

const scenarios: Scenario[] = [local, sshfsLatency, splitMerge, tail, scaling, warm, hostsRtt];

interface Flags {
  only: string[] | undefined;
  quick: boolean;
  repeats: number | undefined;
  out: string | undefined;
}

function parseFlags(argv: string[]): Flags {
  const flags: Flags = { only: undefined, quick: false, repeats: undefined, out: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${arg} needs a value`);
      return v;
    };
    if (arg === '--quick') flags.quick = true;
    else if (arg === '--only') flags.only = value().split(',');
    else if (arg.startsWith('--only=')) flags.only = arg.slice(7).split(',');
    else if (arg === '--repeats') flags.repeats = Number(value());
    else if (arg === '--out') flags.out = value();
    else if (arg === '--help' || arg === '-h') usage();
    else usage(`unknown argument: ${arg}`);
  }
  const names = scenarios.map((s) => s.name);
  for (const n of flags.only ?? []) if (!names.includes(n)) usage(`no scenario "${n}" (there are: ${names.join(', ')})`);
  if (flags.repeats !== undefined && !(Number.isInteger(flags.repeats) && flags.repeats >= 1)) usage('--repeats takes a whole number ≥ 1');
  return flags;
}

function usage(problem?: string): never {
  const text = [
    'usage: node --import tsx bench/run.ts [--only NAME[,NAME…]] [--quick] [--repeats N] [--out FILE]',
    `  scenarios: ${scenarios.map((s) => `${s.name} (${s.title})`).join('; ')}`,
    '  --quick     one run each, smaller sizes: a smoke test of the suite, not numbers to quote',
    '  --repeats N measured runs per tool (default 3; the median is reported)',
    '  --out FILE  Markdown results (default bench/RESULTS.md for a full run, .bench/RESULTS-partial.md otherwise)',
  ].join('\n');
  process.stderr.write((problem ? `bench: ${problem}\n` : '') + text + '\n');
  process.exit(problem ? 2 : 0);
}

/** The machine's CPU time so far (USER_HZ ticks), from /proc/stat: all of it, and the part stolen. */
function cpuTimes(): { total: number; steal: number } | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
  } catch {
    return undefined;
  }
}

/**
 * On a virtual machine the hypervisor may run other guests on "our" CPUs (steal time): CPU-bound
 * rows slow down, rows that wait on round trips hardly, so ratios between them move with it.
 */
function stealNote(before: ReturnType<typeof cpuTimes>, after: ReturnType<typeof cpuTimes>, what: string): string {
  if (!before || !after || after.total <= before.total) return `CPU steal during ${what}: not measured`;
  const share = (100 * (after.steal - before.steal)) / (after.total - before.total);
  return `CPU steal during ${what}: ${share.toFixed(1)} % of the CPUs' time went to other guests of the host (/proc/stat)`;
}

function machine(): Record<string, string> {
  const git = (args: string[]): string => {
    try {
      return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  const version = (cmd: string, args: string[], pattern: RegExp): string => {
    try {
      const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return pattern.exec(out)?.[1] ?? '?';
    } catch (error) {
      const out = String((error as { stdout?: string }).stdout ?? '') + String((error as { stderr?: string }).stderr ?? '');
      return pattern.exec(out)?.[1] ?? 'not installed';
    }
  };
  const commit = git(['rev-parse', '--short', 'HEAD']);
  const dirty = git(['status', '--porcelain', '--', 'src']) ? ' + uncommitted changes in src/' : '';
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu: `${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    kernel: `Linux ${release()}`,
    node: process.version,
    piecework: `${commit || '?'}${dirty}`,
    peers: [
      `GNU parallel ${version('parallel', ['--version'], /GNU parallel (\d+)/)}`,
      `sshfs ${version('sshfs', ['--version'], /SSHFS version (\S+)/)}`,
      `coreutils ${version('split', ['--version'], /\(GNU coreutils\) (\S+)/)}`,
      `bash ${version('bash', ['--version'], /version (\S+)/)}`,
    ].join(', '),
  };
}

// ---------------------------------------------------------------------------------------------
// Rendering: the same content as a terminal table and as Markdown.

interface Table {
  head: string[];
  rows: string[][];
}

function rowCells(row: Row, all: Row[]): string[] {
  const m = med(row);
  const pwRow = row.against ? all.find((r) => r.tool === row.against) : all.find((r) => r.tool.startsWith('piecework') && !r.info);
  const ratioToPw = pwRow && !row.info && !row.tool.startsWith('piecework') ? fmtRatio(med(pwRow) / m) : '';
  return [
    row.tool,
    fmtMs(m),
    row.chunks ? fmtMs(m / row.chunks) : '',
    row.cpuSamples && row.chunks ? fmtMs(median(row.cpuSamples) / row.chunks) : '',
    row.peakRssMb !== undefined ? `${row.peakRssMb.toFixed(0)} MB` : '',
    ratioToPw,
    ...extraCells(row, all),
    row.samples.map((s) => fmtMs(s)).join(', '),
  ];
}

function extraKeys(all: Row[]): string[] {
  return [...new Set(all.flatMap((r) => Object.keys(r.extra ?? {})))];
}

function extraCells(row: Row, all: Row[]): string[] {
  return extraKeys(all).map((k) => row.extra?.[k] ?? '');
}

function tableOf(result: ScenarioResult): Table {
  const head = ['tool', 'median', 'per chunk', 'CPU/chunk', 'peak RSS', 'piecework / this', ...extraKeys(result.rows), 'runs'];
  const rows = result.rows.map((r) => rowCells(r, result.rows));
  // Drop columns nobody filled.
  const keep = head.map((_, i) => i === 0 || rows.some((r) => r[i] !== ''));
  return { head: head.filter((_, i) => keep[i]), rows: rows.map((r) => r.filter((_, i) => keep[i])) };
}

function textTable(t: Table): string {
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '  ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(t.head), line(widths.map((w) => '-'.repeat(w))), ...t.rows.map(line)].join('\n');
}

function markdownTable(t: Table): string {
  const esc = (s: string) => s.replaceAll('|', '\\|');
  return [`| ${t.head.map(esc).join(' | ')} |`, `|${t.head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

const mark = (met: boolean | undefined): string => (met === undefined ? '?' : met ? 'MET' : 'NOT MET');

function renderText(info: Record<string, string>, results: ScenarioResult[], flags: Flags): string {
  const out: string[] = [];
  out.push(`piecework benchmarks${flags.quick ? ' (--quick: smoke sizes, not numbers to quote)' : ''}`);
  for (const [k, v] of Object.entries(info)) out.push(`  ${k.padEnd(9)} ${v}`);
  for (const [i, r] of results.entries()) {
    out.push('', `${i + 1}. ${r.title}`);
    if (r.rows.length) out.push(textTable(tableOf(r)));
    if (r.ratios.length) out.push(`  ratios: ${r.ratios.map((x) => `${x.label} ${fmtRatio(x.value)}`).join(' · ')}`);
    for (const t of r.targets) out.push(`  target ${mark(t.met).padEnd(7)} ${t.target} (${t.detail})`);
    for (const n of r.notes) out.push(`  note: ${n}`);
    if (r.profile.length) out.push('  profile:', ...r.profile.map((p) => `    ${p}`));
  }
  out.push('', 'targets (issue 4):');
  for (const r of results) for (const t of r.targets) out.push(`  ${mark(t.met).padEnd(7)} ${t.target} — ${t.detail}`);
  return out.join('\n');
}

function renderMarkdown(info: Record<string, string>, results: ScenarioResult[], flags: Flags, command: string): string {
  const out: string[] = [];
  out.push('# Benchmark results', '');
  out.push(`Written by \`${command}\`${flags.quick ? ' — **--quick: smoke sizes, not numbers to quote**' : ''}. Medians of the runs listed; ratios are piecework's time over the peer's, measured in the same run. See [README.md](README.md) for what each scenario measures.`, '');
  out.push('| machine | |', '|---|---|', ...Object.entries(info).map(([k, v]) => `| ${k} | ${v} |`), '');
  out.push('## Targets (issue 4)', '', '| target | status | measured |', '|---|---|---|');
  for (const r of results) for (const t of r.targets) out.push(`| ${t.target} | ${mark(t.met)} | ${t.detail.replaceAll('|', '\\|')} |`);
  for (const [i, r] of results.entries()) {
    out.push('', `## ${i + 1}. ${r.title}`, '');
    if (r.rows.length) out.push(markdownTable(tableOf(r)), '');
    if (r.ratios.length) out.push(`Ratios: ${r.ratios.map((x) => `${x.label} **${fmtRatio(x.value)}**`).join(' · ')}`, '');
    for (const n of r.notes) out.push(`- ${n}`);
    if (r.notes.length) out.push('');
    if (r.profile.length) out.push('Profile of piecework:', '', '```', ...r.profile, '```');
  }
  return out.join('\n') + '\n';
}

function renderSummary(info: Record<string, string>, results: ScenarioResult[]): string {
  const out: string[] = [];
  out.push(`Last full run: ${info.date}, ${info.cpu}, ${info.memory}, Node ${info.node}, piecework ${info.piecework}. Details and profiles: [RESULTS.md](RESULTS.md).`, '');
  if (info.spawn || info.steal) out.push([info.spawn, info.steal].filter(Boolean).map((s) => `${s![0]!.toUpperCase()}${s!.slice(1)}.`).join(' '), '');
  out.push('| target (issue 4) | status | measured |', '|---|---|---|');
  for (const r of results) for (const t of r.targets) out.push(`| ${t.target} | ${mark(t.met)} | ${t.detail.replaceAll('|', '\\|')} |`);
  for (const [i, r] of results.entries()) {
    if (r.rows.length) out.push('', `**${i + 1}. ${r.title}**`, '', markdownTable(tableOf(r)));
  }
  return out.join('\n');
}

const README = join(repoRoot, 'bench', 'README.md');
const START = '<!-- results:start (written by bench/run.ts) -->';
const END = '<!-- results:end -->';

function updateReadme(summary: string): void {
  const text = readFileSync(README, 'utf8');
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a === -1 || b < a) return;
  writeFileSync(README, `${text.slice(0, a + START.length)}\n${summary}\n${text.slice(b)}`);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const selected = scenarios.filter((s) => !flags.only || flags.only.includes(s.name));
  const partial = flags.quick || flags.only !== undefined;
  const outFile = flags.out ?? (partial ? join(repoRoot, '.bench', 'RESULTS-partial.md') : join(repoRoot, 'bench', 'RESULTS.md'));
  const ctx = {
    quick: flags.quick,
    repeats: flags.repeats ?? (flags.quick ? 1 : 3),
    log: (message: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${message}\n`),
  };
  const t0 = performance.now();
  const info = machine();
  try {
    // The bundle is what namespace hosts run; a missing build is the common first failure.
    execFileSync('test', ['-f', pieceworkBundle]);
  } catch {
    process.stderr.write('bench: piecework is not built — run `make build` first\n');
    process.exit(2);
  }

  const results: ScenarioResult[] = [];
  // How dear a process start is on this machine now: it swings several-fold between runs on
  // shared hosts, and every row that starts a process per chunk moves with it.
  const spawnAtStart = await spawnCostMs(200);
  const runTimes = cpuTimes();
  for (const scenario of selected) {
    ctx.log(`${scenario.name}: ${scenario.title}`);
    const before = cpuTimes();
    try {
      const result = await scenario.run(ctx);
      result.notes.push(stealNote(before, cpuTimes(), 'this scenario'));
      results.push(result);
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      ctx.log(`${scenario.name} FAILED: ${message}`);
      results.push({ name: scenario.name, title: scenario.title, rows: [], ratios: [], targets: [{ target: `${scenario.name}: scenario ran`, met: false, detail: `failed: ${(error as Error).message?.split('\n')[0] ?? String(error)}` }], profile: [], notes: [] });
    } finally {
      await runCleanups().catch((error: unknown) => ctx.log(`cleanup after ${scenario.name}: ${(error as Error).message}`));
    }
  }

  if (runTimes && cpuTimes()) info.steal = stealNote(runTimes, cpuTimes(), 'the whole run');
  info.spawn = `node spawns /bin/true in ${spawnAtStart.toFixed(2)} ms at the start of the run, ${(await spawnCostMs(200)).toFixed(2)} ms at its end (200 in a row)`;
  const left = leftovers();
  const remains = [...left.processes.map((p) => `process ${p.pid} ${p.cmdline}`), ...left.mounts, ...left.netns, ...left.links, ...left.tempDirs];
  if (remains.length) ctx.log(`WARNING: left behind: ${remains.join('; ')}`);

  const command = `node --import tsx bench/run.ts${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`;
  process.stdout.write(renderText(info, results, flags) + '\n');
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, renderMarkdown(info, results, flags, command));
  // A full run also refreshes the summary in bench/README.md (between its two markers).
  if (!partial && flags.out === undefined) updateReadme(renderSummary(info, results));
  ctx.log(`total ${fmtMs(performance.now() - t0)}; Markdown written to ${relative(process.cwd(), outFile)}`);
}

await main();
