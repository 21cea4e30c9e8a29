/* test_serve.c - several sequences of one context on the golden models: a program of its
 * own (tests/e2e/serve_client.c) compiled with every file `bitnetc build --emit-c` writes
 * except main.c, which checks bn_decode_batch against each sequence decoded alone and the
 * serving engine (runtime/rt_serve.c) against bn_generate, request by request. In a
 * sanitized build (BITNETC_SANITIZE) the client is built with AddressSanitizer and UBSan
 * too. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Builds the golden model name with --emit-c and the client against it; runs it. */
static void run_model(const char *name)
{
	char rel[256], gguf[1200], dir[1200], prog[1200], wfile[1200], client[1200];
	snprintf(rel, sizeof rel, "golden/models/%s.gguf", name);
	snprintf(gguf, sizeof gguf, "%s", tu_data(rel));
	snprintf(rel, sizeof rel, "serve_%s_src", name);
	snprintf(dir, sizeof dir, "%s", tu_tmp(rel));
	snprintf(rel, sizeof rel, "serve_%s", name);
	snprintf(prog, sizeof prog, "%s", tu_tmp(rel));
	snprintf(rel, sizeof rel, "serve_%s.weights", name);
	snprintf(wfile, sizeof wfile, "%s", tu_tmp(rel));
	snprintf(rel, sizeof rel, "serve_client_%s", name);
	snprintf(client, sizeof client, "%s", tu_tmp(rel));
	char *log = NULL;
	int rc = tu_run(&log, "rm -rf '%s' && '%s' build '%s' -o '%s' --emit-c '%s' --weights-file '%s'",
			dir, tu_bitnetc(), gguf, prog, dir, wfile);
	if (rc)
		tu_fail_log(log, "building %s failed (%d)", name, rc);
	free(log);
	/* model.c as bitnetc compiles it for native; the rest (less main.c) for the baseline */
	rc = tu_run(&log, "{ cd '%s' && cc -std=c11 -O2 -ffp-contract=off -D_GNU_SOURCE -march=native "
			"-c model.c -o serve_model.o && cc -std=c11 -O2 -Wall -Wextra -Werror "
			"-ffp-contract=off -D_GNU_SOURCE %s -I. -o '%s' '%s' serve_model.o "
			"$(ls *.c | grep -v -e '^main.c$' -e '^model.c$') -lm -lpthread; }",
			dir, CLIENT_SAN, client, tu_data("../e2e/serve_client.c"));
	if (rc)
		tu_fail_log(log, "building serve_client failed (%d)", rc);
	free(log);
	char *out = NULL, *err = NULL;
	rc = tu_run(&out, "'%s' '%s' 2>/dev/null", client, wfile);
	tu_run(&err, "'%s' '%s' 2>&1 >/dev/null", client, wfile);
	printf("%s", out);
	if (rc != 0 || !strstr(out, "\n0 failed\n") || strstr(out, "FAIL"))
		fail_msg("serve_client on %s: exit %d:\n%s", name, rc, out);
	if (err[0])
		fail_msg("the client printed on stderr: %s", err);
	free(out);
	free(err);
}

static void test_b158(void **state)
{
	(void)state;
	run_model("tiny-b158-i2_s");
}

static void test_old(void **state)
{
	(void)state;
	run_model("tinyold-bitnet-i2_s");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b158),
		cmocka_unit_test(test_old),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
