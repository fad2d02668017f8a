// Differential fuzzing against kernel overlayfs (test/fuzz): random layer trees, random
// operation sequences, every reply and the final trees compared, then overlayd's upper layer
// read back by the kernel. A fixed set of seeds runs here; `npm run fuzz -- --seeds 200` runs
// the long version. A failure prints the seed and a shrunk operation trace.
// On the kernel transport (DEFAULT_MODE) mtimes compare to the nanosecond and a share of the
// operations run as an unprivileged user through an allow_other mount; on fuse-native, in
// whole seconds and as root (test/fuzz/README.md).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { diffSnapshots, ownerDiffs, sameMtime, sameReply } from '../fuzz/compare';
import { OLD_TIME_LIMIT } from '../fuzz/layers';
import { DEFAULT_MODE, formatResult, minimize, runSeed, type FuzzOptions } from '../fuzz/run';

const SEEDS = Array.from({ length: Number(process.env.OVERLAYD_FUZZ_SEEDS ?? 40) }, (_, i) => 1001 + i);
const OPTS: FuzzOptions = { ops: 40, mode: DEFAULT_MODE };
/** Seeds run with every layer on a tmpfs of its own (origins from other filesystems). */
const TMPFS_SEEDS = Array.from({ length: Number(process.env.OVERLAYD_FUZZ_TMPFS_SEEDS ?? 5) }, (_, i) => 2001 + i);

t.test('the comparison itself tells views apart', async (t) => {
  const seen = { type: 'file', mode: 0o100644, uid: 0, gid: 0, size: 1, nlink: 1, data: '1:x', xattrs: {}, mtime: 1_000_000_001 };
  t.same(diffSnapshots({ a: seen }, { a: { ...seen } }), []);
  t.match(diffSnapshots({ a: seen }, { a: { ...seen, mode: 0o100600 } }), [/mode/]);
  t.match(diffSnapshots({ a: seen }, { a: { ...seen, xattrs: { 'user.x': '00' } } }), [/xattrs/]);
  t.match(diffSnapshots({ a: seen }, {}), [/only in kernel/]);
  // Hard links: which paths share an inode, not the numbers themselves.
  const ino = (n: string): typeof seen & { ino: string } => ({ ...seen, ino: n });
  t.same(diffSnapshots({ a: ino('1'), b: ino('1') }, { a: ino('7'), b: ino('7') }, { links: true }), []);
  t.match(diffSnapshots({ a: ino('1'), b: ino('1') }, { a: ino('7'), b: ino('8') }, { links: true }), [/^a: same inode as \[b\] vs \[\]/, /^b: same inode as \[a\] vs \[\]/]);
  // An old (fuzzer-set) time must match to the second; two "now" times need not.
  t.notOk(sameMtime(1_000_000_001, OLD_TIME_LIMIT + 5), 'an old time lost to "now" is a difference');
  t.ok(sameMtime(OLD_TIME_LIMIT + 5, OLD_TIME_LIMIT + 6));
  t.match(diffSnapshots({ a: seen }, { a: { ...seen, mtime: OLD_TIME_LIMIT + 9 } }), [/mtime/]);
  // To the nanosecond where asked (the kernel transport); "now" times stay equal.
  const ns = { ...seen, mtimeNs: 123_456_789 };
  t.same(diffSnapshots({ a: ns }, { a: { ...ns, mtimeNs: 123_456_000 } }), [], 'seconds: ns ignored');
  t.match(diffSnapshots({ a: ns }, { a: { ...ns, mtimeNs: 123_456_000 } }, { ns: true }), [/mtime 1000000001\.123456789 vs 1000000001\.123456000/]);
  t.ok(sameMtime(OLD_TIME_LIMIT + 5, OLD_TIME_LIMIT + 5, 1, 2, true));
  const stat = (mtime: number, mtimeNs: number): { r: unknown } => ({ r: { type: 'file', mode: 0o100644, mtime, mtimeNs } });
  t.notOk(sameReply(stat(1_000_000_001, 5), stat(1_000_000_001, 6), true), 'a stat reply\'s old mtime, to the ns');
  t.ok(sameReply(stat(1_000_000_001, 5), stat(1_000_000_001, 6), false));
  t.ok(sameReply(stat(OLD_TIME_LIMIT + 1, 5), stat(OLD_TIME_LIMIT + 2, 6), true), 'two "now" times');
  // Owners on disk: every path both upper layers hold, whiteouts aside.
  const wh = { ...seen, type: 'chr', rdev: [0, 0], uid: 0 };
  t.same(ownerDiffs({ a: seen, w: wh, k: seen }, { a: { ...seen }, w: { ...wh, uid: 1000 } }), []);
  t.match(ownerDiffs({ a: seen }, { a: { ...seen, uid: 1000 } }), [/owner 0:0 vs 1000:0/]);
});

t.test('a difference planted in overlayd\'s layers is found', async (t) => {
  const r = await runSeed(SEEDS[0], {
    ...OPTS,
    tamper: (l) => fs.writeFileSync(path.join(l.lowers[0], 'planted'), 'only overlayd sees this'),
  });
  t.equal(r.divergence?.stage, 'initial');
  t.match(r.divergence?.diffs ?? [], [/^planted: only in overlayd/]);
});

for (const seed of SEEDS) {
  t.test(`seed ${seed}: overlayd answers and ends like kernel overlayfs (${DEFAULT_MODE.ns ? 'ns' : 's'} mtimes, ${DEFAULT_MODE.user ? 'root and user' : 'root'})`, async (t) => {
    let r = await runSeed(seed, OPTS);
    if (r.divergence) r = await minimize(r, OPTS, 30);
    if (r.divergence) t.fail(formatResult(r));
    else t.pass(formatResult(r));
    if (r.upperDiffs.length) t.comment(`upper layers differ on disk (the kernel reads overlayd's the same):\n${r.upperDiffs.join('\n')}`);
  });
}

for (const seed of TMPFS_SEEDS) {
  t.test(`seed ${seed}, every layer on tmpfs: overlayd answers and ends like kernel overlayfs`, async (t) => {
    const opts = { ...OPTS, tmpfs: true };
    let r = await runSeed(seed, opts);
    if (r.divergence) r = await minimize(r, opts, 30);
    if (r.divergence) t.fail(formatResult(r));
    else t.pass(formatResult(r));
  });
}
