// The fuse-native transport's path walker (src/fuse/walk.ts) over the node-addressed union, on
// real temporary layers: paths walked to nodes name by name, the nodes held in a bounded LRU
// and given back (the tree stays bounded however many paths pass), and libfuse's hidden names
// of unlinked-but-open files mapped to their nameless nodes.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { DAEMON_CALLER } from '../../src/core/config';
import { C } from '../../src/host/native';
import { Union } from '../../src/core/union';
import { PathWalker } from '../../src/fuse/walk';
import { coreStack, type CoreStack } from '../lib/stack';
import type { Tree } from '../lib/tree';
import { workLeft } from '../lib/write-helpers';

/**
 * The tree's size once the directory cache lets go too: a directory whose stack is cached stays
 * in the tree whoever holds it (core/dircache.ts), and only what the walker holds is asked here.
 */
function settled(s: CoreStack, union: Union): number {
  s.ov.resolver.cache.clear();
  return union.table.size;
}

const DIRS = 10;
const FILES = 40;

/** DIRS directories of FILES files each, in the lower layer. */
function manyFiles(): Tree {
  const tree: Tree = {};
  for (let d = 0; d < DIRS; d++) {
    const dir: Tree = {};
    for (let f = 0; f < FILES; f++) dir[`f${f}`] = `d${d} f${f}`;
    tree[`d${d}`] = { dir };
  }
  return tree;
}

t.test('walking many more paths than the bound keeps the held nodes and the tree bounded; close gives all back', async (t) => {
  const s = coreStack([manyFiles()], {}, t);
  const union = new Union(s.ov);
  const bound = 32;
  const walk = new PathWalker(union, bound);
  let biggest = 0;
  const wrong: string[] = [];
  for (let round = 0; round < 2; round++) {
    for (let d = 0; d < DIRS; d++) {
      for (let f = 0; f < FILES; f++) {
        if (walk.attr(`/d${d}/f${f}`).size !== `d${d} f${f}`.length) wrong.push(`/d${d}/f${f}`);
        biggest = Math.max(biggest, union.table.size);
      }
    }
  }
  t.same(wrong, [], 'each path\'s own attributes');
  t.ok(walk.size <= bound, `held ${walk.size} <= ${bound}`);
  // Beyond the held nodes: the root, and the directories of held files.
  t.ok(biggest <= bound + 1 + DIRS, `tree at most ${biggest} nodes for ${2 * DIRS * FILES} walks`);
  walk.close();
  t.equal(settled(s, union), 1, 'only the root is left');
});

t.test('a walk reuses the nodes it holds; a failed step fails as a lookup and holds nothing new below it', async (t) => {
  const s = coreStack([{ a: { dir: { b: { dir: { f: 'deep' } } } }, file: 'x' }], {}, t);
  const union = new Union(s.ov);
  const walk = new PathWalker(union, 100);
  const f = walk.node('/a/b/f');
  t.equal(walk.node('/a/b/f'), f, 'the same node again');
  t.equal(union.pathOf(f), '/a/b/f');
  t.throws(() => walk.node('/a/b/missing'), { code: 'ENOENT' });
  t.throws(() => walk.node('/file/x'), { code: 'ENOTDIR' });
  t.equal(walk.size, 4, '/a, /a/b, /a/b/f and /file');
  t.equal(walk.parent('/a/b/new').parent, union.table.find('/a/b'));
  t.equal(walk.parent('/top').parent, union.root);
  walk.close();
  t.equal(settled(s, union), 1);
});

t.test('a path deeper than the bound is walked; the directories it passed stay while their children are held', async (t) => {
  const s = coreStack([{ a: { dir: { b: { dir: { c: { dir: { d: { dir: { f: 'five' } } } } } } } } }], {}, t);
  const union = new Union(s.ov);
  const walk = new PathWalker(union, 2);
  t.equal(walk.attr('/a/b/c/d/f').size, 4);
  t.ok(walk.size <= 2, 'held within the bound');
  t.equal(union.table.find('/a/b/c/d/f'), undefined, 'a stat makes no node for the name it stats');
  walk.node('/a/b/c/d/f');
  t.ok(union.table.find('/a/b/c/d/f'), 'a walk to it does: the file and every directory above it in the tree');
  walk.node('/a');
  walk.node('/a/b');
  t.equal(union.table.find('/a/b/c/d/f'), undefined, 'f dropped once nothing holds it');
  t.equal(settled(s, union), 3, 'the root and the two held');
  walk.close();
  t.equal(settled(s, union), 1);
});

t.test('an unlinked name gives back its node; a removed directory too', async (t) => {
  const s = coreStack([{ d: { dir: { f: 'f', e: { dir: {} } } } }], {}, t);
  const union = new Union(s.ov);
  const walk = new PathWalker(union, 100);
  const f = walk.node('/d/f');
  walk.node('/d/e');
  union.unlink(walk.parent('/d/f').parent, 'f');
  walk.letGo(f);
  t.equal(union.table.get(f.id), undefined, 'the unlinked node is dropped');
  t.throws(() => walk.node('/d/f'), { code: 'ENOENT' });
  walk.close();
  t.equal(settled(s, union), 1);
});

t.test('libfuse\'s hidden name of an open file: unlinked at once, reached through its files, let go at the last unlink', async (t) => {
  const s = coreStack([{ d: { dir: { low: 'lower data' } } }], { upper: { u: { dir: {} } } }, t);
  const union = new Union(s.ov);
  const walk = new PathWalker(union, 100);
  const made = union.create(walk.node('/u'), 'up', 0o644, C.O_RDWR, DAEMON_CALLER);
  s.ov.writeSync(made.fh, Buffer.from('upper data'), 10, 0);
  const low = union.open(walk.node('/d/low'), C.O_RDONLY);
  const HID = '.fuse_hidden0000000100000002';
  const HID2 = '.fuse_hidden0000000300000004';
  walk.hide('/u/up', `/u/${HID}`);
  walk.hide('/d/low', `/d/${HID2}`);
  t.throws(() => walk.node('/u/up'), { code: 'ENOENT' }, 'the name is gone');
  t.throws(() => walk.node('/d/low'), { code: 'ENOENT' });
  t.same(s.ov.readdirNames('/u'), []);
  t.same(s.ov.readdirNames('/d'), []);
  const upper = s.upper as string;
  t.same(fs.readdirSync(path.join(upper, 'u')), [], 'the upper file is unlinked, not parked');
  t.same(fs.readdirSync(path.join(upper, 'd')), ['low'], 'the lower name\'s whiteout');
  t.same(workLeft(s.work as string), [], 'nothing parked in the work directory');
  t.equal(walk.hiddenCount, 2);
  // Attributes and changes by the hidden path reach the object through its open file.
  t.equal(walk.attr(`/u/${HID}`).size, 10);
  t.equal(walk.attr(`/d/${HID2}`).size, 10);
  union.setattr(walk.node(`/u/${HID}`), { mode: 0o600, size: 5 });
  const a = walk.attr(`/u/${HID}`);
  t.equal(a.mode & 0o7777, 0o600);
  t.equal(a.size, 5);
  t.equal(a.nlink, 0);
  t.throws(() => walk.hide(`/u/${HID}`, '/u/.fuse_hidden0000000500000006'), { code: 'EBUSY' });
  t.throws(() => walk.hide('/d', `/u/${HID}`), { code: 'EBUSY' }, 'a hidden name is not hidden over');
  // libfuse names it by its directory's new path after a rename of the directory.
  union.rename(union.root, 'u', union.root, 'v', 0);
  t.equal(walk.attr(`/v/${HID}`).size, 5);
  union.release(made.fh);
  union.release(low);
  const v = walk.node('/v');
  t.ok(walk.unhide(v, HID));
  t.ok(walk.unhide(walk.node('/d'), HID2));
  t.notOk(walk.unhide(v, HID), 'once');
  t.equal(walk.hiddenCount, 0);
  walk.close();
  t.equal(settled(s, union), 1, 'nothing held, nothing open');
});
