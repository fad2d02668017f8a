// The permission and ownership rules pjdfstest checks, on a mount with overlayd's default
// options (a root mount serves every user, as kernel overlayfs does), each step run as an
// unprivileged user (setpriv) in a separate process and compared with kernel overlayfs on a
// clone of the same layers: sticky directories, chmod/chown/chgrp by owner and non-owner,
// setuid/setgid dropped by writes and chown, explicit times versus "now", search permission,
// directories moved without write permission on themselves, hard links to others' files.
import t from 'tap';
import fs from 'node:fs';
import { compareRun, sameAsKernel, stepAs } from '../lib/compare-run';
import { TRANSPORT } from '../lib/mounts';
import type { Tree } from '../lib/tree';

const A = 1000;
const B = 1001;

const layers: Tree[] = [
  {
    sticky: { dir: { mine: 'a', theirs: 'b', dmine: { dir: {} }, dtheirs: { dir: {} } }, mode: 0o1777 },
    open: { dir: { f: 'f', sub: { dir: { x: 'x' } }, ro: { dir: { y: 'y' } } }, mode: 0o777 },
    noexec: { dir: { hidden: 'h' }, mode: 0o766 },
    suid: { file: 'suid', mode: 0o4777 },
    sgid: { file: 'sgid', mode: 0o2777 },
    owned: { file: 'owned', mode: 0o644 },
    writable: { file: 'w', mode: 0o666 },
    readonly: { file: 'r', mode: 0o444 },
  },
];

/** Owners as pjdfstest sets them up: each user has objects of their own beside the other's. */
function prepare(l: { lowers: string[] }): void {
  const p = (n: string): string => `${l.lowers[0]}/${n}`;
  for (const [n, uid] of [['sticky/mine', A], ['sticky/dmine', A], ['sticky/theirs', B], ['sticky/dtheirs', B], ['owned', A], ['writable', B], ['readonly', A], ['open/ro', B], ['noexec', B]] as const) fs.chownSync(p(n), uid, uid);
  fs.chownSync(p('suid'), B, B);
  fs.chownSync(p('sgid'), A, B);
  fs.chmodSync(p('suid'), 0o4777); // chown cleared it
  fs.chmodSync(p('sgid'), 0o2777);
  fs.chmodSync(p('open/ro'), 0o555);
}

const NO_CREDS = 'fuse-native does not pass the caller\'s uid/gid: what a user creates or changes is done as the daemon (root)';

t.test('pjdfstest\'s permission and ownership rules for unprivileged users, with default options', { todo: TRANSPORT === 'fuse-native' && NO_CREDS }, async (t) => {
  const c = await compareRun(layers, [
    // sticky directories (unlink/11.t, rename/09.t, rmdir/11.t)
    stepAs(A, 'rm sticky/theirs; rm sticky/mine; rmdir sticky/dtheirs; mv sticky/dmine sticky/dmine2; mv sticky/dtheirs sticky/x'),
    // chmod: only the owner (chmod/07.t); the setgid bit of a file whose group the caller is not in (chmod/12.t)
    stepAs(B, 'chmod 600 owned'),
    stepAs(A, 'chmod 2755 sgid; stat -c "%a" sgid'),
    stepAs(A, 'chmod 2755 owned; stat -c "%a" owned'),
    // chown: no one but root gives a file away (chown/07.t); chgrp only to one's own groups
    stepAs(A, 'chown 1001 owned'),
    stepAs(A, 'chgrp 1001 owned'),
    stepAs(A, 'chgrp 2000 owned; stat -c "%g" owned', `${A},2000`),
    // writes by another user drop setuid/setgid (the VFS's file_remove_privs)
    stepAs(A, 'echo x >> suid; stat -c "%a" suid'),
    // explicit times only for the owner, "now" for anyone who may write (utimensat/06.t, 07.t)
    stepAs(A, 'touch -d 2001-01-01 writable'),
    stepAs(A, 'touch writable; echo now-ok'),
    stepAs(B, 'touch readonly'),
    // write permission: O_RDWR and truncate of a 0444 file (open/06.t, truncate/05.t)
    stepAs(B, 'echo x >> readonly'),
    stepAs(A, 'truncate -s 0 readonly'),
    stepAs(B, 'truncate -s 1 readonly'),
    // search permission (open/05.t and friends)
    stepAs(A, 'cat noexec/hidden; ls noexec'),
    // a directory moved to another parent needs write permission on itself for ".." (rename/13.t)
    stepAs(A, 'mv open/ro open/sub/ro; mv open/sub open/sub2'),
    // hard links to another user's file (fs.protected_hardlinks)
    stepAs(A, 'ln writable open/l1; ln readonly open/l2'),
    'stat -c "%a %u %g %n" owned suid sgid writable readonly; ls -A sticky open open/sub2',
  ], { openBase: true, prepare, xattrs: false });
  sameAsKernel(t, c);
  t.match(c.kern.steps[0].out, /Operation not permitted/, 'the kernel refuses in a sticky dir: the comparison compares refusals too');
  t.match(c.kern.steps[9].out, /now-ok/, 'and allows: both sides acted');
});
