// NODE_DEBUG=imgmount turns the library's debug log on (stderr, "IMGMOUNT <pid>: ..."); without
// it nothing is written. Each case is a fresh process: Node reads NODE_DEBUG once.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fixture } from '../../support/fixtures';
import { repoRoot } from '../../support/paths';

function initWith(env: NodeJS.ProcessEnv): string {
  const lib = path.join(repoRoot, 'dist', 'lib');
  const script = `require(${JSON.stringify(lib)}).init(process.argv[1]).then(async (i) => { await i.authorizedOwner(['imgmount-no-such-user']); await i.close(); })`;
  const r = spawnSync(process.execPath, ['-e', script, fixture('sq-gzip.sqfs')], { encoding: 'utf8', env, timeout: 20_000 });
  expect(r.status, r.stderr).to.equal(0);
  return r.stderr;
}

describe('util/debug: NODE_DEBUG=imgmount', () => {
  it('logs what the library does when set, and nothing when not', () => {
    const { NODE_DEBUG: _, ...env } = process.env;
    // An owner check naming a user that does not exist: the library says so in its log.
    const on = initWith({ ...env, NODE_DEBUG: 'imgmount' });
    expect(on).to.match(/^IMGMOUNT \d+: no such user or group: imgmount-no-such-user$/m);
    expect(initWith(env)).to.equal('');
  });
});
