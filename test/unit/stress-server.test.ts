// The stress run's view of one server serving many mounts: each mount's counters are its own and
// add up, the process's (RSS, fds, heap) are the same process seen N times and must not.
import t from 'tap';
import type { Counters } from '../../src/cli/registry';
import { sumCounters } from '../../src/bench/stress-server';

const mount = (nodes: number, dirCacheFds: number): Counters => ({
  ops: 100, openFiles: 1, copyUps: 2, bytesCopiedUp: 10, whiteouts: 0, rssBytes: 90 << 20, fds: 1400,
  heapUsedBytes: 20 << 20, externalBytes: 5 << 20, dirCacheEntries: dirCacheFds / 2, dirCacheFds, nodes, backingIds: 1,
});

t.test('per-mount counters add up, per-process ones do not', async (t) => {
  const s = sumCounters([mount(3, 400), mount(5, 500), mount(1, 482)]) as Counters;
  t.equal(s.nodes, 9);
  t.equal(s.dirCacheFds, 1382);
  t.equal(s.dirCacheEntries, 691);
  t.equal(s.ops, 300);
  t.equal(s.openFiles, 3);
  t.equal(s.backingIds, 3);
  // What the verdict subtracts: fds outside the directory cache, of the one process.
  t.equal(s.fds, 1400);
  t.equal(s.rssBytes, 90 << 20);
  t.equal(s.heapUsedBytes, 20 << 20);
});

t.test('a counter only some mounts report is summed over those', async (t) => {
  const a = mount(2, 0);
  const b: Counters = { ...mount(2, 0), ringOps: 7 };
  t.equal(sumCounters([a, b])?.ringOps, 7);
  t.equal(sumCounters([]), undefined);
});
