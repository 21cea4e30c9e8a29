/* cg_metal.h - the Metal backend (Apple GPUs): its target, the kernels as MSL (translated
 * from the CUDA backend's kernels in the SIMT builder's MSL flavour), the host code (the
 * CUDA backend's model.c writer over runtime/rt_metal.h) and a project that builds on macOS. */
#ifndef BITNETC_CG_METAL_H
#define BITNETC_CG_METAL_H

#include "../cg.h"

#include <llvm-c/Core.h>

/* ---- cg_metal.c ---- */

/* The Metal backend as the registry holds it. */
extern const CgBackend cg_backend_metal;

/* The Metal target and its availability here. Returns how many were written. */
int cg_metal_targets(CgTargetInfo *out, int max);

/* Whether this host links Metal programs (macOS); elsewhere `build --target metal` writes
 * the project with --emit-c DIR and stops. */
bool cg_metal_can_link(void);

/* What a Metal program compiles besides the runtime every program has: rt_metal.h and
 * rt_metal.m (cg_runtime_metal_src.c, generated). */
extern const CgSource cg_runtime_metal_sources[];
extern const int cg_n_runtime_metal_sources;

/* ---- cg_metal_msl.c ---- */

/* Writes every kernel defined in mod (built in the SIMT_MSL flavour) as MSL into msl, after
 * the prelude, each with its emulator trampoline under #ifdef BN_MSL_HOST; sigs gets one
 * line per kernel, `{"NAME", "PARAMS", SMEM},` (PARAMS: p pointer, i int32, l int64, f
 * float; SMEM: the least threadgroup memory it takes in bytes, 0 for none). Errors name the kernel and what it
 * cannot write. */
int cg_msl_module(LLVMModuleRef mod, CgBuf *msl, CgBuf *sigs, BnErr *e);

#endif
