// A file's capabilities survive its copy-up, as through kernel overlayfs: the copy is owned
// before its xattrs are written, since chown(2) drops security.capability.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { layout, mountKernel, mountOverlayd, type Layout } from '../lib/mounts';
import { run } from '../lib/proc';

function layers(): Layout {
  const l = layout(1);
  const f = path.join(l.lowers[0], 'ping');
  fs.writeFileSync(f, '#!/bin/sh\n');
  fs.chownSync(f, 1000, 1000);
  fs.chmodSync(f, 0o755);
  return l;
}

t.test('security.capability and the owner survive a metadata copy-up', async (t) => {
  const ours = layers();
  const theirs = layers();
  for (const l of [ours, theirs]) {
    const r = await run('setcap', ['cap_net_raw+ep', path.join(l.lowers[0], 'ping')]);
    t.equal(r.code, 0, `setcap: ${r.stderr}`);
  }
  const a = await mountOverlayd(ours);
  t.teardown(() => a.unmount());
  const k = mountKernel(theirs);
  t.teardown(() => k.unmount());
  const seen: string[] = [];
  for (const l of [ours, theirs]) {
    // A write would drop the capability by itself (file_remove_privs); a metadata change copies up.
    await run('touch', ['-m', '-d', '2020-01-01', path.join(l.merged, 'ping')]);
    const caps = await run('getcap', [path.join(l.merged, 'ping'), path.join(l.upper!, 'ping')]);
    const st = fs.statSync(path.join(l.upper!, 'ping'));
    seen.push(caps.stdout.replaceAll(l.merged, 'M').replaceAll(l.upper!, 'U') + `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`);
  }
  t.equal(seen[0], seen[1], 'overlayd keeps what kernel overlayfs keeps');
  t.match(seen[0], /M\/ping cap_net_raw=ep\nU\/ping cap_net_raw=ep\n1000:1000 755/);
});
