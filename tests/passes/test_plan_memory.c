/* test_plan_memory.c - activation memory planning: on the golden models' default pipeline no
 * two values live at the same time share bytes (checked here from scratch, not with
 * ir_mem_check), the arena is what codegen builds with (with or without the pass, and for
 * another --max-batch), a missing batch_sizes is a clear error, and the verifier rejects a
 * broken plan. */
#include "testutil.h"
#include "cg_cpu.h"
#include "frontend.h"
#include "pass.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct {
	int first, last;
	uint64_t off, end;
	char what[96];
} Span;

/* Every value the arena holds and every temporary, with the nodes it is live over: from its
 * producer to its last reader (the producer alone when nothing reads it). */
static int spans(const IrGraph *g, Span *s)
{
	int n = 0;
	for (IrId id = 0; id < g->n_values; id++) {
		const IrValue *v = &g->values[id];
		if (v->kind != IR_VAL_ACT || id == g->logits) {
			assert_true(v->mem_off == IR_NO_OFF);
			continue;
		}
		assert_true(v->mem_off != IR_NO_OFF);
		int last = v->producer;
		for (int ni = 0; ni < g->n_nodes; ni++)
			for (int k = 0; k < g->nodes[ni].n_in; k++)
				if (g->nodes[ni].in[k] == id)
					last = ni;
		/* f32 4 bytes, i8 1 byte per element, for the plan's tokens */
		uint64_t es = v->dtype == IR_DT_I8 ? 1 : 4;
		uint64_t size = (uint64_t)ir_value_row(v) * es * (uint64_t)g->mem.tokens;
		s[n] = (Span){v->producer, last, v->mem_off, v->mem_off + size, ""};
		snprintf(s[n++].what, sizeof s[0].what, "value %d '%s'", id, v->name);
	}
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *nd = &g->nodes[ni];
		bool norm = nd->op == IR_OP_RMSNORM_QUANT || nd->op == IR_OP_ADD_RMSNORM_QUANT;
		uint64_t row = nd->op == IR_OP_MATMUL ? (uint64_t)g->values[nd->in[1]].ne[0]
			       : norm		      ? (uint64_t)g->values[nd->in[0]].ne[0]
						      : 0;
		if (!row) {
			assert_true(nd->tmp_off == IR_NO_OFF);
			continue;
		}
		assert_true(nd->tmp_off != IR_NO_OFF);
		s[n] = (Span){ni, ni, nd->tmp_off, nd->tmp_off + row * 4 * (uint64_t)g->mem.tokens, ""};
		snprintf(s[n++].what, sizeof s[0].what, "temporary of node %d '%s'", ni, nd->name);
	}
	return n;
}

static void test_no_overlap(void **state)
{
	(void)state;
	for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
		GgufFile *f;
		IrGraph *g = load_planned(models[m], &f);
		assert_int_equal(g->mem.tokens, 128); /* default.lua's largest batch size */
		const IrAttr *a = pass_gattr_find(g, "scratch_bytes");
		assert_non_null(a);
		assert_int_equal(a->i, (int64_t)g->mem.bytes);
		a = pass_gattr_find(g, "scratch_tokens");
		assert_non_null(a);
		assert_int_equal(a->i, 128);
		Span *s = malloc(((size_t)g->n_values + (size_t)g->n_nodes) * sizeof *s);
		assert_non_null(s);
		int n = spans(g, s), n_tmp = 0;
		uint64_t top = 0;
		for (int i = 0; i < n; i++) {
			assert_true(s[i].off % 64 == 0);
			if (s[i].end > top)
				top = s[i].end;
			n_tmp += strstr(s[i].what, "temporary") != NULL;
			for (int j = i + 1; j < n; j++) {
				bool together = s[i].first <= s[j].last && s[j].first <= s[i].last;
				bool apart = s[i].end <= s[j].off || s[j].end <= s[i].off;
				if (together && !apart)
					fail_msg("%s: %s and %s are live together and overlap", models[m],
						 s[i].what, s[j].what);
			}
		}
		/* fits, with the end rounded up to the alignment */
		assert_int_equal(g->mem.bytes, (top + 63) / 64 * 64);
		/* one for the head, one per fused norm (with or without its add) */
		int want_tmp = 0;
		for (int i = 0; i < g->n_nodes; i++)
			want_tmp += g->nodes[i].op == IR_OP_MATMUL || g->nodes[i].op == IR_OP_RMSNORM_QUANT ||
				    g->nodes[i].op == IR_OP_ADD_RMSNORM_QUANT;
		assert_true(want_tmp >= 1 + 2 * (int)g->hp.n_layer);
		assert_int_equal(n_tmp, want_tmp);
		/* the space is reused: far less than every value side by side */
		uint64_t sum = 0;
		for (int i = 0; i < n; i++)
			sum += s[i].end - s[i].off;
		assert_true(g->mem.bytes * 4 < sum);
		/* the printed IR (--dump-after plan_memory) shows the plan: size, then each
		 * node's output offsets and temporary */
		char *txt = tu_print_graph(g), want[128];
		snprintf(want, sizeof want, "memory %" PRIu64 " bytes for 128 tokens\n", g->mem.bytes);
		assert_non_null(strstr(txt, want));
		const IrNode *n1 = &g->nodes[1];
		snprintf(want, sizeof want, "  node 1: %%%d @%" PRIu64, n1->out[0],
			 g->values[n1->out[0]].mem_off);
		assert_non_null(strstr(txt, want));
		free(txt);
		free(s);
		tu_golden_graph_free(g, f);
	}
}

static void emit(const IrGraph *g, int max_batch, CgOutput *out)
{
	int bs[] = {1, max_batch};
	CgOpts o = {.target = "cpu-generic", .max_batch = max_batch, .batch_sizes = bs,
		    .n_batch_sizes = 2, .bos = 1, .eos = 2};
	BnErr e = {0};
	if (cg_cpu_emit(g, &o, out, &e))
		fail_msg("%s", e.msg);
}

/* Codegen builds with the pass's arena; without a plan it computes the same one itself (the
 * same model.c); for another max_batch it plans for that (as without the pass). */
static void test_codegen_agrees(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = load_planned("tiny-b158-i2_s", &f);
	BnErr e = {0};
	CgOutput with, without, small;
	emit(g, 128, &with);
	assert_int_equal(with.scratch_bytes, g->mem.bytes);

	IrMemPlan plan = g->mem;
	g->mem.tokens = 0; /* no plan: codegen plans */
	emit(g, 128, &without);
	assert_int_equal(without.scratch_bytes, plan.bytes);
	const CgBuf *cw = &cg_output_find(&with, "model.c")->bytes;
	const CgBuf *cwo = &cg_output_find(&without, "model.c")->bytes;
	assert_int_equal(cw->len, cwo->len);
	assert_memory_equal(cw->data, cwo->data, cw->len);

	/* --max-batch 16 with a plan for 128: codegen plans for 16, as ir_mem_plan does */
	g->mem = plan;
	emit(g, 16, &small);
	uint64_t *voff = malloc((size_t)g->n_values * sizeof *voff);
	uint64_t *toff = malloc((size_t)g->n_nodes * sizeof *toff);
	uint64_t bytes = 0;
	assert_int_equal(ir_mem_plan(g, 16, voff, toff, &bytes, &e), BN_OK);
	assert_int_equal(small.scratch_bytes, bytes);
	assert_true(bytes < plan.bytes);
	free(voff);
	free(toff);
	cg_output_free(&small);
	/* and for 256, more than the plan holds: planned again, never the small arena */
	emit(g, 256, &small);
	assert_true(small.scratch_bytes > plan.bytes);
	cg_output_free(&small);

	/* a plan for 128 that no longer holds is refused, not built */
	IrId v = g->nodes[g->n_nodes - 1].in[0]; /* the head's input */
	g->values[v].mem_off = g->mem.bytes;
	int bs[] = {1, 128};
	CgOpts o = {.target = "cpu-generic", .max_batch = 128, .batch_sizes = bs, .n_batch_sizes = 2};
	assert_int_equal(cg_cpu_emit(g, &o, &small, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "codegen: memory plan"));
	assert_non_null(strstr(e.msg, "does not fit"));

	cg_output_free(&with);
	cg_output_free(&without);
	tu_golden_graph_free(g, f);
}

/* plan_memory needs batch_templates' sizes first, and says so. */
static void test_needs_batch_sizes(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = tu_golden_graph("tiny-b158-i2_s", &f);
	BnErr e = {0};
	assert_int_equal(pass_run(g, "plan_memory", NULL, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "pass plan_memory: the graph has no batch_sizes attribute: "
				      "run batch_templates before plan_memory"));
	assert_int_equal(g->mem.tokens, 0);
	assert_null(pass_gattr_find(g, "scratch_bytes"));

	/* in a script the error names the step */
	const char *path = tu_tmp("plan_first.lua");
	const char *text = "local p = require('bitnetc').pipeline()\n"
			   "p:add('plan_memory')\n"
			   "p:add('batch_templates')\n"
			   "return p\n";
	assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
	assert_int_equal(pass_pipeline_run(g, path, NULL, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "pass plan_memory ("));
	assert_non_null(strstr(e.msg, "plan_first.lua:2): the graph has no batch_sizes"));
	assert_non_null(strstr(e.msg, "run batch_templates before plan_memory"));

	/* sizes {1, 16}: an arena for 16 tokens */
	assert_int_equal(pass_run(g, "batch_templates", NULL, &e), BN_OK);
	PassOpts o = {0};
	assert_int_equal(pass_opts_parse(&o, "batch_templates.sizes=16,1", &e), BN_OK);
	assert_int_equal(pass_run(g, "batch_templates", &o, &e), BN_OK);
	assert_int_equal(pass_run(g, "plan_memory", NULL, &e), BN_OK);
	assert_int_equal(g->mem.tokens, 16);
	pass_opts_free(&o);
	tu_golden_graph_free(g, f);
}

/* The verifier checks a plan: overlap of values live together, places outside the arena,
 * and values a later pass added without a place. */
static void test_verify_plan(void **state)
{
	(void)state;
	GgufFile *f;
	IrGraph *g = load_planned("tiny-b158-i2_s", &f);
	BnErr e = {0};
	assert_int_equal(ir_verify(g, &e), BN_OK);

	/* a ternary matmul's output placed on its own input */
	IrId nq = IR_NONE;
	for (IrId i = 0; i < g->n_nodes && nq == IR_NONE; i++)
		if (strcmp(g->nodes[i].name, "blk.0.attn_q") == 0)
			nq = i;
	assert_true(nq != IR_NONE);
	IrValue *out = &g->values[g->nodes[nq].out[0]];
	uint64_t keep = out->mem_off;
	out->mem_off = g->values[g->nodes[nq].in[0]].mem_off;
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "memory plan (128 tokens"));
	assert_non_null(strstr(e.msg, "'blk.0.attn_q'"));
	assert_non_null(strstr(e.msg, "overlap while both are live"));
	out->mem_off = keep + 1;
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "not a multiple of 64"));
	out->mem_off = keep;
	g->mem.bytes -= 64 * ((g->mem.bytes / 64) / 2);
	assert_int_equal(ir_verify(g, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "does not fit"));
	g->mem.bytes = (uint64_t)pass_gattr_find(g, "scratch_bytes")->i;
	assert_int_equal(ir_verify(g, &e), BN_OK);

	/* fuse after the plan: the new rmsnorm_quant needs a temporary it does not have. (dce
	 * after the plan is fine: dropping nodes only shortens lifetimes.) */
	assert_int_equal(pass_run(g, "dce", NULL, &e), BN_OK);
	IrId x = g->nodes[0].out[0];
	IrId nn = ir_node_add(g, IR_OP_RMSNORM_QUANT, "late.rq", (IrId[]){x}, 1);
	ir_attr_set_float(g, nn, "eps", 1e-5);
	ir_attr_set_str(g, nn, "mode", "token");
	ir_node_output(g, nn, "late.rq.q", IR_DT_I8, 0, NULL);
	ir_node_output(g, nn, "late.rq.s", IR_DT_F32, 0, NULL);
	assert_int_equal(pass_run(g, "infer_shapes", NULL, &e), BN_EVERIFY);
	assert_non_null(strstr(e.msg, "value"));
	assert_non_null(strstr(e.msg, "'late.rq.q' has no place in the arena"));
	assert_non_null(strstr(e.msg, "run plan_memory last"));
	/* planning again places them */
	assert_int_equal(pass_run(g, "plan_memory", NULL, &e), BN_OK);
	assert_true(g->nodes[nn].tmp_off != IR_NO_OFF);
	tu_golden_graph_free(g, f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_overlap),
		cmocka_unit_test(test_codegen_agrees),
		cmocka_unit_test(test_needs_batch_sizes),
		cmocka_unit_test(test_verify_plan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
