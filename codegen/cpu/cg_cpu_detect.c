/* cg_cpu_detect.c - host CPU feature detection (cpuid/xgetbv), used by `native` and `targets`. */
#include "cg_cpu.h"

#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 via the raw instruction: the _xgetbv intrinsic would need -mxsave for this file. */
static unsigned long long xgetbv0(void)
{
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((unsigned long long)hi << 32) | lo;
}

static void detect_x86(CgCpuFeatures *f)
{
	unsigned a, b, c, d;
	f->x86 = true;
	unsigned max = __get_cpuid_max(0, NULL);
	if (max < 1 || !__get_cpuid(1, &a, &b, &c, &d))
		return;
	bool sse42 = c & (1u << 20), fma = c & (1u << 12), f16c = c & (1u << 29);
	bool osxsave = c & (1u << 27), avx = c & (1u << 28);
	f->sse4_2 = sse42;

	/* The CPU flags alone are not enough: the OS must enable saving of the YMM, ZMM and
	 * tile state in XCR0, or the first such instruction faults. */
	unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
	bool os_avx = (xcr0 & 0x6) == 0x6;          /* SSE + AVX state */
	bool os_avx512 = (xcr0 & 0xe6) == 0xe6;     /* + opmask, ZMM_Hi256, Hi16_ZMM */
	bool os_amx = (xcr0 & 0x60000) == 0x60000;  /* XTILECFG + XTILEDATA */
	if (!(avx && os_avx))
		return;
	f->fma = fma;
	f->f16c = f16c;
	if (max < 7)
		return;
	unsigned max7;
	__cpuid_count(7, 0, max7, b, c, d);
	f->avx2 = b & (1u << 5);
	if (os_avx512) {
		f->avx512f = b & (1u << 16);
		f->avx512bw = b & (1u << 30);
		f->avx512vl = b & (1u << 31);
		f->avx512_vbmi = c & (1u << 1);
		f->avx512_vnni = c & (1u << 11);
	}
	/* Linux also wants arch_prctl(ARCH_REQ_XCOMP_PERM) per process before tiles are used;
	 * that is the generated binary's business, not detection's. */
	if (os_amx) {
		f->amx_tile = d & (1u << 24);
		f->amx_int8 = d & (1u << 25);
	}
	if (max7 >= 1) {
		unsigned a1, b1, c1, d1;
		__cpuid_count(7, 1, a1, b1, c1, d1);
		f->avx_vnni = a1 & (1u << 4);
	}
}
#endif

void cg_cpu_detect(CgCpuFeatures *f)
{
	memset(f, 0, sizeof *f);
#if defined(__x86_64__) || defined(__i386__)
	detect_x86(f);
#elif defined(__aarch64__)
	f->neon = true; /* Advanced SIMD is mandatory in AArch64 */
#endif
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
