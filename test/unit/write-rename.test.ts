// rename(2) and link(2) over the union, as kernel overlayfs does without redirect_dir:
// non-directories copy up and move in upper, with a whiteout at the old name when something
// still lies below it; a directory with lower content gives EXDEV (mv then copies); an
// upper-only directory moves, made opaque when it lands in a merged directory.
// Every expectation here was checked against kernel overlayfs (6.18) on the same layout.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { C } from '../../src/host/native';
import { DAEMON_CALLER } from '../../src/core/config';
import { coreStack } from '../lib/stack';
import { isWhiteout, workLeft, xattrOf } from '../lib/write-helpers';

const names = (ov: { readdir(p: string): { name: string }[] }, p: string): string[] => ov.readdir(p).map((e) => e.name).sort();

t.test('files: copy up, rename in upper, whiteout at the old name only when needed', async (t) => {
  const s = coreStack([{ d: { dir: { f: 'f', g: 'g', sym: { symlink: 'f' } } } }], { upper: { up: 'u', d: { dir: { both: 'upper' } } } }, t);
  const { ov } = s;
  const u = s.upper as string;
  ov.rename('/d/f', '/d/f2');
  t.ok(isWhiteout(path.join(u, 'd/f')), 'lower file: whiteout at the old name');
  t.equal(fs.readFileSync(path.join(u, 'd/f2'), 'utf8'), 'f', 'copied up under the new name');
  ov.rename('/d/sym', '/sym2');
  t.equal(fs.readlinkSync(path.join(u, 'sym2')), 'f', 'symlink moved as a symlink');
  t.ok(isWhiteout(path.join(u, 'd/sym')));
  ov.rename('/up', '/up2');
  t.notOk(fs.existsSync(path.join(u, 'up')), 'upper-only: no whiteout');
  ov.rename('/d/f2', '/d/g');
  t.ok(fs.lstatSync(path.join(u, 'd/g')).isFile(), 'over a lower file: it replaces it in upper');
  t.equal(ov.getattr('/d/g').size, 1);
  t.notOk(fs.existsSync(path.join(u, 'd/f2')), 'f2 was upper-only: nothing left at the old name');
  t.same(names(ov, '/d'), ['both', 'g']);
  t.same(names(ov, '/'), ['d', 'sym2', 'up2']);
  t.same(workLeft(s.work as string), []);
});

t.test('directories: upper-only moves (opaque in a merged parent); lower content gives EXDEV', async (t) => {
  const s = coreStack([{ merged: { dir: { m: 'm' } }, low: { dir: { x: 'x' } }, emptylow: { dir: {} } }], { upper: { merged: { dir: {} }, updir: { dir: {} } } }, t);
  const { ov } = s;
  const u = s.upper as string;
  t.throws(() => ov.rename('/low', '/low2'), { code: 'EXDEV' }, 'dir with lower content');
  t.throws(() => ov.rename('/emptylow', '/e2'), { code: 'EXDEV' }, 'even an empty lower dir');
  t.throws(() => ov.rename('/merged', '/merged2'), { code: 'EXDEV' }, 'merged dir');
  t.same(fs.readdirSync(u).sort(), ['merged', 'updir'], 'a refused rename copies nothing up');
  ov.mkdir('/new', 0o755, DAEMON_CALLER);
  fs.writeFileSync(path.join(u, 'new/inside'), 'i');
  ov.rename('/new', '/merged/new');
  t.equal(xattrOf(path.join(u, 'merged/new'), 'trusted.overlay.opaque'), 'y', 'into a merged dir: made opaque');
  t.same(names(ov, '/merged/new'), ['inside'], 'moved with its content');
  ov.mkdir('/new2', 0o755, DAEMON_CALLER);
  ov.rename('/new2', '/updir/new2');
  t.equal(xattrOf(path.join(u, 'updir/new2'), 'trusted.overlay.opaque'), undefined, 'into an upper-only dir: not opaque');
  ov.mkdir('/new3', 0o755, DAEMON_CALLER);
  ov.rename('/new3', '/new3b');
  t.equal(xattrOf(path.join(u, 'new3b'), 'trusted.overlay.opaque'), 'y', 'renamed within a merged dir: opaque too (kernel)');
  t.same(workLeft(s.work as string), []);
});

t.test('a directory replaces an emptied merged directory and hides what lies below', async (t) => {
  const s = coreStack([{ target: { dir: { q: 'q' } } }], {}, t);
  const { ov } = s;
  ov.unlink('/target/q');
  ov.mkdir('/src', 0o755, DAEMON_CALLER);
  const fh = ov.create('/src/s', 0o644, 2, DAEMON_CALLER);
  ov.release(fh);
  ov.rename('/src', '/target');
  const u = s.upper as string;
  t.equal(xattrOf(path.join(u, 'target'), 'trusted.overlay.opaque'), 'y', 'opaque, so q stays hidden');
  t.same(names(ov, '/target'), ['s']);
  t.notOk(fs.existsSync(path.join(u, 'src')), 'src was upper-only');
  t.same(workLeft(s.work as string), []);
});

t.test('errors as rename(2) gives them on the kernel', async (t) => {
  const s = coreStack([{ f: 'f', d: { dir: { x: 'x' } }, e: { dir: {} } }], {}, t);
  const { ov } = s;
  t.throws(() => ov.rename('/f', '/e'), { code: 'EISDIR' });
  t.throws(() => ov.rename('/e', '/f'), { code: 'ENOTDIR' }, 'type mismatch before EXDEV, as the VFS checks it first');
  ov.mkdir('/p', 0o755, DAEMON_CALLER);
  ov.mkdir('/p/q', 0o755, DAEMON_CALLER);
  t.throws(() => ov.rename('/p', '/p/q/z'), { code: 'EINVAL' }, 'into itself');
  t.throws(() => ov.rename('/p', '/f'), { code: 'ENOTDIR' });
  t.throws(() => ov.rename('/p', '/d'), { code: 'ENOTEMPTY' }, 'over a dir that shows entries');
  t.throws(() => ov.rename('/missing', '/x'), { code: 'ENOENT' });
  t.throws(() => ov.rename('/f', '/d/x', C.RENAME_NOREPLACE), { code: 'EEXIST' });
  t.throws(() => ov.rename('/f', '/.wh.f'), { code: 'EINVAL' });
  t.same(fs.readdirSync(s.upper as string).sort(), ['p'], 'failed renames copy nothing up');
});

t.test('link to a lower file copies it up and links in upper; rename between links is a no-op', async (t) => {
  const s = coreStack([{ d: { dir: { f: 'data' } }, other: { dir: {} } }], {}, t);
  const { ov } = s;
  const u = s.upper as string;
  ov.link('/d/f', '/other/l', DAEMON_CALLER);
  const a = fs.statSync(path.join(u, 'd/f'));
  const b = fs.statSync(path.join(u, 'other/l'));
  t.equal(a.ino, b.ino, 'one inode in upper');
  t.equal(a.nlink, 2);
  t.equal(ov.getattr('/d/f').nlink, 2, 'nlink 2 through the merged view, both names');
  t.equal(ov.getattr('/other/l').nlink, 2);
  t.equal(ov.getattr('/d/f').ino, ov.getattr('/other/l').ino, 'same inode number through the view');
  ov.rename('/d/f', '/other/l');
  t.ok(fs.existsSync(path.join(u, 'd/f')), 'rename of a link onto its twin changes nothing');
  t.throws(() => ov.link('/d', '/dl', DAEMON_CALLER), { code: 'EPERM' }, 'no links to directories');
  t.throws(() => ov.link('/d/f', '/other/l', DAEMON_CALLER), { code: 'EEXIST' });
  ov.unlink('/d/f');
  t.ok(isWhiteout(path.join(u, 'd/f')), 'the copied-up link still needs a whiteout: f lies below');
  t.equal(ov.getattr('/other/l').nlink, 1);
  t.same(workLeft(s.work as string), []);
});

t.test('a lower file with two names: copy-up breaks the link, as without index=on', async (t) => {
  const s = coreStack([{}], {}, t);
  fs.writeFileSync(path.join(s.lowers[0], 'a'), 'x');
  fs.linkSync(path.join(s.lowers[0], 'a'), path.join(s.lowers[0], 'b'));
  s.ov.resolver.cache.clear();
  const { ov } = s;
  t.equal(ov.getattr('/a').nlink, 2, 'the lower nlink shows before copy-up');
  ov.chmod('/a', 0o600);
  t.equal(ov.getattr('/a').nlink, 1, 'the copy is a new file');
  t.equal(ov.getattr('/b').nlink, 2, 'the lower name keeps the lower nlink');
  t.equal(ov.getattr('/b').mode & 0o777, 0o644, 'and its mode');
});

t.test('rename between two names of a lower file is a rename: they are two inodes of the overlay', async (t) => {
  // The kernel's overlay (no index) gives each name of a lower hard link its own inode, so the
  // VFS's "same inode: do nothing" does not apply: the source is copied up and replaces the
  // target, and a whiteout hides the old name (checked against kernel overlayfs 6.18).
  const s = coreStack([{}], {}, t);
  fs.writeFileSync(path.join(s.lowers[0], 'a'), 'x');
  fs.linkSync(path.join(s.lowers[0], 'a'), path.join(s.lowers[0], 'b'));
  fs.linkSync(path.join(s.lowers[0], 'a'), path.join(s.lowers[0], 'c'));
  s.ov.resolver.cache.clear();
  const { ov } = s;
  const u = s.upper as string;
  ov.rename('/a', '/b');
  t.same(names(ov, '/'), ['b', 'c']);
  t.ok(isWhiteout(path.join(u, 'a')), 'whiteout at the old name');
  t.equal(ov.getattr('/b').nlink, 1, 'the target is the copy');
  t.equal(ov.getattr('/c').nlink, 3, 'the other lower name is untouched');
  ov.rename('/b', '/c', C.RENAME_EXCHANGE);
  t.equal(ov.getattr('/b').nlink, 1, 'exchange: both copied up');
  t.equal(ov.getattr('/c').nlink, 1);
  t.same(workLeft(s.work as string), []);
});
