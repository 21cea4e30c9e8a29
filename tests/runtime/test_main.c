/* test_main.c - the generated program's main(): builds a real program from fake_model.c + runtime/ and runs it. */
#include "testutil.h"
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

/* What fake_model.c expects (see its header comment). */
#define NV 16
#define WBYTES 5000

static char src_dir[1024]; /* the source tree */
static char prog[1200];    /* the program with its payload appended */
static char bare[1200];    /* the same program without a payload */
static char wfile[1200];   /* the payload alone, as a --weights-file */
static char faulty[1200];  /* fake_model.c with -DFAKE_FAULTS, payload appended */
static char device[1200];  /* fake_model.c with -DFAKE_DEVICE and rt_cuda.c, payload appended */
/* The fake driver of a sanitized build is sanitized, and a program that loads it must be too. */
#if defined(__SANITIZE_ADDRESS__)
#define FAKE_DEVICE_SAN "-fsanitize=address,undefined -fno-omit-frame-pointer"
#else
#define FAKE_DEVICE_SAN ""
#endif

static uint8_t *fake_payload(void)
{
	uint8_t *p = malloc(WBYTES);
	for (int i = 0; i < WBYTES; i++)
		p[i] = (uint8_t)((i * 31 + 7) & 255);
	return p;
}

/* The test's own appender: pads path to 4096, appends payload and trailer. */
static int append_payload(const char *path, const uint8_t *pay, size_t n)
{
	size_t len;
	uint8_t *old = tu_read_file(path, &len);
	if (!old)
		return -1;
	size_t off = (len + 4095) / 4096 * 4096, total = off + n + 32;
	uint8_t *b = calloc(1, total);
	memcpy(b, old, len);
	memcpy(b + off, pay, n);
	uint8_t *t = b + off + n;
	memcpy(t, "BNWEIGHT", 8);
	uint64_t f[3] = {off, n, rt_weights_hash(pay, n)};
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 8; i++)
			t[8 + 8 * k + i] = (uint8_t)(f[k] >> (8 * i));
	int rc = tu_write_file(path, b, total);
	free(old);
	free(b);
	return rc ? rc : chmod(path, 0755);
}

/* The runtime sources every program compiles (runtime/ less rt_cuda.c, which only a device
 * program adds), quoted for the shell. */
static int runtime_sources(char *buf, size_t n)
{
	char dir[1100];
	snprintf(dir, sizeof dir, "%s/runtime", src_dir);
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	size_t len = 0;
	buf[0] = 0;
	for (struct dirent *e; (e = readdir(d));) {
		size_t l = strlen(e->d_name);
		/* rt_cuda.c: device programs only; rt_http*.c: --server programs only */
		if (l < 3 || strcmp(e->d_name + l - 2, ".c") || !strcmp(e->d_name, "rt_cuda.c") ||
		    !strncmp(e->d_name, "rt_http", 7))
			continue;
		int k = snprintf(buf + len, n - len, " '%s/%s'", dir, e->d_name);
		if (k < 0 || (size_t)k >= n - len)
			break;
		len += (size_t)k;
	}
	closedir(d);
	return 0;
}

/* fake_model.c + runtime/ into path, with the flags bitnetc build uses for generated
 * programs, the extra defines (and sources) defs and the extra libraries libs. */
static int compile_fake(const char *path, const char *defs, const char *libs, const uint8_t *pay)
{
	const char *cc = getenv("CC");
	char *out = NULL, srcs[8192];
	if (runtime_sources(srcs, sizeof srcs))
		return -1;
	int rc = tu_run(&out,
			"%s -std=c11 -O2 -ffp-contract=off -D_GNU_SOURCE -DFAKE_HASH=0x%llxull %s "
			"-I'%s/runtime' '%s/tests/runtime/fake_model.c'%s -o '%s' -lm -lpthread %s",
			cc && *cc ? cc : "cc", (unsigned long long)rt_weights_hash(pay, WBYTES), defs,
			src_dir, src_dir, srcs, path, libs);
	if (rc != 0)
		fprintf(stderr, "building the fake program failed:\n%s\n", out);
	free(out);
	return rc;
}

static int build_fake(void **state)
{
	(void)state;
	const char *data = getenv("BN_TEST_DATA");
	snprintf(src_dir, sizeof src_dir, "%s/../..", data && *data ? data : "tests/data");
	snprintf(bare, sizeof bare, "%s", tu_tmp("fake_prog_bare"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("fake_prog"));
	snprintf(wfile, sizeof wfile, "%s", tu_tmp("fake_weights.bin"));
	snprintf(faulty, sizeof faulty, "%s", tu_tmp("fake_prog_faults"));
	snprintf(device, sizeof device, "%s", tu_tmp("fake_prog_device"));
	uint8_t *pay = fake_payload();
	char cuda[1200];
	snprintf(cuda, sizeof cuda, "-DFAKE_DEVICE '%s/runtime/rt_cuda.c' %s", src_dir,
		 FAKE_DEVICE_SAN);
	if (compile_fake(bare, "", "", pay) || compile_fake(faulty, "-DFAKE_FAULTS", "", pay) ||
	    append_payload(faulty, pay, WBYTES) || compile_fake(device, cuda, "-ldl", pay) ||
	    append_payload(device, pay, WBYTES)) {
		free(pay);
		return -1;
	}
	int rc = tu_run(NULL, "cp '%s' '%s'", bare, prog);
	if (!rc)
		rc = append_payload(prog, pay, WBYTES);
	/* The weights file: the payload at offset 0 and its trailer. */
	if (!rc) {
		remove(wfile);
		rc = tu_write_file(wfile, "", 0) || append_payload(wfile, pay, WBYTES);
	}
	free(pay);
	return rc;
}

/* Runs the program with args; returns the exit code, *out gets stdout (+ stderr when
 * both is set). */
static int run_prog(char **out, int both, const char *fmt, ...) BN_PRINTF(3, 4);

static int run_prog(char **out, int both, const char *fmt, ...)
{
	char args[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	if (both)
		return tu_run(out, "'%s' %s", prog, args);
	return tu_run(out, "{ '%s' %s 2>/dev/null; }", prog, args);
}

static void expect_out(const char *args, const char *want)
{
	char *out = NULL;
	int rc = run_prog(&out, 0, "%s", args);
	if (rc != 0 || strcmp(out, want) != 0)
		fail_msg("%s: exit %d, stdout \"%s\", want \"%s\"", args, rc, out, want);
	free(out);
}

static void test_info(void **state)
{
	(void)state;
	char *out = NULL;
	assert_int_equal(run_prog(&out, 1, "--info"), 0);
	assert_null(strstr(out, "device:")); /* a CPU program has no device */
	const char *frags[] = {"fake-16", "cpu-generic", "n_vocab:     16", "max_batch:   4",
			       "templates:   1 2 4 (tokens per forward function",
			       "5000 bytes", "embedded", "ok", "a hand-written test model",
			       "tokenizer:   none", "chat:        none"};
	for (size_t i = 0; i < sizeof frags / sizeof *frags; i++)
		if (!strstr(out, frags[i]))
			fail_msg("--info lacks \"%s\":\n%s", frags[i], out);
	free(out);
	assert_int_equal(run_prog(&out, 1, "--help"), 0);
	assert_non_null(strstr(out, "--tokens"));
	assert_non_null(strstr(out, "built without a tokenizer"));
	assert_non_null(strstr(out, "exit codes: 0 ok, 1 usage error, 2 runtime error\n"));
	assert_null(strstr(out, "no usable GPU")); /* a CPU program never exits 3 */
	free(out);
	assert_int_equal(run_prog(&out, 1, "--version"), 0);
	assert_non_null(strstr(out, "fake-16"));
	free(out);
}

static void test_generate(void **state)
{
	(void)state;
	expect_out("--tokens 3,5 -n 5 --temp 0", "6 7 8 9 10\n");
	expect_out("-p 3,5 -n 2 --temp 0", "6 7\n");
	expect_out("-p '3 5' -n 2 --temp 0 -t 3", "6 7\n");
	/* stops at EOS (15) unless told not to */
	expect_out("--tokens 12 -n 5 --temp 0", "13 14\n");
	expect_out("--tokens 12 -n 5 --temp 0 --ignore-eos", "13 14 15 0 1\n");
	/* filling the context exactly (8 positions: 1 prompt + 7 generated) */
	expect_out("--tokens 3 -n 7 -c 8 --temp 0 --ignore-eos", "4 5 6 7 8 9 10\n");
	/* more than fits, or -n -1: until the context is full */
	expect_out("--tokens 3 -n 70 -c 8 --temp 0 --ignore-eos", "4 5 6 7 8 9 10\n");
	expect_out("--tokens 3 -n -1 -c 8 --temp 0 --ignore-eos", "4 5 6 7 8 9 10\n");
	/* no prompt: starts from BOS (0) */
	expect_out("-n 3 --temp 0", "1 2 3\n");
	/* a prompt file, whitespace-separated */
	const char *pf = tu_tmp("test_main_prompt.txt");
	assert_int_equal(tu_write_file(pf, "3\n 5\n", 5), 0);
	char args[1400];
	snprintf(args, sizeof args, "-f '%s' -n 2 --temp 0", pf);
	expect_out(args, "6 7\n");
	/* default sampling: the fake's logits leave one candidate after min-p */
	expect_out("--tokens 3 -n 3", "4 5 6\n");

	/* A hot sampler with a seed is reproducible, and prints its seed. */
	char *a = NULL, *b = NULL, *c = NULL;
	const char *hot = "--tokens 3 -n 40 --temp 30 --top-k 0 --top-p 1 --min-p 0";
	assert_int_equal(run_prog(&a, 0, "%s --seed 7", hot), 0);
	assert_int_equal(run_prog(&b, 0, "%s --seed 7", hot), 0);
	assert_int_equal(run_prog(&c, 0, "%s --seed 8 --ignore-eos", hot), 0);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	free(a);
	free(b);
	free(c);
	assert_int_equal(run_prog(&a, 1, "%s --seed 12345", hot), 0);
	assert_non_null(strstr(a, "seed 12345"));
	assert_non_null(strstr(a, "prompt eval time"));
	assert_non_null(strstr(a, "eval time"));
	assert_non_null(strstr(a, "load time"));
	free(a);
}

/* Reads a logits file; *rows gets the row count. */
static float *read_rows(const char *path, int *rows)
{
	size_t n;
	float *x = tu_read_file(path, &n);
	assert_non_null(x);
	assert_int_equal(n % (NV * sizeof(float)), 0);
	*rows = (int)(n / (NV * sizeof(float)));
	return x;
}

/* Checks one row of the fake's logits for token t (call of size call, previous token
 * prev or -1); see fake_model.c. */
static void check_row(const float *row, int t, int call, int prev, const uint8_t *pay)
{
	for (int v = 0; v < NV; v++) {
		float want;
		if (v == (t + 1) % NV)
			want = 10.0f;
		else if (v == (t + 2) % NV)
			want = (float)call;
		else if (v == (t + 3) % NV)
			want = 0.01f * (float)(prev + 1);
		else
			want = (float)pay[(t * NV + v) % WBYTES] / 10000.0f;
		if (row[v] != want)
			fail_msg("token %d: logit %d is %g, want %g (call size %d)", t, v, row[v],
				 want, call);
	}
}

static void test_logits_out(void **state)
{
	(void)state;
	uint8_t *pay = fake_payload();
	const char *lf = tu_tmp("test_main_logits.f32");
	char *out = NULL;
	int rows;
	/* 3 prompt rows (one call of 3) + 2 generated rows (calls of 1) */
	assert_int_equal(run_prog(&out, 0, "--tokens 1,2,3 -n 2 --temp 0 --logits-out '%s'", lf), 0);
	assert_string_equal(out, "4 5\n");
	free(out);
	float *x = read_rows(lf, &rows);
	assert_int_equal(rows, 5);
	const int toks[] = {1, 2, 3, 4, 5}, calls[] = {3, 3, 3, 1, 1};
	for (int i = 0; i < 5; i++)
		check_row(x + i * NV, toks[i], calls[i], i ? toks[i - 1] : -1, pay);
	free(x);

	/* -n 0: only the prompt, in calls of 3 + 2 (never a last call of 1) */
	assert_int_equal(run_prog(&out, 0, "--tokens 1,2,3,4,5 -n 0 --logits-out '%s'", lf), 0);
	assert_string_equal(out, "\n");
	free(out);
	x = read_rows(lf, &rows);
	assert_int_equal(rows, 5);
	for (int i = 0; i < 5; i++)
		check_row(x + i * NV, i + 1, i < 3 ? 3 : 2, i ? i : -1, pay);
	free(x);

	/* The same rows with 1 and 3 threads. */
	char *f1 = NULL, *f3 = NULL;
	size_t n1, n3;
	assert_int_equal(run_prog(NULL, 0, "--tokens 7,8,9 -n 4 -t 1 --ignore-eos --logits-out '%s'",
				  lf), 0);
	f1 = tu_read_file(lf, &n1);
	assert_int_equal(run_prog(NULL, 0, "--tokens 7,8,9 -n 4 -t 3 --ignore-eos --logits-out '%s'",
				  lf), 0);
	f3 = tu_read_file(lf, &n3);
	assert_int_equal(n1, 7 * NV * 4);
	assert_int_equal(n1, n3);
	assert_memory_equal(f1, f3, n1);
	free(f1);
	free(f3);
	free(pay);
}

/* The prompt is split greedily over the batch templates (1, 2, 4; -ub caps them), never
 * leaving a last call of exactly one token; the fake writes each row's call size into its
 * logits. */
static void check_chunks_ub(const char *ub, int n_prompt, const int *want_calls, int n_calls)
{
	const char *lf = tu_tmp("test_main_chunks.f32");
	char ids[512];
	size_t len = 0;
	for (int i = 0; i < n_prompt; i++)
		len += (size_t)snprintf(ids + len, sizeof ids - len, "%s%d", i ? "," : "", i % 15);
	assert_int_equal(run_prog(NULL, 0, "--tokens %s -n 0 --logits-out '%s' %s", ids, lf, ub), 0);
	int rows;
	float *x = read_rows(lf, &rows);
	assert_int_equal(rows, n_prompt);
	int r = 0;
	for (int c = 0; c < n_calls; c++)
		for (int k = 0; k < want_calls[c]; k++, r++) {
			int t = r % 15;
			if (x[r * NV + (t + 2) % NV] != (float)want_calls[c])
				fail_msg("%d tokens %s: row %d came from a call of %g, want %d", n_prompt,
					 ub, r, x[r * NV + (t + 2) % NV], want_calls[c]);
		}
	assert_int_equal(r, n_prompt);
	free(x);
}

static void check_chunks(int n_prompt, const int *want_calls, int n_calls)
{
	check_chunks_ub("", n_prompt, want_calls, n_calls);
}

static void test_chunking(void **state)
{
	(void)state;
	check_chunks(33, (const int[]){4, 4, 4, 4, 4, 4, 4, 3, 2}, 9);
	/* 3: one partial call of 4 rather than 2 + 1 (a trailing step-mode call) */
	check_chunks(3, (const int[]){3}, 1);
	check_chunks(7, (const int[]){4, 3}, 2);
	/* -ub 3 caps the calls: sizes 1, 2, 3 */
	check_chunks_ub("-ub 3", 7, (const int[]){3, 2, 2}, 3);
	check_chunks_ub("-ub 3", 8, (const int[]){3, 3, 2}, 3);
	/* -ub 1: token by token, the reference's step mode */
	check_chunks_ub("-ub 1", 3, (const int[]){1, 1, 1}, 3);
	check_chunks(1, (const int[]){1}, 1);
	check_chunks(2, (const int[]){2}, 1);
	check_chunks(4, (const int[]){4}, 1);
	check_chunks(5, (const int[]){3, 2}, 2);
	check_chunks(6, (const int[]){4, 2}, 2);
	check_chunks(9, (const int[]){4, 3, 2}, 3);
}

/* Minimal JSON shape check: one object, balanced, no trailing commas. */
static int json_object_ok(const char *s)
{
	while (*s == ' ')
		s++;
	if (*s != '{')
		return 0;
	int depth = 0, in_str = 0;
	char last = 0;
	for (; *s; s++) {
		char c = *s;
		if (in_str) {
			if (c == '\\' && s[1])
				s++;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"')
			in_str = 1;
		else if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']') {
			if (last == ',' || --depth < 0)
				return 0;
			if (depth == 0)
				return s[1] == '\n' && s[2] == 0;
		}
		if (c != ' ' && c != '\n')
			last = c;
	}
	return 0;
}

static void test_bench(void **state)
{
	(void)state;
	char *out = NULL;
	assert_int_equal(run_prog(&out, 0, "--bench --pp 8 --tg 8 --reps 3 --json"), 0);
	if (!json_object_ok(out))
		fail_msg("not one JSON object: %s", out);
	const char *keys[] = {"\"pp_tok_s\": ", "\"tg_tok_s\": ", "\"n_prompt\": 8,",
			      "\"n_gen\": 8,", "\"threads\": ", "\"reps\": 3,",
			      "\"model\": \"fake-16\"", "\"target\": \"cpu-generic\"",
			      "\"weights_bytes\": 5000,"};
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		if (!strstr(out, keys[i]))
			fail_msg("--json lacks %s: %s", keys[i], out);
	double pp = atof(strstr(out, "\"pp_tok_s\": ") + 12);
	assert_true(pp > 0);
	free(out);
	assert_int_equal(run_prog(&out, 0, "--bench --pp 8 --tg 8 --reps 3 -t 2"), 0);
	assert_non_null(strstr(out, "pp8"));
	assert_non_null(strstr(out, "tg8"));
	assert_non_null(strstr(out, "fake-16"));
	free(out);
	/* a bench that does not fit -c is a usage error */
	assert_int_equal(run_prog(&out, 1, "--bench --pp 8 --tg 8 -c 10"), 1);
	free(out);
	/* without -c, the model's context (64) is the limit, as for generation: a long
	 * --pp or --tg, or the two together, would run far past what the model knows */
	const char *over[] = {"--bench --pp 65 --tg 0", "--bench --pp 0 --tg 65",
			      "--bench --pp 40 --tg 40"};
	for (size_t i = 0; i < sizeof over / sizeof *over; i++) {
		assert_int_equal(run_prog(&out, 1, "%s", over[i]), 1);
		if (!strstr(out, "do not fit the context of 64 tokens") || !strstr(out, "-c raises it"))
			fail_msg("%s: %s", over[i], out);
		free(out);
	}
	/* -c raises it (with a warning past the training context) */
	assert_int_equal(run_prog(&out, 1, "--bench --pp 40 --tg 40 -c 80 --reps 1"), 0);
	assert_non_null(strstr(out, "beyond the model's training context"));
	free(out);
	/* --profile on a model that does not time its kernels (this hand-written one, as a
	 * GPU backend's): no forward timed, said per phase; the JSON carries zero forwards */
	assert_int_equal(run_prog(&out, 0, "--bench --profile --pp 8 --tg 4 --reps 2"), 0);
	assert_non_null(strstr(out, "profile pp8: no forward was timed"));
	assert_non_null(strstr(out, "profile tg4: no forward was timed"));
	free(out);
	assert_int_equal(run_prog(&out, 0, "--bench --profile --pp 8 --tg 4 --reps 2 --json"), 0);
	if (!json_object_ok(out) || !strstr(out, "\"profile\": {\"pp\": {\"forwards\": 0,") ||
	    !strstr(out, "\"tg\": {\"forwards\": 0,"))
		fail_msg("--profile --json: %s", out);
	free(out);
}

static void test_moved_and_weights_file(void **state)
{
	(void)state;
	char *out = NULL;
	const char *dir = tu_tmp("test_main_elsewhere");
	mkdir(dir, 0755);
	assert_int_equal(tu_run(NULL, "cp '%s' '%s/moved'", prog, dir), 0);
	/* by absolute path from another cwd, and by name through PATH */
	assert_int_equal(tu_run(&out, "cd / && { '%s/moved' --tokens 3 -n 2 --temp 0 2>/dev/null; }", dir),
			 0);
	assert_string_equal(out, "4 5\n");
	free(out);
	assert_int_equal(tu_run(&out, "cd / && { PATH='%s':$PATH moved --tokens 3 -n 2 --temp 0 "
				      "2>/dev/null; }", dir), 0);
	assert_string_equal(out, "4 5\n");
	free(out);

	/* no payload, but a weights file */
	assert_int_equal(tu_run(&out, "{ '%s' --weights-file '%s' --tokens 3 -n 2 --temp 0 "
				      "2>/dev/null; }", bare, wfile), 0);
	assert_string_equal(out, "4 5\n");
	free(out);
	assert_int_equal(tu_run(&out, "'%s' --weights-file '%s' --info", bare, wfile), 0);
	assert_non_null(strstr(out, "(file), ok"));
	free(out);
	/* a weights file of another model, and a missing one */
	const char *other = tu_tmp("test_main_other.bin");
	uint8_t *pay = fake_payload();
	pay[100] ^= 1;
	remove(other);
	assert_int_equal(tu_write_file(other, "", 0), 0);
	assert_int_equal(append_payload(other, pay, WBYTES), 0);
	free(pay);
	assert_int_equal(tu_run(&out, "'%s' --weights-file '%s' --tokens 3", bare, other), 2);
	assert_non_null(strstr(out, "belongs to another model"));
	assert_non_null(strstr(out, other));
	free(out);
	assert_int_equal(tu_run(&out, "'%s' --weights-file /nonexistent/w.bin --tokens 3", bare), 2);
	assert_non_null(strstr(out, "/nonexistent/w.bin"));
	free(out);
}

static int has_trailer(const char *path)
{
	size_t n;
	char *b = tu_read_file(path, &n);
	int yes = b && n >= 32 && memcmp(b + n - 32, "BNWEIGHT", 8) == 0;
	free(b);
	return yes;
}

static void test_stripped(void **state)
{
	(void)state;
	char *out = NULL;
	const char *cut = tu_tmp("fake_prog_stripped");
	assert_int_equal(tu_run(NULL, "cp '%s' '%s'", prog, cut), 0);
	/* strip drops bytes past the ELF's sections; where it keeps them, cut the trailer. */
	tu_run(NULL, "strip '%s'", cut);
	if (has_trailer(cut))
		assert_int_equal(tu_run(NULL, "truncate -s -32 '%s'", cut), 0);
	assert_int_equal(tu_run(&out, "'%s' --tokens 3", cut), 2);
	if (!strstr(out, "weights payload not found (no trailer)") || !strstr(out, "stripped") ||
	    !strstr(out, "fake_prog_stripped: "))
		fail_msg("stripped: %s", out);
	free(out);
	/* the payload cut short, trailer intact */
	size_t n;
	uint8_t *b = tu_read_file(prog, &n);
	memmove(b + n - 32 - 1000, b + n - 32, 32);
	assert_int_equal(tu_write_file(cut, b, n - 1000), 0);
	free(b);
	assert_int_equal(tu_run(&out, "'%s' --tokens 3", cut), 2);
	assert_non_null(strstr(out, "truncated"));
	free(out);
	/* --info still runs and says what is wrong */
	assert_int_equal(tu_run(&out, "'%s' --info", cut), 2);
	assert_non_null(strstr(out, "fake-16"));
	assert_non_null(strstr(out, "NOT USABLE"));
	free(out);
}

/* Usage errors: exit 1, one line "fake_prog: ..." naming the problem. */
static void usage_error(const char *args, const char *frag)
{
	char *out = NULL;
	int rc = run_prog(&out, 1, "%s", args);
	const char *nl = strchr(out, '\n');
	if (rc != 1 || strncmp(out, "fake_prog: ", 11) != 0 || !strstr(out, frag) || !nl ||
	    nl[1] != 0)
		fail_msg("%s: exit %d, output \"%s\", want exit 1 and one line with \"%s\"", args, rc,
			 out, frag);
	free(out);
}

static void test_bad_cli(void **state)
{
	(void)state;
	usage_error("--frobnicate", "unknown flag --frobnicate");
	usage_error("stray", "unexpected argument \"stray\"");
	usage_error("--tokens 1 -n", "-n needs a value");
	usage_error("--tokens", "--tokens needs a value");
	usage_error("--tokens 1 -n -3", "-n: -3 is out of range");
	usage_error("--tokens 1 -n x", "-n: \"x\" is not an integer");
	usage_error("--tokens 1 -n 5x", "-n: \"5x\"");
	usage_error("--tokens 1 -c 0", "-c: 0 is out of range");
	usage_error("--tokens 1 -t 0", "-t: 0");
	usage_error("--tokens 1 --temp warm", "--temp: \"warm\" is not a number");
	usage_error("--tokens 1 --top-p 1.5", "--top-p: 1.5 is out of range");
	usage_error("--tokens 1 --repeat-penalty 0", "--repeat-penalty");
	usage_error("--tokens 1 --seed -5", "--seed");
	usage_error("--tokens 1,2,3 -c 2", "the prompt has 3 tokens");
	usage_error("-f /nonexistent/prompt.txt", "-f /nonexistent/prompt.txt: cannot read");
	usage_error("-p 'hello world'", "built without a tokenizer: give the prompt as token ids");
	/* chat needs a tokenizer and a template; it reads the conversation from stdin */
	usage_error("-cnv", "-cnv needs a tokenizer");
	usage_error("-cnv -p 1", "-sys");
	usage_error("--chat-template chatml", "unknown template \"chatml\"");
	usage_error("--tokens 1,,2", "item 2");
	/* a bad id list says what is wrong with it, never that the program lacks a tokenizer */
	const char *bad_ids[][2] = {
		{"--tokens 128000,-5", "--tokens: token list item 2 \"-5\" is not a non-negative integer"},
		{"--tokens -1", "item 1 \"-1\" is not a non-negative integer"},
		{"--tokens 'a b'", "item 1 \"a\" is not a non-negative integer"},
		{"--tokens '1 2 x'", "item 3 \"x\""},
		{"--tokens 99999999999", "item 1 \"99999999999\" is out of range"},
		{"--tokens ''", "token list is empty"},
		{"--tokens 128000", "prompt token 128000 (position 0) is out of range"},
		{"-p 3,-5", "-p: token list item 2 \"-5\""},
	};
	for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
		usage_error(bad_ids[i][0], bad_ids[i][1]);
		char *msg = NULL;
		run_prog(&msg, 1, "%s", bad_ids[i][0]);
		if (strstr(msg, "tokenizer"))
			fail_msg("%s: %s", bad_ids[i][0], msg);
		free(msg);
	}
	usage_error("--tokens 3,16", "prompt token 16 (position 1) is out of range");
	usage_error("-p 1 --tokens 2", "only one of");
	usage_error("--tokens 1 --logits-out /nonexistent/dir/x.f32", "/nonexistent/dir/x.f32");
	usage_error("--bench --pp 0 --tg 0", "nothing to time");
	usage_error("--profile --tokens 1", "--profile goes with --bench");
	/* -n 0 only evaluates the prompt */
	expect_out("--tokens 1 -n 0", "\n");
	/* without -n, the default 128 stops when the 64-token context is full */
	expect_out("--tokens 1 --temp 0 --ignore-eos -c 6", "2 3 4 5 6\n");
}

/* A non-finite activation or logit stops the run: exit 2, the token and (from the model)
 * the layer named; what was generated before it stays printed. */
static void test_nonfinite(void **state)
{
	(void)state;
	static const struct {
		const char *args, *out, *msg;
	} cases[] = {
		/* token 12: a NaN embedding row (layer -1), in the prompt or generated */
		{"--tokens 3,12 -n 2", "", "the embedding row of token 12 (position 1) is not finite"},
		{"--tokens 10 -n 5", "11 12\n", "the embedding row of token 12 (position 2)"},
		/* token 13: layer 1 overflows; in a batch of 4, at its index */
		{"--tokens 1,2,13,4 -n 1", "", "in layer 1 at position 2 (token 13)"},
		{"--tokens 1,2,13,4 -n 1 -ub 1", "", "in layer 1 at position 2 (token 13)"},
		/* token 14: the model reports success, the runtime's check of the logits */
		{"--tokens 14 -n 1", "", "the logits of position 0 (token 14) are NaN or Inf"},
		{"--tokens 14,1 -n 1 --logits-out /dev/null", "",
		 "the logits of position 0 (token 14)"},
		{"--tokens 9,8 -n 9", "9 10 11 12\n", "the embedding row of token 12 (position 5)"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *out = NULL, *err = NULL;
		int rc = tu_run(&out, "{ '%s' %s --temp 0 2>/dev/null; }", faulty, cases[i].args);
		int rc2 = tu_run(&err, "{ '%s' %s --temp 0 2>&1 >/dev/null; }", faulty, cases[i].args);
		if (rc != 2 || rc2 != 2 || strcmp(out, cases[i].out) != 0 || !strstr(err, cases[i].msg))
			fail_msg("%s: exit %d, stdout \"%s\", stderr \"%s\"; want 2, \"%s\", \"%s\"",
				 cases[i].args, rc, out, err, cases[i].out, cases[i].msg);
		free(out);
		free(err);
	}
	/* --bench's random tokens include them: it fails instead of timing garbage */
	char *out = NULL;
	assert_int_equal(tu_run(&out, "'%s' --bench --pp 16 --tg 16 --reps 1", faulty), 2);
	assert_non_null(strstr(out, "NaN or Inf"));
	assert_null(strstr(out, "t/s"));
	free(out);
	/* the others run as with the plain model */
	assert_int_equal(tu_run(&out, "{ '%s' --tokens 3 -n 3 --temp 0 2>/dev/null; }", faulty), 0);
	assert_string_equal(out, "4 5 6\n");
	free(out);
}

/* Output that cannot be written (a full disk, a closed stdout) is an error, exit 2, in
 * every mode that prints. */
static void test_output_errors(void **state)
{
	(void)state;
	if (tu_run(NULL, "test -c /dev/full && ! echo x > /dev/full") != 0)
		skip(); /* no /dev/full on this host: the full-disk cases cannot run */
	const char *modes[] = {"--tokens 1,2 -n 3 --temp 0", "--tokens 1 -n 0", "--info",
			       "--help", "--version", "--bench --pp 4 --tg 4 --reps 1 --json",
			       "--bench --pp 4 --tg 4 --reps 1", "--verify"};
	for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
		char *out = NULL;
		int rc = tu_run(&out, "{ '%s' %s 2>&1 >/dev/full; }", prog, modes[i]);
		if (rc != 2 || !strstr(out, "cannot write to standard output: No space left"))
			fail_msg("%s > /dev/full: exit %d, stderr \"%s\"", modes[i], rc, out);
		free(out);
		rc = tu_run(&out, "{ '%s' %s 2>&1 >&-; }", prog, modes[i]);
		if (rc != 2 || !strstr(out, "standard output is closed"))
			fail_msg("%s >&-: exit %d, stderr \"%s\"", modes[i], rc, out);
		free(out);
	}
	/* a closed stdout must not become the --logits-out file (the first one opened) */
	const char *lpath = tu_tmp("test_main_closed.f32");
	char *out = NULL;
	remove(lpath);
	assert_int_equal(tu_run(&out, "{ '%s' --tokens 1 -n 2 --temp 0 --logits-out '%s' 2>&1 >&-; }",
				prog, lpath), 2);
	free(out);
	size_t n = 0;
	void *b = tu_read_file(lpath, &n);
	assert_true(!b || n % (NV * 4) == 0);
	free(b);
	/* --logits-out to a full disk */
	assert_int_equal(tu_run(&out, "{ '%s' --tokens 1,2,3 -n 2 --temp 0 --logits-out /dev/full "
				      "2>&1 >/dev/null; }", prog), 2);
	assert_non_null(strstr(out, "/dev/full"));
	free(out);
}

/* --verify reads every payload byte; a normal start checks only the trailer (lazy). */
static void test_verify(void **state)
{
	(void)state;
	char *out = NULL;
	assert_int_equal(tu_run(&out, "'%s' --verify", prog), 0);
	if (strncmp(out, "weights OK (0.0 MiB, ", 21) != 0 || !strstr(out, " GB/s)\n"))
		fail_msg("--verify: %s", out);
	free(out);
	assert_int_equal(tu_run(&out, "'%s' --weights-file '%s' --verify", bare, wfile), 0);
	assert_non_null(strstr(out, "weights OK"));
	free(out);
	/* one flipped bit in the appended payload, and in a weights file */
	size_t n;
	const char *bad = tu_tmp("fake_prog_flipped"), *badw = tu_tmp("fake_weights_flipped.bin");
	for (int k = 0; k < 2; k++) {
		uint8_t *b = tu_read_file(k ? wfile : prog, &n);
		assert_non_null(b);
		b[n - 32 - WBYTES + 4321] ^= 0x10;
		assert_int_equal(tu_write_file(k ? badw : bad, b, n), 0);
		free(b);
	}
	assert_int_equal(chmod(bad, 0755), 0);
	/* the start stays lazy: the damage goes unnoticed without --verify */
	assert_int_equal(tu_run(&out, "{ '%s' --tokens 3 -n 1 --temp 0 2>/dev/null; }", bad), 0);
	free(out);
	assert_int_equal(tu_run(&out, "'%s' --verify", bad), 2);
	if (!strstr(out, "fake_prog_flipped: the weights payload is damaged") ||
	    strstr(out, "weights OK"))
		fail_msg("--verify of a flipped byte: %s", out);
	free(out);
	assert_int_equal(tu_run(&out, "'%s' --weights-file '%s' --verify", bare, badw), 2);
	if (!strstr(out, "fake_weights_flipped.bin: the weights payload is damaged"))
		fail_msg("--verify of a flipped weights file: %s", out);
	free(out);
	/* the trailer of another model: refused before hashing */
	assert_int_equal(tu_run(&out, "'%s' --verify", bare), 2);
	assert_non_null(strstr(out, "no trailer"));
	free(out);
	assert_non_null(strstr((run_prog(&out, 1, "--help"), out), "--verify"));
	free(out);
}

/* A program built for a GPU that finds none exits 3 with the model's message and says
 * so in --info. */
static void test_device(void **state)
{
	(void)state;
	char *out = NULL;
	const char *nodrv = "BITNETC_LIBCUDA=/nonexistent/libcuda.so.1";
	int rc = tu_run(&out, "%s '%s' --tokens 1,2 -n 2 --temp 0", nodrv, device);
	if (rc != 3 || !strstr(out, "fake_prog_device: no CUDA driver: /nonexistent/libcuda.so.1"))
		tu_fail_log(out, "no driver: exit %d, want 3 and the driver's path", rc);
	free(out);
	/* --info probes the device but needs none */
	out = tu_run_ok(0, "%s '%s' --info", nodrv, device);
	tu_expect_has(out, "device:      none: no CUDA driver: /nonexistent/libcuda.so.1");
	tu_expect_has(out, "n_vocab:     16");
	free(out);
	out = tu_run_ok(0, "'%s' --help", device);
	tu_expect_has(out, "3 no usable GPU (no driver, no device, one older than\nthe program");
	free(out);
}

/* The same program with the fake driver of tests/simt: a device, or one too old. */
static void test_device_fake(void **state)
{
	(void)state;
#ifdef BN_FAKE_CUDA_PATH
	char *out = NULL;
	int rc;
	const char *fake = "BITNETC_LIBCUDA='" BN_FAKE_CUDA_PATH "'";
	out = tu_run_ok(0, "%s '%s' --info", fake, device);
	tu_expect_has(out, "device:      bitnetc SIMT emulator, compute capability 9.0");
	free(out);
	/* the device is there: the model runs (on the CPU, in this fake) */
	out = tu_run_ok(0, "{ %s '%s' --tokens 1,2 -n 2 --temp 0 2>/dev/null; }", fake, device);
	assert_string_equal(out, "3 4\n");
	free(out);
	rc = tu_run(&out, "%s BN_FAKE_CUDA_CC=75 '%s' --tokens 1 -n 1", fake, device);
	if (rc != 3 || !strstr(out, "compute capability 7.5, older than the program's"))
		tu_fail_log(out, "an sm_75 device: exit %d, want 3", rc);
	free(out);
#else
	fprintf(stderr, "skipped: a program finding its device (no fake CUDA driver in this "
			"build, the bn_fake_cuda target of tests/simt)\n");
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_info),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_logits_out),
		cmocka_unit_test(test_chunking),
		cmocka_unit_test(test_bench),
		cmocka_unit_test(test_moved_and_weights_file),
		cmocka_unit_test(test_stripped),
		cmocka_unit_test(test_bad_cli),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_output_errors),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_device),
		cmocka_unit_test(test_device_fake),
	};
	return cmocka_run_group_tests(tests, build_fake, NULL);
}
