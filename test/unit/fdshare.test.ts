// The fds of a process serving several overlays: each overlay's open files a fair share of what
// RLIMIT_NOFILE leaves, EMFILE past it for that overlay alone; and a request that runs the
// process out of fds is run once more after the directory caches give theirs back.
import t from 'tap';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { C, sys } from '../../src/host/native';
import { FdPool, FdShareExhausted, withFdsGivenBack } from '../../src/core/fdshare';
import { Overlay } from '../../src/core/overlay';
import { coreStack, removeTree } from '../lib/stack';
import type { Tree } from '../lib/tree';

t.test('the pool: the limit less the caches\' quarter and the fixed fds, divided by the mounts plus one', async (t) => {
  const pool = new FdPool(512);
  t.equal(pool.current, Math.floor((512 - 128 - 64) / 1), 'nobody in it yet: all of it for the first');
  const a = pool.join(3);
  t.equal(a.limit, Math.floor((512 - 128 - 64 - 11) / 2), 'one mount: half, the other half for the next');
  const b = pool.join(3);
  t.equal(a.limit, Math.floor((512 - 128 - 64 - 22) / 3), 'two mounts: a third each');
  t.equal(b.limit, a.limit);
  b.leave();
  b.leave();
  t.equal(a.limit, Math.floor((512 - 128 - 64 - 11) / 2), 'a mount gone (left twice) gives its share back');
  const crowd = Array.from({ length: 100 }, () => pool.join(1));
  t.equal(a.limit, 16, 'a crowded server still lets each mount open a few files');
  for (const m of crowd) m.leave();
});

t.test('an overlay at its share gets EMFILE for opens and creates, says so once, and opens again after a close', async (t) => {
  const { ov } = coreStack([{ a: 'a', b: 'b' }], {}, t);
  // A second overlay, built here for its events (coreStack's have none).
  const s = coreStack([{ a: 'a', b: 'b' }]);
  s.ov.close();
  const warned: string[] = [];
  const watched = new Overlay(s.cfg, { warn: (msg) => { warned.push(msg); }, error: () => undefined });
  t.teardown(() => { watched.close(); removeTree(s.base); });
  const pool = new FdPool(1024);
  ov.handles.share = pool.join(2);
  watched.handles.share = pool.join(2);
  const limit = watched.handles.share.limit;
  t.equal(limit, Math.floor((1024 - 256 - 64 - 20) / 3));
  const held: number[] = [];
  for (let i = 0; i < limit; i++) held.push(watched.open('/a', C.O_RDONLY));
  const fds = (): number => fs.readdirSync('/proc/self/fd').length;
  const before = fds();
  t.throws(() => watched.open('/b', C.O_RDONLY), { code: 'EMFILE', share: limit }, `open number ${limit + 1}: EMFILE`);
  t.throws(() => watched.create('/new', 0o644, C.O_RDWR, { uid: 0, gid: 0, pid: 0 }), { code: 'EMFILE' }, 'and a create');
  t.notOk(fs.existsSync(`${s.upper}/new`), 'which made nothing');
  t.equal(fds(), before, 'nor opened anything');
  t.equal(warned.length, 1, `said once: ${warned[0]}`);
  const other = ov.open('/a', C.O_RDONLY);
  t.ok(other > 0, 'the other overlay opens');
  ov.release(other);
  watched.release(held.pop() as number);
  held.push(watched.open('/b', C.O_RDONLY));
  t.throws(() => watched.open('/b', C.O_RDONLY), { code: 'EMFILE' }, 'full again');
  t.equal(warned.length, 2, 'and says so again, having had room in between');
  for (const h of held) watched.release(h);
  watched.handles.share.leave();
  t.equal(ov.handles.share.limit, Math.floor((1024 - 256 - 64 - 10) / 2), 'closed, it leaves the pool');
});

// 3 layers x 40 directories: walked, the cache holds 120 fds.
const layers = (): Tree[] => Array.from({ length: 3 }, (_, i) => {
  const out: Tree = {};
  for (let d = 0; d < 40; d++) out[`d${d}`] = { dir: { [`f${i}`]: `${i}/${d}` } };
  return out;
});

t.test('out of fds with directories cached: the caches give theirs back and the request runs once more', async (t) => {
  const { ov } = coreStack(layers(), { upper: false }, t);
  for (let d = 0; d < 40; d++) ov.getattr(`/d${d}/f0`);
  await new Promise((res) => setImmediate(res));
  t.ok(ov.resolver.cache.fdCount >= 100, `the cache holds ${ov.resolver.cache.fdCount} fds`);
  // Not one fd to spare: the soft limit at the lowest free fd number (a limit bounds the numbers).
  const free = fs.openSync('/dev/null', 'r');
  fs.closeSync(free);
  const lower = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${free}:`], { encoding: 'utf8' });
  t.teardown(() => { sys.nofileLimit(1); });
  t.equal(lower.status, 0, `soft limit ${free} (${lower.stderr.trim()})`);
  let bare: unknown;
  try { ov.release(ov.open('/d39/f1', C.O_RDONLY)); } catch (err) { bare = err; }
  let h = -1;
  let retried: unknown;
  try { h = withFdsGivenBack(() => ov.open('/d39/f1', C.O_RDONLY)); } catch (err) { retried = err; }
  sys.nofileLimit(1);
  t.match(bare, { code: 'EMFILE' }, 'run once: EMFILE');
  t.equal(retried, undefined, 'run through withFdsGivenBack: opened');
  t.equal(ov.resolver.cache.fdCount <= 3, true, `the cache gave its fds back (${ov.resolver.cache.fdCount} left)`);
  if (h > 0) ov.release(h);
});

t.test('a mount at its share is not retried: the caches keep their fds', async (t) => {
  const { ov } = coreStack(layers(), { upper: false }, t);
  for (let d = 0; d < 10; d++) ov.getattr(`/d${d}/f0`);
  await new Promise((res) => setImmediate(res));
  const cached = ov.resolver.cache.fdCount;
  ov.handles.share = { limit: 0, leave: () => undefined };
  let err: unknown;
  try { withFdsGivenBack(() => ov.open('/d0/f0', C.O_RDONLY)); } catch (e) { err = e; }
  t.ok(err instanceof FdShareExhausted, `EMFILE for the share (${String(err)})`);
  t.equal(ov.resolver.cache.fdCount, cached, 'nothing given back');
});
