// Extended attributes through the mount as programs really ask for them: python's
// os.listxattr/os.getxattr start with a small buffer and grow it on ERANGE (getfattr asks for
// the size first). The mount's own overlay.* xattrs stay hidden; opaque markers work in
// trusted.overlay. and, with userxattr, user.overlay.; a layer root's opaque xattr means
// nothing, as on the kernel. trusted.* xattrs are listed to root only.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { cloneLayout, layout, mountKernel, mountOverlayd } from '../lib/mounts';
import { build } from '../lib/tree';
import { lsetxattr } from '../lib/gen';
import { python, run } from '../lib/proc';
import { removeTree } from '../lib/stack';

const READ = `
import os, sys, json
out = {}
for root, dirs, files in os.walk('.'):
    for n in sorted(dirs + files) + ['.']:
        p = os.path.join(root, n)
        try:
            names = sorted(os.listxattr(p, follow_symlinks=False))
            out[p] = {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in names}
        except OSError as e:
            out[p] = 'error %d' % e.errno
print(json.dumps(out, sort_keys=True))
`;

t.test('long xattr lists and values read whole, as on the kernel, and the daemon survives small buffers', async (t) => {
  const l = layout(2);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  build(l.lowers[0], { many: 'm', big: 'b', empty: 'e', d: { dir: { f: 'f' } } });
  build(l.lowers[1], { many: 'below', low: 'low' });
  const p = (n: string): string => path.join(l.lowers[0], n);
  // ext4 keeps all of a file's xattrs in one 4 KiB block: 60 names of ~48 bytes, one 3840-byte value.
  for (let i = 0; i < 60; i++) lsetxattr(p('many'), `user.x${String(i).padStart(3, '0')}${'y'.repeat(40)}`, Buffer.from(String(i)));
  lsetxattr(p('big'), 'user.big', Buffer.from(Array.from({ length: 3840 }, (_, i) => i & 0xff)));
  lsetxattr(p('empty'), 'user.empty', Buffer.alloc(0));
  lsetxattr(p('d'), 'trusted.dir', Buffer.from('dir'));
  lsetxattr(path.join(l.lowers[1], 'low'), 'user.low', Buffer.from('low'));
  const k = cloneLayout(l);
  t.teardown(() => removeTree(path.dirname(k.merged)));
  // On fuse-native, mountOverlayd makes the mount root's alone: root sees trusted.* there.
  const ours = await mountOverlayd(l);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  const [xo, xk] = await Promise.all([python(READ, [], ours.merged), python(READ, [], kern.merged)]);
  const seen = JSON.parse(xo) as Record<string, Record<string, string>>;
  t.equal(Object.keys(seen['./many']).length, 60);
  t.equal(seen['./big']['user.big'].length, 3840 * 2);
  t.same(seen['./empty'], { 'user.empty': '' });
  t.equal(xo, xk, 'python reads every xattr as on the kernel');
  const g = (cwd: string) => run('getfattr', ['-R', '-d', '-m', '-', '-e', 'hex', '.'], { cwd });
  const [go, gk] = await Promise.all([g(ours.merged), g(kern.merged)]);
  // Listing order is not part of the contract; each file's block is.
  const blocks = (s: string): string[] => s.split('\n\n').map((b) => b.trim()).filter(Boolean).sort();
  t.same(blocks(go.stdout), blocks(gk.stdout), 'getfattr -R as on the kernel');
  t.equal(blocks(go.stdout).length, 5, "many, big, empty, d, low");
  t.equal(ours.daemon?.exitCode, null, 'the daemon is still serving');
  const small = await python(`
import ctypes, ctypes.util, os
libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
b = ctypes.create_string_buffer(64)
r1 = libc.listxattr(b'many', b, 64); e1 = ctypes.get_errno()
r2 = libc.getxattr(b'big', b'user.big', b, 64); e2 = ctypes.get_errno()
r3 = libc.getxattr(b'big', b'user.big', None, 0)
print(r1, e1 == 34, r2, e2 == 34, r3)
`, [], ours.merged);
  t.equal(small.trim(), '-1 True -1 True 3840', 'ERANGE for a buffer too small, the size for a size query');
});

t.test("opaque markers in the mount's namespace; its overlay xattrs never show", async (t) => {
  for (const userxattr of [false, true]) {
    const l = layout(2);
    t.teardown(() => removeTree(path.dirname(l.merged)));
    const ns = userxattr ? 'user' : 'trusted';
    build(l.upper as string, { o: { dir: { up: 'u' }, xattrs: { [`${ns}.overlay.opaque`]: 'y', 'user.kept': 'k' } } });
    build(l.lowers[0], { o: { dir: { mid: 'm' } }, f: { file: 'f', xattrs: { [`${ns}.overlay.whatever`]: 'w', 'user.f': '1' } } });
    build(l.lowers[1], { o: { dir: { low: 'l' } } });
    // A layer root's opaque xattr is ignored: the root always merges every layer.
    lsetxattr(l.lowers[0], `${ns}.overlay.opaque`, Buffer.from('y'));
    build(l.lowers[1], { belowroot: 'b' });
    const k = cloneLayout(l);
    t.teardown(() => removeTree(path.dirname(k.merged)));
    const extra = userxattr ? ['userxattr'] : [];
    const ours = await mountOverlayd(l, extra);
    const kern = mountKernel(k, extra);
    try {
      const list = (cwd: string) => run('sh', ['-c', 'ls -A . o; getfattr -d -m - o f 2>&1'], { cwd });
      const [lo, lk] = await Promise.all([list(ours.merged), list(kern.merged)]);
      t.equal(lo.stdout, lk.stdout, `${ns}: the same view as the kernel with${userxattr ? '' : 'out'} userxattr`);
      t.match(lo.stdout, /^\.:\nbelowroot\nf\no\n\no:\nup\n/);
      t.notMatch(lo.stdout, /overlay\./);
    } finally {
      await ours.unmount();
      await kern.unmount();
    }
  }
});

t.test('trusted.* xattrs are not listed to an unprivileged user, as on the kernel', async (t) => {
  const l = layout(1);
  const base = path.dirname(l.merged);
  t.teardown(() => removeTree(base));
  fs.chmodSync(base, 0o755);
  build(l.lowers[0], { f: { file: 'f', xattrs: { 'trusted.secret': 's', 'user.open': 'o' } } });
  const k = cloneLayout(l);
  t.teardown(() => removeTree(path.dirname(k.merged)));
  fs.chmodSync(path.dirname(k.merged), 0o755);
  const ours = await mountOverlayd(l, ['allow_other']);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  const list = (cwd: string) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c', 'import os; print(sorted(os.listxattr("f")))'], { cwd });
  const [lo, lk] = await Promise.all([list(ours.merged), list(kern.merged)]);
  t.equal(lk.stdout, "['user.open']\n", `the kernel lists user.* only to nobody ${lk.stderr}`);
  t.equal(lo.stdout, lk.stdout, 'overlayd lists the same');
  const root = await python('import os; print(sorted(os.listxattr("f")))', [], kern.merged);
  t.equal(root, "['trusted.secret', 'user.open']\n", 'root sees both on the kernel');
});
