/* cg_cuda_k_elt.c - the row and element kernels of the CUDA backend: embedding rows, RMSNorm
 * (alone and fused with the int8 quantizer and the residual add), the quantizer, RoPE from a
 * table, the GLUs, add/mul, and the check for NaN/inf in the residual stream. Each follows
 * the interpreter's float order (ir/ir_interp.c): sums of squares in double, the quantizer's
 * scale in double, roundings to nearest even. One block per row unless said otherwise. */
#include "cg_cuda.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum {
	ROW_BLOCK = 256,
	ROW_RED = ROW_BLOCK / 32 * 8, /* dynamic shared bytes: a block reduction's double per warp */
};

static const IrValue *V(const CuCtx *c, IrId id)
{
	return &c->g->values[id];
}

static int unsupported(const IrNode *nd, BnErr *e, const char *why)
{
	return bn_err(e, BN_EUNSUPPORTED, "codegen (cuda): node '%s' (%s): %s", nd->name,
		      ir_op_name(nd->op), why);
}

static int full(const IrNode *nd, BnErr *e)
{
	return bn_err(e, BN_EINVAL, "codegen (cuda): node '%s': too many launches", nd->name);
}

#define B (c->S->b)
#define S_ (c->S)

static LLVMValueRef add(CuCtx *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }
static LLVMValueRef mul(CuCtx *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(B, a, b, ""); }
static LLVMValueRef i32(CuCtx *c, int64_t v) { return simt_i32(S_, v); }

/* row * k + i as i64 (rows times widths can pass 2^31 in the large models) */
static LLVMValueRef at(CuCtx *c, LLVMValueRef row, int64_t k, LLVMValueRef i)
{
	LLVMValueRef r = LLVMBuildSExt(B, row, S_->t_i64, "");
	LLVMValueRef ii = LLVMBuildSExt(B, i, S_->t_i64, "");
	return LLVMBuildAdd(B, LLVMBuildMul(B, r, simt_i64(S_, k), ""), ii, "");
}

/* Starts a kernel whose block b.x is row ctaid.x, returning early past n (param n_idx). */
static LLVMValueRef row_begin(CuCtx *c, const char *name, const SimtParam *p, int np, int n_idx)
{
	simt_begin(S_, name, p, np);
	LLVMValueRef row = simt_ctaid(S_, 0);
	simt_return_if(S_, LLVMBuildICmp(B, LLVMIntSGE, row, simt_param(S_, n_idx), ""));
	return row;
}

/* ---- embedding ---------------------------------------------------------------------- */

/* Element i of table row r (dtype dt, rows of k) as float. */
static LLVMValueRef deq(CuCtx *c, IrDtype dt, LLVMValueRef tab, LLVMValueRef r, int64_t k,
			LLVMValueRef i)
{
	switch (dt) {
	case IR_DT_F32:
		return simt_load(S_, S_->t_f32, tab, at(c, r, k, i), 4);
	case IR_DT_F16:
		return simt_f16_to_f32(S_, simt_load(S_, S_->t_i16, tab, at(c, r, k, i), 2));
	case IR_DT_BF16:
		return simt_bf16_to_f32(S_, simt_load(S_, S_->t_i16, tab, at(c, r, k, i), 2));
	default: { /* Q8_0: blocks of 32 as {f16 d, int8 q[32]} (34 bytes) */
		LLVMValueRef blk = at(c, r, k / 32, LLVMBuildSDiv(B, i, i32(c, 32), ""));
		LLVMValueRef base = simt_gep(S_, S_->t_i8, tab, LLVMBuildMul(B, blk, simt_i64(S_, 34), ""));
		LLVMValueRef d = simt_f16_to_f32(S_, simt_load(S_, S_->t_i16, base, NULL, 1));
		LLVMValueRef qi = LLVMBuildAdd(B, LLVMBuildSRem(B, i, i32(c, 32), ""), i32(c, 2), "");
		LLVMValueRef q = simt_load(S_, S_->t_i8, base, qi, 1);
		return LLVMBuildFMul(B, d, LLVMBuildSIToFP(B, q, S_->t_f32, ""), "");
	}
	}
}

int cu_op_embed(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	const IrValue *tab = V(c, nd->in[1]);
	int64_t k = tab->ne[0], vocab = tab->ne[1];
	IrDtype dt = tab->dtype;
	if (dt != IR_DT_F32 && dt != IR_DT_F16 && dt != IR_DT_BF16 && dt != IR_DT_Q8_0)
		return unsupported(nd, e, "the CUDA kernels read F32, F16, BF16 or Q8_0 embeddings");
	if (strcmp(tab->layout ? tab->layout : "gguf", "gguf") != 0)
		return unsupported(nd, e, "the embedding table must be in its GGUF layout");
	char name[128];
	snprintf(name, sizeof name, "embed_%s_k%" PRId64 "_v%" PRId64, ir_dtype_name(dt), k, vocab);
	if (!simt_has(S_, name)) {
		SimtParam p[4] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32};
		LLVMValueRef row = row_begin(c, name, p, 4, 3);
		LLVMValueRef tok = simt_load(S_, S_->t_i32, simt_param(S_, 0), row, 4);
		/* the runtime checks ids before a call; a bad one reads row 0, never outside */
		LLVMValueRef ok = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGE, tok, i32(c, 0), ""),
					       LLVMBuildICmp(B, LLVMIntSLT, tok, i32(c, vocab), ""), "");
		tok = LLVMBuildSelect(B, ok, tok, i32(c, 0), "");
		SimtFor f;
		LLVMValueRef i = simt_for(S_, &f, simt_tid(S_, 0), i32(c, k), i32(c, ROW_BLOCK));
		LLVMValueRef v = deq(c, dt, simt_param(S_, 1), tok, k, i);
		simt_store(S_, v, simt_param(S_, 2), at(c, row, k, i), 4);
		simt_for_end(S_, &f);
		simt_end(S_);
	}
	CuLaunch *l = cu_launch(L, nl, max, name, ROW_BLOCK, "n");
	if (!l)
		return full(nd, e);
	cu_arg(l, SIMT_P_PTR, "TOK");
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[1]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
	cu_arg(l, SIMT_P_I32, "n");
	return 0;
}

/* ---- RMSNorm and the quantizers -------------------------------------------------------- */

/* What a row kernel computes element i of, and whether it writes it. */
typedef struct {
	LLVMValueRef x, b, w;  /* input, the added input (add_rmsnorm_quant) or NULL, weight or NULL */
	LLVMValueRef sum_out;  /* where a + b goes, or NULL */
	LLVMValueRef row;
	int64_t k;
} RowIn;

/* x[i] (or a[i] + b[i], written to sum_out by the thread that reads it back later) */
static LLVMValueRef row_x(CuCtx *c, const RowIn *r, LLVMValueRef i, bool write)
{
	LLVMValueRef idx = at(c, r->row, r->k, i);
	LLVMValueRef x = simt_load(S_, S_->t_f32, r->b && !write ? r->sum_out : r->x, idx, 4);
	if (r->b && write) {
		x = LLVMBuildFAdd(B, x, simt_load(S_, S_->t_f32, r->b, idx, 4), "");
		simt_store(S_, x, r->sum_out, idx, 4);
	}
	return x;
}

/* The row's 1/sqrt(mean(x^2) + eps): squares in float, summed in double (any order: the
 * sum of a few thousand floats' squares is exact enough in double that the float mean
 * comes out the same), mean rounded to float. */
static LLVMValueRef norm_scale(CuCtx *c, const RowIn *r, float eps)
{
	LLVMValueRef acc = simt_var(S_, S_->t_f64, simt_f64(S_, 0.0));
	SimtFor f;
	LLVMValueRef i = simt_for(S_, &f, simt_tid(S_, 0), i32(c, r->k), i32(c, ROW_BLOCK));
	LLVMValueRef x = row_x(c, r, i, true);
	LLVMValueRef sq = LLVMBuildFPExt(B, LLVMBuildFMul(B, x, x, ""), S_->t_f64, "");
	simt_set(S_, acc, LLVMBuildFAdd(B, simt_get(S_, acc), sq, ""));
	simt_for_end(S_, &f);
	LLVMValueRef sum = simt_block_sum(S_, simt_get(S_, acc), ROW_BLOCK);
	LLVMValueRef mean = LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, sum, simt_f64(S_, (double)r->k), ""), S_->t_f32, "");
	LLVMValueRef d = simt_sqrt(S_, LLVMBuildFAdd(B, mean, simt_f32(S_, eps), ""));
	return LLVMBuildFDiv(B, simt_f32(S_, 1.0f), d, "");
}

/* The normed element: x * scale, then times the weight. */
static LLVMValueRef normed(CuCtx *c, const RowIn *r, LLVMValueRef scale, LLVMValueRef i)
{
	LLVMValueRef y = LLVMBuildFMul(B, row_x(c, r, i, false), scale, "");
	if (r->w)
		y = LLVMBuildFMul(B, y, simt_load(S_, S_->t_f32, r->w, i, 4), "");
	return y;
}

/* int8 of rint(v) clamped to [-128, 127] */
static LLVMValueRef to_i8(CuCtx *c, LLVMValueRef v)
{
	v = simt_rint(S_, v);
	v = simt_fmin(S_, simt_fmax(S_, v, simt_f32(S_, -128.0f)), simt_f32(S_, 127.0f));
	return LLVMBuildFPToSI(B, v, S_->t_i8, "");
}

/* Per-token quantizer of the row's elements y(i): amax in double (max is exact in any
 * order), s = (float)(127 / max(amax, 1e-5)), q = rint(y * s). */
static void quant_token(CuCtx *c, const RowIn *r, LLVMValueRef scale, LLVMValueRef q,
			LLVMValueRef s)
{
	LLVMValueRef mx = simt_var(S_, S_->t_f64, simt_f64(S_, 0.0));
	SimtFor f;
	LLVMValueRef i = simt_for(S_, &f, simt_tid(S_, 0), i32(c, r->k), i32(c, ROW_BLOCK));
	LLVMValueRef y = scale ? normed(c, r, scale, i) : row_x(c, r, i, false);
	simt_set(S_, mx, simt_fmax(S_, simt_get(S_, mx), LLVMBuildFPExt(B, simt_fabs(S_, y), S_->t_f64, "")));
	simt_for_end(S_, &f);
	LLVMValueRef amax = simt_fmax(S_, simt_block_max(S_, simt_get(S_, mx), ROW_BLOCK), simt_f64(S_, 1e-5));
	LLVMValueRef sc = LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, simt_f64(S_, 127.0), amax, ""), S_->t_f32, "");
	SimtIf t0;
	simt_if(S_, &t0, LLVMBuildICmp(B, LLVMIntEQ, simt_tid(S_, 0), i32(c, 0), ""));
	simt_store(S_, sc, s, r->row, 4);
	simt_endif(S_, &t0);
	SimtFor g;
	i = simt_for(S_, &g, simt_tid(S_, 0), i32(c, r->k), i32(c, ROW_BLOCK));
	y = scale ? normed(c, r, scale, i) : row_x(c, r, i, false);
	simt_store(S_, to_i8(c, LLVMBuildFMul(B, y, sc, "")), q, at(c, r->row, r->k, i), 1);
	simt_for_end(S_, &g);
}

/* Q8_K per 256 elements: one warp per block of 256 at a time, 8 elements a lane; the
 * element of the largest |y| (the first on ties) sets iscale = -127 / y; q = min(127,
 * rint(iscale * y)) (no lower clamp: |iscale * y| <= 127), d = 1 / iscale; an all-zero
 * block gives d = 0, q = 0. */
static void quant_b256(CuCtx *c, const RowIn *r, LLVMValueRef scale, LLVMValueRef q,
		       LLVMValueRef d)
{
	int64_t nb = r->k / 256;
	LLVMValueRef lane = simt_lane(S_);
	SimtFor f;
	LLVMValueRef blk = simt_for(S_, &f, simt_warp(S_), i32(c, nb), i32(c, ROW_BLOCK / 32));
	LLVMValueRef base = mul(c, blk, i32(c, 256));
	LLVMValueRef best = simt_var(S_, S_->t_f32, simt_f32(S_, 0.0f));
	LLVMValueRef bidx = simt_var(S_, S_->t_i32, i32(c, 0x7fffffff));
	LLVMValueRef bval = simt_var(S_, S_->t_f32, simt_f32(S_, 0.0f));
	SimtFor g;
	LLVMValueRef j = simt_for(S_, &g, i32(c, 0), i32(c, 8), i32(c, 1));
	LLVMValueRef i = add(c, add(c, base, mul(c, lane, i32(c, 8))), j);
	LLVMValueRef y = scale ? normed(c, r, scale, i) : row_x(c, r, i, false);
	LLVMValueRef a = simt_fabs(S_, y);
	LLVMValueRef gt = LLVMBuildFCmp(B, LLVMRealOGT, a, simt_get(S_, best), "");
	simt_set(S_, best, LLVMBuildSelect(B, gt, a, simt_get(S_, best), ""));
	simt_set(S_, bidx, LLVMBuildSelect(B, gt, i, simt_get(S_, bidx), ""));
	simt_set(S_, bval, LLVMBuildSelect(B, gt, y, simt_get(S_, bval), ""));
	simt_for_end(S_, &g);
	/* the warp's winner: larger |y|, then the lower index */
	for (int o = 16; o >= 1; o /= 2) {
		LLVMValueRef ob = simt_shfl(S_, SIMT_SHFL_BFLY, simt_get(S_, best), i32(c, o));
		LLVMValueRef oi = simt_shfl(S_, SIMT_SHFL_BFLY, simt_get(S_, bidx), i32(c, o));
		LLVMValueRef ov = simt_shfl(S_, SIMT_SHFL_BFLY, simt_get(S_, bval), i32(c, o));
		LLVMValueRef take = LLVMBuildOr(
			B, LLVMBuildFCmp(B, LLVMRealOGT, ob, simt_get(S_, best), ""),
			LLVMBuildAnd(B, LLVMBuildFCmp(B, LLVMRealOEQ, ob, simt_get(S_, best), ""),
				     LLVMBuildICmp(B, LLVMIntSLT, oi, simt_get(S_, bidx), ""), ""), "");
		simt_set(S_, best, LLVMBuildSelect(B, take, ob, simt_get(S_, best), ""));
		simt_set(S_, bidx, LLVMBuildSelect(B, take, oi, simt_get(S_, bidx), ""));
		simt_set(S_, bval, LLVMBuildSelect(B, take, ov, simt_get(S_, bval), ""));
	}
	LLVMValueRef zero = LLVMBuildFCmp(B, LLVMRealOEQ, simt_get(S_, best), simt_f32(S_, 0.0f), "");
	LLVMValueRef iscale = LLVMBuildFDiv(B, simt_f32(S_, -127.0f), simt_get(S_, bval), "");
	SimtIf l0;
	simt_if(S_, &l0, LLVMBuildICmp(B, LLVMIntEQ, lane, i32(c, 0), ""));
	LLVMValueRef dv = LLVMBuildFDiv(B, simt_f32(S_, 1.0f), iscale, "");
	simt_store(S_, LLVMBuildSelect(B, zero, simt_f32(S_, 0.0f), dv, ""), d,
		   at(c, r->row, nb, blk), 4);
	simt_endif(S_, &l0);
	SimtFor h;
	j = simt_for(S_, &h, i32(c, 0), i32(c, 8), i32(c, 1));
	i = add(c, add(c, base, mul(c, lane, i32(c, 8))), j);
	y = scale ? normed(c, r, scale, i) : row_x(c, r, i, false);
	LLVMValueRef v = simt_fmin(S_, simt_rint(S_, LLVMBuildFMul(B, iscale, y, "")), simt_f32(S_, 127.0f));
	LLVMValueRef qv = LLVMBuildSelect(B, zero, LLVMConstInt(S_->t_i8, 0, 0),
					  LLVMBuildFPToSI(B, v, S_->t_i8, ""), "");
	simt_store(S_, qv, q, at(c, r->row, r->k, i), 1);
	simt_for_end(S_, &h);
	simt_for_end(S_, &f);
}

static bool mode_block(const IrNode *nd)
{
	return strcmp(ir_attr_str(nd, "mode", "token"), "block256") == 0;
}

/* The one row kernel behind rmsnorm, quant_act, rmsnorm_quant and add_rmsnorm_quant:
 * add (a + b into the sum) -> norm (with or without weight) -> quantize or store. */
typedef struct {
	bool add, norm, weight, quant, block;
	int64_t k;
	float eps;
} RowKind;

static void row_name(const RowKind *k, char *name, size_t n)
{
	char eps[32] = "";
	if (k->norm) {
		uint32_t u;
		memcpy(&u, &k->eps, sizeof u);
		snprintf(eps, sizeof eps, "_e%08" PRIx32, u);
	}
	snprintf(name, n, "%s%s%s_k%" PRId64 "%s%s", k->add ? "add_" : "",
		 k->norm ? (k->quant ? "rmsnorm_" : "rmsnorm") : "",
		 k->quant ? (k->block ? "quant_b256" : "quant_tok") : "", k->k,
		 k->norm && !k->weight ? "_nw" : "", eps);
}

/* params: x, [b, sum], [w], then y (norm alone) or q, s; n last */
static void row_kernel(CuCtx *c, const RowKind *k, const char *name)
{
	SimtParam p[8];
	int np = 0;
	p[np++] = SIMT_P_PTR;
	if (k->add) {
		p[np++] = SIMT_P_PTR;
		p[np++] = SIMT_P_PTR;
	}
	if (k->weight)
		p[np++] = SIMT_P_PTR;
	p[np++] = SIMT_P_PTR;
	if (k->quant)
		p[np++] = SIMT_P_PTR;
	p[np++] = SIMT_P_I32;
	RowIn r = {.k = k->k};
	r.row = row_begin(c, name, p, np, np - 1);
	int a = 0;
	r.x = simt_param(S_, a++);
	if (k->add) {
		r.b = simt_param(S_, a++);
		r.sum_out = simt_param(S_, a++);
	}
	if (k->weight)
		r.w = simt_param(S_, a++);
	LLVMValueRef scale = NULL;
	if (k->norm) {
		scale = norm_scale(c, &r, k->eps);
	} else if (k->add) {
		/* no norm: write the sum first (each thread reads back its own elements) */
		SimtFor f;
		LLVMValueRef i = simt_for(S_, &f, simt_tid(S_, 0), i32(c, k->k), i32(c, ROW_BLOCK));
		row_x(c, &r, i, true);
		simt_for_end(S_, &f);
	}
	if (!k->quant) {
		LLVMValueRef y = simt_param(S_, a);
		SimtFor f;
		LLVMValueRef i = simt_for(S_, &f, simt_tid(S_, 0), i32(c, k->k), i32(c, ROW_BLOCK));
		simt_store(S_, normed(c, &r, scale, i), y, at(c, r.row, k->k, i), 4);
		simt_for_end(S_, &f);
	} else if (k->block) {
		quant_b256(c, &r, scale, simt_param(S_, a), simt_param(S_, a + 1));
	} else {
		quant_token(c, &r, scale, simt_param(S_, a), simt_param(S_, a + 1));
	}
	simt_end(S_);
}

static int row_op(CuCtx *c, const IrNode *nd, RowKind k, CuLaunch *L, int *nl, int max, BnErr *e)
{
	if (k.quant && k.block && k.k % 256)
		return unsupported(nd, e, "block256 quantization needs a row that is a multiple of 256");
	if (k.k <= 0 || k.k > (1 << 24))
		return unsupported(nd, e, "row width out of range");
	char name[128];
	row_name(&k, name, sizeof name);
	if (!simt_has(S_, name))
		row_kernel(c, &k, name);
	CuLaunch *l = cu_launch(L, nl, max, name, ROW_BLOCK, "n");
	if (!l)
		return full(nd, e);
	snprintf(l->smem, sizeof l->smem, "%d", ROW_RED);
	/* the input(s), the sum, the weight, the outputs */
	int w_in = k.add ? 2 : 1;
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[0]));
	if (k.add) {
		cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[1]));
		cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
	}
	if (k.weight)
		cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[w_in]));
	int o = k.add ? 1 : 0;
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[o]));
	if (k.quant)
		cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[o + 1]));
	cu_arg(l, SIMT_P_I32, "n");
	return 0;
}

static float eps_of(const IrNode *nd)
{
	return (float)ir_attr_float(nd, "eps", 1e-5);
}

int cu_op_rmsnorm(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	RowKind k = {.norm = true, .weight = nd->n_in > 1, .k = ir_value_row(V(c, nd->in[0])),
		     .eps = eps_of(nd)};
	return row_op(c, nd, k, L, nl, max, e);
}

int cu_op_quant_act(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	RowKind k = {.quant = true, .block = mode_block(nd), .k = ir_value_row(V(c, nd->in[0]))};
	return row_op(c, nd, k, L, nl, max, e);
}

int cu_op_rmsnorm_quant(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	RowKind k = {.norm = true, .weight = nd->n_in > 1, .quant = true, .block = mode_block(nd),
		     .k = ir_value_row(V(c, nd->in[0])), .eps = eps_of(nd)};
	return row_op(c, nd, k, L, nl, max, e);
}

int cu_op_add_rmsnorm_quant(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	RowKind k = {.add = true, .norm = true, .weight = nd->n_in > 2, .quant = true,
		     .block = mode_block(nd), .k = ir_value_row(V(c, nd->in[0])), .eps = eps_of(nd)};
	return row_op(c, nd, k, L, nl, max, e);
}

/* ---- element kernels: add, mul, the GLUs ------------------------------------------------ */

/* One thread per element of n rows of `row` floats: grid (n * row + 255) / 256. */
static LLVMValueRef elt_begin(CuCtx *c, const char *name, const SimtParam *p, int np,
			      int64_t row, LLVMValueRef *t_out)
{
	simt_begin(S_, name, p, np);
	LLVMValueRef n = simt_param(S_, np - 1);
	LLVMValueRef idx = LLVMBuildAdd(B, LLVMBuildMul(B, LLVMBuildZExt(B, simt_ctaid(S_, 0), S_->t_i64, ""),
							simt_i64(S_, 256), ""),
					LLVMBuildZExt(B, simt_tid(S_, 0), S_->t_i64, ""), "");
	LLVMValueRef total = LLVMBuildMul(B, LLVMBuildSExt(B, n, S_->t_i64, ""), simt_i64(S_, row), "");
	simt_return_if(S_, LLVMBuildICmp(B, LLVMIntSGE, idx, total, ""));
	if (t_out)
		*t_out = idx;
	return idx;
}

static void elt_grid(char *g, size_t n, int64_t row)
{
	snprintf(g, n, "(unsigned)(((int64_t)n * %" PRId64 " + 255) / 256)", row);
}

int cu_op_binary(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	bool is_mul = nd->op == IR_OP_MUL;
	const IrValue *a = V(c, nd->in[0]), *b = V(c, nd->in[1]);
	int64_t row = ir_value_row(a);
	int64_t bn = ir_value_has_t(b) ? -1 : ir_value_nelems(b, 1);
	/* b: full (the same shape), one row broadcast over tokens, or one element */
	const char *bk = bn == 1 ? "s" : bn == row ? "r" : "f";
	if (bn != -1 && bn != 1 && bn != row)
		return unsupported(nd, e, "b must have a's shape, one row of a, or one element");
	char name[128];
	snprintf(name, sizeof name, "%s_%s_n%" PRId64, is_mul ? "mul" : "add", bk, row);
	if (!simt_has(S_, name)) {
		SimtParam p[4] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32};
		LLVMValueRef idx = elt_begin(c, name, p, 4, row, NULL);
		LLVMValueRef bi = bn == 1 ? simt_i64(S_, 0)
				: bn == row ? LLVMBuildSRem(B, idx, simt_i64(S_, row), "")
					    : idx;
		LLVMValueRef x = simt_load(S_, S_->t_f32, simt_param(S_, 0), idx, 4);
		LLVMValueRef y = simt_load(S_, S_->t_f32, simt_param(S_, 1), bi, 4);
		LLVMValueRef r = is_mul ? LLVMBuildFMul(B, x, y, "") : LLVMBuildFAdd(B, x, y, "");
		simt_store(S_, r, simt_param(S_, 2), idx, 4);
		simt_end(S_);
	}
	char g[96];
	elt_grid(g, sizeof g, row);
	CuLaunch *l = cu_launch(L, nl, max, name, 256, g);
	if (!l)
		return full(nd, e);
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[0]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[1]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
	cu_arg(l, SIMT_P_I32, "n");
	return 0;
}

/* relu(g)^2 * u in f32 (f16 would overflow), or silu(g) * u = g / (1 + exp(-g)) * u */
int cu_op_glu(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	bool silu = nd->op == IR_OP_SILU_GLU;
	int64_t row = ir_value_row(V(c, nd->in[0]));
	char name[128];
	snprintf(name, sizeof name, "%s_n%" PRId64, silu ? "silu_glu" : "relu2_glu", row);
	if (!simt_has(S_, name)) {
		SimtParam p[4] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32};
		LLVMValueRef idx = elt_begin(c, name, p, 4, row, NULL);
		LLVMValueRef g = simt_load(S_, S_->t_f32, simt_param(S_, 0), idx, 4);
		LLVMValueRef u = simt_load(S_, S_->t_f32, simt_param(S_, 1), idx, 4);
		LLVMValueRef a;
		if (silu) {
			LLVMValueRef ex = simt_expf(S_, LLVMBuildFNeg(B, g, ""));
			a = LLVMBuildFDiv(B, g, LLVMBuildFAdd(B, simt_f32(S_, 1.0f), ex, ""), "");
		} else {
			LLVMValueRef pos = LLVMBuildFCmp(B, LLVMRealOGT, g, simt_f32(S_, 0.0f), "");
			a = LLVMBuildSelect(B, pos, g, simt_f32(S_, 0.0f), "");
			a = LLVMBuildFMul(B, a, a, "");
		}
		simt_store(S_, LLVMBuildFMul(B, a, u, ""), simt_param(S_, 2), idx, 4);
		simt_end(S_);
	}
	char g[96];
	elt_grid(g, sizeof g, row);
	CuLaunch *l = cu_launch(L, nl, max, name, 256, g);
	if (!l)
		return full(nd, e);
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[0]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[1]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
	cu_arg(l, SIMT_P_I32, "n");
	return 0;
}

/* ---- RoPE ---------------------------------------------------------------------------- */

/* Rows of n_head heads of hd; pairs (i, i + n_rot/2) (neox) or (2i, 2i + 1) rotated by the
 * table's (cos, sin) at the row's position; the rest of each head copied. One block per
 * row, a thread per (head, pair). */
int cu_op_rope(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	int64_t row = ir_value_row(V(c, nd->in[0]));
	int64_t hd = ir_attr_int(nd, "head_dim", row);
	int64_t n_rot = ir_attr_int(nd, "n_rot", hd);
	bool neox = strcmp(ir_attr_str(nd, "mode", "neox"), "neox") == 0;
	if (hd <= 0 || row % hd || n_rot <= 0 || n_rot > hd || n_rot % 2)
		return unsupported(nd, e, "head_dim and n_rot do not fit the row");
	int64_t half = n_rot / 2, nh = row / hd;
	char name[128];
	snprintf(name, sizeof name, "rope_%s_hd%" PRId64 "_nrot%" PRId64 "_nh%" PRId64,
		 neox ? "neox" : "norm", hd, n_rot, nh);
	if (!simt_has(S_, name)) {
		/* x, table, y, pos, n */
		SimtParam p[5] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32};
		LLVMValueRef t = row_begin(c, name, p, 5, 4);
		LLVMValueRef x = simt_param(S_, 0), tab = simt_param(S_, 1), y = simt_param(S_, 2);
		LLVMValueRef pos = simt_load(S_, S_->t_i32, simt_param(S_, 3), t, 4);
		/* copy the whole row first (the unrotated tail), then the pairs; a barrier between */
		SimtFor f;
		LLVMValueRef i = simt_for(S_, &f, simt_tid(S_, 0), i32(c, row), i32(c, ROW_BLOCK));
		simt_store(S_, simt_load(S_, S_->t_f32, x, at(c, t, row, i), 4), y, at(c, t, row, i), 4);
		simt_for_end(S_, &f);
		simt_sync(S_);
		SimtFor g;
		LLVMValueRef j = simt_for(S_, &g, simt_tid(S_, 0), i32(c, nh * half), i32(c, ROW_BLOCK));
		LLVMValueRef h = LLVMBuildSDiv(B, j, i32(c, half), "");
		LLVMValueRef pi = LLVMBuildSRem(B, j, i32(c, half), "");
		LLVMValueRef ce = at(c, pos, half, pi); /* (pos * half + i) pairs */
		ce = LLVMBuildMul(B, ce, simt_i64(S_, 2), "");
		LLVMValueRef cv = simt_load(S_, S_->t_f32, tab, ce, 4);
		LLVMValueRef sv = simt_load(S_, S_->t_f32, tab, LLVMBuildAdd(B, ce, simt_i64(S_, 1), ""), 4);
		LLVMValueRef hb = mul(c, h, i32(c, hd));
		LLVMValueRef ia = add(c, hb, neox ? pi : mul(c, pi, i32(c, 2)));
		LLVMValueRef ib = add(c, hb, neox ? add(c, pi, i32(c, half)) : add(c, mul(c, pi, i32(c, 2)), i32(c, 1)));
		LLVMValueRef x0 = simt_load(S_, S_->t_f32, x, at(c, t, row, ia), 4);
		LLVMValueRef x1 = simt_load(S_, S_->t_f32, x, at(c, t, row, ib), 4);
		LLVMValueRef y0 = LLVMBuildFSub(B, LLVMBuildFMul(B, x0, cv, ""), LLVMBuildFMul(B, x1, sv, ""), "");
		LLVMValueRef y1 = LLVMBuildFAdd(B, LLVMBuildFMul(B, x0, sv, ""), LLVMBuildFMul(B, x1, cv, ""), "");
		simt_store(S_, y0, y, at(c, t, row, ia), 4);
		simt_store(S_, y1, y, at(c, t, row, ib), 4);
		simt_for_end(S_, &g);
		simt_end(S_);
	}
	CuLaunch *l = cu_launch(L, nl, max, name, ROW_BLOCK, "n");
	if (!l)
		return full(nd, e);
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[0]));
	cu_arg(l, SIMT_P_PTR, "ROPE + (RtDevPtr)n_ctx * %" PRIu64, c->rope_table(c, nd));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
	cu_arg(l, SIMT_P_PTR, "POS");
	cu_arg(l, SIMT_P_I32, "n");
	return 0;
}

/* ---- the residual check ------------------------------------------------------------------ */

int cu_op_check(CuCtx *c, IrId v, int check, CuLaunch *L, int *nl, int max, BnErr *e)
{
	int64_t row = ir_value_row(V(c, v));
	char name[128];
	snprintf(name, sizeof name, "check_finite_n%" PRId64, row);
	if (!simt_has(S_, name)) {
		/* x, flag, check, n */
		SimtParam p[4] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32, SIMT_P_I32};
		LLVMValueRef t = row_begin(c, name, p, 4, 3);
		LLVMValueRef bad = simt_var(S_, S_->t_i32, i32(c, 0));
		SimtFor f;
		LLVMValueRef i = simt_for(S_, &f, simt_tid(S_, 0), i32(c, row), i32(c, ROW_BLOCK));
		LLVMValueRef x = simt_load(S_, S_->t_f32, simt_param(S_, 0), at(c, t, row, i), 4);
		LLVMValueRef nf = LLVMBuildZExt(B, LLVMBuildNot(B, simt_isfinite(S_, x), ""), S_->t_i32, "");
		simt_set(S_, bad, LLVMBuildOr(B, simt_get(S_, bad), nf, ""));
		simt_for_end(S_, &f);
		SimtIf b;
		simt_if(S_, &b, LLVMBuildICmp(B, LLVMIntNE, simt_get(S_, bad), i32(c, 0), ""));
		LLVMValueRef key = LLVMBuildOr(B, LLVMBuildShl(B, simt_param(S_, 2), i32(c, 16), ""), t, "");
		simt_atomic_min(S_, simt_param(S_, 1), key);
		simt_endif(S_, &b);
		simt_end(S_);
	}
	CuLaunch *l = cu_launch(L, nl, max, name, ROW_BLOCK, "n");
	if (!l)
		return bn_err(e, BN_EINVAL, "codegen (cuda): too many launches");
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, v));
	cu_arg(l, SIMT_P_PTR, "FLAG");
	cu_arg(l, SIMT_P_I32, "%d", check);
	cu_arg(l, SIMT_P_I32, "n");
	return 0;
}
