// Requests on names and inodes: lookups and their forgetting, attributes, and the changes of
// the tree (create, remove, rename, link), each one call of the union, which keeps the node
// tree in step (core/union.ts).
import { C } from '../host/native';
import { S_IFDIR, type Timespec } from '../host/stat';
import { E, errnoOf } from '../core/errors';
import type { AttrChanges, Named } from '../core/union';
import {
  decodeDev, decodeForget, decodeGetattr, decodeLink, decodeMkdir, decodeMknod, decodeName, decodeRename,
  decodeSetattr, decodeSymlink, eachForget, type Request,
} from './abi';
import type { KernelOps } from './ops';
import { FATTR } from './protocol';
import { EMPTY, NONE, type Reply } from './session';

export function lookup(o: KernelOps, req: Request): Reply {
  const parent = o.node(req.nodeid);
  const name = decodeName(req);
  let e: Named;
  try {
    e = o.union.lookup(parent, name);
  } catch (err) {
    const neg = o.cfg.negValid;
    if (errnoOf(err) === E.ENOENT && (neg.sec > 0 || neg.nsec > 0)) {
      return o.session.entryReply(0, undefined, neg, neg);
    }
    throw err;
  }
  return o.entry(e);
}

export function forget(o: KernelOps, req: Request): Reply {
  o.union.forget(req.nodeid, decodeForget(req));
  return NONE;
}

export function batchForget(o: KernelOps, req: Request): Reply {
  eachForget(req, (id, n) => o.union.forget(id, n));
  return NONE;
}

export function getattr(o: KernelOps, req: Request): Reply {
  return o.attrReply(o.union.getattr(o.node(req.nodeid), decodeGetattr(req)));
}

export function setattr(o: KernelOps, req: Request): Reply {
  const node = o.node(req.nodeid);
  const s = decodeSetattr(req);
  const valid = s.valid;
  const c: AttrChanges = {};
  if (valid & FATTR.UID) c.uid = s.uid;
  if (valid & FATTR.GID) c.gid = s.gid;
  if (valid & FATTR.MODE) c.mode = s.mode & 0o7777;
  if (valid & FATTR.SIZE) c.size = s.size;
  const time = (set: number, now: number, sec: number, nsec: number): Timespec | undefined => {
    if (!(valid & set)) return undefined;
    if (valid & now) return { sec: 0, nsec: C.UTIME_NOW };
    return { sec, nsec };
  };
  c.atime = time(FATTR.ATIME, FATTR.ATIME_NOW, s.atime, s.atimensec);
  c.mtime = time(FATTR.MTIME, FATTR.MTIME_NOW, s.mtime, s.mtimensec);
  return o.attrReply(o.union.setattr(node, c, valid & FATTR.FH ? s.fh : undefined));
}

export function readlink(o: KernelOps, req: Request): Reply {
  return o.bytes(Buffer.from(o.union.readlink(o.node(req.nodeid)), 'latin1'));
}

export function symlink(o: KernelOps, req: Request): Reply {
  const { name, target } = decodeSymlink(req);
  return o.entry(o.union.symlink(o.node(req.nodeid), name, target, o.caller(req)));
}

export function mknod(o: KernelOps, req: Request): Reply {
  const m = decodeMknod(req);
  const [major, minor] = decodeDev(m.rdev);
  return o.entry(o.union.mknod(o.node(req.nodeid), m.name, m.mode, major, minor, o.caller(req, m.umask)));
}

export function mkdir(o: KernelOps, req: Request): Reply {
  const m = decodeMkdir(req);
  return o.entry(o.union.mkdir(o.node(req.nodeid), m.name, (m.mode & 0o7777) | S_IFDIR, o.caller(req, m.umask)));
}

export function unlink(o: KernelOps, req: Request): Reply {
  o.union.unlink(o.node(req.nodeid), decodeName(req));
  return EMPTY;
}

export function rmdir(o: KernelOps, req: Request): Reply {
  o.union.rmdir(o.node(req.nodeid), decodeName(req));
  return EMPTY;
}

function renameOf(o: KernelOps, req: Request, two: boolean): Reply {
  const r = decodeRename(req, two);
  o.union.rename(o.node(req.nodeid), r.oldName, o.node(r.newdir), r.newName, r.flags);
  return EMPTY;
}

export const rename = (o: KernelOps, req: Request): Reply => renameOf(o, req, false);
export const rename2 = (o: KernelOps, req: Request): Reply => renameOf(o, req, true);

export function link(o: KernelOps, req: Request): Reply {
  const l = decodeLink(req);
  const made = o.union.link(o.node(l.oldnodeid), o.node(req.nodeid), l.name, o.caller(req));
  const reply = o.entry(made);
  // The source's node could not follow its copy-up (it has other names): have the kernel look
  // that name up again.
  if (made.stale) o.session.invalEntry(made.stale.parent.id, made.stale.name);
  return reply;
}
