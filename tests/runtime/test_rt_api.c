/* test_rt_api.c - the runtime API (bitnetc.h) in this process, on the hand-written model of
 * fake_model.c (linked in; see its header for its logits): opening, metadata, contexts,
 * the call split, decoding and its errors, contexts in two threads at once, trimming,
 * cancelling from another thread, bn_generate (the fake continues t+1 greedily; 15 is its
 * EOS) and the text stream under it (rt_generate.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bitnetc.h"
#include "rt_session.h"
#include "rt_tok.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NV 16
#define WBYTES 5000

static char wpath[1024];

/* The fake's payload as a weights file: the bytes, then the trailer with hash 0 (what
 * fake_model.c expects without FAKE_HASH), which is not the bytes' real hash. */
static int write_weights(void **state)
{
	(void)state;
	const char *tmp = getenv("BN_TMP");
	snprintf(wpath, sizeof wpath, "%s/test_rt_api.weights", tmp && *tmp ? tmp : "/tmp");
	FILE *f = fopen(wpath, "wb");
	if (!f)
		return -1;
	for (int i = 0; i < WBYTES; i++)
		fputc((i * 31 + 7) & 255, f);
	unsigned char t[32] = "BNWEIGHT";
	uint64_t fields[3] = {0, WBYTES, 0};
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 8; i++)
			t[8 + 8 * k + i] = (unsigned char)(fields[k] >> (8 * i));
	fwrite(t, 1, sizeof t, f);
	return fclose(f);
}

static bn_model *open_model(void)
{
	char err[512];
	bn_model *m = bn_model_open(wpath, err, sizeof err);
	if (!m)
		fail_msg("bn_model_open: %s", err);
	return m;
}

static void test_open(void **state)
{
	(void)state;
	char err[512];
	assert_int_equal(bn_model_check(err, sizeof err), BN_OK);
	/* the linked model's description, nothing opened */
	assert_string_equal(bn_model_meta(NULL, "name"), "fake-16");
	assert_null(bn_model_meta(NULL, "no-such-key"));
	assert_int_equal(bn_model_n_vocab(NULL), NV);
	assert_int_equal(bn_model_n_ctx_train(NULL), 64);
	assert_int_equal(bn_model_meta_int(NULL, "max_batch"), 4);
	assert_int_equal(bn_model_meta_int(NULL, "eos"), 15);
	assert_int_equal(bn_model_meta_int(NULL, "no-such-key"), -1);
	int32_t sizes[8];
	assert_int_equal(bn_model_batch_sizes(NULL, sizes, 8), 3);
	assert_int_equal(sizes[2], 4);
	assert_int_equal(bn_model_kv_bytes(NULL, 10), 160);
	assert_int_equal(bn_model_default_ctx(NULL), 64);
	/* a missing file */
	int code = 0;
	assert_null(bn_model_open_ex("/nonexistent/w.bin", NULL, 0, &code, err, sizeof err));
	assert_int_equal(code, BN_E_WEIGHTS);
	assert_non_null(strstr(err, "/nonexistent/w.bin: cannot open weights"));
	/* the trailer's hash matches, the bytes do not: only bn_model_verify reads them */
	bn_model *m = open_model();
	assert_int_equal(bn_model_meta_int(m, "weights_embedded"), 0);
	assert_string_equal(bn_model_meta(m, "weights_path"), wpath);
	assert_int_equal(bn_model_verify(m, err, sizeof err), BN_E_WEIGHTS);
	assert_non_null(strstr(err, "the weights payload is damaged"));
	/* no tokenizer */
	int32_t ids[4];
	assert_int_equal(bn_model_tokenizer_status(m, NULL, 0), BN_E_NO_TOKENIZER);
	assert_int_equal(bn_tokenize(m, "hi", ids, 4, 1), BN_E_NO_TOKENIZER);
	assert_true(bn_token_is_eog(m, 15));
	assert_false(bn_token_is_eog(m, 14));
	assert_int_equal(bn_token_bos(m), 0);
	assert_null(bn_chat_template_name(m, "no-such"));
	assert_string_equal(bn_chat_template_name(m, NULL), "none");
	assert_string_equal(bn_chat_template_name(NULL, "llama-3"), "llama3");
	bn_model_close(m);
	/* opened for inspection: no contexts */
	m = bn_model_open_ex(wpath, NULL, BN_OPEN_INSPECT, &code, err, sizeof err);
	assert_non_null(m);
	assert_null(bn_ctx_new_ex(m, 8, 1, &code, err, sizeof err));
	assert_int_equal(code, BN_E_ARG);
	bn_model_close(m);
	for (int c = BN_E_DEVICE; c < BN_OK; c++)
		assert_string_not_equal(bn_strerror(c), bn_strerror(c + 1));
}

typedef struct {
	int calls;
	uint64_t last, total;
} Seen;

static void seen_progress(void *user, uint64_t done, uint64_t total)
{
	Seen *s = user;
	s->calls++;
	s->last = done;
	s->total = total;
}

/* The weights copied by default (the progress callback up to the total) or mapped with
 * BN_OPEN_MMAP (no copy, no callback); how they are held in the metadata. */
static void test_open_held(void **state)
{
	(void)state;
	char err[512];
	int code = -99;
	Seen seen = {0};
	bn_model *m = bn_model_open_progress(wpath, NULL, 0, seen_progress, &seen, &code, err,
					     sizeof err);
	if (!m)
		fail_msg("%s", err);
	assert_int_equal(code, BN_OK);
	assert_true(seen.calls >= 1);
	assert_int_equal(seen.last, WBYTES);
	assert_int_equal(seen.total, WBYTES);
	assert_int_equal(bn_model_meta_int(m, "weights_copied"), 1);
	assert_true(bn_model_meta_int(m, "weights_held_bytes") >= WBYTES);
	assert_non_null(strstr(bn_model_meta(m, "weights_held"), "copied into"));
	assert_non_null(bn_model_meta(m, "thp"));
	bn_model_close(m);
	seen = (Seen){0};
	m = bn_model_open_progress(wpath, NULL, BN_OPEN_MMAP, seen_progress, &seen, &code, err,
				   sizeof err);
	assert_non_null(m);
	assert_int_equal(seen.calls, 0);
	assert_int_equal(bn_model_meta_int(m, "weights_copied"), 0);
	assert_non_null(strstr(bn_model_meta(m, "weights_held"), "mapped lazily from"));
	assert_int_equal(bn_model_meta_int(NULL, "weights_copied"), -1);
	bn_model_close(m);
}

/* What rt_progress_line writes to stderr for these calls (from a start secs ago). */
static char *progress_text(int tty, double secs, const uint64_t *done, int n)
{
	char path[] = "/tmp/test_rt_api_progress_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	assert_true(saved >= 0);
	dup2(fd, 2);
	RtProgress p = {.t0 = rt_now() - secs, .tty = tty};
	for (int i = 0; i < n; i++)
		rt_progress_line(&p, done[i], 100u << 20);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	static char buf[1024];
	ssize_t k = pread(fd, buf, sizeof buf - 1, 0);
	buf[k > 0 ? k : 0] = 0;
	close(fd);
	unlink(path);
	return buf;
}

/* The program's progress line: nothing in the first second; past it one line rewritten in
 * place on a terminal, one line at the end elsewhere. */
static void test_progress_line(void **state)
{
	(void)state;
	const uint64_t steps[] = {50u << 20, 100u << 20};
	assert_string_equal(progress_text(0, 0, steps, 2), "");
	assert_string_equal(progress_text(1, 0, steps, 2), "");
	char *s = progress_text(0, 2.0, steps, 1);
	assert_string_equal(s, "");
	s = progress_text(0, 2.0, steps, 2);
	if (!strstr(s, "loaded the weights: 100 MiB in 2.") || strchr(s, '\r') ||
	    strchr(s, '\n') != s + strlen(s) - 1)
		fail_msg("not a terminal: \"%s\"", s);
	s = progress_text(1, 2.0, steps, 2);
	if (s[0] != '\r' || !strstr(s, "loading the weights:  50% (50 of 100 MiB") ||
	    !strstr(s, "100% (100 of 100 MiB") || s[strlen(s) - 1] != '\n')
		fail_msg("a terminal: \"%s\"", s);
}

/* The row the fake writes for token t in a call of size call after token prev. */
static void check_row(const float *row, int t, int call, int prev)
{
	assert_true(row[(t + 1) % NV] == 10.0f);
	if (row[(t + 2) % NV] != (float)call)
		fail_msg("token %d: call size %g, want %d", t, row[(t + 2) % NV], call);
	assert_true(row[(t + 3) % NV] == 0.01f * (float)(prev + 1));
}

static void test_decode(void **state)
{
	(void)state;
	bn_model *m = open_model();
	char err[512];
	bn_ctx *c = bn_ctx_new(m, 16, 2, err, sizeof err);
	assert_non_null(c);
	assert_int_equal(bn_ctx_n_ctx(c), 16);
	assert_int_equal(bn_ctx_n_threads(c), 2);
	assert_int_equal(bn_ctx_ubatch(c), 4);
	/* the split: largest first, a rest below 4 in one call, never a last call of one */
	assert_int_equal(bn_decode_split(c, 9), 4);
	assert_int_equal(bn_decode_split(c, 5), 3);
	assert_int_equal(bn_decode_split(c, 3), 3);
	assert_int_equal(bn_decode_split(c, 1), 1);
	int32_t toks[16];
	for (int i = 0; i < 16; i++)
		toks[i] = (i * 5 + 1) % 15;
	float rows[9 * NV], last[NV];
	assert_int_equal(bn_decode(c, toks, 9, rows), BN_OK);
	assert_int_equal(bn_ctx_pos(c), 9);
	const int calls[9] = {4, 4, 4, 4, 3, 3, 3, 2, 2};
	for (int i = 0; i < 9; i++)
		check_row(rows + i * NV, toks[i], calls[i], i ? toks[i - 1] : -1);
	/* the last row alone: the same bits; appended after what is in the cache */
	bn_ctx_reset(c);
	assert_int_equal(bn_decode_ex(c, toks, 9, last, BN_DECODE_LAST), BN_OK);
	assert_memory_equal(last, rows + 8 * NV, sizeof last);
	assert_int_equal(bn_decode_ex(c, toks + 9, 1, last, BN_DECODE_LAST), BN_OK);
	check_row(last, toks[9], 1, toks[8]);
	assert_int_equal(bn_ctx_pos(c), 10);
	/* one call as given (the program's --logits-out path) */
	assert_int_equal(bn_decode_ex(c, toks + 10, 3, rows, BN_DECODE_ONE_CALL), BN_OK);
	check_row(rows + 2 * NV, toks[12], 3, toks[11]);
	assert_int_equal(bn_decode_ex(c, toks, 5, rows, BN_DECODE_ONE_CALL), BN_E_ARG);
	/* errors leave the context as it was */
	assert_int_equal(bn_decode(c, toks, 4, NULL), BN_E_CTX);
	assert_non_null(strstr(bn_ctx_last_error(c), "full"));
	int32_t bad[2] = {3, NV};
	assert_int_equal(bn_decode(c, bad, 2, NULL), BN_E_TOKEN);
	assert_non_null(strstr(bn_ctx_last_error(c), "token 16 (index 1) is out of range"));
	assert_int_equal(bn_decode(c, toks, 0, NULL), BN_E_ARG);
	assert_int_equal(bn_ctx_pos(c), 13);
	assert_int_equal(bn_ctx_nonfinite(c, NULL, NULL, NULL), BN_E_ARG);
	/* -ub 2 */
	assert_int_equal(bn_ctx_set_ubatch(c, 2), BN_OK);
	bn_ctx_reset(c);
	assert_int_equal(bn_decode(c, toks, 5, rows), BN_OK);
	const int calls2[5] = {2, 2, 1, 2, 2}; /* 5: 2, then 3 = 1 + 2 (the cap allows no 3) */
	for (int i = 0; i < 5; i++)
		check_row(rows + i * NV, toks[i], calls2[i], i ? toks[i - 1] : -1);
	assert_null(bn_ctx_new(m, -1, 1, err, sizeof err));
	bn_ctx_free(c);
	bn_model_close(m);
}

typedef struct {
	bn_ctx *c;
	float rows[12 * NV];
	int rc;
} Job;

static void *job(void *arg)
{
	Job *j = arg;
	int32_t toks[12];
	for (int i = 0; i < 12; i++)
		toks[i] = (i * 7 + 2) % 15;
	for (int rep = 0; rep < 50 && !j->rc; rep++) {
		bn_ctx_reset(j->c);
		j->rc = bn_decode(j->c, toks, 12, j->rows);
	}
	return NULL;
}

/* One model, two contexts decoding in two threads at once. */
static void test_threads(void **state)
{
	(void)state;
	bn_model *m = open_model();
	static Job jobs[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		jobs[i].c = bn_ctx_new(m, 32, 2 + i, NULL, 0);
		assert_non_null(jobs[i].c);
		jobs[i].rc = 0;
		assert_int_equal(pthread_create(&th[i], NULL, job, &jobs[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(jobs[0].rc, BN_OK);
	assert_int_equal(jobs[1].rc, BN_OK);
	assert_memory_equal(jobs[0].rows, jobs[1].rows, sizeof jobs[0].rows);
	for (int i = 0; i < 2; i++)
		bn_ctx_free(jobs[i].c);
	bn_model_close(m);
}

/* Trim: A+B then back to |A| and C gives A+C's rows, which read the token before them
 * from the cache. */
static void test_trim(void **state)
{
	(void)state;
	bn_model *m = open_model();
	bn_ctx *c = bn_ctx_new(m, 32, 1, NULL, 0);
	assert_non_null(c);
	int32_t a[3] = {1, 2, 3}, b[4] = {9, 9, 9, 9}, cc[2] = {5, 6};
	float want[2 * NV], got[2 * NV];
	assert_int_equal(bn_decode(c, a, 3, NULL), BN_OK);
	assert_int_equal(bn_decode(c, cc, 2, want), BN_OK);
	bn_ctx_reset(c);
	assert_int_equal(bn_decode(c, a, 3, NULL), BN_OK);
	assert_int_equal(bn_decode(c, b, 4, NULL), BN_OK);
	assert_int_equal(bn_ctx_trim(c, 8), BN_E_ARG);
	assert_int_equal(bn_ctx_trim(c, -1), BN_E_ARG);
	assert_int_equal(bn_ctx_pos(c), 7);
	assert_int_equal(bn_ctx_trim(c, 3), BN_OK);
	assert_int_equal(bn_ctx_pos(c), 3);
	assert_int_equal(bn_decode(c, cc, 2, got), BN_OK);
	assert_memory_equal(got, want, sizeof got);
	check_row(got, 5, 2, 3);
	assert_int_equal(bn_ctx_trim(c, 0), BN_OK);
	assert_int_equal(bn_ctx_pos(c), 0);
	bn_ctx_free(c);
	bn_model_close(m);
}

/* The long decode a second thread cancels. */
typedef struct {
	bn_ctx *c;
	const int32_t *toks;
	int32_t n;
	float *last;
	atomic_int started;
	int rc;
} Long;

static void *long_decode(void *arg)
{
	Long *l = arg;
	atomic_store(&l->started, 1);
	l->rc = bn_decode_ex(l->c, l->toks, l->n, l->last, BN_DECODE_LAST);
	return NULL;
}

/* bn_ctx_cancel from another thread: a long decode (2000 calls of one token) stops between
 * two calls with what it decoded in the cache, or had finished first; either way the
 * cache goes on to give the uncancelled run's bits. A request before a decode stops it
 * at once; a withdrawn one does nothing. */
static void test_cancel(void **state)
{
	(void)state;
	bn_model *m = open_model();
	enum { N = 2000 };
	static int32_t toks[N];
	for (int i = 0; i < N; i++)
		toks[i] = (i * 7 + 3) % 15;
	bn_ctx *c = bn_ctx_new(m, N, 1, NULL, 0);
	assert_non_null(c);
	bn_ctx_set_ubatch(c, 1);
	float want[NV], got[NV];
	assert_int_equal(bn_decode_ex(c, toks, N, want, BN_DECODE_LAST), BN_OK);
	int cancelled = 0;
	for (int rep = 0; rep < 5; rep++) {
		bn_ctx_reset(c);
		static Long l;
		l = (Long){c, toks, N, got, 0, 0};
		atomic_init(&l.started, 0);
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, long_decode, &l), 0);
		while (!atomic_load(&l.started))
			;
		bn_ctx_cancel(c, 1);
		pthread_join(th, NULL);
		int32_t pos = bn_ctx_pos(c);
		if (l.rc == BN_OK) {
			assert_int_equal(pos, N);
			bn_ctx_cancel(c, 0); /* it came too late: withdrawn */
			continue;
		}
		assert_int_equal(l.rc, BN_E_CANCELLED);
		assert_non_null(strstr(bn_ctx_last_error(c), "cancelled"));
		assert_true(pos >= 0 && pos < N);
		cancelled++;
		/* the request was withdrawn by the call that saw it: the rest decodes */
		assert_int_equal(bn_decode_ex(c, toks + pos, N - pos, got, BN_DECODE_LAST), BN_OK);
		assert_memory_equal(got, want, sizeof got);
	}
	print_message("%d of 5 long decodes stopped between calls\n", cancelled);
	bn_ctx_reset(c);
	bn_ctx_cancel(c, 1);
	assert_int_equal(bn_decode(c, toks, 4, NULL), BN_E_CANCELLED);
	assert_int_equal(bn_ctx_pos(c), 0);
	assert_int_equal(bn_decode(c, toks, 4, NULL), BN_OK);
	bn_ctx_cancel(c, 1);
	bn_ctx_cancel(c, 0);
	assert_int_equal(bn_decode(c, toks + 4, 4, NULL), BN_OK);
	assert_int_equal(bn_ctx_pos(c), 8);
	assert_string_equal(bn_strerror(BN_E_CANCELLED), "cancelled");
	bn_ctx_free(c);
	bn_model_close(m);
}

typedef struct {
	int32_t ids[64];
	int n, stop_at;
	int rows;
	/* the handshake with the cancelling thread */
	bn_ctx *c;
	int cancel_at;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int asked, done;
} Gen;

static int on_token(void *user, int32_t tok)
{
	Gen *g = user;
	g->ids[g->n++] = tok;
	if (g->n == g->cancel_at) { /* the other thread cancels; wait until it has */
		pthread_mutex_lock(&g->mu);
		g->asked = 1;
		pthread_cond_broadcast(&g->cv);
		while (!g->done)
			pthread_cond_wait(&g->cv, &g->mu);
		pthread_mutex_unlock(&g->mu);
	}
	return g->n == g->stop_at;
}

static int on_logits(void *user, const float *rows, int32_t n)
{
	Gen *g = user;
	(void)rows;
	g->rows += n;
	return 0;
}

static void *canceller(void *arg)
{
	Gen *g = arg;
	pthread_mutex_lock(&g->mu);
	while (!g->asked)
		pthread_cond_wait(&g->cv, &g->mu);
	bn_ctx_cancel(g->c, 1);
	g->done = 1;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	return NULL;
}

static int gen(bn_ctx *c, bn_sampler *s, const int32_t *prompt, int32_t n, int max, int flags,
	       Gen *g, bn_generate_result *r)
{
	bn_generate_params p = bn_generate_defaults();
	p.max_tokens = max;
	p.flags = flags;
	p.on_token = on_token;
	p.on_logits = on_logits;
	p.user = g;
	g->n = g->rows = 0;
	return bn_generate(c, s, prompt, n, &p, r);
}

/* bn_sampler_params' presence and frequency penalties reach the sampler: the fake's best
 * next token (t + 1, logit 10) is in the window, and 20 off its logit lets the second best
 * (t + 2, the call size) win. */
static void test_sampler_penalties(void **state)
{
	(void)state;
	bn_model *m = open_model();
	bn_ctx *c = bn_ctx_new(m, 32, 1, NULL, 0);
	static Gen g;
	bn_generate_result r;
	int32_t prompt[3] = {3, 4, 3};
	for (int k = 0; k < 3; k++) {
		bn_sampler_params sp = bn_sampler_defaults();
		sp.temp = 0;
		sp.presence_penalty = k == 1 ? 20.0f : 0.0f;
		sp.frequency_penalty = k == 2 ? 20.0f : 0.0f;
		bn_sampler *s = bn_sampler_new(m, &sp);
		memset(&g, 0, sizeof g);
		bn_ctx_reset(c);
		assert_int_equal(gen(c, s, prompt, 3, 1, 0, &g, &r), BN_OK);
		assert_int_equal(g.n, 1);
		assert_int_equal(g.ids[0], k ? 5 : 4);
		bn_sampler_free(s);
	}
	bn_ctx_free(c);
	bn_model_close(m);
}

/* bn_decode_batch on the fake: each row's logit (t + 3) % 16 says the token before it in
 * its own sequence (0.01 * (prev + 1)), so rows of sequences interleaved in one call read
 * their own sequence's cache. */
static void test_decode_batch(void **state)
{
	(void)state;
	bn_model *m = open_model();
	int code = 0;
	char err[256];
	bn_ctx *c = bn_ctx_new_seq(m, 8, 3, 1, &code, err, sizeof err);
	assert_non_null(c);
	assert_int_equal(bn_ctx_n_seq(c), 3);
	int32_t tok[6] = {1, 7, 2, 9, 3, 11}, pos[6] = {0, 0, 1, 1, 2, 0}, seq[6] = {0, 2, 0, 2, 0, 1};
	int8_t want[6] = {0, 1, 1, 1, 1, 1};
	float l[5 * NV];
	bn_batch b = {6, tok, pos, seq, want, NULL};
	assert_int_equal(bn_decode_batch(c, &b, l), BN_OK); /* two calls: 4 rows, 2 rows */
	/* row 2 (token 2 after 1 in sequence 0), row 3 (9 after 7 in 2), row 4 (3 after 2) */
	assert_float_equal(l[1 * NV + (2 + 3) % NV], 0.01f * 2, 1e-6);
	assert_float_equal(l[2 * NV + (9 + 3) % NV], 0.01f * 8, 1e-6);
	assert_float_equal(l[3 * NV + (3 + 3) % NV], 0.01f * 3, 1e-6);
	assert_float_equal(l[4 * NV + (11 + 3) % NV], 0.0f, 1e-6); /* position 0: no token before */
	assert_float_equal(l[0 * NV + (7 + 1) % NV], 10.0f, 0);
	assert_int_equal(bn_ctx_seq_pos(c, 0), 3);
	assert_int_equal(bn_ctx_seq_pos(c, 1), 1);
	assert_int_equal(bn_ctx_seq_pos(c, 2), 2);
	assert_int_equal(bn_ctx_pos(c), 3);
	/* overwrite sequence 0 from position 1: it is trimmed there first */
	int32_t t2[1] = {5}, p2[1] = {1}, s2[1] = {0};
	int8_t w2[1] = {1};
	bn_batch b2 = {1, t2, p2, s2, w2, NULL};
	assert_int_equal(bn_decode_batch(c, &b2, l), BN_OK);
	assert_float_equal(l[(5 + 3) % NV], 0.01f * 2, 1e-6);
	assert_int_equal(bn_ctx_seq_pos(c, 0), 2);
	/* cancelled before its first forward call: nothing changes */
	bn_ctx_cancel(c, 1);
	int32_t t3[1] = {6}, p3[1] = {2};
	bn_batch b3 = {1, t3, p3, s2, NULL, NULL};
	assert_int_equal(bn_decode_batch(c, &b3, NULL), BN_E_CANCELLED);
	assert_int_equal(bn_ctx_seq_pos(c, 0), 2);
	assert_int_equal(bn_decode_batch(c, &b3, NULL), BN_OK);
	assert_int_equal(bn_ctx_seq_pos(c, 0), 3);
	/* a sequence out of range, a gap: nothing runs */
	int32_t p4[1] = {9};
	bn_batch b4 = {1, t3, p4, s2, NULL, NULL};
	assert_int_equal(bn_decode_batch(c, &b4, NULL), BN_E_ARG);
	assert_non_null(strstr(bn_ctx_last_error(c), "position 9 of sequence 0"));
	assert_int_equal(bn_ctx_seq_trim(c, 2, 1), BN_OK);
	assert_int_equal(bn_ctx_seq_pos(c, 2), 1);
	assert_int_equal(bn_ctx_seq_pos(c, 0), 3);
	bn_ctx_free(c);
	/* the KV cache of 3 sequences: 3 times one's (the fake: 16 bytes a position) */
	assert_null(bn_ctx_new_seq(m, 8, 0, 1, &code, err, sizeof err));
	assert_int_equal(code, BN_E_ARG);
	bn_model_close(m);
}

/* bn_generate: the fake counts up from the prompt's last token to its EOS (15). */
static void test_generate(void **state)
{
	(void)state;
	bn_model *m = open_model();
	bn_ctx *c = bn_ctx_new(m, 32, 1, NULL, 0);
	bn_sampler_params sp = bn_sampler_defaults();
	sp.temp = 0;
	bn_sampler *s = bn_sampler_new(m, &sp);
	assert_non_null(c);
	assert_non_null(s);
	static Gen g;
	memset(&g, 0, sizeof g);
	bn_generate_result r;
	int32_t prompt[2] = {1, 3};
	assert_int_equal(gen(c, s, prompt, 2, -1, 0, &g, &r), BN_OK);
	assert_int_equal(r.stop, BN_STOP_EOG);
	assert_int_equal(g.n, 11); /* 4..14 */
	for (int i = 0; i < g.n; i++)
		assert_int_equal(g.ids[i], 4 + i);
	assert_int_equal(r.n_prompt, 2);
	assert_int_equal(r.n_generated, 11);
	assert_int_equal(r.n_decoded, 11);
	assert_int_equal(g.rows, 12);
	assert_int_equal(bn_ctx_pos(c), 13);
	/* max_tokens, with and without the last token decoded; the EOG generated */
	bn_ctx_reset(c);
	assert_int_equal(gen(c, s, prompt, 2, 14, BN_GEN_IGNORE_EOG, &g, &r), BN_OK);
	assert_int_equal(r.stop, BN_STOP_MAX_TOKENS);
	assert_int_equal(g.n, 14);
	assert_int_equal(g.ids[11], 15);
	assert_int_equal(g.ids[12], 0);
	assert_int_equal(bn_ctx_pos(c), 16);
	bn_ctx_reset(c);
	assert_int_equal(gen(c, s, prompt, 2, 3, BN_GEN_SKIP_LAST, &g, &r), BN_OK);
	assert_int_equal(r.stop, BN_STOP_MAX_TOKENS);
	assert_int_equal(r.n_generated, 3);
	assert_int_equal(r.n_decoded, 2);
	assert_int_equal(bn_ctx_pos(c), 4);
	/* the generation goes on from the cache: 7 after 6 */
	assert_int_equal(gen(c, s, (int32_t[]){6}, 1, 0, 0, &g, &r), BN_OK);
	assert_int_equal(r.stop, BN_STOP_MAX_TOKENS);
	assert_int_equal(g.rows, 1);
	/* every prompt row, in calls */
	bn_ctx_reset(c);
	int32_t five[5] = {1, 2, 3, 4, 5};
	assert_int_equal(gen(c, s, five, 5, 2, BN_GEN_PROMPT_LOGITS, &g, &r), BN_OK);
	assert_int_equal(g.rows, 5 + 2);
	assert_int_equal(g.ids[0], 6);
	/* a callback stops it, its token undecoded */
	bn_ctx_reset(c);
	g.stop_at = 3;
	assert_int_equal(gen(c, s, prompt, 2, -1, 0, &g, &r), BN_OK);
	g.stop_at = 0;
	assert_int_equal(r.stop, BN_STOP_CALLBACK);
	assert_int_equal(r.n_generated, 3);
	assert_int_equal(bn_ctx_pos(c), 4);
	/* the context fills: its last token is generated, not decoded */
	bn_ctx *small = bn_ctx_new(m, 8, 1, NULL, 0);
	assert_int_equal(gen(small, s, prompt, 2, -1, BN_GEN_IGNORE_EOG, &g, &r), BN_OK);
	assert_int_equal(r.stop, BN_STOP_CTX_FULL);
	assert_int_equal(r.n_generated, 7);
	assert_int_equal(r.n_decoded, 6);
	assert_int_equal(bn_ctx_pos(small), 8);
	assert_int_equal(gen(small, s, prompt, 2, -1, 0, &g, &r), BN_E_CTX);
	assert_int_equal(r.stop, BN_STOP_ERROR);
	bn_ctx_free(small);
	/* cancelled from another thread after the 4th token: it is not decoded */
	bn_ctx_reset(c);
	g.c = c;
	g.cancel_at = 4;
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cv, NULL);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, canceller, &g), 0);
	assert_int_equal(gen(c, s, prompt, 2, -1, 0, &g, &r), BN_E_CANCELLED);
	pthread_join(th, NULL);
	g.cancel_at = 0;
	assert_int_equal(r.stop, BN_STOP_CANCELLED);
	assert_int_equal(r.n_generated, 4);
	assert_int_equal(r.n_decoded, 3);
	assert_int_equal(bn_ctx_pos(c), 5);
	assert_int_equal(gen(c, s, (int32_t[]){8}, 1, 1, 0, &g, &r), BN_OK);
	assert_int_equal(g.ids[0], 9);
	pthread_mutex_destroy(&g.mu);
	pthread_cond_destroy(&g.cv);
	/* bad arguments; text from a model without a tokenizer */
	bn_generate_params p = bn_generate_defaults();
	assert_int_equal(bn_generate(c, s, prompt, 0, &p, &r), BN_E_ARG);
	assert_int_equal(bn_generate(c, NULL, prompt, 2, &p, &r), BN_E_ARG);
	p.flags = 1 << 20;
	assert_int_equal(bn_generate(c, s, prompt, 2, &p, &r), BN_E_ARG);
	p = bn_generate_defaults();
	const char *stop[1] = {"x"};
	p.stop = stop;
	p.n_stop = 1;
	assert_int_equal(bn_generate(c, s, prompt, 2, &p, &r), BN_E_NO_TOKENIZER);
	assert_non_null(strstr(bn_ctx_last_error(c), "tokenizer"));
	bn_sampler_free(s);
	bn_ctx_free(c);
	bn_model_close(m);
}

/* What the text stream gave on_text, chunk by chunk. */
typedef struct {
	char buf[256];
	size_t len;
	int chunks, bad_chunks, stop_after;
} Text;

/* Whether the len bytes are whole UTF-8 characters. */
static int utf8_whole(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned c = s[i];
		size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
			 : (c & 0xf8) == 0xf0 ? 4 : 0;
		if (!n || i + n > len)
			return 0;
		for (size_t k = 1; k < n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
		i += n;
	}
	return 1;
}

static int on_text(void *user, const char *text, size_t len)
{
	Text *t = user;
	memcpy(t->buf + t->len, text, len);
	t->len += len;
	t->buf[t->len] = 0;
	t->chunks++;
	t->bad_chunks += !utf8_whole((const unsigned char *)text, len);
	return t->stop_after && t->chunks == t->stop_after;
}

/* Pushes the pieces (NULL-terminated) through a stream; the last push ends it. */
static int stream(Text *t, int raw, const char *const *stop, int n_stop, const char **pieces)
{
	memset(t->buf, 0, sizeof t->buf);
	t->len = 0;
	t->chunks = t->bad_chunks = 0;
	RtGenText s = {.on_text = on_text, .user = t, .stop = stop, .n_stop = n_stop, .raw = raw};
	int rc = 0;
	for (int i = 0; pieces[i] && !rc; i++)
		rc = rt_gen_text_push(&s, pieces[i], strlen(pieces[i]), 0);
	if (!rc)
		rc = rt_gen_text_push(&s, NULL, 0, 1);
	rt_gen_text_free(&s);
	return rc;
}

/* bn_generate's text: whole characters only, U+FFFD for what is not one, stop strings. */
static void test_text_stream(void **state)
{
	(void)state;
	static Text t;
	/* a character split across tokens waits for its end */
	assert_int_equal(stream(&t, 0, NULL, 0, (const char *[]){"caf\xc3", "\xa9!", "\xe2\x82",
								   "\xac", NULL}), 0);
	assert_string_equal(t.buf, "caf\xc3\xa9!\xe2\x82\xac");
	assert_int_equal(t.chunks, 3);
	assert_int_equal(t.bad_chunks, 0);
	/* invalid bytes, an overlong form, a surrogate, an unfinished end: U+FFFD each */
	assert_int_equal(stream(&t, 0, NULL, 0, (const char *[]){"a\xff", "b\xe0\x80", "\xed\xa0\x80",
								   "c\xf0\x9f\x98", NULL}), 0);
	assert_string_equal(t.buf, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd"
				   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd");
	assert_int_equal(t.bad_chunks, 0);
	/* raw: the bytes as they come, a split character still whole */
	assert_int_equal(stream(&t, 1, NULL, 0, (const char *[]){"a\xff", "\xc3", "\xa9", "\xe2\x82",
								   NULL}), 0);
	assert_string_equal(t.buf, "a\xff\xc3\xa9\xe2\x82");
	/* a stop string across pieces: held back until decided, then neither it nor what
	 * follows */
	const char *stop[3] = {"", "END", "zz"};
	assert_int_equal(stream(&t, 0, stop, 3, (const char *[]){"abcE", "N", "Dxyz", "more", NULL}),
			 RT_GEN_TEXT_STOP);
	assert_string_equal(t.buf, "abc");
	assert_int_equal(t.chunks, 1);
	/* what began one and did not go on is given */
	assert_int_equal(stream(&t, 0, stop, 3, (const char *[]){"abE", "x", "yz", NULL}), 0);
	assert_string_equal(t.buf, "abExyz");
	assert_int_equal(t.chunks, 4); /* "ab", "Ex", "y" then "z" at the end */
	assert_int_equal(stream(&t, 0, stop, 3, (const char *[]){"abEN", NULL}), 0);
	assert_string_equal(t.buf, "abEN");
	/* the earliest of two, inside one piece */
	assert_int_equal(stream(&t, 0, stop, 3, (const char *[]){"1zz2END", NULL}), RT_GEN_TEXT_STOP);
	assert_string_equal(t.buf, "1");
	/* nothing at all: no call */
	assert_int_equal(stream(&t, 0, stop, 3, (const char *[]){NULL}), 0);
	assert_int_equal(stream(&t, 1, stop, 3, (const char *[]){"", NULL}), 0);
	assert_int_equal(t.chunks, 0);
	/* on_text asks to stop */
	t.stop_after = 2;
	assert_int_equal(stream(&t, 0, NULL, 0, (const char *[]){"a", "b", "c", NULL}),
			 RT_GEN_TEXT_CALLBACK);
	t.stop_after = 0;
	assert_string_equal(t.buf, "ab");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_sampler_penalties),
		cmocka_unit_test(test_decode_batch),
		cmocka_unit_test(test_text_stream),
		cmocka_unit_test(test_open_held),
		cmocka_unit_test(test_progress_line),
	};
	return cmocka_run_group_tests(tests, write_weights, NULL);
}
