/* infer_shapes.c - shape inference: every node's output types (dtype and shape) from its inputs
 * and attributes, by the per-op rules the verifier checks (ir_infer_shapes: one rule per op
 * serves both, so they cannot drift apart). A C pass that adds a node may leave its outputs
 * untyped (ir_node_output with n_dims 0) and run this after it; Lua passes cannot add nodes
 * or values, so for them this pass is the check.
 * requires: sound structure (ids in range, arity, definition before use); produces: every
 * output typed, the graph verified; an output whose type is set but disagrees with its op's
 * rule fails, naming the node; invalidates: nothing. */
#include "pass.h"

int pass_infer_shapes(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	int filled = 0;
	int rc = ir_infer_shapes(g, &filled, e);
	if (!rc && opts && opts->verbose > 0)
		fprintf(stderr, "infer_shapes: %d nodes, %d output types filled in\n", g->n_nodes,
			filled);
	return rc;
}
