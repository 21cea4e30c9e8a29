/* test_cuda.c - the CUDA target end to end without a GPU: `bitnetc build --target
 * cuda-smNN` writes PTX that ptxas accepts (when the CUDA toolkit is here), and the whole
 * program (its host code and the same kernels compiled for this host with --host-kernels)
 * runs against the fake driver (tests/simt/fake_cuda.c: the kernels under the SIMT
 * emulator) and matches the interpreter and the golden logits. A program that finds no
 * driver or no usable GPU stops with exit code 3 and one line saying which. */
#include "testutil.h"

#include "rt.h"
#include "cuda/cg_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BN_FAKE_CUDA_PATH
#define BN_FAKE_CUDA_PATH ""
#endif
#ifndef BN_TEST_CC
#define BN_TEST_CC "cc"
#endif
/* The fake driver of a sanitized build is sanitized, and a program that loads it must be too. */
#if defined(__SANITIZE_ADDRESS__)
#define SAN_CFLAGS "--cflags '-fsanitize=address,undefined -fno-omit-frame-pointer'"
#else
#define SAN_CFLAGS ""
#endif

/* The CUDA toolkit's ptxas ($CUDA_PATH/bin, /usr/local/cuda/bin, $PATH), or NULL. */
static const char *ptxas(void)
{
	static char path[4096];
	const char *cuda = getenv("CUDA_PATH");
	if (cuda && *cuda) {
		snprintf(path, sizeof path, "%s/bin/ptxas", cuda);
		if (access(path, X_OK) == 0)
			return path;
	}
	snprintf(path, sizeof path, "/usr/local/cuda/bin/ptxas");
	if (access(path, X_OK) == 0)
		return path;
	if (tu_run(NULL, "command -v ptxas >/dev/null 2>&1") == 0)
		return "ptxas";
	return NULL;
}

/* Builds model (a golden name or a path) for target into a program (returned, a tu_tmp
 * slot) with its sources and the host kernels in dir, plus kernels.so from them. */
static const char *build_cuda(const char *gguf, const char *name, const char *target,
			      const char *extra, char *dir, size_t dir_n)
{
	static char prog[4096];
	snprintf(prog, sizeof prog, "%s", tu_tmp(name));
	snprintf(dir, dir_n, "%s.src", prog);
	char *log = NULL;
	tu_run(NULL, "rm -rf '%s'", dir);
	int rc = tu_run(&log, "'%s' build '%s' --target %s --host-kernels --emit-c '%s' -o '%s' %s %s",
			tu_bitnetc(), gguf, target, dir, prog, extra ? extra : "", SAN_CFLAGS);
	if (rc != 0)
		tu_fail_log(log, "cuda build of %s failed (%d)", gguf, rc);
	free(log);
	rc = tu_run(&log, "'%s' -shared -o '%s/kernels.so' '%s/model_host.o'", BN_TEST_CC, dir, dir);
	if (rc != 0)
		tu_fail_log(log, "linking the host kernels failed (%d)", rc);
	free(log);
	return prog;
}

/* The environment that runs a CUDA program on the fake driver with dir's kernels. */
static const char *fake_env(const char *dir)
{
	static char env[8192];
	snprintf(env, sizeof env, "BITNETC_LIBCUDA='%s' BN_FAKE_CUDA_KERNELS='%s/kernels.so'",
		 BN_FAKE_CUDA_PATH, dir);
	return env;
}

static float *run_prog(const char *env, const char *prog, const int32_t *tok, int n, int gen,
		       int *rows, const char *extra)
{
	return tu_run_logits(env, prog, tok, n, gen, rows, extra);
}

static bool have_fake(void)
{
	return BN_FAKE_CUDA_PATH[0] && access(BN_FAKE_CUDA_PATH, R_OK) == 0;
}

/* The i2_s golden model built for cuda-sm80 (--max-batch 8) once for the tests below. */
static char i2s_dir[4200], i2s_prog[4096];

static const char *i2s_build(void)
{
	if (!i2s_prog[0]) {
		const char *p = build_cuda(tu_data("golden/models/tiny-b158-i2_s.gguf"), "cuda-i2s",
					   "cuda-sm80", "--max-batch 8", i2s_dir, sizeof i2s_dir);
		snprintf(i2s_prog, sizeof i2s_prog, "%s", p);
	}
	return i2s_prog;
}

/* Every kernel of a golden model's program assembles with ptxas for the target it was
 * built for: sm_80 (its batch templates 1 and 8) and sm_90 (the default templates). */
static void test_ptxas(void **state)
{
	(void)state;
	const char *px = ptxas();
	if (!px) {
		printf("skipped: ptxas not found ($CUDA_PATH/bin, /usr/local/cuda/bin, $PATH): the "
		       "PTX is not assembled here\n");
		skip();
		return;
	}
	static const char *const targets[] = {"cuda-sm80", "cuda-sm90"};
	for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
		char dir[4200];
		if (i == 0) {
			i2s_build();
			snprintf(dir, sizeof dir, "%s", i2s_dir);
		} else {
			build_cuda(tu_data("golden/models/tiny-b158-i2_s.gguf"), "ptx-cuda-sm90",
				   targets[i], NULL, dir, sizeof dir);
		}
		char *log = NULL;
		int rc = tu_run(&log, "'%s' -arch=sm_%s '%s/model.ptx' -o '%s/model.cubin'", px,
				targets[i] + 7, dir, dir);
		if (rc != 0)
			tu_fail_log(log, "ptxas -arch=sm_%s rejected %s/model.ptx", targets[i] + 7, dir);
		free(log);
		char path[4300];
		snprintf(path, sizeof path, "%s/model.ptx", dir);
		size_t n;
		char *ptx = tu_hold(tu_read_file(path, &n));
		assert_non_null(ptx);
		ptx[n - 1] = 0;
		assert_non_null(strstr(ptx, ".visible .entry "));
		tu_free(ptx);
	}
}

static const TuCalls calls_8 = {2, {1, 8}}; /* --max-batch 8 */

/* The golden models under the emulator: teacher-forced in multi-token calls and in
 * single-token steps, and free-running; every row within the golden bounds and within
 * 1e-4 relative of the interpreter run with the same calls. */
static void test_golden_emulated(void **state)
{
	(void)state;
	if (!have_fake()) {
		printf("skipped: the fake CUDA driver (bn_fake_cuda) was not built\n");
		skip();
		return;
	}
	static const char *const goldens[] = {"tiny-b158-i2_s", "tinyold-bitnet-i2_s",
					      "tiny-b158-tq2_0", "tiny-b158-tq1_0",
					      "tinyllama-i2_s", "tinyllama-rf-i2_s"};
	for (size_t mi = 0; mi < sizeof goldens / sizeof goldens[0]; mi++) {
		char rel[256], gguf[4096], dir[4200];
		snprintf(rel, sizeof rel, "golden/models/%s.gguf", goldens[mi]);
		snprintf(gguf, sizeof gguf, "%s", tu_data(rel));
		char name[128];
		snprintf(name, sizeof name, "cuda-%s", goldens[mi]);
		const char *prog = mi == 0 ? i2s_build() : build_cuda(gguf, name, "cuda-sm80", "--max-batch 8", dir, sizeof dir);
		if (mi == 0)
			snprintf(dir, sizeof dir, "%s", i2s_dir);
		const char *env = fake_env(dir);
		TuModel m;
		tu_model_open(&m, gguf);
		m.attn_f64 = true; /* the CUDA kernels' attention sums */
		/* the prompt teacher-forced (multi-token calls), then 8 greedy steps */
		static const int32_t prompt[] = {496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114};
		int rows;
		float *got = run_prog(env, prog, prompt, 13, 8, &rows, NULL);
		assert_int_equal(rows, 21 * m.nv);
		double d = tu_vs_interp(&m, got, 21, prompt, 13, &calls_8);
		tu_free(got);
		/* one token per call: the step mode throughout */
		got = run_prog(env, prog, prompt, 13, 2, &rows, "-ub 1");
		assert_int_equal(rows, 15 * m.nv);
		double d1 = tu_vs_interp(&m, got, 15, prompt, 13, &(TuCalls){1, {1}});
		tu_free(got);
		printf("cuda (emulated) %-20s vs interpreter: batch %.2g, step %.2g relative\n",
		       goldens[mi], d, d1);
		tu_model_close(&m);
	}
}

/* --perplexity on the device program: under the emulator, its PPL over two chunks of 16
 * (calls of 8) is the one the interpreter's logits give with the same calls. */
static void test_ppl_emulated(void **state)
{
	(void)state;
	if (!have_fake()) {
		printf("skipped: the fake CUDA driver (bn_fake_cuda) was not built\n");
		skip();
		return;
	}
	const char *gguf = tu_data("golden/models/tiny-b158-i2_s.gguf");
	const char *text = tu_data("ppl/declaration.txt");
	const char *prog = i2s_build();
	char *out = tu_run_ok(0, "%s '%s' --perplexity -f '%s' -c 16 --chunks 2 -t 2 --json",
			      fake_env(i2s_dir), prog, text);
	const char *at = strstr(out, "{\"ppl\": ");
	assert_non_null(at);
	double got = strtod(at + 8, NULL);
	free(out);
	/* the text's first 32 tokens (a prefix of it tokenizes the same up to its last word) */
	char *ids = tu_run_ok(0, "'%s' tokenize '%s' \"$(head -c 300 '%s')\"", tu_bitnetc(), gguf,
			      text);
	int32_t tok[32];
	char *p = ids;
	for (int i = 0; i < 32; i++) {
		tok[i] = (int32_t)strtol(p, &p, 10);
		assert_true(*p == ',');
		p++;
	}
	free(ids);
	TuModel m;
	tu_model_open(&m, gguf);
	BnErr e = {0};
	IrInterp *it = ir_interp_new(m.g, 16, &e);
	assert_non_null(it);
	ir_interp_set_attn_f64(it, true); /* the CUDA kernels' attention sums */
	float *lg = tu_hold(malloc(8 * (size_t)m.nv * sizeof(float)));
	double nll = 0;
	for (int c = 0; c < 2; c++) {
		int32_t chunk[16];
		memcpy(chunk, tok + 16 * c, sizeof chunk);
		chunk[0] = 496; /* BOS in place of the chunk's first token */
		ir_interp_reset(it);
		for (int off = 0; off < 16; off += 8) {
			assert_int_equal(ir_interp_eval(it, chunk + off, 8, lg, &e), 0);
			for (int r = 0; r < 8; r++) {
				int pos = off + r;
				if (pos < 8 || pos > 14) /* positions n_ctx/2 .. n_ctx-2 are scored */
					continue;
				const float *l = lg + (size_t)r * (size_t)m.nv;
				double mx = l[0], sum = 0;
				for (int i = 1; i < m.nv; i++)
					mx = fmax(mx, l[i]);
				for (int i = 0; i < m.nv; i++)
					sum += exp(l[i] - mx);
				nll += mx + log(sum) - l[tok[16 * c + pos + 1]];
			}
		}
	}
	ir_interp_free(it);
	tu_free(lg);
	tu_model_close(&m);
	double want = exp(nll / 14);
	if (!(fabs(got - want) <= 1e-3 * want))
		fail_msg("cuda (emulated) --perplexity: %.6f, the interpreter's %.6f", got, want);
}

/* No driver, no device, an older GPU, too little memory: exit 3 and one line naming it. */
static void test_no_gpu(void **state)
{
	(void)state;
	const char *prog = i2s_build();
	const char *dir = i2s_dir;
	char *out = tu_run_ok(3, "BITNETC_LIBCUDA=/nonexistent/libcuda.so.1 '%s' --tokens 496,84 -n 1 2>&1",
			      prog);
	tu_expect_has(out, "/nonexistent/libcuda.so.1");
	free(out);
	if (!have_fake())
		return;
	char env[8400];
	snprintf(env, sizeof env, "%s BN_FAKE_CUDA_DEVICES=0", fake_env(dir));
	/* fake_env's buffer is reused below: each env is made right before its run */
	out = tu_run_ok(3, "%s '%s' --tokens 496,84 -n 1 2>&1", env, prog);
	tu_expect_has(out, "device");
	free(out);
	snprintf(env, sizeof env, "%s BN_FAKE_CUDA_CC=75", fake_env(dir));
	out = tu_run_ok(3, "%s '%s' --tokens 496,84 -n 1 2>&1", env, prog);
	tu_expect_has(out, "7.5");
	free(out);
	snprintf(env, sizeof env, "%s BN_FAKE_CUDA_MEM=4096", fake_env(dir));
	out = tu_run_ok(3, "%s '%s' --tokens 496,84 -n 1 2>&1", env, prog);
	tu_expect_has(out, "memory");
	free(out);
	/* --info names the device */
	out = tu_run_ok(0, "%s '%s' --info 2>&1", fake_env(dir), prog);
	tu_expect_has(out, "device:");
	free(out);
}

/* On a machine with a GPU and its driver (ctest -L gpu): the golden models built for it
 * (--target cuda: its own compute capability) on the real driver, against the interpreter
 * in multi-token calls and in steps (the CUDA graph replay). */
static void test_real_gpu(void **state)
{
	(void)state;
	int cc = cg_cuda_host_cc();
	if (!cc) {
		printf("skipped: no GPU here (libcuda.so.1 with a device): the real-GPU run needs one\n");
		skip();
		return;
	}
	static const char *const goldens[] = {"tiny-b158-i2_s", "tinyold-bitnet-i2_s",
					      "tiny-b158-tq2_0", "tiny-b158-tq1_0",
					      "tinyllama-i2_s", "tinyllama-rf-i2_s"};
	for (size_t mi = 0; mi < sizeof goldens / sizeof goldens[0]; mi++) {
		char rel[256], gguf[4096], prog[4096], name[128];
		snprintf(rel, sizeof rel, "golden/models/%s.gguf", goldens[mi]);
		snprintf(gguf, sizeof gguf, "%s", tu_data(rel));
		snprintf(name, sizeof name, "gpu-%s", goldens[mi]);
		snprintf(prog, sizeof prog, "%s", tu_tmp(name));
		char *log = NULL;
		if (tu_run(&log, "'%s' build '%s' --target cuda -o '%s'", tu_bitnetc(), gguf, prog))
			tu_fail_log(log, "cuda build of %s failed", gguf);
		free(log);
		TuModel m;
		tu_model_open(&m, gguf);
		m.attn_f64 = true; /* the CUDA kernels' attention sums */
		static const int32_t prompt[] = {496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114};
		int rows;
		float *got = run_prog("", prog, prompt, 13, 16, &rows, NULL);
		assert_int_equal(rows, 29 * m.nv);
		static const TuCalls calls = {4, {1, 8, 32, 128}}; /* passes/default.lua */
		double d = tu_vs_interp(&m, got, 29, prompt, 13, &calls);
		tu_free(got);
		got = run_prog("", prog, prompt, 13, 4, &rows, "-ub 1");
		double d1 = tu_vs_interp(&m, got, 17, prompt, 13, &(TuCalls){1, {1}});
		tu_free(got);
		printf("cuda (GPU, sm_%d) %-20s vs interpreter: batch %.2g, step %.2g relative\n", cc,
		       goldens[mi], d, d1);
		tu_model_close(&m);
	}
}

int main(void)
{
	/* BN_GPU_ONLY=1 (ctest -L gpu): the real-GPU test alone */
	const char *only = getenv("BN_GPU_ONLY");
	if (only && *only == '1') {
		const struct CMUnitTest gpu[] = {
			cmocka_unit_test_teardown(test_real_gpu, tu_teardown),
		};
		return cmocka_run_group_tests(gpu, NULL, NULL);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_ptxas, tu_teardown),
		cmocka_unit_test_teardown(test_no_gpu, tu_teardown),
		cmocka_unit_test_teardown(test_golden_emulated, tu_teardown),
		cmocka_unit_test_teardown(test_ppl_emulated, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
