// The bytes between a mount client and the resident server, and the check that keeps the server
// from touching a mount it serves itself (it would wait on itself): no mount needed, a directory
// stands for a mountpoint.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { decodeReply, decodeRequest, encodeReply, encodeRequest, sameEnv, serverSocketPath } from '../../src/cli/server-protocol';
import { reachesAny } from '../../src/cli/server';
import { tmpdir } from '../lib/tree';

t.test('a request goes through byte for byte', async (t) => {
  const req = { cwd: '/some where', argv: ['-o', 'lowerdir=/a\\:b,upperdir=/ü', '', 'm'], env: { OVERLAYD_TRANSPORT: 'kernel', OVERLAYD_X: 'a=b' } };
  t.same(decodeRequest(encodeRequest(req)), req);
});

t.test('what is not a request is refused', async (t) => {
  t.type(decodeRequest(Buffer.from('hello')), Error, 'not terminated');
  t.type(decodeRequest(Buffer.from('other\0/\x000\0')), Error, 'wrong magic');
  t.type(decodeRequest(encodeRequest({ cwd: 'relative', argv: [], env: {} })), Error, 'a relative cwd');
  const bad = Buffer.concat([encodeRequest({ cwd: '/', argv: ['a'], env: {} }), Buffer.from('NOEQUALS\0')]);
  t.type(decodeRequest(bad), Error, 'an environment entry without =');
  const short = Buffer.from('overlayd-request-1\0/\x005\0a\0');
  t.type(decodeRequest(short), Error, 'fewer arguments than counted');
});

t.test('replies: a code and the text, or hand it back', async (t) => {
  t.same(decodeReply(encodeReply({ code: 32, stderr: 'overlayd: no\n' })), { code: 32, stderr: 'overlayd: no\n' });
  t.equal(decodeReply(encodeReply('delegate')), 'delegate');
  t.type(decodeReply(Buffer.from('')), Error, 'closed without an answer');
  t.type(decodeReply(Buffer.from('300\n')), Error, 'not an exit code');
  t.type(decodeReply(Buffer.from('x1\n')), Error, 'nonsense');
});

t.test('the server serves callers with its own OVERLAYD_* settings, whatever says how to reach it', async (t) => {
  t.ok(sameEnv({ OVERLAYD_TRANSPORT: 'kernel', OVERLAYD_NODE: '/a' }, { OVERLAYD_TRANSPORT: 'kernel', OVERLAYD_SERVER_IDLE_MS: '5' }));
  t.notOk(sameEnv({ OVERLAYD_TRANSPORT: 'kernel' }, {}), 'a setting only one has');
  t.notOk(sameEnv({ OVERLAYD_PASSTHROUGH: 'off' }, { OVERLAYD_PASSTHROUGH: 'all' }), 'a setting that differs');
});

t.test('the socket is named after both namespaces', async (t) => {
  const ino = (k: string): string => (/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/self/ns/${k}`)) as RegExpExecArray)[1];
  t.equal(serverSocketPath('/run/x'), `/run/x/server-${ino('user')}-${ino('mnt')}.sock`);
});

t.test('a path reaching into a served mount is found without entering it', async (t) => {
  const base = tmpdir();
  const mp = path.join(base, 'mnt');
  fs.mkdirSync(path.join(mp, 'inner'), { recursive: true });
  fs.mkdirSync(path.join(base, 'mnt2'));
  fs.mkdirSync(path.join(base, 'other'));
  fs.symlinkSync(path.join(mp, 'inner'), path.join(base, 'abs-link'));
  fs.symlinkSync('mnt', path.join(base, 'rel-link'));
  fs.symlinkSync('../rel-link/inner', path.join(base, 'other', 'up-link'));
  fs.symlinkSync('loop', path.join(base, 'loop'));
  const reaches = (p: string): boolean => reachesAny(p, [mp]);
  t.ok(reaches(mp), 'the mountpoint itself');
  t.ok(reaches(path.join(mp, 'inner', 'x')), 'a path under it');
  t.ok(reaches(path.join(base, 'abs-link', 'x')), 'through an absolute symlink');
  t.ok(reaches(path.join(base, 'rel-link')), 'through a relative symlink');
  t.ok(reaches(path.join(base, 'other', 'up-link', 'y')), 'through a symlink with ..');
  t.notOk(reaches(path.join(base, 'mnt2', 'x')), 'a sibling sharing its prefix');
  t.notOk(reaches(path.join(base, 'other', 'missing', 'z')), 'a missing path elsewhere');
  t.notOk(reaches(path.join(base, 'loop', 'x')), 'a symlink loop: the mount reports ELOOP');
  t.ok(reachesAny('/anything', ['/']), 'everything is under /');
});
