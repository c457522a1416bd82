// Root hooks for every test run: a private temp dir, and the leak check (test/support/leaks.ts)
// that fails the run when a test file leaves behind what it created: processes, mounts, loop
// devices, mount records, session directories, open fds.
//
// Per file: mocha's root hooks run once per run (beforeAll/afterAll) or once per test
// (beforeEach/afterEach), never per file. So the root beforeAll (which runs after every spec
// file is loaded, before any test) adds two hooks to the top-level suites of each file: a
// snapshot as the first before-all hook of its first suite (before the file's own before()
// hooks open anything), and the check as the last after-all hook of its last suite (after the
// file's own after() hooks have released everything). A failure is that file's
// `"after all" hook: leak check` with the list; what leaked is cleaned up before it is thrown.
// The root afterAll checks the whole run once more (for what a skipped file's hooks missed).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkLeaks, mountPoints, RUN_ENV, setCurrentRun, snapshotLeaks, within, type LeakSnapshot, type TestRun } from './leaks';
import { killLiveChildren } from './kernel';
import { repoRoot } from './paths';
import { windowTestHooks } from '../../lib/image/open-file';

// Detection windows given back by init() are overwritten in every test run: an Image (or an
// error) still holding a view of one would read garbage here, and a test would fail.
windowTestHooks.poison = true;

/** Per-run scratch directory; everything a test creates lives under it. */
export const testTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imgmount-test-'));

const stateDir = path.join(testTmp, 'state');
// Mount records and session directories (overlay layers, FUSE chains) of this run stay
// under testTmp too, where the leak check looks.
process.env.IMGMOUNT_STATE_DIR = stateDir;

/** This run, as the leak check sees it. */
export const testRun: TestRun = { pid: process.pid, id: path.basename(testTmp), tmp: fs.realpathSync(testTmp), stateDir: path.join(fs.realpathSync(testTmp), 'state') };
setCurrentRun(testRun);

// Every child of the tests inherits the run's mark (the library's helpers do not: they get a
// fixed environment; see leaks.ts for what marks them).
process.env[RUN_ENV] = testRun.id;

/**
 * The run's working directory while tests run: children inherit it through spawn, setsid and
 * exec, so a process re-parented to init whose environment was replaced (imgmount-nsenter)
 * still shows it is ours. 0711: a child running as nobody may stat ".".
 */
const runCwd = path.join(testTmp, 'cwd');
fs.mkdirSync(runCwd, { mode: 0o711 });
fs.chmodSync(runCwd, 0o711);
const startCwd = process.cwd();

// A mocha run whose root hooks never run (no spec matched, as in the reporter's own tests of
// such runs) still made testTmp at import: it goes at exit then, unless something is mounted
// in it (rm would delete what a mount holds).
process.once('exit', () => {
  try {
    if (fs.existsSync(testTmp) && !mountPoints().some((m) => within(m, testRun.tmp))) fs.rmSync(testTmp, { recursive: true, force: true });
  } catch {
    // exiting anyway: what stays is a directory of ours in the system temp dir
  }
});

let runStart: LeakSnapshot | undefined;

function relative(file: string): string {
  return path.relative(repoRoot, file);
}

function hookList(suite: Mocha.Suite): Mocha.Hook[] {
  return (suite as unknown as { _beforeAll: Mocha.Hook[] })._beforeAll;
}

/** Adds the per-file snapshot and check to the top-level suites of every spec file. */
function installFileChecks(root: Mocha.Suite): void {
  const byFile = new Map<string, Mocha.Suite[]>();
  for (const s of root.suites) {
    if (!s.file) continue;
    byFile.set(s.file, [...(byFile.get(s.file) ?? []), s]);
  }
  for (const [file, suites] of byFile) {
    let start: LeakSnapshot | undefined;
    const first = suites[0]!;
    const last = suites[suites.length - 1]!;
    first.beforeAll(`leak check: snapshot for ${relative(file)}`, () => {
      start = snapshotLeaks(testRun, { fds: true });
    });
    // Moved to the front: it must see the file before its own before() hooks run.
    const hooks = hookList(first);
    if (hooks.length > 1) hooks.unshift(hooks.pop()!);
    last.afterAll(`leak check: what ${relative(file)} left behind`, async function () {
      this.timeout(30_000);
      if (!start) return;
      const before = start;
      start = undefined;
      const leaked = await checkLeaks(testRun, before);
      if (leaked) throw new Error(`${relative(file)} left these behind (now cleaned up):\n  ${leaked}`);
    });
  }
}

/**
 * libuv keeps one fd per event loop for good (/dev/null, its reserve for EMFILE), opened by the
 * first stream the loop creates; a child with a pipe makes it open now, not in the first test
 * file that spawns one.
 */
async function openLibuvReserveFd(): Promise<void> {
  const child = spawn('true', [], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve) => child.once('close', resolve).once('error', resolve));
}

export const mochaHooks = {
  // A test that failed (or timed out) before finishing a child it started: the child is killed
  // here, so it neither holds loop devices into the next test nor keeps mocha from exiting.
  async afterEach(this: Mocha.Context): Promise<void> {
    const killed = await killLiveChildren();
    if (killed > 0 && this.currentTest?.state === 'passed') throw new Error(`${this.currentTest.title}: left ${killed} child process(es) running (now killed)`);
  },
  async beforeAll(this: Mocha.Context): Promise<void> {
    await openLibuvReserveFd();
    runStart = snapshotLeaks(testRun);
    process.chdir(runCwd);
    installFileChecks(this.test!.parent!);
  },
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(30_000);
    process.chdir(startCwd);
    // Checked before the temp dir goes, so backing files still resolve; cleaned up either way.
    const leaked = runStart ? await checkLeaks(testRun, runStart) : '';
    // Never recurse into a mount (rm would delete what it holds): kept if one is left.
    if (!mountPoints().some((m) => within(m, testRun.tmp))) fs.rmSync(testTmp, { recursive: true, force: true });
    if (leaked) throw new Error(`tests left these behind (now cleaned up):\n  ${leaked}`);
  },
};
