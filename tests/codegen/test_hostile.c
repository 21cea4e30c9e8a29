/* test_hostile.c - the emitted norm, quantizer and F16 kernels on hostile rows: for every
 * CPU target this host runs (cpu-generic, cpu-avx2, cpu-avx512, native) and, under
 * qemu-user, cpu-generic and cpu-neon for AArch64, the kernels rmsnorm_n<K>,
 * add_rmsnorm_n<K> (out of place and in place over either input) and quant_tok_k<K> of
 * one emitted model.c are called directly by a small program that includes it, on rows
 * holding NaNs (quiet, signalling, negative), infinities, values whose squares overflow
 * f32 (1e38, FLT_MAX), subnormals, signed zeros, random bit patterns, ties of the int8
 * rounding, squares whose double sum gives another norm in any other order than the
 * index order, and ordinary values, for K in 5, 17, 256, 263, 768, 2560 and calls of 1..9
 * rows (nothing may be written past the n rows of a call). The floats must be the
 * interpreter's bits (any NaN for a NaN, and only for a NaN), the int8 codes and scales
 * those of the interpreter's per-token quantizer exactly. The same
 * program runs the prelude's f32_to_f16_n and round_f16_n (F16C where the target has it)
 * and the scalar f32_to_f16 on every 4099th of the 2^32 patterns, the specials and both
 * sides of every f16 rounding boundary, against the interpreter's conversion (ir_quant.c).
 * CASES-hostile.md describes the rows. */
#include "testutil.h"

#include "cg_cpu.h"
#include "rt.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The row lengths: odd ones end in a vector tail (5 is all tail), 256 and 768 are whole
 * vectors, 2560 the largest model width (the last is the longest). */
static const int ks[] = {5, 17, 256, 263, 768, 2560};
enum {
	N_K = sizeof ks / sizeof ks[0],
	N_CLASS = 9,          /* kinds of row (row_fill) */
	KIND_ZERO = 5, KIND_ORDER = 8,
	N_SET = N_CLASS,      /* sets of rows: set s, row j is of kind (s + j) % N_CLASS */
	ROWS = 9,             /* rows per set: calls of 1..9 rows (four-row groups and the rest) */
	N_ROW = N_SET * ROWS, /* rows per K */
	HEAD_K = 2,           /* the head reads the norm of ks[HEAD_K] */
	N_VOCAB = 4,
	F16_STRIDE = 4099,
};
#define EPS 1e-5f

/* The per-call float outputs of the program, in its order, and the interpreter's rows
 * each must equal (REF_*). */
enum { Y_W, Y_NW, XS, XN, XS_X, XN_X, XS_R, XN_R, N_FBLK };
enum { REF_NORM_W, REF_NORM, REF_SUM, REF_ADDNORM, N_REF };
static const int blk_ref[N_FBLK] = {REF_NORM_W, REF_NORM, REF_SUM, REF_ADDNORM,
				    REF_SUM,    REF_ADDNORM, REF_SUM, REF_ADDNORM};
static const char *const blk_name[N_FBLK] = {
	"rmsnorm (weight)", "rmsnorm (no weight)", "add_rmsnorm xs", "add_rmsnorm y",
	"add_rmsnorm in place on x: xs", "add_rmsnorm in place on x: y",
	"add_rmsnorm in place on r: xs", "add_rmsnorm in place on r: y"};
static const char *const ref_prefix[N_REF] = {"norm_w_", "norm_", "sum_", "addnorm_"};

/* The cases and the interpreter's rows, made once for all targets (group setup). */
static struct {
	float *w[N_K], *x[N_K], *r[N_K]; /* [K], [N_ROW][K], [N_ROW][K] */
	float *ref[N_REF][N_K];          /* [N_ROW][K] */
	float *head_w;
	uint32_t *f16; /* patterns of the F16 check */
	size_t n_f16;
	IrGraph *g;
	char in_path[4096];
} H;

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static float fbits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* One row of k elements of kind c. */
static void row_fill(float *y, int k, int c, uint64_t *rs)
{
	static const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0x7fa00000u, 0xffc00001u,
					0x7fffffffu, 0xff800400u};
	for (int i = 0; i < k; i++)
		y[i] = 3.0f * tu_randf(rs);
	uint64_t u = tu_rand(rs);
	int p = (int)(u % (uint64_t)k), q = (int)((u >> 20) % (uint64_t)k);
	switch (c) {
	case 0: /* ordinary */
		break;
	case 1: /* NaNs of every kind: one in the body, one at the end (the tail) */
		y[p] = fbits(nans[(u >> 40) % 6]);
		y[k - 1] = fbits(nans[(u >> 44) % 6]);
		if ((u >> 48) & 1)
			y[0] = fbits(nans[(u >> 50) % 6]);
		break;
	case 2: /* infinities: +, -, or both */
		if ((u >> 40) % 3 != 1)
			y[p] = INFINITY;
		if ((u >> 40) % 3 != 0)
			y[q == p ? k - 1 - p : q] = -INFINITY;
		break;
	case 3: /* squares beyond f32: a few among ordinary values, or the whole row */
		if ((u >> 40) & 1) {
			for (int i = 0; i < k; i++)
				y[i] = (i & 1 ? -1.0f : 1.0f) * (i % 3 ? 1e38f : FLT_MAX);
		} else {
			y[p] = FLT_MAX;
			y[q] = -1e38f;
			y[k - 1] = 1.85e19f; /* its square is just past FLT_MAX */
		}
		break;
	case 4: /* subnormals only, a few zeros among them */
		for (int i = 0; i < k; i++) {
			uint64_t v = tu_rand(rs);
			y[i] = fbits((uint32_t)(v & 0x807fffffu) | (v % 7 == 0 ? 0 : 1u));
			if (v % 11 == 0)
				y[i] = 0.0f;
		}
		break;
	case 5: /* zeros of both signs: amax 0, the norm's mean 0 */
		for (int i = 0; i < k; i++)
			y[i] = (tu_rand(rs) & 1) ? -0.0f : 0.0f;
		break;
	case 6: /* any bit pattern */
		for (int i = 0; i < k; i++)
			y[i] = fbits((uint32_t)tu_rand(rs));
		break;
	case KIND_ORDER: { /* a sum of squares whose double rounding depends on the order:
			    * squares that add up to exactly K (1 + 2^-24) 4^h in index order, so
			    * the mean is a tie of f32 (to even: 4^h), then 128 or 256 squares of
			    * u/64 or u/128 each, u the ulp of that sum in double: each alone is
			    * lost (below u/2), added up first they are 2u, and the mean rounds
			    * up instead. h is the first of 0, 1, -1, 2, ... where the two means
			    * give two scales 1/sqrt(mean + eps). Rows too short for it (K <
			    * 176) stay ordinary. */
		if (k < 176)
			break;
		int top = 0;
		for (int b = 0; b < 31; b++)
			if ((k >> b) & 1)
				top = b;
		for (int h = 0; h < 41; h++) {
			int sh = h % 2 ? (h + 1) / 2 : -h / 2, n = 0;
			for (int b = 0; b <= top; b++) {
				if (!((k >> b) & 1))
					continue;
				for (int e = b; e >= b - 24; e -= 24) /* 2^b and 2^(b-24) */
					if (e % 2 == 0) {
						y[n++] = ldexpf(1.0f, e / 2 + sh);
					} else {
						y[n++] = ldexpf(1.0f, (e - 1) / 2 + sh);
						y[n++] = ldexpf(1.0f, (e - 1) / 2 + sh);
					}
			}
			int tiny = top - 58, m = 128; /* u = 2^(top - 52) */
			if (tiny % 2) {
				tiny--;
				m = 256;
			}
			for (int i = 0; i < m; i++)
				y[n++] = ldexpf(1.0f, tiny / 2 + sh);
			for (int i = n; i < k; i++)
				y[i] = 0.0f;
			double fw = 0.0, bw = 0.0;
			for (int i = 0; i < k; i++)
				fw += (double)(y[i] * y[i]);
			for (int i = k - 1; i >= 0; i--)
				bw += (double)(y[i] * y[i]);
			float mf = (float)(fw / (double)k), mb = (float)(bw / (double)k);
			if (1.0f / sqrtf(mf + EPS) != 1.0f / sqrtf(mb + EPS))
				break;
		}
		break;
	}
	case 7: { /* amax 127, so the scale is 1 and the codes are rint of the values: ties
		   * (to even), and the edges of the int8 range */
		static const float ties[] = {0.5f,   1.5f,	2.5f,	-0.5f,	-1.5f, -2.5f, 126.5f,
					     -126.5f, 127.0f, -127.0f, 0.49999997f, 63.5f, -64.5f};
		for (int i = 0; i < k; i++)
			y[i] = ties[(tu_rand(rs) >> 8) % (sizeof ties / sizeof ties[0])];
		y[p] = (u >> 40) & 1 ? 127.0f : -127.0f;
		break;
	}
	}
}

/* The interpreter's per-token quantizer (ir_interp.c quant_token), restated: its codes are
 * not a float output the trace hands over. A NaN's code is what the interpreter's cast
 * gives on x86-64 and AArch64 (cvttss2si's 0x80000000, fcvtzs's 0: low byte 0). */
static float ref_quant(const float *x, int64_t k, int8_t *q)
{
	double amax = 0.0;
	for (int64_t i = 0; i < k; i++)
		amax = fmax(amax, fabs((double)x[i]));
	amax = fmax(amax, 1e-5);
	float s = (float)(127.0 / amax);
	for (int64_t i = 0; i < k; i++) {
		float v = rintf(x[i] * s);
		q[i] = isnan(v) ? 0 : (int8_t)(v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v);
	}
	return s;
}

static void trace(void *ud, const IrGraph *g, const IrNode *n, const float *data, int64_t t)
{
	(void)ud;
	(void)g;
	for (int r = 0; r < N_REF; r++) {
		size_t len = strlen(ref_prefix[r]);
		if (strncmp(n->name, ref_prefix[r], len) != 0)
			continue;
		int k = atoi(n->name + len);
		for (int i = 0; i < N_K; i++)
			if (ks[i] == k && t == N_ROW)
				memcpy(H.ref[r][i], data, (size_t)N_ROW * (size_t)k * sizeof(float));
	}
}

/* Per K: the rows x and r as embedding tables (token t picks row t), the weight w;
 * rmsnorm of x with and without w, add x + r and its rmsnorm (the interpreter's rows);
 * add_rmsnorm_quant and quant_act (what makes the emitter write add_rmsnorm_n<K> and
 * quant_tok_k<K>); a float head over one norm ends the graph, as the emitter wants. */
static IrGraph *build_graph(void)
{
	IrGraph *g = ir_graph_new("hostile", "test");
	int64_t tne[1] = {IR_DIM_T};
	g->tokens = ir_value_input(g, "tokens", IR_DT_I32, 1, tne);
	IrId head_in = IR_NONE;
	char nm[64];
	for (int i = 0; i < N_K; i++) {
		int64_t k = ks[i], tab[2] = {k, N_ROW}, row[2] = {k, IR_DIM_T}, one[2] = {1, IR_DIM_T};
		uint64_t tb = (uint64_t)k * N_ROW * sizeof(float);
		snprintf(nm, sizeof nm, "x_%d", ks[i]);
		IrId tx = ir_value_const(g, nm, IR_DT_F32, 2, tab, H.x[i], tb);
		snprintf(nm, sizeof nm, "r_%d", ks[i]);
		IrId tr = ir_value_const(g, nm, IR_DT_F32, 2, tab, H.r[i], tb);
		snprintf(nm, sizeof nm, "w_%d", ks[i]);
		IrId w = ir_value_const(g, nm, IR_DT_F32, 1, &k, H.w[i], (uint64_t)k * sizeof(float));
		IrId in_x[2] = {g->tokens, tx}, in_r[2] = {g->tokens, tr};
		snprintf(nm, sizeof nm, "ex_%d", ks[i]);
		IrId ex = ir_node1(g, IR_OP_EMBED, nm, in_x, 2, IR_DT_F32, 2, row);
		snprintf(nm, sizeof nm, "er_%d", ks[i]);
		IrId er = ir_node1(g, IR_OP_EMBED, nm, in_r, 2, IR_DT_F32, 2, row);
		IrId xw[2] = {ex, w}, xr[2] = {ex, er}, xrw[3] = {ex, er, w};
		snprintf(nm, sizeof nm, "norm_w_%d", ks[i]);
		IrId y = ir_node1(g, IR_OP_RMSNORM, nm, xw, 2, IR_DT_F32, 2, row);
		ir_attr_set_float(g, g->values[y].producer, "eps", EPS);
		if (i == HEAD_K)
			head_in = y;
		snprintf(nm, sizeof nm, "norm_%d", ks[i]);
		y = ir_node1(g, IR_OP_RMSNORM, nm, xw, 1, IR_DT_F32, 2, row);
		ir_attr_set_float(g, g->values[y].producer, "eps", EPS);
		snprintf(nm, sizeof nm, "sum_%d", ks[i]);
		IrId sum = ir_node1(g, IR_OP_ADD, nm, xr, 2, IR_DT_F32, 2, row);
		IrId sw[2] = {sum, w};
		snprintf(nm, sizeof nm, "addnorm_%d", ks[i]);
		y = ir_node1(g, IR_OP_RMSNORM, nm, sw, 2, IR_DT_F32, 2, row);
		ir_attr_set_float(g, g->values[y].producer, "eps", EPS);
		snprintf(nm, sizeof nm, "arq_%d", ks[i]);
		IrId nd = ir_node_add(g, IR_OP_ADD_RMSNORM_QUANT, nm, xrw, 3);
		ir_attr_set_float(g, nd, "eps", EPS);
		ir_attr_set_str(g, nd, "mode", "token");
		ir_node_output(g, nd, nm, IR_DT_F32, 2, row);
		snprintf(nm, sizeof nm, "arq_q_%d", ks[i]);
		ir_node_output(g, nd, nm, IR_DT_I8, 2, row);
		snprintf(nm, sizeof nm, "arq_s_%d", ks[i]);
		ir_node_output(g, nd, nm, IR_DT_F32, 2, one);
		snprintf(nm, sizeof nm, "q_%d", ks[i]);
		nd = ir_node_add(g, IR_OP_QUANT_ACT, nm, &ex, 1);
		ir_attr_set_str(g, nd, "mode", "token");
		ir_node_output(g, nd, nm, IR_DT_I8, 2, row);
		snprintf(nm, sizeof nm, "q_s_%d", ks[i]);
		ir_node_output(g, nd, nm, IR_DT_F32, 2, one);
	}
	int64_t hne[2] = {ks[HEAD_K], N_VOCAB}, lne[2] = {N_VOCAB, IR_DIM_T};
	IrId hw = ir_value_const(g, "head_w", IR_DT_F32, 2, hne, H.head_w,
				 (uint64_t)ks[HEAD_K] * N_VOCAB * sizeof(float));
	IrId hin[2] = {head_in, hw};
	g->logits = ir_node1(g, IR_OP_MATMUL, "head", hin, 2, IR_DT_F32, 2, lne);
	return g;
}

/* The F16 patterns: every F16_STRIDE-th of 2^32, the specials, and for each pair of
 * neighbouring finite halves (and the largest and infinity) the f32 midpoint and the
 * floats either side of it, both signs. */
static size_t f16_patterns(uint32_t *p)
{
	static const uint32_t specials[] = {
		0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u,
		0x7fbfffffu, 0x7fc00001u, 0x7fffffffu, 0xffffffffu, 0x7f801fffu, 0x7f802000u,
		0x7fa00000u, 0x7f8fe000u, 0x477fe000u, 0xc77fe000u, 0x477fefffu, 0x477ff000u,
		0x477ff001u, 0x47800000u, 0x7f7fffffu, 0x33800000u, 0x33000000u, 0x33000001u,
		0x32ffffffu, 0x33400000u, 0x33c00000u, 0x38800000u, 0x387fffffu, 0x387fe000u,
		0x387ff000u, 0x00000001u, 0x007fffffu, 0x80000001u, 0x00000000u, 0x80000000u,
		0x3f800000u, 0x3f801000u, 0x3f803000u, 0xb3000000u, 0xb3000001u, 0x38000000u,
	};
	size_t n = 0;
	for (uint64_t u = 0; u < (1ull << 32); u += F16_STRIDE)
		p[n++] = (uint32_t)u;
	for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
		p[n++] = specials[i];
	for (uint32_t h = 0; h < 0x7c00u; h++) {
		uint32_t a = bits(bn_f16_to_f32((uint16_t)h));
		/* the midpoint of h and h + 1: the f32 with one more mantissa bit set (above
		 * the largest half: 65520, which rounds to infinity) */
		uint32_t m = h == 0x7bffu ? 0x477ff000u
			     : bits((float)(((double)fbits(a) +
					     (double)bn_f16_to_f32((uint16_t)(h + 1))) / 2));
		for (int neg = 0; neg < 2; neg++) {
			uint32_t sgn = neg ? 0x80000000u : 0;
			p[n++] = (m - 1) | sgn;
			p[n++] = m | sgn;
			p[n++] = (m + 1) | sgn;
		}
	}
	return n;
}

static size_t f16_capacity(void)
{
	return (size_t)((1ull << 32) / F16_STRIDE + 1) + 64 + 6u * 0x7c00u;
}

static int setup(void **state)
{
	(void)state;
	memset(&H, 0, sizeof H);
	uint64_t rs = 0x5eed1e55u;
	for (int i = 0; i < N_K; i++) {
		size_t k = (size_t)ks[i], rows = (size_t)N_ROW * k;
		H.w[i] = malloc(k * sizeof(float));
		H.x[i] = malloc(rows * sizeof(float));
		H.r[i] = malloc(rows * sizeof(float));
		for (int r = 0; r < N_REF; r++)
			H.ref[r][i] = calloc(rows, sizeof(float));
		if (!H.w[i] || !H.x[i] || !H.r[i])
			return -1;
		for (size_t j = 0; j < k; j++)
			H.w[i][j] = 2.0f * tu_randf(&rs);
		for (int s = 0; s < N_SET; s++)
			for (int j = 0; j < ROWS; j++) {
				size_t o = (size_t)(s * ROWS + j) * k;
				row_fill(H.x[i] + o, (int)k, (s + j) % N_CLASS, &rs);
				/* r three kinds on: the sums meet inf - inf, FLT_MAX + FLT_MAX, ...;
				 * zeros beside the order row, so that add_rmsnorm sums it too */
				row_fill(H.r[i] + o, (int)k,
					 (s + j) % N_CLASS == KIND_ORDER ? KIND_ZERO : (s + j + 3) % N_CLASS,
					 &rs);
			}
	}
	H.head_w = malloc((size_t)ks[HEAD_K] * N_VOCAB * sizeof(float));
	H.f16 = malloc(f16_capacity() * sizeof(uint32_t));
	if (!H.head_w || !H.f16)
		return -1;
	for (int i = 0; i < ks[HEAD_K] * N_VOCAB; i++)
		H.head_w[i] = tu_randf(&rs);
	H.n_f16 = f16_patterns(H.f16);

	/* the interpreter's rows: all N_ROW tokens of each K in one call */
	H.g = build_graph();
	BnErr e = {0};
	if (ir_verify(H.g, &e)) {
		print_error("hostile graph: %s\n", e.msg);
		return -1;
	}
	IrInterp *it = ir_interp_new(H.g, N_ROW, &e);
	if (!it) {
		print_error("interpreter: %s\n", e.msg);
		return -1;
	}
	ir_interp_set_trace(it, trace, NULL);
	int32_t tok[N_ROW];
	for (int t = 0; t < N_ROW; t++)
		tok[t] = t;
	static float logits[N_ROW * N_VOCAB];
	int rc = ir_interp_eval(it, tok, N_ROW, logits, &e);
	ir_interp_free(it);
	if (rc) {
		print_error("interpreter: %s\n", e.msg);
		return -1;
	}

	/* the program's input: sets, rows, patterns; per K w, x, r; the patterns */
	snprintf(H.in_path, sizeof H.in_path, "%s", tu_tmp("hostile.in"));
	FILE *f = fopen(H.in_path, "wb");
	if (!f)
		return -1;
	int32_t hd[3] = {N_SET, ROWS, (int32_t)H.n_f16};
	bool ok = fwrite(hd, sizeof hd, 1, f) == 1;
	for (int i = 0; i < N_K && ok; i++) {
		size_t k = (size_t)ks[i];
		ok = fwrite(H.w[i], sizeof(float), k, f) == k &&
		     fwrite(H.x[i], sizeof(float), N_ROW * k, f) == N_ROW * k &&
		     fwrite(H.r[i], sizeof(float), N_ROW * k, f) == N_ROW * k;
	}
	ok = ok && fwrite(H.f16, sizeof(uint32_t), H.n_f16, f) == H.n_f16;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < N_K; i++) {
		free(H.w[i]);
		free(H.x[i]);
		free(H.r[i]);
		for (int r = 0; r < N_REF; r++)
			free(H.ref[r][i]);
	}
	free(H.head_w);
	free(H.f16);
	if (H.g)
		ir_graph_free(H.g);
	return 0;
}

/* The program: model.c's kernels by K (HOSTILE_KS and the norms' HOSTILE_EPS, defined
 * before this), called on each
 * set's first n rows for n = 1..ROWS; every output buffer has a guard row after the n
 * rows that must stay untouched (exit 4 names the kernel otherwise). Then the F16
 * helpers over all patterns at once, in chunks of 1..37 (the tails), and the scalar
 * conversion per pattern. */
static const char harness_src[] =
	"#include \"model.c\"\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"typedef void (*NormFn)(const float *, const float *, float *, int, float);\n"
	"typedef void (*AddFn)(const float *, const float *, float *, const float *, float *, int, float);\n"
	"typedef void (*QuantFn)(const float *, int8_t *, float *, int);\n"
	"#define X(k) {k, rmsnorm_n##k, add_rmsnorm_n##k, quant_tok_k##k},\n"
	"static const struct { int k; NormFn norm; AddFn add; QuantFn quant; } kern[] = {HOSTILE_KS};\n"
	"static FILE *in, *out;\n"
	"static void *rd(size_t n)\n{\n"
	"\tvoid *p = malloc(n ? n : 1);\n"
	"\tif (!p || (n && fread(p, n, 1, in) != 1))\n\t\texit(2);\n"
	"\treturn p;\n}\n"
	"static void wr(const void *p, size_t n)\n{\n"
	"\tif (n && fwrite(p, n, 1, out) != 1)\n\t\texit(3);\n}\n"
	"static void *mem(size_t n) /* malloc, or exit 2 */\n{\n"
	"\tvoid *p = malloc(n);\n"
	"\tif (!p)\n\t\texit(2);\n"
	"\treturn p;\n}\n"
	"static void guard(void *p, size_t from, size_t to)\n{\n"
	"\tmemset((char *)p + from, 0x5a, to - from);\n}\n"
	"static void check(const void *p, size_t from, size_t to, const char *what, int k, int n)\n{\n"
	"\tfor (size_t i = from; i < to; i++)\n"
	"\t\tif (((const unsigned char *)p)[i] != 0x5a) {\n"
	"\t\t\tfprintf(stderr, \"%s k %d, %d rows: wrote past its rows (byte %zu)\\n\", what, k, n, i);\n"
	"\t\t\texit(4);\n\t\t}\n}\n"
	"int main(int argc, char **argv)\n{\n"
	"\tif (argc < 3 || !(in = fopen(argv[1], \"rb\")) || !(out = fopen(argv[2], \"wb\")))\n"
	"\t\treturn 2;\n"
	"\tint32_t *hd = rd(3 * sizeof(int32_t));\n"
	"\tint sets = hd[0], rows = hd[1];\n"
	"\tsize_t nf = (size_t)hd[2];\n"
	"\tconst float eps = HOSTILE_EPS;\n"
	"\tfor (size_t ki = 0; ki < sizeof kern / sizeof kern[0]; ki++) {\n"
	"\t\tint k = kern[ki].k;\n"
	"\t\tsize_t rk = (size_t)rows * k, all = rk + k; /* a guard row */\n"
	"\t\tfloat *w = rd(k * sizeof(float)), *x = rd(sets * rk * sizeof(float)), *r = rd(sets * rk * sizeof(float));\n"
	"\t\tfloat *y[8], *s1 = mem((rows + 1) * sizeof(float)), *s2 = mem((rows + 1) * sizeof(float));\n"
	"\t\tint8_t *q1 = mem(all), *q2 = mem(all);\n"
	"\t\tfor (int b = 0; b < 8; b++)\n\t\t\ty[b] = mem(all * sizeof(float));\n"
	"\t\tfor (int s = 0; s < sets; s++) {\n"
	"\t\t\tconst float *xr = x + s * rk, *rr = r + s * rk;\n"
	"\t\t\tfor (int n = 1; n <= rows; n++) {\n"
	"\t\t\t\tsize_t m = (size_t)n * k;\n"
	"\t\t\t\tfor (int b = 0; b < 8; b++)\n\t\t\t\t\tguard(y[b], m * sizeof(float), all * sizeof(float));\n"
	"\t\t\t\tguard(q1, m, all), guard(q2, m, all);\n"
	"\t\t\t\tguard(s1, n * sizeof(float), (rows + 1) * sizeof(float));\n"
	"\t\t\t\tguard(s2, n * sizeof(float), (rows + 1) * sizeof(float));\n"
	"\t\t\t\tkern[ki].norm(xr, w, y[0], n, eps);\n"
	"\t\t\t\tkern[ki].norm(xr, NULL, y[1], n, eps);\n"
	"\t\t\t\tkern[ki].add(xr, rr, y[2], w, y[3], n, eps);\n"
	"\t\t\t\tmemcpy(y[4], xr, m * sizeof(float));\n"
	"\t\t\t\tkern[ki].add(y[4], rr, y[4], w, y[5], n, eps);\n"
	"\t\t\t\tmemcpy(y[6], rr, m * sizeof(float));\n"
	"\t\t\t\tkern[ki].add(xr, y[6], y[6], w, y[7], n, eps);\n"
	"\t\t\t\tkern[ki].quant(xr, q1, s1, n);\n"
	"\t\t\t\tkern[ki].quant(y[3], q2, s2, n);\n"
	"\t\t\t\tfor (int b = 0; b < 8; b++) {\n"
	"\t\t\t\t\tcheck(y[b], m * sizeof(float), all * sizeof(float), b < 2 ? \"rmsnorm\" : \"add_rmsnorm\", k, n);\n"
	"\t\t\t\t\twr(y[b], m * sizeof(float));\n\t\t\t\t}\n"
	"\t\t\t\tcheck(q1, m, all, \"quant_tok\", k, n), check(q2, m, all, \"quant_tok\", k, n);\n"
	"\t\t\t\tcheck(s1, n * sizeof(float), (rows + 1) * sizeof(float), \"quant_tok\", k, n);\n"
	"\t\t\t\tcheck(s2, n * sizeof(float), (rows + 1) * sizeof(float), \"quant_tok\", k, n);\n"
	"\t\t\t\twr(s1, n * sizeof(float)), wr(s2, n * sizeof(float)), wr(q1, m), wr(q2, m);\n"
	"\t\t\t}\n\t\t}\n"
	"\t\tfree(w), free(x), free(r), free(s1), free(s2), free(q1), free(q2);\n"
	"\t\tfor (int b = 0; b < 8; b++)\n\t\t\tfree(y[b]);\n"
	"\t}\n"
	"\tfloat *p = rd(nf * sizeof(float)), *f = mem(nf * sizeof(float));\n"
	"\tuint16_t *h = mem(nf * sizeof(uint16_t));\n"
	"\tf32_to_f16_n(p, h, (int64_t)nf);\n"
	"\tround_f16_n(p, f, (int64_t)nf);\n"
	"\twr(h, nf * sizeof(uint16_t)), wr(f, nf * sizeof(float));\n"
	"\tfor (size_t i = 0, len, c = 0; i < nf; i += len, c++) {\n"
	"\t\tlen = 1 + c % 37 < nf - i ? 1 + c % 37 : nf - i;\n"
	"\t\tf32_to_f16_n(p + i, h + i, (int64_t)len);\n"
	"\t\tround_f16_n(p + i, f + i, (int64_t)len);\n\t}\n"
	"\twr(h, nf * sizeof(uint16_t)), wr(f, nf * sizeof(float));\n"
	"\tfor (size_t i = 0; i < nf; i++)\n"
	"\t\th[i] = f32_to_f16(p[i]), f[i] = round_f16(p[i]);\n"
	"\twr(h, nf * sizeof(uint16_t)), wr(f, nf * sizeof(float));\n"
	"\treturn fclose(out) != 0 ? 3 : 0;\n}\n";

/* One target: its name, the C compiler and how its programs run (NULL: on this host). */
typedef enum { NEED_ANY, NEED_AVX2, NEED_AVX512, NEED_QEMU } Need;
typedef struct {
	const char *target, *cc, *wrap;
	Need need;
} Target;
#define AARCH64_SYSROOT "/usr/aarch64-linux-gnu"
static const Target targets[] = {
	{"cpu-generic", NULL, NULL, NEED_ANY},
	{"cpu-avx2", NULL, NULL, NEED_AVX2},
	{"cpu-avx512", NULL, NULL, NEED_AVX512},
	{"native", NULL, NULL, NEED_ANY},
	{"cpu-generic", "aarch64-linux-gnu-gcc", "qemu-aarch64 -L " AARCH64_SYSROOT, NEED_QEMU},
	{"cpu-neon", "aarch64-linux-gnu-gcc", "qemu-aarch64 -L " AARCH64_SYSROOT, NEED_QEMU},
};
enum { N_TARGETS = sizeof targets / sizeof targets[0] };

/* Skips the calling test, saying why, unless this host can run target t. */
static void need(const Target *t)
{
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	bool avx2 = f.avx2 && f.fma && f.f16c;
	bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
	if (t->need == NEED_AVX2 && !avx2) {
		print_message("skipped: %s: no AVX2 + FMA + F16C here%s\n", t->target, tu_mask_note());
		skip();
	}
	if (t->need == NEED_AVX512 && !avx512) {
		print_message("skipped: %s: no AVX-512 (F, BW, VL) + VNNI here%s\n", t->target,
			      tu_mask_note());
		skip();
	}
	if (t->need != NEED_QEMU)
		return;
	if (tu_mask_note()[0]) {
		print_message("skipped: %s under qemu: nothing here depends on this host's "
			      "features%s\n", t->target, tu_mask_note());
		skip();
	}
	if (tu_run(NULL, "command -v %s && command -v qemu-aarch64 && test -e %s/lib/"
			 "ld-linux-aarch64.so.1", t->cc, AARCH64_SYSROOT) != 0) {
		print_message("skipped: %s under qemu: needs %s, qemu-aarch64 and %s (apt-get "
			      "install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)\n",
			      t->target, t->cc, AARCH64_SYSROOT);
		skip();
	}
}

/* a and b the same float: any NaN for a NaN, else the same bits (signed zeros apart) */
static bool same(float a, float b)
{
	return isnan(a) ? isnan(b) : !isnan(b) && bits(a) == bits(b);
}

typedef struct {
	const char *target;
	int bad; /* mismatches seen; the first few are printed */
} Cmp;

static void mismatch(Cmp *c, const char *fmt, ...) BN_PRINTF(2, 3);
static void mismatch(Cmp *c, const char *fmt, ...)
{
	if (c->bad++ >= 8)
		return;
	va_list ap;
	va_start(ap, fmt);
	printf("%s: ", c->target);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

/* The rows part of the program's output at *p, checked call by call; *p moves past it. */
static void check_rows(Cmp *c, const uint8_t **p, const uint8_t *end)
{
	size_t most = (size_t)ROWS * (size_t)ks[N_K - 1];
	int8_t *wq1 = tu_hold(malloc(most)), *wq2 = tu_hold(malloc(most));
	for (int i = 0; i < N_K; i++) {
		int k = ks[i];
		for (int s = 0; s < N_SET; s++) {
			size_t o = (size_t)s * ROWS * (size_t)k;
			float ws1[ROWS], ws2[ROWS];
			for (int j = 0; j < ROWS; j++) {
				ws1[j] = ref_quant(H.x[i] + o + (size_t)j * k, k, wq1 + (size_t)j * k);
				ws2[j] = ref_quant(H.ref[REF_ADDNORM][i] + o + (size_t)j * k, k,
						   wq2 + (size_t)j * k);
			}
			for (int n = 1; n <= ROWS; n++) {
				size_t m = (size_t)n * (size_t)k;
				if ((size_t)(end - *p) < m * (N_FBLK * sizeof(float) + 2) + 2 * n * sizeof(float))
					fail_msg("%s: the program's output ends early (K %d, set %d, %d rows)",
						 c->target, k, s, n);
				for (int b = 0; b < N_FBLK; b++, *p += m * sizeof(float)) {
					const float *want = H.ref[blk_ref[b]][i] + o;
					for (size_t e = 0; e < m; e++) {
						float got;
						memcpy(&got, *p + e * sizeof(float), sizeof got);
						if (!same(got, want[e]))
							mismatch(c, "K %d set %d, call of %d rows, %s row %zu [%zu]: "
								    "%a (0x%08" PRIx32 "), interpreter %a (0x%08" PRIx32
								    "); x %a, r %a",
								 k, s, n, blk_name[b], e / (size_t)k, e % (size_t)k,
								 (double)got, bits(got), (double)want[e],
								 bits(want[e]), (double)H.x[i][o + e],
								 (double)H.r[i][o + e]);
					}
				}
				for (int q = 0; q < 2; q++, *p += (size_t)n * sizeof(float))
					for (int j = 0; j < n; j++) {
						float got, want = q ? ws2[j] : ws1[j];
						memcpy(&got, *p + (size_t)j * sizeof(float), sizeof got);
						if (bits(got) != bits(want))
							mismatch(c, "K %d set %d, call of %d rows, quant_tok of %s "
								    "row %d: scale %a, interpreter's %a",
								 k, s, n, q ? "add_rmsnorm's y" : "x", j,
								 (double)got, (double)want);
					}
				for (int q = 0; q < 2; q++, *p += m) {
					const int8_t *want = q ? wq2 : wq1;
					for (size_t e = 0; e < m; e++)
						if ((int8_t)(*p)[e] != want[e])
							mismatch(c, "K %d set %d, call of %d rows, quant_tok of %s "
								    "row %zu [%zu]: code %d, interpreter's %d (x %a)",
								 k, s, n, q ? "add_rmsnorm's y" : "x", e / (size_t)k,
								 e % (size_t)k, (int8_t)(*p)[e], want[e],
								 (double)(q ? H.ref[REF_ADDNORM][i][o + e] : H.x[i][o + e]));
				}
			}
		}
	}
	tu_free(wq1);
	tu_free(wq2);
}

/* The F16 part: f32_to_f16_n and round_f16_n on all patterns, in chunks, and the scalar
 * f32_to_f16 / round_f16, each against the interpreter's conversion. */
static void check_f16(Cmp *c, const uint8_t *p, const uint8_t *end)
{
	static const char *const how[3] = {"f32_to_f16_n / round_f16_n, one call",
					   "f32_to_f16_n / round_f16_n, calls of 1..37",
					   "scalar f32_to_f16 / round_f16"};
	size_t n = H.n_f16;
	if ((size_t)(end - p) != 3 * n * (sizeof(uint16_t) + sizeof(float)))
		fail_msg("%s: the F16 part of the program's output has %zu bytes, want %zu", c->target,
			 (size_t)(end - p), 3 * n * (sizeof(uint16_t) + sizeof(float)));
	for (int v = 0; v < 3; v++) {
		const uint8_t *ph = p, *pf = p + n * sizeof(uint16_t);
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			uint32_t r;
			memcpy(&h, ph + i * sizeof h, sizeof h);
			memcpy(&r, pf + i * sizeof r, sizeof r);
			float x = fbits(H.f16[i]);
			uint16_t wh = bn_f32_to_f16(x);
			uint32_t wr = bits(bn_round_f16(x));
			if (h != wh || r != wr)
				mismatch(c, "%s of 0x%08" PRIx32 ": half 0x%04x, float 0x%08" PRIx32
					    "; interpreter 0x%04x, 0x%08" PRIx32,
					 how[v], H.f16[i], h, r, wh, wr);
		}
		p += n * (sizeof(uint16_t) + sizeof(float));
	}
}

static void test_target(void **state)
{
	const Target *t = *state;
	need(t);
	char name[64], dir[4096], path[4300], out[4300], *log = NULL;
	snprintf(name, sizeof name, "hostile_%s%s", t->cc ? "a64_" : "", t->target);
	snprintf(dir, sizeof dir, "%s", tu_tmp(name));
	free(tu_run_ok(0, "rm -rf '%s' && mkdir -p '%s'", dir, dir));

	/* model.c of the hostile graph for the target */
	CgOpts o = {.target = t->target, .max_batch = 1, .pipeline = "dce", .bos = -1, .eos = -1};
	CgOutput co;
	BnErr e = {0};
	if (cg_cpu_emit(H.g, &o, &co, &e))
		fail_msg("%s: emit: %s", t->target, e.msg);
	const CgArtifact *a = cg_output_find(&co, "model.c");
	snprintf(path, sizeof path, "%s/model.c", dir);
	int wrc = a ? tu_write_file(path, a->bytes.data, a->bytes.len) : -1;
	cg_output_free(&co);
	assert_int_equal(wrc, 0);
	FILE *f;
	snprintf(path, sizeof path, "%s/hostile.c", dir);
	assert_non_null(f = fopen(path, "w"));
	fprintf(f, "#define HOSTILE_KS");
	for (int i = 0; i < N_K; i++)
		fprintf(f, " X(%d)", ks[i]);
	fprintf(f, "\n#define HOSTILE_EPS %af\n%s%s", (double)EPS, harness_src, tu_model_c_stubs);
	assert_int_equal(fclose(f), 0);

	/* compiled as bitnetc compiles model.c for the target (cg_cc), run */
	const CgCpuTarget *ct = cg_cpu_target(t->target);
	assert_non_null(ct);
	char flags[512] = "";
	for (size_t n = 0, i = 0; ct->cflags && ct->cflags[i]; i++)
		n += (size_t)snprintf(flags + n, sizeof flags - n, " %s", ct->cflags[i]);
	const char *cc = t->cc ? t->cc : getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	if (tu_run(&log, "cd '%s' && %s -std=c11 -O2 -ffp-contract=off -D_GNU_SOURCE%s -I '%s/../../runtime' "
			 "-o hostile hostile.c -lm -lpthread",
		   dir, cc, flags, tu_data(".")))
		tu_fail_log(log, "%s: compile the kernels' program", t->target);
	free(log);
	snprintf(out, sizeof out, "%s/hostile.out", dir);
	/* under qemu-user bounded, as test_kernels bounds its programs there */
	if (tu_run(&log, "%s%s '%s/hostile' '%s' '%s'", t->wrap ? "timeout 300 " : "",
		   t->wrap ? t->wrap : "", dir, H.in_path, out))
		tu_fail_log(log, "%s: the kernels' program", t->target);
	free(log);

	size_t sz;
	uint8_t *buf = tu_hold(tu_read_file(out, &sz));
	assert_non_null(buf);
	Cmp c = {t->target, 0};
	const uint8_t *p = buf;
	check_rows(&c, &p, buf + sz);
	check_f16(&c, p, buf + sz);
	tu_free(buf);
	if (c.bad)
		fail_msg("%s%s: %d values differ from the interpreter's", t->target,
			 t->wrap ? " (qemu)" : "", c.bad);
	printf("%s%s: norms, add_rmsnorm (3 ways), quant_tok on %d kinds of row, K %d..%d, "
	       "calls of 1..%d rows, and F16 on %zu patterns: the interpreter's bits\n",
	       t->target, t->wrap ? " (aarch64, qemu)" : "", N_CLASS, ks[0], ks[N_K - 1], ROWS,
	       H.n_f16);
	free(tu_run_ok(0, "rm -rf '%s'", dir));
}

int main(void)
{
	static char names[N_TARGETS][96];
	struct CMUnitTest tests[N_TARGETS];
	for (size_t i = 0; i < N_TARGETS; i++) {
		snprintf(names[i], sizeof names[i], "hostile rows %s%s", targets[i].target,
			 targets[i].wrap ? " (aarch64, qemu)" : "");
		tests[i] = (struct CMUnitTest){names[i], test_target, NULL, tu_teardown,
					       (void *)(uintptr_t)&targets[i]};
	}
	return _cmocka_run_group_tests("test_hostile", tests, N_TARGETS, setup, teardown);
}
