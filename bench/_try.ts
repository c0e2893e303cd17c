import { readFileSync, writeFileSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runCleanups } from '/work/main/test/helpers/cleanup.js';
import { startSshd } from '/work/main/test/helpers/sshd.js';
import { mountSshfs } from '/work/main/test/helpers/sshfs.js';
import { startDelayProxy } from '/work/main/test/helpers/delay-proxy.js';
import { makeTempDir } from '/work/main/test/helpers/tmp.js';
try {
  const sshd = await startSshd();
  const proxy = await startDelayProxy({ targetPort: sshd.port, delayMs: 5 });
  const m = await mountSshfs({ sshd, mountPoint: join(makeTempDir('m'), 'mnt'), port: proxy.port, options: ['sshfs_debug'] });
  const before = readFileSync(m.logPath, 'utf8').length;
  const t0 = performance.now();
  mkdirSync(join(m.mountPoint, 'd'));
  writeFileSync(join(m.mountPoint, 'd/x'), 'hi');
  renameSync(join(m.mountPoint, 'd/x'), join(m.mountPoint, 'd/y'));
  statSync(join(m.mountPoint, 'd/y'));
  console.log('ms', performance.now() - t0);
  await new Promise(r => setTimeout(r, 300));
  console.log(readFileSync(m.logPath, 'utf8').slice(before));
  await proxy.close();
} finally { await runCleanups(); }
