// What a user's mount (no CAP_SYS_ADMIN) may not ask for, and the small pure pieces of the
// fusermount3 path: fuse.conf's user_allow_other, fusermount3's option escaping.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { parseMountOptions, UsageError } from '../../src/cli/options';
import { applyPrivilegeDefaults, checkPrivileges } from '../../src/cli/privilege';
import { escapeOption, userAllowOther } from '../../src/fuse-kernel/fusermount';
import { tmpdir } from '../lib/tree';

const RW = 'lowerdir=/l1:/l2,upperdir=/u,workdir=/w';
const parse = (o: string) => parseMountOptions([o], { cwd: '/cwd' });

t.test('a user (or a user namespace\'s root) with an upper layer gets userxattr; root and read-only mounts keep theirs', async (t) => {
  const user = parse(RW);
  t.same(applyPrivilegeDefaults(user, 1000, false), ['unprivileged mount with an upper layer: using userxattr (user.overlay.* xattrs)']);
  t.equal(user.overlay.userxattr, true);
  t.doesNotThrow(() => checkPrivileges(user, 1000, false));
  const nsRoot = parse(RW);
  applyPrivilegeDefaults(nsRoot, 0, false);
  t.equal(nsRoot.overlay.userxattr, true, 'root of a user namespace: its CAP_SYS_ADMIN does not reach trusted.*');
  const ro = parse('lowerdir=/l1:/l2');
  t.same(applyPrivilegeDefaults(ro, 1000, false), [], 'no upper layer: nothing to write');
  t.equal(ro.overlay.userxattr, false);
  const root = parse(RW);
  t.same(applyPrivilegeDefaults(root, 0, true), []);
  t.equal(root.overlay.userxattr, false, 'root keeps trusted.overlay.*');
  t.throws(() => checkPrivileges(parse(RW), 1000, false), /a mount by a user \(uid 1000\) with an upper layer needs -o userxattr/, 'the check itself still holds without the defaults');
  try { checkPrivileges(parse(RW), 1000, false); } catch (err) { t.ok(err instanceof UsageError, 'a usage error (exit 2)'); }
});

t.test('a root mount is open to every user unless noallow_other; a user\'s is not', async (t) => {
  const root = parse(RW);
  applyPrivilegeDefaults(root, 0, true);
  t.equal(root.fuse.allowOther, true, 'root: allow_other, as kernel overlayfs is open to all');
  t.equal(root.fuse.defaultPermissions, true, 'with the kernel checking permissions');
  const kept = parse(`${RW},noallow_other`);
  applyPrivilegeDefaults(kept, 0, true);
  t.equal(kept.fuse.allowOther, false, 'noallow_other keeps it to the mounter');
  const nsRoot = parse(RW);
  applyPrivilegeDefaults(nsRoot, 0, false, true);
  t.equal(nsRoot.fuse.allowOther, true, 'root of a user namespace (rootless podman): open to that namespace, as fuse-overlayfs is');
  const nsKept = parse(`${RW},noallow_other`);
  applyPrivilegeDefaults(nsKept, 0, false, true);
  t.equal(nsKept.fuse.allowOther, false, 'noallow_other there too');
  const noCap = parse(RW);
  applyPrivilegeDefaults(noCap, 0, false, false);
  t.equal(noCap.fuse.allowOther, false, 'uid 0 without CAP_SYS_ADMIN mounts through fusermount3: its rules');
  const user = parse(`${RW},userxattr`);
  applyPrivilegeDefaults(user, 1000, false);
  t.equal(user.fuse.allowOther, false, 'a user mount follows fusermount3: the mounter only');
});

t.test('no_default_permissions with allow_other would check nothing: refused', async (t) => {
  const explicit = parse(`${RW},allow_other,no_default_permissions`);
  t.throws(() => checkPrivileges(explicit, 0, true), /no_default_permissions cannot be combined with allow_other/);
  const implied = parse(`${RW},no_default_permissions`);
  applyPrivilegeDefaults(implied, 0, true);
  t.throws(() => checkPrivileges(implied, 0, true), /a root mount is allow_other by default; add noallow_other/);
  const owner = parse(`${RW},no_default_permissions,noallow_other`);
  applyPrivilegeDefaults(owner, 0, true);
  t.doesNotThrow(() => checkPrivileges(owner, 0, true), 'the mounter alone: its own business');
});

t.test('allow_other and allow_root need user_allow_other for a user', async (t) => {
  // The host's /etc/fuse.conf decides; either way the rule holds.
  const allowed = userAllowOther();
  for (const o of ['allow_other', 'allow_root']) {
    const opts = parse(`${RW},userxattr,${o}`);
    if (allowed) t.doesNotThrow(() => checkPrivileges(opts, 1000, false, false), `${o}: user_allow_other is set here`);
    else t.throws(() => checkPrivileges(opts, 1000, false, false), new RegExp(`option ${o} needs user_allow_other in /etc/fuse.conf`));
    t.doesNotThrow(() => checkPrivileges(opts, 0, true), `${o} as root`);
  }
});

t.test('fuse.conf: user_allow_other on a line of its own, comments and blanks ignored', async (t) => {
  const dir = tmpdir('overlayd-fuseconf-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const conf = (text: string): boolean => { const p = path.join(dir, 'fuse.conf'); fs.writeFileSync(p, text); return userAllowOther(p); };
  t.equal(conf('user_allow_other\n'), true);
  t.equal(conf('  user_allow_other   # yes\nmount_max = 10\n'), true);
  t.equal(conf('#user_allow_other\n'), false, 'commented out (Debian\'s default)');
  t.equal(conf('user_allow_other_not\n'), false);
  t.equal(userAllowOther(path.join(dir, 'missing')), false, 'no file');
});

t.test('fusermount3 option values escape , and \\', async (t) => {
  t.equal(escapeOption('plain'), 'plain');
  t.equal(escapeOption('a,b\\c'), 'a\\,b\\\\c');
});
