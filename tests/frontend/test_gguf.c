/* test_gguf.c - the GGUF reader and writer: round trips, the golden models, hostile files. */
#include "testutil.h"

#include "frontend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- helpers ------------------------------------------------------------ */

/* A growable byte buffer for hand-made (mostly hostile) files. */
typedef struct {
	uint8_t *p;
	size_t n, cap;
} Buf;

static void b_bytes(Buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void b_le(Buf *b, uint64_t v, int n)
{
	uint8_t t[8];
	for (int i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> 8 * i);
	b_bytes(b, t, (size_t)n);
}

static void b_u32(Buf *b, uint32_t v)
{
	b_le(b, v, 4);
}

static void b_u64(Buf *b, uint64_t v)
{
	b_le(b, v, 8);
}

static void b_str(Buf *b, const char *s)
{
	b_u64(b, strlen(s));
	b_bytes(b, s, strlen(s));
}

static void b_pad(Buf *b, size_t align)
{
	while (b->n % align)
		b_le(b, 0, 1);
}

static void b_header(Buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
	b_bytes(b, "GGUF", 4);
	b_u32(b, version);
	b_u64(b, n_tensors);
	b_u64(b, n_kv);
}

static void b_kv_u32(Buf *b, const char *key, uint32_t v)
{
	b_str(b, key);
	b_u32(b, GGUF_T_U32);
	b_u32(b, v);
}

static void b_tensor(Buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
		     uint64_t offset)
{
	b_str(b, name);
	b_u32(b, n_dims);
	for (uint32_t d = 0; d < n_dims; d++)
		b_u64(b, ne[d]);
	b_u32(b, type);
	b_u64(b, offset);
}

/* One f32 tensor "t" of 8 elements at offset, data section padded and filled. */
static void b_one_tensor(Buf *b, uint64_t offset, size_t data_bytes)
{
	uint64_t ne[1] = {8};
	b_tensor(b, "t", 1, ne, 0, offset);
	b_pad(b, 32);
	for (size_t i = 0; i < data_bytes; i++)
		b_le(b, i, 1);
}

/* If BN_GGUF_SEED_DIR is set, keeps a copy of a test file there (fuzz corpus seeds). */
static void seed(const char *name, const void *p, size_t n)
{
	const char *dir = getenv("BN_GGUF_SEED_DIR");
	if (!dir)
		return;
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	assert_int_equal(tu_write_file(path, p, n), 0);
}

/* msg contains every word (NULL-terminated list). */
static void has_words(const char *msg, ...)
{
	va_list ap;
	va_start(ap, msg);
	for (const char *w; (w = va_arg(ap, const char *));)
		if (!strstr(msg, w))
			fail_msg("error message \"%s\" lacks \"%s\"", msg, w);
	va_end(ap);
}

/* Parses an exact-size copy (so a sanitizer sees any overread) and expects failure. */
static void expect_bad(const Buf *b, int code, BnErr *e)
{
	uint8_t *copy = malloc(b->n ? b->n : 1);
	assert_non_null(copy);
	memcpy(copy, b->p, b->n);
	memset(e, 0, sizeof *e);
	GgufFile *f = gguf_open_mem(copy, b->n, "bad.gguf", e);
	if (f)
		fail_msg("hostile file was accepted");
	if (e->code != code)
		fail_msg("code %d, expected %d: %s", e->code, code, e->msg);
	has_words(e->msg, "bad.gguf: ", (const char *)NULL);
	if (getenv("BN_GGUF_SHOW_ERRORS")) /* for reviewing the wording */
		printf("%s\n", e->msg);
	free(copy);
}

static GgufFile *write_and_open(GgufWriter *w, const char *name)
{
	BnErr e = {0};
	const char *path = tu_tmp(name);
	if (gguf_writer_write(w, path, &e))
		fail_msg("write: %s", e.msg);
	GgufFile *f = gguf_open(path, &e);
	if (!f)
		fail_msg("open: %s", e.msg);
	size_t n;
	void *bytes = tu_read_file(path, &n);
	if (bytes && n < 4096)
		seed(name, bytes, n);
	free(bytes);
	return f;
}

static int64_t get_i(const GgufFile *f, const char *key)
{
	int64_t v = 0;
	if (!gguf_get_int(f, key, &v))
		fail_msg("key '%s' is not an integer", key);
	return v;
}

static double get_f(const GgufFile *f, const char *key)
{
	double v = 0;
	if (!gguf_get_float(f, key, &v))
		fail_msg("key '%s' is not a number", key);
	return v;
}

static void assert_gstr(GgufStr s, const char *want)
{
	assert_int_equal(s.len, strlen(want));
	if (s.len)
		assert_memory_equal(s.ptr, want, s.len);
}

/* gguf_value_print into a malloc'd string. */
static char *print_value(const GgufValue *v, int max_elems)
{
	char *s = NULL;
	size_t n = 0;
	FILE *m = open_memstream(&s, &n);
	assert_non_null(m);
	gguf_value_print(v, m, max_elems);
	fclose(m);
	return s;
}

/* ---- round trips -------------------------------------------------------- */

static void test_roundtrip_scalars(void **state)
{
	(void)state;
	GgufWriter *w = gguf_writer_new();
	uint8_t u8 = 200, b1 = 1;
	uint8_t i8[1] = {0xfb};               /* -5 */
	uint8_t u16[2] = {0x60, 0xea};        /* 60000 */
	uint8_t i16[2] = {0xd0, 0x8a};        /* -30000 */
	uint8_t i64[8] = {0, 0, 0, 0, 0, 0, 0, 0x80}; /* INT64_MIN */
	uint8_t f64[8] = {0x18, 0x2d, 0x44, 0x54, 0xfb, 0x21, 0x09, 0x40}; /* pi */
	gguf_writer_raw(w, "u8", GGUF_T_U8, &u8, 1);
	gguf_writer_raw(w, "i8", GGUF_T_I8, i8, 1);
	gguf_writer_raw(w, "u16", GGUF_T_U16, u16, 2);
	gguf_writer_raw(w, "i16", GGUF_T_I16, i16, 2);
	gguf_writer_u32(w, "u32", 4000000000u);
	gguf_writer_i32(w, "i32", -2000000000);
	gguf_writer_f32(w, "f32", 0.15625f);
	gguf_writer_bool(w, "bool", true);
	gguf_writer_raw(w, "bool1", GGUF_T_BOOL, &b1, 1);
	gguf_writer_str(w, "str", "hello \"w\"\n\x01\xc4\x80");
	gguf_writer_str(w, "empty", "");
	gguf_writer_u64(w, "u64", UINT64_MAX);
	gguf_writer_u64(w, "u64small", 42);
	gguf_writer_raw(w, "i64", GGUF_T_I64, i64, 8);
	gguf_writer_raw(w, "f64", GGUF_T_F64, f64, 8);
	gguf_writer_u32(w, "replaced", 1);
	gguf_writer_u32(w, "replaced", 2); /* same key: replaces, keeps its place */
	GgufFile *f = write_and_open(w, "scalars.gguf");
	gguf_writer_free(w);

	assert_int_equal(f->version, 3);
	assert_int_equal(f->n_kv, 16);
	assert_int_equal(f->n_tensors, 0);
	assert_true(f->mapped);
	assert_int_equal(get_i(f, "u8"), 200);
	assert_int_equal(get_i(f, "i8"), -5);
	assert_int_equal(get_i(f, "u16"), 60000);
	assert_int_equal(get_i(f, "i16"), -30000);
	assert_int_equal(get_i(f, "u32"), 4000000000);
	assert_int_equal(get_i(f, "i32"), -2000000000);
	assert_true(get_f(f, "f32") == 0.15625);
	assert_int_equal(get_i(f, "bool"), 1);
	assert_int_equal(get_i(f, "bool1"), 1);
	assert_true(get_i(f, "i64") == INT64_MIN);
	assert_true(get_f(f, "f64") == 3.141592653589793);
	assert_int_equal(get_i(f, "u64small"), 42);
	assert_int_equal(get_i(f, "replaced"), 2);
	assert_string_equal(f->kv[15].key, "replaced");

	const char *types[][2] = {
		{"u8", "u8"}, {"i8", "i8"}, {"u16", "u16"}, {"i16", "i16"}, {"u32", "u32"},
		{"i32", "i32"}, {"f32", "f32"}, {"bool", "bool"}, {"str", "string"},
		{"u64", "u64"}, {"i64", "i64"}, {"f64", "f64"},
	};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		assert_string_equal(gguf_type_name(gguf_find(f, types[i][0])->val.type), types[i][1]);

	/* u64 above INT64_MAX is not an int64, but is a number */
	int64_t iv = 0;
	double dv = 0;
	assert_false(gguf_get_int(f, "u64", &iv));
	assert_true(gguf_get_float(f, "u64", &dv) && dv == 18446744073709551615.0);
	/* ints read as floats; floats and strings are not ints */
	assert_true(gguf_get_float(f, "i16", &dv) && dv == -30000.0);
	assert_false(gguf_get_int(f, "f32", &iv));
	assert_false(gguf_get_int(f, "str", &iv));
	assert_false(gguf_get_float(f, "str", &dv));

	GgufStr s = {NULL, 0};
	assert_true(gguf_get_str(f, "str", &s));
	assert_gstr(s, "hello \"w\"\n\x01\xc4\x80");
	assert_true(gguf_get_str(f, "empty", &s));
	assert_int_equal(s.len, 0);
	assert_false(gguf_get_str(f, "u32", &s));
	assert_false(gguf_get_str(f, "missing", &s));
	assert_false(gguf_get_int(f, "missing", &iv));
	assert_null(gguf_find(f, "missing"));
	assert_null(gguf_find(f, NULL));
	assert_null(gguf_find_tensor(f, "missing"));
	assert_string_equal(gguf_type_name((GgufType)99), "unknown");
	gguf_close(f);
}

static void test_roundtrip_arrays(void **state)
{
	(void)state;
	static const uint8_t u8[] = {0, 1, 255};
	static const int8_t i8[] = {-128, 0, 127};
	static const uint16_t u16[] = {0, 65535, 7};
	static const int16_t i16[] = {-32768, 32767, -1};
	static const uint32_t u32[] = {0, 4294967295u, 12345};
	static const int32_t i32[] = {INT32_MIN, INT32_MAX, -7};
	static const float f32[] = {1.5f, -0.25f, 1e-5f};
	static const uint8_t bl[] = {1, 0, 1};
	static const uint64_t u64[] = {0, 1ull << 40, 9};
	static const int64_t i64[] = {INT64_MIN, INT64_MAX, -3};
	static const double f64[] = {0.1, -2.5, 1e300};
	struct {
		const char *key;
		GgufType t;
		const void *data;
	} arrs[] = {
		{"a.u8", GGUF_T_U8, u8},       {"a.i8", GGUF_T_I8, i8},   {"a.u16", GGUF_T_U16, u16},
		{"a.i16", GGUF_T_I16, i16},    {"a.u32", GGUF_T_U32, u32}, {"a.i32", GGUF_T_I32, i32},
		{"a.f32", GGUF_T_F32, f32},    {"a.bool", GGUF_T_BOOL, bl}, {"a.u64", GGUF_T_U64, u64},
		{"a.i64", GGUF_T_I64, i64},    {"a.f64", GGUF_T_F64, f64},
	};
	enum { NS = 1000 };
	static char sbuf[NS][16];
	const char *strs[NS];
	for (int i = 0; i < NS; i++) {
		if (i % 7) /* every 7th string is empty */
			snprintf(sbuf[i], sizeof sbuf[i], "s%d", i);
		strs[i] = sbuf[i];
	}

	GgufWriter *w = gguf_writer_new();
	for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++)
		gguf_writer_arr(w, arrs[k].key, arrs[k].t, arrs[k].data, 3);
	gguf_writer_arr(w, "a.empty", GGUF_T_U32, NULL, 0);
	gguf_writer_arr_str(w, "a.strs", strs, NS);
	gguf_writer_arr_str(w, "a.nostrs", strs, 0);
	GgufFile *f = write_and_open(w, "arrays.gguf");
	gguf_writer_free(w);

	GgufValue el;
	for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) {
		const GgufKV *kv = gguf_find(f, arrs[k].key);
		assert_non_null(kv);
		assert_int_equal(kv->val.type, GGUF_T_ARRAY);
		assert_int_equal(kv->val.arr_type, arrs[k].t);
		assert_int_equal(kv->val.arr_n, 3);
		assert_null(kv->val.elem_off); /* fixed-size elements need no index */
		for (uint64_t i = 0; i < 3; i++) {
			assert_true(gguf_value_elem(&kv->val, i, &el));
			assert_int_equal(el.type, arrs[k].t);
		}
		assert_false(gguf_value_elem(&kv->val, 3, &el));
	}
	const GgufValue *v = &gguf_find(f, "a.i8")->val;
	int64_t iv = 0;
	double dv = 0;
	assert_true(gguf_value_elem(v, 0, &el) && gguf_value_int(&el, &iv) && iv == -128);
	v = &gguf_find(f, "a.u16")->val;
	assert_true(gguf_value_elem(v, 1, &el) && gguf_value_int(&el, &iv) && iv == 65535);
	v = &gguf_find(f, "a.i16")->val;
	assert_true(gguf_value_elem(v, 0, &el) && gguf_value_int(&el, &iv) && iv == -32768);
	v = &gguf_find(f, "a.u32")->val;
	assert_true(gguf_value_elem(v, 1, &el) && gguf_value_int(&el, &iv) && iv == 4294967295);
	v = &gguf_find(f, "a.i32")->val;
	assert_true(gguf_value_elem(v, 0, &el) && gguf_value_int(&el, &iv) && iv == INT32_MIN);
	v = &gguf_find(f, "a.f32")->val;
	assert_true(gguf_value_elem(v, 2, &el) && gguf_value_float(&el, &dv) && dv == (double)1e-5f);
	v = &gguf_find(f, "a.bool")->val;
	assert_true(gguf_value_elem(v, 1, &el) && gguf_value_int(&el, &iv) && iv == 0);
	v = &gguf_find(f, "a.u64")->val;
	assert_true(gguf_value_elem(v, 1, &el) && gguf_value_int(&el, &iv) && iv == 1ll << 40);
	v = &gguf_find(f, "a.i64")->val;
	assert_true(gguf_value_elem(v, 0, &el) && gguf_value_int(&el, &iv) && iv == INT64_MIN);
	assert_true(gguf_value_elem(v, 1, &el) && gguf_value_int(&el, &iv) && iv == INT64_MAX);
	v = &gguf_find(f, "a.f64")->val;
	assert_true(gguf_value_elem(v, 2, &el) && gguf_value_float(&el, &dv) && dv == 1e300);
	v = &gguf_find(f, "a.empty")->val;
	assert_int_equal(v->arr_n, 0);
	assert_false(gguf_value_elem(v, 0, &el));

	v = &gguf_find(f, "a.strs")->val;
	assert_int_equal(v->arr_type, GGUF_T_STRING);
	assert_int_equal(v->arr_n, NS);
	assert_non_null(v->elem_off);
	GgufStr s = {NULL, 0};
	for (int i = NS - 1; i >= 0; i--) { /* any order: the index gives O(1) access */
		assert_true(gguf_value_elem(v, (uint64_t)i, &el));
		assert_true(gguf_value_str(&el, &s));
		assert_gstr(s, strs[i]);
	}
	assert_int_equal(gguf_find(f, "a.nostrs")->val.arr_n, 0);
	/* an array is not a scalar, a scalar not an array */
	assert_false(gguf_value_int(v, &iv));
	GgufValue sub;
	assert_true(gguf_value_elem(&gguf_find(f, "a.u8")->val, 0, &el));
	assert_false(gguf_value_elem(&el, 0, &sub));
	gguf_close(f);
}

/* Raw payload of an array header: element type and count. */
static void b_arr(Buf *b, GgufType t, uint64_t n)
{
	b_u32(b, t);
	b_u64(b, n);
}

static void test_nested_arrays(void **state)
{
	(void)state;
	/* [[1, 2, 3], ["a", "bc"], [[7]], [], [[], ["x"]]] */
	Buf p = {0};
	b_arr(&p, GGUF_T_ARRAY, 5);
	b_arr(&p, GGUF_T_U32, 3);
	b_u32(&p, 1);
	b_u32(&p, 2);
	b_u32(&p, 3);
	b_arr(&p, GGUF_T_STRING, 2);
	b_str(&p, "a");
	b_str(&p, "bc");
	b_arr(&p, GGUF_T_ARRAY, 1);
	b_arr(&p, GGUF_T_U8, 1);
	b_le(&p, 7, 1);
	b_arr(&p, GGUF_T_I32, 0);
	b_arr(&p, GGUF_T_ARRAY, 2);
	b_arr(&p, GGUF_T_STRING, 0);
	b_arr(&p, GGUF_T_STRING, 1);
	b_str(&p, "x");
	/* eight levels deep, the most the reader takes: [[[[[[[[5]]]]]]]] */
	Buf d = {0};
	for (int i = 0; i < 7; i++)
		b_arr(&d, GGUF_T_ARRAY, 1);
	b_arr(&d, GGUF_T_I16, 1);
	b_le(&d, 5, 2);

	GgufWriter *w = gguf_writer_new();
	gguf_writer_raw(w, "nested", GGUF_T_ARRAY, p.p, p.n);
	gguf_writer_raw(w, "deep", GGUF_T_ARRAY, d.p, d.n);
	gguf_writer_u32(w, "after", 99); /* the reader must land exactly after the arrays */
	GgufFile *f = write_and_open(w, "nested.gguf");
	gguf_writer_free(w);
	assert_int_equal(get_i(f, "after"), 99);

	const GgufValue *v = &gguf_find(f, "nested")->val;
	GgufValue a, b, c;
	int64_t iv = 0;
	GgufStr s = {NULL, 0};
	assert_int_equal(v->arr_type, GGUF_T_ARRAY);
	assert_int_equal(v->arr_n, 5);
	assert_true(gguf_value_elem(v, 0, &a));
	assert_int_equal(a.arr_type, GGUF_T_U32);
	assert_int_equal(a.arr_n, 3);
	assert_true(gguf_value_elem(&a, 2, &b) && gguf_value_int(&b, &iv) && iv == 3);
	assert_true(gguf_value_elem(v, 1, &a));
	assert_true(gguf_value_elem(&a, 1, &b) && gguf_value_str(&b, &s));
	assert_gstr(s, "bc");
	assert_true(gguf_value_elem(v, 2, &a) && gguf_value_elem(&a, 0, &b));
	assert_true(gguf_value_elem(&b, 0, &c) && gguf_value_int(&c, &iv) && iv == 7);
	assert_true(gguf_value_elem(v, 3, &a));
	assert_int_equal(a.arr_n, 0);
	assert_true(gguf_value_elem(v, 4, &a) && gguf_value_elem(&a, 1, &b));
	assert_true(gguf_value_elem(&b, 0, &c) && gguf_value_str(&c, &s));
	assert_gstr(s, "x");
	assert_false(gguf_value_elem(v, 5, &a));

	char *txt = print_value(v, -1);
	assert_string_equal(txt, "[[1, 2, 3], [\"a\", \"bc\"], [[7]], [], [[], [\"x\"]]]");
	free(txt);
	txt = print_value(v, 1);
	assert_string_equal(txt, "[[1, ... (3 total)], ... (5 total)]");
	free(txt);

	v = &gguf_find(f, "deep")->val;
	a = *v;
	for (int i = 0; i < 7; i++) {
		assert_true(gguf_value_elem(&a, 0, &b));
		a = b;
	}
	assert_int_equal(a.arr_type, GGUF_T_I16);
	assert_true(gguf_value_elem(&a, 0, &b) && gguf_value_int(&b, &iv) && iv == 5);
	gguf_close(f);
	free(p.p);
	free(d.p);
}

static void test_value_print(void **state)
{
	(void)state;
	uint32_t ten[10];
	for (uint32_t i = 0; i < 10; i++)
		ten[i] = i;
	const char *strs[] = {"tab\there", "q\"b\\"};
	GgufWriter *w = gguf_writer_new();
	gguf_writer_str(w, "s", "a\"b\\\n\t\r\x01\x7f\xc4\x80z");
	gguf_writer_arr(w, "ten", GGUF_T_U32, ten, 10);
	gguf_writer_arr_str(w, "strs", strs, 2);
	gguf_writer_f32(w, "f", 0.5f);
	gguf_writer_bool(w, "b", false);
	gguf_writer_i32(w, "i", -3);
	gguf_writer_u64(w, "u", UINT64_MAX);
	GgufFile *f = write_and_open(w, "print.gguf");
	gguf_writer_free(w);
	struct {
		const char *key;
		int max;
		const char *want;
	} cases[] = {
		{"s", 8, "\"a\\\"b\\\\\\n\\t\\r\\x01\\x7f\xc4\x80z\""},
		{"ten", 3, "[0, 1, 2, ... (10 total)]"},
		{"ten", 0, "[... (10 total)]"},
		{"ten", 10, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"},
		{"ten", -1, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"},
		{"strs", 5, "[\"tab\\there\", \"q\\\"b\\\\\"]"},
		{"f", 1, "0.5"},
		{"b", 1, "false"},
		{"i", 1, "-3"},
		{"u", 1, "18446744073709551615"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *txt = print_value(&gguf_find(f, cases[i].key)->val, cases[i].max);
		assert_string_equal(txt, cases[i].want);
		free(txt);
	}
	gguf_close(f);
}

/* Fills n bytes with a pattern that differs per tensor. */
static uint8_t *pattern(uint64_t n, unsigned salt)
{
	uint8_t *p = malloc(n);
	assert_non_null(p);
	for (uint64_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + salt * 7 + 1);
	return p;
}

static void test_tensor_types(void **state)
{
	(void)state;
	struct {
		const char *name;
		uint32_t type;
		IrDtype dt;
		int n_dims;
		int64_t ne[4];
		uint64_t nbytes;
	} ts[] = {
		{"f32", 0, IR_DT_F32, 1, {5}, 20},
		{"f16", 1, IR_DT_F16, 2, {3, 3}, 18},
		{"bf16", 30, IR_DT_BF16, 3, {2, 2, 2}, 16},
		{"q8_0", 8, IR_DT_Q8_0, 2, {64, 2}, 4 * 34},
		{"q6_k", 14, IR_DT_Q6_K, 1, {256}, 210},
		{"tq1_0", 34, IR_DT_TQ1_0, 2, {256, 2}, 108},
		{"tq2_0", 35, IR_DT_TQ2_0, 2, {256, 3}, 198},
		{"i2_s", 36, IR_DT_I2_S, 2, {128, 4}, 512 / 4 + 32}, /* not 512 * 32 / 128 */
		{"i8", 24, IR_DT_I8, 4, {1, 2, 3, 4}, 24},
		{"i32", 26, IR_DT_I32, 1, {3}, 12},
	};
	enum { NT = sizeof ts / sizeof ts[0] };
	uint8_t *data[NT];
	BnErr e = {0};
	GgufWriter *w = gguf_writer_new();
	gguf_writer_str(w, "general.architecture", "test");
	for (unsigned i = 0; i < NT; i++) {
		data[i] = pattern(ts[i].nbytes, i);
		if (gguf_writer_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, data[i],
				       ts[i].nbytes, &e))
			fail_msg("%s", e.msg);
	}
	GgufFile *f = write_and_open(w, "types.gguf");
	gguf_writer_free(w);

	assert_int_equal(f->n_tensors, NT);
	assert_int_equal(f->alignment, GGUF_DEFAULT_ALIGNMENT);
	assert_int_equal(f->data_offset % 32, 0);
	uint64_t off = 0;
	for (unsigned i = 0; i < NT; i++) {
		const GgufTensor *t = gguf_find_tensor(f, ts[i].name);
		assert_ptr_equal(t, &f->tensors[i]);
		assert_int_equal(t->ggml_type, ts[i].type);
		assert_int_equal(t->dtype, ts[i].dt);
		assert_int_equal(t->n_dims, ts[i].n_dims);
		for (int d = 0; d < 4; d++)
			assert_int_equal(t->ne[d], d < ts[i].n_dims ? ts[i].ne[d] : 1);
		assert_int_equal(t->nbytes, ts[i].nbytes);
		assert_int_equal(t->offset, off);
		off = (off + t->nbytes + 31) / 32 * 32;
		/* a view into the mapping, not a copy */
		assert_ptr_equal(t->data, f->base + f->data_offset + t->offset);
		assert_memory_equal(t->data, data[i], t->nbytes);
		free(data[i]);
	}
	assert_int_equal(f->size, f->data_offset + off); /* the last tensor is padded too */
	gguf_close(f);
}

static void test_custom_alignment(void **state)
{
	(void)state;
	int64_t ne3[1] = {3}, ne5[1] = {5};
	float a[3] = {1, 2, 3};
	uint16_t h[5] = {1, 2, 3, 4, 5};
	BnErr e = {0};
	GgufWriter *w = gguf_writer_new();
	gguf_writer_u32(w, "general.alignment", 64);
	gguf_writer_str(w, "general.name", "odd"); /* makes the header end off the alignment */
	assert_int_equal(gguf_writer_tensor(w, "a", 0, 1, ne3, a, sizeof a, &e), 0);
	assert_int_equal(gguf_writer_tensor(w, "h", 1, 1, ne5, h, sizeof h, &e), 0);
	assert_int_equal(gguf_writer_tensor(w, "a2", 0, 1, ne3, a, sizeof a, &e), 0);
	GgufFile *f = write_and_open(w, "align64.gguf");
	gguf_writer_free(w);
	assert_int_equal(f->alignment, 64);
	assert_int_equal(f->data_offset % 64, 0);
	assert_int_equal(f->tensors[0].offset, 0);
	assert_int_equal(f->tensors[1].offset, 64);
	assert_int_equal(f->tensors[2].offset, 128);
	assert_memory_equal(f->tensors[0].data, a, sizeof a);
	assert_memory_equal(f->tensors[1].data, h, sizeof h);
	assert_memory_equal(f->tensors[2].data, a, sizeof a);
	assert_int_equal(f->size, f->data_offset + 192);

	/* the same file parsed from memory: pointers into the caller's buffer */
	size_t n;
	uint8_t *buf = tu_read_file(tu_tmp("align64.gguf"), &n);
	assert_non_null(buf);
	GgufFile *m = gguf_open_mem(buf, n, "mem", &e);
	assert_non_null(m);
	assert_false(m->mapped);
	assert_ptr_equal(m->tensors[2].data, buf + m->data_offset + 128);
	assert_string_equal(m->path, "mem");
	gguf_close(m);
	gguf_close(f);
	free(buf);
}

static void test_v2(void **state)
{
	(void)state;
	int64_t ne[1] = {4};
	float x[4] = {1, -1, 0.5f, 2};
	BnErr e = {0};
	GgufWriter *w = gguf_writer_new();
	gguf_writer_str(w, "general.architecture", "v2test");
	assert_int_equal(gguf_writer_tensor(w, "x", 0, 1, ne, x, sizeof x, &e), 0);
	assert_int_equal(gguf_writer_write(w, tu_tmp("v2.gguf"), &e), 0);
	gguf_writer_free(w);
	size_t n;
	uint8_t *buf = tu_read_file(tu_tmp("v2.gguf"), &n);
	assert_non_null(buf);
	assert_int_equal(buf[4], 3);
	buf[4] = 2; /* v2 and v3 share the layout (u64 counts) */
	seed("v2.gguf", buf, n);
	GgufFile *f = gguf_open_mem(buf, n, "v2.gguf", &e);
	if (!f)
		fail_msg("%s", e.msg);
	assert_int_equal(f->version, 2);
	GgufStr s = {NULL, 0};
	assert_true(gguf_get_str(f, "general.architecture", &s));
	assert_gstr(s, "v2test");
	assert_memory_equal(gguf_find_tensor(f, "x")->data, x, sizeof x);
	gguf_close(f);
	free(buf);
}

static void test_writer_rejects(void **state)
{
	(void)state;
	BnErr e = {0};
	int64_t ne[2] = {128, 4}, zero[2] = {0, 4}, q[1] = {16};
	uint8_t buf[4096] = {0};
	GgufWriter *w = gguf_writer_new();
	/* the generic n * type_size / block formula gives 4x the real I2_S size */
	assert_int_equal(gguf_writer_tensor(w, "i2s", 36, 2, ne, buf, 512 * 32 / 128 * 4, &e), BN_EINVAL);
	has_words(e.msg, "i2s", "160", (const char *)NULL);
	assert_int_equal(gguf_writer_tensor(w, "i2s", 36, 2, ne, buf, 160, &e), BN_OK);
	assert_int_equal(gguf_writer_tensor(w, "i2s", 36, 2, ne, buf, 160, &e), BN_EINVAL);
	has_words(e.msg, "duplicate", (const char *)NULL);
	assert_int_equal(gguf_writer_tensor(w, "tl2", 39, 2, ne, buf, 160, &e), BN_EUNSUPPORTED);
	has_words(e.msg, "tl2", "39", (const char *)NULL);
	assert_int_equal(gguf_writer_tensor(w, "d0", 0, 0, ne, buf, 4, &e), BN_EINVAL);
	assert_int_equal(gguf_writer_tensor(w, "d5", 0, 5, ne, buf, 4, &e), BN_EINVAL);
	assert_int_equal(gguf_writer_tensor(w, "z", 0, 2, zero, buf, 0, &e), BN_EINVAL);
	assert_int_equal(gguf_writer_tensor(w, "", 0, 1, ne, buf, 512, &e), BN_EINVAL);
	assert_int_equal(gguf_writer_tensor(w, "q", 8, 1, q, buf, 17, &e), BN_EINVAL);
	has_words(e.msg, "block", (const char *)NULL);
	assert_int_equal(gguf_writer_tensor(w, "nodata", 0, 1, q, NULL, 64, &e), BN_EINVAL);
	gguf_writer_free(w);

	/* a bad setter is reported by write */
	w = gguf_writer_new();
	gguf_writer_arr(w, "bad", GGUF_T_STRING, buf, 1);
	assert_int_equal(gguf_writer_write(w, tu_tmp("never.gguf"), &e), BN_EINVAL);
	has_words(e.msg, "never.gguf", "bad", (const char *)NULL);
	gguf_writer_free(w);

	/* alignments the reader would refuse are refused here too */
	uint32_t bad[] = {0, 3, 48};
	for (size_t i = 0; i < 3; i++) {
		w = gguf_writer_new();
		gguf_writer_u32(w, "general.alignment", bad[i]);
		assert_int_equal(gguf_writer_write(w, tu_tmp("never.gguf"), &e), BN_EINVAL);
		has_words(e.msg, "general.alignment", "power of two", (const char *)NULL);
		gguf_writer_free(w);
	}
	w = gguf_writer_new();
	gguf_writer_u64(w, "general.alignment", 64);
	assert_int_equal(gguf_writer_write(w, tu_tmp("never.gguf"), &e), BN_EINVAL);
	has_words(e.msg, "u32", (const char *)NULL);
	gguf_writer_free(w);
}

static void test_write_errors(void **state)
{
	(void)state;
	BnErr e = {0};
	int64_t ne[1] = {1024};
	float *x = calloc(1024, sizeof *x);
	GgufWriter *w = gguf_writer_new();
	assert_int_equal(gguf_writer_tensor(w, "x", 0, 1, ne, x, 4096, &e), 0);
	assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/out.gguf", &e), BN_EIO);
	has_words(e.msg, "/nonexistent-dir/out.gguf", (const char *)NULL);
	struct stat st;
	if (!stat("/dev/full", &st)) { /* every write fails with ENOSPC */
		assert_int_equal(gguf_writer_write(w, "/dev/full", &e), BN_EIO);
		has_words(e.msg, "/dev/full", "write failed", (const char *)NULL);
	}
	gguf_writer_free(w);
	free(x);
}

/* ---- golden models ------------------------------------------------------ */

static void test_golden_models(void **state)
{
	(void)state;
	struct {
		const char *file, *arch;
		uint32_t ternary;
	} ms[] = {
		{"tiny-b158-i2_s.gguf", "bitnet-b1.58", 36},
		{"tiny-b158-tq1_0.gguf", "bitnet-b1.58", 34},
		{"tiny-b158-tq2_0.gguf", "bitnet-b1.58", 35},
		{"tinyold-bitnet-i2_s.gguf", "bitnet", 36},
	};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
		char rel[256];
		snprintf(rel, sizeof rel, "golden/models/%s", ms[i].file);
		BnErr e = {0};
		GgufFile *f = gguf_open(tu_data(rel), &e);
		if (!f)
			fail_msg("%s", e.msg);
		GgufStr s = {NULL, 0};
		assert_true(gguf_get_str(f, "general.architecture", &s));
		assert_gstr(s, ms[i].arch);
		assert_true(f->n_tensors > 0);
		assert_int_equal(f->alignment, 32);
		const GgufTensor *t = gguf_find_tensor(f, "token_embd.weight");
		assert_non_null(t);
		assert_int_equal(t->dtype, IR_DT_F16);
		assert_int_equal(t->n_dims, 2);
		assert_int_equal(t->ne[0], 256);
		assert_int_equal(t->ne[1], 512);
		assert_int_equal(t->nbytes, 256 * 512 * 2);
		t = gguf_find_tensor(f, "blk.0.attn_q.weight");
		assert_non_null(t);
		assert_int_equal(t->ggml_type, ms[i].ternary);
		if (ms[i].ternary == 36)
			assert_int_equal(t->nbytes, 256 * 256 / 4 + 32);
		const GgufValue *tok = &gguf_find(f, "tokenizer.ggml.tokens")->val;
		GgufValue el;
		assert_int_equal(tok->arr_type, GGUF_T_STRING);
		assert_int_equal(tok->arr_n, 512);
		assert_true(gguf_value_elem(tok, 0, &el) && gguf_value_str(&el, &s));
		assert_gstr(s, "\xc4\x80"); /* byte 0 in the GPT-2 byte alphabet */
		assert_true(gguf_value_elem(tok, 496, &el) && gguf_value_str(&el, &s));
		assert_gstr(s, "<|begin_of_text|>");
		assert_int_equal(get_i(f, "tokenizer.ggml.bos_token_id"), 496);
		gguf_close(f);
	}
}

/* ---- hostile files ------------------------------------------------------ */

static void test_missing_file(void **state)
{
	(void)state;
	BnErr e = {0};
	assert_null(gguf_open("/nonexistent/model.gguf", &e));
	assert_int_equal(e.code, BN_EIO);
	has_words(e.msg, "/nonexistent/model.gguf", (const char *)NULL);
	assert_null(gguf_open(tu_data("golden"), &e)); /* a directory */
	assert_int_equal(e.code, BN_EIO);
	has_words(e.msg, "regular file", (const char *)NULL);
	const char *empty = tu_tmp("empty.gguf");
	assert_int_equal(tu_write_file(empty, "", 0), 0);
	assert_null(gguf_open(empty, &e));
	assert_int_equal(e.code, BN_EFORMAT);
	has_words(e.msg, empty, "truncated", (const char *)NULL);
	/* a mapped file that fails to parse is unmapped again (ASan/valgrind see the rest) */
	const char *ggml = tu_tmp("old.ggml");
	assert_int_equal(tu_write_file(ggml, "GGMLxxxxxxxxxxxxxxxxxxxx", 24), 0);
	assert_null(gguf_open(ggml, &e));
	assert_int_equal(e.code, BN_EFORMAT);
	has_words(e.msg, ggml, "found 'GGML'", (const char *)NULL);
}

/* Every prefix of a small file that uses every feature fails cleanly; only the whole file
 * parses. The file ends exactly where its last tensor does. */
static void test_truncated_prefixes(void **state)
{
	(void)state;
	const char *strs[] = {"a", "", "ccc"};
	int64_t ne8[1] = {8}, ne2[2] = {128, 1};
	float x[8] = {0};
	uint8_t i2s[64] = {0};
	Buf nest = {0};
	b_arr(&nest, GGUF_T_ARRAY, 2);
	b_arr(&nest, GGUF_T_STRING, 1);
	b_str(&nest, "n");
	b_arr(&nest, GGUF_T_U16, 2);
	b_le(&nest, 1, 4);
	BnErr e = {0};
	GgufWriter *w = gguf_writer_new();
	gguf_writer_str(w, "general.architecture", "bitnet-b1.58");
	gguf_writer_u32(w, "general.alignment", 32);
	gguf_writer_arr_str(w, "strs", strs, 3);
	gguf_writer_raw(w, "nest", GGUF_T_ARRAY, nest.p, nest.n);
	gguf_writer_f32(w, "f", 1);
	assert_int_equal(gguf_writer_tensor(w, "x", 0, 1, ne8, x, sizeof x, &e), 0);
	assert_int_equal(gguf_writer_tensor(w, "w", 36, 2, ne2, i2s, sizeof i2s, &e), 0);
	const char *path = tu_tmp("small.gguf");
	assert_int_equal(gguf_writer_write(w, path, &e), 0);
	gguf_writer_free(w);
	free(nest.p);
	size_t n;
	uint8_t *full = tu_read_file(path, &n);
	assert_non_null(full);
	seed("small.gguf", full, n);

	for (size_t len = 0; len <= n; len++) {
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, full, len);
		GgufFile *f = gguf_open_mem(cut, len, "cut.gguf", &e);
		if (len == n) {
			if (!f)
				fail_msg("whole file: %s", e.msg);
			assert_int_equal(f->n_tensors, 2);
			gguf_close(f);
		} else {
			if (f)
				fail_msg("prefix of %zu of %zu bytes was accepted", len, n);
			assert_int_equal(e.code, BN_EFORMAT);
			has_words(e.msg, "cut.gguf: ", (const char *)NULL);
			if (!strstr(e.msg, "truncated"))
				fail_msg("prefix %zu: unclear message: %s", len, e.msg);
		}
		free(cut);
	}
	free(full);
}

static void test_bad_header(void **state)
{
	(void)state;
	BnErr e;
	Buf b = {0};
	b_bytes(&b, "GGML", 4);
	b_u32(&b, 3);
	b_u64(&b, 0);
	b_u64(&b, 0);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "magic", "expected magic 'GGUF', found 'GGML'", (const char *)NULL);

	b.n = 0;
	b_bytes(&b, "GG", 2);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "magic", "truncated", (const char *)NULL);

	uint32_t versions[] = {1, 4, 0, 0x03000000};
	const char *words[] = {"version 1", "version 4", "version 0", "big-endian"};
	for (int i = 0; i < 4; i++) {
		b.n = 0;
		b_header(&b, versions[i], 0, 0);
		expect_bad(&b, BN_EUNSUPPORTED, &e);
		has_words(e.msg, "header version", words[i], "expected version 2 or 3", (const char *)NULL);
	}

	b.n = 0;
	b_header(&b, 3, 1ull << 60, 0);
	b_pad(&b, 4096);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "header n_tensors", "huge tensor count 1152921504606846976", "cannot fit",
		  (const char *)NULL);

	b.n = 0;
	b_header(&b, 3, 0, UINT64_MAX);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "header n_kv", "huge key-value count 18446744073709551615",
		  (const char *)NULL);

	/* a file cut inside the header's counts, or right after them: the counts are
	 * plausible, the file is short */
	b.n = 0;
	b_header(&b, 3, 46, 25);
	b.n = 20;
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "header n_kv", "truncated", (const char *)NULL);
	b.n = 24;
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "header n_tensors", "file is truncated: the header says 46 tensors",
		  "but the file ends at byte 24", (const char *)NULL);
	b.n = 0;
	b_header(&b, 3, 0, 25);
	for (int i = 0; i < 40; i++)
		b_le(&b, 0, 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "header n_kv", "file is truncated: the header says 25 key-value pairs",
		  "but the file ends at byte 64", (const char *)NULL);

	/* plausible counts, then garbage: the first impossible length is named */
	b.n = 0;
	b_header(&b, 3, 0, 5);
	b_kv_u32(&b, "a", 1);
	for (int i = 0; i < 60; i++)
		b_le(&b, 0xff, 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "pair 1 of 5 key", "huge key length 18446744073709551615",
		  (const char *)NULL);
	free(b.p);
}

static void test_bad_metadata(void **state)
{
	(void)state;
	BnErr e;
	Buf b = {0};

	/* a key whose length runs past the end */
	b_header(&b, 3, 0, 5);
	b_kv_u32(&b, "ok", 1);
	b_kv_u32(&b, "ok2", 1);
	b_u64(&b, 1000000);
	for (int i = 0; i < 40; i++)
		b_le(&b, 'a', 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "pair 2 of 5 key", "truncated", "key length 1000000", (const char *)NULL);

	/* huge string value */
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_str(&b, "s");
	b_u32(&b, GGUF_T_STRING);
	b_u64(&b, 1ull << 62);
	b_bytes(&b, "xyz", 3);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key 's'", "huge string length 4611686018427387904", (const char *)NULL);
	/* a long one that the file was cut inside */
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_str(&b, "s");
	b_u32(&b, GGUF_T_STRING);
	b_u64(&b, 100);
	b_bytes(&b, "xyz", 3);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key 's' string: file is truncated: string length 100 at byte 37",
		  (const char *)NULL);

	/* huge arrays of fixed-size and of variable-size elements */
	GgufType ats[] = {GGUF_T_U32, GGUF_T_STRING, GGUF_T_ARRAY, GGUF_T_U8};
	for (int i = 0; i < 4; i++) {
		b.n = 0;
		b_header(&b, 3, 0, 1);
		b_str(&b, "arr");
		b_u32(&b, GGUF_T_ARRAY);
		b_arr(&b, ats[i], i == 3 ? UINT64_MAX : 1ull << 61);
		b_pad(&b, 256);
		expect_bad(&b, BN_EFORMAT, &e);
		has_words(e.msg, "key 'arr' array count: huge", "array count", (const char *)NULL);
	}

	/* a string inside an array of arrays, too long: the message gives the element path */
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_str(&b, "nest");
	b_u32(&b, GGUF_T_ARRAY);
	b_arr(&b, GGUF_T_ARRAY, 2);
	b_arr(&b, GGUF_T_STRING, 1);
	b_str(&b, "fine");
	b_arr(&b, GGUF_T_STRING, 2);
	b_str(&b, "fine");
	b_u64(&b, 77);
	b_pad(&b, 64);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key 'nest'[1][1]", "string length 77", (const char *)NULL);

	/* unknown value types, top level and as elements */
	uint32_t bad_types[] = {13, 0xffffffffu};
	for (int i = 0; i < 2; i++) {
		b.n = 0;
		b_header(&b, 3, 0, 1);
		b_str(&b, "k");
		b_u32(&b, bad_types[i]);
		b_u64(&b, 0);
		expect_bad(&b, BN_EFORMAT, &e);
		has_words(e.msg, "key 'k' type", "unknown value type", (const char *)NULL);
	}
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_str(&b, "k");
	b_u32(&b, GGUF_T_ARRAY);
	b_arr(&b, (GgufType)13, 1);
	b_u64(&b, 0);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key 'k' array type", "unknown element value type 13", (const char *)NULL);

	/* nine levels of arrays: one too many */
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_str(&b, "deep");
	b_u32(&b, GGUF_T_ARRAY);
	for (int i = 0; i < 8; i++)
		b_arr(&b, GGUF_T_ARRAY, 1);
	b_arr(&b, GGUF_T_U8, 1);
	b_le(&b, 0, 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key 'deep'[0][0][0][0][0][0][0][0]", "nested deeper than 8",
		  (const char *)NULL);
	/* and very deep, very long: still refused, no stack growth */
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_str(&b, "deep");
	b_u32(&b, GGUF_T_ARRAY);
	for (int i = 0; i < 100000; i++)
		b_arr(&b, GGUF_T_ARRAY, 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "nested deeper", (const char *)NULL);

	/* a long key with odd bytes is shown escaped and cut short */
	char longkey[300];
	memset(longkey, 'k', sizeof longkey - 1);
	longkey[0] = '\x01';
	longkey[sizeof longkey - 1] = '\0';
	b.n = 0;
	b_header(&b, 3, 0, 2);
	b_kv_u32(&b, longkey, 1);
	b_kv_u32(&b, longkey, 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key '\\x01kkkk", "kkk...'", "duplicate key", (const char *)NULL);

	/* duplicate keys and keys with NUL bytes */
	b.n = 0;
	b_header(&b, 3, 0, 3);
	b_kv_u32(&b, "a", 1);
	b_kv_u32(&b, "b", 1);
	b_kv_u32(&b, "a", 2);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key 'a'", "duplicate key (pairs 0 and 2)", (const char *)NULL);
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_u64(&b, 3);
	b_bytes(&b, "a\0b", 3);
	b_u32(&b, GGUF_T_U8);
	b_le(&b, 0, 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key", "NUL", (const char *)NULL);
	free(b.p);
}

static void test_bad_alignment(void **state)
{
	(void)state;
	BnErr e;
	Buf b = {0};
	uint32_t aligns[] = {0, 3, 0x80000001u};
	for (int i = 0; i < 3; i++) {
		b.n = 0;
		b_header(&b, 3, 1, 1);
		b_kv_u32(&b, "general.alignment", aligns[i]);
		b_one_tensor(&b, 0, 32);
		expect_bad(&b, BN_EFORMAT, &e);
		has_words(e.msg, "key 'general.alignment'", "not a nonzero power of two",
			  (const char *)NULL);
	}
	b.n = 0;
	b_header(&b, 3, 1, 1);
	b_str(&b, "general.alignment");
	b_u32(&b, GGUF_T_U64);
	b_u64(&b, 32);
	b_one_tensor(&b, 0, 32);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "key 'general.alignment'", "u64", "expected u32", (const char *)NULL);

	/* a large valid alignment: fine, and the data section moves with it */
	b.n = 0;
	b_header(&b, 3, 1, 1);
	b_kv_u32(&b, "general.alignment", 256);
	b_one_tensor(&b, 0, 0);
	b_pad(&b, 256);
	for (int i = 0; i < 32; i++)
		b_le(&b, 0, 1);
	memset(&e, 0, sizeof e);
	GgufFile *f = gguf_open_mem(b.p, b.n, "a256", &e);
	if (!f)
		fail_msg("%s", e.msg);
	assert_int_equal(f->data_offset, 256);
	gguf_close(f);
	free(b.p);
}

static void test_bad_tensors(void **state)
{
	(void)state;
	BnErr e;
	Buf b = {0};
	uint64_t ne1[1] = {8}, ne5[5] = {1, 1, 1, 1, 1}, ne0[2] = {8, 0},
		 big[2] = {1ull << 32, 1ull << 32}, q[1] = {16};

	for (uint32_t nd = 0; nd <= 5; nd += 5) {
		b.n = 0;
		b_header(&b, 3, 1, 0);
		b_tensor(&b, "t", nd, ne5, 0, 0);
		b_pad(&b, 64);
		expect_bad(&b, BN_EFORMAT, &e);
		has_words(e.msg, "tensor 0 't' n_dims", nd ? "5 dimensions" : "0 dimensions",
			  (const char *)NULL);
	}

	b.n = 0;
	b_header(&b, 3, 1, 0);
	b_tensor(&b, "t", 2, ne0, 0, 0);
	b_pad(&b, 64);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "tensor 0 't' ne[1]", "dimension is 0", (const char *)NULL);

	b.n = 0;
	b_header(&b, 3, 1, 0);
	b_tensor(&b, "t", 2, big, 0, 0);
	b_pad(&b, 64);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "tensor 0 't' ne[1]", "overflow", (const char *)NULL);

	/* types bitnetc does not read: the fork's TL2 (39, MXFP4 upstream) and nonsense */
	uint32_t types[] = {39, 200};
	for (int i = 0; i < 2; i++) {
		b.n = 0;
		b_header(&b, 3, 1, 0);
		b_tensor(&b, "blk.0.attn_q.weight", 1, ne1, types[i], 0);
		b_pad(&b, 64);
		expect_bad(&b, BN_EUNSUPPORTED, &e);
		char want[128];
		snprintf(want, sizeof want, "type %u (%s) is not supported", types[i],
			 ir_ggml_type_desc(types[i]));
		has_words(e.msg, "tensor 0 'blk.0.attn_q.weight' type", want, (const char *)NULL);
	}

	uint64_t huge[1] = {1ull << 62}; /* 2^62 f32 elements: 2^64 bytes */
	b.n = 0;
	b_header(&b, 3, 1, 0);
	b_tensor(&b, "h", 1, huge, 0, 0);
	b_pad(&b, 64);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "tensor 0 'h'", "byte size", "overflows", (const char *)NULL);

	b.n = 0;
	b_header(&b, 3, 1, 0);
	b_tensor(&b, "q", 1, q, 8, 0); /* Q8_0 rows are whole blocks of 32 */
	b_pad(&b, 64);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "tensor 0 'q' ne[0]", "not a multiple", "block of 32", (const char *)NULL);

	/* offsets: misaligned, past the end, wrapping around */
	b.n = 0;
	b_header(&b, 3, 1, 0);
	b_one_tensor(&b, 4, 64);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "tensor 0 't' offset", "offset 4 is not a multiple of the alignment 32",
		  (const char *)NULL);
	uint64_t offs[] = {32, 1ull << 40, UINT64_MAX - 31};
	for (int i = 0; i < 3; i++) {
		b.n = 0;
		b_header(&b, 3, 1, 0);
		b_one_tensor(&b, offs[i], 40);
		expect_bad(&b, BN_EFORMAT, &e);
		has_words(e.msg, "tensor 0 't' offset", "past the end of the file", (const char *)NULL);
	}
	/* data that is one byte short */
	b.n = 0;
	b_header(&b, 3, 1, 0);
	b_one_tensor(&b, 0, 31);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "offset", "past the end", (const char *)NULL);

	/* names: empty, duplicated, with a NUL */
	b.n = 0;
	b_header(&b, 3, 1, 0);
	b_tensor(&b, "", 1, ne1, 0, 0);
	b_pad(&b, 64);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "tensor 0 of 1 name", "empty", (const char *)NULL);
	b.n = 0;
	b_header(&b, 3, 2, 0);
	b_tensor(&b, "t", 1, ne1, 0, 0);
	b_tensor(&b, "t", 1, ne1, 0, 32);
	b_pad(&b, 32);
	for (int i = 0; i < 64; i++)
		b_le(&b, 0, 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "tensor 1 't'", "duplicate tensor name (also tensor 0)", (const char *)NULL);
	b.n = 0;
	b_header(&b, 3, 1, 0);
	b_u64(&b, 2);
	b_bytes(&b, "t\0", 2);
	b_u32(&b, 1);
	b_u64(&b, 8);
	b_u32(&b, 0);
	b_u64(&b, 0);
	b_pad(&b, 64);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "name", "NUL", (const char *)NULL);

	free(b.p);
}

/* Tensors whose data overlap: one would be read as part of the other. "first" (na f32)
 * at offset a, "mid" (8 f32) at 256, "second" (nb f32) at b. */
static void expect_overlap(uint64_t a, uint64_t na, uint64_t b, uint64_t nb, const char *words)
{
	BnErr e;
	Buf buf = {0};
	uint64_t ne_a[1] = {na}, ne8[1] = {8}, ne_b[1] = {nb};
	b_header(&buf, 3, 3, 0);
	b_tensor(&buf, "first", 1, ne_a, 0, a);
	b_tensor(&buf, "mid", 1, ne8, 0, 256);
	b_tensor(&buf, "second", 1, ne_b, 0, b);
	b_pad(&buf, 32);
	for (int i = 0; i < 512; i++)
		b_le(&buf, 0, 1);
	expect_bad(&buf, BN_EFORMAT, &e);
	has_words(e.msg, words, (const char *)NULL);
	free(buf.p);
}

static void test_overlapping_tensors(void **state)
{
	(void)state;
	/* the same offset; the later tensor in offset order is named first, then the other */
	expect_overlap(0, 8, 0, 8, "tensor 2 'second' offset: data at offsets 0..32 overlaps "
		       "tensor 0 'first' at 0..32");
	/* partly; the table's order does not matter (sorted by offset) */
	expect_overlap(64, 8, 32, 16, "tensor 0 'first' offset: data at offsets 64..96 overlaps "
		       "tensor 2 'second' at 32..96");
	expect_overlap(224, 16, 0, 8, "tensor 1 'mid' offset: data at offsets 256..288 overlaps "
		       "tensor 0 'first' at 224..288");
	/* a big tensor that holds a small one */
	BnErr e;
	Buf b = {0};
	uint64_t ne1[1] = {8}, ne64[1] = {64};
	b_header(&b, 3, 2, 0);
	b_tensor(&b, "big", 1, ne64, 0, 0);
	b_tensor(&b, "inside", 1, ne1, 0, 128);
	b_pad(&b, 32);
	for (int i = 0; i < 256; i++)
		b_le(&b, 0, 1);
	expect_bad(&b, BN_EFORMAT, &e);
	has_words(e.msg, "tensor 1 'inside'", "overlaps tensor 0 'big' at 0..256", (const char *)NULL);

	/* back to back in any table order, and with gaps: fine */
	b.n = 0;
	b_header(&b, 3, 3, 0);
	b_tensor(&b, "c", 1, ne1, 0, 96);
	b_tensor(&b, "a", 1, ne1, 0, 0);
	b_tensor(&b, "b", 1, ne1, 0, 32);
	b_pad(&b, 32);
	for (int i = 0; i < 128; i++)
		b_le(&b, 0, 1);
	memset(&e, 0, sizeof e);
	GgufFile *f = gguf_open_mem(b.p, b.n, "apart", &e);
	if (!f)
		fail_msg("%s", e.msg);
	assert_int_equal(f->n_tensors, 3);
	gguf_close(f);
	free(b.p);
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Prefixes of a golden model: every length through the header, the metadata, the tensor
 * table and a little beyond, then a stride through the data plus each tensor's first
 * bytes and last byte. Each exact-size copy must fail with a message saying the file is
 * truncated (never a crash), and the whole file parses. */
static void test_truncated_golden(void **state)
{
	(void)state;
	const char *names[] = {"tiny-b158-i2_s.gguf", "tinyold-bitnet-i2_s.gguf"};
	for (int m = 0; m < 2; m++) {
		char rel[128];
		snprintf(rel, sizeof rel, "golden/models/%s", names[m]);
		size_t n;
		uint8_t *full = tu_read_file(tu_data(rel), &n);
		assert_non_null(full);
		BnErr e = {0};
		GgufFile *f = gguf_open_mem(full, n, "full.gguf", &e);
		if (!f)
			fail_msg("%s: %s", names[m], e.msg);
		uint64_t end = 0, head = f->data_offset + 64;
		uint64_t *len = malloc((head + n / 4093 + 3 * f->n_tensors + 1) * sizeof *len);
		size_t k = 0;
		for (uint64_t i = 0; i < head; i++)
			len[k++] = i;
		for (uint64_t i = head; i < n; i += 4093)
			len[k++] = i;
		for (uint64_t i = 0; i < f->n_tensors; i++) {
			const GgufTensor *t = &f->tensors[i];
			uint64_t a = f->data_offset + t->offset, z = a + t->nbytes;
			end = z > end ? z : end;
			len[k++] = a;
			len[k++] = a + 1;
			len[k++] = z - 1;
		}
		gguf_close(f);
		qsort(len, k, sizeof *len, u64_cmp);
		/* the file may end in padding after the last tensor's data */
		size_t tried = 0;
		for (size_t j = 0; j < k; j++) {
			if (len[j] >= end || (j && len[j] == len[j - 1]))
				continue;
			uint8_t *cut = malloc(len[j] ? len[j] : 1);
			memcpy(cut, full, len[j]);
			memset(&e, 0, sizeof e);
			f = gguf_open_mem(cut, len[j], "cut.gguf", &e);
			if (f)
				fail_msg("%s: a prefix of %llu of %zu bytes was accepted", names[m],
					 (unsigned long long)len[j], n);
			if (e.code != BN_EFORMAT || !strstr(e.msg, "cut.gguf: ") ||
			    !strstr(e.msg, "truncated"))
				fail_msg("%s: a prefix of %llu bytes: %s", names[m],
					 (unsigned long long)len[j], e.msg);
			free(cut);
			tried++;
		}
		assert_true(tried > head);
		f = gguf_open_mem(full, end, "end.gguf", &e);
		if (!f)
			fail_msg("%s: up to the last tensor's end: %s", names[m], e.msg);
		gguf_close(f);
		free(len);
		free(full);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_scalars),
		cmocka_unit_test(test_roundtrip_arrays),
		cmocka_unit_test(test_nested_arrays),
		cmocka_unit_test(test_value_print),
		cmocka_unit_test(test_tensor_types),
		cmocka_unit_test(test_custom_alignment),
		cmocka_unit_test(test_v2),
		cmocka_unit_test(test_writer_rejects),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_golden_models),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_truncated_prefixes),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_bad_metadata),
		cmocka_unit_test(test_bad_alignment),
		cmocka_unit_test(test_bad_tensors),
		cmocka_unit_test(test_overlapping_tensors),
		cmocka_unit_test(test_truncated_golden),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
