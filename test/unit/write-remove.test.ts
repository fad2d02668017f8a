// Removing and re-creating names: whiteouts, opaque directories, create over a whiteout.
// "unlink/rmdir of a name that exists in a lower layer leaves a whiteout in upper; of a
// name only in upper, just removes it"; "mkdir over a whiteout makes an opaque directory".
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { DAEMON_CALLER } from '../../src/core/config';
import { S_IFCHR, S_IFIFO, type Stat } from '../../src/host/stat';
import { E } from '../../src/core/errors';
import type { Layer } from '../../src/core/layers';
import { lowerPositive } from '../../src/core/presence';
import { coreStack } from '../lib/stack';
import { isWhiteout, workLeft, xattrOf } from '../lib/write-helpers';

const names = (ov: { readdir(p: string): { name: string }[] }, p: string): string[] => ov.readdir(p).map((e) => e.name).sort();

t.test('unlink of a lower name leaves a 0/0 whiteout; of an upper-only name removes it', async (t) => {
  const s = coreStack([{ d: { dir: { low: 'l', both: 'lower both' } } }], { upper: { d: { dir: { both: 'upper both', up: 'u' } } } }, t);
  const { ov } = s;
  const u = path.join(s.upper as string, 'd');
  ov.unlink('/d/low');
  t.ok(isWhiteout(path.join(u, 'low')), 'lower-only: whiteout in upper');
  t.throws(() => ov.getattr('/d/low'), { code: 'ENOENT' });
  ov.unlink('/d/both');
  t.ok(isWhiteout(path.join(u, 'both')), 'in upper and below: the upper file is replaced by a whiteout');
  ov.unlink('/d/up');
  t.notOk(fs.existsSync(path.join(u, 'up')), 'upper-only: simply gone, no whiteout');
  t.same(names(ov, '/d'), [], 'merged dir now empty');
  t.same(fs.readdirSync(u).sort(), ['both', 'low'], 'upper holds only the two whiteouts');
  t.throws(() => ov.unlink('/d/low'), { code: 'ENOENT' }, 'a whited-out name is gone');
  t.throws(() => ov.unlink('/d'), { code: 'EISDIR' });
  t.same(workLeft(s.work as string), []);
});

t.test('unlink in a lower-only dir copies the dir up first', async (t) => {
  const s = coreStack([{ a: { dir: { b: { dir: { f: 'f', g: 'g' }, mode: 0o750 } } } }], {}, t);
  s.ov.unlink('/a/b/f');
  const ub = path.join(s.upper as string, 'a/b');
  t.equal(fs.statSync(ub).mode & 0o777, 0o750, 'parent copied up with its mode');
  t.ok(isWhiteout(path.join(ub, 'f')));
  t.same(fs.readdirSync(ub), ['f'], 'only the whiteout, g stays below');
  t.same(names(s.ov, '/a/b'), ['g']);
});

t.test('rmdir: ENOTEMPTY while entries show; succeeds once all are whited out, leaving a whiteout', async (t) => {
  const s = coreStack([{ d: { dir: { x: 'x', sub: { dir: { y: 'y' } } } }, e: { dir: {} } }], { upper: { up: { dir: {} } } }, t);
  const { ov } = s;
  const u = s.upper as string;
  t.throws(() => ov.rmdir('/d'), { code: 'ENOTEMPTY' }, 'lower entries show');
  t.throws(() => ov.rmdir('/d/x'), { code: 'ENOTDIR' });
  ov.unlink('/d/x');
  t.throws(() => ov.rmdir('/d'), { code: 'ENOTEMPTY' }, 'sub still shows');
  t.throws(() => ov.rmdir('/d/sub'), { code: 'ENOTEMPTY' });
  ov.unlink('/d/sub/y');
  ov.rmdir('/d/sub');
  t.ok(isWhiteout(path.join(u, 'd/sub')), 'emptied merged dir: replaced by a whiteout');
  ov.rmdir('/d');
  t.ok(isWhiteout(path.join(u, 'd')), 'the upper dir full of whiteouts is gone, a whiteout in its place');
  t.throws(() => ov.getattr('/d'), { code: 'ENOENT' });
  ov.rmdir('/e');
  t.ok(isWhiteout(path.join(u, 'e')), 'empty lower-only dir: whiteout');
  ov.rmdir('/up');
  t.notOk(fs.existsSync(path.join(u, 'up')), 'upper-only empty dir: removed, no whiteout');
  t.throws(() => ov.rmdir('/'), { code: 'EBUSY' });
  t.same(workLeft(s.work as string), []);
});

t.test('mkdir over a whiteout makes an opaque dir: trusted.overlay.opaque=y', async (t) => {
  const s = coreStack([{ d: { dir: { old: 'old' } } }], {}, t);
  const { ov } = s;
  const u = s.upper as string;
  ov.unlink('/d/old');
  ov.rmdir('/d');
  ov.mkdir('/d', 0o755, DAEMON_CALLER);
  t.ok(fs.statSync(path.join(u, 'd')).isDirectory(), 'a directory replaced the whiteout');
  t.equal(xattrOf(path.join(u, 'd'), 'trusted.overlay.opaque'), 'y', 'opaque');
  t.same(names(ov, '/d'), [], 'nothing from below shows through');
  t.same(fs.readdirSync(path.join(u, 'd')), [], 'and the upper dir is really empty');
  ov.mkdir('/fresh', 0o755, DAEMON_CALLER);
  t.equal(xattrOf(path.join(u, 'fresh'), 'trusted.overlay.opaque'), undefined, 'mkdir where nothing was: not opaque');
  t.throws(() => ov.mkdir('/d', 0o755, DAEMON_CALLER), { code: 'EEXIST' });
  t.same(workLeft(s.work as string), []);
});

t.test('with userxattr the opaque mark is user.overlay.opaque', async (t) => {
  const s = coreStack([{ d: { dir: { old: 'old' } } }], { userxattr: true }, t);
  s.ov.unlink('/d/old');
  s.ov.rmdir('/d');
  s.ov.mkdir('/d', 0o755, DAEMON_CALLER);
  const ud = path.join(s.upper as string, 'd');
  t.equal(xattrOf(ud, 'user.overlay.opaque'), 'y');
  t.equal(xattrOf(ud, 'trusted.overlay.opaque'), undefined);
  t.same(names(s.ov, '/d'), []);
});

t.test('create, mknod, symlink, link over whiteouts replace them', async (t) => {
  const s = coreStack([{ f: 'lower f', n: 'lower n', l: 'lower l', h: 'lower h', src: 'src', d: { dir: { below: 'b' } } }], {}, t);
  const { ov } = s;
  const u = s.upper as string;
  for (const n of ['f', 'n', 'l', 'h']) ov.unlink('/' + n);
  const fh = ov.create('/f', 0o640, 2, DAEMON_CALLER);
  await ov.write(fh, Buffer.from('new'), 3, 0);
  ov.release(fh);
  ov.mknod('/n', S_IFIFO | 0o644, 0, 0, DAEMON_CALLER);
  ov.symlink('target', '/l', DAEMON_CALLER);
  ov.link('/src', '/h', DAEMON_CALLER);
  const st = (n: string): fs.Stats => fs.lstatSync(path.join(u, n));
  t.ok(st('f').isFile() && fs.readFileSync(path.join(u, 'f'), 'utf8') === 'new', 'create over a whiteout');
  t.equal(st('f').mode & 0o777, 0o640);
  t.ok(st('n').isFIFO(), 'mknod over a whiteout');
  t.ok(st('l').isSymbolicLink() && fs.readlinkSync(path.join(u, 'l')) === 'target', 'symlink over a whiteout');
  t.ok(st('h').isFile() && st('h').ino === st('src').ino, 'link over a whiteout: same inode as the copied-up source');
  t.equal(ov.getattr('/h').nlink, 2, 'nlink 2 through the merged view');
  for (const n of ['f', 'n', 'l', 'h']) t.equal(xattrOf(path.join(u, n), 'trusted.overlay.opaque'), undefined, `${n} not marked`);
  t.same(fs.readdirSync(u).sort(), ['f', 'h', 'l', 'n', 'src'], 'no whiteout or .wh. marker left');
  t.throws(() => ov.create('/f', 0o644, 2, DAEMON_CALLER), { code: 'EEXIST' });
  t.throws(() => ov.mknod('/d/below', S_IFCHR | 0o644, 1, 3, DAEMON_CALLER), { code: 'EEXIST' }, 'a lower name exists too');
  t.throws(() => ov.create('/.wh.x', 0o644, 2, DAEMON_CALLER), { code: 'EINVAL' }, 'whiteout-looking names are refused');
  t.same(workLeft(s.work as string), []);
});

t.test('rm -rf d; mkdir d; mv d d2 leaves d absent', async (t) => {
  const s = coreStack([{ d: { dir: { a: 'a', s: { dir: { b: 'b' } } } } }], {}, t);
  const { ov } = s;
  ov.unlink('/d/s/b');
  ov.rmdir('/d/s');
  ov.unlink('/d/a');
  ov.rmdir('/d');
  ov.mkdir('/d', 0o755, DAEMON_CALLER);
  ov.rename('/d', '/d2');
  t.throws(() => ov.getattr('/d'), { code: 'ENOENT' }, 'd absent');
  t.same(names(ov, '/'), ['d2']);
  t.same(names(ov, '/d2'), [], 'd2 opaque and empty');
  const u = s.upper as string;
  t.ok(isWhiteout(path.join(u, 'd')), 'whiteout at d: lower d still exists');
  t.equal(xattrOf(path.join(u, 'd2'), 'trusted.overlay.opaque'), 'y');
  t.same(workLeft(s.work as string), []);
});

t.test('a lower layer that answers with an error hides nothing: the name counts as present (ovl_lower_positive)', async (t) => {
  const s = coreStack([{ d: { dir: { f: 'lower f' } } }, { d: { dir: {} } }], {}, t);
  const ov = s.ov;
  ov.getattr('/d/f');
  const upper = { writable: true } as unknown as Layer;
  const lower = { writable: false } as unknown as Layer;
  const fake = (answers: Record<string, number | 'file'>) => (_fd: number, name: string) => {
    const a = answers[name] ?? -E.ENOENT;
    return a === 'file' ? ({ mode: 0o100644, rdevMajor: 0, rdevMinor: 0 } as unknown as Stat) : a;
  };
  const dirs = [{ layer: upper, fd: -1 }, { layer: lower, fd: -1 }, { layer: lower, fd: -1 }];
  t.equal(lowerPositive(dirs, upper, 'f', fake({})), false, 'absent everywhere');
  t.equal(lowerPositive(dirs, upper, 'f', fake({ f: 'file' })), true, 'present below');
  for (const e of ['EACCES', 'EIO', 'ELOOP', 'ENOTDIR'] as const) {
    t.equal(lowerPositive(dirs, upper, 'f', fake({ f: -E[e] })), true, `${e} in a lower layer: present, so a removal leaves a whiteout`);
  }
  t.equal(lowerPositive(dirs, upper, 'f', fake({ f: -E.ENAMETOOLONG })), false, 'ENAMETOOLONG is absent, as for the kernel');
  t.equal(lowerPositive(dirs, upper, 'f', fake({ '.wh.f': 'file' })), false, 'an OCI .wh. file whites it out');
  t.equal(lowerPositive(dirs, upper, 'f', fake({ '.wh.f': -E.EIO })), true, 'an error reading the .wh. file: present');
  // Before this rule, lowerPositive answered "absent" on EACCES/EIO: an unlink then left no
  // whiteout and the file came back once the layer read again. Through the core, a real stack:
  ov.unlink('/d/f');
  t.ok(isWhiteout(path.join(s.upper as string, 'd', 'f')), 'the ordinary case still whites out');
});
