// kill -9 of the daemon in the middle of the copy-up of a large lower file: nothing may be lost.
// Copy-up builds the copy in workdir/work and renames it into upper only once complete and
// synced, so after the crash the lower file is intact, upper holds no partial file, the next
// mount clears the leftover, and the kernel's overlayfs reads the upper layer as before.
import t from 'tap';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { layout, mountKernel, mountOverlayd, type Layout } from '../lib/mounts';
import { build } from '../lib/tree';

const GiB = 1024 * 1024 * 1024;
const SIZE = GiB + 12345; // not a multiple of any chunk size
const CHUNK = 64 * 1024 * 1024;

/** Writes `size` bytes of incompressible, non-repeating data (no holes); returns its sha1. */
function writeBig(file: string, size: number): string {
  const base = crypto.randomBytes(CHUNK);
  const hash = crypto.createHash('sha1');
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0, i = 0; off < size; off += CHUNK, i++) {
      const n = Math.min(CHUNK, size - off);
      base.writeUInt32LE(i, 0); // each chunk differs, so a misplaced chunk cannot pass
      fs.writeSync(fd, base, 0, n, off);
      hash.update(base.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

async function sha1(file: string, extra?: string): Promise<string> {
  const hash = crypto.createHash('sha1');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer);
  if (extra !== undefined) hash.update(extra);
  return hash.digest('hex');
}

/** What the merged view shows: type, mode, size and content hash of every path. */
async function view(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    let what = `${st.mode.toString(8)} ${st.uid}:${st.gid}`;
    if (st.isFile()) what += ` ${st.size} ${await sha1(p)}`;
    if (st.isSymbolicLink()) what += ` -> ${fs.readlinkSync(p)}`;
    out[rel || '.'] = what;
    if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) await walk(path.join(rel, n));
  };
  await walk('');
  return out;
}

/** Runs a shell command as its own process (never a synchronous child against a mount). */
function sh(cmd: string): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn('sh', ['-c', cmd], { stdio: 'ignore' });
    c.on('exit', (code) => resolve(code));
  });
}

const workEntries = (l: Layout): string[] => fs.readdirSync(path.join(l.work as string, 'work'));

t.test('kill -9 in the middle of a 1 GiB copy-up loses nothing', async (t) => {
  const l = layout(1);
  t.teardown(() => fs.rmSync(path.dirname(l.merged), { recursive: true, force: true }));
  build(l.lowers[0], { small: 'small', gone: 'to be removed', dir: { dir: { inner: 'x' } }, link: { symlink: 'small' } });
  const big = path.join(l.lowers[0], 'big');
  const lowerHash = writeBig(big, SIZE);

  let od = await mountOverlayd(l);
  t.teardown(() => od.unmount());
  // Some upper content of its own, so the upper layer has something to be right about.
  t.equal(await sh(`cd ${l.merged} && echo new > new && rm gone && mkdir made && echo more >> dir/inner`), 0);
  const before = await view(l.merged);
  t.equal(before.big, `100644 0:0 ${SIZE} ${lowerHash}`, 'the big file reads whole through overlayd');

  // Appending one byte copies the whole file up first. Kill the daemon while it copies.
  let appended = false;
  const appender = sh(`printf x >> ${l.merged}/big`).then((code) => { appended = true; return code; });
  let partial: { name: string; size: number } | undefined;
  while (!partial && !appended) {
    const names = workEntries(l);
    for (const name of names) {
      const st = fs.lstatSync(path.join(l.work as string, 'work', name), { throwIfNoEntry: false });
      // A quarter copied, or all of it and not yet synced and renamed: mid copy-up either way.
      if (st?.isFile() && st.size >= SIZE / 4) partial = { name, size: st.size };
    }
    if (!partial) await new Promise((r) => setTimeout(r, 1));
  }
  if (!partial) { t.fail('the copy-up finished before it could be interrupted'); return; }
  const dead = new Promise((r) => od.daemon?.once('exit', r));
  od.daemon?.kill('SIGKILL');
  await dead;
  await od.unmount(); // the daemon is dead: this detaches the broken mount
  t.not(await appender, 0, 'the interrupted append failed');
  t.comment(`killed with ${partial.size} of ${SIZE} bytes copied`);

  t.ok(workEntries(l).includes(partial.name), 'the kill landed mid copy-up: the partial copy is still in workdir/work');
  t.equal(await sha1(big), lowerHash, 'the lower file is intact');
  const upperBig = path.join(l.upper as string, 'big');
  if (fs.existsSync(upperBig)) {
    // Only a complete copy may ever appear in upper (with or without the appended byte).
    const size = fs.statSync(upperBig).size;
    t.ok(size === SIZE || size === SIZE + 1, 'a copy in upper is complete');
    t.equal(await sha1(upperBig), size === SIZE ? lowerHash : await sha1(big, 'x'));
  } else {
    t.pass('upper has no copy of the file');
  }
  t.same(fs.readdirSync(l.upper as string).filter((n) => n.startsWith('#')), [], 'no temporary names in upper');

  // The next mount clears the leftover and shows what was there before the crash.
  od = await mountOverlayd(l);
  t.same(workEntries(l), [], 'remount cleared workdir/work');
  t.same(await view(l.merged), before, 'overlayd shows the same view after the crash');
  await od.unmount();

  // And the kernel, over the same upper layer, agrees.
  const kern = mountKernel(l);
  t.teardown(() => kern.unmount());
  t.same(await view(l.merged), before, 'kernel overlayfs shows the same view over the upper layer');
  await kern.unmount();
});
