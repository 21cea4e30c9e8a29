/* test_weights.c - the weights payload: hash, trailer, mapping or copying, and every way a payload file can be wrong. */
#include "testutil.h"
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* How to spoil the file that put_payload writes. */
typedef struct {
	size_t lead;         /* bytes before the payload (padded to 4096) */
	int bad_magic;
	int64_t offset_adj;  /* added to the trailer's offset */
	int64_t size_adj;    /* added to the trailer's size */
	uint64_t hash_xor;   /* flips bits of the trailer's hash */
	size_t cut;          /* bytes cut from the payload's end (the trailer stays) */
} Spoil;

/* Writes lead bytes of "program", zero padding to 4096, the payload and the trailer, all
 * with the test's own little-endian encoding (not rt_weights_trailer_pack). */
static void put_payload(const char *path, const uint8_t *pay, size_t n, const Spoil *sp)
{
	size_t lead = sp->lead, off = (lead + 4095) / 4096 * 4096;
	size_t total = off + n - sp->cut + 32;
	uint8_t *b = calloc(1, total);
	for (size_t i = 0; i < lead; i++)
		b[i] = (uint8_t)(0x7f ^ i);
	memcpy(b + off, pay, n - sp->cut);
	uint8_t *t = b + total - 32;
	memcpy(t, sp->bad_magic ? "BNWEIGHX" : "BNWEIGHT", 8);
	uint64_t f[3] = {(uint64_t)((int64_t)off + sp->offset_adj),
			 (uint64_t)((int64_t)n + sp->size_adj),
			 rt_weights_hash(pay, n) ^ sp->hash_xor};
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 8; i++)
			t[8 + 8 * k + i] = (uint8_t)(f[k] >> (8 * i));
	assert_int_equal(tu_write_file(path, b, total), 0);
	free(b);
}

static uint8_t *pattern(size_t n)
{
	uint8_t *p = malloc(n ? n : 1);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 131 + (i >> 8));
	return p;
}

static void test_hash(void **state)
{
	(void)state;
	/* Fixed vectors: a change to the function (which would make every built program
	 * reject its own weights under --verify) fails here. Lengths cover the empty input, a
	 * tail alone, exactly one stripe, stripes plus a tail. */
	assert_true(rt_weights_hash("", 0) == 0xbd3b1772daa3cc95ull);
	assert_true(rt_weights_hash("a", 1) == 0x5aefaaced749110aull);
	assert_true(rt_weights_hash("abc", 3) == 0x2ac8337dd6747134ull);
	assert_true(rt_weights_hash("foobar", 6) == 0x38c9c1ea04af272aull);
	assert_true(rt_weights_hash("0123456789abcdef0123456789abcdef", 32) ==
		    0xe71617ff1c54e574ull);
	assert_true(rt_weights_hash("0123456789abcdef0123456789abcdef0123456789", 42) ==
		    0x92061b40c0ca222aull);
	unsigned char b[1000];
	for (int i = 0; i < 1000; i++)
		b[i] = (unsigned char)(i * 7 + 3);
	uint64_t whole = rt_weights_hash(b, sizeof b);
	assert_true(whole == 0x100682703c22073dull);
	/* fed in pieces of every size from 1 to 40 (as the compiler feeds constants and
	 * padding), the same value */
	for (int piece = 1; piece <= 40; piece++) {
		RtHash h;
		rt_hash_init(&h);
		for (int i = 0; i < 1000; i += piece)
			rt_hash_update(&h, b + i, (uint64_t)(i + piece > 1000 ? 1000 - i : piece));
		rt_hash_update(&h, NULL, 0);
		assert_true(rt_hash_final(&h) == whole);
	}
	/* any one flipped bit, and a trailing zero byte, change it */
	for (int i = 0; i < 1000; i += 37)
		for (int bit = 0; bit < 8; bit++) {
			b[i] ^= (unsigned char)(1u << bit);
			assert_true(rt_weights_hash(b, sizeof b) != whole);
			b[i] ^= (unsigned char)(1u << bit);
		}
	assert_true(rt_weights_hash("ab", 3) != rt_weights_hash("ab", 2));

	unsigned char t[32];
	rt_weights_trailer_pack(t, 0x1000, 0x0102030405060708ull, 0xa1b2c3d4e5f60718ull);
	assert_memory_equal(t, "BNWEIGHT", 8);
	const unsigned char want[24] = {0x00, 0x10, 0, 0, 0, 0, 0, 0,
					0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
					0x18, 0x07, 0xf6, 0xe5, 0xd4, 0xc3, 0xb2, 0xa1};
	assert_memory_equal(t + 8, want, 24);
	assert_int_equal(sizeof(RtWeightsTrailer), 32);
}

static void map_ok(const char *path, const uint8_t *pay, size_t n, size_t lead)
{
	Spoil sp = {.lead = lead};
	put_payload(path, pay, n, &sp);
	RtWeights w;
	RtErr e = {0};
	int rc = rt_weights_map(&w, path, NULL, n, rt_weights_hash(pay, n), &e);
	if (rc)
		fail_msg("%s", e.msg);
	assert_int_equal(w.size, n);
	assert_int_equal(w.embedded, 0);
	assert_string_equal(w.path, path);
	assert_non_null(w.data);
	if (n)
		assert_memory_equal(w.data, pay, n);
	rt_weights_unmap(&w);
	assert_null(w.data);
}

static void test_map(void **state)
{
	(void)state;
	const char *path = tu_tmp("test_weights_ok.bin");
	uint8_t *pay = pattern(70000);
	map_ok(path, pay, 70000, 12345); /* a program of 12345 bytes before it */
	map_ok(path, pay, 70000, 0);     /* a bare payload file */
	map_ok(path, pay, 1, 4096);
	map_ok(path, pay, 0, 100); /* empty payload: nothing to map, still valid */
	free(pay);
}

/* Maps a spoiled file and expects failure with both fragments in the message. */
static void map_bad(const Spoil *sp, uint64_t want_adj, const char *frag1, const char *frag2)
{
	const char *path = tu_tmp("test_weights_bad.bin");
	enum { N = 9000 };
	uint8_t *pay = pattern(N);
	put_payload(path, pay, N, sp);
	RtWeights w;
	RtErr e = {0};
	int rc = rt_weights_map(&w, path, NULL, N + want_adj, rt_weights_hash(pay, N), &e);
	free(pay);
	assert_int_not_equal(rc, RT_OK);
	assert_null(w.data);
	if (!strstr(e.msg, path) || !strstr(e.msg, frag1) || (frag2 && !strstr(e.msg, frag2)))
		fail_msg("message \"%s\" lacks the path or \"%s\"/\"%s\"", e.msg, frag1,
			 frag2 ? frag2 : "");
}

static void test_map_errors(void **state)
{
	(void)state;
	map_bad(&(Spoil){.lead = 5000, .bad_magic = 1}, 0, "not found (no trailer)", NULL);
	map_bad(&(Spoil){.lead = 5000, .offset_adj = 8}, 0, "not a multiple of 4096", NULL);
	map_bad(&(Spoil){.lead = 5000, .offset_adj = 4096}, 0, "truncated", NULL);
	map_bad(&(Spoil){.lead = 5000, .cut = 100}, 0, "truncated", "9000 bytes");
	map_bad(&(Spoil){.lead = 5000, .size_adj = 1 << 20}, 0, "truncated", NULL);
	map_bad(&(Spoil){.lead = 5000, .size_adj = -10}, 0, "8990 bytes", "expects 9000");
	map_bad(&(Spoil){.lead = 5000}, 1, "another model", "expects 9001");
	map_bad(&(Spoil){.lead = 5000, .hash_xor = 1}, 0, "another model", "hash");
	/* a huge offset must not wrap around the bounds check */
	map_bad(&(Spoil){.lead = 5000, .offset_adj = -(int64_t)8192 - 4096 * 1000}, 0,
		"truncated", NULL);

	/* Shorter than a trailer, and missing. */
	const char *path = tu_tmp("test_weights_short.bin");
	assert_int_equal(tu_write_file(path, "BNWEIGHT", 8), 0);
	RtWeights w;
	RtErr e = {0};
	assert_int_not_equal(rt_weights_map(&w, path, NULL, 0, 0, &e), RT_OK);
	assert_non_null(strstr(e.msg, "no trailer"));
	remove(path);
	assert_int_not_equal(rt_weights_map(&w, path, NULL, 0, 0, &e), RT_OK);
	assert_non_null(strstr(e.msg, "cannot open"));
	assert_non_null(strstr(e.msg, path));
}

/* This test program has no payload: mapping "itself" says so, in the words a user of a
 * stripped binary would see. */
static void test_map_self(void **state)
{
	(void)state;
	RtWeights w;
	RtErr e = {0};
	assert_int_not_equal(rt_weights_map(&w, NULL, "test_weights", 10, 1, &e), RT_OK);
	assert_non_null(strstr(e.msg, "weights payload not found (no trailer)"));
	assert_non_null(strstr(e.msg, "stripped"));
	char buf[4096];
	assert_int_equal(rt_exe_path("test_weights", buf, sizeof buf, &e), RT_OK);
}

#define skip_msg(...)                          \
	do {                                   \
		print_message(__VA_ARGS__);    \
		print_message("\n");           \
		skip();                        \
	} while (0)

/* The permissions /proc/self/maps gives the mapping that starts at addr ("?" if none). */
static void map_perms(const void *addr, char perms[8])
{
	strcpy(perms, "?");
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof line, f)) {
		unsigned long long lo, hi;
		char p[8];
		if (sscanf(line, "%llx-%llx %7s", &lo, &hi, p) == 3 &&
		    lo == (unsigned long long)(uintptr_t)addr) {
			strcpy(perms, p);
			break;
		}
	}
	fclose(f);
}

/* Progress calls: how many, whether done only grew, the last. */
typedef struct {
	int calls, backwards;
	uint64_t last, total;
} Seen;

static void seen_progress(void *user, uint64_t done, uint64_t total)
{
	Seen *s = user;
	s->backwards |= done < s->last;
	s->calls++;
	s->last = done;
	s->total = total;
}

/* The default copy: the same bytes in anonymous memory (not the file), read-only, 2 MiB
 * aligned when over a huge page, progress up to the total; --mmap's mapping alike. */
static void test_load_copy(void **state)
{
	(void)state;
	const char *path = tu_tmp("test_weights_copy.bin");
	size_t sizes[] = {0, 1, 70000, (size_t)(40u << 20) + 12345}; /* several 16 MiB chunks */
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		size_t n = sizes[k];
		uint8_t *pay = pattern(n);
		put_payload(path, pay, n, &(Spoil){.lead = 5000});
		uint64_t h = rt_weights_hash(pay, n);
		for (int threads = 1; threads <= 3; threads += 2) {
			RtWeights w;
			RtErr e = {0};
			Seen seen = {0};
			RtLoadOpts lo = {.threads = threads, .progress = seen_progress, .user = &seen};
			if (rt_weights_load(&w, path, NULL, NULL, 0, NULL, n, h, &lo, &e))
				fail_msg("%s", e.msg);
			assert_int_equal(w.copied, 1);
			assert_int_equal(w.size, n);
			if (n)
				assert_memory_equal(w.data, pay, n);
			if (n >= (2u << 20)) {
				assert_int_equal((uintptr_t)w.data % (2u << 20), 0);
				assert_int_equal(w.map_len % (2u << 20), 0);
			}
			if (n) {
				assert_int_equal(seen.total, n);
				assert_int_equal(seen.last, n);
				assert_int_equal(seen.backwards, 0);
				/* read-only once filled */
				char perms[8];
				map_perms(w.map, perms);
				assert_string_equal(perms, "r--p");
			}
			char desc[4400];
			rt_weights_describe(&w, desc, sizeof desc);
			assert_non_null(strstr(desc, "copied into"));
			assert_non_null(strstr(desc, "anonymous memory"));
			rt_weights_unmap(&w);
			assert_null(w.data);
		}
		RtWeights w;
		RtErr e = {0};
		RtLoadOpts lo = {.flags = RT_WEIGHTS_MMAP};
		if (rt_weights_load(&w, path, NULL, NULL, 0, NULL, n, h, &lo, &e))
			fail_msg("%s", e.msg);
		assert_int_equal(w.copied, 0);
		if (n)
			assert_memory_equal(w.data, pay, n);
		char desc[4400];
		rt_weights_describe(&w, desc, sizeof desc);
		assert_non_null(strstr(desc, "mapped lazily from"));
		rt_weights_unmap(&w);
		free(pay);
	}
	remove(path);
}

/* Weights linked into a library: copied out of the blob by default, left in it with
 * RT_WEIGHTS_MMAP. */
static void test_load_blob(void **state)
{
	(void)state;
	enum { N = 3 << 20 };
	uint8_t *pay = pattern(N);
	size_t total = 4096 + N + 32;
	uint8_t *blob = aligned_alloc(4096, (total + 4095) / 4096 * 4096); /* C11: a multiple */
	assert_non_null(blob);
	memset(blob, 0, 4096);
	memcpy(blob + 4096, pay, N);
	rt_weights_trailer_pack(blob + 4096 + N, 4096, N, rt_weights_hash(pay, N));
	RtWeights w;
	RtErr e = {0};
	RtLoadOpts lo = {0};
	if (rt_weights_load(&w, NULL, NULL, blob, total, "linked", N, rt_weights_hash(pay, N), &lo,
			    &e))
		fail_msg("%s", e.msg);
	assert_int_equal(w.copied, 1);
	assert_ptr_not_equal(w.data, blob + 4096);
	assert_memory_equal(w.data, pay, N);
	rt_weights_unmap(&w);
	lo.flags = RT_WEIGHTS_MMAP;
	if (rt_weights_load(&w, NULL, NULL, blob, total, "linked", N, rt_weights_hash(pay, N), &lo,
			    &e))
		fail_msg("%s", e.msg);
	assert_int_equal(w.copied, 0);
	assert_ptr_equal(w.data, blob + 4096);
	rt_weights_unmap(&w);
	free(blob);
	free(pay);
}


/* Weights linked into a library are a read-only file mapping: the copy drops the pages it
 * read from the process (RT_WEIGHTS_DROP_BLOB), so that they are not resident twice. */
static void test_load_blob_drop(void **state)
{
	(void)state;
	enum { N = 4 << 20 };
	const char *path = tu_tmp("test_weights_blob.bin");
	uint8_t *pay = pattern(N);
	put_payload(path, pay, N, &(Spoil){.lead = 100}); /* the payload at 4096 */
	size_t total = 4096 + N + 32;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	uint8_t *blob = mmap(NULL, total, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	assert_true(blob != MAP_FAILED);
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < total; i += 4096) /* resident before, as after a lazy run */
		sink ^= blob[i];
	(void)sink;
	assert_true((long)rt_smaps_kb(blob, "Rss") >= N / 1024);
	RtWeights w;
	RtErr e = {0};
	RtLoadOpts lo = {.flags = RT_WEIGHTS_DROP_BLOB};
	if (rt_weights_load(&w, NULL, NULL, blob, total, "linked", N, rt_weights_hash(pay, N), &lo,
			    &e))
		fail_msg("%s", e.msg);
	assert_memory_equal(w.data, pay, N);
	long kb = (long)rt_smaps_kb(blob, "Rss");
	if (kb < 0 || kb > 8) /* at most the two partial pages at the ends */
		fail_msg("the blob's mapping still has %ld kB resident after the copy", kb);
	assert_memory_equal(blob + 4096, pay, N); /* still readable: from the page cache */
	rt_weights_unmap(&w);
	munmap(blob, total);
	free(pay);
	remove(path);
}

/* A truncated file is refused the same with or without the copy. */
static void test_load_truncated(void **state)
{
	(void)state;
	const char *path = tu_tmp("test_weights_trunc.bin");
	enum { N = 9000 };
	uint8_t *pay = pattern(N);
	put_payload(path, pay, N, &(Spoil){.lead = 5000, .cut = 100});
	for (int mode = 0; mode < 2; mode++) {
		RtWeights w;
		RtErr e = {0};
		RtLoadOpts lo = {.flags = mode ? RT_WEIGHTS_MMAP : 0};
		assert_int_not_equal(rt_weights_load(&w, path, NULL, NULL, 0, NULL, N,
						     rt_weights_hash(pay, N), &lo, &e),
				     RT_OK);
		assert_null(w.data);
		if (!strstr(e.msg, path) || !strstr(e.msg, "truncated"))
			fail_msg("mode %d: \"%s\"", mode, e.msg);
	}
	free(pay);
	remove(path);
}

/* RT_WEIGHTS_MLOCK under a locked-memory limit smaller than the weights: refused with a
 * message naming the limit, in both modes (root included: the limit is checked first). */
static void test_load_mlock_limit(void **state)
{
	(void)state;
	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &old), 0);
	const char *path = tu_tmp("test_weights_mlock.bin");
	enum { N = 70000 };
	uint8_t *pay = pattern(N);
	put_payload(path, pay, N, &(Spoil){.lead = 0});
	struct rlimit low = {.rlim_cur = 16384, .rlim_max = old.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &low), 0);
	for (int mode = 0; mode < 2; mode++) {
		RtWeights w;
		RtErr e = {0};
		RtLoadOpts lo = {.flags = RT_WEIGHTS_MLOCK | (mode ? RT_WEIGHTS_MMAP : 0)};
		int rc = rt_weights_load(&w, path, NULL, NULL, 0, NULL, N, rt_weights_hash(pay, N),
					 &lo, &e);
		assert_int_equal(rc, RT_ENOMEM);
		assert_null(w.data);
		if (!strstr(e.msg, "RLIMIT_MEMLOCK") || !strstr(e.msg, "ulimit -l") ||
		    !strstr(e.msg, path))
			fail_msg("mode %d: \"%s\"", mode, e.msg);
	}
	assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &old), 0);
	/* within the limit: locked (skipped where even 1 MiB cannot be locked) */
	if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < (1u << 20)) {
		free(pay);
		skip_msg("RLIMIT_MEMLOCK is below 1 MiB here: the locked load is not tried");
	}
	RtWeights w;
	RtErr e = {0};
	RtLoadOpts lo = {.flags = RT_WEIGHTS_MLOCK};
	if (rt_weights_load(&w, path, NULL, NULL, 0, NULL, N, rt_weights_hash(pay, N), &lo, &e))
		fail_msg("%s", e.msg);
	assert_int_equal(w.locked, 1);
	assert_memory_equal(w.data, pay, N);
	rt_weights_unmap(&w);
	free(pay);
	remove(path);
}

static void test_exe_search_path(void **state)
{
	(void)state;
	const char *dir = tu_tmp("test_weights_bin");
	mkdir(dir, 0755);
	char exe[1200], out[1200], path_env[2600];
	snprintf(exe, sizeof exe, "%s/myprog", dir);
	assert_int_equal(tu_write_file(exe, "#!/bin/sh\n", 10), 0);
	chmod(exe, 0755);
	snprintf(path_env, sizeof path_env, "/nonexistent-dir::%s:/usr/bin", dir);
	assert_int_equal(rt_exe_search_path("myprog", path_env, out, sizeof out), 0);
	assert_string_equal(out, exe);
	/* with a slash: taken as a path */
	assert_int_equal(rt_exe_search_path(exe, NULL, out, sizeof out), 0);
	assert_string_equal(out, exe);
	assert_int_equal(rt_exe_search_path("myprog", "/nonexistent-dir", out, sizeof out), -1);
	assert_int_equal(rt_exe_search_path("./no/such/prog", NULL, out, sizeof out), -1);
	assert_int_equal(rt_exe_search_path("", "/usr/bin", out, sizeof out), -1);
	assert_int_equal(rt_exe_search_path("myprog", path_env, out, 5), -1); /* too long */
	/* not executable: skipped */
	chmod(exe, 0644);
	assert_int_equal(rt_exe_search_path("myprog", path_env, out, sizeof out), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_map_errors),
		cmocka_unit_test(test_map_self),
		cmocka_unit_test(test_load_copy),
		cmocka_unit_test(test_load_blob),
		cmocka_unit_test(test_load_blob_drop),
		cmocka_unit_test(test_load_truncated),
		cmocka_unit_test(test_load_mlock_limit),
		cmocka_unit_test(test_exe_search_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
