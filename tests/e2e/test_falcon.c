/* test_falcon.c - a llama-arch model whose vocabulary says tokenizer.ggml.pre "falcon3" (the
 * Llama 3 tokens, no chat template, no add_bos_token), built into a program: its prompts
 * are the reference's ids (tests/data/tokenizer/vectors_falcon3.jsonl), its chat turns the
 * Falcon 3 format. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char gguf[1200], prog[1200], *build_log;

static int setup(void **state)
{
	(void)state;
	snprintf(gguf, sizeof gguf, "%s", tu_tmp("falcon3.gguf"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("falcon3"));
	int rc = tu_run(&build_log, "'%s' mkmodel --shape tinyllama --llama3-vocab --layers 1 "
			"--hidden 128 --ffn 128 --heads 2 --kv-heads 1 --ctx 1024 --pre falcon3 "
			"-o '%s' && '%s' build '%s' -o '%s' -v",
			tu_bitnetc(), gguf, tu_bitnetc(), gguf, prog);
	if (rc)
		fprintf(stderr, "making the model failed:\n%s\n", build_log);
	return rc ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	free(build_log);
	return 0;
}

/* The JSON string at p (the escapes json.dumps writes: \" \\ \/ \b \f \n \r \t \u00XX)
 * into out; its length. */
static size_t json_text(const char *p, char *out)
{
	size_t o = 0;
	assert_true(*p == '"');
	for (p++; *p != '"'; p++) {
		assert_true(*p != 0);
		if (*p != '\\') {
			out[o++] = *p;
			continue;
		}
		switch (*++p) {
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'u': {
			unsigned v = 0;
			assert_int_equal(sscanf(p + 1, "%4x", &v), 1);
			assert_true(v < 0x80); /* only control characters are escaped */
			out[o++] = (char)v;
			p += 4;
			break;
		}
		default: out[o++] = *p; break;
		}
	}
	return o;
}

static void test_build(void **state)
{
	(void)state;
	tu_expect_has(build_log, "tokenizer gpt2: 128256 tokens, bos 128000, eos 128001");
	tu_expect_has(build_log, "chat template falcon3 (the file has none; its pre-tokenizer's)");
	tu_expect_has(build_log, "text is split into words by the Falcon 3 split "
				 "(tokenizer.ggml.pre 'falcon3')");
	if (strstr(build_log, "(added)"))
		fail_msg("BOS is added:\n%s", build_log);
	char *out = tu_run_ok(0, "'%s' --info", prog);
	tu_expect_has(out, "chat:        falcon3");
	free(out);
}

/* Every third vector with text (test_tok checks them all), as a -f prompt: the program's
 * ids are the reference's. */
static void test_vectors(void **state)
{
	(void)state;
	size_t n;
	char *raw = tu_read_file(tu_data("tokenizer/vectors_falcon3.jsonl"), &n);
	assert_non_null(raw);
	raw[n] = 0;
	char *text = malloc(n + 1), *want = malloc(n + 64);
	const char *pf = tu_tmp("falcon3_prompt.txt");
	int checked = 0, k_line = 0;
	for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
		char *ids = strstr(line, "\"ids\": [");
		assert_non_null(ids);
		if (k_line++ % 3)
			continue;
		size_t len = json_text(strstr(line, "\"text\": ") + 8, text);
		if (!len)
			continue; /* no BOS: an empty prompt is refused */
		int k = snprintf(want, n + 64, "prompt: ");
		int count = 0;
		for (char *c = ids + 8; *c != ']'; c++) {
			count += *c == ',';
			if (*c != ' ')
				want[k++] = *c;
		}
		want[k] = 0;
		char head[48];
		snprintf(head, sizeof head, "prompt: %d tokens: ", count + 1);
		assert_int_equal(tu_write_file(pf, text, len), 0);
		char *out = tu_run_ok(0, "'%s' -f '%s' -n 0 -v 2>&1 >/dev/null", prog, pf);
		const char *at = strstr(out, head);
		if (!at || strncmp(at + strlen(head), want + 8, strlen(want + 8)) ||
		    at[strlen(head) + strlen(want + 8)] != '\n')
			fail_msg("\"%s\": want %s, got:\n%s", line, want, out);
		free(out);
		checked++;
	}
	printf("[ falcon ] %d prompts give the reference's ids\n", checked);
	assert_true(checked > 100);
	free(text);
	free(want);
	free(raw);
}

/* bitnetc's own tokenizer (the interpreter's) agrees, BOS or not. */
static void test_tokenize(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "'%s' tokenize '%s' 'x 123 it'\\''s a.'", tu_bitnetc(), gguf);
	assert_string_equal(out, "87,220,16,17,18,433,6,82,264,13\n");
	free(out);
}

/* Chat turns in the reference's "falcon3" format, ids from the reference:
 * "<|user|>\nHi there\n<|assistant|>\n" is 15 tokens, with "<|system|>\nBe brief.\n" first
 * 25, and "\n<|user|>\nHow are you?\n<|assistant|>\n" (the reply closed) 18. */
static void test_chat(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "printf 'Hi there\\nHow are you?\\n' | '%s' -cnv -n 4 --temp 0 "
			   "--ignore-eos --show-ids -v 2>&1 >/dev/null", prog);
	tu_expect_has(out, "turn 1: evaluated 15 tokens at positions 0..14\n");
	tu_expect_has(out, "turn 2: evaluated 18 tokens at positions 19..36\n");
	free(out);
	out = tu_run_ok(0, "printf 'Hi there\\n' | '%s' -cnv -sys 'Be brief.' -n 2 --temp 0 "
		     "--ignore-eos --show-ids -v 2>&1 >/dev/null", prog);
	tu_expect_has(out, "turn 1: evaluated 25 tokens at positions 0..24\n");
	free(out);
	/* the Llama 3 format on request (its header tokens are in this vocabulary), no BOS, and
	 * "\n\nHi" split as Falcon 3 does: \n, \n, Hi */
	out = tu_run_ok(0, "printf 'Hi\\n' | '%s' -cnv --chat-template llama3 -n 2 --temp 0 "
		     "--ignore-eos -v 2>&1 >/dev/null", prog);
	tu_expect_has(out, "turn 1: evaluated 11 tokens at positions 0..10\n");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_tokenize),
		cmocka_unit_test(test_chat),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
