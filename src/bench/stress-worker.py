#!/usr/bin/env python3
"""One worker of the leak stress run (src/bench/stress.ts): mixed file system operations on
a mounted overlay, in a process of its own (the process serving the mount never waits on it).

usage: stress-worker.py ROOT SLOT SEED
ROOT is the merged directory; SLOT the worker's own subtree wSLOT/, which only it changes;
shared/, big/ are only read, hot/ is read and appended to by every worker at once.
Signals: SIGUSR1 pauses (every fd closed, then {"t":"paused"} on stdout), SIGUSR2 resumes,
SIGTERM stops after the current operation ({"t":"final",...}, exit 0).
Stdout: one JSON object per line: stats every second, each unexpected error as it happens.

Every OSError is unexpected unless the operation lists its errno as expected (EXDEV for the
rename of a directory with lower content): the worker is alone in its subtree, so it knows
what exists. Data read back is checked against what was written (or the lower layer's pattern).
"""
import errno
import json
import mmap
import os
import random
import shutil
import signal
import stat
import sys
import time

ROOT = sys.argv[1]
SLOT = int(sys.argv[2])
rng = random.Random(int(sys.argv[3]))

# Keep in step with src/bench/stress.ts (the layer builder).
SHARED_DIRS = 20
SHARED_FILES = 100
BIG_FILES = 4
BIG_BLOCK = 65536
HOT_FILES = 8
HOT_BASE = 256 << 10
TREE_DIRS = 10
TREE_FILES = 20
SUB_FILES = 5
RO_FILES = 30
POOL = 100        # new/nI
DIR_POOL = 10     # dirs/dI
LINK_POOL = 20    # hl/lI
SYM_POOL = 20     # sym/sI
MAX_GROW = 256 << 10

W = f"w{SLOT}"


def P(rel):
    return os.path.join(ROOT, rel)


def lower_line(rel):
    return (rel + "\n").encode()


def big_block(name, b):
    return (f"{name}:{b:08d}:".ljust(64, ".")).encode() * (BIG_BLOCK // 64)


class Mismatch(Exception):
    pass


def check_lower(rel, data):
    """A lower file that nobody changes: its path and a newline, repeated."""
    line = lower_line(rel)
    want = (line * (len(data) // len(line) + 1))[: len(data)]
    if data != want or len(data) == 0:
        raise Mismatch(f"{rel}: {len(data)} bytes, not the lower layer's content")


def read_all(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_file(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, sync=False):
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def payload(tag, n):
    seed = f"{tag}:{rng.random()}\n".encode()
    return (seed * (n // len(seed) + 1))[:n]


class Worker:
    def __init__(self):
        self.ops = {}
        self.expected = {}
        self.unexpected = 0
        self.reported = 0
        self.paused = False
        self.stop = False
        self.want_pause = False
        # new/nI: content we wrote (the model); the worker alone changes its subtree.
        self.model = {}
        self.held = []

    # ---- bookkeeping ----

    def emit(self, obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def stats(self, kind="stats"):
        self.emit({"t": kind, "slot": SLOT, "ops": self.ops, "total": sum(self.ops.values()),
                   "expected": self.expected, "unexpected": self.unexpected})

    def error(self, op, err):
        self.unexpected += 1
        if self.reported < 50:
            self.reported += 1
            if isinstance(err, OSError):
                name = errno.errorcode.get(err.errno, str(err.errno))
                self.emit({"t": "error", "slot": SLOT, "op": op, "errno": name, "msg": str(err)})
            elif isinstance(err, Mismatch):
                self.emit({"t": "error", "slot": SLOT, "op": op, "errno": "EDATA", "msg": str(err)})
            else:
                self.emit({"t": "error", "slot": SLOT, "op": op, "errno": "BUG", "msg": f"{type(err).__name__}: {err}"})

    def close_held(self):
        for fd in self.held:
            try:
                os.close(fd)
            except OSError as e:
                self.error("close", e)
        self.held = []

    # ---- set-up ----

    def setup(self):
        for d in ("new", "dirs", "hl", "sym", "tmp"):
            os.makedirs(P(f"{W}/{d}"), exist_ok=True)
        self.resync()

    def resync(self):
        """Rebuild the model of new/ from what the mount shows (after an unexpected error)."""
        self.model = {}
        for n in os.listdir(P(f"{W}/new")):
            self.model[n] = read_all(P(f"{W}/new/{n}"))
        for j in range(TREE_DIRS):
            os.makedirs(P(f"{W}/tree/s{j}"), exist_ok=True)

    def pick_tree_file(self):
        j = rng.randrange(TREE_DIRS)
        d = f"{W}/tree/s{j}"
        names = [n for n in os.listdir(P(d)) if n != "sub"]
        if not names:
            return None
        return f"{d}/{rng.choice(names)}"

    def pick_own_file(self):
        r = rng.random()
        if r < 0.4 and self.model:
            return f"{W}/new/{rng.choice(sorted(self.model))}"
        if r < 0.7:
            return f"{W}/ro/r{rng.randrange(RO_FILES)}"
        return self.pick_tree_file() or f"{W}/ro/r0"

    # ---- operations (weights in OPS below) ----

    def op_walk_shared(self):
        d = f"shared/d{rng.randrange(SHARED_DIRS):02d}"
        n = 0
        with os.scandir(P(d)) as it:
            for e in it:
                if e.name.startswith("h"):
                    raise Mismatch(f"{d}/{e.name}: a whited-out name is listed")
                e.stat(follow_symlinks=False)
                n += 1
        if n != SHARED_FILES:
            raise Mismatch(f"{d}: {n} entries, {SHARED_FILES} expected")

    def op_walk_own(self):
        for dirpath, dirnames, filenames in os.walk(P(W)):
            for n in dirnames + filenames:
                os.lstat(os.path.join(dirpath, n))

    def op_opaque(self):
        names = sorted(os.listdir(P("shared/opq")))
        if any(n.startswith("a") for n in names) or len(names) != 10:
            raise Mismatch(f"shared/opq shows {names[:5]}... ({len(names)}): not opaque")
        rel = f"shared/opq/{rng.choice(names)}"
        check_lower(rel, read_all(P(rel)))

    def op_read_shared(self):
        rel = f"shared/d{rng.randrange(SHARED_DIRS):02d}/f{rng.randrange(SHARED_FILES):03d}"
        check_lower(rel, read_all(P(rel)))
        os.stat(P(rel))

    def op_read_links(self):
        # lower hard links (one inode in l2) and symlinks in l1
        for n in ("x", "x1", "x2", "x3"):
            data = read_all(P(f"shared/links/{n}"))
            check_lower("shared/links/x", data)
        for i in range(3):
            t = os.readlink(P(f"shared/sym/s{i}"))
            data = read_all(P(f"shared/sym/s{i}"))
            check_lower(os.path.normpath(os.path.join("shared/sym", t)), data)

    def op_read_big(self):
        i = rng.randrange(BIG_FILES)
        name = f"big{i}"
        fd = os.open(P(f"big/{name}"), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            blocks = size // BIG_BLOCK
            b = rng.randrange(blocks)
            n = min(rng.randrange(1, 17), blocks - b)
            data = os.pread(fd, n * BIG_BLOCK, b * BIG_BLOCK)
            for k in range(n):
                if data[k * BIG_BLOCK:(k + 1) * BIG_BLOCK] != big_block(name, b + k):
                    raise Mismatch(f"big/{name} block {b + k}")
        finally:
            os.close(fd)

    def op_mmap(self):
        if rng.random() < 0.5 or not self.model:
            i = rng.randrange(BIG_FILES)
            name = f"big{i}"
            fd = os.open(P(f"big/{name}"), os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                    for _ in range(4):
                        b = rng.randrange(size // BIG_BLOCK)
                        if m[b * BIG_BLOCK:(b + 1) * BIG_BLOCK] != big_block(name, b):
                            raise Mismatch(f"mmap big/{name} block {b}")
            finally:
                os.close(fd)
        else:
            n = rng.choice(sorted(self.model))
            want = self.model[n]
            if not want:
                return
            fd = os.open(P(f"{W}/new/{n}"), os.O_RDONLY)
            try:
                with mmap.mmap(fd, len(want), prot=mmap.PROT_READ) as m:
                    if m[:] != want:
                        raise Mismatch(f"mmap {W}/new/{n}")
            finally:
                os.close(fd)

    def op_hot_read(self):
        # Several fds on one file at once, here and in the other workers: passthrough shares
        # one backing id per inode.
        rel = f"hot/h{rng.randrange(HOT_FILES)}"
        fds = [os.open(P(rel), os.O_RDONLY) for _ in range(rng.randrange(1, 5))]
        try:
            off = 0
            while True:
                got = 0
                for fd in fds:
                    b = os.pread(fd, 65536, off)
                    got = max(got, len(b))
                if got == 0:
                    break
                off += got
        finally:
            for fd in fds:
                os.close(fd)

    def op_hot_append(self):
        rel = f"hot/h{rng.randrange(HOT_FILES)}"
        write_file(P(rel), payload(rel, 4096), os.O_WRONLY | os.O_APPEND)
        if os.stat(P(rel)).st_size > 4 * HOT_BASE:
            os.truncate(P(rel), HOT_BASE)

    def op_create(self):
        n = f"n{rng.randrange(POOL)}"
        data = payload(n, rng.choice([0, 100, 4096, 20000, 65536]))
        write_file(P(f"{W}/new/{n}"), data, sync=rng.random() < 0.3)
        self.model[n] = data
        got = read_all(P(f"{W}/new/{n}"))
        if got != data:
            raise Mismatch(f"{W}/new/{n}: read back {len(got)} bytes of {len(data)} written")

    def op_read_upper(self):
        if not self.model:
            return
        n = rng.choice(sorted(self.model))
        got = read_all(P(f"{W}/new/{n}"))
        if got != self.model[n]:
            raise Mismatch(f"{W}/new/{n}: {len(got)} bytes, {len(self.model[n])} expected")

    def op_append(self):
        # copy-up by append (lower files), or append to an upper one
        rel = self.pick_own_file()
        add = payload(rel, rng.choice([1, 100, 5000]))
        write_file(P(rel), add, os.O_WRONLY | os.O_APPEND)
        n = os.path.basename(rel)
        if rel.startswith(f"{W}/new/"):
            self.model[n] = self.model[n] + add
        if os.stat(P(rel)).st_size > MAX_GROW:
            os.truncate(P(rel), 0)
            if rel.startswith(f"{W}/new/"):
                self.model[n] = b""

    def op_truncate(self):
        rel = self.pick_own_file()
        size = rng.randrange(0, 8192)
        if rng.random() < 0.5:
            os.truncate(P(rel), size)
        else:
            fd = os.open(P(rel), os.O_RDWR)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
        if rel.startswith(f"{W}/new/"):
            n = os.path.basename(rel)
            old = self.model[n]
            self.model[n] = old[:size] + b"\0" * max(0, size - len(old))
        if os.stat(P(rel)).st_size != size:
            raise Mismatch(f"{rel}: size {os.stat(P(rel)).st_size} after truncate to {size}")

    def op_rename_file(self):
        dst = f"n{rng.randrange(POOL)}"
        if rng.random() < 0.3:
            # a lower file moved into new/: copy-up, whiteout at the old name
            src = self.pick_tree_file()
            if src is None:
                return
            os.rename(P(src), P(f"{W}/new/{dst}"))
            self.model[dst] = read_all(P(f"{W}/new/{dst}"))
            return
        if not self.model:
            return
        src = rng.choice(sorted(self.model))
        os.rename(P(f"{W}/new/{src}"), P(f"{W}/new/{dst}"))
        self.model[dst] = self.model.pop(src)

    def op_rename_dir(self):
        have = set(os.listdir(P(f"{W}/dirs")))
        free = [f"d{i}" for i in range(DIR_POOL) if f"d{i}" not in have]
        if have and free and rng.random() < 0.7:
            src = rng.choice(sorted(have))
            dst = rng.choice(free)
            os.rename(P(f"{W}/dirs/{src}"), P(f"{W}/dirs/{dst}"))
            if len(os.listdir(P(f"{W}/dirs/{dst}"))) != 4:
                raise Mismatch(f"{W}/dirs/{dst}: contents lost in rename")
        elif free:
            d = P(f"{W}/dirs/{free[0]}")
            os.mkdir(d)
            for k in range(3):
                write_file(os.path.join(d, f"f{k}"), payload(d, 1000))
            os.mkdir(os.path.join(d, "sub"))
        else:
            shutil.rmtree(P(f"{W}/dirs/{rng.choice(sorted(have))}"))

    def op_rename_lowerdir(self):
        # without redirect_dir, a directory with lower content cannot move: EXDEV
        try:
            os.rename(P(f"{W}/ldir"), P(f"{W}/ldir2"))
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            self.expected["EXDEV"] = self.expected.get("EXDEV", 0) + 1
            return
        os.rename(P(f"{W}/ldir2"), P(f"{W}/ldir"))
        raise Mismatch(f"{W}/ldir: a merged directory was renamed (EXDEV expected)")

    def op_unlink(self):
        if rng.random() < 0.5 and self.model:
            n = rng.choice(sorted(self.model))
            os.unlink(P(f"{W}/new/{n}"))
            del self.model[n]
        else:
            rel = self.pick_tree_file()
            if rel is not None:
                os.unlink(P(rel))

    def op_rmtree(self):
        # rm -rf of a lower subtree (whiteouts, an opaque dir once recreated), and recreate it
        j = rng.randrange(TREE_DIRS)
        d = P(f"{W}/tree/s{j}")
        shutil.rmtree(d)
        if os.path.lexists(d):
            raise Mismatch(f"{d} still there after rm -rf")
        os.mkdir(d)
        for k in range(TREE_FILES):
            write_file(os.path.join(d, f"f{k}"), payload(d, 200 + 50 * k))
        os.mkdir(os.path.join(d, "sub"))
        for k in range(SUB_FILES):
            write_file(os.path.join(d, "sub", f"g{k}"), payload(d, 100))

    def op_hardlink(self):
        dst = P(f"{W}/hl/l{rng.randrange(LINK_POOL)}")
        if os.path.lexists(dst):
            os.unlink(dst)
        if rng.random() < 0.5 and self.model:
            src = P(f"{W}/new/{rng.choice(sorted(self.model))}")
        else:
            rel = self.pick_tree_file()  # a lower file: copied up to be linked
            if rel is None:
                return
            src = P(rel)
        os.link(src, dst)
        a, b = os.lstat(src), os.lstat(dst)
        if a.st_ino != b.st_ino or b.st_nlink < 2:
            raise Mismatch(f"link {dst}: ino {a.st_ino}/{b.st_ino}, nlink {b.st_nlink}")
        read_all(dst)

    def op_symlink(self):
        p = P(f"{W}/sym/s{rng.randrange(SYM_POOL)}")
        if os.path.lexists(p):
            os.unlink(p)
        target = rng.choice(["../ro/r1", "../../shared/d00/f000", "../new/n1", "nowhere", "../tree/s0/f0"])
        os.symlink(target, p)
        got = os.readlink(p)
        if got != target:
            raise Mismatch(f"{p}: readlink gives {got!r} for a symlink to {target!r} just made")
        try:
            os.stat(p)
        except FileNotFoundError:
            pass  # a dangling target is fine
        os.lstat(p)

    def op_xattr(self):
        rel = self.pick_own_file()
        val = payload("x", rng.randrange(1, 200))
        os.setxattr(P(rel), "user.stress", val)
        if os.getxattr(P(rel), "user.stress") != val:
            raise Mismatch(f"{rel}: xattr read back differs")
        if "user.stress" not in os.listxattr(P(rel)):
            raise Mismatch(f"{rel}: xattr not listed")
        if rng.random() < 0.3:
            os.removexattr(P(rel), "user.stress")

    def op_unlinked_open(self):
        r = rng.random()
        if r < 0.5:
            # an upper file unlinked while open, then written, read, truncated through the fd
            p = P(f"{W}/tmp/u{rng.randrange(4)}")
            data = payload(p, 10000)
            write_file(p, data)
            fd = os.open(p, os.O_RDWR)
            try:
                os.unlink(p)
                more = payload(p, 5000)
                os.pwrite(fd, more, len(data))
                if os.fstat(fd).st_size != len(data) + len(more):
                    raise Mismatch(f"{p}: size after unlink and write")
                if os.pread(fd, len(data) + len(more), 0) != data + more:
                    raise Mismatch(f"{p}: data after unlink")
                os.ftruncate(fd, 100)
                with mmap.mmap(fd, 100, prot=mmap.PROT_READ) as m:
                    if m[:] != data[:100]:
                        raise Mismatch(f"{p}: mmap after unlink")
            finally:
                os.close(fd)
        else:
            # a lower file: open (read-only, or read-write: copy-up), remove its name, go on
            rel = self.pick_tree_file()
            if rel is None:
                return
            rw = r < 0.75
            fd = os.open(P(rel), os.O_RDWR if rw else os.O_RDONLY)
            try:
                before = os.fstat(fd).st_size
                os.unlink(P(rel))
                if rw:
                    os.pwrite(fd, b"tail", before)
                    before += 4
                got = os.pread(fd, before + 10, 0)
                if len(got) != before:
                    raise Mismatch(f"{rel}: {len(got)} bytes after unlink, {before} expected")
                os.fstat(fd)
            finally:
                os.close(fd)

    def op_many_fds(self):
        for _ in range(rng.randrange(50, 250)):
            r = rng.random()
            if r < 0.4:
                rel = f"shared/d{rng.randrange(SHARED_DIRS):02d}/f{rng.randrange(SHARED_FILES):03d}"
                fd = os.open(P(rel), os.O_RDONLY)
            elif r < 0.6:
                fd = os.open(P(f"hot/h{rng.randrange(HOT_FILES)}"), os.O_RDONLY)
            elif r < 0.8 and self.model:
                fd = os.open(P(f"{W}/new/{rng.choice(sorted(self.model))}"), os.O_RDWR)
            else:
                fd = os.open(P(f"{W}/ro/r{rng.randrange(RO_FILES)}"), os.O_RDONLY)
            self.held.append(fd)
            os.pread(fd, 1, 0)
        # a directory or two held open too
        self.held.append(os.open(P("shared"), os.O_RDONLY | os.O_DIRECTORY))
        self.close_held()

    def op_chmod_utime(self):
        rel = self.pick_own_file()
        mode = rng.choice([0o600, 0o640, 0o644, 0o664])
        os.chmod(P(rel), mode)
        ns = rng.randrange(1 << 40) * 1000
        os.utime(P(rel), ns=(ns, ns))
        st = os.stat(P(rel))
        if stat.S_IMODE(st.st_mode) != mode:
            raise Mismatch(f"{rel}: mode {oct(st.st_mode)} after chmod {oct(mode)}")

    def op_statfs(self):
        os.statvfs(ROOT)
        os.listdir(P(f"{W}/hl"))
        os.listdir(P(f"{W}/sym"))

    # ---- the loop ----

    def run(self):
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "want_pause", True))
        signal.signal(signal.SIGUSR2, lambda *_: setattr(self, "want_pause", False))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop", True))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.setup()
        only = os.environ.get("STRESS_OPS")  # for debugging: a comma-separated subset
        ops = [(getattr(self, f"op_{name}"), name, w) for name, w in OPS if not only or name in only.split(",")]
        weights = [o[2] for o in ops]
        last = time.monotonic()
        while not self.stop:
            if self.want_pause:
                self.close_held()
                self.stats()
                self.emit({"t": "paused", "slot": SLOT})
                while self.want_pause and not self.stop:
                    time.sleep(0.05)
                self.emit({"t": "resumed", "slot": SLOT})
                continue
            fn, name, _ = rng.choices(ops, weights)[0]
            try:
                fn()
                self.ops[name] = self.ops.get(name, 0) + 1
            except Exception as e:  # noqa: BLE001 - everything is reported
                self.close_held()
                self.error(name, e)
                try:
                    self.resync()
                except Exception as e2:  # noqa: BLE001
                    self.error("resync", e2)
                    time.sleep(0.1)
            now = time.monotonic()
            if now - last >= 1:
                last = now
                self.stats()
        self.close_held()
        self.stats("final")


OPS = [
    ("walk_shared", 6), ("walk_own", 1), ("opaque", 1), ("read_shared", 10), ("read_links", 2),
    ("read_big", 4), ("mmap", 2), ("hot_read", 6), ("hot_append", 2), ("create", 8),
    ("read_upper", 8), ("append", 5), ("truncate", 3), ("rename_file", 4), ("rename_dir", 2),
    ("rename_lowerdir", 1), ("unlink", 3), ("rmtree", 1), ("hardlink", 3), ("symlink", 3),
    ("xattr", 3), ("unlinked_open", 3), ("many_fds", 1), ("chmod_utime", 3), ("statfs", 2),
]

if __name__ == "__main__":
    Worker().run()
