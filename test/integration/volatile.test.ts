// -o volatile leaves the kernel's marker (workdir/work/incompat/volatile/dirty) and a marker
// found refuses the mount, as kernel overlayfs does: an upper that may have lost writes is not
// mounted again until the user says so by removing the marker. Both directions with the kernel.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, isMounted, layout, mountOverlayd, TRANSPORT, type Layout } from '../lib/mounts';
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

/** The fsync and fdatasync calls `pid` makes while `work` runs (strace, attached first). */
async function syncsDuring(pid: number, out: string, work: () => Promise<unknown>): Promise<number> {
  const tracer = spawn('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync,syncfs', '-o', out, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  tracer.stderr.on('data', (d: Buffer) => { said += d.toString(); });
  // strace has attached once the traced process shows a tracer.
  const deadline = Date.now() + 10000;
  while (!/TracerPid:\s*[1-9]/.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))) {
    if (tracer.exitCode !== null || Date.now() > deadline) throw new Error(`strace did not attach: ${said}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await work();
  const exited = new Promise((r) => tracer.once('exit', r));
  tracer.kill('SIGINT');
  await exited;
  return fs.readFileSync(out, 'utf8').split('\n').filter((line) => /\b(fsync|fdatasync|syncfs)\(/.test(line)).length;
}

t.test('fsync on a volatile mount succeeds and syncs nothing, as the kernel\'s (ovl_should_sync)', async (t) => {
  const sync = `import os, sys
for name in ('new', 'f'):
    fd = os.open(os.path.join(sys.argv[1], name), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(fd, b'x')
    os.fsync(fd)
    os.fdatasync(fd)
    os.close(fd)
d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
os.fsync(d)
os.close(d)
os.sync()
`;
  const counts: Record<string, number> = {};
  for (const extra of [['volatile'], []]) {
    const l = layout(1);
    fs.writeFileSync(path.join(l.lowers[0], 'f'), 'lower\n');
    const m = await mountOverlayd(l, extra);
    t.teardown(() => m.unmount());
    const pid = m.daemon?.pid as number;
    const n = await syncsDuring(pid, path.join(path.dirname(l.merged), 'strace.out'), async () => {
      const r = await run('python3', ['-c', sync, l.merged]);
      t.equal(r.code, 0, `fsync, fdatasync, a directory's fsync and sync succeed: ${r.stderr}`);
    });
    counts[extra.join(',') || 'default'] = n;
    t.equal(fs.readFileSync(path.join(l.upper!, 'f'), 'utf8'), 'lower\nx', 'the data is there');
    await m.unmount();
  }
  t.equal(counts.volatile, 0, 'the volatile mount\'s daemon calls no fsync');
  t.ok(counts.default > 0, `the default mount's does (${counts.default})`);
});
