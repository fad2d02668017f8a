// Scratch space for tests that build large trees: a tmpfs of its own (integration tests run
// in a private mount namespace), so that building, cloning and removing thousands of entries
// costs no disk I/O on a machine others share. Gone at teardown with one umount.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { layoutIn, type Layout } from './mounts';
import { tmpdir } from './tree';

/** Mounts a fresh tmpfs (size like "64m", inode count) at a new dir; unmounted at teardown. */
export function tmpfsDir(t: { teardown(fn: () => void): void }, size = '256m', inodes = 200000): string {
  const dir = tmpdir('overlayd-tmpfs-');
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},nr_inodes=${inodes}`, 'overlayd-test', dir], { encoding: 'utf8' });
  if (r.status !== 0) { fs.rmdirSync(dir); throw new Error(`mount tmpfs at ${dir}: ${r.stderr}`); }
  t.teardown(() => {
    spawnSync('umount', [dir]);
    if (spawnSync('mountpoint', ['-q', dir]).status === 0) spawnSync('umount', ['-l', dir]);
    fs.rmdirSync(dir);
  });
  return dir;
}

/**
 * Like mounts.ts' layout(), on a tmpfs of its own: n lowers, upper + work unless told not to,
 * merged. Note that overlayd reports real inode numbers only from ext4 layers, so tests of
 * st_ino or hard links belong on layout().
 */
export function tmpfsLayout(t: { teardown(fn: () => void): void }, n: number, withUpper = true, size = '512m'): Layout {
  return layoutIn(tmpfsDir(t, size), n, withUpper);
}
