/* cg_cpu_head.c - the float output head (f32/f16/bf16/q8_0/q6_k weight, float x): its x
 * preparation and the matmul that writes the logits. */
#include "cg_cpu_em.h"

static void head_prep_q(CgBuf *b, IrDtype dt, int64_t k);

/* The head's x preparation, exactly as the interpreter's head_prepare. step: the rows are
 * in the reference's step mode, which rounds x to the weight's half type first; a
 * parameter, as the mode is a row's (RtBatch.step), not the call's. */
static void head_prep_body(CgBuf *b, const char *name, IrDtype dt, int64_t k)
{
	cg_printf(b, "static void %s(const float *x, float *xr, int n, int step)\n{\n"
		     "\tenum { K = %" PRId64 " };\n",
		  name, k);
	if (dt != IR_DT_F16 && dt != IR_DT_BF16)
		cg_printf(b, "\t(void)step;\n");
	cg_printf(b, "\tfor (int t = 0; t < n; t++) {\n"
		     "\t\tconst float *xt = x + (int64_t)t * K;\n"
		     "\t\tfloat *xo = xr + (int64_t)t * K;\n");
	switch (dt) {
	case IR_DT_F16:
		cg_printf(b, "\t\tif (step)\n"
			     "\t\t\tround_f16_n(xt, xo, K);\n"
			     "\t\telse\n"
			     "\t\t\tmemmove(xo, xt, K * sizeof(float));\n");
		break;
	case IR_DT_BF16:
		cg_printf(b, "\t\tfor (int i = 0; i < K; i++)\n"
			     "\t\t\txo[i] = step ? bf16_to_f32(f32_to_bf16(xt[i])) : xt[i];\n");
		break;
	case IR_DT_Q8_0:
	case IR_DT_Q6_K:
		head_prep_q(b, dt, k);
		break;
	default:
		cg_printf(b, "\t\tmemcpy(xo, xt, K * sizeof(float));\n");
		break;
	}
	cg_printf(b, "\t}\n}\n");
}

/* ---- SIMD heads: f16, bf16 and f32 weights ------------------------------------------ */

/* One vector instruction set for the head. The weight rows are converted to float in
 * registers as they stream by (no row buffer). Tokens share each converted weight vector
 * across a register tile of 4 rows x tt tokens, which prefetches the next 4 rows itself;
 * one token (the GEMV, bound by memory bandwidth: 657 MB of f16 per token for the 2B
 * model) streams each thread's rows in order through the 1 x 1. Every (row, token) is one
 * accumulator over the vectors in order, then its lanes summed, in every tile and in the
 * 1 x 1: a row's logit has the same bits whatever the token count (a step-mode row in a
 * call of several rows is the one-row call's). */
typedef struct {
	const char *guard; /* the #if condition */
	int vw;            /* floats per vector */
	int tt;            /* tokens per multi-token tile (4 rows): 4*tt + tt + 1 registers */
	int cr, ct;        /* the blocked path's tile: cr rows x ct tokens, all in registers */
	int sr, st;        /* calls of 2..st tokens: sr rows x up to st tokens instead (0: none) */
	const char *pin;   /* asm constraint that holds a vector in a register (NULL: none) */
	const char *vec, *zero, *loadx, *add;
	const char *fma; /* fma(a, b, c) = a * b + c; NULL: emit NAME_fma (vfmaq_f32 is c + a * b) */
	/* a weight vector at a byte pointer, as floats: the text before and after it */
	const char *f16[2], *bf16[2], *f32[2];
	const char *sum;   /* horizontal sum of a vector: the function; NULL: emit NAME_hsum */
	const char *header; /* its intrinsics */
} HeadIsa;

static const HeadIsa head_isas[] = {
	{"defined(__AVX512F__)", 16, 6, 2, 8, 4, 4, "v", "__m512", "_mm512_setzero_ps()", "_mm512_loadu_ps",
	 "_mm512_add_ps", "_mm512_fmadd_ps",
	 {"_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(", ")))"},
	 {"_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(",
	  "))), 16))"},
	 {"_mm512_loadu_ps((const float *)(", "))"}, "_mm512_reduce_add_ps", "immintrin.h"},
	{"defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)", 8, 3, 4, 3, 0, 0, NULL, "__m256",
	 "_mm256_setzero_ps()", "_mm256_loadu_ps", "_mm256_add_ps", "_mm256_fmadd_ps",
	 {"_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(", ")))"},
	 {"_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(",
	  "))), 16))"},
	 {"_mm256_loadu_ps((const float *)(", "))"}, NULL, "immintrin.h"},
	/* AArch64 (NEON is part of the base architecture, fcvtl converts f16) */
	{"defined(__aarch64__)", 4, 4, 4, 4, 0, 0, NULL, "float32x4_t", "vdupq_n_f32(0.0f)", "vld1q_f32", "vaddq_f32",
	 NULL,
	 {"vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(", "))))"},
	 {"vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)(", ")), 16))"},
	 {"vld1q_f32((const float *)(", "))"}, "vaddvq_f32", "arm_neon.h"},
};

/* The FMA of s as called in the tiles of head name. */
static const char *head_fma(const HeadIsa *s, const char *name, char *buf, size_t n)
{
	if (s->fma)
		return s->fma;
	snprintf(buf, n, "%s_fma", name);
	return buf;
}

static bool head_simd_type(IrDtype dt)
{
	return dt == IR_DT_F16 || dt == IR_DT_BF16 || dt == IR_DT_F32;
}

static const char *const *head_wload(const HeadIsa *s, IrDtype dt)
{
	return dt == IR_DT_F16 ? s->f16 : dt == IR_DT_BF16 ? s->bf16 : s->f32;
}

static int head_es(IrDtype dt)
{
	return dt == IR_DT_F32 ? 4 : 2;
}

/* name_1x1(w, x, y): one row times one token in one accumulator, vector by vector, then
 * its lanes summed: a (row, token) of a 4 x T tile in the same float order, so a row's
 * logit does not depend on the tile that computes it (the rows left over after the 4-row
 * groups). */
static void head_row(CgBuf *b, const HeadIsa *s, const char *name, IrDtype dt, int64_t k)
{
	const char *const *wl = head_wload(s, dt);
	int es = head_es(dt), vw = s->vw;
	char fb[128];
	const char *fma = head_fma(s, name, fb, sizeof fb);
	cg_printf(b, "static inline void %s_1x1(const uint8_t *w, const float *x, float *y)\n{\n"
		     "\t%s s = %s;\n"
		     "\tfor (int i = 0; i < %" PRId64 "; i += %d)\n"
		     "\t\ts = %s(%sw + %d * i%s, %s(x + i), s);\n"
		     "\ty[0] = %s%s(s);\n}\n\n",
		  name, s->vec, s->zero, k, vw, fma, wl[0], es, wl[1], s->loadx,
		  s->sum ? s->sum : name, s->sum ? "" : "_hsum");
}

/* name_1x1s4(w, d, x, y, dy): four rows d bytes apart (their logits dy apart) times one
 * token, each as name_1x1 sums it, in four independent chains: the GEMV's four streams,
 * each over consecutive rows, which the hardware prefetcher follows as it follows one. */
static void head_row4(CgBuf *b, const HeadIsa *s, const char *name, IrDtype dt, int64_t k)
{
	const char *const *wl = head_wload(s, dt);
	int es = head_es(dt), vw = s->vw;
	char fb[128];
	const char *fma = head_fma(s, name, fb, sizeof fb);
	cg_printf(b, "static inline void %s_1x1s4(const uint8_t *w, uint64_t d, const float *x, float *y, int64_t dy)\n{\n"
		     "\t%s s0 = %s, s1 = %s, s2 = %s, s3 = %s;\n"
		     "\tfor (int i = 0; i < %" PRId64 "; i += %d) {\n"
		     "\t\t%s xv = %s(x + i);\n",
		  name, s->vec, s->zero, s->zero, s->zero, s->zero, k, vw, s->vec, s->loadx);
	for (int j = 0; j < 4; j++)
		cg_printf(b, "\t\ts%d = %s(%sw + %d * d + %d * i%s, xv, s%d);\n", j, fma, wl[0], j, es,
			  wl[1], j);
	cg_printf(b, "\t}\n");
	for (int j = 0; j < 4; j++)
		cg_printf(b, "\ty[%d * dy] = %s%s(s%d);\n", j, s->sum ? s->sum : name,
			  s->sum ? "" : "_hsum", j);
	cg_printf(b, "}\n\n");
}

/* name_4xT(w, x, y): rows w.. (4 of them, rb bytes apart) times tokens x.. (T rows of k
 * floats) into y[t * nr + r]: per lane FMA over i, then the lanes summed. Each 64-byte
 * line of the next 4 rows is prefetched once per pass (the first token tile reads them
 * from memory; later passes find them in cache). */
static void head_tile(CgBuf *b, const HeadIsa *s, const char *name, IrDtype dt, int64_t k,
		      int64_t nr, uint64_t rb, int T)
{
	enum { R = 4 };
	const char *const *wl = head_wload(s, dt);
	int es = head_es(dt), line = 64 / es; /* elements per cache line */
	char fb[128];
	const char *fma = head_fma(s, name, fb, sizeof fb);
	cg_printf(b, "static inline void %s_%dx%d(const uint8_t *w, const float *x, float *y)\n{\n",
		  name, R, T);
	for (int r = 0; r < R; r++) {
		cg_printf(b, "\t%s", s->vec);
		for (int t = 0; t < T; t++)
			cg_printf(b, "%s s%d_%d = %s", t ? "," : "", r, t, s->zero);
		cg_printf(b, ";\n");
	}
	cg_printf(b, "\tfor (int i = 0; i < %" PRId64 "; i += %d) {\n", k, s->vw);
	const char *ind = "\t\t";
	if (line > s->vw) {
		cg_printf(b, "\t\tif ((i & %d) == 0) {\n", line - 1);
		ind = "\t\t\t";
	}
	for (int r = 0; r < R; r++)
		cg_printf(b, "%s__builtin_prefetch((const char *)(w + %" PRIu64 " + %d * i), 0, 3);\n",
			  ind, (uint64_t)(R + r) * rb, es);
	if (line > s->vw)
		cg_printf(b, "\t\t}\n");
	for (int t = 0; t < T; t++)
		cg_printf(b, "\t\t%s x%d = %s(x + %" PRId64 " + i);\n", s->vec, t, s->loadx,
			  (int64_t)t * k);
	for (int r = 0; r < R; r++) {
		cg_printf(b, "\t\t%s w%d = %sw + %" PRIu64 " + %d * i%s;\n", s->vec, r, wl[0],
			  (uint64_t)r * rb, es, wl[1]);
		for (int t = 0; t < T; t++)
			cg_printf(b, "\t\ts%d_%d = %s(w%d, x%d, s%d_%d);\n", r, t, fma, r, t, r, t);
	}
	cg_printf(b, "\t}\n");
	for (int r = 0; r < R; r++)
		for (int t = 0; t < T; t++)
			cg_printf(b, "\ty[%" PRId64 "] = %s%s(s%d_%d);\n", (int64_t)t * nr + r,
				  s->sum ? s->sum : name, s->sum ? "" : "_hsum", r, t);
	cg_printf(b, "}\n\n");
}

/* Rows and tokens of the blocked multi-token path (head_simd_call): a thread's rows go in
 * blocks of HEAD_RB rows, each block over K in chunks of HEAD_KC elements, every (row,
 * token) accumulator of the block kept in a buffer between chunks. A call of up to
 * HEAD_BLK_N tokens reads each token's x chunk from L1 once per tile instead of from L2
 * (8 tokens of 2560 floats are 80 KB, more than L1), and the tile (HeadIsa cr x ct, or sr
 * x st for few tokens) keeps x in registers: AVX-512's 2 rows x 8 tokens (16
 * accumulators, 8 x, 2 weights) loads 10 vectors for 16 FMAs and runs at the FMA units'
 * rate from L1; its 4 x 4 for 2..4 tokens converts one weight vector per 4 FMAs instead
 * of per 2 or 3. At 32 rows, 256 floats and 8 tokens: 8 KB of x and 16 KB of f16 weights
 * per chunk (16 tokens: 16 KB of x), which stay in L1 for the chunk's tiles; the
 * accumulators (16 KB at 8 tokens) are read and written once per tile call. Measured on
 * the 2B head (2 threads, Zen 5): 256-element chunks beat 512 at 16 tokens (32 KB of x at
 * 512 leaves L1 too little for the weights), 32-row blocks equal 16 at 8 tokens and beat
 * them at 16, and the prefetch distance (HEAD_PD tiles) matters little between 2 and 8. */
enum { HEAD_RB = 32, HEAD_KC = 256, HEAD_BLK_N = 16, HEAD_PD = 4 };

/* name_cRxT(w, x, acc, i0, i1, pf): R rows (rb bytes apart) times T tokens (rows of k
 * floats) over elements i0..i1 only, the accumulators read from and written back to
 * acc[R * t + r] (the vector, not its sum: every (row, token) is still one accumulator over
 * all of K in order, so the same bits as name_4xT and name_1x1). pf: the weight the caller
 * reads next (the next tile's rows at i0), prefetched a line per 64 bytes as name_4xT
 * prefetches the next 4 rows. */
static void head_tile_c(CgBuf *b, const HeadIsa *s, const char *name, IrDtype dt, int64_t k,
			uint64_t rb, int R, int T)
{
	const char *const *wl = head_wload(s, dt);
	int es = head_es(dt), line = 64 / es;
	char fb[128];
	const char *fma = head_fma(s, name, fb, sizeof fb);
	cg_printf(b, "static inline void %s_c%dx%d(const uint8_t *w, const float *x, %s *acc, int i0, int i1, const uint8_t *pf)\n{\n",
		  name, R, T, s->vec);
	for (int r = 0; r < R; r++) {
		cg_printf(b, "\t%s", s->vec);
		for (int t = 0; t < T; t++)
			cg_printf(b, "%s s%d_%d = acc[%d]", t ? "," : "", r, t, R * t + r);
		cg_printf(b, ";\n");
	}
	cg_printf(b, "\tfor (int i = i0; i < i1; i += %d) {\n", s->vw);
	const char *ind = "\t\t";
	if (line > s->vw) {
		cg_printf(b, "\t\tif ((i & %d) == 0) {\n", line - 1);
		ind = "\t\t\t";
	}
	for (int r = 0; r < R; r++)
		cg_printf(b, "%s__builtin_prefetch((const char *)(pf + %" PRIu64 " + %d * (i - i0)), 0, 3);\n",
			  ind, (uint64_t)r * rb, es);
	if (line > s->vw)
		cg_printf(b, "\t\t}\n");
	for (int t = 0; t < T; t++)
		cg_printf(b, "\t\t%s x%d = %s(x + %" PRId64 " + i);\n", s->vec, t, s->loadx,
			  (int64_t)t * k);
	/* x in registers: left to itself, gcc folds each x load into every FMA that uses it
	 * (R loads of it per step instead of one), and the loads, not the FMAs, bound the
	 * loop; an empty asm that "changes" each x keeps it loaded once */
	if (s->pin && R > 1)
		for (int t = 0; t < T; t++)
			cg_printf(b, "\t\t__asm__(\"\" : \"+%s\"(x%d));\n", s->pin, t);
	for (int r = 0; r < R; r++) {
		cg_printf(b, "\t\t%s w%d = %sw + %" PRIu64 " + %d * i%s;\n", s->vec, r, wl[0],
			  (uint64_t)r * rb, es, wl[1]);
		for (int t = 0; t < T; t++)
			cg_printf(b, "\t\ts%d_%d = %s(w%d, x%d, s%d_%d);\n", r, t, fma, r, t, r, t);
	}
	cg_printf(b, "\t}\n");
	for (int r = 0; r < R; r++)
		for (int t = 0; t < T; t++)
			cg_printf(b, "\tacc[%d] = s%d_%d;\n", R * t + r, r, t);
	cg_printf(b, "}\n\n");
}

/* The tiles of one instruction set, before the kernel. */
static void head_simd_tiles(CgBuf *b, const HeadIsa *s, const char *name, IrDtype dt,
			    int64_t k, int64_t nr, uint64_t rb)
{
	if (!s->sum)
		cg_printf(b, "static inline float %s_hsum(%s v)\n{\n"
			     "\t__m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));\n"
			     "\th = _mm_add_ps(h, _mm_movehl_ps(h, h));\n"
			     "\th = _mm_add_ss(h, _mm_movehdup_ps(h));\n"
			     "\treturn _mm_cvtss_f32(h);\n"
			     "}\n\n",
			  name, s->vec);
	if (!s->fma)
		cg_printf(b, "static inline %s %s_fma(%s a, %s b, %s c)\n{\n"
			     "\treturn vfmaq_f32(c, a, b);\n"
			     "}\n\n",
			  s->vec, name, s->vec, s->vec, s->vec);
	head_row(b, s, name, dt, k);
	head_row4(b, s, name, dt, k);
	for (int t = 1; t <= s->tt; t++)
		head_tile(b, s, name, dt, k, nr, rb, t);
	for (int t = 1; t <= s->ct; t++)
		head_tile_c(b, s, name, dt, k, rb, s->cr, t);
	for (int t = 1; t <= s->st; t++)
		head_tile_c(b, s, name, dt, k, rb, s->sr, t);
}

/* The blocked path for calls of 2..maxn tokens: blocks of HEAD_RB rows over chunks of
 * HEAD_KC elements through cr x (up to ct) tiles; cr divides 4 (the thread's rows are
 * groups of 4) and HEAD_RB. */
static void head_simd_blocked(CgBuf *b, const HeadIsa *s, const char *name, const char *deq,
			      IrDtype dt, uint64_t rb, int cr, int ct, int maxn)
{
	const char *sum = s->sum ? s->sum : name, *sfx = s->sum ? "" : "_hsum";
	cg_printf(b, "\tif (a->n > 1 && a->n <= %d) {\n"
		     "\t\tenum { RB = %d, KC = %d, ES = %d, CR = %d, PD = %d };\n"
		     "\t\t%s acc[RB * %d];\n"
		     "\t\tconst int n = a->n;\n"
		     "\t\tShareIt it = share_begin(a->sh, (N + 3) / 4, 4 * %" PRIu64 ", ith, nth);\n"
		     "\t\tfor (int64_t lo, hi; share_next(&it, &lo, &hi);) {\n"
		     "\t\t\tlo *= 4;\n"
		     "\t\t\thi = 4 * hi < N ? 4 * hi : N;\n"
		     "\t\t\tint64_t hq = lo + (hi - lo) / 4 * 4;\n"
		     "\t\t\tfor (int64_t ob = lo; ob < hq; ob += RB) {\n"
		     "\t\t\t\tint nq = (int)((hq - ob < RB ? hq - ob : RB) / CR);\n"
		     "\t\t\t\tconst uint8_t *wb = a->w + (uint64_t)ob * %" PRIu64 ";\n"
		     "\t\t\t\tmemset(acc, 0, sizeof(acc[0]) * (size_t)(CR * nq * n));\n"
		     "\t\t\t\tfor (int i0 = 0; i0 < K; i0 += KC) {\n"
		     "\t\t\t\t\tint i1 = K - i0 < KC ? K : i0 + KC;\n"
		     "\t\t\t\t\tfor (int q = 0; q < nq; q++) {\n"
		     "\t\t\t\t\t\tconst uint8_t *w = wb + (uint64_t)(CR * q) * %" PRIu64 ";\n"
		     "\t\t\t\t\t\t/* the tile read PD tiles later: here, at a later chunk or in the next block */\n"
		     "\t\t\t\t\t\tint qn = q + PD, cn = i0;\n"
		     "\t\t\t\t\t\tfor (; qn >= nq; qn -= nq)\n"
		     "\t\t\t\t\t\t\tcn += KC;\n"
		     "\t\t\t\t\t\tconst uint8_t *pf = wb + (uint64_t)(CR * qn) * %" PRIu64 " + (cn < K ? ES * cn : (int64_t)RB * %" PRIu64 ");\n"
		     "\t\t\t\t\t\t%s *aq = acc + CR * q * n;\n"
		     "\t\t\t\t\t\tint t = 0;\n"
		     "\t\t\t\t\t\tfor (; t + %d <= n; t += %d)\n"
		     "\t\t\t\t\t\t\t%s_c%dx%d(w, a->x + (int64_t)t * K, aq + CR * t, i0, i1, pf);\n"
		     "\t\t\t\t\t\tswitch (n - t) {\n",
		  maxn, HEAD_RB, HEAD_KC, head_es(dt), cr, HEAD_PD, s->vec, maxn, rb, rb, rb, rb, rb,
		  s->vec, ct, ct, name, cr, ct);
	for (int t = ct - 1; t >= 1; t--)
		cg_printf(b, "\t\t\t\t\t\tcase %d:\n"
			     "\t\t\t\t\t\t\t%s_c%dx%d(w, a->x + (int64_t)t * K, aq + CR * t, i0, i1, pf);\n"
			     "\t\t\t\t\t\t\tbreak;\n",
			  t, name, cr, t);
	cg_printf(b, "\t\t\t\t\t\tdefault:\n"
		     "\t\t\t\t\t\t\tbreak;\n"
		     "\t\t\t\t\t\t}\n"
		     "\t\t\t\t\t}\n"
		     "\t\t\t\t}\n"
		     "\t\t\t\tfor (int q = 0; q < nq; q++)\n"
		     "\t\t\t\t\tfor (int t = 0; t < n; t++)\n"
		     "\t\t\t\t\t\tfor (int r = 0; r < CR; r++)\n"
		     "\t\t\t\t\t\t\ta->y[(int64_t)t * N + ob + CR * q + r] = %s%s(acc[CR * q * n + CR * t + r]);\n"
		     "\t\t\t}\n"
		     "\t\t\tfor (int64_t o = hq; o < hi; o++)\n"
		     "\t\t\t\tfor (int t = 0; t < n; t++)\n"
		     "\t\t\t\t\t%s_1x1(a->w + (uint64_t)o * %" PRIu64 ", a->x + (int64_t)t * K, a->y + (int64_t)t * N + o);\n"
		     "\t\t}\n"
		     "\t\t(void)%s; /* the portable path's row converter */\n"
		     "\t\treturn;\n"
		     "\t}\n",
		  sum, sfx, name, rb, deq);
}

/* The kernel's body for one instruction set: 4 x tt tiles (and their token tails) over
 * groups of 4 rows (the last group may be short) that the threads share (share_next). A
 * row's float order depends on neither the token count nor the token's place in the call,
 * so a last_only call (one row) gives bit for bit the last row of the call with all
 * rows. */
static void head_simd_call(CgBuf *b, const HeadIsa *s, const char *name, const char *deq,
			   IrDtype dt, uint64_t rb)
{
	/* 2..HEAD_BLK_N tokens: the blocked path (HEAD_RB), its sr x st tile first where the
	 * ISA has one (few tokens: more rows per x vector, fewer weight conversions per FMA);
	 * the rows left over (fewer than 4 at the end of the last group) through the 1 x 1,
	 * as below */
	if (s->sr)
		head_simd_blocked(b, s, name, deq, dt, rb, s->sr, s->st, s->st);
	head_simd_blocked(b, s, name, deq, dt, rb, s->cr, s->ct, HEAD_BLK_N);
	cg_printf(b, "\t(void)%s; /* the portable path's row converter */\n"
		     "\tShareIt it = share_begin(a->sh, (N + 3) / 4, 4 * %" PRIu64 ", ith, nth);\n"
		     "\tfor (int64_t o, hi; share_next(&it, &o, &hi);) {\n"
		     "\t\to *= 4;\n"
		     "\t\thi = 4 * hi < N ? 4 * hi : N;\n"
		     "\t\tfor (; o + 4 <= hi; o += 4) {\n"
		     "\t\t\tconst uint8_t *w = a->w + (uint64_t)o * %" PRIu64 ";\n"
		     "\t\t\tint t = 0;\n"
		     "\t\t\tfor (; t + %d <= a->n; t += %d)\n"
		     "\t\t\t\t%s_4x%d(w, a->x + (int64_t)t * K, a->y + (int64_t)t * N + o);\n"
		     "\t\t\tswitch (a->n - t) {\n",
		  deq, rb, rb, s->tt, s->tt, name, s->tt);
	for (int t = s->tt - 1; t >= 1; t--)
		cg_printf(b, "\t\t\tcase %d:\n"
			     "\t\t\t\t%s_4x%d(w, a->x + (int64_t)t * K, a->y + (int64_t)t * N + o);\n"
			     "\t\t\t\tbreak;\n",
			  t, name, t);
	cg_printf(b, "\t\t\tdefault:\n"
		     "\t\t\t\tbreak;\n"
		     "\t\t\t}\n"
		     "\t\t}\n"
		     "\t\tfor (; o < hi; o++)\n"
		     "\t\t\tfor (int t = 0; t < a->n; t++)\n"
		     "\t\t\t\t%s_1x1(a->w + (uint64_t)o * %" PRIu64 ", a->x + (int64_t)t * K, a->y + (int64_t)t * N + o);\n"
		     "\t}\n",
		  name, rb);
}

/* ---- SIMD q8_0 and q6_k heads: exact integer dots per block ---------------------------- */

/* The interpreter multiplies a Q8_0 weight by x quantized to Q8_0 (blocks of 32, an
 * f16-rounded scale) and a Q6_K weight by x quantized to Q8_K (blocks of 256, a float
 * scale; head_prepare). Here the codes meet as integers: per block the dot of the codes is
 * exact in int32 (q6_k: with the 16 sub-block scales), and the float work is one FMA per
 * lane of lanes * d_w * d_x into a float accumulator (q8_0: d_w * d_x is exact in float,
 * two 11-bit significands), ~1e-7 relative from the interpreter's double dot, as the f16
 * head. Every path (the one-token row stream, the R x T tiles, the rows left over)
 * computes a (row, token) dot with the same instruction sequence into accumulators of its
 * own, so a row's logits are bit for bit the same whatever the token count, the tile or
 * the thread split.
 * x is prepared per token into the K floats (4K bytes) of the head's temporary:
 *   q8_0, AVX-512 VNNI: int32 c[K/4] at byte 0, -128 times the sum of each 4 codes; int8
 *     codes at K; floats e[K/4] at 2K, per pair of blocks d_x of the first 8 times, then
 *     of the second 8 times (one zmm per pair: 64 codes, 16 lanes). vpdpbusd multiplies
 *     unsigned by signed bytes: the weight codes go in as w ^ 0x80 = w + 128, and c, the
 *     accumulator it starts from, takes the 128 * sum(x) back out (exact).
 *   q8_0, AVX2: int8 codes at K; floats d_x[K/32] at 2K. maddubs with the sign trick: |w|
 *     as unsigned (<= 128), x with w's sign (|x| <= 127): pair sums <= 32512, exact.
 *   q6_k, AVX-512 VNNI: int32 c[K/4] at 0, -32 times the sum of each 4 codes (the weight
 *     codes are 0..63 with an offset of 32: unsigned as they are); int8 codes at K; floats
 *     d_x[K/256] at 2K. Lanes times the sub-block scales (vpmulld) stay below 2^24 over a
 *     block, so their float conversion is exact too.
 *   q6_k, AVX2: int8 codes at K; floats d_x[K/256] at 2K; int16 sums of each 16 codes at
 *     3K (the offset of 32 comes off per block as 32 * the scales . those sums). maddubs
 *     pair sums <= 2 * 63 * 127, exact.
 * The one-token call streams each thread's rows in order, one at a time, as the f16 GEMV
 * (349 MB of q8_0 or 269 MB of q6_k per token for the 2B model, against 657 MB of f16). */
typedef struct {
	IrDtype dt;
	const char *guard; /* the #if condition */
	int kmul;          /* K must be a multiple of it */
	int R, T;          /* multi-token tile: R rows x up to T tokens */
	bool zmm;          /* AVX-512 (else AVX2) */
} QIsa;

static const QIsa q_isas[] = {
	{IR_DT_Q8_0, "defined(__AVX512F__) && defined(__AVX512VNNI__)", 64, 4, 4, true},
	{IR_DT_Q8_0, "defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)", 32, 2, 3, false},
	{IR_DT_Q6_K, "defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)", 256,
	 1, 4, true},
	{IR_DT_Q6_K, "defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)", 256, 1, 3, false},
};
enum { N_Q_ISA = sizeof q_isas / sizeof q_isas[0] };

/* The instruction sets with a SIMD path for a head of type dt over rows of k, in #if order. */
static int q_simd(IrDtype dt, int64_t k, const QIsa **simd)
{
	int n = 0;
	for (int i = 0; i < N_Q_ISA; i++)
		if (q_isas[i].dt == dt && k % q_isas[i].kmul == 0)
			simd[n++] = &q_isas[i];
	return n;
}

/* The q8_0 / q6_k head's x preparation (the loop over tokens t, xt, xo around it): codes
 * and scales in the layout of each SIMD path, dequantized floats in the portable one. */
static void head_prep_q(CgBuf *b, IrDtype dt, int64_t k)
{
	const QIsa *simd[N_Q_ISA];
	int ns = q_simd(dt, k, simd);
	bool q8 = dt == IR_DT_Q8_0;
	if (q8)
		cg_printf(b, "\t\tfor (int b = 0; b < K; b += 32) {\n"
			     "\t\t\tfloat amax = 0.0f;\n"
			     "\t\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\t\tamax = fmaxf(amax, fabsf(xt[b + i]));\n"
			     "\t\t\tfloat d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;\n"
			     "\t\t\tfloat dh = round_f16(d);\n");
	else
		cg_printf(b, "\t\tfor (int b = 0; b < K; b += 256) {\n");
	for (int i = 0; i < ns; i++) {
		cg_printf(b, "#%s %s\n"
			     "\t\t\tuint8_t *B = (uint8_t *)xo;\n"
			     "\t\t\tint8_t *q = (int8_t *)(B + K) + b;\n",
			  i ? "elif" : "if", simd[i]->guard);
		if (q8)
			cg_printf(b, "\t\t\tfor (int i = 0; i < 32; i++)\n"
				     "\t\t\t\tq[i] = (int8_t)roundf(xt[b + i] * id);\n");
		else
			cg_printf(b, "\t\t\tquant_q8k_k256(xt + b, q, (float *)(B + 2 * K) + b / 256, 1);\n");
		if (q8 && simd[i]->zmm)
			cg_printf(b, "\t\t\tint32_t *c = (int32_t *)B + b / 4;\n"
				     "\t\t\tfloat *e = (float *)(B + 2 * K) + b / 4;\n"
				     "\t\t\tfor (int l = 0; l < 8; l++) {\n"
				     "\t\t\t\tc[l] = -128 * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);\n"
				     "\t\t\t\te[l] = dh;\n"
				     "\t\t\t}\n");
		else if (q8)
			cg_printf(b, "\t\t\t((float *)(B + 2 * K))[b / 32] = dh;\n");
		else if (simd[i]->zmm)
			cg_printf(b, "\t\t\tint32_t *c = (int32_t *)B + b / 4;\n"
				     "\t\t\tfor (int l = 0; l < 64; l++)\n"
				     "\t\t\t\tc[l] = -32 * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);\n");
		else
			cg_printf(b, "\t\t\tint16_t *bs = (int16_t *)(B + 3 * K) + b / 16;\n"
				     "\t\t\tfor (int j = 0; j < 16; j++) {\n"
				     "\t\t\t\tint s = 0;\n"
				     "\t\t\t\tfor (int i = 0; i < 16; i++)\n"
				     "\t\t\t\t\ts += q[16 * j + i];\n"
				     "\t\t\t\tbs[j] = (int16_t)s;\n"
				     "\t\t\t}\n");
	}
	if (ns)
		cg_printf(b, "#else\n");
	if (q8)
		cg_printf(b, "\t\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\t\txo[b + i] = dh * roundf(xt[b + i] * id);\n");
	else
		cg_printf(b, "\t\t\tint8_t q[256];\n"
			     "\t\t\tfloat d;\n"
			     "\t\t\tquant_q8k_k256(xt + b, q, &d, 1);\n"
			     "\t\t\tfor (int i = 0; i < 256; i++)\n"
			     "\t\t\t\txo[b + i] = d * (float)q[i];\n");
	if (ns)
		cg_printf(b, "#endif\n");
	cg_printf(b, "\t\t}\n");
}

/* A tile's loop over the weight: q8_0 AVX-512, two blocks per step (p). */
static void q8z_loop(CgBuf *b, int64_t k, uint64_t rb, int R, int T)
{
	for (int r = 0; r < R; r++)
		cg_printf(b, "\t\t__m512i w%d = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512("
			     "_mm256_loadu_si256((const __m256i *)(pb + %" PRIu64 "))), "
			     "_mm256_loadu_si256((const __m256i *)(pb + %" PRIu64 ")), 1), x80);\n"
			     "\t\t__m512 d%d = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256("
			     "_mm_set1_epi16((short)rd16(pb + %" PRIu64 "))), "
			     "_mm_set1_epi16((short)rd16(pb + %" PRIu64 ")), 1));\n",
			  r, (uint64_t)r * rb + 2, (uint64_t)r * rb + 36, r, (uint64_t)r * rb,
			  (uint64_t)r * rb + 34);
	for (int t = 0; t < T; t++) {
		cg_printf(b, "\t\t{\n"
			     "\t\t\tconst uint8_t *xt = x + %" PRId64 " + 64 * p;\n"
			     "\t\t\t__m512i c = _mm512_loadu_si512(xt), q = _mm512_loadu_si512(xt + %" PRId64 ");\n"
			     "\t\t\t__m512 e = _mm512_loadu_ps((const float *)(xt + %" PRId64 "));\n",
			  (int64_t)t * 4 * k, k, 2 * k);
		for (int r = 0; r < R; r++)
			cg_printf(b, "\t\t\ts%d_%d = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, w%d, q)), "
				     "_mm512_mul_ps(d%d, e), s%d_%d);\n",
				  r, t, r, r, r, t);
		cg_printf(b, "\t\t}\n");
	}
}

/* q8_0 AVX2: one block per step (b). */
static void q8y_loop(CgBuf *b, int64_t k, uint64_t rb, int R, int T)
{
	for (int r = 0; r < R; r++)
		cg_printf(b, "\t\t__m256i w%d = _mm256_loadu_si256((const __m256i *)(pb + %" PRIu64 "));\n"
			     "\t\t__m256i a%d = _mm256_abs_epi8(w%d);\n"
			     "\t\t__m256 d%d = _mm256_cvtph_ps(_mm_set1_epi16((short)rd16(pb + %" PRIu64 ")));\n",
			  r, (uint64_t)r * rb + 2, r, r, r, (uint64_t)r * rb);
	for (int t = 0; t < T; t++) {
		cg_printf(b, "\t\t{\n"
			     "\t\t\tconst uint8_t *xt = x + %" PRId64 ";\n"
			     "\t\t\t__m256i q = _mm256_loadu_si256((const __m256i *)(xt + %" PRId64 " + 32 * b));\n"
			     "\t\t\t__m256 e = _mm256_broadcast_ss((const float *)(xt + %" PRId64 ") + b);\n",
			  (int64_t)t * 4 * k, k, 2 * k);
		for (int r = 0; r < R; r++)
			cg_printf(b, "\t\t\ts%d_%d = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16("
				     "_mm256_maddubs_epi16(a%d, _mm256_sign_epi8(q, w%d)), ones)), "
				     "_mm256_mul_ps(d%d, e), s%d_%d);\n",
				  r, t, r, r, r, r, t);
		cg_printf(b, "\t\t}\n");
	}
}

/* q6_k AVX-512: one block (b) per step, as 4 zmm of 64 codes in element order: half h
 * (128 elements) from ql[64h..] (low nibbles, then high) and qh[32h..] (bit pairs 0-1 and
 * 2-3, then 4-5 and 6-7, one pair per 256-bit half); the 16 lanes of zmm u hold
 * sub-blocks 4u..4u+3, 4 lanes each. */
static void q6z_loop(CgBuf *b, int64_t k, uint64_t rb, int R, int T)
{
	for (int r = 0; r < R; r++)
		cg_printf(b, "\t\tconst __m512i S%d = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(pb + %" PRIu64 ")));\n"
			     "\t\tconst __m512 d%d = _mm512_cvtph_ps(_mm256_set1_epi16((short)rd16(pb + %" PRIu64 ")));\n",
			  r, (uint64_t)r * rb + 192, r, (uint64_t)r * rb + 208);
	for (int r = 0; r < R; r++)
		for (int t = 0; t < T; t++)
			cg_printf(b, "\t\t__m512i i%d_%d = _mm512_setzero_si512();\n", r, t);
	for (int h = 0; h < 2; h++) {
		for (int r = 0; r < R; r++)
			cg_printf(b, "\t\tconst __m512i A%d_%d = _mm512_loadu_si512(pb + %" PRIu64 ");\n"
				     "\t\tconst __m512i H%d_%d = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(pb + %" PRIu64 ")));\n",
				  r, h, (uint64_t)r * rb + 64 * (uint64_t)h, r, h,
				  (uint64_t)r * rb + 128 + 32 * (uint64_t)h);
		for (int u = 0; u < 2; u++) {
			int z = 2 * h + u;
			cg_printf(b, "\t\t{\n");
			for (int r = 0; r < R; r++) {
				char a[64], hx[64];
				snprintf(a, sizeof a, u ? "_mm512_srli_epi16(A%d_%d, 4)" : "A%d_%d", r, h);
				snprintf(hx, sizeof hx, u ? "_mm512_srlv_epi64(H%d_%d, shr)" : "_mm512_sllv_epi64(H%d_%d, shl)",
					 r, h);
				cg_printf(b, "\t\t\tconst __m512i v%d = _mm512_or_si512(_mm512_and_si512(%s, m4), "
					     "_mm512_and_si512(%s, m30));\n"
					     "\t\t\tconst __m512i sc%d = _mm512_permutexvar_epi32(ix%d, S%d);\n",
					  r, a, hx, r, z, r);
			}
			for (int t = 0; t < T; t++) {
				cg_printf(b, "\t\t\t{\n"
					     "\t\t\t\tconst uint8_t *xt = x + %" PRId64 " + 256 * b + %d;\n"
					     "\t\t\t\t__m512i c = _mm512_loadu_si512(xt), q = _mm512_loadu_si512(xt + %" PRId64 ");\n",
					  (int64_t)t * 4 * k, 64 * z, k);
				for (int r = 0; r < R; r++)
					cg_printf(b, "\t\t\t\ti%d_%d = _mm512_add_epi32(i%d_%d, _mm512_mullo_epi32("
						     "_mm512_dpbusd_epi32(c, v%d, q), sc%d));\n",
						  r, t, r, t, r, r);
				cg_printf(b, "\t\t\t}\n");
			}
			cg_printf(b, "\t\t}\n");
		}
	}
	for (int t = 0; t < T; t++) {
		cg_printf(b, "\t\t{\n"
			     "\t\t\tconst __m512 e = _mm512_set1_ps(((const float *)(x + %" PRId64 "))[b]);\n",
			  (int64_t)t * 4 * k + 2 * k);
		for (int r = 0; r < R; r++)
			cg_printf(b, "\t\t\ts%d_%d = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i%d_%d), _mm512_mul_ps(d%d, e), s%d_%d);\n",
				  r, t, r, t, r, r, t);
		cg_printf(b, "\t\t}\n");
	}
}

/* q6_k AVX2: one block (b) per step, as 8 ymm of 32 codes in element order (half h, slot
 * s: elements 128h + 32s..; low nibbles of ql[64h..] for s = 0, 2 or of ql[64h + 32..] for
 * 1, 3, the high nibbles for s >= 2; bit pair s of qh[32h..] moved to bits 4-5), each two
 * sub-blocks (16 int16 lanes of pair sums each, times their scales by vpmaddwd). */
static void q6y_loop(CgBuf *b, int64_t k, uint64_t rb, int R, int T)
{
	for (int r = 0; r < R; r++)
		cg_printf(b, "\t\tconst __m128i S%d = _mm_loadu_si128((const __m128i *)(pb + %" PRIu64 "));\n"
			     "\t\tconst __m256 d%d = _mm256_cvtph_ps(_mm_set1_epi16((short)rd16(pb + %" PRIu64 ")));\n",
			  r, (uint64_t)r * rb + 192, r, (uint64_t)r * rb + 208);
	for (int r = 0; r < R; r++)
		for (int t = 0; t < T; t++)
			cg_printf(b, "\t\t__m256i i%d_%d = _mm256_setzero_si256();\n", r, t);
	for (int h = 0; h < 2; h++) {
		for (int s = 0; s < 4; s++) {
			cg_printf(b, "\t\t{\n");
			for (int r = 0; r < R; r++) {
				uint64_t o = (uint64_t)r * rb;
				char lo[64], hi[64];
				snprintf(lo, sizeof lo, s >= 2 ? "_mm256_srli_epi16(L%d, 4)" : "L%d", r);
				if (s == 2)
					snprintf(hi, sizeof hi, "H%d", r);
				else
					snprintf(hi, sizeof hi, "_mm256_s%sli_epi16(H%d, %d)", s == 3 ? "r" : "l", r,
						 s == 0 ? 4 : 2);
				cg_printf(b, "\t\t\tconst __m256i L%d = _mm256_loadu_si256((const __m256i *)(pb + %" PRIu64 "));\n"
					     "\t\t\tconst __m256i H%d = _mm256_loadu_si256((const __m256i *)(pb + %" PRIu64 "));\n"
					     "\t\t\tconst __m256i v%d = _mm256_or_si256(_mm256_and_si256(%s, m4), "
					     "_mm256_and_si256(%s, m30));\n"
					     "\t\t\tconst __m256i sc%d = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(S%d, sh%d));\n",
					  r, o + 64 * (uint64_t)h + 32 * (uint64_t)(s & 1), r, o + 128 + 32 * (uint64_t)h,
					  r, lo, hi, r, r, 4 * h + s);
			}
			for (int t = 0; t < T; t++) {
				cg_printf(b, "\t\t\t{\n"
					     "\t\t\t\tconst __m256i q = _mm256_loadu_si256((const __m256i *)(x + %" PRId64 " + 256 * b));\n",
					  (int64_t)t * 4 * k + k + 128 * h + 32 * s);
				for (int r = 0; r < R; r++)
					cg_printf(b, "\t\t\t\ti%d_%d = _mm256_add_epi32(i%d_%d, _mm256_madd_epi16("
						     "_mm256_maddubs_epi16(v%d, q), sc%d));\n",
						  r, t, r, t, r, r);
				cg_printf(b, "\t\t\t}\n");
			}
			cg_printf(b, "\t\t}\n");
		}
	}
	for (int t = 0; t < T; t++) {
		cg_printf(b, "\t\t{\n"
			     "\t\t\tconst __m256i bs = _mm256_loadu_si256((const __m256i *)(x + %" PRId64 ") + b);\n"
			     "\t\t\tconst __m256 e = _mm256_broadcast_ss((const float *)(x + %" PRId64 ") + b);\n",
			  (int64_t)t * 4 * k + 3 * k, (int64_t)t * 4 * k + 2 * k);
		for (int r = 0; r < R; r++)
			cg_printf(b, "\t\t\ti%d_%d = _mm256_sub_epi32(i%d_%d, _mm256_slli_epi32(_mm256_madd_epi16("
				     "_mm256_cvtepi8_epi16(S%d), bs), 5));\n"
				     "\t\t\ts%d_%d = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i%d_%d), _mm256_mul_ps(d%d, e), s%d_%d);\n",
				  r, t, r, t, r, r, t, r, t, r, r, t);
		cg_printf(b, "\t\t}\n");
	}
}

/* name_RxT(w, x, y): rows w.. (R of them, rb bytes apart) times prepared tokens x.. (T of
 * them, 4K bytes apart) into y[t * nr + r]. An R-row tile prefetches the next R rows; the
 * one-row stream prefetches Q_AHEAD bytes ahead (rows are contiguous: into the rows after
 * it), which read the 2B q8_0 head ~10% faster than the hardware prefetcher alone. */
enum { Q_AHEAD = 4096 };
static void q_tile(CgBuf *b, const QIsa *s, const char *name, int64_t k, int64_t nr,
		   uint64_t rb, int R, int T)
{
	bool z = s->zmm, q8 = s->dt == IR_DT_Q8_0;
	int step = q8 ? (z ? 68 : 34) : 210; /* weight bytes per loop step */
	cg_printf(b, "static inline void %s_%dx%d(const uint8_t *w, const uint8_t *x, float *y)\n{\n",
		  name, R, T);
	if (q8 && z)
		cg_printf(b, "\tconst __m512i x80 = _mm512_set1_epi8((char)0x80);\n");
	else if (q8)
		cg_printf(b, "\tconst __m256i ones = _mm256_set1_epi16(1);\n");
	else if (z)
		cg_printf(b, "\tconst __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);\n"
			     "\tconst __m512i shl = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);\n"
			     "\tconst __m512i shr = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);\n"
			     "\tconst __m512i ix0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);\n"
			     "\tconst __m512i ix1 = _mm512_add_epi32(ix0, _mm512_set1_epi32(4));\n"
			     "\tconst __m512i ix2 = _mm512_add_epi32(ix0, _mm512_set1_epi32(8));\n"
			     "\tconst __m512i ix3 = _mm512_add_epi32(ix0, _mm512_set1_epi32(12));\n");
	else {
		cg_printf(b, "\tconst __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);\n");
		for (int m = 0; m < 8; m++)
			cg_printf(b, "\tconst __m128i sh%d = _mm_setr_epi8(%d, %d, %d, %d, %d, %d, %d, %d, "
				     "%d, %d, %d, %d, %d, %d, %d, %d);\n",
				  m, 2 * m, 2 * m, 2 * m, 2 * m, 2 * m, 2 * m, 2 * m, 2 * m, 2 * m + 1,
				  2 * m + 1, 2 * m + 1, 2 * m + 1, 2 * m + 1, 2 * m + 1, 2 * m + 1, 2 * m + 1);
	}
	for (int r = 0; r < R; r++) {
		cg_printf(b, "\t%s", z ? "__m512" : "__m256");
		for (int t = 0; t < T; t++)
			cg_printf(b, "%s s%d_%d = %s", t ? "," : "", r, t,
				  z ? "_mm512_setzero_ps()" : "_mm256_setzero_ps()");
		cg_printf(b, ";\n");
	}
	const char *iv = q8 && z ? "p" : "b";
	cg_printf(b, "\tfor (int %s = 0; %s < %" PRId64 "; %s++) {\n"
		     "\t\tconst uint8_t *pb = w + %d * %s;\n",
		  iv, iv, k / (q8 ? (z ? 64 : 32) : 256), iv, step, iv);
	if (R > 1) {
		/* the next R rows, one prefetch per 64 bytes of the step */
		if (step < 64)
			cg_printf(b, "\t\tif ((%s & 1) == 0) {\n", iv);
		for (int r = 0; r < R; r++)
			cg_printf(b, "%s\t\t_mm_prefetch((const char *)(pb + %" PRIu64 "), _MM_HINT_T0);\n",
				  step < 64 ? "\t" : "", (uint64_t)(R + r) * rb);
		if (step < 64)
			cg_printf(b, "\t\t}\n");
	} else {
		for (int o = 0; o == 0 || o + 64 <= step; o += 64) /* about one per 64 bytes */
			cg_printf(b, "\t\t_mm_prefetch((const char *)(pb + %d), _MM_HINT_T0);\n", Q_AHEAD + o);
	}
	if (q8 && z)
		q8z_loop(b, k, rb, R, T);
	else if (q8)
		q8y_loop(b, k, rb, R, T);
	else if (z)
		q6z_loop(b, k, rb, R, T);
	else
		q6y_loop(b, k, rb, R, T);
	cg_printf(b, "\t}\n");
	for (int r = 0; r < R; r++)
		for (int t = 0; t < T; t++)
			cg_printf(b, "\ty[%" PRId64 "] = %s%s(s%d_%d);\n", (int64_t)t * nr + r,
				  z ? "_mm512_reduce_add_ps" : name, z ? "" : "_hsum", r, t);
	cg_printf(b, "}\n\n");
}

/* The tiles of one instruction set, before the kernel: 1x1 and R x 1..T. */
static void q_tiles(CgBuf *b, const QIsa *s, const char *name, int64_t k, int64_t nr,
		    uint64_t rb)
{
	if (!s->zmm)
		cg_printf(b, "static inline float %s_hsum(__m256 v)\n{\n"
			     "\t__m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));\n"
			     "\th = _mm_add_ps(h, _mm_movehl_ps(h, h));\n"
			     "\th = _mm_add_ss(h, _mm_movehdup_ps(h));\n"
			     "\treturn _mm_cvtss_f32(h);\n"
			     "}\n\n",
			  name);
	if (s->R > 1)
		q_tile(b, s, name, k, nr, rb, 1, 1);
	for (int t = 1; t <= s->T; t++)
		q_tile(b, s, name, k, nr, rb, s->R, t);
}

/* The kernel's body for one instruction set: one token streams the chunks of rows a thread
 * takes (share_next) one row at a time; several go through R x T tiles (and their token
 * tails) over groups of R rows that the threads share (the last group may be short:
 * its rows through the 1 x 1). */
static void q_call(CgBuf *b, const QIsa *s, const char *name, const char *deq, int64_t k,
		   uint64_t rb)
{
	int R = s->R, T = s->T;
	cg_printf(b, "\t(void)%s; /* the portable path's row converter */\n"
		     "\tconst uint8_t *x = (const uint8_t *)a->x;\n"
		     "\tif (a->n == 1) {\n"
		     "\t\tShareIt it = share_begin(a->sh, N, %" PRIu64 ", ith, nth);\n"
		     "\t\tfor (int64_t lo, hi; share_next(&it, &lo, &hi);)\n"
		     "\t\t\tfor (int64_t o = lo; o < hi; o++)\n"
		     "\t\t\t\t%s_1x1(a->w + (uint64_t)o * %" PRIu64 ", x, a->y + o);\n"
		     "\t\treturn;\n"
		     "\t}\n"
		     "\tShareIt it = share_begin(a->sh, (N + %d) / %d, %d * %" PRIu64 ", ith, nth);\n"
		     "\tfor (int64_t o, hi; share_next(&it, &o, &hi);) {\n"
		     "\t\to *= %d;\n"
		     "\t\thi = %d * hi < N ? %d * hi : N;\n"
		     "\t\tfor (; o + %d <= hi; o += %d) {\n"
		     "\t\t\tconst uint8_t *w = a->w + (uint64_t)o * %" PRIu64 ";\n"
		     "\t\t\tint t = 0;\n"
		     "\t\t\tfor (; t + %d <= a->n; t += %d)\n"
		     "\t\t\t\t%s_%dx%d(w, x + (int64_t)t * %" PRId64 ", a->y + (int64_t)t * N + o);\n"
		     "\t\t\tswitch (a->n - t) {\n",
		  deq, rb, name, rb, R - 1, R, R, rb, R, R, R, R, R, rb, T, T, name, R, T, 4 * k);
	for (int t = T - 1; t >= 1; t--)
		cg_printf(b, "\t\t\tcase %d:\n"
			     "\t\t\t\t%s_%dx%d(w, x + (int64_t)t * %" PRId64 ", a->y + (int64_t)t * N + o);\n"
			     "\t\t\t\tbreak;\n",
			  t, name, R, t, 4 * k);
	cg_printf(b, "\t\t\tdefault:\n"
		     "\t\t\t\tbreak;\n"
		     "\t\t\t}\n"
		     "\t\t}\n");
	if (R > 1)
		cg_printf(b, "\t\tfor (; o < hi; o++)\n"
			     "\t\t\tfor (int t = 0; t < a->n; t++)\n"
			     "\t\t\t\t%s_1x1(a->w + (uint64_t)o * %" PRIu64 ", x + (int64_t)t * %" PRId64 ", a->y + (int64_t)t * N + o);\n",
			  name, rb, 4 * k);
	cg_printf(b, "\t}\n");
}

/* ---- the RVV head: f16, bf16 and f32 weights, any VLEN ------------------------------------ */

/* The vector extension 1.0 with its intrinsics: the compiler says so (cpu-rvv's -march). */
#define RVV_GUARD "defined(__riscv_vector) && defined(__riscv_v_intrinsic) && __riscv_v_intrinsic >= 12000"

/* name_rw(w, i, vl): vl weights of a row from element i as floats. f16 without the Zvfh
 * conversions (not in rv64gcv): the magnitude's bits moved into float's place and scaled
 * by 2^112, exact for normal and subnormal halves, infinities and NaNs given the largest
 * exponent, then the sign. name_1x1(w, x): one row times one token, a float FMA per lane
 * over the whole steps (VLMAX at run time), lanes summed in order (vfredosum), then the
 * last partial step's products in order: the same bits for a row whatever the token
 * count; VLEN changes the order (~1e-7 relative from the interpreter, as the other SIMD
 * heads). */
static void head_rvv_row(CgBuf *b, const char *name, IrDtype dt, int64_t k)
{
	cg_printf(b, "static inline vfloat32m4_t %s_rw(const uint8_t *w, int64_t i, size_t vl)\n{\n", name);
	if (dt == IR_DT_F32)
		cg_printf(b, "\treturn __riscv_vle32_v_f32m4((const float *)w + i, vl);\n");
	else
		cg_printf(b, "\tvuint32m4_t u = __riscv_vzext_vf2_u32m4(__riscv_vle16_v_u16m2((const uint16_t *)w + i, vl), vl);\n");
	if (dt == IR_DT_BF16)
		cg_printf(b, "\treturn __riscv_vreinterpret_v_u32m4_f32m4(__riscv_vsll_vx_u32m4(u, 16, vl));\n");
	if (dt == IR_DT_F16)
		cg_printf(b, "\tvfloat32m4_t f = __riscv_vfmul_vf_f32m4(__riscv_vreinterpret_v_u32m4_f32m4("
			     "__riscv_vsll_vx_u32m4(__riscv_vand_vx_u32m4(u, 0x7fff, vl), 13, vl)), 0x1p112f, vl);\n"
			     "\tvuint32m4_t m = __riscv_vreinterpret_v_f32m4_u32m4(f);\n"
			     "\tvbool8_t big = __riscv_vmsgeu_vx_u32m4_b8(__riscv_vand_vx_u32m4(u, 0x7c00, vl), 0x7c00, vl);\n"
			     "\tm = __riscv_vor_vx_u32m4_mu(big, m, m, 0x7f800000, vl);\n"
			     "\tm = __riscv_vor_vv_u32m4(m, __riscv_vsll_vx_u32m4(__riscv_vand_vx_u32m4(u, 0x8000, vl), 16, vl), vl);\n"
			     "\treturn __riscv_vreinterpret_v_u32m4_f32m4(m);\n");
	cg_printf(b, "}\n\n"
		     "static inline float %s_1x1(const uint8_t *w, const float *x)\n{\n"
		     "\tenum { K = %" PRId64 " };\n"
		     "\tconst size_t vx = __riscv_vsetvlmax_e32m4();\n"
		     "\tconst int64_t full = K - K %% (int64_t)vx;\n"
		     "\tvfloat32m4_t s = __riscv_vfmv_v_f_f32m4(0.0f, vx);\n"
		     "\tfor (int64_t i = 0; i < full; i += (int64_t)vx)\n"
		     "\t\ts = __riscv_vfmacc_vv_f32m4(s, %s_rw(w, i, vx), __riscv_vle32_v_f32m4(x + i, vx), vx);\n"
		     "\tvfloat32m1_t r = __riscv_vfredosum_vs_f32m4_f32m1(s, __riscv_vfmv_s_f_f32m1(0.0f, 1), vx);\n"
		     "\tif (full < K) {\n"
		     "\t\tconst size_t vl = __riscv_vsetvl_e32m4((size_t)(K - full));\n"
		     "\t\tr = __riscv_vfredosum_vs_f32m4_f32m1(__riscv_vfmul_vv_f32m4(%s_rw(w, full, vl), "
		     "__riscv_vle32_v_f32m4(x + full, vl), vl), r, vl);\n"
		     "\t}\n"
		     "\treturn __riscv_vfmv_f_s_f32m1_f32(r);\n"
		     "}\n\n",
		  name, k, name, name);
}

/* ---- the SVE head: f16, bf16 and f32 weights, any vector length -------------------------- */

/* SVE with the ACLE: the compiler says so (cpu-sve's -march, or -march=native on an SVE
 * host, whose program then checks sve too). */
#define SVE_GUARD "defined(__ARM_FEATURE_SVE)"

/* name_rw(pg, w, i): the weights of a row from element i under pg as floats (f16: ld1h into
 * the low half of each 32-bit lane, fcvt widens exactly; bf16: the bits moved up).
 * name_1x1(w, x): one row times one token, a float FMA per lane, the last step under a
 * svwhilelt predicate (its other lanes keep their sums), the lanes added by faddv: the same
 * bits for a row whatever the token count; the vector length changes the order (~1e-7
 * relative from the interpreter, as the other SIMD heads). */
static void head_sve_row(CgBuf *b, const char *name, IrDtype dt, int64_t k)
{
	cg_printf(b, "static inline svfloat32_t %s_rw(svbool_t pg, const uint8_t *w, int64_t i)\n{\n",
		  name);
	if (dt == IR_DT_F32)
		cg_printf(b, "\treturn svld1_f32(pg, (const float *)w + i);\n");
	else if (dt == IR_DT_BF16)
		cg_printf(b, "\treturn svreinterpret_f32_u32(svlsl_n_u32_x(pg, svld1uh_u32(pg, "
			     "(const uint16_t *)w + i), 16));\n");
	else
		cg_printf(b, "\treturn svcvt_f32_f16_x(pg, svreinterpret_f16_u32(svld1uh_u32(pg, "
			     "(const uint16_t *)w + i)));\n");
	cg_printf(b, "}\n\n"
		     "static inline float %s_1x1(const uint8_t *w, const float *x)\n{\n"
		     "\tenum { K = %" PRId64 " };\n"
		     "\tsvfloat32_t s = svdup_n_f32(0.0f);\n"
		     "\tfor (int64_t i = 0; i < K; i += (int64_t)svcntw()) {\n"
		     "\t\tconst svbool_t pg = svwhilelt_b32_s64(i, K);\n"
		     "\t\ts = svmla_f32_m(pg, s, %s_rw(pg, w, i), svld1_f32(pg, x + i));\n"
		     "\t}\n"
		     "\treturn svaddv_f32(svptrue_b32(), s);\n"
		     "}\n\n",
		  name, k, name);
}

/* The float head: nothing is quantized after it, so it may sum in float in any order
 * (~1e-6 relative from the interpreter's double dot). f16/bf16/f32 weights get SIMD paths
 * where the target has AVX-512 or AVX2+F16C+FMA and K fills whole vectors, q8_0 and q6_k
 * weights integer ones (AVX-512 VNNI, AVX2+F16C+FMA; see QIsa); the portable path converts a row
 * to floats, then dots it with each token's x in 16 partial sums. */
static void head_body(CgBuf *b, const char *name, const char *deq, IrDtype dt, int64_t k,
		      int64_t nr)
{
	uint64_t rb = dense_row_bytes(dt, k);
	int n_simd = 0;
	const HeadIsa *simd[sizeof head_isas / sizeof head_isas[0]];
	for (size_t i = 0; i < sizeof head_isas / sizeof head_isas[0]; i++)
		if (head_simd_type(dt) && k % head_isas[i].vw == 0)
			simd[n_simd++] = &head_isas[i];
	const QIsa *q8[N_Q_ISA];
	int n_q8 = q_simd(dt, k, q8);
	for (int i = 0; i < n_simd; i++) {
		cg_printf(b, "#%s %s\n#include <%s>\n\n", i ? "elif" : "if", simd[i]->guard,
			  simd[i]->header);
		head_simd_tiles(b, simd[i], name, dt, k, nr, rb);
	}
	for (int i = 0; i < n_q8; i++) {
		cg_printf(b, "#%s %s\n#include <immintrin.h>\n\n", i ? "elif" : "if", q8[i]->guard);
		q_tiles(b, q8[i], name, k, nr, rb);
	}
	bool rvv = head_simd_type(dt); /* any K: the last step may be partial */
	if (rvv) {
		cg_printf(b, "#%s %s\n#include <riscv_vector.h>\n\n", n_simd || n_q8 ? "elif" : "if",
			  RVV_GUARD);
		head_rvv_row(b, name, dt, k);
		cg_printf(b, "#elif %s\n#include <arm_sve.h>\n\n", SVE_GUARD);
		head_sve_row(b, name, dt, k);
	}
	if (n_simd || n_q8 || rvv)
		cg_printf(b, "#endif\n");
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst HeadArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", K16 = K / 16 * 16 };\n"
		     "\tconst int64_t N = %" PRId64 ";\n",
		  name, k, nr);
	for (int i = 0; i < n_simd; i++) {
		cg_printf(b, "#%s %s\n", i ? "elif" : "if", simd[i]->guard);
		head_simd_call(b, simd[i], name, deq, dt, rb);
	}
	for (int i = 0; i < n_q8; i++) {
		cg_printf(b, "#%s %s\n", i ? "elif" : "if", q8[i]->guard);
		q_call(b, q8[i], name, deq, k, rb);
	}
	/* RVV and SVE: each row's name_1x1, the thread's share of rows in order */
	static const char *const vla_guards[] = {RVV_GUARD, SVE_GUARD};
	for (int i = 0; rvv && i < 2; i++)
		cg_printf(b, "#%s %s\n"
			     "\t(void)%s; /* the portable path's row converter */\n"
			     "\tint64_t lo = N * ith / nth, hi = N * (ith + 1) / nth;\n"
			     "\tfor (int64_t o = lo; o < hi; o++)\n"
			     "\t\tfor (int t = 0; t < a->n; t++)\n"
			     "\t\t\ta->y[(int64_t)t * N + o] = %s_1x1(a->w + (uint64_t)o * %" PRIu64 ", a->x + (int64_t)t * K);\n",
			  i || n_simd || n_q8 ? "elif" : "if", vla_guards[i], deq, name, rb);
	if (n_simd || n_q8 || rvv)
		cg_printf(b, "#else\n");
	cg_printf(b, "\tfloat wr[K];\n"
		     "\tint64_t lo = N * ith / nth, hi = N * (ith + 1) / nth;\n"
		     "\tfor (int64_t o = lo; o < hi; o++) {\n"
		     "\t\t%s(a->w + (uint64_t)o * %" PRIu64 ", wr);\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tconst float *x = a->x + (int64_t)t * K;\n"
		     "\t\t\tfloat p[16] = {0};\n"
		     "\t\t\tfor (int i = 0; i < K16; i += 16)\n"
		     "\t\t\t\tfor (int l = 0; l < 16; l++)\n"
		     "\t\t\t\t\tp[l] += wr[i + l] * x[i + l];\n"
		     "\t\t\tfloat s = 0.0f;\n"
		     "\t\t\tfor (int i = K16; i < K; i++)\n"
		     "\t\t\t\ts += wr[i] * x[i];\n"
		     "\t\t\tfor (int l = 0; l < 16; l++)\n"
		     "\t\t\t\ts += p[l];\n"
		     "\t\t\ta->y[(int64_t)t * N + o] = s;\n"
		     "\t\t}\n"
		     "\t}\n",
		  deq, rb);
	if (n_simd || n_q8 || rvv)
		cg_printf(b, "#endif\n");
	cg_printf(b, "}\n");
	if (!n_simd)
		return;
	/* One row of x (the GEMV): each chunk of rows a thread takes (share_next) in four
	 * quarters, streamed in order side by side (1x1s4: four chains of FMAs; one chain, row
	 * by row, was latency-bound and the 4 x 1 tile's rows, 5 KB apart, read side by side,
	 * both ~30% slower), the rest through the 1 x 1; each row summed as the tiles sum it,
	 * so the same bits. */
	cg_printf(b, "\n/* one row of x */\n"
		     "static void %s_gemv(void *arg, int ith, int nth)\n{\n", name);
	for (int i = 0; i < n_simd; i++)
		cg_printf(b, "#%s %s\n"
			     "\tconst HeadArg *a = arg;\n"
			     "\tconst int64_t N = %" PRId64 ";\n"
			     "\tShareIt it = share_begin(a->sh, N, %" PRIu64 ", ith, nth);\n"
			     "\tfor (int64_t lo, hi; share_next(&it, &lo, &hi);) {\n"
			     "\t\tint64_t q = (hi - lo) / 4;\n"
			     "\t\tfor (int64_t o = lo; o < lo + q; o++)\n"
			     "\t\t\t%s_1x1s4(a->w + (uint64_t)o * %" PRIu64 ", (uint64_t)q * %" PRIu64 ", a->x, a->y + o, q);\n"
			     "\t\tfor (int64_t o = lo + 4 * q; o < hi; o++)\n"
			     "\t\t\t%s_1x1(a->w + (uint64_t)o * %" PRIu64 ", a->x, a->y + o);\n"
			     "\t}\n",
			  i ? "elif" : "if", simd[i]->guard, nr, rb, name, rb, rb, name, rb);
	cg_printf(b, "#else\n"
		     "\t%s(arg, ith, nth);\n"
		     "#endif\n"
		     "}\n",
		  name);
}

/* Whether head_body emits name_gemv (the SIMD paths of f16, bf16 and f32 weights). */
static bool head_has_gemv(IrDtype dt, int64_t k)
{
	for (size_t i = 0; i < sizeof head_isas / sizeof head_isas[0]; i++)
		if (head_simd_type(dt) && k % head_isas[i].vw == 0)
			return true;
	return false;
}

int emit_matmul(Em *m, const IrNode *n)
{
	const IrValue *w = V(m, n->in[1]);
	int64_t k = w->ne[0], nr = w->ne[1];
	if (w->kind != IR_VAL_CONST || !dense_ok(w->dtype, k))
		return unsupported(m, n, "the weight must be a constant f32/f16/bf16/q8_0/q6_k");
	if (n->out[0] != m->g->logits)
		return unsupported(m, n, "a float matmul is only supported as the output head");
	char deq[64], prep[96], name[96], x[64];
	if (emit_deq(m, w->dtype, k, deq, sizeof deq))
		return m->e->code;
	if (w->dtype == IR_DT_Q6_K) { /* its x preparation is the Q8_K quantizer */
		CgBuf *qb;
		if (kern_for(m, n, "quant_q8k_k256", &qb))
			return m->e->code;
		if (qb)
			q8k_body(qb, "quant_q8k_k256", 256);
	}
	snprintf(prep, sizeof prep, "head_prep_%s_k%" PRId64, ir_dtype_name(w->dtype), k);
	CgBuf *b;
	if (kern_for(m, n, prep, &b))
		return m->e->code;
	if (b)
		head_prep_body(b, prep, w->dtype, k);
	snprintf(name, sizeof name, "head_%s_k%" PRId64 "_n%" PRId64, ir_dtype_name(w->dtype), k, nr);
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (b)
		head_body(b, name, deq, w->dtype, k, nr);
	/* without a logits buffer nothing reads the head: skip the largest matmul. The rows
	 * b->out asks for alone (all: none in b->out), each prepared in its own mode (b->step;
	 * without it, the step mode in a one-row call): the same kernel for any row count */
	cg_printf(m->fwd, "\tif (logits) {\n"
			  "\t\tconst float *x = %s;\n"
			  "\t\tfloat *xr = (float *)(S + %" PRIu64 ");\n"
			  "\t\tint rows = b->out ? b->n_out : n;\n"
			  "\t\tfor (int r = 0; r < rows; r++) {\n"
			  "\t\t\tint t = b->out ? b->out[r] : r;\n"
			  "\t\t\t%s(x + (int64_t)t * %" PRId64 ", xr + (int64_t)r * %" PRId64 ", 1, b->step ? b->step[t] != 0 : n == 1);\n"
			  "\t\t}\n"
			  "\t\tHeadArg a = {W + %" PRIu64 ", xr, logits, rows, share_reset(&sh[0])};\n"
			  "\t\tif (rows > 0)\n"
			  "\t\t\tpool_run(st, %s%s%s%s, &a);\n"
			  "\t}\n",
		  ref(m, n->in[0], "float", x, sizeof x), m->tmp[n - m->g->nodes], prep, k, k,
		  m->woff[n->in[1]], head_has_gemv(w->dtype, k) ? "rows == 1 ? " : "", name,
		  head_has_gemv(w->dtype, k) ? "_gemv : " : "", head_has_gemv(w->dtype, k) ? name : "");
	return 0;
}
