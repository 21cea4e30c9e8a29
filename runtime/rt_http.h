/* rt_http.h - the OpenAI-compatible HTTP server of a program built with --server: rt_http.c
 * (libmicrohttpd: routes, API key, body limit, streaming as server-sent events, /metrics,
 * the drain on SIGTERM) and rt_http_req.c (the JSON requests and responses, through
 * cJSON), on top of the serving engine (rt_serve.h). Compiled only into programs built
 * with --server (main.c then has BN_SERVER); the other runtime files know nothing of it. */
#ifndef BITNETC_RT_HTTP_H
#define BITNETC_RT_HTTP_H

#include "bitnetc.h"
#include "rt_session.h"

#include <stddef.h>
#include <stdint.h>

/* ---- the server (rt_http.c) ----------------------------------------------------- */

/* Serves o's --server options until SIGTERM or SIGINT and a drain; an exit code. */
int rt_http_main(const RtOpts *o, const char *argv0);

/* ---- requests and responses (rt_http_req.c) ------------------------------------- */

typedef enum { RT_HTTP_CHAT = 1, RT_HTTP_COMPLETION = 2 } RtHttpKind;

enum {
	RT_HTTP_STOP_MAX = 16,    /* stop strings in one request */
	RT_HTTP_MSG_MAX = 4096,   /* chat messages in one request */
};

/* One parsed request: every string owned (rt_http_req_free). */
typedef struct {
	RtHttpKind kind;
	bn_chat_msg *msgs;  /* chat: the messages (role and content copied) */
	int32_t n_msgs;
	char *prompt;       /* completion: the prompt text (NULL: prompt_ids) */
	size_t prompt_len;
	int32_t *prompt_ids; /* completion: the prompt as token ids, used as given */
	int32_t n_prompt_ids;
	int32_t max_tokens; /* -1: none given */
	bn_sampler_params sp; /* presence_penalty and frequency_penalty included */
	char *stop[RT_HTTP_STOP_MAX];
	int32_t n_stop;
	int stream, include_usage;
} RtHttpReq;

/* Why a request is refused: the HTTP status and OpenAI's error fields. */
typedef struct {
	int status;
	char message[256];
	char param[48]; /* "" : null */
	const char *code; /* NULL: null */
} RtHttpErr;

/* Parses a JSON body (len bytes, any bytes) of a request of kind into rq, sampling fields
 * absent taken from defaults. 0, or -1 with the 400 in err (rq then holds nothing). */
int rt_http_req_parse(RtHttpKind kind, const char *body, size_t len,
		      const bn_sampler_params *defaults, RtHttpReq *rq, RtHttpErr *err);
void rt_http_req_free(RtHttpReq *rq);
/* Fills err (returns -1). */
int rt_http_err(RtHttpErr *err, int status, const char *param, const char *code,
		const char *fmt, ...) RT_PRINTF(5, 6);
/* Whether s[0..n) is well-formed UTF-8 (no surrogates, no overlong forms). */
int rt_http_utf8_ok(const char *s, size_t n);

/* What a response says about the request it answers. */
typedef struct {
	RtHttpKind kind;
	const char *id;    /* "chatcmpl-..." / "cmpl-..." */
	int64_t created;   /* Unix seconds */
	const char *model; /* the model's name */
} RtHttpResp;

/* The JSON texts (malloc'd, NUL-terminated; NULL when out of memory). finish: "stop",
 * "length" or NULL (not finished: null). */
char *rt_http_error_json(const RtHttpErr *err);
char *rt_http_full_json(const RtHttpResp *r, const char *text, size_t len, const char *finish,
			int32_t n_prompt, int32_t n_generated);
/* One server-sent event "data: {chunk}\n\n": the chat's first carries the role; a usage
 * chunk (n_prompt >= 0) has no choices. */
char *rt_http_chunk_sse(const RtHttpResp *r, const char *text, size_t len, int role,
			const char *finish, int32_t n_prompt, int32_t n_generated);
/* GET /v1/models. */
char *rt_http_models_json(const char *model, int64_t created);

#endif
