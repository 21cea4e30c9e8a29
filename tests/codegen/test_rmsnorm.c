/* test_rmsnorm.c - the CPU emitter's rmsnorm kernel against the interpreter's rmsnorm, bit
 * for bit (NaN as NaN). The kernel sums a row's squares in 16 lanes and keeps that sum
 * only where it gives the same float mean as the reference's in-order sum, else runs the
 * in-order chain: besides ordinary, wide-range, zero, NaN, infinite, overflowing and
 * subnormal rows, the test builds rows whose lane sum and in-order sum DO give different
 * float means (a large square, vanishing ones, and two squares steering the sum to just
 * below where the float mean flips), so a kernel that trusted its lane sum there fails.
 * The kernel is the one `bitnetc emit` writes for a golden model, native (compiled with
 * -march=native) and cpu-generic (plain C), compiled into a small program. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ROWS = 16, N_STEER = 4 };

/* The reference's sum: in index order, in double, each square in float. */
static double sum_in_order(const float *x, int64_t k)
{
	double s = 0.0;
	for (int64_t i = 0; i < k; i++)
		s += (double)(x[i] * x[i]);
	return s;
}

/* The kernel's lane sum (sumsq_n<k> before its check): 16 lanes, then the lanes in
 * order, then the tail. */
static double sum_in_lanes(const float *x, int64_t k)
{
	double a[16] = {0};
	int64_t i = 0;
	for (; i + 16 <= k; i += 16)
		for (int j = 0; j < 16; j++)
			a[j] += (double)(x[i + j] * x[i + j]);
	double s = 0.0;
	for (int j = 0; j < 16; j++)
		s += a[j];
	for (; i < k; i++)
		s += (double)(x[i] * x[i]);
	return s;
}

static float mean_of(double s, int64_t k)
{
	return (float)(s / (double)k);
}

/* Rows whose lane sum gives another float mean than the in-order sum: 1, then squares
 * of 2^-54 that vanish against it in order (but add up in the lanes), with x[1] = c and
 * x[2] = f steering the in-order sum to just below the point where the mean rounds up.
 * Writes up to max rows of k; returns how many. */
static int steering_rows(float *rows, int max, int64_t k)
{
	int got = 0;
	float *x = malloc((size_t)k * sizeof(float));
	for (int64_t i = 0; i < k; i++)
		x[i] = 0x1p-27f;
	x[0] = 1.0f;
	float c = 0x1.8p-12f;
	for (int a = 0; a < 256 && got < max; a++, c = nextafterf(c, 1.0f)) {
		x[1] = c;
		x[2] = 0.0f;
		double s0 = sum_in_order(x, k), dl = sum_in_lanes(x, k) - s0;
		float m0 = mean_of(s0, k);
		/* the sum where the mean rounds up, less half the lanes' surplus */
		double g = (double)k * (((double)m0 + (double)nextafterf(m0, INFINITY)) / 2) - s0 - dl / 2;
		if (g <= 0)
			continue;
		float f = (float)sqrt(g);
		for (int b = 0; b < 64; b++)
			f = nextafterf(f, 0.0f);
		for (int b = 0; b < 128; b++, f = nextafterf(f, 1.0f)) {
			x[2] = f;
			if (mean_of(sum_in_order(x, k), k) != mean_of(sum_in_lanes(x, k), k)) {
				memcpy(rows + (int64_t)got++ * k, x, (size_t)k * sizeof(float));
				break;
			}
		}
	}
	free(x);
	return got;
}

/* The interpreter's rmsnorm (weight w, eps) of rows of k, t of them. */
static float *interp_rmsnorm(const float *rows, const float *w, int64_t k, int t, float eps)
{
	IrGraph *g = ir_graph_new("rmsnorm", "test");
	int64_t tne[1] = {IR_DIM_T}, ne[2] = {k, t}, wne[1] = {k}, one[2] = {k, IR_DIM_T};
	g->tokens = ir_value_input(g, "tokens", IR_DT_I32, 1, tne);
	IrId tab = ir_value_const(g, "rows", IR_DT_F32, 2, ne, rows, (uint64_t)(k * t) * sizeof(float));
	IrId wv = ir_value_const(g, "norm.weight", IR_DT_F32, 1, wne, w, (uint64_t)k * sizeof(float));
	IrId in_e[2] = {g->tokens, tab};
	IrId x = ir_node1(g, IR_OP_EMBED, "x", in_e, 2, IR_DT_F32, 2, one);
	IrId in[2] = {x, wv};
	g->logits = ir_node1(g, IR_OP_RMSNORM, "norm", in, 2, IR_DT_F32, 2, one);
	ir_attr_set_float(g, g->values[g->logits].producer, "eps", eps);
	return tu_interp_rows(g, t, k);
}

static const char harness_main[] =
	"#include <stdio.h>\n"
	"int main(int argc, char **argv)\n"
	"{\n"
	"\tstatic float x[%lld], w[%lld], y[%lld];\n"
	"\tFILE *f = fopen(argv[1], \"rb\");\n"
	"\tif (argc < 3 || !f || fread(x, sizeof x, 1, f) != 1 || fread(w, sizeof w, 1, f) != 1)\n"
	"\t\treturn 2;\n"
	"\tfclose(f);\n"
	"\t%s(x, w, y, %d, %a);\n"
	"\tf = fopen(argv[2], \"wb\");\n"
	"\treturn !f || fwrite(y, sizeof y, 1, f) != 1 || fclose(f) != 0;\n"
	"}\n";

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double u01(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) * 0x1p-53;
}

/* One target: the kernel `bitnetc emit --target target` writes, compiled with each of
 * flags, against the interpreter. */
static void check_target(const char *target, const char *const *flags, int nflags)
{
	char dir[64];
	snprintf(dir, sizeof dir, "rmsnorm-%s", target);
	char *src = tu_emit_model_c(dir, "golden/models/tiny-b158-i2_s.gguf", target);
	const char *at = strstr(src, "static void rmsnorm_n");
	assert_non_null(at);
	long long k = atoll(at + strlen("static void rmsnorm_n"));
	assert_true(k >= 100); /* the steering rows need ~100 vanishing squares */
	char name[64];
	snprintf(name, sizeof name, "rmsnorm_n%lld", k);
	char *sq = tu_hold(tu_function_text(src, "static inline double sumsq_n"));
	char *row = tu_hold(tu_function_text(src, "static inline void rmsnorm_row_n"));
	char *kern = tu_hold(tu_function_text(src, "static void rmsnorm_n"));
	assert_non_null(sq);
	assert_non_null(row);
	assert_non_null(kern);

	int t = 0;
	float *x = tu_hold(calloc((size_t)(k * MAX_ROWS), sizeof(float)));
	float *w = tu_hold(malloc((size_t)k * sizeof(float)));
	for (long long i = 0; i < k; i++)
		w[i] = (float)(0.5 + u01());
	float *r;
	r = x + k * t++; /* ordinary */
	for (long long i = 0; i < k; i++)
		r[i] = (float)((u01() - 0.5) * 4.0);
	r = x + k * t++; /* magnitudes 1e-20 .. 1e15 */
	for (long long i = 0; i < k; i++)
		r[i] = (float)(pow(10.0, u01() * 35.0 - 20.0) * (u01() < 0.5 ? -1.0 : 1.0));
	t++; /* zeros */
	r = x + k * t++; /* all ones: an exact sum */
	for (long long i = 0; i < k; i++)
		r[i] = 1.0f;
	r = x + k * t++; /* a NaN */
	for (long long i = 0; i < k; i++)
		r[i] = (float)(u01() - 0.5);
	r[k / 3] = NAN;
	r = x + k * t++; /* an infinity */
	for (long long i = 0; i < k; i++)
		r[i] = (float)(u01() - 0.5);
	r[k - 1] = -INFINITY;
	r = x + k * t++; /* squares that overflow float */
	for (long long i = 0; i < k; i++)
		r[i] = (i & 1) ? 2e19f : -1.0f;
	r = x + k * t++; /* subnormal squares, and zero ones */
	for (long long i = 0; i < k; i++)
		r[i] = (float)((u01() - 0.5) * 1e-20);
	int steer = steering_rows(x + k * t, N_STEER, k);
	assert_true(steer >= 2);
	for (int i = 0; i < steer; i++) /* what the kernel must not keep */
		assert_true(mean_of(sum_in_order(x + k * (t + i), k), k) !=
			    mean_of(sum_in_lanes(x + k * (t + i), k), k));
	t += steer;
	assert_true(t <= MAX_ROWS);
	const float eps = 1e-5f;
	float *want = tu_hold(interp_rmsnorm(x, w, k, t, eps));

	const char *tmp = tu_tmp(dir);
	char hs[1300], in[1300], out[1300], prog[1300];
	snprintf(hs, sizeof hs, "%s/rmsnorm_test.c", tmp);
	snprintf(in, sizeof in, "%s/rmsnorm.in", tmp);
	snprintf(out, sizeof out, "%s/rmsnorm.out", tmp);
	snprintf(prog, sizeof prog, "%s/rmsnorm_test", tmp);
	FILE *f = fopen(hs, "w");
	assert_non_null(f);
	fprintf(f, "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n"
		   "#if defined(__x86_64__)\n#include <immintrin.h>\n#endif\n"
		   "#if defined(__aarch64__)\n#include <arm_neon.h>\n#endif\n%s\n%s\n%s",
		sq, row, kern);
	long long len = k * MAX_ROWS;
	fprintf(f, harness_main, len, k, len, name, t, (double)eps);
	assert_int_equal(fclose(f), 0);
	f = fopen(in, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(x, sizeof(float), (size_t)len, f), len);
	assert_int_equal(fwrite(w, sizeof(float), (size_t)k, f), k);
	assert_int_equal(fclose(f), 0);

	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	for (int fl = 0; fl < nflags; fl++) {
		char *log = tu_run_ok(0, "%s -std=c11 -D_GNU_SOURCE %s -o '%s' '%s' -lm "
				   "&& '%s' '%s' '%s'",
				cc, flags[fl], prog, hs, prog, in, out);
		free(log);
		size_t got_n;
		float *got = tu_read_file(out, &got_n);
		assert_non_null(got);
		assert_int_equal(got_n, (size_t)len * sizeof(float));
		for (long long i = 0; i < k * t; i++) {
			uint32_t a, b;
			memcpy(&a, &got[i], 4);
			memcpy(&b, &want[i], 4);
			bool same = isnan(got[i]) ? isnan(want[i]) : a == b;
			if (!same) {
				float gv = got[i];
				free(got);
				fail_msg("%s %s: row %lld element %lld: kernel %a (0x%08x), interpreter %a "
					 "(0x%08x)",
					 target, flags[fl], i / k, i % k, (double)gv, a, (double)want[i], b);
			}
		}
		free(got);
	}
}

static void test_rmsnorm_native(void **state)
{
	(void)state;
	static const char *const flags[] = {"-O2 -march=native", "-O3 -march=native"};
	check_target("native", flags, 2);
}

static void test_rmsnorm_generic(void **state)
{
	(void)state;
	static const char *const flags[] = {"-O2", "-O0"};
	check_target("cpu-generic", flags, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_rmsnorm_native, tu_teardown),
		cmocka_unit_test_teardown(test_rmsnorm_generic, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
