/* test_quant.c - dtype table, f16/bf16 conversion and the weight codecs of ir_quant.c. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_F16C_CHECK 1
#endif

static uint32_t fbits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static float bitsf(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static uint64_t nbytes(IrDtype dt, uint64_t n, uint64_t row)
{
	uint64_t out = 0;
	assert_true(ir_dtype_nbytes(dt, n, row, &out));
	return out;
}

/* ---- dtype table -------------------------------------------------------- */

static void test_dtype_table(void **state)
{
	(void)state;
	static const struct {
		IrDtype dt;
		const char *name;
		uint32_t ggml;
	} want[] = {
		{ IR_DT_F32, "f32", 0 },      { IR_DT_F16, "f16", 1 },
		{ IR_DT_BF16, "bf16", 30 },   { IR_DT_Q8_0, "q8_0", 8 },
		{ IR_DT_Q6_K, "q6_k", 14 },   { IR_DT_TQ1_0, "tq1_0", 34 },
		{ IR_DT_TQ2_0, "tq2_0", 35 }, { IR_DT_I2_S, "i2_s", 36 },
		{ IR_DT_I8, "i8", 24 },       { IR_DT_I32, "i32", 26 },
	};
	assert_int_equal(sizeof want / sizeof want[0], IR_DT_COUNT);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		IrDtype dt = IR_DT_COUNT;
		assert_true(ir_dtype_from_ggml(want[i].ggml, &dt));
		assert_int_equal(dt, want[i].dt);
		assert_string_equal(ir_dtype_name(dt), want[i].name);
		const IrDtypeInfo *ti = ir_dtype_info(dt);
		assert_non_null(ti);
		assert_int_equal(ti->ggml_id, (int)want[i].ggml);
		assert_int_equal(ti->ternary, dt == IR_DT_TQ1_0 || dt == IR_DT_TQ2_0 || dt == IR_DT_I2_S);
	}
	assert_null(ir_dtype_info(IR_DT_COUNT));
	assert_non_null(ir_dtype_name(IR_DT_COUNT));

	IrDtype dt = IR_DT_F32;
	static const uint32_t unknown[] = { 2, 9, 15, 25, 37, 38, 39, 40, 200, 0xffffffffu };
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
		assert_false(ir_dtype_from_ggml(unknown[i], &dt));
	assert_int_equal(dt, IR_DT_F32); /* untouched on failure */
}

static void test_ggml_type_desc(void **state)
{
	(void)state;
	assert_string_equal(ir_ggml_type_desc(0), "F32");
	assert_string_equal(ir_ggml_type_desc(2), "Q4_0");
	assert_string_equal(ir_ggml_type_desc(12), "Q4_K");
	assert_string_equal(ir_ggml_type_desc(14), "Q6_K");
	assert_string_equal(ir_ggml_type_desc(30), "BF16");
	assert_string_equal(ir_ggml_type_desc(34), "TQ1_0");
	assert_string_equal(ir_ggml_type_desc(35), "TQ2_0");
	assert_string_equal(ir_ggml_type_desc(36), "I2_S (bitnet.cpp fork)");
	assert_string_equal(ir_ggml_type_desc(37), "I8_S (bitnet.cpp fork)");
	assert_string_equal(ir_ggml_type_desc(39), "TL2 (bitnet.cpp fork) or MXFP4 (upstream ggml)");
	assert_string_equal(ir_ggml_type_desc(40), "unknown type");
	assert_string_equal(ir_ggml_type_desc(0xffffffffu), "unknown type");
	for (uint32_t id = 0; id < 300; id++) {
		const char *s = ir_ggml_type_desc(id);
		assert_non_null(s);
		assert_true(s[0] != 0);
	}
}

static void test_nbytes(void **state)
{
	(void)state;
	uint64_t n = 2560 * 6912;
	assert_int_equal(nbytes(IR_DT_F32, n, 2560), 4 * n);
	assert_int_equal(nbytes(IR_DT_F16, n, 2560), 2 * n);
	assert_int_equal(nbytes(IR_DT_BF16, n, 2560), 2 * n);
	assert_int_equal(nbytes(IR_DT_Q8_0, n, 2560), n / 32 * 34);
	assert_int_equal(nbytes(IR_DT_Q6_K, n, 2560), n / 256 * 210);
	assert_int_equal(nbytes(IR_DT_TQ2_0, n, 2560), n / 256 * 66);
	assert_int_equal(nbytes(IR_DT_TQ1_0, n, 2560), n / 256 * 54);
	assert_int_equal(nbytes(IR_DT_I2_S, n, 2560), n / 4 + 32);
	assert_int_equal(nbytes(IR_DT_I2_S, 128, 128), 64);
	assert_int_equal(nbytes(IR_DT_I8, 7, 7), 7);
	assert_int_equal(nbytes(IR_DT_I32, 7, 7), 28);
	assert_int_equal(nbytes(IR_DT_F32, 5, 1), 20);

	uint64_t out = 12345;
	assert_false(ir_dtype_nbytes(IR_DT_Q8_0, 48 * 2, 48, &out));   /* row not a multiple of 32 */
	assert_false(ir_dtype_nbytes(IR_DT_Q6_K, 384, 128, &out));     /* of 256 */
	assert_false(ir_dtype_nbytes(IR_DT_TQ2_0, 128, 128, &out));
	assert_false(ir_dtype_nbytes(IR_DT_TQ1_0, 128 * 3, 128 * 3, &out));
	assert_false(ir_dtype_nbytes(IR_DT_I2_S, 64 * 2, 64, &out));   /* I2_S rows need 128 */
	assert_false(ir_dtype_nbytes(IR_DT_F32, 10, 4, &out));         /* n not whole rows */
	assert_false(ir_dtype_nbytes(IR_DT_F32, 10, 0, &out));
	assert_false(ir_dtype_nbytes(IR_DT_COUNT, 10, 10, &out));
	/* overflow: n near 2^64 */
	uint64_t big = UINT64_MAX / 256 * 256; /* a multiple of every block */
	assert_false(ir_dtype_nbytes(IR_DT_F32, big, 256, &out));
	assert_false(ir_dtype_nbytes(IR_DT_F16, big, 256, &out));
	assert_false(ir_dtype_nbytes(IR_DT_I32, 1ull << 62, 1ull << 62, &out));
	assert_int_equal(nbytes(IR_DT_F32, 1ull << 61, 1ull << 61), 1ull << 63);
	assert_false(ir_dtype_nbytes(IR_DT_Q8_0, big, 256, &out));     /* 34/32 of it overflows */
	assert_int_equal(nbytes(IR_DT_Q6_K, big, 256), big / 256 * 210);
	assert_int_equal(nbytes(IR_DT_I2_S, big, 256), big / 4 + 32);
	assert_int_equal(out, 12345); /* untouched by the failures */
}

/* ---- f16 ----------------------------------------------------------------- */

static void test_f16_known(void **state)
{
	(void)state;
	static const struct {
		float f;
		uint16_t h;
	} exact[] = {
		{ 0.0f, 0x0000 },        { 1.0f, 0x3C00 },          { -2.0f, 0xC000 },
		{ 0.5f, 0x3800 },        { 65504.0f, 0x7BFF },      { -65504.0f, 0xFBFF },
		{ 0x1p-24f, 0x0001 },    { 0x1p-14f, 0x0400 },      { 0x3FFp-24f, 0x03FF },
		{ 1.0f + 0x1p-10f, 0x3C01 }, { 0.333251953125f, 0x3555 },
	};
	for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
		assert_int_equal(bn_f32_to_f16(exact[i].f), exact[i].h);
		assert_true(bn_f16_to_f32(exact[i].h) == exact[i].f);
	}
	assert_int_equal(bn_f32_to_f16(-0.0f), 0x8000);
	assert_int_equal(fbits(bn_f16_to_f32(0x8000)), 0x80000000u);

	/* rounding */
	assert_int_equal(bn_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);      /* tie, to even */
	assert_int_equal(bn_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);  /* tie, to even */
	assert_int_equal(bn_f32_to_f16(1.0f + 0x1p-11f + 0x1p-23f), 0x3C01);
	assert_int_equal(bn_f32_to_f16(65519.0f), 0x7BFF);
	assert_int_equal(bn_f32_to_f16(65520.0f), 0x7C00);             /* tie to even = 2^16 */
	assert_int_equal(bn_f32_to_f16(-65520.0f), 0xFC00);
	assert_int_equal(bn_f32_to_f16(1e10f), 0x7C00);
	assert_int_equal(bn_f32_to_f16(INFINITY), 0x7C00);
	assert_int_equal(bn_f32_to_f16(-INFINITY), 0xFC00);
	assert_int_equal(bn_f32_to_f16(0x1p-25f), 0x0000);             /* tie, to even 0 */
	assert_int_equal(bn_f32_to_f16(0x1.000002p-25f), 0x0001);
	assert_int_equal(bn_f32_to_f16(-0x1p-25f), 0x8000);
	assert_int_equal(bn_f32_to_f16(3 * 0x1p-25f), 0x0002);         /* 1.5 units, to even 2 */
	assert_int_equal(bn_f32_to_f16(5 * 0x1p-25f), 0x0002);         /* 2.5 units, to even 2 */
	assert_int_equal(bn_f32_to_f16(0x1p-30f), 0x0000);
	assert_int_equal(bn_f32_to_f16(0x7FFp-25f), 0x0400);           /* 1023.5 units -> min normal */
	assert_int_equal(bn_f32_to_f16(1e-45f), 0x0000);               /* f32 subnormal */
	assert_true(bn_f16_to_f32(0x7C00) == INFINITY);
	assert_true(bn_f16_to_f32(0xFC00) == -INFINITY);

	/* NaN: stays NaN, quiet */
	uint16_t hn = bn_f32_to_f16(NAN);
	assert_true((hn & 0x7C00) == 0x7C00 && (hn & 0x3FF) != 0 && (hn & 0x200));
	assert_int_equal(bn_f32_to_f16(bitsf(0x7F800001u)) & 0x7E00, 0x7E00); /* payload only low */
	assert_int_equal(bn_f32_to_f16(bitsf(0xFFC00000u)), 0xFE00);
	assert_true(isnan(bn_f16_to_f32(0x7E00)));
	assert_true(isnan(bn_f16_to_f32(0x7C01)));
	assert_true(bn_round_f16(1.0f + 0x1p-11f) == 1.0f);
	assert_true(bn_round_f16(0.1f) == 0.0999755859375f);
}

/* Every f16 converts to f32 and back to itself (NaNs to NaN); f16 -> f32 is monotone. */
static void test_f16_exhaustive(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = bn_f16_to_f32((uint16_t)h);
		bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
		if (nan) {
			assert_true(isnan(f));
			uint16_t back = bn_f32_to_f16(f);
			assert_true((back & 0x7C00) == 0x7C00 && (back & 0x3FF));
			assert_int_equal(back & 0x81FF, h & 0x81FF); /* sign and payload kept */
		} else {
			assert_int_equal(bn_f32_to_f16(f), h);
		}
		assert_int_equal(bn_round_f16(f) == f || nan, true);
	}
	for (uint32_t h = 0; h < 0x7C00; h++)
		assert_true(bn_f16_to_f32((uint16_t)h) < bn_f16_to_f32((uint16_t)(h + 1)));
}

/* Around every midpoint between neighbouring f16 values: below goes down, above goes up,
 * the midpoint itself to the even one. The midpoint is exact in f32 (12 bits). */
static void test_f16_midpoints(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 0x7C00; h++) {
		double lo = bn_f16_to_f32((uint16_t)h);
		double hi = h == 0x7BFF ? 65536.0 : bn_f16_to_f32((uint16_t)(h + 1));
		float mid = (float)((lo + hi) / 2);
		assert_true((double)mid == (lo + hi) / 2);
		uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
		for (int s = 0; s < 2; s++) {
			float sg = s ? -1.0f : 1.0f;
			uint16_t sb = s ? 0x8000 : 0;
			assert_int_equal(bn_f32_to_f16(sg * mid), even | sb);
			assert_int_equal(bn_f32_to_f16(sg * nextafterf(mid, 0)), h | sb);
			assert_int_equal(bn_f32_to_f16(sg * nextafterf(mid, INFINITY)), (h + 1) | sb);
		}
	}
}

#ifdef HAVE_F16C_CHECK
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
	return (uint16_t)_cvtss_sh(f, 0);
}

#endif

/* Bit-exact with x86 F16C (rounding mode 0) over a spread of f32 bit patterns, when the
 * CPU has it (as the runtime detects it: the CPU flag, the OS saving the AVX state, and
 * BITNETC_CPU_MASK not hiding it). */
static void test_f16_vs_f16c(void **state)
{
	(void)state;
#ifdef HAVE_F16C_CHECK
	RtCpuFeatures cpu;
	rt_cpu_detect(&cpu);
	if (!cpu.f16c) {
		const char *fam;
		char why[160];
		bool masked = !rt_cpu_mask(&fam, why, sizeof why) && fam;
		print_message("skipped: f16 conversion against F16C: no F16C here%s%s%s\n",
			      masked ? " (" RT_CPU_MASK_ENV "=" : "", masked ? fam : "",
			      masked ? ")" : "");
		skip();
	}
	uint64_t n = 0;
	for (uint64_t u = 0; u <= 0xFFFFFFFFu; u += 0x3F1) {
		float f = bitsf((uint32_t)u);
		assert_int_equal(bn_f32_to_f16(f), hw_f32_to_f16(f));
		n++;
	}
	/* dense in the subnormal / small-normal range, where the rounding is hardest */
	for (uint32_t u = 0x32F00000u; u < 0x38900000u; u += 7) {
		assert_int_equal(bn_f32_to_f16(bitsf(u)), hw_f32_to_f16(bitsf(u)));
		float neg = bitsf(u | 0x80000000u);
		assert_int_equal(bn_f32_to_f16(neg), hw_f32_to_f16(neg));
	}
	assert_true(n > 4000000);
#else
	print_message("skipped: f16 conversion against F16C: not x86-64\n");
	skip();
#endif
}

/* ---- bf16 ---------------------------------------------------------------- */

static void test_bf16(void **state)
{
	(void)state;
	assert_int_equal(bn_f32_to_bf16(1.0f), 0x3F80);
	assert_int_equal(bn_f32_to_bf16(-2.0f), 0xC000);
	assert_int_equal(bn_f32_to_bf16(bitsf(0x3F808000u)), 0x3F80); /* tie, to even */
	assert_int_equal(bn_f32_to_bf16(bitsf(0x3F818000u)), 0x3F82); /* tie, to even */
	assert_int_equal(bn_f32_to_bf16(bitsf(0x3F808001u)), 0x3F81);
	assert_int_equal(bn_f32_to_bf16(bitsf(0x3F807FFFu)), 0x3F80);
	assert_int_equal(bn_f32_to_bf16(bitsf(0x7F7FFFFFu)), 0x7F80); /* FLT_MAX rounds to inf */
	assert_int_equal(bn_f32_to_bf16(INFINITY), 0x7F80);
	assert_int_equal(bn_f32_to_bf16(-INFINITY), 0xFF80);
	assert_int_equal(bn_f32_to_bf16(bitsf(0x00000001u)), 0x0000);
	assert_int_equal(bn_f32_to_bf16(bitsf(0x00018000u)), 0x0002); /* subnormals round too */
	assert_true(bn_bf16_to_f32(0x3F80) == 1.0f);
	assert_true(bn_bf16_to_f32(0x4049) == 3.140625f);
	/* NaN stays a quiet NaN, even with a payload only in the dropped half */
	assert_int_equal(bn_f32_to_bf16(bitsf(0x7F800001u)), 0x7FC0);
	assert_int_equal(bn_f32_to_bf16(bitsf(0xFF800001u)), 0xFFC0);
	assert_int_equal(bn_f32_to_bf16(bitsf(0x7FC00000u)), 0x7FC0);
	assert_true(isnan(bn_bf16_to_f32(bn_f32_to_bf16(NAN))));
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = bn_bf16_to_f32((uint16_t)h);
		assert_int_equal(fbits(f), h << 16);
		bool nan = (h & 0x7F80) == 0x7F80 && (h & 0x7F);
		uint16_t back = bn_f32_to_bf16(f);
		if (nan)
			assert_int_equal(back, h | 0x40);
		else
			assert_int_equal(back, h);
	}
}

/* ---- dense formats ------------------------------------------------------- */

static void test_dense_roundtrip(void **state)
{
	(void)state;
	uint64_t rs = 1;
	enum { N = 1000 };
	float x[N], y[N];
	uint8_t buf[4 * N];
	for (int i = 0; i < N; i++)
		x[i] = tu_randf(&rs) * 100;
	ir_quant(IR_DT_F32, x, buf, N);
	ir_dequant(IR_DT_F32, buf, y, N);
	assert_memory_equal(x, y, sizeof x);
	ir_quant(IR_DT_F16, x, buf, N);
	ir_dequant(IR_DT_F16, buf, y, N);
	for (int i = 0; i < N; i++) {
		assert_true(y[i] == bn_round_f16(x[i]));
		assert_int_equal(buf[2 * i] | buf[2 * i + 1] << 8, bn_f32_to_f16(x[i])); /* little-endian */
	}
	ir_quant(IR_DT_BF16, x, buf, N);
	ir_dequant(IR_DT_BF16, buf, y, N);
	for (int i = 0; i < N; i++) {
		assert_true(y[i] == bn_bf16_to_f32(bn_f32_to_bf16(x[i])));
		assert_true(fabsf(y[i] - x[i]) <= fabsf(x[i]) * 0x1p-8f);
	}

	const int8_t i8[4] = { -128, -1, 0, 127 };
	ir_dequant(IR_DT_I8, i8, y, 4);
	assert_true(y[0] == -128 && y[1] == -1 && y[2] == 0 && y[3] == 127);
	const uint8_t i32[12] = { 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80 };
	ir_dequant(IR_DT_I32, i32, y, 3);
	assert_true(y[0] == -1 && y[1] == 256 && y[2] == -2147483648.0f);
}

static void test_q8_0_known(void **state)
{
	(void)state;
	float x[64];
	uint8_t b[68];
	/* x = (i-16)/2: amax 8, d = 8/127 (f16 0x2C08 = 0.06298828), codes round((i-16)*7.9375) */
	for (int i = 0; i < 32; i++)
		x[i] = (float)(i - 16) * 0.5f;
	for (int i = 32; i < 64; i++)
		x[i] = 0; /* an all-zero block: d = 0, codes 0 */
	memset(b, 0xAA, sizeof b);
	ir_quant(IR_DT_Q8_0, x, b, 64);
	assert_int_equal(b[0], 0x08);
	assert_int_equal(b[1], 0x2C);
	assert_int_equal((int8_t)b[2 + 0], -127);
	assert_int_equal((int8_t)b[2 + 1], -119);  /* -15 * 7.9375 = -119.06 */
	assert_int_equal((int8_t)b[2 + 15], -8);
	assert_int_equal((int8_t)b[2 + 16], 0);
	assert_int_equal((int8_t)b[2 + 17], 8);
	assert_int_equal((int8_t)b[2 + 18], 16);  /* 15.875 */
	assert_int_equal((int8_t)b[2 + 31], 119);
	for (int i = 34; i < 68; i++)
		assert_int_equal(b[i], 0);
	float y[64];
	ir_dequant(IR_DT_Q8_0, b, y, 64);
	assert_true(y[0] == 0.06298828125f * -127);
	assert_true(y[17] == 0.06298828125f * 8);
	for (int i = 32; i < 64; i++)
		assert_true(y[i] == 0);
}

static void test_q8_0_roundtrip(void **state)
{
	(void)state;
	enum { N = 32 * 64 };
	uint64_t rs = 7;
	float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
	uint8_t *b = malloc(N / 32 * 34);
	for (int i = 0; i < N; i++)
		x[i] = tu_randf(&rs) * (float)(1 + i / 32); /* a different range per block */
	ir_quant(IR_DT_Q8_0, x, b, N);
	ir_dequant(IR_DT_Q8_0, b, y, N);
	for (int blk = 0; blk < N / 32; blk++) {
		float amax = 0;
		for (int i = 0; i < 32; i++)
			amax = fmaxf(amax, fabsf(x[32 * blk + i]));
		/* half a step, plus the f16 rounding of d times the largest code */
		float bound = amax / 127 * (0.5f + 127 * 0x1p-11f) * 1.0001f;
		for (int i = 0; i < 32; i++)
			assert_true(fabsf(x[32 * blk + i] - y[32 * blk + i]) <= bound);
	}
	free(x);
	free(y);
	free(b);
}

/* Independent Q6_K packer written from the decoder's description: per half of 128,
 * l 0..31: y[l] low nibble ql[l], qh[l] bits 0-1, scale is+0; y[l+32] low ql[l+32],
 * bits 2-3, is+2; y[l+64] high ql[l], bits 4-5, is+4; y[l+96] high ql[l+32], bits 6-7,
 * is+6 (is = l/16); value d * scale * (code - 32). */
static void q6k_pack(const uint8_t *code, const int8_t *sc, uint16_t d, uint8_t *blk)
{
	uint8_t *ql = blk, *qh = blk + 128;
	memset(blk, 0, 210);
	for (int h = 0; h < 2; h++, ql += 64, qh += 32, code += 128) {
		for (int l = 0; l < 32; l++) {
			ql[l] = (uint8_t)((code[l] & 0xF) | (code[l + 64] & 0xF) << 4);
			ql[l + 32] = (uint8_t)((code[l + 32] & 0xF) | (code[l + 96] & 0xF) << 4);
			qh[l] = (uint8_t)((code[l] >> 4) | (code[l + 32] >> 4) << 2 |
					  (code[l + 64] >> 4) << 4 | (code[l + 96] >> 4) << 6);
		}
	}
	memcpy(blk + 192, sc, 16);
	blk[208] = (uint8_t)d;
	blk[209] = (uint8_t)(d >> 8);
}

static void test_q6_k_known(void **state)
{
	(void)state;
	uint8_t blk[210];
	float y[256];
	/* all bytes zero but d = 1 and scales 1: every code 0, value -32 */
	memset(blk, 0, sizeof blk);
	memset(blk + 192, 1, 16);
	blk[209] = 0x3C;
	blk[0] = 0xFF;   /* ql[0]: low nibble element 0, high nibble element 64 */
	blk[128] = 0xFF; /* qh[0]: high bits of elements 0, 32, 64, 96 */
	blk[128 + 32 + 5] = 0x40; /* qh of half 1, l 5: bits 6-7 = 1 -> element 128+96+5 */
	ir_dequant(IR_DT_Q6_K, blk, y, 256);
	assert_true(y[0] == 31);   /* 0x3F - 32 */
	assert_true(y[64] == 31);
	assert_true(y[32] == 16);  /* 0x30 - 32 */
	assert_true(y[96] == 16);
	assert_true(y[1] == -32);
	assert_true(y[229] == -16); /* 0x10 - 32 */
	assert_true(y[228] == -32);

	/* every code and a scale per group (some negative), through the packer above */
	uint8_t code[256];
	int8_t sc[16];
	for (int e = 0; e < 256; e++)
		code[e] = (uint8_t)((e * 37 + 11) % 64);
	for (int g = 0; g < 16; g++)
		sc[g] = (int8_t)(g % 3 == 0 ? -(g + 1) * 7 : (g + 1) * 5);
	q6k_pack(code, sc, 0x3400 /* 0.25 */, blk);
	ir_dequant(IR_DT_Q6_K, blk, y, 256);
	for (int e = 0; e < 256; e++)
		assert_true(y[e] == 0.25f * (float)sc[e / 16] * (float)(code[e] - 32));
}

/* A 6-bit quantizer cannot do much better than a step / sqrt(12) error: about 1.3% of the
 * rms for uniform data and 1.7% for gaussian groups of 16 (whose extreme is ~2 sigma). */
static double q6k_rel_rms(const float *x, const float *y, int64_t n)
{
	double se = 0, sx = 0;
	for (int64_t i = 0; i < n; i++) {
		se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
		sx += (double)x[i] * x[i];
	}
	return sqrt(se / sx);
}

static void test_q6_k_roundtrip(void **state)
{
	(void)state;
	enum { NB = 64, N = 256 * NB };
	uint64_t rs = 99;
	float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
	uint8_t *b = malloc(NB * 210);
	for (int i = 0; i < N; i++) {
		x[i] = tu_randf(&rs);
		if (i >= N / 2) /* gaussian-ish blocks, a different spread per block */
			x[i] = (tu_randf(&rs) + tu_randf(&rs) + x[i]) * (float)(1 + i / 256 % 7) * 0.01f;
	}
	for (int i = 0; i < 16; i++)
		x[256 * 4 + 32 + i] = 0; /* an all-zero group */
	for (int i = 0; i < 256; i++)
		x[256 * 6 + i] = 0; /* an all-zero block */
	ir_quant(IR_DT_Q6_K, x, b, N);
	ir_dequant(IR_DT_Q6_K, b, y, N);
	double ru = q6k_rel_rms(x, y, N / 2), rg = q6k_rel_rms(x + N / 2, y + N / 2, N / 2);
	print_message("q6_k relative rms error: uniform %.3f%%, gaussian %.3f%%\n", 100 * ru, 100 * rg);
	assert_true(ru < 0.014);
	assert_true(rg < 0.019);
	/* no element is off by more than one step of its group (only the clamp at +31 of a
	 * group whose extreme is negative costs a whole step) */
	for (int blk = 0; blk < NB; blk++) {
		const uint8_t *p = b + 210 * blk;
		float d = bn_f16_to_f32((uint16_t)(p[208] | p[209] << 8));
		for (int i = 0; i < 256; i++) {
			float step = fabsf(d * (float)(int8_t)p[192 + i / 16]);
			int64_t e = 256 * blk + i;
			assert_true(fabsf(x[e] - y[e]) <= step * 1.0001f + 1e-9f);
		}
	}
	for (int i = 0; i < 16; i++)
		assert_true(y[256 * 4 + 32 + i] == 0);
	for (int i = 0; i < 256; i++)
		assert_true(y[256 * 6 + i] == 0);
	free(x);
	free(y);
	free(b);
}

/* ---- Q6_K: the fast quantizers against the reference ----------------------- */

enum { Q6K_NB = 3000 };

/* Weights as a model's f16 head holds them: gaussian-ish, a spread per block, a few
 * outliers, some zero groups; every quotient in the fast range. */
static void q6k_fill_plain(float *x, int64_t nb, uint64_t seed)
{
	uint64_t rs = seed;
	for (int64_t b = 0; b < nb; b++) {
		float spread = 0.002f * (float)(1 + tu_rand(&rs) % 50);
		for (int i = 0; i < 256; i++) {
			float v = (tu_randf(&rs) + tu_randf(&rs) + tu_randf(&rs)) * spread;
			if (tu_rand(&rs) % 97 == 0)
				v *= 20;
			x[256 * b + i] = bn_f16_to_f32(bn_f32_to_f16(v));
		}
		if (b % 11 == 0)
			memset(x + 256 * b + 16 * (int)(tu_rand(&rs) % 16), 0, 16 * sizeof *x);
	}
}

/* One element of a hostile block of kind k (see q6k_fill_hostile). */
static float q6k_hostile_value(int k, int i, float scale, uint64_t *rs)
{
	float u = tu_randf(rs);
	switch (k) {
	case 0: /* uniform at a random power of two, from all-subnormal to f16-d overflow */
		return u * scale;
	case 1: /* zeros, negative zeros and zero groups among values */
		return i % 3 == 0 ? 0.0f : i % 3 == 1 ? -0.0f : (i / 16 % 2 ? u : 0);
	case 2: /* one huge value in each group of small ones */
		return i % 16 == 5 ? ldexpf(i & 32 ? 1 : -1, 8 + i / 32) : u * 0x1p-12f;
	case 3: /* ties: half-integer steps of a group whose extreme is exactly -32 steps */
		return i % 16 == 0 ? -32 * scale : (float)((int)(tu_rand(rs) % 63) - 32) * scale +
						      (i & 1 ? 0.5f * scale : 0);
	case 4: /* subnormals: random bits below the smallest normal */
		return bitsf((uint32_t)(tu_rand(rs) & 0x807fffffu));
	case 5: /* extremes (the largest are with NaN, below: d overflows f16) */
	{
		static const float ext[] = {FLT_MIN, -FLT_MIN, FLT_TRUE_MIN, -FLT_TRUE_MIN,
					    0x1p22f, -0x1p22f, 1, -1, 0x1p-100f, 0x1.fffffep-1f};
		return ext[tu_rand(rs) % (sizeof ext / sizeof ext[0])];
	}
	case 6: /* groups of very different size: scales that round to 0, and the clamp */
		return u * (i / 16 == 3 ? 1.0f : 0x1p-30f * (float)(i / 16));
	case 7: /* f16 values that are exact ties of the f16 d */
		return bn_f16_to_f32((uint16_t)(tu_rand(rs) & 0xfbff));
	default: /* infinities, NaN and FLT_MAX among values: the reference's lrintf path */
		return i == 7 ? INFINITY : i == 100 ? -INFINITY : i == 200 ? NAN :
		       i == 255 ? -FLT_MAX : u;
	}
}

/* nb blocks of kind b % 9 at random scales: values that reach every branch of the
 * reference (zero groups, zero and subnormal steps, ties, clamps, lrintf). */
static void q6k_fill_hostile(float *x, int64_t nb, uint64_t seed)
{
	uint64_t rs = seed;
	for (int64_t b = 0; b < nb; b++) {
		int k = (int)(b % 9), e = (int)(tu_rand(&rs) % 276) - 150;
		float scale = ldexpf(1, k == 3 ? e % 32 : e); /* ties at moderate scales */
		for (int i = 0; i < 256; i++)
			x[256 * b + i] = q6k_hostile_value(k, i, scale, &rs);
	}
}

/* impl writes the reference's bytes for plain and for hostile blocks; it does every
 * plain block itself, and leaves the reference some hostile ones (NaN, infinity). */
static void check_q6k_impl(IrQ6kImpl impl)
{
	float *x = malloc(256 * Q6K_NB * sizeof *x);
	uint8_t *want = malloc(210 * Q6K_NB), *got = malloc(210 * Q6K_NB);
	assert_true(x && want && got);
	for (int kind = 0; kind < 2; kind++) {
		if (kind == 0)
			q6k_fill_plain(x, Q6K_NB, 7);
		else
			q6k_fill_hostile(x, Q6K_NB, 8);
		assert_int_equal(ir_quant_q6_k_impl(IR_Q6K_REF, x, want, 256 * Q6K_NB), Q6K_NB);
		memset(got, 0xa5, 210 * Q6K_NB);
		int64_t slow = ir_quant_q6_k_impl(impl, x, got, 256 * Q6K_NB);
		if (slow < 0) {
			print_message("skipped: this CPU cannot run the %s Q6_K quantizer\n",
				      ir_q6k_impl_name(impl));
			free(x), free(want), free(got);
			skip();
		}
		for (int b = 0; b < Q6K_NB; b++)
			if (memcmp(want + 210 * b, got + 210 * b, 210) != 0)
				fail_msg("%s: Q6_K block %d (%s data) differs from the reference",
					 ir_q6k_impl_name(impl), b, kind ? "hostile" : "plain");
		if (kind == 0)
			assert_int_equal(slow, 0);
		else
			assert_true(slow >= Q6K_NB / 9 && slow < Q6K_NB / 2);
	}
	/* ir_quant takes one of them */
	ir_quant(IR_DT_Q6_K, x, got, 256 * Q6K_NB);
	assert_memory_equal(want, got, 210 * Q6K_NB);
	free(x);
	free(want);
	free(got);
}

static void test_q6_k_portable(void **state)
{
	(void)state;
	check_q6k_impl(IR_Q6K_PORTABLE);
}

static void test_q6_k_avx2(void **state)
{
	(void)state;
	check_q6k_impl(IR_Q6K_AVX2);
}

static void test_q6_k_avx512(void **state)
{
	(void)state;
	check_q6k_impl(IR_Q6K_AVX512);
}

/* ---- ternary formats ----------------------------------------------------- */

/* Random ternary weights; every 256-element block gets at least one non-zero so its
 * absmax is the scale. */
static void rand_ternary(uint64_t *rs, int8_t *t, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		t[i] = (int8_t)((int)(tu_rand(rs) % 3) - 1);
	for (int64_t i = 0; i < n; i += 256)
		t[i + (int64_t)(tu_rand(rs) % 256)] = (tu_rand(rs) & 1) ? 1 : -1;
}

static void check_ternary_roundtrip(IrDtype dt, const int8_t *t, float scale, int64_t k,
				    int64_t rows)
{
	int64_t n = k * rows;
	float *x = malloc((size_t)n * sizeof *x);
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)t[i] * scale;
	uint64_t nb = 0;
	assert_true(ir_dtype_nbytes(dt, (uint64_t)n, (uint64_t)k, &nb));
	uint8_t *buf = malloc(nb);
	ir_quant(dt, x, buf, n);
	int8_t *w = malloc((size_t)k);
	float sc[64];
	for (int64_t r = 0; r < rows; r++) {
		int ns = ir_ternary_row(dt, buf, k, rows, r, w, sc);
		assert_memory_equal(w, t + r * k, (size_t)k);
		if (dt == IR_DT_I2_S) {
			assert_int_equal(ns, 1);
			assert_true(sc[0] == scale);
		} else {
			assert_int_equal(ns, k / 256);
			for (int i = 0; i < ns; i++)
				assert_true(sc[i] == bn_round_f16(scale));
		}
	}
	free(x);
	free(buf);
	free(w);
}

static void test_i2s_known_bytes(void **state)
{
	(void)state;
	enum { K = 256, ROWS = 2, N = K * ROWS };
	float x[N] = { 0 };
	uint8_t b[N / 4 + 32];
	const float s = 0.75f;
	/* byte 0: bits 7:6 element 0 (+1 -> 2), 5:4 element 32 (-1 -> 0), 3:2 element 64
	 * (0 -> 1), 1:0 element 96 (+1 -> 2): 0b10_00_01_10 */
	x[0] = s, x[32] = -s, x[64] = 0, x[96] = s;
	/* byte 1: elements 1, 33, 65, 97 = -1, +1, -1, 0: 0b00_10_00_01 */
	x[1] = -s, x[33] = s, x[65] = -s, x[97] = 0;
	/* byte 32 + 5 (second block of row 0): element 128 + 5 = +1, rest 0: 0b10_01_01_01 */
	x[133] = s;
	/* byte 64 + 31 (row 1, first block): element 256 + 96 + 31 = -1: 0b01_01_01_00 */
	x[256 + 127] = -s;
	/* below 1e-6 in magnitude is 0 even if negative; just above is a full +-1 */
	x[2] = 5e-7f, x[34] = -5e-7f, x[66] = 2e-6f, x[98] = -2e-6f;
	/* the reference compares in double: 1e-6f (9.99999997e-7) is still 0, the next float
	 * up is +1. Byte 3: elements 3, 35, 67, 99 = 0, +1, -1, 0: 0b01_10_00_01 */
	x[3] = 1e-6f, x[35] = nextafterf(1e-6f, 1), x[67] = -nextafterf(1e-6f, 1), x[99] = -1e-6f;
	memset(b, 0xAA, sizeof b);
	ir_quant(IR_DT_I2_S, x, b, N);
	assert_int_equal(b[0], 0x86);
	assert_int_equal(b[1], 0x21);
	assert_int_equal(b[2], 0x58); /* 01 01 10 00 */
	assert_int_equal(b[3], 0x61);
	assert_int_equal(b[37], 0x95);
	assert_int_equal(b[95], 0x54);
	for (int i = 0; i < N / 4; i++)
		if (i > 3 && i != 37 && i != 95)
			assert_int_equal(b[i], 0x55);
	/* f32 0.75 = 0x3F400000 little-endian at n/4, then 28 zero bytes */
	static const uint8_t sbytes[4] = { 0x00, 0x00, 0x40, 0x3F };
	assert_memory_equal(b + N / 4, sbytes, 4);
	for (int i = N / 4 + 4; i < N / 4 + 32; i++)
		assert_int_equal(b[i], 0);
	assert_true(ir_i2s_scale(b, N) == s);

	int8_t w[K];
	float sc[2] = { 0 };
	assert_int_equal(ir_ternary_row(IR_DT_I2_S, b, K, ROWS, 0, w, sc), 1);
	assert_true(sc[0] == s);
	assert_int_equal(w[0], 1);
	assert_int_equal(w[32], -1);
	assert_int_equal(w[64], 0);
	assert_int_equal(w[96], 1);
	assert_int_equal(w[2], 0);
	assert_int_equal(w[34], 0);
	assert_int_equal(w[66], 1);
	assert_int_equal(w[98], -1);
	assert_int_equal(w[3], 0);
	assert_int_equal(w[35], 1);
	assert_int_equal(w[67], -1);
	assert_int_equal(w[99], 0);
	assert_int_equal(w[133], 1);
	assert_int_equal(ir_ternary_row(IR_DT_I2_S, b, K, ROWS, 1, w, sc), 1);
	assert_int_equal(w[127], -1);
	assert_int_equal(w[126], 0);
}

static void test_i2s_roundtrip(void **state)
{
	(void)state;
	uint64_t rs = 3;
	int8_t t[256 * 3];
	rand_ternary(&rs, t, 256 * 3);
	check_ternary_roundtrip(IR_DT_I2_S, t, 0.0123f, 256, 3);
	check_ternary_roundtrip(IR_DT_I2_S, t, 1.7f, 128, 6);
	/* all zero: scale 0, every code 1 */
	memset(t, 0, sizeof t);
	float x[256 * 3] = { 0 };
	uint8_t b[256 * 3 / 4 + 32];
	ir_quant(IR_DT_I2_S, x, b, 256 * 3);
	for (int i = 0; i < 256 * 3 / 4; i++)
		assert_int_equal(b[i], 0x55);
	assert_true(ir_i2s_scale(b, 256 * 3) == 0);
}

static void test_tq2_0_known_bytes(void **state)
{
	(void)state;
	float x[256] = { 0 };
	uint8_t b[66];
	const float s = 0.5f;
	/* element 128j + 32n + m is in qs[32j + m] bits 2n..2n+1; codes 0,1,2 = -1,0,+1 */
	x[0] = s;               /* j0 n0 m0: code 2 */
	x[32] = -s;             /* j0 n1 m0: code 0 */
	x[96] = s;              /* j0 n3 m0: code 2 ; n2 stays 1 -> qs[0] = 2|0<<2|1<<4|2<<6 */
	x[128 + 31] = -s;       /* j1 n0 m31: code 0 */
	x[128 + 96 + 31] = s;   /* j1 n3 m31: code 2 -> qs[63] = 0|1<<2|1<<4|2<<6 */
	x[128 + 64 + 7] = -s;   /* j1 n2 m7: code 0 -> qs[39] = 1|1<<2|0<<4|1<<6 */
	memset(b, 0xAA, sizeof b);
	ir_quant(IR_DT_TQ2_0, x, b, 256);
	assert_int_equal(b[0], 0x92);
	assert_int_equal(b[63], 0x94);
	assert_int_equal(b[39], 0x45);
	for (int i = 1; i < 63; i++)
		if (i != 39)
			assert_int_equal(b[i], 0x55);
	assert_int_equal(b[64], 0x00); /* d = f16(0.5) = 0x3800 at bytes 64..65 */
	assert_int_equal(b[65], 0x38);

	/* non-ternary input: code = lroundf(x / amax) + 1, halves away from zero */
	for (int i = 0; i < 256; i++)
		x[i] = 0;
	x[0] = 1.0f, x[1] = 0.5f, x[2] = -0.5f, x[3] = 0.49f, x[4] = -0.49f, x[5] = -0.9f;
	ir_quant(IR_DT_TQ2_0, x, b, 256);
	int8_t w[256];
	float sc[1];
	assert_int_equal(ir_ternary_row(IR_DT_TQ2_0, b, 256, 1, 0, w, sc), 1);
	assert_true(sc[0] == 1.0f);
	static const int8_t want[6] = { 1, 1, -1, 0, 0, -1 };
	assert_memory_equal(w, want, 6);

	/* d is the f16 of the absmax: 0.1 -> 0x2E66 */
	x[0] = 0.1f;
	for (int i = 1; i < 256; i++)
		x[i] = 0;
	ir_quant(IR_DT_TQ2_0, x, b, 256);
	assert_int_equal(b[64] | b[65] << 8, 0x2E66);
	/* an all-zero block: d = 0, every code 1 */
	memset(x, 0, sizeof x);
	ir_quant(IR_DT_TQ2_0, x, b, 256);
	for (int i = 0; i < 64; i++)
		assert_int_equal(b[i], 0x55);
	assert_int_equal(b[64] | b[65] << 8, 0);
}

static void test_tq2_0_roundtrip(void **state)
{
	(void)state;
	uint64_t rs = 5;
	int8_t t[512 * 3];
	rand_ternary(&rs, t, 512 * 3);
	check_ternary_roundtrip(IR_DT_TQ2_0, t, 0.3f, 512, 3);
	check_ternary_roundtrip(IR_DT_TQ2_0, t, 2.0f, 256, 6);
}

/* The base-3 digits of v, most significant first. */
static void trits_of(int v, int nd, int *t)
{
	for (int i = nd - 1; i >= 0; i--, v /= 3)
		t[i] = v % 3;
}

/* TQ1_0 byte of trits t0..t4 (t0 most significant): ceil(v * 256 / 243). */
static uint8_t tq1_byte(const int *t)
{
	int v = (((t[0] * 3 + t[1]) * 3 + t[2]) * 3 + t[3]) * 3 + t[4];
	return (uint8_t)((v * 256 + 242) / 243);
}

static void test_tq1_0_known_bytes(void **state)
{
	(void)state;
	float x[256] = { 0 };
	uint8_t b[54];
	/* qs[0] holds elements 0, 32, 64, 96, 128 = +1, 0, -1, +1, -1: codes 2,1,0,2,0,
	 * v = 2*81 + 1*27 + 0*9 + 2*3 + 0 = 195, byte = (195*256 + 242) / 243 = 50162/243 = 206 */
	x[0] = 1, x[32] = 0, x[64] = -1, x[96] = 1, x[128] = -1;
	/* qs[32+5] holds elements 165, 181, 197, 213, 229, all +1: v = 242, byte 62194/243 = 255 */
	x[165] = x[181] = x[197] = x[213] = x[229] = 1;
	/* qh[2] holds elements 242, 246, 250, 254 = -1, +1, 0, +1 and a fifth trit 0:
	 * v = 0*81 + 2*27 + 1*9 + 2*3 + 0 = 69, byte = 17906/243 = 73 */
	x[242] = -1, x[246] = 1, x[250] = 0, x[254] = 1;
	/* every other qs byte: codes 1,1,1,1,1, v = 121, byte 31218/243 = 128;
	 * every other qh byte: codes 1,1,1,1,0, v = 120, byte 30962/243 = 127 */
	memset(b, 0xAA, sizeof b);
	ir_quant(IR_DT_TQ1_0, x, b, 256);
	assert_int_equal(b[0], 206);
	assert_int_equal(b[37], 255);
	assert_int_equal(b[48 + 2], 73);
	for (int i = 1; i < 48; i++)
		if (i != 37)
			assert_int_equal(b[i], 128);
	assert_int_equal(b[48], 127);
	assert_int_equal(b[49], 127);
	assert_int_equal(b[51], 127);
	assert_int_equal(b[52], 0x00); /* d = f16(1.0) at bytes 52..53 */
	assert_int_equal(b[53], 0x3C);

	int8_t w[256];
	float sc[1];
	assert_int_equal(ir_ternary_row(IR_DT_TQ1_0, b, 256, 1, 0, w, sc), 1);
	assert_true(sc[0] == 1.0f);
	for (int i = 0; i < 256; i++)
		assert_int_equal(w[i], (int8_t)x[i]);
}

/* Every 5-trit value packs and unpacks, by the formula and through the codec (in qs[0],
 * qs[32] and qs[47]); every 4-trit value likewise in qh[0] and qh[3]. */
static void test_tq1_0_all_values(void **state)
{
	(void)state;
	static const uint8_t p3[5] = { 1, 3, 9, 27, 81 };
	float x[256];
	uint8_t b[54];
	int8_t w[256];
	float sc[1];
	for (int v = 0; v < 243; v++) {
		int t[5];
		trits_of(v, 5, t);
		uint8_t byte = tq1_byte(t);
		for (int n = 0; n < 5; n++)
			assert_int_equal(((uint8_t)(byte * p3[n]) * 3) >> 8, t[n]);
		memset(x, 0, sizeof x);
		x[255] = 1; /* keep d = 1 when v is all zeros */
		for (int n = 0; n < 5; n++) {
			x[32 * n] = (float)(t[n] - 1);           /* qs[0] */
			x[160 + 16 * n] = (float)(t[n] - 1);     /* qs[32] */
			x[160 + 15 + 16 * n] = (float)(t[n] - 1); /* qs[47] */
		}
		ir_quant(IR_DT_TQ1_0, x, b, 256);
		assert_int_equal(b[0], byte);
		assert_int_equal(b[32], byte);
		assert_int_equal(b[47], byte);
		ir_ternary_row(IR_DT_TQ1_0, b, 256, 1, 0, w, sc);
		for (int i = 0; i < 256; i++)
			assert_int_equal(w[i], (int8_t)x[i]);
	}
	for (int v = 0; v < 81; v++) {
		int t[5];
		trits_of(v, 4, t);
		t[4] = 0;
		uint8_t byte = tq1_byte(t);
		for (int n = 0; n < 4; n++)
			assert_int_equal(((uint8_t)(byte * p3[n]) * 3) >> 8, t[n]);
		memset(x, 0, sizeof x);
		x[0] = -1;
		for (int n = 0; n < 4; n++) {
			x[240 + 4 * n] = (float)(t[n] - 1);     /* qh[0] */
			x[240 + 3 + 4 * n] = (float)(t[n] - 1); /* qh[3] */
		}
		ir_quant(IR_DT_TQ1_0, x, b, 256);
		assert_int_equal(b[48], byte);
		assert_int_equal(b[51], byte);
		ir_ternary_row(IR_DT_TQ1_0, b, 256, 1, 0, w, sc);
		for (int i = 0; i < 256; i++)
			assert_int_equal(w[i], (int8_t)x[i]);
	}
}

static void test_tq1_0_roundtrip(void **state)
{
	(void)state;
	uint64_t rs = 11;
	int8_t t[768 * 3];
	rand_ternary(&rs, t, 768 * 3);
	check_ternary_roundtrip(IR_DT_TQ1_0, t, 0.0625f, 768, 3);
	check_ternary_roundtrip(IR_DT_TQ1_0, t, 3.3f, 256, 9);
}

/* The same ternary weights through all three formats decode to the same w, and to the
 * same scale when it is exact in f16. */
static void test_ternary_formats_agree(void **state)
{
	(void)state;
	enum { K = 512, ROWS = 4, N = K * ROWS };
	uint64_t rs = 42;
	int8_t t[N];
	rand_ternary(&rs, t, N);
	float *x = malloc(N * sizeof *x);
	const float s = 0.375f;
	for (int i = 0; i < N; i++)
		x[i] = (float)t[i] * s;
	static const IrDtype dts[3] = { IR_DT_I2_S, IR_DT_TQ1_0, IR_DT_TQ2_0 };
	uint8_t *buf[3];
	for (int f = 0; f < 3; f++) {
		uint64_t nb = 0;
		assert_true(ir_dtype_nbytes(dts[f], N, K, &nb));
		buf[f] = malloc(nb);
		ir_quant(dts[f], x, buf[f], N);
	}
	for (int r = 0; r < ROWS; r++) {
		int8_t w[3][K];
		float sc[3][K / 256];
		for (int f = 0; f < 3; f++)
			ir_ternary_row(dts[f], buf[f], K, ROWS, r, w[f], sc[f]);
		assert_memory_equal(w[0], w[1], K);
		assert_memory_equal(w[0], w[2], K);
		assert_memory_equal(w[0], t + r * K, K);
		for (int b = 0; b < K / 256; b++) {
			assert_true(sc[1][b] == sc[0][0]);
			assert_true(sc[2][b] == sc[0][0]);
		}
	}
	for (int f = 0; f < 3; f++)
		free(buf[f]);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtype_table),
		cmocka_unit_test(test_ggml_type_desc),
		cmocka_unit_test(test_nbytes),
		cmocka_unit_test(test_f16_known),
		cmocka_unit_test(test_f16_exhaustive),
		cmocka_unit_test(test_f16_midpoints),
		cmocka_unit_test(test_f16_vs_f16c),
		cmocka_unit_test(test_bf16),
		cmocka_unit_test(test_dense_roundtrip),
		cmocka_unit_test(test_q8_0_known),
		cmocka_unit_test(test_q8_0_roundtrip),
		cmocka_unit_test(test_q6_k_known),
		cmocka_unit_test(test_q6_k_roundtrip),
		cmocka_unit_test(test_q6_k_portable),
		cmocka_unit_test(test_q6_k_avx2),
		cmocka_unit_test(test_q6_k_avx512),
		cmocka_unit_test(test_i2s_known_bytes),
		cmocka_unit_test(test_i2s_roundtrip),
		cmocka_unit_test(test_tq2_0_known_bytes),
		cmocka_unit_test(test_tq2_0_roundtrip),
		cmocka_unit_test(test_tq1_0_known_bytes),
		cmocka_unit_test(test_tq1_0_all_values),
		cmocka_unit_test(test_tq1_0_roundtrip),
		cmocka_unit_test(test_ternary_formats_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
