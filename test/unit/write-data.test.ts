// Writing data and attributes through the core: writes at any offset, O_APPEND, O_TRUNC,
// O_EXCL, truncate/ftruncate, fsync/fdatasync, fallocate, utimens with ns, chmod, chown, and
// xattrs in every namespace, including the overlay's own names as kernel overlayfs (6.7+)
// treats them: its real xattrs read as absent; names set in its namespace are stored escaped.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { C } from '../../src/host/native';
import { DAEMON_CALLER } from '../../src/core/config';
import { coreStack } from '../lib/stack';
import { readAll, setXattr, timesOf, workLeft, writeAt, xattrNames, xattrOf } from '../lib/write-helpers';

t.test('writes at any offset, past EOF leaving a hole, and O_APPEND', async (t) => {
  const s = coreStack([{ f: '0123456789', a: 'log:' }], {}, t);
  const { ov } = s;
  await writeAt(ov, '/f', 'AB', 3);
  t.equal(await readAll(ov, '/f'), '012AB56789');
  await writeAt(ov, '/f', 'Z', 20);
  const up = fs.readFileSync(path.join(s.upper as string, 'f'));
  t.equal(up.length, 21, 'extended past EOF');
  t.same([...up.subarray(10, 20)], new Array(10).fill(0), 'the gap reads as zeros');
  await writeAt(ov, '/a', 'one', 0, C.O_WRONLY | C.O_APPEND);
  await writeAt(ov, '/a', 'two', 0, C.O_WRONLY | C.O_APPEND);
  t.equal(await readAll(ov, '/a'), 'log:onetwo', 'O_APPEND writes at the end whatever the offset');
  const h = ov.open('/a', C.O_RDONLY);
  t.throws(() => ov.write(h, Buffer.from('x'), 1, 0), { code: 'EBADF' }, 'no writes through a read-only handle');
  ov.release(h);
  t.same(workLeft(s.work as string), []);
});

t.test('O_TRUNC, O_EXCL via create, truncate and ftruncate up and down', async (t) => {
  const s = coreStack([{ f: 'old contents', g: 'abcdef', h: 'abc' }], {}, t);
  const { ov } = s;
  await writeAt(ov, '/f', 'new', 0, C.O_WRONLY | C.O_TRUNC);
  t.equal(await readAll(ov, '/f'), 'new', 'O_TRUNC discards the old data');
  t.throws(() => ov.create('/g', 0o644, C.O_WRONLY | C.O_EXCL, DAEMON_CALLER), { code: 'EEXIST' }, 'create on an existing lower name');
  ov.truncate('/g', 3);
  t.equal(await readAll(ov, '/g'), 'abc');
  ov.truncate('/g', 6);
  t.equal(await readAll(ov, '/g'), 'abc\0\0\0', 'growing adds zeros');
  const h = ov.open('/h', C.O_RDWR);
  ov.ftruncate(h, 1);
  t.equal(ov.fgetattr(h).size, 1, 'ftruncate through the handle');
  ov.fsync(h, false);
  ov.fsync(h, true);
  ov.fallocate(h, 0, 0, 8192);
  t.equal(ov.fgetattr(h).size, 8192, 'fallocate extends');
  t.ok(ov.fgetattr(h).blocks >= 16, 'and allocates');
  ov.release(h);
  t.equal(fs.statSync(path.join(s.lowers[0], 'h')).size, 3, 'lower untouched');
});

t.test('an open handle keeps working when its name is renamed', async (t) => {
  const s = coreStack([{ f: 'abc' }], {}, t);
  const { ov } = s;
  const h = ov.open('/f', C.O_RDWR);
  ov.rename('/f', '/g');
  await ov.write(h, Buffer.from('X'), 1, 0);
  ov.release(h);
  t.equal(await readAll(ov, '/g'), 'Xbc');
});

t.test('a read-only handle opened on a lower file follows it once it is copied up', async (t) => {
  const s = coreStack([{ f: 'oldcontent', g: 'gone' }], {}, t);
  const { ov } = s;
  const read = async (h: number): Promise<string> => {
    const buf = Buffer.alloc(64);
    return buf.subarray(0, await ov.read(h, buf, 64, 0)).toString();
  };
  const r = ov.open('/f', C.O_RDONLY);
  t.equal(await read(r), 'oldcontent');
  await writeAt(ov, '/f', 'NEW', 0);
  t.equal(await read(r), 'NEWcontent', 'the kernel\'s stacked file reopens the upper copy; so does overlayd');
  t.equal(ov.fgetattr(r).ino, ov.getattr('/f').ino, 'fstat and stat agree on the inode number');
  ov.truncate('/f', 3);
  t.equal(ov.fgetattr(r).size, 3, 'and on the size');
  ov.release(r);
  const g = ov.open('/g', C.O_RDONLY);
  ov.unlink('/g');
  t.equal(await read(g), 'gone', 'a removed file stays readable through its handle');
  ov.release(g);
});

t.test('a reader of one link of a lower hard link follows its copy-up too, though the copy has its own st_ino', async (t) => {
  const s = coreStack([{ a: 'oldcontent' }], {}, t);
  fs.linkSync(path.join(s.lowers[0], 'a'), path.join(s.lowers[0], 'b'));
  const { ov } = s;
  const r = ov.open('/a', C.O_RDONLY);
  t.teardown(() => ov.release(r));
  await writeAt(ov, '/a', 'NEW', 0);
  t.not(ov.getattr('/a').ino, ov.getattr('/b').ino, 'the copy is another file than the link left below');
  const buf = Buffer.alloc(64);
  t.equal(buf.subarray(0, await ov.read(r, buf, 64, 0)).toString(), 'NEWcontent', 'as the kernel\'s stacked file, the reader sees the write');
});

t.test('utimens with nanoseconds, UTIME_OMIT and UTIME_NOW; chmod; chown', async (t) => {
  const s = coreStack([{ f: 'x', d: { dir: {} } }], {}, t);
  const { ov } = s;
  const f = path.join(s.upper as string, 'f');
  ov.utimens('/f', { sec: 1_000_000_000, nsec: 1 }, { sec: 1_200_000_000, nsec: 999_999_999 });
  t.same(timesOf(f), { atime: '1000000000.000000001', mtime: '1200000000.999999999' });
  ov.utimens('/f', { sec: 0, nsec: C.UTIME_OMIT }, { sec: 5, nsec: 5 });
  t.same(timesOf(f), { atime: '1000000000.000000001', mtime: '5.000000005' }, 'UTIME_OMIT leaves atime');
  const before = Date.now() / 1000 - 5;
  ov.utimens('/f', { sec: 0, nsec: C.UTIME_NOW }, { sec: 0, nsec: C.UTIME_OMIT });
  t.ok(Number(timesOf(f).atime) > before, 'UTIME_NOW');
  t.equal(timesOf(f).mtime, '5.000000005');
  ov.chmod('/f', 0o4711);
  t.equal(ov.getattr('/f').mode & 0o7777, 0o4711);
  ov.chown('/f', 1000, 1001);
  t.same([ov.getattr('/f').uid, ov.getattr('/f').gid], [1000, 1001]);
  ov.chmod('/d', 0o1777);
  t.equal(ov.getattr('/d').mode & 0o7777, 0o1777, 'directories too');
});

t.test('xattrs: user., trusted., security. set, get, list, remove', async (t) => {
  const s = coreStack([{ f: 'x' }], {}, t);
  const { ov } = s;
  for (const ns of ['user', 'trusted', 'security']) ov.setxattr('/f', `${ns}.k`, Buffer.from(ns), 0);
  t.same(ov.listxattr('/f').filter((n) => !n.startsWith('security.selinux')).sort(), ['security.k', 'trusted.k', 'user.k']);
  t.equal(ov.getxattr('/f', 'user.k').toString(), 'user');
  t.throws(() => ov.setxattr('/f', 'user.k', Buffer.from('v'), C.XATTR_CREATE), { code: 'EEXIST' }, 'XATTR_CREATE');
  t.throws(() => ov.setxattr('/f', 'user.nope', Buffer.from('v'), C.XATTR_REPLACE), { code: 'ENODATA' }, 'XATTR_REPLACE');
  t.throws(() => ov.setxattr('/f', 'bogus.k', Buffer.from('v'), 0), { code: 'EOPNOTSUPP' }, 'unknown namespace');
  ov.removexattr('/f', 'trusted.k');
  t.throws(() => ov.getxattr('/f', 'trusted.k'), { code: 'ENODATA' });
  t.throws(() => ov.removexattr('/f', 'trusted.k'), { code: 'ENODATA' });
  t.equal(xattrOf(path.join(s.upper as string, 'f'), 'security.k'), 'security', 'stored on the upper file');
});

t.test('overlay xattrs: the real ones are hidden, ones set through the mount are escaped', async (t) => {
  const s = coreStack([{ d: { dir: { f: { file: 'x', xattrs: { 'user.overlay.plain': 'u' } } } } }], {}, t);
  setXattr(path.join(s.lowers[0], 'd'), 'trusted.overlay.opaque', 'y');
  setXattr(path.join(s.lowers[0], 'd/f'), 'trusted.overlay.overlay.esc', 'e'); // set through an overlay once
  s.ov.resolver.cache.clear();
  const { ov } = s;
  t.throws(() => ov.getxattr('/d', 'trusted.overlay.opaque'), { code: 'ENODATA' }, 'private: reads as absent');
  t.same(ov.listxattr('/d'), [], 'and is not listed');
  t.equal(ov.getxattr('/d/f', 'trusted.overlay.esc').toString(), 'e', 'an escaped one reads under its caller\'s name');
  t.equal(ov.getxattr('/d/f', 'user.overlay.plain').toString(), 'u', 'user.overlay.* is ordinary without userxattr');
  t.same(ov.listxattr('/d/f').sort(), ['trusted.overlay.esc', 'user.overlay.plain']);

  ov.setxattr('/d/f', 'trusted.overlay.mine', Buffer.from('m'), 0);
  const uf = path.join(s.upper as string, 'd/f');
  t.equal(xattrOf(uf, 'trusted.overlay.overlay.mine'), 'm', 'stored escaped');
  t.equal(xattrOf(uf, 'trusted.overlay.mine'), undefined, 'never as a real overlay xattr');
  t.equal(xattrOf(uf, 'trusted.overlay.overlay.esc'), 'e', 'escaped ones copy up as they are');
  t.equal(xattrOf(uf, 'user.overlay.plain'), 'u', 'so do user.overlay.* ones');
  t.equal(ov.getxattr('/d/f', 'trusted.overlay.mine').toString(), 'm');
  ov.setxattr('/d', 'trusted.overlay.opaque', Buffer.from('n'), 0);
  t.equal(xattrOf(path.join(s.upper as string, 'd'), 'trusted.overlay.overlay.opaque'), 'n', 'even the opaque name: escaped');
  t.same(ov.readdir('/d').map((e) => e.name), ['f'], 'and so the dir does not turn opaque');
  ov.removexattr('/d/f', 'trusted.overlay.mine');
  t.equal(xattrOf(uf, 'trusted.overlay.overlay.mine'), undefined, 'remove takes the escaped one away');
  t.throws(() => ov.removexattr('/d/f', 'trusted.overlay.nope'), { code: 'ENODATA' });
  t.same(xattrNames(uf).filter((n) => n.startsWith('trusted.overlay.') && !n.startsWith('trusted.overlay.overlay.') && n !== 'trusted.overlay.origin'), [], 'no private xattr but origin on the copy');
});

t.test('overlay xattrs with userxattr: user.overlay.* is the private namespace', async (t) => {
  const s = coreStack([{ f: { file: 'x', xattrs: { 'user.overlay.secret': 's', 'trusted.overlay.other': 'o' } } }], { userxattr: true }, t);
  const { ov } = s;
  t.throws(() => ov.getxattr('/f', 'user.overlay.secret'), { code: 'ENODATA' });
  t.equal(ov.getxattr('/f', 'trusted.overlay.other').toString(), 'o', 'trusted.overlay.* is ordinary here');
  t.same(ov.listxattr('/f').sort(), ['trusted.overlay.other']);
  ov.setxattr('/f', 'user.overlay.y', Buffer.from('1'), 0);
  const uf = path.join(s.upper as string, 'f');
  t.equal(xattrOf(uf, 'user.overlay.overlay.y'), '1');
  t.equal(xattrOf(uf, 'user.overlay.secret'), undefined, 'the private one is not copied up');
  t.same(ov.listxattr('/f').sort(), ['trusted.overlay.other', 'user.overlay.y']);
});
