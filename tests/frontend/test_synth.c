/* test_synth.c - synthetic models: determinism, formats agree, vocabularies, they load and run. */
#include "testutil.h"

#include "frontend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void spec(BnmSynthSpec *s, int n_layer)
{
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(s, "tiny", &e), 0);
	s->n_layer = n_layer;
}

static const char *write_or_fail(const BnmSynthSpec *s, const char *name)
{
	BnErr e = { 0 };
	const char *path = tu_tmp(name);
	if (bnm_synth_write(s, path, &e))
		fail_msg("%s: %s", name, e.msg);
	return path;
}

/* Copies a string value into buf (NUL-terminated). */
static const char *str_of(const GgufValue *v, char *buf, size_t n)
{
	GgufStr s;
	assert_true(gguf_value_str(v, &s));
	snprintf(buf, n, "%.*s", (int)s.len, s.ptr);
	return buf;
}

static const char *arr_str(const GgufFile *f, const char *key, uint64_t i, char *buf, size_t n)
{
	const GgufKV *kv = gguf_find(f, key);
	GgufValue el;
	assert_non_null(kv);
	assert_true(gguf_value_elem(&kv->val, i, &el));
	return str_of(&el, buf, n);
}

static int64_t arr_int(const GgufFile *f, const char *key, uint64_t i)
{
	const GgufKV *kv = gguf_find(f, key);
	GgufValue el;
	int64_t x;
	assert_true(gguf_value_elem(&kv->val, i, &el));
	assert_true(gguf_value_int(&el, &x));
	return x;
}

static void test_shapes(void **st)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tiny", &e), 0);
	assert_string_equal(s.arch, "bitnet-b1.58");
	assert_int_equal(s.n_layer, 4);
	assert_int_equal(s.n_embd, 256);
	assert_int_equal(s.n_ff, 768);
	assert_int_equal(s.n_head, 4);
	assert_int_equal(s.n_head_kv, 2);
	assert_int_equal(s.n_vocab, 512);
	assert_int_equal(s.n_ctx, 512);
	assert_int_equal(s.wtype, IR_DT_I2_S);
	assert_int_equal(s.embd_type, IR_DT_F16);
	assert_int_equal(bnm_synth_shape(&s, "2b4t", &e), 0);
	assert_int_equal(s.n_layer, 30);
	assert_int_equal(s.n_embd, 2560);
	assert_int_equal(s.n_ff, 6912);
	assert_int_equal(s.n_head, 20);
	assert_int_equal(s.n_head_kv, 5);
	assert_int_equal(s.n_vocab, 128256);
	assert_int_equal(s.n_ctx, 4096);
	assert_true(s.rope_base == 500000.0f);
	assert_int_equal(bnm_synth_shape(&s, "tinyllama", &e), 0);
	assert_string_equal(s.arch, "llama");
	assert_int_equal(s.n_layer, 4);
	assert_int_equal(s.n_embd, 256);
	assert_int_equal(s.n_head_kv, 2);
	assert_true(s.untied_head);
	assert_int_equal(bnm_synth_shape(&s, "huge", &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "'huge'"));
	assert_non_null(strstr(e.msg, "tiny, tinyold, tinyllama, 2b4t"));
}

static void test_deterministic(void **st)
{
	BnmSynthSpec s;
	spec(&s, 2);
	size_t na, nb, nc;
	uint8_t *a = tu_read_file(write_or_fail(&s, "det_a.gguf"), &na);
	uint8_t *b = tu_read_file(write_or_fail(&s, "det_b.gguf"), &nb);
	s.seed = 2;
	uint8_t *c = tu_read_file(write_or_fail(&s, "det_c.gguf"), &nc);
	assert_true(a && b && c);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na);
	assert_true(na != nc || memcmp(a, c, na) != 0);
	free(a);
	free(b);
	free(c);
}

/* The same seed in I2_S, TQ1_0 and TQ2_0 gives the same ternary weights, each format
 * with its own scale layout. */
static void test_formats_agree(void **st)
{
	static const IrDtype types[3] = { IR_DT_I2_S, IR_DT_TQ1_0, IR_DT_TQ2_0 };
	GgufFile *f[3];
	BnErr e = { 0 };
	for (int i = 0; i < 3; i++) {
		BnmSynthSpec s;
		spec(&s, 1);
		s.wtype = types[i];
		char name[32];
		snprintf(name, sizeof name, "fmt%d.gguf", i);
		f[i] = gguf_open(write_or_fail(&s, name), &e);
		assert_non_null(f[i]);
	}
	int8_t w[3][768];
	float sc[3][3];
	int n_checked = 0;
	for (uint64_t t = 0; t < f[0]->n_tensors; t++) {
		const GgufTensor *t0 = &f[0]->tensors[t];
		if (t0->dtype != IR_DT_I2_S)
			continue;
		int64_t k = t0->ne[0], rows = t0->ne[1];
		const GgufTensor *tt[3] = { t0, gguf_find_tensor(f[1], t0->name),
					    gguf_find_tensor(f[2], t0->name) };
		assert_int_equal(tt[1]->dtype, IR_DT_TQ1_0);
		assert_int_equal(tt[2]->dtype, IR_DT_TQ2_0);
		int nz[3] = { 0 };
		for (int64_t r = 0; r < rows; r++) {
			for (int i = 0; i < 3; i++)
				ir_ternary_row(tt[i]->dtype, tt[i]->data, k, rows, r, w[i], sc[i]);
			assert_memory_equal(w[0], w[1], (size_t)k);
			assert_memory_equal(w[0], w[2], (size_t)k);
			for (int64_t j = 0; j < k; j++)
				nz[w[0][j] + 1]++;
			/* scales: the I2_S tensor scale, as f16 in every TQ block */
			assert_true(fabsf(sc[1][0] - sc[0][0]) <= sc[0][0] * 1e-3f);
			assert_true(sc[1][0] == sc[2][0]);
		}
		/* roughly a third each of -1, 0, +1 */
		for (int v = 0; v < 3; v++)
			assert_true(nz[v] > k * rows / 4 && nz[v] < k * rows * 5 / 12);
		n_checked++;
	}
	assert_int_equal(n_checked, 7);
	for (int i = 0; i < 3; i++)
		gguf_close(f[i]);
}

static void test_loads(void **st)
{
	static const IrDtype types[3] = { IR_DT_I2_S, IR_DT_TQ1_0, IR_DT_TQ2_0 };
	for (int i = 0; i < 3; i++) {
		BnmSynthSpec s;
		spec(&s, 2);
		s.wtype = types[i];
		BnErr e = { 0 };
		GgufFile *f = gguf_open(write_or_fail(&s, "load.gguf"), &e);
		assert_non_null(f);
		IrGraph *g = bnm_load(f, &e);
		if (!g)
			fail_msg("%s", e.msg);
		assert_int_equal(ir_verify(g, &e), 0);
		char want[64];
		snprintf(want, sizeof want, "synthetic-l2-e256-v512-%s-seed1",
			 ir_dtype_name(types[i]));
		assert_string_equal(g->name, want);
		ir_graph_free(g);
		gguf_close(f);
	}
}

static void test_bitnet_scales(void **st)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tinyold", &e), 0);
	s.proj_scales = true;
	GgufFile *f = gguf_open(write_or_fail(&s, "old.gguf"), &e);
	assert_non_null(f);
	const GgufTensor *t = gguf_find_tensor(f, "blk.1.ffn_down.scale");
	assert_non_null(t);
	assert_int_equal(t->dtype, IR_DT_F32);
	assert_int_equal(t->ne[0], 1);
	IrGraph *g = bnm_load(f, &e);
	if (!g)
		fail_msg("%s", e.msg);
	assert_string_equal(g->arch, "bitnet");
	assert_string_equal(g->name, "synthetic-tinyold-i2_s-seed1");
	int mul = 0, silu = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		mul += g->nodes[i].op == IR_OP_MUL;
		silu += g->nodes[i].op == IR_OP_SILU_GLU;
	}
	assert_int_equal(mul, 7 * 2);
	assert_int_equal(silu, 2);
	ir_graph_free(g);
	gguf_close(f);

	/* only arch bitnet has them */
	spec(&s, 1);
	s.proj_scales = true;
	assert_int_equal(bnm_synth_write(&s, tu_tmp("bad.gguf"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "proj_scales"));
}

/* --biases and --rope-freqs: the tensors a llama-arch file may carry, read back by the
 * loader (a bias add per projection, rope_freqs in every rope), refused where the arch
 * reads neither. */
static void test_llama_extras(void **st)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tinyllama", &e), 0);
	s.proj_bias = s.rope_freqs = true;
	GgufFile *f = gguf_open(write_or_fail(&s, "rf.gguf"), &e);
	assert_non_null(f);
	const GgufTensor *t = gguf_find_tensor(f, "blk.3.attn_k.bias");
	assert_non_null(t);
	assert_int_equal(t->dtype, IR_DT_F32);
	assert_int_equal(t->ne[0], 128); /* 2 kv heads of 64 */
	t = gguf_find_tensor(f, "rope_freqs.weight");
	assert_non_null(t);
	assert_int_equal(t->ne[0], 32);
	const float *fr = (const float *)t->data;
	assert_true(fr[0] == 1.0f);  /* the shortest wavelength is kept */
	assert_true(fr[31] == 8.0f); /* the longest is divided by the scaling factor */
	IrGraph *g = bnm_load(f, &e);
	if (!g)
		fail_msg("%s", e.msg);
	int add = 0;
	for (int i = 0; i < g->n_nodes; i++)
		add += g->nodes[i].op == IR_OP_ADD;
	assert_int_equal(add, 4 * (7 + 2)); /* 7 biases and 2 residuals per layer */
	ir_graph_free(g);
	gguf_close(f);

	assert_int_equal(bnm_synth_shape(&s, "tinyold", &e), 0);
	s.rope_freqs = true;
	assert_int_equal(bnm_synth_write(&s, tu_tmp("bad.gguf"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "rope_freqs"));
}

static void test_bad_specs(void **st)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	spec(&s, 1);
	s.n_vocab = 271;
	assert_int_equal(bnm_synth_write(&s, tu_tmp("bad.gguf"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "n_vocab 271 is too small (at least 272"));
	spec(&s, 1);
	s.n_embd = 192; /* not a multiple of the I2_S block */
	s.n_head = 3;
	s.n_head_kv = 3;
	assert_int_equal(bnm_synth_write(&s, tu_tmp("bad.gguf"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "blk.0.attn_q.weight"));
	assert_non_null(strstr(e.msg, "128"));
	spec(&s, 1);
	s.n_head = 3;
	assert_int_equal(bnm_synth_write(&s, tu_tmp("bad.gguf"), &e), BN_EINVAL);
	spec(&s, 1);
	s.arch = "gemma";
	assert_int_equal(bnm_synth_write(&s, tu_tmp("bad.gguf"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "'gemma'"));
	spec(&s, 1);
	s.n_layer = 1 << 20;
	assert_int_equal(bnm_synth_write(&s, tu_tmp("bad.gguf"), &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "n_layer"));
}

/* The synthetic vocabulary has the golden models' layout. */
static void test_synth_vocab(void **st)
{
	BnmSynthSpec s;
	spec(&s, 1);
	BnErr e = { 0 };
	GgufFile *f = gguf_open(write_or_fail(&s, "voc.gguf"), &e);
	GgufFile *gold = gguf_open(tu_data("golden/models/tiny-b158-i2_s.gguf"), &e);
	assert_non_null(f);
	assert_non_null(gold);
	char a[256], b[512], m[256];
	const char *keys[] = { "tokenizer.ggml.model", "tokenizer.ggml.pre" };
	for (int i = 0; i < 2; i++)
		assert_string_equal(str_of(&gguf_find(f, keys[i])->val, a, sizeof a),
				    str_of(&gguf_find(gold, keys[i])->val, b, sizeof b));
	const char *ints[] = { "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
			       "tokenizer.ggml.add_bos_token", "general.file_type" };
	for (int i = 0; i < 4; i++) {
		int64_t x, y;
		assert_true(gguf_get_int(f, ints[i], &x));
		assert_true(gguf_get_int(gold, ints[i], &y));
		assert_int_equal(x, y);
	}
	assert_int_equal(gguf_find(f, "tokenizer.ggml.tokens")->val.arr_n, 512);
	assert_int_equal(gguf_find(f, "tokenizer.ggml.merges")->val.arr_n, 240);
	for (uint64_t i = 0; i < 256; i++) /* byte tokens */
		assert_string_equal(arr_str(f, "tokenizer.ggml.tokens", i, a, sizeof a),
				    arr_str(gold, "tokenizer.ggml.tokens", i, b, sizeof b));
	for (uint64_t i = 496; i < 512; i++) { /* BOS, EOS, reserved */
		assert_string_equal(arr_str(f, "tokenizer.ggml.tokens", i, a, sizeof a),
				    arr_str(gold, "tokenizer.ggml.tokens", i, b, sizeof b));
		assert_int_equal(arr_int(f, "tokenizer.ggml.token_type", i), 3);
	}
	for (uint64_t i = 0; i < 240; i++) { /* merge i makes token 256 + i */
		arr_str(f, "tokenizer.ggml.merges", i, m, sizeof m);
		arr_str(f, "tokenizer.ggml.tokens", 256 + i, a, sizeof a);
		char *sp = strchr(m, ' ');
		assert_non_null(sp);
		*sp = 0;
		snprintf(b, sizeof b, "%s%s", m, sp + 1);
		assert_string_equal(a, b);
		assert_int_equal(arr_int(f, "tokenizer.ggml.token_type", 256 + i), 1);
	}
	assert_null(gguf_find(f, "tokenizer.chat_template"));
	gguf_close(f);
	gguf_close(gold);
}

/* The Llama 3 vocabulary (BN_DATA_DIR/llama3, decompressed by the build). */
static void test_llama3_vocab(void **st)
{
	const char *dd = getenv("BN_DATA_DIR");
	char dir[1024], probe[1100];
	snprintf(dir, sizeof dir, "%s/llama3", dd ? dd : "build/data");
	snprintf(probe, sizeof probe, "%s/merges.txt", dir);
	FILE *fp = fopen(probe, "rb");
	if (!fp)
		skip();
	fclose(fp);
	BnmSynthSpec s;
	BnErr e = { 0 };
	spec(&s, 1);
	s.n_ff = 256;
	s.vocab_dir = dir;
	assert_int_equal(bnm_synth_write(&s, tu_tmp("l3bad.gguf"), &e),
			 BN_EINVAL); /* n_vocab 512 */
	assert_non_null(strstr(e.msg, "128256"));
	s.n_vocab = 128256;
	GgufFile *f = gguf_open(write_or_fail(&s, "l3.gguf"), &e);
	assert_non_null(f);
	char a[256];
	assert_int_equal(gguf_find(f, "tokenizer.ggml.tokens")->val.arr_n, 128256);
	assert_int_equal(gguf_find(f, "tokenizer.ggml.token_type")->val.arr_n, 128256);
	assert_int_equal(gguf_find(f, "tokenizer.ggml.merges")->val.arr_n, 280147);
	assert_null(gguf_find(f, "tokenizer.ggml.pre"));
	assert_string_equal(arr_str(f, "tokenizer.ggml.merges", 0, a, sizeof a), "Ġ Ġ");
	assert_string_equal(arr_str(f, "tokenizer.ggml.tokens", 128000, a, sizeof a),
			    "<|begin_of_text|>");
	assert_string_equal(arr_str(f, "tokenizer.ggml.tokens", 128009, a, sizeof a), "<|eot_id|>");
	assert_string_equal(arr_str(f, "tokenizer.ggml.tokens", 220, a, sizeof a), "Ġ");
	assert_int_equal(arr_int(f, "tokenizer.ggml.token_type", 127999), 1);
	assert_int_equal(arr_int(f, "tokenizer.ggml.token_type", 128255), 3);
	int64_t x;
	assert_true(gguf_get_int(f, "tokenizer.ggml.bos_token_id", &x));
	assert_int_equal(x, 128000);
	assert_true(gguf_get_int(f, "tokenizer.ggml.eos_token_id", &x));
	assert_int_equal(x, 128001);
	GgufStr tmpl;
	assert_true(gguf_get_str(f, "tokenizer.chat_template", &tmpl));
	size_t n;
	char *want = tu_read_file(tu_data("tokenizer/chat_template_bitnet_hf.jinja"), &n);
	assert_non_null(want);
	assert_int_equal(tmpl.len, n);
	assert_memory_equal(tmpl.ptr, want, n);
	free(want);
	IrGraph *g = bnm_load(f, &e);
	if (!g)
		fail_msg("%s", e.msg);
	assert_int_equal(g->hp.n_vocab, 128256);
	ir_graph_free(g);
	gguf_close(f);
}

/* Healthy activations: the model runs and its logits are neither flat nor huge. */
static void test_runs(void **st)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tiny", &e), 0);
	GgufFile *f = gguf_open(write_or_fail(&s, "run.gguf"), &e);
	IrGraph *g = f ? bnm_load(f, &e) : NULL;
	if (!g)
		fail_msg("%s", e.msg);
	IrInterp *it = ir_interp_new(g, 64, &e);
	if (!it)
		fail_msg("%s", e.msg);
	const int32_t toks[8] = { 496, 84, 104, 101, 32, 113, 117, 105 };
	float *lg = malloc(sizeof(float) * 8 * 512);
	if (ir_interp_eval(it, toks, 8, lg, &e))
		fail_msg("%s", e.msg);
	for (int r = 0; r < 8; r++) {
		double sum = 0, sq = 0;
		for (int i = 0; i < 512; i++) {
			float v = lg[r * 512 + i];
			assert_true(isfinite(v));
			sum += v;
			sq += (double)v * v;
		}
		double sd = sqrt(sq / 512 - (sum / 512) * (sum / 512));
		if (sd < 0.1 || sd > 20)
			fail_msg("row %d: logit std %g", r, sd);
	}
	free(lg);
	ir_interp_free(it);
	ir_graph_free(g);
	gguf_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes),        cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_formats_agree), cmocka_unit_test(test_loads),
		cmocka_unit_test(test_bitnet_scales), cmocka_unit_test(test_bad_specs),
		cmocka_unit_test(test_synth_vocab),   cmocka_unit_test(test_llama3_vocab),
		cmocka_unit_test(test_llama_extras),  cmocka_unit_test(test_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
