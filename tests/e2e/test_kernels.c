/* test_kernels.c - every CPU kernel family this host can run (portable C, AVX2, AVX-512
 * VNNI; NEON under qemu-user when the aarch64 cross tools are here) x every weight
 * layout (gguf, i2s_x16) x batch templates and tiles with ragged edges, each compiled
 * into a program and checked against the interpreter run with the same forward calls
 * (<= 1e-4 relative per row; the ternary sums themselves are exact). Families the
 * host lacks are skipped with a message. */
#include "testutil.h"

#include "frontend.h"
#include "pass.h"
#include "rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 13 prompt tokens of the golden models' vocabulary, then 2 generated. */
static const int32_t prompt[] = {496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114};
enum { N_PROMPT = 13, N_GEN = 2 };

typedef struct {
	IrGraph *g;
	GgufFile *f;
	int nv;
} Model;

static void model_open(Model *m, const char *path)
{
	BnErr e = {0};
	if (!(m->f = gguf_open(path, &e)) || !(m->g = bnm_load(m->f, &e)) ||
	    pass_run(m->g, "dce", NULL, &e))
		fail_msg("%s", e.msg);
	m->nv = (int)m->g->hp.n_vocab;
}

static void model_close(Model *m)
{
	ir_graph_free(m->g);
	gguf_close(m->f);
}

/* Runs prog (-ub ub) on the prompt, greedy for N_GEN more; returns all logits rows.
 * wrap goes before the program (an emulator and its options, or ""). */
static float *run_with(const char *wrap, const char *prog, int ub, int nv)
{
	const char *lf = tu_tmp("kern_logits.f32");
	unlink(lf);
	char ids[256];
	size_t len = 0;
	for (int i = 0; i < N_PROMPT; i++)
		len += (size_t)snprintf(ids + len, sizeof ids - len, "%s%d", i ? "," : "", prompt[i]);
	char *log = NULL;
	/* under qemu-user a run is bounded: a program stuck in the emulator (seen once, in
	 * qemu 7.2's futex emulation under load) is retried once instead of hanging the suite */
	const char *bound = *wrap ? "timeout 300 " : "";
	int rc = tu_run(&log, "%s%s '%s' --tokens %s -n %d --temp 0 --ignore-eos -t 2 -ub %d "
			      "--logits-out '%s'",
			bound, wrap, prog, ids, N_GEN, ub, lf);
	if (rc == 124 && *wrap) {
		printf("%s under %s: timed out after 300 s; running it once more\n", prog, wrap);
		free(log);
		log = NULL;
		rc = tu_run(&log, "%s%s '%s' --tokens %s -n %d --temp 0 --ignore-eos -t 2 -ub %d "
				  "--logits-out '%s'",
			    bound, wrap, prog, ids, N_GEN, ub, lf);
	}
	if (rc)
		fail_msg("%s: exit %d: %s", prog, rc, log ? log : "");
	free(log);
	size_t sz;
	float *x = tu_read_file(lf, &sz);
	assert_non_null(x);
	assert_int_equal(sz, (size_t)(N_PROMPT + N_GEN) * (size_t)nv * sizeof(float));
	return x;
}

static float *run(const char *prog, int ub, int nv)
{
	return run_with("", prog, ub, nv);
}

/* The kernel kind a variant asks for: its kernel, else simd (portable on the GGUF layout). */
static const char *kind_of(const char *layout, const char *kernel)
{
	return kernel ? kernel : strcmp(layout, "gguf") == 0 ? "portable" : "simd";
}

/* The program's --info says every ternary matmul of both forwards (t1, t16) runs the
 * kernel kind asked for. */
static void check_kinds(const Model *m, const char *wrap, const char *prog, const char *kernel)
{
	int n = 0;
	for (int i = 0; i < m->g->n_nodes; i++)
		n += m->g->nodes[i].op == IR_OP_TERNARY_MATMUL;
	char *log = NULL;
	if (tu_run(&log, "%s '%s' --info", wrap, prog))
		fail_msg("%s --info: %s", prog, log ? log : "");
	char want[64];
	snprintf(want, sizeof want, "%d %s%s", n, kernel, strcmp(kernel, "lut_portable") ? "," : "");
	const char *p = strstr(log, want);
	if (!p || !strstr(p + 1, want))
		fail_msg("%s --info: want \"%s\" for both forwards in: %s", prog, want, log);
	free(log);
}

/* The interpreter with the prompt in one call (ub > 1; the templates below make the
 * program do the same) or token by token, then the generated tokens one per call. */
static double vs_interp(Model *m, const float *got, int ub)
{
	BnErr e = {0};
	IrInterp *it = ir_interp_new(m->g, 64, &e);
	if (!it)
		fail_msg("%s", e.msg);
	ir_interp_set_threads(it, 2);
	float *ref = malloc((size_t)N_PROMPT * (size_t)m->nv * sizeof(float));
	double worst = 0;
	int row = 0;
	int32_t toks[N_PROMPT + N_GEN];
	memcpy(toks, prompt, sizeof prompt);
	for (int off = 0; off < N_PROMPT + N_GEN;) {
		int c = off >= N_PROMPT ? 1 : ub > 1 ? N_PROMPT : 1;
		if (off >= N_PROMPT)
			toks[off] = (int32_t)rt_argmax(got + (size_t)(off - 1) * (size_t)m->nv, m->nv);
		if (ir_interp_eval(it, toks + off, c, ref, &e))
			fail_msg("%s", e.msg);
		for (int r = 0; r < c; r++, row++) {
			const float *a = got + (size_t)row * (size_t)m->nv, *b = ref + (size_t)r * (size_t)m->nv;
			double md = 0, mx = 1;
			for (int i = 0; i < m->nv; i++) {
				md = fmax(md, fabs((double)a[i] - (double)b[i]));
				mx = fmax(mx, fabs((double)b[i]));
			}
			if (md / mx > 1e-4)
				fail_msg("row %d: program vs interpreter %.3g relative (> 1e-4)", row, md / mx);
			worst = fmax(worst, md / mx);
		}
		off += c;
	}
	free(ref);
	ir_interp_free(it);
	return worst;
}

/* A pipeline: the default passes, weights in layout (or left alone), templates {1, 16}
 * (the 13-token prompt is one partial call of the 16 template), and on every ternary
 * matmul a tile when tile is not NULL ("lut_tile" for the LUT kernels) and the kernel
 * when kernel is not NULL. */
static void write_pipeline(const char *path, const char *layout, const char *tile,
			   const char *kernel)
{
	bool lut = kernel && strncmp(kernel, "lut", 3) == 0;
	char text[2048];
	snprintf(text, sizeof text,
		 "local bitnetc = require('bitnetc')\n"
		 "local p = bitnetc.pipeline()\n"
		 "p:add('verify')\n"
		 "p:add('dce')\n"
		 "p:add('fuse')\n"
		 "p:add('dce')\n"
		 "p:add('permute_weights', {layout = '%s'})\n"
		 "p:add('batch_templates', {sizes = {1, 16}})\n"
		 "p:add(function(g)\n"
		 "  for n in g:nodes() do\n"
		 "    if n.op == 'ternary_matmul' and %s then n:set_attr('%s', %s) end\n"
		 "    if n.op == 'ternary_matmul' and %s then n:set_attr('kernel', '%s') end\n"
		 "  end\n"
		 "end, 'tiles')\n"
		 "return p\n",
		 layout, tile ? "true" : "false", lut ? "lut_tile" : "tile", tile ? tile : "nil",
		 kernel ? "true" : "false", kernel ? kernel : "");
	assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
}

static void test_families(void **state)
{
	(void)state;
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	bool avx2 = f.avx2 && f.fma && f.f16c;
	bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
	bool vbmi = avx512 && f.avx512_vbmi;
	static const struct {
		const char *target, *layout, *tile; /* tile: rows, tokens with ragged edges */
		const char *kernel;                  /* NULL: the default */
		int need;                            /* 0 any, 1 avx2, 2 avx512, 3 avx512 vbmi */
	} v[] = {
		{"cpu-generic", "gguf", NULL, NULL, 0},
		{"cpu-generic", "i2s_x16", NULL, NULL, 0},
		{"cpu-generic", "i2s_x16", NULL, "lut", 0},
		{"cpu-avx2", "i2s_x16", NULL, NULL, 1},
		{"cpu-avx2", "i2s_x16", "{32, 3}", NULL, 1},
		{"cpu-avx2", "i2s_x16", NULL, "lut_portable", 1},
		{"cpu-avx512", "i2s_x16", NULL, NULL, 2},
		{"cpu-avx512", "i2s_x16", "{48, 5}", NULL, 2},
		{"native", "i2s_x16", NULL, NULL, 0},
		{"native", "i2s_x16", NULL, "lut", 3},
		{"native", "i2s_x16", "{32, 2}", "lut", 3},
		{"native", "i2s_x16", "{16, 3}", "lut", 3},
	};
	char gguf[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	Model m = {0};
	model_open(&m, gguf);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		if ((v[i].need == 1 && !avx2) || (v[i].need == 2 && !avx512) ||
		    (v[i].need == 3 && !vbmi)) {
			printf("skip %s %s %s: this CPU lacks its instructions\n", v[i].target,
			       v[i].layout, v[i].kernel ? v[i].kernel : "");
			continue;
		}
		char lua[4096], prog[4096];
		snprintf(lua, sizeof lua, "%s", tu_tmp("kern_pipeline.lua"));
		snprintf(prog, sizeof prog, "%s", tu_tmp("kern_prog"));
		write_pipeline(lua, v[i].layout, v[i].tile, v[i].kernel);
		char *log = NULL;
		if (tu_run(&log, "'%s' build '%s' -o '%s' --target %s --pipeline '%s'", tu_bitnetc(),
			   gguf, prog, v[i].target, lua))
			fail_msg("build %s %s: %s", v[i].target, v[i].layout, log ? log : "");
		free(log);
		check_kinds(&m, "", prog, kind_of(v[i].layout, v[i].kernel));
		for (int ub = 1; ub <= 16; ub += 15) {
			float *got = run(prog, ub, m.nv);
			double d = vs_interp(&m, got, ub);
			printf("%-11s %-8s %-12s tile %-8s calls of %2d: vs interpreter %.2g rel\n",
			       v[i].target, v[i].layout, kind_of(v[i].layout, v[i].kernel),
			       v[i].tile ? v[i].tile : "default", ub > 1 ? N_PROMPT : 1, d);
			free(got);
		}
	}
	model_close(&m);
}

/* The NEON kernels on any host: each variant cross-compiled for aarch64 (Debian's
 * aarch64-linux-gnu-gcc) and run under qemu-user, checked as test_families checks (calls
 * of 1 and of 13 tokens). qemu's default CPU has the dot product; on an emulated
 * Cortex-A53 (armv8.0, no dotprod) the cpu-neon program must give the same logits (it
 * has no sdot, which would be SIGILL there) and cpu-neon-dot must refuse to start.
 * Skipped, passing, without the cross tools (tools/setup.sh installs them). */
static void test_neon_qemu(void **state)
{
	(void)state;
	static const char sysroot[] = "/usr/aarch64-linux-gnu"; /* Debian's cross libc */
	char *log = NULL;
	char gguf[4096], wrap[256], wrap_a53[300];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	/* x86-64's own compiler cannot build it: the error says to name a cross compiler */
	if (tu_run(NULL, "[ \"$(uname -m)\" = x86_64 ] && command -v cc >/dev/null") == 0) {
		int rc = tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-neon --cc cc",
				tu_bitnetc(), gguf, tu_tmp("neon_host_prog"));
		if (rc == 0 || !log || !strstr(log, "--cc aarch64-linux-gnu-gcc"))
			fail_msg("cpu-neon with the host's cc: want a failure that names a cross "
				 "compiler, got exit %d: %s", rc, log ? log : "");
		free(log);
	}
	if (tu_run(&log, "command -v aarch64-linux-gnu-gcc && command -v qemu-aarch64 && "
			 "test -e %s/lib/ld-linux-aarch64.so.1", sysroot) != 0) {
		printf("skip: NEON under qemu needs aarch64-linux-gnu-gcc, qemu-aarch64 and %s "
		       "(apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)\n",
		       sysroot);
		free(log);
		return;
	}
	free(log);
	static const struct {
		const char *target, *layout, *tile; /* tile: rows, tokens with ragged edges */
		const char *kernel;
	} v[] = {
		{"cpu-generic", "gguf", NULL, NULL}, /* the portable code, for aarch64 */
		{"cpu-neon", "i2s_x16", NULL, NULL},
		{"cpu-neon", "i2s_x16", "{48, 2}", NULL},
		{"cpu-neon-dot", "i2s_x16", NULL, NULL},
		{"cpu-neon-dot", "i2s_x16", "{48, 2}", NULL}, /* 16 and 8 groups by 3; 13 by 2 */
		{"cpu-neon", "i2s_x16", NULL, "lut"},
		{"cpu-neon", "i2s_x16", "{16, 1}", "lut"},
	};
	snprintf(wrap, sizeof wrap, "qemu-aarch64 -L %s", sysroot);
	snprintf(wrap_a53, sizeof wrap_a53, "qemu-aarch64 -cpu cortex-a53 -L %s", sysroot);
	Model m = {0};
	model_open(&m, gguf);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char lua[4096], prog[4096];
		snprintf(lua, sizeof lua, "%s", tu_tmp("neon_pipeline.lua"));
		snprintf(prog, sizeof prog, "%s", tu_tmp("neon_prog"));
		write_pipeline(lua, v[i].layout, v[i].tile, v[i].kernel);
		if (tu_run(&log, "'%s' build '%s' -o '%s' --target %s --cc aarch64-linux-gnu-gcc "
				 "--pipeline '%s'",
			   tu_bitnetc(), gguf, prog, v[i].target, lua))
			fail_msg("build %s %s: %s", v[i].target, v[i].layout, log ? log : "");
		free(log);
		check_kinds(&m, wrap, prog, kind_of(v[i].layout, v[i].kernel));
		for (int ub = 1; ub <= 16; ub += 15) {
			float *got = run_with(wrap, prog, ub, m.nv);
			double d = vs_interp(&m, got, ub);
			printf("qemu %-12s %-8s %-4s tile %-8s calls of %2d: vs interpreter %.2g rel\n",
			       v[i].target, v[i].layout, kind_of(v[i].layout, v[i].kernel),
			       v[i].tile ? v[i].tile : "default", ub > 1 ? N_PROMPT : 1, d);
			free(got);
		}
		if (strcmp(v[i].target, "cpu-neon") == 0 && !v[i].tile && !v[i].kernel) {
			float *got = run_with(wrap_a53, prog, 16, m.nv);
			printf("qemu %-12s on cortex-a53 (no dotprod): vs interpreter %.2g rel\n",
			       v[i].target, vs_interp(&m, got, 16));
			free(got);
		} else if (strcmp(v[i].target, "cpu-neon-dot") == 0 && !v[i].tile && !v[i].kernel) {
			int rc = tu_run(&log, "%s '%s' --tokens 496 -n 1", wrap_a53, prog);
			if (rc == 0 || !log || !strstr(log, "dotprod"))
				fail_msg("cpu-neon-dot on cortex-a53: want a refusal naming dotprod, "
					 "got exit %d: %s", rc, log ? log : "");
			printf("qemu %-12s on cortex-a53: refused, exit %d\n", v[i].target, rc);
			free(log);
		}
	}
	model_close(&m);
}

/* A program built for instructions this CPU lacks says so and exits non-zero. The
 * check runs before any model code, so only a host without AVX-512 can show it. */
static void test_cpu_check(void **state)
{
	(void)state;
	char missing[256];
	assert_int_equal(rt_cpu_require("", missing, sizeof missing), 0);
	assert_int_equal(rt_cpu_require("no_such_feature", missing, sizeof missing), -1);
	assert_string_equal(missing, "no_such_feature");
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	assert_int_equal(rt_cpu_require("avx2", missing, sizeof missing), f.avx2 ? 0 : -1);
	/* aarch64's names are known everywhere (not "unknown"), present only there */
	assert_int_equal(rt_cpu_require("neon dotprod", missing, sizeof missing),
			 f.neon && f.dotprod ? 0 : -1);
	if (!f.neon)
		assert_string_equal(missing, "neon dotprod");
	/* the OS's part: only amx_tile asks for anything (the tile state, granted exactly
	 * where the CPU has AMX and Linux enables it) */
	char why[256];
	assert_int_equal(rt_cpu_enable("avx2 fma avx512_vnni", why, sizeof why), 0);
	int amx = rt_cpu_enable("avx512f amx_tile amx_int8", why, sizeof why);
	printf("AMX tile state from the OS: %s\n", amx ? why : "granted");
	if (f.amx_tile && f.amx_int8)
		assert_int_equal(amx, 0);
	else
		assert_int_equal(amx, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_families),
		cmocka_unit_test(test_neon_qemu),
		cmocka_unit_test(test_cpu_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
