// inheritAcl against the host kernel's own posix_acl_create: for each default ACL and mode, an
// object made under a directory carrying that default ACL (on a real temp dir) gets the mode
// and access ACL inheritAcl computes for the work directory's case.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ACL_ACCESS, defaultAclOf, inheritAcl } from '../../src/core/acl';
import { FsError } from '../../src/core/errors';
import { C, sys } from '../../src/host/native';
import { tmpdir } from '../lib/tree';

const DEFAULTS = [
  'u::rwx,g::r-x,o::r-x',
  'u::rw-,u:nobody:rw-,g::r--,o::---',
  'u::rwx,g::rwx,g:nogroup:r-x,m::rwx,o::--x',
  'u::r--,g::---,o::rw-,u:65533:rwx,m::r--',
];
const MODES = [0o777, 0o666, 0o640, 0o4755, 0o2070, 0o000, 0o701];

t.test('inheritAcl computes what the kernel gives an object made under a default ACL', async (t) => {
  const base = tmpdir('overlayd-acl-');
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const old = process.umask(0);
  t.teardown(() => { process.umask(old); });
  DEFAULTS.forEach((acl, i) => {
    const dir = path.join(base, `d${i}`);
    fs.mkdirSync(dir);
    const r = spawnSync('setfacl', ['-d', '-m', acl, dir], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    const dirFd = fs.openSync(dir, C.O_PATH | C.O_DIRECTORY);
    const def = defaultAclOf(dirFd);
    t.ok(def, `default ACL of ${acl} read back`);
    for (const mode of MODES) {
      const name = `f${mode.toString(8)}`;
      const fd = fs.openSync(path.join(dir, name), 'wx', mode);
      fs.closeSync(fd);
      const st = fs.statSync(path.join(dir, name));
      const access = sys.getxattr(dirFd, name, ACL_ACCESS);
      const want = inheritAcl(def as Buffer, 0o100000 | mode);
      t.equal((want.mode & 0o7777).toString(8), (st.mode & 0o7777).toString(8), `${acl}, mode ${mode.toString(8)}: the mode`);
      t.same(want.access?.toString('hex'), typeof access === 'number' ? undefined : access.toString('hex'), `${acl}, mode ${mode.toString(8)}: the access ACL`);
    }
    fs.closeSync(dirFd);
  });
});

t.test('no default ACL, and malformed ones', async (t) => {
  const base = tmpdir('overlayd-acl-');
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const dirFd = fs.openSync(base, C.O_PATH | C.O_DIRECTORY);
  t.equal(defaultAclOf(dirFd), undefined, 'a directory without one');
  fs.closeSync(dirFd);
  const eio = (b: Buffer): void => {
    let thrown: unknown;
    try { inheritAcl(b, 0o644); } catch (e) { thrown = e; }
    t.ok(thrown instanceof FsError && thrown.code === 'EIO', `EIO for ${b.toString('hex')}`);
  };
  eio(Buffer.from([1, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff])); // version 1
  eio(Buffer.from([2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff])); // a cut entry
  eio(Buffer.from([2, 0, 0, 0, 0x40, 0, 6, 0, 0xff, 0xff, 0xff, 0xff])); // an unknown tag
  eio(Buffer.from([2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff])); // neither group nor mask
});
