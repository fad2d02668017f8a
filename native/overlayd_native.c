/*
 * overlayd_native: the few syscalls Node's fs lacks, as thin N-API wrappers.
 *
 * Convention: every function returns a number >= 0 on success and -errno on
 * failure; only misuse of the API (wrong argument types) throws. The core turns
 * -errno into errors that carry the code, so no syscall error is ever a JS
 * exception born here. Paths are always (dirfd, name) pairs so that no lookup
 * follows a symlink planted inside a layer and no path is limited by PATH_MAX
 * measured from the host root.
 *
 * Names are bytes. Every string that crosses this boundary, in (names, link targets, xattr
 * names, host paths) and out (listings, link targets, xattr names), is a binary string: one
 * char per byte, latin1 in N-API's terms (src/host/bytes.ts converts where a UTF-8 string
 * comes from elsewhere). So a name that is no valid UTF-8 passes unchanged, and latin1 is also
 * the cheapest way N-API has to move a string.
 */
#define ADDON_NAME "overlayd_native"
#include "napi_args.h"
#include "copyup.h"
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <linux/fs.h>
#include <linux/openat2.h>

#define PATHBUF 8192

#define THROW_IF(cond, msg) do { if (cond) { napi_throw_type_error(env, NULL, msg); return NULL; } } while (0)

/* Copies a binary-string argument into buf; returns its length, -1 (exception pending) or -2 (too long). */
static ssize_t arg_str(args_t *a, size_t i, char *buf, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_latin1(a->env, a->argv[i], buf, cap, &len) != napi_ok) {
    napi_throw_type_error(a->env, NULL, "overlayd_native: expected string");
    return -1;
  }
  if (len >= cap - 1) return -2;
  return (ssize_t)len;
}

#define STR_ARG(a, i, var) \
  char var[PATHBUF]; \
  do { ssize_t l_ = arg_str(a, i, var, sizeof var); if (l_ == -1) return NULL; if (l_ == -2) return num(env, -ENAMETOOLONG); } while (0)

/* "/proc/self/fd/N/name": a path that resolves dirfd without walking the host tree. */
static int fdpath(char *out, size_t cap, int dirfd, const char *name) {
  int n = name[0] ? snprintf(out, cap, "/proc/self/fd/%d/%s", dirfd, name) : snprintf(out, cap, "/proc/self/fd/%d", dirfd);
  return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

/* openBeneath(rootfd, relpath, flags, mode): open relpath under rootfd, never crossing a symlink. */
static napi_value open_beneath(napi_env env, napi_callback_info info) {
  ARGS(4);
  I32(0, rootfd);
  STR_ARG(&a, 1, path);
  I32(2, flags);
  I32(3, mode);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (unsigned)flags | O_CLOEXEC;
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? (unsigned)mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  long fd = syscall(SYS_openat2, rootfd, path[0] ? path : ".", &how, sizeof how);
  return rc(env, fd);
}

/* openTreeClone(fd): a detached copy of the mount at fd (rooted there) without its submounts
 * (open_tree(OPEN_TREE_CLONE), no AT_RECURSIVE): paths walked from it see the directories
 * that mounts cover, as the kernel's overlay sees its layers. -EPERM without CAP_SYS_ADMIN. */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
static napi_value js_open_tree_clone(napi_env env, napi_callback_info info) {
  ARGS(1);
  I32(0, fd);
#ifdef SYS_open_tree
  return rc(env, syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
#else
  (void)fd;
  return num(env, -ENOSYS);
#endif
}

/* openat(dirfd, name, flags, mode) */
static napi_value js_openat(napi_env env, napi_callback_info info) {
  ARGS(4);
  I32(0, dirfd);
  STR_ARG(&a, 1, name);
  I32(2, flags);
  I32(3, mode);
  return rc(env, openat(dirfd, name[0] ? name : ".", flags | O_CLOEXEC, mode));
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  I32(0, fd);
  return rc(env, close(fd));
}

/*
 * fstatat(dirfd, name, flags, out Float64Array[17]): fills
 * dev, ino_hi, ino_lo, mode, nlink, uid, gid, rdev_major, rdev_minor, size, blksize, blocks,
 * atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns.
 * The inode is split in two 32-bit halves so 64-bit numbers survive doubles.
 */
#define STAT_FIELDS 18
static void fill_stat(double *o, const struct stat *st) {
  o[0] = (double)st->st_dev;
  o[1] = (double)(uint32_t)((uint64_t)st->st_ino >> 32);
  o[2] = (double)(uint32_t)((uint64_t)st->st_ino & 0xffffffffu);
  o[3] = st->st_mode; o[4] = (double)st->st_nlink; o[5] = st->st_uid; o[6] = st->st_gid;
  o[7] = major(st->st_rdev); o[8] = minor(st->st_rdev);
  o[9] = (double)st->st_size; o[10] = (double)st->st_blksize; o[11] = (double)st->st_blocks;
  o[12] = (double)st->st_atim.tv_sec; o[13] = (double)st->st_atim.tv_nsec;
  o[14] = (double)st->st_mtim.tv_sec; o[15] = (double)st->st_mtim.tv_nsec;
  o[16] = (double)st->st_ctim.tv_sec; o[17] = (double)st->st_ctim.tv_nsec;
}

static double *arg_f64(args_t *a, size_t i, size_t need) {
  napi_typedarray_type t; size_t len; void *data; napi_value ab; size_t off;
  if (napi_get_typedarray_info(a->env, a->argv[i], &t, &len, &data, &ab, &off) != napi_ok || t != napi_float64_array || len < need) {
    napi_throw_type_error(a->env, NULL, "overlayd_native: expected Float64Array of stat fields");
    return NULL;
  }
  return (double *)data;
}

static napi_value js_fstatat(napi_env env, napi_callback_info info) {
  ARGS(4);
  I32(0, dirfd);
  STR_ARG(&a, 1, name);
  I32(2, flags);
  double *out = arg_f64(&a, 3, STAT_FIELDS);
  if (!out) return NULL;
  struct stat st;
  if (!name[0]) flags |= AT_EMPTY_PATH;
  if (fstatat(dirfd, name, &st, flags) < 0) return num(env, -errno);
  fill_stat(out, &st);
  return num(env, 0);
}

static napi_value js_mkdirat(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, dirfd); STR_ARG(&a, 1, name); I32(2, mode);
  return rc(env, mkdirat(dirfd, name, mode));
}

/* mknodat(dirfd, name, mode, major, minor) */
static napi_value js_mknodat(napi_env env, napi_callback_info info) {
  ARGS(5);
  I32(0, dirfd); STR_ARG(&a, 1, name); I32(2, mode);
  I64(3, ma); I64(4, mi);
  return rc(env, mknodat(dirfd, name, mode, makedev((unsigned)ma, (unsigned)mi)));
}

static napi_value js_symlinkat(napi_env env, napi_callback_info info) {
  ARGS(3);
  STR_ARG(&a, 0, target); I32(1, dirfd); STR_ARG(&a, 2, name);
  return rc(env, symlinkat(target, dirfd, name));
}

static napi_value js_linkat(napi_env env, napi_callback_info info) {
  ARGS(5);
  I32(0, ofd); STR_ARG(&a, 1, oname); I32(2, nfd); STR_ARG(&a, 3, nname);
  I32(4, flags);
  if (!oname[0]) flags |= AT_EMPTY_PATH;
  return rc(env, linkat(ofd, oname, nfd, nname, flags));
}

static napi_value js_unlinkat(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, dirfd); STR_ARG(&a, 1, name); I32(2, flags);
  return rc(env, unlinkat(dirfd, name, flags));
}

static napi_value js_renameat2(napi_env env, napi_callback_info info) {
  ARGS(5);
  I32(0, ofd); STR_ARG(&a, 1, oname); I32(2, nfd); STR_ARG(&a, 3, nname);
  I32(4, flags);
  return rc(env, syscall(SYS_renameat2, ofd, oname, nfd, nname, (unsigned)flags));
}

static napi_value js_readlinkat(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, dirfd); STR_ARG(&a, 1, name);
  char buf[PATHBUF];
  ssize_t n = readlinkat(dirfd, name, buf, sizeof buf);
  if (n < 0) return num(env, -errno);
  napi_value s;
  napi_create_string_latin1(env, buf, (size_t)n, &s);
  return s;
}

/* fchmodat on a name that is never a symlink; via /proc so O_PATH dirfds work. */
static napi_value js_fchmodat(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, dirfd); STR_ARG(&a, 1, name); I32(2, mode);
  if (!name[0]) {
    /* The fd itself, a directory or a file, O_PATH or not, named or unlinked. */
    char p[PATHBUF];
    fdpath(p, sizeof p, dirfd, "");
    return rc(env, chmod(p, mode));
  }
  return rc(env, fchmodat(dirfd, name, mode, 0));
}

static napi_value js_fchownat(napi_env env, napi_callback_info info) {
  ARGS(4);
  I32(0, dirfd); STR_ARG(&a, 1, name);
  I64(2, uid); I64(3, gid);
  int flags = AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH);
  return rc(env, fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, flags));
}

/* utimensat(dirfd, name, atime_s, atime_ns, mtime_s, mtime_ns): ns may be UTIME_NOW/UTIME_OMIT. */
static napi_value js_utimensat(napi_env env, napi_callback_info info) {
  ARGS(6);
  I32(0, dirfd); STR_ARG(&a, 1, name);
  struct timespec ts[2];
  I64(2, as); I64(3, ans); I64(4, ms); I64(5, mns);
  ts[0].tv_sec = as; ts[0].tv_nsec = ans;
  ts[1].tv_sec = ms; ts[1].tv_nsec = mns;
  if (!name[0]) {
    /* dirfd may be O_PATH, which futimens refuses: name it through /proc instead. */
    char p[PATHBUF];
    fdpath(p, sizeof p, dirfd, "");
    return rc(env, utimensat(AT_FDCWD, p, ts, 0));
  }
  return rc(env, utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW));
}

/*
 * Directory listing as [names[], types Uint8Array(d_type), inos BigUint64Array(d_ino)],
 * without . and .., read with getdents64 straight into one buffer (no DIR stream: readdir(3)
 * adds an fstat and a 32 KiB allocation per directory).
 */
struct dirent64_raw { uint64_t d_ino; int64_t d_off; unsigned short d_reclen; unsigned char d_type; char d_name[]; };

static napi_value js_readdir(napi_env env, napi_callback_info info) {
  ARGS(1);
  I32(0, dirfd);
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return num(env, -errno);
  size_t cap = 64, n = 0;
  unsigned char *types = malloc(cap);
  uint64_t *inos = malloc(cap * sizeof *inos);
  char *dbuf = malloc(32768);
  int err = (types && inos && dbuf) ? 0 : ENOMEM;
  napi_value names;
  napi_create_array(env, &names);
  while (!err) {
    long got = syscall(SYS_getdents64, fd, dbuf, 32768);
    if (got < 0) { if (errno == EINTR) continue; err = errno; break; }
    if (got == 0) break;
    for (long off = 0; off < got;) {
      struct dirent64_raw *de = (struct dirent64_raw *)(dbuf + off);
      off += de->d_reclen;
      const char *nm = de->d_name;
      if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
      if (n == cap) {
        /* Each array grows on its own: one that moved stays owned even if the other fails. */
        unsigned char *t2 = realloc(types, cap * 2);
        if (t2) types = t2;
        uint64_t *i2 = t2 ? realloc(inos, cap * 2 * sizeof *inos) : NULL;
        if (i2) inos = i2;
        if (!t2 || !i2) { err = ENOMEM; break; }
        cap *= 2;
      }
      types[n] = de->d_type;
      inos[n] = de->d_ino;
      napi_value s;
      napi_create_string_latin1(env, nm, NAPI_AUTO_LENGTH, &s);
      napi_set_element(env, names, (uint32_t)n, s);
      n++;
    }
  }
  close(fd);
  free(dbuf);
  if (err) { free(types); free(inos); return num(env, -err); }
  napi_value ab, ta, ab2, ia, res;
  void *data;
  napi_create_arraybuffer(env, n ? n : 1, &data, &ab);
  memcpy(data, types, n);
  napi_create_typedarray(env, napi_uint8_array, n, ab, 0, &ta);
  napi_create_arraybuffer(env, (n ? n : 1) * sizeof *inos, &data, &ab2);
  memcpy(data, inos, n * sizeof *inos);
  napi_create_typedarray(env, napi_biguint64_array, n, ab2, 0, &ia);
  free(types);
  free(inos);
  napi_create_array_with_length(env, 3, &res);
  napi_set_element(env, res, 0, names);
  napi_set_element(env, res, 1, ta);
  napi_set_element(env, res, 2, ia);
  return res;
}

/*
 * Extended attributes on (dirfd, name) without following a final symlink.
 *
 * Linux 6.13 has *xattrat syscalls that take (dirfd, name) as they are; older kernels (or a
 * seccomp filter that refuses them) get a "/proc/self/fd/N/name" path, which costs a walk
 * through procfs on every call (about 4 us against 1.3 here). An empty name means dirfd
 * itself, which may be O_PATH: the syscalls refuse those, so that case always takes /proc.
 */
#ifndef SYS_setxattrat
#define SYS_setxattrat 463
#define SYS_getxattrat 464
#define SYS_listxattrat 465
#define SYS_removexattrat 466
#endif

struct xattrat_args { uint64_t value; uint32_t size; uint32_t flags; };

/* 1: the *xattrat syscalls work; 0: not tried yet; -1: use /proc paths. */
static int xattrat_state;

static int have_xattrat(void) {
  if (xattrat_state == 0) {
    struct xattrat_args x = { 0, 0, 0 };
    long r = syscall(SYS_getxattrat, AT_FDCWD, "/", 0, "user.overlayd.probe", &x, sizeof x);
    xattrat_state = (r >= 0 || (errno != ENOSYS && errno != EPERM)) ? 1 : -1;
  }
  return xattrat_state > 0;
}

static ssize_t xattr_get(int dirfd, const char *name, const char *p, const char *xname, void *data, size_t size) {
  if (name[0] && have_xattrat()) {
    struct xattrat_args x = { (uint64_t)(uintptr_t)data, (uint32_t)size, 0 };
    return syscall(SYS_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, xname, &x, sizeof x);
  }
  return name[0] ? lgetxattr(p, xname, data, size) : getxattr(p, xname, data, size);
}

static ssize_t xattr_list(int dirfd, const char *name, const char *p, char *list, size_t size) {
  if (name[0] && have_xattrat()) return syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, list, size);
  return name[0] ? llistxattr(p, list, size) : listxattr(p, list, size);
}

static int xattr_set(int dirfd, const char *name, const char *p, const char *xname, const void *data, size_t len, int flags) {
  if (name[0] && have_xattrat()) {
    struct xattrat_args x = { (uint64_t)(uintptr_t)data, (uint32_t)len, (uint32_t)flags };
    return (int)syscall(SYS_setxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, xname, &x, sizeof x);
  }
  return name[0] ? lsetxattr(p, xname, data, len, flags) : setxattr(p, xname, data, len, flags);
}

static int xattr_remove(int dirfd, const char *name, const char *p, const char *xname) {
  if (name[0] && have_xattrat()) return (int)syscall(SYS_removexattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, xname);
  return name[0] ? lremovexattr(p, xname) : removexattr(p, xname);
}

static napi_value js_getxattr(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, dirfd); STR_ARG(&a, 1, name); STR_ARG(&a, 2, xname);
  char p[PATHBUF];
  int e = fdpath(p, sizeof p, dirfd, name);
  if (e) return num(env, e);
  /* Most values (origin, opaque, ACLs) are small: one call where they fit the stack buffer. */
  char small[256];
  ssize_t n = xattr_get(dirfd, name, p, xname, small, sizeof small);
  if (n >= 0) {
    napi_value buf;
    napi_create_buffer_copy(env, (size_t)n, small, NULL, &buf);
    return buf;
  }
  if (errno != ERANGE) return num(env, -errno);
  for (;;) {
    n = xattr_get(dirfd, name, p, xname, NULL, 0);
    if (n < 0) return num(env, -errno);
    void *data; napi_value buf;
    napi_create_buffer(env, (size_t)n, &data, &buf);
    ssize_t m = n ? xattr_get(dirfd, name, p, xname, data, (size_t)n) : 0;
    if (m < 0 && errno == ERANGE) continue;
    if (m < 0) return num(env, -errno);
    if (m == n) return buf;
    napi_value sub;
    napi_create_buffer_copy(env, (size_t)m, data, NULL, &sub);
    return sub;
  }
}

static napi_value js_listxattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, dirfd); STR_ARG(&a, 1, name);
  char p[PATHBUF];
  int e = fdpath(p, sizeof p, dirfd, name);
  if (e) return num(env, e);
  for (;;) {
    ssize_t n = xattr_list(dirfd, name, p, NULL, 0);
    if (n < 0) return num(env, -errno);
    char *buf = malloc(n ? (size_t)n : 1);
    if (!buf) return num(env, -ENOMEM);
    ssize_t m = n ? xattr_list(dirfd, name, p, buf, (size_t)n) : 0;
    if (m < 0) { int err = errno; free(buf); if (err == ERANGE) continue; return num(env, -err); }
    napi_value arr;
    napi_create_array(env, &arr);
    uint32_t k = 0;
    for (ssize_t i = 0; i < m;) {
      size_t l = strlen(buf + i);
      napi_value s;
      napi_create_string_latin1(env, buf + i, l, &s);
      napi_set_element(env, arr, k++, s);
      i += (ssize_t)l + 1;
    }
    free(buf);
    return arr;
  }
}

/* setxattr(dirfd, name, xname, value Buffer, flags) */
static napi_value js_setxattr(napi_env env, napi_callback_info info) {
  ARGS(5);
  I32(0, dirfd); STR_ARG(&a, 1, name); STR_ARG(&a, 2, xname);
  void *data; size_t len;
  THROW_IF(napi_get_buffer_info(env, a.argv[3], &data, &len) != napi_ok, "overlayd_native: expected Buffer");
  I32(4, flags);
  char p[PATHBUF];
  int e = fdpath(p, sizeof p, dirfd, name);
  if (e) return num(env, e);
  return rc(env, xattr_set(dirfd, name, p, xname, data, len, flags));
}

static napi_value js_removexattr(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, dirfd); STR_ARG(&a, 1, name); STR_ARG(&a, 2, xname);
  char p[PATHBUF];
  int e = fdpath(p, sizeof p, dirfd, name);
  if (e) return num(env, e);
  return rc(env, xattr_remove(dirfd, name, p, xname));
}

/* fstatfs(fd, out Float64Array[10]): bsize, frsize, blocks, bfree, bavail, files, ffree, namemax, type, flags */
static napi_value js_fstatfs(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, fd);
  double *o = arg_f64(&a, 1, 10);
  if (!o) return NULL;
  struct statfs s;
  if (fstatfs(fd, &s) < 0) return num(env, -errno);
  o[0] = (double)s.f_bsize; o[1] = (double)s.f_frsize; o[2] = (double)s.f_blocks; o[3] = (double)s.f_bfree;
  o[4] = (double)s.f_bavail; o[5] = (double)s.f_files; o[6] = (double)s.f_ffree; o[7] = (double)s.f_namelen;
  o[8] = (double)s.f_type; o[9] = (double)s.f_flags;
  return num(env, 0);
}

/* copyFileRange(fdIn, offIn, fdOut, offOut, len): bytes copied (0 at EOF); through a buffer
 * where the layers are on different filesystems (see copyup.c). */
static napi_value js_copy_file_range(napi_env env, napi_callback_info info) {
  ARGS(5);
  I32(0, in); I64(1, oi); I32(2, out); I64(3, oo); I64(4, len);
  if (len < 0) return num(env, -EINVAL);
  return num(env, (double)ovl_copy_range(in, oi, out, oo, (size_t)len));
}

/* lseek(fd, off, whence): SEEK_DATA/SEEK_HOLE for sparse-preserving copies */
static napi_value js_lseek(napi_env env, napi_callback_info info) {
  ARGS(3);
  I32(0, fd); I64(1, off); I32(2, whence);
  return rc(env, lseek(fd, off, whence));
}

static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  ARGS(4);
  I32(0, fd); I32(1, mode); I64(2, off); I64(3, len);
  return rc(env, fallocate(fd, mode, off, len));
}

static napi_value js_umount2(napi_env env, napi_callback_info info) {
  ARGS(2);
  STR_ARG(&a, 0, target);
  I32(1, flags);
  return rc(env, umount2(target, flags));
}

static napi_value js_fsync(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, fd); I32(1, datasync);
  return rc(env, datasync ? fdatasync(fd) : fsync(fd));
}

static napi_value js_ftruncate(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, fd); I64(1, size);
  return rc(env, ftruncate(fd, size));
}

/* nameToHandle(dirfd, name): Buffer of [handle_type u32 host-endian][f_handle bytes], for
 * the kernel overlay's origin xattr. */
static napi_value js_name_to_handle(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, dirfd); STR_ARG(&a, 1, name);
  union { struct file_handle fh; char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ]; } h;
  h.fh.handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (name_to_handle_at(dirfd, name, &h.fh, &mount_id, name[0] ? 0 : AT_EMPTY_PATH) < 0) return num(env, -errno);
  napi_value out; void *data;
  napi_create_buffer(env, 4 + h.fh.handle_bytes, &data, &out);
  uint32_t type = (uint32_t)h.fh.handle_type;
  memcpy(data, &type, 4);
  memcpy((char *)data + 4, h.fh.f_handle, h.fh.handle_bytes);
  return out;
}

/* openByHandle(mountfd, type, fhBytes, flags): the object a file handle names on mountfd's
 * filesystem, opened, as the kernel's overlay decodes an origin (needs CAP_DAC_READ_SEARCH:
 * -EPERM without it). */
static napi_value js_open_by_handle(napi_env env, napi_callback_info info) {
  ARGS(4);
  I32(0, mountfd); I32(1, type);
  void *bytes = NULL; size_t len = 0;
  if (napi_get_buffer_info(env, a.argv[2], &bytes, &len) != napi_ok) { napi_throw_type_error(env, NULL, ADDON_NAME ": expected Buffer"); return NULL; }
  I32(3, flags);
  if (len == 0 || len > MAX_HANDLE_SZ) return num(env, -EINVAL);
  union { struct file_handle fh; char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ]; } h;
  h.fh.handle_bytes = (unsigned)len;
  h.fh.handle_type = type;
  memcpy(h.fh.f_handle, bytes, len);
  /* The mount fd must be a real open file, not the O_PATH fd a layer is held by. */
  char p[PATHBUF];
  fdpath(p, sizeof p, mountfd, "");
  int mfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (mfd < 0) return num(env, -errno);
  int fd = open_by_handle_at(mfd, &h.fh, flags | O_CLOEXEC);
  int e = errno;
  close(mfd);
  return num(env, fd < 0 ? -e : fd);
}

/* The filesystem's uuid as the kernel knows it (sb->s_uuid), via FS_IOC_GETFSUUID (6.5+). */
struct overlayd_fsuuid2 { uint8_t len; uint8_t uuid[16]; };
#ifndef FS_IOC_GETFSUUID
#define FS_IOC_GETFSUUID _IOR(0x15, 0, struct overlayd_fsuuid2)
#endif
static napi_value js_fs_uuid(napi_env env, napi_callback_info info) {
  ARGS(1);
  I32(0, dirfd);
  char p[PATHBUF];
  fdpath(p, sizeof p, dirfd, "");
  int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return num(env, -errno);
  struct overlayd_fsuuid2 u;
  memset(&u, 0, sizeof u);
  u.len = 16;
  int r = ioctl(fd, FS_IOC_GETFSUUID, &u);
  int e = errno;
  close(fd);
  if (r < 0) return num(env, -e);
  napi_value out;
  napi_create_buffer_copy(env, 16, u.uuid, NULL, &out);
  return out;
}

/* flock(fd, op): the daemon's hold on its upper and work directories; dies with the process. */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  ARGS(2);
  I32(0, fd); I32(1, op);
  return rc(env, flock(fd, op));
}

/* nofileLimit(raise): RLIMIT_NOFILE's soft limit, first raised to the hard one when raise is
 * set (a daemon's fds grow with its clients' open files and the layers it caches). */
static napi_value js_nofile_limit(napi_env env, napi_callback_info info) {
  ARGS(1);
  I32(0, raise);
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) < 0) return num(env, -errno);
  if (raise && r.rlim_cur < r.rlim_max) {
    struct rlimit want = { r.rlim_max, r.rlim_max };
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) r.rlim_cur = r.rlim_max;
  }
  return num(env, r.rlim_cur == RLIM_INFINITY ? 1e9 : (double)r.rlim_cur);
}

static napi_value init(napi_env env, napi_value exports) {
  static const export_fn fns[] = {
    {"openBeneath", open_beneath}, {"openTreeClone", js_open_tree_clone}, {"openat", js_openat}, {"close", js_close}, {"fstatat", js_fstatat},
    {"mkdirat", js_mkdirat}, {"mknodat", js_mknodat}, {"symlinkat", js_symlinkat}, {"linkat", js_linkat},
    {"unlinkat", js_unlinkat}, {"renameat2", js_renameat2}, {"readlinkat", js_readlinkat},
    {"fchmodat", js_fchmodat}, {"fchownat", js_fchownat}, {"utimensat", js_utimensat}, {"readdir", js_readdir},
    {"getxattr", js_getxattr}, {"listxattr", js_listxattr}, {"setxattr", js_setxattr},
    {"removexattr", js_removexattr}, {"fstatfs", js_fstatfs}, {"copyFileRange", js_copy_file_range},
    {"lseek", js_lseek}, {"fallocate", js_fallocate}, {"umount2", js_umount2},
    {"fsync", js_fsync}, {"ftruncate", js_ftruncate},
    {"nameToHandle", js_name_to_handle}, {"openByHandle", js_open_by_handle}, {"fsUuid", js_fs_uuid},
    {"flock", js_flock}, {"nofileLimit", js_nofile_limit},
  };
  export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
  napi_value c;
  napi_create_object(env, &c);
  def_int(env, c, "O_PATH", O_PATH); def_int(env, c, "O_NOFOLLOW", O_NOFOLLOW); def_int(env, c, "O_DIRECTORY", O_DIRECTORY);
  def_int(env, c, "O_RDONLY", O_RDONLY); def_int(env, c, "O_WRONLY", O_WRONLY); def_int(env, c, "O_RDWR", O_RDWR);
  def_int(env, c, "O_CREAT", O_CREAT); def_int(env, c, "O_EXCL", O_EXCL); def_int(env, c, "O_TRUNC", O_TRUNC);
  def_int(env, c, "O_APPEND", O_APPEND); def_int(env, c, "O_TMPFILE", O_TMPFILE); def_int(env, c, "O_NONBLOCK", O_NONBLOCK);
  def_int(env, c, "AT_SYMLINK_NOFOLLOW", AT_SYMLINK_NOFOLLOW); def_int(env, c, "AT_REMOVEDIR", AT_REMOVEDIR);
  def_int(env, c, "AT_EMPTY_PATH", AT_EMPTY_PATH); def_int(env, c, "AT_SYMLINK_FOLLOW", AT_SYMLINK_FOLLOW);
  def_int(env, c, "RENAME_NOREPLACE", RENAME_NOREPLACE); def_int(env, c, "RENAME_EXCHANGE", RENAME_EXCHANGE);
  def_int(env, c, "RENAME_WHITEOUT", RENAME_WHITEOUT);
  def_int(env, c, "XATTR_CREATE", XATTR_CREATE); def_int(env, c, "XATTR_REPLACE", XATTR_REPLACE);
  def_int(env, c, "UTIME_NOW", UTIME_NOW); def_int(env, c, "UTIME_OMIT", UTIME_OMIT);
  def_int(env, c, "SEEK_DATA", SEEK_DATA); def_int(env, c, "SEEK_HOLE", SEEK_HOLE);
  def_int(env, c, "MNT_DETACH", MNT_DETACH); def_int(env, c, "MNT_FORCE", MNT_FORCE);
  def_int(env, c, "STAT_FIELDS", STAT_FIELDS);
  def_int(env, c, "LOCK_EX", LOCK_EX); def_int(env, c, "LOCK_NB", LOCK_NB);
  copyup_register(env, exports, c);
  rmtree_register(env, exports);
  napi_set_named_property(env, exports, "constants", c);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
