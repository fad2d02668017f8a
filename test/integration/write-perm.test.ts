// Permission checks for another user on an allow_other mount: with default_permissions the
// kernel checks the mode and owner overlayd reports, so a non-root user gets the same errors
// as on kernel overlayfs. Steps run as nobody (setpriv), in a separate process.
import t from 'tap';
import fs from 'node:fs';
import { compareRun, stepAs } from '../lib/compare-run';
import { ON_FUSE_NATIVE } from '../lib/mounts';
import type { Tree } from '../lib/tree';

const NOBODY = 65534;
const asNobody = (cmd: string): string => stepAs(NOBODY, cmd);

const layers: Tree[] = [
  {
    secret: { file: 'root only\n', mode: 0o600 },
    pub: { file: 'public\n', mode: 0o644 },
    rootdir: { dir: { file: 'f\n' }, mode: 0o755 },
    shared: { dir: {}, mode: 0o1777 },
  },
];

/** Owner of `own`: nobody, so the steps have a dir of their own. */
function prepare(l: { lowers: string[] }): void {
  fs.mkdirSync(`${l.lowers[0]}/own`, { mode: 0o755 });
  fs.chownSync(`${l.lowers[0]}/own`, NOBODY, NOBODY);
}

t.test('a non-root user gets EACCES/EPERM exactly where the kernel gives them', async (t) => {
  const c = await compareRun(layers, [
    asNobody('cat secret'),
    asNobody('cat pub; ls rootdir'),
    asNobody('echo x > rootdir/new'),
    asNobody('echo x >> pub'),
    asNobody('mkdir rootdir/sub'),
    asNobody('rm -f rootdir/file'),
    asNobody('mv pub own/'),
    asNobody('chmod 777 pub'),
    asNobody('chown nobody pub'),
    asNobody('touch -d 2001-01-01 pub'),
    asNobody('touch pub'),
    asNobody('ln secret own/hardlink'),
    asNobody('setfattr -n user.x -v 1 pub'),
    asNobody('rm -rf own/ && echo removed'), // its own, empty dir below: a whiteout, made by the daemon
    'ls -A; stat -c "%a %U %n" secret pub rootdir/file',
  ], { oursExtra: ['allow_other'], openBase: true, prepare, xattrs: false });
  t.same(c.ours.steps, c.kern.steps, 'every step fails or succeeds as on the kernel, with the same message');
  t.match(c.ours.steps[0].out, /Permission denied/, 'reading a 0600 root file is refused');
  t.match(c.ours.steps[2].out, /Permission denied/, 'creating in a root 0755 dir is refused');
  t.same(c.ours.merged, c.kern.merged, 'nothing changed that the kernel kept');
  t.same(c.ours.upper, c.kern.upper);
});

const NO_CREDS = 'fuse-native does not pass the caller\'s uid/gid: new objects are owned by the daemon (root)';

t.test('files another user creates are that user\'s', async (t) => {
  const c = await compareRun(layers, [
    asNobody('echo mine > shared/f; mkdir shared/d; echo more >> shared/f; stat -c "%U %n" shared/f shared/d'),
  ], { oursExtra: ['allow_other'], openBase: true, prepare, xattrs: false });
  t.same(c.ours.steps, c.kern.steps, 'owner and later writes as on the kernel', { todo: ON_FUSE_NATIVE && NO_CREDS });
  t.same(c.ours.upper, c.kern.upper, 'upper as the kernel', { todo: ON_FUSE_NATIVE && NO_CREDS });
});
