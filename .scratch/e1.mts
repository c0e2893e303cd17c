import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { createHosts } from '/work/main/test/helpers/netns-hosts.ts';
import { runCleanups } from '/work/main/test/helpers/cleanup.ts';
import { makeTempDir } from '/work/main/test/helpers/tmp.ts';
const pw = '/work/main/bin/piecework';
try {
  const t0 = Date.now();
  const c = await createHosts(2);
  console.log('hosts', Date.now() - t0);
  const share = c.head.shareDir;
  const input = join(makeTempDir('in'), 'in.txt');
  writeFileSync(input, Array.from({ length: 120 }, (_, i) => `line ${i}\n`).join(''));
  await execa(pw, ['split', input, '--into', join(share, 'job'), '--lines', '1', '--stale', '5']);
  const hostsFile = join(makeTempDir('cfg'), 'hosts');
  writeFileSync(hostsFile, c.hosts.map((h) => `root@${h.address}:${h.sshd.port}\n`).join(''));
  const t1 = Date.now();
  const r = await execa(pw, ['launch', join(share, 'job'), '--hosts', hostsFile, '--identity', c.clientKeyPath, '--known-hosts', c.knownHostsPath,
    '--mount', `root@${c.head.address}:${share}`, '--mount-port', String(c.head.sshd.port), '--mount-identity', c.clientKeyPath, '--at', '/mnt/pwx', '-j', '2', '--', 'sh', '-c', 'sleep 0.3; tr a-z A-Z'], { reject: false });
  console.log('launch', Date.now() - t1, r.exitCode, r.stdout, r.stderr);
  for (let i = 0; i < 60; i++) {
    const v = await execa(pw, ['verify', join(share, 'job')], { reject: false });
    if (v.exitCode === 0) { console.log('complete after', Date.now() - t1); break; }
    await new Promise((r) => setTimeout(r, 1000));
  }
  const s = await execa(pw, ['status', join(share, 'job')], { reject: false });
  console.log(s.stdout, s.stderr);
  console.log((await execa('sh', ['-c', `ls ${share}/job/logs; tail -n 5 ${share}/job/logs/launch-*`])).stdout);
} finally {
  await runCleanups();
}
