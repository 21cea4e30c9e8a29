/* cg_cpu_sve.c - the AArch64 SVE ternary matmul: I2_S weights in the GGUF layout times int8
 * activations, vector-length agnostic (svcntb() bytes a step, read at run time; a
 * svwhilelt predicate covers the last, partial step), written with the ACLE intrinsics of
 * <arm_sve.h> (gcc 10+, clang 12+).
 *
 * A GGUF I2_S row is K/4 bytes; byte 32b + j holds elements 128b + j + 32p (p = 0..3) in
 * bits 7-2p..6-2p. As on RVV (cg_cpu_rvv.c), the driver rearranges each token's activations
 * once per call into four planes of K/4 bytes (plane p, byte 32b + j: element
 * 128b + 32p + j), so that byte i of the row and byte i of every plane meet: the row
 * streams through ld1b, each shift-and-mask gives the codes 0..2 one plane multiplies, and
 * sdot (SVE's own int8 dot product, four products into each int32 lane) sums them; uaddv
 * ends the row. Lanes past the row load as zero (the predicated loads zero them), so their
 * products add nothing whatever their codes. The integer sum is exact, so
 * y = ((float)(D - qsum) / s) * wscale is the interpreter's float. The activation
 * quantizer is here too; the head's SVE branch is in cg_cpu_head.c; the rest of cpu-sve is
 * the portable C (docs/targets.md). */
#include "cg_cpu_em.h"

/* Tokens per tile of a multi-token forward: the row's codes decoded once for four. */
enum { SVE_TT = 4 };

int sve_common(Em *m, const IrNode *n)
{
	CgBuf *b;
	if (kern_for(m, n, "sve_common", &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "#if !defined(__aarch64__)\n"
		     "#error \"the SVE kernels are AArch64 code: compile with an AArch64 C compiler "
		     "(bitnetc build --target cpu-sve --cc aarch64-linux-gnu-gcc)\"\n"
		     "#elif !defined(__ARM_FEATURE_SVE)\n"
		     "#error \"the SVE kernels need SVE: -march=armv8.2-a+sve (gcc 10 or newer, "
		     "clang 12 or newer)\"\n"
		     "#endif\n"
		     "#include <arm_sve.h>\n");
	return 0;
}

/* The micro kernel for tt tokens: name(wr, qp, kb, d), d[t] = sum over the row of code *
 * activation for token t (planes at qp + 4 * kb * t). One token keeps two accumulators
 * (planes 0, 2 and 1, 3) so that consecutive sdots do not wait on each other; several
 * tokens have one each. A lane of an accumulator gets at most four sdots of four products
 * of |.| <= 256 a step: 2^19 steps before it could overflow, rows of 2^23 bytes (K = 2^25)
 * at the least vector length. */
static void sve_micro(CgBuf *b, const char *name, int tt)
{
	cg_printf(b, "static inline void %s(const uint8_t *wr, const int8_t *qp, int64_t kb, int32_t *d)\n"
		     "{\n"
		     "\tconst int64_t vb = (int64_t)svcntb();\n",
		  name);
	for (int t = 0; t < tt; t++)
		cg_printf(b, "\tsvint32_t a%d = svdup_n_s32(0);\n", t);
	if (tt == 1)
		cg_printf(b, "\tsvint32_t b0 = svdup_n_s32(0);\n");
	cg_printf(b, "\tfor (int64_t i = 0; i < kb; i += vb) {\n"
		     "\t\tconst svbool_t pg = svwhilelt_b8_s64(i, kb);\n"
		     "\t\tconst svuint8_t v = svld1_u8(pg, wr + i);\n"
		     "\t\tconst svint8_t c0 = svreinterpret_s8_u8(svlsr_n_u8_x(pg, v, 6));\n");
	for (int s = 1; s < 3; s++)
		cg_printf(b, "\t\tconst svint8_t c%d = svreinterpret_s8_u8(svand_n_u8_x(pg, "
			     "svlsr_n_u8_x(pg, v, %d), 3));\n",
			  s, 6 - 2 * s);
	cg_printf(b, "\t\tconst svint8_t c3 = svreinterpret_s8_u8(svand_n_u8_x(pg, v, 3));\n");
	for (int t = 0; t < tt; t++) {
		cg_printf(b, "\t\t{\n"
			     "\t\t\tconst int8_t *q = qp + %d * kb + i;\n", 4 * t);
		for (int p = 0; p < 4; p++) {
			const char *acc = tt == 1 && p % 2 ? "b0" : NULL;
			char an[8];
			snprintf(an, sizeof an, "a%d", t);
			cg_printf(b, "\t\t\t%s = svdot_s32(%s, c%d, svld1_s8(pg, q + %d * kb));\n",
				  acc ? acc : an, acc ? acc : an, p, p);
		}
		cg_printf(b, "\t\t}\n");
	}
	cg_printf(b, "\t}\n");
	if (tt == 1)
		cg_printf(b, "\ta0 = svadd_s32_x(svptrue_b32(), a0, b0);\n");
	for (int t = 0; t < tt; t++)
		cg_printf(b, "\td[%d] = (int32_t)svaddv_s32(svptrue_b32(), a%d);\n", t, t);
	cg_printf(b, "}\n");
}

int emit_tmm_sve(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn)
{
	int tiles = m->nt > 1 ? SVE_TT : 1;
	if (sve_common(m, n))
		return m->e->code;
	char mk[SVE_TT][48];
	for (int tt = 1; tt <= tiles; tt++) {
		snprintf(mk[tt - 1], sizeof mk[tt - 1], "sve_i2s_t%d", tt);
		CgBuf *b;
		if (kern_for(m, n, mk[tt - 1], &b))
			return m->e->code;
		if (b)
			sve_micro(b, mk[tt - 1], tt);
	}
	snprintf(driver, dn, "tmm_i2ssve_k%" PRId64 "_n%" PRId64 "_t%d", k, nr, tiles);
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

int emit_tmm_sve_call(Em *m, const IrNode *n, int64_t k, int64_t nr)
{
	char drv[96], q[64], s[64], y[64];
	if (emit_tmm_sve(m, n, k, nr, drv, sizeof drv))
		return m->e->code;
	m->kcount[CG_KERN_SIMD]++;
	cg_printf(m->fwd, "\t{\n\t\tTmmArg a = {W + %" PRIu64 ", %s, %s, %s, n};\n"
			  "\t\tpool_run(st, %s, &a);\n\t}\n",
		  m->woff[n->in[2]], ref(m, n->in[0], "int8_t", q, sizeof q),
		  ref(m, n->in[1], "float", s, sizeof s), ref(m, n->out[0], "float", y, sizeof y),
		  drv);
	return 0;
}

void sve_quant_tok_body(CgBuf *b, const char *name, int64_t k)
{
	/* amax: |x| never rounds, and the largest float widened is the largest widened float;
	 * fmaxnm (a number over a NaN: lanes and the final fmaxnmv), like
	 * amax = a > amax ? a : amax, never lets a NaN win (all NaN: 0 there, NaN here, and
	 * fmax(., 1e-5) makes both 1e-5). frinti rounds with the FPCR's mode, to nearest even
	 * as rintf; the float clamp is the portable one's, so fcvtzs converts an integer. */
	cg_printf(b, "static void %s(const float *x, int8_t *q, float *s, int n)\n{\n"
		     "\tenum { K = %" PRId64 " };\n"
		     "\tconst int64_t vw = (int64_t)svcntw();\n"
		     "\tfor (int t = 0; t < n; t++) {\n"
		     "\t\tconst float *xr = x + (int64_t)t * K;\n"
		     "\t\tint8_t *qr = q + (int64_t)t * K;\n"
		     "\t\tsvfloat32_t mx = svdup_n_f32(0.0f);\n"
		     "\t\tfor (int64_t i = 0; i < K; i += vw) {\n"
		     "\t\t\tconst svbool_t pg = svwhilelt_b32_s64(i, K);\n"
		     "\t\t\tmx = svmaxnm_f32_m(pg, mx, svabs_f32_x(pg, svld1_f32(pg, xr + i)));\n"
		     "\t\t}\n"
		     "\t\tdouble amax = fmax((double)svmaxnmv_f32(svptrue_b32(), mx), 1e-5);\n"
		     "\t\tfloat st = (float)(127.0 / amax);\n"
		     "\t\tfor (int64_t i = 0; i < K; i += vw) {\n"
		     "\t\t\tconst svbool_t pg = svwhilelt_b32_s64(i, K);\n"
		     "\t\t\tsvfloat32_t v = svrinti_f32_x(pg, svmul_n_f32_x(pg, svld1_f32(pg, xr + i), st));\n"
		     "\t\t\tv = svmax_n_f32_x(pg, svmin_n_f32_x(pg, v, 127.0f), -128.0f);\n"
		     "\t\t\tsvst1b_s32(pg, qr + i, svcvt_s32_f32_x(pg, v));\n"
		     "\t\t}\n"
		     "\t\ts[t] = st;\n"
		     "\t}\n}\n",
		  name, k);
}
