// Requests on open files: open and create (with the passthrough and setuid-drop policies), the
// data ones (read, write, fsync: answered once the thread pool is done where they must wait for
// the disk), release, and the rest that take a handle.
import fs from 'node:fs';
import { C, fuseDevice, sys } from '../host/native';
import { E, FsError } from '../core/errors';
import {
  OUT_HEADER, decodeCopyFileRange, decodeCreate, decodeFallocate, decodeFsync, decodeLseek, decodeOpen, decodeRead,
  decodeRelease, decodeWrite, type Request,
} from './abi';
import type { Node } from '../core/nodes';
import type { KernelOps } from './ops';
import type { Binding } from './passthrough';
import { EMPTY, type Reply } from './session';
import { suidBitsToDrop } from './setuid';

/** copy_file_range per request; userspace loops over short copies. */
const COPY_CHUNK = 16 << 20;

/** The open(2) flags the file is really opened with. */
function openFlags(o: KernelOps, flags: number): number {
  // With the writeback cache the kernel reads pages of files opened only for writing, and
  // appends at the offsets it knows (libfuse's passthrough_hp does the same).
  if (!o.writeback) return flags;
  if ((flags & 3) === C.O_WRONLY) flags = (flags & ~3) | C.O_RDWR;
  return flags & ~C.O_APPEND;
}

/**
 * Binds a just opened handle to the node (see passthrough.ts); a node bound to another file
 * than this one is retired, and the opener told to look the name up again (ESTALE), which gives
 * it a new node.
 */
function bind(o: KernelOps, node: Node, fh: number): Binding {
  const b = o.passthrough.bind(node, o.overlay.handle(fh));
  if (!b) {
    o.union.release(fh);
    o.retire(node);
    throw new FsError(E.ESTALE, 'open', `node ${node.id} is bound to another file`);
  }
  o.files.set(fh, { node, passthrough: b.passthrough });
  return b;
}

export function open(o: KernelOps, req: Request): Reply {
  const node = o.node(req.nodeid);
  const flags = openFlags(o, decodeOpen(req));
  const fh = o.union.open(node, flags);
  if (flags & C.O_TRUNC) {
    const a = o.overlay.fgetattr(fh);
    const kill = suidBitsToDrop(a, req);
    if (kill !== 0) {
      o.overlay.fchmod(fh, a.mode & 0o7777 & ~kill);
      o.session.invalAttr(node.id);
    }
  }
  const b = bind(o, node, fh);
  return { kind: 'open', fh, flags: b.flags, backingId: b.backingId };
}

export function create(o: KernelOps, req: Request): Reply {
  const c = decodeCreate(req);
  const flags = openFlags(o, c.flags);
  const { node, attr, fh } = o.union.create(o.node(req.nodeid), c.name, c.mode & 0o7777, flags, o.caller(req, c.umask));
  const b = bind(o, node, fh);
  node.lookups++;
  return { kind: 'create', nodeid: node.id, attr, entryValid: o.cfg.entryValid, attrValid: o.cfg.attrValid, fh, flags: b.flags, backingId: b.backingId };
}

export function release(o: KernelOps, req: Request): Reply {
  const fh = decodeRelease(req);
  const f = o.files.get(fh);
  o.files.delete(fh);
  if (f) o.passthrough.unbind(f.node, f);
  o.union.release(fh);
  return EMPTY;
}

export function read(o: KernelOps, req: Request): Reply | Promise<Reply> {
  const { fh, offset, size } = decodeRead(req);
  o.reads++;
  const out = Buffer.allocUnsafe(OUT_HEADER + size);
  // What the page cache holds is read here and now; only what needs the disk goes to the
  // thread pool. A short reply would mean end of file, so a partial read is completed there.
  const fd = o.overlay.readFd(fh);
  const dev = fuseDevice();
  let got = dev.preadNowait(fd, out, OUT_HEADER, size, offset);
  let eof = got === 0;
  // Short: the end of the file, or of what the page cache holds. Asking on tells which (a
  // small file's one read ends here instead of in the thread pool).
  while (got > 0 && got < size) {
    const more = dev.preadNowait(fd, out, OUT_HEADER + got, size - got, offset + got);
    if (more === 0) eof = true;
    if (more <= 0) break;
    got += more;
  }
  if (got === size || eof) return o.session.bytesReply(out, got);
  const have = got > 0 ? got : 0;
  if (got < 0 && got !== -E.EAGAIN && got !== -E.EOPNOTSUPP) throw new FsError(-got, 'read');
  return o.overlay.read(fh, out.subarray(OUT_HEADER + have), size - have, offset + have)
    .then((n): Reply => ({ kind: 'bytes', buf: out, n: have + n }));
}

export function write(o: KernelOps, req: Request): Promise<Reply> {
  const w = decodeWrite(req);
  // A copy: the request buffer takes the next request before the thread pool is done.
  const data = Buffer.from(w.data);
  o.writes++;
  return o.overlay.write(w.fh, data, data.length, w.offset).then((n): Reply => ({ kind: 'count', n }));
}

export function fsync(o: KernelOps, req: Request): Promise<Reply> {
  const { fh, datasync } = decodeFsync(req);
  const fd = o.overlay.handle(fh).fd;
  if (!o.overlay.syncs) return Promise.resolve(EMPTY);
  return new Promise((resolve, reject) => {
    const done = (err: NodeJS.ErrnoException | null): void => (err ? reject(err) : resolve(EMPTY));
    if (datasync) fs.fdatasync(fd, done);
    else fs.fsync(fd, done);
  });
}

export function fallocate(o: KernelOps, req: Request): Reply {
  const f = decodeFallocate(req);
  o.overlay.fallocate(f.fh, f.mode, f.offset, f.length);
  return EMPTY;
}

export function lseek(o: KernelOps, req: Request): Reply {
  const l = decodeLseek(req);
  // The fd reads go to: a reader's copy-up is followed (SEEK_DATA of the upper file).
  const r = sys.lseek(o.overlay.readFd(l.fh), l.offset, l.whence);
  if (r < 0) throw new FsError(-r, 'lseek', o.overlay.handle(l.fh).path);
  return { kind: 'offset', offset: r };
}

export function copyFileRange(o: KernelOps, req: Request): Reply {
  const c = decodeCopyFileRange(req);
  const inFd = o.overlay.readFd(c.fhIn);
  const hout = o.overlay.handle(c.fhOut);
  if (!hout.writable) throw new FsError(E.EBADF, 'copy_file_range', hout.path);
  const r = sys.copyFileRange(inFd, c.offIn, hout.fd, c.offOut, Math.min(c.len, COPY_CHUNK));
  if (r < 0) throw new FsError(-r, 'copy_file_range', hout.path);
  return { kind: 'count', n: r };
}
