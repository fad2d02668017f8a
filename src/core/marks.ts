// Writing the union's marks in upper, in the kernel's format: whiteouts ("a whiteout is created
// as a character device with 0/0 device number"; where mknod is refused, an OCI `.wh.` file says
// the same) and opaque directories. Reading them is whiteout.ts's and presence.ts's.
import { C, sys } from '../host/native';
import { S_IFCHR } from '../host/stat';
import type { CoreEvents } from './config';
import { E, check, fail } from './errors';
import { WH_PREFIX } from './whiteout';
import { removeTree, type WorkDir } from './workdir';
import type { OverlayXattrs } from './xattrs';

/**
 * The name of the work directory's shared whiteout (see MarkWriter.linkWhiteout): there while
 * the mount is, removed at unmount; a crash leaves it for the next mount to clear, as any
 * leftover of work/.
 */
export const SHARED_WHITEOUT = '#overlayd.whiteout';

export class MarkWriter {
  /** mknod of whiteouts was refused (rootless): `.wh.` files from then on. */
  private whiteoutFiles = false;
  /** The whiteout every whiteout links to (see linkWhiteout), once made. */
  private sharedWhiteout: typeof SHARED_WHITEOUT | undefined;

  constructor(
    private readonly work: WorkDir,
    private readonly xattrs: OverlayXattrs,
    private readonly counts: { whiteouts: number },
    private readonly events: CoreEvents,
  ) {}

  /** Before the work directory closes: the kernel leaves its shared whiteout in work/ until the next mount; nothing is left here. */
  close(): void {
    if (this.sharedWhiteout !== undefined) sys.unlinkat(this.work.fd, this.sharedWhiteout, 0);
  }

  /** Leaves a whiteout at `name` in the upper directory `parentFd`, replacing what is there. */
  whiteout(parentFd: number, name: string): void {
    try {
      this.makeWhiteout(parentFd, name);
      this.counts.whiteouts++;
    } catch (err) {
      // The caller sees only an errno; the operator needs to know a name could not be hidden.
      this.events.error('whiteout failed', { name, err: String(err) });
      throw err;
    }
  }

  private makeWhiteout(parentFd: number, name: string): void {
    const workFd = this.work.fd;
    if (!this.whiteoutFiles) {
      // Where upper holds nothing by that name (a lower name removed: the common case), one
      // link puts the whiteout in place; else a link in the work directory replaces what is
      // there in one rename, as the kernel does (ovl_cleanup_and_whiteout).
      const r = this.linkWhiteout(parentFd, name);
      if (r === 0) return;
      if (r !== -E.EEXIST && r !== -E.EPERM) fail(-r, 'whiteout', name);
      if (r === -E.EEXIST) {
        const tmp = this.work.tempName();
        check(this.linkWhiteout(workFd, tmp), 'whiteout', name);
        const m = sys.renameat2(workFd, tmp, parentFd, name, 0);
        if (m === 0) return;
        if (m !== -E.EISDIR) {
          sys.unlinkat(workFd, tmp, 0);
          fail(-m, 'whiteout', name);
        }
        // A directory is in the way: swap it out atomically, then remove it.
        check(sys.renameat2(workFd, tmp, parentFd, name, C.RENAME_EXCHANGE), 'whiteout', name);
        this.work.discard(tmp);
        return;
      }
      this.whiteoutFiles = true;
      this.events.warn('mknod of whiteouts is not permitted here; using .wh. files (OCI layout) from now on');
    }
    removeTree(parentFd, name);
    const fd = check(sys.openat(parentFd, WH_PREFIX + name, C.O_CREAT | C.O_WRONLY, 0), 'whiteout', name);
    sys.close(fd);
  }

  /**
   * Links the work directory's shared whiteout at `dirFd`/`name`: one 0/0 character device
   * that every whiteout of this mount is a hard link of, as the kernel's overlay shares one
   * (ofs->whiteout); a link costs a fraction of a new inode. 0 or -errno; -EPERM where mknod
   * of a whiteout is not permitted (rootless without the capability; a link never says EPERM
   * here: the shared whiteout is the daemon's own).
   */
  private linkWhiteout(dirFd: number, name: string): number {
    let r = 0;
    for (let fresh = 0; fresh < 2; fresh++) {
      if (this.sharedWhiteout === undefined) {
        const made = sys.mknodat(this.work.fd, SHARED_WHITEOUT, S_IFCHR, 0, 0);
        if (made < 0) return made;
        this.sharedWhiteout = SHARED_WHITEOUT;
      }
      r = sys.linkat(this.work.fd, this.sharedWhiteout, dirFd, name, 0);
      // The filesystem's link limit reached: start a new shared one, as the kernel does.
      if (r !== -E.EMLINK) return r;
      sys.unlinkat(this.work.fd, this.sharedWhiteout, 0);
      this.sharedWhiteout = undefined;
    }
    return r;
  }

  /** Drops an upper whiteout for `name` (the `.wh.` form; the device form is renamed over). */
  clearWhiteoutFile(parentFd: number, name: string): void {
    const r = sys.unlinkat(parentFd, WH_PREFIX + name, 0);
    if (r < 0 && r !== -E.ENOENT && r !== -E.ENAMETOOLONG) fail(-r, 'unlink whiteout', name);
  }

  /** "A directory is made opaque by setting the xattr trusted.overlay.opaque to y." */
  setOpaque(dirFd: number, name: string): void {
    check(sys.setxattr(dirFd, name, this.xattrs.opaque, Buffer.from('y'), 0), 'set opaque', name);
  }
}
