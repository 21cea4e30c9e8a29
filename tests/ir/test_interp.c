/* test_interp.c - the reference interpreter op by op: hand-computed cases on tiny graphs,
 * and every intermediate tensor of the reference for the first 8 step tokens. */
#include "testutil.h"

#include "frontend.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hand-built graphs ---------------------------------------------------- */

/* tokens -> embed(F32 table of n rows x k) -> rmsnorm (no weight, eps) -> ... the
 * caller adds the rest and sets g->logits. */
typedef struct {
	IrGraph *g;
	IrId x; /* the embedding output */
	float *table;
} Mini;

static void mini_new(Mini *m, int64_t k, int64_t rows, const float *table)
{
	m->g = ir_graph_new("mini", "test");
	m->g->hp.n_vocab = 0;
	int64_t tne[1] = {IR_DIM_T};
	m->g->tokens = ir_value_input(m->g, "tokens", IR_DT_I32, 1, tne);
	m->table = malloc((size_t)(k * rows) * sizeof(float));
	memcpy(m->table, table, (size_t)(k * rows) * sizeof(float));
	int64_t ne[2] = {k, rows};
	IrId tab = ir_value_const(m->g, "table", IR_DT_F32, 2, ne, m->table,
				  (uint64_t)(k * rows) * sizeof(float));
	IrId in[2] = {m->g->tokens, tab};
	int64_t one[2] = {k, IR_DIM_T};
	m->x = ir_node1(m->g, IR_OP_EMBED, "embed", in, 2, IR_DT_F32, 2, one);
}

static void mini_free(Mini *m)
{
	ir_graph_free(m->g);
	free(m->table);
}

/* Runs the graph on tokens in one call; returns malloc'd output rows. */
static float *mini_run(Mini *m, const int32_t *tok, int n, int64_t out_row)
{
	BnErr e = {0};
	IrInterp *it = ir_interp_new(m->g, 16, &e);
	if (!it)
		fail_msg("%s", e.msg);
	float *y = malloc((size_t)(out_row * n) * sizeof(float));
	if (ir_interp_eval(it, tok, n, y, &e))
		fail_msg("%s", e.msg);
	ir_interp_free(it);
	return y;
}

/* quant_act (per token) + I2_S ternary matmul: q = rint(x * 127/amax), y = D / s * wscale. */
static void test_i2s_matmul_by_hand(void **state)
{
	(void)state;
	enum { K = 128, N = 2 };
	float x[K] = {0};
	x[0] = 2.0f;   /* amax: s = 63.5, q = 127 */
	x[1] = -1.0f;  /* -63.5 -> rint (half to even) -> -64 */
	x[2] = 0.5f;   /* 31.75 -> 32 */
	x[3] = 0.01f;  /* 0.635 -> 1 */
	x[4] = -0.03f; /* -1.905 -> -2 */
	float w[N * K] = {0};
	/* row 0: +1 -1 +1 +1 -1 ; row 1: all zero but element 1 = -1 */
	w[0] = 1, w[1] = -1, w[2] = 1, w[3] = 1, w[4] = -1;
	w[K + 1] = -1;
	for (int i = 0; i < N * K; i++)
		w[i] *= 0.75f;
	uint8_t wq[N * K / 4 + 32];
	ir_quant(IR_DT_I2_S, w, wq, N * K);

	Mini m;
	mini_new(&m, K, 1, x);
	IrId qin[1] = {m.x};
	IrId qa = ir_node_add(m.g, IR_OP_QUANT_ACT, "q8", qin, 1);
	int64_t qne[2] = {K, IR_DIM_T}, sne[2] = {1, IR_DIM_T}, wne[2] = {K, N}, yne[2] = {N, IR_DIM_T};
	IrId q = ir_node_output(m.g, qa, "q", IR_DT_I8, 2, qne);
	IrId s = ir_node_output(m.g, qa, "s", IR_DT_F32, 2, sne);
	ir_attr_set_str(m.g, qa, "mode", "token");
	IrId wv = ir_value_const(m.g, "w", IR_DT_I2_S, 2, wne, wq, sizeof wq);
	IrId mm[3] = {q, s, wv};
	m.g->logits = ir_node1(m.g, IR_OP_TERNARY_MATMUL, "mm", mm, 3, IR_DT_F32, 2, yne);
	int32_t tok = 0;
	float *y = mini_run(&m, &tok, 1, N);
	/* D0 = 127 + 64 + 32 + 1 + 2 = 226 ; D1 = 64 */
	float sc = (float)(127.0 / 2.0);
	assert_true(y[0] == ((float)226 / sc) * 0.75f);
	assert_true(y[1] == ((float)64 / sc) * 0.75f);
	free(y);
	mini_free(&m);
}

/* One token attends to itself only: the output is its v, through the f16 cache. With
 * two tokens in one call, the second one's softmax is over both keys. */
static void test_attention_by_hand(void **state)
{
	(void)state;
	enum { HD = 4 };
	float tab[2 * HD] = {1.0f, 0.1f, -0.3f, 0.7f, 0.5f, 0.2f, 0.9f, -0.4f};
	Mini m;
	mini_new(&m, HD, 2, tab);
	IrId in[3] = {m.x, m.x, m.x};
	int64_t ne[2] = {HD, IR_DIM_T};
	IrId at = ir_node_add(m.g, IR_OP_ATTENTION, "attn", in, 3);
	m.g->logits = ir_node_output(m.g, at, "o", IR_DT_F32, 2, ne);
	ir_attr_set_int(m.g, at, "n_head", 1);
	ir_attr_set_int(m.g, at, "n_head_kv", 1);
	ir_attr_set_int(m.g, at, "head_dim", HD);
	ir_attr_set_int(m.g, at, "layer", 0);
	ir_attr_set_float(m.g, at, "scale", 0.5);
	int32_t tok[2] = {0, 1};
	float *y = mini_run(&m, tok, 2, HD);
	for (int i = 0; i < HD; i++)
		assert_true(y[i] == bn_round_f16(tab[i]));
	/* token 1: scores q1.k0, q1.k1 with q, k rounded to f16 */
	double s0 = 0, s1 = 0;
	for (int i = 0; i < HD; i++) {
		s0 += (double)bn_round_f16(tab[HD + i]) * bn_round_f16(tab[i]);
		s1 += (double)bn_round_f16(tab[HD + i]) * bn_round_f16(tab[HD + i]);
	}
	double a0 = exp(0.5 * s0), a1 = exp(0.5 * s1);
	for (int i = 0; i < HD; i++) {
		double want = (a0 * bn_round_f16(tab[i]) + a1 * bn_round_f16(tab[HD + i])) / (a0 + a1);
		assert_float_equal(y[HD + i], want, 1e-6);
	}
	free(y);
	mini_free(&m);
}

/* bn_softmax_exp, the softmax's exp, against libm's double exp rounded to float over every
 * 1009th float of [-150, 89] and the edges: never more than an ulp apart, the same float
 * all but rarely (where exp(x) lies within ~2^-42 of a midpoint, or where the double
 * result's rounding to float is itself a double rounding); 0 below ~-103.97, inf from
 * ~88.73, NaN for NaN. */
static float ulp_up(float f)
{
	return nextafterf(f, INFINITY);
}

static void test_softmax_exp(void **state)
{
	(void)state;
	long n = 0, same = 0;
	const uint32_t ranges[2][2] = {{0x80000000u, 0xc3160000u}, {0x00000000u, 0x42b20000u}};
	for (int r = 0; r < 2; r++)
		for (uint64_t b = ranges[r][0]; b <= ranges[r][1]; b += 1009) {
			uint32_t u = (uint32_t)b;
			float x;
			memcpy(&x, &u, sizeof x);
			float got = bn_softmax_exp(x), want = (float)exp((double)x);
			n++;
			if (got == want) {
				same++;
				continue;
			}
			if (!(got == ulp_up(want) || want == ulp_up(got)))
				fail_msg("bn_softmax_exp(%a) = %a, exp = %a: more than an ulp", (double)x, (double)got,
					 (double)want);
		}
	printf("bn_softmax_exp: %ld of %ld sampled floats the same as (float)exp(x), the rest an ulp off\n",
	       same, n);
	assert_true(n > 2000000 && same >= n - n / 10000);
	assert_true(bn_softmax_exp(0.0f) == 1.0f && bn_softmax_exp(-0.0f) == 1.0f);
	assert_true(bn_softmax_exp(-INFINITY) == 0.0f && bn_softmax_exp(-104.0f) == 0.0f);
	assert_true(bn_softmax_exp(-103.0f) > 0.0f && bn_softmax_exp(-103.0f) < FLT_MIN);
	assert_true(bn_softmax_exp(INFINITY) == INFINITY && bn_softmax_exp(88.75f) == INFINITY);
	assert_true(bn_softmax_exp(88.7f) < INFINITY && bn_softmax_exp(88.7f) > 1e38f);
	assert_true(isnan(bn_softmax_exp(NAN)));
}

/* RoPE (NeoX) at position 0 is the identity; at position p pair i turns by
 * p * base^(-2i/n_rot). */
static void test_rope_by_hand(void **state)
{
	(void)state;
	enum { HD = 4 };
	float tab[HD] = {1.0f, 2.0f, 3.0f, 4.0f};
	Mini m;
	mini_new(&m, HD, 1, tab);
	IrId in[1] = {m.x};
	int64_t ne[2] = {HD, IR_DIM_T};
	IrId r = ir_node_add(m.g, IR_OP_ROPE, "rope", in, 1);
	m.g->logits = ir_node_output(m.g, r, "y", IR_DT_F32, 2, ne);
	ir_attr_set_int(m.g, r, "head_dim", HD);
	ir_attr_set_int(m.g, r, "n_rot", HD);
	ir_attr_set_float(m.g, r, "freq_base", 100.0);
	ir_attr_set_str(m.g, r, "mode", "neox");
	int32_t tok[3] = {0, 0, 0};
	float *y = mini_run(&m, tok, 3, HD);
	for (int i = 0; i < HD; i++)
		assert_true(y[i] == tab[i]);
	for (int p = 1; p < 3; p++)
		for (int i = 0; i < 2; i++) {
			double th = p * pow(100.0, -2.0 * i / HD);
			double x0 = tab[i], x1 = tab[i + 2];
			assert_float_equal(y[p * HD + i], x0 * cos(th) - x1 * sin(th), 1e-5);
			assert_float_equal(y[p * HD + i + 2], x0 * sin(th) + x1 * cos(th), 1e-5);
		}
	free(y);
	mini_free(&m);
}

/* The sums a trace saw: the f32 output of the node named "sum", T rows of k. */
typedef struct {
	float sum[2 * 256];
	int seen;
} SumTrace;

static void on_sum(void *ud, const IrGraph *g, const IrNode *n, const float *y, int64_t T)
{
	(void)g;
	SumTrace *st = ud;
	if (strcmp(n->name, "sum") != 0)
		return;
	memcpy(st->sum, y, (size_t)T * 256 * sizeof(float));
	st->seen++;
}

/* add_rmsnorm_quant(a, b) without a norm weight is add then rmsnorm_quant, bit for bit:
 * a 256-wide embedding a and its norm b, both modes (per token into an I2_S matmul, per 256
 * inputs into TQ2_0), two tokens in one call; its output 0 is a + b. */
static void test_add_rmsnorm_quant(void **state)
{
	(void)state;
	enum { K = 256, N = 16 };
	uint64_t rs = 7;
	float tab[2 * K], wf[N * K];
	for (int i = 0; i < 2 * K; i++)
		tab[i] = 3.0f * tu_randf(&rs);
	for (int i = 0; i < N * K; i++)
		wf[i] = 0.5f * (float)((int)(tu_rand(&rs) % 3) - 1);
	static const IrDtype wt[2] = {IR_DT_I2_S, IR_DT_TQ2_0};
	for (int mode = 0; mode < 2; mode++) {
		uint64_t nb;
		assert_true(ir_dtype_nbytes(wt[mode], N * K, K, &nb));
		uint8_t *wq = malloc(nb);
		ir_quant(wt[mode], wf, wq, N * K);
		float *y[2];
		SumTrace st = {0};
		for (int fused = 0; fused < 2; fused++) {
			Mini m;
			mini_new(&m, K, 2, tab);
			int64_t rne[2] = {K, IR_DIM_T}, sne[2] = {mode ? K / 256 : 1, IR_DIM_T};
			int64_t wne[2] = {K, N}, yne[2] = {N, IR_DIM_T};
			IrId b = ir_node1(m.g, IR_OP_RMSNORM, "b", &m.x, 1, IR_DT_F32, 2, rne);
			ir_attr_set_float(m.g, m.g->values[b].producer, "eps", 1e-5);
			IrId ab[2] = {m.x, b};
			IrId nq;
			if (fused) {
				nq = ir_node_add(m.g, IR_OP_ADD_RMSNORM_QUANT, "sum", ab, 2);
				ir_node_output(m.g, nq, "sum", IR_DT_F32, 2, rne);
			} else {
				IrId sum = ir_node1(m.g, IR_OP_ADD, "sum", ab, 2, IR_DT_F32, 2, rne);
				nq = ir_node_add(m.g, IR_OP_RMSNORM_QUANT, "q8", &sum, 1);
			}
			IrId q = ir_node_output(m.g, nq, "q", IR_DT_I8, 2, rne);
			IrId s = ir_node_output(m.g, nq, "s", IR_DT_F32, 2, sne);
			ir_attr_set_float(m.g, nq, "eps", 1e-6);
			ir_attr_set_str(m.g, nq, "mode", mode ? "block256" : "token");
			IrId wv = ir_value_const(m.g, "w", wt[mode], 2, wne, wq, nb);
			IrId mm[3] = {q, s, wv};
			m.g->logits = ir_node1(m.g, IR_OP_TERNARY_MATMUL, "mm", mm, 3, IR_DT_F32, 2, yne);
			BnErr e = {0};
			if (ir_verify(m.g, &e))
				fail_msg("%s", e.msg);
			IrInterp *it = ir_interp_new(m.g, 16, &e);
			assert_non_null(it);
			ir_interp_set_trace(it, on_sum, &st);
			const int32_t tok[2] = {1, 0};
			y[fused] = malloc(2 * N * sizeof(float));
			assert_int_equal(ir_interp_eval(it, tok, 2, y[fused], &e), 0);
			ir_interp_free(it);
			mini_free(&m);
		}
		assert_memory_equal(y[0], y[1], 2 * N * sizeof(float));
		/* both graphs traced a node "sum": the add, then the fused node's output 0 */
		assert_int_equal(st.seen, 2);
		float b[K];
		for (int t = 0; t < 2; t++) {
			const float *a = tab + (1 - t) * K; /* tokens 1, 0 */
			double ss = 0;
			for (int i = 0; i < K; i++)
				ss += (double)(a[i] * a[i]);
			float sc = 1.0f / sqrtf((float)(ss / K) + 1e-5f);
			for (int i = 0; i < K; i++) {
				b[i] = a[i] * sc;
				assert_true(st.sum[t * K + i] == a[i] + b[i]);
			}
		}
		free(y[0]);
		free(y[1]);
		free(wq);
	}
}

/* ---- the reference's intermediates ------------------------------------------ */

/* Our node name for a tensor of the reference's graph ("Qcur-0" after ROPE ->
 * "blk.0.attn_q.rope"); NULL for tensors the IR does not name (norm-L, kq, relu...). */
static const char *our_name(const char *ref, const char *op, char *buf, size_t n)
{
	static const struct {
		const char *ref, *op, *ours;
	} map[] = {
		{"attn_norm", "MUL", "attn_norm"},   {"Qcur", "MUL_MAT", "attn_q"},
		{"Qcur", "ROPE", "attn_q.rope"},     {"Kcur", "MUL_MAT", "attn_k"},
		{"Kcur", "ROPE", "attn_k.rope"},     {"Vcur", "MUL_MAT", "attn_v"},
		{"kqv_out", "CONT", "kqv_out"},      {"attn_sub_norm", "MUL", "attn_sub_norm"},
		{"attn_o_out", "MUL_MAT", "attn_output"}, {"ffn_inp", "ADD", "ffn_inp"},
		{"ffn_norm", "MUL", "ffn_norm"},     {"ffn_gate", "MUL_MAT", "ffn_gate"},
		{"ffn_up", "MUL_MAT", "ffn_up"},     {"ffn_out", "MUL", "ffn_out"},
		{"ffn_sub_norm", "MUL", "ffn_sub_norm"}, {"ffn_down", "MUL_MAT", "ffn_down"},
		{"l_out", "ADD", "l_out"},
	};
	if (!strcmp(ref, "inp_embd") || !strcmp(ref, "result_norm") || !strcmp(ref, "result_output"))
		return ref;
	const char *dash = strrchr(ref, '-');
	if (!dash)
		return NULL;
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strlen(map[i].ref) == (size_t)(dash - ref) && !strncmp(ref, map[i].ref, (size_t)(dash - ref)) &&
		    !strcmp(op, map[i].op)) {
			snprintf(buf, n, "blk.%s.%s", dash + 1, map[i].ours);
			return buf;
		}
	return NULL;
}

typedef struct {
	int pos;
	char name[64];
	long off, count;
} RefRow;

typedef struct {
	RefRow *rows;
	int n_rows, pos, checked;
	const float *data;
	double worst;
	char worst_name[64];
} Trace;

static void on_node(void *ud, const IrGraph *g, const IrNode *n, const float *y, int64_t T)
{
	(void)g;
	Trace *t = ud;
	assert_int_equal(T, 1);
	for (int i = 0; i < t->n_rows; i++) {
		RefRow *r = &t->rows[i];
		if (r->pos != t->pos || strcmp(r->name, n->name))
			continue;
		const float *ref = t->data + r->off;
		double amax = 1.0, md = 0;
		for (long j = 0; j < r->count; j++) {
			amax = fmax(amax, fabs(ref[j]));
			md = fmax(md, fabs((double)y[j] - ref[j]));
		}
		/* relative to the tensor's scale; an int8 code flip would show as ~1e-2 */
		if (md / amax > t->worst) {
			t->worst = md / amax;
			snprintf(t->worst_name, sizeof t->worst_name, "%s@%d", n->name, t->pos);
		}
		assert_true(md / amax < 1e-4);
		t->checked++;
	}
}

static void test_intermediates(void **state)
{
	(void)state;
	const char *base = "golden/intermediates/tiny-b158-i2_s.p1first8.step";
	char path[512];
	snprintf(path, sizeof path, "%s.tsv", base);
	size_t n;
	char *tsv = tu_read_file(tu_data(path), &n);
	assert_non_null(tsv);
	tsv = realloc(tsv, n + 1);
	tsv[n] = 0;
	snprintf(path, sizeof path, "%s.f32", base);
	Trace t = {0};
	t.data = tu_read_file(tu_data(path), NULL);
	assert_non_null(t.data);
	t.rows = calloc(4096, sizeof(RefRow));
	char *save, *line = strtok_r(tsv, "\n", &save); /* header */
	while ((line = strtok_r(NULL, "\n", &save)) != NULL && t.n_rows < 4096) {
		int pos;
		char name[64], op[32], shape[64], buf[64];
		long off, count;
		if (sscanf(line, "%d\t%63[^\t]\t%31[^\t]\t%63[^\t]\t%ld\t%ld", &pos, name, op, shape, &off,
			   &count) != 6)
			continue;
		const char *ours = our_name(name, op, buf, sizeof buf);
		if (!ours)
			continue;
		RefRow *r = &t.rows[t.n_rows++];
		r->pos = pos;
		snprintf(r->name, sizeof r->name, "%s", ours);
		r->off = off;
		r->count = count;
	}
	free(tsv);

	BnErr e = {0};
	GgufFile *f = gguf_open(tu_data("golden/models/tiny-b158-i2_s.gguf"), &e);
	assert_non_null(f);
	IrGraph *g = bnm_load(f, &e);
	assert_non_null(g);
	IrInterp *it = ir_interp_new(g, 64, &e);
	assert_non_null(it);
	ir_interp_set_trace(it, on_node, &t);
	const int32_t p1[8] = {496, 84, 104, 101, 32, 113, 117, 105};
	for (t.pos = 0; t.pos < 8; t.pos++)
		assert_int_equal(ir_interp_eval(it, &p1[t.pos], 1, NULL, &e), 0);
	printf("intermediates: %d tensors compared, worst relative max|d| %.2g at %s\n", t.checked,
	       t.worst, t.worst_name);
	/* every mapped reference tensor was seen: 8 positions x (inp_embd + 4 layers x 17 +
	 * result_norm + result_output) */
	assert_int_equal(t.checked, t.n_rows);
	assert_int_equal(t.checked, 8 * (1 + 4 * 17 + 2));
	ir_interp_free(it);
	ir_graph_free(g);
	gguf_close(f);
	free(t.rows);
	free((void *)t.data);
}

/* ---- batches: per-row positions, sequences and out rows --------------------- */

/* Two sequences, A and B, each a prompt and a continuation. */
enum { NA = 5, NB = 4, NA2 = 3, NB2 = 2, CTX = 32 };
static const int32_t seq_a[NA + NA2] = {496, 84, 104, 101, 32, 113, 117, 105};
static const int32_t seq_b[NB + NB2] = {12, 250, 7, 99, 31, 200};

/* One sequence's rows through ir_interp_eval: the prompt, then the continuation. */
static float *separate(const IrGraph *g, const int32_t *tok, int n, int n2)
{
	BnErr e = {0};
	int64_t nv = g->hp.n_vocab;
	IrInterp *it = ir_interp_new(g, CTX, &e);
	assert_non_null(it);
	float *y = malloc((size_t)((n + n2) * nv) * sizeof(float));
	if (ir_interp_eval(it, tok, n, y, &e) || ir_interp_eval(it, tok + n, n2, y + n * nv, &e))
		fail_msg("%s", e.msg);
	ir_interp_free(it);
	return y;
}

/* Rows of A (sequence 0) and B (sequence 1) interleaved in one call, then their
 * continuations in a second, give bit for bit what each sequence gives alone (batch mode
 * both ways: every call has several rows); a call's out rows are those rows of the call
 * with all rows; a one-row call (step mode) for one sequence is that sequence's next step
 * alone; a position, sequence or out row out of range is refused. */
static void test_batch_sequences(void **state)
{
	(void)state;
	BnErr e = {0};
	GgufFile *f = gguf_open(tu_data("golden/models/tiny-b158-i2_s.gguf"), &e);
	assert_non_null(f);
	IrGraph *g = bnm_load(f, &e);
	assert_non_null(g);
	int64_t nv = g->hp.n_vocab;
	size_t row = (size_t)nv * sizeof(float);
	float *ya = separate(g, seq_a, NA, NA2), *yb = separate(g, seq_b, NB, NB2);

	IrInterp *it = ir_interp_new_seq(g, CTX, 2, &e);
	assert_non_null(it);
	/* prompts: A0 B0 A1 B1 A2 B2 A3 B3 A4 */
	int32_t tok[NA + NB], pos[NA + NB], sq[NA + NB];
	int src[NA + NB]; /* the row of ya (>= 0) or of yb (-1 - row) */
	int n = 0;
	for (int i = 0; i < NA || i < NB; i++) {
		if (i < NA) {
			tok[n] = seq_a[i], pos[n] = i, sq[n] = 0, src[n] = i;
			n++;
		}
		if (i < NB) {
			tok[n] = seq_b[i], pos[n] = i, sq[n] = 1, src[n] = -1 - i;
			n++;
		}
	}
	float *y = malloc((size_t)n * row);
	IrBatch b = {.n = n, .token = tok, .pos = pos, .seq = sq};
	if (ir_interp_decode(it, &b, y, &e))
		fail_msg("%s", e.msg);
	for (int r = 0; r < n; r++) {
		const float *want = src[r] >= 0 ? ya + src[r] * nv : yb + (-1 - src[r]) * nv;
		if (memcmp(y + r * nv, want, row) != 0)
			fail_msg("prompt row %d (sequence %d, position %d) differs from its sequence "
				 "alone", r, sq[r], pos[r]);
	}
	/* continuations, in another order: B4 A5 A6 B5 A7 */
	const int32_t t2[5] = {seq_b[4], seq_a[5], seq_a[6], seq_b[5], seq_a[7]};
	const int32_t p2[5] = {4, 5, 6, 5, 7}, s2[5] = {1, 0, 0, 1, 0};
	const float *w2[5] = {yb + 4 * nv, ya + 5 * nv, ya + 6 * nv, yb + 5 * nv, ya + 7 * nv};
	b = (IrBatch){.n = 5, .token = t2, .pos = p2, .seq = s2};
	if (ir_interp_decode(it, &b, y, &e))
		fail_msg("%s", e.msg);
	for (int r = 0; r < 5; r++)
		if (memcmp(y + r * nv, w2[r], row) != 0)
			fail_msg("continuation row %d (sequence %d, position %d) differs from its "
				 "sequence alone", r, s2[r], p2[r]);
	/* the same call again (the same K and V stored again) with two out rows */
	const int32_t out[2] = {1, 3};
	float *y2 = malloc(3 * row);
	y2[2 * nv] = -12345.0f;
	b.out = out;
	b.n_out = 2;
	if (ir_interp_decode(it, &b, y2, &e))
		fail_msg("%s", e.msg);
	assert_memory_equal(y2, w2[1], row);
	assert_memory_equal(y2 + nv, w2[3], row);
	assert_true(y2[2 * nv] == -12345.0f); /* nothing past n_out rows */
	/* no out rows: nothing written */
	b.n_out = 0;
	y2[0] = -12345.0f;
	assert_int_equal(ir_interp_decode(it, &b, y2, &e), 0);
	assert_true(y2[0] == -12345.0f);

	/* one row (step mode) in sequence 1 at position 6 = B's next step alone */
	const int32_t t3 = 77, p3 = 6, s3 = 1;
	b = (IrBatch){.n = 1, .token = &t3, .pos = &p3, .seq = &s3};
	if (ir_interp_decode(it, &b, y, &e))
		fail_msg("%s", e.msg);
	IrInterp *ib = ir_interp_new(g, CTX, &e);
	assert_non_null(ib);
	int32_t bb[NB + NB2 + 1];
	memcpy(bb, seq_b, sizeof seq_b);
	bb[NB + NB2] = t3;
	float *yb1 = malloc(row);
	if (ir_interp_eval(ib, bb, NB, NULL, &e) || ir_interp_eval(ib, bb + NB, NB2, NULL, &e) ||
	    ir_interp_eval(ib, bb + NB + NB2, 1, yb1, &e))
		fail_msg("%s", e.msg);
	assert_memory_equal(y, yb1, row);
	ir_interp_free(ib);

	/* refusals */
	const int32_t bad_pos = CTX, bad_seq = 2, bad_out[2] = {1, 1};
	b = (IrBatch){.n = 1, .token = &t3, .pos = &bad_pos};
	assert_int_equal(ir_interp_decode(it, &b, y, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "position 32 is outside the context"));
	b = (IrBatch){.n = 1, .token = &t3, .pos = &p3, .seq = &bad_seq};
	assert_int_equal(ir_interp_decode(it, &b, y, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "sequence 2 is outside 0..1"));
	b = (IrBatch){.n = 5, .token = t2, .pos = p2, .seq = s2, .out = bad_out, .n_out = 2};
	assert_int_equal(ir_interp_decode(it, &b, y, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "not an ascending row"));
	assert_null(ir_interp_new_seq(g, CTX, 0, &e));

	free(y);
	free(y2);
	free(yb1);
	free(ya);
	free(yb);
	ir_interp_free(it);
	ir_graph_free(g);
	gguf_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_i2s_matmul_by_hand),
		cmocka_unit_test(test_attention_by_hand),
		cmocka_unit_test(test_softmax_exp),
		cmocka_unit_test(test_rope_by_hand),
		cmocka_unit_test(test_add_rmsnorm_quant),
		cmocka_unit_test(test_intermediates),
		cmocka_unit_test(test_batch_sequences),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
