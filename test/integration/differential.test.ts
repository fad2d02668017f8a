// Differential fuzzing against kernel overlayfs (test/fuzz): random layer trees, random
// operation sequences, every reply and the final trees compared, then overlayd's upper layer
// read back by the kernel. A fixed set of seeds runs here; `npm run fuzz -- --seeds 200` runs
// the long version. A failure prints the seed and a shrunk operation trace.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { diffSnapshots, sameMtime } from '../fuzz/compare';
import { OLD_TIME_LIMIT } from '../fuzz/layers';
import { formatResult, minimize, runSeed, type FuzzOptions } from '../fuzz/run';

const SEEDS = Array.from({ length: Number(process.env.OVERLAYD_FUZZ_SEEDS ?? 40) }, (_, i) => 1001 + i);
const OPTS: FuzzOptions = { ops: 40 };

t.test('the comparison itself tells views apart', async (t) => {
  const seen = { type: 'file', mode: 0o100644, uid: 0, gid: 0, size: 1, nlink: 1, data: '1:x', xattrs: {}, mtime: 1_000_000_001 };
  t.same(diffSnapshots({ a: seen }, { a: { ...seen } }), []);
  t.match(diffSnapshots({ a: seen }, { a: { ...seen, mode: 0o100600 } }), [/mode/]);
  t.match(diffSnapshots({ a: seen }, { a: { ...seen, xattrs: { 'user.x': '00' } } }), [/xattrs/]);
  t.match(diffSnapshots({ a: seen }, {}), [/only in kernel/]);
  // An old (fuzzer-set) time must match to the second; two "now" times need not.
  t.notOk(sameMtime(1_000_000_001, OLD_TIME_LIMIT + 5), 'an old time lost to "now" is a difference');
  t.ok(sameMtime(OLD_TIME_LIMIT + 5, OLD_TIME_LIMIT + 6));
  t.match(diffSnapshots({ a: seen }, { a: { ...seen, mtime: OLD_TIME_LIMIT + 9 } }), [/mtime/]);
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
  t.test(`seed ${seed}: overlayd answers and ends like kernel overlayfs`, async (t) => {
    let r = await runSeed(seed, OPTS);
    if (r.divergence) r = await minimize(r, OPTS, 30);
    if (r.divergence) t.fail(formatResult(r));
    else t.pass(formatResult(r));
    if (r.upperDiffs.length) t.comment(`upper layers differ on disk (the kernel reads overlayd's the same):\n${r.upperDiffs.join('\n')}`);
  });
}
