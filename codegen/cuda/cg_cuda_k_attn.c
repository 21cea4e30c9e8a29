/* cg_cuda_k_attn.c - attention for the CUDA backend: the KV store (each row's k and v as f16
 * into the layer's cache at (SEQ[t], POS[t])) and the attention of every (row, q head) over
 * keys 0..POS[t] of the row's own sequence SEQ[t] (the host always uploads both arrays: SEQ
 * is never 0), with the interpreter's numerics (ir/ir_interp.c, op_attention): q rounded to
 * f16; q.K over f16 values summed in double (products of f16 values are exact in double, so
 * only the order of the adds differs from the interpreter); score (float)dot * scale;
 * softmax with the row max subtracted, exp by simt_expf, the sum in double, times
 * (float)(1 / sum); the weights rounded to f16 before .V in the step template only; .V
 * summed in double, stored as float. Positions are read on the device, so one launch serves
 * every position (a captured graph replays it).
 *
 * Step template (c->tmpl == 1, one row): split over the context (flash decoding), five
 * launches: store; scores (a block per (chunk of CH = head_dim keys, head): the scores into
 * the scratch and the chunk's max); softmax (a block per head: the max over the chunks,
 * exp, the double sum, the weights in place); weights.V (a block per (chunk, head): its
 * keys' partial sums, double); out (a block per head: the chunks' partials in chunk order).
 * The grids cover n_ctx; blocks past POS return at once, so the work follows POS.
 *
 * Batch templates (c->tmpl > 1): store; then one block per (row, head) that keeps a tile of
 * up to ATT_TILE scores in shared memory (17.7 KiB for head_dim <= 128: under the 48 KiB a
 * launch gets without opting in). Rows with more keys than a tile take three passes
 * over K (max, sum, weights.V), recomputing the scores of each tile: bounded memory at any
 * context length, the same numbers either way.
 *
 * Host name used besides cg_cuda.h's (the step template only):
 *   SCORES  RtDevPtr, 8-aligned: device scratch of cu_attention_scores_bytes(g, n_ctx)
 *           bytes = 16 * H * (n_ctx + D) for the largest n_head H and head_dim D of the
 *           graph's attention nodes; the attention launches of one layer use it in turn.
 * Layout of SCORES for a node of NH heads (NCH = (n_ctx + CH - 1) / CH chunks): partial .V
 * sums [NH][NCH][head_dim] double at 0, then scores/weights [NH][n_ctx] float, then the
 * chunk maxima [NH][NCH] float. */
#include "cg_cuda.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum {
	ATT_DPL = 8,        /* q.K: dimensions per lane (one 16-byte load of f16) */
	ATT_RED = 256,      /* shared bytes reserved for the block reductions (32 doubles) */
	ATT_TILE = 4096,    /* batch: scores a block keeps in shared memory */
	ATT_B_BLOCK = 128,  /* batch kernel threads (head_dim when larger) */
	ATT_D_BLOCK = 256,  /* step: softmax and .V threads (head_dim when larger) */
	ATT_S_BLOCK = 128,  /* step: scores threads */
	ATT_ST_BLOCK = 128, /* the KV store */
};

typedef struct {
	int64_t nh, nkv, hd, group, kw, qw, off;
	float scale;
	bool step;       /* round the weights to f16 */
	unsigned kalign; /* bytes a lane's 8 keys may assume: 16 when the layer's offset allows */
	char tag[64]; /* the shape in kernel names: h20_kv5_hd128_s3e000000 */
} Att;

#define B (c->S->b)
#define S_ (c->S)

static int unsupported(const IrNode *nd, BnErr *e, const char *why)
{
	return bn_err(e, BN_EUNSUPPORTED, "codegen (cuda): node '%s' (%s): %s", nd->name,
		      ir_op_name(nd->op), why);
}

static int full(const IrNode *nd, BnErr *e)
{
	return bn_err(e, BN_EINVAL, "codegen (cuda): node '%s': too many launches", nd->name);
}

static LLVMValueRef i32(CuCtx *c, int64_t v) { return simt_i32(S_, v); }
static LLVMValueRef i64(CuCtx *c, int64_t v) { return simt_i64(S_, v); }
static LLVMValueRef add(CuCtx *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }
static LLVMValueRef sub(CuCtx *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSub(B, a, b, ""); }
static LLVMValueRef mul(CuCtx *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(B, a, b, ""); }
static LLVMValueRef sext(CuCtx *c, LLVMValueRef v) { return LLVMBuildSExt(B, v, S_->t_i64, ""); }
static LLVMValueRef lt(CuCtx *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildICmp(B, LLVMIntSLT, a, b, ""); }
static LLVMValueRef eq(CuCtx *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildICmp(B, LLVMIntEQ, a, b, ""); }

static LLVMValueRef imin(CuCtx *c, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildSelect(B, lt(c, a, b), a, b, "");
}

static LLVMValueRef to_f64(CuCtx *c, LLVMValueRef f) { return LLVMBuildFPExt(B, f, S_->t_f64, ""); }

/* byte pointer p + off (i64) */
static LLVMValueRef byte_at(CuCtx *c, LLVMValueRef p, LLVMValueRef off)
{
	return simt_gep(S_, S_->t_i8, p, off);
}

/* The layer's K (v false) or V in the cache: KV + 2 * kvs * (off [+ kw]) bytes. */
static LLVMValueRef cache(CuCtx *c, const Att *a, LLVMValueRef kv, LLVMValueRef kvs,
			  LLVMValueRef koff, bool v)
{
	LLVMValueRef el = v ? add(c, koff, i64(c, a->kw)) : koff;
	return byte_at(c, kv, mul(c, mul(c, kvs, el), i64(c, 2)));
}

/* The f16 element index of (row, dimension i of kv head g) where row = seq * n_ctx + j. */
static LLVMValueRef kv_index(CuCtx *c, const Att *a, LLVMValueRef rowbase, LLVMValueRef j,
			     LLVMValueRef g, LLVMValueRef i)
{
	LLVMValueRef r = add(c, rowbase, sext(c, j));
	LLVMValueRef col = add(c, mul(c, sext(c, g), i64(c, a->hd)), sext(c, i));
	return add(c, mul(c, r, i64(c, a->kw)), col);
}

/* ---- the KV store ------------------------------------------------------------------ */

/* params: k, v, KV, kvs, koff, n_ctx, POS, SEQ, n; a block per row */
static void store_kernel(CuCtx *c, const Att *a, const char *name)
{
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I64, SIMT_P_I64,
				      SIMT_P_I64, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32};
	simt_begin(S_, name, p, 9);
	LLVMValueRef t = simt_ctaid(S_, 0);
	simt_return_if(S_, LLVMBuildICmp(B, LLVMIntSGE, t, simt_param(S_, 8), ""));
	LLVMValueRef kv = simt_param(S_, 2), kvs = simt_param(S_, 3), koff = simt_param(S_, 4);
	LLVMValueRef n_ctx = simt_param(S_, 5);
	LLVMValueRef pos = simt_load(S_, S_->t_i32, simt_param(S_, 6), t, 4);
	LLVMValueRef seq = simt_load(S_, S_->t_i32, simt_param(S_, 7), t, 4);
	LLVMValueRef at = mul(c, add(c, mul(c, sext(c, seq), n_ctx), sext(c, pos)), i64(c, a->kw));
	LLVMValueRef K = cache(c, a, kv, kvs, koff, false), V = cache(c, a, kv, kvs, koff, true);
	SimtFor f;
	LLVMValueRef i = simt_for(S_, &f, simt_tid(S_, 0), i32(c, a->kw), i32(c, ATT_ST_BLOCK));
	LLVMValueRef src = add(c, mul(c, sext(c, t), i64(c, a->kw)), sext(c, i));
	LLVMValueRef dst = add(c, at, sext(c, i));
	for (int w = 0; w < 2; w++) {
		LLVMValueRef x = simt_load(S_, S_->t_f32, simt_param(S_, w), src, 4);
		simt_store(S_, simt_f32_to_f16(S_, x), w ? V : K, dst, 2);
	}
	simt_for_end(S_, &f);
	simt_end(S_);
}

/* ---- q.K ----------------------------------------------------------------------------- */

/* Lanes per key: head_dim / 8, each lane 8 dimensions; a warp takes 32 / that keys at once. */
static int64_t att_lpk(const Att *a) { return a->hd / ATT_DPL; }

/* This lane's 8 dimensions of q (row t, head h), rounded to f16, as doubles. */
static void q_load(CuCtx *c, const Att *a, LLVMValueRef q, LLVMValueRef t, LLVMValueRef h,
		   LLVMValueRef gl, LLVMValueRef out[ATT_DPL])
{
	LLVMValueRef base = add(c, add(c, mul(c, sext(c, t), i64(c, a->qw)), mul(c, sext(c, h), i64(c, a->hd))),
				sext(c, mul(c, gl, i32(c, ATT_DPL))));
	for (int d = 0; d < ATT_DPL; d++) {
		LLVMValueRef x = simt_load(S_, S_->t_f32, q, add(c, base, i64(c, d)), 4);
		out[d] = to_f64(c, simt_round_f16(S_, x));
	}
}

/* The score of key j: this lane's 8 products summed in double, then the lanes of the key
 * by a butterfly (every lane of the group gets the sum); (float)dot * scale. */
static LLVMValueRef qk_score(CuCtx *c, const Att *a, LLVMValueRef K, LLVMValueRef rowbase,
			     LLVMValueRef j, LLVMValueRef g, LLVMValueRef gl, LLVMValueRef qd[ATT_DPL])
{
	LLVMTypeRef v8 = LLVMVectorType(S_->t_i16, ATT_DPL);
	LLVMValueRef idx = kv_index(c, a, rowbase, j, g, mul(c, gl, i32(c, ATT_DPL)));
	LLVMValueRef kv = simt_load(S_, v8, simt_gep(S_, S_->t_i16, K, idx), NULL, a->kalign);
	LLVMValueRef acc = NULL;
	for (int d = 0; d < ATT_DPL; d++) {
		LLVMValueRef h = LLVMBuildExtractElement(B, kv, i32(c, d), "");
		LLVMValueRef kd = to_f64(c, simt_f16_to_f32(S_, h));
		LLVMValueRef pr = LLVMBuildFMul(B, kd, qd[d], "");
		acc = acc ? LLVMBuildFAdd(B, acc, pr, "") : pr;
	}
	for (int64_t o = att_lpk(a) / 2; o >= 1; o /= 2)
		acc = LLVMBuildFAdd(B, acc, simt_shfl(S_, SIMT_SHFL_BFLY, acc, i32(c, o)), "");
	LLVMValueRef s = LLVMBuildFPTrunc(B, acc, S_->t_f32, "");
	return LLVMBuildFMul(B, s, simt_f32(S_, a->scale), "");
}

/* The scores of keys lo..hi-1 (a block of nthreads, every thread calls this with the same
 * lo, hi): key j's score goes to out[j - obase] (floats), and mx (a float var) takes the
 * max of the scores this thread saw. Keys past hi in the last round compute a valid key's
 * score and drop it, so that every lane takes part in the shuffles. */
static void scores(CuCtx *c, const Att *a, int nthreads, LLVMValueRef K, LLVMValueRef rowbase,
		   LLVMValueRef g, LLVMValueRef qd[ATT_DPL], LLVMValueRef lo, LLVMValueRef hi,
		   LLVMValueRef out, LLVMValueRef obase, LLVMValueRef mx)
{
	int64_t lpk = att_lpk(a);
	LLVMValueRef tid = simt_tid(S_, 0);
	LLVMValueRef slot = LLVMBuildSDiv(B, tid, i32(c, lpk), "");
	LLVMValueRef gl = LLVMBuildSRem(B, tid, i32(c, lpk), "");
	SimtFor f;
	LLVMValueRef b0 = simt_for(S_, &f, lo, hi, i32(c, nthreads / lpk));
	LLVMValueRef j = add(c, b0, slot);
	LLVMValueRef ok = lt(c, j, hi);
	LLVMValueRef s = qk_score(c, a, K, rowbase, LLVMBuildSelect(B, ok, j, lo, ""), g, gl, qd);
	simt_set(S_, mx, LLVMBuildSelect(B, ok, simt_fmax(S_, simt_get(S_, mx), s), simt_get(S_, mx), ""));
	SimtIf w;
	simt_if(S_, &w, LLVMBuildAnd(B, ok, eq(c, gl, i32(c, 0)), ""));
	simt_store(S_, s, out, sub(c, j, obase), 4);
	simt_endif(S_, &w);
	simt_for_end(S_, &f);
}

/* weight = e * inv, rounded to f16 in the step template */
static LLVMValueRef weight(CuCtx *c, const Att *a, LLVMValueRef e, LLVMValueRef inv)
{
	LLVMValueRef w = LLVMBuildFMul(B, e, inv, "");
	return a->step ? simt_round_f16(S_, w) : w;
}

/* ---- batch: a block per (row, head) ------------------------------------------------- */

static int b_block(const Att *a) { return a->hd > ATT_B_BLOCK ? (int)a->hd : ATT_B_BLOCK; }

/* exp(s - mx) of the tile's scores in place (each thread its own j), summed into sum */
static void tile_exp(CuCtx *c, int nthreads, LLVMValueRef sc, LLVMValueRef len,
		     LLVMValueRef mx, LLVMValueRef sum)
{
	SimtFor f;
	LLVMValueRef j = simt_for(S_, &f, simt_tid(S_, 0), len, i32(c, nthreads));
	LLVMValueRef e = simt_expf(S_, LLVMBuildFSub(B, simt_load(S_, S_->t_f32, sc, j, 4), mx, ""));
	simt_store(S_, e, sc, j, 4);
	if (sum)
		simt_set(S_, sum, LLVMBuildFAdd(B, simt_get(S_, sum), to_f64(c, e), ""));
	simt_for_end(S_, &f);
}

/* params: q, y, KV, kvs, koff, n_ctx, POS, SEQ, n, tile (even); grid (n, n_head);
 * shared ATT_RED + 4 * tile (+ slices * head_dim * 8 when the block has more threads than
 * head_dim: the slices' partial .V sums) */
static void batch_kernel(CuCtx *c, const Att *a, const char *name)
{
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I64, SIMT_P_I64,
				      SIMT_P_I64, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32, SIMT_P_I32};
	int nt = b_block(a);
	int64_t ks = nt / a->hd; /* key slices of .V */
	simt_begin(S_, name, p, 10);
	LLVMValueRef t = simt_ctaid(S_, 0), h = simt_ctaid(S_, 1);
	simt_return_if(S_, LLVMBuildICmp(B, LLVMIntSGE, t, simt_param(S_, 8), ""));
	LLVMValueRef kv = simt_param(S_, 2), kvs = simt_param(S_, 3), koff = simt_param(S_, 4);
	LLVMValueRef n_ctx = simt_param(S_, 5), tile = simt_param(S_, 9);
	LLVMValueRef pos = simt_load(S_, S_->t_i32, simt_param(S_, 6), t, 4);
	LLVMValueRef seq = simt_load(S_, S_->t_i32, simt_param(S_, 7), t, 4);
	LLVMValueRef n_keys = add(c, pos, i32(c, 1));
	LLVMValueRef rowbase = mul(c, sext(c, seq), n_ctx);
	LLVMValueRef g = LLVMBuildSDiv(B, h, i32(c, a->group), "");
	LLVMValueRef K = cache(c, a, kv, kvs, koff, false), V = cache(c, a, kv, kvs, koff, true);
	LLVMValueRef sm = simt_smem(S_);
	LLVMValueRef sc = byte_at(c, sm, i64(c, ATT_RED));
	LLVMValueRef tid = simt_tid(S_, 0);
	LLVMValueRef qd[ATT_DPL];
	q_load(c, a, simt_param(S_, 0), t, h, LLVMBuildSRem(B, tid, i32(c, att_lpk(a)), ""), qd);
	LLVMValueRef multi = LLVMBuildICmp(B, LLVMIntSGT, n_keys, tile, "");
	LLVMValueRef zero = i32(c, 0);

	/* pass 1: the scores (kept when one tile holds them all) and their max */
	LLVMValueRef mx = simt_var(S_, S_->t_f32, simt_f32(S_, -__builtin_inff()));
	SimtFor f1;
	LLVMValueRef lo = simt_for(S_, &f1, zero, n_keys, tile);
	simt_sync(S_);
	scores(c, a, nt, K, rowbase, g, qd, lo, imin(c, add(c, lo, tile), n_keys), sc, lo, mx);
	simt_for_end(S_, &f1);
	LLVMValueRef mxb = simt_block_max(S_, simt_get(S_, mx), nt);

	/* pass 2: exp and the double sum */
	LLVMValueRef sum = simt_var(S_, S_->t_f64, simt_f64(S_, 0.0));
	LLVMValueRef dummy = simt_var(S_, S_->t_f32, simt_f32(S_, 0.0f));
	SimtFor f2;
	lo = simt_for(S_, &f2, zero, n_keys, tile);
	LLVMValueRef hi = imin(c, add(c, lo, tile), n_keys);
	SimtIf r2;
	simt_if(S_, &r2, multi);
	simt_sync(S_);
	scores(c, a, nt, K, rowbase, g, qd, lo, hi, sc, lo, dummy);
	simt_sync(S_);
	simt_endif(S_, &r2);
	tile_exp(c, nt, sc, sub(c, hi, lo), mxb, sum);
	simt_for_end(S_, &f2);
	LLVMValueRef sumb = simt_block_sum(S_, simt_get(S_, sum), nt);
	LLVMValueRef inv = LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, simt_f64(S_, 1.0), sumb, ""), S_->t_f32, "");

	/* pass 3: weights.V, thread (slice s, dimension i) over keys j = s mod slices */
	LLVMValueRef s = LLVMBuildSDiv(B, tid, i32(c, a->hd), "");
	LLVMValueRef i = LLVMBuildSRem(B, tid, i32(c, a->hd), "");
	LLVMValueRef acc = simt_var(S_, S_->t_f64, simt_f64(S_, 0.0));
	SimtFor f3;
	lo = simt_for(S_, &f3, zero, n_keys, tile);
	hi = imin(c, add(c, lo, tile), n_keys);
	SimtIf r3;
	simt_if(S_, &r3, multi);
	simt_sync(S_);
	scores(c, a, nt, K, rowbase, g, qd, lo, hi, sc, lo, dummy);
	simt_sync(S_);
	tile_exp(c, nt, sc, sub(c, hi, lo), mxb, NULL);
	simt_sync(S_);
	simt_endif(S_, &r3);
	SimtFor fj;
	LLVMValueRef j = simt_for(S_, &fj, add(c, lo, s), hi, i32(c, ks));
	LLVMValueRef w = weight(c, a, simt_load(S_, S_->t_f32, sc, sub(c, j, lo), 4), inv);
	LLVMValueRef vh = simt_load(S_, S_->t_i16, V, kv_index(c, a, rowbase, j, g, i), 2);
	LLVMValueRef pr = LLVMBuildFMul(B, to_f64(c, simt_f16_to_f32(S_, vh)), to_f64(c, w), "");
	simt_set(S_, acc, LLVMBuildFAdd(B, simt_get(S_, acc), pr, ""));
	simt_for_end(S_, &fj);
	simt_for_end(S_, &f3);

	/* the slices' sums in slice order */
	LLVMValueRef y = simt_param(S_, 1);
	LLVMValueRef yi = add(c, add(c, mul(c, sext(c, t), i64(c, a->qw)), mul(c, sext(c, h), i64(c, a->hd))), sext(c, i));
	if (ks == 1) {
		simt_store(S_, LLVMBuildFPTrunc(B, simt_get(S_, acc), S_->t_f32, ""), y, yi, 4);
	} else {
		LLVMValueRef sl = byte_at(c, sc, mul(c, sext(c, tile), i64(c, 4)));
		simt_sync(S_);
		simt_store(S_, simt_get(S_, acc), sl, tid, 8);
		simt_sync(S_);
		SimtIf z;
		simt_if(S_, &z, eq(c, s, zero));
		LLVMValueRef tot = simt_load(S_, S_->t_f64, sl, i, 8);
		for (int64_t k = 1; k < ks; k++)
			tot = LLVMBuildFAdd(B, tot, simt_load(S_, S_->t_f64, sl, add(c, i, i32(c, k * a->hd)), 8), "");
		simt_store(S_, LLVMBuildFPTrunc(B, tot, S_->t_f32, ""), y, yi, 4);
		simt_endif(S_, &z);
	}
	simt_end(S_);
}

/* ---- step: split over the context -------------------------------------------------- */

static int d_block(const Att *a) { return a->hd > ATT_D_BLOCK ? (int)a->hd : ATT_D_BLOCK; }

/* Where the scratch's parts start for this node (SCORES layout above). */
typedef struct {
	LLVMValueRef nch, pv, sc, cm; /* chunks (i32); partials (double), scores, chunk maxima */
} Scratch;

static Scratch scratch(CuCtx *c, const Att *a, LLVMValueRef base, LLVMValueRef n_ctx)
{
	Scratch r;
	LLVMValueRef nch = LLVMBuildSDiv(B, add(c, n_ctx, i64(c, a->hd - 1)), i64(c, a->hd), "");
	r.nch = LLVMBuildTrunc(B, nch, S_->t_i32, "");
	r.pv = base;
	r.sc = byte_at(c, base, mul(c, nch, i64(c, a->nh * a->hd * 8)));
	r.cm = byte_at(c, r.sc, mul(c, n_ctx, i64(c, a->nh * 4)));
	return r;
}

/* params: q, KV, kvs, koff, n_ctx, POS, SEQ, SCORES; grid ((n_ctx + CH - 1) / CH, n_head) */
static void d_scores_kernel(CuCtx *c, const Att *a, const char *name)
{
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I64, SIMT_P_I64,
				      SIMT_P_I64, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR};
	simt_begin(S_, name, p, 8);
	LLVMValueRef ch = simt_ctaid(S_, 0), h = simt_ctaid(S_, 1);
	LLVMValueRef n_ctx = simt_param(S_, 4);
	LLVMValueRef pos = simt_load(S_, S_->t_i32, simt_param(S_, 5), NULL, 4);
	LLVMValueRef seq = simt_load(S_, S_->t_i32, simt_param(S_, 6), NULL, 4);
	LLVMValueRef n_keys = add(c, pos, i32(c, 1));
	LLVMValueRef lo = mul(c, ch, i32(c, a->hd));
	simt_return_if(S_, LLVMBuildICmp(B, LLVMIntSGE, lo, n_keys, ""));
	LLVMValueRef hi = imin(c, add(c, lo, i32(c, a->hd)), n_keys);
	Scratch x = scratch(c, a, simt_param(S_, 7), n_ctx);
	LLVMValueRef g = LLVMBuildSDiv(B, h, i32(c, a->group), "");
	LLVMValueRef K = cache(c, a, simt_param(S_, 1), simt_param(S_, 2), simt_param(S_, 3), false);
	LLVMValueRef tid = simt_tid(S_, 0);
	LLVMValueRef qd[ATT_DPL];
	q_load(c, a, simt_param(S_, 0), i32(c, 0), h, LLVMBuildSRem(B, tid, i32(c, att_lpk(a)), ""), qd);
	LLVMValueRef sc = simt_gep(S_, S_->t_f32, x.sc, mul(c, sext(c, h), n_ctx));
	LLVMValueRef mx = simt_var(S_, S_->t_f32, simt_f32(S_, -__builtin_inff()));
	scores(c, a, ATT_S_BLOCK, K, mul(c, sext(c, seq), n_ctx), g, qd, lo, hi, sc, i32(c, 0), mx);
	LLVMValueRef mxb = simt_block_max(S_, simt_get(S_, mx), ATT_S_BLOCK);
	SimtIf z;
	simt_if(S_, &z, eq(c, tid, i32(c, 0)));
	simt_store(S_, mxb, x.cm, add(c, mul(c, h, x.nch), ch), 4);
	simt_endif(S_, &z);
	simt_end(S_);
}

/* params: n_ctx, POS, SCORES; grid n_head */
static void d_softmax_kernel(CuCtx *c, const Att *a, const char *name)
{
	static const SimtParam p[] = {SIMT_P_I64, SIMT_P_PTR, SIMT_P_PTR};
	int nt = d_block(a);
	simt_begin(S_, name, p, 3);
	LLVMValueRef h = simt_ctaid(S_, 0), tid = simt_tid(S_, 0);
	LLVMValueRef n_ctx = simt_param(S_, 0);
	LLVMValueRef n_keys = add(c, simt_load(S_, S_->t_i32, simt_param(S_, 1), NULL, 4), i32(c, 1));
	LLVMValueRef used = LLVMBuildSDiv(B, add(c, n_keys, i32(c, a->hd - 1)), i32(c, a->hd), "");
	Scratch x = scratch(c, a, simt_param(S_, 2), n_ctx);
	LLVMValueRef mx = simt_var(S_, S_->t_f32, simt_f32(S_, -__builtin_inff()));
	SimtFor f;
	LLVMValueRef k = simt_for(S_, &f, tid, used, i32(c, nt));
	simt_set(S_, mx, simt_fmax(S_, simt_get(S_, mx), simt_load(S_, S_->t_f32, x.cm, add(c, mul(c, h, x.nch), k), 4)));
	simt_for_end(S_, &f);
	LLVMValueRef mxb = simt_block_max(S_, simt_get(S_, mx), nt);
	LLVMValueRef sc = simt_gep(S_, S_->t_f32, x.sc, mul(c, sext(c, h), n_ctx));
	LLVMValueRef sum = simt_var(S_, S_->t_f64, simt_f64(S_, 0.0));
	tile_exp(c, nt, sc, n_keys, mxb, sum);
	LLVMValueRef sumb = simt_block_sum(S_, simt_get(S_, sum), nt);
	LLVMValueRef inv = LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, simt_f64(S_, 1.0), sumb, ""), S_->t_f32, "");
	/* each thread rescales the exps it wrote */
	SimtFor g;
	LLVMValueRef j = simt_for(S_, &g, tid, n_keys, i32(c, nt));
	simt_store(S_, weight(c, a, simt_load(S_, S_->t_f32, sc, j, 4), inv), sc, j, 4);
	simt_for_end(S_, &g);
	simt_end(S_);
}

/* params: KV, kvs, koff, n_ctx, POS, SEQ, SCORES; grid ((n_ctx + CH - 1) / CH, n_head);
 * shared slices * head_dim * 8 */
static void d_pv_kernel(CuCtx *c, const Att *a, const char *name)
{
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_I64, SIMT_P_I64, SIMT_P_I64,
				      SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR};
	int nt = d_block(a);
	int64_t ks = nt / a->hd;
	simt_begin(S_, name, p, 7);
	LLVMValueRef ch = simt_ctaid(S_, 0), h = simt_ctaid(S_, 1), tid = simt_tid(S_, 0);
	LLVMValueRef n_ctx = simt_param(S_, 3);
	LLVMValueRef pos = simt_load(S_, S_->t_i32, simt_param(S_, 4), NULL, 4);
	LLVMValueRef seq = simt_load(S_, S_->t_i32, simt_param(S_, 5), NULL, 4);
	LLVMValueRef n_keys = add(c, pos, i32(c, 1));
	LLVMValueRef lo = mul(c, ch, i32(c, a->hd));
	simt_return_if(S_, LLVMBuildICmp(B, LLVMIntSGE, lo, n_keys, ""));
	LLVMValueRef hi = imin(c, add(c, lo, i32(c, a->hd)), n_keys);
	Scratch x = scratch(c, a, simt_param(S_, 6), n_ctx);
	LLVMValueRef g = LLVMBuildSDiv(B, h, i32(c, a->group), "");
	LLVMValueRef V = cache(c, a, simt_param(S_, 0), simt_param(S_, 1), simt_param(S_, 2), true);
	LLVMValueRef rowbase = mul(c, sext(c, seq), n_ctx);
	LLVMValueRef sc = simt_gep(S_, S_->t_f32, x.sc, mul(c, sext(c, h), n_ctx));
	LLVMValueRef s = LLVMBuildSDiv(B, tid, i32(c, a->hd), "");
	LLVMValueRef i = LLVMBuildSRem(B, tid, i32(c, a->hd), "");
	LLVMValueRef acc = simt_var(S_, S_->t_f64, simt_f64(S_, 0.0));
	SimtFor f;
	LLVMValueRef j = simt_for(S_, &f, add(c, lo, s), hi, i32(c, ks));
	LLVMValueRef w = simt_load(S_, S_->t_f32, sc, j, 4);
	LLVMValueRef vh = simt_load(S_, S_->t_i16, V, kv_index(c, a, rowbase, j, g, i), 2);
	simt_set(S_, acc, LLVMBuildFAdd(B, simt_get(S_, acc),
				       LLVMBuildFMul(B, to_f64(c, simt_f16_to_f32(S_, vh)), to_f64(c, w), ""), ""));
	simt_for_end(S_, &f);
	LLVMValueRef at = add(c, mul(c, sext(c, add(c, mul(c, h, x.nch), ch)), i64(c, a->hd)), sext(c, i));
	if (ks == 1) {
		simt_store(S_, simt_get(S_, acc), x.pv, at, 8);
	} else {
		LLVMValueRef sl = simt_smem(S_);
		simt_store(S_, simt_get(S_, acc), sl, tid, 8);
		simt_sync(S_);
		SimtIf z;
		simt_if(S_, &z, eq(c, s, i32(c, 0)));
		LLVMValueRef tot = simt_load(S_, S_->t_f64, sl, i, 8);
		for (int64_t k = 1; k < ks; k++)
			tot = LLVMBuildFAdd(B, tot, simt_load(S_, S_->t_f64, sl, add(c, i, i32(c, k * a->hd)), 8), "");
		simt_store(S_, tot, x.pv, at, 8);
		simt_endif(S_, &z);
	}
	simt_end(S_);
}

static int o_block(const Att *a) { return a->hd < 32 ? 32 : (int)a->hd; }

/* params: y, n_ctx, POS, SCORES; grid n_head; the chunks' partials in chunk order */
static void d_out_kernel(CuCtx *c, const Att *a, const char *name)
{
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_I64, SIMT_P_PTR, SIMT_P_PTR};
	simt_begin(S_, name, p, 4);
	LLVMValueRef h = simt_ctaid(S_, 0), i = simt_tid(S_, 0);
	simt_return_if(S_, LLVMBuildICmp(B, LLVMIntSGE, i, i32(c, a->hd), ""));
	LLVMValueRef n_ctx = simt_param(S_, 1);
	LLVMValueRef n_keys = add(c, simt_load(S_, S_->t_i32, simt_param(S_, 2), NULL, 4), i32(c, 1));
	LLVMValueRef used = LLVMBuildSDiv(B, add(c, n_keys, i32(c, a->hd - 1)), i32(c, a->hd), "");
	Scratch x = scratch(c, a, simt_param(S_, 3), n_ctx);
	LLVMValueRef acc = simt_var(S_, S_->t_f64, simt_f64(S_, 0.0));
	SimtFor f;
	LLVMValueRef k = simt_for(S_, &f, i32(c, 0), used, i32(c, 1));
	LLVMValueRef at = add(c, mul(c, sext(c, add(c, mul(c, h, x.nch), k)), i64(c, a->hd)), sext(c, i));
	simt_set(S_, acc, LLVMBuildFAdd(B, simt_get(S_, acc), simt_load(S_, S_->t_f64, x.pv, at, 8), ""));
	simt_for_end(S_, &f);
	LLVMValueRef yi = add(c, mul(c, sext(c, h), i64(c, a->hd)), sext(c, i));
	simt_store(S_, LLVMBuildFPTrunc(B, simt_get(S_, acc), S_->t_f32, ""), simt_param(S_, 0), yi, 4);
	simt_end(S_);
}

/* ---- the op -------------------------------------------------------------------------- */

static bool pow2_in(int64_t v, int64_t lo, int64_t hi)
{
	return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

/* The node's shape and its layer's place in the cache; BN_EUNSUPPORTED naming the node. */
static int att_shape(CuCtx *c, const IrNode *nd, Att *a, BnErr *e)
{
	memset(a, 0, sizeof *a);
	a->nh = ir_attr_int(nd, "n_head", 1);
	a->nkv = ir_attr_int(nd, "n_head_kv", a->nh);
	a->hd = ir_attr_int(nd, "head_dim", 1);
	int64_t layer = ir_attr_int(nd, "layer", 0);
	if (a->nh <= 0 || a->nkv <= 0 || a->nh % a->nkv || a->nh > 65535)
		return unsupported(nd, e, "n_head must be a multiple of n_head_kv (at most 65535)");
	if (!pow2_in(a->hd, 8, 256))
		return unsupported(nd, e, "head_dim must be a power of two from 8 to 256");
	a->group = a->nh / a->nkv;
	a->kw = a->nkv * a->hd;
	a->qw = a->nh * a->hd;
	if (nd->n_in < 3 || ir_value_row(&c->g->values[nd->in[0]]) != a->qw ||
	    ir_value_row(&c->g->values[nd->in[1]]) != a->kw ||
	    ir_value_row(&c->g->values[nd->in[2]]) != a->kw)
		return unsupported(nd, e, "q, k, v rows do not match the heads and head_dim");
	a->scale = (float)ir_attr_float(nd, "scale", 1.0 / sqrt((double)a->hd));
	a->step = c->tmpl == 1;
	IrKvPlan p;
	bool found = false;
	int rc = ir_kv_read(c->g, &p, &found, e);
	if (!rc && !found)
		rc = ir_kv_plan(c->g, &p, e);
	if (rc)
		return rc;
	if (layer < 0 || layer >= p.n_layer || p.width[layer] != a->kw) {
		ir_kv_plan_free(&p);
		return unsupported(nd, e, "the KV plan has no layer of this width");
	}
	a->off = p.off[layer];
	a->kalign = a->off % ATT_DPL ? 2 : 2 * ATT_DPL;
	ir_kv_plan_free(&p);
	uint32_t u;
	memcpy(&u, &a->scale, sizeof u);
	snprintf(a->tag, sizeof a->tag, "h%" PRId64 "_kv%" PRId64 "_hd%" PRId64 "_s%08" PRIx32,
		 a->nh, a->nkv, a->hd, u);
	return 0;
}

uint64_t cu_attention_scores_bytes(const IrGraph *g, int64_t n_ctx)
{
	int64_t h = 0, d = 0;
	for (IrId ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_ATTENTION)
			continue;
		int64_t nh = ir_attr_int(n, "n_head", 1), hd = ir_attr_int(n, "head_dim", 1);
		h = nh > h ? nh : h;
		d = hd > d ? hd : d;
	}
	return 16u * (uint64_t)h * (uint64_t)(n_ctx + d);
}

/* The common arguments: the layer's place in the cache. */
static void kv_args(CuLaunch *l, const Att *a)
{
	cu_arg(l, SIMT_P_PTR, "KV");
	cu_arg(l, SIMT_P_I64, "kvs");
	cu_arg(l, SIMT_P_I64, "%" PRId64, a->off);
}

static int step_launches(CuCtx *c, const IrNode *nd, const Att *a, CuLaunch *L, int *nl,
			 int max, BnErr *e)
{
	char name[4][128], grid[96];
	snprintf(name[0], sizeof name[0], "attn_d_scores_%s", a->tag);
	snprintf(name[1], sizeof name[1], "attn_d_softmax_h%" PRId64 "_hd%" PRId64, a->nh, a->hd);
	snprintf(name[2], sizeof name[2], "attn_d_pv_h%" PRId64 "_kv%" PRId64 "_hd%" PRId64, a->nh, a->nkv, a->hd);
	snprintf(name[3], sizeof name[3], "attn_d_out_h%" PRId64 "_hd%" PRId64, a->nh, a->hd);
	if (!simt_has(S_, name[0]))
		d_scores_kernel(c, a, name[0]);
	if (!simt_has(S_, name[1]))
		d_softmax_kernel(c, a, name[1]);
	if (!simt_has(S_, name[2]))
		d_pv_kernel(c, a, name[2]);
	if (!simt_has(S_, name[3]))
		d_out_kernel(c, a, name[3]);
	/* chunks of CH = head_dim keys over the whole context */
	snprintf(grid, sizeof grid, "(n_ctx + %" PRId64 ") / %" PRId64, a->hd - 1, a->hd);
	char nh[24];
	snprintf(nh, sizeof nh, "%" PRId64, a->nh);

	CuLaunch *l = cu_launch(L, nl, max, name[0], ATT_S_BLOCK, grid);
	if (!l)
		return full(nd, e);
	snprintf(l->grid[1], sizeof l->grid[1], "%s", nh);
	snprintf(l->smem, sizeof l->smem, "%d", ATT_RED);
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[0]));
	kv_args(l, a);
	cu_arg(l, SIMT_P_I64, "n_ctx");
	cu_arg(l, SIMT_P_PTR, "POS");
	cu_arg(l, SIMT_P_PTR, "SEQ");
	cu_arg(l, SIMT_P_PTR, "SCORES");

	if (!(l = cu_launch(L, nl, max, name[1], (unsigned)d_block(a), nh)))
		return full(nd, e);
	snprintf(l->smem, sizeof l->smem, "%d", ATT_RED);
	cu_arg(l, SIMT_P_I64, "n_ctx");
	cu_arg(l, SIMT_P_PTR, "POS");
	cu_arg(l, SIMT_P_PTR, "SCORES");

	if (!(l = cu_launch(L, nl, max, name[2], (unsigned)d_block(a), grid)))
		return full(nd, e);
	snprintf(l->grid[1], sizeof l->grid[1], "%s", nh);
	snprintf(l->smem, sizeof l->smem, "%d", d_block(a) * 8);
	kv_args(l, a);
	cu_arg(l, SIMT_P_I64, "n_ctx");
	cu_arg(l, SIMT_P_PTR, "POS");
	cu_arg(l, SIMT_P_PTR, "SEQ");
	cu_arg(l, SIMT_P_PTR, "SCORES");

	if (!(l = cu_launch(L, nl, max, name[3], (unsigned)o_block(a), nh)))
		return full(nd, e);
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
	cu_arg(l, SIMT_P_I64, "n_ctx");
	cu_arg(l, SIMT_P_PTR, "POS");
	cu_arg(l, SIMT_P_PTR, "SCORES");
	return 0;
}

int cu_op_attention(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	Att a;
	int rc = att_shape(c, nd, &a, e);
	if (rc)
		return rc;
	char name[128];
	snprintf(name, sizeof name, "attn_kv_store_w%" PRId64, a.kw);
	if (!simt_has(S_, name))
		store_kernel(c, &a, name);
	/* a block per row */
	CuLaunch *l = cu_launch(L, nl, max, name, ATT_ST_BLOCK, "n");
	if (!l)
		return full(nd, e);
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[1]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[2]));
	kv_args(l, &a);
	cu_arg(l, SIMT_P_I64, "n_ctx");
	cu_arg(l, SIMT_P_PTR, "POS");
	cu_arg(l, SIMT_P_PTR, "SEQ");
	cu_arg(l, SIMT_P_I32, "n");
	if (a.step)
		return step_launches(c, nd, &a, L, nl, max, e);

	snprintf(name, sizeof name, "attn_b_%s", a.tag);
	if (!simt_has(S_, name))
		batch_kernel(c, &a, name);
	/* a block per (row, head); shared: reductions, a tile of scores, the slices' sums */
	int nt = b_block(&a);
	if (!(l = cu_launch(L, nl, max, name, (unsigned)nt, "n")))
		return full(nd, e);
	snprintf(l->grid[1], sizeof l->grid[1], "%" PRId64, a.nh);
	snprintf(l->smem, sizeof l->smem, "%" PRId64,
		 (int64_t)ATT_RED + 4 * ATT_TILE + (nt > a.hd ? nt * 8 : 0));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[0]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
	kv_args(l, &a);
	cu_arg(l, SIMT_P_I64, "n_ctx");
	cu_arg(l, SIMT_P_PTR, "POS");
	cu_arg(l, SIMT_P_PTR, "SEQ");
	cu_arg(l, SIMT_P_I32, "n");
	cu_arg(l, SIMT_P_I32, "%d", ATT_TILE);
	return 0;
}
