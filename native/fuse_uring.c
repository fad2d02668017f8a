/*
 * fuse_uring: FUSE over io_uring (fs/fuse/dev_uring.c, protocol 7.42), so a request and its
 * reply cost one io_uring_enter instead of a read(2) and a write(2) on /dev/fuse.
 *
 * The kernel keeps one queue per possible CPU and hands a request to the queue of the CPU its
 * caller runs on; every queue needs an entry registered before the ring serves anything. An
 * entry is a command (IORING_OP_URING_CMD on the /dev/fuse fd, 128-byte SQEs for the
 * fuse_uring_cmd_req) that completes when a request is copied into its buffers; the reply is
 * the next command on the same entry (COMMIT_AND_FETCH), which also waits for the next request.
 *
 * One io_uring holds the entries of every queue (the qid is in each command): overlayd answers
 * on one thread, which also runs the task work the kernel queues to copy each request in, so
 * rings per queue would only add fds to watch.
 *
 * Requests reach the session in the layout /dev/fuse gives them (in header, op header,
 * payload), and replies leave it in that layout: the ops cannot tell the two paths apart.
 * FORGET and INTERRUPT, the first requests (INIT) and notifications stay on /dev/fuse.
 */
#include "fuse_uring.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>

/* include/uapi/linux/fuse.h 7.42; Debian 12's header is 7.38. */
#ifndef FUSE_URING_IN_OUT_HEADER_SZ
#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ 128
struct fuse_uring_ent_in_out {
  uint64_t flags;
  uint64_t commit_id;
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};
struct fuse_uring_req_header {
  char in_out[FUSE_URING_IN_OUT_HEADER_SZ];
  char op_in[FUSE_URING_OP_IN_OUT_SZ];
  struct fuse_uring_ent_in_out ring_ent_in_out;
};
enum fuse_uring_cmd { FUSE_IO_URING_CMD_INVALID = 0, FUSE_IO_URING_CMD_REGISTER = 1, FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2 };
struct fuse_uring_cmd_req {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
#endif

#define SQE_SIZE 128
#define IN_HEADER ((long)sizeof(struct fuse_in_header))
#define OUT_HEADER ((long)sizeof(struct fuse_out_header))

typedef struct {
  struct fuse_uring_req_header *hdr;
  uint8_t *payload;
  struct iovec iov[2];
  uint64_t commit_id;
  uint16_t qid;
  /* Holds a request not yet answered (its commit_id is valid). */
  uint8_t busy;
} ent_t;

struct fuse_uring {
  int ring_fd, dev_fd;
  unsigned sq_entries;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
  unsigned *cq_head, *cq_tail, *cq_mask;
  struct io_uring_cqe *cqes;
  uint8_t *sqes;
  void *sq_map, *cq_map;
  size_t sq_map_sz, cq_map_sz, sqes_sz;
  /* SQEs filled in but not yet handed to the kernel. */
  unsigned unsubmitted;
  unsigned local_tail;
  ent_t *ents;
  unsigned n_ents;
  uint8_t *bufs;
  size_t bufs_sz, payload_sz, slot_sz;
};

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned min, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, submit, min, flags, NULL, 0);
}

int fuse_uring_fd(const fuse_uring_t *r) { return r->ring_fd; }

static void unmap_rings(fuse_uring_t *r) {
  if (r->sqes && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_sz);
  if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_sz);
  if (r->sq_map && r->sq_map != MAP_FAILED) munmap(r->sq_map, r->sq_map_sz);
}

void fuse_uring_close(fuse_uring_t *r) {
  if (!r) return;
  unmap_rings(r);
  /* Closing the ring makes the kernel give back the entries still waiting for requests (it
   * copies requests into their buffers from this thread's task work). The session closes the
   * ring once the connection is gone, or to fall back before any request came through it. */
  if (r->ring_fd >= 0) close(r->ring_fd);
  if (r->bufs && r->bufs != MAP_FAILED) munmap(r->bufs, r->bufs_sz);
  free(r->ents);
  free(r);
}

int fuse_uring_create(int dev_fd, unsigned queues, unsigned depth, size_t payload, fuse_uring_t **out) {
  if (queues == 0 || depth == 0 || queues > 65536 || depth > 1024 || payload == 0) return -EINVAL;
  fuse_uring_t *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->ring_fd = -1;
  r->dev_fd = dev_fd;
  r->n_ents = queues * depth;
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  /* Every entry has at most one command in flight: n_ents SQEs and CQEs are enough.
   * COOP_TASKRUN: the task work that copies a request in runs at this thread's next syscall,
   * or wakes it where it sleeps, instead of interrupting it with an IPI while it serves
   * another; SINGLE_ISSUER: only this thread submits. Without them where the kernel is older. */
  p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER;
  p.cq_entries = r->n_ents;
  int err;
  r->ring_fd = sys_setup(r->n_ents, &p);
  if (r->ring_fd < 0 && errno == EINVAL) {
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
    p.cq_entries = r->n_ents;
    r->ring_fd = sys_setup(r->n_ents, &p);
  }
  if (r->ring_fd < 0) { err = -errno; goto fail; }
  r->sq_entries = p.sq_entries;
  r->sq_map_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  r->cq_map_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    if (r->cq_map_sz > r->sq_map_sz) r->sq_map_sz = r->cq_map_sz;
    r->cq_map_sz = r->sq_map_sz;
  }
  r->sq_map = mmap(NULL, r->sq_map_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->ring_fd, IORING_OFF_SQ_RING);
  if (r->sq_map == MAP_FAILED) { err = -errno; goto fail; }
  r->cq_map = (p.features & IORING_FEAT_SINGLE_MMAP) ? r->sq_map
    : mmap(NULL, r->cq_map_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->ring_fd, IORING_OFF_CQ_RING);
  if (r->cq_map == MAP_FAILED) { err = -errno; goto fail; }
  r->sqes_sz = (size_t)p.sq_entries * SQE_SIZE;
  r->sqes = mmap(NULL, r->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->ring_fd, IORING_OFF_SQES);
  if (r->sqes == MAP_FAILED) { err = -errno; goto fail; }
  uint8_t *sq = r->sq_map, *cq = r->cq_map;
  r->sq_head = (unsigned *)(sq + p.sq_off.head);
  r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
  r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned *)(sq + p.sq_off.array);
  r->cq_head = (unsigned *)(cq + p.cq_off.head);
  r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
  r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  r->local_tail = *r->sq_tail;

  /* Header and payload of an entry side by side, page-aligned; pages are only touched (and
   * counted in RSS) as large requests and replies use them. */
  long page = sysconf(_SC_PAGESIZE);
  size_t hdr_sz = (sizeof(struct fuse_uring_req_header) + page - 1) / page * page;
  r->payload_sz = (payload + page - 1) / page * page;
  r->slot_sz = hdr_sz + r->payload_sz;
  r->bufs_sz = r->slot_sz * r->n_ents;
  r->bufs = mmap(NULL, r->bufs_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r->bufs == MAP_FAILED) { err = -errno; goto fail; }
  r->ents = calloc(r->n_ents, sizeof *r->ents);
  if (!r->ents) { err = -ENOMEM; goto fail; }
  for (unsigned i = 0; i < r->n_ents; i++) {
    ent_t *e = &r->ents[i];
    uint8_t *slot = r->bufs + (size_t)i * r->slot_sz;
    e->hdr = (struct fuse_uring_req_header *)slot;
    e->payload = slot + hdr_sz;
    e->iov[0].iov_base = e->hdr;
    e->iov[0].iov_len = sizeof(struct fuse_uring_req_header);
    e->iov[1].iov_base = e->payload;
    e->iov[1].iov_len = r->payload_sz;
    e->qid = (uint16_t)(i % queues);
  }
  *out = r;
  return 0;
fail:
  fuse_uring_close(r);
  return err;
}

/* Fills the next SQE with command `op` for entry i (commit_id for COMMIT_AND_FETCH). */
static int queue_cmd(fuse_uring_t *r, unsigned i, uint32_t op, uint64_t commit_id) {
  unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
  if (r->local_tail - head >= r->sq_entries) return -EBUSY;
  unsigned idx = r->local_tail & *r->sq_mask;
  struct io_uring_sqe *sqe = (struct io_uring_sqe *)(r->sqes + (size_t)idx * SQE_SIZE);
  memset(sqe, 0, SQE_SIZE);
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = r->dev_fd;
  sqe->cmd_op = op;
  sqe->addr = (uint64_t)(uintptr_t)r->ents[i].iov;
  sqe->len = 2;
  sqe->user_data = i;
  struct fuse_uring_cmd_req *cmd = (struct fuse_uring_cmd_req *)sqe->cmd;
  cmd->qid = r->ents[i].qid;
  cmd->commit_id = commit_id;
  r->sq_array[idx] = idx;
  r->local_tail++;
  __atomic_store_n(r->sq_tail, r->local_tail, __ATOMIC_RELEASE);
  r->unsubmitted++;
  return 0;
}

/* Hands the queued SQEs to the kernel; GETEVENTS also runs the task work that copies waiting
 * requests into their entries, so their completions show. */
static int submit(fuse_uring_t *r, unsigned flags) {
  for (;;) {
    int n = sys_enter(r->ring_fd, r->unsubmitted, 0, flags);
    if (n >= 0) {
      r->unsubmitted -= (unsigned)n < r->unsubmitted ? (unsigned)n : r->unsubmitted;
      return 0;
    }
    if (errno != EINTR) return -errno;
  }
}

/* The next completion, if any: 1 and *cqe, else 0. */
static int reap(fuse_uring_t *r, struct io_uring_cqe *cqe) {
  unsigned head = *r->cq_head;
  if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) return 0;
  *cqe = r->cqes[head & *r->cq_mask];
  __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
  return 1;
}

int fuse_uring_register(fuse_uring_t *r) {
  for (unsigned i = 0; i < r->n_ents; i++) {
    int err = queue_cmd(r, i, FUSE_IO_URING_CMD_REGISTER, 0);
    if (err) return err;
  }
  int err = submit(r, 0);
  if (err) return err;
  /* A refused registration completes at once; an accepted one only when a request comes. */
  int first = 0, refused = 0;
  struct io_uring_cqe cqe;
  while (reap(r, &cqe)) {
    if (cqe.res < 0) { if (!first) first = cqe.res; refused++; }
  }
  int taken = (int)r->n_ents - refused;
  return taken > 0 ? taken : first ? first : -EIO;
}

int fuse_uring_flush(fuse_uring_t *r) {
  return r->unsubmitted ? submit(r, 0) : 0;
}

long fuse_uring_next(fuse_uring_t *r, uint8_t *buf, size_t len) {
  struct io_uring_cqe cqe;
  /* The replies committed since the last call go out first, in the same syscall that looks
   * for the next request: one io_uring_enter per request where /dev/fuse takes a write and a
   * read. */
  if (r->unsubmitted || !reap(r, &cqe)) {
    int err = submit(r, IORING_ENTER_GETEVENTS);
    if (err) return err;
    if (!reap(r, &cqe)) return -EAGAIN;
  }
  if (cqe.user_data >= r->n_ents) return -EIO;
  ent_t *e = &r->ents[cqe.user_data];
  if (cqe.res < 0) return cqe.res;
  const struct fuse_in_header *in = (const struct fuse_in_header *)e->hdr->in_out;
  uint32_t payload = e->hdr->ring_ent_in_out.payload_sz;
  long op_in = (long)in->len - IN_HEADER - (long)payload;
  long total = IN_HEADER + op_in + (long)payload;
  e->busy = 1;
  e->commit_id = e->hdr->ring_ent_in_out.commit_id;
  if (op_in < 0 || op_in > FUSE_URING_OP_IN_OUT_SZ || payload > r->payload_sz || (size_t)total > len) {
    /* Nothing the session could decode: answered here, so the entry comes back. */
    struct fuse_out_header oh = { sizeof oh, -EIO, in->unique };
    fuse_uring_reply(r, (const uint8_t *)&oh, sizeof oh);
    return -EAGAIN;
  }
  memcpy(buf, in, IN_HEADER);
  memcpy(buf + IN_HEADER, e->hdr->op_in, op_in);
  memcpy(buf + IN_HEADER + op_in, e->payload, payload);
  return total;
}

long fuse_uring_reply(fuse_uring_t *r, const uint8_t *buf, size_t len) {
  if (len < (size_t)OUT_HEADER) return -EINVAL;
  const struct fuse_out_header *oh = (const struct fuse_out_header *)buf;
  unsigned i = 0;
  if (oh->unique != 0) {
    while (i < r->n_ents && !(r->ents[i].busy && r->ents[i].commit_id == oh->unique)) i++;
  } else {
    i = r->n_ents;
  }
  if (i == r->n_ents) {
    ssize_t n;
    do { n = write(r->dev_fd, buf, len); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
  }
  ent_t *e = &r->ents[i];
  size_t payload = len - OUT_HEADER;
  if (payload > r->payload_sz) return -EINVAL;
  memcpy(e->hdr->in_out, oh, OUT_HEADER);
  memcpy(e->payload, buf + OUT_HEADER, payload);
  e->hdr->ring_ent_in_out.payload_sz = (uint32_t)payload;
  e->busy = 0;
  return queue_cmd(r, i, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, e->commit_id);
}
