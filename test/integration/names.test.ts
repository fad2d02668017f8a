// Names are bytes: files, directories and link targets whose names are no valid UTF-8
// ("\xff", latin1 "caf\xe9", "\x80" beside "\x81"), through a mount, from another process
// that uses bytes paths. The kernel transport must do exactly what kernel overlayfs does on a
// clone of the same layers; fuse-native (libfuse hands it UTF-8-decoded strings) must refuse
// such names with EILSEQ and leave them out of listings, never rewrite them.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { cloneLayout, layout, mountKernel, mountOverlayd, type Layout } from '../lib/mounts';
import { run } from '../lib/proc';
import { removeTree } from '../lib/stack';
import { C, sys } from '../../src/host/native';

/** setxattr through the addon, which takes bytes (binary strings) for the path and the name. */
function lsetxattr(binPath: string, name: string, value: Buffer): void {
  const fd = sys.openat(-100, path.dirname(binPath), C.O_PATH | C.O_DIRECTORY, 0);
  if (fd < 0) throw new Error(`open: ${fd}`);
  try {
    const r = sys.setxattr(fd, path.basename(binPath), name, value, 0);
    if (r < 0) throw new Error(`setxattr: ${r}`);
  } finally {
    sys.close(fd);
  }
}

/** A host path below `dir` whose last part is a binary string (one char per byte). */
const at = (dir: string, bin: string): Buffer => Buffer.concat([Buffer.from(dir + '/'), Buffer.from(bin, 'latin1')]);
const hex = (bin: string): string => Buffer.from(bin, 'latin1').toString('hex');

/** Layers with such names: a file on top of a same-named one, a directory, a link, valid UTF-8 too. */
function bytesLayout(t: Test): Layout {
  const l = layout(2);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  const [top, bottom] = l.lowers;
  fs.writeFileSync(at(top, '\xff'), 'ff');
  fs.writeFileSync(at(top, 'caf\xe9'), 'latin1 top');
  fs.writeFileSync(at(bottom, 'caf\xe9'), 'latin1 bottom');
  fs.writeFileSync(at(bottom, 'caf\xc3\xa9'), 'utf-8');
  fs.mkdirSync(at(bottom, 'd\xe9'));
  fs.writeFileSync(at(bottom, 'd\xe9/x\x80'), 'deep');
  fs.writeFileSync(at(bottom, 'd\xe9/plain'), 'plain');
  fs.symlinkSync(Buffer.from('\xfe/caf\xe9', 'latin1'), at(top, 'ln'));
  fs.writeFileSync(at(top, 'ascii'), 'a');
  fs.writeFileSync(at(top, 'x\xef\xbf\xbd'), 'U+FFFD itself, valid UTF-8');
  lsetxattr(at(top, 'ascii').toString('latin1'), 'user.\xff', Buffer.from('v'));
  return l;
}

/**
 * The steps, each step's result or errno, and then the whole tree (names, types, sizes,
 * contents, link targets, all as hex), from a python3 process that uses bytes paths only.
 */
const SCRIPT = String.raw`
import errno, json, os, stat, sys
os.chdir(os.fsencode(sys.argv[1]))
out = []
def do(what, f):
    try:
        r = f()
    except OSError as e:
        r = 'E:' + errno.errorcode[e.errno]
    out.append([what, r])
def names(d):
    return sorted(n.hex() for n in os.listdir(d))
def read(p):
    with open(p, 'rb') as f:
        return f.read().decode()
def write(p, data):
    with open(p, 'wb') as f:
        f.write(data)
do('list /', lambda: names(b'.'))
do('read \\xff', lambda: read(b'\xff'))
do('read caf\\xe9', lambda: read(b'caf\xe9'))
do('read caf\\xc3\\xa9', lambda: read(b'caf\xc3\xa9'))
do('list d\\xe9', lambda: names(b'd\xe9'))
do('read d\\xe9/x\\x80', lambda: read(b'd\xe9/x\x80'))
do('readlink ln', lambda: os.readlink(b'ln').hex())
do('stat missing \\xfe', lambda: os.lstat(b'\xfe').st_size)
do('create \\x80', lambda: write(b'\x80', b'eighty'))
do('create \\x81', lambda: write(b'\x81', b'eighty-one'))
do('read \\x80', lambda: read(b'\x80'))
do('read \\x81', lambda: read(b'\x81'))
do('symlink to bytes', lambda: os.symlink(b'\xfe/\x80', b'ln\xe9'))
do('readlink ln\\xe9', lambda: os.readlink(b'ln\xe9').hex())
do('rename caf\\xe9 caf\\xe8', lambda: os.rename(b'caf\xe9', b'caf\xe8'))
do('unlink \\xff', lambda: os.unlink(b'\xff'))
do('mkdir n\\xe9w', lambda: os.mkdir(b'n\xe9w'))
do('rename \\x81 into it', lambda: os.rename(b'\x81', b'n\xe9w/\x81\x82'))
do('rename a lower dir', lambda: os.rename(b'd\xe9', b'd\xe8'))
do('unlink d\\xe9/x\\x80', lambda: os.unlink(b'd\xe9/x\x80'))
do('list d\\xe9 after', lambda: names(b'd\xe9'))
do('setxattr user.k\\xe9', lambda: os.setxattr(b'\x80', b'user.k\xe9', b'v'))
do('listxattr', lambda: sorted(os.fsencode(n).hex() for n in os.listxattr(b'\x80')))
do('listxattr ascii', lambda: sorted(os.fsencode(n).hex() for n in os.listxattr(b'ascii')))
do('getxattr ascii user.\\xff', lambda: os.getxattr(b'ascii', b'user.\xff').hex())
do('list / after', lambda: names(b'.'))
def walk(d, acc):
    for n in sorted(os.listdir(d)):
        p = n if d == b'.' else d + b'/' + n
        st = os.lstat(p)
        e = {'mode': st.st_mode}
        try:
            if stat.S_ISREG(st.st_mode):
                e['data'] = open(p, 'rb').read().hex()
            elif stat.S_ISLNK(st.st_mode):
                e['target'] = os.readlink(p).hex()
        except OSError as x:
            e['error'] = errno.errorcode[x.errno]
        acc[p.hex()] = e
        if stat.S_ISDIR(st.st_mode):
            walk(p, acc)
    return acc
print(json.dumps({'steps': out, 'tree': walk(b'.', {})}))
`;

interface Seen { steps: [string, unknown][]; tree: Record<string, { mode: number; data?: string; target?: string; error?: string }> }

async function use(root: string): Promise<Seen> {
  const r = await run('python3', ['-c', SCRIPT, root]);
  if (r.code !== 0) throw new Error(`python3 failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Seen;
}

/** A layer directory's names on disk, recursively, as hex paths. */
function onDisk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const n of fs.readdirSync(Buffer.concat([Buffer.from(dir + '/'), Buffer.from(rel, 'hex')]), { encoding: 'buffer' })) {
    const p = rel ? rel + '2f' + n.toString('hex') : n.toString('hex');
    out.push(p);
    const st = fs.lstatSync(Buffer.concat([Buffer.from(dir + '/'), Buffer.from(p, 'hex')]));
    if (st.isDirectory()) out.push(...onDisk(dir, p));
  }
  return out.sort();
}

const step = (s: Seen, what: string): unknown => s.steps.find(([w]) => w === what)?.[1];

t.test('kernel transport: such names pass byte for byte, as kernel overlayfs passes them', async (t) => {
  const ours = bytesLayout(t);
  const theirs = cloneLayout(ours);
  t.teardown(() => removeTree(path.dirname(theirs.merged)));
  const o = await mountOverlayd(ours, [], {}, 'kernel');
  t.teardown(() => o.unmount());
  const k = mountKernel(theirs, ['redirect_dir=off', 'index=off', 'metacopy=off']);
  t.teardown(() => k.unmount());

  const [so, sk] = await Promise.all([use(o.merged), use(k.merged)]);
  t.same(so.steps, sk.steps, 'every step answers as the kernel answers');
  t.same(so.tree, sk.tree, 'the same tree, name for name and byte for byte');
  // Not only alike: right.
  t.same(step(so, 'list /'), ['\xff', 'ascii', 'caf\xe9', 'caf\xc3\xa9', 'd\xe9', 'ln', 'x\xef\xbf\xbd'].map(hex).sort());
  t.equal(step(so, 'read caf\\xe9'), 'latin1 top', 'the top layer wins for a latin1 name too');
  t.equal(step(so, 'read \\x80'), 'eighty');
  t.equal(step(so, 'read \\x81'), 'eighty-one', '\\x80 and \\x81 are two files');
  t.equal(step(so, 'readlink ln'), hex('\xfe/caf\xe9'));
  t.equal(step(so, 'readlink ln\\xe9'), hex('\xfe/\x80'));
  t.equal(step(so, 'rename a lower dir'), 'E:EXDEV');
  t.same(step(so, 'listxattr'), [hex('user.k\xe9')]);
  t.same(step(so, 'listxattr ascii'), [hex('user.\xff')]);
  t.equal(step(so, 'getxattr ascii user.\\xff'), '76');
  t.same(step(so, 'list / after'), ['\x80', 'ascii', 'caf\xe8', 'caf\xc3\xa9', 'd\xe9', 'ln', 'ln\xe9', 'n\xe9w', 'x\xef\xbf\xbd'].map(hex).sort());
  await o.unmount();
  await k.unmount();
  t.same(onDisk(ours.upper as string), onDisk(theirs.upper as string), 'the upper layers hold the same names (whiteouts included)');
});

t.test('fuse-native: such names are refused with EILSEQ and left out of listings, never rewritten', async (t) => {
  const l = bytesLayout(t);
  const o = await mountOverlayd(l, [], {}, 'fuse-native');
  t.teardown(() => o.unmount());
  const s = await use(o.merged);
  t.same(step(s, 'list /'), ['ascii', 'caf\xc3\xa9', 'ln'].map(hex).sort(), 'only the names that are UTF-8 (and hold no U+FFFD, which \\xff would look like)');
  t.same(step(s, 'listxattr ascii'), [], 'an xattr name that is no UTF-8 is left out');
  t.equal(step(s, 'getxattr ascii user.\\xff'), 'E:EILSEQ');
  t.equal(step(s, 'read caf\\xc3\\xa9'), 'utf-8', 'valid UTF-8 beyond ASCII works');
  for (const what of ['read \\xff', 'read caf\\xe9', 'list d\\xe9', 'readlink ln', 'create \\x80', 'create \\x81', 'symlink to bytes', 'unlink \\xff', 'mkdir n\\xe9w']) {
    t.equal(step(s, what), 'E:EILSEQ', what);
  }
  t.same(step(s, 'list / after'), ['ascii', 'caf\xc3\xa9', 'ln'].map(hex).sort());
  t.same(s.tree[hex('ln')], { mode: 0o120777, error: 'EILSEQ' }, 'a link whose target is no UTF-8 cannot be read, not read rewritten');
  await o.unmount();
  t.same(onDisk(l.upper as string), [], 'nothing was written under another name');
  t.same(onDisk(l.lowers[0]), ['\xff', 'ascii', 'caf\xe9', 'ln', 'x\xef\xbf\xbd'].map(hex).sort(), 'the layers are as they were');
});
