/* Fault injection for tests (see faults.h). */
#include "faults.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int armed; /* read with __atomic_load_n: the unarmed fast path takes no lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct imgmount_fault_rule rules[IMGMOUNT_FAULT_RULES_MAX];
static unsigned long injected[IMGMOUNT_FAULT_RULES_MAX];
static size_t nrules;

static struct {
  char step[IMGMOUNT_FAULT_STEP_MAX];
  unsigned long hits;
} steps[IMGMOUNT_FAULT_STEPS_MAX + 1]; /* the last slot is "(other)" */
static size_t nsteps;

int imgmount_fault_errno_allowed(int err) {
  return err == EBUSY || err == EAGAIN || err == ENOSPC || err == ENOMEM || err == EIO;
}

static int valid_step(const char* s) {
  size_t n = strnlen(s, IMGMOUNT_FAULT_STEP_MAX);
  return n > 0 && n < IMGMOUNT_FAULT_STEP_MAX;
}

int imgmount_fault(const char* step) {
  if (!__atomic_load_n(&armed, __ATOMIC_ACQUIRE)) return 0;
  int saved = errno, fail = 0;
  pthread_mutex_lock(&lock);
  if (armed) {
    size_t i = 0;
    while (i < nsteps && strncmp(steps[i].step, step, IMGMOUNT_FAULT_STEP_MAX) != 0) i++;
    if (i == nsteps) {
      if (nsteps < IMGMOUNT_FAULT_STEPS_MAX) {
        strncpy(steps[i].step, step, IMGMOUNT_FAULT_STEP_MAX - 1);
        steps[i].step[IMGMOUNT_FAULT_STEP_MAX - 1] = '\0';
        nsteps++;
      } else {
        i = IMGMOUNT_FAULT_STEPS_MAX;
        strcpy(steps[i].step, "(other)");
      }
    }
    unsigned long hit = ++steps[i].hits;
    for (size_t r = 0; r < nrules && !fail; r++) {
      if (strncmp(rules[r].step, step, IMGMOUNT_FAULT_STEP_MAX) != 0) continue;
      if (hit > rules[r].skip && injected[r] < rules[r].times) {
        injected[r]++;
        fail = rules[r].err;
      }
    }
  }
  pthread_mutex_unlock(&lock);
  errno = fail ? fail : saved;
  return fail ? -1 : 0;
}

int imgmount_faults_arm(const struct imgmount_fault_rule* in, size_t n) {
  if (n > IMGMOUNT_FAULT_RULES_MAX) {
    errno = EINVAL;
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    if (!valid_step(in[i].step) || !imgmount_fault_errno_allowed(in[i].err)) {
      errno = EINVAL;
      return -1;
    }
  }
  pthread_mutex_lock(&lock);
  if (n > 0) memcpy(rules, in, n * sizeof *in); /* in may be NULL when n is 0 */
  memset(injected, 0, sizeof injected);
  nrules = n;
  memset(steps, 0, sizeof steps);
  nsteps = 0;
  __atomic_store_n(&armed, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&lock);
  return 0;
}

void imgmount_faults_disarm(void) {
  pthread_mutex_lock(&lock);
  __atomic_store_n(&armed, 0, __ATOMIC_RELEASE);
  nrules = 0;
  nsteps = 0;
  memset(steps, 0, sizeof steps);
  pthread_mutex_unlock(&lock);
}

void imgmount_fault_hits(void (*fn)(void* ctx, const char* step, unsigned long hits), void* ctx) {
  /* Copied under the lock, reported outside it (fn may allocate or call back). */
  static struct {
    char step[IMGMOUNT_FAULT_STEP_MAX];
    unsigned long hits;
  } copy[IMGMOUNT_FAULT_STEPS_MAX + 1];
  static pthread_mutex_t copying = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&copying);
  pthread_mutex_lock(&lock);
  size_t n = 0;
  for (size_t i = 0; i <= IMGMOUNT_FAULT_STEPS_MAX; i++) {
    if (steps[i].hits == 0) continue;
    memcpy(copy[n].step, steps[i].step, sizeof copy[n].step);
    copy[n].hits = steps[i].hits;
    n++;
  }
  pthread_mutex_unlock(&lock);
  for (size_t i = 0; i < n; i++) fn(ctx, copy[i].step, copy[i].hits);
  pthread_mutex_unlock(&copying);
}

static int parse_ulong(const char* s, const char* end, unsigned long* out) {
  if (s == end) return -1;
  unsigned long v = 0;
  for (; s < end; s++) {
    if (*s < '0' || *s > '9' || v > (unsigned long)-1 / 10 - 10) return -1;
    v = v * 10 + (unsigned long)(*s - '0');
  }
  *out = v;
  return 0;
}

int imgmount_faults_arm_spec(const char* spec) {
  struct imgmount_fault_rule parsed[IMGMOUNT_FAULT_RULES_MAX];
  size_t n = 0;
  const char* p = spec;
  while (*p) {
    const char* end = strchr(p, ';');
    if (!end) end = p + strlen(p);
    const char* f[4];
    const char* fe[4];
    const char* q = p;
    for (int i = 0; i < 4; i++) {
      const char* c = i < 3 ? memchr(q, ',', (size_t)(end - q)) : end;
      if (!c) goto bad;
      f[i] = q;
      fe[i] = c;
      q = c + 1;
    }
    if (q != end + 1 || n == IMGMOUNT_FAULT_RULES_MAX) goto bad;
    size_t len = (size_t)(fe[0] - f[0]);
    if (len == 0 || len >= IMGMOUNT_FAULT_STEP_MAX) goto bad;
    memset(&parsed[n], 0, sizeof parsed[n]);
    memcpy(parsed[n].step, f[0], len);
    unsigned long err;
    if (parse_ulong(f[1], fe[1], &err) != 0 || err > 4095 || parse_ulong(f[2], fe[2], &parsed[n].skip) != 0 ||
        parse_ulong(f[3], fe[3], &parsed[n].times) != 0)
      goto bad;
    parsed[n].err = (int)err;
    n++;
    p = *end ? end + 1 : end;
  }
  return imgmount_faults_arm(parsed, n);
bad:
  errno = EINVAL;
  return -1;
}
