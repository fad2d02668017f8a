// st_ino and st_nlink across copy-up, held to kernel overlayfs (index=off) on the same layers:
// a copied-up file keeps its origin's number, also when the lower layer is another filesystem
// (tmpfs, whose file handles do not start with the inode number), but the copy of one link of
// a lower hard link is another file from then on and shows a number of its own, so that tar
// does not store the two as one.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TRANSPORT, layout, layoutIn, mountKernel, mountOverlayd, type Layout, type Mounted } from '../lib/mounts';
import { tmpfsDir } from '../lib/scratch';
import { tmpdir } from '../lib/tree';

type Engine = 'overlayd' | 'kernel';
interface Seen { ino: bigint; nlink: number }

function look(merged: string, name: string): Seen {
  const st = fs.lstatSync(path.join(merged, name), { bigint: true });
  return { ino: st.ino, nlink: Number(st.nlink) };
}

async function mount(engine: Engine, l: Layout): Promise<Mounted> {
  return engine === 'kernel' ? mountKernel(l, ['index=off']) : mountOverlayd(l);
}

function sh(cmd: string): void {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
}

for (const lowerFs of ['ext4', 'tmpfs'] as const) {
  for (const engine of ['overlayd', 'kernel'] as const) {
    // fuse-native passes inode numbers only where every layer is one ext4 (adapter.ts' useIno).
    const skip = engine === 'overlayd' && lowerFs !== 'ext4' && TRANSPORT === 'fuse-native' ? 'fuse-native reports no inode numbers across filesystems' : false;
    t.test(`${engine}, lower on ${lowerFs}: st_ino and st_nlink across copy-up`, { skip }, async (t) => {
      const base = tmpdir();
      t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
      const l = layoutIn(base, 1);
      if (lowerFs === 'tmpfs') l.lowers[0] = tmpfsDir(t, '16m');
      const lower = l.lowers[0];
      fs.writeFileSync(path.join(lower, 'a'), 'hello\n');
      fs.linkSync(path.join(lower, 'a'), path.join(lower, 'b'));
      fs.writeFileSync(path.join(lower, 's'), 'solo\n');
      fs.mkdirSync(path.join(lower, 'd'));
      const m = await mount(engine, l);
      t.teardown(() => m.unmount());
      const before = { a: look(m.merged, 'a'), b: look(m.merged, 'b'), s: look(m.merged, 's'), d: look(m.merged, 'd') };
      t.equal(before.a.ino, before.b.ino, 'the two links of a lower file: one st_ino');
      t.same([before.a.nlink, before.b.nlink], [2, 2]);
      sh(`echo more >> ${m.merged}/a; echo more >> ${m.merged}/s; touch ${m.merged}/d/new`);
      const after = { a: look(m.merged, 'a'), b: look(m.merged, 'b'), s: look(m.merged, 's'), d: look(m.merged, 'd') };
      t.not(after.a.ino, after.b.ino, 'the copy of one link is another file: another st_ino');
      t.equal(after.b.ino, before.b.ino, 'the link left below keeps its number');
      t.same([after.a.nlink, after.b.nlink], [1, 2], 'nlink: the copy 1, the lower link still 2');
      t.equal(after.s.ino, before.s.ino, 'a single-link file keeps its number across copy-up');
      t.equal(after.d.ino, before.d.ino, 'a directory keeps its number across copy-up');
      const listed = spawnSync('ls', ['-i', m.merged], { encoding: 'utf8' }).stdout;
      const dino = new Map(listed.trim().split('\n').map((line) => { const [i, n] = line.trim().split(/\s+/); return [n, BigInt(i)]; }));
      t.same([dino.get('a'), dino.get('b'), dino.get('s')], [after.a.ino, after.b.ino, after.s.ino], 'd_ino agrees with st_ino');
      // Renamed, the copy is found by its origin's file handle alone (open_by_handle_at).
      sh(`mv ${m.merged}/s ${m.merged}/s2 && mv ${m.merged}/a ${m.merged}/a2`);
      t.equal(look(m.merged, 's2').ino, before.s.ino, 'renamed after copy-up, it keeps its number');
      t.equal(look(m.merged, 'a2').ino, after.a.ino, 'so does the copy of a hard link (its own)');
      sh(`mv ${m.merged}/a2 ${m.merged}/a`);
      const out = fs.mkdtempSync(path.join(base, 'tar-'));
      sh(`tar c -C ${m.merged} a b | tar x -C ${out}`);
      t.equal(fs.readFileSync(path.join(out, 'a'), 'utf8'), 'hello\nmore\n', 'tar keeps a as written');
      t.equal(fs.readFileSync(path.join(out, 'b'), 'utf8'), 'hello\n', 'tar keeps b as it lies below');
    });
  }
}

t.test('overlayd: numbers survive a remount (the origin is read back from disk)', async (t) => {
  const l = layout(1);
  t.teardown(() => fs.rmSync(path.dirname(l.merged), { recursive: true, force: true }));
  fs.writeFileSync(path.join(l.lowers[0], 'a'), 'hello\n');
  fs.linkSync(path.join(l.lowers[0], 'a'), path.join(l.lowers[0], 'b'));
  fs.writeFileSync(path.join(l.lowers[0], 's'), 'solo\n');
  const lowerS = fs.lstatSync(path.join(l.lowers[0], 's'), { bigint: true }).ino;
  let m = await mountOverlayd(l);
  sh(`echo more >> ${m.merged}/a; echo more >> ${m.merged}/s`);
  await m.unmount();
  m = await mountOverlayd(l);
  t.teardown(() => m.unmount());
  t.equal(look(m.merged, 's').ino, lowerS);
  t.not(look(m.merged, 'a').ino, look(m.merged, 'b').ino);
});
