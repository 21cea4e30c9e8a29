/* cg_cpu_detect.c - host CPU features (detected by the runtime's rt_cpu.c), used by `native`
 * and `targets`. */
#include "cg_cpu.h"

#include <stdio.h>
#include <string.h>

void cg_cpu_detect(CgCpuFeatures *f)
{
	rt_cpu_detect(f); /* the runtime's: the program checks with the same code */
}

const char *cg_cpu_arch(void)
{
#if defined(__x86_64__)
	return "x86_64";
#elif defined(__i386__)
	return "i386";
#elif defined(__aarch64__)
	return "aarch64";
#elif defined(__arm__)
	return "arm";
#elif defined(__riscv) && __riscv_xlen == 64
	return "riscv64";
#elif defined(__riscv)
	return "riscv";
#else
	return "unknown";
#endif
}

void cg_cpu_features_str(const CgCpuFeatures *f, char *buf, size_t n)
{
	/* ORDER CgCpuFeatures */
	const struct {
		bool on;
		const char *name;
	} t[] = {
		{f->sse4_2, "sse4.2"},         {f->avx2, "avx2"},         {f->fma, "fma"},
		{f->f16c, "f16c"},             {f->avx512f, "avx512f"},   {f->avx512bw, "avx512bw"},
		{f->avx512vl, "avx512vl"},     {f->avx512_vnni, "avx512_vnni"},
		{f->avx512_vbmi, "avx512_vbmi"}, {f->avx_vnni, "avx_vnni"}, {f->amx_tile, "amx_tile"},
		{f->amx_int8, "amx_int8"},     {f->neon, "neon"},
		{f->dotprod, "dotprod"},       {f->rvv, "rvv"},           {f->sve, "sve"},
	};
	size_t len = 0;
	if (n)
		buf[0] = 0;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		if (!t[i].on)
			continue;
		int k = snprintf(buf + len, n > len ? n - len : 0, "%s%s", len ? " " : "", t[i].name);
		if (k < 0 || (size_t)k >= (n > len ? n - len : 0))
			return; /* truncated; buf stays NUL-terminated */
		len += (size_t)k;
	}
	if (!len)
		snprintf(buf, n, "none");
}
