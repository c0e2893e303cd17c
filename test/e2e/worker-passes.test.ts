// What a worker reads at the end of its run. A worker that saw every output itself need not list
// out/ and failed/ again while its lanes finish, nor for its final report: on a network store each
// listing is several round trips at the end of every run. Only the requeue record can take
// outputs back, and a requeue written meanwhile still brings its chunks back to work.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PosixJobStore } from '../../src/core/store/posix-store.js';
import type { Area, ListedEntry } from '../../src/core/store/job-store.js';
import { work } from '../../src/core/work/worker.js';
import { lineJob } from '../helpers/job.js';
import { makeTempDir } from '../helpers/tmp.js';

class CountingStore extends PosixJobStore {
  readonly lists = new Map<Area, number>();
  override async list(area: Area): Promise<ListedEntry[]> {
    this.lists.set(area, (this.lists.get(area) ?? 0) + 1);
    return super.list(area);
  }
}

test('a worker that did every chunk lists out/ and failed/ once, in its first pass', async () => {
  const job = await lineJob(makeTempDir('passes'), 'job', 40);
  const store = new CountingStore(job);
  // Short commands and lanes that run dry at different times: several passes happen while the
  // last chunks run, and each used to list both folders.
  const report = await work({ job, store, lanes: 2, command: ['sh', '-c', 'sleep 0.02; cat'] });
  assert.equal(report.complete, true);
  assert.equal(readdirSync(join(job, 'out')).length, 40);
  assert.deepEqual({ out: store.lists.get('out'), failed: store.lists.get('failed') }, { out: 1, failed: 1 });
});

test('a requeue written while the last chunks run brings its chunk back, without a full listing missed', async () => {
  const job = await lineJob(makeTempDir('passes'), 'job', 12);
  const store = new CountingStore(job);
  // The last chunk to start (chunk 11 always runs last here: one lane, the others are done first)
  // removes an output and writes the record, as verify --requeue on another host would.
  const requeuer = join(job, '..', 'requeue.sh');
  writeFileSync(
    requeuer,
    `#!/bin/sh
if [ ! -e "$1.requeued" ] && [ "$(ls "$1/out" | wc -l)" -ge 11 ]; then
  victim=$(ls "$1/out" | head -n 1)
  rm "$1/out/$victim"
  printf '{"at":"%s","host":"elsewhere","pid":1,"chunks":["%s"],"more":false}' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$victim" > "$1/REQUEUED"
  echo "$victim" > "$1.requeued"
  sleep 0.3
fi
cat
`,
    { mode: 0o755 },
  );
  const report = await work({ job, store, lanes: 1, command: [requeuer, job] });
  const victim = readFileSync(`${job}.requeued`, 'utf8').trim();
  assert.ok(existsSync(join(job, 'out', victim)), `out/${victim} made again`);
  assert.equal(report.complete, true);
  assert.equal(readdirSync(join(job, 'out')).length, 12);
  rmSync(`${job}.requeued`);
});
