// The staging folders of killed SFTP workers (store/stale-staging.ts): removed by the next store
// opened on the host once their pid is gone and nothing in them changed for a while; kept otherwise.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { removeStaleStaging, STALE_STAGING_MS } from '../../src/core/store/stale-staging.js';
import { makeTempDir } from '../helpers/tmp.js';

/** The pid of a process that has exited (and was reaped). */
function deadPid(): number {
  const result = spawnSync('sh', ['-c', 'echo $$']);
  return Number(result.stdout.toString().trim());
}

function stagingFolder(parent: string, pid: number, ageMs: number, suffix: string): string {
  const folder = join(parent, `piecework-sftp-${pid}-${suffix}`);
  mkdirSync(join(folder, 'host.1.0'), { recursive: true });
  writeFileSync(join(folder, 'in.000001.host.1.abcd'), 'staged input');
  const when = (Date.now() - ageMs) / 1000;
  for (const entry of [join(folder, 'host.1.0'), join(folder, 'in.000001.host.1.abcd'), folder]) utimesSync(entry, when, when);
  return folder;
}

test('a killed worker\'s staging folder is removed; a live or recent one, or another name, is kept', async () => {
  const parent = makeTempDir('staging');
  const dead = deadPid();
  const old = STALE_STAGING_MS + 60_000;
  const killed = stagingFolder(parent, dead, old, 'Aaaaa1');
  const recent = stagingFolder(parent, dead, 60_000, 'Bbbbb2');
  const live = stagingFolder(parent, process.ppid, old, 'Ccccc3');
  const own = stagingFolder(parent, process.pid, old, 'Ddddd4');
  const other = join(parent, `piecework-sftp-notes-${dead}`);
  mkdirSync(other);
  // A lane that wrote into its subfolder a moment ago keeps the folder, however old the folder is.
  const busy = stagingFolder(parent, dead, old, 'Eeeee5');
  writeFileSync(join(busy, 'host.1.0', 'out.tmp'), 'being written');

  assert.deepEqual(await removeStaleStaging(parent), [killed]);
  assert.equal(existsSync(killed), false);
  for (const kept of [recent, live, own, other, busy]) assert.ok(existsSync(kept), `${kept} kept`);
});

test('a missing parent folder is not an error', async () => {
  assert.deepEqual(await removeStaleStaging(join(makeTempDir('staging'), 'absent')), []);
});
