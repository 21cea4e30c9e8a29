/* test_rt.c - the runtime's token list parser, greedy argmax, float row output and the
 * batch template rule. */
#include "testutil.h"
#include "rt.h"
#include "rt_batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void parse_ok(const char *s, const int32_t *want, int n_want)
{
	int32_t *ids = NULL;
	int n = -1;
	RtErr e = {0};
	assert_int_equal(rt_parse_tokens(s, &ids, &n, &e), RT_OK);
	assert_int_equal(n, n_want);
	for (int i = 0; i < n; i++)
		assert_int_equal(ids[i], want[i]);
	free(ids);
}

/* Fails with a message containing frag1 (and frag2 when given). */
static void parse_bad(const char *s, const char *frag1, const char *frag2)
{
	int32_t *ids = (int32_t *)(uintptr_t)1;
	int n = -1;
	RtErr e = {0};
	assert_int_equal(rt_parse_tokens(s, &ids, &n, &e), RT_EINVAL);
	assert_null(ids);
	assert_int_equal(n, 0);
	if (!strstr(e.msg, frag1) || (frag2 && !strstr(e.msg, frag2)))
		fail_msg("'%s': message \"%s\" lacks \"%s\"/\"%s\"", s, e.msg, frag1,
			 frag2 ? frag2 : "");
}

static void test_parse_tokens(void **state)
{
	(void)state;
	parse_ok("496,84,104", (const int32_t[]){496, 84, 104}, 3);
	parse_ok("7", (const int32_t[]){7}, 1);
	parse_ok(" 1, 2 ,3 ", (const int32_t[]){1, 2, 3}, 3);
	parse_ok("0,2147483647", (const int32_t[]){0, INT32_MAX}, 2);
	parse_ok("007", (const int32_t[]){7}, 1);

	parse_bad("", "empty", NULL);
	parse_bad("   ", "empty", NULL);
	parse_bad("1,,2", "item 2", "empty");
	parse_bad(",1", "item 1", "empty");
	parse_bad("1,2,", "item 3", "empty");
	parse_bad("1,x2", "item 2", "\"x2\"");
	parse_bad("1,-3", "item 2", "not a non-negative integer");
	parse_bad("1.5", "item 1", "not a non-negative integer");
	parse_bad("1 2", "item 1", "\"1 2\"");
	parse_bad("5,2147483648", "item 2", "out of range");
	parse_bad("99999999999999999999999", "item 1", "out of range");

	RtErr e = {0};
	int32_t *ids;
	int n;
	assert_int_equal(rt_parse_tokens(NULL, &ids, &n, &e), RT_EINVAL);
	assert_non_null(strstr(e.msg, "missing"));
	/* e may be NULL: the status still says it failed. */
	assert_int_equal(rt_parse_tokens("a", &ids, &n, NULL), RT_EINVAL);
}

static void test_parse_many(void **state)
{
	(void)state;
	enum { N = 5000 };
	char *s = malloc(N * 8);
	size_t len = 0;
	for (int i = 0; i < N; i++)
		len += (size_t)sprintf(s + len, "%s%d", i ? "," : "", i * 7 % 128256);
	int32_t *ids;
	int n;
	RtErr e = {0};
	assert_int_equal(rt_parse_tokens(s, &ids, &n, &e), RT_OK);
	assert_int_equal(n, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(ids[i], i * 7 % 128256);
	free(ids);
	free(s);
}

static void test_argmax(void **state)
{
	(void)state;
	const float a[] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
	assert_int_equal(rt_argmax(a, 5), 1); /* tie between 1 and 3: the lower id */
	const float b[] = {-3.0f, -2.0f, -2.5f};
	assert_int_equal(rt_argmax(b, 3), 1);
	const float c[] = {NAN, -INFINITY, NAN, 4.0f, NAN};
	assert_int_equal(rt_argmax(c, 5), 3);
	const float d[] = {NAN, NAN};
	assert_int_equal(rt_argmax(d, 2), 0);
	assert_int_equal(rt_argmax(a, 0), 0);
	const float e[] = {-INFINITY, -INFINITY};
	assert_int_equal(rt_argmax(e, 2), 0);
	const float f[] = {1.0f, INFINITY, INFINITY};
	assert_int_equal(rt_argmax(f, 3), 1);
	/* Over a long row with the maximum last. */
	float *g = malloc(128256 * sizeof *g);
	uint64_t st = 42;
	for (int i = 0; i < 128256; i++)
		g[i] = tu_randf(&st);
	g[128255] = 5.0f;
	assert_int_equal(rt_argmax(g, 128256), 128255);
	free(g);
}

static void test_write_f32(void **state)
{
	(void)state;
	const char *path = tu_tmp("test_rt_rows.f32");
	RtErr e = {0};
	FILE *f = rt_f32_open(path, &e);
	assert_non_null(f);
	const float r0[] = {1.0f, -2.5f, 0.0f}, r1[] = {3.25f, 1e-30f, -0.0f};
	assert_int_equal(rt_write_f32(f, path, r0, 3, &e), RT_OK);
	assert_int_equal(rt_write_f32(f, path, r1, 3, &e), RT_OK);
	assert_int_equal(rt_f32_close(f, path, &e), RT_OK);

	size_t n;
	unsigned char *b = tu_read_file(path, &n);
	assert_non_null(b);
	assert_int_equal(n, 24);
	/* 1.0f = 0x3f800000, stored little-endian regardless of the host. */
	const unsigned char one[4] = {0x00, 0x00, 0x80, 0x3f};
	assert_memory_equal(b, one, 4);
	const float *all[] = {r0, r1};
	for (int i = 0; i < 6; i++) {
		uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
			     (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
		float x;
		memcpy(&x, &u, 4);
		assert_memory_equal(&x, &all[i / 3][i % 3], 4);
	}
	free(b);

	/* A path that cannot be opened names itself and the reason. */
	const char *bad = tu_tmp("no-such-dir/rows.f32");
	assert_null(rt_f32_open(bad, &e));
	assert_int_equal(e.code, RT_EIO);
	assert_non_null(strstr(e.msg, bad));
	assert_non_null(strstr(e.msg, "cannot open"));
}

/* A full device: the write or the close must fail, naming the path. */
static void test_write_full(void **state)
{
	(void)state;
	FILE *f = fopen("/dev/full", "wb");
	if (!f)
		skip();
	RtErr e = {0};
	static float big[1 << 16];
	int rc = rt_write_f32(f, "/dev/full", big, 1 << 16, &e);
	int rc2 = rt_f32_close(f, "/dev/full", rc ? NULL : &e);
	assert_true(rc != RT_OK || rc2 != RT_OK);
	assert_int_equal(e.code, RT_EIO);
	assert_non_null(strstr(e.msg, "/dev/full"));
}

/* The one rule of batch templates (rt_batch.h) that batch_templates, codegen and the
 * program's start-up check: 1 first, ascending and distinct, the last max_batch, max_batch
 * in 1..RT_MAX_BATCH. */
static void test_batch_rule(void **state)
{
	(void)state;
	static const int32_t one[] = {1}, dflt[] = {1, 8, 32, 128}, top[] = {1, RT_MAX_BATCH},
			     over[] = {1, RT_MAX_BATCH + 1}, no1[] = {2, 4}, desc[] = {1, 8, 4},
			     dup[] = {1, 4, 4}, zero[] = {0, 1};
	assert_true(rt_max_batch_ok(1));
	assert_true(rt_max_batch_ok(RT_MAX_BATCH));
	assert_false(rt_max_batch_ok(0));
	assert_false(rt_max_batch_ok(RT_MAX_BATCH + 1));
	assert_true(rt_batch_sizes_ok(one, 1, 1));
	assert_true(rt_batch_sizes_ok(dflt, 4, 128));
	assert_true(rt_batch_sizes_ok(top, 2, RT_MAX_BATCH));
	assert_false(rt_batch_sizes_ok(over, 2, RT_MAX_BATCH + 1)); /* max_batch too large */
	assert_false(rt_batch_sizes_ok(dflt, 4, 32));               /* the last is not max_batch */
	assert_false(rt_batch_sizes_ok(dflt, 3, 128));
	assert_false(rt_batch_sizes_ok(no1, 2, 4));
	assert_false(rt_batch_sizes_ok(desc, 3, 4));
	assert_false(rt_batch_sizes_ok(dup, 3, 4));
	assert_false(rt_batch_sizes_ok(zero, 2, 1));
	assert_false(rt_batch_sizes_ok(one, 0, 1));
	assert_false(rt_batch_sizes_ok(NULL, 1, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_tokens),
		cmocka_unit_test(test_parse_many),
		cmocka_unit_test(test_argmax),
		cmocka_unit_test(test_write_f32),
		cmocka_unit_test(test_write_full),
		cmocka_unit_test(test_batch_rule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
