import { resolve } from 'node:path';
import type { Arguments, CommandModule } from 'yargs';
import { ExitStatus, UsageError } from '../../core/errors.js';
// Types only: the remote layer (node-ssh and all) is loaded by the handler, never by other commands.
import type { HostResult, JobKeyReport, LaunchEvent, LaunchOptions, LaunchReport } from '../../remote/launch.js';
import type { ApplyResult, AwsSettings, GcloudSettings, SlurmSettings } from '../../remote/providers/common.js';
import { checkLabel } from '../../remote/providers/labels.js';
import { quoteArgv } from '../../remote/quote.js';
import { commandAfterDashes, exitStatusList, positiveInt, positiveSeconds } from '../args.js';
import { getContext, type CliContext } from '../context.js';
import { plural } from '../report/format.js';

export interface LaunchArgs {
  job?: string;
  hosts?: string[];
  identity?: string[];
  knownHosts?: string[];
  acceptNewHostKeys?: boolean;
  lanes?: number;
  mount?: string;
  at?: string;
  mountPort?: number;
  mountIdentity?: string;
  via?: 'sftp';
  head?: string;
  headIdentity?: string;
  jobKey?: boolean;
  remoteJob?: string;
  toolOnMount?: string;
  node?: string;
  concurrency?: number;
  connectTimeout?: number;
  provider?: 'gcloud' | 'aws' | 'slurm';
  count?: number;
  zone?: string;
  region?: string;
  machineType?: string;
  image?: string;
  partition?: string;
  preemptible?: boolean;
  cwd?: string;
  env?: string[];
  warm?: boolean;
  maxChunksPerProcess?: number;
  successExit?: string;
  haltAfter?: number;
  jobId?: string;
  providerArg?: string[];
  project?: string;
  serviceAccount?: string;
  scopes?: string;
  diskSize?: string;
  diskType?: string;
  network?: string;
  subnet?: string;
  externalIp?: boolean;
  accelerator?: string[];
  label?: string[];
  maxRunDuration?: string;
  securityGroup?: string[];
  instanceProfile?: string;
  keyName?: string;
  maxPrice?: string;
  profile?: string;
  time?: string;
  mem?: string;
  account?: string;
  qos?: string;
  gres?: string;
  constraint?: string;
  throttle?: number;
  dryRun?: boolean;
  delete?: boolean;
  wait?: boolean;
  json?: boolean;
}

const command: CommandModule<object, LaunchArgs> = {
  command: 'launch <job>',
  describe: 'Start workers on other machines: lab hosts over SSH, or cloud spot instances / a Slurm array',
  // Repeatable flags take one value each (nargs 1): `--hosts a.txt JOB` must not swallow JOB.
  builder: (y) =>
    y
      .usage(`$0 launch <job> [options] -- COMMAND ARGS…\n\nStart workers on other machines: lab hosts over SSH, or cloud spot instances / a Slurm array`)
      .positional('job', { type: 'string', describe: 'The job folder (as this machine sees it)', demandOption: true })
      .option('hosts', { type: 'string', array: true, nargs: 1, describe: 'Hosts file ([N/][user@]host[:port] a line) or a,b,c' })
      .option('identity', { alias: 'i', type: 'string', array: true, nargs: 1, describe: 'Private key file (default: agent, then ~/.ssh/id_*)' })
      .option('known-hosts', { type: 'string', array: true, nargs: 1, describe: 'known_hosts file(s) to check and record in (default ~/.ssh/known_hosts)' })
      .option('accept-new-host-keys', { type: 'boolean', describe: 'Record keys of hosts not yet known (changed keys are always refused)' })
      .option('lanes', { alias: 'j', type: 'number', describe: 'Lanes per host (default: N/ in the hosts file, else one per CPU)' })
      .option('mount', { type: 'string', describe: 'Mount [user@]head:/path with sshfs on each host first' })
      .option('at', { type: 'string', describe: 'Mount point on the hosts (with --mount)' })
      .option('mount-port', { type: 'number', describe: "The head's SSH port (with --mount)" })
      .option('mount-identity', { type: 'string', describe: 'Key for sshfs: a path on the hosts; with a cloud provider, a local file sent to the instances' })
      .option('via', { type: 'string', choices: ['sftp'] as const, describe: 'sftp: the workers reach the job over SFTP from the head (no mount, no FUSE on the hosts; they need SSH and node)' })
      .option('head', { type: 'string', describe: 'With --via sftp: [user@]host[:port] of the SSH server holding the job, as the hosts reach it (the job keeps its absolute path; not needed when JOB is an sftp:// address)' })
      .option('head-identity', { type: 'string', describe: "With --via sftp: the key for the head. --hosts, slurm: a key file on the hosts (default: their ~/.ssh/id_*); gcloud, aws: a key file here, sent to the instances (default: a job key)" })
      .option('job-key', { type: 'boolean', describe: 'Make a key for this job that the head accepts for SFTP only (restrict, internal-sftp), install it there over SSH, send it to the workers; --delete revokes it. Default with --provider gcloud|aws and --mount or --via sftp, unless a key is given (--mount-identity, --head-identity); --no-job-key: none' })
      .option('remote-job', { type: 'string', describe: 'The job folder as the hosts see it (default: mapped through --mount/--at)' })
      .option('tool-on-mount', { type: 'string', describe: 'Run piecework from the shared folder: PATH on the hosts, or no value to copy it to <share>/.piecework/' })
      .option('node', { type: 'string', describe: 'Path of node on the hosts, if not found on PATH, nvm, volta or /usr/local' })
      .option('concurrency', { type: 'number', describe: 'Hosts contacted at once', default: 8 })
      .option('connect-timeout', { type: 'number', describe: 'Seconds to connect and log in, per attempt', default: 20 })
      .option('provider', { type: 'string', choices: ['gcloud', 'aws', 'slurm'] as const, describe: 'Create workers through a cloud CLI or Slurm instead of --hosts' })
      .option('count', { type: 'number', describe: 'Instances (gcloud, aws) or array tasks (slurm) to create' })
      .option('zone', { type: 'string', describe: 'gcloud zone' })
      .option('region', { type: 'string', describe: 'aws region' })
      .option('machine-type', { type: 'string', describe: 'Machine / instance type (gcloud e2-standard-2, aws t3.medium)' })
      .option('image', { type: 'string', describe: 'gcloud project/family (default debian-cloud/debian-13) or image; aws AMI id' })
      .option('partition', { type: 'string', describe: 'Slurm partition' })
      .option('preemptible', { type: 'boolean', describe: 'gcloud: --preemptible instead of --provisioning-model=SPOT' })
      .option('cwd', { type: 'string', describe: "The command's working directory as the hosts see it (default: this folder, if inside the share)" })
      .option('env', { type: 'string', array: true, nargs: 1, describe: 'NAME=VALUE for the workers and their commands (repeatable)' })
      .option('warm', { type: 'boolean', describe: 'Passed on to `work --warm`' })
      .option('max-chunks-per-process', { type: 'number', describe: 'Passed on to `work --max-chunks-per-process N`' })
      .option('success-exit', { type: 'string', describe: 'Passed on to `work --success-exit 0,1`' })
      .option('halt-after', { type: 'number', describe: 'Passed on to `work --halt-after N`' })
      .option('job-id', { type: 'string', describe: 'With --provider: the job\'s id (job.json "id"), when the job folder is not visible here' })
      .option('provider-arg', { type: 'string', array: true, nargs: 1, describe: 'One more argument for gcloud / aws / sbatch as is, e.g. --provider-arg=--min-cpu-platform=AMD\ Milan (repeatable)' })
      .option('project', { type: 'string', describe: 'gcloud: the project' })
      .option('service-account', { type: 'string', describe: "gcloud: the instances' service account" })
      .option('scopes', { type: 'string', describe: 'gcloud: its scopes, comma-separated (add compute for instances to delete themselves)' })
      .option('disk-size', { type: 'string', describe: 'gcloud: boot disk size, e.g. 50GB' })
      .option('disk-type', { type: 'string', describe: 'gcloud: boot disk type, e.g. pd-ssd' })
      .option('network', { type: 'string', describe: 'gcloud: the VPC network' })
      .option('subnet', { type: 'string', describe: 'gcloud: the subnet; aws: the subnet id' })
      .option('external-ip', { type: 'boolean', describe: 'gcloud: --no-external-ip gives the instances no external IP' })
      .option('accelerator', { type: 'string', array: true, nargs: 1, describe: 'gcloud: e.g. type=nvidia-l4,count=1 (repeatable)' })
      .option('label', { type: 'string', array: true, nargs: 1, describe: 'gcloud: a label, aws: a tag, KEY=VALUE (repeatable)' })
      .option('max-run-duration', { type: 'string', describe: 'gcloud: delete each instance after this long, e.g. 8h' })
      .option('security-group', { type: 'string', array: true, nargs: 1, describe: 'aws: a security group id (repeatable)' })
      .option('instance-profile', { type: 'string', describe: 'aws: the IAM instance profile (name or ARN)' })
      .option('key-name', { type: 'string', describe: 'aws: the EC2 key pair for logging in' })
      .option('max-price', { type: 'string', describe: 'aws: the highest spot price per hour, USD' })
      .option('profile', { type: 'string', describe: 'aws: the CLI profile' })
      .option('time', { type: 'string', describe: 'slurm: --time limit per task, e.g. 4:00:00' })
      .option('mem', { type: 'string', describe: 'slurm: --mem per task, e.g. 8G' })
      .option('account', { type: 'string', describe: 'slurm: --account' })
      .option('qos', { type: 'string', describe: 'slurm: --qos' })
      .option('gres', { type: 'string', describe: 'slurm: --gres, e.g. gpu:1' })
      .option('constraint', { type: 'string', describe: 'slurm: --constraint' })
      .option('throttle', { type: 'number', describe: 'slurm: at most N array tasks at once (--array=1-COUNT%N)' })
      .option('dry-run', { type: 'boolean', describe: 'Print the commands and rendered scripts; start nothing' })
      .option('delete', { type: 'boolean', describe: "With --provider: delete the job's instances / cancel its Slurm jobs; then revoke the job key on the head (alone: only that)" })
      .option('wait', { type: 'boolean', describe: 'Follow progress until the job is complete (exit 0), or no worker is left alive (exit 3)' })
      .option('json', { type: 'boolean', describe: 'The per-host results (or the plan) as JSON on stdout' })
      .example('$0 launch /mnt/shared/jobs/score --hosts lab-hosts.txt -j 16 -- python3 score.py', 'lab hosts that already see the folder')
      .example('$0 launch /srv/share/jobs/score --hosts 4/lab1,4/lab2 --mount me@head:/srv/share --at /mnt/share -- ./score.sh', 'mount the folder on each host first (over sshfs)')
      .example('$0 launch /srv/share/jobs/score --provider gcloud --count 20 --zone europe-west1-b --mount me@head.example.org:/srv/share --at /mnt/share --dry-run -- ./score.sh', 'spot instances: show what would run, and the SFTP-only job key line the head would get')
      .example('$0 launch /srv/share/jobs/score --provider gcloud --delete', "delete the job's instances, then revoke its key on the head")
      .example('cd /srv/share/tools && $0 launch ../jobs/score --provider aws --count 10 --region eu-west-1 --image ami-0123 --subnet subnet-1 --security-group sg-1 --env OMP_NUM_THREADS=1 --mount me@head:/srv/share --at /mnt/share -- ./score.sh', 'up to 10 spot instances; ./score.sh runs from /mnt/share/tools')
      .example('$0 launch ~/jobs/score --provider slurm --count 50 -j 4 -- ./score.sh', 'a Slurm array of 50 tasks, 4 lanes each')
      .example('$0 launch /srv/jobs/score --hosts lab.txt --via sftp --head me@head.example.org --job-key -j 8 -- python3 /opt/score.py', 'workers reach the job over SFTP with a key made for the job, SFTP only')
      .example('$0 launch /srv/jobs/score --delete', 'when it is done: revoke that key on the head')
      .example('$0 launch /srv/jobs/score --provider gcloud --count 40 --zone europe-west4-a --via sftp --head me@head.example.org --cwd /opt/score -- python3 score.py', 'spot instances without a mount: they fetch piecework from the head and work over SFTP with a job key')
      .example('$0 launch /srv/jobs/score --provider slurm --count 20 --via sftp --head me@head.example.org --head-identity /home/me/.ssh/id_lab -- python3 /opt/score.py', 'a Slurm array over SFTP; --head-identity is a key file on the nodes'),
  handler: async (argv) => {
    const context = getContext();
    const options = launchOptionsFromArgs(argv);
    if (argv.wait && (options.dryRun || options.delete)) {
      throw new UsageError(`--wait follows the job after a launch; it does not go with --${options.dryRun ? 'dry-run' : 'delete'}`);
    }
    options.onEvent = (event) => {
      const line = describeEvent(event, context.interactive);
      if (line) context.stderr.write(`launch: ${line}\n`);
    };
    const { launch } = await import('../../remote/launch.js');
    const report = await launch(options);
    // The key file whose content the cloud scripts carry (a --head-identity of Slurm is a path on the nodes).
    const sentKey = options.mount?.identity ?? (options.provider === 'gcloud' || options.provider === 'aws' ? options.sftp?.identity : undefined);
    const output = renderReport(report, { json: argv.json ?? false, redact: sentKey });
    if (output.stdout) context.stdout.write(output.stdout);
    if (output.stderr) context.stderr.write(output.stderr);
    if (report.kind === 'ssh' && !report.dryRun && report.failed > 0) context.exitStatus = ExitStatus.failure;
    if (!argv.wait) return;
    const reason = await waitForJob(options.job, report, context);
    // Finished instances must not keep costing: a GCE instance that powered off is kept
    // (TERMINATED, disk billed) unless it could delete itself. Not after Ctrl-C: they work on.
    if (report.kind === 'provider' && report.provider !== 'slurm' && reason !== 'interrupted') {
      const removed = await launch({ ...options, delete: true, dryRun: false });
      const ids = removed.kind === 'provider' ? (removed.result?.ids ?? []) : [];
      context.stderr.write(`launch: ${ids.length ? `deleted ${plural(ids.length, 'instance')} of the job` : 'no instance of the job left to delete'} (${report.plan.jobTag})\n`);
    }
  },
};

export default command;

/**
 * `--wait`: follow the job folder until the job is complete (exit 0) or no worker is alive to
 * complete it (exit 3). Progress goes to stderr: one line redrawn on a terminal, else a line
 * whenever the numbers move (at most every 5 s).
 */
async function waitForJob(job: string, report: LaunchReport, context: CliContext): Promise<'complete' | 'no-workers' | 'launch-ended' | 'interrupted'> {
  if (report.kind === 'ssh' && !report.dryRun && report.started === 0) {
    context.stderr.write('launch: no host started a worker; nothing to wait for\n');
    context.exitStatus = ExitStatus.incomplete;
    return 'no-workers';
  }
  const { followJob, formatSeconds, progressLine } = await import('../../remote/wait.js');
  // A Slurm array whose tasks all ended before any worker showed up (a node without node, a
  // head it could not reach) ends the wait at once, pointing at the tasks' output.
  const slurmArray = report.kind === 'provider' && report.provider === 'slurm' && report.result ? await slurmArrayOf(report.result) : undefined;
  let lastKey = '';
  let lastPrinted = 0;
  let drawn = false;
  const outcome = await followJob(job, {
    // Instances boot and Slurm arrays queue before their first heartbeat; SSH workers are up already.
    startupMs: report.kind === 'provider' ? 15 * 60_000 : 60_000,
    ...(slurmArray ? { launchEnded: slurmArray.ended } : {}),
    signal: context.signals().signal,
    onProgress: (status) => {
      const line = progressLine(status);
      if (context.interactive) {
        context.stderr.write(`\r\x1b[Klaunch: ${line}`);
        drawn = true;
        return;
      }
      const key = `${status.counts.done} ${status.counts.running} ${status.counts.failed} ${status.workers.alive}`;
      if (key !== lastKey && Date.now() - lastPrinted >= 5000) {
        context.stderr.write(`launch: ${line}\n`);
        lastKey = key;
        lastPrinted = Date.now();
      }
    },
  });
  if (drawn) context.stderr.write('\n');
  const took = formatSeconds(outcome.elapsedMs / 1000);
  const counts = outcome.status?.counts;
  if (outcome.complete) {
    context.stderr.write(`launch: job complete: ${plural(counts?.chunks ?? 0, 'chunk')} done (waited ${took})\n`);
    context.exitStatus = ExitStatus.ok;
  } else if (outcome.reason === 'launch-ended') {
    const left = counts ? counts.chunks - counts.done : undefined;
    context.stderr.write(
      `launch: the Slurm array ${slurmArray?.id ?? ''} left the queue with ${left === undefined ? 'chunks' : plural(left, 'chunk')} left and no worker alive (waited ${took})\n` +
        `launch: hint: its tasks' output says why: ${slurmArray?.output ?? 'see sacct'}\n`,
    );
    context.exitStatus = ExitStatus.incomplete;
  } else if (outcome.reason === 'interrupted') {
    context.stderr.write(`launch: stopped waiting after ${took}; the workers go on (piecework status ${job} --watch)\n`);
    context.exitStatus = ExitStatus.interrupted;
  } else {
    const left = counts ? counts.chunks - counts.done : undefined;
    context.stderr.write(
      `launch: job incomplete: ${left === undefined ? 'chunks' : plural(left, 'chunk')} left and no worker alive (waited ${took})\n` +
        `launch: hint: see why with piecework status ${job}; launch again to add workers\n`,
    );
    context.exitStatus = ExitStatus.incomplete;
  }
  return outcome.reason;
}

/** The submitted array: its id, whether it left the queue, and where its tasks' output went. */
async function slurmArrayOf(result: ApplyResult): Promise<{ id: string; output: string | undefined; ended: () => Promise<boolean | undefined> } | undefined> {
  const { arrayEnded, arrayOutputPattern, submittedArrayId } = await import('../../remote/providers/slurm.js');
  const id = submittedArrayId(result);
  if (!id) return undefined;
  return { id, output: arrayOutputPattern(result, id), ended: () => arrayEnded(id) };
}

/** argv → typed options (no I/O): what the table-driven parse test checks. */
export function launchOptionsFromArgs(argv: Arguments<LaunchArgs> | LaunchArgs & { '--'?: unknown }): LaunchOptions {
  const job = argv.job;
  if (!job) throw new UsageError('give the job folder: piecework launch JOB …');
  const options: LaunchOptions = { job, command: commandAfterDashes(argv as Arguments) };
  if (argv.provider && argv.hosts?.length) throw new UsageError('give either --hosts or --provider, not both');
  // Without --provider, --delete revokes the job's key and nothing else (lab hosts are not deleted).
  if (!argv.provider && !argv.hosts?.length && !argv.delete) {
    throw new UsageError('where should workers run? give --hosts FILE|a,b,c, or --provider gcloud|aws|slurm');
  }
  if ((argv.mount === undefined) !== (argv.at === undefined)) throw new UsageError('--mount and --at go together: --mount user@head:/path --at /mnt/point');
  if (argv.mount === undefined && (argv.mountPort !== undefined || argv.mountIdentity !== undefined)) {
    throw new UsageError('--mount-port and --mount-identity need --mount', argv.via === 'sftp' ? 'with --via sftp: the port goes in --head [user@]host:port, the key in --head-identity' : undefined);
  }

  if (argv.hosts?.length) options.hosts = argv.hosts;
  if (argv.identity?.length) options.identityFiles = argv.identity;
  if (argv.knownHosts?.length) options.knownHostsFiles = argv.knownHosts;
  if (argv.acceptNewHostKeys) options.acceptNewHostKeys = true;
  const lanes = positiveInt(argv.lanes, '--lanes');
  if (lanes !== undefined) options.lanes = lanes;
  if (argv.mount !== undefined && argv.at !== undefined) {
    options.mount = { source: argv.mount, at: argv.at };
    const port = positiveInt(argv.mountPort, '--mount-port');
    if (port !== undefined) options.mount.port = port;
    if (argv.mountIdentity) options.mount.identity = argv.mountIdentity;
  }
  if (argv.remoteJob) options.remoteJob = argv.remoteJob;
  if (argv.jobKey !== undefined) options.jobKey = argv.jobKey;
  if (argv.via === 'sftp') options.sftp = sftpLaunch(job, argv);
  else if (argv.head !== undefined || argv.headIdentity !== undefined) throw new UsageError('--head and --head-identity need --via sftp');
  // `--tool-on-mount` alone: copy the bundle onto the share; with a value: the path on the hosts.
  if (argv.toolOnMount !== undefined) options.toolOnMount = argv.toolOnMount === '' ? true : argv.toolOnMount;
  if (argv.node) options.node = argv.node;
  const concurrency = positiveInt(argv.concurrency, '--concurrency');
  if (concurrency !== undefined) options.concurrency = concurrency;
  const timeout = positiveSeconds(argv.connectTimeout, '--connect-timeout');
  if (timeout !== undefined) options.connectTimeoutMs = Math.round(timeout * 1000);

  if (argv.cwd !== undefined) options.cwd = argv.cwd;
  if (argv.env?.length) options.env = argv.env.map(parseEnv);
  const workOptions = [
    ...(argv.warm ? ['--warm'] : []),
    ...(argv.maxChunksPerProcess !== undefined ? ['--max-chunks-per-process', String(positiveInt(argv.maxChunksPerProcess, '--max-chunks-per-process'))] : []),
    ...(argv.successExit !== undefined ? ['--success-exit', exitStatusList(argv.successExit)!.join(',')] : []),
    ...(argv.haltAfter !== undefined ? ['--halt-after', String(positiveInt(argv.haltAfter, '--halt-after'))] : []),
  ];
  if (workOptions.length) options.workOptions = workOptions;

  const given = (Object.keys(providerFlags) as (keyof typeof providerFlags)[]).filter((key) => argv[key] !== undefined);
  if (!argv.provider) {
    const [flag] = given;
    if (flag) throw new UsageError(`--${kebab(flag)} needs --provider (${providerFlags[flag].join(', ')})`);
  } else {
    const provider = argv.provider;
    for (const flag of given) {
      if (!(providerFlags[flag] as readonly Provider[]).includes(provider)) {
        throw new UsageError(`--${kebab(flag === 'externalIp' ? 'noExternalIp' : flag)} does not apply to --provider ${provider}`, `it is for --provider ${providerFlags[flag].join(' or ')}; --provider-arg=ARG passes anything else to ${provider === 'slurm' ? 'sbatch' : provider}`);
      }
    }
    options.provider = provider;
    Object.assign(options, providerOptionsFromArgs(argv));
  }
  if (argv.delete) options.delete = true;
  if (argv.dryRun) options.dryRun = true;
  return options;
}

type Provider = NonNullable<LaunchArgs['provider']>;
const all: readonly Provider[] = ['gcloud', 'aws', 'slurm'];

/** Which provider each provider flag is for: any other is a usage error. */
const providerFlags = {
  count: all, jobId: all, providerArg: all,
  zone: ['gcloud'], region: ['aws'], machineType: ['gcloud', 'aws'], image: ['gcloud', 'aws'], partition: ['slurm'], preemptible: ['gcloud'],
  project: ['gcloud'], serviceAccount: ['gcloud'], scopes: ['gcloud'], diskSize: ['gcloud'], diskType: ['gcloud'], network: ['gcloud'],
  subnet: ['gcloud', 'aws'], externalIp: ['gcloud'], accelerator: ['gcloud'], label: ['gcloud', 'aws'], maxRunDuration: ['gcloud'],
  securityGroup: ['aws'], instanceProfile: ['aws'], keyName: ['aws'], maxPrice: ['aws'], profile: ['aws'],
  time: ['slurm'], mem: ['slurm'], account: ['slurm'], qos: ['slurm'], gres: ['slurm'], constraint: ['slurm'], throttle: ['slurm'],
} as const satisfies Partial<Record<keyof LaunchArgs, readonly Provider[]>>;

/** The provider flags, checked, as launch options (only those given). */
function providerOptionsFromArgs(argv: LaunchArgs): Partial<LaunchOptions> {
  const options: Partial<LaunchOptions> = {};
  const count = positiveInt(argv.count, '--count');
  if (count !== undefined) options.count = count;
  for (const key of ['zone', 'region', 'machineType', 'image', 'partition', 'project', 'jobId'] as const) {
    const value = argv[key];
    if (value !== undefined) options[key] = value;
  }
  if (argv.preemptible) options.spotModel = 'preemptible';
  if (argv.providerArg?.length) options.providerArgs = argv.providerArg;
  const labels = argv.label?.map((text) => {
    const [key, value] = splitPair(text, '--label', 'KEY=VALUE');
    const problem = checkLabel(key, value);
    if (problem) throw new UsageError(`--label ${text}: ${problem}`);
    return [key, value] as const;
  });
  if (argv.provider === 'gcloud') {
    const g: GcloudSettings = {};
    if (argv.serviceAccount) g.serviceAccount = argv.serviceAccount;
    if (argv.scopes) g.scopes = argv.scopes.split(',').filter((x) => x !== '');
    if (argv.diskSize) g.bootDiskSize = argv.diskSize;
    if (argv.diskType) g.bootDiskType = argv.diskType;
    if (argv.network) g.network = argv.network;
    if (argv.subnet) g.subnet = argv.subnet;
    if (argv.externalIp === false) g.noAddress = true;
    if (argv.accelerator?.length) g.accelerators = argv.accelerator;
    if (labels?.length) g.labels = labels;
    if (argv.maxRunDuration) {
      if (!/^(\d+[dhms])+$/.test(argv.maxRunDuration)) throw new UsageError(`--max-run-duration ${argv.maxRunDuration}: expected a duration like 8h, 90m or 1d12h`);
      g.maxRunDuration = argv.maxRunDuration;
    }
    if (Object.keys(g).length) options.gcloud = g;
  } else if (argv.provider === 'aws') {
    const a: AwsSettings = {};
    if (argv.subnet) a.subnetId = argv.subnet;
    if (argv.securityGroup?.length) a.securityGroupIds = argv.securityGroup;
    if (argv.instanceProfile) a.instanceProfile = argv.instanceProfile;
    if (argv.keyName) a.keyName = argv.keyName;
    if (argv.maxPrice !== undefined) {
      if (!/^\d+(\.\d+)?$/.test(argv.maxPrice)) throw new UsageError(`--max-price ${argv.maxPrice}: expected a price in USD per hour, e.g. 0.05`);
      a.maxPrice = argv.maxPrice;
    }
    if (argv.profile) a.profile = argv.profile;
    if (labels?.length) a.tags = labels;
    if (Object.keys(a).length) options.aws = a;
  } else if (argv.provider === 'slurm') {
    const sl: SlurmSettings = {};
    for (const key of ['time', 'mem', 'account', 'qos', 'gres', 'constraint'] as const) {
      const value = argv[key];
      if (value !== undefined) sl[key] = value;
    }
    const throttle = positiveInt(argv.throttle, '--throttle');
    if (throttle !== undefined) sl.throttle = throttle;
    if (Object.keys(sl).length) options.slurm = sl;
  }
  return options;
}

/** `--env NAME=VALUE`: the name a shell variable name; the value anything (even empty). */
/** The job's sftp:// address as the hosts reach the head: JOB itself, or --head + JOB's absolute path. */
function sftpLaunch(job: string, argv: { head?: string; headIdentity?: string }): { address: string; identity?: string } {
  let address: string;
  if (/^sftp:\/\//i.test(job)) {
    if (argv.head !== undefined) throw new UsageError('--head is for a job given as a path: JOB is already an sftp:// address');
    address = job;
  } else {
    if (argv.head === undefined) throw new UsageError('--via sftp needs --head [user@]host[:port]: the SSH server the hosts reach the job on', 'e.g. --via sftp --head me@head.example.org, or give JOB as sftp://me@head/srv/jobs/score');
    if (!/^(?:[^@\s/:]+@)?(?:\[[^\]\s]+\]|[^@\s/:[\]]+)(?::\d+)?$/.test(argv.head)) throw new UsageError(`--head ${argv.head}: expected [user@]host[:port]`);
    address = `sftp://${argv.head}${encodeURI(resolve(job))}`;
  }
  return { address, ...(argv.headIdentity !== undefined ? { identity: argv.headIdentity } : {}) };
}

function parseEnv(text: string): readonly [string, string] {
  const [name, value] = splitPair(text, '--env', 'NAME=VALUE');
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--env ${text}: ${name} is not a variable name (letters, digits and _, not starting with a digit)`);
  if (name.startsWith('PW_')) throw new UsageError(`--env ${text}: names starting with PW_ are the launch scripts' own`);
  return [name, value];
}

function splitPair(text: string, flag: string, shape: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw new UsageError(`${flag} ${text}: expected ${shape}`);
  return [text.slice(0, at), text.slice(at + 1)];
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function describeEvent(event: LaunchEvent, interactive: boolean): string | undefined {
  switch (event.type) {
    case 'host:retry':
      return `${event.host}: connection dropped (${event.reason}); retry ${event.attempt} in ${(event.delayMs / 1000).toFixed(1)} s`;
    case 'host:key-recorded':
      return `${event.host}: new host key recorded in ${event.file} (${event.keyType} ${event.fingerprint})`;
    case 'host:uploading':
      return `${event.host}: copying piecework (${Math.round(event.bytes / 1024)} KiB) to ${event.remotePath}`;
    case 'tool:copied':
      return `copied piecework to ${event.path}`;
    case 'provider:command':
      return `running ${event.argv.join(' ')}`;
    case 'job-key:created':
      return `new job key ${event.comment} in ${event.file}`;
    case 'job-key:installed':
      return `job key ${event.comment} ${event.result === 'added' ? 'added to' : 'already in'} ${event.file} on ${event.head} (SFTP only)`;
    case 'job-key:revoked':
      return event.result === 'removed'
        ? `job key ${event.comment} revoked on ${event.head} (${plural(event.lines, 'line')} removed from ${event.file})`
        : `job key ${event.comment} was not in ${event.file} on ${event.head} (nothing to revoke there)`;
    case 'job-key:forgotten':
      return `job key ${event.comment} deleted here (${event.file})`;
    case 'host:connecting':
    case 'host:checking':
    case 'host:starting':
      return interactive ? `${event.host}: ${event.type.slice('host:'.length)}…` : undefined;
    case 'host:done':
      return undefined; // the table says it
  }
}

/** The report as text: data (JSON, scripts, ids) for stdout, the table for stderr. */
export function renderReport(report: LaunchReport, settings: { json: boolean; redact?: string | undefined }): { stdout: string; stderr: string } {
  // `redact`: the key file whose contents the scripts carry (--mount-identity); a job key is named by the report.
  const options = { json: settings.json, redact: keyLabel(report, settings.redact) };
  if (options.json) {
    const data = report.kind === 'provider' ? { ...report, plan: { ...report.plan, files: report.plan.files.map((f) => ({ ...f, content: redacted(f.content, options.redact) })) } } : report;
    return { stdout: `${JSON.stringify(data, null, 2)}\n`, stderr: report.kind === 'ssh' && !report.dryRun ? hostTable(report.hosts) : '' };
  }
  if (report.kind === 'job-key') {
    const key = report.jobKey;
    if (report.dryRun) return { stdout: jobKeyPlan(key), stderr: `launch: dry run${key ? '' : ': no job key of this job is kept here'}; nothing was run\n` };
    return { stdout: '', stderr: key ? '' : 'launch: no job key of this job is kept here: nothing to revoke\n' };
  }
  if (report.kind === 'ssh' && report.dryRun) {
    const scripts = jobKeyPlan(report.jobKey) + report.hosts.map((h) => `# ---- ${h.host}: sh -s with this script on stdin ----\n${h.script}`).join('\n');
    return { stdout: scripts, stderr: `launch: dry run: ${plural(report.hosts.length, 'host')}, job ${report.remoteJob} on the hosts; nothing started\n` };
  }
  if (report.kind === 'ssh') {
    const summary = `launch: ${report.started} of ${plural(report.hosts.length, 'host')} started${report.failed ? `; ${report.failed} failed` : ''}\n`;
    return { stdout: '', stderr: hostTable(report.hosts) + summary };
  }
  const { plan } = report;
  if (report.dryRun) {
    const files = jobKeyPlan(report.jobKey) + plan.files.map((f) => `# ---- ${f.path}${f.encoding === 'gzip' ? ` (sent gzip-compressed, ${f.bytes ?? '?'} bytes)` : ''} ----\n${redacted(f.content, options.redact)}`).join('\n');
    const commands = plan.commands.map((c, i) => {
      const after = plan.commands[i - 1]?.role === 'lookup' ? ' <ids printed by the command above>' : '';
      return `# ${c.description}\n${quoteArgv(c.argv)}${after}`;
    });
    return { stdout: `${files}${files ? '\n' : ''}${commands.join('\n')}\n`, stderr: `launch: dry run (${plan.provider}, ${plan.jobTag}); nothing was run\n` };
  }
  const outcomes = report.result?.commands ?? [];
  const stdout = outcomes.map((o) => o.stdout.trim()).filter((s) => s !== '').join('\n');
  const skipped = outcomes.some((o) => o.skipped);
  const what = plan.action === 'delete' ? (skipped ? `no instances or jobs of ${plan.jobTag} found` : `deleted what ${plan.jobTag} had`) : `created through ${plan.provider} (${plan.jobTag})`;
  const cleanup =
    plan.action === 'create' && plan.provider === 'gcloud'
      ? 'launch: done instances delete themselves if their service account may (--scopes with compute), else they power off and are kept (disk billed): --wait, or launch JOB --provider gcloud --delete, removes them\n'
      : '';
  return { stdout: stdout ? `${stdout}\n` : '', stderr: `launch: ${what}\n${cleanup}` };
}

/** A dry run's account of the job key: the line the head would get, or where it would be revoked. */
function jobKeyPlan(key: JobKeyReport | undefined): string {
  if (key?.line) return `# ---- the job key: this line would be added to ${key.authorizedKeys ?? '~/.ssh/authorized_keys'} on ${key.head ?? 'the head'} (over SSH, as you) ----\n${key.line}\n`;
  if (key?.wouldRevoke) return `# ---- the job key ${key.comment} would be revoked on ${key.wouldRevoke.join(', ') || 'no head'}, and ${key.keyFile || 'its record'} deleted here ----\n`;
  return '';
}

function redacted(text: string, label: string | undefined): string {
  // The sshfs key travels in the startup script; a dry run shows where it comes from, not the key.
  return label ? text.replace(/(PW_MOUNT_KEY=)'[^']*'/, `$1'<${label}>'`) : text;
}

/** What the printed scripts say instead of the key they carry: the job key, or the file given. */
function keyLabel(report: LaunchReport, keyFile: string | undefined): string | undefined {
  if (report.kind === 'provider' && report.jobKey?.line) return `the job key ${report.jobKey.comment}${report.dryRun && report.jobKey.line.includes('<a new key>') ? ', made when launch runs' : `, ${report.jobKey.keyFile}`}`;
  return keyFile ? `contents of ${keyFile}` : undefined;
}

/** One row a host: HOST STATUS DETAIL, hints under failed rows. */
export function hostTable(results: readonly HostResult[]): string {
  const hostWidth = Math.max(4, ...results.map((r) => r.host.length));
  const statusWidth = Math.max(6, ...results.map((r) => r.status.length));
  const lines = [`${'HOST'.padEnd(hostWidth)}  ${'STATUS'.padEnd(statusWidth)}  DETAIL`];
  for (const r of results) {
    const detail =
      r.status === 'started' ? `${plural(r.lanes ?? 0, 'lane')}, pid ${r.pid}${r.finished ? ' (finished already)' : ''}${r.log ? `, log ${r.log}` : ''}` : r.message.replace(`${r.host}: `, '');
    lines.push(`${r.host.padEnd(hostWidth)}  ${r.status.padEnd(statusWidth)}  ${detail}`);
    if (r.hint && r.status !== 'started') lines.push(`${''.padEnd(hostWidth + statusWidth + 4)}hint: ${r.hint}`);
  }
  return `${lines.join('\n')}\n`;
}
