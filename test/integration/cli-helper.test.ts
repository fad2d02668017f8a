// overlayd under mount(8): scripts/install-helper.sh puts mount.fuse.overlayd and overlayd in
// /sbin; then `mount -t fuse.overlayd`, mount.fuse3's route to `overlayd SOURCE MOUNTPOINT -o`,
// and an /etc/fstab line with `mount /merged` and `umount /merged` must work.
// /sbin and /etc/fstab are never changed on the machine: in this test's private mount namespace,
// /usr/sbin is overlaid (kernel overlayfs, upper in a temp dir) and /etc/fstab is a bind-mounted
// copy, so what the install step and the fstab edit write vanishes with the namespace.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, ROOT, isMounted, layout, optionString, type Layout } from '../lib/mounts';
import { snapshot, tmpdir } from '../lib/tree';
import { listMounts, daemonAlive } from '../../src/cli/registry';
import { escapePath } from '../../src/cli/options';

const INSTALL = path.join(ROOT, 'scripts', 'install-helper.sh');
const SBIN = fs.realpathSync('/sbin');

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, timeout: 60000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Whether some ancestor process lives in another mount namespace (unshare --mount made ours). */
function inPrivateNamespace(): boolean {
  const nsOf = (pid: number | 'self'): string | undefined => { try { return fs.readlinkSync(`/proc/${pid}/ns/mnt`); } catch { return undefined; } };
  const mine = nsOf('self');
  let pid = process.ppid;
  while (pid >= 1) {
    const ns = nsOf(pid);
    if (ns === undefined) return false;
    if (ns !== mine) return true;
    if (pid === 1) return false;
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return false;
}
if (!inPrivateNamespace()) {
  // Overlaying /sbin and /etc/fstab outside a private namespace would change the machine.
  t.fail('run this test in a private mount namespace: unshare --mount --propagation private -- tap ...');
  process.exit(1);
}

function privately(t: Test): void {
  const scratch = tmpdir('overlayd-sbin-');
  for (const d of ['upper', 'work', 'run-mount']) fs.mkdirSync(path.join(scratch, d));
  const undo: string[] = [];
  const mnt = (args: string[], target: string): void => {
    const r = sh('mount', args);
    if (r.status !== 0) throw new Error(`mount ${args.join(' ')}: ${r.stderr}`);
    undo.unshift(target);
  };
  t.teardown(() => {
    for (const m of undo) { if (sh('umount', [m]).status !== 0) sh('umount', ['-l', m]); }
    fs.rmSync(scratch, { recursive: true, force: true });
  });
  mnt(['-t', 'overlay', 'overlay', '-o', `lowerdir=${SBIN},upperdir=${scratch}/upper,workdir=${scratch}/work`, SBIN], SBIN);
  const copy = path.join(scratch, 'fstab');
  if (fs.existsSync('/etc/fstab')) fs.copyFileSync('/etc/fstab', copy); else fs.writeFileSync(copy, '');
  if (fs.existsSync('/etc/fstab')) mnt(['--bind', copy, '/etc/fstab'], '/etc/fstab');
  // libmount's utab (userspace mount options) stays private too.
  if (fs.existsSync('/run/mount')) mnt(['--bind', path.join(scratch, 'run-mount'), '/run/mount'], '/run/mount');
}

privately(t);

function install(t: Test): void {
  const r = sh('bash', [INSTALL]);
  t.equal(r.status, 0, `install-helper.sh: ${r.stderr}`);
}

function withFiles(l: Layout): Layout {
  fs.writeFileSync(path.join(l.lowers[0], 'top'), 'top layer\n');
  fs.writeFileSync(path.join(l.lowers[1], 'low'), 'low layer\n');
  return l;
}

function cleanup(t: Test, mp: string): void {
  t.teardown(async () => {
    const pids = listMounts({ sameNamespace: true }).filter((r) => r.mountpoint === mp).map((r) => r.pid);
    if (isMounted(mp)) sh('umount', [mp]);
    if (isMounted(mp)) sh('umount', ['-l', mp]);
    for (const p of pids) {
      for (let i = 0; i < 250 && daemonAlive(p); i++) await new Promise((r) => setTimeout(r, 20));
      if (daemonAlive(p)) process.kill(p, 'SIGKILL');
    }
  });
}

async function daemonGone(t: Test, mp: string): Promise<void> {
  const deadline = Date.now() + 20000;
  while (listMounts({ sameNamespace: true }).some((r) => r.mountpoint === mp)) {
    if (Date.now() > deadline) { t.fail(`the daemon of ${mp} did not exit`); return; }
    await new Promise((r) => setTimeout(r, 20));
  }
  t.pass('the daemon exited');
}

const mountLine = (mp: string): string => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((x) => x.split(' ')[4] === mp.replace(/ /g, '\\040')) ?? '';

t.test('install-helper.sh installs into /sbin, idempotently, and uninstalls only its own files', async (t) => {
  install(t);
  for (const n of ['mount.fuse.overlayd', 'overlayd']) {
    const p = path.join('/sbin', n);
    t.ok(fs.statSync(p).mode & 0o111, `${p} is executable`);
    t.match(fs.readFileSync(p, 'utf8'), /installed by overlayd scripts\/install-helper\.sh/);
  }
  install(t);
  const v = sh('/sbin/overlayd', ['--version']);
  t.match(v.stdout, /^\d+\.\d+\.\d+\n$/, '/sbin/overlayd runs overlayd');
  // mount(8)'s exit codes (the README): 1 for a bad command line, however bad, 32 for a failed mount.
  for (const helper of ['/sbin/mount.fuse.overlayd', path.join(ROOT, 'scripts', 'mount.fuse.overlayd')]) {
    const none = sh(helper, []);
    t.equal(none.status, 1, `${helper} without arguments: exit 1`);
    t.match(none.stderr, /^overlayd: usage: /, 'and a usage line');
    t.equal(sh(helper, ['/nowhere']).status, 1, `${helper} MOUNTPOINT alone: exit 1`);
    t.equal(sh(helper, ['overlayd', '/nowhere', '-o', 'lowerdir=/nonexistent-overlayd-layer']).status, 32, `${helper}: a mount that fails: exit 32`);
  }
  const other = tmpdir('overlayd-prefix-');
  t.teardown(() => fs.rmSync(other, { recursive: true, force: true }));
  fs.writeFileSync(path.join(other, 'overlayd'), '#!/bin/sh\necho someone else\n');
  const r = sh('bash', [INSTALL, '--prefix', other]);
  t.not(r.status, 0, 'refuses to overwrite a file it did not write');
  t.match(r.stderr, /exists and was not installed by overlayd/);
  t.equal(fs.readFileSync(path.join(other, 'overlayd'), 'utf8'), '#!/bin/sh\necho someone else\n');
  t.equal(sh('bash', [INSTALL, '--uninstall', '--prefix', other]).status, 0);
  t.ok(fs.existsSync(path.join(other, 'overlayd')), 'uninstall leaves a foreign file alone');
  t.notOk(fs.existsSync(path.join(other, 'mount.fuse.overlayd')), 'and removes its own');
});

t.test('install-helper.sh --fuse-overlayfs: overlayd under the name engines look up, never over a real one', async (t) => {
  const dir = tmpdir('overlayd-prefix-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, PATH: `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}` };
  const r = spawnSync('bash', [INSTALL, '--fuse-overlayfs', '--prefix', dir], { encoding: 'utf8', env });
  t.equal(r.status, 0, r.stderr);
  t.same(fs.readdirSync(dir), ['fuse-overlayfs'], 'that name alone');
  t.match(sh(path.join(dir, 'fuse-overlayfs'), ['--version']).stdout, /^\d+\.\d+\.\d+\n$/, 'it runs overlayd');
  const real = ['/usr/bin/fuse-overlayfs', '/bin/fuse-overlayfs'].find((p) => fs.existsSync(p));
  if (real !== undefined) t.match(r.stderr, new RegExp(`now comes before ${real}, which is untouched`), 'says which one PATH finds first');
  t.equal(sh('bash', [INSTALL, '--fuse-overlayfs', '--uninstall', '--prefix', dir]).status, 0);
  t.same(fs.readdirSync(dir), [], 'uninstalled');
  fs.writeFileSync(path.join(dir, 'fuse-overlayfs'), '#!/bin/sh\necho the real one\n');
  const refused = sh('bash', [INSTALL, '--fuse-overlayfs', '--prefix', dir]);
  t.equal(refused.status, 1, 'refuses to replace a fuse-overlayfs it did not write');
  t.match(refused.stderr, /exists and was not installed by overlayd; leaving it alone/);
  t.equal(fs.readFileSync(path.join(dir, 'fuse-overlayfs'), 'utf8'), '#!/bin/sh\necho the real one\n');
});

t.test('mount -t fuse.overlayd runs /sbin/mount.fuse.overlayd; umount(8) unmounts', async (t) => {
  install(t);
  const l = withFiles(layout(2));
  cleanup(t, l.merged);
  // as the issue writes it: lowerdir=/l2:/l1 lists the top layer first
  const r = sh('mount', ['-t', 'fuse.overlayd', 'overlayd', l.merged, '-o', optionString(l)]);
  t.equal(r.status, 0, `mount: ${r.stderr}`);
  t.equal(r.stderr, '');
  t.match(mountLine(l.merged), / - fuse\.overlayd overlayd /);
  t.equal(fs.readFileSync(path.join(l.merged, 'top'), 'utf8'), 'top layer\n', 'serving once mount returns');
  t.same(fs.readdirSync(l.merged).sort(), ['low', 'top']);
  const u = sh('umount', [l.merged]);
  t.equal(u.status, 0, `umount: ${u.stderr}`);
  t.notOk(isMounted(l.merged));
  await daemonGone(t, l.merged);
});

t.test('mount -t fuse.overlayd through mount.fuse3 (no mount.fuse.overlayd): runs `overlayd SOURCE MOUNTPOINT -o`', async (t) => {
  install(t);
  fs.rmSync('/sbin/mount.fuse.overlayd'); // inside this namespace's overlay of /sbin
  t.teardown(() => { sh('bash', [INSTALL]); });
  const l = withFiles(layout(2));
  cleanup(t, l.merged);
  const r = sh('mount', ['-t', 'fuse.overlayd', 'mydata', l.merged, '-o', `${optionString(l)},nofail,_netdev,x-systemd.automount`]);
  t.equal(r.status, 0, `mount: ${r.stderr}`);
  t.match(mountLine(l.merged), / - fuse\.overlayd mydata /, 'the source names the mount');
  t.equal(fs.readFileSync(path.join(l.merged, 'low'), 'utf8'), 'low layer\n');
  const u = sh(process.execPath, [BIN, 'umount', l.merged]);
  t.equal(u.status, 0, u.stderr);
  t.notOk(isMounted(l.merged));
});

t.test('an /etc/fstab line: mount /merged, umount /merged', async (t) => {
  install(t);
  const base = tmpdir('overlayd fstab, odd: ');
  const mk = (n: string): string => { const p = path.join(base, n); fs.mkdirSync(p); return p; };
  const l: Layout = { lowers: [mk('l2'), mk('l 1')], upper: mk('up,per'), work: mk('work:dir'), merged: mk('mer ged') };
  withFiles(l);
  cleanup(t, l.merged);
  // fstab escapes spaces as \040; the kernel's backslash escapes protect , and : inside options.
  const fstabEsc = (s: string): string => s.replace(/\\/g, '\\134').replace(/ /g, '\\040').replace(/\t/g, '\\011');
  const logFile = path.join(base, 'overlayd.log');
  const line = `overlayd ${fstabEsc(l.merged)} fuse.overlayd ${fstabEsc(`defaults,nofail,noauto,_netdev,x-systemd.requires-mounts-for=/tmp,${optionString(l)},log_file=${escapePath(logFile)},log_level=info`)} 0 0`;
  const original = fs.readFileSync('/etc/fstab', 'utf8');
  t.teardown(() => fs.writeFileSync('/etc/fstab', original));
  fs.writeFileSync('/etc/fstab', original + (original.endsWith('\n') || original === '' ? '' : '\n') + line + '\n');
  const m = sh('mount', [l.merged]);
  t.equal(m.status, 0, `mount ${l.merged}: ${m.stderr}`);
  t.equal(fs.readFileSync(path.join(l.merged, 'top'), 'utf8'), 'top layer\n');
  fs.writeFileSync(path.join(l.merged, 'new'), 'written');
  t.equal(fs.readFileSync(path.join(l.upper as string, 'new'), 'utf8'), 'written', 'writes land in upperdir');
  const [rec] = listMounts({ sameNamespace: true }).filter((r) => r.mountpoint === l.merged);
  t.same(rec?.lowerdirs, l.lowers, 'layers as written in fstab');
  t.equal(rec?.logLevel, 'info');
  const u = sh('umount', [l.merged]);
  t.equal(u.status, 0, `umount ${l.merged}: ${u.stderr}`);
  t.notOk(isMounted(l.merged));
  await daemonGone(t, l.merged);
  t.match(fs.readFileSync(logFile, 'utf8'), /"msg":"mounted"/, 'log_file= and log_level= from fstab');
  fs.writeFileSync('/etc/fstab', original);
  t.equal(fs.readFileSync('/etc/fstab', 'utf8'), original, 'fstab entry removed');
});

t.test('mount -t fuse.overlayd -o ro, and mount -f (fake)', async (t) => {
  install(t);
  const l = withFiles(layout(2));
  cleanup(t, l.merged);
  const f = sh('mount', ['-f', '-t', 'fuse.overlayd', 'overlayd', l.merged, '-o', optionString(l)]);
  t.equal(f.status, 0, `mount -f: ${f.stderr}`);
  t.notOk(isMounted(l.merged), 'mount -f mounts nothing');
  const r = sh('mount', ['-t', 'fuse.overlayd', 'overlayd', l.merged, '-o', `ro,${optionString(l)}`]);
  t.equal(r.status, 0, r.stderr);
  t.match(mountLine(l.merged).split(' ')[5], /^ro\b/, 'read-only mount');
  t.throws(() => fs.writeFileSync(path.join(l.merged, 'x'), 'x'), { code: 'EROFS' });
  t.equal(sh('umount', [l.merged]).status, 0);
  await daemonGone(t, l.merged);
});

t.test('bad input through mount -t: mount(8) exit 32, one line, nothing mounted or changed', async (t) => {
  install(t);
  const l = withFiles(layout(2));
  const base = path.dirname(l.merged);
  cleanup(t, l.merged);
  const cases: [string, string[], RegExp][] = [
    ['missing lower layer', ['-o', `lowerdir=${base}/nope:${l.lowers[1]},upperdir=${l.upper},workdir=${l.work}`], /lowerdir ".*\/nope" does not exist/],
    ['unknown option', ['-o', `${optionString(l)},frobnicate`], /unknown mount option "frobnicate"/],
    ['no lowerdir', ['-o', `upperdir=${l.upper},workdir=${l.work}`], /missing lowerdir= option/],
    ['no options', [], /missing lowerdir= option/],
    ['lowerdir twice', ['-o', `lowerdir=${l.lowers[0]},${optionString(l)}`], /lowerdir given more than once/],
    ['workdir inside upperdir', ['-o', `lowerdir=${l.lowers.join(':')},upperdir=${l.upper},workdir=${l.upper}/w`], /workdir ".*" does not exist|must be separate subtrees/],
  ];
  fs.mkdirSync(path.join(l.upper as string, 'w'));
  for (const [name, args, re] of cases) {
    const before = snapshot(base, { xattrs: true, mtime: true });
    const r = sh('mount', ['-t', 'fuse.overlayd', 'overlayd', l.merged, ...args]);
    t.equal(r.status, 32, `${name}: exit 32`);
    const lines = r.stderr.split('\n').filter((x) => x !== '');
    t.equal(lines.length, 1, `${name}: one line (${r.stderr})`);
    t.match(lines[0] ?? '', re, name);
    t.notOk(isMounted(l.merged), `${name}: nothing mounted`);
    t.same(snapshot(base, { xattrs: true, mtime: true }), before, `${name}: nothing changed`);
  }
  const missing = sh('mount', ['-t', 'fuse.overlayd', 'overlayd', path.join(base, 'nope'), '-o', optionString(l)]);
  t.not(missing.status, 0, 'missing mountpoint');
  t.match(missing.stderr, /does not exist/);
  t.same(listMounts({ sameNamespace: true }), [], 'no daemon started');
});
