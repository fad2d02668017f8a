// fsync() of a directory keeps what was done in it across a power cut, as on kernel overlayfs
// (ovl_dir_fsync syncs the upper directory). The layers lie on an ext4 of their own on a loop
// device, committing its journal only when asked (commit=600), so nothing but an fsync makes a
// change durable; `xfs_io -x -c shutdown` then cuts the power (no journal flush), and the
// filesystem is mounted again, its journal replayed, and read through the kernel's overlay.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isMounted, mountKernel, mountOverlayd, type Layout, type Mounted } from '../lib/mounts';
import { tmpdir } from '../lib/tree';

const REPEAT = Number(process.env.OVERLAYD_POWER_CUTS ?? 3);
// A container without loop devices cannot build the disk; everywhere else this runs.
const skip = fs.existsSync('/dev/loop-control') ? false : 'no loop devices (/dev/loop-control)';

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}

/** What each case does through the mount (argv[1]), in one process of its own. */
const CASES: Record<string, { lower: Record<string, string>; ops: string; check(m: string): Record<string, string | null> }> = {
  // The classic atomic replace: write a temp file, fsync it, rename it over, fsync the directory.
  'write tmp, fsync, rename over, fsync dir': {
    lower: { target: 'old\n' },
    ops: `
dfd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
fd = os.open(m + '/tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b'new\\n'); os.fsync(fd); os.close(fd)
os.rename(m + '/tmp', m + '/target')
os.fsync(dfd)`,
    check: (m) => ({ target: read(m, 'target'), tmp: read(m, 'tmp') }),
  },
  // The whiteout an unlink leaves must outlive the cut, or the lower file comes back.
  'unlink, fsync dir': {
    lower: { gone: 'lower\n' },
    ops: `
dfd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
os.unlink(m + '/gone')
os.fsync(dfd)`,
    check: (m) => ({ gone: read(m, 'gone') }),
  },
  // A directory opened while it lay only below: the unlink inside copies it up, and the fsync
  // of the handle opened before must sync that upper directory.
  'open dir, unlink inside (copy-up), fsync dir': {
    lower: { 'd/x': 'lower\n', 'd/y': 'stays\n' },
    ops: `
dfd = os.open(m + '/d', os.O_RDONLY | os.O_DIRECTORY)
os.unlink(m + '/d/x')
os.fsync(dfd)`,
    check: (m) => ({ 'd/x': read(m, 'd/x'), 'd/y': read(m, 'd/y') }),
  },
  // A rename between directories touches both (a copy-up and a whiteout in the source, the
  // name in the target): the target's fsync must keep all of it, as the kernel's does.
  'rename into another dir, fsync the target dir': {
    lower: { 'src/x': 'moved\n', 'dst/keep': 'k\n' },
    ops: `
dfd = os.open(m + '/dst', os.O_RDONLY | os.O_DIRECTORY)
os.rename(m + '/src/x', m + '/dst/y')
os.fsync(dfd)`,
    check: (m) => ({ 'src/x': read(m, 'src/x'), 'dst/y': read(m, 'dst/y') }),
  },
};

const WANT: Record<string, Record<string, string | null>> = {
  'write tmp, fsync, rename over, fsync dir': { target: 'new\n', tmp: null },
  'unlink, fsync dir': { gone: null },
  'open dir, unlink inside (copy-up), fsync dir': { 'd/x': null, 'd/y': 'stays\n' },
  'rename into another dir, fsync the target dir': { 'src/x': null, 'dst/y': 'moved\n' },
};

function read(m: string, name: string): string | null {
  try {
    return fs.readFileSync(path.join(m, name), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

for (const engine of ['overlayd', 'kernel'] as const) {
  for (const [name, c] of Object.entries(CASES)) {
    t.test(`${engine}: ${name}, then a power cut, ${REPEAT} times`, { skip }, async (t) => {
      const base = tmpdir('overlayd-powercut-');
      const img = path.join(base, 'fs.img');
      const disk = path.join(base, 'disk');
      const merged = path.join(base, 'merged');
      fs.mkdirSync(disk);
      fs.mkdirSync(merged);
      t.teardown(() => {
        for (const mp of [merged, merged, disk]) if (isMounted(mp)) spawnSync('umount', ['-l', mp]);
        fs.rmSync(base, { recursive: true, force: true });
      });
      const l: Layout = { lowers: [path.join(disk, 'l0')], upper: path.join(disk, 'upper'), work: path.join(disk, 'work'), merged };
      for (let i = 0; i < REPEAT; i++) {
        run('truncate', ['-s', '0', img]);
        run('truncate', ['-s', '64M', img]);
        run('mkfs.ext4', ['-q', '-F', img]);
        run('mount', ['-o', 'loop,commit=600', img, disk]);
        for (const [p, data] of Object.entries(c.lower)) {
          fs.mkdirSync(path.dirname(path.join(l.lowers[0], p)), { recursive: true });
          fs.writeFileSync(path.join(l.lowers[0], p), data);
        }
        fs.mkdirSync(l.upper as string);
        fs.mkdirSync(l.work as string);
        run('sync', ['-f', disk]); // the layers as built are on disk: only the case's changes are at stake
        const m: Mounted = engine === 'kernel' ? mountKernel(l) : await mountOverlayd(l);
        try {
          run('python3', ['-c', `import os, sys\nm = sys.argv[1]\n${c.ops}`, merged]);
          run('xfs_io', ['-x', '-c', 'shutdown', disk]);
        } finally {
          await m.unmount();
          run('umount', [disk]);
        }
        run('mount', ['-o', 'loop', img, disk]);
        const view = mountKernel(l);
        try {
          t.same(c.check(merged), WANT[name], `after power cut ${i + 1}`);
        } finally {
          await view.unmount();
          run('umount', [disk]);
        }
      }
    });
  }
}
