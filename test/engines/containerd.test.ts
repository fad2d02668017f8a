// containerd's fuse-overlayfs snapshotter mounts a snapshot by handing mount.fuse3 its Mount
// {Type: "fuse3.fuse-overlayfs", Source: "overlay", Options: [workdir=, upperdir=, lowerdir=,
// writeback=0]}: containerd runs `mount.fuse3 overlay TARGET -o O1 -o O2 ... -t fuse-overlayfs`,
// mount.fuse3 runs `fuse-overlayfs overlay TARGET -o O1,O2,...` from PATH, and containerd
// unmounts with `fusermount3 -u`. The same argv here, with overlayd as the fuse-overlayfs on
// PATH, and as mount.fuse3's own type fuse3.overlayd; then the mount is used as a container's
// root would be.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, missing, mountsUnder, scratch } from '../lib/engines';
import { run } from '../lib/proc';

const skip = missing([['mount.fuse3', 'fuse3'], ['fusermount3', 'fuse3']]);

for (const type of ['fuse-overlayfs', 'overlayd']) {
  t.test(`mount.fuse3 ... -t ${type}, as containerd runs it`, { skip }, async (t) => {
    const dir = scratch(t, 'containerd');
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(BIN, path.join(bin, type));
    // The snapshotter's layout: snapshots/ID/fs (a layer's content), snapshots/ID/work.
    const snap = (id: string): string => path.join(dir, 'snapshots', id);
    for (const id of ['1', '2', '3']) fs.mkdirSync(path.join(snap(id), 'fs'), { recursive: true });
    fs.mkdirSync(path.join(snap('3'), 'work'), { mode: 0o711 });
    fs.writeFileSync(path.join(snap('1'), 'fs/base'), 'layer 1\n');
    fs.writeFileSync(path.join(snap('1'), 'fs/gone'), 'layer 1\n');
    fs.writeFileSync(path.join(snap('2'), 'fs/base'), 'layer 2\n');
    const target = path.join(dir, 'rootfs');
    fs.mkdirSync(target);
    const args = ['overlay', target, '-o', `workdir=${snap('3')}/work`, '-o', `upperdir=${snap('3')}/fs`, '-o', `lowerdir=${snap('2')}/fs:${snap('1')}/fs`, '-o', 'writeback=0', '-t', type];
    const env = { PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
    const m = await run('mount.fuse3', args, { env });
    t.equal(m.code, 0, `mount.fuse3 ${args.join(' ')}: ${m.stderr}`);
    const info = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === target) ?? '';
    t.match(info, / - fuse\.overlayd overlay rw,/, 'overlayd serves it, with containerd\'s source');

    t.equal(await fs.promises.readFile(path.join(target, 'base'), 'utf8'), 'layer 2\n', 'the upper lower layer wins');
    await fs.promises.writeFile(path.join(target, 'new'), 'written\n');
    await fs.promises.unlink(path.join(target, 'gone'));
    t.same((await fs.promises.readdir(target)).sort(), ['base', 'new']);
    t.equal(fs.readFileSync(path.join(snap('3'), 'fs/new'), 'utf8'), 'written\n', 'writes land in the active snapshot');
    const wh = fs.lstatSync(path.join(snap('3'), 'fs/gone'));
    t.ok(wh.isCharacterDevice() && wh.rdev === 0, 'a removed lower file is a 0/0 whiteout in the snapshot, as containerd diffs it');

    const u = await run('fusermount3', ['-u', target]);
    t.equal(u.code, 0, `fusermount3 -u: ${u.stderr}`);
    t.same(mountsUnder(dir), [], 'unmounted');
  });
}
