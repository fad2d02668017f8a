// The merged view through overlayd equals kernel overlayfs' view of the same layers.
import t from 'tap';
import { cloneLayout, layout, mountKernel, mountOverlayd } from '../lib/mounts';
import { build, snapshot } from '../lib/tree';

t.test('three layers with whiteouts and opaque dirs read as the kernel reads them', async (t) => {
  const l = layout(3);
  build(l.lowers[0], { d: { dir: { a: 'top a', gone: { whiteout: true } } }, o: { dir: { y: 'y' }, opaque: true }, link: { symlink: 'd/a' } });
  build(l.lowers[1], { d: { dir: { b: 'mid b', gone: 'hidden' } }, o: { dir: { x: 'x' } }, f: { file: 'f', mode: 0o4755 } });
  build(l.lowers[2], { d: { dir: { c: 'low c', a: 'hidden a' } }, o: 'not a dir', fifo: { fifo: true }, dev: { chr: [1, 3] } });
  const k = cloneLayout(l);
  const ours = await mountOverlayd(l);
  t.teardown(() => ours.unmount());
  const kern = mountKernel(k);
  t.teardown(() => kern.unmount());
  t.same(snapshot(ours.merged, { xattrs: true }), snapshot(kern.merged, { xattrs: true }));
});
