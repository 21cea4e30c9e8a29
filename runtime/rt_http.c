/* rt_http.c - the HTTP server of a program built with --server (rt_http.h): libmicrohttpd
 * with a thread per connection, OpenAI's /v1/chat/completions and /v1/completions (whole,
 * or streamed as server-sent events), /v1/models, /health and /metrics (Prometheus text),
 * over the serving engine (rt_serve.h). A connection's thread blocks on its request's
 * condition variable; the engine's thread only appends text and signals. A client that
 * goes away (its socket hung up) cancels its request at once. SIGTERM or SIGINT drains:
 * no new connections, running requests finish within --drain-timeout, exit 0. */
#include "rt_http.h"
#include "rt_serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- metrics -------------------------------------------------------------------- */

enum { RT_HIST_MAX = 14, RT_CODES_MAX = 16 };

typedef struct {
	const char *name, *help;
	int n;                        /* upper bounds, +Inf implied */
	double le[RT_HIST_MAX];
	uint64_t count[RT_HIST_MAX + 1];
	uint64_t total;
	double sum;
} RtHist;

typedef struct {
	pthread_mutex_t mu;
	int codes[RT_CODES_MAX];
	uint64_t by_code[RT_CODES_MAX];
	uint64_t prompt_tokens, generated_tokens;
	RtHist ttft, itl, dur;
} RtHttpMetrics;

static void rt_hist_add(RtHist *h, double v)
{
	int i = 0;
	while (i < h->n && v > h->le[i])
		i++;
	h->count[i]++;
	h->total++;
	h->sum += v;
}

/* ---- the server ----------------------------------------------------------------- */

typedef struct {
	const RtOpts *o;
	bn_model *m;
	RtServe *engine;       /* set before ready */
	atomic_int ready;      /* the model is open and the engine running */
	atomic_int draining;   /* SIGTERM or SIGINT came: refuse new requests */
	const char *model;     /* the model's name, in every response */
	int64_t created;
	bn_sampler_params defaults;
	size_t body_max;
	int32_t n_slots;
	int32_t n_vocab;
	atomic_uint_fast64_t n_ids;
	uint64_t id_salt;
	RtHttpMetrics mx;
} RtHttp;

/* One inference request, shared by its connection's thread and the engine's callbacks
 * (refs: the connection, the engine until on_done, a streamed response's reader). */
typedef struct {
	RtHttp *srv;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	uint64_t id;
	RtHttpReq rq;
	RtHttpResp resp;
	char idstr[48];
	int32_t n_prompt;
	char *text;            /* generated text not yet taken (a stream) or all of it */
	size_t len, cap;
	int oom;
	int done;              /* on_done came: res is final */
	RtServeResult res;
	int gone;              /* the client hung up */
	int fd;                /* the connection's socket */
	double t_last;         /* the last on_text (inter-token latency) */
	int n_text;
	/* a stream's bytes waiting for the reader: one or more events */
	char *out;
	size_t out_len, out_off;
	int phase;             /* 0 streaming, 1 the end written, 2 [DONE] handed over */
} RtHttpCall;

/* One connection's request while its body arrives. */
typedef struct {
	int route;
	char *body;
	size_t len, cap;
	int too_big;
	RtHttpCall *call;
} RtHttpConn;

enum { R_NONE, R_HEALTH, R_METRICS, R_MODELS, R_CHAT, R_COMPLETION };

static void rt_call_unref(RtHttpCall *c)
{
	pthread_mutex_lock(&c->mu);
	int left = --c->refs;
	pthread_mutex_unlock(&c->mu);
	if (left)
		return;
	rt_http_req_free(&c->rq);
	free(c->text);
	free(c->out);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

static void rt_count_status(RtHttp *s, int status)
{
	RtHttpMetrics *mx = &s->mx;
	pthread_mutex_lock(&mx->mu);
	for (int i = 0; i < RT_CODES_MAX; i++)
		if (mx->codes[i] == status || !mx->codes[i]) {
			mx->codes[i] = status;
			mx->by_code[i]++;
			break;
		}
	pthread_mutex_unlock(&mx->mu);
}

/* Queues a response of bytes (taken: freed here) with status and content type. */
static _Thread_local const char *rt_allow; /* a 405's Allow header */

static enum MHD_Result rt_send(RtHttp *s, struct MHD_Connection *conn, int status, char *bytes,
			       const char *type)
{
	if (!bytes)
		return MHD_NO;
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(bytes), bytes, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(bytes);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	if (atomic_load(&s->draining))
		MHD_add_response_header(r, "Connection", "close");
	if (status == 401)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
	if (status == 405 && rt_allow)
		MHD_add_response_header(r, "Allow", rt_allow);
	enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, r);
	MHD_destroy_response(r);
	rt_count_status(s, status);
	return ok;
}

static enum MHD_Result rt_send_err(RtHttp *s, struct MHD_Connection *conn, const RtHttpErr *e)
{
	return rt_send(s, conn, e->status, rt_http_error_json(e), "application/json");
}

static enum MHD_Result rt_reply_err(RtHttp *s, struct MHD_Connection *conn, int status,
			       const char *code, const char *fmt, ...) RT_PRINTF(5, 6);
static enum MHD_Result rt_reply_err(RtHttp *s, struct MHD_Connection *conn, int status,
			       const char *code, const char *fmt, ...)
{
	RtHttpErr e = {.status = status, .code = code};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.message, sizeof e.message, fmt, ap);
	va_end(ap);
	return rt_send_err(s, conn, &e);
}

/* Whether the peer of fd hung up (a client that went away mid-request). */
static int rt_peer_gone(int fd)
{
	if (fd < 0)
		return 0;
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* ---- the engine's callbacks (its thread: never block) --------------------------- */

static int rt_on_text(void *user, const char *text, size_t len)
{
	RtHttpCall *c = user;
	double now = rt_now();
	pthread_mutex_lock(&c->mu);
	int gone = c->gone;
	if (!gone && len) {
		if (c->len + len + 1 > c->cap) {
			size_t cap = (c->len + len + 1) * 2;
			char *t = realloc(c->text, cap);
			if (!t) {
				c->oom = 1;
				gone = 1;
			} else {
				c->text = t;
				c->cap = cap;
			}
		}
		if (!c->oom) {
			memcpy(c->text + c->len, text, len);
			c->len += len;
			c->text[c->len] = 0;
		}
	}
	double itl = c->n_text++ ? now - c->t_last : -1;
	c->t_last = now;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (itl >= 0) {
		RtHttpMetrics *mx = &c->srv->mx;
		pthread_mutex_lock(&mx->mu);
		rt_hist_add(&mx->itl, itl);
		pthread_mutex_unlock(&mx->mu);
	}
	return gone;
}

static void rt_on_done(void *user, const RtServeResult *r)
{
	RtHttpCall *c = user;
	RtHttpMetrics *mx = &c->srv->mx;
	pthread_mutex_lock(&mx->mu);
	mx->prompt_tokens += (uint64_t)(r->n_prompt > 0 ? r->n_prompt : 0);
	mx->generated_tokens += (uint64_t)(r->n_generated > 0 ? r->n_generated : 0);
	if (r->n_generated > 0 && r->ttft_s > 0)
		rt_hist_add(&mx->ttft, r->ttft_s);
	rt_hist_add(&mx->dur, r->total_s);
	pthread_mutex_unlock(&mx->mu);
	pthread_mutex_lock(&c->mu);
	c->res = *r;
	c->done = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	rt_call_unref(c);
}

/* Waits up to 100 ms for news of c (c->mu held); then checks the client. */
static void rt_call_wait(RtHttpCall *c)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	if (!c->done && !c->gone && rt_peer_gone(c->fd)) {
		c->gone = 1;
		pthread_mutex_unlock(&c->mu);
		rt_serve_cancel(c->srv->engine, c->id);
		pthread_mutex_lock(&c->mu);
	}
}

static const char *rt_finish_name(int finish)
{
	return finish == RT_SERVE_FINISH_LENGTH ? "length" : "stop";
}

/* ---- inference ------------------------------------------------------------------ */

/* The request's prompt as tokens (malloc'd into *ids): the chat's messages through the
 * model's template, a text prompt encoded as -p does, ids as given. */
static int rt_call_tokens(RtHttp *s, const RtHttpReq *rq, int32_t **ids, int32_t *n,
			  RtHttpErr *e)
{
	*ids = NULL;
	if (rq->prompt_ids) {
		for (int32_t i = 0; i < rq->n_prompt_ids; i++)
			if (rq->prompt_ids[i] >= s->n_vocab)
				return rt_http_err(e, 400, "prompt", "invalid_value",
						   "'prompt': token %d is outside the vocabulary "
						   "(%d ids)", rq->prompt_ids[i], s->n_vocab);
		*ids = malloc((size_t)rq->n_prompt_ids * sizeof **ids);
		if (!*ids)
			return rt_http_err(e, 500, NULL, NULL, "out of memory");
		memcpy(*ids, rq->prompt_ids, (size_t)rq->n_prompt_ids * sizeof **ids);
		*n = rq->n_prompt_ids;
		return 0;
	}
	if (bn_model_tokenizer_status(s->m, NULL, 0) != BN_OK)
		return rt_http_err(e, 400, rq->kind == RT_HTTP_CHAT ? "messages" : "prompt", NULL,
				   "this model was built without a tokenizer: give the prompt as "
				   "an array of token ids to /v1/completions");
	char *text = rq->prompt;
	size_t len = rq->prompt_len;
	if (rq->kind == RT_HTTP_CHAT) {
		int32_t l = bn_chat_format(s->m, NULL, rq->msgs, rq->n_msgs, BN_CHAT_ADD_ASSISTANT,
					   NULL, 0);
		if (l < 0)
			return rt_http_err(e, 400, "messages", NULL, "chat template: %s",
					   bn_strerror(l));
		text = malloc((size_t)l + 1);
		if (!text || bn_chat_format(s->m, NULL, rq->msgs, rq->n_msgs, BN_CHAT_ADD_ASSISTANT,
					    text, l + 1) != l) {
			free(text);
			return rt_http_err(e, 500, NULL, NULL, "out of memory");
		}
		len = (size_t)l;
	}
	int flags = BN_TOKENIZE_PARSE_SPECIAL | (bn_model_add_bos(s->m) ? BN_TOKENIZE_ADD_BOS : 0);
	int32_t cap = len + 2 < INT32_MAX ? (int32_t)len + 2 : INT32_MAX, got = BN_E_NOMEM;
	for (int pass = 0; pass < 2 && !*ids; pass++) {
		int32_t *buf = malloc((size_t)cap * sizeof *buf);
		got = buf ? bn_tokenize_ex(s->m, text, len, buf, cap, flags) : BN_E_NOMEM;
		if (got >= 0 && got <= cap)
			*ids = buf;
		else
			free(buf);
		if (got < 0)
			break;
		cap = got;
	}
	if (text != rq->prompt)
		free(text);
	if (!*ids)
		return rt_http_err(e, 500, NULL, NULL, "tokenizer: %s",
				   bn_strerror(got < 0 ? got : BN_E_NOMEM));
	if (got == 0) {
		free(*ids);
		*ids = NULL;
		return rt_http_err(e, 400, "prompt", "invalid_value", "the prompt is empty");
	}
	*n = got;
	return 0;
}

/* Parses, encodes and submits the request of conn; a refusal is in e. */
static RtHttpCall *rt_call_start(RtHttp *s, struct MHD_Connection *conn, RtHttpConn *hc,
				 RtHttpErr *e)
{
	RtHttpCall *c = calloc(1, sizeof *c);
	if (!c) {
		rt_http_err(e, 500, NULL, NULL, "out of memory");
		return NULL;
	}
	RtHttpKind kind = hc->route == R_CHAT ? RT_HTTP_CHAT : RT_HTTP_COMPLETION;
	if (rt_http_req_parse(kind, hc->body ? hc->body : "", hc->len, &s->defaults, &c->rq, e)) {
		free(c);
		return NULL;
	}
	c->srv = s;
	c->refs = 1;
	c->fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		c->fd = ci->connect_fd;
	uint64_t k = atomic_fetch_add(&s->n_ids, 1) + 1;
	snprintf(c->idstr, sizeof c->idstr, "%s-%016llx%08llx",
		 kind == RT_HTTP_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)s->id_salt,
		 (unsigned long long)k);
	c->resp = (RtHttpResp){kind, c->idstr, (int64_t)time(NULL), s->model};
	int32_t *ids, n;
	if (rt_call_tokens(s, &c->rq, &ids, &n, e)) {
		rt_call_unref(c);
		return NULL;
	}
	c->n_prompt = n;
	RtServeRequest r = {.prompt = ids, .n_prompt = n, .sampling = c->rq.sp,
			    .max_tokens = c->rq.max_tokens, .stop = (const char *const *)c->rq.stop,
			    .n_stop = c->rq.n_stop, .on_text = rt_on_text, .on_done = rt_on_done,
			    .user = c};
	c->refs++; /* the engine's, until on_done */
	int rc = rt_serve_submit(s->engine, &r, &c->id);
	free(ids);
	if (rc == RT_SERVE_OK)
		return c;
	c->refs--;
	if (rc == RT_SERVE_TOO_LONG)
		rt_http_err(e, 400, kind == RT_HTTP_CHAT ? "messages" : "prompt",
			    "context_length_exceeded",
			    "the prompt (%d tokens) and one generated token do not fit a slot's "
			    "context",
			    n);
	else if (rc == RT_SERVE_BUSY)
		rt_http_err(e, 503, NULL, "server_busy",
			    "every slot is busy and the queue is full: retry later");
	else if (rc == RT_SERVE_DRAINING)
		rt_http_err(e, 503, NULL, "shutting_down", "the server is shutting down");
	else
		rt_http_err(e, 400, NULL, NULL, "the request was refused (a token outside the "
						"vocabulary?)");
	rt_call_unref(c);
	return NULL;
}

/* A whole (non-stream) response, once the engine is done. */
static enum MHD_Result rt_call_whole(RtHttp *s, struct MHD_Connection *conn, RtHttpCall *c)
{
	pthread_mutex_lock(&c->mu);
	while (!c->done)
		rt_call_wait(c);
	int gone = c->gone;
	pthread_mutex_unlock(&c->mu);
	if (gone)
		return MHD_NO; /* nobody to answer: close */
	if (c->oom)
		return rt_reply_err(s, conn, 500, NULL, "out of memory for the generated text");
	if (c->res.finish == RT_SERVE_FINISH_ERROR)
		return rt_reply_err(s, conn, 500, NULL, "generation failed: %s", c->res.error);
	if (c->res.finish == RT_SERVE_FINISH_CANCELLED)
		return rt_reply_err(s, conn, 503, "shutting_down",
			       "the server shut down before the request finished");
	return rt_send(s, conn, 200,
		       rt_http_full_json(&c->resp, c->text ? c->text : "", c->len,
					 rt_finish_name(c->res.finish), c->n_prompt,
					 c->res.n_generated),
		       "application/json");
}

/* Appends an event (taken) to c's pending stream bytes (c->mu held). */
static void rt_out_add(RtHttpCall *c, char *ev)
{
	if (!ev) {
		c->oom = 1;
		return;
	}
	size_t n = strlen(ev), keep = c->out_len - c->out_off;
	char *o = malloc(keep + n);
	if (!o) {
		free(ev);
		c->oom = 1;
		return;
	}
	if (keep)
		memcpy(o, c->out + c->out_off, keep);
	memcpy(o + keep, ev, n);
	free(ev);
	free(c->out);
	c->out = o;
	c->out_len = keep + n;
	c->out_off = 0;
}

/* The end of a stream: the finishing chunk (or an error event), usage, [DONE]. */
static void rt_stream_end(RtHttpCall *c)
{
	const RtServeResult *r = &c->res;
	if (r->finish == RT_SERVE_FINISH_ERROR || r->finish == RT_SERVE_FINISH_CANCELLED) {
		RtHttpErr e = {.status = r->finish == RT_SERVE_FINISH_ERROR ? 500 : 503};
		snprintf(e.message, sizeof e.message, "%s",
			 r->finish == RT_SERVE_FINISH_ERROR ? r->error
							    : "the server shut down before the "
							      "request finished");
		char *j = rt_http_error_json(&e);
		size_t n = j ? strlen(j) : 0;
		char *ev = j ? malloc(n + 9) : NULL;
		if (ev)
			snprintf(ev, n + 9, "data: %s\n\n", j);
		free(j);
		rt_out_add(c, ev);
	} else {
		rt_out_add(c, rt_http_chunk_sse(&c->resp, "", 0, 0, rt_finish_name(r->finish), -1,
						0));
		if (c->rq.include_usage)
			rt_out_add(c, rt_http_chunk_sse(&c->resp, NULL, 0, 0, NULL, c->n_prompt,
							r->n_generated));
	}
	char *done = malloc(15);
	if (done)
		memcpy(done, "data: [DONE]\n\n", 15);
	rt_out_add(c, done);
	c->phase = 1;
}

/* libmicrohttpd's reader of a streamed response: the pending events, waiting for more. */
static ssize_t rt_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	RtHttpCall *c = cls;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		if (c->oom || c->gone) {
			int was_gone = c->gone, done = c->done;
			c->gone = 1;
			pthread_mutex_unlock(&c->mu);
			if (!was_gone && !done)
				rt_serve_cancel(c->srv->engine, c->id);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (c->out_off < c->out_len) {
			size_t n = c->out_len - c->out_off < max ? c->out_len - c->out_off : max;
			memcpy(buf, c->out + c->out_off, n);
			c->out_off += n;
			pthread_mutex_unlock(&c->mu);
			return (ssize_t)n;
		}
		if (c->phase == 1) {
			pthread_mutex_unlock(&c->mu);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (c->len) {
			rt_out_add(c, rt_http_chunk_sse(&c->resp, c->text, c->len, 0, NULL, -1, 0));
			c->len = 0;
			continue;
		}
		if (c->done) {
			rt_stream_end(c);
			continue;
		}
		rt_call_wait(c);
	}
}

static void rt_stream_free(void *cls)
{
	RtHttpCall *c = cls;
	pthread_mutex_lock(&c->mu);
	int cancel = !c->done && !c->gone;
	c->gone = 1;
	pthread_mutex_unlock(&c->mu);
	if (cancel)
		rt_serve_cancel(c->srv->engine, c->id);
	rt_call_unref(c);
}

static enum MHD_Result rt_call_stream(RtHttp *s, struct MHD_Connection *conn, RtHttpCall *c)
{
	pthread_mutex_lock(&c->mu);
	if (c->resp.kind == RT_HTTP_CHAT)
		rt_out_add(c, rt_http_chunk_sse(&c->resp, "", 0, 1, NULL, -1, 0));
	c->refs++; /* the reader's */
	pthread_mutex_unlock(&c->mu);
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
								   rt_stream_read, c,
								   rt_stream_free);
	if (!r) {
		rt_stream_free(c);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	if (atomic_load(&s->draining))
		MHD_add_response_header(r, "Connection", "close");
	enum MHD_Result ok = MHD_queue_response(conn, 200, r);
	MHD_destroy_response(r);
	rt_count_status(s, 200);
	return ok;
}

/* ---- the other routes ----------------------------------------------------------- */

static void rt_hist_print(FILE *f, const RtHist *h)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
	uint64_t cum = 0;
	for (int i = 0; i < h->n; i++) {
		cum += h->count[i];
		fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->le[i], (unsigned long long)cum);
	}
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", h->name,
		(unsigned long long)h->total, h->name, h->sum, h->name,
		(unsigned long long)h->total);
}

static char *rt_metrics_text(RtHttp *s)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		return NULL;
	RtServeStats st = {0};
	if (atomic_load(&s->ready))
		rt_serve_stats(s->engine, &st);
	RtHttpMetrics *mx = &s->mx;
	pthread_mutex_lock(&mx->mu);
	fprintf(f, "# HELP bitnetc_requests_total HTTP requests answered, by status code.\n"
		   "# TYPE bitnetc_requests_total counter\n");
	for (int i = 0; i < RT_CODES_MAX && mx->codes[i]; i++)
		fprintf(f, "bitnetc_requests_total{code=\"%d\"} %llu\n", mx->codes[i],
			(unsigned long long)mx->by_code[i]);
	fprintf(f, "# HELP bitnetc_prompt_tokens_total Prompt tokens of finished requests.\n"
		   "# TYPE bitnetc_prompt_tokens_total counter\nbitnetc_prompt_tokens_total %llu\n"
		   "# HELP bitnetc_generated_tokens_total Tokens generated.\n"
		   "# TYPE bitnetc_generated_tokens_total counter\n"
		   "bitnetc_generated_tokens_total %llu\n",
		(unsigned long long)mx->prompt_tokens, (unsigned long long)mx->generated_tokens);
	rt_hist_print(f, &mx->ttft);
	rt_hist_print(f, &mx->itl);
	rt_hist_print(f, &mx->dur);
	pthread_mutex_unlock(&mx->mu);
	fprintf(f, "# HELP bitnetc_slots Slots (requests decoded at once).\n"
		   "# TYPE bitnetc_slots gauge\nbitnetc_slots %d\n"
		   "# HELP bitnetc_slots_active Slots holding a request.\n"
		   "# TYPE bitnetc_slots_active gauge\nbitnetc_slots_active %d\n"
		   "# HELP bitnetc_queue_length Requests waiting for a slot.\n"
		   "# TYPE bitnetc_queue_length gauge\nbitnetc_queue_length %d\n"
		   "# HELP bitnetc_decode_steps_total Forward steps of the engine.\n"
		   "# TYPE bitnetc_decode_steps_total counter\nbitnetc_decode_steps_total %llu\n"
		   "# HELP bitnetc_decode_rows_total Token rows over those steps.\n"
		   "# TYPE bitnetc_decode_rows_total counter\nbitnetc_decode_rows_total %llu\n"
		   "# HELP bitnetc_draining 1 while the server drains before exiting.\n"
		   "# TYPE bitnetc_draining gauge\nbitnetc_draining %d\n",
		s->n_slots, st.active, st.queued, (unsigned long long)st.steps,
		(unsigned long long)st.step_rows, atomic_load(&s->draining));
	static const char *const reasons[] = {NULL, "stop", "length", "cancelled", "error"};
	fprintf(f, "# HELP bitnetc_requests_finished_total Requests the engine finished, by how "
		   "(cancelled: the client went away, or the drain's end).\n"
		   "# TYPE bitnetc_requests_finished_total counter\n");
	for (int i = 1; i < 5; i++)
		fprintf(f, "bitnetc_requests_finished_total{reason=\"%s\"} %llu\n", reasons[i],
			(unsigned long long)st.finished[i]);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static char *rt_dup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static int rt_route(const char *url)
{
	static const struct {
		const char *path;
		int route;
	} map[] = {{"/health", R_HEALTH}, {"/metrics", R_METRICS}, {"/v1/models", R_MODELS},
		   {"/models", R_MODELS}, {"/v1/chat/completions", R_CHAT},
		   {"/chat/completions", R_CHAT}, {"/v1/completions", R_COMPLETION},
		   {"/completions", R_COMPLETION}};
	for (size_t i = 0; i < sizeof map / sizeof *map; i++)
		if (!strcmp(url, map[i].path))
			return map[i].route;
	return R_NONE;
}

/* Whether the request carries "Authorization: Bearer KEY" (compared in constant time). */
static int rt_authorized(const RtHttp *s, struct MHD_Connection *conn)
{
	const char *key = s->o->api_key;
	if (!key)
		return 1;
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	if (!h || strncmp(h, "Bearer ", 7))
		return 0;
	h += 7;
	size_t a = strlen(h), b = strlen(key);
	unsigned diff = a != b;
	for (size_t i = 0; i < a && i < b; i++)
		diff |= (unsigned char)(h[i] ^ key[i]);
	return !diff;
}

/* The first call of a request: route, method, key and size checks that need no body.
 * Returns 1 when a response went out (*ok its result). */
static int rt_first(RtHttp *s, struct MHD_Connection *conn, const char *url, const char *method,
		    RtHttpConn *hc, enum MHD_Result *ok)
{
	hc->route = rt_route(url);
	int post = hc->route == R_CHAT || hc->route == R_COMPLETION;
	if (hc->route == R_NONE)
		*ok = rt_reply_err(s, conn, 404, "not_found", "no route %s %.200s (see /v1/models, "
							 "/v1/chat/completions, /v1/completions, "
							 "/health, /metrics)", method, url);
	else if (strcmp(method, post ? "POST" : "GET") &&
		 !(!post && !strcmp(method, "HEAD")) && (rt_allow = post ? "POST" : "GET, HEAD"))
		*ok = rt_reply_err(s, conn, 405, "method_not_allowed", "%.200s takes %s, not %.16s", url,
			      post ? "POST" : "GET", method);
	else if (hc->route != R_HEALTH && !rt_authorized(s, conn))
		*ok = rt_reply_err(s, conn, 401, "invalid_api_key",
			      "a missing or wrong API key: send \"Authorization: Bearer KEY\"");
	else {
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     "Content-Length");
		if (!cl || strtoull(cl, NULL, 10) <= s->body_max)
			return 0;
		*ok = rt_reply_err(s, conn, 413, "request_too_large",
			      "the body is larger than %zu bytes", s->body_max);
	}
	return 1;
}

static enum MHD_Result rt_answer(RtHttp *s, struct MHD_Connection *conn, RtHttpConn *hc)
{
	int ready = atomic_load(&s->ready), draining = atomic_load(&s->draining);
	switch (hc->route) {
	case R_HEALTH:
		if (ready && !draining)
			return rt_send(s, conn, 200, rt_dup("{\"status\":\"ok\"}"), "application/json");
		return rt_send(s, conn, 503,
			       rt_dup(draining ? "{\"status\":\"draining\"}" : "{\"status\":\"loading\"}"),
			       "application/json");
	case R_METRICS:
		return rt_send(s, conn, 200, rt_metrics_text(s), "text/plain; version=0.0.4");
	case R_MODELS:
		return rt_send(s, conn, 200, rt_http_models_json(s->model, s->created),
			       "application/json");
	default:
		break;
	}
	if (hc->too_big)
		return rt_reply_err(s, conn, 413, "request_too_large", "the body is larger than %zu bytes",
			       s->body_max);
	if (!ready || draining)
		return rt_reply_err(s, conn, 503, draining ? "shutting_down" : "loading",
			       draining ? "the server is shutting down" : "the model is loading");
	RtHttpErr e = {0};
	RtHttpCall *c = rt_call_start(s, conn, hc, &e);
	if (!c)
		return rt_send_err(s, conn, &e);
	hc->call = c;
	return c->rq.stream ? rt_call_stream(s, conn, c) : rt_call_whole(s, conn, c);
}

static enum MHD_Result rt_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	(void)version;
	RtHttp *s = cls;
	RtHttpConn *hc = *con_cls;
	if (!hc) {
		hc = calloc(1, sizeof *hc);
		if (!hc)
			return MHD_NO;
		*con_cls = hc;
		enum MHD_Result ok;
		if (rt_first(s, conn, url, method, hc, &ok))
			return ok;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (hc->too_big || hc->len + n > s->body_max) {
			hc->too_big = 1;
			return MHD_YES; /* read and dropped; 413 at the end */
		}
		if (hc->len + n + 1 > hc->cap) {
			size_t cap = hc->len + n + 1 > 2 * hc->cap ? hc->len + n + 1 : 2 * hc->cap;
			char *b = realloc(hc->body, cap);
			if (!b)
				return MHD_NO;
			hc->body = b;
			hc->cap = cap;
		}
		memcpy(hc->body + hc->len, upload, n);
		hc->len += n;
		hc->body[hc->len] = 0;
		return MHD_YES;
	}
	return rt_answer(s, conn, hc);
}

/* The end of a request, however it ended: a request still running is cancelled. */
static void rt_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode why)
{
	(void)conn;
	(void)why;
	RtHttp *s = cls;
	RtHttpConn *hc = *con_cls;
	if (!hc)
		return;
	*con_cls = NULL;
	if (hc->call) {
		RtHttpCall *c = hc->call;
		pthread_mutex_lock(&c->mu);
		int cancel = !c->done && !c->gone;
		c->gone = 1;
		pthread_mutex_unlock(&c->mu);
		if (cancel)
			rt_serve_cancel(s->engine, c->id);
		rt_call_unref(c);
	}
	free(hc->body);
	free(hc);
}

/* ---- start, serve, drain -------------------------------------------------------- */

static void rt_metrics_init(RtHttpMetrics *mx)
{
	pthread_mutex_init(&mx->mu, NULL);
	mx->ttft = (RtHist){.name = "bitnetc_time_to_first_token_seconds",
			    .help = "Seconds from a request's arrival to its first generated token.",
			    .n = 12,
			    .le = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
	mx->itl = (RtHist){.name = "bitnetc_inter_token_latency_seconds",
			   .help = "Seconds between two pieces of a request's generated text.",
			   .n = 12,
			   .le = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
	mx->dur = (RtHist){.name = "bitnetc_request_duration_seconds",
			   .help = "Seconds from a request's arrival to its end.",
			   .n = 12,
			   .le = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
}

static struct MHD_Daemon *rt_http_listen(RtHttp *s, const RtOpts *o, int *port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	const char *host = o->host ? o->host : "127.0.0.1";
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_POLL | MHD_USE_ITC;
	socklen_t sl;
	if (strchr(host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)o->port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return NULL;
		flags |= MHD_USE_IPv6;
		sl = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)o->port);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return NULL;
		sl = sizeof *a;
	}
	(void)sl;
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, (uint16_t)o->port, NULL, NULL, rt_access, s, MHD_OPTION_SOCK_ADDR, &ss,
		MHD_OPTION_NOTIFY_COMPLETED, rt_completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)(o->http_timeout > 0 ? o->http_timeout : 600), MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)(o->parallel + o->queue + 64), MHD_OPTION_END);
	if (!d)
		return NULL;
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	*port = di ? di->port : o->port;
	return d;
}

/* Opens the model and starts the engine; an exit code. */
static int rt_http_load(RtHttp *s, const RtOpts *o, const char *argv0)
{
	char err[512];
	int code = 0;
	RtProgress prog = {.t0 = rt_now(), .tty = isatty(2)};
	s->m = bn_model_open_progress(o->weights_file, argv0, rt_open_flags(o), rt_progress_line,
				      &prog, &code, err, sizeof err);
	if (!s->m)
		return rt_complain(code == BN_E_DEVICE ? RT_EXIT_DEVICE : RT_EXIT_RUNTIME, "%s",
				   err);
	s->model = bn_model_meta(s->m, "name");
	s->n_vocab = bn_model_n_vocab(s->m);
	int32_t n_ctx = o->n_ctx ? (int32_t)(o->n_ctx / o->parallel) : 0;
	if (o->n_ctx && n_ctx < 2)
		return rt_usage("-c %lld over %d slots leaves each fewer than 2 positions",
				(long long)o->n_ctx, o->parallel);
	RtServeConfig cfg = {.n_slots = o->parallel, .n_ctx = n_ctx, .n_threads = o->threads,
			     .queue_max = o->queue, .chunk = (int32_t)o->ubatch};
	s->engine = rt_serve_new(s->m, &cfg, &code, err, sizeof err);
	if (!s->engine)
		return rt_fail("%s", err);
	RtServeStats st;
	rt_serve_stats(s->engine, &st);
	fprintf(stderr, "%s: ready: %s, %d slots of %d positions, %d threads\n", rt_prog,
		s->model, st.n_slots, st.n_ctx, o->threads);
	atomic_store(&s->ready, 1);
	return 0;
}

int rt_http_main(const RtOpts *o, const char *argv0)
{
	static RtHttp srv; /* the metrics and the engine outlive every connection */
	RtHttp *s = &srv;
	s->o = o;
	s->model = bn_model_meta(NULL, "name");
	s->created = (int64_t)time(NULL);
	s->defaults = o->sp;
	s->defaults.seed = 0;
	s->body_max = o->body_max ? (size_t)o->body_max : (size_t)4 << 20;
	s->n_slots = o->parallel;
	s->id_salt = bn_seed_random();
	rt_metrics_init(&s->mx);
	/* SIGTERM and SIGINT wait for sigwait below: every thread started from here on has
	 * them blocked; a write to a closed socket must not kill the process */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	unsigned char addr[16];
	if (o->host && inet_pton(AF_INET, o->host, addr) != 1 &&
	    inet_pton(AF_INET6, o->host, addr) != 1)
		return rt_usage("--host: \"%s\" is not an IPv4 or IPv6 address (e.g. 127.0.0.1, "
				"0.0.0.0, ::1)", o->host);
	int port = 0;
	errno = 0;
	struct MHD_Daemon *d = rt_http_listen(s, o, &port);
	if (!d)
		return rt_fail("cannot listen on %s port %d: %s", o->host ? o->host : "127.0.0.1",
			       o->port, errno ? strerror(errno) : "libmicrohttpd refused to start");
	const char *host = o->host ? o->host : "127.0.0.1";
	fprintf(stderr, "%s: listening on http://%s%s%s:%d\n", rt_prog, strchr(host, ':') ? "[" : "",
		host, strchr(host, ':') ? "]" : "", port);
	int rc = rt_http_load(s, o, argv0);
	if (rc) {
		MHD_stop_daemon(d);
		if (s->m)
			bn_model_close(s->m);
		return rc;
	}
	int sig = 0;
	sigwait(&set, &sig);
	fprintf(stderr, "%s: %s: draining (at most %g s)\n", rt_prog,
		sig == SIGINT ? "SIGINT" : "SIGTERM", o->drain_timeout);
	atomic_store(&s->draining, 1);
	MHD_socket ls = MHD_quiesce_daemon(d);
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
	rt_serve_drain(s->engine, o->drain_timeout);
	/* the streams' last events still go out: wait (bounded) for their connections */
	for (int i = 0; i < 200; i++) {
		const union MHD_DaemonInfo *di =
			MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		if (!di || !di->num_connections)
			break;
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	MHD_stop_daemon(d);
	rt_serve_free(s->engine);
	bn_model_close(s->m);
	fprintf(stderr, "%s: stopped\n", rt_prog);
	return 0;
}
