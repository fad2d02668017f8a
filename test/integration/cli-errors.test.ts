// Bad input to `overlayd mount` and to the mount helper form (`overlayd SOURCE MOUNTPOINT -o`,
// what mount.fuse3 and /sbin/mount.fuse.overlayd run): each gives one clear line on stderr and a
// non-zero exit, mounts nothing, starts no daemon and changes nothing on disk (the whole tree
// of layers and mountpoint is snapshotted before and after, xattrs and mtimes included).
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN } from '../lib/mounts';
import { listMounts } from '../../src/cli/registry';
import { snapshot, tmpdir } from '../lib/tree';

interface Case {
  name: string;
  /** -o strings and the mountpoint, relative to the case's base dir unless absolute. */
  options?: string[];
  mountpoint?: string;
  /** Replaces the whole argument list (after the command). */
  args?: string[];
  expect: RegExp;
  /** Extra set-up inside base (mounts are undone in teardown). */
  setup?: (base: string, t: Test) => void;
}

const mounts = (): string[] => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ').slice(4, 5).concat(l.split(' - ')[1] ?? '').join(' ')).sort();

function fresh(): string {
  const base = tmpdir('overlayd-bad-');
  for (const d of ['l1', 'l2', 'u', 'w', 'm', 'u/inner', 'w/inner']) fs.mkdirSync(path.join(base, d));
  fs.writeFileSync(path.join(base, 'l1', 'f'), 'lower one');
  fs.writeFileSync(path.join(base, 'file'), 'a regular file');
  return base;
}

function tmpfsAt(t: Test, dir: string, opts = 'rw'): void {
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir]);
  if (r.status !== 0) throw new Error(`tmpfs at ${dir} failed`);
  t.teardown(() => { spawnSync('umount', ['-l', dir]); });
}

const GOOD = 'lowerdir=l1:l2,upperdir=u,workdir=w';
const many = 'lowerdir=' + Array.from({ length: 501 }, (_, i) => `x${i}`).join(':') + ',upperdir=u,workdir=w';

const cases: Case[] = [
  { name: 'no lowerdir option', options: ['upperdir=u,workdir=w'], expect: /missing lowerdir= option/ },
  { name: 'no -o at all', options: [], expect: /missing lowerdir= option/ },
  { name: 'empty layer (::)', options: ['lowerdir=l1::l2,upperdir=u,workdir=w'], expect: /lowerdir: empty layer/ },
  { name: 'stray colon', options: ['lowerdir=l1:l2:,upperdir=u,workdir=w'], expect: /lowerdir: empty layer/ },
  { name: 'empty lowerdir', options: ['lowerdir=,upperdir=u,workdir=w'], expect: /lowerdir: no layer given/ },
  { name: 'lowerdir twice', options: ['lowerdir=l1,lowerdir=l2,upperdir=u,workdir=w'], expect: /lowerdir given more than once/ },
  { name: 'unknown option', options: [`${GOOD},frobnicate`], expect: /unknown mount option "frobnicate"/ },
  { name: 'a fuse-overlayfs plugin', options: [`${GOOD},plugins=/usr/lib/x.so`], expect: /plugins=\/usr\/lib\/x\.so: overlayd has no plugins/ },
  { name: 'noxattrs=1', options: [`${GOOD},noxattrs=1`], expect: /noxattrs=1 is not supported/ },
  { name: 'unbalanced quote', options: [`${GOOD},context="a:b`], expect: /unbalanced double quote/ },
  { name: 'unsupported kernel option', options: [`${GOOD},metacopy=on`], expect: /metacopy=on is not supported by overlayd/ },
  { name: 'too many lower layers', options: [many], expect: /lowerdir: 501 layers, at most 500/ },
  { name: 'one lower without upper', options: ['lowerdir=l1'], expect: /at least 2 lowerdirs are needed without upperdir/ },
  { name: 'upperdir without workdir', options: ['lowerdir=l1:l2,upperdir=u'], expect: /upperdir needs workdir/ },
  { name: 'missing lower layer', options: ['lowerdir=l1:nope,upperdir=u,workdir=w'], expect: /lowerdir ".*\/nope" does not exist/ },
  { name: 'lower layer is a file', options: ['lowerdir=l1:file,upperdir=u,workdir=w'], expect: /lowerdir ".*\/file" is not a directory/ },
  { name: 'unescaped colon in a path', options: ['lowerdir=l1:a:b,upperdir=u,workdir=w'], setup: (b) => fs.mkdirSync(path.join(b, 'a:b')), expect: /lowerdir ".*\/a" does not exist/ },
  { name: 'missing upper', options: ['lowerdir=l1,upperdir=nope,workdir=w'], expect: /upperdir ".*\/nope" does not exist/ },
  { name: 'upper is a file', options: ['lowerdir=l1,upperdir=file,workdir=w'], expect: /upperdir ".*\/file" is not a directory/ },
  { name: 'missing work', options: ['lowerdir=l1,upperdir=u,workdir=nope'], expect: /workdir ".*\/nope" does not exist/ },
  { name: 'work is a file', options: ['lowerdir=l1,upperdir=u,workdir=file'], expect: /workdir ".*\/file" is not a directory/ },
  {
    name: 'workdir on another file system than upperdir', options: ['lowerdir=l1,upperdir=u,workdir=other/w'],
    setup: (b, t) => { tmpfsAt(t, path.join(b, 'other')); fs.mkdirSync(path.join(b, 'other', 'w')); },
    expect: /workdir ".*\/other\/w" and upperdir ".*\/u" must be on the same mount/,
  },
  {
    name: 'upperdir on a read-only mount', options: ['lowerdir=l1,upperdir=ro/u,workdir=ro/w'],
    setup: (b, t) => {
      tmpfsAt(t, path.join(b, 'ro'));
      fs.mkdirSync(path.join(b, 'ro', 'u'));
      fs.mkdirSync(path.join(b, 'ro', 'w'));
      spawnSync('mount', ['-o', 'remount,ro', path.join(b, 'ro')]);
    },
    expect: /upperdir ".*\/ro\/u" is on a read-only mount/,
  },
  { name: 'workdir inside upperdir', options: ['lowerdir=l1,upperdir=u,workdir=u/inner'], expect: /workdir ".*\/u\/inner" and upperdir ".*\/u" must be separate subtrees/ },
  { name: 'upperdir inside workdir', options: ['lowerdir=l1,upperdir=w/inner,workdir=w'], expect: /must be separate subtrees/ },
  { name: 'workdir is upperdir', options: ['lowerdir=l1,upperdir=u,workdir=u'], expect: /must be separate subtrees/ },
  { name: 'the same lower twice', options: ['lowerdir=l1:l1,upperdir=u,workdir=w'], expect: /lowerdir ".*\/l1" is given twice \(overlapping layers\)/ },
  { name: 'a lower inside upperdir', options: ['lowerdir=l1:u/inner,upperdir=u,workdir=w'], expect: /lowerdir ".*\/u\/inner" lies inside upperdir/ },
  { name: 'mountpoint missing', options: [GOOD], mountpoint: 'nope', expect: /mountpoint ".*\/nope" does not exist/ },
  { name: 'mountpoint is a file', options: [GOOD], mountpoint: 'file', expect: /mountpoint ".*\/file" is not a directory/ },
  { name: 'mountpoint already mounted', options: [GOOD], setup: (b, t) => tmpfsAt(t, path.join(b, 'm')), expect: /mountpoint ".*\/m" is already mounted \(tmpfs from tmpfs\)/ },
  { name: 'mountpoint inside a layer', options: [GOOD], mountpoint: 'l1', expect: /mountpoint ".*\/l1" lies inside lowerdir/ },
  { name: 'relative paths resolve against the working directory', options: ['lowerdir=../l1:l2,upperdir=u,workdir=w'], expect: new RegExp(`lowerdir "${path.join(os.tmpdir(), 'l1')}" does not exist`) },
];

function check(t: Test, base: string, run: () => { status: number | null; stdout: string; stderr: string }, expect: RegExp, code: number): void {
  const before = snapshot(base, { xattrs: true, mtime: true });
  const mountsBefore = mounts();
  const r = run();
  t.equal(r.status, code, `exit ${code}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  t.equal(lines.length, 1, `one line: ${JSON.stringify(r.stderr)}`);
  t.match(lines[0] ?? '', /^overlayd: /);
  t.match(lines[0] ?? '', expect);
  t.equal(r.stdout, '', 'nothing on stdout');
  // Mounts that appeared: other test files mount meanwhile, and .ci/run builds the container
  // base image (debootstrap, with its own proc mounts) while this suite runs; none may be this
  // case's (every path it gave lies in base).
  const added = mounts().filter((m) => !mountsBefore.includes(m));
  t.same(added.filter((m) => m.includes(base + path.sep)), [], 'nothing mounted');
  t.same(snapshot(base, { xattrs: true, mtime: true }), before, 'nothing changed on disk');
  // Only this case's: other test files may be serving mounts of their own meanwhile.
  const ours = listMounts({ sameNamespace: true })
    .filter((m) => [m.mountpoint, ...m.lowerdirs].some((p) => p.startsWith(base + path.sep)));
  t.same(ours, [], 'no daemon left');
}

for (const c of cases) {
  t.test(c.name, async (t) => {
    for (const form of ['overlayd mount', 'overlayd SOURCE MOUNTPOINT (helper form)'] as const) {
      const base = fresh();
      c.setup?.(base, t);
      const mp = path.resolve(base, c.mountpoint ?? 'm');
      const opts = (c.options ?? []).flatMap((o) => ['-o', o]);
      const args = form === 'overlayd mount' ? ['mount', ...opts, mp] : ['overlayd', mp, ...opts];
      const run = () => {
        const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: base, timeout: 60000 });
        return { status: r.status, stdout: r.stdout, stderr: r.stderr };
      };
      t.test(form, async (t) => check(t, base, run, c.expect, form === 'overlayd mount' ? 2 : 32));
    }
  });
}

t.test('mountpoint already an overlayd mount', async (t) => {
  const base = fresh();
  const ok = spawnSync(process.execPath, [BIN, 'mount', '-o', GOOD, 'm'], { encoding: 'utf8', cwd: base });
  t.teardown(() => {
    spawnSync(process.execPath, [BIN, 'umount', path.join(base, 'm')]);
    spawnSync('umount', ['-l', path.join(base, 'm')]);
  });
  t.equal(ok.status, 0, ok.stderr);
  // Snapshot the layers only: the tree under the mount is the mount's.
  for (const form of [['mount', '-o', GOOD, 'm'], ['overlayd', 'm', '-o', GOOD]]) {
    const before = snapshot(path.join(base, 'l1'));
    const r = spawnSync(process.execPath, [BIN, ...form], { encoding: 'utf8', cwd: base });
    t.not(r.status, 0);
    t.match(r.stderr, /^overlayd: mountpoint ".*\/m" is already an overlayd mount\n$/);
    t.same(snapshot(path.join(base, 'l1')), before);
  }
  const st = JSON.parse(spawnSync(process.execPath, [BIN, 'status', '--json'], { encoding: 'utf8' }).stdout) as { mountpoint: string }[];
  t.equal(st.filter((m) => m.mountpoint.startsWith(base + path.sep)).length, 1, 'still exactly one daemon');
});

t.test('missing and extra arguments', async (t) => {
  const base = fresh();
  const forms: [string[], RegExp, number][] = [
    [['mount'], /missing required argument/, 2],
    [['mount', '-o', GOOD], /missing required argument/, 2],
    [['mount', '-o', GOOD, 'a', 'b', 'c'], /too many arguments/, 2],
    [['mount', '-o'], /option '-o, --option <options>' argument missing/, 2],
    [['mount', '--bogus', 'm'], /unknown option '--bogus'/, 2],
    [['mount', '--log-level', 'loud', 'm'], /--log-level.*loud.*is invalid/, 2],
    [['umount'], /missing required argument/, 2],
    [['frobnicate'], /usage: overlayd \[SOURCE\] MOUNTPOINT/, 1],
    [['src', 'm', '-o'], /-o needs a value/, 1],
    [['src', 'm', 'extra', '-o', GOOD], /too many arguments/, 1],
    [['src', 'm', '-t', 'ext4', '-o', GOOD], /cannot mount type "ext4"/, 1],
  ];
  for (const [args, re, code] of forms) {
    const before = snapshot(base);
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: base });
    t.equal(r.status, code, `${args.join(' ')}: exit ${code}`);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    t.equal(lines.length, 1, `${args.join(' ')}: one line (${r.stderr})`);
    t.match(lines[0], /^overlayd: /);
    t.match(lines[0], re);
    t.same(snapshot(base), before);
  }
  t.equal(spawnSync(process.execPath, [BIN, '--help']).status, 0, '--help exits 0');
  t.match(spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' }).stdout, /^\d+\.\d+\.\d+\n$/);
});

t.test('dry run (--dry-run, and mount -f through the helper form) checks everything and mounts nothing', async (t) => {
  const base = fresh();
  const before = snapshot(base, { xattrs: true, mtime: true });
  for (const args of [['mount', '--dry-run', '-o', GOOD, 'm'], ['overlayd', 'm', '-f', '-o', GOOD]]) {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: base });
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stderr, '');
  }
  const bad = spawnSync(process.execPath, [BIN, 'overlayd', 'm', '-f', '-o', 'lowerdir=l1:nope'], { encoding: 'utf8', cwd: base });
  t.equal(bad.status, 32);
  t.match(bad.stderr, /does not exist/);
  t.same(snapshot(base, { xattrs: true, mtime: true }), before);
  t.notMatch(fs.readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(base));
});
