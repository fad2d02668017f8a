// FUSE over io_uring in the session, without a kernel: a fake ring beside the fake device
// (test/lib/fake-fuse.ts) stands for native/fuse_uring.c. What is asked for at INIT, when the
// ring is registered, which path each request and reply takes, and the fall back to /dev/fuse.
import t, { type Test } from 'tap';
import { E } from '../../src/core/errors';
import type { FuseMountOptions } from '../../src/fuse/adapter';
import type { KernelOps } from '../../src/fuse-kernel/ops';
import { INIT, INIT2, Op } from '../../src/fuse-kernel/protocol';
import { serveDevice, uringMode } from '../../src/fuse-kernel/transport';
import { createLogger } from '../../src/log/logger';
import { FakeFuse, FakeRing, body, entryOf, type Written } from '../lib/fake-fuse';
import { coreStack } from '../lib/stack';

const ROOT = 1;
const FUSE: FuseMountOptions = { allowOther: false, allowRoot: false, defaultPermissions: true, fsname: 'test', extra: [], spin: 0 };

interface Served { dev: FakeFuse; ring: FakeRing; ops: KernelOps }

function serve(t: Test, withRing = true): Served {
  const s = coreStack([{ a: 'a', d: { dir: { x: 'x' } } }], {}, t);
  const dev = new FakeFuse();
  const ring = new FakeRing(dev);
  const ops = serveDevice(s.ov, dev, FUSE, createLogger('silent'), 'off', 1, withRing ? { ring, note: '' } : { note: 'uring=off' });
  t.teardown(() => ops.session.end());
  return { dev, ring, ops };
}

/** INIT, the kernel offering FUSE_OVER_IO_URING or not; the reply's flags2. */
function init(dev: FakeFuse, offered: boolean): number {
  const r = dev.call(Op.INIT, 0, body.init(7, 45, INIT.ASYNC_READ | INIT.INIT_EXT, offered ? INIT2.OVER_IO_URING : 0));
  if (r.error !== 0) throw new Error(`INIT: ${r.error}`);
  return r.body.readUInt32LE(32);
}

/** The reply through the ring to `unique`, once sent (replies after an await come later). */
async function sentTo(ring: FakeRing, unique: number): Promise<Written | undefined> {
  for (let i = 0; i < 400 && !ring.sent.some((x) => x.unique === unique); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  return ring.sent.find((x) => x.unique === unique);
}

/** The one reply through the ring to `unique`. */
function only(out: Written[], unique: number): Written {
  const mine = out.filter((w) => w.unique === unique);
  if (mine.length !== 1) throw new Error(`request ${unique}: ${mine.length} replies through the ring`);
  return mine[0];
}

t.test('offered and ready: asked for at INIT, registered once the reply is out, then requests come and go through the ring', async (t) => {
  const { dev, ring, ops } = serve(t);
  t.equal(ring.registeredAt, -1, 'nothing registered before INIT is answered');
  const flags2 = init(dev, true);
  t.ok(flags2 & INIT2.OVER_IO_URING, 'FUSE_OVER_IO_URING asked for');
  t.equal(ring.registeredAt, 1, 'registered right after the INIT reply was written (the kernel refuses it before)');
  t.ok(ring.watched, 'the ring is watched');

  const u = ring.push(Op.LOOKUP, ROOT, body.name('a'));
  const before = dev.written.length;
  const r = only(ring.deliver(), u);
  t.equal(r.error, 0);
  t.ok(entryOf(r.body).nodeid > ROOT, 'the lookup answered through the ring');
  t.equal(dev.written.length, before, 'nothing of it on /dev/fuse');
  t.equal(ring.unsent.length, 0, 'no reply left unsent after a batch');

  // The kernel keeps FORGET and INTERRUPT on /dev/fuse; they are still read there.
  const node = entryOf(r.body).nodeid;
  dev.push(Op.FORGET, node, body.u64s(1));
  dev.deliver();
  t.equal(ops.union.table.size, 1, 'a FORGET read from /dev/fuse drops the node the ring handed out');

  // A batch of several: each answered on its own entry.
  const us = [ring.push(Op.LOOKUP, ROOT, body.name('d')), ring.push(Op.LOOKUP, ROOT, body.name('nope')), ring.push(Op.GETATTR, ROOT, body.u32s(0, 0, 0, 0))];
  const out = ring.deliver();
  t.same(us.map((x) => only(out, x).error), [0, 0, 0], 'three replies (a miss is a negative entry)');
  t.equal(ops.session.ringOps, 4, 'the requests the ring brought are counted');
  t.ok(ops.session.viaRing);
});

t.test('a reply given after an await is sent at once, not left for the next read', async (t) => {
  const { dev, ring } = serve(t);
  init(dev, true);
  const cu = ring.push(Op.CREATE, ROOT, Buffer.concat([body.u32s(2 /* O_RDWR */, 0o100644, 0o22, 0), body.name('new')]));
  ring.deliver();
  const c = await sentTo(ring, cu);
  if (!c) throw new Error('no reply to CREATE');
  t.equal(c.error, 0);
  const node = entryOf(c.body).nodeid;
  const fh = Number(c.body.readBigUInt64LE(128));
  const w = Buffer.alloc(40);
  const data = Buffer.from('hello');
  w.writeBigUInt64LE(BigInt(fh), 0); w.writeUInt32LE(data.length, 16);
  const u = ring.push(Op.WRITE, node, Buffer.concat([w, data]));
  t.same(ring.deliver(), [], 'a write is answered once the thread pool is done');
  const reply = await sentTo(ring, u);
  t.same([reply?.error, reply?.body.readUInt32LE(0)], [0, data.length], 'sent (flushed) as soon as it was written');
  t.equal(ring.unsent.length, 0);
});

t.test('not offered by the kernel, or no ring: not asked for, the ring closed, /dev/fuse serves', async (t) => {
  const a = serve(t);
  t.equal(init(a.dev, false) & INIT2.OVER_IO_URING, 0, 'not offered: not asked for');
  t.equal(a.ring.registeredAt, -1, 'not registered');
  t.ok(a.ring.closed, 'closed');
  t.equal(a.dev.call(Op.LOOKUP, ROOT, body.name('a')).error, 0, '/dev/fuse serves');
  t.notOk(a.ops.session.viaRing);

  const b = serve(t, false);
  t.equal(init(b.dev, true) & INIT2.OVER_IO_URING, 0, 'offered, but no ring: not asked for (the kernel would hold every request for it)');
  t.equal(b.dev.call(Op.LOOKUP, ROOT, body.name('a')).error, 0);
});

t.test('registration refused: the ring dropped, replies back on /dev/fuse', async (t) => {
  const { dev, ring, ops } = serve(t);
  ring.registerAnswer = -E.EOPNOTSUPP;
  t.ok(init(dev, true) & INIT2.OVER_IO_URING, 'asked for');
  t.ok(ring.closed, 'closed when the kernel refused every entry');
  t.notOk(ring.watched);
  t.notOk(ops.session.viaRing);
  t.equal(dev.call(Op.LOOKUP, ROOT, body.name('a')).error, 0, 'the kernel falls back to /dev/fuse, and so do we');
});

t.test('entries given back (the connection going): the ring dropped once all are back', async (t) => {
  const { dev, ring, ops } = serve(t);
  init(dev, true);
  const u = ring.push(Op.LOOKUP, ROOT, body.name('a'));
  t.equal(only(ring.deliver(), u).error, 0);
  for (let i = 0; i < ring.entries - 1; i++) ring.giveBack(E.ENOTCONN);
  ring.deliver();
  t.notOk(ring.closed, 'still there while an entry may serve');
  ring.giveBack(E.ENOTCONN);
  ring.deliver();
  t.ok(ring.closed, 'closed with the last');
  t.notOk(ops.session.viaRing);
  t.equal(ops.session.ringOps, 1, 'what it served still counted');
  t.equal(dev.call(Op.GETATTR, ROOT, body.u32s(0, 0, 0, 0)).error, 0, 'replies go to /dev/fuse again');
});

t.test('the session ends: the ring is closed with the device', async (t) => {
  const { dev, ring, ops } = serve(t);
  init(dev, true);
  ops.session.end();
  t.ok(ring.closed && dev.closed);
});

t.test('-o uring= and OVERLAYD_URING: off unless asked for', async (t) => {
  t.equal(uringMode(FUSE, {}), 'off');
  t.equal(uringMode(FUSE, { OVERLAYD_URING: 'on' }), 'on');
  t.equal(uringMode(FUSE, { OVERLAYD_URING: '1' }), 'on');
  t.equal(uringMode(FUSE, { OVERLAYD_URING: 'off' }), 'off');
  t.equal(uringMode({ ...FUSE, uring: 'off' }, { OVERLAYD_URING: 'on' }), 'off', '-o wins over the environment');
  t.equal(uringMode({ ...FUSE, uring: 'on' }, {}), 'on');
});
