/**
 * `stop JOB --hosts … --now`: end the job's workers on each host over SSH, at once, instead of
 * waiting for them to notice the STOP file. Each host runs templates/stop-workers.sh, which finds
 * the job's workers there by their argv (and the job's id), sends SIGTERM, and SIGKILLs what is
 * left after a grace period. Hosts are handled in parallel (bounded); one unreachable host never
 * stops the others, and each gets its own line in the report.
 *
 * Nothing here prints: progress goes to `onEvent`, the outcome is the returned report.
 */
import type { NodeSSH } from 'node-ssh';
import { UsageError } from '../core/errors.js';
import { formatHost, resolveHosts, type HostConnectionOptions, type HostSpec } from './hosts.js';
import { connectHost, defaultKnownHostsFiles, loadCredentials, mapBounded, type ConnectFailureStatus } from './ssh.js';
import { renderTemplate } from './templates.js';

export interface StopOnHostsOptions extends HostConnectionOptions {
  /** The job folder as the hosts see it. */
  remoteJob: string;
  /** The job's id (job.json): also matches workers that name the folder differently. */
  jobId?: string;
  /** Seconds between SIGTERM and SIGKILL. Default 10. */
  graceSeconds?: number;
  onEvent?: (event: StopEvent) => void;
}

export type HostStopStatus = 'stopped' | 'none' | ConnectFailureStatus;

export interface HostStopResult {
  host: string;
  spec: HostSpec;
  status: HostStopStatus;
  message: string;
  hint?: string;
  /** Worker pids found on the host. */
  found: number[];
  /** Workers that ended within the grace period after SIGTERM. */
  exited: number[];
  /** Processes (workers and their commands) SIGKILLed after the grace period. */
  killed: number[];
  elapsedMs: number;
}

export type StopEvent = { type: 'host:connecting'; host: string } | { type: 'host:done'; result: HostStopResult };

export interface StopOnHostsReport {
  remoteJob: string;
  hosts: HostStopResult[];
  /** Hosts that could not be reached or failed: their workers, if any, still run. */
  failed: number;
}

export async function stopOnHosts(options: StopOnHostsOptions): Promise<StopOnHostsReport> {
  const specs = options.hostSpecs ? [...options.hostSpecs] : await resolveHosts(options.hosts ?? []);
  if (specs.length === 0) throw new UsageError('no hosts: give --hosts FILE or --hosts a,b,c');
  const grace = options.graceSeconds ?? 10;
  if (!(Number.isInteger(grace) && grace >= 0)) throw new UsageError(`--grace ${grace}: whole seconds, 0 or more`);
  const script = await renderStopScript({ remoteJob: options.remoteJob, graceSeconds: grace, ...(options.jobId ? { jobId: options.jobId } : {}) });
  const credentials = await loadCredentials({
    ...(options.identityFiles ? { identityFiles: options.identityFiles } : {}),
    ...(options.agent !== undefined ? { agent: options.agent } : {}),
  });
  const knownHostsFiles = options.knownHostsFiles ? [...options.knownHostsFiles] : defaultKnownHostsFiles();
  const emit = options.onEvent ?? (() => undefined);

  const results = await mapBounded(specs, options.concurrency ?? 8, async (spec): Promise<HostStopResult> => {
    const started = Date.now();
    const host = formatHost(spec);
    const finish = (partial: Omit<HostStopResult, 'host' | 'spec' | 'elapsedMs' | 'found' | 'exited' | 'killed'> & Partial<Pick<HostStopResult, 'found' | 'exited' | 'killed'>>): HostStopResult => {
      const result: HostStopResult = { host, spec, found: [], exited: [], killed: [], ...partial, elapsedMs: Date.now() - started };
      emit({ type: 'host:done', result });
      return result;
    };
    emit({ type: 'host:connecting', host });
    const connection = await connectHost(
      { host: spec.host, port: spec.port, ...(spec.user ? { user: spec.user } : {}) },
      {
        credentials,
        hostKeys: { knownHostsFiles, acceptNew: options.acceptNewHostKeys ?? false },
        ...(options.connectTimeoutMs !== undefined ? { readyTimeoutMs: options.connectTimeoutMs } : {}),
        ...(options.connectRetries !== undefined ? { retries: options.connectRetries } : {}),
      },
    );
    if (connection.status !== 'connected') {
      return finish({ status: connection.status, message: connection.message, ...(connection.hint ? { hint: connection.hint } : {}) });
    }
    try {
      const run = await runScript(connection.ssh, script, (grace + 60) * 1000);
      const out = parseStopOutput(run.stdout);
      if (run.code !== 0 || out.found === undefined) {
        const detail = run.stderr.trim().split('\n').pop() || (run.signal ? `killed by ${run.signal}` : `exit ${run.code}`);
        return finish({ status: 'error', message: `${host}: the stop script failed: ${detail}` });
      }
      const found = out.found;
      const exited = out.exited ?? [];
      const killed = out.killed ?? [];
      if (found.length === 0) return finish({ status: 'none', message: 'no worker of this job running', found, exited, killed });
      const parts = [`${found.length} worker${found.length === 1 ? '' : 's'}`];
      if (exited.length) parts.push(`${exited.length} ended on SIGTERM`);
      if (killed.length) parts.push(`${killed.length} process${killed.length === 1 ? '' : 'es'} SIGKILLed after ${grace} s`);
      return finish({ status: 'stopped', message: parts.join(', '), found, exited, killed });
    } catch (error) {
      return finish({ status: 'error', message: `${host}: ${(error as Error).message}` });
    } finally {
      connection.ssh.dispose();
    }
  });
  return { remoteJob: options.remoteJob, hosts: results, failed: results.filter((r) => r.status !== 'stopped' && r.status !== 'none').length };
}

export function renderStopScript(settings: { remoteJob: string; jobId?: string; graceSeconds?: number }): Promise<string> {
  return renderTemplate('stop-workers.sh', { PW_JOB: settings.remoteJob, PW_JOB_ID: settings.jobId, PW_GRACE: settings.graceSeconds });
}

/** The `piecework-stop: key=pid pid…` lines of the script's stdout. */
export function parseStopOutput(stdout: string): { found?: number[]; exited?: number[]; killed?: number[] } {
  const values: Record<string, number[]> = {};
  for (const line of stdout.split('\n')) {
    const match = /^piecework-stop: (found|exited|killed)=([\d ]*)$/.exec(line.trimEnd());
    if (match) values[match[1] as string] = (match[2] as string).split(' ').filter((p) => p !== '').map(Number);
  }
  return values;
}

async function runScript(ssh: NodeSSH, script: string, timeoutMs: number): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ssh.dispose();
      reject(new Error(`the stop script did not finish within ${Math.round(timeoutMs / 1000)} s`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([ssh.execCommand('sh -s', { stdin: script }), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
