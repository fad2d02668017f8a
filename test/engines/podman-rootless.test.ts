// Rootless podman with overlayd as its mount_program, as a user runs it: podman makes a user
// namespace (newuidmap, the user's /etc/subuid range) and runs overlayd in it as that
// namespace's root, mounting with mount(2); --userns=keep-id adds uidmapping=/gidmapping= so
// that the user's files show as the user's inside. Compared with fuse-overlayfs in the same
// roles. The user is `nobody`; each podman runs in a mount namespace of its own where a
// /dev/fuse the user may open (some hosts make it 0600) and a subuid/subgid file giving the
// user a range are bound over the host's, which stay untouched.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, BUSYBOX, FUSE_OVERLAYFS, busyboxRootfs, missing, must, podmanEnv, scratch, STORAGE } from '../lib/engines';

const USER = 'nobody';
const uid = Number(spawnSync('id', ['-u', USER], { encoding: 'utf8' }).stdout.trim());
const sysctl = (p: string): string | undefined => { try { return fs.readFileSync(p, 'utf8').trim(); } catch { return undefined; } };
const skip = missing([['podman', 'podman'], ['runc', 'runc'], ['newuidmap', 'uidmap'], [FUSE_OVERLAYFS, 'fuse-overlayfs'], [BUSYBOX, 'busybox-static']])
  ?? (uid > 0 ? undefined : `needs the user ${USER}`)
  ?? (sysctl('/proc/sys/kernel/unprivileged_userns_clone') === '0' || sysctl('/proc/sys/user/max_user_namespaces') === '0'
    ? 'needs user namespaces for users (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)' : undefined);

const PROGRAMS = { overlayd: BIN, 'fuse-overlayfs': FUSE_OVERLAYFS } as const;
type Program = keyof typeof PROGRAMS;

if (skip === undefined) {
  // A short name: rootless podman hits the conmon wait of MAX_STORAGE_DIR at shorter paths still
  // (each container took 20 s with the storage at /tmp/overlayd-engines-rootless-XXXXXX/fo).
  const dir = scratch(t, 'rl');
  const tar = busyboxRootfs(dir);
  fs.chmodSync(tar, 0o644);
  fs.mkdirSync(path.join(dir, 'etc'));
  fs.writeFileSync(path.join(dir, 'etc/subuid'), `${USER}:100000:65536\n`);
  fs.writeFileSync(path.join(dir, 'etc/subgid'), `${USER}:100000:65536\n`);
  const fuse = path.join(dir, 'etc/fuse');
  spawnSync('mknod', ['-m', '666', fuse, 'c', '10', '229']);
  // Binds the user's view of the host, then becomes the user: only in this command's namespace.
  const wrapper = path.join(dir, 'as-user.sh');
  fs.writeFileSync(wrapper, [
    '#!/bin/sh', 'set -e',
    `mount --bind ${dir}/etc/subuid /etc/subuid`, `mount --bind ${dir}/etc/subgid /etc/subgid`, `mount --bind ${fuse} /dev/fuse`,
    `exec setpriv --reuid ${uid} --regid ${uid} --clear-groups "$@"`, '',
  ].join('\n'), { mode: 0o755 });

  const homes = {} as Record<Program, string>;
  const envs = {} as Record<Program, NodeJS.ProcessEnv>;
  const podman = (p: Program, args: string[]): Promise<string> => must('unshare', ['--mount', '--propagation', 'private', wrapper, 'podman', ...args], envs[p]);
  t.teardown(() => {
    // podman leaves a pause process holding its user namespace; it was started for this suite.
    for (const home of Object.values(homes)) {
      for (const f of ['libpod-tmp/pause.pid', 'run/libpod/tmp/pause.pid']) {
        try { process.kill(Number(fs.readFileSync(path.join(home, f), 'utf8')), 'SIGKILL'); } catch { /* none */ }
      }
    }
  });

  t.before(async () => {
    for (const p of Object.keys(PROGRAMS) as Program[]) {
      const home = homes[p] = path.join(dir, STORAGE[p]);
      envs[p] = { ...podmanEnv(home, PROGRAMS[p]), HOME: home, XDG_RUNTIME_DIR: path.join(home, 'run'), TMPDIR: home };
      fs.mkdirSync(path.join(home, 'run'), { mode: 0o700 });
      spawnSync('chown', ['-R', `${uid}:${uid}`, home]);
      await podman(p, ['import', tar, 'localhost/base']);
    }
  });

  const SCRIPT = 'id -u; cat /etc/motd; stat -c "%u:%g %n" /etc/motd /home/user; echo w > /tmp/w && stat -c "%u:%g %n" /tmp/w; ' +
    'awk \'$5 == "/"\' /proc/self/mountinfo | sed \'s/.* - //\' | cut -d" " -f1';
  for (const userns of [[], ['--userns=keep-id']]) {
    t.test(`rootless podman run ${userns.join(' ') || '(podman\'s user namespace)'}: as with fuse-overlayfs`, async (t) => {
      const out = {} as Record<Program, string>;
      for (const p of Object.keys(PROGRAMS) as Program[]) out[p] = await podman(p, ['run', '--rm', ...userns, 'localhost/base', 'sh', '-c', SCRIPT]);
      const id = userns.length ? String(uid) : '0';
      t.match(out.overlayd, new RegExp(`^${id}\\nhello from the lower layer\\n`), `runs as ${id} and reads the image`);
      t.match(out.overlayd, /\/home\/user\n/, 'the image\'s owners as the container sees them');
      t.match(out.overlayd, /fuse\.overlayd\n$/, 'on overlayd');
      t.equal(out.overlayd.replace('fuse.overlayd', 'FS'), out['fuse-overlayfs'].replace('fuse.fuse-overlayfs', 'FS'), 'what fuse-overlayfs shows');
    });
  }
} else {
  t.test('rootless podman', { skip }, () => undefined);
}
