// What a debug log line says of a FUSE request: its names and main arguments, read from the
// request as include/uapi/linux/fuse.h lays it out. Called only when the debug level is on,
// before the handler runs (a deferred reply's buffer is reused by then). A name in its directory
// is `entry` (pino's own `name` names the logger), an xattr's name `xattr`.
import { shown } from '../host/bytes';
import { GETATTR_FH, IN_HEADER } from './abi';
import { FATTR, Op, u64 } from './protocol';

export type Described = Record<string, string | number>;

const B = IN_HEADER;

/** The NUL-terminated name at `off` as a log shows names (host/bytes.ts), and where the next field starts. */
function name(b: Buffer, off: number, end: number): [string, number] {
  let z = b.indexOf(0, off);
  if (z < 0 || z > end) z = end;
  return [shown(b.toString('latin1', off, z)), z + 1];
}

const octal = (n: number): string => '0' + n.toString(8);
const hex = (n: number): string => '0x' + n.toString(16);

/** The arguments of request `opcode` in `b`, whose body ends at `end`. */
export function describe(opcode: number, b: Buffer, end: number): Described {
  if (end < B) return {};
  switch (opcode) {
    case Op.LOOKUP: case Op.UNLINK: case Op.RMDIR:
      return { entry: name(b, B, end)[0] };
    case Op.REMOVEXATTR: return { xattr: name(b, B, end)[0] };
    case Op.FORGET: return { nlookup: u64(b, B) };
    case Op.BATCH_FORGET: return { count: b.readUInt32LE(B) };
    case Op.GETATTR: {
      const flags = b.readUInt32LE(B);
      return flags & GETATTR_FH ? { fh: u64(b, B + 8) } : {};
    }
    case Op.SETATTR: {
      const valid = b.readUInt32LE(B);
      const d: Described = { valid: hex(valid) };
      if (valid & FATTR.FH) d.fh = u64(b, B + 8);
      if (valid & FATTR.SIZE) d.size = u64(b, B + 16);
      if (valid & FATTR.MODE) d.mode = octal(b.readUInt32LE(B + 68));
      if (valid & FATTR.UID) d.uid = b.readUInt32LE(B + 76);
      if (valid & FATTR.GID) d.gid = b.readUInt32LE(B + 80);
      return d;
    }
    case Op.SYMLINK: {
      const [n, next] = name(b, B, end);
      return { entry: n, target: name(b, next, end)[0] };
    }
    case Op.MKNOD: return { entry: name(b, B + 16, end)[0], mode: octal(b.readUInt32LE(B)), rdev: hex(b.readUInt32LE(B + 4)), umask: octal(b.readUInt32LE(B + 8)) };
    case Op.MKDIR: return { entry: name(b, B + 8, end)[0], mode: octal(b.readUInt32LE(B)), umask: octal(b.readUInt32LE(B + 4)) };
    case Op.RENAME: case Op.RENAME2: {
      const two = opcode === Op.RENAME2;
      const [from, next] = name(b, two ? B + 16 : B + 8, end);
      const d: Described = { entry: from, newdir: u64(b, B), newentry: name(b, next, end)[0] };
      if (two) d.flags = b.readUInt32LE(B + 8);
      return d;
    }
    case Op.LINK: return { oldnode: u64(b, B), entry: name(b, B + 8, end)[0] };
    case Op.OPEN: case Op.OPENDIR: return { flags: octal(b.readUInt32LE(B)) };
    case Op.CREATE: return { entry: name(b, B + 16, end)[0], flags: octal(b.readUInt32LE(B)), mode: octal(b.readUInt32LE(B + 4)), umask: octal(b.readUInt32LE(B + 8)) };
    case Op.READ: case Op.WRITE: case Op.READDIR: case Op.READDIRPLUS:
      return { fh: u64(b, B), offset: u64(b, B + 8), size: b.readUInt32LE(B + 16) };
    case Op.RELEASE: case Op.RELEASEDIR: case Op.FLUSH: return { fh: u64(b, B) };
    case Op.FSYNC: case Op.FSYNCDIR: return { fh: u64(b, B), datasync: b.readUInt32LE(B + 8) & 1 };
    case Op.SETXATTR: return { xattr: name(b, B + 8, end)[0], size: b.readUInt32LE(B), flags: b.readUInt32LE(B + 4) };
    case Op.GETXATTR: return { xattr: name(b, B + 8, end)[0], size: b.readUInt32LE(B) };
    case Op.LISTXATTR: return { size: b.readUInt32LE(B) };
    case Op.ACCESS: return { mask: b.readUInt32LE(B) };
    case Op.FALLOCATE: return { fh: u64(b, B), offset: u64(b, B + 8), length: u64(b, B + 16), mode: b.readUInt32LE(B + 24) };
    case Op.LSEEK: return { fh: u64(b, B), offset: u64(b, B + 8), whence: b.readUInt32LE(B + 16) };
    case Op.COPY_FILE_RANGE: return { fh: u64(b, B), offset: u64(b, B + 8), outnode: u64(b, B + 16), outfh: u64(b, B + 24), outoffset: u64(b, B + 32), length: u64(b, B + 40) };
    case Op.INTERRUPT: return { unique: u64(b, B) };
    default: return {};
  }
}
