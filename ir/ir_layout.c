/* ir_layout.c - weight layouts other than the GGUF one (i2s_x16, t5_x16): the repacking a
 * pass does once at compile time so that a kernel reads its weights in the order it consumes
 * them, and the row decoding the interpreter uses to check such kernels (see ir.h). */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

const char *ir_layout_check(const char *layout, IrDtype dt, int n_dims, const int64_t *ne)
{
	if (!layout)
		return "no layout";
	if (strcmp(layout, "gguf") == 0)
		return NULL;
	if (strcmp(layout, "i2s_x16") == 0) {
		if (dt != IR_DT_I2_S)
			return "i2s_x16 is a layout of i2_s weights";
		if (n_dims != 2 || ne[0] <= 0 || ne[1] <= 0)
			return "i2s_x16 needs a 2-d weight";
		if (ne[0] % 128)
			return "i2s_x16 needs rows of a multiple of 128 elements";
		if (ne[1] % 16)
			return "i2s_x16 needs a multiple of 16 rows";
		return NULL;
	}
	if (strcmp(layout, "t5_x16") == 0) {
		if (dt != IR_DT_I2_S)
			return "t5_x16 is a layout of i2_s weights";
		if (n_dims != 2 || ne[0] <= 0 || ne[1] <= 0)
			return "t5_x16 needs a 2-d weight";
		if (ne[0] % 128)
			return "t5_x16 needs rows of a multiple of 128 elements";
		if (ne[1] % 16)
			return "t5_x16 needs a multiple of 16 rows";
		return NULL;
	}
	return "unknown layout (known: gguf, i2s_x16, t5_x16)";
}

/* t5_x16: 64-byte chunks of 20 k per group of 16 rows. */
static int64_t t5_chunks(int64_t k)
{
	return (k + 19) / 20;
}

uint64_t ir_layout_nbytes(const char *layout, IrDtype dt, const int64_t *ne, uint64_t gguf_bytes)
{
	(void)dt;
	if (layout && strcmp(layout, "t5_x16") == 0)
		return (uint64_t)(ne[1] / 16) * (uint64_t)t5_chunks(ne[0]) * 64 + 32;
	return gguf_bytes;
}

/* The t5_x16 byte of 5 codes t[0..4] (0..2): ceil(q * 256 / 243), q = sum t_i 3^(4-i). */
static uint8_t t5_byte(const uint8_t *t)
{
	unsigned q = 0;
	for (int i = 0; i < 5; i++)
		q = 3 * q + t[i];
	return (uint8_t)((q * 256 + 242) / 243);
}

/* Code i (0..4) of a t5_x16 byte: the top of 3 * (x * 3^i mod 256). */
static int t5_code(uint8_t x, int i)
{
	static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
	return ((uint8_t)(x * pow3[i]) * 3) >> 8;
}

/* Codes 0..2 of row r of a GGUF I2_S tensor (elements 128b + 32q + p in byte 32b + p at
 * bits (7-2q):(6-2q)) into cr[k]. */
static void i2s_codes(const uint8_t *s, int64_t k, int64_t r, uint8_t *cr)
{
	const uint8_t *p = s + r * (k / 4);
	for (int64_t b = 0; b < k / 128; b++)
		for (int q = 0; q < 4; q++)
			for (int i = 0; i < 32; i++)
				cr[128 * b + 32 * q + i] = (p[32 * b + i] >> (6 - 2 * q)) & 3;
}

static int t5_pack(const uint8_t *s, uint8_t *d, int64_t k, int64_t rows)
{
	int64_t kc = t5_chunks(k);
	uint8_t *c16 = malloc((size_t)k * 16);
	if (!c16)
		return -2;
	for (int64_t g = 0; g < rows / 16; g++) {
		for (int r = 0; r < 16; r++)
			i2s_codes(s, k, 16 * g + r, c16 + (size_t)r * (size_t)k);
		uint8_t *dg = d + (uint64_t)g * (uint64_t)kc * 64;
		for (int64_t c = 0; c < kc; c++)
			for (int r = 0; r < 16; r++)
				for (int j = 0; j < 4; j++) {
					uint8_t t[5];
					for (int i = 0; i < 5; i++) {
						int64_t e = 20 * c + 4 * i + j;
						t[i] = e < k ? c16[(size_t)r * (size_t)k + (size_t)e] : 1;
					}
					dg[64 * c + 4 * r + j] = t5_byte(t);
				}
	}
	free(c16);
	uint64_t end = (uint64_t)(rows / 16) * (uint64_t)kc * 64;
	memcpy(d + end, s + (uint64_t)k * (uint64_t)rows / 4, 32); /* the scale and padding */
	return 0;
}

/* Byte offset and bit shift of (row, k) in the i2s_x16 layout. */
static void x16_pos(int64_t k, int64_t row, int64_t i, uint64_t *byte, int *shift)
{
	int64_t g = row / 16, r = row % 16, c = i / 16, s = (i % 16) / 4, j = i % 4;
	*byte = (uint64_t)((g * (k / 16) + c) * 64 + 4 * r + j);
	*shift = (int)(2 * s);
}

int ir_layout_pack(const char *to, IrDtype dt, const void *src, void *dst, int64_t k,
		   int64_t rows)
{
	int64_t ne[2] = {k, rows};
	if (ir_layout_check(to, dt, 2, ne) || strcmp(to, "gguf") == 0)
		return -1;
	if (strcmp(to, "t5_x16") == 0)
		return t5_pack(src, dst, k, rows);
	uint64_t codes = (uint64_t)k * (uint64_t)rows / 4;
	/* i2s_x16 straight from the GGUF bytes: element e = 128b + 32q + i of a row is byte
	 * 32b + i at bits (7-2q):(6-2q), so the 16 elements 16c..16c+15 of one chunk are the 16
	 * bytes from 32b + (16c mod 32) at one shift, and the chunk's four output bytes j take
	 * elements j, j+4, j+8, j+12: four 32-bit words (bytes are lanes: the masks keep each
	 * byte's own two bits, on any byte order) */
	const uint8_t *s = src;
	uint8_t *d = dst;
	for (int64_t g = 0; g < rows / 16; g++) {
		uint8_t *dg = d + (uint64_t)g * (uint64_t)(k / 16) * 64;
		for (int r = 0; r < 16; r++) {
			const uint8_t *p = s + (uint64_t)(16 * g + r) * (uint64_t)(k / 4);
			for (int64_t c = 0; c < k / 16; c++) {
				int64_t e = 16 * c;
				const uint8_t *q = p + 32 * (e / 128) + e % 32;
				int sh = 6 - 2 * (int)((e % 128) / 32);
				uint32_t w[4], o = 0;
				memcpy(w, q, sizeof w);
				for (int m = 0; m < 4; m++)
					o |= ((w[m] >> sh) & 0x03030303u) << (2 * m);
				memcpy(dg + 64 * c + 4 * r, &o, 4);
			}
		}
	}
	memcpy(d + codes, s + codes, 32); /* the scale and its padding */
	return 0;
}

int ir_ternary_row_at(const char *layout, IrDtype dt, const void *data, int64_t k,
		      int64_t rows, int64_t row, int8_t *w, float *scales)
{
	if (!layout || strcmp(layout, "gguf") == 0)
		return ir_ternary_row(dt, data, k, rows, row, w, scales);
	const uint8_t *d = data;
	if (strcmp(layout, "t5_x16") == 0) {
		BN_ASSERT(dt == IR_DT_I2_S && row >= 0 && row < rows);
		int64_t kc = t5_chunks(k), g = row / 16, r = row % 16;
		for (int64_t i = 0; i < k; i++) {
			int64_t c = i / 20, e = i % 20;
			w[i] = (int8_t)(t5_code(d[(g * kc + c) * 64 + 4 * r + e % 4], (int)(e / 4)) - 1);
		}
		memcpy(&scales[0], d + (uint64_t)(rows / 16) * (uint64_t)kc * 64, sizeof(float));
		return 1;
	}
	BN_ASSERT(strcmp(layout, "i2s_x16") == 0 && dt == IR_DT_I2_S && row >= 0 && row < rows);
	for (int64_t i = 0; i < k; i++) {
		uint64_t byte;
		int shift;
		x16_pos(k, row, i, &byte, &shift);
		w[i] = (int8_t)(((d[byte] >> shift) & 3) - 1);
	}
	scales[0] = ir_i2s_scale(data, k * rows);
	return 1;
}
