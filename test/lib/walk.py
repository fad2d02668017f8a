#!/usr/bin/env python3
"""Walks a directory tree the way ordinary programs do (scandir, lstat, readlink, read,
listxattr/getxattr without following symlinks) and prints one JSON object describing
everything a user could tell apart, keyed by path relative to the root.

Usage: walk.py ROOT

Per entry: type, mode, uid, gid, nlink, size, rdev, mtime in ms (the finest fuse-native
carries) and in ns, sha256 of the content, the link target, xattrs (hex), and for directories the listed
names. "phantoms" lists names a directory listed but lstat says do not exist (the kernel's
whiteouts in non-merged directories); "dino" lists entries whose d_ino differs from st_ino;
"links" groups paths by inode number (hard links), so two mounts compare without comparing
inode numbers themselves.
"""
import hashlib
import json
import os
import stat
import sys

TYPES = {stat.S_IFDIR: 'dir', stat.S_IFREG: 'file', stat.S_IFLNK: 'symlink', stat.S_IFIFO: 'fifo',
         stat.S_IFCHR: 'chr', stat.S_IFBLK: 'blk', stat.S_IFSOCK: 'sock'}


def xattrs(p):
    out = {}
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError as e:
        return {'!error': e.strerror}
    for n in sorted(names):
        try:
            out[n] = os.getxattr(p, n, follow_symlinks=False).hex()
        except OSError as e:
            out[n] = '!' + (e.strerror or str(e.errno))
    return out


def digest(p):
    h = hashlib.sha256()
    with open(p, 'rb', buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def main():
    root = sys.argv[1]
    entries, phantoms, dino, inodes = {}, [], [], {}

    def describe(rel, st):
        t = TYPES.get(stat.S_IFMT(st.st_mode), '?')
        p = os.path.join(root, rel) if rel else root
        e = {'type': t, 'mode': st.st_mode, 'uid': st.st_uid, 'gid': st.st_gid, 'nlink': st.st_nlink,
             'mtime_ms': st.st_mtime_ns // 1000000, 'mtime_ns': st.st_mtime_ns, 'xattrs': xattrs(p)}
        if t != 'dir':
            e['size'] = st.st_size
        if t == 'file':
            e['sha256'] = digest(p)
        if t == 'symlink':
            e['target'] = os.readlink(p)
        if t in ('chr', 'blk'):
            e['rdev'] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        inodes.setdefault(st.st_ino, []).append(rel or '.')
        return e

    def walk(rel):
        p = os.path.join(root, rel) if rel else root
        names = []
        with os.scandir(p) as it:
            listed = list(it)
        for de in sorted(listed, key=lambda d: d.name):
            crel = os.path.join(rel, de.name) if rel else de.name
            try:
                st = os.lstat(de.path)
            except FileNotFoundError:
                phantoms.append(crel)
                continue
            names.append(de.name)
            if de.inode() != st.st_ino:
                dino.append(crel)
            entries[crel] = describe(crel, st)
            if stat.S_ISDIR(st.st_mode):
                walk(crel)
        entries[rel or '.']['names'] = names

    entries['.'] = describe('', os.lstat(root))
    walk('')
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    json.dump({'entries': entries, 'phantoms': phantoms, 'dino': dino, 'links': links}, sys.stdout, sort_keys=True)


main()
