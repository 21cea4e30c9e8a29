/* test_tok.c - the Llama 3 tokenizer built from tests/data: every reference vector, special
 * tokens both ways, round trips, invalid UTF-8, corrupt blobs, streaming decode; the same
 * vocabulary split as Falcon 3 (pre "falcon3", "falcon_e") against its reference vectors. */
#include "testutil.h"
#include "rt_tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the vocabulary from the data files ---------------------------------------- */

typedef struct {
	char *tok_file, *merge_file, *special_file;
	const char **tokens, **merges;
	uint32_t *token_len, *merge_len;
	int32_t *types;
	int n_tokens, n_merges;
	void *blob, *fblob;
	size_t size, fsize;
	RtTok *tok, *ftok; /* ftok: the Falcon 3 split */
} Llama3;

static Llama3 L;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_text(const char *path, size_t *n)
{
	char *s = tu_read_file(path, n);
	if (!s)
		fail_msg("cannot read %s", path);
	s[*n] = 0; /* tu_read_file leaves room: it stops below its capacity */
	return s;
}

/* Splits s at '\n' in place into lines[] (pointers and lengths); returns the count. */
static int split_lines(char *s, size_t n, const char **lines, uint32_t *len, int max)
{
	int k = 0;
	for (size_t i = 0; i < n && k < max;) {
		size_t j = i;
		while (j < n && s[j] != '\n')
			j++;
		lines[k] = s + i;
		len[k++] = (uint32_t)(j - i);
		i = j + 1;
	}
	return k;
}

static const char *data_path(const char *name)
{
	static char buf[4][1024];
	static int slot;
	char *b = buf[slot++ % 4];
	const char *d = getenv("BN_DATA_DIR");
	snprintf(b, sizeof buf[0], "%s/llama3/%s", d && *d ? d : "build/data", name);
	return b;
}

static int setup(void **state)
{
	(void)state;
	enum { NT = 128256, NM = 280147 };
	size_t n;
	L.tokens = calloc(NT, sizeof *L.tokens);
	L.token_len = calloc(NT, sizeof *L.token_len);
	L.types = calloc(NT, sizeof *L.types);
	L.merges = calloc(NM, sizeof *L.merges);
	L.merge_len = calloc(NM, sizeof *L.merge_len);
	L.tok_file = read_text(data_path("tokens.txt"), &n);
	L.n_tokens = split_lines(L.tok_file, n, L.tokens, L.token_len, 128000);
	assert_int_equal(L.n_tokens, 128000);
	for (int i = 0; i < NT; i++)
		L.types[i] = i < 128000 ? RT_TT_NORMAL : RT_TT_CONTROL;
	L.special_file = read_text(data_path("special.tsv"), &n);
	for (char *p = L.special_file; *p;) {
		char *end;
		long id = strtol(p, &end, 10);
		assert_true(*end == '\t' && id >= 128000 && id < NT);
		char *name = end + 1, *nl = strchr(name, '\n');
		L.tokens[id] = name;
		L.token_len[id] = (uint32_t)(nl ? nl - name : (long)strlen(name));
		p = nl ? nl + 1 : name + L.token_len[id];
	}
	L.n_tokens = NT;
	L.merge_file = read_text(data_path("merges.txt"), &n);
	L.n_merges = split_lines(L.merge_file, n, L.merges, L.merge_len, NM);
	assert_int_equal(L.n_merges, NM);

	int32_t eog = 128009;
	RtTokSpec spec = {
		.kind = RT_TOK_BPE, .n_tokens = NT, .tokens = L.tokens, .token_len = L.token_len,
		.types = L.types, .n_merges = NM, .merges = L.merges, .merge_len = L.merge_len,
		.bos = 128000, .eos = 128001, .unk = -1, .eog = &eog, .n_eog = 1, .add_bos = true,
		.pre = NULL,
	};
	RtErr e = {0};
	double t0 = now();
	int rc = rt_tok_build(&spec, &L.blob, &L.size, &e);
	double t1 = now();
	if (rc)
		fail_msg("rt_tok_build: %s", e.msg);
	L.tok = rt_tok_open(L.blob, L.size, &e);
	double t2 = now();
	if (!L.tok)
		fail_msg("rt_tok_open: %s", e.msg);
	printf("[ tok ] Llama 3 blob: %zu bytes, built in %.1f ms, opened in %.1f us\n", L.size,
	       1e3 * (t1 - t0), 1e6 * (t2 - t1));
	spec.pre = "falcon3";
	spec.add_bos = false;
	if (rt_tok_build(&spec, &L.fblob, &L.fsize, &e))
		fail_msg("rt_tok_build (falcon3): %s", e.msg);
	if (!(L.ftok = rt_tok_open(L.fblob, L.fsize, &e)))
		fail_msg("rt_tok_open (falcon3): %s", e.msg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rt_tok_free(L.tok);
	free(L.blob);
	rt_tok_free(L.ftok);
	free(L.fblob);
	free(L.tokens);
	free(L.token_len);
	free(L.types);
	free(L.merges);
	free(L.merge_len);
	free(L.tok_file);
	free(L.merge_file);
	free(L.special_file);
	return 0;
}

/* ---- a small JSON reader for the vector files ------------------------------------ */

static void put_utf8(char *out, size_t *o, uint32_t c)
{
	if (c < 0x80) {
		out[(*o)++] = (char)c;
	} else if (c < 0x800) {
		out[(*o)++] = (char)(0xc0 | c >> 6);
		out[(*o)++] = (char)(0x80 | (c & 0x3f));
	} else if (c < 0x10000) {
		out[(*o)++] = (char)(0xe0 | c >> 12);
		out[(*o)++] = (char)(0x80 | (c >> 6 & 0x3f));
		out[(*o)++] = (char)(0x80 | (c & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | c >> 18);
		out[(*o)++] = (char)(0x80 | (c >> 12 & 0x3f));
		out[(*o)++] = (char)(0x80 | (c >> 6 & 0x3f));
		out[(*o)++] = (char)(0x80 | (c & 0x3f));
	}
}

static uint32_t hex4(const char *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v = v << 4 | (uint32_t)(c <= '9' ? c - '0' : (c | 32) - 'a' + 10);
	}
	return v;
}

/* The value after "key": in a one-line object, or NULL. */
static const char *json_key(const char *line, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\":", key);
	const char *p = strstr(line, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	return p;
}

/* A JSON string at p into a malloc'd buffer (*n bytes, NUL after). */
static char *json_string(const char *p, size_t *n)
{
	assert_true(*p == '"');
	char *out = malloc(strlen(p) + 1);
	size_t o = 0;
	for (p++; *p != '"'; p++) {
		assert_true(*p != 0);
		if (*p != '\\') {
			out[o++] = *p;
			continue;
		}
		p++;
		switch (*p) {
		case 'n': out[o++] = '\n'; break;
		case 't': out[o++] = '\t'; break;
		case 'r': out[o++] = '\r'; break;
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'u': {
			uint32_t c = hex4(p + 1);
			p += 4;
			if (c >= 0xd800 && c < 0xdc00 && p[1] == '\\' && p[2] == 'u') {
				uint32_t lo = hex4(p + 3);
				if (lo >= 0xdc00 && lo < 0xe000) {
					c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				}
			}
			put_utf8(out, &o, c);
			break;
		}
		default: out[o++] = *p; break; /* \" \\ \/ */
		}
	}
	out[o] = 0;
	*n = o;
	return out;
}

/* A JSON array of integers at p; returns the count (at most max). */
static int json_ids(const char *p, int32_t *ids, int max)
{
	assert_true(*p == '[');
	int n = 0;
	for (p++; *p && *p != ']';) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p) {
			p++;
			continue;
		}
		assert_true(n < max);
		ids[n++] = (int32_t)v;
		p = end;
	}
	return n;
}

typedef struct {
	char *file;
	char *lines[1024];
	int n;
} Jsonl;

static void jsonl_read(Jsonl *j, const char *rel)
{
	size_t n;
	j->file = read_text(tu_data(rel), &n);
	j->n = 0;
	for (char *p = strtok(j->file, "\n"); p && j->n < 1024; p = strtok(NULL, "\n"))
		j->lines[j->n++] = p;
}

/* ---- helpers ---------------------------------------------------------------------- */

static int encode_with(const RtTok *t, const char *s, size_t n, int flags, int32_t **ids)
{
	int cnt;
	RtErr e = {0};
	if (rt_tok_encode(t, s, n, flags, ids, &cnt, &e))
		fail_msg("encode: %s", e.msg);
	return cnt;
}

static int encode(const char *s, size_t n, int flags, int32_t **ids)
{
	return encode_with(L.tok, s, n, flags, ids);
}

/* The concatenated pieces (special ones as text); malloc'd, *n bytes. */
static char *decode(const int32_t *ids, int n, size_t *len)
{
	size_t cap = 64, o = 0;
	char *out = malloc(cap);
	for (int i = 0; i < n; i++) {
		int k = rt_tok_piece(L.tok, ids[i], true, out + o, (int)(cap - o));
		assert_true(k >= 0);
		if (o + (size_t)k > cap) {
			while (o + (size_t)k > cap)
				cap *= 2;
			out = realloc(out, cap);
			rt_tok_piece(L.tok, ids[i], true, out + o, k);
		}
		o += (size_t)k;
	}
	*len = o;
	return out;
}

static bool same_ids(const int32_t *a, int na, const int32_t *b, int nb)
{
	return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static void show_diff(const char *what, const char *text, const int32_t *got, int ng,
		      const int32_t *want, int nw)
{
	printf("[ tok ] %s mismatch for \"%s\"\n  got ", what, text);
	for (int i = 0; i < ng; i++)
		printf(" %d", got[i]);
	printf("\n  want");
	for (int i = 0; i < nw; i++)
		printf(" %d", want[i]);
	printf("\n");
}

/* Encodes the text with t, compares to key's ids, and checks the round trip; returns 1 on
 * a full match. */
static int check_vector_with(const RtTok *t, const char *line, const char *key, int flags,
			     bool quiet)
{
	size_t n;
	char *text = json_string(json_key(line, "text"), &n);
	int32_t want[4096], *got;
	int nw = json_ids(json_key(line, key), want, 4096);
	int ng = encode_with(t, text, n, flags, &got);
	bool ok = same_ids(got, ng, want, nw);
	if (!ok && !quiet)
		show_diff(key, text, got, ng, want, nw);
	size_t dn;
	char *back = decode(got, ng, &dn);
	bool rt = dn == n && memcmp(back, text, n) == 0;
	if (!rt)
		printf("[ tok ] round trip fails for \"%s\"\n", text);
	free(back);
	free(got);
	free(text);
	return ok && rt;
}

static int check_vector(const char *line, const char *key, int flags, bool quiet)
{
	return check_vector_with(L.tok, line, key, flags, quiet);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_vectors(void **state)
{
	(void)state;
	Jsonl j;
	jsonl_read(&j, "tokenizer/vectors.jsonl");
	int pass = 0;
	for (int i = 0; i < j.n; i++)
		pass += check_vector(j.lines[i], "ids", 0, false);
	printf("[ tok ] vectors.jsonl: %d/%d match and round-trip\n", pass, j.n);
	assert_int_equal(j.n, 253);
	assert_int_equal(pass, j.n);
	free(j.file);
}

static void test_special_vectors(void **state)
{
	(void)state;
	Jsonl j;
	jsonl_read(&j, "tokenizer/vectors_special.jsonl");
	int pass_sp = 0, pass_plain = 0;
	for (int i = 0; i < j.n; i++) {
		pass_sp += check_vector(j.lines[i], "ids", RT_TOK_PARSE_SPECIAL, false);
		pass_plain += check_vector(j.lines[i], "ids_no_special", 0, false);
	}
	printf("[ tok ] vectors_special.jsonl: %d/%d with special parsing, %d/%d as plain text\n",
	       pass_sp, j.n, pass_plain, j.n);
	assert_true(j.n > 0);
	assert_int_equal(pass_sp, j.n);
	assert_int_equal(pass_plain, j.n);
	free(j.file);
}

/* U+0085 and U+FEFF, where JavaScript's \s and Unicode's White_Space differ: the split
 * follows Unicode (as HF tokenizers and llama.cpp do), so every case gives ids_unicode_ws.
 * Those ids come from one independent implementation (see the data README): a mismatch
 * here is a question to settle, not a proof that the tokenizer is wrong. */
static void test_ws_divergent(void **state)
{
	(void)state;
	Jsonl j;
	jsonl_read(&j, "tokenizer/vectors_ws_divergent.jsonl");
	int pass = 0;
	for (int i = 0; i < j.n; i++)
		pass += check_vector(j.lines[i], "ids_unicode_ws", 0, false);
	printf("[ tok ] vectors_ws_divergent.jsonl: %d/%d agree with ids_unicode_ws\n", pass, j.n);
	assert_int_equal(j.n, 13);
	assert_int_equal(pass, j.n);
	free(j.file);
}

/* The Falcon 3 split against the reference's llama-tokenize on a "falcon3" GGUF with this
 * vocabulary (tests/data/tokenizer/README.md): Llama 3's inputs and ones that stress where
 * the splits differ. The reference gives "falcon_e" the same split and flags, so a
 * "falcon_e" blob must be the "falcon3" one byte for byte. */
static void test_falcon3_vectors(void **state)
{
	(void)state;
	Jsonl j;
	jsonl_read(&j, "tokenizer/vectors_falcon3.jsonl");
	int pass = 0, differ = 0;
	for (int i = 0; i < j.n; i++) {
		pass += check_vector_with(L.ftok, j.lines[i], "ids", 0, false);
		differ += !check_vector_with(L.tok, j.lines[i], "ids", 0, true);
	}
	printf("[ tok ] vectors_falcon3.jsonl: %d/%d match and round-trip (%d split otherwise by "
	       "Llama 3)\n", pass, j.n, differ);
	assert_true(j.n > 300);
	assert_int_equal(pass, j.n);
	assert_true(differ > 50);
	free(j.file);
}

static void test_falcon_e_same(void **state)
{
	(void)state;
	int32_t eog = 128009;
	RtTokSpec spec = {
		.kind = RT_TOK_BPE, .n_tokens = L.n_tokens, .tokens = L.tokens,
		.token_len = L.token_len, .types = L.types, .n_merges = L.n_merges,
		.merges = L.merges, .merge_len = L.merge_len, .bos = 128000, .eos = 128001,
		.unk = -1, .eog = &eog, .n_eog = 1, .add_bos = false, .pre = "falcon_e",
	};
	void *blob;
	size_t size;
	RtErr e = {0};
	assert_int_equal(rt_tok_build(&spec, &blob, &size, &e), RT_OK);
	assert_int_equal(size, L.fsize);
	assert_memory_equal(blob, L.fblob, size);
	free(blob);
	assert_int_equal(rt_tok_pre_split("falcon3"), RT_TOK_SPLIT_FALCON3);
	assert_int_equal(rt_tok_pre_split("falcon_e"), RT_TOK_SPLIT_FALCON3);
	assert_int_equal(rt_tok_pre_split("falcon"), RT_TOK_SPLIT_LLAMA3);
	assert_int_equal(rt_tok_pre_split("llama-bpe"), RT_TOK_SPLIT_LLAMA3);
	assert_int_equal(rt_tok_pre_split(NULL), RT_TOK_SPLIT_LLAMA3);
	assert_false(rt_tok_add_bos(L.ftok));
}

/* Where the two splits part, by hand (ids from the reference, as in the vectors): digits one
 * by one, the apostrophe cut from its contraction, a punctuation run apart from what follows,
 * white space whole at a piece's end. */
static void test_falcon3_split(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int n;
		int32_t ids[8];
	} cases[] = {
		{"x 123", 5, {87, 220, 16, 17, 18}}, /* Llama 3: x, " 123" */
		{"it's", 3, {275, 6, 82}},           /* Llama 3: it, 's */
		{"a.\nb", 4, {64, 13, 198, 65}},     /* Llama 3: a, ".\n", b */
		{"hi  !", 3, {6151, 256, 0}},        /* Llama 3: hi, " ", " !" */
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int32_t *a, *b;
		size_t n = strlen(cases[i].text);
		int na = encode_with(L.tok, cases[i].text, n, 0, &a);
		int nb = encode_with(L.ftok, cases[i].text, n, 0, &b);
		if (!same_ids(b, nb, cases[i].ids, cases[i].n))
			show_diff("falcon3", cases[i].text, b, nb, cases[i].ids, cases[i].n);
		assert_true(same_ids(b, nb, cases[i].ids, cases[i].n));
		assert_false(same_ids(a, na, cases[i].ids, cases[i].n));
		free(a);
		free(b);
	}
}

/* The token of a single raw byte, found through its GPT-2 character in tokens.txt. */
static int32_t byte_token(uint8_t b)
{
	int32_t *ids;
	char c = (char)b;
	int n = encode(&c, 1, 0, &ids);
	assert_int_equal(n, 1);
	int32_t id = ids[0];
	free(ids);
	return id;
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	/* 0xFF is 'ÿ' (U+00FF) in GPT-2 form, 0x80 is U+0122 'Ģ' (the 35th byte without a
	 * printable form: 0..32 and 127 come before it): check the map against tokens.txt. */
	int32_t yy = -1;
	for (int32_t i = 0; i < 128000 && yy < 0; i++)
		if (L.token_len[i] == 2 && memcmp(L.tokens[i], "\xc3\xbf", 2) == 0)
			yy = i;
	assert_int_equal(byte_token(0xff), yy);
	int32_t gg = -1; /* U+0122 'Ģ' */
	for (int32_t i = 0; i < 128000 && gg < 0; i++)
		if (L.token_len[i] == 2 && memcmp(L.tokens[i], "\xc4\xa2", 2) == 0)
			gg = i;
	assert_int_equal(byte_token(0x80), gg);
	const char *cases[] = {
		"\x80", "\xff", "a\x80" "b", "\xe4\xb8", "x\xe4\xb8", "\xe4\xb8 y", "\xc0\xaf",
		"\xed\xa0\x80", "\xf4\x90\x80\x80", "caf\xc3", "\xff\xfe\xfd", "ok \x80\x81\x82 ok",
		"\xf0\x9f\x98", "\xf0\x9f\x98\x80\xf0\x9f", "hello\xff world", "12\x80" "34",
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		const char *s = cases[i];
		size_t n = strlen(s);
		int32_t *ids;
		int k = encode(s, n, RT_TOK_PARSE_SPECIAL, &ids);
		assert_true(k > 0);
		size_t dn;
		char *back = decode(ids, k, &dn);
		assert_int_equal(dn, n);
		assert_memory_equal(back, s, n);
		free(back);
		free(ids);
	}
	/* A lone invalid byte is its byte token. */
	int32_t *ids;
	assert_int_equal(encode("\x80", 1, 0, &ids), 1);
	assert_int_equal(ids[0], byte_token(0x80));
	free(ids);
}

static void test_empty_and_bos(void **state)
{
	(void)state;
	int32_t *ids;
	assert_int_equal(encode("", 0, 0, &ids), 0);
	free(ids);
	assert_int_equal(encode("", 0, RT_TOK_ADD_BOS, &ids), 1);
	assert_int_equal(ids[0], 128000);
	free(ids);
	assert_int_equal(encode("Hello", 5, RT_TOK_ADD_BOS, &ids), 2);
	assert_int_equal(ids[0], 128000);
	assert_int_equal(ids[1], 9906);
	free(ids);
	assert_int_equal(rt_tok_n_vocab(L.tok), 128256);
	assert_int_equal(rt_tok_bos(L.tok), 128000);
	assert_true(rt_tok_add_bos(L.tok));
	assert_true(rt_tok_is_eog(L.tok, 128001));
	assert_true(rt_tok_is_eog(L.tok, 128009));
	assert_false(rt_tok_is_eog(L.tok, 128000));
	assert_false(rt_tok_is_eog(L.tok, 13));
	assert_false(rt_tok_is_eog(L.tok, -1));
}

static void test_pieces(void **state)
{
	(void)state;
	char buf[64];
	assert_int_equal(rt_tok_piece(L.tok, 128009, false, buf, sizeof buf), 0);
	assert_int_equal(rt_tok_piece(L.tok, 128009, true, buf, sizeof buf), 10);
	assert_memory_equal(buf, "<|eot_id|>", 10);
	assert_int_equal(rt_tok_piece(L.tok, 1917, false, buf, sizeof buf), 6); /* " world" */
	assert_memory_equal(buf, " world", 6);
	assert_int_equal(rt_tok_piece(L.tok, 198, false, buf, sizeof buf), 1); /* "\n" */
	assert_int_equal(buf[0], '\n');
	/* A short buffer gets a prefix; the full length comes back. */
	memset(buf, 0, sizeof buf);
	assert_int_equal(rt_tok_piece(L.tok, 1917, false, buf, 3), 6);
	assert_memory_equal(buf, " wo\0", 4);
	assert_int_equal(rt_tok_piece(L.tok, -1, true, buf, sizeof buf), -1);
	assert_int_equal(rt_tok_piece(L.tok, 128256, true, buf, sizeof buf), -1);
}

/* Pushes each token's piece through RtDetok; every chunk must be whole characters. */
static void test_streaming(void **state)
{
	(void)state;
	RtDetok d = {{0}, 0};
	char out[16];
	/* By hand: U+1F600 in two halves, then an invalid byte flushed as it is. */
	assert_int_equal(rt_detok_push(&d, "\xf0\x9f", 2, out), 0);
	assert_int_equal(rt_detok_push(&d, "\x98", 1, out), 0);
	assert_int_equal(rt_detok_push(&d, "\x80!", 2, out), 5);
	assert_memory_equal(out, "\xf0\x9f\x98\x80!", 5);
	assert_int_equal(rt_detok_push(&d, "a\xe4", 2, out), 1);
	assert_int_equal(rt_detok_flush(&d, out), 1);
	assert_int_equal((unsigned char)out[0], 0xe4);
	/* A prefix that can never complete (0xE0 0x80 is overlong) is not held. */
	assert_int_equal(rt_detok_push(&d, "\xe0\x80", 2, out), 2);
	assert_int_equal(rt_detok_flush(&d, out), 0);

	const char *text = "Emoji 😀🤖 and 日本語の文字, Ελληνικά; 𝔘𝔫𝔦𝔠𝔬𝔡𝔢!";
	size_t n = strlen(text);
	int32_t *ids;
	int k = encode(text, n, 0, &ids);
	char *all = malloc(n + 64);
	size_t o = 0;
	int split = 0;
	for (int i = 0; i < k; i++) {
		char piece[64], chunk[72];
		int pn = rt_tok_piece(L.tok, ids[i], false, piece, sizeof piece);
		assert_true(pn >= 0 && pn < 64);
		size_t cn = rt_detok_push(&d, piece, (size_t)pn, chunk);
		split += cn != (size_t)pn;
		/* each chunk is whole UTF-8: its last character is complete */
		for (size_t c = 0; c < cn;) {
			unsigned char b = (unsigned char)chunk[c];
			size_t l = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
			assert_true(c + l <= cn);
			c += l;
		}
		memcpy(all + o, chunk, cn);
		o += cn;
	}
	o += rt_detok_flush(&d, all + o);
	assert_int_equal(o, n);
	assert_memory_equal(all, text, n);
	assert_true(split > 0); /* some character did come split across tokens */
	free(all);
	free(ids);
}

/* Random byte strings drawn from what stresses the splits (letters, digits, spaces, CR/LF,
 * apostrophes, '<|', punctuation, multi-byte and invalid UTF-8) round-trip exactly, both
 * splits, both modes. */
static void test_random_roundtrip(void **state)
{
	(void)state;
	static const char *atoms[] = {
		"a", "Z", "7", " ", "  ", "\t", "\r", "\n", "'", "'s", "'LL", "<|", "|>", "<|eot_id|>",
		"\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xcc\x81", "\xc2\x85", "\xef\xbb\xbf",
		"\xe3\x80\x80", "\x80", "\xff", "\xe4\xb8", "\xf0\x9f", "\xc0", ".", "!?", "_", "\xd9\xa3",
		"$", "123", "\xc2\xab", "\xe2\x80\x94", "\xe3\x80\x8c",
	};
	uint64_t rng = 42;
	char buf[512];
	for (int it = 0; it < 3000; it++) {
		size_t n = 0;
		int k = (int)(tu_rand(&rng) % 40);
		for (int i = 0; i < k; i++) {
			const char *a = atoms[tu_rand(&rng) % (sizeof atoms / sizeof *atoms)];
			size_t l = strlen(a);
			memcpy(buf + n, a, l);
			n += l;
		}
		for (int v = 0; v < 4; v++) { /* both splits, both modes */
			int32_t *ids;
			int m = encode_with(v & 1 ? L.ftok : L.tok, buf, n,
					    v & 2 ? RT_TOK_PARSE_SPECIAL : 0, &ids);
			assert_true(n == 0 ? m == 0 : m > 0);
			size_t dn;
			char *back = decode(ids, m, &dn);
			assert_int_equal(dn, n);
			assert_memory_equal(back, buf, n);
			free(back);
			free(ids);
		}
	}
}

/* One pre-token of 256 KiB (a single "word") goes through the heap merge, not a quadratic
 * scan, and comes back whole. */
static void test_long_word(void **state)
{
	(void)state;
	size_t n = 256 * 1024;
	char *s = malloc(n);
	for (size_t i = 0; i < n; i += 3)
		memcpy(s + i, "\xe4\xb8\xad", 3 <= n - i ? 3 : n - i);
	for (size_t i = 0; i < n / 2; i++)
		s[i] = (char)('a' + i % 26);
	int32_t *ids;
	int m = encode(s, n, 0, &ids);
	assert_true(m > 0 && (size_t)m < n);
	size_t dn;
	char *back = decode(ids, m, &dn);
	assert_int_equal(dn, n);
	assert_memory_equal(back, s, n);
	free(back);
	free(ids);
	free(s);
}

static void expect_open_error(const void *blob, size_t size, const char *what)
{
	RtErr e = {0};
	RtTok *t = rt_tok_open(blob, size, &e);
	if (t)
		fail_msg("rt_tok_open accepted a blob with %s", what);
	assert_int_not_equal(e.code, 0);
	assert_true(e.msg[0] != 0);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_corrupt_blob(void **state)
{
	(void)state;
	uint8_t *b = malloc(L.size);
	expect_open_error(NULL, 0, "nothing");
	expect_open_error(L.blob, 10, "10 bytes");
	expect_open_error(L.blob, L.size - 1, "its last byte cut");
	expect_open_error(L.blob, L.size / 2, "half cut");
	memcpy(b, L.blob, L.size);
	b[0] ^= 1;
	expect_open_error(b, L.size, "a bad magic");
	memcpy(b, L.blob, L.size);
	put32(b + 4, 99);
	expect_open_error(b, L.size, "version 99");
	/* Section offsets start at word 16: push the first one past the end. */
	memcpy(b, L.blob, L.size);
	put32(b + 64, (uint32_t)L.size);
	expect_open_error(b, L.size, "an offset past the end");
	memcpy(b, L.blob, L.size);
	put32(b + 68, 0xfffffff0u);
	expect_open_error(b, L.size, "a huge section size");
	memcpy(b, L.blob, L.size);
	put32(b + 12, 7); /* n_tokens 7: the sections no longer fit the counts */
	expect_open_error(b, L.size, "a wrong token count");
	memcpy(b, L.blob, L.size);
	put32(b + 4 * 14, 2); /* the split word: 0 Llama 3, 1 Falcon 3 */
	expect_open_error(b, L.size, "an unknown split");
	put32(b + 4 * 14, 1);
	RtErr se = {0};
	RtTok *st = rt_tok_open(b, L.size, &se);
	assert_non_null(st); /* the same blob split as Falcon 3: "x 123" as x, ' ', 1, 2, 3 */
	int32_t *sids;
	int sn;
	assert_int_equal(rt_tok_encode(st, "x 123", 5, 0, &sids, &sn, &se), 0);
	assert_int_equal(sn, 5);
	free(sids);
	rt_tok_free(st);
	/* A blob whose tables point nowhere still opens if its sizes agree, and then must
	 * not crash: scramble the token offsets and hash slots and encode. */
	memcpy(b, L.blob, L.size);
	uint64_t rng = 7;
	for (size_t i = 4 * 40; i < L.size; i += 4)
		if (tu_rand(&rng) % 3 == 0)
			put32(b + i, (uint32_t)tu_rand(&rng));
	RtErr e = {0};
	RtTok *t = rt_tok_open(b, L.size, &e);
	if (t) {
		int32_t *ids;
		int n;
		const char *s = "Hello, world! 日本語 <|eot_id|>";
		if (rt_tok_encode(t, s, strlen(s), RT_TOK_PARSE_SPECIAL, &ids, &n, &e) == 0)
			free(ids);
		char buf[16];
		for (int32_t id = 0; id < 1000; id++)
			rt_tok_piece(t, id * 97, true, buf, sizeof buf);
		rt_tok_free(t);
	}
	free(b);
}

static void test_build_errors(void **state)
{
	(void)state;
	const char *toks[] = {"a", "b", "ab"};
	uint32_t lens[] = {1, 1, 2};
	const char *merges[] = {"a c"};
	uint32_t mlens[] = {3};
	RtTokSpec s = {.kind = RT_TOK_BPE, .n_tokens = 3, .tokens = toks, .token_len = lens,
		       .n_merges = 1, .merges = merges, .merge_len = mlens, .bos = -1, .eos = -1,
		       .unk = -1};
	void *blob;
	size_t size;
	RtErr e = {0};
	/* No token for most bytes: a byte-level vocabulary must cover all 256. */
	assert_int_equal(rt_tok_build(&s, &blob, &size, &e), RT_EINVAL);
	assert_non_null(strstr(e.msg, "byte"));
	s.bos = 5;
	assert_int_equal(rt_tok_build(&s, &blob, &size, &e), RT_EINVAL);
	assert_non_null(strstr(e.msg, "bos"));
	s.bos = -1;
	s.kind = (RtTokKind)9;
	assert_int_equal(rt_tok_build(&s, &blob, &size, &e), RT_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_special_vectors),
		cmocka_unit_test(test_ws_divergent),
		cmocka_unit_test(test_falcon3_vectors),
		cmocka_unit_test(test_falcon_e_same),
		cmocka_unit_test(test_falcon3_split),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_empty_and_bos),
		cmocka_unit_test(test_pieces),
		cmocka_unit_test(test_streaming),
		cmocka_unit_test(test_random_roundtrip),
		cmocka_unit_test(test_long_word),
		cmocka_unit_test(test_corrupt_blob),
		cmocka_unit_test(test_build_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
