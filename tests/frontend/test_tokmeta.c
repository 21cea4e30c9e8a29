/* test_tokmeta.c - tokenizer metadata from GGUF: the golden files, and malformed keys. */
#include "testutil.h"

#include "frontend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 256 byte tokens in GPT-2's byte-to-unicode form, then "ab", <s>, </s>. */
enum { N_TOK = 259 };
static char tok_text[N_TOK][24];
static const char *toks[N_TOK];
static int32_t types[N_TOK];

static void make_vocab(void)
{
	int extra = 0;
	for (int b = 0; b < 256; b++) {
		bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
		unsigned cp = self ? (unsigned)b : 256u + (unsigned)extra++;
		char *p = tok_text[b];
		if (cp < 0x80) {
			p[0] = (char)cp;
		} else {
			p[0] = (char)(0xC0 | (cp >> 6));
			p[1] = (char)(0x80 | (cp & 0x3F));
		}
		types[b] = 1;
	}
	strcpy(tok_text[256], "ab");
	strcpy(tok_text[257], "<s>");
	strcpy(tok_text[258], "</s>");
	types[256] = 1;
	types[257] = types[258] = 3;
	for (int i = 0; i < N_TOK; i++)
		toks[i] = tok_text[i];
}

/* A GGUF holding only tokenizer metadata; mutate() may override keys. */
static GgufFile *write_and_open(const char *name, void (*mutate)(GgufWriter *), BnErr *e)
{
	make_vocab();
	GgufWriter *w = gguf_writer_new();
	gguf_writer_str(w, "general.architecture", "bitnet-b1.58");
	gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
	gguf_writer_arr_str(w, "tokenizer.ggml.tokens", toks, N_TOK);
	gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_T_I32, types, N_TOK);
	const char *merges[] = {"a b"};
	gguf_writer_arr_str(w, "tokenizer.ggml.merges", merges, 1);
	gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", 257);
	gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", 258);
	if (mutate)
		mutate(w);
	const char *path = tu_tmp(name);
	assert_int_equal(gguf_writer_write(w, path, e), 0);
	gguf_writer_free(w);
	GgufFile *f = gguf_open(path, e);
	assert_non_null(f);
	return f;
}

/* Loads and expects failure with a message naming the file and the key. */
static void expect_error(const char *name, void (*mutate)(GgufWriter *), const char *key)
{
	BnErr e = {0};
	GgufFile *f = write_and_open(name, mutate, &e);
	BnmTok t;
	memset(&t, 0, sizeof t);
	int rc = bnm_tok_load(f, &t, &e);
	if (rc == 0)
		fail_msg("%s: loaded, expected an error about %s", name, key);
	if (!strstr(e.msg, name) || !strstr(e.msg, key))
		fail_msg("%s: message does not name the file and %s: %s", name, key, e.msg);
	bnm_tok_free(&t);
	gguf_close(f);
}

static void types_short(GgufWriter *w)
{
	gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_T_I32, types, 3);
}

static void types_strings(GgufWriter *w)
{
	gguf_writer_arr_str(w, "tokenizer.ggml.token_type", toks, N_TOK);
}

static void bos_out_of_range(GgufWriter *w)
{
	gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", 999);
}

static void tokens_not_array(GgufWriter *w)
{
	gguf_writer_str(w, "tokenizer.ggml.tokens", "a b ab");
}

static void merge_unknown(GgufWriter *w)
{
	const char *merges[] = {"a zz"};
	gguf_writer_arr_str(w, "tokenizer.ggml.merges", merges, 1);
}

static void test_good(void **state)
{
	(void)state;
	BnErr e = {0};
	GgufFile *f = write_and_open("tm-good.gguf", NULL, &e);
	BnmTok t;
	memset(&t, 0, sizeof t);
	if (bnm_tok_load(f, &t, &e))
		fail_msg("%s", e.msg);
	assert_non_null(t.blob);
	assert_int_equal(t.n_tokens, N_TOK);
	assert_int_equal(t.bos, 257);
	assert_int_equal(t.eos, 258);
	bnm_tok_free(&t);
	gguf_close(f);
}

static void test_malformed(void **state)
{
	(void)state;
	expect_error("tm-types-short.gguf", types_short, "tokenizer.ggml.token_type");
	expect_error("tm-types-str.gguf", types_strings, "tokenizer.ggml.token_type");
	expect_error("tm-bos.gguf", bos_out_of_range, "bos");
	expect_error("tm-tokens.gguf", tokens_not_array, "tokenizer.ggml.tokens");
	expect_error("tm-merge.gguf", merge_unknown, "merge");
}

/* No tokenizer at all is not an error: the program then takes ids. */
static void no_model(GgufWriter *w)
{
	gguf_writer_str(w, "tokenizer.ggml.model", "none-such");
}

static void test_none(void **state)
{
	(void)state;
	BnErr e = {0};
	GgufFile *f = write_and_open("tm-none.gguf", no_model, &e);
	BnmTok t;
	memset(&t, 0, sizeof t);
	assert_int_equal(bnm_tok_load(f, &t, &e), 0);
	assert_null(t.blob);
	assert_true(strlen(t.none_why) > 0);
	bnm_tok_free(&t);
	gguf_close(f);
}

static void test_golden(void **state)
{
	(void)state;
	BnErr e = {0};
	GgufFile *f = gguf_open(tu_data("golden/models/tiny-b158-i2_s.gguf"), &e);
	assert_non_null(f);
	BnmTok t;
	memset(&t, 0, sizeof t);
	assert_int_equal(bnm_tok_load(f, &t, &e), 0);
	assert_non_null(t.blob);
	assert_int_equal(t.n_tokens, 512);
	assert_int_equal(t.bos, 496);
	assert_int_equal(t.eos, 497);
	bnm_tok_free(&t);
	gguf_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_golden),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
