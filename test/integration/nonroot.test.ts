// A user (not root) mounts overlayd: by default on the kernel transport, which mounts through
// fusermount3 (setuid root; it sends back the /dev/fuse fd over _FUSE_COMMFD) and unmounts
// through `fusermount3 -u`. The layers belong to the user, who reads, writes, renames and
// removes through the mount: whiteouts (0/0 character devices, which a user may create since
// Linux 5.8) and opaque directories (user.overlay.opaque: a user cannot write trusted.*, so
// userxattr is required, as the kernel's overlay requires it of unprivileged mounts) land in
// upper as the kernel's overlay, mounted by root with userxattr over a copy, leaves them.
// The user runs as `nobody`; a private /dev/fuse (mode 0666) and /etc/fuse.conf are bound over
// the host's, in the test's own mount namespace only, where the host's would stop a user.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, TRANSPORT, isMounted } from '../lib/mounts';
import { run, type Ran } from '../lib/proc';
import { removeTree } from '../lib/stack';
import { tmpdir } from '../lib/tree';

const USER = 'nobody';
const id = (flag: string): number => Number(spawnSync('id', [flag, USER], { encoding: 'utf8' }).stdout.trim());
const UID = id('-u');
const GID = id('-g');
const OTHER = 4321; // a second user, for allow_other
const FUSERMOUNT = ['/usr/bin/fusermount3', '/bin/fusermount3'].find((p) => fs.existsSync(p));

const skip = process.getuid?.() !== 0 ? 'needs root (to become another user)'
  : FUSERMOUNT === undefined ? 'needs fusermount3 (Debian: fuse3)'
  : !(UID > 0) ? `needs the user ${USER}`
  : TRANSPORT === 'fuse-native' ? 'about the kernel transport (runs in its pass of the suite)'
  : undefined;

/** Binds `file` over `target` for the rest of this test file's mount namespace. */
function bindOver(tt: Test, file: string, target: string): void {
  const r = spawnSync('mount', ['--bind', file, target], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount --bind ${file} ${target}: ${r.stderr}`);
  tt.teardown(() => { spawnSync('umount', ['-l', target]); });
}

const base = tmpdir('overlayd-nonroot-');
t.teardown(() => removeTree(base));
fs.chmodSync(base, 0o755);
/** The user's XDG_RUNTIME_DIR: where its daemons keep their records (see src/cli/registry.ts). */
const xdg = path.join(base, 'xdg');

/**
 * The user's environment: a clean one, as a login would give (no OVERLAYD_TRANSPORT, so the
 * default transport is chosen; no NODE_OPTIONS of tap's, whose hooks write where only root may).
 */
const userEnv = (): string[] => ['env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'HOME=/', 'LC_ALL=C', 'TZ=UTC', `XDG_RUNTIME_DIR=${xdg}`];

/** Runs `sh -c script` as the user, in `cwd`. */
function asUser(script: string, cwd = '/'): Promise<Ran> {
  return run('runuser', ['-u', USER, '--', ...userEnv(), 'sh', '-c', `cd "$1" && ${script}`, 'sh', cwd]);
}

/** Runs bin/overlayd as the user. */
function overlaydAsUser(args: string[]): Promise<Ran> {
  return run('runuser', ['-u', USER, '--', ...userEnv(), process.execPath, BIN, ...args]);
}

interface Layers { root: string; lowers: string[]; upper: string; work: string; merged: string }

/** Two lower layers and empty upper/work/merged under `root`, all the user's. */
function layers(root: string): Layers {
  const l: Layers = { root, lowers: [path.join(root, 'l0'), path.join(root, 'l1')], upper: path.join(root, 'u'), work: path.join(root, 'w'), merged: path.join(root, 'm') };
  const files: Record<string, string> = {
    'l0/top': 'top layer\n', 'l0/dir/a': 'a from l0\n', 'l0/gone': 'to be removed\n', 'l0/mv': 'to be renamed\n',
    'l1/dir/b': 'b from l1\n', 'l1/top': 'hidden by l0\n', 'l1/sub/deep/x': 'x\n', 'l1/sub/y': 'y\n',
    'l1/rod/f': 'in a read-only dir\n', 'l1/rod/sub/g': 'read-only file\n',
  };
  for (const [p, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), data);
  }
  for (const d of [l.upper, l.work, l.merged]) fs.mkdirSync(d, { recursive: true });
  spawnSync('chown', ['-R', `${UID}:${GID}`, root]);
  // Copied up with their modes: the user's daemon must still link copies into them.
  fs.chmodSync(path.join(root, 'l1/rod/sub/g'), 0o444);
  fs.chmodSync(path.join(root, 'l1/rod/sub'), 0o555);
  fs.chmodSync(path.join(root, 'l1/rod'), 0o555);
  return l;
}

const opts = (l: Layers, extra = ''): string => `lowerdir=${l.lowers.join(':')},upperdir=${l.upper},workdir=${l.work},userxattr${extra}`;

/** What the user does through a mount (cwd: the merged dir); prints what it sees. */
const SCRIPT = [
  'cat top dir/a dir/b sub/y',
  'echo new > new && echo more >> top && mv mv moved && rm gone dir/a',
  'rm -r sub && mkdir sub && echo fresh > sub/z',
  'ls -a . dir sub',
  'stat -c "%u:%g %a %F %n" new top moved sub sub/z',
  'cat top moved sub/z',
  'echo appended >> rod/f && chmod 640 rod/sub/g && cat rod/f && stat -c "%a %n" rod rod/f rod/sub rod/sub/g',
].join(' && ');

/**
 * upper as a sorted listing: type, owner, device numbers of whiteouts, and opaque marks. Whiteouts
 * belong to whoever mounted (the kernel makes them with its mounter's credentials): `mounter`.
 */
function upperListing(upper: string, mounter: number): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string): void => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = fs.lstatSync(p);
      const kind = st.isDirectory() ? 'dir' : st.isCharacterDevice() ? `chr ${Math.floor(st.rdev / 256)}:${st.rdev % 256}` : st.isFile() ? `file ${fs.readFileSync(p, 'utf8').trim()}` : 'other';
      let opaque = '';
      if (st.isDirectory()) {
        const g = spawnSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.overlay.opaque', p], { encoding: 'utf8' });
        if (g.status === 0) opaque = ` opaque=${g.stdout}`;
      }
      const owner = st.isCharacterDevice() && st.uid === mounter ? 'mounter' : `${st.uid}:${st.gid}`;
      out.push(`${r}: ${kind} ${(st.mode & 0o7777).toString(8)} ${owner}${opaque}`);
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(upper, '');
  return out;
}

/** Stops whatever a failed test left: the mount (lazily) and its daemon. */
function cleanup(tt: Test, l: Layers): void {
  tt.teardown(async () => {
    if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]);
    const st = await overlaydAsUser(['status', '--json']).catch(() => undefined);
    try {
      for (const e of JSON.parse(st?.stdout ?? '[]') as { mountpoint: string; pid?: number }[]) {
        if (e.mountpoint === l.merged && e.pid) process.kill(e.pid, 'SIGKILL');
      }
    } catch { /* nothing to stop */ }
  });
}

if (skip === undefined) {
  // The user must be able to open /dev/fuse (fusermount3 opens it with the user's credentials);
  // some hosts make it 0600.
  const canOpen = spawnSync('runuser', ['-u', USER, '--', 'test', '-r', '/dev/fuse', '-a', '-w', '/dev/fuse']).status === 0;
  if (!canOpen) {
    const node = path.join(base, 'fuse');
    const r = spawnSync('mknod', ['-m', '666', node, 'c', '10', '229']);
    if (r.status !== 0) throw new Error('mknod of a private /dev/fuse failed');
    bindOver(t, node, '/dev/fuse');
  }
  fs.mkdirSync(xdg, { mode: 0o700 });
  spawnSync('chown', [`${UID}:${GID}`, xdg]);
}

t.test('a user mounts on the kernel transport through fusermount3', { skip }, async (t) => {
  const ours = layers(path.join(base, 'ours'));
  const kern = layers(path.join(base, 'kernel'));
  cleanup(t, ours);
  t.teardown(() => { if (isMounted(kern.merged)) spawnSync('umount', ['-l', kern.merged]); });

  const m = await overlaydAsUser(['mount', '-o', opts(ours), ours.merged]);
  t.equal(m.code, 0, `overlayd mount as ${USER}: ${m.stderr}`);
  t.ok(isMounted(ours.merged), 'mounted');
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((line) => line.split(' ')[4] === ours.merged) ?? '';
  t.match(info, / - fuse\.overlayd overlayd rw,user_id=\d+/, 'a fuse.overlayd mount');
  t.match(info, new RegExp(`user_id=${UID},group_id=${GID}`), 'owned by the user, as fusermount3 mounts it');
  t.match(info.split(' ')[5], /nosuid,nodev/, 'nosuid,nodev, as fusermount3 makes every user mount');

  const st = await overlaydAsUser(['status', ours.merged]);
  t.equal(st.code, 0, `status: ${st.stderr}`);
  t.match(st.stdout, /serving, pid \d+/, 'status finds the user\'s daemon');
  t.match(st.stdout, /transport kernel \(fusermount3\)/, 'the kernel transport, mounted through fusermount3');

  const kr = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', opts(kern), kern.merged], { encoding: 'utf8' });
  t.equal(kr.status, 0, `kernel overlayfs with userxattr: ${kr.stderr}`);

  const a = await asUser(SCRIPT, ours.merged);
  const b = await asUser(SCRIPT, kern.merged);
  t.equal(a.code, 0, `the user's operations through overlayd: ${a.stderr}`);
  t.equal(a.stdout, b.stdout, 'the user sees what kernel overlayfs shows');
  t.equal(a.stderr, b.stderr, 'and the same errors');
  t.match(a.stdout, new RegExp(`${UID}:${GID} 644 regular file new`), 'a new file is the user\'s');
  t.match(a.stdout, /top layer\nmore\nto be renamed\nfresh/, 'copied-up, renamed and new data read back');
  t.match(a.stdout, /in a read-only dir\nappended\n555 rod\n644 rod\/f\n555 rod\/sub\n640 rod\/sub\/g/, 'copy-up into read-only dirs works, their modes kept');

  const up = upperListing(ours.upper, UID);
  t.same(up, upperListing(kern.upper, 0), 'upper holds what kernel overlayfs leaves there (whiteouts are the mounter\'s)');
  t.ok(up.includes('gone: chr 0:0 0 mounter'), 'removing a lower file leaves a 0/0 whiteout, the user\'s');
  t.ok(up.includes(`sub: dir 755 ${UID}:${GID} opaque=y`), 'a dir made over a whiteout is opaque through user.overlay.opaque');

  const u = await overlaydAsUser(['umount', ours.merged]);
  t.equal(u.code, 0, `overlayd umount as ${USER}: ${u.stderr}`);
  t.notOk(isMounted(ours.merged), 'nothing stays mounted');
  const gone = await overlaydAsUser(['status', '--json']);
  t.same(JSON.parse(gone.stdout), [], 'and no daemon is left');
});

t.test('a user mount without userxattr takes it itself, as rootless engines never pass it', { skip }, async (t) => {
  const l = layers(path.join(base, 'implied'));
  cleanup(t, l);
  const m = await overlaydAsUser(['mount', '-o', `${opts(l).replace(',userxattr', '')},log_level=info,log_file=${path.join(l.work, '..', 'implied.log')}`, l.merged]);
  t.equal(m.code, 0, `mounted: ${m.stderr}`);
  const w = await asUser(`mkdir ${l.merged}/newdir && rm -rf ${l.merged}/newdir && echo ok`);
  t.equal(w.code, 0, `writes through it: ${w.stderr}`);
  const u = await overlaydAsUser(['umount', l.merged]);
  t.equal(u.code, 0, `umount: ${u.stderr}`);
  t.match(fs.readFileSync(path.join(l.work, '..', 'implied.log'), 'utf8'), /using userxattr/, 'the choice is logged');
});

t.test('a user mount refuses what needs privilege, in one line, mounting nothing', { skip }, async (t) => {
  const l = layers(path.join(base, 'refused'));
  cleanup(t, l);
  const other = await overlaydAsUser(['mount', '-o', opts(l, ',allow_other'), l.merged]);
  t.equal(other.code, 2, 'allow_other without user_allow_other: usage error');
  t.match(other.stderr, /^overlayd: option allow_other needs user_allow_other in \/etc\/fuse\.conf for a mount by a user \(uid \d+\)[^\n]*\n$/, other.stderr);
  t.notOk(isMounted(l.merged), 'nothing mounted');
  t.same(fs.readdirSync(l.upper), [], 'upper untouched');
});

t.test('with user_allow_other in /etc/fuse.conf, a user\'s allow_other mount serves other users', { skip }, async (t) => {
  const conf = path.join(base, 'fuse.conf');
  fs.writeFileSync(conf, '# private to this test\nuser_allow_other\n');
  bindOver(t, conf, '/etc/fuse.conf');
  const l = layers(path.join(base, 'other'));
  cleanup(t, l);
  const m = await overlaydAsUser(['mount', '-o', opts(l, ',allow_other'), l.merged]);
  t.equal(m.code, 0, `mount with allow_other: ${m.stderr}`);
  const r = await run('setpriv', [`--reuid=${OTHER}`, `--regid=${OTHER}`, '--clear-groups', 'cat', path.join(l.merged, 'top')]);
  t.equal(r.stdout, 'top layer\n', `another user reads through it: ${r.stderr}`);
  const u = await overlaydAsUser(['umount', l.merged]);
  t.equal(u.code, 0, `umount: ${u.stderr}`);
  t.notOk(isMounted(l.merged), 'nothing stays mounted');
});
