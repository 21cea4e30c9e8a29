/* test_weights_load.c - a built program holds its weights copied into anonymous memory
 * (the default, --no-mmap) or mapped lazily (--mmap): the same logits bit for bit on a
 * golden model, --mlock refused under a small locked-memory limit, a truncated payload
 * refused either way, and no progress line for a quick load off a terminal. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define P1 "496,84,104,101,32,113,117,105,99,107,32,98,114,111,119,110"

static char prog[1200];

static int setup(void **state)
{
	(void)state;
	snprintf(prog, sizeof prog, "%s", tu_tmp("wload_tiny"));
	char *log = NULL;
	int rc = tu_run(&log, "'%s' build '%s' -o '%s'", tu_bitnetc(),
			tu_data("golden/models/tiny-b158-i2_s.gguf"), prog);
	if (rc)
		fprintf(stderr, "building the program failed:\n%s\n", log ? log : "");
	free(log);
	return rc ? -1 : 0;
}

/* The logits rows of -n 4 greedy from P1 with the flags. */
static uint8_t *logits(const char *flags, const char *name, size_t *n)
{
	const char *lf = tu_tmp(name);
	char *out = tu_run_ok(0, "'%s' %s --tokens " P1 " -n 4 --temp 0 -t 2 --logits-out '%s'",
			      prog, flags, lf);
	free(out);
	uint8_t *b = tu_read_file(lf, n);
	assert_non_null(b);
	assert_true(*n > 0);
	return b;
}

static void test_same_logits(void **state)
{
	(void)state;
	size_t na, nb, nc;
	uint8_t *a = logits("", "wload_copy.f32", &na);
	uint8_t *b = logits("--mmap", "wload_mmap.f32", &nb);
	uint8_t *c = logits("--no-mmap --mmap --no-mmap", "wload_nommap.f32", &nc);
	assert_int_equal(na, nb);
	assert_int_equal(na, nc);
	assert_memory_equal(a, b, na);
	assert_memory_equal(a, c, na);
	free(a);
	free(b);
	free(c);
	/* how they are held, in --info and --bench --json */
	char *out = tu_run_ok(0, "'%s' --info", prog);
	tu_expect_has(out, "weights:     copied into ");
	tu_expect_has(out, " MiB of anonymous memory, ");
	free(out);
	out = tu_run_ok(0, "'%s' --mmap --info", prog);
	tu_expect_has(out, "weights:     mapped lazily from ");
	free(out);
	out = tu_run_ok(0, "'%s' --bench --json --pp 2 --tg 2 --reps 1 2>/dev/null", prog);
	tu_expect_has(out, "\"weights_held\": \"copied into ");
	tu_expect_has(out, "\"weights_copied\": 1");
	tu_expect_has(out, "\"rss_mib\": ");
	free(out);
	out = tu_run_ok(0, "'%s' --mmap --bench --json --pp 2 --tg 2 --reps 1 2>/dev/null", prog);
	tu_expect_has(out, "\"weights_held\": \"mapped lazily from ");
	tu_expect_has(out, "\"weights_copied\": 0");
	free(out);
}

/* --mlock under `ulimit -l 64` (64 KiB, less than the 1 MiB of weights): exit 2 naming the
 * limit, copied or mapped. */
static void test_mlock_limit(void **state)
{
	(void)state;
	for (int mode = 0; mode < 2; mode++) {
		char *out = tu_run_ok(2, "ulimit -l 64 && '%s' --mlock %s --tokens 1,2 -n 1 --temp 0",
				      prog, mode ? "--mmap" : "");
		tu_expect_has(out, "cannot lock the weights in memory (mlock)");
		tu_expect_has(out, "RLIMIT_MEMLOCK, ulimit -l");
		tu_expect_has(out, "0.1 MiB");
		free(out);
	}
}

/* The payload cut short (the trailer kept): refused before anything runs, either way. */
static void test_truncated(void **state)
{
	(void)state;
	size_t n;
	uint8_t *b = tu_read_file(prog, &n);
	assert_non_null(b);
	assert_true(n > 5000);
	const char *cut = tu_tmp("wload_cut");
	memmove(b + n - 32 - 4096, b + n - 32, 32); /* drop the payload's last 4096 bytes */
	assert_int_equal(tu_write_file(cut, b, n - 4096), 0);
	assert_int_equal(chmod(cut, 0755), 0);
	free(b);
	for (int mode = 0; mode < 2; mode++) {
		char *out = tu_run_ok(2, "'%s' %s --tokens 1,2 -n 1 --temp 0", cut,
				      mode ? "--mmap" : "");
		tu_expect_has(out, "weights payload truncated");
		free(out);
	}
}

/* A quick load off a terminal prints no progress line (stderr here is a pipe). */
static void test_no_progress(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "'%s' --tokens 1,2 -n 1 --temp 0 2>&1 >/dev/null", prog);
	if (strstr(out, "the weights:"))
		fail_msg("a progress line: %s", out);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_logits),
		cmocka_unit_test(test_mlock_limit),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_no_progress),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
