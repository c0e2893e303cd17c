import { resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { ExitStatus, UsageError } from '../../core/errors.js';
import { readManifest } from '../../core/manifest.js';
// Types only: the remote layer (node-ssh and all) is loaded only for --now.
import type { HostStopResult, StopOnHostsOptions } from '../../remote/stop.js';
import { positiveInt, positiveSeconds } from '../args.js';
import { getContext } from '../context.js';
import { plural } from '../report/format.js';

interface StopArgs {
  job?: string;
  clear?: boolean;
  now?: boolean;
  hosts?: string[];
  identity?: string[];
  knownHosts?: string[];
  acceptNewHostKeys?: boolean;
  remoteJob?: string;
  grace?: number;
  concurrency?: number;
  connectTimeout?: number;
  json?: boolean;
}

const command: CommandModule<object, StopArgs> = {
  command: 'stop <job>',
  describe: 'Ask every worker of a job to finish its current chunks and exit (a STOP file); --now ends them over SSH',
  builder: (y) =>
    y
      .positional('job', { type: 'string', describe: 'The job folder', demandOption: true })
      .option('clear', { type: 'boolean', describe: 'Remove the STOP file so that workers may run again' })
      .option('now', { type: 'boolean', describe: 'Also end the workers on --hosts at once: SIGTERM, then SIGKILL after --grace' })
      .option('hosts', { type: 'string', array: true, nargs: 1, describe: 'With --now: hosts file ([N/][user@]host[:port] a line) or a,b,c' })
      .option('identity', { alias: 'i', type: 'string', array: true, nargs: 1, describe: 'With --now: private key file (default: agent, then ~/.ssh/id_*)' })
      .option('known-hosts', { type: 'string', array: true, nargs: 1, describe: 'With --now: known_hosts file(s) (default ~/.ssh/known_hosts)' })
      .option('accept-new-host-keys', { type: 'boolean', describe: 'With --now: record keys of hosts not yet known' })
      .option('remote-job', { type: 'string', describe: 'With --now: the job folder as the hosts see it (workers are also matched by the job id)' })
      .option('grace', { type: 'number', describe: 'With --now: seconds between SIGTERM and SIGKILL', default: 10 })
      .option('concurrency', { type: 'number', describe: 'With --now: hosts contacted at once', default: 8 })
      .option('connect-timeout', { type: 'number', describe: 'With --now: seconds to connect and log in, per attempt', default: 20 })
      .option('json', { type: 'boolean', describe: 'With --now: the per-host results as JSON on stdout' })
      .example('$0 stop jobs/score', 'drain: workers exit after their current chunks')
      .example('$0 stop jobs/score --now --hosts lab-hosts.txt', 'and end the workers on the lab hosts at once')
      .example('$0 stop --clear jobs/score', 'allow work again'),
  handler: async (argv) => {
    const context = getContext();
    if (argv.now && argv.clear) throw new UsageError('--now and --clear do not go together');
    if (argv.now && !argv.hosts?.length) throw new UsageError('--now needs --hosts: the hosts whose workers to end', 'piecework stop JOB --now --hosts lab-hosts.txt');
    if (!argv.now && argv.hosts?.length) throw new UsageError('--hosts goes with --now', 'without --now, the STOP file alone reaches every worker');
    // Loaded here, not at start-up: every command pays for what main.ts imports (see main.ts).
    const { requestStop } = await import('../../core/stop.js');
    if (!argv.now) {
      const result = await requestStop({ job: argv.job! }, { clear: argv.clear });
      if (result.cleared) context.stderr.write(`stop: STOP file removed; workers may run on ${result.job}\n`);
      else context.stderr.write(`stop: STOP file written; ${plural(result.liveWorkers.length, 'live worker')} will exit after their current chunks\n`);
      return;
    }

    const { openJobStore, isRemoteAddress } = await import('../../core/store/open-store.js');
    const store = await openJobStore(argv.job!);
    // Closed at once: an sftp:// store's connection would keep this process alive.
    const manifest = await readManifest(store).finally(() => store.close());
    if (argv.remoteJob !== undefined && !argv.remoteJob.startsWith('/') && !isRemoteAddress(argv.remoteJob)) throw new UsageError(`--remote-job ${argv.remoteJob}: give the job folder's absolute path on the hosts (or the sftp:// address their workers use)`);
    // Workers launched --via sftp name the job by its sftp:// address, as this command was given it.
    const options: StopOnHostsOptions = { remoteJob: argv.remoteJob ?? (isRemoteAddress(argv.job!) ? argv.job! : resolve(argv.job!)), jobId: manifest.id, hosts: argv.hosts! };
    if (argv.identity?.length) options.identityFiles = argv.identity;
    if (argv.knownHosts?.length) options.knownHostsFiles = argv.knownHosts;
    if (argv.acceptNewHostKeys) options.acceptNewHostKeys = true;
    if (argv.grace !== undefined) {
      if (!(Number.isInteger(argv.grace) && argv.grace >= 0)) throw new UsageError(`--grace ${argv.grace}: whole seconds, 0 or more`);
      options.graceSeconds = argv.grace;
    }
    const concurrency = positiveInt(argv.concurrency, '--concurrency');
    if (concurrency !== undefined) options.concurrency = concurrency;
    const timeout = positiveSeconds(argv.connectTimeout, '--connect-timeout');
    if (timeout !== undefined) options.connectTimeoutMs = Math.round(timeout * 1000);

    // Signals first, then the STOP file: a worker that is already draining for a STOP file lets
    // its running commands finish even when it gets SIGTERM, while one that gets SIGTERM first
    // stops them at once. The STOP file then reaches the workers of hosts not named here.
    const { stopOnHosts } = await import('../../remote/stop.js');
    const report = await stopOnHosts(options);
    const result = await requestStop({ job: argv.job! }, { reason: 'piecework stop --now' });
    if (argv.json) context.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    context.stderr.write(stopTable(report.hosts));
    const ended = report.hosts.reduce((n, h) => n + h.found.length, 0);
    context.stderr.write(`stop: ${plural(ended, 'worker')} ended on ${plural(report.hosts.length - report.failed, 'host')}${report.failed ? `; ${report.failed} host${report.failed === 1 ? '' : 's'} not reached` : ''}\n`);
    context.stderr.write(`stop: STOP file written; ${plural(result.liveWorkers.length, 'worker')} still beating will exit after their current chunks\n`);
    if (report.failed > 0) context.exitStatus = ExitStatus.failure;
  },
};

export default command;

/** One row a host: HOST STATUS DETAIL, hints under failed rows. */
export function stopTable(results: readonly HostStopResult[]): string {
  const hostWidth = Math.max(4, ...results.map((r) => r.host.length));
  const statusWidth = Math.max(6, ...results.map((r) => r.status.length));
  const lines = [`${'HOST'.padEnd(hostWidth)}  ${'STATUS'.padEnd(statusWidth)}  DETAIL`];
  for (const r of results) {
    lines.push(`${r.host.padEnd(hostWidth)}  ${r.status.padEnd(statusWidth)}  ${r.message.replace(`${r.host}: `, '')}`);
    if (r.hint) lines.push(`${''.padEnd(hostWidth + statusWidth + 4)}hint: ${r.hint}`);
  }
  return `${lines.join('\n')}\n`;
}
