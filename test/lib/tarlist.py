#!/usr/bin/env python3
"""What a tar archive holds, as JSON, for comparing what two mount programs produced.

    tarlist.py FILE            the entries of one tar (podman/docker export)
    tarlist.py --layers FILE   a docker-archive (podman save, docker save): the entries of each
                               layer, in the order of manifest.json's Layers

An entry: name, type, mode, uid, gid, size, link target, device numbers, SHA-256 of the content
and the pax xattrs. Not mtime (two runs write files at different times), nor user and group
names (the engines fill them from different places). Sorted by name.
"""
import hashlib
import io
import json
import sys
import tarfile


def entries(tf):
    out = []
    for m in tf.getmembers():
        e = {
            'name': m.name.rstrip('/') or '.',
            'type': m.type.decode() if isinstance(m.type, bytes) else m.type,
            'mode': oct(m.mode),
            'uid': m.uid,
            'gid': m.gid,
        }
        if m.isreg():
            data = tf.extractfile(m).read()
            e['size'] = m.size
            e['sha256'] = hashlib.sha256(data).hexdigest()
        if m.issym() or m.islnk():
            e['link'] = m.linkname
        if m.ischr() or m.isblk():
            e['dev'] = [m.devmajor, m.devminor]
        xattrs = {k: v for k, v in m.pax_headers.items() if 'xattr' in k}
        if xattrs:
            e['xattrs'] = xattrs
        out.append(e)
    return sorted(out, key=lambda e: e['name'])


def main(argv):
    if argv[1] == '--layers':
        with tarfile.open(argv[2]) as outer:
            manifest = json.load(outer.extractfile('manifest.json'))
            layers = []
            for name in manifest[0]['Layers']:
                with tarfile.open(fileobj=io.BytesIO(outer.extractfile(name).read())) as inner:
                    layers.append(entries(inner))
            json.dump(layers, sys.stdout, indent=1)
    else:
        with tarfile.open(argv[1]) as tf:
            json.dump(entries(tf), sys.stdout, indent=1)


main(sys.argv)
