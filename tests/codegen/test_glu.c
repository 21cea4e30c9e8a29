/* test_glu.c - the CPU emitter's GLU kernels against the interpreter's, bit for bit (NaN
 * as NaN). relu2 (relu(gate)^2 * up, the relu as a sign mask rather than a branch or a
 * multiply): on gates and ups that are negative, signed zeros, subnormal, large enough that
 * relu(gate)^2 overflows f16 (and f32), infinite and NaN; the kernel `bitnetc emit` writes
 * for a golden model (with the prelude's bit casts it uses), compiled with and without
 * -march=native (scalar and vectorized) into a small program. SiLU (gate / (1 +
 * exp(-gate)) * up, the exp the softmax's): the same cases, gates where exp(-gate)
 * overflows, underflows or is clamped, and random ones, through the kernel of the SiLU
 * golden model's model.c for cpu-generic, cpu-avx2 and cpu-avx512 (the prelude's scalar,
 * 8- and 16-lane code), also on unaligned spans with vector tails of every length. A
 * target this host cannot run is skipped, saying so. */
#include "testutil.h"

#include "cg_cpu.h"
#include "rt.h"

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

/* The interpreter's GLU (op: relu2 or silu) of rows (gate, up) of k elements, T tokens. */
static float *interp_glu(IrOp op, const float *gate, const float *up, int64_t k)
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
	g->logits = ir_node1(g, op, "glu", in, 2, IR_DT_F32, 2, one);
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

/* got[i] == want[i] bit for bit (NaN as NaN) for i in [from, to) */
static void compare(const char *what, const float *got, const float *want, const float *gate,
		    const float *up, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		uint32_t a, b;
		memcpy(&a, &got[i], 4);
		memcpy(&b, &want[i], 4);
		bool same = isnan(got[i]) ? isnan(want[i]) : a == b;
		if (!same)
			fail_msg("%s: element %zu, gate %a up %a: kernel %a (0x%08x), interpreter %a "
				 "(0x%08x)",
				 what, i, (double)gate[i], (double)up[i], (double)got[i], a,
				 (double)want[i], b);
	}
}

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
	float *want = tu_hold(interp_glu(IR_OP_RELU2_GLU, gate, up, k));

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
		compare(flags[fl], got, want, gate, up, 0, len);
		free(got);
	}
}

/* The SiLU program: the target's model.c with the runtime functions it names stubbed, the
 * kernel on T rows, then the prelude's silu_glu on spans [o, LEN - o - 1) for o = 1..16
 * (unaligned starts, vector tails of every length) into a second output. */
static const char silu_main[] =
	"enum { LEN = %lld };\n"
	"int main(int argc, char **argv)\n"
	"{\n"
	"\tstatic float g[LEN], u[LEN], y[LEN], z[16][LEN];\n"
	"\tFILE *f = fopen(argv[1], \"rb\");\n"
	"\tif (argc < 3 || !f || fread(g, sizeof g, 1, f) != 1 || fread(u, sizeof u, 1, f) != 1)\n"
	"\t\treturn 2;\n"
	"\tfclose(f);\n"
	"\t%s(g, u, y, %d);\n"
	"\tfor (int o = 1; o <= 16; o++)\n"
	"\t\tsilu_glu(g + o, u + o, z[o - 1] + o, LEN - 2 * o - 1);\n"
	"\tf = fopen(argv[2], \"wb\");\n"
	"\treturn !f || fwrite(y, sizeof y, 1, f) != 1 || fwrite(z, sizeof z, 1, f) != 1 || fclose(f) != 0;\n"
	"}\n";

/* gates for the SiLU beyond the cases: around where exp(-gate) overflows (gate < -88.72),
 * underflows to subnormals and 0 (gate > 87.3, > 103.97) and is clamped (|gate| > 89, 150) */
static const float silu_gates[] = {
	-88.5f, -88.7f, -88.72f, -88.73f, -88.75f, -89.0f, -89.5f, -100.0f, -150.0f, -151.0f,
	-1000.0f, 87.0f, 87.4f, 100.0f, 103.9f, 104.0f, 149.0f, 151.0f, 1000.0f, 1e-7f, -1e-7f,
	0.5f, -0.5f, 20.0f, -20.0f, 16.63553f, -16.63553f,
};

static void silu_target(const char *target, bool need_avx2, bool need_avx512)
{
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	bool avx2 = f.avx2 && f.fma && f.f16c;
	bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
	if ((need_avx2 && !avx2) || (need_avx512 && !avx512)) {
		print_message("skipped: %s: this host lacks its instructions%s\n", target, tu_mask_note());
		return;
	}
	char dir[64];
	snprintf(dir, sizeof dir, "silu-%s", target);
	char *src = tu_emit_model_c(dir, "golden/models/tinyold-bitnet-i2_s.gguf", target);
	const char *at = strstr(src, "static void silu_glu_n");
	assert_non_null(at);
	long long k = atoll(at + strlen("static void silu_glu_n"));
	assert_true(k > 0 && k % 16 == 0);
	char name[64];
	snprintf(name, sizeof name, "silu_glu_n%lld", k);
	/* a kernel that takes the prelude's exp, not libm's */
	char *kern = tu_hold(tu_function_text(src, "static void silu_glu_n"));
	assert_non_null(kern);
	assert_non_null(strstr(kern, "silu_glu(g, u, y,"));

	size_t len = (size_t)k * T, nc = N_CASES + sizeof silu_gates / sizeof silu_gates[0];
	float *gate = tu_hold(malloc(len * sizeof(float))), *up = tu_hold(malloc(len * sizeof(float)));
	uint64_t rs = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < len; i++) {
		/* the cases and the gates above at positions of every lane, then random gates
		 * of -24..24 and -120..120 */
		size_t c = (i * 7 + i / nc) % nc;
		if (i < 4 * nc) {
			gate[i] = c < N_CASES ? cases[c][0] : silu_gates[c - N_CASES];
			up[i] = c < N_CASES ? cases[c][1] : 1.5f;
		} else {
			gate[i] = tu_randf(&rs) * (i % 3 ? 24.0f : 120.0f);
			up[i] = tu_randf(&rs) * 4.0f;
		}
	}
	float *want = tu_hold(interp_glu(IR_OP_SILU_GLU, gate, up, k));

	const char *d = tu_tmp(dir);
	char hs[1300], in[1300], out[1300];
	snprintf(hs, sizeof hs, "%s/silu_test.c", d);
	snprintf(in, sizeof in, "%s/silu.in", d);
	snprintf(out, sizeof out, "%s/silu.out", d);
	FILE *fp = fopen(hs, "w");
	assert_non_null(fp);
	fprintf(fp, "#include \"model.c\"\n#include <stdio.h>\n#include <stdlib.h>\n%s",
		tu_model_c_stubs);
	fprintf(fp, silu_main, (long long)len, name, T);
	assert_int_equal(fclose(fp), 0);
	fp = fopen(in, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(gate, sizeof(float), len, fp), len);
	assert_int_equal(fwrite(up, sizeof(float), len, fp), len);
	assert_int_equal(fclose(fp), 0);
	const CgCpuTarget *ct = cg_cpu_target(target);
	assert_non_null(ct);
	char flags[512] = "";
	for (size_t o = 0, i = 0; ct->cflags && ct->cflags[i]; i++)
		o += (size_t)snprintf(flags + o, sizeof flags - o, " %s", ct->cflags[i]);
	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	free(tu_run_ok(0, "cd '%s' && %s -std=c11 -O2 -ffp-contract=off -D_GNU_SOURCE%s -I '%s/../../runtime' "
			  "-o silu_test silu_test.c -lm -lpthread && ./silu_test '%s' '%s'",
		       d, cc, flags, tu_data("."), in, out));
	size_t got_n;
	float *got = tu_hold(tu_read_file(out, &got_n));
	assert_non_null(got);
	assert_int_equal(got_n, 17 * len * sizeof(float));
	char what[96];
	snprintf(what, sizeof what, "%s's %s", target, name);
	compare(what, got, want, gate, up, 0, len);
	for (size_t o = 1; o <= 16; o++) {
		snprintf(what, sizeof what, "%s's silu_glu from %zu", target, o);
		compare(what, got + o * len, want, gate, up, o, len - o - 1);
	}
	printf("%s's %s and silu_glu: the interpreter's bits (%zu elements)\n", target, name, len);
}

static void test_silu_glu_vs_interp(void **state)
{
	(void)state;
	silu_target("cpu-generic", false, false);
	silu_target("cpu-avx2", true, false);
	silu_target("cpu-avx512", true, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_relu2_glu_vs_interp, tu_teardown),
		cmocka_unit_test_teardown(test_silu_glu_vs_interp, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
