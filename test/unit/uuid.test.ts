// uuid= as the kernel's overlay has it (Documentation/filesystems/overlayfs.rst, "UUID and
// fsid"; ovl_encode_real_fh, ovl_decode_real_fh, ovl_init_uuid_xattr), checked against what
// kernel overlayfs writes on the same kind of layers: origins carry the lower filesystem's
// uuid, or a null one with uuid=off; uuid=on keeps the overlay's own in the upper root.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Overlay } from '../../src/core/overlay';
import { parseMountOptions } from '../../src/cli/options';
import { coreStack } from '../lib/stack';
import { setXattr } from '../lib/write-helpers';

/** An xattr's bytes (not following symlinks); throws when absent. */
function getXattrRaw(p: string, name: string): Buffer {
  const r = spawnSync('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', name, p], { encoding: 'utf8' });
  const m = /=0x([0-9a-f]*)/.exec(r.stdout);
  if (r.status !== 0 || !m) throw new Error(`${name} on ${p}: absent`);
  return Buffer.from(m[1], 'hex');
}

// tmpfs has a uuid of its own (the disk here may not), so null and off tell apart there.
const memory = fs.existsSync('/dev/shm');

function originUuid(upperFile: string): Buffer {
  const fb = getXattrRaw(upperFile, 'trusted.overlay.origin');
  return fb.subarray(5, 21);
}

for (const mode of ['null', 'off'] as const) {
  t.test(`uuid=${mode}: what the origin carries, and st_ino kept through it`, { skip: memory ? false : 'no /dev/shm' }, async (t) => {
    const s = coreStack([{ f: 'lower\n' }], { memory: true, uuid: mode }, t);
    const before = s.ov.getattr('/f').ino;
    s.ov.truncate('/f', 1);
    const u = originUuid(path.join(s.upper as string, 'f'));
    t.equal(u.equals(Buffer.alloc(16)), mode === 'off', mode === 'off' ? 'a null uuid' : 'the lower filesystem\'s uuid');
    t.equal(s.ov.getattr('/f').ino, before, 'the copy keeps its origin\'s number');
  });
}

t.test('an origin made with uuid=off names nothing for a uuid=null mount, and the reverse', { skip: memory ? false : 'no /dev/shm' }, async (t) => {
  for (const [made, read] of [['off', 'null'], ['null', 'off']] as const) {
    const s = coreStack([{ f: 'lower\n' }], { memory: true, uuid: made }, t);
    s.ov.truncate('/f', 1);
    const own = fs.lstatSync(path.join(s.upper as string, 'f'), { bigint: true }).ino;
    const again = new Overlay({ ...s.cfg, uuid: read });
    t.teardown(() => again.close());
    t.equal(again.getattr('/f').ino, own, `made with uuid=${made}, read with uuid=${read}: the upper file's own number`);
  }
});

t.test('uuid=on keeps the overlay uuid in the upper root, made once', async (t) => {
  const s = coreStack([{ f: 'x' }], { uuid: 'on' }, t);
  const id = getXattrRaw(s.upper as string, 'trusted.overlay.uuid');
  t.equal(id.length, 16);
  t.not(id.equals(Buffer.alloc(16)), true);
  const again = new Overlay(s.cfg);
  t.teardown(() => again.close());
  t.ok(getXattrRaw(s.upper as string, 'trusted.overlay.uuid').equals(id), 'a second mount keeps it');
  t.same(s.ov.listxattr('/'), [], 'and it is the overlay\'s own: not listed');
});

t.test('uuid=auto: made on a new upper layer, not on one a copy-up marked impure; null makes none', async (t) => {
  const fresh = coreStack([{}], { uuid: 'auto' }, t);
  t.equal(getXattrRaw(fresh.upper as string, 'trusted.overlay.uuid').length, 16);
  const old = coreStack([{}], { uuid: 'null' }, t);
  t.throws(() => getXattrRaw(old.upper as string, 'trusted.overlay.uuid'), 'uuid=null writes none');
  const upper = old.upper as string;
  setXattr(upper, 'trusted.overlay.impure', 'y');
  const auto = new Overlay({ ...old.cfg, uuid: 'auto' });
  t.teardown(() => auto.close());
  t.throws(() => getXattrRaw(upper, 'trusted.overlay.uuid'), 'an older overlay stays without');
});

t.test('uuid= takes the kernel\'s words and no other', async (t) => {
  const RW = 'lowerdir=/l,upperdir=/u,workdir=/w';
  for (const v of ['null', 'off', 'on', 'auto'] as const) t.equal(parseMountOptions([`${RW},uuid=${v}`]).overlay.uuid, v);
  t.equal(parseMountOptions([RW]).overlay.uuid, undefined);
  t.throws(() => parseMountOptions([`${RW},uuid=yes`]), /uuid "yes" is not a mode/);
});
