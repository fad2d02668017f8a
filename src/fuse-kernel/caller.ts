// Who sends a request, beyond the uid, gid and pid its header carries: capabilities and
// supplementary groups, read from /proc as the kernel's own checks would see them.
import fs from 'node:fs';

export const CAP_FSETID = 4;
export const CAP_SYS_ADMIN = 21;

/** CAP_SYS_ADMIN in this process's effective set (mount(2), trusted.* xattrs, FUSE passthrough). */
export function hasCapSysAdmin(): boolean {
  return capOf('self', CAP_SYS_ADMIN) ?? process.getuid?.() === 0;
}

/** A capability in a process's effective set; undefined where /proc cannot tell (gone, hidden). */
function capOf(pid: number | 'self', cap: number): boolean | undefined {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) return (BigInt('0x' + m[1]) & (1n << BigInt(cap))) !== 0n;
  } catch { /* no /proc, or the process is gone or in another pid namespace */ }
  return undefined;
}

/**
 * Whether the process behind a request holds a capability in the initial user namespace (the
 * kernel's test for listing trusted.* xattrs, CAP_SYS_ADMIN; for keeping setuid bits, CAP_FSETID);
 * where /proc cannot tell, whether it is uid 0.
 */
export function callerCapable(pid: number, uid: number, cap: number): boolean {
  const has = pid > 0 ? capOf(pid, cap) : undefined;
  return has === undefined ? uid === 0 : has && inInitUserNs(pid);
}

/**
 * Whether this process is in the initial user namespace (uid_map is the identity over all ids):
 * capabilities held in a child namespace do not reach trusted.* xattrs or FUSE passthrough,
 * which the kernel checks against the initial one.
 */
export function inInitUserNs(pid: number | 'self' = 'self'): boolean {
  try {
    const f = fs.readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/);
    return f.length === 3 && f[0] === '0' && f[1] === '0' && f[2] === '4294967295';
  } catch {
    return true;
  }
}

/**
 * Whether the caller is in group `gid`: its fsgid (the request's gid) or one of its
 * supplementary groups; where /proc cannot tell, only the first.
 */
export function callerInGroup(pid: number, reqGid: number, gid: number): boolean {
  if (reqGid === gid) return true;
  if (pid <= 0) return false;
  try {
    const m = /^Groups:\s*(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m !== null && m[1].trim().split(/\s+/).includes(String(gid));
  } catch {
    return false;
  }
}

const SIGKILL_BIT = 1n << 8n; // signal 9

/**
 * Whether the process is being killed: a fatal signal shows as SIGKILL pending on each of its
 * threads (complete_signal), which stays pending while the thread waits in the kernel for our
 * reply. A process that is gone counts as dying; one /proc cannot see (pid 0: another pid
 * namespace) as not.
 */
export function callerDying(pid: number): boolean {
  if (pid <= 0) return false;
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
  for (const m of text.matchAll(/^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$/gm)) {
    if (BigInt('0x' + m[1]) & SIGKILL_BIT) return true;
  }
  return false;
}
