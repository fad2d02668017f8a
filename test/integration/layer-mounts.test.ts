// Mounts inside layers are not part of them: kernel overlayfs looks names up below a mount
// point, never through it, so a bind mount on a lower directory does not show its content and
// one on an upper directory does not receive what is written there. overlayd holds each layer
// through a detached clone of its mount without submounts, and must show and write exactly
// what the kernel does; without the right to clone (no CAP_SYS_ADMIN) it refuses to enter a
// mount point (EXDEV) rather than cross it.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, isMounted, layout, mountKernel, mountOverlayd, type Layout } from '../lib/mounts';

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Layers with a bind mount over lower/lm and over upper/bm; each covers a directory with content. */
function layersWithMounts(t: { teardown(fn: () => void): void }): { l: Layout; src: string[] } {
  const l = layout(1);
  const base = path.dirname(l.merged);
  const src = [path.join(base, 'src-lower'), path.join(base, 'src-upper')];
  const points = [path.join(l.lowers[0], 'lm'), path.join(l.upper as string, 'bm')];
  fs.mkdirSync(path.join(l.lowers[0], 'lm', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(l.lowers[0], 'lm', 'covered'), 'covered lower\n');
  fs.mkdirSync(path.join(l.upper as string, 'bm'));
  fs.writeFileSync(path.join(l.upper as string, 'bm', 'covered'), 'covered upper\n');
  src.forEach((s, i) => {
    fs.mkdirSync(path.join(s, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(s, 'mounted'), `mounted ${i}\n`);
    run('mount', ['--bind', s, points[i]]);
  });
  t.teardown(() => {
    for (const p of [...points, l.merged]) if (isMounted(p)) spawnSync('umount', ['-l', p]);
    fs.rmSync(base, { recursive: true, force: true });
  });
  return { l, src };
}

const SCRIPT = [
  'ls lm bm lm/sub',
  'cat lm/covered bm/covered',
  'echo x > bm/f; echo y > lm/g; mkdir lm/sub/d; mv bm/covered bm/renamed',
  'ls lm bm',
].join('; ');

t.test('what a mount inside a layer covers is what the overlay shows and writes to, as with the kernel', async (t) => {
  const seen: Record<string, { out: string; src: string[]; covered: string[] }> = {};
  for (const engine of ['kernel', 'overlayd'] as const) {
    const { l, src } = layersWithMounts(t);
    const m = engine === 'kernel' ? mountKernel(l) : await mountOverlayd(l);
    let out: string;
    try {
      out = run('sh', ['-c', `cd ${m.merged} && { ${SCRIPT}; } 2>&1`]);
    } finally {
      await m.unmount();
    }
    const bound = src.map((s) => fs.readdirSync(s).sort().join(' '));
    spawnSync('umount', [path.join(l.lowers[0], 'lm')]);
    spawnSync('umount', [path.join(l.upper as string, 'bm')]);
    const covered = ['bm', 'lm', 'lm/sub'].map((d) => fs.readdirSync(path.join(l.upper as string, d)).sort().join(' '));
    seen[engine] = { out, src: bound, covered };
  }
  t.equal(seen.overlayd.out, seen.kernel.out, 'the same listings, contents and replies');
  t.same(seen.overlayd.src, seen.kernel.src, 'the mounted directories untouched');
  t.same(seen.overlayd.covered, seen.kernel.covered, 'the writes landed where the kernel put them');
  t.same(seen.kernel.src, ['mounted sub', 'mounted sub'], 'the kernel wrote nothing into a mount (the oracle)');
});

t.test('without the right to clone a mount, the core refuses to enter a mount point (EXDEV)', async (t) => {
  const { l } = layersWithMounts(t);
  // uid 0 without CAP_SYS_ADMIN: it reads every layer, but open_tree is refused.
  const probe = `
const { Overlay } = require(${JSON.stringify(path.join(ROOT, 'dist/core/overlay.js'))});
const ov = new Overlay({ lowerdirs: [${JSON.stringify(l.lowers[0])}], upperdir: ${JSON.stringify(l.upper)}, workdir: ${JSON.stringify(l.work)}, userxattr: false, volatile: false, readonly: false });
const tryIt = (f) => { try { return JSON.stringify(f()); } catch (e) { return e.code; } };
console.log(ov.stack.layers.every((x) => x.attached), tryIt(() => ov.readdirNames('/lm').map((e) => e.name)), tryIt(() => ov.readdirNames('/bm').map((e) => e.name)), tryIt(() => ov.readdirNames('/').map((e) => e.name).sort()));
ov.close();`;
  const r = spawnSync('setpriv', ['--inh-caps=-sys_admin', '--bounding-set=-sys_admin', '--', process.execPath, '-e', probe], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), 'true EXDEV EXDEV ["bm","lm"]', 'layers held attached; both mount points refused; the rest listed');
});
