import type { CommandModule } from 'yargs';
import { UsageError } from '../../core/errors.js';
import { getContext } from '../context.js';
import { nonNegativeInt, positiveSeconds } from '../args.js';

interface DashboardArgs {
  job?: string;
  port?: number;
  host?: string;
  stale?: number;
}

const DEFAULT_PORT = 8765;

const command: CommandModule<object, DashboardArgs> = {
  command: 'dashboard <job>',
  describe: 'Serve a live web page of a job: progress over time, hosts, a grid of chunks, failures',
  builder: (y) =>
    y
      .positional('job', { type: 'string', describe: 'The job folder', demandOption: true })
      .option('port', { alias: 'p', type: 'number', describe: `TCP port (default ${DEFAULT_PORT}; 0 picks a free one)` })
      .option('host', { type: 'string', describe: 'Address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for everyone who can reach it)' })
      .option('stale', { type: 'number', describe: "Seconds after which a silent claim counts as stale (default: the job's)" })
      .example('$0 dashboard /mnt/share/jobs/score', `then open http://127.0.0.1:${DEFAULT_PORT}/`)
      .example('ssh -L 8765:127.0.0.1:8765 head-node piecework dashboard /mnt/share/jobs/score', 'watch a cluster job from your laptop')
      .example('$0 dashboard jobs/score --port 0', 'any free port; the URL is printed on stdout')
      .epilogue('The page refreshes itself every 2 seconds; one scan of the job folder serves every open tab. Ctrl-C stops the server.\nExit status: 0 when stopped; 4 no job at that path.'),
  handler: async (argv) => {
    const context = getContext();
    const { signal } = context.signals();
    // Loaded here: the server and page are only needed by this command.
    const { startDashboard } = await import('../../dashboard/server.js');
    const port = nonNegativeInt(argv.port, '--port') ?? DEFAULT_PORT;
    if (port > 65535) throw new UsageError(`--port ${port}: a TCP port is at most 65535`);
    const dashboard = await startDashboard({
      job: argv.job!,
      port,
      host: argv.host,
      staleSeconds: positiveSeconds(argv.stale, '--stale'),
    });
    context.stdout.write(dashboard.url + '\n');
    context.stderr.write(`dashboard: serving ${argv.job} — Ctrl-C to stop\n`);
    if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    await dashboard.close();
  },
};

export default command;
