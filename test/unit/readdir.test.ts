// Listing merged directories: every visible name once, with its type, never a whiteout or an
// OCI marker, in a stable order, for small and 10k-entry directories spread over the layers.
import t from 'tap';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { coreStack } from '../lib/stack';
import type { Tree } from '../lib/tree';

const DT = { fifo: 1, chr: 2, dir: 4, blk: 6, reg: 8, lnk: 10, sock: 12 };

t.test('each visible name once, with the d_type of its winner', async (t) => {
  const s = coreStack([
    { d: { dir: { file: 'f', sub: { dir: {} }, gone: { whiteout: true }, '.wh.oci': '' } } },
    { d: { dir: { file: { dir: {} }, sub: 'file below dir', lnk: { symlink: 'x' }, fifo: { fifo: true }, chr: { chr: [1, 3] }, gone: 'g', oci: 'o' } } },
  ], { upper: { d: { dir: { lnk: 'upper file over symlink' } } } }, t);
  const d = path.join(s.lowers[1], 'd');
  execFileSync('mknod', [path.join(d, 'blk'), 'b', '7', '0']);
  execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path.join(d, 'sock')]);
  const list = s.ov.readdir('/d');
  const byName = Object.fromEntries(list.map((e) => [e.name, e.type]));
  t.same(byName, { lnk: DT.reg, file: DT.reg, sub: DT.dir, fifo: DT.fifo, chr: DT.chr, blk: DT.blk, sock: DT.sock });
  t.equal(list.length, 7, 'no duplicates');
  for (const e of list) t.equal(e.type, (s.ov.getattr('/d/' + e.name).mode & 0o170000) >> 12, `d_type of ${e.name} agrees with stat`);
});

t.test('a directory holding only whiteouts and markers lists empty', async (t) => {
  const s = coreStack([
    { d: { dir: { a: { whiteout: true }, '.wh.b': '', '.wh..wh..opq': '' } } },
    { d: { dir: { a: 'a', b: 'b', c: 'c' } } },
  ], { upper: { w: { dir: { x: { whiteout: true } } } } }, t);
  t.same(s.ov.readdir('/d'), []);
  t.same(s.ov.readdir('/w'), []);
  t.throws(() => s.ov.readdir('/d/a'), { code: 'ENOENT' });
  t.throws(() => s.ov.readdir('/nope'), { code: 'ENOENT' });
});

t.test('a 10k-entry directory spread over three layers: complete, no duplicates, stable', async (t) => {
  const N = 10000;
  const layer = (): Tree => ({});
  const [l0, l1, l2, up] = [layer(), layer(), layer(), layer()];
  const kind = (i: number, tag: string): Tree[string] => (i % 10 === 3 ? { dir: {} } : i % 10 === 7 ? { symlink: `t${i}` } : tag);
  for (let i = 0; i < 4000; i++) l0[`n${i}`] = kind(i, 'l0');
  for (let i = 3000; i < 7000; i++) l1[`n${i}`] = kind(i + 1, 'l1');
  for (let i = 6000; i < N; i++) l2[`n${i}`] = kind(i + 2, 'l2');
  for (let i = 0; i < 500; i++) l2[`n${i}`] = 'l2 under l0';
  // Hidden: whiteouts in upper over lower names, OCI markers in l0 over l1 names.
  const hidden = new Set<string>();
  for (let i = 9000; i < 9300; i++) { up[`n${i}`] = { whiteout: true }; hidden.add(`n${i}`); }
  for (let i = 5000; i < 5200; i++) { l0[`.wh.n${i}`] = ''; hidden.add(`n${i}`); }
  for (let i = 0; i < 100; i++) up[`u${i}`] = 'upper';
  const s = coreStack([{ big: { dir: l0 } }, { big: { dir: l1 } }, { big: { dir: l2 } }], { upper: { big: { dir: up } }, memory: true }, t);
  const expected = new Set<string>();
  for (let i = 0; i < N; i++) if (!hidden.has(`n${i}`)) expected.add(`n${i}`);
  for (let i = 0; i < 100; i++) expected.add(`u${i}`);

  const first = s.ov.readdir('/big');
  const names = first.map((e) => e.name);
  t.equal(names.length, expected.size, `${expected.size} entries`);
  t.equal(new Set(names).size, names.length, 'no duplicates');
  t.same([...names].sort(), [...expected].sort(), 'exactly the visible names');
  t.same(s.ov.readdir('/big').map((e) => e.name), names, 'the same order on the next call');
  s.ov.resolver.cache.clear();
  const again = s.ov.readdir('/big');
  t.same(again.map((e) => [e.name, e.type, e.ino]), first.map((e) => [e.name, e.type, e.ino]), 'and with a cold cache');
  // The winner's type: n3002 is a file in l0 over a directory in l1; n6002 a dir in l1 over a file in l2.
  const type = Object.fromEntries(first.map((e) => [e.name, e.type]));
  t.same([type.n3003, type.n3002, type.n3007, type.n6002, type.n8001, type.n8005], [DT.dir, DT.reg, DT.lnk, DT.dir, DT.dir, DT.lnk]);
  t.equal(s.ov.getattr('/big/n8001').nlink, 2, 'a single-layer subdir');
  t.equal(s.ov.readlink('/big/n8005'), 't8007');
});

t.test('attributes of listed entries, looked up from their own layer, agree with getattr', async (t) => {
  const s = coreStack([
    { d: { dir: { a: 'l0 a', sub: { dir: { x: 'x' } }, gone: { whiteout: true }, '.wh.oci': '' } } },
    { d: { dir: { a: 'l1 a under l0', b: 'l1 b', sub: { dir: { y: 'y' } }, gone: 'g', oci: 'o', low: { dir: {} } } } },
  ], { upper: { d: { dir: { u: 'upper', b: 'upper b over l1' } } } }, t);
  const compare = (what: string): void => {
    const at = s.ov.generation;
    const list = s.ov.readdirNames('/d');
    for (const e of list) {
      const got = s.ov.getattrListed('/d', e, at);
      const want = s.ov.getattr('/d/' + e.name);
      t.same({ ino: got.ino, mode: got.mode, size: got.size, nlink: got.nlink }, { ino: want.ino, mode: want.mode, size: want.size, nlink: want.nlink }, `${what}: ${e.name}`);
      t.equal(s.ov.listedIno('/d', e, at), want.ino, `${what}: d_ino of ${e.name}`);
    }
    for (const e of s.ov.readdir('/d')) t.equal(e.ino, s.ov.getattr('/d/' + e.name).ino, `${what}: readdir's d_ino of ${e.name}`);
  };
  compare('as built');
  t.same(s.ov.readdirNames('/d').map((e) => e.name).sort(), ['a', 'b', 'low', 'sub', 'u']);
  // A listing taken before a change must not skip the layer the change wrote to.
  const before = s.ov.generation;
  const stale = s.ov.readdirNames('/d').find((e) => e.name === 'a');
  t.ok(stale && stale.layer > 0, 'a comes from a lower layer');
  s.ov.truncate('/d/a', 0);
  t.not(s.ov.generation, before, 'a copy-up counts as a change');
  t.equal(s.ov.getattrListed('/d', stale!, before).size, 0, 'an old listing falls back to a full lookup');
  compare('after copy-up');
});
