/*
 * overlayd's mount client: the program engines and mount(8) run for every mount. Node takes
 * 40-70 ms just to start, so a mount does not start it: this sends the command line, cwd and
 * OVERLAYD_* environment to the resident server of the caller's user and mount namespaces
 * (src/cli/server.ts; the bytes are described in src/cli/server-protocol.ts), starting that
 * server when none answers, prints what comes back and exits with its code. Everything that is
 * not a mount (status, umount, help, -f, --dry-run, mount -N), a request the server hands back,
 * and OVERLAYD_SERVER=0 run the Node CLI (bin/overlayd) unchanged.
 *
 * Built by scripts/setup.sh into native/build/overlayd-client, with the node it was built for.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef OVERLAYD_NODE_PATH
#define OVERLAYD_NODE_PATH "node"
#endif

#define MAGIC "overlayd-request-1"
/* As src/cli/server.ts's START_WAIT_MS. */
#define START_WAIT_MS 15000

extern char **environ;

static char home[PATH_MAX];

static const char *node_path(void) {
  const char *n = getenv("OVERLAYD_NODE");
  return n && *n ? n : OVERLAYD_NODE_PATH;
}

/* Runs the Node CLI with our arguments; only returns if it cannot. */
static int exec_node(int argc, char **argv, int delegated) {
  char bin[PATH_MAX + 16];
  snprintf(bin, sizeof bin, "%s/bin/overlayd", home);
  char **args = calloc((size_t)argc + 4, sizeof *args);
  if (!args) return 1;
  int n = 0;
  args[n++] = (char *)node_path();
  args[n++] = "--max-semi-space-size=1"; /* see src/cli/node-flags.ts */
  args[n++] = bin;
  for (int i = 1; i < argc; i++) args[n++] = argv[i];
  /* Handed back by the server: the Node CLI mounts as a daemon of its own, asking no server. */
  if (delegated) setenv("OVERLAYD_SERVER", "0", 1);
  execvp(args[0], args);
  fprintf(stderr, "overlayd: cannot run %s: %s\n", args[0], strerror(errno));
  return 1;
}

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* Whether this command line is a mount the server takes: see run() in src/cli/main.ts. */
static int server_form(int argc, char **argv) {
  if (argc < 2) return 0;
  const char *first = argv[1];
  int sub = is(first, "mount");
  int helper = is(first, "--mount-helper") || (first[0] != '-' && !is(first, "umount") && !is(first, "unmount") &&
                                               !is(first, "status") && !is(first, "help") && !is(first, "serve"));
  int engine = strncmp(first, "-o", 2) == 0;
  if (!sub && !helper && !engine) return 0;
  for (int i = 2 - (engine ? 1 : 0); i < argc; i++) {
    const char *a = argv[i];
    if (is(a, "--")) break;
    if (is(a, "-o") || is(a, "--option") || is(a, "--options") || is(a, "--log-level") || is(a, "--log-file") || is(a, "-t") ||
        is(a, "--types")) {
      i++;
      continue;
    }
    if (is(a, "-h") || is(a, "--help") || is(a, "-V") || is(a, "--version") || is(a, "-N") || is(a, "--namespace")) return 0;
    /* mount's -f is the foreground; the helper's -f (fake) the server does itself. */
    if (sub && (is(a, "-f") || is(a, "--foreground") || is(a, "--dry-run") || strncmp(a, "--ready-fd", 10) == 0)) return 0;
    if (sub && a[0] == '-' && a[1] != '-' && a[1] != 'o' && strchr(a, 'f')) return 0; /* -sf */
  }
  return 1;
}

/* A directory that is `uid`'s own, not a symlink, closed to others (registry.ts's ownPrivateDir). */
static int own_private_dir(const char *dir, uid_t uid) {
  struct stat st;
  return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid && (st.st_mode & 022) == 0;
}

/* Whether we may write in `dir`, or create it (registry.ts's writable()). */
static int writable(const char *dir) {
  if (access(dir, F_OK) == 0) return access(dir, W_OK) == 0;
  char parent[PATH_MAX];
  snprintf(parent, sizeof parent, "%s", dir);
  char *slash = strrchr(parent, '/');
  if (!slash) return 0;
  if (slash == parent) slash[1] = 0;
  else *slash = 0;
  return access(parent, W_OK) == 0;
}

/* The run dir, by registry.ts's runDir(): the same rule, so both find the same socket. */
static void run_dir(char *out, size_t len) {
  const char *env = getenv("OVERLAYD_RUN_DIR");
  uid_t uid = getuid();
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (env && *env) snprintf(out, len, "%s", env);
  else if (uid == 0 && writable("/run/overlayd")) snprintf(out, len, "/run/overlayd");
  else if (xdg && xdg[0] == '/' && own_private_dir(xdg, uid)) snprintf(out, len, "%s/overlayd", xdg);
  else snprintf(out, len, "/tmp/overlayd-%u", (unsigned)uid);
}

static unsigned long long ns_inode(const char *kind) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/self/ns/%s", kind);
  return stat(path, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

static int try_connect(const struct sockaddr_un *sa) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0) return fd;
  close(fd);
  return -1;
}

/* `node bin/overlayd serve`, in a session of its own, stdio on /dev/null, cwd /; its pid. */
static pid_t start_server(void) {
  pid_t pid = fork();
  if (pid != 0) return pid; /* the parent polls the socket */
  setsid();
  if (chdir("/") != 0) _exit(1);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0), dup2(null, 1), dup2(null, 2);
    if (null > 2) close(null);
  }
  char bin[PATH_MAX + 16];
  snprintf(bin, sizeof bin, "%s/bin/overlayd", home);
  char *args[] = {(char *)node_path(), "--max-semi-space-size=1", bin, "serve", NULL};
  execvp(args[0], args);
  _exit(127);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* The request is sent in one write: each write would wake the server for a part of it. */
struct buf {
  char *p;
  size_t len, cap;
};

static int put(struct buf *b, const char *s) {
  size_t n = strlen(s) + 1;
  if (b->len + n > b->cap) {
    size_t cap = (b->cap + n) * 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  const char *h = getenv("OVERLAYD_HOME");
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (h && *h) snprintf(home, sizeof home, "%s", h);
  else if (n > 0) {
    exe[n] = 0;
    /* HOME/native/build/overlayd-client */
    for (int up = 0; up < 3; up++) {
      char *slash = strrchr(exe, '/');
      if (slash) *slash = 0;
    }
    snprintf(home, sizeof home, "%s", exe);
  }
  const char *mode = getenv("OVERLAYD_SERVER");
  /* mount(8) runs us as mount.fuse.overlayd: its helper form, whatever the arguments. */
  const char *base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  char **args = argv;
  int nargs = argc;
  if (strncmp(base, "mount.", 6) == 0 && !(argc > 1 && is(argv[1], "--mount-helper"))) {
    args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) return 1;
    args[0] = argv[0], args[1] = "--mount-helper";
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    nargs = argc + 1;
  }
  if ((mode && (is(mode, "0") || is(mode, "off"))) || !server_form(nargs, args)) return exec_node(nargs, args, 0);

  char dir[PATH_MAX], cwd[PATH_MAX];
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  run_dir(dir, sizeof dir);
  int len = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/server-%llu-%llu.sock", dir, ns_inode("user"), ns_inode("mnt"));
  if (len < 0 || (size_t)len >= sizeof sa.sun_path || !getcwd(cwd, sizeof cwd)) return exec_node(nargs, args, 1);
  int fd = try_connect(&sa);
  if (fd < 0) {
    pid_t server = start_server();
    long long deadline = now_ms() + START_WAIT_MS;
    struct timespec pause = {0, 2 * 1000 * 1000};
    while (fd < 0 && now_ms() < deadline) {
      nanosleep(&pause, NULL);
      fd = try_connect(&sa);
      int st;
      /* Exit 0: another server won the lock, wait for it; otherwise it could not serve here
         (a run dir it cannot write): a daemon of its own mounts. */
      if (fd < 0 && server > 0 && waitpid(server, &st, WNOHANG) == server) {
        server = 0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return exec_node(nargs, args, 1);
      }
    }
    if (fd < 0) {
      fprintf(stderr, "overlayd: no overlayd server answers on %s\n", sa.sun_path);
      return 1;
    }
  }
  char count[16];
  snprintf(count, sizeof count, "%d", nargs - 1);
  struct buf req = {0};
  int bad = put(&req, MAGIC) || put(&req, cwd) || put(&req, count);
  for (int i = 1; i < nargs && !bad; i++) bad = put(&req, args[i]);
  for (char **e = environ; *e && !bad; e++)
    if (strncmp(*e, "OVERLAYD_", 9) == 0) bad = put(&req, *e);
  if (bad || write_all(fd, req.p, req.len) != 0 || shutdown(fd, SHUT_WR) != 0) {
    fprintf(stderr, "overlayd: the server went away: %s\n", strerror(errno));
    return 1;
  }
  size_t cap = 4096, got = 0;
  char *reply = malloc(cap);
  for (;;) {
    if (!reply) return 1;
    if (got == cap) reply = realloc(reply, cap *= 2);
    if (!reply) return 1;
    ssize_t r = read(fd, reply + got, cap - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  char *nl = memchr(reply, '\n', got);
  if (!nl) {
    fprintf(stderr, "overlayd: the server closed without an answer\n");
    return 1;
  }
  *nl = 0;
  if (is(reply, "exec")) return exec_node(nargs, args, 1);
  char *end;
  long code = strtol(reply, &end, 10);
  if (*end != 0 || code < 0 || code > 255) {
    fprintf(stderr, "overlayd: the server answered nonsense\n");
    return 1;
  }
  write_all(2, nl + 1, got - (size_t)(nl + 1 - reply));
  return (int)code;
}
