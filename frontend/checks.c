/* checks.c - value checks on a model's float data at load: every float the graph reads
 * (norm weights, scales, biases, embedding and head elements, block scales) must be finite. */
#include "frontend_int.h"

#include <inttypes.h>
#include <string.h>

/* Elements scanned per chunk: the OR over a chunk has no early exit, so it vectorizes;
 * only a chunk found bad is walked again for the index. */
enum { CHUNK = 4096 };

/* The exponent bits of a float type in host order, from its little-endian bytes: an
 * element is NaN or infinite exactly when all of them are set. */
static uint16_t mask16(uint8_t lo, uint8_t hi)
{
	const uint8_t b[2] = { lo, hi };
	uint16_t m;
	memcpy(&m, b, 2);
	return m;
}

static uint32_t mask32(void)
{
	const uint8_t b[4] = { 0x00, 0x00, 0x80, 0x7f };
	uint32_t m;
	memcpy(&m, b, 4);
	return m;
}

/* Whether any of CHUNK 16-bit (32-bit) floats at q has all of mask's exponent bits set.
 * A fixed trip count and no early exit: compilers vectorize this at -O2. */
static bool any16(const uint8_t *q, uint16_t mask)
{
	unsigned bad = 0;
	for (int j = 0; j < CHUNK; j++) {
		uint16_t v;
		memcpy(&v, q + 2 * j, 2);
		bad |= (v & mask) == mask;
	}
	return bad != 0;
}

static bool any32(const uint8_t *q, uint32_t mask)
{
	unsigned bad = 0;
	for (int j = 0; j < CHUNK; j++) {
		uint32_t v;
		memcpy(&v, q + 4 * j, 4);
		bad |= (v & mask) == mask;
	}
	return bad != 0;
}

/* First element of n 16-bit floats at p whose exponent bits (mask) are all set; n if
 * none. Whole chunks are tested first; a bad chunk, and the tail, element by element. */
static uint64_t scan16(const uint8_t *p, uint64_t n, uint16_t mask)
{
	uint64_t i = 0;
	for (; n - i >= CHUNK; i += CHUNK)
		if (any16(p + 2 * i, mask))
			break;
	for (; i < n; i++) {
		uint16_t v;
		memcpy(&v, p + 2 * i, 2);
		if ((v & mask) == mask)
			return i;
	}
	return n;
}

static uint64_t scan32(const uint8_t *p, uint64_t n)
{
	const uint32_t mask = mask32();
	uint64_t i = 0;
	for (; n - i >= CHUNK; i += CHUNK)
		if (any32(p + 4 * i, mask))
			break;
	for (; i < n; i++) {
		uint32_t v;
		memcpy(&v, p + 4 * i, 4);
		if ((v & mask) == mask)
			return i;
	}
	return n;
}

/* First of nb blocks of size bytes whose f16 scale (at byte at of the block) is not
 * finite; nb if none. One scale per block: a plain loop is already far below the cost of
 * reading the blocks. */
static uint64_t scan_block_scales(const uint8_t *p, uint64_t nb, uint64_t size, uint64_t at)
{
	const uint16_t mask = mask16(0x00, 0x7c);
	for (uint64_t b = 0; b < nb; b++) {
		uint16_t v;
		memcpy(&v, p + b * size + at, 2);
		if ((v & mask) == mask)
			return b;
	}
	return nb;
}

/* Where element i is, for the message: "element I" or "element I (row R, column C)". */
static void where(char *buf, size_t n, const GgufTensor *t, uint64_t i)
{
	int len = snprintf(buf, n, "element %" PRIu64, i);
	if (t->n_dims >= 2 && len > 0 && (size_t)len < n)
		snprintf(buf + len, n - (size_t)len, " (row %" PRIu64 ", column %" PRIu64 ")",
			 i / (uint64_t)t->ne[0], i % (uint64_t)t->ne[0]);
}

/* NaN or an infinity, from the value's sign and mantissa bits (any non-zero mantissa
 * under an all-ones exponent is a NaN). */
static const char *what16(const uint8_t *p, uint16_t mask)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return (uint16_t)(v & (uint16_t)~mask & mask16(0xff, 0x7f)) ? "NaN" : "infinite";
}

static const char *what32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	const uint8_t b[4] = { 0xff, 0xff, 0x7f, 0x00 };
	uint32_t mant;
	memcpy(&mant, b, 4);
	return v & mant ? "NaN" : "infinite";
}

int bnm_check_finite(const GgufFile *f, const GgufTensor *t, BnErr *e)
{
	const uint8_t *p = t->data;
	const IrDtypeInfo *ti = ir_dtype_info(t->dtype);
	uint64_t n = 1;
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		n *= (uint64_t)t->ne[d]; /* the reader checked it fits the file */
	char at[96];
	const char *path = f->path ? f->path : "<gguf>";
	uint64_t bad;
	const char *kind;
	switch (t->dtype) {
	case IR_DT_F32:
		if ((bad = scan32(p, n)) == n)
			return 0;
		kind = what32(p + 4 * bad);
		break;
	case IR_DT_F16:
	case IR_DT_BF16: {
		uint16_t mask = t->dtype == IR_DT_F16 ? mask16(0x00, 0x7c) : mask16(0x80, 0x7f);
		if ((bad = scan16(p, n, mask)) == n)
			return 0;
		kind = what16(p + 2 * bad, mask);
		break;
	}
	case IR_DT_Q8_0:
	case IR_DT_Q6_K:
	case IR_DT_TQ1_0:
	case IR_DT_TQ2_0: {
		/* the f16 scale d: first in a Q8_0 block, last in the others */
		uint64_t size = (uint64_t)ti->block_bytes, off = t->dtype == IR_DT_Q8_0 ? 0 : size - 2;
		uint64_t nb = n / (uint64_t)ti->block;
		uint64_t b = scan_block_scales(p, nb, size, off);
		if (b == nb)
			return 0;
		where(at, sizeof at, t, b * (uint64_t)ti->block);
		return bn_err(e, BN_EFORMAT,
			      "%s: %s: the f16 scale of %s block %" PRIu64 " (from %s) is %s; "
			      "every weight must be finite",
			      path, t->name, ti->name, b, at,
			      what16(p + b * size + off, mask16(0x00, 0x7c)));
	}
	default: /* I2_S: its one scale is checked with its shape; other types hold no floats */
		return 0;
	}
	where(at, sizeof at, t, bad);
	return bn_err(e, BN_EFORMAT, "%s: %s: %s %s is %s; every weight must be finite", path,
		      t->name, ti->name, at, kind);
}
