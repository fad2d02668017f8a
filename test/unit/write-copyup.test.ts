// Copy-up, rule by rule (overlayfs.rst, "Non-directories" and "Permission model"): any change
// to an entry that lives only below copies it up first; parents go first, each with its own
// mode, owner, ns times and xattrs; data keeps its holes; special files copy up as themselves;
// every copy is built in workdir/work and renamed into place.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { C } from '../../src/host/native';
import { DAEMON_CALLER } from '../../src/core/config';
import { Overlay } from '../../src/core/overlay';
import type { Node } from '../../src/core/nodes';
import { coreStack, removeTree } from '../lib/stack';
import { readAll, setTimes, setXattr, timesOf, workLeft, writeAt, xattrNames, xattrOf } from '../lib/write-helpers';

const WHEN = '2001-02-03 04:05:06.123456789';

/** A lower tree with owners, modes, ns times and xattrs worth copying, two levels deep. */
function richLower(t: Test) {
  const s = coreStack([{}, {}], {}, t);
  const low = s.lowers[1];
  fs.mkdirSync(path.join(low, 'a/b'), { recursive: true });
  fs.writeFileSync(path.join(low, 'a/b/f'), 'lower data\n');
  const f = path.join(low, 'a/b/f');
  // chown first: chown(2) clears setuid/setgid, even for root.
  fs.chownSync(f, 42, 43);
  fs.chmodSync(f, 0o6755);
  fs.chownSync(path.join(low, 'a'), 1234, 5678);
  fs.chmodSync(path.join(low, 'a'), 0o750);
  fs.chmodSync(path.join(low, 'a/b'), 0o711);
  setXattr(path.join(low, 'a'), 'user.dir', 'a');
  setXattr(f, 'user.k', 'v');
  setXattr(f, 'trusted.k', 't');
  setXattr(f, 'security.k', 's');
  setXattr(f, 'trusted.overlay.private', 'p');
  setXattr(path.join(low, 'a/b'), 'trusted.overlay.opaque', 'x'); // not 'y': not opaque, but still private
  for (const p of ['a/b/f', 'a/b', 'a']) setTimes(path.join(low, p), WHEN);
  return s;
}

t.test('open for write copies up the file and its parents with mode, owner, ns times, xattrs', async (t) => {
  const { ov, upper, work, lowers } = richLower(t);
  const u = upper as string;
  t.notOk(fs.existsSync(path.join(u, 'a')), 'nothing in upper before the change');
  await readAll(ov, '/a/b/f');
  t.notOk(fs.existsSync(path.join(u, 'a')), 'reading copies nothing up');

  await writeAt(ov, '/a/b/f', 'UPPER', 0);

  const sa = fs.statSync(path.join(u, 'a'));
  t.equal(sa.mode & 0o7777, 0o750, 'parent a: mode');
  t.same([sa.uid, sa.gid], [1234, 5678], 'parent a: owner');
  t.same(timesOf(path.join(u, 'a')), timesOf(path.join(lowers[1], 'a')), 'parent a: ns atime and mtime, kept after its child was linked in');
  t.equal(xattrOf(path.join(u, 'a'), 'user.dir'), 'a', 'parent a: xattr');
  t.equal(fs.statSync(path.join(u, 'a/b')).mode & 0o7777, 0o711, 'parent a/b: mode');
  t.same(timesOf(path.join(u, 'a/b')), timesOf(path.join(lowers[1], 'a/b')), 'parent a/b: ns times');
  t.equal(xattrOf(path.join(u, 'a/b'), 'trusted.overlay.opaque'), undefined, 'a lower dir\'s overlay xattr is not copied');

  const f = path.join(u, 'a/b/f');
  const sf = fs.statSync(f);
  t.equal(sf.mode & 0o7777, 0o6755, 'setuid and setgid kept');
  t.same([sf.uid, sf.gid], [42, 43], 'owner kept');
  t.same(xattrNames(f).filter((n) => !n.startsWith('trusted.overlay.origin')), ['security.k', 'trusted.k', 'user.k'], 'user., trusted., security. xattrs copied; private ones not');
  t.equal(timesOf(f).atime, timesOf(path.join(lowers[1], 'a/b/f')).atime, 'atime copied with ns');
  t.same(workLeft(work as string), [], 'nothing left in workdir/work');
  t.equal(await readAll(ov, '/a/b/f'), 'UPPER data\n', 'the write landed on the copied data');
  t.equal(fs.readFileSync(path.join(lowers[1], 'a/b/f'), 'utf8'), 'lower data\n', 'lower untouched');
});

t.test('chmod, chown, utimens, truncate, setxattr, removexattr each copy up first', async (t) => {
  const files: Record<string, string> = { chmod: 'x', chown: 'x', utimens: 'x', truncate: 'xyz', setx: 'x', rmx: 'x', link: 'x', rename: 'x' };
  const s = coreStack([{ d: { dir: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, { file: v, xattrs: { 'user.keep': '1' } }])) } }], {}, t);
  const ov = s.ov;
  const u = s.upper as string;
  const up = (n: string): string => path.join(u, 'd', n);
  ov.chmod('/d/chmod', 0o600);
  t.equal(fs.statSync(up('chmod')).mode & 0o7777, 0o600, 'chmod');
  ov.chown('/d/chown', 7, 8);
  t.same([fs.statSync(up('chown')).uid, fs.statSync(up('chown')).gid], [7, 8], 'chown');
  ov.utimens('/d/utimens', { sec: 1000, nsec: 123456789 }, { sec: 2000, nsec: 987654321 });
  t.same(timesOf(up('utimens')), { atime: '1000.123456789', mtime: '2000.987654321' }, 'utimens with ns');
  ov.truncate('/d/truncate', 2);
  t.equal(fs.readFileSync(up('truncate'), 'utf8'), 'xy', 'truncate keeps the head of the copied data');
  ov.setxattr('/d/setx', 'user.new', Buffer.from('n'), 0);
  t.equal(xattrOf(up('setx'), 'user.new'), 'n', 'setxattr');
  t.equal(xattrOf(up('setx'), 'user.keep'), '1', 'existing xattrs came along');
  ov.removexattr('/d/rmx', 'user.keep');
  t.ok(fs.existsSync(up('rmx')) && xattrOf(up('rmx'), 'user.keep') === undefined, 'removexattr');
  ov.link('/d/link', '/d/link2', DAEMON_CALLER);
  t.equal(fs.statSync(up('link')).ino, fs.statSync(up('link2')).ino, 'link: both names in upper, one inode');
  ov.rename('/d/rename', '/d/renamed');
  t.equal(fs.readFileSync(up('renamed'), 'utf8'), 'x', 'rename');
  for (const n of ['chmod', 'chown', 'utimens', 'truncate', 'setx', 'link', 'renamed']) {
    t.equal(xattrOf(up(n), 'user.keep'), '1', `${n}: a copy, with the lower xattrs`);
  }
  t.same(workLeft(s.work as string), [], 'nothing left in workdir/work');
});

t.test('what does not change an entry copies nothing up', async (t) => {
  const s = coreStack([{ d: { dir: { f: { file: 'x', xattrs: { 'user.a': '1' } } } } }], {}, t);
  const ov = s.ov;
  ov.getattr('/d/f');
  ov.getxattr('/d/f', 'user.a');
  ov.listxattr('/d/f');
  ov.readdir('/d');
  await readAll(ov, '/d/f');
  t.throws(() => ov.removexattr('/d/f', 'user.absent'), { code: 'ENODATA' }, 'removing an absent xattr fails first');
  t.same(fs.readdirSync(s.upper as string), [], 'upper still empty');
});

t.test('open with O_TRUNC and truncate to 0 copy no data; sparse files stay sparse', async (t) => {
  const s = coreStack([{}], {}, t);
  const low = s.lowers[0];
  const big = path.join(low, 'sparse');
  const fd = fs.openSync(big, 'w');
  fs.writeSync(fd, 'head', 0);
  fs.writeSync(fd, 'middle', 5 * 1024 * 1024);
  fs.ftruncateSync(fd, 16 * 1024 * 1024);
  fs.closeSync(fd);
  fs.writeFileSync(path.join(low, 'trunc'), 'old contents');
  fs.writeFileSync(path.join(low, 'zero'), 'old contents');
  const ov = s.ov;

  ov.chmod('/sparse', 0o640);
  const us = fs.statSync(path.join(s.upper as string, 'sparse'));
  t.equal(us.size, 16 * 1024 * 1024, 'size kept');
  t.ok(us.blocks * 512 < 4 * 1024 * 1024, `holes kept: ${us.blocks} blocks of 512 for 16 MiB`);
  const data = fs.readFileSync(path.join(s.upper as string, 'sparse'));
  t.equal(data.subarray(5 * 1024 * 1024, 5 * 1024 * 1024 + 6).toString(), 'middle', 'data after a hole copied');
  t.equal(data.subarray(0, 4).toString(), 'head');

  const h = ov.open('/trunc', C.O_WRONLY | C.O_TRUNC);
  ov.release(h);
  t.equal(fs.statSync(path.join(s.upper as string, 'trunc')).size, 0, 'O_TRUNC: empty copy');
  ov.truncate('/zero', 0);
  t.equal(fs.statSync(path.join(s.upper as string, 'zero')).size, 0, 'truncate to 0: empty copy');
  t.equal(fs.readFileSync(path.join(low, 'trunc'), 'utf8'), 'old contents', 'lower untouched');
});

t.test('symlinks, fifos and device nodes copy up as themselves', async (t) => {
  const s = coreStack([{ d: { dir: { sym: { symlink: '../target' }, fifo: { fifo: true }, null: { chr: [1, 3] } } } }], {}, t);
  const low = path.join(s.lowers[0], 'd');
  for (const n of ['sym', 'fifo', 'null']) setTimes(path.join(low, n), WHEN);
  setXattr(path.join(low, 'fifo'), 'trusted.f', 'fifo'); // user.* is for files and dirs only
  const ov = s.ov;
  ov.chown('/d/sym', 5, 6);
  ov.chown('/d/fifo', 5, 6);
  ov.chown('/d/null', 5, 6);
  const u = path.join(s.upper as string, 'd');
  const sym = fs.lstatSync(path.join(u, 'sym'));
  t.ok(sym.isSymbolicLink(), 'symlink is a symlink');
  t.equal(fs.readlinkSync(path.join(u, 'sym')), '../target', 'same target');
  t.same([sym.uid, sym.gid], [5, 6], 'the symlink itself was chowned');
  t.ok(fs.lstatSync(path.join(u, 'fifo')).isFIFO(), 'fifo is a fifo');
  t.equal(xattrOf(path.join(u, 'fifo'), 'trusted.f'), 'fifo', 'fifo xattr copied');
  const nul = fs.lstatSync(path.join(u, 'null'));
  t.ok(nul.isCharacterDevice() && nul.rdev === fs.lstatSync('/dev/null').rdev, 'device node with its numbers');
  for (const n of ['sym', 'fifo', 'null']) t.equal(timesOf(path.join(u, n)).mtime, timesOf(path.join(low, n)).mtime, `${n}: ns mtime`);
  t.same(workLeft(s.work as string), []);
});

t.test('copy-up of a file in a dir copied up earlier, and of a dir alone', async (t) => {
  const s = coreStack([{ d: { dir: { e: { dir: { f: 'f', g: 'g' } } } } }], {}, t);
  const ov = s.ov;
  ov.chmod('/d/e/f', 0o600);
  const e = path.join(s.upper as string, 'd/e');
  setTimes(e, WHEN);
  const before = timesOf(e);
  ov.chmod('/d/e/g', 0o600);
  t.same(timesOf(e), before, 'copying a child into a dir already in upper keeps the dir\'s times');
  ov.chmod('/d', 0o700);
  t.equal(fs.statSync(path.join(s.upper as string, 'd')).mode & 0o777, 0o700);
  t.same(fs.readdirSync(path.join(s.upper as string, 'd/e')).sort(), ['f', 'g'], 'a copied-up dir holds only what was copied');
  t.same(ov.readdir('/d/e').map((e) => e.name).sort(), ['f', 'g'], 'merged view unchanged');
});

t.test('leftovers in workdir/work are removed when the overlay opens', async (t) => {
  const s = coreStack([{ f: 'x' }]);
  s.ov.close();
  t.teardown(() => removeTree(s.base));
  const w = path.join(s.work as string, 'work');
  fs.mkdirSync(path.join(w, '#half-copied-dir/sub'), { recursive: true });
  fs.writeFileSync(path.join(w, '#half-copied-dir/sub/file'), 'x');
  fs.writeFileSync(path.join(w, '#half-copied-file'), 'x');
  execFileSync('mknod', [path.join(w, '#whiteout'), 'c', '0', '0']);
  const ov = new Overlay(s.cfg);
  t.teardown(() => ov.close());
  t.same(fs.readdirSync(w), [], 'emptied');
  t.equal(ov.getattr('/f').size, 1, 'and the mount works');
});

t.test('the number a copy-up keeps, given back without reading the origin again; a new file\'s own', async (t) => {
  const s = coreStack([{ d: { dir: { f: 'x', g: 'y' } } }], {}, t);
  const ov = s.ov;
  const lowerIno = ov.getattr('/d/f').ino;
  ov.chmod('/d/f', 0o600);
  const a = ov.getattr('/d/f');
  t.equal(a.ino, lowerIno, 'the copy shows its origin\'s number');
  t.ok(a.inUpper && a.realIno !== undefined && a.realIno !== lowerIno, 'an upper object of its own');
  const key = `${a.dev}:${a.realIno}`;
  ov.chmod('/d/f', 0o640); // moves ctime, the origin cache's key
  // The parent's node of the one tree (the directory, resolved, is cached on it).
  const d = (): Node => { ov.resolver.dir('/d'); return ov.tree.find('/d') as Node; };
  const again = ov.getattrOfUpper(d(), 'f', key, a.ino);
  t.same(again, ov.getattr('/d/f'), 'the same object: the attributes a full getattr gives');
  t.equal(again.mode & 0o7777, 0o640, 'fresh attributes');
  t.same(ov.getattrOfUpper(d(), 'f', `${a.dev}:0`, 1n), ov.getattr('/d/f'), 'another object than the one named: looked up in full');
  // Removed and made again: ext4 may hand the new file the freed inode number, so only the
  // caller knows which object its number was for (the kernel transport learns it afresh each
  // time it links a node to a name).
  ov.unlink('/d/f');
  const fh = ov.create('/d/f', 0o644, C.O_WRONLY, DAEMON_CALLER);
  const made = ov.createdAttr(fh);
  t.same(made, ov.fgetattr(fh), 'a created file: its own number, as fgetattr reads it');
  t.equal(made.ino, made.realIno, 'no origin');
  ov.release(fh);
  // A path still below: the number of the lower object, whatever was passed.
  t.same(ov.getattrOfUpper(d(), 'g', key, a.ino), ov.getattr('/d/g'), 'a lower object: looked up in full');
});
