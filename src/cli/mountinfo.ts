// /proc/self/mountinfo, decoded: which mounts this mount namespace has, of what type, from
// which source. The CLI reads it to find overlayd mounts (fuse.overlayd), dead or alive, and
// to tell which mount a path lives on.
import fs from 'node:fs';

export interface MountEntry {
  id: number;
  parent: number;
  /** major:minor of the filesystem. */
  dev: string;
  mountpoint: string;
  /** Per-mount options (rw/ro, nosuid, ...). */
  mountOptions: string;
  fstype: string;
  source: string;
  /** Superblock options. */
  superOptions: string;
}

export const OVERLAYD_FSTYPE = 'fuse.overlayd';

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
export function unoctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (f.length < 10 || dash < 0) continue;
    out.push({
      id: Number(f[0]), parent: Number(f[1]), dev: f[2], mountpoint: unoctal(f[4]), mountOptions: f[5],
      fstype: f[dash + 1], source: unoctal(f[dash + 2]), superOptions: f[dash + 3] ?? '',
    });
  }
  return out;
}

export function readMounts(): MountEntry[] {
  try {
    return parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  } catch {
    return [];
  }
}

/**
 * /proc/self/mountinfo held open for a daemon that watches its own mount: rereading it (a
 * pread from 0 restarts the listing) needs no new fd, so a daemon whose clients hold every
 * fd it may open still sees its mount. A failed read says nothing about any mount.
 */
export class MountinfoReader {
  private readonly fd: number;
  private buf = Buffer.alloc(64 * 1024);

  constructor() {
    this.fd = fs.openSync('/proc/self/mountinfo', 'r');
  }

  /** The mounts now, or the error that kept us from reading them. */
  read(): MountEntry[] | Error {
    try {
      let len = 0;
      for (;;) {
        if (len === this.buf.length) this.buf = Buffer.concat([this.buf, Buffer.alloc(this.buf.length)]);
        const n = fs.readSync(this.fd, this.buf, len, this.buf.length - len, len);
        if (n === 0) break;
        len += n;
      }
      return parseMountinfo(this.buf.toString('utf8', 0, len));
    } catch (err) {
      return err as Error;
    }
  }

  close(): void {
    try { fs.closeSync(this.fd); } catch { /* closed */ }
  }
}

/** The mount visible at `mountpoint` (the last one mounted there), if any. */
export function mountAt(mountpoint: string, mounts = readMounts()): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const m of mounts) if (m.mountpoint === mountpoint) found = m;
  return found;
}

/** The mount that `realPath` (already free of symlinks) lives on: the longest mountpoint prefix. */
export function mountOf(realPath: string, mounts = readMounts()): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const mp = m.mountpoint;
    const under = mp === '/' || realPath === mp || realPath.startsWith(mp + '/');
    if (under && (best === undefined || mp.length >= best.mountpoint.length)) best = m;
  }
  return best;
}

export function overlaydMounts(mounts = readMounts()): MountEntry[] {
  return mounts.filter((m) => m.fstype === OVERLAYD_FSTYPE);
}
