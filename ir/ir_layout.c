/* ir_layout.c - weight layouts other than the GGUF one: the repacking a pass does once at
 * compile time so that a kernel reads its weights in the order it consumes them, and the
 * row decoding the interpreter uses to check such kernels (see ir.h for the layouts). */
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
	return "unknown layout (known: gguf, i2s_x16)";
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
	BN_ASSERT(strcmp(layout, "i2s_x16") == 0 && dt == IR_DT_I2_S && row >= 0 && row < rows);
	const uint8_t *d = data;
	for (int64_t i = 0; i < k; i++) {
		uint64_t byte;
		int shift;
		x16_pos(k, row, i, &byte, &shift);
		w[i] = (int8_t)(((d[byte] >> shift) & 3) - 1);
	}
	scales[0] = ir_i2s_scale(data, k * rows);
	return 1;
}
