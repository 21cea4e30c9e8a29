/* test_attention.c - the CPU emitter's attention kernels against the portable C one, bit for
 * bit. The portable kernel is the interpreter's op_attention written out (q.K in 8 double
 * lanes reduced by a fixed tree, the softmax in key order, .V per dimension in key order);
 * the AVX2 kernel (two ymm of doubles for the 8 lanes) and the AVX-512 one (one zmm; with
 * head_dim a multiple of 32, several heads and keys in flight) must give the same floats.
 * Each target's model.c of a golden model (heads 4, KV heads 2, head_dim 64) and of two
 * synthetic ones (16 heads over 4 KV heads of head_dim 32: groups of 4, as the 2B-4T
 * shape's; 16 over 8 of head_dim 16: AVX-512's one-head kernel) is included by a small
 * program that calls its attention kernel directly on random q rows and f16 K
 * and V caches: calls of 1..3 rows at positions 0..n_ctx-1, in step mode and not, on one
 * thread and split over two and three (ith 0..nth-1 called in turn); its outputs are
 * compared with cpu-generic's. The same program runs the prelude's softmax_row alone on
 * rows of 13 lengths from 1 to 2999 (vector tails of 1 to 15 keys; exps that underflow to
 * subnormals and to 0, -inf, signed zeros) and softmax_exp on -110..95 and a NaN: all of it
 * must be the interpreter's bits (bn_softmax_exp, the 8-lane sum). A target this host
 * cannot run is skipped, saying so. */
#include "testutil.h"

#include "cg_cpu.h"
#include "ir.h"
#include "rt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The program: model.c with the runtime functions it names stubbed, then (harness_main:
 * KV width, q width, the kernel's name) the attention kernel on the K and V caches and q
 * rows it reads (argv[1]), each case's outputs to argv[2]. */
static const char harness_src[] =
	"#include \"model.c\"\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n";
static const char harness_main[] =
	"enum { T_CTX = 160, ROWS = 3, T_KW = %d, T_QW = %d, SX_N = %d, SX_ROWS = %d };\n"
	"static const int64_t sx_len[] = {%s};\n"
	"#define ATTN %s\n"
	"int main(int argc, char **argv)\n{\n"
	"\tstatic uint16_t K[T_CTX * T_KW], V[T_CTX * T_KW];\n"
	"\tstatic float q[ROWS * T_QW], y[ROWS * T_QW], sc[T_QW * T_CTX];\n"
	"\tFILE *in, *out;\n"
	"\tif (argc < 3 || !(in = fopen(argv[1], \"rb\")) || fread(K, sizeof K, 1, in) != 1 ||\n"
	"\t    fread(V, sizeof V, 1, in) != 1 || fread(q, sizeof q, 1, in) != 1 || !(out = fopen(argv[2], \"wb\")))\n"
	"\t\treturn 2;\n"
	"\tstatic const int32_t at[][ROWS] = {{0}, {1}, {7}, {33}, {63}, {64}, {T_CTX - 1}, {5, 6}, {30, 31, 32}, {0, 1, 2}, {61, 62, 63}, {126, 127, 128}};\n"
	"\tstatic const int rows[] = {1, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3};\n"
	"\tfor (size_t c = 0; c < sizeof rows / sizeof rows[0]; c++)\n"
	"\t\tfor (int st = 0; st < 2; st++)\n"
	"\t\t\tfor (int nth = 1; nth <= 3; nth++) {\n"
	"\t\t\t\tint8_t step[ROWS] = {(int8_t)st, (int8_t)st, (int8_t)st};\n"
	"\t\t\t\tmemset(y, 0, sizeof y);\n"
	"\t\t\t\tAttnArg a = {q, K, V, sc, y, rows[c], at[c], NULL, T_CTX, 0x1.6a09e6p-4f, step};\n"
	"\t\t\t\tfor (int ith = 0; ith < nth; ith++)\n"
	"\t\t\t\t\tATTN(&a, ith, nth);\n"
	"\t\t\t\tif (fwrite(y, sizeof y, 1, out) != 1)\n"
	"\t\t\t\t\treturn 3;\n"
	"\t\t\t}\n"
	"\tif (fclose(out) != 0)\n"
	"\t\treturn 3;\n"
	"\t/* the softmax alone (softmax_sx's rows) and softmax_exp of each input */\n"
	"\tstatic float sx[SX_N], sw[SX_N];\n"
	"\tif (argc < 5 || !(in = fopen(argv[3], \"rb\")) || fread(sx, sizeof sx, 1, in) != 1 || !(out = fopen(argv[4], \"wb\")))\n"
	"\t\treturn 2;\n"
	"\tfclose(in);\n"
	"\tfor (int r = 0; r < SX_ROWS; r++)\n"
	"\t\tfor (int st = 0; st < 2; st++) {\n"
	"\t\t\tconst int64_t n = sx_len[r];\n"
	"\t\t\tfloat mx = -INFINITY;\n"
	"\t\t\tfor (int64_t j = 0; j < n; j++)\n"
	"\t\t\t\tmx = max_score(mx, sx[j]);\n"
	"\t\t\tmemcpy(sw, sx, sizeof sw);\n"
	"\t\t\tsoftmax_row(sw, n, mx, st);\n"
	"\t\t\tif (fwrite(sw, sizeof sw[0], (size_t)n + 1, out) != (size_t)n + 1)\n"
	"\t\t\t\treturn 3;\n"
	"\t\t}\n"
	"\tfor (int j = 0; j < SX_N; j++)\n"
	"\t\tsw[j] = softmax_exp(sx[j]);\n"
	"\tif (fwrite(sw, sizeof sw, 1, out) != 1)\n"
	"\t\treturn 3;\n"
	"\treturn fclose(out) != 0 ? 3 : 0;\n}\n";

/* The softmax alone: rows of the first sx_len[r] of SX_N scores (their max subtracted as
 * the kernels do), in step mode and not, then softmax_exp of all SX_N; the scores from
 * SX_ROW_END on are for softmax_exp only (a NaN among them). */
enum { SX_N = 4096, SX_ROWS = 13, SX_ROW_END = 3000 };
static const int sx_len[SX_ROWS] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000, 2999};

typedef enum { NEED_ANY, NEED_AVX2, NEED_AVX512 } Need;

/* The attention kernel of target's model.c run by the program on in_path; its outputs
 * (malloc'd, *n bytes), or the test skips when the host cannot run the target. */
static uint8_t *run_target(const char *model, const char *target, Need need,
			   const char *in_path, size_t *n, char *kname, size_t kn, const char *sx_in,
			   uint8_t **sx_out, size_t *sx_n)
{
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	bool avx2 = f.avx2 && f.fma && f.f16c;
	bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
	if ((need == NEED_AVX2 && !avx2) || (need == NEED_AVX512 && !avx512)) {
		print_message("skipped: %s: this host lacks its instructions%s\n", target, tu_mask_note());
		skip();
	}
	char dir[64];
	snprintf(dir, sizeof dir, "attn-%s", target);
	char *src = tu_emit_model_c(dir, model, target);
	const char *at = strstr(src, "\nstatic void attn");
	assert_non_null(at);
	at += strlen("\nstatic void ");
	size_t len = strcspn(at, "(");
	assert_true(len < kn);
	memcpy(kname, at, len);
	kname[len] = 0;
	const char *h = strstr(kname, "_h"), *kv = strstr(kname, "_kv"), *hd = strstr(kname, "_hd");
	assert_true(h && kv && hd);
	int nh = atoi(h + 2), nkv = atoi(kv + 3), hdim = atoi(hd + 3);
	assert_true(nh > 0 && nkv > 0 && hdim > 0);
	assert_true(nkv * hdim <= 128 && nh * hdim <= 512); /* write_input's shapes */

	const char *d = tu_tmp(dir);
	char path[1300];
	snprintf(path, sizeof path, "%s/attn_test.c", d);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "%s%s", harness_src, tu_model_c_stubs);
	char lens[256] = "";
	for (size_t o = 0, i = 0; i < SX_ROWS; i++)
		o += (size_t)snprintf(lens + o, sizeof lens - o, "%s%d", i ? ", " : "", sx_len[i]);
	fprintf(fp, harness_main, nkv * hdim, nh * hdim, SX_N, SX_ROWS, lens, kname);
	assert_int_equal(fclose(fp), 0);
	const CgCpuTarget *ct = cg_cpu_target(target);
	assert_non_null(ct);
	char flags[512] = "";
	for (size_t o = 0, i = 0; ct->cflags && ct->cflags[i]; i++)
		o += (size_t)snprintf(flags + o, sizeof flags - o, " %s", ct->cflags[i]);
	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	char out[1300], sout[1300];
	snprintf(out, sizeof out, "%s/attn.out", d);
	snprintf(sout, sizeof sout, "%s/softmax.out", d);
	free(tu_run_ok(0, "cd '%s' && %s -std=c11 -O2 -ffp-contract=off -D_GNU_SOURCE%s -I '%s/../../runtime' "
			  "-o attn_test attn_test.c -lm -lpthread && ./attn_test '%s' '%s' '%s' '%s'",
		       d, cc, flags, tu_data("."), in_path, out, sx_in, sout));
	uint8_t *got = tu_read_file(out, n);
	assert_non_null(got);
	*sx_out = tu_read_file(sout, sx_n);
	assert_non_null(*sx_out);
	return got;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static double u01(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) * 0x1p-53;
}

/* Half the values of ordinary size, half spread over 2^-20 .. 2^12 (most of f16's range).
 * (An order of the double sums other than the reference's would rarely show here: each q.K
 * and .V sum is rounded to float after it. What this catches is a lane, element, head or
 * key taken for another, a missed tail, a wrong split over threads.) */
static float wide(void)
{
	double v = u01() < 0.5 ? (u01() - 0.5) * 6.0 : ldexp(1.0 + u01(), (int)(u01() * 32.0) - 20);
	return (float)(u01() < 0.5 ? -v : v);
}

/* The caches and q rows every program reads: f16 K and V of 160 positions of the widest
 * shape here (KV width 128), q rows of 3 x 512 (a program reads the first K, V and q of
 * its own widths). */
static const char *write_input(void)
{
	enum { CTX = 160, KW = 128, Q = 3 * 512 };
	static uint16_t kv[2 * CTX * KW];
	static float q[Q];
	rng = 0x2545f4914f6cdd1dull;
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
		kv[i] = bn_f32_to_f16(wide());
	for (size_t i = 0; i < Q; i++)
		q[i] = wide();
	const char *path = tu_tmp("attn.in");
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(kv, sizeof kv, 1, f), 1);
	assert_int_equal(fwrite(q, sizeof q, 1, f), 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* The softmax's scores: ordinary ones, some of 2^-30 .. 2^8, some far below the rest
 * (their exp 0 or subnormal once the max is off), -inf, both zeros, a subnormal; from
 * SX_ROW_END on (softmax_exp only) -110 .. 95 evenly (subnormal results, the overflow
 * edge) and a NaN. */
static float sx[SX_N];
static const char *write_sx_input(void)
{
	rng = 0x9e3779b97f4a7c15ull;
	for (int j = 0; j < SX_ROW_END; j++) {
		double u = u01();
		sx[j] = (float)(u < 0.6 ? (u01() - 0.5) * 60.0 : u < 0.8 ? wide() : -100.0 - u01() * 1e4);
	}
	sx[3] = -0.0f, sx[4] = 0.0f, sx[5] = -INFINITY, sx[6] = 0x1p-140f, sx[11] = -FLT_MAX;
	for (int j = SX_ROW_END; j < SX_N; j++)
		sx[j] = (float)(-110.0 + 205.0 * (j - SX_ROW_END) / (SX_N - SX_ROW_END - 1));
	sx[SX_N - 7] = NAN;
	const char *path = tu_tmp("softmax.in");
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(sx, sizeof sx, 1, f), 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* What the harness writes for sx, by the interpreter's functions: op_attention's softmax
 * (bn_softmax_exp, the sum in 8 double lanes and its tree) and bn_softmax_exp (malloc'd,
 * *n bytes). */
static uint8_t *softmax_want(size_t *n)
{
	size_t cap = 2 * SX_N * SX_ROWS + SX_N, k = 0;
	float *o = malloc(cap * sizeof(float));
	assert_non_null(o);
	for (int r = 0; r < SX_ROWS; r++)
		for (int st = 0; st < 2; st++) {
			float mx = -INFINITY;
			for (int j = 0; j < sx_len[r]; j++)
				mx = fmaxf(mx, sx[j]);
			double l[8] = {0};
			for (int j = 0; j < sx_len[r]; j++) {
				o[k + j] = bn_softmax_exp(sx[j] - mx);
				l[j % 8] += (double)o[k + j];
			}
			float inv = (float)(1.0 / (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))));
			for (int j = 0; j < sx_len[r]; j++)
				o[k + j] = st ? bn_round_f16(o[k + j] * inv) : o[k + j] * inv;
			o[k + sx_len[r]] = sx[sx_len[r]]; /* the score after the row, untouched */
			k += (size_t)sx_len[r] + 1;
		}
	for (int j = 0; j < SX_N; j++)
		o[k++] = bn_softmax_exp(sx[j]);
	*n = k * sizeof(float);
	return (uint8_t *)o;
}

/* A synthetic model of heads q heads of head_dim hd over kv KV heads (its path, valid until
 * the next call). */
static const char *synth_model(int heads, int kv, int hd)
{
	static char path[1024];
	char name[64];
	snprintf(name, sizeof name, "attn-h%d-kv%d-hd%d.gguf", heads, kv, hd);
	snprintf(path, sizeof path, "%s", tu_tmp(name));
	free(tu_run_ok(0, "'%s' mkmodel --hidden %d --heads %d --kv-heads %d --ffn 256 --layers 1 "
			  "-o '%s'",
		       tu_bitnetc(), heads * hd, heads, kv, path));
	return path;
}

/* The first float at which a and b (n bytes each) differ. */
static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	size_t i = 0;
	while (i < n && a[i] == b[i])
		i++;
	return i / sizeof(float);
}

static void check1(const char *model, const char *target, Need need)
{
	const char *in = write_input(), *sin = write_sx_input();
	char ref_name[96], got_name[96];
	size_t nr, ng, nsr, nsg, nw;
	uint8_t *sref, *sgot;
	uint8_t *ref = tu_hold(run_target(model, "cpu-generic", NEED_ANY, in, &nr, ref_name,
					  sizeof ref_name, sin, &sref, &nsr));
	tu_hold(sref);
	uint8_t *got = tu_hold(run_target(model, target, need, in, &ng, got_name, sizeof got_name,
					  sin, &sgot, &nsg));
	tu_hold(sgot);
	uint8_t *want = tu_hold(softmax_want(&nw));
	assert_int_equal(nsr, nw);
	if (memcmp(sref, want, nw) != 0)
		fail_msg("cpu-generic's softmax: float %zu differs from the interpreter's", first_diff(sref, want, nw));
	assert_int_equal(nsg, nw);
	if (memcmp(sgot, want, nw) != 0)
		fail_msg("%s's softmax: float %zu differs from the interpreter's", target, first_diff(sgot, want, nw));
	assert_int_equal(nr, ng);
	assert_true(nr > 0);
	if (memcmp(ref, got, nr) != 0) {
		size_t i = 0;
		while (i < nr && ref[i] == got[i])
			i++;
		fail_msg("%s's %s: output byte %zu differs from cpu-generic's %s", target, got_name, i,
			 ref_name);
	}
	printf("%s's %s: cpu-generic's %s bit for bit (%zu bytes of outputs)\n", target, got_name,
	       ref_name, nr);
}

static void check(const char *target, Need need)
{
	check1("golden/models/tiny-b158-i2_s.gguf", target, need);
	check1(synth_model(16, 4, 32), target, need); /* groups of 4, split 5 / 5 / 6 heads */
	check1(synth_model(16, 8, 16), target, need);
	check1(synth_model(16, 4, 24), target, need); /* AVX2's q.K tail of 8 elements */
}

static void test_avx2(void **state)
{
	(void)state;
	check("cpu-avx2", NEED_AVX2);
}

static void test_avx512(void **state)
{
	(void)state;
	check("cpu-avx512", NEED_AVX512);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_avx2, tu_teardown),
		cmocka_unit_test_teardown(test_avx512, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
