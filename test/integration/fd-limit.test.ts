// A daemon that runs out of fds keeps its mount: clients that hold every fd the daemon may open
// get EMFILE for their next open, and once they let go the mount serves as before. (The mount
// watcher once read EMFILE from mountinfo as "unmounted externally" and exited.) And a deep
// stack of layers does not eat the daemon's fds: its directory cache holds at most a quarter
// of RLIMIT_NOFILE, so `find` over 40 layers of 50 directories (2000 directory fds) works under a limit of 1024.
// And a daemon at its limit with directories cached closes them and serves the request (before,
// every open got EMFILE, and the daemon never served another while the cache held its fds).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, isMounted, layout, mountOverlayd, optionString, TRANSPORT } from '../lib/mounts';
import { removeTree } from '../lib/stack';

const FILES = 300;

function fdsOf(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

t.test('clients exhaust the daemon\'s fds: the mount survives and serves again', async (t) => {
  const l = layout(1);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(l.lowers[0], `f${i}`), `file ${i}\n`);
  const m = await mountOverlayd(l);
  t.teardown(() => m.unmount());
  const pid = m.daemon?.pid as number;
  // Room for a few dozen more: the clients' opens below use it up.
  const limit = fdsOf(pid) + 40;
  const r = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:${limit}`], { encoding: 'utf8' });
  t.equal(r.status, 0, `prlimit the daemon to ${limit} fds (${r.stderr.trim()})`);

  const held: number[] = [];
  t.teardown(() => { for (const fd of held.splice(0)) fs.closeSync(fd); });
  let refused = '';
  for (let i = 0; i < FILES; i++) {
    try {
      held.push(fs.openSync(path.join(l.merged, `f${i}`), 'r'));
    } catch (err) {
      refused = (err as NodeJS.ErrnoException).code ?? String(err);
      break;
    }
  }
  t.equal(refused, 'EMFILE', `the daemon ran out of fds after ${held.length} opens`);
  // Several turns of the mount watcher (every 500 ms) with no fd to spare.
  await new Promise((r) => setTimeout(r, 2000));
  t.ok(isMounted(l.merged), 'still mounted while out of fds');
  t.equal(m.daemon?.exitCode, null, 'the daemon still runs');
  for (const fd of held.splice(0)) fs.closeSync(fd);
  t.equal(fs.readFileSync(path.join(l.merged, `f${FILES - 1}`), 'utf8'), `file ${FILES - 1}\n`, 'and serves once the clients let go');
  fs.writeFileSync(path.join(l.merged, 'new'), 'written');
  t.equal(fs.readFileSync(path.join(l.upper as string, 'new'), 'utf8'), 'written', 'writes reach the upper layer');
});

t.test('40 layers x 50 directories under RLIMIT_NOFILE 1024: find sees everything', async (t) => {
  const LAYERS = 40;
  const DIRS = 50;
  const l = layout(LAYERS);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  l.lowers.forEach((dir, i) => {
    for (let d = 0; d < DIRS; d++) {
      fs.mkdirSync(path.join(dir, `d${d}`));
      fs.writeFileSync(path.join(dir, `d${d}`, `f${i}`), '');
    }
  });
  const extra = TRANSPORT ? [`transport=${TRANSPORT}`] : [];
  const m = spawnSync('prlimit', ['--nofile=1024:1024', process.execPath, BIN, 'mount', '-o', optionString(l, extra), l.merged], { encoding: 'utf8' });
  t.teardown(async () => {
    if (isMounted(l.merged)) spawnSync(process.execPath, [BIN, 'umount', l.merged]);
    if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]);
  });
  t.equal(m.status, 0, `mounted under a limit of 1024 fds (${m.stderr.trim()})`);
  const f = spawnSync('find', [l.merged, '-type', 'f'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  t.equal(f.stderr, '', 'find says nothing');
  t.equal(f.status, 0, 'find exits 0');
  t.equal(f.stdout.split('\n').filter((x) => x !== '').length, LAYERS * DIRS, 'every file of every layer');
  const st = JSON.parse(spawnSync(process.execPath, [BIN, 'status', '--json', l.merged], { encoding: 'utf8' }).stdout || '[]') as { counters?: { fds?: number; dirCacheFds?: number } }[];
  const c = st[0]?.counters;
  t.ok((c?.dirCacheFds ?? Infinity) <= 256, `the directory cache holds ${c?.dirCacheFds} fds (at most a quarter of 1024)`);
  t.ok((c?.fds ?? Infinity) < 512, `the daemon holds ${c?.fds} fds in all`);
});

t.test('out of fds with directories cached: the daemon closes them and serves the open', async (t) => {
  const DIRS = 100;
  const l = layout(2);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  for (const dir of l.lowers) for (let d = 0; d < DIRS; d++) fs.mkdirSync(path.join(dir, `d${d}`));
  for (let d = 0; d < DIRS; d++) fs.writeFileSync(path.join(l.lowers[0], `d${d}`, 'f'), `${d}\n`);
  const m = await mountOverlayd(l);
  t.teardown(() => m.unmount());
  const pid = m.daemon?.pid as number;
  // Every directory looked up: the cache holds an fd per layer of each.
  const f = spawnSync('find', [l.merged, '-type', 'f'], { encoding: 'utf8' });
  t.equal(f.stdout.split('\n').filter((x) => x !== '').length, DIRS, 'find sees every file');
  const cached = fdsOf(pid);
  t.ok(cached > 2 * DIRS, `the daemon holds ${cached} fds`);
  // Not one fd number to spare: the limit at the lowest free one.
  const used = new Set(fs.readdirSync(`/proc/${pid}/fd`).map(Number));
  let free = 0;
  while (used.has(free)) free++;
  const r = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${free}:${free}`], { encoding: 'utf8' });
  t.equal(r.status, 0, `prlimit the daemon to ${free} fds (${r.stderr.trim()})`);
  const held: number[] = [];
  t.teardown(() => { for (const fd of held.splice(0)) fs.closeSync(fd); });
  let refused = '';
  for (let d = 0; d < DIRS; d++) {
    try {
      held.push(fs.openSync(path.join(l.merged, `d${d}`, 'f'), 'r'));
    } catch (err) {
      refused = (err as NodeJS.ErrnoException).code ?? String(err);
      break;
    }
  }
  t.ok(held.length >= DIRS / 2, `${held.length} files opened with the directories' fds given back (then ${refused || 'none refused'})`);
  for (const fd of held.splice(0)) fs.closeSync(fd);
  t.equal(fs.readFileSync(path.join(l.merged, `d${DIRS - 1}`, 'f'), 'utf8'), `${DIRS - 1}\n`, 'and serves on');
});
