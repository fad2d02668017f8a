import t from 'tap';
import path from 'node:path';
import { Overlay } from '../../src/core/overlay';
import { build, tmpdir } from '../lib/tree';

function stack(layers: Parameters<typeof build>[1][], upper = true): { ov: Overlay; base: string } {
  const base = tmpdir();
  const lowerdirs = layers.map((tree, i) => {
    const d = path.join(base, `l${i}`);
    build(d, tree);
    return d;
  });
  const cfg = { lowerdirs, userxattr: false, volatile: false, readonly: false } as ConstructorParameters<typeof Overlay>[0];
  if (upper) {
    cfg.upperdir = path.join(base, 'u');
    cfg.workdir = path.join(base, 'w');
    build(cfg.upperdir, {});
    build(cfg.workdir, {});
  }
  return { ov: new Overlay(cfg), base };
}

t.test('the top layer wins and a whiteout hides the name below', async (t) => {
  const { ov } = stack([{ a: 'top', w: { whiteout: true } }, { a: 'bottom', w: 'hidden', b: 'only-low' }]);
  t.teardown(() => ov.close());
  t.equal(ov.getattr('/a').size, 3);
  t.same(ov.readdir('/').map((e) => e.name).sort(), ['a', 'b']);
  t.throws(() => ov.getattr('/w'), { code: 'ENOENT' });
});

t.test('a symlink inside a layer is never followed during resolution', async (t) => {
  const { ov } = stack([{ a: { dir: {} } }, { a: { symlink: '/etc' } }]);
  t.teardown(() => ov.close());
  t.throws(() => ov.getattr('/a/passwd'), { code: 'ENOENT' });
});
