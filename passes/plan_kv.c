/* plan_kv.c - the KV cache layout: per attention layer, where its K and V rows live in the
 * one f16 cache of a running model (ir_kv_plan: per layer K then V, each [n_seq][n_ctx]
 * [width], the layers back to back in layer order, then the score rows the attention
 * kernels work in). The plan is recorded on each attention node (attributes kv_off: f16
 * elements before its K per (sequence, position); kv_width: its K/V row width), where the
 * verifier checks it and codegen reads it; a build without this pass gets the same layout
 * from codegen.
 * requires: a verified graph; produces: node attributes kv_off and kv_width on attention
 * nodes, graph attribute kv_elems (f16 elements per (sequence, position), all layers, K
 * and V); invalidates: nothing. */
#include "pass.h"

#include <inttypes.h>

int pass_plan_kv(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	IrKvPlan p;
	int rc = ir_kv_plan(g, &p, e);
	if (rc)
		return rc;
	int n_att = 0;
	for (IrId ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_ATTENTION)
			continue;
		int64_t L = ir_attr_int(n, "layer", 0);
		ir_attr_set_int(g, ni, "kv_off", p.off[L]);
		ir_attr_set_int(g, ni, "kv_width", p.width[L]);
		n_att++;
	}
	rc = pass_gattr_set_int(g, "kv_elems", p.elems, e);
	if (!rc && opts && opts->verbose > 0)
		fprintf(stderr, "plan_kv: %d attention layers, %" PRId64 " f16 K and V elements and %"
				PRId64 " score rows per position of each sequence (%" PRId64
				" bytes)\n",
			n_att, p.elems, p.max_heads, p.elems * 2 + p.max_heads * 4);
	ir_kv_plan_free(&p);
	return rc;
}
