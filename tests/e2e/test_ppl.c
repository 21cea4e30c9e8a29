/* test_ppl.c - the program's --perplexity on the tiny golden model: its PPL against the one
 * the interpreter's logits give and the one llama-perplexity printed, the KL divergence of the program against itself and of the
 * quantized-head pipeline against the default, base files of another run or damaged
 * refused with their reason, and the flags' errors. */
#include "testutil.h"
#include "frontend.h"
#include "rt_ppl.h"
#include "rt_tok.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char model[1200], prog[1200], text[1200];

static int setup(void **state)
{
	(void)state;
	snprintf(model, sizeof model, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("ppl_tiny"));
	snprintf(text, sizeof text, "%s", tu_data("ppl/declaration.txt"));
	char *log = NULL;
	int rc = tu_run(&log, "'%s' build '%s' -o '%s'", tu_bitnetc(), model, prog);
	if (rc)
		fprintf(stderr, "building the program failed:\n%s\n", log);
	free(log);
	return rc ? -1 : 0;
}

/* The number after "key": in the program's JSON; fails the test if it is missing. */
static double json_num(const char *out, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\": ", key);
	const char *at = strstr(out, pat);
	if (!at)
		fail_msg("no \"%s\" in: %s", key, out);
	return strtod(at + strlen(pat), NULL);
}

/* The text as llama-perplexity tokenizes it: one final newline dropped, BOS first,
 * special-token text kept as text (the frontend's tokenizer, not the program's). */
static int32_t *text_tokens(const char *path, int *n)
{
	size_t len;
	char *t = tu_read_file(path, &len);
	assert_non_null(t);
	if (len && t[len - 1] == '\n')
		len--;
	BnErr e = {0};
	RtErr re = {0};
	BnmTok tok = {0};
	GgufFile *f = gguf_open(model, &e);
	assert_non_null(f);
	assert_int_equal(bnm_tok_load_pre(f, NULL, &tok, &e), BN_OK);
	RtTok *rt = rt_tok_open(tok.blob, tok.size, &re);
	assert_non_null(rt);
	assert_true(rt_tok_add_bos(rt));
	int32_t *ids = NULL;
	assert_int_equal(rt_tok_encode(rt, t, len, RT_TOK_ADD_BOS, &ids, n, &re), RT_OK);
	rt_tok_free(rt);
	bnm_tok_free(&tok);
	gguf_close(f);
	free(t);
	return tu_hold(ids);
}

/* -log p of one row in long double: the definition, not rt_ppl's arithmetic */
static double nll_exact(const float *l, int nv, int tok)
{
	long double m = l[0], s = 0;
	for (int i = 1; i < nv; i++)
		m = l[i] > m ? l[i] : m;
	for (int i = 0; i < nv; i++)
		s += expl((long double)l[i] - m);
	return (double)(m + logl(s) - (long double)l[tok]);
}

/* The perplexity of n_chunk chunks of n_ctx from the interpreter's logits, each chunk fed
 * in calls of ub tokens as the program feeds it (the whole chunk when ub is larger); its
 * error as rt_ppl_final gives it. */
static double interp_ppl(const int32_t *ids, int n_ctx, int n_chunk, int ub, double *err)
{
	ub = ub < n_ctx ? ub : n_ctx;
	TuModel m;
	tu_model_open(&m, model);
	BnErr e = {0};
	IrInterp *it = ir_interp_new(m.g, n_ctx, &e);
	if (!it)
		fail_msg("%s", e.msg);
	ir_interp_set_threads(it, 2);
	float *lg = tu_hold(malloc((size_t)ub * (size_t)m.nv * sizeof(float)));
	int32_t *chunk = tu_hold(malloc((size_t)n_ctx * sizeof *chunk));
	assert_non_null(lg);
	assert_non_null(chunk);
	RtPplSum s = {0};
	int first = n_ctx / 2;
	for (int c = 0; c < n_chunk; c++) {
		const int32_t *t = ids + (size_t)c * (size_t)n_ctx;
		memcpy(chunk, t, (size_t)n_ctx * sizeof *chunk);
		chunk[0] = 496; /* BOS */
		ir_interp_reset(it);
		for (int off = 0; off < n_ctx; off += ub) {
			if (ir_interp_eval(it, chunk + off, ub, lg, &e))
				fail_msg("%s", e.msg);
			for (int r = 0; r < ub; r++) {
				int p = off + r;
				if (p >= first && p <= n_ctx - 2)
					rt_ppl_add(&s, nll_exact(lg + (size_t)r * (size_t)m.nv, m.nv,
								 t[p + 1]));
			}
		}
	}
	ir_interp_free(it);
	tu_free(lg);
	tu_free(chunk);
	tu_model_close(&m);
	assert_int_equal(s.count, n_chunk * (n_ctx - 1 - first));
	double ppl;
	assert_int_equal(rt_ppl_final(&s, &ppl, err), 0);
	return ppl;
}

static void expect_close(const char *what, double got, double want, double rel)
{
	if (!(fabs(got - want) <= rel * fabs(want)))
		fail_msg("%s: %.9g, want %.9g (within %g relative)", what, got, want, rel);
}

/* The program's PPL equals the interpreter's to 1e-3 relative, at -c 64 and 128, several
 * chunks, and with -ub 16; the progress line and the final estimate are llama-perplexity's. */
static void test_vs_interpreter(void **state)
{
	(void)state;
	int n = 0;
	int32_t *ids = text_tokens(text, &n);
	static const struct {
		int n_ctx, chunks, ub;
	} runs[] = {{64, 5, 64}, {128, 3, 128}, {64, 3, 16}, {16, 11, 128}};
	for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
		int c = runs[k].n_ctx, ch = runs[k].chunks, ub = runs[k].ub;
		assert_true(n >= c * ch);
		char *out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c %d --chunks %d -t 2 -ub %d --json",
				      prog, text, c, ch, ub);
		double err, want = interp_ppl(ids, c, ch, ub, &err);
		char what[64];
		snprintf(what, sizeof what, "-c %d --chunks %d -ub %d: ppl", c, ch, ub);
		expect_close(what, json_num(out, "ppl"), want, 1e-3);
		expect_close("ppl_err", json_num(out, "ppl_err"), err, 1e-2);
		assert_int_equal((int)json_num(out, "chunks"), ch);
		assert_int_equal((int)json_num(out, "n_ctx"), c);
		assert_int_equal((int)json_num(out, "tokens"), ch * (c - 1 - c / 2));
		tu_expect_has(out, "[1]");
		char last[16];
		snprintf(last, sizeof last, ",[%d]", ch);
		tu_expect_has(out, last);
		tu_expect_has(out, "Final estimate: PPL = ");
		free(out);
	}
	/* without --json the estimate goes to stdout, the progress to stderr */
	char *out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c 64 --chunks 2 -t 2 2>/dev/null", prog,
			      text);
	if (strncmp(out, "Final estimate: PPL = ", 22) || strchr(out, '['))
		fail_msg("stdout: %s", out);
	free(out);
	/* all the chunks the text holds by default (--chunks -1 as llama-perplexity) */
	out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c 256 --chunks -1 -t 2 --json", prog, text);
	assert_int_equal((int)json_num(out, "chunks"), n / 256);
	free(out);
}

/* Small -c: as many chunks side by side as fill a forward call (one sequence each), which
 * changes no logit: the figures equal those of one chunk at a time (-ub = -c), also when
 * the last group is short (7 chunks of 32 in groups of 4). */
static void test_chunks_side_by_side(void **state)
{
	(void)state;
	static const struct {
		int n_ctx, chunks;
		const char *at_a_time;
	} runs[] = {{16, 20, "8 chunks at a time"}, {32, 7, "4 chunks at a time"}};
	for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
		int c = runs[k].n_ctx, ch = runs[k].chunks;
		char *packed = tu_run_ok(0, "'%s' --perplexity -f '%s' -c %d --chunks %d -t 2 -ub 128 "
					    "--json 2>&1",
					 prog, text, c, ch);
		char *alone = tu_run_ok(0, "'%s' --perplexity -f '%s' -c %d --chunks %d -t 2 -ub %d "
					   "--json 2>&1",
					prog, text, c, ch, c);
		tu_expect_has(packed, runs[k].at_a_time);
		tu_expect_has(alone, "1 chunk at a time");
		assert_true(json_num(packed, "ppl") == json_num(alone, "ppl"));
		assert_true(json_num(packed, "ppl_err") == json_num(alone, "ppl_err"));
		assert_int_equal((int)json_num(packed, "chunks"), ch);
		/* the progress line names every chunk, in order */
		char last[16];
		snprintf(last, sizeof last, ",[%d]", ch);
		tu_expect_has(packed, last);
		free(packed);
		free(alone);
	}
}

/* The program's PPL equals llama-perplexity's (tests/data/ppl/reference.json: bitnet.cpp on
 * the same model and text) to 3 significant digits, its error to 1%. */
static void test_vs_reference(void **state)
{
	(void)state;
	size_t n;
	char *raw = tu_read_file(tu_data("ppl/reference.json"), &n);
	assert_non_null(raw);
	char *json = tu_hold(realloc(raw, n + 1)); /* NUL-terminated */
	assert_non_null(json);
	json[n] = 0;
	int runs = 0;
	for (const char *at = strstr(json, "\"runs\""); (at = strstr(at, "{\"n_ctx\": ")); at++) {
		int c = (int)json_num(at, "n_ctx"), ch = (int)json_num(at, "chunks");
		double want = json_num(at, "ppl"), want_err = json_num(at, "ppl_err");
		char *out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c %d --chunks %d -t 2 --json",
				      prog, text, c, ch);
		double got = json_num(out, "ppl");
		/* half a unit of the third significant digit */
		double tol = 0.5 * pow(10, floor(log10(fabs(want))) - 2);
		if (!(fabs(got - want) <= tol))
			fail_msg("-c %d --chunks %d: PPL %.4f, llama-perplexity %.4f (to 3 digits)", c,
				 ch, got, want);
		expect_close("ppl_err vs llama-perplexity", json_num(out, "ppl_err"), want_err, 1e-2);
		assert_int_equal((int)json_num(out, "chunks"), ch);
		free(out);
		runs++;
	}
	assert_int_equal(runs, 4);
}

/* Writes a base file of the default program: -c 64, 4 chunks. */
static const char *make_base(const char *name)
{
	const char *base = tu_tmp(name);
	unlink(base);
	char *out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c 64 --chunks 4 -t 2 --kl-base '%s' "
				 "--json",
			      prog, text, base);
	tu_expect_has(out, "\"kl_base\"");
	free(out);
	struct stat st;
	assert_int_equal(stat(base, &st), 0);
	assert_int_equal((uint64_t)st.st_size, rt_ppl_base_size(64, 512, 4));
	return base;
}

/* The program against itself: KLD 0 and the same top token everywhere; the quantized-head
 * pipeline against the default: a small positive KLD. */
static void test_kld(void **state)
{
	(void)state;
	char base[1100];
	snprintf(base, sizeof base, "%s", make_base("ppl_base64.bin"));
	char *out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c 64 --chunks 4 -t 2 --kl-base '%s' "
				 "--kl-divergence --json",
			      prog, text, base);
	assert_true(fabs(json_num(out, "kld")) < 1e-5);
	assert_true(json_num(out, "kld_max") < 1e-4);
	expect_close("same_top_pct", json_num(out, "same_top_pct"), 100, 1e-9);
	assert_true(json_num(out, "max_dp_pct") < 1e-3);
	expect_close("ppl vs ppl_base", json_num(out, "ppl"), json_num(out, "ppl_base"), 1e-5);
	assert_int_equal((int)json_num(out, "tokens"), 4 * 31);
	free(out);
	/* the report as llama-perplexity prints it */
	out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c 64 --chunks 4 -t 2 --kl-divergence-base "
			   "'%s' --kl-divergence",
			prog, text, base);
	tu_expect_has(out, "Mean    KLD:");
	tu_expect_has(out, "Same top p: 100.000");
	tu_expect_has(out, "RMS Δp");
	free(out);

	const char *qh = tu_tmp("ppl_tiny_qh");
	free(tu_run_ok(0, "'%s' build '%s' -o '%s' --pipeline '%s'", tu_bitnetc(), model, qh,
		       tu_data("../../examples/pipelines/quantized_head.lua")));
	out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c 64 --chunks 4 -t 2 --kl-base '%s' "
			   "--kl-divergence --json",
			qh, text, base);
	double kld = json_num(out, "kld");
	if (!(kld > 1e-4 && kld < 0.05))
		fail_msg("quantized head: KLD %g, want small and positive: %s", kld, out);
	assert_true(json_num(out, "kld_err") < kld);
	assert_true(json_num(out, "same_top_pct") > 50);
	expect_close("ppl_base", json_num(out, "ppl_base"),
		     json_num(tu_hold(tu_run_ok(0, "'%s' --perplexity -f '%s' -c 64 --chunks 4 -t 2 "
						   "--json",
						prog, text)),
			      "ppl"),
		     1e-5);
	free(out);
}

/* path's bytes: cut to len (len >= 0), with n bytes at off replaced; written to name */
static const char *variant(const char *path, const char *name, size_t off, const void *b,
			   size_t n, long len)
{
	size_t size;
	uint8_t *x = tu_read_file(path, &size);
	assert_non_null(x);
	if (b)
		memcpy(x + off, b, n);
	const char *out = tu_tmp(name);
	assert_int_equal(tu_write_file(out, x, len >= 0 ? (size_t)len : size), 0);
	free(x);
	return out;
}

/* run: --kl-divergence against base, expecting exit want and frag in the output */
static void expect_kld(int want, const char *base, const char *extra, const char *frag)
{
	char *out = tu_run_ok(want, "'%s' --perplexity -f '%s' -t 2 --kl-base '%s' --kl-divergence %s",
			      prog, text, base, extra);
	tu_expect_has(out, frag);
	free(out);
}

/* A base file of another text, context, vocabulary or chunk count is refused (exit 1), a
 * damaged one too (exit 2), each naming the file and the reason, before anything runs. */
static void test_kld_refused(void **state)
{
	(void)state;
	char base[1100];
	snprintf(base, sizeof base, "%s", make_base("ppl_base64b.bin"));
	/* another text */
	char other[4000] = "";
	for (int i = 0; i < 60; i++)
		strcat(other, "The quick brown fox jumps over the lazy dog. ");
	const char *ot = tu_tmp_text("ppl_other.txt", other);
	char *out = tu_run_ok(1, "'%s' --perplexity -f '%s' -c 64 -t 2 --kl-base '%s' "
				 "--kl-divergence",
			      prog, ot, base);
	tu_expect_has(out, "made from another text");
	free(out);
	/* another context, another chunk count */
	expect_kld(1, base, "-c 128", "made with a context of 64 tokens; this run has -c 128: give -c 64");
	expect_kld(1, base, "", "give -c 64");
	expect_kld(1, base, "-c 64 --chunks 3", "holds 4 chunks");
	expect_kld(0, base, "-c 64 --chunks 4", "Mean    KLD:");
	expect_kld(0, base, "-c 64", "Mean    KLD:"); /* the file's chunks */
	/* another model: a vocabulary of 1024 (a file of the right size for it) */
	size_t size;
	uint8_t *b = tu_read_file(base, &size);
	assert_non_null(b);
	uint64_t big = rt_ppl_base_size(64, 1024, 4);
	uint8_t *v = tu_hold(calloc(1, big));
	memcpy(v, b, 20 + 4 * 64 * 4);
	v[12] = 0x00;
	v[13] = 0x04;
	const char *vocab = tu_tmp("ppl_vocab1024.bin");
	assert_int_equal(tu_write_file(vocab, v, big), 0);
	tu_free(v);
	free(b);
	expect_kld(1, vocab, "-c 64", "was made by a model of 1024 tokens (n_vocab); this model has 512");
	/* damaged */
	expect_kld(2, variant(base, "ppl_cut.bin", 0, NULL, 0, (long)size - 100), "-c 64",
		   "truncated or damaged");
	expect_kld(2, variant(base, "ppl_hdr.bin", 0, NULL, 0, 12), "-c 64", "too short");
	expect_kld(2, text, "-c 64", "does not look like a file of log-probabilities");
	int32_t neg = -1;
	expect_kld(2, variant(base, "ppl_neg.bin", 16, &neg, 4, -1), "-c 64", "damaged header");
	float nan = NAN;
	expect_kld(2, variant(base, "ppl_nan.bin", 20 + 4 * 64 * 4 + 516 * 2 * 40, &nan, 4, -1),
		   "-c 64", "row 40 (chunk 2) is damaged");
	expect_kld(1, tu_tmp("ppl_missing.bin"), "-c 64", "cannot read");
	expect_kld(1, "/dev/null", "-c 64", "not a regular file");
}

/* --kl-base does not overwrite the text, the program or a non-file; a failed run leaves
 * no file behind. */
static void test_kl_base_write(void **state)
{
	(void)state;
	const char *copy = tu_tmp("ppl_text_copy.txt");
	size_t n0;
	void *orig = tu_read_file(text, &n0);
	assert_non_null(orig);
	assert_int_equal(tu_write_file(copy, orig, n0), 0);
	char *out = tu_run_ok(1, "'%s' --perplexity -f '%s' -c 64 --chunks 2 --kl-base '%s'", prog,
			      copy, copy);
	tu_expect_has(out, "is the text of -f");
	free(out);
	size_t n1;
	void *now = tu_read_file(copy, &n1);
	assert_int_equal(n0, n1);
	assert_memory_equal(orig, now, n0);
	free(now);
	free(orig);
	out = tu_run_ok(1, "'%s' --perplexity -f '%s' -c 64 --chunks 2 --kl-base '%s'", prog, text,
			prog);
	tu_expect_has(out, "is this program");
	free(out);
	const char *dir = tu_tmp("ppl_dir");
	mkdir(dir, 0755);
	out = tu_run_ok(1, "'%s' --perplexity -f '%s' -c 64 --chunks 2 --kl-base '%s'", prog, text,
			dir);
	tu_expect_has(out, "is not a regular file");
	free(out);
	out = tu_run_ok(1, "'%s' --perplexity -f '%s' -c 64 --chunks 2 --kl-base /dev/null", prog,
			text);
	tu_expect_has(out, "is not a regular file");
	free(out);
	/* a text too short: nothing written */
	const char *base = tu_tmp("ppl_none.bin");
	unlink(base);
	out = tu_run_ok(1, "'%s' --perplexity -f '%s' -c 2048 --kl-base '%s'", prog, text, base);
	tu_expect_has(out, "needs at least 4096");
	free(out);
	assert_int_not_equal(access(base, F_OK), 0);
}

/* The flags' errors (exit 1), each naming what is wrong. */
static void test_flags(void **state)
{
	(void)state;
	static const struct {
		const char *args, *frag;
	} bad[] = {
		{"--perplexity", "--perplexity needs a text: -f FILE"},
		{"--perplexity -f T --chunks 0", "--chunks 0: nothing to evaluate"},
		{"--perplexity -f T --chunks -2", "--chunks: -2 is out of range"},
		{"--perplexity -f T --chunks x", "--chunks: \"x\" is not an integer"},
		{"--perplexity -f T -c 8", "-c 8 is too small for --perplexity: at least 16"},
		{"--perplexity -f T --kl-divergence", "--kl-divergence compares with a base file"},
		{"--perplexity -f T --kl-base ''", "--kl-base: empty file name"},
		{"-f T --kl-base B", "--kl-base goes with --perplexity"},
		{"-f T --kl-divergence", "--kl-divergence goes with --perplexity"},
		{"-f T --chunks 3", "--chunks goes with --perplexity"},
		{"--perplexity --tokens 1,2", "--perplexity reads its text from -f FILE: not with --tokens"},
		{"--perplexity -f T --bench", "not with --bench"},
		{"--perplexity -f T --logits-out L", "not with --logits-out"},
		{"--perplexity -f T -i", "not with -i"},
		{"--perplexity -f /nonexistent/text.txt", "-f /nonexistent/text.txt: cannot read"},
		{"--perplexity -f T -c 2048", "the text is"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char args[512] = "", *w = args;
		for (const char *a = bad[i].args; *a; a++) {
			if (*a == 'T' && (a == bad[i].args || a[-1] == ' ') && (!a[1] || a[1] == ' '))
				w += sprintf(w, "'%s'", text);
			else
				*w++ = *a;
		}
		*w = 0;
		char *out = tu_run_ok(1, "'%s' %s", prog, args);
		if (!strstr(out, bad[i].frag))
			fail_msg("%s: want \"%s\" in: %s", bad[i].args, bad[i].frag, out);
		free(out);
	}
	/* a text shorter than two contexts, as llama-perplexity: exit 1 with both counts */
	const char *shortt = tu_tmp_text("ppl_short.txt", "Too short a text.\n");
	char *out = tu_run_ok(1, "'%s' --perplexity -f '%s' -c 16", prog, shortt);
	tu_expect_has(out, "needs at least 32 (2 x -c");
	free(out);
	/* -c past the model's training context (512): a warning, as for generation */
	out = tu_run_ok(0, "'%s' --perplexity -f '%s' -c 1024 --chunks 1 -t 2", prog, text);
	tu_expect_has(out, "warning: -c 1024 is beyond the model's training context 512");
	tu_expect_has(out, "Final estimate: PPL = ");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_vs_interpreter, tu_teardown),
		cmocka_unit_test_teardown(test_chunks_side_by_side, tu_teardown),
		cmocka_unit_test_teardown(test_vs_reference, tu_teardown),
		cmocka_unit_test_teardown(test_kld, tu_teardown),
		cmocka_unit_test_teardown(test_kld_refused, tu_teardown),
		cmocka_unit_test_teardown(test_kl_base_write, tu_teardown),
		cmocka_unit_test_teardown(test_flags, tu_teardown),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
