// Copy-up when the lower layer lives on another filesystem than upper (copy_file_range says
// EXDEV there): the data must still arrive whole, through the mount, as with the kernel.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { layout, mountOverlayd } from '../lib/mounts';
import { tmpfsDir } from '../lib/scratch';

t.test('a lower file on tmpfs copies up to an ext4 upper byte for byte', async (t) => {
  const l = layout(1);
  const lower = tmpfsDir(t, '64m');
  l.lowers[0] = lower;
  const data = crypto.randomBytes(5 * 1024 * 1024 + 123);
  fs.writeFileSync(path.join(lower, 'big'), data);
  const m = await mountOverlayd(l);
  t.teardown(() => m.unmount());
  const r = spawnSync('sh', ['-c', `printf x >> ${path.join(m.merged, 'big')}`]);
  t.equal(r.status, 0, 'append through the mount succeeds');
  const up = fs.readFileSync(path.join(l.upper as string, 'big'));
  t.equal(up.length, data.length + 1);
  t.ok(up.subarray(0, data.length).equals(data), 'upper copy holds the lower data');
  t.ok(fs.readFileSync(path.join(lower, 'big')).equals(data), 'lower file untouched');
});
