/* cg_cpu.h - the CPU backend: host feature detection and its targets (the C emitter
 * for the portable, AVX2 and AVX-512 variants arrives with the code generator). */
#ifndef BITNETC_CG_CPU_H
#define BITNETC_CG_CPU_H

#include "../cg.h"

/* Instruction set features the CPU kernels may use. A feature counts only when the CPU
 * has it and the OS saves its register state (XCR0), i.e. when code using it can run. */
typedef struct {
	bool x86;
	bool sse4_2, avx2, fma, f16c;
	bool avx512f, avx512bw, avx512vl, avx512_vnni, avx512_vbmi;
	bool avx_vnni;
	bool amx_tile, amx_int8;
	bool neon; /* aarch64 */
} CgCpuFeatures;

/* ---- cg_cpu_detect.c ---- */

/* Fills f for the host (cpuid + xgetbv on x86-64; NEON on aarch64; nothing elsewhere). */
void cg_cpu_detect(CgCpuFeatures *f);
/* Space-separated names of the present features ("sse4.2 avx2 fma ...", or "none"). */
void cg_cpu_features_str(const CgCpuFeatures *f, char *buf, size_t n);
/* "x86_64", "aarch64", ... as compiled. */
const char *cg_cpu_arch(void);

/* ---- cg_cpu_targets.c ---- */

/* The CPU targets (cpu-generic, cpu-avx2, cpu-avx512, cpu-neon, native) with their
 * availability on a host with features f. Returns how many were written (at most max). */
int cg_cpu_targets(const CgCpuFeatures *f, CgTargetInfo *out, int max);

#endif
