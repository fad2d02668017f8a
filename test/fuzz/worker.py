#!/usr/bin/env python3
"""The differential fuzzer's hands: performs filesystem operations under one root and answers
each with its result or its errno, one JSON object per line in and out.

It runs as its own process so that the test process never makes a blocking syscall against a
mount it could be serving, and so that overlayd and the kernel see exactly the same syscalls.
Requests: {"op": NAME, ...args}. Replies: {"r": value} or {"e": "ENOENT"}.
Paths are relative to the root given on the command line ("" is the root itself). Names that
are no UTF-8 travel as os.fsdecode gives them (surrogateescape), both ways.
An operation with "as": {"uid", "gid", "groups", "umask"} runs with those credentials (real,
effective and filesystem ids, supplementary groups; the saved uid stays 0 so the worker can
return to root) and umask; everything else as root, with the umask the worker started with.
"""
import ctypes
import errno
import hashlib
import json
import os
import stat
import sys

ROOT = sys.argv[1]
MAX_READ = 1 << 20
handles = {}


def P(rel):
    return ROOT if rel in ("", ".") else os.path.join(ROOT, rel)


FLAGS = {
    "O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR, "O_CREAT": os.O_CREAT,
    "O_EXCL": os.O_EXCL, "O_TRUNC": os.O_TRUNC, "O_APPEND": os.O_APPEND, "O_NOFOLLOW": os.O_NOFOLLOW,
    "O_NONBLOCK": os.O_NONBLOCK, "O_DIRECTORY": os.O_DIRECTORY,
}


def flags_of(names):
    f = 0
    for n in names:
        f |= FLAGS[n]
    return f


def type_of(mode):
    if stat.S_ISDIR(mode): return "dir"
    if stat.S_ISREG(mode): return "file"
    if stat.S_ISLNK(mode): return "symlink"
    if stat.S_ISFIFO(mode): return "fifo"
    if stat.S_ISCHR(mode): return "chr"
    if stat.S_ISBLK(mode): return "blk"
    if stat.S_ISSOCK(mode): return "sock"
    return "?"


def describe(st, with_nlink=True):
    """The attributes a user can compare; nlink only for non-directories (merged dirs report 1).
    mtime in whole seconds and its nanoseconds apart (a JSON number cannot hold ns since 1970)."""
    d = {"type": type_of(st.st_mode), "mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
         "mtime": st.st_mtime_ns // 1_000_000_000, "mtimeNs": st.st_mtime_ns % 1_000_000_000}
    if not stat.S_ISDIR(st.st_mode):
        d["size"] = st.st_size
        if with_nlink:
            d["nlink"] = st.st_nlink
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        d["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    return d


def digest(data):
    return "%d:%s" % (len(data), hashlib.sha1(data).hexdigest()[:16])


def read_fd(fd):
    chunks = []
    total = 0
    while total < MAX_READ:
        b = os.pread(fd, 65536, total)
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return b"".join(chunks)


def read_file(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def xattrs_of(path, skip_private):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        return {"!": errno.errorcode.get(e.errno, str(e.errno))}
    for n in sorted(names):
        if skip_private and (n.startswith("trusted.overlay.") or n.startswith("user.overlay.")):
            continue
        if n.startswith("security."):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False).hex()
        except OSError as e:
            out[n] = "!" + errno.errorcode.get(e.errno, str(e.errno))
    return out


def walk(rel_root="", raw=False, content=True):
    """Everything a user could tell apart, per path below rel_root: type, mode, owner, size,
    content digest, link target, device numbers, xattrs, mtime (seconds and ns). `raw` keeps the
    overlay's own xattrs (for comparing upper layers on disk)."""
    out = {}

    base = P(rel_root)

    def visit(rel):
        p = os.path.join(base, rel) if rel else base
        try:
            st = os.lstat(p)
        except OSError as e:  # listed but not there: itself a difference worth showing
            out[rel or "."] = {"type": "!" + errno.errorcode.get(e.errno, str(e.errno)), "mode": 0, "uid": 0, "gid": 0, "mtime": 0}
            return
        d = describe(st)
        if not stat.S_ISDIR(st.st_mode):
            # Which paths share an inode: st_dev too, since the kernel's overlay reports each
            # layer's own st_dev when the layers lie on several filesystems (xino=off).
            d["ino"] = "%d:%d" % (st.st_dev, st.st_ino)
        try:
            if stat.S_ISREG(st.st_mode) and content:
                d["data"] = digest(read_file(p))
            if stat.S_ISLNK(st.st_mode):
                d["target"] = os.readlink(p)
        except OSError as e:
            d["data"] = "!" + errno.errorcode.get(e.errno, str(e.errno))
        d["xattrs"] = xattrs_of(p, not raw)
        out[rel or "."] = d
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(p))
            except OSError as e:
                d["list"] = "!" + errno.errorcode.get(e.errno, str(e.errno))
                names = []
            for name in names:
                visit(os.path.join(rel, name) if rel else name)

    visit("")
    return out


def paths():
    """[path, type] of every name below the root, for choosing operands."""
    out = []

    def visit(rel):
        for name in sorted(os.listdir(P(rel))):
            r = os.path.join(rel, name) if rel else name
            try:
                st = os.lstat(P(r))
            except OSError:
                continue
            out.append([r, type_of(st.st_mode)])
            if stat.S_ISDIR(st.st_mode):
                visit(r)

    visit("")
    return out


def rmrf(rel):
    """rm -rf, children in sorted order, stopping at the first error (which is the answer)."""
    p = P(rel)
    st = os.lstat(p)
    if stat.S_ISDIR(st.st_mode):
        for name in sorted(os.listdir(p)):
            rmrf(os.path.join(rel, name))
        os.rmdir(p)
    else:
        os.unlink(p)


def write_all(fd, data, off):
    b = data.encode()
    if off is None:
        return os.write(fd, b)
    return os.pwrite(fd, b, off)


def op_openw(a):
    # O_NONBLOCK: an open of a fifo must not wait for a partner (ENXIO without a reader);
    # it changes nothing for regular files.
    fd = os.open(P(a["p"]), flags_of(a["flags"]) | os.O_NONBLOCK, a.get("mode", 0o644))
    try:
        n = write_all(fd, a.get("data", ""), a.get("off")) if a.get("data") else 0
    finally:
        os.close(fd)
    return n


def op_read(a):
    p = P(a["p"])
    st = os.stat(p) if a.get("follow") else os.lstat(p)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return {"special": type_of(st.st_mode)}  # never open fifos or devices
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | (0 if a.get("follow") else os.O_NOFOLLOW))
    try:
        return digest(read_fd(fd))
    finally:
        os.close(fd)


def op_fopen(a):
    p = P(a["p"])
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            return {"special": type_of(st.st_mode)}
    except FileNotFoundError:
        pass
    fd = os.open(p, flags_of(a["flags"]) | os.O_NONBLOCK, a.get("mode", 0o644))
    handles[a["h"]] = fd
    return True


def fd_of(a):
    fd = handles.get(a["h"])
    if fd is None:
        raise OSError(errno.EBADF, "no such handle")
    return fd


def op_fclose(a):
    fd = fd_of(a)
    del handles[a["h"]]
    os.close(fd)
    return True


def op_renameat2(a):
    r = libc.renameat2(-100, os.fsencode(P(a["p"])), -100, os.fsencode(P(a["q"])), a["flags"])
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return True


libc = ctypes.CDLL(None, use_errno=True)
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_SYMLINK_NOFOLLOW = 0x100


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def timespec(t):
    """[sec, nsec], "now" or "omit" (utimensat's UTIME_NOW / UTIME_OMIT)."""
    if t == "now":
        return Timespec(0, UTIME_NOW)
    if t == "omit":
        return Timespec(0, UTIME_OMIT)
    return Timespec(t[0], t[1])


def op_utime(a):
    follow = a.get("follow", True)
    if "at" not in a:
        return os.utime(P(a["p"]), follow_symlinks=follow)
    if isinstance(a["at"], int):  # whole seconds (the fuse-native form)
        return os.utime(P(a["p"]), ns=(a["at"] * 1_000_000_000, a["mt"] * 1_000_000_000), follow_symlinks=follow)
    # utimensat itself: os.utime cannot pass UTIME_NOW or UTIME_OMIT for one time alone.
    ts = (Timespec * 2)(timespec(a["at"]), timespec(a["mt"]))
    r = libc.utimensat(-100, os.fsencode(P(a["p"])), ts, 0 if follow else AT_SYMLINK_NOFOLLOW)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


OPS = {
    "openw": op_openw,
    "read": op_read,
    "truncate": lambda a: os.truncate(P(a["p"]), a["size"]),
    "mkdir": lambda a: os.mkdir(P(a["p"]), a["mode"]),
    "rmdir": lambda a: os.rmdir(P(a["p"])),
    "unlink": lambda a: os.unlink(P(a["p"])),
    "rename": lambda a: os.rename(P(a["p"]), P(a["q"])),
    "renameat2": op_renameat2,
    "symlink": lambda a: os.symlink(a["t"], P(a["p"])),
    "link": lambda a: os.link(P(a["p"]), P(a["q"]), follow_symlinks=False),
    "chmod": lambda a: os.chmod(P(a["p"]), a["mode"]),
    "chown": lambda a: os.chown(P(a["p"]), a["uid"], a["gid"], follow_symlinks=a.get("follow", True)),
    "utime": op_utime,
    "setxattr": lambda a: os.setxattr(P(a["p"]), a["name"], a["value"].encode(), a.get("flags", 0),
                                      follow_symlinks=a.get("follow", False)),
    "removexattr": lambda a: os.removexattr(P(a["p"]), a["name"], follow_symlinks=a.get("follow", False)),
    "getxattr": lambda a: os.getxattr(P(a["p"]), a["name"], follow_symlinks=a.get("follow", False)).hex(),
    "listxattr": lambda a: sorted(n for n in os.listxattr(P(a["p"]), follow_symlinks=a.get("follow", False))
                                  if not n.startswith("security.")),
    "mkfifo": lambda a: os.mkfifo(P(a["p"]), a["mode"]),
    "mknod": lambda a: os.mknod(P(a["p"]), stat.S_IFCHR | a["mode"], os.makedev(a["major"], a["minor"])),
    "rmrf": lambda a: rmrf(a["p"]),
    "lstat": lambda a: describe(os.lstat(P(a["p"]))),
    "stat": lambda a: describe(os.stat(P(a["p"]))),
    "readdir": lambda a: sorted(os.listdir(P(a["p"]))),
    "readlink": lambda a: os.readlink(P(a["p"])),
    "access": lambda a: os.access(P(a["p"]), a["mode"], effective_ids=True, follow_symlinks=True),
    "fopen": op_fopen,
    "fwrite": lambda a: write_all(fd_of(a), a["data"], a.get("off")),
    "fread": lambda a: digest(read_fd(fd_of(a))),
    "fstat": lambda a: describe(os.fstat(fd_of(a))),
    "ftruncate": lambda a: os.ftruncate(fd_of(a), a["size"]),
    "fsync": lambda a: os.fsync(fd_of(a)),
    "fclose": op_fclose,
    "walk": lambda a: walk(a.get("p", ""), a.get("raw", False), a.get("content", True)),
    "paths": lambda a: paths(),
    "closeall": lambda a: [os.close(fd) for fd in handles.values()] and handles.clear(),
}


ROOT_GROUPS = os.getgroups()
ROOT_UMASK = os.umask(0o022)
os.umask(ROOT_UMASK)


def become(cred):
    """Takes on the credentials of an operation's "as" (gid and groups first, while still root)."""
    os.umask(cred.get("umask", ROOT_UMASK))
    os.setgroups(cred["groups"])
    os.setresgid(cred["gid"], cred["gid"], 0)
    os.setresuid(cred["uid"], cred["uid"], 0)


def back_to_root():
    os.setresuid(0, 0, 0)
    os.setresgid(0, 0, 0)
    os.setgroups(ROOT_GROUPS)
    os.umask(ROOT_UMASK)


def main():
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        a = json.loads(line)
        cred = a.get("as")
        try:
            if cred:
                become(cred)
            r = OPS[a["op"]](a)
            reply = {"r": r}
        except OSError as e:
            reply = {"e": errno.errorcode.get(e.errno, "E%d" % (e.errno or 0))}
        finally:
            if cred:
                back_to_root()
        out.write(json.dumps(reply, sort_keys=True) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
