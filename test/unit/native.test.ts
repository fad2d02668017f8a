// The addon's own contract (native/overlayd_native.c): a wrongly-typed argument throws before
// any syscall runs, and names are bytes both ways.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { C, sys } from '../../src/host/native';
import { tmpdir } from '../lib/tree';

function scratch(t: Test): string {
  const dir = tmpdir('overlayd-native-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function dirFd(t: Test, dir: string): number {
  const fd = sys.openat(-100, dir, C.O_PATH | C.O_DIRECTORY, 0);
  t.ok(fd >= 0, 'opened the scratch directory');
  t.teardown(() => { sys.close(fd); });
  return fd;
}

t.test('a wrongly-typed integer argument throws and the call does nothing', async (t) => {
  const dir = scratch(t);
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, 'twelve bytes');
  fs.chmodSync(file, 0o644);
  const fd = fs.openSync(file, 'r+');
  t.teardown(() => fs.closeSync(fd));
  const bad = 'x' as unknown as number;

  t.throws(() => sys.ftruncate(fd, bad), { name: 'TypeError', message: /expected integer/ });
  t.equal(fs.fstatSync(fd).size, 12, 'ftruncate with a bad size left the file as it was (not truncated to 0)');

  const dfd = dirFd(t, dir);
  t.throws(() => sys.fchmodat(dfd, 'f', bad), { name: 'TypeError' });
  t.equal(fs.statSync(file).mode & 0o7777, 0o644, 'fchmodat with a bad mode left the mode (not 0)');

  t.throws(() => sys.close(bad), { name: 'TypeError' });
  t.doesNotThrow(() => fs.fstatSync(0), 'close("x") did not close fd 0');

  const copy = path.join(dir, 'copy');
  fs.writeFileSync(copy, '');
  const out = fs.openSync(copy, 'r+');
  t.teardown(() => fs.closeSync(out));
  t.throws(() => sys.copySlice(fd, out, 0, 12, 1 << 20, bad, new Float64Array(1)), { name: 'TypeError' });
  t.throws(() => sys.copySliceAsync(fd, out, 0, 12, 1 << 20, bad, () => undefined), { name: 'TypeError' });
  await new Promise((r) => setTimeout(r, 50)); // a slice wrongly queued would have run by now
  t.equal(fs.fstatSync(out).size, 0, 'copySlice with bad flags copied nothing (not with flags 0)');

  t.throws(() => sys.openat(dfd, 'f', bad, 0), { name: 'TypeError' });
  t.throws(() => sys.utimensat(dfd, 'f', 0, 0, bad, 0), { name: 'TypeError' });
  t.throws(() => sys.readdir(bad), { name: 'TypeError' });
  t.throws(() => sys.fstatat(dfd, 7 as unknown as string, 0, new Float64Array(C.STAT_FIELDS)), { name: 'TypeError', message: /expected string/ });
});

t.test('names, link targets and xattr names pass byte for byte', async (t) => {
  const dir = scratch(t);
  const dfd = dirFd(t, dir);
  // Binary strings: one char per byte. None of these is valid UTF-8 but the last.
  const names = ['\xff', 'caf\xe9', '\x80', '\x81', 'caf\xc3\xa9'];
  for (const n of names) {
    const fd = sys.openat(dfd, n, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644);
    t.ok(fd >= 0, `created ${Buffer.from(n, 'latin1').toString('hex')}`);
    sys.close(fd);
  }
  const onDisk = fs.readdirSync(Buffer.from(dir), { encoding: 'buffer' }).map((b) => b.toString('hex')).sort();
  t.same(onDisk, ['80', '81', '636166c3a9', '636166e9', 'ff'].sort(), 'five distinct files with exactly those bytes');

  const listing = sys.readdir(dfd);
  if (typeof listing === 'number') throw new Error(`readdir: ${listing}`);
  t.same([...listing[0]].sort(), [...names].sort(), 'readdir gives the same binary strings back');

  t.equal(sys.symlinkat('\xfe/caf\xe9', dfd, 'ln\xff'), 0);
  t.same(fs.readlinkSync(Buffer.from(path.join(dir, 'ln\xff'), 'latin1'), { encoding: 'buffer' }), Buffer.from('fe2f636166e9', 'hex'));
  t.equal(sys.readlinkat(dfd, 'ln\xff'), '\xfe/caf\xe9', 'readlinkat gives the target byte for byte');

  t.equal(sys.setxattr(dfd, '\xff', 'user.k\xe9', Buffer.from('v'), 0), 0);
  t.same(sys.listxattr(dfd, '\xff'), ['user.k\xe9']);
  t.same(sys.getxattr(dfd, '\xff', 'user.k\xe9'), Buffer.from('v'));
  t.equal(sys.renameat2(dfd, '\x80', dfd, '\x81', C.RENAME_NOREPLACE), -17, 'EEXIST: \\x80 and \\x81 are two names');
  t.equal(sys.unlinkat(dfd, '\x80', 0), 0);
  t.equal(sys.fstatat(dfd, '\x80', C.AT_SYMLINK_NOFOLLOW, new Float64Array(C.STAT_FIELDS)), -2, 'only \\x80 is gone');
  t.equal(sys.fstatat(dfd, '\x81', C.AT_SYMLINK_NOFOLLOW, new Float64Array(C.STAT_FIELDS)), 0);
});
