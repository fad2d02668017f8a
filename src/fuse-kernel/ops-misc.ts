// The session's own requests (INIT, DESTROY) and those on a node that touch no tree: statfs,
// extended attributes, access.
import { decodeAccess, decodeGetxattr, decodeInit, decodeInterrupt, decodeName, decodeSetxattr, type InitOut, type Request } from './abi';
import { E, FsError } from '../core/errors';
import { CAP_SYS_ADMIN, callerCapable, callerDying } from './caller';
import type { KernelOps } from './ops';
import { INIT, INIT2, KERNEL_MINOR, KERNEL_MINOR_KNOWN, KERNEL_VERSION } from './protocol';
import { EMPTY, MAX_WRITE, NONE, type Reply } from './session';

/** What we take of what the kernel offers at INIT (besides passthrough and writeback, decided there). */
const WANT = INIT.ASYNC_READ | INIT.ATOMIC_O_TRUNC | INIT.BIG_WRITES | INIT.AUTO_INVAL_DATA | INIT.DO_READDIRPLUS |
  INIT.READDIRPLUS_AUTO | INIT.ASYNC_DIO | INIT.PARALLEL_DIROPS | INIT.MAX_PAGES | INIT.CACHE_SYMLINKS | INIT.INIT_EXT;

export function init(o: KernelOps, req: Request): Reply {
  const i = decodeInit(req, INIT.INIT_EXT);
  if (i.major !== KERNEL_VERSION) {
    // The kernel retries INIT with our major when it can; anything else is the end.
    if (i.major < KERNEL_VERSION) throw new FsError(E.EPROTO, 'init', `kernel protocol ${i.major}.${i.minor}`);
    return { kind: 'initMajor', major: KERNEL_VERSION, minor: KERNEL_MINOR };
  }
  let flags = i.flags & WANT;
  let flags2 = 0;
  const pt = o.passthrough;
  const offered = (i.flags & INIT.INIT_EXT) !== 0 && (i.flags2 & INIT2.PASSTHROUGH) !== 0;
  if (offered && pt.mode !== 'off') {
    flags2 |= INIT2.PASSTHROUGH;
    pt.on = true;
  }
  // Asked for only where the session has a ring ready to register once this reply is out:
  // asked for, the kernel holds every request until all its queues have an entry.
  if (i.flags2 & INIT2.OVER_IO_URING && o.session.ringReady) flags2 |= INIT2.OVER_IO_URING;
  // Where file data goes through the daemon, the kernel may gather small writes in its page
  // cache first (one inode has one of the two); every change comes through the mount, so its
  // cached sizes and times stay right.
  if (!pt.on && !o.overlay.readonly && (i.flags & INIT.WRITEBACK_CACHE) && o.cfg.writeback) {
    flags |= INIT.WRITEBACK_CACHE;
    o.writeback = true;
  }
  // The kernel checks permissions (default_permissions) but, unless told the daemon serves
  // POSIX ACLs, only against the mode bits: a user an ACL lets in was refused where kernel
  // overlayfs lets them in. With ACLs on, the kernel leaves the umask to the daemon (a parent's
  // default ACL replaces it), so it sends modes unmasked (DONT_MASK) with the umask beside them.
  if ((i.flags & INIT.POSIX_ACL) && o.cfg.acl) {
    flags |= INIT.POSIX_ACL | INIT.DONT_MASK;
  }
  const out: InitOut = {
    major: KERNEL_VERSION,
    // The kernel's minor where we know its layouts (7.40 ... 7.45); ours otherwise.
    minor: Math.min(Math.max(i.minor, KERNEL_MINOR), KERNEL_MINOR_KNOWN),
    maxReadahead: i.maxReadahead, flags, flags2,
    maxBackground: 64, congestionThreshold: 48, maxWrite: MAX_WRITE, timeGran: 1, maxPages: MAX_WRITE / 4096,
    maxStackDepth: pt.on ? o.cfg.stackDepth : 0,
  };
  o.log.info({ kernel: `${i.major}.${i.minor}`, acl: (flags & INIT.POSIX_ACL) !== 0, passthrough: pt.on, passthroughOffered: offered, writeback: o.writeback, maxWrite: MAX_WRITE, spinUs: o.session.spinUs }, 'FUSE session initialised');
  if (!offered) o.log.info('the kernel offers no FUSE passthrough: file data goes through the daemon');
  const done = o.onInit;
  o.onInit = undefined;
  if (done) setImmediate(done);
  return { kind: 'init', init: out };
}

/**
 * FUSE_INTERRUPT of a request waiting for a copy-up: the kernel sends it for any signal, but
 * its overlay's copy-up stops only for a fatal one (a killed caller), and so does this: a
 * caller merely interrupted by a handled signal keeps waiting, as the kernel's would.
 */
export function interrupt(o: KernelOps, req: Request): Reply {
  const unique = decodeInterrupt(req);
  const pid = o.session.parkedCaller(unique);
  if (pid !== undefined && callerDying(pid)) o.session.cancel(unique);
  return NONE;
}

export function destroy(o: KernelOps): Reply {
  setImmediate(() => o.session.end());
  return EMPTY;
}

export function statfs(o: KernelOps): Reply {
  return { kind: 'statfs', statfs: o.overlay.statfs() };
}

export function setxattr(o: KernelOps, req: Request): Reply {
  const node = o.node(req.nodeid);
  const x = decodeSetxattr(req);
  o.union.setxattr(node, x.name, Buffer.from(x.value), x.flags);
  // An ACL written as an xattr also sets the mode (and the kernel refreshes only the ctime).
  o.session.invalAttr(node.id);
  return EMPTY;
}

/** The value, or its size where the caller asked with size 0; ERANGE where it does not fit. */
function xattrReply(o: KernelOps, size: number, value: Buffer, op: string, id: number): Reply {
  if (size === 0) return { kind: 'count', n: value.length };
  if (value.length > size) throw new FsError(E.ERANGE, op, `node ${id}`);
  return o.bytes(value);
}

export function getxattr(o: KernelOps, req: Request): Reply {
  const g = decodeGetxattr(req, true);
  return xattrReply(o, g.size, o.union.getxattr(o.node(req.nodeid), g.name), 'getxattr', req.nodeid);
}

export function listxattr(o: KernelOps, req: Request): Reply {
  const g = decodeGetxattr(req, false);
  const names = o.union.listxattr(o.node(req.nodeid), callerCapable(req.pid, req.uid, CAP_SYS_ADMIN));
  return xattrReply(o, g.size, Buffer.from(names.map((n) => n + '\0').join(''), 'latin1'), 'listxattr', req.nodeid);
}

export function removexattr(o: KernelOps, req: Request): Reply {
  const node = o.node(req.nodeid);
  o.union.removexattr(node, decodeName(req));
  o.session.invalAttr(node.id);
  return EMPTY;
}

export function access(o: KernelOps, req: Request): Reply {
  o.union.access(o.node(req.nodeid), decodeAccess(req));
  return EMPTY;
}
