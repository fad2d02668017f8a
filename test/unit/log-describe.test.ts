// Debug log lines of the kernel transport: each request's names and main arguments, decoded
// from the request as the kernel lays it out, names as host/bytes.ts shows them (\xNN for bytes
// of a name that is no UTF-8).
import t from 'tap';
import { describe } from '../../src/fuse-kernel/describe';
import { IN_HEADER } from '../../src/fuse-kernel/abi';
import { Op } from '../../src/fuse-kernel/protocol';

/** A request: header (zeros) and body. */
const req = (body: Buffer): Buffer => Buffer.concat([Buffer.alloc(IN_HEADER), body]);
const u32 = (...v: number[]): Buffer => Buffer.from(new Uint32Array(v).buffer);
const u64 = (v: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const z = (s: string | Buffer): Buffer => Buffer.concat([Buffer.from(s), Buffer.alloc(1)]);

t.test('each request its names and arguments', async (t) => {
  const r2 = req(Buffer.concat([u64(7), u32(1, 0), z('old'), z(Buffer.from([0x6e, 0xff]))]));
  t.same(describe(Op.RENAME2, r2, r2.length), { entry: 'old', newdir: 7, newentry: 'n\\xff', flags: 1 });
  const u = req(Buffer.concat([u64(9), z('caf\u00e9'), z(Buffer.from([0x63, 0x61, 0x66, 0xe9]))]));
  t.same(describe(Op.RENAME, u, u.length), { entry: 'caf\u00e9', newdir: 9, newentry: 'caf\\xe9' }, 'UTF-8 as text; latin1 é is no UTF-8');
  const r = req(Buffer.concat([u64(9), z('a'), z('b')]));
  t.same(describe(Op.RENAME, r, r.length), { entry: 'a', newdir: 9, newentry: 'b' });
  const l = req(z('x'));
  t.same(describe(Op.LOOKUP, l, l.length), { entry: 'x' });
  const mk = req(Buffer.concat([u32(0o755, 0o22), z('d')]));
  t.same(describe(Op.MKDIR, mk, mk.length), { entry: 'd', mode: '0755', umask: '022' });
  const cr = req(Buffer.concat([u32(0o1101, 0o644, 0o22, 0), z('f')]));
  t.same(describe(Op.CREATE, cr, cr.length), { entry: 'f', flags: '01101', mode: '0644', umask: '022' });
  const rd = req(Buffer.concat([u64(3), u64(4096), u32(131072, 0), Buffer.alloc(16)]));
  t.same(describe(Op.READ, rd, rd.length), { fh: 3, offset: 4096, size: 131072 });
  t.same(describe(Op.WRITE, rd, rd.length), { fh: 3, offset: 4096, size: 131072 });
  const ln = req(Buffer.concat([u64(5), z('hard')]));
  t.same(describe(Op.LINK, ln, ln.length), { oldnode: 5, entry: 'hard' });
  const sy = req(Buffer.concat([z('s'), z('../t')]));
  t.same(describe(Op.SYMLINK, sy, sy.length), { entry: 's', target: '../t' });
  const op = req(u32(0o2, 0));
  t.same(describe(Op.OPEN, op, op.length), { flags: '02' });
  const sa = Buffer.alloc(IN_HEADER + 88);
  sa.writeUInt32LE(1 | 8, IN_HEADER);
  sa.writeUInt32LE(5, IN_HEADER + 16);
  sa.writeUInt32LE(0o100600, IN_HEADER + 68);
  t.same(describe(Op.SETATTR, sa, sa.length), { valid: '0x9', size: 5, mode: '0100600' });
  const nm = req(Buffer.from('unterminated'));
  t.same(describe(Op.UNLINK, nm, nm.length), { entry: 'unterminated' }, 'a name ends at the request\'s end');
  t.same(describe(Op.STATFS, req(Buffer.alloc(0)), IN_HEADER), {}, 'an op without arguments');
});
