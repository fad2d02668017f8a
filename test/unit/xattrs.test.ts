import t from 'tap';
import { OPAQUE_XATTRS, OverlayXattrs } from '../../src/core/xattrs';

t.test('the names of each namespace', async (t) => {
  const tr = OverlayXattrs.of(false);
  const us = OverlayXattrs.of(true);
  t.same([tr.opaque, tr.origin, tr.redirect, tr.uuid, tr.impure], ['trusted.overlay.opaque', 'trusted.overlay.origin', 'trusted.overlay.redirect', 'trusted.overlay.uuid', 'trusted.overlay.impure']);
  t.same([us.opaque, us.origin, us.redirect, us.uuid, us.impure], ['user.overlay.opaque', 'user.overlay.origin', 'user.overlay.redirect', 'user.overlay.uuid', 'user.overlay.impure']);
  t.equal(OverlayXattrs.of(false), tr, 'one object per namespace');
  t.same(OPAQUE_XATTRS, [tr.opaque, us.opaque]);
});

t.test('private names, copy-up and the on-disk mapping', async (t) => {
  const tr = OverlayXattrs.of(false);
  t.ok(tr.isPrivate('trusted.overlay.opaque'));
  t.notOk(tr.isPrivate('trusted.overlay.overlay.x'), 'an escaped name is the caller\'s');
  t.notOk(tr.isPrivate('user.overlay.opaque'), 'the other namespace is ordinary');
  t.notOk(tr.copiedUp('trusted.overlay.origin'));
  t.notOk(tr.copiedUp('user.overlay.opaque'), 'neither namespace\'s opaque mark is copied up');
  t.ok(tr.copiedUp('user.overlay.redirect'));
  t.ok(tr.copiedUp('trusted.overlay.overlay.opaque'));
  t.equal(tr.toDisk('trusted.overlay.opaque'), 'trusted.overlay.overlay.opaque');
  t.equal(tr.toDisk('user.overlay.opaque'), 'user.overlay.opaque');
  t.equal(tr.fromDisk('trusted.overlay.overlay.opaque'), 'trusted.overlay.opaque');
  t.equal(tr.fromDisk('trusted.overlay.origin'), undefined);
  const us = OverlayXattrs.of(true);
  t.ok(us.isPrivate('user.overlay.origin'));
  t.notOk(us.isPrivate('trusted.overlay.origin'));
  t.notOk(us.copiedUp('trusted.overlay.opaque'));
  t.ok(us.copiedUp('trusted.overlay.origin'));
  t.equal(us.toDisk('user.overlay.x'), 'user.overlay.overlay.x');
});
