/* test_msl.c - the translator of SIMT_MSL kernels into MSL (codegen/metal/cg_metal_msl.c) on
 * kernels written here: nested loops, if/else, an early return, a vector load, shuffles of
 * every type, a block reduction through threadgroup memory, double sums (the prelude's
 * double-float arithmetic), an atomic and SIMD-group matrices (loads, transposed loads and
 * stores, a multiply-accumulate) run under the SIMT emulator and give what C gives; what it
 * cannot write (a phi, a double's bits, a matrix in device memory) is refused naming the
 * kernel. */
#include "msl_kernels.h"

#include "simt_emu.h"

#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* k(x, y, n): one block of 64 threads; thread t sums x[i] for i = t, t + 64, ... < n in
 * double, then the block's sum (simt_block_sum: shuffles and threadgroup memory) divided by
 * 3 in double goes to y[0] as float; y[1 + t] = the xor-1 lane's value of t * 2 as i32,
 * i64 and f32 summed; y[65] gets atomicMin of t - 7 over the threads with t odd (an if);
 * x's 16-byte vector at 4 t: its lanes' sum to y[66 + t] unless t >= 8 (an early return). */
static void build(Simt *S)
{
	LLVMBuilderRef b = S->b;
	static const SimtParam p[3] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32};
	simt_begin(S, "k", p, 3);
	LLVMValueRef x = simt_param(S, 0), y = simt_param(S, 1), n = simt_param(S, 2);
	LLVMValueRef t = simt_tid(S, 0);
	LLVMValueRef acc = simt_var(S, S->t_f64, simt_f64(S, 0.0));
	SimtFor f;
	LLVMValueRef i = simt_for(S, &f, t, n, simt_i32(S, 64));
	LLVMValueRef v = simt_load(S, S->t_f32, x, i, 4);
	simt_set(S, acc, LLVMBuildFAdd(b, simt_get(S, acc), LLVMBuildFPExt(b, v, S->t_f64, ""), ""));
	simt_for_end(S, &f);
	LLVMValueRef sum = simt_block_sum(S, simt_get(S, acc), 64);
	LLVMValueRef third = LLVMBuildFDiv(b, sum, simt_f64(S, 3.0), "");
	SimtIf c0;
	simt_if(S, &c0, LLVMBuildICmp(b, LLVMIntEQ, t, simt_i32(S, 0), ""));
	simt_store(S, LLVMBuildFPTrunc(b, third, S->t_f32, ""), y, simt_i32(S, 0), 4);
	simt_endif(S, &c0);
	LLVMValueRef t2 = LLVMBuildMul(b, t, simt_i32(S, 2), "");
	LLVMValueRef a32 = simt_shfl(S, SIMT_SHFL_BFLY, t2, simt_i32(S, 1));
	LLVMValueRef a64 = simt_shfl(S, SIMT_SHFL_BFLY, LLVMBuildSExt(b, t2, S->t_i64, ""), simt_i32(S, 1));
	LLVMValueRef af = simt_shfl(S, SIMT_SHFL_BFLY, LLVMBuildSIToFP(b, t2, S->t_f32, ""), simt_i32(S, 1));
	LLVMValueRef tot = LLVMBuildAdd(b, LLVMBuildAdd(b, a32, LLVMBuildTrunc(b, a64, S->t_i32, ""), ""),
					LLVMBuildFPToSI(b, af, S->t_i32, ""), "");
	simt_store(S, LLVMBuildSIToFP(b, tot, S->t_f32, ""), y, LLVMBuildAdd(b, t, simt_i32(S, 1), ""), 4);
	SimtIf c1;
	simt_if(S, &c1, LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildAnd(b, t, simt_i32(S, 1), ""), simt_i32(S, 1), ""));
	simt_atomic_min(S, simt_gep(S, S->t_i32, y, simt_i32(S, 65)), LLVMBuildSub(b, t, simt_i32(S, 7), ""));
	simt_else(S, &c1);
	simt_sync(S); /* the even threads alone: a barrier under divergence is not what this checks */
	simt_endif(S, &c1);
	simt_return_if(S, LLVMBuildICmp(b, LLVMIntSGE, t, simt_i32(S, 8), ""));
	LLVMValueRef vec = simt_load(S, LLVMVectorType(S->t_f32, 4), simt_gep(S, S->t_f32, x, LLVMBuildMul(b, t, simt_i32(S, 4), "")), NULL, 16);
	LLVMValueRef s4 = LLVMBuildExtractElement(b, vec, simt_i32(S, 0), "");
	for (int k = 1; k < 4; k++)
		s4 = LLVMBuildFAdd(b, s4, LLVMBuildExtractElement(b, vec, simt_i32(S, k), ""), "");
	simt_store(S, s4, y, LLVMBuildAdd(b, t, simt_i32(S, 66), ""), 4);
	simt_end(S);
}

static void test_kernel(void **state)
{
	(void)state;
	if (!msl_available()) {
		printf("skipped: no clang++ found at configure time: the MSL is not compiled here\n");
		skip();
		return;
	}
	Simt *S = simt_new(SIMT_MSL, "t");
	assert_non_null(S);
	build(S);
	char so[1024];
	snprintf(so, sizeof so, "%s", tu_tmp("msl_k.so"));
	void *h = msl_so(S, so);
	SimtKernelFn fn;
	void *sym = msl_sym(h, "k", true);
	assert_non_null(sym);
	memcpy(&fn, &sym, sizeof fn);
	enum { N = 1000 };
	static float x[N] __attribute__((aligned(16)));
	float y[80];
	uint64_t rng = 5;
	double want = 0;
	for (int i = 0; i < N; i++) {
		x[i] = tu_randf(&rng) * (i % 7 == 0 ? 1e4f : 1.0f);
		want += x[i];
	}
	memset(y, 0, sizeof y);
	int32_t big = 1000;
	memcpy(&y[65], &big, 4);
	uint64_t px = (uint64_t)(uintptr_t)x, py = (uint64_t)(uintptr_t)y;
	int32_t n = N;
	void *params[3] = {&px, &py, &n};
	const unsigned grid[3] = {1, 1, 1}, block[3] = {64, 1, 1};
	char err[256];
	if (simt_emu_launch(fn, grid, block, 256, params, err, sizeof err))
		fail_msg("%s", err);
	assert_true(y[0] == (float)(want / 3.0));
	for (int t = 0; t < 64; t++)
		assert_true(y[1 + t] == (float)(3 * ((t ^ 1) * 2)));
	int32_t mn;
	memcpy(&mn, &y[65], 4);
	assert_int_equal(mn, 1 - 7);
	for (int t = 0; t < 8; t++)
		assert_true(y[66 + t] == ((x[4 * t] + x[4 * t + 1]) + x[4 * t + 2]) + x[4 * t + 3]);
	dlclose(h);
}

/* mm(x, y), one SIMD-group: A = x[0..64) and M = x[64..128) as half 8x8 row-major in
 * threadgroup memory; C = A * B + 1 with B loaded transposed from M (B(k, c) = M(c, k)),
 * stored row-major to y[0..64) and transposed to y[64..128), both through threadgroup
 * memory: the SIMD-group matrix calls as the translator writes them and msl_host.h runs
 * them. */
static void build_mm(Simt *S)
{
	LLVMBuilderRef b = S->b;
	static const SimtParam p[2] = {SIMT_P_PTR, SIMT_P_PTR};
	simt_begin(S, "mm", p, 2);
	LLVMValueRef x = simt_param(S, 0), y = simt_param(S, 1), sm = simt_smem(S);
	LLVMValueRef t = simt_tid(S, 0);
	for (int i = 0; i < 128; i += 32) {
		LLVMValueRef e = LLVMBuildAdd(b, t, simt_i32(S, i), "");
		LLVMValueRef h = LLVMBuildFPTrunc(b, simt_load(S, S->t_f32, x, e, 4), S->t_f16, "");
		simt_store(S, h, simt_gep(S, S->t_f16, sm, e), NULL, 2);
	}
	simt_sync(S);
	LLVMValueRef a = simt_mat(S, SIMT_MAT_F16), m = simt_mat(S, SIMT_MAT_F16), c = simt_mat(S, SIMT_MAT_F32);
	simt_mat_load(S, a, sm, simt_i32(S, 8), false);
	simt_mat_load(S, m, simt_gep(S, S->t_f16, sm, simt_i32(S, 64)), simt_i32(S, 8), true);
	simt_mat_fill(S, c, 1.0f);
	simt_mat_mac(S, c, a, m, c);
	LLVMValueRef out = simt_gep(S, S->t_f32, sm, simt_i32(S, 64));
	simt_mat_store(S, c, out, simt_i32(S, 8), false);
	simt_mat_store(S, c, simt_gep(S, S->t_f32, out, simt_i32(S, 64)), simt_i32(S, 8), true);
	simt_sync(S);
	for (int i = 0; i < 128; i += 32) {
		LLVMValueRef e = LLVMBuildAdd(b, t, simt_i32(S, i), "");
		simt_store(S, simt_load(S, S->t_f32, out, e, 4), y, e, 4);
	}
	simt_end(S);
}

static void test_matrix(void **state)
{
	(void)state;
	if (!msl_available()) {
		printf("skipped: no clang++ found at configure time: the MSL is not compiled here\n");
		skip();
		return;
	}
	Simt *S = simt_new(SIMT_MSL, "t");
	assert_non_null(S);
	build_mm(S);
	char so[1024];
	snprintf(so, sizeof so, "%s", tu_tmp("msl_mm.so"));
	void *h = msl_so(S, so);
	SimtKernelFn fn;
	void *sym = msl_sym(h, "mm", true);
	assert_non_null(sym);
	memcpy(&fn, &sym, sizeof fn);
	float x[128], y[128];
	uint64_t rng = 9;
	for (int i = 0; i < 128; i++)
		x[i] = rintf(tu_randf(&rng) * 3.0f);
	uint64_t px = (uint64_t)(uintptr_t)x, py = (uint64_t)(uintptr_t)y;
	void *params[2] = {&px, &py};
	const unsigned grid[3] = {1, 1, 1}, block[3] = {32, 1, 1};
	char err[256];
	if (simt_emu_launch(fn, grid, block, 128 * 2 + 128 * 4, params, err, sizeof err))
		fail_msg("%s", err);
	for (int r = 0; r < 8; r++)
		for (int c = 0; c < 8; c++) {
			float want = 1.0f;
			for (int k = 0; k < 8; k++)
				want += x[r * 8 + k] * x[64 + c * 8 + k];
			if (y[r * 8 + c] != want || y[64 + c * 8 + r] != want)
				fail_msg("C(%d, %d): %g, transposed %g, want %g", r, c, (double)y[r * 8 + c],
					 (double)y[64 + c * 8 + r], (double)want);
		}
	dlclose(h);
}

/* A phi and a double's bits have no MSL here: refused, naming the kernel. */
static void test_refused(void **state)
{
	(void)state;
	for (int which = 0; which < 2; which++) {
		Simt *S = simt_new(SIMT_MSL, "bad");
		static const SimtParam p[1] = {SIMT_P_PTR};
		simt_begin(S, which ? "bits_of_double" : "with_phi", p, 1);
		LLVMValueRef v;
		if (which) {
			LLVMValueRef d = LLVMBuildFPExt(S->b, simt_load(S, S->t_f32, simt_param(S, 0), NULL, 4), S->t_f64, "");
			v = LLVMBuildTrunc(S->b, LLVMBuildBitCast(S->b, d, S->t_i64, ""), S->t_i32, "");
		} else {
			v = LLVMBuildPhi(S->b, S->t_i32, "");
			LLVMValueRef in = simt_i32(S, 1);
			LLVMBasicBlockRef bb = LLVMGetInsertBlock(S->b);
			LLVMAddIncoming(v, &in, &bb, 1);
		}
		simt_store(S, v, simt_param(S, 0), NULL, 4);
		simt_end(S);
		CgBuf msl = {0}, sigs = {0};
		BnErr e = {0};
		assert_int_equal(cg_msl_module(S->mod, &msl, &sigs, &e), BN_EUNSUPPORTED);
		assert_non_null(strstr(e.msg, which ? "kernel 'bits_of_double'" : "kernel 'with_phi'"));
		print_message("refused: %s\n", e.msg);
		cg_buf_free(&msl);
		cg_buf_free(&sigs);
		simt_free(S);
	}
	/* a SIMD-group matrix loaded from device memory (Metal loads them from threadgroup
	 * memory only, as the builder's callers do) */
	Simt *S = simt_new(SIMT_MSL, "bad");
	static const SimtParam p[1] = {SIMT_P_PTR};
	simt_begin(S, "mat_from_device", p, 1);
	LLVMValueRef m = simt_mat(S, SIMT_MAT_F16);
	simt_mat_load(S, m, simt_param(S, 0), simt_i32(S, 8), false);
	simt_end(S);
	CgBuf msl = {0}, sigs = {0};
	BnErr e = {0};
	assert_int_equal(cg_msl_module(S->mod, &msl, &sigs, &e), BN_EUNSUPPORTED);
	assert_non_null(strstr(e.msg, "kernel 'mat_from_device'"));
	assert_non_null(strstr(e.msg, "threadgroup memory"));
	print_message("refused: %s\n", e.msg);
	cg_buf_free(&msl);
	cg_buf_free(&sigs);
	simt_free(S);
}

/* A SIMD-group matrix in a PTX or host kernel is the emitter's bug: an internal error
 * (abort), not a kernel that computes something else. */
static void test_matrix_not_msl(void **state)
{
	(void)state;
	for (int f = 0; f < 2; f++) {
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			Simt *S = simt_new(f ? SIMT_HOST : SIMT_PTX, "bad");
			static const SimtParam p[1] = {SIMT_P_PTR};
			simt_begin(S, "mat_in_ptx", p, 1);
			simt_mat(S, SIMT_MAT_F32);
			_exit(0);
		}
		int st = 0;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel),
		cmocka_unit_test(test_matrix),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_matrix_not_msl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
