/* gguf.c - the GGUF container: a bounds-checked, zero-copy mmap reader and a streaming writer. */
#include "frontend_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	GGUF_MAX_DEPTH = 8,                      /* deeper arrays are rejected: bounds recursion */
	GGUF_MIN_KV_BYTES = 8 + 4 + 1,           /* key length, value type, a one-byte value */
	GGUF_MIN_TENSOR_BYTES = 8 + 1 + 4 + 8 + 4 + 8, /* name length and 1 byte, n_dims, ne[0], type, offset */
};

/* ---- little-endian bytes ------------------------------------------------- */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

/* Bytes of a scalar value type; 0 for strings, arrays and unknown ids. */
static uint64_t type_size(uint32_t t)
{
	static const uint8_t size[GGUF_T_COUNT] = {
		[GGUF_T_U8] = 1, [GGUF_T_I8] = 1, [GGUF_T_U16] = 2, [GGUF_T_I16] = 2,
		[GGUF_T_U32] = 4, [GGUF_T_I32] = 4, [GGUF_T_F32] = 4, [GGUF_T_BOOL] = 1,
		[GGUF_T_U64] = 8, [GGUF_T_I64] = 8, [GGUF_T_F64] = 8,
	};
	return t < GGUF_T_COUNT ? size[t] : 0;
}

/* Arrays of these need an element index (their elements vary in size). */
static bool type_indexed(uint32_t t)
{
	return t == GGUF_T_STRING || t == GGUF_T_ARRAY;
}

const char *gguf_type_name(GgufType t)
{
	static const char *const names[GGUF_T_COUNT] = {
		"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64",
		"f64",
	};
	return (unsigned)t < GGUF_T_COUNT ? names[t] : "unknown";
}

/* Printable form of file bytes for error messages: escapes, cut to fit cap. */
static void escape(char *dst, size_t cap, const uint8_t *s, uint64_t len)
{
	size_t n = 0;
	for (uint64_t i = 0; i < len; i++) {
		if (n + 8 >= cap) {
			memcpy(dst + n, "...", 4);
			return;
		}
		uint8_t c = s[i];
		if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
			dst[n++] = (char)c;
		else
			n += (size_t)snprintf(dst + n, cap - n, "\\x%02x", c);
	}
	dst[n] = '\0';
}

static char *dup_bytes(const void *s, uint64_t len)
{
	char *d = malloc((size_t)len + 1);
	if (d) {
		memcpy(d, s, (size_t)len);
		d[len] = '\0';
	}
	return d;
}

/* ---- name index: open addressing over item index + 1 (0 = empty) --------- */

typedef struct {
	uint64_t *slot;
	uint64_t mask;
	uint64_t seed;
} GgufIndex;

typedef const char *(*GgufNameFn)(const GgufFile *f, uint64_t i);

/* FNV-1a from a per-index seed, then a final mix so the slot bits depend on every byte:
 * names crafted to collide (a hostile file's way to make lookups quadratic) would have to
 * know the seed. */
static uint64_t hash_str(const GgufIndex *ix, const char *s)
{
	uint64_t h = bnm_fnv1a(ix->seed, s);
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93u;
	return h ^ h >> 32;
}

static bool index_init(GgufIndex *ix, uint64_t n)
{
	uint64_t cap = 8;
	while (cap < 2 * n)
		cap *= 2;
	ix->slot = calloc((size_t)cap, sizeof *ix->slot);
	ix->mask = cap - 1;
	/* the heap address varies from run to run (ASLR); order never leaks into results */
	ix->seed = BNM_FNV_BASIS ^ (uint64_t)(uintptr_t)ix->slot;
	return ix->slot != NULL;
}

/* Item i named s: returns the earlier item of that name + 1, or 0 after inserting i. */
static uint64_t index_add(GgufIndex *ix, const GgufFile *f, GgufNameFn name, uint64_t i)
{
	const char *s = name(f, i);
	for (uint64_t h = hash_str(ix, s) & ix->mask;; h = (h + 1) & ix->mask) {
		if (!ix->slot[h]) {
			ix->slot[h] = i + 1;
			return 0;
		}
		if (!strcmp(name(f, ix->slot[h] - 1), s))
			return ix->slot[h];
	}
}

static uint64_t index_find(const GgufIndex *ix, const GgufFile *f, GgufNameFn name, const char *s)
{
	if (!ix->slot || !s)
		return 0;
	for (uint64_t h = hash_str(ix, s) & ix->mask; ix->slot[h]; h = (h + 1) & ix->mask)
		if (!strcmp(name(f, ix->slot[h] - 1), s))
			return ix->slot[h];
	return 0;
}

static const char *kv_name(const GgufFile *f, uint64_t i)
{
	return f->kv[i].key;
}

static const char *tensor_name(const GgufFile *f, uint64_t i)
{
	return f->tensors[i].name;
}

/* The public struct first, so a GgufFile * is also a GgufImpl *. */
typedef struct {
	GgufFile f;
	GgufIndex kv_ix, tensor_ix;
} GgufImpl;

/* ---- reader ------------------------------------------------------------- */

typedef struct {
	const uint8_t *base;
	uint64_t size, pos; /* invariant: pos <= size */
	const char *path;
	BnErr *e;
	char where[192];              /* the item being read: "header", "key 'x'", "tensor 3 'y'" */
	uint64_t idx[GGUF_MAX_DEPTH]; /* array element indices while inside a value */
	int depth;
} GgufRd;

static int rd_fail(GgufRd *r, int code, const char *field, const char *fmt, ...) BN_PRINTF(4, 5);

/* Reports "PATH: WHERE[i][j] FIELD: problem". */
static int rd_fail(GgufRd *r, int code, const char *field, const char *fmt, ...)
{
	char msg[384], idx[96] = "";
	size_t n = 0;
	for (int i = 0; i < r->depth && n < sizeof idx; i++)
		n += (size_t)snprintf(idx + n, sizeof idx - n, "[%" PRIu64 "]", r->idx[i]);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return bn_err(r->e, code, "%s: %s%s%s%s: %s", r->path, r->where, idx, field ? " " : "",
		      field ? field : "", msg);
}

static int rd_short(GgufRd *r, const char *field, uint64_t need)
{
	return rd_fail(r, BN_EFORMAT, field,
		       "file is truncated: needs %" PRIu64 " bytes at byte %" PRIu64
		       " but the file ends at byte %" PRIu64,
		       need, r->pos, r->size);
}

static int rd_u32(GgufRd *r, const char *field, uint32_t *out)
{
	if (r->size - r->pos < 4)
		return rd_short(r, field, 4);
	*out = le32(r->base + r->pos);
	r->pos += 4;
	return 0;
}

static int rd_u64(GgufRd *r, const char *field, uint64_t *out)
{
	if (r->size - r->pos < 8)
		return rd_short(r, field, 8);
	*out = le64(r->base + r->pos);
	r->pos += 8;
	return 0;
}

/* Counts that no real file could hold (2^48 bytes and more) are corrupt, not cut short. */
#define GGUF_HUGE_BYTES ((uint64_t)1 << 48)

/* A u64 length and that many bytes; field names what the string is ("key", "name"). */
static int rd_str(GgufRd *r, const char *field, GgufStr *out)
{
	uint64_t len = 0;
	int rc = rd_u64(r, field, &len);
	if (rc)
		return rc;
	if (len >= GGUF_HUGE_BYTES)
		return rd_fail(r, BN_EFORMAT, field,
			       "huge %s length %" PRIu64 " at byte %" PRIu64
			       " cannot fit in any file (this one has %" PRIu64 " bytes)",
			       field, len, r->pos - 8, r->size);
	if (len > r->size - r->pos)
		return rd_fail(r, BN_EFORMAT, field,
			       "file is truncated: %s length %" PRIu64 " at byte %" PRIu64
			       " runs past the end of the file (%" PRIu64 " bytes)",
			       field, len, r->pos - 8, r->size);
	out->ptr = (const char *)(r->base + r->pos);
	out->len = len;
	r->pos += len;
	return 0;
}

/* Checks that n items of at least min bytes each can fit in what is left, before any
 * per-item work or allocation. A count whose items would need more than any real file
 * has is called huge (corrupt or hostile); a smaller one that does not fit means the
 * file was cut short. what names the count ("tensor count"), who and items say it
 * ("the header" says N "tensors"). */
static int rd_count(GgufRd *r, const char *field, const char *what, const char *who,
		    const char *items, uint64_t n, uint64_t min)
{
	uint64_t left = r->size - r->pos, need;
	if (n <= left / min)
		return 0;
	if (!bn_mul_ok(n, min, &need) || need >= GGUF_HUGE_BYTES)
		return rd_fail(r, BN_EFORMAT, field,
			       "huge %s %" PRIu64 " cannot fit in the %" PRIu64
			       " bytes left (each takes at least %" PRIu64 ")",
			       what, n, left, min);
	return rd_fail(r, BN_EFORMAT, field,
		       "file is truncated: %s says %" PRIu64 " %s (at least %" PRIu64
		       " bytes from byte %" PRIu64 "), but the file ends at byte %" PRIu64,
		       who, n, items, need, r->pos, r->size);
}

/* A key or tensor name as a C string: a NUL inside would silently cut it short. */
static int rd_name(GgufRd *r, const char *field, char **out)
{
	GgufStr s = {NULL, 0};
	int rc = rd_str(r, field, &s);
	if (rc)
		return rc;
	if (memchr(s.ptr, 0, (size_t)s.len))
		return rd_fail(r, BN_EFORMAT, field, "contains a NUL byte");
	if (!(*out = dup_bytes(s.ptr, s.len)))
		return rd_fail(r, BN_ENOMEM, field, "out of memory");
	return 0;
}

/* Checks the value of type t at r->pos against the file and steps over it without
 * allocating; *words grows by the index words its arrays of strings/arrays need. */
static int val_scan(GgufRd *r, uint32_t t, uint64_t *words)
{
	int rc;
	if (t >= GGUF_T_COUNT)
		return rd_fail(r, BN_EFORMAT, "type", "unknown value type %" PRIu32 " (known: 0 to %d)",
			       t, GGUF_T_COUNT - 1);
	if (t == GGUF_T_STRING) {
		GgufStr s = {NULL, 0};
		return rd_str(r, "string", &s);
	}
	if (t != GGUF_T_ARRAY) {
		if (r->size - r->pos < type_size(t))
			return rd_short(r, gguf_type_name(t), type_size(t));
		r->pos += type_size(t);
		return 0;
	}
	if (r->depth >= GGUF_MAX_DEPTH)
		return rd_fail(r, BN_EFORMAT, "array", "arrays nested deeper than %d levels",
			       GGUF_MAX_DEPTH);
	uint32_t at = 0;
	uint64_t n = 0;
	if ((rc = rd_u32(r, "array type", &at)) || (rc = rd_u64(r, "array count", &n)))
		return rc;
	if (at >= GGUF_T_COUNT)
		return rd_fail(r, BN_EFORMAT, "array type",
			       "unknown element value type %" PRIu32 " (known: 0 to %d)", at,
			       GGUF_T_COUNT - 1);
	uint64_t min = at == GGUF_T_STRING ? 8 : at == GGUF_T_ARRAY ? 12 : type_size(at);
	char what[32], items[32];
	snprintf(what, sizeof what, "%s array count", gguf_type_name((GgufType)at));
	snprintf(items, sizeof items, "%s elements", gguf_type_name((GgufType)at));
	if ((rc = rd_count(r, "array count", what, "the array", items, n, min)))
		return rc;
	if (!type_indexed(at)) {
		r->pos += n * min;
		return 0;
	}
	*words += at == GGUF_T_STRING ? n : 2 * n;
	r->depth++;
	for (uint64_t i = 0; i < n; i++) {
		r->idx[r->depth - 1] = i;
		if ((rc = val_scan(r, at, words)))
			return rc;
	}
	r->depth--;
	return 0;
}

/* Fills the element index of an array already checked by val_scan; data is its first
 * element. The block of an array of n strings is n offsets; of n arrays, n offsets then
 * n positions of each child's block relative to this block (0: the child needs none).
 * Returns the bytes its elements take. */
static uint64_t idx_build(const uint8_t *data, uint32_t at, uint64_t n, uint64_t *pool,
			  uint64_t *used)
{
	uint64_t blk = *used, off = 0;
	if (!type_indexed(at))
		return n * type_size(at);
	*used += at == GGUF_T_STRING ? n : 2 * n;
	for (uint64_t i = 0; i < n; i++) {
		pool[blk + i] = off;
		if (at == GGUF_T_STRING) {
			off += 8 + le64(data + off);
			continue;
		}
		uint32_t ct = le32(data + off);
		uint64_t cn = le64(data + off + 4);
		pool[blk + n + i] = type_indexed(ct) ? *used - blk : 0;
		off += 12;
		off += idx_build(data + off, ct, cn, pool, used);
	}
	return off;
}

/* A metadata value at r->pos: checked, then viewed in place; only arrays of
 * strings/arrays allocate (their index), and only once the whole value is known to fit. */
static int val_parse(GgufRd *r, uint32_t t, GgufValue *v)
{
	uint64_t start = r->pos, words = 0;
	int rc = val_scan(r, t, &words);
	if (rc)
		return rc;
	v->type = (GgufType)t;
	v->data = r->base + start;
	v->size = r->pos - start;
	if (t != GGUF_T_ARRAY)
		return 0;
	v->arr_type = (GgufType)le32(v->data);
	v->arr_n = le64(v->data + 4);
	v->data += 12;
	v->size -= 12;
	if (!words)
		return 0;
	uint64_t *pool = malloc((size_t)words * sizeof *pool); /* words <= file size / 4 */
	if (!pool)
		return rd_fail(r, BN_ENOMEM, NULL, "out of memory indexing %" PRIu64 " array elements",
			       words);
	uint64_t used = 0;
	idx_build(v->data, v->arr_type, v->arr_n, pool, &used);
	BN_ASSERT(used == words);
	v->elem_off = pool;
	return 0;
}

/* Grows *arr (of *cap items of sz bytes) to hold item i; counts were already checked
 * against the file, so this only bounds memory to what has actually been parsed. */
static bool grow(void **arr, uint64_t *cap, uint64_t i, uint64_t total, size_t sz)
{
	if (i < *cap)
		return true;
	uint64_t ncap = *cap ? *cap * 2 : 16;
	if (ncap > total)
		ncap = total;
	void *p = realloc(*arr, (size_t)ncap * sz);
	if (!p)
		return false;
	memset((char *)p + *cap * sz, 0, (size_t)(ncap - *cap) * sz);
	*arr = p;
	*cap = ncap;
	return true;
}

static int parse_header(GgufRd *r, GgufFile *f, uint64_t *n_tensors, uint64_t *n_kv)
{
	int rc;
	snprintf(r->where, sizeof r->where, "header");
	if (r->size < 4)
		return rd_short(r, "magic", 4);
	if (memcmp(r->base, "GGUF", 4)) {
		char got[40];
		escape(got, sizeof got, r->base, 4);
		return rd_fail(r, BN_EFORMAT, "magic", "expected magic 'GGUF', found '%s'", got);
	}
	r->pos = 4;
	if ((rc = rd_u32(r, "version", &f->version)))
		return rc;
	if (f->version == 1)
		return rd_fail(r, BN_EUNSUPPORTED, "version",
			       "GGUF version 1 (32-bit counts) is not supported; expected version 2 or 3");
	if (f->version != 2 && f->version != 3) {
		bool swapped = !(f->version & 0xffff) && (f->version >> 16);
		return rd_fail(r, BN_EUNSUPPORTED, "version",
			       "unsupported GGUF version %" PRIu32 "%s; expected version 2 or 3",
			       f->version, swapped ? " (a big-endian file?)" : "");
	}
	if ((rc = rd_u64(r, "n_tensors", n_tensors)) || (rc = rd_u64(r, "n_kv", n_kv)))
		return rc;
	if ((rc = rd_count(r, "n_tensors", "tensor count", "the header", "tensors", *n_tensors,
			   GGUF_MIN_TENSOR_BYTES)))
		return rc;
	return rd_count(r, "n_kv", "key-value count", "the header", "key-value pairs", *n_kv,
			GGUF_MIN_KV_BYTES);
}

static int parse_kvs(GgufRd *r, GgufImpl *im, uint64_t n_kv)
{
	GgufFile *f = &im->f;
	uint64_t cap = 0;
	int rc;
	for (uint64_t i = 0; i < n_kv; i++) {
		if (!grow((void **)&f->kv, &cap, i, n_kv, sizeof *f->kv))
			return rd_fail(r, BN_ENOMEM, NULL, "out of memory");
		GgufKV *kv = &f->kv[i];
		f->n_kv = i + 1;
		char what[96];
		snprintf(r->where, sizeof r->where, "pair %" PRIu64 " of %" PRIu64, i, n_kv);
		if ((rc = rd_name(r, "key", &kv->key)))
			return rc;
		escape(what, sizeof what, (const uint8_t *)kv->key, strlen(kv->key));
		snprintf(r->where, sizeof r->where, "key '%s'", what);
		uint32_t t = 0;
		if ((rc = rd_u32(r, "type", &t)) || (rc = val_parse(r, t, &kv->val)))
			return rc;
	}
	if (!index_init(&im->kv_ix, f->n_kv))
		return rd_fail(r, BN_ENOMEM, NULL, "out of memory");
	for (uint64_t i = 0; i < f->n_kv; i++) {
		uint64_t prev = index_add(&im->kv_ix, f, kv_name, i);
		if (prev) {
			char what[96];
			escape(what, sizeof what, (const uint8_t *)f->kv[i].key, strlen(f->kv[i].key));
			snprintf(r->where, sizeof r->where, "key '%s'", what);
			return rd_fail(r, BN_EFORMAT, NULL, "duplicate key (pairs %" PRIu64 " and %" PRIu64 ")",
				       prev - 1, i);
		}
	}
	return 0;
}

static int parse_alignment(GgufRd *r, GgufFile *f)
{
	f->alignment = GGUF_DEFAULT_ALIGNMENT;
	const GgufKV *kv = gguf_find(f, "general.alignment");
	if (!kv)
		return 0;
	snprintf(r->where, sizeof r->where, "key 'general.alignment'");
	if (kv->val.type != GGUF_T_U32)
		return rd_fail(r, BN_EFORMAT, NULL, "has type %s; expected u32",
			       gguf_type_name(kv->val.type));
	uint32_t a = le32(kv->val.data);
	if (!a || (a & (a - 1)))
		return rd_fail(r, BN_EFORMAT, NULL, "alignment %" PRIu32 " is not a nonzero power of two",
			       a);
	f->alignment = a;
	return 0;
}

/* Shape and type of one tensor info: element count, dtype and byte size. */
static int parse_tensor_shape(GgufRd *r, GgufTensor *t)
{
	int rc;
	uint32_t nd = 0;
	if ((rc = rd_u32(r, "n_dims", &nd)))
		return rc;
	if (nd < 1 || nd > GGUF_MAX_DIMS)
		return rd_fail(r, BN_EFORMAT, "n_dims", "%" PRIu32 " dimensions; expected 1 to %d", nd,
			       GGUF_MAX_DIMS);
	t->n_dims = (int)nd;
	uint64_t n = 1;
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	for (int d = 0; d < t->n_dims; d++) {
		char field[16];
		uint64_t v = 0;
		snprintf(field, sizeof field, "ne[%d]", d);
		if ((rc = rd_u64(r, field, &v)))
			return rc;
		if (v == 0)
			return rd_fail(r, BN_EFORMAT, field, "dimension is 0 (empty tensors are not supported)");
		if (v > INT64_MAX || !bn_mul_ok(n, v, &n) || n > INT64_MAX)
			return rd_fail(r, BN_EFORMAT, field,
				       "dimension %" PRIu64 " makes the element count overflow", v);
		t->ne[d] = (int64_t)v;
	}
	if ((rc = rd_u32(r, "type", &t->ggml_type)))
		return rc;
	if (!ir_dtype_from_ggml(t->ggml_type, &t->dtype))
		return rd_fail(r, BN_EUNSUPPORTED, "type", "type %" PRIu32 " (%s) is not supported",
			       t->ggml_type, ir_ggml_type_desc(t->ggml_type));
	if (!ir_dtype_nbytes(t->dtype, n, (uint64_t)t->ne[0], &t->nbytes)) {
		const IrDtypeInfo *ti = ir_dtype_info(t->dtype);
		if (t->ne[0] % ti->block)
			return rd_fail(r, BN_EFORMAT, "ne[0]",
				       "row length %" PRId64 " is not a multiple of the %s block of %d",
				       t->ne[0], ti->name, ti->block);
		return rd_fail(r, BN_EFORMAT, NULL, "byte size of %" PRIu64 " %s elements overflows", n,
			       ti->name);
	}
	return 0;
}

static int parse_tensors(GgufRd *r, GgufImpl *im, uint64_t n_tensors)
{
	GgufFile *f = &im->f;
	uint64_t cap = 0;
	int rc;
	for (uint64_t i = 0; i < n_tensors; i++) {
		if (!grow((void **)&f->tensors, &cap, i, n_tensors, sizeof *f->tensors))
			return rd_fail(r, BN_ENOMEM, NULL, "out of memory");
		GgufTensor *t = &f->tensors[i];
		f->n_tensors = i + 1;
		snprintf(r->where, sizeof r->where, "tensor %" PRIu64 " of %" PRIu64, i, n_tensors);
		if ((rc = rd_name(r, "name", &t->name)))
			return rc;
		if (!t->name[0])
			return rd_fail(r, BN_EFORMAT, "name", "name is empty");
		char what[96];
		escape(what, sizeof what, (const uint8_t *)t->name, strlen(t->name));
		snprintf(r->where, sizeof r->where, "tensor %" PRIu64 " '%s'", i, what);
		if ((rc = parse_tensor_shape(r, t)) || (rc = rd_u64(r, "offset", &t->offset)))
			return rc;
		if (t->offset % f->alignment)
			return rd_fail(r, BN_EFORMAT, "offset",
				       "offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
				       t->offset, f->alignment);
	}
	return 0;
}

/* The bytes of data the tensor table describes when laid out without gaps (as every
 * writer does): each tensor's size rounded up to the alignment. Saturates at UINT64_MAX. */
static uint64_t data_extent(const GgufFile *f)
{
	uint64_t total = 0;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		uint64_t sz = f->tensors[i].nbytes, pad = (f->alignment - sz % f->alignment) % f->alignment;
		if (!bn_add_ok(sz, pad, &sz) || !bn_add_ok(total, sz, &total))
			return UINT64_MAX;
	}
	return total;
}

/* Tensor i's data must lie inside the file. Past the end, either the file was cut short
 * (the tensor lies within the data the table describes) or its offset is corrupt. */
static int check_in_file(GgufRd *r, GgufFile *f, uint64_t i, uint64_t extent)
{
	GgufTensor *t = &f->tensors[i];
	uint64_t start, end, rel_end;
	bool wraps = !bn_add_ok(f->data_offset, t->offset, &start) ||
		     !bn_add_ok(start, t->nbytes, &end) || !bn_add_ok(t->offset, t->nbytes, &rel_end);
	if (!wraps && end <= f->size) {
		t->data = f->base + start;
		return 0;
	}
	if (wraps || rel_end > extent)
		return rd_fail(r, BN_EFORMAT, "offset",
			       "data at offset %" PRIu64 " + %" PRIu64 " bytes (data section at byte %" PRIu64
			       ") runs past the end of the file (%" PRIu64 " bytes) and past the %" PRIu64
			       " bytes of data the tensor table describes: the offset is corrupt",
			       t->offset, t->nbytes, f->data_offset, f->size, extent);
	return rd_fail(r, BN_EFORMAT, "offset",
		       "file is truncated: the tensor needs bytes %" PRIu64 "..%" PRIu64
		       " (offset %" PRIu64 " in the data section at byte %" PRIu64
		       "), but the data runs past the end of the file at byte %" PRIu64,
		       start, end, t->offset, f->data_offset, f->size);
}

typedef struct {
	uint64_t start, end, i;
} GgufSpan;

static int span_cmp(const void *a, const void *b)
{
	const GgufSpan *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* No two tensors share bytes: one would be read as the other's data. Sorted by offset,
 * each must end where the next starts or before. */
static int check_overlap(GgufRd *r, const GgufFile *f)
{
	if (f->n_tensors < 2)
		return 0;
	GgufSpan *s = malloc((size_t)f->n_tensors * sizeof *s);
	if (!s)
		return rd_fail(r, BN_ENOMEM, NULL, "out of memory");
	for (uint64_t i = 0; i < f->n_tensors; i++) /* in the file: the sums cannot wrap */
		s[i] = (GgufSpan){ f->tensors[i].offset, f->tensors[i].offset + f->tensors[i].nbytes, i };
	qsort(s, (size_t)f->n_tensors, sizeof *s, span_cmp);
	for (uint64_t k = 0; k + 1 < f->n_tensors; k++) {
		if (s[k].end <= s[k + 1].start)
			continue;
		const GgufTensor *a = &f->tensors[s[k].i], *b = &f->tensors[s[k + 1].i];
		char an[96], bn[96];
		escape(an, sizeof an, (const uint8_t *)a->name, strlen(a->name));
		escape(bn, sizeof bn, (const uint8_t *)b->name, strlen(b->name));
		snprintf(r->where, sizeof r->where, "tensor %" PRIu64 " '%s'", s[k + 1].i, bn);
		uint64_t b_start = s[k + 1].start, b_end = s[k + 1].end;
		uint64_t a_start = s[k].start, a_end = s[k].end;
		free(s);
		return rd_fail(r, BN_EFORMAT, "offset",
			       "data at offsets %" PRIu64 "..%" PRIu64 " overlaps tensor %" PRIu64
			       " '%s' at %" PRIu64 "..%" PRIu64 " (each tensor needs bytes of its own)",
			       b_start, b_end, (uint64_t)(a - f->tensors), an, a_start, a_end);
	}
	free(s);
	return 0;
}

/* Places the data section and checks every tensor lies inside the file, apart from the
 * others. */
static int parse_data(GgufRd *r, GgufImpl *im)
{
	GgufFile *f = &im->f;
	uint64_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
	if (!bn_add_ok(r->pos, pad, &f->data_offset))
		return rd_fail(r, BN_EFORMAT, NULL, "data section offset overflows");
	uint64_t extent = data_extent(f);
	int rc;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		char what[96];
		escape(what, sizeof what, (const uint8_t *)f->tensors[i].name,
		       strlen(f->tensors[i].name));
		snprintf(r->where, sizeof r->where, "tensor %" PRIu64 " '%s'", i, what);
		if ((rc = check_in_file(r, f, i, extent)))
			return rc;
	}
	if ((rc = check_overlap(r, f)))
		return rc;
	if (!index_init(&im->tensor_ix, f->n_tensors))
		return rd_fail(r, BN_ENOMEM, NULL, "out of memory");
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		uint64_t prev = index_add(&im->tensor_ix, f, tensor_name, i);
		if (prev) {
			char what[96];
			escape(what, sizeof what, (const uint8_t *)f->tensors[i].name,
			       strlen(f->tensors[i].name));
			snprintf(r->where, sizeof r->where, "tensor %" PRIu64 " '%s'", i, what);
			return rd_fail(r, BN_EFORMAT, "name", "duplicate tensor name (also tensor %" PRIu64 ")",
				       prev - 1);
		}
	}
	return 0;
}

/* Frees what parsing allocated; the mapping is the caller's (gguf_open unmaps). */
static void impl_free(GgufImpl *im)
{
	GgufFile *f = &im->f;
	for (uint64_t i = 0; i < f->n_kv; i++) {
		free(f->kv[i].key);
		free((void *)f->kv[i].val.elem_off);
	}
	for (uint64_t i = 0; i < f->n_tensors; i++)
		free(f->tensors[i].name);
	free(f->kv);
	free(f->tensors);
	free(im->kv_ix.slot);
	free(im->tensor_ix.slot);
	free(f->path);
	free(im);
}

static GgufFile *parse(const uint8_t *base, uint64_t size, const char *path, BnErr *e)
{
	GgufImpl *im = calloc(1, sizeof *im);
	char *p = dup_bytes(path, strlen(path));
	if (!im || !p) {
		free(im);
		free(p);
		bn_err(e, BN_ENOMEM, "%s: out of memory", path);
		return NULL;
	}
	GgufFile *f = &im->f;
	f->path = p;
	f->base = base;
	f->size = size;
	f->alignment = GGUF_DEFAULT_ALIGNMENT;
	GgufRd r = {.base = base, .size = size, .path = path, .e = e};
	uint64_t n_tensors = 0, n_kv = 0;
	if (parse_header(&r, f, &n_tensors, &n_kv) || parse_kvs(&r, im, n_kv) ||
	    parse_alignment(&r, f) || parse_tensors(&r, im, n_tensors) || parse_data(&r, im)) {
		impl_free(im);
		return NULL;
	}
	return f;
}

GgufFile *gguf_open_mem(const void *buf, uint64_t size, const char *name, BnErr *e)
{
	if (!buf && size) {
		bn_err(e, BN_EINVAL, "%s: NULL buffer", name ? name : "<memory>");
		return NULL;
	}
	return parse(buf ? buf : (const void *)"", size, name ? name : "<memory>", e);
}

GgufFile *gguf_open(const char *path, BnErr *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		bn_err(e, BN_EIO, "%s: open: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	const char *why = fstat(fd, &st) ? strerror(errno)
			  : !S_ISREG(st.st_mode) ? "not a regular file"
			  : (uint64_t)st.st_size > SIZE_MAX ? "too large to map"
			  : NULL;
	if (why) {
		bn_err(e, BN_EIO, "%s: open: %s", path, why);
		close(fd);
		return NULL;
	}
	uint64_t size = (uint64_t)st.st_size;
	void *map = NULL;
	if (size) { /* mmap of 0 bytes fails; an empty file gets the parser's truncation error */
		map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			bn_err(e, BN_EIO, "%s: mmap: %s", path, strerror(errno));
			close(fd);
			return NULL;
		}
	}
	close(fd);
	GgufFile *f = parse(map ? map : (const void *)"", size, path, e);
	if (!f) {
		if (map)
			munmap(map, (size_t)size);
		return NULL;
	}
	f->mapped = map != NULL;
	f->dev = (uint64_t)st.st_dev;
	f->ino = (uint64_t)st.st_ino;
	return f;
}

void gguf_close(GgufFile *f)
{
	if (!f)
		return;
	if (f->mapped)
		munmap((void *)f->base, (size_t)f->size);
	impl_free((GgufImpl *)f);
}

/* ---- accessors ---------------------------------------------------------- */

const GgufKV *gguf_find(const GgufFile *f, const char *key)
{
	if (!f)
		return NULL;
	uint64_t i = index_find(&((const GgufImpl *)f)->kv_ix, f, kv_name, key);
	return i ? &f->kv[i - 1] : NULL;
}

const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name)
{
	if (!f)
		return NULL;
	uint64_t i = index_find(&((const GgufImpl *)f)->tensor_ix, f, tensor_name, name);
	return i ? &f->tensors[i - 1] : NULL;
}

/* Two's complement reinterpretation without implementation-defined conversions. */
static int64_t sext(uint64_t v, int bits)
{
	uint64_t sign = (uint64_t)1 << (bits - 1);
	v &= sign | (sign - 1);
	return v & sign ? -(int64_t)(sign - 1 - (v ^ sign)) - 1 : (int64_t)v;
}

bool gguf_value_int(const GgufValue *v, int64_t *out)
{
	if (!v || !v->data)
		return false;
	const uint8_t *p = v->data;
	switch (v->type) {
	case GGUF_T_U8: *out = p[0]; return true;
	case GGUF_T_I8: *out = sext(p[0], 8); return true;
	case GGUF_T_U16: *out = le16(p); return true;
	case GGUF_T_I16: *out = sext(le16(p), 16); return true;
	case GGUF_T_U32: *out = le32(p); return true;
	case GGUF_T_I32: *out = sext(le32(p), 32); return true;
	case GGUF_T_BOOL: *out = p[0] != 0; return true;
	case GGUF_T_I64: *out = sext(le64(p), 64); return true;
	case GGUF_T_U64:
		if (le64(p) > INT64_MAX)
			return false;
		*out = (int64_t)le64(p);
		return true;
	default: return false;
	}
}

bool gguf_value_float(const GgufValue *v, double *out)
{
	int64_t i;
	if (!v || !v->data)
		return false;
	if (v->type == GGUF_T_F32) {
		uint32_t u = le32(v->data);
		float fl;
		memcpy(&fl, &u, sizeof fl);
		*out = fl;
		return true;
	}
	if (v->type == GGUF_T_F64) {
		uint64_t u = le64(v->data);
		memcpy(out, &u, sizeof *out);
		return true;
	}
	if (v->type == GGUF_T_U64) { /* may exceed INT64_MAX */
		*out = (double)le64(v->data);
		return true;
	}
	if (!gguf_value_int(v, &i))
		return false;
	*out = (double)i;
	return true;
}

bool gguf_value_str(const GgufValue *v, GgufStr *out)
{
	if (!v || v->type != GGUF_T_STRING || !v->data)
		return false;
	out->len = le64(v->data);
	out->ptr = (const char *)v->data + 8;
	return true;
}

bool gguf_value_elem(const GgufValue *v, uint64_t i, GgufValue *out)
{
	if (!v || v->type != GGUF_T_ARRAY || i >= v->arr_n)
		return false;
	GgufType t = v->arr_type;
	memset(out, 0, sizeof *out);
	out->type = t;
	if (!type_indexed(t)) {
		uint64_t es = type_size(t);
		if (!es)
			return false;
		out->data = v->data + i * es;
		out->size = es;
		return true;
	}
	if (!v->elem_off)
		return false;
	uint64_t off = v->elem_off[i];
	uint64_t end = i + 1 < v->arr_n ? v->elem_off[i + 1] : v->size;
	out->data = v->data + off;
	out->size = end - off;
	if (t == GGUF_T_ARRAY) {
		out->arr_type = (GgufType)le32(out->data);
		out->arr_n = le64(out->data + 4);
		out->data += 12;
		out->size -= 12;
		uint64_t rel = v->elem_off[v->arr_n + i];
		out->elem_off = rel ? v->elem_off + rel : NULL;
	}
	return true;
}

bool gguf_get_int(const GgufFile *f, const char *key, int64_t *out)
{
	const GgufKV *kv = gguf_find(f, key);
	return kv && gguf_value_int(&kv->val, out);
}

bool gguf_get_float(const GgufFile *f, const char *key, double *out)
{
	const GgufKV *kv = gguf_find(f, key);
	return kv && gguf_value_float(&kv->val, out);
}

bool gguf_get_str(const GgufFile *f, const char *key, GgufStr *out)
{
	const GgufKV *kv = gguf_find(f, key);
	return kv && gguf_value_str(&kv->val, out);
}

static void print_str(const GgufStr *s, FILE *out)
{
	fputc('"', out);
	for (uint64_t i = 0; i < s->len; i++) {
		uint8_t c = (uint8_t)s->ptr[i];
		switch (c) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(out, "\\x%02x", c);
			else
				fputc(c, out); /* UTF-8 passes through */
		}
	}
	fputc('"', out);
}

void gguf_value_print(const GgufValue *v, FILE *out, int max_elems)
{
	int64_t i;
	double d;
	GgufStr s = {NULL, 0};
	if (v->type == GGUF_T_BOOL) {
		fputs(v->data[0] ? "true" : "false", out);
	} else if (v->type == GGUF_T_U64) {
		fprintf(out, "%" PRIu64, le64(v->data));
	} else if (gguf_value_int(v, &i)) {
		fprintf(out, "%" PRId64, i);
	} else if (gguf_value_float(v, &d)) {
		fprintf(out, "%g", d);
	} else if (gguf_value_str(v, &s)) {
		print_str(&s, out);
	} else if (v->type == GGUF_T_ARRAY) {
		/* max_elems < 0: all of them */
		uint64_t shown = max_elems < 0 || (uint64_t)max_elems > v->arr_n ? v->arr_n
										 : (uint64_t)max_elems;
		GgufValue el;
		fputc('[', out);
		for (uint64_t k = 0; k < shown && gguf_value_elem(v, k, &el); k++) {
			if (k)
				fputs(", ", out);
			gguf_value_print(&el, out, max_elems);
		}
		if (shown < v->arr_n)
			fprintf(out, "%s... (%" PRIu64 " total)", shown ? ", " : "", v->arr_n);
		fputc(']', out);
	} else {
		fprintf(out, "<type %d>", (int)v->type);
	}
}

/* ---- writer ------------------------------------------------------------- */

typedef struct {
	char *key;
	GgufType type;
	uint8_t *payload; /* the value's bytes as stored after its type */
	uint64_t size;
} GgufWKv;

typedef struct {
	char *name;
	uint32_t ggml_type;
	int n_dims;
	int64_t ne[GGUF_MAX_DIMS];
	const void *data;
	uint64_t nbytes;
} GgufWTensor;

struct GgufWriter {
	GgufWKv *kv;
	uint64_t n_kv, cap_kv;
	GgufWTensor *t;
	uint64_t n_t, cap_t;
	int err;           /* the first failure of a void setter; gguf_writer_write reports it */
	char err_msg[256];
};

GgufWriter *gguf_writer_new(void)
{
	return calloc(1, sizeof(GgufWriter));
}

void gguf_writer_free(GgufWriter *w)
{
	if (!w)
		return;
	for (uint64_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].payload);
	}
	for (uint64_t i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->kv);
	free(w->t);
	free(w);
}

static void w_fail(GgufWriter *w, int code, const char *fmt, ...) BN_PRINTF(3, 4);

static void w_fail(GgufWriter *w, int code, const char *fmt, ...)
{
	if (w->err)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->err_msg, sizeof w->err_msg, fmt, ap);
	va_end(ap);
	w->err = code;
}

/* Sets key to a value whose payload is head (nh bytes) then body (nb bytes), both
 * copied; replaces an earlier value of the same key. body NULL: leave it for the caller
 * to fill; returns the body's place, or NULL on failure. */
static uint8_t *w_set(GgufWriter *w, const char *key, GgufType type, const void *head, uint64_t nh,
		      const void *body, uint64_t nb)
{
	uint64_t size;
	if (!w)
		return NULL;
	if (!key) {
		w_fail(w, BN_EINVAL, "metadata key is NULL");
		return NULL;
	}
	if (!bn_add_ok(nh, nb, &size) || size >= SIZE_MAX) {
		w_fail(w, BN_EINVAL, "key '%s': value too large", key);
		return NULL;
	}
	uint8_t *p = malloc((size_t)size + 1);
	if (!p) {
		w_fail(w, BN_ENOMEM, "key '%s': out of memory", key);
		return NULL;
	}
	if (nh)
		memcpy(p, head, (size_t)nh);
	if (body && nb)
		memcpy(p + nh, body, (size_t)nb);
	uint64_t i = 0;
	while (i < w->n_kv && strcmp(w->kv[i].key, key))
		i++;
	if (i == w->n_kv) {
		char *k = dup_bytes(key, strlen(key));
		if (!k || !grow((void **)&w->kv, &w->cap_kv, i, UINT32_MAX, sizeof *w->kv)) {
			free(k);
			free(p);
			w_fail(w, BN_ENOMEM, "key '%s': out of memory", key);
			return NULL;
		}
		w->kv[i].key = k;
		w->n_kv++;
	}
	free(w->kv[i].payload);
	w->kv[i].type = type;
	w->kv[i].payload = p;
	w->kv[i].size = size;
	return p + nh;
}

static void w_scalar(GgufWriter *w, const char *key, GgufType type, uint64_t bits)
{
	uint8_t b[8];
	put_le(b, bits, (int)type_size(type));
	w_set(w, key, type, b, type_size(type), NULL, 0);
}

void gguf_writer_u32(GgufWriter *w, const char *key, uint32_t v)
{
	w_scalar(w, key, GGUF_T_U32, v);
}

void gguf_writer_i32(GgufWriter *w, const char *key, int32_t v)
{
	w_scalar(w, key, GGUF_T_I32, (uint32_t)v);
}

void gguf_writer_u64(GgufWriter *w, const char *key, uint64_t v)
{
	w_scalar(w, key, GGUF_T_U64, v);
}

void gguf_writer_f32(GgufWriter *w, const char *key, float v)
{
	uint32_t u;
	memcpy(&u, &v, sizeof u);
	w_scalar(w, key, GGUF_T_F32, u);
}

void gguf_writer_bool(GgufWriter *w, const char *key, bool v)
{
	w_scalar(w, key, GGUF_T_BOOL, v);
}

void gguf_writer_str(GgufWriter *w, const char *key, const char *v)
{
	uint8_t h[8];
	uint64_t n = v ? strlen(v) : 0;
	put_le(h, n, 8);
	w_set(w, key, GGUF_T_STRING, h, 8, v, n);
}

void gguf_writer_arr(GgufWriter *w, const char *key, GgufType elem_type, const void *data,
		     uint64_t n)
{
	uint64_t es = type_size(elem_type), nb;
	if (!w)
		return;
	if (!es) {
		w_fail(w, BN_EINVAL, "key '%s': gguf_writer_arr takes scalar elements, not %s",
		       key ? key : "(null)", gguf_type_name(elem_type));
		return;
	}
	if (!bn_mul_ok(n, es, &nb) || (n && !data)) {
		w_fail(w, BN_EINVAL, "key '%s': bad array of %" PRIu64 " elements",
		       key ? key : "(null)", n);
		return;
	}
	uint8_t h[12];
	put_le(h, elem_type, 4);
	put_le(h + 4, n, 8);
	uint8_t *body = w_set(w, key, GGUF_T_ARRAY, h, 12, NULL, nb);
	if (!body)
		return;
	/* The caller's elements are in host order; the file is little-endian. */
	const uint8_t *src = data;
	for (uint64_t i = 0; i < n; i++, src += es) {
		uint64_t v = 0;
		if (es == 1) {
			v = src[0];
		} else if (es == 2) {
			uint16_t x;
			memcpy(&x, src, 2);
			v = x;
		} else if (es == 4) {
			uint32_t x;
			memcpy(&x, src, 4);
			v = x;
		} else {
			memcpy(&v, src, 8);
		}
		put_le(body + i * es, v, (int)es);
	}
}

void gguf_writer_arr_str(GgufWriter *w, const char *key, const char *const *strs, uint64_t n)
{
	uint64_t total = 0;
	if (!w)
		return;
	for (uint64_t i = 0; i < n; i++) {
		if (!strs || !strs[i] || !bn_add_ok(total, 8 + strlen(strs[i]), &total)) {
			w_fail(w, BN_EINVAL, "key '%s': string %" PRIu64 " is NULL",
			       key ? key : "(null)", i);
			return;
		}
	}
	uint8_t h[12];
	put_le(h, GGUF_T_STRING, 4);
	put_le(h + 4, n, 8);
	uint8_t *p = w_set(w, key, GGUF_T_ARRAY, h, 12, NULL, total);
	if (!p)
		return;
	for (uint64_t i = 0; i < n; i++) {
		size_t len = strlen(strs[i]);
		put_le(p, len, 8);
		memcpy(p + 8, strs[i], len);
		p += 8 + len;
	}
}

void gguf_writer_raw(GgufWriter *w, const char *key, GgufType type, const void *payload,
		     uint64_t payload_size)
{
	if (w && payload_size && !payload) {
		w_fail(w, BN_EINVAL, "key '%s': NULL payload", key ? key : "(null)");
		return;
	}
	w_set(w, key, type, NULL, 0, payload, payload_size);
}

int gguf_writer_tensor(GgufWriter *w, const char *name, uint32_t ggml_type, int n_dims,
		       const int64_t *ne, const void *data, uint64_t nbytes, BnErr *e)
{
	IrDtype dt;
	uint64_t n = 1, want;
	if (!w || !name || !name[0])
		return bn_err(e, BN_EINVAL, "gguf writer: tensor name is empty");
	if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
		return bn_err(e, BN_EINVAL, "tensor '%s': %d dimensions; expected 1 to %d", name, n_dims,
			      GGUF_MAX_DIMS);
	for (int d = 0; d < n_dims; d++)
		if (ne[d] < 1 || !bn_mul_ok(n, (uint64_t)ne[d], &n) || n > INT64_MAX)
			return bn_err(e, BN_EINVAL, "tensor '%s': ne[%d] = %" PRId64 " is out of range",
				      name, d, ne[d]);
	if (!ir_dtype_from_ggml(ggml_type, &dt))
		return bn_err(e, BN_EUNSUPPORTED, "tensor '%s': type %" PRIu32 " (%s) is not supported",
			      name, ggml_type, ir_ggml_type_desc(ggml_type));
	if (!ir_dtype_nbytes(dt, n, (uint64_t)ne[0], &want))
		return bn_err(e, BN_EINVAL, "tensor '%s': row length %" PRId64
			      " does not fit the %s block of %d", name, ne[0], ir_dtype_name(dt),
			      ir_dtype_info(dt)->block);
	if (nbytes != want)
		return bn_err(e, BN_EINVAL, "tensor '%s': %" PRIu64 " bytes of data; %" PRIu64
			      " %s elements take %" PRIu64, name, nbytes, n, ir_dtype_name(dt), want);
	if (!data)
		return bn_err(e, BN_EINVAL, "tensor '%s': data is NULL", name);
	for (uint64_t i = 0; i < w->n_t; i++)
		if (!strcmp(w->t[i].name, name))
			return bn_err(e, BN_EINVAL, "tensor '%s': duplicate tensor name", name);
	char *copy = dup_bytes(name, strlen(name));
	if (!copy || !grow((void **)&w->t, &w->cap_t, w->n_t, UINT32_MAX, sizeof *w->t)) {
		free(copy);
		return bn_err(e, BN_ENOMEM, "tensor '%s': out of memory", name);
	}
	GgufWTensor *t = &w->t[w->n_t++];
	t->name = copy;
	t->ggml_type = ggml_type;
	t->n_dims = n_dims;
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = d < n_dims ? ne[d] : 1;
	t->data = data;
	t->nbytes = nbytes;
	return BN_OK;
}

/* Output stream with the position (for padding) and the first error latched. */
typedef struct {
	FILE *fp;
	uint64_t pos;
	bool failed;
} GgufOut;

static void out_bytes(GgufOut *o, const void *p, uint64_t n)
{
	if (o->failed || !n)
		return;
	if (fwrite(p, 1, (size_t)n, o->fp) != n)
		o->failed = true;
	o->pos += n;
}

static void out_le(GgufOut *o, uint64_t v, int n)
{
	uint8_t b[8];
	put_le(b, v, n);
	out_bytes(o, b, (uint64_t)n);
}

static void out_str(GgufOut *o, const char *s)
{
	out_le(o, strlen(s), 8);
	out_bytes(o, s, strlen(s));
}

static void out_pad(GgufOut *o, uint64_t align)
{
	static const uint8_t zeros[256];
	uint64_t pad = (align - o->pos % align) % align;
	while (pad) {
		uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
		out_bytes(o, zeros, k);
		pad -= k;
	}
}

/* Cannot overflow here: every size added is of data held in memory. */
static uint64_t align_up(uint64_t v, uint64_t a)
{
	return v + (a - v % a) % a;
}

/* The alignment the file will declare (general.alignment if set). */
static int w_alignment(const GgufWriter *w, const char *path, uint64_t *align, BnErr *e)
{
	*align = GGUF_DEFAULT_ALIGNMENT;
	for (uint64_t i = 0; i < w->n_kv; i++) {
		if (strcmp(w->kv[i].key, "general.alignment"))
			continue;
		if (w->kv[i].type != GGUF_T_U32 || w->kv[i].size != 4)
			return bn_err(e, BN_EINVAL, "%s: key 'general.alignment': must be a u32", path);
		uint32_t a = le32(w->kv[i].payload);
		if (!a || (a & (a - 1)))
			return bn_err(e, BN_EINVAL,
				      "%s: key 'general.alignment': %" PRIu32 " is not a nonzero power of two",
				      path, a);
		*align = a;
	}
	return BN_OK;
}

static void w_emit(const GgufWriter *w, GgufOut *o, uint64_t align)
{
	out_bytes(o, "GGUF", 4);
	out_le(o, 3, 4);
	out_le(o, w->n_t, 8);
	out_le(o, w->n_kv, 8);
	for (uint64_t i = 0; i < w->n_kv; i++) {
		out_str(o, w->kv[i].key);
		out_le(o, w->kv[i].type, 4);
		out_bytes(o, w->kv[i].payload, w->kv[i].size);
	}
	uint64_t off = 0;
	for (uint64_t i = 0; i < w->n_t; i++) {
		const GgufWTensor *t = &w->t[i];
		out_str(o, t->name);
		out_le(o, (uint64_t)t->n_dims, 4);
		for (int d = 0; d < t->n_dims; d++)
			out_le(o, (uint64_t)t->ne[d], 8);
		out_le(o, t->ggml_type, 4);
		out_le(o, off, 8);
		off = align_up(off + t->nbytes, align);
	}
	out_pad(o, align);
	/* One fwrite per tensor: the data is streamed from the caller, never gathered. */
	for (uint64_t i = 0; i < w->n_t && !o->failed; i++) {
		out_bytes(o, w->t[i].data, w->t[i].nbytes);
		out_pad(o, align);
	}
}

int gguf_writer_write(GgufWriter *w, const char *path, BnErr *e)
{
	uint64_t align;
	struct stat st;
	if (!w || !path)
		return bn_err(e, BN_EINVAL, "gguf writer: no writer or path");
	if (w->err)
		return bn_err(e, w->err, "%s: %s", path, w->err_msg);
	if (w_alignment(w, path, &align, e))
		return e ? e->code : BN_EINVAL;
	/* A regular file is written beside its destination and renamed into place, so a
	 * failed write leaves no half file; anything else (a device, a pipe) directly. */
	bool direct = !stat(path, &st) && !S_ISREG(st.st_mode);
	char *tmp = malloc(strlen(path) + 5);
	if (!tmp)
		return bn_err(e, BN_ENOMEM, "%s: out of memory", path);
	snprintf(tmp, strlen(path) + 5, "%s%s", path, direct ? "" : ".tmp");
	GgufOut o = {.fp = fopen(tmp, "wb")};
	if (!o.fp) {
		bn_err(e, BN_EIO, "%s: cannot create: %s", tmp, strerror(errno));
		free(tmp);
		return BN_EIO;
	}
	w_emit(w, &o, align);
	int err = o.failed || fflush(o.fp) ? (errno ? errno : EIO) : 0;
	if (fclose(o.fp) && !err)
		err = errno ? errno : EIO;
	if (!err && !direct && rename(tmp, path))
		err = errno;
	if (err) {
		if (!direct)
			unlink(tmp);
		free(tmp);
		return bn_err(e, BN_EIO, "%s: write failed: %s", path, strerror(err));
	}
	free(tmp);
	return BN_OK;
}
