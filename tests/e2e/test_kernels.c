/* test_kernels.c - every CPU kernel family this host can run (portable C, AVX2, AVX-512
 * VNNI; AMX, in software where the CPU lacks it; NEON under qemu-user when the aarch64
 * cross tools are here) x every weight layout (gguf, i2s_x16, t5_x16) x batch templates and
 * tiles with ragged edges, each compiled into a program and checked against the interpreter run
 * with the same forward calls (<= 1e-4 relative per row; the ternary sums themselves are
 * exact). A variant whose instructions the host lacks (or BITNETC_CPU_MASK hides) is
 * skipped with cmocka's skip() and a message; the others run. Also --tune on cpu-amx: the
 * AMX blocks timed (emulated here), recorded, applied and read back. */
#include "testutil.h"

#include "cg_cpu.h"
#include "frontend.h"
#include "pass.h"
#include "rt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 13 prompt tokens of the golden models' vocabulary, then 2 generated; a longer prompt of
 * 37 for forwards that tile tokens by 16 (the AMX kernels). */
typedef struct {
	const int32_t *ids;
	int n;
} Prompt;
static const int32_t ids13[] = {496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114};
static const int32_t ids37[] = {496, 84,  104, 101, 32,	 113, 117, 105, 99,  107,
				32,  98,  114, 111, 119, 110, 32,  102, 111, 120,
				32,  106, 117, 109, 112, 115, 32,  111, 118, 101,
				114, 32,  116, 104, 101, 32,  108};
static const Prompt prompt = {ids13, 13}, prompt37 = {ids37, 37};
enum { N_GEN = 2 };

/* Runs prog (-ub ub) on prompt p, greedy for N_GEN more; returns all logits rows.
 * wrap goes before the program (an emulator and its options, or ""). */
static float *run_with(const char *wrap, const char *prog, const Prompt *p, int ub, int nv)
{
	const char *lf = tu_tmp("kern_logits.f32");
	unlink(lf);
	char ids[512];
	size_t len = 0;
	for (int i = 0; i < p->n; i++)
		len += (size_t)snprintf(ids + len, sizeof ids - len, "%s%d", i ? "," : "", p->ids[i]);
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
		tu_fail_log(log, "%s: exit %d", prog, rc);
	free(log);
	size_t sz;
	float *x = tu_hold(tu_read_file(lf, &sz));
	assert_non_null(x);
	assert_int_equal(sz, (size_t)(p->n + N_GEN) * (size_t)nv * sizeof(float));
	return x;
}

static float *run(const char *prog, int ub, int nv)
{
	return run_with("", prog, &prompt, ub, nv);
}

/* The kernel kind a variant asks for: its kernel, else simd (portable on the GGUF layout). */
static const char *kind_of(const char *layout, const char *kernel)
{
	return kernel ? kernel : strcmp(layout, "gguf") == 0 ? "portable" : "simd";
}

/* The program's --info says every ternary matmul of each forward runs the kernel kind
 * asked for: k1 in the one-token forward, kn in the others. */
static void check_kinds2(const TuModel *m, const char *wrap, const char *prog, const char *k1,
			 const char *kn)
{
	int n = 0;
	for (int i = 0; i < m->g->n_nodes; i++)
		n += m->g->nodes[i].op == IR_OP_TERNARY_MATMUL;
	char *log = NULL;
	if (tu_run(&log, "%s '%s' --info", wrap, prog))
		tu_fail_log(log, "%s --info", prog);
	const char *line = strstr(log, "ternary matmul kernels per forward: ");
	if (!line)
		tu_fail_log(log, "%s --info: no kernel counts in", prog);
	line += strlen("ternary matmul kernels per forward: ");
	int forwards = 0;
	/* "t1: 28 simd, 0 lut, ...; t16: ..." up to the end of the line */
	for (const char *p = line; *p == 't' && forwards < 8; forwards++) {
		int size = atoi(p + 1);
		size_t len = strcspn(p, ";\n");
		char items[512], want[64];
		snprintf(items, sizeof items, " %.*s,", (int)len, p);
		snprintf(want, sizeof want, " %d %s,", n, size == 1 ? k1 : kn);
		if (!strstr(items, want))
			tu_fail_log(log, "%s --info: want \"%d %s\" in forward t%d", prog, n,
				    size == 1 ? k1 : kn, size);
		p += len;
		if (*p == ';')
			p += 2;
	}
	if (forwards != 2)
		tu_fail_log(log, "%s --info: want two forwards, got %d", prog, forwards);
	free(log);
}

static void check_kinds(const TuModel *m, const char *wrap, const char *prog, const char *kernel)
{
	check_kinds2(m, wrap, prog, kernel, kernel);
}

/* The program's rows against the interpreter: the prompt in the calls the program makes
 * with -ub ub (one call when the template holds it) or token by token, then the generated
 * tokens one per call. */
static double vs_interp_p(TuModel *m, const Prompt *p, const float *got, int ub)
{
	TuCalls one = {1, {1}}, calls = {2, {1, ub}};
	return tu_vs_interp(m, got, p->n + N_GEN, p->ids, p->n, ub > 1 ? &calls : &one);
}

static double vs_interp(TuModel *m, const float *got, int ub)
{
	return vs_interp_p(m, &prompt, got, ub);
}

/* A pipeline: the default passes, weights in layout (or left alone), templates sizes
 * ("1, 16": the 13-token prompt is one partial call of the 16 template), and on every
 * ternary matmul attribute tile_attr = tile when tile is not NULL and the kernel when
 * kernel is not NULL. */
static void write_pipeline_as(const char *path, const char *layout, const char *sizes,
			      const char *tile_attr, const char *tile, const char *kernel)
{
	char text[2048];
	snprintf(text, sizeof text,
		 "local bitnetc = require('bitnetc')\n"
		 "local p = bitnetc.pipeline()\n"
		 "p:add('verify')\n"
		 "p:add('dce')\n"
		 "p:add('fuse')\n"
		 "p:add('dce')\n"
		 "p:add('permute_weights', {layout = '%s'})\n"
		 "p:add('batch_templates', {sizes = {%s}})\n"
		 "p:add(function(g)\n"
		 "  for n in g:nodes() do\n"
		 "    if n.op == 'ternary_matmul' and %s then n:set_attr('%s', %s) end\n"
		 "    if n.op == 'ternary_matmul' and %s then n:set_attr('kernel', '%s') end\n"
		 "  end\n"
		 "end, 'tiles')\n"
		 "return p\n",
		 layout, sizes, tile ? "true" : "false", tile_attr, tile ? tile : "nil",
		 kernel ? "true" : "false", kernel ? kernel : "");
	assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
}

/* Templates {1, 16}; the tile as "lut_tile" for the LUT kernels, else "tile". */
static void write_pipeline(const char *path, const char *layout, const char *tile,
			   const char *kernel)
{
	bool lut = kernel && strncmp(kernel, "lut", 3) == 0;
	write_pipeline_as(path, layout, "1, 16", lut ? "lut_tile" : "tile", tile, kernel);
}

/* What the host has, as the compiler's native and the programs see it (rt_cpu_detect:
 * BITNETC_CPU_MASK may hide some). */
typedef enum { NEED_ANY, NEED_AVX2, NEED_AVX512, NEED_VBMI, NEED_AMX, NEED_X86 } Need;

static bool host_has(Need n)
{
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	bool avx2 = f.avx2 && f.fma && f.f16c;
	bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
	switch (n) {
	case NEED_ANY: return true;
	case NEED_AVX2: return avx2;
	case NEED_AVX512: return avx512;
	case NEED_VBMI: return avx512 && f.avx512_vbmi;
	case NEED_AMX: return avx512 && f.amx_tile && f.amx_int8;
	case NEED_X86: return f.x86;
	}
	return false;
}

/* Skips the calling test, saying what and why, unless the host has n. */
static void need(Need n, const char *what)
{
	static const char *const names[] = {"", "AVX2 + FMA + F16C", "AVX-512 (F, BW, VL) + VNNI",
					    "AVX-512 VBMI", "AVX-512 VNNI + AMX-INT8", "x86-64"};
	if (host_has(n))
		return;
	print_message("skipped: %s: no %s here%s\n", what, names[n], tu_mask_note());
	skip();
}

/* The kernel families: each variant one cmocka test, skipped where the host lacks it. */
typedef struct {
	const char *target, *layout, *tile; /* tile: rows, tokens with ragged edges */
	const char *kernel;                  /* NULL: the default */
	Need need;
	const char *model; /* mkmodel options of the model, NULL: the tiny golden one */
} Family;
/* t5_x16 chunks hold 20 k: the tiny model's K (256, 768) end in chunks of 4 and 2 trits,
 * these in 5 (640) and 3 (1152), and 1 (384, 1024) */
#define T5_K20 "--hidden 640 --ffn 1152 --heads 10 --kv-heads 5 --layers 1"
#define T5_K4 "--hidden 384 --ffn 1024 --heads 6 --kv-heads 2 --layers 1"
/* arch llama with heads of 256 (Falcon3-1B/7B's head size): attention, RoPE and the KV
 * cache at that width */
#define HEAD256 "--shape tinyllama --hidden 512 --heads 2 --kv-heads 1 --layers 2"
static const Family families[] = {
	{"cpu-generic", "gguf", NULL, NULL, NEED_ANY, NULL},
	{"cpu-generic", "i2s_x16", NULL, NULL, NEED_ANY, NULL},
	{"cpu-generic", "i2s_x16", NULL, "lut", NEED_ANY, NULL},
	{"cpu-avx2", "i2s_x16", NULL, NULL, NEED_AVX2, NULL},
	{"cpu-avx2", "i2s_x16", "{32, 3}", NULL, NEED_AVX2, NULL},
	{"cpu-avx2", "i2s_x16", NULL, "lut_portable", NEED_AVX2, NULL},
	{"cpu-avx512", "i2s_x16", NULL, NULL, NEED_AVX512, NULL},
	{"cpu-avx512", "i2s_x16", "{48, 5}", NULL, NEED_AVX512, NULL},
	{"native", "i2s_x16", NULL, NULL, NEED_ANY, NULL},
	{"native", "i2s_x16", NULL, "lut", NEED_VBMI, NULL},
	{"native", "i2s_x16", "{32, 2}", "lut", NEED_VBMI, NULL},
	{"native", "i2s_x16", "{16, 3}", "lut", NEED_VBMI, NULL},
	{"cpu-generic", "t5_x16", NULL, NULL, NEED_ANY, NULL},
	{"cpu-generic", "t5_x16", NULL, NULL, NEED_ANY, T5_K20},
	{"cpu-avx2", "t5_x16", NULL, NULL, NEED_AVX2, NULL},
	{"cpu-avx2", "t5_x16", "{32, 3}", NULL, NEED_AVX2, NULL},
	{"cpu-avx2", "t5_x16", "{32, 3}", NULL, NEED_AVX2, T5_K20},
	{"cpu-avx2", "t5_x16", NULL, NULL, NEED_AVX2, T5_K4},
	{"cpu-avx512", "t5_x16", NULL, NULL, NEED_AVX512, NULL},
	{"cpu-avx512", "t5_x16", "{48, 5}", NULL, NEED_AVX512, NULL},
	{"cpu-avx512", "t5_x16", "{48, 5}", NULL, NEED_AVX512, T5_K20},
	{"cpu-avx512", "t5_x16", "{32, 1}", NULL, NEED_AVX512, T5_K4},
	{"cpu-avx512", "t5_x16", NULL, "portable", NEED_AVX512, T5_K4},
	{"native", "t5_x16", NULL, NULL, NEED_ANY, NULL},
	{"native", "i2s_x16", NULL, NULL, NEED_ANY, HEAD256},
};
enum { N_FAMILIES = sizeof families / sizeof families[0] };

static void family_name(const Family *v, char *buf, size_t n)
{
	snprintf(buf, n, "family %s %s %s tile %s%s%s", v->target, v->layout,
		 kind_of(v->layout, v->kernel), v->tile ? v->tile : "default",
		 v->model ? " model " : "", v->model ? v->model : "");
}

static void test_family(void **state)
{
	const Family *v = *state;
	char what[128];
	family_name(v, what, sizeof what);
	need(v->need, what);
	char gguf[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	if (v->model) {
		snprintf(gguf, sizeof gguf, "%s", tu_tmp("kern_model.gguf"));
		char *mlog = NULL;
		if (tu_run(&mlog, "'%s' mkmodel --seed 3 %s -o '%s'", tu_bitnetc(), v->model, gguf))
			tu_fail_log(mlog, "mkmodel %s", v->model);
		free(mlog);
	}
	TuModel m = {0};
	tu_model_open(&m, gguf);
	char lua[4096], prog[4096];
	snprintf(lua, sizeof lua, "%s", tu_tmp("kern_pipeline.lua"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("kern_prog"));
	write_pipeline(lua, v->layout, v->tile, v->kernel);
	char *log = NULL;
	if (tu_run(&log, "'%s' build '%s' -o '%s' --target %s --pipeline '%s'", tu_bitnetc(),
		   gguf, prog, v->target, lua))
		tu_fail_log(log, "build %s", what);
	free(log);
	/* native picks AMX tiles for the multi-token forwards where the host has them (the
	 * multiply-add kind only; a LUT kernel stays LUT) */
	const char *k1 = kind_of(v->layout, v->kernel), *kn = k1;
	if (strcmp(v->target, "native") == 0 && strcmp(k1, "simd") == 0 && host_has(NEED_AMX) &&
	    strcmp(v->layout, "i2s_x16") == 0) /* the AMX GEMM reads i2s_x16 only */
		kn = "amx";
	check_kinds2(&m, "", prog, k1, kn);
	for (int ub = 1; ub <= 16; ub += 15) {
		float *got = run(prog, ub, m.nv);
		double d = vs_interp(&m, got, ub);
		printf("%-11s %-8s %-12s tile %-8s calls of %2d: vs interpreter %.2g rel%s%s\n",
		       v->target, v->layout, ub > 1 ? kn : k1, v->tile ? v->tile : "default",
		       ub > 1 ? prompt.n : 1, d, v->model ? " " : "", v->model ? v->model : "");
		tu_free(got);
	}
	tu_model_close(&m);
}

/* cpu-sve on any host: cross-built with Debian's aarch64-linux-gnu-gcc (12 has <arm_sve.h>)
 * and run under qemu-aarch64 at vector lengths of 128, 256 and 512 bits, checked as
 * test_rvv_qemu checks (calls of 1, 7 and 13 tokens: token tiles of 4 and 3, 4 and 2). The
 * tiny model's rows (64 and 192 bytes) are whole steps at 128 and 512 bits; the synthetic
 * ones (rows of 96 and 1056 bytes) end in a partial step at 512 (1.5 and 16.5 steps) and
 * are whole at 256. Heads: f16 (tiny), bf16 and f32 (synthetic). With 3 threads the
 * shares of rows are odd: the GEMV's pairs of rows end in one alone. Also i2s_x16 (the
 * portable families), and CPUs without SVE (cortex-a72, max with sve=off), where cpu-sve
 * must refuse to start. Last, a model with a q8_0 head (portable C on every AArch64
 * target): cpu-sve's logits must be cpu-generic's bit for bit. Skipped without the tools,
 * and while BITNETC_CPU_MASK is on. */
static void test_sve_qemu(void **state)
{
	(void)state;
	static const char sysroot[] = "/usr/aarch64-linux-gnu";
	char *log = NULL;
	if (tu_mask_note()[0]) {
		print_message("skipped: SVE under qemu: nothing here depends on this host's "
			      "features%s\n", tu_mask_note());
		skip();
	}
	char tiny[4096], synth[2][4096];
	snprintf(tiny, sizeof tiny, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	/* x86-64's own compiler cannot build it: model.c says so and the error names the cross
	 * compiler */
	if (tu_run(NULL, "[ \"$(uname -m)\" = x86_64 ] && command -v cc >/dev/null") == 0) {
		int rc = tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-sve --cc cc", tu_bitnetc(),
				tiny, tu_tmp("sve_host_prog"));
		if (rc == 0 || !log || !strstr(log, "--cc aarch64-linux-gnu-gcc") ||
		    !strstr(log, "AArch64 code"))
			tu_fail_log(log, "cpu-sve with the host's cc: want a failure that names a "
					 "cross compiler, got exit %d", rc);
		free(log);
	}
	if (tu_run(&log, "command -v qemu-aarch64 && test -e %s/lib/ld-linux-aarch64.so.1 && "
			 "echo '#include <arm_sve.h>' | aarch64-linux-gnu-gcc -march=armv8.2-a+sve "
			 "-x c -c -o /dev/null -", sysroot) != 0) {
		free(log);
		print_message("skipped: SVE under qemu: needs qemu-aarch64, %s and an "
			      "aarch64-linux-gnu-gcc with <arm_sve.h> (gcc 10+; apt-get install "
			      "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)\n", sysroot);
		skip();
	}
	free(log);
	static const char *const embd[2] = {"bf16", "f32"};
	for (int i = 0; i < 2; i++) {
		char name[32];
		snprintf(name, sizeof name, "sve_synth_%s.gguf", embd[i]);
		snprintf(synth[i], sizeof synth[i], "%s", tu_tmp(name));
		if (tu_run(&log, "'%s' mkmodel --hidden 384 --ffn 4224 --layers 1 --embd-type %s "
				 "--seed 3 -o '%s'", tu_bitnetc(), embd[i], synth[i]))
			tu_fail_log(log, "mkmodel");
		free(log);
	}
	static const struct {
		int model; /* 0 tiny, 1 synthetic with a bf16 head, 2 with an f32 one */
		const char *layout;
		int bits; /* the vector length qemu gives */
		int ubs[3];
	} v[] = {
		{0, "gguf", 128, {1, 7, 16}},
		{0, "gguf", 512, {1, 16, 0}},
		{0, "i2s_x16", 128, {16, 0, 0}},
		{1, "gguf", 256, {1, 7, 0}},
		{1, "gguf", 512, {1, 16, 0}},
		{2, "gguf", 512, {1, 7, 0}},
	};
	char prog[4096] = "", built[4400] = "";
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char lua[4096], wrap[300], key[4400];
		const char *gguf = v[i].model ? synth[v[i].model - 1] : tiny;
		TuModel m = {0};
		tu_model_open(&m, gguf);
		snprintf(key, sizeof key, "%s %s", gguf, v[i].layout);
		if (strcmp(key, built) != 0) { /* a program per model and layout */
			snprintf(lua, sizeof lua, "%s", tu_tmp("sve_pipeline.lua"));
			snprintf(prog, sizeof prog, "%s", tu_tmp("sve_prog"));
			write_pipeline(lua, v[i].layout, NULL, NULL);
			if (tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-sve --cc "
					 "aarch64-linux-gnu-gcc --pipeline '%s'",
				   tu_bitnetc(), gguf, prog, lua))
				tu_fail_log(log, "build cpu-sve %s", v[i].layout);
			free(log);
			snprintf(built, sizeof built, "%s", key);
		}
		snprintf(wrap, sizeof wrap, "qemu-aarch64 -cpu max,sve%d=on -L %s", v[i].bits, sysroot);
		check_kinds(&m, wrap, prog, "simd");
		if (i == 0) { /* --info says what is not SVE */
			if (tu_run(&log, "%s '%s' --info", wrap, prog) || !strstr(log, "sve kernels:"))
				tu_fail_log(log, "%s --info: want the line on its sve kernels", prog);
			free(log);
		}
		for (int u = 0; u < 3 && v[i].ubs[u]; u++) {
			int ub = v[i].ubs[u];
			float *got = run_with(wrap, prog, &prompt, ub, m.nv);
			double d = vs_interp(&m, got, ub);
			printf("qemu cpu-sve %-10s %-8s sve%-3d calls of %2d: vs interpreter %.2g rel\n",
			       v[i].model ? embd[v[i].model - 1] : "tiny", v[i].layout, v[i].bits,
			       ub > 1 ? (ub < 13 ? ub : 13) : 1, d);
			tu_free(got);
		}
		if (i == 0 || i == 4) { /* 3 threads: odd shares of rows, the GEMV's one-row tail */
			TuCalls one = {1, {1}};
			int rows;
			float *got = tu_run_logits(wrap, prog, prompt.ids, prompt.n, N_GEN, &rows,
						   "-t 3 -ub 1");
			assert_int_equal(rows, (prompt.n + N_GEN) * m.nv);
			printf("qemu cpu-sve %-10s 3 threads, calls of  1: vs interpreter %.2g rel\n",
			       v[i].model ? embd[v[i].model - 1] : "tiny",
			       tu_vs_interp(&m, got, prompt.n + N_GEN, prompt.ids, prompt.n, &one));
			tu_free(got);
		}
		for (int c = 0; i == 0 && c < 2; c++) { /* no SVE: refused at start, naming it */
			const char *cpu = c ? "max,sve=off" : "cortex-a72";
			int rc = tu_run(&log, "qemu-aarch64 -cpu %s -L %s '%s' --tokens 496 -n 1", cpu,
					sysroot, prog);
			if (rc == 0 || !log || !strstr(log, "lacks: sve"))
				tu_fail_log(log, "cpu-sve on %s: want a refusal naming sve, got exit %d",
					    cpu, rc);
			printf("qemu cpu-sve on %s: refused, exit %d\n", cpu, rc);
			free(log);
		}
		tu_model_close(&m);
	}
	/* Everything but the float head gives the portable kernels' bits (the integer sums,
	 * the quantizer's values, the norms): with a q8_0 head, which is portable C on
	 * every AArch64 target, cpu-sve's logits are cpu-generic's, bit for bit. */
	char q8[4096], lf[2][4096];
	snprintf(q8, sizeof q8, "%s", tu_tmp("sve_q8.gguf"));
	if (tu_run(&log, "'%s' mkmodel --embd-type q8_0 --seed 4 -o '%s'", tu_bitnetc(), q8))
		tu_fail_log(log, "mkmodel");
	free(log);
	static const char *const bt[2] = {"cpu-sve", "cpu-generic"};
	for (int i = 0; i < 2; i++) {
		char name[64];
		snprintf(prog, sizeof prog, "%s", tu_tmp("sve_q8_prog"));
		snprintf(name, sizeof name, "sve_q8_%d.f32", i);
		snprintf(lf[i], sizeof lf[i], "%s", tu_tmp(name));
		if (tu_run(&log, "'%s' build '%s' -o '%s' --target %s --cc aarch64-linux-gnu-gcc && "
				 "qemu-aarch64 -cpu max,sve256=on -L %s '%s' --tokens 496,84,104,101,32,113,117 "
				 "-n 3 --temp 0 --ignore-eos -t 2 --logits-out '%s'",
			   tu_bitnetc(), q8, prog, bt[i], sysroot, prog, lf[i]))
			tu_fail_log(log, "%s with a q8_0 head", bt[i]);
		free(log);
	}
	size_t na, nb;
	char *la = tu_read_file(lf[0], &na), *lb = tu_read_file(lf[1], &nb);
	assert_non_null(la);
	assert_non_null(lb);
	assert_true(na > 0);
	assert_int_equal(na, nb);
	if (memcmp(la, lb, na) != 0)
		fail_msg("cpu-sve and cpu-generic with a q8_0 head: the logits differ; want the same "
			 "bits");
	printf("qemu cpu-sve q8_0 head: the logits of cpu-generic, bit for bit\n");
	free(la);
	free(lb);
}

/* The NEON kernels on any host: each variant cross-compiled for aarch64 (Debian's
 * aarch64-linux-gnu-gcc) and run under qemu-user, checked as test_families checks (calls
 * of 1 and of 13 tokens). qemu's default CPU has the dot product; on an emulated
 * Cortex-A53 (armv8.0, no dotprod) the cpu-neon program must give the same logits (it
 * has no sdot, which would be SIGILL there) and cpu-neon-dot must refuse to start.
 * Skipped without the cross tools (tools/setup.sh installs them), and while
 * BITNETC_CPU_MASK is on: it masks this host, not the emulated aarch64 CPU, so the
 * unmasked run has checked all of it. */
static void test_neon_qemu(void **state)
{
	(void)state;
	static const char sysroot[] = "/usr/aarch64-linux-gnu"; /* Debian's cross libc */
	char *log = NULL;
	if (tu_mask_note()[0]) {
		print_message("skipped: NEON under qemu: nothing here depends on this host's "
			      "features%s\n", tu_mask_note());
		skip();
	}
	char gguf[4096], wrap[256], wrap_a53[300];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	/* x86-64's own compiler cannot build it: the error says to name a cross compiler */
	if (tu_run(NULL, "[ \"$(uname -m)\" = x86_64 ] && command -v cc >/dev/null") == 0) {
		int rc = tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-neon --cc cc",
				tu_bitnetc(), gguf, tu_tmp("neon_host_prog"));
		if (rc == 0 || !log || !strstr(log, "--cc aarch64-linux-gnu-gcc"))
			tu_fail_log(log, "cpu-neon with the host's cc: want a failure that names a "
					 "cross compiler, got exit %d", rc);
		free(log);
	}
	if (tu_run(&log, "command -v aarch64-linux-gnu-gcc && command -v qemu-aarch64 && "
			 "test -e %s/lib/ld-linux-aarch64.so.1", sysroot) != 0) {
		free(log);
		print_message("skipped: NEON under qemu: needs aarch64-linux-gnu-gcc, qemu-aarch64 "
			      "and %s (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross "
			      "qemu-user)\n", sysroot);
		skip();
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
	TuModel m = {0};
	tu_model_open(&m, gguf);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char lua[4096], prog[4096];
		snprintf(lua, sizeof lua, "%s", tu_tmp("neon_pipeline.lua"));
		snprintf(prog, sizeof prog, "%s", tu_tmp("neon_prog"));
		write_pipeline(lua, v[i].layout, v[i].tile, v[i].kernel);
		if (tu_run(&log, "'%s' build '%s' -o '%s' --target %s --cc aarch64-linux-gnu-gcc "
				 "--pipeline '%s'",
			   tu_bitnetc(), gguf, prog, v[i].target, lua))
			tu_fail_log(log, "build %s %s", v[i].target, v[i].layout);
		free(log);
		check_kinds(&m, wrap, prog, kind_of(v[i].layout, v[i].kernel));
		for (int ub = 1; ub <= 16; ub += 15) {
			float *got = run_with(wrap, prog, &prompt, ub, m.nv);
			double d = vs_interp(&m, got, ub);
			printf("qemu %-12s %-8s %-4s tile %-8s calls of %2d: vs interpreter %.2g rel\n",
			       v[i].target, v[i].layout, kind_of(v[i].layout, v[i].kernel),
			       v[i].tile ? v[i].tile : "default", ub > 1 ? prompt.n : 1, d);
			tu_free(got);
		}
		if (strcmp(v[i].target, "cpu-neon") == 0 && !v[i].tile && !v[i].kernel) {
			float *got = run_with(wrap_a53, prog, &prompt, 16, m.nv);
			printf("qemu %-12s on cortex-a53 (no dotprod): vs interpreter %.2g rel\n",
			       v[i].target, vs_interp(&m, got, 16));
			tu_free(got);
		} else if (strcmp(v[i].target, "cpu-neon-dot") == 0 && !v[i].tile && !v[i].kernel) {
			int rc = tu_run(&log, "%s '%s' --tokens 496 -n 1", wrap_a53, prog);
			if (rc == 0 || !log || !strstr(log, "dotprod"))
				tu_fail_log(log, "cpu-neon-dot on cortex-a53: want a refusal naming "
						 "dotprod, got exit %d", rc);
			printf("qemu %-12s on cortex-a53: refused, exit %d\n", v[i].target, rc);
			free(log);
		}
	}
	tu_model_close(&m);
}

/* The RISC-V targets on any host: cpu-rv64 (riscv64-linux-gnu-gcc, the portable kernels)
 * and cpu-rvv (clang with --target=riscv64-linux-gnu: gcc 12 has no RVV intrinsics)
 * cross-built and run under qemu-user, checked as test_neon_qemu checks, in calls of 1, 7
 * (token tiles of 4 and 3, then 4 and 2) and 13 tokens. cpu-rvv's kernels are vector-length
 * agnostic: at VLEN 128 the tiny model's rows are whole steps; at 512 its rows of 64 bytes
 * are one partial step (no whole one); a synthetic model with rows of 96 and 1056 bytes
 * takes 33 whole steps at VLEN 128 (two int16 blocks of the one-token kernel) and partial
 * ones at 256. The head: f16 (tiny), bf16 (synthetic). Also i2s_x16 (the portable families), and cpu-rv64 on a CPU without the
 * vector extension, where cpu-rvv must refuse to start. Skipped without the tools, and
 * while BITNETC_CPU_MASK is on (it masks this host, not the emulated one). */
static void test_rvv_qemu(void **state)
{
	(void)state;
	char *log = NULL, why[256];
	if (tu_mask_note()[0]) {
		print_message("skipped: RISC-V under qemu: nothing here depends on this host's "
			      "features%s\n", tu_mask_note());
		skip();
	}
	char tiny[4096], synth[4096];
	snprintf(tiny, sizeof tiny, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	/* x86-64's own compiler cannot build it: the error says to name a cross compiler */
	if (tu_run(NULL, "[ \"$(uname -m)\" = x86_64 ] && command -v cc >/dev/null") == 0) {
		int rc = tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-rvv --cc cc", tu_bitnetc(),
				tiny, tu_tmp("rvv_host_prog"));
		if (rc == 0 || !log || !strstr(log, "--target=riscv64-linux-gnu") ||
		    !strstr(log, "RISC-V code"))
			tu_fail_log(log, "cpu-rvv with the host's cc: want a failure that names a "
					 "cross compiler, got exit %d", rc);
		free(log);
	}
	const char *clang = tu_rvv_cc(why, sizeof why);
	if (!clang || tu_run(NULL, "command -v riscv64-linux-gnu-gcc") != 0) {
		print_message("skipped: RISC-V under qemu: %s, and riscv64-linux-gnu-gcc "
			      "(tools/setup.sh)\n", why);
		skip();
	}
	/* a gcc without the RVV intrinsics (Debian 12's 12) is refused by model.c itself */
	if (tu_run(NULL, "echo '#include <riscv_vector.h>' | riscv64-linux-gnu-gcc -march=rv64gcv "
			 "-x c -c -o /dev/null -") != 0) {
		int rc = tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-rvv --cc "
				      "riscv64-linux-gnu-gcc", tu_bitnetc(), tiny, tu_tmp("rvv_gcc_prog"));
		if (rc != 2 || !log || !strstr(log, "clang 16 or newer"))
			tu_fail_log(log, "cpu-rvv with a gcc without RVV intrinsics: want exit 2 "
					 "naming the compilers that have them, got exit %d", rc);
		free(log);
	}
	snprintf(synth, sizeof synth, "%s", tu_tmp("rvv_synth.gguf"));
	if (tu_run(&log, "'%s' mkmodel --hidden 384 --ffn 4224 --layers 1 --embd-type bf16 --seed 3 -o '%s'",
		   tu_bitnetc(), synth))
		tu_fail_log(log, "mkmodel");
	free(log);
	static const char v128[] = "rv64,v=true,vlen=128,vext_spec=v1.0";
	static const struct {
		bool synth; /* the synthetic model, else the tiny golden one */
		const char *target, *layout, *cpu; /* cpu: qemu's -cpu */
		int ubs[3];
	} v[] = {
		{false, "cpu-rv64", "gguf", "rv64,v=false", {1, 16, 0}},
		{false, "cpu-rvv", "gguf", v128, {1, 7, 16}},
		{false, "cpu-rvv", "gguf", "rv64,v=true,vlen=512,vext_spec=v1.0", {1, 16, 0}},
		{false, "cpu-rvv", "i2s_x16", v128, {16, 0, 0}},
		{true, "cpu-rvv", "gguf", v128, {1, 7, 0}},
		{true, "cpu-rvv", "gguf", "rv64,v=true,vlen=256,vext_spec=v1.0", {1, 16, 0}},
	};
	char prog[4096] = "", built[4400] = "";
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char lua[4096], wrap[300], cc[300], key[4400];
		const char *gguf = v[i].synth ? synth : tiny;
		bool rvv = strcmp(v[i].target, "cpu-rvv") == 0;
		TuModel m = {0};
		tu_model_open(&m, gguf);
		snprintf(key, sizeof key, "%s %s %s", gguf, v[i].target, v[i].layout);
		if (strcmp(key, built) != 0) { /* a program per model, target and layout */
			snprintf(lua, sizeof lua, "%s", tu_tmp("rvv_pipeline.lua"));
			snprintf(prog, sizeof prog, "%s", tu_tmp("rvv_prog"));
			write_pipeline(lua, v[i].layout, NULL, NULL);
			snprintf(cc, sizeof cc, rvv ? "%s --cflags --target=riscv64-linux-gnu" : "%s",
				 rvv ? clang : "riscv64-linux-gnu-gcc");
			if (tu_run(&log, "'%s' build '%s' -o '%s' --target %s --cc %s --pipeline '%s'",
				   tu_bitnetc(), gguf, prog, v[i].target, cc, lua))
				tu_fail_log(log, "build %s %s", v[i].target, v[i].layout);
			free(log);
			snprintf(built, sizeof built, "%s", key);
		}
		snprintf(wrap, sizeof wrap, "qemu-riscv64 -cpu %s -L %s", v[i].cpu, TU_RV_SYSROOT);
		const char *kind = rvv || strcmp(v[i].layout, "gguf") != 0 ? "simd" : "portable";
		check_kinds(&m, wrap, prog, kind);
		if (rvv && i == 1) { /* --info says what is not RVV */
			if (tu_run(&log, "%s '%s' --info", wrap, prog) || !strstr(log, "rvv kernels:"))
				tu_fail_log(log, "%s --info: want the line on its rvv kernels", prog);
			free(log);
		}
		for (int u = 0; u < 3 && v[i].ubs[u]; u++) {
			int ub = v[i].ubs[u];
			float *got = run_with(wrap, prog, &prompt, ub, m.nv);
			double d = vs_interp(&m, got, ub);
			printf("qemu %-9s %-5s %-8s %-8s -cpu %-36s calls of %2d: vs interpreter %.2g rel\n",
			       v[i].target, v[i].synth ? "synth" : "tiny", v[i].layout, kind, v[i].cpu,
			       ub > 1 ? (ub < 13 ? ub : 13) : 1, d);
			tu_free(got);
		}
		if (rvv && i == 1) { /* no vector extension: refused at start, naming it */
			int rc = tu_run(&log, "qemu-riscv64 -cpu rv64,v=false -L %s '%s' --tokens 496 -n 1",
					TU_RV_SYSROOT, prog);
			if (rc == 0 || !log || !strstr(log, "rvv"))
				tu_fail_log(log, "cpu-rvv without the vector extension: want a refusal "
						 "naming rvv, got exit %d", rc);
			printf("qemu %-9s on rv64 without v: refused, exit %d\n", v[i].target, rc);
			free(log);
		}
		tu_model_close(&m);
	}
}

/* The RVV f16 -> f32 conversions (rvv_h2f_m1, _m2 in a cpu-rvv model.c) against the
 * prelude's f16_to_f32 for all 65536 halves (subnormals, infinities, NaNs), at VLEN 128 and
 * 512: a program that includes the emitted model.c in dir (its runtime calls left
 * unresolved: none runs). */
static const char h2f_main[] =
	"#include \"model.c\"\n"
	"#include <stdio.h>\n"
	"int main(void)\n{\n"
	"\tstatic uint32_t u[65536];\n"
	"\tstatic float f1[65536], f2[65536];\n"
	"\tfor (uint32_t h = 0; h < 65536; h++)\n\t\tu[h] = h;\n"
	"\tfor (size_t i = 0, vl; i < 65536; i += vl) {\n"
	"\t\tvl = __riscv_vsetvl_e32m1(65536 - i);\n"
	"\t\t__riscv_vse32_v_f32m1(f1 + i, rvv_h2f_m1(__riscv_vle32_v_u32m1(u + i, vl), vl), vl);\n"
	"\t}\n"
	"\tfor (size_t i = 0, vl; i < 65536; i += vl) {\n"
	"\t\tvl = __riscv_vsetvl_e32m2(65536 - i);\n"
	"\t\t__riscv_vse32_v_f32m2(f2 + i, rvv_h2f_m2(__riscv_vle32_v_u32m2(u + i, vl), vl), vl);\n"
	"\t}\n"
	"\tint bad = 0;\n"
	"\tfor (uint32_t h = 0; h < 65536; h++) {\n"
	"\t\tuint32_t want = f32_bits(f16_to_f32((uint16_t)h));\n"
	"\t\tif ((f32_bits(f1[h]) != want || f32_bits(f2[h]) != want) && bad++ < 5)\n"
	"\t\t\tprintf(\"half %04x: %08x %08x, want %08x\\n\", (unsigned)h, (unsigned)f32_bits(f1[h]),\n"
	"\t\t\t       (unsigned)f32_bits(f2[h]), (unsigned)want);\n"
	"\t}\n"
	"\tprintf(\"%d of 65536 halves differ\\n\", bad);\n"
	"\treturn bad != 0;\n}\n";

static void check_rvv_h2f(const char *clang, const char *dir)
{
	char src[4400], prog[4400], *log = NULL;
	if (snprintf(src, sizeof src, "%s/h2f_main.c", dir) >= (int)sizeof src ||
	    snprintf(prog, sizeof prog, "%s/h2f", dir) >= (int)sizeof prog)
		fail_msg("%s: too long a path", dir);
	assert_int_equal(tu_write_file(src, h2f_main, strlen(h2f_main)), 0);
	if (tu_run(&log, "cd '%s' && %s --target=riscv64-linux-gnu -march=rv64gcv -O2 -std=c11 "
			 "-ffp-contract=off -D_GNU_SOURCE -o h2f h2f_main.c -lm -lpthread "
			 "-Wl,--unresolved-symbols=ignore-all", dir, clang))
		tu_fail_log(log, "compile the f16 conversion check");
	free(log);
	for (int vlen = 128; vlen <= 512; vlen *= 4) {
		if (tu_run(&log, "qemu-riscv64 -cpu rv64,v=true,vlen=%d,vext_spec=v1.0 -L %s '%s'",
			   vlen, TU_RV_SYSROOT, prog))
			tu_fail_log(log, "rvv_h2f at VLEN %d: not f16_to_f32's bits", vlen);
		printf("rvv_h2f at VLEN %d: %s", vlen, log);
		free(log);
	}
}

/* cpu-rvv's float kernels (rmsnorm, attention, rope, the relu^2 GLU, the adds) under qemu
 * at VLEN 128, 256 and 512, on synthetic models of one layer: heads of 64 (grouped query
 * attention, 2 q heads per KV head), 128, and 20 (arch llama: rope's normal mode; 20 is no
 * multiple of 8, so q.K's accumulators get the head's last 4 elements alone, and no
 * multiple of any VLEN's lanes; 4 q heads per KV head). The 37 prompt tokens and 2
 * generated reach 39 keys: more than one step of keys at every VLEN (q.K holds VLEN/32
 * keys a step), in calls of 1 (step mode) and of 16. The models' heads are q8_0, which
 * runs the portable kernel on cpu-rvv, so the logits must be the very bits of the model
 * built for cpu-rv64 (the portable kernels, gcc) at every VLEN: the RVV kernels keep the
 * portable float order; and within 1e-4 of the interpreter. The programs' --info lists
 * the RVV attention kernel and the f16 converter, whose every half is checked
 * (check_rvv_h2f). Skipped as test_rvv_qemu. */
static void test_rvv_float_qemu(void **state)
{
	(void)state;
	char *log = NULL, why[256];
	if (tu_mask_note()[0]) {
		print_message("skipped: RISC-V under qemu: nothing here depends on this host's "
			      "features%s\n", tu_mask_note());
		skip();
	}
	const char *clang = tu_rvv_cc(why, sizeof why);
	if (!clang || tu_run(NULL, "command -v riscv64-linux-gnu-gcc") != 0) {
		print_message("skipped: RISC-V float kernels under qemu: %s, and "
			      "riscv64-linux-gnu-gcc (tools/setup.sh)\n", why);
		skip();
	}
	static const struct {
		const char *name, *shape, *attn;
		int vlens[3];
	} v[] = {
		{"hd64", "--hidden 256 --ffn 512 --heads 4 --kv-heads 2", "attnv_h4_kv2_hd64", {128, 512, 0}},
		{"hd128", "--hidden 256 --ffn 384 --heads 2 --kv-heads 2", "attnv_h2_kv2_hd128", {128, 256, 0}},
		{"hd20", "--arch llama --hidden 640 --ffn 640 --heads 32 --kv-heads 8",
		 "attnv_h32_kv8_hd20", {128, 256, 512}},
	};
	static const int ubs[] = {1, 16};
	char lua[4096], pwrap[300];
	snprintf(lua, sizeof lua, "%s", tu_tmp("rvvf_pipeline.lua"));
	write_pipeline(lua, "gguf", NULL, NULL);
	snprintf(pwrap, sizeof pwrap, "qemu-riscv64 -cpu rv64,v=false -L %s", TU_RV_SYSROOT);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char gguf[4096], prog[4096], port[4200], name[64];
		snprintf(name, sizeof name, "rvvf_%s.gguf", v[i].name);
		snprintf(gguf, sizeof gguf, "%s", tu_tmp(name));
		snprintf(name, sizeof name, "rvvf_%s", v[i].name);
		snprintf(prog, sizeof prog, "%s", tu_tmp(name));
		snprintf(port, sizeof port, "%s_rv64", prog);
		char src[4400];
		snprintf(src, sizeof src, "%s_src", prog); /* its model.c, for check_rvv_h2f */
		if (tu_run(&log, "rm -rf '%s' && '%s' mkmodel %s --layers 1 --embd-type q8_0 --seed 5 "
				 "-o '%s' && '%s' build '%s' -o '%s' --target cpu-rvv --cc %s --cflags "
				 "--target=riscv64-linux-gnu --pipeline '%s' --emit-c '%s' && '%s' build "
				 "'%s' -o '%s' --target cpu-rv64 --cc riscv64-linux-gnu-gcc --pipeline '%s'",
			   src, tu_bitnetc(), v[i].shape, gguf, tu_bitnetc(), gguf, prog, clang, lua, src,
			   tu_bitnetc(), gguf, port, lua))
			tu_fail_log(log, "mkmodel and build %s for cpu-rvv and cpu-rv64", v[i].name);
		free(log);
		if (i == 0)
			check_rvv_h2f(clang, src);
		TuModel m = {0};
		tu_model_open(&m, gguf);
		size_t bytes = (size_t)(prompt37.n + N_GEN) * (size_t)m.nv * sizeof(float);
		float *want[2];
		for (int u = 0; u < 2; u++) /* each run's rows are a buffer of their own */
			want[u] = run_with(pwrap, port, &prompt37, ubs[u], m.nv);
		for (int k = 0; k < 3 && v[i].vlens[k]; k++) {
			char wrap[300];
			snprintf(wrap, sizeof wrap, "qemu-riscv64 -cpu rv64,v=true,vlen=%d,vext_spec=v1.0 -L %s",
				 v[i].vlens[k], TU_RV_SYSROOT);
			if (k == 0) {
				if (tu_run(&log, "%s '%s' --info", wrap, prog) || !strstr(log, v[i].attn) ||
				    !strstr(log, " rvv_h2f ") || !strstr(log, "attention (q.K, .V)"))
					tu_fail_log(log, "%s --info: want %s, rvv_h2f and the rvv line",
						    prog, v[i].attn);
				free(log);
			}
			for (int u = 0; u < 2; u++) {
				float *got = run_with(wrap, prog, &prompt37, ubs[u], m.nv);
				if (memcmp(got, want[u], bytes) != 0)
					fail_msg("%s at VLEN %d, calls of %d: not the bits of cpu-rv64's "
						 "portable kernels", v[i].name, v[i].vlens[k], ubs[u]);
				double d = vs_interp_p(&m, &prompt37, got, ubs[u]);
				printf("qemu cpu-rvv %-5s vlen %3d, calls of %2d: cpu-rv64's bits, vs "
				       "interpreter %.2g rel\n", v[i].name, v[i].vlens[k], ubs[u], d);
				tu_free(got);
			}
		}
		tu_free(want[0]);
		tu_free(want[1]);
		tu_model_close(&m);
	}
}

/* t5_x16 where no kernel reads it: a LUT kernel asked for, and the NEON targets (refused
 * at code generation, before any compiler runs: exit 2 naming the layout and target). */
static void test_t5_refused(void **state)
{
	(void)state;
	static const struct {
		const char *target, *kernel, *want;
	} c[] = {
		{"cpu-avx512", "lut", "no LUT kernel"},
		{"cpu-generic", "lut_portable", "no LUT kernel"},
		{"cpu-neon", NULL, "no NEON kernel (target cpu-neon)"},
		{"cpu-neon-dot", NULL, "no NEON kernel (target cpu-neon-dot)"},
	};
	char gguf[4096], lua[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	snprintf(lua, sizeof lua, "%s", tu_tmp("t5_refused.lua"));
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		write_pipeline(lua, "t5_x16", NULL, c[i].kernel);
		char *log = NULL;
		int rc = tu_run(&log, "'%s' build '%s' -o '%s' --target %s --cc aarch64-linux-gnu-gcc "
				      "--pipeline '%s'",
				tu_bitnetc(), gguf, tu_tmp("t5_refused"), c[i].target, lua);
		if (rc != 2 || !log || !strstr(log, "t5_x16") || !strstr(log, c[i].want))
			tu_fail_log(log, "t5_x16 on %s kernel %s: want exit 2 and \"%s\", got %d",
				    c[i].target, c[i].kernel ? c[i].kernel : "default", c[i].want, rc);
		free(log);
	}
}

/* The tile layer of the AMX kernels (cg_amx_tiles_src) on its own: TDPBSSD on random
 * shapes (rows, bytes per row of A and of C, B's rows following) and data, loads and stores
 * with a stride, checked against the instruction's definition written out here. Built
 * with -DBN_AMX_EMULATE (any x86-64 host) and, on a host with AMX, with the instructions.
 * It asks for the tile state as the kernels do (bn_amx_ensure); built with
 * -DBN_NO_REQUEST it does not, and the first tile instruction must fail (SIGILL on the
 * hardware, a fault naming the request in the emulation). */
static const char amx_tiles_main[] =
	"int main(void)\n"
	"{\n"
	"#if !defined(BN_NO_REQUEST)\n"
	"\tbn_amx_ensure();\n"
	"#else\n"
	"\t(void)bn_amx_ensure;\n"
	"#endif\n"
	"\tuint32_t x = 12345;\n"
	"\tint bad = 0;\n"
	"\tfor (int it = 0; it < 2000; it++) {\n"
	"\t\tint m = 1 + it % 16, ka = 4 * (1 + (it / 16) % 16), nc = 4 * (1 + (it * 7 + 3) % 16);\n"
	"\t\tstatic int8_t a[16][80], b[16][72];\n"
	"\t\tstatic int32_t c[16][20], want[16][20], got[16][20];\n"
	"\t\tfor (int i = 0; i < 16; i++) {\n"
	"\t\t\tfor (int j = 0; j < 80; j++)\n"
	"\t\t\t\ta[i][j] = (int8_t)((x = x * 1103515245u + 12345u) >> 23);\n"
	"\t\t\tfor (int j = 0; j < 72; j++)\n"
	"\t\t\t\tb[i][j] = (int8_t)((x = x * 1103515245u + 12345u) >> 23);\n"
	"\t\t\tfor (int j = 0; j < 20; j++)\n"
	"\t\t\t\tc[i][j] = want[i][j] = got[i][j] = (int32_t)((x = x * 1103515245u + 12345u) >> 8) - (1 << 23);\n"
	"\t\t}\n"
	"\t\tfor (int i = 0; i < m; i++)\n"
	"\t\t\tfor (int n = 0; n < nc / 4; n++)\n"
	"\t\t\t\tfor (int k = 0; k < ka / 4; k++)\n"
	"\t\t\t\t\tfor (int j = 0; j < 4; j++)\n"
	"\t\t\t\t\t\twant[i][n] += a[i][4 * k + j] * b[k][4 * n + j];\n"
	"\t\t_Alignas(64) BnTileCfg cfg;\n"
	"\t\tmemset(&cfg, 0, sizeof cfg);\n"
	"\t\tcfg.palette = 1;\n"
	"\t\tcfg.rows[0] = (uint8_t)m, cfg.colsb[0] = (uint16_t)nc;       /* C */\n"
	"\t\tcfg.rows[3] = (uint8_t)m, cfg.colsb[3] = (uint16_t)ka;       /* A */\n"
	"\t\tcfg.rows[5] = (uint8_t)(ka / 4), cfg.colsb[5] = (uint16_t)nc; /* B */\n"
	"\t\tcfg.rows[7] = 16, cfg.colsb[7] = 64;\n"
	"\t\tBN_TILE_LOADCONFIG(&cfg);\n"
	"\t\tBN_TILE_ZERO(7);\n"
	"\t\tBN_TILE_LOADD(0, c, sizeof c[0]);\n"
	"\t\tBN_TILE_LOADD(3, a, sizeof a[0]);\n"
	"\t\tBN_TILE_LOADD(5, b, sizeof b[0]);\n"
	"\t\tBN_TILE_DPBSSD(0, 3, 5);\n"
	"\t\tBN_TILE_STORED(0, got, sizeof got[0]);\n"
	"\t\tBN_TILE_RELEASE();\n"
	"\t\tbad += memcmp(got, want, sizeof got) != 0;\n"
	"\t}\n"
	"\tprintf(\"%d bad\\n\", bad);\n"
	"\treturn bad != 0;\n"
	"}\n";

static void amx_tiles(bool emu)
{
	const char *src = tu_tmp("amx_tiles.c");
	FILE *fp = fopen(src, "w");
	assert_non_null(fp);
	fprintf(fp, "#include <stdint.h>\n#include <string.h>\n#include <immintrin.h>\n%s%s",
		cg_amx_tiles_src, amx_tiles_main);
	assert_int_equal(fclose(fp), 0);
	const char *how = emu ? "emulated" : "the instructions";
	char *log = NULL;
	for (int ask = 1; ask >= 0; ask--) {
		int rc = tu_run(&log, "cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -mamx-tile "
				      "-mamx-int8 %s %s -o '%s' '%s' && '%s'",
				emu ? "-DBN_AMX_EMULATE" : "", ask ? "" : "-DBN_NO_REQUEST",
				tu_tmp("amx_tiles"), src, tu_tmp("amx_tiles"));
		if (ask && rc)
			tu_fail_log(log, "AMX tile layer (%s)", how);
		if (ask)
			printf("AMX tile layer (%s), 2000 random TDPBSSD shapes: %s", how, log);
		else if (rc == 0 || (emu && !strstr(log, "before the process asked for the tile state")))
			tu_fail_log(log, "AMX tile layer (%s) without asking for the tile state: want "
					 "it to fail%s, got exit %d", how,
				    emu ? " naming the request" : "", rc);
		else
			printf("AMX tile layer (%s) without asking for the tile state: fails (%d)\n",
			       how, rc);
		free(log);
	}
}

static void test_amx_tiles_emulated(void **state)
{
	(void)state;
	need(NEED_X86, "AMX tile layer, emulated (x86-64 code)");
	amx_tiles(true);
}

static void test_amx_tiles_hardware(void **state)
{
	(void)state;
	need(NEED_AMX, "AMX tile layer, the instructions");
	amx_tiles(false);
}

/* The AMX-INT8 GEMM (target cpu-amx) of the multi-token forwards; the one-token forward
 * keeps the AVX-512 VNNI GEMV. Built with -DBN_AMX_EMULATE the tiles run in software (any
 * host with AVX-512 VNNI, for the other kernels); on a host with AMX also the
 * instructions themselves. Calls of 13 tokens (one A tile of 13 rows) and of 37 (two full
 * token tiles, then one of 5 rows: the tile configuration changes), with tiles whose
 * units leave ragged edges. Checked as test_family checks, and the 37-token logits bit
 * for bit against cpu-avx512's. */
static void amx_programs(bool emu)
{
	static const struct {
		const char *sizes, *tile; /* templates; amx_tile {rows, tokens} or the default */
		const Prompt *p;
		int ub;
	} v[] = {
		{"1, 16", NULL, &prompt, 16},	  /* groups by 2, one token tile of 13 */
		{"1, 64", NULL, &prompt37, 64},	  /* 2 x 2 tiles: 16 + 16 tokens, then 5 */
		{"1, 64", "{48, 16}", &prompt37, 64}, /* groups by 3: 8 groups end in a unit of 2 */
		{"1, 64", "{16, 48}", &prompt37, 64}, /* three token tiles: 16, 16, 5 */
	};
	const char *how = emu ? "emulated" : "hardware";
	char gguf[4096], lua[4096], prog[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	snprintf(lua, sizeof lua, "%s", tu_tmp("amx_pipeline.lua"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("amx_prog"));
	TuModel m = {0};
	tu_model_open(&m, gguf);
	/* the AVX-512 GEMM's logits of the 37-token call: the AMX ones must be the same bits
	 * (both sum exactly and share the float epilogue) */
	write_pipeline_as(lua, "i2s_x16", "1, 64", "tile", NULL, NULL);
	char *log = NULL;
	if (tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-avx512 --pipeline '%s'",
		   tu_bitnetc(), gguf, prog, lua))
		tu_fail_log(log, "build cpu-avx512");
	free(log);
	float *avx512_logits = run_with("", prog, &prompt37, 64, m.nv);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		write_pipeline_as(lua, "i2s_x16", v[i].sizes, "amx_tile", v[i].tile, NULL);
		if (tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-amx %s --pipeline '%s'",
			   tu_bitnetc(), gguf, prog, emu ? "--cflags -DBN_AMX_EMULATE" : "", lua))
			tu_fail_log(log, "build cpu-amx %s", v[i].tile ? v[i].tile : "");
		free(log);
		check_kinds2(&m, "", prog, "simd", "amx");
		/* an emulated program asks neither the CPU nor the OS for AMX */
		if (tu_run(&log, "'%s' --info", prog))
			tu_fail_log(log, "%s --info", prog);
		const char *cpu = strstr(log, "cpu: ");
		char line[512] = "";
		if (cpu)
			snprintf(line, sizeof line, "%.*s", (int)strcspn(cpu, "\n"), cpu);
		if (!cpu || (strstr(line, "amx_tile") != NULL) == emu ||
		    !strstr(log, emu ? "AMX tiles: emulated" : "AMX tiles: the instructions"))
			tu_fail_log(log, "%s --info: want %s", prog,
				    emu ? "no amx in cpu:, tiles emulated" : "amx_tile in cpu:");
		free(log);
		for (int ub = 1; ub <= v[i].ub; ub += v[i].ub - 1) {
			float *got = run_with("", prog, v[i].p, ub, m.nv);
			double d = vs_interp_p(&m, v[i].p, got, ub);
			if (ub > 1 && v[i].p == &prompt37 &&
			    memcmp(got, avx512_logits,
				   (size_t)(prompt37.n + N_GEN) * (size_t)m.nv * sizeof(float)))
				fail_msg("cpu-amx %s amx_tile %s: logits differ from cpu-avx512's", how,
					 v[i].tile ? v[i].tile : "");
			printf("cpu-amx %-9s amx_tile %-8s templates %-5s calls of %2d: vs "
			       "interpreter %.2g rel\n",
			       how, v[i].tile ? v[i].tile : "default", v[i].sizes,
			       ub > 1 ? v[i].p->n : 1, d);
			tu_free(got);
		}
	}
	tu_free(avx512_logits);
	tu_model_close(&m);
}

static void test_amx_emulated(void **state)
{
	(void)state;
	need(NEED_AVX512, "cpu-amx with emulated tiles (the other kernels are AVX-512 VNNI)");
	amx_programs(true);
}

static void test_amx_hardware(void **state)
{
	(void)state;
	need(NEED_AMX, "cpu-amx, the instructions");
	amx_programs(false);
}

/* Without -DBN_AMX_EMULATE on a host without AMX (or with it hidden by BITNETC_CPU_MASK):
 * refused before any model code, naming what is missing. */
static void test_amx_refused(void **state)
{
	(void)state;
	need(NEED_X86, "cpu-amx refused without AMX");
	if (host_has(NEED_AMX)) {
		print_message("skipped: cpu-amx refused without AMX: this host has AMX-INT8, so "
			      "it runs (BITNETC_CPU_MASK=avx512 hides it)\n");
		skip();
	}
	char gguf[4096], lua[4096], prog[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	snprintf(lua, sizeof lua, "%s", tu_tmp("amx_pipeline.lua"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("amx_prog"));
	write_pipeline_as(lua, "i2s_x16", "1, 16", "amx_tile", NULL, NULL);
	char *log = NULL;
	if (tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-amx --pipeline '%s'", tu_bitnetc(),
		   gguf, prog, lua))
		tu_fail_log(log, "build cpu-amx");
	free(log);
	int rc = tu_run(&log, "'%s' --tokens 496 -n 1", prog);
	if (rc == 0 || !log || !strstr(log, "amx_tile amx_int8") ||
	    (tu_mask_note()[0] && !strstr(log, "masked by " RT_CPU_MASK_ENV)))
		tu_fail_log(log, "cpu-amx without AMX: want a refusal naming amx_tile amx_int8%s, "
				 "got exit %d", tu_mask_note(), rc);
	printf("cpu-amx (the instructions) on this CPU: refused, exit %d\n", rc);
	free(log);
}

/* An OS that refuses the tile state (played by the emulation): decode() returns
 * RT_FORWARD_CPU before any tile instruction, and the program says why (exit 2) instead of
 * dying of SIGILL; a one-token call (the VNNI GEMV) needs no tiles and still runs. */
static void test_amx_denied(void **state)
{
	(void)state;
	need(NEED_AVX512, "cpu-amx with the tile state refused (emulated; the other kernels "
			  "are AVX-512 VNNI)");
	char gguf[4096], lua[4096], prog[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	snprintf(lua, sizeof lua, "%s", tu_tmp("amx_deny_pipeline.lua"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("amx_deny_prog"));
	write_pipeline_as(lua, "i2s_x16", "1, 16", "amx_tile", NULL, NULL);
	char *log = NULL;
	if (tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-amx --pipeline '%s' --cflags "
			 "'-DBN_AMX_EMULATE -DBN_AMX_EMULATE_DENY'",
		   tu_bitnetc(), gguf, prog, lua))
		tu_fail_log(log, "build cpu-amx (emulated, tile state refused)");
	free(log);
	int rc = tu_run(&log, "'%s' --tokens 496,84,104 -n 1", prog);
	if (rc != 2 || !log || !strstr(log, "refused the AMX tile state"))
		tu_fail_log(log, "tile state refused: want exit 2 naming it, got exit %d", rc);
	free(log);
	rc = tu_run(&log, "'%s' --tokens 496 -n 1", prog);
	if (rc != 0)
		tu_fail_log(log, "one token needs no tiles: want exit 0, got exit %d", rc);
	free(log);
}

/* File path as a NUL-terminated string ("" when absent); tu_free it. */
static char *read_text(const char *path)
{
	size_t n = 0;
	char *raw = tu_read_file(path, &n);
	char *t = tu_hold(malloc(n + 1));
	assert_non_null(t);
	if (raw)
		memcpy(t, raw, n);
	t[n] = 0;
	free(raw);
	return t;
}

/* One build of the tiny golden model for cpu-amx with extra (--cflags, --tune, ...), the
 * tuning file tune, -v, its model.c emitted into emit; the log (free it) back. */
static char *amx_tune_build(const char *prog, const char *emit, const char *tune,
			    const char *extra)
{
	char *log = NULL;
	if (tu_run(&log, "rm -rf '%s' && '%s' build '%s' -o '%s' --target cpu-amx --tune-file '%s' "
			 "-v --emit-c '%s' %s",
		   emit, tu_bitnetc(), tu_data("golden/models/tiny-b158-i2_s.gguf"), prog, tune, emit,
		   extra))
		tu_fail_log(log, "build cpu-amx %s", extra);
	return log;
}

/* How many of model.c's AMX drivers (tmm_amx_k*_n*_r*_t*) there are, and how many of
 * them are for shape k x n with block {16 r, t}. */
static void amx_drivers(const char *model_c, int64_t k, int64_t n, int r, int t, int *all,
			int *match)
{
	char want[96];
	snprintf(want, sizeof want, "tmm_amx_k%" PRId64 "_n%" PRId64 "_r%d_t%d(", k, n, r, t);
	*all = *match = 0;
	for (const char *p = model_c; (p = strstr(p, "static void tmm_amx_k")) != NULL; p++) {
		(*all)++;
		*match += strncmp(p + strlen("static void "), want, strlen(want)) == 0;
	}
}

/* bitnetc build --tune on cpu-amx with the tiles in software (emu: -DBN_AMX_EMULATE) or
 * the instructions: the tuning program times the AMX blocks (the emulated ones: a test of
 * the plumbing), the winners go into the tuning file under kind amx_emu (emulated) or amx
 * and become amx_tile on every
 * ternary matmul (the drivers in model.c carry the block), and the logits are the
 * untuned build's bit for bit (a block changes only which C tiles are summed together,
 * each over all of K in int32, not the order of any sum). A file line of another kind (the
 * register tile, the other of amx and amx_emu), tokens in flight or an invalid block is
 * not read;
 * a build without --tune reads the file back (the last valid line for a shape wins). */
static void amx_tune(bool emu)
{
	const char *flags = emu ? "--cflags -DBN_AMX_EMULATE" : "";
	const char *kind = emu ? "amx_emu" : "amx", *other = emu ? "amx" : "amx_emu";
	const char *how = emu ? "emulated" : "hardware";
	char cpu[256], tune[4096], prog[4096], emit[4096], model_c[4200], pre[2048];
	pass_tune_cpu_model(cpu, sizeof cpu);
	snprintf(tune, sizeof tune, "%s", tu_tmp("amx_tune.tsv"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("amx_tune_prog"));
	snprintf(emit, sizeof emit, "%s", tu_tmp("amx_tune_emit"));
	snprintf(model_c, sizeof model_c, "%s/model.c", emit);
	TuModel m = {0};
	tu_model_open(&m, tu_data("golden/models/tiny-b158-i2_s.gguf"));
	int n_mm = 0;
	for (int i = 0; i < m.g->n_nodes; i++)
		n_mm += m.g->nodes[i].op == IR_OP_TERNARY_MATMUL;
	/* untuned: no file */
	unlink(tune);
	char *log = amx_tune_build(prog, emit, tune, flags);
	if (!strstr(log, "amx_tile set on 0 matmuls"))
		tu_fail_log(log, "untuned: want no amx_tile set");
	free(log);
	float *untuned = run_with("", prog, &prompt37, 64, m.nv);
	size_t bytes = (size_t)(prompt37.n + N_GEN) * (size_t)m.nv * sizeof(float);
	/* lines this build must not read, for every shape of the model (k 256 n 768 is one) */
	snprintf(pre, sizeof pre,
		 "%s\tcpu-amx\t256\t768\t128\t48\t5\t1\n" /* the register tile's */
		 "%s\tcpu-amx\t256\t768\t128\t%s\t16\t16\t1\n" /* the other kind's */
		 "%s\tcpu-amx\t256\t768\t64\t%s\t16\t16\t1\n" /* 64 tokens in flight */
		 "%s\tcpu-amx\t256\t768\t128\t%s\t64\t64\t1\n" /* 4 + 4 + 16 tiles */
		 "%s\tcpu-amx\t256\t768\t128\t%s\t32\t48\t1\n", /* 2 + 3 + 6 tiles */
		 cpu, cpu, other, cpu, kind, cpu, kind, cpu, kind);
	assert_int_equal(tu_write_file(tune, pre, strlen(pre)), 0);
	char want[160], flags_tune[96], kind_is[32];
	snprintf(flags_tune, sizeof flags_tune, "%s --tune", flags);
	log = amx_tune_build(prog, emit, tune, flags_tune);
	snprintf(want, sizeof want, "4 measured now, amx_tile set on %d matmuls", n_mm);
	snprintf(kind_is, sizeof kind_is, "kind %s)", kind);
	if (!strstr(log, want) || !strstr(log, kind_is) ||
	    !strstr(log, emu ? "AMX blocks, emulated tiles" : "AMX blocks):") ||
	    (strstr(log, "emulated tiles: a test of the plumbing") != NULL) != emu)
		tu_fail_log(log, "--tune, %s: want \"%s\", \"%s\" and the timings named", how,
			    want, kind_is);
	free(log);
	float *tuned = run_with("", prog, &prompt37, 64, m.nv);
	if (memcmp(tuned, untuned, bytes))
		fail_msg("cpu-amx --tune (%s): logits differ from the untuned build's", how);
	tu_free(tuned);
	/* the file: the lines above, then one line of the kind per shape; each shape's drivers
	 * in model.c carry its block (the 128-token forward: the block itself) */
	char *file = read_text(tune), *code = read_text(model_c);
	assert_true(strncmp(file, pre, strlen(pre)) == 0);
	int shapes = 0, all = 0;
	int64_t ks[4], ns[4];
	for (char *line = file + strlen(pre); *line; line = strchr(line, '\n') + 1) {
		char tgt[32], lk[16];
		int64_t k, n;
		int t, rows, tokens;
		const char *tab = strchr(line, '\t');
		assert_non_null(strchr(line, '\n'));
		if (!tab || sscanf(tab + 1, "%31s\t%" SCNd64 "\t%" SCNd64 "\t%d\t%15s\t%d\t%d", tgt, &k,
				   &n, &t, lk, &rows, &tokens) != 7 ||
		    strcmp(tgt, "cpu-amx") || strcmp(lk, kind) || t != 128 || shapes >= 4)
			fail_msg("tuning file %s: unexpected line %.*s", tune,
				 (int)strcspn(line, "\n"), line);
		int match;
		amx_drivers(code, k, n, rows / 16, tokens, &all, &match);
		if (!match)
			fail_msg("model.c: no driver tmm_amx_k%" PRId64 "_n%" PRId64 "_r%d_t%d for "
				 "the block the file records", k, n, rows / 16, tokens);
		printf("cpu-amx --tune (%s): k %" PRId64 " n %" PRId64 ": amx_tile %dx%d\n", how,
		       k, n, rows, tokens);
		ks[shapes] = k;
		ns[shapes++] = n;
	}
	assert_int_equal(shapes, 4);
	tu_free(file);
	tu_free(code);
	/* read back without --tune: the same blocks, nothing measured */
	log = amx_tune_build(prog, emit, tune, flags);
	snprintf(want, sizeof want, "0 measured now, amx_tile set on %d matmuls", n_mm);
	if (!strstr(log, want))
		tu_fail_log(log, "read back: want \"%s\"", want);
	free(log);
	/* a choice for every shape that no timing makes (48 x 16), then an invalid one, which
	 * is not read: every driver is that block's */
	FILE *f = fopen(tune, "a");
	assert_non_null(f);
	for (int i = 0; i < shapes; i++)
		fprintf(f, "%s\tcpu-amx\t%" PRId64 "\t%" PRId64 "\t128\t%s\t48\t16\t1\n"
			   "%s\tcpu-amx\t%" PRId64 "\t%" PRId64 "\t128\t%s\t48\t32\t1\n",
			cpu, ks[i], ns[i], kind, cpu, ks[i], ns[i], kind);
	assert_int_equal(fclose(f), 0);
	log = amx_tune_build(prog, emit, tune, flags);
	free(log);
	code = read_text(model_c);
	int r3 = 0;
	for (int i = 0; i < shapes; i++) {
		int match;
		amx_drivers(code, ks[i], ns[i], 3, 16, &all, &match);
		r3 += match;
	}
	if (r3 != shapes || all != shapes)
		fail_msg("read back 48 x 16: want %d drivers, all _r3_t16, got %d of %d", shapes, r3,
			 all);
	tu_free(code);
	tuned = run_with("", prog, &prompt37, 64, m.nv);
	if (memcmp(tuned, untuned, bytes))
		fail_msg("cpu-amx amx_tile 48 x 16 from the tuning file: logits differ from the "
			 "untuned build's");
	tu_free(tuned);
	tu_free(untuned);
	tu_model_close(&m);
}

static void test_amx_tune_emulated(void **state)
{
	(void)state;
	need(NEED_AVX512, "--tune on cpu-amx, emulated tiles (the other kernels are AVX-512 "
			  "VNNI)");
	amx_tune(true);
}

static void test_amx_tune_hardware(void **state)
{
	(void)state;
	need(NEED_AMX, "--tune on cpu-amx, the instructions");
	amx_tune(false);
}

/* --tune on cpu-amx where the tiles cannot be timed: a host without AMX (and no
 * emulation), and an OS that refuses the tile state (played by the emulation): tune_kernels
 * says so, records nothing, sets no amx_tile, and the build succeeds. */
static void test_amx_tune_untimed(void **state)
{
	(void)state;
	need(NEED_AVX512, "--tune on cpu-amx, tiles not timed (the other kernels are AVX-512 "
			  "VNNI)");
	char tune[4096], prog[4096], emit[4096];
	snprintf(tune, sizeof tune, "%s", tu_tmp("amx_tune_none.tsv"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("amx_tune_none_prog"));
	snprintf(emit, sizeof emit, "%s", tu_tmp("amx_tune_none_emit"));
	static const struct {
		const char *flags, *why;
		bool amx_host_skips; /* the instructions would be timed there */
	} v[] = {
		{"", "this host has no AMX", true},
		{"--cflags '-DBN_AMX_EMULATE -DBN_AMX_EMULATE_DENY'",
		 "the OS refused the AMX tile state", false},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		if (v[i].amx_host_skips && host_has(NEED_AMX)) {
			printf("--tune on cpu-amx without emulation: this host has AMX, so the "
			       "tiles are timed; not checked here\n");
			continue;
		}
		unlink(tune);
		char extra[256];
		snprintf(extra, sizeof extra, "%s --tune", v[i].flags);
		char *log = amx_tune_build(prog, emit, tune, extra);
		if (!strstr(log, "AMX tiles were not timed") || !strstr(log, v[i].why) ||
		    !strstr(log, "0 measured now, amx_tile set on 0 matmuls"))
			tu_fail_log(log, "--tune %s: want \"AMX tiles were not timed: %s\" and no "
					 "amx_tile", v[i].flags, v[i].why);
		free(log);
		char *file = read_text(tune);
		if (file[0])
			fail_msg("--tune %s: nothing timed, yet the tuning file has: %s", v[i].flags,
				 file);
		tu_free(file);
		printf("--tune on cpu-amx %s: not timed (%s), build ok\n",
		       v[i].flags[0] ? v[i].flags : "(the instructions)", v[i].why);
	}
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
	 * where the CPU has AMX, BITNETC_CPU_MASK does not hide it, and Linux enables it) */
	char why[256];
	assert_int_equal(rt_cpu_enable("avx2 fma avx512_vnni", why, sizeof why), 0);
	int amx = rt_cpu_enable("avx512f amx_tile amx_int8", why, sizeof why);
	printf("AMX tile state from the OS: %s\n", amx ? why : "granted");
	if (f.amx_tile && f.amx_int8)
		assert_int_equal(amx, 0);
	else
		assert_int_equal(amx, -1);
}

/* BITNETC_CPU_MASK as the test found it, put back by mask_teardown. */
static char mask_saved[64];
static bool mask_was_set;

static void set_mask(const char *v)
{
	if (v)
		setenv(RT_CPU_MASK_ENV, v, 1);
	else
		unsetenv(RT_CPU_MASK_ENV);
}

static int mask_setup(void **state)
{
	(void)state;
	const char *v = getenv(RT_CPU_MASK_ENV);
	mask_was_set = v != NULL;
	snprintf(mask_saved, sizeof mask_saved, "%s", v ? v : "");
	return 0;
}

static int mask_teardown(void **state)
{
	set_mask(mask_was_set ? mask_saved : NULL);
	return tu_teardown(state);
}

/* BITNETC_CPU_MASK: each family keeps only its features and never adds one; an invalid
 * value is an error in rt_cpu_mask, in bitnetc and in a program; bitnetc version and
 * targets say the mask is on; a program the mask makes unrunnable is refused and the
 * refusal names the mask. */
static void test_cpu_mask(void **state)
{
	(void)state;
	char why[256];
	set_mask(NULL);
	RtCpuFeatures raw, det, f;
	rt_cpu_detect_unmasked(&raw);
	rt_cpu_detect(&det);
	assert_memory_equal(&raw, &det, sizeof raw); /* unset: nothing hidden */
	const char *fam = "x";
	assert_int_equal(rt_cpu_mask(&fam, why, sizeof why), 0);
	assert_null(fam);
	set_mask("");
	rt_cpu_detect(&det);
	assert_memory_equal(&raw, &det, sizeof raw); /* empty: the same */

	static const char *const fams[] = {"generic", "avx2", "avx512", "amx", "neon", "neon-dot",
					   "sve"};
	for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
		set_mask(fams[i]);
		assert_int_equal(rt_cpu_mask(&fam, why, sizeof why), 0);
		assert_string_equal(fam, fams[i]);
		rt_cpu_detect(&f);
		/* what the family keeps, as far as the CPU has it; nothing else */
		bool avx2 = i >= 1 && i <= 3, avx512 = i == 2 || i == 3, amx = i == 3;
		const struct {
			bool got, want;
		} t[] = {
			{f.x86, raw.x86},
			{f.sse4_2, raw.sse4_2 && avx2},
			{f.avx2, raw.avx2 && avx2},
			{f.fma, raw.fma && avx2},
			{f.f16c, raw.f16c && avx2},
			{f.avx_vnni, raw.avx_vnni && avx2},
			{f.avx512f, raw.avx512f && avx512},
			{f.avx512bw, raw.avx512bw && avx512},
			{f.avx512vl, raw.avx512vl && avx512},
			{f.avx512_vnni, raw.avx512_vnni && avx512},
			{f.avx512_vbmi, raw.avx512_vbmi && avx512},
			{f.amx_tile, raw.amx_tile && amx},
			{f.amx_int8, raw.amx_int8 && amx},
			{f.neon, raw.neon && i >= 4},
			{f.dotprod, raw.dotprod && i >= 5},
			{f.sve, raw.sve && i == 6},
		};
		for (size_t j = 0; j < sizeof t / sizeof t[0]; j++)
			if (t[j].got != t[j].want)
				fail_msg("BITNETC_CPU_MASK=%s: feature %zu of the table is %d, want %d",
					 fams[i], j, t[j].got, t[j].want);
	}
	set_mask("generic");
	assert_int_equal(rt_cpu_require("sse4.2", why, sizeof why), -1);
	char en[256];
	assert_int_equal(rt_cpu_enable("amx_tile", en, sizeof en), -1); /* hidden: not asked */
	assert_non_null(strstr(en, RT_CPU_MASK_ENV));

	/* invalid: an error, and the detection hides everything meanwhile */
	set_mask("avx-512");
	assert_int_equal(rt_cpu_mask(&fam, why, sizeof why), -1);
	assert_null(fam);
	assert_non_null(strstr(why, RT_CPU_MASK_ENV));
	assert_non_null(strstr(why, "'avx-512'"));
	rt_cpu_detect(&f);
	assert_false(f.avx2 || f.sse4_2 || f.avx512f || f.amx_tile || f.neon);
	char *log = NULL;
	int rc = tu_run(&log, "'%s' version", tu_bitnetc());
	if (rc != 1 || !strstr(log, "'avx-512' is not a feature family"))
		tu_fail_log(log, "bitnetc version with BITNETC_CPU_MASK=avx-512: want exit 1 and "
				 "the value named, got %d", rc);
	free(log);
	rc = tu_run(&log, "'%s' build '%s' -o '%s'", tu_bitnetc(),
		    tu_data("golden/models/tiny-b158-i2_s.gguf"), tu_tmp("mask_prog"));
	if (rc != 1 || !strstr(log, "'avx-512'"))
		tu_fail_log(log, "bitnetc build with BITNETC_CPU_MASK=avx-512: want exit 1, got %d",
			    rc);
	free(log);

	/* bitnetc says the mask is on, and native follows it */
	set_mask("generic");
	rc = tu_run(&log, "'%s' version", tu_bitnetc());
	if (rc || !strstr(log, "host features masked by BITNETC_CPU_MASK=generic") ||
	    !strstr(log, "CPU features: none"))
		tu_fail_log(log, "bitnetc version with BITNETC_CPU_MASK=generic");
	free(log);
	rc = tu_run(&log, "'%s' targets", tu_bitnetc());
	if (rc || !strstr(log, "host features masked by BITNETC_CPU_MASK=generic") ||
	    !strstr(log, "here: cpu-generic"))
		tu_fail_log(log, "bitnetc targets with BITNETC_CPU_MASK=generic");
	free(log);

	/* a program: built for avx2 (on any host), refused under the generic mask, naming
	 * the mask; an invalid mask is a usage error there too */
	char prog[4096];
	snprintf(prog, sizeof prog, "%s", tu_tmp("mask_prog"));
	set_mask(NULL);
	if (tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-avx2 --max-batch 1", tu_bitnetc(),
		   tu_data("golden/models/tiny-b158-i2_s.gguf"), prog))
		tu_fail_log(log, "build cpu-avx2");
	free(log);
	set_mask("generic");
	rc = tu_run(&log, "'%s' --tokens 496 -n 1", prog);
	if (rc != 2 || !strstr(log, "avx2 fma f16c") ||
	    !strstr(log, "host features masked by BITNETC_CPU_MASK=generic"))
		tu_fail_log(log, "cpu-avx2 program under BITNETC_CPU_MASK=generic: want exit 2 "
				 "naming the features and the mask, got %d", rc);
	free(log);
	set_mask("amx,avx2");
	rc = tu_run(&log, "'%s' --tokens 496 -n 1", prog);
	if (rc != 1 || !strstr(log, "'amx,avx2' is not a feature family"))
		tu_fail_log(log, "a program under BITNETC_CPU_MASK=amx,avx2: want exit 1, got %d", rc);
	free(log);
}

int main(void)
{
	static char names[N_FAMILIES][128];
	struct CMUnitTest tests[N_FAMILIES + 16];
	size_t n = 0;
	for (size_t i = 0; i < N_FAMILIES; i++) {
		family_name(&families[i], names[i], sizeof names[i]);
		tests[n++] = (struct CMUnitTest){names[i], test_family, NULL, tu_teardown,
						 (void *)(uintptr_t)&families[i]};
	}
	const struct CMUnitTest rest[] = {
		cmocka_unit_test_teardown(test_amx_tiles_emulated, tu_teardown),
		cmocka_unit_test_teardown(test_amx_tiles_hardware, tu_teardown),
		cmocka_unit_test_teardown(test_amx_emulated, tu_teardown),
		cmocka_unit_test_teardown(test_amx_hardware, tu_teardown),
		cmocka_unit_test_teardown(test_amx_refused, tu_teardown),
		cmocka_unit_test_teardown(test_amx_denied, tu_teardown),
		cmocka_unit_test_teardown(test_amx_tune_emulated, tu_teardown),
		cmocka_unit_test_teardown(test_amx_tune_hardware, tu_teardown),
		cmocka_unit_test_teardown(test_amx_tune_untimed, tu_teardown),
		cmocka_unit_test_teardown(test_neon_qemu, tu_teardown),
		cmocka_unit_test_teardown(test_sve_qemu, tu_teardown),
		cmocka_unit_test_teardown(test_rvv_qemu, tu_teardown),
		cmocka_unit_test_teardown(test_rvv_float_qemu, tu_teardown),
		cmocka_unit_test_teardown(test_t5_refused, tu_teardown),
		cmocka_unit_test(test_cpu_check),
		cmocka_unit_test_setup_teardown(test_cpu_mask, mask_setup, mask_teardown),
	};
	for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
		tests[n++] = rest[i];
	return _cmocka_run_group_tests("test_kernels", tests, n, NULL, NULL);
}
