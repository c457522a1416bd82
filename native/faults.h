/* Fault injection for tests: makes a named native step fail with a chosen errno, as if the
 * kernel had refused it, and counts how often each step was reached. Shared by the addon (C++,
 * steps on the addon's pool threads: a mutex guards the tables) and the namespace helper (C).
 *
 * Inert unless armed: the addon only through injectFaults() called from JavaScript in the same
 * process (nothing in the environment arms it); the helper only when started with
 * --test-faults, which lib/ns/helper.ts passes only while a test armed helper steps that way.
 * Unarmed, a step costs one relaxed atomic load.
 *
 * Why it is safe to compile into a privileged library: a fault only turns a step into a failure
 * that returns -1 with errno; it never skips a check, never makes a failed step succeed and
 * never changes an argument. And only EBUSY, EAGAIN, ENOSPC, ENOMEM and EIO can be injected:
 * none of them is what a caller reads as "feature missing, use the fallback" (ENOSYS, EPERM,
 * EINVAL, ENOTTY, E2BIG: the user-space path walk instead of openat2, mount(2) instead of the
 * new API, the legacy loop ioctls, the helper's path-based move_mount). So whoever arms it can
 * make an operation fail (which its undo path must handle), never make it less careful.
 *
 * Usage at a call site: `int fd = IMGMOUNT_FAULT_OR("openat", openat(...));` - the call is not
 * made when the fault fires. */
#ifndef IMGMOUNT_FAULTS_H
#define IMGMOUNT_FAULTS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMGMOUNT_FAULT_STEP_MAX 64 /* longest step name kept (longer ones are refused) */
#define IMGMOUNT_FAULT_RULES_MAX 32
#define IMGMOUNT_FAULT_STEPS_MAX 128 /* distinct steps counted; later ones are counted as "(other)" */

struct imgmount_fault_rule {
  char step[IMGMOUNT_FAULT_STEP_MAX];
  int err;             /* errno to fail with */
  unsigned long skip;  /* hits of the step to let through first */
  unsigned long times; /* failures to inject after that */
};

/* 0 if the step may run; otherwise errno is set and -1 returned. Counts the hit while armed. */
int imgmount_fault(const char* step);

/* Whether `err` may be injected (see the file comment). */
int imgmount_fault_errno_allowed(int err);

/* Arms with `n` rules (n may be 0: count only), resetting the counters. Returns 0, or -1 with
 * errno EINVAL (too many rules, an empty or too long step, an errno that may not be injected):
 * then nothing changes. */
int imgmount_faults_arm(const struct imgmount_fault_rule* rules, size_t n);

/* Disarms: no counting, no faults (the state a process starts in). */
void imgmount_faults_disarm(void);

/* Calls fn(ctx, step, hits) for every step hit since arming. */
void imgmount_fault_hits(void (*fn)(void* ctx, const char* step, unsigned long hits), void* ctx);

/* Parses "step,errno,skip,times;step,errno,skip,times;..." (the helper's IMGMOUNT_TEST_FAULTS)
 * and arms with it. Returns 0, or -1 (errno EINVAL) on any malformed part: nothing is armed. */
int imgmount_faults_arm_spec(const char* spec);

#ifdef __cplusplus
}
#endif

#define IMGMOUNT_FAULT_OR(step, call) (imgmount_fault(step) != 0 ? -1 : (call))

#endif /* IMGMOUNT_FAULTS_H */
