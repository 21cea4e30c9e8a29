/* test_emit.c - the C emitter: golden text of model.c for a small synthetic model (a change
 * detector made by this emitter: set BN_REGEN=1 to rewrite tests/codegen/golden/ on
 * purpose), warning-free generated code, deterministic output, and clear rejections of
 * graphs it cannot handle. */
#include "testutil.h"

#include "cg_cpu.h"
#include "frontend.h"
#include "pass.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A 1-layer model: n_embd 128 (256 for the 256-element block formats), n_ff 256, 2 query
 * heads sharing 1 KV head. */
static void small_model(TuModel *m, const char *name, IrDtype wtype, IrDtype embd)
{
	BnmSynthSpec s;
	BnErr e = {0};
	assert_int_equal(bnm_synth_shape(&s, "tiny", &e), 0);
	s.n_layer = 1;
	s.n_embd = wtype == IR_DT_I2_S && embd != IR_DT_Q6_K ? 128 : 256;
	s.n_ff = 256;
	s.n_head = 2;
	s.n_head_kv = 1;
	s.n_vocab = 320;
	s.wtype = wtype;
	s.embd_type = embd;
	s.seed = 5;
	char path[1024];
	snprintf(path, sizeof path, "%s", tu_tmp(name));
	if (bnm_synth_write(&s, path, &e))
		fail_msg("%s", e.msg);
	tu_model_open(m, path);
}

static const CgOpts opts = {.target = "cpu-generic", .max_batch = 8, .pipeline = "dce",
			    .bos = 1, .eos = 2};

/* The artifact "model.c" of an emit's output (an empty buffer when there is none). */
static const CgBuf *model_c(const CgOutput *out)
{
	static const CgBuf none;
	const CgArtifact *a = cg_output_find(out, "model.c");
	return a ? &a->bytes : &none;
}

static void emit(const TuModel *m, CgOutput *out)
{
	BnErr e = {0};
	if (cg_cpu_emit(m->g, &opts, out, &e))
		fail_msg("%s", e.msg);
}

/* The source tree's runtime/ (for rt_model.h) from BN_TEST_DATA = tests/data. */
static const char *runtime_dir(void)
{
	static char buf[1024];
	snprintf(buf, sizeof buf, "%s/../../runtime", tu_data("."));
	return buf;
}

/* The generated file compiles without a warning under -Wall -Wextra with gcc (cc) and,
 * when installed, clang; on x86-64 also with the flags of the SIMD paths (the head's
 * #if branches), which compiling needs no such CPU for. */
static void compile_clean(const CgOutput *out, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s.c", tu_tmp(name));
	assert_int_equal(tu_write_file(path, model_c(out)->data, model_c(out)->len), 0);
	static const char *const ccs[] = {"cc", "clang"};
	static const char *const isa[] = {"", "-mavx2 -mfma -mf16c",
					  "-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl"};
	bool x86 = tu_run(NULL, "[ \"$(uname -m)\" = x86_64 ]") == 0;
	for (int i = 0; i < 2; i++) {
		if (i == 1 && tu_run(NULL, "command -v clang >/dev/null 2>&1") != 0)
			continue;
		for (int j = 0; j < (x86 ? 3 : 1); j++) {
			char *log = NULL;
			int rc = tu_run(&log, "%s -std=c11 -O1 -Wall -Wextra -Werror -ffp-contract=off %s -I '%s' -c '%s' -o /dev/null",
					ccs[i], isa[j], runtime_dir(), path);
			if (rc != 0)
				fail_msg("%s: %s %s warns or fails:\n%s", path, ccs[i], isa[j],
					 log ? log : "");
			free(log);
		}
	}
}

/* The emitted text against tests/codegen/golden/small_i2s.model.c, which this emitter made:
 * a change detector (every change of the generated code shows in that file's diff), not
 * an oracle. An intended change regenerates it (cd build && BN_REGEN=1 ctest -R
 * codegen/test_emit; see golden/README.md); that the code is right is checked by
 * test_build and test_kernels, which run it against the interpreter. */
static void test_golden_text(void **state)
{
	(void)state;
	TuModel m;
	small_model(&m, "emit-small.gguf", IR_DT_I2_S, IR_DT_F16);
	CgOutput out;
	emit(&m, &out);
	/* the CPU backend emits one artifact, the C source model.c */
	assert_int_equal(out.n_art, 1);
	assert_string_equal(out.art[0].name, "model.c");
	assert_int_equal(out.art[0].kind, CG_ART_SOURCE);
	char golden[1024];
	snprintf(golden, sizeof golden, "%s/../codegen/golden/small_i2s.model.c", tu_data("."));
	const char *regen = getenv("BN_REGEN");
	if (regen && *regen && strcmp(regen, "0") != 0) {
		assert_int_equal(tu_write_file(golden, model_c(&out)->data, model_c(&out)->len), 0);
		printf("regenerated %s\n", golden);
	}
	size_t n;
	char *want = tu_read_file(golden, &n);
	if (!want)
		fail_msg("%s is missing (BN_REGEN=1 writes it)", golden);
	if (n != model_c(&out)->len || memcmp(want, model_c(&out)->data, n) != 0) {
		char got[1024];
		snprintf(got, sizeof got, "%s", tu_tmp("small_i2s.model.c.got"));
		tu_write_file(got, model_c(&out)->data, model_c(&out)->len);
		fail_msg("emitted model.c differs from %s (diff it against %s; BN_REGEN=1 accepts it)",
			 golden, got);
	}
	free(want);
	/* what the golden text promises about the shape of the output */
	assert_non_null(strstr(model_c(&out)->data, "static void tmm_i2s_k128_n128(void *arg, int ith, int nth)"));
	assert_non_null(strstr(model_c(&out)->data, "static void attn_h2_kv1_hd64("));
	assert_non_null(strstr(model_c(&out)->data, "static int forward_t1("));
	assert_non_null(strstr(model_c(&out)->data, "static int forward_t8("));
	assert_non_null(strstr(model_c(&out)->data, "static const int32_t batch_sizes[] = {1, 8};"));
	assert_non_null(strstr(model_c(&out)->data, "const RtModel BN_MODEL_SYMBOL = {"));
	compile_clean(&out, "emit-small-i2s");
	cg_output_free(&out);
	tu_model_close(&m);
}

/* Other weight and embedding formats: other kernels, still warning-free; the same graph
 * twice gives the same bytes. */
static void test_variants_compile(void **state)
{
	(void)state;
	static const struct {
		IrDtype w, embd;
		const char *kernel;
	} v[] = {
		{IR_DT_TQ1_0, IR_DT_Q6_K, "tmm_tq1_k256_n256"},
		{IR_DT_TQ2_0, IR_DT_Q8_0, "head_q8_0_k256_n320"},
		{IR_DT_I2_S, IR_DT_BF16, "deq_bf16_k128"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		TuModel m;
		char name[64];
		snprintf(name, sizeof name, "emit-var%zu.gguf", i);
		small_model(&m, name, v[i].w, v[i].embd);
		CgOutput a, b;
		emit(&m, &a);
		emit(&m, &b);
		assert_int_equal(model_c(&a)->len, model_c(&b)->len);
		assert_memory_equal(model_c(&a)->data, model_c(&b)->data, model_c(&a)->len);
		assert_int_equal(a.payload.hash, b.payload.hash);
		if (!strstr(model_c(&a)->data, v[i].kernel))
			fail_msg("variant %zu: no kernel %s", i, v[i].kernel);
		snprintf(name, sizeof name, "emit-var%zu", i);
		compile_clean(&a, name);
		cg_output_free(&a);
		cg_output_free(&b);
		tu_model_close(&m);
	}
}

/* Payload offsets are 64-byte aligned and in value order; every kernel appears once. */
static void test_layout(void **state)
{
	(void)state;
	TuModel m;
	small_model(&m, "emit-layout.gguf", IR_DT_I2_S, IR_DT_F16);
	CgOutput out;
	emit(&m, &out);
	assert_true(out.payload.n > 0);
	for (int i = 0; i < out.payload.n; i++) {
		assert_int_equal(out.payload.off[i] % 64, 0);
		if (i)
			assert_true(out.payload.off[i] > out.payload.off[i - 1]);
	}
	assert_true(out.scratch_bytes > 0 && out.scratch_bytes % 64 == 0);
	const char *once[] = {"static void rmsnorm_n128(", "static void tmm_i2s_k128_n256(",
			      "static void head_f16_k128_n320("};
	for (size_t i = 0; i < sizeof once / sizeof once[0]; i++) {
		const char *p = strstr(model_c(&out)->data, once[i]);
		assert_non_null(p);
		assert_null(strstr(p + 1, once[i]));
	}
	cg_output_free(&out);
	tu_model_close(&m);
}

/* A graph the emitter cannot handle gets an error naming the node, not bad code. */
static void test_rejects(void **state)
{
	(void)state;
	TuModel m;
	small_model(&m, "emit-reject.gguf", IR_DT_I2_S, IR_DT_F16);
	IrId rope = IR_NONE;
	for (int i = 0; i < m.g->n_nodes; i++)
		if (m.g->nodes[i].op == IR_OP_ROPE) {
			rope = i;
			break;
		}
	assert_true(rope != IR_NONE);
	ir_attr_set_str(m.g, rope, "mode", "spiral");
	CgOutput out;
	BnErr e = {0};
	assert_int_equal(cg_cpu_emit(m.g, &opts, &out, &e), BN_EUNSUPPORTED);
	assert_non_null(strstr(e.msg, m.g->nodes[rope].name));
	assert_non_null(strstr(e.msg, "rope"));
	assert_null(model_c(&out)->data);

	CgOpts bad = opts;
	bad.max_batch = 0;
	assert_int_equal(cg_cpu_emit(m.g, &bad, &out, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "max_batch"));
	tu_model_close(&m);

	/* max_batch 1 (decode only): the one-token forward alone */
	small_model(&m, "emit-decode.gguf", IR_DT_I2_S, IR_DT_F16);
	CgOpts one = opts;
	one.max_batch = 1;
	assert_int_equal(cg_cpu_emit(m.g, &one, &out, &e), 0);
	assert_non_null(strstr(model_c(&out)->data, "forward_t1("));
	assert_null(strstr(model_c(&out)->data, "forward_t8("));
	assert_non_null(strstr(model_c(&out)->data, "batch_sizes[] = {1};"));
	cg_output_free(&out);

	/* batch sizes that are not 1 first, ascending, ending at max_batch */
	static const int bad_sizes[][3] = {{2, 4, 8}, {1, 8, 4}, {1, 4, 16}, {1, 4, 4}};
	for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
		CgOpts bs = opts;
		bs.batch_sizes = bad_sizes[i];
		bs.n_batch_sizes = 3;
		assert_int_equal(cg_cpu_emit(m.g, &bs, &out, &e), BN_EINVAL);
		assert_non_null(strstr(e.msg, "batch sizes"));
		assert_null(model_c(&out)->data);
	}
	tu_model_close(&m);
}

/* One forward function per batch template: forward_t1 (step mode) and forward_tS for each
 * S > 1, the call of n tokens dispatched to the smallest S >= n; the templates and their
 * users are in the model's description. */
static void test_templates(void **state)
{
	(void)state;
	TuModel m;
	small_model(&m, "emit-tmpl.gguf", IR_DT_I2_S, IR_DT_F16);
	static const int sizes[] = {1, 3, 8};
	CgOpts o = opts;
	o.batch_sizes = sizes;
	o.n_batch_sizes = 3;
	CgOutput out;
	BnErr e = {0};
	if (cg_cpu_emit(m.g, &o, &out, &e))
		fail_msg("%s", e.msg);
	const char *c = model_c(&out)->data;
	assert_non_null(strstr(c, "static int forward_t1(RtState *st, const RtBatch *b, float *logits)"));
	assert_non_null(strstr(c, "/* 2..3 rows in one call"));
	assert_non_null(strstr(c, "static int forward_t3(RtState *st, const RtBatch *b, float *logits)"));
	assert_non_null(strstr(c, "/* 4..8 rows in one call"));
	assert_non_null(strstr(c, "static int forward_t8("));
	assert_non_null(strstr(c, "\tif (n == 1)\n\t\treturn forward_t1(st, b, logits);\n"
				  "\telse if (n <= 3)\n\t\treturn forward_t3(st, b, logits);\n"
				  "\telse\n\t\treturn forward_t8(st, b, logits);\n"));
	/* decode is the one entry point: no forward() wrapper */
	assert_non_null(strstr(c, "static int decode(RtState *st, const RtBatch *b, float *logits)\n"));
	assert_non_null(strstr(c, "\t.decode = decode,\n"));
	assert_null(strstr(c, "static int forward("));
	assert_null(strstr(c, ".forward"));
	assert_non_null(strstr(c, "static const int32_t batch_sizes[] = {1, 3, 8};"));
	assert_non_null(strstr(c, ".n_batch_sizes = 3,"));
	assert_non_null(strstr(c, "forward templates: 1 token (step), 3, 8 tokens (batch)"));
	/* every forward prepares the head's x per row in the row's mode (b->step; without
	 * it, the step mode in a one-row call), for the out rows alone when asked */
	assert_non_null(strstr(c, "head_prep_f16_k128(x + (int64_t)t * 128, xr + (int64_t)r * 128, 1, "
				  "b->step ? b->step[t] != 0 : n == 1);"));
	assert_non_null(strstr(c, "int t = b->out ? b->out[r] : r;"));
	/* attention rounds the softmax weights in the step mode's rows */
	assert_non_null(strstr(c, "int step = a->step ? a->step[t] != 0 : a->n == 1;"));
	assert_null(strstr(c, "if (a->n == 1)\n\t\t\t\t\tw[j] = round_f16(w[j]);"));
	/* each kernel's users are listed once, not once per template */
	const char *u = strstr(c, "/* rmsnorm_n128, used by:\n");
	assert_non_null(u);
	const char *end = strstr(u, "*/");
	int users = 0;
	for (const char *p = strstr(u, "(rmsnorm"); p && p < end; p = strstr(p + 1, "(rmsnorm"))
		users++;
	assert_int_equal(users, 4); /* attn_norm, attn_sub_norm, ffn_norm, result_norm */
	compile_clean(&out, "emit-tmpl");
	cg_output_free(&out);
	tu_model_close(&m);
}

/* The fused norms: rmsnorm_quant and the residual add's add_rmsnorm_quant (per token and
 * per 256 inputs) get the shared norm kernel, its adding variant and their threaded forms,
 * each once; the code is warning-free. The one layer's l_out feeds the head's norm and stays
 * an add. */
static void test_fused(void **state)
{
	(void)state;
	static const struct {
		IrDtype w;
		int64_t k;
		const char *quant;
	} v[] = {
		{IR_DT_I2_S, 128, "quant_tok_k128"},
		{IR_DT_TQ2_0, 256, "quant_q8k_k256"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		TuModel m;
		char name[64], want[160];
		snprintf(name, sizeof name, "emit-fused%zu.gguf", i);
		small_model(&m, name, v[i].w, IR_DT_F16);
		BnErr e = {0};
		if (pass_run(m.g, "fuse", NULL, &e) || pass_run(m.g, "dce", NULL, &e))
			fail_msg("%s", e.msg);
		CgOutput out;
		emit(&m, &out);
		const char *c = model_c(&out)->data;
		snprintf(want, sizeof want, "static void add_rmsnorm_n%" PRId64 "(const float *x, const float *r, float *xs, const float *w, float *y, int n, float eps)\n",
			 v[i].k);
		const char *p = strstr(c, want);
		assert_non_null(p);
		assert_null(strstr(p + 1, want));
		snprintf(want, sizeof want, "static void add_rmsnorm_n%" PRId64 "_%s_par(void *arg, int ith, int nth)",
			 v[i].k, v[i].quant);
		assert_non_null(strstr(c, want));
		snprintf(want, sizeof want, "static void rmsnorm_n%" PRId64 "_%s_par(", v[i].k, v[i].quant);
		assert_non_null(strstr(c, want)); /* attn_norm reads the embedding: no add */
		assert_non_null(strstr(c, "blk.0.ffn_inp (add_rmsnorm_quant) */\n"));
		assert_non_null(strstr(c, "blk.0.l_out (add) */\n"));
		/* the step forward calls the adding norm, then the quantizer, through the temporary */
		snprintf(want, sizeof want, "\t\tadd_rmsnorm_n%" PRId64 "((float *)(S + ", v[i].k);
		assert_non_null(strstr(c, want));
		snprintf(name, sizeof name, "emit-fused%zu", i);
		compile_clean(&out, name);
		cg_output_free(&out);
		tu_model_close(&m);
	}
}

/* cpu-amx: the multi-token forward's ternary matmuls are AMX tile kernels (the one-token
 * forward keeps the AVX-512 GEMV) written through the BN_TILE_* macros; the program asks
 * for amx_tile amx_int8 only when the tiles are the instructions. Warning-free with gcc
 * and clang, with the instructions and emulated. */
static void test_amx(void **state)
{
	(void)state;
	TuModel m;
	BnErr e = {0};
	small_model(&m, "emit-amx.gguf", IR_DT_I2_S, IR_DT_F16);
	if (pass_run(m.g, "permute_weights", NULL, &e))
		fail_msg("%s", e.msg);
	CgOpts o = opts;
	o.target = "cpu-amx";
	CgOutput out;
	if (cg_cpu_emit(m.g, &o, &out, &e))
		fail_msg("%s", e.msg);
	const char *c = model_c(&out)->data;
	assert_non_null(strstr(c, "static void tmm_amx_k128_n256_r2_t16("));
	assert_non_null(strstr(c, "BN_TILE_DPBSSD(0, 2, 3);"));
	assert_non_null(strstr(c, "static void tmm_x16z_k128_n256_r1_t1("));
	assert_non_null(strstr(c, "t1: 7 simd, 0 lut, 0 portable, 0 lut_portable, 0 amx; "
				  "t8: 0 simd, 0 lut, 0 portable, 0 lut_portable, 7 amx"));
	assert_non_null(strstr(c, ".cpu_features = \"avx2 fma f16c avx512f avx512bw avx512vl "
				  "avx512_vnni\" BN_AMX_FEATURES,"));
	assert_non_null(strstr(c, "#define BN_AMX_FEATURES \" amx_tile amx_int8\""));
	char path[1024];
	snprintf(path, sizeof path, "%s", tu_tmp("emit-amx.c"));
	assert_int_equal(tu_write_file(path, model_c(&out)->data, model_c(&out)->len), 0);
	bool x86 = tu_run(NULL, "[ \"$(uname -m)\" = x86_64 ]") == 0;
	static const char *const ccs[] = {"cc", "clang"};
	for (int i = 0; x86 && i < 2; i++) {
		if (i == 1 && tu_run(NULL, "command -v clang >/dev/null 2>&1") != 0)
			continue;
		for (int emu = 0; emu < 2; emu++) {
			char *log = NULL;
			if (tu_run(&log, "%s -std=c11 -O1 -Wall -Wextra -Werror -ffp-contract=off "
					 "-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni "
					 "-mamx-tile -mamx-int8 %s -I '%s' -c '%s' -o /dev/null",
				   ccs[i], emu ? "-DBN_AMX_EMULATE" : "", runtime_dir(), path))
				fail_msg("%s: %s%s warns or fails:\n%s", path, ccs[i],
					 emu ? " -DBN_AMX_EMULATE" : "", log ? log : "");
			free(log);
		}
	}
	cg_output_free(&out);
	tu_model_close(&m);
}

/* cg_printf grows its buffer across many appends and keeps the text intact. */
static void test_buf(void **state)
{
	(void)state;
	CgBuf b = {0};
	for (int i = 0; i < 10000; i++)
		assert_true(cg_printf(&b, "%05d,", i) == 6);
	assert_int_equal(b.len, 60000);
	assert_int_equal(strlen(b.data), 60000);
	assert_memory_equal(b.data + 6 * 9999, "09999,", 6);
	assert_false(b.oom);
	cg_buf_free(&b);
	assert_null(b.data);
}

/* The targets the build step knows. */
static void test_targets(void **state)
{
	(void)state;
	assert_non_null(cg_cpu_target("cpu-generic"));
	const CgCpuTarget *n = cg_cpu_target("native");
	assert_non_null(n);
	assert_string_equal(n->cflags[0], "-march=native");
	assert_null(cg_cpu_target("cpu-avx9"));
	bool have_main = false, have_model_h = false, have_api_h = false;
	for (int i = 0; i < cg_n_runtime_sources; i++) {
		have_main |= strcmp(cg_runtime_sources[i].name, "main.c") == 0;
		have_model_h |= strcmp(cg_runtime_sources[i].name, "rt_model.h") == 0;
		have_api_h |= strcmp(cg_runtime_sources[i].name, "bitnetc.h") == 0;
	}
	assert_true(have_main && have_model_h && have_api_h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_text),   cmocka_unit_test(test_variants_compile),
		cmocka_unit_test(test_layout),        cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_buf),           cmocka_unit_test(test_targets),
		cmocka_unit_test(test_templates),     cmocka_unit_test(test_fused),
		cmocka_unit_test(test_amx),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
