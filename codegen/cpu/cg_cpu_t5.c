/* cg_cpu_t5.c - multiply-add kernels for I2_S weights in the t5_x16 layout (ir.h: 5 trits
 * per byte, 16 rows interleaved): the one-token GEMV and the GEMM of the batch templates,
 * for AVX-512 VNNI, AVX2 (AVX-VNNI or maddubs) and portable C. No LUT, AMX or NEON kernel
 * reads this layout: those are refused here with a message naming the layout.
 *
 * A 64-byte chunk holds 20 k of 16 rows; its trit i (i = 0..4) is a [16 rows][4 k] byte
 * tile, the operand order of vpdpbusd as a shift of an i2s_x16 chunk is, so the micro
 * kernels are the i2s_x16 ones with the shift-and-mask replaced by the trit's unpacking:
 *   x_0 = the byte, x_{i+1} = 3 x_i mod 256 (two byte adds), t_i = (x_i >= 86) + (x_i >= 171)
 * which is TQ1_0's "top of 3 x_i" (ir_layout.c stores ceil(q * 256 / 243)) without a byte
 * multiply (x86 has none) and exactly: two unsigned byte compares into masks and a masked
 * move and blend (AVX-512), or with x ^ 0x80 (a progression of its own: 3 * 128 = 128 mod
 * 256) two signed byte compares and two subtractions (AVX2, which has no unsigned byte
 * compare). That is 6 vector operations per trit against i2s_x16's 2 per shift, for 1.25x
 * the weights per byte, which the GEMM (bound by arithmetic) pays: it is slower than
 * i2s_x16's (README "Speed"). The AVX-512 one-token GEMV skips the codes altogether
 * (t5_avx512_gemv: two vpdpbusd on the raw bytes per trit), so it does about the work of
 * i2s_x16's per weight and reads 20% fewer bytes. A plain base-3 byte (q itself) would need a division by 3 per trit. A byte table
 * (vpermb on x_i >> 2, vpermi2b on x_i >> 1, with or without an offset added first)
 * cannot replace the compares: the code changes between 170 and 171 (and 85 and 86),
 * values that both occur, so no table of 64 or 128 entries decodes every byte. */
#include "cg_cpu_em.h"

static const char t5_params[] =
	"(const uint8_t *w, int64_t gs, int64_t kc, const int8_t *q, int64_t K,\n"
	"\t\t const int32_t *qs, const float *sc, float wscale, float *y, int64_t N)";

/* Family prefix per ISA: z (AVX-512 VNNI), v (AVX-VNNI), y (AVX2 maddubs), c (portable). */
static char t5_tag(const CgIsa *isa)
{
	return isa->level == CG_ISA_AVX512 ? 'z'
	       : isa->level == CG_ISA_AVX2 ? (isa->vnni ? 'v' : 'y')
					   : 'c';
}

/* One chunk (c, qc, loaded v<r>) of the AVX-512 micro kernel: trits 0..4, those from
 * "tl" on skipped when guarded (the last chunk of a K that is not a multiple of 20). */
static void t5_chunk_avx512(CgBuf *b, int rg, int tt, int na, bool guarded)
{
	for (int i = 0; i < 5; i++) {
		cg_printf(b, guarded && i ? "\t\tif (tl > %d) {\n" : "\t\t{ /* trit %d */\n", i);
		for (int r = 0; r < rg && i; r++)
			cg_printf(b, "\t\t\tv%d = _mm512_add_epi8(v%d, _mm512_add_epi8(v%d, v%d));\n", r,
				  r, r, r);
		for (int r = 0; r < rg; r++)
			cg_printf(b, "\t\t\tconst __m512i c%d = _mm512_mask_blend_epi8(_mm512_cmpge_epu8_mask(v%d, l171), _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(v%d, l86), one), two);\n",
				  r, r, r);
		for (int t = 0; t < tt; t++) {
			cg_printf(b, "\t\t\tconst __m512i b%d = _mm512_set1_epi32(ld_i32(qc + %d * K + %d));\n",
				  t, t, 4 * i);
			for (int r = 0; r < rg; r++) {
				int ai = tt == 1 ? i % na : t;
				cg_printf(b, "\t\t\ta%d_%d = _mm512_dpbusd_epi32(a%d_%d, c%d, b%d);\n", r, ai,
					  r, ai, r, t);
			}
		}
		cg_printf(b, "\t\t}\n");
	}
}

/* The loop over a group's chunks: the full ones, then the last with its tl trits; load
 * emits the loads of chunk c (qc set), chunk the chunk's trits. */
static void t5_loop(CgBuf *b, int rg, int tt, int na, bool vnni,
		    void (*load)(CgBuf *, int),
		    void (*chunk)(CgBuf *, int, int, int, bool, bool))
{
	cg_printf(b, "\tconst int64_t kf = kc - 1; /* full chunks; the last has tl trits */\n"
		     "\tconst int tl = (int)((K - 20 * kf) / 4);\n"
		     "\tfor (int64_t c = 0; c < kf; c++) {\n"
		     "\t\tconst int8_t *qc = q + 20 * c;\n");
	load(b, rg);
	chunk(b, rg, tt, na, false, vnni);
	cg_printf(b, "\t}\n"
		     "\t{\n"
		     "\t\tconst int64_t c = kf;\n"
		     "\t\tconst int8_t *qc = q + 20 * c;\n");
	load(b, rg);
	chunk(b, rg, tt, na, true, vnni);
	cg_printf(b, "\t}\n");
}

static void load_avx512(CgBuf *b, int rg)
{
	for (int r = 0; r < rg; r++)
		cg_printf(b, "\t\t__m512i v%d = _mm512_loadu_si512((const void *)(w + %d * gs + 64 * c));\n",
			  r, r);
}

static void chunk_avx512(CgBuf *b, int rg, int tt, int na, bool guarded, bool vnni)
{
	(void)vnni;
	t5_chunk_avx512(b, rg, tt, na, guarded);
}

/* AVX-512 VNNI micro kernel: rg groups x tt tokens. */
static void t5_avx512(CgBuf *b, const char *name, int rg, int tt)
{
	/* one token: five chains (one per trit) so the adds do not wait on each other */
	int na = tt == 1 ? (rg <= 3 ? 5 : 1) : tt;
	cg_printf(b, "static inline void %s%s\n{\n", name, t5_params);
	for (int r = 0; r < rg; r++)
		for (int i = 0; i < na; i++)
			cg_printf(b, "\t__m512i a%d_%d = _mm512_setzero_si512();\n", r, i);
	cg_printf(b, "\tconst __m512i one = _mm512_set1_epi8(1), two = _mm512_set1_epi8(2);\n"
		     "\tconst __m512i l86 = _mm512_set1_epi8((char)86), l171 = _mm512_set1_epi8((char)171);\n");
	t5_loop(b, rg, tt, na, true, load_avx512, chunk_avx512);
	if (tt == 1)
		for (int r = 0; r < rg; r++)
			for (int i = 1; i < na; i++)
				cg_printf(b, "\ta%d_0 = _mm512_add_epi32(a%d_0, a%d_%d);\n", r, r, r, i);
	for (int t = 0; t < tt; t++)
		for (int r = 0; r < rg; r++) {
			char acc[32], qs[16], sc[16], y[48];
			snprintf(acc, sizeof acc, "a%d_%d", r, tt == 1 ? 0 : t);
			tmm_epilogue_args(t, 16 * r, qs, sc, y);
			cg_printf(b, "\t{\n");
			tmm_epilogue_vec(b, CG_ISA_AVX512, "\t\t", acc, qs, sc, y);
			cg_printf(b, "\t}\n");
		}
	cg_printf(b, "}\n");
}

/* AVX-512 VNNI one-token micro kernel (rg groups) without the codes: 3 x_i = 256 t_i +
 * x_{i+1} for every byte, so sum_i t_i q_i = (3 sum_i x_i q_i - sum_i x_{i+1} q_i) / 256,
 * exactly. Each trit costs the two adds of x_{i+1} and two vpdpbusd on the raw bytes
 * (x < 256 is vpdpbusd's unsigned operand as it is) instead of the compares, masks and
 * one vpdpbusd: 4 operations per trit instead of 7, close to i2s_x16's 3 per shift. The
 * int32 sums wrap (SIMD adds are modular) but 3A - B = 256 D is exact while |256 D| <
 * 2^31, |D| <= 256 K: K < 32768 (the driver checks). One accumulator pair per trit and
 * group (for rg <= 2) so no vpdpbusd waits on the one before it in the same chunk. */
static void t5_avx512_gemv(CgBuf *b, const char *name, int rg, bool streams)
{
	int na = rg <= 2 ? 5 : 1;
	cg_printf(b, "static inline void %s%s\n{\n", name, streams ? tmm_streams_params : t5_params);
	for (int r = 0; r < rg && streams; r++)
		cg_printf(b, "\tconst uint8_t *w%d = w[%d];\n", r, r);
	for (int r = 0; r < rg; r++)
		for (int i = 0; i < na; i++)
			cg_printf(b, "\t__m512i A%d_%d = _mm512_setzero_si512(), B%d_%d = _mm512_setzero_si512();\n",
				  r, i, r, i);
	cg_printf(b, "\tconst int64_t kf = kc - 1; /* full chunks; the last has tl trits */\n"
		     "\tconst int tl = (int)((K - 20 * kf) / 4);\n");
	for (int last = 0; last < 2; last++) {
		cg_printf(b, last ? "\t{\n\t\tconst int64_t c = kf;\n"
				  : "\tfor (int64_t c = 0; c < kf; c++) {\n");
		cg_printf(b, "\t\tconst int8_t *qc = q + 20 * c;\n");
		for (int r = 0; r < rg && streams; r++)
			cg_printf(b, "\t\t_mm_prefetch((const char *)(w%d + 64 * c + %d), _MM_HINT_T0);\n",
				  r, X16_PFS);
		for (int r = 0; r < rg; r++)
			cg_printf(b, streams ? "\t\t__m512i v%d = _mm512_loadu_si512((const void *)(w%d + 64 * c));\n"
					     : "\t\t__m512i v%d = _mm512_loadu_si512((const void *)(w + %d * gs + 64 * c));\n",
				  r, r);
		int open = 0;
		for (int i = 0; i < 5; i++) {
			int ai = i % na;
			cg_printf(b, "\t\tconst __m512i b%d = _mm512_set1_epi32(ld_i32(qc + %d));\n", i,
				  4 * i);
			for (int r = 0; r < rg; r++)
				cg_printf(b, "\t\tA%d_%d = _mm512_dpbusd_epi32(A%d_%d, v%d, b%d);\n"
					     "\t\tv%d = _mm512_add_epi8(v%d, _mm512_add_epi8(v%d, v%d));\n"
					     "\t\tB%d_%d = _mm512_dpbusd_epi32(B%d_%d, v%d, b%d);\n",
					  r, ai, r, ai, r, i, r, r, r, r, r, ai, r, ai, r, i);
			if (last && i < 4) {
				cg_printf(b, "\t\tif (tl > %d) {\n", i + 1);
				open++;
			}
		}
		for (; open > 0; open--)
			cg_printf(b, "\t\t}\n");
		cg_printf(b, "\t}\n");
	}
	for (int r = 0; r < rg; r++) {
		for (int i = 1; i < na; i++)
			cg_printf(b, "\tA%d_0 = _mm512_add_epi32(A%d_0, A%d_%d);\n"
				     "\tB%d_0 = _mm512_add_epi32(B%d_0, B%d_%d);\n",
				  r, r, r, i, r, r, r, i);
		cg_printf(b, "\tconst __m512i d%d = _mm512_srai_epi32(_mm512_sub_epi32(_mm512_add_epi32(A%d_0, _mm512_add_epi32(A%d_0, A%d_0)), B%d_0), 8);\n",
			  r, r, r, r, r);
		char acc[32], qs[16], sc[16], y[48];
		snprintf(acc, sizeof acc, "d%d", r);
		tmm_epilogue_args(0, 16 * r, qs, sc, y);
		if (streams)
			snprintf(y, sizeof y, "y[%d]", r);
		cg_printf(b, "\t{\n");
		tmm_epilogue_vec(b, CG_ISA_AVX512, "\t\t", acc, qs, sc, y);
		cg_printf(b, "\t}\n");
	}
	cg_printf(b, "}\n");
}

/* AVX2: each group is two ymm halves of 8 rows; the bytes are kept as x ^ 0x80, whose
 * signed value is x - 128, so x >= 86 is x' > -43 and x >= 171 is x' > 42. */
static void load_avx2(CgBuf *b, int rg)
{
	for (int v = 0; v < 2 * rg; v++)
		cg_printf(b, "\t\t__m256i v%d = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + %d * gs + 64 * c + %d)), sgn);\n",
			  v, v / 2, 32 * (v % 2));
}

/* Without VNNI a chunk's maddubs results are summed in int16 h<v>_<t> (5 trits of lanes
 * |c0 q0 + c1 q1| <= 2 x 2 x 128: |.| <= 2560) and widened once per chunk, not per trit. */
static void chunk_avx2(CgBuf *b, int rg, int tt, int na, bool guarded, bool vnni)
{
	int nv = 2 * rg;
	if (!vnni)
		for (int v = 0; v < nv; v++)
			for (int t = 0; t < tt; t++)
				cg_printf(b, "\t\t__m256i h%d_%d = _mm256_setzero_si256();\n", v, t);
	for (int i = 0; i < 5; i++) {
		cg_printf(b, guarded && i ? "\t\tif (tl > %d) {\n" : "\t\t{ /* trit %d */\n", i);
		for (int v = 0; v < nv && i; v++)
			cg_printf(b, "\t\t\tv%d = _mm256_add_epi8(v%d, _mm256_add_epi8(v%d, v%d));\n", v,
				  v, v, v);
		/* code = 1 + (x < 86 ? -1 : 0) - (x >= 171 ? -1 : 0) */
		for (int v = 0; v < nv; v++)
			cg_printf(b, "\t\t\tconst __m256i c%d = _mm256_sub_epi8(_mm256_sub_epi8(_mm256_cmpgt_epi8(l86, v%d), _mm256_cmpgt_epi8(v%d, l171)), m1);\n",
				  v, v, v);
		for (int t = 0; t < tt; t++) {
			cg_printf(b, "\t\t\tconst __m256i b%d = _mm256_set1_epi32(ld_i32(qc + %d * K + %d));\n",
				  t, t, 4 * i);
			for (int v = 0; v < nv; v++) {
				int ai = tt == 1 ? i % na : t;
				if (vnni)
					cg_printf(b, "\t\t\ta%d_%d = _mm256_dpbusd_avx_epi32(a%d_%d, c%d, b%d);\n",
						  v, ai, v, ai, v, t);
				else
					cg_printf(b, "\t\t\th%d_%d = _mm256_add_epi16(h%d_%d, _mm256_maddubs_epi16(c%d, b%d));\n",
						  v, t, v, t, v, t);
			}
		}
		/* each int16 sum pinned after each trit, as cg_cpu_tmm.c's avx2_i16_shift: gcc
		 * otherwise reassociates them (exact either way) and spills */
		for (int v = 0; v < nv && !vnni; v++)
			for (int t = 0; t < tt; t++)
				cg_printf(b, "\t\t\t__asm__(\"\" : \"+x\"(h%d_%d));\n", v, t);
		cg_printf(b, "\t\t}\n");
	}
	if (!vnni)
		for (int v = 0; v < nv; v++)
			for (int t = 0; t < tt; t++)
				cg_printf(b, "\t\ta%d_%d = _mm256_add_epi32(a%d_%d, _mm256_madd_epi16(h%d_%d, ones));\n",
					  v, tt == 1 ? 0 : t, v, tt == 1 ? 0 : t, v, t);
}

/* AVX2 micro kernel (maddubs: codes <= 2, |q| <= 128, no int16 saturation; summed in int16
 * per chunk, chunk_avx2). */
static void t5_avx2(CgBuf *b, const char *name, int rg, int tt, bool vnni)
{
	int na = tt == 1 ? 2 : tt;
	int nv = 2 * rg;
	cg_printf(b, "static inline void %s%s\n{\n", name, t5_params);
	for (int v = 0; v < nv; v++)
		for (int i = 0; i < na; i++)
			cg_printf(b, "\t__m256i a%d_%d = _mm256_setzero_si256();\n", v, i);
	cg_printf(b, "\tconst __m256i sgn = _mm256_set1_epi8((char)0x80), m1 = _mm256_set1_epi8(-1);\n"
		     "\tconst __m256i l86 = _mm256_set1_epi8(-42), l171 = _mm256_set1_epi8(42);\n");
	if (!vnni)
		cg_printf(b, "\tconst __m256i ones = _mm256_set1_epi16(1);\n");
	t5_loop(b, rg, tt, na, vnni, load_avx2, chunk_avx2);
	if (tt == 1)
		for (int v = 0; v < nv; v++)
			cg_printf(b, "\ta%d_0 = _mm256_add_epi32(a%d_0, a%d_1);\n", v, v, v);
	for (int t = 0; t < tt; t++)
		for (int v = 0; v < nv; v++) {
			char acc[32], qs[16], sc[16], y[48];
			snprintf(acc, sizeof acc, "a%d_%d", v, tt == 1 ? 0 : t);
			tmm_epilogue_args(t, 8 * v, qs, sc, y);
			cg_printf(b, "\t{\n");
			tmm_epilogue_vec(b, CG_ISA_AVX2, "\t\t", acc, qs, sc, y);
			cg_printf(b, "\t}\n");
		}
	cg_printf(b, "}\n");
}

/* Portable micro kernel: one group, one token; the code is the top of 3 x (x < 256). */
static void t5_generic(CgBuf *b, const char *name)
{
	cg_printf(b, "static inline void %s%s\n{\n"
		     "\t(void)gs;\n"
		     "\t(void)N;\n"
		     "\tint32_t acc[16] = {0};\n"
		     "\tconst int tl = (int)((K - 20 * (kc - 1)) / 4);\n"
		     "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst uint8_t *wc = w + 64 * c;\n"
		     "\t\tconst int8_t *qc = q + 20 * c;\n"
		     "\t\tconst int ne = c + 1 < kc ? 5 : tl;\n"
		     "\t\tfor (int r = 0; r < 16; r++)\n"
		     "\t\t\tfor (int j = 0; j < 4; j++) {\n"
		     "\t\t\t\tunsigned x = wc[4 * r + j];\n"
		     "\t\t\t\tfor (int i = 0; i < ne; i++) {\n"
		     "\t\t\t\t\tx *= 3;\n"
		     "\t\t\t\t\tacc[r] += (int32_t)(x >> 8) * qc[4 * i + j];\n"
		     "\t\t\t\t\tx &= 255;\n"
		     "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t}\n"
		     "\tfor (int r = 0; r < 16; r++)\n",
		  name, t5_params);
	tmm_epilogue(b, "\t\t", "y[r]", "acc[r]", "qs[0]", "sc[0]");
	cg_printf(b, "}\n");
}

/* Emits (once) the micro kernel for rg groups x tt tokens; name gets its name. */
static int t5_micro(Em *m, const IrNode *n, int64_t k, int rg, int tt, char *name, size_t nn)
{
	bool gemv = m->isa.level == CG_ISA_AVX512 && tt == 1 && k < 32768;
	snprintf(name, nn, "t5%c%s_r%d_t%d", t5_tag(&m->isa), gemv ? "s" : "", rg, tt);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	if (gemv)
		t5_avx512_gemv(b, name, rg, false);
	else if (m->isa.level == CG_ISA_AVX512)
		t5_avx512(b, name, rg, tt);
	else if (m->isa.level == CG_ISA_AVX2)
		t5_avx2(b, name, rg, tt, m->isa.vnni);
	else
		t5_generic(b, name);
	return 0;
}

/* Emits (once) the AVX-512 one-token kernel over ns streams (tmm_streams_path). */
static int t5_stream_micro(Em *m, const IrNode *n, int ns, char *name, size_t nn)
{
	snprintf(name, nn, "t5zs_s%d", ns);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (b)
		t5_avx512_gemv(b, name, ns, true);
	return 0;
}

/* The driver: units of RG groups split over the threads, tokens in tiles of TT; one token
 * on AVX-512 over several streams a thread, as i2s_x16's. */
static int t5_driver(Em *m, const IrNode *n, int64_t k, int64_t nr, int rg_max, int tt_max,
		     char *name, size_t nn)
{
	snprintf(name, nn, "tmm_t5%c_k%" PRId64 "_n%" PRId64 "_r%d_t%d", t5_tag(&m->isa), k, nr,
		 rg_max, tt_max);
	char mk[64];
	/* every micro kernel the driver may call: the last unit and token tile may be short */
	for (int rg = 1; rg <= rg_max; rg++)
		for (int tt = 1; tt <= tt_max; tt++)
			if (t5_micro(m, n, k, rg, tt, mk, sizeof mk))
				return m->e->code;
	bool streams = m->isa.level == CG_ISA_AVX512 && k < 32768;
	if (streams && (t5_stream_micro(m, n, 2, mk, sizeof mk) || t5_stream_micro(m, n, 4, mk, sizeof mk)))
		return m->e->code;
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 ", NG = N / 16, RG = %d, TT = %d };\n"
		     "\tenum { KC = (K + 19) / 20 }; /* 64-byte chunks per group of 16 rows */\n"
		     "\tfloat wscale;\n"
		     "\tmemcpy(&wscale, a->w + (uint64_t)NG * KC * 64, sizeof wscale);\n"
		     "\tint32_t qsum[MAX_BATCH];\n"
		     "\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\tint32_t s = 0;\n"
		     "\t\tfor (int i = 0; i < K; i++)\n"
		     "\t\t\ts += a->q[(int64_t)t * K + i];\n"
		     "\t\tqsum[t] = s;\n"
		     "\t}\n"
		     "\tconst int64_t gs = (int64_t)KC * 64; /* bytes per group */\n",
		  name, k, nr, rg_max, tt_max);
	if (streams)
		tmm_streams_path(b, "KC", "t5zs_r1_t1", "t5zs_s2", "t5zs_s4");
	cg_printf(b, "\tint64_t nu = (NG + RG - 1) / RG;\n"
		     "\tShareIt it = share_begin(a->sh, nu, RG * gs, ith, nth);\n"
		     "\tfor (int64_t lo, hi; share_next(&it, &lo, &hi);) {\n"
		     "\t\tfor (int64_t u = lo; u < hi; u++) {\n"
		     "\t\t\tint64_t g = u * RG;\n"
		     "\t\t\tint rg = NG - g < RG ? (int)(NG - g) : RG;\n"
		     "\t\t\tconst uint8_t *w = a->w + g * gs;\n"
		     "\t\t\tfor (int t0 = 0; t0 < a->n; t0 += TT) {\n"
		     "\t\t\t\tint tt = a->n - t0 < TT ? a->n - t0 : TT;\n"
		     "\t\t\t\tconst int8_t *q = a->q + (int64_t)t0 * K;\n"
		     "\t\t\t\tfloat *y = a->y + (int64_t)t0 * N + 16 * g;\n"
		     "\t\t\t\tswitch (rg * 1000 + tt) {\n");
	for (int rg = 1; rg <= rg_max; rg++)
		for (int tt = 1; tt <= tt_max; tt++) {
			t5_micro(m, n, k, rg, tt, mk, sizeof mk);
			cg_printf(b, "\t\t\t\tcase %d: %s(w, gs, KC, q, K, qsum + t0, a->s + t0, wscale, y, N); break;\n",
				  rg * 1000 + tt, mk);
		}
	cg_printf(b, "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\t}\n"
		     "\t}\n"
		     "}\n");
	return 0;
}

int emit_tmm_t5(Em *m, const IrNode *n, int64_t k, int64_t nr)
{
	const char *kn = cg_tmm_kernel(n, m->nt);
	bool portable = strcmp(kn, "portable") == 0;
	if (!portable && strcmp(kn, "simd") != 0)
		return unsupported(m, n, "layout t5_x16 has multiply-add kernels only: attribute "
					 "kernel must be \"simd\" or \"portable\" (no LUT kernel reads it)");
	if (m->isa.level == CG_ISA_NEON && !portable) {
		char why[200];
		snprintf(why, sizeof why, "layout t5_x16 has no NEON kernel (target %s): use layout "
					  "i2s_x16 there (permute_weights.layout)",
			 m->o && m->o->target ? m->o->target : "?");
		return unsupported(m, n, why);
	}
	if (x16_common(m, n))
		return m->e->code;
	CgIsa keep = m->isa;
	if (portable)
		m->isa = (CgIsa){CG_ISA_GENERIC, false, false, false};
	int rg, tt;
	char drv[160];
	/* the tile as i2s_x16's (attribute tile, else the ISA's default; one group for one
	 * token); the AMX GEMM reads i2s_x16 only, so a target with AMX runs AVX-512 here */
	int rc = x16_tile_of(m, n, &rg, &tt);
	if (!rc)
		rc = t5_driver(m, n, k, nr, rg, tt, drv, sizeof drv);
	m->isa = keep;
	if (rc)
		return rc;
	m->kcount[portable ? CG_KERN_PORTABLE : CG_KERN_SIMD]++;
	tmm_launch(m, n, drv);
	return 0;
}
