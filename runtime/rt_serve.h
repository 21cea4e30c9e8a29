/* rt_serve.h - the serving engine of a program built with --server: requests run in slots,
 * one sequence each of a single context, and one engine thread decodes them together
 * (continuous batching: every step gathers the next token of each generating slot and a
 * chunk of any slot's prompt into one bn_decode_batch call). The HTTP layer (rt_http*.c)
 * calls it and knows nothing of decoding; the engine knows nothing of HTTP or JSON. Built
 * on bitnetc.h alone, libc + pthreads. rt_serve.c is a runtime source like the others (the
 * runtime library the tests link, every tree --emit-c writes); which programs compile it
 * is the program sources list's to say. */
#ifndef BITNETC_RT_SERVE_H
#define BITNETC_RT_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "bitnetc.h"

typedef struct RtServe RtServe;

typedef struct {
	int32_t n_slots;   /* requests decoded at once (sequences of the context), >= 1 */
	int32_t n_ctx;     /* positions of each slot (0: the model's default context / n_slots) */
	int32_t n_threads; /* 0: bn_default_threads() */
	int32_t queue_max; /* requests that may wait for a slot; more: RT_SERVE_BUSY */
	int32_t chunk;     /* prompt tokens one step takes from a slot's prompt (0: max_batch) */
} RtServeConfig;

/* How a request ended (RtServeResult.finish); the first two are OpenAI's finish_reason
 * "stop" and "length". */
enum {
	RT_SERVE_FINISH_STOP = 1,      /* an end-of-generation token or a stop string */
	RT_SERVE_FINISH_LENGTH = 2,    /* max_tokens, or the slot's context is full */
	RT_SERVE_FINISH_CANCELLED = 3, /* rt_serve_cancel, on_text's nonzero, or a drain's end */
	RT_SERVE_FINISH_ERROR = 4,     /* a decode failed: RtServeResult.error says why */
};

typedef struct {
	int finish;          /* RT_SERVE_FINISH_* */
	int32_t n_prompt;    /* prompt tokens (OpenAI's usage.prompt_tokens) */
	int32_t n_generated; /* tokens generated (usage.completion_tokens) */
	double queue_s;      /* submit -> a slot took it */
	double ttft_s;       /* submit -> the first generated token (0: none) */
	double total_s;      /* submit -> done */
	char error[256];     /* RT_SERVE_FINISH_ERROR: the message */
} RtServeResult;

typedef struct {
	const int32_t *prompt; /* n_prompt >= 1 tokens, BOS included where wanted (copied) */
	int32_t n_prompt;
	bn_sampler_params sampling; /* the request's sampler (a seed of 0: a random one) */
	int32_t max_tokens;         /* -1: until an end of generation or the slot is full */
	const char *const *stop;    /* stop strings (copied); as bn_generate's */
	int32_t n_stop;
	/* The generated text as it is decided (whole UTF-8 characters, text that may begin a
	 * stop string held back, as bn_generate gives it), on the engine's thread: it must
	 * not block. Nonzero: cancel the request (a client that went away). NULL: no text. */
	int (*on_text)(void *user, const char *text, size_t len);
	/* Exactly once for every accepted request, after its last on_text, on the engine's
	 * thread (or on the caller's of rt_serve_drain / rt_serve_free). The request's
	 * memory is the engine's no more after it returns. */
	void (*on_done)(void *user, const RtServeResult *r);
	void *user;
} RtServeRequest;

/* What rt_serve_submit returns. */
enum {
	RT_SERVE_OK = 0,
	RT_SERVE_ARG = 1,      /* a bad request: no prompt, a token outside the vocabulary */
	RT_SERVE_TOO_LONG = 2, /* the prompt and one generated token do not fit a slot */
	RT_SERVE_BUSY = 3,     /* every slot busy and queue_max requests waiting */
	RT_SERVE_DRAINING = 4, /* rt_serve_drain was called: no new requests */
};

/* Starts the engine (its context of n_slots sequences and its thread). NULL with the
 * reason in err (*code, may be NULL, gets the bn_ctx_new code). */
RtServe *rt_serve_new(bn_model *m, const RtServeConfig *cfg, int *code, char *err,
		      size_t err_len);
/* Queues a request; *id (may be NULL) gets its id. RT_SERVE_OK, or why not (then no
 * callback will come). Any thread. */
int rt_serve_submit(RtServe *s, const RtServeRequest *rq, uint64_t *id);
/* Cancels a queued or running request: its slot is free from the next step on, and its
 * on_done comes with RT_SERVE_FINISH_CANCELLED. An id that is done is ignored. Any thread. */
void rt_serve_cancel(RtServe *s, uint64_t id);

typedef struct {
	int32_t n_slots, n_ctx; /* as configured */
	int32_t active;         /* slots holding a request */
	int32_t queued;         /* requests waiting for a slot */
	uint64_t requests;      /* requests accepted since start */
	uint64_t finished[5];   /* by RT_SERVE_FINISH_* (index 0 unused) */
	uint64_t prompt_tokens, generated_tokens;
	uint64_t steps;      /* forward steps (bn_decode_batch calls' groups) */
	uint64_t step_rows;  /* rows over those steps */
	int draining;
} RtServeStats;

void rt_serve_stats(RtServe *s, RtServeStats *st);
/* Refuses new requests from now on (RT_SERVE_DRAINING), lets queued and running ones
 * finish for up to timeout_s seconds, then cancels the rest; returns when every accepted
 * request has had its on_done. */
void rt_serve_drain(RtServe *s, double timeout_s);
/* rt_serve_drain(s, 0) if not drained, then stops the thread and frees. NULL: nothing. */
void rt_serve_free(RtServe *s);

#endif
