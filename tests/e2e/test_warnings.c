/* test_warnings.c - the code generated for the 2B-4T shape (n_embd 2560, n_ff 6912, 20
 * query heads over 5 KV heads, the default batch templates) compiles without a warning
 * under -Wall -Wextra -Werror, at the -O2 the build uses (where gcc's loop analysis warns,
 * -Waggressive-loop-optimizations): with cc for every x86 target's kernels, with clang for
 * the portable ones and the widest (AVX-512 with the AMX tiles). The
 * tiny shapes of the other tests keep loop bounds far from where such warnings appear.
 * One layer and a 1024-token vocabulary keep the model at 22 MiB: the kernels' shapes are
 * those of the full model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static void test_2b4t_shape_warning_free(void **state)
{
	(void)state;
	char gguf[1024], prog[1024];
	snprintf(gguf, sizeof gguf, "%s", tu_tmp("warn-2b4t.gguf"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("warn-2b4t-prog"));
	char *log = NULL;
	if (tu_run(&log, "'%s' mkmodel --shape 2b4t --layers 1 --vocab 1024 -o '%s'", tu_bitnetc(),
		   gguf))
		tu_fail_log(log, "mkmodel 2b4t");
	free(log);
	bool x86 = tu_run(NULL, "[ \"$(uname -m)\" = x86_64 ]") == 0;
	static const char *const x86_targets[] = {"cpu-generic", "cpu-avx2", "cpu-avx512",
						  "cpu-amx"};
	static const char *const any_targets[] = {"cpu-generic"};
	const char *const *targets = x86 ? x86_targets : any_targets;
	int n_targets = x86 ? 4 : 1;
	static const char *const ccs[] = {"cc", "clang"};
	int built = 0;
	for (int i = 0; i < 2; i++) {
		if (i == 1 && tu_run(NULL, "command -v clang >/dev/null 2>&1") != 0) {
			printf("clang not installed: the 2B-4T shape compiled with cc only\n");
			continue;
		}
		for (int t = 0; t < n_targets; t++) {
			/* clang: the portable kernels and the widest (AVX-512 + AMX); cc: all */
			if (i == 1 && t > 0 && t < n_targets - 1)
				continue;
			/* -DBN_AMX_EMULATE: the same code, compiled on any x86 compiler and host */
			if (tu_run(&log, "'%s' build '%s' --target %s --cc %s --cflags '-Wall -Wextra "
					 "-Werror%s' -o '%s'",
				   tu_bitnetc(), gguf, targets[t], ccs[i],
				   strcmp(targets[t], "cpu-amx") == 0 ? " -DBN_AMX_EMULATE" : "", prog))
				tu_fail_log(log, "2B-4T shape, %s, %s: warns or fails", targets[t],
					    ccs[i]);
			free(log);
			built++;
		}
	}
	assert_true(built >= n_targets);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_2b4t_shape_warning_free, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
