// The one way a test skips: skip(this, reason) prints the reason, records it on the test (or,
// from a before-all hook, on the suite) and skips. test/support/summary-reporter.js lists every
// skip with its reason, and under CI=true fails the run for a skipped kernel test unless its
// reason is one of CI_ALLOWED_SKIP_REASONS. A skip that did not come through here has no
// recorded reason, so under CI=true it fails the run too (and test/unit/test-infra checks that
// no test calls mocha's skip() directly).

/**
 * Reasons a kernel test may skip under CI=true: things the CI machine kind lacks by design.
 * The CI machine is a Debian VM running the suite as root on a 6.x kernel with loop devices,
 * squashfs, ext3/ext4, overlayfs, FUSE, user namespaces, the new mount API and openat2, and
 * without device-mapper. Any other reason (not root, no loop driver, no user namespaces, a
 * fixture or tool missing, another architecture) means CI did not test what it claims to, so
 * the run is not green. Listed in README ("Skipped tests"); keep the two in step.
 */
export const CI_ALLOWED_SKIP_REASONS: readonly string[] = ['no device-mapper'];

/** What skip() leaves on a test or suite for the reporter (read by summary-reporter.js). */
export interface SkipRecord {
  reason: string;
  ciAllowed: boolean;
}

export const SKIP_RECORD = 'imgmountSkip';

/** True if `reason` is (or starts with, followed by ": detail") one of CI_ALLOWED_SKIP_REASONS. */
export function ciAllowsSkip(reason: string): boolean {
  return CI_ALLOWED_SKIP_REASONS.some((r) => reason === r || reason.startsWith(`${r}: `));
}

type Recordable = { [SKIP_RECORD]?: SkipRecord };

/**
 * Skips the current test (from it()), or every test of the suite (from before()), or the
 * current test (from beforeEach()), printing and recording why. `reason` says what the machine
 * lacks ("not running as root"); details after ": " are kept ("no device-mapper: dmsetup missing").
 */
export function skip(ctx: Mocha.Context, reason: string): never {
  if (typeof reason !== 'string' || reason.trim() === '') throw new TypeError('skip(): give the reason the test cannot run here');
  const record: SkipRecord = { reason, ciAllowed: ciAllowsSkip(reason) };
  const runnable = ctx.test as (Mocha.Runnable & Recordable & { type?: string; originalTitle?: string }) | undefined;
  let target: Recordable | undefined = runnable;
  if (runnable && runnable.type === 'hook') {
    const title = runnable.originalTitle ?? runnable.title;
    target = /^"before each" hook/.test(title) ? (ctx.currentTest as Mocha.Test & Recordable) : (runnable.parent as Mocha.Suite & Recordable);
  }
  if (target) target[SKIP_RECORD] = record;
  console.log(`    (skipping: ${reason})`);
  ctx.skip();
}
