// Debug log lines of the kernel transport: each request's names and main arguments, decoded
// from the request as the kernel lays it out, names shown byte-exact (invalid UTF-8 as \xNN).
import t from 'tap';
import { describe } from '../../src/fuse-kernel/describe';
import { IN_HEADER, Op } from '../../src/fuse-kernel/protocol';
import { showBytes, showName } from '../../src/log/show';

/** A request: header (zeros) and body. */
const req = (body: Buffer): Buffer => Buffer.concat([Buffer.alloc(IN_HEADER), body]);
const u32 = (...v: number[]): Buffer => Buffer.from(new Uint32Array(v).buffer);
const u64 = (v: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const z = (s: string | Buffer): Buffer => Buffer.concat([Buffer.from(s), Buffer.alloc(1)]);

t.test('names: UTF-8 as text, other bytes as \\xNN, never rewritten', async (t) => {
  t.equal(showBytes(Buffer.from('caf\u00e9 \u{1f600}')), 'caf\u00e9 \u{1f600}');
  t.equal(showBytes(Buffer.from([0x63, 0x61, 0x66, 0xe9])), 'caf\\xe9', 'latin1 é is not UTF-8');
  t.equal(showBytes(Buffer.from([0xff, 0x80, 0x41])), '\\xff\\x80A');
  t.equal(showBytes(Buffer.from([0xc0, 0xaf])), '\\xc0\\xaf', 'an overlong form is no character');
  t.equal(showBytes(Buffer.from([0xed, 0xa0, 0x80])), '\\xed\\xa0\\x80', 'nor a surrogate');
  t.equal(showBytes(Buffer.from('a\\b\nc')), 'a\\\\b\\x0ac', 'a backslash and control bytes escaped: one reading only');
  t.equal(showName('caf\u00e9'), 'caf\\xe9', 'a binary string (one char a byte) as its bytes');
  t.equal(showName(Buffer.from('caf\u00e9').toString('latin1')), 'caf\u00e9');
  t.equal(showName('\u{1f600}'), '\u{1f600}', 'a text string as it is');
});

t.test('each request its names and arguments', async (t) => {
  const r2 = req(Buffer.concat([u64(7), u32(1, 0), z('old'), z(Buffer.from([0x6e, 0xff]))]));
  t.same(describe(Op.RENAME2, r2, r2.length), { entry: 'old', newdir: 7, newentry: 'n\\xff', flags: 1 });
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
