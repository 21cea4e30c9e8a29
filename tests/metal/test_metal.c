/* test_metal.c - the Metal target on any host: `bitnetc build --target metal --emit-c DIR`
 * writes the macOS project (and without --emit-c, off macOS, stops saying why); every kernel
 * of model.metal compiles as C++17 with msl_host.h, and with xcrun's Metal compiler where
 * there is one; the generated host code (model.c and the runtime) linked with
 * tests/metal/fake_metal.c runs those kernels under the SIMT emulator and matches the
 * interpreter on the golden models, in multi-token calls and in steps (the I2_S models'
 * batches through the SIMD-group matrix GEMM). */
#include "testutil.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BN_TEST_CC
#define BN_TEST_CC "cc"
#endif
#ifndef BN_MSL_CXX
#define BN_MSL_CXX ""
#endif
#ifndef BN_SRC_DIR
#define BN_SRC_DIR "."
#endif

static bool have_cxx(void)
{
	return BN_MSL_CXX[0] != 0;
}

/* Builds gguf for --target metal into dir (name's tu_tmp slot + ".src"); returns dir. */
static const char *emit(const char *gguf, const char *name, const char *extra)
{
	static char dir[4096];
	snprintf(dir, sizeof dir, "%s.src", tu_tmp(name));
	char *log = NULL;
	tu_run(NULL, "rm -rf '%s'", dir);
	int rc = tu_run(&log, "'%s' build '%s' --target metal --emit-c '%s' -o '%s.prog' %s",
			tu_bitnetc(), gguf, dir, dir, extra ? extra : "");
	if (rc != 0)
		tu_fail_log(log, "metal build of %s failed (%d)", gguf, rc);
	free(log);
	return dir;
}

/* dir/model.metal compiled for the host (dir/kernels.so). */
static void compile_kernels(const char *dir)
{
	char *log = NULL;
	int rc = tu_run(&log, "'%s' -std=c++17 -O1 -ffp-contract=off -fPIC -shared -DBN_MSL_HOST "
			      "-I'%s/tests/metal' -I'%s/codegen/simt' -x c++ '%s/model.metal' -o '%s/kernels.so'",
			BN_MSL_CXX, BN_SRC_DIR, BN_SRC_DIR, dir, dir);
	if (rc != 0)
		tu_fail_log(log, "%s/model.metal does not compile as C++17 with msl_host.h", dir);
	free(log);
}

/* The names in dir/model_msl.h's kernel table; returns how many (at most max). */
static int kernel_names(const char *dir, char names[][128], int max)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/model_msl.h", dir);
	size_t n;
	char *h = tu_read_file(path, &n);
	assert_non_null(h);
	const char *p = strstr(h, "model_msl_kernels[] = {");
	assert_non_null(p);
	int k = 0;
	while ((p = strstr(p, "\n\t{\"")) && k < max) {
		p += 4;
		size_t l = strcspn(p, "\"");
		snprintf(names[k++], 128, "%.*s", (int)l, p);
	}
	free(h);
	return k;
}

static int count(const char *path, const char *what)
{
	size_t n;
	char *s = tu_read_file(path, &n);
	assert_non_null(s);
	int c = 0;
	for (const char *p = s; (p = strstr(p, what)); p++)
		c++;
	free(s);
	return c;
}

/* How many kernels of the MSL file at path have a name that starts with prefix and ends
 * with suffix. */
static int kernels_like(const char *path, const char *prefix, const char *suffix)
{
	size_t n;
	char *s = tu_read_file(path, &n);
	assert_non_null(s);
	int c = 0;
	size_t lp = strlen(prefix), ls = strlen(suffix);
	for (const char *p = s; (p = strstr(p, "\nkernel void ")); p++) {
		const char *name = p + strlen("\nkernel void ");
		size_t l = strcspn(name, "(");
		if (l >= lp + ls && strncmp(name, prefix, lp) == 0 && strncmp(name + l - ls, suffix, ls) == 0)
			c++;
	}
	free(s);
	return c;
}

/* Off macOS, a Metal program cannot be linked: exit 2 and one line saying so, nothing at
 * OUT; with --emit-c the project and its weights are written, exit 0. */
static void test_project(void **state)
{
	(void)state;
	const char *gguf = tu_data("golden/models/tiny-b158-i2_s.gguf");
	char prog[4096];
	snprintf(prog, sizeof prog, "%s", tu_tmp("metal-noproj"));
	unlink(prog);
#if defined(__APPLE__)
	printf("skipped the refusal: this host is macOS, where Metal programs link\n");
#else
	char *log = NULL;
	int rc = tu_run(&log, "'%s' build '%s' --target metal -o '%s'", tu_bitnetc(), gguf, prog);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(log, "linking a Metal program needs macOS"));
	assert_int_not_equal(access(prog, F_OK), 0);
	free(log);
#endif
	const char *dir = emit(gguf, "metal-proj", NULL);
	static const char *const files[] = {"model.c", "model.metal", "model_msl.h", "model_metallib.h",
					    "Makefile", "rt_metal.m", "rt_metal.h", "rt_model.h",
					    "main.c", "weights.bin"};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char path[4200];
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		if (access(path, R_OK) != 0)
			fail_msg("%s was not written", path);
	}
	char names[128][128], path[4200];
	int nk = kernel_names(dir, names, 128);
	snprintf(path, sizeof path, "%s/model.metal", dir);
	assert_true(nk > 10);
	assert_int_equal(count(path, "\nkernel void "), nk);
	snprintf(path, sizeof path, "%s/Makefile", dir);
	assert_int_equal(count(path, "-framework Metal"), 1);
	assert_int_equal(count(path, "xcrun -sdk macosx metal "), 1);
}

/* Every kernel of a model with each family (I2_S and TQ matmuls, the GLUs, the F16 head,
 * attention) compiles with msl_host.h, and its trampoline is there. */
static void test_kernels_compile(void **state)
{
	(void)state;
	if (!have_cxx()) {
		printf("skipped: no clang++ found at configure time: model.metal is not compiled here\n");
		skip();
		return;
	}
	static const char *const goldens[] = {"tiny-b158-tq1_0", "tinyllama-i2_s"};
	for (size_t i = 0; i < sizeof goldens / sizeof goldens[0]; i++) {
		char rel[256];
		snprintf(rel, sizeof rel, "golden/models/%s.gguf", goldens[i]);
		const char *dir = emit(tu_data(rel), goldens[i], NULL);
		compile_kernels(dir);
		char names[128][128], so[4200];
		int nk = kernel_names(dir, names, 128);
		snprintf(so, sizeof so, "%s/kernels.so", dir);
		void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
		if (!h)
			fail_msg("dlopen %s: %s", so, dlerror());
		for (int k = 0; k < nk; k++) {
			char sym[200];
			snprintf(sym, sizeof sym, "%.127s__host", names[k]);
			if (!dlsym(h, sym))
				fail_msg("%s: no trampoline for kernel %s", so, names[k]);
		}
		dlclose(h);
		printf("%s: %d kernels compile\n", goldens[i], nk);
	}
}

/* The real compiler, where xcrun has it. */
static void test_xcrun(void **state)
{
	(void)state;
	if (tu_run(NULL, "xcrun -sdk macosx -f metal >/dev/null 2>&1") != 0) {
		printf("skipped: no xcrun with the Metal compiler (macOS with Xcode): model.metal is "
		       "not compiled by Apple's compiler here\n");
		skip();
		return;
	}
	const char *dir = emit(tu_data("golden/models/tinyllama-i2_s.gguf"), "metal-xcrun", NULL);
	char *log = NULL;
	int rc = tu_run(&log, "cd '%s' && xcrun -sdk macosx metal -fno-fast-math -c model.metal -o model.air",
			dir);
	if (rc != 0)
		tu_fail_log(log, "xcrun metal rejected %s/model.metal", dir);
	free(log);
}

/* The runtime's objects, compiled once from the first project (they are the same in
 * every one) with the fake runtime and the emulator, in objs. */
static char objs[4200];

static const char *program(const char *dir)
{
	char *log = NULL;
	if (!objs[0]) {
		snprintf(objs, sizeof objs, "%s", tu_tmp("metal-objs"));
		tu_run(NULL, "rm -rf '%s' && mkdir -p '%s'", objs, objs);
		int rc = tu_run(&log, "cd '%s' && for f in '%s'/*.c '%s/tests/metal/fake_metal.c' "
				      "'%s/tests/simt/simt_emu.c'; do case \"$f\" in */model.c) continue;; "
				      "esac; '%s' -std=c11 -O1 -D_GNU_SOURCE -ffp-contract=off -I'%s' "
				      "-I'%s/tests/simt' -I'%s/codegen/simt' -c \"$f\" || exit 1; done",
				objs, dir, BN_SRC_DIR, BN_SRC_DIR, BN_TEST_CC, dir, BN_SRC_DIR, BN_SRC_DIR);
		if (rc != 0)
			tu_fail_log(log, "compiling the Metal runtime of %s with the fake failed", dir);
		free(log);
		log = NULL;
	}
	static char prog[4300];
	snprintf(prog, sizeof prog, "%s/prog", dir);
	int rc = tu_run(&log, "'%s' -std=c11 -O1 -D_GNU_SOURCE -ffp-contract=off -o '%s' '%s/model.c' "
			      "'%s'/*.o -ldl -lm -lpthread", BN_TEST_CC, prog, dir, objs);
	if (rc != 0)
		tu_fail_log(log, "linking %s failed", prog);
	free(log);
	return prog;
}

static const TuCalls calls_8 = {2, {1, 8}}; /* --max-batch 8 */

/* The golden models under the emulator: teacher-forced in multi-token calls and in steps,
 * then free-running; every row within 1e-4 relative of the interpreter run the same way. */
static void test_golden_emulated(void **state)
{
	(void)state;
	if (!have_cxx()) {
		printf("skipped: no clang++ found at configure time: the kernels cannot run here\n");
		skip();
		return;
	}
	static const char *const goldens[] = {"tiny-b158-i2_s", "tinyold-bitnet-i2_s",
					      "tiny-b158-tq2_0", "tiny-b158-tq1_0",
					      "tinyllama-i2_s"};
	for (size_t mi = 0; mi < sizeof goldens / sizeof goldens[0]; mi++) {
		char rel[256], gguf[4096], name[128];
		snprintf(rel, sizeof rel, "golden/models/%s.gguf", goldens[mi]);
		snprintf(gguf, sizeof gguf, "%s", tu_data(rel));
		snprintf(name, sizeof name, "metal-%s", goldens[mi]);
		char dir[4096];
		snprintf(dir, sizeof dir, "%s", emit(gguf, name, "--max-batch 8"));
		/* the I2_S matmuls of the batch template are the SIMD-group matrix GEMM, and only
		 * the _sgmm kernels multiply SIMD-group matrices */
		char msl[4200];
		snprintf(msl, sizeof msl, "%s/model.metal", dir);
		bool i2s = strstr(goldens[mi], "i2_s") != NULL;
		int sg = count(msl, "simdgroup_multiply_accumulate("), sgk = kernels_like(msl, "", "_sgmm") +
			 kernels_like(msl, "", "_sgmm_out");
		int tsg = kernels_like(msl, "tmm_i2s_", "_sgmm"), tgemm = kernels_like(msl, "tmm_i2s_", "_gemm");
		if ((i2s && tsg == 0) || tgemm != 0 || (sg == 0) != (sgk == 0))
			fail_msg("%s: %d simdgroup_multiply_accumulate calls in %d _sgmm kernels, %d I2_S "
				 "_sgmm and %d I2_S _gemm kernels", msl, sg, sgk, tsg, tgemm);
		printf("%s: %d SIMD-group matrix kernels (%d of them I2_S)\n", goldens[mi], sgk, tsg);
		compile_kernels(dir);
		const char *prog = program(dir);
		char env[4400], extra[4400], extra1[4500];
		snprintf(env, sizeof env, "BN_FAKE_METAL_KERNELS='%s/kernels.so'", dir);
		snprintf(extra, sizeof extra, "--weights-file '%s/weights.bin'", dir);
		snprintf(extra1, sizeof extra1, "%s -ub 1", extra);
		TuModel m;
		tu_model_open(&m, gguf);
		m.attn_f64 = true; /* the kernels' attention sums (double, as pairs of floats) */
		static const int32_t prompt[] = {496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114};
		int rows;
		float *got = tu_run_logits(env, prog, prompt, 13, 8, &rows, extra);
		assert_int_equal(rows, 21 * m.nv);
		double d = tu_vs_interp(&m, got, 21, prompt, 13, &calls_8);
		tu_free(got);
		got = tu_run_logits(env, prog, prompt, 13, 2, &rows, extra1);
		assert_int_equal(rows, 15 * m.nv);
		double d1 = tu_vs_interp(&m, got, 15, prompt, 13, &(TuCalls){1, {1}});
		tu_free(got);
		printf("metal (emulated) %-20s vs interpreter: batch %.2g, step %.2g relative\n",
		       goldens[mi], d, d1);
		tu_model_close(&m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_project),
		cmocka_unit_test(test_kernels_compile),
		cmocka_unit_test(test_xcrun),
		cmocka_unit_test(test_golden_emulated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
