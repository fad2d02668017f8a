// What a user's mount (no CAP_SYS_ADMIN) may not ask for, and the small pure pieces of the
// fusermount3 path: fuse.conf's user_allow_other, fusermount3's option escaping.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseMountOptions, UsageError } from '../../src/cli/options';
import { checkPrivileges } from '../../src/cli/privilege';
import { escapeOption, userAllowOther } from '../../src/fuse-kernel/fusermount';

const RW = 'lowerdir=/l1:/l2,upperdir=/u,workdir=/w';
const parse = (o: string) => parseMountOptions([o], { cwd: '/cwd' });

t.test('a user needs userxattr with an upper layer; root and read-only mounts do not', async (t) => {
  t.throws(() => checkPrivileges(parse(RW), 1000, false), /a mount by a user \(uid 1000\) with an upper layer needs -o userxattr/);
  try { checkPrivileges(parse(RW), 1000, false); } catch (err) { t.ok(err instanceof UsageError, 'a usage error (exit 2)'); }
  t.doesNotThrow(() => checkPrivileges(parse(`${RW},userxattr`), 1000, false), 'userxattr given');
  t.doesNotThrow(() => checkPrivileges(parse('lowerdir=/l1:/l2'), 1000, false), 'no upper layer: nothing to write');
  t.doesNotThrow(() => checkPrivileges(parse(RW), 0, true), 'root');
  t.throws(() => checkPrivileges(parse(RW), 0, false, true), /a mount in a user namespace with an upper layer needs -o userxattr/, 'root of a user namespace: its CAP_SYS_ADMIN does not reach trusted.*');
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
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'overlayd-fuseconf-'));
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
