/* simt.h - a small builder for SIMT kernels over the LLVM-C API. A kernel emitter writes
 * each kernel once against these helpers; the same calls make NVPTX IR (special registers,
 * barrier and shuffle intrinsics, inline PTX for dp4a, addrspace(3) shared memory), emitted as
 * PTX, or host IR for the tests' SIMT emulator (indices read from the SimtThread record,
 * barriers and shuffles called through it: simt_abi.h), emitted as an object file. Math that
 * a GPU library would provide (expf) is built here from plain IR, so both flavours compute
 * the same thing. A third flavour, SIMT_MSL, is the PTX one with every GPU operation a call
 * to a function named "msl:NAME" (thread indices, barrier, shuffle, dp4a, shared memory,
 * expf), which the Metal backend's translator (codegen/metal) writes as MSL.
 *
 * Writing a kernel reads like C: simt_begin, simt_var/simt_get/simt_set for mutable locals
 * (allocas that the optimizer promotes), simt_for/simt_if for control flow, LLVMBuild* on
 * S->b for the arithmetic, simt_end. */
#ifndef BITNETC_SIMT_H
#define BITNETC_SIMT_H

#include "../cg.h"
#include "simt_abi.h"

#include <llvm-c/Core.h>

typedef enum { SIMT_PTX, SIMT_HOST, SIMT_MSL } SimtFlavor;
typedef enum { SIMT_P_PTR, SIMT_P_I32, SIMT_P_I64, SIMT_P_F32 } SimtParam;

enum { SIMT_MAX_PARAMS = 24 };

typedef struct Simt {
	SimtFlavor flavor;
	LLVMContextRef ctx;
	LLVMModuleRef mod;
	LLVMBuilderRef b;
	LLVMTypeRef t_void, t_i1, t_i8, t_i16, t_i32, t_i64, t_f16, t_f32, t_f64, t_ptr;
	/* the kernel being built */
	LLVMValueRef fn;
	LLVMBasicBlockRef entry, ret;
	LLVMValueRef th;                        /* host: the SimtThread */
	LLVMValueRef param[SIMT_MAX_PARAMS];
	int n_params;
	LLVMValueRef smem;                      /* generic pointer to the dynamic shared memory */
	int n_kernels;
} Simt;

/* A module for one model's kernels; NULL when out of memory. */
Simt *simt_new(SimtFlavor f, const char *module_name);
void simt_free(Simt *S);

/* Whether a kernel of this name was already built in the module (emitters share kernels
 * between nodes of the same shape). */
bool simt_has(const Simt *S, const char *name);
/* Starts kernel name with parameters p[0..n) and positions the builder in its body. */
void simt_begin(Simt *S, const char *name, const SimtParam *p, int n);
LLVMValueRef simt_param(Simt *S, int i);
/* Ends the kernel (returns from the current block). */
void simt_end(Simt *S);
/* Returns from the kernel when cond (i1) holds; the builder goes on in the other case. */
void simt_return_if(Simt *S, LLVMValueRef cond);

/* ---- the thread's place (i32) ---- */
LLVMValueRef simt_tid(Simt *S, int dim);
LLVMValueRef simt_ntid(Simt *S, int dim);
LLVMValueRef simt_ctaid(Simt *S, int dim);
LLVMValueRef simt_nctaid(Simt *S, int dim);
LLVMValueRef simt_lane(Simt *S); /* tid.x % 32 (1-D blocks) */
LLVMValueRef simt_warp(Simt *S); /* tid.x / 32 */

/* ---- synchronization and warp exchange ---- */
void simt_sync(Simt *S);
/* shfl.sync of an i32, f32, i64 or f64 value (64-bit in two halves), SIMT_SHFL_* mode. */
LLVMValueRef simt_shfl(Simt *S, int mode, LLVMValueRef v, LLVMValueRef arg);
/* The sum / max of v over the 32 lanes by butterfly shuffles: every lane gets it. */
LLVMValueRef simt_warp_sum(Simt *S, LLVMValueRef v);
LLVMValueRef simt_warp_max(Simt *S, LLVMValueRef v);
/* The sum / max of v over a 1-D block of nthreads (a multiple of 32, <= 1024): every thread
 * gets it. Uses the first 32 values of shared memory (slots of v's size) and syncs. */
LLVMValueRef simt_block_sum(Simt *S, LLVMValueRef v, int nthreads);
LLVMValueRef simt_block_max(Simt *S, LLVMValueRef v, int nthreads);
/* Generic pointer to the launch's dynamic shared memory. */
LLVMValueRef simt_smem(Simt *S);

/* ---- integer dot products ---- */
/* c + the dot product of the four signed bytes of a and b (i32s): dp4a.s32.s32. */
LLVMValueRef simt_dp4a(Simt *S, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);

/* ---- SIMD-group matrices (SIMT_MSL only) ----
 * Metal's simdgroup_matrix: an 8x8 matrix that the 32 threads of a SIMD-group hold
 * together, loaded from and stored to threadgroup memory and multiplied by all of them at
 * once. Every call must be made by all threads of the SIMD-group with the same arguments
 * (uniform control flow). A matrix is a local (simt_mat); the translator declares it as
 * simdgroup_half8x8 / simdgroup_float8x8. Other flavours have no such operation: a call
 * there is an internal error (the PTX kernels use dp4a). */
typedef enum { SIMT_MAT_F16, SIMT_MAT_F32 } SimtMatType;
/* A new 8x8 matrix of element type t (its contents undefined until filled or loaded). */
LLVMValueRef simt_mat(Simt *S, SimtMatType t);
/* Every element of m set to v. */
void simt_mat_fill(Simt *S, LLVMValueRef m, float v);
/* m = the 8x8 block at threadgroup address p (elements of m's type), rows stride elements
 * apart (i32); transposed: m(r, c) = p[c * stride + r]. */
void simt_mat_load(Simt *S, LLVMValueRef m, LLVMValueRef p, LLVMValueRef stride, bool transpose);
/* The 8x8 block at threadgroup address p = m (same layout as simt_mat_load). */
void simt_mat_store(Simt *S, LLVMValueRef m, LLVMValueRef p, LLVMValueRef stride, bool transpose);
/* d = a * b + c (a: F16; b: F16 or F32; c, d: F32; d may be c). */
void simt_mat_mac(Simt *S, LLVMValueRef d, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);

/* ---- constants, memory ---- */
LLVMValueRef simt_i32(Simt *S, int64_t v);
LLVMValueRef simt_i64(Simt *S, int64_t v);
LLVMValueRef simt_f32(Simt *S, float v);
LLVMValueRef simt_f64(Simt *S, double v);
/* &p[i] for elements of type t (i of any integer type, sign-extended). */
LLVMValueRef simt_gep(Simt *S, LLVMTypeRef t, LLVMValueRef p, LLVMValueRef i);
/* p[i] as type t, aligned to align bytes (0: t's natural alignment). */
LLVMValueRef simt_load(Simt *S, LLVMTypeRef t, LLVMValueRef p, LLVMValueRef i, unsigned align);
void simt_store(Simt *S, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, unsigned align);
/* An atomic min / add of an i32 at p (relaxed, device scope); returns the old value. */
LLVMValueRef simt_atomic_min(Simt *S, LLVMValueRef p, LLVMValueRef v);
LLVMValueRef simt_atomic_add(Simt *S, LLVMValueRef p, LLVMValueRef v);

/* ---- mutable locals and control flow ---- */
/* A local of type t set to init (may be NULL); read with simt_get, write with simt_set. */
LLVMValueRef simt_var(Simt *S, LLVMTypeRef t, LLVMValueRef init);
LLVMValueRef simt_get(Simt *S, LLVMValueRef var);
void simt_set(Simt *S, LLVMValueRef var, LLVMValueRef v);

typedef struct {
	LLVMValueRef var, end, step;
	LLVMBasicBlockRef cond, body, exit;
} SimtFor;
/* for (i = start; i < end; i += step) (signed, start's integer type): returns i inside the
 * body; simt_for_end closes it. */
LLVMValueRef simt_for(Simt *S, SimtFor *L, LLVMValueRef start, LLVMValueRef end,
		      LLVMValueRef step);
void simt_for_end(Simt *S, SimtFor *L);

typedef struct {
	LLVMBasicBlockRef els, end;
	bool has_else;
} SimtIf;
void simt_if(Simt *S, SimtIf *c, LLVMValueRef cond);
void simt_else(Simt *S, SimtIf *c);
void simt_endif(Simt *S, SimtIf *c);

/* ---- math (same IR on both flavours) ---- */
LLVMValueRef simt_call(Simt *S, const char *intrinsic, LLVMValueRef *args, int n);
LLVMValueRef simt_sqrt(Simt *S, LLVMValueRef x);   /* IEEE, f32 or f64 */
LLVMValueRef simt_rint(Simt *S, LLVMValueRef x);   /* round half even */
LLVMValueRef simt_fabs(Simt *S, LLVMValueRef x);
LLVMValueRef simt_fmax(Simt *S, LLVMValueRef a, LLVMValueRef b); /* maxnum */
LLVMValueRef simt_fmin(Simt *S, LLVMValueRef a, LLVMValueRef b);
/* expf: computed in double and rounded once (within an ulp of a correctly rounded expf);
 * 0 below -104, +inf above 88.72, NaN stays NaN. */
LLVMValueRef simt_expf(Simt *S, LLVMValueRef x);
/* Whether a float is finite (i1). */
LLVMValueRef simt_isfinite(Simt *S, LLVMValueRef x);
/* IEEE half bits (i16) <-> float, round to nearest even. */
LLVMValueRef simt_f16_to_f32(Simt *S, LLVMValueRef h);
LLVMValueRef simt_f32_to_f16(Simt *S, LLVMValueRef f);
/* bf16 bits (i16) -> float */
LLVMValueRef simt_bf16_to_f32(Simt *S, LLVMValueRef h);
/* f32 -> f16 -> f32 */
LLVMValueRef simt_round_f16(Simt *S, LLVMValueRef f);

/* ---- output ---- */
/* Verifies and optimizes the module (O3), then writes the PTX for sm ("sm_80") into ptx and
 * the optimized IR into ll (may be NULL). SIMT_PTX modules only. */
int simt_emit_ptx(Simt *S, const char *sm, CgBuf *ptx, CgBuf *ll, BnErr *e);
/* Verifies, optimizes and appends a position-independent object file for this host to obj
 * (a test links it into a shared object for the emulator). SIMT_HOST modules only. */
int simt_emit_host_object(Simt *S, CgBuf *obj, BnErr *e);
/* The PTX ISA version a compute capability gets ("+ptx70" for sm_80/86, "+ptx78" for
 * sm_89/90): the oldest that has it, for the widest range of drivers. */
const char *simt_ptx_features(int cc);

#endif
