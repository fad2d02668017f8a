// -o parsing as mount(8), fstab and the kernel's overlay take it, and the mount helper's
// argument convention. Pure parsing: no file system is touched.
import t, { type Test } from 'tap';
import { parseMountOptions, splitEscaped, unescape, escapePath, UsageError, MAX_LOWER_LAYERS } from '../../src/cli/options';
import { parseHelperArgs } from '../../src/cli/main';
import { parseMountinfo, mountOf, mountAt } from '../../src/cli/mountinfo';
import { DAEMON_NODE_FLAGS, daemonNodeArgs } from '../../src/cli/node-flags';

const L = 'lowerdir=/l1:/l2';
const RW = 'lowerdir=/l1:/l2,upperdir=/u,workdir=/w';
const parse = (...o: string[]) => parseMountOptions(o, { cwd: '/cwd' });
const fails = (t: Test, o: string[], re: RegExp, what?: string): void => {
  t.throws(() => parseMountOptions(o, { cwd: '/cwd' }), re, what ?? o.join(' '));
  try { parseMountOptions(o, { cwd: '/cwd' }); } catch (err) { t.ok(err instanceof UsageError, `${o.join(' ')}: a usage error`); }
};

t.test('layers: order, escapes, relative paths', async (t) => {
  const o = parse('lowerdir=/a:/b:/c,upperdir=/u,workdir=/w');
  t.same(o.overlay.lowerdirs, ['/a', '/b', '/c'], 'leftmost is the top layer, order kept');
  t.equal(o.overlay.upperdir, '/u');
  t.equal(o.overlay.workdir, '/w');
  t.equal(o.overlay.readonly, false);
  const e = parse('lowerdir=/with\\:colon:/with\\,comma:/with space:/back\\\\slash,upperdir=/u\\,1,workdir=/w\\:1');
  t.same(e.overlay.lowerdirs, ['/with:colon', '/with,comma', '/with space', '/back\\slash']);
  t.equal(e.overlay.upperdir, '/u,1');
  t.equal(e.overlay.workdir, '/w:1');
  const r = parse('lowerdir=a:../b:./c/,upperdir=u,workdir=w/../w2');
  t.same(r.overlay.lowerdirs, ['/cwd/a', '/b', '/cwd/c'], 'relative to the working directory, as the kernel resolves them');
  t.equal(r.overlay.upperdir, '/cwd/u');
  t.equal(r.overlay.workdir, '/cwd/w2');
  t.same(parseMountOptions(['lowerdir=x:y'], { cwd: '/other dir' }).overlay.lowerdirs, ['/other dir/x', '/other dir/y']);
  for (const p of ['/a', '/a:b', '/a,b', '/a\\b', '/a b:c,d\\e']) {
    t.same(parse(`lowerdir=${escapePath(p)}:/z`).overlay.lowerdirs, [p, '/z'], `escapePath round-trips ${p}`);
  }
  t.same(splitEscaped('a\\,b,c', ','), ['a\\,b', 'c']);
  t.equal(unescape('a\\:b\\\\c'), 'a:b\\c');
});

t.test('several -o strings add up', async (t) => {
  const o = parseMountOptions(['lowerdir=/a:/b', 'upperdir=/u,workdir=/w', 'ro'], { cwd: '/' });
  t.same(o.overlay.lowerdirs, ['/a', '/b']);
  t.equal(o.overlay.upperdir, '/u');
  t.equal(o.overlay.readonly, true);
});

t.test('read-only and read-write', async (t) => {
  t.equal(parse(RW).overlay.readonly, false);
  t.notOk(parse(RW).fuse.extra.includes('ro'));
  t.equal(parse(`${RW},ro`).overlay.readonly, true);
  t.ok(parse(`${RW},ro`).fuse.extra.includes('ro'), 'ro reaches the FUSE mount');
  t.equal(parse(`rw,${RW},ro`).overlay.readonly, true, 'the last of rw/ro wins, as for mount(8)');
  t.equal(parse(`ro,${RW},rw`).overlay.readonly, false);
  t.ok(parse(L).fuse.extra.includes('ro'), 'no upper layer: a read-only mount, as the kernel makes it');
});

t.test("mount(8)'s and fstab's options are accepted", async (t) => {
  const o = parse(`rw,defaults,noauto,auto,nofail,user,nouser,users,owner,group,_netdev,${RW},x-systemd.automount,x-systemd.requires=/x,x-initrd.mount,comment=systemd.foo,user=alice,relatime,noatime,nodiratime,lazytime,loud,silent`);
  t.same(o.overlay.lowerdirs, ['/l1', '/l2']);
  t.same(o.ignored, []);
  t.equal(o.overlay.readonly, false);
  // what mount(8) adds for a `user` fstab line, and what mount.fuse3 adds for fuse#source
  const u = parse(`rw,noexec,nosuid,nodev,${RW}`);
  for (const f of ['noexec', 'nosuid', 'nodev']) t.ok(u.fuse.extra.includes(f), `${f} reaches the FUSE mount`);
  const d = parse(`${RW},dev,suid`);
  t.ok(d.fuse.extra.includes('dev') && d.fuse.extra.includes('suid'));
  const def = parse(RW);
  t.ok(def.fuse.extra.includes('dev') && def.fuse.extra.includes('suid'), 'devices and setuid allowed by default, as on kernel overlayfs');
  t.ok(def.fuse.extra.includes('nonempty'), 'mounts over a non-empty directory, as kernel overlayfs does');
  t.notOk(parse(`nosuid,${RW},suid`).fuse.extra.includes('nosuid'), 'last one wins');
  t.ok(parse(`${RW},sync,dirsync,noatime`).fuse.extra.includes('sync'));
});

t.test("overlayd's own options and the FUSE ones", async (t) => {
  const o = parse(`${RW},userxattr,volatile,allow_other,allow_root,default_permissions,entry_timeout=0.5,attr_timeout=2,negative_timeout=0,fsname=data,transport=fuse-native,log_level=debug,log_file=rel/log`);
  t.equal(o.overlay.userxattr, true);
  t.equal(o.overlay.volatile, true);
  t.equal(o.fuse.allowOther, true);
  t.equal(o.fuse.allowRoot, true);
  t.equal(o.fuse.defaultPermissions, true);
  t.equal(o.fuse.entryTimeout, 0.5);
  t.equal(o.fuse.attrTimeout, 2);
  t.equal(o.fuse.negativeTimeout, 0);
  t.equal(parse(RW).fuse.entryTimeout, undefined, 'no timeout given: the transport\'s default');
  t.equal(parse(`${RW},passthrough=all`).fuse.passthrough, 'all');
  t.equal(parse(RW).fuse.passthrough, undefined);
  t.equal(parse(`${RW},spin=0`).fuse.spin, 0);
  t.equal(parse(`${RW},spin=250`).fuse.spin, 250);
  t.equal(parse(RW).fuse.spin, undefined);
  t.equal(parse(`${RW},uring=on`).fuse.uring, 'on');
  t.equal(parse(`${RW},uring=off`).fuse.uring, 'off');
  t.equal(parse(RW).fuse.uring, undefined, 'no uring given: OVERLAYD_URING, else off');
  t.equal(o.fuse.fsname, 'data');
  t.equal(o.daemon.logLevel, 'debug');
  t.equal(o.daemon.logFile, '/cwd/rel/log');
  t.equal(parse(`${RW},no_default_permissions`).fuse.defaultPermissions, false);
  t.equal(parse(L + ',volatile').overlay.volatile, false, 'volatile means nothing without upper (the kernel ignores it too)');
  t.equal(parseMountOptions([RW], { source: 'mydata' }).fuse.fsname, 'mydata', 'the SOURCE names the mount');
  t.equal(parseMountOptions([RW + ',fsname=x'], { source: 'mydata' }).fuse.fsname, 'x', 'fsname= wins over SOURCE');
  t.equal(parse(RW).fuse.fsname, 'overlayd');
  t.equal(parse(RW).overlay.redirectDir, undefined, 'no redirect_dir: the kernel\'s default (core/redirect.ts)');
  t.equal(parse(`${RW},redirect_dir=on`).overlay.redirectDir, 'on');
  t.equal(parse(`${RW},redirect_dir=off`).overlay.redirectDir, 'follow', 'off follows, as with redirect_always_follow=Y');
  t.equal(parse(`${RW},redirect_dir=nofollow,userxattr`).overlay.redirectDir, 'nofollow');
  for (const k of ['redirect_dir=off', 'redirect_dir=nofollow', 'redirect_dir=follow', 'redirect_dir=on', 'index=off', 'metacopy=off', 'nfs_export=off', 'xino=off', 'xino=auto', 'uuid=null', 'uuid=on', 'verity=off']) {
    t.doesNotThrow(() => parse(`${RW},${k}`), `kernel option ${k} in the form overlayd implements`);
  }
});

t.test('what container engines pass is accepted, with its meaning', async (t) => {
  // Debian's podman 4.3: an empty item before volatile; containerd: writeback=0; `:O` volumes: private.
  const podman = parse('lowerdir=/a:/b,upperdir=/u,workdir=/w,,volatile');
  t.equal(podman.overlay.volatile, true, 'empty items are skipped, as the kernel skips them');
  t.same(parse(',lowerdir=/a:/b,').overlay.lowerdirs, ['/a', '/b'], 'leading and trailing commas too');
  t.same(parse('', 'lowerdir=/a:/b').overlay.lowerdirs, ['/a', '/b'], 'an empty -o string');
  for (const w of ['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'unbindable', 'runbindable']) {
    t.doesNotThrow(() => parse(`${RW},${w}`), `propagation word ${w}`);
  }
  t.equal(parse(`${RW},writeback=0`).fuse.writeback, false, 'writeback=0 refuses the writeback cache');
  t.equal(parse(`${RW},writeback=1`).fuse.writeback, true);
  t.equal(parse(`${RW},fsync=0`).overlay.volatile, true, 'fsync=0 is volatile');
  t.equal(parse(`${RW},fsync=1`).overlay.volatile, false);
  const to = parse(`${RW},timeout=5`);
  t.same([to.fuse.entryTimeout, to.fuse.attrTimeout], [5, 5], 'timeout= is the entry and attribute timeout');
  t.equal(parse(`${RW},timeout=5,attr_timeout=1`).fuse.attrTimeout, 1, 'attr_timeout= says more than timeout=');
  const ctx = parse(`${RW},context="system_u:object_r:container_file_t:s0:c1,c2",ro`);
  t.equal(ctx.overlay.readonly, true, 'a quoted comma does not end the item');
  t.match(ctx.notes.join('\n'), /context="system_u:object_r:container_file_t:s0:c1,c2": FUSE mounts take no SELinux context option; dropped/);
  for (const o of ['xattr_permissions=0', 'xattr_permissions=1', 'xattr_permissions=2', 'static_nlink', 'noacl', 'noxattrs=0', 'threaded=1', 'fast_ino=1', 'plugins=']) {
    t.doesNotThrow(() => parse(`${RW},${o}`), o);
  }
  t.match(parse(`${RW},static_nlink`).notes.join(''), /exact link counts/, 'what differs from fuse-overlayfs is logged');
});

t.test('malformed engine options: one clear usage error each', async (t) => {
  fails(t, [`${RW},plugins=/x.so`], /plugins=\/x\.so: overlayd has no plugins/);
  fails(t, [`${RW},noxattrs=1`], /noxattrs=1 is not supported/);
  fails(t, [`${RW},fsync=2`], /option fsync takes 0 or 1, not "2"/);
  fails(t, [`${RW},writeback=yes`], /option writeback takes 0 or 1/);
  fails(t, [`${RW},timeout=-1`], /option timeout needs a number of seconds/);
  fails(t, [`${RW},xattr_permissions=3`], /xattr_permissions takes 0, 1 or 2/);
  fails(t, [`${RW},context=`], /option context needs a value/);
  fails(t, [`${RW},context="a:b`], /unbalanced double quote/);
  fails(t, [`${RW},static_nlink=1`], /static_nlink takes no value/);
});

t.test('malformed -o: one clear usage error each', async (t) => {
  fails(t, ['ro'], /missing lowerdir/);
  fails(t, ['upperdir=/u,workdir=/w'], /missing lowerdir/);
  fails(t, ['lowerdir='], /lowerdir: no layer/);
  fails(t, ['lowerdir'], /lowerdir needs a value/);
  fails(t, ['lowerdir=/a::/b'], /empty layer \("::"/);
  fails(t, ['lowerdir=:/a:/b'], /empty layer/);
  fails(t, ['lowerdir=/a:/b:'], /empty layer/);
  fails(t, ['lowerdir=/a:/b,lowerdir=/c:/d'], /lowerdir given more than once/);
  fails(t, ['lowerdir=/a:/b', 'lowerdir=/c:/d'], /lowerdir given more than once/, 'twice across -o strings');
  fails(t, [`${RW},upperdir=/u2`], /upperdir given more than once/);
  fails(t, [`${RW},workdir=/w2`], /workdir given more than once/);
  fails(t, ['lowerdir=/a:/b,upperdir=/u'], /upperdir needs workdir/);
  fails(t, ['lowerdir=/a:/b,workdir=/w'], /workdir needs upperdir/);
  fails(t, ['lowerdir=/a,upperdir=,workdir=/w'], /upperdir: empty path/);
  fails(t, ['lowerdir=/a'], /at least 2 lowerdirs are needed without upperdir/);
  fails(t, [`${RW},bogus`], /unknown mount option "bogus"/);
  fails(t, [`${RW},bogus=1`], /unknown mount option "bogus=1"/);
  fails(t, [`${RW},lowerdir+=/x`], /unknown mount option/);
  fails(t, [`${RW},ro=1`], /unknown mount option "ro=1"/);
  fails(t, [`${RW},userxattr=1`], /userxattr takes no value/);
  fails(t, [`${RW},entry_timeout=soon`], /entry_timeout needs a number/);
  fails(t, [`${RW},attr_timeout=-1`], /attr_timeout needs a number/);
  fails(t, [`${RW},passthrough=some`], /passthrough "some" is not a mode/);
  fails(t, [`${RW},passthrough=all,passthrough=off`], /passthrough given more than once/);
  fails(t, [`${RW},spin=-1`], /spin "-1" is not a number of microseconds/);
  fails(t, [`${RW},spin=1e3`], /spin "1e3" is not a number of microseconds/);
  fails(t, [`${RW},spin=10001`], /spin "10001" is not a number of microseconds \(0 to 10000\)/);
  fails(t, [`${RW},spin`], /option spin needs a value/);
  fails(t, [`${RW},uring=yes`], /uring "yes" is not on or off/);
  fails(t, [`${RW},uring=on,uring=off`], /uring given more than once/);
  fails(t, [`${RW},negative_timeout=`], /negative_timeout needs a number/);
  fails(t, [`${RW},metacopy=on`], /metacopy=on is not supported by overlayd/);
  fails(t, [`${RW},redirect_dir=yes`], /redirect_dir "yes" is not a mode \(on, follow, nofollow, off\)/);
  fails(t, [`${RW},userxattr,redirect_dir=on`], /conflicting options: userxattr,redirect_dir=on/);
  fails(t, [`${RW},redirect_dir=off,userxattr`], /conflicting options: userxattr,redirect_dir=follow/);
  fails(t, [`${RW},index`], /index needs a value/);
  fails(t, [`${RW},transport=carrier-pigeon`], /transport "carrier-pigeon" is not available/);
  fails(t, [`${RW},log_level=loud`], /log_level "loud" is not a level/);
  fails(t, [`${RW},nosymfollow`], /nosymfollow is not supported/);
  fails(t, [`${RW},fsname=`], /fsname needs a value/);
});

t.test('too many lower layers', async (t) => {
  const many = (n: number) => 'lowerdir=' + Array.from({ length: n }, (_, i) => `/l${i}`).join(':');
  t.equal(parse(many(MAX_LOWER_LAYERS)).overlay.lowerdirs.length, MAX_LOWER_LAYERS, `${MAX_LOWER_LAYERS} is the kernel's limit`);
  fails(t, [many(MAX_LOWER_LAYERS + 1)], new RegExp(`${MAX_LOWER_LAYERS + 1} layers, at most ${MAX_LOWER_LAYERS}`));
});

t.test('sloppy parsing (mount -s) ignores unknown options', async (t) => {
  const o = parseMountOptions([`${RW},bogus,other=1`], { cwd: '/', sloppy: true });
  t.same(o.ignored, ['bogus', 'other=1']);
  t.throws(() => parseMountOptions(['lowerdir=/a:/b,lowerdir=/c:/d'], { sloppy: true }), /more than once/, 'malformed is still malformed');
});

t.test("mount(8)'s helper convention", async (t) => {
  const h = parseHelperArgs(['overlayd', '/merged', '-o', RW]);
  t.same(h, { source: 'overlayd', mountpoint: '/merged', options: [RW], sloppy: false, fake: false, verbose: false });
  const all = parseHelperArgs(['src', 'mnt', '-s', '-f', '-n', '-v', '-o', RW, '-t', 'fuse.overlayd']);
  t.ok(all.sloppy && all.fake && all.verbose);
  t.same(parseHelperArgs(['src', 'mnt', '-sfnv', '-o' + RW]).options, [RW], 'grouped flags, -oOPTIONS');
  t.same(parseHelperArgs(['-o', RW, 'src', 'mnt']).mountpoint, 'mnt', 'options first also works');
  t.equal(parseHelperArgs(['src', 'mnt', '-N', '1234', '-o', RW]).namespace, '1234');
  t.equal(parseHelperArgs(['my source', '/m p', '-o', RW]).source, 'my source');
  t.equal(parseHelperArgs(['src', '--', '-weird']).mountpoint, '-weird');
  t.throws(() => parseHelperArgs([]), /usage: overlayd \[SOURCE\] MOUNTPOINT/);
  // containers/storage and moby: `PROG -o OPTS MERGED`; several -o add up.
  t.same(parseHelperArgs(['-o', RW, '-o', 'volatile', '/merged']), { source: '', mountpoint: '/merged', options: [RW, 'volatile'], sloppy: false, fake: false, verbose: false });
  for (const type of ['fuse3.overlayd', 'fuse-overlayfs']) t.doesNotThrow(() => parseHelperArgs(['src', 'mnt', '-o', RW, '-t', type]), `type ${type}`);
  t.throws(() => parseHelperArgs(['mnt']), /usage/, 'one argument without -o');
  t.throws(() => parseHelperArgs(['src']), /usage/);
  t.throws(() => parseHelperArgs(['a', 'b', 'c']), /too many arguments/);
  t.throws(() => parseHelperArgs(['a', 'b', '-o']), /-o needs a value/);
  t.throws(() => parseHelperArgs(['a', 'b', '-x']), /unknown flag -x/);
  t.throws(() => parseHelperArgs(['a', 'b', '-t', 'ext4']), /cannot mount type "ext4"/);
  t.throws(() => parseHelperArgs(['a', '', '-o', RW]), /empty mountpoint/);
});

t.test('mountinfo', async (t) => {
  const text = [
    '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '30 22 0:25 / /tmp rw,nosuid shared:2 - tmpfs tmpfs rw',
    '41 30 0:45 / /tmp/m\\040x rw,relatime - fuse.overlayd my\\040src rw,user_id=0',
    '42 30 0:46 / /tmp/ro ro,relatime - tmpfs t ro',
    '',
  ].join('\n');
  const m = parseMountinfo(text);
  t.equal(m.length, 4);
  t.same({ ...m[2] }, { id: 41, parent: 30, dev: '0:45', mountpoint: '/tmp/m x', mountOptions: 'rw,relatime', fstype: 'fuse.overlayd', source: 'my src', superOptions: 'rw,user_id=0' });
  t.equal(m[0].fstype, 'ext4', 'no optional fields');
  t.equal(mountOf('/tmp/m x/a/b', m)?.id, 41);
  t.equal(mountOf('/tmp/mx', m)?.id, 30, 'a prefix of a name is not a parent');
  t.equal(mountOf('/etc', m)?.id, 22);
  t.equal(mountAt('/tmp/m x', m)?.fstype, 'fuse.overlayd');
  t.equal(mountAt('/tmp/none', m), undefined);
});

t.test('a detached daemon gets the daemon node flags unless its node was started with its own', async (t) => {
  t.same(daemonNodeArgs([]), DAEMON_NODE_FLAGS);
  t.same(daemonNodeArgs(['--inspect']), ['--inspect', ...DAEMON_NODE_FLAGS]);
  t.same(daemonNodeArgs(['--max-semi-space-size=8']), ['--max-semi-space-size=8'], 'the caller\'s value wins');
  t.same(daemonNodeArgs(['--max-semi-space-size=1']), ['--max-semi-space-size=1'], 'not given twice');
});
