/*
 * The benchmark's I/O driver: one small process per timed step, so the mount under test is
 * driven by plain syscalls and not by the orchestrating Node process. It times only its own
 * work (CLOCK_MONOTONIC) and prints one JSON line: {"ns":..,"ops":..,"bytes":..}.
 *
 *   statlist BASE LIST       chdir BASE, then lstat every (relative) path listed in LIST
 *   readdir DIR ITERS        list DIR ITERS times (opendir/readdir/closedir); ops = entries seen
 *   create DIR N SIZE        create DIR/fNNNNNN, write SIZE bytes, close; N files
 *   seqread FILE BS          read FILE start to end in BS-byte reads
 *   seqwrite FILE SIZE BS    create FILE and write SIZE bytes in BS-byte writes, then close
 *   randread FILE N BS SEED  N preads of BS bytes at random BS-aligned offsets
 *   append FILE              open FILE O_WRONLY|O_APPEND, write one byte, close (copy-up)
 *   statloop PATH N          lstat PATH N times, from its directory (one LOOKUP/GETATTR each
 *                            when the kernel may not cache them)
 *   openloop PATH N          open+close PATH N times, from its directory
 *   fstatloop FILE N         fstat one open FILE N times (one GETATTR each when uncached)
 *   readloop FILE N BS       pread BS bytes at offset 0 of one open FILE, N times
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *arg) {
  fprintf(stderr, "driver: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
  exit(1);
}

static void report(uint64_t ns, uint64_t ops, uint64_t bytes) {
  printf("{\"ns\":%llu,\"ops\":%llu,\"bytes\":%llu}\n", (unsigned long long)ns, (unsigned long long)ops, (unsigned long long)bytes);
}

static void *xalloc(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 4096, n ? n : 1)) die("alloc", NULL);
  memset(p, 0x5a, n);
  return p;
}

/* splitmix64: a fixed, seedable sequence so every system reads the same offsets. */
static uint64_t rng_state;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int cmd_statlist(const char *base, const char *list) {
  FILE *f = fopen(list, "r");
  if (!f) die("open", list);
  /* Read the whole list first so that only the stats are timed. */
  size_t cap = 1 << 16, n = 0;
  char **paths = malloc(cap * sizeof *paths);
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  while ((len = getline(&line, &lcap, f)) > 0) {
    if (line[len - 1] == '\n') line[--len] = 0;
    if (!len) continue;
    if (n == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
    paths[n++] = strdup(line);
  }
  fclose(f);
  struct stat st;
  uint64_t t0 = now_ns();
  if (chdir(base) < 0) die("chdir", base);
  for (size_t i = 0; i < n; i++)
    if (lstat(paths[i], &st) < 0) die("lstat", paths[i]);
  report(now_ns() - t0, n, 0);
  return 0;
}

static int cmd_readdir(const char *dir, long iters) {
  uint64_t seen = 0;
  uint64_t t0 = now_ns();
  for (long i = 0; i < iters; i++) {
    DIR *d = opendir(dir);
    if (!d) die("opendir", dir);
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) seen++;
    if (errno) die("readdir", dir);
    closedir(d);
  }
  report(now_ns() - t0, seen, 0);
  return 0;
}

static int cmd_create(const char *dir, long n, long size) {
  char *buf = xalloc((size_t)size);
  char path[4096];
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/f%06ld", dir, i);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) die("create", path);
    if (size && write(fd, buf, (size_t)size) != size) die("write", path);
    if (close(fd) < 0) die("close", path);
  }
  report(now_ns() - t0, (uint64_t)n, (uint64_t)n * (uint64_t)size);
  return 0;
}

static int cmd_seqread(const char *file, long bs) {
  char *buf = xalloc((size_t)bs);
  uint64_t total = 0, ops = 0;
  uint64_t t0 = now_ns();
  int fd = open(file, O_RDONLY);
  if (fd < 0) die("open", file);
  for (;;) {
    ssize_t r = read(fd, buf, (size_t)bs);
    if (r < 0) die("read", file);
    if (r == 0) break;
    total += (uint64_t)r;
    ops++;
  }
  close(fd);
  report(now_ns() - t0, ops, total);
  return 0;
}

static int cmd_seqwrite(const char *file, long long size, long bs) {
  char *buf = xalloc((size_t)bs);
  for (long i = 0; i < bs; i++) buf[i] = (char)(i * 131 + 7);
  uint64_t total = 0, ops = 0;
  uint64_t t0 = now_ns();
  int fd = open(file, O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) die("create", file);
  while ((long long)total < size) {
    size_t want = (size_t)((size - (long long)total) < bs ? size - (long long)total : bs);
    ssize_t w = write(fd, buf, want);
    if (w <= 0) die("write", file);
    total += (uint64_t)w;
    ops++;
  }
  if (close(fd) < 0) die("close", file);
  report(now_ns() - t0, ops, total);
  return 0;
}

static int cmd_randread(const char *file, long n, long bs, long seed) {
  char *buf = xalloc((size_t)bs);
  rng_state = (uint64_t)seed;
  int fd = open(file, O_RDONLY);
  if (fd < 0) die("open", file);
  struct stat st;
  if (fstat(fd, &st) < 0) die("fstat", file);
  uint64_t blocks = (uint64_t)st.st_size / (uint64_t)bs;
  if (!blocks) { errno = EINVAL; die("file too small", file); }
  uint64_t total = 0;
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    off_t off = (off_t)((rnd() % blocks) * (uint64_t)bs);
    ssize_t r = pread(fd, buf, (size_t)bs, off);
    if (r != bs) die("pread", file);
    total += (uint64_t)r;
  }
  report(now_ns() - t0, (uint64_t)n, total);
  close(fd);
  return 0;
}

static int cmd_append(const char *file) {
  uint64_t t0 = now_ns();
  int fd = open(file, O_WRONLY | O_APPEND);
  if (fd < 0) die("open", file);
  if (write(fd, "x", 1) != 1) die("write", file);
  if (close(fd) < 0) die("close", file);
  report(now_ns() - t0, 1, 1);
  return 0;
}

/* The per-op probes look up one name only: chdir to the file's directory first. */
static const char *enter_dir(const char *path) {
  static char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) return path;
  snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  if (chdir(dir[0] ? dir : "/") < 0) die("chdir", dir);
  return slash + 1;
}

static int cmd_statloop(const char *path, long n) {
  path = enter_dir(path);
  struct stat st;
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++)
    if (lstat(path, &st) < 0) die("lstat", path);
  report(now_ns() - t0, (uint64_t)n, 0);
  return 0;
}

static int cmd_openloop(const char *path, long n) {
  path = enter_dir(path);
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("open", path);
    close(fd);
  }
  report(now_ns() - t0, (uint64_t)n, 0);
  return 0;
}

static int cmd_fstatloop(const char *file, long n) {
  int fd = open(file, O_RDONLY);
  if (fd < 0) die("open", file);
  struct stat st;
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++)
    if (fstat(fd, &st) < 0) die("fstat", file);
  report(now_ns() - t0, (uint64_t)n, 0);
  close(fd);
  return 0;
}

static int cmd_readloop(const char *file, long n, long bs) {
  char *buf = xalloc((size_t)bs);
  int fd = open(file, O_RDONLY | O_DIRECT);
  if (fd < 0) fd = open(file, O_RDONLY);
  if (fd < 0) die("open", file);
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++)
    if (pread(fd, buf, (size_t)bs, 0) < 0) die("pread", file);
  report(now_ns() - t0, (uint64_t)n, (uint64_t)n * (uint64_t)bs);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: driver CMD ARGS...\n"); return 2; }
  const char *c = argv[1];
#define NEED(k) do { if (argc < (k) + 2) { fprintf(stderr, "driver %s: %d arguments needed\n", c, k); return 2; } } while (0)
  if (!strcmp(c, "statlist")) { NEED(2); return cmd_statlist(argv[2], argv[3]); }
  if (!strcmp(c, "readdir")) { NEED(2); return cmd_readdir(argv[2], atol(argv[3])); }
  if (!strcmp(c, "create")) { NEED(3); return cmd_create(argv[2], atol(argv[3]), atol(argv[4])); }
  if (!strcmp(c, "seqread")) { NEED(2); return cmd_seqread(argv[2], atol(argv[3])); }
  if (!strcmp(c, "seqwrite")) { NEED(3); return cmd_seqwrite(argv[2], atoll(argv[3]), atol(argv[4])); }
  if (!strcmp(c, "randread")) { NEED(4); return cmd_randread(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5])); }
  if (!strcmp(c, "append")) { NEED(1); return cmd_append(argv[2]); }
  if (!strcmp(c, "statloop")) { NEED(2); return cmd_statloop(argv[2], atol(argv[3])); }
  if (!strcmp(c, "openloop")) { NEED(2); return cmd_openloop(argv[2], atol(argv[3])); }
  if (!strcmp(c, "fstatloop")) { NEED(2); return cmd_fstatloop(argv[2], atol(argv[3])); }
  if (!strcmp(c, "readloop")) { NEED(3); return cmd_readloop(argv[2], atol(argv[3]), atol(argv[4])); }
  fprintf(stderr, "driver: unknown command %s\n", c);
  return 2;
}
