// Docker (Debian's docker.io, dockerd 20.10) with its fuse-overlayfs storage driver, run with
// overlayd as the `fuse-overlayfs` on its PATH: a dockerd of its own (data-root, exec-root,
// pidfile, socket in a scratch directory, no bridge, no iptables), started and stopped here.
// import a busybox rootfs, run as root and --user 1000, build offline (the classic builder),
// commit, save: the layers hold the whiteouts and modes the steps made.
import t from 'tap';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, BUSYBOX, busyboxRootfs, layerEntries, missing, must, scratch } from '../lib/engines';
import { run } from '../lib/proc';

const DOCKER = '/usr/bin/docker'; // Debian's client, matching its dockerd (another may come first on PATH)
const skip = missing([['dockerd', 'docker.io'], [DOCKER, 'docker.io'], ['containerd', 'containerd'], ['runc', 'runc'], [BUSYBOX, 'busybox-static']]);

t.test('dockerd --storage-driver fuse-overlayfs with overlayd as fuse-overlayfs', { skip }, async (t) => {
  const dir = scratch(t, 'docker');
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(BIN, path.join(bin, 'fuse-overlayfs'));
  const sock = path.join(dir, 'docker.sock');
  const pidfile = path.join(dir, 'docker.pid');
  const log = fs.openSync(path.join(dir, 'dockerd.log'), 'a');
  const dockerd = spawn('dockerd', ['--storage-driver', 'fuse-overlayfs', '--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'),
    '--pidfile', pidfile, '-H', `unix://${sock}`, '--bridge', 'none', '--iptables=false', '--ip6tables=false'], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const exited = new Promise<void>((resolve) => dockerd.on('exit', () => resolve()));
  // Stopped as it should be (it unmounts its layers), before the scratch directory goes.
  t.teardown(async () => {
    if (dockerd.exitCode === null) {
      dockerd.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20000))]);
      if (dockerd.exitCode === null) dockerd.kill('SIGKILL');
    }
  });
  const docker = (args: string[]): Promise<string> => must(DOCKER, ['-H', `unix://${sock}`, ...args], { DOCKER_BUILDKIT: '0' });
  for (let i = 0; i < 300; i++) { // up to a minute: dockerd starts its own containerd first
    if ((await run(DOCKER, ['-H', `unix://${sock}`, 'info'])).code === 0) break;
    if (dockerd.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const info = await docker(['info', '--format', '{{.Driver}}']).catch((err: Error) => { throw new Error(`dockerd did not come up: ${err.message}\n${fs.readFileSync(path.join(dir, 'dockerd.log'), 'utf8').slice(-3000)}`); });
  t.equal(info.trim(), 'fuse-overlayfs', 'the fuse-overlayfs driver');

  await docker(['import', busyboxRootfs(dir), 'base']);
  const script = 'id -u; cat /etc/motd; echo w > /tmp/w && cat /tmp/w; touch /etc/nope 2>&1; awk \'$5 == "/"\' /proc/self/mountinfo | sed \'s/.* - //\' | cut -d" " -f1';
  t.equal(await docker(['run', '--rm', '--network', 'none', 'base', 'sh', '-c', script]),
    '0\nhello from the lower layer\nw\nfuse.overlayd\n', 'root runs on an overlayd root');
  t.equal(await docker(['run', '--rm', '--network', 'none', '--user', '1000', 'base', 'sh', '-c', script]),
    '1000\nhello from the lower layer\nw\ntouch: /etc/nope: Permission denied\nfuse.overlayd\n', 'uid 1000 too, under normal permissions');

  const ctx = path.join(dir, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), [
    'FROM base',
    'RUN mkdir /data && echo one > /data/a && echo two > /data/b',
    'RUN rm /etc/motd /data/b /etc/keep/a && echo more >> /etc/group',
    'RUN chmod 0700 /data && chmod 4755 /bin/busybox',
    '',
  ].join('\n'));
  await docker(['build', '--network', 'none', '-t', 'built', ctx]);
  t.equal(await docker(['run', '--rm', '--network', 'none', 'built', 'sh', '-c', 'ls /data; ls /etc/keep; stat -c %a /data /bin/busybox; ls /etc/motd 2>&1; true']),
    'a\nb\n700\n4755\nls: /etc/motd: No such file or directory\n', 'the built image');

  await docker(['run', '--name', 'changed', '--network', 'none', 'built', 'sh', '-c', 'echo changed > /data/a; rm /etc/keep/b']);
  t.equal((await docker(['diff', 'changed'])).split('\n').sort().join('\n'), '\nC /data\nC /data/a\nC /etc\nC /etc/keep\nD /etc/keep/b', 'docker diff');
  await docker(['commit', 'changed', 'committed']);
  await docker(['rm', 'changed']);
  const saved = path.join(dir, 'committed.tar');
  await docker(['save', '-o', saved, 'committed']);
  const layers = await layerEntries(saved);
  t.equal(layers.length, 5, 'the base, three build steps, the commit');
  const names = layers.map((l) => l.map((e) => e.name));
  t.same(names[2], ['data', 'data/.wh.b', 'etc', 'etc/.wh.motd', 'etc/group', 'etc/keep', 'etc/keep/.wh.a'], 'step 2: whiteouts and a copy-up');
  t.same(layers[3].filter((e) => e.name !== 'data' && e.name !== 'bin').map((e) => [e.name, e.mode]), [['bin/busybox', '0o104755']], 'step 3: the setuid copy-up');
  t.same(names[4], ['data', 'data/a', 'etc', 'etc/keep', 'etc/keep/.wh.b'], 'the commit');

  dockerd.kill('SIGTERM');
  await exited;
  t.same(fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dir)), [], 'dockerd unmounted all it mounted');
});
