/* test_http_req.c - the HTTP server's JSON (rt_http_req.c): OpenAI requests parsed field by
 * field, hostile bodies (deep nesting, huge numbers, wrong types, invalid UTF-8, NUL bytes,
 * trailing bytes) refused with a 400 naming the field, and the responses, chunks and errors
 * read back with cJSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#ifdef BN_HAVE_CJSON
#include "rt_http.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bn_sampler_params defaults(void)
{
	bn_sampler_params p = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
			       .repeat_penalty = 1, .repeat_last_n = 64, .seed = 7};
	return p;
}

static int parse(RtHttpKind kind, const char *body, RtHttpReq *rq, RtHttpErr *e)
{
	bn_sampler_params d = defaults();
	memset(e, 0, sizeof *e);
	return rt_http_req_parse(kind, body, strlen(body), &d, rq, e);
}

/* The body is refused with 400 and a message holding want (and param, when given). */
static void refused(RtHttpKind kind, const char *body, size_t len, const char *want,
		    const char *param)
{
	bn_sampler_params d = defaults();
	RtHttpReq rq;
	RtHttpErr e = {0};
	int rc = rt_http_req_parse(kind, body, len, &d, &rq, &e);
	if (rc != -1 || e.status != 400 || !strstr(e.message, want) ||
	    (param && strcmp(e.param, param)))
		fail_msg("body %.80s: rc %d status %d message \"%s\" param \"%s\" (wanted \"%s\", "
			 "param %s)", body, rc, e.status, e.message, e.param, want,
			 param ? param : "any");
	assert_null(rq.msgs);
	assert_null(rq.prompt);
	assert_int_equal(rq.n_stop, 0);
}

static void refused_s(RtHttpKind kind, const char *body, const char *want, const char *param)
{
	refused(kind, body, strlen(body), want, param);
}

static void test_chat_fields(void **state)
{
	(void)state;
	RtHttpReq rq;
	RtHttpErr e;
	const char *body = "{\"model\":\"anything\",\"messages\":[{\"role\":\"system\",\"content\":"
			   "\"be brief\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
			   "\"text\":\"hel\"},{\"type\":\"text\",\"text\":\"lo\"}]},{\"role\":"
			   "\"developer\",\"content\":null}],\"max_tokens\":12,\"temperature\":0,"
			   "\"top_p\":0.5,\"top_k\":3,\"min_p\":0.1,\"seed\":42,\"stop\":[\"a\","
			   "\"\\n\"],\"presence_penalty\":0.5,\"frequency_penalty\":-1,\"n\":1,"
			   "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
			   "\"unknown_field\":[1,2,{}]}";
	assert_int_equal(parse(RT_HTTP_CHAT, body, &rq, &e), 0);
	assert_int_equal(rq.n_msgs, 3);
	assert_string_equal(rq.msgs[0].role, "system");
	assert_string_equal(rq.msgs[1].content, "hello");
	assert_string_equal(rq.msgs[2].role, "system"); /* developer is the system message */
	assert_string_equal(rq.msgs[2].content, "");
	assert_int_equal(rq.max_tokens, 12);
	assert_true(rq.sp.temp == 0.0f);
	assert_true(rq.sp.top_p == 0.5f);
	assert_int_equal(rq.sp.top_k, 3);
	assert_true(rq.sp.min_p == 0.1f);
	assert_true(rq.sp.seed == 42);
	assert_true(rq.sp.presence_penalty == 0.5f && rq.sp.frequency_penalty == -1.0f);
	assert_int_equal(rq.n_stop, 2);
	assert_string_equal(rq.stop[1], "\n");
	assert_true(rq.stream && rq.include_usage);
	rt_http_req_free(&rq);
	/* absent fields: the defaults, a random seed, no cap */
	assert_int_equal(parse(RT_HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
					     "\"stop\":\"END\",\"max_completion_tokens\":5}",
			       &rq, &e),
			 0);
	assert_true(rq.sp.temp == 0.8f && rq.sp.top_k == 40 && rq.sp.seed == 0);
	assert_int_equal(rq.max_tokens, 5);
	assert_int_equal(rq.n_stop, 1);
	assert_string_equal(rq.stop[0], "END");
	assert_false(rq.stream);
	rt_http_req_free(&rq);
	assert_int_equal(parse(RT_HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
			       &rq, &e),
			 0);
	assert_int_equal(rq.max_tokens, -1);
	rt_http_req_free(&rq);
}

static void test_completion_prompts(void **state)
{
	(void)state;
	RtHttpReq rq;
	RtHttpErr e;
	assert_int_equal(parse(RT_HTTP_COMPLETION, "{\"prompt\":\"Once upon\"}", &rq, &e), 0);
	assert_string_equal(rq.prompt, "Once upon");
	assert_int_equal(rq.prompt_len, 9);
	assert_null(rq.prompt_ids);
	rt_http_req_free(&rq);
	assert_int_equal(parse(RT_HTTP_COMPLETION, "{\"prompt\":[\"one string\"]}", &rq, &e), 0);
	assert_string_equal(rq.prompt, "one string");
	rt_http_req_free(&rq);
	assert_int_equal(parse(RT_HTTP_COMPLETION, "{\"prompt\":[1, 2, 300]}", &rq, &e), 0);
	assert_int_equal(rq.n_prompt_ids, 3);
	assert_int_equal(rq.prompt_ids[2], 300);
	rt_http_req_free(&rq);
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "only one prompt", "prompt");
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":[1,\"b\"]}", "token ids", "prompt");
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":[1,-2]}", "token ids", "prompt");
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":[1.5]}", "token ids", "prompt");
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":[]}", "must be a string", "prompt");
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":{}}", "must be a string", "prompt");
	refused_s(RT_HTTP_COMPLETION, "{}", "'prompt' is required", "prompt");
	refused_s(RT_HTTP_CHAT, "{\"prompt\":\"x\"}", "'messages' is required", "messages");
}

static void test_wrong_types(void **state)
{
	(void)state;
	const RtHttpKind C = RT_HTTP_CHAT;
#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
	refused_s(C, "{\"messages\":\"hi\"}", "non-empty array", "messages");
	refused_s(C, "{\"messages\":[]}", "non-empty array", "messages");
	refused_s(C, "{\"messages\":[\"hi\"]}", "string 'role'", "messages");
	refused_s(C, "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "role must be",
		  "messages");
	refused_s(C, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "'content' must be",
		  "messages");
	refused_s(C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
		  "only text", "messages");
	refused_s(C, "{" MSG ",\"temperature\":\"hot\"}", "must be a number", "temperature");
	refused_s(C, "{" MSG ",\"temperature\":-1}", "out of range", "temperature");
	refused_s(C, "{" MSG ",\"top_p\":1.5}", "out of range", "top_p");
	refused_s(C, "{" MSG ",\"min_p\":true}", "must be a number", "min_p");
	refused_s(C, "{" MSG ",\"top_k\":2.5}", "integer", "top_k");
	refused_s(C, "{" MSG ",\"max_tokens\":0}", "out of range", "max_tokens");
	refused_s(C, "{" MSG ",\"max_tokens\":\"10\"}", "must be a number", "max_tokens");
	refused_s(C, "{" MSG ",\"max_completion_tokens\":-5}", "out of range",
		  "max_completion_tokens");
	refused_s(C, "{" MSG ",\"n\":2}", "'n' must be 1", "n");
	refused_s(C, "{" MSG ",\"stop\":5}", "string or an array", "stop");
	refused_s(C, "{" MSG ",\"stop\":[\"a\",1]}", "must be a string", "stop");
	refused_s(C, "{" MSG ",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
		     "\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
		  "more than 16", "stop");
	refused_s(C, "{" MSG ",\"stream\":\"yes\"}", "true or false", "stream");
	refused_s(C, "{" MSG ",\"stream_options\":[]}", "must be an object", "stream_options");
	refused_s(C, "{" MSG ",\"stream_options\":{\"include_usage\":1}}", "include_usage",
		  "stream_options");
	refused_s(C, "{" MSG ",\"seed\":\"x\"}", "must be a number", "seed");
	refused_s(C, "{" MSG ",\"presence_penalty\":3}", "out of range", "presence_penalty");
#undef MSG
}

/* Huge numbers, deep nesting, broken JSON, bytes that are not UTF-8. */
static void test_hostile_bodies(void **state)
{
	(void)state;
	const RtHttpKind C = RT_HTTP_CHAT;
#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
	refused_s(C, "{" MSG ",\"max_tokens\":1e999}", "out of range", "max_tokens");
	refused_s(C, "{" MSG ",\"max_tokens\":99999999999999999999999999}", "out of range",
		  "max_tokens");
	refused_s(C, "{" MSG ",\"temperature\":-1e999}", "out of range", "temperature");
	refused_s(C, "{" MSG ",\"seed\":1e300}", "out of range", "seed");
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":[1e10]}", "token ids", "prompt");
	/* nesting far past cJSON's limit: refused without exhausting the stack */
	size_t depth = 200000;
	char *deep = malloc(2 * depth + 16);
	assert_non_null(deep);
	size_t n = 0;
	n += (size_t)sprintf(deep, "{\"x\":");
	for (size_t i = 0; i < depth; i++)
		deep[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	refused(C, deep, n, "not valid JSON", NULL);
	free(deep);
	refused_s(C, "", "not valid JSON", NULL);
	refused_s(C, "{\"messages\":", "not valid JSON", NULL);
	refused_s(C, "{" MSG "} trailing", "bytes after", NULL);
	refused_s(C, "[1,2]", "must be a JSON object", NULL);
	refused_s(C, "\"str\"", "must be a JSON object", NULL);
	/* a NUL inside the body: the JSON ends there, the rest is not whitespace */
	static const char nul[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\0{}";
	refused(C, nul, sizeof nul - 1, "bytes after", NULL);
	/* raw bytes that are not UTF-8, in content, prompt and stop */
	refused_s(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", "UTF-8",
		  "messages");
	refused_s(C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
		     "\"\xc0\xaf\"}]}]}",
		  "UTF-8", "messages");
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":\"\xed\xa0\x80\"}", "UTF-8", "prompt");
	refused_s(RT_HTTP_COMPLETION, "{\"prompt\":\"ok\",\"stop\":\"\xe2\x82\"}", "UTF-8",
		  "stop");
	/* a lone surrogate escape is not a character */
	RtHttpReq rq;
	RtHttpErr e;
	int rc = parse(RT_HTTP_COMPLETION, "{\"prompt\":\"\\ud800\"}", &rq, &e);
	if (!rc) {
		assert_true(rt_http_utf8_ok(rq.prompt, rq.prompt_len));
		rt_http_req_free(&rq);
	} else {
		assert_int_equal(e.status, 400);
	}
	/* escapes that are characters pass */
	assert_int_equal(parse(RT_HTTP_COMPLETION, "{\"prompt\":\"\\u00e9\\ud83d\\ude00\"}", &rq,
			       &e),
			 0);
	assert_string_equal(rq.prompt, "\xc3\xa9\xf0\x9f\x98\x80");
	rt_http_req_free(&rq);
#undef MSG
}

static void test_utf8(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int ok;
	} v[] = {{"plain", 1},      {"\xc3\xa9", 1},     {"\xe2\x82\xac", 1},
		 {"\xf0\x9f\x98\x80", 1}, {"\xc3", 0},      {"\xc1\xbf", 0},
		 {"\xe0\x80\xaf", 0}, {"\xed\xa0\x80", 0}, {"\xf4\x90\x80\x80", 0},
		 {"\xf8\x88\x80\x80\x80", 0}, {"\x80", 0}, {"\xe2\x28\xa1", 0}};
	for (size_t i = 0; i < sizeof v / sizeof *v; i++)
		if (rt_http_utf8_ok(v[i].s, strlen(v[i].s)) != v[i].ok)
			fail_msg("utf8 case %zu: wanted %d", i, v[i].ok);
}

/* A printed response read back with cJSON. */
static cJSON *json_of(char *s)
{
	assert_non_null(s);
	cJSON *j = cJSON_Parse(s);
	free(s);
	assert_non_null(j);
	return j;
}

static const cJSON *at(const cJSON *o, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof buf, "%s", path);
	const cJSON *j = o;
	for (char *k = strtok(buf, "."); k && j; k = strtok(NULL, "."))
		j = (*k >= '0' && *k <= '9') ? cJSON_GetArrayItem(j, atoi(k))
					     : cJSON_GetObjectItemCaseSensitive(j, k);
	if (!j)
		fail_msg("no %s", path);
	return j;
}

static void test_responses(void **state)
{
	(void)state;
	RtHttpResp chat = {RT_HTTP_CHAT, "chatcmpl-1", 1700000000, "tiny"};
	RtHttpResp cmpl = {RT_HTTP_COMPLETION, "cmpl-2", 1700000001, "tiny"};
	cJSON *j = json_of(rt_http_full_json(&chat, "a \"quoted\"\nline", 16, "stop", 7, 3));
	assert_string_equal(at(j, "object")->valuestring, "chat.completion");
	assert_string_equal(at(j, "id")->valuestring, "chatcmpl-1");
	assert_string_equal(at(j, "choices.0.message.role")->valuestring, "assistant");
	assert_string_equal(at(j, "choices.0.message.content")->valuestring, "a \"quoted\"\nline");
	assert_string_equal(at(j, "choices.0.finish_reason")->valuestring, "stop");
	assert_int_equal(at(j, "usage.total_tokens")->valueint, 10);
	assert_int_equal(at(j, "created")->valuedouble, 1700000000);
	cJSON_Delete(j);
	j = json_of(rt_http_full_json(&cmpl, "xyz", 2, "length", 1, 2));
	assert_string_equal(at(j, "object")->valuestring, "text_completion");
	assert_string_equal(at(j, "choices.0.text")->valuestring, "xy");
	assert_string_equal(at(j, "choices.0.finish_reason")->valuestring, "length");
	cJSON_Delete(j);
	/* server-sent events: "data: " JSON "\n\n" */
	char *ev = rt_http_chunk_sse(&chat, "", 0, 1, NULL, -1, 0);
	assert_non_null(ev);
	assert_memory_equal(ev, "data: {", 7);
	size_t l = strlen(ev);
	assert_true(l > 9 && !strcmp(ev + l - 2, "\n\n"));
	assert_ptr_equal(strchr(ev, '\n'), ev + l - 2); /* one line of JSON */
	j = cJSON_Parse(ev + 6);
	free(ev);
	assert_string_equal(at(j, "choices.0.delta.role")->valuestring, "assistant");
	assert_string_equal(at(j, "choices.0.delta.content")->valuestring, "");
	cJSON_Delete(j);
	ev = rt_http_chunk_sse(&chat, "tok\n", 4, 0, NULL, -1, 0);
	j = cJSON_Parse(ev + 6);
	free(ev);
	assert_non_null(j);
	assert_string_equal(at(j, "object")->valuestring, "chat.completion.chunk");
	assert_string_equal(at(j, "choices.0.delta.content")->valuestring, "tok\n");
	assert_true(cJSON_IsNull(at(j, "choices.0.finish_reason")));
	assert_null(cJSON_GetObjectItemCaseSensitive(at(j, "choices.0.delta"), "role"));
	cJSON_Delete(j);
	ev = rt_http_chunk_sse(&chat, "", 0, 0, "length", -1, 0);
	j = cJSON_Parse(ev + 6);
	free(ev);
	assert_string_equal(at(j, "choices.0.finish_reason")->valuestring, "length");
	assert_null(cJSON_GetObjectItemCaseSensitive(at(j, "choices.0.delta"), "content"));
	cJSON_Delete(j);
	ev = rt_http_chunk_sse(&cmpl, NULL, 0, 0, NULL, 4, 5);
	j = cJSON_Parse(ev + 6);
	free(ev);
	assert_int_equal(cJSON_GetArraySize(at(j, "choices")), 0);
	assert_int_equal(at(j, "usage.completion_tokens")->valueint, 5);
	cJSON_Delete(j);
	RtHttpErr e = {.status = 400, .message = "bad", .param = "stop", .code = "invalid_type"};
	j = json_of(rt_http_error_json(&e));
	assert_string_equal(at(j, "error.type")->valuestring, "invalid_request_error");
	assert_string_equal(at(j, "error.param")->valuestring, "stop");
	assert_string_equal(at(j, "error.code")->valuestring, "invalid_type");
	cJSON_Delete(j);
	e = (RtHttpErr){.status = 503, .message = "busy"};
	j = json_of(rt_http_error_json(&e));
	assert_true(cJSON_IsNull(at(j, "error.param")) && cJSON_IsNull(at(j, "error.code")));
	cJSON_Delete(j);
	j = json_of(rt_http_models_json("tiny", 5));
	assert_string_equal(at(j, "data.0.id")->valuestring, "tiny");
	cJSON_Delete(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chat_fields),   cmocka_unit_test(test_completion_prompts),
		cmocka_unit_test(test_wrong_types),   cmocka_unit_test(test_hostile_bodies),
		cmocka_unit_test(test_utf8),          cmocka_unit_test(test_responses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

#else
static void test_no_cjson(void **state)
{
	(void)state;
	print_message("skipped: the server's JSON (rt_http_req.c): libcjson was not found when "
		      "this tree was configured\n");
	skip();
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_no_cjson)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
