/* cg_plan.c - the plans every backend shares: where each constant lives in the weights
 * payload (and the payload's writer: the constants and the trailer the runtime reads),
 * and the static scratch arena of the activations. */
#include "cg.h"
#include "rt.h"

#include <errno.h>
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

static int put_zeros(FILE *f, uint64_t n)
{
	static const uint8_t zero[4096];
	while (n) {
		size_t k = n > sizeof zero ? sizeof zero : (size_t)n;
		if (fwrite(zero, 1, k, f) != k)
			return -1;
		n -= k;
	}
	return 0;
}

int cg_payload_write(const IrGraph *g, const CgPayload *p, const char *path, bool append,
		     const char *shown, BnErr *e)
{
	if (!shown)
		shown = path;
	FILE *f = fopen(path, append ? "r+b" : "wb");
	if (!f)
		return bn_err(e, BN_EIO, "%s: cannot open: %s", shown, strerror(errno));
	uint64_t start = 0;
	int bad = 0, err = 0;
	if (append) {
		/* the program, zero-padded to a page so that the payload can be mapped */
		if (fseeko(f, 0, SEEK_END) != 0) {
			err = errno;
			fclose(f);
			return bn_err(e, BN_EIO, "%s: cannot seek: %s", shown, strerror(err));
		}
		off_t end = ftello(f);
		start = ((uint64_t)end + 4095) / 4096 * 4096;
		bad |= put_zeros(f, start - (uint64_t)end);
	}
	uint64_t at = 0;
	for (int i = 0; i < p->n && !bad; i++) {
		const IrValue *v = &g->values[p->ids[i]];
		bad |= put_zeros(f, p->off[i] - at);
		if (!bad && v->nbytes && fwrite(v->data, 1, (size_t)v->nbytes, f) != v->nbytes)
			bad = 1;
		at = p->off[i] + v->nbytes;
	}
	if (p->tok && !bad) {
		bad |= put_zeros(f, p->tok_off - at);
		if (!bad && fwrite(p->tok, 1, (size_t)p->tok_bytes, f) != p->tok_bytes)
			bad = 1;
		at = p->tok_off + p->tok_bytes;
	}
	uint8_t tr[32];
	memcpy(tr, "BNWEIGHT", 8);
	put_le64(tr + 8, start);
	put_le64(tr + 16, p->size);
	put_le64(tr + 24, p->hash);
	if (!bad && fwrite(tr, 1, sizeof tr, f) != sizeof tr)
		bad = 1;
	/* on disk before the caller renames it into place: after a crash the old file or
	 * the complete new one, never a part */
	if (!bad && (fflush(f) != 0 || fsync(fileno(f)) != 0))
		bad = 1;
	if (bad)
		err = errno;
	if (fclose(f) != 0 && !bad) {
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
