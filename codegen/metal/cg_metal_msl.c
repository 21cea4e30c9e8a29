/* cg_metal_msl.c - the kernels as Metal Shading Language: the CUDA backend's kernel
 * emitters build each kernel once through the SIMT builder (codegen/simt) in its SIMT_MSL
 * flavour, and this file writes that LLVM IR, unoptimized, as MSL source: one statement per
 * instruction, locals for the builder's variables, structured control flow recovered from
 * the builder's loops and branches (a loop header is a block named "for*", an if's join
 * its immediate post-dominator), vectors split into lanes, the builder's "msl:NAME"
 * calls as the prelude's bn_* helpers, and its SIMD-group matrices ("msl:sg_*" calls on
 * [64 x half|float] locals) as simdgroup_half8x8 / simdgroup_float8x8 variables and
 * Metal's simdgroup_load / _store / _multiply_accumulate. Apple GPUs have no double: the builder's f64 values
 * are bn_f64 here, a pair of floats (hi + lo, about 48 bits of significand) with the
 * prelude's double-float arithmetic, so that the sums the CUDA kernels keep in double
 * (RMSNorm, attention) round to the same floats in all but rare cases.
 *
 * Each kernel also gets, under #ifdef BN_MSL_HOST, a trampoline NAME__host with the
 * emulator's signature (simt_abi.h) that unpacks the parameters and thread indices and
 * calls it, so that the same text compiles as C++17 with tests/metal/msl_host.h and runs
 * under the tests' SIMT emulator. */
#include "cg_metal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

enum { SP_DEVICE, SP_THREADGROUP };

typedef struct {
	CgBuf *b;
	BnErr *e;
	LLVMValueRef fn;
	/* value -> id (open addressing over pointers) */
	LLVMValueRef *key;
	int *val;
	size_t cap;
	int next_id;
	/* blocks, their successors and post-dominators */
	LLVMBasicBlockRef *bb;
	int nb, ret;
	unsigned char *pdom; /* nb x nb: pdom[a * nb + b] = b post-dominates a */
	int err;
	bool uses_smem;
} Tr;

static int tr_fail(Tr *t, const char *fmt, const char *what)
{
	if (!t->err) {
		size_t n;
		const char *name = LLVMGetValueName2(t->fn, &n);
		while (what && *what == ' ')
			what++;
		t->err = bn_err(t->e, BN_EUNSUPPORTED, "codegen (metal): kernel '%.*s': %s%s%.200s",
				(int)n, name, fmt, what ? " " : "", what ? what : "");
	}
	return t->err;
}

/* ---- value ids ---------------------------------------------------------------------- */

static size_t hash_ptr(const void *p, size_t cap)
{
	uintptr_t x = (uintptr_t)p;
	x ^= x >> 17;
	x *= 0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 7) & (cap - 1);
}

static int id_of(Tr *t, LLVMValueRef v)
{
	size_t i = hash_ptr(v, t->cap);
	while (t->key[i]) {
		if (t->key[i] == v)
			return t->val[i];
		i = (i + 1) & (t->cap - 1);
	}
	if ((size_t)t->next_id * 2 >= t->cap)
		return -1; /* sized before: cannot happen */
	t->key[i] = v;
	t->val[i] = t->next_id++;
	return t->val[i];
}

/* ---- types ------------------------------------------------------------------------- */

static LLVMTypeKind kind(LLVMTypeRef ty)
{
	return LLVMGetTypeKind(ty);
}

static unsigned int_bits(LLVMTypeRef ty)
{
	return kind(ty) == LLVMIntegerTypeKind ? LLVMGetIntTypeWidth(ty) : 0;
}

/* Bytes of a type in memory as the IR addresses it (f64: 8, though bn_f64 is a float). */
static unsigned type_size(LLVMTypeRef ty)
{
	switch (kind(ty)) {
	case LLVMIntegerTypeKind: return (LLVMGetIntTypeWidth(ty) + 7) / 8;
	case LLVMHalfTypeKind: return 2;
	case LLVMFloatTypeKind: return 4;
	case LLVMDoubleTypeKind: return 8;
	case LLVMPointerTypeKind: return 8;
	case LLVMVectorTypeKind: return LLVMGetVectorSize(ty) * type_size(LLVMGetElementType(ty));
	case LLVMArrayTypeKind: return (unsigned)LLVMGetArrayLength2(ty) * type_size(LLVMGetElementType(ty));
	default: return 0;
	}
}

/* The MSL name of a scalar type; unsig: the unsigned integer of its width. */
static const char *tname(LLVMTypeRef ty, bool unsig)
{
	switch (kind(ty)) {
	case LLVMIntegerTypeKind:
		switch (LLVMGetIntTypeWidth(ty)) {
		case 1: return "bool";
		case 8: return unsig ? "uint8_t" : "int8_t";
		case 16: return unsig ? "uint16_t" : "int16_t";
		case 32: return unsig ? "uint32_t" : "int32_t";
		case 64: return unsig ? "uint64_t" : "int64_t";
		default: return NULL;
		}
	case LLVMHalfTypeKind: return "half";
	case LLVMFloatTypeKind: return "float";
	case LLVMDoubleTypeKind: return "bn_f64";
	default: return NULL;
	}
}

static bool is_f64(LLVMTypeRef ty)
{
	if (kind(ty) == LLVMVectorTypeKind)
		ty = LLVMGetElementType(ty);
	return kind(ty) == LLVMDoubleTypeKind;
}

static const char *uname(unsigned bytes)
{
	return bytes == 1 ? "uint8_t" : bytes == 2 ? "uint16_t" : bytes == 4 ? "uint32_t" : "uint64_t";
}

static int space_of(Tr *t, LLVMValueRef p, int depth)
{
	if (depth > 64)
		return SP_DEVICE;
	if (LLVMIsAArgument(p))
		return SP_DEVICE;
	if (LLVMIsACallInst(p))
		return SP_THREADGROUP; /* msl:bn_smem, the one call returning a pointer */
	if (LLVMIsAGetElementPtrInst(p))
		return space_of(t, LLVMGetOperand(p, 0), depth + 1);
	if (LLVMIsASelectInst(p))
		return space_of(t, LLVMGetOperand(p, 1), depth + 1);
	if (LLVMIsALoadInst(p) && LLVMIsAAllocaInst(LLVMGetOperand(p, 0))) {
		LLVMValueRef a = LLVMGetOperand(p, 0);
		for (LLVMUseRef u = LLVMGetFirstUse(a); u; u = LLVMGetNextUse(u)) {
			LLVMValueRef s = LLVMGetUser(u);
			if (LLVMIsAStoreInst(s) && LLVMGetOperand(s, 1) == a)
				return space_of(t, LLVMGetOperand(s, 0), depth + 1);
		}
	}
	return SP_DEVICE;
}

static const char *ptr_type(Tr *t, LLVMValueRef p)
{
	return space_of(t, p, 0) == SP_THREADGROUP ? "threadgroup uint8_t *" : "device uint8_t *";
}

/* ---- operands ----------------------------------------------------------------------- */

static void put_float(CgBuf *b, double d, bool half)
{
	float f = (float)d;
	if (isnan(f))
		cg_printf(b, "as_type<float>(0x7fc00000u)");
	else if (isinf(f))
		cg_printf(b, "as_type<float>(%s)", f > 0 ? "0x7f800000u" : "0xff800000u");
	else {
		char s[64];
		snprintf(s, sizeof s, "%.9g", (double)f);
		bool dot = strpbrk(s, ".e") != NULL;
		cg_printf(b, "%s%s%sf%s", half ? "(half)(" : "", s, dot ? "" : ".0", half ? ")" : "");
	}
}

/* Operand v (lane k of a vector, -1 for a scalar) as an expression. */
static void operand(Tr *t, LLVMValueRef v, int k)
{
	CgBuf *b = t->b;
	LLVMTypeRef ty = LLVMTypeOf(v);
	if (LLVMIsAInstruction(v)) {
		int id = id_of(t, v);
		if (k >= 0)
			cg_printf(b, "v%d_%d", id, k);
		else
			cg_printf(b, "v%d", id);
		return;
	}
	if (LLVMIsAArgument(v)) {
		unsigned n = LLVMCountParams(t->fn);
		for (unsigned i = 0; i < n; i++)
			if (LLVMGetParam(t->fn, i) == v) {
				cg_printf(b, "p%u", i);
				return;
			}
	}
	if (kind(ty) == LLVMVectorTypeKind) {
		if (k < 0) {
			tr_fail(t, "a vector operand where a scalar is needed", NULL);
			return;
		}
		if (LLVMIsUndef(v) || LLVMIsPoison(v) || LLVMIsNull(v)) {
			cg_printf(b, "(%s)0", tname(LLVMGetElementType(ty), false));
			return;
		}
		operand(t, LLVMGetAggregateElement(v, (unsigned)k), -1);
		return;
	}
	if (is_f64(ty) && (LLVMIsUndef(v) || LLVMIsPoison(v) || LLVMIsAConstantFP(v))) {
		LLVMBool loses;
		double x = LLVMIsAConstantFP(v) ? LLVMConstRealGetDouble(v, &loses) : 0.0;
		float hi = (float)x, lo = isfinite(hi) ? (float)(x - (double)hi) : 0.0f;
		cg_printf(b, "bn_f64{");
		put_float(b, hi, false);
		cg_printf(b, ", ");
		put_float(b, lo, false);
		cg_printf(b, "}");
		return;
	}
	if (LLVMIsUndef(v) || LLVMIsPoison(v)) {
		const char *n = tname(ty, false);
		cg_printf(b, "(%s)0", n ? n : "int32_t");
		return;
	}
	if (LLVMIsAConstantInt(v)) {
		unsigned w = int_bits(ty);
		long long x = LLVMConstIntGetSExtValue(v);
		if (w == 1)
			cg_printf(b, "%s", x ? "true" : "false");
		else if (w == 32 && x > INT32_MIN)
			cg_printf(b, "%lld", x);
		else if (w == 64 && x == INT64_MIN)
			cg_printf(b, "(-0x7fffffffffffffffll - 1)");
		else if (w == 64)
			cg_printf(b, "(int64_t)%lldll", x);
		else
			cg_printf(b, "(%s)%lld", tname(ty, false), x);
		return;
	}
	if (LLVMIsAConstantFP(v)) {
		LLVMBool loses;
		put_float(b, LLVMConstRealGetDouble(v, &loses), kind(ty) == LLVMHalfTypeKind);
		return;
	}
	if (LLVMIsNull(v)) {
		cg_printf(b, "0");
		return;
	}
	char *s = LLVMPrintValueToString(v);
	tr_fail(t, "an operand it cannot write:", s);
	LLVMDisposeMessage(s);
}

/* ---- instructions ------------------------------------------------------------------- */

static void indent(Tr *t, int d)
{
	for (int i = 0; i < d; i++)
		cg_printf(t->b, "\t");
}

/* "T vN = " or "T vN_k = " */
static void def(Tr *t, LLVMValueRef in, int k, int d)
{
	LLVMTypeRef ty = LLVMTypeOf(in);
	indent(t, d);
	if (kind(ty) == LLVMPointerTypeKind)
		cg_printf(t->b, "%s", ptr_type(t, in));
	else {
		LLVMTypeRef et = kind(ty) == LLVMVectorTypeKind ? LLVMGetElementType(ty) : ty;
		const char *n = tname(et, false);
		if (!n) {
			tr_fail(t, "a value of a type it cannot write", NULL);
			return;
		}
		cg_printf(t->b, "const %s ", n);
	}
	if (k >= 0)
		cg_printf(t->b, "v%d_%d = ", id_of(t, in), k);
	else
		cg_printf(t->b, "v%d = ", id_of(t, in));
}

static int lanes(LLVMValueRef v)
{
	LLVMTypeRef ty = LLVMTypeOf(v);
	return kind(ty) == LLVMVectorTypeKind ? (int)LLVMGetVectorSize(ty) : 0;
}

/* A load of ty (scalar) at pointer expression p + off bytes, aligned to al. */
static void load_at(Tr *t, LLVMValueRef p, unsigned off, LLVMTypeRef ty, unsigned al)
{
	CgBuf *b = t->b;
	unsigned sz = type_size(ty);
	const char *sp = space_of(t, p, 0) == SP_THREADGROUP ? "threadgroup" : "device";
	if (al >= sz) {
		cg_printf(b, "*(%s const %s *)(", sp, tname(ty, false));
		operand(t, p, -1);
		cg_printf(b, " + %u)", off);
		return;
	}
	/* under-aligned: the bytes, little-endian */
	cg_printf(b, "as_type<%s>((%s)(", tname(ty, false), uname(sz));
	for (unsigned i = 0; i < sz; i++) {
		cg_printf(b, "%s((%s)", i ? " | " : "", uname(sz));
		operand(t, p, -1);
		cg_printf(b, "[%u] << %u)", off + i, 8 * i);
	}
	cg_printf(b, "))");
}

static void store_at(Tr *t, LLVMValueRef p, unsigned off, LLVMValueRef v, int k, unsigned al, int d)
{
	CgBuf *b = t->b;
	LLVMTypeRef ty = LLVMTypeOf(v);
	if (k >= 0)
		ty = LLVMGetElementType(ty);
	unsigned sz = type_size(ty);
	const char *sp = space_of(t, p, 0) == SP_THREADGROUP ? "threadgroup" : "device";
	if (al >= sz) {
		indent(t, d);
		cg_printf(b, "*(%s %s *)(", sp, tname(ty, false));
		operand(t, p, -1);
		cg_printf(b, " + %u) = ", off);
		operand(t, v, k);
		cg_printf(b, ";\n");
		return;
	}
	for (unsigned i = 0; i < sz; i++) {
		indent(t, d);
		operand(t, p, -1);
		cg_printf(b, "[%u] = (uint8_t)(as_type<%s>(", off + i, uname(sz));
		operand(t, v, k);
		cg_printf(b, ") >> %u);\n", 8 * i);
	}
}

static const char *intrinsic_name(const char *n)
{
	static const char *const map[][2] = {{"llvm.sqrt.", "sqrt"}, {"llvm.rint.", "rint"},
					     {"llvm.fabs.", "fabs"}, {"llvm.maxnum.", "fmax"},
					     {"llvm.minnum.", "fmin"}};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strncmp(n, map[i][0], strlen(map[i][0])) == 0)
			return map[i][1];
	return NULL;
}

/* The element type of a SIMD-group matrix (an alloca of [64 x half|float]), NULL if v is
 * not one. */
static const char *mat_elem(LLVMValueRef v)
{
	if (!LLVMIsAAllocaInst(v))
		return NULL;
	LLVMTypeRef at = LLVMGetAllocatedType(v);
	if (kind(at) != LLVMArrayTypeKind || LLVMGetArrayLength2(at) != 64)
		return NULL;
	LLVMTypeKind ek = kind(LLVMGetElementType(at));
	return ek == LLVMHalfTypeKind ? "half" : ek == LLVMFloatTypeKind ? "float" : NULL;
}

/* The builder's SIMD-group matrix calls (msl:sg_*, codegen/simt/simt.h) as Metal's
 * simdgroup_matrix functions; the matrices are locals, the memory threadgroup memory. */
static void mat_call(Tr *t, LLVMValueRef in, const char *op, int d)
{
	CgBuf *b = t->b;
	int na = LLVMGetNumArgOperands(in);
	LLVMValueRef a[4] = {0};
	for (int i = 0; i < na && i < 4; i++)
		a[i] = LLVMGetOperand(in, (unsigned)i);
	const char *et = na > 0 ? mat_elem(a[0]) : NULL;
	indent(t, d);
	if (strcmp(op, "sg_fill") == 0 && na == 2 && et) {
		operand(t, a[0], -1);
		cg_printf(b, " = make_filled_simdgroup_matrix<%s, 8, 8>((%s)", et, et);
		operand(t, a[1], -1);
		cg_printf(b, ");\n");
		return;
	}
	if ((strcmp(op, "sg_load") == 0 || strcmp(op, "sg_store") == 0) && na == 4 && et) {
		if (space_of(t, a[1], 0) != SP_THREADGROUP) {
			tr_fail(t, "a SIMD-group matrix moved to or from memory that is not threadgroup memory", NULL);
			return;
		}
		bool ld = op[3] == 'l';
		cg_printf(b, "simdgroup_%s(", ld ? "load" : "store");
		operand(t, a[0], -1);
		cg_printf(b, ", (threadgroup %s%s *)", ld ? "const " : "", et);
		operand(t, a[1], -1);
		cg_printf(b, ", (ulong)");
		operand(t, a[2], -1);
		cg_printf(b, ", ulong2(0, 0), ");
		operand(t, a[3], -1);
		cg_printf(b, ");\n");
		return;
	}
	if (strcmp(op, "sg_mac") == 0 && na == 4 && et && mat_elem(a[1]) && mat_elem(a[2]) && mat_elem(a[3])) {
		cg_printf(b, "simdgroup_multiply_accumulate(");
		for (int i = 0; i < 4; i++) {
			cg_printf(b, "%s", i ? ", " : "");
			operand(t, a[i], -1);
		}
		cg_printf(b, ");\n");
		return;
	}
	tr_fail(t, "a SIMD-group matrix call it cannot write:", op);
}

static void call(Tr *t, LLVMValueRef in, int d)
{
	CgBuf *b = t->b;
	LLVMValueRef callee = LLVMGetCalledValue(in);
	size_t n;
	const char *name = callee ? LLVMGetValueName2(callee, &n) : "";
	char fn[64];
	if (strncmp(name, "msl:sg_", 7) == 0) {
		mat_call(t, in, name + 4, d);
		return;
	}
	if (strncmp(name, "msl:", 4) == 0) {
		size_t l = strcspn(name + 4, "|");
		snprintf(fn, sizeof fn, "%.*s%s", (int)(l < 50 ? l : 50), name + 4,
			 strstr(name, "|f64") ? "_f64" : strstr(name, "|i64") ? "_i64" : "");
	} else if (LLVMGetNumArgOperands(in) > 0 && is_f64(LLVMTypeOf(LLVMGetOperand(in, 0)))) {
		const char *m = intrinsic_name(name);
		if (!m || strcmp(m, "fmax") == 0 || strcmp(m, "fmin") == 0 || strcmp(m, "fabs") == 0)
			snprintf(fn, sizeof fn, "bn_f64_%s", m ? m + (m[0] == 'f' ? 1 : 0) : "?");
		if (!m || (strcmp(m, "fmax") && strcmp(m, "fmin") && strcmp(m, "fabs"))) {
			tr_fail(t, "a call on a double it cannot write:", name);
			return;
		}
	} else {
		const char *m = intrinsic_name(name);
		if (!m) {
			tr_fail(t, "a call it cannot write:", name);
			return;
		}
		snprintf(fn, sizeof fn, "%s", m);
	}
	if (strcmp(fn, "bn_smem") == 0)
		t->uses_smem = true;
	if (kind(LLVMTypeOf(in)) == LLVMVoidTypeKind)
		indent(t, d);
	else
		def(t, in, -1, d);
	cg_printf(b, "%s(", fn);
	int na = LLVMGetNumArgOperands(in);
	for (int i = 0; i < na; i++) {
		if (i)
			cg_printf(b, ", ");
		operand(t, LLVMGetOperand(in, (unsigned)i), -1);
	}
	cg_printf(b, ");\n");
}

static const char *icmp_op(LLVMIntPredicate p, bool *uns)
{
	*uns = p == LLVMIntUGT || p == LLVMIntUGE || p == LLVMIntULT || p == LLVMIntULE;
	switch (p) {
	case LLVMIntEQ: return "==";
	case LLVMIntNE: return "!=";
	case LLVMIntUGT: case LLVMIntSGT: return ">";
	case LLVMIntUGE: case LLVMIntSGE: return ">=";
	case LLVMIntULT: case LLVMIntSLT: return "<";
	case LLVMIntULE: case LLVMIntSLE: return "<=";
	}
	return "==";
}

static void fcmp(Tr *t, LLVMValueRef in, int k)
{
	CgBuf *b = t->b;
	LLVMValueRef a = LLVMGetOperand(in, 0), c = LLVMGetOperand(in, 1);
	LLVMRealPredicate p = LLVMGetFCmpPredicate(in);
	if (is_f64(LLVMTypeOf(a))) {
		/* ordered comparisons of bn_f64: bn_f64_cmp gives -1, 0, 1, or 2 unordered */
		static const struct { LLVMRealPredicate p; const char *t1, *conj, *t2; } ft[] = {
			{LLVMRealOEQ, "== 0", NULL, NULL}, {LLVMRealOGT, "== 1", NULL, NULL},
			{LLVMRealOGE, ">= 0", "&&", "!= 2"}, {LLVMRealOLT, "== -1", NULL, NULL},
			{LLVMRealOLE, "<= 0", NULL, NULL}, {LLVMRealONE, "!= 0", "&&", "!= 2"},
			{LLVMRealUNO, "== 2", NULL, NULL}, {LLVMRealORD, "!= 2", NULL, NULL},
			{LLVMRealUNE, "!= 0", NULL, NULL}, {LLVMRealUGT, ">= 1", NULL, NULL},
			{LLVMRealUGE, "!= -1", NULL, NULL}, {LLVMRealULT, "== -1", "||", "== 2"},
			{LLVMRealULE, "!= 1", NULL, NULL}, {LLVMRealUEQ, "== 0", "||", "== 2"}};
		for (size_t i = 0; i < sizeof ft / sizeof ft[0]; i++)
			if (ft[i].p == p) {
				for (int j = 0; j < (ft[i].conj ? 2 : 1); j++) {
					cg_printf(b, "%s(bn_f64_cmp(", j ? ft[i].conj : "(");
					operand(t, a, k);
					cg_printf(b, ", ");
					operand(t, c, k);
					cg_printf(b, ") %s)", j ? ft[i].t2 : ft[i].t1);
				}
				cg_printf(b, ")");
				return;
			}
		cg_printf(b, "%s", p == LLVMRealPredicateTrue ? "true" : "false");
		return;
	}
	/* ordered comparisons are C's; unordered ones the negation of the ordered opposite */
	static const struct { LLVMRealPredicate p; const char *op; bool neg; } tab[] = {
		{LLVMRealOEQ, "==", false}, {LLVMRealOGT, ">", false}, {LLVMRealOGE, ">=", false},
		{LLVMRealOLT, "<", false},  {LLVMRealOLE, "<=", false}, {LLVMRealUNE, "!=", false},
		{LLVMRealUGT, "<=", true},  {LLVMRealUGE, "<", true},   {LLVMRealULT, ">=", true},
		{LLVMRealULE, ">", true},   {LLVMRealUEQ, "!=", false}};
	if (p == LLVMRealUNO || p == LLVMRealORD) {
		const char *eq = p == LLVMRealUNO ? "!=" : "==", *j = p == LLVMRealUNO ? "||" : "&&";
		cg_printf(b, "(");
		operand(t, a, k);
		cg_printf(b, " %s ", eq);
		operand(t, a, k);
		cg_printf(b, " %s ", j);
		operand(t, c, k);
		cg_printf(b, " %s ", eq);
		operand(t, c, k);
		cg_printf(b, ")");
		return;
	}
	if (p == LLVMRealONE || p == LLVMRealUEQ) {
		cg_printf(b, "%s(", p == LLVMRealUEQ ? "!" : "");
		operand(t, a, k);
		cg_printf(b, " < ");
		operand(t, c, k);
		cg_printf(b, " || ");
		operand(t, a, k);
		cg_printf(b, " > ");
		operand(t, c, k);
		cg_printf(b, ")");
		return;
	}
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
		if (tab[i].p == p) {
			cg_printf(b, "%s(", tab[i].neg ? "!" : "");
			operand(t, a, k);
			cg_printf(b, " %s ", tab[i].op);
			operand(t, c, k);
			cg_printf(b, ")");
			return;
		}
	cg_printf(b, "%s", p == LLVMRealPredicateTrue ? "true" : "false");
}

/* A binary operation (lane k), integers wrapping as the IR's do. */
static void binop(Tr *t, LLVMValueRef in, LLVMOpcode op, int k)
{
	CgBuf *b = t->b;
	LLVMValueRef a = LLVMGetOperand(in, 0), c = LLVMGetOperand(in, 1);
	LLVMTypeRef ty = LLVMTypeOf(in);
	if (k >= 0)
		ty = LLVMGetElementType(ty);
	const char *sym = NULL;
	bool wrap = false, uns = false;
	switch (op) {
	case LLVMAdd: sym = "+", wrap = true; break;
	case LLVMSub: sym = "-", wrap = true; break;
	case LLVMMul: sym = "*", wrap = true; break;
	case LLVMShl: sym = "<<", wrap = true; break;
	case LLVMLShr: sym = ">>", wrap = true; break;
	case LLVMUDiv: sym = "/", wrap = true; break;
	case LLVMURem: sym = "%", wrap = true; break;
	case LLVMAShr: sym = ">>"; break;
	case LLVMSDiv: sym = "/"; break;
	case LLVMSRem: sym = "%"; break;
	case LLVMAnd: sym = "&"; break;
	case LLVMOr: sym = "|"; break;
	case LLVMXor: sym = "^"; break;
	case LLVMFAdd: sym = "+"; break;
	case LLVMFSub: sym = "-"; break;
	case LLVMFMul: sym = "*"; break;
	case LLVMFDiv: sym = "/"; break;
	default: break;
	}
	if (!sym) {
		char *txt = LLVMPrintValueToString(in);
		tr_fail(t, "an instruction it cannot write:", txt);
		LLVMDisposeMessage(txt);
		return;
	}
	if (is_f64(ty)) {
		const char *f = op == LLVMFAdd ? "add" : op == LLVMFSub ? "sub" : op == LLVMFMul ? "mul" : "div";
		cg_printf(b, "bn_f64_%s(", f);
		operand(t, a, k);
		cg_printf(b, ", ");
		operand(t, c, k);
		cg_printf(b, ")");
		return;
	}
	if (int_bits(ty) == 1)
		wrap = false, uns = false;
	if (wrap) {
		const char *u = tname(ty, true);
		cg_printf(b, "(%s)((%s)", tname(ty, false), u);
		operand(t, a, k);
		cg_printf(b, " %s ", sym);
		if (op != LLVMShl && op != LLVMLShr)
			cg_printf(b, "(%s)", u);
		operand(t, c, k);
		cg_printf(b, ")");
		return;
	}
	(void)uns;
	cg_printf(b, "(%s)(", tname(ty, false));
	operand(t, a, k);
	cg_printf(b, " %s ", sym);
	operand(t, c, k);
	cg_printf(b, ")");
}

static void cast(Tr *t, LLVMValueRef in, LLVMOpcode op, int k)
{
	CgBuf *b = t->b;
	LLVMValueRef a = LLVMGetOperand(in, 0);
	LLVMTypeRef to = LLVMTypeOf(in), from = LLVMTypeOf(a);
	if (k >= 0)
		to = LLVMGetElementType(to), from = LLVMGetElementType(from);
	const char *tn = tname(to, false);
	if (is_f64(to) || is_f64(from)) {
		const char *f = op == LLVMFPExt ? "bn_f64_from" : op == LLVMFPTrunc ? "bn_f64_to"
			      : op == LLVMSIToFP ? "bn_f64_from" : NULL;
		if (!f || (op == LLVMFPExt && kind(from) != LLVMFloatTypeKind) ||
		    (op == LLVMFPTrunc && kind(to) != LLVMFloatTypeKind)) {
			tr_fail(t, "a conversion of a double it cannot write (Apple GPUs have no double)", NULL);
			return;
		}
		cg_printf(b, "%s(%s", f, op == LLVMSIToFP ? "(float)" : "");
		operand(t, a, k);
		cg_printf(b, ")");
		return;
	}
	switch (op) {
	case LLVMTrunc:
		if (int_bits(to) == 1) {
			cg_printf(b, "((");
			operand(t, a, k);
			cg_printf(b, " & 1) != 0)");
		} else {
			cg_printf(b, "(%s)(%s)", tn, tname(to, true));
			operand(t, a, k);
		}
		return;
	case LLVMZExt:
	case LLVMUIToFP:
		cg_printf(b, "(%s)(%s)", tn, tname(from, true));
		operand(t, a, k);
		return;
	case LLVMSExt:
		if (int_bits(from) == 1) {
			cg_printf(b, "(%s)-(%s)", tn, tn);
			operand(t, a, k);
			return;
		}
		/* fall through */
	case LLVMFPTrunc:
	case LLVMFPExt:
	case LLVMSIToFP:
	case LLVMFPToSI:
		cg_printf(b, "(%s)", tn);
		operand(t, a, k);
		return;
	case LLVMFPToUI:
		cg_printf(b, "(%s)(%s)", tn, tname(to, true));
		operand(t, a, k);
		return;
	case LLVMBitCast:
		if (kind(to) == LLVMDoubleTypeKind || kind(from) == LLVMDoubleTypeKind ||
		    type_size(to) != type_size(from)) {
			tr_fail(t, "a bit cast it cannot write (Apple GPUs have no double)", NULL);
			return;
		}
		cg_printf(b, "as_type<%s>(", tn);
		operand(t, a, k);
		cg_printf(b, ")");
		return;
	default:
		tr_fail(t, "a cast it cannot write", NULL);
	}
}

static bool is_cast(LLVMOpcode op)
{
	switch (op) {
	case LLVMTrunc: case LLVMZExt: case LLVMSExt: case LLVMFPToUI: case LLVMFPToSI:
	case LLVMUIToFP: case LLVMSIToFP: case LLVMFPTrunc: case LLVMFPExt: case LLVMBitCast:
		return true;
	default:
		return false;
	}
}

/* One instruction (not a terminator). */
static void instr(Tr *t, LLVMValueRef in, int d)
{
	CgBuf *b = t->b;
	LLVMOpcode op = LLVMGetInstructionOpcode(in);
	int nl = lanes(in);
	switch (op) {
	case LLVMAlloca:
		return; /* declared at the top */
	case LLVMLoad: {
		LLVMValueRef p = LLVMGetOperand(in, 0);
		if (LLVMIsAAllocaInst(p)) {
			def(t, in, -1, d);
			operand(t, p, -1);
			cg_printf(b, ";\n");
			return;
		}
		LLVMTypeRef ty = LLVMTypeOf(in);
		unsigned al = LLVMGetAlignment(in);
		if (kind(ty) == LLVMPointerTypeKind) {
			tr_fail(t, "a pointer loaded from memory", NULL);
			return;
		}
		if (nl) {
			LLVMTypeRef et = LLVMGetElementType(ty);
			unsigned es = type_size(et);
			for (int k = 0; k < nl; k++) {
				def(t, in, k, d);
				load_at(t, p, (unsigned)k * es, et, al < es ? al : es);
				cg_printf(b, ";\n");
			}
			return;
		}
		def(t, in, -1, d);
		load_at(t, p, 0, ty, al);
		cg_printf(b, ";\n");
		return;
	}
	case LLVMStore: {
		LLVMValueRef v = LLVMGetOperand(in, 0), p = LLVMGetOperand(in, 1);
		if (LLVMIsAAllocaInst(p)) {
			indent(t, d);
			operand(t, p, -1);
			cg_printf(b, " = ");
			operand(t, v, -1);
			cg_printf(b, ";\n");
			return;
		}
		unsigned al = LLVMGetAlignment(in);
		int vl = lanes(v);
		if (vl) {
			unsigned es = type_size(LLVMGetElementType(LLVMTypeOf(v)));
			for (int k = 0; k < vl; k++)
				store_at(t, p, (unsigned)k * es, v, k, al < es ? al : es, d);
			return;
		}
		store_at(t, p, 0, v, -1, al, d);
		return;
	}
	case LLVMGetElementPtr: {
		if (LLVMGetNumIndices(in) != 1) {
			tr_fail(t, "a GEP of several indices", NULL);
			return;
		}
		unsigned es = type_size(LLVMGetGEPSourceElementType(in));
		def(t, in, -1, d);
		operand(t, LLVMGetOperand(in, 0), -1);
		cg_printf(b, " + (int64_t)");
		operand(t, LLVMGetOperand(in, 1), -1);
		cg_printf(b, " * %u;\n", es);
		return;
	}
	case LLVMCall:
		call(t, in, d);
		return;
	case LLVMAtomicRMW: {
		LLVMAtomicRMWBinOp ao = LLVMGetAtomicRMWBinOp(in);
		if ((ao != LLVMAtomicRMWBinOpMin && ao != LLVMAtomicRMWBinOpAdd) ||
		    int_bits(LLVMTypeOf(in)) != 32 || space_of(t, LLVMGetOperand(in, 0), 0) != SP_DEVICE) {
			tr_fail(t, "an atomic it cannot write", NULL);
			return;
		}
		def(t, in, -1, d);
		cg_printf(b, "atomic_fetch_%s_explicit((device atomic_int *)", ao == LLVMAtomicRMWBinOpMin ? "min" : "add");
		operand(t, LLVMGetOperand(in, 0), -1);
		cg_printf(b, ", ");
		operand(t, LLVMGetOperand(in, 1), -1);
		cg_printf(b, ", memory_order_relaxed);\n");
		return;
	}
	case LLVMExtractElement: {
		LLVMValueRef ix = LLVMGetOperand(in, 1);
		if (!LLVMIsAConstantInt(ix)) {
			tr_fail(t, "an extractelement at a variable index", NULL);
			return;
		}
		def(t, in, -1, d);
		operand(t, LLVMGetOperand(in, 0), (int)LLVMConstIntGetZExtValue(ix));
		cg_printf(b, ";\n");
		return;
	}
	case LLVMInsertElement: {
		LLVMValueRef ix = LLVMGetOperand(in, 2);
		if (!LLVMIsAConstantInt(ix)) {
			tr_fail(t, "an insertelement at a variable index", NULL);
			return;
		}
		int at = (int)LLVMConstIntGetZExtValue(ix);
		for (int k = 0; k < nl; k++) {
			def(t, in, k, d);
			if (k == at)
				operand(t, LLVMGetOperand(in, 1), -1);
			else
				operand(t, LLVMGetOperand(in, 0), k);
			cg_printf(b, ";\n");
		}
		return;
	}
	case LLVMFNeg:
		for (int k = nl ? 0 : -1; k < (nl ? nl : 0); k++) {
			def(t, in, k, d);
			cg_printf(b, "-");
			operand(t, LLVMGetOperand(in, 0), k);
			cg_printf(b, ";\n");
		}
		return;
	case LLVMICmp:
	case LLVMFCmp:
	case LLVMSelect:
	default:
		break;
	}
	for (int k = nl ? 0 : -1; k < (nl ? nl : 0); k++) {
		def(t, in, k, d);
		if (op == LLVMICmp) {
			bool uns;
			const char *sym = icmp_op(LLVMGetICmpPredicate(in), &uns);
			LLVMTypeRef ot = LLVMTypeOf(LLVMGetOperand(in, 0));
			if (k >= 0)
				ot = LLVMGetElementType(ot);
			const char *cv = uns ? tname(ot, true) : "";
			cg_printf(b, "(%s%s%s", uns ? "(" : "", cv, uns ? ")" : "");
			operand(t, LLVMGetOperand(in, 0), k);
			cg_printf(b, " %s %s%s%s", sym, uns ? "(" : "", cv, uns ? ")" : "");
			operand(t, LLVMGetOperand(in, 1), k);
			cg_printf(b, ")");
		} else if (op == LLVMFCmp) {
			fcmp(t, in, k);
		} else if (op == LLVMSelect) {
			LLVMValueRef c = LLVMGetOperand(in, 0);
			operand(t, c, lanes(c) ? k : -1);
			cg_printf(b, " ? ");
			operand(t, LLVMGetOperand(in, 1), k);
			cg_printf(b, " : ");
			operand(t, LLVMGetOperand(in, 2), k);
		} else if (is_cast(op)) {
			cast(t, in, op, k);
		} else if (op == LLVMFreeze) {
			operand(t, LLVMGetOperand(in, 0), k);
		} else {
			binop(t, in, op, k);
		}
		cg_printf(b, ";\n");
	}
}

/* ---- control flow ------------------------------------------------------------------- */

static int block_index(const Tr *t, LLVMBasicBlockRef bb)
{
	for (int i = 0; i < t->nb; i++)
		if (t->bb[i] == bb)
			return i;
	return -1;
}

static int succ(Tr *t, int i, unsigned s)
{
	LLVMValueRef term = LLVMGetBasicBlockTerminator(t->bb[i]);
	return block_index(t, LLVMGetSuccessor(term, s));
}

/* Post-dominators by the iterative data flow over the reverse graph. */
static int post_dominators(Tr *t)
{
	int nb = t->nb;
	t->pdom = malloc((size_t)nb * (size_t)nb);
	if (!t->pdom)
		return bn_err(t->e, BN_ENOMEM, "codegen (metal): out of memory");
	memset(t->pdom, 1, (size_t)nb * (size_t)nb);
	t->ret = -1;
	for (int i = 0; i < nb; i++) {
		LLVMValueRef term = LLVMGetBasicBlockTerminator(t->bb[i]);
		if (!term)
			return tr_fail(t, "a block without a terminator", NULL);
		if (LLVMGetInstructionOpcode(term) == LLVMRet) {
			if (t->ret >= 0)
				return tr_fail(t, "several returns", NULL);
			t->ret = i;
			memset(t->pdom + (size_t)i * nb, 0, (size_t)nb);
			t->pdom[(size_t)i * nb + i] = 1;
		}
	}
	if (t->ret < 0)
		return tr_fail(t, "no return", NULL);
	unsigned char *row = malloc((size_t)nb);
	if (!row)
		return bn_err(t->e, BN_ENOMEM, "codegen (metal): out of memory");
	for (bool changed = true; changed;) {
		changed = false;
		for (int i = nb - 1; i >= 0; i--) {
			if (i == t->ret)
				continue;
			LLVMValueRef term = LLVMGetBasicBlockTerminator(t->bb[i]);
			unsigned ns = LLVMGetNumSuccessors(term);
			memset(row, 1, (size_t)nb);
			for (unsigned s = 0; s < ns; s++) {
				int j = block_index(t, LLVMGetSuccessor(term, s));
				for (int x = 0; x < nb; x++)
					row[x] &= t->pdom[(size_t)j * nb + x];
			}
			row[i] = 1;
			if (memcmp(row, t->pdom + (size_t)i * nb, (size_t)nb)) {
				memcpy(t->pdom + (size_t)i * nb, row, (size_t)nb);
				changed = true;
			}
		}
	}
	free(row);
	return 0;
}

/* The immediate post-dominator of block i: of its strict post-dominators, the one that
 * all the others post-dominate. */
static int ipdom(const Tr *t, int i)
{
	int nb = t->nb, best = -1, best_n = -1;
	for (int j = 0; j < nb; j++) {
		if (j == i || !t->pdom[(size_t)i * nb + j])
			continue;
		int n = 0;
		for (int x = 0; x < nb; x++)
			n += t->pdom[(size_t)j * nb + x];
		if (n > best_n)
			best = j, best_n = n;
	}
	return best;
}

static bool is_loop_header(const Tr *t, int i)
{
	return strncmp(LLVMGetBasicBlockName(t->bb[i]), "for", 3) == 0;
}

static void body_of(Tr *t, int i, int d)
{
	for (LLVMValueRef in = LLVMGetFirstInstruction(t->bb[i]); in && !t->err; in = LLVMGetNextInstruction(in))
		if (!LLVMIsATerminatorInst(in))
			instr(t, in, d);
}

/* The blocks from i up to (not including) stop, as structured statements. */
static void seq(Tr *t, int i, int stop, int d)
{
	for (int guard = 0; i >= 0 && i != stop && !t->err; guard++) {
		if (guard > 4 * t->nb) {
			tr_fail(t, "control flow it cannot structure", NULL);
			return;
		}
		LLVMValueRef term = LLVMGetBasicBlockTerminator(t->bb[i]);
		LLVMOpcode op = LLVMGetInstructionOpcode(term);
		if (op == LLVMRet) {
			body_of(t, i, d);
			indent(t, d);
			cg_printf(t->b, "return;\n");
			return;
		}
		if (is_loop_header(t, i)) {
			if (op != LLVMBr || !LLVMIsConditional(term)) {
				tr_fail(t, "a loop header without a condition", NULL);
				return;
			}
			indent(t, d);
			cg_printf(t->b, "for (;;) {\n");
			body_of(t, i, d + 1);
			indent(t, d + 1);
			cg_printf(t->b, "if (!");
			operand(t, LLVMGetCondition(term), -1);
			cg_printf(t->b, ")\n");
			indent(t, d + 2);
			cg_printf(t->b, "break;\n");
			seq(t, succ(t, i, 0), i, d + 1);
			indent(t, d);
			cg_printf(t->b, "}\n");
			i = succ(t, i, 1);
			continue;
		}
		body_of(t, i, d);
		if (op != LLVMBr) {
			tr_fail(t, "a terminator it cannot write", NULL);
			return;
		}
		if (!LLVMIsConditional(term)) {
			i = succ(t, i, 0);
			continue;
		}
		int yes = succ(t, i, 0), no = succ(t, i, 1);
		if (yes == t->ret) {
			indent(t, d);
			cg_printf(t->b, "if (");
			operand(t, LLVMGetCondition(term), -1);
			cg_printf(t->b, ")\n");
			indent(t, d + 1);
			cg_printf(t->b, "return;\n");
			i = no;
			continue;
		}
		int join = ipdom(t, i);
		indent(t, d);
		cg_printf(t->b, "if (");
		operand(t, LLVMGetCondition(term), -1);
		cg_printf(t->b, ") {\n");
		seq(t, yes, join, d + 1);
		if (no != join) {
			indent(t, d);
			cg_printf(t->b, "} else {\n");
			seq(t, no, join, d + 1);
		}
		indent(t, d);
		cg_printf(t->b, "}\n");
		i = join;
	}
}

/* ---- kernels -------------------------------------------------------------------------- */

static char param_code(LLVMTypeRef ty)
{
	switch (kind(ty)) {
	case LLVMPointerTypeKind: return 'p';
	case LLVMFloatTypeKind: return 'f';
	case LLVMIntegerTypeKind: return LLVMGetIntTypeWidth(ty) == 64 ? 'l' : 'i';
	default: return '?';
	}
}

static const char *param_ctype(char c)
{
	return c == 'f' ? "float" : c == 'l' ? "int64_t" : "int32_t";
}

static int kernel(Tr *t, LLVMValueRef fn, CgBuf *sigs)
{
	CgBuf *b = t->b;
	size_t nn;
	const char *name = LLVMGetValueName2(fn, &nn);
	t->fn = fn;
	t->uses_smem = false;
	/* ids: every instruction; blocks */
	size_t n_in = 0;
	t->nb = 0;
	for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb)) {
		t->nb++;
		for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in))
			n_in++;
	}
	t->cap = 64;
	while (t->cap < 4 * n_in + 64)
		t->cap *= 2;
	t->key = calloc(t->cap, sizeof *t->key);
	t->val = calloc(t->cap, sizeof *t->val);
	t->bb = calloc((size_t)t->nb + 1, sizeof *t->bb);
	t->next_id = 0;
	t->pdom = NULL;
	if (!t->key || !t->val || !t->bb)
		return bn_err(t->e, BN_ENOMEM, "codegen (metal): out of memory");
	int i = 0;
	for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb))
		t->bb[i++] = bb;
	if (post_dominators(t))
		return t->err ? t->err : BN_ENOMEM;
	/* the body first (it says whether the kernel uses threadgroup memory) */
	CgBuf body = {0}, *outer = t->b;
	t->b = &body;
	for (LLVMValueRef in = LLVMGetFirstInstruction(t->bb[0]); in; in = LLVMGetNextInstruction(in)) {
		if (!LLVMIsAAllocaInst(in))
			continue;
		LLVMTypeRef at = LLVMGetAllocatedType(in);
		const char *tn = kind(at) == LLVMPointerTypeKind ? NULL : tname(at, false);
		const char *me = mat_elem(in);
		cg_printf(&body, "\t");
		if (me) {
			/* a SIMD-group matrix: set by its first simdgroup_load or fill */
			cg_printf(&body, "simdgroup_%s8x8 v%d;\n", me, id_of(t, in));
			continue;
		}
		if (kind(at) == LLVMPointerTypeKind) {
			/* the space of what is stored in it */
			LLVMValueRef src = NULL;
			for (LLVMUseRef u = LLVMGetFirstUse(in); u; u = LLVMGetNextUse(u)) {
				LLVMValueRef s = LLVMGetUser(u);
				if (LLVMIsAStoreInst(s) && LLVMGetOperand(s, 1) == in)
					src = LLVMGetOperand(s, 0);
			}
			cg_printf(&body, "%s", src ? ptr_type(t, src) : "device uint8_t *");
		} else if (!tn) {
			tr_fail(t, "a local of a type it cannot write", NULL);
		} else {
			cg_printf(&body, "%s ", tn);
		}
		cg_printf(&body, "v%d = %s;\n", id_of(t, in), is_f64(at) ? "{}" : "0");
	}
	seq(t, 0, -1, 1);
	t->b = outer;
	int rc = t->err;
	if (!rc && body.oom)
		rc = bn_err(t->e, BN_ENOMEM, "codegen (metal): out of memory");
	if (!rc) {
		unsigned np = LLVMCountParams(fn);
		char sig[64] = "";
		for (unsigned p = 0; p < np && p < sizeof sig - 1; p++)
			sig[p] = param_code(LLVMTypeOf(LLVMGetParam(fn, p)));
		cg_printf(b, "kernel void %.*s(", (int)nn, name);
		for (unsigned p = 0; p < np; p++) {
			if (sig[p] == 'p')
				cg_printf(b, "device uint8_t *p%u BN_ATTR(buffer(%u)),\n\t", p, p);
			else
				cg_printf(b, "constant %s &p%u BN_ATTR(buffer(%u)),\n\t", param_ctype(sig[p]), p, p);
		}
		if (t->uses_smem)
			cg_printf(b, "threadgroup uint8_t *bn_sm BN_ATTR(threadgroup(0)),\n\t");
		cg_printf(b, "uint3 bn_tid3 BN_ATTR(thread_position_in_threadgroup),\n"
			     "\tuint3 bn_ntid3 BN_ATTR(threads_per_threadgroup),\n"
			     "\tuint3 bn_ctaid3 BN_ATTR(threadgroup_position_in_grid),\n"
			     "\tuint3 bn_nctaid3 BN_ATTR(threadgroups_per_grid) BN_HOST_PARAMS)\n"
			     "{\n%s}\n\n", body.data ? body.data : "");
		/* the trampoline for the emulator */
		cg_printf(b, "#ifdef BN_MSL_HOST\n"
			     "extern \"C\" BN_HOST_EXPORT void %.*s__host(SimtThread *th, void **a)\n"
			     "{\n"
			     "\t%.*s(", (int)nn, name, (int)nn, name);
		for (unsigned p = 0; p < np; p++) {
			if (sig[p] == 'p')
				cg_printf(b, "(uint8_t *)(uintptr_t)*(const uint64_t *)a[%u], ", p);
			else
				cg_printf(b, "*(const %s *)a[%u], ", param_ctype(sig[p]), p);
		}
		cg_printf(b, "%sBN_HOST_ARGS(th));\n"
			     "}\n"
			     "#endif\n\n", t->uses_smem ? "(uint8_t *)th->smem, " : "");
		/* the block reductions' 32 slots of 8 bytes at least (the CUDA launches give no
		 * dynamic shared memory to kernels that use no more) */
		cg_printf(sigs, "\t{\"%.*s\", \"%s\", %d},\n", (int)nn, name, sig, t->uses_smem ? 256 : 0);
	}
	cg_buf_free(&body);
	free(t->key);
	free(t->val);
	free(t->bb);
	free(t->pdom);
	t->key = NULL, t->val = NULL, t->bb = NULL, t->pdom = NULL;
	return rc;
}

/* What every model.metal begins with: the MSL headers (or the host's stand-ins) and the
 * helpers the translated kernels call. */
static const char prelude[] =
	"#ifdef BN_MSL_HOST\n"
	"#include \"msl_host.h\" /* the tests: MSL's builtins over the SIMT emulator */\n"
	"#else\n"
	"#include <metal_stdlib>\n"
	"using namespace metal;\n"
	"#define BN_ATTR(x) [[x]]\n"
	"#define BN_HOST_PARAMS\n"
	"#endif\n\n"
	"/* Apple GPUs have no double: what the CUDA kernels compute in double is a pair of\n"
	" * floats here, hi + lo with |lo| <= ulp(hi) / 2 (double-float arithmetic: Dekker's and\n"
	" * Knuth's exact sums and products, about 48 bits of significand) */\n"
	"struct bn_f64 {\n"
	"\tfloat hi, lo;\n"
	"};\n\n"
	"static inline bn_f64 bn_f64_two_sum(float a, float b)\n"
	"{\n"
	"\tfloat s = a + b, bb = s - a;\n"
	"\treturn bn_f64{s, (a - (s - bb)) + (b - bb)};\n"
	"}\n\n"
	"static inline bn_f64 bn_f64_fast(float a, float b)\n"
	"{\n"
	"\tfloat s = a + b;\n"
	"\treturn bn_f64{s, b - (s - a)};\n"
	"}\n\n"
	"static inline bn_f64 bn_f64_from(float a)\n"
	"{\n"
	"\treturn bn_f64{a, 0.0f};\n"
	"}\n\n"
	"static inline float bn_f64_to(bn_f64 a)\n"
	"{\n"
	"\treturn a.hi + a.lo;\n"
	"}\n\n"
	"static inline bn_f64 bn_f64_add(bn_f64 a, bn_f64 b)\n"
	"{\n"
	"\tif (!isfinite(a.hi) || !isfinite(b.hi))\n"
	"\t\treturn bn_f64{a.hi + b.hi, 0.0f};\n"
	"\tbn_f64 s = bn_f64_two_sum(a.hi, b.hi), t = bn_f64_two_sum(a.lo, b.lo);\n"
	"\ts = bn_f64_fast(s.hi, s.lo + t.hi);\n"
	"\treturn bn_f64_fast(s.hi, s.lo + t.lo);\n"
	"}\n\n"
	"static inline bn_f64 bn_f64_sub(bn_f64 a, bn_f64 b)\n"
	"{\n"
	"\treturn bn_f64_add(a, bn_f64{-b.hi, -b.lo});\n"
	"}\n\n"
	"static inline bn_f64 bn_f64_mul(bn_f64 a, bn_f64 b)\n"
	"{\n"
	"\tfloat p = a.hi * b.hi;\n"
	"\tif (!isfinite(p))\n"
	"\t\treturn bn_f64{p, 0.0f};\n"
	"\tfloat e = fma(a.hi, b.hi, -p);\n"
	"\te = e + (a.hi * b.lo + a.lo * b.hi);\n"
	"\treturn bn_f64_fast(p, e);\n"
	"}\n\n"
	"static inline bn_f64 bn_f64_div(bn_f64 a, bn_f64 b)\n"
	"{\n"
	"\tfloat q1 = a.hi / b.hi;\n"
	"\tif (!isfinite(q1) || b.hi == 0.0f)\n"
	"\t\treturn bn_f64{q1, 0.0f};\n"
	"\tbn_f64 r = bn_f64_sub(a, bn_f64_mul(bn_f64{q1, 0.0f}, b));\n"
	"\tfloat q2 = r.hi / b.hi;\n"
	"\tr = bn_f64_sub(r, bn_f64_mul(bn_f64{q2, 0.0f}, b));\n"
	"\tfloat q3 = r.hi / b.hi;\n"
	"\tbn_f64 q = bn_f64_fast(q1, q2);\n"
	"\treturn bn_f64_add(q, bn_f64{q3, 0.0f});\n"
	"}\n\n"
	"/* -1, 0, 1 as a < b, a == b, a > b; 2 when either is NaN */\n"
	"static inline int bn_f64_cmp(bn_f64 a, bn_f64 b)\n"
	"{\n"
	"\tif (isnan(a.hi) || isnan(b.hi))\n"
	"\t\treturn 2;\n"
	"\tif (a.hi != b.hi)\n"
	"\t\treturn a.hi < b.hi ? -1 : 1;\n"
	"\treturn a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0;\n"
	"}\n\n"
	"/* maxnum, minnum: a NaN operand gives the other */\n"
	"static inline bn_f64 bn_f64_max(bn_f64 a, bn_f64 b)\n"
	"{\n"
	"\tint c = bn_f64_cmp(a, b);\n"
	"\treturn c == 2 ? (isnan(a.hi) ? b : a) : c < 0 ? b : a;\n"
	"}\n\n"
	"static inline bn_f64 bn_f64_min(bn_f64 a, bn_f64 b)\n"
	"{\n"
	"\tint c = bn_f64_cmp(a, b);\n"
	"\treturn c == 2 ? (isnan(a.hi) ? b : a) : c > 0 ? b : a;\n"
	"}\n\n"
	"static inline bn_f64 bn_f64_abs(bn_f64 a)\n"
	"{\n"
	"\treturn a.hi < 0.0f || (a.hi == 0.0f && a.lo < 0.0f) ? bn_f64{-a.hi, -a.lo} : a;\n"
	"}\n\n"
	"#define bn_tid_x() ((int32_t)bn_tid3.x)\n"
	"#define bn_tid_y() ((int32_t)bn_tid3.y)\n"
	"#define bn_tid_z() ((int32_t)bn_tid3.z)\n"
	"#define bn_ntid_x() ((int32_t)bn_ntid3.x)\n"
	"#define bn_ntid_y() ((int32_t)bn_ntid3.y)\n"
	"#define bn_ntid_z() ((int32_t)bn_ntid3.z)\n"
	"#define bn_ctaid_x() ((int32_t)bn_ctaid3.x)\n"
	"#define bn_ctaid_y() ((int32_t)bn_ctaid3.y)\n"
	"#define bn_ctaid_z() ((int32_t)bn_ctaid3.z)\n"
	"#define bn_nctaid_x() ((int32_t)bn_nctaid3.x)\n"
	"#define bn_nctaid_y() ((int32_t)bn_nctaid3.y)\n"
	"#define bn_nctaid_z() ((int32_t)bn_nctaid3.z)\n"
	"#define bn_smem() bn_sm\n"
	"/* __syncthreads: the threadgroup's threads and its memory and device memory writes */\n"
	"#define bn_barrier() threadgroup_barrier(mem_flags::mem_threadgroup | mem_flags::mem_device)\n"
	"/* a shuffle across the 32 lanes of the SIMD-group: index, up, down, xor (mode 0..3) */\n"
	"#define bn_shfl(v, a, m) ((m) == 3 ? simd_shuffle_xor((v), (ushort)(a)) : \\\n"
	"\t(m) == 2 ? simd_shuffle_down((v), (ushort)(a)) : \\\n"
	"\t(m) == 1 ? simd_shuffle_up((v), (ushort)(a)) : simd_shuffle((v), (ushort)(a)))\n"
	"#define bn_shfl_f64(v, a, m) bn_f64{bn_shfl((v).hi, a, m), bn_shfl((v).lo, a, m)}\n"
	"#define bn_shfl_i64(v, a, m) ((int64_t)(((uint64_t)(uint32_t)bn_shfl((int32_t)((uint64_t)(v) >> 32), a, m) << 32) | \\\n"
	"\t(uint64_t)(uint32_t)bn_shfl((int32_t)(v), a, m)))\n\n"
	"/* c + the dot product of the four signed bytes of a and b */\n"
	"static inline int32_t bn_dp4a(int32_t a, int32_t b, int32_t c)\n"
	"{\n"
	"\tchar4 x = as_type<char4>(a), y = as_type<char4>(b);\n"
	"\treturn c + (int32_t)x.x * y.x + (int32_t)x.y * y.y + (int32_t)x.z * y.z + (int32_t)x.w * y.w;\n"
	"}\n\n"
	"static inline float bn_expf(float x)\n"
	"{\n"
	"\treturn precise::exp(x);\n"
	"}\n\n";

int cg_msl_module(LLVMModuleRef mod, CgBuf *msl, CgBuf *sigs, BnErr *e)
{
	Tr t = {.b = msl, .e = e};
	cg_printf(msl, "%s", prelude);
	int rc = 0;
	for (LLVMValueRef fn = LLVMGetFirstFunction(mod); fn && !rc; fn = LLVMGetNextFunction(fn)) {
		if (LLVMIsDeclaration(fn))
			continue;
		rc = kernel(&t, fn, sigs);
	}
	if (!rc && (msl->oom || sigs->oom))
		rc = bn_err(e, BN_ENOMEM, "codegen (metal): out of memory");
	return rc;
}
