/* pass.c - the pass registry (every pass, its contract and options, in one table) and
 * pass_run (run one pass with its options, then the verifier). */
#include "pass.h"

#include <string.h>

static const PassOptInfo batch_templates_opts[] = {
	{"sizes", PASS_OPT_INTS, "1,8,32,128",
	 "token counts to instantiate the forward function for; must include 1"},
	{NULL, PASS_OPT_INT, NULL, NULL},
};

static const PassOptInfo fuse_opts[] = {
	{"match", PASS_OPT_STR, "*",
	 "only fusions into nodes whose names match this glob (the quantizer; the add for the "
	 "residual fusion)"},
	{NULL, PASS_OPT_INT, NULL, NULL},
};

static const PassOptInfo permute_weights_opts[] = {
	{"layout", PASS_OPT_STR, "auto",
	 "auto (i2s_x16 where the weight fits it; a node's \"layout\" attribute overrides), "
	 "gguf, i2s_x16 or t5_x16 (5 trits per byte: 20% fewer weight bytes than i2s_x16; "
	 "multiply-add kernels for x86 and portable C, no LUT, AMX or NEON kernel)"},
	{"match", PASS_OPT_STR, "*", "only weights whose names match this glob"},
	{"threads", PASS_OPT_INT, "0",
	 "threads repacking the weights (0: the online CPUs; 1..256); the bytes do not depend on "
	 "it"},
	{NULL, PASS_OPT_INT, NULL, NULL},
};

static const PassOptInfo tune_kernels_opts[] = {
	{"tune", PASS_OPT_INT, "0",
	 "1: time the candidate tiles on this machine now (bitnetc build --tune) and record "
	 "them; 0: use recorded choices only"},
	{"file", PASS_OPT_STR, "",
	 "the tuning file (default $BITNETC_TUNE_FILE, else ~/.cache/bitnetc/tune.tsv)"},
	{NULL, PASS_OPT_INT, NULL, NULL},
};

static const PassOptInfo lut_specialize_opts[] = {
	{"mode", PASS_OPT_STR, "auto",
	 "auto (the tuning file's measurement, else the cost model), lut or mad (everywhere)"},
	{"tune", PASS_OPT_INT, "0",
	 "1: time both kernels for each shape and batch size on this machine now (bitnetc build "
	 "--tune) and record them"},
	{"file", PASS_OPT_STR, "",
	 "the tuning file (default $BITNETC_TUNE_FILE, else ~/.cache/bitnetc/tune.tsv)"},
	{NULL, PASS_OPT_INT, NULL, NULL},
};

static const PassOptInfo quantize_head_opts[] = {
	{"type", PASS_OPT_STR, "q8_0", "q8_0 or q6_k"},
	{"threads", PASS_OPT_INT, "0",
	 "threads quantizing the rows (0: the online CPUs; 1..256); the bytes do not depend on it"},
	{NULL, PASS_OPT_INT, NULL, NULL},
};

/* The Lua binding and `bitnetc passes` walk this table; the default pipeline
 * (default.lua) names passes from it. */
static const PassInfo passes[] = {
	{"verify", pass_verify, "requires: nothing; produces: nothing; invalidates: nothing",
	 "check the graph with the IR verifier (ids, arity, dtypes, shapes, attributes)", NULL},
	{"infer_shapes", pass_infer_shapes,
	 "requires: sound structure (ids, arity, definition before use); produces: every output's "
	 "dtype and shape from its op's rule (unset ones filled in), a verified graph; "
	 "invalidates: nothing",
	 "compute each node's output types from its inputs and attributes with the verifier's "
	 "per-op rules; fails naming the node where a set type disagrees",
	 NULL},
	{"dce", pass_dce, "requires: a verified graph; produces: no unused values or nodes; "
			  "invalidates: value and node ids (compacted)",
	 "remove constants nothing reads and nodes whose outputs nothing reads", NULL},
	{"fuse", pass_fuse,
	 "requires: a verified graph (without a memory plan where an add is fused); produces: "
	 "rmsnorm_quant nodes in place of rmsnorm + quant_act pairs (the quant_act's id, name and "
	 "outputs kept, the fused rmsnorm left unread for dce), then add_rmsnorm_quant nodes in "
	 "place of add + rmsnorm_quant pairs (the add's id, name and sum kept, the rmsnorm_quant "
	 "removed); invalidates: the ids of nodes after a fused add (value ids kept)",
	 "fuse each rmsnorm whose only reader is a quant_act into one rmsnorm_quant node, and "
	 "each residual add whose sum an rmsnorm_quant reads into one add_rmsnorm_quant node",
	 fuse_opts},
	{"batch_templates", pass_batch_templates,
	 "requires: a verified graph; produces: graph attributes batch_sizes (int list, "
	 "ascending) and batch_split (\"greedy\"); invalidates: nothing",
	 "record the token counts to build forward functions for: forward_t1 (decode, GEMV) "
	 "and one tiled forward per larger size; the program splits prompts over them largest "
	 "first",
	 batch_templates_opts},
	{"permute_weights", pass_permute_weights,
	 "requires: a verified graph; produces: ternary_matmul weights repacked into the CPU "
	 "kernels' layout (i2s_x16 for i2_s weights with a multiple of 16 rows), the layout "
	 "recorded in the value; invalidates: the weights' data pointers",
	 "repack ternary weights once at compile time into the layout the kernel reads",
	 permute_weights_opts},
	{"plan_memory", pass_plan_memory,
	 "requires: a verified graph, graph attribute batch_sizes (batch_templates); produces: a "
	 "scratch arena offset for every activation but the logits and for each node's temporary "
	 "(IrValue.mem_off, IrNode.tmp_off, IrGraph.mem), graph attributes scratch_bytes and "
	 "scratch_tokens; invalidates: nothing (a later pass that adds values or nodes must run "
	 "it again)",
	 "place activations in one scratch arena sized for the largest batch size, reusing the "
	 "space of values whose last reader has run (what the CPU backend builds with)",
	 NULL},
	{"plan_kv", pass_plan_kv,
	 "requires: a verified graph; produces: node attributes kv_off and kv_width on attention "
	 "nodes (the KV cache layout), graph attribute kv_elems; invalidates: nothing",
	 "place each attention layer's K and V in the KV cache: per layer K then V, each "
	 "[n_seq][n_ctx][n_head_kv * head_dim] f16, layers in order (what the CPU backend builds "
	 "with)",
	 NULL},
	{"lut_specialize", pass_lut_specialize,
	 "requires: batch_sizes (batch_templates) and i2s_x16 weights (permute_weights), graph "
	 "attribute target; produces: node attributes kernel_t<S> (\"lut\" or \"simd\") on "
	 "ternary matmuls, graph attribute lut_forwards; invalidates: nothing",
	 "choose per ternary matmul and batch size between table-lookup (LUT) and multiply-add "
	 "kernels: from timings on this machine (--tune, or the tuning file), else a cost model",
	 lut_specialize_opts},
	{"tune_kernels", pass_tune_kernels,
	 "requires: batch_sizes and i2s_x16 weights (permute_weights), graph attribute target; "
	 "produces: node attribute tile on ternary matmuls with a measured or recorded choice, "
	 "graph attribute tuned_tiles; invalidates: nothing",
	 "choose each ternary matmul's GEMM tile from timings on this machine (--tune) or the "
	 "tuning file earlier builds wrote",
	 tune_kernels_opts},
	{"quantize_head", pass_quantize_head,
	 "requires: a verified graph whose logits come from a matmul with a constant f32/f16/"
	 "bf16 weight; produces: that weight in q8_0 or q6_k (the tied embedding table with it); "
	 "invalidates: the weight's data pointer and dtype",
	 "quantize the output head (off by default; changes the logits, as bitnet.cpp's "
	 "--quant-embd does)",
	 quantize_head_opts},
};

const PassInfo *pass_list(int *n)
{
	*n = (int)(sizeof passes / sizeof passes[0]);
	return passes;
}

const PassInfo *pass_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++)
		if (strcmp(passes[i].name, name) == 0)
			return &passes[i];
	return NULL;
}

const PassOptInfo *pass_opt_info(const PassInfo *p, const char *key)
{
	for (const PassOptInfo *oi = p ? p->opts : NULL; key && oi && oi->name; oi++)
		if (strcmp(oi->name, key) == 0)
			return oi;
	return NULL;
}

int pass_run(IrGraph *g, const char *name, const PassOpts *opts, BnErr *e)
{
	const PassInfo *p = pass_find(name);
	if (!p)
		return bn_err(e, BN_EINVAL, "no pass named '%s'", name ? name : "(null)");
	BnErr local = {0};
	BnErr *er = e ? e : &local;
	PassOpts view = {0};
	int rc = pass_opts_view(&view, p, &opts, 1, er);
	if (rc) {
		bn_err_prefix(er, "pass %s", p->name);
		return rc;
	}
	rc = p->fn(g, &view, er);
	pass_opts_free(&view);
	if (rc) {
		bn_err_prefix(er, "pass %s", p->name);
		return rc;
	}
	/* The pass said it succeeded; the verifier decides whether the graph agrees. */
	rc = ir_verify(g, er);
	if (rc) {
		bn_err_prefix(er, "after pass %s the graph does not verify", p->name);
		return rc;
	}
	return BN_OK;
}

void pass_pipeline_describe(FILE *out)
{
	int n;
	const PassInfo *p = pass_list(&n);
	for (int i = 0; i < n; i++) {
		fprintf(out, "%s\n    %s\n    %s\n", p[i].name, p[i].summary, p[i].contract);
		for (const PassOptInfo *oi = p[i].opts; oi && oi->name; oi++)
			fprintf(out, "    option %s.%s (%s, default %s): %s\n", p[i].name, oi->name,
				pass_opt_type_name(oi->type), oi->dflt, oi->help);
	}
}
