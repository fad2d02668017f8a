// open(O_TRUNC) of a regular file by a caller without CAP_FSETID drops setuid, and setgid where
// the group may execute or the caller is not in the group, as the VFS's truncate does
// (setattr_should_drop_suidgid); with FUSE_ATOMIC_O_TRUNC the kernel leaves that to the daemon.
import type { Attr } from '../core/overlay';
import { S_IFMT, S_IFREG } from '../host/stat';
import { CAP_FSETID, callerCapable, callerInGroup } from './caller';

/** Who truncates: the request's pid, fsuid and fsgid. */
export interface Truncator { pid: number; uid: number; gid: number }

/** The mode bits (0o4000, 0o2000) a truncating open by `who` takes off a file with `a`; 0: none. */
export function suidBitsToDrop(a: Attr, who: Truncator): number {
  if ((a.mode & S_IFMT) !== S_IFREG || (a.mode & 0o6000) === 0) return 0;
  const sgid = (a.mode & 0o2000) !== 0 && ((a.mode & 0o010) !== 0 || !callerInGroup(who.pid, who.gid, a.gid));
  const kill = (a.mode & 0o4000) | (sgid ? 0o2000 : 0);
  if (kill === 0 || callerCapable(who.pid, who.uid, CAP_FSETID)) return 0;
  return kill;
}
