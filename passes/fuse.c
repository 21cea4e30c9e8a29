/* fuse.c - fuse norm + quantize: an RMSNORM whose output only a QUANT_ACT reads becomes one
 * RMSNORM_QUANT in the QUANT_ACT's place, so the normed f32 rows never reach memory as a
 * value of their own (the fused kernels keep them in a per-call temporary).
 * requires: a verified graph; produces: RMSNORM_QUANT nodes (eps from the norm, mode from
 * the quantizer), each with the QUANT_ACT's node id, name and output values; the fused
 * RMSNORM is left with no reader (run dce after); invalidates: nothing (ids are kept).
 * A norm read by anything else (the head's result_norm, two quantizers) stays as it is.
 * Option match: only quantizers whose names match the glob. pass_fuse_node and
 * pass_unfuse_node do one node (Lua: g:fuse(n), g:unfuse(n)). */
#include "pass.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* Copies attribute at onto node j unless j has that key already. */
static void copy_attr(IrGraph *g, IrId j, const IrAttr *at)
{
	if (ir_attr_find(&g->nodes[j], at->key))
		return;
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

/* Readers of value r (the logits count as read). */
static int readers(const IrGraph *g, IrId r)
{
	int k = r == g->logits;
	for (int i = 0; i < g->n_nodes; i++)
		for (int a = 0; a < g->nodes[i].n_in; a++)
			k += g->nodes[i].in[a] == r;
	return k;
}

int pass_fuse_node(IrGraph *g, IrId j, BnErr *e)
{
	if (j < 0 || j >= g->n_nodes)
		return bn_err(e, BN_EINVAL, "fuse: no node %d", j);
	IrNode *qa = &g->nodes[j];
	if (qa->op != IR_OP_QUANT_ACT || qa->n_in != 1)
		return bn_err(e, BN_EINVAL, "fuse: node '%s' is %s, not a quant_act", qa->name,
			      ir_op_name(qa->op));
	IrId r = qa->in[0];
	IrId ni = r >= 0 && r < g->n_values ? g->values[r].producer : IR_NONE;
	if (ni < 0 || g->nodes[ni].op != IR_OP_RMSNORM || g->nodes[ni].n_out != 1)
		return bn_err(e, BN_EINVAL, "fuse: node '%s' does not read an rmsnorm", qa->name);
	if (readers(g, r) != 1)
		return bn_err(e, BN_EINVAL, "fuse: the rmsnorm '%s' has other readers than '%s'",
			      g->nodes[ni].name, qa->name);
	/* The quantizer keeps its id, name, outputs and attributes (mode); it takes the norm's
	 * inputs and other attributes (eps). The norm's inputs are defined before the norm,
	 * so before j. */
	for (int a = 0; a < g->nodes[ni].n_attrs; a++)
		copy_attr(g, j, &g->nodes[ni].attrs[a]);
	qa = &g->nodes[j];
	const IrNode *norm = &g->nodes[ni];
	qa->op = IR_OP_RMSNORM_QUANT;
	qa->n_in = norm->n_in;
	for (int k = 0; k < norm->n_in; k++)
		qa->in[k] = norm->in[k];
	return 0;
}

int pass_unfuse_node(IrGraph *g, IrId j, BnErr *e)
{
	if (j < 0 || j >= g->n_nodes || g->nodes[j].op != IR_OP_RMSNORM_QUANT)
		return bn_err(e, BN_EINVAL, "unfuse: node %s is not an rmsnorm_quant",
			      j >= 0 && j < g->n_nodes ? g->nodes[j].name : "?");
	if (g->mem.tokens)
		return bn_err(e, BN_EINVAL, "unfuse: node '%s': the graph has a memory plan; unfuse "
					    "before plan_memory", g->nodes[j].name);
	IrNode fused = g->nodes[j];
	const IrValue *x = &g->values[fused.in[0]];
	char name[256];
	snprintf(name, sizeof name, "%s.norm", fused.name);
	/* the norm goes right before the quantizer, which moves to j + 1 */
	IrId ni = ir_node_insert(g, j, IR_OP_RMSNORM, name, fused.in, fused.n_in);
	if (ni == IR_NONE)
		return bn_err(e, BN_ENOMEM, "out of memory");
	int64_t ne[IR_MAX_DIMS];
	memcpy(ne, x->ne, sizeof ne);
	IrId r = ir_node_output(g, ni, name, IR_DT_F32, x->n_dims, ne);
	if (r == IR_NONE)
		return bn_err(e, BN_ENOMEM, "out of memory");
	const IrAttr *eps = ir_attr_find(&g->nodes[j + 1], "eps");
	if (eps)
		copy_attr(g, ni, eps);
	IrNode *qa = &g->nodes[j + 1];
	qa->op = IR_OP_QUANT_ACT;
	qa->n_in = 1;
	qa->in[0] = r;
	for (int k = 1; k < IR_MAX_IN; k++)
		qa->in[k] = IR_NONE;
	return 0;
}

int pass_fuse(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	const char *match = opts ? pass_opt_str(opts, "match", "*") : "*";
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
		if (qa->op != IR_OP_QUANT_ACT || qa->n_in != 1 || qa->in[0] != r ||
		    fnmatch(match, qa->name ? qa->name : "", 0) != 0)
			continue;
		/* The quantizer keeps its id, name, outputs and attributes (mode); it takes the
		 * norm's inputs and other attributes (eps). The norm's inputs are defined before
		 * the norm, so before j. */
		for (int a = 0; a < norm->n_attrs; a++)
			copy_attr(g, j, &norm->attrs[a]);
		qa = &g->nodes[j];
		norm = &g->nodes[i];
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
