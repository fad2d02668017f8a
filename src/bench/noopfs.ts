// A file system that does nothing, through the same transport as overlayd (fuse-native, with
// the options overlayd's adapter uses): the floor under every overlayd operation, so the
// benchmark can tell transport cost from overlayd's own work. Run as its own process:
//   node dist/bench/noopfs.js -o entry_timeout=0,attr_timeout=0 MOUNTPOINT
// Names starting with "f" or holding a dot are 1 GiB files whose reads return the caller's
// buffer untouched; every other name is a directory.
import Fuse from 'fuse-native';

type Cb = (...args: unknown[]) => void;

function stat(dir: boolean): Uint32Array {
  const st = new Uint32Array(18);
  st[0] = dir ? 0o040755 : 0o100644;
  st[3] = dir ? 4096 : 2 ** 30; // size, low 32 bits (fuse-native's layout)
  st[6] = 1;
  st[9] = 4096;
  return st;
}

const DIR = stat(true);
const FILE = stat(false);
const isDir = (p: string): boolean => {
  const name = p.slice(p.lastIndexOf('/') + 1);
  return !name.startsWith('f') && !name.includes('.');
};

class NoopFuse extends Fuse {
  constructor(mnt: string, private readonly optionString: string) {
    super(mnt, {
      getattr: (_p: string, cb: Cb) => cb(0),
      readdir: (_p: string, cb: Cb) => cb(0, ['.', '..'], [DIR, DIR]),
      open: (_p: string, _f: number, cb: Cb) => cb(0, 1),
      release: (_p: string, _fh: number, cb: Cb) => cb(0),
      flush: (_p: string, _fh: number, cb: Cb) => cb(0),
      read: (_p: string, _fh: number, _buf: Buffer, len: number, _pos: number, cb: Cb) => cb(len),
    } as unknown as Record<string, (...args: never[]) => void>, { timeout: false });
  }

  override _fuseOptions(): string {
    return '-o' + this.optionString;
  }

  // The reply arrays are constants: no conversion per call (as overlayd's adapter does too).
  _op_getattr(signal: (...a: unknown[]) => void, path: string): void {
    signal(0, isDir(path) ? DIR : FILE);
  }

  _op_fgetattr(signal: (...a: unknown[]) => void, path: string): void {
    signal(0, isDir(path) ? DIR : FILE);
  }
}

function main(): void {
  const args = process.argv.slice(2);
  const o = args[0] === '-o' ? args[1] : '';
  const mnt = args[args.length - 1];
  const opts = ['fsname=noop', 'subtype=noop', 'big_writes', 'max_read=131072', 'max_write=131072', 'default_permissions', ...o.split(',').filter(Boolean)];
  const fuse = new NoopFuse(mnt, opts.join(','));
  fuse.mount((err) => {
    if (err) {
      process.stderr.write(`noopfs: ${err.message}\n`);
      process.exit(1);
    }
  });
  // Unmounting is the benchmark's job (never from this process: it serves the mount).
  process.on('SIGTERM', () => process.exit(0));
}

if (require.main === module) main();
