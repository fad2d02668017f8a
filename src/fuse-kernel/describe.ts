// What a debug log line says of a FUSE request: its names and main arguments, read by the same
// typed decoders the handlers use (abi.ts). Called only when the debug level is on, before the
// handler runs (a deferred reply's buffer is reused by then). A name in its directory is `entry`
// (pino's own `name` names the logger), an xattr's name `xattr`.
import { shown } from '../host/bytes';
import {
  IN_HEADER, decodeAccess, decodeCopyFileRange, decodeCreate, decodeFallocate, decodeForget, decodeFsync, decodeGetattr,
  decodeGetxattr, decodeInterrupt, decodeLink, decodeLseek, decodeMkdir, decodeMknod, decodeName, decodeOpen, decodeRead,
  decodeRelease, decodeRename, decodeSetattr, decodeSetxattr, decodeSymlink, decodeWrite, eachForget, type Request,
} from './abi';
import { FATTR, Op } from './protocol';

export type Described = Record<string, string | number>;

const octal = (n: number): string => '0' + n.toString(8);
const hex = (n: number): string => '0x' + n.toString(16);

/** The arguments of the request in `req` (its header decoded). */
export function describe(req: Request): Described {
  if (req.end < IN_HEADER) return {};
  switch (req.opcode) {
    case Op.LOOKUP: case Op.UNLINK: case Op.RMDIR:
      return { entry: shown(decodeName(req)) };
    case Op.REMOVEXATTR: return { xattr: shown(decodeName(req)) };
    case Op.FORGET: return { nlookup: decodeForget(req) };
    case Op.BATCH_FORGET: {
      let count = 0;
      eachForget(req, () => count++);
      return { count };
    }
    case Op.GETATTR: {
      const fh = decodeGetattr(req);
      return fh === undefined ? {} : { fh };
    }
    case Op.SETATTR: {
      const s = decodeSetattr(req);
      const d: Described = { valid: hex(s.valid) };
      if (s.valid & FATTR.FH) d.fh = s.fh;
      if (s.valid & FATTR.SIZE) d.size = s.size;
      if (s.valid & FATTR.MODE) d.mode = octal(s.mode);
      if (s.valid & FATTR.UID) d.uid = s.uid;
      if (s.valid & FATTR.GID) d.gid = s.gid;
      return d;
    }
    case Op.SYMLINK: {
      const s = decodeSymlink(req);
      return { entry: shown(s.name), target: shown(s.target) };
    }
    case Op.MKNOD: {
      const m = decodeMknod(req);
      return { entry: shown(m.name), mode: octal(m.mode), rdev: hex(m.rdev), umask: octal(m.umask) };
    }
    case Op.MKDIR: {
      const m = decodeMkdir(req);
      return { entry: shown(m.name), mode: octal(m.mode), umask: octal(m.umask) };
    }
    case Op.RENAME: case Op.RENAME2: {
      const two = req.opcode === Op.RENAME2;
      const r = decodeRename(req, two);
      const d: Described = { entry: shown(r.oldName), newdir: r.newdir, newentry: shown(r.newName) };
      if (two) d.flags = r.flags;
      return d;
    }
    case Op.LINK: {
      const l = decodeLink(req);
      return { oldnode: l.oldnodeid, entry: shown(l.name) };
    }
    case Op.OPEN: case Op.OPENDIR: return { flags: octal(decodeOpen(req)) };
    case Op.CREATE: {
      const c = decodeCreate(req);
      return { entry: shown(c.name), flags: octal(c.flags), mode: octal(c.mode), umask: octal(c.umask) };
    }
    case Op.READ: case Op.READDIR: case Op.READDIRPLUS: {
      const r = decodeRead(req);
      return { fh: r.fh, offset: r.offset, size: r.size };
    }
    case Op.WRITE: {
      const w = decodeWrite(req);
      return { fh: w.fh, offset: w.offset, size: w.data.length };
    }
    case Op.RELEASE: case Op.RELEASEDIR: return { fh: decodeRelease(req) };
    case Op.FLUSH: return { fh: decodeRelease(req) }; // fuse_flush_in starts with fh, as fuse_release_in
    case Op.FSYNC: case Op.FSYNCDIR: {
      const f = decodeFsync(req);
      return { fh: f.fh, datasync: f.datasync ? 1 : 0 };
    }
    case Op.SETXATTR: {
      const x = decodeSetxattr(req);
      return { xattr: shown(x.name), size: x.value.length, flags: x.flags };
    }
    case Op.GETXATTR: case Op.LISTXATTR: {
      const g = decodeGetxattr(req, req.opcode === Op.GETXATTR);
      return req.opcode === Op.GETXATTR ? { xattr: shown(g.name), size: g.size } : { size: g.size };
    }
    case Op.ACCESS: return { mask: decodeAccess(req) };
    case Op.FALLOCATE: {
      const f = decodeFallocate(req);
      return { fh: f.fh, offset: f.offset, length: f.length, mode: f.mode };
    }
    case Op.LSEEK: {
      const l = decodeLseek(req);
      return { fh: l.fh, offset: l.offset, whence: l.whence };
    }
    case Op.COPY_FILE_RANGE: {
      const c = decodeCopyFileRange(req);
      return { fh: c.fhIn, offset: c.offIn, outnode: c.nodeOut, outfh: c.fhOut, outoffset: c.offOut, length: c.len };
    }
    case Op.INTERRUPT: return { unique: decodeInterrupt(req) };
    default: return {};
  }
}
