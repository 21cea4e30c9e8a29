/* test_infer_shapes.c - shape inference: outputs whose type is unset are filled in from the
 * per-op rules (the whole golden graph, a node added by hand, a fused quantizer), a set type
 * that disagrees fails naming the node, and the verifier rejects an unset type. */
#include "testutil.h"
#include "frontend.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>


static IrId node_named(const IrGraph *g, const char *name)
{
	for (IrId i = 0; i < g->n_nodes; i++)
		if (strcmp(g->nodes[i].name, name) == 0)
			return i;
	fail_msg("no node '%s'", name);
	return IR_NONE;
}

static void unset(IrGraph *g, IrId id)
{
	g->values[id].n_dims = 0;
	g->values[id].dtype = IR_DT_I32; /* whatever was there: the pass overwrites it */
	memset(g->values[id].ne, 0, sizeof g->values[id].ne);
}

/* Every activation of the golden graphs untyped: the pass gives back the frontend's types. */
static void test_fill_whole_graph(void **state)
{
	(void)state;
	static const char *const models[] = {"tiny-b158-i2_s", "tiny-b158-tq2_0",
					     "tinyold-bitnet-i2_s"};
	for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
		GgufFile *f;
		IrGraph *g = tu_golden_graph(models[m], &f);
		BnErr e = {0};
		assert_int_equal(pass_run(g, "fuse", NULL, &e), BN_OK); /* rmsnorm_quant too */
		char *want = tu_print_graph(g);
		int n_act = 0;
		for (IrId i = 0; i < g->n_values; i++)
			if (g->values[i].kind == IR_VAL_ACT) {
				unset(g, i);
				n_act++;
			}
		/* the verifier does not take an untyped value, and says what to run */
		assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
		assert_non_null(strstr(e.msg, "has no type yet"));
		assert_non_null(strstr(e.msg, "infer_shapes"));
		int filled = -1;
		if (ir_infer_shapes(g, &filled, &e))
			fail_msg("%s: %s", models[m], e.msg);
		assert_int_equal(filled, n_act);
		char *got = tu_print_graph(g);
		assert_string_equal(got, want);
		/* and again: nothing left to fill, everything agrees */
		assert_int_equal(pass_run(g, "infer_shapes", NULL, &e), BN_OK);
		assert_int_equal(ir_infer_shapes(g, &filled, &e), BN_OK);
		assert_int_equal(filled, 0);
		free(want);
		free(got);
		tu_golden_graph_free(g, f);
	}
}

/* A node a C pass appends with untyped outputs: ir_node_infer says what they are, the pass
 * fills them in, in order, so a node reading one gets typed too. */
static void test_fill_new_nodes(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-tq2_0", &f);
	BnErr e = {0};
	IrId k = g->nodes[node_named(g, "blk.0.attn_k")].out[0]; /* f32[128, T] */
	IrId norm_w = g->nodes[node_named(g, "blk.0.attn_norm")].in[1];
	IrId x = g->nodes[node_named(g, "blk.0.attn_norm")].in[0]; /* f32[256, T] */

	IrId add = ir_node_add(g, IR_OP_ADD, "extra.add", (IrId[]){k, k}, 2);
	IrId sum = ir_node_output(g, add, "extra.add", IR_DT_F32, 0, NULL);
	IrId mul = ir_node_add(g, IR_OP_MUL, "extra.mul", (IrId[]){sum, sum}, 2);
	IrId prod = ir_node_output(g, mul, "extra.mul", IR_DT_F32, 0, NULL);
	IrId rq = ir_node_add(g, IR_OP_RMSNORM_QUANT, "extra.rq", (IrId[]){x, norm_w}, 2);
	ir_attr_set_float(g, rq, "eps", 1e-5);
	ir_attr_set_str(g, rq, "mode", "block256");
	IrId q = ir_node_output(g, rq, "extra.rq.q", IR_DT_F32, 0, NULL);
	IrId s = ir_node_output(g, rq, "extra.rq.s", IR_DT_F32, 0, NULL);

	IrType t[IR_MAX_OUT];
	assert_int_equal(ir_node_infer(g, add, t, &e), BN_OK);
	assert_int_equal(t[0].dtype, IR_DT_F32);
	assert_int_equal(t[0].n_dims, 2);
	assert_int_equal(t[0].ne[0], 128);
	assert_int_equal(t[0].ne[1], IR_DIM_T);
	/* mul reads the untyped sum: not until the pass has run */
	assert_int_equal(ir_node_infer(g, mul, t, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "'extra.add' has no type yet"));
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);

	if (pass_run(g, "infer_shapes", NULL, &e))
		fail_msg("%s", e.msg);
	const IrValue *vp = &g->values[prod], *vq = &g->values[q], *vs = &g->values[s];
	assert_int_equal(vp->dtype, IR_DT_F32);
	assert_int_equal(vp->n_dims, 2);
	assert_int_equal(vp->ne[0], 128);
	assert_int_equal(vp->ne[1], IR_DIM_T);
	assert_int_equal(vq->dtype, IR_DT_I8);
	assert_int_equal(vq->ne[0], 256);
	assert_int_equal(vs->dtype, IR_DT_F32);
	assert_int_equal(vs->ne[0], 1); /* one Q8_K scale per 256 inputs */
	assert_int_equal(vs->ne[1], IR_DIM_T);
	assert_int_equal(ir_verify(g, &e), BN_OK);
	tu_golden_graph_free(g, f);
}

/* A set type that disagrees with the rule: the pass fails and names the node, the output
 * and both types; an untyped output whose node breaks its rule fails on the rule. */
static void test_reject(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	BnErr e = {0};
	IrId nk = node_named(g, "blk.0.attn_k");
	g->values[g->nodes[nk].out[0]].ne[0] = 100;
	unset(g, g->nodes[node_named(g, "blk.1.attn_k")].out[0]); /* fillable, after the bad one */
	assert_int_equal(pass_run(g, "infer_shapes", NULL, &e), BN_EVERIFY);
	char want[160];
	snprintf(want, sizeof want, "pass infer_shapes: node %d 'blk.0.attn_k' (ternary_matmul): "
				    "output 0 'blk.0.attn_k' has shape [100, T], expected [128, T]",
		 nk);
	assert_string_equal(e.msg, want);
	g->values[g->nodes[nk].out[0]].ne[0] = 128;

	/* the dtype is checked too */
	IrId nq = node_named(g, "blk.0.attn_norm.q8");
	g->values[g->nodes[nq].out[0]].dtype = IR_DT_F32;
	assert_int_equal(pass_run(g, "infer_shapes", NULL, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "'blk.0.attn_norm.q8' (quant_act): output 0 "
				      "'blk.0.attn_norm.q8' has dtype f32, expected i8"));
	g->values[g->nodes[nq].out[0]].dtype = IR_DT_I8;
	assert_int_equal(pass_run(g, "infer_shapes", NULL, &e), BN_OK);

	/* nothing to infer from when the inputs break the rule */
	IrId nr = node_named(g, "blk.0.attn_q.rope");
	unset(g, g->nodes[nr].out[0]);
	ir_attr_set_int(g, nr, "head_dim", 48);
	assert_int_equal(pass_run(g, "infer_shapes", NULL, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "'blk.0.attn_q.rope' (rope): attribute n_rot = 64"));
	tu_golden_graph_free(g, f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_whole_graph),
		cmocka_unit_test(test_fill_new_nodes),
		cmocka_unit_test(test_reject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
