/* test_layout.c - weight layouts (ir_layout.c): repacking into i2s_x16 and t5_x16 keeps
 * every weight and the scale, the documented byte positions hold, bad shapes are refused. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

/* A random I2_S tensor [k, rows] from the reference quantizer. */
static uint8_t *random_i2s(int64_t k, int64_t rows, unsigned seed)
{
	float *x = malloc((size_t)(k * rows) * sizeof *x);
	uint8_t *q = malloc((size_t)(k * rows / 4 + 32));
	assert_non_null(x);
	assert_non_null(q);
	srand(seed);
	for (int64_t i = 0; i < k * rows; i++)
		x[i] = (float)(rand() % 3 - 1) * 0.5f;
	ir_quant(IR_DT_I2_S, x, q, k * rows);
	free(x);
	return q;
}

static void test_x16_roundtrip(void **state)
{
	(void)state;
	const int64_t shapes[][2] = {{128, 16}, {256, 48}, {640, 32}, {2560, 16}};
	for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
		int64_t k = shapes[si][0], rows = shapes[si][1];
		uint64_t nb = (uint64_t)(k * rows / 4 + 32);
		uint8_t *g = random_i2s(k, rows, (unsigned)si + 1);
		uint8_t *x = malloc(nb);
		assert_int_equal(ir_layout_pack("i2s_x16", IR_DT_I2_S, g, x, k, rows), 0);
		int8_t *w0 = malloc((size_t)k), *w1 = malloc((size_t)k);
		float s0, s1;
		for (int64_t r = 0; r < rows; r++) {
			ir_ternary_row_at("gguf", IR_DT_I2_S, g, k, rows, r, w0, &s0);
			ir_ternary_row_at("i2s_x16", IR_DT_I2_S, x, k, rows, r, w1, &s1);
			assert_memory_equal(w0, w1, (size_t)k);
			assert_true(s0 == s1);
			/* the documented position of (row r, k = 16c + 4s + j) */
			for (int64_t i = 0; i < k; i += 7) {
				int64_t c = i / 16, s = (i % 16) / 4, j = i % 4;
				uint8_t byte = x[((r / 16) * (k / 16) + c) * 64 + 4 * (r % 16) + j];
				assert_int_equal(((byte >> (2 * s)) & 3) - 1, w0[i]);
			}
		}
		assert_memory_equal(g + nb - 32, x + nb - 32, 32);
		free(w0);
		free(w1);
		free(g);
		free(x);
	}
}

static void test_x16_refused(void **state)
{
	(void)state;
	int64_t ok[2] = {256, 32}, rows15[2] = {256, 15}, k64[2] = {64, 16};
	assert_null(ir_layout_check("gguf", IR_DT_F16, 2, ok));
	assert_null(ir_layout_check("i2s_x16", IR_DT_I2_S, 2, ok));
	assert_non_null(ir_layout_check("i2s_x16", IR_DT_I2_S, 2, rows15));
	assert_non_null(ir_layout_check("i2s_x16", IR_DT_I2_S, 2, k64));
	assert_non_null(ir_layout_check("i2s_x16", IR_DT_TQ2_0, 2, ok));
	assert_non_null(ir_layout_check("i2s_x86", IR_DT_I2_S, 2, ok));
	assert_non_null(ir_layout_check(NULL, IR_DT_I2_S, 2, ok));
	uint8_t b[16];
	assert_int_equal(ir_layout_pack("gguf", IR_DT_I2_S, b, b, 256, 32), -1);
}

/* t5_x16: the rows and scale back as they were, the documented byte (TQ1_0's
 * ceil(q * 256 / 243) of the 5 codes at k = 20c + 4i + j, code 1 past K) and its decoding
 * as compares (the SIMD kernels'), for K that end a chunk at every trit count. */
static void test_t5_roundtrip(void **state)
{
	(void)state;
	/* K % 20: 8 (2 trits in the last chunk), 16 (4), 0 (5), 4 (1), 12 (3) */
	const int64_t shapes[][2] = {{128, 16}, {256, 48}, {640, 32}, {384, 16}, {1152, 16}};
	for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
		int64_t k = shapes[si][0], rows = shapes[si][1], kc = (k + 19) / 20;
		int64_t ne[2] = {k, rows};
		uint64_t nb = (uint64_t)(k * rows / 4 + 32);
		uint64_t tb = ir_layout_nbytes("t5_x16", IR_DT_I2_S, ne, nb);
		assert_int_equal(tb, (uint64_t)(rows / 16 * kc * 64 + 32));
		assert_int_equal(ir_layout_nbytes("i2s_x16", IR_DT_I2_S, ne, nb), nb);
		uint8_t *g = random_i2s(k, rows, (unsigned)si + 11);
		uint8_t *x = malloc(tb);
		assert_non_null(x);
		assert_int_equal(ir_layout_pack("t5_x16", IR_DT_I2_S, g, x, k, rows), 0);
		int8_t *w0 = malloc((size_t)k), *w1 = malloc((size_t)k);
		float s0, s1;
		for (int64_t r = 0; r < rows; r++) {
			ir_ternary_row_at("gguf", IR_DT_I2_S, g, k, rows, r, w0, &s0);
			ir_ternary_row_at("t5_x16", IR_DT_I2_S, x, k, rows, r, w1, &s1);
			assert_memory_equal(w0, w1, (size_t)k);
			assert_true(s0 == s1);
			for (int64_t c = 0; c < kc; c++)
				for (int j = 0; j < 4; j++) {
					uint8_t byte = x[((r / 16) * kc + c) * 64 + 4 * (r % 16) + j];
					unsigned q = 0;
					for (int i = 0; i < 5; i++) {
						int64_t e = 20 * c + 4 * i + j;
						q = 3 * q + (unsigned)(e < k ? w0[e] + 1 : 1);
					}
					assert_int_equal(byte, (q * 256 + 242) / 243);
					unsigned xi = byte;
					for (int i = 0; i < 5; i++, xi = xi * 3 % 256) {
						int64_t e = 20 * c + 4 * i + j;
						int code = (xi >= 86) + (xi >= 171);
						assert_int_equal(code, (int)((xi * 3) >> 8));
						assert_int_equal(code, e < k ? w0[e] + 1 : 1);
					}
				}
		}
		assert_memory_equal(g + nb - 32, x + tb - 32, 32);
		free(w0);
		free(w1);
		free(g);
		free(x);
	}
	int64_t ok[2] = {256, 32}, rows15[2] = {256, 15}, k64[2] = {64, 16};
	assert_null(ir_layout_check("t5_x16", IR_DT_I2_S, 2, ok));
	assert_non_null(ir_layout_check("t5_x16", IR_DT_I2_S, 2, rows15));
	assert_non_null(ir_layout_check("t5_x16", IR_DT_I2_S, 2, k64));
	assert_non_null(ir_layout_check("t5_x16", IR_DT_TQ1_0, 2, ok));
	tu_expect_has(ir_layout_check("t5_x17", IR_DT_I2_S, 2, ok), "t5_x16");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_x16_roundtrip),
		cmocka_unit_test(test_x16_refused),
		cmocka_unit_test(test_t5_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
