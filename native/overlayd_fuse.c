/*
 * overlayd_fuse: the few pieces of the FUSE kernel transport that JavaScript cannot do itself.
 *
 * - open /dev/fuse and mount(2) it (fstype fuse.overlayd);
 * - watch the device on the libuv loop (uv_poll) and call back into JS when requests wait, so
 *   JS reads them with non-blocking read(2) on its own thread: no reader threads, no handoff;
 * - read/write whole requests and replies with one syscall each;
 * - FUSE over io_uring (fuse_uring.c): the ring's handle, reads and replies, as for the device;
 * - the passthrough ioctls FUSE_DEV_IOC_BACKING_OPEN/CLOSE;
 * - for non-root mounts, libfuse's way through fusermount3: a socketpair whose one end the
 *   (setuid) helper gets as _FUSE_COMMFD, and recvFd to take the /dev/fuse fd it sends back.
 *
 * Protocol parsing and serialising live in TypeScript (src/fuse-kernel). Every function returns
 * >= 0 on success and -errno on failure, as in overlayd_native.c.
 */
#define ADDON_NAME "overlayd_fuse"
#include "napi_args.h"
#include "spin.h"
#include "fuse_uring.h"
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <linux/fuse.h>

/*
 * Debian 12's <linux/fuse.h> is protocol 7.38; passthrough came in 7.40. These are the kernel
 * ABI (include/uapi/linux/fuse.h), defined here only where the header lacks them.
 */
#ifndef FUSE_DEV_IOC_BACKING_OPEN
struct fuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define FUSE_DEV_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct fuse_backing_map)
#define FUSE_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)
#endif

/* A JS string argument as a malloc'd C string (NULL with an exception pending). */
static char *arg_str(args_t *a, size_t i) {
  size_t len = 0;
  if (napi_get_value_string_utf8(a->env, a->argv[i], NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(a->env, NULL, "overlayd_fuse: expected string");
    return NULL;
  }
  char *s = malloc(len + 1);
  if (!s) { napi_throw_error(a->env, NULL, "overlayd_fuse: out of memory"); return NULL; }
  napi_get_value_string_utf8(a->env, a->argv[i], s, len + 1, &len);
  return s;
}

/* Bytes of a Buffer / Uint8Array argument. */
static uint8_t *arg_bytes(args_t *a, size_t i, size_t *len) {
  napi_typedarray_type t; void *data; napi_value ab; size_t off;
  if (napi_get_typedarray_info(a->env, a->argv[i], &t, len, &data, &ab, &off) != napi_ok || t != napi_uint8_array) {
    napi_throw_type_error(a->env, NULL, "overlayd_fuse: expected Uint8Array");
    return NULL;
  }
  return data;
}

/* openDevice(): /dev/fuse, non-blocking, close-on-exec. */
static napi_value js_open_device(napi_env env, napi_callback_info info) {
  (void)info;
  return rc(env, open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK));
}

/* mount(source, target, fstype, flags, data) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  ARGS(5);
  char *src = arg_str(&a, 0), *target = NULL, *type = NULL, *data = NULL;
  if (src) target = arg_str(&a, 1);
  if (target) type = arg_str(&a, 2);
  int32_t flags = 0;
  if (type && arg_i32(&a, 3, &flags) == 0) data = arg_str(&a, 4);
  napi_value res = NULL;
  if (data) res = rc(env, mount(src, target, type, (unsigned long)(uint32_t)flags, data));
  free(src); free(target); free(type); free(data);
  return res;
}

/* The spin state of /dev/fuse reads (see spin.h). */
static spin_t dev_spin;

typedef struct { int fd; uint8_t *buf; size_t len; } dev_read_t;

static long dev_read_once(void *ctx) {
  dev_read_t *r = ctx;
  ssize_t n;
  do { n = read(r->fd, r->buf, r->len); } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

/*
 * read(fd, buf, len[, spinNs]): one whole request, or -EAGAIN when none waits (after spinning
 * for up to spinNs, where spinning pays; see spin.h).
 */
static napi_value js_read(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, fd);
  size_t cap;
  uint8_t *buf = arg_bytes(&a, 1, &cap);
  if (!buf) return NULL;
  I32(2, want);
  size_t len = want < 0 ? 0 : (size_t)want;
  if (len > cap) len = cap;
  int32_t spin = 0;
  if (a.argc > 3 && arg_i32(&a, 3, &spin)) return NULL;
  dev_read_t r = { fd, buf, len };
  return num(env, (double)spin_ask(&dev_spin, spin, dev_read_once, &r));
}

/* write(fd, buf, len): one whole reply or notification. */
static napi_value js_write(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, fd);
  size_t cap;
  uint8_t *buf = arg_bytes(&a, 1, &cap);
  if (!buf) return NULL;
  I32(2, want);
  size_t len = want < 0 ? 0 : (size_t)want;
  if (len > cap) len = cap;
  ssize_t n;
  do { n = write(fd, buf, len); } while (n < 0 && errno == EINTR);
  return rc(env, n);
}

/*
 * preadNowait(fd, buf, off, len, pos): pread into buf[off..] only from the page cache
 * (RWF_NOWAIT): -EAGAIN, or a short count, where the disk would have to be waited for.
 */
static napi_value js_pread_nowait(napi_env env, napi_callback_info info) {
  ARGS(5);
  I32(0, fd);
  size_t cap;
  uint8_t *buf = arg_bytes(&a, 1, &cap);
  if (!buf) return NULL;
  I32(2, off_arg);
  I32(3, len_arg);
  I64(4, pos);
  if (off_arg < 0 || len_arg < 0) return num(env, -EINVAL);
  size_t off = (size_t)off_arg, len = (size_t)len_arg;
  if (off > cap) off = cap;
  if (len > cap - off) len = cap - off;
  struct iovec iov = { buf + off, len };
  ssize_t n;
  do { n = preadv2(fd, &iov, 1, pos, RWF_NOWAIT); } while (n < 0 && errno == EINTR);
  return rc(env, n);
}

/* backingOpen(devFd, fd): a backing id for FOPEN_PASSTHROUGH, or -errno. */
static napi_value js_backing_open(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, dev);
  I32(1, fd);
  struct fuse_backing_map map;
  memset(&map, 0, sizeof map);
  map.fd = fd;
  return rc(env, ioctl(dev, FUSE_DEV_IOC_BACKING_OPEN, &map));
}

static napi_value js_backing_close(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, dev);
  I32(1, backing);
  uint32_t id = (uint32_t)backing;
  return rc(env, ioctl(dev, FUSE_DEV_IOC_BACKING_CLOSE, &id));
}

/* socketpair(): [a, b], a connected AF_UNIX stream pair, close-on-exec (a child gets its end
 * through spawn's stdio, which dup2s it); or -errno. */
static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return num(env, -errno);
  napi_value arr, v;
  napi_create_array_with_length(env, 2, &arr);
  for (uint32_t i = 0; i < 2; i++) {
    napi_create_int32(env, sv[i], &v);
    napi_set_element(env, arr, i, v);
  }
  return arr;
}

/*
 * recvFd(sock): the fd a peer sent with SCM_RIGHTS (fusermount3's send_fd: one byte, one fd),
 * made close-on-exec and non-blocking (as openDevice opens /dev/fuse), without waiting: -EAGAIN if nothing is queued, -ECONNRESET if the peer closed
 * without sending one, -EPROTO for a message without an fd (any fds beyond the first are closed).
 */
static napi_value js_recv_fd(napi_env env, napi_callback_info info) {
  ARGS(1);
  I32(0, sock);
  char byte;
  struct iovec iov = { &byte, 1 };
  union { struct cmsghdr align; char buf[CMSG_SPACE(4 * sizeof(int))]; } ctl;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  memset(&ctl, 0, sizeof ctl);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof ctl.buf;
  ssize_t n;
  do { n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
  if (n < 0) return num(env, -errno);
  int fd = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (fd < 0) fd = got;
      else close(got);
    }
  }
  if (fd >= 0) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) { int e = errno; close(fd); return num(env, -e); }
    return num(env, fd);
  }
  return num(env, n == 0 ? -ECONNRESET : -EPROTO);
}

/*
 * poll(fd, callback): calls callback(events) on the JS thread whenever the device is readable
 * (events & 1) or broken (events & 2: unmounted, aborted). Returns a handle for pollStop.
 */
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  int active;
} poller_t;

static void poll_closed(uv_handle_t *h) {
  free(h->data);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  poller_t *pl = p->data;
  if (!pl->active) return;
  napi_env env = pl->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[1];
  int ev = 0;
  if (status < 0 || (events & UV_DISCONNECT)) ev |= 2;
  if (status >= 0 && (events & UV_READABLE)) ev |= 1;
  napi_create_int32(env, ev, &argv[0]);
  napi_get_global(env, &recv);
  if (napi_get_reference_value(env, pl->cb, &cb) == napi_ok && cb) {
    napi_value result;
    if (napi_make_callback(env, pl->ctx, recv, cb, 1, argv, &result) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void poller_stop(napi_env env, poller_t *pl) {
  if (!pl->active) return;
  pl->active = 0;
  uv_poll_stop(&pl->poll);
  napi_delete_reference(env, pl->cb);
  napi_async_destroy(env, pl->ctx);
  uv_close((uv_handle_t *)&pl->poll, poll_closed);
}

static napi_value js_poll(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, fd);
  napi_valuetype t;
  if (napi_typeof(env, a.argv[1], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "overlayd_fuse: expected function");
    return NULL;
  }
  struct uv_loop_s *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  poller_t *pl = calloc(1, sizeof *pl);
  if (!pl) { napi_throw_error(env, NULL, "overlayd_fuse: out of memory"); return NULL; }
  pl->env = env;
  int r = uv_poll_init(loop, &pl->poll, fd);
  if (r < 0) { free(pl); return num(env, r); }
  pl->poll.data = pl;
  napi_value name;
  napi_create_string_utf8(env, "overlayd:fuse", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &pl->ctx);
  napi_create_reference(env, a.argv[1], 1, &pl->cb);
  pl->active = 1;
  r = uv_poll_start(&pl->poll, UV_READABLE | UV_DISCONNECT, poll_cb);
  if (r < 0) { poller_stop(env, pl); return num(env, r); }
  napi_value ext;
  napi_create_external(env, pl, NULL, NULL, &ext);
  return ext;
}

/* pollStop(handle): stops watching; the handle is freed once libuv has closed it. */
static napi_value js_poll_stop(napi_env env, napi_callback_info info) {
  ARGS(1);
  void *p = NULL;
  if (napi_get_value_external(env, a.argv[0], &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "overlayd_fuse: expected poll handle");
    return NULL;
  }
  poller_stop(env, p);
  return num(env, 0);
}

/*
 * FUSE over io_uring (fuse_uring.c). The handle is a box the ring leaves on close, so a call
 * after close says EBADF instead of touching freed memory.
 */
typedef struct { fuse_uring_t *r; spin_t spin; } ring_box_t;

static void ring_box_free(napi_env env, void *data, void *hint) {
  ring_box_t *b = data;
  fuse_uring_close(b->r);
  free(b);
}

static ring_box_t *arg_ring(args_t *a, size_t i) {
  void *p = NULL;
  if (napi_get_value_external(a->env, a->argv[i], &p) != napi_ok || !p) {
    napi_throw_type_error(a->env, NULL, "overlayd_fuse: expected ring handle");
    return NULL;
  }
  return p;
}

/* uringCreate(devFd, queues, depth, payloadBytes): a handle, or -errno. */
static napi_value js_uring_create(napi_env env, napi_callback_info info) {
  ARGS(4);
  I32(0, dev);
  I32(1, queues);
  I32(2, depth);
  I32(3, payload);
  if (queues <= 0 || depth <= 0 || payload <= 0) return num(env, -EINVAL);
  ring_box_t *b = calloc(1, sizeof *b);
  if (!b) return num(env, -ENOMEM);
  int r = fuse_uring_create(dev, (unsigned)queues, (unsigned)depth, (size_t)payload, &b->r);
  if (r < 0) { free(b); return num(env, r); }
  napi_value ext;
  if (napi_create_external(env, b, ring_box_free, NULL, &ext) != napi_ok) { ring_box_free(env, b, NULL); return NULL; }
  return ext;
}

/* uringFd(h): the io_uring fd to watch, or -EBADF once closed. */
static napi_value js_uring_fd(napi_env env, napi_callback_info info) {
  ARGS(1);
  ring_box_t *b = arg_ring(&a, 0);
  if (!b) return NULL;
  return num(env, b->r ? fuse_uring_fd(b->r) : -EBADF);
}

/* uringRegister(h): entries the kernel took, or -errno. */
static napi_value js_uring_register(napi_env env, napi_callback_info info) {
  ARGS(1);
  ring_box_t *b = arg_ring(&a, 0);
  if (!b) return NULL;
  return num(env, b->r ? fuse_uring_register(b->r) : -EBADF);
}

typedef struct { fuse_uring_t *r; uint8_t *buf; size_t len; } ring_read_t;

static long ring_read_once(void *ctx) {
  ring_read_t *rr = ctx;
  return fuse_uring_next(rr->r, rr->buf, rr->len);
}

/* uringRead(h, buf, len[, spinNs]): as read() on /dev/fuse, from the ring's completions. */
static napi_value js_uring_read(napi_env env, napi_callback_info info) {
  ARGS(3);
  ring_box_t *b = arg_ring(&a, 0);
  if (!b) return NULL;
  size_t cap;
  uint8_t *buf = arg_bytes(&a, 1, &cap);
  if (!buf) return NULL;
  I32(2, want);
  size_t len = want < 0 ? 0 : (size_t)want;
  if (len > cap) len = cap;
  int32_t spin = 0;
  if (a.argc > 3 && arg_i32(&a, 3, &spin)) return NULL;
  if (!b->r) return num(env, -EBADF);
  ring_read_t rr = { b->r, buf, len };
  return num(env, (double)spin_ask(&b->spin, spin, ring_read_once, &rr));
}

/*
 * uringWrite(h, buf, len): a reply through the entry holding its request (sent with the next
 * uringRead or uringFlush), else on /dev/fuse at once.
 */
static napi_value js_uring_write(napi_env env, napi_callback_info info) {
  ARGS(3);
  ring_box_t *b = arg_ring(&a, 0);
  if (!b) return NULL;
  size_t cap;
  uint8_t *buf = arg_bytes(&a, 1, &cap);
  if (!buf) return NULL;
  I32(2, want);
  size_t len = want < 0 ? 0 : (size_t)want;
  if (len > cap) len = cap;
  if (!b->r) return num(env, -EBADF);
  return num(env, (double)fuse_uring_reply(b->r, buf, len));
}

/* uringFlush(h): sends the replies committed since the last uringRead. 0 or -errno. */
static napi_value js_uring_flush(napi_env env, napi_callback_info info) {
  ARGS(1);
  ring_box_t *b = arg_ring(&a, 0);
  if (!b) return NULL;
  return num(env, b->r ? fuse_uring_flush(b->r) : -EBADF);
}

/* uringClose(h): closes the ring and frees its buffers (after the watch on it stopped). */
static napi_value js_uring_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  ring_box_t *b = arg_ring(&a, 0);
  if (!b) return NULL;
  fuse_uring_close(b->r);
  b->r = NULL;
  return num(env, 0);
}

static napi_value init(napi_env env, napi_value exports) {
  static const export_fn fns[] = {
    {"openDevice", js_open_device}, {"mount", js_mount}, {"read", js_read}, {"write", js_write},
    {"preadNowait", js_pread_nowait}, {"backingOpen", js_backing_open}, {"backingClose", js_backing_close},
    {"poll", js_poll}, {"pollStop", js_poll_stop}, {"socketpair", js_socketpair}, {"recvFd", js_recv_fd},
    {"uringCreate", js_uring_create}, {"uringFd", js_uring_fd}, {"uringRegister", js_uring_register},
    {"uringRead", js_uring_read}, {"uringWrite", js_uring_write}, {"uringFlush", js_uring_flush},
    {"uringClose", js_uring_close},
  };
  export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
  napi_value c;
  napi_create_object(env, &c);
  def_int(env, c, "MS_RDONLY", MS_RDONLY); def_int(env, c, "MS_NOSUID", MS_NOSUID); def_int(env, c, "MS_NODEV", MS_NODEV);
  def_int(env, c, "MS_NOEXEC", MS_NOEXEC); def_int(env, c, "MS_NOATIME", MS_NOATIME);
  def_int(env, c, "MS_SYNCHRONOUS", MS_SYNCHRONOUS); def_int(env, c, "MS_DIRSYNC", MS_DIRSYNC);
  def_int(env, c, "EAGAIN", EAGAIN); def_int(env, c, "EBADF", EBADF); def_int(env, c, "ENODEV", ENODEV); def_int(env, c, "EPERM", EPERM);
  def_int(env, c, "FUSE_KERNEL_VERSION", FUSE_KERNEL_VERSION);
  def_int(env, c, "HEADER_MINOR_VERSION", FUSE_KERNEL_MINOR_VERSION);
  napi_set_named_property(env, exports, "constants", c);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
