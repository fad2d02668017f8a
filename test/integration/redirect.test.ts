// redirect_dir through the mount, against kernel overlayfs on a clone of the same layers: with
// redirect_dir=on directories with lower content move (what unionmount-testsuite's rename and
// dir-move tests do: rename in place and across parents, again and back, over whiteouts and
// empty directories, nested, en masse, exchanged, removed, new directories into lower ones,
// hard links renamed in a ring), the merged view, the upper layer on
// disk (redirect and opaque xattrs included) and the kernel reading overlayd's upper all match;
// and overlayd with default options reads a tree the kernel wrote with redirect_dir=on as the
// kernel does.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { compareRun, differences, kernelOpts, sameAsKernel } from '../lib/compare-run';
import { TRANSPORT, layout, mountKernel, mountOverlayd } from '../lib/mounts';
import { removeTree } from '../lib/stack';
import { build, snapshot, tmpdir, type Tree } from '../lib/tree';

const scripts = tmpdir();
t.teardown(() => removeTree(scripts));

/** rename(2)/renameat2(2) with the errno name printed, the way the tests of unionmount check it. */
const RENAME = path.join(scripts, 'rename.py');
fs.writeFileSync(RENAME, `import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
flags = {'': 0, 'noreplace': 1, 'exchange': 2}[sys.argv[3] if len(sys.argv) > 3 else '']
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), flags)
print(sys.argv[1], '->', sys.argv[2], 'ok' if r == 0 else errno.errorcode[ctypes.get_errno()])
`);
const mv = (a: string, b: string, flags = ''): string => `python3 ${RENAME} ${a} ${b} ${flags}`;

const dirOf = (n: number, prefix: string): Tree => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, { dir: { [`f${i}`]: String(i) } }]));

const LAYERS: Tree[] = [
  { a: { dir: { f: 'f', sub: { dir: { g: 'g' } } } }, deep: { dir: { in: { dir: { leaf: { dir: { l: 'l' } } } }, top: 't' } }, mass: { dir: dirOf(12, 'd') } },
  { a: { dir: { low: 'from below', sub: { dir: { h: 'h' } } } }, p: { dir: { q: 'q' } }, gone: { dir: { z: 'z' } }, lone: { dir: { only: 'o' } }, emptylow: { dir: {} }, x1: { dir: { one: '1' } }, x2: { dir: { two: '2' } }, mass2: { dir: {} }, full: { dir: { keep: 'k' } } },
];

const STEPS = [
  mv('a', 'b'),
  mv('b/sub', 'p/sub2'),
  'cat p/sub2/g p/sub2/h',
  mv('b', 'b2'),
  'mkdir p/x',
  mv('b2', 'p/x/c'),
  mv('p/sub2', 'p/x/c/sub3'),
  'rm -rf gone',
  mv('p/x/c', 'gone'),
  mv('gone', 'a'),
  mv('a', 'a', ''),
  // nested: a moved directory's children move out, then the parent moves again
  'mkdir n1',
  mv('deep', 'n1/deep'),
  mv('n1/deep/in', 'n1/in2'),
  mv('n1/in2/leaf', 'leaf'),
  mv('n1', 'n2'),
  mv('n2/deep', 'deep'),
  // a moved directory removed: its old name stays whited out
  mv('lone', 'lone2'),
  'rm -rf lone2',
  // over an empty lower directory, over a non-empty one, into itself
  mv('x1', 'emptylow'),
  mv('x2', 'full'),
  mv('deep', 'deep/top2'),
  mv('leaf', 'leaf/l/x'),
  mv('x2', 'p', 'noreplace'),
  // en masse, in place and across parents, then every one back
  'for i in $(seq 0 11); do mv mass/d$i mass/e$i; done',
  'for i in $(seq 0 5); do mv mass/e$i mass2/; done',
  'for i in $(seq 0 5); do mv mass2/e$i mass/d$i; done',
  'ls -R | sort | md5sum; find . -type d | wc -l',
];

t.test('redirect_dir=on: directories with lower content move as on the kernel', async (t) => {
  const c = await compareRun(LAYERS, STEPS, { extra: ['redirect_dir=on'] });
  sameAsKernel(t, c);
  t.match(c.kern.steps[0].out, /a -> b ok/, 'the kernel moved it: the comparison compares moves, not refusals');
  t.equal(c.ours.steps.filter((s) => /EXDEV/.test(s.out)).length, 0, 'no EXDEV');
  t.match(c.ours.steps[20].out, /x2 -> full ENOTEMPTY/);
  t.match(c.ours.steps[21].out, /deep -> deep\/top2 EINVAL/);
});

const NO_FLAGS = 'fuse-native: libfuse 2\'s high-level rename carries no flags, so RENAME_EXCHANGE gives EINVAL';

t.test('redirect_dir=on: RENAME_EXCHANGE of directories with lower content', { todo: TRANSPORT === 'fuse-native' && NO_FLAGS }, async (t) => {
  const c = await compareRun(LAYERS, [
    mv('x1', 'x2', 'exchange'), mv('x1', 'p/x1'), mv('p/x1', 'x2', 'exchange'), mv('a', 'emptylow', 'exchange'), 'ls x2 p/x1 a emptylow',
  ], { extra: ['redirect_dir=on'] });
  sameAsKernel(t, c, true);
});

t.test('redirect_dir=on: new directories into and over lower ones, hard links renamed in a ring', async (t) => {
  const lower: Tree = {
    el: { dir: { e1: { dir: {} }, e2: { dir: {} } } },
    pop: { dir: { a: 'a', pop: { dir: { b: 'b' } } } },
    ring: { dir: Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`f${100 + i}`, String(i)])) },
  };
  const c = await compareRun([lower], [
    'mkdir el/e1-new', mv('el/e1-new', 'el/e1/new'), 'ls el/e1',
    'mkdir el/e2/new', mv('el/e2/new', 'nodir'),
    'mkdir -p el/newp/new', mv('el/newp/new', 'nodir2'), mv('el/newp', 'nodir3'),
    'mkdir el/e2/new', mv('pop', 'el/e2/new/pop'), 'cat el/e2/new/pop/a el/e2/new/pop/pop/b',
    mv('el/e2/new/pop/pop', 'el/e2/new/pop/popx'), mv('el/e2/new/pop', 'el/popx'), mv('el/popx/popx', 'el/e1/popx'),
    'cd ring && for i in $(seq 100 107); do ln f$i g$i; done',
    'cd ring && gap=6; for i in $(seq 1 31); do n=$(( (gap + 6) % 7 )); mv g$((100 + n)) g$((100 + gap)); gap=$n; done',
    // libfuse 2 gives each name its own inode, whose nlink stays cached (README, fuse-native limits)
    `cd ring && stat -c "%n ${TRANSPORT === 'fuse-native' ? '' : '%h '}%s" * | sort && cat g10?`,
  ], { extra: ['redirect_dir=on'] });
  sameAsKernel(t, c, true);
});

t.test('redirect_dir=on with the moved trees changed afterwards', async (t) => {
  const c = await compareRun(LAYERS, [
    mv('a', 'p/a'), 'echo new > p/a/f; rm p/a/low; mkdir p/a/sub/new; touch p/a/sub/h',
    mv('p', 'p2'), 'ln -s a/f p2/link; cat p2/a/f p2/link',
    mv('p2/a/sub', 'sub'), 'rmdir sub/new; rm sub/g sub/h; rmdir sub', 'ls p2/a',
  ], { extra: ['redirect_dir=on'] });
  sameAsKernel(t, c, true);
});

t.test('overlayd with default options reads what the kernel wrote with redirect_dir=on', async (t) => {
  const l = layout(LAYERS.length);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  LAYERS.forEach((tree, i) => build(l.lowers[i], tree));
  const k = mountKernel(l, kernelOpts(['redirect_dir=on']));
  try {
    for (const s of STEPS) spawnSync('bash', ['-c', s], { cwd: k.merged, stdio: 'ignore' });
  } finally {
    await k.unmount();
  }
  const redirects = spawnSync('getfattr', ['-R', '-d', '-m', 'trusted.overlay.redirect', '--absolute-names', l.upper as string], { encoding: 'utf8' }).stdout;
  t.match(redirects, /trusted\.overlay\.redirect="\/a\/sub"/, 'the kernel left absolute redirects');
  t.match(redirects, /trusted\.overlay\.redirect="d6"/, 'and relative ones');
  const ours = await mountOverlayd(l);
  let seen: ReturnType<typeof snapshot>;
  try {
    seen = snapshot(ours.merged, { xattrs: true });
  } finally {
    await ours.unmount();
  }
  const kern = mountKernel(l, ['index=off', 'metacopy=off']);
  let theirs: ReturnType<typeof snapshot>;
  try {
    theirs = snapshot(kern.merged, { xattrs: true });
  } finally {
    await kern.unmount();
  }
  t.ok(Object.keys(seen).length > 40, `a real tree (${Object.keys(seen).length} paths)`);
  t.same(differences(seen, theirs), [], 'the same tree: names, types, modes, owners, contents, xattrs');
});
