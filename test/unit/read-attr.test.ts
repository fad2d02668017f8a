// What a stat, readlink, getxattr or listxattr of the merged view returns: the winning
// object's attributes, merged-directory link counts and inode numbers as the kernel
// reports them, the overlay's own xattrs hidden, and EROFS for writes on read-only mounts.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { toBinary } from '../../src/host/bytes';
import { C, sys } from '../../src/host/native';
import { Overlay } from '../../src/core/overlay';
import { DAEMON_CALLER } from '../../src/core/config';
import { build, tmpdir, type Tree } from '../lib/tree';
import { coreStack, removeTree } from '../lib/stack';

/** Sets exact ns times on a host path (lutimes semantics). */
function setTimes(p: string, atime: [number, number], mtime: [number, number]): void {
  const r = sys.utimensat(-100, toBinary(p), atime[0], atime[1], mtime[0], mtime[1]);
  if (r < 0) throw new Error(`utimensat ${p}: ${r}`);
}

t.test('getattr reports type, mode, owner, size and times of the winning object', async (t) => {
  const s = coreStack([
    { f: { file: 'lower zero content' }, d: { dir: { x: '' } }, l: { symlink: 'lower-target-longer' } },
    { f: 'lower one', d: { dir: {} }, dev: { chr: [7, 3] } },
  ], { upper: { f: { file: 'upper', mode: 0o4751 }, d: { dir: {}, mode: 0o1730 }, l: { symlink: 'up' } } }, t);
  const u = s.upper as string;
  fs.chownSync(path.join(u, 'f'), 1234, 5678);
  fs.chmodSync(path.join(u, 'f'), 0o4751); // after chown, which clears setuid
  fs.lchownSync(path.join(u, 'l'), 42, 43);
  fs.chownSync(path.join(u, 'd'), 77, 88);
  setTimes(path.join(u, 'f'), [1000000001, 111111111], [1500000002, 222222222]);
  setTimes(path.join(u, 'd'), [1000000003, 3], [1500000004, 999999999]);
  setTimes(path.join(s.lowers[0], 'f'), [5, 5], [6, 6]);
  for (const [p, real] of [['/f', path.join(u, 'f')], ['/d', path.join(u, 'd')], ['/l', path.join(u, 'l')], ['/dev', path.join(s.lowers[1], 'dev')]]) {
    const a = s.ov.getattr(p);
    const st = fs.lstatSync(real, { bigint: true });
    t.same(
      { mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, ino: a.ino, blocks: a.blocks, rdev: [a.rdevMajor, a.rdevMinor] },
      { mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size), ino: st.ino, blocks: Number(st.blocks), rdev: p === '/dev' ? [7, 3] : [0, 0] },
      p,
    );
    const ns = (x: { sec: number; nsec: number }): bigint => BigInt(x.sec) * 1000000000n + BigInt(x.nsec);
    t.same([ns(a.atime), ns(a.mtime), ns(a.ctime)], [st.atimeNs, st.mtimeNs, st.ctimeNs], `${p}: times to the nanosecond`);
  }
  t.equal(s.ov.getattr('/f').mode, 0o104751);
  t.same([s.ov.getattr('/f').mtime.sec, s.ov.getattr('/f').mtime.nsec], [1500000002, 222222222]);
  t.equal(s.ov.getattr('/l').size, 2, 'a symlink reports the length of its target');
});

t.test('merged directories report nlink 1, single ones their real link count', async (t) => {
  const s = coreStack([
    { m: { dir: { a: { dir: {} }, b: { dir: {} } } }, only: { dir: { a: { dir: {} }, b: { dir: {} } } } },
    { m: { dir: { c: { dir: {} } } }, lowonly: { dir: { c: { dir: {} } } } },
  ], { upper: { m: { dir: {} } } }, t);
  t.equal(s.ov.getattr('/').nlink, 1, 'root merges all layers');
  t.equal(s.ov.getattr('/m').nlink, 1);
  t.equal(s.ov.getattr('/only').nlink, 4);
  t.equal(s.ov.getattr('/lowonly').nlink, 3);
  t.equal(s.ov.getattr('/m/a').nlink, 2);
  const single = coreStack([{ x: { dir: { y: { dir: {} } } } }], { upper: false }, t);
  t.equal(single.ov.getattr('/').nlink, fs.statSync(single.lowers[0]).nlink, 'a one-layer root is not merged');
  t.equal(single.ov.getattr('/x').nlink, 3);
  const f = coreStack([{ h: 'hard' }], {}, t);
  fs.linkSync(path.join(f.lowers[0], 'h'), path.join(f.lowers[0], 'h2'));
  t.equal(f.ov.getattr('/h').nlink, 2, 'files keep their real link count');
  t.equal(f.ov.getattr('/h').ino, f.ov.getattr('/h2').ino, 'hard links share their inode number');
});

/** Every merged path below `dir`. */
function walk(ov: Overlay, dir = '/'): string[] {
  const out: string[] = [];
  for (const e of ov.readdir(dir)) {
    const p = dir === '/' ? '/' + e.name : dir + '/' + e.name;
    out.push(p);
    if (e.type === 4) out.push(...walk(ov, p));
  }
  return out;
}

t.test('st_ino: the same on every stat, distinct for distinct files', async (t) => {
  const tree = (tag: string): Tree => ({ a: tag, d: { dir: { a: tag, [tag]: tag, e: { dir: { f: tag } } } }, [tag]: { dir: { z: tag } } });
  const s = coreStack([tree('l0'), tree('l1'), tree('l2')], { upper: tree('up') }, t);
  const paths = ['/', ...walk(s.ov)];
  const first = new Map(paths.map((p) => [p, s.ov.getattr(p).ino]));
  t.equal(new Set(first.values()).size, paths.length, `${paths.length} distinct inode numbers`);
  s.ov.resolver.cache.clear();
  for (const p of paths) t.equal(s.ov.getattr(p).ino, first.get(p), `stable: ${p}`);
  for (const p of paths.filter((x) => x !== '/')) {
    const [dir, name] = [path.posix.dirname(p), path.posix.basename(p)];
    t.equal(s.ov.readdir(dir).find((e) => e.name === name)?.ino, first.get(p), `readdir d_ino = st_ino: ${p}`);
  }
  t.equal(first.get('/d/a'), fs.lstatSync(path.join(s.upper as string, 'd/a'), { bigint: true }).ino, 'one filesystem: the real inode number');
  t.equal(first.get('/l1/z'), fs.lstatSync(path.join(s.lowers[1], 'l1/z'), { bigint: true }).ino);
});

// A second filesystem for layers, told apart from the temp dir's.
const shm = '/dev/shm';
const noShm = !fs.existsSync(shm) || fs.statSync(shm).dev === fs.statSync(os.tmpdir()).dev ? 'no second filesystem at /dev/shm' : false;

t.test('st_ino across filesystems: distinct and stable with a layer on tmpfs', { skip: noShm }, async (t) => {
  const onTmpfs = tmpdir('overlayd-unit-', shm);
  const onDisk = tmpdir('overlayd-unit-');
  t.teardown(() => { removeTree(onTmpfs); removeTree(onDisk); });
  const files: Record<string, string> = {};
  for (let i = 0; i < 50; i++) files[`f${i}`] = String(i);
  build(path.join(onTmpfs, 'l0'), { ...files, t: { dir: { x: '' } } });
  build(path.join(onDisk, 'l1'), { ...Object.fromEntries(Object.keys(files).map((k) => [k + 'b', 'b'])), t: { dir: { y: '' } } });
  build(path.join(onDisk, 'u'), { up: '' });
  build(path.join(onDisk, 'w'), {});
  const ov = new Overlay({ lowerdirs: [path.join(onTmpfs, 'l0'), path.join(onDisk, 'l1')], upperdir: path.join(onDisk, 'u'), workdir: path.join(onDisk, 'w'), userxattr: false, volatile: false, readonly: false });
  t.teardown(() => ov.close());
  t.notOk(ov.stack.singleDevice);
  const paths = ['/', ...walk(ov)];
  const inos = paths.map((p) => ov.getattr(p).ino);
  t.equal(new Set(inos).size, paths.length, 'no two files share an inode number');
  ov.resolver.cache.clear();
  t.same(paths.map((p) => ov.getattr(p).ino), inos, 'the same on every stat');
});

t.test('readlink returns the winning symlink target', async (t) => {
  const s = coreStack([{ a: { symlink: 'lower/a' }, b: { symlink: 'lower/b' }, f: { symlink: 'x' }, g: { symlink: 'y' } }], {
    upper: { a: { symlink: '/abs/upper' }, f: 'a file over a link', g: { whiteout: true } },
  }, t);
  const dangling = 'does/not/exist/' + 'z'.repeat(1000);
  fs.symlinkSync(dangling, path.join(s.lowers[0], 'long'));
  t.equal(s.ov.readlink('/a'), '/abs/upper');
  t.equal(s.ov.readlink('/b'), 'lower/b');
  t.equal(s.ov.readlink('/long'), dangling, 'targets are not resolved');
  t.throws(() => s.ov.readlink('/f'), { code: 'EINVAL' });
  t.throws(() => s.ov.readlink('/g'), { code: 'ENOENT' });
  t.throws(() => s.ov.readlink('/'), { code: 'EINVAL' });
});

t.test("getxattr/listxattr show the winner's xattrs and hide the mount's own overlay.* namespace", async (t) => {
  // As kernel overlayfs (6.7+): the mount's namespace, trusted.overlay. (user.overlay. with
  // userxattr), is private; <ns>overlay.overlay.X is an escaped caller xattr <ns>overlay.X;
  // the other namespace is an ordinary one.
  for (const userxattr of [false, true]) {
    const [own, other] = userxattr ? ['user.overlay.', 'trusted.overlay.'] : ['trusted.overlay.', 'user.overlay.'];
    const label = userxattr ? 'userxattr' : 'trusted';
    const priv = { [own + 'opaque']: 'y', [own + 'redirect']: '/x', [own + 'origin']: 'o' };
    const s = coreStack([
      { f: { file: '', xattrs: { 'user.lower': 'l', 'user.shared': 'lower' } }, d: { dir: {}, xattrs: { 'user.lowdir': '1' } } },
    ], {
      userxattr,
      upper: {
        f: { file: '', xattrs: { ...priv, [own + 'overlay.esc']: 'escaped', [other + 'plain']: 'p', 'user.shared': 'upper', 'trusted.other': 't', 'user.overlayish': 'u' } },
        d: { dir: {}, xattrs: { ...priv, 'user.updir': '2' } },
      },
    }, t);
    fs.symlinkSync('f', path.join(s.upper as string, 'ln'));
    execFileSync('setfattr', ['-h', '-n', 'trusted.overlay.x', '-v', '1', path.join(s.upper as string, 'ln')]);
    execFileSync('setfattr', ['-h', '-n', 'trusted.link', '-v', 'L', path.join(s.upper as string, 'ln')]);
    t.same(s.ov.listxattr('/f').sort(), [own + 'esc', other + 'plain', 'trusted.other', 'user.overlayish', 'user.shared'].sort(), label);
    t.equal(s.ov.getxattr('/f', 'user.shared').toString(), 'upper');
    t.equal(s.ov.getxattr('/f', 'user.overlayish').toString(), 'u');
    t.equal(s.ov.getxattr('/f', own + 'esc').toString(), 'escaped', `${label}: escaped name read back under the caller's name`);
    t.equal(s.ov.getxattr('/f', other + 'plain').toString(), 'p', `${label}: the other namespace is ordinary`);
    t.throws(() => s.ov.getxattr('/f', 'user.lower'), { code: 'ENODATA' }, 'not merged from below');
    for (const name of Object.keys(priv)) t.throws(() => s.ov.getxattr('/f', name), { code: 'ENODATA' }, `${label}: ${name}`);
    t.same(s.ov.listxattr('/d'), ['user.updir'], `${label}: an opaque dir: only its own, public xattrs`);
    t.same(s.ov.listxattr('/ln').sort(), userxattr ? ['trusted.link', 'trusted.overlay.x'] : ['trusted.link'], `${label}: a symlink: its own xattrs`);
    t.equal(s.ov.getxattr('/ln', 'trusted.link').toString(), 'L');
    t.throws(() => s.ov.getxattr('/f', 'user.absent'), { code: 'ENODATA' });
  }
});

t.test('a read-only mount refuses every write with EROFS and reads all layers', async (t) => {
  for (const [label, opts] of [['no upper', { upper: false }], ['ro with an upper', { upper: { up: 'upper' }, readonly: true }]] as const) {
    const { ov } = coreStack([{ f: 'file', d: { dir: { x: '' } }, l: { symlink: 'f' }, e: { dir: {} } }], opts, t);
    t.ok(ov.readonly, label);
    const c = DAEMON_CALLER;
    const writes: [string, () => unknown][] = [
      ['create', () => ov.create('/new', 0o644, C.O_RDWR, c)],
      ['mkdir', () => ov.mkdir('/nd', 0o755, c)],
      ['mknod', () => ov.mknod('/nf', 0o010644, 0, 0, c)],
      ['symlink', () => ov.symlink('t', '/ns', c)],
      ['link', () => ov.link('/f', '/nl', c)],
      ['unlink', () => ov.unlink('/f')],
      ['rmdir', () => ov.rmdir('/e')],
      ['rename', () => ov.rename('/f', '/g')],
      ['chmod', () => ov.chmod('/f', 0o600)],
      ['chown', () => ov.chown('/f', 1, 1)],
      ['utimens', () => ov.utimens('/f', { sec: 1, nsec: 0 }, { sec: 1, nsec: 0 })],
      ['truncate', () => ov.truncate('/f', 0)],
      ['setxattr', () => ov.setxattr('/f', 'user.a', Buffer.from('1'), 0)],
      ['removexattr', () => ov.removexattr('/f', 'user.a')],
      ['open O_WRONLY', () => ov.open('/f', C.O_WRONLY)],
      ['open O_RDWR', () => ov.open('/f', C.O_RDWR)],
      ['open O_TRUNC', () => ov.open('/f', C.O_RDONLY | C.O_TRUNC)],
      ['access W_OK', () => ov.access('/f', 2)],
    ];
    for (const [op, fn] of writes) t.throws(fn, { code: 'EROFS' }, `${label}: ${op}`);
    const h = ov.open('/f', C.O_RDONLY);
    t.throws(() => ov.ftruncate(h, 0), { code: 'EROFS' }, `${label}: ftruncate`);
    const buf = Buffer.alloc(16);
    t.equal(await ov.read(h, buf, 16, 0), 4);
    ov.release(h);
    t.doesNotThrow(() => ov.access('/f', 4), `${label}: reading is fine`);
    t.equal(ov.getattr('/f').size, 4);
    if (label === 'ro with an upper') t.equal(ov.getattr('/up').size, 5, 'the upper layer is read');
  }
});

t.test('open and read: the winner\'s data; directories are EISDIR', async (t) => {
  const big = Buffer.alloc(300000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 9)) & 0xff;
  const s = coreStack([{ big: 'small', d: { dir: {} } }, {}], {}, t);
  fs.writeFileSync(path.join(s.lowers[1], 'big'), 'shadowed');
  fs.writeFileSync(path.join(s.upper as string, 'big'), big);
  const h = s.ov.open('/big', C.O_RDONLY);
  t.teardown(() => s.ov.release(h));
  const out = Buffer.alloc(big.length + 10);
  let pos = 0;
  for (;;) {
    const n = await s.ov.read(h, out.subarray(pos), Math.min(65536, out.length - pos), pos);
    if (n === 0) break;
    pos += n;
  }
  t.equal(pos, big.length);
  t.ok(out.subarray(0, pos).equals(big), 'byte-identical');
  const mid = Buffer.alloc(1000);
  t.equal(await s.ov.read(h, mid, 1000, 123457), 1000);
  t.ok(mid.equals(big.subarray(123457, 124457)), 'reads at an offset');
  t.throws(() => s.ov.open('/d', C.O_RDONLY), { code: 'EISDIR' });
  t.throws(() => s.ov.open('/absent', C.O_RDONLY), { code: 'ENOENT' });
});

t.test('statfs answers for the upper layer, or the top lower layer when read-only', { skip: noShm }, async (t) => {
  const other = tmpdir('overlayd-unit-', shm);
  const disk = tmpdir('overlayd-unit-');
  t.teardown(() => { removeTree(other); removeTree(disk); });
  build(path.join(other, 'top'), {});
  build(path.join(other, 'u'), {});
  build(path.join(other, 'w'), {});
  build(path.join(disk, 'low'), {});
  const shmFs = fs.statfsSync(other);
  const diskFs = fs.statfsSync(disk);
  t.not(shmFs.blocks, diskFs.blocks, 'two filesystems told apart by their size');
  const rw = new Overlay({ lowerdirs: [path.join(disk, 'low')], upperdir: path.join(other, 'u'), workdir: path.join(other, 'w'), userxattr: false, volatile: false, readonly: false });
  t.teardown(() => rw.close());
  t.same([rw.statfs().blocks, rw.statfs().bsize, rw.statfs().files], [shmFs.blocks, shmFs.bsize, shmFs.files], 'upper');
  const ro = new Overlay({ lowerdirs: [path.join(other, 'top'), path.join(disk, 'low')], userxattr: false, volatile: false, readonly: false });
  t.teardown(() => ro.close());
  t.same([ro.statfs().blocks, ro.statfs().files], [shmFs.blocks, shmFs.files], 'top lower');
  const ro2 = new Overlay({ lowerdirs: [path.join(disk, 'low'), path.join(other, 'top')], userxattr: false, volatile: false, readonly: false });
  t.teardown(() => ro2.close());
  t.same([ro2.statfs().blocks, ro2.statfs().files], [diskFs.blocks, diskFs.files], 'top lower, the other way round');
  t.equal(ro.statfs().namemax, 255);
});
