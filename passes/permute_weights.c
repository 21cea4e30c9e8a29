/* permute_weights.c - repack ternary weights once, at compile time, into the layout the
 * selected kernel reads (ir.h: "weight layouts"), and record it in the value so codegen
 * picks the matching kernel and the verifier checks the bytes fit.
 * requires: a verified graph (graph attribute target, set by bitnetc build; else native);
 * produces: ternary_matmul weights in layout i2s_x16 (I2_S weights whose row count is a
 * multiple of 16, for a target with SIMD kernels; the others, and every weight for the
 * portable target, keep "gguf"), their data in the graph's arena; invalidates: the constants' data pointers (the GGUF mapping is no longer
 * what they point at). */
#include "pass.h"
#include "cg.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <string.h>

int pass_relayout(IrGraph *g, IrId id, const char *layout, BnErr *e)
{
	IrValue *v = &g->values[id];
	if (v->kind != IR_VAL_CONST || !v->data)
		return bn_err(e, BN_EINVAL, "value '%s' is not a constant weight: only weights are "
					    "repacked", v->name ? v->name : "?");
	const char *cur = v->layout ? v->layout : "gguf";
	if (strcmp(cur, layout) == 0)
		return 0;
	const char *why = ir_layout_check(layout, v->dtype, v->n_dims, v->ne);
	if (why)
		return bn_err(e, BN_EINVAL, "value '%s' (%s): layout %s: %s", v->name ? v->name : "?",
			      ir_dtype_name(v->dtype), layout, why);
	if (strcmp(cur, "gguf") != 0 || strcmp(layout, "gguf") == 0)
		return bn_err(e, BN_EINVAL, "value '%s': cannot convert layout %s to %s (weights are "
					    "repacked from their GGUF layout once)",
			      v->name ? v->name : "?", cur, layout);
	void *d = bn_arena_alloc(g->arena, (size_t)v->nbytes);
	const char *name = bn_arena_strdup(g->arena, layout);
	if (!d || !name)
		return bn_err(e, BN_ENOMEM, "out of memory repacking '%s' (%" PRIu64 " bytes)",
			      v->name ? v->name : "?", v->nbytes);
	int rc = ir_layout_pack(layout, v->dtype, v->data, d, v->ne[0], v->ne[1]);
	if (rc)
		return bn_err(e, rc == -2 ? BN_ENOMEM : BN_EINVAL, "value '%s': cannot repack into %s",
			      v->name ? v->name : "?", layout);
	v->data = d;
	v->layout = name;
	return 0;
}

int pass_permute_weights(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	const char *want = pass_opt_str(opts, "layout", "auto");
	const char *only = pass_opt_str(opts, "match", "*");
	bool auto_ = strcmp(want, "auto") == 0;
	if (!auto_ && strcmp(want, "gguf") != 0 && strcmp(want, "i2s_x16") != 0)
		return bn_err(e, BN_EINVAL, "option layout is '%s'; expected auto, gguf or i2s_x16",
			      want);
	/* auto where the target's kernels read the GGUF layout best (the backend says so:
	 * cpu-generic, whose portable kernel beats both i2s_x16 kernels) keeps it */
	if (auto_) {
		const IrAttr *ta = pass_gattr_find(g, "target");
		const char *target = ta && ta->type == IR_ATTR_STR ? ta->s : "native";
		const CgBackend *be = cg_backend_of(target);
		CgTargetDesc d = {0};
		if (be->describe)
			be->describe(target, &d);
		if (!d.weight_layout || strcmp(d.weight_layout, "gguf") == 0)
			want = "gguf";
	}
	int n_done = 0, n_kept = 0;
	uint64_t bytes = 0;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_TERNARY_MATMUL || n->n_in < 3)
			continue;
		IrValue *w = &g->values[n->in[2]];
		if (w->kind != IR_VAL_CONST || !w->name || fnmatch(only, w->name, 0) != 0)
			continue;
		/* auto: the CPU kernels' layout where the weight fits it; a node attribute
		 * "layout" (set from Lua) overrides the choice for its weight */
		const char *to = ir_attr_str(n, "layout", auto_ && strcmp(want, "gguf") != 0 ? NULL : want);
		if (!to)
			to = ir_layout_check("i2s_x16", w->dtype, w->n_dims, w->ne) ? "gguf" : "i2s_x16";
		if (strcmp(to, w->layout ? w->layout : "gguf") == 0) {
			n_kept++;
			continue;
		}
		int rc = pass_relayout(g, n->in[2], to, e);
		if (rc) {
			bn_err_prefix(e, "node '%s'", n->name);
			return rc;
		}
		n_done++;
		bytes += w->nbytes;
	}
	if (opts->verbose > 0)
		fprintf(stderr, "permute_weights: %d weights repacked (%.1f MiB), %d kept\n", n_done,
			(double)bytes / (1 << 20), n_kept);
	return 0;
}
