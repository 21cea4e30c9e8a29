/* test_plan_kv.c - the KV cache layout pass: on the golden models' default pipeline each
 * attention node records its layer's place (K then V, the layers in order, widths from the
 * heads), codegen builds with it (the same model.c as without the pass, and another layout
 * when the recorded one is another), and the verifier and codegen refuse a broken plan. */
#include "testutil.h"
#include "cg_cpu.h"
#include "frontend.h"
#include "pass.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The artifact "model.c" of an emit's output (an empty buffer when there is none). */
static const CgBuf *model_c(const CgOutput *out)
{
	static const CgBuf none;
	const CgArtifact *a = cg_output_find(out, "model.c");
	return a ? &a->bytes : &none;
}

static const char *const models[] = {"tiny-b158-i2_s", "tiny-b158-tq1_0", "tiny-b158-tq2_0",
				     "tinyold-bitnet-i2_s", "tinyllama-i2_s",
				     "tinyllama-tq2_0", "tinyllama-tq1_0", "tinyllama-rf-i2_s"};

/* The default pipeline, checking the graph after every pass. */
static IrGraph *load_planned(const char *model, GgufFile **f)
{
	IrGraph *g = tu_golden_graph(model, f);
	BnErr e = {0};
	if (pass_pipeline_run(g, NULL, &(PassRunOpts){.verify_each = true}, &e))
		fail_msg("%s: %s", model, e.msg);
	return g;
}

/* The attention node of layer L; -1 if none. */
static IrId attention_of(const IrGraph *g, int64_t L)
{
	for (IrId i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_ATTENTION && ir_attr_int(&g->nodes[i], "layer", -1) == L)
			return i;
	return -1;
}

/* Layer L's K at the sum of the earlier layers' K and V widths, its width n_head_kv *
 * head_dim; kv_elems their total; the printed IR shows both attributes. */
static void test_layout(void **state)
{
	(void)state;
	for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
		GgufFile *f;
		IrGraph *g = load_planned(models[m], &f);
		int64_t off = 0;
		for (int64_t L = 0; L < g->hp.n_layer; L++) {
			IrId ni = attention_of(g, L);
			assert_true(ni >= 0);
			const IrNode *n = &g->nodes[ni];
			int64_t w = ir_attr_int(n, "n_head_kv", 0) * ir_attr_int(n, "head_dim", 0);
			assert_true(w > 0);
			assert_int_equal(ir_attr_int(n, "kv_off", -1), off);
			assert_int_equal(ir_attr_int(n, "kv_width", -1), w);
			off += 2 * w;
		}
		const IrAttr *el = pass_gattr_find(g, "kv_elems");
		assert_non_null(el);
		assert_int_equal(el->i, off + off % 2);
		char *txt = tu_print_graph(g), want[96];
		IrId n1 = attention_of(g, 1);
		snprintf(want, sizeof want, " kv_off=%" PRId64,
			 ir_attr_int(&g->nodes[n1], "kv_off", -1));
		assert_non_null(strstr(txt, want));
		assert_non_null(strstr(txt, " kv_width="));
		free(txt);
		tu_golden_graph_free(g, f);
	}
}

static void emit(const IrGraph *g, CgOutput *out, BnErr *e)
{
	int bs[] = {1, 8};
	CgOpts o = {.target = "cpu-generic", .max_batch = 8, .batch_sizes = bs,
		    .n_batch_sizes = 2, .bos = 1, .eos = 2};
	memset(out, 0, sizeof *out);
	if (cg_cpu_emit(g, &o, out, e))
		fail_msg("%s", e->msg);
}

/* The pipeline without plan_kv: the same passes in the same order otherwise. */
static IrGraph *load_unplanned(const char *model, GgufFile **f)
{
	static const char *const steps[] = {"infer_shapes", "dce", "fuse", "dce", "permute_weights",
					    "batch_templates", "lut_specialize", "tune_kernels",
					    "plan_memory"};
	IrGraph *g = tu_golden_graph(model, f);
	BnErr e = {0};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
		if (pass_run(g, steps[i], NULL, &e))
			fail_msg("%s: %s", steps[i], e.msg);
	return g;
}

/* Codegen builds with the pass's layout; without the pass it makes the same one (the same
 * model.c); a recorded layout with the layers in reverse order is what it builds. */
static void test_codegen_reads_plan(void **state)
{
	(void)state;
	GgufFile *f1, *f2;
	IrGraph *g = load_planned("tiny-b158-i2_s", &f1);
	IrGraph *u = load_unplanned("tiny-b158-i2_s", &f2);
	assert_null(ir_attr_find(&u->nodes[attention_of(u, 0)], "kv_off"));
	BnErr e = {0};
	CgOutput with, without, rev;
	emit(g, &with, &e);
	emit(u, &without, &e);
	assert_int_equal(model_c(&with)->len, model_c(&without)->len);
	assert_memory_equal(model_c(&with)->data, model_c(&without)->data, model_c(&with)->len);

	/* layer L at the place of layer n - 1 - L (all layers have one width here) */
	int64_t nl = g->hp.n_layer;
	int64_t w = ir_attr_int(&g->nodes[attention_of(g, 0)], "kv_width", 0);
	for (int64_t L = 0; L < nl; L++)
		ir_attr_set_int(g, attention_of(g, L), "kv_off", 2 * w * (nl - 1 - L));
	assert_int_equal(ir_verify(g, &e), BN_OK);
	emit(g, &rev, &e);
	char want[96];
	snprintf(want, sizeof want, "uint16_t *K = st->kv + kvs * %" PRId64 ", *V = K + kvs * %" PRId64
		 ";\n\t\tkv_store", 2 * w * (nl - 1), w);
	const char *first = strstr(model_c(&rev)->data, "uint16_t *K = st->kv + kvs * ");
	assert_non_null(first);
	assert_true(strncmp(first, want, strlen(want)) == 0); /* layer 0 comes first, at the end */
	first = strstr(model_c(&with)->data, "uint16_t *K = st->kv + kvs * ");
	assert_non_null(first);
	assert_true(strncmp(first, "uint16_t *K = st->kv + kvs * 0, ", 32) == 0);
	cg_output_free(&with);
	cg_output_free(&without);
	cg_output_free(&rev);
	tu_golden_graph_free(g, f1);
	tu_golden_graph_free(u, f2);
}

/* Overlapping layers, a width that is not the heads', a plan on some attention nodes only:
 * each refused by the verifier and by codegen, naming the problem. */
static void test_broken_plan(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = load_planned("tiny-b158-i2_s", &f);
	BnErr e = {0};
	IrId a0 = attention_of(g, 0), a1 = attention_of(g, 1);
	int64_t off1 = ir_attr_int(&g->nodes[a1], "kv_off", 0);
	int64_t w = ir_attr_int(&g->nodes[a0], "kv_width", 0);
	int bs[] = {1, 8};
	CgOpts o = {.target = "cpu-generic", .max_batch = 8, .batch_sizes = bs, .n_batch_sizes = 2};
	CgOutput out;

	ir_attr_set_int(g, a1, "kv_off", w); /* layer 1's K on layer 0's V */
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "overlaps layers 0 and 1"));
	assert_int_equal(cg_cpu_emit(g, &o, &out, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "codegen (cpu): the KV plan (plan_kv) overlaps layers 0 and 1"));
	ir_attr_set_int(g, a1, "kv_off", off1);
	assert_int_equal(ir_verify(g, &e), BN_OK);

	ir_attr_set_int(g, a0, "kv_width", w / 2);
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "kv_width"));
	assert_non_null(strstr(e.msg, "is not n_head_kv * head_dim"));
	ir_attr_set_int(g, a0, "kv_width", w);
	ir_attr_set_int(g, a0, "kv_off", -2);
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "kv_off -2 is out of range"));
	tu_golden_graph_free(g, f);

	/* a plan on layer 0's node alone */
	IrGraph *u = load_unplanned("tiny-b158-i2_s", &f);
	ir_attr_set_int(u, attention_of(u, 0), "kv_off", 0);
	ir_attr_set_int(u, attention_of(u, 0), "kv_width", w);
	assert_int_equal(ir_verify(u, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "the KV plan (plan_kv) is incomplete"));
	assert_int_equal(cg_cpu_emit(u, &o, &out, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "codegen (cpu): "));
	tu_golden_graph_free(u, f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_codegen_reads_plan),
		cmocka_unit_test(test_broken_plan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
