/* test_text.c - text in, text out: a model with the real Llama 3 vocabulary built into a program that takes -p text and chats (-cnv). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char gguf[1200], prog[1200];

/* 1 layer, n_embd 256: small, but with the 128256-token vocabulary and its chat template. */
static int setup(void **state)
{
	(void)state;
	snprintf(gguf, sizeof gguf, "%s", tu_tmp("text_l3.gguf"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("text_l3"));
	char *log = NULL;
	int rc = tu_run(&log, "'%s' mkmodel --shape tiny --llama3-vocab --layers 1 --hidden 256 "
			"--ffn 256 --heads 2 --kv-heads 1 --vocab 128256 --seed 3 -o '%s' && "
			"'%s' build '%s' -o '%s'",
			tu_bitnetc(), gguf, tu_bitnetc(), gguf, prog);
	if (rc)
		fprintf(stderr, "making the model failed:\n%s\n", log);
	free(log);
	return rc ? -1 : 0;
}

/* The number of lines (newlines) in s. */
static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* bitnetc tokenize agrees with vectors.jsonl on its plain lines (no escapes or quotes,
 * so that the shell passes them as they are). */
static void test_tokenize(void **state)
{
	(void)state;
	size_t n;
	char *raw = tu_read_file(tu_data("tokenizer/vectors.jsonl"), &n);
	assert_non_null(raw);
	char *buf = malloc(n + 1);
	memcpy(buf, raw, n);
	buf[n] = 0;
	free(raw);
	int checked = 0;
	for (char *line = strtok(buf, "\n"); line && checked < 12; line = strtok(NULL, "\n")) {
		char *t = strstr(line, "{\"text\": \""), *end = strstr(line, "\", \"ids\": [");
		if (!t || !end || end == t + 10)
			continue;
		t += 10;
		*end = 0;
		if (strpbrk(t, "\\'"))
			continue;
		char want[4096] = "", *w = want;
		for (const char *c = end + 11; *c && *c != ']'; c++)
			if (*c != ' ')
				*w++ = *c;
		*w = 0;
		char *out = tu_run_ok(0, "'%s' tokenize '%s' '%s' --no-bos", tu_bitnetc(), gguf, t);
		out[strcspn(out, "\n")] = 0;
		if (strcmp(out, want))
			fail_msg("tokenize \"%s\": %s, want %s", t, out, want);
		free(out);
		checked++;
	}
	free(buf);
	assert_int_equal(checked, 12);
	/* BOS by default; special-token text parsed unless --no-special */
	char *out = tu_run_ok(0, "'%s' tokenize '%s' 'Hello, world'", tu_bitnetc(), gguf);
	assert_string_equal(out, "128000,9906,11,1917\n");
	free(out);
	out = tu_run_ok(0, "'%s' tokenize '%s' 'Hello<|eot_id|>' --no-bos", tu_bitnetc(), gguf);
	assert_string_equal(out, "9906,128009\n");
	free(out);
	out = tu_run_ok(0, "'%s' tokenize '%s' 'Hello<|eot_id|>' --no-bos --no-special", tu_bitnetc(),
		     gguf);
	assert_string_equal(out, "9906,27,91,68,354,851,91,29\n");
	free(out);
}

/* The program answers text with text; its prompt ids are the tokenizer's. */
static void test_prompt(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "'%s' -p 'Hello, world' -n 8 --seed 1 2>/dev/null", prog);
	if (strlen(out) < 2 || out[strlen(out) - 1] != '\n')
		fail_msg("-p: no text: \"%s\"", out);
	free(out);
	out = tu_run_ok(0, "'%s' -p 'Hello, world' -n 3 --temp 0 --ignore-eos --show-ids -v 2>&1", prog);
	tu_expect_has(out, "prompt: 4 tokens: 128000,9906,11,1917\n");
	free(out);
	/* the text prompt and the same ids give the same logits and the same greedy ids */
	const char *la = tu_tmp("text_a.f32"), *lb = tu_tmp("text_b.f32");
	char *a = tu_run_ok(0, "'%s' -p 'Hello, world' -n 3 --temp 0 --ignore-eos --show-ids "
			 "--logits-out '%s' 2>/dev/null", prog, la);
	char *b = tu_run_ok(0, "'%s' --tokens 128000,9906,11,1917 -n 3 --temp 0 --ignore-eos "
			 "--logits-out '%s' 2>/dev/null", prog, lb);
	assert_string_equal(a, b);
	free(a);
	free(b);
	size_t na, nb;
	void *xa = tu_read_file(la, &na), *xb = tu_read_file(lb, &nb);
	assert_non_null(xa);
	assert_non_null(xb);
	assert_int_equal(na, (size_t)(4 + 3) * 128256 * sizeof(float));
	assert_int_equal(na, nb);
	assert_memory_equal(xa, xb, na);
	free(xa);
	free(xb);
	/* special-token text: parsed, or kept as text */
	out = tu_run_ok(0, "'%s' -p 'Hi<|eot_id|>' -n 0 -v 2>&1", prog);
	tu_expect_has(out, "prompt: 3 tokens: 128000,13347,128009\n");
	free(out);
	out = tu_run_ok(0, "'%s' -p 'Hi<|eot_id|>' --no-parse-special -n 0 -v 2>&1", prog);
	tu_expect_has(out, "prompt: 9 tokens: 128000,13347,27,91,68,354,851,91,29\n");
	free(out);
	/* an empty prompt is BOS alone; invalid UTF-8 falls back to byte tokens */
	out = tu_run_ok(0, "'%s' -p '' -n 2 -v 2>&1", prog);
	tu_expect_has(out, "prompt: 1 tokens: 128000\n");
	free(out);
	out = tu_run_ok(0, "'%s' -p \"$(printf 'a\\377\\376b\\303')\" -n 4 -v 2>&1", prog);
	tu_expect_has(out, "prompt: ");
	free(out);
	/* a prompt file is text too */
	const char *pf = tu_tmp("text_prompt.txt");
	assert_int_equal(tu_write_file(pf, "Hello, world", 12), 0);
	out = tu_run_ok(0, "'%s' -f '%s' -n 0 -v 2>&1", prog, pf);
	tu_expect_has(out, "prompt: 4 tokens: 128000,9906,11,1917\n");
	free(out);
}

static void test_info(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "'%s' --info", prog);
	tu_expect_has(out, "tokenizer:   128256 tokens");
	tu_expect_has(out, "bos:         128000 (added to prompts)");
	tu_expect_has(out, "eog:         128001 <|end_of_text|> 128009 <|eot_id|>");
	tu_expect_has(out, "chat:        bitnet");
	free(out);
	out = tu_run_ok(0, "'%s' --info --chat-template llama3", prog);
	tu_expect_has(out, "chat:        llama3 (--chat-template)");
	free(out);
}

/* Two turns: two replies; the second turn evaluates only its own tokens, after the
 * first turn and its reply (15 + 4 positions). */
static void test_chat(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "printf 'Hi there\\nHow are you?\\n/exit\\nnot read\\n' | '%s' -cnv "
			   "-sys 'Be brief.' -n 4 --temp 0 --ignore-eos --show-ids -v 2>&1 >/dev/null",
			   prog);
	tu_expect_has(out, "turn 1: evaluated 15 tokens at positions 0..14\n");
	/* <|eot_id|> closing the reply, "User: How are you?<|eot_id|>Assistant: " */
	tu_expect_has(out, "turn 2: evaluated 11 tokens at positions 19..29\n");
	if (strstr(out, "turn 3"))
		fail_msg("a line after /exit was read:\n%s", out);
	free(out);
	out = tu_run_ok(0, "printf 'Hi there\\nHow are you?\\n' | '%s' -cnv -n 4 --temp 0 "
		     "--ignore-eos --show-ids 2>/dev/null", prog);
	assert_int_equal(count_lines(out), 2);
	free(out);
	/* as text, to the end of input */
	out = tu_run_ok(0, "printf 'Hi there\\nHow are you?' | '%s' -cnv -n 6 --seed 2 2>/dev/null",
		     prog);
	assert_true(strlen(out) > 2);
	free(out);
}

/* /reset: the same turn from an empty cache gives the same greedy reply, and the
 * conversation goes on as a new one: its next reply is a new conversation's second. */
static void test_reset(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "printf 'Hi\\n/reset\\nHi\\nHi\\n' | '%s' -cnv -n 5 --temp 0 "
			   "--ignore-eos --show-ids 2>/dev/null", prog);
	char *l1 = out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	assert_int_equal(count_lines(out), 3);
	assert_memory_equal(l1, l2, (size_t)(l2 - l1));
	char *fresh = tu_run_ok(0, "printf 'Hi\\nHi\\n' | '%s' -cnv -n 5 --temp 0 --ignore-eos "
			     "--show-ids 2>/dev/null", prog);
	assert_int_equal(count_lines(fresh), 2);
	assert_string_equal(l3, strchr(fresh, '\n') + 1);
	free(fresh);
	free(out);
	out = tu_run_ok(0, "printf 'Hi\\n/reset\\nHi\\n' | '%s' -cnv -n 5 --temp 0 --ignore-eos -v "
		     "2>&1 >/dev/null", prog);
	tu_expect_has(out, "conversation reset");
	const char *t2 = strstr(out, "turn 2: evaluated");
	assert_non_null(t2);
	assert_non_null(strstr(t2, "at positions 0.."));
	free(out);
}

/* The context fills up: the program says so and starts over. */
static void test_context_full(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "printf 'Hi\\nHi\\nHi\\n' | '%s' -cnv -c 24 -n 8 --temp 0 "
			   "--ignore-eos -v 2>&1 >/dev/null", prog);
	tu_expect_has(out, "is full: starting a new conversation");
	free(out);
}

/* Templates from the command line, and programs built without a template or tokenizer. */
static void test_templates(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "printf 'Hi\\n' | '%s' -cnv --chat-template llama3 -n 2 --temp 0 "
			   "--ignore-eos -v 2>&1 >/dev/null", prog);
	/* BOS; <|start_header_id|> user <|end_header_id|> "\n\n" Hi <|eot_id|>; the assistant's
	 * header: 3 + "\n\n" */
	tu_expect_has(out, "turn 1: evaluated 11 tokens at positions 0..10\n");
	free(out);
	const char *p2 = tu_tmp("text_l3_notmpl"), *p3 = tu_tmp("text_l3_notok");
	free(tu_run_ok(0, "'%s' build '%s' -o '%s' --chat-template none", tu_bitnetc(), gguf, p2));
	out = tu_run_ok(1, "printf 'Hi\\n' | '%s' -cnv 2>&1", p2);
	tu_expect_has(out, "--chat-template");
	free(out);
	free(tu_run_ok(0, "printf 'Hi\\n' | '%s' -cnv --chat-template bitnet -n 2 2>&1", p2));
	out = tu_run_ok(0, "'%s' build '%s' -o '%s' --no-tokenizer", tu_bitnetc(), gguf, p3);
	tu_expect_has(out, "no tokenizer (--no-tokenizer)");
	free(out);
	out = tu_run_ok(1, "'%s' -p 'Hello' 2>&1", p3);
	tu_expect_has(out, "without a tokenizer");
	free(out);
	out = tu_run_ok(0, "'%s' -p '128000 9906' -n 2 --temp 0 --ignore-eos 2>/dev/null", p3);
	assert_int_equal(count_lines(out), 1);
	free(out);
	out = tu_run_ok(1, "'%s' build '%s' -o '%s' --chat-template chatml 2>&1", tu_bitnetc(), gguf,
		     p2);
	tu_expect_has(out, "unknown template 'chatml'");
	free(out);
}

/* The golden tiny shape (synthetic 512-token vocabulary) keeps working with ids, and
 * its tokenizer handles text too. */
static void test_tiny_vocab(void **state)
{
	(void)state;
	const char *g = tu_tmp("text_tiny.gguf"), *p = tu_tmp("text_tiny");
	free(tu_run_ok(0, "'%s' mkmodel --shape tiny --seed 1 -o '%s' && '%s' build '%s' -o '%s'",
		    tu_bitnetc(), g, tu_bitnetc(), g, p));
	char *a = tu_run_ok(0, "'%s' --tokens 1,2,3 -n 4 --temp 0 --ignore-eos 2>/dev/null", p);
	char *b = tu_run_ok(0, "'%s' run '%s' --tokens 1,2,3 -n 4 --ignore-eos 2>/dev/null",
			 tu_bitnetc(), g);
	assert_string_equal(a, b);
	free(a);
	free(b);
	free(tu_run_ok(0, "'%s' -p 'hello there' -n 4 2>/dev/null", p));
}

/* A 1bitLLM-style model (arch bitnet) with the generator's SentencePiece vocabulary:
 * "hello world, the cat" is BOS, then " hello" and " world" (each reached by pairwise
 * merges of higher score), "," by byte fallback (<0x2C> = 3 + 0x2C), " the", " cat". */
static void test_spm_vocab(void **state)
{
	(void)state;
	const char *g = tu_tmp("text_spm.gguf"), *p = tu_tmp("text_spm");
	free(tu_run_ok(0, "'%s' mkmodel --arch bitnet --spm-vocab --seed 2 -o '%s' && '%s' build '%s' -o '%s'",
		    tu_bitnetc(), g, tu_bitnetc(), g, p));
	char *ids = tu_run_ok(0, "'%s' tokenize '%s' 'hello world, the cat' 2>/dev/null", tu_bitnetc(), g);
	assert_string_equal(ids, "1,335,338,47,339,340\n");
	free(ids);
	char *pieces = tu_run_ok(0, "'%s' tokenize '%s' 'hello world, the cat' --pieces 2>/dev/null",
			      tu_bitnetc(), g);
	assert_non_null(strstr(pieces, "\" hello\""));
	assert_non_null(strstr(pieces, "\" cat\""));
	free(pieces);
	/* the program takes text and prints text */
	free(tu_run_ok(0, "'%s' -p 'hello world' -n 4 --seed 1 2>/dev/null", p));
	char *same = tu_run_ok(0, "'%s' --tokens 1,335,338 -n 4 --temp 0 --show-ids 2>/dev/null", p);
	char *text = tu_run_ok(0, "'%s' -p 'hello world' -n 4 --temp 0 --show-ids 2>/dev/null", p);
	assert_string_equal(same, text);
	free(same);
	free(text);
}

/* What people bring from llama-cli: the prompt echoed (--no-display-prompt: not), escapes
 * in -p (--no-escape: not), -n -1 and an -n past the context generate until it is full,
 * llama.cpp's flags with no meaning here accepted with a note, -sys without -cnv refused,
 * -i with a reverse prompt, and Ctrl-C: the timings, exit 130. */
static void test_llama_habits(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "'%s' -p 'Hello, world' -n 0 2>/dev/null", prog);
	assert_string_equal(out, "Hello, world\n");
	free(out);
	out = tu_run_ok(0, "'%s' -p 'Hello, world' -n 0 --no-display-prompt 2>/dev/null", prog);
	assert_string_equal(out, "\n");
	free(out);
	out = tu_run_ok(0, "'%s' -p 'a\\tb\\x41\\\\n\\q' -n 0 2>/dev/null", prog);
	assert_string_equal(out, "a\tbA\\n\\q\n");
	free(out);
	out = tu_run_ok(0, "'%s' -p 'a\\tb' -n 0 --no-escape 2>/dev/null", prog);
	assert_string_equal(out, "a\\tb\n");
	free(out);
	/* until the context is full: 4 prompt tokens in a context of 9 leave 5 */
	static const char *const ns[] = {"-1", "-2", "100"};
	for (int i = 0; i < 3; i++) {
		out = tu_run_ok(0, "'%s' -p 'Hello, world' -c 9 -n %s --temp 0 --ignore-eos "
			     "--show-ids 2>/dev/null", prog, ns[i]);
		int ids = 0;
		for (char *t = strtok(out, " \n"); t; t = strtok(NULL, " \n"))
			ids++;
		if (ids != 5)
			fail_msg("-c 9 -n %s: %d ids, want 5", ns[i], ids);
		free(out);
	}
	out = tu_run_ok(0, "'%s' -m model.gguf -ngl 99 -fa on -b 512 --keep 4 --color --log-disable "
		     "-no-cnv -s 5 --temperature 0 -p 'Hello' -n 2 2>&1 >/dev/null", prog);
	tu_expect_has(out, "note: -m: the model is built into this program");
	tu_expect_has(out, "note: -ngl");
	tu_expect_has(out, "note: -fa");
	tu_expect_has(out, "note: --keep");
	tu_expect_has(out, "greedy");
	free(out);
	out = tu_run_ok(1, "'%s' -p 'Hello' -sys 'Be brief.' 2>&1", prog);
	tu_expect_has(out, "-sys: a system message goes with -cnv");
	free(out);
	out = tu_run_ok(1, "'%s' -p 'Hello' --in-prefix x 2>&1", prog);
	tu_expect_has(out, "--in-prefix and --in-suffix go with -i");
	free(out);

	/* -i -r R: the text up to the token that completes R, then the user's turn (no input:
	 * the end); R is two letters from the middle of the greedy continuation */
	char *cont = tu_run_ok(0, "'%s' -p 'Hello' -n 12 --temp 0 --ignore-eos --no-display-prompt "
			       "2>/dev/null", prog);
	char rev[3] = {0};
	size_t cl = strlen(cont);
	for (size_t k = cl / 3; k + 1 < cl && !rev[0]; k++)
		if (cont[k] >= 'a' && cont[k] <= 'z' && cont[k + 1] >= 'a' && cont[k + 1] <= 'z') {
			rev[0] = cont[k];
			rev[1] = cont[k + 1];
		}
	if (rev[0]) {
		out = tu_run_ok(0, "'%s' -p 'Hello' -i -r '%s' -n 12 --temp 0 --ignore-eos "
			     "</dev/null 2>/dev/null", prog, rev);
		size_t at = (size_t)(strstr(cont, rev) - cont) + 2;
		if (strncmp(out, "Hello", 5) || strncmp(out + 5, cont, at) ||
		    strlen(out) >= 5 + cl)
			fail_msg("-i -r '%s': \"%s\"; the text without it: \"%s\"", rev, out, cont);
		free(out);
	} else {
		printf("(the greedy continuation has no two letters in a row: -r not checked)\n");
	}
	free(cont);
	/* -i: the user's line continues the text */
	out = tu_run_ok(0, "printf 'more text\\n' | '%s' -p 'Hello' -i -n 3 --temp 0 --ignore-eos "
		     "--in-prefix '[' --in-suffix ']' 2>&1", prog);
	tu_expect_has(out, "[]");
	tu_expect_has(out, "eval time");
	free(out);

	/* Ctrl-C: stops, the timings, exit 130 */
	out = tu_run_ok(0, "'%s' -p 'Hello' -n -1 -c 100000 --ignore-eos --temp 0 >/dev/null "
		     "2>'%s' & pid=$!; sleep 1; kill -INT $pid; wait $pid; echo \"exit $?\"; "
		     "cat '%s'", prog, tu_tmp("text_sigint.err"), tu_tmp("text_sigint.err"));
	tu_expect_has(out, "exit 130");
	tu_expect_has(out, "eval time");
	free(out);
	/* in -cnv: the reply stops, the next line is read (here /exit: exit 0, the timings) */
	out = tu_run_ok(0, "{ echo 'Hi there'; sleep 3; echo /exit; } | '%s' -cnv -n -1 -c 100000 "
		     "--ignore-eos --temp 0 >/dev/null 2>'%s' & pid=$!; sleep 1.5; "
		     "kill -INT $pid; wait $pid; echo \"exit $?\"; cat '%s'", prog,
		     tu_tmp("text_sigint.err"), tu_tmp("text_sigint.err"));
	tu_expect_has(out, "exit 0");
	tu_expect_has(out, "eval time");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spm_vocab),  cmocka_unit_test(test_llama_habits),
		cmocka_unit_test(test_tokenize),   cmocka_unit_test(test_prompt),
		cmocka_unit_test(test_info),       cmocka_unit_test(test_chat),
		cmocka_unit_test(test_reset),      cmocka_unit_test(test_context_full),
		cmocka_unit_test(test_templates),  cmocka_unit_test(test_tiny_vocab),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
