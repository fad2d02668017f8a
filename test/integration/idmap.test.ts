// uidmapping=/gidmapping=/squash_to_* as fuse-overlayfs gives them, which the engines expect:
// the same layers mounted by overlayd and by Debian's fuse-overlayfs, then the owners another
// process sees, the owners a create by uid 1000 and a chown leave on disk, side by side.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, isMounted, layout, TRANSPORT, type Layout } from '../lib/mounts';
import { run } from '../lib/proc';

const transportOpt = TRANSPORT !== undefined ? `,transport=${TRANSPORT}` : '';

function layers(): Layout {
  const l = layout(1);
  fs.chmodSync(path.dirname(l.merged), 0o755);
  fs.chmodSync(l.upper!, 0o777);
  for (const [name, id] of [['root', 0], ['u1000', 1000], ['u3', 3]] as const) {
    fs.writeFileSync(path.join(l.lowers[0], name), name);
    fs.chownSync(path.join(l.lowers[0], name), id, id);
  }
  return l;
}

/** What a client sees and leaves: shown owners, then the owners stored in upper. */
async function observe(l: Layout): Promise<string> {
  const shown = await run('stat', ['-c', '%n %u:%g', ...['root', 'u1000', 'u3'].map((n) => path.join(l.merged, n))]);
  await run('setpriv', ['--reuid', '1000', '--regid', '1000', '--clear-groups', 'touch', path.join(l.merged, 'made-by-1000')]);
  await run('chown', ['1005:1006', path.join(l.merged, 'u3')]);
  // fuse-native (libfuse 2's high-level API) carries no caller credentials: what it creates is
  // the daemon's (README, transports), so only the kernel transport can show a creator's owner.
  const stored = (TRANSPORT === 'fuse-native' ? ['u3'] : ['made-by-1000', 'u3']).map((n) => { const st = fs.lstatSync(path.join(l.upper!, n)); return `${n} ${st.uid}:${st.gid}`; });
  return shown.stdout.replaceAll(l.merged + '/', '') + stored.join('\n');
}

for (const opts of ['uidmapping=0:1000:10,gidmapping=0:1000:10', 'uidmapping=:0:1000:10:10:5000:2,gidmapping=0:1000:10', 'squash_to_root', 'squash_to_uid=7,squash_to_gid=8']) {
  t.test(`${opts}: owners as fuse-overlayfs shows and stores them`, async (t) => {
    const ours = layers();
    const theirs = layers();
    t.teardown(() => { for (const l of [ours, theirs]) if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]); });
    const o = (l: Layout): string => `lowerdir=${l.lowers[0]},upperdir=${l.upper},workdir=${l.work},${opts}`;
    const m = await run(process.execPath, [BIN, '-o', o(ours) + transportOpt, ours.merged]);
    t.equal(m.code, 0, `overlayd mounted: ${m.stderr}`);
    const p = await run('fuse-overlayfs', ['-o', o(theirs), theirs.merged]);
    t.equal(p.code, 0, `fuse-overlayfs mounted: ${p.stderr}`);
    const seenOurs = await observe(ours);
    const seenTheirs = await observe(theirs);
    t.equal(seenOurs, seenTheirs, 'same owners shown and stored');
    await run(process.execPath, [BIN, 'umount', ours.merged]);
    await run('umount', [theirs.merged]);
  });
}

t.test('malformed mappings: one line, exit 2, nothing mounted', async (t) => {
  const l = layers();
  const bad: [string, RegExp][] = [
    ['uidmapping=0:1000:10:5:2000:10', /uidmapping/],
    ['uidmapping=0:x:10', /uidmapping/],
    ['gidmapping=0:1000', /gidmapping/],
    ['uidmapping=0:4294967295:10', /uidmapping/],
    ['uidmapping=' + Array.from({ length: 341 }, (_, i) => `${i * 10}:${i * 10}:1`).join(':'), /uidmapping/],
  ];
  for (const [opt, re] of bad) {
    const r = await run(process.execPath, [BIN, '-o', `lowerdir=${l.lowers[0]},upperdir=${l.upper},workdir=${l.work},${opt}`, l.merged]);
    t.equal(r.code, 2, opt.slice(0, 60));
    t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.match(r.stderr, re);
    t.notOk(isMounted(l.merged));
  }
  t.same(fs.readdirSync(l.upper!), []);
});
