/* test_embed.c - models as libraries in a product: `bitnetc build --lib` and `--shared`
 * (the four golden models linked into one process, tests/e2e/embed_models.c, logits the
 * same bits as each model's program, also in threads at once; nothing exported but the
 * prefixed API), `bitnetc emit` trees built with make and with CMake (and a product using
 * the tree's CMake target), cross-built for AArch64 and run under qemu where the tools are,
 * and the refusals. In an AddressSanitizer build of the tests the libraries and the client
 * are built with the sanitizers too. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__SANITIZE_ADDRESS__)
#define SAN " -fsanitize=address,undefined -fno-omit-frame-pointer"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAN " -fsanitize=address,undefined -fno-omit-frame-pointer"
#endif
#endif
#ifndef SAN
#define SAN ""
#endif

static const char *const goldens[] = {"tiny-b158-i2_s", "tiny-b158-tq1_0", "tiny-b158-tq2_0",
				      "tinyold-bitnet-i2_s"};
static const int32_t toks[] = {1, 496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 33, 7};
enum { N_TOK = sizeof toks / sizeof toks[0] };
static const char ids[] = "1,496,84,104,101,32,113,117,105,99,107,33,7";

static char dir[1200];

/* The build-system checks (make, CMake, a cross make) have nothing for the sanitizers to
 * find: a sanitized build of the tests runs them once, in the plain build. */
#define SKIP_UNDER_SANITIZERS(what)                                                         \
	do {                                                                                \
		if (SAN[0]) {                                                               \
			print_message("skipped: %s: checked in the plain build, not under the " \
				      "sanitizers\n", what);                                    \
			skip();                                                             \
		}                                                                           \
	} while (0)

static const char *model(int i)
{
	static char p[4][1200];
	char rel[256];
	snprintf(rel, sizeof rel, "golden/models/%s.gguf", goldens[i]);
	snprintf(p[i], sizeof p[i], "%s", tu_data(rel));
	return p[i];
}

static void run_ok(const char *what, const char *cmd)
{
	char *log = NULL;
	int rc = tu_run(&log, "%s", cmd);
	if (rc)
		tu_fail_log(log, "%s failed (%d)", what, rc);
	free(log);
}

/* Programs gN and libraries (g1, g2 static, g3, g4 shared) of the golden models in dir. */
static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "%s", tu_tmp("embed"));
	char *log = NULL;
	int rc = tu_run(&log, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	for (int i = 0; i < 4 && !rc; i++) {
		free(log);
		log = NULL;
		rc = tu_run(&log, "'%s' build '%s' -o '%s/g%d' && '%s' build '%s' %s -o '%s/libg%d.%s' "
				  "--cflags '-O2%s'",
			    tu_bitnetc(), model(i), dir, i + 1, tu_bitnetc(), model(i),
			    i < 2 ? "--lib" : "--shared", dir, i + 1, i < 2 ? "a" : "so", SAN);
	}
	if (rc)
		fprintf(stderr, "building the programs and libraries failed:\n%s\n", log);
	free(log);
	return rc ? -1 : 0;
}

/* Every global symbol a library defines is its prefix's, one per function of its header. */
static void test_symbols(void **state)
{
	(void)state;
	for (int i = 1; i <= 4; i++) {
		char *syms = tu_run_ok(0, "nm %s --defined-only '%s/libg%d.%s' | awk 'NF == 3 && "
					  "$2 ~ /^[A-Z]$/ { print $3 }'",
				       i <= 2 ? "-g" : "-D", dir, i, i <= 2 ? "a" : "so");
		char pre[8];
		snprintf(pre, sizeof pre, "g%d_", i);
		int n = 0;
		for (char *l = strtok(syms, "\n"); l; l = strtok(NULL, "\n"), n++)
			if (strncmp(l, pre, 3) != 0)
				fail_msg("libg%d exports %s, which is not its API", i, l);
		char *decl = tu_run_ok(0, "grep -c 'g%d_[a-z_0-9]*(' '%s/g%d.h'", i, dir, i);
		assert_int_equal(n, atoi(decl));
		assert_true(n > 50);
		free(decl);
		free(syms);
	}
}

/* The four libraries in one process: each model's logits are its program's, bit for bit,
 * also when all run at once in threads. */
static void test_models(void **state)
{
	(void)state;
	char cmd[8000];
	snprintf(cmd, sizeof cmd,
		 "cc -std=c11 -O1 -Wall -Wextra -Werror%s -I'%s' -o '%s/client' '%s' '%s/libg1.a' "
		 "'%s/libg2.a' -L'%s' -lg3 -lg4 -Wl,-rpath,'%s' -lm -lpthread",
		 SAN, dir, dir, tu_data("../e2e/embed_models.c"), dir, dir, dir, dir);
	run_ok("building the four-model client", cmd);
	char *out = tu_run_ok(0, "'%s/client' %s '%s'", dir, ids, dir);
	printf("%s", out);
	tu_expect_has(out, "ok the same bits in 5 threads at once");
	free(out);
	for (int i = 0; i < 4; i++) {
		char prog[1300], lib[1300];
		snprintf(prog, sizeof prog, "%s/g%d", dir, i + 1);
		snprintf(lib, sizeof lib, "%s/g%d.f32", dir, i + 1);
		int rows = 0;
		float *want = tu_run_logits(NULL, prog, toks, N_TOK, 0, &rows, NULL);
		size_t n;
		float *got = tu_read_file(lib, &n);
		assert_non_null(got);
		assert_int_equal(n, (size_t)rows * sizeof(float));
		if (memcmp(got, want, n) != 0)
			fail_msg("%s: the library's logits are not the program's bits", goldens[i]);
		free(got);
		tu_free(want);
	}
}

/* The tree `bitnetc emit` writes, built with make in a fresh directory: its library exports
 * the API alone, its program computes the bits of the program bitnetc builds. */
static void test_emit_make(void **state)
{
	(void)state;
	SKIP_UNDER_SANITIZERS("emit and make");
	char tree[1300], cmd[6000];
	snprintf(tree, sizeof tree, "%s/tree", dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && '%s' emit '%s' '%s' --prefix t1 && cd '%s' && "
				  "make -j2 CFLAGS='-O2%s' >/dev/null",
		 tree, tu_bitnetc(), model(0), tree, tree, SAN);
	run_ok("emit and make", cmd);
	char *syms = tu_run_ok(0, "nm -g --defined-only '%s/libt1.a' | awk 'NF == 3 && $3 !~ /^t1_/'",
			       tree);
	assert_string_equal(syms, "");
	free(syms);
	char prog[1400];
	snprintf(prog, sizeof prog, "%s/t1", tree);
	int rows = 0, rows2 = 0;
	float *got = tu_run_logits(NULL, prog, toks, N_TOK, 4, &rows, NULL);
	snprintf(prog, sizeof prog, "%s/g1", dir);
	float *want = tu_run_logits(NULL, prog, toks, N_TOK, 4, &rows2, NULL);
	assert_int_equal(rows, rows2);
	assert_memory_equal(got, want, (size_t)rows * sizeof(float));
	tu_free(got);
	tu_free(want);
}

/* The same tree through CMake, as a product uses it: add_subdirectory and bitnetc::t2. */
static void test_emit_cmake(void **state)
{
	(void)state;
	SKIP_UNDER_SANITIZERS("emit and CMake");
	char tree[1300], prod[1300];
	snprintf(tree, sizeof tree, "%s/tree_cmake", dir);
	snprintf(prod, sizeof prod, "%s/product", dir);
	char cmd[8000];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' && '%s' emit '%s' '%s' --prefix t2 >/dev/null && "
				  "mkdir -p '%s'",
		 tree, prod, tu_bitnetc(), model(3), tree, prod);
	run_ok("emit", cmd);
	static const char app[] =
		"#include \"t2.h\"\n#include <stdio.h>\nint main(void)\n{\n\tchar err[256];\n"
		"\tbn_model *m = t2_model_open(NULL, err, sizeof err);\n\tif (!m)\n\t\treturn "
		"puts(err), 1;\n\tbn_ctx *c = t2_ctx_new(m, 32, 1, err, sizeof err);\n\tint32_t t[2] "
		"= {1, 7};\n\tint rc = c ? t2_decode(c, t, 2, NULL) : -1;\n\tprintf(\"decode %d, "
		"pos %d\\n\", rc, c ? t2_ctx_pos(c) : -1);\n\tt2_ctx_free(c);\n\tt2_model_close(m);"
		"\n\treturn rc != 0;\n}\n";
	char p[1400];
	snprintf(p, sizeof p, "%s/app.c", prod);
	assert_int_equal(tu_write_file(p, app, strlen(app)), 0);
	char lists[2000];
	int l = snprintf(lists, sizeof lists,
			 "cmake_minimum_required(VERSION 3.13)\nproject(product C)\n"
			 "add_subdirectory(\"%s\" t2)\nadd_executable(app app.c)\n"
			 "target_link_libraries(app PRIVATE bitnetc::t2)\n",
			 tree);
	snprintf(p, sizeof p, "%s/CMakeLists.txt", prod);
	assert_int_equal(tu_write_file(p, lists, (size_t)l), 0);
	snprintf(cmd, sizeof cmd, "cd '%s' && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "
				  "-DCMAKE_C_FLAGS='%s' >/dev/null && cmake --build build -j2 >/dev/null",
		 prod, SAN);
	run_ok("the product's CMake build", cmd);
	char *out = tu_run_ok(0, "'%s/build/app'", prod);
	assert_string_equal(out, "decode 0, pos 2\n");
	free(out);
	/* the tree's own targets came along: the shared library and the program */
	out = tu_run_ok(0, "cd '%s/build/t2' && ls libt2.so t2 && nm -D --defined-only libt2.so | "
			   "awk 'NF == 3 && $3 !~ /^t2_/'",
			prod);
	assert_string_equal(out, "libt2.so\nt2\n");
	free(out);
}

/* An AArch64 tree cross-built with make CC=aarch64-linux-gnu-gcc and run under qemu-user:
 * the interpreter's logits. */
static void test_emit_cross(void **state)
{
	(void)state;
	SKIP_UNDER_SANITIZERS("emit and a cross make");
	const char *sysroot = "/usr/aarch64-linux-gnu";
	char *log = NULL;
	if (tu_run(&log, "command -v aarch64-linux-gnu-gcc && command -v qemu-aarch64 && "
			 "test -d %s", sysroot) != 0) {
		free(log);
		print_message("skipped: an AArch64 tree under qemu: needs aarch64-linux-gnu-gcc, "
			      "qemu-aarch64 and %s (gcc-aarch64-linux-gnu, qemu-user)\n", sysroot);
		skip();
	}
	free(log);
	char tree[1300], cmd[6000];
	snprintf(tree, sizeof tree, "%s/tree_a64", dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && '%s' emit '%s' '%s' --target cpu-neon-dot "
				  "--prefix a64 >/dev/null && cd '%s' && make -j2 "
				  "CC=aarch64-linux-gnu-gcc >/dev/null 2>&1 && "
				  "aarch64-linux-gnu-nm -g --defined-only liba64.a | "
				  "awk 'NF == 3 && $3 !~ /^a64_/ { exit 1 }'",
		 tree, tu_bitnetc(), model(0), tree, tree);
	run_ok("emit --target cpu-neon-dot and a cross make", cmd);
	char env[1400], prog[1400];
	snprintf(env, sizeof env, "QEMU_LD_PREFIX=%s qemu-aarch64", sysroot);
	snprintf(prog, sizeof prog, "%s/a64", tree);
	int rows = 0;
	float *got = tu_run_logits(env, prog, toks, N_TOK, 2, &rows, NULL);
	TuModel m;
	tu_model_open(&m, model(0));
	static const TuCalls calls = {4, {1, 8, 32, 128}};
	double worst = tu_vs_interp(&m, got, rows / m.nv, toks, N_TOK, &calls);
	printf("aarch64 tree under qemu vs the interpreter: worst %.2e\n", worst);
	tu_model_close(&m);
	tu_free(got);
}

/* A cpu-rvv tree (its RVV kernels: the ternary matmuls, the quantizer, the norms,
 * attention, rope, the GLU and the head) built with the tree's own Makefile and clang for
 * riscv64 (make CC='clang --target=riscv64-linux-gnu': objcopy and ar of that triple),
 * run under qemu-user at VLEN 128 and 256: the interpreter's logits; and refused, naming
 * rvv, on a CPU without the vector extension. */
static void test_emit_rvv(void **state)
{
	(void)state;
	SKIP_UNDER_SANITIZERS("emit and a RISC-V make");
	char why[256], *log = NULL;
	const char *clang = tu_rvv_cc(why, sizeof why);
	if (!clang || tu_run(NULL, "command -v riscv64-linux-gnu-objcopy && "
				   "command -v riscv64-linux-gnu-ar") != 0) {
		print_message("skipped: a cpu-rvv tree under qemu: %s%sriscv64-linux-gnu-objcopy "
			      "and -ar (binutils-riscv64-linux-gnu)\n", clang ? "" : why,
			      clang ? "needs " : ", and ");
		skip();
	}
	char tree[1300], cmd[6000];
	snprintf(tree, sizeof tree, "%s/tree_rv", dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && '%s' emit '%s' '%s' --target cpu-rvv "
				  "--prefix rv >/dev/null && cd '%s' && make -j2 "
				  "CC='%s --target=riscv64-linux-gnu' >/dev/null 2>&1 && "
				  "riscv64-linux-gnu-nm -g --defined-only librv.a | "
				  "awk 'NF == 3 && $3 !~ /^rv_/ { exit 1 }' && "
				  "grep -q __riscv_vfwredosum model.c && grep -q attnv_ model.c",
		 tree, tu_bitnetc(), model(0), tree, tree, clang);
	run_ok("emit --target cpu-rvv and a cross make with clang", cmd);
	char prog[1400];
	snprintf(prog, sizeof prog, "%s/rv", tree);
	TuModel m;
	tu_model_open(&m, model(0));
	static const TuCalls calls = {4, {1, 8, 32, 128}};
	static const int vlens[] = {128, 256};
	for (int i = 0; i < 2; i++) {
		char env[1400];
		snprintf(env, sizeof env, "qemu-riscv64 -cpu rv64,v=true,vlen=%d,vext_spec=v1.0 -L %s",
			 vlens[i], TU_RV_SYSROOT);
		int rows = 0;
		float *got = tu_run_logits(env, prog, toks, N_TOK, 2, &rows, NULL);
		double worst = tu_vs_interp(&m, got, rows / m.nv, toks, N_TOK, &calls);
		printf("cpu-rvv tree under qemu, VLEN %d, vs the interpreter: worst %.2e\n", vlens[i],
		       worst);
		tu_free(got);
	}
	tu_model_close(&m);
	int rc = tu_run(&log, "qemu-riscv64 -cpu rv64,v=false -L %s '%s' --tokens 1 -n 1",
			TU_RV_SYSROOT, prog);
	if (rc == 0 || !log || !strstr(log, "rvv"))
		tu_fail_log(log, "the cpu-rvv tree's program without the vector extension: want a "
				 "refusal naming rvv, got exit %d", rc);
	free(log);
}

/* Bad library and emit options: a usage error (1) or a refusal (2) that names the problem,
 * and nothing a product owns is overwritten. */
static void test_refusals(void **state)
{
	(void)state;
	static const struct {
		const char *args;
		int code;
		const char *msg;
	} cases[] = {
		{"--lib --shared -o x/libq.a", 1, "give one"},
		{"--prefix 9q -o x/q", 1, "C identifier"},
		{"--lib --prefix rt -o x/libq.a", 1, "rt_"},
		{"--lib --prefix 'a-b' -o x/libq.a", 1, "only letters"},
		{"--lib --prefix bitnetc -o x/libq.a", 1, "bitnetc.h"},
		{"--prefix q -o x/q", 1, "only with --lib or --shared"},
		{"--lib --target cuda-sm80 -o x/libq.a", 1, "cpu targets"},
		{"--lib --prefix q -o x/q.h", 1, "header goes there"},
		{"--lib -o x/libmine.a", 2, "bitnetc did not write"},
	};
	char x[1300];
	snprintf(x, sizeof x, "%s/refuse", dir);
	char *o = tu_run_ok(0, "rm -rf '%s' && mkdir -p '%s' && printf 'int mine;\\n' > '%s/mine.h'",
			    x, x, x);
	free(o);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char args[600];
		snprintf(args, sizeof args, "%s", cases[i].args);
		char *p = strstr(args, "x/");
		char full[2200];
		if (p)
			snprintf(full, sizeof full, "%.*s'%s/%s'", (int)(p - args), args, x, p + 2);
		else
			snprintf(full, sizeof full, "%s", args);
		char *out = tu_run_ok(cases[i].code, "'%s' build '%s' %s 2>&1", tu_bitnetc(),
				      model(0), full);
		tu_expect_has(out, cases[i].msg);
		free(out);
	}
	o = tu_run_ok(0, "cat '%s/mine.h'", x);
	assert_string_equal(o, "int mine;\n");
	free(o);
	/* emit: into a directory holding a Makefile of the product's own, or with -o */
	o = tu_run_ok(0, "mkdir -p '%s/t' && printf 'all:\\n' > '%s/t/Makefile'", x, x);
	free(o);
	o = tu_run_ok(2, "'%s' emit '%s' '%s/t' 2>&1", tu_bitnetc(), model(0), x);
	tu_expect_has(o, "did not write");
	free(o);
	o = tu_run_ok(0, "cat '%s/t/Makefile'; ls '%s/t'", x, x);
	assert_string_equal(o, "all:\nMakefile\n");
	free(o);
	o = tu_run_ok(1, "'%s' emit '%s' '%s/u' -o q 2>&1", tu_bitnetc(), model(0), x);
	tu_expect_has(o, "not an option of emit");
	free(o);
	o = tu_run_ok(1, "'%s' emit '%s' 2>&1", tu_bitnetc(), model(0));
	tu_expect_has(o, "missing DIR");
	free(o);
}

/* examples/embed: the C example linked with libdemo.a and the Python one over libdemo.so
 * (where python3 is) stream the text the program of the same model prints. */
static void test_examples(void **state)
{
	(void)state;
	char ex[1300], cmd[8000];
	snprintf(ex, sizeof ex, "%s/examples", dir);
	snprintf(cmd, sizeof cmd,
		 "rm -rf '%s' && mkdir -p '%s' && cd '%s' && '%s' mkmodel --shape tiny "
		 "--llama3-vocab --layers 1 --hidden 256 --ffn 256 --heads 2 --kv-heads 1 --vocab "
		 "128256 --seed 5 -o ex.gguf && '%s' build ex.gguf -o prog && '%s' build ex.gguf "
		 "--lib -o libdemo.a --cflags '-O2%s' && '%s' build ex.gguf --shared -o libdemo.so && "
		 "cc -std=c11 -O2 -Wall -Wextra -Werror%s -I. -o generate '%s' libdemo.a -lm -lpthread",
		 ex, ex, ex, tu_bitnetc(), tu_bitnetc(), tu_bitnetc(), SAN, tu_bitnetc(), SAN,
		 tu_data("../../examples/embed/c/generate.c"));
	run_ok("building the examples", cmd);
	static const char prompt[] = "Hello, world: caf\xc3\xa9";
	char *want = tu_run_ok(0, "cd '%s' && ./prog -p '%s' -n 24 --temp 0 --no-display-prompt 2>/dev/null", ex,
			       prompt);
	char *got = tu_run_ok(0, "cd '%s' && ./generate '%s' 24 2>/dev/null", ex, prompt);
	printf("program: [%s]\nexample: [%s]\n", want, got);
	assert_true(strlen(want) > 4);
	assert_string_equal(got, want);
	char *log = NULL;
	if (SAN[0] || tu_run(&log, "command -v python3") != 0) {
		free(log);
		free(want);
		free(got);
		print_message("skipped: the Python example: %s\n",
			      SAN[0] ? "a sanitized libdemo.so needs the sanitizer runtime preloaded"
				     : "python3 not found");
		skip();
	}
	free(log);
	char *py = tu_run_ok(0, "cd '%s' && python3 '%s' ./libdemo.so demo '%s' 24 2>/dev/null", ex,
			     tu_data("../../examples/embed/python/demo.py"), prompt);
	assert_string_equal(py, want);
	char *err = tu_run_ok(0, "cd '%s' && python3 '%s' ./libdemo.so demo '%s' 24 2>&1 >/dev/null",
			      ex, tu_data("../../examples/embed/python/demo.py"), prompt);
	tu_expect_has(err, "left after 3 pieces");
	free(err);
	free(py);
	free(want);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_symbols),
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_emit_make),
		cmocka_unit_test(test_emit_cmake),
		cmocka_unit_test(test_emit_cross),
		cmocka_unit_test(test_emit_rvv),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_examples),
	};
	return cmocka_run_group_tests(tests, setup, tu_teardown);
}
