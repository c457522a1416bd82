// The README's "Use it from a container runtime" example, run as written: its ts block is
// transpiled (TypeScript, ESM, ES2022: `await using` lowered as a consumer's build would) and run
// as root with the package imported by its name, on a copy of Apptainer's busybox SIF, with the
// runc that scripts/setup-host.sh installs. The container must print its greeting (written
// through the tmpfs overlay), and the root must be gone afterwards.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';
import { testTmp } from '../../support/hooks';
import { busyboxSif } from '../../support/images';
import { eventually, requireKernel } from '../../support/kernel';
import { boundLoops, registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';
import { skip } from '../../support/skip';

/** The first ```ts block after the README heading `heading`. */
export function readmeExample(heading: string): string {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README has no heading "${heading}"`);
  const m = /\n```ts\n([\s\S]*?)\n```\n/.exec(readme.slice(at));
  if (!m) throw new Error(`no ts block under "${heading}"`);
  return m[1]!;
}

function findRunc(): string | null {
  for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) if (fs.existsSync(path.join(dir, 'runc'))) return path.join(dir, 'runc');
  return null;
}

describe('kernel: the README container-runtime example (root -> OCI bundle -> runc)', function () {
  this.timeout(60_000);

  before(function () {
    requireKernel(this);
    if (findRunc() === null) skip(this, 'runc not installed (scripts/setup-host.sh installs it)');
  });

  it('runs the container on the imgmount root and leaves nothing mounted', async () => {
    const project = path.join(testTmp, 'runtime-example');
    fs.mkdirSync(path.join(project, 'node_modules'), { recursive: true });
    fs.symlinkSync(repoRoot, path.join(project, 'node_modules', 'imgmount'));
    const source = readmeExample('### Use it from a container runtime');
    const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 }, reportDiagnostics: true });
    expect(js.diagnostics ?? []).to.deep.equal([]);
    const script = path.join(project, 'example.mjs');
    fs.writeFileSync(script, js.outputText);
    const image = busyboxSif.path;
    const bundle = path.join(project, 'bundle');
    registerMountPoint(path.join(bundle, 'rootfs'));
    const env = { ...process.env, PATH: `${path.dirname(findRunc()!)}:${process.env.PATH ?? ''}` };
    const r = spawnSync(process.execPath, [script, image, bundle], { cwd: project, env, encoding: 'utf8' });
    expect(r.stderr).to.equal('');
    expect(r.status).to.equal(0);
    // runc spec's template names the host "runc"; the greeting went through the overlay's tmpfs.
    expect(r.stdout).to.equal('hello from runc\n');
    const config = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')) as { root: unknown; linux: Record<string, unknown> };
    expect(config.root).to.deep.equal({ path: path.join(bundle, 'rootfs'), readonly: false });
    expect(config.linux).to.not.have.any.keys('resources', 'cgroupsPath');
    // Leaving the example's scope released the root: nothing mounted there, no loop device on the image.
    const mounted = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4]?.startsWith(bundle));
    expect(mounted).to.deep.equal([]);
    await eventually(() => !boundLoops().some((l) => l.backingFile === image), 3000, 'the loop device to go');
    expect(fs.readdirSync(path.join(bundle, 'rootfs'))).to.deep.equal([]);
  });
});
