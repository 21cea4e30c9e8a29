/* test_graph.c - graph IR core: op tables, building, attributes, shapes, verifier, printer. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Constants need non-NULL data of the right size; the verifier never reads it. */
static unsigned char blob[1 << 19];

static IrId add_const(IrGraph *g, const char *name, IrDtype dt, int64_t ne0, int64_t ne1)
{
	int64_t ne[2] = { ne0, ne1 };
	int n_dims = ne1 ? 2 : 1;
	uint64_t nb;
	assert_true(ir_dtype_nbytes(dt, (uint64_t)(ne0 * (ne1 ? ne1 : 1)), (uint64_t)ne0, &nb));
	assert_true(nb <= sizeof blob);
	IrId id = ir_value_const(g, name, dt, n_dims, ne, blob, nb);
	assert_int_not_equal(id, IR_NONE);
	return id;
}

static IrId rows(IrGraph *g, IrOp op, const char *name, const IrId *in, int n_in, int64_t n)
{
	int64_t ne[2] = { n, IR_DIM_T };
	IrId id = ir_node1(g, op, name, in, n_in, IR_DT_F32, 2, ne);
	assert_int_not_equal(id, IR_NONE);
	return id;
}

static IrId producer(const IrGraph *g, IrId value)
{
	return g->values[value].producer;
}

static IrId rmsnorm(IrGraph *g, const char *name, IrId x, IrId w, int64_t n)
{
	IrId in[2] = { x, w };
	IrId y = rows(g, IR_OP_RMSNORM, name, in, 2, n);
	ir_attr_set_float(g, producer(g, y), "eps", 1e-5f);
	return y;
}

/* A QUANT_ACT node; q and s receive its outputs. */
static IrId quant_act(IrGraph *g, const char *name, IrId x, int64_t k, const char *mode, IrId *q,
		      IrId *s)
{
	IrId node = ir_node_add(g, IR_OP_QUANT_ACT, name, &x, 1);
	int64_t qne[2] = { k, IR_DIM_T };
	int64_t sne[2] = { strcmp(mode, "token") == 0 ? 1 : k / 256, IR_DIM_T };
	char nm[64];
	snprintf(nm, sizeof nm, "%s.q", name);
	*q = ir_node_output(g, node, nm, IR_DT_I8, 2, qne);
	snprintf(nm, sizeof nm, "%s.s", name);
	*s = ir_node_output(g, node, nm, IR_DT_F32, 2, sne);
	ir_attr_set_str(g, node, "mode", mode);
	return node;
}

static IrId tmm(IrGraph *g, const char *name, IrId q, IrId s, IrId w, int64_t n)
{
	IrId in[3] = { q, s, w };
	return rows(g, IR_OP_TERNARY_MATMUL, name, in, 3, n);
}

/* Ids a test wants to break. */
typedef struct {
	IrGraph *g;
	IrId tokens, embd, attn_norm_w, wq, wk, wv, wo, gate_w, down_w;
	IrId x, h, q, k, v, attn, ffn_m, x2, logits; /* values */
	IrId n_embed, n_attn_norm, n_qa, n_q, n_attn, n_ffn_qa, n_gate, n_add; /* nodes */
} Mini;

/* One bitnet-b1.58 layer with n_embd 256, 4 heads of 64 (2 kv heads), n_ff 512,
 * n_vocab 64: I2_S attention projections, TQ2_0 feed-forward (block256 activations),
 * the head tied to the F16 embedding. */
static Mini mini_build(void)
{
	Mini m;
	IrGraph *g = m.g = ir_graph_new("mini", "bitnet-b1.58");
	assert_non_null(g);
	g->hp = (IrHparams){ .n_ctx_train = 128, .n_embd = 256, .n_layer = 1, .n_head = 4,
			     .n_head_kv = 2, .head_dim = 64, .n_ff = 512, .n_vocab = 64,
			     .eps = 1e-5f, .rope_base = 500000 };
	int64_t T[1] = { IR_DIM_T };
	m.tokens = g->tokens = ir_value_input(g, "tokens", IR_DT_I32, 1, T);
	m.embd = add_const(g, "token_embd.weight", IR_DT_F16, 256, 64);
	m.attn_norm_w = add_const(g, "blk.0.attn_norm.weight", IR_DT_F32, 256, 0);
	m.wq = add_const(g, "blk.0.attn_q.weight", IR_DT_I2_S, 256, 256);
	m.wk = add_const(g, "blk.0.attn_k.weight", IR_DT_I2_S, 256, 128);
	m.wv = add_const(g, "blk.0.attn_v.weight", IR_DT_I2_S, 256, 128);
	IrId sub_w = add_const(g, "blk.0.attn_sub_norm.weight", IR_DT_F32, 256, 0);
	m.wo = add_const(g, "blk.0.attn_output.weight", IR_DT_I2_S, 256, 256);
	IrId ffn_norm_w = add_const(g, "blk.0.ffn_norm.weight", IR_DT_F32, 256, 0);
	m.gate_w = add_const(g, "blk.0.ffn_gate.weight", IR_DT_TQ2_0, 256, 512);
	IrId up_w = add_const(g, "blk.0.ffn_up.weight", IR_DT_TQ2_0, 256, 512);
	IrId ffn_sub_w = add_const(g, "blk.0.ffn_sub_norm.weight", IR_DT_F32, 512, 0);
	m.down_w = add_const(g, "blk.0.ffn_down.weight", IR_DT_TQ2_0, 512, 256);
	IrId out_norm_w = add_const(g, "output_norm.weight", IR_DT_F32, 256, 0);

	IrId in[3] = { m.tokens, m.embd };
	m.x = rows(g, IR_OP_EMBED, "inp_embd", in, 2, 256);
	m.n_embed = producer(g, m.x);
	m.h = rmsnorm(g, "blk.0.attn_norm", m.x, m.attn_norm_w, 256);
	m.n_attn_norm = producer(g, m.h);
	IrId q8, s;
	m.n_qa = quant_act(g, "blk.0.attn_qa", m.h, 256, "token", &q8, &s);
	m.q = tmm(g, "blk.0.attn_q", q8, s, m.wq, 256);
	m.n_q = producer(g, m.q);
	m.k = tmm(g, "blk.0.attn_k", q8, s, m.wk, 128);
	m.v = tmm(g, "blk.0.attn_v", q8, s, m.wv, 128);
	IrId qr = rows(g, IR_OP_ROPE, "blk.0.rope_q", &m.q, 1, 256);
	IrId kr = rows(g, IR_OP_ROPE, "blk.0.rope_k", &m.k, 1, 128);
	for (int i = 0; i < 2; i++) {
		IrId n = producer(g, i ? kr : qr);
		ir_attr_set_int(g, n, "head_dim", 64);
		ir_attr_set_int(g, n, "n_rot", 64);
		ir_attr_set_float(g, n, "freq_base", 500000);
		ir_attr_set_str(g, n, "mode", "neox");
	}
	IrId qkv[3] = { qr, kr, m.v };
	m.attn = rows(g, IR_OP_ATTENTION, "blk.0.attn", qkv, 3, 256);
	m.n_attn = producer(g, m.attn);
	ir_attr_set_int(g, m.n_attn, "n_head", 4);
	ir_attr_set_int(g, m.n_attn, "n_head_kv", 2);
	ir_attr_set_int(g, m.n_attn, "head_dim", 64);
	ir_attr_set_int(g, m.n_attn, "layer", 0);
	ir_attr_set_float(g, m.n_attn, "scale", 0.125);
	IrId o = rmsnorm(g, "blk.0.attn_sub_norm", m.attn, sub_w, 256);
	quant_act(g, "blk.0.attn_out_qa", o, 256, "token", &q8, &s);
	IrId ao = tmm(g, "blk.0.attn_output", q8, s, m.wo, 256);
	IrId ab[2] = { m.x, ao };
	IrId x1 = rows(g, IR_OP_ADD, "blk.0.attn_res", ab, 2, 256);
	m.n_add = producer(g, x1);

	IrId h2 = rmsnorm(g, "blk.0.ffn_norm", x1, ffn_norm_w, 256);
	m.n_ffn_qa = quant_act(g, "blk.0.ffn_qa", h2, 256, "block256", &q8, &s);
	IrId gt = tmm(g, "blk.0.ffn_gate", q8, s, m.gate_w, 512);
	m.n_gate = producer(g, gt);
	IrId up = tmm(g, "blk.0.ffn_up", q8, s, up_w, 512);
	IrId gu[2] = { gt, up };
	m.ffn_m = rows(g, IR_OP_RELU2_GLU, "blk.0.ffn_glu", gu, 2, 512);
	IrId mn = rmsnorm(g, "blk.0.ffn_sub_norm", m.ffn_m, ffn_sub_w, 512);
	quant_act(g, "blk.0.ffn_down_qa", mn, 512, "block256", &q8, &s);
	IrId dn = tmm(g, "blk.0.ffn_down", q8, s, m.down_w, 256);
	IrId xd[2] = { x1, dn };
	m.x2 = rows(g, IR_OP_ADD, "blk.0.ffn_res", xd, 2, 256);

	IrId f = rmsnorm(g, "result_norm", m.x2, out_norm_w, 256);
	IrId fe[2] = { f, m.embd };
	m.logits = g->logits = rows(g, IR_OP_MATMUL, "result_output", fe, 2, 64);
	return m;
}

static void verify_ok(const IrGraph *g)
{
	BnErr e = { 0 };
	int rc = ir_verify(g, &e);
	if (rc)
		fail_msg("ir_verify: %s", e.msg);
}

/* The graph must fail verification with a message holding every given piece. */
static void verify_fails(const IrGraph *g, const char *const *want)
{
	BnErr e = { 0 };
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_int_equal(e.code, BN_EVERIFY);
	for (; *want; want++)
		if (!strstr(e.msg, *want))
			fail_msg("message \"%s\" lacks \"%s\"", e.msg, *want);
}
#define VERIFY_FAILS(g, ...) verify_fails(g, (const char *const[]){ __VA_ARGS__, NULL })

static IrNode *node(Mini *m, IrId id)
{
	return &m->g->nodes[id];
}

/* ---- ops ---------------------------------------------------------------------------- */

static void test_op_names(void **state)
{
	(void)state;
	for (int i = 0; i < IR_OP_COUNT; i++) {
		IrOp op = IR_OP_COUNT;
		assert_true(ir_op_from_name(ir_op_name((IrOp)i), &op));
		assert_int_equal(op, i);
		assert_true(strlen(ir_op_meaning((IrOp)i)) > 10);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(ir_op_name((IrOp)i), ir_op_name((IrOp)j));
	}
	IrOp op;
	assert_string_equal(ir_op_name(IR_OP_TERNARY_MATMUL), "ternary_matmul");
	assert_true(ir_op_from_name("relu2_glu", &op));
	assert_int_equal(op, IR_OP_RELU2_GLU);
	assert_false(ir_op_from_name("Embed", &op));
	assert_false(ir_op_from_name("", &op));
	assert_false(ir_op_from_name(NULL, &op));
	assert_string_equal(ir_op_name(IR_OP_COUNT), "?");
}

/* ---- building ---------------------------------------------------------------------- */

static void test_build_values(void **state)
{
	(void)state;
	char name[32] = "tokens";
	IrGraph *g = ir_graph_new("g", "bitnet");
	assert_int_equal(g->tokens, IR_NONE);
	assert_int_equal(g->logits, IR_NONE);
	int64_t T[1] = { IR_DIM_T };
	IrId t = ir_value_input(g, name, IR_DT_I32, 1, T);
	strcpy(name, "clobbered"); /* names are copied */
	assert_int_equal(t, 0);
	assert_string_equal(g->values[t].name, "tokens");
	assert_string_equal(g->values[t].layout, "rows");
	assert_int_equal(g->values[t].kind, IR_VAL_INPUT);
	assert_int_equal(g->values[t].producer, IR_NONE);
	IrId w = add_const(g, "w", IR_DT_I2_S, 256, 4);
	assert_int_equal(w, 1);
	assert_string_equal(g->values[w].layout, "gguf");
	assert_int_equal(g->values[w].nbytes, 256 * 4 / 4 + 32);
	assert_ptr_equal(g->values[w].data, blob);

	/* Past the first growth of both vectors: ids stay dense and earlier values intact. */
	IrId prev = t;
	for (int i = 0; i < 200; i++) {
		IrId in[2] = { prev, prev };
		int64_t ne[2] = { 8, IR_DIM_T };
		IrId node = ir_node_add(g, IR_OP_ADD, "a", in, 2);
		assert_int_equal(node, i);
		IrId y = ir_node_output(g, node, "a.out", IR_DT_F32, 2, ne);
		assert_int_equal(y, 2 + i);
		assert_int_equal(g->values[y].kind, IR_VAL_ACT);
		assert_int_equal(g->values[y].producer, node);
		assert_int_equal(g->nodes[node].n_out, 1);
		assert_int_equal(g->nodes[node].out[0], y);
		assert_int_equal(g->nodes[node].in[1], prev);
		prev = y;
	}
	assert_int_equal(g->n_values, 202);
	assert_int_equal(g->n_nodes, 200);
	assert_string_equal(g->values[0].name, "tokens");
	assert_string_equal(g->values[201].name, "a.out");
	ir_graph_free(g);
	ir_graph_free(NULL);
}

static void test_node1_and_quant_outputs(void **state)
{
	(void)state;
	Mini m = mini_build();
	IrGraph *g = m.g;
	/* ir_node1 returns the value; its producer is the node with the same name. */
	const IrNode *n = &g->nodes[producer(g, m.x)];
	assert_int_equal(n->op, IR_OP_EMBED);
	assert_string_equal(n->name, "inp_embd");
	assert_int_equal(n->n_in, 2);
	assert_int_equal(n->in[0], m.tokens);
	assert_int_equal(n->in[2], IR_NONE);
	const IrNode *qa = &g->nodes[m.n_qa];
	assert_int_equal(qa->n_out, 2);
	assert_int_equal(g->values[qa->out[0]].dtype, IR_DT_I8);
	assert_int_equal(g->values[qa->out[1]].producer, m.n_qa);
	ir_graph_free(g);
}

static void test_value_shapes(void **state)
{
	(void)state;
	IrValue v = { .n_dims = 2, .ne = { 256, IR_DIM_T } };
	assert_true(ir_value_has_t(&v));
	assert_int_equal(ir_value_row(&v), 256);
	assert_int_equal(ir_value_nelems(&v, 7), 256 * 7);
	assert_int_equal(ir_value_nelems(&v, 0), 0);
	IrValue w = { .n_dims = 3, .ne = { 4, 5, 6 } };
	assert_false(ir_value_has_t(&w));
	assert_int_equal(ir_value_row(&w), 120);
	assert_int_equal(ir_value_nelems(&w, 99), 120);
	IrValue t = { .n_dims = 1, .ne = { IR_DIM_T } };
	assert_int_equal(ir_value_row(&t), 1);
	assert_int_equal(ir_value_nelems(&t, 5), 5);
	IrValue big = { .n_dims = 3, .ne = { INT64_C(1) << 40, INT64_C(1) << 30, IR_DIM_T } };
	assert_int_equal(ir_value_nelems(&big, 1), -1); /* overflow is reported, not wrapped */
}

/* ---- attributes ------------------------------------------------------------------- */

static void test_attrs(void **state)
{
	(void)state;
	IrGraph *g = ir_graph_new("g", "bitnet");
	int64_t T[1] = { IR_DIM_T };
	IrId x = ir_value_input(g, "x", IR_DT_F32, 1, T);
	IrId n = ir_node_add(g, IR_OP_RMSNORM, "norm", &x, 1);
	const IrNode *nd = &g->nodes[n];

	assert_null(ir_attr_find(nd, "eps"));
	assert_int_equal(ir_attr_int(nd, "k", 7), 7);
	assert_true(ir_attr_float(nd, "eps", 0.5) == 0.5);
	assert_string_equal(ir_attr_str(nd, "mode", "dflt"), "dflt");

	char key[8] = "eps", sval[8] = "neox";
	ir_attr_set_float(g, n, key, 1e-6);
	ir_attr_set_int(g, n, "k", -3);
	ir_attr_set_str(g, n, "mode", sval);
	int64_t ints[3] = { 1, 8, 32 };
	ir_attr_set_ints(g, n, "batches", ints, 3);
	strcpy(key, "xxx"); /* keys and values are copied */
	strcpy(sval, "yyy");
	ints[0] = 99;
	assert_int_equal(nd->n_attrs, 4);
	assert_true(ir_attr_float(nd, "eps", 0) == 1e-6);
	assert_int_equal(ir_attr_int(nd, "k", 0), -3);
	assert_string_equal(ir_attr_str(nd, "mode", NULL), "neox");
	const IrAttr *a = ir_attr_find(nd, "batches");
	assert_non_null(a);
	assert_int_equal(a->type, IR_ATTR_INTS);
	assert_int_equal(a->n_ints, 3);
	assert_int_equal(a->ints[0], 1);
	assert_int_equal(a->ints[2], 32);

	/* Getters are strict about types: another type reads as missing. */
	assert_int_equal(ir_attr_int(nd, "eps", 42), 42);
	assert_true(ir_attr_float(nd, "k", 2.5) == 2.5);
	assert_string_equal(ir_attr_str(nd, "k", "d"), "d");

	/* Replacing keeps the key's place and may change its type; a copy of the node
	 * taken before is untouched (copy-on-write). */
	IrNode before = *nd;
	ir_attr_set_int(g, n, "eps", 5);
	ir_attr_set_str(g, n, "mode", "normal");
	assert_int_equal(nd->n_attrs, 4);
	assert_string_equal(nd->attrs[0].key, "eps");
	assert_int_equal(nd->attrs[0].type, IR_ATTR_INT);
	assert_int_equal(ir_attr_int(nd, "eps", 0), 5);
	assert_string_equal(nd->attrs[2].key, "mode");
	assert_string_equal(ir_attr_str(nd, "mode", NULL), "normal");
	assert_true(ir_attr_float(&before, "eps", 0) == 1e-6);
	assert_string_equal(ir_attr_str(&before, "mode", NULL), "neox");
	ir_attr_set_ints(g, n, "empty", NULL, 0);
	assert_int_equal(ir_attr_find(nd, "empty")->n_ints, 0);
	assert_int_equal(nd->n_attrs, 5);
	ir_graph_free(g);
}

/* ---- verifier: the valid graph --------------------------------------------------- */

static void test_verify_mini_block(void **state)
{
	(void)state;
	Mini m = mini_build();
	verify_ok(m.g);
	/* Broadcast forms: add b [n]; mul b [n] or [1]; rmsnorm and rope without weights. */
	IrGraph *g = m.g;
	IrId bias = add_const(g, "bias", IR_DT_F32, 64, 0);
	IrId one = add_const(g, "one", IR_DT_F32, 1, 0);
	IrId in[2] = { m.logits, bias };
	IrId y = rows(g, IR_OP_ADD, "add_bias", in, 2, 64);
	in[0] = y;
	y = rows(g, IR_OP_MUL, "mul_vec", in, 2, 64);
	in[0] = y;
	in[1] = one;
	y = rows(g, IR_OP_MUL, "mul_scale", in, 2, 64);
	in[1] = y;
	y = rows(g, IR_OP_MUL, "mul_full", in, 2, 64);
	IrId r = rows(g, IR_OP_RMSNORM, "norm_no_w", &y, 1, 64);
	ir_attr_set_float(g, producer(g, r), "eps", 1e-6);
	IrId freqs = add_const(g, "rope_freqs.weight", IR_DT_F32, 16, 0);
	IrId rin[2] = { r, freqs };
	IrId ro = rows(g, IR_OP_ROPE, "rope_normal", rin, 2, 64);
	ir_attr_set_int(g, producer(g, ro), "head_dim", 32);
	ir_attr_set_int(g, producer(g, ro), "n_rot", 32);
	ir_attr_set_float(g, producer(g, ro), "freq_base", 10000);
	ir_attr_set_str(g, producer(g, ro), "mode", "normal");
	g->logits = ro;
	verify_ok(g);
	ir_graph_free(g);
}

/* ---- verifier: one broken rule per test ----------------------------------------- */

static void test_verify_wrong_dtype(void **state)
{
	(void)state;
	Mini m = mini_build();
	IrId f16 = add_const(m.g, "blk.0.attn_q.weight", IR_DT_F16, 256, 256);
	node(&m, m.n_q)->in[2] = f16;
	char pre[64];
	snprintf(pre, sizeof pre, "node %d 'blk.0.attn_q' (ternary_matmul)", m.n_q);
	VERIFY_FAILS(m.g, pre,
		     "input 2 'blk.0.attn_q.weight' has dtype f16, expected i2_s, tq1_0 or tq2_0");
	/* and the other way round: a ternary weight in a float matmul */
	node(&m, m.n_q)->in[2] = m.wq;
	node(&m, producer(m.g, m.logits))->in[1] = m.wq;
	VERIFY_FAILS(m.g, "'result_output' (matmul)",
		     "has dtype i2_s, expected f32, f16, bf16, q8_0 or q6_k");
	ir_graph_free(m.g);
}

static void test_verify_wrong_shape(void **state)
{
	(void)state;
	Mini m = mini_build();
	m.g->values[m.k].ne[0] = 100; /* attn_k claims 100 outputs, its weight has 128 */
	VERIFY_FAILS(m.g, "'blk.0.attn_k' (ternary_matmul)",
		     "output 0 'blk.0.attn_k' has shape [100, T], expected [128, T]");
	ir_graph_free(m.g);

	m = mini_build();
	IrId w128 = add_const(m.g, "short_norm", IR_DT_F32, 128, 0);
	node(&m, m.n_attn_norm)->in[1] = w128;
	VERIFY_FAILS(m.g, "'blk.0.attn_norm' (rmsnorm)",
		     "input 1 'short_norm' has shape [128], expected [256]");
	ir_graph_free(m.g);

	/* weight rows must match the activation rows */
	m = mini_build();
	IrId wq = add_const(m.g, "wide_q", IR_DT_I2_S, 512, 256);
	node(&m, m.n_q)->in[2] = wq;
	VERIFY_FAILS(m.g, "'blk.0.attn_q'",
		     "input 2 'wide_q' has shape [512, 256], expected [256, n]");
	ir_graph_free(m.g);

	/* attention widths follow the head attributes */
	m = mini_build();
	ir_attr_set_int(m.g, m.n_attn, "n_head_kv", 4);
	VERIFY_FAILS(m.g, "'blk.0.attn' (attention)",
		     "input 1 'blk.0.rope_k' has shape [128, T], expected [256, T]");
	ir_graph_free(m.g);

	/* add does not take a single-element b; mul does */
	m = mini_build();
	IrId one = add_const(m.g, "one", IR_DT_F32, 1, 0);
	node(&m, m.n_add)->in[1] = one;
	VERIFY_FAILS(m.g, "'blk.0.attn_res' (add)",
		     "input 1 'one' has shape [1], expected [256, T] or [256]");
	node(&m, m.n_add)->op = IR_OP_MUL;
	verify_ok(m.g);
	ir_graph_free(m.g);
}

static void test_verify_undefined_input(void **state)
{
	(void)state;
	Mini m = mini_build();
	node(&m, m.n_add)->in[1] = 999;
	VERIFY_FAILS(m.g, "'blk.0.attn_res' (add)", "input 1 is value 999, which does not exist");
	node(&m, m.n_add)->in[1] = IR_NONE;
	VERIFY_FAILS(m.g, "'blk.0.attn_res' (add)", "input 1 is value -1");
	ir_graph_free(m.g);
}

static void test_verify_use_before_def(void **state)
{
	(void)state;
	Mini m = mini_build();
	IrGraph *g = m.g;
	/* Swap the embedding and the first norm, producers kept consistent: the norm now
	 * reads the embedding's output before it runs. */
	IrNode t = g->nodes[m.n_embed];
	g->nodes[m.n_embed] = g->nodes[m.n_attn_norm];
	g->nodes[m.n_attn_norm] = t;
	g->values[m.x].producer = m.n_attn_norm;
	g->values[m.h].producer = m.n_embed;
	char want[128];
	snprintf(want, sizeof want, "input 0 'inp_embd' is used before it is defined (by node %d 'inp_embd')",
		 m.n_attn_norm);
	VERIFY_FAILS(g, "'blk.0.attn_norm' (rmsnorm)", want);

	/* a node reading its own output */
	m.g = NULL;
	ir_graph_free(g);
	m = mini_build();
	node(&m, m.n_add)->in[0] = node(&m, m.n_add)->out[0];
	VERIFY_FAILS(m.g, "'blk.0.attn_res' (add)",
		     "input 0 'blk.0.attn_res' is used before it is defined");
	ir_graph_free(m.g);
}

static void test_verify_producer_links(void **state)
{
	(void)state;
	Mini m = mini_build();
	/* a node claiming another node's output */
	node(&m, m.n_add)->out[0] = m.x;
	VERIFY_FAILS(m.g, "'blk.0.attn_res' (add)",
		     "output 0 'inp_embd' is produced by node 0, not by this node");
	ir_graph_free(m.g);

	m = mini_build();
	m.g->values[m.x].producer = m.n_add; /* the value points at another node */
	VERIFY_FAILS(m.g, "node 0 'inp_embd' (embed)",
		     "output 0 'inp_embd' is produced by node 12, not by this node");
	ir_graph_free(m.g);

	/* an activation no node lists */
	m = mini_build();
	IrId orphan = rows(m.g, IR_OP_ADD, "orphan", (IrId[]){ m.x, m.x }, 2, 256);
	m.g->n_nodes--; /* drop its node */
	VERIFY_FAILS(m.g, "'orphan'", "activation without a producing node");
	m.g->values[orphan].producer = m.n_embed;
	char want[64];
	snprintf(want, sizeof want, "value %d 'orphan' (output of node 0 'inp_embd' (embed))", orphan);
	VERIFY_FAILS(m.g, want, "names producer node 0 'inp_embd', which does not list it as an output");
	ir_graph_free(m.g);

	m = mini_build();
	node(&m, m.n_qa)->out[1] = node(&m, m.n_qa)->out[0];
	VERIFY_FAILS(m.g, "'blk.0.attn_qa' (quant_act)", "outputs 0 and 1 are the same value");
	ir_graph_free(m.g);
}

static void test_verify_bad_arity(void **state)
{
	(void)state;
	Mini m = mini_build();
	node(&m, m.n_add)->n_in = 1;
	VERIFY_FAILS(m.g, "'blk.0.attn_res' (add)", "has 1 inputs, expected 2");
	ir_graph_free(m.g);

	m = mini_build();
	node(&m, m.n_attn_norm)->n_in = 3;
	VERIFY_FAILS(m.g, "'blk.0.attn_norm' (rmsnorm)", "has 3 inputs, expected 1 to 2");
	ir_graph_free(m.g);

	m = mini_build();
	node(&m, m.n_qa)->n_out = 1;
	VERIFY_FAILS(m.g, "'blk.0.attn_qa' (quant_act)", "has 1 outputs, expected 2");
	ir_graph_free(m.g);

	m = mini_build();
	node(&m, m.n_add)->op = (IrOp)IR_OP_COUNT;
	VERIFY_FAILS(m.g, "'blk.0.attn_res'", "unknown op");
	ir_graph_free(m.g);
}

static void test_verify_t_outermost(void **state)
{
	(void)state;
	Mini m = mini_build();
	IrValue *x = &m.g->values[m.x];
	x->ne[0] = IR_DIM_T;
	x->ne[1] = 256;
	VERIFY_FAILS(m.g, "value 14 'inp_embd' (output of node 0 'inp_embd' (embed))",
		     "shape [T, 256]: the token dim T must be the outermost dim");
	x->ne[1] = IR_DIM_T; /* two T dims: the first is not outermost */
	VERIFY_FAILS(m.g, "'inp_embd'", "shape [T, T]");
	ir_graph_free(m.g);

	/* constants never carry T */
	m = mini_build();
	m.g->values[m.attn_norm_w].n_dims = 2;
	m.g->values[m.attn_norm_w].ne[1] = IR_DIM_T;
	VERIFY_FAILS(m.g, "'blk.0.attn_norm.weight'",
		     "only activations and inputs have the token dim T");
	ir_graph_free(m.g);

	/* zero or negative dims */
	m = mini_build();
	m.g->values[m.h].ne[0] = 0;
	VERIFY_FAILS(m.g, "'blk.0.attn_norm'", "dim 0 is 0, expected > 0");
	ir_graph_free(m.g);
}

static void test_verify_const_nbytes(void **state)
{
	(void)state;
	Mini m = mini_build();
	m.g->values[m.wq].nbytes = 256 * 256 / 4; /* the generic formula: forgets the 32 bytes */
	VERIFY_FAILS(m.g, "value 3 'blk.0.attn_q.weight'",
		     "constant i2_s[256, 256] has 16384 bytes, expected 16416");
	ir_graph_free(m.g);

	m = mini_build();
	m.g->values[m.wq].data = NULL;
	VERIFY_FAILS(m.g, "'blk.0.attn_q.weight'", "constant has no data");
	ir_graph_free(m.g);

	/* rows not a multiple of the block */
	m = mini_build();
	m.g->values[m.gate_w].ne[0] = 128;
	m.g->values[m.gate_w].ne[1] = 1024;
	VERIFY_FAILS(m.g, "'blk.0.ffn_gate.weight'",
		     "rows of 128 elements do not fit the 256-element blocks");
	ir_graph_free(m.g);
}

static void test_verify_duplicate_layer(void **state)
{
	(void)state;
	Mini m = mini_build();
	IrGraph *g = m.g;
	const IrNode *a = &g->nodes[m.n_attn];
	IrId in[3] = { a->in[0], a->in[1], a->in[2] };
	IrId y = rows(g, IR_OP_ATTENTION, "blk.1.attn", in, 3, 256);
	IrId n = producer(g, y);
	ir_attr_set_int(g, n, "n_head", 4);
	ir_attr_set_int(g, n, "n_head_kv", 2);
	ir_attr_set_int(g, n, "head_dim", 64);
	ir_attr_set_int(g, n, "layer", 0);
	ir_attr_set_float(g, n, "scale", 0.125);
	char want[96];
	snprintf(want, sizeof want, "attribute layer = 0 is already used by node %d 'blk.0.attn'",
		 m.n_attn);
	VERIFY_FAILS(g, "'blk.1.attn' (attention)", want);
	g->hp.n_layer = 2;
	ir_attr_set_int(g, n, "layer", 2);
	VERIFY_FAILS(g, "'blk.1.attn' (attention)", "attribute layer = 2 is out of range");
	ir_attr_set_int(g, n, "layer", 1);
	verify_ok(g);
	ir_attr_set_int(g, n, "n_head_kv", 3);
	VERIFY_FAILS(g, "'blk.1.attn'", "n_head 4 is not a multiple of n_head_kv 3");
	ir_graph_free(g);
}

static void test_verify_attrs(void **state)
{
	(void)state;
	Mini m = mini_build();
	node(&m, m.n_attn_norm)->n_attrs = 0;
	VERIFY_FAILS(m.g, "'blk.0.attn_norm' (rmsnorm)", "missing attribute eps (float)");
	ir_attr_set_int(m.g, m.n_attn_norm, "eps", 1);
	VERIFY_FAILS(m.g, "'blk.0.attn_norm'", "attribute eps has type int, expected float");
	ir_attr_set_float(m.g, m.n_attn_norm, "eps", -1e-5);
	VERIFY_FAILS(m.g, "'blk.0.attn_norm'",
		     "attribute eps = -1e-05, expected a finite value > 0");
	ir_attr_set_float(m.g, m.n_attn_norm, "eps", 1e-5);
	verify_ok(m.g);

	ir_attr_set_str(m.g, m.n_qa, "mode", "tensor");
	VERIFY_FAILS(m.g, "'blk.0.attn_qa' (quant_act)",
		     "attribute mode = \"tensor\", expected \"token\" or \"block256\"");
	ir_graph_free(m.g);

	m = mini_build();
	IrId rope_q = m.g->nodes[m.n_q + 3].op == IR_OP_ROPE ? m.n_q + 3 : IR_NONE;
	assert_int_not_equal(rope_q, IR_NONE);
	ir_attr_set_int(m.g, rope_q, "n_rot", 63);
	VERIFY_FAILS(m.g, "'blk.0.rope_q' (rope)", "n_rot = 63 must be even and <= head_dim (64)");
	ir_attr_set_int(m.g, rope_q, "n_rot", 64);
	ir_attr_set_int(m.g, rope_q, "head_dim", 96);
	VERIFY_FAILS(m.g, "'blk.0.rope_q' (rope)", "rows of 256, not a multiple of head_dim 96");
	ir_attr_set_int(m.g, rope_q, "head_dim", 64);
	ir_attr_set_str(m.g, rope_q, "mode", "gptj");
	VERIFY_FAILS(m.g, "'blk.0.rope_q'", "mode = \"gptj\", expected \"neox\" or \"normal\"");
	ir_graph_free(m.g);
}

static void test_verify_quant_mode(void **state)
{
	(void)state;
	/* I2_S reads per-token scales: block256 codes are the wrong pair (k = 256, so
	 * the quant_act itself is well-formed). */
	Mini m = mini_build();
	ir_attr_set_str(m.g, m.n_qa, "mode", "block256");
	char want[160];
	snprintf(want, sizeof want, "input 2 'blk.0.attn_q.weight' is i2_s, which needs activations "
				    "quantized with mode=token, but node %d 'blk.0.attn_qa' (quant_act) "
				    "has mode=block256",
		 m.n_qa);
	VERIFY_FAILS(m.g, "'blk.0.attn_q' (ternary_matmul)", want);
	ir_graph_free(m.g);

	/* and TQ2_0 the other way round; out1 must then be [1, T] */
	m = mini_build();
	ir_attr_set_str(m.g, m.n_ffn_qa, "mode", "token");
	VERIFY_FAILS(m.g, "'blk.0.ffn_gate' (ternary_matmul)",
		     "is tq2_0, which needs activations quantized with mode=block256");
	ir_graph_free(m.g);

	/* codes and scales from two different quantizations */
	m = mini_build();
	node(&m, m.n_gate)->in[1] = node(&m, m.n_qa)->out[1];
	VERIFY_FAILS(m.g, "'blk.0.ffn_gate' (ternary_matmul)",
		     "inputs 0 'blk.0.ffn_qa.q' and 1 'blk.0.attn_qa.s' must be outputs 0 and 1 of one quant_act node");
	ir_graph_free(m.g);

	/* block256 needs whole blocks */
	m = mini_build();
	ir_attr_set_str(m.g, m.n_qa, "mode", "block256");
	m.g->values[node(&m, m.n_qa)->out[1]].ne[0] = 2;
	VERIFY_FAILS(m.g, "'blk.0.attn_qa' (quant_act)",
		     "output 1 'blk.0.attn_qa.s' has shape [2, T], expected [1, T]");
	ir_graph_free(m.g);
}

static void test_verify_graph_ends(void **state)
{
	(void)state;
	Mini m = mini_build();
	m.g->logits = m.x2; /* f32 [256, T], but n_vocab is 64 */
	VERIFY_FAILS(m.g, "graph: logits value",
		     "'blk.0.ffn_res'", "expected an activation f32[64, T]");
	m.g->logits = IR_NONE;
	VERIFY_FAILS(m.g, "graph: logits is value -1");
	m.g->logits = m.logits;
	m.g->tokens = m.embd;
	VERIFY_FAILS(m.g, "graph: tokens value", "'token_embd.weight'", "expected an input i32[T]");
	ir_graph_free(m.g);

	m = mini_build();
	node(&m, m.n_add)->name = NULL;
	VERIFY_FAILS(m.g, "(add) has no name");
	ir_graph_free(m.g);

	m = mini_build();
	m.g->values[m.wk].name = NULL;
	VERIFY_FAILS(m.g, "value 4 has no name");
	ir_graph_free(m.g);

	BnErr e = { 0 };
	assert_int_equal(ir_verify(NULL, &e), BN_EVERIFY);
	assert_int_equal(ir_verify(NULL, NULL), BN_EVERIFY);
}

/* ---- printer ---------------------------------------------------------------------- */

static char *print_to_string(const IrGraph *g)
{
	FILE *f = tmpfile();
	assert_non_null(f);
	ir_print(g, f);
	long n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	char *s = malloc((size_t)n + 1);
	assert_non_null(s);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = 0;
	fclose(f);
	return s;
}

static IrGraph *tiny_build(void)
{
	IrGraph *g = ir_graph_new("tiny", "bitnet-b1.58");
	g->hp = (IrHparams){ .n_ctx_train = 4096, .n_embd = 256, .n_layer = 1, .n_head = 4,
			     .n_head_kv = 2, .head_dim = 64, .n_ff = 768, .n_vocab = 512,
			     .eps = 1e-5f, .rope_base = 500000 };
	int64_t T[1] = { IR_DIM_T };
	g->tokens = ir_value_input(g, "tokens", IR_DT_I32, 1, T);
	IrId embd = add_const(g, "token_embd.weight", IR_DT_F16, 256, 512);
	IrId nw = add_const(g, "output_norm.weight", IR_DT_F32, 256, 0);
	IrId wq = add_const(g, "blk.0.attn_q.weight", IR_DT_I2_S, 256, 256);
	IrId in[3] = { g->tokens, embd };
	IrId x = rows(g, IR_OP_EMBED, "inp_embd", in, 2, 256);
	IrId h = rmsnorm(g, "blk.0.attn_norm", x, nw, 256);
	IrId q8, s;
	IrId qa = quant_act(g, "blk.0.attn_qa", h, 256, "token", &q8, &s);
	ir_attr_set_ints(g, qa, "batches", (const int64_t[]){ 1, 8, 32 }, 3);
	g->values[q8].layout = "tiles";
	IrId q = tmm(g, "blk.0.attn_q", q8, s, wq, 256);
	IrId r = rows(g, IR_OP_ROPE, "blk.0.rope_q", &q, 1, 256);
	ir_attr_set_int(g, producer(g, r), "head_dim", 64);
	ir_attr_set_int(g, producer(g, r), "n_rot", 64);
	ir_attr_set_float(g, producer(g, r), "freq_base", 500000);
	ir_attr_set_str(g, producer(g, r), "mode", "neox");
	ir_attr_set_float(g, producer(g, r), "third", 1.0 / 3.0);
	ir_attr_set_str(g, producer(g, r), "note", "a \"quoted\"\tvalue");
	IrId f = rmsnorm(g, "result_norm", r, nw, 256);
	IrId fe[2] = { f, embd };
	g->logits = rows(g, IR_OP_MATMUL, "result_output", fe, 2, 512);
	return g;
}

static const char tiny_expected[] =
	"graph \"tiny\" arch=bitnet-b1.58\n"
	"hparams n_ctx_train=4096 n_embd=256 n_layer=1 n_head=4 n_head_kv=2 head_dim=64 n_ff=768 n_vocab=512 eps=1e-05 rope_base=500000\n"
	"input  %0 tokens : i32[T]\n"
	"const  %1 token_embd.weight : f16[256, 512] layout=gguf\n"
	"const  %2 output_norm.weight : f32[256] layout=gguf\n"
	"const  %3 blk.0.attn_q.weight : i2_s[256, 256] layout=gguf\n"
	"%4 = embed(%0, %1)                              : f32[256, T]              # node 0 'inp_embd'\n"
	"%5 = rmsnorm(%4, %2) eps=1e-05                  : f32[256, T]              # node 1 'blk.0.attn_norm'\n"
	"%6, %7 = quant_act(%5) mode=\"token\" batches=[1, 8, 32] : i8[256, T]@tiles, f32[1, T] # node 2 'blk.0.attn_qa'\n"
	"%8 = ternary_matmul(%6, %7, %3)                 : f32[256, T]              # node 3 'blk.0.attn_q'\n"
	"%9 = rope(%8) head_dim=64 n_rot=64 freq_base=500000 mode=\"neox\" third=0.3333333333333333 note=\"a \\\"quoted\\\"\\tvalue\" : f32[256, T]              # node 4 'blk.0.rope_q'\n"
	"%10 = rmsnorm(%9, %2) eps=1e-05                 : f32[256, T]              # node 5 'result_norm'\n"
	"%11 = matmul(%10, %1)                           : f32[512, T]              # node 6 'result_output'\n"
	"output %11 result_output\n";

static void test_print_golden(void **state)
{
	(void)state;
	IrGraph *g = tiny_build();
	verify_ok(g);
	char *a = print_to_string(g);
	char *b = print_to_string(g);
	assert_string_equal(a, b); /* same graph, same bytes */
	if (strcmp(a, tiny_expected) != 0) {
		fprintf(stderr, "printer output differs; got:\n%s", a);
		fail();
	}
	free(a);
	free(b);
	ir_graph_free(g);
}

static void test_print_floats(void **state)
{
	(void)state;
	/* Shortest text that reads back exactly, as a float when the value is one. */
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{ 0.125, " f=0.125 " },
		{ 1e-5f, " f=1e-05 " },
		{ 1e-5, " f=1e-05 " },
		{ 0.1f, " f=0.1 " },
		{ 0.1, " f=0.1 " },
		{ 1.0 / 3.0, " f=0.3333333333333333 " },
		{ 1.0f / 3.0f, " f=0.33333334 " },
		{ 500000, " f=500000 " },
		{ 123456789.0, " f=123456789 " },
		{ 1e16, " f=1e+16 " },
		{ 1e300, " f=1e+300 " },
		{ -0.0, " f=-0 " },
		{ -2.5, " f=-2.5 " },
		{ 1.0 / 0.0, " f=inf " },
		{ -1.0 / 0.0, " f=-inf " },
		{ 0.0 / 0.0, " f=nan " },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		IrGraph *g = ir_graph_new("f", "bitnet");
		int64_t T[1] = { IR_DIM_T };
		IrId x = ir_value_input(g, "x", IR_DT_F32, 1, T);
		IrId n = ir_node_add(g, IR_OP_RMSNORM, "n", &x, 1);
		ir_attr_set_float(g, n, "f", cases[i].v);
		char *s = print_to_string(g);
		if (!strstr(s, cases[i].text))
			fail_msg("case %zu: want \"%s\" in:\n%s", i, cases[i].text, s);
		free(s);
		ir_graph_free(g);
	}
}

static void test_print_broken_graph(void **state)
{
	(void)state;
	/* The printer is how one looks at a graph the verifier rejected: bad ids and
	 * types must print, not crash. */
	Mini m = mini_build();
	node(&m, m.n_add)->in[1] = 999;
	node(&m, m.n_add)->out[0] = -5;
	node(&m, m.n_embed)->name = NULL;
	m.g->values[m.wq].dtype = (IrDtype)77;
	m.g->logits = 12345;
	char *s = print_to_string(m.g);
	assert_non_null(strstr(s, "%999?"));
	assert_non_null(strstr(s, "%-5? = add("));
	assert_non_null(strstr(s, "# node 0 '?'"));
	assert_non_null(strstr(s, "const  %3 blk.0.attn_q.weight : ?[256, 256]"));
	assert_non_null(strstr(s, "output %12345?\n"));
	free(s);
	ir_graph_free(m.g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_op_names),
		cmocka_unit_test(test_build_values),
		cmocka_unit_test(test_node1_and_quant_outputs),
		cmocka_unit_test(test_value_shapes),
		cmocka_unit_test(test_attrs),
		cmocka_unit_test(test_verify_mini_block),
		cmocka_unit_test(test_verify_wrong_dtype),
		cmocka_unit_test(test_verify_wrong_shape),
		cmocka_unit_test(test_verify_undefined_input),
		cmocka_unit_test(test_verify_use_before_def),
		cmocka_unit_test(test_verify_producer_links),
		cmocka_unit_test(test_verify_bad_arity),
		cmocka_unit_test(test_verify_t_outermost),
		cmocka_unit_test(test_verify_const_nbytes),
		cmocka_unit_test(test_verify_duplicate_layer),
		cmocka_unit_test(test_verify_attrs),
		cmocka_unit_test(test_verify_quant_mode),
		cmocka_unit_test(test_verify_graph_ends),
		cmocka_unit_test(test_print_golden),
		cmocka_unit_test(test_print_floats),
		cmocka_unit_test(test_print_broken_graph),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
