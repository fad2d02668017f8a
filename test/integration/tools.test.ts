// Ordinary tools on the mount, run from another process: cp -a, mv, rm -rf, tar x, sed -i,
// python, git. Each run is repeated on kernel overlayfs over a clone of the same layers; the
// merged view, what each step printed, and the upper layer on disk must be the same, and
// kernel overlayfs must read overlayd's upper layer as it reads its own.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { compareRun, sameAsKernel } from '../lib/compare-run';
import { removeTree } from '../lib/stack';
import { build, tmpdir, type Tree } from '../lib/tree';

const project: Tree[] = [
  {
    src: { dir: { 'main.c': 'int main(void) { return 0; }\n', lib: { dir: { 'a.h': '#define A 1\n' } } } },
    docs: { dir: { 'README': 'top readme\nline two\n', old: { whiteout: true } } },
    bin: { dir: { tool: { file: '#!/bin/sh\necho tool\n', mode: 0o4755 } } },
  },
  {
    src: { dir: { 'util.c': 'void util(void) {}\n', lib: { dir: { 'b.h': '#define B 2\n' } } } },
    docs: { dir: { old: 'old doc\n', 'guide.txt': 'guide\n' } },
    etc: { dir: { 'conf': { file: 'key=value\nother=1\n', xattrs: { 'user.origin': 'lower' } }, link: { symlink: 'conf' } } },
    var: { dir: { fifo: { fifo: true }, null: { chr: [1, 3] } } },
  },
];

t.test('cp -a into and within the mount', async (t) => {
  const outside = tmpdir();
  t.teardown(() => removeTree(outside));
  build(outside, { pkg: { dir: { 'x.txt': 'x\n', sub: { dir: { 'y.txt': { file: 'y\n', mode: 0o640, xattrs: { 'user.k': 'v' }, mtime: 1_600_000_000 } } }, ln: { symlink: 'x.txt' } } } });
  const c = await compareRun(project, [
    `cp -a ${outside}/pkg src/pkg`,
    'cp -a etc etc.bak',
    'cp -a docs/README docs/README.copy',
    'cp -a var var2',
  ]);
  sameAsKernel(t, c, true);
  // utimensat through fuse-native carries ms and atime twice: times are not compared here.
});

t.test('mv of files, of an upper-only dir, and of a merged dir (EXDEV, copied by mv)', async (t) => {
  const c = await compareRun(project, [
    'mv docs/README docs/README.md',
    'mv etc/conf src/conf',
    'mkdir fresh && echo f > fresh/f && mv fresh moved',
    'mv src src2',            // merged dir: rename(2) gives EXDEV, mv copies and removes
    'mv docs/guide.txt etc/link', // over a symlink that lives below
    'rm -rf d; mkdir d; mv d d2; test ! -e d && echo d-gone',
    'python3 -c "import os\ntry:\n os.rename(\'var\', \'var3\')\nexcept OSError as e: print(e.strerror)"',
  ]);
  sameAsKernel(t, c, true);
});

t.test('rm -rf of merged trees, then recreating names over the whiteouts', async (t) => {
  const c = await compareRun(project, [
    'rm -rf src',
    'test ! -e src && echo gone',
    'mkdir src && echo new > src/main.c && ls src',
    'rm -rf docs etc/conf var/fifo',
    'mkdir -p docs/old && ln -s target etc/conf && mkfifo var/fifo && ls -A docs etc var',
    'rmdir bin 2>&1; rm bin/tool && rmdir bin && echo rmdir-ok',
  ]);
  sameAsKernel(t, c, true);
});

t.test('tar x over lower content', async (t) => {
  const src = tmpdir();
  t.teardown(() => removeTree(src));
  build(src, {
    src: { dir: { 'main.c': 'replaced\n', 'new.c': 'new\n', lib: { dir: { 'b.h': 'b from tar\n' } } } },
    docs: { dir: { old: 'resurrected\n' } },
    etc: { dir: { link: { symlink: 'elsewhere' } } },
    extra: { dir: { deep: { dir: { f: { file: 'f\n', mode: 0o600 } } } } },
  });
  fs.linkSync(path.join(src, 'src/new.c'), path.join(src, 'extra/hard.c'));
  const tarball = path.join(src, '..', `${path.basename(src)}.tar`);
  t.teardown(() => fs.rmSync(tarball, { force: true }));
  const r = spawnSync('tar', ['-cf', tarball, '-C', src, '.']);
  t.equal(r.status, 0, 'tarball built');
  const c = await compareRun(project, [
    `tar -xpf ${tarball}`,
    // Only the name made by link(2): the other one's nlink is cached by FUSE (see write-ops).
    'stat -c "%h %n" extra/hard.c && cmp extra/hard.c src/new.c && echo same-data',
    `tar -xpf ${tarball} --recursive-unlink`,
    'cat src/main.c docs/old; readlink etc/link',
  ]);
  sameAsKernel(t, c, true);
});

t.test('sed -i, shell appends and python rewrites of lower files', async (t) => {
  const c = await compareRun(project, [
    'sed -i s/value/changed/ etc/conf && cat etc/conf',
    'sed -i -e "1d" docs/README && cat docs/README',
    'echo appended >> src/util.c && printf "no newline" >> src/lib/b.h && cat src/util.c src/lib/b.h',
    'python3 -c "import json; json.dump({\'a\': [1, 2]}, open(\'etc/data.json\', \'w\'))"',
    'python3 -c "f = open(\'docs/guide.txt\', \'r+b\'); f.seek(2); f.write(b\'XX\'); f.seek(100); f.write(b\'end\'); f.close()"',
    'python3 -c "import os; fd = os.open(\'src/main.c\', os.O_WRONLY | os.O_TRUNC); os.write(fd, b\'short\'); os.close(fd)"',
    'od -c docs/guide.txt | head -3; cat src/main.c',
    'chmod 600 etc/conf; chmod g+s bin/tool 2>&1; stat -c "%a %n" etc/conf bin/tool',
    'chown 1234:5678 src/lib/a.h && chgrp 99 src/util.c && chown -h 7 etc/link && stat -c "%u:%g %n" src/lib/a.h src/util.c etc/link',
  ]);
  sameAsKernel(t, c, true);
});

t.test('git init, add, commit, branch and checkout in a lower tree', async (t) => {
  const home = tmpdir();
  t.teardown(() => removeTree(home));
  const date = '2001-02-03T04:05:06Z';
  const env = {
    HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 'A', GIT_AUTHOR_EMAIL: 'a@example.org',
    GIT_COMMITTER_NAME: 'A', GIT_COMMITTER_EMAIL: 'a@example.org', GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date,
  };
  const c = await compareRun(project, [
    'git init -q -b main . && git add -A && git commit -q -m first && git log --format=%H%n%s',
    'echo more >> docs/README && git rm -q etc/link && git commit -q -am second && git status --porcelain',
    'git checkout -q -b side HEAD~1 && ls etc && git checkout -q main && ls etc',
    'git gc -q && git fsck --no-progress 2>&1; git log --format=%H',
  ], {
    env,
    // git's index records inode numbers and ctimes; only its presence is compared.
    ignoreContent: ['.git/index'],
    xattrs: false,
  });
  sameAsKernel(t, c, true);
});
