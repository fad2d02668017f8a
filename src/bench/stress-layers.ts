// The stress run's lower layers (see stress.ts): built once per recipe under --dir and reused.
// Their shape is what src/bench/stress-worker.py expects to find.
import fs from 'node:fs';
import path from 'node:path';
import { toBinary } from '../host/bytes';
import { sys } from '../host/native';

// Keep in step with stress-worker.py.
const SHARED_DIRS = 20;
const SHARED_FILES = 100;
const BIG_FILES = 4;
const BIG_BYTES = 16 << 20;
const BIG_BLOCK = 65536;
const HOT_FILES = 8;
const HOT_BASE = 256 << 10;
const TREE_DIRS = 10;
const TREE_FILES = 20;
const SUB_FILES = 5;
const RO_FILES = 30;
/** Bump when the layers' recipe changes. */
const RECIPE = 1;

function lowerBody(rel: string, len: number): Buffer {
  const line = Buffer.from(rel + '\n');
  const b = Buffer.alloc(len);
  for (let o = 0; o < len; o += line.length) line.copy(b, o, 0, Math.min(line.length, len - o));
  return b;
}

function bigBlock(name: string, b: number): Buffer {
  return Buffer.from(`${name}:${String(b).padStart(8, '0')}:`.padEnd(64, '.').repeat(BIG_BLOCK / 64));
}

function whiteout(dir: string, name: string): void {
  const r = sys.mknodat(-100, toBinary(path.join(dir, name)), 0o020000 | 0o600, 0, 0);
  if (r < 0) throw new Error(`mknod whiteout ${dir}/${name}: errno ${-r}`);
}

/**
 * l1 (top) .. l3: shared/ (read only by the workers: 20 merged dirs of 100 files, shadowed
 * copies, whiteouts, an opaque dir, lower hard links, symlinks), big/ (16 MiB files), hot/
 * (read and appended to by every worker), and wK/ per worker slot (its own lower tree, which
 * it copies up, removes and recreates). About 2400 + 330 per slot files.
 */
export function buildLayers(dir: string, slots: number, say: (msg: string) => void): string[] {
  const root = path.join(dir, 'layers');
  const layers = ['l1', 'l2', 'l3'].map((l) => path.join(root, l));
  const stamp = path.join(root, 'recipe.json');
  const recipe = JSON.stringify({ RECIPE, slots });
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === recipe) return layers;
  say(`building the lower layers in ${root} (once)`);
  fs.rmSync(root, { recursive: true, force: true });
  const put = (li: number, rel: string, len: number): void => {
    const p = path.join(layers[li], rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, lowerBody(rel, len));
  };
  const mk = (li: number, rel: string): void => { fs.mkdirSync(path.join(layers[li], rel), { recursive: true }); };
  let n = 0;
  for (let d = 0; d < SHARED_DIRS; d++) {
    const dn = `shared/d${String(d).padStart(2, '0')}`;
    for (let li = 0; li < 3; li++) mk(li, dn);
    for (let j = 0; j < SHARED_FILES; j++) {
      const rel = `${dn}/f${String(j).padStart(3, '0')}`;
      const li = j % 3;
      const len = 50 + ((j * 97 + d * 13) % 4000);
      put(li, rel, len);
      if (j % 7 === 0 && li < 2) put(li + 1, rel, len);
      if (j % 25 === 0) {
        const h = `h${String(j).padStart(3, '0')}`;
        put(2, `${dn}/${h}`, 100);
        whiteout(path.join(layers[0], dn), h);
      }
      n++;
    }
  }
  for (let i = 0; i < 50; i++) put(2, `shared/opq/a${i}`, 300);
  for (let i = 0; i < 10; i++) put(0, `shared/opq/b${i}`, 300);
  const opq = sys.openat(-100, toBinary(path.join(layers[0], 'shared/opq')), sys.constants.O_PATH | sys.constants.O_DIRECTORY, 0);
  const set = opq < 0 ? opq : sys.setxattr(opq, '', 'trusted.overlay.opaque', Buffer.from('y'), 0);
  if (opq >= 0) sys.close(opq);
  if (set < 0) throw new Error(`cannot set trusted.overlay.opaque: errno ${-set}`);
  put(1, 'shared/links/x', 5000);
  for (const l of ['x1', 'x2', 'x3']) fs.linkSync(path.join(layers[1], 'shared/links/x'), path.join(layers[1], 'shared/links', l));
  mk(0, 'shared/sym');
  fs.symlinkSync('../d00/f000', path.join(layers[0], 'shared/sym/s0'));
  fs.symlinkSync('../d01/f001', path.join(layers[0], 'shared/sym/s1'));
  fs.symlinkSync('../links/x', path.join(layers[0], 'shared/sym/s2'));
  for (let li = 0; li < 3; li++) mk(li, 'big');
  for (let i = 0; i < BIG_FILES; i++) {
    const name = `big${i}`;
    const fd = fs.openSync(path.join(layers[2], 'big', name), 'w');
    for (let b = 0; b < BIG_BYTES / BIG_BLOCK; b++) fs.writeSync(fd, bigBlock(name, b));
    fs.closeSync(fd);
  }
  for (let i = 0; i < HOT_FILES; i++) put(1, `hot/h${i}`, HOT_BASE);
  for (let k = 0; k < slots; k++) {
    const w = `w${k}`;
    for (let s = 0; s < TREE_DIRS; s++) {
      const sd = `${w}/tree/s${s}`;
      for (let li = 0; li < 3; li++) mk(li, sd);
      for (let j = 0; j < TREE_FILES; j++) put(j % 3, `${sd}/f${j}`, 100 + 37 * j);
      for (let j = 0; j < SUB_FILES; j++) put(2, `${sd}/sub/g${j}`, 200);
      put(2, `${sd}/hz`, 100);
      whiteout(path.join(layers[0], sd), 'hz');
    }
    mk(0, `${w}/ro`);
    for (let j = 0; j < RO_FILES; j++) put(j % 2 ? 0 : 2, `${w}/ro/r${j}`, 500 + 11 * j);
    for (let j = 0; j < 4; j++) put(1 + (j % 2), `${w}/ldir/e${j}`, 100);
  }
  fs.writeFileSync(stamp, recipe);
  say(`layers built: ${n + 60 + 4 + BIG_FILES + HOT_FILES + slots * (TREE_DIRS * (TREE_FILES + SUB_FILES + 1) + RO_FILES + 4)} files`);
  return layers;
}
