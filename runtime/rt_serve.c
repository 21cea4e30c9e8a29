/* rt_serve.c - the serving engine (rt_serve.h): requests wait in a FIFO queue for a slot
 * (one sequence of the engine's context each); one engine thread steps every slot at once
 * through bn_decode_batch: each generating slot's next token and chunks of the prompts
 * being read, then samples each slot's row with its own sampler and streams its text as
 * bn_generate does (rt_gen_pick, rt_generate.c). Sleeps on a condition variable when
 * there is nothing to do. bitnetc.h, libc and pthreads only.
 *
 * Numerics: a row is in the reference's step mode (the f16 roundings of a one-row call)
 * or in its batch mode, and rows of one call do not change each other's bits. Each row of
 * a step is flagged (bn_batch.step) as bn_generate would decode it: a generated token in
 * the step mode (bn_generate's one-row calls), prompt rows in the batch mode unless
 * bn_generate would decode them in one-row calls (a one-token prompt, or calls of one
 * row). So a request gets exactly bn_generate's tokens whatever else the engine runs, and
 * a request alone costs one-row steps. */
/* POSIX (pthreads, clock_gettime) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt_serve.h"
#include "rt.h"
#include "rt_tok.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A request, from rt_serve_submit to its on_done. */
typedef struct RtReq {
	uint64_t id;
	int32_t *prompt;
	int32_t n_prompt;
	bn_sampler_params sp;
	int32_t max_tokens;
	char **stop;
	int32_t n_stop;
	int (*on_text)(void *user, const char *text, size_t len);
	void (*on_done)(void *user, const RtServeResult *r);
	void *user;
	int cancel; /* rt_serve_cancel asked (under the lock) */
	double t_submit, t_start, t_first;
	struct RtReq *next; /* the queue */
} RtReq;

/* A slot: one sequence of the context and the request it runs. */
typedef struct {
	RtReq *rq; /* NULL: free */
	int32_t seq;
	int32_t n_fed;   /* prompt tokens decoded */
	int32_t tok;     /* generating: the token picked and not yet decoded */
	int gen;         /* 1: generating (the prompt is in the cache) */
	int row;         /* this step: the logits row it samples from (-1: none; -2: just
	                  * taken from the queue, not started) */
	int in_step;     /* this step has rows of it */
	RtGenPick pick;  /* sampler, text stream, count */
} RtSlot;

struct RtServe {
	bn_model *m;
	bn_ctx *c;
	RtServeConfig cfg;
	int32_t n_vocab, max_batch;
	pthread_t th;
	int th_started;
	pthread_mutex_t mu;
	pthread_cond_t wake; /* the engine: a request, a cancel, a drain, the end */
	pthread_cond_t idle; /* rt_serve_drain: a request is done */
	RtReq *qhead, *qtail;
	int32_t queued, active;
	uint64_t pending; /* accepted, on_done not yet returned */
	uint64_t next_id;
	int draining, stopping, drained;
	double deadline; /* draining: when the rest is cancelled */
	RtServeStats st;
	RtSlot *slots;
	/* one step's rows */
	int32_t *tok, *pos, *seq;
	int8_t *want, *step;
	float *logits;
};

/* ---- requests --------------------------------------------------------------------- */

static void rt_req_free(RtReq *r)
{
	if (!r)
		return;
	for (int32_t i = 0; i < r->n_stop; i++)
		free(r->stop[i]);
	free(r->stop);
	free(r->prompt);
	free(r);
}

static RtReq *rt_req_copy(const RtServeRequest *rq)
{
	RtReq *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->prompt = malloc((size_t)rq->n_prompt * sizeof *r->prompt);
	r->stop = rq->n_stop ? calloc((size_t)rq->n_stop, sizeof *r->stop) : NULL;
	if (!r->prompt || (rq->n_stop && !r->stop)) {
		rt_req_free(r);
		return NULL;
	}
	memcpy(r->prompt, rq->prompt, (size_t)rq->n_prompt * sizeof *r->prompt);
	r->n_prompt = rq->n_prompt;
	for (int32_t i = 0; i < rq->n_stop; i++, r->n_stop++) {
		const char *s = rq->stop[i] ? rq->stop[i] : "";
		size_t n = strlen(s) + 1;
		if (!(r->stop[i] = malloc(n))) {
			rt_req_free(r);
			return NULL;
		}
		memcpy(r->stop[i], s, n);
	}
	r->sp = rq->sampling;
	if (!r->sp.seed)
		r->sp.seed = bn_seed_random();
	r->max_tokens = rq->max_tokens;
	r->on_text = rq->on_text;
	r->on_done = rq->on_done;
	r->user = rq->user;
	return r;
}

/* Gives the result to on_done and frees the request; called without the lock. */
static void rt_req_done(RtServe *s, RtReq *r, int finish, int32_t n_generated,
			const char *error)
{
	RtServeResult res;
	memset(&res, 0, sizeof res);
	pthread_mutex_lock(&s->mu);
	s->st.finished[finish]++;
	s->st.generated_tokens += (uint64_t)n_generated;
	pthread_mutex_unlock(&s->mu);
	double now = rt_now();
	res.finish = finish;
	res.n_prompt = r->n_prompt;
	res.n_generated = n_generated;
	res.queue_s = r->t_start > 0 ? r->t_start - r->t_submit : now - r->t_submit;
	res.ttft_s = r->t_first > 0 ? r->t_first - r->t_submit : 0;
	res.total_s = now - r->t_submit;
	if (error)
		snprintf(res.error, sizeof res.error, "%s", error);
	if (r->on_done)
		r->on_done(r->user, &res);
	rt_req_free(r);
	pthread_mutex_lock(&s->mu);
	s->pending--;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->mu);
}

/* ---- slots ------------------------------------------------------------------------ */

/* Starts the request rt_step_admit put in the slot: its sampler (the prompt in its
 * window) and text stream. 0, or -1 when out of memory. */
static int rt_slot_start(RtServe *s, RtSlot *sl, RtReq *r)
{
	bn_sampler *smp = bn_sampler_new(s->m, &r->sp);
	if (!smp)
		return -1;
	for (int32_t i = 0; i < r->n_prompt; i++)
		bn_sampler_accept(smp, r->prompt[i]);
	sl->n_fed = 0;
	sl->gen = 0;
	sl->row = -1;
	sl->pick = (RtGenPick){.c = s->c, .m = s->m, .s = smp, .flags = 0,
			       .use_text = r->on_text || r->n_stop > 0};
	sl->pick.text = (RtGenText){.on_text = r->on_text, .user = r->user,
				    .stop = (const char *const *)r->stop, .n_stop = r->n_stop};
	return 0;
}

/* Ends the slot's request (stop: a BN_STOP_* for the end of its text, 0 for none):
 * frees the slot, its sequence trimmed to 0. */
static void rt_slot_end(RtServe *s, RtSlot *sl, int finish, int stop, const char *error)
{
	RtReq *r = sl->rq;
	if (stop && rt_gen_pick_end(&sl->pick, stop) == BN_E_NOMEM && finish != RT_SERVE_FINISH_ERROR) {
		finish = RT_SERVE_FINISH_ERROR;
		error = "out of memory for the generated text";
	}
	int32_t n = sl->pick.n_generated;
	rt_gen_text_free(&sl->pick.text);
	bn_sampler_free(sl->pick.s);
	sl->pick.s = NULL;
	bn_ctx_seq_trim(s->c, sl->seq, 0);
	pthread_mutex_lock(&s->mu);
	sl->rq = NULL;
	s->active--;
	pthread_mutex_unlock(&s->mu);
	rt_req_done(s, r, finish, n, error);
}

/* The slot's logits row: pick its next token and decide whether it goes on. */
static void rt_slot_pick(RtServe *s, RtSlot *sl, const float *row)
{
	RtReq *r = sl->rq;
	int32_t tok = 0;
	int rc = r->max_tokens == 0 ? BN_STOP_MAX_TOKENS : rt_gen_pick(&sl->pick, row, &tok);
	if (sl->pick.n_generated == 1 && r->t_first == 0)
		r->t_first = rt_now();
	if (!rc && ((r->max_tokens >= 0 && sl->pick.n_generated >= r->max_tokens) ||
		    bn_ctx_seq_pos(s->c, sl->seq) >= bn_ctx_n_ctx(s->c)))
		rc = BN_STOP_MAX_TOKENS; /* max_tokens, or the slot is full */
	if (rc == BN_STOP_EOG || rc == BN_STOP_STRING)
		rt_slot_end(s, sl, RT_SERVE_FINISH_STOP, rc, NULL);
	else if (rc == BN_STOP_CALLBACK)
		rt_slot_end(s, sl, RT_SERVE_FINISH_CANCELLED, rc, NULL);
	else if (rc == BN_STOP_MAX_TOKENS)
		rt_slot_end(s, sl, RT_SERVE_FINISH_LENGTH, rc, NULL);
	else if (rc)
		rt_slot_end(s, sl, RT_SERVE_FINISH_ERROR, 0, "out of memory for the generated text");
	else {
		sl->tok = tok;
		sl->gen = 1;
	}
}

/* ---- the engine's step ------------------------------------------------------------ */

/* Under the lock: cancels what a drain's end or rt_serve_cancel asks, moves queued
 * requests into free slots. Queued requests to end go to *done, running ones set their
 * slot's cancel_slots[i]. */
static void rt_step_admit(RtServe *s, RtReq **done, int *cancel_slots)
{
	int all = s->draining && rt_now() >= s->deadline;
	for (RtReq **p = &s->qhead; *p;) {
		RtReq *r = *p;
		if (all || r->cancel) {
			*p = r->next;
			r->next = *done;
			*done = r;
			s->queued--;
		} else {
			p = &r->next;
		}
	}
	s->qtail = NULL;
	for (RtReq *r = s->qhead; r; r = r->next)
		s->qtail = r;
	for (int32_t i = 0; i < s->cfg.n_slots; i++) {
		RtSlot *sl = &s->slots[i];
		cancel_slots[i] = sl->rq && (all || sl->rq->cancel);
		if (sl->rq || !s->qhead)
			continue;
		RtReq *r = s->qhead;
		s->qhead = r->next;
		if (!s->qhead)
			s->qtail = NULL;
		s->queued--;
		r->next = NULL;
		r->t_start = rt_now();
		sl->rq = r; /* started (sampler and text) outside the lock */
		sl->row = -2;
		s->active++;
	}
}

/* The rows of one step: every generating slot's next token first, then prompt chunks
 * (cfg.chunk tokens at most per slot, max_batch rows in all). Returns the rows. */
static int32_t rt_step_rows(RtServe *s)
{
	int32_t n = 0;
	for (int32_t i = 0; i < s->cfg.n_slots; i++) {
		RtSlot *sl = &s->slots[i];
		sl->row = -1;
		sl->in_step = 0;
		if (!sl->rq || !sl->gen || n >= s->max_batch)
			continue;
		sl->in_step = 1;
		s->tok[n] = sl->tok;
		s->pos[n] = bn_ctx_seq_pos(s->c, sl->seq);
		s->seq[n] = sl->seq;
		s->want[n] = 1;
		s->step[n] = 1;
		sl->row = n++;
	}
	for (int32_t i = 0; i < s->cfg.n_slots && n < s->max_batch; i++) {
		RtSlot *sl = &s->slots[i];
		if (!sl->rq || sl->gen)
			continue;
		int32_t k = sl->rq->n_prompt - sl->n_fed;
		if (k > s->cfg.chunk)
			k = s->cfg.chunk;
		if (k > s->max_batch - n)
			k = s->max_batch - n;
		sl->in_step = 1;
		for (int32_t j = 0; j < k; j++, n++) {
			s->tok[n] = sl->rq->prompt[sl->n_fed + j];
			s->pos[n] = sl->n_fed + j;
			s->seq[n] = sl->seq;
			s->want[n] = 0;
			s->step[n] = sl->rq->n_prompt == 1 || s->max_batch == 1;
		}
		sl->n_fed += k;
		if (sl->n_fed == sl->rq->n_prompt) {
			s->want[n - 1] = 1;
			sl->row = n - 1;
		}
	}
	return n;
}

/* After the step's decode: the slots whose rows have logits pick their tokens. */
static void rt_step_pick(RtServe *s, int32_t n)
{
	int32_t out = 0;
	size_t nv = (size_t)s->n_vocab;
	/* the logits rows are in row order, one per wanted row */
	int32_t *row_out = s->pos; /* the positions are no longer needed: row -> logits row */
	for (int32_t i = 0; i < n; i++)
		row_out[i] = s->want[i] ? out++ : -1;
	for (int32_t i = 0; i < s->cfg.n_slots; i++) {
		RtSlot *sl = &s->slots[i];
		if (!sl->rq || sl->row < 0)
			continue;
		rt_slot_pick(s, sl, s->logits + (size_t)row_out[sl->row] * nv);
	}
}

/* The step's decode failed: every slot that had rows in it ends with the error. */
static void rt_step_fail(RtServe *s, int rc)
{
	char msg[256];
	snprintf(msg, sizeof msg, "%.200s (%s)", bn_ctx_last_error(s->c), bn_strerror(rc));
	for (int32_t i = 0; i < s->cfg.n_slots; i++)
		if (s->slots[i].rq && s->slots[i].in_step)
			rt_slot_end(s, &s->slots[i], RT_SERVE_FINISH_ERROR, 0, msg);
}

static void rt_step(RtServe *s)
{
	RtReq *done = NULL;
	int cancel[BN_MAX_SEQ];
	pthread_mutex_lock(&s->mu);
	rt_step_admit(s, &done, cancel);
	pthread_mutex_unlock(&s->mu);
	while (done) {
		RtReq *r = done;
		done = r->next;
		rt_req_done(s, r, RT_SERVE_FINISH_CANCELLED, 0, NULL);
	}
	for (int32_t i = 0; i < s->cfg.n_slots; i++) {
		RtSlot *sl = &s->slots[i];
		if (sl->rq && sl->row == -2 && rt_slot_start(s, sl, sl->rq)) {
			RtReq *r = sl->rq;
			pthread_mutex_lock(&s->mu);
			sl->rq = NULL;
			s->active--;
			pthread_mutex_unlock(&s->mu);
			rt_req_done(s, r, RT_SERVE_FINISH_ERROR, 0, "out of memory for the sampler");
		} else if (sl->rq && cancel[i]) {
			rt_slot_end(s, sl, RT_SERVE_FINISH_CANCELLED, 0, NULL);
		}
	}
	int32_t n = rt_step_rows(s);
	if (!n)
		return;
	bn_batch b = {n, s->tok, s->pos, s->seq, s->want, s->step};
	int rc = bn_decode_batch(s->c, &b, s->logits);
	pthread_mutex_lock(&s->mu);
	s->st.steps++;
	s->st.step_rows += (uint64_t)n;
	pthread_mutex_unlock(&s->mu);
	if (rc)
		rt_step_fail(s, rc);
	else
		rt_step_pick(s, n);
}

static void *rt_serve_main(void *arg)
{
	RtServe *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->stopping && !s->active && !s->queued)
			pthread_cond_wait(&s->wake, &s->mu);
		if (s->stopping && !s->active && !s->queued)
			break;
		pthread_mutex_unlock(&s->mu);
		rt_step(s);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- the interface ---------------------------------------------------------------- */

static void rt_serve_release(RtServe *s)
{
	if (!s)
		return;
	free(s->slots);
	free(s->tok);
	free(s->pos);
	free(s->seq);
	free(s->want);
	free(s->step);
	free(s->logits);
	bn_ctx_free(s->c);
	pthread_cond_destroy(&s->wake);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

RtServe *rt_serve_new(bn_model *m, const RtServeConfig *cfg, int *code, char *err,
		      size_t err_len)
{
	int rc = BN_OK;
	if (code)
		*code = BN_E_ARG;
	if (err && err_len)
		err[0] = 0;
	if (!m || !cfg || cfg->n_slots < 1 || cfg->n_slots >= BN_MAX_SEQ || cfg->n_ctx < 0 ||
	    cfg->n_threads < 0 || cfg->queue_max < 0 || cfg->chunk < 0) {
		if (err && err_len)
			snprintf(err, err_len, "rt_serve_new: a bad configuration (%d slots of %d "
					       "positions, queue %d, chunk %d; slots 1..%d)",
				 cfg ? (int)cfg->n_slots : 0, cfg ? (int)cfg->n_ctx : 0,
				 cfg ? (int)cfg->queue_max : 0, cfg ? (int)cfg->chunk : 0,
				 BN_MAX_SEQ - 1);
		return NULL;
	}
	RtServe *s = calloc(1, sizeof *s);
	if (!s) {
		if (code)
			*code = BN_E_NOMEM;
		if (err && err_len)
			snprintf(err, err_len, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->wake, NULL);
	pthread_cond_init(&s->idle, NULL);
	s->m = m;
	s->cfg = *cfg;
	int32_t n_ctx = cfg->n_ctx;
	if (!n_ctx && (n_ctx = bn_model_default_ctx(m) / cfg->n_slots) < 1)
		n_ctx = 1;
	s->c = bn_ctx_new_seq(m, n_ctx, cfg->n_slots, cfg->n_threads, &rc, err, err_len);
	if (!s->c) {
		if (code)
			*code = rc;
		rt_serve_release(s);
		return NULL;
	}
	s->n_vocab = bn_model_n_vocab(m);
	s->max_batch = bn_ctx_ubatch(s->c);
	if (!s->cfg.chunk || s->cfg.chunk > s->max_batch)
		s->cfg.chunk = s->max_batch;
	s->cfg.n_ctx = bn_ctx_n_ctx(s->c);
	s->cfg.n_threads = bn_ctx_n_threads(s->c);
	size_t mb = (size_t)s->max_batch, rows = (size_t)(cfg->n_slots < s->max_batch ?
							   cfg->n_slots : s->max_batch);
	s->slots = calloc((size_t)cfg->n_slots, sizeof *s->slots);
	s->tok = malloc(mb * sizeof *s->tok);
	s->pos = malloc(mb * sizeof *s->pos);
	s->seq = malloc(mb * sizeof *s->seq);
	s->want = malloc(mb);
	s->step = malloc(mb);
	s->logits = malloc(rows * (size_t)s->n_vocab * sizeof *s->logits);
	rc = !s->slots || !s->tok || !s->pos || !s->seq || !s->want || !s->step || !s->logits ? BN_E_NOMEM : 0;
	if (rc && err && err_len)
		snprintf(err, err_len, "out of memory for %d slots", (int)cfg->n_slots);
	for (int32_t i = 0; !rc && i < cfg->n_slots; i++)
		s->slots[i].seq = i;
	s->st.n_slots = cfg->n_slots;
	s->st.n_ctx = s->cfg.n_ctx;
	if (!rc && pthread_create(&s->th, NULL, rt_serve_main, s)) {
		rc = BN_E_THREADS;
		if (err && err_len)
			snprintf(err, err_len, "cannot start the engine's thread");
	}
	if (code)
		*code = rc;
	if (rc) {
		rt_serve_release(s);
		return NULL;
	}
	s->th_started = 1;
	return s;
}

int rt_serve_submit(RtServe *s, const RtServeRequest *rq, uint64_t *id)
{
	if (id)
		*id = 0;
	if (!s || !rq || !rq->prompt || rq->n_prompt < 1 || rq->max_tokens < -1 ||
	    rq->n_stop < 0 || (rq->n_stop && !rq->stop))
		return RT_SERVE_ARG;
	for (int32_t i = 0; i < rq->n_prompt; i++)
		if (rq->prompt[i] < 0 || rq->prompt[i] >= s->n_vocab)
			return RT_SERVE_ARG;
	if ((rq->on_text || rq->n_stop) && bn_model_tokenizer_status(s->m, NULL, 0) != BN_OK)
		return RT_SERVE_ARG; /* text needs a tokenizer */
	if ((int64_t)rq->n_prompt + 1 > s->cfg.n_ctx)
		return RT_SERVE_TOO_LONG;
	RtReq *r = rt_req_copy(rq);
	if (!r)
		return RT_SERVE_BUSY; /* out of memory: try again later */
	r->t_submit = rt_now();
	pthread_mutex_lock(&s->mu);
	/* a free slot takes a request at the engine's next step: the queue holds those
	 * until then, beyond queue_max */
	int busy = s->draining ? RT_SERVE_DRAINING
		   : s->queued >= s->cfg.queue_max + (s->cfg.n_slots - s->active) ? RT_SERVE_BUSY
		   : 0;
	if (busy) {
		pthread_mutex_unlock(&s->mu);
		rt_req_free(r);
		return busy;
	}
	r->id = ++s->next_id;
	if (s->qtail)
		s->qtail->next = r;
	else
		s->qhead = r;
	s->qtail = r;
	s->queued++;
	s->pending++;
	s->st.requests++;
	s->st.prompt_tokens += (uint64_t)r->n_prompt;
	if (id)
		*id = r->id;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mu);
	return RT_SERVE_OK;
}

void rt_serve_cancel(RtServe *s, uint64_t id)
{
	if (!s || !id)
		return;
	pthread_mutex_lock(&s->mu);
	for (RtReq *r = s->qhead; r; r = r->next)
		if (r->id == id)
			r->cancel = 1;
	for (int32_t i = 0; i < s->cfg.n_slots; i++)
		if (s->slots[i].rq && s->slots[i].rq->id == id)
			s->slots[i].rq->cancel = 1;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mu);
}

void rt_serve_stats(RtServe *s, RtServeStats *st)
{
	pthread_mutex_lock(&s->mu);
	*st = s->st;
	st->active = s->active;
	st->queued = s->queued;
	st->draining = s->draining;
	pthread_mutex_unlock(&s->mu);
}

void rt_serve_drain(RtServe *s, double timeout_s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	if (!s->draining) {
		s->draining = 1;
		s->deadline = rt_now() + (timeout_s > 0 ? timeout_s : 0);
	}
	pthread_cond_signal(&s->wake);
	while (s->pending) {
		/* wake at the deadline too: an engine busy with one long step sees it after */
		double left = s->deadline - rt_now();
		if (left <= 0) {
			pthread_cond_signal(&s->wake);
			pthread_cond_wait(&s->idle, &s->mu);
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + left;
		ts.tv_sec = (time_t)t;
		ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
		pthread_cond_timedwait(&s->idle, &s->mu, &ts);
	}
	s->drained = 1;
	pthread_mutex_unlock(&s->mu);
}

void rt_serve_free(RtServe *s)
{
	if (!s)
		return;
	rt_serve_drain(s, 0);
	pthread_mutex_lock(&s->mu);
	s->stopping = 1;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mu);
	if (s->th_started)
		pthread_join(s->th, NULL);
	rt_serve_release(s);
}
