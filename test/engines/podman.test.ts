// podman (Debian's, as a user installs it) with overlayd as containers/storage's mount_program:
// a private storage.conf naming bin/overlayd, no mountopt. Every scenario runs twice, on a
// storage of its own each: once through overlayd, once through Debian's fuse-overlayfs, and what
// the containers print and the layers, diffs, commits and exports hold must be the same (tar
// listings with content hashes; only mtimes differ, as two runs write at different times).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, BUSYBOX, FUSE_OVERLAYFS, busyboxRootfs, layerEntries, missing, mountsUnder, must, podmanEnv, scratch, STORAGE, tarEntries, type TarEntry } from '../lib/engines';

const skip = missing([['podman', 'podman'], ['runc', 'runc'], ['conmon', 'conmon'], [FUSE_OVERLAYFS, 'fuse-overlayfs'], [BUSYBOX, 'busybox-static']]);

const PROGRAMS = { overlayd: BIN, 'fuse-overlayfs': FUSE_OVERLAYFS } as const;
type Program = keyof typeof PROGRAMS;
const dir = skip === undefined ? scratch(t, 'podman') : '';
const envs = {} as Record<Program, NodeJS.ProcessEnv>;
const podman = (p: Program, args: string[]): Promise<string> => must('podman', args, envs[p]);

/** Runs `fn` for overlayd, then for fuse-overlayfs; resolves with both results. */
async function both<T>(fn: (p: Program) => Promise<T>): Promise<Record<Program, T>> {
  return { overlayd: await fn('overlayd'), 'fuse-overlayfs': await fn('fuse-overlayfs') };
}

if (skip === undefined) {
  t.before(async () => {
    const tar = busyboxRootfs(dir);
    for (const p of Object.keys(PROGRAMS) as Program[]) {
      envs[p] = podmanEnv(path.join(dir, STORAGE[p]), PROGRAMS[p]);
      await podman(p, ['import', tar, 'localhost/base']);
    }
  });
}

/** The file system type of the mount at `mp`, as a shell pipeline inside the container. */
const fsType = (mp: string): string => `awk '$5 == "${mp}"' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1`;
const SCRIPT = `id -u; cat /etc/motd; echo written > /tmp/w && cat /tmp/w; touch /etc/nope 2>&1; ${fsType('/')}`;

t.test('podman run as root and as --user 1000 on an overlayd root', { skip }, async (t) => {
  for (const user of [[], ['--user', '1000']]) {
    const out = await both((p) => podman(p, ['run', '--rm', ...user, 'localhost/base', 'sh', '-c', SCRIPT]));
    const id = user.length ? '1000' : '0';
    t.match(out.overlayd, new RegExp(`^${id}\\nhello from the lower layer\\nwritten\\n`), `uid ${id} reads the image and writes /tmp`);
    t.match(out.overlayd, /fuse\.overlayd\n$/, 'the root is overlayd\'s mount');
    t.equal(out.overlayd.replace('fuse.overlayd', 'FS'), out['fuse-overlayfs'].replace('fuse.fuse-overlayfs', 'FS'), `uid ${id}: what fuse-overlayfs gives`);
  }
});

// Writes, a hard link, deletes lower files and a lower directory and makes it again, copies up,
// chmod and chown: one image layer each. (Not a write to one name of a lower hard link: overlayd
// breaks the link on copy-up as kernel overlayfs does without index=on; fuse-overlayfs keeps it.)
const CONTAINERFILE = `FROM localhost/base
RUN mkdir -p /data/sub && echo one > /data/a && echo two > /data/b && ln -s a /data/link && ln /data/a /data/hard && echo c > /etc/keep/c
RUN rm /etc/motd /data/b && rm -r /etc/keep && mkdir /etc/keep && echo new > /etc/keep/n && echo more >> /etc/group
RUN chmod 0700 /data && chmod 4755 /bin/busybox && chown 1000:1000 /data/sub && touch /data/new
`;

t.test('a 3-step podman build: its layers are fuse-overlayfs\'s', { skip }, async (t) => {
  const ctx = path.join(dir, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'Containerfile'), CONTAINERFILE);
  const layers = await both(async (p) => {
    await podman(p, ['build', '--network', 'none', '-t', 'localhost/built', ctx]);
    const out = path.join(dir, `built-${p}.tar`);
    await podman(p, ['save', '--format', 'docker-archive', '-o', out, 'localhost/built']);
    return layerEntries(out);
  });
  t.equal(layers.overlayd.length, 4, 'the base and three layers');
  const names = (n: number): string[] => layers.overlayd[n].map((e) => e.name);
  t.ok(names(2).includes('etc/.wh.motd') && names(2).includes('data/.wh.b'), 'step 2 deleted lower files: whiteouts');
  t.ok(names(2).includes('etc/keep/n') && names(2).includes('etc/group'), 'step 2 made a file and copied one up');
  // One difference, fuse-overlayfs's: its step-2 layer lacks the whiteouts of the remade
  // directory's old entries, so that its image shows /etc/keep/a, b and c again (Debian's
  // fuse-overlayfs 1.10 with podman 4.3). overlayd's layer has them, and its image shows n alone.
  const keepWhiteouts = (l: TarEntry[]): TarEntry[] => l.filter((e) => !/^etc\/keep\/\.wh\./.test(e.name));
  t.same(names(2).filter((n) => n.startsWith('etc/keep/.wh.')), ['etc/keep/.wh.a', 'etc/keep/.wh.b', 'etc/keep/.wh.c'], 'step 2 removed a lower directory and made it again: its old entries whited out');
  t.same(layers.overlayd.map(keepWhiteouts), layers['fuse-overlayfs'].map(keepWhiteouts), 'every layer as fuse-overlayfs builds it, but for those');
  const seen = await podman('overlayd', ['run', '--rm', 'localhost/built', 'sh', '-c', 'cat /data/hard; ls /etc/keep; tail -1 /etc/group; stat -c "%a %u" /data /data/sub /bin/busybox; ls /etc/motd 2>&1; true']);
  t.equal(seen, 'one\nn\nmore\n700 0\n755 1000\n4755 0\nls: /etc/motd: No such file or directory\n');
});

t.test('podman diff, commit and export of a container: as with fuse-overlayfs', { skip }, async (t) => {
  const script = 'echo changed > /etc/motd; rm /etc/keep/a; mv /etc/keep/b /etc/keep/b2; mkdir -p /new/deep; echo f > /new/deep/f; chmod 600 /etc/passwd; ln -s /etc/motd /new/ln';
  const got = await both(async (p) => {
    // (A name that is no hex prefix: `podman diff` takes image ids too.)
    await podman(p, ['run', '--name', 'changed', 'localhost/base', 'sh', '-c', script]);
    const diff = (await podman(p, ['container', 'diff', 'changed'])).split('\n').sort().join('\n');
    await podman(p, ['commit', '-q', 'changed', 'localhost/committed']);
    const saved = path.join(dir, `committed-${p}.tar`);
    await podman(p, ['save', '--format', 'docker-archive', '-o', saved, 'localhost/committed']);
    const exported = path.join(dir, `export-${p}.tar`);
    await podman(p, ['export', '-o', exported, 'changed']);
    await podman(p, ['rm', 'changed']);
    return { diff, layers: await layerEntries(saved), exported: await tarEntries(exported) };
  });
  t.match(got.overlayd.diff, /C \/etc\/motd/);
  t.match(got.overlayd.diff, /D \/etc\/keep\/a/);
  t.match(got.overlayd.diff, /A \/new\/deep\/f/);
  t.equal(got.overlayd.diff, got['fuse-overlayfs'].diff, 'podman diff');
  t.same(got.overlayd.layers, got['fuse-overlayfs'].layers, 'the committed image\'s layers');
  t.same(got.overlayd.exported, got['fuse-overlayfs'].exported, 'the exported file system');
  t.ok(got.overlayd.exported.some((e) => e.name === 'etc/keep/b2') && !got.overlayd.exported.some((e) => e.name === 'etc/keep/a'), 'the export is the merged view');
});

t.test('an :O volume: an overlay on a host directory, writes stay in the container', { skip }, async (t) => {
  const vol = path.join(dir, 'vol');
  fs.mkdirSync(vol);
  fs.writeFileSync(path.join(vol, 'f'), 'host\n');
  fs.writeFileSync(path.join(vol, 'gone'), 'host\n');
  const out = await podman('overlayd', ['run', '--rm', '-v', `${vol}:/vol:O`, 'localhost/base', 'sh', '-c',
    `cat /vol/f; echo container > /vol/f; echo g > /vol/g; rm /vol/gone; ls /vol; cat /vol/f; ${fsType('/vol')}`]);
  t.equal(out, 'host\nf\ng\ncontainer\nfuse.overlayd\n');
  t.same(fs.readdirSync(vol).sort(), ['f', 'gone'], 'the host directory keeps its entries');
  t.equal(fs.readFileSync(path.join(vol, 'f'), 'utf8'), 'host\n', 'and its content');
});

t.test('podman image mount: the image, read-only, through overlayd', { skip }, async (t) => {
  const mp = (await podman('overlayd', ['image', 'mount', 'localhost/built'])).trim();
  t.teardown(() => podman('overlayd', ['image', 'unmount', '--all']).then(() => undefined, () => undefined));
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === mp) ?? '';
  t.match(info, /^\S+ \S+ \S+ \S+ \S+ ro,.* - fuse\.overlayd /, 'a read-only overlayd mount');
  t.equal(await fs.promises.readFile(path.join(mp, 'data/a'), 'utf8'), 'one\n');
  t.same((await fs.promises.readdir(path.join(mp, 'etc/keep'))).sort(), ['n']);
  await t.rejects(fs.promises.writeFile(path.join(mp, 'x'), ''), { code: 'EROFS' });
  await podman('overlayd', ['image', 'unmount', 'localhost/built']);
  t.notOk(mountsUnder(dir).includes(mp), 'unmounted');
});

t.test('nothing of overlayd stays mounted once podman is done', { skip }, async (t) => {
  const left = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(' - fuse.overlayd ') && l.includes(dir));
  t.same(left, []);
});
