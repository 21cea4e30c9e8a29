/* cg.h - what every code generation backend describes about itself: its targets and
 * whether this host can use them. Included by cpu/cg_cpu.h, cuda/cg_cuda.h, metal/cg_metal.h. */
#ifndef BITNETC_CG_H
#define BITNETC_CG_H

#include <stdbool.h>
#include <stddef.h>

/* One --target name. "usable" is about this host (instruction set present, LLVM backend
 * built in, OS); note says what it needs or why it is not usable, in a few words. */
typedef struct {
	const char *name;    /* e.g. "cpu-avx2" */
	const char *backend; /* "cpu", "cuda", "metal" */
	const char *desc;
	bool usable;
	char note[160];
} CgTargetInfo;

#endif
