/* test_lut_specialize.c - the lut_specialize pass: the cost model's choice per target
 * (LUT for portable C, multiply-add where the target has int8 dot products, nothing on a
 * target without LUT kernels), forced modes, a script's own choice left alone, and a
 * recorded measurement in the tuning file overriding the cost model for its shape and
 * batch size only. The kernels themselves are checked against the interpreter in
 * tests/e2e/test_kernels.c. */
#include "testutil.h"

#include "frontend.h"
#include "pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The golden model after permute_weights and batch_templates {1, 16}, built for target. */
static IrGraph *prepared(const char *target, GgufFile **f)
{
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", f);
	BnErr e = {0};
	PassOpts o = {0}, l = {0};
	/* the weights in i2s_x16 whatever the host (cpu-generic's own choice is gguf) */
	if (pass_run(g, "dce", NULL, &e) ||
	    pass_opts_set(&l, "permute_weights", "layout", "i2s_x16", &e) ||
	    pass_run(g, "permute_weights", &l, &e) ||
	    pass_opts_set(&o, "batch_templates", "sizes", "1,16", &e) ||
	    pass_run(g, "batch_templates", &o, &e) || pass_gattr_set_str(g, "target", target, &e))
		fail_msg("%s", e.msg);
	pass_opts_free(&o);
	pass_opts_free(&l);
	return g;
}

/* Runs lut_specialize with "key=value" options (NULL-terminated); returns its status. */
static int run_pass(IrGraph *g, const char *const *kv, BnErr *e)
{
	PassOpts o = {0};
	for (int i = 0; kv && kv[i]; i++) {
		char spec[4300];
		snprintf(spec, sizeof spec, "lut_specialize.%s", kv[i]);
		if (pass_opts_parse(&o, spec, e))
			fail_msg("%s", e->msg);
	}
	int rc = pass_run(g, "lut_specialize", &o, e);
	pass_opts_free(&o);
	return rc;
}

/* How many ternary matmuls have kernel_t<s> == want. */
static int count(const IrGraph *g, int s, const char *want)
{
	char key[32];
	snprintf(key, sizeof key, "kernel_t%d", s);
	int k = 0;
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_TERNARY_MATMUL)
			k += strcmp(ir_attr_str(&g->nodes[i], key, "-"), want) == 0;
	return k;
}

static int n_matmuls(const IrGraph *g)
{
	int k = 0;
	for (int i = 0; i < g->n_nodes; i++)
		k += g->nodes[i].op == IR_OP_TERNARY_MATMUL;
	return k;
}

static const char *file_opt(void)
{
	static char opt[4200];
	snprintf(opt, sizeof opt, "file=%s", tu_tmp("lut_tune.tsv"));
	return opt;
}

static void test_cost_model(void **state)
{
	(void)state;
	unlink(tu_tmp("lut_tune.tsv"));
	const char *kv[] = {file_opt(), NULL};
	static const struct {
		const char *target, *want; /* the kernel every matmul gets, both templates */
	} v[] = {
		{"cpu-generic", "lut"},   /* table loads beat scalar multiplies */
		{"cpu-neon-dot", "simd"}, /* sdot */
		{"cpu-neon", "simd"},     /* widening multiplies, tbl with 4 registers is dearer */
		{"cpu-avx512", "-"},      /* no VBMI asked for: no LUT kernels, nothing set */
		{"cpu-avx2", "-"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		GgufFile *f;
		IrGraph *g = prepared(v[i].target, &f);
		BnErr e = {0};
		if (run_pass(g, kv, &e))
			fail_msg("%s: %s", v[i].target, e.msg);
		int n = n_matmuls(g);
		assert_true(n > 0);
		if (strcmp(v[i].want, "-") == 0) {
			assert_int_equal(count(g, 1, "lut") + count(g, 1, "simd"), 0);
		} else {
			assert_int_equal(count(g, 1, v[i].want), n);
			assert_int_equal(count(g, 16, v[i].want), n);
		}
		const IrAttr *a = pass_gattr_find(g, "lut_forwards");
		assert_non_null(a);
		assert_int_equal(a->i, strcmp(v[i].want, "lut") == 0 ? 2 * n : 0);
		tu_golden_graph_free(g, f);
	}
}

static void test_modes(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = prepared("cpu-neon-dot", &f);
	BnErr e = {0};
	/* a script's choice stays: blk.0.attn_q keeps its kernel attribute and gets no other */
	int q0 = -1;
	for (int i = 0; i < g->n_nodes; i++)
		if (strcmp(g->nodes[i].name, "blk.0.attn_q") == 0)
			q0 = i;
	assert_true(q0 >= 0);
	ir_attr_set_str(g, q0, "kernel", "portable");
	const char *lut[] = {"mode=lut", NULL};
	assert_int_equal(run_pass(g, lut, &e), 0);
	int n = n_matmuls(g);
	assert_int_equal(count(g, 1, "lut"), n - 1);
	assert_int_equal(count(g, 16, "lut"), n - 1);
	assert_null(ir_attr_find(&g->nodes[q0], "kernel_t1"));
	tu_golden_graph_free(g, f);

	/* mode lut where the target has none: an error naming the target */
	g = prepared("cpu-avx2", &f);
	assert_int_not_equal(run_pass(g, lut, &e), 0);
	assert_non_null(strstr(e.msg, "cpu-avx2"));
	/* a bad mode names the option */
	const char *bad[] = {"mode=fast", NULL};
	assert_int_not_equal(run_pass(g, bad, &e), 0);
	assert_non_null(strstr(e.msg, "mode"));
	tu_golden_graph_free(g, f);
}

/* A measurement recorded for one (shape, batch size) overrides the cost model there only;
 * a line for another CPU or target is ignored, and tune_kernels' tile lines (register tiles
 * and AMX blocks) do not confuse it. */
static void test_tuning_file(void **state)
{
	(void)state;
	char cpu[256];
	pass_tune_cpu_model(cpu, sizeof cpu);
	char text[2048];
	snprintf(text, sizeof text,
		 "%s\tcpu-neon-dot\t256\t768\t1\tlut\t2000\t1000\n"
		 "%s\tcpu-neon\t256\t256\t1\tlut\t2000\t1000\n"
		 "another cpu\tcpu-neon-dot\t256\t256\t1\tlut\t2000\t1000\n"
		 "%s\tcpu-neon-dot\t256\t256\t16\t32\t4\t5000\n"
		 "%s\tcpu-neon-dot\t256\t256\t1\tamx_emu\t32\t16\t5000\n",
		 cpu, cpu, cpu, cpu);
	assert_int_equal(tu_write_file(tu_tmp("lut_tune.tsv"), text, strlen(text)), 0);
	GgufFile *f;
	IrGraph *g = prepared("cpu-neon-dot", &f);
	BnErr e = {0};
	const char *kv[] = {file_opt(), NULL};
	if (run_pass(g, kv, &e))
		fail_msg("%s", e.msg);
	/* [256, 768]: ffn_gate and ffn_up of 4 layers */
	assert_int_equal(count(g, 1, "lut"), 8);
	assert_int_equal(count(g, 16, "lut"), 0);
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_TERNARY_MATMUL &&
		    strcmp(ir_attr_str(&g->nodes[i], "kernel_t1", ""), "lut") == 0)
			assert_int_equal(g->values[g->nodes[i].in[2]].ne[1], 768);
	tu_golden_graph_free(g, f);
	unlink(tu_tmp("lut_tune.tsv"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cost_model),
		cmocka_unit_test(test_modes),
		cmocka_unit_test(test_tuning_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
