/* Raw wrappers for the loop ioctls and the new mount API, shared by the addon (C++) and the
 * namespace helper (C).
 *
 * glibc only wraps fsopen & co. from 2.36, and that release made <sys/mount.h> and
 * <linux/mount.h> mutually exclusive. So: <sys/mount.h> for mount(2)/umount2, our own
 * #ifndef-guarded constants and syscall(SYS_...) for the rest, and our own struct for
 * mount_setattr. Nothing here decides anything; every function returns what the kernel said. */
#ifndef IMGMOUNT_SYSCALLS_H
#define IMGMOUNT_SYSCALLS_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- syscall numbers (x86_64/aarch64 share the asm-generic numbers for these) ---- */
#ifndef __NR_open_tree
#define __NR_open_tree 428
#endif
#ifndef __NR_move_mount
#define __NR_move_mount 429
#endif
#ifndef __NR_fsopen
#define __NR_fsopen 430
#endif
#ifndef __NR_fsconfig
#define __NR_fsconfig 431
#endif
#ifndef __NR_fsmount
#define __NR_fsmount 432
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif

/* ---- new mount API constants ---- */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#define MOUNT_ATTR__ATIME 0x00000070
#define MOUNT_ATTR_RELATIME 0x00000000
#define MOUNT_ATTR_NOATIME 0x00000010
#define MOUNT_ATTR_STRICTATIME 0x00000020
#define MOUNT_ATTR_NODIRATIME 0x00000080
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef MOUNT_ATTR_NOSYMFOLLOW
#define MOUNT_ATTR_NOSYMFOLLOW 0x00200000
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/* openat2, statx mount ids and UMOUNT_NOFOLLOW, for glibc/kernel headers that predate them. */
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif
#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 0x00000008
#endif

/* fsconfig commands (an enum in the kernel header, so no #ifndef is possible: use our names). */
#define IMGMOUNT_FSCONFIG_SET_FLAG 0
#define IMGMOUNT_FSCONFIG_SET_STRING 1
#define IMGMOUNT_FSCONFIG_SET_FD 5
#define IMGMOUNT_FSCONFIG_CMD_CREATE 6

/* struct mount_attr, under our own name (glibc 2.36 declares one, older ones do not). */
struct imgmount_mount_attr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};

static inline int imgmount_fsopen(const char* fstype, unsigned int flags) {
  return (int)syscall(__NR_fsopen, fstype, flags);
}
static inline int imgmount_fsconfig(int fd, unsigned int cmd, const char* key, const void* value, int aux) {
  return (int)syscall(__NR_fsconfig, fd, cmd, key, value, aux);
}
static inline int imgmount_fsmount(int fd, unsigned int flags, unsigned int attrs) {
  return (int)syscall(__NR_fsmount, fd, flags, attrs);
}
static inline int imgmount_move_mount(int from_dfd, const char* from_path, int to_dfd, const char* to_path,
                                      unsigned int flags) {
  return (int)syscall(__NR_move_mount, from_dfd, from_path, to_dfd, to_path, flags);
}
static inline int imgmount_open_tree(int dfd, const char* path, unsigned int flags) {
  return (int)syscall(__NR_open_tree, dfd, path, flags);
}
static inline int imgmount_mount_setattr(int dfd, const char* path, unsigned int flags,
                                         struct imgmount_mount_attr* attr, size_t size) {
  return (int)syscall(__NR_mount_setattr, dfd, path, flags, attr, size);
}

/* Drains the messages the kernel left in an fs context ("e ...", "w ...", "i ..." lines; the
 * read fails with ENODATA when none are left). Calls `sink` per message; keeps errno intact. */
static inline void imgmount_drain_fs_messages(int fsfd, void (*sink)(void* ctx, const char* msg, size_t len),
                                              void* ctx) {
  int saved = errno;
  char buf[4096];
  for (int i = 0; i < 64; i++) {
    ssize_t n = read(fsfd, buf, sizeof buf - 1);
    if (n <= 0) break;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0')) n--;
    sink(ctx, buf, (size_t)n);
  }
  errno = saved;
}

#endif /* IMGMOUNT_SYSCALLS_H */
