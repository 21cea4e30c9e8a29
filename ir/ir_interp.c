/* ir_interp.c - the reference interpreter: runs any graph in plain scalar C with an
 * f16 KV cache, following ../shared/FORMATS.md's numerics (the oracle for every kernel).
 *
 * Rules that keep it the oracle: one loop per op, no clever reordering of float
 * arithmetic except where the reference's own order is written down (FORMATS.md
 * section 6 for TQ*), and every rounding the reference applies made explicit. */
#include "ir.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	uint16_t *k, *v; /* [n_seq][n_ctx][kv_width] f16 */
	int64_t width;
} KvLayer;

struct IrInterp {
	const IrGraph *g;
	int64_t n_ctx, pos; /* pos: positions of sequence 0 used by ir_interp_eval */
	int n_seq;
	KvLayer *kv;      /* indexed by the ATTENTION node's layer attr */
	int n_kv;
	void **buf;       /* per value: activation buffer for the current call */
	int *last_use;    /* per value: index of the last node reading it (-1: none) */
	int n_threads;    /* for splitting matmul rows; results do not depend on it */
	bool attn_f64;    /* attention sums in double (ir_interp_set_attn_f64) */
	IrInterpTrace trace;
	void *trace_ud;
};

/* Everything one op needs while it runs. */
typedef struct {
	IrInterp *it;
	const IrNode *n;
	int64_t T;          /* rows in this call */
	const IrBatch *b;   /* their positions, sequences and the rows the head computes */
	BnErr *e;
	const void *scratch; /* per-op data shared by the threads of par_rows */
} Ctx;

static const IrValue *val(const Ctx *c, int i)
{
	return &c->it->g->values[c->n->in[i]];
}

static const void *in_ptr(const Ctx *c, int i)
{
	const IrValue *v = val(c, i);
	return v->kind == IR_VAL_CONST ? v->data : c->it->buf[c->n->in[i]];
}

static void *out_ptr(const Ctx *c, int i)
{
	return c->it->buf[c->n->out[i]];
}

static const IrValue *out_val(const Ctx *c, int i)
{
	return &c->it->g->values[c->n->out[i]];
}

/* Bytes of one row of a (non-I2_S) weight of ne[0] elements. */
static uint64_t row_bytes(IrDtype dt, int64_t k)
{
	const IrDtypeInfo *d = ir_dtype_info(dt);
	return (uint64_t)(k / d->block) * (uint64_t)d->block_bytes;
}

/* ---- ops ---------------------------------------------------------------- */

static int op_embed(Ctx *c)
{
	const IrValue *tab = val(c, 1);
	const int32_t *tok = in_ptr(c, 0);
	float *y = out_ptr(c, 0);
	int64_t k = tab->ne[0], vocab = tab->ne[1];
	for (int64_t t = 0; t < c->T; t++) {
		if (tok[t] < 0 || tok[t] >= vocab)
			return bn_err(c->e, BN_EINVAL, "token id %d is out of range (vocabulary has %lld tokens)",
				      tok[t], (long long)vocab);
		const uint8_t *row = (const uint8_t *)tab->data + (uint64_t)tok[t] * row_bytes(tab->dtype, k);
		ir_dequant(tab->dtype, row, y + t * k, k);
	}
	return 0;
}

/* sum of squares in double (each square in float), mean rounded to float; T rows of n. */
static void rmsnorm_rows(const float *x, const float *w, float *y, int64_t n, int64_t T, float eps)
{
	for (int64_t t = 0; t < T; t++) {
		const float *xr = x + t * n;
		float *yr = y + t * n;
		double sum = 0.0;
		for (int64_t i = 0; i < n; i++)
			sum += (double)(xr[i] * xr[i]);
		float mean = (float)(sum / (double)n);
		float scale = 1.0f / sqrtf(mean + eps);
		for (int64_t i = 0; i < n; i++)
			yr[i] = xr[i] * scale;
		if (w)
			for (int64_t i = 0; i < n; i++)
				yr[i] = yr[i] * w[i];
	}
}

static int op_rmsnorm(Ctx *c)
{
	const float *w = c->n->n_in > 1 ? in_ptr(c, 1) : NULL;
	rmsnorm_rows(in_ptr(c, 0), w, out_ptr(c, 0), ir_value_row(val(c, 0)), c->T,
		     (float)ir_attr_float(c->n, "eps", 1e-5));
	return 0;
}

/* Per token (I2_S): s = (float)(127/amax) in double, q = rint(x*s) clamped. */
static void quant_token(const float *x, int64_t n, int8_t *q, float *s_out)
{
	double amax = 0.0;
	for (int64_t i = 0; i < n; i++)
		amax = fmax(amax, fabs((double)x[i]));
	amax = fmax(amax, 1e-5);
	float s = (float)(127.0 / amax);
	for (int64_t i = 0; i < n; i++) {
		float v = rintf(x[i] * s);
		q[i] = (int8_t)(v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v);
	}
	*s_out = s;
}

/* Per 256 inputs (Q8_K, for TQ1_0/TQ2_0): signed value of the largest |x| (first on
 * ties) sets iscale = -127/xm; q = min(127, rint(iscale*x)); d = 1/iscale. */
static void quant_block256(const float *x, int8_t *q, float *d_out)
{
	float amax = 0.0f, xm = 0.0f;
	for (int i = 0; i < 256; i++) {
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			xm = x[i];
		}
	}
	if (amax == 0.0f) {
		memset(q, 0, 256);
		*d_out = 0.0f;
		return;
	}
	float iscale = -127.0f / xm;
	for (int i = 0; i < 256; i++) {
		float v = rintf(iscale * x[i]);
		q[i] = (int8_t)(v > 127.0f ? 127.0f : v);
	}
	*d_out = 1.0f / iscale;
}

/* T rows of k: per token, or per 256 inputs when block (k a multiple of 256). */
static void quant_rows(const float *x, int8_t *q, float *s, int64_t k, int64_t T, bool block)
{
	for (int64_t t = 0; t < T; t++) {
		if (!block) {
			quant_token(x + t * k, k, q + t * k, s + t);
			continue;
		}
		for (int64_t b = 0; b < k / 256; b++)
			quant_block256(x + t * k + b * 256, q + t * k + b * 256, s + t * (k / 256) + b);
	}
}

static bool mode_block(const IrNode *n)
{
	return strcmp(ir_attr_str(n, "mode", "token"), "block256") == 0;
}

static int op_quant_act(Ctx *c)
{
	quant_rows(in_ptr(c, 0), out_ptr(c, 0), out_ptr(c, 1), ir_value_row(val(c, 0)), c->T,
		   mode_block(c->n));
	return 0;
}

/* The unfused pair token by token through one temporary row: the same functions on
 * the same floats, so bit-identical to rmsnorm then quant_act. x: the rows to norm,
 * weight in input w (when given), codes and scales in outputs j and j + 1. */
static int norm_quant(Ctx *c, const float *x, int w_in, int j)
{
	const float *w = c->n->n_in > w_in ? in_ptr(c, w_in) : NULL;
	int8_t *q = out_ptr(c, j);
	float *s = out_ptr(c, j + 1);
	int64_t k = ir_value_row(val(c, 0));
	int64_t ns = ir_value_row(out_val(c, j + 1));
	float eps = (float)ir_attr_float(c->n, "eps", 1e-5);
	bool block = mode_block(c->n);
	float *row = malloc((size_t)k * sizeof(float));
	if (!row)
		return bn_err(c->e, BN_ENOMEM, "out of memory");
	for (int64_t t = 0; t < c->T; t++) {
		rmsnorm_rows(x + t * k, w, row, k, 1, eps);
		quant_rows(row, q + t * k, s + t * ns, k, 1, block);
	}
	free(row);
	return 0;
}

static int op_rmsnorm_quant(Ctx *c)
{
	return norm_quant(c, in_ptr(c, 0), 1, 0);
}

/* The sum as add computes it (out0), then rmsnorm_quant of it: bit-identical to the
 * unfused add and rmsnorm_quant. */
static int op_add_rmsnorm_quant(Ctx *c)
{
	const float *a = in_ptr(c, 0), *b = in_ptr(c, 1);
	float *y = out_ptr(c, 0);
	int64_t n = ir_value_nelems(val(c, 0), c->T);
	for (int64_t i = 0; i < n; i++)
		y[i] = a[i] + b[i];
	return norm_quant(c, y, 2, 1);
}

/* I2_S: D = dot(w, q) exactly (int32), y = fl(fl(D / s) * wscale). */
static float dot_i2s(const int8_t *w, const int8_t *q, int64_t k, float s, float wscale)
{
	int32_t d = 0;
	for (int64_t i = 0; i < k; i++)
		d += (int32_t)w[i] * q[i];
	return ((float)d / s) * wscale;
}

/* TQ1_0/TQ2_0 with Q8_K activations, in the reference's float order: per block, 8
 * int32 lanes (lane L: codes*q over elements 32g+4L..4L+3 for g < 8, minus the sum of
 * q[32L..32L+31]), each scaled by d_a*d_w and accumulated per lane across blocks,
 * then reduced as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). */
static float dot_tq(const int8_t *w, const float *wd, const int8_t *q, const float *qd, int64_t k)
{
	float acc[8] = {0};
	for (int64_t b = 0; b < k / 256; b++) {
		const int8_t *wb = w + b * 256, *qb = q + b * 256;
		float d = qd[b] * wd[b];
		for (int L = 0; L < 8; L++) {
			int32_t lane = 0;
			for (int g = 0; g < 8; g++)
				for (int e = 4 * L; e < 4 * L + 4; e++)
					lane += (int32_t)(wb[32 * g + e] + 1) * qb[32 * g + e];
			for (int i = 32 * L; i < 32 * L + 32; i++)
				lane -= qb[i];
			float p = (float)lane * d;
			acc[L] = acc[L] + p;
		}
	}
	return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* Output rows [lo, hi) of a ternary matmul: each row is decoded once per call. */
static int ternary_rows(const Ctx *c, int64_t lo, int64_t hi)
{
	const int8_t *q = in_ptr(c, 0);
	const float *s = in_ptr(c, 1);
	const IrValue *w = val(c, 2);
	float *y = out_ptr(c, 0);
	int64_t k = w->ne[0], n = w->ne[1];
	int64_t nsc = w->dtype == IR_DT_I2_S ? 1 : k / 256;
	int8_t *wr = malloc((size_t)k);
	float *wsc = malloc((size_t)nsc * sizeof(float));
	if (!wr || !wsc) {
		free(wr);
		free(wsc);
		return BN_ENOMEM;
	}
	for (int64_t o = lo; o < hi; o++) {
		ir_ternary_row_at(w->layout, w->dtype, w->data, k, n, o, wr, wsc);
		for (int64_t t = 0; t < c->T; t++) {
			const int8_t *qt = q + t * k;
			y[t * n + o] = w->dtype == IR_DT_I2_S ? dot_i2s(wr, qt, k, s[t], wsc[0])
							      : dot_tq(wr, wsc, qt, s + t * nsc, k);
		}
	}
	free(wr);
	free(wsc);
	return 0;
}

/* Splits rows [0, n) over the interpreter's threads. Rows are independent, so the
 * result does not depend on the thread count. */
typedef struct {
	const Ctx *c;
	int (*fn)(const Ctx *, int64_t, int64_t);
	int64_t lo, hi;
	int rc;
} Slice;

static void *slice_main(void *p)
{
	Slice *s = p;
	s->rc = s->fn(s->c, s->lo, s->hi);
	return NULL;
}

static int par_rows(const Ctx *c, int64_t n, int (*fn)(const Ctx *, int64_t, int64_t))
{
	enum { MAX_THREADS = 64 };
	int nt = c->it->n_threads;
	if (nt > MAX_THREADS)
		nt = MAX_THREADS;
	if (nt > n)
		nt = (int)n;
	if (nt <= 1)
		return fn(c, 0, n) ? bn_err(c->e, BN_ENOMEM, "out of memory") : 0;
	Slice sl[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	bool started[MAX_THREADS] = {0};
	for (int i = 0; i < nt; i++) {
		sl[i] = (Slice){c, fn, n * i / nt, n * (i + 1) / nt, 0};
		started[i] = i > 0 && pthread_create(&th[i], NULL, slice_main, &sl[i]) == 0;
	}
	for (int i = 0; i < nt; i++)
		if (!started[i])
			slice_main(&sl[i]); /* the calling thread, or a thread that did not start */
	int rc = 0;
	for (int i = 0; i < nt; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		rc |= sl[i].rc;
	}
	return rc ? bn_err(c->e, BN_ENOMEM, "out of memory") : 0;
}

static int op_ternary_matmul(Ctx *c)
{
	return par_rows(c, val(c, 2)->ne[1], ternary_rows);
}

/* The float head: x is first brought to what the reference multiplies with — rounded
 * to f16/bf16 in single-token steps for f16/bf16 weights, quantized (and dequantized,
 * exactly) to Q8_0 / Q8_K for quantized weights — then a dot in double. */
static void head_prepare(IrDtype wt, bool step, const float *x, float *xr, int64_t k)
{
	switch (wt) {
	case IR_DT_F16:
		for (int64_t i = 0; i < k; i++)
			xr[i] = step ? bn_round_f16(x[i]) : x[i];
		break;
	case IR_DT_BF16:
		for (int64_t i = 0; i < k; i++)
			xr[i] = step ? bn_bf16_to_f32(bn_f32_to_bf16(x[i])) : x[i];
		break;
	case IR_DT_Q8_0:
		for (int64_t b = 0; b < k; b += 32) {
			float amax = 0.0f;
			for (int i = 0; i < 32; i++)
				amax = fmaxf(amax, fabsf(x[b + i]));
			float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
			float dh = bn_round_f16(d);
			for (int i = 0; i < 32; i++)
				xr[b + i] = dh * roundf(x[b + i] * id);
		}
		break;
	case IR_DT_Q6_K:
		for (int64_t b = 0; b < k; b += 256) {
			int8_t q[256];
			float d;
			quant_block256(x + b, q, &d);
			for (int i = 0; i < 256; i++)
				xr[b + i] = d * (float)q[i];
		}
		break;
	default:
		memcpy(xr, x, (size_t)k * sizeof(float));
		break;
	}
}

/* Output rows [lo, hi) of the float head; x was prepared into the node's scratch. */
static int matmul_rows(const Ctx *c, int64_t lo, int64_t hi)
{
	const float *xr = c->scratch;
	const IrValue *w = val(c, 1);
	float *y = out_ptr(c, 0);
	int64_t k = w->ne[0], n = w->ne[1];
	float *wr = malloc((size_t)k * sizeof(float));
	if (!wr)
		return BN_ENOMEM;
	uint64_t rb = row_bytes(w->dtype, k);
	for (int64_t o = lo; o < hi; o++) {
		ir_dequant(w->dtype, (const uint8_t *)w->data + (uint64_t)o * rb, wr, k);
		for (int64_t t = 0; t < c->T; t++) {
			double acc = 0.0;
			for (int64_t i = 0; i < k; i++)
				acc += (double)wr[i] * (double)xr[t * k + i];
			y[t * n + o] = (float)acc;
		}
	}
	free(wr);
	return 0;
}

/* The logits' matmul computes the call's out rows only, into the first rows of its output
 * (prepared with the call's mode: the step mode's roundings when it has one row). */
static int op_matmul(Ctx *c)
{
	const float *x = in_ptr(c, 0);
	const IrValue *w = val(c, 1);
	int64_t k = w->ne[0];
	bool pick = c->n->out[0] == c->it->g->logits && c->b->out;
	int64_t rows = pick ? c->b->n_out : c->T;
	float *xr = malloc((size_t)(k * (rows ? rows : 1)) * sizeof(float));
	if (!xr)
		return bn_err(c->e, BN_ENOMEM, "out of memory");
	for (int64_t r = 0; r < rows; r++)
		head_prepare(w->dtype, c->T == 1, x + (pick ? c->b->out[r] : r) * k, xr + r * k, k);
	int64_t T = c->T;
	c->T = rows;
	c->scratch = xr;
	int rc = rows ? par_rows(c, w->ne[1], matmul_rows) : 0;
	c->scratch = NULL;
	c->T = T;
	free(xr);
	return rc;
}

/* theta_0 = p, theta_{i+1} = theta_i * freq_base^(-2/n_rot) iterated in float;
 * divided by the optional frequency factor of pair i. */
static int op_rope(Ctx *c)
{
	const float *x = in_ptr(c, 0);
	const float *ff = c->n->n_in > 1 ? in_ptr(c, 1) : NULL;
	float *y = out_ptr(c, 0);
	int64_t row = ir_value_row(val(c, 0));
	int64_t hd = ir_attr_int(c->n, "head_dim", row);
	int64_t n_rot = ir_attr_int(c->n, "n_rot", hd);
	float base = (float)ir_attr_float(c->n, "freq_base", 10000.0);
	bool neox = strcmp(ir_attr_str(c->n, "mode", "neox"), "neox") == 0;
	float theta_scale = powf(base, -2.0f / (float)n_rot);
	int64_t half = n_rot / 2;
	float *cs = malloc((size_t)half * 2 * sizeof(float));
	if (!cs)
		return bn_err(c->e, BN_ENOMEM, "out of memory");
	memcpy(y, x, (size_t)(row * c->T) * sizeof(float));
	for (int64_t t = 0; t < c->T; t++) {
		float theta = (float)c->b->pos[t];
		for (int64_t i = 0; i < half; i++) {
			float th = ff ? theta / ff[i] : theta;
			cs[2 * i] = cosf(th);
			cs[2 * i + 1] = sinf(th);
			theta *= theta_scale;
		}
		for (int64_t h = 0; h < row / hd; h++) {
			const float *xh = x + t * row + h * hd;
			float *yh = y + t * row + h * hd;
			for (int64_t i = 0; i < half; i++) {
				int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
				float x0 = xh[a], x1 = xh[b], cv = cs[2 * i], sv = cs[2 * i + 1];
				yh[a] = x0 * cv - x1 * sv;
				yh[b] = x0 * sv + x1 * cv;
			}
		}
	}
	free(cs);
	return 0;
}

/* K, V of every row of the call go into its sequence's cache at its position first; row t
 * then attends to positions 0..pos[t] of its sequence. q is rounded to f16; q.K in double over f16 values (8 lanes, see
 * below); softmax of kq*scale with the max subtracted, exp in float, sum in double, times
 * (float)(1/sum); the weights are rounded to f16 before .V only in single-token steps. */
static int op_attention(Ctx *c)
{
	IrInterp *it = c->it;
	const float *q = in_ptr(c, 0), *k = in_ptr(c, 1), *v = in_ptr(c, 2);
	float *y = out_ptr(c, 0);
	int64_t nh = ir_attr_int(c->n, "n_head", 1), nkv = ir_attr_int(c->n, "n_head_kv", nh);
	int64_t hd = ir_attr_int(c->n, "head_dim", 1), layer = ir_attr_int(c->n, "layer", 0);
	float scale = (float)ir_attr_float(c->n, "scale", 1.0 / sqrt((double)hd));
	KvLayer *kv = &it->kv[layer];
	int64_t kw = nkv * hd, qw = nh * hd, group = nh / nkv;
	bool step = c->T == 1;
	const int32_t *seq = c->b->seq, *pos = c->b->pos;

	for (int64_t t = 0; t < c->T; t++) {
		int64_t at = ((seq ? seq[t] : 0) * it->n_ctx + pos[t]) * kw;
		for (int64_t i = 0; i < kw; i++) {
			kv->k[at + i] = bn_f32_to_f16(k[t * kw + i]);
			kv->v[at + i] = bn_f32_to_f16(v[t * kw + i]);
		}
	}
	float *w = malloc((size_t)it->n_ctx * sizeof(float));
	float *qh = malloc((size_t)hd * sizeof(float));
	if (!w || !qh) {
		free(w);
		free(qh);
		return bn_err(c->e, BN_ENOMEM, "out of memory");
	}
	for (int64_t t = 0; t < c->T; t++) {
		int64_t n_keys = pos[t] + 1, base = (seq ? seq[t] : 0) * it->n_ctx * kw;
		const uint16_t *ks = kv->k + base, *vs = kv->v + base;
		for (int64_t h = 0; h < nh; h++) {
			int64_t g = h / group;
			for (int64_t i = 0; i < hd; i++)
				qh[i] = bn_round_f16(q[t * qw + h * hd + i]);
			float mx = -INFINITY;
			for (int64_t j = 0; j < n_keys; j++) {
				const uint16_t *kj = ks + j * kw + g * hd;
				/* 16 partial sums in float (lane i % 16), then a fixed tree: the
				 * order a vector unit of 16 floats (or 2 x 8) computes; each product
				 * of two f16 values (11 x 11 significant bits) is exact in float, so
				 * only the adds round (as the reference's f16 dot products, which
				 * accumulate in float) */
				if (it->attn_f64) {
					/* in double: 8 lanes (i % 8), the same tree */
					double d[8] = {0};
					for (int64_t i = 0; i < hd; i++)
						d[i % 8] += (double)bn_f16_to_f32(kj[i]) * (double)qh[i];
					w[j] = (float)(((d[0] + d[4]) + (d[2] + d[6])) + ((d[1] + d[5]) + (d[3] + d[7]))) * scale;
					mx = fmaxf(mx, w[j]);
					continue;
				}
				float l[16] = {0};
				for (int64_t i = 0; i < hd; i++)
					l[i % 16] += bn_f16_to_f32(kj[i]) * qh[i];
				for (int i = 0; i < 8; i++)
					l[i] += l[i + 8];
				float acc = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
				w[j] = acc * scale;
				mx = fmaxf(mx, w[j]);
			}
			/* the softmax: exp by bn_softmax_exp (the same bits in vector code), the sum
			 * in 8 double lanes (j % 8) reduced by the tree above */
			double l[8] = {0};
			for (int64_t j = 0; j < n_keys; j++) {
				w[j] = bn_softmax_exp(w[j] - mx);
				l[j % 8] += (double)w[j];
			}
			double sum = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
			float inv = (float)(1.0 / sum);
			for (int64_t j = 0; j < n_keys; j++) {
				w[j] = w[j] * inv;
				if (step)
					w[j] = bn_round_f16(w[j]);
			}
			/* .V per output element in float, keys in order, each step one fused
			 * multiply-add (one rounding: a weight is a float, and its product with an
			 * f16 value, 24 x 11 significant bits, is not exact in float) */
			float *o = y + t * qw + h * hd;
			for (int64_t i = 0; i < hd; i++) {
				const uint16_t *vi = vs + g * hd + i;
				if (it->attn_f64) {
					double acc = 0.0;
					for (int64_t j = 0; j < n_keys; j++)
						acc += (double)bn_f16_to_f32(vi[j * kw]) * (double)w[j];
					o[i] = (float)acc;
					continue;
				}
				float acc = 0.0f;
				for (int64_t j = 0; j < n_keys; j++)
					acc = fmaf(bn_f16_to_f32(vi[j * kw]), w[j], acc);
				o[i] = acc;
			}
		}
	}
	free(w);
	free(qh);
	return 0;
}

static int op_glu(Ctx *c, bool silu)
{
	const float *g = in_ptr(c, 0), *u = in_ptr(c, 1);
	float *y = out_ptr(c, 0);
	int64_t n = ir_value_nelems(val(c, 0), c->T);
	for (int64_t i = 0; i < n; i++) {
		float a;
		if (silu) {
			/* exp by the softmax's bn_softmax_exp: the same bits in every program's
			 * vector code, whatever the host's libm */
			a = g[i] / (1.0f + bn_softmax_exp(-g[i]));
		} else {
			a = g[i] > 0.0f ? g[i] : 0.0f; /* relu, then square in f32 (f16 would overflow) */
			a = a * a;
		}
		y[i] = a * u[i];
	}
	return 0;
}

static int op_relu2_glu(Ctx *c) { return op_glu(c, false); }
static int op_silu_glu(Ctx *c) { return op_glu(c, true); }

/* b broadcasts over tokens when it has no token dim, and over everything when it
 * holds one element. */
static int op_binary(Ctx *c, bool mul)
{
	const float *a = in_ptr(c, 0), *b = in_ptr(c, 1);
	float *y = out_ptr(c, 0);
	int64_t row = ir_value_row(val(c, 0));
	int64_t bn = ir_value_nelems(val(c, 1), c->T);
	for (int64_t t = 0; t < c->T; t++)
		for (int64_t i = 0; i < row; i++) {
			int64_t j = t * row + i;
			float bv = bn == 1 ? b[0] : b[bn == row ? i : j];
			y[j] = mul ? a[j] * bv : a[j] + bv;
		}
	return 0;
}

static int op_add(Ctx *c) { return op_binary(c, false); }
static int op_mul(Ctx *c) { return op_binary(c, true); }

/* ORDER IR_OP */
static int (*const op_fn[])(Ctx *) = {
	op_embed, op_rmsnorm, op_quant_act, op_ternary_matmul, op_matmul, op_rope,
	op_attention, op_relu2_glu, op_silu_glu, op_add, op_mul, op_rmsnorm_quant,
	op_add_rmsnorm_quant,
};
_Static_assert(sizeof op_fn / sizeof op_fn[0] == IR_OP_COUNT, "op_fn must cover every op");

/* ---- driver ------------------------------------------------------------- */

static size_t elem_size(IrDtype dt)
{
	return dt == IR_DT_I8 ? 1 : 4;
}

IrInterp *ir_interp_new(const IrGraph *g, int64_t n_ctx, BnErr *e)
{
	return ir_interp_new_seq(g, n_ctx, 1, e);
}

IrInterp *ir_interp_new_seq(const IrGraph *g, int64_t n_ctx, int n_seq, BnErr *e)
{
	if (n_seq < 1) {
		bn_err(e, BN_EINVAL, "interpreter: %d sequences (1 at least)", n_seq);
		return NULL;
	}
	if (ir_verify(g, e)) {
		bn_err_prefix(e, "interpreter");
		return NULL;
	}
	if (n_ctx <= 0)
		n_ctx = g->hp.n_ctx_train > 0 ? g->hp.n_ctx_train : 4096;
	IrInterp *it = calloc(1, sizeof *it);
	if (!it)
		goto oom;
	it->g = g;
	it->n_ctx = n_ctx;
	it->n_seq = n_seq;
	it->n_threads = 1;
	it->buf = calloc((size_t)g->n_values, sizeof(void *));
	it->last_use = malloc((size_t)g->n_values * sizeof(int));
	if (!it->buf || !it->last_use)
		goto oom;
	for (int i = 0; i < g->n_values; i++)
		it->last_use[i] = -1;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		for (int i = 0; i < n->n_in; i++)
			it->last_use[n->in[i]] = ni;
		if (n->op == IR_OP_ATTENTION) {
			int64_t layer = ir_attr_int(n, "layer", 0);
			if (layer >= it->n_kv)
				it->n_kv = (int)layer + 1;
		}
	}
	it->last_use[g->logits] = g->n_nodes; /* kept until copied out */
	it->kv = calloc((size_t)it->n_kv, sizeof(KvLayer));
	if (it->n_kv && !it->kv)
		goto oom;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_ATTENTION)
			continue;
		KvLayer *kv = &it->kv[ir_attr_int(n, "layer", 0)];
		kv->width = ir_attr_int(n, "n_head_kv", 1) * ir_attr_int(n, "head_dim", 1);
		uint64_t cells;
		if (!bn_mul_ok((uint64_t)n_ctx * (uint64_t)n_seq, (uint64_t)kv->width, &cells) ||
		    n_ctx > (1ll << 31) || cells > (1ull << 40)) {
			bn_err(e, BN_EINVAL, "interpreter: KV cache of %lld positions x %d sequences is "
			       "too large", (long long)n_ctx, n_seq);
			ir_interp_free(it);
			return NULL;
		}
		kv->k = malloc(cells * sizeof(uint16_t));
		kv->v = malloc(cells * sizeof(uint16_t));
		if (!kv->k || !kv->v)
			goto oom;
	}
	return it;
oom:
	ir_interp_free(it);
	bn_err(e, BN_ENOMEM, "interpreter: out of memory (KV cache of %lld positions)", (long long)n_ctx);
	return NULL;
}

static void free_bufs(IrInterp *it)
{
	for (int i = 0; i < it->g->n_values; i++) {
		free(it->buf[i]);
		it->buf[i] = NULL;
	}
}

void ir_interp_free(IrInterp *it)
{
	if (!it)
		return;
	if (it->buf)
		free_bufs(it);
	for (int i = 0; i < it->n_kv && it->kv; i++) {
		free(it->kv[i].k);
		free(it->kv[i].v);
	}
	free(it->kv);
	free(it->buf);
	free(it->last_use);
	free(it);
}

int64_t ir_interp_pos(const IrInterp *it)
{
	return it->pos;
}

void ir_interp_reset(IrInterp *it)
{
	it->pos = 0;
}

void ir_interp_set_threads(IrInterp *it, int n)
{
	it->n_threads = n < 1 ? 1 : n;
}

void ir_interp_set_attn_f64(IrInterp *it, bool on)
{
	it->attn_f64 = on;
}

void ir_interp_set_trace(IrInterp *it, IrInterpTrace fn, void *ud)
{
	it->trace = fn;
	it->trace_ud = ud;
}

/* BN_EINVAL unless every row's position and sequence fit the cache and out lists
 * ascending rows of the call. */
static int batch_check(const IrInterp *it, const IrBatch *b, BnErr *e)
{
	if (b->n <= 0)
		return bn_err(e, BN_EINVAL, "interpreter: no tokens to evaluate");
	for (int t = 0; t < b->n; t++) {
		if (b->pos[t] < 0 || b->pos[t] >= it->n_ctx)
			return bn_err(e, BN_EINVAL, "interpreter: row %d: position %d is outside the "
				      "context (0..%lld)", t, (int)b->pos[t], (long long)it->n_ctx - 1);
		if (b->seq && (b->seq[t] < 0 || b->seq[t] >= it->n_seq))
			return bn_err(e, BN_EINVAL, "interpreter: row %d: sequence %d is outside "
				      "0..%d", t, (int)b->seq[t], it->n_seq - 1);
	}
	if (b->out && (b->n_out < 0 || b->n_out > b->n))
		return bn_err(e, BN_EINVAL, "interpreter: %d out rows for a call of %d", b->n_out, b->n);
	for (int r = 0; b->out && r < b->n_out; r++)
		if (b->out[r] < (r ? b->out[r - 1] + 1 : 0) || b->out[r] >= b->n)
			return bn_err(e, BN_EINVAL, "interpreter: out row %d (%d) is not an ascending "
				      "row of the call (0..%d)", r, (int)b->out[r], b->n - 1);
	return 0;
}

int ir_interp_decode(IrInterp *it, const IrBatch *b, float *logits, BnErr *e)
{
	const IrGraph *g = it->g;
	int rc = batch_check(it, b, e);
	if (rc)
		return rc;
	int n = b->n;
	Ctx c = {.it = it, .T = n, .b = b, .e = e};
	it->buf[g->tokens] = malloc((size_t)n * sizeof(int32_t));
	if (!it->buf[g->tokens])
		return bn_err(e, BN_ENOMEM, "interpreter: out of memory");
	memcpy(it->buf[g->tokens], b->token, (size_t)n * sizeof(int32_t));
	for (int ni = 0; ni < g->n_nodes && !rc; ni++) {
		const IrNode *nd = &g->nodes[ni];
		c.n = nd;
		for (int o = 0; o < nd->n_out && !rc; o++) {
			const IrValue *ov = out_val(&c, o);
			it->buf[nd->out[o]] = malloc((size_t)ir_value_nelems(ov, n) * elem_size(ov->dtype));
			if (!it->buf[nd->out[o]])
				rc = bn_err(e, BN_ENOMEM, "interpreter: out of memory at node '%s'", nd->name);
		}
		if (!rc)
			rc = op_fn[nd->op](&c);
		if (rc) {
			bn_err_prefix(e, "interpreter: node %d '%s' (%s)", ni, nd->name, ir_op_name(nd->op));
			break;
		}
		if (it->trace && out_val(&c, 0)->dtype == IR_DT_F32)
			it->trace(it->trace_ud, g, nd, it->buf[nd->out[0]], n);
		for (int i = 0; i < nd->n_in; i++)
			if (it->last_use[nd->in[i]] == ni && g->values[nd->in[i]].kind != IR_VAL_CONST) {
				free(it->buf[nd->in[i]]);
				it->buf[nd->in[i]] = NULL;
			}
	}
	if (!rc && logits) {
		int64_t rows = b->out ? b->n_out : n;
		memcpy(logits, it->buf[g->logits],
		       (size_t)(ir_value_nelems(&g->values[g->logits], 1) * rows) * sizeof(float));
	}
	free_bufs(it);
	return rc;
}

int ir_interp_eval(IrInterp *it, const int32_t *tokens, int n, float *logits, BnErr *e)
{
	if (n <= 0)
		return bn_err(e, BN_EINVAL, "interpreter: no tokens to evaluate");
	if (it->pos + n > it->n_ctx)
		return bn_err(e, BN_EINVAL,
			      "interpreter: context is full: %lld positions used + %d new > n_ctx %lld",
			      (long long)it->pos, n, (long long)it->n_ctx);
	int32_t *pos = malloc((size_t)n * sizeof *pos);
	if (!pos)
		return bn_err(e, BN_ENOMEM, "interpreter: out of memory");
	for (int t = 0; t < n; t++)
		pos[t] = (int32_t)(it->pos + t);
	IrBatch b = {.n = n, .token = tokens, .pos = pos};
	int rc = ir_interp_decode(it, &b, logits, e);
	free(pos);
	if (!rc)
		it->pos += n;
	return rc;
}
