/* test_pipeline.c - Lua pipelines end to end: the default pipeline, the example scripts on
 * golden models, error reports (syntax, runtime, unknown pass, bad option, broken graph),
 * pass options, dumps and timings. */
#include "testutil.h"
#include "cg_cpu.h"
#include "frontend.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>


/* Writes a script into the test tmp dir; returns its path (a tu_tmp slot). */
static const char *script(const char *name, const char *text)
{
	const char *path = tu_tmp(name);
	assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
	return path;
}

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
 * lut_specialize, tune_kernels, plan_memory) and
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
	assert_int_equal(st.n, 9);
	assert_string_equal(st.t[0].name, "infer_shapes");
	assert_string_equal(st.t[1].name, "dce");
	assert_string_equal(st.t[2].name, "fuse");
	assert_string_equal(st.t[3].name, "dce");
	assert_string_equal(st.t[4].name, "permute_weights");
	assert_string_equal(st.t[5].name, "batch_templates");
	assert_string_equal(st.t[6].name, "lut_specialize");
	assert_string_equal(st.t[7].name, "tune_kernels");
	assert_string_equal(st.t[8].name, "plan_memory");
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

/* Every example script runs on golden models, and what it records is there. */
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
	}
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
	int rc = pass_pipeline_run(g, script(name, text), ro, e);
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
	if (pass_pipeline_run(g, script("pl_sizes.lua",
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_examples_keep_logits),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_dump_and_describe),
		cmocka_unit_test(test_build_attrs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
