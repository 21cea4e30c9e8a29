/* test_server.c - a program built with --server, over real HTTP with curl: every endpoint,
 * streaming (SSE framing, [DONE], deltas that add up to the whole response), every refusal
 * (400, 401, 404, 405, 413, 503), 8 concurrent greedy streams that each equal their request
 * alone, 8 concurrent completions (greedy and seeded) that each equal the program's own
 * output, a client that hangs up mid-stream (its slot freed), and SIGTERM's drain (a running
 * request completes, exit 0). The model: 1 layer, the Llama 3 vocabulary and chat
 * template. Skipped where curl or libmicrohttpd / libcjson are missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef BN_HAVE_CJSON
#include <cjson/cJSON.h>
#endif

/* In a sanitized build the server program is built with AddressSanitizer and UBSan too. */
#if defined(__SANITIZE_ADDRESS__)
#define PROG_SAN "--cflags '-fsanitize=address,undefined -fno-sanitize-recover=undefined'"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROG_SAN "--cflags '-fsanitize=address,undefined -fno-sanitize-recover=undefined'"
#endif
#endif
#ifndef PROG_SAN
#define PROG_SAN ""
#endif

static char gguf[1200], prog[1200], plain[1200];
static const char *skip_why; /* set by setup: why every test skips */

/* A running server: its process, port and stderr log. */
typedef struct {
	pid_t pid;
	int port;
	char log[1200];
} Srv;

static Srv srv_main; /* -np 8, shared by the tests that need no flags of their own */
static pid_t started[16]; /* every server started, killed at the end if still running */
static int n_started;

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int setup(void **state)
{
	(void)state;
#ifndef BN_HAVE_CJSON
	skip_why = "libcjson was not found when this tree was configured";
	return 0;
#else
	if (tu_run(NULL, "command -v curl >/dev/null 2>&1") != 0) {
		skip_why = "no curl here";
		return 0;
	}
	snprintf(gguf, sizeof gguf, "%s", tu_tmp("server_l3.gguf"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("server_l3"));
	snprintf(plain, sizeof plain, "%s", tu_tmp("server_l3_plain"));
	char *log = NULL;
	int rc = tu_run(&log, "'%s' mkmodel --shape tiny --llama3-vocab --layers 1 --hidden 256 "
			"--ffn 256 --heads 2 --kv-heads 1 --vocab 128256 --seed 3 -o '%s' && "
			"'%s' build '%s' -o '%s'",
			tu_bitnetc(), gguf, tu_bitnetc(), gguf, plain);
	if (!rc) {
		free(log);
		log = NULL;
		rc = tu_run(&log, "'%s' build '%s' --server -o '%s' %s", tu_bitnetc(), gguf, prog,
			    PROG_SAN);
		if (rc && log && strstr(log, "--server needs libmicrohttpd")) {
			skip_why = "libmicrohttpd or libcjson (with headers) not found by pkg-config";
			rc = 0;
		}
	}
	if (rc)
		fprintf(stderr, "making the server program failed:\n%s\n", log ? log : "");
	free(log);
	return rc ? -1 : 0;
#endif
}

#define SKIP_UNLESS_READY()                                                                 \
	do {                                                                                \
		if (skip_why) {                                                             \
			print_message("skipped: the --server program: %s\n", skip_why);     \
			skip();                                                             \
		}                                                                           \
	} while (0)

/* ---- the server process ------------------------------------------------------- */

/* Starts prog --server --port 0 with extra flags; waits until it says its port and /health
 * answers 200. */
static void srv_start(Srv *s, const char *name, const char *extra)
{
	snprintf(s->log, sizeof s->log, "%s", tu_tmp(name));
	unlink(s->log);
	s->port = 0;
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid > 0 && n_started < 16)
		started[n_started++] = s->pid;
	if (s->pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		char cmd[4096];
		snprintf(cmd, sizeof cmd, "exec '%s' --server --port 0 -t 2 %s", prog, extra);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 600 && !s->port; i++) {
		size_t n;
		char *t = tu_read_file(s->log, &n);
		char *at = t ? strstr(t, "listening on http://127.0.0.1:") : NULL;
		if (at)
			s->port = atoi(at + strlen("listening on http://127.0.0.1:"));
		free(t);
		if (!s->port)
			sleep_ms(50);
	}
	if (!s->port) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		fail_msg("the server did not say its port (log %s)", s->log);
	}
	for (int i = 0; i < 600; i++) {
		char *out = NULL;
		tu_run(&out, "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/health",
		       s->port);
		int ok = out && !strcmp(out, "200");
		free(out);
		if (ok)
			return;
		sleep_ms(50);
	}
	fail_msg("/health never answered 200 (log %s)", s->log);
}

/* SIGTERM, then the exit status (fails the test past 60 s). */
static int srv_stop(Srv *s)
{
	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	int st = 0;
	for (int i = 0; i < 1200; i++) {
		pid_t r = waitpid(s->pid, &st, WNOHANG);
		if (r == s->pid) {
			s->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		sleep_ms(50);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
	fail_msg("the server did not exit within 60 s of SIGTERM");
	return -1;
}

static int group_setup(void **state)
{
	if (setup(state))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < n_started; i++)
		if (waitpid(started[i], NULL, WNOHANG) == 0) {
			kill(started[i], SIGKILL);
			waitpid(started[i], NULL, 0);
		}
	return 0;
}

/* The shared server, started by the first test that needs it. */
static Srv *main_srv(void)
{
	if (!srv_main.pid)
		srv_start(&srv_main, "server_main.log", "-np 8 -c 8192");
	return &srv_main;
}

/* ---- HTTP through curl -------------------------------------------------------- */

/* curl with args (after "curl -sS"), the body in a file when body is not NULL; returns the
 * response body (malloc'd), *status its HTTP status. */
static char *http(const Srv *s, int *status, const char *body, const char *fmt, ...)
	BN_PRINTF(4, 5);
static char *http(const Srv *s, int *status, const char *body, const char *fmt, ...)
{
	char args[2048], path[1200] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	static int k;
	if (body) {
		char name[64];
		snprintf(name, sizeof name, "server_body_%d_%d.json", (int)getpid(), k++);
		snprintf(path, sizeof path, "%s", tu_tmp_text(name, body));
	}
	char *out = NULL;
	int rc = tu_run(&out, "curl -sS -w '\\n%%{http_code}' %s%s%s -H 'Content-Type: "
			      "application/json' %s",
			body ? "--data-binary @'" : "", path, body ? "'" : "", args);
	(void)s;
	assert_non_null(out);
	if (rc != 0)
		tu_fail_log(out, "curl %s failed (exit %d)", args, rc);
	char *nl = strrchr(out, '\n');
	assert_non_null(nl);
	*status = atoi(nl + 1);
	*nl = 0;
	if (body)
		unlink(path);
	return out;
}

static char url_buf[8][128];
static const char *url(const Srv *s, const char *path)
{
	static int slot;
	char *u = url_buf[slot++ % 8];
	snprintf(u, 128, "http://127.0.0.1:%d%s", s->port, path);
	return u;
}

#ifdef BN_HAVE_CJSON
static cJSON *parse_json(const char *text)
{
	cJSON *j = cJSON_Parse(text);
	if (!j)
		fail_msg("not JSON: %.400s", text);
	return j;
}

static const cJSON *at(const cJSON *o, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof buf, "%s", path);
	const cJSON *j = o;
	char *save = NULL;
	for (char *k = strtok_r(buf, ".", &save); k && j; k = strtok_r(NULL, ".", &save))
		j = (*k >= '0' && *k <= '9') ? cJSON_GetArrayItem(j, atoi(k))
					     : cJSON_GetObjectItemCaseSensitive(j, k);
	if (!j)
		fail_msg("no %s in the response", path);
	return j;
}

/* The response is an OpenAI error of status want whose message holds frag. */
static void expect_error(int status, int want, char *body, const char *frag)
{
	if (status != want)
		tu_fail_log(body, "HTTP %d, wanted %d", status, want);
	cJSON *j = parse_json(body);
	const char *msg = at(j, "error.message")->valuestring;
	assert_non_null(at(j, "error.type")->valuestring);
	if (!msg || !strstr(msg, frag))
		fail_msg("error \"%s\" does not say \"%s\"", msg ? msg : "", frag);
	cJSON_Delete(j);
	free(body);
}

/* The events of an SSE body: each "data: X\n\n"; checks the framing, returns the
 * payloads (malloc'd array of pointers into body, NULL-terminated). */
static char **sse_events(char *body, int *n)
{
	int cap = 64, k = 0;
	char **ev = malloc((size_t)cap * sizeof *ev);
	char *p = body;
	while (*p) {
		if (strncmp(p, "data: ", 6))
			fail_msg("an event does not start with \"data: \": %.200s", p);
		char *end = strstr(p, "\n\n");
		if (!end)
			fail_msg("an event does not end with a blank line: %.200s", p);
		*end = 0;
		if (k + 2 > cap)
			ev = realloc(ev, (size_t)(cap *= 2) * sizeof *ev);
		ev[k++] = p + 6;
		p = end + 2;
	}
	ev[k] = NULL;
	*n = k;
	return ev;
}

/* The text of a streamed response, its events checked: the chat's first chunk carries the
 * role, one chunk has the finish_reason, [DONE] last; *usage (may be NULL) gets the usage
 * chunk's completion_tokens (-1: none). */
static char *stream_text(char *body, int chat, char *finish, int *usage)
{
	int n;
	char **ev = sse_events(body, &n);
	assert_true(n >= 3);
	assert_string_equal(ev[n - 1], "[DONE]");
	char *text = calloc(1, 1);
	size_t len = 0;
	int finished = 0;
	if (usage)
		*usage = -1;
	for (int i = 0; i < n - 1; i++) {
		cJSON *j = parse_json(ev[i]);
		assert_string_equal(at(j, "object")->valuestring,
				    chat ? "chat.completion.chunk" : "text_completion");
		assert_true(!strncmp(at(j, "id")->valuestring, chat ? "chatcmpl-" : "cmpl-",
				     chat ? 9 : 5));
		const cJSON *cs = at(j, "choices");
		if (cJSON_GetArraySize(cs) == 0) {
			/* the usage chunk, after the finish */
			assert_true(finished && usage);
			*usage = at(j, "usage.completion_tokens")->valueint;
			cJSON_Delete(j);
			continue;
		}
		assert_false(finished);
		if (chat && i == 0)
			assert_string_equal(at(j, "choices.0.delta.role")->valuestring, "assistant");
		const cJSON *fr = at(j, "choices.0.finish_reason");
		const cJSON *piece =
			chat ? cJSON_GetObjectItemCaseSensitive(at(j, "choices.0.delta"), "content")
			     : at(j, "choices.0.text");
		if (piece && cJSON_IsString(piece)) {
			size_t l = strlen(piece->valuestring);
			text = realloc(text, len + l + 1);
			memcpy(text + len, piece->valuestring, l + 1);
			len += l;
		}
		if (cJSON_IsString(fr)) {
			snprintf(finish, 16, "%s", fr->valuestring);
			finished = 1;
		}
		cJSON_Delete(j);
	}
	assert_true(finished);
	free(ev);
	return text;
}
#endif

/* ---- the tests ------------------------------------------------------------------ */

static void test_without_server(void **state)
{
	(void)state;
	if (skip_why && !plain[0]) {
		print_message("skipped: %s\n", skip_why);
		skip();
	}
	char *out = tu_run_ok(1, "'%s' --server", plain);
	tu_expect_has(out, "built without the server");
	tu_expect_has(out, "--server");
	free(out);
	out = tu_run_ok(0, "'%s' --info", plain);
	if (strstr(out, "libmicrohttpd"))
		tu_fail_log(out, "--info of a program without the server names libmicrohttpd");
	free(out);
	if (skip_why)
		return;
	out = tu_run_ok(0, "'%s' --info", prog);
	tu_expect_has(out, "needs the shared libraries libmicrohttpd and libcjson");
	free(out);
	/* a --host that is no address; flags that do not go with --server */
	out = tu_run_ok(1, "'%s' --server --host localhost", prog);
	tu_expect_has(out, "is not an IPv4 or IPv6 address");
	free(out);
	out = tu_run_ok(1, "'%s' --server -p hello", prog);
	tu_expect_has(out, "--server takes its prompts over HTTP");
	free(out);
	/* a port in use */
	Srv *s = main_srv();
	out = tu_run_ok(2, "'%s' --server --port %d", prog, s->port);
	tu_expect_has(out, "cannot listen on 127.0.0.1 port");
	free(out);
}

/* --server where pkg-config finds no libmicrohttpd or libcjson, and with --lib. */
static void test_build_refusals(void **state)
{
	(void)state;
	if (!gguf[0]) {
		print_message("skipped: %s\n", skip_why);
		skip();
	}
	const char *out = tu_tmp("server_nolibs");
	char *log = tu_run_ok(2, "PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH= '%s' build '%s' "
				 "--server -o '%s'",
			      tu_bitnetc(), gguf, out);
	tu_expect_has(log, "--server needs libmicrohttpd and libcjson");
	tu_expect_has(log, "libmicrohttpd-dev libcjson-dev");
	free(log);
	assert_int_not_equal(access(out, F_OK), 0);
	log = tu_run_ok(1, "'%s' build '%s' --server --lib -o '%s.a'", tu_bitnetc(), gguf, out);
	tu_expect_has(log, "--server: only for a program");
	free(log);
}

#ifdef BN_HAVE_CJSON
static const char *chat_body(const char *user, int n, int stream)
{
	static char b[4][1024];
	static int slot;
	char *s = b[slot++ % 4];
	snprintf(s, 1024,
		 "{\"model\":\"whatever\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief."
		 "\"},{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,\"temperature\":0%s}",
		 user, n, stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "");
	return s;
}

static void test_endpoints(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv *s = main_srv();
	int st;
	char *b = http(s, &st, NULL, "%s", url(s, "/health"));
	assert_int_equal(st, 200);
	assert_string_equal(b, "{\"status\":\"ok\"}");
	free(b);
	b = http(s, &st, NULL, "%s", url(s, "/v1/models"));
	assert_int_equal(st, 200);
	cJSON *j = parse_json(b);
	const char *model = at(j, "data.0.id")->valuestring;
	assert_true(model && *model);
	char name[256];
	snprintf(name, sizeof name, "%s", model);
	cJSON_Delete(j);
	free(b);
	/* chat, whole */
	b = http(s, &st, chat_body("Hello there", 8, 0), "%s", url(s, "/v1/chat/completions"));
	if (st != 200)
		tu_fail_log(b, "chat: HTTP %d", st);
	j = parse_json(b);
	assert_string_equal(at(j, "object")->valuestring, "chat.completion");
	assert_true(!strncmp(at(j, "id")->valuestring, "chatcmpl-", 9));
	assert_string_equal(at(j, "model")->valuestring, name);
	assert_true(at(j, "created")->valuedouble > 1.6e9);
	assert_string_equal(at(j, "choices.0.message.role")->valuestring, "assistant");
	assert_true(cJSON_IsString(at(j, "choices.0.message.content")));
	const char *fin = at(j, "choices.0.finish_reason")->valuestring;
	assert_true(!strcmp(fin, "stop") || !strcmp(fin, "length"));
	int pt = at(j, "usage.prompt_tokens")->valueint, ct = at(j, "usage.completion_tokens")->valueint;
	assert_true(pt > 10 && ct >= 1 && ct <= 8);
	assert_int_equal(at(j, "usage.total_tokens")->valueint, pt + ct);
	if (!strcmp(fin, "length"))
		assert_int_equal(ct, 8);
	cJSON_Delete(j);
	free(b);
	/* completions: a text prompt, token ids, an array of one string */
	static const char *const prompts[] = {"\"Once upon a time\"", "[128000, 12805, 5304, 264, 892]",
					      "[\"Once upon a time\"]"};
	char first[4096] = "";
	for (int i = 0; i < 3; i++) {
		char body[512];
		snprintf(body, sizeof body, "{\"prompt\":%s,\"max_tokens\":6,\"temperature\":0}",
			 prompts[i]);
		b = http(s, &st, body, "%s", url(s, "/v1/completions"));
		if (st != 200)
			tu_fail_log(b, "completion %d: HTTP %d", i, st);
		j = parse_json(b);
		assert_string_equal(at(j, "object")->valuestring, "text_completion");
		assert_true(!strncmp(at(j, "id")->valuestring, "cmpl-", 5));
		assert_int_equal(at(j, "usage.prompt_tokens")->valueint, 5);
		const char *text = at(j, "choices.0.text")->valuestring;
		/* the text prompt encodes as those ids (BOS first): the same greedy text */
		if (i == 0)
			snprintf(first, sizeof first, "%s", text);
		else
			assert_string_equal(text, first);
		cJSON_Delete(j);
		free(b);
	}
	/* /metrics: Prometheus text with the counters and histograms */
	b = http(s, &st, NULL, "%s", url(s, "/metrics"));
	assert_int_equal(st, 200);
	static const char *const names[] = {
		"bitnetc_requests_total{code=\"200\"}", "bitnetc_prompt_tokens_total ",
		"bitnetc_generated_tokens_total ", "bitnetc_slots 8", "bitnetc_slots_active ",
		"bitnetc_queue_length ", "bitnetc_time_to_first_token_seconds_bucket{le=\"+Inf\"}",
		"bitnetc_inter_token_latency_seconds_count ", "bitnetc_request_duration_seconds_sum ",
		"# TYPE bitnetc_request_duration_seconds histogram"};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		tu_expect_has(b, names[i]);
	free(b);
}

/* The program's own greedy output for the same text prompt: the same tokens (one slot:
 * the engine then decodes as bn_generate does, one-row steps included). */
static void test_matches_program(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv one;
	srv_start(&one, "server_one.log", "-np 1");
	Srv *s = &one;
	int st;
	char *b = http(s, &st, "{\"prompt\":\"The capital of France\",\"max_tokens\":12,"
			       "\"temperature\":0}",
		       "%s", url(s, "/v1/completions"));
	assert_int_equal(st, 200);
	cJSON *j = parse_json(b);
	free(b);
	int ct = at(j, "usage.completion_tokens")->valueint;
	char *out = tu_run_ok(0, "'%s' -p 'The capital of France' -n %d --temp 0 -t 2 --no-display-prompt 2>/dev/null",
			      prog, ct);
	size_t ol = strlen(out);
	if (ol && out[ol - 1] == '\n') /* the program ends its output with a newline */
		out[ol - 1] = 0;
	if (strcmp(out, at(j, "choices.0.text")->valuestring))
		fail_msg("the server said \"%s\", the program \"%s\"",
			 at(j, "choices.0.text")->valuestring, out);
	free(out);
	cJSON_Delete(j);
	assert_int_equal(srv_stop(s), 0);
}

static void test_stream(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv *s = main_srv();
	int st, usage;
	char finish[16], finish2[16];
	for (int chat = 1; chat >= 0; chat--) {
		const char *path = chat ? "/v1/chat/completions" : "/v1/completions";
		const char *whole_body = chat ? chat_body("Tell me a story", 24, 0)
					      : "{\"prompt\":\"Tell me a story\",\"max_tokens\":24,"
						"\"temperature\":0}";
		char stream_body[1024];
		snprintf(stream_body, sizeof stream_body, "%.*s,\"stream\":true,\"stream_options\":"
			 "{\"include_usage\":true}}", (int)strlen(whole_body) - 1, whole_body);
		char *b = http(s, &st, whole_body, "%s", url(s, path));
		assert_int_equal(st, 200);
		cJSON *j = parse_json(b);
		free(b);
		b = http(s, &st, stream_body, "-N %s", url(s, path));
		assert_int_equal(st, 200);
		char *text = stream_text(b, chat, finish, &usage);
		const char *want = chat ? at(j, "choices.0.message.content")->valuestring
					: at(j, "choices.0.text")->valuestring;
		if (strcmp(text, want))
			fail_msg("%s: the deltas make \"%s\", the whole response \"%s\"", path, text,
				 want);
		snprintf(finish2, sizeof finish2, "%s", at(j, "choices.0.finish_reason")->valuestring);
		assert_string_equal(finish, finish2);
		assert_int_equal(usage, at(j, "usage.completion_tokens")->valueint);
		free(text);
		free(b);
		cJSON_Delete(j);
	}
	/* without include_usage: no usage chunk */
	char *b = http(s, &st, "{\"prompt\":\"Hi\",\"max_tokens\":3,\"temperature\":0,\"stream\":true}",
		       "-N %s", url(s, "/v1/completions"));
	assert_int_equal(st, 200);
	char *text = stream_text(b, 0, finish, NULL);
	free(text);
	free(b);
}

/* The value of a metric line "NAME VALUE" in /metrics (-1: none). */
static double metric(const Srv *s, const char *name)
{
	int st;
	char *b = http(s, &st, NULL, "%s", url(s, "/metrics"));
	assert_int_equal(st, 200);
	double v = -1;
	size_t l = strlen(name);
	for (char *line = b; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, name, l) && line[l] == ' ')
			v = atof(line + l + 1);
	free(b);
	return v;
}

/* Polls until metric name reaches want (10 s at most); returns the last value. */
static double metric_wait(const Srv *s, const char *name, double want)
{
	double v = -1;
	for (int i = 0; i < 200; i++) {
		if ((v = metric(s, name)) == want)
			break;
		sleep_ms(50);
	}
	return v;
}

static void test_errors(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv *s = main_srv();
	int st;
	const char *chat = url(s, "/v1/chat/completions"), *cmpl = url(s, "/v1/completions");
	char *b = http(s, &st, "{\"messages\":[{\"role\":\"user\",", "%s", chat);
	expect_error(st, 400, b, "not valid JSON");
	b = http(s, &st, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}",
		 "%s", chat);
	expect_error(st, 400, b, "'temperature' must be a number");
	b = http(s, &st, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "%s", chat);
	expect_error(st, 400, b, "'n' must be 1");
	b = http(s, &st, "{\"prompt\":[1, 2, 999999]}", "%s", cmpl);
	expect_error(st, 400, b, "outside the vocabulary");
	/* a prompt longer than a slot's context (-c 8192 over 8 slots: 1024 each) */
	char *longp = malloc(16 * 1100 + 64);
	size_t n = (size_t)sprintf(longp, "{\"prompt\":[");
	for (int i = 0; i < 1100; i++)
		n += (size_t)sprintf(longp + n, "%s%d", i ? "," : "", 1000 + i);
	sprintf(longp + n, "],\"max_tokens\":2}");
	b = http(s, &st, longp, "%s", cmpl);
	free(longp);
	if (!strstr(b, "context_length_exceeded"))
		tu_fail_log(b, "no context_length_exceeded code");
	expect_error(st, 400, b, "do not fit a slot's context");
	b = http(s, &st, NULL, "%s", url(s, "/v2/nothing"));
	expect_error(st, 404, b, "no route");
	b = http(s, &st, NULL, "%s", chat); /* GET */
	expect_error(st, 405, b, "takes POST");
	b = http(s, &st, "{}", "%s", url(s, "/health"));
	expect_error(st, 405, b, "takes GET");
	/* a body over the 4 MiB limit */
	const char *big = tu_tmp("server_big.json");
	FILE *f = fopen(big, "wb");
	assert_non_null(f);
	fputs("{\"prompt\":\"", f);
	for (int i = 0; i < 5 << 20; i += 64)
		fputs("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", f);
	fputs("\"}", f);
	fclose(f);
	b = http(s, &st, NULL, "--data-binary @'%s' %s", big, cmpl);
	unlink(big);
	expect_error(st, 413, b, "larger than 4194304 bytes");
	/* still serving */
	b = http(s, &st, "{\"prompt\":\"ok\",\"max_tokens\":1}", "%s", cmpl);
	assert_int_equal(st, 200);
	free(b);
	assert_true(metric(s, "bitnetc_requests_total{code=\"413\"}") >= 1);
}

static void test_api_key(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv s;
	srv_start(&s, "server_key.log", "-np 1 --api-key sekret");
	int st;
	char *b = http(&s, &st, NULL, "%s", url(&s, "/health")); /* exempt */
	assert_int_equal(st, 200);
	free(b);
	b = http(&s, &st, NULL, "%s", url(&s, "/v1/models"));
	expect_error(st, 401, b, "API key");
	b = http(&s, &st, NULL, "-H 'Authorization: Bearer sekreT' %s", url(&s, "/v1/models"));
	expect_error(st, 401, b, "API key");
	b = http(&s, &st, "{\"prompt\":\"x\",\"max_tokens\":1}", "-H 'Authorization: Bearer sek' %s",
		 url(&s, "/v1/completions"));
	expect_error(st, 401, b, "API key");
	b = http(&s, &st, "{\"prompt\":\"x\",\"max_tokens\":1}",
		 "-H 'Authorization: Bearer sekret' %s", url(&s, "/v1/completions"));
	assert_int_equal(st, 200);
	free(b);
	assert_int_equal(srv_stop(&s), 0);
}

/* A long stream in the background (curl's pid); its output into out. */
static pid_t long_stream(const Srv *s, const char *out, int max_time)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char cmd[2048];
		snprintf(cmd, sizeof cmd,
			 "exec curl -sN --max-time %d -o '%s' %s -H 'Content-Type: application/json' "
			 "-d '{\"prompt\":\"Once upon a time\",\"max_tokens\":1000000,\"temperature\":0,"
			 "\"stream\":true}'",
			 max_time, out, url(s, "/v1/completions"));
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* One slot, no queue: a second request while the first runs is 503; the first's client
 * hangs up, its slot is free at once, and a new request runs. */
static void test_busy_and_disconnect(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv s;
	srv_start(&s, "server_busy.log", "-np 1 --queue 0 -c 8192");
	const char *out = tu_tmp("server_busy.out");
	pid_t c = long_stream(&s, out, 120);
	assert_true(metric_wait(&s, "bitnetc_slots_active", 1) == 1);
	int st;
	char *b = http(&s, &st, "{\"prompt\":\"x\",\"max_tokens\":1}", "%s",
		       url(&s, "/v1/completions"));
	expect_error(st, 503, b, "every slot is busy");
	double cancelled = metric(&s, "bitnetc_requests_finished_total{reason=\"cancelled\"}");
	kill(c, SIGKILL); /* the client goes away mid-stream */
	waitpid(c, NULL, 0);
	assert_true(metric_wait(&s, "bitnetc_slots_active", 0) == 0);
	assert_true(metric(&s, "bitnetc_requests_finished_total{reason=\"cancelled\"}") ==
		    cancelled + 1);
	b = http(&s, &st, "{\"prompt\":\"x\",\"max_tokens\":2}", "%s", url(&s, "/v1/completions"));
	assert_int_equal(st, 200);
	free(b);
	/* the same with curl's own time limit */
	c = long_stream(&s, out, 1);
	int cst = 0;
	waitpid(c, &cst, 0);
	assert_int_equal(WEXITSTATUS(cst), 28); /* curl: operation timed out */
	assert_true(metric_wait(&s, "bitnetc_slots_active", 0) == 0);
	assert_true(metric(&s, "bitnetc_requests_finished_total{reason=\"cancelled\"}") ==
		    cancelled + 2);
	unlink(out);
	assert_int_equal(srv_stop(&s), 0);
}

/* SIGTERM while a request runs: it completes whole, then the process exits 0. */
static void test_drain(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv s;
	srv_start(&s, "server_drain.log", "-np 2 --drain-timeout 120");
	const char *out = tu_tmp("server_drain.out");
	unlink(out);
	pid_t c = fork();
	assert_true(c >= 0);
	if (c == 0) {
		char cmd[2048];
		snprintf(cmd, sizeof cmd,
			 "exec curl -sS -o '%s' -w '%%{http_code}' %s -H 'Content-Type: "
			 "application/json' -d '{\"prompt\":[128000,12805,5304,264,892],"
			 "\"max_tokens\":200,\"temperature\":0}' > '%s.code'",
			 out, url(&s, "/v1/completions"), out);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	assert_true(metric_wait(&s, "bitnetc_slots_active", 1) == 1);
	assert_int_equal(srv_stop(&s), 0);
	int cst = 0;
	waitpid(c, &cst, 0);
	assert_int_equal(WEXITSTATUS(cst), 0);
	char code_path[1300];
	snprintf(code_path, sizeof code_path, "%s.code", out);
	size_t n;
	char *code = tu_read_file(code_path, &n);
	assert_non_null(code);
	code = realloc(code, n + 1);
	code[n] = 0;
	assert_string_equal(code, "200");
	free(code);
	char *body = tu_read_file(out, &n);
	assert_non_null(body);
	body = realloc(body, n + 1);
	body[n] = 0;
	cJSON *j = parse_json(body);
	int ct = at(j, "usage.completion_tokens")->valueint;
	const char *fin = at(j, "choices.0.finish_reason")->valuestring;
	assert_true(ct == 200 || !strcmp(fin, "stop"));
	cJSON_Delete(j);
	free(body);
	char *log = tu_read_file(s.log, &n);
	assert_non_null(log);
	log = realloc(log, n + 1);
	log[n] = 0;
	tu_expect_has(log, "draining");
	free(log);
}

/* The 8 bodies posted to route at once (curl in one shell: started together, waited for
 * together; flags: extra curl flags, "-N" to stream); res[i] gets the i-th response body,
 * NUL-terminated (the caller frees them). tag names the temporary files. */
static void post_eight(Srv *s, const char *tag, const char *flags, const char *route,
		       char body[8][1024], char *res[8])
{
	char cmd[16384] = "", path[8][1200], out[8][1200];
	size_t n = 0;
	for (int i = 0; i < 8; i++) {
		char name[64];
		snprintf(name, sizeof name, "%s_%d.json", tag, i);
		snprintf(path[i], sizeof path[i], "%s", tu_tmp_text(name, body[i]));
		snprintf(name, sizeof name, "%s_%d.out", tag, i);
		snprintf(out[i], sizeof out[i], "%s", tu_tmp(name));
		n += (size_t)snprintf(cmd + n, sizeof cmd - n,
				      "curl -sS %s -o '%s' -H 'Content-Type: application/json' "
				      "--data-binary @'%s' %s & ",
				      flags, out[i], path[i], url(s, route));
	}
	snprintf(cmd + n, sizeof cmd - n, "wait");
	free(tu_run_ok(0, "%s", cmd));
	for (int i = 0; i < 8; i++) {
		size_t len;
		char *b = tu_read_file(out[i], &len);
		assert_non_null(b);
		b = realloc(b, len + 1);
		b[len] = 0;
		res[i] = b;
		unlink(out[i]);
		unlink(path[i]);
	}
}

/* 8 completions at once (4 greedy, 4 sampled with a seed), each the text the program
 * itself generates for the same prompt and seed: each row of the engine's steps is in the
 * mode the program's call gives it (one-row calls for generated tokens), whatever runs
 * beside it. */
static void test_concurrent_program(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv *s = main_srv();
	static const char *const prompts[8] = {"Once upon a time", "The capital of France",
					       "one two three", "A", "Tell me a story",
					       "The quick brown fox", "seven 7", "Hello there"};
	char body[8][1024], *res[8];
	for (int i = 0; i < 8; i++) {
		if (i % 2)
			snprintf(body[i], sizeof body[i], "{\"prompt\":\"%s\",\"max_tokens\":%d,"
							  "\"temperature\":0.8,\"seed\":%d}",
				 prompts[i], 10 + 2 * i, 40 + i);
		else
			snprintf(body[i], sizeof body[i], "{\"prompt\":\"%s\",\"max_tokens\":%d,"
							  "\"temperature\":0}",
				 prompts[i], 10 + 2 * i);
	}
	post_eight(s, "server_prog", "", "/v1/completions", body, res);
	for (int i = 0; i < 8; i++) {
		char *b = res[i];
		cJSON *j = parse_json(b);
		int ct = at(j, "usage.completion_tokens")->valueint;
		char *prog_out;
		if (i % 2)
			prog_out = tu_run_ok(0, "'%s' -p '%s' -n %d --temp 0.8 --seed %d -t 2 "
						"--no-display-prompt 2>/dev/null",
					     prog, prompts[i], ct, 40 + i);
		else
			prog_out = tu_run_ok(0, "'%s' -p '%s' -n %d --temp 0 -t 2 "
						"--no-display-prompt 2>/dev/null",
					     prog, prompts[i], ct);
		size_t ol = strlen(prog_out);
		if (ol && prog_out[ol - 1] == '\n') /* the program ends its output with a newline */
			prog_out[ol - 1] = 0;
		const char *text = at(j, "choices.0.text")->valuestring;
		if (strcmp(text, prog_out))
			fail_msg("completion %d of 8 (%s): the server said \"%s\", the program \"%s\"",
				 i, i % 2 ? "seeded" : "greedy", text, prog_out);
		free(prog_out);
		cJSON_Delete(j);
		free(b);
	}
	assert_true(metric_wait(s, "bitnetc_slots_active", 0) == 0);
}

/* 8 greedy streams at once, each the text of its request alone. */
static void test_concurrent(void **state)
{
	(void)state;
	SKIP_UNLESS_READY();
	Srv *s = main_srv();
	static const char *const users[8] = {"one",  "two two",     "three",   "four is here",
					     "five", "six of them", "seven 7", "eight, last"};
	char *alone[8];
	char finish[16];
	int st;
	char body[8][1024];
	for (int i = 0; i < 8; i++) {
		snprintf(body[i], sizeof body[i], "%.*s,\"stream\":true}",
			 (int)strlen(chat_body(users[i], 20 + 3 * i, 0)) - 1,
			 chat_body(users[i], 20 + 3 * i, 0));
		char *b = http(s, &st, body[i], "-N %s", url(s, "/v1/chat/completions"));
		assert_int_equal(st, 200);
		alone[i] = stream_text(b, 1, finish, NULL);
		free(b);
	}
	char *res[8];
	post_eight(s, "server_conc", "-N", "/v1/chat/completions", body, res);
	for (int i = 0; i < 8; i++) {
		char *b = res[i];
		char *text = stream_text(b, 1, finish, NULL);
		if (strcmp(text, alone[i]))
			fail_msg("stream %d of 8: \"%s\", alone \"%s\"", i, text, alone[i]);
		free(text);
		free(b);
		free(alone[i]);
	}
	assert_true(metric_wait(s, "bitnetc_slots_active", 0) == 0);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_without_server),
		cmocka_unit_test(test_build_refusals),
#ifdef BN_HAVE_CJSON
		cmocka_unit_test(test_endpoints), cmocka_unit_test(test_matches_program),
		cmocka_unit_test(test_stream),    cmocka_unit_test(test_errors),
		cmocka_unit_test(test_concurrent), cmocka_unit_test(test_concurrent_program),
		cmocka_unit_test(test_api_key),
		cmocka_unit_test(test_busy_and_disconnect), cmocka_unit_test(test_drain),
#endif
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
