/* rt_cpu.c - does this CPU have the instruction set extensions the model code was compiled
 * for? Checked by the program before it calls any generated code, so that a binary built
 * for AVX-512 says so on an AVX2 machine instead of dying on SIGILL. This file is compiled
 * for the baseline of the architecture, never with the model's flags. BITNETC_CPU_MASK
 * hides features from the detection, so that tests run a lesser host's paths. */
#include "rt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
/* The kernel sets it only when the CPU has SDOT/UDOT and lets user space run them (glibc's
 * <bits/hwcap.h> defines it; older headers may not). */
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
/* Set when the CPU has SVE and the kernel saves its registers; PR_SVE_GET_VL reads the
 * thread's vector length without an SVE instruction (this file is built without +sve). */
#include <sys/prctl.h>
#ifndef HWCAP_SVE
#define HWCAP_SVE (1UL << 22)
#endif
#ifndef PR_SVE_GET_VL
#define PR_SVE_GET_VL 51
#endif
#ifndef PR_SVE_VL_LEN_MASK
#define PR_SVE_VL_LEN_MASK 0xffff
#endif
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#elif defined(__riscv) && defined(__linux__)
#include <sys/auxv.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 via the raw instruction: the _xgetbv intrinsic would need -mxsave for this file. */
static unsigned long long xgetbv0(void)
{
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((unsigned long long)hi << 32) | lo;
}

static void detect_x86(RtCpuFeatures *f)
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
	/* AMX-TILE and AMX-INT8 are cpuid(7,0).EDX bits 24 and 25. Linux also wants
	 * arch_prctl(ARCH_REQ_XCOMP_PERM) once per process before tiles are used: that is
	 * rt_cpu_enable's business, not detection's. */
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

/* BITNETC_CPU_MASK=FAMILY: the features each family keeps; everything else is hidden.
 * ORDER RtCpuFeatures */
enum { KEEP_AVX2 = 1, KEEP_AVX512 = 2, KEEP_AMX = 4, KEEP_NEON = 8, KEEP_DOT = 16, KEEP_RVV = 32,
       KEEP_SVE = 64 };
static const struct {
	const char *name;
	unsigned keep;
} rt_cpu_families[] = {
	{"generic", 0},
	{"avx2", KEEP_AVX2},
	{"avx512", KEEP_AVX2 | KEEP_AVX512},
	{"amx", KEEP_AVX2 | KEEP_AVX512 | KEEP_AMX},
	{"neon", KEEP_NEON},
	{"neon-dot", KEEP_NEON | KEEP_DOT},
	{"sve", KEEP_NEON | KEEP_DOT | KEEP_SVE},
	{"rvv", KEEP_RVV},
};
enum { N_FAMILIES = sizeof rt_cpu_families / sizeof rt_cpu_families[0] };

/* The family index BITNETC_CPU_MASK names; -1 unset (or empty), -2 invalid. */
static int mask_family(const char **value)
{
	const char *v = getenv(RT_CPU_MASK_ENV);
	*value = v;
	if (!v || !*v)
		return -1;
	for (int i = 0; i < N_FAMILIES; i++)
		if (!strcmp(v, rt_cpu_families[i].name))
			return i;
	return -2;
}

int rt_cpu_mask(const char **family, char *why, size_t n)
{
	const char *v;
	int i = mask_family(&v);
	*family = i >= 0 ? rt_cpu_families[i].name : NULL;
	if (n)
		why[0] = 0;
	if (i != -2)
		return 0;
	snprintf(why, n, "%s: '%.40s' is not a feature family (generic, avx2, avx512, amx, neon, "
			 "neon-dot, sve, rvv)", RT_CPU_MASK_ENV, v);
	return -1;
}

/* Hides what the family does not keep; an invalid value hides everything (the callers
 * that can report it refuse to go on: rt_cpu_mask). */
static void mask_apply(RtCpuFeatures *f)
{
	const char *v;
	int i = mask_family(&v);
	if (i == -1)
		return;
	unsigned k = i >= 0 ? rt_cpu_families[i].keep : 0;
	bool avx2 = k & KEEP_AVX2, avx512 = k & KEEP_AVX512, amx = k & KEEP_AMX;
	f->sse4_2 &= avx2;
	f->avx2 &= avx2;
	f->fma &= avx2;
	f->f16c &= avx2;
	f->avx_vnni &= avx2;
	f->avx512f &= avx512;
	f->avx512bw &= avx512;
	f->avx512vl &= avx512;
	f->avx512_vnni &= avx512;
	f->avx512_vbmi &= avx512;
	f->amx_tile &= amx;
	f->amx_int8 &= amx;
	f->neon &= (k & KEEP_NEON) != 0;
	f->dotprod &= (k & KEEP_DOT) != 0;
	f->rvv &= (k & KEEP_RVV) != 0;
	f->sve &= (k & KEEP_SVE) != 0;
	if (!f->sve)
		f->sve_bits = 0;
}

void rt_cpu_detect(RtCpuFeatures *f)
{
	rt_cpu_detect_unmasked(f);
	mask_apply(f);
}

void rt_cpu_detect_unmasked(RtCpuFeatures *f)
{
	memset(f, 0, sizeof *f);
#if defined(__x86_64__) || defined(__i386__)
	detect_x86(f);
#elif defined(__aarch64__)
	f->neon = true; /* Advanced SIMD is mandatory in AArch64 */
	/* The ID registers are privileged: ask the OS, which also knows whether it lets us. */
#if defined(__linux__)
	f->dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
	f->sve = (getauxval(AT_HWCAP) & HWCAP_SVE) != 0;
	if (f->sve) {
		int vl = prctl(PR_SVE_GET_VL, 0, 0, 0, 0);
		f->sve_bits = vl > 0 ? (vl & PR_SVE_VL_LEN_MASK) * 8 : 128; /* 128: the least */
	}
#elif defined(__APPLE__)
	int v = 0;
	size_t len = sizeof v;
	f->dotprod = sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, NULL, 0) == 0 && v;
#endif
#elif defined(__riscv) && defined(__linux__)
	/* Linux sets the single-letter extensions as HWCAP bits (bit 'V' - 'A' for the vector
	 * extension 1.0) when it enables the vector state for user space */
	f->rv64 = __riscv_xlen == 64;
	f->rvv = (getauxval(AT_HWCAP) & (1UL << ('V' - 'A'))) != 0;
#endif
}

/* Whether the CPU (and the OS, for register state) has feature name; -1: a name this
 * runtime does not know. */
static int rt_cpu_has(const RtCpuFeatures *f, const char *name)
{
	const struct {
		const char *name;
		bool on;
	} t[] = {
		{"sse4.2", f->sse4_2},	     {"avx2", f->avx2},
		{"fma", f->fma},	     {"f16c", f->f16c},
		{"avx512f", f->avx512f},     {"avx512bw", f->avx512bw},
		{"avx512vl", f->avx512vl},   {"avx512_vnni", f->avx512_vnni},
		{"avx512_vbmi", f->avx512_vbmi}, {"avx_vnni", f->avx_vnni},
		{"amx_tile", f->amx_tile},   {"amx_int8", f->amx_int8},
		{"neon", f->neon},	     {"dotprod", f->dotprod},
		{"rvv", f->rvv},	     {"sve", f->sve},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(t[i].name, name))
			return t[i].on;
	return -1;
}

int rt_cpu_require(const char *features, char *missing, size_t n)
{
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	size_t len = 0;
	missing[0] = 0;
	for (const char *p = features ? features : ""; *p;) {
		while (*p == ' ')
			p++;
		size_t k = strcspn(p, " ");
		if (!k)
			break;
		char name[32];
		snprintf(name, sizeof name, "%.*s", (int)(k < sizeof name ? k : sizeof name - 1), p);
		if (rt_cpu_has(&f, name) != 1) {
			int w = snprintf(missing + len, n > len ? n - len : 0, "%s%s", len ? " " : "",
					 name);
			if (w > 0)
				len += (size_t)w;
			if (len >= n)
				len = n ? n - 1 : 0;
		}
		p += k;
	}
	return missing[0] ? -1 : 0;
}

/* Whether the space-separated list has the word name. */
static bool listed(const char *features, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = features ? features : ""; *p;) {
		while (*p == ' ')
			p++;
		size_t k = strcspn(p, " ");
		if (k == n && !strncmp(p, name, n))
			return true;
		p += k;
	}
	return false;
}

int rt_cpu_enable(const char *features, char *why, size_t n)
{
	if (n)
		why[0] = 0;
	if (!listed(features, "amx_tile"))
		return 0;
	/* a feature the detection does not report (absent, or hidden by the mask) is not
	 * asked for: the OS would grant what the mask hides */
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	if (!f.amx_tile) {
		const char *v;
		if (mask_family(&v) == -1)
			snprintf(why, n, "this CPU has no amx_tile");
		else
			snprintf(why, n, "amx_tile is hidden by %s=%.40s", RT_CPU_MASK_ENV, v);
		return -1;
	}
#if defined(__linux__) && defined(__x86_64__)
	/* Linux (5.16+) leaves the 8 KiB tile data state off until the process asks: without
	 * this the first tile instruction faults. Process-wide: it covers every thread. */
	enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
	if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0)
		return 0;
	snprintf(why, n, "arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) failed: %s (it needs a CPU "
			 "with AMX and Linux 5.16 or newer)",
		 strerror(errno));
#else
	snprintf(why, n, "this runtime knows how to enable the AMX tile state on Linux x86-64 only");
#endif
	return -1;
}
