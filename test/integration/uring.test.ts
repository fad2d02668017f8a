// FUSE over io_uring (-o uring=on; the kernel transport's ring, native/fuse_uring.c): with the
// kernel's enable_uring on, a workload of creates, writes, reads, listings, renames and removals
// on the ring ends exactly as on kernel overlayfs, and the ring (not /dev/fuse) brought its
// requests; asked for with enable_uring off, or not asked for, the same through /dev/fuse reads.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { compareRun, sameAsKernel } from '../lib/compare-run';
import { BIN, ON_FUSE_NATIVE, isMounted, layout, mountOverlayd } from '../lib/mounts';
import { removeTree } from '../lib/stack';
import { tmpdir, type Tree } from '../lib/tree';

const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

const original = ((): string | undefined => {
  try { return fs.readFileSync(ENABLE_URING, 'utf8').trim(); } catch { return undefined; }
})();

function setUring(v: 'Y' | 'N'): void {
  if (fs.readFileSync(ENABLE_URING, 'utf8').trim() !== v) fs.writeFileSync(ENABLE_URING, v);
}

/** Whether enable_uring can be written here: a container's /sys is read-only. */
const writable = ((): boolean => {
  if (original === undefined) return false;
  try { fs.writeFileSync(ENABLE_URING, original); return true; } catch { return false; }
})();

/** tap's skip for a subtest that needs enable_uring at `v`: only where it cannot be set so. */
const needs = (v: 'Y' | 'N'): { skip: string | false } => ({
  skip: writable || original === v ? false : `enable_uring is ${original} and cannot be set to ${v} here (read-only /sys, as in a container); the host run covers it`,
});

if (original === undefined || ON_FUSE_NATIVE) {
  t.pass(original === undefined ? 'this kernel has no FUSE over io_uring' : 'the ring is the kernel transport\'s');
} else {
  t.teardown(() => { if (writable) setUring(original === 'Y' ? 'Y' : 'N'); });
  const scratch = tmpdir('overlayd-uring-');
  t.teardown(() => removeTree(scratch));

  const layers: Tree[] = [
    { data: { dir: { f: 'upper-ish lower', keep: 'keep' } } },
    { data: { dir: { low: 'lower', olddir: { dir: { a: 'a', b: 'b' } } } } },
  ];

  /** The workload; its last step leaves `overlayd status --json` of the mount (ours only) in `out`. */
  const steps = (out: string): string[] => [
    'echo new > data/n && cat data/n data/f data/low && printf abc >> data/f && cat data/f',
    'mkdir -p data/sub/deep && for i in $(seq 60); do echo "$i" > data/sub/f$i; done && ls data/sub | sort | head -3 && ls data/sub | wc -l',
    // Larger than one request: writes and reads of a megabyte at a time fill the payload buffers.
    'head -c 3000000 /dev/zero | tr "\\0" x > data/big && md5sum < data/big && dd if=data/big bs=1M skip=1 count=1 2>/dev/null | md5sum && stat -c %s data/big',
    'mv data/n data/sub/n2 && mv data/sub data/moved && mv data/olddir data/newdir && ls data data/moved/deep data/newdir',
    'rm data/f data/moved/f1 && rm -r data/newdir && ls data | sort && ls data/moved | wc -l',
    'ln -s moved/n2 data/sl && cat data/sl && ln data/moved/f2 data/hard && stat -c %h data/hard && truncate -s 1 data/keep && cat data/keep; echo',
    'ls -la data | wc -l && find data | sort | md5sum',
    `"${process.execPath}" "${BIN}" status --json "$PWD" > "${out}.tmp" 2>/dev/null && mv "${out}.tmp" "${out}"; true`,
  ];

  interface Status { transport?: string; counters?: { ops: number; ringOps?: number } }

  const statusOf = (out: string): Status => {
    const entries = JSON.parse(fs.readFileSync(out, 'utf8')) as Status[];
    if (entries.length !== 1) throw new Error(`status: ${entries.length} entries`);
    return entries[0];
  };

  let n = 0;
  const run = async (uring: 'Y' | 'N', extra: string[]): Promise<{ c: Awaited<ReturnType<typeof compareRun>>; st: Status }> => {
    setUring(uring);
    const out = path.join(scratch, `status-${n++}.json`);
    const c = await compareRun(layers, steps(out), { oursExtra: ['transport=kernel', 'passthrough=off', ...extra], xattrs: false });
    return { c, st: statusOf(out) };
  };

  t.test('uring=on, enable_uring=Y: the workload on the ring ends as on kernel overlayfs, and the ring brought the requests', needs('Y'), async (t) => {
    const { c, st } = await run('Y', ['uring=on']);
    sameAsKernel(t, c, true);
    t.match(st.transport, /io_uring/, 'status says the ring serves');
    const { ops, ringOps } = st.counters ?? { ops: 0 };
    t.ok(ops > 100, `requests served (${ops})`);
    // INIT, and FORGETs and the like, still come through /dev/fuse: the rest through the ring.
    t.ok((ringOps ?? 0) > ops * 0.8, `most through io_uring (${ringOps} of ${ops})`);
  });

  t.test('uring=on, enable_uring=N (not offered at INIT): the same through /dev/fuse reads', needs('N'), async (t) => {
    const { c, st } = await run('N', ['uring=on']);
    sameAsKernel(t, c, true);
    t.notMatch(st.transport, /io_uring/);
    t.notOk(st.counters?.ringOps, 'nothing through a ring');
    t.ok((st.counters?.ops ?? 0) > 100, 'requests served');
  });

  t.test('kill -9 of a daemon serving through the ring: the mount fails at once, and overlayd umount clears it', needs('Y'), async (t) => {
    setUring('Y');
    const l = layout(1);
    t.teardown(() => { if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]); removeTree(path.dirname(l.merged)); });
    fs.writeFileSync(path.join(l.lowers[0], 'a'), 'a');
    const od = await mountOverlayd(l, ['transport=kernel', 'uring=on']);
    const out = path.join(scratch, 'status-kill.json');
    t.equal(spawnSync('bash', ['-c', `cat a && ${steps(out).at(-1)}`], { cwd: l.merged, encoding: 'utf8', timeout: 20000 }).stdout, 'a');
    t.match(statusOf(out).transport, /io_uring/, 'served through the ring');
    const dead = new Promise((resolve) => od.daemon?.once('exit', resolve));
    od.daemon?.kill('SIGKILL');
    await dead;
    // The kernel gives the ring's entries back with the process, which ends the connection.
    // A name never looked up: the kernel must ask (what it cached it may still answer).
    const r = spawnSync('stat', [path.join(l.merged, 'never-looked-up')], { encoding: 'utf8', timeout: 10000 });
    // ECONNABORTED for a request the ring held as its entries were torn down, ENOTCONN after.
    t.match(r.stderr, /Transport endpoint is not connected|Software caused connection abort/, `ENOTCONN or ECONNABORTED, not a hang (${r.error ? String(r.error) : r.stderr.trim()})`);
    const u = spawnSync(process.execPath, [BIN, 'umount', l.merged], { encoding: 'utf8', timeout: 20000 });
    t.equal(u.status, 0, `overlayd umount: ${u.stderr}`);
    t.notOk(isMounted(l.merged), 'gone');
  });

  t.test('not asked for (the default), enable_uring=Y: /dev/fuse reads', needs('Y'), async (t) => {
    const { c, st } = await run('Y', []);
    sameAsKernel(t, c, true);
    t.notMatch(st.transport, /io_uring/);
    t.notOk(st.counters?.ringOps, 'nothing through a ring');
  });
}
