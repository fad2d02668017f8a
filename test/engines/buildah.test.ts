// buildah (Debian's) with overlayd as containers/storage's mount_program: from, run, mount,
// commit, the committed layer compared with what fuse-overlayfs makes of the same steps.
import t from 'tap';
import path from 'node:path';
import fs from 'node:fs';
import { BIN, BUSYBOX, FUSE_OVERLAYFS, busyboxRootfs, layerEntries, missing, must, podmanEnv, scratch, STORAGE } from '../lib/engines';

const skip = missing([['buildah', 'buildah'], ['podman', 'podman'], ['runc', 'runc'], [FUSE_OVERLAYFS, 'fuse-overlayfs'], [BUSYBOX, 'busybox-static']]);
const PROGRAMS = { overlayd: BIN, 'fuse-overlayfs': FUSE_OVERLAYFS } as const;
type Program = keyof typeof PROGRAMS;

t.test('buildah from, run, mount, commit: the layer fuse-overlayfs makes', { skip }, async (t) => {
  const dir = scratch(t, 'buildah');
  const tar = busyboxRootfs(dir);
  const got = {} as Record<Program, { layers: unknown; merged: string[]; out: string }>;
  for (const p of Object.keys(PROGRAMS) as Program[]) {
    const env = podmanEnv(path.join(dir, STORAGE[p]), PROGRAMS[p]);
    const buildah = (args: string[]): Promise<string> => must('buildah', args, env);
    // buildah cannot import a tar by itself: podman imports into the same storage.
    await must('podman', ['import', tar, 'localhost/base'], env);
    const c = (await buildah(['from', 'localhost/base'])).trim();
    const out = await buildah(['run', '--network', 'none', c, '--', 'sh', '-c',
      'echo built > /etc/built; rm /etc/keep/a; chmod 0750 /etc/keep; mkdir -p /opt/x && ln -s ../etc/built /opt/x/l; cat /etc/motd']);
    // buildah mount: the working container's root, mounted on the host through the mount program.
    const mp = (await buildah(['mount', c])).trim();
    const merged = [...(await fs.promises.readdir(path.join(mp, 'etc/keep'))).sort(), await fs.promises.readFile(path.join(mp, 'etc/built'), 'utf8')];
    await buildah(['umount', c]);
    await buildah(['commit', '-q', c, 'localhost/made']);
    await buildah(['rm', c]);
    const saved = path.join(dir, `made-${p}.tar`);
    await must('podman', ['save', '--format', 'docker-archive', '-o', saved, 'localhost/made'], env);
    got[p] = { layers: await layerEntries(saved), merged, out };
  }
  t.equal(got.overlayd.out, 'hello from the lower layer\n', 'buildah run reads the image');
  t.same(got.overlayd.merged, ['b', 'built\n'], 'buildah mount shows the working container');
  t.same(got.overlayd.layers, got['fuse-overlayfs'].layers, 'the committed image, layer by layer');
  t.same(got.overlayd, got['fuse-overlayfs']);
});
