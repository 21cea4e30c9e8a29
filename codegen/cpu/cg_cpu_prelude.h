/* cg_cpu_prelude.h - the start of every generated model.c (and of the tuning program):
 * f16/bf16 conversions as ir_quant.c's (round to nearest even), little-endian loads, the
 * f16 table the model's init fills, the non-finite check, the profiled pool and the
 * argument blocks of the threaded kernels. Not included anywhere: the build embeds it into bitnetc
 * (codegen/cpu/embed_sources.cmake), without this comment, as cg_cpu_prelude. */
#include "rt_model.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#if (defined(__F16C__) && defined(__AVX__)) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the weights payload is little-endian; this target is not"
#endif

/* helpers a given model may not need */
#if defined(__GNUC__)
#define MAYBE_UNUSED __attribute__((unused))
#else
#define MAYBE_UNUSED
#endif

MAYBE_UNUSED static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

MAYBE_UNUSED static inline uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

MAYBE_UNUSED static inline float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* exact; written with selects so that loops over it vectorize */
MAYBE_UNUSED static inline float f16_to_f32(uint16_t h)
{
	uint32_t em = h & 0x7fffu;
	uint32_t bits = em >= 0x7c00u ? 0x7f800000u | ((em & 0x3ffu) << 13) : (em << 13) + (112u << 23);
	float f = em < 0x400u ? (float)em * 0x1p-24f : bits_f32(bits);
	return bits_f32(f32_bits(f) | ((uint32_t)(h & 0x8000u) << 16));
}

/* f16 -> f32 for whole rows; filled once per process by the model's init (pthread_once:
 * models or threads opening at once are safe), before any forward runs */
static float f16_table[65536];
MAYBE_UNUSED static pthread_once_t f16_table_once = PTHREAD_ONCE_INIT;

MAYBE_UNUSED static void f16_table_fill(void)
{
	for (uint32_t h = 0; h < 65536; h++)
		f16_table[h] = f16_to_f32((uint16_t)h);
}

MAYBE_UNUSED static inline uint16_t f32_to_f16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
	if (ax >= 0x477ff000u)
		return (uint16_t)(sign | 0x7c00);
	if (ax >= 0x38800000u) {
		uint32_t r = ax - ((uint32_t)(127 - 15) << 23);
		return (uint16_t)(sign | ((r + 0xfffu + ((r >> 13) & 1)) >> 13));
	}
	if (ax <= 0x33000000u)
		return sign;
	uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
	uint32_t shift = 126 - e;
	uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
	if (rem > half || (rem == half && (q & 1)))
		q++;
	return (uint16_t)(sign | q);
}

MAYBE_UNUSED static inline float round_f16(float f)
{
	return f16_to_f32(f32_to_f16(f));
}

/* round_f16 and f32_to_f16 of n floats; with F16C eight at a time (VCVTPS2PH, rounding to
 * nearest even, gives f32_to_f16's bits for each of the 2^32 floats, NaNs included) */
MAYBE_UNUSED static void round_f16_n(const float *x, float *y, int64_t n)
{
	int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
	for (int64_t nv = n / 8 * 8; i < nv; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
#endif
	for (; i < n; i++)
		y[i] = round_f16(x[i]);
}

MAYBE_UNUSED static void f32_to_f16_n(const float *x, uint16_t *y, int64_t n)
{
	int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
	for (int64_t nv = n / 8 * 8; i < nv; i += 8)
		_mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
	for (; i < n; i++)
		y[i] = f32_to_f16(x[i]);
}

/* fmaxf(m, w) for the scores' running max from -INFINITY (a NaN w never wins; of +0 and -0
 * either, which the softmax's w - m does not tell apart), inline: without -ffast-math
 * fmaxf is a call */
MAYBE_UNUSED static inline float max_score(float m, float w)
{
	return w > m ? w : m;
}

/* q.K's 16 float lanes (lane i sums the products of the elements i, i + 16, ...) reduced
 * as the interpreter's op_attention reduces them: lane i plus lane i + 8, then ((l0 + l4) +
 * (l2 + l6)) + ((l1 + l5) + (l3 + l7)); on AVX2 the lanes 0..7 and 8..15 in two vectors */
#if defined(__AVX512F__)
MAYBE_UNUSED static inline float qk_lanes16(__m512 s)
{
	const __m256 r8 = _mm256_add_ps(_mm512_castps512_ps256(s),
					_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
	const __m128 r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps(r8, 1));
	const __m128 r2 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
	return _mm_cvtss_f32(_mm_add_ss(r2, _mm_movehdup_ps(r2)));
}
#endif
/* (the AVX2 kernels' too where the compiler targets AVX-512: a masked native build) */
#if defined(__AVX2__)
MAYBE_UNUSED static inline float qk_lanes8x2(__m256 a, __m256 b)
{
	const __m256 r8 = _mm256_add_ps(a, b);
	const __m128 r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps(r8, 1));
	const __m128 r2 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
	return _mm_cvtss_f32(_mm_add_ss(r2, _mm_movehdup_ps(r2)));
}
#endif

/* The attention's softmax (the interpreter's op_attention, ir_interp.c, computes the same
 * bits; silu_glu below takes its exp too): e[j] = softmax_exp(w[j] - mx), their sum in 8
 * double lanes (j % 8) reduced as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), each
 * e[j] times the float of 1 / sum, rounded to f16 in step mode.
 * softmax_exp(x) is exp(x) through double arithmetic of IEEE's basic operations only
 * (each rounded on its own: -ffp-contract=off; no libm, so no host's expf decides): x
 * clamped to [-150, 89] (a NaN stays), z = x * 16/ln2, k = z rounded to an integer, r = z
 * - k (|r| <= 1/2), 2^(r/16) by its Taylor polynomial of degree 5 (relative error ~1.4e-13),
 * times 2^(k/16) = 2^(k >> 4) * T[k & 15], rounded to float: within an ulp of exp(x) for
 * every float, correctly rounded but where exp(x) lies within ~2^-42 of a midpoint. The
 * AVX-512 and AVX2 versions run the same operations per lane, 8 keys a step. */
MAYBE_UNUSED static const uint64_t softmax_exp_tab[16] = {
	0x3ff0000000000000u, 0x3ff0b5586cf9890fu, 0x3ff172b83c7d517bu, 0x3ff2387a6e756238u,
	0x3ff306fe0a31b715u, 0x3ff3dea64c123422u, 0x3ff4bfdad5362a27u, 0x3ff5ab07dd485429u,
	0x3ff6a09e667f3bcdu, 0x3ff7a11473eb0187u, 0x3ff8ace5422aa0dbu, 0x3ff9c49182a3f090u,
	0x3ffae89f995ad3adu, 0x3ffc199bdd85529cu, 0x3ffd5818dcfba487u, 0x3ffea4afa2a490dau,
};
MAYBE_UNUSED static const double SMX_INVLN2N = 0x1.71547652b82fep+4, SMX_SHIFT = 0x1.8p52,
				 SMX_C1 = 0x1.62e42fefa39efp-5, SMX_C2 = 0x1.ebfbdff82c58fp-11,
				 SMX_C3 = 0x1.c6b08d704a0c0p-17, SMX_C4 = 0x1.3b2ab6fba4e77p-23,
				 SMX_C5 = 0x1.5d87fe78a6731p-30;

MAYBE_UNUSED static inline float softmax_exp(float x)
{
	float xc = x < -150.0f ? -150.0f : x > 89.0f ? 89.0f : x;
	double z = (double)xc * SMX_INVLN2N;
	double kd = z + SMX_SHIFT;
	uint64_t ki, sb;
	memcpy(&ki, &kd, sizeof ki);
	kd = kd - SMX_SHIFT;
	double r = z - kd;
	double p = 1.0 + r * (SMX_C1 + r * (SMX_C2 + r * (SMX_C3 + r * (SMX_C4 + r * SMX_C5))));
	/* the low bits of kd's significand are k (two's complement): T[k & 15] with k >> 4
	 * added to its exponent (the shift drops the bits above k's) */
	sb = softmax_exp_tab[ki & 15] + ((ki >> 4) << 52);
	double s;
	memcpy(&s, &sb, sizeof s);
	return (float)(p * s);
}

#if defined(__AVX512F__)
/* softmax_exp of 8 floats, in doubles */
MAYBE_UNUSED static inline __m256 softmax_exp8z(__m256 x, __m512d tlo, __m512d thi)
{
	x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-150.0f), x));
	const __m512d z = _mm512_mul_pd(_mm512_cvtps_pd(x), _mm512_set1_pd(SMX_INVLN2N));
	__m512d kd = _mm512_add_pd(z, _mm512_set1_pd(SMX_SHIFT));
	const __m512i ki = _mm512_castpd_si512(kd);
	kd = _mm512_sub_pd(kd, _mm512_set1_pd(SMX_SHIFT));
	const __m512d r = _mm512_sub_pd(z, kd);
	__m512d p = _mm512_add_pd(_mm512_set1_pd(SMX_C4), _mm512_mul_pd(r, _mm512_set1_pd(SMX_C5)));
	p = _mm512_add_pd(_mm512_set1_pd(SMX_C3), _mm512_mul_pd(r, p));
	p = _mm512_add_pd(_mm512_set1_pd(SMX_C2), _mm512_mul_pd(r, p));
	p = _mm512_add_pd(_mm512_set1_pd(SMX_C1), _mm512_mul_pd(r, p));
	p = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_mul_pd(r, p));
	const __m512i t = _mm512_castpd_si512(_mm512_permutex2var_pd(tlo, ki, thi));
	const __m512i sb = _mm512_add_epi64(t, _mm512_slli_epi64(_mm512_srli_epi64(ki, 4), 52));
	return _mm512_cvtpd_ps(_mm512_mul_pd(p, _mm512_castsi512_pd(sb)));
}
#elif defined(__AVX2__)
/* softmax_exp of 4 floats, in doubles */
MAYBE_UNUSED static inline __m128 softmax_exp4y(__m128 x)
{
	x = _mm_min_ps(_mm_set1_ps(89.0f), _mm_max_ps(_mm_set1_ps(-150.0f), x));
	const __m256d z = _mm256_mul_pd(_mm256_cvtps_pd(x), _mm256_set1_pd(SMX_INVLN2N));
	__m256d kd = _mm256_add_pd(z, _mm256_set1_pd(SMX_SHIFT));
	const __m256i ki = _mm256_castpd_si256(kd);
	kd = _mm256_sub_pd(kd, _mm256_set1_pd(SMX_SHIFT));
	const __m256d r = _mm256_sub_pd(z, kd);
	__m256d p = _mm256_add_pd(_mm256_set1_pd(SMX_C4), _mm256_mul_pd(r, _mm256_set1_pd(SMX_C5)));
	p = _mm256_add_pd(_mm256_set1_pd(SMX_C3), _mm256_mul_pd(r, p));
	p = _mm256_add_pd(_mm256_set1_pd(SMX_C2), _mm256_mul_pd(r, p));
	p = _mm256_add_pd(_mm256_set1_pd(SMX_C1), _mm256_mul_pd(r, p));
	p = _mm256_add_pd(_mm256_set1_pd(1.0), _mm256_mul_pd(r, p));
	const __m256i t = _mm256_i64gather_epi64((const long long *)softmax_exp_tab,
						 _mm256_and_si256(ki, _mm256_set1_epi64x(15)), 8);
	const __m256i sb = _mm256_add_epi64(t, _mm256_slli_epi64(_mm256_srli_epi64(ki, 4), 52));
	return _mm256_cvtpd_ps(_mm256_mul_pd(p, _mm256_castsi256_pd(sb)));
}
#endif

/* the softmax of a row of n scores whose max is mx, in place (above) */
MAYBE_UNUSED static void softmax_row(float *w, int64_t n, float mx, int step)
{
	int64_t j = 0;
	double sum;
#if defined(__AVX512F__)
	const __m512d tlo = _mm512_loadu_pd((const double *)softmax_exp_tab);
	const __m512d thi = _mm512_loadu_pd((const double *)softmax_exp_tab + 8);
	const __m256 m = _mm256_set1_ps(mx);
	__m512d l = _mm512_setzero_pd();
	for (; j + 8 <= n; j += 8) {
		const __m256 e = softmax_exp8z(_mm256_sub_ps(_mm256_loadu_ps(w + j), m), tlo, thi);
		_mm256_storeu_ps(w + j, e);
		l = _mm512_add_pd(l, _mm512_cvtps_pd(e));
	}
	if (j < n) {
		const __mmask8 k = (__mmask8)((1u << (n - j)) - 1);
		const __m256 e = softmax_exp8z(_mm256_sub_ps(_mm256_maskz_loadu_ps(k, w + j), m), tlo, thi);
		_mm256_mask_storeu_ps(w + j, k, e);
		l = _mm512_mask_add_pd(l, k, l, _mm512_cvtps_pd(e));
		j = n;
	}
	__m256d l4 = _mm256_add_pd(_mm512_castpd512_pd256(l), _mm512_extractf64x4_pd(l, 1));
	__m128d l2 = _mm_add_pd(_mm256_castpd256_pd128(l4), _mm256_extractf128_pd(l4, 1));
	sum = _mm_cvtsd_f64(l2) + _mm_cvtsd_f64(_mm_unpackhi_pd(l2, l2));
#else
	double l[8] = {0};
#if defined(__AVX2__)
	__m256d la = _mm256_setzero_pd(), lb = la;
	const __m128 m = _mm_set1_ps(mx);
	for (; j + 8 <= n; j += 8) {
		const __m128 ea = softmax_exp4y(_mm_sub_ps(_mm_loadu_ps(w + j), m));
		const __m128 eb = softmax_exp4y(_mm_sub_ps(_mm_loadu_ps(w + j + 4), m));
		_mm_storeu_ps(w + j, ea);
		_mm_storeu_ps(w + j + 4, eb);
		la = _mm256_add_pd(la, _mm256_cvtps_pd(ea));
		lb = _mm256_add_pd(lb, _mm256_cvtps_pd(eb));
	}
	_mm256_storeu_pd(l, la);
	_mm256_storeu_pd(l + 4, lb);
#endif
	for (; j < n; j++) {
		w[j] = softmax_exp(w[j] - mx);
		l[j % 8] += (double)w[j];
	}
	sum = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
#endif
	const float inv = (float)(1.0 / sum);
	for (j = 0; j < n; j++)
		w[j] = w[j] * inv;
	if (step)
		round_f16_n(w, w, n);
}

/* The SiLU GLU of n elements, y = g / (1 + softmax_exp(-g)) * u, each operation in float
 * rounded on its own (the interpreter's op_glu): 16 elements a step on AVX-512, 8 on AVX2,
 * the same operations per lane, so the same bits as the scalar loop. */
MAYBE_UNUSED static void silu_glu(const float *g, const float *u, float *y, int64_t n)
{
	int64_t i = 0;
#if defined(__AVX512F__)
	const __m512d tlo = _mm512_loadu_pd((const double *)softmax_exp_tab);
	const __m512d thi = _mm512_loadu_pd((const double *)softmax_exp_tab + 8);
	for (; i + 16 <= n; i += 16) {
		const __m512 gv = _mm512_loadu_ps(g + i);
		const __m512d ng = _mm512_castsi512_pd(
			_mm512_xor_si512(_mm512_castps_si512(gv), _mm512_set1_epi32(INT32_MIN)));
		const __m256 elo = softmax_exp8z(_mm256_castpd_ps(_mm512_castpd512_pd256(ng)), tlo, thi);
		const __m256 ehi = softmax_exp8z(_mm256_castpd_ps(_mm512_extractf64x4_pd(ng, 1)), tlo, thi);
		const __m512 e = _mm512_castpd_ps(_mm512_insertf64x4(
			_mm512_castpd256_pd512(_mm256_castps_pd(elo)), _mm256_castps_pd(ehi), 1));
		const __m512 a = _mm512_div_ps(gv, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
		_mm512_storeu_ps(y + i, _mm512_mul_ps(a, _mm512_loadu_ps(u + i)));
	}
#elif defined(__AVX2__)
	for (; i + 8 <= n; i += 8) {
		const __m256 gv = _mm256_loadu_ps(g + i);
		const __m256 ng = _mm256_xor_ps(gv, _mm256_set1_ps(-0.0f));
		const __m128 elo = softmax_exp4y(_mm256_castps256_ps128(ng));
		const __m128 ehi = softmax_exp4y(_mm256_extractf128_ps(ng, 1));
		const __m256 e = _mm256_insertf128_ps(_mm256_castps128_ps256(elo), ehi, 1);
		const __m256 a = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
		_mm256_storeu_ps(y + i, _mm256_mul_ps(a, _mm256_loadu_ps(u + i)));
	}
#endif
	for (; i < n; i++) {
		const float a = g[i] / (1.0f + softmax_exp(-g[i]));
		y[i] = a * u[i];
	}
}

MAYBE_UNUSED static inline float bf16_to_f32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

MAYBE_UNUSED static inline uint16_t f32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 64);
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* 1 if one of n rows of k floats holds a NaN or an infinity (the exponent bits all
 * set), with the first such row and the layer recorded in st: the forward stops there.
 * An integer OR over the bits, so the loop vectorizes and costs k floats per token. */
MAYBE_UNUSED static int nonfinite_rows(RtState *st, const float *x, int64_t k, int n, int layer)
{
	for (int t = 0; t < n; t++) {
		uint32_t bad = 0;
		for (int64_t i = 0; i < k; i++)
			bad |= (f32_bits(x[(int64_t)t * k + i]) & 0x7f800000u) == 0x7f800000u;
		if (bad) {
			st->bad_token = t;
			st->bad_layer = layer;
			return 1;
		}
	}
	return 0;
}

/* Whether this decode is profiled (st->prof: --profile). -DBN_NO_PROFILE compiles the hooks
 * out, the test per kernel call with them, to measure what they cost when off (--profile
 * then times nothing). */
#ifdef BN_NO_PROFILE
#define PROFILED(st) ((void)(st), 0)
#else
#define PROFILED(st) ((st)->prof != NULL)
#endif

/* The pool for the forward's kernels: timed when the decode is profiled (st->prof). */
MAYBE_UNUSED static inline void pool_run(RtState *st, void (*fn)(void *, int, int), void *arg)
{
	if (PROFILED(st))
		rt_pool_run_prof(st->pool, fn, arg, st->prof);
	else
		rt_pool_run(st->pool, fn, arg);
}

/* Several kernels as one launch, without a join between them (their threads write
 * disjoint rows of different outputs): each thread runs its share of each in turn. */
typedef struct {
	void (*fn)(void *, int, int);
	void *arg;
} PoolJob;
typedef struct {
	const PoolJob *job;
	int n;
} PoolJobs;
MAYBE_UNUSED static void pool_jobs(void *arg, int ith, int nth)
{
	const PoolJobs *j = arg;
	for (int i = 0; i < j->n; i++)
		j->job[i].fn(j->job[i].arg, ith, nth);
}
MAYBE_UNUSED static inline void pool_run_jobs(RtState *st, const PoolJob *job, int n)
{
	PoolJobs j = {job, n};
	pool_run(st, pool_jobs, &j);
}

/* A profiled forward is a chain of laps: each gives the time since the last (*t), less the
 * pool's wait in it (the wait total was *w), to family f, so that the families add up to
 * the forward's time. */
MAYBE_UNUSED static void prof_lap(RtState *st, int f, double *t, double *w)
{
	double now = rt_pool_clock(), wait = st->prof->sec[RT_PROF_WAIT];
	st->prof->sec[f] += (now - *t) - (wait - *w);
	st->prof->calls[f]++;
	*t = now;
	*w = wait;
}

/* Work sharing with stealing, for the matmul and head drivers. A job's nu units (groups of
 * rows) are split into L = min(threads, SHARE_LANES) lanes of consecutive units, as the
 * static split would cut them; thread ith takes chunks from the front of lane ith % L in
 * order (one stream from memory), then chunks of the other lanes from where they stand.
 * A thread that runs slower (its memory, an interrupt, a busy core) is helped with the
 * rest of its share instead of waited for: the 2B-4T decode step's pool waits went from
 * 2-3 ms to ~0.5 ms (2 threads, Zen 5). Each lane hands out each of its chunks once (one
 * atomic count per lane, on its own cache line); which thread computes a row does not
 * change its bits. The forward resets a Share per call; a driver called without one
 * (NULL: the tuning program) takes its static share.
 *
 * With ns streams (share_begin_ns, share_next_ns), thread ith owns ns lanes side by side
 * (ns x threads lanes, at most SHARE_LANES: ns shrinks to fit) and takes one chunk of each
 * per call, for a kernel that reads them together, then steals one chunk at a time. The
 * one-token AVX-512 matmuls read 4 such streams per thread: one long stream per core
 * left memory idle (a 2-thread read of 1 GiB through that kernel ran at ~82% of a plain
 * sum's speed, through 4 streams of 256 MiB at ~99%; streams of 40 KiB ran slower than
 * one). */
enum { SHARE_LANES = 8 };
typedef struct {
	struct {
		_Alignas(64) atomic_llong next;
	} lane[SHARE_LANES];
} Share;

MAYBE_UNUSED static inline Share *share_reset(Share *sh)
{
	for (int l = 0; l < SHARE_LANES; l++)
		atomic_init(&sh->lane[l].next, 0);
	return sh;
}

typedef struct {
	Share *sh;
	int64_t nu, cs, lo, hi; /* units, chunk; without sh, the static share [lo, hi) */
	int nl, l0, k;          /* lanes, this thread's first own lane, lanes done */
	int ns;                 /* own lanes (streams) */
	unsigned own;           /* bit j: own lane l0 + j may have chunks left */
} ShareIt;

/* Chunks of about 1/16 of a lane, at least 64 KiB and at most 2 MiB of weights (ub bytes
 * per unit): long enough to stream, short enough that the last one ends the job about
 * together on every thread. */
MAYBE_UNUSED static inline ShareIt share_begin_ns(Share *sh, int64_t nu, int64_t ub, int ith, int nth,
						  int ns)
{
	ShareIt it = {sh, nu, 1, nu * ith / nth, nu * (ith + 1) / nth, 0, 0, 0, 1, 1};
	if (!sh)
		return it;
	if (ns > SHARE_LANES / nth)
		ns = SHARE_LANES / nth;
	it.ns = ns < 1 ? 1 : ns;
	it.own = (1u << it.ns) - 1;
	it.nl = nth * it.ns < SHARE_LANES ? nth * it.ns : SHARE_LANES;
	it.l0 = ith * it.ns % it.nl;
	if (ub < 1)
		ub = 1;
	int64_t lane = (nu + it.nl - 1) / it.nl, lo = ((int64_t)64 << 10) / ub, hi = ((int64_t)2 << 20) / ub;
	int64_t cs = lane / 16;
	if (cs > hi)
		cs = hi;
	if (cs < lo)
		cs = lo;
	it.cs = cs < 1 ? 1 : cs;
	return it;
}

MAYBE_UNUSED static inline ShareIt share_begin(Share *sh, int64_t nu, int64_t ub, int ith, int nth)
{
	return share_begin_ns(sh, nu, ub, ith, nth, 1);
}

/* Lane l's next chunk [*lo, *hi); 0 when it has none left. */
MAYBE_UNUSED static inline int share_take(ShareIt *it, int l, int64_t *lo, int64_t *hi)
{
	int64_t a = it->nu * l / it->nl, b = it->nu * (l + 1) / it->nl;
	int64_t c = atomic_fetch_add_explicit(&it->sh->lane[l].next, 1, memory_order_relaxed);
	if (c >= (b - a + it->cs - 1) / it->cs)
		return 0;
	*lo = a + c * it->cs;
	*hi = b - *lo < it->cs ? b : *lo + it->cs;
	return 1;
}

/* The next chunk [*lo, *hi) of units this thread computes; 0 when the job has none left. */
MAYBE_UNUSED static inline int share_next(ShareIt *it, int64_t *lo, int64_t *hi)
{
	if (!it->sh) {
		if (it->k++ || it->lo >= it->hi)
			return 0;
		*lo = it->lo;
		*hi = it->hi;
		return 1;
	}
	for (; it->k < it->nl; it->k++)
		if (share_take(it, (it->l0 + it->k) % it->nl, lo, hi))
			return 1;
	return 0;
}

/* The next chunks [lo[i], hi[i]) (lo, hi: it->ns entries) this thread computes side by
 * side: one from each own lane that has one left, then (own lanes done) one chunk of
 * another lane at a time; returns how many, 0 when the job has none left. */
MAYBE_UNUSED static inline int share_next_ns(ShareIt *it, int64_t *lo, int64_t *hi)
{
	if (it->sh && it->own) {
		int c = 0;
		for (int j = 0; j < it->ns; j++)
			if (it->own >> j & 1) {
				if (share_take(it, it->l0 + j, lo + c, hi + c))
					c++;
				else
					it->own &= ~(1u << j);
			}
		if (c)
			return c;
		it->k = it->ns; /* lanes l0 .. l0 + ns - 1 are done */
	}
	return share_next(it, lo, hi);
}

/* ternary matmul: int8 codes q [n][K], scales s, weight w -> y [n][N]; sh: the Share of
 * the rows (NULL: static) */
typedef struct {
	const uint8_t *w;
	const int8_t *q;
	const float *s;
	float *y;
	int n;
	Share *sh;
} TmmArg;

/* float head: prepared x [n][K], weight w -> y [n][N]; sh as TmmArg's */
typedef struct {
	const uint8_t *w;
	const float *x;
	float *y;
	int n;
	Share *sh;
} HeadArg;

/* rmsnorm then quantization of n tokens (xn: the normed rows); with r (add_rmsnorm_quant),
 * of x + r, which goes to xs */
typedef struct {
	const float *x, *r, *w;
	float *xs, *xn;
	int8_t *q;
	float *s;
	int n;
	float eps;
} RnqArg;

/* a kernel of n independent rows of ROW floats split over the threads (the glu: a gate, b
 * up; rope: a x, b the frequency factors or NULL, pos, f theta_scale) */
typedef struct {
	const float *a, *b;
	float *y;
	int n;
	const int32_t *pos;
	float f;
} RowsArg;
/* the floats of a row kernel's call (n * ROW) from which it is a pool launch;
 * -DBN_ROWS_PAR_MIN=1 splits every multi-token call (tests) */
#ifndef BN_ROWS_PAR_MIN
#define BN_ROWS_PAR_MIN 16384
#endif

/* how many keys ahead the AVX-512 attention asks for the K and V rows of a call's first
 * row of each sequence (attn_body_zg) */
#ifndef ATTN_PF
#define ATTN_PF 16
#endif

/* attention of n rows, row t at position pos[t] of sequence seq[t] (seq NULL: 0), over
 * the layer's K and V cache ([n_seq][n_ctx] rows each); step[t] nonzero: row t in the step
 * mode (step NULL: iff n == 1) */
typedef struct {
	const float *q;
	const uint16_t *K, *V;
	float *scores;
	float *y;
	int n;
	const int32_t *pos, *seq;
	int64_t n_ctx;
	float scale;
	const int8_t *step;
} AttnArg;
