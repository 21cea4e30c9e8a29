/* test_api.c - the runtime API (bitnetc.h) from a program of its own: a model with the Llama 3
 * vocabulary built with --emit-c and --weights-file, tests/e2e/api_client.c compiled with
 * every file --emit-c wrote except main.c, and run against the built program's output
 * (--logits-out, -p text, -cnv transcripts). In a sanitized build (BITNETC_SANITIZE) the
 * client is built with AddressSanitizer and UBSan too. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char gguf[1200], prog[1200], dir[1200], wfile[1200], client[1200];

static const char text[] = "Hello, world: caf\xc3\xa9";

#if defined(__SANITIZE_ADDRESS__)
#define CLIENT_SAN "-fsanitize=address,undefined -fno-sanitize-recover=undefined"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CLIENT_SAN "-fsanitize=address,undefined -fno-sanitize-recover=undefined"
#endif
#endif
#ifndef CLIENT_SAN
#define CLIENT_SAN ""
#endif

/* 1 layer, n_embd 256, the 128256-token vocabulary and its chat template. */
static int setup(void **state)
{
	(void)state;
	snprintf(gguf, sizeof gguf, "%s", tu_tmp("api_l3.gguf"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("api_l3"));
	snprintf(dir, sizeof dir, "%s", tu_tmp("api_l3_src"));
	snprintf(wfile, sizeof wfile, "%s", tu_tmp("api_l3.weights"));
	snprintf(client, sizeof client, "%s", tu_tmp("api_client"));
	char *log = NULL;
	int rc = tu_run(&log, "rm -rf '%s' && '%s' mkmodel --shape tiny --llama3-vocab --layers 1 "
			"--hidden 256 --ffn 256 --heads 2 --kv-heads 1 --vocab 128256 --seed 3 -o '%s' "
			"&& '%s' build '%s' -o '%s' --emit-c '%s' --weights-file '%s'",
			dir, tu_bitnetc(), gguf, tu_bitnetc(), gguf, prog, dir, wfile);
	if (rc)
		fprintf(stderr, "making the model failed:\n%s\n", log);
	free(log);
	if (rc)
		return -1;
	/* model.c as bitnetc compiles it for native; the rest (less main.c) for the baseline */
	rc = tu_run(&log, "{ cd '%s' && cc -std=c11 -O2 -ffp-contract=off -D_GNU_SOURCE -march=native "
			"-c model.c -o api_model.o && cc -std=c11 -O2 -Wall -Wextra -Werror "
			"-ffp-contract=off -D_GNU_SOURCE %s -I. -o '%s' '%s' api_model.o "
			"$(ls *.c | grep -v -e '^main.c$' -e '^model.c$') -lm -lpthread; }",
			dir, CLIENT_SAN, client, tu_data("../e2e/api_client.c"));
	if (rc)
		fprintf(stderr, "building api_client failed:\n%s\n", log);
	free(log);
	return rc ? -1 : 0;
}

/* The ids bitnetc tokenize gives text (BOS first), "1,2,3". */
static char *ids_of(const char *t)
{
	char *out = tu_run_ok(0, "'%s' tokenize '%s' '%s'", tu_bitnetc(), gguf, t);
	out[strcspn(out, "\n")] = 0;
	return out;
}

/* Runs the client against the program's --logits-out for the text; big: also the context
 * too large for memory. */
static void run_client(int big)
{
	char *ids = ids_of(text);
	const char *lf = tu_tmp("api_l3_logits.f32");
	char *out = tu_run_ok(0, "'%s' --weights-file '%s' --tokens '%s' -n 0 --logits-out '%s' "
				 "2>/dev/null", prog, wfile, ids, lf);
	free(out);
	/* what the program generates and chats, greedy, for the client to match */
	const char *gen = tu_tmp("api_l3_gen.txt"), *chat = tu_tmp("api_l3_chat.txt");
	const char *full = tu_tmp("api_l3_full.txt");
	free(tu_run_ok(0, "'%s' --weights-file '%s' -p '%s' -n 24 --temp 0 --ignore-eos --no-display-prompt >'%s' "
		       "2>/dev/null", prog, wfile, text, gen));
	free(tu_run_ok(0, "printf 'Hi there\\nHow are you?\\n' | '%s' --weights-file '%s' -cnv "
		       "-sys 'Be brief.' -n 6 --temp 0 --ignore-eos >'%s' 2>/dev/null", prog, wfile,
		       chat));
	free(tu_run_ok(0, "printf 'Hi\\nHi\\nHi\\n' | '%s' --weights-file '%s' -cnv -c 24 -n 8 "
		       "--temp 0 --ignore-eos >'%s' 2>/dev/null", prog, wfile, full));
	char *err = NULL;
	/* a sanitized client: the too large KV cache is NULL from calloc, as without ASan */
	int rc = tu_run(&out, "{ ASAN_OPTIONS=allocator_may_return_null=1 '%s' '%s' '%s' '%s' '%s' "
			"'%s' '%s' '%s' %s 2>/dev/null; }", client,
			wfile, lf, ids, text, gen, chat, full, big ? "big" : "");
	tu_run(&err, "{ ASAN_OPTIONS=allocator_may_return_null=1 '%s' '%s' '%s' '%s' '%s' '%s' '%s' "
	       "'%s' %s 2>&1 >/dev/null | grep -v 'WARNING: AddressSanitizer failed to allocate'; }",
	       client, wfile,
	       lf, ids, text, gen, chat, full, big ? "big" : "");
	printf("%s", out);
	if (rc != 0 || !strstr(out, "\n0 failed\n") || strstr(out, "FAIL"))
		fail_msg("api_client: exit %d:\n%s", rc, out);
	if (err[0])
		fail_msg("the API printed on stderr: %s", err);
	assert_non_null(strstr(out, "ok bn_decode's logits are the program's --logits-out"));
	assert_non_null(strstr(out, "ok the two contexts' logits are the same bits"));
	assert_non_null(strstr(out, "ok bn_generate's text is the program's -p output"));
	assert_non_null(strstr(out, "ok chat turns are the program's -cnv transcript"));
	assert_non_null(strstr(out, "ok chat turns in a full context are the program's"));
	assert_non_null(strstr(out, "ok profiled: a step's logits, the same bits"));
	assert_non_null(strstr(out, "ok the families add up to the forwards' time"));
	free(out);
	free(err);
	free(ids);
}

static void test_client(void **state)
{
	(void)state;
	run_client(0);
}

/* A context whose KV cache (2^31 positions: terabytes) cannot be allocated: refused by
 * the allocator unless the kernel overcommits memory without limit. */
static void test_ctx_too_large(void **state)
{
	(void)state;
	char *mode = NULL;
	tu_run(&mode, "cat /proc/sys/vm/overcommit_memory 2>/dev/null");
	int always = mode && mode[0] == '1';
	free(mode);
	if (always) {
		print_message("skipped: a context too large for memory: vm.overcommit_memory is 1 "
			      "(any allocation succeeds)\n");
		skip();
	}
	run_client(1);
}

/* The files --emit-c writes: the API header among them, and main.c the only main(). */
static void test_emitted(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "cd '%s' && ls bitnetc.h main.c && grep -l 'int main(' *.c", dir);
	assert_string_equal(out, "bitnetc.h\nmain.c\nmain.c\n");
	free(out);
	/* the program's session code goes through the API, never the model's ABI */
	out = tu_run_ok(1, "cd '%s' && grep -n -e rt_model -e RtModel -e RtTok main.c rt_session.c "
			   "rt_session.h", dir);
	free(out);
}

/* The header from C++: extern "C", nothing C-only. */
static void test_cplusplus(void **state)
{
	(void)state;
	if (tu_run(NULL, "command -v c++ >/dev/null 2>&1") != 0) {
		print_message("skipped: bitnetc.h from C++: no c++ compiler here\n");
		skip();
	}
	const char *src = tu_tmp_text("api_cxx.cpp",
				      "#include \"bitnetc.h\"\n"
				      "int main() { return bn_model_n_vocab(nullptr) > 0 ? 0 : 1; }\n");
	char *out = tu_run_ok(0, "c++ -std=c++11 -Wall -Wextra -pedantic -Werror -I '%s' -fsyntax-only "
				 "'%s'", dir, src);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client),
		cmocka_unit_test(test_ctx_too_large),
		cmocka_unit_test(test_emitted),
		cmocka_unit_test(test_cplusplus),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
