/* test_fuse.c - the fuse pass: on every golden model the default pipeline leaves a verified
 * graph whose norm+quantize pairs are rmsnorm_quant nodes, and whose interpreted logits are
 * bit-identical to the unfused graph's; the pass leaves alone a norm with other readers. */
#include "testutil.h"
#include "frontend.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>

static const char *const models[] = {
	"tiny-b158-i2_s", "tiny-b158-tq2_0", "tiny-b158-tq1_0", "tinyold-bitnet-i2_s",
};

static IrGraph *load(const char *model, GgufFile **f)
{
	char rel[256];
	snprintf(rel, sizeof rel, "golden/models/%s.gguf", model);
	BnErr e = {0};
	*f = gguf_open(tu_data(rel), &e);
	if (!*f)
		fail_msg("%s", e.msg);
	IrGraph *g = bnm_load(*f, &e);
	if (!g)
		fail_msg("%s: %s", model, e.msg);
	return g;
}

static void unload(IrGraph *g, GgufFile *f)
{
	pass_gattr_clear(g);
	ir_graph_free(g);
	gguf_close(f);
}

static int count_op(const IrGraph *g, IrOp op)
{
	int n = 0;
	for (int i = 0; i < g->n_nodes; i++)
		n += g->nodes[i].op == op;
	return n;
}

/* rmsnorm nodes whose output is read by exactly one node, a quant_act, and not the logits */
static int count_pairs(const IrGraph *g)
{
	int pairs = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		if (g->nodes[i].op != IR_OP_RMSNORM || g->nodes[i].out[0] == g->logits)
			continue;
		int uses = 0, qa = 0;
		for (int j = 0; j < g->n_nodes; j++)
			for (int k = 0; k < g->nodes[j].n_in; k++)
				if (g->nodes[j].in[k] == g->nodes[i].out[0]) {
					uses++;
					qa += g->nodes[j].op == IR_OP_QUANT_ACT;
				}
		pairs += uses == 1 && qa == 1;
	}
	return pairs;
}

/* 10 tokens: one call of 7, then three single-token steps; nv logits per token. */
static float *run10(const IrGraph *g, int64_t nv)
{
	static const int32_t toks[10] = {496, 84, 104, 101, 32, 7, 250, 13, 99, 1};
	BnErr e = {0};
	float *l = malloc(10 * (size_t)nv * sizeof *l);
	assert_non_null(l);
	IrInterp *it = ir_interp_new(g, 32, &e);
	if (!it)
		fail_msg("%s", e.msg);
	if (ir_interp_eval(it, toks, 7, l, &e))
		fail_msg("%s", e.msg);
	for (int i = 7; i < 10; i++)
		if (ir_interp_eval(it, toks + i, 1, l + (size_t)i * (size_t)nv, &e))
			fail_msg("%s", e.msg);
	ir_interp_free(it);
	return l;
}

static void test_models(void **state)
{
	(void)state;
	for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
		GgufFile *fa, *fb;
		IrGraph *a = load(models[m], &fa), *b = load(models[m], &fb);
		BnErr e = {0};
		if (pass_run(a, "dce", NULL, &e))
			fail_msg("%s: %s", models[m], e.msg);
		int pairs = count_pairs(a), norms = count_op(a, IR_OP_RMSNORM);
		int quants = count_op(a, IR_OP_QUANT_ACT);
		assert_int_equal(count_op(a, IR_OP_RMSNORM_QUANT), 0);
		if (pass_pipeline_run(b, NULL, &(PassRunOpts){.verify_each = true}, &e))
			fail_msg("%s: %s", models[m], e.msg);
		assert_int_equal(ir_verify(b, &e), BN_OK);

		/* every pair fused, nothing else touched, the fused norms gone */
		assert_true(pairs > 0);
		assert_int_equal(count_op(b, IR_OP_RMSNORM_QUANT), pairs);
		assert_int_equal(count_op(b, IR_OP_RMSNORM), norms - pairs);
		assert_int_equal(count_op(b, IR_OP_QUANT_ACT), quants - pairs);
		assert_int_equal(b->n_nodes, a->n_nodes - pairs);
		if (strcmp(a->arch, "bitnet-b1.58") == 0) {
			/* attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm; the head reads result_norm */
			assert_int_equal(pairs, 4 * a->hp.n_layer);
			assert_int_equal(count_op(b, IR_OP_RMSNORM), 1);
		}
		for (int i = 0; i < b->n_nodes; i++) {
			const IrNode *n = &b->nodes[i];
			if (n->op != IR_OP_RMSNORM_QUANT)
				continue;
			assert_non_null(ir_attr_find(n, "eps"));
			assert_non_null(ir_attr_find(n, "mode"));
			assert_int_equal(n->n_in, 2); /* the norm's x and weight */
		}

		int64_t nv = a->hp.n_vocab;
		float *la = run10(a, nv), *lb = run10(b, nv);
		assert_memory_equal(la, lb, 10 * (size_t)nv * sizeof *la);
		free(la);
		free(lb);
		unload(a, fa);
		unload(b, fb);
	}
}

/* A norm with a second reader is not fused; fuse alone keeps every id and leaves the fused
 * norm unread for dce; the result verifies. */
static void test_partial(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = load("tiny-b158-i2_s", &f);
	BnErr e = {0};
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_OK);
	int pairs = count_pairs(g);
	/* give the first pair's norm a second reader: the head's norm now reads it */
	IrId first = IR_NONE, rn = IR_NONE;
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_RMSNORM) {
			if (first == IR_NONE)
				first = i;
			rn = i;
		}
	assert_true(first != rn);
	g->nodes[rn].in[0] = g->nodes[first].out[0];
	assert_int_equal(ir_verify(g, &e), BN_OK);
	int nn = g->n_nodes, nvals = g->n_values;
	assert_int_equal(pass_run(g, "fuse", NULL, &e), BN_OK);
	assert_int_equal(g->n_nodes, nn);
	assert_int_equal(g->n_values, nvals);
	assert_int_equal(count_op(g, IR_OP_RMSNORM_QUANT), pairs - 1);
	assert_int_equal(g->nodes[first].op, IR_OP_RMSNORM);
	assert_int_equal(count_op(g, IR_OP_RMSNORM), pairs + 1); /* fused norms, still there */
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_OK);
	assert_int_equal(count_op(g, IR_OP_RMSNORM), 2);
	unload(g, f);
}

/* The verifier checks rmsnorm_quant like rmsnorm + quant_act: mode, eps, output shapes. */
static void test_verify(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = load("tiny-b158-tq2_0", &f);
	BnErr e = {0};
	assert_int_equal(pass_run(g, "fuse", NULL, &e), BN_OK);
	IrId rq = IR_NONE;
	for (int i = 0; i < g->n_nodes && rq == IR_NONE; i++)
		if (g->nodes[i].op == IR_OP_RMSNORM_QUANT)
			rq = i;
	assert_true(rq != IR_NONE);
	assert_int_equal(ir_verify(g, &e), BN_OK);

	ir_attr_set_str(g, rq, "mode", "token"); /* TQ2_0 needs block256 */
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "(rmsnorm_quant) has mode=token"));
	ir_attr_set_str(g, rq, "mode", "block256");
	ir_attr_set_float(g, rq, "eps", -1.0);
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "(rmsnorm_quant): attribute eps"));
	ir_attr_set_float(g, rq, "eps", 1e-5);
	g->values[g->nodes[rq].out[1]].ne[0] += 1;
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "(rmsnorm_quant): output 1"));
	unload(g, f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_verify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
