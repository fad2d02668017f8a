// One mount per upper and work directory: a second overlayd mount of them (detached or -f, the
// same pair or sharing one of them) fails with one line, exit 2, nothing mounted and nothing
// changed on disk, while the first serves on; a kernel overlay on them is refused likewise.
// The hold dies with the daemon (kill -9 too) and leaves nothing a kernel mount would trip on.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, isMounted, layout, mountKernel, ON_FUSE_NATIVE, optionString, type Layout } from '../lib/mounts';
import { removeTree } from '../lib/stack';
import { snapshot } from '../lib/tree';
import { run } from '../lib/proc';

interface Run { status: number | null; stderr: string }

function cli(args: string[]): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60000 });
  return { status: r.status, stderr: r.stderr };
}

function daemonPid(mp: string): number {
  const r = spawnSync(process.execPath, [BIN, 'status', '--json', mp], { encoding: 'utf8' });
  return (JSON.parse(r.stdout || '[]') as { pid?: number }[])[0]?.pid ?? 0;
}

function alive(pid: number): boolean {
  try { return !/^\S+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

/** A layout with a file below, mounted detached; everything undone in teardown. */
function first(t: Test): Layout {
  const l = layout(1);
  fs.writeFileSync(path.join(l.lowers[0], 'f'), 'lower\n');
  const m2 = path.join(path.dirname(l.merged), 'm2');
  fs.mkdirSync(m2);
  t.teardown(async () => {
    for (const mp of [l.merged, m2]) {
      const pid = daemonPid(mp);
      if (isMounted(mp)) spawnSync('umount', ['-l', mp]);
      for (let i = 0; i < 250 && pid > 0 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
    }
    removeTree(path.dirname(l.merged));
  });
  const r = cli(['mount', '-o', optionString(l), l.merged]);
  t.equal(r.status, 0, `the first mount serves (${r.stderr.trim()})`);
  return l;
}

const second = (l: Layout): Layout => ({ ...l, merged: path.join(path.dirname(l.merged), 'm2') });

function refused(t: Test, l: Layout, r: Run, what: RegExp): void {
  t.equal(r.status, 2, 'exit 2');
  t.match(r.stderr, what, 'says which directory and who has it');
  t.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr.trim()}`);
  t.notOk(isMounted(second(l).merged), 'nothing mounted');
}

t.test('a second overlayd mount of the same upper and work is refused', async (t) => {
  const l = first(t);
  fs.appendFileSync(path.join(l.merged, 'f'), 'copied up\n');
  const before = { u: snapshot(l.upper as string), w: snapshot(l.work as string) };
  const opts = optionString(second(l));
  refused(t, l, cli(['mount', '-o', opts, second(l).merged]), /^overlayd: upperdir ".*\/upper" is in use by the overlayd mount at .*\/merged \(pid \d+\)$/m);
  // -f skips the front door's check: the daemon's own hold refuses it (and logs it to stderr).
  const f = cli(['mount', '-f', '-o', opts, second(l).merged]);
  t.equal(f.status, 2, 'in the foreground: exit 2');
  t.match(f.stderr, /^overlayd: upperdir ".*" is in use by the overlayd mount at/m);
  t.notOk(isMounted(second(l).merged), 'nothing mounted');
  // The helper form, as mount(8) runs it: mount(8)'s code for a failed mount.
  const h = cli(['overlayd', second(l).merged, '-o', opts]);
  t.equal(h.status, 32, 'helper form: exit 32');
  t.same({ u: snapshot(l.upper as string), w: snapshot(l.work as string) }, before, 'upper and work untouched');
  fs.appendFileSync(path.join(l.merged, 'f'), 'again\n');
  t.equal(fs.readFileSync(path.join(l.upper as string, 'f'), 'utf8'), 'lower\ncopied up\nagain\n', 'the first mount serves on');
});

t.test('sharing only the workdir, or only the upperdir, is refused too', async (t) => {
  const l = first(t);
  const base = path.dirname(l.merged);
  fs.mkdirSync(path.join(base, 'u2'));
  fs.mkdirSync(path.join(base, 'w2'));
  refused(t, l, cli(['mount', '-o', optionString({ ...second(l), upper: path.join(base, 'u2') }), second(l).merged]), /workdir ".*\/work" is in use/);
  refused(t, l, cli(['mount', '-o', optionString({ ...second(l), work: path.join(base, 'w2') }), second(l).merged]), /upperdir ".*\/upper" is in use/);
});

t.test('the hold dies with the daemon; a kernel mount of the same layers works after it', async (t) => {
  const l = first(t);
  const pid = daemonPid(l.merged);
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 250 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(cli(['umount', l.merged]).status, 0, 'the dead mount cleared');
  const r = cli(['mount', '-o', optionString(second(l)), second(l).merged]);
  t.equal(r.status, 0, `a new mount of the same upper and work after kill -9 (${r.stderr.trim()})`);
  t.equal(cli(['umount', second(l).merged]).status, 0);
  t.same(fs.readdirSync(l.work as string), ['work'], 'workdir holds only what the kernel expects');
  const k = mountKernel(second(l));
  t.teardown(() => k.unmount());
  t.equal(fs.readFileSync(path.join(second(l).merged, 'f'), 'utf8'), 'lower\n', 'the kernel mounts the same layers');
});

t.test('upper and work of a live kernel overlay are refused', async (t) => {
  const l = layout(1);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  const k = mountKernel(l);
  t.teardown(() => k.unmount());
  const m2 = path.join(path.dirname(l.merged), 'm2');
  fs.mkdirSync(m2);
  const r = cli(['mount', '-o', optionString({ ...l, merged: m2 }), m2]);
  refused(t, { ...l, merged: l.merged }, r, /upperdir ".*" is in use by the kernel overlay mounted at .*\/merged/);
  t.notOk(isMounted(m2), 'nothing mounted at m2');
});

// The lock is the CLI's, the same on both transports; the test stops the daemon, and a stopped
// libfuse daemon also holds up this test's own open and unmount steps on fuse-native.
const stopSkip = ON_FUSE_NATIVE ? 'a stopped fuse-native daemon blocks the test\'s own steps' : false;

t.test('an unmount then a mount of the same layers at once (as engines do) waits for the leaving daemon', { skip: stopSkip }, async (t) => {
  const l = first(t);
  const pid = daemonPid(l.merged);
  t.ok(pid > 0, 'the first daemon');
  // A file held open keeps the lazily unmounted superblock alive, so the unmount needs nothing
  // of the daemon; stopped, the daemon cannot see its mount go nor let go of its lock: a daemon
  // on its way out, however slow.
  const fd = fs.openSync(path.join(l.merged, 'f'), 'r');
  let open = true;
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ }
    if (open) fs.closeSync(fd);
  });
  t.equal(spawnSync('umount', ['-l', l.merged]).status, 0, 'the engine unmounts');
  t.notOk(isMounted(l.merged), 'the first mount is gone from the mount table');
  const again = run(process.execPath, [BIN, 'mount', '-o', optionString(l), second(l).merged]);
  await new Promise((r) => setTimeout(r, 500));
  t.ok(alive(pid), 'the first daemon is still there, holding its lock');
  process.kill(pid, 'SIGCONT');
  fs.closeSync(fd);
  open = false;
  const r = await again;
  t.equal(r.code, 0, `the next mount serves once the first daemon has gone (${r.stderr.trim()})`);
  t.equal(fs.readFileSync(path.join(second(l).merged, 'f'), 'utf8'), 'lower\n', 'the same layers');
  // The first mount's session let go (a server may serve the second one from the same process).
  const firstRecord = path.join(process.env.OVERLAYD_RUN_DIR as string, `${pid}-1.json`);
  for (let i = 0; i < 250 && fs.existsSync(firstRecord); i++) await new Promise((res) => setTimeout(res, 20));
  t.notOk(fs.existsSync(firstRecord), 'the first mount\'s session ended');
});
