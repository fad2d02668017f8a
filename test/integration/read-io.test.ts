// Reading data through the mount: a 200 MiB sparse file with data regions read whole and at
// random offsets, thousands of files open at once, and many reader processes at the same time.
// Every byte is checked against the layer file it comes from. Layers live on a tmpfs of their
// own: these tests are about data, and the disk is shared.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { mountOverlayd } from '../lib/mounts';
import { tmpfsLayout } from '../lib/scratch';
import { python, run, sh } from '../lib/proc';
import { prng } from '../lib/gen';

const MiB = 1 << 20;

t.test('a 200 MiB sparse file with data regions reads byte-identical', async (t) => {
  const l = tmpfsLayout(t, 2);
  const src = path.join(l.lowers[1], 'big');
  const rnd = prng(7);
  const fd = fs.openSync(src, 'w');
  // Data at the start, in the middle, straddling no block boundary, and at the very end.
  for (const [off, len] of [[0, 4 * MiB + 123], [64 * MiB + 4095, 8 * MiB], [150 * MiB, 3 * MiB], [200 * MiB - MiB, MiB]]) {
    const b = Buffer.allocUnsafe(len);
    for (let i = 0; i < len; i += 4) b.writeUInt32LE((rnd() * 0x100000000) >>> 0, Math.min(i, len - 4));
    fs.writeSync(fd, b, 0, len, off);
  }
  fs.ftruncateSync(fd, 200 * MiB);
  fs.closeSync(fd);
  // Past 4 GiB: offsets and sizes that do not fit 32 bits.
  const huge = fs.openSync(path.join(l.lowers[0], 'huge'), 'w');
  fs.writeSync(huge, 'the end', 5 * 1024 * MiB);
  fs.closeSync(huge);
  const m = await mountOverlayd(l);
  t.teardown(() => m.unmount());
  const big = path.join(m.merged, 'big');

  const st = await run('stat', ['-c', '%s %b', big, src]);
  const [ours, real] = st.stdout.trim().split('\n');
  t.equal(ours, real, 'size and blocks (sparseness) as the layer file');
  t.equal(ours.split(' ')[0], String(200 * MiB));
  const sums = await run('sha256sum', [big, src]);
  const [a, b] = sums.stdout.trim().split('\n').map((x) => x.split(' ')[0]);
  t.equal(a, b, 'sha256 of the whole file');
  const cmp = await run('cmp', [big, src]);
  t.same([cmp.code, cmp.stdout], [0, ''], 'cmp finds no difference');
  // Unaligned reads at random offsets, many across a hole/data edge.
  const out = await python(`
import os, random, sys
random.seed(11)
a, b = os.open(sys.argv[1], os.O_RDONLY), os.open(sys.argv[2], os.O_RDONLY)
edges = [0, 4*2**20+123, 64*2**20+4095, 72*2**20+4095, 150*2**20, 153*2**20, 199*2**20, 200*2**20]
bad = 0
for i in range(300):
    base = random.choice(edges) if i % 2 else random.randrange(200*2**20)
    off = max(0, base + random.randrange(-70000, 70000))
    n = random.choice([1, 7, 4096, 4097, 65536, 131073, 1000000])
    if os.pread(a, n, off) != os.pread(b, n, off):
        bad += 1
print(bad, len(os.pread(a, 4096, 200*2**20 - 100)), len(os.pread(a, 10, 300*2**20)))
`, [big, src]);
  t.equal(out.trim(), '0 100 0', 'random preads agree; short read at EOF, empty read past it');
  const end = await run('sh', ['-c', 'stat -c %s huge; tail -c 7 huge; echo; dd if=huge bs=1 skip=$((5*1024*1024*1024+4)) status=none'], { cwd: m.merged });
  t.equal(end.stdout, `${5 * 1024 * MiB + 7}\nthe end\nend`, 'a 5 GiB sparse file: size and data past 4 GiB');
});

t.test('thousands of files open at once, read in another order, all correct', async (t) => {
  const l = tmpfsLayout(t, 3);
  const N = 2000;
  const dirs = ['a', 'b', 'c'];
  for (const layer of [l.upper as string, ...l.lowers]) for (const d of dirs) fs.mkdirSync(path.join(layer, d));
  // Spread over the layers, each name shadowed by a wrong copy below its winner.
  const all = [l.upper as string, ...l.lowers];
  for (let i = 0; i < N; i++) {
    const rel = path.join(dirs[i % 3], `f${i}`);
    const win = i % all.length;
    fs.writeFileSync(path.join(all[win], rel), `file ${i} `.repeat(1 + (i % 50)));
    if (win + 1 < all.length) fs.writeFileSync(path.join(all[win + 1], rel), 'shadowed');
  }
  const m = await mountOverlayd(l);
  t.teardown(() => m.unmount());
  const pid = m.daemon?.pid as number;
  const fds = (): number => fs.readdirSync(`/proc/${pid}/fd`).length;
  await run('ls', ['-R', m.merged]);
  const baseline = fds();
  const out = await python(`
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
root, n = sys.argv[1], int(sys.argv[2])
files = [os.open(os.path.join(root, 'abc'[i % 3], 'f%d' % i), os.O_RDONLY) for i in range(n)]
bad = [i for i in reversed(range(n)) if os.pread(files[i], 1 << 16, 0) != (('file %d ' % i) * (1 + i % 50)).encode()]
print(len(files), len(set(files)), bad[:10])
for f in files: os.close(f)
`, [m.merged, String(N)]);
  t.equal(out.trim(), `${N} ${N} []`, `${N} files open together, each with its own data`);
  // Releases reach the daemon asynchronously after close(2); wait for them, then no fd is left.
  for (let i = 0; i < 200 && fds() > baseline; i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(fds() <= baseline, `the daemon holds no fd for closed files (${fds()} <= ${baseline})`);
});

t.test('many reader processes at once get the right data', async (t) => {
  const l = tmpfsLayout(t, 3);
  const rnd = prng(3);
  const all = [l.upper as string, ...l.lowers];
  const hash = crypto.createHash('sha256');
  const names: string[] = [];
  for (let i = 0; i < 24; i++) {
    const size = i % 4 === 0 ? MiB + i * 1000 : 1000 + i * 777;
    const b = Buffer.allocUnsafe(size);
    for (let j = 0; j < size; j++) b[j] = (rnd() * 256) | 0;
    const name = `f${String(i).padStart(2, '0')}`;
    names.push(name);
    fs.writeFileSync(path.join(all[i % all.length], name), b);
    for (const below of all.slice((i % all.length) + 1)) fs.writeFileSync(path.join(below, name), 'wrong');
    hash.update(b);
  }
  const expected = hash.digest('hex');
  const m = await mountOverlayd(l);
  t.teardown(() => m.unmount());
  const readers = 12;
  const script = `cat ${names.join(' ')} | sha256sum; for f in ${names.join(' ')}; do dd if=$f bs=4099 status=none; done | sha256sum`;
  const results = await Promise.all(Array.from({ length: readers }, () => sh(script, m.merged)));
  for (const [i, r] of results.entries()) {
    t.same([r.code, r.stdout.split('\n').map((x) => x.split(' ')[0]).filter(Boolean)], [0, [expected, expected]], `reader ${i}`);
  }
});
