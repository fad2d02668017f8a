// What a mount by a user (no CAP_SYS_ADMIN) cannot have, said before anything starts, in one
// line each, as the kernel's overlay and fusermount3 would refuse it:
// - an upper layer without `userxattr`: the overlay's own xattrs would be trusted.overlay.*,
//   which only CAP_SYS_ADMIN may write; the kernel's overlay likewise needs userxattr given
//   explicitly for an unprivileged mount (it changes the on-disk format, so it is never implied);
// - allow_other (allow_root) without `user_allow_other` in /etc/fuse.conf, which fusermount3
//   (and libfuse 2's fusermount) require of users.
import { hasCapSysAdmin, inInitUserNs } from '../fuse-kernel/caller';
import { FUSE_CONF, userAllowOther } from '../fuse-kernel/fusermount';
import { UsageError, type MountOptions } from './options';

/**
 * The defaults that depend on who mounts, decided before the checks below:
 * - a root mount (also by the root of a user namespace) is open to every user (allow_other),
 *   with the kernel checking permissions (default_permissions), as kernel overlayfs is open to
 *   everyone and as fuse-overlayfs makes its root mounts; `noallow_other` keeps it to the mounter;
 * - an unprivileged mount with an upper layer takes `userxattr` itself, as fuse-overlayfs falls
 *   back to user.* xattrs: rootless engines never pass it. Returns the lines to log at info.
 */
export function applyPrivilegeDefaults(options: MountOptions, uid = process.getuid?.() ?? 0, privileged = hasCapSysAdmin() && inInitUserNs(), canMount = hasCapSysAdmin()): string[] {
  const notes: string[] = [];
  // The root of a user namespace mounts with mount(2) too, and there the kernel opens an
  // allow_other mount to that namespace's processes only. Rootless podman needs it: with
  // --userns=keep-id the container's root is another uid of podman's namespace, which a mount
  // kept to the mounter refuses (EACCES on the rootfs); fuse-overlayfs adds allow_other as uid 0.
  if (uid === 0 && canMount && !options.allowOtherGiven) options.fuse.allowOther = true;
  if (privileged && uid === 0) return notes;
  if (options.overlay.upperdir !== undefined && !options.overlay.userxattr) {
    options.overlay.userxattr = true;
    notes.push('unprivileged mount with an upper layer: using userxattr (user.overlay.* xattrs)');
  }
  return notes;
}

/**
 * `privileged`: CAP_SYS_ADMIN in the initial user namespace (trusted.* xattrs); `canMount`:
 * CAP_SYS_ADMIN at all (mount(2) of FUSE, also in a user namespace that owns this mount namespace).
 */
export function checkPrivileges(options: MountOptions, uid = process.getuid?.() ?? 0, privileged = hasCapSysAdmin() && inInitUserNs(), canMount = hasCapSysAdmin()): void {
  const fo = options.fuse;
  // Without default_permissions the kernel leaves every check to the daemon, which makes none:
  // other users would read 0600 files and plant setuid binaries. Kernel overlayfs always checks.
  if ((fo.allowOther || fo.allowRoot) && !fo.defaultPermissions) {
    throw new UsageError(`option no_default_permissions cannot be combined with ${fo.allowOther ? 'allow_other' : 'allow_root'} (overlayd leaves permission checks to the kernel; ${options.allowOtherGiven ? '' : 'a root mount is allow_other by default; add noallow_other to keep it to the mounter, or '}drop no_default_permissions)`);
  }
  if (privileged && uid === 0) return;
  const who = uid === 0 ? 'a mount in a user namespace' : `a mount by a user (uid ${uid})`;
  if (options.overlay.upperdir !== undefined && !options.overlay.userxattr && !privileged) {
    throw new UsageError(`${who} with an upper layer needs -o userxattr (user.overlay.* xattrs: trusted.overlay.* ones need CAP_SYS_ADMIN; kernel overlayfs too needs userxattr for unprivileged mounts)`);
  }
  // mount(2) itself (the kernel transport with CAP_SYS_ADMIN) needs no fuse.conf; fusermount does.
  const helper = uid !== 0 && !(options.transport === 'kernel' && canMount);
  if ((fo.allowOther || fo.allowRoot) && helper && !userAllowOther()) {
    throw new UsageError(`option ${fo.allowOther ? 'allow_other' : 'allow_root'} needs user_allow_other in ${FUSE_CONF} for ${who} (fusermount3 refuses it otherwise)`);
  }
}
