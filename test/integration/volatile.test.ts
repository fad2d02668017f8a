// -o volatile leaves the kernel's marker (workdir/work/incompat/volatile/dirty) and a marker
// found refuses the mount, as kernel overlayfs does: an upper that may have lost writes is not
// mounted again until the user says so by removing the marker. Both directions with the kernel.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, isMounted, layout, TRANSPORT, type Layout } from '../lib/mounts';
import { run } from '../lib/proc';

const transportOpt = TRANSPORT !== undefined ? `,transport=${TRANSPORT}` : '';
const marker = (l: Layout): string => path.join(l.work!, 'work', 'incompat', 'volatile', 'dirty');
const opts = (l: Layout, extra = ''): string => `lowerdir=${l.lowers[0]},upperdir=${l.upper},workdir=${l.work}${extra}`;
const kernelMount = (l: Layout, extra = ''): number | null => spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', opts(l, extra), l.merged]).status;

t.test('an overlayd volatile mount leaves the marker the kernel refuses to mount over', async (t) => {
  const l = layout(1);
  t.teardown(() => { if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]); });
  const m = await run(process.execPath, [BIN, '-o', opts(l, ',volatile' + transportOpt), l.merged]);
  t.equal(m.code, 0, m.stderr);
  t.ok(fs.existsSync(marker(l)), 'incompat/volatile/dirty written');
  await run(process.execPath, [BIN, 'umount', l.merged]);
  t.ok(fs.existsSync(marker(l)), 'and kept after a clean unmount, as the kernel keeps it');
  t.not(kernelMount(l), 0, 'kernel overlayfs refuses that upper');
  const again = await run(process.execPath, [BIN, '-o', opts(l, transportOpt), l.merged]);
  t.not(again.code, 0, 'so does overlayd');
  t.match(again.stderr, /incompat feature 'volatile' cannot be mounted/);
  t.notOk(isMounted(l.merged));
  fs.rmSync(path.join(l.work!, 'work', 'incompat'), { recursive: true });
  const fixed = await run(process.execPath, [BIN, '-o', opts(l, transportOpt), l.merged]);
  t.equal(fixed.code, 0, `mounts once the marker is removed: ${fixed.stderr}`);
  await run(process.execPath, [BIN, 'umount', l.merged]);
});

t.test('the marker a kernel volatile mount left is honoured, not cleaned away', async (t) => {
  const l = layout(1);
  t.teardown(() => { if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]); });
  t.equal(kernelMount(l, ',volatile'), 0, 'kernel volatile mount');
  spawnSync('umount', [l.merged]);
  t.ok(fs.existsSync(marker(l)));
  const m = await run(process.execPath, [BIN, '-o', opts(l, transportOpt), l.merged]);
  t.not(m.code, 0, 'refused');
  t.equal(m.stderr.trim().split('\n').length, 1, m.stderr);
  t.ok(fs.existsSync(marker(l)), 'the marker is still there');
});
