/* ir_kv.c - the KV cache layout: where each attention layer's K and V rows live in the one
 * f16 cache of a running model (per layer [n_seq][n_ctx][width] for K, then for V). The
 * plan_kv pass records it in the attention nodes (kv_off, kv_width); codegen reads it from
 * there, or makes it here when the pass did not run: the same layout either way. */
#include "ir.h"

#include <inttypes.h>
#include <stdlib.h>

enum { KV_MAX_LAYER = 65536 };

static int node_fail(const IrGraph *g, IrId ni, BnErr *e, const char *why)
{
	return bn_err(e, BN_EVERIFY, "node %d '%s' (attention): %s", ni,
		      g->nodes[ni].name ? g->nodes[ni].name : "?", why);
}

static int64_t node_width(const IrNode *n)
{
	return ir_attr_int(n, "n_head_kv", 1) * ir_attr_int(n, "head_dim", 1);
}

/* n_layer and max_heads from the attention nodes; off and width allocated, zeroed. */
static int kv_alloc(const IrGraph *g, IrKvPlan *p, BnErr *e)
{
	*p = (IrKvPlan){0};
	for (IrId ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_ATTENTION)
			continue;
		int64_t L = ir_attr_int(n, "layer", 0), nh = ir_attr_int(n, "n_head", 1);
		if (L < 0 || L >= KV_MAX_LAYER)
			return node_fail(g, ni, e, "layer attribute out of range");
		if (L + 1 > p->n_layer)
			p->n_layer = L + 1;
		if (nh > p->max_heads)
			p->max_heads = nh;
	}
	p->off = calloc((size_t)p->n_layer + 1, sizeof *p->off);
	p->width = calloc((size_t)p->n_layer + 1, sizeof *p->width);
	if (!p->off || !p->width) {
		ir_kv_plan_free(p);
		return bn_err(e, BN_ENOMEM, "out of memory planning the KV cache");
	}
	return 0;
}

int ir_kv_plan(const IrGraph *g, IrKvPlan *p, BnErr *e)
{
	int rc = kv_alloc(g, p, e);
	if (rc)
		return rc;
	for (IrId ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_ATTENTION)
			continue;
		int64_t L = ir_attr_int(n, "layer", 0), w = node_width(n);
		if (p->width[L] && p->width[L] != w) {
			ir_kv_plan_free(p);
			return node_fail(g, ni, e, "two attention nodes share a layer with other widths");
		}
		p->width[L] = w;
	}
	for (int64_t L = 0; L < p->n_layer; L++) {
		p->off[L] = p->elems;
		p->elems += 2 * p->width[L];
	}
	p->elems += p->elems % 2; /* the scores start on a float boundary */
	return 0;
}

int ir_kv_read(const IrGraph *g, IrKvPlan *p, bool *found, BnErr *e)
{
	*found = false;
	bool any = false;
	for (IrId ni = 0; ni < g->n_nodes && !any; ni++) {
		const IrNode *n = &g->nodes[ni];
		any = n->op == IR_OP_ATTENTION &&
		      (ir_attr_find(n, "kv_off") || ir_attr_find(n, "kv_width"));
	}
	if (!any)
		return 0;
	IrKvPlan q;
	int rc = kv_alloc(g, &q, e);
	if (rc)
		return rc;
	for (IrId ni = 0; ni < g->n_nodes && !rc; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_ATTENTION)
			continue;
		const IrAttr *ao = ir_attr_find(n, "kv_off"), *aw = ir_attr_find(n, "kv_width");
		int64_t L = ir_attr_int(n, "layer", 0);
		if (!ao || !aw || ao->type != IR_ATTR_INT || aw->type != IR_ATTR_INT)
			rc = node_fail(g, ni, e, "the KV plan (plan_kv) is incomplete: integer attributes "
						 "kv_off and kv_width are needed on every attention");
		else if (aw->i != node_width(n))
			rc = bn_err(e, BN_EVERIFY, "node %d '%s' (attention): kv_width %" PRId64
				    " is not n_head_kv * head_dim = %" PRId64,
				    ni, n->name ? n->name : "?", aw->i, node_width(n));
		else if (ao->i < 0 || ao->i > (INT64_C(1) << 40))
			rc = bn_err(e, BN_EVERIFY, "node %d '%s' (attention): kv_off %" PRId64
				    " is out of range", ni, n->name ? n->name : "?", ao->i);
		if (rc)
			break;
		q.off[L] = ao->i;
		q.width[L] = aw->i;
		if (ao->i + 2 * aw->i > q.elems)
			q.elems = ao->i + 2 * aw->i;
	}
	/* no two layers' K and V ranges may overlap (each layer appears once: ir_verify) */
	for (int64_t a = 0; a < q.n_layer && !rc; a++)
		for (int64_t b = a + 1; b < q.n_layer && !rc; b++) {
			if (!q.width[a] || !q.width[b])
				continue;
			if (q.off[a] < q.off[b] + 2 * q.width[b] && q.off[b] < q.off[a] + 2 * q.width[a])
				rc = bn_err(e, BN_EVERIFY, "the KV plan (plan_kv) overlaps layers %" PRId64
					    " and %" PRId64 " (kv_off %" PRId64 " and %" PRId64 ")",
					    a, b, q.off[a], q.off[b]);
		}
	if (rc) {
		ir_kv_plan_free(&q);
		return rc;
	}
	q.elems += q.elems % 2;
	*p = q;
	*found = true;
	return 0;
}

void ir_kv_plan_free(IrKvPlan *p)
{
	free(p->off);
	free(p->width);
	p->off = p->width = NULL;
}
