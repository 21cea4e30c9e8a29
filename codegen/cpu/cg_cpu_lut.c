/* cg_cpu_lut.c - table-lookup (LUT) kernels for I2_S weights in the i2s_x16 layout.
 *
 * Instead of multiplying each 2-bit code by its activation, a kernel looks the sum of two
 * products up in a table built from the activations once per call and shared by every row:
 * the low nibble of a weight byte 4r + j of chunk c holds the codes of row r at k = 16c + j
 * and 16c + 4 + j, the high nibble those at 16c + 8 + j and 16c + 12 + j, so with
 *     Tlo[j][x] = (x & 3) q[16c + j]     + (x >> 2) q[16c + 4 + j]
 *     Thi[j][x] = (x & 3) q[16c + 8 + j] + (x >> 2) q[16c + 12 + j]      (x = 0..15)
 * a byte b adds Tlo[j][b & 15] + Thi[j][b >> 4] to its row. Index j * 16 + x is a 64-entry
 * lookup: one vpermb (AVX-512 VBMI) or tbl with four registers (NEON) does 64 or 16 bytes.
 * Entries need 16 bits (|T| <= 2 * 3 * 128 = 768), so the SIMD tables hold them as two
 * byte planes, low and high, looked up with the same index and interleaved back into int16
 * (unpack / zip): per chunk (256 B) [lo pair: low bytes, high bytes][hi pair: low, high].
 * The portable kernel keeps int16 entries ([lo pair 64][hi pair 64]).
 *
 * Exactness: the sums are the multiply-add kernels' sum(code * q) in integers, so the
 * result is the same float. An int16 lane gains at most 2 * 768 per chunk, so lanes are
 * widened to int32 every LUT_BLOCK = 20 chunks (30720 < 32767).
 *
 * A call builds each token's table (K * 16 bytes) on the thread's stack, then runs the
 * micro kernel over its row groups; the GEMM loops token tiles outside row groups. */
#include "cg_cpu_em.h"

enum { LUT_BLOCK = 20, LUT_STACK_MAX = 1 << 20 };

static char lut_tag(const CgIsa *isa)
{
	return isa->level == CG_ISA_AVX512 ? 'z' : isa->level == CG_ISA_NEON ? 'n' : 'c';
}

bool cg_lut_available(const CgIsa *isa)
{
	return isa->level == CG_ISA_GENERIC || isa->level == CG_ISA_NEON ||
	       (isa->level == CG_ISA_AVX512 && isa->vbmi);
}

void cg_lut_max_tile(const CgIsa *isa, int *rg, int *tt)
{
	/* accumulators: 4 vectors per (group, token) on AVX-512 (32 zmm), 16 q registers
	 * per group and token on NEON (its tables take 8 more) */
	*rg = isa->level == CG_ISA_AVX512 ? 4 : 1;
	*tt = isa->level == CG_ISA_AVX512 ? 4 : isa->level == CG_ISA_NEON ? 2 : 1;
}

/* The table builder of the family: lut<t>_tab(q, kc, tab) fills kc chunks of 256 bytes. */
static void tab_avx512(CgBuf *b)
{
	/* entry e of half h (entries 32h..32h+31, j = 2h + e / 16, x = e % 16) of pair P:
	 * (x & 3) q[8P + j] + (x >> 2) q[8P + 4 + j] */
	cg_printf(b, "static void lutz_tab(const int8_t *q, int64_t kc, uint8_t *tab)\n{\n");
	for (int v = 0; v < 2; v++) {
		cg_printf(b, "\tstatic const int16_t %s[4][32] = {\n", v ? "ib" : "ia");
		for (int ph = 0; ph < 4; ph++) {
			int P = ph / 2, h = ph % 2;
			cg_printf(b, "\t\t{");
			for (int e = 0; e < 32; e++)
				cg_printf(b, "%s%d", e ? ", " : "", 8 * P + 4 * v + 2 * h + e / 16);
			cg_printf(b, "},\n");
		}
		cg_printf(b, "\t};\n");
	}
	cg_printf(b, "\tstatic const int16_t ca[32] = {");
	for (int e = 0; e < 32; e++)
		cg_printf(b, "%s%d", e ? ", " : "", e % 16 & 3);
	cg_printf(b, "};\n\tstatic const int16_t cb[32] = {");
	for (int e = 0; e < 32; e++)
		cg_printf(b, "%s%d", e ? ", " : "", e % 16 >> 2);
	cg_printf(b, "};\n"
		     "\tconst __m512i xa = _mm512_loadu_si512((const void *)ca);\n"
		     "\tconst __m512i xb = _mm512_loadu_si512((const void *)cb);\n"
		     "\t__m512i pa[4], pb[4];\n"
		     "\tfor (int i = 0; i < 4; i++) {\n"
		     "\t\tpa[i] = _mm512_loadu_si512((const void *)ia[i]);\n"
		     "\t\tpb[i] = _mm512_loadu_si512((const void *)ib[i]);\n"
		     "\t}\n"
		     "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst __m512i q16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + 16 * c))));\n"
		     "\t\tuint8_t *t = tab + 256 * c;\n"
		     "\t\tfor (int i = 0; i < 4; i++) { /* pair i / 2, half i %% 2 */\n"
		     "\t\t\t__m512i v = _mm512_add_epi16(_mm512_mullo_epi16(_mm512_permutexvar_epi16(pa[i], q16), xa),\n"
		     "\t\t\t\t\t\t    _mm512_mullo_epi16(_mm512_permutexvar_epi16(pb[i], q16), xb));\n"
		     "\t\t\tuint8_t *o = t + 128 * (i / 2) + 32 * (i %% 2);\n"
		     "\t\t\t_mm256_storeu_si256((__m256i *)o, _mm512_cvtepi16_epi8(v));\n"
		     "\t\t\t_mm256_storeu_si256((__m256i *)(o + 64), _mm512_cvtepi16_epi8(_mm512_srai_epi16(v, 8)));\n"
		     "\t\t}\n"
		     "\t}\n"
		     "}\n");
}

/* Scalar builders: byte planes (NEON) or int16 entries (portable). */
static void tab_scalar(CgBuf *b, char t)
{
	cg_printf(b, "static void lut%c_tab(const int8_t *q, int64_t kc, uint8_t *tab)\n{\n"
		     "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst int8_t *qc = q + 16 * c;\n"
		     "\t\tfor (int p = 0; p < 2; p++)\n"
		     "\t\t\tfor (int j = 0; j < 4; j++)\n"
		     "\t\t\t\tfor (int x = 0; x < 16; x++) {\n"
		     "\t\t\t\t\tint v = (x & 3) * qc[8 * p + j] + (x >> 2) * qc[8 * p + 4 + j];\n",
		  t);
	if (t == 'c')
		cg_printf(b, "\t\t\t\t\tint16_t e = (int16_t)v;\n"
			     "\t\t\t\t\tmemcpy(tab + 256 * c + 128 * p + 2 * (16 * j + x), &e, sizeof e);\n");
	else
		cg_printf(b, "\t\t\t\t\ttab[256 * c + 128 * p + 16 * j + x] = (uint8_t)(v & 255);\n"
			     "\t\t\t\t\ttab[256 * c + 128 * p + 64 + 16 * j + x] = (uint8_t)((v >> 8) & 255);\n");
	cg_printf(b, "\t\t\t\t}\n"
		     "\t}\n"
		     "}\n");
}

static const char lut_params[] =
	"(const uint8_t *w, int64_t gs, int64_t kc, const uint8_t *tab, int64_t ts,\n"
	"\t\t const int32_t *qs, const float *sc, float wscale, float *y, int64_t N)";

/* AVX-512 VBMI: rg groups x tt tokens; per (group, token) int16 lanes h0/h1 (the unpack
 * low/high halves: rows 4L, 4L+1 / 4L+2, 4L+3 of 128-bit lane L, j = 0..3 each) widened
 * into d0/d1 by vpmaddwd. */
static void mk_lut_avx512(CgBuf *b, const char *name, int rg, int tt)
{
	cg_printf(b, "static inline void %s%s\n{\n"
		     "\tconst __m512i m15 = _mm512_set1_epi8(15), jp = _mm512_set1_epi32(0x30201000);\n"
		     "\tconst __m512i one = _mm512_set1_epi16(1);\n",
		  name, lut_params);
	for (int r = 0; r < rg; r++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\t__m512i d0_%d_%d = _mm512_setzero_si512(), d1_%d_%d = _mm512_setzero_si512();\n",
				  r, t, r, t);
	cg_printf(b, "\tfor (int64_t c0 = 0; c0 < kc; c0 += %d) {\n"
		     "\t\tint64_t ce = kc - c0 < %d ? kc : c0 + %d;\n",
		  LUT_BLOCK, LUT_BLOCK, LUT_BLOCK);
	for (int r = 0; r < rg; r++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\t\t__m512i h0_%d_%d = _mm512_setzero_si512(), h1_%d_%d = _mm512_setzero_si512();\n",
				  r, t, r, t);
	cg_printf(b, "\t\tfor (int64_t c = c0; c < ce; c++) {\n");
	for (int r = 0; r < rg; r++)
		cg_printf(b, "\t\t\tconst __m512i v%d = _mm512_loadu_si512((const void *)(w + %d * gs + 64 * c));\n"
			     "\t\t\tconst __m512i il%d = _mm512_or_si512(_mm512_and_si512(v%d, m15), jp);\n"
			     "\t\t\tconst __m512i ih%d = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v%d, 4), m15), jp);\n",
			  r, r, r, r, r, r);
	for (int t = 0; t < tt; t++) {
		cg_printf(b, "\t\t\t{\n"
			     "\t\t\t\tconst uint8_t *tb = tab + %d * ts + 256 * c;\n"
			     "\t\t\t\tconst __m512i tll = _mm512_loadu_si512((const void *)tb);\n"
			     "\t\t\t\tconst __m512i tlh = _mm512_loadu_si512((const void *)(tb + 64));\n"
			     "\t\t\t\tconst __m512i thl = _mm512_loadu_si512((const void *)(tb + 128));\n"
			     "\t\t\t\tconst __m512i thh = _mm512_loadu_si512((const void *)(tb + 192));\n",
			  t);
		for (int r = 0; r < rg; r++)
			cg_printf(b, "\t\t\t\t{\n"
				     "\t\t\t\t\t__m512i l = _mm512_permutexvar_epi8(il%d, tll), h = _mm512_permutexvar_epi8(il%d, tlh);\n"
				     "\t\t\t\t\th0_%d_%d = _mm512_add_epi16(h0_%d_%d, _mm512_unpacklo_epi8(l, h));\n"
				     "\t\t\t\t\th1_%d_%d = _mm512_add_epi16(h1_%d_%d, _mm512_unpackhi_epi8(l, h));\n"
				     "\t\t\t\t\tl = _mm512_permutexvar_epi8(ih%d, thl);\n"
				     "\t\t\t\t\th = _mm512_permutexvar_epi8(ih%d, thh);\n"
				     "\t\t\t\t\th0_%d_%d = _mm512_add_epi16(h0_%d_%d, _mm512_unpacklo_epi8(l, h));\n"
				     "\t\t\t\t\th1_%d_%d = _mm512_add_epi16(h1_%d_%d, _mm512_unpackhi_epi8(l, h));\n"
				     "\t\t\t\t}\n",
				  r, r, r, t, r, t, r, t, r, t, r, r, r, t, r, t, r, t, r, t);
		cg_printf(b, "\t\t\t}\n");
	}
	cg_printf(b, "\t\t}\n");
	for (int r = 0; r < rg; r++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\t\td0_%d_%d = _mm512_add_epi32(d0_%d_%d, _mm512_madd_epi16(h0_%d_%d, one));\n"
				     "\t\td1_%d_%d = _mm512_add_epi32(d1_%d_%d, _mm512_madd_epi16(h1_%d_%d, one));\n",
				  r, t, r, t, r, t, r, t, r, t, r, t);
	cg_printf(b, "\t}\n");
	/* lane L of d0: rows 4L, 4L, 4L+1, 4L+1 (j pairs); of d1: 4L+2, 4L+2, 4L+3, 4L+3 */
	for (int r = 0; r < rg; r++)
		for (int t = 0; t < tt; t++) {
			char qs[16], sc[16], y[48];
			tmm_epilogue_args(t, 16 * r, qs, sc, y);
			cg_printf(b, "\t{\n"
				     "\t\tconst __m512i s0 = _mm512_add_epi32(d0_%d_%d, _mm512_srli_epi64(d0_%d_%d, 32));\n"
				     "\t\tconst __m512i s1 = _mm512_add_epi32(d1_%d_%d, _mm512_srli_epi64(d1_%d_%d, 32));\n"
				     "\t\tconst __m512i d = _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(s0), _mm512_castsi512_ps(s1), _MM_SHUFFLE(2, 0, 2, 0)));\n",
				  r, t, r, t, r, t, r, t);
			tmm_epilogue_vec(b, CG_ISA_AVX512, "\t\t", "d", qs, sc, y);
			cg_printf(b, "\t}\n");
		}
	cg_printf(b, "}\n");
}

/* NEON: one group, tt tokens; q register v holds rows 4v..4v+3 (j = 0..3 each); zip1/zip2
 * give rows 4v, 4v+1 / 4v+2, 4v+3 as int16, sadalp widens pairs into int32. */
static void mk_lut_neon(CgBuf *b, const char *name, int tt)
{
	cg_printf(b, "static inline void %s%s\n{\n"
		     "\t(void)gs;\n"
		     "\tconst uint8x16_t m15 = vdupq_n_u8(15);\n"
		     "\tconst uint8x16_t jp = vreinterpretq_u8_u32(vdupq_n_u32(0x30201000));\n",
		  name, lut_params);
	for (int t = 0; t < tt; t++)
		for (int v = 0; v < 4; v++)
			cg_printf(b, "\tint32x4_t d0_%d_%d = vdupq_n_s32(0), d1_%d_%d = vdupq_n_s32(0);\n",
				  v, t, v, t);
	cg_printf(b, "\tfor (int64_t c0 = 0; c0 < kc; c0 += %d) {\n"
		     "\t\tint64_t ce = kc - c0 < %d ? kc : c0 + %d;\n",
		  LUT_BLOCK, LUT_BLOCK, LUT_BLOCK);
	for (int t = 0; t < tt; t++)
		for (int v = 0; v < 4; v++)
			cg_printf(b, "\t\tint16x8_t h0_%d_%d = vdupq_n_s16(0), h1_%d_%d = vdupq_n_s16(0);\n",
				  v, t, v, t);
	cg_printf(b, "\t\tfor (int64_t c = c0; c < ce; c++) {\n");
	for (int v = 0; v < 4; v++)
		cg_printf(b, "\t\t\tconst uint8x16_t v%d = vld1q_u8(w + 64 * c + %d);\n", v, 16 * v);
	for (int t = 0; t < tt; t++)
		for (int p = 0; p < 2; p++) {
			cg_printf(b, "\t\t\t{\n"
				     "\t\t\t\tconst uint8_t *tb = tab + %d * ts + 256 * c + %d;\n"
				     "\t\t\t\tuint8x16x4_t tl, th;\n"
				     "\t\t\t\tfor (int i = 0; i < 4; i++) {\n"
				     "\t\t\t\t\ttl.val[i] = vld1q_u8(tb + 16 * i);\n"
				     "\t\t\t\t\tth.val[i] = vld1q_u8(tb + 64 + 16 * i);\n"
				     "\t\t\t\t}\n",
				  t, 128 * p);
			for (int v = 0; v < 4; v++)
				cg_printf(b, "\t\t\t\t{\n"
					     "\t\t\t\t\tconst uint8x16_t ix = vorrq_u8(%s, jp);\n"
					     "\t\t\t\t\tconst uint8x16_t l = vqtbl4q_u8(tl, ix), h = vqtbl4q_u8(th, ix);\n"
					     "\t\t\t\t\th0_%d_%d = vaddq_s16(h0_%d_%d, vreinterpretq_s16_u8(vzip1q_u8(l, h)));\n"
					     "\t\t\t\t\th1_%d_%d = vaddq_s16(h1_%d_%d, vreinterpretq_s16_u8(vzip2q_u8(l, h)));\n"
					     "\t\t\t\t}\n",
					  p ? (v == 0 ? "vshrq_n_u8(v0, 4)" : v == 1 ? "vshrq_n_u8(v1, 4)"
									: v == 2 ? "vshrq_n_u8(v2, 4)"
										 : "vshrq_n_u8(v3, 4)")
					    : (v == 0 ? "vandq_u8(v0, m15)" : v == 1 ? "vandq_u8(v1, m15)"
									: v == 2 ? "vandq_u8(v2, m15)"
										 : "vandq_u8(v3, m15)"),
					  v, t, v, t, v, t, v, t);
			cg_printf(b, "\t\t\t}\n");
		}
	cg_printf(b, "\t\t}\n");
	for (int t = 0; t < tt; t++)
		for (int v = 0; v < 4; v++)
			cg_printf(b, "\t\td0_%d_%d = vpadalq_s16(d0_%d_%d, h0_%d_%d);\n"
				     "\t\td1_%d_%d = vpadalq_s16(d1_%d_%d, h1_%d_%d);\n",
				  v, t, v, t, v, t, v, t, v, t, v, t);
	cg_printf(b, "\t}\n");
	for (int t = 0; t < tt; t++)
		for (int v = 0; v < 4; v++) {
			char acc[64], qs[16], sc[16], y[48];
			snprintf(acc, sizeof acc, "vpaddq_s32(d0_%d_%d, d1_%d_%d)", v, t, v, t);
			tmm_epilogue_args(t, 4 * v, qs, sc, y);
			cg_printf(b, "\t{\n");
			tmm_epilogue_vec(b, CG_ISA_NEON, "\t\t", acc, qs, sc, y);
			cg_printf(b, "\t}\n");
		}
	cg_printf(b, "}\n");
}

/* Portable: one group, one token, int16 entries. */
static void mk_lut_generic(CgBuf *b, const char *name)
{
	cg_printf(b, "static inline void %s%s\n{\n"
		     "\t(void)gs;\n"
		     "\t(void)ts;\n"
		     "\t(void)N;\n"
		     "\tint32_t acc[16] = {0};\n"
		     "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst int16_t *t = (const int16_t *)(const void *)(tab + 256 * c);\n"
		     "\t\tconst uint8_t *wc = w + 64 * c;\n"
		     "\t\tfor (int r = 0; r < 16; r++)\n"
		     "\t\t\tfor (int j = 0; j < 4; j++) {\n"
		     "\t\t\t\tint x = wc[4 * r + j];\n"
		     "\t\t\t\tacc[r] += t[16 * j + (x & 15)] + t[64 + 16 * j + (x >> 4)];\n"
		     "\t\t\t}\n"
		     "\t}\n"
		     "\tfor (int r = 0; r < 16; r++)\n",
		  name, lut_params);
	tmm_epilogue(b, "\t\t", "y[r]", "acc[r]", "qs[0]", "sc[0]");
	cg_printf(b, "}\n");
}

/* The table builder of the family (once). */
static int lut_common(Em *m, const IrNode *n)
{
	char name[32], t = lut_tag(&m->isa);
	snprintf(name, sizeof name, "lut%c_tab", t);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	if (t == 'z')
		tab_avx512(b);
	else
		tab_scalar(b, t);
	return 0;
}

static int lut_micro(Em *m, const IrNode *n, int rg, int tt, char *name, size_t nn)
{
	char t = lut_tag(&m->isa);
	snprintf(name, nn, "lut%c_r%d_t%d", t, rg, tt);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	if (t == 'z')
		mk_lut_avx512(b, name, rg, tt);
	else if (t == 'n')
		mk_lut_neon(b, name, tt);
	else
		mk_lut_generic(b, name);
	return 0;
}

/* The LUT tile of node n: attribute lut_tile {rows, tokens}, else one group and the
 * largest token tile; one token (GEMV) always streams one group (see x16_tile). */
static int lut_tile(Em *m, const IrNode *n, int *rg, int *tt)
{
	int mr, mt;
	cg_lut_max_tile(&m->isa, &mr, &mt);
	*rg = 1;
	*tt = mt;
	const IrAttr *a = ir_attr_find(n, "lut_tile");
	if (a) {
		if (a->type != IR_ATTR_INTS || a->n_ints != 2 || a->ints[0] < 16 || a->ints[0] % 16 ||
		    a->ints[1] < 1 || a->ints[0] / 16 > mr || a->ints[1] > mt ||
		    (a->ints[0] / 16) * a->ints[1] > 4)
			return unsupported(m, n, "attribute lut_tile must be {rows, tokens}: rows a "
						 "multiple of 16, rows/16 x tokens <= 4 (AVX-512: rows <= "
						 "64, tokens <= 4; NEON: rows 16, tokens <= 2; portable: {16, 1})");
		*rg = (int)(a->ints[0] / 16);
		*tt = (int)a->ints[1];
	}
	if (*tt > m->nt)
		*tt = m->nt;
	if (m->nt == 1)
		*rg = 1;
	return 0;
}

int emit_tmm_lut(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn)
{
	if (!cg_lut_available(&m->isa))
		return unsupported(m, n, "no LUT kernel for this target (AVX-512 needs avx512_vbmi; "
					 "AVX2 has none): use kernel \"lut_portable\" or \"simd\"");
	int rg, tt;
	if (lut_tile(m, n, &rg, &tt))
		return m->e->code;
	if ((uint64_t)tt * (uint64_t)k * 16 > LUT_STACK_MAX)
		return unsupported(m, n, "LUT tables for K x tokens exceed the 1 MiB stack budget: "
					 "use a smaller lut_tile or the multiply-add kernel");
	if (lut_common(m, n))
		return m->e->code;
	char t = lut_tag(&m->isa), name[128], mk[64], tb[32];
	snprintf(tb, sizeof tb, "lut%c_tab", t);
	for (int r = 1; r <= rg; r++)
		for (int u = 1; u <= tt; u++)
			if (lut_micro(m, n, r, u, mk, sizeof mk))
				return m->e->code;
	snprintf(name, sizeof name, "tmm_lut%c_k%" PRId64 "_n%" PRId64 "_r%d_t%d", t, k, nr, rg, tt);
	if (driver)
		snprintf(driver, dn, "%s", name);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 ", NG = N / 16, KC = K / 16, RG = %d, TT = %d };\n"
		     "%s"
		     "\t_Alignas(64) int16_t tab16[TT * KC * 128]; /* the tables of a token tile */\n"
		     "\tuint8_t *tab = (uint8_t *)tab16;\n"
		     "\tconst int64_t gs = (int64_t)K * 4, ts = (int64_t)KC * 256;\n"
		     "\tint64_t nu = (NG + RG - 1) / RG;\n"
		     "\tint64_t lo = nu * ith / nth, hi = nu * (ith + 1) / nth;\n"
		     "\tif (lo == hi)\n"
		     "\t\treturn;\n"
		     "\tfor (int t0 = 0; t0 < a->n; t0 += TT) {\n"
		     "\t\tint tt = a->n - t0 < TT ? a->n - t0 : TT;\n"
		     "\t\tfor (int t = 0; t < tt; t++)\n"
		     "\t\t\t%s(a->q + (int64_t)(t0 + t) * K, KC, tab + t * ts);\n"
		     "\t\tfor (int64_t u = lo; u < hi; u++) {\n"
		     "\t\t\tint64_t g = u * RG;\n"
		     "\t\t\tint rg = NG - g < RG ? (int)(NG - g) : RG;\n"
		     "\t\t\tconst uint8_t *w = a->w + g * gs;\n"
		     "\t\t\tfloat *y = a->y + (int64_t)t0 * N + 16 * g;\n"
		     "\t\t\tswitch (rg * 1000 + tt) {\n",
		  name, k, nr, rg, tt, tmm_prologue, tb);
	for (int r = 1; r <= rg; r++)
		for (int u = 1; u <= tt; u++) {
			lut_micro(m, n, r, u, mk, sizeof mk);
			cg_printf(b, "\t\t\tcase %d: %s(w, gs, KC, tab, ts, qsum + t0, a->s + t0, wscale, y, N); break;\n",
				  r * 1000 + u, mk);
		}
	cg_printf(b, "\t\t\t}\n"
		     "\t\t}\n"
		     "\t}\n"
		     "}\n");
	return 0;
}
