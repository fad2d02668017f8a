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
 * `privileged`: CAP_SYS_ADMIN in the initial user namespace (trusted.* xattrs); `canMount`:
 * CAP_SYS_ADMIN at all (mount(2) of FUSE, also in a user namespace that owns this mount namespace).
 */
export function checkPrivileges(options: MountOptions, uid = process.getuid?.() ?? 0, privileged = hasCapSysAdmin() && inInitUserNs(), canMount = hasCapSysAdmin()): void {
  if (privileged && uid === 0) return;
  const who = uid === 0 ? 'a mount in a user namespace' : `a mount by a user (uid ${uid})`;
  if (options.overlay.upperdir !== undefined && !options.overlay.userxattr && !privileged) {
    throw new UsageError(`${who} with an upper layer needs -o userxattr (user.overlay.* xattrs: trusted.overlay.* ones need CAP_SYS_ADMIN; kernel overlayfs too needs userxattr for unprivileged mounts)`);
  }
  const fo = options.fuse;
  // mount(2) itself (the kernel transport with CAP_SYS_ADMIN) needs no fuse.conf; fusermount does.
  const helper = uid !== 0 && !(options.transport === 'kernel' && canMount);
  if ((fo.allowOther || fo.allowRoot) && helper && !userAllowOther()) {
    throw new UsageError(`option ${fo.allowOther ? 'allow_other' : 'allow_root'} needs user_allow_other in ${FUSE_CONF} for ${who} (fusermount3 refuses it otherwise)`);
  }
}
