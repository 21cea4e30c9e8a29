/* rt_http_req.c - the JSON of the HTTP server (rt_http.h): OpenAI's chat and completion
 * requests parsed and checked field by field (a wrong type or range: a 400 naming the
 * field), and the responses, chunks and errors printed, all through cJSON. */
#include "rt_http.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rt_http_err(RtHttpErr *err, int status, const char *param, const char *code,
		const char *fmt, ...)
{
	err->status = status;
	snprintf(err->param, sizeof err->param, "%s", param ? param : "");
	err->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return -1;
}

int rt_http_utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t k;
		unsigned cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			k = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			k = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3F);
		}
		if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		    (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* ---- fields --------------------------------------------------------------------- */

static int rt_num(const cJSON *j, const char *name, double lo, double hi, double *out,
		  RtHttpErr *err)
{
	if (!cJSON_IsNumber(j))
		return rt_http_err(err, 400, name, "invalid_type", "'%s' must be a number", name);
	double v = j->valuedouble;
	if (!isfinite(v) || v < lo || v > hi)
		return rt_http_err(err, 400, name, "invalid_value", "'%s' is out of range (%g to %g)",
				   name, lo, hi);
	*out = v;
	return 0;
}

static int rt_int(const cJSON *j, const char *name, double lo, double hi, int64_t *out,
		  RtHttpErr *err)
{
	double v;
	if (rt_num(j, name, lo, hi, &v, err))
		return -1;
	if (v != floor(v))
		return rt_http_err(err, 400, name, "invalid_type", "'%s' must be an integer", name);
	*out = (int64_t)v;
	return 0;
}

/* A copy of a JSON string, checked to be UTF-8 without NUL. */
static int rt_str(const cJSON *j, const char *name, char **out, size_t *len, RtHttpErr *err)
{
	if (!cJSON_IsString(j) || !j->valuestring)
		return rt_http_err(err, 400, name, "invalid_type", "'%s' must be a string", name);
	size_t n = strlen(j->valuestring);
	if (!rt_http_utf8_ok(j->valuestring, n))
		return rt_http_err(err, 400, name, "invalid_value", "'%s' is not valid UTF-8", name);
	*out = malloc(n + 1);
	if (!*out)
		return rt_http_err(err, 500, name, NULL, "out of memory");
	memcpy(*out, j->valuestring, n + 1);
	if (len)
		*len = n;
	return 0;
}

/* A message's content: a string, an array of {"type":"text","text":...} parts (joined),
 * or null (""). */
static int rt_content(const cJSON *c, char **out, RtHttpErr *err)
{
	if (!c || cJSON_IsNull(c)) {
		*out = calloc(1, 1);
		return *out ? 0 : rt_http_err(err, 500, "messages", NULL, "out of memory");
	}
	if (cJSON_IsString(c))
		return rt_str(c, "messages", out, NULL, err);
	if (!cJSON_IsArray(c))
		return rt_http_err(err, 400, "messages", "invalid_type",
				   "a message's 'content' must be a string or an array of text parts");
	size_t total = 0;
	const cJSON *p;
	cJSON_ArrayForEach(p, c)
	{
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
		const cJSON *x = cJSON_GetObjectItemCaseSensitive(p, "text");
		if (!cJSON_IsObject(p) || !cJSON_IsString(t) || strcmp(t->valuestring, "text") ||
		    !cJSON_IsString(x))
			return rt_http_err(err, 400, "messages", "invalid_type",
					   "a content part must be {\"type\": \"text\", \"text\": ...} "
					   "(only text is supported)");
		size_t n = strlen(x->valuestring);
		if (!rt_http_utf8_ok(x->valuestring, n))
			return rt_http_err(err, 400, "messages", "invalid_value",
					   "'messages' is not valid UTF-8");
		total += n;
	}
	char *s = malloc(total + 1);
	if (!s)
		return rt_http_err(err, 500, "messages", NULL, "out of memory");
	size_t at = 0;
	cJSON_ArrayForEach(p, c)
	{
		const char *x = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
		size_t n = strlen(x);
		memcpy(s + at, x, n);
		at += n;
	}
	s[at] = 0;
	*out = s;
	return 0;
}

static int rt_messages(const cJSON *j, RtHttpReq *rq, RtHttpErr *err)
{
	if (!j)
		return rt_http_err(err, 400, "messages", "missing_required_parameter",
				   "'messages' is required");
	int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : -1;
	if (n < 1)
		return rt_http_err(err, 400, "messages", "invalid_type",
				   "'messages' must be a non-empty array");
	if (n > RT_HTTP_MSG_MAX)
		return rt_http_err(err, 400, "messages", "invalid_value",
				   "'messages' has %d entries (at most %d)", n, RT_HTTP_MSG_MAX);
	rq->msgs = calloc((size_t)n, sizeof *rq->msgs);
	if (!rq->msgs)
		return rt_http_err(err, 500, "messages", NULL, "out of memory");
	static const char *const roles[] = {"system", "user", "assistant", "developer"};
	const cJSON *m;
	cJSON_ArrayForEach(m, j)
	{
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
		if (!cJSON_IsObject(m) || !cJSON_IsString(role))
			return rt_http_err(err, 400, "messages", "invalid_type",
					   "each message must be an object with a string 'role'");
		int r = -1;
		for (int i = 0; i < 4; i++)
			if (!strcmp(role->valuestring, roles[i]))
				r = i;
		if (r < 0)
			return rt_http_err(err, 400, "messages", "invalid_value",
					   "a message's role must be system, user, assistant or "
					   "developer");
		char *content;
		if (rt_content(cJSON_GetObjectItemCaseSensitive(m, "content"), &content, err))
			return -1;
		/* the chat templates know a system message, not OpenAI's newer developer */
		rq->msgs[rq->n_msgs].role = roles[r == 3 ? 0 : r];
		rq->msgs[rq->n_msgs++].content = content;
	}
	return 0;
}

/* prompt: a string, an array of token ids, or an array of one string. */
static int rt_prompt(const cJSON *j, RtHttpReq *rq, RtHttpErr *err)
{
	if (!j)
		return rt_http_err(err, 400, "prompt", "missing_required_parameter",
				   "'prompt' is required");
	if (cJSON_IsString(j))
		return rt_str(j, "prompt", &rq->prompt, &rq->prompt_len, err);
	int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : -1;
	if (n < 1)
		return rt_http_err(err, 400, "prompt", "invalid_type",
				   "'prompt' must be a string, an array of token ids or an array of "
				   "one string");
	if (cJSON_IsString(j->child)) {
		if (n != 1)
			return rt_http_err(err, 400, "prompt", "invalid_value",
					   "'prompt': only one prompt per request (n = 1)");
		return rt_str(j->child, "prompt", &rq->prompt, &rq->prompt_len, err);
	}
	rq->prompt_ids = malloc((size_t)n * sizeof *rq->prompt_ids);
	if (!rq->prompt_ids)
		return rt_http_err(err, 500, "prompt", NULL, "out of memory");
	const cJSON *t;
	cJSON_ArrayForEach(t, j)
	{
		int64_t v;
		if (rt_int(t, "prompt", 0, INT32_MAX, &v, err))
			return rt_http_err(err, 400, "prompt", "invalid_type",
					   "'prompt' must be a string, an array of token ids (integers "
					   ">= 0) or an array of one string");
		rq->prompt_ids[rq->n_prompt_ids++] = (int32_t)v;
	}
	return 0;
}

static int rt_stop(const cJSON *j, RtHttpReq *rq, RtHttpErr *err)
{
	if (!j || cJSON_IsNull(j))
		return 0;
	if (cJSON_IsString(j))
		return rt_str(j, "stop", &rq->stop[rq->n_stop++], NULL, err);
	if (!cJSON_IsArray(j))
		return rt_http_err(err, 400, "stop", "invalid_type",
				   "'stop' must be a string or an array of strings");
	if (cJSON_GetArraySize(j) > RT_HTTP_STOP_MAX)
		return rt_http_err(err, 400, "stop", "invalid_value",
				   "'stop' has more than %d strings", RT_HTTP_STOP_MAX);
	const cJSON *s;
	cJSON_ArrayForEach(s, j)
	{
		if (rt_str(s, "stop", &rq->stop[rq->n_stop], NULL, err))
			return -1;
		rq->n_stop++;
	}
	return 0;
}

/* The sampling fields (absent or null: the default). */
static int rt_sampling(const cJSON *o, RtHttpReq *rq, RtHttpErr *err)
{
	static const char *const names[] = {"temperature", "top_p", "min_p", "presence_penalty",
					    "frequency_penalty"};
	static const double lo[] = {0, 0, 0, -2, -2}, hi[] = {2e9, 1, 1, 2, 2};
	float *dst[] = {&rq->sp.temp, &rq->sp.top_p, &rq->sp.min_p, &rq->sp.presence_penalty,
			&rq->sp.frequency_penalty};
	for (int i = 0; i < 5; i++) {
		const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, names[i]);
		double v;
		if (!j || cJSON_IsNull(j))
			continue;
		if (rt_num(j, names[i], lo[i], hi[i], &v, err))
			return -1;
		*dst[i] = (float)v;
	}
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, "top_k");
	int64_t v;
	if (j && !cJSON_IsNull(j)) {
		if (rt_int(j, "top_k", -1, INT32_MAX, &v, err))
			return -1;
		rq->sp.top_k = v < 0 ? 0 : (int32_t)v;
	}
	j = cJSON_GetObjectItemCaseSensitive(o, "seed");
	rq->sp.seed = 0; /* random unless given */
	if (j && !cJSON_IsNull(j)) {
		/* a double holds integers exactly to 2^53 */
		if (rt_int(j, "seed", -1, 9007199254740992.0, &v, err))
			return -1;
		/* 0 asks the engine for a random seed: seed 0 itself is drawn as 2^64-1 */
		rq->sp.seed = v < 0 ? 0 : v == 0 ? UINT64_MAX : (uint64_t)v;
	}
	return 0;
}

static int rt_counts(const cJSON *o, RtHttpReq *rq, RtHttpErr *err)
{
	static const char *const names[] = {"max_tokens", "max_completion_tokens"};
	rq->max_tokens = -1;
	for (int i = 0; i < 2; i++) {
		const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, names[i]);
		int64_t v;
		if (!j || cJSON_IsNull(j))
			continue;
		if (rt_int(j, names[i], 1, INT32_MAX, &v, err))
			return -1;
		rq->max_tokens = (int32_t)v;
	}
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, "n");
	int64_t n;
	if (j && !cJSON_IsNull(j) && (rt_int(j, "n", 1, 1, &n, err)))
		return rt_http_err(err, 400, "n", "invalid_value", "'n' must be 1 (one choice per "
								   "request)");
	return 0;
}

static int rt_bool(const cJSON *o, const char *name, int *out, RtHttpErr *err)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!j || cJSON_IsNull(j))
		return 0;
	if (!cJSON_IsBool(j))
		return rt_http_err(err, 400, name, "invalid_type", "'%s' must be true or false",
				   name);
	*out = cJSON_IsTrue(j);
	return 0;
}

static int rt_stream(const cJSON *o, RtHttpReq *rq, RtHttpErr *err)
{
	if (rt_bool(o, "stream", &rq->stream, err))
		return -1;
	const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
	if (!so || cJSON_IsNull(so))
		return 0;
	if (!cJSON_IsObject(so))
		return rt_http_err(err, 400, "stream_options", "invalid_type",
				   "'stream_options' must be an object");
	if (rt_bool(so, "include_usage", &rq->include_usage, err))
		return rt_http_err(err, 400, "stream_options", "invalid_type",
				   "'stream_options.include_usage' must be true or false");
	return 0;
}

int rt_http_req_parse(RtHttpKind kind, const char *body, size_t len,
		      const bn_sampler_params *defaults, RtHttpReq *rq, RtHttpErr *err)
{
	memset(rq, 0, sizeof *rq);
	rq->kind = kind;
	rq->sp = *defaults;
	const char *end = NULL;
	cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, 0);
	if (!o)
		return rt_http_err(err, 400, NULL, NULL, "the body is not valid JSON (near byte %zu)",
				   end && end >= body ? (size_t)(end - body) : (size_t)0);
	/* trailing bytes other than whitespace after the object */
	while (end && (size_t)(end - body) < len && strchr(" \t\r\n", *end) && *end)
		end++;
	int rc = -1;
	if (end && (size_t)(end - body) < len)
		rt_http_err(err, 400, NULL, NULL, "the body has bytes after its JSON value");
	else if (!cJSON_IsObject(o))
		rt_http_err(err, 400, NULL, NULL, "the body must be a JSON object");
	else if (kind == RT_HTTP_CHAT &&
		 rt_messages(cJSON_GetObjectItemCaseSensitive(o, "messages"), rq, err))
		;
	else if (kind == RT_HTTP_COMPLETION &&
		 rt_prompt(cJSON_GetObjectItemCaseSensitive(o, "prompt"), rq, err))
		;
	else if (!rt_sampling(o, rq, err) && !rt_counts(o, rq, err) &&
		 !rt_stop(cJSON_GetObjectItemCaseSensitive(o, "stop"), rq, err) &&
		 !rt_stream(o, rq, err))
		rc = 0;
	cJSON_Delete(o);
	if (rc)
		rt_http_req_free(rq);
	return rc;
}

void rt_http_req_free(RtHttpReq *rq)
{
	for (int32_t i = 0; rq->msgs && i < rq->n_msgs; i++)
		free((char *)rq->msgs[i].content);
	free(rq->msgs);
	free(rq->prompt);
	free(rq->prompt_ids);
	for (int32_t i = 0; i < rq->n_stop; i++)
		free(rq->stop[i]);
	RtHttpKind kind = rq->kind;
	memset(rq, 0, sizeof *rq);
	rq->kind = kind;
}

/* ---- responses ------------------------------------------------------------------ */

/* The object printed unformatted and freed. */
static char *rt_print(cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	return s;
}

/* text[0..len) as a JSON string (NUL bytes dropped: a C string cannot hold them). */
static cJSON *rt_text(const char *text, size_t len)
{
	char *s = malloc(len + 1);
	if (!s)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < len; i++)
		if (text[i])
			s[k++] = text[i];
	s[k] = 0;
	cJSON *j = cJSON_CreateString(s);
	free(s);
	return j;
}

char *rt_http_error_json(const RtHttpErr *err)
{
	cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
	if (!e)
		return rt_print(o);
	cJSON_AddStringToObject(e, "message", err->message);
	cJSON_AddStringToObject(e, "type", err->status == 401   ? "authentication_error"
					   : err->status >= 500 ? "server_error"
								: "invalid_request_error");
	if (err->param[0])
		cJSON_AddStringToObject(e, "param", err->param);
	else
		cJSON_AddNullToObject(e, "param");
	if (err->code)
		cJSON_AddStringToObject(e, "code", err->code);
	else
		cJSON_AddNullToObject(e, "code");
	return rt_print(o);
}

static cJSON *rt_head(const RtHttpResp *r, const char *object)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", r->id);
	cJSON_AddStringToObject(o, "object", object);
	cJSON_AddNumberToObject(o, "created", (double)r->created);
	cJSON_AddStringToObject(o, "model", r->model);
	return o;
}

static void rt_usage_add(cJSON *o, int32_t n_prompt, int32_t n_generated)
{
	cJSON *u = cJSON_AddObjectToObject(o, "usage");
	cJSON_AddNumberToObject(u, "prompt_tokens", n_prompt);
	cJSON_AddNumberToObject(u, "completion_tokens", n_generated);
	cJSON_AddNumberToObject(u, "total_tokens", (double)n_prompt + n_generated);
}

static void rt_finish_add(cJSON *c, const char *finish)
{
	if (finish)
		cJSON_AddStringToObject(c, "finish_reason", finish);
	else
		cJSON_AddNullToObject(c, "finish_reason");
}

char *rt_http_full_json(const RtHttpResp *r, const char *text, size_t len, const char *finish,
			int32_t n_prompt, int32_t n_generated)
{
	int chat = r->kind == RT_HTTP_CHAT;
	cJSON *o = rt_head(r, chat ? "chat.completion" : "text_completion");
	cJSON *cs = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
	cJSON_AddItemToArray(cs, c);
	cJSON_AddNumberToObject(c, "index", 0);
	if (chat) {
		cJSON *m = cJSON_AddObjectToObject(c, "message");
		cJSON_AddStringToObject(m, "role", "assistant");
		cJSON_AddItemToObject(m, "content", rt_text(text, len));
	} else {
		cJSON_AddItemToObject(c, "text", rt_text(text, len));
		cJSON_AddNullToObject(c, "logprobs");
	}
	rt_finish_add(c, finish);
	rt_usage_add(o, n_prompt, n_generated);
	return rt_print(o);
}

/* "data: " JSON "\n\n" */
static char *rt_sse(char *json)
{
	if (!json)
		return NULL;
	size_t n = strlen(json);
	char *s = malloc(n + 9);
	if (s) {
		memcpy(s, "data: ", 6);
		memcpy(s + 6, json, n);
		memcpy(s + 6 + n, "\n\n", 3);
	}
	free(json);
	return s;
}

char *rt_http_chunk_sse(const RtHttpResp *r, const char *text, size_t len, int role,
			const char *finish, int32_t n_prompt, int32_t n_generated)
{
	int chat = r->kind == RT_HTTP_CHAT;
	cJSON *o = rt_head(r, chat ? "chat.completion.chunk" : "text_completion");
	cJSON *cs = cJSON_AddArrayToObject(o, "choices");
	if (n_prompt >= 0) {
		rt_usage_add(o, n_prompt, n_generated);
		return rt_sse(rt_print(o));
	}
	cJSON *c = cJSON_CreateObject();
	cJSON_AddItemToArray(cs, c);
	cJSON_AddNumberToObject(c, "index", 0);
	if (chat) {
		cJSON *d = cJSON_AddObjectToObject(c, "delta");
		if (role)
			cJSON_AddStringToObject(d, "role", "assistant");
		if (!finish)
			cJSON_AddItemToObject(d, "content", rt_text(text, len));
	} else {
		cJSON_AddItemToObject(c, "text", rt_text(text, len));
		cJSON_AddNullToObject(c, "logprobs");
	}
	rt_finish_add(c, finish);
	return rt_sse(rt_print(o));
}

char *rt_http_models_json(const char *model, int64_t created)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "object", "list");
	cJSON *d = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
	cJSON_AddItemToArray(d, m);
	cJSON_AddStringToObject(m, "id", model);
	cJSON_AddStringToObject(m, "object", "model");
	cJSON_AddNumberToObject(m, "created", (double)created);
	cJSON_AddStringToObject(m, "owned_by", "bitnetc");
	return rt_print(o);
}
