// Extended attribute names through the mount, mapped as kernel overlayfs maps them
// (fs/overlayfs/xattrs.c, Linux 6.7+, "xattr escaping"): the mount's own namespace,
// trusted.overlay. (user.overlay. with userxattr), is private. A name in it that a caller sets
// is stored escaped as <ns>overlay.<rest> and read back under the caller's name, so an overlay
// can live inside a lower layer; the overlay's real xattrs (opaque, origin, ...) are never shown
// and are ENODATA to read. The other namespace is an ordinary one, as on the kernel.
import { TRUSTED_PREFIX, USER_PREFIX } from './whiteout';

const ESCAPE = 'overlay.';

export class XattrNames {
  private readonly own: string;
  private readonly escaped: string;

  constructor(userxattr: boolean) {
    this.own = userxattr ? USER_PREFIX : TRUSTED_PREFIX;
    this.escaped = this.own + ESCAPE;
  }

  /** The overlay's own bookkeeping: hidden from callers and never copied up. */
  isPrivate(diskName: string): boolean {
    return diskName.startsWith(this.own) && !diskName.startsWith(this.escaped);
  }

  /** The name stored in a layer for a name a caller uses. */
  toDisk(name: string): string {
    return name.startsWith(this.own) ? this.escaped + name.slice(this.own.length) : name;
  }

  /** The name a caller sees for one stored in a layer; undefined when private. */
  fromDisk(diskName: string): string | undefined {
    if (diskName.startsWith(this.escaped)) return this.own + diskName.slice(this.escaped.length);
    return diskName.startsWith(this.own) ? undefined : diskName;
  }
}
