import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { UsageError } from '../../src/core/errors.js';
import launchCommand, { hostTable, launchOptionsFromArgs, renderReport, } from '../../src/cli/commands/launch.js';
import type { HostResult, LaunchOptions } from '../../src/remote/launch.js';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** Parse argv with the real builder, as src/cli/main.ts configures yargs, and map to options. */
async function parse(argv: string[]): Promise<LaunchOptions> {
  let options: LaunchOptions | undefined;
  await yargs(argv)
    .command({ ...launchCommand, handler: (args) => void (options = launchOptionsFromArgs(args as never)) })
    .parserConfiguration({ 'populate--': true, 'camel-case-expansion': true })
    .strict()
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new UsageError(message);
    })
    .parseAsync();
  assert.ok(options, 'handler ran');
  return options;
}

test('launch flags parse to exact options (argv in, options out)', async () => {
  const cases: [string, LaunchOptions][] = [
    ['launch J --hosts lab.txt -- python3 score.py', { job: 'J', command: ['python3', 'score.py'], hosts: ['lab.txt'], concurrency: 8, connectTimeoutMs: 20_000 }],
    [
      'launch J --hosts a,b --hosts c.txt -j 16 -i k1 -i k2 --known-hosts kh --accept-new-host-keys --concurrency 4 --connect-timeout 2.5 -- cmd -j 08 --x=1 -- y',
      {
        job: 'J',
        command: ['cmd', '-j', '08', '--x=1', '--', 'y'],
        hosts: ['a,b', 'c.txt'],
        lanes: 16,
        identityFiles: ['k1', 'k2'],
        knownHostsFiles: ['kh'],
        acceptNewHostKeys: true,
        concurrency: 4,
        connectTimeoutMs: 2500,
      },
    ],
    [
      'launch /srv/share/jobs/s --hosts h --mount me@head:/srv/share --at /mnt/share --mount-port 2222 --mount-identity /home/me/.ssh/k --remote-job /x/s --node /opt/node/bin/node -- c',
      {
        job: '/srv/share/jobs/s',
        command: ['c'],
        hosts: ['h'],
        mount: { source: 'me@head:/srv/share', at: '/mnt/share', port: 2222, identity: '/home/me/.ssh/k' },
        remoteJob: '/x/s',
        node: '/opt/node/bin/node',
        concurrency: 8,
        connectTimeoutMs: 20_000,
      },
    ],
    ['launch --hosts h -i k J --hosts x,y -- c', { job: 'J', command: ['c'], hosts: ['h', 'x,y'], identityFiles: ['k'], concurrency: 8, connectTimeoutMs: 20_000 }],
    ['launch J --hosts h --tool-on-mount -- c', { job: 'J', command: ['c'], hosts: ['h'], toolOnMount: true, concurrency: 8, connectTimeoutMs: 20_000 }],
    ['launch J --hosts h --tool-on-mount /mnt/x/pw.mjs --dry-run -- c', { job: 'J', command: ['c'], hosts: ['h'], toolOnMount: '/mnt/x/pw.mjs', dryRun: true, concurrency: 8, connectTimeoutMs: 20_000 }],
    [
      'launch J --provider gcloud --count 20 --zone europe-west1-b --machine-type e2-standard-8 --image debian-cloud/debian-13 --preemptible -- c',
      { job: 'J', command: ['c'], provider: 'gcloud', count: 20, zone: 'europe-west1-b', machineType: 'e2-standard-8', image: 'debian-cloud/debian-13', spotModel: 'preemptible', concurrency: 8, connectTimeoutMs: 20_000 },
    ],
    ['launch J --provider aws --region eu-west-1 --delete', { job: 'J', command: [], provider: 'aws', region: 'eu-west-1', delete: true, concurrency: 8, connectTimeoutMs: 20_000 }],
    ['launch J --provider slurm --count 50 -j 4 --partition short -- c', { job: 'J', command: ['c'], provider: 'slurm', count: 50, lanes: 4, partition: 'short', concurrency: 8, connectTimeoutMs: 20_000 }],
    // The job key: on or off by flag; --delete alone revokes it (lab hosts are not deleted).
    ['launch J --provider aws --count 2 --mount me@head:/x --at /m --no-job-key -- c', { job: 'J', command: ['c'], provider: 'aws', count: 2, mount: { source: 'me@head:/x', at: '/m' }, jobKey: false, concurrency: 8, connectTimeoutMs: 20_000 }],
    ['launch J --provider slurm --count 2 --via sftp --head me@head:2222 --head-identity /k -- c', { job: 'J', command: ['c'], provider: 'slurm', count: 2, sftp: { address: `sftp://me@head:2222${encodeURI(resolve('J'))}`, identity: '/k' }, concurrency: 8, connectTimeoutMs: 20_000 }],
    ['launch J --hosts h --via sftp --head me@head --job-key -- c', { job: 'J', command: ['c'], hosts: ['h'], sftp: { address: `sftp://me@head${encodeURI(resolve('J'))}` }, jobKey: true, concurrency: 8, connectTimeoutMs: 20_000 }],
    ['launch J --delete', { job: 'J', command: [], delete: true, concurrency: 8, connectTimeoutMs: 20_000 }],
  ];
  for (const [line, expected] of cases) assert.deepEqual(await parse(line.split(' ')), expected, line);
});

test('launch: working directory, environment, work options and each provider\'s expert flags parse to exact options', async () => {
  const defaults = { concurrency: 8, connectTimeoutMs: 20_000 };
  const cases: [string, LaunchOptions][] = [
    [
      'launch J --hosts h --cwd /mnt/x/tools --env A=1 --env B=x=y --env EMPTY= --warm --max-chunks-per-process 20 -- ./c',
      { job: 'J', command: ['./c'], hosts: ['h'], cwd: '/mnt/x/tools', env: [['A', '1'], ['B', 'x=y'], ['EMPTY', '']], workOptions: ['--warm', '--max-chunks-per-process', '20'], ...defaults },
    ],
    [
      'launch J --hosts h --success-exit 0,1 --halt-after 5 -- grep x',
      { job: 'J', command: ['grep', 'x'], hosts: ['h'], workOptions: ['--success-exit', '0,1', '--halt-after', '5'], ...defaults },
    ],
    [
      'launch J --provider gcloud --count 2 --zone z --project p --service-account sa@p.iam.gserviceaccount.com --scopes cloud-platform,compute --disk-size 50GB --disk-type pd-ssd --network n --subnet s --no-external-ip --accelerator type=nvidia-l4,count=1 --label team=nlp --max-run-duration 8h --provider-arg=--min-cpu-platform=AMD --job-id abc123 -- c',
      {
        job: 'J', command: ['c'], provider: 'gcloud', count: 2, zone: 'z', project: 'p', jobId: 'abc123', providerArgs: ['--min-cpu-platform=AMD'],
        gcloud: { serviceAccount: 'sa@p.iam.gserviceaccount.com', scopes: ['cloud-platform', 'compute'], bootDiskSize: '50GB', bootDiskType: 'pd-ssd', network: 'n', subnet: 's', noAddress: true, accelerators: ['type=nvidia-l4,count=1'], labels: [['team', 'nlp']], maxRunDuration: '8h' },
        ...defaults,
      },
    ],
    [
      'launch J --provider aws --count 10 --region r --image ami-1 --subnet subnet-1 --security-group sg-1 --security-group sg-2 --instance-profile pw --key-name me --max-price 0.05 --profile lab --label team=nlp -- c',
      { job: 'J', command: ['c'], provider: 'aws', count: 10, region: 'r', image: 'ami-1', aws: { subnetId: 'subnet-1', securityGroupIds: ['sg-1', 'sg-2'], instanceProfile: 'pw', keyName: 'me', maxPrice: '0.05', profile: 'lab', tags: [['team', 'nlp']] }, ...defaults },
    ],
    [
      'launch J --provider slurm --count 50 --time 4:00:00 --mem 8G --account lab --qos low --gres gpu:1 --constraint avx2 --throttle 5 --provider-arg=--exclusive -- c',
      { job: 'J', command: ['c'], provider: 'slurm', count: 50, providerArgs: ['--exclusive'], slurm: { time: '4:00:00', mem: '8G', account: 'lab', qos: 'low', gres: 'gpu:1', constraint: 'avx2', throttle: 5 }, ...defaults },
    ],
  ];
  for (const [line, expected] of cases) assert.deepEqual(await parse(line.split(' ')), expected, line);
});

test('launch: flags for another provider, bad --env and bad labels are usage errors with a hint', async () => {
  const cases: [string, RegExp][] = [
    ['launch J --provider slurm --count 2 --zone z -- c', /--zone does not apply to --provider slurm/],
    ['launch J --provider gcloud --count 2 --zone z --time 1:00:00 -- c', /--time does not apply to --provider gcloud/],
    ['launch J --provider aws --count 2 --no-external-ip -- c', /--no-external-ip does not apply to --provider aws/],
    ['launch J --provider slurm --count 2 --label a=b -- c', /--label does not apply to --provider slurm/],
    ['launch J --provider gcloud --count 2 --security-group sg-1 -- c', /--security-group does not apply to --provider gcloud/],
    ['launch J --hosts h --time 1:00:00 -- c', /--time needs --provider \(slurm\)/],
    ['launch J --hosts h --job-id x -- c', /--job-id needs --provider/],
    ['launch J --hosts h --env NOVALUE -- c', /--env NOVALUE: expected NAME=VALUE/],
    ['launch J --hosts h --env 1X=2 -- c', /1X is not a variable name/],
    ['launch J --hosts h --env PW_JOB=x -- c', /names starting with PW_/],
    ['launch J --provider gcloud --count 1 --label Team=x -- c', /label key "Team"/],
    ['launch J --provider gcloud --count 1 --label piecework-job=x -- c', /the one launch sets itself/],
    ['launch J --provider gcloud --count 1 --max-run-duration soon -- c', /--max-run-duration soon: expected a duration/],
    ['launch J --provider aws --count 1 --max-price cheap -- c', /--max-price cheap/],
    ['launch J --provider slurm --count 1 --throttle 0 -- c', /--throttle 0: must be a whole number/],
    ['launch J --hosts h --max-chunks-per-process 0 -- c', /--max-chunks-per-process 0/],
  ];
  for (const [line, message] of cases) {
    await assert.rejects(parse(line.split(' ')), (e: unknown) => e instanceof UsageError && message.test(e.message), line);
  }
  // The hint says where the flag belongs and how to pass anything else.
  await assert.rejects(parse('launch J --provider slurm --count 2 --zone z -- c'.split(' ')), (e: unknown) => e instanceof UsageError && /--provider gcloud; --provider-arg=ARG passes anything else to sbatch/.test(e.hint ?? ''));
});

test('contradictory or incomplete launch flags are usage errors', async () => {
  const cases: [string, RegExp][] = [
    ['launch J -- c', /where should workers run/],
    ['launch J --hosts h --provider aws -- c', /either --hosts or --provider/],
    ['launch J --hosts h --mount me@head:/x -- c', /--mount and --at go together/],
    ['launch J --hosts h --mount-port 2 -- c', /need --mount/],
    ['launch J --provider aws --via sftp --head me@h --mount-identity k -- c', /need --mount/],
    ['launch J --provider gcloud --head me@h -- c', /--head and --head-identity need --via sftp/],
    ['launch J --hosts h --zone z -- c', /--zone needs --provider \(gcloud\)/],
    ['launch J --hosts h --machine-type m -- c', /--machine-type needs --provider/],
    ['launch J --hosts h -j 0 -- c', /--lanes 0: must be a whole number/],
    ['launch J --provider azure -- c', /Invalid values|Choices/],
    ['launch J --hosts h --no-such-flag -- c', /Unknown argument/],
  ];
  for (const [line, message] of cases) {
    await assert.rejects(parse(line.split(' ')), (e: unknown) => e instanceof UsageError && message.test(e.message), line);
  }
});

const result = (partial: Partial<HostResult>): HostResult => ({
  host: 'h',
  spec: { host: 'h', port: 22, source: 'x' },
  status: 'started',
  message: '',
  attempts: 1,
  elapsedMs: 5,
  ...partial,
});

test('the per-host table has one row a host and hints under failures', () => {
  const table = hostTable([
    result({ host: 'lab1', status: 'started', lanes: 8, pid: 123, log: '/j/logs/launch-lab1-9.log', message: 'started 8 lanes (pid 123)' }),
    result({ host: 'me@lab2:2222', status: 'host-key-changed', message: 'me@lab2:2222: HOST KEY HAS CHANGED', hint: 'remove the old entry' }),
  ]);
  assert.equal(
    table,
    [
      'HOST          STATUS            DETAIL',
      'lab1          started           8 lanes, pid 123, log /j/logs/launch-lab1-9.log',
      'me@lab2:2222  host-key-changed  HOST KEY HAS CHANGED',
      '                                hint: remove the old entry',
      '',
    ].join('\n'),
  );
});

test('reports: data and scripts on stdout, the table and summary on stderr, keys redacted', () => {
  const report = { kind: 'ssh' as const, dryRun: false as const, job: 'J', remoteJob: 'J', hosts: [result({ host: 'lab1', lanes: 2, pid: 7 })], started: 1, failed: 0 };
  const human = renderReport(report, { json: false });
  assert.equal(human.stdout, '');
  assert.match(human.stderr, /^HOST +STATUS +DETAIL\nlab1 +started +2 lanes, pid 7\nlaunch: 1 of 1 host started\n$/);
  const json = renderReport(report, { json: true });
  assert.equal((JSON.parse(json.stdout) as { started: number }).started, 1);

  const plan = {
    kind: 'provider' as const,
    provider: 'gcloud' as const,
    dryRun: true,
    plan: {
      provider: 'gcloud' as const,
      action: 'create' as const,
      jobTag: 'pw-j-123456',
      files: [{ path: '/tmp/s.sh', content: "#!/bin/sh\nPW_MOUNT_KEY='-----BEGIN SECRET-----'\n", mode: 0o600 }],
      commands: [{ argv: ['gcloud', 'compute', 'instances', 'create', 'a', '--format=value(name)'], description: 'create' }],
    },
  };
  const dry = renderReport(plan, { json: false, redact: '/home/me/.ssh/k' });
  assert.doesNotMatch(dry.stdout, /SECRET/);
  assert.match(dry.stdout, /PW_MOUNT_KEY='<contents of \/home\/me\/\.ssh\/k>'/);
  assert.match(dry.stdout, /^gcloud compute instances create a '--format=value\(name\)'$/m);
  assert.doesNotMatch(renderReport(plan, { json: true, redact: '/k' }).stdout, /SECRET/);
});

test('the launch command module does not load node-ssh until its handler runs', () => {
  const probe = (module: string) =>
    execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
      import { createRequire } from 'node:module';
      await import(${JSON.stringify(module)});
      const loaded = Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/ssh2/'));
      process.stdout.write(String(loaded));`], { encoding: 'utf8', cwd: root });
  assert.equal(probe('./src/cli/commands/launch.ts'), 'false');
  assert.equal(probe('./src/remote/launch.ts'), 'true', 'the probe does see ssh2 when it is loaded');
});
