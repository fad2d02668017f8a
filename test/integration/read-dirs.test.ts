// Directories and the filesystem through the mount, against kernel overlayfs where it answers
// the same question: a 10k-entry merged directory, `.` and `..`, statfs of the right layer,
// NAME_MAX, paths deeper than PATH_MAX, and EROFS on a read-only mount.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { cloneLayout, layout, mountKernel, mountOverlayd, type Layout } from '../lib/mounts';
import { build, tmpdir } from '../lib/tree';
import { python, run, sh } from '../lib/proc';
import { removeTree } from '../lib/stack';
import { mkWhiteout } from '../lib/gen';
import { tmpfsDir } from '../lib/scratch';

/** Replaces each mount's own path so that two mounts' messages compare. */
const norm = (s: string, merged: string): string => s.split(merged).join('MNT');

t.test('a 10k-entry directory merged from three layers lists as the kernel lists it', async (t) => {
  // Both mounts read the same three lowers: read-only, neither writes to them, no copy needed.
  const base = tmpfsDir(t);
  const lowers = ['l0', 'l1', 'l2'].map((n) => path.join(base, n));
  const ours: Layout = { lowers, merged: path.join(base, 'm1') };
  const kernL: Layout = { lowers, merged: path.join(base, 'm2') };
  const [l0, l1, l2] = lowers.map((d) => path.join(d, 'big'));
  for (const d of [l0, l1, l2, ours.merged, kernL.merged]) fs.mkdirSync(d, { recursive: true });
  const expected = new Set<string>();
  const put = (dir: string, from: number, to: number, tag: string): void => {
    for (let i = from; i < to; i++) {
      const p = path.join(dir, `n${i}`);
      if (i % 17 === 0) fs.mkdirSync(p);
      else if (i % 13 === 0) fs.symlinkSync(`${tag}-${i}`, p);
      else fs.writeFileSync(p, `${tag} ${i}\n`);
      expected.add(`n${i}`);
    }
  };
  put(l0, 0, 4000, 'l0');
  put(l1, 3000, 7000, 'l1');
  put(l2, 6000, 10000, 'l2');
  put(l2, 0, 500, 'l2-under');
  for (let i = 10000; i < 10100; i++) { fs.writeFileSync(path.join(l0, `n${i}`), 'top'); expected.add(`n${i}`); }
  for (let i = 9000; i < 9300; i++) { mkWhiteout(path.join(l1, `n${i}`)); expected.delete(`n${i}`); }
  for (let i = 5000; i < 5100; i++) { mkWhiteout(path.join(l0, `n${i}`)); expected.delete(`n${i}`); }
  const o = await mountOverlayd(ours);
  t.teardown(() => o.unmount());
  const k = mountKernel(kernL);
  t.teardown(() => k.unmount());

  const [lo, lk] = await Promise.all([run('ls', ['-f', 'big'], { cwd: o.merged }), run('ls', ['-f', 'big'], { cwd: k.merged })]);
  const namesO = lo.stdout.split('\n').filter(Boolean);
  const namesK = lk.stdout.split('\n').filter(Boolean);
  t.equal(namesO.length, expected.size + 2, `${expected.size} entries plus . and ..`);
  t.equal(new Set(namesO).size, namesO.length, 'no duplicates');
  t.same([...namesO].sort(), [...namesK].sort(), 'the same names as the kernel');
  t.same([...namesO].filter((n) => n !== '.' && n !== '..').sort(), [...expected].sort());
  const again = await run('ls', ['-f', 'big'], { cwd: o.merged });
  t.equal(again.stdout, lo.stdout, 'the same order when listed again');
  const long = (cwd: string) => run('ls', ['-lan', '--time-style=+%s', 'big'], { cwd });
  const [so, sk] = await Promise.all([long(o.merged), long(k.merged)]);
  const body = (s: string) => s.split('\n').filter((x) => !x.startsWith('total ') && !/ \.\.$/.test(x));
  t.same(body(so.stdout), body(sk.stdout), "ls -la: every entry's type, mode, links, owner, size, time, target");
  const count = "find big -mindepth 1 | wc -l; find big -type d | wc -l; find big -type f -name 'n*7' | sort | xargs cat | sha256sum";
  const [co, ck] = await Promise.all([sh(count, o.merged), sh(count, k.merged)]);
  t.equal(co.stdout, ck.stdout, 'find counts and cat reads the same');
});

t.test('. and .. are the directory and its merged parent', async (t) => {
  const l = layout(2);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  build(l.lowers[0], { d: { dir: { e: { dir: { f: { dir: {} } } } } } });
  build(l.lowers[1], { d: { dir: { e: { dir: {} }, x: 'x' }, mode: 0o700 } });
  build(l.upper as string, { d: { dir: {}, mode: 0o751 } });
  const k = cloneLayout(l);
  t.teardown(() => removeTree(path.dirname(k.merged)));
  const ours = await mountOverlayd(l);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  const probe = `
stat -c '%n %i' . d d/. d/e/.. d/e/f/../.. d/e d/e/. d/e/f/.. | awk '{print $1, $2}'
stat -c '%n %a %h %u %g' d/. d/e/.. d/e/f/../.. d/e/f/..
stat -c '%i' .. && stat -c '%i' ../.
ls -a d/e | tr '\\n' ' '; echo
cd d/e/f && pwd -P && cd ../.. && pwd -P
`;
  const [ro, rk] = await Promise.all([sh(probe, ours.merged), sh(probe, kern.merged)]);
  t.equal(ro.code, 0, ro.stderr);
  const lines = ro.stdout.trim().split('\n');
  const ino = Object.fromEntries(lines.slice(0, 8).map((x) => x.split(' ')));
  t.equal(ino['d/.'], ino.d, 'd/. is d');
  t.equal(ino['d/e/..'], ino.d, 'd/e/.. is d');
  t.equal(ino['d/e/f/../..'], ino.d);
  t.equal(ino['d/e/.'], ino['d/e']);
  t.equal(ino['d/e/f/..'], ino['d/e']);
  t.equal(lines[12], String(fs.statSync(path.dirname(l.merged)).ino), '.. of the mount root is the host parent');
  t.same(lines.slice(8, 12), rk.stdout.trim().split('\n').slice(8, 12), 'mode, links and owner of . and .. as the kernel');
  t.equal(lines[14], '. .. f ', '. and .. listed once, merged names once');
  t.same([norm(lines[15], ours.merged), norm(lines[16], ours.merged)], ['MNT/d/e/f', 'MNT/d'], 'getcwd through the mount');
  t.same(norm(ro.stdout, ours.merged).split('\n').slice(14), norm(rk.stdout, kern.merged).split('\n').slice(14));
});

t.test('statfs reports the upper filesystem, or the top lower one when read-only', async (t) => {
  const base = tmpdir();
  t.teardown(() => removeTree(base));
  const upFs = tmpfsDir(t, '48m', 4321);
  const topFs = tmpfsDir(t, '24m', 1234);
  for (const d of ['u', 'w', 'ku', 'kw']) fs.mkdirSync(path.join(upFs, d));
  fs.mkdirSync(path.join(topFs, 'top'));
  fs.writeFileSync(path.join(topFs, 'top', 'f'), Buffer.alloc(1 << 20, 1));
  for (const d of ['low', 'm1', 'm2', 'm3', 'm4']) fs.mkdirSync(path.join(base, d));
  const lowers = [path.join(topFs, 'top'), path.join(base, 'low')];
  const rw: Layout = { lowers, upper: path.join(upFs, 'u'), work: path.join(upFs, 'w'), merged: path.join(base, 'm1') };
  const rwK: Layout = { lowers, upper: path.join(upFs, 'ku'), work: path.join(upFs, 'kw'), merged: path.join(base, 'm2') };
  const ro: Layout = { lowers, merged: path.join(base, 'm3') };
  const roK: Layout = { lowers, merged: path.join(base, 'm4') };
  const mounts = [await mountOverlayd(rw), mountKernel(rwK), await mountOverlayd(ro), mountKernel(roK)];
  t.teardown(async () => { for (const m of mounts.reverse()) await m.unmount(); });
  // Block size, fundamental block size, total/free/available blocks, total/free inodes, NAME_MAX.
  const fmt = '%s %S %b %f %a %c %d %l';
  const r = await run('stat', ['-f', '-c', fmt, rw.merged, rwK.merged, upFs, ro.merged, roK.merged, topFs]);
  t.equal(r.code, 0, r.stderr);
  const [ours, kern, upper, oursRo, kernRo, top] = r.stdout.trim().split('\n');
  t.equal(ours, upper, 'read-write: the upper filesystem');
  t.equal(kern, upper, '(as the kernel reports it)');
  t.equal(oursRo, top, 'read-only: the top lower filesystem');
  t.equal(kernRo, top, '(as the kernel reports it)');
  t.equal(upper.split(' ')[5], '4321');
  t.equal(top.split(' ')[5], '1234');
});

t.test('a 256-byte name is ENAMETOOLONG through the mount, as on the kernel', async (t) => {
  const l = layout(2);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  const n255 = 'n'.repeat(255);
  build(l.lowers[1], { d: { dir: { [n255]: 'fits' } } });
  build(l.lowers[0], { d: { dir: {} } });
  const k = cloneLayout(l);
  t.teardown(() => removeTree(path.dirname(k.merged)));
  const ours = await mountOverlayd(l);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  const probe = `for p in d/${n255} d/${'n'.repeat(256)} d/${'m'.repeat(255)} ${'x'.repeat(300)}/y d/${'é'.repeat(128)}; do stat -c %s "$p" 2>&1 | sed 's/.*: //'; done; cat d/${n255}`;
  const [ro, rk] = await Promise.all([sh(probe, ours.merged), sh(probe, kern.merged)]);
  t.equal(ro.stdout, '4\nFile name too long\nNo such file or directory\nFile name too long\nFile name too long\nfits');
  t.equal(ro.stdout, rk.stdout);
});

t.test('paths longer than PATH_MAX read as on the kernel', async (t) => {
  const l = layout(2);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  // Built fd-relative: no syscall here ever sees the whole path.
  const mk = `
import os, sys
comp, depth, leaf = sys.argv[2], int(sys.argv[3]), sys.argv[4]
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
for i in range(depth):
    try: os.mkdir(comp, dir_fd=fd)
    except FileExistsError: pass
    nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd); os.close(fd); fd = nfd
f = os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd); os.write(f, (leaf + ' content').encode()); os.close(f)
os.symlink('../' + leaf, leaf + '.ln', dir_fd=fd)
`;
  const comp = 'q'.repeat(250);
  // cp -a cannot copy such a tree (it hands whole paths to the kernel): build the kernel's twice.
  const k = layout(2);
  t.teardown(() => removeTree(path.dirname(k.merged)));
  for (const x of [l, k]) {
    await python(mk, [x.lowers[1], comp, '20', 'low']);
    await python(mk, [x.lowers[0], comp, '20', 'top']);
    await python(mk, [x.upper as string, comp, '20', 'up']);
  }
  const ours = await mountOverlayd(l);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  const read = `
import os, sys
fd = os.open('.', os.O_RDONLY | os.O_DIRECTORY)
for i in range(20):
    nfd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd); os.close(fd); fd = nfd
print(sorted(os.listdir(fd)))
for n in ('low', 'top', 'up'):
    f = os.open(n, os.O_RDONLY, dir_fd=fd); print(n, os.read(f, 100), oct(os.stat(n, dir_fd=fd).st_mode)); os.close(f)
    print(os.readlink(n + '.ln', dir_fd=fd))
print(os.stat('.', dir_fd=fd).st_nlink, len(os.getcwd()))
`;
  const [ro, rk] = await Promise.all([python(read, [comp], ours.merged), python(read, [comp], kern.merged)]);
  t.match(ro, /\['low', 'low.ln', 'top', 'top.ln', 'up', 'up.ln'\]/);
  t.equal(ro, rk, 'python, fd-relative all the way down');
  const find = "find . -printf '%d %y %s %m %l\\n' | sort | uniq -c";
  const [fo, fk] = await Promise.all([sh(find, ours.merged), sh(find, kern.merged)]);
  t.equal(fo.code, 0, fo.stderr);
  t.equal(fo.stdout, fk.stdout, 'find walks it the same');
});

t.test('a read-only mount refuses writes with EROFS as the kernel does', async (t) => {
  const l = layout(2, false);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  build(l.lowers[0], { f: 'file', d: { dir: { x: 'x' } }, e: { dir: {} } });
  build(l.lowers[1], { g: 'g' });
  const k = cloneLayout(l);
  t.teardown(() => removeTree(path.dirname(k.merged)));
  const ours = await mountOverlayd(l);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  const probe = [
    'touch new', 'touch f', 'mkdir nd', 'rmdir e', 'rm f', 'mv f f2', 'ln -s f sl', 'ln f hl', 'chmod 600 f',
    'chown 1 f', 'setfattr -n user.a -v 1 f', 'truncate -s 0 g', 'sh -c "echo x > f"', 'sh -c "echo x >> d/x"', 'mkfifo ff',
  ].map((c) => `${c} 2>&1 | sed 's/.*: //'; `).join('') + 'cat f g d/x';
  const [ro, rk] = await Promise.all([sh(probe, ours.merged), sh(probe, kern.merged)]);
  t.equal(norm(ro.stdout, ours.merged), norm(rk.stdout, kern.merged));
  t.equal(ro.stdout.split('\n').filter((x) => x === 'Read-only file system').length, 15, 'every write refused');
  t.match(ro.stdout, /filegx$/);
});

t.test('more merged directories than the directory cache holds walk as on the kernel', async (t) => {
  const base = tmpfsDir(t);
  const lowers = ['l0', 'l1'].map((n) => path.join(base, n));
  // 42 x 100 = 4200 merged directories (the cache keeps 4096), a file in each from one layer.
  for (const [i, layer] of lowers.entries()) {
    for (let a = 0; a < 42; a++) {
      for (let b = 0; b < 100; b++) {
        const d = path.join(layer, `a${a}`, `b${b}`);
        fs.mkdirSync(d, { recursive: true });
        if ((a + b) % 2 === i) fs.writeFileSync(path.join(d, `f${i}`), `${a}/${b}/${i}`);
      }
    }
  }
  const ours: Layout = { lowers, merged: path.join(base, 'm1') };
  const kernL: Layout = { lowers, merged: path.join(base, 'm2') };
  for (const m of [ours.merged, kernL.merged]) fs.mkdirSync(m);
  const o = await mountOverlayd(ours);
  t.teardown(() => o.unmount());
  const k = mountKernel(kernL);
  t.teardown(() => k.unmount());
  const walk = "T=$(mktemp); find . -printf '%y %n %s %p\\n' | sort > $T; wc -l < $T; sha256sum < $T; rm $T; find . -name f1 -path './a4*' | sort | xargs cat | sha256sum";
  // Twice at once on our side, so that evictions happen while the other walk resolves.
  const [o1, o2, kk] = await Promise.all([sh(walk, o.merged), sh(walk, o.merged), sh(walk, k.merged)]);
  t.equal(kk.stdout.split('\n')[0], String(1 + 42 + 4200 + 4200), 'every directory and file');
  t.equal(o1.stdout, kk.stdout);
  t.equal(o2.stdout, kk.stdout);
});
