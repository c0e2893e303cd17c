import { writeFileSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { createHosts } from '../test/helpers/netns-hosts.ts';
import { runCleanups, runSync } from '../test/helpers/cleanup.ts';
import { makeTempDir } from '../test/helpers/tmp.ts';
const pw = '/work/main/bin/piecework';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
try {
  const c = await createHosts(3);
  const share = c.head.shareDir;
  const input = join(makeTempDir('in'), 'in.txt');
  writeFileSync(input, Array.from({ length: 120 }, (_, i) => `line ${i}\n`).join(''));
  await execa(pw, ['split', input, '--into', join(share, 'job'), '--lines', '1', '--stale', '5']);
  const hostsFile = join(makeTempDir('cfg'), 'hosts');
  writeFileSync(hostsFile, c.hosts.map((h) => `root@${h.address}:${h.sshd.port}\n`).join(''));
  const mnt = join(makeTempDir('mnt'), 'pw');
  const t1 = Date.now();
  const r = await execa(pw, ['launch', join(share, 'job'), '--hosts', hostsFile, '--identity', c.clientKeyPath, '--known-hosts', c.knownHostsPath,
    '--mount', `root@${c.head.address}:${share}`, '--mount-port', String(c.head.sshd.port), '--mount-identity', c.clientKeyPath, '--at', mnt, '-j', '2', '--', 'sh', '-c', 'sleep 0.3; tr a-z A-Z'], { reject: false });
  console.log('launch', Date.now() - t1, r.exitCode, r.stderr);
  await sleep(3000);
  const sshfsOf = (name: string) => runSync(['ip', 'netns', 'pids', name]).output.split(/\s+/).filter(Boolean).filter((p) => { try { return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'sshfs'; } catch { return false; } });
  const [h0, h1] = c.hosts;
  const s0 = sshfsOf(h0!.name), s1 = sshfsOf(h1!.name);
  console.log('sshfs', s0, s1);
  for (const p of [...s0, ...s1]) process.kill(Number(p), 'SIGKILL');
  const u = runSync(['nsenter', '-t', String(h1!.sshd.pid), '-m', '--', 'fusermount3', '-u', '-z', mnt]);
  console.log('unmount h1', u);
  const td = Date.now();
  for (let i = 0; i < 40; i++) {
    const alive = (n: string) => runSync(['ip', 'netns', 'pids', n]).output.split(/\s+/).filter(Boolean).filter((p) => { try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('piecework.mjs'); } catch { return false; } });
    const a0 = alive(h0!.name), a1 = alive(h1!.name);
    if (a0.length === 0 && a1.length === 0) { console.log('workers gone after', Date.now() - td); break; }
    await sleep(500);
  }
  console.log('bare:', readdirSync(mnt));
  for (let i = 0; i < 60; i++) {
    const v = await execa(pw, ['verify', join(share, 'job')], { reject: false });
    if (v.exitCode === 0) { console.log('complete after', Date.now() - t1); break; }
    await sleep(1000);
  }
  console.log((await execa('sh', ['-c', `cd ${share}/job/logs; for f in *; do echo "== $f"; tail -n 5 $f; done`])).stdout);
} finally {
  await runCleanups();
}
