/* test_tokmeta.c - tokenizer metadata from GGUF: the golden files, and malformed keys. */
#include "testutil.h"

#include "frontend.h"
#include "rt_tok.h"

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

/* ---- tokenizer.ggml.pre --------------------------------------------------------- */

static const char *pre_value;

static void set_pre(GgufWriter *w)
{
	gguf_writer_str(w, "tokenizer.ggml.pre", pre_value);
}

/* Loads the test vocabulary with tokenizer.ggml.pre = pre (NULL: none) and force_pre;
 * returns the load's status, the tokenizer in *t. */
static int load_pre(const char *pre, const char *force_pre, BnmTok *t, BnErr *e)
{
	pre_value = pre;
	GgufFile *f = write_and_open("tm-pre.gguf", pre ? set_pre : NULL, e);
	memset(t, 0, sizeof *t);
	int rc = bnm_tok_load_pre(f, force_pre, t, e);
	gguf_close(f);
	return rc;
}

static void test_pre(void **state)
{
	(void)state;
	BnErr e = {0};
	BnmTok t;
	/* the Llama 3 group, and no pre at all: the Llama 3 split, said so */
	const char *good[] = {"llama-bpe", "llama3", "llama-v3", "falcon-h1"};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		if (load_pre(good[i], NULL, &t, &e))
			fail_msg("%s: %s", good[i], e.msg);
		assert_non_null(t.blob);
		assert_non_null(strstr(t.split, "Llama 3 split"));
		assert_non_null(strstr(t.split, good[i]));
		bnm_tok_free(&t);
	}
	assert_int_equal(load_pre(NULL, NULL, &t, &e), 0);
	assert_string_equal(t.split, "the Llama 3 split (the file has no tokenizer.ggml.pre)");
	bnm_tok_free(&t);
	/* another split: refused, naming the value, what is supported and the way out;
	 * "default" too, which llama.cpp splits with another regex, and "falcon", whose
	 * reference split keeps digits in threes */
	const char *bad[] = {"qwen2", "default", "gpt-2", "LLAMA-BPE", "falcon", "Falcon3"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		memset(&e, 0, sizeof e);
		if (!load_pre(bad[i], NULL, &t, &e))
			fail_msg("pre '%s' was accepted", bad[i]);
		assert_int_equal(e.code, BN_EUNSUPPORTED);
		char want[96];
		snprintf(want, sizeof want, "tm-pre.gguf: tokenizer.ggml.pre: unknown pre-tokenizer "
			 "'%s'", bad[i]);
		if (!strstr(e.msg, want) || !strstr(e.msg, "llama3, llama-bpe, llama-v3") ||
		    !strstr(e.msg, "--tokenizer-pre llama3"))
			fail_msg("%s", e.msg);
		assert_null(t.blob);
		bnm_tok_free(&t);
	}
	/* forced: the Llama 3 split whatever the file says */
	if (load_pre("qwen2", "llama3", &t, &e))
		fail_msg("%s", e.msg);
	assert_non_null(t.blob);
	assert_string_equal(t.split, "the Llama 3 split (--tokenizer-pre llama3; the file says "
		"'qwen2')");
	bnm_tok_free(&t);
	memset(&e, 0, sizeof e);
	assert_int_equal(load_pre("llama-bpe", "qwen2", &t, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "unknown pre-tokenizer 'qwen2' (supported: llama3,"));
	bnm_tok_free(&t);
	const char *const *pres = bnm_tok_pres();
	assert_string_equal(pres[0], "llama3");
	assert_true(bnm_tok_pre_supported("lfm2"));
	assert_true(bnm_tok_pre_supported("falcon3"));
	assert_true(bnm_tok_pre_supported("falcon_e"));
	assert_string_equal(bnm_tok_split_name("falcon_e"), "Falcon 3");
	assert_string_equal(bnm_tok_split_name("lfm2"), "Llama 3");
	assert_false(bnm_tok_pre_supported("default"));
	assert_false(bnm_tok_pre_supported(NULL));
}

/* Without tokenizer.ggml.add_bos_token (the test vocabulary has none), BOS is added for
 * every pre of the Llama 3 group, as llama.cpp does. */
static void test_pre_add_bos(void **state)
{
	(void)state;
	BnErr e = {0};
	const char *pres[] = {"llama-v3", "falcon-h1", "pixtral"};
	for (size_t i = 0; i < sizeof pres / sizeof *pres; i++) {
		BnmTok t;
		if (load_pre(pres[i], NULL, &t, &e))
			fail_msg("%s", e.msg);
		assert_true(t.add_bos);
		bnm_tok_free(&t);
	}
}

/* "falcon3" and "falcon_e": the Falcon 3 split, said so and stored in the blob; no BOS
 * without add_bos_token (the reference's default for them); without a chat template, the
 * Falcon 3 format. Forced on another file, the same split. */
static void test_pre_falcon(void **state)
{
	(void)state;
	const char *pres[] = {"falcon3", "falcon_e"};
	for (size_t i = 0; i < 2; i++) {
		BnErr e = {0};
		BnmTok t;
		if (load_pre(pres[i], NULL, &t, &e))
			fail_msg("%s: %s", pres[i], e.msg);
		char want[96];
		snprintf(want, sizeof want, "the Falcon 3 split (tokenizer.ggml.pre '%s')", pres[i]);
		assert_string_equal(t.split, want);
		assert_false(t.add_bos);
		assert_int_equal(t.chat_template, RT_CHAT_FALCON3);
		assert_true(t.chat_from_pre);
		assert_false(t.has_chat_jinja);
		/* the blob (whose split test_tok checks on the real vocabulary) opens and agrees */
		RtErr re = {0};
		RtTok *rt = rt_tok_open(t.blob, t.size, &re);
		assert_non_null(rt);
		assert_false(rt_tok_add_bos(rt));
		rt_tok_free(rt);
		bnm_tok_free(&t);
	}
	BnErr e = {0};
	BnmTok t;
	if (load_pre("llama-bpe", "falcon_e", &t, &e))
		fail_msg("%s", e.msg);
	assert_string_equal(t.split, "the Falcon 3 split (--tokenizer-pre falcon_e; the file says "
				     "'llama-bpe')");
	assert_false(t.add_bos);
	assert_int_equal(t.chat_template, RT_CHAT_FALCON3); /* no template: the split's format */
	bnm_tok_free(&t);
	if (load_pre("falcon3", "llama3", &t, &e))
		fail_msg("%s", e.msg);
	assert_string_equal(t.split, "the Llama 3 split (--tokenizer-pre llama3; the file says "
				     "'falcon3')");
	assert_true(t.add_bos);
	bnm_tok_free(&t);
}

/* A Falcon file that says add_bos_token or has its own chat template keeps them. */
static void falcon_with_keys(GgufWriter *w)
{
	gguf_writer_str(w, "tokenizer.ggml.pre", "falcon3");
	gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", true);
	gguf_writer_str(w, "tokenizer.chat_template",
			"{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '\n' }}"
			"{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
			"{# <|user|> #}");
}

static void test_pre_falcon_keys(void **state)
{
	(void)state;
	BnErr e = {0};
	GgufFile *f = write_and_open("tm-falcon.gguf", falcon_with_keys, &e);
	BnmTok t;
	if (bnm_tok_load(f, &t, &e))
		fail_msg("%s", e.msg);
	assert_true(t.add_bos);
	assert_true(t.has_chat_jinja);
	assert_false(t.chat_from_pre);
	assert_int_equal(t.chat_template, RT_CHAT_FALCON3);
	bnm_tok_free(&t);
	gguf_close(f);
}

/* SentencePiece has no split: its pre ("default" in 1bitLLM conversions) is not read. */
static void spm_vocab(GgufWriter *w)
{
	static const char *const spm_toks[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a",
					       "\xe2\x96\x81" "a"};
	static const float scores[] = {0, 0, 0, -1, -2, -3};
	static const int32_t spm_types[] = {2, 3, 3, 1, 1, 1};
	gguf_writer_str(w, "tokenizer.ggml.model", "llama");
	gguf_writer_str(w, "tokenizer.ggml.pre", pre_value);
	gguf_writer_arr_str(w, "tokenizer.ggml.tokens", spm_toks, 6);
	gguf_writer_arr(w, "tokenizer.ggml.scores", GGUF_T_F32, scores, 6);
	gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_T_I32, spm_types, 6);
	gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", 1);
	gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", 2);
}

static void test_pre_spm(void **state)
{
	(void)state;
	const char *pres[] = {"default", "qwen2"};
	for (size_t i = 0; i < 2; i++) {
		BnErr e = {0};
		pre_value = pres[i];
		GgufFile *f = write_and_open("tm-spm.gguf", spm_vocab, &e);
		BnmTok t;
		if (bnm_tok_load(f, &t, &e))
			fail_msg("%s: %s", pres[i], e.msg);
		assert_non_null(t.blob);
		assert_string_equal(t.kind, "llama");
		assert_string_equal(t.split, "");
		bnm_tok_free(&t);
		gguf_close(f);
	}
}

/* ---- chat templates and the vocabulary's special tokens ---------------------------- */

/* The test vocabulary plus the Llama 3 chat tokens: all control, or <|eot_id|> only as a
 * normal token (text that the pre-tokenizer splits like any other). */
static int chat_tokens_type;

static void add_chat_tokens(GgufWriter *w)
{
	static const char *more[N_TOK + 3];
	static int32_t more_types[N_TOK + 3];
	for (int i = 0; i < N_TOK; i++) {
		more[i] = toks[i];
		more_types[i] = types[i];
	}
	more[N_TOK] = "<|start_header_id|>";
	more[N_TOK + 1] = "<|end_header_id|>";
	more[N_TOK + 2] = "<|eot_id|>";
	more_types[N_TOK] = more_types[N_TOK + 1] = 3;
	more_types[N_TOK + 2] = chat_tokens_type;
	gguf_writer_arr_str(w, "tokenizer.ggml.tokens", more, N_TOK + 3);
	gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_T_I32, more_types, N_TOK + 3);
}

static void chat_check(void (*mutate)(GgufWriter *), int tmpl, const char *want)
{
	BnErr e = {0};
	GgufFile *f = write_and_open("tm-chat.gguf", mutate, &e);
	BnmTok t;
	if (bnm_tok_load(f, &t, &e))
		fail_msg("%s", e.msg);
	char why[256];
	int rc = bnm_tok_chat_check(&t, tmpl, why, sizeof why);
	if (!want && rc)
		fail_msg("template %d: %s", tmpl, why);
	if (want && (!rc || strcmp(why, want)))
		fail_msg("template %d: rc %d, \"%s\"; expected \"%s\"", tmpl, rc, why, want);
	bnm_tok_free(&t);
	gguf_close(f);
}

static void test_chat_tokens(void **state)
{
	(void)state;
	chat_tokens_type = 3;
	chat_check(add_chat_tokens, RT_CHAT_LLAMA3, NULL);
	chat_check(add_chat_tokens, RT_CHAT_BITNET, NULL);
	chat_check(NULL, RT_CHAT_NONE, NULL);
	chat_check(NULL, RT_CHAT_LLAMA3,
		   "the llama3 chat template needs <|start_header_id|>, <|end_header_id|> and "
		   "<|eot_id|>, which are not special tokens of this vocabulary (its text would be "
		   "encoded as plain text)");
	chat_check(NULL, RT_CHAT_BITNET,
		   "the bitnet chat template needs <|eot_id|>, which is not a special token of "
		   "this vocabulary (its text would be encoded as plain text)");
	/* in the vocabulary, but as ordinary text: not enough */
	chat_tokens_type = 1;
	chat_check(add_chat_tokens, RT_CHAT_LLAMA3,
		   "the llama3 chat template needs <|eot_id|>, which is not a special token of "
		   "this vocabulary (its text would be encoded as plain text)");
	/* no tokenizer: nothing to check */
	BnmTok none;
	memset(&none, 0, sizeof none);
	char why[64];
	assert_int_equal(bnm_tok_chat_check(&none, RT_CHAT_LLAMA3, why, sizeof why), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_pre),
		cmocka_unit_test(test_pre_add_bos),
		cmocka_unit_test(test_pre_falcon),
		cmocka_unit_test(test_pre_falcon_keys),
		cmocka_unit_test(test_pre_spm),
		cmocka_unit_test(test_chat_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
