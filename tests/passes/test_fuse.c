/* test_fuse.c - the fuse pass: on every golden model the default pipeline leaves a verified
 * graph whose norm+quantize pairs are rmsnorm_quant nodes and whose residual adds before them
 * are add_rmsnorm_quant nodes, and whose interpreted logits are bit-identical to the unfused
 * graph's; the pass leaves alone a norm with other readers and a broadcast add; the match
 * option, one fusion at a time and back, and the verifier's rules for the fused ops. */
#include "testutil.h"
#include "frontend.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>

static const char *const models[] = {
	"tiny-b158-i2_s", "tiny-b158-tq2_0", "tiny-b158-tq1_0", "tinyold-bitnet-i2_s",
	"tinyllama-i2_s", "tinyllama-tq2_0", "tinyllama-tq1_0", "tinyllama-rf-i2_s",
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

/* The pair's norm: the rmsnorm read by quant_act node j alone (and not the logits). */
static bool pair_norm(const IrGraph *g, IrId r)
{
	const IrValue *v = &g->values[r];
	if (v->kind != IR_VAL_ACT || g->nodes[v->producer].op != IR_OP_RMSNORM || r == g->logits)
		return false;
	int uses = 0, qa = 0;
	for (int j = 0; j < g->n_nodes; j++)
		for (int k = 0; k < g->nodes[j].n_in; k++)
			if (g->nodes[j].in[k] == r) {
				uses++;
				qa += g->nodes[j].op == IR_OP_QUANT_ACT;
			}
	return uses == 1 && qa == 1;
}

/* adds of two [n, T] rows whose sum a pair's norm reads (what becomes add_rmsnorm_quant) */
static int count_add_pairs(const IrGraph *g)
{
	int adds = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const IrNode *a = &g->nodes[i];
		if (a->op != IR_OP_ADD || !ir_value_has_t(&g->values[a->in[1]]))
			continue;
		bool found = false;
		for (int j = i + 1; j < g->n_nodes && !found; j++)
			found = g->nodes[j].op == IR_OP_RMSNORM && g->nodes[j].in[0] == a->out[0] &&
				pair_norm(g, g->nodes[j].out[0]);
		adds += found;
	}
	return adds;
}

static IrId find(const IrGraph *g, const char *name)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (strcmp(g->nodes[i].name, name) == 0)
			return i;
	return IR_NONE;
}

/* fuse with the option match = glob */
static void fuse_match(IrGraph *g, const char *glob)
{
	PassOpts o = {0};
	BnErr e = {0};
	char spec[128];
	snprintf(spec, sizeof spec, "fuse.match=%s", glob);
	assert_int_equal(pass_opts_parse(&o, spec, &e), BN_OK);
	if (pass_run(g, "fuse", &o, &e))
		fail_msg("%s", e.msg);
	pass_opts_free(&o);
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
		int quants = count_op(a, IR_OP_QUANT_ACT), adds = count_add_pairs(a);
		int all_adds = count_op(a, IR_OP_ADD);
		assert_int_equal(count_op(a, IR_OP_RMSNORM_QUANT), 0);
		if (pass_pipeline_run(b, NULL, &(PassRunOpts){.verify_each = true}, &e))
			fail_msg("%s: %s", models[m], e.msg);
		assert_int_equal(ir_verify(b, &e), BN_OK);

		/* every pair fused, then every add before one, nothing else touched, the fused
		 * norms and rmsnorm_quants gone */
		assert_true(pairs > 0);
		/* ffn_inp in every layer, l_out in all but the last (result_norm reads it) */
		assert_int_equal(adds, 2 * (int)a->hp.n_layer - 1);
		assert_int_equal(count_op(b, IR_OP_ADD_RMSNORM_QUANT), adds);
		assert_int_equal(count_op(b, IR_OP_RMSNORM_QUANT), pairs - adds);
		assert_int_equal(count_op(b, IR_OP_ADD), all_adds - adds);
		assert_int_equal(count_op(b, IR_OP_RMSNORM), norms - pairs);
		assert_int_equal(count_op(b, IR_OP_QUANT_ACT), quants - pairs);
		assert_int_equal(b->n_nodes, a->n_nodes - pairs - adds);
		if (strcmp(a->arch, "bitnet-b1.58") == 0) {
			/* attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm; the head reads result_norm */
			assert_int_equal(pairs, 4 * a->hp.n_layer);
			assert_int_equal(count_op(b, IR_OP_RMSNORM), 1);
		}
		for (int i = 0; i < b->n_nodes; i++) {
			const IrNode *n = &b->nodes[i];
			if (n->op != IR_OP_RMSNORM_QUANT && n->op != IR_OP_ADD_RMSNORM_QUANT)
				continue;
			assert_non_null(ir_attr_find(n, "eps"));
			assert_non_null(ir_attr_find(n, "mode"));
			if (n->op == IR_OP_RMSNORM_QUANT) {
				assert_int_equal(n->n_in, 2); /* the norm's x and weight */
				continue;
			}
			/* the add's a and b and the norm's weight; the sum, codes and scales */
			assert_int_equal(n->n_in, 3);
			assert_int_equal(n->n_out, 3);
			assert_true(strstr(n->name, ".ffn_inp") || strstr(n->name, ".l_out"));
			assert_int_equal(b->values[n->in[2]].kind, IR_VAL_CONST);
			/* the sum is still read: by the next residual add (and the head's norm) */
			int sum_readers = 0;
			for (int j = i + 1; j < b->n_nodes; j++)
				for (int k = 0; k < b->nodes[j].n_in; k++)
					sum_readers += b->nodes[j].in[k] == n->out[0];
			assert_true(sum_readers >= 1);
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

/* A norm with a second reader is not fused; fusing norms alone (match "*.q8*": no add
 * matches) keeps every id and leaves the fused norm unread for dce; the result verifies. */
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
	fuse_match(g, "*.q8*");
	assert_int_equal(g->n_nodes, nn);
	assert_int_equal(g->n_values, nvals);
	assert_int_equal(count_op(g, IR_OP_RMSNORM_QUANT), pairs - 1);
	assert_int_equal(count_op(g, IR_OP_ADD_RMSNORM_QUANT), 0);
	assert_int_equal(g->nodes[first].op, IR_OP_RMSNORM);
	assert_int_equal(count_op(g, IR_OP_RMSNORM), pairs + 1); /* fused norms, still there */
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_OK);
	assert_int_equal(count_op(g, IR_OP_RMSNORM), 2);
	unload(g, f);
}

/* The add fusion step by step on tiny-b158-i2_s: match picks the adds by name; the fused
 * node is the add's (id, name, sum) with the quantizer's weight, attributes and output
 * values, and the rmsnorm_quant is gone; a broadcast add stays; one fusion undone and done
 * again gives the same graph; a planned graph refuses both. */
static void test_adds(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = load("tiny-b158-i2_s", &f);
	BnErr e = {0};
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_OK);
	fuse_match(g, "*.q8*");
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_OK);
	int rq0 = count_op(g, IR_OP_RMSNORM_QUANT), nn = g->n_nodes, nvals = g->n_values;

	/* what blk.1.ffn_inp and its quantizer are before */
	IrId ai = find(g, "blk.1.ffn_inp"), qi = find(g, "blk.1.ffn_norm.q8");
	assert_true(ai != IR_NONE && qi == ai + 1);
	IrNode add = g->nodes[ai], rq = g->nodes[qi];
	IrId after = g->nodes[qi + 1].out[0];

	fuse_match(g, "blk.1.*"); /* blk.1.ffn_inp and blk.1.l_out */
	assert_int_equal(count_op(g, IR_OP_ADD_RMSNORM_QUANT), 2);
	assert_int_equal(count_op(g, IR_OP_RMSNORM_QUANT), rq0 - 2);
	assert_int_equal(g->n_nodes, nn - 2);
	assert_int_equal(g->n_values, nvals); /* value ids kept */
	assert_int_equal(find(g, "blk.1.ffn_norm.q8"), IR_NONE);
	assert_int_equal(find(g, "blk.2.attn_norm.q8"), IR_NONE);
	assert_int_equal(g->nodes[find(g, "blk.1.l_out")].op, IR_OP_ADD_RMSNORM_QUANT);
	assert_int_equal(g->nodes[find(g, "blk.0.l_out")].op, IR_OP_ADD);
	const IrNode *n = &g->nodes[ai];
	assert_int_equal(n->op, IR_OP_ADD_RMSNORM_QUANT);
	assert_string_equal(n->name, "blk.1.ffn_inp");
	assert_int_equal(n->n_in, 3);
	assert_int_equal(n->in[0], add.in[0]);
	assert_int_equal(n->in[1], add.in[1]);
	assert_int_equal(n->in[2], rq.in[1]);
	assert_int_equal(n->n_out, 3);
	assert_int_equal(n->out[0], add.out[0]);
	assert_int_equal(n->out[1], rq.out[0]);
	assert_int_equal(n->out[2], rq.out[1]);
	for (int k = 0; k < 3; k++)
		assert_int_equal(g->values[n->out[k]].producer, ai);
	assert_string_equal(ir_attr_str(n, "mode", "?"), "token");
	assert_true(ir_attr_float(n, "eps", 0) == ir_attr_float(&rq, "eps", 1));
	/* the nodes after the removed one moved down by one, their outputs with them */
	assert_int_equal(g->values[after].producer, qi);
	assert_int_equal(g->nodes[qi].out[0], after);
	assert_int_equal(ir_verify(g, &e), BN_OK);

	/* unfuse, then fuse the new rmsnorm_quant again: the same graph */
	char *before = tu_print_graph(g);
	assert_int_equal(pass_unfuse_node(g, ai, &e), BN_OK);
	assert_int_equal(ir_verify(g, &e), BN_OK);
	assert_int_equal(g->nodes[ai].op, IR_OP_ADD);
	assert_null(ir_attr_find(&g->nodes[ai], "eps"));
	assert_string_equal(g->nodes[ai + 1].name, "blk.1.ffn_inp.norm");
	assert_int_equal(g->nodes[ai + 1].op, IR_OP_RMSNORM_QUANT);
	assert_int_equal(g->nodes[ai + 1].in[0], add.out[0]);
	assert_int_equal(g->nodes[ai + 1].out[0], rq.out[0]);
	assert_int_equal(pass_fuse_node(g, ai + 1, &e), BN_OK);
	char *again = tu_print_graph(g);
	assert_string_equal(before, again);
	free(before);
	free(again);

	/* an rmsnorm_quant that reads no add, and an add whose b is broadcast */
	IrId first = find(g, "blk.0.attn_norm.q8");
	assert_int_equal(pass_fuse_node(g, first, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "'blk.0.attn_norm.q8' does not read an add"));
	IrId l0 = find(g, "blk.0.l_out");
	IrId keep = g->nodes[l0].in[1];
	g->nodes[l0].in[1] = g->nodes[first].in[1]; /* blk.0.attn_norm.weight: f32 [256] */
	assert_int_equal(ir_verify(g, &e), BN_OK);
	assert_int_equal(pass_fuse_node(g, find(g, "blk.1.attn_norm.q8"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "does not add two f32 [n, T] rows of one shape"));
	int fused = count_op(g, IR_OP_ADD_RMSNORM_QUANT);
	assert_int_equal(pass_run(g, "fuse", NULL, &e), BN_OK);
	assert_int_equal(g->nodes[find(g, "blk.0.l_out")].op, IR_OP_ADD);
	assert_int_equal(count_op(g, IR_OP_ADD_RMSNORM_QUANT), 2 * (int)g->hp.n_layer - 2);
	assert_true(count_op(g, IR_OP_ADD_RMSNORM_QUANT) > fused);
	l0 = find(g, "blk.0.l_out");
	g->nodes[l0].in[1] = keep;

	/* after plan_memory neither way goes */
	assert_int_equal(pass_run(g, "batch_templates", NULL, &e), BN_OK);
	assert_int_equal(pass_run(g, "plan_memory", NULL, &e), BN_OK);
	assert_int_equal(pass_fuse_node(g, find(g, "blk.1.attn_norm.q8"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "memory plan"));
	assert_int_equal(pass_unfuse_node(g, find(g, "blk.1.ffn_inp"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "memory plan"));
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
	g->values[g->nodes[rq].out[1]].ne[0] -= 1;
	assert_int_equal(ir_verify(g, &e), BN_OK);

	/* add_rmsnorm_quant: the same rules, b of a's shape, the codes and scales after the sum */
	IrId ar = IR_NONE;
	for (int i = 0; i < g->n_nodes && ar == IR_NONE; i++)
		if (g->nodes[i].op == IR_OP_ADD_RMSNORM_QUANT)
			ar = i;
	assert_true(ar != IR_NONE);
	ir_attr_set_str(g, ar, "mode", "token");
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "(add_rmsnorm_quant) has mode=token"));
	ir_attr_set_str(g, ar, "mode", "block256");
	IrId b = g->nodes[ar].in[1];
	g->nodes[ar].in[1] = g->nodes[ar].in[2];
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "(add_rmsnorm_quant): input 1"));
	assert_non_null(strstr(e.msg, "expected [256, T]"));
	g->nodes[ar].in[1] = b;
	g->values[g->nodes[ar].out[0]].dtype = IR_DT_I8;
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "(add_rmsnorm_quant): output 0"));
	g->values[g->nodes[ar].out[0]].dtype = IR_DT_F32;
	g->values[g->nodes[ar].out[2]].ne[0] += 1;
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "(add_rmsnorm_quant): output 2"));
	g->values[g->nodes[ar].out[2]].ne[0] -= 1;
	assert_int_equal(ir_verify(g, &e), BN_OK);
	/* a matmul reads codes and scales as outputs 1 and 2 of one add_rmsnorm_quant */
	IrId mm = IR_NONE;
	for (int i = ar + 1; i < g->n_nodes && mm == IR_NONE; i++)
		if (g->nodes[i].op == IR_OP_TERNARY_MATMUL && g->nodes[i].in[0] == g->nodes[ar].out[1])
			mm = i;
	assert_true(mm != IR_NONE);
	g->nodes[mm].in[1] = g->nodes[ar].out[0];
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "outputs 1 and 2 of an add_rmsnorm_quant node"));
	unload(g, f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_adds),
		cmocka_unit_test(test_verify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
