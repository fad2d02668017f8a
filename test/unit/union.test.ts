// The union addressed by node (core/union.ts) over the one tree (core/nodes.ts), on real
// temporary layers: what a client holding nodes (the kernel transport) sees, and the tree kept
// in step with the disk whichever API changed it.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { C } from '../../src/host/native';
import { DAEMON_CALLER } from '../../src/core/config';
import { setDirCacheProcessBudget } from '../../src/core/dircache';
import { E, errnoOf } from '../../src/core/errors';
import { Union } from '../../src/core/union';
import { coreStack } from '../lib/stack';

const errno = (fn: () => unknown): number => {
  try { fn(); } catch (err) { return errnoOf(err); }
  return 0;
};

t.test('one tree: the path calls and the node calls find the same directory node, its layer stack on it', async (t) => {
  const s = coreStack([{ d: { dir: { e: { dir: { f: 'low' } } } } }], {}, t);
  const u = new Union(s.ov);
  const d = u.lookup(u.root, 'd').node;
  t.equal(u.lookup(u.root, 'd').node, d, 'one node for one name');
  const e = u.lookup(d, 'e').node;
  t.ok(d.stack, 'a lookup inside d resolved d\'s layers onto its node');
  t.equal(s.ov.tree.find('/d/e'), e, 'the path /d/e names the node the lookups made');
  s.ov.resolver.dir('/d/e');
  t.equal(e.stack, s.ov.resolver.cache.getPath('/d/e'), 'and a path call caches /d/e on that same node');
  t.equal(u.lookup(e, 'f').attr.size, 3);
  t.equal(errno(() => u.lookup(e, 'nope')), E.ENOENT);
  t.equal(errno(() => u.lookup(e, 'a/b')), E.EINVAL, 'a name is one component');
  t.equal(u.pathOf(e), '/d/e');
});

t.test('a rename moves the node with its name, whichever API renamed it', async (t) => {
  const s = coreStack([{ g: 'y' }], { upper: { a: { dir: { f: 'x' } } } }, t);
  const u = new Union(s.ov);
  const a = u.lookup(u.root, 'a').node;
  a.lookups++;
  const f = u.lookup(a, 'f').node;
  f.lookups++;
  u.rename(u.root, 'a', u.root, 'b', 0);
  t.equal(u.pathOf(f), '/b/f', 'the child follows its renamed parent');
  t.equal(u.getattr(f).size, 1, 'and is still reached by its node');
  t.equal(errno(() => u.lookup(u.root, 'a')), E.ENOENT, 'the old name is gone');
  s.ov.rename('/b', '/c');
  t.equal(u.pathOf(a), '/c', 'a path rename moves the node too');
  t.equal(u.lookup(u.root, 'c').node, a, 'the same node under the new name');
  const g = u.lookup(u.root, 'g').node;
  g.lookups++;
  u.rename(u.root, 'g', a, 'f', 0);
  t.equal(u.pathOf(g), '/c/f', 'renamed over another file');
  t.equal(u.table.get(f.id), f, 'the replaced node lives on while the client holds it');
  t.equal(f.parent, undefined, 'with no name');
});

t.test('an unlinked open file is a node without a name, reached through its file', async (t) => {
  const s = coreStack([{ f: 'lower data' }], {}, t);
  const u = new Union(s.ov);
  const f = u.lookup(u.root, 'f').node;
  f.lookups++;
  const fh = u.open(f, C.O_RDWR);
  u.unlink(u.root, 'f');
  t.equal(f.parent, undefined, 'no name left');
  t.equal(errno(() => u.lookup(u.root, 'f')), E.ENOENT);
  t.equal(u.getattr(f).size, 10, 'getattr through its open file');
  t.equal(u.setattr(f, { mode: 0o600 }).mode & 0o7777, 0o600, 'chmod through it');
  t.equal(u.setattr(f, { size: 4 }).size, 4, 'truncate through it');
  u.release(fh);
  t.equal(errno(() => u.getattr(f)), E.ENOENT, 'closed: nothing reaches it');
  f.lookups--;
  u.table.maybeDrop(f);
  t.equal(u.table.get(f.id), undefined, 'and forgotten, it is gone from the tree');
});

t.test('a hard link of a lower file: the copy-up keeps the node, both names are that node', async (t) => {
  const s = coreStack([{ d: { dir: { f: 'data' } } }], {}, t);
  const u = new Union(s.ov);
  const d = u.lookup(u.root, 'd').node;
  d.lookups++;
  const f = u.lookup(d, 'f');
  f.node.lookups++;
  const made = u.link(f.node, d, 'g', DAEMON_CALLER);
  t.equal(made.node, f.node, 'the new name is the source\'s node');
  t.equal(made.stale, undefined, 'nothing for the client to look up again');
  t.equal(made.attr.nlink, 2);
  t.equal(made.attr.ino, f.attr.ino, 'the number the client already had');
  t.ok(fs.statSync(path.join(s.upper as string, 'd', 'g')).nlink === 2, 'two names of one upper file on disk');
  u.unlink(d, 'f');
  t.equal(u.pathOf(f.node), '/d/g', 'one name left');
  t.equal(u.getattr(f.node).nlink, 1);
});

t.test('create, then a release: the node holds its file, then the client\'s lookup alone', async (t) => {
  const s = coreStack([{}], {}, t);
  const u = new Union(s.ov);
  const c = u.create(u.root, 'new', 0o644, C.O_WRONLY, DAEMON_CALLER);
  t.same([...(c.node.files ?? [])], [c.fh], 'the handle is on the node');
  t.equal(u.nodeOfFile(c.fh), c.node);
  c.node.lookups++;
  u.release(c.fh);
  t.equal(c.node.files, undefined);
  t.equal(u.table.get(c.node.id), c.node, 'kept: the client holds it');
  t.equal(u.lookup(u.root, 'new').node, c.node, 'an upper file: one node by its identity');
});

t.test('the tree stays bounded: directories nobody holds leave with their cached stacks', async (t) => {
  const tree: Record<string, { dir: Record<string, string> }> = {};
  for (let i = 0; i < 200; i++) tree[`d${i}`] = { dir: { f: String(i) } };
  const s = coreStack([tree, {}], {}, t);
  setDirCacheProcessBudget(50);
  t.teardown(() => setDirCacheProcessBudget(undefined));
  const u = new Union(s.ov);
  const held = u.lookup(u.root, 'd0').node;
  held.lookups++;
  for (let i = 0; i < 200; i++) t.equal(s.ov.getattr(`/d${i}/f`).size, String(i).length);
  const most = 50 + 2;
  t.ok(u.table.size <= most, `${u.table.size} nodes for 200 directories walked (at most ${most})`);
  s.ov.resolver.cache.clear();
  t.equal(u.table.size, 2, 'cleared: the root, and the one node the client holds');
  t.equal(u.table.get(held.id), held);
  t.equal(u.lookup(held, 'f').attr.size, 1, 'whose stack is resolved again when needed');
});

t.test('copyUp(node): the object and its parents in upper, the node and its number kept', async (t) => {
  const s = coreStack([{ a: { dir: { b: { dir: { f: 'lower' } } } } }], {}, t);
  const u = new Union(s.ov);
  const a = u.lookup(u.root, 'a').node;
  const b = u.lookup(a, 'b').node;
  const f = u.lookup(b, 'f');
  f.node.lookups++;
  const lowerOfA = a.stack?.dirs[0];
  await u.copyUp(f.node);
  // "each ancestor resolved twice": a copied-up directory keeps the stack it had, its new
  // upper directory on top, instead of being looked up again in every layer.
  t.equal(a.stack?.dirs.length, 2, '/a: upper on its lower');
  t.equal(a.stack?.dirs[0].layer, s.ov.stack.upper);
  t.equal(a.stack?.dirs[1], lowerOfA, 'the lower directory it already held, not looked up again');
  t.equal(fs.readFileSync(path.join(s.upper as string, 'a', 'b', 'f'), 'utf8'), 'lower', 'copied up with its parents');
  const after = u.getattr(f.node);
  t.ok(after.inUpper, 'the node now shows the upper object');
  t.equal(after.ino, f.attr.ino, 'under the number it had');
  t.equal(u.lookup(b, 'f').node, f.node, 'and its name still finds that node');
});
