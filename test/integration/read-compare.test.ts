// The merged view through overlayd equals kernel overlayfs' view of the same layers, seen by
// ordinary programs in another process: python's scandir/lstat/readlink/read/xattrs, ls -laR,
// find, stat, getfattr and cat. Layers are generated at random from a fixed seed.
//
// Known, deliberate divergences, kept out of the kernel comparison and tested on their own:
// - OCI markers: the kernel shows `.wh.NAME` and `.wh..wh..opq` as ordinary files; overlayd
//   honours and hides them. Here an OCI rewrite of the layers must read as the kernel reads
//   the kernel-format original.
// - A whiteout inside a directory that is not merged: the kernel lists it (readdir of a
//   single-layer directory goes straight to the real one) though lookup says ENOENT;
//   overlayd never lists a whiteout.
// - fuse-native carries times in milliseconds: mtimes compare to the millisecond (to the
//   nanosecond with OVERLAYD_TRANSPORT=kernel).
// - The kernel writes trusted.overlay.origin/impure into upper directories when it looks them
//   up (ovl_fix_origin); on ext4 that can add an xattr block, so directories' st_blocks are not
//   compared (files' are).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { TRANSPORT, cloneLayout, layout, mountKernel, mountOverlayd, type Layout, type Mounted } from '../lib/mounts';
import { build, snapshot } from '../lib/tree';
import { generateLayers, removeWhiteout, toOci } from '../lib/gen';
import { run, walkTree, type Walked } from '../lib/proc';
import { removeTree } from '../lib/stack';

const SEED = Number(process.env.OVERLAYD_TEST_SEED ?? 20240611);

t.test('three layers with whiteouts and opaque dirs read as the kernel reads them', async (t) => {
  const l = layout(3);
  build(l.lowers[0], { d: { dir: { a: 'top a', gone: { whiteout: true } } }, o: { dir: { y: 'y' }, opaque: true }, link: { symlink: 'd/a' } });
  build(l.lowers[1], { d: { dir: { b: 'mid b', gone: 'hidden' } }, o: { dir: { x: 'x' } }, f: { file: 'f', mode: 0o4755 } });
  build(l.lowers[2], { d: { dir: { c: 'low c', a: 'hidden a' } }, o: 'not a dir', fifo: { fifo: true }, dev: { chr: [1, 3] } });
  const k = cloneLayout(l);
  t.teardown(() => { removeTree(path.dirname(l.merged)); removeTree(path.dirname(k.merged)); });
  const ours = await mountOverlayd(l);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  t.same(snapshot(ours.merged, { xattrs: true }), snapshot(kern.merged, { xattrs: true }));
});

const layersOf = (l: Layout): string[] => (l.upper ? [l.upper, ...l.lowers] : [...l.lowers]);

/** The same layers without the upper: a read-only mount at a fresh mountpoint. */
function readOnly(l: Layout): Layout {
  const merged = l.merged + '-ro';
  fs.mkdirSync(merged, { recursive: true });
  return { lowers: l.lowers, merged };
}

/** What the ordinary tools print for the tree at `root`, made independent of listing order. */
async function toolViews(root: string): Promise<Record<string, string[]>> {
  const lines = (s: string): string[] => s.split('\n').filter((x) => x !== '');
  const [ls, find, st, attrs, cat] = await Promise.all([
    run('ls', ['-laRn', '--time-style=+%Y-%m-%d.%H:%M:%S', '.'], { cwd: root }),
    run('find', ['.', '-printf', '%p %y %m %U %G %s %n %l %TY%Tm%Td%TH%TM\n'], { cwd: root }),
    run('sh', ['-c', "find . ! -type d -exec stat -c '%n|%F|%a|%u|%g|%s|%h|%t:%T|%Y|%b' {} + && find . -type d -exec stat -c '%n|%F|%a|%u|%g|%s|%h|%Y' {} +"], { cwd: root }),
    run('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root }),
    run('sh', ['-c', 'find . -type f -print0 | sort -z | xargs -0 cat | sha256sum'], { cwd: root }),
  ]);
  // The root's `..` is the mountpoint's parent: a different directory for each mount. And
  // `total` sums blocks, including directories' xattr blocks, which grow on the kernel side as
  // it writes its origin/impure bookkeeping into upper directories on lookup.
  const lsLines = lines(ls.stdout).filter((x) => !x.startsWith('total '));
  const dotdot = lsLines.findIndex((x) => / \.\.$/.test(x));
  if (dotdot >= 0) lsLines.splice(dotdot, 1);
  return {
    status: [`ls ${ls.code}`, `find ${find.code}`, `stat ${st.code}`, `getfattr ${attrs.code}`, `cat ${cat.code}`],
    stderr: lines(ls.stderr + find.stderr + st.stderr + attrs.stderr + cat.stderr),
    ls: lsLines,
    find: lines(find.stdout).sort(),
    stat: lines(st.stdout).sort(),
    getfattr: attrs.stdout.split('\n\n').map((b) => b.trim()).filter((b) => b !== '').sort(),
    cat: lines(cat.stdout),
  };
}

/** Names of kernel "phantoms": listed whiteouts in single-layer dirs. */
async function kernelPhantoms(l: Layout): Promise<string[]> {
  const k = mountKernel(l);
  try { return (await walkTree(l.merged)).phantoms; } finally { await k.unmount(); }
}

/** fuse-native carries milliseconds; the kernel transport nanoseconds. */
const NS_TIMES = TRANSPORT === 'kernel';

function compareWalks(t: Test, ours: Walked, kern: Walked, label: string): void {
  if (!NS_TIMES) for (const w of [ours, kern]) for (const e of Object.values(w.entries)) delete e.mtime_ns;
  t.same(ours.phantoms, [], `${label}: overlayd lists no name that does not exist`);
  t.same(kern.phantoms, [], `${label}: (the layers hold no kernel phantoms)`);
  t.same(ours.dino, [], `${label}: d_ino = st_ino for every entry`);
  t.same(Object.keys(ours.entries).sort(), Object.keys(kern.entries).sort(), `${label}: the same paths`);
  for (const [p, k] of Object.entries(kern.entries)) {
    if (ours.entries[p]) t.same(ours.entries[p], k, `${label}: ${p}`);
  }
  t.same(ours.links, kern.links, `${label}: the same hard-link groups`);
}

t.test('a generated tree (upper + three lowers) reads as the kernel reads it, entry by entry', async (t) => {
  const a = layout(3);
  const report = generateLayers(layersOf(a), { seed: SEED });
  t.comment(`seed ${SEED}: ${JSON.stringify(report.counts)}`);
  for (const kind of ['dir', 'file', 'symlink', 'whiteout', 'opaque', 'fifo', 'chr', 'blk', 'sock', 'hardlink', 'xattr.user', 'xattr.trusted']) {
    t.ok((report.counts[kind] ?? 0) > 0, `the generator made some ${kind}`);
  }
  const b = cloneLayout(a);
  t.teardown(() => { removeTree(path.dirname(a.merged)); removeTree(path.dirname(b.merged)); });

  // Kernel phantoms (see the head of this file) are whiteouts that hide nothing: remove them
  // from both copies so every remaining difference is a real one.
  const phantoms = [...await kernelPhantoms(b), ...await kernelPhantoms(readOnly(b))];
  t.comment(`${phantoms.length} kernel phantom whiteouts removed`);
  for (const ph of phantoms) for (const layer of [...layersOf(a), ...layersOf(b)]) removeWhiteout(path.join(layer, ph));

  const c = cloneLayout(a);
  t.teardown(() => removeTree(path.dirname(c.merged)));
  const oci = layersOf(c).map(toOci).reduce((x, y) => ({ whiteouts: x.whiteouts + y.whiteouts, opaque: x.opaque + y.opaque }));
  t.ok(oci.whiteouts > 0 && oci.opaque > 0, `OCI copy: ${oci.whiteouts} .wh. files, ${oci.opaque} .wh..wh..opq`);

  for (const [label, la, lb, lc] of [['read-write', a, b, c], ['read-only', readOnly(a), readOnly(b), readOnly(c)]] as const) {
    const mounts: Mounted[] = [];
    try {
      mounts.push(await mountOverlayd(la), mountKernel(lb), await mountOverlayd(lc));
      const [wa, wb, wc] = await Promise.all([walkTree(la.merged), walkTree(lb.merged), walkTree(lc.merged)]);
      t.ok(Object.keys(wb.entries).length > 50, `${label}: ${Object.keys(wb.entries).length} entries compared`);
      compareWalks(t, wa, wb, label);
      compareWalks(t, wc, wb, `${label}, OCI markers`);
      const [ta, tb, tc] = await Promise.all([toolViews(la.merged), toolViews(lb.merged), toolViews(lc.merged)]);
      for (const k of Object.keys(tb)) {
        t.same(ta[k], tb[k], `${label}: ${k} prints the same`);
        t.same(tc[k], tb[k], `${label}, OCI markers: ${k} prints the same`);
      }
    } finally {
      for (const m of mounts.reverse()) await m.unmount();
    }
  }
});

t.test('whiteouts in a directory that is not merged: overlayd never lists them', async (t) => {
  const l = layout(2);
  build(l.lowers[0], { single: { dir: { f: 'f', w: { whiteout: true }, '.wh.oci': '' } }, merged: { dir: { w: { whiteout: true } } } });
  build(l.lowers[1], { merged: { dir: { w: 'hidden', v: 'v' } } });
  build(l.upper as string, { up: { dir: { u: { whiteout: true } } } });
  const k = cloneLayout(l);
  t.teardown(() => { removeTree(path.dirname(l.merged)); removeTree(path.dirname(k.merged)); });
  const ours = await mountOverlayd(l);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  const [wo, wk] = await Promise.all([walkTree(ours.merged), walkTree(kern.merged)]);
  t.same(wo.phantoms, []);
  t.same(wo.entries.single.names, ['f']);
  t.same(wo.entries.up.names, []);
  t.same(wo.entries.merged.names, ['v']);
  // The kernel's own listing, less what it cannot stat and the OCI marker it shows, is ours.
  t.same(wk.entries.single.names?.filter((n) => !n.startsWith('.wh.')), ['f']);
  t.same(wk.entries.merged.names, ['v']);
  const ls = await run('ls', ['-A', 'single', 'up', 'merged'], { cwd: ours.merged });
  t.same([ls.code, ls.stdout], [0, 'merged:\nv\n\nsingle:\nf\n\nup:\n']);
});
