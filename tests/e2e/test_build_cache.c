/* test_build_cache.c - `bitnetc build`'s compiler runs: model.c and the runtime sources
 * compiled at once (-j) make the same program as one at a time, and the cache of the
 * runtime's objects ($XDG_CACHE_HOME/bitnetc/runtime) is used by the next build (the
 * compiler does not see the runtime again), rebuilt when damaged or foreign, and left
 * alone by --no-cache. The compiler is a wrapper script that logs every command it gets. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL "golden/models/tiny-b158-i2_s.gguf"

static char root[1024], cache[1100], cclog[1100], ccw[1100];

/* A fresh directory with an empty cache and the logging compiler. */
static void fresh(const char *name)
{
	snprintf(root, sizeof root, "%s", tu_tmp(name));
	snprintf(cache, sizeof cache, "%s/cache", root);
	snprintf(cclog, sizeof cclog, "%s/cc.log", root);
	snprintf(ccw, sizeof ccw, "%s/cc-log", root);
	assert_int_equal(tu_run(NULL, "rm -rf '%s' && mkdir -p '%s'", root, cache), 0);
	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	char s[2048];
	snprintf(s, sizeof s, "#!/bin/sh\necho \"$*\" >> '%s'\nexec %s \"$@\"\n", cclog, cc);
	assert_int_equal(tu_write_file(ccw, s, strlen(s)), 0);
	assert_int_equal(chmod(ccw, 0755), 0);
}

/* bitnetc build of the golden model into root/NAME with the logging compiler and the
 * test's cache; returns -v's output, and in *ccs what the compiler got. */
static char *build(const char *name, const char *extra, char **ccs)
{
	unlink(cclog);
	char *log = NULL;
	/* -O0: the compiler's time is not what is tested */
	int rc = tu_run(&log, "XDG_CACHE_HOME='%s' '%s' build '%s' -o '%s/%s' --cc '%s' -O0 -v %s",
			cache, tu_bitnetc(), tu_data(MODEL), root, name, ccw, extra);
	if (rc != 0)
		tu_fail_log(log, "build %s (%s) failed (%d)", name, extra, rc);
	size_t n = 0;
	char *c = tu_read_file(cclog, &n);
	*ccs = calloc(1, n + 1);
	if (c)
		memcpy(*ccs, c, n);
	free(c);
	return tu_hold(log);
}

/* The one entry in the cache (fails unless there is exactly one, and nothing else). */
static const char *entry(void)
{
	static char path[2200];
	char dir[1200];
	snprintf(dir, sizeof dir, "%s/bitnetc/runtime", cache);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			n++;
			snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
			if (!strstr(de->d_name, ".objs"))
				fail_msg("the cache holds %s", path);
		}
	closedir(d);
	assert_int_equal(n, 1);
	return path;
}

static bool same_file(const char *a, const char *b)
{
	size_t na, nb;
	void *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
	bool same = x && y && na == nb && memcmp(x, y, na) == 0;
	free(x);
	free(y);
	return same;
}

static void in_root(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", root, name);
}

/* Every runtime source compiled (cold) or none (from the cache). */
static void expect_runtime(const char *ccs, bool compiled)
{
	static const char *const srcs[] = {" main.c", " rt_api.c", " rt_weights.c"};
	for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++)
		if (!strstr(ccs, srcs[i]) != !compiled)
			fail_msg("%s was%s compiled:\n%s", srcs[i] + 1, compiled ? " not" : "", ccs);
	if (!strstr(ccs, " model.c"))
		fail_msg("model.c was not compiled:\n%s", ccs);
}

static void test_parallel_same_program(void **state)
{
	(void)state;
	fresh("build-par");
	char *ccs;
	build("p1", "-j1 --no-cache", &ccs);
	free(ccs);
	build("p4", "-j 4 --no-cache", &ccs);
	free(ccs);
	char a[1200], b[1200];
	in_root(a, sizeof a, "p1");
	in_root(b, sizeof b, "p4");
	assert_true(same_file(a, b));
	/* and the same model output, byte for byte */
	for (int i = 0; i < 2; i++) {
		char *out = tu_run_ok(0, "'%s' --tokens 496,84,104,101,32 -n 4 --temp 0 "
					 "--logits-out '%s.f32' >/dev/null 2>&1",
				      i ? b : a, i ? b : a);
		free(out);
	}
	char fa[1300], fb[1300];
	snprintf(fa, sizeof fa, "%s.f32", a);
	snprintf(fb, sizeof fb, "%s.f32", b);
	size_t n;
	void *l = tu_read_file(fa, &n);
	assert_non_null(l);
	assert_true(n > 0);
	free(l);
	assert_true(same_file(fa, fb));
	/* -jN and --jobs=N are checked */
	char *log = tu_run_ok(1, "'%s' build '%s' -o '%s/x' -j 0 2>&1", tu_bitnetc(),
			      tu_data(MODEL), root);
	tu_expect_has(log, "out of range");
	free(log);
}

static void test_cache_used(void **state)
{
	(void)state;
	fresh("build-cache");
	char *ccs;
	const char *log = build("cold", "", &ccs);
	expect_runtime(ccs, true);
	tu_expect_has(log, "stored");
	free(ccs);
	const char *e = entry();
	log = build("warm", "-j1", &ccs);
	expect_runtime(ccs, false);
	tu_expect_has(log, "runtime objects from the cache");
	free(ccs);
	char a[1200], b[1200];
	in_root(a, sizeof a, "cold");
	in_root(b, sizeof b, "warm");
	assert_true(same_file(a, b));

	/* --no-cache: compiled, the entry left as it was */
	size_t n0;
	void *before = tu_read_file(e, &n0);
	log = build("nocache", "--no-cache", &ccs);
	expect_runtime(ccs, true);
	free(ccs);
	size_t n1;
	void *after = tu_read_file(e, &n1);
	assert_true(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
	free(after);
	in_root(b, sizeof b, "nocache");
	assert_true(same_file(a, b));

	free(before);
}

/* The entry damaged (one byte), cut short, replaced by another file, or writable by
 * others: compiled again and replaced, then used. */
static void test_cache_damaged(void **state)
{
	(void)state;
	fresh("build-cache-bad");
	char *ccs;
	build("ref", "", &ccs);
	free(ccs);
	char ref[1200];
	in_root(ref, sizeof ref, "ref");
	const char *e = entry();
	size_t n;
	unsigned char *good = tu_read_file(e, &n);
	assert_non_null(good);
	assert_true(n > 4096);
	static const char *const whys[] = {"damaged", "damaged", "foreign", "foreign"};
	for (int c = 0; c < 4; c++) {
		unsigned char *b = malloc(n);
		memcpy(b, good, n);
		size_t len = n;
		if (c == 0)
			b[n / 2] ^= 0x40; /* inside an object */
		else if (c == 1)
			len = n / 3;
		else if (c == 2)
			memcpy(b, "NOTOURS!", 8);
		assert_int_equal(tu_write_file(e, b, len), 0);
		assert_int_equal(chmod(e, c == 3 ? 0666 : 0600), 0);
		free(b);
		const char *log = build("again", "", &ccs);
		expect_runtime(ccs, true);
		tu_expect_has(log, whys[c]);
		tu_expect_has(log, "stored");
		free(ccs);
		char p[1200];
		in_root(p, sizeof p, "again");
		assert_true(same_file(ref, p));
		/* replaced by a good one */
		size_t m;
		unsigned char *now = tu_read_file(entry(), &m);
		assert_true(now && m == n && memcmp(now, good, n) == 0);
		free(now);
		struct stat st;
		assert_int_equal(stat(entry(), &st), 0);
		assert_int_equal(st.st_mode & 077, 0);
	}
	build("hit", "", &ccs);
	expect_runtime(ccs, false);
	free(ccs);
	free(good);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_parallel_same_program, tu_teardown),
		cmocka_unit_test_teardown(test_cache_used, tu_teardown),
		cmocka_unit_test_teardown(test_cache_damaged, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
