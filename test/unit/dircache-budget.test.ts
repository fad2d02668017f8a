// The directory caches of one process share one fd budget: a resident server's mounts each
// kept a quarter of RLIMIT_NOFILE, and 20 of them walked ran the server out of fds (EMFILE on
// every request of every mount). Its own file: the budget is process-wide.
import t from 'tap';
import fs from 'node:fs';
import { setDirCacheProcessBudget } from '../../src/core/dircache';
import { Resolver } from '../../src/core/lookup';
import { coreStack } from '../lib/stack';
import type { Tree } from '../lib/tree';

// 3 layers x 20 directories: walked, one mount holds 60 fds.
const layers = (): Tree[] => Array.from({ length: 3 }, (_, i) => {
  const out: Tree = {};
  for (let d = 0; d < 20; d++) out[`d${d}`] = { dir: { [`f${i}`]: `${i}/${d}` } };
  return out;
});
const walk = async (r: Resolver): Promise<void> => {
  for (let d = 0; d < 20; d++) {
    r.dir(`/d${d}`);
    await new Promise((res) => setImmediate(res));
  }
};

t.test('many mounts walked hold no more than the process budget together', async (t) => {
  const budget = 60;
  setDirCacheProcessBudget(budget);
  t.teardown(() => setDirCacheProcessBudget(undefined));
  const rs = Array.from({ length: 4 }, () => new Resolver(coreStack(layers(), { upper: false }, t).ov.stack, 1000));
  t.teardown(() => { for (const r of rs) r.cache.close(); });
  const fds = (): number => fs.readdirSync('/proc/self/fd').length;
  const before = fds();
  for (const r of rs) await walk(r);
  const held = rs.reduce((n, r) => n + r.cache.fdCount, 0);
  // One directory's layers over: the newest entry stays, the caller is about to use it.
  t.ok(held <= budget + 3, `4 caches hold ${held} fds together (budget ${budget})`);
  t.ok(fds() - before <= budget + 3, `and the process ${fds() - before} more fds`);
  // The cache holding most gives up first: walked in turn, they end with a share each.
  const each = rs.map((r) => r.cache.fdCount);
  t.ok(Math.min(...each) >= budget / 4 - 3, `each holds a share: ${each.join(' ')}`);
  // Lookups stay right after eviction.
  t.equal(rs[0].get('/d0/f2').entries[0].layer.index, 2);
});

t.test('a closed cache leaves the budget to the others', async (t) => {
  setDirCacheProcessBudget(60);
  t.teardown(() => setDirCacheProcessBudget(undefined));
  const a = new Resolver(coreStack(layers(), { upper: false }, t).ov.stack, 1000);
  const b = new Resolver(coreStack(layers(), { upper: false }, t).ov.stack, 1000);
  t.teardown(() => { b.cache.close(); });
  await walk(a);
  a.cache.close();
  await walk(b);
  t.equal(b.cache.fdCount, 60, 'b holds all of its 60');
});
