/* ir_mem.c - activation memory planning: one scratch arena per forward call, every activation
 * at a static offset, its space reused once its last reader has run. The plan_memory pass
 * records a plan on the graph (IrGraph.mem, IrValue.mem_off, IrNode.tmp_off) and the verifier
 * checks it; the CPU emitter reads it, or calls ir_mem_plan itself for a graph without one,
 * so a program never depends on whether the pass ran. */
#include "ir.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Far beyond any arena a machine holds; bounding sizes by it keeps every sum below from
 * overflowing (an offset is at most the arena top plus one size plus alignment). */
#define MEM_MAX (UINT64_C(1) << 56)
/* batch_templates' bound; more tokens than this is a bad plan, not a big one. */
#define MEM_MAX_TOKENS 4096

static uint64_t align_up(uint64_t x)
{
	return (x + IR_MEM_ALIGN - 1) / IR_MEM_ALIGN * IR_MEM_ALIGN;
}

bool ir_mem_holds(const IrGraph *g, IrId id)
{
	return id >= 0 && id < g->n_values && g->values[id].kind == IR_VAL_ACT && id != g->logits;
}

bool ir_mem_value_bytes(const IrValue *v, int64_t T, uint64_t *out)
{
	int64_t n = ir_value_nelems(v, T);
	int64_t row = v->n_dims < 1 ? 0 : v->ne[0] == IR_DIM_T ? T : v->ne[0];
	if (n <= 0 || row <= 0)
		return false;
	return ir_dtype_nbytes(v->dtype, (uint64_t)n, (uint64_t)row, out) && *out <= MEM_MAX;
}

/* UINT64_MAX if the size overflows (then it never fits). Today's kernels need two: the float
 * head reads its input converted once per token (K floats), and a fused rmsnorm_quant (or
 * add_rmsnorm_quant) keeps the normed rows its quantizer reads (fuse removed them from the
 * graph). */
uint64_t ir_mem_tmp_bytes(const IrGraph *g, const IrNode *n, int64_t T)
{
	int64_t row = 0;
	if (n->op == IR_OP_MATMUL && n->n_in > 1 && n->in[1] >= 0 && n->in[1] < g->n_values)
		row = g->values[n->in[1]].ne[0];
	else if ((n->op == IR_OP_RMSNORM_QUANT || n->op == IR_OP_ADD_RMSNORM_QUANT) &&
		 n->n_in > 0 && n->in[0] >= 0 && n->in[0] < g->n_values)
		row = ir_value_row(&g->values[n->in[0]]);
	else
		return 0;
	uint64_t b;
	if (row <= 0 || T < 0 || !bn_mul_ok((uint64_t)row, 4 * (uint64_t)T, &b) || b > MEM_MAX)
		return UINT64_MAX;
	return b;
}

/* ---- planning ------------------------------------------------------------------ */

typedef struct {
	uint64_t off, size;
	int last; /* index of the last node that reads it */
} Block;

/* First fit among the live blocks (kept sorted by offset): the lowest aligned offset where
 * size bytes fit between them. */
static uint64_t first_fit(Block *live, int *n_live, uint64_t size, int last, uint64_t *top)
{
	uint64_t at = 0;
	int i = 0;
	for (; i < *n_live; i++) {
		if (live[i].off >= at + size)
			break;
		uint64_t end = align_up(live[i].off + live[i].size);
		if (end > at)
			at = end;
	}
	memmove(&live[i + 1], &live[i], (size_t)(*n_live - i) * sizeof *live);
	live[i] = (Block){at, size, last};
	(*n_live)++;
	if (at + size > *top)
		*top = at + size;
	return at;
}

/* last[id]: the index of the last node reading value id, -1 if none. */
static int *last_readers(const IrGraph *g)
{
	int *last = malloc(((size_t)g->n_values + 1) * sizeof *last);
	if (!last)
		return NULL;
	for (int i = 0; i < g->n_values; i++)
		last[i] = -1;
	for (int ni = 0; ni < g->n_nodes; ni++)
		for (int i = 0; i < g->nodes[ni].n_in; i++) {
			IrId id = g->nodes[ni].in[i];
			if (id >= 0 && id < g->n_values)
				last[id] = ni;
		}
	return last;
}

int ir_mem_plan(const IrGraph *g, int64_t T, uint64_t *voff, uint64_t *toff, uint64_t *bytes,
		BnErr *e)
{
	if (T < 1 || T > MEM_MAX_TOKENS)
		return bn_err(e, BN_EINVAL, "memory plan: %" PRId64 " tokens is out of range 1..%d", T,
			      MEM_MAX_TOKENS);
	int nv = g->n_values, nn = g->n_nodes;
	int *last = last_readers(g);
	Block *live = malloc(((size_t)nv + (size_t)nn + 1) * sizeof *live);
	if (!last || !live) {
		free(last);
		free(live);
		return bn_err(e, BN_ENOMEM, "memory plan: out of memory for %d values", nv);
	}
	for (int i = 0; i < nv; i++)
		voff[i] = IR_NO_OFF;
	int rc = 0, n_live = 0;
	uint64_t top = 0;
	for (int ni = 0; ni < nn && !rc; ni++) {
		const IrNode *n = &g->nodes[ni];
		toff[ni] = IR_NO_OFF;
		int k = 0;
		for (int i = 0; i < n_live; i++)
			if (live[i].last >= ni)
				live[k++] = live[i];
		n_live = k;
		for (int o = 0; o < n->n_out && !rc; o++) {
			IrId id = n->out[o];
			uint64_t size;
			if (!ir_mem_holds(g, id))
				continue;
			if (!ir_mem_value_bytes(&g->values[id], T, &size)) {
				rc = bn_err(e, BN_EINVAL, "memory plan: value %d '%s' (output of node %d "
							  "'%s'): its size for %" PRId64 " tokens overflows",
					    id, g->values[id].name ? g->values[id].name : "?", ni,
					    n->name ? n->name : "?", T);
				break;
			}
			voff[id] = first_fit(live, &n_live, size, last[id] > ni ? last[id] : ni, &top);
		}
		uint64_t tb = ir_mem_tmp_bytes(g, n, T);
		if (!rc && tb == UINT64_MAX)
			rc = bn_err(e, BN_EINVAL, "memory plan: node %d '%s' (%s): its temporary for %" PRId64
						  " tokens overflows",
				    ni, n->name ? n->name : "?", ir_op_name(n->op), T);
		else if (!rc && tb)
			toff[ni] = first_fit(live, &n_live, tb, ni, &top);
		if (!rc && top > MEM_MAX)
			rc = bn_err(e, BN_EINVAL, "memory plan: the arena passes %" PRIu64 " bytes at node "
						  "%d '%s'",
				    MEM_MAX, ni, n->name ? n->name : "?");
	}
	free(last);
	free(live);
	if (!rc)
		*bytes = align_up(top);
	return rc;
}

/* ---- checking a plan ----------------------------------------------------------- */

/* A value or a node's temporary: its bytes and the nodes it is live over. */
typedef struct {
	IrId id;
	bool tmp; /* id is a node (its temporary), else a value */
	int first, last;
	uint64_t off, size;
} Item;

static void item_desc(const IrGraph *g, const Item *it, char *buf, size_t n)
{
	if (it->tmp) {
		const IrNode *nd = &g->nodes[it->id];
		snprintf(buf, n, "the temporary of node %d '%s' (%s)", it->id,
			 nd->name ? nd->name : "?", ir_op_name(nd->op));
	} else {
		snprintf(buf, n, "value %d '%s'", it->id,
			 g->values[it->id].name ? g->values[it->id].name : "?");
	}
}

static int plan_fail(const IrGraph *g, BnErr *e, const char *fmt, ...) BN_PRINTF(3, 4);
static int plan_fail(const IrGraph *g, BnErr *e, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return bn_err(e, BN_EVERIFY, "memory plan (%" PRId64 " tokens, %" PRIu64 " bytes): %s",
		      g->mem.tokens, g->mem.bytes, msg);
}

/* An item's place: planned, aligned, inside the arena. */
static int check_place(const IrGraph *g, const Item *it, BnErr *e)
{
	char what[192];
	item_desc(g, it, what, sizeof what);
	if (it->off == IR_NO_OFF)
		return plan_fail(g, e, "%s has no place in the arena; a pass after plan_memory "
				       "changed the graph (run plan_memory last)",
				 what);
	if (it->off % IR_MEM_ALIGN)
		return plan_fail(g, e, "%s is at offset %" PRIu64 ", not a multiple of %d", what,
				 it->off, IR_MEM_ALIGN);
	if (it->size == UINT64_MAX || it->off > g->mem.bytes || it->size > g->mem.bytes - it->off)
		return plan_fail(g, e, "%s at offset %" PRIu64 " (%" PRIu64 " bytes) does not fit",
				 what, it->off, it->size);
	return 0;
}

int ir_mem_check(const IrGraph *g, BnErr *e)
{
	const IrMemPlan *p = &g->mem;
	if (p->tokens == 0)
		return 0;
	if (p->tokens < 0 || p->tokens > MEM_MAX_TOKENS || p->bytes % IR_MEM_ALIGN ||
	    p->bytes > MEM_MAX)
		return plan_fail(g, e, "tokens must be 1..%d and bytes a multiple of %d",
				 MEM_MAX_TOKENS, IR_MEM_ALIGN);
	int nv = g->n_values, nn = g->n_nodes;
	int *last = last_readers(g);
	Item *it = malloc(((size_t)nv + (size_t)nn + 1) * sizeof *it);
	if (!last || !it) {
		free(last);
		free(it);
		return bn_err(e, BN_ENOMEM, "memory plan: out of memory for %d values", nv);
	}
	int n = 0, rc = 0;
	for (IrId id = 0; id < nv && !rc; id++) {
		const IrValue *v = &g->values[id];
		if (!ir_mem_holds(g, id)) {
			if (v->mem_off != IR_NO_OFF)
				rc = plan_fail(g, e, "value %d '%s' is %s, which the arena does not hold, "
						     "but has offset %" PRIu64,
					       id, v->name ? v->name : "?",
					       id == g->logits		 ? "the logits"
					       : v->kind == IR_VAL_CONST ? "a constant"
									 : "a graph input",
					       v->mem_off);
			continue;
		}
		Item *x = &it[n++];
		*x = (Item){.id = id, .first = v->producer, .off = v->mem_off};
		x->last = last[id] > v->producer ? last[id] : v->producer;
		if (!ir_mem_value_bytes(v, p->tokens, &x->size))
			x->size = UINT64_MAX;
		rc = check_place(g, x, e);
	}
	for (IrId ni = 0; ni < nn && !rc; ni++) {
		uint64_t tb = ir_mem_tmp_bytes(g, &g->nodes[ni], p->tokens);
		if (!tb)
			continue;
		Item *x = &it[n++];
		*x = (Item){.id = ni, .tmp = true, .first = ni, .last = ni,
			    .off = g->nodes[ni].tmp_off, .size = tb};
		rc = check_place(g, x, e);
	}
	/* Live at the same node and overlapping bytes. Pairs: a few hundred items per model. */
	for (int i = 0; i < n && !rc; i++) {
		for (int j = i + 1; j < n && !rc; j++) {
			const Item *a = &it[i], *b = &it[j];
			if (a->first > b->last || b->first > a->last)
				continue;
			if (a->off >= b->off + b->size || b->off >= a->off + a->size)
				continue;
			char wa[192], wb[192];
			item_desc(g, a, wa, sizeof wa);
			item_desc(g, b, wb, sizeof wb);
			int at = a->first > b->first ? a->first : b->first;
			rc = plan_fail(g, e, "%s [%" PRIu64 ", %" PRIu64 ") and %s [%" PRIu64 ", %" PRIu64
					     ") overlap while both are live (at node %d '%s')",
				       wa, a->off, a->off + a->size, wb, b->off, b->off + b->size, at,
				       g->nodes[at].name ? g->nodes[at].name : "?");
		}
	}
	free(last);
	free(it);
	return rc;
}
