// The kernel transport lets the kernel cache entries, attributes, misses and directory
// listings for a day, and keeps them exact by telling it what its own changes change. Each
// step below is a separate process against a mount that stays up, so a step sees what the
// steps before it left in the kernel's caches; every step must print what kernel overlayfs
// prints for it.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { compareRun, sameAsKernel } from '../lib/compare-run';
import { TRANSPORT } from '../lib/mounts';
import type { Tree } from '../lib/tree';

const fuseNative = TRANSPORT === 'fuse-native';
/** Without passthrough the kernel's writeback cache keeps written files' ctime and mtime itself. */
const writeback = process.env.OVERLAYD_PASSTHROUGH === 'off' && process.env.OVERLAYD_WRITEBACK !== 'off';

/** name, type, mode, links and size; "-" where the name is absent. */
const st = (...names: string[]): string => names.map((n) => `stat -c '%n %F %a %h %s' ${n} 2>/dev/null || echo "${n} -"`).join('; ');
/** Whether a name's ctime moved across a command. */
const ctimeMoves = (name: string, cmd: string): string =>
  `a=$(stat -c %z ${name}); ${cmd}; b=$(stat -c %z ${name}); [ "$a" = "$b" ] && echo "${name} ctime kept" || echo "${name} ctime moved"`;

const layers: Tree[] = [
  { d: { dir: { a: 'A', only: 'top' } }, e: { dir: {} } },
  { d: { dir: { a: 'lower a', b: 'B', c: 'C', sub: { dir: { x: 'X' } } } }, big: { dir: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`n${i}`, String(i)])) } },
  { lone: { dir: { deep: { dir: { f: 'F' } }, g: 'G' } } },
];

t.test('cached attributes follow copy-up, links and removals', { skip: fuseNative && 'fuse-native keeps libfuse\'s 1 s timeouts' }, async (t) => {
  const c = await compareRun(layers, [
    st('d/a', 'd/b', 'lone', 'lone/deep', 'h1', 'h2'),
    // A directory in one lower layer becomes merged once something is copied into it: nlink 1.
    'echo new > lone/deep/n; ' + st('lone', 'lone/deep'),
    // Hard links of a lower file are broken by copy-up; the other name keeps the lower object.
    'echo more >> h1; ' + st('h1', 'h2') + '; cat h1 h2',
    'ln d/c d/c2; ' + st('d/c', 'd/c2'),
    'rm d/c; ' + st('d/c', 'd/c2'),
    'echo x > d/c; ' + st('d/c', 'd/c2'),
    'mv d/sub e/sub; ' + st('d/sub', 'e/sub', 'e/sub/x'),
  ], {
    oursExtra: ['transport=kernel'],
    prepare: (l) => {
      for (const h of ['h1', 'h2']) fs.linkSync(path.join(l.lowers[1], 'd', 'c'), path.join(l.lowers[1], h));
    },
  });
  sameAsKernel(t, c, true);
});

t.test('a copy-up by an open for writing alone shows in the ctime', {
  skip: fuseNative && 'fuse-native keeps libfuse\'s 1 s timeouts',
  todo: writeback && 'with the writeback cache the kernel keeps a file\'s ctime itself',
}, async (t) => {
  const c = await compareRun(layers, [st('d/b'), ctimeMoves('d/b', 'exec 3>>d/b; exec 3>&-'), st('d/b')], { oursExtra: ['transport=kernel'] });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[1].out, /d\/b ctime moved/, 'the copy-up showed');
});

t.test('cached misses and listings follow creates, removals and renames', { skip: fuseNative && 'fuse-native keeps libfuse\'s 1 s timeouts' }, async (t) => {
  const c = await compareRun(layers, [
    'ls d big | md5sum; ' + st('d/new', 'big/n7', 'big/zz'),
    'touch d/new big/zz; ls d big; ' + st('d/new', 'big/zz'),
    'rm big/n7 d/a; ls d big; ' + st('big/n7', 'd/a'),
    'mv big/n8 big/n7; ls big; ' + st('big/n7', 'big/n8'),
    'mkdir d/a; ls -a d d/a; ' + st('d/a'),
    'rmdir d/a; rm -rf d/sub; ls -a d; ' + st('d/a', 'd/sub', 'd/sub/x'),
    'mkdir d/sub; ls -a d/sub; ' + st('d/sub/x'),
    'mv e d/e2; ls d; ' + st('e', 'd/e2'),
  ], { oursExtra: ['transport=kernel'] });
  sameAsKernel(t, c, true);
});
