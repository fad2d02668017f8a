// overlayd as operators run it: `overlayd mount` detaches and returns once the mount serves,
// `status` reports it, SIGTERM/SIGINT unmount (or, when busy, say so and keep serving), a killed
// daemon leaves a mount that `overlayd umount` (and umount(8)) clears, logs are JSON lines.
// Runs in a private mount namespace (scripts/test.sh); every mount and daemon is torn down.
import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, TRANSPORT, isMounted, layout, optionString, type Layout } from '../lib/mounts';
import { tmpdir } from '../lib/tree';

interface Run { status: number | null; stdout: string; stderr: string }

function cli(args: string[], opts: { cwd?: string } = {}): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: opts.cwd, timeout: 60000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function until(t: Test, what: string, cond: () => boolean, ms = 20000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) { t.fail(`timed out waiting: ${what}`); return; }
    await new Promise((r) => setTimeout(r, 20));
  }
}

const alive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\S+ \(.*\) [ZX]/.test(stat);
  } catch { return false; }
};

interface StatusJson { mountpoint: string; source: string; state: string; pid?: number; uptimeSeconds?: number; lowerdirs?: string[]; upperdir?: string; workdir?: string; counters?: Record<string, number> }

function status(mp?: string): StatusJson[] {
  const r = cli(['status', '--json', ...(mp ? [mp] : [])]);
  return r.stdout.trim() === '' ? [] : (JSON.parse(r.stdout) as StatusJson[]);
}

/** Always undone: whatever a test leaves mounted or running goes. */
function cleanup(t: Test, mp: string, extraPids: () => number[] = () => []): void {
  t.teardown(async () => {
    const pids = [...status(mp).map((s) => s.pid ?? 0).filter((p) => p > 0), ...extraPids()];
    if (isMounted(mp)) spawnSync('umount', [mp]);
    if (isMounted(mp)) spawnSync('umount', ['-l', mp]);
    for (const p of pids) {
      for (let i = 0; i < 250 && alive(p); i++) await new Promise((r) => setTimeout(r, 20));
      if (alive(p)) process.kill(p, 'SIGKILL');
    }
  });
}

/** A process whose working directory is inside `dir`: the mount is busy while it lives. */
async function hold(t: Test, dir: string): Promise<ChildProcess> {
  const holder = spawn('sleep', ['600'], { cwd: dir, stdio: 'ignore' });
  t.teardown(() => { holder.kill('SIGKILL'); });
  await new Promise((resolve, reject) => { holder.once('spawn', resolve); holder.once('error', reject); });
  return holder;
}

function withFiles(l: Layout): Layout {
  fs.writeFileSync(path.join(l.lowers[0], 'top'), 'top layer\n');
  fs.writeFileSync(path.join(l.lowers[1], 'low'), 'x'.repeat(10000));
  return l;
}

function mountDetached(t: Test, l: Layout, extra: string[] = [], flags: string[] = []): number {
  const r = cli(['mount', ...flags, '-o', optionString(l, extra), l.merged]);
  cleanup(t, l.merged);
  t.equal(r.status, 0, `overlayd mount exits 0 (${r.stderr.trim()})`);
  t.equal(r.stderr, '', 'and says nothing');
  const s = status(l.merged);
  t.equal(s.length, 1, 'status knows the mount');
  return s[0]?.pid ?? 0;
}

function foreground(l: Layout, extra: string[] = [], flags: string[] = []): { daemon: ChildProcess; stderr: () => string; exit: Promise<number | null> } {
  const daemon = spawn(process.execPath, [BIN, 'mount', '-f', ...flags, '-o', optionString(l, extra), l.merged], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  daemon.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  const exit = new Promise<number | null>((r) => daemon.once('exit', (c) => r(c)));
  return { daemon, stderr: () => err, exit };
}

t.test('mount detaches and returns only once the mount serves', async (t) => {
  const l = withFiles(layout(2));
  const pid = mountDetached(t, l);
  // No waiting: the command returned, so the mount serves now.
  t.equal(fs.readFileSync(path.join(l.merged, 'top'), 'utf8'), 'top layer\n');
  t.ok(isMounted(l.merged));
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((x) => x.split(' ')[4] === l.merged) ?? '';
  t.match(info, / - fuse\.overlayd overlayd /, 'type fuse.overlayd, source overlayd');
  t.notMatch(info.split(' ')[5], /nosuid|nodev/, 'suid and dev allowed, as on kernel overlayfs');
  // Detached: its own session, stdin closed, nothing holding a directory busy.
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  t.equal(Number(fields[3]), pid, 'the daemon leads its own session (setsid)');
  t.equal(fs.readlinkSync(`/proc/${pid}/fd/0`), '/dev/null', 'stdin closed');
  t.equal(fs.readlinkSync(`/proc/${pid}/cwd`), '/', 'the daemon works from /');
  const u = cli(['umount', l.merged]);
  t.equal(u.status, 0, `overlayd umount exits 0 ${u.stderr}`);
  t.notOk(isMounted(l.merged), 'unmounted');
  // The server serving it may serve others: umount waits for the mount's session, not for a process.
  const runDir = process.env.OVERLAYD_RUN_DIR as string;
  t.notOk(fs.readdirSync(runDir).some((n) => n.startsWith(`${pid}-`)), 'and its session has ended when umount returns');
  await until(t, 'the server leaves once idle', () => !alive(pid));
  t.same(status(), [], 'status lists nothing');
  t.equal(cli(['status']).stdout, 'no overlayd mounts\n');
});

t.test('status: layers, pid, uptime, ops served, bytes copied up', async (t) => {
  const l = withFiles(layout(2));
  const pid = mountDetached(t, l, [], ['mydata']);
  fs.appendFileSync(path.join(l.merged, 'low'), 'y'); // copies 10000 bytes up
  fs.readdirSync(l.merged);
  const [s] = status(l.merged);
  t.equal(s.state, 'serving');
  t.equal(s.pid, pid);
  t.equal(s.source, 'mydata', 'SOURCE names the mount');
  t.same(s.lowerdirs, l.lowers);
  t.equal(s.upperdir, l.upper);
  t.equal(s.workdir, l.work);
  t.type(s.uptimeSeconds, 'number');
  t.ok((s.counters?.ops ?? 0) > 0, 'ops served counted');
  t.equal(s.counters?.bytesCopiedUp, 10000, 'bytes copied up counted (fresh: status asks the daemon)');
  t.equal(s.counters?.copyUps, 1);
  const text = cli(['status', l.merged]);
  t.equal(text.status, 0);
  t.match(text.stdout, new RegExp(`^${l.merged}: serving, pid ${pid}, up \\d+s\\n`));
  t.match(text.stdout, /ops served \d+, bytes copied up 10000 \(1 copy-ups\)/);
  t.match(text.stdout, new RegExp(`lower    ${l.lowers[1]}\\n`));
  const other = cli(['status', path.dirname(l.merged)]);
  t.equal(other.status, 1, 'status of something else: not an overlayd mount');
  t.match(other.stderr, /is not an overlayd mount/);
  t.equal(cli(['umount', l.merged]).status, 0);
});

t.test('SIGTERM and SIGINT unmount cleanly and exit 0', async (t) => {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    const l = withFiles(layout(2));
    const d = foreground(l);
    cleanup(t, l.merged, () => (d.daemon.pid ? [d.daemon.pid] : []));
    await until(t, 'mounted', () => isMounted(l.merged));
    t.equal(fs.readFileSync(path.join(l.merged, 'top'), 'utf8'), 'top layer\n');
    d.daemon.kill(sig);
    t.equal(await d.exit, 0, `${sig}: exit 0`);
    t.notOk(isMounted(l.merged), `${sig}: unmounted`);
    t.equal(d.stderr(), '', `${sig}: nothing on stderr at the default level`);
  }
});

t.test('busy at SIGTERM: says so, keeps serving, unmounts once free', async (t) => {
  const l = withFiles(layout(2));
  const d = foreground(l);
  cleanup(t, l.merged, () => (d.daemon.pid ? [d.daemon.pid] : []));
  await until(t, 'mounted', () => isMounted(l.merged));
  const holder = await hold(t, l.merged);
  d.daemon.kill('SIGTERM');
  await until(t, 'the daemon says it is busy', () => /busy/.test(d.stderr()));
  t.match(d.stderr(), new RegExp(`overlayd: cannot unmount ${l.merged}: it is busy .*still serving`));
  t.ok(isMounted(l.merged), 'still mounted');
  t.equal(d.daemon.exitCode, null, 'still running');
  t.equal(fs.readFileSync(path.join(l.merged, 'top'), 'utf8'), 'top layer\n', 'still serving');
  const u = cli(['umount', l.merged]);
  t.equal(u.status, 1, 'overlayd umount refuses a busy mount');
  t.match(u.stderr, /is busy/);
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  d.daemon.kill('SIGTERM');
  t.equal(await d.exit, 0, 'exit 0 once free');
  t.notOk(isMounted(l.merged));
});

t.test('a killed daemon leaves a dead mount that overlayd umount clears', async (t) => {
  const l = withFiles(layout(2));
  const pid = mountDetached(t, l);
  process.kill(pid, 'SIGKILL');
  await until(t, 'the daemon is gone', () => !alive(pid));
  t.ok(isMounted(l.merged), 'the mount outlives its daemon');
  let code = '';
  try { fs.statSync(l.merged); } catch (err) { code = (err as NodeJS.ErrnoException).code ?? ''; }
  t.match(code, /^(ENOTCONN|ECONNABORTED)$/, 'and is dead');
  const st = cli(['status', l.merged]);
  t.equal(st.status, 3, 'status of a dead mount exits 3');
  t.match(st.stdout, new RegExp(`${l.merged}: dead \\(no daemon serves it; clear it with: overlayd umount ${l.merged}\\)`));
  const again = cli(['mount', '-o', optionString(l), l.merged]);
  t.not(again.status, 0, 'mounting over it fails');
  t.match(again.stderr, /is a dead overlayd mount .* overlayd umount/);
  const u = cli(['umount', l.merged]);
  t.equal(u.status, 0, `overlayd umount clears it ${u.stderr}`);
  t.notOk(isMounted(l.merged));
  t.equal(fs.readFileSync(path.join(l.merged, '..', 'l0', 'top'), 'utf8'), 'top layer\n');
  // and it mounts again
  mountDetached(t, l);
  t.equal(fs.readFileSync(path.join(l.merged, 'top'), 'utf8'), 'top layer\n');
  t.equal(cli(['umount', l.merged]).status, 0);
});

t.test('status asks the mount, not the record: a daemon with another OVERLAYD_RUN_DIR serves', async (t) => {
  const l = withFiles(layout(2));
  const runDir = tmpdir('overlayd-run-');
  t.teardown(() => fs.rmSync(runDir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [BIN, 'mount', '-o', optionString(l), l.merged], { encoding: 'utf8', env: { ...process.env, OVERLAYD_RUN_DIR: runDir } });
  t.equal(r.status, 0, `mounted with OVERLAYD_RUN_DIR=${runDir} (${r.stderr.trim()})`);
  // One record per mount, PID-SEQ.json (PID: the server, or a daemon of its own).
  const pid = Number(/^(\d+)-\d+\.json$/.exec(fs.readdirSync(runDir).find((n) => /^\d+-\d+\.json$/.test(n)) ?? '')?.[1] ?? 0);
  cleanup(t, l.merged, () => [pid]);
  const [s] = status(l.merged);
  t.equal(s?.state, 'serving', 'serving, from another run dir');
  t.equal(s?.pid, pid, 'its daemon found');
  t.same(s?.lowerdirs, l.lowers, 'with its record');
  const text = cli(['status', l.merged]);
  t.equal(text.status, 0, 'status MERGED exits 0');
  t.match(text.stdout, new RegExp(`^${l.merged}: serving, pid ${pid}`));
  const holder = await hold(t, l.merged);
  const busy = cli(['umount', l.merged]);
  t.equal(busy.status, 1, 'umount while busy: exit 1');
  t.match(busy.stderr, /is busy/, 'says busy (not "its daemon is gone")');
  t.ok(isMounted(l.merged) && alive(pid), 'still mounted and served');
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  process.kill(pid, 'SIGKILL');
  await until(t, 'the daemon is gone', () => !alive(pid));
  const dead = cli(['status', l.merged]);
  t.equal(dead.status, 3, 'killed: dead, exit 3');
  t.match(dead.stdout, /: dead \(no daemon serves it/);
  t.equal(cli(['umount', l.merged]).status, 0, 'cleared');
});

t.test('a killed daemon whose mount is still in use: overlayd umount detaches it', async (t) => {
  const l = withFiles(layout(2));
  const pid = mountDetached(t, l);
  await hold(t, l.merged);
  process.kill(pid, 'SIGKILL');
  await until(t, 'the daemon is gone', () => !alive(pid));
  const u = cli(['umount', l.merged]);
  t.equal(u.status, 0, 'cleared');
  t.match(u.stderr, /detached: its daemon is gone and a process still uses it/);
  t.notOk(isMounted(l.merged));
});

t.test('umount(8) clears a dead mount too', async (t) => {
  const l = withFiles(layout(2));
  const pid = mountDetached(t, l);
  process.kill(pid, 'SIGKILL');
  await until(t, 'the daemon is gone', () => !alive(pid));
  t.equal(spawnSync('umount', [l.merged]).status, 0);
  t.notOk(isMounted(l.merged));
  t.same(status(), [], 'nothing left in status');
});

t.test('overlayd umount: --force, and refusals', async (t) => {
  const l = withFiles(layout(2));
  mountDetached(t, l);
  const f = cli(['umount', '--force', l.merged]);
  t.equal(f.status, 0, '--force unmounts');
  t.notOk(isMounted(l.merged));
  const notm = cli(['umount', l.merged]);
  t.equal(notm.status, 1);
  t.match(notm.stderr, /is not mounted/);
  const missing = cli(['umount', path.join(l.merged, 'nope')]);
  t.match(missing.stderr, /does not exist/);
  const tmp = tmpdir();
  t.equal(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', tmp]).status, 0);
  t.teardown(() => { spawnSync('umount', [tmp]); });
  const other = cli(['umount', tmp]);
  t.equal(other.status, 1, 'refuses what overlayd did not mount');
  t.match(other.stderr, /is not an overlayd mount \(it is tmpfs\); use umount\(8\)/);
  t.ok(isMounted(tmp), 'and leaves it mounted');
});

t.test('logs: JSON lines; debug shows each FUSE op with result and duration; warn by default', async (t) => {
  const base = tmpdir();
  const l = withFiles(layout(2));
  const dbg = path.join(base, 'debug.log');
  mountDetached(t, l, [], ['--log-level', 'debug', '--log-file', dbg]);
  fs.statSync(path.join(l.merged, 'top'));
  t.throws(() => fs.statSync(path.join(l.merged, 'absent')), { code: 'ENOENT' });
  fs.mkdirSync(path.join(l.merged, 'a dir'));
  fs.writeFileSync(path.join(l.merged, 'a dir', 'old näme'), 'twelve bytes');
  fs.renameSync(path.join(l.merged, 'a dir', 'old näme'), path.join(l.merged, 'new name'));
  fs.readFileSync(path.join(l.merged, 'top'));
  t.equal(cli(['umount', l.merged]).status, 0);
  const lines = fs.readFileSync(dbg, 'utf8').trim().split('\n').map((x) => JSON.parse(x) as Record<string, unknown>);
  t.ok(lines.every((x) => typeof x.level === 'number' && typeof x.time === 'string' && x.name === 'overlayd'), 'every line is a pino JSON object');
  t.ok(lines.some((x) => x.msg === 'mounted' && x.level === 30), 'mounted, at info');
  const ops = lines.filter((x) => x.msg === 'fuse op');
  // libfuse 2 answers a name with getattr; the FUSE protocol itself with lookup.
  const named = (x: { op?: unknown }): boolean => x.op === 'getattr' || x.op === 'lookup';
  t.ok(ops.some((x) => named(x) && x.result === 0 && typeof x.us === 'number'), 'a getattr or lookup with its result and duration');
  t.ok(ops.some((x) => named(x) && x.result === -2), 'a failed lookup with -ENOENT');
  // The op's names and main arguments: the FUSE protocol's fields on the kernel transport,
  // libfuse 2's paths and arguments on fuse-native.
  const said = (x: Record<string, unknown>, ...parts: string[]): boolean => parts.every((p) => JSON.stringify(x).includes(p));
  const renamed = ops.filter((x) => typeof x.op === 'string' && /^rename2?$/.test(x.op));
  t.ok(renamed.some((x) => said(x, 'old näme', 'new name')), `a rename shows both names: ${JSON.stringify(renamed)}`);
  t.ok(ops.some((x) => x.op === 'mkdir' && said(x, 'a dir')), 'a mkdir its name');
  // A lower file's read goes through the daemon on both (passthrough serves upper files).
  t.ok(ops.some((x) => x.op === 'read' && (TRANSPORT === 'fuse-native' ? said(x, '/top') : x.offset === 0 && typeof x.size === 'number')), 'a read its file, offset and size');

  const quiet = path.join(base, 'quiet.log');
  const l2 = withFiles(layout(2));
  mountDetached(t, l2, [], ['--log-file', quiet]);
  fs.readFileSync(path.join(l2.merged, 'top'));
  t.equal(cli(['umount', l2.merged]).status, 0);
  const q = fs.existsSync(quiet) ? fs.readFileSync(quiet, 'utf8') : '';
  t.equal(q, '', 'nothing logged at the default level (warn) when all is well');

  // log_level= and log_file= in -o: how an fstab line sets them
  const viaO = path.join(base, 'via-o.log');
  const l3 = withFiles(layout(2));
  mountDetached(t, l3, [`log_level=info`, `log_file=${viaO}`]);
  t.equal(cli(['umount', l3.merged]).status, 0);
  t.match(fs.readFileSync(viaO, 'utf8'), /"msg":"mounted"/);
});

t.test('errors the caller cannot see are logged at error level (a failed copy-up)', async (t) => {
  const base = tmpdir();
  const fsdir = path.join(base, 'upperfs');
  fs.mkdirSync(fsdir);
  t.equal(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', fsdir]).status, 0);
  t.teardown(() => { spawnSync('umount', ['-l', fsdir]); });
  const l = withFiles(layout(2));
  l.upper = path.join(fsdir, 'upper');
  l.work = path.join(fsdir, 'work');
  fs.mkdirSync(l.upper);
  fs.mkdirSync(l.work);
  const logf = path.join(base, 'err.log');
  mountDetached(t, l, [], ['--log-file', logf]);
  // The upper file system goes read-only under the daemon: the copy-up fails.
  t.equal(spawnSync('mount', ['-o', 'remount,ro', fsdir]).status, 0);
  t.throws(() => fs.appendFileSync(path.join(l.merged, 'low'), 'y'), 'the write fails');
  t.equal(cli(['umount', l.merged]).status, 0);
  const lines = fs.readFileSync(logf, 'utf8').trim().split('\n').map((x) => JSON.parse(x) as Record<string, unknown>);
  t.ok(lines.some((x) => x.level === 50 && x.msg === 'copy-up failed'), 'copy-up failed, at error level');
});

t.test('relative layer paths resolve against the working directory, as mount does', async (t) => {
  const l = withFiles(layout(2));
  const base = path.dirname(l.merged);
  const rel = (p: string): string => path.relative(base, p);
  const r = cli(['mount', '-o', `lowerdir=${rel(l.lowers[0])}:./${rel(l.lowers[1])},upperdir=${rel(l.upper as string)},workdir=${rel(l.work as string)}`, 'merged'], { cwd: base });
  cleanup(t, l.merged);
  t.equal(r.status, 0, r.stderr);
  const [s] = status(l.merged);
  t.same(s.lowerdirs, l.lowers, 'absolute in status');
  t.equal(fs.readFileSync(path.join(l.merged, 'top'), 'utf8'), 'top layer\n');
  t.equal(cli(['umount', l.merged]).status, 0);
});

t.test('paths with spaces, colons and commas', async (t) => {
  const base = tmpdir('overlayd test, with: odd names ');
  const mk = (n: string): string => { const p = path.join(base, n); fs.mkdirSync(p); return p; };
  const l: Layout = { lowers: [mk('low: one'), mk('low,two')], upper: mk('up per'), work: mk('wo:rk,'), merged: mk('mer ged') };
  fs.writeFileSync(path.join(l.lowers[1], 'f'), 'odd\n');
  mountDetached(t, l);
  t.equal(fs.readFileSync(path.join(l.merged, 'f'), 'utf8'), 'odd\n');
  fs.writeFileSync(path.join(l.merged, 'new'), 'n');
  t.equal(fs.readFileSync(path.join(l.upper as string, 'new'), 'utf8'), 'n', 'writes land in the upper layer');
  t.same(status(l.merged)[0].lowerdirs, l.lowers);
  t.equal(cli(['umount', l.merged]).status, 0);
  t.notOk(isMounted(l.merged));
});

t.test('mounts over a non-empty directory, as kernel overlayfs does', async (t) => {
  const l = withFiles(layout(2));
  fs.writeFileSync(path.join(l.merged, 'hidden'), 'under the mount');
  mountDetached(t, l);
  t.same(fs.readdirSync(l.merged).sort(), ['low', 'top']);
  t.equal(cli(['umount', l.merged]).status, 0);
  t.equal(fs.readFileSync(path.join(l.merged, 'hidden'), 'utf8'), 'under the mount');
});

t.test('without an upper layer the mount is read-only', async (t) => {
  const l = withFiles(layout(2, false));
  mountDetached(t, l);
  t.throws(() => fs.writeFileSync(path.join(l.merged, 'new'), 'x'), { code: 'EROFS' });
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((x) => x.split(' ')[4] === l.merged) ?? '';
  t.match(info.split(' ')[5], /^ro,/, 'mounted ro');
  t.equal(cli(['umount', l.merged]).status, 0);
});
