// overlayd as container engines run their mount program: `PROG -o OPTS MERGED` (containers/
// storage, moby's fuse-overlayfs driver), with the option strings they really pass, and a root
// mount that every user can use, as kernel overlayfs and fuse-overlayfs are. fuse-overlayfs is
// the judge for what other users see; option errors reach the engine's log_file.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, isMounted, layout, TRANSPORT, type Layout } from '../lib/mounts';
import { run, type Ran } from '../lib/proc';

const USER = 1000;
const transportOpt = TRANSPORT !== undefined ? `,transport=${TRANSPORT}` : '';

function layers(t: Test): Layout {
  const l = layout(1);
  fs.chmodSync(path.dirname(l.merged), 0o755); // mkdtemp's 0700 would stop uid 1000 before the mount does
  fs.writeFileSync(path.join(l.lowers[0], 'public'), 'for all\n');
  fs.chmodSync(path.join(l.lowers[0], 'public'), 0o644);
  fs.writeFileSync(path.join(l.lowers[0], 'secret'), 'root only\n');
  fs.chmodSync(path.join(l.lowers[0], 'secret'), 0o600);
  t.teardown(() => {
    if (isMounted(l.merged)) spawnSync(process.execPath, [BIN, 'umount', l.merged]);
    if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]);
  });
  return l;
}

/** What uid 1000 sees: the listing, one readable file, and the error on a 0600 one. */
function asUser(merged: string): Promise<Ran> {
  return run('setpriv', ['--reuid', String(USER), '--regid', String(USER), '--clear-groups', 'sh', '-c',
    `ls ${merged}; cat ${merged}/public; cat ${merged}/secret 2>&1 | sed 's/^cat: //'; touch ${merged}/new 2>&1 | sed 's/^touch: //'`]);
}

t.test('PROG -o OPTS MERGED with podman\'s option string mounts, open to other users under normal permissions', async (t) => {
  const l = layers(t);
  // Debian's podman 4.3 passes an empty item before volatile; `:O` volumes add a propagation word.
  const opts = `lowerdir=${l.lowers[0]},upperdir=${l.upper},workdir=${l.work},,volatile,private${transportOpt}`;
  const m = await run(process.execPath, [BIN, '-o', opts, l.merged]);
  t.equal(m.code, 0, `mounted: ${m.stderr}`);
  t.ok(isMounted(l.merged), 'serving once the command returns');
  const ours = await asUser(l.merged);

  // The peer, on a copy of the same layers.
  const p = layers(t);
  const peer = spawnSync('fuse-overlayfs', ['-o', `lowerdir=${p.lowers[0]},upperdir=${p.upper},workdir=${p.work}`, p.merged], { encoding: 'utf8' });
  t.equal(peer.status, 0, `fuse-overlayfs mounted: ${peer.stderr}`);
  const theirs = await asUser(p.merged);
  spawnSync('umount', [p.merged]);
  t.equal(ours.stdout.replaceAll(l.merged, 'M'), theirs.stdout.replaceAll(p.merged, 'M'), 'uid 1000 sees what it sees through fuse-overlayfs');
  t.match(ours.stdout, /public\nsecret\nfor all\n.*Permission denied\n.*Permission denied\n/s, 'reads what it may, refused the rest');
  const u = await run(process.execPath, [BIN, 'umount', l.merged]);
  t.equal(u.code, 0, u.stderr);
});

t.test('noallow_other keeps a root mount to the mounter', async (t) => {
  const l = layers(t);
  const m = await run(process.execPath, [BIN, 'mount', '-o', `lowerdir=${l.lowers[0]},upperdir=${l.upper},workdir=${l.work},noallow_other${transportOpt}`, l.merged]);
  t.equal(m.code, 0, m.stderr);
  const seen = await run('setpriv', ['--reuid', String(USER), '--regid', String(USER), '--clear-groups', 'cat', path.join(l.merged, 'public')]);
  t.not(seen.code, 0, 'uid 1000 is refused by the kernel before overlayd sees a request');
  t.match(seen.stderr, /Permission denied/);
  await run(process.execPath, [BIN, 'umount', l.merged]);
});

t.test('an option error from an engine goes to stderr and to log_file, exit 2, nothing mounted', async (t) => {
  const l = layers(t);
  const log = path.join(path.dirname(l.merged), 'engine.log');
  const m = await run(process.execPath, [BIN, '-o', `lowerdir=${l.lowers[0]},upperdir=${l.upper},workdir=${l.work},frobnicate,log_file=${log}`, l.merged]);
  t.equal(m.code, 2);
  t.equal(m.stderr, 'overlayd: unknown mount option "frobnicate"\n');
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((s) => JSON.parse(s) as { level: number; msg: string });
  t.same(lines.map((x) => [x.level, x.msg]), [[50, 'unknown mount option "frobnicate"']]);
  t.notOk(isMounted(l.merged));
  t.same(fs.readdirSync(l.upper!), [], 'upper untouched');
});

t.test('--version answers as podman asks it', async (t) => {
  const v = await run(process.execPath, [BIN, '--version']);
  t.equal(v.code, 0);
  t.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
});
