// The slice of fuse-native's untyped API the adapter uses; nothing of it reaches the core.
declare module 'fuse-native' {
  type Cb = (...args: unknown[]) => void;
  interface FuseOpts { [key: string]: unknown }
  class Fuse {
    constructor(mnt: string, ops: Record<string, (...args: never[]) => void>, opts?: FuseOpts);
    mnt: string;
    opts: FuseOpts;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    _fuseOptions(): string;
    static unmount(mnt: string, cb: Cb): void;
  }
  export = Fuse;
}
