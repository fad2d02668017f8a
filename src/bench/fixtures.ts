// The layers every system mounts: three lower directories (l1 on top, l3 at the bottom),
// built once per size and reused by later runs while their recipe is unchanged. Every mount
// gets a fresh, empty upper and work directory, so writes never leak from one run into another.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { toBinary } from '../host/bytes';
import { sys } from '../host/native';
import { progress, run } from './util';

export interface Sizes {
  /** (1) stat: dirs × files per dir, spread over the three layers. */
  treeDirs: number;
  treeFilesPerDir: number;
  /** (2) entries of the one merged directory that is listed. */
  readdirEntries: number;
  readdirPasses: number;
  /** (3) files created, (4) lower files deleted. */
  createFiles: number;
  deleteDirs: number;
  deleteFilesPerDir: number;
  /** (5)(6)(7) the big lower file, and the random reads over it. */
  bigBytes: number;
  randomReads: number;
}

export const FULL: Sizes = {
  treeDirs: 100, treeFilesPerDir: 500, readdirEntries: 10000, readdirPasses: 10,
  createFiles: 10000, deleteDirs: 100, deleteFilesPerDir: 100, bigBytes: 1 << 30, randomReads: 20000,
};

export const QUICK: Sizes = {
  treeDirs: 10, treeFilesPerDir: 200, readdirEntries: 1000, readdirPasses: 5,
  createFiles: 1000, deleteDirs: 10, deleteFilesPerDir: 100, bigBytes: 64 << 20, randomReads: 2000,
};

/** Bump when the recipe below changes, so old fixtures are rebuilt. */
const RECIPE = 3;

export interface Fixtures {
  dir: string;
  /** Lower layers, top first (the order lowerdir= takes them). */
  lowers: string[];
  /** Merged-relative paths of every visible file of the stat tree, in directory order. */
  statList: string;
  statCount: number;
  readdirDir: string;
  readdirVisible: number;
  deleteDir: string;
  deleteCount: number;
  bigFile: string;
  bigLowerPath: string;
  tarball: string;
  tarFiles: number;
}

const LAYERS = ['l1', 'l2', 'l3'];

function whiteout(dir: string, name: string): void {
  // A kernel-format whiteout: a 0/0 character device (root only).
  const fd = sys.openat(-100, toBinary(dir), sys.constants.O_PATH | sys.constants.O_DIRECTORY, 0);
  if (fd < 0) throw new Error(`open ${dir}: ${-fd}`);
  try {
    const r = sys.mknodat(fd, toBinary(name), 0o020000 | 0o600, 0, 0);
    if (r < 0) throw new Error(`mknod whiteout ${dir}/${name}: errno ${-r}`);
  } finally {
    sys.close(fd);
  }
}

const body = Buffer.alloc(100, 'overlayd benchmark file\n');

/**
 * (1) tree/dNNN/fNNNNN: every directory exists in all three layers (merged directories);
 * file j lives in layer j % 3; every 7th file also has a shadowed copy one layer lower;
 * every 50th name is a whiteout in l1 over a file in l3 (hidden, not in the stat list).
 */
function buildTree(root: string, s: Sizes): { list: string[] } {
  const list: string[] = [];
  for (let d = 0; d < s.treeDirs; d++) {
    const dn = `tree/d${String(d).padStart(3, '0')}`;
    for (const l of LAYERS) fs.mkdirSync(path.join(root, l, dn), { recursive: true });
    for (let j = 0; j < s.treeFilesPerDir; j++) {
      const fn = `f${String(j).padStart(5, '0')}`;
      const li = j % 3;
      fs.writeFileSync(path.join(root, LAYERS[li], dn, fn), body);
      if (j % 7 === 0 && li < 2) fs.writeFileSync(path.join(root, LAYERS[li + 1], dn, fn), body);
      list.push(`${dn}/${fn}`);
    }
    for (let j = 0; j < s.treeFilesPerDir; j += 50) {
      const hn = `h${String(j).padStart(5, '0')}`;
      fs.writeFileSync(path.join(root, 'l3', dn, hn), body);
      whiteout(path.join(root, 'l1', dn), hn);
    }
  }
  return { list };
}

/** (2) rd/: entries spread over the layers, 10% shadowed below, 3% hidden by whiteouts. */
function buildReaddir(root: string, s: Sizes): number {
  for (const l of LAYERS) fs.mkdirSync(path.join(root, l, 'rd'), { recursive: true });
  for (let i = 0; i < s.readdirEntries; i++) {
    const n = `e${String(i).padStart(6, '0')}`;
    const li = i % 3;
    fs.writeFileSync(path.join(root, LAYERS[li], 'rd', n), '');
    if (i % 10 === 0 && li < 2) fs.writeFileSync(path.join(root, LAYERS[li + 1], 'rd', n), '');
  }
  const hidden = Math.ceil(s.readdirEntries * 0.03);
  for (let i = 0; i < hidden; i++) {
    const n = `x${String(i).padStart(6, '0')}`;
    fs.writeFileSync(path.join(root, 'l3', 'rd', n), '');
    whiteout(path.join(root, 'l1', 'rd'), n);
  }
  return s.readdirEntries;
}

/** (4) del/: a lower tree, its directories merged over the three layers. */
function buildDelete(root: string, s: Sizes): number {
  let n = 0;
  for (let d = 0; d < s.deleteDirs; d++) {
    const dn = `del/d${String(d).padStart(3, '0')}`;
    for (const l of LAYERS) fs.mkdirSync(path.join(root, l, dn), { recursive: true });
    for (let j = 0; j < s.deleteFilesPerDir; j++) {
      fs.writeFileSync(path.join(root, LAYERS[j % 3], dn, `f${String(j).padStart(5, '0')}`), body);
      n++;
    }
  }
  return n;
}

/** (5)(6)(7) big/big.bin in the bottom layer: incompressible, no holes. */
function buildBig(root: string, s: Sizes): void {
  const dir = path.join(root, 'l3', 'big');
  fs.mkdirSync(dir, { recursive: true });
  for (const l of ['l1', 'l2']) fs.mkdirSync(path.join(root, l, 'big'), { recursive: true });
  const fd = fs.openSync(path.join(dir, 'big.bin'), 'w');
  try {
    const chunk = crypto.randomBytes(1 << 20);
    for (let off = 0; off < s.bigBytes; off += chunk.length) {
      chunk.writeUInt32LE(off >>> 20, 0);
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, s.bigBytes - off), off);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** (8) a real source tarball: an npm package with thousands of files, fetched once. */
export const DEFAULT_PACKAGE = 'date-fns@2.30.0';

function fetchTarball(cacheDir: string, spec: string): string {
  const dir = path.join(cacheDir, 'tarballs');
  fs.mkdirSync(dir, { recursive: true });
  const stamp = path.join(dir, `${spec.replace(/[^A-Za-z0-9@._-]/g, '_')}.name`);
  if (fs.existsSync(stamp)) {
    const f = path.join(dir, fs.readFileSync(stamp, 'utf8').trim());
    if (fs.existsSync(f)) return f;
  }
  progress(`fetching ${spec} with npm pack`);
  const out = run('npm', ['pack', spec, '--silent', '--pack-destination', dir], { cwd: dir }).trim().split('\n').pop() as string;
  fs.writeFileSync(stamp, out);
  return path.join(dir, out);
}

export function prepareFixtures(cacheDir: string, s: Sizes, label: string, tarSpec: string): Fixtures {
  const dir = path.join(cacheDir, `layers-${label}`);
  const stampFile = path.join(dir, 'recipe.json');
  const recipe = JSON.stringify({ RECIPE, s });
  const tarball = fetchTarball(cacheDir, tarSpec);
  const tarFiles = run('tar', ['tzf', tarball]).split('\n').filter((l) => l && !l.endsWith('/')).length;
  const fx: Fixtures = {
    dir,
    lowers: LAYERS.map((l) => path.join(dir, l)),
    statList: path.join(dir, 'stat-list.txt'),
    statCount: s.treeDirs * s.treeFilesPerDir,
    readdirDir: 'rd',
    readdirVisible: s.readdirEntries,
    deleteDir: 'del',
    deleteCount: s.deleteDirs * s.deleteFilesPerDir,
    bigFile: 'big/big.bin',
    bigLowerPath: path.join(dir, 'l3', 'big', 'big.bin'),
    tarball,
    tarFiles,
  };
  if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === recipe) return fx;
  progress(`building ${label} layers in ${dir} (once; reused by later runs)`);
  fs.rmSync(dir, { recursive: true, force: true });
  for (const l of LAYERS) fs.mkdirSync(path.join(dir, l), { recursive: true });
  const { list } = buildTree(dir, s);
  fs.writeFileSync(fx.statList, list.join('\n') + '\n');
  buildReaddir(dir, s);
  buildDelete(dir, s);
  buildBig(dir, s);
  run('sync', []);
  fs.writeFileSync(stampFile, recipe);
  return fx;
}
