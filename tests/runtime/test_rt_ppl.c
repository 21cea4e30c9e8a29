/* test_rt_ppl.c - perplexity and KL divergence arithmetic (rt_ppl.c): the per-token
 * negative log-likelihood and the final estimate against values worked out by hand, the
 * base file's rows against the exact log-softmax, KL divergence against its definition,
 * and base files that are damaged, hostile or of another run refused with their reason. */
#include "testutil.h"
#include "rt_ppl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NV 37 /* odd: the rows get their padding */

/* log softmax(l)[tok] in long double, the definition */
static double exact_logp(const float *l, int n, int tok)
{
	long double m = l[0], s = 0;
	for (int i = 1; i < n; i++)
		m = l[i] > m ? l[i] : m;
	for (int i = 0; i < n; i++)
		s += expl((long double)l[i] - m);
	return (double)((long double)l[tok] - m - logl(s));
}

static void random_logits(float *l, int n, uint64_t *seed, float spread)
{
	for (int i = 0; i < n; i++)
		l[i] = spread * tu_randf(seed);
}

static void test_nll(void **state)
{
	(void)state;
	float flat[NV];
	for (int i = 0; i < NV; i++)
		flat[i] = 3.25f;
	/* uniform: -log(1/n), so the perplexity of any text is n */
	assert_true(fabs(rt_ppl_nll(flat, NV, 5) - log(NV)) < 1e-12);
	RtPplSum s = {0};
	for (int i = 0; i < 10; i++)
		rt_ppl_add(&s, rt_ppl_nll(flat, NV, i));
	assert_true(fabs(rt_ppl_value(&s) - NV) < 1e-9);
	double ppl, err;
	assert_int_equal(rt_ppl_final(&s, &ppl, &err), -1); /* no spread: no estimate */
	assert_true(err == 0);
	uint64_t seed = 7;
	float l[NV];
	for (int k = 0; k < 50; k++) {
		random_logits(l, NV, &seed, 20);
		int tok = k % NV;
		double want = -exact_logp(l, NV, tok);
		assert_true(fabs(rt_ppl_nll(l, NV, tok) - want) < 1e-5);
	}
}

/* nll 1, 2, 3: ppl e^2; var = 14/3 - 4 = 2/3, err = e^2 sqrt(var / 2) */
static void test_final(void **state)
{
	(void)state;
	RtPplSum s = {0};
	rt_ppl_add(&s, 1);
	rt_ppl_add(&s, 2);
	rt_ppl_add(&s, 3);
	double ppl, err;
	assert_int_equal(rt_ppl_final(&s, &ppl, &err), 0);
	assert_true(fabs(ppl - exp(2.0)) < 1e-12);
	assert_true(fabs(err - exp(2.0) * sqrt(1.0 / 3.0)) < 1e-12);
}

static void test_chunks(void **state)
{
	(void)state;
	assert_int_equal(rt_ppl_first(512), 256);
	assert_int_equal(rt_ppl_scored(512), 255);
	assert_int_equal(rt_ppl_scored(17), 8); /* 8..15 predict 9..16 */
	assert_int_equal(rt_ppl_n_chunk(1000, 128, -1), 7);
	assert_int_equal(rt_ppl_n_chunk(1000, 128, 3), 3);
	assert_int_equal(rt_ppl_n_chunk(1000, 128, 30), 7);
	/* chunks side by side: whole chunks per call, no more than there are or sequences */
	assert_int_equal(rt_ppl_per_call(128, 16, 238, 1024), 8);
	assert_int_equal(rt_ppl_per_call(128, 32, 7, 1024), 4);
	assert_int_equal(rt_ppl_per_call(128, 16, 3, 1024), 3);
	assert_int_equal(rt_ppl_per_call(128, 16, 238, 2), 2);
	assert_int_equal(rt_ppl_per_call(128, 512, 4, 1024), 1);
	assert_int_equal(rt_ppl_per_call(128, 16, 0, 1024), 1);
	assert_int_equal(rt_ppl_n_chunk(127, 128, -1), 0);
	assert_int_equal(rt_ppl_row_u16(37), 42);
	assert_int_equal(rt_ppl_row_u16(512), 516);
	assert_int_equal(rt_ppl_base_size(64, 512, 2), 20 + 2 * 64 * 4 + 2 * 31 * 516 * 2);
	/* sizes past 64 bits are 0, never wrapped */
	assert_int_equal(rt_ppl_base_size(INT32_MAX, INT32_MAX, INT32_MAX), 0);
	assert_int_equal(rt_ppl_base_size(1, 512, 2), 0);
	assert_int_equal(rt_ppl_base_size(64, 0, 2), 0);
}

static float row_f32(const uint16_t *two)
{
	uint32_t u = (uint32_t)two[0] | (uint32_t)two[1] << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* A stored row gives back every log-probability within max - 16 to half a step. */
static void test_base_row(void **state)
{
	(void)state;
	uint64_t seed = 11;
	float l[NV];
	uint16_t row[42];
	for (int k = 0; k < 30; k++) {
		random_logits(l, NV, &seed, k < 15 ? 4 : 30);
		int tok = (k * 7) % NV;
		double nll = rt_ppl_base_row(l, NV, tok, row);
		assert_true(fabs(nll + exact_logp(l, NV, tok)) < 1e-4);
		float scale = row_f32(row), minlp = row_f32(row + 2);
		assert_true(scale > 0 && minlp <= 0);
		assert_int_equal(row[4 + NV], 0); /* the padding */
		double top = 0;
		for (int i = 0; i < NV; i++)
			top = fmax(top, exact_logp(l, NV, i));
		for (int i = 0; i < NV; i++) {
			double want = exact_logp(l, NV, i), got = scale * row[4 + i] + minlp;
			if (want > top - 16 + scale)
				assert_true(fabs(got - want) <= scale * 0.5 + 1e-4);
			else
				assert_true(got <= top - 16 + scale + 1e-4);
		}
	}
}

/* KL(base || model) against its definition, with both as rows of this module */
static void test_kld(void **state)
{
	(void)state;
	uint64_t seed = 3;
	float a[NV], b[NV];
	uint16_t row[42];
	RtKld k;
	assert_int_equal(rt_kld_init(&k, 40), RT_OK);
	double want_sum = 0;
	int same = 0;
	for (int r = 0; r < 40; r++) {
		random_logits(a, NV, &seed, 6);
		for (int i = 0; i < NV; i++)
			b[i] = a[i] + (r % 2 ? 0.3f * tu_randf(&seed) : 0); /* even rows: the same */
		int tok = r % NV;
		rt_ppl_base_row(a, NV, tok, row);
		double nll = rt_kld_row(&k, b, NV, row, tok);
		assert_true(fabs(nll + exact_logp(b, NV, tok)) < 1e-4);
		double kl = 0;
		for (int i = 0; i < NV; i++) {
			double pa = exact_logp(a, NV, i);
			kl += exp(pa) * (pa - exact_logp(b, NV, i));
		}
		assert_true(fabs(k.kld[r] - kl) < 1e-3);
		if (r % 2 == 0)
			assert_true(fabs(k.kld[r]) < 1e-4);
		want_sum += kl;
		same += rt_argmax(a, NV) == rt_argmax(b, NV);
	}
	RtKldStats s;
	rt_kld_stats(&k, 1, &s);
	assert_true(fabs(s.kld - want_sum / 40) < 1e-3);
	assert_true(s.kld > 1e-4);
	assert_true(fabs(s.same_top - same / 40.0) < 1e-12);
	assert_true(s.kld_min <= s.kld_median && s.kld_median <= s.kld_p99 &&
		    s.kld_p99 <= s.kld_max);
	assert_true(s.dp_abs_max >= fabs(s.dp_min) && s.dp_abs_max >= fabs(s.dp_max));
	assert_true(s.ppl > 0 && s.ppl_base > 0);
	rt_kld_free(&k);
}

/* ---- base files --------------------------------------------------------------------- */

static const int32_t text[4 * 16] = {
	5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
};

/* A good base file of 2 chunks of 16 over NV tokens; returns its path. */
static const char *write_base(const char *name)
{
	const char *path = tu_tmp(name);
	RtPplOut o;
	RtErr e = {0};
	if (rt_ppl_out_open(&o, path, 16, NV, 2, text, &e))
		fail_msg("%s", e.msg);
	uint64_t seed = 5;
	float l[NV];
	uint16_t row[42];
	for (int r = 0; r < 2 * rt_ppl_scored(16); r++) {
		random_logits(l, NV, &seed, 5);
		rt_ppl_base_row(l, NV, r % NV, row);
		assert_int_equal(rt_ppl_out_row(&o, row, 42, &e), RT_OK);
	}
	assert_int_equal(rt_ppl_out_close(&o, 1, &e), RT_OK);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((uint64_t)st.st_size, rt_ppl_base_size(16, NV, 2));
	char tmp[1300];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	assert_int_not_equal(access(tmp, F_OK), 0);
	return path;
}

/* rt_ppl_base_open of path for a run of n_ctx 16 over NV, chunks, the text's tokens;
 * expects code and a message holding frag. */
static void expect_open(const char *path, int32_t n_ctx, int32_t nv, int64_t chunks,
			int64_t n_tokens, int code, const char *frag)
{
	RtPplBase b;
	RtErr e = {0};
	int rc = rt_ppl_base_open(&b, path, n_ctx, nv, chunks, text, n_tokens, &e);
	if (rc != code || (frag && !strstr(e.msg, frag)))
		fail_msg("%s: code %d (want %d): %s (want \"%s\")", path, rc, code, e.msg,
			 frag ? frag : "");
	if (!rc) {
		uint16_t row[42];
		for (int r = 0; r < 2 * rt_ppl_scored(16); r++)
			assert_int_equal(rt_ppl_base_read(&b, row, &e), RT_OK);
		assert_int_not_equal(rt_ppl_base_read(&b, row, &e), RT_OK); /* nothing past */
		rt_ppl_base_close(&b);
	}
}

/* path's bytes with n bytes at off replaced, or cut at len (len >= 0) */
static const char *variant(const char *path, const char *name, size_t off, const void *bytes,
			   size_t n, long len)
{
	size_t size;
	uint8_t *b = tu_read_file(path, &size);
	assert_non_null(b);
	if (bytes)
		memcpy(b + off, bytes, n);
	const char *out = tu_tmp(name);
	assert_int_equal(tu_write_file(out, b, len >= 0 ? (size_t)len : size), 0);
	free(b);
	return out;
}

static void test_base_file(void **state)
{
	(void)state;
	char good[1100]; /* tu_tmp's slots are reused */
	snprintf(good, sizeof good, "%s", write_base("ppl_good.bin"));
	expect_open(good, 16, NV, -1, 64, RT_OK, NULL);
	expect_open(good, 16, NV, 2, 64, RT_OK, NULL);
	/* another run: vocabulary, context, chunks, text */
	expect_open(good, 16, 40, -1, 64, RT_PPL_OTHER, "a model of 37 tokens");
	expect_open(good, 32, NV, -1, 64, RT_PPL_OTHER, "give -c 16");
	expect_open(good, 16, NV, 3, 64, RT_PPL_OTHER, "holds 2 chunks");
	expect_open(good, 16, NV, -1, 20, RT_PPL_OTHER, "the text has only 20 tokens");
	uint32_t other = 99;
	const char *tx = variant(good, "ppl_othertext.bin", 20 + 4 * 17, &other, 4, -1);
	expect_open(tx, 16, NV, -1, 64, RT_PPL_OTHER, "token 17 (chunk 2) is 99");
	/* damaged: cut, padded, bad magic, impossible header, bad rows */
	struct stat st;
	assert_int_equal(stat(good, &st), 0);
	long size = (long)st.st_size;
	expect_open(variant(good, "ppl_cut.bin", 0, NULL, 0, size - 1), 16, NV, -1, 64, RT_PPL_BAD,
		    "truncated or damaged");
	expect_open(variant(good, "ppl_cut2.bin", 0, NULL, 0, 30), 16, NV, -1, 64, RT_PPL_BAD,
		    "truncated or damaged");
	expect_open(variant(good, "ppl_empty.bin", 0, NULL, 0, 0), 16, NV, -1, 64, RT_PPL_BAD,
		    "too short");
	expect_open(variant(good, "ppl_magic.bin", 0, "_LOGITS_", 8, -1), 16, NV, -1, 64,
		    RT_PPL_BAD, "does not look like");
	int32_t neg = -5, huge = INT32_MAX;
	expect_open(variant(good, "ppl_negvocab.bin", 12, &neg, 4, -1), 16, NV, -1, 64, RT_PPL_BAD,
		    "damaged header");
	expect_open(variant(good, "ppl_negchunk.bin", 16, &neg, 4, -1), 16, NV, -1, 64,
		    RT_PPL_BAD, "damaged header");
	expect_open(variant(good, "ppl_hugechunk.bin", 16, &huge, 4, -1), 16, NV, -1, 64,
		    RT_PPL_BAD, "truncated or damaged");
	expect_open(variant(good, "ppl_hugectx.bin", 8, &huge, 4, -1), 16, NV, -1, 64, RT_PPL_BAD,
		    "truncated or damaged");
	expect_open(variant(good, "ppl_hugevocab.bin", 12, &huge, 4, -1), 16, NV, -1, 64,
		    RT_PPL_BAD, "truncated or damaged");
	/* not files */
	expect_open(tu_tmp("ppl_missing.bin"), 16, NV, -1, 64, RT_EIO, "cannot read");
	const char *dir = tu_tmp("ppl_dir");
	mkdir(dir, 0755);
	expect_open(dir, 16, NV, -1, 64, RT_EIO, "not a regular file");
	const char *fifo = tu_tmp("ppl_fifo");
	unlink(fifo);
	if (mkfifo(fifo, 0644) == 0) /* refused before any read could block */
		expect_open(fifo, 16, NV, -1, 64, RT_EIO, "not a regular file");

	/* a row whose scale is NaN, one with a positive minimum */
	float nan = NAN, pos = 1.0f;
	char r0[1100], r1[1100];
	snprintf(r0, sizeof r0, "%s",
		 variant(good, "ppl_nanrow.bin", 20 + 4 * 32 + 42 * 2 * 3, &nan, 4, -1));
	snprintf(r1, sizeof r1, "%s", variant(good, "ppl_posrow.bin", 20 + 4 * 32 + 4, &pos, 4, -1));
	const char *bad[2] = {r0, r1};
	const char *want[2] = {"row 3 (chunk 1) is damaged", "row 0 (chunk 1) is damaged"};
	for (int k = 0; k < 2; k++) {
		RtPplBase b;
		RtErr e = {0};
		assert_int_equal(rt_ppl_base_open(&b, bad[k], 16, NV, -1, text, 64, &e), RT_OK);
		uint16_t row[42];
		int rc = RT_OK;
		for (int r = 0; r < 4 && !rc; r++)
			rc = rt_ppl_base_read(&b, row, &e);
		assert_int_equal(rc, RT_PPL_BAD);
		if (!strstr(e.msg, want[k]))
			fail_msg("%s: %s", bad[k], e.msg);
		rt_ppl_base_close(&b);
	}
}

/* The writer refuses a path that is not a regular file and leaves no FILE.tmp behind when
 * told not to keep what it wrote. */
static void test_base_out(void **state)
{
	(void)state;
	RtPplOut o;
	RtErr e = {0};
	const char *dir = tu_tmp("ppl_outdir");
	mkdir(dir, 0755);
	assert_int_equal(rt_ppl_out_open(&o, dir, 16, NV, 1, text, &e), RT_EINVAL);
	assert_non_null(strstr(e.msg, "not a regular file"));
	assert_int_equal(rt_ppl_out_open(&o, "/dev/null", 16, NV, 1, text, &e), RT_EINVAL);
	const char *path = tu_tmp("ppl_dropped.bin");
	unlink(path);
	assert_int_equal(rt_ppl_out_open(&o, path, 16, NV, 1, text, &e), RT_OK);
	assert_int_equal(rt_ppl_out_close(&o, 0, &e), RT_OK);
	char tmp[1300];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	assert_int_not_equal(access(tmp, F_OK), 0);
	assert_int_not_equal(access(path, F_OK), 0);
	/* a link at FILE.tmp is not followed */
	const char *victim = tu_tmp_text("ppl_victim.txt", "keep me\n");
	unlink(tmp);
	assert_int_equal(symlink(victim, tmp), 0);
	assert_int_equal(rt_ppl_out_open(&o, path, 16, NV, 1, text, &e), RT_EIO);
	size_t n;
	char *v = tu_read_file(victim, &n);
	assert_non_null(v);
	assert_int_equal(n, 8);
	free(v);
	unlink(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nll),
		cmocka_unit_test(test_final),
		cmocka_unit_test(test_chunks),
		cmocka_unit_test(test_base_row),
		cmocka_unit_test(test_kld),
		cmocka_unit_test_teardown(test_base_file, tu_teardown),
		cmocka_unit_test_teardown(test_base_out, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
