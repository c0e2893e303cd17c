import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMountSource } from '../../src/remote/bootstrap.js';
import { remoteJobPath } from '../../src/remote/share.js';

test('the job path on the hosts follows --mount/--at from the head, and stays as is otherwise', () => {
  const mount = { source: 'me@head:/srv/share', at: '/mnt/share' };
  const cases: [string, typeof mount | undefined, string][] = [
    ['/srv/share/jobs/score', mount, '/mnt/share/jobs/score'], // launched on the head
    ['/srv/share', mount, '/mnt/share'],
    ['/mnt/share/jobs/score', mount, '/mnt/share/jobs/score'], // launched where the share is mounted alike
    ['/srv/shared/jobs/score', mount, '/srv/shared/jobs/score'], // a sibling folder is not inside the export
    ['/data/jobs/score', undefined, '/data/jobs/score'], // NFS: same path everywhere
    ['/home/me/x', { source: 'head:relative/dir', at: '/mnt/x' }, '/home/me/x'],
  ];
  for (const [local, m, expected] of cases) assert.equal(remoteJobPath(local, m), expected, local);
});

test('--mount sources parse like sshfs arguments', () => {
  assert.deepEqual(parseMountSource('me@head.example.org:/srv/share'), { user: 'me', host: 'head.example.org', path: '/srv/share' });
  assert.deepEqual(parseMountSource('head:'), { host: 'head', path: '' });
  assert.deepEqual(parseMountSource('root@[::1]:/srv'), { user: 'root', host: '::1', path: '/srv' });
  assert.equal(parseMountSource('/just/a/path'), undefined);
  assert.equal(parseMountSource('head'), undefined);
});
