/* cg_plan.c - the plans every backend shares: where each constant lives in the weights
 * payload (and the payload's writer: the constants and the trailer the runtime reads),
 * and the static scratch arena of the activations. */
#include "cg.h"
#include "rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the payload ---------------------------------------------------------------- */

static uint64_t align_up(uint64_t x)
{
	return (x + CG_PAYLOAD_ALIGN - 1) / CG_PAYLOAD_ALIGN * CG_PAYLOAD_ALIGN;
}

/* Constants that some node reads, back to back at 64-byte aligned offsets, in value order
 * (deterministic); the hash (rt_weights_hash, fed in pieces) covers the zero padding too. */
int cg_plan_payload(const IrGraph *g, const void *tok, uint64_t tok_bytes, CgPayload *p,
		    uint64_t *woff, BnErr *e)
{
	bool *used = calloc((size_t)g->n_values + 1, sizeof *used);
	p->ids = malloc(((size_t)g->n_values + 1) * sizeof *p->ids);
	p->off = malloc(((size_t)g->n_values + 1) * sizeof *p->off);
	if (!used || !p->ids || !p->off) {
		free(used);
		return bn_err(e, BN_ENOMEM, "codegen: out of memory");
	}
	for (int ni = 0; ni < g->n_nodes; ni++)
		for (int i = 0; i < g->nodes[ni].n_in; i++)
			used[g->nodes[ni].in[i]] = true;
	static const uint8_t zeros[CG_PAYLOAD_ALIGN];
	uint64_t off = 0;
	RtHash h;
	rt_hash_init(&h);
	p->n = 0;
	for (IrId id = 0; id < g->n_values; id++) {
		const IrValue *v = &g->values[id];
		if (v->kind != IR_VAL_CONST || !used[id])
			continue;
		uint64_t at = align_up(off);
		rt_hash_update(&h, zeros, at - off); /* padding bytes are zero */
		rt_hash_update(&h, v->data, v->nbytes);
		off = at + v->nbytes;
		if (woff)
			woff[id] = at;
		p->ids[p->n] = id;
		p->off[p->n++] = at;
	}
	free(used);
	/* the tokenizer blob last: the constants keep their offsets with or without it */
	if (tok && tok_bytes) {
		uint64_t at = align_up(off);
		const uint8_t *d = tok;
		rt_hash_update(&h, zeros, at - off);
		rt_hash_update(&h, d, tok_bytes);
		off = at + tok_bytes;
		p->tok = d;
		p->tok_off = at;
		p->tok_bytes = tok_bytes;
	}
	p->size = off;
	p->hash = rt_hash_final(&h);
	return 0;
}

/* ---- writing it ----------------------------------------------------------------- */

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The payload's file: written with large write()s, and the bytes that come unchanged from
 * the mapped model copied file to file by the kernel (no page faults on the mapping, no
 * copy through user memory) while copy_file_range works there. The disk writes start
 * every PAY_KICK bytes (sync_file_range, not waited for), so that they overlap the
 * copying and the final fsync has little left to wait for. */
enum { PAY_KICK = 32 << 20 };

typedef struct {
	int fd;
	bool cfr;	      /* copy_file_range still worth trying */
	uint64_t pos, kicked; /* the file offset; written back from kicked on not yet started */
} PayOut;

static void put_advance(PayOut *o, uint64_t n)
{
	o->pos += n;
#ifdef SYNC_FILE_RANGE_WRITE
	if (o->pos - o->kicked >= PAY_KICK) {
		/* a hint: where it fails, the fsync at the end does it all */
		(void)sync_file_range(o->fd, (off_t)o->kicked, (off_t)(o->pos - o->kicked),
				      SYNC_FILE_RANGE_WRITE);
		o->kicked = o->pos;
	}
#endif
}

static int put_bytes(PayOut *o, const void *data, uint64_t n)
{
	const uint8_t *p = data;
	while (n) {
		size_t k = n > PAY_KICK ? (size_t)PAY_KICK : (size_t)n;
		ssize_t w = write(o->fd, p, k);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		n -= (uint64_t)w;
		put_advance(o, (uint64_t)w);
	}
	return 0;
}

static int put_zeros(PayOut *o, uint64_t n)
{
	static const uint8_t zero[65536];
	while (n) {
		uint64_t k = n > sizeof zero ? sizeof zero : n;
		if (put_bytes(o, zero, k))
			return -1;
		n -= k;
	}
	return 0;
}

/* n bytes at data: from the model file when they lie in its mapping, else written. */
static int put_value(PayOut *o, const CgPayload *p, const void *data, uint64_t n)
{
	const uint8_t *d = data, *b = p->src_base;
	uint64_t done = 0;
	if (o->cfr && p->src_size && p->src_fd >= 0 && b && d >= b && n <= p->src_size &&
	    (uint64_t)(d - b) <= p->src_size - n) {
		loff_t in = (loff_t)(d - b);
		while (done < n) {
			uint64_t k = n - done > PAY_KICK ? PAY_KICK : n - done;
			ssize_t w = copy_file_range(p->src_fd, &in, o->fd, NULL, (size_t)k, 0);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				/* not here (another file system, an old kernel, a file that shrank):
				 * the rest through memory */
				o->cfr = false;
				break;
			}
			done += (uint64_t)w;
			put_advance(o, (uint64_t)w);
		}
	}
	return put_bytes(o, d + done, n - done);
}

int cg_payload_write(const IrGraph *g, const CgPayload *p, const char *path, bool append,
		     const char *shown, BnErr *e)
{
	if (!shown)
		shown = path;
	PayOut o = {.fd = open(path, append ? O_RDWR : O_WRONLY | O_CREAT | O_TRUNC, 0666),
		    .cfr = true};
	if (o.fd < 0)
		return bn_err(e, BN_EIO, "%s: cannot open: %s", shown, strerror(errno));
	uint64_t start = 0;
	int bad = 0, err = 0;
	if (append) {
		/* the program, zero-padded to a page so that the payload can be mapped */
		off_t end = lseek(o.fd, 0, SEEK_END);
		if (end < 0) {
			err = errno;
			close(o.fd);
			return bn_err(e, BN_EIO, "%s: cannot seek: %s", shown, strerror(err));
		}
		start = ((uint64_t)end + 4095) / 4096 * 4096;
		o.pos = o.kicked = (uint64_t)end;
		bad |= put_zeros(&o, start - (uint64_t)end);
	}
	uint64_t at = 0;
	for (int i = 0; i < p->n && !bad; i++) {
		const IrValue *v = &g->values[p->ids[i]];
		bad |= put_zeros(&o, p->off[i] - at);
		if (!bad && v->nbytes)
			bad |= put_value(&o, p, v->data, v->nbytes);
		at = p->off[i] + v->nbytes;
	}
	if (p->tok && !bad) {
		bad |= put_zeros(&o, p->tok_off - at);
		if (!bad)
			bad |= put_bytes(&o, p->tok, p->tok_bytes);
		at = p->tok_off + p->tok_bytes;
	}
	uint8_t tr[32];
	memcpy(tr, "BNWEIGHT", 8);
	put_le64(tr + 8, start);
	put_le64(tr + 16, p->size);
	put_le64(tr + 24, p->hash);
	if (!bad)
		bad |= put_bytes(&o, tr, sizeof tr);
	/* on disk before the caller renames it into place: after a crash the old file or
	 * the complete new one, never a part */
	if (!bad && fsync(o.fd) != 0)
		bad = 1;
	if (bad)
		err = errno;
	if (close(o.fd) != 0 && !bad) {
		bad = 1;
		err = errno;
	}
	if (bad)
		return bn_err(e, BN_EIO, "%s: cannot write the weights payload: %s", shown,
			      strerror(err ? err : EIO));
	return 0;
}

/* ---- the scratch arena -------------------------------------------------------- */

/* Static scratch offsets for every activation (but the logits, which the head writes into
 * the caller's buffer) and each node's temporary, sized for max_batch tokens: the pipeline's
 * plan (plan_memory) when it was made for max_batch tokens, else the same planner run here
 * (a graph without the pass, or --max-batch other than its batch sizes' largest: a plan for
 * fewer tokens would overflow, one for more would waste memory), so the program is the same
 * either way. */
int cg_plan_scratch(const IrGraph *g, int64_t max_batch, uint64_t *soff, uint64_t *tmp,
		    uint64_t *bytes, BnErr *e)
{
	if (g->mem.tokens != max_batch)
		return ir_mem_plan(g, max_batch, soff, tmp, bytes, e);
	/* a plan edited after the pass must not reach the program unchecked */
	int rc = ir_mem_check(g, e);
	if (rc)
		return bn_err_prefix(e, "codegen");
	for (IrId id = 0; id < g->n_values; id++)
		soff[id] = g->values[id].mem_off;
	for (IrId ni = 0; ni < g->n_nodes; ni++)
		tmp[ni] = g->nodes[ni].tmp_off;
	*bytes = g->mem.bytes;
	return 0;
}
