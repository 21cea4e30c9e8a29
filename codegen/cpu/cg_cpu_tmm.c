/* cg_cpu_tmm.c - ternary matmul kernels (I2_S, TQ1_0, TQ2_0 weights times int8 activations),
 * generated per weight shape and layout. */
#include "cg_cpu_em.h"

static int emit_tmm_x16(Em *m, const IrNode *n, int64_t k, int64_t nr);

const char tmm_prologue[] =
	"\tfloat wscale;\n"
	"\tmemcpy(&wscale, a->w + (uint64_t)K * N / 4, sizeof wscale);\n"
	"\tint32_t qsum[MAX_BATCH];\n"
	"\tfor (int t = 0; t < a->n; t++) {\n"
	"\t\tint32_t s = 0;\n"
	"\t\tfor (int i = 0; i < K; i++)\n"
	"\t\t\ts += a->q[(int64_t)t * K + i];\n"
	"\t\tqsum[t] = s;\n"
	"\t}\n";

/* The float epilogue of every ternary kernel, y = ((float)(D - qsum) / s) * wscale: the int32
 * dot product converted to float (round to nearest), one IEEE single division by the token's
 * activation scale, one multiplication by the weight's scale, in that order, as the
 * interpreter computes it. Its scalar and vector forms are written here only, so that every
 * kernel family gives the same bits. */
void tmm_epilogue(CgBuf *b, const char *ind, const char *y, const char *d, const char *qs,
		  const char *s)
{
	if (qs)
		cg_printf(b, "%s%s = ((float)(%s - %s) / %s) * wscale;\n", ind, y, d, qs, s);
	else
		cg_printf(b, "%s%s = ((float)%s / %s) * wscale;\n", ind, y, d, s);
}

void tmm_epilogue_vec(CgBuf *b, int level, const char *ind, const char *acc, const char *qs,
		      const char *s, const char *y)
{
	/* the vector type; int32 -> float, int32 subtraction, int32 broadcast; float division,
	 * multiplication, broadcast; the unaligned store */
	static const char *const avx512[] = {"__m512", "_mm512_cvtepi32_ps", "_mm512_sub_epi32",
					     "_mm512_set1_epi32", "_mm512_div_ps", "_mm512_mul_ps",
					     "_mm512_set1_ps", "_mm512_storeu_ps"};
	static const char *const avx2[] = {"__m256", "_mm256_cvtepi32_ps", "_mm256_sub_epi32",
					   "_mm256_set1_epi32", "_mm256_div_ps", "_mm256_mul_ps",
					   "_mm256_set1_ps", "_mm256_storeu_ps"};
	static const char *const neon[] = {"float32x4_t", "vcvtq_f32_s32", "vsubq_s32",
					   "vdupq_n_s32", "vdivq_f32", "vmulq_f32", "vdupq_n_f32",
					   "vst1q_f32"};
	const char *const *v = level == CG_ISA_AVX512 ? avx512 : level == CG_ISA_AVX2 ? avx2 : neon;
	cg_printf(b, "%s%s f = %s(%s(%s, %s(%s)));\n"
		     "%sf = %s(%s(f, %s(%s)), %s(wscale));\n"
		     "%s%s(%s, f);\n",
		  ind, v[0], v[1], v[2], acc, v[3], qs,
		  ind, v[5], v[4], v[6], s, v[6],
		  ind, v[7], y);
}

void tmm_epilogue_args(int t, int row, char qs[16], char sc[16], char y[48])
{
	snprintf(qs, 16, "qs[%d]", t);
	snprintf(sc, 16, "sc[%d]", t);
	snprintf(y, 48, "y + %d * N + %d", t, row);
}

/* I2_S: D = sum(code*q) - sum(q) exactly in int32 (code = w + 1), y = ((float)D / s) * wscale.
 * Byte 32b + j of a row holds elements 128b + j, +32, +64, +96 in bits 7:6, 5:4, 3:2, 1:0. */
static void tmm_i2s_body(CgBuf *b, const char *name, int64_t k, int64_t nr)
{
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 " };\n"
		     "%s"
		     "\tint64_t lo = (int64_t)N * ith / nth, hi = (int64_t)N * (ith + 1) / nth;\n"
		     "\tint8_t c[K]; /* a row's codes 0..2, decoded once for a multi-token call */\n"
		     "\tfor (int64_t o = lo; o < hi; o++) {\n"
		     "\t\tconst uint8_t *wr = a->w + o * (K / 4);\n"
		     "\t\tif (a->n == 1) {\n"
		     "\t\t\tint32_t acc[32] = {0};\n"
		     "\t\t\tfor (int bl = 0; bl < K / 128; bl++) {\n"
		     "\t\t\t\tconst uint8_t *p = wr + 32 * bl;\n"
		     "\t\t\t\tconst int8_t *qb = a->q + 128 * bl;\n"
		     "\t\t\t\tfor (int j = 0; j < 32; j++) {\n"
		     "\t\t\t\t\tint v = p[j];\n"
		     "\t\t\t\t\tacc[j] += (v >> 6) * qb[j] + ((v >> 4) & 3) * qb[32 + j] +\n"
		     "\t\t\t\t\t\t  ((v >> 2) & 3) * qb[64 + j] + (v & 3) * qb[96 + j];\n"
		     "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\t\tint32_t d = -qsum[0];\n"
		     "\t\t\tfor (int j = 0; j < 32; j++)\n"
		     "\t\t\t\td += acc[j];\n",
		  name, k, nr, tmm_prologue);
	tmm_epilogue(b, "\t\t\t", "a->y[o]", "d", NULL, "a->s[0]");
	cg_printf(b, "\t\t\tcontinue;\n"
		     "\t\t}\n"
		     "\t\tfor (int bl = 0; bl < K / 128; bl++)\n"
		     "\t\t\tfor (int j = 0; j < 32; j++) {\n"
		     "\t\t\t\tint v = wr[32 * bl + j];\n"
		     "\t\t\t\tc[128 * bl + j] = (int8_t)(v >> 6);\n"
		     "\t\t\t\tc[128 * bl + 32 + j] = (int8_t)((v >> 4) & 3);\n"
		     "\t\t\t\tc[128 * bl + 64 + j] = (int8_t)((v >> 2) & 3);\n"
		     "\t\t\t\tc[128 * bl + 96 + j] = (int8_t)(v & 3);\n"
		     "\t\t\t}\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tconst int8_t *q = a->q + (int64_t)t * K;\n"
		     "\t\t\tint32_t d = -qsum[t];\n"
		     "\t\t\tfor (int i = 0; i < K; i++)\n"
		     "\t\t\t\td += c[i] * q[i];\n");
	tmm_epilogue(b, "\t\t\t", "a->y[(int64_t)t * N + o]", "d", NULL, "a->s[t]");
	cg_printf(b, "\t\t}\n"
		     "\t}\n}\n");
}

/* TQ1_0/TQ2_0 with Q8_K activations in the reference's float order: per block 8 int32
 * lanes (lane L: codes*q over elements with e%32 in 4L..4L+3, minus q[32L..32L+31]),
 * each times d_a*d_w, summed per lane over blocks, then ((0+4)+(2+6)) + ((1+5)+(3+7)).
 * A row is decoded to codes 0..2 once and reused for every token. */
static void tmm_tq_body(CgBuf *b, const char *name, IrDtype dt, int64_t k, int64_t nr)
{
	bool tq1 = dt == IR_DT_TQ1_0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 ", NB = K / 256, BB = %d };\n"
		     "\tstatic const uint8_t pow3[5] = {1, 3, 9, 27, 81};\n"
		     "\t(void)pow3;\n"
		     "\tint32_t qls[MAX_BATCH][NB][8];\n"
		     "\tfor (int t = 0; t < a->n; t++)\n"
		     "\t\tfor (int bl = 0; bl < NB; bl++)\n"
		     "\t\t\tfor (int L = 0; L < 8; L++) {\n"
		     "\t\t\t\tint32_t s = 0;\n"
		     "\t\t\t\tfor (int i = 0; i < 32; i++)\n"
		     "\t\t\t\t\ts += a->q[(int64_t)t * K + 256 * bl + 32 * L + i];\n"
		     "\t\t\t\tqls[t][bl][L] = s;\n"
		     "\t\t\t}\n"
		     "\tint64_t lo = (int64_t)N * ith / nth, hi = (int64_t)N * (ith + 1) / nth;\n"
		     "\tuint8_t codes[K];\n"
		     "\tfloat wd[NB];\n"
		     "\tfor (int64_t o = lo; o < hi; o++) {\n"
		     "\t\tconst uint8_t *wr = a->w + o * (NB * BB);\n"
		     "\t\tfor (int bl = 0; bl < NB; bl++) {\n"
		     "\t\t\tconst uint8_t *p = wr + bl * BB;\n"
		     "\t\t\tuint8_t *c = codes + 256 * bl;\n",
		  name, k, nr, tq1 ? 54 : 66);
	if (tq1)
		/* five trits per byte, first most significant: trit n = ((uint8)(B*3^n) * 3) >> 8 */
		cg_printf(b, "\t\t\tfor (int e = 0; e < 5; e++)\n"
			     "\t\t\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\t\t\tc[32 * e + i] = (uint8_t)(((uint8_t)(p[i] * pow3[e]) * 3) >> 8);\n"
			     "\t\t\tfor (int e = 0; e < 5; e++)\n"
			     "\t\t\t\tfor (int i = 0; i < 16; i++)\n"
			     "\t\t\t\t\tc[160 + 16 * e + i] = (uint8_t)(((uint8_t)(p[32 + i] * pow3[e]) * 3) >> 8);\n"
			     "\t\t\tfor (int e = 0; e < 4; e++)\n"
			     "\t\t\t\tfor (int i = 0; i < 4; i++)\n"
			     "\t\t\t\t\tc[240 + 4 * e + i] = (uint8_t)(((uint8_t)(p[48 + i] * pow3[e]) * 3) >> 8);\n"
			     "\t\t\twd[bl] = f16_to_f32(rd16(p + 52));\n");
	else
		/* element 128j + 32s + m in qs[32j + m] bits 2s..2s+1 */
		cg_printf(b, "\t\t\tfor (int j = 0; j < 2; j++)\n"
			     "\t\t\t\tfor (int s = 0; s < 4; s++)\n"
			     "\t\t\t\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\t\t\t\tc[128 * j + 32 * s + i] = (uint8_t)((p[32 * j + i] >> (2 * s)) & 3);\n"
			     "\t\t\twd[bl] = f16_to_f32(rd16(p + 64));\n");
	cg_printf(b, "\t\t}\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tconst int8_t *q = a->q + (int64_t)t * K;\n"
		     "\t\t\tfloat acc[8] = {0};\n"
		     "\t\t\tfor (int bl = 0; bl < NB; bl++) {\n"
		     "\t\t\t\tconst uint8_t *c = codes + 256 * bl;\n"
		     "\t\t\t\tconst int8_t *qb = q + 256 * bl;\n"
		     "\t\t\t\tint32_t lm[32] = {0};\n"
		     "\t\t\t\tfor (int g = 0; g < 8; g++)\n"
		     "\t\t\t\t\tfor (int i = 0; i < 32; i++)\n"
		     "\t\t\t\t\t\tlm[i] += c[32 * g + i] * qb[32 * g + i];\n"
		     "\t\t\t\tfloat d = a->s[(int64_t)t * NB + bl] * wd[bl];\n"
		     "\t\t\t\tfor (int L = 0; L < 8; L++) {\n"
		     "\t\t\t\t\tint32_t lane = lm[4 * L] + lm[4 * L + 1] + lm[4 * L + 2] + lm[4 * L + 3] - qls[t][bl][L];\n"
		     "\t\t\t\t\tfloat p = (float)lane * d;\n"
		     "\t\t\t\t\tacc[L] = acc[L] + p;\n"
		     "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\t\ta->y[(int64_t)t * N + o] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));\n"
		     "\t\t}\n"
		     "\t}\n}\n");
}

/* The driver of the RVV and SVE I2_S kernels (GGUF rows against four planes of each tile's
 * activations, cg_cpu_rvv.c): mk[tt - 1] the micro kernel of tt tokens; pair, when not NULL,
 * a two-row one-token kernel that the one-token driver runs on rows in pairs (the last of an
 * odd share alone, through mk[0]). */
int tmm_planes_driver(Em *m, const IrNode *n, const char *driver, int64_t k, int64_t nr,
		      int tiles, const char (*mk)[48], const char *pair)
{
	CgBuf *b;
	if (kern_for(m, n, driver, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 ", KB = K / 4, TT = %d };\n"
		     "%s"
		     "\tint64_t lo = (int64_t)N * ith / nth, hi = (int64_t)N * (ith + 1) / nth;\n"
		     "\tif (lo >= hi)\n"
		     "\t\treturn;\n"
		     "\tint8_t qp[TT * K]; /* the tile's tokens, each as four planes of KB bytes */\n"
		     "\tint32_t d[TT];\n"
		     "\tfor (int t0 = 0; t0 < a->n; t0 += TT) {\n"
		     "\t\tint tt = a->n - t0 < TT ? a->n - t0 : TT;\n"
		     "\t\tfor (int t = 0; t < tt; t++)\n"
		     "\t\t\tfor (int bl = 0; bl < K / 128; bl++)\n"
		     "\t\t\t\tfor (int p = 0; p < 4; p++)\n"
		     "\t\t\t\t\tmemcpy(qp + t * K + p * KB + 32 * bl,\n"
		     "\t\t\t\t\t       a->q + (int64_t)(t0 + t) * K + 128 * bl + 32 * p, 32);\n"
		     "\t\tfor (int64_t o = lo; o < hi; o++) {\n"
		     "\t\t\tconst uint8_t *wr = a->w + o * KB;\n",
		  driver, k, nr, tiles, tmm_prologue);
	if (tiles == 1 && pair) { /* a one-token forward: t0 = 0 */
		cg_printf(b, "\t\t\tif (o + 1 < hi) {\n"
			     "\t\t\t\tint32_t d2[2];\n"
			     "\t\t\t\t%s(wr, qp, KB, d2);\n",
			  pair);
		tmm_epilogue(b, "\t\t\t\t", "a->y[o]", "d2[0]", "qsum[0]", "a->s[0]");
		tmm_epilogue(b, "\t\t\t\t", "a->y[o + 1]", "d2[1]", "qsum[0]", "a->s[0]");
		cg_printf(b, "\t\t\t\to++;\n"
			     "\t\t\t\tcontinue;\n"
			     "\t\t\t}\n");
	}
	if (tiles == 1) {
		cg_printf(b, "\t\t\t%s(wr, qp, KB, d);\n", mk[0]);
	} else {
		cg_printf(b, "\t\t\tswitch (tt) {\n");
		for (int tt = 1; tt <= tiles; tt++)
			cg_printf(b, "\t\t\tcase %d: %s(wr, qp, KB, d); break;\n", tt, mk[tt - 1]);
		cg_printf(b, "\t\t\t}\n");
	}
	cg_printf(b, "\t\t\tfor (int t = 0; t < tt; t++)\n");
	tmm_epilogue(b, "\t\t\t\t", "a->y[(int64_t)(t0 + t) * N + o]", "d[t]", "qsum[t0 + t]",
		     "a->s[t0 + t]");
	cg_printf(b, "\t\t}\n"
		     "\t}\n"
		     "}\n");
	return 0;
}

/* The RVV or SVE kernel of node n (an I2_S weight [k, nr] in the GGUF layout), its call
 * written into the forward and counted (CG_KERN_SIMD). */
static int emit_tmm_vla_call(Em *m, const IrNode *n, int64_t k, int64_t nr)
{
	char drv[96];
	if ((m->isa.level == CG_ISA_SVE ? emit_tmm_sve : emit_tmm_rvv)(m, n, k, nr, drv, sizeof drv))
		return m->e->code;
	m->kcount[CG_KERN_SIMD]++;
	tmm_launch(m, n, drv);
	return 0;
}

int emit_ternary_matmul(Em *m, const IrNode *n)
{
	const IrValue *w = V(m, n->in[2]), *sc = V(m, n->in[1]);
	int64_t k = w->ne[0], nr = w->ne[1];
	if (w->kind != IR_VAL_CONST)
		return unsupported(m, n, "the ternary weight must be a constant");
	const char *tag;
	if (w->layout && strcmp(w->layout, "gguf") != 0 && strcmp(w->layout, "i2s_x16") != 0 &&
	    strcmp(w->layout, "t5_x16") != 0)
		return unsupported(m, n, "no kernel reads this weight layout");
	bool gguf = !w->layout || strcmp(w->layout, "gguf") == 0;
	if ((m->isa.level == CG_ISA_RVV || m->isa.level == CG_ISA_SVE) && !gguf) {
		/* RVV's and SVE's kernels read the GGUF layout: on the others the portable
		 * families run */
		CgIsa keep = m->isa;
		m->isa = (CgIsa){CG_ISA_GENERIC, false, false, false};
		int rc = emit_ternary_matmul(m, n);
		m->isa = keep;
		return rc;
	}
	switch (w->dtype) {
	case IR_DT_I2_S:
		tag = "i2s";
		if (k % 128 || ir_value_row(sc) != 1)
			return unsupported(m, n, "i2_s needs K % 128 == 0 and per-token scales");
		if (w->layout && strcmp(w->layout, "i2s_x16") == 0)
			return emit_tmm_x16(m, n, k, nr);
		if (w->layout && strcmp(w->layout, "t5_x16") == 0)
			return emit_tmm_t5(m, n, k, nr);
		if ((m->isa.level == CG_ISA_RVV || m->isa.level == CG_ISA_SVE) &&
		    strcmp(cg_tmm_kernel(n, m->nt), "portable") != 0)
			return emit_tmm_vla_call(m, n, k, nr);
		break;
	case IR_DT_TQ1_0:
	case IR_DT_TQ2_0:
		tag = w->dtype == IR_DT_TQ1_0 ? "tq1" : "tq2";
		if (k % 256 || ir_value_row(sc) != k / 256)
			return unsupported(m, n, "tq1_0/tq2_0 need K % 256 == 0 and Q8_K (block256) scales");
		break;
	default:
		return unsupported(m, n, "the weight must be i2_s, tq1_0 or tq2_0");
	}
	m->kcount[CG_KERN_PORTABLE]++; /* portable C on the GGUF layouts */
	char name[96];
	snprintf(name, sizeof name, "tmm_%s_k%" PRId64 "_n%" PRId64, tag, k, nr);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (b && w->dtype == IR_DT_I2_S)
		tmm_i2s_body(b, name, k, nr);
	else if (b)
		tmm_tq_body(b, name, w->dtype, k, nr);
	tmm_launch(m, n, name);
	return 0;
}

void tmm_launch(Em *m, const IrNode *n, const char *driver)
{
	char qb[64], sb[64], yb[64];
	const char *q = ref(m, n->in[0], "int8_t", qb, sizeof qb);
	const char *s = ref(m, n->in[1], "float", sb, sizeof sb);
	const char *y = ref(m, n->out[0], "float", yb, sizeof yb);
	if (m->launch_open && m->launch_n < CG_LAUNCH_MAX) {
		cg_printf(m->fwd, "\t\tTmmArg a%d = {W + %" PRIu64 ", %s, %s, %s, n, share_reset(&sh[%d])};\n",
			  m->launch_n, m->woff[n->in[2]], q, s, y, m->launch_n);
		snprintf(m->launch_fn[m->launch_n++], sizeof m->launch_fn[0], "%s", driver);
		return;
	}
	cg_printf(m->fwd, "\t{\n\t\tTmmArg a = {W + %" PRIu64 ", %s, %s, %s, n, share_reset(&sh[0])};\n"
			  "\t\tpool_run(st, %s, &a);\n\t}\n",
		  m->woff[n->in[2]], q, s, y, driver);
}


/* ---- I2_S in the i2s_x16 layout (permute_weights) ---------------------------------
 * Groups of 16 rows; a 64-byte chunk holds 16 k of each row, and the shifts 0, 2, 4, 6
 * unpack it into four [16 rows][4 k] byte tiles, so one vpdpbusd with 4 bytes of one
 * token broadcast adds 4 products to each of 16 rows. A micro kernel computes RG groups
 * (16 RG rows) for TT tokens over all of K, with RG x TT accumulators in registers
 * (for one token, four per group so the adds do not wait on each other). The integer
 * sum is exact, so y = ((float)(D - qsum) / s) * wscale is the interpreter's float. */

typedef struct {
	int rg, tt; /* row groups of 16, tokens */
} Tile;

/* Family prefix per ISA: z (AVX-512 VNNI), y (AVX2; VNNI or maddubs), n (NEON; sdot or
 * widening multiplies), c (portable). */
static char isa_tag(const CgIsa *isa)
{
	return isa->level == CG_ISA_AVX512 ? 'z'
	       : isa->level == CG_ISA_AVX2 ? 'y'
	       : isa->level == CG_ISA_NEON ? 'n'
					   : 'c';
}

/* The helpers every micro kernel of the family uses: emitted once. */
int x16_common(Em *m, const IrNode *n)
{
	CgBuf *b;
	if (kern_for(m, n, "x16_common", &b))
		return m->e->code;
	if (!b)
		return 0;
	if (m->isa.level == CG_ISA_NEON)
		/* say what is wrong before arm_neon.h does, less clearly */
		cg_printf(b, "#if !defined(__aarch64__)\n"
			     "#error \"the NEON kernels are AArch64 code: compile with an AArch64 C "
			     "compiler (bitnetc build --cc aarch64-linux-gnu-gcc)\"\n"
			     "#endif\n"
			     "%s"
			     "#include <arm_neon.h>\n",
			  m->isa.vnni ? "#if !defined(__ARM_FEATURE_DOTPROD)\n"
					"#error \"the sdot kernels need -march=armv8.2-a+dotprod "
					"(or a CPU with it)\"\n"
					"#endif\n"
				      : "");
	else if (m->isa.level != CG_ISA_GENERIC)
		cg_printf(b, "#include <immintrin.h>\n");
	cg_printf(b, "/* 4 int8 activations as one int32 lane (for the broadcast) */\n"
		     "MAYBE_UNUSED static inline int32_t ld_i32(const int8_t *p)\n"
		     "{\n"
		     "\tint32_t v;\n"
		     "\tmemcpy(&v, p, sizeof v);\n"
		     "\treturn v;\n"
		     "}\n");
	return 0;
}

static const char mk_params[] =
	"(const uint8_t *w, int64_t gs, int64_t kc, const int8_t *q, int64_t K,\n"
	"\t\t const int32_t *qs, const float *sc, float wscale, float *y, int64_t N)";

/* How far ahead of its loads a multi-token AVX-512 micro kernel prefetches each group's
 * weights: 16 chunks (bytes). */
enum { X16_PF = 1024 };

/* How far ahead the one-token AVX-512 kernel prefetches its stream: 64 chunks (bytes).
 * Each thread's share of a matmul is a stream of its own that the hardware prefetcher
 * picks up anew at every matmul; with the lines 4 KiB ahead asked for, the one-token
 * matmuls of the 2B-4T shape took 9.66 instead of 10.18 ms per decode step (medians of 5
 * interleaved runs, 2 threads, Zen 5; 8 KiB: 10.13). Past the end of the share it
 * fetches the next one's first lines, and past the weights it does not fault. */
enum { X16_PF1 = 4096 };

/* One token on AVX-512 (and AVX2: mk_avx2_streams): each thread reads this
 * many streams side by side (its own lanes of
 * the job's Share, share_next_ns), a group of each per kernel call, the activations'
 * broadcasts shared. One stream per thread left memory idle: the one-token matmuls of the
 * 2B-4T shape took ~9% less time per decode step with 4 (2 threads, Zen 5, 16 ABBA pairs;
 * decode ~3% faster; level in the slower bandwidth regimes, ~16% less time in the fast
 * ones), and a 2-thread read of 1 GiB through the kernel went from ~82% to ~99% of a plain
 * sum's speed. Streams of a few tens of KiB read slower than one: the lanes are the job
 * cut in threads x streams, never split finer. */
enum { X16_STREAMS = 4 };

/* Calls of up to this many tokens run one group of 16 rows at a time whatever the tile's
 * rows (2 and 4 tokens of the 2B-4T shape ~10% faster than two groups side by side; 8
 * the same either way). */
enum { X16_ONE_STREAM = 4 };

/* AVX-512 VNNI micro kernel: rg groups x tt tokens. Each (group, token) sums its four
 * shifts of a chunk in pa accumulators (4: one per shift; 2: shifts 0, 2 and 1, 3), so
 * that the rg x tt x pa chains, each 4 / pa dot products deep per chunk, cover vpdpbusd's
 * latency: one group of 2 tokens in one accumulator each was 2 chains of 4 a chunk, bound
 * by it. The sums are exact integers: any split gives the same y. */
static void mk_avx512(CgBuf *b, const char *name, int rg, int tt)
{
	/* accumulators per (group, token): 4 for one token, else 2 while all fit 24
	 * registers (4 for 2..4 tokens measured slower at 4 tokens) */
	int pa = tt == 1 ? 4 : rg * tt * 2 <= 24 ? 2 : 1;
	int na = tt * pa;                        /* per group */
	cg_printf(b, "static inline void %s%s\n{\n", name, mk_params);
	for (int r = 0; r < rg; r++)
		for (int i = 0; i < na; i++)
			cg_printf(b, "\t__m512i a%d_%d = _mm512_setzero_si512();\n", r, i);
	cg_printf(b, "\tconst __m512i m3 = _mm512_set1_epi8(3);\n"
		     "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst int8_t *qc = q + 16 * c;\n");
	/* Several tokens: a chunk takes 4 tt dot products per group, time in which the
	 * hardware prefetcher alone did not keep the rg streams ahead (the loads at the top
	 * of the loop stalled; 8 tokens of the 2B-4T shape ~15% faster with this). One
	 * token: one stream, asked for X16_PF1 ahead. */
	if (tt > 1)
		for (int r = 0; r < rg; r++)
			cg_printf(b, "\t\t_mm_prefetch((const char *)(w + %d * gs + 64 * c + %d), _MM_HINT_T0);\n",
				  r, X16_PF);
	else if (rg == 1)
		cg_printf(b, "\t\t_mm_prefetch((const char *)(w + 64 * c + %d), _MM_HINT_T0);\n",
			  X16_PF1);
	/* ... and the next unit of rg groups (the rg x gs bytes after this one, where the
	 * driver goes next) into L2, rg lines a chunk in address order, so that memory sees
	 * one sequential stream: the rg streams a group apart that the loads make read at
	 * about 60% of one stream's speed here, and with this the 8-token kernel of the
	 * 2B-4T shape streaming from memory went from ~75% to ~90% of its in-cache speed on
	 * one thread. One group is one stream already. A prefetch past the weights does not
	 * fault. */
	if (tt > 1 && rg > 1)
		for (int r = 0; r < rg; r++)
			cg_printf(b, "\t\t_mm_prefetch((const char *)(w + %d * gs + %d * c + %d), _MM_HINT_T1);\n",
				  rg, 64 * rg, 64 * r);
	for (int r = 0; r < rg; r++)
		cg_printf(b, "\t\tconst __m512i v%d = _mm512_loadu_si512((const void *)(w + %d * gs + 64 * c));\n",
			  r, r);
	for (int s = 0; s < 4; s++) {
		cg_printf(b, "\t\t{\n");
		for (int r = 0; r < rg; r++)
			if (s == 0)
				cg_printf(b, "\t\t\tconst __m512i c%d = _mm512_and_si512(v%d, m3);\n", r, r);
			else
				cg_printf(b, "\t\t\tconst __m512i c%d = _mm512_and_si512(_mm512_srli_epi16(v%d, %d), m3);\n",
					  r, r, 2 * s);
		for (int t = 0; t < tt; t++) {
			cg_printf(b, "\t\t\tconst __m512i b%d = _mm512_set1_epi32(ld_i32(qc + %d * K + %d));\n",
				  t, t, 4 * s);
			for (int r = 0; r < rg; r++) {
				int ai = t * pa + s % pa;
				cg_printf(b, "\t\t\ta%d_%d = _mm512_dpbusd_epi32(a%d_%d, c%d, b%d);\n", r, ai,
					  r, ai, r, t);
			}
		}
		cg_printf(b, "\t\t}\n");
	}
	cg_printf(b, "\t}\n");
	if (pa == 4)
		for (int r = 0; r < rg; r++)
			for (int t = 0; t < tt; t++) {
				int a0 = 4 * t;
				cg_printf(b, "\ta%d_%d = _mm512_add_epi32(_mm512_add_epi32(a%d_%d, a%d_%d), _mm512_add_epi32(a%d_%d, a%d_%d));\n",
					  r, a0, r, a0, r, a0 + 1, r, a0 + 2, r, a0 + 3);
			}
	if (pa == 2)
		for (int r = 0; r < rg; r++)
			for (int t = 0; t < tt; t++)
				cg_printf(b, "\ta%d_%d = _mm512_add_epi32(a%d_%d, a%d_%d);\n", r, 2 * t,
					  r, 2 * t, r, 2 * t + 1);
	for (int t = 0; t < tt; t++)
		for (int r = 0; r < rg; r++) {
			char acc[32], qs[16], sc[16], y[48];
			snprintf(acc, sizeof acc, "a%d_%d", r, t * pa);
			tmm_epilogue_args(t, 16 * r, qs, sc, y);
			cg_printf(b, "\t{\n");
			tmm_epilogue_vec(b, CG_ISA_AVX512, "\t\t", acc, qs, sc, y);
			cg_printf(b, "\t}\n");
		}
	cg_printf(b, "}\n");
}

/* AVX-512 VNNI kernel of one token over ns groups from ns streams (w[j] -> y[j]): each
 * chunk's four activation broadcasts serve every stream, each (stream, shift) sums in an
 * accumulator of its own; the same exact integer sums and epilogue as x16z_r1_t1. */
static void mk_avx512_streams(CgBuf *b, const char *name, int ns)
{
	cg_printf(b, "static inline void %s%s\n{\n"
		     "\t(void)K; /* the activations of one token are contiguous */\n",
		  name, tmm_streams_params);
	for (int j = 0; j < ns; j++)
		cg_printf(b, "\tconst uint8_t *w%d = w[%d];\n", j, j);
	for (int j = 0; j < ns; j++)
		for (int s = 0; s < 4; s++)
			cg_printf(b, "\t__m512i a%d_%d = _mm512_setzero_si512();\n", j, s);
	cg_printf(b, "\tconst __m512i m3 = _mm512_set1_epi8(3);\n"
		     "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst int8_t *qc = q + 16 * c;\n");
	for (int j = 0; j < ns; j++)
		cg_printf(b, "\t\t_mm_prefetch((const char *)(w%d + 64 * c + %d), _MM_HINT_T0);\n", j,
			  X16_PFS);
	for (int s = 0; s < 4; s++)
		cg_printf(b, "\t\tconst __m512i b%d = _mm512_set1_epi32(ld_i32(qc + %d));\n", s, 4 * s);
	for (int j = 0; j < ns; j++) {
		cg_printf(b, "\t\t{\n"
			     "\t\t\tconst __m512i v = _mm512_loadu_si512((const void *)(w%d + 64 * c));\n", j);
		for (int s = 0; s < 4; s++)
			if (s == 0)
				cg_printf(b, "\t\t\ta%d_0 = _mm512_dpbusd_epi32(a%d_0, _mm512_and_si512(v, m3), b0);\n",
					  j, j);
			else
				cg_printf(b, "\t\t\ta%d_%d = _mm512_dpbusd_epi32(a%d_%d, _mm512_and_si512(_mm512_srli_epi16(v, %d), m3), b%d);\n",
					  j, s, j, s, 2 * s, s);
		cg_printf(b, "\t\t}\n");
	}
	cg_printf(b, "\t}\n");
	for (int j = 0; j < ns; j++) {
		char acc[16], y[16];
		snprintf(acc, sizeof acc, "a%d_0", j);
		snprintf(y, sizeof y, "y[%d]", j);
		cg_printf(b, "\t{\n"
			     "\t\ta%d_0 = _mm512_add_epi32(_mm512_add_epi32(a%d_0, a%d_1), _mm512_add_epi32(a%d_2, a%d_3));\n",
			  j, j, j, j, j);
		tmm_epilogue_vec(b, CG_ISA_AVX512, "\t\t", acc, "qs[0]", "sc[0]", y);
		cg_printf(b, "\t}\n");
	}
	cg_printf(b, "}\n");
}

/* Chunks whose maddubs results the AVX2 kernels without VNNI sum in int16 before they widen
 * them (one madd by ones and one int32 add per half-group and token per X16_I16 chunks
 * instead of per shift). Exact: a maddubs lane is c0 q0 + c1 q1 with codes 0..3 (3 only in
 * a broken file) and |q| <= 128, |.| <= 768; 4 shifts x 8 chunks of them, |.| <= 24576 <
 * 32767. These kernels are bound by their arithmetic (2 threads, Zen 5: the one-token
 * kernel read ~44 GB/s with its weights in cache before, ~52 with this; a plain sum streams
 * ~64 from memory): 2B-4T shape, the decode step's matmuls -9% to -15% (decode +6-17%),
 * the pp128 GEMM -11% to -19% (prefill +12-20%), ABBA pairs against one madd per shift. */
enum { X16_I16 = 8 };

/* The AVX2 kernels' common lines: a chunk's half-group loads v<v> (ind: the indent), ... */
static void avx2_loads(CgBuf *b, int nv, const char *ind)
{
	for (int v = 0; v < nv; v++)
		cg_printf(b, "%sconst __m256i v%d = _mm256_loadu_si256((const __m256i *)(w + %d * gs + 64 * c + %d));\n",
			  ind, v, v / 2, 32 * (v % 2));
}

/* ... for several tokens, each group's weights X16_PF bytes ahead (as mk_avx512's: a call
 * of 2..4 tokens, a decode step of few sequences, reads one group at a time, one stream a
 * thread that the hardware prefetcher alone kept behind) ... */
static void avx2_prefetch(CgBuf *b, int rg, int tt, const char *ind)
{
	for (int r = 0; tt > 1 && r < rg; r++)
		cg_printf(b, "%s_mm_prefetch((const char *)(w + %d * gs + 64 * c + %d), _MM_HINT_T0);\n",
			  ind, r, X16_PF);
}

/* ... the codes c<v> of shift s ... */
static void avx2_codes(CgBuf *b, int nv, int s, const char *ind)
{
	for (int v = 0; v < nv; v++)
		if (s == 0)
			cg_printf(b, "%sconst __m256i c%d = _mm256_and_si256(v%d, m3);\n", ind, v, v);
		else
			cg_printf(b, "%sconst __m256i c%d = _mm256_and_si256(_mm256_srli_epi16(v%d, %d), m3);\n",
				  ind, v, v, 2 * s);
}

/* ... the int16 sums h<v>_<t> += maddubs(c<v>, token t's four activations of shift s), each
 * pinned to its register after the shift (gcc otherwise reassociates these exact int16 adds
 * into trees that hold all four shifts' products at once, and spills: 42 stack accesses a
 * chunk in the 4-token kernel) ... */
static void avx2_i16_shift(CgBuf *b, int nv, int tt, int s, const char *ind)
{
	for (int t = 0; t < tt; t++) {
		cg_printf(b, "%s{\n"
			     "%s\tconst __m256i bs = _mm256_set1_epi32(ld_i32(qc + %d * K + %d));\n",
			  ind, ind, t, 4 * s);
		for (int v = 0; v < nv; v++)
			cg_printf(b, "%s\th%d_%d = _mm256_add_epi16(h%d_%d, _mm256_maddubs_epi16(c%d, bs));\n",
				  ind, v, t, v, t, v);
		cg_printf(b, "%s}\n", ind);
	}
	for (int v = 0; v < nv; v++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "%s__asm__(\"\" : \"+x\"(h%d_%d));\n", ind, v, t);
}

/* ... and the epilogue of the sums a<v>_<t>. */
static void avx2_epilogue(CgBuf *b, int nv, int tt)
{
	for (int t = 0; t < tt; t++)
		for (int v = 0; v < nv; v++) {
			char acc[32], qs[16], sc[16], y[48];
			snprintf(acc, sizeof acc, "a%d_%d", v, t);
			tmm_epilogue_args(t, 8 * v, qs, sc, y);
			cg_printf(b, "\t{\n");
			tmm_epilogue_vec(b, CG_ISA_AVX2, "\t\t", acc, qs, sc, y);
			cg_printf(b, "\t}\n");
		}
	cg_printf(b, "}\n");
}

/* Without VNNI (mk_avx2's kernels): each (half-group, token)'s products summed in an int16
 * register over X16_I16 chunks, then widened into its int32 accumulator; a chunk's codes of
 * one shift serve every token. The int32 accumulators are touched once per X16_I16 chunks,
 * so where tokens x half-groups do not fit the registers twice, they are what waits in
 * memory. */
static void mk_avx2_i16(CgBuf *b, const char *name, int rg, int tt)
{
	int nv = 2 * rg; /* half-groups */
	cg_printf(b, "static inline void %s%s\n{\n", name, mk_params);
	if (tt == 1)
		cg_printf(b, "\t(void)K; /* one token */\n");
	for (int v = 0; v < nv; v++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\t__m256i a%d_%d = _mm256_setzero_si256();\n", v, t);
	cg_printf(b, "\tconst __m256i m3 = _mm256_set1_epi8(3);\n"
		     "\tconst __m256i ones = _mm256_set1_epi16(1);\n"
		     "\tfor (int64_t c0 = 0; c0 < kc; c0 += %d) {\n"
		     "\t\tconst int64_t ce = kc - c0 < %d ? kc : c0 + %d;\n",
		  X16_I16, X16_I16, X16_I16);
	for (int v = 0; v < nv; v++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\t\t__m256i h%d_%d = _mm256_setzero_si256();\n", v, t);
	cg_printf(b, "\t\tfor (int64_t c = c0; c < ce; c++) {\n"
		     "\t\t\tconst int8_t *qc = q + 16 * c;\n");
	avx2_prefetch(b, rg, tt, "\t\t\t");
	avx2_loads(b, nv, "\t\t\t");
	for (int s = 0; s < 4; s++) {
		cg_printf(b, "\t\t\t{\n");
		avx2_codes(b, nv, s, "\t\t\t\t");
		avx2_i16_shift(b, nv, tt, s, "\t\t\t\t");
		cg_printf(b, "\t\t\t}\n");
	}
	cg_printf(b, "\t\t}\n");
	for (int v = 0; v < nv; v++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\t\ta%d_%d = _mm256_add_epi32(a%d_%d, _mm256_madd_epi16(h%d_%d, ones));\n",
				  v, t, v, t, v, t);
	cg_printf(b, "\t}\n");
	avx2_epilogue(b, nv, tt);
}

/* AVX2 kernel of one token over ns groups from ns streams (w[j] -> y[j]), as
 * mk_avx512_streams is AVX-512's: each chunk's four activation broadcasts serve every
 * stream; each stream's two halves sum their maddubs results in int16 over X16_I16 chunks
 * and widen them, the exact sums of mk_avx2_i16 (so the epilogue gives x16y_r1_t1's
 * floats). The one-group kernel read one stream a thread, without prefetch: the decode
 * step's matmuls of the 2B-4T shape (cpu-avx2, 2 threads, Zen 5) ran at ~35 GB/s where
 * the kernel in cache reads ~52 and memory gives ~60. With AVX-VNNI (vnni), each (stream,
 * half-group) sums its four shifts' vpdpbusd in one int32 accumulator instead (the exact
 * sums of x16v_r1_t1, so its floats); its one-group kernel had read one group at a time
 * without prefetch too. */
static void mk_avx2_streams(CgBuf *b, const char *name, int ns, bool vnni)
{
	cg_printf(b, "static inline void %s%s\n{\n"
		     "\t(void)K; /* the activations of one token are contiguous */\n",
		  name, tmm_streams_params);
	for (int j = 0; j < ns; j++)
		cg_printf(b, "\tconst uint8_t *w%d = w[%d];\n", j, j);
	for (int j = 0; j < ns; j++)
		cg_printf(b, "\t__m256i a%d_0 = _mm256_setzero_si256(), a%d_1 = a%d_0;\n", j, j, j);
	cg_printf(b, "\tconst __m256i m3 = _mm256_set1_epi8(3);\n");
	/* without VNNI the int16 sums h (one block of X16_I16 chunks at a time), with VNNI
	 * vpdpbusd into the int32 sums a directly */
	const char *in = vnni ? "\t" : "\t\t";
	if (vnni)
		cg_printf(b, "\tfor (int64_t c = 0; c < kc; c++) {\n");
	else {
		cg_printf(b, "\tconst __m256i ones = _mm256_set1_epi16(1);\n"
			     "\tfor (int64_t c0 = 0; c0 < kc; c0 += %d) {\n"
			     "\t\tconst int64_t ce = kc - c0 < %d ? kc : c0 + %d;\n",
			  X16_I16, X16_I16, X16_I16);
		for (int j = 0; j < ns; j++)
			cg_printf(b, "\t\t__m256i h%d_0 = _mm256_setzero_si256(), h%d_1 = h%d_0;\n", j,
				  j, j);
		cg_printf(b, "\t\tfor (int64_t c = c0; c < ce; c++) {\n");
	}
	cg_printf(b, "%s\tconst int8_t *qc = q + 16 * c;\n", in);
	for (int j = 0; j < ns; j++)
		cg_printf(b, "%s\t_mm_prefetch((const char *)(w%d + 64 * c + %d), _MM_HINT_T0);\n", in,
			  j, X16_PFS);
	for (int s = 0; s < 4; s++)
		cg_printf(b, "%s\tconst __m256i b%d = _mm256_set1_epi32(ld_i32(qc + %d));\n", in, s,
			  4 * s);
	for (int j = 0; j < ns; j++) {
		cg_printf(b, "%s\t{\n"
			     "%s\t\tconst __m256i v0 = _mm256_loadu_si256((const __m256i *)(w%d + 64 * c));\n"
			     "%s\t\tconst __m256i v1 = _mm256_loadu_si256((const __m256i *)(w%d + 64 * c + 32));\n",
			  in, in, j, in, j);
		char ind[8];
		snprintf(ind, sizeof ind, "%s\t\t\t", in);
		for (int s = 0; s < 4; s++) {
			cg_printf(b, "%s\t\t{\n", in);
			avx2_codes(b, 2, s, ind);
			for (int v = 0; v < 2; v++)
				if (vnni)
					cg_printf(b, "%sa%d_%d = _mm256_dpbusd_avx_epi32(a%d_%d, c%d, b%d);\n",
						  ind, j, v, j, v, v, s);
				else
					cg_printf(b, "%sh%d_%d = _mm256_add_epi16(h%d_%d, _mm256_maddubs_epi16(c%d, b%d));\n"
						     "%s__asm__(\"\" : \"+x\"(h%d_%d)); /* as avx2_i16_shift's */\n",
						  ind, j, v, j, v, v, s, ind, j, v);
			cg_printf(b, "%s\t\t}\n", in);
		}
		cg_printf(b, "%s\t}\n", in);
	}
	if (!vnni) {
		cg_printf(b, "\t\t}\n");
		for (int j = 0; j < ns; j++)
			for (int v = 0; v < 2; v++)
				cg_printf(b, "\t\ta%d_%d = _mm256_add_epi32(a%d_%d, _mm256_madd_epi16(h%d_%d, ones));\n",
					  j, v, j, v, j, v);
	}
	cg_printf(b, "\t}\n");
	for (int j = 0; j < ns; j++)
		for (int v = 0; v < 2; v++) {
			char acc[16], y[24];
			snprintf(acc, sizeof acc, "a%d_%d", j, v);
			snprintf(y, sizeof y, "y[%d] + %d", j, 8 * v);
			cg_printf(b, "\t{\n");
			tmm_epilogue_vec(b, CG_ISA_AVX2, "\t\t", acc, "qs[0]", "sc[0]", y);
			cg_printf(b, "\t}\n");
		}
	cg_printf(b, "}\n");
}

/* The AVX2 GEMM without VNNI (calls of more than X16_ONE_STREAM tokens) unpacks each group's
 * codes once per block of X16_I16 chunks into a buffer that every token tile then reads
 * (mk_avx2_u), instead of each tile shifting and masking them again: the micro kernels of
 * mk_avx2_i16 spent 7 operations a half-group and chunk on that, shared by only tt tokens,
 * and at 4 tokens gcc spilled their registers (the tuner chose 2 tokens, ~8% faster). The
 * buffer: for chunk c of the block, shift s, half v of group r, the 32 codes at
 * r * X16_UB + 256 c + 64 s + 32 v. */
enum { X16_UB = 256 * X16_I16 };

/* The micro kernel over unpacked codes: rg groups x tt tokens over cn <= X16_I16 chunks of
 * cb (the activations q of the block's first chunk, token t at q + t K), each (half-group,
 * token) summed in int16 as mk_avx2_i16 does, then widened into the int32 sums acc + t as
 * + 16 r + 8 v, which the driver carries from block to block. The same exact integers. */
static void mk_avx2_u(CgBuf *b, const char *name, int rg, int tt)
{
	int nv = 2 * rg;
	cg_printf(b, "static inline void %s(const uint8_t *cb, int64_t cn, const int8_t *q, int64_t K, int32_t *acc, int64_t as)\n{\n",
		  name);
	for (int v = 0; v < nv; v++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\t__m256i h%d_%d = _mm256_setzero_si256();\n", v, t);
	cg_printf(b, "\tfor (int64_t c = 0; c < cn; c++) {\n"
		     "\t\tconst int8_t *qc = q + 16 * c;\n"
		     "\t\tconst uint8_t *cc = cb + 256 * c;\n");
	for (int s = 0; s < 4; s++) {
		cg_printf(b, "\t\t{\n");
		for (int v = 0; v < nv; v++)
			cg_printf(b, "\t\t\tconst __m256i c%d = _mm256_load_si256((const __m256i *)(cc + %d));\n",
				  v, (v / 2) * X16_UB + 64 * s + 32 * (v % 2));
		avx2_i16_shift(b, nv, tt, s, "\t\t\t");
		cg_printf(b, "\t\t}\n");
	}
	cg_printf(b, "\t}\n"
		     "\tconst __m256i ones = _mm256_set1_epi16(1);\n");
	for (int t = 0; t < tt; t++)
		for (int v = 0; v < nv; v++)
			cg_printf(b, "\t_mm256_storeu_si256((__m256i *)(acc + %d * as + %d), _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + %d * as + %d)), _mm256_madd_epi16(h%d_%d, ones)));\n",
				  t, 8 * v, t, 8 * v, v, t);
	cg_printf(b, "}\n\n");
}

/* The driver's path for it: per unit of rg groups and block of up to X16_UT tokens (the
 * int32 sums on the stack), per block of X16_I16 chunks the codes unpacked, then every token
 * tile; last the epilogue of each (token, half-group), as the micro kernels' own. */
enum { X16_UT = 64 };
static void avx2_u_path(CgBuf *b, const Tile *tl, const char *tag)
{
	cg_printf(b, "\t/* several tokens: the codes unpacked once per block of chunks (mk_avx2_u) */\n"
		     "\tif (a->n > %d) {\n"
		     "\t\tenum { KC = K / 16, UB = %d, UT = %d };\n"
		     "\t\t_Alignas(32) uint8_t cb[RG * UB];\n"
		     "\t\tint32_t acc[UT * 16 * RG];\n"
		     "\t\tShareIt it = share_begin(a->sh, (NG + RG - 1) / RG, RG * gs, ith, nth);\n"
		     "\t\tfor (int64_t lo, hi; share_next(&it, &lo, &hi);)\n"
		     "\t\t\tfor (int64_t u = lo; u < hi; u++) {\n"
		     "\t\t\t\tconst int64_t g = u * RG;\n"
		     "\t\t\t\tconst int rg = NG - g < RG ? (int)(NG - g) : RG;\n"
		     "\t\t\t\tconst int64_t as = 16 * rg;\n"
		     "\t\t\t\tconst __m256i m3 = _mm256_set1_epi8(3);\n"
		     "\t\t\t\tfor (int tb = 0; tb < a->n; tb += UT) {\n"
		     "\t\t\t\t\tconst int nb = a->n - tb < UT ? a->n - tb : UT;\n"
		     "\t\t\t\t\tmemset(acc, 0, sizeof(int32_t) * (size_t)(nb * as));\n"
		     "\t\t\t\t\tfor (int64_t c0 = 0; c0 < KC; c0 += %d) {\n"
		     "\t\t\t\t\t\tconst int64_t cn = KC - c0 < %d ? KC - c0 : %d;\n"
		     "\t\t\t\t\t\tfor (int r = 0; r < rg; r++)\n"
		     "\t\t\t\t\t\t\tfor (int64_t c = 0; c < cn; c++)\n"
		     "\t\t\t\t\t\t\t\tfor (int v = 0; v < 2; v++) {\n"
		     "\t\t\t\t\t\t\t\t\tconst __m256i x = _mm256_loadu_si256((const __m256i *)(a->w + (g + r) * gs + 64 * (c0 + c) + 32 * v));\n"
		     "\t\t\t\t\t\t\t\t\tuint8_t *o = cb + r * UB + 256 * c + 32 * v;\n"
		     "\t\t\t\t\t\t\t\t\t_mm256_store_si256((__m256i *)o, _mm256_and_si256(x, m3));\n"
		     "\t\t\t\t\t\t\t\t\t_mm256_store_si256((__m256i *)(o + 64), _mm256_and_si256(_mm256_srli_epi16(x, 2), m3));\n"
		     "\t\t\t\t\t\t\t\t\t_mm256_store_si256((__m256i *)(o + 128), _mm256_and_si256(_mm256_srli_epi16(x, 4), m3));\n"
		     "\t\t\t\t\t\t\t\t\t_mm256_store_si256((__m256i *)(o + 192), _mm256_and_si256(_mm256_srli_epi16(x, 6), m3));\n"
		     "\t\t\t\t\t\t\t\t}\n"
		     "\t\t\t\t\t\tfor (int t0 = 0; t0 < nb; t0 += TT) {\n"
		     "\t\t\t\t\t\t\tconst int tt = nb - t0 < TT ? nb - t0 : TT;\n"
		     "\t\t\t\t\t\t\tconst int8_t *q = a->q + (int64_t)(tb + t0) * K + 16 * c0;\n"
		     "\t\t\t\t\t\t\tint32_t *ac = acc + t0 * as;\n"
		     "\t\t\t\t\t\t\tswitch (rg * 1000 + tt) {\n",
		  X16_ONE_STREAM, X16_UB, X16_UT, X16_I16, X16_I16, X16_I16);
	for (int rg = 1; rg <= tl->rg; rg++)
		for (int tt = 1; tt <= tl->tt; tt++)
			cg_printf(b, "\t\t\t\t\t\t\tcase %d: x16%s_r%d_t%d(cb, cn, q, K, ac, as); break;\n",
				  rg * 1000 + tt, tag, rg, tt);
	cg_printf(b, "\t\t\t\t\t\t\t}\n"
		     "\t\t\t\t\t\t}\n"
		     "\t\t\t\t\t}\n"
		     "\t\t\t\t\tfor (int t = 0; t < nb; t++)\n"
		     "\t\t\t\t\t\tfor (int v = 0; v < 2 * rg; v++) {\n"
		     "\t\t\t\t\t\t\tconst __m256i s = _mm256_loadu_si256((const __m256i *)(acc + t * as + 8 * v));\n");
	tmm_epilogue_vec(b, CG_ISA_AVX2, "\t\t\t\t\t\t\t", "s", "qsum[tb + t]", "a->s[tb + t]",
			 "a->y + (int64_t)(tb + t) * N + 16 * g + 8 * v");
	cg_printf(b, "\t\t\t\t\t\t}\n"
		     "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\treturn;\n"
		     "\t}\n");
}

/* AVX2 micro kernel: each group is two ymm halves of 8 rows (bytes 0..31 and 32..63 of
 * a chunk); vpdpbusd with AVX-VNNI (here), else mk_avx2_i16's maddubs summed in int16. */
static void mk_avx2(CgBuf *b, const char *name, int rg, int tt, bool vnni)
{
	if (!vnni) {
		mk_avx2_i16(b, name, rg, tt);
		return;
	}
	int na = tt == 1 ? 2 : tt;
	int nv = 2 * rg; /* half-groups */
	cg_printf(b, "static inline void %s%s\n{\n", name, mk_params);
	for (int v = 0; v < nv; v++)
		for (int i = 0; i < na; i++)
			cg_printf(b, "\t__m256i a%d_%d = _mm256_setzero_si256();\n", v, i);
	cg_printf(b, "\tconst __m256i m3 = _mm256_set1_epi8(3);\n");
	cg_printf(b, "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst int8_t *qc = q + 16 * c;\n");
	avx2_prefetch(b, rg, tt, "\t\t");
	avx2_loads(b, nv, "\t\t");
	for (int s = 0; s < 4; s++) {
		cg_printf(b, "\t\t{\n");
		avx2_codes(b, nv, s, "\t\t\t");
		for (int t = 0; t < tt; t++) {
			cg_printf(b, "\t\t\tconst __m256i b%d = _mm256_set1_epi32(ld_i32(qc + %d * K + %d));\n",
				  t, t, 4 * s);
			for (int v = 0; v < nv; v++) {
				int ai = tt == 1 ? s % 2 : t;
				cg_printf(b, "\t\t\ta%d_%d = _mm256_dpbusd_avx_epi32(a%d_%d, c%d, b%d);\n",
					  v, ai, v, ai, v, t);
			}
		}
		cg_printf(b, "\t\t}\n");
	}
	cg_printf(b, "\t}\n");
	if (tt == 1)
		for (int v = 0; v < nv; v++)
			cg_printf(b, "\ta%d_0 = _mm256_add_epi32(a%d_0, a%d_1);\n", v, v, v);
	avx2_epilogue(b, nv, tt);
}

/* NEON micro kernel: each group is four q registers of 4 rows (bytes 16v..16v+15 of a
 * chunk: [4 rows][4 k]), so four accumulators per group and token, lane i = row 4v + i.
 * With dotprod, sdot by lane: the chunk's 16 activations of a token are one register and
 * its 32-bit lane s holds the 4 that the codes of shift 2s multiply (codes 0..2 fit int8,
 * so the signed dot product is exact; shift 6 needs no mask). Without, widening
 * multiplies (smull/smlal) summed over the four shifts in int16, folded into int32 by
 * addp + sadalp. That int16 sum is exact: every product is code * q with 0 <= code <= 2
 * and -128 <= q <= 127, so |product| <= 256; a lane of lo/hi sums 4 products (s = 0..3),
 * |.| <= 1024; addp adds two such lanes, |.| <= 2048 < 32767; sadalp widens to int32
 * before it adds. */
static void mk_neon(CgBuf *b, const char *name, int rg, int tt, bool dot)
{
	int na = dot && tt == 1 ? 2 : tt; /* accumulator sets: one token gets two chains */
	int nv = 4 * rg;                    /* 4-row vectors */
	cg_printf(b, "static inline void %s%s\n{\n", name, mk_params);
	for (int v = 0; v < nv; v++)
		for (int i = 0; i < na; i++)
			cg_printf(b, "\tint32x4_t a%d_%d = vdupq_n_s32(0);\n", v, i);
	cg_printf(b, "\tconst uint8x16_t m3 = vdupq_n_u8(3);\n"
		     "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst int8_t *qc = q + 16 * c;\n");
	for (int t = 0; t < tt; t++)
		if (dot)
			cg_printf(b, "\t\tconst int8x16_t b%d = vld1q_s8(qc + %d * K);\n", t, t);
		else
			for (int s = 0; s < 4; s++)
				cg_printf(b, "\t\tconst int8x16_t b%d_%d = vreinterpretq_s8_s32(vdupq_n_s32(ld_i32(qc + %d * K + %d)));\n",
					  t, s, t, 4 * s);
	for (int v = 0; v < nv; v++) {
		cg_printf(b, "\t\t{\n"
			     "\t\t\tconst uint8x16_t v = vld1q_u8(w + %d * gs + 64 * c + %d);\n"
			     "\t\t\tconst int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(v, m3));\n"
			     "\t\t\tconst int8x16_t c1 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 2), m3));\n"
			     "\t\t\tconst int8x16_t c2 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 4), m3));\n"
			     "\t\t\tconst int8x16_t c3 = vreinterpretq_s8_u8(vshrq_n_u8(v, 6));\n",
			  v / 4, 16 * (v % 4));
		for (int t = 0; t < tt; t++) {
			if (dot) {
				for (int s = 0; s < 4; s++) {
					int ai = tt == 1 ? s % 2 : t;
					cg_printf(b, "\t\t\ta%d_%d = vdotq_laneq_s32(a%d_%d, c%d, b%d, %d);\n",
						  v, ai, v, ai, s, t, s);
				}
				continue;
			}
			cg_printf(b, "\t\t\t{\n"
				     "\t\t\t\tint16x8_t lo = vmull_s8(vget_low_s8(c0), vget_low_s8(b%d_0));\n"
				     "\t\t\t\tint16x8_t hi = vmull_high_s8(c0, b%d_0);\n",
				  t, t);
			for (int s = 1; s < 4; s++)
				cg_printf(b, "\t\t\t\tlo = vmlal_s8(lo, vget_low_s8(c%d), vget_low_s8(b%d_%d));\n"
					     "\t\t\t\thi = vmlal_high_s8(hi, c%d, b%d_%d);\n",
					  s, t, s, s, t, s);
			cg_printf(b, "\t\t\t\ta%d_%d = vpadalq_s16(a%d_%d, vpaddq_s16(lo, hi));\n"
				     "\t\t\t}\n",
				  v, t, v, t);
		}
		cg_printf(b, "\t\t}\n");
	}
	cg_printf(b, "\t}\n");
	if (na > tt)
		for (int v = 0; v < nv; v++)
			cg_printf(b, "\ta%d_0 = vaddq_s32(a%d_0, a%d_1);\n", v, v, v);
	/* the scalar epilogue's operations, lane by lane: int32 -> float rounds to nearest as
	 * (float) does, and vdivq/vmulq are IEEE single division and multiplication */
	for (int t = 0; t < tt; t++)
		for (int v = 0; v < nv; v++) {
			char acc[32], qs[16], sc[16], y[48];
			snprintf(acc, sizeof acc, "a%d_%d", v, tt == 1 ? 0 : t);
			tmm_epilogue_args(t, 4 * v, qs, sc, y);
			cg_printf(b, "\t{\n");
			tmm_epilogue_vec(b, CG_ISA_NEON, "\t\t", acc, qs, sc, y);
			cg_printf(b, "\t}\n");
		}
	cg_printf(b, "}\n");
}

/* Portable micro kernel: one group, one token. */
static void mk_generic(CgBuf *b, const char *name)
{
	cg_printf(b, "static inline void %s%s\n{\n"
		     "\t(void)gs;\n"
		     "\t(void)K;\n"
		     "\t(void)N;\n"
		     "\tint32_t acc[16] = {0};\n"
		     "\tfor (int64_t c = 0; c < kc; c++) {\n"
		     "\t\tconst uint8_t *wc = w + 64 * c;\n"
		     "\t\tconst int8_t *qc = q + 16 * c;\n"
		     "\t\tfor (int r = 0; r < 16; r++)\n"
		     "\t\t\tfor (int s = 0; s < 4; s++)\n"
		     "\t\t\t\tfor (int j = 0; j < 4; j++)\n"
		     "\t\t\t\t\tacc[r] += ((wc[4 * r + j] >> (2 * s)) & 3) * qc[4 * s + j];\n"
		     "\t}\n"
		     "\tfor (int r = 0; r < 16; r++)\n",
		  name, mk_params);
	tmm_epilogue(b, "\t\t", "y[r]", "acc[r]", "qs[0]", "sc[0]");
	cg_printf(b, "}\n");
}

/* The micro kernels' tag: the ISA's, with VNNI (AVX-VNNI, dotprod) one of its own */
static char micro_tag(const Em *m)
{
	char t = isa_tag(&m->isa);
	return t == 'y' && m->isa.vnni ? 'v' : t == 'n' && m->isa.vnni ? 'd' : t;
}

/* Emits (once) the micro kernel for rg groups x tt tokens; name gets its name. */
static int x16_micro(Em *m, const IrNode *n, int rg, int tt, char *name, size_t nn)
{
	snprintf(name, nn, "x16%c_r%d_t%d", micro_tag(m), rg, tt);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	if (m->isa.level == CG_ISA_AVX512)
		mk_avx512(b, name, rg, tt);
	else if (m->isa.level == CG_ISA_AVX2)
		mk_avx2(b, name, rg, tt, m->isa.vnni);
	else if (m->isa.level == CG_ISA_NEON)
		mk_neon(b, name, rg, tt, m->isa.vnni);
	else
		mk_generic(b, name);
	return 0;
}

/* Emits (once) the AVX-512 or AVX2 kernel of one token over ns streams; name gets its
 * name. */
static int x16_stream_micro(Em *m, const IrNode *n, int ns, char *name, size_t nn)
{
	snprintf(name, nn, "x16%c_s%d", micro_tag(m), ns);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (b && m->isa.level == CG_ISA_AVX512)
		mk_avx512_streams(b, name, ns);
	else if (b)
		mk_avx2_streams(b, name, ns, m->isa.vnni);
	return 0;
}

/* Whether the one-token path reads several streams a thread: AVX-512 and AVX2
 * (mk_avx2_streams, with or without VNNI). */
static bool x16_streams(const Em *m)
{
	return m->isa.level == CG_ISA_AVX512 || m->isa.level == CG_ISA_AVX2;
}

const char tmm_streams_params[] =
	"(const uint8_t *const *w, int64_t kc, const int8_t *q, int64_t K,\n"
	"\t\t const int32_t *qs, const float *sc, float wscale, float *const *y)";

void tmm_streams_path(CgBuf *b, const char *kc, const char *one, const char *two, const char *four)
{
	cg_printf(b, "\t/* one token: %d streams a thread (X16_STREAMS) */\n"
		     "\tif (a->n == 1) {\n"
		     "\t\tShareIt it = share_begin_ns(a->sh, NG, gs, ith, nth, %d);\n"
		     "\t\tint64_t lo[%d], hi[%d];\n"
		     "\t\tfor (int c; (c = share_next_ns(&it, lo, hi)) > 0;)\n"
		     "\t\t\tfor (;;) {\n"
		     "\t\t\t\tconst uint8_t *w[%d];\n"
		     "\t\t\t\tfloat *y[%d];\n"
		     "\t\t\t\tint m = 0;\n"
		     "\t\t\t\tfor (int j = 0; j < c; j++)\n"
		     "\t\t\t\t\tif (lo[j] < hi[j]) {\n"
		     "\t\t\t\t\t\tw[m] = a->w + lo[j] * gs;\n"
		     "\t\t\t\t\t\ty[m++] = a->y + 16 * lo[j]++;\n"
		     "\t\t\t\t\t}\n"
		     "\t\t\t\tif (m == 0)\n"
		     "\t\t\t\t\tbreak;\n"
		     "\t\t\t\tint j = 0;\n"
		     "\t\t\t\tfor (; j + 4 <= m; j += 4)\n"
		     "\t\t\t\t\t%s(w + j, %s, a->q, K, qsum, a->s, wscale, y + j);\n"
		     "\t\t\t\tfor (; j + 2 <= m; j += 2)\n"
		     "\t\t\t\t\t%s(w + j, %s, a->q, K, qsum, a->s, wscale, y + j);\n"
		     "\t\t\t\tif (j < m)\n"
		     "\t\t\t\t\t%s(w[j], gs, %s, a->q, K, qsum, a->s, wscale, y[j], N);\n"
		     "\t\t\t}\n"
		     "\t\treturn;\n"
		     "\t}\n",
		  X16_STREAMS, X16_STREAMS, X16_STREAMS, X16_STREAMS, X16_STREAMS, X16_STREAMS, four,
		  kc, two, kc, one, kc);
}

/* The tile for node n in a forward of m->nt tokens: the node's "tile" attribute {rows,
 * tokens} (set from Lua), else the ISA's default. Rows are whole groups of 16. */
static int x16_tile(Em *m, const IrNode *n, Tile *t)
{
	int acc_max = m->isa.level == CG_ISA_AVX512 ? 24
		      : m->isa.level == CG_ISA_AVX2 ? 12
		      : m->isa.level == CG_ISA_NEON ? 24
						    : 1;
	if (m->isa.level == CG_ISA_GENERIC) {
		*t = (Tile){1, 1};
		return 0;
	}
	if (m->isa.level == CG_ISA_AVX512)
		*t = (Tile){2, 8};
	else if (m->isa.level == CG_ISA_NEON && !m->isa.vnni)
		/* 32 q registers: 8 accumulators + 8 broadcast activations + codes, lo/hi */
		*t = (Tile){1, 2};
	else
		/* AVX2: 8 of 16 ymm accumulate; NEON sdot: 16 accumulators + 4 activations */
		*t = (Tile){1, 4};
	const IrAttr *a = ir_attr_find(n, "tile");
	if (a) {
		if (a->type != IR_ATTR_INTS || a->n_ints != 2 || a->ints[0] < 16 || a->ints[0] % 16 ||
		    a->ints[1] < 1)
			return unsupported(m, n, "attribute tile must be {rows, tokens} with rows a "
						 "multiple of 16 and tokens >= 1");
		t->rg = (int)(a->ints[0] / 16);
		t->tt = (int)a->ints[1];
		/* registers per group: ymm halves (AVX2), 4-row q registers (NEON) */
		int per = m->isa.level == CG_ISA_AVX2 ? 2 : m->isa.level == CG_ISA_NEON ? 4 : 1;
		if (t->rg * per * t->tt > acc_max || t->rg > 8)
			return unsupported(m, n, "attribute tile: rows/16 x tokens must fit the "
						 "registers (AVX-512: <= 24, AVX2: rows/8 x tokens <= 12, "
						 "NEON: rows/4 x tokens <= 24)");
	}
	if (t->tt > m->nt)
		t->tt = m->nt;
	/* One token (GEMV) is bound by memory: one group at a time keeps each thread's reads a
	 * single sequential stream, which the prefetchers follow at full speed (two streams a
	 * group apart read markedly slower here). A tile, set or tuned, is for the GEMM. */
	if (m->nt == 1)
		t->rg = 1;
	return 0;
}

int x16_tile_of(Em *m, const IrNode *n, int *rg, int *tt)
{
	Tile t;
	if (x16_tile(m, n, &t))
		return m->e->code;
	*rg = t.rg;
	*tt = t.tt;
	return 0;
}

static int emit_tmm_x16_isa(Em *m, const IrNode *n, int64_t k, int64_t nr);

/* The kernel of node n in the forward of m->nt tokens: attribute kernel_t<nt>, else
 * kernel (both set from Lua or by lut_specialize / tune_kernels), else "simd":
 *   simd          the target's multiply-add family
 *   portable      the plain C multiply-add micro kernel (e.g. to compare against)
 *   lut           the target's table-lookup family (cg_cpu_lut.c)
 *   lut_portable  the plain C table-lookup kernel */
const char *cg_tmm_kernel(const IrNode *n, int nt)
{
	char key[32];
	snprintf(key, sizeof key, "kernel_t%d", nt);
	const char *k = ir_attr_str(n, key, NULL);
	return k ? k : ir_attr_str(n, "kernel", "simd");
}

static int emit_tmm_x16(Em *m, const IrNode *n, int64_t k, int64_t nr)
{
	char drv[160];
	return emit_tmm_x16_named(m, n, k, nr, drv, sizeof drv);
}

int emit_tmm_x16_named(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn)
{
	/* ORDER CG_KERN */
	static const char *const kinds[CG_KERN_ATTR_KINDS] = {"simd", "portable", "lut",
							      "lut_portable"};
	const char *kn = cg_tmm_kernel(n, m->nt);
	int kind = 0;
	while (kind < CG_KERN_ATTR_KINDS && strcmp(kn, kinds[kind]) != 0)
		kind++;
	if (kind == CG_KERN_ATTR_KINDS)
		return unsupported(m, n, "attribute kernel must be \"simd\", \"portable\", \"lut\" "
					 "or \"lut_portable\"");
	/* a target with AMX runs its multiply-add GEMM on tiles; the GEMV stays AVX-512 */
	if (kind == CG_KERN_SIMD && m->isa.amx && m->nt > 1)
		kind = CG_KERN_AMX;
	/* the target's header, whichever kernel the first x16 node asks for */
	if (x16_common(m, n))
		return m->e->code;
	CgIsa keep = m->isa;
	if (kind == CG_KERN_PORTABLE || kind == CG_KERN_LUT_PORTABLE)
		m->isa = (CgIsa){CG_ISA_GENERIC, false, false, false};
	int rc;
	if (kind == CG_KERN_AMX) {
		rc = emit_tmm_amx(m, n, k, nr, driver, dn);
	} else if (kind == CG_KERN_LUT || kind == CG_KERN_LUT_PORTABLE) {
		rc = emit_tmm_lut(m, n, k, nr, driver, dn);
	} else {
		rc = emit_tmm_x16_isa(m, n, k, nr);
		Tile tl;
		if (!rc && !x16_tile(m, n, &tl))
			snprintf(driver, dn, "tmm_x16%c_k%" PRId64 "_n%" PRId64 "_r%d_t%d",
				 isa_tag(&m->isa), k, nr, tl.rg, tl.tt);
	}
	m->isa = keep;
	if (rc)
		return rc;
	m->kcount[kind]++;
	tmm_launch(m, n, driver);
	return 0;
}

static int emit_tmm_x16_isa(Em *m, const IrNode *n, int64_t k, int64_t nr)
{
	Tile tl;
	if (x16_tile(m, n, &tl))
		return m->e->code;
	char name[128], mk[64];
	snprintf(name, sizeof name, "tmm_x16%c_k%" PRId64 "_n%" PRId64 "_r%d_t%d",
		 isa_tag(&m->isa), k, nr, tl.rg, tl.tt);
	/* every micro kernel the driver may call: rg 1..RG (the last unit may be short),
	 * tt 1..TT (the last token tile may be short) */
	for (int rg = 1; rg <= tl.rg; rg++)
		for (int tt = 1; tt <= tl.tt; tt++)
			if (x16_micro(m, n, rg, tt, mk, sizeof mk))
				return m->e->code;
	/* the AVX2 GEMM's over unpacked codes */
	bool upath = m->isa.level == CG_ISA_AVX2 && !m->isa.vnni && m->nt > X16_ONE_STREAM;
	for (int rg = 1; upath && rg <= tl.rg; rg++)
		for (int tt = 1; tt <= tl.tt; tt++) {
			CgBuf *ub;
			snprintf(mk, sizeof mk, "x16u_r%d_t%d", rg, tt);
			if (kern_for(m, n, mk, &ub))
				return m->e->code;
			if (ub)
				mk_avx2_u(ub, mk, rg, tt);
		}
	/* and those of the one-token path over several streams */
	if (x16_streams(m) &&
	    (x16_stream_micro(m, n, 2, mk, sizeof mk) || x16_stream_micro(m, n, 4, mk, sizeof mk)))
		return m->e->code;
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 ", NG = N / 16, RG = %d, TT = %d };\n"
		     "%s"
		     "\tconst int64_t gs = (int64_t)K * 4; /* bytes per group of 16 rows */\n",
		  name, k, nr, tl.rg, tl.tt, tmm_prologue);
	if (x16_streams(m)) {
		/* the kernels exist already (asked for before the driver) */
		char one[32], two[32], four[32], t = micro_tag(m);
		snprintf(one, sizeof one, "x16%c_r1_t1", t);
		snprintf(two, sizeof two, "x16%c_s2", t);
		snprintf(four, sizeof four, "x16%c_s4", t);
		tmm_streams_path(b, "K / 16", one, two, four);
	}
	if (upath)
		avx2_u_path(b, &tl, "u");
	cg_printf(b, "\t/* up to %d tokens (a decode step of few sequences) one group at a time: one\n"
		     "\t * weight stream, as the GEMV (RG streams a group apart read slower) */\n"
		     "\tconst int ru = a->n <= %d ? 1 : RG;\n"
		     "\tint64_t nu = (NG + ru - 1) / ru;\n"
		     "\tShareIt it = share_begin(a->sh, nu, ru * gs, ith, nth);\n"
		     "\tfor (int64_t lo, hi; share_next(&it, &lo, &hi);) {\n",
		  X16_ONE_STREAM, X16_ONE_STREAM);
	cg_printf(b, "\t\tfor (int64_t u = lo; u < hi; u++) {\n"
		     "\t\t\tint64_t g = u * ru;\n"
		     "\t\t\tint rg = NG - g < ru ? (int)(NG - g) : ru;\n"
		     "\t\t\tconst uint8_t *w = a->w + g * gs;\n"
		     "\t\t\tfor (int t0 = 0; t0 < a->n; t0 += TT) {\n"
		     "\t\t\t\tint tt = a->n - t0 < TT ? a->n - t0 : TT;\n"
		     "\t\t\t\tconst int8_t *q = a->q + (int64_t)t0 * K;\n"
		     "\t\t\t\tfloat *y = a->y + (int64_t)t0 * N + 16 * g;\n"
		     "\t\t\t\tswitch (rg * 1000 + tt) {\n");
	for (int rg = 1; rg <= tl.rg; rg++)
		for (int tt = 1; tt <= tl.tt; tt++) {
			x16_micro(m, n, rg, tt, mk, sizeof mk);
			cg_printf(b, "\t\t\t\tcase %d: %s(w, gs, K / 16, q, K, qsum + t0, a->s + t0, wscale, y, N); break;\n",
				  rg * 1000 + tt, mk);
		}
	cg_printf(b, "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\t}\n"
		     "\t}\n"
		     "}\n");
	return 0;
}
