// Lookup over the layer stack, rule by rule as Documentation/filesystems/overlayfs.rst states
// them, on real layer directories through the core's public API.
import t from 'tap';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { toBinary } from '../../src/host/bytes';
import { C, sys } from '../../src/host/native';
import { S_IFCHR } from '../../src/host/stat';
import { coreStack } from '../lib/stack';
import { Resolver } from '../../src/core/lookup';
import { dirCacheFdBudget } from '../../src/core/dircache';
import { listMerged } from '../../src/core/readdir';
import type { Tree } from '../lib/tree';
import type { Overlay } from '../../src/core/overlay';

const names = (ov: Overlay, p: string): string[] => ov.readdir(p).map((e) => e.name).sort();

/** Reads a whole merged file through a core handle. */
async function readAll(ov: Overlay, p: string): Promise<string> {
  const h = ov.open(p, C.O_RDONLY);
  try {
    const buf = Buffer.alloc(65536);
    const n = await ov.read(h, buf, buf.length, 0);
    return buf.subarray(0, n).toString();
  } finally {
    ov.release(h);
  }
}

const S_IFMT = 0o170000;
const type = (mode: number): number => mode & S_IFMT;

t.test('the top layer wins and a whiteout hides the name below', async (t) => {
  const { ov } = coreStack([{ a: 'top', w: { whiteout: true } }, { a: 'bottom', w: 'hidden', b: 'only-low' }], {}, t);
  t.equal(ov.getattr('/a').size, 3);
  t.same(names(ov, '/'), ['a', 'b']);
  t.throws(() => ov.getattr('/w'), { code: 'ENOENT' });
});

t.test('an upper file hides the same name in every lower layer', async (t) => {
  const { ov, upper } = coreStack([{ a: 'lower zero', b: { dir: { c: 'c' } } }, { a: 'lower one!!' }], { upper: { a: 'upper' } }, t);
  t.equal(ov.getattr('/a').size, 5);
  t.equal(await readAll(ov, '/a'), 'upper');
  t.equal(ov.getattr('/a').ino, fs.lstatSync(path.join(upper as string, 'a'), { bigint: true }).ino, 'upper object reported');
  t.equal(await readAll(ov, '/b/c'), 'c', 'names only below still show');
});

t.test('a non-directory hides a directory below it: no merge', async (t) => {
  const { ov } = coreStack([{ d: 'i am a file' }, { d: { dir: { x: 'x', y: { dir: {} } } } }], { upper: {} }, t);
  t.equal(type(ov.getattr('/d').mode), 0o100000);
  t.throws(() => ov.getattr('/d/x'), { code: 'ENOTDIR' });
  t.throws(() => ov.readdir('/d'), { code: 'ENOTDIR' });
  t.equal(await readAll(ov, '/d'), 'i am a file');
  // A symlink is a non-directory too, even one pointing at a directory.
  const s = coreStack([{ d: { symlink: '.' } }, { d: { dir: { x: 'x' } } }], {}, t).ov;
  t.equal(type(s.getattr('/d').mode), 0o120000);
  t.throws(() => s.getattr('/d/x'), { code: 'ENOTDIR' });
});

t.test('a directory hides a non-directory below it', async (t) => {
  const { ov } = coreStack([{ d: { dir: { y: 'y' } } }, { d: 'a file below' }], { upper: {} }, t);
  t.equal(type(ov.getattr('/d').mode), 0o040000);
  t.same(names(ov, '/d'), ['y']);
  t.equal(ov.getattr('/d').nlink, 2, 'not merged: the real link count');
});

t.test('directories merge only with directories', async (t) => {
  const { ov } = coreStack([
    { d: { dir: { a: 'a0' } } },
    { d: 'a file between' },
    { d: { dir: { c: 'c2' } } },
  ], { upper: { d: { dir: { u: 'u' } } } }, t);
  t.same(names(ov, '/d'), ['a', 'u'], 'the merge stops at the file');
  t.throws(() => ov.getattr('/d/c'), { code: 'ENOENT' });
});

t.test('directories merge across all layers; the topmost entry of each name wins', async (t) => {
  const { ov } = coreStack([
    { d: { dir: { b: 'b0', sub: { dir: { s0: '' } } } } },
    { d: { dir: { a: 'a-from-l1', c: 'c1', sub: { dir: { s1: '' } } } } },
  ], { upper: { d: { dir: { a: 'a-up' } } } }, t);
  t.same(names(ov, '/d'), ['a', 'b', 'c', 'sub']);
  t.equal(await readAll(ov, '/d/a'), 'a-up');
  t.equal(await readAll(ov, '/d/c'), 'c1');
  t.same(names(ov, '/d/sub'), ['s0', 's1']);
});

t.test('a 0/0 character device whiteout hides the name in all lower layers', async (t) => {
  const { ov } = coreStack([
    { x: { whiteout: true }, m: 'm0' },
    { x: 'x1', m: { whiteout: true }, d: { whiteout: true }, bottom: { whiteout: true } },
    { x: 'x2', m: 'm2', d: { dir: { f: 'f' } } },
  ], { upper: { y: { whiteout: true } } }, t);
  for (const p of ['/x', '/d', '/d/f', '/y', '/bottom']) t.throws(() => ov.getattr(p), { code: 'ENOENT' }, p);
  t.equal(ov.getattr('/m').size, 2, 'a whiteout hides only what lies below it');
  t.same(names(ov, '/'), ['m'], 'whiteouts never show');
  t.throws(() => ov.readdir('/d'), { code: 'ENOENT' });
  t.throws(() => ov.readlink('/x'), { code: 'ENOENT' });
  t.throws(() => ov.open('/x', C.O_RDONLY), { code: 'ENOENT' });
  t.throws(() => ov.getxattr('/x', 'user.a'), { code: 'ENOENT' });
  t.throws(() => ov.listxattr('/x'), { code: 'ENOENT' });
});

t.test('a whiteout below a directory stops the merge there', async (t) => {
  const { ov } = coreStack([{ d: { whiteout: true } }, { d: { dir: { below: '' } } }], { upper: { d: { dir: { above: '' } } } }, t);
  t.same(names(ov, '/d'), ['above']);
  t.throws(() => ov.getattr('/d/below'), { code: 'ENOENT' });
  t.not(ov.getattr('/d').nlink, 1, 'a single directory, not a merged one');
});

t.test('only a 0/0 character device is a whiteout', async (t) => {
  const { ov, lowers } = coreStack([{ c05: { chr: [0, 5] }, c10: { chr: [1, 0] } }, { c05: 'below', b00: 'below' }], { upper: {} }, t);
  execFileSync('mknod', [path.join(lowers[0], 'b00'), 'b', '0', '0']);
  t.same(names(ov, '/'), ['b00', 'c05', 'c10']);
  const c = ov.getattr('/c05');
  t.same([type(c.mode), c.rdevMajor, c.rdevMinor], [S_IFCHR, 0, 5]);
  const b = ov.getattr('/b00');
  t.same([type(b.mode), b.rdevMajor, b.rdevMinor], [0o060000, 0, 0], 'a 0/0 block device is no whiteout');
});

t.test('an OCI .wh.NAME file hides NAME in all lower layers and is never shown', async (t) => {
  const { ov } = coreStack([
    { '.wh.x': '', '.wh.d': '', keep: 'keep0' },
    { x: 'x1', d: { dir: { f: 'f' } }, '.wh.keep': '' },
    { x: 'x2', keep: 'keep2' },
  ], { upper: {} }, t);
  for (const p of ['/x', '/d', '/d/f', '/.wh.x', '/.wh.d', '/.wh.keep']) t.throws(() => ov.getattr(p), { code: 'ENOENT' }, p);
  t.same(names(ov, '/'), ['keep'], 'neither the markers nor what they hide are listed');
  t.equal(ov.getattr('/keep').size, 5, "a marker does not hide its own layer's entry above it");
});

t.test(".wh.NAME does not hide NAME in the marker's own layer", async (t) => {
  const { ov } = coreStack([{ x: 'same layer', '.wh.x': '' }, { x: 'below' }], { upper: {} }, t);
  t.same(names(ov, '/'), ['x']);
  t.equal(await readAll(ov, '/x'), 'same layer');
});

t.test('.wh.NAME beside a directory NAME in the same layer: the directory starts afresh (OCI)', async (t) => {
  // "Whiteout files MUST only apply to resources in lower/parent layers": the marker removes
  // the lower NAME, and the NAME of its own layer is new, merging with nothing below.
  const { ov } = coreStack([{ d: { dir: { a: 'a' } }, '.wh.d': '' }, { d: { dir: { b: 'b' } } }], { upper: {} }, t);
  t.same(names(ov, '/d'), ['a']);
  t.throws(() => ov.getattr('/d/b'), { code: 'ENOENT' });
  t.not(ov.getattr('/d').nlink, 1, 'a single directory, not a merged one');
  t.same(names(ov, '/'), ['d']);
});

t.test('opaque directories stop the merge: trusted.overlay.opaque, user.overlay.opaque, .wh..wh..opq', async (t) => {
  for (const [label, mark, userxattr] of [
    ['trusted.overlay.opaque=y', { opaque: true }, false],
    ['user.overlay.opaque=y (userxattr)', { xattrs: { 'user.overlay.opaque': 'y' } }, true],
    ['user.overlay.opaque=y', { xattrs: { 'user.overlay.opaque': 'y' } }, false],
  ] as const) {
    const { ov } = coreStack([
      { d: { dir: { mid: 'mid', shared: 'mid' }, ...mark } },
      { d: { dir: { low: 'low', shared: 'low' } } },
    ], { upper: { d: { dir: { up: 'up' } } }, userxattr }, t);
    t.same(names(ov, '/d'), ['mid', 'shared', 'up'], label);
    t.throws(() => ov.getattr('/d/low'), { code: 'ENOENT' }, label);
    t.equal(ov.getattr('/d/shared').size, 3, label);
    t.same(ov.listxattr('/d'), [], `${label}: the marker xattr is not shown`);
  }
  const { ov } = coreStack([
    { d: { dir: { mid: 'mid', '.wh..wh..opq': '' } } },
    { d: { dir: { low: 'low' } } },
  ], { upper: { d: { dir: { up: 'up' } } } }, t);
  t.same(names(ov, '/d'), ['mid', 'up'], '.wh..wh..opq');
  t.throws(() => ov.getattr('/d/low'), { code: 'ENOENT' });
  t.throws(() => ov.getattr('/d/.wh..wh..opq'), { code: 'ENOENT' });
});

t.test('an opaque upper directory is not a merged one; only the value y makes it opaque', async (t) => {
  const { ov } = coreStack([
    { o: { dir: { below: '', sub: { dir: {} } } }, n: { dir: { below: '' } } },
  ], { upper: { o: { dir: { sub: { dir: {} } }, opaque: true }, n: { dir: {}, xattrs: { 'trusted.overlay.opaque': 'n' } } } }, t);
  t.same(names(ov, '/o'), ['sub']);
  t.equal(ov.getattr('/o').nlink, 3, 'the real link count of the single upper dir');
  t.same(names(ov, '/n'), ['below'], 'opaque=n merges');
  t.equal(ov.getattr('/n').nlink, 1, 'merged');
});

t.test('a 256-byte name is ENAMETOOLONG, not ENOENT', async (t) => {
  const long255 = 'n'.repeat(255);
  const { ov } = coreStack([{ d: { dir: { [long255]: 'ok' } } }, { d: { dir: {} } }], {}, t);
  t.equal(ov.getattr('/d/' + long255).size, 2, 'a 255-byte name is fine');
  t.throws(() => ov.getattr('/' + 'n'.repeat(256)), { code: 'ENAMETOOLONG' });
  t.throws(() => ov.getattr('/d/' + 'n'.repeat(256)), { code: 'ENAMETOOLONG' });
  t.throws(() => ov.getattr(toBinary('/d/' + 'é'.repeat(128))), { code: 'ENAMETOOLONG' }, 'bytes count, not characters');
  t.throws(() => ov.getattr(toBinary('/d/' + 'é'.repeat(127))), { code: 'ENOENT' }, '254 bytes: just absent');
  t.throws(() => ov.getattr('/d/' + 'n'.repeat(256) + '/x'), { code: 'ENAMETOOLONG' }, 'as a directory component');
  t.throws(() => ov.readdir('/' + 'n'.repeat(300)), { code: 'ENAMETOOLONG' });
  t.throws(() => ov.getattr('/d/.wh.' + 'n'.repeat(252)), { code: 'ENAMETOOLONG' });
});

/** Builds root/comp/comp/.../comp (depth times) fd-relative and hands the deepest dir's fd to `leaf`. */
function deepChain(root: string, comp: string, depth: number, leaf: (fd: number) => void): void {
  let fd = sys.openat(-100, root, C.O_PATH | C.O_DIRECTORY, 0);
  for (let i = 0; i < depth; i++) {
    const r = sys.mkdirat(fd, comp, 0o755);
    if (r < 0 && r !== -17 /* EEXIST */) throw new Error(`mkdirat: ${r}`);
    const next = sys.openat(fd, comp, C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW, 0);
    sys.close(fd);
    fd = next;
  }
  try { leaf(fd); } finally { sys.close(fd); }
}

function writeAt(dirFd: number, name: string, content: string): void {
  const f = sys.openat(dirFd, name, C.O_WRONLY | C.O_CREAT | C.O_TRUNC, 0o644);
  if (f < 0) throw new Error(`openat ${name}: ${f}`);
  fs.writeSync(f, content);
  fs.closeSync(f);
}

t.test('paths longer than PATH_MAX below the layer roots still resolve', async (t) => {
  const s = coreStack([{}, {}], { upper: {} }, t);
  const comp = 'p'.repeat(200);
  const depth = 25; // 25 * 201 bytes: well past PATH_MAX (4096)
  deepChain(s.lowers[0], comp, depth, (fd) => {
    writeAt(fd, 'mid', 'from lower 0');
    t.equal(sys.symlinkat('mid', fd, 'ln'), 0);
    t.equal(sys.setxattr(fd, 'mid', 'user.deep', Buffer.from('yes'), 0), 0);
  });
  deepChain(s.lowers[1], comp, depth, (fd) => {
    writeAt(fd, 'low', 'from lower 1');
    writeAt(fd, 'gone', 'hidden');
    writeAt(fd, 'mid', 'shadowed');
  });
  deepChain(s.upper as string, comp, depth, (fd) => {
    writeAt(fd, 'up', 'from upper');
    t.equal(sys.mknodat(fd, 'gone', S_IFCHR | 0o644, 0, 0), 0);
  });
  const dir = '/' + Array(depth).fill(comp).join('/');
  t.ok(dir.length + s.base.length > 4096);
  t.same(names(s.ov, dir), ['ln', 'low', 'mid', 'up']);
  t.equal(s.ov.getattr(dir).nlink, 1, 'merged');
  t.equal(await readAll(s.ov, dir + '/mid'), 'from lower 0');
  t.equal(await readAll(s.ov, dir + '/low'), 'from lower 1');
  t.equal(await readAll(s.ov, dir + '/up'), 'from upper');
  t.equal(s.ov.readlink(dir + '/ln'), 'mid');
  t.equal(s.ov.getxattr(dir + '/mid', 'user.deep').toString(), 'yes');
  t.same(s.ov.listxattr(dir + '/mid'), ['user.deep']);
  t.throws(() => s.ov.getattr(dir + '/gone'), { code: 'ENOENT' });
  s.ov.resolver.cache.clear();
  t.equal(s.ov.getattr(dir + '/up').size, 10, 'again with a cold directory cache');
});

t.test('symlinks inside layers are never followed while resolving a path', async (t) => {
  await t.test('lower1 dir a/, lower2 symlink a -> /etc', async (t) => {
    const { ov } = coreStack([{ a: { dir: {} } }, { a: { symlink: '/etc' } }], {}, t);
    t.throws(() => ov.getattr('/a/passwd'), { code: 'ENOENT' });
    t.same(names(ov, '/a'), []);
  });
  await t.test('relative symlink climbing out of the layer, deeper down', async (t) => {
    const { ov } = coreStack([
      { x: { dir: { y: { dir: {} } } } },
      { x: { dir: { y: { symlink: '../../../../../../../../etc' } } } },
    ], {}, t);
    t.throws(() => ov.getattr('/x/y/passwd'), { code: 'ENOENT' });
    t.same(names(ov, '/x/y'), []);
  });
  await t.test('a symlink in place of a directory higher up the path', async (t) => {
    const { ov } = coreStack([{ x: { dir: { y: { dir: {} } } } }, { x: { symlink: '/' } }], {}, t);
    t.throws(() => ov.getattr('/x/etc'), { code: 'ENOENT' });
    t.same(names(ov, '/x'), ['y']);
  });
  await t.test('a symlink planted in upper over a lower directory', async (t) => {
    const { ov } = coreStack([{ a: { dir: { passwd: 'lower passwd' } }, d: { dir: { e: { dir: { passwd: 'x' } } } } }], {
      upper: { a: { symlink: '/etc' }, d: { dir: { e: { symlink: '/etc' } } } },
    }, t);
    t.equal(ov.readlink('/a'), '/etc', 'the merged object is the symlink itself');
    for (const p of ['/a/passwd', '/d/e/passwd']) {
      t.throws(() => ov.getattr(p), { code: 'ENOTDIR' }, p);
      t.throws(() => ov.open(p, C.O_RDONLY), { code: 'ENOTDIR' }, p);
      t.throws(() => ov.listxattr(p), { code: 'ENOTDIR' }, p);
    }
    t.throws(() => ov.readdir('/a'), { code: 'ENOTDIR' });
    t.throws(() => ov.open('/a', C.O_RDONLY), { code: 'ELOOP' }, 'open does not follow it either');
  });
  await t.test('a symlink in upper below a merged directory', async (t) => {
    const { ov } = coreStack([{ m: { dir: { s: { dir: { passwd: 'mine' } } } } }], { upper: { m: { dir: { s: { symlink: '/etc' } } } } }, t);
    t.throws(() => ov.getattr('/m/s/passwd'), { code: 'ENOTDIR' });
    t.same(names(ov, '/m'), ['s']);
    t.equal(type(ov.getattr('/m/s').mode), 0o120000);
  });
});

t.test('a directory cache smaller than the tree resolves the same, without leaking fds', async (t) => {
  const tree = (tag: string): Tree => {
    const out: Tree = {};
    for (let i = 0; i < 12; i++) out[`d${i}`] = { dir: { [`s${i % 3}`]: { dir: { [tag]: tag, both: tag } }, [tag]: tag } };
    return out;
  };
  const s = coreStack([tree('l0'), tree('l1')], { upper: tree('up') }, t);
  const small = new Resolver(s.ov.stack, 9);
  const fds = (): number => fs.readdirSync('/proc/self/fd').length;
  const walk = (r: Resolver, dir: string): string[] => {
    const out: string[] = [];
    for (const e of listMerged(r.dir(dir))) {
      const p = dir === '/' ? '/' + e.name : dir + '/' + e.name;
      const got = r.get(p).entries.map((x) => `${x.layer.index}:${x.stat.ino}`).join(',');
      out.push(`${p} ${e.type} ${got}`);
      if (e.type === 4) out.push(...walk(r, p));
    }
    return out;
  };
  const before = fds();
  const expected = walk(s.ov.resolver, '/');
  t.equal(expected.length, 12 + 12 * 4 + 12 * 4, 'every merged path');
  const got = walk(small, '/');
  t.same(got, expected, 'the same entries from every layer');
  await new Promise((r) => setImmediate(r));
  t.ok(small.cache.fdCount <= 9, `the cache holds at most 9 fds (${small.cache.fdCount})`);
  t.ok(small.cache.size >= 3, 'three directories of three layers fit');
  small.cache.clear();
  s.ov.resolver.cache.clear();
  await new Promise((r) => setImmediate(r));
  t.ok(fds() <= before, `fds of evicted directories are closed (${fds()} <= ${before})`);
});

t.test('many layers: the directory cache holds at most its fd budget, and lookups stay right', async (t) => {
  // 30 layers x 20 directories: unbounded, walking it would hold 600 fds.
  const layers: Tree[] = Array.from({ length: 30 }, (_, i) => {
    const out: Tree = {};
    for (let d = 0; d < 20; d++) out[`d${d}`] = { dir: { [`f${i}`]: `${i}/${d}` } };
    return out;
  });
  const s = coreStack(layers, { upper: false }, t);
  const budget = 100;
  const r = new Resolver(s.ov.stack, budget);
  const fds = (): number => fs.readdirSync('/proc/self/fd').length;
  const before = fds();
  let most = 0;
  for (let pass = 0; pass < 2; pass++) {
    for (let d = 0; d < 20; d++) {
      const node = r.dir(`/d${d}`);
      t.equal(node.dirs.length, 30, `/d${d}: every layer`);
      most = Math.max(most, r.cache.fdCount, fds() - before);
      t.equal(r.get(`/d${d}/f7`).entries[0].layer.root, s.lowers[7], `/d${d}/f7 found in its layer`);
      // Between two operations, as in the daemon: evicted fds are closed by then.
      await new Promise((res) => setImmediate(res));
    }
  }
  t.ok(most <= budget + 30, `never more than the budget and one directory's layers open (${most})`);
  t.ok(r.cache.fdCount <= budget, `cached: ${r.cache.fdCount} fds for ${r.cache.size} directories`);
  r.cache.clear();
  await new Promise((res) => setImmediate(res));
  t.ok(fds() <= before, 'all closed after clear');
});

t.test('the default fd budget is a quarter of RLIMIT_NOFILE', async (t) => {
  t.equal(dirCacheFdBudget(20000), 5000);
  t.equal(dirCacheFdBudget(100), 64, 'never below 64');
  t.equal(dirCacheFdBudget(1048576), 16384, 'nor above 16384, where engines raise the limit to 1048576');
  t.equal(new Resolver(coreStack([{}, {}], { upper: false }, t).ov.stack).cache.maxFds, dirCacheFdBudget(), 'from the live limit by default');
});
