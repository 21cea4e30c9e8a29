/* test_package.c - the Debian package of this build (cpack -G DEB) holds a bitnetc that
 * works where it is unpacked: unpacked with dpkg-deb -x into an empty root, that bitnetc
 * finds its data beside itself (share/bitnetc: mkmodel --llama3-vocab), builds a golden
 * model into a program, and the program runs; the package's metadata names the Debian
 * packages bitnetc needs. Skipped (saying why) without cpack or dpkg-deb. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static void test_deb_unpacked_builds_and_runs(void **state)
{
	(void)state;
	if (tu_run(NULL, "command -v cpack >/dev/null && command -v dpkg-deb >/dev/null && "
			 "command -v dpkg-shlibdeps >/dev/null") != 0) {
		printf("cpack, dpkg-deb or dpkg-shlibdeps missing: the package is not tested\n");
		skip();
	}
	/* the build tree is where the bitnetc under test is */
	char build[1024], pkg[1024], root[1024];
	snprintf(build, sizeof build, "%s", tu_bitnetc());
	char *slash = strrchr(build, '/');
	assert_non_null(slash);
	*slash = 0;
	snprintf(pkg, sizeof pkg, "%s", tu_tmp("pkg"));
	snprintf(root, sizeof root, "%s", tu_tmp("pkg-root"));
	char *log = NULL;
	if (tu_run(&log, "rm -rf '%s' '%s' && cd '%s' && cpack -G DEB -B '%s' && dpkg-deb -x "
			 "'%s'/bitnetc_*.deb '%s'",
		   pkg, root, build, pkg, pkg, root))
		tu_fail_log(log, "cpack -G DEB, dpkg-deb -x");
	free(log);
	char *info = tu_run_ok(0, "dpkg-deb -f '%s'/bitnetc_*.deb Depends", pkg);
	tu_expect_has(info, "libllvm19");
	tu_expect_has(info, "liblua5.4");
	tu_expect_has(info, "gcc");
	free(info);

	/* the unpacked bitnetc, with nothing of the build tree in its environment */
	char *out = tu_run_ok(0, "env -u BITNETC_DATA_DIR '%s/usr/bin/bitnetc' version", root);
	tu_expect_has(out, "bitnetc 0.");
	free(out);
	const char *gguf = tu_tmp("pkg-l3.gguf");
	out = tu_run_ok(0, "env -u BITNETC_DATA_DIR '%s/usr/bin/bitnetc' mkmodel --shape tiny "
			   "--llama3-vocab --layers 1 --hidden 128 --ffn 128 --heads 2 --kv-heads 1 "
			   "-o '%s'", root, gguf);
	tu_expect_has(out, "vocab 128256");
	free(out);
	char prog[1024];
	snprintf(prog, sizeof prog, "%s", tu_tmp("pkg-prog"));
	out = tu_run_ok(0, "env -u BITNETC_DATA_DIR '%s/usr/bin/bitnetc' build '%s' -o '%s'", root,
			tu_data("golden/models/tiny-b158-i2_s.gguf"), prog);
	free(out);
	out = tu_run_ok(0, "'%s' --tokens 1,2,3 -n 4 --temp 0", prog);
	free(out);
	/* the docs: every command's --help */
	out = tu_run_ok(0, "cat '%s/usr/share/doc/bitnetc/bitnetc-build.txt'", root);
	tu_expect_has(out, "usage: bitnetc build");
	free(out);
	tu_run(NULL, "rm -rf '%s' '%s' '%s' '%s'", pkg, root, gguf, prog);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_deb_unpacked_builds_and_runs, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
