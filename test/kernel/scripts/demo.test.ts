// The README's "one command runs the main job" is scripts/demo.sh, which sets the host up and
// runs dist/scripts/demo.js. That program is run here as it is (only its work directory is
// the run's), so a change that breaks the main job's public path breaks the suite too.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { testTmp } from '../../support/hooks';
import { requireKernel } from '../../support/kernel';
import { repoRoot } from '../../support/paths';

function run(file: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('kernel: the demo (scripts/demo.sh runs this program)', function () {
  this.timeout(60_000);

  it('builds a SIF, mounts it by both drivers, writes through the overlay, and leaves nothing behind', async function () {
    requireKernel(this);
    const r = await run(path.join(repoRoot, 'dist', 'scripts', 'demo.js'), [path.join(testTmp, 'demo')]);
    expect(r.code, `exit code; stderr:\n${r.stderr}`).to.equal(0);
    expect(r.stdout).to.include('==> kernel driver');
    expect(r.stdout).to.match(/wrote \/etc\/written-by-demo\.txt through the overlay/);
    expect(r.stdout).to.match(/loop devices bound to demo\.sif: 0\n/);
    expect(r.stdout).to.match(/FUSE helper processes: 0\n/);
  });
});
