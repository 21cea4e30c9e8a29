/* cg_cpu_backend.c - the CPU backend behind cg.h's interface: its targets, what the passes
 * ask of them (features, the preferred weight layout, the kernels' cost model, tuning),
 * the C emitter and the build (model.c and the runtime compiled into one program). */
#include "cg_cpu.h"

#include <stdio.h>
#include <string.h>

static bool cpu_claims(const char *name)
{
	return name && cg_cpu_target(name) != NULL;
}

static int cpu_targets(CgTargetInfo *out, int max)
{
	CgCpuFeatures f;
	cg_cpu_detect(&f);
	return cg_cpu_targets(&f, out, max);
}

static int isa_vector_bits(const CgIsa *isa)
{
	switch (isa->level) {
	case CG_ISA_AVX512: return 512;
	case CG_ISA_AVX2: return 256;
	case CG_ISA_NEON: return 128;
	case CG_ISA_RVV: return 128; /* vector-length agnostic: the least VLEN of RVV 1.0 */
	case CG_ISA_SVE: return 128; /* vector-length agnostic: SVE's least */
	default: return 0;
	}
}

/* A target's kernels (or the host's: NULL name, the CPU as detected, its best ISA). */
static void cpu_describe(const char *name, CgTargetDesc *d)
{
	CgIsa isa;
	char feats[sizeof d->features];
	memset(d, 0, sizeof *d);
	cg_cpu_target_isa(name ? name : "native", &isa, feats, sizeof feats);
	d->arch = cg_cpu_arch();
	if (name) {
		snprintf(d->features, sizeof d->features, "%s", feats);
		const CgCpuTarget *t = cg_cpu_target(name);
		if (t && t->arch) /* a cross build: the program's machine */
			d->arch = !strcmp(t->arch, "x86-64") ? "x86_64"
				  : !strcmp(t->arch, "riscv") ? "riscv64" : t->arch;
	} else {
		CgCpuFeatures f;
		cg_cpu_detect(&f);
		cg_cpu_features_str(&f, d->features, sizeof d->features);
	}
	d->vector_bits = isa_vector_bits(&isa);
	/* without SIMD kernels (cpu-generic) the GGUF layout: its portable kernel (a row
	 * decoded once, then K-long dot products the C compiler vectorizes) runs 1.75x faster
	 * on prefill than the i2s_x16 LUT kernel and 3.9x faster than the i2s_x16
	 * multiply-add one (2B shape, bench/run.sh PORTABLE_ROWS=1) */
	d->weight_layout = isa.level == CG_ISA_GENERIC ? "gguf" : "i2s_x16";
	/* RVV's kernel reads the GGUF rows themselves, vector-length agnostic (cg_cpu_rvv.c) */
	if (isa.level == CG_ISA_RVV || isa.level == CG_ISA_SVE) /* and SVE's (cg_cpu_sve.c) */
		d->weight_layout = "gguf";
}

/* The cost model: the generated kernels' vector instruction counts per 64-byte chunk
 * (16 rows x 16 k) and token. They pick the multiply-add family wherever the target has
 * int8 dot products (vpdpbusd, sdot) or maddubs, and LUT for portable C on i2s_x16, where
 * two table loads replace four multiplies and the code unpacking (measured 2.3-2.7x
 * faster). */
static CgKernelCost mad_cost(const CgIsa *isa)
{
	switch (isa->level) {
	case CG_ISA_AVX512: /* load, 3 shifts, 4 ands; 4 broadcasts + 4 vpdpbusd */
		return (CgKernelCost){8, 8, 8};
	case CG_ISA_AVX2:
		/* two ymm halves; 4 broadcasts + 8 vpdpbusd, or + 8 maddubs + 8 int16 adds (the
		 * madd and int32 add once per 8 chunks) */
		return (CgKernelCost){16, isa->vnni ? 12 : 20, 4};
	case CG_ISA_NEON: /* four q registers; sdot, or smull/smlal + addp + sadalp */
		return isa->vnni ? (CgKernelCost){20, 17, 4} : (CgKernelCost){20, 44, 2};
	default: /* scalar: per byte 4 x (shift, and, multiply, add) plus the loop */
		return (CgKernelCost){0, 1280, 1};
	}
}

static CgKernelCost lut_cost(const CgIsa *isa)
{
	switch (isa->level) {
	case CG_ISA_AVX512: /* load, and, shift, 2 ors; 4 table loads, 4 vpermb, 4 unpacks, 4 adds */
		return (CgKernelCost){5, 16, 4};
	case CG_ISA_NEON: /* per q register: and/shift + orr; 2 tbl (4 registers each), 2 zips, 2 adds */
		return (CgKernelCost){12, 104, 2};
	default: /* scalar: per byte two indices, two table loads, two adds */
		return (CgKernelCost){0, 448, 1};
	}
}

static bool cpu_kernel_cost(const char *name, const char *kind, CgKernelCost *c, char *why,
			    size_t why_n)
{
	CgIsa isa;
	char feats[256];
	cg_cpu_target_isa(name, &isa, feats, sizeof feats);
	if (isa.level == CG_ISA_RVV || isa.level == CG_ISA_SVE) /* i2s_x16: the portable ones */
		isa.level = CG_ISA_GENERIC;
	if (strcmp(kind, "simd") == 0) {
		*c = mad_cost(&isa);
		return true;
	}
	if (strcmp(kind, "lut") == 0 && cg_lut_available(&isa)) {
		*c = lut_cost(&isa);
		return true;
	}
	snprintf(why, why_n, "%s", strcmp(kind, "lut") == 0
					   ? "AVX-512 needs avx512_vbmi; AVX2 has none"
					   : "no such kernel family");
	return false;
}

static const CgSource *cpu_runtime(int *n)
{
	*n = cg_n_runtime_sources;
	return cg_runtime_sources;
}

/* What a build writes into its source directory: model.c (the main source), its object,
 * the runtime sources. */
static int cpu_emit_files(const char **names, int max)
{
	int n = 0;
	if (n < max)
		names[n++] = "model.c";
	if (n < max)
		names[n++] = "model.o";
	for (int i = 0; i < cg_n_runtime_sources && n < max; i++)
		names[n++] = cg_runtime_sources[i].name;
	/* a --server program's */
	for (int i = 0; i < cg_n_runtime_server_sources && n < max; i++)
		names[n++] = cg_runtime_server_sources[i].name;
	/* a library's (--lib, --shared): its files and the runtime's objects */
	for (int i = 0; i < cg_n_lib_file_names && n < max; i++)
		names[n++] = cg_lib_file_names[i];
	for (int i = 0; cg_lib_object_name(i) && n < max; i++)
		names[n++] = cg_lib_object_name(i);
	return n;
}

/* `bitnetc version`: the host's architecture and CPU features (less those masked). */
static void cpu_host_info(char *buf, size_t n)
{
	CgCpuFeatures f;
	char feats[256];
	cg_cpu_detect(&f);
	cg_cpu_features_str(&f, feats, sizeof feats);
	snprintf(buf, n, "host: %s, CPU features: %s\n", cg_cpu_arch(), feats);
}

/* model.c and the runtime into one executable, then a look at what the compiler wrote. */
static int cpu_build(const CgOpts *o, const char *dir, const char *out_path, const char *shown,
		     char *cmd, size_t cmd_n, BnErr *e)
{
	const char *name = o->target ? o->target : "";
	const CgCpuTarget *t = cg_cpu_target(name);
	if (!t)
		return bn_err(e, BN_EINVAL, "build: '%s' is not a CPU target", name);
	if (cg_cc(o, t, dir, out_path, cmd, cmd_n, e))
		return bn_err_prefix(e, "build");
	const char *cc = o->cc ? o->cc : "cc";
	if (o->lib == CG_LIB_STATIC) { /* an archive of one object: that object */
		char obj[4200];
		snprintf(obj, sizeof obj, "%s/bn_lib.o", dir);
		return cg_check_output(obj, shown, cc, t->name, true, e);
	}
	return cg_check_output(out_path, shown, cc, t->name, false, e);
}

const CgBackend cg_backend_cpu = {
	.name = "cpu",
	.desc = "C kernels per instruction set, compiled with a C compiler into one program",
	.targets = cpu_targets,
	.claims = cpu_claims,
	.buildable = cpu_claims,
	.describe = cpu_describe,
	.kernel_cost = cpu_kernel_cost,
	.tune_run = cg_cpu_tune_run,
	.gemm_tile = cg_cpu_gemm_tile,
	.tune_tiles = cg_cpu_tune_tiles,
	.emit = cg_cpu_emit,
	.runtime = cpu_runtime,
	.build = cpu_build,
	.emit_files = cpu_emit_files,
	.tree = cg_cpu_tree,
	.product = CG_PRODUCT_EXECUTABLE,
	.host_info = cpu_host_info,
};
