{
  "targets": [
    {
      "target_name": "overlayd_native",
      "sources": ["overlayd_native.c", "copyup.c", "rmtree.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_GNU_SOURCE"]
    },
    {
      "target_name": "overlayd_fuse",
      "sources": ["overlayd_fuse.c", "fuse_uring.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_GNU_SOURCE"]
    }
  ]
}
