// Requests on names and inodes: lookups and their forgetting, attributes, and the changes of
// the tree (create, remove, rename, link), each keeping the node table in step.
import { C } from '../host/native';
import { S_IFDIR, type Timespec } from '../host/stat';
import { E, FsError, errnoOf } from '../core/errors';
import type { Attr } from '../core/overlay';
import {
  decodeDev, decodeForget, decodeGetattr, decodeLink, decodeMkdir, decodeMknod, decodeName, decodeRename,
  decodeSetattr, decodeSymlink, eachForget, type Request,
} from './abi';
import type { Node } from './inodes';
import type { KernelOps } from './ops';
import { FATTR } from './protocol';
import { EMPTY, NONE, type Reply } from './session';

export function lookup(o: KernelOps, req: Request): Reply {
  const parent = o.node(req.nodeid);
  const name = decodeName(req);
  const path = o.childPath(parent, name);
  let attr: Attr;
  try {
    attr = o.overlay.getattr(path);
  } catch (err) {
    const neg = o.cfg.negValid;
    if (errnoOf(err) === E.ENOENT && (neg.sec > 0 || neg.nsec > 0)) {
      return o.session.entryReply(0, undefined, neg, neg);
    }
    throw err;
  }
  return o.entry(parent, name, attr);
}

export function forget(o: KernelOps, req: Request): Reply {
  o.forget(req.nodeid, decodeForget(req));
  return NONE;
}

export function batchForget(o: KernelOps, req: Request): Reply {
  eachForget(req, (id, n) => o.forget(id, n));
  return NONE;
}

export function getattr(o: KernelOps, req: Request): Reply {
  const node = o.node(req.nodeid);
  return o.attrReply(o.attrOf(node, decodeGetattr(req)));
}

export function setattr(o: KernelOps, req: Request): Reply {
  const node = o.node(req.nodeid);
  const s = decodeSetattr(req);
  const valid = s.valid;
  const fh = valid & FATTR.FH ? s.fh : undefined;
  const ov = o.overlay;
  const path = o.table.pathOf(node);
  // A file with no name left (unlinked or renamed over while open) changes through a handle.
  const known = fh !== undefined && o.files.has(fh) ? fh : undefined;
  const handle = path === undefined ? known ?? node.anyFile() : undefined;
  if (path === undefined && handle === undefined) throw new FsError(E.ENOENT, 'setattr', `node ${node.id}`);
  const p = path as string;
  const h = handle as number;
  if (valid & (FATTR.UID | FATTR.GID)) {
    const uid = valid & FATTR.UID ? s.uid : -1;
    const gid = valid & FATTR.GID ? s.gid : -1;
    if (path === undefined) ov.fchown(h, uid, gid);
    else ov.chown(p, uid, gid);
  }
  if (valid & FATTR.MODE) {
    const mode = s.mode & 0o7777;
    if (path === undefined) ov.fchmod(h, mode);
    else ov.chmod(p, mode);
  }
  if (valid & FATTR.SIZE) {
    if (known !== undefined) ov.ftruncate(known, s.size);
    else if (path === undefined) ov.ftruncate(h, s.size);
    else ov.truncate(p, s.size);
  }
  if (valid & (FATTR.ATIME | FATTR.MTIME)) {
    const time = (set: number, now: number, sec: number, nsec: number): Timespec => {
      if (!(valid & set)) return { sec: 0, nsec: C.UTIME_OMIT };
      if (valid & now) return { sec: 0, nsec: C.UTIME_NOW };
      return { sec, nsec };
    };
    const atime = time(FATTR.ATIME, FATTR.ATIME_NOW, s.atime, s.atimensec);
    const mtime = time(FATTR.MTIME, FATTR.MTIME_NOW, s.mtime, s.mtimensec);
    if (path === undefined) ov.futimens(h, atime, mtime);
    else ov.utimens(p, atime, mtime);
  }
  return o.attrReply(o.attrOf(node, fh));
}

export function readlink(o: KernelOps, req: Request): Reply {
  return o.bytes(Buffer.from(o.overlay.readlink(o.pathOf(o.node(req.nodeid))), 'latin1'));
}

/** After a create: the new object's entry. */
function created(o: KernelOps, parent: Node, name: string, path: string): Reply {
  return o.entry(parent, name, o.overlay.getattr(path));
}

export function symlink(o: KernelOps, req: Request): Reply {
  const parent = o.node(req.nodeid);
  const { name, target } = decodeSymlink(req);
  const path = o.childPath(parent, name);
  o.overlay.symlink(target, path, o.caller(req));
  return created(o, parent, name, path);
}

export function mknod(o: KernelOps, req: Request): Reply {
  const parent = o.node(req.nodeid);
  const m = decodeMknod(req);
  const [major, minor] = decodeDev(m.rdev);
  const path = o.childPath(parent, m.name);
  o.overlay.mknod(path, m.mode, major, minor, o.caller(req, m.umask));
  return created(o, parent, m.name, path);
}

export function mkdir(o: KernelOps, req: Request): Reply {
  const parent = o.node(req.nodeid);
  const m = decodeMkdir(req);
  const path = o.childPath(parent, m.name);
  o.overlay.mkdir(path, (m.mode & 0o7777) | S_IFDIR, o.caller(req, m.umask));
  return created(o, parent, m.name, path);
}

function remove(o: KernelOps, req: Request, dir: boolean): Reply {
  const parent = o.node(req.nodeid);
  const name = decodeName(req);
  const path = o.childPath(parent, name);
  if (dir) o.overlay.rmdir(path);
  else o.overlay.unlink(path);
  o.table.unlinkName(parent, name);
  return EMPTY;
}

export const unlink = (o: KernelOps, req: Request): Reply => remove(o, req, false);
export const rmdir = (o: KernelOps, req: Request): Reply => remove(o, req, true);

function renameOf(o: KernelOps, req: Request, two: boolean): Reply {
  const r = decodeRename(req, two);
  const parent = o.node(req.nodeid);
  const newParent = o.node(r.newdir);
  o.overlay.rename(o.childPath(parent, r.oldName), o.childPath(newParent, r.newName), r.flags);
  o.table.rename(parent, r.oldName, newParent, r.newName, (r.flags & C.RENAME_EXCHANGE) !== 0);
  return EMPTY;
}

export const rename = (o: KernelOps, req: Request): Reply => renameOf(o, req, false);
export const rename2 = (o: KernelOps, req: Request): Reply => renameOf(o, req, true);

export function link(o: KernelOps, req: Request): Reply {
  const l = decodeLink(req);
  const src = o.node(l.oldnodeid);
  const parent = o.node(req.nodeid);
  const srcPath = o.pathOf(src);
  const path = o.childPath(parent, l.name);
  o.overlay.link(srcPath, path, o.caller(req));
  // A lower source was copied up to be linked: its node follows it to the upper object, so
  // the reply names the kernel's inode of the source, whose nlink it then updates.
  try { o.table.refresh(src, o.overlay.getattr(srcPath)); } catch { /* gone meanwhile */ }
  const reply = o.entry(parent, l.name, o.overlay.getattr(path));
  if (o.table.child(parent, l.name) !== src) {
    // The source's node could not follow (it has other names): have the kernel look it up again.
    if (src.parent) o.session.invalEntry(src.parent.id, src.name);
  }
  return reply;
}
