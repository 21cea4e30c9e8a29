/* test_targets.c - backend descriptors: CPU feature detection against /proc/cpuinfo, the
 * CPU target table, LLVM's NVPTX backend, the Metal descriptor (the registry over them:
 * test_backend.c). */
#include "testutil.h"
#include "cg_cpu.h"
#include "cg_cuda.h"
#include "cg_metal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The "flags" line of the first processor in /proc/cpuinfo, space-padded for word search;
 * NULL where there is none (not Linux, not x86). */
static char *cpuinfo_flags(void)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return NULL;
	char *line = NULL, *out = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		const char *c = strchr(line, ':');
		if (!c)
			break;
		size_t n = strlen(c + 1);
		out = malloc(n + 3);
		snprintf(out, n + 3, " %s", c + 1);
		char *nl = strchr(out, '\n');
		if (nl)
			*nl = 0;
		strcat(out, " ");
		break;
	}
	free(line);
	fclose(f);
	return out;
}

static bool has_flag(const char *flags, const char *name)
{
	char w[64];
	snprintf(w, sizeof w, " %s ", name);
	return strstr(flags, w) != NULL;
}

static void test_cpu_detect(void **state)
{
	(void)state;
	CgCpuFeatures f;
	/* /proc/cpuinfo shows the CPU as it is: detect without BITNETC_CPU_MASK (test_kernels
	 * tests the mask) */
	char *mask = getenv(RT_CPU_MASK_ENV) ? strdup(getenv(RT_CPU_MASK_ENV)) : NULL;
	unsetenv(RT_CPU_MASK_ENV);
	cg_cpu_detect(&f);
	if (mask)
		setenv(RT_CPU_MASK_ENV, mask, 1);
	free(mask);
	char s[256];
	cg_cpu_features_str(&f, s, sizeof s);
	print_message("host %s: %s\n", cg_cpu_arch(), s);
#if !defined(__x86_64__)
	assert_false(f.avx2 || f.avx512f || f.sse4_2);
	skip();
#else
	assert_true(f.x86);
	char *flags = cpuinfo_flags();
	if (!flags)
		skip();
	/* The kernel lists a flag only when the CPU has it and the OS supports its state,
	 * the same rule the detector applies; these must agree exactly. */
	const struct {
		bool have;
		const char *flag;
	} exact[] = {
		{f.avx2, "avx2"},
		{f.avx512f, "avx512f"},
		{f.avx512_vnni, "avx512_vnni"},
		{f.sse4_2, "sse4_2"},
		{f.fma, "fma"},
	};
	for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
		if (exact[i].have != has_flag(flags, exact[i].flag))
			fail_msg("%s: detector says %d, /proc/cpuinfo says %d", exact[i].flag,
				 exact[i].have, has_flag(flags, exact[i].flag));
	/* Whatever /proc/cpuinfo lists is usable, so the detector must find it too. */
	const struct {
		bool have;
		const char *flag;
	} listed[] = {
		{f.f16c, "f16c"},	  {f.avx512bw, "avx512bw"},   {f.avx512vl, "avx512vl"},
		{f.avx512_vbmi, "avx512vbmi"}, {f.avx_vnni, "avx_vnni"}, {f.amx_tile, "amx_tile"},
		{f.amx_int8, "amx_int8"},
	};
	for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++)
		if (has_flag(flags, listed[i].flag) && !listed[i].have)
			fail_msg("/proc/cpuinfo lists %s but the detector missed it", listed[i].flag);
	free(flags);
	/* Implications that hold on every real CPU. */
	if (f.avx512f)
		assert_true(f.avx2);
	if (f.avx512_vnni || f.avx512bw || f.avx512vl)
		assert_true(f.avx512f);
	if (f.amx_int8)
		assert_true(f.amx_tile);
#endif
}

static void test_features_str(void **state)
{
	(void)state;
	CgCpuFeatures f;
	memset(&f, 0, sizeof f);
	char s[64];
	cg_cpu_features_str(&f, s, sizeof s);
	assert_string_equal(s, "none");
	f.sse4_2 = f.avx2 = f.avx512_vnni = true;
	cg_cpu_features_str(&f, s, sizeof s);
	assert_string_equal(s, "sse4.2 avx2 avx512_vnni");
	char tiny[8];
	cg_cpu_features_str(&f, tiny, sizeof tiny);
	assert_true(strlen(tiny) < sizeof tiny); /* truncated, still terminated */
}

static const CgTargetInfo *find(const CgTargetInfo *t, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return &t[i];
	fail_msg("target %s not listed", name);
	abort(); /* not reached: fail_msg does not return */
}

static void test_cpu_targets(void **state)
{
	(void)state;
	CgTargetInfo t[12];
	CgCpuFeatures f;
	memset(&f, 0, sizeof f);
	f.x86 = f.sse4_2 = f.avx2 = f.fma = f.f16c = true;
	int n = cg_cpu_targets(&f, t, 12);
	assert_int_equal(n, 10);
	assert_true(find(t, n, "cpu-generic")->usable);
	assert_true(find(t, n, "cpu-avx2")->usable);
	assert_false(find(t, n, "cpu-avx512")->usable);
	assert_false(find(t, n, "cpu-neon")->usable);
	assert_false(find(t, n, "cpu-neon-dot")->usable);
	/* not runnable here, but buildable with a cross compiler: the note says how */
	assert_non_null(strstr(find(t, n, "cpu-neon")->note, "--cc aarch64-linux-gnu-gcc"));
	assert_true(find(t, n, "native")->usable);
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-avx2"));
	for (int i = 0; i < n; i++) {
		assert_string_equal(t[i].backend, "cpu");
		assert_true(t[i].buildable); /* usable here or not: a C compiler for it builds it */
	}

	f.avx512f = f.avx512bw = f.avx512vl = true;
	n = cg_cpu_targets(&f, t, 12);
	assert_true(find(t, n, "cpu-avx512")->usable);
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-avx512"));

	/* AMX needs the tiles on top of AVX-512 VNNI; without them the note says what is
	 * missing and how to build it anyway (emulated tiles) */
	f.avx512_vnni = true;
	n = cg_cpu_targets(&f, t, 12);
	assert_false(find(t, n, "cpu-amx")->usable);
	assert_non_null(strstr(find(t, n, "cpu-amx")->note, "lacks amx_tile/amx_int8"));
	assert_non_null(strstr(find(t, n, "cpu-amx")->note, "-DBN_AMX_EMULATE"));
	f.amx_tile = f.amx_int8 = true;
	n = cg_cpu_targets(&f, t, 12);
	assert_true(find(t, n, "cpu-amx")->usable);
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-amx"));
	f.amx_tile = f.amx_int8 = f.avx512_vnni = false;

	/* AVX2 without FMA is not enough for the AVX2 kernels. */
	f.fma = false;
	f.avx512f = false;
	n = cg_cpu_targets(&f, t, 12);
	assert_false(find(t, n, "cpu-avx2")->usable);
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-generic"));

	memset(&f, 0, sizeof f);
	f.neon = true;
	n = cg_cpu_targets(&f, t, 12);
	assert_true(find(t, n, "cpu-neon")->usable);
	assert_false(find(t, n, "cpu-neon-dot")->usable);
	assert_non_null(strstr(find(t, n, "cpu-neon-dot")->note, "lacks dotprod"));
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-neon"));
	assert_false(find(t, n, "cpu-avx2")->usable);
	assert_non_null(strstr(find(t, n, "cpu-avx2")->note, "x86-64"));
	f.dotprod = true;
	n = cg_cpu_targets(&f, t, 12);
	assert_true(find(t, n, "cpu-neon-dot")->usable);
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-neon-dot"));
	assert_false(find(t, n, "cpu-sve")->usable);
	assert_non_null(strstr(find(t, n, "cpu-sve")->note, "lacks sve"));
	/* SVE: native takes it only where its vectors are wider than NEON's */
	f.sve = true;
	f.sve_bits = 128;
	n = cg_cpu_targets(&f, t, 12);
	assert_true(find(t, n, "cpu-sve")->usable);
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-neon-dot"));
	f.sve_bits = 256;
	n = cg_cpu_targets(&f, t, 12);
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-sve"));
	f.sve = f.dotprod = false;

	assert_false(find(t, n, "cpu-rv64")->usable);
	assert_false(find(t, n, "cpu-rvv")->usable);

	/* RISC-V: rv64gc runs the portable kernels, rvv needs the vector extension; not
	 * runnable elsewhere, the notes say how to build them there */
	memset(&f, 0, sizeof f);
	n = cg_cpu_targets(&f, t, 12);
	assert_non_null(strstr(find(t, n, "cpu-rv64")->note, "--cc riscv64-linux-gnu-gcc"));
	assert_non_null(strstr(find(t, n, "cpu-rvv")->note, "--target=riscv64-linux-gnu"));
	assert_false(find(t, n, "cpu-sve")->usable);
	assert_non_null(strstr(find(t, n, "cpu-sve")->note, "--cc aarch64-linux-gnu-gcc"));
	f.rv64 = true;
	n = cg_cpu_targets(&f, t, 12);
	assert_true(find(t, n, "cpu-rv64")->usable);
	assert_false(find(t, n, "cpu-rvv")->usable);
	assert_non_null(strstr(find(t, n, "cpu-rvv")->note, "lacks the vector extension"));
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-generic"));
	f.rvv = true;
	n = cg_cpu_targets(&f, t, 12);
	assert_true(find(t, n, "cpu-rvv")->usable);
	assert_non_null(strstr(find(t, n, "native")->note, "cpu-rvv"));

	assert_int_equal(cg_cpu_targets(&f, t, 2), 2); /* honours max */
}

/* cpu-amx: the AVX-512 VNNI kernels plus AMX; the program checks the tile features (a
 * -DBN_AMX_EMULATE build drops them: test_kernels), model.c gets the tile flags. */
static void test_amx_target(void **state)
{
	(void)state;
	CgIsa isa;
	char feat[256];
	cg_cpu_target_isa("cpu-amx", &isa, feat, sizeof feat);
	assert_int_equal(isa.level, CG_ISA_AVX512);
	assert_true(isa.vnni && isa.amx);
	assert_string_equal(feat, "avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni amx_tile "
				  "amx_int8");
	const CgCpuTarget *t = cg_cpu_target("cpu-amx");
	assert_non_null(t);
	bool tile = false, int8 = false;
	for (int i = 0; t->cflags[i]; i++) {
		tile |= strcmp(t->cflags[i], "-mamx-tile") == 0;
		int8 |= strcmp(t->cflags[i], "-mamx-int8") == 0;
	}
	assert_true(tile && int8);
	assert_non_null(strstr(cg_target_names(), "cpu-amx"));
	cg_cpu_target_isa("cpu-avx512", &isa, feat, sizeof feat);
	assert_false(isa.amx);
	/* native uses AMX exactly when the host has it */
	CgCpuFeatures f;
	cg_cpu_detect(&f);
	cg_cpu_target_isa("native", &isa, feat, sizeof feat);
	assert_int_equal(isa.amx, isa.level == CG_ISA_AVX512 && f.amx_tile && f.amx_int8);
}

/* The NEON targets: their ISA (vnni meaning the dot product), the features the program
 * checks at start, and the -march the model is compiled with. */
static void test_neon_targets(void **state)
{
	(void)state;
	static const struct {
		const char *name, *features, *march;
		bool dot;
	} v[] = {
		{"cpu-neon", "neon", "-march=armv8-a", false},
		{"cpu-neon-dot", "neon dotprod", "-march=armv8.2-a+dotprod", true},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		CgIsa isa;
		char feat[128];
		cg_cpu_target_isa(v[i].name, &isa, feat, sizeof feat);
		assert_int_equal(isa.level, CG_ISA_NEON);
		assert_int_equal(isa.vnni, v[i].dot);
		assert_string_equal(feat, v[i].features);
		const CgCpuTarget *t = cg_cpu_target(v[i].name);
		assert_non_null(t);
		assert_non_null(t->cflags);
		assert_string_equal(t->cflags[0], v[i].march);
		assert_null(t->cflags[1]);
		assert_non_null(strstr(cg_target_names(), v[i].name));
	}
	/* native follows the host: NEON exactly on aarch64 */
	CgIsa isa;
	char feat[256];
	cg_cpu_target_isa("native", &isa, feat, sizeof feat);
	assert_int_equal(isa.level == CG_ISA_NEON, strcmp(cg_cpu_arch(), "aarch64") == 0);
}

/* cpu-sve: its ISA, the features the program checks at start, the -march model.c is
 * compiled with (no +dotprod: SVE's sdot is its own) and its machine. */
static void test_sve_target(void **state)
{
	(void)state;
	CgIsa isa;
	char feat[128];
	cg_cpu_target_isa("cpu-sve", &isa, feat, sizeof feat);
	assert_int_equal(isa.level, CG_ISA_SVE);
	assert_false(isa.vnni || isa.vbmi || isa.amx);
	assert_string_equal(feat, "neon sve");
	const CgCpuTarget *t = cg_cpu_target("cpu-sve");
	assert_non_null(t);
	assert_string_equal(t->cflags[0], "-march=armv8.2-a+sve");
	assert_null(t->cflags[1]);
	assert_string_equal(t->arch, "aarch64");
	assert_non_null(strstr(cg_target_names(), "cpu-sve"));
	/* native takes SVE only on an aarch64 host */
	cg_cpu_target_isa("native", &isa, feat, sizeof feat);
	if (isa.level == CG_ISA_SVE)
		assert_string_equal(cg_cpu_arch(), "aarch64");
}

/* The RISC-V targets: their ISA, the features the program checks at start, the -march the
 * model is compiled with and the machine their programs are for (the check of what the
 * compiler wrote and the hint for a host compiler use it). */
static void test_riscv_targets(void **state)
{
	(void)state;
	static const struct {
		const char *name, *features, *march;
		int level;
	} v[] = {
		{"cpu-rv64", "", "-march=rv64gc", CG_ISA_GENERIC},
		{"cpu-rvv", "rvv", "-march=rv64gcv", CG_ISA_RVV},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		CgIsa isa;
		char feat[128];
		cg_cpu_target_isa(v[i].name, &isa, feat, sizeof feat);
		assert_int_equal(isa.level, v[i].level);
		assert_false(isa.vnni || isa.vbmi || isa.amx);
		assert_string_equal(feat, v[i].features);
		const CgCpuTarget *t = cg_cpu_target(v[i].name);
		assert_non_null(t);
		assert_string_equal(t->cflags[0], v[i].march);
		assert_null(t->cflags[1]);
		assert_string_equal(t->arch, "riscv");
		assert_non_null(strstr(cg_target_names(), v[i].name));
	}
	/* every row but the portable ones names its machine and a cross compiler for it */
	static const char *const all[] = {"cpu-avx2", "cpu-avx512", "cpu-amx", "cpu-neon",
					  "cpu-neon-dot", "cpu-sve", "cpu-rv64", "cpu-rvv"};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		const CgCpuTarget *t = cg_cpu_target(all[i]);
		assert_non_null(t);
		assert_non_null(t->arch);
		assert_non_null(strstr(t->cross, "--cc "));
		assert_true(t->cc_marks[0] != 0);
	}
	assert_null(cg_cpu_target("cpu-generic")->arch);
	assert_null(cg_cpu_target("native")->arch);
}

static void test_cuda_probe(void **state)
{
	(void)state;
	CgCudaInfo ci;
	cg_cuda_probe(&ci);
	print_message("LLVM %u.%u.%u nvptx=%d ptxas=%s\n", ci.llvm_major, ci.llvm_minor,
		      ci.llvm_patch, ci.nvptx, ci.ptxas[0] ? ci.ptxas : "(none)");
	assert_int_equal(ci.llvm_major, 19); /* the build links LLVM 19 */
	if (!ci.nvptx)
		fail_msg("NVPTX not found through LLVM: %s", ci.nvptx_note);
	if (ci.ptxas[0])
		assert_int_equal(access(ci.ptxas, X_OK), 0);
	/* Probing twice is harmless (LLVM's initializers are idempotent). */
	CgCudaInfo again;
	cg_cuda_probe(&again);
	assert_int_equal(again.nvptx, ci.nvptx);

	CgTargetInfo t[8];
	assert_int_equal(cg_cuda_targets(&ci, t, 8), 5);
	static const char *const names[] = {"cuda-sm80", "cuda-sm86", "cuda-sm89", "cuda-sm90", "cuda"};
	bool gpu = cg_cuda_host_cc() > 0;
	for (int i = 0; i < 5; i++) {
		assert_string_equal(t[i].name, names[i]);
		assert_string_equal(t[i].backend, "cuda");
		assert_true(t[i].buildable); /* this host's LLVM emits PTX */
		assert_non_null(strstr(t[i].note, "NVPTX"));
		if (!gpu) /* usable: only where the GPU is */
			assert_false(t[i].usable);
	}
	if (!gpu)
		print_message("no GPU here: every cuda target builds, none is usable\n");
	assert_int_equal(cg_cuda_targets(&ci, t, 2), 2); /* honours max */
	assert_int_equal(cg_cuda_targets(&ci, t, 0), 0);
}

/* ptxas is found through $CUDA_PATH and $PATH, not only its default place. */
static void test_ptxas_search(void **state)
{
	(void)state;
	const char *dir = tu_tmp("fake-cuda/bin");
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "mkdir -p '%s' && printf '#!/bin/sh\\n' > '%s/ptxas' && "
				  "chmod +x '%s/ptxas'",
		 dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	const char *old = getenv("CUDA_PATH");
	char *saved = old ? strdup(old) : NULL;
	setenv("CUDA_PATH", tu_tmp("fake-cuda"), 1);
	CgCudaInfo ci;
	cg_cuda_probe(&ci);
	if (saved) {
		setenv("CUDA_PATH", saved, 1);
		free(saved);
	} else {
		unsetenv("CUDA_PATH");
	}
	char want[1100];
	snprintf(want, sizeof want, "%s/ptxas", dir);
	assert_string_equal(ci.ptxas, want);
}

static void test_metal(void **state)
{
	(void)state;
	CgTargetInfo t[1];
	assert_int_equal(cg_metal_targets(t, 1), 1);
	assert_string_equal(t[0].name, "metal");
	assert_true(t[0].buildable);
#if defined(__APPLE__)
	assert_true(t[0].usable);
#else
	assert_false(t[0].usable);
	assert_non_null(strstr(t[0].note, "needs macOS"));
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpu_detect),   cmocka_unit_test(test_features_str),
		cmocka_unit_test(test_cpu_targets),  cmocka_unit_test(test_amx_target),
		cmocka_unit_test(test_neon_targets),
		cmocka_unit_test(test_sve_target),
		cmocka_unit_test(test_riscv_targets),
		cmocka_unit_test(test_cuda_probe),
		cmocka_unit_test(test_ptxas_search), cmocka_unit_test(test_metal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
