// uidmapping=/gidmapping=/squash_*: parsing, and the translation on the core (real temp dirs),
// with the direction fuse-overlayfs 1.10 uses (stored C shows as H; see src/core/idmap.ts).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { parseMountOptions, UsageError } from '../../src/cli/options';
import { Overlay } from '../../src/core/overlay';
import { coreStack } from '../lib/stack';
import { sys } from '../../src/host/native';

const RW = 'lowerdir=/l1:/l2,upperdir=/u,workdir=/w';
const parse = (o: string) => parseMountOptions([`${RW},${o}`], { cwd: '/cwd' });

t.test('parsing', async (t) => {
  t.same(parse('uidmapping=0:1000:10,gidmapping=:0:1:1:1:2:5').overlay.idmap,
    { uids: [{ stored: 0, shown: 1000, length: 10 }], gids: [{ stored: 0, shown: 1, length: 1 }, { stored: 1, shown: 2, length: 5 }] });
  t.same(parse('squash_to_root').overlay.idmap, { uids: [], gids: [], squashUid: 0, squashGid: 0 });
  t.same(parse('squash_to_uid=7,squash_to_gid=8').overlay.idmap, { uids: [], gids: [], squashUid: 7, squashGid: 8 });
  const many = Array.from({ length: 341 }, (_, i) => `${i}:${i}:1`).join(':');
  for (const [o, re] of [
    ['uidmapping=0:1000', /option uidmapping: .*not container:host:length/],
    ['uidmapping=x:1:1', /option uidmapping: container id "x" is not a number/],
    ['gidmapping=0:1:0', /option gidmapping: range 0:1:0 has length 0/],
    ['uidmapping=0:1:5:2:10:5', /option uidmapping: .*overlaps/],
    ['uidmapping=0:1:5:10:3:5', /option uidmapping: .*overlaps another on the host side/],
    ['uidmapping=4294967296:0:1', /option uidmapping: .*past 4294967295/],
    ['uidmapping=4294967295:0:2', /option uidmapping: .*goes past/],
    [`uidmapping=${many}`, /option uidmapping: 341 ranges, at most 340/],
    ['squash_to_uid=-1', /option squash_to_uid/],
    ['uidmapping', /option uidmapping: needs a value/],
  ] as [string, RegExp][]) {
    t.throws(() => parse(o), re, o);
    try { parse(o); } catch (err) { t.ok(err instanceof UsageError, `${o}: a usage error`); }
  }
});

t.test('the core: attrs shown mapped, callers and chown stored mapped', async (t) => {
  const s = coreStack([{}], {}, t);
  const l = s.lowers[0];
  for (const [n, id] of [['zero', 0], ['k', 1000], ['five', 5]] as [string, number][]) {
    fs.writeFileSync(path.join(l, n), '');
    fs.chownSync(path.join(l, n), id, id);
  }
  const ov = new Overlay({ ...s.cfg, idmap: { uids: [{ stored: 0, shown: 1000, length: 10 }], gids: [{ stored: 0, shown: 2000, length: 10 }] } });
  t.teardown(() => ov.close());
  t.same([ov.getattr('/zero').uid, ov.getattr('/zero').gid], [1000, 2000], 'stored 0 shows as the host id');
  t.same([ov.getattr('/five').uid, ov.getattr('/five').gid], [1005, 2005]);
  t.same([ov.getattr('/k').uid, ov.getattr('/k').gid], [65534, 65534], 'outside the map: overflow');
  ov.mkdir('/d', 0o755, { uid: 1003, gid: 2004, pid: process.pid });
  const st = fs.lstatSync(path.join(s.upper as string, 'd'));
  t.same([st.uid, st.gid], [3, 4], 'a caller inside the map stores the container id');
  t.same([ov.getattr('/d').uid, ov.getattr('/d').gid], [1003, 2004], 'and shows its own id');
  ov.release(ov.create('/f', 0o644, 1, { uid: 0, gid: 0, pid: process.pid }));
  const f = fs.lstatSync(path.join(s.upper as string, 'f'));
  t.same([f.uid, f.gid], [65534, 65534], 'a caller outside the map stores the overflow id (as fuse-overlayfs)');
  ov.chown('/zero', 1009, 2001);
  const z = fs.lstatSync(path.join(s.upper as string, 'zero'));
  t.same([z.uid, z.gid], [9, 1], 'chown stores the container id');
  ov.chown('/five', 7, -1);
  t.same([fs.lstatSync(path.join(s.upper as string, 'five')).uid, ov.getattr('/five').gid], [65534, 2005], 'unmapped chown: overflow; -1 keeps');
});

t.test('squash', async (t) => {
  const s = coreStack([{ f: '' }], {}, t);
  const ov = new Overlay({ ...s.cfg, idmap: { uids: [], gids: [], squashUid: 7, squashGid: 0 } });
  t.teardown(() => ov.close());
  t.same([ov.getattr('/f').uid, ov.getattr('/f').gid, ov.getattr('/').uid], [7, 0, 7]);
});

/** A POSIX ACL xattr value: owner rwx, the given named users and groups, mask, other. */
function acl(users: number[], groups: number[]): Buffer {
  const entries: [number, number, number][] = [[0x01, 7, 0xffffffff], ...users.map((u): [number, number, number] => [0x02, 6, u]),
    [0x04, 5, 0xffffffff], ...groups.map((g): [number, number, number] => [0x08, 4, g]), [0x10, 7, 0xffffffff], [0x20, 0, 0xffffffff]];
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => { b.writeUInt16LE(tag, 4 + 8 * i); b.writeUInt16LE(perm, 6 + 8 * i); b.writeUInt32LE(id, 8 + 8 * i); });
  return b;
}

/** The ids of the named entries of an ACL value, users then groups. */
function aclIds(b: Buffer): number[] {
  const out: number[] = [];
  for (let at = 4; at < b.length; at += 8) if (b.readUInt16LE(at) === 0x02 || b.readUInt16LE(at) === 0x08) out.push(b.readUInt32LE(at + 4));
  return out;
}

t.test('POSIX ACLs: named users and groups translated both ways', async (t) => {
  const s = coreStack([{ f: '' }], {}, t);
  const lowerFile = path.join(s.lowers[0], 'f');
  t.equal(sys.setxattr(-100 /* AT_FDCWD */, lowerFile, 'system.posix_acl_access', acl([3, 50], [4]), 0), 0, 'the lower layer takes an ACL');
  const ov = new Overlay({ ...s.cfg, idmap: { uids: [{ stored: 0, shown: 1000, length: 10 }], gids: [{ stored: 0, shown: 2000, length: 10 }] } });
  t.teardown(() => ov.close());
  t.same(aclIds(ov.getxattr('/f', 'system.posix_acl_access')), [1003, 65534, 2004], 'stored ids show mapped; outside the map: overflow');
  ov.setxattr('/f', 'system.posix_acl_access', acl([1005], [2006]), 0);
  const stored = sys.getxattr(-100, path.join(s.upper as string, 'f'), 'system.posix_acl_access');
  t.ok(Buffer.isBuffer(stored), 'the ACL is in upper');
  t.same(aclIds(stored as Buffer), [5, 6], 'setfacl through the mount stores the container ids');
  t.same(aclIds(ov.getxattr('/f', 'system.posix_acl_access')), [1005, 2006], 'and reads back as set');
  const plain = new Overlay(s.cfg);
  t.teardown(() => plain.close());
  t.same(aclIds(plain.getxattr('/f', 'system.posix_acl_access')), [5, 6], 'without a mapping nothing is translated');
});
