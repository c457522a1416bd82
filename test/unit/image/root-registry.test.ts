// Image.prototype.root() without an import cycle: lib/image names the mounting layer's types
// only, and lib/root registers root() with it when loaded. Through the package entry it is
// always there; a program that loads lib/image alone gets a clear error instead of a mount.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { testTmp } from '../../support/hooks';
import { repoRoot } from '../../support/paths';

/** Runs `script` in a fresh node with `dist` bound to dist/lib and `sandbox` to a sandbox image; returns its stdout lines. */
function run(script: string): string[] {
  const sandbox = path.join(testTmp, 'root-registry-sandbox');
  fs.mkdirSync(path.join(sandbox, 'bin'), { recursive: true });
  const prelude = `const dist = ${JSON.stringify(path.join(repoRoot, 'dist', 'lib'))}; const sandbox = ${JSON.stringify(sandbox)};`;
  const r = spawnSync(process.execPath, ['-e', `${prelude}\n(async () => {\n${script}\n})().catch((e) => { console.error(e); process.exit(1); });`], {
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).to.equal(0);
  return r.stdout.trim().split('\n');
}

describe('Image.prototype.root and the mounting layer', () => {
  it('is root() of lib/root once the package entry (or lib/root) is loaded, and a clear error before', () => {
    const lines = run(`
      const { init } = require(dist + '/image');
      const image = await init(sandbox);
      const missing = require('node:path').join(sandbox, 'no-such-target');
      const code = (p) => p.then(() => 'resolved', (e) => e.code);
      console.log(await code(image.root(missing)));
      console.log(Object.keys(require.cache).some((f) => f.includes('/dist/lib/root/')));
      require(dist);
      console.log(await code(image.root(missing)));
      await image.close();
    `);
    expect(lines[0]).to.equal('ERR_DRIVER_REGISTRY');
    expect(lines[1], 'lib/image loaded the mounting layer').to.equal('false');
    // root() itself ran: it pins the target first, and there is none.
    expect(lines[2]).to.equal('ENOENT');
  });
});
