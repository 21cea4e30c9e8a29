/* dce.c - dead code elimination: drop constants nothing reads (e.g. output.weight, which
 * the BitNet head ignores) and nodes whose outputs nothing reads.
 * requires: ids in range (a verified graph); keeps: the tokens input, the logits and their
 * producers; invalidates: value and node ids, which are compacted (order is kept). */
#include "pass.h"

#include <stdlib.h>
#include <string.h>

static bool id_ok(IrId id, int n)
{
	return id >= 0 && id < n;
}

int pass_dce(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	int nv = g->n_values, nn = g->n_nodes;
	if (!id_ok(g->logits, nv))
		return bn_err(e, BN_EINVAL, "graph has no logits output to keep");
	bool *live_v = calloc((size_t)nv + 1, sizeof *live_v);
	bool *live_n = calloc((size_t)nn + 1, sizeof *live_n);
	IrId *vmap = malloc(((size_t)nv + 1) * sizeof *vmap);
	IrId *nmap = malloc(((size_t)nn + 1) * sizeof *nmap);
	if (!live_v || !live_n || !vmap || !nmap) {
		free(live_v), free(live_n), free(vmap), free(nmap);
		return bn_err(e, BN_ENOMEM, "out of memory for %d values, %d nodes", nv, nn);
	}

	/* Liveness in one backward sweep: nodes are in execution order, so every reader of
	 * a value comes after its producer. A node is live when any output is live; a live
	 * node makes all its inputs live. */
	live_v[g->logits] = true;
	for (int i = nn - 1; i >= 0; i--) {
		const IrNode *n = &g->nodes[i];
		for (int k = 0; k < n->n_out && !live_n[i]; k++)
			live_n[i] = id_ok(n->out[k], nv) && live_v[n->out[k]];
		if (!live_n[i])
			continue;
		for (int k = 0; k < n->n_in; k++)
			if (id_ok(n->in[k], nv))
				live_v[n->in[k]] = true;
	}
	/* A live node keeps all its outputs (a quant_act whose scale output is unread still
	 * produces it), and graph inputs stay: they are the calling convention. */
	for (int i = 0; i < nn; i++)
		for (int k = 0; k < g->nodes[i].n_out; k++)
			if (live_n[i] && id_ok(g->nodes[i].out[k], nv))
				live_v[g->nodes[i].out[k]] = true;
	if (id_ok(g->tokens, nv))
		live_v[g->tokens] = true;
	for (int i = 0; i < nv; i++)
		if (g->values[i].kind == IR_VAL_INPUT)
			live_v[i] = true;

	/* Compact both arrays in place, keeping order (so definition-before-use holds). */
	int kv = 0, kn = 0;
	for (int i = 0; i < nv; i++) {
		vmap[i] = live_v[i] ? kv : IR_NONE;
		if (live_v[i])
			g->values[kv++] = g->values[i];
	}
	for (int i = 0; i < nn; i++) {
		nmap[i] = live_n[i] ? kn : IR_NONE;
		if (live_n[i])
			g->nodes[kn++] = g->nodes[i];
	}
	for (int i = 0; i < kv; i++) {
		IrValue *v = &g->values[i];
		if (v->producer != IR_NONE)
			v->producer = id_ok(v->producer, nn) ? nmap[v->producer] : IR_NONE;
	}
	for (int i = 0; i < kn; i++) {
		IrNode *n = &g->nodes[i];
		for (int k = 0; k < n->n_in; k++)
			n->in[k] = id_ok(n->in[k], nv) ? vmap[n->in[k]] : IR_NONE;
		for (int k = 0; k < n->n_out; k++)
			n->out[k] = id_ok(n->out[k], nv) ? vmap[n->out[k]] : IR_NONE;
	}
	g->logits = vmap[g->logits];
	if (g->tokens != IR_NONE)
		g->tokens = id_ok(g->tokens, nv) ? vmap[g->tokens] : IR_NONE;

	if (opts && opts->verbose > 0)
		fprintf(stderr, "dce: removed %d of %d values, %d of %d nodes\n", nv - kv, nv,
			nn - kn, nn);
	g->n_values = kv;
	g->n_nodes = kn;
	free(live_v), free(live_n), free(vmap), free(nmap);
	return BN_OK;
}
