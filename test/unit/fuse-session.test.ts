// The kernel transport without /dev/fuse: a session and its ops serving a core overlay on temp
// dirs through a fake device (test/lib/fake-fuse.ts), request bytes in, reply bytes out.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { E, FsError } from '../../src/core/errors';
import type { FuseMountOptions } from '../../src/fuse/adapter';
import type { PassthroughMode } from '../../src/fuse-kernel/passthrough';
import type { KernelOps } from '../../src/fuse-kernel/ops';
import { FOPEN, INIT, INIT2, NOTIFY, Op } from '../../src/fuse-kernel/protocol';
import { serveDevice } from '../../src/fuse-kernel/transport';
import { EMPTY, Session } from '../../src/fuse-kernel/session';
import { createLogger } from '../../src/log/logger';
import { FakeFuse, attrOf, body, direntsOf, entryOf, type Written } from '../lib/fake-fuse';
import { coreStack, type CoreStack } from '../lib/stack';
import type { Tree } from '../lib/tree';

const ROOT = 1;
const O_WRONLY = 1;

interface Served { dev: FakeFuse; ops: KernelOps; s: CoreStack }

function serve(t: Test, lowers: Tree[], opts: Partial<FuseMountOptions> = {}, passthrough: PassthroughMode = 'off'): Served {
  const s = coreStack(lowers, {}, t);
  const dev = new FakeFuse();
  const fuse: FuseMountOptions = { allowOther: false, allowRoot: false, defaultPermissions: true, fsname: 'test', extra: [], spin: 0, ...opts };
  const ops = serveDevice(s.ov, dev, fuse, createLogger('silent'), passthrough, 1);
  t.teardown(() => ops.session.end());
  return { dev, ops, s };
}

function init(dev: FakeFuse, flags2 = 0): Written {
  return dev.call(Op.INIT, 0, body.init(7, 45, INIT.ASYNC_READ | INIT.DO_READDIRPLUS | INIT.WRITEBACK_CACHE | INIT.INIT_EXT | (1 << 2), flags2));
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('INIT: the handshake, the flags taken, and the session reported ready', async (t) => {
  const { dev, ops } = serve(t, [{ a: 'a' }]);
  let ready = false;
  ops.onInit = () => { ready = true; };
  const r = init(dev, INIT2.PASSTHROUGH);
  t.equal(r.error, 0);
  t.equal(r.body.length, 64, 'a whole fuse_init_out');
  t.equal(r.body.readUInt32LE(0), 7, 'major');
  t.equal(r.body.readUInt32LE(4), 45, 'the kernel\'s minor, known to us');
  const flags = r.body.readUInt32LE(12);
  t.ok(flags & INIT.ASYNC_READ && flags & INIT.DO_READDIRPLUS, 'what we want of what is offered');
  t.ok(flags & INIT.WRITEBACK_CACHE, 'the writeback cache where data goes through the daemon');
  t.notOk(flags & (1 << 2), 'nothing we did not ask for (FUSE_FILE_OPS)');
  t.equal(r.body.readUInt32LE(32) & INIT2.PASSTHROUGH, 0, 'no passthrough when it is off');
  t.equal(r.body.readUInt32LE(20), 1 << 20, 'max_write');
  t.notOk(ready, 'ready once the reply is out, not before');
  await tick();
  t.ok(ready);
  const newer = dev.call(Op.INIT, 0, body.init(8, 0, 0));
  t.same([newer.error, newer.body.length, newer.body.readUInt32LE(0)], [0, 8, 7], 'a newer major: ours, for the kernel to retry with');
  t.equal(dev.call(Op.INIT, 0, body.init(6, 0, 0)).error, -E.EPROTO, 'an older one: EPROTO');
});

t.test('INIT with passthrough on: offered and taken, no writeback cache', async (t) => {
  const { dev, ops } = serve(t, [{ a: 'a' }], {}, 'upper');
  const r = init(dev, INIT2.PASSTHROUGH);
  t.ok(r.body.readUInt32LE(32) & INIT2.PASSTHROUGH, 'FUSE_PASSTHROUGH in flags2');
  t.equal(r.body.readUInt32LE(12) & INIT.WRITEBACK_CACHE, 0);
  t.equal(r.body.readUInt32LE(36), 1, 'max_stack_depth');
  t.ok(ops.passthrough.on);
});

t.test('LOOKUP, GETATTR and FORGET keep the kernel\'s reference counts', async (t) => {
  const { dev, ops } = serve(t, [{ d: { dir: { f: 'hello' } } }]);
  init(dev);
  const d1 = entryOf(dev.call(Op.LOOKUP, ROOT, body.name('d')).body);
  const d2 = entryOf(dev.call(Op.LOOKUP, ROOT, body.name('d')).body);
  t.equal(d1.nodeid, d2.nodeid, 'one node for one name');
  t.equal(d1.mode & 0o170000, 0o040000, 'a directory');
  t.equal(d1.entryValid, 86400, 'entries cached a day by default');
  const f = entryOf(dev.call(Op.LOOKUP, d1.nodeid, body.name('f')).body);
  t.equal(f.size, 5);
  t.equal(ops.union.table.get(d1.nodeid)?.lookups, 2, 'two lookups counted');
  const a = attrOf(dev.call(Op.GETATTR, f.nodeid, body.u32s(0, 0, 0, 0)).body);
  t.same([a.ino, a.size, a.mode], [f.ino, 5, 0o100644]);
  dev.push(Op.FORGET, f.nodeid, body.u64s(1));
  t.same(dev.deliver(), [], 'FORGET is not answered');
  t.equal(ops.union.table.get(f.nodeid), undefined, 'forgotten: the node is gone');
  t.equal(dev.call(Op.GETATTR, f.nodeid, body.u32s(0, 0, 0, 0)).error, -E.ESTALE, 'a forgotten node is stale');
  dev.push(Op.BATCH_FORGET, 0, Buffer.concat([body.u32s(1, 0), body.u64s(d1.nodeid, 1)]));
  dev.deliver();
  t.equal(ops.union.table.get(d1.nodeid)?.lookups, 1, 'BATCH_FORGET drops one of two');
  dev.push(Op.BATCH_FORGET, 0, Buffer.concat([body.u32s(1, 0), body.u64s(d1.nodeid, 1)]));
  dev.deliver();
  const d = ops.union.table.get(d1.nodeid);
  t.equal(d?.lookups, 0, 'and then the other');
  // The tree is also the directory cache: a resolved directory's node stays while its layer
  // stack is cached, and goes with it.
  t.ok(d?.stack, 'the directory node stays while its stack is cached');
  ops.overlay.resolver.cache.clear();
  t.equal(ops.union.table.get(d1.nodeid), undefined, 'and goes with it');
  t.equal(ops.union.table.size, 1, 'only the root is left');
});

t.test('a missing name: a cached negative entry, or ENOENT when misses are not cached', async (t) => {
  const cached = serve(t, [{ a: 'a' }]);
  init(cached.dev);
  const r = cached.dev.call(Op.LOOKUP, ROOT, body.name('nope'));
  t.equal(r.error, 0);
  t.same([entryOf(r.body).nodeid, entryOf(r.body).entryValid], [0, 86400], 'node 0, valid a day');
  const plain = serve(t, [{ a: 'a' }], { negativeTimeout: 0 });
  init(plain.dev);
  t.equal(plain.dev.call(Op.LOOKUP, ROOT, body.name('nope')).error, -E.ENOENT);
});

t.test('READDIR and READDIRPLUS encode the merged listing', async (t) => {
  const { dev, ops } = serve(t, [{ dir: 'a', file: 'f', sub: { dir: { x: 'x' } } }, { old: 'o', file: 'below' }]);
  init(dev);
  const open = dev.call(Op.OPENDIR, ROOT, body.u32s(0, 0));
  const fh = Number(open.body.readBigUInt64LE(0));
  const list = direntsOf(dev.call(Op.READDIR, ROOT, body.read(fh, 0, 4096)).body);
  t.same(list.map((e) => e.name).sort(), ['.', '..', 'dir', 'file', 'old', 'sub']);
  t.same(list.map((e) => e.off), [1, 2, 3, 4, 5, 6], 'each record\'s offset is the next one\'s');
  const byName = Object.fromEntries(list.map((e) => [e.name, e]));
  t.equal(byName.sub.type, 4, 'DT_DIR');
  t.equal(byName.file.type, 8, 'DT_REG');
  t.ok(byName.file.ino > 0n, 'd_ino filled in');
  // A buffer for two records: the listing goes on from the offset the kernel gives back.
  const first = direntsOf(dev.call(Op.READDIR, ROOT, body.read(fh, 0, 64)).body);
  t.equal(first.length, 2, 'only whole records that fit');
  const rest = direntsOf(dev.call(Op.READDIR, ROOT, body.read(fh, first[1].off, 4096)).body);
  t.same([...first, ...rest].map((e) => e.name), list.map((e) => e.name), 'resumed where it stopped');
  // READDIRPLUS: entries with attributes, except files the kernel already holds a node for.
  const held = entryOf(dev.call(Op.LOOKUP, ROOT, body.name('file')).body);
  const plus = direntsOf(dev.call(Op.READDIRPLUS, ROOT, body.read(fh, 0, 4096)).body, true);
  const p = Object.fromEntries(plus.map((e) => [e.name, e]));
  t.equal(p.file.nodeid, 0, 'a held file: named without attributes');
  t.equal(p.file.ino, held.ino, 'its d_ino is the one the kernel has');
  t.ok(p.old.nodeid! > 0, 'another file: its entry');
  t.equal(ops.union.table.get(p.old.nodeid!)?.lookups, 1, 'which counts a lookup');
  t.equal(p['.'].nodeid, 0, '"." carries no entry');
  t.equal(dev.call(Op.RELEASEDIR, ROOT, body.u64s(fh, 0, 0)).error, 0);
  t.equal(dev.call(Op.READDIR, ROOT, body.read(fh, 0, 4096)).error, -E.EBADF, 'a released handle');
});

t.test('errors: unknown ops, stale nodes, allow_root', async (t) => {
  const { dev } = serve(t, [{ a: 'a' }], { allowRoot: true });
  init(dev);
  t.equal(dev.call(99, ROOT).error, -E.ENOSYS, 'an op we do not know');
  t.equal(dev.call(Op.GETATTR, 12345, body.u32s(0, 0, 0, 0)).error, -E.ESTALE, 'a node we never gave');
  t.equal(dev.call(Op.LOOKUP, ROOT, body.name('a'), { uid: 4321 }).error, -E.EACCES, 'allow_root: another user is refused');
  t.equal(dev.call(Op.LOOKUP, ROOT, body.name('a'), { uid: 0 }).error, 0, 'root is not');
  t.equal(dev.call(Op.LOOKUP, ROOT, body.name('a/b')).error, -E.EINVAL, 'a name with a slash');
});

t.test('a copy-up invalidates the attributes the kernel holds, before the reply', async (t) => {
  const { dev, s } = serve(t, [{ f: 'lower' }]);
  init(dev);
  const f = entryOf(dev.call(Op.LOOKUP, ROOT, body.name('f')).body);
  const before = dev.written.length;
  const unique = dev.push(Op.OPEN, f.nodeid, body.u32s(O_WRONLY, 0));
  dev.deliver();
  // The copy's data is written in worker threads; the open is answered once it is done.
  const out = (await dev.until(unique)).slice(before);
  t.equal(out.length, 2, 'a notification and the reply');
  t.same([out[0].unique, out[0].error, Number(out[0].body.readBigUInt64LE(0)), out[0].body.readBigInt64LE(8)], [0, NOTIFY.INVAL_INODE, f.nodeid, -1n], 'FUSE_NOTIFY_INVAL_INODE of the node, attributes only');
  t.same([out[1].unique, out[1].error], [unique, 0], 'then the open');
  t.ok(fs.existsSync(path.join(s.upper!, 'f')), 'copied up');
});

t.test('entry invalidations go out from the thread pool, after the reply', async (t) => {
  const { dev, ops } = serve(t, [{ a: 'a' }]);
  init(dev);
  ops.session.invalEntry(ROOT, 'a');
  t.same(dev.writtenAsync, [], 'not from within the request');
  await tick();
  t.equal(dev.writtenAsync.length, 1);
  const n = dev.writtenAsync[0];
  t.same([n.unique, n.error, Number(n.body.readBigUInt64LE(0)), n.body.readUInt32LE(8), n.body.toString('utf8', 16)], [0, NOTIFY.INVAL_ENTRY, ROOT, 1, 'a\0']);
});

t.test('data: a write answered once the thread pool is done, then read back', async (t) => {
  const { dev } = serve(t, [{}]);
  init(dev);
  const c = dev.call(Op.CREATE, ROOT, Buffer.concat([body.u32s(2 /* O_RDWR */, 0o100644, 0o22, 0), body.name('new')]));
  t.equal(c.error, 0);
  const node = entryOf(c.body).nodeid;
  const fh = Number(c.body.readBigUInt64LE(128));
  const data = Buffer.from('hello world');
  const w = Buffer.alloc(40);
  w.writeBigUInt64LE(BigInt(fh), 0); w.writeBigUInt64LE(0n, 8); w.writeUInt32LE(data.length, 16);
  const unique = dev.push(Op.WRITE, node, Buffer.concat([w, data]));
  t.same(dev.deliver(), [], 'no reply yet');
  const reply = (await dev.until(unique)).pop();
  t.same([reply?.error, reply?.body.readUInt32LE(0)], [0, data.length], 'fuse_write_out: the bytes written');
  const r = dev.call(Op.READ, node, body.read(fh, 6, 100));
  t.equal(r.body.toString(), 'world', 'a short read at the end of the file, answered at once');
  t.equal(dev.call(Op.RELEASE, node, body.u64s(fh, 0, 0)).error, 0);
});

t.test('a request the handler says must wait is parked, handled again once, or given up', async (t) => {
  const dev = new FakeFuse();
  const session = new Session(dev, createLogger('silent'), 0);
  t.teardown(() => session.end());
  const held = new Error('held up');
  let release: (() => void) | undefined;
  let calls = 0;
  session.start({
    handle: (req) => {
      calls++;
      if (req.nodeid === 7 && !release) throw held;
      return EMPTY;
    },
    retryAfter: (err) => (err === held ? (signal) => new Promise<void>((resolve, reject) => {
      release = resolve;
      signal.addEventListener('abort', () => reject(new FsError(E.EINTR, 'wait')));
    }) : undefined),
  });
  const unique = dev.push(Op.GETATTR, 7, body.u32s(0, 0, 0, 0), { pid: 4242 });
  t.same(dev.deliver(), [], 'parked: no reply yet');
  t.equal(session.parkedCaller(unique), 4242, 'its caller known, for INTERRUPT');
  release!();
  const out = await dev.until(unique);
  t.same([out[out.length - 1].error, calls, session.ops], [0, 2, 1], 'handled again, answered, counted once');
  t.equal(session.parkedCaller(unique), undefined);
  release = undefined;
  const other = dev.push(Op.GETATTR, 7, body.u32s(0, 0, 0, 0));
  dev.deliver();
  session.cancel(other);
  t.equal((await dev.until(other)).pop()?.error, -E.EINTR, 'given up: the wait\'s error is the answer');
});

t.test('passthrough: an upper file\'s open binds a backing file, its release lets it go', async (t) => {
  const { dev, ops } = serve(t, [{ low: 'lower' }], {}, 'upper');
  init(dev, INIT2.PASSTHROUGH);
  const c = dev.call(Op.CREATE, ROOT, Buffer.concat([body.u32s(2, 0o100644, 0o22, 0), body.name('up')]));
  const node = entryOf(c.body).nodeid;
  const open = c.body.subarray(128);
  t.ok(open.readUInt32LE(8) & FOPEN.PASSTHROUGH, 'FOPEN_PASSTHROUGH');
  t.equal(open.readInt32LE(12), [...dev.backing.keys()][0], 'with the backing id registered');
  const again = dev.call(Op.OPEN, node, body.u32s(0, 0));
  t.equal(again.body.readInt32LE(12), open.readInt32LE(12), 'a second open shares it');
  t.equal(dev.backing.size, 1);
  const low = entryOf(dev.call(Op.LOOKUP, ROOT, body.name('low')).body).nodeid;
  const reader = dev.call(Op.OPEN, low, body.u32s(0, 0)).body;
  t.same([reader.readUInt32LE(8) & (FOPEN.PASSTHROUGH | FOPEN.KEEP_CACHE), reader.readInt32LE(12)], [FOPEN.KEEP_CACHE, 0], 'a lower file\'s reader goes through the daemon, page cache kept');
  dev.call(Op.RELEASE, node, body.u64s(Number(open.readBigUInt64LE(0)), 0, 0));
  t.equal(dev.backing.size, 1, 'kept while a file is open on it');
  dev.call(Op.RELEASE, node, body.u64s(Number(again.body.readBigUInt64LE(0)), 0, 0));
  t.equal(dev.backing.size, 0, 'closed with the last');
  t.equal(ops.passthrough.stats.backingIds, 0);
});

t.test('open(O_TRUNC) by a caller without CAP_FSETID drops setuid and setgid', async (t) => {
  const { dev } = serve(t, [{ s: { file: 'x', mode: 0o6755 } }]);
  init(dev);
  const f = entryOf(dev.call(Op.LOOKUP, ROOT, body.name('s')).body).nodeid;
  t.equal(attrOf(dev.call(Op.GETATTR, f, body.u32s(0, 0, 0, 0)).body).mode & 0o7777, 0o6755);
  const unique = dev.push(Op.OPEN, f, body.u32s(O_WRONLY | 0o1000 /* O_TRUNC */, 0), { uid: 1000, gid: 1000 });
  const out = dev.deliver();
  t.same(out.map((w) => w.error), [NOTIFY.INVAL_INODE, NOTIFY.INVAL_INODE, 0], 'the kernel told of the copy-up and of the mode before the open is answered');
  t.equal(out[2].unique, unique);
  t.equal(attrOf(dev.call(Op.GETATTR, f, body.u32s(0, 0, 0, 0)).body).mode & 0o7777, 0o0755, 'setgid too: the group may execute');
});

t.test('DESTROY ends the session and closes the device', async (t) => {
  const { dev, ops } = serve(t, [{}]);
  init(dev);
  t.equal(dev.call(Op.DESTROY, 0).error, 0);
  await tick();
  t.ok(ops.session.isEnded);
  t.ok(dev.closed);
});
