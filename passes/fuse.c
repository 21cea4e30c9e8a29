/* fuse.c - fuse norm + quantize, then the residual add before it.
 * 1. An RMSNORM whose output only a QUANT_ACT reads becomes one RMSNORM_QUANT in the
 *    QUANT_ACT's place, so the normed f32 rows never reach memory as a value of their own
 *    (the fused kernels keep them in a per-call temporary).
 * 2. An ADD of two [n, T] rows whose sum an RMSNORM_QUANT reads as its input 0 becomes one
 *    ADD_RMSNORM_QUANT in the ADD's place: the sum is still its output 0 (the next residual
 *    add reads it), the codes and scales its outputs 1 and 2, so the kernel norms each row
 *    while the sum it has just written is in cache. The first such RMSNORM_QUANT after the
 *    add is taken, when its weight is defined before the add.
 * requires: a verified graph, without a memory plan where an add is to be fused (the fused
 * node needs a temporary);
 * produces: RMSNORM_QUANT nodes (eps from the norm, mode from the quantizer), each with the
 * QUANT_ACT's node id, name and output values, the fused RMSNORM left with no reader (run
 * dce after); ADD_RMSNORM_QUANT nodes (eps and mode from the RMSNORM_QUANT), each with the
 * ADD's node id, name and output value and the RMSNORM_QUANT's output values, the fused
 * RMSNORM_QUANT removed from the graph; invalidates: the ids of nodes after a fused add
 * (value ids are kept).
 * A norm read by anything else (the head's result_norm, two quantizers) stays as it is, and
 * so does an add whose b is broadcast.
 * Option match: a glob on the name of the node that survives a fusion: the quantizer in
 * step 1, the add in step 2 (whose rmsnorm_quant step 1 made only if the quantizer matched).
 * The BitNet graphs name quantizers "*.q8" / "*.q8k" and residual adds "blk.N.ffn_inp" /
 * "blk.N.l_out", so match = "*.q8*" fuses the norms alone.
 * pass_fuse_node and pass_unfuse_node do one node (Lua: g:fuse(n), g:unfuse(n)). */
#include "pass.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* Copies attribute at onto node j unless j has that key already (or replace). */
static void copy_attr(IrGraph *g, IrId j, const IrAttr *at, bool replace)
{
	if (!replace && ir_attr_find(&g->nodes[j], at->key))
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

static bool is_rows(const IrValue *x)
{
	return x->dtype == IR_DT_F32 && x->n_dims == 2 && x->ne[1] == IR_DIM_T && x->ne[0] > 0;
}

/* Whether add node i and rmsnorm_quant node j (> i) that reads its sum fuse: a + b of one
 * [n, T] shape, and the norm's weight defined before i (the fused node runs at i). NULL if
 * they do, else why not. */
static const char *add_fusable(const IrGraph *g, IrId i, IrId j)
{
	const IrNode *add = &g->nodes[i], *rq = &g->nodes[j];
	if (add->op != IR_OP_ADD || add->n_in != 2 || add->n_out != 1)
		return "is not an add";
	if (rq->op != IR_OP_RMSNORM_QUANT || rq->n_out != 2 || rq->n_in < 1 || rq->n_in > 2 ||
	    rq->in[0] != add->out[0] || j <= i)
		return "is not an rmsnorm_quant reading the sum";
	const IrValue *a = &g->values[add->in[0]], *b = &g->values[add->in[1]];
	if (!is_rows(a) || !is_rows(b) || a->ne[0] != b->ne[0])
		return "does not add two f32 [n, T] rows of one shape";
	if (rq->n_in > 1) {
		const IrValue *w = &g->values[rq->in[1]];
		if (w->kind == IR_VAL_ACT && w->producer >= i)
			return "is before the norm's weight is computed";
	}
	return NULL;
}

static int no_plan(const IrGraph *g, const char *what, const char *name, BnErr *e)
{
	if (!g->mem.tokens)
		return 0;
	return bn_err(e, BN_EINVAL, "%s: node '%s': the graph has a memory plan; %s before "
				    "plan_memory",
		      what, name, what);
}

/* Add node i takes over rmsnorm_quant node j (add_fusable said yes), which is removed. */
static void fuse_add(IrGraph *g, IrId i, IrId j)
{
	/* The add keeps its id, name, output and other attributes; it takes the norm's weight,
	 * eps and mode and the quantizer's outputs. */
	for (int a = 0; a < g->nodes[j].n_attrs; a++)
		copy_attr(g, i, &g->nodes[j].attrs[a], true);
	IrNode *add = &g->nodes[i];
	const IrNode *rq = &g->nodes[j];
	add->op = IR_OP_ADD_RMSNORM_QUANT;
	if (rq->n_in > 1)
		add->in[add->n_in++] = rq->in[1];
	for (int k = 0; k < rq->n_out; k++) {
		add->out[add->n_out++] = rq->out[k];
		g->values[rq->out[k]].producer = i;
	}
	ir_node_remove(g, j);
}

int pass_fuse_node(IrGraph *g, IrId j, BnErr *e)
{
	if (j < 0 || j >= g->n_nodes)
		return bn_err(e, BN_EINVAL, "fuse: no node %d", j);
	IrNode *qa = &g->nodes[j];
	if (qa->op == IR_OP_RMSNORM_QUANT) {
		IrId r = qa->n_in > 0 ? qa->in[0] : IR_NONE;
		IrId i = r >= 0 && r < g->n_values ? g->values[r].producer : IR_NONE;
		if (i < 0 || g->nodes[i].op != IR_OP_ADD)
			return bn_err(e, BN_EINVAL, "fuse: rmsnorm_quant node '%s' does not read an add",
				      qa->name);
		const char *why = add_fusable(g, i, j);
		if (why)
			return bn_err(e, BN_EINVAL, "fuse: the add '%s' read by '%s' %s", g->nodes[i].name,
				      qa->name, why);
		int rc = no_plan(g, "fuse", qa->name, e);
		if (rc)
			return rc;
		fuse_add(g, i, j);
		return 0;
	}
	if (qa->op != IR_OP_QUANT_ACT || qa->n_in != 1)
		return bn_err(e, BN_EINVAL, "fuse: node '%s' is %s, not a quant_act (or an "
					    "rmsnorm_quant reading an add)",
			      qa->name, ir_op_name(qa->op));
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
		copy_attr(g, j, &g->nodes[ni].attrs[a], false);
	qa = &g->nodes[j];
	const IrNode *norm = &g->nodes[ni];
	qa->op = IR_OP_RMSNORM_QUANT;
	qa->n_in = norm->n_in;
	for (int k = 0; k < norm->n_in; k++)
		qa->in[k] = norm->in[k];
	return 0;
}

/* add_rmsnorm_quant node j back into the add (j, keeping the sum) and an rmsnorm_quant
 * NAME.norm inserted at j + 1 with the codes and scales. */
static int unfuse_add(IrGraph *g, IrId j, BnErr *e)
{
	IrNode fused = g->nodes[j];
	char name[256];
	snprintf(name, sizeof name, "%s.norm", fused.name);
	IrId in[2] = {fused.out[0], fused.n_in > 2 ? fused.in[2] : IR_NONE};
	IrId ri = ir_node_insert(g, j + 1, IR_OP_RMSNORM_QUANT, name, in, fused.n_in > 2 ? 2 : 1);
	if (ri == IR_NONE)
		return bn_err(e, BN_ENOMEM, "out of memory");
	/* eps and mode go to the quantizer; the add keeps its other attributes */
	IrAttr *keep = fused.n_attrs ? bn_arena_alloc(g->arena, (size_t)fused.n_attrs * sizeof *keep)
				     : NULL;
	if (fused.n_attrs && !keep)
		return bn_err(e, BN_ENOMEM, "out of memory");
	int nk = 0;
	for (int a = 0; a < fused.n_attrs; a++) {
		const IrAttr *at = &fused.attrs[a];
		if (strcmp(at->key, "eps") == 0 || strcmp(at->key, "mode") == 0)
			copy_attr(g, ri, at, true);
		else
			keep[nk++] = *at;
	}
	IrNode *add = &g->nodes[j];
	add->attrs = keep;
	add->n_attrs = nk;
	add->op = IR_OP_ADD;
	add->n_in = 2;
	add->n_out = 1;
	for (int k = 2; k < IR_MAX_IN; k++)
		add->in[k] = IR_NONE;
	for (int k = 1; k < IR_MAX_OUT; k++)
		add->out[k] = IR_NONE;
	IrNode *rq = &g->nodes[ri];
	for (int k = 1; k < fused.n_out; k++) {
		rq->out[rq->n_out++] = fused.out[k];
		g->values[fused.out[k]].producer = ri;
	}
	return 0;
}

int pass_unfuse_node(IrGraph *g, IrId j, BnErr *e)
{
	if (j < 0 || j >= g->n_nodes || (g->nodes[j].op != IR_OP_RMSNORM_QUANT &&
					 g->nodes[j].op != IR_OP_ADD_RMSNORM_QUANT))
		return bn_err(e, BN_EINVAL, "unfuse: node %s is not an rmsnorm_quant or "
					    "add_rmsnorm_quant",
			      j >= 0 && j < g->n_nodes ? g->nodes[j].name : "?");
	int rc = no_plan(g, "unfuse", g->nodes[j].name, e);
	if (rc)
		return rc;
	if (g->nodes[j].op == IR_OP_ADD_RMSNORM_QUANT)
		return unfuse_add(g, j, e);
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
		copy_attr(g, ni, eps, false);
	IrNode *qa = &g->nodes[j + 1];
	qa->op = IR_OP_QUANT_ACT;
	qa->n_in = 1;
	qa->in[0] = r;
	for (int k = 1; k < IR_MAX_IN; k++)
		qa->in[k] = IR_NONE;
	return 0;
}

/* Step 2 of the pass: every add the glob match names whose sum an rmsnorm_quant reads;
 * *n gets how many. */
static int fuse_adds(IrGraph *g, const char *match, int *n, BnErr *e)
{
	*n = 0;
	for (IrId i = 0; i < g->n_nodes; i++) {
		const IrNode *add = &g->nodes[i];
		if (add->op != IR_OP_ADD || add->n_out != 1 ||
		    fnmatch(match, add->name ? add->name : "", 0) != 0)
			continue;
		IrId j = i + 1;
		for (; j < g->n_nodes; j++)
			if (g->nodes[j].op == IR_OP_RMSNORM_QUANT && g->nodes[j].n_in > 0 &&
			    g->nodes[j].in[0] == add->out[0])
				break;
		if (j == g->n_nodes || add_fusable(g, i, j))
			continue;
		int rc = no_plan(g, "fuse", add->name, e);
		if (rc)
			return rc;
		fuse_add(g, i, j);
		(*n)++;
	}
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
			copy_attr(g, j, &norm->attrs[a], false);
		qa = &g->nodes[j];
		norm = &g->nodes[i];
		qa->op = IR_OP_RMSNORM_QUANT;
		qa->n_in = norm->n_in;
		for (int k = 0; k < norm->n_in; k++)
			qa->in[k] = norm->in[k];
		uses[r] = 0;
		fused++;
	}
	free(uses), free(user);
	int adds = 0;
	int rc = fuse_adds(g, match, &adds, e);
	if (rc)
		return rc;
	if (opts && opts->verbose > 0)
		fprintf(stderr, "fuse: %d rmsnorm+quant_act pairs and %d add+rmsnorm_quant pairs "
				"fused\n",
			fused, adds);
	return BN_OK;
}
