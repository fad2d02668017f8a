// What the fuse-native transport (-o transport=fuse-native, src/fuse) must do on top of libfuse
// 2's path API, compared with kernel overlayfs doing the same on a clone: files unlinked or
// renamed over while open, which libfuse renames to .fuse_hidden* and keeps reaching by that
// path (src/fuse/walk.ts), keep working through every call that comes by path, also after their
// directory is renamed; nothing of them is left in upper or the work directory.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { compareRun, sameAsKernel } from '../lib/compare-run';
import { removeTree } from '../lib/stack';
import { tmpdir, type Tree } from '../lib/tree';

const NATIVE = ['transport=fuse-native'];

const scripts = tmpdir();
t.teardown(() => removeTree(scripts));

const layers: Tree[] = [
  { data: { dir: { u: 'unlinked', w: 'written', o: 'other' } } },
  { data: { dir: { low: 'lower' } } },
];

t.test('files unlinked or renamed over while open: read, write, fstat, ftruncate, fchmod, futimes through them, also after their directory moves', async (t) => {
  // No st_nlink: libfuse 2 (fuse-native's getStatArray) sends 0 as 1. No mtime but one set:
  // the two mounts' steps run at different times.
  const py = path.join(scripts, 'unlinked.py');
  fs.writeFileSync(py, `import os
def shown(fd):
    st = os.fstat(fd)
    return (os.pread(fd, 64, 0), oct(st.st_mode & 0o7777), st.st_size)
fd = os.open('data/u', os.O_RDWR)
os.unlink('data/u')
os.pwrite(fd, b'STILL', 0)
print('unlinked', shown(fd))
os.ftruncate(fd, 3)
os.fchmod(fd, 0o600)
os.utime(fd, (1000000000, 1000000000))
print('changed', shown(fd), int(os.fstat(fd).st_mtime))
r = os.open('data/low', os.O_RDONLY)
os.unlink('data/low')
print('lower unlinked', shown(r))
w = os.open('data/w', os.O_RDWR)
os.rename('data/o', 'data/w')
os.pwrite(w, b'OLD', 0)
os.fchmod(w, 0o640)
print('renamed over', open('data/w').read(), shown(w))
os.mkdir('up')
n = os.open('up/new', os.O_CREAT | os.O_RDWR, 0o644)
os.write(n, b'new file')
os.unlink('up/new')
os.rename('up', 'moved')
os.ftruncate(n, 4)
os.fchmod(n, 0o604)
print('dir moved', shown(n))
for x in (fd, r, w, n):
    os.close(x)
print(sorted(os.listdir('data')), os.listdir('moved'))
`);
  const c = await compareRun(layers, [`python3 ${py}`, 'ls -a data moved'], { oursExtra: NATIVE });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[0].out, /changed \(b'STI', '0o600', 3\) 1000000000/);
  t.match(c.ours.steps[0].out, /dir moved \(b'new ', '0o604', 4\)/);
});
