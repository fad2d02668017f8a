/*
 * copyup.c: the data phase of a copy-up in slices: a reflink where the filesystem offers one,
 * else copy_file_range over the data extents only (holes stay holes), then the final size and,
 * when durable, fsync. A slice moves at most `budget` bytes and says where the next starts, so
 * the caller can stop between slices (a cancelled copy-up) and run each one in a worker thread
 * (copySliceAsync, napi async work): a copy of many GiB never holds the JS thread.
 */
#define ADDON_NAME "overlayd_native"
#include "napi_args.h"
#include "copyup.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

/* Per copy_file_range call: what one request of the kernel's own copy-up loop moves at most. */
#define CHUNK ((int64_t)16 << 20)

enum { SLICE_CLONE = 1, SLICE_WRITEBACK = 2, SLICE_FSYNC = 4 };

ssize_t ovl_copy_range(int in, loff_t oi, int out, loff_t oo, size_t len) {
  ssize_t n = copy_file_range(in, &oi, out, &oo, len, 0);
  if (n >= 0) return n;
  if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
  size_t cap = len < (1u << 20) ? len : (1u << 20);
  char *buf = malloc(cap ? cap : 1);
  if (!buf) return -ENOMEM;
  ssize_t r = pread(in, buf, cap, oi);
  ssize_t done = 0;
  while (r > 0 && done < r) {
    ssize_t w = pwrite(out, buf + done, (size_t)(r - done), oo + done);
    if (w < 0) { r = -1; break; }
    done += w;
  }
  int e = errno;
  free(buf);
  return r < 0 ? -e : done;
}

typedef struct {
  int in, out, flags;
  int64_t pos, size, budget;
  /* Out: where the next slice starts (size when done), or -errno; bytes moved. */
  int64_t result, copied;
} slice_t;

static void copy_slice(slice_t *s) {
  int64_t pos = s->pos, moved = 0;
  int cloned = 0;
  s->copied = 0;
  if (pos == 0 && (s->flags & SLICE_CLONE) && ioctl(s->out, FICLONE, s->in) == 0) {
    cloned = 1;
    moved = pos = s->size;
  }
  while (pos < s->size && moved < s->budget) {
    off_t data = lseek(s->in, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) { pos = s->size; break; } /* only a hole remains */
    if (data < 0) data = pos; /* no SEEK_DATA here: all is data */
    if (data >= s->size) { pos = s->size; break; }
    off_t hole = lseek(s->in, data, SEEK_HOLE);
    if (hole < 0 || hole > s->size) hole = s->size;
    off_t off = data;
    while (off < hole && moved < s->budget) {
      int64_t want = hole - off;
      if (want > CHUNK) want = CHUNK;
      if (want > s->budget - moved) want = s->budget - moved;
      ssize_t n = ovl_copy_range(s->in, off, s->out, off, (size_t)want);
      if (n < 0) { s->result = n; return; }
      if (n == 0) { off = hole; break; } /* the source ended early: the rest stays a hole */
      /* The fsync that ends a durable copy then waits for the last chunk only. */
      if (s->flags & SLICE_WRITEBACK) sync_file_range(s->out, off, n, SYNC_FILE_RANGE_WRITE);
      off += n;
      moved += n;
    }
    pos = off;
  }
  s->copied = moved;
  if (pos >= s->size) {
    if (!cloned && ftruncate(s->out, s->size) < 0) { s->result = -errno; return; }
    if ((s->flags & SLICE_FSYNC) && fsync(s->out) < 0) { s->result = -errno; return; }
  }
  s->result = pos;
}

/* 0, or -1 with a TypeError pending (nothing may be copied then: fd 0 is no argument). */
static int slice_args(args_t *a, slice_t *s) {
  int32_t in, out, flags; int64_t pos, size, budget;
  if (arg_i32(a, 0, &in) || arg_i32(a, 1, &out) || arg_i64(a, 2, &pos) || arg_i64(a, 3, &size) ||
      arg_i64(a, 4, &budget) || arg_i32(a, 5, &flags)) return -1;
  s->in = in; s->out = out; s->pos = pos; s->size = size; s->budget = budget; s->flags = flags;
  return 0;
}

/* copySlice(in, out, pos, size, budget, flags, copied Float64Array[1]): next pos or -errno. */
static napi_value js_copy_slice(napi_env env, napi_callback_info info) {
  ARGS(7);
  slice_t s;
  if (slice_args(&a, &s)) return NULL;
  napi_typedarray_type t; size_t len; void *data; napi_value ab; size_t off;
  if (napi_get_typedarray_info(env, a.argv[6], &t, &len, &data, &ab, &off) != napi_ok || t != napi_float64_array || len < 1) {
    napi_throw_type_error(env, NULL, ADDON_NAME ": expected Float64Array");
    return NULL;
  }
  copy_slice(&s);
  ((double *)data)[0] = (double)s.copied;
  return num(env, (double)s.result);
}

typedef struct { slice_t s; napi_async_work work; napi_ref cb; } slice_job;

static void slice_execute(napi_env env, void *data) {
  copy_slice(&((slice_job *)data)->s);
}

static void slice_complete(napi_env env, napi_status status, void *data) {
  slice_job *j = data;
  napi_value cb, undef, argv[2];
  napi_get_reference_value(env, j->cb, &cb);
  napi_get_undefined(env, &undef);
  argv[0] = num(env, status == napi_ok ? (double)j->s.result : -ECANCELED);
  argv[1] = num(env, (double)j->s.copied);
  napi_delete_reference(env, j->cb);
  napi_delete_async_work(env, j->work);
  free(j);
  napi_call_function(env, undef, cb, 2, argv, NULL);
}

/* copySliceAsync(in, out, pos, size, budget, flags, cb(pos | -errno, copied)): the same slice
 * in a worker thread. The fds must stay open until cb runs. */
static napi_value js_copy_slice_async(napi_env env, napi_callback_info info) {
  ARGS(7);
  napi_valuetype vt;
  if (napi_typeof(env, a.argv[6], &vt) != napi_ok || vt != napi_function) {
    napi_throw_type_error(env, NULL, ADDON_NAME ": expected callback");
    return NULL;
  }
  slice_job *j = calloc(1, sizeof *j);
  if (!j) return num(env, -ENOMEM);
  if (slice_args(&a, &j->s)) { free(j); return NULL; }
  napi_value name;
  napi_create_string_utf8(env, "overlayd:copy-up", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, a.argv[6], 1, &j->cb) != napi_ok ||
      napi_create_async_work(env, NULL, name, slice_execute, slice_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    free(j);
    napi_throw_error(env, NULL, ADDON_NAME ": cannot queue a copy-up slice");
    return NULL;
  }
  return num(env, 0);
}

void copyup_register(napi_env env, napi_value exports, napi_value constants) {
  static const export_fn fns[] = { {"copySlice", js_copy_slice}, {"copySliceAsync", js_copy_slice_async} };
  export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
  def_int(env, constants, "COPY_CLONE", SLICE_CLONE);
  def_int(env, constants, "COPY_WRITEBACK", SLICE_WRITEBACK);
  def_int(env, constants, "COPY_FSYNC", SLICE_FSYNC);
}
