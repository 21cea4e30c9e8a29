/* rt_cpu.c - does this CPU have the instruction set extensions the model code was compiled
 * for? Checked by the program before it calls any generated code, so that a binary built
 * for AVX-512 says so on an AVX2 machine instead of dying on SIGILL. This file is compiled
 * for the baseline of the architecture, never with the model's flags. */
#include "rt.h"

#include <stdio.h>
#include <string.h>

/* Whether the CPU (and the OS, for register state) supports feature name. -1: a name
 * this runtime does not know. */
static int rt_cpu_has(const char *name)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
	__builtin_cpu_init();
	if (!strcmp(name, "sse4.2"))
		return __builtin_cpu_supports("sse4.2") != 0;
	if (!strcmp(name, "avx2"))
		return __builtin_cpu_supports("avx2") != 0;
	if (!strcmp(name, "fma"))
		return __builtin_cpu_supports("fma") != 0;
	if (!strcmp(name, "f16c")) /* not in older compilers' list: AVX + F16C imply each other here */
		return __builtin_cpu_supports("avx") != 0;
	if (!strcmp(name, "avx512f"))
		return __builtin_cpu_supports("avx512f") != 0;
	if (!strcmp(name, "avx512bw"))
		return __builtin_cpu_supports("avx512bw") != 0;
	if (!strcmp(name, "avx512vl"))
		return __builtin_cpu_supports("avx512vl") != 0;
	if (!strcmp(name, "avx512_vnni"))
		return __builtin_cpu_supports("avx512vnni") != 0;
	if (!strcmp(name, "avx512_vbmi"))
		return __builtin_cpu_supports("avx512vbmi") != 0;
	return -1;
#elif defined(__aarch64__)
	if (!strcmp(name, "neon"))
		return 1; /* part of the AArch64 baseline */
	return -1;
#else
	(void)name;
	return -1;
#endif
}

int rt_cpu_require(const char *features, char *missing, size_t n)
{
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
		if (rt_cpu_has(name) != 1) {
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
