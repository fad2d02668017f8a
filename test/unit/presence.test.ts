// The presence probe (src/core/presence.ts) on real layer directories, error by error, against
// what kernel overlayfs answers for the same layers (measured on this machine's kernel with the
// mounter unable to search a lower directory: an unprivileged user namespace's mount).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { C, sys } from '../../src/host/native';
import { S_IFCHR, lstatAt } from '../../src/host/stat';
import { E } from '../../src/core/errors';
import { DirNode } from '../../src/core/dircache';
import type { Layer } from '../../src/core/layers';
import { lookupIn } from '../../src/core/lookup';
import { lowerPositive, probe, whiteoutFile } from '../../src/core/presence';
import { DT_CHR, listMerged } from '../../src/core/readdir';
import { removeTree, tmpdir } from '../lib/tree';

const NOBODY = 65534;

function scratch(t: { teardown(fn: () => void): void }): string {
  const d = tmpdir('overlayd-presence-');
  t.teardown(() => removeTree(d));
  return d;
}

function openDir(t: { teardown(fn: () => void): void }, p: string, flags = C.O_PATH | C.O_DIRECTORY): number {
  const fd = sys.openat(-100, p, flags, 0);
  if (fd < 0) throw new Error(`open ${p}: ${-fd}`);
  t.teardown(() => sys.close(fd));
  return fd;
}

/** `fn` run with the effective uid of someone without CAP_DAC_OVERRIDE, as a rootless daemon is. */
function asNobody<T>(fn: () => T): T {
  process.seteuid?.(NOBODY);
  try {
    return fn();
  } finally {
    process.seteuid?.(0);
  }
}

const isRoot = process.getuid?.() === 0;

t.test('absent, present, and both forms of whiteout', async (t) => {
  const d = scratch(t);
  fs.writeFileSync(path.join(d, 'f'), 'x');
  sys.mknodat(-100, path.join(d, 'wh'), S_IFCHR, 0, 0);
  sys.mknodat(-100, path.join(d, 'null'), S_IFCHR | 0o666, 1, 3);
  fs.writeFileSync(path.join(d, '.wh.gone'), '');
  const fd = openDir(t, d);
  const f = probe(fd, 'f');
  t.equal(f.kind, 'present');
  t.equal(f.kind === 'present' && f.stat.size, 1, 'with its stat');
  t.equal(probe(fd, 'nothing').kind, 'absent');
  t.equal(probe(fd, 'wh').kind, 'whiteout', 'a 0/0 character device');
  t.equal(probe(fd, 'null').kind, 'present', 'another device is no whiteout');
  t.equal(probe(fd, 'gone').kind, 'whiteout', 'an OCI .wh. file');
  t.equal(whiteoutFile(fd, 'gone').kind, 'whiteout');
  t.equal(whiteoutFile(fd, 'f').kind, 'absent');
});

t.test('a listing answers for names it does not hold, without a syscall', async (t) => {
  const d = scratch(t);
  fs.writeFileSync(path.join(d, 'f'), 'x');
  const fd = openDir(t, d);
  let calls = 0;
  const counting = (dirFd: number, name: string) => { calls++; return lstatAt(dirFd, name); };
  const names = new Set(['f', '.wh.gone']);
  t.equal(probe(fd, 'nothing', names, counting).kind, 'absent');
  t.equal(probe(fd, 'gone', names, counting).kind, 'whiteout');
  t.equal(calls, 0, 'neither asked the layer');
  t.equal(probe(fd, 'f', names, counting).kind, 'present');
  t.equal(calls, 1);
});

t.test('ENAMETOOLONG is absent, as for the kernel (ovl_lookup_single, ovl_lower_positive)', async (t) => {
  const d = scratch(t);
  const fd = openDir(t, d);
  const long = 'n'.repeat(255);
  fs.symlinkSync('x', path.join(d, long));
  t.equal(probe(fd, long).kind, 'present', 'a 255-byte name is found (the kernel: a symbolic link)');
  t.equal(probe(fd, 'n'.repeat(256)).kind, 'absent', 'a 256-byte one is not there');
  let calls = 0;
  const counting = (dirFd: number, name: string) => { calls++; return lstatAt(dirFd, name); };
  t.equal(probe(fd, 'm'.repeat(253), undefined, counting).kind, 'absent');
  t.equal(calls, 1, 'no .wh. form is looked for where it cannot exist');
});

t.test('ELOOP: a symlink loop is present, as the kernel finds it (a lookup follows no link)', async (t) => {
  const d = scratch(t);
  fs.symlinkSync('loop', path.join(d, 'loop'));
  const fd = openDir(t, d);
  const p = probe(fd, 'loop');
  t.equal(p.kind, 'present');
  t.equal(p.kind === 'present' && (p.stat.mode & 0o170000), 0o120000);
  t.same(probe(fd, 'loop/x'), { kind: 'error', errno: E.ELOOP }, 'through it: an error, neither absent nor present');
});

t.test('ENOTDIR: asking a non-directory is an error, not an absence', async (t) => {
  const d = scratch(t);
  fs.writeFileSync(path.join(d, 'f'), 'x');
  const fd = openDir(t, path.join(d, 'f'), C.O_PATH);
  t.same(probe(fd, 'x'), { kind: 'error', errno: E.ENOTDIR });
  const dirFd = openDir(t, d);
  t.same(probe(dirFd, 'f/x'), { kind: 'error', errno: E.ENOTDIR });
});

t.test('EACCES: an error; lookup fails with it, a removal counts the name present, a listing shows the entry', { skip: !isRoot && 'needs root to drop to another uid' }, async (t) => {
  const d = scratch(t);
  const locked = path.join(d, 'locked');
  fs.mkdirSync(locked);
  fs.writeFileSync(path.join(locked, 'f'), 'x');
  sys.mknodat(-100, path.join(locked, 'c'), S_IFCHR | 0o600, 1, 3);
  // Listable by anyone, searchable by its owner (root) only.
  fs.chmodSync(locked, 0o744);
  fs.chmodSync(d, 0o755);
  const fd = openDir(t, locked);
  t.same(asNobody(() => probe(fd, 'f')), { kind: 'error', errno: E.EACCES }, 'the kernel: stat merged/d/f is EACCES');
  t.same(asNobody(() => probe(fd, 'nothing')), { kind: 'error', errno: E.EACCES }, 'even for a name not there');
  const upper = { writable: true } as unknown as Layer;
  const lower = { writable: false } as unknown as Layer;
  t.equal(asNobody(() => lowerPositive([{ layer: upper, fd: -1 }, { layer: lower, fd }], upper, 'f')), true, 'ovl_lower_positive: "assume something is there"');
  const node = new DirNode('/', [{ layer: lower, fd }], false, false);
  t.throws(() => asNobody(() => lookupIn(node, 'f')), { code: 'EACCES' }, 'ovl_lookup_single: the lookup fails with it');
  // A second listing (as root) is kept for the layer that cannot change; the third reads it and
  // stats what getdents left unclear, which is where nobody meets EACCES.
  listMerged(node);
  t.same(listMerged(node).map((e) => e.name).sort(), ['c', 'f']);
  const listed = asNobody(() => listMerged(node)).map((e) => [e.name, e.type]).sort();
  t.same(listed, [['c', DT_CHR], ['f', 8]], 'ovl_check_whiteouts: a character device it cannot look up is listed, not dropped');
});
