// The work directory: where objects are built before they appear in upper (copy-up, creating
// over a whiteout) and where removed ones go before they are cleared, as the kernel's
// workdir/work. Set up as the kernel's ovl_make_workdir finds it: emptied of what an interrupted
// operation left, refused when a volatile mount marked it incompatible.
import { C, sys } from '../host/native';
import { isDir, lstatAt } from '../host/stat';
import type { CoreEvents } from './config';
import { E, FsError, check, fail } from './errors';

export const WORK_SUBDIR = 'work';

export class WorkDir {
  /** O_PATH fd of workdir/work. */
  readonly fd: number;
  private seq = 0;
  /**
   * Whether long work runs in worker threads: here, clearing what removals moved in. A
   * transport that can answer later sets it; otherwise all is done on this thread.
   */
  background = false;

  constructor(workRootFd: number, private readonly events: CoreEvents, volatile: boolean) {
    this.fd = prepareWorkDir(workRootFd, events, volatile);
  }

  close(): void {
    sys.close(this.fd);
  }

  /** A name in the work directory no one else uses. */
  tempName(): string {
    return `#overlayd.${process.pid}.${(this.seq++).toString(36)}`;
  }

  /**
   * Removes `tmp` from the work directory, where it is already out of sight: with `background`,
   * in a worker thread (a directory of whiteouts may hold many thousands); otherwise now. A
   * background failure leaves only a leftover the next mount clears; the operator hears of it.
   */
  discard(tmp: string): void {
    if (!this.background) {
      removeTree(this.fd, tmp);
      return;
    }
    const r = sys.removeTreeAsync(this.fd, tmp, (res) => {
      if (res < 0) this.events.warn('clearing a removed object from workdir/work failed', { name: tmp, errno: -res });
    });
    if (r < 0) removeTree(this.fd, tmp);
  }
}

/** workdir/work, emptied of anything an interrupted copy-up left behind. */
function prepareWorkDir(workRootFd: number, events: CoreEvents, volatile: boolean): number {
  // The kernel makes it mode 0 (it works in it with its mounter's capabilities); a daemon run by
  // a user has no CAP_DAC_OVERRIDE and must be able to enter it: 0700, also if a run left it 0.
  const byUser = (process.getuid?.() ?? 0) !== 0;
  const r = sys.mkdirat(workRootFd, WORK_SUBDIR, byUser ? 0o700 : 0);
  if (r < 0 && r !== -E.EEXIST) fail(-r, 'mkdir', 'workdir/work');
  if (r === -E.EEXIST && byUser) sys.fchmodat(workRootFd, WORK_SUBDIR, 0o700); // EPERM if not ours: the open below says so
  const fd = check(sys.openat(workRootFd, WORK_SUBDIR, C.O_PATH | C.O_NOFOLLOW | C.O_DIRECTORY, 0), 'open', 'workdir/work');
  try {
    refuseIncompat(fd);
    const list = check(sys.readdir(fd), 'readdir', 'workdir/work')[0];
    for (const name of list) removeTree(fd, name);
    if (list.length) events.warn('removed leftovers of an interrupted operation from workdir', { count: list.length });
    if (volatile) markVolatile(fd);
  } catch (err) {
    sys.close(fd);
    throw err;
  }
  return fd;
}

const INCOMPAT = 'incompat';

/**
 * What the kernel finds in work/incompat/ (its ovl_workdir_cleanup) forbids the mount: a
 * volatile mount leaves `volatile/` there, since its upper may have lost writes, and it stays
 * after a clean unmount until the user removes it. Cleaning it away would hide that loss.
 */
function refuseIncompat(workFd: number): void {
  const st = lstatAt(workFd, INCOMPAT);
  if (typeof st === 'number' || !isDir(st.mode)) return;
  const inner = check(sys.openat(workFd, INCOMPAT, C.O_PATH | C.O_NOFOLLOW | C.O_DIRECTORY, 0), 'open', 'workdir/work/incompat');
  try {
    const names = check(sys.readdir(inner), 'readdir', 'workdir/work/incompat')[0];
    if (names.length > 0) {
      throw new FsError(E.EINVAL, 'mount', `workdir/work/incompat/${names[0]}: overlay with incompat feature '${names[0]}' cannot be mounted (a volatile mount used this upper; remove workdir/work/incompat/${names[0]} once the upper is known good)`);
    }
  } finally {
    sys.close(inner);
  }
}

/** The kernel's marker of a volatile mount (ovl_create_volatile_dirty): incompat/volatile/dirty. */
function markVolatile(workFd: number): void {
  const mode = (process.getuid?.() ?? 0) !== 0 ? 0o700 : 0; // as workdir/work itself
  for (const at of [INCOMPAT, INCOMPAT + '/volatile']) {
    const r = sys.mkdirat(workFd, at, mode);
    if (r < 0 && r !== -E.EEXIST) fail(-r, 'mkdir', `workdir/work/${at}`);
  }
  const dirty = check(sys.openat(workFd, INCOMPAT + '/volatile/dirty', C.O_CREAT | C.O_WRONLY | C.O_NOFOLLOW, 0), 'create', 'workdir/work/incompat/volatile/dirty');
  check(sys.fsync(dirty, 0), 'fsync', 'workdir/work/incompat/volatile/dirty');
  sys.close(dirty);
}

/** rm -rf of `name` in `dirFd`, never following symlinks. */
export function removeTree(dirFd: number, name: string): void {
  const st = lstatAt(dirFd, name);
  if (typeof st === 'number') return;
  if (isDir(st.mode)) {
    const fd = sys.openat(dirFd, name, C.O_PATH | C.O_NOFOLLOW | C.O_DIRECTORY, 0);
    if (fd >= 0) {
      try {
        const list = sys.readdir(fd);
        if (typeof list !== 'number') for (const child of list[0]) removeTree(fd, child);
      } finally {
        sys.close(fd);
      }
    }
    check(sys.unlinkat(dirFd, name, C.AT_REMOVEDIR), 'rmdir', name);
  } else {
    check(sys.unlinkat(dirFd, name, 0), 'unlink', name);
  }
}
