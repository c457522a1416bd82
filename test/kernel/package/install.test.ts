// The package as a consumer gets it: `npm pack` (its prepack builds the prebuilt addon and
// helper), then installed from the tarball into empty projects in the run's temp dir.
//  - what the tarball holds (LICENSE, prebuilds, the sources its maps name; no tests, no build/);
//  - publint and @arethetypeswrong/cli find nothing;
//  - `npm install --ignore-scripts`: three dependencies, nothing compiled, and every kind of native
//    call works as root with a PATH that has no compiler (test/support/consumer-smoke.ts), from the
//    shipped prebuild; CommonJS and ESM consumers import it by name;
//  - a strict `nodenext` TypeScript consumer (ESM and CJS files) typechecks against the shipped
//    declarations (skipLibCheck off);
//  - a prebuild that does not load: the error names every candidate and why; `npm rebuild` (install
//    scripts allowed) builds from source with npm's own node-gyp, and the loader uses that build.
import { expect } from 'chai';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkTrustedPathSync } from '../../../lib/util/trusted-path';
import { fixture } from '../../support/fixtures';
import { testTmp } from '../../support/hooks';
import { mountDir } from '../../support/images';
import { requireKernel } from '../../support/kernel';
import { registerMountPoint } from '../../support/leaks';
import { repoRoot } from '../../support/paths';

interface PackedFile {
  path: string;
  size: number;
  mode: number;
}

function run(cmd: string, args: string[], options: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  return { status: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), error: r.error };
}

/** npm with the local cache only where it can (the dependencies are there from the checkout's install). */
function npm(cwd: string, ...args: string[]) {
  return run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline'], { cwd });
}

/** An empty project in the run's temp dir. */
function project(name: string): string {
  const dir = path.join(testTmp, 'consumers', name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `consumer-${name}`, version: '1.0.0', private: true }, null, 2));
  return dir;
}

/** A directory whose PATH offers node and nothing else: no cc, g++, make, python3 (nor npm). */
function nodeOnlyPath(): string {
  const dir = path.join(testTmp, 'consumers', 'node-only-bin');
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { recursive: true });
    fs.symlinkSync(process.execPath, path.join(dir, 'node'));
  }
  return dir;
}

describe('kernel: the npm package, installed from the packed tarball', function () {
  this.timeout(240_000);
  let tarball: string;
  let files: PackedFile[];
  let unpacked: string;

  before(function () {
    requireKernel(this);
    const out = path.join(testTmp, 'pack');
    fs.mkdirSync(out, { recursive: true });
    const r = npm(repoRoot, 'pack', '--json', '--pack-destination', out);
    expect(r.status, r.stderr).to.equal(0);
    const info = (JSON.parse(r.stdout) as Array<{ filename: string; files: PackedFile[] }>)[0]!;
    tarball = path.join(out, info.filename);
    files = info.files;
    unpacked = path.join(out, 'unpacked');
    fs.mkdirSync(unpacked);
    expect(run('tar', ['xzf', tarball, '-C', unpacked]).status).to.equal(0);
    unpacked = path.join(unpacked, 'package');
  });

  it('holds LICENSE, the prebuilt addon and helper (executable), the sources its maps name, and no tests or build output', () => {
    const names = new Set(files.map((f) => f.path));
    expect(names).to.include.keys('LICENSE', 'README.md', 'package.json', 'binding.gyp', 'scripts/install.js', 'bin/imgmount.js', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'lib/index.ts');
    expect(fs.readFileSync(path.join(unpacked, 'LICENSE'), 'utf8')).to.match(/^BSD 3-Clause License\n\nCopyright \(c\) \d{4}, the imgmount authors\n/);
    for (const f of ['prebuilds/linux-x64/imgmount.node', 'prebuilds/linux-x64/imgmount-nsenter']) {
      const entry = files.find((e) => e.path === f);
      expect(entry, f).to.not.equal(undefined);
      expect(entry!.mode & 0o777, f).to.equal(0o755);
    }
    expect([...names].filter((n) => /^(test|build|dist\/test|dist\/scripts)\//.test(n) || n.startsWith('prebuilds/') && !n.startsWith('prebuilds/linux-x64/'))).to.deep.equal([]);
    // The checkout is left as it was: postpack removed the prebuilds it made.
    expect(fs.existsSync(path.join(repoRoot, 'prebuilds'))).to.equal(false);
    // Every source a map names ships (stack traces and "go to definition" land on real files).
    const missing: string[] = [];
    const maps = [...names].filter((n) => n.endsWith('.map'));
    expect(maps.length).to.be.greaterThan(100);
    for (const m of maps) {
      const map = JSON.parse(fs.readFileSync(path.join(unpacked, m), 'utf8')) as { sources: string[] };
      for (const s of map.sources) if (!names.has(path.posix.join(path.posix.dirname(m), s))) missing.push(`${m} -> ${s}`);
    }
    expect(missing).to.deep.equal([]);
    const pkg = JSON.parse(fs.readFileSync(path.join(unpacked, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg.type).to.equal('commonjs');
    expect(pkg).to.include.keys('repository', 'homepage', 'bugs', 'keywords');
    expect(Object.keys(pkg.dependencies as object).sort()).to.deep.equal(['bindings', 'node-addon-api']);
  });

  it('publint (strict) and @arethetypeswrong/cli find no problem', () => {
    const lint = run(path.join(repoRoot, 'node_modules', '.bin', 'publint'), ['run', unpacked, '--pack', 'false', '--strict']);
    expect(lint.status, lint.stdout + lint.stderr).to.equal(0);
    expect(lint.stdout).to.include('All good!');
    const attw = run(path.join(repoRoot, 'node_modules', '.bin', 'attw'), [tarball, '--format', 'json']);
    expect(attw.status, attw.stdout + attw.stderr).to.equal(0);
    const report = JSON.parse(attw.stdout) as { analysis: { problems: unknown[] } };
    expect(report.analysis.problems).to.deep.equal([]);
  });

  describe('npm install --ignore-scripts', () => {
    let consumer: string;
    before(() => {
      consumer = project('ignore-scripts');
      const r = npm(consumer, 'install', '--ignore-scripts', tarball);
      expect(r.status, r.stderr).to.equal(0);
    });

    it('installs three packages besides itself and compiles nothing', () => {
      const modules = fs.readdirSync(path.join(consumer, 'node_modules')).filter((n) => !n.startsWith('.')).sort();
      expect(modules).to.deep.equal(['bindings', 'file-uri-to-path', 'imgmount', 'node-addon-api']);
      expect(fs.existsSync(path.join(consumer, 'node_modules', 'imgmount', 'build'))).to.equal(false);
      expect(fs.existsSync(path.join(consumer, 'node_modules', 'node-gyp'))).to.equal(false);
    });

    it('every kind of native call works without a compiler, from the shipped prebuild (as root, private mount namespace)', () => {
      const bin = nodeOnlyPath();
      for (const tool of ['cc', 'gcc', 'g++', 'make', 'python3', 'node-gyp']) expect(run('/bin/sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } }).status, tool).to.not.equal(0);
      const smoke = path.join(consumer, 'smoke.js');
      fs.copyFileSync(path.join(repoRoot, 'dist', 'test', 'support', 'consumer-smoke.js'), smoke);
      const target = registerMountPoint(mountDir('consumer-smoke'));
      const env = { ...process.env, PATH: bin };
      const r = run('/usr/bin/unshare', ['-m', '--propagation', 'private', '--', 'node', smoke, fixture('sif-basic.sif'), fixture('ext3.img'), target], { cwd: consumer, env });
      expect(r.status, r.stdout + r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      const installed = fs.realpathSync(path.join(consumer, 'node_modules', 'imgmount'));
      expect(out).to.deep.equal({
        type: 'sif',
        partitions: ['!__rootfs__!'],
        hello: 'hello from imgmount\n',
        mountedWhileOpen: 1,
        mountedAfterClose: 0,
        secondWriter: 'ERR_IMAGE_LOCKED',
        userns: 'user:[N]',
        addons: [path.join(installed, 'prebuilds', 'linux-x64', 'imgmount.node')],
      });
      // Nothing was built on the way.
      expect(fs.existsSync(path.join(installed, 'build'))).to.equal(false);
    });

    it('as root, the installed addon and helper pass the trust check of IMGMOUNT_NATIVE_PATH/IMGMOUNT_HELPER_PATH, and work through them', () => {
      const dir = path.join(fs.realpathSync(path.join(consumer, 'node_modules', 'imgmount')), 'prebuilds', 'linux-x64');
      for (const f of ['imgmount.node', 'imgmount-nsenter']) {
        const st = fs.statSync(path.join(dir, f));
        expect([st.uid, (st.mode & 0o7777).toString(8)], f).to.deep.equal([0, '755']);
        expect(checkTrustedPathSync(path.join(dir, f), { followFinal: true }).reason, f).to.equal(null);
      }
      const env = { ...process.env, IMGMOUNT_NATIVE_PATH: path.join(dir, 'imgmount.node'), IMGMOUNT_HELPER_PATH: path.join(dir, 'imgmount-nsenter') };
      const script =
        "const m = require('imgmount'); m.createUserNamespace({ uidMap: [{ inside: 0, outside: 100000, count: 1 }], gidMap: [{ inside: 0, outside: 100000, count: 1 }] })" +
        '.then(async (ns) => { console.log(ns.type); await ns.close(); }, (e) => console.log(e.code, e.message))';
      const r = run('node', ['-e', script], { cwd: consumer, env });
      expect(r.stdout, r.stderr).to.equal('user\n');
    });

    it('CommonJS and ESM consumers import it by name; the bin answers --version', () => {
      const version = (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
      const cjs = run('node', ['-e', "const m = require('imgmount'); console.log(typeof m.init, typeof m.ImgmountError, typeof m.sif.loadSif)"], { cwd: consumer });
      expect(cjs.stdout, cjs.stderr).to.equal('function function function\n');
      const esm = run('node', ['--input-type=module', '-e', "import { init, ImgmountError, sif } from 'imgmount'; console.log(typeof init, typeof ImgmountError, typeof sif.loadSif)"], { cwd: consumer });
      expect(esm.stdout, esm.stderr).to.equal('function function function\n');
      const v = run(path.join(consumer, 'node_modules', '.bin', 'imgmount'), ['--version'], { env: { ...process.env, PATH: `${nodeOnlyPath()}` } });
      expect(v.stdout, v.stderr).to.equal(`${version}\n`);
    });

    it('a strict nodenext TypeScript consumer (ESM and CJS) typechecks against the shipped declarations', () => {
      fs.mkdirSync(path.join(consumer, 'node_modules', '@types'), { recursive: true });
      fs.symlinkSync(path.join(repoRoot, 'node_modules', '@types', 'node'), path.join(consumer, 'node_modules', '@types', 'node'));
      fs.writeFileSync(
        path.join(consumer, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2023', 'esnext.disposable'], strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
          files: ['esm.mts', 'cjs.cts'],
        }),
      );
      fs.writeFileSync(
        path.join(consumer, 'esm.mts'),
        `import { init, ImgmountError, isReadOnlyFilesystem, type Image, type MountedRoot } from 'imgmount';
export async function rootOf(file: string, target: string): Promise<MountedRoot['root']> {
  await using image: Image = await init(file);
  await using mounted = await image.root(target, { writableTmpfs: true });
  return mounted.root;
}
export function codeOf(err: unknown): string | undefined {
  if (err instanceof ImgmountError) return err.code;
  return isReadOnlyFilesystem(err) ? 'read-only' : undefined;
}
`,
      );
      fs.writeFileSync(
        path.join(consumer, 'cjs.cts'),
        `import imgmount = require('imgmount');
export async function typeOf(file: string): Promise<string> {
  const image = await imgmount.init(file);
  try {
    return imgmount.typeName(image.type);
  } finally {
    await image.close();
  }
}
`,
      );
      const tsc = run(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer]);
      expect(tsc.stdout + tsc.stderr).to.equal('');
      expect(tsc.status).to.equal(0);
    });
  });

  describe('a prebuild that does not load here', () => {
    let consumer: string;
    before(() => {
      // The same tarball with a prebuilt addon this machine cannot load.
      const bad = path.join(testTmp, 'pack', 'bad');
      fs.cpSync(path.dirname(unpacked), bad, { recursive: true });
      fs.writeFileSync(path.join(bad, 'package', 'prebuilds', 'linux-x64', 'imgmount.node'), 'not an ELF file\n');
      const badTarball = path.join(testTmp, 'pack', 'imgmount-bad.tgz');
      expect(run('tar', ['czf', badTarball, '-C', bad, 'package']).status).to.equal(0);
      consumer = project('bad-prebuild');
      const r = npm(consumer, 'install', '--ignore-scripts', badTarball);
      expect(r.status, r.stderr).to.equal(0);
    });

    it('ERR_NATIVE_LOAD names every place tried and why each failed', () => {
      const script = "require('imgmount').init('package.json', false, { as: { uid: 0, gid: 0, groups: [] } }).catch((e) => console.log(JSON.stringify({ code: e.code, tried: e.details.tried, errors: e.details.errors, message: e.message })))";
      const r = run('node', ['-e', script], { cwd: consumer });
      const out = JSON.parse(r.stdout) as { code: string; tried: string[]; errors: string[]; message: string };
      const pkg = fs.realpathSync(path.join(consumer, 'node_modules', 'imgmount'));
      expect(out.code).to.equal('ERR_NATIVE_LOAD');
      expect(out.tried).to.deep.equal([path.join(pkg, 'build/Release/imgmount.node'), path.join(pkg, 'build/Debug/imgmount.node'), path.join(pkg, 'prebuilds/linux-x64/imgmount.node')]);
      expect(out.errors.slice(0, 2)).to.deep.equal(['not found', 'not found']);
      expect(out.errors[2]).to.match(/invalid ELF header|file too short/);
      expect(out.message).to.include(`${path.join(pkg, 'prebuilds/linux-x64/imgmount.node')}: ${out.errors[2]}`);
      expect(out.message).to.include('npm rebuild imgmount --build-from-source');
    });

    it("npm rebuild (install scripts allowed) builds it from source with npm's own node-gyp, and that build is used", () => {
      const r = run('npm', ['rebuild', 'imgmount', '--foreground-scripts'], { cwd: consumer });
      expect(r.status, r.stdout + r.stderr).to.equal(0);
      expect(r.stdout + r.stderr).to.match(/imgmount install: \S+prebuilds\/linux-x64\/imgmount\.node does not load here: .*; building from source with node-gyp/);
      // No node-gyp of the project's: the one npm bundles did it.
      expect(fs.existsSync(path.join(consumer, 'node_modules', 'node-gyp'))).to.equal(false);
      const pkg = fs.realpathSync(path.join(consumer, 'node_modules', 'imgmount'));
      for (const f of ['imgmount.node', 'imgmount-nsenter']) expect(fs.existsSync(path.join(pkg, 'build', 'Release', f)), f).to.equal(true);
      const script =
        "require('imgmount').init('node_modules/imgmount/package.json', false, { as: { uid: 0, gid: 0, groups: [] } }).catch((e) => { " +
        "const maps = require('fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith('/imgmount.node')).map((l) => l.split(/\\s+/).pop()); " +
        'console.log(JSON.stringify({ code: e.code, maps: [...new Set(maps)] })); })';
      const load = run('node', ['-e', script], { cwd: consumer });
      // The addon loaded (it opened the file as uid 0; detection then refused a JSON file for what it is).
      expect(JSON.parse(load.stdout)).to.deep.equal({ code: 'ERR_IMAGE_UNKNOWN_FORMAT', maps: [path.join(pkg, 'build', 'Release', 'imgmount.node')] });
    });
  });
});
