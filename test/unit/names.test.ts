// Names are bytes (src/host/bytes.ts): the core on real layer directories with names and link
// targets that are no valid UTF-8, which must be found, listed, created, renamed and removed
// with exactly their bytes, as the kernel's overlay does.
import t from 'tap';
import fs from 'node:fs';
import { S_IFCHR } from '../../src/host/stat';
import { fromBinary, shown, toBinary } from '../../src/host/bytes';
import { DAEMON_CALLER } from '../../src/core/config';
import { coreStack } from '../lib/stack';

/** A host path of `dir` (text) and a binary name below it, as bytes for node:fs. */
const at = (dir: string, bin: string): Buffer => Buffer.concat([Buffer.from(dir + '/'), Buffer.from(bin, 'latin1')]);
/** A directory's names on disk, as hex. */
const onDisk = (dir: string): string[] => fs.readdirSync(Buffer.from(dir), { encoding: 'buffer' }).map((b) => b.toString('hex')).sort();
const hex = (bin: string): string => Buffer.from(bin, 'latin1').toString('hex');

t.test('lower names that are no UTF-8 are listed, found and read', async (t) => {
  const s = coreStack([{}, {}], {}, t);
  fs.writeFileSync(at(s.lowers[0], '\xff'), 'ff');
  fs.writeFileSync(at(s.lowers[1], 'caf\xe9'), 'latin1 cafe');
  fs.writeFileSync(at(s.lowers[0], 'caf\xc3\xa9'), 'utf-8 cafe');
  fs.mkdirSync(at(s.lowers[1], 'd\xe9'));
  fs.writeFileSync(at(s.lowers[1], 'd\xe9/x\x80'), 'deep');
  const { ov } = s;
  const names = ov.readdir('/').map((e) => e.name).sort();
  t.same(names.map(hex), ['\xff', 'caf\xe9', 'caf\xc3\xa9', 'd\xe9'].sort().map(hex), 'every name, byte for byte');
  t.equal(ov.getattr('/\xff').size, 2);
  t.equal(ov.getattr('/caf\xe9').size, 11, 'caf\\xe9 and caf\\xc3\\xa9 are two names');
  t.equal(ov.getattr('/caf\xc3\xa9').size, 10);
  t.equal(ov.getattr('/d\xe9/x\x80').size, 4, 'below a directory with such a name too');
  t.same(ov.readdir('/d\xe9').map((e) => hex(e.name)), [hex('x\x80')]);
  t.throws(() => ov.getattr('/\xfe'), { code: 'ENOENT' });
});

t.test('creating \\x80 then \\x81 makes two files', async (t) => {
  const s = coreStack([{}], {}, t);
  const { ov } = s;
  ov.release(ov.create('/\x80', 0o644, 1, DAEMON_CALLER));
  ov.release(ov.create('/\x81', 0o644, 1, DAEMON_CALLER));
  t.same(onDisk(s.upper as string), ['80', '81']);
  t.same(ov.readdir('/').map((e) => hex(e.name)).sort(), ['80', '81']);
  ov.mkdir('/\xe9', 0o755, DAEMON_CALLER);
  ov.mknod('/\xe9/f\xfe', 0o010644, 0, 0, DAEMON_CALLER);
  t.same(onDisk(s.upper as string), ['80', '81', 'e9'], 'the directory is named \\xe9 on disk');
  t.same(fs.readdirSync(at(s.upper as string, '\xe9'), { encoding: 'buffer' }).map((b) => b.toString('hex')), ['66fe']);
});

t.test('link targets keep their bytes', async (t) => {
  const s = coreStack([{}], {}, t);
  fs.symlinkSync(Buffer.from('../caf\xe9/\xff', 'latin1'), at(s.lowers[0], 'low'));
  const { ov } = s;
  t.equal(ov.readlink('/low'), '../caf\xe9/\xff');
  ov.symlink('\xfe\x80', '/new', DAEMON_CALLER);
  t.same(fs.readlinkSync(at(s.upper as string, 'new'), { encoding: 'buffer' }), Buffer.from([0xfe, 0x80]));
  t.equal(ov.readlink('/new'), '\xfe\x80');
  ov.rename('/low', '/moved\xff');
  t.same(fs.readlinkSync(at(s.upper as string, 'moved\xff'), { encoding: 'buffer' }).toString('latin1'), '../caf\xe9/\xff', 'a copied-up link keeps its target');
});

t.test('rename and unlink of such names leave whiteouts with the same bytes', async (t) => {
  const s = coreStack([{}], {}, t);
  fs.writeFileSync(at(s.lowers[0], 'caf\xe9'), 'x');
  fs.writeFileSync(at(s.lowers[0], '\xff'), 'y');
  const { ov } = s;
  ov.rename('/caf\xe9', '/caf\xe8');
  ov.unlink('/\xff');
  t.same(ov.readdir('/').map((e) => hex(e.name)), [hex('caf\xe8')]);
  const up = s.upper as string;
  t.same(onDisk(up), [hex('caf\xe8'), hex('caf\xe9'), 'ff'].sort());
  for (const wh of ['caf\xe9', '\xff']) {
    const st = fs.lstatSync(at(up, wh));
    t.ok((st.mode & 0o170000) === S_IFCHR && st.rdev === 0, `${hex(wh)} is a whiteout`);
  }
  t.throws(() => ov.getattr('/\xff'), { code: 'ENOENT' });
  t.equal(ov.getattr('/caf\xe8').size, 1);
});

t.test('xattr names are bytes too, and NAME_MAX counts bytes', async (t) => {
  const s = coreStack([{ f: 'x' }], {}, t);
  const { ov } = s;
  ov.setxattr('/f', 'user.k\xe9', Buffer.from('v'), 0);
  t.ok(ov.listxattr('/f').includes('user.k\xe9'));
  t.same(ov.getxattr('/f', 'user.k\xe9'), Buffer.from('v'));
  t.throws(() => ov.getattr('/' + '\xff'.repeat(255)), { code: 'ENOENT' }, '255 bytes: just absent');
  t.throws(() => ov.getattr('/' + '\xff'.repeat(256)), { code: 'ENAMETOOLONG' });
});

t.test('the conversions at the edges', async (t) => {
  t.equal(toBinary('café'), 'caf\xc3\xa9', 'text becomes its UTF-8 bytes');
  t.equal(toBinary('plain'), 'plain');
  t.equal(fromBinary('caf\xc3\xa9'), 'café');
  t.equal(fromBinary('caf\xe9'), undefined, 'no valid UTF-8: no text');
  t.equal(shown('caf\xc3\xa9'), 'café');
  t.equal(shown('caf\xe9/\xff'), 'caf\\xe9/\\xff', 'a person sees the bytes');
  t.equal(shown('a – “text”'), 'a – “text”', 'a string that cannot be binary (chars past U+00FF) stays as it is');
});
