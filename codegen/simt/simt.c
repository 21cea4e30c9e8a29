/* simt.c - the SIMT kernel builder (simt.h): one set of calls, two flavours of IR. */
#include "simt.h"
#include "simt_abi.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

Simt *simt_new(SimtFlavor f, const char *module_name)
{
	Simt *S = calloc(1, sizeof *S);
	if (!S)
		return NULL;
	S->flavor = f;
	S->ctx = LLVMContextCreate();
	S->mod = LLVMModuleCreateWithNameInContext(module_name, S->ctx);
	S->b = LLVMCreateBuilderInContext(S->ctx);
	S->t_void = LLVMVoidTypeInContext(S->ctx);
	S->t_i1 = LLVMInt1TypeInContext(S->ctx);
	S->t_i8 = LLVMInt8TypeInContext(S->ctx);
	S->t_i16 = LLVMInt16TypeInContext(S->ctx);
	S->t_i32 = LLVMInt32TypeInContext(S->ctx);
	S->t_i64 = LLVMInt64TypeInContext(S->ctx);
	S->t_f16 = LLVMHalfTypeInContext(S->ctx);
	S->t_f32 = LLVMFloatTypeInContext(S->ctx);
	S->t_f64 = LLVMDoubleTypeInContext(S->ctx);
	S->t_ptr = LLVMPointerTypeInContext(S->ctx, 0);
	return S;
}

void simt_free(Simt *S)
{
	if (!S)
		return;
	LLVMDisposeBuilder(S->b);
	LLVMDisposeModule(S->mod);
	LLVMContextDispose(S->ctx);
	free(S);
}

bool simt_has(const Simt *S, const char *name)
{
	return LLVMGetNamedFunction(S->mod, name) != NULL;
}

/* ---- kernels ------------------------------------------------------------------ */

static LLVMTypeRef param_type(Simt *S, SimtParam p)
{
	switch (p) {
	case SIMT_P_PTR: return S->t_ptr;
	case SIMT_P_I32: return S->t_i32;
	case SIMT_P_I64: return S->t_i64;
	case SIMT_P_F32: return S->t_f32;
	}
	return S->t_i32;
}

void simt_begin(Simt *S, const char *name, const SimtParam *p, int n)
{
	BN_ASSERT(n <= SIMT_MAX_PARAMS && !simt_has(S, name));
	LLVMTypeRef pt[SIMT_MAX_PARAMS];
	LLVMTypeRef ft;
	if (S->flavor != SIMT_HOST) {
		for (int i = 0; i < n; i++)
			pt[i] = param_type(S, p[i]);
		ft = LLVMFunctionType(S->t_void, pt, (unsigned)n, 0);
	} else {
		LLVMTypeRef hp[2] = {S->t_ptr, S->t_ptr};
		ft = LLVMFunctionType(S->t_void, hp, 2, 0);
	}
	S->fn = LLVMAddFunction(S->mod, name, ft);
	if (S->flavor == SIMT_PTX)
		LLVMSetFunctionCallConv(S->fn, LLVMPTXKernelCallConv);
	LLVMAddAttributeAtIndex(S->fn, LLVMAttributeFunctionIndex,
				   LLVMCreateEnumAttribute(S->ctx, LLVMGetEnumAttributeKindForName("nounwind", 8), 0));
	S->entry = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "entry");
	S->ret = NULL;
	LLVMPositionBuilderAtEnd(S->b, S->entry);
	S->n_params = n;
	S->smem = NULL;
	if (S->flavor != SIMT_HOST) {
		for (int i = 0; i < n; i++) {
			S->param[i] = LLVMGetParam(S->fn, (unsigned)i);
			if (p[i] == SIMT_P_PTR)
				LLVMAddAttributeAtIndex(S->fn, (unsigned)i + 1,
							LLVMCreateEnumAttribute(S->ctx, LLVMGetEnumAttributeKindForName("noalias", 7), 0));
		}
		S->th = NULL;
	} else {
		/* NAME__psize: each parameter's bytes, then 0 (simt_abi.h), for a driver that
		 * keeps a launch's parameters (graph capture) */
		LLVMValueRef sz[SIMT_MAX_PARAMS + 1];
		for (int i = 0; i < n; i++)
			sz[i] = LLVMConstInt(S->t_i8, p[i] == SIMT_P_PTR || p[i] == SIMT_P_I64 ? 8 : 4, 0);
		sz[n] = LLVMConstInt(S->t_i8, 0, 0);
		char gname[300];
		snprintf(gname, sizeof gname, "%s%s", name, SIMT_PSIZE_SUFFIX);
		LLVMValueRef g = LLVMAddGlobal(S->mod, LLVMArrayType2(S->t_i8, (uint64_t)n + 1), gname);
		LLVMSetInitializer(g, LLVMConstArray2(S->t_i8, sz, (uint64_t)n + 1));
		LLVMSetGlobalConstant(g, 1);
		S->th = LLVMGetParam(S->fn, 0);
		LLVMValueRef pp = LLVMGetParam(S->fn, 1);
		for (int i = 0; i < n; i++) {
			LLVMValueRef slot = LLVMBuildLoad2(S->b, S->t_ptr, simt_gep(S, S->t_ptr, pp, simt_i32(S, i)), "");
			S->param[i] = LLVMBuildLoad2(S->b, param_type(S, p[i]), slot, "");
			LLVMSetAlignment(S->param[i], 4);
		}
	}
	S->n_kernels++;
}

LLVMValueRef simt_param(Simt *S, int i)
{
	BN_ASSERT(i >= 0 && i < S->n_params);
	return S->param[i];
}

static LLVMBasicBlockRef ret_block(Simt *S)
{
	if (!S->ret) {
		LLVMBasicBlockRef cur = LLVMGetInsertBlock(S->b);
		S->ret = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "ret");
		LLVMPositionBuilderAtEnd(S->b, S->ret);
		LLVMBuildRetVoid(S->b);
		LLVMPositionBuilderAtEnd(S->b, cur);
	}
	return S->ret;
}

void simt_end(Simt *S)
{
	LLVMBuildBr(S->b, ret_block(S));
	LLVMMoveBasicBlockAfter(S->ret, LLVMGetLastBasicBlock(S->fn));
	S->fn = NULL;
}

void simt_return_if(Simt *S, LLVMValueRef cond)
{
	LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "go");
	LLVMBuildCondBr(S->b, cond, ret_block(S), go);
	LLVMPositionBuilderAtEnd(S->b, go);
}

/* ---- indices ------------------------------------------------------------------ */

static LLVMValueRef call_named(Simt *S, const char *name, LLVMTypeRef ret, LLVMTypeRef *pt,
			       LLVMValueRef *args, int n)
{
	LLVMTypeRef ft = LLVMFunctionType(ret, pt, (unsigned)n, 0);
	LLVMValueRef f = LLVMGetNamedFunction(S->mod, name);
	if (!f)
		f = LLVMAddFunction(S->mod, name, ft);
	return LLVMBuildCall2(S->b, ft, f, args, (unsigned)n, "");
}

static LLVMValueRef sreg(Simt *S, const char *reg, size_t off, int dim)
{
	BN_ASSERT(dim >= 0 && dim < 3);
	if (S->flavor == SIMT_MSL) {
		char name[64];
		snprintf(name, sizeof name, "msl:bn_%s_%c", reg, "xyz"[dim]);
		return call_named(S, name, S->t_i32, NULL, NULL, 0);
	}
	if (S->flavor == SIMT_PTX) {
		char name[64];
		snprintf(name, sizeof name, "llvm.nvvm.read.ptx.sreg.%s.%c", reg, "xyz"[dim]);
		return call_named(S, name, S->t_i32, NULL, NULL, 0);
	}
	LLVMValueRef p = simt_gep(S, S->t_i8, S->th, simt_i64(S, (int64_t)(off + 4 * (size_t)dim)));
	LLVMValueRef v = LLVMBuildLoad2(S->b, S->t_i32, p, "");
	LLVMSetAlignment(v, 4);
	return v;
}

LLVMValueRef simt_tid(Simt *S, int d) { return sreg(S, "tid", offsetof(SimtThread, tid), d); }
LLVMValueRef simt_ntid(Simt *S, int d) { return sreg(S, "ntid", offsetof(SimtThread, ntid), d); }
LLVMValueRef simt_ctaid(Simt *S, int d) { return sreg(S, "ctaid", offsetof(SimtThread, ctaid), d); }
LLVMValueRef simt_nctaid(Simt *S, int d) { return sreg(S, "nctaid", offsetof(SimtThread, nctaid), d); }

LLVMValueRef simt_lane(Simt *S)
{
	return LLVMBuildAnd(S->b, simt_tid(S, 0), simt_i32(S, 31), "lane");
}

LLVMValueRef simt_warp(Simt *S)
{
	return LLVMBuildLShr(S->b, simt_tid(S, 0), simt_i32(S, 5), "warp");
}

/* ---- synchronization ------------------------------------------------------------ */

static LLVMValueRef th_field(Simt *S, size_t off)
{
	LLVMValueRef p = simt_gep(S, S->t_i8, S->th, simt_i64(S, (int64_t)off));
	LLVMValueRef v = LLVMBuildLoad2(S->b, S->t_ptr, p, "");
	LLVMSetAlignment(v, 8);
	return v;
}

void simt_sync(Simt *S)
{
	if (S->flavor == SIMT_MSL) {
		call_named(S, "msl:bn_barrier", S->t_void, NULL, NULL, 0);
		return;
	}
	if (S->flavor == SIMT_PTX) {
		call_named(S, "llvm.nvvm.barrier0", S->t_void, NULL, NULL, 0);
		return;
	}
	LLVMTypeRef pt[1] = {S->t_ptr};
	LLVMTypeRef ft = LLVMFunctionType(S->t_void, pt, 1, 0);
	LLVMValueRef args[1] = {S->th};
	LLVMBuildCall2(S->b, ft, th_field(S, offsetof(SimtThread, barrier)), args, 1, "");
}

static LLVMValueRef shfl32(Simt *S, int mode, LLVMValueRef v, LLVMValueRef arg)
{
	if (S->flavor == SIMT_PTX) {
		static const char *const names[] = {"idx", "up", "down", "bfly"};
		char name[64];
		snprintf(name, sizeof name, "llvm.nvvm.shfl.sync.%s.i32", names[mode]);
		LLVMTypeRef pt[4] = {S->t_i32, S->t_i32, S->t_i32, S->t_i32};
		LLVMValueRef args[4] = {simt_i32(S, -1), v, arg, simt_i32(S, mode == SIMT_SHFL_UP ? 0 : 31)};
		return call_named(S, name, S->t_i32, pt, args, 4);
	}
	LLVMTypeRef pt[4] = {S->t_ptr, S->t_i32, S->t_i32, S->t_i32};
	LLVMTypeRef ft = LLVMFunctionType(S->t_i32, pt, 4, 0);
	LLVMValueRef args[4] = {S->th, v, arg, simt_i32(S, mode)};
	return LLVMBuildCall2(S->b, ft, th_field(S, offsetof(SimtThread, shfl)), args, 4, "");
}

/* MSL: bn_shfl(v, arg, mode) of the value's own type ("msl:bn_shfl|TYPE") */
static LLVMValueRef shfl_msl(Simt *S, int mode, LLVMValueRef v, LLVMValueRef arg)
{
	LLVMTypeRef t = LLVMTypeOf(v);
	static const char *const tn[] = {"i32", "f32", "i64", "f64"};
	int k = t == S->t_i32 ? 0 : t == S->t_f32 ? 1 : t == S->t_i64 ? 2 : 3;
	char name[64];
	snprintf(name, sizeof name, "msl:bn_shfl|%s", tn[k]);
	LLVMTypeRef pt[3] = {t, S->t_i32, S->t_i32};
	LLVMValueRef args[3] = {v, arg, simt_i32(S, mode)};
	return call_named(S, name, t, pt, args, 3);
}

LLVMValueRef simt_shfl(Simt *S, int mode, LLVMValueRef v, LLVMValueRef arg)
{
	LLVMTypeRef t = LLVMTypeOf(v);
	if (S->flavor == SIMT_MSL)
		return shfl_msl(S, mode, v, arg);
	if (t == S->t_i32)
		return shfl32(S, mode, v, arg);
	if (t == S->t_f32)
		return LLVMBuildBitCast(S->b, shfl32(S, mode, LLVMBuildBitCast(S->b, v, S->t_i32, ""), arg),
					S->t_f32, "");
	BN_ASSERT(t == S->t_i64 || t == S->t_f64);
	LLVMValueRef u = t == S->t_f64 ? LLVMBuildBitCast(S->b, v, S->t_i64, "") : v;
	LLVMValueRef lo = LLVMBuildTrunc(S->b, u, S->t_i32, "");
	LLVMValueRef hi = LLVMBuildTrunc(S->b, LLVMBuildLShr(S->b, u, simt_i64(S, 32), ""), S->t_i32, "");
	lo = shfl32(S, mode, lo, arg);
	hi = shfl32(S, mode, hi, arg);
	LLVMValueRef r = LLVMBuildOr(S->b, LLVMBuildZExt(S->b, lo, S->t_i64, ""),
				     LLVMBuildShl(S->b, LLVMBuildZExt(S->b, hi, S->t_i64, ""), simt_i64(S, 32), ""), "");
	return t == S->t_f64 ? LLVMBuildBitCast(S->b, r, S->t_f64, "") : r;
}

static bool is_float(LLVMTypeRef t)
{
	LLVMTypeKind k = LLVMGetTypeKind(t);
	return k == LLVMFloatTypeKind || k == LLVMDoubleTypeKind || k == LLVMHalfTypeKind;
}

static LLVMValueRef combine(Simt *S, LLVMValueRef a, LLVMValueRef b, bool max)
{
	if (is_float(LLVMTypeOf(a)))
		return max ? simt_fmax(S, a, b) : LLVMBuildFAdd(S->b, a, b, "");
	if (max) {
		LLVMValueRef gt = LLVMBuildICmp(S->b, LLVMIntSGT, a, b, "");
		return LLVMBuildSelect(S->b, gt, a, b, "");
	}
	return LLVMBuildAdd(S->b, a, b, "");
}

static LLVMValueRef warp_reduce(Simt *S, LLVMValueRef v, bool max)
{
	for (int o = 16; o >= 1; o /= 2)
		v = combine(S, v, simt_shfl(S, SIMT_SHFL_BFLY, v, simt_i32(S, o)), max);
	return v;
}

LLVMValueRef simt_warp_sum(Simt *S, LLVMValueRef v) { return warp_reduce(S, v, false); }
LLVMValueRef simt_warp_max(Simt *S, LLVMValueRef v) { return warp_reduce(S, v, true); }

/* Warp results to shared memory, warp 0 combines them, everyone reads the result. The
 * syncs around it keep the slots free for the next reduction. */
static LLVMValueRef block_reduce(Simt *S, LLVMValueRef v, int nthreads, bool max)
{
	BN_ASSERT(nthreads % 32 == 0 && nthreads <= 1024);
	v = warp_reduce(S, v, max);
	int nw = nthreads / 32;
	if (nw == 1)
		return v;
	LLVMTypeRef t = LLVMTypeOf(v);
	LLVMValueRef sm = simt_smem(S);
	LLVMValueRef lane = simt_lane(S), warp = simt_warp(S);
	simt_sync(S);
	SimtIf c;
	simt_if(S, &c, LLVMBuildICmp(S->b, LLVMIntEQ, lane, simt_i32(S, 0), ""));
	simt_store(S, v, sm, warp, 0);
	simt_endif(S, &c);
	simt_sync(S);
	LLVMValueRef have = LLVMBuildICmp(S->b, LLVMIntULT, lane, simt_i32(S, nw), "");
	LLVMValueRef idx = LLVMBuildSelect(S->b, have, lane, simt_i32(S, 0), "");
	LLVMValueRef x = simt_load(S, t, sm, idx, 0);
	/* lanes past the warp count repeat warp 0's value: harmless for max, zero for sums */
	if (!max)
		x = LLVMBuildSelect(S->b, have, x, is_float(t) ? LLVMConstReal(t, 0.0) : LLVMConstInt(t, 0, 0), "");
	x = warp_reduce(S, x, max);
	simt_sync(S);
	return x;
}

LLVMValueRef simt_block_sum(Simt *S, LLVMValueRef v, int n) { return block_reduce(S, v, n, false); }
LLVMValueRef simt_block_max(Simt *S, LLVMValueRef v, int n) { return block_reduce(S, v, n, true); }

LLVMValueRef simt_smem(Simt *S)
{
	if (S->smem)
		return S->smem;
	LLVMBasicBlockRef cur = LLVMGetInsertBlock(S->b);
	/* computed once in the entry block, so every block of the kernel can use it */
	LLVMValueRef first = LLVMGetFirstInstruction(S->entry);
	LLVMValueRef term = LLVMGetBasicBlockTerminator(S->entry);
	if (cur == S->entry)
		LLVMPositionBuilderAtEnd(S->b, S->entry);
	else if (term)
		LLVMPositionBuilderBefore(S->b, term);
	else
		LLVMPositionBuilderAtEnd(S->b, S->entry);
	(void)first;
	if (S->flavor == SIMT_MSL) {
		S->smem = call_named(S, "msl:bn_smem", S->t_ptr, NULL, NULL, 0);
	} else if (S->flavor == SIMT_PTX) {
		LLVMValueRef g = LLVMGetNamedGlobal(S->mod, "bn_smem");
		if (!g) {
			g = LLVMAddGlobalInAddressSpace(S->mod, LLVMArrayType2(S->t_i8, 0), "bn_smem", 3);
			LLVMSetLinkage(g, LLVMExternalLinkage);
			LLVMSetAlignment(g, 16);
		}
		S->smem = LLVMBuildAddrSpaceCast(S->b, g, S->t_ptr, "smem");
	} else {
		S->smem = th_field(S, offsetof(SimtThread, smem));
	}
	LLVMPositionBuilderAtEnd(S->b, cur);
	return S->smem;
}

/* ---- dp4a ------------------------------------------------------------------------ */

LLVMValueRef simt_dp4a(Simt *S, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
	if (S->flavor == SIMT_MSL) {
		LLVMTypeRef pt[3] = {S->t_i32, S->t_i32, S->t_i32};
		LLVMValueRef args[3] = {a, b, c};
		return call_named(S, "msl:bn_dp4a", S->t_i32, pt, args, 3);
	}
	if (S->flavor == SIMT_PTX) {
		LLVMTypeRef pt[3] = {S->t_i32, S->t_i32, S->t_i32};
		LLVMTypeRef ft = LLVMFunctionType(S->t_i32, pt, 3, 0);
		static const char code[] = "dp4a.s32.s32 $0, $1, $2, $3;";
		static const char cons[] = "=r,r,r,r";
		LLVMValueRef asmv = LLVMGetInlineAsm(ft, code, sizeof code - 1, cons, sizeof cons - 1,
						     0, 0, LLVMInlineAsmDialectATT, 0);
		LLVMValueRef args[3] = {a, b, c};
		return LLVMBuildCall2(S->b, ft, asmv, args, 3, "");
	}
	LLVMTypeRef v4i8 = LLVMVectorType(S->t_i8, 4), v4i32 = LLVMVectorType(S->t_i32, 4);
	LLVMValueRef av = LLVMBuildSExt(S->b, LLVMBuildBitCast(S->b, a, v4i8, ""), v4i32, "");
	LLVMValueRef bv = LLVMBuildSExt(S->b, LLVMBuildBitCast(S->b, b, v4i8, ""), v4i32, "");
	LLVMValueRef p = LLVMBuildMul(S->b, av, bv, "");
	LLVMValueRef s = c;
	for (int i = 0; i < 4; i++)
		s = LLVMBuildAdd(S->b, s, LLVMBuildExtractElement(S->b, p, simt_i32(S, i), ""), "");
	return s;
}

/* ---- SIMD-group matrices --------------------------------------------------------------
 * A matrix is an alloca of [64 x half] or [64 x float] that only the "msl:sg_*" calls use:
 * the translator declares it as simdgroup_half8x8 / simdgroup_float8x8 and writes the calls
 * as Metal's simdgroup_load / _store / _multiply_accumulate. */

static void mat_only_msl(Simt *S)
{
	BN_ASSERT(S->flavor == SIMT_MSL && "SIMD-group matrices exist in the MSL flavour only");
}

LLVMValueRef simt_mat(Simt *S, SimtMatType t)
{
	mat_only_msl(S);
	return simt_var(S, LLVMArrayType2(t == SIMT_MAT_F16 ? S->t_f16 : S->t_f32, 64), NULL);
}

static bool mat_is(Simt *S, LLVMValueRef m, SimtMatType t)
{
	if (!LLVMIsAAllocaInst(m))
		return false;
	LLVMTypeRef at = LLVMGetAllocatedType(m);
	return LLVMGetTypeKind(at) == LLVMArrayTypeKind && LLVMGetArrayLength2(at) == 64 &&
	       LLVMGetElementType(at) == (t == SIMT_MAT_F16 ? S->t_f16 : S->t_f32);
}

static bool mat_any(Simt *S, LLVMValueRef m)
{
	return mat_is(S, m, SIMT_MAT_F16) || mat_is(S, m, SIMT_MAT_F32);
}

void simt_mat_fill(Simt *S, LLVMValueRef m, float v)
{
	mat_only_msl(S);
	BN_ASSERT(mat_any(S, m));
	LLVMTypeRef pt[2] = {S->t_ptr, S->t_f32};
	LLVMValueRef args[2] = {m, simt_f32(S, v)};
	call_named(S, "msl:sg_fill", S->t_void, pt, args, 2);
}

static void mat_move(Simt *S, const char *name, LLVMValueRef m, LLVMValueRef p, LLVMValueRef stride,
		     bool transpose)
{
	mat_only_msl(S);
	BN_ASSERT(mat_any(S, m) && LLVMTypeOf(stride) == S->t_i32);
	LLVMTypeRef pt[4] = {S->t_ptr, S->t_ptr, S->t_i32, S->t_i1};
	LLVMValueRef args[4] = {m, p, stride, LLVMConstInt(S->t_i1, transpose, 0)};
	call_named(S, name, S->t_void, pt, args, 4);
}

void simt_mat_load(Simt *S, LLVMValueRef m, LLVMValueRef p, LLVMValueRef stride, bool transpose)
{
	mat_move(S, "msl:sg_load", m, p, stride, transpose);
}

void simt_mat_store(Simt *S, LLVMValueRef m, LLVMValueRef p, LLVMValueRef stride, bool transpose)
{
	mat_move(S, "msl:sg_store", m, p, stride, transpose);
}

void simt_mat_mac(Simt *S, LLVMValueRef d, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
	mat_only_msl(S);
	BN_ASSERT(mat_is(S, d, SIMT_MAT_F32) && mat_is(S, a, SIMT_MAT_F16) && mat_any(S, b) &&
		  mat_is(S, c, SIMT_MAT_F32));
	LLVMTypeRef pt[4] = {S->t_ptr, S->t_ptr, S->t_ptr, S->t_ptr};
	LLVMValueRef args[4] = {d, a, b, c};
	call_named(S, "msl:sg_mac", S->t_void, pt, args, 4);
}

/* ---- constants and memory ------------------------------------------------------------ */

LLVMValueRef simt_i32(Simt *S, int64_t v) { return LLVMConstInt(S->t_i32, (unsigned long long)v, 1); }
LLVMValueRef simt_i64(Simt *S, int64_t v) { return LLVMConstInt(S->t_i64, (unsigned long long)v, 1); }
LLVMValueRef simt_f32(Simt *S, float v) { return LLVMConstReal(S->t_f32, (double)v); }
LLVMValueRef simt_f64(Simt *S, double v) { return LLVMConstReal(S->t_f64, v); }

LLVMValueRef simt_gep(Simt *S, LLVMTypeRef t, LLVMValueRef p, LLVMValueRef i)
{
	if (LLVMTypeOf(i) != S->t_i64)
		i = LLVMBuildSExt(S->b, i, S->t_i64, "");
	return LLVMBuildInBoundsGEP2(S->b, t, p, &i, 1, "");
}

static unsigned natural_align(Simt *S, LLVMTypeRef t)
{
	if (LLVMGetTypeKind(t) == LLVMVectorTypeKind)
		return natural_align(S, LLVMGetElementType(t)) * LLVMGetVectorSize(t);
	if (t == S->t_ptr || t == S->t_i64 || t == S->t_f64)
		return 8;
	if (t == S->t_i32 || t == S->t_f32)
		return 4;
	if (t == S->t_i16 || t == S->t_f16)
		return 2;
	return 1;
}

LLVMValueRef simt_load(Simt *S, LLVMTypeRef t, LLVMValueRef p, LLVMValueRef i, unsigned align)
{
	LLVMValueRef v = LLVMBuildLoad2(S->b, t, i ? simt_gep(S, t, p, i) : p, "");
	LLVMSetAlignment(v, align ? align : natural_align(S, t));
	return v;
}

void simt_store(Simt *S, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, unsigned align)
{
	LLVMTypeRef t = LLVMTypeOf(v);
	LLVMValueRef st = LLVMBuildStore(S->b, v, i ? simt_gep(S, t, p, i) : p);
	LLVMSetAlignment(st, align ? align : natural_align(S, t));
}

LLVMValueRef simt_atomic_min(Simt *S, LLVMValueRef p, LLVMValueRef v)
{
	return LLVMBuildAtomicRMW(S->b, LLVMAtomicRMWBinOpMin, p, v, LLVMAtomicOrderingMonotonic, 0);
}

LLVMValueRef simt_atomic_add(Simt *S, LLVMValueRef p, LLVMValueRef v)
{
	return LLVMBuildAtomicRMW(S->b, LLVMAtomicRMWBinOpAdd, p, v, LLVMAtomicOrderingMonotonic, 0);
}

/* ---- locals and control flow ----------------------------------------------------------- */

LLVMValueRef simt_var(Simt *S, LLVMTypeRef t, LLVMValueRef init)
{
	LLVMBasicBlockRef cur = LLVMGetInsertBlock(S->b);
	LLVMValueRef first = LLVMGetFirstInstruction(S->entry);
	if (first)
		LLVMPositionBuilderBefore(S->b, first);
	else
		LLVMPositionBuilderAtEnd(S->b, S->entry);
	LLVMValueRef a = LLVMBuildAlloca(S->b, t, "");
	LLVMPositionBuilderAtEnd(S->b, cur);
	if (init)
		simt_set(S, a, init);
	return a;
}

LLVMValueRef simt_get(Simt *S, LLVMValueRef var)
{
	return LLVMBuildLoad2(S->b, LLVMGetAllocatedType(var), var, "");
}

void simt_set(Simt *S, LLVMValueRef var, LLVMValueRef v)
{
	LLVMBuildStore(S->b, v, var);
}

LLVMValueRef simt_for(Simt *S, SimtFor *L, LLVMValueRef start, LLVMValueRef end, LLVMValueRef step)
{
	LLVMTypeRef t = LLVMTypeOf(start);
	if (LLVMTypeOf(end) != t)
		end = LLVMBuildSExt(S->b, end, t, "");
	if (LLVMTypeOf(step) != t)
		step = LLVMBuildSExt(S->b, step, t, "");
	L->var = simt_var(S, t, start);
	L->end = end;
	L->step = step;
	L->cond = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "for");
	L->body = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "body");
	L->exit = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "done");
	LLVMBuildBr(S->b, L->cond);
	LLVMPositionBuilderAtEnd(S->b, L->cond);
	LLVMValueRef i = simt_get(S, L->var);
	LLVMBuildCondBr(S->b, LLVMBuildICmp(S->b, LLVMIntSLT, i, end, ""), L->body, L->exit);
	LLVMPositionBuilderAtEnd(S->b, L->body);
	return simt_get(S, L->var);
}

void simt_for_end(Simt *S, SimtFor *L)
{
	simt_set(S, L->var, LLVMBuildAdd(S->b, simt_get(S, L->var), L->step, ""));
	LLVMBuildBr(S->b, L->cond);
	LLVMMoveBasicBlockAfter(L->exit, LLVMGetInsertBlock(S->b));
	LLVMPositionBuilderAtEnd(S->b, L->exit);
}

void simt_if(Simt *S, SimtIf *c, LLVMValueRef cond)
{
	LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "then");
	c->els = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "else");
	c->end = c->els;
	c->has_else = false;
	LLVMBuildCondBr(S->b, cond, then, c->els);
	LLVMPositionBuilderAtEnd(S->b, then);
}

void simt_else(Simt *S, SimtIf *c)
{
	c->end = LLVMAppendBasicBlockInContext(S->ctx, S->fn, "endif");
	c->has_else = true;
	LLVMBuildBr(S->b, c->end);
	LLVMMoveBasicBlockAfter(c->els, LLVMGetInsertBlock(S->b));
	LLVMPositionBuilderAtEnd(S->b, c->els);
}

void simt_endif(Simt *S, SimtIf *c)
{
	LLVMBuildBr(S->b, c->end);
	LLVMMoveBasicBlockAfter(c->end, LLVMGetInsertBlock(S->b));
	LLVMPositionBuilderAtEnd(S->b, c->end);
}

/* ---- math ---------------------------------------------------------------------------- */

LLVMValueRef simt_call(Simt *S, const char *intrinsic, LLVMValueRef *args, int n)
{
	unsigned id = LLVMLookupIntrinsicID(intrinsic, strlen(intrinsic));
	BN_ASSERT(id != 0 && n >= 1);
	LLVMTypeRef t = LLVMTypeOf(args[0]);
	LLVMValueRef f = LLVMGetIntrinsicDeclaration(S->mod, id, &t, 1);
	LLVMTypeRef ft = LLVMIntrinsicGetType(S->ctx, id, &t, 1);
	return LLVMBuildCall2(S->b, ft, f, args, (unsigned)n, "");
}

LLVMValueRef simt_sqrt(Simt *S, LLVMValueRef x) { return simt_call(S, "llvm.sqrt", &x, 1); }
LLVMValueRef simt_rint(Simt *S, LLVMValueRef x) { return simt_call(S, "llvm.rint", &x, 1); }
LLVMValueRef simt_fabs(Simt *S, LLVMValueRef x) { return simt_call(S, "llvm.fabs", &x, 1); }

LLVMValueRef simt_fmax(Simt *S, LLVMValueRef a, LLVMValueRef b)
{
	LLVMValueRef args[2] = {a, b};
	return simt_call(S, "llvm.maxnum", args, 2);
}

LLVMValueRef simt_fmin(Simt *S, LLVMValueRef a, LLVMValueRef b)
{
	LLVMValueRef args[2] = {a, b};
	return simt_call(S, "llvm.minnum", args, 2);
}

/* exp(x) = 2^k * e^r with k = rint(x / ln 2), r = x - k ln 2 in double (|r| <= 0.35), e^r
 * by its Taylor series to r^13 (error below 1e-16 relative), 2^k from the exponent bits,
 * one rounding to float at the end. */
LLVMValueRef simt_expf(Simt *S, LLVMValueRef x)
{
	LLVMBuilderRef b = S->b;
	if (S->flavor == SIMT_MSL) {
		/* Apple GPUs have no double: the MSL prelude's bn_expf (codegen/metal) */
		LLVMTypeRef pt[1] = {S->t_f32};
		return call_named(S, "msl:bn_expf", S->t_f32, pt, &x, 1);
	}
	LLVMValueRef lo = simt_f32(S, -104.0f), hi = simt_f32(S, 88.72f);
	LLVMValueRef xc = simt_fmin(S, simt_fmax(S, x, lo), hi);
	LLVMValueRef xd = LLVMBuildFPExt(b, xc, S->t_f64, "");
	LLVMValueRef kd = simt_rint(S, LLVMBuildFMul(b, xd, simt_f64(S, 1.4426950408889634), ""));
	LLVMValueRef r = LLVMBuildFSub(b, xd, LLVMBuildFMul(b, kd, simt_f64(S, 6.93147180369123816490e-01), ""), "");
	r = LLVMBuildFSub(b, r, LLVMBuildFMul(b, kd, simt_f64(S, 1.90821492927058770002e-10), ""), "");
	/* Horner from the highest term: p = 1 + r(1 + r/2(1 + r/3(...))) */
	LLVMValueRef p = simt_f64(S, 1.0);
	for (int i = 13; i >= 1; i--)
		p = LLVMBuildFAdd(b, simt_f64(S, 1.0),
				  LLVMBuildFMul(b, LLVMBuildFMul(b, r, simt_f64(S, 1.0 / (double)i), ""), p, ""), "");
	LLVMValueRef k = LLVMBuildFPToSI(b, kd, S->t_i64, "");
	LLVMValueRef bits = LLVMBuildShl(b, LLVMBuildAdd(b, k, simt_i64(S, 1023), ""), simt_i64(S, 52), "");
	LLVMValueRef scale = LLVMBuildBitCast(b, bits, S->t_f64, "");
	LLVMValueRef y = LLVMBuildFPTrunc(b, LLVMBuildFMul(b, p, scale, ""), S->t_f32, "");
	LLVMValueRef big = LLVMBuildFCmp(b, LLVMRealOGE, x, hi, "");
	LLVMValueRef small = LLVMBuildFCmp(b, LLVMRealOLE, x, lo, "");
	y = LLVMBuildSelect(b, big, simt_f32(S, (float)__builtin_inff()), y, "");
	y = LLVMBuildSelect(b, small, simt_f32(S, 0.0f), y, "");
	LLVMValueRef nan = LLVMBuildFCmp(b, LLVMRealUNO, x, x, "");
	return LLVMBuildSelect(b, nan, x, y, "");
}

LLVMValueRef simt_isfinite(Simt *S, LLVMValueRef x)
{
	return LLVMBuildFCmp(S->b, LLVMRealOLT, simt_fabs(S, x), simt_f32(S, (float)__builtin_inff()), "");
}

LLVMValueRef simt_f16_to_f32(Simt *S, LLVMValueRef h)
{
	return LLVMBuildFPExt(S->b, LLVMBuildBitCast(S->b, h, S->t_f16, ""), S->t_f32, "");
}

LLVMValueRef simt_f32_to_f16(Simt *S, LLVMValueRef f)
{
	return LLVMBuildBitCast(S->b, LLVMBuildFPTrunc(S->b, f, S->t_f16, ""), S->t_i16, "");
}

LLVMValueRef simt_bf16_to_f32(Simt *S, LLVMValueRef h)
{
	LLVMValueRef u = LLVMBuildShl(S->b, LLVMBuildZExt(S->b, h, S->t_i32, ""), simt_i32(S, 16), "");
	return LLVMBuildBitCast(S->b, u, S->t_f32, "");
}

LLVMValueRef simt_round_f16(Simt *S, LLVMValueRef f)
{
	return LLVMBuildFPExt(S->b, LLVMBuildFPTrunc(S->b, f, S->t_f16, ""), S->t_f32, "");
}

/* ---- output ---------------------------------------------------------------------------- */

const char *simt_ptx_features(int cc)
{
	return cc >= 89 ? "+ptx78" : cc >= 86 ? "+ptx71" : "+ptx70";
}

static int optimize(Simt *S, LLVMTargetMachineRef tm, BnErr *e)
{
	char *msg = NULL;
	if (LLVMVerifyModule(S->mod, LLVMReturnStatusAction, &msg)) {
		int rc = bn_err(e, BN_EINVAL, "kernel module '%s' does not verify: %.300s",
				LLVMGetModuleIdentifier(S->mod, &(size_t){0}), msg ? msg : "?");
		LLVMDisposeMessage(msg);
		return rc;
	}
	LLVMDisposeMessage(msg);
	LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
	LLVMErrorRef err = LLVMRunPasses(S->mod, "default<O3>", tm, po);
	LLVMDisposePassBuilderOptions(po);
	if (err) {
		char *m = LLVMGetErrorMessage(err);
		int rc = bn_err(e, BN_EINVAL, "optimizing the kernels failed: %.300s", m);
		LLVMDisposeErrorMessage(m);
		return rc;
	}
	return 0;
}

static LLVMTargetMachineRef machine(Simt *S, const char *triple, const char *cpu,
				    const char *features, LLVMRelocMode reloc, BnErr *e)
{
	LLVMTargetRef t = NULL;
	char *msg = NULL;
	if (LLVMGetTargetFromTriple(triple, &t, &msg)) {
		bn_err(e, BN_EUNSUPPORTED, "LLVM has no target for %s: %s", triple, msg ? msg : "?");
		LLVMDisposeMessage(msg);
		return NULL;
	}
	LLVMTargetMachineRef tm = LLVMCreateTargetMachine(t, triple, cpu, features,
							  LLVMCodeGenLevelAggressive, reloc,
							  LLVMCodeModelDefault);
	if (!tm) {
		bn_err(e, BN_EUNSUPPORTED, "LLVM cannot make a target machine for %s %s", triple, cpu);
		return NULL;
	}
	LLVMSetTarget(S->mod, triple);
	LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
	LLVMSetModuleDataLayout(S->mod, dl);
	LLVMDisposeTargetData(dl);
	return tm;
}

static int buf_put(CgBuf *b, const char *s, size_t n)
{
	if (!b)
		return 0;
	return cg_printf(b, "%.*s", (int)n, s) < 0 ? -1 : 0;
}

int simt_emit_ptx(Simt *S, const char *sm, CgBuf *ptx, CgBuf *ll, BnErr *e)
{
	BN_ASSERT(S->flavor == SIMT_PTX);
	LLVMInitializeNVPTXTargetInfo();
	LLVMInitializeNVPTXTarget();
	LLVMInitializeNVPTXTargetMC();
	LLVMInitializeNVPTXAsmPrinter();
	int cc = atoi(sm + 3);
	LLVMTargetMachineRef tm = machine(S, "nvptx64-nvidia-cuda", sm, simt_ptx_features(cc),
					  LLVMRelocDefault, e);
	if (!tm)
		return e ? e->code : BN_EUNSUPPORTED;
	int rc = optimize(S, tm, e);
	if (!rc && ll) {
		char *text = LLVMPrintModuleToString(S->mod);
		rc = buf_put(ll, text, strlen(text)) ? bn_err(e, BN_ENOMEM, "out of memory") : 0;
		LLVMDisposeMessage(text);
	}
	LLVMMemoryBufferRef mb = NULL;
	char *msg = NULL;
	if (!rc && LLVMTargetMachineEmitToMemoryBuffer(tm, S->mod, LLVMAssemblyFile, &msg, &mb)) {
		rc = bn_err(e, BN_EINVAL, "LLVM could not emit PTX for %s: %.300s", sm, msg ? msg : "?");
		LLVMDisposeMessage(msg);
	}
	if (!rc && buf_put(ptx, LLVMGetBufferStart(mb), LLVMGetBufferSize(mb)))
		rc = bn_err(e, BN_ENOMEM, "out of memory");
	if (mb)
		LLVMDisposeMemoryBuffer(mb);
	LLVMDisposeTargetMachine(tm);
	return rc;
}

int simt_emit_host_object(Simt *S, CgBuf *obj, BnErr *e)
{
	BN_ASSERT(S->flavor == SIMT_HOST);
#ifdef BITNETC_NO_HOST_CODEGEN
	/* a portable bitnetc links LLVM's NVPTX backend alone (CMake's BITNETC_PORTABLE) */
	(void)obj;
	return bn_err(e, BN_EUNSUPPORTED, "this bitnetc has no host code generator (a portable "
		      "build: NVPTX only), so it cannot write host kernels");
#else
	if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter())
		return bn_err(e, BN_EUNSUPPORTED, "LLVM has no code generator for this host");
	char *triple = LLVMGetDefaultTargetTriple();
	char *cpu = LLVMGetHostCPUName();
	char *feat = LLVMGetHostCPUFeatures();
	LLVMTargetMachineRef tm = machine(S, triple, cpu, feat, LLVMRelocPIC, e);
	int rc = tm ? optimize(S, tm, e) : (e ? e->code : BN_EUNSUPPORTED);
	LLVMMemoryBufferRef mb = NULL;
	char *msg = NULL;
	if (!rc && LLVMTargetMachineEmitToMemoryBuffer(tm, S->mod, LLVMObjectFile, &msg, &mb)) {
		rc = bn_err(e, BN_EINVAL, "LLVM could not write the host object: %.300s", msg ? msg : "?");
		LLVMDisposeMessage(msg);
	}
	if (!rc && cg_put(obj, LLVMGetBufferStart(mb), LLVMGetBufferSize(mb)))
		rc = bn_err(e, BN_ENOMEM, "out of memory");
	if (mb)
		LLVMDisposeMemoryBuffer(mb);
	if (tm)
		LLVMDisposeTargetMachine(tm);
	LLVMDisposeMessage(triple);
	LLVMDisposeMessage(cpu);
	LLVMDisposeMessage(feat);
	return rc;
#endif
}
