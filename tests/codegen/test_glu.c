/* test_glu.c - the CPU emitter's relu2 GLU kernel (relu(gate)^2 * up, the relu as a sign
 * mask rather than a branch or a multiply) against the interpreter's relu2_glu, bit for
 * bit (NaN as NaN), on gates and ups that are negative, signed zeros, subnormal, large
 * enough that relu(gate)^2 overflows f16 (and f32), infinite and NaN. The kernel is the
 * one `bitnetc emit` writes for a golden model (with the prelude's bit casts it uses),
 * compiled with and without -march=native (scalar and vectorized) into a small program. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* gate/up pairs, one row of K each (K: the golden model's n_ff, whatever it is, is the
 * kernel's row; the cases fill the first elements and repeat) */
static const float cases[][2] = {
	{1.5f, 2.0f},       {-1.5f, 2.0f},       {0.0f, 3.0f},        {-0.0f, 3.0f},
	{0.0f, -3.0f},      {-0.0f, -3.0f},      {-2.0f, -3.0f},      {2.0f, -3.0f},
	{300.0f, 1.0f},     {300.0f, -0.5f},     {256.0f, 2.0f},      {-300.0f, 1.0f},
	{1e20f, 1.0f},      {-1e20f, 1.0f},      {1e19f, 1e-10f},     {1e-30f, 1e30f},
	{1e-45f, 1.0f},     {-1e-45f, 1.0f},     {INFINITY, 1.0f},    {-INFINITY, 1.0f},
	{INFINITY, 0.0f},   {-INFINITY, 0.0f},   {INFINITY, -1.0f},   {NAN, 1.0f},
	{-NAN, 1.0f},       {NAN, 0.0f},         {1.0f, NAN},         {-1.0f, NAN},
	{0.0f, INFINITY},   {-1.0f, INFINITY},   {0.5f, -INFINITY},   {-0.5f, -INFINITY},
	{1.0f, 0.0f},       {1.0f, -0.0f},       {-1.0f, -0.0f},      {65504.0f, 65504.0f},
	{3.4e38f, 1.0f},    {1.8446744e19f, 1e-20f},
};
enum { N_CASES = sizeof cases / sizeof cases[0], T = 3 };

/* The interpreter's relu2_glu of rows (gate, up) of k elements, T tokens. */
static float *interp_glu(const float *gate, const float *up, int64_t k)
{
	IrGraph *g = ir_graph_new("glu", "test");
	int64_t tne[1] = {IR_DIM_T}, ne[2] = {k, T}, one[2] = {k, IR_DIM_T};
	g->tokens = ir_value_input(g, "tokens", IR_DT_I32, 1, tne);
	IrId tg = ir_value_const(g, "gate_table", IR_DT_F32, 2, ne, gate,
				 (uint64_t)(k * T) * sizeof(float));
	IrId tu = ir_value_const(g, "up_table", IR_DT_F32, 2, ne, up,
				 (uint64_t)(k * T) * sizeof(float));
	IrId in_g[2] = {g->tokens, tg}, in_u[2] = {g->tokens, tu};
	IrId vg = ir_node1(g, IR_OP_EMBED, "gate", in_g, 2, IR_DT_F32, 2, one);
	IrId vu = ir_node1(g, IR_OP_EMBED, "up", in_u, 2, IR_DT_F32, 2, one);
	IrId in[2] = {vg, vu};
	g->logits = ir_node1(g, IR_OP_RELU2_GLU, "glu", in, 2, IR_DT_F32, 2, one);
	return tu_interp_rows(g, T, k);
}

static const char harness_main[] =
	"#include <stdio.h>\n"
	"int main(int argc, char **argv)\n"
	"{\n"
	"\tstatic float g[%lld], u[%lld], y[%lld];\n"
	"\tFILE *f = fopen(argv[1], \"rb\");\n"
	"\tif (argc < 3 || !f || fread(g, sizeof g, 1, f) != 1 || fread(u, sizeof u, 1, f) != 1)\n"
	"\t\treturn 2;\n"
	"\tfclose(f);\n"
	"\t%s(g, u, y, %d);\n"
	"\tf = fopen(argv[2], \"wb\");\n"
	"\treturn !f || fwrite(y, sizeof y, 1, f) != 1 || fclose(f) != 0;\n"
	"}\n";

static void test_relu2_glu_vs_interp(void **state)
{
	(void)state;
	const char *dir = tu_tmp("glu");
	char *src = tu_emit_model_c("glu", "golden/models/tiny-b158-i2_s.gguf", "native");
	/* the kernel and the size it was made for */
	const char *at = strstr(src, "static void relu2_glu_n");
	assert_non_null(at);
	long long k = atoll(at + strlen("static void relu2_glu_n"));
	assert_true(k > 0 && k % 16 == 0);
	char name[64];
	snprintf(name, sizeof name, "relu2_glu_n%lld", k);
	char *kern = tu_hold(tu_function_text(src, "static void relu2_glu_n"));
	char *bits = tu_hold(tu_function_text(src, "MAYBE_UNUSED static inline uint32_t f32_bits"));
	char *fbits = tu_hold(tu_function_text(src, "MAYBE_UNUSED static inline float bits_f32"));
	assert_non_null(kern);
	assert_non_null(bits);
	assert_non_null(fbits);
	/* a kernel that still takes the relu as a mask, not a branch or a multiply by 0 */
	assert_non_null(strstr(kern, "f32_bits(g[i]) &"));

	size_t len = (size_t)k * T;
	float *gate = tu_hold(malloc(len * sizeof(float))), *up = tu_hold(malloc(len * sizeof(float)));
	for (size_t i = 0; i < len; i++) {
		/* the cases, then the cases again at other positions (vector lanes, tails) */
		size_t c = (i * 7 + i / N_CASES) % N_CASES;
		gate[i] = cases[c][0];
		up[i] = cases[c][1];
	}
	float *want = tu_hold(interp_glu(gate, up, k));

	char hs[1300], in[1300], out[1300], prog[1300];
	snprintf(hs, sizeof hs, "%s/glu_test.c", dir);
	snprintf(in, sizeof in, "%s/glu.in", dir);
	snprintf(out, sizeof out, "%s/glu.out", dir);
	snprintf(prog, sizeof prog, "%s/glu_test", dir);
	FILE *f = fopen(hs, "w");
	assert_non_null(f);
	fprintf(f, "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n"
		   "#define MAYBE_UNUSED __attribute__((unused))\n%s%s%s",
		bits, fbits, kern);
	fprintf(f, harness_main, (long long)len, (long long)len, (long long)len, name, T);
	assert_int_equal(fclose(f), 0);
	f = fopen(in, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(gate, sizeof(float), len, f), len);
	assert_int_equal(fwrite(up, sizeof(float), len, f), len);
	assert_int_equal(fclose(f), 0);

	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	static const char *const flags[] = {"-O2", "-O2 -march=native", "-O3 -march=native"};
	for (size_t fl = 0; fl < sizeof flags / sizeof flags[0]; fl++) {
		char *log = tu_run_ok(0, "%s -std=c11 -ffp-contract=off -D_GNU_SOURCE %s -o '%s' '%s' -lm "
				   "&& '%s' '%s' '%s'",
				cc, flags[fl], prog, hs, prog, in, out);
		free(log);
		size_t got_n;
		float *got = tu_read_file(out, &got_n);
		assert_non_null(got);
		assert_int_equal(got_n, len * sizeof(float));
		for (size_t i = 0; i < len; i++) {
			uint32_t a, b;
			memcpy(&a, &got[i], 4);
			memcpy(&b, &want[i], 4);
			bool same = isnan(got[i]) ? isnan(want[i]) : a == b;
			if (!same)
				fail_msg("%s: gate %g up %g: kernel %g (0x%08x), interpreter %g (0x%08x)",
					 flags[fl], (double)gate[i], (double)up[i], (double)got[i], a,
					 (double)want[i], b);
		}
		free(got);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_relu2_glu_vs_interp, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
