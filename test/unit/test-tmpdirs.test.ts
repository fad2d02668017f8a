// The tests' own hygiene: every directory test/lib's tmpdir() makes is gone when the test
// process ends, however it ends (a thrown error, process.exit), with whatever is inside.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

const TREE = require.resolve('../lib/tree');

/** Runs `body` in a child node (with tap's TypeScript loader) after making a tmpdir with content. */
function child(body: string): { dir: string; status: number | null } {
  const script = `
    const fs = require('node:fs');
    const { tmpdir } = require(${JSON.stringify(TREE)});
    const d = tmpdir('overlayd-hygiene-');
    fs.mkdirSync(d + '/deep/er', { recursive: true });
    fs.writeFileSync(d + '/deep/er/f', 'x');
    fs.chmodSync(d + '/deep', 0o500);
    process.stdout.write(d);
    ${body}`;
  const r = spawnSync(process.execPath, [...process.execArgv, '-e', script], { encoding: 'utf8' });
  return { dir: r.stdout, status: r.status };
}

for (const [how, body] of [['returns', ''], ['throws', "throw new Error('a failing test');"], ['calls process.exit(3)', 'process.exit(3);']]) {
  t.test(`a test process that ${how} leaves no temp dir`, async (t) => {
    const { dir, status } = child(body);
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    t.match(dir, /overlayd-hygiene-/, 'the child made one');
    t.equal(status === 0, how === 'returns', `exit status ${status}`);
    t.notOk(fs.existsSync(dir), `${dir} is gone`);
  });
}
