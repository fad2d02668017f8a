// What only the kernel transport (-o transport=kernel, src/fuse-kernel) can carry, compared
// with kernel overlayfs doing the same on a clone: the caller's uid/gid on new objects through
// an allow_other mount, nanosecond times, renameat2 flags, fallocate, SEEK_DATA/SEEK_HOLE,
// hard links sharing one inode, unlinked open files; and what only it does: 64-bit inode
// numbers across filesystems, and FUSE passthrough (reads that never reach the daemon).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compareRun, sameAsKernel, stepAs } from '../lib/compare-run';
import { layout, mountOverlayd, type Layout } from '../lib/mounts';
import { removeTree } from '../lib/stack';
import { build, tmpdir, type Tree } from '../lib/tree';

const KERNEL = ['transport=kernel'];

const scripts = tmpdir();
t.teardown(() => removeTree(scripts));
let nScripts = 0;

/** A python script in a file outside both mounts; steps run it by path. */
function script(body: string): string {
  const p = path.join(scripts, `kt${nScripts++}.py`);
  fs.writeFileSync(p, `import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def e(f):
    try:
        r = f()
        return 'ok' if r is None else r
    except OSError as x:
        return errno.errorcode[x.errno]
def renameat2(a, b, flags):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) == 0:
        return 'ok'
    return errno.errorcode[ctypes.get_errno()]
${body}`);
  return p;
}

const USER = 4321;
const asUser = (cmd: string): string => stepAs(USER, cmd);

const layers: Tree[] = [
  { shared: { dir: {}, mode: 0o1777 }, data: { dir: { f: '0123456789', a: 'a', b: 'b', u: 'unlinked', l: 'link me' } } },
  { data: { dir: { low: 'lower' } } },
];

t.test('a caller without CAP_FSETID drops setuid bits where the kernel does, also on a file with no name left', async (t) => {
  const suid: Tree[] = [
    { shared: { dir: {}, mode: 0o1777 } },
    { shared: { dir: { t: { file: 'truncate me', mode: 0o4766 }, g: { file: 'group', mode: 0o2776 }, n: { file: 'nx', mode: 0o2766 }, w: { file: 'written', mode: 0o4766 }, o: 'other' } } },
  ];
  const c = await compareRun(suid, [
    // open(O_TRUNC): the kernel's FUSE leaves the VFS's should_remove_suid to the daemon.
    asUser(': > shared/t; : > shared/g; : > shared/n; stat -c "%n %a %s" shared/t shared/g shared/n'),
    // The writer's setattr reaches a file renamed over while open: through its handle.
    'exec 3<>shared/w; mv shared/o shared/w; ' + asUser('printf abc >&3') + '; stat -L -c "%a %s" /proc/self/fd/3; cat shared/w',
  ], { oursExtra: [...KERNEL, 'allow_other'], openBase: true, xattrs: false });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[0].out, /shared\/t 766 0\nshared\/g 776 0\nshared\/n 766 0/, 'setuid dropped; setgid too, with group exec or for a caller outside the group');
});

t.test('files another user creates through an allow_other mount are that user\'s, with their umask', async (t) => {
  const c = await compareRun(layers, [
    asUser('echo mine > shared/f; mkdir shared/d; ln -s f shared/s; mkfifo shared/p; (umask 027; echo x > shared/m; mkdir shared/md); ' +
      'stat -c "%u:%g %a %F %n" shared/f shared/d shared/s shared/p shared/m shared/md'),
    asUser('echo more >> shared/f; mv shared/f shared/d/g; ln shared/d/g shared/h; cat shared/h'),
  ], { oursExtra: [...KERNEL, 'allow_other'], openBase: true, xattrs: false });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[0].out, new RegExp(`${USER}:${USER} 644 regular file shared/f`), 'a file belongs to its creator');
  t.match(c.ours.steps[0].out, new RegExp(`${USER}:${USER} 750 directory shared/md`), 'the creator\'s umask applies');
});

t.test('nanosecond times: touch -d keeps every digit, atime and mtime apart, before 1970 too', async (t) => {
  const c = await compareRun(layers, [
    "touch -d '2001-02-03 04:05:06.123456789' data/f data/low new && stat -c '%y %n' data/f data/low new",
    "touch -a -d '1999-12-31 23:59:59.987654321' data/f && stat -c '%x | %y' data/f",
    "touch -m -d '1960-06-07 08:09:10.000000001' data/a && stat -c '%x | %y' data/a | cut -d'|' -f2",
    `python3 ${script("st = os.stat('data/f'); print(st.st_mtime_ns, st.st_atime_ns)")}`,
  ], { oursExtra: KERNEL, mtime: true });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[0].out, /2001-02-03 04:05:06\.123456789000? \+0000 data\/f|04:05:06\.123456789/, 'ns mtime kept');
});

t.test('renameat2: RENAME_NOREPLACE, and RENAME_WHITEOUT refused, as the kernel', async (t) => {
  const py = script(`
print('noreplace onto an existing name', renameat2('data/a', 'data/b', 1))
print('noreplace onto a lower name', renameat2('data/a', 'data/low', 1))
print('noreplace to a new name', renameat2('data/a', 'data/c', 1))
print('noreplace of a lower file', renameat2('data/low', 'data/low2', 1))
print('whiteout flag', renameat2('data/b', 'data/d', 4))
print(sorted(os.listdir('data')))
`);
  const c = await compareRun(layers, [`python3 ${py}`], { oursExtra: KERNEL });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[0].out, /onto an existing name EEXIST/);
  t.match(c.ours.steps[0].out, /to a new name ok/);
});

/** A 4 MiB lower file with data at 0 and at 1 MiB, holes elsewhere. */
function sparse(l: Layout): void {
  const fd = fs.openSync(path.join(l.lowers[1], 'sparse'), 'w');
  fs.writeSync(fd, Buffer.alloc(4096, 'A'), 0, 4096, 0);
  fs.writeSync(fd, Buffer.alloc(4096, 'B'), 0, 4096, 1 << 20);
  fs.ftruncateSync(fd, 4 << 20);
  fs.closeSync(fd);
}

t.test('SEEK_DATA/SEEK_HOLE on lower and upper files; fallocate, keep-size and hole punching', async (t) => {
  const seek = `
def seeks(name):
    fd = os.open(name, os.O_RDONLY)
    out = []
    for o in (0, 5000, 1 << 20, (1 << 20) + 5000, 3 << 20):
        out.append((e(lambda: os.lseek(fd, o, os.SEEK_DATA)), e(lambda: os.lseek(fd, o, os.SEEK_HOLE))))
    os.close(fd)
    return out
`;
  const c = await compareRun(layers, [
    `python3 ${script(`${seek}\nprint('lower', seeks('sparse'))`)}`,
    // Made through the mount: holes are the caller's, not a copy-up's (whose chunking differs).
    `python3 ${script(`${seek}
fd = os.open('made', os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b'A' * 4096, 0); os.pwrite(fd, b'B' * 4096, 1 << 20); os.ftruncate(fd, 4 << 20); os.close(fd)
print('made', seeks('made'))`)}`,
    'fallocate -o 2M -l 64K made && fallocate -p -o 0 -l 4096 made && fallocate -n -o 4M -l 1M made && stat -c "%s %b" made',
    `python3 ${script(`${seek}\nprint('after fallocate', seeks('made'))`)}`,
    'fallocate -l 1M data/f && stat -c "%s %b" data/f && fallocate -d data/f && stat -c "%s %b" data/f',
    `python3 ${script("fd = os.open('data/a', os.O_RDWR); os.posix_fallocate(fd, 0, 65536); print(os.fstat(fd).st_size); os.close(fd)")}`,
  ], { oursExtra: KERNEL, prepare: sparse });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[0].out, /lower \[\(0, 4096\)/, 'the lower file reports its hole at 4096');
  t.match(c.ours.steps[2].out, /^4194304 /, 'fallocate -n kept the size');
});

t.test('a reader opened before a copy-up seeks and copies what was written since, as it reads it', async (t) => {
  // The kernel's stacked file follows the copy-up (ovl_real_fdget) for every operation, not
  // only read: SEEK_DATA and copy_file_range of the old reader see the upper file (each on a
  // reader that has not read since, since a read follows the copy-up by itself).
  const py = script(`
r = os.open('data/f', os.O_RDONLY)
w = os.open('data/f', os.O_RDWR)
os.pwrite(w, b'XYZ', 0); os.pwrite(w, b'NEW', 1 << 20); os.close(w)
print('data after 8192', e(lambda: os.lseek(r, 8192, os.SEEK_DATA)), 'size', os.lseek(r, 0, os.SEEK_END))
r2 = os.open('data/a', os.O_RDONLY)
w = os.open('data/a', os.O_RDWR)
os.pwrite(w, b'XYZ', 0); os.close(w)
o = os.open('copied', os.O_RDWR | os.O_CREAT, 0o644)
print('copied', e(lambda: os.copy_file_range(r2, o, 10, 0, 0)), os.pread(o, 10, 0))
print('read', os.pread(r, 10, 0), os.pread(r2, 10, 0))
`);
  const c = await compareRun(layers, [`python3 ${py}`], { oursExtra: KERNEL });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[0].out, /data after 8192 1048576/, 'SEEK_DATA finds the data written after the open');
  t.match(c.ours.steps[0].out, /copied 3 b'XYZ'/, 'copy_file_range copies the upper file');
});

t.test('hard links share one inode and nlink; an unlinked open file keeps working; no .fuse_hidden', async (t) => {
  const py = script(`
os.link('data/l', 'data/l2')
a, b = os.stat('data/l'), os.stat('data/l2')
print('same inode', a.st_ino == b.st_ino, 'nlink', a.st_nlink, b.st_nlink)
os.unlink('data/l')
print('nlink after unlink', os.stat('data/l2').st_nlink)
fd = os.open('data/u', os.O_RDWR)
os.unlink('data/u')
os.pwrite(fd, b'STILL', 0)
print('unlinked', os.pread(fd, 64, 0), os.fstat(fd).st_nlink, os.fstat(fd).st_size)
os.ftruncate(fd, 3)
print('truncated', os.pread(fd, 64, 0))
r = os.open('data/low', os.O_RDONLY)
os.unlink('data/low')
print('lower unlinked', os.pread(r, 64, 0))
os.close(fd); os.close(r)
print(sorted(os.listdir('data')))
`);
  const c = await compareRun(layers, [`python3 ${py}`, 'ls -a data'], { oursExtra: KERNEL });
  sameAsKernel(t, c, true);
  t.match(c.ours.steps[0].out, /same inode True nlink 2 2/);
  t.match(c.ours.steps[0].out, /unlinked b'STILLked' 0 8/);
});

t.test('a reader and a writer of one lower file at once: the writer copies up, the reader follows', async (t) => {
  const py = script(`
r = os.open('data/f', os.O_RDONLY)
print('before', os.pread(r, 64, 0))
w = os.open('data/f', os.O_WRONLY)
os.pwrite(w, b'AB', 0)
print('reader', os.pread(r, 64, 0), 'new reader', open('data/f', 'rb').read())
r2 = os.open('data/f', os.O_RDONLY)
os.pwrite(w, b'CD', 2)
print('both readers', os.pread(r, 64, 0), os.pread(r2, 64, 0))
os.close(w); os.close(r); os.close(r2)
`);
  const c = await compareRun(layers, [`python3 ${py}`], { oursExtra: KERNEL });
  sameAsKernel(t, c, true);
});

/** Whether this kernel can do FUSE passthrough at all (6.9+ with CONFIG_FUSE_PASSTHROUGH). */
function kernelAtLeast(major: number, minor: number): boolean {
  const [a, b] = os.release().split('.').map((x) => parseInt(x, 10));
  return a > major || (a === major && b >= minor);
}

/**
 * Reads all of `file` (already open) while the daemon is stopped: only passthrough can answer.
 * Resolves with the bytes read, or undefined if the read waited for the daemon.
 */
async function readWhileStopped(pid: number, fd: number, size: number): Promise<number | undefined> {
  process.kill(pid, 'SIGSTOP');
  let timer: NodeJS.Timeout | undefined;
  try {
    const buf = Buffer.alloc(size);
    const read = new Promise<number>((resolve, reject) => fs.read(fd, buf, 0, size, 0, (err, n) => (err ? reject(err) : resolve(n))));
    const late = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), 3000); });
    const r = await Promise.race([read, late]);
    if (r === undefined) { process.kill(pid, 'SIGCONT'); await read; }
    return r;
  } finally {
    clearTimeout(timer);
    process.kill(pid, 'SIGCONT');
  }
}

t.test('passthrough: file data never reaches the daemon', { skip: kernelAtLeast(6, 9) ? false : 'FUSE passthrough needs Linux 6.9+' }, async (t) => {
  const big = Buffer.alloc(8 << 20, 'p');
  // A read-only mount: every file is final, so every read may go straight to the layer.
  const ro = layout(2, false);
  fs.writeFileSync(path.join(ro.lowers[1], 'big'), big);
  const m1 = await mountOverlayd(ro, KERNEL);
  t.teardown(() => m1.unmount());
  let fd = fs.openSync(path.join(ro.merged, 'big'), 'r');
  t.equal(await readWhileStopped(m1.daemon?.pid ?? 0, fd, big.length), big.length, 'a lower file read with the daemon stopped (read-only mount)');
  fs.closeSync(fd);
  await m1.unmount();

  // A writable mount: files written through the mount, and files already in upper.
  const rw = layout(1);
  fs.writeFileSync(path.join(rw.upper as string, 'up'), big);
  const m2 = await mountOverlayd(rw, KERNEL);
  t.teardown(() => m2.unmount());
  fs.writeFileSync(path.join(rw.merged, 'new'), big);
  for (const name of ['new', 'up']) {
    fd = fs.openSync(path.join(rw.merged, name), 'r');
    t.equal(await readWhileStopped(m2.daemon?.pid ?? 0, fd, big.length), big.length, `${name}: read with the daemon stopped`);
    fs.closeSync(fd);
  }
  t.same(fs.readFileSync(path.join(rw.upper as string, 'new')), big, 'what was written is in upper');
  await m2.unmount();

  // A lower file on a writable mount: its reader goes through the daemon (to follow a later
  // copy-up), unless -o passthrough=all trades that for host-speed reads.
  const low = layout(1);
  fs.writeFileSync(path.join(low.lowers[0], 'low'), big);
  for (const mode of ['upper', 'all']) {
    const m = await mountOverlayd(low, [...KERNEL, `passthrough=${mode}`]);
    t.teardown(() => m.unmount());
    fd = fs.openSync(path.join(low.merged, 'low'), 'r');
    const got = await readWhileStopped(m.daemon?.pid ?? 0, fd, big.length);
    fs.closeSync(fd);
    if (mode === 'all') t.equal(got, big.length, 'passthrough=all: a lower file read with the daemon stopped');
    else t.equal(got, undefined, 'passthrough=upper: a lower file\'s reads wait for the daemon');
    await m.unmount();
  }
});

t.test('inode numbers are 64-bit: a lower layer on another filesystem reports xino-style numbers, stable across mounts', async (t) => {
  const l = layout(1);
  const low = l.lowers[0];
  const r = spawnSync('mount', ['-t', 'tmpfs', 'overlayd-test', low]);
  if (r.status !== 0) { t.fail('cannot mount tmpfs here'); return; }
  t.teardown(() => { spawnSync('umount', ['-l', low]); });
  build(low, { d: { dir: { f: 'on tmpfs' } }, g: 'g' });
  const host = (p: string): bigint => fs.statSync(path.join(low, p), { bigint: true }).ino;
  // The core's numbering: the upper filesystem is 0, the tmpfs 1, in the top 8 bits.
  const want = (p: string): bigint => (1n << 56n) | host(p);
  const seen: Record<string, bigint>[] = [];
  for (let round = 0; round < 2; round++) {
    const m = await mountOverlayd(l, KERNEL);
    try {
      const ino = (p: string): bigint => fs.statSync(path.join(l.merged, p), { bigint: true }).ino;
      seen.push({ f: ino('d/f'), g: ino('g'), d: ino('d') });
      if (round === 0) {
        t.equal(ino('d/f'), want('d/f'), 'st_ino of a tmpfs file carries the layer in its high bits');
        t.equal(ino('d'), want('d'), 'and of a tmpfs directory');
        t.ok(ino('d/f') > 0xffffffffn, 'more than 32 bits');
        const py = spawnSync('python3', ['-c', 'import os,sys; print(" ".join(f"{e.name}={e.inode()}" for e in os.scandir(sys.argv[1])))', path.join(l.merged, 'd')], { encoding: 'utf8' });
        t.equal(py.stdout.trim(), `f=${want('d/f')}`, 'd_ino as st_ino');
      }
    } finally {
      await m.unmount();
    }
  }
  t.same(seen[1], seen[0], 'the same numbers after a remount');
});
