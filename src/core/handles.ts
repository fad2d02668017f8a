// Open files of the merged view. A handle outlives its name (unlink, rename of an open file),
// so reads and writes go to the host fd, never back through the path.
import { sys } from '../host/native';
import { FdShareExhausted, type FdShare } from './fdshare';

export class FileHandle {
  /**
   * Set on a read-only handle opened on a lower file: the copy-up count then, so reads can
   * follow the file once it is copied up (see Overlay.followCopyUp, which matches `realKey`).
   */
  below?: { copyUps: number };
  /** fds replaced while a read may still be using them; closed with the handle. */
  readonly retired: number[] = [];
  /** Whether `fd` is an upper object (writers always are), for the inode number fstat reports. */
  inUpper: boolean;
  /** The real file's identity (host dev:ino) where the open already knew it. */
  realKey: string | undefined;

  constructor(
    public fd: number,
    /** Merged path at open time, for logs and fgetattr fallbacks. */
    public path: string,
    readonly writable: boolean,
  ) {
    this.inUpper = writable;
  }

  closeFds(): void {
    sys.close(this.fd);
    for (const fd of this.retired) sys.close(fd);
  }
}

export class HandleTable {
  private readonly handles = new Map<number, FileHandle>();
  private next = 1;
  /** Where the process serves other overlays too: the open files this one may hold (fdshare.ts). */
  share: FdShare | undefined;
  /** Told when an open is first refused for the share since the table last had room. */
  onFull: ((share: number, path: string) => void) | undefined;
  /** Whether the last open was refused for the share, until one is let go (to say it once). */
  private full = false;

  /**
   * Throws EMFILE (FdShareExhausted) where one more open file would take this table past its
   * share; called before the fd is opened.
   */
  room(path: string): void {
    const limit = this.share?.limit;
    if (limit === undefined || this.handles.size < limit) return;
    if (!this.full) this.onFull?.(limit, path);
    this.full = true;
    throw new FdShareExhausted(limit, path);
  }

  add(h: FileHandle): number {
    // Numbers start at 1: 0 means "no handle" to libfuse-based transports.
    while (this.handles.has(this.next) || this.next === 0) this.next = (this.next + 1) >>> 0;
    const id = this.next;
    this.next = (this.next + 1) >>> 0;
    this.handles.set(id, h);
    return id;
  }

  get(id: number): FileHandle | undefined {
    return this.handles.get(id);
  }

  /** Closes and forgets a handle; returns whether it existed. */
  release(id: number): boolean {
    const h = this.handles.get(id);
    if (!h) return false;
    this.handles.delete(id);
    h.closeFds();
    this.full = false;
    return true;
  }

  get size(): number {
    return this.handles.size;
  }

  closeAll(): void {
    for (const h of this.handles.values()) h.closeFds();
    this.handles.clear();
  }
}
