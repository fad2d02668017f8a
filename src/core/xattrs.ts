// The overlay's own extended attributes, in one place: their names in the mount's namespace
// (trusted.overlay.*, or user.overlay.* with userxattr, as the kernel's ovl_xattr() picks them),
// which names are private, and how a caller's name maps to the one stored in a layer.
//
// The mapping is the kernel's (fs/overlayfs/xattrs.c, Linux 6.7+, "xattr escaping"): the mount's
// own namespace is private. A name in it that a caller sets is stored escaped as
// <ns>overlay.<rest> and read back under the caller's name, so an overlay can live inside a lower
// layer; the overlay's real xattrs (opaque, origin, ...) are never shown and are ENODATA to read.
// The other namespace is an ordinary one, as on the kernel.

export const TRUSTED_OVERLAY = 'trusted.overlay.';
export const USER_OVERLAY = 'user.overlay.';

const ESCAPE = 'overlay.';

export class OverlayXattrs {
  /** trusted.overlay. or user.overlay. */
  readonly prefix: string;
  /** "A directory is made opaque by setting the xattr trusted.overlay.opaque to y." */
  readonly opaque: string;
  /** The copy-up origin (origin.ts). */
  readonly origin: string;
  /** Where a moved directory's lower content lies (redirect.ts). */
  readonly redirect: string;
  /** The overlay's own uuid, on the upper root (origin.ts). */
  readonly uuid: string;
  /** The kernel's mark of an upper directory holding copies with origins. */
  readonly impure: string;
  private readonly escaped: string;

  private constructor(readonly userxattr: boolean) {
    this.prefix = userxattr ? USER_OVERLAY : TRUSTED_OVERLAY;
    this.escaped = this.prefix + ESCAPE;
    this.opaque = this.prefix + 'opaque';
    this.origin = this.prefix + 'origin';
    this.redirect = this.prefix + 'redirect';
    this.uuid = this.prefix + 'uuid';
    this.impure = this.prefix + 'impure';
  }

  private static readonly trusted = new OverlayXattrs(false);
  private static readonly user = new OverlayXattrs(true);

  /** The names of a mount with (`userxattr`) or without user.overlay.* xattrs. */
  static of(userxattr: boolean): OverlayXattrs {
    return userxattr ? OverlayXattrs.user : OverlayXattrs.trusted;
  }

  /** The overlay's own bookkeeping (as ovl_is_private_xattr): hidden from callers and never copied up. */
  isPrivate(diskName: string): boolean {
    return diskName.startsWith(this.prefix) && !diskName.startsWith(this.escaped);
  }

  /**
   * Whether copy-up carries the stored xattr `diskName` to the copy: all but the private ones,
   * nor the other namespace's opaque mark: lookup honours both (OPAQUE_XATTRS), and on a copy in
   * upper it would hide the very layer it came from. Escaped names and the rest of the other
   * namespace are ordinary xattrs and copied, as the kernel does.
   */
  copiedUp(diskName: string): boolean {
    return !this.isPrivate(diskName) && diskName !== OPAQUE_XATTRS[0] && diskName !== OPAQUE_XATTRS[1];
  }

  /** The name stored in a layer for a name a caller uses. */
  toDisk(name: string): string {
    return name.startsWith(this.prefix) ? this.escaped + name.slice(this.prefix.length) : name;
  }

  /** The name a caller sees for one stored in a layer; undefined when private. */
  fromDisk(diskName: string): string | undefined {
    if (diskName.startsWith(this.escaped)) return this.prefix + diskName.slice(this.escaped.length);
    return diskName.startsWith(this.prefix) ? undefined : diskName;
  }
}

/**
 * The opaque marks lookup honours: both namespaces', so layers made by either kind of mount
 * work. (A redirect, by contrast, is read in the mount's own namespace only; see whiteout.ts.)
 */
export const OPAQUE_XATTRS: readonly [string, string] = [TRUSTED_OVERLAY + 'opaque', USER_OVERLAY + 'opaque'];
