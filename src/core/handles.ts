// Open files of the merged view. A handle outlives its name (unlink, rename of an open file),
// so reads and writes go to the host fd, never back through the path.
import { sys } from '../host/native';

export class FileHandle {
  constructor(
    readonly fd: number,
    /** Merged path at open time, for logs and fgetattr fallbacks. */
    public path: string,
    readonly writable: boolean,
  ) {}
}

export class HandleTable {
  private readonly handles = new Map<number, FileHandle>();
  private next = 1;

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
    sys.close(h.fd);
    return true;
  }

  get size(): number {
    return this.handles.size;
  }

  closeAll(): void {
    for (const h of this.handles.values()) sys.close(h.fd);
    this.handles.clear();
  }
}
