/* api_client.c - a program of its own on the runtime API (bitnetc.h only), linked with
 * every file `bitnetc build --emit-c` writes except main.c (tests/e2e/test_api.c builds
 * and runs it). Usage: api_client WEIGHTS LOGITS IDS TEXT GEN CHAT FULL [big]: LOGITS holds
 * the built program's --logits-out rows for the prompt IDS ("1,2,3"), the ids of TEXT; GEN
 * its output for -p TEXT -n 24 --temp 0 --ignore-eos; CHAT its -cnv transcript of "Hi
 * there" and "How are you?" (-sys 'Be brief.' -n 6 --temp 0 --ignore-eos); FULL that of
 * three "Hi" in a context of 24 (-c 24 -n 8). Prints one "ok ..." line per check to stdout
 * and "FAIL ..." for a failed one (exit 1); the API itself must print nothing, so stderr
 * stays empty. With "big", also asks for a context whose KV cache cannot be allocated. */
#include "bitnetc.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok" : "FAIL", what);
	fails += !ok;
}

typedef struct {
	bn_ctx *c;
	const int32_t *ids;
	int32_t n;
	float *rows;
	int rc;
} Job;

static void *decode_job(void *arg)
{
	Job *j = arg;
	for (int rep = 0; rep < 3 && !j->rc; rep++) {
		bn_ctx_reset(j->c);
		j->rc = bn_decode(j->c, j->ids, j->n, j->rows);
	}
	return NULL;
}

static float *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	float *x = malloc((size_t)len + 1);
	*n = x && fread(x, 1, (size_t)len, f) == (size_t)len ? (size_t)len : 0;
	fclose(f);
	return x;
}

static void check_errors(bn_model *m, int32_t nv, int big)
{
	char err[512];
	int code = 0;
	bn_model *bad = bn_model_open_ex("/nonexistent/w.bin", NULL, 0, &code, err, sizeof err);
	check(!bad && code == BN_E_WEIGHTS && strstr(err, "/nonexistent/w.bin"),
	      "a missing weights file: BN_E_WEIGHTS naming it");
	check(!bn_ctx_new_ex(m, -1, 1, &code, err, sizeof err) && code == BN_E_ARG && err[0],
	      "a negative context: BN_E_ARG");
	if (big)
		check(!bn_ctx_new_ex(m, 0x7fffffff, 1, &code, err, sizeof err) && code == BN_E_CTX &&
			      strstr(err, "cannot allocate the KV cache"),
		      "a context too large for memory: BN_E_CTX");
	bn_ctx *c = bn_ctx_new(m, 4, 1, err, sizeof err);
	check(c != NULL, "a context of 4 positions");
	if (!c)
		return;
	int32_t toks[5] = {1, 2, 3, 4, 5};
	toks[1] = nv;
	int rc = bn_decode(c, toks, 2, NULL);
	check(rc == BN_E_TOKEN && strstr(bn_ctx_last_error(c), "out of range") &&
		      bn_ctx_pos(c) == 0,
	      "a token out of range: BN_E_TOKEN, nothing decoded");
	toks[1] = 2;
	check(bn_decode(c, toks, 5, NULL) == BN_E_CTX && strstr(bn_ctx_last_error(c), "full"),
	      "5 tokens in a context of 4: BN_E_CTX");
	check(bn_decode(c, toks, 0, NULL) == BN_E_ARG, "no tokens: BN_E_ARG");
	check(bn_decode(c, toks, 4, NULL) == BN_OK && bn_ctx_pos(c) == 4 &&
		      !bn_ctx_last_error(c)[0],
	      "4 tokens fill it");
	check(bn_decode(c, toks, 1, NULL) == BN_E_CTX, "a full context: BN_E_CTX");
	bn_ctx_free(c);
	check(strcmp(bn_strerror(BN_E_CTX), bn_strerror(BN_E_TOKEN)) != 0, "bn_strerror");
}

static void check_text(const bn_model *m, const char *ids_s, const char *text)
{
	int32_t want[256], ids[256];
	int nw = 0;
	for (const char *p = ids_s; *p && nw < 256;) {
		want[nw++] = (int32_t)strtol(p, (char **)&p, 10);
		if (*p == ',')
			p++;
	}
	int32_t n = bn_tokenize(m, text, ids, 256, 1);
	check(n == nw && !memcmp(ids, want, (size_t)n * sizeof *ids),
	      "bn_tokenize: bitnetc tokenize's ids");
	check(bn_tokenize(m, text, ids, 1, 1) == n, "bn_tokenize with a short buffer: the count");
	char back[4096] = "";
	size_t len = 0;
	for (int32_t i = bn_model_add_bos(m) ? 1 : 0; i < n; i++) {
		int32_t k = bn_token_to_piece(m, ids[i], back + len, (int32_t)(sizeof back - len - 1));
		if (k < 0 || len + (size_t)k >= sizeof back)
			break;
		len += (size_t)k;
	}
	back[len] = 0;
	check(!strcmp(back, text), "bn_token_to_piece: the pieces give the text back");
	check(ids[0] == bn_token_bos(m) && bn_token_is_eog(m, bn_token_eos(m)),
	      "bos first, eos ends generation");
	check(bn_token_to_piece(m, bn_model_n_tokens(m), back, 8) == BN_E_TOKEN,
	      "the piece of an id out of range: BN_E_TOKEN");
	bn_chat_msg msg = {"user", text};
	char chat[1024];
	int32_t cl = bn_chat_format(m, NULL, &msg, 1, BN_CHAT_ADD_ASSISTANT, chat, sizeof chat);
	check(cl > 0 && cl < (int32_t)sizeof chat && strstr(chat, text) &&
		      bn_chat_check(m, NULL, NULL, 0) == BN_OK,
	      "bn_chat_format with the built-in template");
	check(bn_chat_format(m, "no-such", &msg, 1, 0, chat, sizeof chat) == BN_E_TEMPLATE,
	      "an unknown template: BN_E_TEMPLATE");
}

static char *read_text(const char *path)
{
	size_t n = 0;
	char *t = (char *)read_all(path, &n);
	if (t)
		t[n] = 0;
	return t;
}

/* What a generation gave on_text and on_token. */
typedef struct {
	char text[8192];
	size_t len;
	int chunks, bad_chunks, tokens;
} Out;

/* Whether the len bytes are whole UTF-8 characters (no overlong forms or surrogates). */
static int utf8_whole(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned c = s[i];
		size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
			 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		if (!n || i + n > len)
			return 0;
		for (size_t k = 1; k < n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
		if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) ||
		    (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f))
			return 0;
		i += n;
	}
	return 1;
}

static int out_text(void *user, const char *text, size_t len)
{
	Out *o = user;
	if (o->len + len < sizeof o->text) {
		memcpy(o->text + o->len, text, len);
		o->len += len;
		o->text[o->len] = 0;
	}
	o->chunks++;
	o->bad_chunks += !utf8_whole((const unsigned char *)text, len);
	return 0;
}

static int out_token(void *user, int32_t tok)
{
	(void)tok;
	((Out *)user)->tokens++;
	return 0;
}

static bn_generate_params gen_params(Out *o, int max, int flags)
{
	bn_generate_params p = bn_generate_defaults();
	memset(o, 0, sizeof *o);
	p.max_tokens = max;
	p.flags = flags;
	p.on_text = out_text;
	p.on_token = out_token;
	p.user = o;
	return p;
}

/* bn_generate against the program's -p output: the same text (raw, as the program prints
 * it), whole characters when not raw, max_tokens, a stop string. */
static void check_generate(bn_model *m, const int32_t *ids, int32_t n, const char *gen_path)
{
	char *want = read_text(gen_path), err[512];
	bn_ctx *c = bn_ctx_new(m, 128, 2, err, sizeof err);
	bn_sampler_params sp = bn_sampler_defaults();
	sp.temp = 0;
	bn_sampler *s = bn_sampler_new(m, &sp);
	static Out o;
	bn_generate_result r;
	check(want && c && s, "a context and a greedy sampler for bn_generate");
	if (!want || !c || !s)
		return;
	/* the program's path: whole UTF-8 characters, U+FFFD for broken ones */
	bn_generate_params p = gen_params(&o, 24, BN_GEN_IGNORE_EOG);
	int rc = bn_generate(c, s, ids, n, &p, &r);
	size_t wl = strlen(want);
	check(rc == BN_OK && wl > 0 && want[wl - 1] == '\n' && o.len == wl - 1 &&
		      !memcmp(o.text, want, o.len),
	      "bn_generate's text is the program's -p output (greedy, 24 tokens)");
	check(r.stop == BN_STOP_MAX_TOKENS && r.n_generated == 24 && o.tokens == 24 &&
		      r.n_decoded == 24 && r.n_prompt == n && bn_ctx_pos(c) == n + 24,
	      "max_tokens: 24 tokens generated and decoded, the stop reason");
	check(o.bad_chunks == 0 && utf8_whole((unsigned char *)o.text, o.len),
	      "on_text gets whole UTF-8 characters only");
	char whole[8192];
	memcpy(whole, o.text, o.len + 1);
	/* the same with BN_GEN_RAW_TEXT: the bytes as the tokens give them */
	bn_ctx_reset(c);
	bn_sampler_reset(s);
	p = gen_params(&o, 24, BN_GEN_IGNORE_EOG | BN_GEN_RAW_TEXT);
	rc = bn_generate(c, s, ids, n, &p, &r);
	char raw[8192];
	size_t rl = o.len;
	memcpy(raw, o.text, rl + 1);
	check(rc == BN_OK && (!utf8_whole((unsigned char *)raw, rl) || !strcmp(whole, raw)),
	      "BN_GEN_RAW_TEXT: the same text where it is whole UTF-8");
	printf("  (%d chunks of text for 24 tokens; the raw text %s UTF-8)\n", o.chunks,
	       utf8_whole((unsigned char *)raw, rl) ? "is" : "is not");
	/* a stop string from the middle of the text: what comes before its first occurrence */
	char stop[4] = {0};
	memcpy(stop, raw + rl / 2, rl >= 8 ? 3 : 0);
	const char *stops[1] = {stop};
	size_t at = rl >= 8 ? (size_t)(strstr(raw, stop) - raw) : 0;
	bn_ctx_reset(c);
	p = gen_params(&o, 24, BN_GEN_IGNORE_EOG | BN_GEN_RAW_TEXT);
	p.stop = stops;
	p.n_stop = 1;
	rc = bn_generate(c, s, ids, n, &p, &r);
	check(rl >= 8 && rc == BN_OK && r.stop == BN_STOP_STRING && o.len == at &&
		      !memcmp(o.text, raw, at) && r.n_generated < 24,
	      "a stop string: the text before it, generation stopped there");
	/* SKIP_LAST: the program's path without --logits-out */
	bn_ctx_reset(c);
	p = gen_params(&o, 5, BN_GEN_IGNORE_EOG | BN_GEN_RAW_TEXT | BN_GEN_SKIP_LAST);
	rc = bn_generate(c, s, ids, n, &p, &r);
	check(rc == BN_OK && r.n_generated == 5 && r.n_decoded == 4 && bn_ctx_pos(c) == n + 4,
	      "BN_GEN_SKIP_LAST: the last token is not decoded");
	bn_sampler_free(s);
	bn_ctx_free(c);
	free(want);
}

/* Trim: A+B, back to |A|, then C: the logits of A then C from scratch, bit for bit. */
static void check_trim(bn_model *m, const int32_t *a, int32_t n)
{
	int32_t nv = bn_model_n_vocab(m), b[5] = {11, 22, 33, 44, 55}, cc[3] = {791, 4062, 13};
	bn_ctx *c1 = bn_ctx_new(m, 64, 2, NULL, 0), *c2 = bn_ctx_new(m, 64, 2, NULL, 0);
	float *x = malloc(3 * (size_t)nv * sizeof(float)), *y = malloc(3 * (size_t)nv * sizeof(float));
	int ok = c1 && c2 && x && y && !bn_decode(c1, a, n, NULL) && !bn_decode(c1, b, 5, NULL) &&
		 bn_ctx_trim(c1, n + 6) == BN_E_ARG && !bn_ctx_trim(c1, n) &&
		 !bn_decode(c1, cc, 3, x) && !bn_decode(c2, a, n, NULL) && !bn_decode(c2, cc, 3, y);
	check(ok && !memcmp(x, y, 3 * (size_t)nv * sizeof(float)),
	      "bn_ctx_trim: A+B trimmed to A, then C, is A+C bit for bit");
	bn_ctx_free(c1);
	bn_ctx_free(c2);
	free(x);
	free(y);
}

/* Chat turns against a -cnv transcript: each line a reply. */
static int chat_matches(bn_model *m, int32_t n_ctx, const char *sys, const char *const *turns,
			int n_turns, int max, const char *transcript)
{
	bn_ctx *c = bn_ctx_new(m, n_ctx, 2, NULL, 0);
	bn_sampler_params sp = bn_sampler_defaults();
	sp.temp = 0;
	bn_sampler *s = bn_sampler_new(m, &sp);
	int code = 0;
	bn_chat *ch = c && s ? bn_chat_new(c, s, NULL, sys, &code, NULL, 0) : NULL;
	static Out o;
	static char all[16384];
	size_t len = 0;
	int ok = ch != NULL;
	if (ok) { /* a turn cancelled before it ran is taken back: the transcript is the same */
		bn_generate_result r;
		bn_ctx_cancel(c, 1);
		ok = bn_chat_turn(ch, turns[0], NULL, &r) == BN_E_CANCELLED &&
		     r.stop == BN_STOP_CANCELLED && bn_ctx_pos(c) == 0;
		if (!ok)
			printf("  a cancelled turn: %s\n", bn_ctx_last_error(c));
	}
	for (int i = 0; ok && i < n_turns; i++) {
		bn_generate_params p = gen_params(&o, max, BN_GEN_IGNORE_EOG | BN_GEN_RAW_TEXT);
		bn_generate_result r;
		ok = bn_chat_turn(ch, turns[i], &p, &r) == BN_OK && len + o.len + 2 < sizeof all;
		if (ok) {
			memcpy(all + len, o.text, o.len);
			len += o.len;
			all[len++] = '\n';
		}
	}
	all[len] = 0;
	ok = ok && transcript && !strcmp(all, transcript);
	if (!ok)
		printf("  got:\n%s  want:\n%s", all, transcript ? transcript : "(none)\n");
	if (ch)
		ok = ok && bn_chat_reply(ch, NULL, NULL) == BN_E_ARG; /* nothing prepared */
	bn_chat_free(ch);
	bn_sampler_free(s);
	bn_ctx_free(c);
	return ok;
}

static void check_chat(bn_model *m, const char *chat_path, const char *full_path)
{
	char *chat = read_text(chat_path), *full = read_text(full_path);
	const char *two[2] = {"Hi there", "How are you?"}, *hi[3] = {"Hi", "Hi", "Hi"};
	check(chat_matches(m, 512, "Be brief.", two, 2, 6, chat),
	      "chat turns are the program's -cnv transcript");
	check(chat_matches(m, 24, NULL, hi, 3, 8, full),
	      "chat turns in a full context are the program's (a new conversation begins)");
	int code = 0;
	bn_ctx *c = bn_ctx_new(m, 16, 1, NULL, 0);
	bn_sampler_params sp = bn_sampler_defaults();
	bn_sampler *s = bn_sampler_new(m, &sp);
	char err[256];
	check(!bn_chat_new(c, s, "no-such", NULL, &code, err, sizeof err) && code == BN_E_TEMPLATE,
	      "bn_chat_new with an unknown template: BN_E_TEMPLATE");
	bn_sampler_free(s);
	bn_ctx_free(c);
	free(chat);
	free(full);
}

/* The model's description, as a product shows it. */
static void check_meta(const bn_model *m)
{
	check(bn_model_meta(m, "name") && bn_model_meta(m, "arch") && bn_model_meta(m, "target") &&
		      strcmp(bn_model_meta(m, "chat_template"), "none") != 0 &&
		      bn_model_meta_int(m, "n_ctx_train") > 0 &&
		      bn_model_meta_int(m, "n_vocab") == 128256 &&
		      bn_model_meta_int(m, "n_embd") == 256 && bn_model_meta_int(m, "n_layer") == 1 &&
		      bn_model_meta_int(m, "weights_bytes") > 0,
	      "bn_model_meta: name, arch, target, chat template, shapes, weights size");
}

/* A profiled context (bn_ctx_profile): the prompt (a multi-token forward) and one step give
 * the same logits bits as unprofiled (want: the prompt's rows, step: the row of the step
 * after it); the families add up to the forwards' time; off, the counters stay. */
static void check_profile(bn_model *m, const int32_t *ids, int32_t n, const float *want,
			  const float *step)
{
	char err[512];
	int32_t nv = bn_model_n_vocab(m), next = ids[0];
	bn_ctx *c = bn_ctx_new(m, 64, 2, err, sizeof err);
	float *rows = calloc((size_t)n * (size_t)nv, sizeof(float));
	if (!c || !rows) {
		check(0, "bn_ctx_new for the profile");
		bn_ctx_free(c);
		free(rows);
		return;
	}
	bn_profile_row r[BN_PROFILE_FAMILIES];
	double fwd = -1, sum = 0;
	int64_t nf = -1, mm = 0, gemv = 0;
	check(bn_ctx_profile_read(c, r, &fwd, &nf) == BN_E_ARG,
	      "bn_ctx_profile_read before bn_ctx_profile: BN_E_ARG");
	check(bn_ctx_profile(c, 1) == BN_OK, "bn_ctx_profile(c, 1)");
	check(bn_decode(c, ids, n, rows) == BN_OK && want &&
		      !memcmp(rows, want, (size_t)n * (size_t)nv * sizeof(float)),
	      "profiled: the prompt's logits, the same bits");
	check(bn_decode(c, &next, 1, rows) == BN_OK && !memcmp(rows, step, (size_t)nv * sizeof(float)),
	      "profiled: a step's logits, the same bits");
	check(bn_ctx_profile_read(c, r, &fwd, &nf) == BN_OK && nf >= 2 && fwd > 0,
	      "bn_ctx_profile_read: the forwards and their time");
	for (int i = 0; i < BN_PROFILE_FAMILIES; i++) {
		sum += r[i].seconds;
		mm += !strcmp(r[i].family, "gemm") || !strcmp(r[i].family, "amx") ? r[i].calls : 0;
		gemv += !strcmp(r[i].family, "gemv") ? r[i].calls : 0;
	}
	printf("  forwards %lld: %.6f s, the families %.6f s\n", (long long)nf, fwd, sum);
	check(sum <= fwd * (1 + 1e-9) && sum >= 0.98 * fwd, "the families add up to the forwards' time");
	check(mm > 0 && gemv > 0 && !strcmp(r[BN_PROFILE_FAMILIES - 1].family, "wait"),
	      "ternary matmuls of several tokens and of one, and the wait");
	check(bn_ctx_profile(c, 0) == BN_OK && bn_decode(c, &next, 1, rows) == BN_OK,
	      "bn_ctx_profile(c, 0), then a step");
	int64_t nf2 = -1;
	double fwd2 = -1;
	check(bn_ctx_profile_read(c, NULL, &fwd2, &nf2) == BN_OK && nf2 == nf && fwd2 == fwd,
	      "off: the counters stay");
	bn_ctx_free(c);
	free(rows);
}

int main(int argc, char **argv)
{
	if (argc < 8) {
		fprintf(stderr, "usage: api_client WEIGHTS LOGITS IDS TEXT GEN CHAT FULL [big]\n");
		return 2;
	}
	char err[512];
	check(BN_API_VERSION >= 2 && !strcmp(bn_version(), bn_model_meta(NULL, "version")),
	      "bn_version");
	bn_model *m = bn_model_open(argv[1], err, sizeof err);
	check(m != NULL, "bn_model_open with the weights file");
	if (!m) {
		printf("  %s\n", err);
		return 1;
	}
	int32_t nv = bn_model_n_vocab(m);
	check(nv == bn_model_n_vocab(NULL) && bn_model_n_ctx_train(m) > 0, "n_vocab, n_ctx_train");
	check_errors(m, nv, argc > 8 && !strcmp(argv[8], "big"));
	check_text(m, argv[3], argv[4]);
	check_meta(m);

	/* the prompt in two contexts decoded at once, each by a thread of its own */
	int32_t ids[256];
	int32_t n = bn_tokenize(m, argv[4], ids, 256, 1);
	size_t got_bytes = 0;
	float *want = read_all(argv[2], &got_bytes);
	check(want && got_bytes == (size_t)n * (size_t)nv * sizeof(float),
	      "the program's --logits-out: one row per prompt token");
	Job jobs[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		jobs[i] = (Job){bn_ctx_new(m, 64, 2, err, sizeof err), ids, n,
				calloc((size_t)n * (size_t)nv, sizeof(float)), 0};
		check(jobs[i].c && jobs[i].rows, "bn_ctx_new(64 positions, 2 threads)");
		if (!jobs[i].c || !jobs[i].rows)
			return 1;
	}
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, decode_job, &jobs[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	size_t bytes = (size_t)n * (size_t)nv * sizeof(float);
	check(!jobs[0].rc && !jobs[1].rc && bn_ctx_pos(jobs[0].c) == n,
	      "bn_decode in two threads at once");
	check(!memcmp(jobs[0].rows, jobs[1].rows, bytes), "the two contexts' logits are the same bits");
	check(want && got_bytes == bytes && !memcmp(jobs[0].rows, want, bytes),
	      "bn_decode's logits are the program's --logits-out, bit for bit");
	/* one after the other in one thread: the same bits again */
	for (int i = 0; i < 2; i++) {
		bn_ctx_reset(jobs[i].c);
		memset(jobs[i].rows, 0, bytes);
		jobs[i].rc = bn_decode(jobs[i].c, ids, n, jobs[i].rows);
	}
	check(!jobs[0].rc && !jobs[1].rc && !memcmp(jobs[0].rows, jobs[1].rows, bytes) &&
		      want && got_bytes == bytes && !memcmp(jobs[1].rows, want, bytes),
	      "the two contexts one after the other: the same bits as at once");
	check_trim(m, ids, n);
	check_generate(m, ids, n, argv[5]);
	check_chat(m, argv[6], argv[7]);

	/* the last row alone (the program's path without --logits-out), then a greedy step */
	float *last = malloc((size_t)nv * sizeof(float));
	bn_ctx_reset(jobs[1].c);
	check(bn_decode_ex(jobs[1].c, ids, n, last, BN_DECODE_LAST) == BN_OK &&
		      !memcmp(last, jobs[0].rows + (size_t)(n - 1) * (size_t)nv,
			      (size_t)nv * sizeof(float)),
	      "BN_DECODE_LAST: the last row, the same bits");
	bn_sampler_params sp = bn_sampler_defaults();
	sp.temp = 0;
	bn_sampler *s = bn_sampler_new(m, &sp);
	int32_t best = 0;
	for (int32_t i = 1; i < bn_model_n_tokens(m); i++)
		if (last[i] > last[best])
			best = i;
	check(s && bn_sampler_sample(s, last) == best, "a greedy sampler: the argmax");
	int32_t next = ids[0];
	check(bn_decode(jobs[1].c, &next, 1, last) == BN_OK, "a step after the prompt");
	check_profile(m, ids, n, want, last);
	bn_sampler_free(s);
	free(last);
	free(want);
	for (int i = 0; i < 2; i++) {
		bn_ctx_free(jobs[i].c);
		free(jobs[i].rows);
	}
	bn_model_close(m);
	printf("%d failed\n", fails);
	return fails != 0;
}
