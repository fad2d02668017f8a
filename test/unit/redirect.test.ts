// redirect_dir: moving directories with lower content (redirect_dir=on) and following the
// redirects a layer holds (the default, follow), in the kernel's format. Each layout and
// expectation was checked against kernel overlayfs (6.18) mounted with the same options.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { C } from '../../src/host/native';
import { DAEMON_CALLER } from '../../src/core/config';
import { coreStack } from '../lib/stack';
import { isWhiteout, setXattr, workLeft, xattrOf } from '../lib/write-helpers';

const RD = 'trusted.overlay.redirect';
const names = (ov: { readdir(p: string): { name: string }[] }, p: string): string[] => ov.readdir(p).map((e) => e.name).sort();
const read = (ov: { open(p: string, f: number): number; readSync(h: number, b: Buffer, l: number, p: number): number; release(h: number): void }, p: string): string => {
  const h = ov.open(p, 0);
  const b = Buffer.alloc(64);
  const n = ov.readSync(h, b, 64, 0);
  ov.release(h);
  return b.subarray(0, n).toString();
};

const LOWER = { a: { dir: { f: 'f', sub: { dir: { g: 'g' } } } }, p: { dir: { q: 'q' } }, gone: { dir: { z: 'z' } } };

t.test('redirect_dir=on: a directory with lower content moves; its redirect says where that content lies', async (t) => {
  const s = coreStack([LOWER], { redirectDir: 'on' }, t);
  const { ov } = s;
  const u = s.upper as string;
  ov.rename('/a', '/b');
  t.equal(xattrOf(path.join(u, 'b'), RD), 'a', 'within its parent: the old name');
  t.ok(isWhiteout(path.join(u, 'a')), 'a whiteout hides the old name');
  t.same(names(ov, '/'), ['b', 'gone', 'p']);
  t.same(names(ov, '/b'), ['f', 'sub']);
  t.equal(read(ov, '/b/sub/g'), 'g', 'the lower content reads at the new place');
  ov.rename('/b/sub', '/p/sub2');
  t.equal(xattrOf(path.join(u, 'p/sub2'), RD), '/a/sub', 'to another parent: the old path, through the parent\'s own redirect');
  t.same(names(ov, '/b'), ['f']);
  t.same(names(ov, '/p'), ['q', 'sub2']);
  ov.rename('/b', '/b2');
  t.equal(xattrOf(path.join(u, 'b2'), RD), 'a', 'renamed again within its parent: the redirect stays');
  t.notOk(fs.existsSync(path.join(u, 'b')), 'b was never below: no whiteout for it');
  ov.mkdir('/p/x', 0o755, DAEMON_CALLER);
  t.equal(xattrOf(path.join(u, 'p/x'), 'trusted.overlay.opaque'), 'y', 'a new dir in a merged one is opaque (the kernel with redirect_dir=on)');
  ov.rename('/b2', '/p/x/c');
  t.equal(xattrOf(path.join(u, 'p/x/c'), RD), '/a', 'a relative redirect becomes absolute when it leaves its parent');
  t.same(names(ov, '/p/x/c'), ['f'], 'an absolute redirect is followed below an opaque parent');
  ov.rename('/p/sub2', '/p/x/c/sub3');
  t.equal(xattrOf(path.join(u, 'p/x/c/sub3'), RD), '/a/sub', 'an absolute redirect stays absolute');
  t.same(names(ov, '/p/x/c'), ['f', 'sub3']);
  t.equal(read(ov, '/p/x/c/sub3/g'), 'g');
  t.same(workLeft(s.work as string), []);
});

t.test('redirect_dir=on: rmdir, a move over a whiteout, back to the old name, exchange', async (t) => {
  const s = coreStack([LOWER], { redirectDir: 'on' }, t);
  const { ov } = s;
  const u = s.upper as string;
  ov.unlink('/gone/z');
  ov.rmdir('/gone');
  t.ok(isWhiteout(path.join(u, 'gone')));
  ov.rename('/a', '/gone');
  t.equal(xattrOf(path.join(u, 'gone'), RD), 'a', 'over a whiteout: the dir takes its place with a redirect');
  t.ok(isWhiteout(path.join(u, 'a')), 'and the old name is whited out');
  t.same(names(ov, '/gone'), ['f', 'sub'], 'the removed lower dir stays hidden: only the redirect target merges');
  ov.rename('/gone', '/a');
  t.same(names(ov, '/a'), ['f', 'sub'], 'moved back over its own whiteout');
  t.ok(isWhiteout(path.join(u, 'gone')), 'the old place keeps hiding the removed lower dir');
  ov.rename('/a', '/m');
  ov.unlink('/m/f');
  ov.unlink('/m/sub/g');
  ov.rmdir('/m/sub');
  t.throws(() => ov.rmdir('/p'), { code: 'ENOTEMPTY' });
  ov.rmdir('/m');
  t.notOk(fs.existsSync(path.join(u, 'm')), 'rmdir of a redirected dir: nothing below its name, no whiteout');
  t.ok(isWhiteout(path.join(u, 'a')), 'the whiteout at its old place stays');
  t.same(names(ov, '/'), ['p']);
  const e = coreStack([{ x: { dir: { xf: '1' } }, y: { dir: { yf: '2' } }, d: { dir: {} } }], { redirectDir: 'on' }, t);
  e.ov.rename('/x', '/d/y', C.RENAME_NOREPLACE);
  e.ov.rename('/d/y', '/y', C.RENAME_EXCHANGE);
  t.equal(xattrOf(path.join(e.upper as string, 'y'), RD), '/x', 'exchange: each side records its old path');
  t.equal(xattrOf(path.join(e.upper as string, 'd/y'), RD), '/y');
  t.same(names(e.ov, '/y'), ['xf']);
  t.same(names(e.ov, '/d/y'), ['yf']);
  t.same(workLeft(s.work as string), []);
});

t.test('without redirect_dir=on a directory with lower content still gives EXDEV', async (t) => {
  for (const mode of [undefined, 'follow', 'nofollow'] as const) {
    const s = coreStack([LOWER], { redirectDir: mode }, t);
    t.throws(() => s.ov.rename('/a', '/b'), { code: 'EXDEV' }, String(mode));
    t.same(fs.readdirSync(s.upper as string), [], 'nothing copied up');
  }
});

t.test('an absolute redirect past redirect_max (256) gives EXDEV, so mv copies', async (t) => {
  const long = 'n'.repeat(200);
  const s = coreStack([{ [long]: { dir: { [long.slice(0, 60)]: { dir: { f: 'f' } } } }, to: { dir: {} } }], { redirectDir: 'on' }, t);
  t.throws(() => s.ov.rename(`/${long}/${long.slice(0, 60)}`, '/to/x'), { code: 'EXDEV' });
  s.ov.rename(`/${long}/${long.slice(0, 60)}`, `/${long}/short`);
  t.same(names(s.ov, `/${long}/short`), ['f'], 'a relative one has no such limit');
});

t.test('follow (the default): redirects the kernel wrote are followed; nofollow refuses them', async (t) => {
  // What the kernel leaves after `mv a b; mv b/sub p/sub2` with redirect_dir=on.
  const upper = {
    a: { whiteout: true as const },
    b: { dir: { sub: { whiteout: true as const } }, xattrs: { [RD]: 'a' } },
    p: { dir: { sub2: { dir: {}, xattrs: { [RD]: '/a/sub' } } } },
  };
  const s = coreStack([LOWER], { upper }, t);
  t.same(names(s.ov, '/'), ['b', 'gone', 'p']);
  t.same(names(s.ov, '/b'), ['f']);
  t.same(names(s.ov, '/p/sub2'), ['g']);
  t.equal(read(s.ov, '/p/sub2/g'), 'g');
  t.equal(s.ov.getattr('/p/sub2').nlink, 1, 'a merged dir, as any');
  const n = coreStack([LOWER], { upper, redirectDir: 'nofollow' }, t);
  t.throws(() => n.ov.getattr('/b'), { code: 'EPERM' }, 'nofollow: lower content behind a redirect is refused');
  t.throws(() => n.ov.getattr('/p/sub2'), { code: 'EPERM' });
  const x = coreStack([LOWER], { upper, userxattr: true }, t);
  t.same(names(x.ov, '/b'), [], 'userxattr reads no trusted.* redirect: b merges only what lies below its own name');
});

t.test('a redirect a lower layer holds, also on the way of an absolute one', async (t) => {
  // l0 was once an upper layer: its /b came from /a of l1, and /b/c is new there.
  const l0 = { b: { dir: { c: { dir: { own: '0' } } }, xattrs: { [RD]: '/a' } } };
  const l1 = { a: { dir: { f: 'f', c: { dir: { deep: 'd' } } } }, b: { dir: { hidden: 'h' } } };
  const ro = coreStack([l0, l1], { upper: false }, t);
  t.same(names(ro.ov, '/b'), ['c', 'f'], 'l1\'s own /b is not merged: /b came from /a');
  t.same(names(ro.ov, '/b/c'), ['deep', 'own']);
  // Then `mv /b/c /m` on a mount with an upper layer.
  const s = coreStack([l0, l1], { upper: { b: { dir: { c: { whiteout: true } } }, m: { dir: {}, xattrs: { [RD]: '/b/c' } } } }, t);
  t.same(names(s.ov, '/b'), ['f']);
  t.same(names(s.ov, '/m'), ['deep', 'own'], '/b/c in l0, then /a/c in l1 through l0\'s redirect of /b');
});

t.test('an invalid redirect fails the lookup with EINVAL', async (t) => {
  for (const bad of ['a/b', '//a', '/a/', '/']) {
    const s = coreStack([LOWER], { upper: { d: { dir: {} } } }, t);
    setXattr(path.join(s.upper as string, 'd'), RD, bad);
    t.throws(() => s.ov.getattr('/d'), { code: 'EINVAL' }, JSON.stringify(bad));
  }
});

t.test('userxattr with redirect_dir=on: user.overlay.redirect', async (t) => {
  const s = coreStack([LOWER], { userxattr: true, redirectDir: 'on' }, t);
  s.ov.rename('/a', '/p/a');
  t.equal(xattrOf(path.join(s.upper as string, 'p/a'), 'user.overlay.redirect'), '/a');
  t.equal(xattrOf(path.join(s.upper as string, 'p/a'), RD), undefined);
  t.same(names(s.ov, '/p/a'), ['f', 'sub']);
});

t.test('a move refused for a non-empty target leaves in upper what the kernel\'s leaves', async (t) => {
  const s = coreStack([{ c: { dir: { f: 'f' } }, d: { dir: { g: 'g' } }, m: { dir: { below: 'b' } } }], { redirectDir: 'on', upper: { a: { dir: { b: { dir: { full: 'x' } } } } } }, t);
  t.throws(() => s.ov.rename('/c', '/a/b'), { code: 'ENOTEMPTY' });
  const u = s.upper as string;
  t.ok(fs.statSync(path.join(u, 'c')).isDirectory(), 'the source was copied up first');
  t.equal(xattrOf(path.join(u, 'c'), RD), '/c', 'and its redirect set before the rename found the upper target full (ovl_rename)');
  t.throws(() => s.ov.rename('/a', '/m'), { code: 'ENOTEMPTY' });
  t.equal(xattrOf(path.join(u, 'a'), 'trusted.overlay.opaque'), undefined, 'a merged target is found full before any mark is set');
  t.throws(() => s.ov.rename('/d', '/m'), { code: 'ENOTEMPTY' });
  t.notOk(fs.existsSync(path.join(u, 'd')), 'and before anything is copied up');
  t.same(names(s.ov, '/c'), ['f']);
});

t.test('a redirect holds the bytes of the names, UTF-8 or not', async (t) => {
  const s = coreStack([{ p: { dir: {} } }], { redirectDir: 'on' }, t);
  const raw = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "caf\xe9": latin1, no UTF-8
  const dir = Buffer.concat([Buffer.from(s.lowers[0] + '/'), raw]);
  fs.mkdirSync(dir);
  fs.writeFileSync(Buffer.concat([dir, Buffer.from('/f')]), 'f');
  const name = raw.toString('latin1'); // the core's binary string for it (host/bytes.ts)
  s.ov.rename('/' + name, '/p/x');
  const stored = spawnSync('getfattr', ['-h', '--absolute-names', '--only-values', '-n', RD, path.join(s.upper as string, 'p/x')]).stdout;
  t.same(stored, Buffer.concat([Buffer.from('/'), raw]), 'byte for byte');
  t.same(names(s.ov, '/p/x'), ['f'], 'and followed');
});
