/* ir_quant.c - element types, half/bfloat16 conversion and the weight codecs (FORMATS.md 1, 6). */
#include "ir.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ---- the dtype table --------------------------------------------------- */

static const IrDtypeInfo dtypes[] = { /* ORDER IR_DT */
#define X(id, name, ggml, blk, bytes, tern) [IR_DT_##id] = { name, ggml, blk, bytes, tern },
#include "ir_types.def"
#undef X
};
_Static_assert(sizeof dtypes / sizeof dtypes[0] == IR_DT_COUNT, "dtypes[] vs ir_types.def");

static bool dt_valid(IrDtype dt)
{
	return (unsigned)dt < IR_DT_COUNT;
}

const IrDtypeInfo *ir_dtype_info(IrDtype dt)
{
	return dt_valid(dt) ? &dtypes[dt] : NULL;
}

const char *ir_dtype_name(IrDtype dt)
{
	return dt_valid(dt) ? dtypes[dt].name : "invalid";
}

bool ir_dtype_from_ggml(uint32_t ggml_id, IrDtype *out)
{
	for (int i = 0; i < IR_DT_COUNT; i++) {
		if (dtypes[i].ggml_id >= 0 && (uint32_t)dtypes[i].ggml_id == ggml_id) {
			*out = (IrDtype)i;
			return true;
		}
	}
	return false;
}

/* Names of ggml_type ids, for error messages about types bitnetc cannot read. Ids 36..39
 * mean different things in upstream ggml and in the bitnet.cpp fork (FORMATS.md 1). */
static const char *const ggml_names[] = {
	[0] = "F32",
	[1] = "F16",
	[2] = "Q4_0",
	[3] = "Q4_1",
	[4] = "Q4_2 (removed from ggml)",
	[5] = "Q4_3 (removed from ggml)",
	[6] = "Q5_0",
	[7] = "Q5_1",
	[8] = "Q8_0",
	[9] = "Q8_1",
	[10] = "Q2_K",
	[11] = "Q3_K",
	[12] = "Q4_K",
	[13] = "Q5_K",
	[14] = "Q6_K",
	[15] = "Q8_K",
	[16] = "IQ2_XXS",
	[17] = "IQ2_XS",
	[18] = "IQ3_XXS",
	[19] = "IQ1_S",
	[20] = "IQ4_NL",
	[21] = "IQ3_S",
	[22] = "IQ2_S",
	[23] = "IQ4_XS",
	[24] = "I8",
	[25] = "I16",
	[26] = "I32",
	[27] = "I64",
	[28] = "F64",
	[29] = "IQ1_M",
	[30] = "BF16",
	[31] = "Q4_0_4_4 (removed from ggml)",
	[32] = "Q4_0_4_8 (removed from ggml)",
	[33] = "Q4_0_8_8 (removed from ggml)",
	[34] = "TQ1_0",
	[35] = "TQ2_0",
	[36] = "I2_S (bitnet.cpp fork)",
	[37] = "I8_S (bitnet.cpp fork)",
	[38] = "TL1 (bitnet.cpp fork)",
	[39] = "TL2 (bitnet.cpp fork) or MXFP4 (upstream ggml)",
};

const char *ir_ggml_type_desc(uint32_t ggml_id)
{
	if (ggml_id < sizeof ggml_names / sizeof ggml_names[0] && ggml_names[ggml_id])
		return ggml_names[ggml_id];
	return "unknown type";
}

bool ir_dtype_nbytes(IrDtype dt, uint64_t n, uint64_t row_elems, uint64_t *out)
{
	if (!dt_valid(dt) || row_elems == 0)
		return false;
	const IrDtypeInfo *ti = &dtypes[dt];
	if (row_elems % (uint64_t)ti->block || n % row_elems)
		return false;
	if (dt == IR_DT_I2_S) /* 2 bits per element, then one f32 scale padded to 32 bytes */
		return bn_add_ok(n / 4, 32, out);
	return bn_mul_ok(n / (uint64_t)ti->block, (uint64_t)ti->block_bytes, out);
}

/* ---- half and bfloat16 --------------------------------------------------- */

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

float bn_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
	if (e == 0x1f) /* inf, or NaN with its payload kept */
		return bits_f32(sign | 0x7f800000u | (m << 13));
	if (e == 0) { /* zero or subnormal: m * 2^-24, exact in f32 */
		float v = (float)m * 0x1p-24f;
		return sign ? -v : v;
	}
	return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

/* Round to nearest even everywhere, as x86 F16C with rounding mode 0: overflow gives
 * inf, NaN stays NaN with the quiet bit set and the top payload bits kept. */
uint16_t bn_f32_to_f16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t ax = x & 0x7fffffffu;

	if (ax > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
	if (ax >= 0x477ff000u) /* >= 65520, halfway between 65504 and 2^16: rounds to inf */
		return (uint16_t)(sign | 0x7c00);
	if (ax >= 0x38800000u) { /* normal in f16 (>= 2^-14) */
		uint32_t r = ax - ((uint32_t)(127 - 15) << 23);
		/* adding 0xfff (+1 if the kept lsb is odd) rounds to nearest even; a carry
		 * out of the mantissa correctly bumps the exponent */
		return (uint16_t)(sign | ((r + 0xfffu + ((r >> 13) & 1)) >> 13));
	}
	if (ax <= 0x33000000u) /* <= 2^-25: exactly half the smallest subnormal ties to 0 */
		return sign;
	/* subnormal result: value in units of 2^-24 is the 24-bit significand >> (126 - e) */
	uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
	uint32_t shift = 126 - e; /* 14..24 */
	uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
	if (rem > half || (rem == half && (q & 1)))
		q++; /* may reach 0x400, the smallest normal: still the right encoding */
	return (uint16_t)(sign | q);
}

float bn_bf16_to_f32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

uint16_t bn_f32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	/* NaN: truncate and force quiet, else a payload only in the low half would become inf */
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 64);
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

float bn_round_f16(float f)
{
	return bn_f16_to_f32(bn_f32_to_f16(f));
}

/* exp(x) as the attention's softmax and the SiLU gate compute it: double arithmetic of
 * IEEE's basic operations only, each rounded on its own (bn_ir builds with
 * -ffp-contract=off), so that vector code gets the same bits lane by lane and no host's
 * libm decides them (the generated programs' softmax_exp, codegen/cpu/cg_cpu_prelude.h, is
 * this function). x clamped to [-150, 89] (NaN stays NaN), z = x * 16/ln2, k = z rounded to
 * an integer (the 1.5 * 2^52 shift), r = z - k in [-1/2, 1/2], 2^(r/16) = exp(r ln2/16) by
 * its Taylor polynomial of degree 5 (|r ln2/16| <= 0.0217: relative error ~1.4e-13), times
 * 2^(k/16) = 2^floor(k/16) * 2^((k mod 16)/16) (a table of the 16 doubles nearest), rounded
 * to float: within an ulp of exp(x) everywhere, the float nearest exp(x) but where exp(x)
 * lies within ~2^-42 of a midpoint between two floats. */
float bn_softmax_exp(float x)
{
	static const uint64_t tab[16] = {
		0x3ff0000000000000u, 0x3ff0b5586cf9890fu, 0x3ff172b83c7d517bu, 0x3ff2387a6e756238u,
		0x3ff306fe0a31b715u, 0x3ff3dea64c123422u, 0x3ff4bfdad5362a27u, 0x3ff5ab07dd485429u,
		0x3ff6a09e667f3bcdu, 0x3ff7a11473eb0187u, 0x3ff8ace5422aa0dbu, 0x3ff9c49182a3f090u,
		0x3ffae89f995ad3adu, 0x3ffc199bdd85529cu, 0x3ffd5818dcfba487u, 0x3ffea4afa2a490dau,
	};
	float xc = x < -150.0f ? -150.0f : x > 89.0f ? 89.0f : x;
	double z = (double)xc * 0x1.71547652b82fep+4;
	double kd = z + 0x1.8p52;
	uint64_t ki, sb;
	memcpy(&ki, &kd, sizeof ki);
	kd = kd - 0x1.8p52;
	double r = z - kd;
	double p = 1.0 + r * (0x1.62e42fefa39efp-5 +
			      r * (0x1.ebfbdff82c58fp-11 +
				   r * (0x1.c6b08d704a0c0p-17 + r * (0x1.3b2ab6fba4e77p-23 + r * 0x1.5d87fe78a6731p-30))));
	/* kd's significand ends in k (two's complement): its low 4 bits pick the table entry,
	 * the rest, shifted into the exponent field, scale it (the bits above k's fall off) */
	sb = tab[ki & 15] + ((ki >> 4) << 52);
	double s;
	memcpy(&s, &sb, sizeof s);
	return (float)(p * s);
}

/* ---- little-endian helpers (every format is little-endian on disk) ------- */

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static float rdf32(const uint8_t *p)
{
	return bits_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			(uint32_t)p[3] << 24);
}

static void wrf32(uint8_t *p, float f)
{
	uint32_t u = f32_bits(f);
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(u >> (8 * i));
}

/* ---- Q8_0: fp16 d; int8 qs[32] ------------------------------------------ */

enum { Q8_0_BYTES = 34, Q6_K_BYTES = 210, TQ1_0_BYTES = 54, TQ2_0_BYTES = 66 };

static void dequant_q8_0(const uint8_t *src, float *dst, int64_t nb)
{
	for (int64_t b = 0; b < nb; b++, src += Q8_0_BYTES, dst += 32) {
		float d = bn_f16_to_f32(rd16(src));
		for (int i = 0; i < 32; i++)
			dst[i] = d * (float)(int8_t)src[2 + i];
	}
}

static void quant_q8_0(const float *src, uint8_t *dst, int64_t nb)
{
	for (int64_t b = 0; b < nb; b++, src += 32, dst += Q8_0_BYTES) {
		float amax = 0;
		for (int i = 0; i < 32; i++)
			amax = fmaxf(amax, fabsf(src[i]));
		/* codes use the unrounded d; only the stored d is f16 (the reference's order) */
		float d = amax / 127, id = d != 0 ? 1 / d : 0;
		wr16(dst, bn_f32_to_f16(d));
		for (int i = 0; i < 32; i++)
			dst[2 + i] = (uint8_t)(int8_t)roundf(src[i] * id);
	}
}

/* ---- Q6_K: uint8 ql[128]; uint8 qh[64]; int8 scales[16]; fp16 d ---------
 * Element 128h + 32s + l (half h, slot s 0..3, l 0..31) has the 6-bit code
 * low nibble: ql[64h + l + 32(s&1)], the high nibble of it when s >= 2;
 * high 2 bits: qh[32h + l] bits 2s..2s+1;
 * scale: scales[8h + 2s + l/16]; value = d * scale * (code - 32). */

static void q6k_pos(int e, int *ql, int *qlshift, int *qh, int *sc)
{
	int h = e / 128, s = (e % 128) / 32, l = e % 32;
	*ql = 64 * h + l + 32 * (s & 1);
	*qlshift = s >= 2 ? 4 : 0;
	*qh = 32 * h + l;
	*sc = 8 * h + 2 * s + l / 16;
}

static void dequant_q6_k(const uint8_t *src, float *dst, int64_t nb)
{
	for (int64_t b = 0; b < nb; b++, src += Q6_K_BYTES, dst += 256) {
		const uint8_t *ql = src, *qh = src + 128;
		const int8_t *sc = (const int8_t *)(src + 192);
		float d = bn_f16_to_f32(rd16(src + 208));
		for (int e = 0; e < 256; e++) {
			int iql, sh, iqh, isc;
			q6k_pos(e, &iql, &sh, &iqh, &isc);
			int s = (e % 128) / 32;
			int code = ((ql[iql] >> sh) & 0xf) | (((qh[iqh] >> (2 * s)) & 3) << 4);
			dst[e] = d * (float)sc[isc] * (float)(code - 32);
		}
	}
}

/* Codes for 16 values at step scale (codes -32..31), and the squared error (summed in
 * element order). lrintf is a library call (it may set errno) and was most of Q6_K's
 * time: where every quotient is below 2^22 in magnitude, adding and subtracting 1.5 * 2^23
 * rounds it to an integer exactly as lrintf does (to nearest, ties to even), in loops the
 * compiler can vectorize; otherwise (large, infinite, NaN) lrintf itself. */
static float q6k_group_codes(const float *x, float scale, int *q)
{
	float err = 0, v[16], r[16];
	int big = 0;
	if (scale != 0 && FLT_EVAL_METHOD == 0) {
		for (int i = 0; i < 16; i++)
			v[i] = x[i] / scale;
		for (int i = 0; i < 16; i++)
			big |= !(fabsf(v[i]) < 0x1p22f);
	}
	if (scale != 0 && FLT_EVAL_METHOD == 0 && !big) {
		for (int i = 0; i < 16; i++) {
			float c = (v[i] + 0x1.8p23f) - 0x1.8p23f;
			c = c < -32 ? -32 : c > 31 ? 31 : c;
			q[i] = (int)c;
			r[i] = x[i] - scale * c;
		}
		for (int i = 0; i < 16; i++)
			err += r[i] * r[i];
		return err;
	}
	for (int i = 0; i < 16; i++) {
		int c = 0;
		if (scale != 0) {
			c = (int)lrintf(x[i] / scale);
			c = c < -32 ? -32 : c > 31 ? 31 : c;
		}
		q[i] = c;
		float d = x[i] - scale * (float)c;
		err += d * d;
	}
	return err;
}

/* A group's step: map the extreme value to -32 (the code range is asymmetric), try a few
 * stretches around that, refit each by least squares and keep the best. */
static float q6k_group_scale(const float *x)
{
	float xm = 0;
	for (int i = 0; i < 16; i++)
		if (fabsf(x[i]) > fabsf(xm))
			xm = x[i];
	if (xm == 0)
		return 0;
	float best = -xm / 32, best_err = INFINITY;
	for (int t = -8; t <= 8; t++) {
		int q[16];
		float s = -xm / (32.0f + 0.25f * (float)t);
		q6k_group_codes(x, s, q);
		double sxq = 0, sqq = 0;
		for (int i = 0; i < 16; i++) {
			sxq += (double)x[i] * q[i];
			sqq += (double)q[i] * q[i];
		}
		if (sqq > 0)
			s = (float)(sxq / sqq);
		float err = q6k_group_codes(x, s, q);
		if (err < best_err) {
			best_err = err;
			best = s;
		}
	}
	return best;
}

/* The reference: one block, one group at a time. The fast path below is tested to write
 * the same bytes, and falls back to this for a block it does not handle. */
static void q6k_block_ref(const float *src, uint8_t *dst)
{
	float gs[16], smax = 0;
	for (int g = 0; g < 16; g++) {
		gs[g] = q6k_group_scale(src + 16 * g);
		smax = fmaxf(smax, fabsf(gs[g]));
	}
	uint16_t dh = bn_f32_to_f16(smax / 127);
	float d = bn_f16_to_f32(dh);
	memset(dst, 0, Q6_K_BYTES);
	wr16(dst + 208, dh);
	int8_t sc[16];
	for (int g = 0; g < 16; g++) {
		long v = d != 0 ? lrintf(gs[g] / d) : 0;
		sc[g] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
	}
	memcpy(dst + 192, sc, 16);
	/* codes against the scale the decoder will actually use */
	for (int g = 0; g < 16; g++) {
		int q[16];
		q6k_group_codes(src + 16 * g, d * (float)sc[g], q);
		for (int i = 0; i < 16; i++) {
			int e = 16 * g + i, iql, sh, iqh, isc;
			q6k_pos(e, &iql, &sh, &iqh, &isc);
			int s = (e % 128) / 32, code = q[i] + 32;
			dst[iql] |= (uint8_t)((code & 0xf) << sh);
			dst[128 + iqh] |= (uint8_t)((code >> 4) << (2 * s));
		}
	}
}

/* ---- Q6_K, the 16 groups of a block side by side -----------------------
 * The same float and double operations as the reference, in the same order for each
 * group, with the group as the inner (vector) index: x[i][g] is element i of group g.
 * Where the reference might take lrintf (a quotient of 2^22 or more in magnitude,
 * infinite or NaN: seen as a group's sum of |quotient| not below 2^22) the block is left
 * to the reference. Compiled once per instruction set below; always_inline so that each
 * copy is vectorized for its own (with -ffp-contract=off, as all of bn_ir: a fused
 * multiply-add would change the error sums). */

#define Q6K_INLINE static inline __attribute__((always_inline))

/* The code of x at step s as a float -32..31, div being s, or infinity where s is 0
 * (the quotient is then 0 for a finite x, the code 0 as in the reference). |quotient|
 * is added to *mag, which stays below 2^22 only if every quotient is in the fast range
 * (a NaN or infinity makes it NaN or infinite). */
Q6K_INLINE float q6k_lane_code(float x, float div, float *mag)
{
	float v = x / div;
	*mag += fabsf(v);
	float r = (v + 0x1.8p23f) - 0x1.8p23f;
	r = r < -32 ? -32 : r;
	return r > 31 ? 31 : r;
}

/* What q6k_lanes_* need before their loop: the divisors, no quotient yet. */
Q6K_INLINE void q6k_lanes_start(const float s[16], float div[16], float mag[16])
{
	for (int g = 0; g < 16; g++) {
		div[g] = s[g] != 0 ? s[g] : INFINITY;
		mag[g] = 0;
	}
}

Q6K_INLINE bool q6k_lanes_ok(const float mag[16])
{
	int ok = 1;
	for (int g = 0; g < 16; g++)
		ok &= mag[g] < 0x1p22f;
	return ok;
}

/* The codes of every group at steps s[g] into c; false if a quotient is out of range. */
Q6K_INLINE bool q6k_lanes_codes(const float x[16][16], const float s[16], float c[16][16])
{
	float div[16], mag[16];
	q6k_lanes_start(s, div, mag);
	for (int i = 0; i < 16; i++)
		for (int g = 0; g < 16; g++)
			c[i][g] = q6k_lane_code(x[i][g], div[g], &mag[g]);
	return q6k_lanes_ok(mag);
}

/* Their squared error, in element order per group. */
Q6K_INLINE bool q6k_lanes_err(const float x[16][16], const float s[16], float err[16])
{
	float div[16], mag[16];
	q6k_lanes_start(s, div, mag);
	for (int g = 0; g < 16; g++)
		err[g] = 0;
	for (int i = 0; i < 16; i++)
		for (int g = 0; g < 16; g++) {
			float d = x[i][g] - s[g] * q6k_lane_code(x[i][g], div[g], &mag[g]);
			err[g] += d * d;
		}
	return q6k_lanes_ok(mag);
}

/* The sums of x * code (double, in element order) and code * code (exact in a float:
 * at most 16 * 1024) of every group. (The codes go through memory: with the double
 * sums in the same loop, it does not vectorize.) */
Q6K_INLINE bool q6k_lanes_sums(const float x[16][16], const float s[16], double sxq[16],
			       float sqq[16])
{
	float c[16][16];
	if (!q6k_lanes_codes(x, s, c))
		return false;
	for (int g = 0; g < 16; g++) {
		sxq[g] = 0;
		sqq[g] = 0;
	}
	for (int i = 0; i < 16; i++)
		for (int g = 0; g < 16; g++) {
			sxq[g] += (double)x[i][g] * (double)c[i][g];
			sqq[g] += c[i][g] * c[i][g];
		}
	return true;
}

/* q6k_group_scale for every group; false where the reference must do the block. */
Q6K_INLINE bool q6k_lanes_scales(const float x[16][16], float gs[16])
{
	float xm[16], s[16], best[16], best_err[16], err[16];
	for (int g = 0; g < 16; g++)
		xm[g] = 0;
	for (int i = 0; i < 16; i++)
		for (int g = 0; g < 16; g++)
			xm[g] = fabsf(x[i][g]) > fabsf(xm[g]) ? x[i][g] : xm[g];
	for (int g = 0; g < 16; g++) {
		best[g] = -xm[g] / 32;
		best_err[g] = INFINITY;
	}
	for (int t = -8; t <= 8; t++) {
		float den = 32.0f + 0.25f * (float)t, sqq[16], fit[16];
		double sxq[16];
		for (int g = 0; g < 16; g++)
			s[g] = -xm[g] / den;
		if (!q6k_lanes_sums(x, s, sxq, sqq))
			return false;
		/* the refit where sqq > 0 (so at least 1): the division is done for every
		 * group (by 1 where sqq is 0, and then unused), so that no loop branches */
		for (int g = 0; g < 16; g++)
			fit[g] = (float)(sxq[g] / ((double)sqq[g] + (double)(sqq[g] == 0)));
		for (int g = 0; g < 16; g++)
			s[g] = sqq[g] > 0 ? fit[g] : s[g];
		if (!q6k_lanes_err(x, s, err))
			return false;
		for (int g = 0; g < 16; g++)
			best[g] = err[g] < best_err[g] ? s[g] : best[g];
		for (int g = 0; g < 16; g++)
			best_err[g] = err[g] < best_err[g] ? err[g] : best_err[g];
	}
	for (int g = 0; g < 16; g++)
		gs[g] = xm[g] == 0 ? 0 : best[g];
	return true;
}

/* One block as q6k_block_ref writes it; false (dst undefined) where it must do it. */
Q6K_INLINE bool q6k_block_lanes(const float *src, uint8_t *dst)
{
	float x[16][16], gs[16], s[16], c[16][16];
	for (int g = 0; g < 16; g++)
		for (int i = 0; i < 16; i++)
			x[i][g] = src[16 * g + i];
	if (!q6k_lanes_scales(x, gs))
		return false;
	float smax = 0;
	for (int g = 0; g < 16; g++)
		smax = fmaxf(smax, fabsf(gs[g]));
	uint16_t dh = bn_f32_to_f16(smax / 127);
	float d = bn_f16_to_f32(dh);
	/* the group scales in units of d, rounded as lrintf does where it is exact */
	float r[16];
	int big = 0;
	for (int g = 0; g < 16; g++) {
		float v = gs[g] / (d != 0 ? d : 1.0f);
		big |= !(fabsf(v) < 0x1p22f);
		v = (v + 0x1.8p23f) - 0x1.8p23f;
		r[g] = d != 0 ? (v < -128 ? -128 : v > 127 ? 127 : v) : 0;
	}
	if (big && d != 0)
		return false;
	int8_t sc[16];
	for (int g = 0; g < 16; g++) {
		sc[g] = (int8_t)r[g];
		s[g] = d * (float)sc[g];
	}
	if (!q6k_lanes_codes(x, s, c))
		return false;
	/* element e = 16g + i: half e / 128, slot (e % 128) / 32, l = e % 32 */
	uint8_t code[256];
	for (int i = 0; i < 16; i++)
		for (int g = 0; g < 16; g++)
			code[16 * g + i] = (uint8_t)((int)c[i][g] + 32);
	for (int h = 0; h < 2; h++) {
		const uint8_t *q = code + 128 * h;
		for (int l = 0; l < 32; l++) {
			dst[64 * h + l] = (uint8_t)((q[l] & 0xf) | (q[64 + l] & 0xf) << 4);
			dst[64 * h + 32 + l] = (uint8_t)((q[32 + l] & 0xf) | (q[96 + l] & 0xf) << 4);
			dst[128 + 32 * h + l] = (uint8_t)(q[l] >> 4 | (q[32 + l] >> 4) << 2 |
							  (q[64 + l] >> 4) << 4 | (q[96 + l] >> 4) << 6);
		}
	}
	memcpy(dst + 192, sc, 16);
	wr16(dst + 208, dh);
	return true;
}

/* Blocks the fast path could not do are done by the reference; their number returned. */
#define Q6K_ROWS(name, attr)                                                            \
	attr static int64_t name(const float *src, uint8_t *dst, int64_t nb)            \
	{                                                                               \
		int64_t slow = 0;                                                       \
		for (int64_t b = 0; b < nb; b++, src += 256, dst += Q6_K_BYTES)         \
			if (!q6k_block_lanes(src, dst)) {                               \
				q6k_block_ref(src, dst);                                \
				slow++;                                                 \
			}                                                               \
		return slow;                                                            \
	}

Q6K_ROWS(q6k_rows_portable, )
#if defined(__x86_64__) && defined(__GNUC__)
#define Q6K_X86 1
Q6K_ROWS(q6k_rows_avx2, __attribute__((target("avx2"))))
Q6K_ROWS(q6k_rows_avx512, __attribute__((target("avx512f"))))
#endif

static int64_t q6k_rows_ref(const float *src, uint8_t *dst, int64_t nb)
{
	for (int64_t b = 0; b < nb; b++, src += 256, dst += Q6_K_BYTES)
		q6k_block_ref(src, dst);
	return nb;
}

typedef int64_t (*Q6kRowsFn)(const float *src, uint8_t *dst, int64_t nb);

/* The implementation, or NULL if this host cannot run it. */
static Q6kRowsFn q6k_impl_fn(IrQ6kImpl impl)
{
	switch (impl) {
	case IR_Q6K_REF:
		return q6k_rows_ref;
	case IR_Q6K_PORTABLE:
		return q6k_rows_portable;
#ifdef Q6K_X86
	case IR_Q6K_AVX2:
		return __builtin_cpu_supports("avx2") ? q6k_rows_avx2 : NULL;
	case IR_Q6K_AVX512:
		return __builtin_cpu_supports("avx512f") ? q6k_rows_avx512 : NULL;
#endif
	default:
		return NULL;
	}
}

const char *ir_q6k_impl_name(IrQ6kImpl impl)
{
	static const char *const names[] = {"reference", "portable", "avx2", "avx512"};
	_Static_assert(sizeof names / sizeof names[0] == IR_Q6K_COUNT, "names vs IrQ6kImpl");
	return (unsigned)impl < IR_Q6K_COUNT ? names[impl] : "invalid";
}

int64_t ir_quant_q6_k_impl(IrQ6kImpl impl, const float *src, void *dst, int64_t n)
{
	BN_ASSERT(n >= 0 && n % 256 == 0);
	Q6kRowsFn fn = q6k_impl_fn(impl);
	return fn ? fn(src, dst, n / 256) : -1;
}

/* The widest implementation this host runs; all write the same bytes. */
static void quant_q6_k(const float *src, uint8_t *dst, int64_t nb)
{
	Q6kRowsFn fn = q6k_impl_fn(IR_Q6K_AVX512);
	if (!fn)
		fn = q6k_impl_fn(IR_Q6K_AVX2);
	(fn ? fn : q6k_rows_portable)(src, dst, nb);
}

/* ---- ternary formats (FORMATS.md 6) -------------------------------------- */

/* NaN is skipped, as fmaxf would (the comparison is false); inlined, unlike fmaxf. */
static float absmax(const float *x, int64_t n)
{
	float m = 0;
	for (int64_t i = 0; i < n; i++) {
		float a = fabsf(x[i]);
		m = a > m ? a : m;
	}
	return m;
}

/* The reference's trit: lroundf(x * (1/amax)) + 1, clamped so no input escapes 0..2. */
static int tq_code(float x, float id)
{
	long c = lroundf(x * id) + 1;
	return c < 0 ? 0 : c > 2 ? 2 : (int)c;
}

/* TQ2_0: uint8 qs[64]; fp16 d. Element 128j + 32n + m in qs[32j + m] bits 2n..2n+1. */
static void quant_tq2_0(const float *src, uint8_t *dst, int64_t nb)
{
	for (int64_t b = 0; b < nb; b++, src += 256, dst += TQ2_0_BYTES) {
		float d = absmax(src, 256), id = d != 0 ? 1 / d : 0;
		memset(dst, 0, 64);
		for (int e = 0; e < 256; e++) {
			int shift = 2 * ((e % 128) / 32);
			dst[32 * (e / 128) + e % 32] |= (uint8_t)(tq_code(src[e], id) << shift);
		}
		wr16(dst + 64, bn_f32_to_f16(d));
	}
}

static void ternary_tq2_0(const uint8_t *blk, int8_t *w)
{
	for (int e = 0; e < 256; e++)
		w[e] = (int8_t)(((blk[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) - 1);
}

/* TQ1_0: uint8 qs[48]; uint8 qh[4]; fp16 d. Five trits per byte, first trit most
 * significant: v = sum t_n 3^(4-n), stored as ceil(v * 256 / 243) so that trit n is
 * the top base-3 digit of the byte times 3^n taken mod 256 ((B*3^n mod 256) * 3 >> 8).
 * The byte holding element e and its trit index: */
static void tq1_pos(int e, int *byte, int *n)
{
	if (e < 160) { /* qs[0..31]: elements m + 32n */
		*byte = e % 32;
		*n = e / 32;
	} else if (e < 240) { /* qs[32..47]: elements 160 + m + 16n */
		*byte = 32 + (e - 160) % 16;
		*n = (e - 160) / 16;
	} else { /* qh[0..3]: elements 240 + j + 4n, fifth trit 0 */
		*byte = 48 + (e - 240) % 4;
		*n = (e - 240) / 4;
	}
}

static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };

static void quant_tq1_0(const float *src, uint8_t *dst, int64_t nb)
{
	for (int64_t b = 0; b < nb; b++, src += 256, dst += TQ1_0_BYTES) {
		float d = absmax(src, 256), id = d != 0 ? 1 / d : 0;
		unsigned v[52] = { 0 };
		for (int e = 0; e < 256; e++) {
			int byte, n;
			tq1_pos(e, &byte, &n);
			v[byte] += (unsigned)tq_code(src[e], id) * pow3[4 - n];
		}
		for (int i = 0; i < 52; i++)
			dst[i] = (uint8_t)((v[i] * 256 + 242) / 243);
		wr16(dst + 52, bn_f32_to_f16(d));
	}
}

static void ternary_tq1_0(const uint8_t *blk, int8_t *w)
{
	for (int e = 0; e < 256; e++) {
		int byte, n;
		tq1_pos(e, &byte, &n);
		uint8_t t = (uint8_t)(blk[byte] * pow3[n]);
		w[e] = (int8_t)(((t * 3) >> 8) - 1);
	}
}

/* I2_S: 128-element blocks of 32 bytes; element 128b + 32g + p in byte 32b + p at bits
 * (7-2g):(6-2g); codes 0,1,2 = -1,0,+1. Then the tensor's f32 scale and 28 pad bytes. */
static void quant_i2_s(const float *src, uint8_t *dst, int64_t n)
{
	BN_ASSERT(n % 128 == 0);
	float wscale = absmax(src, n);
	memset(dst, 0, (size_t)(n / 4 + 32));
	wrf32(dst + n / 4, wscale);
	for (int64_t b = 0; b < n / 128; b++, src += 128, dst += 32)
		for (int g = 0; g < 4; g++)
			for (int p = 0; p < 32; p++) {
				/* the threshold is the double 1e-6, not 1e-6f (just below it) */
				float x = src[32 * g + p];
				int c = fabs((double)x) < 1e-6 ? 1 : x > 0 ? 2 : 0;
				dst[p] |= (uint8_t)(c << (6 - 2 * g));
			}
}

float ir_i2s_scale(const void *data, int64_t n)
{
	return rdf32((const uint8_t *)data + n / 4);
}

int ir_ternary_row(IrDtype dt, const void *data, int64_t k, int64_t rows, int64_t row,
		   int8_t *w, float *scales)
{
	const uint8_t *p = data;
	BN_ASSERT(row >= 0 && row < rows);
	if (dt == IR_DT_I2_S) {
		BN_ASSERT(k % 128 == 0);
		p += row * (k / 4);
		/* byte 32b+j holds elements 128b + 32g + j at bits (7-2g):(6-2g); code 3 never
		 * occurs in a valid file and would read as +2 */
		for (int64_t b = 0; b < k / 128; b++, p += 32, w += 128)
			for (int j = 0; j < 32; j++)
				for (int g = 0; g < 4; g++)
					w[32 * g + j] = (int8_t)(((p[j] >> (6 - 2 * g)) & 3) - 1);
		scales[0] = ir_i2s_scale(data, k * rows);
		return 1;
	}
	BN_ASSERT((dt == IR_DT_TQ1_0 || dt == IR_DT_TQ2_0) && k % 256 == 0);
	int64_t nb = k / 256;
	int bytes = dtypes[dt].block_bytes;
	p += row * nb * bytes;
	for (int64_t b = 0; b < nb; b++, p += bytes, w += 256) {
		if (dt == IR_DT_TQ1_0)
			ternary_tq1_0(p, w);
		else
			ternary_tq2_0(p, w);
		scales[b] = bn_f16_to_f32(rd16(p + bytes - 2));
	}
	return (int)nb;
}

/* ---- float weights to ternary (the reference's converter + I2_S quantizer) ---- */

static float round_to(IrDtype dt, float f)
{
	if (dt == IR_DT_F16)
		return bn_round_f16(f);
	if (dt == IR_DT_BF16)
		return bn_bf16_to_f32(bn_f32_to_bf16(f));
	return f;
}

/* The one nonzero magnitude of w (0 if none), -1 if there are several, or -2 with *bad
 * the index of the first NaN or infinity. */
static float single_magnitude(const float *w, int64_t n, int64_t *bad)
{
	float m = 0;
	bool one = true;
	for (int64_t i = 0; i < n; i++) {
		float a = fabsf(w[i]);
		if (!(a <= FLT_MAX)) {
			*bad = i;
			return -2;
		}
		if (a != 0 && a != m) {
			one &= m == 0;
			m = a;
		}
	}
	return one ? m : -1;
}

IrTernRule ir_ternarize(float *w, int64_t n, IrDtype src, float *scale, int64_t *bad)
{
	BN_ASSERT(n > 0);
	float m = single_magnitude(w, n, bad);
	if (m == -2)
		return IR_TERN_NONFINITE;
	if (m >= 0) {
		*scale = m;
		return IR_TERN_KEPT;
	}
	/* The mean in double: the reference's float32 sum can differ in the last bit, which
	 * moves an element only if it sits within an ulp of a rounding boundary. */
	double sum = 0;
	for (int64_t i = 0; i < n; i++)
		sum += fabs((double)w[i]);
	float s = 1.0f / fmaxf((float)(sum / (double)n), 1e-5f);
	float v = round_to(src, 1.0f / s);
	for (int64_t i = 0; i < n; i++) {
		float q = rintf(w[i] * s); /* half to even, as torch.round */
		w[i] = q >= 1 ? v : q <= -1 ? -v : 0;
	}
	*scale = v;
	return IR_TERN_ABSMEAN;
}

/* ---- dispatch ----------------------------------------------------------- */

void ir_dequant(IrDtype dt, const void *src, float *dst, int64_t n)
{
	BN_ASSERT(dt_valid(dt) && n >= 0 && n % dtypes[dt].block == 0);
	const uint8_t *s = src;
	switch (dt) {
	case IR_DT_F32:
		memcpy(dst, src, (size_t)n * sizeof(float));
		break;
	case IR_DT_F16:
		for (int64_t i = 0; i < n; i++)
			dst[i] = bn_f16_to_f32(rd16(s + 2 * i));
		break;
	case IR_DT_BF16:
		for (int64_t i = 0; i < n; i++)
			dst[i] = bn_bf16_to_f32(rd16(s + 2 * i));
		break;
	case IR_DT_Q8_0:
		dequant_q8_0(s, dst, n / 32);
		break;
	case IR_DT_Q6_K:
		dequant_q6_k(s, dst, n / 256);
		break;
	case IR_DT_I8:
		for (int64_t i = 0; i < n; i++)
			dst[i] = (float)(int8_t)s[i];
		break;
	case IR_DT_I32:
		for (int64_t i = 0; i < n; i++) {
			uint32_t u = (uint32_t)s[4 * i] | (uint32_t)s[4 * i + 1] << 8 |
				     (uint32_t)s[4 * i + 2] << 16 | (uint32_t)s[4 * i + 3] << 24;
			dst[i] = (float)(int32_t)u;
		}
		break;
	default: /* ternary formats go through ir_ternary_row */
		BN_ASSERT(!"ir_dequant: not a dense format");
	}
}

void ir_quant(IrDtype dt, const float *src, void *dst, int64_t n)
{
	BN_ASSERT(dt_valid(dt) && n >= 0 && n % dtypes[dt].block == 0);
	uint8_t *d = dst;
	switch (dt) {
	case IR_DT_F32:
		memcpy(dst, src, (size_t)n * sizeof(float));
		break;
	case IR_DT_F16:
		for (int64_t i = 0; i < n; i++)
			wr16(d + 2 * i, bn_f32_to_f16(src[i]));
		break;
	case IR_DT_BF16:
		for (int64_t i = 0; i < n; i++)
			wr16(d + 2 * i, bn_f32_to_bf16(src[i]));
		break;
	case IR_DT_Q8_0:
		quant_q8_0(src, d, n / 32);
		break;
	case IR_DT_Q6_K:
		quant_q6_k(src, d, n / 256);
		break;
	case IR_DT_TQ1_0:
		quant_tq1_0(src, d, n / 256);
		break;
	case IR_DT_TQ2_0:
		quant_tq2_0(src, d, n / 256);
		break;
	case IR_DT_I2_S:
		quant_i2_s(src, d, n);
		break;
	default:
		BN_ASSERT(!"ir_quant: no quantizer for this format");
	}
}
