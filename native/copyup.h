/*
 * copyup.h: the work overlayd_native hands to worker threads: the data phase of a copy-up
 * (native/copyup.c) and clearing removed trees (native/rmtree.c).
 */
#ifndef OVERLAYD_COPYUP_H
#define OVERLAYD_COPYUP_H
#include <node_api.h>
#include <sys/types.h>

/* copy_file_range of up to len bytes, through a buffer where the kernel cannot (other
 * filesystems): bytes copied, 0 at the source's end, or -errno. */
ssize_t ovl_copy_range(int in, loff_t off_in, int out, loff_t off_out, size_t len);

/* Adds copySlice, copySliceAsync and their flag constants to the addon's exports. */
void copyup_register(napi_env env, napi_value exports, napi_value constants);
/* Adds removeTreeAsync (native/rmtree.c) to the addon's exports. */
void rmtree_register(napi_env env, napi_value exports);
#endif
