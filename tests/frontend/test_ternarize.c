/* test_ternarize.c - float (f32, f16, bf16) projection weights: the ternarization rule, the
 * graphs, logits and payloads they give against the same model in I2_S, and bitnetc quantize. */
#include "testutil.h"

#include "frontend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

typedef struct {
	GgufFile *f;
	IrGraph *g;
} Model;

static Model load_ok(const char *path)
{
	BnErr e = { 0 };
	Model m = { 0 };
	m.f = gguf_open(path, &e);
	if (!m.f)
		fail_msg("%s", e.msg);
	m.g = bnm_load(m.f, &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	return m;
}

static void model_free(Model *m)
{
	ir_graph_free(m->g);
	gguf_close(m->f);
}

/* A synthetic model (the tiny shape, n_layer layers) with its projections in wtype. */
static const char *synth(const char *name, IrDtype wtype, int n_layer, uint64_t seed)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tiny", &e), 0);
	s.n_layer = n_layer;
	s.wtype = wtype;
	s.seed = seed;
	const char *path = tu_tmp(name);
	if (bnm_synth_write(&s, path, &e))
		fail_msg("synth %s: %s", name, e.msg);
	return path;
}

static const IrValue *find_const(const IrGraph *g, const char *name)
{
	for (int i = 0; i < g->n_values; i++)
		if (g->values[i].kind == IR_VAL_CONST && strcmp(g->values[i].name, name) == 0)
			return &g->values[i];
	return NULL;
}

/* Every constant of a is in b with the same type, shape and bytes. Returns how many were
 * ternary. */
static int same_consts(const IrGraph *a, const IrGraph *b)
{
	int n_tern = 0, n_a = 0, n_b = 0;
	for (int i = 0; i < b->n_values; i++)
		n_b += b->values[i].kind == IR_VAL_CONST;
	for (int i = 0; i < a->n_values; i++) {
		const IrValue *va = &a->values[i];
		if (va->kind != IR_VAL_CONST)
			continue;
		n_a++;
		const IrValue *vb = find_const(b, va->name);
		if (!vb)
			fail_msg("%s: missing", va->name);
		if (va->dtype != vb->dtype || va->nbytes != vb->nbytes ||
		    memcmp(va->ne, vb->ne, sizeof va->ne) ||
		    memcmp(va->data, vb->data, (size_t)va->nbytes))
			fail_msg("%s: %s %llu bytes vs %s %llu bytes, or other bytes", va->name,
				 ir_dtype_name(va->dtype), (unsigned long long)va->nbytes,
				 ir_dtype_name(vb->dtype), (unsigned long long)vb->nbytes);
		n_tern += ir_dtype_info(va->dtype)->ternary;
	}
	assert_int_equal(n_a, n_b);
	return n_tern;
}

static const int32_t prompt[] = { 496, 84, 104, 101, 32, 113, 117, 105 };
enum { N_PROMPT = sizeof prompt / sizeof prompt[0] };

/* The interpreter's logits for the prompt in one call, then two single steps. */
static float *logits(const IrGraph *g)
{
	BnErr e = { 0 };
	int64_t nv = g->hp.n_vocab;
	float *out = malloc((size_t)(N_PROMPT + 2) * (size_t)nv * sizeof(float));
	IrInterp *it = ir_interp_new(g, 64, &e);
	if (!it || !out)
		fail_msg("interp: %s", e.msg);
	if (ir_interp_eval(it, prompt, N_PROMPT, out, &e) ||
	    ir_interp_eval(it, prompt + 1, 1, out + N_PROMPT * nv, &e) ||
	    ir_interp_eval(it, prompt + 2, 1, out + (N_PROMPT + 1) * nv, &e))
		fail_msg("interp: %s", e.msg);
	ir_interp_free(it);
	for (int64_t i = 0; i < (N_PROMPT + 2) * nv; i++)
		assert_true(isfinite(out[i]));
	return out;
}

static void same_logits(const IrGraph *a, const IrGraph *b)
{
	assert_int_equal(a->hp.n_vocab, b->hp.n_vocab);
	float *la = logits(a), *lb = logits(b);
	assert_memory_equal(la, lb, (size_t)(N_PROMPT + 2) * (size_t)a->hp.n_vocab * sizeof(float));
	free(la);
	free(lb);
}

static void copy_kv(GgufWriter *w, const GgufKV *kv)
{
	const GgufValue *v = &kv->val;
	uint64_t head = v->type == GGUF_T_ARRAY ? 12 : 0; /* element type and count */
	gguf_writer_raw(w, kv->key, v->type, v->data - head, v->size + head);
}

/* A copy of src in which tensor `name` is replaced by n floats stored as dt. */
static const char *with_tensor(const char *src, const char *out, const char *name, IrDtype dt,
			       const float *vals)
{
	BnErr e = { 0 };
	GgufFile *f = gguf_open(src, &e);
	if (!f)
		fail_msg("%s", e.msg);
	GgufWriter *w = gguf_writer_new();
	for (uint64_t i = 0; i < f->n_kv; i++)
		copy_kv(w, &f->kv[i]);
	void *buf = NULL;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		const void *data = t->data;
		uint64_t nbytes = t->nbytes;
		uint32_t type = t->ggml_type;
		if (strcmp(t->name, name) == 0) {
			int64_t n = t->ne[0] * t->ne[1];
			assert_true(ir_dtype_nbytes(dt, (uint64_t)n, (uint64_t)t->ne[0], &nbytes));
			buf = malloc((size_t)nbytes);
			ir_quant(dt, vals, buf, n);
			data = buf;
			type = (uint32_t)ir_dtype_info(dt)->ggml_id;
		}
		if (gguf_writer_tensor(w, t->name, type, t->n_dims, t->ne, data, nbytes, &e))
			fail_msg("%s", e.msg);
	}
	const char *path = tu_tmp(out);
	if (gguf_writer_write(w, path, &e))
		fail_msg("%s", e.msg);
	gguf_writer_free(w);
	free(buf);
	gguf_close(f);
	return path;
}

/* Roughly normal floats, std about sd. */
static float *normalish(int64_t n, float sd, uint64_t seed)
{
	float *v = malloc((size_t)n * sizeof(float));
	for (int64_t i = 0; i < n; i++) {
		float s = 0;
		for (int j = 0; j < 4; j++)
			s += tu_randf(&seed);
		v[i] = s * sd * 0.866f; /* the sum of 4 uniforms in [-1,1) has std 2/sqrt(3) */
	}
	return v;
}

/* The absmean rule written out plainly: s = 1 / max(mean |w|, 1e-5) (f32), x = w * s
 * (f32); x > 0.5 is +1, x < -0.5 is -1, and |x| <= 0.5 (0.5 itself rounds half to even) is
 * 0; the magnitude 1/s rounded to the weights' type. */
static void absmean_ref(const float *w, int64_t n, IrDtype dt, int8_t *t, float *scale)
{
	double sum = 0;
	for (int64_t i = 0; i < n; i++)
		sum += w[i] < 0 ? -(double)w[i] : (double)w[i];
	float mean = (float)(sum / (double)n);
	float s = 1.0f / (mean < 1e-5f ? 1e-5f : mean);
	for (int64_t i = 0; i < n; i++) {
		float x = w[i] * s;
		t[i] = (int8_t)(x > 0.5f ? 1 : x < -0.5f ? -1 : 0);
	}
	float v = 1.0f / s;
	if (dt == IR_DT_F16)
		v = bn_f16_to_f32(bn_f32_to_f16(v));
	else if (dt == IR_DT_BF16)
		v = bn_bf16_to_f32(bn_f32_to_bf16(v));
	*scale = v;
}

/* The ternary values and per-tensor scale of an I2_S constant. */
static void i2s_values(const IrValue *v, int8_t *t, float *scale)
{
	int64_t k = v->ne[0], rows = v->ne[1];
	for (int64_t r = 0; r < rows; r++)
		assert_int_equal(ir_ternary_row(v->dtype, v->data, k, rows, r, t + r * k, scale), 1);
}

static void assert_has(const char *msg, const char *what)
{
	if (!strstr(msg, what))
		fail_msg("message \"%s\" does not mention \"%s\"", msg, what);
}

/* ---- the rule (ir_ternarize) -------------------------------------------------- */

static void test_rule_kept(void **st)
{
	const float m = 0.0234375f;
	float w[256], orig[256];
	for (int i = 0; i < 256; i++)
		w[i] = (i % 3 == 0) ? 0.0f : (i % 3 == 1) ? m : -m;
	w[3] = -0.0f;
	memcpy(orig, w, sizeof w);
	float scale = -1;
	int64_t bad = -1;
	assert_int_equal(ir_ternarize(w, 256, IR_DT_F16, &scale, &bad), IR_TERN_KEPT);
	assert_true(scale == m);
	assert_memory_equal(w, orig, sizeof w); /* signs and magnitude as they were */
	/* all zero: kept, scale 0 */
	float z[8] = { 0 };
	assert_int_equal(ir_ternarize(z, 8, IR_DT_F32, &scale, &bad), IR_TERN_KEPT);
	assert_true(scale == 0);
	/* a second magnitude makes it an absmean tensor */
	w[7] = 2 * m;
	assert_int_equal(ir_ternarize(w, 256, IR_DT_F32, &scale, &bad), IR_TERN_ABSMEAN);
}

static void test_rule_absmean(void **st)
{
	/* mean |w| = 0.25 exactly, so s = 4: 0.125 * 4 = 0.5 rounds half to even (0), 1.5 to 2
	 * (clamped to 1), 1 stays 1 */
	float w[8] = { 0.125f, -0.125f, 0.375f, -0.375f, 0.25f, -0.25f, 0.25f, 0.25f };
	const int8_t want[8] = { 0, 0, 1, -1, 1, -1, 1, 1 };
	float scale;
	int64_t bad;
	assert_int_equal(ir_ternarize(w, 8, IR_DT_F32, &scale, &bad), IR_TERN_ABSMEAN);
	assert_true(scale == 0.25f);
	for (int i = 0; i < 8; i++)
		assert_true(w[i] == want[i] * 0.25f);

	/* random weights in each source type, against the plain computation */
	static const IrDtype types[] = { IR_DT_F32, IR_DT_F16, IR_DT_BF16 };
	const int64_t n = 256 * 64;
	int8_t *t = malloc((size_t)n);
	for (int k = 0; k < 3; k++) {
		float *v = normalish(n, 0.02f, 11 + (uint64_t)k);
		/* the values as the file holds them */
		uint16_t *h = malloc((size_t)n * 2);
		if (types[k] != IR_DT_F32) {
			ir_quant(types[k], v, h, n);
			ir_dequant(types[k], h, v, n);
		}
		float ref_scale;
		absmean_ref(v, n, types[k], t, &ref_scale);
		assert_int_equal(ir_ternarize(v, n, types[k], &scale, &bad), IR_TERN_ABSMEAN);
		assert_true(scale == ref_scale);
		int nz[3] = { 0 };
		for (int64_t i = 0; i < n; i++) {
			if (v[i] != (float)t[i] * ref_scale)
				fail_msg("%s: element %lld: %g, expected %d * %g",
					 ir_dtype_name(types[k]), (long long)i, (double)v[i], t[i],
					 (double)ref_scale);
			nz[t[i] + 1]++;
		}
		/* a normal tensor: about 31% each sign, 38% zeros */
		for (int j = 0; j < 3; j++)
			assert_true(nz[j] > n / 5 && nz[j] < n / 2);
		free(h);
		free(v);
	}
	free(t);

	/* tiny weights: the mean is clamped to 1e-5, so everything rounds to 0 */
	float tiny[4] = { 1e-7f, -2e-7f, 3e-7f, 0 };
	assert_int_equal(ir_ternarize(tiny, 4, IR_DT_F32, &scale, &bad), IR_TERN_ABSMEAN);
	assert_true(scale == 1.0f / (1.0f / 1e-5f));
	for (int i = 0; i < 4; i++)
		assert_true(tiny[i] == 0);
}

static void test_rule_nonfinite(void **st)
{
	float w[6] = { 0.1f, -0.2f, 0.3f, NAN, 0.5f, INFINITY }, orig[6];
	memcpy(orig, w, sizeof w);
	float scale = 7;
	int64_t bad = -1;
	assert_int_equal(ir_ternarize(w, 6, IR_DT_F16, &scale, &bad), IR_TERN_NONFINITE);
	assert_int_equal(bad, 3);
	assert_true(scale == 7);
	assert_memory_equal(w, orig, sizeof w);
	float x[3] = { 0, -INFINITY, 0 };
	assert_int_equal(ir_ternarize(x, 3, IR_DT_F32, &scale, &bad), IR_TERN_NONFINITE);
	assert_int_equal(bad, 1);
}

/* ---- loading float projections ------------------------------------------------- */

/* --type f16, bf16 and f32 give the I2_S model's constants, byte for byte, and its logits. */
static void test_float_models(void **st)
{
	static const IrDtype types[] = { IR_DT_F16, IR_DT_BF16, IR_DT_F32 };
	Model ref = load_ok(synth("tern_i2s.gguf", IR_DT_I2_S, 2, 5));
	for (int k = 0; k < 3; k++) {
		char name[64];
		snprintf(name, sizeof name, "tern_%s.gguf", ir_dtype_name(types[k]));
		Model m = load_ok(synth(name, types[k], 2, 5));
		/* the file holds floats; the graph I2_S */
		assert_int_equal(gguf_find_tensor(m.f, "blk.1.ffn_down.weight")->dtype, types[k]);
		assert_true(bnm_float_projection(gguf_find_tensor(m.f, "blk.1.ffn_down.weight")));
		assert_int_equal(same_consts(m.g, ref.g), 14);
		assert_int_equal(find_const(m.g, "blk.0.attn_q.weight")->dtype, IR_DT_I2_S);
		same_logits(m.g, ref.g);
		model_free(&m);
	}
	/* another seed gives other weights (the comparison above can fail) */
	Model other = load_ok(synth("tern_f16_s6.gguf", IR_DT_F16, 2, 6));
	const IrValue *a = find_const(other.g, "blk.0.attn_q.weight");
	const IrValue *b = find_const(ref.g, "blk.0.attn_q.weight");
	assert_true(memcmp(a->data, b->data, (size_t)a->nbytes) != 0);
	model_free(&other);
	model_free(&ref);
}

/* The arch with SiLU gate and projection scales ternarizes the same way. */
static void test_float_old_arch(void **st)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	const char *p[2];
	for (int i = 0; i < 2; i++) {
		assert_int_equal(bnm_synth_shape(&s, "tinyold", &e), 0);
		s.proj_scales = true;
		s.wtype = i ? IR_DT_BF16 : IR_DT_I2_S;
		p[i] = tu_tmp(i ? "old_bf16.gguf" : "old_i2s.gguf");
		if (bnm_synth_write(&s, p[i], &e))
			fail_msg("%s", e.msg);
	}
	Model a = load_ok(p[0]), b = load_ok(p[1]);
	assert_int_equal(same_consts(b.g, a.g), 14);
	same_logits(a.g, b.g);
	model_free(&a);
	model_free(&b);
}

/* A tensor that is not ternary-valued (as an unquantized checkpoint holds) takes the
 * absmean rule; the others in the file are kept. */
static void test_absmean_tensor(void **st)
{
	static const IrDtype types[] = { IR_DT_F32, IR_DT_F16, IR_DT_BF16 };
	const char *src = synth("abs_src.gguf", IR_DT_F16, 2, 3);
	Model ref = load_ok(synth("abs_ref.gguf", IR_DT_I2_S, 2, 3));
	const int64_t k = 256, rows = 768, n = k * rows;
	int8_t *want = malloc((size_t)n), *got = malloc((size_t)n);
	for (int j = 0; j < 3; j++) {
		float *v = normalish(n, 0.03f, 40 + (uint64_t)j);
		char name[64];
		snprintf(name, sizeof name, "abs_%s.gguf", ir_dtype_name(types[j]));
		const char *p = with_tensor(src, name, "blk.1.ffn_up.weight", types[j], v);
		Model m = load_ok(p);
		/* what the file holds, through the plain rule */
		const GgufTensor *t = gguf_find_tensor(m.f, "blk.1.ffn_up.weight");
		assert_int_equal(t->dtype, types[j]);
		ir_dequant(t->dtype, t->data, v, n);
		float want_scale, got_scale;
		absmean_ref(v, n, types[j], want, &want_scale);
		const IrValue *c = find_const(m.g, "blk.1.ffn_up.weight");
		assert_int_equal(c->dtype, IR_DT_I2_S);
		i2s_values(c, got, &got_scale);
		assert_true(got_scale == want_scale);
		assert_memory_equal(got, want, (size_t)n);
		/* the other projections are the I2_S model's */
		assert_memory_equal(find_const(m.g, "blk.1.ffn_gate.weight")->data,
				    find_const(ref.g, "blk.1.ffn_gate.weight")->data,
				    find_const(ref.g, "blk.1.ffn_gate.weight")->nbytes);
		float *l = logits(m.g);
		free(l);
		model_free(&m);
		free(v);
	}
	free(want);
	free(got);
	model_free(&ref);
}

static void expect_load_fail(const char *path, int code, const char *what, const char *what2)
{
	BnErr e = { 0 };
	GgufFile *f = gguf_open(path, &e);
	assert_non_null(f);
	IrGraph *g = bnm_load(f, &e);
	if (g)
		fail_msg("%s loaded; expected an error about %s", path, what);
	assert_int_equal(e.code, code);
	assert_has(e.msg, path);
	assert_has(e.msg, what);
	assert_has(e.msg, what2);
	gguf_close(f);
}

/* NaN or infinity in a float projection: an error naming the tensor and the element. */
static void test_nonfinite_tensor(void **st)
{
	const char *src = synth("nf_src.gguf", IR_DT_F16, 2, 3);
	const int64_t n = 256 * 128;
	float *v = normalish(n, 0.03f, 9);
	v[256 * 5 + 7] = NAN;
	expect_load_fail(with_tensor(src, "nf_nan.gguf", "blk.1.attn_v.weight", IR_DT_F16, v),
			 BN_EFORMAT, "blk.1.attn_v.weight: f16 element 1287 (row 5, column 7) is NaN",
			 "must be finite");
	v[256 * 5 + 7] = 0;
	v[3] = -INFINITY;
	expect_load_fail(with_tensor(src, "nf_inf.gguf", "blk.0.attn_k.weight", IR_DT_F32, v),
			 BN_EFORMAT, "blk.0.attn_k.weight: f32 element 3 (row 0, column 3) is infinite",
			 "must be finite");
	v[3] = 1e30f; /* finite as a float, infinite once stored as f16 */
	expect_load_fail(with_tensor(src, "nf_f16inf.gguf", "blk.0.attn_k.weight", IR_DT_F16, v),
			 BN_EFORMAT, "blk.0.attn_k.weight: f16 element 3", "is infinite");
	free(v);
}

/* Rows the I2_S kernels cannot take: the message says why the float rows need 128. */
static void test_float_k_not_block(void **st)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tiny", &e), 0);
	s.n_layer = 1;
	s.wtype = IR_DT_F16;
	s.n_embd = 192;
	s.n_head = 3;
	s.n_head_kv = 3;
	s.n_ff = 256;
	const char *p = tu_tmp("k192_f16.gguf");
	assert_int_equal(bnm_synth_write(&s, p, &e), 0);
	expect_load_fail(p, BN_EUNSUPPORTED, "blk.0.attn_q.weight: unsupported shape [192, 192]",
			 "multiple of 128 elements (float projections are ternarized to i2_s)");
}

/* A projection type that is neither ternary nor float is still refused, listing both. */
static void test_other_type(void **st)
{
	const char *src = synth("q8_src.gguf", IR_DT_I2_S, 1, 3);
	float *v = normalish(256 * 256, 0.03f, 2);
	expect_load_fail(with_tensor(src, "q8.gguf", "blk.0.attn_output.weight", IR_DT_Q8_0, v),
			 BN_EUNSUPPORTED, "blk.0.attn_output.weight: unsupported type q8_0",
			 "or f32, f16 or bf16 to be ternarized");
	free(v);
}

static void test_is_projection(void **st)
{
	assert_true(bnm_is_projection("blk.0.attn_q.weight"));
	assert_true(bnm_is_projection("blk.29.ffn_down.weight"));
	assert_true(bnm_is_projection("blk.3.attn_output.weight"));
	assert_false(bnm_is_projection("blk.0.attn_q.bias"));
	assert_false(bnm_is_projection("blk.0.attn_q.scale"));
	assert_false(bnm_is_projection("blk.0.attn_norm.weight"));
	assert_false(bnm_is_projection("blk.0.attn_sub_norm.weight"));
	assert_false(bnm_is_projection("blk..attn_q.weight"));
	assert_false(bnm_is_projection("blk.x.attn_q.weight"));
	assert_false(bnm_is_projection("blk.0.attn_q.weight.x"));
	assert_false(bnm_is_projection("token_embd.weight"));
	assert_false(bnm_is_projection("output.weight"));
}

/* ---- the driver: build payloads, inspect ------------------------------------------ */

/* The program built from the f16 model carries the I2_S model's weights payload. */
static void test_build_payload(void **st)
{
	const char *p[2] = { synth("bp_i2s.gguf", IR_DT_I2_S, 1, 8),
			     synth("bp_f16.gguf", IR_DT_F16, 1, 8) };
	char wpath[2][1024];
	void *w[2];
	size_t n[2];
	for (int i = 0; i < 2; i++) {
		char *log = NULL;
		snprintf(wpath[i], sizeof wpath[i], "%s", tu_tmp(i ? "bp_f16.w" : "bp_i2s.w"));
		int rc = tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-generic --max-batch 8 "
				      "--weights-file '%s' 2>&1",
				tu_bitnetc(), p[i], tu_tmp(i ? "bp_f16" : "bp_i2s"), wpath[i]);
		if (rc != 0)
			fail_msg("build %s: exit %d\n%s", p[i], rc, log);
		free(log);
		w[i] = tu_read_file(wpath[i], &n[i]);
		assert_non_null(w[i]);
	}
	assert_int_equal(n[0], n[1]);
	assert_memory_equal(w[0], w[1], n[0]);
	free(w[0]);
	free(w[1]);
}

static void test_inspect(void **st)
{
	char *out = NULL;
	const char *f = synth("insp_bf16.gguf", IR_DT_BF16, 1, 2);
	assert_int_equal(tu_run(&out, "'%s' inspect '%s' 2>&1", tu_bitnetc(), f), 0);
	assert_has(out, "graph: ok");
	assert_has(out, "ternarized: 7 projection weights are float (7 bf16)");
	free(out);
	const char *i = synth("insp_i2s.gguf", IR_DT_I2_S, 1, 2);
	assert_int_equal(tu_run(&out, "'%s' inspect '%s' 2>&1", tu_bitnetc(), i), 0);
	assert_has(out, "graph: ok");
	assert_null(strstr(out, "ternarized"));
	free(out);
}

/* ---- bitnetc quantize -------------------------------------------------------------- */

static void quantize_ok(const char *in, const char *out, IrDtype to, BnmQuantStats *st)
{
	BnErr e = { 0 };
	GgufFile *f = gguf_open(in, &e);
	assert_non_null(f);
	if (bnm_quantize(f, out, to, st, &e))
		fail_msg("quantize %s: %s", in, e.msg);
	gguf_close(f);
}

/* Metadata: every key of a in b with the same bytes, general.file_type aside; tensors:
 * the same names, the projections in `to`, the others byte for byte. */
static void same_but_projections(const char *a_path, const char *b_path, IrDtype to)
{
	BnErr e = { 0 };
	GgufFile *a = gguf_open(a_path, &e), *b = gguf_open(b_path, &e);
	assert_true(a && b);
	assert_int_equal(a->n_kv, b->n_kv);
	for (uint64_t i = 0; i < a->n_kv; i++) {
		const GgufKV *kb = gguf_find(b, a->kv[i].key);
		assert_non_null(kb);
		if (strcmp(a->kv[i].key, "general.file_type") == 0)
			continue;
		assert_int_equal(a->kv[i].val.type, kb->val.type);
		assert_int_equal(a->kv[i].val.size, kb->val.size);
		assert_memory_equal(a->kv[i].val.data, kb->val.data, (size_t)kb->val.size);
	}
	int64_t ft;
	assert_true(gguf_get_int(b, "general.file_type", &ft));
	assert_int_equal(ft, to == IR_DT_I2_S ? 40 : to == IR_DT_TQ1_0 ? 36 : 37);
	assert_int_equal(a->n_tensors, b->n_tensors);
	for (uint64_t i = 0; i < a->n_tensors; i++) {
		const GgufTensor *ta = &a->tensors[i], *tb = &b->tensors[i];
		assert_string_equal(ta->name, tb->name);
		assert_memory_equal(ta->ne, tb->ne, sizeof ta->ne);
		if (bnm_is_projection(ta->name)) {
			assert_int_equal(tb->dtype, to);
			continue;
		}
		assert_int_equal(ta->ggml_type, tb->ggml_type);
		assert_int_equal(ta->nbytes, tb->nbytes);
		assert_memory_equal(ta->data, tb->data, (size_t)ta->nbytes);
	}
	gguf_close(a);
	gguf_close(b);
}

/* Each projection's ternary values in a and b are the same; the scales agree to f16. */
static void same_ternary(const IrGraph *a, const IrGraph *b)
{
	int n_checked = 0;
	for (int i = 0; i < a->n_values; i++) {
		const IrValue *va = &a->values[i];
		if (va->kind != IR_VAL_CONST || !ir_dtype_info(va->dtype)->ternary)
			continue;
		const IrValue *vb = find_const(b, va->name);
		assert_non_null(vb);
		assert_true(ir_dtype_info(vb->dtype)->ternary);
		int64_t k = va->ne[0], rows = va->ne[1];
		int8_t *wa = malloc((size_t)k), *wb = malloc((size_t)k);
		float sa[16], sb[16];
		for (int64_t r = 0; r < rows; r++) {
			int na = ir_ternary_row(va->dtype, va->data, k, rows, r, wa, sa);
			int nb = ir_ternary_row(vb->dtype, vb->data, k, rows, r, wb, sb);
			assert_memory_equal(wa, wb, (size_t)k);
			for (int j = 0; j < (na > nb ? na : nb); j++) {
				float x = sa[na == 1 ? 0 : j], y = sb[nb == 1 ? 0 : j];
				assert_true(bn_round_f16(x) == bn_round_f16(y));
			}
		}
		free(wa);
		free(wb);
		n_checked++;
	}
	assert_true(n_checked >= 7);
}

/* f16 -> i2_s gives the --type i2_s model's graph and logits; -> tq1_0 / tq2_0 the same
 * ternary values, as the --type tq models, and back to i2_s the same again. */
static void test_quantize(void **st)
{
	const char *f16 = synth("q_f16.gguf", IR_DT_F16, 2, 4);
	Model ref = load_ok(synth("q_i2s.gguf", IR_DT_I2_S, 2, 4));
	BnmQuantStats qs;
	const char *out = tu_tmp("q_out_i2s.gguf");
	quantize_ok(f16, out, IR_DT_I2_S, &qs);
	assert_int_equal(qs.n_proj, 14);
	assert_int_equal(qs.n_float, 14);
	assert_int_equal(qs.n_absmean, 0);
	assert_int_equal(qs.n_copied, 2 + 2 * 4); /* embedding, output norm, 4 norms a layer */
	same_but_projections(f16, out, IR_DT_I2_S);
	Model q = load_ok(out);
	assert_int_equal(same_consts(q.g, ref.g), 14);
	same_logits(q.g, ref.g);
	model_free(&q);

	static const IrDtype tq[] = { IR_DT_TQ1_0, IR_DT_TQ2_0 };
	for (int i = 0; i < 2; i++) {
		char name[64];
		snprintf(name, sizeof name, "q_out_%s.gguf", ir_dtype_name(tq[i]));
		const char *o = tu_tmp(name);
		quantize_ok(f16, o, tq[i], &qs);
		assert_int_equal(qs.n_proj, 14);
		same_but_projections(f16, o, tq[i]);
		Model m = load_ok(o);
		same_ternary(m.g, ref.g);
		/* the generator's model in that format: the same bytes */
		snprintf(name, sizeof name, "q_ref_%s.gguf", ir_dtype_name(tq[i]));
		Model t = load_ok(synth(name, tq[i], 2, 4));
		assert_int_equal(same_consts(m.g, t.g), 14);
		model_free(&t);
		/* and back: tq -> i2_s is the i2_s model again */
		const char *back = tu_tmp("q_back.gguf");
		quantize_ok(o, back, IR_DT_I2_S, &qs);
		assert_int_equal(qs.n_float, 0);
		assert_int_equal(qs.n_absmean, 0);
		Model b = load_ok(back);
		same_consts(b.g, ref.g);
		same_logits(b.g, ref.g);
		model_free(&b);
		model_free(&m);
	}
	/* i2_s -> tq2_0 -> tq1_0 keeps the values too */
	const char *t2 = tu_tmp("q_t2.gguf"), *t1 = tu_tmp("q_t1.gguf");
	quantize_ok(tu_tmp("q_i2s.gguf"), t2, IR_DT_TQ2_0, &qs);
	quantize_ok(t2, t1, IR_DT_TQ1_0, &qs);
	Model m1 = load_ok(t1);
	same_ternary(m1.g, ref.g);
	model_free(&m1);
	model_free(&ref);
}

/* A non-ternary float tensor quantized gives the loader's ternarization; a TQ tensor whose
 * blocks have several scales takes the absmean rule on its way to i2_s. */
static void test_quantize_absmean(void **st)
{
	const int64_t n = 256 * 768;
	float *v = normalish(n, 0.03f, 77);
	const char *src = with_tensor(synth("qa_src.gguf", IR_DT_F16, 2, 3), "qa_abs.gguf",
				      "blk.0.ffn_gate.weight", IR_DT_BF16, v);
	BnmQuantStats qs;
	const char *out = tu_tmp("qa_out.gguf");
	quantize_ok(src, out, IR_DT_I2_S, &qs);
	assert_int_equal(qs.n_absmean, 1);
	Model a = load_ok(src), b = load_ok(out);
	assert_int_equal(same_consts(a.g, b.g), 14);
	same_logits(a.g, b.g);
	model_free(&a);
	model_free(&b);

	/* TQ2_0 blocks of scale 0.01 and 0.03 alternating */
	for (int64_t i = 0; i < n; i++)
		v[i] = (float)((i * 7) % 3 - 1) * ((i / 256) % 2 ? 0.03f : 0.01f);
	const char *tq = with_tensor(synth("qa_tsrc.gguf", IR_DT_TQ2_0, 1, 3), "qa_tq.gguf",
				     "blk.0.ffn_up.weight", IR_DT_TQ2_0, v);
	quantize_ok(tq, out, IR_DT_I2_S, &qs);
	assert_int_equal(qs.n_absmean, 1);
	assert_int_equal(qs.n_float, 0);
	Model c = load_ok(out);
	const IrValue *cv = find_const(c.g, "blk.0.ffn_up.weight");
	int8_t *want = malloc((size_t)n), *got = malloc((size_t)n);
	float ws, gs;
	for (int64_t i = 0; i < n; i++) /* what TQ2_0 holds: f16 of each block's scale */
		v[i] = (float)((i * 7) % 3 - 1) * bn_round_f16((i / 256) % 2 ? 0.03f : 0.01f);
	absmean_ref(v, n, IR_DT_F32, want, &ws);
	i2s_values(cv, got, &gs);
	assert_true(ws == gs);
	assert_memory_equal(got, want, (size_t)n);
	/* the small blocks (0.01 / mean 0.0133 = 0.75) still round to +-1 */
	int64_t nz = 0;
	for (int64_t i = 0; i < n; i++)
		nz += got[i] != 0;
	assert_int_equal(nz, n * 2 / 3);
	free(want);
	free(got);
	model_free(&c);
	free(v);
}

static void test_quantize_refusals(void **st)
{
	BnErr e = { 0 };
	const char *in = synth("qr_in.gguf", IR_DT_F16, 1, 3);
	GgufFile *f = gguf_open(in, &e);
	assert_non_null(f);
	BnmQuantStats qs;
	/* the input itself, through a symlink, a hard link, or as the writer's temporary */
	const char *sl = tu_tmp("qr_link.gguf"), *hl = tu_tmp("qr_hard.gguf");
	unlink(sl);
	unlink(hl);
	assert_int_equal(symlink(in, sl), 0);
	assert_int_equal(link(in, hl), 0);
	const char *outs[] = { in, sl, hl };
	size_t n0;
	void *before = tu_read_file(in, &n0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(bnm_quantize(f, outs[i], IR_DT_I2_S, &qs, &e), BN_EINVAL);
		assert_has(e.msg, "is the input file");
	}
	/* OUT.tmp, the file the writer goes through, may not be the input either */
	char out_of_tmp[1024];
	snprintf(out_of_tmp, sizeof out_of_tmp, "%s", tu_tmp("qr_t.gguf"));
	char tmp_path[1100];
	snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_of_tmp);
	unlink(tmp_path);
	assert_int_equal(symlink(in, tmp_path), 0);
	assert_int_equal(bnm_quantize(f, out_of_tmp, IR_DT_I2_S, &qs, &e), BN_EINVAL);
	unlink(tmp_path);
	size_t n1;
	void *after = tu_read_file(in, &n1);
	assert_int_equal(n0, n1);
	assert_memory_equal(before, after, n0);
	free(before);
	free(after);
	/* not a ternary format */
	assert_int_equal(bnm_quantize(f, tu_tmp("qr_x.gguf"), IR_DT_Q8_0, &qs, &e), BN_EINVAL);
	gguf_close(f);

	/* a model that does not load writes nothing, and an existing OUT stays */
	const int64_t n = 256 * 256;
	float *v = normalish(n, 0.03f, 5);
	v[100] = NAN;
	const char *bad = with_tensor(in, "qr_nan.gguf", "blk.0.attn_q.weight", IR_DT_F32, v);
	free(v);
	const char *out = tu_tmp("qr_out.gguf");
	assert_int_equal(tu_write_file(out, "keep", 4), 0);
	f = gguf_open(bad, &e);
	assert_non_null(f);
	assert_int_equal(bnm_quantize(f, out, IR_DT_I2_S, &qs, &e), BN_EFORMAT);
	assert_has(e.msg, "blk.0.attn_q.weight: f32 element 100");
	gguf_close(f);
	size_t nk;
	char *keep = tu_read_file(out, &nk);
	assert_int_equal(nk, 4);
	assert_memory_equal(keep, "keep", 4);
	free(keep);
	/* rows that do not fit the target's blocks (K = 128: i2_s yes, tq no) */
	BnmSynthSpec s;
	assert_int_equal(bnm_synth_shape(&s, "tiny", &e), 0);
	s.n_layer = 1;
	s.n_embd = 128;
	s.n_head = 2;
	s.n_head_kv = 1;
	s.n_ff = 256;
	s.wtype = IR_DT_F16;
	const char *k128 = tu_tmp("qr_k128.gguf");
	assert_int_equal(bnm_synth_write(&s, k128, &e), 0);
	f = gguf_open(k128, &e);
	assert_int_equal(bnm_quantize(f, out, IR_DT_TQ2_0, &qs, &e), BN_EUNSUPPORTED);
	assert_has(e.msg, "blk.0.attn_q.weight: rows of 128 elements do not fit tq2_0's blocks of 256");
	assert_int_equal(bnm_quantize(f, out, IR_DT_I2_S, &qs, &e), 0);
	gguf_close(f);
}

/* Weights too large for a TQ block's f16 scale are refused, not written as infinity. */
static void test_quantize_f16_range(void **st)
{
	const int64_t n = 256 * 256;
	float *v = malloc((size_t)n * sizeof(float));
	for (int64_t i = 0; i < n; i++)
		v[i] = (float)(i % 3 - 1) * 1e6f;
	const char *src = with_tensor(synth("qf_src.gguf", IR_DT_I2_S, 1, 3), "qf.gguf",
				      "blk.0.attn_q.weight", IR_DT_F32, v);
	free(v);
	BnErr e = { 0 };
	GgufFile *f = gguf_open(src, &e);
	BnmQuantStats qs;
	assert_int_equal(bnm_quantize(f, tu_tmp("qf_out.gguf"), IR_DT_TQ1_0, &qs, &e),
			 BN_EUNSUPPORTED);
	assert_has(e.msg, "blk.0.attn_q.weight: weight magnitude 1e+06 does not fit tq1_0's f16");
	assert_int_equal(bnm_quantize(f, tu_tmp("qf_out.gguf"), IR_DT_I2_S, &qs, &e), 0);
	gguf_close(f);
}

/* The command: usage, refusals (exit 1), a failed write (exit 2) leaving OUT as it was. */
static void test_quantize_cli(void **st)
{
	const char *in = synth("qc_in.gguf", IR_DT_F16, 1, 3), *out = tu_tmp("qc_out.gguf");
	char *log = NULL;
	int rc = tu_run(&log, "'%s' quantize '%s' '%s' --type tq2_0 2>&1", tu_bitnetc(), in, out);
	if (rc != 0)
		fail_msg("exit %d: %s", rc, log);
	assert_has(log, "7 projection weights as tq2_0 (7 were float, 0 took the absmean rule)");
	free(log);
	rc = tu_run(&log, "'%s' quantize '%s' '%s' 2>&1", tu_bitnetc(), in, out);
	assert_int_equal(rc, 0);
	assert_has(log, "as i2_s");
	free(log);
	struct {
		const char *args, *msg;
	} bad[] = {
		{ "", "missing IN.gguf and OUT.gguf" },
		{ "a.gguf", "missing OUT.gguf" },
		{ "a.gguf b.gguf c.gguf", "unexpected argument 'c.gguf'" },
		{ "a.gguf b.gguf --type q4_0", "--type: unknown ternary format 'q4_0'" },
		{ "a.gguf b.gguf --type", "option --type needs a value" },
		{ "a.gguf b.gguf --fast", "unknown option '--fast'" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		rc = tu_run(&log, "'%s' quantize %s 2>&1", tu_bitnetc(), bad[i].args);
		assert_int_equal(rc, 1);
		assert_has(log, bad[i].msg);
		free(log);
	}
	rc = tu_run(&log, "'%s' quantize '%s' '%s' 2>&1", tu_bitnetc(), in, in);
	assert_int_equal(rc, 1);
	assert_has(log, "is the same file as");
	free(log);
	rc = tu_run(&log, "'%s' quantize '%s' '%s' 2>&1", tu_bitnetc(), tu_tmp("qc_none.gguf"), out);
	assert_int_equal(rc, 2);
	assert_has(log, "qc_none.gguf");
	free(log);
	/* a write that fails half way (the file size limit): OUT keeps its old bytes and no
	 * temporary is left beside it */
	size_t n0, n1;
	void *before = tu_read_file(out, &n0);
	rc = tu_run(&log, "trap '' XFSZ; ulimit -f 64 && exec '%s' quantize '%s' '%s' 2>&1",
		    tu_bitnetc(), in, out);
	assert_int_equal(rc, 2);
	assert_has(log, "write failed");
	free(log);
	void *after = tu_read_file(out, &n1);
	assert_int_equal(n0, n1);
	assert_memory_equal(before, after, n0);
	free(before);
	free(after);
	char tmp[1100];
	snprintf(tmp, sizeof tmp, "%s.tmp", out);
	assert_int_not_equal(access(tmp, F_OK), 0);
	/* help lists it */
	rc = tu_run(&log, "'%s' help 2>&1", tu_bitnetc());
	assert_has(log, "quantize");
	free(log);
	rc = tu_run(&log, "'%s' quantize --help 2>&1", tu_bitnetc());
	assert_int_equal(rc, 0);
	assert_has(log, "usage: bitnetc quantize IN.gguf OUT.gguf");
	free(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_kept),
		cmocka_unit_test(test_rule_absmean),
		cmocka_unit_test(test_rule_nonfinite),
		cmocka_unit_test(test_is_projection),
		cmocka_unit_test(test_float_models),
		cmocka_unit_test(test_float_old_arch),
		cmocka_unit_test(test_absmean_tensor),
		cmocka_unit_test(test_nonfinite_tensor),
		cmocka_unit_test(test_float_k_not_block),
		cmocka_unit_test(test_other_type),
		cmocka_unit_test(test_inspect),
		cmocka_unit_test(test_quantize),
		cmocka_unit_test(test_quantize_absmean),
		cmocka_unit_test(test_quantize_refusals),
		cmocka_unit_test(test_quantize_f16_range),
		cmocka_unit_test(test_quantize_cli),
		cmocka_unit_test(test_build_payload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
