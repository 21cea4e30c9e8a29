/* ref_tokenize.c - the reference's tokenizer on many texts at once (the vocabulary loaded
 * once): what llama-tokenize --ids --no-bos --no-parse-special prints, one text at a time.
 *
 * Not built by CMake: it links against a build of the reference (bitnet.cpp with its
 * llama.cpp fork, see tests/data/golden/README.md). Build it with that build's compiler:
 *
 *   R=/path/to/BitNet; L=$R/3rdparty/llama.cpp
 *   clang-19 -O2 -std=c11 -I$L/include -I$L/ggml/include tools/golden/ref_tokenize.c \
 *       -L$R/build/3rdparty/llama.cpp/src -lllama -Wl,-rpath,$R/build/3rdparty/llama.cpp/src \
 *       -Wl,-rpath,$R/build/3rdparty/llama.cpp/ggml/src -o ref_tokenize
 *
 * Usage: ref_tokenize MODEL.gguf < TEXTS > IDS
 * TEXTS: texts each ended by a NUL byte; IDS: one line per text, its ids comma-separated
 * (no BOS, special-token text as text). tools/ref_tokenize.py drives it. */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
	fprintf(stderr, "ref_tokenize: %s\n", what);
	exit(2);
}

static void quiet(enum ggml_log_level level, const char *text, void *user)
{
	(void)user;
	if (level == GGML_LOG_LEVEL_ERROR)
		fputs(text, stderr);
}

/* All of stdin, *n bytes. */
static char *read_all(size_t *n)
{
	size_t cap = 1 << 16;
	char *buf = malloc(cap);
	*n = 0;
	for (size_t k; buf && (k = fread(buf + *n, 1, cap - *n, stdin)) > 0;) {
		*n += k;
		if (*n == cap)
			buf = realloc(buf, cap *= 2);
	}
	if (!buf)
		die("out of memory");
	return buf;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		die("usage: ref_tokenize MODEL.gguf < TEXTS");
	llama_log_set(quiet, NULL);
	llama_backend_init();
	struct llama_model_params mp = llama_model_default_params();
	mp.vocab_only = true;
	struct llama_model *model = llama_load_model_from_file(argv[1], mp);
	if (!model)
		die("cannot load the model");
	size_t n;
	char *all = read_all(&n);
	int cap = 1 << 16;
	llama_token *ids = malloc((size_t)cap * sizeof *ids);
	for (size_t i = 0; i < n;) {
		const char *text = all + i, *end = memchr(text, 0, n - i);
		size_t len = end ? (size_t)(end - text) : n - i;
		int k = llama_tokenize(model, text, (int32_t)len, ids, cap, false, false);
		if (k < 0)
			die("a text has too many tokens");
		for (int j = 0; j < k; j++)
			printf("%s%d", j ? "," : "", ids[j]);
		putchar('\n');
		i += len + 1;
	}
	free(ids);
	free(all);
	llama_free_model(model);
	llama_backend_free();
	return 0;
}
