/* bench_tokenize.c - encode throughput of the Llama 3 tokenizer on ~1 MB of mixed-script
 * text, one thread; prints the median MB/s of 5 runs (and the blob's build/open times).
 * Usage: bench_tokenize [DATA_DIR]   (DATA_DIR/llama3/{tokens.txt,merges.txt,special.tsv};
 * default: $BN_DATA_DIR, else data/ beside the executable, as the build lays it out) */
#include "rt_tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *slurp(const char *dir, const char *name, size_t *n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/llama3/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "bench_tokenize: cannot open %s\n", path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)len + 1);
	if (!s || fread(s, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "bench_tokenize: cannot read %s\n", path);
		exit(1);
	}
	fclose(f);
	s[len] = 0;
	*n = (size_t)len;
	return s;
}

static int lines(char *s, size_t n, const char **l, uint32_t *len, int max)
{
	int k = 0;
	for (size_t i = 0; i < n && k < max;) {
		size_t j = i;
		while (j < n && s[j] != '\n')
			j++;
		l[k] = s + i;
		len[k++] = (uint32_t)(j - i);
		i = j + 1;
	}
	return k;
}

/* The pieces the text is shuffled from: prose, code, numbers, many scripts, emoji and
 * whitespace runs, roughly as a chat prompt would mix them. */
static const char *snippets[] = {
	"The quick brown fox jumps over the lazy dog. ",
	"I'm sure they'll say it's what we'd've done, isn't it? ",
	"In 2024, revenue grew 12.5% to $3,141,592,653 across 47 markets.\n",
	"int main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; i++)\n\t\tputs(argv[i]);\n\treturn 0;\n}\n",
	"def tokenize(text: str) -> list[int]:\n    return [ord(c) for c in text if c.isalnum()]\n\n",
	"https://example.com/path/to/resource?query=value&other=42#section-3 ",
	"机器学习是人工智能的一个分支，它使计算机能够从数据中学习而无需明确编程。",
	"日本語のテキストには漢字、ひらがな、カタカナが混在しています。",
	"Быстрая коричневая лиса перепрыгивает через ленивую собаку. ",
	"النص العربي يُكتب من اليمين إلى اليسار ويحتوي على تشكيل أحياناً. ",
	"한국어 문장은 띄어쓰기를 사용합니다. ",
	"Emoji: 😀😃😄😁 🤖👍🏽 🇺🇸🇯🇵 ❤️‍🔥 ",
	"    indented line with trailing spaces    \n\n\n",
	"\t\tTabs\tand\r\nCRLF\r\n  mixed  \n",
	"3.14159265358979323846264338327950288419716939937510 ",
	"Ελληνικά: Η γρήγορη καφέ αλεπού. हिन्दी: तेज़ भूरी लोमड़ी। ",
	"{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}\n",
	"supercalifragilisticexpialidocious antidisestablishmentarianism ",
};

static char *make_text(size_t target, size_t *n)
{
	char *t = malloc(target + 4096);
	size_t o = 0;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	while (o < target) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		const char *s = snippets[x % (sizeof snippets / sizeof *snippets)];
		size_t l = strlen(s);
		memcpy(t + o, s, l);
		o += l;
	}
	*n = o;
	return t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	char dflt[4096];
	const char *dir = argc > 1 ? argv[1] : getenv("BN_DATA_DIR");
	if (!dir || !*dir) {
		const char *slash = strrchr(argv[0], '/');
		int len = slash ? (int)(slash - argv[0]) : 1;
		snprintf(dflt, sizeof dflt, "%.*s/data", len, slash ? argv[0] : ".");
		dir = dflt;
	}
	enum { NT = 128256, NM = 280147 };
	static const char *toks[NT], *merges[NM];
	static uint32_t tlen[NT], mlen[NM];
	static int32_t types[NT];
	size_t n;
	char *tf = slurp(dir, "tokens.txt", &n);
	if (lines(tf, n, toks, tlen, 128000) != 128000) {
		fprintf(stderr, "bench_tokenize: tokens.txt is not 128000 lines\n");
		return 1;
	}
	char *sf = slurp(dir, "special.tsv", &n);
	for (char *p = sf; *p;) {
		char *tab = strchr(p, '\t'), *nl = strchr(p, '\n');
		long id = strtol(p, NULL, 10);
		if (!tab || id < 128000 || id >= NT)
			break;
		toks[id] = tab + 1;
		tlen[id] = (uint32_t)(nl ? nl - tab - 1 : (long)strlen(tab + 1));
		p = nl ? nl + 1 : tab + 1 + tlen[id];
	}
	for (int i = 0; i < NT; i++)
		types[i] = i < 128000 ? RT_TT_NORMAL : RT_TT_CONTROL;
	char *mf = slurp(dir, "merges.txt", &n);
	int nm = lines(mf, n, merges, mlen, NM);
	int32_t eog = 128009;
	RtTokSpec spec = {.kind = RT_TOK_BPE, .n_tokens = NT, .tokens = toks, .token_len = tlen,
			  .types = types, .n_merges = nm, .merges = merges, .merge_len = mlen,
			  .bos = 128000, .eos = 128001, .unk = -1, .eog = &eog, .n_eog = 1,
			  .add_bos = true};
	void *blob;
	size_t size;
	RtErr e = {0};
	double t0 = now();
	if (rt_tok_build(&spec, &blob, &size, &e)) {
		fprintf(stderr, "bench_tokenize: %s\n", e.msg);
		return 1;
	}
	double t1 = now();
	RtTok *tok = rt_tok_open(blob, size, &e);
	double t2 = now();
	if (!tok) {
		fprintf(stderr, "bench_tokenize: %s\n", e.msg);
		return 1;
	}
	printf("blob: %zu bytes, built in %.1f ms, opened in %.2f us\n", size, 1e3 * (t1 - t0),
	       1e6 * (t2 - t1));

	size_t tn;
	char *text = make_text(1 << 20, &tn);
	double mbs[5];
	int nids = 0;
	for (int r = 0; r < 5; r++) {
		int32_t *ids;
		double a = now();
		if (rt_tok_encode(tok, text, tn, RT_TOK_PARSE_SPECIAL, &ids, &nids, &e)) {
			fprintf(stderr, "bench_tokenize: %s\n", e.msg);
			return 1;
		}
		double b = now();
		mbs[r] = (double)tn / (b - a) / 1e6;
		free(ids);
	}
	qsort(mbs, 5, sizeof *mbs, cmp_double);
	printf("encode: %zu bytes -> %d tokens, median %.1f MB/s of 5 runs (min %.1f, max %.1f)\n",
	       tn, nids, mbs[2], mbs[0], mbs[4]);
	rt_tok_free(tok);
	free(blob);
	free(text);
	free(tf);
	free(sf);
	free(mf);
	return 0;
}
