import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCleanups } from '../helpers/cleanup.js';
import { startSshd } from '../helpers/sshd.js';
import {
  appendHostKey,
  checkHostKey,
  formatKnownHostsEntry,
  hashHostName,
  keyFingerprint,
  keyTypeOfBlob,
  knownKeyTypes,
  parseKnownHosts,
} from '../../src/remote/known-hosts.js';

const dir = join(tmpdir(), `pw${process.pid}-known-hosts-test`);

interface Key {
  type: string;
  base64: string;
}
const keys: Record<string, Key> = {};

function keygen(name: string, type: 'ed25519' | 'ecdsa' | 'rsa'): Key {
  const path = join(dir, `key-${name}`);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', '', '-f', path]);
  const [keyType, base64] = readFileSync(`${path}.pub`, 'utf8').trim().split(/\s+/) as [string, string];
  return { type: keyType, base64 };
}

function write(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

/** `ssh-keygen -H` hashes every name of the file in place (keeping a .old copy). */
function hashWithSshKeygen(path: string): string {
  execFileSync('ssh-keygen', ['-H', '-f', path], { stdio: 'ignore' });
  return readFileSync(path, 'utf8');
}

before(() => {
  mkdirSync(dir, { recursive: true });
  keys['a'] = keygen('a', 'ed25519');
  keys['b'] = keygen('b', 'ed25519');
  keys['rsa'] = keygen('rsa', 'rsa');
  keys['ecdsa'] = keygen('ecdsa', 'ecdsa');
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await runCleanups();
});

const k = (name: string): Key => keys[name] as Key;
const line = (names: string, key: Key, comment = ''): string => `${names} ${key.type} ${key.base64}${comment ? ` ${comment}` : ''}`;

test('plain entries: names, comma lists, [host]:port for ports other than 22', async () => {
  const file = write('plain', [
    '# a comment',
    line('lab1,10.0.0.1', k('a'), 'alice@laptop'),
    line('[lab2]:2222', k('b')),
    line('lab3', k('rsa')),
    '',
  ]);
  const cases: [string, number, Key, string][] = [
    ['lab1', 22, k('a'), 'match'],
    ['10.0.0.1', 22, k('a'), 'match'],
    ['LAB1', 22, k('a'), 'match'],
    ['lab1', 22, k('b'), 'mismatch'],
    ['lab1', 2222, k('a'), 'unknown'], // lab1 is known on port 22 only
    ['lab2', 2222, k('b'), 'match'],
    ['lab2', 22, k('b'), 'unknown'],
    ['lab3', 22, k('rsa'), 'match'],
    ['lab3', 22, k('a'), 'mismatch'], // known under another key type: refused, not "new"
    ['lab4', 22, k('a'), 'unknown'],
  ];
  for (const [host, port, key, verdict] of cases) {
    assert.equal(await checkHostKey(file, host, port, key.type, key.base64), verdict, `${host}:${port} ${key.type}`);
  }
});

test('hashed entries written by ssh-keygen -H match the same hosts as before hashing', async () => {
  const file = write('to-hash', [line('lab1,10.0.0.1', k('a')), line('[lab2]:2222', k('b')), line('lab3', k('ecdsa'))]);
  const hashed = hashWithSshKeygen(file);
  assert.match(hashed, /^\|1\|[A-Za-z0-9+/=]+\|[A-Za-z0-9+/=]+ ssh-ed25519 /m);
  assert.doesNotMatch(hashed, /lab1|lab2|10\.0\.0\.1/);
  assert.equal(await checkHostKey(file, 'lab1', 22, k('a').type, k('a').base64), 'match');
  assert.equal(await checkHostKey(file, '10.0.0.1', 22, k('a').type, k('a').base64), 'match');
  assert.equal(await checkHostKey(file, 'lab2', 2222, k('b').type, k('b').base64), 'match');
  assert.equal(await checkHostKey(file, 'lab3', 22, k('ecdsa').type, k('ecdsa').base64), 'match');
  assert.equal(await checkHostKey(file, 'lab1', 22, k('b').type, k('b').base64), 'mismatch');
  assert.equal(await checkHostKey(file, 'lab9', 22, k('a').type, k('a').base64), 'unknown');
  assert.deepEqual(await knownKeyTypes(file, 'lab3', 22), ['ecdsa-sha2-nistp256']);
});

test('our hashing agrees with ssh-keygen -F both ways', () => {
  // A line we hash is found by OpenSSH's own lookup...
  const name = '[lab5.example.org]:2200';
  const ours = write('ours-hashed', [`${hashHostName(name)} ${k('a').type} ${k('a').base64}`]);
  const found = execFileSync('ssh-keygen', ['-F', name, '-f', ours], { encoding: 'utf8' });
  assert.match(found, /Host \[lab5\.example\.org\]:2200 found: line 1/);
  // ...and a salt/hash pair is the HMAC-SHA1 of the name, so a known salt gives a known hash.
  const salt = Buffer.alloc(20, 7);
  assert.equal(hashHostName('lab1', salt).split('|')[2], salt.toString('base64'));
});

test('patterns: wildcards and negation, as in sshd(8)', async () => {
  const file = write('patterns', [line('*.lab.example.org,!secret.lab.example.org', k('a')), line('node-??', k('b'))]);
  assert.equal(await checkHostKey(file, 'gpu1.lab.example.org', 22, k('a').type, k('a').base64), 'match');
  assert.equal(await checkHostKey(file, 'secret.lab.example.org', 22, k('a').type, k('a').base64), 'unknown');
  assert.equal(await checkHostKey(file, 'node-07', 22, k('b').type, k('b').base64), 'match');
  assert.equal(await checkHostKey(file, 'node-107', 22, k('b').type, k('b').base64), 'unknown');
});

test('@revoked wins over a matching line; @cert-authority lines are skipped', async () => {
  const file = write('markers', [
    line('lab1', k('a')),
    `@revoked * ${k('a').type} ${k('a').base64}`,
    `@cert-authority *.lab ${k('b').type} ${k('b').base64}`,
    '@unknown-marker lab7 ssh-ed25519 AAAA',
    'garbage',
  ]);
  assert.equal(await checkHostKey(file, 'lab1', 22, k('a').type, k('a').base64), 'revoked');
  assert.equal(await checkHostKey(file, 'other', 22, k('a').type, k('a').base64), 'revoked');
  assert.equal(await checkHostKey(file, 'x.lab', 22, k('b').type, k('b').base64), 'unknown');
  assert.equal(parseKnownHosts(readFileSync(file, 'utf8')).length, 3);
});

test('several files are read together; a missing file is empty', async () => {
  const first = write('first', [line('lab1', k('a'))]);
  const missing = join(dir, 'no-such-file');
  assert.equal(await checkHostKey([missing, first], 'lab1', 22, k('a').type, k('a').base64), 'match');
  assert.equal(await checkHostKey(missing, 'lab1', 22, k('a').type, k('a').base64), 'unknown');
});

test('appendHostKey writes lines ssh-keygen -F finds, hashed by default, and creates the file 0600', async () => {
  const file = join(dir, 'new', '.ssh', 'known_hosts');
  const hashedLine = await appendHostKey(file, '127.0.0.1', 2222, k('a').type, k('a').base64);
  assert.match(hashedLine, /^\|1\|/);
  await appendHostKey(file, 'lab1', 22, k('b').type, k('b').base64, { hash: false });
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'new', '.ssh')).mode & 0o777, 0o700);
  assert.equal(await checkHostKey(file, '127.0.0.1', 2222, k('a').type, k('a').base64), 'match');
  assert.match(readFileSync(file, 'utf8'), /^lab1 ssh-ed25519 /m);
  assert.match(execFileSync('ssh-keygen', ['-F', '[127.0.0.1]:2222', '-f', file], { encoding: 'utf8' }), /found: line 1/);
  assert.match(execFileSync('ssh-keygen', ['-F', 'lab1', '-f', file], { encoding: 'utf8' }), /found: line 2/);

  // Concurrent appends never interleave, and a file without a final newline is not glued onto.
  const glued = join(dir, 'no-newline');
  writeFileSync(glued, line('lab1', k('a')));
  await Promise.all(Array.from({ length: 20 }, (_, i) => appendHostKey(glued, `h${i}`, 22, k('b').type, k('b').base64)));
  const entries = parseKnownHosts(readFileSync(glued, 'utf8'));
  assert.equal(entries.length, 21);
  for (let i = 0; i < 20; i++) assert.equal(await checkHostKey(glued, `h${i}`, 22, k('b').type, k('b').base64), 'match');
});

test('key blobs: type and fingerprint as OpenSSH prints them', () => {
  const blob = Buffer.from(k('a').base64, 'base64');
  assert.equal(keyTypeOfBlob(blob), 'ssh-ed25519');
  const expected = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(dir, 'key-a.pub')], { encoding: 'utf8' }).split(' ')[1];
  assert.equal(keyFingerprint(k('a').base64), expected);
  assert.throws(() => keyTypeOfBlob(Buffer.from([0, 0, 1])), /too short/);
});

test('formatKnownHostsEntry round-trips plain, hashed and marked lines', () => {
  const text = [line('lab1,!x', k('a')), `${hashHostName('lab2')} ${k('b').type} ${k('b').base64}`, `@revoked * ${k('a').type} ${k('a').base64}`].join('\n');
  assert.deepEqual(parseKnownHosts(text).map(formatKnownHostsEntry), text.split('\n'));
});

test('ssh-keyscan output of a real sshd (plain and -H) verifies its host key', async () => {
  const sshd = await startSshd();
  try {
    const [type, base64] = sshd.hostPublicKey.split(' ') as [string, string];
    for (const flags of [[], ['-H']]) {
      const scanned = execFileSync('ssh-keyscan', [...flags, '-t', 'ed25519', '-p', String(sshd.port), '127.0.0.1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      assert.match(scanned, flags.length ? /^\|1\|/m : new RegExp(`^\\[127\\.0\\.0\\.1\\]:${sshd.port} ssh-ed25519 `, 'm'));
      const file = write(`scanned${flags.join('')}`, [scanned.trim()]);
      assert.equal(await checkHostKey(file, '127.0.0.1', sshd.port, type, base64), 'match', flags.join(' '));
      assert.equal(await checkHostKey(file, '127.0.0.1', 22, type, base64), 'unknown');
      assert.equal(await checkHostKey(file, '127.0.0.1', sshd.port, k('b').type, k('b').base64), 'mismatch');
    }
  } finally {
    sshd.stop();
  }
});
