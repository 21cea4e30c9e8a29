/* test_pipeline.c - Lua pipelines end to end: the default pipeline, the example scripts on
 * golden models, error reports (syntax, runtime, unknown pass, bad option, broken graph),
 * pass options, dumps and timings; the time and memory limits, in the library and through
 * the driver (one line, exit 2, no program). */
#include "testutil.h"
#include "cg_cpu.h"
#include "frontend.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static void expect_ints(const IrAttr *a, const int64_t *want, int n)
{
	assert_non_null(a);
	assert_int_equal(a->type, IR_ATTR_INTS);
	assert_int_equal(a->n_ints, n);
	for (int i = 0; i < n; i++)
		assert_int_equal(a->ints[i], want[i]);
}

/* The default pipeline (embedded default.lua) runs, leaves a verified graph identical to
 * the built-in description (infer_shapes, dce, fuse, dce, permute_weights, batch_templates,
 * lut_specialize, tune_kernels, plan_kv, plan_memory) and
 * records the batch sizes and the memory plan. */
static void test_default(void **state)
{
	(void)state;
	GgufFile *f1, *f2;
	IrGraph *a = tu_golden_graph("tiny-b158-i2_s", &f1), *b = tu_golden_graph("tiny-b158-i2_s", &f2);
	BnErr e = {0};
	PassStats st = {0};
	PassRunOpts ro = {.verify_each = true, .stats = &st};
	if (pass_pipeline_run(a, NULL, &ro, &e))
		fail_msg("%s", e.msg);
	assert_int_equal(ir_verify(a, &e), BN_OK);
	expect_ints(pass_gattr_find(a, "batch_sizes"), (const int64_t[]){1, 8, 32, 128}, 4);
	const IrAttr *split = pass_gattr_find(a, "batch_split");
	assert_non_null(split);
	assert_string_equal(split->s, "greedy");

	assert_int_equal(pass_run(b, "infer_shapes", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "dce", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "fuse", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "dce", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "permute_weights", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "batch_templates", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "lut_specialize", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "tune_kernels", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "plan_kv", NULL, &e), BN_OK);
	assert_int_equal(pass_run(b, "plan_memory", NULL, &e), BN_OK);
	char *pa = tu_print_graph(a), *pb = tu_print_graph(b);
	assert_string_equal(pa, pb);
	free(pa);
	free(pb);
	/* the plan is for the largest batch size, the same both ways */
	assert_int_equal(a->mem.tokens, 128);
	assert_true(a->mem.bytes > 0 && a->mem.bytes == b->mem.bytes);
	for (int i = 0; i < a->n_values; i++)
		assert_true(a->values[i].mem_off == b->values[i].mem_off);

	/* one timing per step, printed with a total */
	assert_int_equal(st.n, 10);
	assert_string_equal(st.t[0].name, "infer_shapes");
	assert_string_equal(st.t[1].name, "dce");
	assert_string_equal(st.t[2].name, "fuse");
	assert_string_equal(st.t[3].name, "dce");
	assert_string_equal(st.t[4].name, "permute_weights");
	assert_string_equal(st.t[5].name, "batch_templates");
	assert_string_equal(st.t[6].name, "lut_specialize");
	assert_string_equal(st.t[7].name, "tune_kernels");
	assert_string_equal(st.t[8].name, "plan_kv");
	assert_string_equal(st.t[9].name, "plan_memory");
	char *buf = NULL;
	size_t n = 0;
	FILE *mf = open_memstream(&buf, &n);
	pass_stats_print(&st, mf);
	fclose(mf);
	assert_non_null(strstr(buf, "batch_templates"));
	assert_non_null(strstr(buf, " ms\n"));
	assert_non_null(strstr(buf, "total"));
	free(buf);
	pass_stats_free(&st);

	/* the embedded source is default.lua itself */
	size_t len = 0;
	const char *src = pass_default_pipeline(&len);
	size_t flen = 0;
	char *file = tu_read_file(tu_data("../../passes/default.lua"), &flen);
	assert_non_null(file);
	assert_int_equal(len, flen);
	assert_memory_equal(src, file, len);
	free(file);
	tu_golden_graph_free(a, f1);
	tu_golden_graph_free(b, f2);
}

/* Whether native is the portable target here (the host, as BITNETC_CPU_MASK leaves it, has
 * no SIMD family): then permute_weights keeps the GGUF layout. */
static bool native_generic(void)
{
	CgIsa isa;
	char feats[256];
	cg_cpu_target_isa("native", &isa, feats, sizeof feats);
	return isa.level == CG_ISA_GENERIC;
}

/* Every example script runs on golden models, in the sandbox, and what it records is
 * there. */
static void test_examples(void **state)
{
	(void)state;
	static const char *const models[] = {"tiny-b158-i2_s", "tiny-b158-tq2_0", "tiny-b158-tq1_0"};
	for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
		BnErr e = {0};
		GgufFile *f;
		IrGraph *g = tu_golden_graph(models[m], &f);
		if (pass_pipeline_run(g, tu_data("../../examples/pipelines/decode_only.lua"),
				      &(PassRunOpts){.verify_each = true}, &e))
			fail_msg("decode_only on %s: %s", models[m], e.msg);
		expect_ints(pass_gattr_find(g, "batch_sizes"), (const int64_t[]){1}, 1);
		tu_golden_graph_free(g, f);

		g = tu_golden_graph(models[m], &f);
		if (pass_pipeline_run(g, tu_data("../../examples/pipelines/per_layer.lua"),
				      &(PassRunOpts){.verify_each = true}, &e))
			fail_msg("per_layer on %s: %s", models[m], e.msg);
		/* every ffn_down gets the tile of the host's SIMD family (none without one),
		 * blk.0's the portable kernel; the i2_s weights are repacked */
		const PassTarget *host = pass_target_host();
		bool simd = strstr(host->features, "avx2") || strstr(host->features, "avx512_vnni");
		int tagged = 0;
		for (int i = 0; i < g->n_nodes; i++) {
			const IrNode *n = &g->nodes[i];
			const IrAttr *k = ir_attr_find(n, "kernel");
			const IrAttr *t = ir_attr_find(n, "tile");
			bool down = strstr(n->name, ".ffn_down") != NULL;
			if (k) {
				assert_string_equal(n->name, "blk.0.ffn_down");
				assert_string_equal(k->s, "portable");
			}
			if (!down) {
				assert_null(t);
				continue;
			}
			/* (cpu-generic, the host without a SIMD family, keeps the GGUF layout) */
			if (n->op == IR_OP_TERNARY_MATMUL && strcmp(models[m], "tiny-b158-i2_s") == 0)
				assert_string_equal(g->values[n->in[2]].layout, native_generic() ? "gguf" : "i2s_x16");
			if (simd && n->op == IR_OP_TERNARY_MATMUL) {
				assert_non_null(t);
				assert_int_equal(t->n_ints, 2);
				assert_true(t->ints[0] % 16 == 0);
				tagged++;
			}
		}
		if (simd)
		assert_int_equal(tagged, (int)g->hp.n_layer);
		tu_golden_graph_free(g, f);

		g = tu_golden_graph(models[m], &f);
		if (pass_pipeline_run(g, tu_data("../../examples/pipelines/sparsity_report.lua"),
				      &(PassRunOpts){.verify_each = true}, &e))
			fail_msg("sparsity_report on %s: %s", models[m], e.msg);
		const IrAttr *ppm = pass_gattr_find(g, "ternary_sparsity_ppm");
		assert_non_null(ppm);
		assert_int_equal(ppm->type, IR_ATTR_INT);
		/* ternary weights of a trained-like model: some, but far from all, zeros */
		assert_true(ppm->i > 50000 && ppm->i < 900000);
		tu_golden_graph_free(g, f);

		g = tu_golden_graph(models[m], &f);
		if (pass_pipeline_run(g, tu_data("../../examples/pipelines/quantized_head.lua"),
				      &(PassRunOpts){.verify_each = true}, &e))
			fail_msg("quantized_head on %s: %s", models[m], e.msg);
		char *text = tu_print_graph(g);
		assert_non_null(strstr(text, "token_embd.weight : q6_k["));
		free(text);
		tu_golden_graph_free(g, f);
	}
}

/* t5_weights.lua on the i2_s golden model: every ternary matmul weight in t5_x16, none
 * given a LUT kernel, the graph verified after each pass. */
static void test_example_t5(void **state)
{
	(void)state;
	BnErr e = {0};
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	if (pass_pipeline_run(g, tu_data("../../examples/pipelines/t5_weights.lua"),
			      &(PassRunOpts){.verify_each = true}, &e))
		fail_msg("t5_weights: %s", e.msg);
	int n = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const IrNode *nd = &g->nodes[i];
		if (nd->op != IR_OP_TERNARY_MATMUL)
			continue;
		assert_string_equal(g->values[nd->in[2]].layout, "t5_x16");
		for (int a = 0; a < nd->n_attrs; a++)
			assert_true(nd->attrs[a].type != IR_ATTR_STR || strcmp(nd->attrs[a].s, "lut") != 0);
		n++;
	}
	assert_int_equal(n, 7 * (int)g->hp.n_layer);
	tu_golden_graph_free(g, f);
}

/* Attributes a pipeline adds are hints: the interpreter's logits do not move. */
static void test_examples_keep_logits(void **state)
{
	(void)state;
	GgufFile *f1, *f2;
	IrGraph *a = tu_golden_graph("tiny-b158-i2_s", &f1), *b = tu_golden_graph("tiny-b158-i2_s", &f2);
	BnErr e = {0};
	if (pass_pipeline_run(b, tu_data("../../examples/pipelines/per_layer.lua"), NULL, &e))
		fail_msg("%s", e.msg);
	const int32_t toks[] = {496, 84, 104, 101};
	size_t nv = (size_t)a->hp.n_vocab;
	float *la = malloc(4 * nv * sizeof *la), *lb = malloc(4 * nv * sizeof *lb);
	IrInterp *ia = ir_interp_new(a, 16, &e), *ib = ir_interp_new(b, 16, &e);
	assert_non_null(ia);
	assert_non_null(ib);
	assert_int_equal(ir_interp_eval(ia, toks, 4, la, &e), BN_OK);
	assert_int_equal(ir_interp_eval(ib, toks, 4, lb, &e), BN_OK);
	assert_memory_equal(la, lb, 4 * nv * sizeof *la);
	ir_interp_free(ia);
	ir_interp_free(ib);
	free(la);
	free(lb);
	tu_golden_graph_free(a, f1);
	tu_golden_graph_free(b, f2);
}

/* Runs text as a pipeline on a fresh golden graph; returns the code, message in e. */
static int run_text(const char *name, const char *text, const PassRunOpts *ro, BnErr *e)
{
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	memset(e, 0, sizeof *e);
	int rc = pass_pipeline_run(g, tu_tmp_text(name, text), ro, e);
	tu_golden_graph_free(g, f);
	return rc;
}

#define HEAD "local bitnetc = require('bitnetc')\nlocal p = bitnetc.pipeline()\n"

static void expect_fail(const char *name, const char *text, int code, const char *const *parts)
{
	BnErr e = {0};
	int rc = run_text(name, text, &(PassRunOpts){.verify_each = true}, &e);
	if (rc != code)
		fail_msg("%s: rc %d, expected %d: %s", name, rc, code, e.msg);
	for (int i = 0; parts[i]; i++)
		if (!strstr(e.msg, parts[i]))
			fail_msg("%s: '%s' not in: %s", name, parts[i], e.msg);
}

static void test_errors(void **state)
{
	(void)state;
	/* a syntax error: the parser's file:line, no traceback */
	expect_fail("pl_syntax.lua", HEAD "p:add('dce'\nreturn p\n", BN_EINVAL,
		    (const char *const[]){"pl_syntax.lua:4:", "expected", NULL});
	/* a runtime error inside a Lua pass: the pass, the line, a traceback */
	expect_fail("pl_runtime.lua",
		    HEAD "p:add(function(g)\n\tlocal x = nil\n\treturn x.y\nend)\nreturn p\n",
		    BN_EINVAL,
		    (const char *const[]){"lua pass at ", "pl_runtime.lua:3", "pl_runtime.lua:5:",
					  "attempt to index", "stack traceback", NULL});
	expect_fail("pl_raise.lua", HEAD "p:add(function(g) error('boom') end, 'mine')\nreturn p\n",
		    BN_EINVAL,
		    (const char *const[]){"lua pass 'mine' at ", "pl_raise.lua:3:", "boom", NULL});
	/* an unknown pass name: the script line and the passes there are */
	expect_fail("pl_unknown.lua", HEAD "p:add('verify')\np:add('fuse_everything')\nreturn p\n",
		    BN_EINVAL,
		    (const char *const[]){"pl_unknown.lua:4:", "no pass named 'fuse_everything'",
					  "dce", NULL});
	/* bad option types */
	expect_fail("pl_badtype.lua", HEAD "p:add('batch_templates', {sizes = true})\nreturn p\n",
		    BN_EINVAL,
		    (const char *const[]){"pl_badtype.lua:3:", "batch_templates.sizes expects an int "
							       "list, got boolean",
					  NULL});
	expect_fail("pl_badlist.lua", HEAD "p:add('batch_templates', {sizes = {1, 'x'}})\nreturn p\n",
		    BN_EINVAL,
		    (const char *const[]){"pl_badlist.lua:3:", "batch_templates.sizes", NULL});
	expect_fail("pl_badstr.lua", HEAD "p:add('batch_templates', {sizes = '1,x'})\nreturn p\n",
		    BN_EINVAL,
		    (const char *const[]){"pl_badstr.lua:3:", "expected an int list", NULL});
	expect_fail("pl_badkey.lua", HEAD "p:add('dce', {x = 1})\nreturn p\n", BN_EINVAL,
		    (const char *const[]){"pl_badkey.lua:3:", "pass dce has no option 'x'", NULL});
	/* a Lua pass that breaks the graph: the verifier's message, naming the pass */
	expect_fail("pl_break.lua",
		    HEAD "p:add('dce')\np:add(function(g)\n"
			 "\tg:node('blk.0.attn_norm'):set_attr('eps', 1)\nend)\nreturn p\n",
		    BN_EVERIFY,
		    (const char *const[]){"after lua pass at ", "pl_break.lua:4 the graph does not "
								"verify",
					  "blk.0.attn_norm", "eps", "expected float", NULL});
	expect_fail("pl_breakop.lua",
		    HEAD "p:add(function(g)\n\tg:node('blk.0.ffn_out'):set_op('embed')\nend)\n"
			 "return p\n",
		    BN_EVERIFY,
		    (const char *const[]){"pl_breakop.lua:3 the graph does not verify",
					  "blk.0.ffn_out", NULL});
	/* a C pass's own error names the pass and the line that added it */
	expect_fail("pl_cpass.lua", HEAD "p:add('batch_templates', {sizes = {8, 32}})\nreturn p\n",
		    BN_EINVAL,
		    (const char *const[]){"pass batch_templates (", "pl_cpass.lua:3)",
					  "must include 1", NULL});
	/* a script that does not return its pipeline */
	expect_fail("pl_noreturn.lua", HEAD "p:add('dce')\n", BN_EINVAL,
		    (const char *const[]){"pl_noreturn.lua must return a pipeline", "got nil", NULL});
	/* a missing script */
	BnErr e = {0};
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	assert_int_equal(pass_pipeline_run(g, tu_tmp("pl_no_such_file.lua"), NULL, &e), BN_EIO);
	assert_non_null(strstr(e.msg, "pl_no_such_file.lua"));
	/* a dump after a pass that does not exist */
	assert_int_equal(pass_pipeline_run(g, NULL, &(PassRunOpts){.dump_after = "nope"}, &e),
			 BN_EINVAL);
	assert_non_null(strstr(e.msg, "'nope'"));
	tu_golden_graph_free(g, f);
}

/* "pass.key=value" strings: types, unknown names, overrides of the script's values. */
static void test_options(void **state)
{
	(void)state;
	PassOpts o = {0};
	BnErr e = {0};
	assert_int_equal(pass_opts_parse(&o, "dce.x=1", &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "pass dce has no option 'x'"));
	assert_non_null(strstr(e.msg, "no options"));
	assert_int_equal(pass_opts_parse(&o, "nope.x=1", &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "no pass named 'nope'"));
	assert_int_equal(pass_opts_parse(&o, "batch_templates.sizes=1,a", &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "expected an int list"));
	assert_int_equal(pass_opts_parse(&o, "batch_templates.sizes=", &e), BN_EINVAL);
	assert_int_equal(pass_opts_parse(&o, "garbage", &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "PASS.KEY=VALUE"));
	assert_int_equal(o.n, 0);
	assert_int_equal(pass_opts_parse(&o, "batch_templates.sizes=1,8", &e), BN_OK);
	assert_int_equal(pass_opts_parse(&o, "batch_templates.sizes=1,16", &e), BN_OK);
	assert_int_equal(o.n, 1); /* the later value replaces the earlier */
	int n = 0;
	const int64_t *v = pass_opt_ints(&o, "sizes", &n);
	assert_int_equal(n, 2);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], 16);
	assert_int_equal(pass_opt_int(&o, "sizes", -7), -7); /* another type: the default */
	assert_null(pass_opt_str(&o, "nope", NULL));

	/* a typed put checks the declared type */
	PassOptVal bad = {.pass = "batch_templates", .key = "sizes", .type = PASS_OPT_INT, .i = 1};
	assert_int_equal(pass_opts_put(&o, &bad, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "expects an int list, got an int"));

	/* the command line overrides the script */
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	if (pass_pipeline_run(g, NULL, &(PassRunOpts){.cli_opts = &o}, &e))
		fail_msg("%s", e.msg);
	expect_ints(pass_gattr_find(g, "batch_sizes"), (const int64_t[]){1, 16}, 2);
	/* unordered, with duplicates: sorted and deduplicated */
	if (pass_pipeline_run(g, tu_tmp_text("pl_sizes.lua",
					HEAD "p:add('batch_templates', {sizes = '32, 1,8,8'})\n"
					     "return p\n"),
			      NULL, &e))
		fail_msg("%s", e.msg);
	expect_ints(pass_gattr_find(g, "batch_sizes"), (const int64_t[]){1, 8, 32}, 3);
	pass_opts_free(&o);
	tu_golden_graph_free(g, f);
}

/* dump_after prints the IR after each run of the pass; describe lists every pass. */
static void test_dump_and_describe(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	char *buf = NULL;
	size_t n = 0;
	FILE *mf = open_memstream(&buf, &n);
	BnErr e = {0};
	if (pass_pipeline_run(g, NULL, &(PassRunOpts){.dump_after = "dce", .dump_file = mf}, &e))
		fail_msg("%s", e.msg);
	fclose(mf);
	assert_non_null(strstr(buf, "# after dce\ngraph \""));
	assert_non_null(strstr(buf, "ternary_matmul"));
	assert_null(strstr(buf, "# after verify"));
	free(buf);
	tu_golden_graph_free(g, f);

	buf = NULL;
	mf = open_memstream(&buf, &n);
	pass_pipeline_describe(mf);
	fclose(mf);
	int np;
	const PassInfo *p = pass_list(&np);
	for (int i = 0; i < np; i++) {
		assert_non_null(strstr(buf, p[i].name));
		assert_non_null(strstr(buf, p[i].contract));
	}
	assert_non_null(strstr(buf, "option batch_templates.sizes (int list, default 1,8,32,128)"));
	free(buf);
}

/* progress (a terminal's stdout in bitnetc build): each pass is named while it runs and
 * the name erased after; a pass of a second or more leaves a line with its time. */
static void test_progress(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	char *buf = NULL;
	size_t n = 0;
	FILE *mf = open_memstream(&buf, &n);
	BnErr e = {0};
	/* a Lua pass that spins for 1.1 s of CPU time (os.clock: the full libraries) */
	const char *path = tu_tmp_text("pl_progress.lua",
				       HEAD "p:add('dce')\np:add(function(g)\n\tlocal t = os.clock()\n"
					    "\twhile os.clock() - t < 1.1 do end\nend, 'spin')\n"
					    "return p\n");
	PassRunOpts ro = {.progress = mf, .lua = {.unsafe = true, .timeout = -1}};
	if (pass_pipeline_run(g, path, &ro, &e))
		fail_msg("%s", e.msg);
	fclose(mf);
	assert_non_null(strstr(buf, "          pass dce ...\r\033[K"));
	assert_null(strstr(buf, "pass dce: "));
	const char *spin = strstr(buf, "pl_progress.lua:4 ...\r\033[K          lua pass 'spin' at ");
	assert_non_null(spin);
	assert_non_null(strstr(spin, " s\n"));
	free(buf);
	tu_golden_graph_free(g, f);
}

/* The build's target and compiler reach the passes that measure kernels as graph
 * attributes (they once were cleared with the earlier run's attributes, so every target
 * measured the host's kernels); without a target none is set and they use native. */
static void test_build_attrs(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	BnErr e = {0};
	PassRunOpts ro = {.target = pass_target_for("cpu-avx2"), .cc = "gcc-12"};
	if (pass_pipeline_run(g, NULL, &ro, &e))
		fail_msg("%s", e.msg);
	const IrAttr *t = pass_gattr_find(g, "target"), *cc = pass_gattr_find(g, "cc");
	assert_non_null(t);
	assert_non_null(cc);
	assert_string_equal(t->s, "cpu-avx2");
	assert_string_equal(cc->s, "gcc-12");
	/* cpu-avx2 has no LUT kernels: lut_specialize saw the target and set nothing */
	const IrAttr *lf = pass_gattr_find(g, "lut_forwards");
	assert_non_null(lf);
	assert_int_equal(lf->i, 0);
	/* a fresh graph: the host's native may want another layout than cpu-avx2's */
	tu_golden_graph_free(g, f);
	g = tu_golden_graph("tiny-b158-i2_s", &f);
	ro = (PassRunOpts){0};
	if (pass_pipeline_run(g, NULL, &ro, &e))
		fail_msg("%s", e.msg);
	assert_null(pass_gattr_find(g, "target"));
	assert_null(pass_gattr_find(g, "cc"));
	tu_golden_graph_free(g, f);
}

/* Runs text with ro; the code, the message parts, and one line (no traceback). */
static void expect_limit(const char *name, const char *text, const PassRunOpts *ro, int code,
			 const char *const *parts)
{
	BnErr e;
	int rc = run_text(name, text, ro, &e);
	if (rc != code)
		fail_msg("%s: rc %d, expected %d: %s", name, rc, code, e.msg);
	for (int i = 0; parts[i]; i++)
		if (!strstr(e.msg, parts[i]))
			fail_msg("%s: '%s' not in: %s", name, parts[i], e.msg);
	if (strchr(e.msg, '\n'))
		fail_msg("%s: more than one line: %s", name, e.msg);
}

#define PARTS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A script that runs too long stops at the line it was on, in the script or in a Lua pass,
 * and pcall, xpcall or an error handler cannot catch the stop and run on. */
static void test_time_limit(void **state)
{
	(void)state;
	PassRunOpts ro = {.lua = {.timeout = 1}};
	expect_limit("pl_spin.lua", HEAD "while true do end\nreturn p\n", &ro, BN_EINVAL,
		     PARTS("pl_spin.lua:3: time limit", "may run for 1 s", "--lua-timeout S"));
	expect_limit("pl_spin_pass.lua",
		     HEAD "p:add('dce')\np:add(function(g)\n\tlocal n = 0\n"
			  "\twhile true do n = n + g.n_nodes end\nend, 'spin')\nreturn p\n",
		     &ro, BN_EINVAL, PARTS("pl_spin_pass.lua:6: time limit"));
	expect_limit("pl_spin_pcall.lua",
		     HEAD "while true do pcall(function() while true do end end) end\n"
			  "return p\n",
		     &ro, BN_EINVAL, PARTS("pl_spin_pcall.lua:3: time limit"));
	expect_limit("pl_spin_xpcall.lua",
		     HEAD "xpcall(function() while true do end end,\n"
			  "\tfunction(m) while true do end end)\nerror('caught')\nreturn p\n",
		     &ro, BN_EINVAL, PARTS("pl_spin_xpcall.lua:3: time limit"));
	/* the error's __tostring loops: the handler's call to it is bounded too */
	expect_limit("pl_spin_tostring.lua",
		     HEAD "error(setmetatable({}, {__tostring = function() while true do end end}))\n"
			  "return p\n",
		     &ro, BN_EINVAL, PARTS("pl_spin_tostring.lua:3: time limit"));
}

/* A script that holds too much stops with the line that asked for it; pcall cannot catch
 * it; the pipeline's own steps count. */
static void test_memory_limit(void **state)
{
	(void)state;
	PassRunOpts ro = {.lua = {.memory = 8 << 20}};
	expect_limit("pl_hog.lua", HEAD "local t = {}\nfor i = 1, 1e9 do t[i] = {i} end\nreturn p\n",
		     &ro, BN_ENOMEM,
		     PARTS("pl_hog.lua:4: not enough memory", "may hold 8 MiB", "--lua-memory MIB"));
	expect_limit("pl_big.lua",
		     HEAD "local x = 1\nfor i = 1, 3000 do x = x + i end\n"
			  "local s = string.rep('x', 64 << 20)\nreturn p\n",
		     &ro, BN_ENOMEM, PARTS("pl_big.lua:5: not enough memory"));
	expect_limit("pl_hog_pcall.lua",
		     HEAD "local ok = pcall(function()\n\tlocal t = {}\n"
			  "\tfor i = 1, 1e9 do t[i] = {i} end\nend)\nerror('caught')\nreturn p\n",
		     &ro, BN_ENOMEM, PARTS("pl_hog_pcall.lua:5: not enough memory"));
	expect_limit("pl_hog_pass.lua",
		     HEAD "p:add(function(g)\n\tlocal s = {}\n"
			  "\twhile true do s[#s + 1] = g:node(0) end\nend)\nreturn p\n",
		     &ro, BN_ENOMEM, PARTS("pl_hog_pass.lua:5: not enough memory"));
	/* 16 MiB of integers: over 8 MiB, under the default */
	const char *mid = HEAD "local t = {}\nfor i = 1, 1 << 20 do t[i] = i end\nreturn p\n";
	expect_limit("pl_mid.lua", mid, &ro, BN_ENOMEM, PARTS("pl_mid.lua:4: not enough memory"));
	BnErr e;
	if (run_text("pl_mid.lua", mid, NULL, &e))
		fail_msg("%s", e.msg);
	/* a pipeline has a bounded number of steps (C passes run outside the time limit) */
	expect_fail("pl_steps.lua", HEAD "for i = 1, 2000 do p:add('dce') end\nreturn p\n",
		    BN_EINVAL, PARTS("pl_steps.lua:3:", "at most 1024 steps"));
}

/* Runs `bitnetc build` with text as the pipeline; expects exit 2, stderr "bitnetc: ..."
 * with every part (one line for a limit or a syntax error; a runtime error adds a
 * traceback), and no program. */
static void expect_driver(const char *name, const char *text, const char *flags, bool one_line,
			  const char *const *parts)
{
	const char *path = tu_tmp_text(name, text);
	char out[1100];
	snprintf(out, sizeof out, "%s.prog", path);
	unlink(out);
	char *log = NULL;
	int rc = tu_run(&log, "{ '%s' build '%s' -o '%s' --pipeline '%s' %s 2>&1 >/dev/null; }",
			tu_bitnetc(), tu_data("golden/models/tiny-b158-i2_s.gguf"), out, path, flags);
	if (rc != 2)
		fail_msg("%s %s: exit %d, expected 2: %s", name, flags, rc, log);
	for (int i = 0; parts[i]; i++)
		if (!strstr(log, parts[i]))
			fail_msg("%s %s: '%s' not in: %s", name, flags, parts[i], log);
	char *nl = strchr(log, '\n');
	if (strncmp(log, "bitnetc: ", 9) != 0 || !nl || (one_line && nl[1]))
		fail_msg("%s %s: not one line 'bitnetc: ...': %s", name, flags, log);
	if (access(out, F_OK) == 0)
		fail_msg("%s %s: %s was written", name, flags, out);
	free(log);
}

static void test_driver_limits(void **state)
{
	(void)state;
	expect_driver("pl_d_spin.lua", HEAD "p:add('dce')\nwhile true do end\nreturn p\n",
		      "--lua-timeout 1", true,
		      PARTS("pl_d_spin.lua:4: time limit", "may run for 1 s",
			    "(--lua-timeout S raises the limit, 0 removes it)"));
	/* one call into C that backtracks for ever: the hook cannot fire, the watchdog ends it */
	expect_driver("pl_d_pattern.lua",
		      HEAD "p:add('dce')\nlocal s = ('a'):rep(40)\n"
			   "if s:find(('a*'):rep(40) .. 'b') then p:add('dce') end\nreturn p\n",
		      "--lua-timeout 1", true,
		      PARTS("pl_d_pattern.lua: time limit", "may run for 1 s",
			    "cannot be interrupted", "(--lua-timeout S raises the limit"));
	expect_driver("pl_d_hog.lua", HEAD "local t = {}\nwhile true do t[#t + 1] = {} end\nreturn p\n",
		      "--lua-memory 4", true,
		      PARTS("pl_d_hog.lua:4: not enough memory", "may hold 4 MiB",
			    "(--lua-memory MIB raises the limit, 0 removes it)"));
	/* os.exit(0) would end the build with 0 and no program */
	expect_driver("pl_d_exit.lua", HEAD "os.exit(0)\nreturn p\n", "--lua-unsafe", false,
		      PARTS("pl_d_exit.lua:3: os.exit: a pipeline cannot end bitnetc"));
	expect_driver("pl_d_exit.lua", HEAD "os.exit(0)\nreturn p\n", "", false,
		      PARTS("pl_d_exit.lua:3: os is not available to a sandboxed pipeline",
			    "--lua-unsafe"));
	expect_driver("pl_d_syntax.lua", HEAD "p:add('dce'\nreturn p\n", "", true,
		      PARTS("pl_d_syntax.lua:4:", "expected"));
	/* the sandbox and --lua-unsafe through `bitnetc ir` */
	const char *model = tu_data("golden/models/tiny-b158-i2_s.gguf");
	const char *rd = tu_tmp_text("pl_d_read.lua", HEAD "assert(io.open('/dev/null')):close()\n"
						 "p:add('dce')\nreturn p\n");
	char *log = NULL;
	assert_int_equal(tu_run(&log, "'%s' ir '%s' --pipeline '%s'", tu_bitnetc(), model, rd), 2);
	assert_non_null(strstr(log, "pl_d_read.lua:3: io.open is not available"));
	free(log);
	assert_int_equal(tu_run(&log, "'%s' ir '%s' --pipeline '%s' --lua-unsafe --lua-timeout 0 "
				      "--lua-memory 0",
				tu_bitnetc(), model, rd),
			 0);
	assert_non_null(strstr(log, "ternary_matmul"));
	free(log);
	/* bad values are usage errors */
	assert_int_equal(tu_run(NULL, "'%s' ir '%s' --lua-timeout x", tu_bitnetc(), model), 1);
	assert_int_equal(tu_run(NULL, "'%s' ir '%s' --lua-memory -1", tu_bitnetc(), model), 1);
	assert_int_equal(tu_run(NULL, "'%s' build '%s' -o x --lua-timeout", tu_bitnetc(), model), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_example_t5),
		cmocka_unit_test(test_examples_keep_logits),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_dump_and_describe),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_build_attrs),
		cmocka_unit_test(test_time_limit),
		cmocka_unit_test(test_memory_limit),
		cmocka_unit_test(test_driver_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
