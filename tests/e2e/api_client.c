/* api_client.c - a program of its own on the runtime API (bitnetc.h only), linked with
 * every file `bitnetc build --emit-c` writes except main.c (tests/e2e/test_api.c builds
 * and runs it). Usage: api_client WEIGHTS LOGITS IDS TEXT [big]: LOGITS holds the built
 * program's --logits-out rows for the prompt IDS ("1,2,3"), the ids of TEXT. Prints one
 * "ok ..." line per check to stdout and "FAIL ..." for a failed one (exit 1); the API itself
 * must print nothing, so stderr stays empty. With "big", also asks for a context whose KV
 * cache cannot be allocated. */
#include "bitnetc.h"

#include <pthread.h>
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

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: api_client WEIGHTS LOGITS IDS TEXT [big]\n");
		return 2;
	}
	char err[512];
	check(BN_API_VERSION >= 1 && !strcmp(bn_version(), bn_model_meta(NULL, "version")),
	      "bn_version");
	bn_model *m = bn_model_open(argv[1], err, sizeof err);
	check(m != NULL, "bn_model_open with the weights file");
	if (!m) {
		printf("  %s\n", err);
		return 1;
	}
	int32_t nv = bn_model_n_vocab(m);
	check(nv == bn_model_n_vocab(NULL) && bn_model_n_ctx_train(m) > 0, "n_vocab, n_ctx_train");
	check_errors(m, nv, argc > 5 && !strcmp(argv[5], "big"));
	check_text(m, argv[3], argv[4]);

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
