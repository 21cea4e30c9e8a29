/* fuse.c - fuse norm + quantize: an RMSNORM whose output only a QUANT_ACT reads becomes one
 * RMSNORM_QUANT in the QUANT_ACT's place, so the normed f32 rows never reach memory as a
 * value of their own (the fused kernels keep them in a per-call temporary).
 * requires: a verified graph; produces: RMSNORM_QUANT nodes (eps from the norm, mode from
 * the quantizer), each with the QUANT_ACT's node id, name and output values; the fused
 * RMSNORM is left with no reader (run dce after); invalidates: nothing (ids are kept).
 * A norm read by anything else (the head's result_norm, two quantizers) stays as it is. */
#include "pass.h"

#include <stdlib.h>

int pass_fuse(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	int nv = g->n_values;
	/* readers per value, and the last node reading it; the logits count as read */
	int *uses = calloc((size_t)nv + 1, sizeof *uses);
	IrId *user = malloc(((size_t)nv + 1) * sizeof *user);
	if (!uses || !user) {
		free(uses), free(user);
		return bn_err(e, BN_ENOMEM, "out of memory for %d values", nv);
	}
	for (int i = 0; i < g->n_nodes; i++) {
		const IrNode *n = &g->nodes[i];
		for (int k = 0; k < n->n_in; k++)
			if (n->in[k] >= 0 && n->in[k] < nv) {
				uses[n->in[k]]++;
				user[n->in[k]] = i;
			}
	}
	if (g->logits >= 0 && g->logits < nv)
		uses[g->logits]++;

	int fused = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const IrNode *norm = &g->nodes[i];
		if (norm->op != IR_OP_RMSNORM || norm->n_out != 1)
			continue;
		IrId r = norm->out[0];
		if (r < 0 || r >= nv || uses[r] != 1)
			continue;
		IrId j = user[r];
		IrNode *qa = &g->nodes[j];
		if (qa->op != IR_OP_QUANT_ACT || qa->n_in != 1 || qa->in[0] != r)
			continue;
		/* The quantizer keeps its id, name, outputs and attributes (mode); it takes the
		 * norm's inputs and other attributes (eps). The norm's inputs are defined before
		 * the norm, so before j. */
		for (int a = 0; a < norm->n_attrs; a++) {
			const IrAttr *at = &norm->attrs[a];
			if (ir_attr_find(qa, at->key))
				continue;
			switch (at->type) {
			case IR_ATTR_INT:
				ir_attr_set_int(g, j, at->key, at->i);
				break;
			case IR_ATTR_FLOAT:
				ir_attr_set_float(g, j, at->key, at->f);
				break;
			case IR_ATTR_STR:
				ir_attr_set_str(g, j, at->key, at->s);
				break;
			case IR_ATTR_INTS:
				ir_attr_set_ints(g, j, at->key, at->ints, at->n_ints);
				break;
			}
		}
		qa->op = IR_OP_RMSNORM_QUANT;
		qa->n_in = norm->n_in;
		for (int k = 0; k < norm->n_in; k++)
			qa->in[k] = norm->in[k];
		uses[r] = 0;
		fused++;
	}
	if (opts && opts->verbose > 0)
		fprintf(stderr, "fuse: %d rmsnorm+quant_act pairs fused\n", fused);
	free(uses), free(user);
	return BN_OK;
}
