/* cg_cpu_sve.c - the AArch64 SVE ternary matmul: I2_S weights in the GGUF layout times int8
 * activations, vector-length agnostic (svcntb() bytes a step, read at run time; a
 * svwhilelt predicate covers the last, partial step), written with the ACLE intrinsics of
 * <arm_sve.h> (gcc 10+, clang 12+).
 *
 * A GGUF I2_S row is K/4 bytes; byte 32b + j holds elements 128b + j + 32p (p = 0..3) in
 * bits 7-2p..6-2p. As on RVV (cg_cpu_rvv.c), the driver rearranges each token's activations
 * once per call into four planes of K/4 bytes (plane p, byte 32b + j: element
 * 128b + 32p + j), so that byte i of the row and byte i of every plane meet: the row
 * streams through ld1b, a shift (plane 0) or a mask in place (planes 1-3, scaled: see
 * sve_micro) gives the codes one plane multiplies, and sdot (SVE's own int8 dot product,
 * four products into each int32 lane) sums them; saddv ends the row. Lanes past the row load as zero (the predicated loads zero them), so their
 * products add nothing whatever their codes. The integer sum is exact, so
 * y = ((float)(D - qsum) / s) * wscale is the interpreter's float. The activation
 * quantizer and the rmsnorm are here too; the head's SVE branch is in cg_cpu_head.c; the
 * rest of cpu-sve is the portable C (docs/targets.md). */
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

/* The micro kernel for rr rows and tt tokens: name(wr, qp, kb, d), d[r * tt + t] = sum
 * over row r (at wr + r * kb) of code * activation for token t (planes at qp + 4 * kb * t).
 * The codes are not shifted down: plane 0 is byte >> 6, planes 1, 2, 3 the byte's bits
 * masked in place (& 0x30, & 0x0c, & 3), i.e. 16, 4 and 1 times their codes, at most 32,
 * still int8; so every row and token has three accumulators, of planes scaled by 1 (0 and
 * 3), 4 (2) and 16 (1), and d = a1 + a4 / 4 + a16 / 16, each quotient exact. A lane of a16
 * gets at most 4 x 16 x 2 x 128 a step: 2^17 steps before it could overflow, rows of 2^21
 * bytes (K = 2^23) at the least vector length. Two rows share the activation loads (the
 * GEMV); several tokens share the decoded codes (one row, the GEMM). */
static void sve_micro(CgBuf *b, const char *name, int rr, int tt)
{
	static const int scale[4] = {1, 16, 4, 1}; /* each plane's accumulator */
	cg_printf(b, "static inline void %s(const uint8_t *wr, const int8_t *qp, int64_t kb, int32_t *d)\n"
		     "{\n"
		     "\tconst int64_t vb = (int64_t)svcntb();\n",
		  name);
	for (int r = 0; r < rr; r++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\tsvint32_t a1_%d_%d = svdup_n_s32(0), a4_%d_%d = svdup_n_s32(0), "
				     "a16_%d_%d = svdup_n_s32(0);\n",
				  r, t, r, t, r, t);
	cg_printf(b, "\tfor (int64_t i = 0; i < kb; i += vb) {\n"
		     "\t\tconst svbool_t pg = svwhilelt_b8_s64(i, kb);\n");
	for (int r = 0; r < rr; r++)
		cg_printf(b, "\t\tconst svuint8_t v%d = svld1_u8(pg, wr + %d * kb + i);\n"
			     "\t\tconst svint8_t c%d_0 = svreinterpret_s8_u8(svlsr_n_u8_x(pg, v%d, 6));\n"
			     "\t\tconst svint8_t c%d_1 = svreinterpret_s8_u8(svand_n_u8_x(pg, v%d, 0x30));\n"
			     "\t\tconst svint8_t c%d_2 = svreinterpret_s8_u8(svand_n_u8_x(pg, v%d, 0x0c));\n"
			     "\t\tconst svint8_t c%d_3 = svreinterpret_s8_u8(svand_n_u8_x(pg, v%d, 3));\n",
			  r, r, r, r, r, r, r, r, r, r);
	for (int t = 0; t < tt; t++)
		for (int p = 0; p < 4; p++) {
			cg_printf(b, "\t\t{\n"
				     "\t\t\tconst svint8_t q = svld1_s8(pg, qp + %d * kb + i);\n",
				  4 * t + p);
			for (int r = 0; r < rr; r++)
				cg_printf(b, "\t\t\ta%d_%d_%d = svdot_s32(a%d_%d_%d, c%d_%d, q);\n",
					  scale[p], r, t, scale[p], r, t, r, p);
			cg_printf(b, "\t\t}\n");
		}
	cg_printf(b, "\t}\n"
		     "\tconst svbool_t all = svptrue_b32();\n");
	for (int r = 0; r < rr; r++)
		for (int t = 0; t < tt; t++)
			cg_printf(b, "\td[%d] = (int32_t)(svaddv_s32(all, a1_%d_%d) + svaddv_s32(all, a4_%d_%d) / 4 + "
				     "svaddv_s32(all, a16_%d_%d) / 16);\n",
				  r * tt + t, r, t, r, t, r, t);
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
			sve_micro(b, mk[tt - 1], 1, tt);
	}
	if (tiles == 1) { /* the GEMV: two rows a pass */
		CgBuf *b;
		if (kern_for(m, n, "sve_i2s_r2_t1", &b))
			return m->e->code;
		if (b)
			sve_micro(b, "sve_i2s_r2_t1", 2, 1);
	}
	snprintf(driver, dn, "tmm_i2ssve_k%" PRId64 "_n%" PRId64 "_t%d", k, nr, tiles);
	return tmm_planes_driver(m, n, driver, k, nr, tiles, mk, tiles == 1 ? "sve_i2s_r2_t1" : NULL);
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

void sve_rmsnorm_body(CgBuf *b, const char *name, int64_t k, bool add)
{
	/* The portable kernel's bits: each square a float product widened to double (the
	 * floats in the low halves of 64-bit lanes, fcvt), summed in element order by fadda
	 * (SVE's strictly ordered reduction: sum += d[0], then d[1], ...); the scale in scalar
	 * code as there; y = x * scale, then * w, two roundings as there. With add, x + r is
	 * stored first and the sum reads back the stored floats. */
	rmsnorm_sig(b, name, add);
	cg_printf(b, "\tenum { K = %" PRId64 " };\n"
		     "\tconst int64_t vw = (int64_t)svcntw(), vd = (int64_t)svcntd();\n"
		     "\tfor (int t = 0; t < n; t++) {\n",
		  k);
	if (add)
		cg_printf(b, "\t\tconst float *ar = x + (int64_t)t * K, *rr = r + (int64_t)t * K;\n"
			     "\t\tfloat *xr = xs + (int64_t)t * K;\n"
			     "\t\tfor (int64_t i = 0; i < K; i += vw) {\n"
			     "\t\t\tconst svbool_t pg = svwhilelt_b32_s64(i, K);\n"
			     "\t\t\tsvst1_f32(pg, xr + i, svadd_f32_x(pg, svld1_f32(pg, ar + i), svld1_f32(pg, rr + i)));\n"
			     "\t\t}\n");
	else
		cg_printf(b, "\t\tconst float *xr = x + (int64_t)t * K;\n");
	cg_printf(b, "\t\tfloat *yr = y + (int64_t)t * K;\n"
		     "\t\tdouble sum = 0.0;\n"
		     "\t\tfor (int64_t i = 0; i < K; i += vd) {\n"
		     "\t\t\tconst svbool_t pg = svwhilelt_b64_s64(i, K);\n"
		     "\t\t\tconst svfloat32_t v = svreinterpret_f32_u64(svld1uw_u64(pg, (const uint32_t *)(xr + i)));\n"
		     "\t\t\tsum = svadda_f64(pg, sum, svcvt_f64_f32_x(pg, svmul_f32_x(svptrue_b32(), v, v)));\n"
		     "\t\t}\n"
		     "\t\tfloat mean = (float)(sum / (double)K);\n"
		     "\t\tfloat scale = 1.0f / sqrtf(mean + eps);\n"
		     "\t\tfor (int64_t i = 0; i < K; i += vw) {\n"
		     "\t\t\tconst svbool_t pg = svwhilelt_b32_s64(i, K);\n"
		     "\t\t\tsvfloat32_t v = svmul_n_f32_x(pg, svld1_f32(pg, xr + i), scale);\n"
		     "\t\t\tif (w)\n"
		     "\t\t\t\tv = svmul_f32_x(pg, v, svld1_f32(pg, w + i));\n"
		     "\t\t\tsvst1_f32(pg, yr + i, v);\n"
		     "\t\t}\n"
		     "\t}\n}\n");
}
