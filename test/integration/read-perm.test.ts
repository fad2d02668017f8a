// Who may read what: unprivileged callers read through the mount exactly what they may read
// through kernel overlayfs, judged on the winning object's mode and owner (the upper copy's,
// not the lower's). FUSE lets other users in only with allow_other, so both sides use it here.
import t from 'tap';
import path from 'node:path';
import { cloneLayout, layout, mountKernel, mountOverlayd } from '../lib/mounts';
import { build } from '../lib/tree';
import { run } from '../lib/proc';
import { removeTree } from '../lib/stack';
import fs from 'node:fs';

t.test('an unprivileged caller is allowed and refused as on the kernel', async (t) => {
  const l = layout(2);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  const own = (p: string, uid: number, gid: number, mode: number): void => { fs.chownSync(p, uid, gid); fs.chmodSync(p, mode); };
  build(l.lowers[1], {
    shadow: 'lower copy is world-readable', mergedir: { dir: { low: 'low' } }, lowonly: 'lowonly',
    d711: { dir: { inner: 'inner' } },
  });
  build(l.lowers[0], { f600: 'secret', f640: 'group', f604: 'other', d700: { dir: { inner: 'x' } }, mine: { dir: { m: 'm' } }, d711: { dir: {} } });
  build(l.upper as string, { shadow: 'upper copy is private', mergedir: { dir: {} } });
  const L0 = l.lowers[0], L1 = l.lowers[1], U = l.upper as string;
  own(path.join(L0, 'f600'), 0, 0, 0o600);
  own(path.join(L0, 'f640'), 0, 1000, 0o640);
  own(path.join(L0, 'f604'), 0, 1000, 0o604);
  own(path.join(L0, 'd700'), 0, 0, 0o700);
  own(path.join(L0, 'mine'), 1000, 1000, 0o700);
  own(path.join(L0, 'd711'), 0, 0, 0o711);
  own(path.join(L1, 'd711'), 0, 0, 0o755);
  own(path.join(L1, 'lowonly'), 1000, 0, 0o400);
  own(path.join(L1, 'shadow'), 0, 0, 0o644);
  own(path.join(U, 'shadow'), 0, 0, 0o600);
  own(path.join(U, 'mergedir'), 0, 0, 0o700);
  own(path.join(L1, 'mergedir'), 0, 0, 0o755);
  const k = cloneLayout(l);
  t.teardown(() => removeTree(path.dirname(k.merged)));
  const ours = await mountOverlayd(l, ['allow_other']);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());

  const paths = ['f600', 'f640', 'f604', 'd700', 'd700/inner', 'mine', 'mine/m', 'd711', 'd711/inner', 'lowonly', 'shadow', 'mergedir', 'mergedir/low'];
  const script = paths.map((p) => `printf '%s: ' ${p}; { test -d ${p} && ls ${p} || cat ${p}; } 2>&1 | sed 's/^[a-z]*: //' | tr '\\n' ' '; echo`).join('\n');
  const as = (who: string[], cwd: string) => run('setpriv', [...who, 'sh', '-c', script], { cwd });
  for (const [label, who] of [
    ['uid 1000, gid 1000', ['--reuid', '1000', '--regid', '1000', '--clear-groups']],
    ['uid 2000, in group 1000', ['--reuid', '2000', '--regid', '2000', '--groups', '1000']],
    ['uid 3000, no group', ['--reuid', '3000', '--regid', '3000', '--clear-groups']],
  ] as const) {
    const [ro, rk] = await Promise.all([as([...who], ours.merged), as([...who], kern.merged)]);
    t.equal(ro.stdout.split(ours.merged).join('M'), rk.stdout.split(kern.merged).join('M'), label);
    t.match(ro.stdout, /shadow: .*Permission denied/, `${label}: the upper copy's mode decides`);
  }
  const r = await as(['--reuid', '1000', '--regid', '1000', '--clear-groups'], ours.merged);
  t.match(r.stdout, /^f640: group$/m);
  t.match(r.stdout, /f604: cat: f604: Permission denied|f604: .*Permission denied/, 'other bits do not apply to the group');
  t.match(r.stdout, /^mine\/m: m$/m);
  t.match(r.stdout, /^lowonly: lowonly$/m);
});
