/*
 * rmtree.c: rm -rf in a worker thread (napi async work), for what the daemon has already moved
 * out of sight into its work directory: a removed directory full of whiteouts may hold many
 * thousands of entries, and clearing it must not hold the JS thread.
 */
#define ADDON_NAME "overlayd_native"
#include "napi_args.h"
#include "copyup.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

#define DENTS_BUF 8192

struct dent64 { uint64_t d_ino; int64_t d_off; unsigned short d_reclen; unsigned char d_type; char d_name[]; };

/* Removes name in dirfd and all below it, never following symlinks: 0 or -errno. */
static int rm_tree(int dirfd, const char *name) {
  if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR) return -errno;
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  char *buf = malloc(DENTS_BUF);
  int err = buf ? 0 : -ENOMEM;
  /* Entries removed while a directory is read may shift what the next read returns: read it
   * again from the start until it can be removed. */
  while (!err) {
    int removed = 0;
    for (;;) {
      long got = syscall(SYS_getdents64, fd, buf, DENTS_BUF);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) { err = -errno; break; }
      if (got == 0) break;
      for (long off = 0; off < got && !err;) {
        struct dent64 *de = (struct dent64 *)(buf + off);
        off += de->d_reclen;
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
        err = rm_tree(fd, n);
        removed++;
      }
      if (err) break;
    }
    if (err) break;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT) break;
    if (errno != ENOTEMPTY || removed == 0) { err = -errno; break; }
    lseek(fd, 0, SEEK_SET);
  }
  free(buf);
  close(fd);
  return err;
}

typedef struct { int dirfd; char *name; int result; napi_async_work work; napi_ref cb; } rm_job;

static void rm_execute(napi_env env, void *data) {
  rm_job *j = data;
  j->result = rm_tree(j->dirfd, j->name);
}

static void rm_complete(napi_env env, napi_status status, void *data) {
  rm_job *j = data;
  napi_value cb, undef, arg;
  napi_get_reference_value(env, j->cb, &cb);
  napi_get_undefined(env, &undef);
  arg = num(env, status == napi_ok ? j->result : -ECANCELED);
  napi_delete_reference(env, j->cb);
  napi_delete_async_work(env, j->work);
  close(j->dirfd);
  free(j->name);
  free(j);
  napi_call_function(env, undef, cb, 1, &arg, NULL);
}

/* removeTreeAsync(dirfd, name, cb(0 | -errno)): the worker holds a duplicate of dirfd, so the
 * caller may close its own at once. */
static napi_value js_remove_tree_async(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, dirfd);
  /* The name is bytes, a binary string, as every name overlayd_native takes (see there). */
  size_t len = 0;
  if (napi_get_value_string_latin1(env, a.argv[1], NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, ADDON_NAME ": expected string");
    return NULL;
  }
  rm_job *j = calloc(1, sizeof *j);
  char *name = malloc(len + 1);
  if (!j || !name) { free(j); free(name); return num(env, -ENOMEM); }
  napi_get_value_string_latin1(env, a.argv[1], name, len + 1, &len);
  j->name = name;
  j->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (j->dirfd < 0) { int e = errno; free(name); free(j); return num(env, -e); }
  napi_value rname;
  napi_create_string_utf8(env, "overlayd:remove-tree", NAPI_AUTO_LENGTH, &rname);
  if (napi_create_reference(env, a.argv[2], 1, &j->cb) != napi_ok ||
      napi_create_async_work(env, NULL, rname, rm_execute, rm_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    close(j->dirfd); free(name); free(j);
    napi_throw_error(env, NULL, ADDON_NAME ": cannot queue a removal");
    return NULL;
  }
  return num(env, 0);
}

void rmtree_register(napi_env env, napi_value exports) {
  static const export_fn fns[] = { {"removeTreeAsync", js_remove_tree_async} };
  export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
}
