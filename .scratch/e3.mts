import { join } from 'node:path';
import { runCleanups } from '../test/helpers/cleanup.ts';
import { runPiecework } from '../test/helpers/cli.ts';
import { createHosts } from '../test/helpers/netns-hosts.ts';
import { cleanHostState, makeSharedJob, mountArgs, pidsOnHost, readLocalLog, sshArgs, writeHostsFile, pinBridgeAddress } from '../test/helpers/remote-job.ts';
import { waitUntil } from '../test/helpers/sshd.ts';
import { makeTempDir } from '../test/helpers/tmp.ts';
try {
  const at = join(makeTempDir('mnt'), 'share');
  cleanHostState();
  const cluster = await createHosts(1);
  pinBridgeAddress();
  const { job } = makeSharedJob(cluster.head.shareDir, 'slow', 30);
  const hostsFile = writeHostsFile(cluster.hosts);
  const launch = await runPiecework(['launch', job, '--hosts', hostsFile, ...sshArgs(cluster), ...mountArgs(cluster, at), '-j', '2', '--json', '--', 'sh', '-c', 'sleep 120; cat']);
  const report = JSON.parse(launch.stdout);
  const sleepers = (host: any) => pidsOnHost(host, (argv) => argv[0] === 'sh' && argv[2] === 'sleep 120; cat');
  await waitUntil(() => cluster.hosts.every((h) => sleepers(h).length === 2), 20_000, 'busy');
  const t0 = Date.now();
  const stop = await runPiecework(['stop', job, '--now', '--hosts', hostsFile, ...sshArgs(cluster), '--grace', '20', '--json']);
  console.log(Date.now() - t0, stop.stdout, stop.stderr);
  console.log(readLocalLog(report.hosts[0].localLog));
  console.log(await runPiecework(['status', job]).then((r) => r.stdout + r.stderr));
} finally { await runCleanups(); }
