// Small checks on real layer dirs for the write-path unit tests: whiteouts, xattrs, times,
// the work directory, and reading/writing through the core's handles.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { C } from '../../src/host/native';
import type { Overlay } from '../../src/core/overlay';
import { SHARED_WHITEOUT } from '../../src/core/marks';

/** "A whiteout is created as a character device with 0/0 device number." */
export function isWhiteout(p: string): boolean {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  return !!st && st.isCharacterDevice() && st.rdev === 0;
}

/** The value of xattr `name` on `p` (not following symlinks), or undefined when absent. */
export function xattrOf(p: string, name: string): string | undefined {
  const r = spawnSync('getfattr', ['-h', '--absolute-names', '--only-values', '-n', name, p], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : undefined;
}

export function setXattr(p: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, p]);
}

/** Every xattr name on `p`, sorted. */
export function xattrNames(p: string): string[] {
  const r = spawnSync('getfattr', ['-h', '--absolute-names', '-d', '-m', '-', p], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('=')[0]).sort();
}

/** Sets atime and mtime with nanoseconds (touch -h -d), e.g. '2001-02-03 04:05:06.123456789'. */
export function setTimes(p: string, when: string): void {
  execFileSync('touch', ['-h', '-d', when, p]);
}

/** atime and mtime as "sec.nsec" strings, exact. */
export function timesOf(p: string): { atime: string; mtime: string } {
  const [atime, mtime] = execFileSync('stat', ['-c', '%.9X|%.9Y', p], { encoding: 'utf8' }).trim().split('|');
  return { atime, mtime };
}

/**
 * Names left in workdir/work: after any completed operation there must be none, but for the
 * shared whiteout a mounted overlay keeps there (as the kernel's does).
 */
export function workLeft(work: string): string[] {
  return fs.readdirSync(path.join(work, 'work')).filter((n) => n !== SHARED_WHITEOUT);
}

/** The merged file's whole content, read through a core handle. */
export async function readAll(ov: Overlay, p: string): Promise<string> {
  const h = ov.open(p, C.O_RDONLY);
  try {
    const size = ov.fgetattr(h).size;
    const buf = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const n = await ov.read(h, buf.subarray(got), size - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString();
  } finally {
    ov.release(h);
  }
}

/** Opens with `flags`, writes `data` at `pos`, closes. */
export async function writeAt(ov: Overlay, p: string, data: string, pos: number, flags = C.O_WRONLY): Promise<void> {
  const h = ov.open(p, flags);
  try {
    const buf = Buffer.from(data);
    const n = await ov.write(h, buf, buf.length, pos);
    if (n !== buf.length) throw new Error(`short write: ${n} of ${buf.length}`);
  } finally {
    ov.release(h);
  }
}
