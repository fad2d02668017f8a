// The resident server: one process serves every mount of this mount namespace, found through
// the socket in the run dir, started by the first client, gone a moment after its last mount.
// One mount's trouble (a full upper, its layer removed, its connection aborted) leaves the
// others serving; kill -9 of the server leaves dead mounts that `overlayd umount` clears.
// Each test has a run dir, hence a server, of its own.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, CLIENT, ON_FUSE_NATIVE, isMounted, layout, optionString, type Layout } from '../lib/mounts';
import { run, type Ran } from '../lib/proc';
import { tmpfsDir } from '../lib/scratch';
import { tmpdir } from '../lib/tree';

interface Ctx { env: NodeJS.ProcessEnv; runDir: string }

function context(tt: Test): Ctx {
  const runDir = tmpdir('overlayd-run-');
  const ctx = { runDir, env: { OVERLAYD_RUN_DIR: runDir, OVERLAYD_SERVER_IDLE_MS: '300' } };
  tt.teardown(async () => {
    for (const mp of mountsIn(ctx)) await run('umount', ['-l', mp]);
    for (const pid of serversOf(runDir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  });
  return ctx;
}

const node = (ctx: Ctx, args: string[]): Promise<Ran> => run(process.execPath, [BIN, ...args], { env: ctx.env });
const client = (ctx: Ctx, args: string[]): Promise<Ran> => run(CLIENT, args, { env: ctx.env });

/** Pids of the processes serving mounts of this run dir: the `serve` processes started with it. */
function serversOf(runDir: string): number[] {
  const out: number[] = [];
  for (const n of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').split('\0');
      const env = fs.readFileSync(`/proc/${n}/environ`, 'utf8').split('\0');
      if (cmd.includes('serve') && cmd.some((a) => a.endsWith('bin/overlayd')) && env.includes(`OVERLAYD_RUN_DIR=${runDir}`)) out.push(Number(n));
    } catch { /* gone */ }
  }
  return out;
}

const made = new Map<Ctx, string[]>();
function mountsIn(ctx: Ctx): string[] { return (made.get(ctx) ?? []).filter(isMounted); }

async function mount(tt: Test, ctx: Ctx, l: Layout, how: 'client' | 'node' = 'client'): Promise<void> {
  made.set(ctx, [...(made.get(ctx) ?? []), l.merged]);
  const r = how === 'client' ? await client(ctx, ['-o', optionString(l), l.merged]) : await node(ctx, ['mount', '-o', optionString(l), l.merged]);
  tt.same([r.code, r.stderr], [0, ''], `${how}: mounted ${path.basename(path.dirname(l.merged))}`);
}

interface Status { mountpoint: string; state: string; pid?: number }
async function status(ctx: Ctx): Promise<Status[]> {
  return JSON.parse((await node(ctx, ['status', '--json'])).stdout) as Status[];
}

async function until(what: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!what()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

function withFile(l: Layout, name = 'f', text = 'lower\n'): Layout {
  fs.writeFileSync(path.join(l.lowers[0], name), text);
  return l;
}

if (ON_FUSE_NATIVE) {
  t.pass('fuse-native mounts are a daemon each (the server mounts with the kernel transport only)');
} else {
  t.test('one server serves mounts from the C client and the Node CLI, and leaves after the last', async (tt) => {
    const ctx = context(tt);
    const a = withFile(layout(1)), b = withFile(layout(1));
    await mount(tt, ctx, a, 'client');
    await mount(tt, ctx, b, 'node');
    const servers = serversOf(ctx.runDir);
    tt.equal(servers.length, 1, 'one server process');
    const st = await status(ctx);
    const mine = st.filter((s) => s.mountpoint === a.merged || s.mountpoint === b.merged);
    tt.same(mine.map((s) => [s.state, s.pid]), [['serving', servers[0]], ['serving', servers[0]]], 'status: both serving, with the server\'s pid');
    tt.equal(fs.readFileSync(path.join(b.merged, 'f'), 'utf8'), 'lower\n');
    tt.equal((await node(ctx, ['umount', a.merged])).code, 0, 'umount a');
    tt.notOk(isMounted(a.merged), 'a is gone');
    tt.equal(fs.readFileSync(path.join(b.merged, 'f'), 'utf8'), 'lower\n', 'b serves on');
    tt.same(serversOf(ctx.runDir), servers, 'the server stays while b is mounted');
    tt.equal((await client(ctx, ['umount', b.merged])).code, 0, 'umount b (the client runs the Node CLI for it)');
    tt.ok(await until(() => serversOf(ctx.runDir).length === 0), 'the server leaves once idle');
    tt.same(fs.readdirSync(ctx.runDir).filter((n) => !n.endsWith('.lock')), [], 'no socket or record left');
  });

  t.test('the run dir\'s records are written by their daemon alone (0644), its socket and lock are the owner\'s (0600)', async (tt) => {
    const ctx = context(tt);
    const a = withFile(layout(1)), b = withFile(layout(1));
    await mount(tt, ctx, a);
    ctx.env.OVERLAYD_SERVER = '0';
    await mount(tt, ctx, b); // a daemon of its own
    delete ctx.env.OVERLAYD_SERVER;
    await status(ctx); // every record written again, with fresh counters
    const mode = (n: string): string => (fs.statSync(path.join(ctx.runDir, n)).mode & 0o7777).toString(8);
    const names = fs.readdirSync(ctx.runDir).sort();
    tt.same(names.filter((n) => n.endsWith('.json')).map(mode), ['644', '644'], 'the server\'s record and the daemon\'s: 0644');
    tt.same(names.filter((n) => !n.endsWith('.json')).map(mode), ['600', '600'], 'the server\'s socket and lock: 0600');
  });

  t.test('clients racing to start a server: exactly one serves them all', async (tt) => {
    const ctx = context(tt);
    const ls = Array.from({ length: 4 }, () => withFile(layout(1)));
    made.set(ctx, ls.map((l) => l.merged));
    const rs = await Promise.all(ls.map((l, i) => (i % 2 ? node(ctx, ['mount', '-o', optionString(l), l.merged]) : client(ctx, ['-o', optionString(l), l.merged]))));
    tt.same(rs.map((r) => r.code), [0, 0, 0, 0], 'all mounted');
    tt.ok(await until(() => serversOf(ctx.runDir).length === 1), 'one server process left');
    const pids = new Set((await status(ctx)).filter((s) => ls.some((l) => l.merged === s.mountpoint)).map((s) => s.pid));
    tt.same([...pids], serversOf(ctx.runDir), 'it serves all four');
  });

  t.test('a full upper fails that mount\'s writes, not the other mount', async (tt) => {
    const ctx = context(tt);
    const small = tmpfsDir(tt, '1m');
    const a = withFile(layout(1));
    a.upper = path.join(small, 'upper');
    a.work = path.join(small, 'work');
    fs.mkdirSync(a.upper);
    fs.mkdirSync(a.work);
    const b = withFile(layout(1));
    await mount(tt, ctx, a);
    await mount(tt, ctx, b);
    const fill = await run('dd', ['if=/dev/zero', `of=${a.merged}/big`, 'bs=64k', 'count=64', 'conv=fsync']);
    tt.not(fill.code, 0, 'writing 4 MiB to a fails');
    tt.match(fill.stderr, /No space left on device/, 'with ENOSPC');
    const w = await run('dd', ['if=/dev/zero', `of=${b.merged}/big`, 'bs=64k', 'count=64', 'conv=fsync']);
    tt.equal(w.code, 0, 'b writes 4 MiB');
    tt.equal(fs.readFileSync(path.join(a.merged, 'f'), 'utf8'), 'lower\n', 'a still serves reads');
    tt.same((await status(ctx)).filter((s) => s.mountpoint === a.merged || s.mountpoint === b.merged).map((s) => s.state), ['serving', 'serving']);
  });

  t.test('a layer removed under one mount leaves the other serving', async (tt) => {
    const ctx = context(tt);
    const a = withFile(layout(2, false)), b = withFile(layout(1));
    fs.writeFileSync(path.join(a.lowers[1], 'g'), 'g\n');
    await mount(tt, ctx, a);
    await mount(tt, ctx, b);
    const server = serversOf(ctx.runDir);
    fs.rmSync(a.lowers[0], { recursive: true });
    const ls = await run('ls', ['-la', a.merged]);
    tt.ok(ls.code === 0 || /No such file|Input\/output/.test(ls.stderr), `a answers (${ls.code}: ${ls.stderr.trim()})`);
    const cat = await run('cat', [path.join(a.merged, 'f')]);
    tt.not(cat.code, 0, 'a\'s file of the removed layer is gone');
    tt.equal(fs.readFileSync(path.join(b.merged, 'f'), 'utf8'), 'lower\n', 'b serves on');
    tt.same(serversOf(ctx.runDir), server, 'the same server');
  });

  t.test('clients holding files open on one mount use up its share of the server\'s fds, not the other mount\'s', async (tt) => {
    const ctx = context(tt);
    const FILES = 600;
    const a = withFile(layout(1)), b = withFile(layout(1));
    for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(a.lowers[0], `f${i}`), '');
    made.set(ctx, [a.merged, b.merged]);
    // The server inherits the limits of the client that starts it: a small hard limit keeps this quick.
    const r = await run('prlimit', ['--nofile=256:512', CLIENT, '-o', optionString(a), a.merged], { env: ctx.env });
    tt.same([r.code, r.stderr], [0, ''], 'a mounted (starting the server under RLIMIT_NOFILE 256:512)');
    await mount(tt, ctx, b);
    const [pid] = serversOf(ctx.runDir);
    const nofile = /^Max open files\s+(\d+)\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
    tt.same(nofile?.slice(1), ['512', '512'], 'the server raised its soft limit to the hard one');
    const held: number[] = [];
    tt.teardown(() => { for (const fd of held.splice(0)) fs.closeSync(fd); });
    let refused = '';
    for (let i = 0; i < FILES; i++) {
      try {
        held.push(fs.openSync(path.join(a.merged, `f${i}`), 'r'));
      } catch (err) {
        refused = (err as NodeJS.ErrnoException).code ?? String(err);
        break;
      }
    }
    tt.equal(refused, 'EMFILE', `a refuses the next open once its clients hold ${held.length} files`);
    tt.ok(held.length >= 64 && held.length < 256, `a's share (${held.length}) is under half the server's fds`);
    // b: opens (holding some), creates, lists, reads, as if a were another daemon's.
    const inB: number[] = [];
    tt.teardown(() => { for (const fd of inB.splice(0)) fs.closeSync(fd); });
    try {
      for (let i = 0; i < 32; i++) inB.push(fs.openSync(path.join(b.merged, 'f'), 'r'));
      fs.writeFileSync(path.join(b.merged, 'new'), 'written\n');
      tt.same(fs.readdirSync(b.merged).sort(), ['f', 'new'], 'b lists');
      tt.equal(fs.readFileSync(path.join(b.merged, 'new'), 'utf8'), 'written\n', 'b reads what it created');
      tt.pass(`b opened ${inB.length} files and created one while a was out of fds`);
    } catch (err) {
      tt.fail(`b failed while a was out of fds: ${(err as Error).message}`);
    }
    const st = JSON.parse((await node(ctx, ['status', '--json', a.merged])).stdout) as { counters?: { openFiles?: number; openFilesShare?: number } }[];
    tt.same([st[0]?.counters?.openFiles, st[0]?.counters?.openFilesShare], [held.length, held.length], 'status: a holds all of its share');
    for (const fd of held.splice(0)) fs.closeSync(fd);
    tt.equal(fs.readFileSync(path.join(a.merged, `f${FILES - 1}`), 'utf8'), '', 'a opens again once its clients let go');
  });

  t.test('a mount whose log file cannot be made fails alone, with one line; the server serves on', async (tt) => {
    const ctx = context(tt);
    const a = withFile(layout(1)), b = withFile(layout(1));
    await mount(tt, ctx, b);
    const r = await run('timeout', ['20', CLIENT, '-o', optionString(a, ['log_file=/proc/overlayd-x/log/a.log']), a.merged], { env: ctx.env });
    tt.equal(r.code, 1, 'the mount fails');
    tt.match(r.stderr, /^overlayd: cannot open the log file \/proc\/overlayd-x\/log\/a\.log: ENOENT[^\n]*\n$/, 'with one line saying why');
    tt.notOk(isMounted(a.merged), 'nothing mounted');
    tt.equal(fs.readFileSync(path.join(b.merged, 'f'), 'utf8'), 'lower\n', 'b serves on');
    await mount(tt, ctx, a);
    tt.equal(serversOf(ctx.runDir).length, 1, 'and the same server mounts a without the log file');
  });

  t.test('status says so where the server did not refresh the counters it shows', async (tt) => {
    const ctx = context(tt);
    const a = withFile(layout(1)), b = withFile(layout(1));
    await mount(tt, ctx, a);
    await mount(tt, ctx, b);
    const [pid] = serversOf(ctx.runDir);
    type Aged = Status & { counters?: object; countersAgeSeconds?: number };
    const aged = async (): Promise<(number | undefined)[]> => {
      const st = JSON.parse((await node(ctx, ['status', '--json'])).stdout) as Aged[];
      return [a, b].map((l) => { const e = st.find((s) => s.mountpoint === l.merged); return e?.counters ? e.countersAgeSeconds : -1; });
    };
    tt.same(await aged(), [undefined, undefined], 'a serving server: fresh counters, no age');
    // A stopped server answers neither SIGUSR1 nor its mounts (the status probe times out).
    process.kill(pid, 'SIGSTOP');
    tt.teardown(() => { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } });
    await new Promise((r) => setTimeout(r, 1100));
    try {
      const ages = await aged();
      tt.ok(ages.every((x) => typeof x === 'number' && x >= 1), `stopped: both marked stale, with their age (${ages.join(', ')} s)`);
      const text = await node(ctx, ['status', a.merged]);
      tt.match(text.stdout, /counters as of \d+s ago: the daemon did not refresh them/, 'and the text says so');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    tt.same(await aged(), [undefined, undefined], 'continued: fresh again');
  });

  t.test('a mount whose connection is aborted ends alone; overlayd umount clears it', async (tt) => {
    const ctx = context(tt);
    const a = withFile(layout(1)), b = withFile(layout(1));
    await mount(tt, ctx, a);
    await mount(tt, ctx, b);
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === a.merged) as string;
    const minor = line.split(' ')[2].split(':')[1];
    if (!fs.existsSync(`/sys/fs/fuse/connections/${minor}`)) {
      // fusectl, where a connection is aborted, in this test's own mount namespace.
      tt.equal((await run('mount', ['-t', 'fusectl', 'fusectl', '/sys/fs/fuse/connections'])).code, 0, 'fusectl mounted');
      tt.teardown(async () => { await run('umount', ['/sys/fs/fuse/connections']); });
    }
    fs.writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
    const st = await run('stat', [a.merged]);
    tt.match(st.stderr, /Transport endpoint is not connected|Software caused connection abort/, 'a is dead');
    tt.ok(await until(() => !fs.readdirSync(ctx.runDir).includes(`${serversOf(ctx.runDir)[0]}-1.json`)), 'the server lets go of a (its record is gone)');
    tt.equal(fs.readFileSync(path.join(b.merged, 'f'), 'utf8'), 'lower\n', 'b serves on');
    const states = (await status(ctx)).filter((s) => s.mountpoint === a.merged || s.mountpoint === b.merged).map((s) => s.state);
    tt.same(states, ['dead', 'serving']);
    tt.equal((await node(ctx, ['umount', a.merged])).code, 0, 'overlayd umount clears a');
    tt.notOk(isMounted(a.merged));
    tt.ok(isMounted(b.merged), 'b is still mounted');
  });

  t.test('kill -9 of the server: both mounts dead, overlayd umount clears them', async (tt) => {
    const ctx = context(tt);
    const a = withFile(layout(1)), b = withFile(layout(1));
    await mount(tt, ctx, a);
    await mount(tt, ctx, b);
    const [pid] = serversOf(ctx.runDir);
    process.kill(pid, 'SIGKILL');
    tt.ok(await until(() => serversOf(ctx.runDir).length === 0), 'the server is gone');
    tt.same((await status(ctx)).filter((s) => s.mountpoint === a.merged || s.mountpoint === b.merged).map((s) => s.state), ['dead', 'dead']);
    for (const l of [a, b]) {
      const u = await client(ctx, ['umount', l.merged]);
      tt.equal(u.code, 0, `umount ${path.basename(path.dirname(l.merged))}: ${u.stderr.trim()}`);
      tt.notOk(isMounted(l.merged));
    }
    // The next mount starts a new server.
    const c = withFile(layout(1));
    await mount(tt, ctx, c);
    tt.equal(fs.readFileSync(path.join(c.merged, 'f'), 'utf8'), 'lower\n');
    tt.not(serversOf(ctx.runDir)[0], pid, 'a new server');
  });

  t.test('OVERLAYD_SERVER=0: a daemon of its own per mount, as before', async (tt) => {
    const ctx = context(tt);
    ctx.env.OVERLAYD_SERVER = '0';
    const a = withFile(layout(1));
    await mount(tt, ctx, a);
    tt.same(serversOf(ctx.runDir), [], 'no server');
    const [s] = (await status(ctx)).filter((x) => x.mountpoint === a.merged);
    const cmd = fs.readFileSync(`/proc/${s.pid}/cmdline`, 'utf8').split('\0');
    tt.ok(cmd.includes('--foreground'), 'the mount\'s own daemon serves it');
    tt.equal((await node(ctx, ['umount', a.merged])).code, 0);
  });

  t.test('a mount on a mount the server serves goes to a daemon of its own (the server would wait on itself)', async (tt) => {
    const ctx = context(tt);
    const a = withFile(layout(1));
    await mount(tt, ctx, a);
    const inner: Layout = { lowers: [path.join(a.merged, 'l')], upper: path.join(a.merged, 'u'), work: path.join(a.merged, 'w'), merged: path.join(a.merged, 'm') };
    for (const d of [...inner.lowers, inner.upper as string, inner.work as string, inner.merged]) await run('mkdir', [d]);
    await mount(tt, ctx, inner);
    const st = await status(ctx);
    const [outer, nested] = [a.merged, inner.merged].map((mp) => st.find((s) => s.mountpoint === mp)?.pid);
    tt.not(nested, outer, 'served by another process');
    tt.equal((await client(ctx, ['umount', inner.merged])).code, 0);
    tt.equal((await client(ctx, ['umount', a.merged])).code, 0);
  });
}

if (!ON_FUSE_NATIVE) {
  // Cannot be made: ENOTDIR; and ENOENT for every name under /proc, where node's recursive
  // mkdir looped for ever (the server spun, the client waited 15 s for it).
  for (const dir of ['/dev/null/overlayd-run', '/proc/overlayd-x/run']) t.test(`a server that cannot serve from the run dir (${dir}): the mount gets a daemon of its own, at once`, async (tt) => {
    const ctx = context(tt);
    ctx.env.OVERLAYD_RUN_DIR = dir;
    const t0 = Date.now();
    const serve = await run('timeout', ['10', process.execPath, BIN, 'serve'], { env: ctx.env });
    tt.equal(serve.code, 1, `overlayd serve exits 1 in ${Date.now() - t0} ms`);
    tt.match(serve.stderr, new RegExp(`^overlayd: cannot make the run directory ${dir} \\(OVERLAYD_RUN_DIR\\): E[A-Z]+\n$`), 'with one line saying why');
    for (const how of ['client', 'node'] as const) {
      const l = withFile(layout(1));
      const t0 = Date.now();
      await mount(tt, ctx, l, how);
      tt.ok(Date.now() - t0 < 5000, `${how}: without waiting for a server (${Date.now() - t0} ms)`);
      tt.equal(fs.readFileSync(path.join(l.merged, 'f'), 'utf8'), 'lower\n');
      const daemon = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => {
        try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(l.merged); } catch { return false; }
      });
      tt.ok(daemon !== undefined && fs.readFileSync(`/proc/${daemon}/cmdline`, 'utf8').includes('--foreground'), 'served by a daemon of its own');
      tt.equal((await node(ctx, ['umount', l.merged])).code, 0);
    }
  });
}
