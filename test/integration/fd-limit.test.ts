// A daemon that runs out of fds keeps its mount: clients that hold every fd the daemon may open
// get EMFILE for their next open, and once they let go the mount serves as before. (The mount
// watcher once read EMFILE from mountinfo as "unmounted externally" and exited.)
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isMounted, layout, mountOverlayd } from '../lib/mounts';
import { removeTree } from '../lib/stack';

const FILES = 300;

function fdsOf(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

t.test('clients exhaust the daemon\'s fds: the mount survives and serves again', async (t) => {
  const l = layout(1);
  t.teardown(() => removeTree(path.dirname(l.merged)));
  for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(l.lowers[0], `f${i}`), `file ${i}\n`);
  const m = await mountOverlayd(l);
  t.teardown(() => m.unmount());
  const pid = m.daemon?.pid as number;
  // Room for a few dozen more: the clients' opens below use it up.
  const limit = fdsOf(pid) + 40;
  const r = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:${limit}`], { encoding: 'utf8' });
  t.equal(r.status, 0, `prlimit the daemon to ${limit} fds (${r.stderr.trim()})`);

  const held: number[] = [];
  t.teardown(() => { for (const fd of held.splice(0)) fs.closeSync(fd); });
  let refused = '';
  for (let i = 0; i < FILES; i++) {
    try {
      held.push(fs.openSync(path.join(l.merged, `f${i}`), 'r'));
    } catch (err) {
      refused = (err as NodeJS.ErrnoException).code ?? String(err);
      break;
    }
  }
  t.equal(refused, 'EMFILE', `the daemon ran out of fds after ${held.length} opens`);
  // Several turns of the mount watcher (every 500 ms) with no fd to spare.
  await new Promise((r) => setTimeout(r, 2000));
  t.ok(isMounted(l.merged), 'still mounted while out of fds');
  t.equal(m.daemon?.exitCode, null, 'the daemon still runs');
  for (const fd of held.splice(0)) fs.closeSync(fd);
  t.equal(fs.readFileSync(path.join(l.merged, `f${FILES - 1}`), 'utf8'), `file ${FILES - 1}\n`, 'and serves once the clients let go');
  fs.writeFileSync(path.join(l.merged, 'new'), 'written');
  t.equal(fs.readFileSync(path.join(l.upper as string, 'new'), 'utf8'), 'written', 'writes reach the upper layer');
});
