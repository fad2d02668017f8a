// The kernel transport's requests, one handler each (ops-*.ts), over the union's node tree (the
// kernel's lookups and FORGETs count its references), and the state they share: open files and
// directories, the cache timeouts, the passthrough policy. A handler takes the decoded request and returns its reply
// (or a promise of it), or throws an FsError whose errno the session sends.
import { CopyUpPending } from '../core/copyup';
import { E, FsError } from '../core/errors';
import { fdsGivenBack } from '../core/fdshare';
import type { Caller } from '../core/config';
import type { Node } from '../core/nodes';
import type { Attr, Overlay } from '../core/overlay';
import { Union, type Listing } from '../core/union';
import type { Logger } from '../log/logger';
import { OUT_HEADER, type Request, type Validity } from './abi';
import * as dirs from './ops-dirs';
import * as entries from './ops-entries';
import * as files from './ops-files';
import * as misc from './ops-misc';
import type { Passthrough } from './passthrough';
import { OP_NAMES, Op } from './protocol';
import { EMPTY, type Handler, type Reply, type Session } from './session';

export type OpHandler = (o: KernelOps, req: Request) => Reply | Promise<Reply>;

/** Indexed by opcode; absent: ENOSYS. */
const HANDLERS: (OpHandler | undefined)[] = [];
const on = (op: Op, h: OpHandler): void => { HANDLERS[op] = h; };
on(Op.LOOKUP, entries.lookup);
on(Op.FORGET, entries.forget);
on(Op.BATCH_FORGET, entries.batchForget);
on(Op.GETATTR, entries.getattr);
on(Op.SETATTR, entries.setattr);
on(Op.READLINK, entries.readlink);
on(Op.SYMLINK, entries.symlink);
on(Op.MKNOD, entries.mknod);
on(Op.MKDIR, entries.mkdir);
on(Op.UNLINK, entries.unlink);
on(Op.RMDIR, entries.rmdir);
on(Op.RENAME, entries.rename);
on(Op.RENAME2, entries.rename2);
on(Op.LINK, entries.link);
on(Op.OPEN, files.open);
on(Op.CREATE, files.create);
on(Op.READ, files.read);
on(Op.WRITE, files.write);
on(Op.RELEASE, files.release);
on(Op.FLUSH, () => EMPTY);
on(Op.FSYNC, files.fsync);
on(Op.FALLOCATE, files.fallocate);
on(Op.LSEEK, files.lseek);
on(Op.COPY_FILE_RANGE, files.copyFileRange);
on(Op.OPENDIR, dirs.opendir);
on(Op.READDIR, dirs.readdir);
on(Op.READDIRPLUS, dirs.readdirplus);
on(Op.RELEASEDIR, dirs.releasedir);
on(Op.FSYNCDIR, dirs.fsyncdir);
on(Op.STATFS, misc.statfs);
on(Op.SETXATTR, misc.setxattr);
on(Op.GETXATTR, misc.getxattr);
on(Op.LISTXATTR, misc.listxattr);
on(Op.REMOVEXATTR, misc.removexattr);
on(Op.ACCESS, misc.access);
on(Op.INIT, misc.init);
on(Op.INTERRUPT, misc.interrupt);
on(Op.DESTROY, misc.destroy);

/** Requests libfuse lets through even when allow_root denies everyone else. */
const ALWAYS_ALLOWED = new Set<number>([
  Op.INIT, Op.READ, Op.WRITE, Op.FSYNC, Op.RELEASE, Op.READDIR, Op.FSYNCDIR, Op.RELEASEDIR, Op.NOTIFY_REPLY,
  Op.READDIRPLUS, Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT, Op.DESTROY, Op.FLUSH,
]);

export interface OpsConfig {
  entryValid: Validity;
  attrValid: Validity;
  negValid: Validity;
  /** The kernel may keep directory listings (not when asked to cache nothing). */
  cacheListings: boolean;
  /** -o allow_root: only root and the daemon's user, besides the requests above. */
  allowRoot: boolean;
  /** The kernel's writeback cache may be taken where it offers it (-o writeback, env OVERLAYD_WRITEBACK). */
  writeback: boolean;
  /** Passed at INIT as max_stack_depth: 1 + the stacking under the layers. */
  stackDepth: number;
  /** POSIX ACLs taken at INIT: only where the kernel checks permissions (it would start to). */
  acl: boolean;
}

export interface OpenFile {
  node: Node;
  /** Bound to the node's backing file (FOPEN_PASSTHROUGH). */
  passthrough: boolean;
}

export interface DirHandle {
  node: Node;
  /** The listing; d_ino filled in when first needed (READDIRPLUS learns it from the attributes). */
  listing: Listing | undefined;
  /** ino of "." and "..", looked up when first listed. */
  self?: bigint;
  parent?: bigint;
}

export class KernelOps implements Handler {
  readonly union: Union;
  readonly files = new Map<number, OpenFile>();
  readonly dirs = new Map<number, DirHandle>();
  nextDir = 1;
  /** Whether the kernel caches writes (FUSE_WRITEBACK_CACHE), where there is no passthrough. */
  writeback = false;
  reads = 0;
  writes = 0;
  /** Called once INIT is answered (the mount serves). */
  onInit: (() => void) | undefined;
  private readonly daemonUid = process.getuid?.() ?? 0;

  constructor(
    readonly overlay: Overlay, readonly session: Session, readonly passthrough: Passthrough,
    readonly cfg: OpsConfig, readonly log: Logger,
  ) {
    // Requests that need a copy-up of file data wait for it off the loop (see retryAfter).
    overlay.backgroundWork = true;
    this.union = new Union(overlay);
    this.union.onCopyUp = (node) => this.session.invalAttr(node.id);
    session.onEnd(() => this.close());
  }

  handle(req: Request): Reply | Promise<Reply> {
    const op = req.opcode;
    if (this.cfg.allowRoot && req.uid !== 0 && req.uid !== this.daemonUid && !ALWAYS_ALLOWED.has(op)) throw new FsError(E.EACCES, 'allow_root');
    const h = HANDLERS[op];
    if (!h) throw new FsError(E.ENOSYS, OP_NAMES[op] ?? `op ${op}`);
    // withFdsGivenBack, without a closure on every request.
    try {
      return h(this, req);
    } catch (err) {
      if (!fdsGivenBack(err)) throw err;
      return h(this, req);
    }
  }

  /** A request held up by a copy-up in progress waits for it, and is then handled again. */
  retryAfter(err: unknown): ((signal: AbortSignal) => Promise<void>) | undefined {
    return err instanceof CopyUpPending ? (signal) => err.wait(signal) : undefined;
  }

  /** Lets go of the files the kernel never released (the session ended). */
  private close(): void {
    for (const f of this.files.values()) this.passthrough.unbind(f.node, f);
    this.union.releaseAll();
    this.files.clear();
    this.dirs.clear();
    this.log.info({ counters: { ops: this.session.ops, reads: this.reads, writes: this.writes, nodes: 1 + this.union.table.heldByClients(), invalidations: this.session.invalidations, ...this.passthrough.stats } }, 'FUSE session ended');
  }

  // ---- what the handlers share ----

  node(id: number): Node {
    return this.union.node(id);
  }

  caller(req: Request, umask?: number): Caller {
    return { uid: req.uid, gid: req.gid, pid: req.pid, umask };
  }

  /**
   * The entry reply for parent/name, just resolved to `attr`; counts the kernel's lookup. Like
   * attrReply, only to be returned synchronously (see Session.attrReply).
   */
  entry(e: { node: Node; attr: Attr }): Reply {
    const { node, attr } = e;
    node.lookups++;
    return this.session.entryReply(node.id, attr, this.cfg.entryValid, this.cfg.attrValid);
  }

  attrReply(attr: Attr): Reply {
    return this.session.attrReply(attr, this.cfg.attrValid);
  }

  /** A reply of these bytes, copied into the session's reply buffer. */
  bytes(src: Buffer): Reply {
    const buf = this.session.room(src.length);
    src.copy(buf, OUT_HEADER);
    return this.session.bytesReply(buf, src.length);
  }

  /** The node stops standing for its names; the kernel is told to forget its dentries. */
  retire(node: Node): void {
    for (const l of node.links) this.session.invalEntry(l.parent.id, l.name);
    this.union.table.retire(node);
  }
}
