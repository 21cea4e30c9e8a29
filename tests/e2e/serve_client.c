/* serve_client.c - several sequences of one context on a golden model, from a program of
 * its own (tests/e2e/test_serve.c builds it with every file `bitnetc build --emit-c`
 * writes except main.c): bn_decode_batch against each sequence decoded alone, and the
 * serving engine (rt_serve.h) against bn_generate. Usage: serve_client WEIGHTS. Prints one
 * "ok ..." line per check and "FAIL ..." for a failed one (exit 1); stderr stays empty. */
#include "bitnetc.h"
#include "rt_serve.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fails;
static bn_model *model;
static int32_t nv;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void check(int ok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s ", ok ? "ok" : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fails += !ok;
}

/* The golden prompts (tests/data/golden/prompts.tsv) and two more. */
static const int32_t p1[] = {496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110};
static const int32_t p2[] = {496, 44, 383, 324, 217, 214, 425, 42, 345, 99, 46, 261, 483, 364, 377, 355,
			     389, 254, 63, 416, 223, 248, 183, 90, 459, 387, 319, 199, 408, 270, 219, 223};
static const int32_t p3[] = {496, 7, 7, 7, 7, 7, 7, 7, 7, 300, 301, 302, 303, 304, 305, 306, 307, 308,
			     309, 310, 311, 312, 313, 314};
static const int32_t p4[] = {496, 72};
static const int32_t p5[] = {496};
typedef struct {
	const int32_t *ids;
	int32_t n;
} Prompt;
static const Prompt prompts[] = {{p1, 16}, {p2, 32}, {p3, 24}, {p4, 2}, {p5, 1}, {p1 + 3, 9}};
enum { N_PROMPTS = sizeof prompts / sizeof prompts[0] };

static bn_ctx *ctx(int32_t n_ctx, int32_t n_seq)
{
	char err[512];
	int code = 0;
	bn_ctx *c = bn_ctx_new_seq(model, n_ctx, n_seq, 2, &code, err, sizeof err);
	if (!c) {
		printf("FAIL bn_ctx_new_seq: %s\n", err);
		exit(1);
	}
	return c;
}

/* ---- bn_decode_batch -------------------------------------------------------------- */

/* A schedule: in step k, sequence s gets chunk[s][k] rows (0: none). */
typedef struct {
	int32_t seq[8]; /* the context's sequence of each prompt */
	int n;          /* prompts (sequences) 0..n-1 of prompts[] */
	int chunk[8][16];
} Plan;

/* Runs the plan on c: every row wants logits; rows (per prompt, in position order) go to
 * out[prompt] (n_vocab each). Single-token steps after the prompt feed tokens
 * gen[prompt][..]. flag: a sequence's row is flagged step (bn_batch.step) when it is its
 * step's only row of that sequence, as a call of its own would compute it. Returns the
 * worst status. */
static int run_plan(bn_ctx *c, const Plan *pl, const int32_t *const *toks, const int32_t *lens,
		    float **out, int flag)
{
	int32_t fed[8] = {0}, tok[512], pos[512], seq[512], who[512];
	int8_t want[512], step[512];
	float *rows = malloc(sizeof(float) * 512 * (size_t)nv);
	int rc = 0;
	for (int k = 0; k < 16 && !rc; k++) {
		int32_t n = 0;
		/* interleave: one row of each sequence in turn while it has rows this step */
		int left[8], one[8], any = 1;
		for (int s = 0; s < pl->n; s++) {
			left[s] = pl->chunk[s][k];
			if (fed[s] + left[s] > lens[s])
				left[s] = lens[s] - fed[s];
			one[s] = flag && left[s] == 1;
		}
		while (any) {
			any = 0;
			for (int s = 0; s < pl->n; s++)
				if (left[s] > 0) {
					tok[n] = toks[s][fed[s]];
					pos[n] = fed[s];
					seq[n] = pl->seq[s];
					who[n] = s;
					want[n] = 1;
					step[n] = (int8_t)one[s];
					fed[s]++;
					left[s]--;
					n++;
					any = 1;
				}
		}
		if (!n)
			continue;
		bn_batch b = {n, tok, pos, seq, want, flag ? step : NULL};
		rc = bn_decode_batch(c, &b, rows);
		if (rc) {
			printf("FAIL bn_decode_batch: %s\n", bn_ctx_last_error(c));
			break;
		}
		for (int32_t i = 0; i < n; i++)
			memcpy(out[who[i]] + (size_t)pos[i] * nv, rows + (size_t)i * nv,
			       sizeof(float) * (size_t)nv);
	}
	free(rows);
	return rc;
}

static int same_bits(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof(float)) == 0;
}

static double max_diff(const float *a, const float *b, size_t n)
{
	double d = 0;
	for (size_t i = 0; i < n; i++)
		if (fabs((double)a[i] - b[i]) > d)
			d = fabs((double)a[i] - b[i]);
	return d;
}

/* Three prompts (and their greedy continuations, single-token steps) interleaved in one
 * context of three sequences, in calls that fall in every batch template; each sequence's
 * rows against the same sequence with another companion (a dummy sequence's rows beside
 * it, other call sizes): the same bits, as rows of one call do not mix; and against the
 * sequence alone in a context of one (the prompt chunks in calls of their own; the single
 * tokens, one-row calls, in the step mode): within the step-mode tolerance. */
static void test_batch(void)
{
	enum { GEN = 12 };
	int32_t *toks[3], lens[3];
	float *a[3], *b[3], *alone[3];
	const int idx[3] = {1, 2, 0};
	/* the token stream of each: the prompt and GEN more tokens (its greedy ids alone) */
	for (int s = 0; s < 3; s++) {
		const Prompt *p = &prompts[idx[s]];
		lens[s] = p->n + GEN;
		toks[s] = malloc(sizeof(int32_t) * (size_t)lens[s]);
		memcpy(toks[s], p->ids, sizeof(int32_t) * (size_t)p->n);
		for (int i = 0; i < GEN; i++)
			toks[s][p->n + i] = (p->ids[i % p->n] * 7 + i) % 500;
		a[s] = calloc((size_t)lens[s] * nv, sizeof(float));
		b[s] = calloc((size_t)lens[s] * nv, sizeof(float));
		alone[s] = calloc((size_t)lens[s] * nv, sizeof(float));
	}
	/* prompts in 2..40-row calls (t8, t32, t128), then single tokens interleaved */
	Plan pa = {{2, 0, 1}, 3, {{7, 13, 5, 3, 4}, {20, 2, 2}, {3, 11, 10}}};
	for (int s = 0; s < 3; s++)
		for (int k = 5; k < 16; k++)
			pa.chunk[s][k] = 1;
	for (int s = 0; s < 3; s++)
		pa.chunk[s][15] = 4; /* the rest, as a call of several rows */
	bn_ctx *ca = ctx(96, 3);
	int rc = run_plan(ca, &pa, (const int32_t *const *)toks, lens, a, 0);
	check(!rc, "bn_decode_batch: three sequences interleaved, calls of 2 to 40 rows");
	for (int s = 0; s < 3; s++)
		check(bn_ctx_seq_pos(ca, pa.seq[s]) == lens[s], "sequence %d holds its %d positions",
		      pa.seq[s], lens[s]);
	/* each sequence again, beside a dummy sequence (ids 5..), in other call sizes */
	for (int s = 0; s < 3; s++) {
		bn_ctx *cb = ctx(96, 4);
		int32_t *dt = malloc(sizeof(int32_t) * 96), dl = 90;
		for (int i = 0; i < dl; i++)
			dt[i] = 5 + (i * 13) % 400;
		Plan pb = {{3, 1}, 2, {{0}}};
		for (int k = 0; k < 16; k++)
			pb.chunk[1][k] = 5;
		const int32_t *tt[2] = {toks[s], dt};
		int32_t ll[2] = {lens[s], dl};
		float *bb[2] = {b[s], calloc((size_t)dl * nv, sizeof(float))};
		/* the same chunk boundaries as in pa for the prompt rows of s */
		memcpy(pb.chunk[0], pa.chunk[s], sizeof pb.chunk[0]);
		rc = run_plan(cb, &pb, tt, ll, bb, 0);
		check(!rc && same_bits(a[s], b[s], (size_t)lens[s] * nv),
		      "sequence %d of the interleaved batch: the same bits beside another sequence", s);
		free(bb[1]);
		free(dt);
		bn_ctx_free(cb);
	}
	/* alone, in a context of one sequence: the prompt chunks as calls, single tokens as
	 * one-row calls (the step mode) */
	for (int s = 0; s < 3; s++) {
		bn_ctx *c1 = ctx(96, 1);
		int32_t off = 0;
		for (int k = 0; k < 16 && off < lens[s] && !rc; k++) {
			int32_t m = pa.chunk[s][k];
			if (off + m > lens[s])
				m = lens[s] - off;
			if (!m)
				continue;
			rc = bn_decode_ex(c1, toks[s] + off, m, alone[s] + (size_t)off * nv,
					  BN_DECODE_ONE_CALL);
			off += m;
		}
		int32_t pn = prompts[idx[s]].n;
		int exact = same_bits(a[s], alone[s], (size_t)pn * nv);
		double d = max_diff(a[s], alone[s], (size_t)lens[s] * nv);
		check(!rc && exact, "sequence %d: its prompt rows are the bits of its calls alone", s);
		check(!rc && d <= 0.15,
		      "sequence %d: every row within 0.15 of the sequence alone (max |d| %.3g; the "
		      "single tokens alone are one-row calls, the step mode)", s, d);
		bn_ctx_free(c1);
	}
	/* again, each sequence's single rows flagged step: every row the bits of the
	 * sequence alone (its single rows one-row calls), whatever shares its calls */
	bn_ctx *cs = ctx(96, 3);
	rc = run_plan(cs, &pa, (const int32_t *const *)toks, lens, b, 1);
	for (int s = 0; s < 3; s++)
		check(!rc && same_bits(b[s], alone[s], (size_t)lens[s] * nv),
		      "sequence %d interleaved, its single rows flagged step: the bits of the "
		      "sequence alone, one-row calls included", s);
	bn_ctx_free(cs);
	bn_ctx_free(ca);
	for (int s = 0; s < 3; s++) {
		free(toks[s]);
		free(a[s]);
		free(b[s]);
		free(alone[s]);
	}
}

/* Trimming one sequence leaves the others as they were; overwriting from a position
 * trims; the argument errors. */
static void test_batch_state(void)
{
	bn_ctx *c = ctx(40, 2);
	float *l = malloc(sizeof(float) * 8 * (size_t)nv), *r = malloc(sizeof(float) * 8 * (size_t)nv);
	int32_t tok[4] = {496, 84, 496, 84}, pos[4] = {0, 1, 0, 1}, seq[4] = {0, 0, 1, 1};
	int8_t want[4] = {0, 1, 0, 1};
	bn_batch b = {4, tok, pos, seq, want, NULL};
	check(bn_decode_batch(c, &b, l) == BN_OK && bn_ctx_seq_pos(c, 0) == 2 &&
	      bn_ctx_seq_pos(c, 1) == 2, "two sequences of two rows each");
	check(same_bits(l, l + nv, (size_t)nv), "the same tokens in two sequences: the same bits");
	/* sequence 1 trimmed and refilled with other tokens: sequence 0 goes on unchanged */
	check(bn_ctx_seq_trim(c, 1, 1) == BN_OK && bn_ctx_seq_pos(c, 1) == 1 &&
	      bn_ctx_seq_pos(c, 0) == 2, "bn_ctx_seq_trim of sequence 1 leaves sequence 0");
	int32_t t2[3] = {300, 301, 104}, p2_[3] = {1, 2, 2}, s2[3] = {1, 1, 0};
	int8_t w2[3] = {0, 0, 1};
	bn_batch b2 = {3, t2, p2_, s2, w2, NULL};
	check(bn_decode_batch(c, &b2, l) == BN_OK, "sequence 1 refilled, sequence 0 one more");
	int32_t t3[3] = {496, 84, 104};
	int32_t t4[2] = {104, 105}, pp[2] = {2, 0}, ss[2] = {0, 1};
	int8_t ww[2] = {1, 0};
	bn_batch b4 = {2, t4, pp, ss, ww, NULL};
	bn_ctx *c2 = ctx(40, 2); /* a two-row call for the reference, as in c */
	bn_decode(c2, t3, 2, NULL);
	check(bn_decode_batch(c2, &b4, r) == BN_OK && same_bits(l, r, (size_t)nv),
	      "sequence 0 after sequence 1 was trimmed and refilled: its own bits");
	bn_ctx_free(c2);
	/* overwrite from position 1 of sequence 0: it is trimmed there first */
	int32_t t5[2] = {84, 104}, p5_[2] = {1, 2}, s5[2] = {0, 0};
	bn_batch b5 = {2, t5, p5_, s5, NULL, NULL};
	check(bn_decode_batch(c, &b5, NULL) == BN_OK && bn_ctx_seq_pos(c, 0) == 3,
	      "rows from position 1 overwrite sequence 0 from there");
	/* errors, before anything runs */
	int32_t p6[2] = {5, 6};
	bn_batch b6 = {2, t5, p6, s5, NULL, NULL};
	check(bn_decode_batch(c, &b6, NULL) == BN_E_ARG && bn_ctx_seq_pos(c, 0) == 3 &&
	      strstr(bn_ctx_last_error(c), "position 5 of sequence 0"),
	      "a gap after a sequence's end: BN_E_ARG (%s)", bn_ctx_last_error(c));
	int32_t p7[2] = {1, 3};
	bn_batch b7 = {2, t5, p7, s5, NULL, NULL};
	check(bn_decode_batch(c, &b7, NULL) == BN_E_ARG && strstr(bn_ctx_last_error(c), "consecutive"),
	      "rows of a sequence that skip a position: BN_E_ARG");
	int32_t s8[2] = {0, 2};
	bn_batch b8 = {2, t5, p5_, s8, NULL, NULL};
	check(bn_decode_batch(c, &b8, NULL) == BN_E_ARG && strstr(bn_ctx_last_error(c), "sequence 2"),
	      "a sequence outside the context: BN_E_ARG");
	int32_t t9[2] = {84, 100000};
	bn_batch b9 = {2, t9, p5_, s5, NULL, NULL};
	check(bn_decode_batch(c, &b9, NULL) == BN_E_TOKEN, "a token outside the vocabulary");
	int32_t p10[2] = {39, 40}, t10[2] = {1, 2}, s10[2] = {1, 1};
	bn_ctx_seq_trim(c, 1, 0);
	int32_t fill[39];
	int32_t fpos[39], fseq[39];
	for (int i = 0; i < 39; i++) {
		fill[i] = 1;
		fpos[i] = i;
		fseq[i] = 1;
	}
	bn_batch bf = {39, fill, fpos, fseq, NULL, NULL};
	bn_decode_batch(c, &bf, NULL);
	bn_batch b10 = {2, t10, p10, s10, NULL, NULL};
	check(bn_decode_batch(c, &b10, NULL) == BN_E_CTX && bn_ctx_seq_pos(c, 1) == 39,
	      "past the end of a sequence's positions: BN_E_CTX");
	bn_batch b11 = {2, t5, p5_, s5, want, NULL};
	check(bn_decode_batch(c, &b11, NULL) == BN_E_ARG, "wanted logits, no buffer: BN_E_ARG");
	bn_batch b12 = {0, t5, p5_, s5, NULL, NULL};
	check(bn_decode_batch(c, &b12, NULL) == BN_E_ARG, "no rows: BN_E_ARG");
	check(bn_ctx_seq_trim(c, 2, 0) == BN_E_ARG && bn_ctx_seq_trim(c, 0, 9) == BN_E_ARG &&
	      bn_ctx_seq_pos(c, 2) == BN_E_ARG, "trim and pos of no such sequence: BN_E_ARG");
	check(bn_ctx_seq_trim(c, -1, 2) == BN_OK && bn_ctx_seq_pos(c, 0) == 2 &&
	      bn_ctx_seq_pos(c, 1) == 2 && bn_ctx_pos(c) == 2, "bn_ctx_seq_trim(-1) cuts them all");
	bn_ctx_reset(c);
	check(bn_ctx_seq_pos(c, 0) == 0 && bn_ctx_seq_pos(c, 1) == 0 && bn_ctx_n_seq(c) == 2,
	      "bn_ctx_reset empties every sequence");
	char err[256];
	int code = 0;
	check(!bn_ctx_new_seq(model, 16, 0, 1, &code, err, sizeof err) && code == BN_E_ARG &&
	      !bn_ctx_new_seq(model, 16, BN_MAX_SEQ + 1, 1, &code, err, sizeof err),
	      "bn_ctx_new_seq: 0 or too many sequences: BN_E_ARG (%s)", err);
	bn_ctx *cd = bn_ctx_new_seq(model, 0, 4, 1, &code, err, sizeof err);
	check(cd && bn_ctx_n_ctx(cd) == bn_model_default_ctx(model) / 4,
	      "n_ctx 0: the default context shared by the sequences");
	bn_ctx_free(cd);
	bn_ctx_free(c);
	free(l);
	free(r);
}

/* ---- the engine ------------------------------------------------------------------- */

typedef struct {
	char text[4096];
	size_t len;
	int done, finish, stop_after;
	int sleep_us; /* on_text waits this long (a slow request, for the tests of cancel) */
	int32_t n_generated;
	double ttft_s, queue_s;
	char error[256];
} Out;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static int on_text(void *user, const char *t, size_t n)
{
	Out *o = user;
	pthread_mutex_lock(&mu);
	if (o->len + n < sizeof o->text) {
		memcpy(o->text + o->len, t, n);
		o->len += n;
	}
	int stop = o->stop_after && o->len >= (size_t)o->stop_after;
	pthread_mutex_unlock(&mu);
	if (o->sleep_us)
		usleep((useconds_t)o->sleep_us);
	return stop;
}

static void on_done(void *user, const RtServeResult *r)
{
	Out *o = user;
	pthread_mutex_lock(&mu);
	o->done++;
	o->finish = r->finish;
	o->n_generated = r->n_generated;
	o->ttft_s = r->ttft_s;
	o->queue_s = r->queue_s;
	snprintf(o->error, sizeof o->error, "%s", r->error);
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void wait_done(Out *o, int n)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < n; i++)
		while (!o[i].done)
			pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static int gen_text(void *user, const char *t, size_t n)
{
	return on_text(user, t, n);
}

/* bn_generate's text for the prompt alone, in a fresh context of one sequence. */
static void reference(const Prompt *p, const bn_sampler_params *sp, int32_t max, Out *o)
{
	bn_ctx *c = ctx(96, 1);
	bn_sampler *s = bn_sampler_new(model, sp);
	bn_generate_params gp = bn_generate_defaults();
	gp.max_tokens = max;
	gp.on_text = gen_text;
	gp.user = o;
	bn_generate_result r;
	memset(o, 0, sizeof *o);
	if (bn_generate(c, s, p->ids, p->n, &gp, &r))
		printf("FAIL bn_generate: %s\n", bn_ctx_last_error(c));
	o->n_generated = r.n_generated;
	o->finish = r.stop;
	bn_sampler_free(s);
	bn_ctx_free(c);
}

static RtServe *engine(int32_t slots, int32_t queue, int32_t chunk)
{
	char err[512];
	int code = 0;
	RtServeConfig cfg = {slots, 96, 2, queue, chunk};
	RtServe *s = rt_serve_new(model, &cfg, &code, err, sizeof err);
	if (!s) {
		printf("FAIL rt_serve_new: %s\n", err);
		exit(1);
	}
	return s;
}

static RtServeRequest request(const Prompt *p, const bn_sampler_params *sp, int32_t max, Out *o)
{
	RtServeRequest rq;
	memset(&rq, 0, sizeof rq);
	rq.prompt = p->ids;
	rq.n_prompt = p->n;
	rq.sampling = *sp;
	rq.max_tokens = max;
	rq.on_text = on_text;
	rq.on_done = on_done;
	rq.user = o;
	return rq;
}

/* The requests one after the other through the engine (each alone in it). */
static void alone(int32_t slots, const bn_sampler_params *sp, Out *o, int n)
{
	RtServe *s = engine(slots, 1, 0);
	memset(o, 0, sizeof *o * (size_t)n);
	for (int i = 0; i < n; i++) {
		RtServeRequest rq = request(&prompts[i % N_PROMPTS], &sp[i], 20 + i % 5, &o[i]);
		if (rt_serve_submit(s, &rq, NULL) != RT_SERVE_OK)
			printf("FAIL rt_serve_submit\n");
		wait_done(&o[i], 1);
	}
	rt_serve_free(s);
}

static int same_out(const Out *got, const Out *want, int n)
{
	int same = 1;
	for (int i = 0; i < n; i++) {
		int eq = got[i].len == want[i].len && !memcmp(got[i].text, want[i].text, got[i].len) &&
			 got[i].n_generated == want[i].n_generated;
		if (!eq)
			printf("  request %d: %d tokens '%.*s', expected %d tokens '%.*s'\n", i,
			       got[i].n_generated, (int)got[i].len, got[i].text, want[i].n_generated,
			       (int)want[i].len, want[i].text);
		same &= eq && got[i].done == 1 &&
			(got[i].finish == RT_SERVE_FINISH_LENGTH || got[i].finish == RT_SERVE_FINISH_STOP);
	}
	return same;
}

/* Every prompt at once (twice over) through an engine of `slots` slots, greedy or seeded
 * sampling (seed 100 + i): each request's text is bn_generate's for its prompt alone
 * (each row in the mode bn_generate's call gives it, whatever runs beside it). */
static void test_engine_same(int32_t slots, int32_t chunk, int greedy)
{
	enum { N = N_PROMPTS * 2 };
	Out want[N], got[N];
	bn_sampler_params sp[N];
	for (int i = 0; i < N; i++) {
		sp[i] = bn_sampler_defaults();
		sp[i].seed = 100 + (uint64_t)i;
		if (greedy)
			sp[i].temp = 0;
		reference(&prompts[i % N_PROMPTS], &sp[i], 20 + i % 5, &want[i]);
	}
	RtServe *s = engine(slots, N, chunk);
	memset(got, 0, sizeof got);
	int ok = 1;
	for (int i = 0; i < N; i++) {
		RtServeRequest rq = request(&prompts[i % N_PROMPTS], &sp[i], 20 + i % 5, &got[i]);
		ok &= rt_serve_submit(s, &rq, NULL) == RT_SERVE_OK;
	}
	wait_done(got, N);
	int same = same_out(got, want, N);
	RtServeStats st;
	rt_serve_stats(s, &st);
	check(ok && same, "%d %s requests at once through %d slots (chunk %d): each the text %s "
			  "(%llu steps, %.2f rows a step)",
	      N, greedy ? "greedy" : "seeded sampling", slots, chunk, "bn_generate gives it alone",
	      (unsigned long long)st.steps, st.steps ? (double)st.step_rows / (double)st.steps : 0.0);
	check(st.requests == N &&
		      st.finished[RT_SERVE_FINISH_LENGTH] + st.finished[RT_SERVE_FINISH_STOP] == N &&
		      st.active == 0 && st.queued == 0 && st.n_slots == slots,
	      "the statistics count them");
	rt_serve_free(s);
}

static int out_len(Out *o)
{
	pthread_mutex_lock(&mu);
	int n = (int)o->len;
	pthread_mutex_unlock(&mu);
	return n;
}

/* A request alone in an engine of several slots gets bn_generate's text. */
static void test_engine_alone(int greedy)
{
	enum { N = N_PROMPTS };
	Out want[N], got[N];
	bn_sampler_params sp[N];
	for (int i = 0; i < N; i++) {
		sp[i] = bn_sampler_defaults();
		sp[i].seed = 300 + (uint64_t)i;
		if (greedy)
			sp[i].temp = 0;
		reference(&prompts[i], &sp[i], 20 + i % 5, &want[i]);
	}
	alone(4, sp, got, N);
	check(same_out(got, want, N), "%d %s requests, each alone in 4 slots: bn_generate's text",
	      N, greedy ? "greedy" : "seeded sampling");
}

/* A stop string cuts the text as bn_generate cuts it. */
static void test_engine_stop(void)
{
	bn_sampler_params sp = bn_sampler_defaults();
	sp.temp = 0;
	Out full, want, got;
	reference(&prompts[0], &sp, 24, &full);
	char stop[8];
	snprintf(stop, sizeof stop, "%.3s", full.text + full.len / 2);
	const char *stops[2] = {"", stop};
	bn_ctx *c = ctx(96, 1);
	bn_sampler *smp = bn_sampler_new(model, &sp);
	bn_generate_params gp = bn_generate_defaults();
	gp.max_tokens = 24;
	gp.on_text = gen_text;
	gp.user = &want;
	gp.stop = stops;
	gp.n_stop = 2;
	memset(&want, 0, sizeof want);
	bn_generate_result r;
	bn_generate(c, smp, prompts[0].ids, prompts[0].n, &gp, &r);
	bn_sampler_free(smp);
	bn_ctx_free(c);
	RtServe *s = engine(1, 4, 0);
	memset(&got, 0, sizeof got);
	RtServeRequest rq = request(&prompts[0], &sp, 24, &got);
	rq.stop = stops;
	rq.n_stop = 2;
	int rc = rt_serve_submit(s, &rq, NULL);
	wait_done(&got, 1);
	check(!rc && r.stop == BN_STOP_STRING && got.finish == RT_SERVE_FINISH_STOP &&
	      got.len == want.len && !memcmp(got.text, want.text, got.len) && got.len < full.len &&
	      got.n_generated == r.n_generated,
	      "a stop string ('%s') cuts the text where bn_generate cuts it (%d of %d bytes)", stop,
	      (int)got.len, (int)full.len);
	rt_serve_free(s);
}

/* Refusals, a full queue, cancelling a queued and a running request, on_text's stop. */
static void test_engine_control(void)
{
	bn_sampler_params sp = bn_sampler_defaults();
	sp.temp = 0;
	RtServe *s = engine(1, 1, 0);
	Out o[4];
	memset(o, 0, sizeof o);
	int32_t big[96], bad[2] = {496, nv};
	for (int i = 0; i < 96; i++)
		big[i] = 496;
	Prompt pbig = {big, 96}, pfit = {big, 95}, pbad = {bad, 2}, pnone = {big, 0};
	RtServeRequest rq = request(&pbig, &sp, 4, &o[0]);
	check(rt_serve_submit(s, &rq, NULL) == RT_SERVE_TOO_LONG,
	      "a prompt of the whole slot (96 positions): RT_SERVE_TOO_LONG");
	rq = request(&pbad, &sp, 4, &o[0]);
	int a = rt_serve_submit(s, &rq, NULL);
	rq = request(&pnone, &sp, 4, &o[0]);
	int b = rt_serve_submit(s, &rq, NULL);
	rq = request(&prompts[0], &sp, -2, &o[0]);
	int c = rt_serve_submit(s, &rq, NULL);
	check(a == RT_SERVE_ARG && b == RT_SERVE_ARG && c == RT_SERVE_ARG,
	      "a token outside the vocabulary, no prompt, max_tokens -2: RT_SERVE_ARG");
	/* a slow request in the slot, one queued, the next refused */
	uint64_t id0 = 0, id1 = 0, id2 = 0;
	o[0].sleep_us = 20000;
	rq = request(&prompts[0], &sp, -1, &o[0]);
	a = rt_serve_submit(s, &rq, &id0);
	rq = request(&prompts[1], &sp, 8, &o[1]);
	b = rt_serve_submit(s, &rq, &id1);
	rq = request(&prompts[2], &sp, 8, &o[2]);
	c = rt_serve_submit(s, &rq, &id2);
	check(a == RT_SERVE_OK && b == RT_SERVE_OK && c == RT_SERVE_BUSY && id0 && id1 && !id2 &&
	      id0 != id1, "one slot and a queue of one: the third request is RT_SERVE_BUSY");
	rt_serve_cancel(s, id1);
	wait_done(&o[1], 1);
	check(o[1].finish == RT_SERVE_FINISH_CANCELLED && o[1].n_generated == 0 && o[1].len == 0,
	      "a queued request cancelled: on_done, nothing generated");
	while (out_len(&o[0]) < 1)
		usleep(1000);
	rt_serve_cancel(s, id0);
	wait_done(&o[0], 1);
	check(o[0].finish == RT_SERVE_FINISH_CANCELLED && o[0].n_generated >= 1,
	      "a running request cancelled after %d tokens: on_done", o[0].n_generated);
	rt_serve_cancel(s, id0); /* done: ignored */
	/* on_text returns nonzero once 5 bytes came */
	o[3].stop_after = 5;
	rq = request(&prompts[0], &sp, 40, &o[3]);
	a = rt_serve_submit(s, &rq, NULL);
	wait_done(&o[3], 1);
	check(!a && o[3].finish == RT_SERVE_FINISH_CANCELLED && o[3].len >= 5 &&
	      o[3].n_generated < 40 && o[3].ttft_s > 0 && o[3].queue_s >= 0,
	      "on_text's nonzero cancels the request (%d bytes, %d tokens)", (int)o[3].len,
	      o[3].n_generated);
	/* a prompt one short of the slot: two tokens, the second fills it */
	memset(&o[2], 0, sizeof o[2]);
	rq = request(&pfit, &sp, -1, &o[2]);
	a = rt_serve_submit(s, &rq, NULL);
	wait_done(&o[2], 1);
	check(!a && (o[2].finish == RT_SERVE_FINISH_LENGTH || o[2].finish == RT_SERVE_FINISH_STOP) &&
	      o[2].n_generated <= 2, "a prompt of 95 of 96 positions: accepted, %d tokens",
	      o[2].n_generated);
	RtServeStats st;
	rt_serve_stats(s, &st);
	check(st.requests == 4 && st.finished[RT_SERVE_FINISH_CANCELLED] == 3 && !st.active &&
	      !st.queued, "the statistics: 4 accepted, 3 cancelled");
	rt_serve_free(s);
}

/* A drain that runs out of time cancels what is left; one in time lets it finish; then
 * new requests are refused. */
static void test_engine_drain(void)
{
	bn_sampler_params sp = bn_sampler_defaults();
	sp.temp = 0;
	RtServe *s = engine(2, 8, 0);
	Out o[4];
	memset(o, 0, sizeof o);
	for (int i = 0; i < 4; i++) {
		o[i].sleep_us = 10000;
		RtServeRequest rq = request(&prompts[i], &sp, 60, &o[i]);
		rt_serve_submit(s, &rq, NULL);
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rt_serve_drain(s, 0.2);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double dt = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
	int all = 1, cancelled = 0;
	for (int i = 0; i < 4; i++) {
		all &= o[i].done == 1;
		cancelled += o[i].finish == RT_SERVE_FINISH_CANCELLED;
	}
	RtServeRequest rq = request(&prompts[0], &sp, 4, &o[0]);
	check(all && cancelled == 4 && dt >= 0.2 && dt < 5 &&
	      rt_serve_submit(s, &rq, NULL) == RT_SERVE_DRAINING,
	      "a drain of 0.2 s: every request done (%d cancelled) after %.2f s, then "
	      "RT_SERVE_DRAINING", cancelled, dt);
	rt_serve_free(s);
	s = engine(2, 8, 0);
	memset(o, 0, sizeof o);
	for (int i = 0; i < 4; i++) {
		RtServeRequest r2 = request(&prompts[i], &sp, 8, &o[i]);
		rt_serve_submit(s, &r2, NULL);
	}
	rt_serve_drain(s, 30);
	all = 1;
	for (int i = 0; i < 4; i++)
		all &= o[i].done == 1 && (o[i].finish == RT_SERVE_FINISH_LENGTH ||
					  o[i].finish == RT_SERVE_FINISH_STOP);
	check(all, "a drain in time: every request finished");
	rt_serve_free(s);
	/* freed with requests running: each gets its on_done */
	s = engine(2, 8, 0);
	memset(o, 0, sizeof o);
	for (int i = 0; i < 4; i++) {
		RtServeRequest r3 = request(&prompts[i], &sp, 60, &o[i]);
		rt_serve_submit(s, &r3, NULL);
	}
	rt_serve_free(s);
	all = 1;
	for (int i = 0; i < 4; i++)
		all &= o[i].done == 1;
	check(all, "rt_serve_free with requests running: each had its on_done once");
}

/* More requests than slots from several threads, some cancelled: every accepted one
 * gets exactly one on_done and the counts add up. */
enum { STRESS_THREADS = 4, STRESS_EACH = 12 };
typedef struct {
	RtServe *s;
	int t;
	Out o[STRESS_EACH];
	int accepted;
} Stress;

static void *stress_thread(void *arg)
{
	Stress *st = arg;
	for (int i = 0; i < STRESS_EACH; i++) {
		bn_sampler_params sp = bn_sampler_defaults();
		sp.seed = (uint64_t)(st->t * 100 + i + 1);
		sp.temp = i % 2 ? 0.0f : 0.9f;
		sp.presence_penalty = 0.5f;
		RtServeRequest rq = request(&prompts[(st->t + i) % N_PROMPTS], &sp, 4 + i % 9, &st->o[i]);
		uint64_t id = 0;
		int rc = rt_serve_submit(st->s, &rq, &id);
		st->accepted += rc == RT_SERVE_OK;
		if (rc != RT_SERVE_OK)
			st->o[i].done = -1; /* refused: no callback */
		if (rc == RT_SERVE_OK && i % 3 == 0)
			rt_serve_cancel(st->s, id);
	}
	return NULL;
}

static void test_engine_stress(void)
{
	RtServe *s = engine(3, 20, 4);
	static Stress st[STRESS_THREADS];
	pthread_t th[STRESS_THREADS];
	memset(st, 0, sizeof st);
	for (int t = 0; t < STRESS_THREADS; t++) {
		st[t].s = s;
		st[t].t = t;
		pthread_create(&th[t], NULL, stress_thread, &st[t]);
	}
	int accepted = 0;
	for (int t = 0; t < STRESS_THREADS; t++) {
		pthread_join(th[t], NULL);
		accepted += st[t].accepted;
	}
	rt_serve_drain(s, 60);
	int once = 1;
	for (int t = 0; t < STRESS_THREADS; t++)
		for (int i = 0; i < STRESS_EACH; i++)
			once &= st[t].o[i].done == 1 || st[t].o[i].done == -1;
	RtServeStats ss;
	rt_serve_stats(s, &ss);
	uint64_t fin = 0;
	for (int k = 1; k <= 4; k++)
		fin += ss.finished[k];
	check(once && accepted > 0 && ss.requests == (uint64_t)accepted && fin == ss.requests &&
	      ss.finished[RT_SERVE_FINISH_ERROR] == 0 && ss.draining,
	      "%d requests from %d threads through 3 slots (%d accepted, some cancelled): one "
	      "on_done each, the counts add up",
	      STRESS_THREADS * STRESS_EACH, STRESS_THREADS, accepted);
	rt_serve_free(s);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: serve_client WEIGHTS\n");
		return 2;
	}
	char err[512];
	model = bn_model_open(argv[1], err, sizeof err);
	if (!model) {
		printf("FAIL bn_model_open: %s\n", err);
		return 1;
	}
	nv = bn_model_n_vocab(model);
	test_batch();
	test_batch_state();
	test_engine_same(1, 0, 1);
	test_engine_same(3, 0, 1);
	test_engine_same(4, 5, 1);
	test_engine_same(16, 0, 1);
	test_engine_same(1, 0, 0);
	test_engine_same(4, 7, 0);
	test_engine_alone(1);
	test_engine_alone(0);
	test_engine_stop();
	test_engine_control();
	test_engine_drain();
	test_engine_stress();
	bn_model_close(model);
	printf("%d failed\n", fails);
	return fails ? 1 : 0;
}
