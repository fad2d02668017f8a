// Copy-ups of file data in worker threads (Overlay.backgroundWork, as the transports run it): one
// job per object, which every caller that needs it joins (the kernel's ovl_copy_up_start);
// removals and renames of the object wait for it; a job all of whose callers gave up stops and
// leaves nothing behind; a failed job leaves nothing behind and is its callers' answer.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { C } from '../../src/host/native';
import { CopyUpPending, SLICE, whenCopiedUp } from '../../src/core/copyup';
import { coreStack } from '../lib/stack';
import { isWhiteout, readAll, setXattr, workLeft, xattrOf } from '../lib/write-helpers';

const SIZE = 2 * SLICE + 777; // several slices, the last one short

function bigLower(): Buffer {
  const b = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4096) b.writeUInt32LE(i, i);
  return b;
}

/** What is left in workdir/work once background removals are done (waits up to 20 s). */
async function workCleared(work: string): Promise<string[]> {
  const t0 = Date.now();
  while (workLeft(work).length > 0 && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 10));
  return workLeft(work);
}

/** The CopyUpPending a call throws (failing the test if it throws anything else or nothing). */
function pending(fn: () => unknown): CopyUpPending {
  try {
    fn();
  } catch (err) {
    if (err instanceof CopyUpPending) return err;
    throw err;
  }
  throw new Error('expected the call to wait for a copy-up');
}

function asyncStack(t: Test) {
  // On ext4 (tmpdir), where st_ino survives copy-up through the origin; tmpfs gives no such handles.
  const s = coreStack([{ d: { dir: { small: 'tiny' } } }], {}, t);
  fs.writeFileSync(path.join(s.lowers[0], 'd', 'big'), bigLower());
  s.ov.backgroundWork = true;
  return s;
}

t.test('callers of one copy-up share one job; each then gets the upper file', async (t) => {
  const s = asyncStack(t);
  const { ov } = s;
  fs.chmodSync(path.join(s.lowers[0], 'd', 'big'), 0o4751);
  setXattr(path.join(s.lowers[0], 'd', 'big'), 'user.k', 'v');
  const before = ov.getattr('/d/big');
  const a = pending(() => ov.open('/d/big', C.O_WRONLY));
  const b = pending(() => ov.chmod('/d/big', 0o600));
  const c = pending(() => ov.open('/d/big', C.O_RDWR | C.O_TRUNC));
  t.equal(b.job, a.job, 'a second caller joins the first one\'s copy-up');
  t.equal(c.job, a.job, 'even one that needs no data waits for it rather than race it');
  t.ok(fs.existsSync(path.join(s.upper as string, 'd')), 'the parent is copied up at once');
  t.notOk(fs.existsSync(path.join(s.upper as string, 'd', 'big')), 'the file appears only once complete');
  let turns = 0;
  const spin = setInterval(() => turns++, 0);
  await Promise.all([a.wait(), b.wait()]);
  clearInterval(spin);
  t.ok(turns > 0, `the event loop kept turning during the copy (${turns} timer turns)`);
  t.equal(ov.upperStats?.copyUps, 2, 'one copy-up of the file (and one of its parent)');
  t.equal(ov.upperStats?.bytesCopiedUp, SIZE, 'its data copied once');
  const h = ov.open('/d/big', C.O_WRONLY);
  ov.release(h);
  ov.chmod('/d/big', 0o600);
  t.ok(fs.readFileSync(path.join(s.upper as string, 'd', 'big')).equals(bigLower()), 'the copy is whole');
  t.equal(xattrOf(path.join(s.upper as string, 'd', 'big'), 'user.k'), 'v', 'xattrs copied from the file the job read');
  t.ok(xattrOf(path.join(s.upper as string, 'd', 'big'), 'trusted.overlay.origin') !== undefined, 'the origin recorded');
  t.equal(ov.getattr('/d/big').ino, before.ino, 'so st_ino survives the copy-up');
  t.equal(fs.statSync(path.join(s.upper as string, 'd', 'big')).mode & 0o7777, 0o600, 'the retried chmod applied');
  t.same(workLeft(s.work as string), []);
});

t.test('removing or moving an object waits for its copy-up, then applies', async (t) => {
  const s = asyncStack(t);
  const { ov } = s;
  const open = pending(() => ov.open('/d/big', C.O_WRONLY));
  const rm = pending(() => ov.unlink('/d/big'));
  t.equal(rm.job, open.job);
  pending(() => ov.rename('/d/big', '/d/moved'));
  pending(() => ov.rename('/d/small', '/d/big'));
  t.equal(pending(() => ov.rmdir('/d')).job, open.job, 'so does removing its directory');
  t.ok(fs.existsSync(path.join(s.lowers[0], 'd', 'big')));
  const fh = await whenCopiedUp(() => ov.open('/d/big', C.O_WRONLY));
  await rm.wait();
  ov.unlink('/d/big');
  t.ok(isWhiteout(path.join(s.upper as string, 'd', 'big')), 'the removal came after the copy: a whiteout');
  ov.release(fh);
  t.throws(() => ov.getattr('/d/big'), { code: 'ENOENT' });
  t.same(workLeft(s.work as string), []);
});

t.test('a copy-up whose every caller gave up stops and leaves nothing', async (t) => {
  const s = asyncStack(t);
  const { ov } = s;
  const one = new AbortController();
  const two = new AbortController();
  const p = pending(() => ov.open('/d/big', C.O_WRONLY));
  const w1 = p.wait(one.signal);
  const w2 = pending(() => ov.truncate('/d/big', 5)).wait(two.signal);
  const order = pending(() => ov.unlink('/d/big')).wait();
  one.abort();
  await t.rejects(w1, { code: 'EINTR' }, 'the caller that gave up is let go at once');
  t.ok(workLeft(s.work as string).length > 0, 'the other caller still waits: the copy goes on');
  two.abort();
  await t.rejects(w2, { code: 'EINTR' });
  await t.rejects(p.job.done, { code: 'EINTR' }, 'with no one left, the job stops');
  await order;
  t.same(await workCleared(s.work as string), [], 'its temp file is gone');
  t.notOk(fs.existsSync(path.join(s.upper as string, 'd', 'big')), 'nothing in upper');
  t.equal(ov.upperStats?.bytesCopiedUp, 0);
  await ov.copyUp('/d/big');
  t.ok(fs.readFileSync(path.join(s.upper as string, 'd', 'big')).equals(bigLower()), 'a later copy-up starts afresh and completes');
});

t.test('a failed copy-up is its callers\' answer and leaves no temp', async (t) => {
  const s = asyncStack(t);
  const { ov } = s;
  const p = pending(() => ov.open('/d/big', C.O_WRONLY));
  // Something takes the name in upper behind the overlay's back: the copy cannot be renamed in.
  fs.writeFileSync(path.join(s.upper as string, 'd', 'big'), 'squatter');
  await t.rejects(p.wait(), { code: 'EEXIST' });
  t.same(await workCleared(s.work as string), [], 'the temp is removed (in the background)');
  t.equal(fs.readFileSync(path.join(s.upper as string, 'd', 'big'), 'utf8'), 'squatter', 'what was there is untouched');
  t.equal(await readAll(ov, '/d/big'), 'squatter');
});

t.test('without backgroundWork the data is copied within the call', async (t) => {
  const s = coreStack([{ big: 'x'.repeat(100000) }], { memory: true }, t);
  s.ov.release(s.ov.open('/big', C.O_WRONLY));
  t.equal(fs.statSync(path.join(s.upper as string, 'big')).size, 100000);
  t.same(workLeft(s.work as string), []);
});

t.test('a removed directory full of whiteouts is cleared from workdir in the background', async (t) => {
  const N = 5000;
  const files: Record<string, string> = {};
  for (let i = 0; i < N; i++) files[`f${i}`] = '';
  const s = coreStack([{ d: { dir: files } }], { memory: true }, t);
  const { ov } = s;
  ov.backgroundWork = true;
  for (let i = 0; i < N; i++) ov.unlink(`/d/f${i}`);
  t.equal(fs.readdirSync(path.join(s.upper as string, 'd')).length, N, 'one whiteout per name in the upper dir');
  ov.rmdir('/d');
  // Clearing N entries takes a worker many milliseconds; the call returned before that.
  t.equal(workLeft(s.work as string).length, 1, 'the call returns with the directory moved into workdir, not yet cleared');
  t.ok(isWhiteout(path.join(s.upper as string, 'd')), 'the name is whited out at once');
  t.throws(() => ov.getattr('/d'), { code: 'ENOENT' });
  t.same(await workCleared(s.work as string), [], 'then it is cleared');
});
