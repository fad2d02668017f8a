/*
 * spin.h: asking again for the next FUSE request before sleeping, for both ways requests come
 * (read(2) on /dev/fuse, completions of FUSE over io_uring).
 *
 * A process waiting on a FUSE reply usually sends its next request within microseconds of
 * getting it; a daemon that sleeps meanwhile must be woken, and waking a CPU that went idle can
 * cost far more than the request (on a VM whose idle vCPUs halt at once, as on the 2-vCPU
 * machine the README's numbers come from, it tripled the round trip of a stat). So after a
 * batch the daemon asks again for a while, yielding the CPU to anyone runnable between asks.
 * Adaptive: after SPIN_MISSES spins in a row that caught nothing the daemon sleeps at once,
 * until it is woken for a request that came within the window (one a spin would have caught).
 */
#ifndef OVERLAYD_SPIN_H
#define OVERLAYD_SPIN_H
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#define SPIN_MISSES 8

typedef struct { int64_t slept_at; int misses; int off; } spin_t;

static inline int64_t spin_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * One request through `once` (>= 0, or -errno with -EAGAIN for none waiting), asking again for
 * up to spin_ns where spinning pays (see above).
 */
static inline long spin_ask(spin_t *s, int64_t spin_ns, long (*once)(void *), void *ctx) {
  long n = once(ctx);
  if (n >= 0) {
    if (s->slept_at) {
      if (spin_ns > 0 && spin_now_ns() - s->slept_at <= spin_ns) { s->off = 0; s->misses = 0; }
      s->slept_at = 0;
    }
    return n;
  }
  if (n != -EAGAIN || spin_ns <= 0) return n;
  int64_t t = spin_now_ns();
  if (!s->off) {
    int64_t until = t + spin_ns;
    do {
      sched_yield();
      n = once(ctx);
      if (n >= 0) { s->misses = 0; return n; }
      if (n != -EAGAIN) return n;
      t = spin_now_ns();
    } while (t < until);
    if (++s->misses >= SPIN_MISSES) s->off = 1;
  }
  s->slept_at = t;
  return -EAGAIN;
}

#endif
