/* test_passes.c - the pass registry, pass_run's verification, dead code elimination, and
 * permute_weights' thread count (the same bytes for any). */
#include "testutil.h"
#include "frontend.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>

enum { EMBD = 8, VOCAB = 16 };
static float tok_embd[EMBD * VOCAB], out_w[EMBD * VOCAB], norm_w[EMBD];

/* A small model by hand:
 *   %0 tokens, %1 token_embd, %2 output.weight (unused), %3 norm.weight
 *   node 0 embed -> %4; node 1 rmsnorm(%4) -> %5 (dead); node 2 add(%5, %5) -> %6 (dead,
 *   and the only reader of %5); node 3 rmsnorm(%4, %3) -> %7; node 4 matmul(%7, %1) -> %8
 * logits %8. */
static IrGraph *small_graph(void)
{
	IrGraph *g = ir_graph_new("small", "bitnet-b1.58");
	assert_non_null(g);
	g->hp.n_embd = EMBD;
	g->hp.n_vocab = VOCAB;
	g->hp.n_layer = 0;
	g->hp.eps = 1e-5f;
	const int64_t t1[] = {IR_DIM_T}, wne[] = {EMBD, VOCAB}, nne[] = {EMBD};
	const int64_t rows[] = {EMBD, IR_DIM_T}, lrows[] = {VOCAB, IR_DIM_T};
	uint64_t st = 7;
	for (int i = 0; i < EMBD * VOCAB; i++)
		tok_embd[i] = tu_randf(&st), out_w[i] = tu_randf(&st);
	for (int i = 0; i < EMBD; i++)
		norm_w[i] = 1.0f + 0.1f * (float)i;

	IrId tok = ir_value_input(g, "tokens", IR_DT_I32, 1, t1);
	IrId emb = ir_value_const(g, "token_embd.weight", IR_DT_F32, 2, wne, tok_embd,
				  sizeof tok_embd);
	ir_value_const(g, "output.weight", IR_DT_F32, 2, wne, out_w, sizeof out_w);
	IrId nw = ir_value_const(g, "output_norm.weight", IR_DT_F32, 1, nne, norm_w,
				 sizeof norm_w);
	IrId x = ir_node1(g, IR_OP_EMBED, "inp_embd", (IrId[]){tok, emb}, 2, IR_DT_F32, 2, rows);
	IrId d = ir_node1(g, IR_OP_RMSNORM, "dead_norm", (IrId[]){x}, 1, IR_DT_F32, 2, rows);
	ir_attr_set_float(g, g->values[d].producer, "eps", 1e-5);
	ir_node1(g, IR_OP_ADD, "dead_add", (IrId[]){d, d}, 2, IR_DT_F32, 2, rows);
	IrId h = ir_node1(g, IR_OP_RMSNORM, "result_norm", (IrId[]){x, nw}, 2, IR_DT_F32, 2, rows);
	ir_attr_set_float(g, g->values[h].producer, "eps", 1e-5);
	g->logits = ir_node1(g, IR_OP_MATMUL, "result_output", (IrId[]){h, emb}, 2, IR_DT_F32, 2,
			     lrows);
	g->tokens = tok;
	BnErr e = {0};
	if (ir_verify(g, &e))
		fail_msg("hand-built graph does not verify: %s", e.msg);
	assert_int_equal(g->n_values, 9);
	assert_int_equal(g->n_nodes, 5);
	return g;
}

/* The printed graph as a malloc'd string. */
static char *print_graph(const IrGraph *g)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	assert_non_null(f);
	ir_print(g, f);
	fclose(f);
	return buf;
}

static void test_registry(void **state)
{
	(void)state;
	int n = 0;
	const PassInfo *p = pass_list(&n);
	assert_true(n >= 1);
	for (int i = 0; i < n; i++) {
		assert_non_null(p[i].fn);
		assert_non_null(strstr(p[i].contract, "requires"));
		assert_ptr_equal(pass_find(p[i].name), &p[i]);
	}
	assert_non_null(pass_find("dce"));
	assert_null(pass_find("nope"));
	assert_null(pass_find(NULL));

	IrGraph *g = small_graph();
	BnErr e = {0};
	assert_int_equal(pass_run(g, "nope", NULL, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "'nope'"));
	ir_graph_free(g);
}

static void test_dce_small(void **state)
{
	(void)state;
	IrGraph *g = small_graph();
	BnErr e = {0};
	if (pass_run(g, "dce", NULL, &e))
		fail_msg("dce: %s", e.msg);
	/* output.weight, dead_norm's and dead_add's outputs are gone; ids are compacted. */
	assert_int_equal(g->n_values, 6);
	assert_int_equal(g->n_nodes, 3);
	assert_int_equal(g->tokens, 0);
	assert_int_equal(g->logits, 5);
	for (int i = 0; i < g->n_values; i++)
		assert_string_not_equal(g->values[i].name, "output.weight");
	assert_string_equal(g->nodes[0].name, "inp_embd");
	assert_string_equal(g->nodes[1].name, "result_norm");
	assert_string_equal(g->nodes[2].name, "result_output");
	assert_int_equal(g->values[5].producer, 2);
	assert_int_equal(g->values[3].producer, 0);

	char *txt = print_graph(g);
	assert_null(strstr(txt, "output.weight"));
	assert_null(strstr(txt, "dead_"));
	assert_non_null(strstr(txt, "input  %0 tokens : i32[T]"));
	assert_non_null(strstr(txt, "const  %1 token_embd.weight : f32[8, 16]"));
	assert_non_null(strstr(txt, "const  %2 output_norm.weight : f32[8]"));
	assert_non_null(strstr(txt, "%3 = embed(%0, %1)"));
	assert_non_null(strstr(txt, "%4 = rmsnorm(%3, %2) eps=1e-05"));
	assert_non_null(strstr(txt, "%5 = matmul(%4, %1)"));
	assert_non_null(strstr(txt, "# node 2 'result_output'"));
	assert_non_null(strstr(txt, "output %5"));
	free(txt);

	/* Idempotent: a second run removes nothing and prints the same bytes. */
	char *before = print_graph(g);
	assert_int_equal(pass_run(g, "dce", &(PassOpts){.verbose = 0}, &e), BN_OK);
	char *after = print_graph(g);
	assert_string_equal(before, after);
	free(before);
	free(after);
	ir_graph_free(g);
}

/* Liveness follows uses, not names: routing the head through dead_norm keeps it (and its
 * input chain) and drops result_norm and its weight instead. */
static void test_dce_follows_uses(void **state)
{
	(void)state;
	IrGraph *g = small_graph();
	/* Reroute: logits no longer depend on result_norm; dead_norm feeds the head. */
	g->nodes[4].in[0] = 5;
	BnErr e = {0};
	assert_int_equal(ir_verify(g, &e), BN_OK);
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_OK);
	/* kept: tokens, token_embd, the embedding, dead_norm's output, logits; gone:
	 * output.weight, output_norm.weight, dead_add, result_norm */
	assert_int_equal(g->n_values, 5);
	assert_int_equal(g->n_nodes, 3);
	assert_string_equal(g->nodes[1].name, "dead_norm");
	ir_graph_free(g);
}

/* A graph that does not verify after the pass is reported with the pass's name. */
static void test_pass_run_reports_verifier(void **state)
{
	(void)state;
	IrGraph *g = small_graph();
	ir_attr_set_float(g, 3, "eps", -1.0); /* result_norm: survives dce, breaks the check */
	BnErr e = {0};
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "after pass dce"));
	assert_non_null(strstr(e.msg, "result_norm"));
	assert_non_null(strstr(e.msg, "eps"));
	ir_graph_free(g);

	g = small_graph();
	g->logits = IR_NONE;
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "pass dce"));
	ir_graph_free(g);
}

/* On a real model, dce leaves a verified graph that computes the same logits. */
static void test_dce_model(void **state)
{
	(void)state;
	const char *path = tu_data("golden/models/tiny-b158-i2_s.gguf");
	BnErr e = {0};
	GgufFile *f = gguf_open(path, &e);
	if (!f)
		fail_msg("%s", e.msg);
	IrGraph *a = bnm_load(f, &e), *b = bnm_load(f, &e);
	if (!a || !b)
		fail_msg("%s", e.msg);
	if (pass_run(b, "dce", NULL, &e))
		fail_msg("%s", e.msg);
	assert_true(b->n_nodes <= a->n_nodes);
	const int32_t toks[] = {496, 84, 104, 101};
	int64_t nv = a->hp.n_vocab;
	float *la = malloc(4 * (size_t)nv * sizeof *la), *lb = malloc(4 * (size_t)nv * sizeof *lb);
	IrInterp *ia = ir_interp_new(a, 16, &e), *ib = ir_interp_new(b, 16, &e);
	assert_non_null(ia);
	assert_non_null(ib);
	assert_int_equal(ir_interp_eval(ia, toks, 4, la, &e), BN_OK);
	assert_int_equal(ir_interp_eval(ib, toks, 4, lb, &e), BN_OK);
	assert_memory_equal(la, lb, 4 * (size_t)nv * sizeof *la);
	ir_interp_free(ia);
	ir_interp_free(ib);
	free(la);
	free(lb);
	ir_graph_free(a);
	ir_graph_free(b);
	gguf_close(f);
}

/* Every repacked weight's bytes, in value order, after permute_weights with `threads`
 * (malloc'd; *n the size; *count the weights). */
static uint8_t *permuted(const char *threads, uint64_t *n, int *count)
{
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	BnErr e = {0};
	PassOpts o = {0};
	if (pass_opts_set(&o, "permute_weights", "layout", "i2s_x16", &e) ||
	    pass_opts_set(&o, "permute_weights", "threads", threads, &e) ||
	    pass_run(g, "permute_weights", &o, &e))
		fail_msg("%s", e.msg);
	pass_opts_free(&o);
	uint8_t *all = NULL;
	*n = 0;
	*count = 0;
	for (int i = 0; i < g->n_values; i++) {
		const IrValue *v = &g->values[i];
		if (!v->layout || strcmp(v->layout, "i2s_x16") != 0)
			continue;
		all = realloc(all, *n + v->nbytes);
		assert_non_null(all);
		memcpy(all + *n, v->data, v->nbytes);
		*n += v->nbytes;
		(*count)++;
	}
	pass_gattr_clear(g);
	ir_graph_free(g);
	gguf_close(f);
	return all;
}

static void test_permute_threads(void **state)
{
	(void)state;
	uint64_t n1, n;
	int c1, c;
	uint8_t *one = permuted("1", &n1, &c1);
	assert_true(c1 > 1);
	static const char *const counts[] = {"2", "3", "256", "0"};
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		uint8_t *many = permuted(counts[i], &n, &c);
		assert_int_equal(c, c1);
		assert_int_equal(n, n1);
		if (memcmp(one, many, n) != 0)
			fail_msg("permute_weights: %s threads give other bytes than 1", counts[i]);
		free(many);
	}
	free(one);
	/* out of range: refused, nothing repacked */
	static const char *const bad[] = {"-1", "257"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		GgufFile *f;
		IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
		BnErr e = {0};
		PassOpts o = {0};
		assert_int_equal(pass_opts_set(&o, "permute_weights", "threads", bad[i], &e), 0);
		assert_int_not_equal(pass_run(g, "permute_weights", &o, &e), 0);
		assert_non_null(strstr(e.msg, "threads"));
		assert_non_null(strstr(e.msg, bad[i]));
		for (int k = 0; k < g->n_values; k++)
			assert_true(!g->values[k].layout || strcmp(g->values[k].layout, "i2s_x16") != 0);
		pass_opts_free(&o);
		pass_gattr_clear(g);
		ir_graph_free(g);
		gguf_close(f);
	}
}

/* layout = "t5_x16": every ternary matmul weight repacked into 5 trits per byte (its byte
 * count ir_layout_nbytes's, 0.8x plus the scale's 32), rows and scale decoded as the GGUF
 * ones, the graph still verified; an unknown layout is refused naming the known ones. */
static void test_permute_t5(void **state)
{
	(void)state;
	GgufFile *f, *f0;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	IrGraph *g0 = tu_golden_graph("tiny-b158-i2_s", &f0);
	BnErr e = {0};
	PassOpts o = {0};
	if (pass_opts_set(&o, "permute_weights", "layout", "t5_x16", &e) ||
	    pass_run(g, "permute_weights", &o, &e) || ir_verify(g, &e))
		fail_msg("%s", e.msg);
	pass_opts_free(&o);
	int n = 0;
	for (int i = 0; i < g->n_values; i++) {
		const IrValue *v = &g->values[i], *v0 = &g0->values[i];
		if (!v->layout || strcmp(v->layout, "t5_x16") != 0)
			continue;
		int64_t k = v->ne[0], rows = v->ne[1];
		assert_int_equal(v->nbytes, (uint64_t)(rows / 16) * (uint64_t)((k + 19) / 20) * 64 + 32);
		assert_true(v->nbytes < v0->nbytes);
		int8_t *w = malloc((size_t)k), *w0 = malloc((size_t)k);
		assert_non_null(w);
		assert_non_null(w0);
		for (int64_t r = 0; r < rows; r++) {
			float s, s0;
			ir_ternary_row_at(v->layout, v->dtype, v->data, k, rows, r, w, &s);
			ir_ternary_row_at("gguf", v0->dtype, v0->data, k, rows, r, w0, &s0);
			assert_memory_equal(w, w0, (size_t)k);
			assert_true(s == s0);
		}
		free(w);
		free(w0);
		n++;
	}
	assert_true(n >= 7 * 4); /* q k v o gate up down per layer */
	pass_gattr_clear(g);
	ir_graph_free(g);
	gguf_close(f);
	ir_graph_free(g0);
	gguf_close(f0);
	/* a layout that does not exist: refused before anything is repacked */
	g = tu_golden_graph("tiny-b158-i2_s", &f);
	o = (PassOpts){0};
	assert_int_equal(pass_opts_set(&o, "permute_weights", "layout", "t4_x16", &e), 0);
	assert_int_not_equal(pass_run(g, "permute_weights", &o, &e), 0);
	tu_expect_has(e.msg, "'t4_x16'");
	tu_expect_has(e.msg, "t5_x16");
	for (int k = 0; k < g->n_values; k++)
		assert_true(!g->values[k].layout || (strcmp(g->values[k].layout, "t5_x16") != 0 &&
						     strcmp(g->values[k].layout, "t4_x16") != 0));
	pass_opts_free(&o);
	pass_gattr_clear(g);
	ir_graph_free(g);
	gguf_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_dce_small),
		cmocka_unit_test(test_dce_follows_uses),
		cmocka_unit_test(test_pass_run_reports_verifier),
		cmocka_unit_test(test_dce_model),
		cmocka_unit_test(test_permute_threads),
		cmocka_unit_test(test_permute_t5),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
