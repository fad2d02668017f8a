/*
 * fuse_uring.h: FUSE over io_uring (Linux 6.14+, protocol 7.42), the ring side of the kernel
 * transport. See fuse_uring.c.
 */
#ifndef OVERLAYD_FUSE_URING_H
#define OVERLAYD_FUSE_URING_H
#include <stddef.h>
#include <stdint.h>

typedef struct fuse_uring fuse_uring_t;

/* A ring for the connection on dev_fd: `queues` queues of `depth` entries, each with a payload
 * buffer of `payload` bytes. 0 and *out, or -errno. Nothing is registered yet. */
int fuse_uring_create(int dev_fd, unsigned queues, unsigned depth, size_t payload, fuse_uring_t **out);
/* The io_uring fd: readable while completions wait. */
int fuse_uring_fd(const fuse_uring_t *r);
/* Registers every entry (only after INIT is answered): how many the kernel took, or -errno of
 * the first refusal when it took none. */
int fuse_uring_register(fuse_uring_t *r);
/* One request as /dev/fuse would have given it (in header, op header, payload) into buf: its
 * length, -EAGAIN when none waits, or -errno for an entry the kernel gave back (torn down).
 * Sends the commits made since the last call first. */
long fuse_uring_next(fuse_uring_t *r, uint8_t *buf, size_t len);
/* A reply (out header and payload, as written to /dev/fuse): committed on the entry holding its
 * request, which then fetches the next; written to /dev/fuse where no entry holds it (requests
 * read there, notifications). 0 or -errno. A commit goes to the kernel with the next
 * fuse_uring_next or fuse_uring_flush. */
long fuse_uring_reply(fuse_uring_t *r, const uint8_t *buf, size_t len);
/* Hands the commits made since the last fuse_uring_next to the kernel: 0 or -errno. */
int fuse_uring_flush(fuse_uring_t *r);
/* Closes the ring (the kernel gives back the entries) and frees it. */
void fuse_uring_close(fuse_uring_t *r);

#endif
