/* Test helper: runs a program with some syscalls failing, to exercise imgmount's fallbacks on
 * a kernel that has everything (like util-linux's `enosys`, which this machine lacks).
 *   deny-syscalls [--new-mount-api ENOSYS|EPERM] [--loop-configure] [--pidfd-open] -- PROGRAM ARGS...
 * --new-mount-api: fsopen, fsconfig, fsmount, move_mount, open_tree, mount_setattr fail with
 *                  that errno (EPERM is what a seccomp profile that filters them gives);
 * --loop-configure: ioctl(LOOP_CONFIGURE) fails with EINVAL, as on kernels before 5.8;
 * --pidfd-open: pidfd_open fails with ENOSYS, as on kernels before 5.3. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/loop.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_open_tree
#define __NR_open_tree 428
#define __NR_move_mount 429
#define __NR_fsopen 430
#define __NR_fsconfig 431
#define __NR_fsmount 432
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif

#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define DENY_NR(nr, err)                                        \
  BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),              \
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((err) & SECCOMP_RET_DATA))

int main(int argc, char **argv) {
  int mount_err = 0, loop = 0, pidfd = 0, i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--new-mount-api") == 0 && i + 1 < argc) {
      i++;
      mount_err = strcmp(argv[i], "EPERM") == 0 ? EPERM : ENOSYS;
    } else if (strcmp(argv[i], "--loop-configure") == 0) {
      loop = 1;
    } else if (strcmp(argv[i], "--pidfd-open") == 0) {
      pidfd = 1;
    } else {
      fprintf(stderr, "usage: deny-syscalls [--new-mount-api ENOSYS|EPERM] [--loop-configure] [--pidfd-open] -- PROGRAM ARGS...\n");
      return 2;
    }
  }
  if (i + 1 >= argc) return 2;
  struct sock_filter f[64];
  int n = 0;
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  f[n++] = (struct sock_filter)LOAD_NR;
  if (mount_err) {
    int nrs[] = {__NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_move_mount, __NR_open_tree, __NR_mount_setattr};
    for (unsigned k = 0; k < sizeof nrs / sizeof nrs[0]; k++) {
      struct sock_filter d[] = {DENY_NR(nrs[k], mount_err)};
      f[n++] = d[0];
      f[n++] = d[1];
    }
  }
  if (pidfd) {
    struct sock_filter d[] = {DENY_NR(__NR_pidfd_open, ENOSYS)};
    f[n++] = d[0];
    f[n++] = d[1];
  }
  if (loop) {
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 3);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, LOOP_CONFIGURE, 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL);
  }
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("seccomp");
    return 1;
  }
  execvp(argv[i + 1], argv + i + 1);
  perror("execvp");
  return 127;
}
