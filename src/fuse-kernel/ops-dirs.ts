// Directory handles and listings: READDIR's fuse_dirent records, READDIRPLUS's with an entry
// each (see readdirplus.ts for which carry attributes).
import fs from 'node:fs';
import { sys } from '../host/native';
import { S_IFMT } from '../host/stat';
import { E, FsError, errnoOf } from '../core/errors';
import type { Attr } from '../core/overlay';
import {
  ENTRY_OUT, NO_VALIDITY, OUT_HEADER, decodeFsync, decodeRead, decodeRelease, direntSize, encodeDirent, encodeEntry,
  type Request,
} from './abi';
import type { KernelOps } from './ops';
import { FOPEN } from './protocol';
import { heldWithoutAttrs } from './readdirplus';
import { EMPTY, type Reply } from './session';

const DT_DIR = 4;

export function opendir(o: KernelOps, req: Request): Reply {
  const node = o.node(req.nodeid);
  if (!node.dir) throw new FsError(E.ENOTDIR, 'opendir', `node ${node.id}`);
  const fh = o.nextDir++;
  o.dirs.set(fh, { node, listing: undefined });
  // The kernel keeps listings while the directory's mtime and change count stay (every entry
  // change comes through this mount and bumps the count); not when asked to cache nothing.
  return { kind: 'open', fh, flags: o.cfg.cacheListings ? FOPEN.CACHE_DIR | FOPEN.KEEP_CACHE : 0, backingId: 0 };
}

export function releasedir(o: KernelOps, req: Request): Reply {
  o.dirs.delete(decodeRelease(req));
  return EMPTY;
}

/** FSYNCDIR: the upper directory, looked up now, synced from the thread pool. */
export function fsyncdir(o: KernelOps, req: Request): Reply | Promise<Reply> {
  const { fh, datasync } = decodeFsync(req);
  const d = o.dirs.get(fh);
  if (!d) throw new FsError(E.EBADF, 'fsyncdir', String(fh));
  // A directory removed since opendir has no name left to sync it by, and nothing in it to keep.
  const fd = o.union.dirToSync(d.node);
  if (fd === undefined) return EMPTY;
  return new Promise((resolve, reject) => {
    const done = (err: NodeJS.ErrnoException | null): void => {
      sys.close(fd);
      if (err) reject(err);
      else resolve(EMPTY);
    };
    if (datasync) fs.fdatasync(fd, done);
    else fs.fsync(fd, done);
  });
}

export const readdir = (o: KernelOps, req: Request): Reply => list(o, req, false);
export const readdirplus = (o: KernelOps, req: Request): Reply => list(o, req, true);

function list(o: KernelOps, req: Request, plus: boolean): Reply {
  const { fh, offset, size } = decodeRead(req);
  const d = o.dirs.get(fh);
  if (!d) throw new FsError(E.EBADF, 'readdir', String(fh));
  if (offset === 0 || d.listing === undefined) d.listing = o.union.list(d.node, !plus);
  const listing = d.listing;
  if (offset < 2 && d.self === undefined) {
    d.self = d.node.ino ?? o.union.getattr(d.node).ino;
    const up = d.node.parent;
    try { d.parent = up ? up.ino ?? o.union.getattr(up).ino : d.self; } catch { d.parent = d.self; }
  }
  const out = o.session.room(size);
  let pos = OUT_HEADER;
  const end = OUT_HEADER + size;
  const total = listing.entries.length + 2;
  for (let i = offset; i < total; i++) {
    const e = i >= 2 ? listing.entries[i - 2] : undefined;
    const name = e ? e.name : i === 0 ? '.' : '..';
    const nameLen = name.length; // a binary string: one char per byte
    if (pos + direntSize(nameLen) + (plus ? ENTRY_OUT : 0) > end) break;
    const held = e ? heldWithoutAttrs(o.union.table, d.node, name) : undefined;
    if (e && held) e.ino = held.ino;
    let attr: Attr | undefined;
    if (e && held === undefined && (plus || e.ino === undefined)) {
      // Never d_ino 0 (readdir(3) callers take it for a deleted entry): a name gone since the
      // listing is left out, as ovl_cache_update marks it stale; another failure ends this
      // batch, or fails the call that would return nothing (getdents does the same).
      try {
        if (plus) attr = o.union.listedAttr(d.node, listing, e);
        else e.ino = o.union.listedIno(d.node, listing, e);
      } catch (err) {
        if (errnoOf(err) === E.ENOENT) continue;
        o.log.warn({ dir: d.node.id, name, err: String(err) }, 'readdir: a listed entry cannot be looked up');
        if (pos > OUT_HEADER) break;
        throw err;
      }
    }
    let ino = (e ? e.ino : i === 0 ? d.self : d.parent) ?? 0n;
    let type = e ? e.type : DT_DIR;
    if (plus) {
      if (attr && e) {
        const node = o.union.named(d.node, name, attr).node;
        encodeEntry(out, pos, node.id, attr, o.cfg.entryValid, o.cfg.attrValid);
        node.lookups++;
        ino = e.ino = attr.ino;
        type = (attr.mode & S_IFMT) >> 12;
      } else {
        encodeEntry(out, pos, 0, undefined, NO_VALIDITY, NO_VALIDITY);
      }
      pos += ENTRY_OUT;
    }
    pos += encodeDirent(out, pos, ino, i + 1, type, name, nameLen);
  }
  return o.session.bytesReply(out, pos - OUT_HEADER);
}
