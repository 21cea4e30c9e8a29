/* golden_logits.c - records the reference's logits and greedy tokens for the golden set.
 *
 * Not built by CMake: it links against a build of the reference (bitnet.cpp with its
 * llama.cpp fork, see tests/data/golden/README.md). Build it with that build's compiler:
 *
 *   R=/path/to/BitNet; L=$R/3rdparty/llama.cpp
 *   clang-19 -O2 -std=c11 -I$L/include -I$L/ggml/include tools/golden/golden_logits.c \
 *       -L$R/build/3rdparty/llama.cpp/src -L$R/build/3rdparty/llama.cpp/ggml/src \
 *       -lllama -lggml -lm -Wl,-rpath,$R/build/3rdparty/llama.cpp/src \
 *       -Wl,-rpath,$R/build/3rdparty/llama.cpp/ggml/src -o golden_logits
 *
 * Usage: golden_logits MODEL.gguf NAME PROMPTS.tsv OUTDIR
 * For every prompt P of PROMPTS.tsv (a header line, then "name<TAB>id,id,...") and mode X
 * in {batch, step} it writes OUTDIR/NAME.P.X.json, .prompt.f32 and .gen.f32 (the layout
 * tests/data/golden/README.md describes): n_ctx 256, 2 threads, F16 K/V cache, flash
 * attention off, a fresh context per (prompt, mode), 32 greedy tokens (ties to the
 * lowest id). "batch" decodes the prompt in one call, "step" one token per call. */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_GEN = 32, N_CTX = 256, THREADS = 2, MAX_PROMPT = 200 };

static void die(const char *what)
{
	fprintf(stderr, "golden_logits: %s\n", what);
	exit(2);
}

static void quiet(enum ggml_log_level level, const char *text, void *user)
{
	(void)user;
	if (level == GGML_LOG_LEVEL_ERROR)
		fputs(text, stderr);
}

/* argmax with ties to the lowest id, and the gap to the second best */
static int argmax(const float *x, int n, float *margin)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	float second = -1e30f;
	for (int i = 0; i < n; i++)
		if (i != best && x[i] > second)
			second = x[i];
	*margin = x[best] - second;
	return best;
}

/* Decodes toks[0..n) at positions pos0.. in one call; logits of every token into out. */
static void decode(struct llama_context *ctx, const int *toks, int n, int pos0, float *out,
		   int n_vocab)
{
	struct llama_batch b = llama_batch_init(n, 0, 1);
	for (int i = 0; i < n; i++) {
		b.token[i] = toks[i];
		b.pos[i] = pos0 + i;
		b.n_seq_id[i] = 1;
		b.seq_id[i][0] = 0;
		b.logits[i] = 1;
	}
	b.n_tokens = n;
	if (llama_decode(ctx, b))
		die("llama_decode failed");
	for (int i = 0; i < n; i++)
		memcpy(out + (size_t)i * n_vocab, llama_get_logits_ith(ctx, i),
		       (size_t)n_vocab * sizeof(float));
	llama_batch_free(b);
}

static void write_f32(const char *path, const float *x, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(x, sizeof(float), n, f) != n || fclose(f))
		die(path);
}

static void run(struct llama_model *model, const char *model_rel, const char *name,
		const char *pname, const int *prompt, int n_prompt, int step, const char *outdir)
{
	int n_vocab = llama_n_vocab(model);
	struct llama_context_params cp = llama_context_default_params();
	cp.n_ctx = N_CTX;
	cp.n_batch = N_CTX;
	cp.n_ubatch = N_CTX;
	cp.n_threads = THREADS;
	cp.n_threads_batch = THREADS;
	cp.type_k = GGML_TYPE_F16;
	cp.type_v = GGML_TYPE_F16;
	cp.flash_attn = false;
	struct llama_context *ctx = llama_new_context_with_model(model, cp);
	if (!ctx)
		die("cannot create a context");
	float *pl = malloc((size_t)n_prompt * n_vocab * sizeof(float));
	float *gl = malloc((size_t)N_GEN * n_vocab * sizeof(float));
	if (!pl || !gl)
		die("out of memory");
	if (step)
		for (int i = 0; i < n_prompt; i++)
			decode(ctx, prompt + i, 1, i, pl + (size_t)i * n_vocab, n_vocab);
	else
		decode(ctx, prompt, n_prompt, 0, pl, n_vocab);
	int gen[N_GEN];
	float margin[N_GEN];
	gen[0] = argmax(pl + (size_t)(n_prompt - 1) * n_vocab, n_vocab, &margin[0]);
	for (int i = 0; i < N_GEN; i++) {
		decode(ctx, &gen[i], 1, n_prompt + i, gl + (size_t)i * n_vocab, n_vocab);
		if (i + 1 < N_GEN)
			gen[i + 1] = argmax(gl + (size_t)i * n_vocab, n_vocab, &margin[i + 1]);
	}
	const char *mode = step ? "step" : "batch";
	char path[4096];
	snprintf(path, sizeof path, "%s/%s.%s.%s.prompt.f32", outdir, name, pname, mode);
	write_f32(path, pl, (size_t)n_prompt * n_vocab);
	snprintf(path, sizeof path, "%s/%s.%s.%s.gen.f32", outdir, name, pname, mode);
	write_f32(path, gl, (size_t)N_GEN * n_vocab);
	snprintf(path, sizeof path, "%s/%s.%s.%s.json", outdir, name, pname, mode);
	FILE *f = fopen(path, "w");
	if (!f)
		die(path);
	fprintf(f, "{\n \"model\": \"%s\",\n \"n_vocab\": %d,\n \"n_prompt\": %d,\n"
		   " \"n_gen\": %d,\n \"threads\": %d,\n \"kv_type\": \"f16\",\n"
		   " \"prompt_mode\": \"%s\",\n \"prompt_tokens\": [",
		model_rel, n_vocab, n_prompt, N_GEN, THREADS, mode);
	for (int i = 0; i < n_prompt; i++)
		fprintf(f, "%s%d", i ? ", " : "", prompt[i]);
	fprintf(f, "],\n \"generated_tokens\": [");
	for (int i = 0; i < N_GEN; i++)
		fprintf(f, "%s%d", i ? ", " : "", gen[i]);
	fprintf(f, "],\n \"top2_margin_at_choice\": [");
	for (int i = 0; i < N_GEN; i++)
		fprintf(f, "%s%g", i ? ", " : "", margin[i]);
	fprintf(f, "]\n}\n");
	if (fclose(f))
		die(path);
	free(pl);
	free(gl);
	llama_free(ctx);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: golden_logits MODEL.gguf NAME PROMPTS.tsv OUTDIR\n");
		return 1;
	}
	llama_log_set(quiet, NULL);
	llama_backend_init();
	struct llama_model_params mp = llama_model_default_params();
	mp.use_mmap = false;
	struct llama_model *model = llama_load_model_from_file(argv[1], mp);
	if (!model)
		die("cannot load the model");
	char model_rel[512];
	const char *base = strrchr(argv[1], '/');
	snprintf(model_rel, sizeof model_rel, "models/%s", base ? base + 1 : argv[1]);
	FILE *tsv = fopen(argv[3], "r");
	if (!tsv)
		die(argv[3]);
	char line[8192];
	if (!fgets(line, sizeof line, tsv)) /* header */
		die("empty prompts file");
	while (fgets(line, sizeof line, tsv)) {
		char *tab = strchr(line, '\t');
		if (!tab)
			continue;
		*tab = 0;
		int prompt[MAX_PROMPT], n = 0;
		for (char *p = tab + 1; *p && *p != '\n' && n < MAX_PROMPT;) {
			prompt[n++] = (int)strtol(p, &p, 10);
			if (*p == ',')
				p++;
		}
		for (int step = 0; step < 2; step++)
			run(model, model_rel, argv[2], line, prompt, n, step, argv[4]);
	}
	fclose(tsv);
	llama_free_model(model);
	llama_backend_free();
	return 0;
}
