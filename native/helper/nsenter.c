/* imgmount-nsenter: joins a user and/or mount namespace given as inherited fds, then does one
 * operation there and reports the outcome on a result fd.
 *
 * Node is always multi-threaded, and the kernel refuses setns(CLONE_NEWUSER) to a threaded
 * process and setns(CLONE_NEWNS) to one that shares its fs_struct (CLONE_FS) with other
 * threads. This program is single-threaded, spawned through child_process (so libuv reaps
 * it), and makes no decision of its own: its callers (lib/ns/helper.ts, used by lib/ns and
 * lib/mount/in-namespace.ts) choose the namespaces, the order and what to do on failure.
 *
 *   imgmount-nsenter [--userns FD] [--mntns FD] [--setsid] [--pdeathsig SIG] [--namespace-program] [--test-faults] --result FD OP ARG...
 *     exec PROGRAM ARG...           execvp PROGRAM; the result fd is close-on-exec, so EOF
 *                                   without a line means the exec succeeded. After --mntns
 *                                   the program, its loader and its libraries come from that
 *                                   namespace's filesystem: refused unless the caller said so
 *                                   with --namespace-program (spawnInNamespaces; imgmount's own
 *                                   helpers never do). --pdeathsig: the program gets SIG when
 *                                   the process that started this helper dies.
 *     move-mount FD TARGET          TARGET resolved inside the namespace's root (openat2
 *                                   RESOLVE_IN_ROOT: no symlink leads out of it), then
 *                                   move_mount(FD, "", that fd, "", F_EMPTY_PATH|T_EMPTY_PATH);
 *                                   without openat2 (ENOSYS), move_mount to the path TARGET
 *     mount SOURCE TARGET FSTYPE FLAGS DATA    mount(2); "-" stands for NULL
 *     umount TARGET FLAGS [MOUNTID] umount2(2) with UMOUNT_NOFOLLOW; with MOUNTID, only if
 *                                   the mount at TARGET has that id (else ERR ESTALE, step
 *                                   "mount-id")
 *     userns-hold                   unshare(CLONE_NEWUSER), report, then wait for EOF on stdin
 *                                   (the parent writes the id maps and opens /proc/PID/ns/user)
 *
 * Result (text, one report per run): "OK\n" or "ERR <errno> <step>\n", <step> being the
 * syscall that failed ("setns(CLONE_NEWNS)", "move_mount", "umount2", ...) or a check
 * ("mount-id", "parent-exited", "exec-after-setns(CLONE_NEWNS)"). Exit status 0 on OK, 1 on
 * ERR, 2 on a usage error (also reported as ERR with EINVAL and step "usage").
 * setns order is user first, then mount: the mount namespace's owner must be reachable.
 *
 * --test-faults (tests only; lib/ns/helper.ts passes it only while a test armed helper faults
 * in-process): IMGMOUNT_TEST_FAULTS ("step,errno,skip,times;...") makes named steps fail as if
 * the kernel had refused them (native/faults.h: only EBUSY, EAGAIN, ENOSPC, ENOMEM or EIO, so
 * a fault can only make this helper fail, never take another path), and "H <step> <hits>"
 * lines before the result say which steps ran. Without the flag the variable is ignored; with
 * it, it is removed before exec. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../faults.h"
#include "../syscalls.h"

#ifdef IMGMOUNT_SANITIZE
/* The sanitizer build (scripts/test-asan.sh): this helper runs with a fixed environment, so its
 * options are built in. Leaks are checked at exit; any report ends it (and the test) at once. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1"; }
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }
#endif

static int result_fd = -1;
static int test_faults = 0;

static void write_all(const char *s, size_t n) {
  while (n > 0 && result_fd >= 0) {
    ssize_t w = write(result_fd, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

static void hit_line(void *ctx, const char *step, unsigned long hits) {
  (void)ctx;
  char line[128];
  int n = snprintf(line, sizeof line, "H %s %lu\n", step, hits);
  if (n > 0 && (size_t)n < sizeof line) write_all(line, (size_t)n);
}

/* With --test-faults: which steps ran, once, before the result (or the exec). */
static void report_hits(void) {
  static int done = 0;
  if (!test_faults || done) return;
  done = 1;
  imgmount_fault_hits(hit_line, NULL);
}

static void report_ok(void) {
  report_hits();
  write_all("OK\n", 3);
}

static int report_err(int err, const char *step) {
  report_hits();
  char line[256];
  int n = snprintf(line, sizeof line, "ERR %d %s\n", err, step);
  if (n > 0) write_all(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
  return 1;
}

static int parse_fd(const char *s) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 1 << 20) return -1;
  return (int)v;
}

static const char *nullable(const char *s) { return strcmp(s, "-") == 0 ? NULL : s; }


/* TARGET as an O_PATH fd, resolved with the mount namespace's root as its root. -1 with
 * errno ENOSYS when the kernel has no openat2 (the caller then uses the path). */
static int open_in_root(const char *target) {
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return -1;
  if (imgmount_fault("openat2(RESOLVE_IN_ROOT)") != 0) {
    int saved = errno;
    close(root);
    errno = saved;
    return -1;
  }
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = (int)syscall(SYS_openat2, root, target, &how, sizeof how);
  int saved = errno;
  close(root);
  errno = saved;
  return fd;
}

int main(int argc, char **argv) {
  int userns = -1, mntns = -1, new_session = 0, namespace_program = 0, death_signal = 0, i = 1;
  pid_t parent = getppid();
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--pdeathsig") == 0 && i + 1 < argc) {
      death_signal = parse_fd(argv[++i]);
      continue;
    }
    if (strcmp(argv[i], "--setsid") == 0) new_session = 1;
    else if (strcmp(argv[i], "--namespace-program") == 0) namespace_program = 1;
    else if (strcmp(argv[i], "--test-faults") == 0) test_faults = 1;
    else if (strcmp(argv[i], "--userns") == 0 && i + 1 < argc) userns = parse_fd(argv[++i]);
    else if (strcmp(argv[i], "--mntns") == 0 && i + 1 < argc) mntns = parse_fd(argv[++i]);
    else if (strcmp(argv[i], "--result") == 0 && i + 1 < argc) result_fd = parse_fd(argv[++i]);
    else break;
  }
  if (result_fd >= 0) fcntl(result_fd, F_SETFD, FD_CLOEXEC);
  if (test_faults) {
    const char *spec = getenv("IMGMOUNT_TEST_FAULTS");
    if (spec && imgmount_faults_arm_spec(spec) != 0) {
      report_err(EINVAL, "usage(IMGMOUNT_TEST_FAULTS)");
      return 2;
    }
    if (!spec) imgmount_faults_arm(NULL, 0); /* count only */
  }
  unsetenv("IMGMOUNT_TEST_FAULTS"); /* never passed on to an exec'd program */
  if (i >= argc) {
    report_err(EINVAL, "usage");
    return 2;
  }
  const char *op = argv[i++];
  int nargs = argc - i;
  char **args = argv + i;

  if (strcmp(op, "userns-hold") == 0) {
    if (IMGMOUNT_FAULT_OR("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER)) != 0) return report_err(errno, "unshare(CLONE_NEWUSER)");
    report_ok();
    char c;
    for (;;) {
      ssize_t r = read(0, &c, 1);
      if (r > 0 || (r < 0 && errno == EINTR)) continue;
      break;
    }
    return 0;
  }

  if (userns >= 0) {
    if (IMGMOUNT_FAULT_OR("setns(CLONE_NEWUSER)", setns(userns, CLONE_NEWUSER)) != 0) return report_err(errno, "setns(CLONE_NEWUSER)");
    close(userns);
  }
  if (mntns >= 0) {
    if (IMGMOUNT_FAULT_OR("setns(CLONE_NEWNS)", setns(mntns, CLONE_NEWNS)) != 0) return report_err(errno, "setns(CLONE_NEWNS)");
    close(mntns);
  }

  if (strcmp(op, "exec") == 0 && nargs >= 1) {
    if (mntns >= 0 && !namespace_program) return report_err(EPERM, "exec-after-setns(CLONE_NEWNS)");
    if (new_session && IMGMOUNT_FAULT_OR("setsid", setsid()) < 0) return report_err(errno, "setsid");
    if (death_signal > 0) {
      if (IMGMOUNT_FAULT_OR("prctl(PR_SET_PDEATHSIG)", prctl(PR_SET_PDEATHSIG, death_signal)) != 0) return report_err(errno, "prctl(PR_SET_PDEATHSIG)");
      if (getppid() != parent) return report_err(ESRCH, "parent-exited");  /* it died before the prctl */
    }
    if (imgmount_fault("execve") != 0) return report_err(errno, "execve");
    report_hits();
    execvp(args[0], args);
    return report_err(errno, "execve");
  }
  if (strcmp(op, "move-mount") == 0 && nargs == 2) {
    int fd = parse_fd(args[0]);
    if (fd < 0) return report_err(EBADF, "usage");
    int target = open_in_root(args[1]);
    int rc;
    if (target >= 0) {
      rc = IMGMOUNT_FAULT_OR("move_mount", imgmount_move_mount(fd, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
    } else if (errno == ENOSYS) {
      rc = IMGMOUNT_FAULT_OR("move_mount", imgmount_move_mount(fd, "", AT_FDCWD, args[1], MOVE_MOUNT_F_EMPTY_PATH));
    } else {
      return report_err(errno, "openat2(RESOLVE_IN_ROOT)");
    }
    if (rc != 0) return report_err(errno, "move_mount");
    report_ok();
    return 0;
  }
  if (strcmp(op, "mount") == 0 && nargs == 5) {
    unsigned long flags = strtoul(args[3], NULL, 0);
    if (IMGMOUNT_FAULT_OR("mount", mount(nullable(args[0]), args[1], nullable(args[2]), flags, nullable(args[4]))) != 0)
      return report_err(errno, "mount");
    report_ok();
    return 0;
  }
  if (strcmp(op, "umount") == 0 && (nargs == 2 || nargs == 3)) {
    if (nargs == 3) {
      unsigned long long want = strtoull(args[2], NULL, 0);
      struct statx sx;
      memset(&sx, 0, sizeof sx);
      if (IMGMOUNT_FAULT_OR("statx", statx(AT_FDCWD, args[0], AT_SYMLINK_NOFOLLOW, STATX_MNT_ID_UNIQUE | STATX_MNT_ID, &sx)) != 0) return report_err(errno, "statx");
      if ((sx.stx_mask & (STATX_MNT_ID_UNIQUE | STATX_MNT_ID)) && sx.stx_mnt_id != want) return report_err(ESTALE, "mount-id");
    }
    if (IMGMOUNT_FAULT_OR("umount2", umount2(args[0], (int)strtol(args[1], NULL, 0) | UMOUNT_NOFOLLOW)) != 0) return report_err(errno, "umount2");
    report_ok();
    return 0;
  }
  report_err(EINVAL, "usage");
  return 2;
}
