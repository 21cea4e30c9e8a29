/* generate.c - a product that embeds a model: it links libdemo.a (bitnetc build MODEL --lib
 * -o libdemo.a, whose functions are named demo_ in place of bitnetc.h's bn_), tokenizes a
 * prompt and streams the generated text through a callback as it is decided. Ctrl-C stops
 * the generation (the handler only asks the context to cancel: the library itself installs
 * no signal handler, prints nothing and never exits).
 *
 *   cc -std=c11 -O2 -I. generate.c libdemo.a -lm -lpthread -o generate
 *   ./generate "Once upon a time" [N_TOKENS [TEMP [SEED]]]
 */
#define _POSIX_C_SOURCE 200809L
#include "demo.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static bn_ctx *volatile running; /* the context Ctrl-C cancels */

static void on_sigint(int sig)
{
	(void)sig;
	if (running)
		demo_ctx_cancel(running, 1); /* only sets a flag: safe in a handler */
}

/* The text as the library decides it: whole UTF-8 characters, in order. */
static int print_text(void *user, const char *text, size_t len)
{
	(void)user;
	fwrite(text, 1, len, stdout);
	fflush(stdout);
	return 0; /* nonzero would stop the generation */
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROMPT [N_TOKENS [TEMP [SEED]]]\n", argv[0]);
		return 2;
	}
	int n_tokens = argc > 2 ? atoi(argv[2]) : 64;
	char err[512];
	bn_model *m = demo_model_open(NULL, err, sizeof err); /* NULL: the linked weights */
	if (!m) {
		fprintf(stderr, "cannot open the model: %s\n", err);
		return 1;
	}
	fprintf(stderr, "[%s, %s, %lld layers, vocabulary %d]\n", demo_model_meta(m, "name"),
	       demo_model_meta(m, "target"), (long long)demo_model_meta_int(m, "n_layer"),
	       demo_model_n_vocab(m));
	bn_ctx *c = demo_ctx_new(m, 512, 0, err, sizeof err);
	if (!c) {
		fprintf(stderr, "cannot make a context: %s\n", err);
		demo_model_close(m);
		return 1;
	}
	bn_sampler_params sp = demo_sampler_defaults();
	sp.temp = argc > 3 ? (float)atof(argv[3]) : 0.0f; /* 0: greedy */
	sp.seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 42;
	bn_sampler *s = demo_sampler_new(m, &sp);

	/* the prompt's tokens, BOS first when the model wants one */
	int32_t ids[512];
	int32_t n = demo_tokenize(m, argv[1], ids, 512, demo_model_add_bos(m));
	int rc = n < 0 ? n : n > 512 ? BN_E_CTX : BN_OK;
	if (rc == BN_OK && s) {
		bn_generate_params gp = demo_generate_defaults();
		gp.max_tokens = n_tokens;
		gp.on_text = print_text;
		bn_generate_result r;
		running = c;
		signal(SIGINT, on_sigint);
		rc = demo_generate(c, s, ids, n, &gp, &r);
		signal(SIGINT, SIG_DFL);
		running = NULL;
		printf("\n");
		fprintf(stderr, "[%d prompt tokens in %.1f ms, %d generated at %.1f tokens/s%s]\n",
			r.n_prompt, r.prompt_s * 1e3, r.n_generated,
			r.gen_s > 0 ? r.n_decoded / r.gen_s : 0.0,
			rc == BN_E_CANCELLED ? ", cancelled" : "");
		if (rc == BN_E_CANCELLED)
			rc = BN_OK;
	}
	if (rc)
		fprintf(stderr, "generation failed: %s (%s)\n", demo_strerror(rc),
			demo_ctx_last_error(c));
	demo_sampler_free(s);
	demo_ctx_free(c);
	demo_model_close(m);
	return rc ? 1 : 0;
}
