/* plan_memory.c - activation memory planning: every activation but the logits, and each
 * node's temporary, gets a static offset in one scratch arena sized for the largest batch
 * (ir_mem_plan: first fit in execution order, a value's space reused after its last reader).
 * The plan lives in the IR (IrGraph.mem, IrValue.mem_off, IrNode.tmp_off), where the verifier
 * checks it and codegen reads it; a build without this pass gets the same plan from codegen.
 * requires: a verified graph and the graph attribute batch_sizes (batch_templates: its
 * largest size bounds the token dim); produces: the plan and the graph attributes
 * scratch_bytes and scratch_tokens; invalidates: nothing, but a later pass that adds values
 * or nodes leaves them without a place (the verifier says so): run it last. */
#include "pass.h"

#include <inttypes.h>
#include <stdlib.h>

int pass_plan_memory(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	const IrAttr *bs = pass_gattr_find(g, "batch_sizes");
	if (!bs || bs->type != IR_ATTR_INTS || bs->n_ints < 1)
		return bn_err(e, BN_EINVAL, "the graph has no batch_sizes attribute: run "
					    "batch_templates before plan_memory (its largest size is "
					    "the most tokens the arena must hold)");
	int64_t T = 0;
	for (int i = 0; i < bs->n_ints; i++)
		if (bs->ints[i] > T)
			T = bs->ints[i];
	uint64_t *voff = malloc(((size_t)g->n_values + 1) * sizeof *voff);
	uint64_t *toff = malloc(((size_t)g->n_nodes + 1) * sizeof *toff);
	uint64_t bytes = 0;
	int rc = voff && toff ? ir_mem_plan(g, T, voff, toff, &bytes, e)
			      : bn_err(e, BN_ENOMEM, "out of memory for %d values", g->n_values);
	if (!rc) {
		int n_vals = 0, n_tmps = 0;
		uint64_t sum = 0, sz;
		for (IrId i = 0; i < g->n_values; i++) {
			g->values[i].mem_off = voff[i];
			if (voff[i] != IR_NO_OFF && ir_mem_value_bytes(&g->values[i], T, &sz)) {
				n_vals++;
				sum += sz;
			}
		}
		for (IrId i = 0; i < g->n_nodes; i++) {
			g->nodes[i].tmp_off = toff[i];
			if (toff[i] != IR_NO_OFF) {
				n_tmps++;
				sum += ir_mem_tmp_bytes(g, &g->nodes[i], T);
			}
		}
		g->mem = (IrMemPlan){.tokens = T, .bytes = bytes};
		rc = pass_gattr_set_int(g, "scratch_bytes", (int64_t)bytes, e);
		if (!rc)
			rc = pass_gattr_set_int(g, "scratch_tokens", T, e);
		if (!rc && opts && opts->verbose > 0)
			fprintf(stderr, "plan_memory: scratch arena %" PRIu64 " bytes (%.1f KiB) for %" PRId64
					" tokens: %d values and %d temporaries, %.1f KiB without reuse\n",
				bytes, (double)bytes / 1024.0, T, n_vals, n_tmps, (double)sum / 1024.0);
	}
	free(voff);
	free(toff);
	return rc;
}
