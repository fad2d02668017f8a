// Directory listings come in kernel overlayfs's order (ovl_dir_read_merged): a merged
// directory lists its lowest layer's names first, in that layer's order, then the names only
// the layers above hold; a directory of one layer lists in its own order. Tools that walk in
// readdir order (tar, find, ls -f) then produce the same output as through the kernel.
// "." and ".." are left out: overlayd lists them first, the kernel where the lowest layer has them.
import t from 'tap';
import { compareRun } from '../lib/compare-run';
import type { Tree } from '../lib/tree';

const many = (prefix: string, n: number): Tree => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, { file: `${prefix}${i}\n` }]));

const layers: Tree[] = [
  { d: { dir: { ...many('top', 6), shared0: { file: 'top\n' } } }, onlytop: { dir: many('t', 5) } },
  { d: { dir: { ...many('mid', 6), shared0: { file: 'mid\n' }, shared1: { file: 'mid\n' } } } },
  { d: { dir: { ...many('low', 8), shared0: { file: 'low\n' }, shared1: { file: 'low\n' }, sub: { dir: many('s', 4) } } }, onlylow: { dir: many('l', 5) } },
];

const list = (dir: string): string => `ls -f ${dir} | grep -vx '[.]\\{1,2\\}'`;

t.test('listings in the kernel overlay\'s order, merged or not, after changes through the mount', async (t) => {
  const c = await compareRun(layers, [
    `${list('d')}; ${list('.')}; ${list('onlytop')}; ${list('onlylow')}`,
    'for i in 0 1 2 3 4 5; do echo new > d/new$i; done; rm d/low3 d/mid2 d/top1; echo changed >> d/low5; rm -r d/sub; mkdir d/sub; touch d/sub/fresh',
    `${list('d')}; ${list('d/sub')}; ${list('.')}`,
    'find . | tail -n +2',
  ], { xattrs: false });
  t.same(c.ours.steps, c.kern.steps, 'every listing in the same order as the kernel\'s');
  t.match(c.ours.steps[2].out, /new\d/, 'the new names are listed');
});
