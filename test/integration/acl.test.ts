// POSIX ACLs through the mount, as through kernel overlayfs: a user an ACL lets in is let in
// (the kernel checks ACLs only where the daemon says at INIT that it serves them), and a new
// object takes its permission bits and ACLs from the parent's default ACL instead of the umask,
// both when made straight in upper and when made over a whiteout through the work directory.
// Steps run as nobody (setpriv), in a separate process.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { compareRun, stepAs } from '../lib/compare-run';
import { ON_FUSE_NATIVE, type Layout } from '../lib/mounts';
import type { Tree } from '../lib/tree';

const asNobody = (cmd: string): string => stepAs(65534, cmd);

const layers: Tree[] = [
  {
    secret: { file: 'root only, but nobody may read\n', mode: 0o600 },
    closed: { file: 'root only\n', mode: 0o600 },
    d: { dir: { gone: { file: 'x\n' }, gdir: { dir: {} }, keep: { file: 'k\n', mode: 0o644 } }, mode: 0o700 },
    plain: { dir: {}, mode: 0o777 },
  },
];

function setfacl(args: string[]): void {
  const r = spawnSync('setfacl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`setfacl ${args.join(' ')}: ${r.stderr}`);
}

/** Access ACLs that let nobody in where the mode bits alone would not, and a default ACL on d. */
function prepare(l: Layout): void {
  const low = l.lowers[0];
  setfacl(['-m', 'u:nobody:r', `${low}/secret`]);
  setfacl(['-m', 'u:nobody:rwx', `${low}/d`]);
  setfacl(['-d', '-m', 'u:nobody:rw,g::r', `${low}/d`]);
}

const NO_ACL = 'libfuse 2 (fuse-native) cannot tell the kernel at INIT that the daemon serves POSIX ACLs: the kernel checks the mode bits alone';

t.test('ACLs let a user in where kernel overlayfs does, and new objects inherit default ACLs', async (t) => {
  const c = await compareRun(layers, [
    asNobody('cat secret; cat closed'),
    asNobody('ls d; echo new > d/new; mkdir d/sub; echo in > d/sub/f'),
    // Over whiteouts: made in the work directory, then renamed into place.
    asNobody('rm d/gone && echo again > d/gone; rmdir d/gdir && mkdir d/gdir && echo in > d/gdir/f'),
    asNobody('umask 077; echo masked > d/umask077; mkdir d/dir077'),
    // No default ACL: the umask applies, as always.
    asNobody('umask 027; echo p > plain/f027; mkdir plain/d027; umask 0; echo p > plain/f000'),
    'getfacl -p secret d/new d/sub d/sub/f d/gone d/gdir d/gdir/f d/umask077 d/dir077 plain/f027 plain/d027 plain/f000 2>&1',
    'chmod 640 d/new; getfacl -p d/new',
    'setfacl -m u:nobody:r closed; getfacl -p closed; stat -c "%a %n" closed',
    asNobody('cat closed'),
  ], { oursExtra: ['allow_other'], openBase: true, prepare });
  if (ON_FUSE_NATIVE) {
    // Known and documented (README, Transports); kept so that a libfuse that can shows up here.
    t.not(c.ours.steps[0].out, c.kern.steps[0].out, `fuse-native differs: ${NO_ACL}`);
    return;
  }
  t.same(c.ours.steps, c.kern.steps, 'every step prints and exits as on the kernel');
  t.match(c.ours.steps[0].out, /root only, but nobody may read\ncat: closed: Permission denied/, 'an access ACL lets nobody read; no ACL, no entry');
  t.match(c.ours.steps[5].out, /# file: d\/gone\n# owner: nobody\n# group: nogroup\nuser::rw-\nuser:nobody:rw-\ngroup::r--\nmask::rw-\nother::---/, 'made over a whiteout, a file takes the default ACL');
  t.match(c.ours.steps[5].out, /# file: d\/gdir\n[^]*?default:user:nobody:rw-/, 'and a directory takes it as its own default ACL too');
  t.match(c.ours.steps[5].out, /# file: plain\/f027\n# owner: nobody\n# group: nogroup\nuser::rw-\ngroup::r--\nother::---/, 'without a default ACL the umask applies');
  t.match(c.ours.steps[8].out, /root only\nstatus 0/, 'an ACL set through the mount is checked at once');
  t.same(c.ours.merged, c.kern.merged, 'merged view as the kernel');
  t.same(c.ours.upper, c.kern.upper, 'upper layer on disk as the kernel, ACL xattrs included');
});
