/* cg_cuda_k_mat.c - the CUDA kernels of the matrix products: ternary_matmul with I2_S weights
 * as GGUF stores them (a dp4a GEMV for the step template, a tiled dp4a GEMM for batches, in
 * the Metal build a SIMD-group matrix GEMM instead while its float sums are exact), with
 * TQ1_0 / TQ2_0 weights (the reference's float order, one warp per output), and the float head
 * matmul with F16, BF16 or F32 weights (a GEMV and a tiled GEMM, f32 accumulation; in the
 * Metal build the F16 GEMM on SIMD-group matrices).
 * Numerics: ir/ir_interp.c (dot_i2s, dot_tq, head_prepare) and FORMATS.md sections 5-6.
 * The I2_S and head kernels load 16 bytes at a time: their weights, codes and x must start at
 * 16-byte aligned device addresses (the scratch arena's are; so must the weights' offsets).
 * The grids' n is at least 1: a call has rows. */
#include "cg_cuda.h"
#include "../simt/simt_abi.h"

#include <stdio.h>
#include <string.h>

/* ---- small IR helpers ----------------------------------------------------------------- */

static LLVMValueRef add(Simt *S, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(S->b, a, b, ""); }
static LLVMValueRef sub(Simt *S, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSub(S->b, a, b, ""); }
static LLVMValueRef mul(Simt *S, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(S->b, a, b, ""); }
static LLVMValueRef band(Simt *S, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAnd(S->b, a, b, ""); }
static LLVMValueRef lshr(Simt *S, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildLShr(S->b, a, b, ""); }

static LLVMValueRef c32(Simt *S, int64_t v) { return simt_i32(S, v); }

static LLVMValueRef lt(Simt *S, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildICmp(S->b, LLVMIntSLT, a, b, "");
}

static LLVMValueRef imin(Simt *S, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildSelect(S->b, lt(S, a, b), a, b, "");
}

static LLVMValueRef to64(Simt *S, LLVMValueRef v)
{
	return LLVMTypeOf(v) == S->t_i64 ? v : LLVMBuildSExt(S->b, v, S->t_i64, "");
}

/* the byte address p + off */
static LLVMValueRef at(Simt *S, LLVMValueRef p, LLVMValueRef off)
{
	return simt_gep(S, S->t_i8, p, off);
}

static LLVMTypeRef v4(Simt *S, LLVMTypeRef t)
{
	return LLVMVectorType(t, 4);
}

/* the i32 vector {v, v, v, v} */
static LLVMValueRef splat4(Simt *S, int64_t v)
{
	LLVMValueRef e[4] = {c32(S, v), c32(S, v), c32(S, v), c32(S, v)};
	return LLVMConstVector(e, 4);
}

/* Steps of an unrolled loop split into even batches of at most max: the batch size. */
static int64_t batch_of(int64_t steps, int64_t max)
{
	int64_t nb = (steps + max - 1) / max;
	return (steps + nb - 1) / nb;
}

static LLVMValueRef elt(Simt *S, LLVMValueRef v, int i)
{
	return LLVMBuildExtractElement(S->b, v, c32(S, i), "");
}

/* 16 bytes at byte address p (16-aligned) as four i32 */
static LLVMValueRef ld16(Simt *S, LLVMValueRef p)
{
	return simt_load(S, v4(S, S->t_i32), p, NULL, 16);
}

static LLVMValueRef ldf(Simt *S, LLVMValueRef p, LLVMValueRef i)
{
	return simt_load(S, S->t_f32, p, i, 4);
}

/* y = fl(fl(D / s) * wscale) for D as a float (exact: |D| < 2^24): dot_i2s's epilogue */
static LLVMValueRef i2s_outf(Simt *S, LLVMValueRef f, LLVMValueRef s, LLVMValueRef wscale)
{
	return LLVMBuildFMul(S->b, LLVMBuildFDiv(S->b, f, s, ""), wscale, "");
}

/* the same for D as an i32 */
static LLVMValueRef i2s_out(Simt *S, LLVMValueRef d, LLVMValueRef s, LLVMValueRef wscale)
{
	return i2s_outf(S, LLVMBuildSIToFP(S->b, d, S->t_f32, ""), s, wscale);
}

/* The codes (w + 1) of group g (0..3) of a 32-bit word of an I2_S block as four bytes. */
static LLVMValueRef i2s_codes(Simt *S, LLVMValueRef word, int g)
{
	return band(S, lshr(S, word, c32(S, 6 - 2 * g)), c32(S, 0x03030303));
}

/* ---- I2_S, step template: the GEMV -------------------------------------------------------
 * A row is K/64 chunks of 16 bytes; chunk c holds bytes 16c.. of block c/2, i.e. the codes of
 * elements 128(c/2) + 32g + 16(c%2) + 0..15 for g = 0..3. Eight lanes share a row (a warp
 * holds four rows), lane l of the eight takes chunks l, l + 8, ...; each thread does rt
 * consecutive rows with the same activations. D = dot(codes, q) - sum(q), exact in int32;
 * the eight lanes add their parts by shuffles. All weight loads of up to 8 steps are issued
 * before they are used, so that the whole matrix is in flight at once. */
enum { I2S_GEMV_THREADS = 128, I2S_LPR = 8, I2S_GEMV_BATCH = 8, MAX_RT = 2 };

static int i2s_gemv_rt(int64_t n_rows)
{
	return n_rows > 4096 ? 2 : 1;
}

static int64_t i2s_gemv_rows_per_block(int rt)
{
	return (I2S_GEMV_THREADS / 32) * (32 / I2S_LPR) * rt;
}

static void build_i2s_gemv(Simt *S, const char *name, int64_t K, int64_t N)
{
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR};
	simt_begin(S, name, p, 4);
	LLVMValueRef q = simt_param(S, 0), s = simt_param(S, 1), w = simt_param(S, 2), y = simt_param(S, 3);
	int rt = i2s_gemv_rt(N);
	LLVMValueRef lane = simt_lane(S), warp = simt_warp(S);
	LLVMValueRef grp = lshr(S, lane, c32(S, 3)), sl = band(S, lane, c32(S, I2S_LPR - 1));
	LLVMValueRef ob = add(S, mul(S, simt_ctaid(S, 0), c32(S, i2s_gemv_rows_per_block(rt))),
			      mul(S, add(S, mul(S, warp, c32(S, 32 / I2S_LPR)), grp), c32(S, rt)));
	LLVMValueRef rowoff[MAX_RT], acc[MAX_RT];
	for (int r = 0; r < rt; r++) {
		LLVMValueRef o = imin(S, add(S, ob, c32(S, r)), c32(S, N - 1));
		rowoff[r] = LLVMBuildMul(S->b, to64(S, o), simt_i64(S, K / 4), "");
		acc[r] = c32(S, 0);
	}
	LLVMValueRef qsum = c32(S, 0), ones = c32(S, 0x01010101);
	int64_t C = K / 64, steps = (C + I2S_LPR - 1) / I2S_LPR;
	int64_t batch = batch_of(steps, I2S_GEMV_BATCH);
	for (int64_t s0 = 0; s0 < steps; s0 += batch) {
		int64_t nb = steps - s0 < batch ? steps - s0 : batch;
		LLVMValueRef wv[I2S_GEMV_BATCH][MAX_RT], cc[I2S_GEMV_BATCH], valid[I2S_GEMV_BATCH];
		for (int64_t i = 0; i < nb; i++) {
			LLVMValueRef c = add(S, sl, c32(S, I2S_LPR * (s0 + i)));
			bool partial = (s0 + i + 1) * I2S_LPR > C;
			valid[i] = partial ? lt(S, c, c32(S, C)) : NULL;
			cc[i] = partial ? imin(S, c, c32(S, C - 1)) : c;
			LLVMValueRef off = to64(S, LLVMBuildShl(S->b, cc[i], c32(S, 4), ""));
			for (int r = 0; r < rt; r++)
				wv[i][r] = ld16(S, at(S, w, LLVMBuildAdd(S->b, rowoff[r], off, "")));
		}
		for (int64_t i = 0; i < nb; i++) {
			LLVMValueRef c = cc[i];
			LLVMValueRef ab = add(S, mul(S, lshr(S, c, c32(S, 1)), c32(S, 128)),
					      mul(S, band(S, c, c32(S, 1)), c32(S, 16)));
			LLVMValueRef a[4];
			for (int g = 0; g < 4; g++) {
				a[g] = ld16(S, at(S, q, add(S, ab, c32(S, 32 * g))));
				if (valid[i])
					a[g] = LLVMBuildSelect(S->b, valid[i], a[g],
							       LLVMConstNull(v4(S, S->t_i32)), "");
			}
			for (int j = 0; j < 4; j++)
				for (int g = 0; g < 4; g++) {
					LLVMValueRef aw = elt(S, a[g], j);
					qsum = simt_dp4a(S, ones, aw, qsum);
					for (int r = 0; r < rt; r++)
						acc[r] = simt_dp4a(S, i2s_codes(S, elt(S, wv[i][r], j), g), aw, acc[r]);
				}
		}
	}
	LLVMValueRef s_t = ldf(S, s, c32(S, 0));
	LLVMValueRef wscale = ldf(S, at(S, w, simt_i64(S, N * K / 4)), NULL);
	for (int r = 0; r < rt; r++) {
		LLVMValueRef d = sub(S, acc[r], qsum);
		for (int o = I2S_LPR / 2; o >= 1; o /= 2)
			d = add(S, d, simt_shfl(S, SIMT_SHFL_BFLY, d, c32(S, o)));
		LLVMValueRef row = add(S, ob, c32(S, r));
		SimtIf st;
		simt_if(S, &st, LLVMBuildAnd(S->b, LLVMBuildICmp(S->b, LLVMIntEQ, sl, c32(S, 0), ""),
					      lt(S, row, c32(S, N)), ""));
		simt_store(S, i2s_out(S, d, s_t, wscale), y, row, 4);
		simt_endif(S, &st);
	}
	simt_end(S);
}

/* ---- I2_S, batch templates: the tiled GEMM -----------------------------------------------
 * A block computes 64 rows x 16 tokens. Per 128 inputs it stages the weights decoded to
 * signed bytes (w = code - 1: (code + 0x7f) ^ 0x80 per byte) and the tokens' codes in shared
 * memory, rows padded to 144 bytes (16-byte loads without bank conflicts); thread (tr, tt)
 * computes rows tr, tr + 32 for tokens tt + 4j, j < 4, by dp4a over 16-byte words. Each
 * weight byte is read once per 16 tokens. */
enum {
	GEMM_THREADS = 128, GEMM_BO = 64, GEMM_BT = 16, GEMM_JT = GEMM_BT / 4,
	I2S_KC = 128, I2S_STRIDE = I2S_KC + 16,
	I2S_SMEM = (GEMM_BO + GEMM_BT) * I2S_STRIDE,
};

static void build_i2s_gemm(Simt *S, const char *name, int64_t K, int64_t N)
{
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32};
	simt_begin(S, name, p, 5);
	LLVMValueRef q = simt_param(S, 0), s = simt_param(S, 1), w = simt_param(S, 2), y = simt_param(S, 3);
	LLVMValueRef n = simt_param(S, 4);
	LLVMValueRef tid = simt_tid(S, 0), sm = simt_smem(S);
	LLVMValueRef asm_ = at(S, sm, c32(S, GEMM_BO * I2S_STRIDE));
	LLVMValueRef o0 = mul(S, simt_ctaid(S, 0), c32(S, GEMM_BO));
	LLVMValueRef t0 = mul(S, simt_ctaid(S, 1), c32(S, GEMM_BT));
	/* staging: weights row ws_r, half ws_h of its 32 bytes; tokens a_j, part a_p of 8 */
	LLVMValueRef ws_r = lshr(S, tid, c32(S, 1)), ws_h = band(S, tid, c32(S, 1));
	LLVMValueRef ws_o = imin(S, add(S, o0, ws_r), c32(S, N - 1));
	LLVMValueRef ws_src = at(S, w, LLVMBuildAdd(S->b, LLVMBuildMul(S->b, to64(S, ws_o), simt_i64(S, K / 4), ""),
						      to64(S, mul(S, ws_h, c32(S, 16))), ""));
	LLVMValueRef ws_dst = at(S, sm, add(S, mul(S, ws_r, c32(S, I2S_STRIDE)), mul(S, ws_h, c32(S, 16))));
	LLVMValueRef a_j = lshr(S, tid, c32(S, 3)), a_p = band(S, tid, c32(S, 7));
	LLVMValueRef a_t = imin(S, add(S, t0, a_j), sub(S, n, c32(S, 1)));
	LLVMValueRef a_src = at(S, q, LLVMBuildAdd(S->b, LLVMBuildMul(S->b, to64(S, a_t), simt_i64(S, K), ""),
						   to64(S, mul(S, a_p, c32(S, 16))), ""));
	LLVMValueRef a_dst = at(S, asm_, add(S, mul(S, a_j, c32(S, I2S_STRIDE)), mul(S, a_p, c32(S, 16))));
	/* compute: rows tr + 32i, tokens tt + 4j */
	LLVMValueRef tr = band(S, tid, c32(S, 31)), tt = lshr(S, tid, c32(S, 5));
	LLVMValueRef acc[2][GEMM_JT];
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < GEMM_JT; j++)
			acc[i][j] = simt_var(S, S->t_i32, c32(S, 0));
	LLVMValueRef bias = splat4(S, 0x7f7f7f7f), flip = splat4(S, (int32_t)0x80808080u);
	SimtFor L;
	LLVMValueRef kc = simt_for(S, &L, c32(S, 0), c32(S, K / I2S_KC), c32(S, 1));
	LLVMValueRef wq = ld16(S, at(S, ws_src, to64(S, mul(S, kc, c32(S, I2S_KC / 4)))));
	LLVMValueRef aq = ld16(S, at(S, a_src, to64(S, mul(S, kc, c32(S, I2S_KC)))));
	for (int g = 0; g < 4; g++) {
		LLVMValueRef codes = band(S, lshr(S, wq, splat4(S, 6 - 2 * g)), splat4(S, 0x03030303));
		LLVMValueRef sw = LLVMBuildXor(S->b, add(S, codes, bias), flip, "");
		simt_store(S, sw, at(S, ws_dst, c32(S, 32 * g)), NULL, 16);
	}
	simt_store(S, aq, a_dst, NULL, 16);
	simt_sync(S);
	for (int kk = 0; kk < I2S_KC / 16; kk++) {
		LLVMValueRef wv[2], av[GEMM_JT];
		for (int i = 0; i < 2; i++)
			wv[i] = ld16(S, at(S, sm, add(S, mul(S, add(S, tr, c32(S, 32 * i)), c32(S, I2S_STRIDE)),
						       c32(S, 16 * kk))));
		for (int j = 0; j < GEMM_JT; j++)
			av[j] = ld16(S, at(S, asm_, add(S, mul(S, add(S, tt, c32(S, 4 * j)), c32(S, I2S_STRIDE)),
							 c32(S, 16 * kk))));
		for (int i = 0; i < 2; i++)
			for (int j = 0; j < GEMM_JT; j++) {
				LLVMValueRef a = simt_get(S, acc[i][j]);
				for (int e = 0; e < 4; e++)
					a = simt_dp4a(S, elt(S, wv[i], e), elt(S, av[j], e), a);
				simt_set(S, acc[i][j], a);
			}
	}
	simt_sync(S);
	simt_for_end(S, &L);
	LLVMValueRef wscale = ldf(S, at(S, w, simt_i64(S, N * K / 4)), NULL);
	for (int j = 0; j < GEMM_JT; j++) {
		LLVMValueRef t = add(S, t0, add(S, tt, c32(S, 4 * j)));
		SimtIf ti;
		simt_if(S, &ti, lt(S, t, n));
		LLVMValueRef st = ldf(S, s, t);
		for (int i = 0; i < 2; i++) {
			LLVMValueRef o = add(S, o0, add(S, tr, c32(S, 32 * i)));
			SimtIf oi;
			simt_if(S, &oi, lt(S, o, c32(S, N)));
			LLVMValueRef idx = LLVMBuildAdd(S->b, LLVMBuildMul(S->b, to64(S, t), simt_i64(S, N), ""), to64(S, o), "");
			simt_store(S, i2s_out(S, simt_get(S, acc[i][j]), st, wscale), y, idx, 4);
			simt_endif(S, &oi);
		}
		simt_endif(S, &ti);
	}
	simt_end(S);
}

/* ---- I2_S, batch templates on Metal: the SIMD-group matrix GEMM ------------------------------
 * The same tile as the dp4a GEMM (64 rows x 16 tokens, 128 threads: the launch is the same
 * but for its threadgroup memory), multiplied by simdgroup_matrix operations. Per 128 inputs
 * the weights are unpacked once to half (code - 1: -1, 0, 1) and the tokens' int8 values
 * converted to half (exact: |q| <= 128), both in threadgroup memory, rows padded to 136
 * halves (272 bytes: every 8x8 block starts 16-byte aligned, rows spread over the banks).
 * SIMD-group g (of 4) owns rows 16g..16g+15 x the 16 tokens: four 8x8 float accumulators,
 * each 8-input step two weight blocks, two transposed token blocks and four
 * multiply-accumulates (every block loaded once per use, each weight block used for two
 * token blocks, each token block for two row blocks). The products are integers, the sums
 * integers of at most K * 128 in magnitude: exact in float in any order while that is below
 * 2^24 (I2S_SGMM_MAX_K), so D is the dp4a kernel's exact integer and the epilogue
 * (i2s_outf) gives its bits. At the end the accumulators go through threadgroup memory
 * (token-major) so that each thread writes consecutive rows of y. */
enum {
	SGMM_STRIDE = I2S_KC + 8,                         /* halves per staged row */
	SGMM_A_OFF = GEMM_BO * SGMM_STRIDE * 2,           /* the tokens' bytes after the weights' */
	SGMM_SMEM = (GEMM_BO + GEMM_BT) * SGMM_STRIDE * 2,
	SGMM_C_STRIDE = GEMM_BO + 4,                      /* floats per token in the epilogue */
	/* |D| <= K * 128 (q may be -128) must stay below 2^24 */
	I2S_SGMM_MAX_K = (1 << 24) / 128 - 1,
};

_Static_assert(GEMM_BT * SGMM_C_STRIDE * 4 <= SGMM_SMEM, "the epilogue's staging fits");
_Static_assert(SGMM_SMEM <= 32768, "Metal's threadgroup memory (32 KiB)");

/* The SIMD-group GEMMs' 2 x 2 blocks of 8 x 8: acc[i][j] += w[i] x a[j]; then the
 * accumulators stored token-major into sm (cs[t][o], SIMD-group sg's 16 rows). */
static void sgmm_mac(Simt *S, LLVMValueRef acc[2][2], LLVMValueRef w[2], LLVMValueRef a[2])
{
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++)
			simt_mat_mac(S, acc[i][j], w[i], a[j], acc[i][j]);
}

static void sgmm_store(Simt *S, LLVMValueRef acc[2][2], LLVMValueRef sg, LLVMValueRef sm)
{
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++) {
			LLVMValueRef o = add(S, mul(S, sg, c32(S, 16)), c32(S, 8 * i));
			LLVMValueRef dst = simt_gep(S, S->t_f32, sm, add(S, c32(S, 8 * j * SGMM_C_STRIDE), o));
			simt_mat_store(S, acc[i][j], dst, c32(S, SGMM_C_STRIDE), true);
		}
}

static LLVMValueRef splat_i8(Simt *S, int v, int n)
{
	LLVMValueRef e[16];
	for (int i = 0; i < n; i++)
		e[i] = LLVMConstInt(S->t_i8, (unsigned long long)v, 1);
	return LLVMConstVector(e, (unsigned)n);
}

static void build_i2s_sgmm(Simt *S, const char *name, int64_t K, int64_t N)
{
	BN_ASSERT(K <= I2S_SGMM_MAX_K && K % I2S_KC == 0);
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32};
	simt_begin(S, name, p, 5);
	LLVMBuilderRef b = S->b;
	LLVMValueRef q = simt_param(S, 0), s = simt_param(S, 1), w = simt_param(S, 2), y = simt_param(S, 3);
	LLVMValueRef n = simt_param(S, 4);
	LLVMValueRef tid = simt_tid(S, 0), sm = simt_smem(S);
	LLVMValueRef as_ = at(S, sm, c32(S, SGMM_A_OFF));
	LLVMValueRef o0 = mul(S, simt_ctaid(S, 0), c32(S, GEMM_BO));
	LLVMValueRef t0 = mul(S, simt_ctaid(S, 1), c32(S, GEMM_BT));
	LLVMTypeRef v16i8 = LLVMVectorType(S->t_i8, 16), v16h = LLVMVectorType(S->t_f16, 16);
	/* staging: weights row ws_r, half ws_h of its 32 bytes; tokens a_j, part a_p of 8 */
	LLVMValueRef ws_r = lshr(S, tid, c32(S, 1)), ws_h = band(S, tid, c32(S, 1));
	LLVMValueRef ws_o = imin(S, add(S, o0, ws_r), c32(S, N - 1));
	LLVMValueRef ws_src = at(S, w, LLVMBuildAdd(b, LLVMBuildMul(b, to64(S, ws_o), simt_i64(S, K / 4), ""),
						      to64(S, mul(S, ws_h, c32(S, 16))), ""));
	LLVMValueRef ws_dst = at(S, sm, mul(S, add(S, mul(S, ws_r, c32(S, SGMM_STRIDE)), mul(S, ws_h, c32(S, 16))),
					    c32(S, 2)));
	LLVMValueRef a_j = lshr(S, tid, c32(S, 3)), a_p = band(S, tid, c32(S, 7));
	LLVMValueRef a_t = imin(S, add(S, t0, a_j), sub(S, n, c32(S, 1)));
	LLVMValueRef a_src = at(S, q, LLVMBuildAdd(b, LLVMBuildMul(b, to64(S, a_t), simt_i64(S, K), ""),
						   to64(S, mul(S, a_p, c32(S, 16))), ""));
	LLVMValueRef a_dst = at(S, as_, mul(S, add(S, mul(S, a_j, c32(S, SGMM_STRIDE)), mul(S, a_p, c32(S, 16))),
					    c32(S, 2)));
	/* SIMD-group sg: rows 16 sg + 8 i, tokens 8 j */
	LLVMValueRef sg = simt_warp(S);
	LLVMValueRef wblk[2], ablk[2], acc[2][2];
	for (int i = 0; i < 2; i++) {
		wblk[i] = simt_mat(S, SIMT_MAT_F16);
		ablk[i] = simt_mat(S, SIMT_MAT_F16);
		for (int j = 0; j < 2; j++) {
			acc[i][j] = simt_mat(S, SIMT_MAT_F32);
			simt_mat_fill(S, acc[i][j], 0.0f);
		}
	}
	LLVMValueRef wrow[2];
	for (int i = 0; i < 2; i++)
		wrow[i] = at(S, sm, mul(S, add(S, mul(S, sg, c32(S, 16)), c32(S, 8 * i)), c32(S, SGMM_STRIDE * 2)));
	LLVMValueRef stride = c32(S, SGMM_STRIDE);
	SimtFor L;
	LLVMValueRef kc = simt_for(S, &L, c32(S, 0), c32(S, K / I2S_KC), c32(S, 1));
	LLVMValueRef wq = simt_load(S, v16i8, at(S, ws_src, to64(S, mul(S, kc, c32(S, I2S_KC / 4)))), NULL, 16);
	LLVMValueRef aq = simt_load(S, v16i8, at(S, a_src, to64(S, mul(S, kc, c32(S, I2S_KC)))), NULL, 16);
	for (int g = 0; g < 4; g++) {
		LLVMValueRef codes = LLVMBuildAnd(b, LLVMBuildLShr(b, wq, splat_i8(S, 6 - 2 * g, 16), ""),
						  splat_i8(S, 3, 16), "");
		LLVMValueRef wv = LLVMBuildSIToFP(b, LLVMBuildSub(b, codes, splat_i8(S, 1, 16), ""), v16h, "");
		simt_store(S, wv, at(S, ws_dst, c32(S, 2 * 32 * g)), NULL, 16);
	}
	simt_store(S, LLVMBuildSIToFP(b, aq, v16h, ""), a_dst, NULL, 16);
	simt_sync(S);
	for (int kk = 0; kk < I2S_KC / 8; kk++) {
		for (int i = 0; i < 2; i++)
			simt_mat_load(S, wblk[i], at(S, wrow[i], c32(S, 2 * 8 * kk)), stride, false);
		for (int j = 0; j < 2; j++)
			simt_mat_load(S, ablk[j], at(S, as_, c32(S, 2 * (8 * j * SGMM_STRIDE + 8 * kk))), stride, true);
		sgmm_mac(S, acc, wblk, ablk);
	}
	simt_sync(S);
	simt_for_end(S, &L);
	/* the accumulators token-major: cs[t][o] (the loop's last barrier freed the memory) */
	sgmm_store(S, acc, sg, sm);
	simt_sync(S);
	LLVMValueRef wscale = ldf(S, at(S, w, simt_i64(S, N * K / 4)), NULL);
	LLVMValueRef ol = band(S, tid, c32(S, GEMM_BO - 1)), tp = lshr(S, tid, c32(S, 6));
	LLVMValueRef o = add(S, o0, ol);
	SimtIf oi;
	simt_if(S, &oi, lt(S, o, c32(S, N)));
	for (int m = 0; m < GEMM_BT / 2; m++) {
		LLVMValueRef tl = add(S, tp, c32(S, 2 * m)), t = add(S, t0, tl);
		SimtIf ti;
		simt_if(S, &ti, lt(S, t, n));
		LLVMValueRef d = ldf(S, sm, add(S, mul(S, tl, c32(S, SGMM_C_STRIDE)), ol));
		LLVMValueRef idx = LLVMBuildAdd(b, LLVMBuildMul(b, to64(S, t), simt_i64(S, N), ""), to64(S, o), "");
		simt_store(S, i2s_outf(S, d, ldf(S, s, t), wscale), y, idx, 4);
		simt_endif(S, &ti);
	}
	simt_endif(S, &oi);
	simt_end(S);
}

/* ---- TQ1_0 / TQ2_0: dot_tq's order --------------------------------------------------------
 * One warp per (row, token). Lane (L = lane % 8, h = lane / 8) adds, per block, the codes
 * times q over elements 32g + 4L..4L+3 for g = 2h, 2h + 1 minus q over 32L + 8h..+7: the
 * shuffles over h give lane L's exact int32, which every lane of L turns into float and
 * accumulates over the blocks in order; the butterfly over L = 4, 2, 1 then adds
 * ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) exactly as the reference. */
enum { TQ_THREADS = 128 };

/* The code (0..2) of element i (i32, 0..255) of a TQ2_0 / TQ1_0 block at blk. */
static LLVMValueRef tq_code(Simt *S, IrDtype dt, LLVMValueRef blk, LLVMValueRef i)
{
	LLVMBuilderRef b = S->b;
	if (dt == IR_DT_TQ2_0) {
		/* element j*128 + n*32 + m: qs[j*32 + m] bits 2n+1:2n */
		LLVMValueRef byte = add(S, mul(S, lshr(S, i, c32(S, 7)), c32(S, 32)), band(S, i, c32(S, 31)));
		LLVMValueRef sh = mul(S, band(S, lshr(S, i, c32(S, 5)), c32(S, 3)), c32(S, 2));
		LLVMValueRef v = LLVMBuildZExt(b, simt_load(S, S->t_i8, blk, byte, 1), S->t_i32, "");
		return band(S, lshr(S, v, sh), c32(S, 3));
	}
	/* i < 160: qs[i % 32], trit i / 32; i < 240: qs[32 + (i-160) % 16], trit (i-160) / 16;
	 * else qh[(i-240) % 4] (bytes 48..51), trit (i-240) / 4 */
	LLVMValueRef i1 = sub(S, i, c32(S, 160)), i2 = sub(S, i, c32(S, 240));
	LLVMValueRef lo = lt(S, i, c32(S, 160)), mid = lt(S, i, c32(S, 240));
	LLVMValueRef byte = LLVMBuildSelect(b, lo, band(S, i, c32(S, 31)),
					    LLVMBuildSelect(b, mid, add(S, c32(S, 32), band(S, i1, c32(S, 15))),
							    add(S, c32(S, 48), band(S, i2, c32(S, 3))), ""), "");
	LLVMValueRef tn = LLVMBuildSelect(b, lo, lshr(S, i, c32(S, 5)),
					  LLVMBuildSelect(b, mid, lshr(S, i1, c32(S, 4)), lshr(S, i2, c32(S, 2)), ""), "");
	/* 3^tn for tn 0..4 */
	LLVMValueRef p3 = c32(S, 1);
	for (int k = 1; k <= 4; k++)
		p3 = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, tn, c32(S, k), ""), c32(S, k == 1 ? 3 : k == 2 ? 9 : k == 3 ? 27 : 81), p3, "");
	LLVMValueRef v = LLVMBuildZExt(b, simt_load(S, S->t_i8, blk, byte, 1), S->t_i32, "");
	LLVMValueRef m = band(S, mul(S, v, p3), c32(S, 255));
	return lshr(S, mul(S, m, c32(S, 3)), c32(S, 8));
}

static void build_tq(Simt *S, const char *name, IrDtype dt, int64_t K, int64_t N)
{
	static const SimtParam p[] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR};
	simt_begin(S, name, p, 4);
	LLVMValueRef q = simt_param(S, 0), s = simt_param(S, 1), w = simt_param(S, 2), y = simt_param(S, 3);
	int64_t nb = K / 256;
	int bb = ir_dtype_info(dt)->block_bytes;
	LLVMValueRef lane = simt_lane(S);
	LLVMValueRef o = add(S, mul(S, simt_ctaid(S, 0), c32(S, TQ_THREADS / 32)), simt_warp(S));
	simt_return_if(S, LLVMBuildICmp(S->b, LLVMIntSGE, o, c32(S, N), ""));
	LLVMValueRef t = simt_ctaid(S, 1);
	LLVMValueRef L = band(S, lane, c32(S, 7)), h = lshr(S, lane, c32(S, 3));
	LLVMValueRef qt = at(S, q, LLVMBuildMul(S->b, to64(S, t), simt_i64(S, K), ""));
	LLVMValueRef st = simt_gep(S, S->t_f32, s, LLVMBuildMul(S->b, to64(S, t), simt_i64(S, nb), ""));
	LLVMValueRef wr = at(S, w, LLVMBuildMul(S->b, to64(S, o), simt_i64(S, nb * bb), ""));
	LLVMValueRef acc = simt_var(S, S->t_f32, simt_f32(S, 0.0f));
	SimtFor F;
	LLVMValueRef b = simt_for(S, &F, c32(S, 0), c32(S, nb), c32(S, 1));
	LLVMValueRef blk = at(S, wr, to64(S, mul(S, b, c32(S, bb))));
	LLVMValueRef qb = at(S, qt, to64(S, mul(S, b, c32(S, 256))));
	LLVMValueRef part = c32(S, 0);
	for (int gi = 0; gi < 2; gi++)
		for (int e = 0; e < 4; e++) {
			LLVMValueRef i = add(S, mul(S, add(S, mul(S, h, c32(S, 2)), c32(S, gi)), c32(S, 32)),
					     add(S, mul(S, L, c32(S, 4)), c32(S, e)));
			LLVMValueRef qv = LLVMBuildSExt(S->b, simt_load(S, S->t_i8, qb, i, 1), S->t_i32, "");
			part = add(S, part, mul(S, tq_code(S, dt, blk, i), qv));
		}
	for (int e = 0; e < 8; e++) {
		LLVMValueRef i = add(S, add(S, mul(S, L, c32(S, 32)), mul(S, h, c32(S, 8))), c32(S, e));
		part = sub(S, part, LLVMBuildSExt(S->b, simt_load(S, S->t_i8, qb, i, 1), S->t_i32, ""));
	}
	part = add(S, part, simt_shfl(S, SIMT_SHFL_BFLY, part, c32(S, 8)));
	part = add(S, part, simt_shfl(S, SIMT_SHFL_BFLY, part, c32(S, 16)));
	LLVMValueRef wd = simt_f16_to_f32(S, simt_load(S, S->t_i16, at(S, blk, c32(S, bb - 2)), NULL, 1));
	LLVMValueRef d = LLVMBuildFMul(S->b, ldf(S, st, b), wd, "");
	LLVMValueRef pf = LLVMBuildFMul(S->b, LLVMBuildSIToFP(S->b, part, S->t_f32, ""), d, "");
	simt_set(S, acc, LLVMBuildFAdd(S->b, simt_get(S, acc), pf, ""));
	simt_for_end(S, &F);
	LLVMValueRef a = simt_get(S, acc);
	for (int k = 4; k >= 1; k /= 2)
		a = LLVMBuildFAdd(S->b, a, simt_shfl(S, SIMT_SHFL_BFLY, a, c32(S, k)), "");
	SimtIf z;
	simt_if(S, &z, LLVMBuildICmp(S->b, LLVMIntEQ, lane, c32(S, 0), ""));
	simt_store(S, a, y, LLVMBuildAdd(S->b, LLVMBuildMul(S->b, to64(S, t), simt_i64(S, N), ""), to64(S, o), ""), 4);
	simt_endif(S, &z);
	simt_end(S);
}

/* ---- the op: ternary_matmul -------------------------------------------------------------- */

static const char *wname(IrDtype dt)
{
	return dt == IR_DT_I2_S ? "i2s" : dt == IR_DT_TQ2_0 ? "tq2" : "tq1";
}

int cu_op_ternary_matmul(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	const IrValue *wv = &c->g->values[nd->in[2]];
	IrDtype dt = wv->dtype;
	int64_t K = wv->ne[0], N = wv->ne[1];
	if (dt != IR_DT_I2_S && dt != IR_DT_TQ2_0 && dt != IR_DT_TQ1_0)
		return bn_err(e, BN_EUNSUPPORTED, "%s: the CUDA backend has no ternary_matmul for %s weights",
			      nd->name, ir_dtype_name(dt));
	const char *layout = wv->layout ? wv->layout : "gguf";
	if (strcmp(layout, "gguf") != 0)
		return bn_err(e, BN_EUNSUPPORTED, "%s: the CUDA kernels read %s weights in the gguf layout, not '%s'",
			      nd->name, ir_dtype_name(dt), layout);
	if (K <= 0 || N <= 0 || K % (dt == IR_DT_I2_S ? 128 : 256) != 0 || N > INT32_MAX / 2 ||
	    K > (1 << 24))
		return bn_err(e, BN_EUNSUPPORTED, "%s: no CUDA kernel for a %s matmul of %lld x %lld",
			      nd->name, ir_dtype_name(dt), (long long)K, (long long)N);
	char name[128], grid[96];
	CuLaunch *l;
	if (dt != IR_DT_I2_S) {
		snprintf(name, sizeof name, "tmm_%s_k%lld_n%lld", wname(dt), (long long)K, (long long)N);
		if (!simt_has(c->S, name))
			build_tq(c->S, name, dt, K, N);
		/* grid: (N + 3) / 4 blocks of 4 warps (one row each), y: the tokens */
		snprintf(grid, sizeof grid, "%lld", (long long)((N + 3) / 4));
		if (!(l = cu_launch(L, nl, max, name, TQ_THREADS, grid)))
			goto full;
		snprintf(l->grid[1], sizeof l->grid[1], "n");
	} else if (c->tmpl == 1) {
		snprintf(name, sizeof name, "tmm_i2s_k%lld_n%lld_gemv", (long long)K, (long long)N);
		if (!simt_has(c->S, name))
			build_i2s_gemv(c->S, name, K, N);
		/* grid: the rows in blocks of 16 (32 when N > 4096: two rows per thread) */
		int64_t rpb = i2s_gemv_rows_per_block(i2s_gemv_rt(N));
		snprintf(grid, sizeof grid, "%lld", (long long)((N + rpb - 1) / rpb));
		if (!(l = cu_launch(L, nl, max, name, I2S_GEMV_THREADS, grid)))
			goto full;
	} else {
		/* Metal: SIMD-group matrices while their float sums are exact, else dp4a */
		bool sgmm = c->S->flavor == SIMT_MSL && K <= I2S_SGMM_MAX_K;
		snprintf(name, sizeof name, "tmm_i2s_k%lld_n%lld_%s", (long long)K, (long long)N,
			 sgmm ? "sgmm" : "gemm");
		if (!simt_has(c->S, name)) {
			if (sgmm)
				build_i2s_sgmm(c->S, name, K, N);
			else
				build_i2s_gemm(c->S, name, K, N);
		}
		/* grid: 64 rows x 16 tokens per block */
		snprintf(grid, sizeof grid, "%lld", (long long)((N + GEMM_BO - 1) / GEMM_BO));
		if (!(l = cu_launch(L, nl, max, name, GEMM_THREADS, grid)))
			goto full;
		snprintf(l->grid[1], sizeof l->grid[1], "(n + %d) / %d", GEMM_BT - 1, GEMM_BT);
		snprintf(l->smem, sizeof l->smem, "%d", sgmm ? SGMM_SMEM : I2S_SMEM);
	}
	for (int i = 0; i < 2; i++)
		cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[i]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[2]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
	if (dt == IR_DT_I2_S && c->tmpl != 1)
		cu_arg(l, SIMT_P_I32, "n");
	return 0;
full:
	return bn_err(e, BN_EINVAL, "%s: too many kernel launches", nd->name);
}

/* ---- the float head ------------------------------------------------------------------------
 * x is prepared as head_prepare does: rounded to f16 (bf16 for BF16 weights) in the step
 * template, as it is in batches. "pick" kernels (the logits) compute rows r < n_out of x row
 * OUTR[r] into LOG[r]; the others rows r < n of x row r into their output. */

/* weight element e of a loaded 16-byte vector (or scalar) as float */
static LLVMValueRef head_w(Simt *S, IrDtype dt, LLVMValueRef raw)
{
	if (dt == IR_DT_F32)
		return raw;
	return dt == IR_DT_F16 ? simt_f16_to_f32(S, raw) : simt_bf16_to_f32(S, raw);
}

static LLVMTypeRef head_elem(Simt *S, IrDtype dt)
{
	return dt == IR_DT_F32 ? S->t_f32 : S->t_i16;
}

/* f32 -> bf16 -> f32 as bn_f32_to_bf16: round to nearest even, NaN made quiet */
static LLVMValueRef round_bf16(Simt *S, LLVMValueRef x)
{
	LLVMValueRef u = LLVMBuildBitCast(S->b, x, S->t_i32, "");
	LLVMValueRef r = add(S, add(S, u, c32(S, 0x7fff)), band(S, lshr(S, u, c32(S, 16)), c32(S, 1)));
	LLVMValueRef nan = LLVMBuildICmp(S->b, LLVMIntUGT, band(S, u, c32(S, 0x7fffffff)), c32(S, 0x7f800000), "");
	LLVMValueRef v = LLVMBuildSelect(S->b, nan, LLVMBuildOr(S->b, u, c32(S, 0x400000), ""), r, "");
	v = band(S, v, c32(S, (int32_t)0xffff0000u));
	return LLVMBuildBitCast(S->b, v, S->t_f32, "");
}

static LLVMValueRef head_prep(Simt *S, IrDtype dt, bool step, LLVMValueRef x)
{
	if (!step || dt == IR_DT_F32)
		return x;
	return dt == IR_DT_F16 ? simt_round_f16(S, x) : round_bf16(S, x);
}

static int head_esize(IrDtype dt)
{
	return dt == IR_DT_F32 ? 4 : 2;
}

/* The GEMV: x (rounded) staged in shared memory, a warp per row, HEAD_RPW rows per warp;
 * each lane loads 16 bytes of the row per step, all steps of a row issued at once. */
enum { HEAD_THREADS = 256, HEAD_RPW = 4, HEAD_RPB = HEAD_THREADS / 32 * HEAD_RPW, HEAD_BATCH = 12 };

static void build_head_gemv(Simt *S, const char *name, IrDtype dt, int64_t K, int64_t V, bool pick)
{
	SimtParam p[5] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32, SIMT_P_PTR};
	simt_begin(S, name, p, pick ? 5 : 4);
	LLVMValueRef x = simt_param(S, 0), w = simt_param(S, 1), y = simt_param(S, 2), nrows = simt_param(S, 3);
	simt_return_if(S, LLVMBuildICmp(S->b, LLVMIntSLE, nrows, c32(S, 0), ""));
	LLVMValueRef xrow = pick ? simt_load(S, S->t_i32, simt_param(S, 4), c32(S, 0), 4) : c32(S, 0);
	LLVMValueRef xr = simt_gep(S, S->t_f32, x, LLVMBuildMul(S->b, to64(S, xrow), simt_i64(S, K), ""));
	LLVMValueRef tid = simt_tid(S, 0), lane = simt_lane(S), sm = simt_smem(S);
	SimtFor F;
	LLVMValueRef k = simt_for(S, &F, tid, c32(S, K), c32(S, HEAD_THREADS));
	simt_store(S, head_prep(S, dt, true, ldf(S, xr, k)), sm, k, 4);
	simt_for_end(S, &F);
	simt_sync(S);
	int vw = 16 / head_esize(dt); /* elements per 16-byte chunk */
	int64_t chunks = K / vw, steps = (chunks + 31) / 32;
	LLVMTypeRef et = head_elem(S, dt), vt = LLVMVectorType(et, (unsigned)vw);
	LLVMValueRef rb = mul(S, add(S, mul(S, simt_ctaid(S, 0), c32(S, HEAD_THREADS / 32)), simt_warp(S)),
			      c32(S, HEAD_RPW));
	for (int r = 0; r < HEAD_RPW; r++) {
		LLVMValueRef row = add(S, rb, c32(S, r));
		LLVMValueRef wr = at(S, w, LLVMBuildMul(S->b, to64(S, imin(S, row, c32(S, V - 1))),
						      simt_i64(S, K * head_esize(dt)), ""));
		LLVMValueRef acc = simt_f32(S, 0.0f);
		int64_t batch = batch_of(steps, HEAD_BATCH);
		for (int64_t s0 = 0; s0 < steps; s0 += batch) {
			int64_t nb = steps - s0 < batch ? steps - s0 : batch;
			LLVMValueRef raw[HEAD_BATCH], ci[HEAD_BATCH], ok[HEAD_BATCH];
			for (int64_t i = 0; i < nb; i++) {
				LLVMValueRef cc = add(S, lane, c32(S, 32 * (s0 + i)));
				bool partial = (s0 + i + 1) * 32 > chunks;
				ok[i] = partial ? lt(S, cc, c32(S, chunks)) : NULL;
				ci[i] = partial ? imin(S, cc, c32(S, chunks - 1)) : cc;
				raw[i] = simt_load(S, vt, at(S, wr, to64(S, mul(S, ci[i], c32(S, 16)))), NULL, 16);
			}
			for (int64_t i = 0; i < nb; i++) {
				LLVMValueRef part = simt_f32(S, 0.0f);
				for (int e = 0; e < vw; e += 4) {
					LLVMValueRef xi = add(S, mul(S, ci[i], c32(S, vw)), c32(S, e));
					LLVMValueRef xv = simt_load(S, v4(S, S->t_f32), simt_gep(S, S->t_f32, sm, xi), NULL, 16);
					for (int j = 0; j < 4; j++) {
						LLVMValueRef wf = head_w(S, dt, elt(S, raw[i], e + j));
						part = LLVMBuildFAdd(S->b, part, LLVMBuildFMul(S->b, wf, elt(S, xv, j), ""), "");
					}
				}
				if (ok[i])
					part = LLVMBuildSelect(S->b, ok[i], part, simt_f32(S, 0.0f), "");
				acc = LLVMBuildFAdd(S->b, acc, part, "");
			}
		}
		acc = simt_warp_sum(S, acc);
		SimtIf st;
		simt_if(S, &st, LLVMBuildAnd(S->b, LLVMBuildICmp(S->b, LLVMIntEQ, lane, c32(S, 0), ""),
					      lt(S, row, c32(S, V)), ""));
		simt_store(S, acc, y, row, 4);
		simt_endif(S, &st);
	}
	simt_end(S);
}

/* The GEMM: 64 vocabulary rows x 16 rows of x per block, 32 inputs at a time staged as f32
 * in shared memory (rows padded to 36 floats); thread (tr, tt) computes rows tr, tr + 32 for
 * x rows tt + 4j, j < 4. */
enum { HEAD_KC = 32, HEAD_STRIDE = HEAD_KC + 4, HEAD_SMEM = (GEMM_BO + GEMM_BT) * HEAD_STRIDE * 4 };

static void build_head_gemm(Simt *S, const char *name, IrDtype dt, int64_t K, int64_t V, bool pick)
{
	SimtParam p[5] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32, SIMT_P_PTR};
	simt_begin(S, name, p, pick ? 5 : 4);
	LLVMValueRef x = simt_param(S, 0), w = simt_param(S, 1), y = simt_param(S, 2), nrows = simt_param(S, 3);
	LLVMValueRef t0 = mul(S, simt_ctaid(S, 1), c32(S, GEMM_BT));
	simt_return_if(S, LLVMBuildICmp(S->b, LLVMIntSGE, t0, nrows, ""));
	LLVMValueRef tid = simt_tid(S, 0), sm = simt_smem(S);
	LLVMValueRef xs = simt_gep(S, S->t_f32, sm, c32(S, GEMM_BO * HEAD_STRIDE));
	LLVMValueRef o0 = mul(S, simt_ctaid(S, 0), c32(S, GEMM_BO));
	int es = head_esize(dt), vw = 16 / es;
	/* staging: weight row ws_r, half ws_h of the 32 elements; x row a_j, 4 floats a_p */
	LLVMValueRef ws_r = lshr(S, tid, c32(S, 1)), ws_h = band(S, tid, c32(S, 1));
	LLVMValueRef ws_o = imin(S, add(S, o0, ws_r), c32(S, V - 1));
	LLVMValueRef ws_src = at(S, w, LLVMBuildAdd(S->b, LLVMBuildMul(S->b, to64(S, ws_o), simt_i64(S, K * es), ""),
						      to64(S, mul(S, ws_h, c32(S, 16 * es))), ""));
	LLVMValueRef ws_dst = simt_gep(S, S->t_f32, sm, add(S, mul(S, ws_r, c32(S, HEAD_STRIDE)), mul(S, ws_h, c32(S, 16))));
	LLVMValueRef a_j = lshr(S, tid, c32(S, 3)), a_p = band(S, tid, c32(S, 7));
	LLVMValueRef a_t = imin(S, add(S, t0, a_j), sub(S, nrows, c32(S, 1)));
	LLVMValueRef a_row = pick ? simt_load(S, S->t_i32, simt_param(S, 4), a_t, 4) : a_t;
	LLVMValueRef a_src = simt_gep(S, S->t_f32, x, LLVMBuildAdd(S->b, LLVMBuildMul(S->b, to64(S, a_row), simt_i64(S, K), ""),
								    to64(S, mul(S, a_p, c32(S, 4))), ""));
	LLVMValueRef a_dst = simt_gep(S, S->t_f32, xs, add(S, mul(S, a_j, c32(S, HEAD_STRIDE)), mul(S, a_p, c32(S, 4))));
	LLVMValueRef tr = band(S, tid, c32(S, 31)), tt = lshr(S, tid, c32(S, 5));
	LLVMValueRef acc[2][GEMM_JT];
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < GEMM_JT; j++)
			acc[i][j] = simt_var(S, S->t_f32, simt_f32(S, 0.0f));
	LLVMTypeRef vt = LLVMVectorType(head_elem(S, dt), (unsigned)vw);
	SimtFor F;
	LLVMValueRef kc = simt_for(S, &F, c32(S, 0), c32(S, K / HEAD_KC), c32(S, 1));
	/* 16 weights: 16 * es bytes, vw per 16-byte load */
	for (int part = 0; part < 16 / vw; part++) {
		LLVMValueRef src = at(S, ws_src, LLVMBuildAdd(S->b, LLVMBuildMul(S->b, to64(S, kc), simt_i64(S, HEAD_KC * es), ""),
							     simt_i64(S, 16 * part), ""));
		LLVMValueRef raw = simt_load(S, vt, src, NULL, 16);
		for (int e = 0; e < vw; e += 4) {
			LLVMValueRef f[4];
			for (int j = 0; j < 4; j++)
				f[j] = head_w(S, dt, elt(S, raw, e + j));
			LLVMValueRef fv = LLVMGetUndef(v4(S, S->t_f32));
			for (int j = 0; j < 4; j++)
				fv = LLVMBuildInsertElement(S->b, fv, f[j], c32(S, j), "");
			simt_store(S, fv, simt_gep(S, S->t_f32, ws_dst, c32(S, part * vw + e)), NULL, 16);
		}
	}
	LLVMValueRef xv = simt_load(S, v4(S, S->t_f32), simt_gep(S, S->t_f32, a_src, mul(S, kc, c32(S, HEAD_KC))), NULL, 16);
	simt_store(S, xv, a_dst, NULL, 16);
	simt_sync(S);
	for (int kk = 0; kk < HEAD_KC / 4; kk++) {
		LLVMValueRef wv[2], av[GEMM_JT];
		for (int i = 0; i < 2; i++)
			wv[i] = simt_load(S, v4(S, S->t_f32),
					  simt_gep(S, S->t_f32, sm, add(S, mul(S, add(S, tr, c32(S, 32 * i)), c32(S, HEAD_STRIDE)), c32(S, 4 * kk))),
					  NULL, 16);
		for (int j = 0; j < GEMM_JT; j++)
			av[j] = simt_load(S, v4(S, S->t_f32),
					  simt_gep(S, S->t_f32, xs, add(S, mul(S, add(S, tt, c32(S, 4 * j)), c32(S, HEAD_STRIDE)), c32(S, 4 * kk))),
					  NULL, 16);
		for (int i = 0; i < 2; i++)
			for (int j = 0; j < GEMM_JT; j++) {
				LLVMValueRef a = simt_get(S, acc[i][j]);
				for (int e = 0; e < 4; e++)
					a = LLVMBuildFAdd(S->b, a, LLVMBuildFMul(S->b, elt(S, wv[i], e), elt(S, av[j], e), ""), "");
				simt_set(S, acc[i][j], a);
			}
	}
	simt_sync(S);
	simt_for_end(S, &F);
	for (int j = 0; j < GEMM_JT; j++) {
		LLVMValueRef t = add(S, t0, add(S, tt, c32(S, 4 * j)));
		SimtIf ti;
		simt_if(S, &ti, lt(S, t, nrows));
		for (int i = 0; i < 2; i++) {
			LLVMValueRef o = add(S, o0, add(S, tr, c32(S, 32 * i)));
			SimtIf oi;
			simt_if(S, &oi, lt(S, o, c32(S, V)));
			LLVMValueRef idx = LLVMBuildAdd(S->b, LLVMBuildMul(S->b, to64(S, t), simt_i64(S, V), ""), to64(S, o), "");
			simt_store(S, simt_get(S, acc[i][j]), y, idx, 4);
			simt_endif(S, &oi);
		}
		simt_endif(S, &ti);
	}
	simt_end(S);
}

/* The F16 head's GEMM on Metal through SIMD-group matrices: the same tile and launch as
 * build_head_gemm (64 vocabulary rows x 16 rows of x, 128 threads), 64 inputs at a time
 * staged in threadgroup memory: the weights' half bits as they are (rows of 72 halves), x
 * as float (rows of 68 floats: the batch head takes x unrounded, as head_prepare does).
 * SIMD-group g owns vocabulary rows 16g..16g+15: per 8 inputs two half weight blocks, two
 * transposed float x blocks, four float multiply-accumulates. The sums are float in the
 * hardware's order, as the dp4a-era kernel's are float in its own: the head is held to a
 * tolerance, not to the interpreter's bits. */
enum {
	HSG_KC = 64, HSG_WSTRIDE = HSG_KC + 8, HSG_XSTRIDE = HSG_KC + 4,
	HSG_X_OFF = GEMM_BO * HSG_WSTRIDE * 2,
	HSG_SMEM = HSG_X_OFF + GEMM_BT * HSG_XSTRIDE * 4,
};

_Static_assert(GEMM_BT * SGMM_C_STRIDE * 4 <= HSG_SMEM, "the epilogue's staging fits");

static void build_head_sgmm(Simt *S, const char *name, int64_t K, int64_t V, bool pick)
{
	BN_ASSERT(K % HSG_KC == 0);
	SimtParam p[5] = {SIMT_P_PTR, SIMT_P_PTR, SIMT_P_PTR, SIMT_P_I32, SIMT_P_PTR};
	simt_begin(S, name, p, pick ? 5 : 4);
	LLVMBuilderRef b = S->b;
	LLVMValueRef x = simt_param(S, 0), w = simt_param(S, 1), y = simt_param(S, 2), nrows = simt_param(S, 3);
	LLVMValueRef t0 = mul(S, simt_ctaid(S, 1), c32(S, GEMM_BT));
	/* uniform over the threadgroup: before any barrier */
	simt_return_if(S, LLVMBuildICmp(b, LLVMIntSGE, t0, nrows, ""));
	LLVMValueRef tid = simt_tid(S, 0), sm = simt_smem(S);
	LLVMValueRef xs = at(S, sm, c32(S, HSG_X_OFF));
	LLVMValueRef o0 = mul(S, simt_ctaid(S, 0), c32(S, GEMM_BO));
	LLVMTypeRef v8i16 = LLVMVectorType(S->t_i16, 8);
	/* staging: weight row ws_r, half ws_h of its 64 inputs (64 bytes); x row a_j, part a_p
	 * of 8 floats */
	LLVMValueRef ws_r = lshr(S, tid, c32(S, 1)), ws_h = band(S, tid, c32(S, 1));
	LLVMValueRef ws_o = imin(S, add(S, o0, ws_r), c32(S, V - 1));
	LLVMValueRef ws_src = at(S, w, LLVMBuildAdd(b, LLVMBuildMul(b, to64(S, ws_o), simt_i64(S, K * 2), ""),
						      to64(S, mul(S, ws_h, c32(S, 64))), ""));
	LLVMValueRef ws_dst = at(S, sm, add(S, mul(S, ws_r, c32(S, HSG_WSTRIDE * 2)), mul(S, ws_h, c32(S, 64))));
	LLVMValueRef a_j = lshr(S, tid, c32(S, 3)), a_p = band(S, tid, c32(S, 7));
	LLVMValueRef a_t = imin(S, add(S, t0, a_j), sub(S, nrows, c32(S, 1)));
	LLVMValueRef a_row = pick ? simt_load(S, S->t_i32, simt_param(S, 4), a_t, 4) : a_t;
	LLVMValueRef a_src = simt_gep(S, S->t_f32, x, LLVMBuildAdd(b, LLVMBuildMul(b, to64(S, a_row), simt_i64(S, K), ""),
								    to64(S, mul(S, a_p, c32(S, 8))), ""));
	LLVMValueRef a_dst = simt_gep(S, S->t_f32, xs, add(S, mul(S, a_j, c32(S, HSG_XSTRIDE)), mul(S, a_p, c32(S, 8))));
	LLVMValueRef sg = simt_warp(S);
	LLVMValueRef wblk[2], xblk[2], acc[2][2], wrow[2];
	for (int i = 0; i < 2; i++) {
		wblk[i] = simt_mat(S, SIMT_MAT_F16);
		xblk[i] = simt_mat(S, SIMT_MAT_F32);
		for (int j = 0; j < 2; j++) {
			acc[i][j] = simt_mat(S, SIMT_MAT_F32);
			simt_mat_fill(S, acc[i][j], 0.0f);
		}
		wrow[i] = at(S, sm, mul(S, add(S, mul(S, sg, c32(S, 16)), c32(S, 8 * i)), c32(S, HSG_WSTRIDE * 2)));
	}
	SimtFor F;
	LLVMValueRef kc = simt_for(S, &F, c32(S, 0), c32(S, K / HSG_KC), c32(S, 1));
	LLVMValueRef wsrc = at(S, ws_src, LLVMBuildMul(b, to64(S, kc), simt_i64(S, HSG_KC * 2), ""));
	for (int part = 0; part < 4; part++)
		simt_store(S, simt_load(S, v8i16, at(S, wsrc, c32(S, 16 * part)), NULL, 16),
			   at(S, ws_dst, c32(S, 16 * part)), NULL, 16);
	LLVMValueRef xsrc = simt_gep(S, S->t_f32, a_src, mul(S, kc, c32(S, HSG_KC)));
	for (int part = 0; part < 2; part++)
		simt_store(S, simt_load(S, v4(S, S->t_f32), simt_gep(S, S->t_f32, xsrc, c32(S, 4 * part)), NULL, 16),
			   simt_gep(S, S->t_f32, a_dst, c32(S, 4 * part)), NULL, 16);
	simt_sync(S);
	for (int kk = 0; kk < HSG_KC / 8; kk++) {
		for (int i = 0; i < 2; i++)
			simt_mat_load(S, wblk[i], at(S, wrow[i], c32(S, 2 * 8 * kk)), c32(S, HSG_WSTRIDE), false);
		for (int j = 0; j < 2; j++)
			simt_mat_load(S, xblk[j], simt_gep(S, S->t_f32, xs, c32(S, 8 * j * HSG_XSTRIDE + 8 * kk)),
				      c32(S, HSG_XSTRIDE), true);
		sgmm_mac(S, acc, wblk, xblk);
	}
	simt_sync(S);
	simt_for_end(S, &F);
	sgmm_store(S, acc, sg, sm);
	simt_sync(S);
	LLVMValueRef ol = band(S, tid, c32(S, GEMM_BO - 1)), tp = lshr(S, tid, c32(S, 6));
	LLVMValueRef o = add(S, o0, ol);
	SimtIf oi;
	simt_if(S, &oi, lt(S, o, c32(S, V)));
	for (int m = 0; m < GEMM_BT / 2; m++) {
		LLVMValueRef tl = add(S, tp, c32(S, 2 * m)), t = add(S, t0, tl);
		SimtIf ti;
		simt_if(S, &ti, lt(S, t, nrows));
		LLVMValueRef d = ldf(S, sm, add(S, mul(S, tl, c32(S, SGMM_C_STRIDE)), ol));
		LLVMValueRef idx = LLVMBuildAdd(b, LLVMBuildMul(b, to64(S, t), simt_i64(S, V), ""), to64(S, o), "");
		simt_store(S, d, y, idx, 4);
		simt_endif(S, &ti);
	}
	simt_endif(S, &oi);
	simt_end(S);
}

int cu_op_matmul(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e)
{
	const IrValue *wv = &c->g->values[nd->in[1]];
	IrDtype dt = wv->dtype;
	int64_t K = wv->ne[0], V = wv->ne[1];
	if (dt != IR_DT_F16 && dt != IR_DT_BF16 && dt != IR_DT_F32)
		return bn_err(e, BN_EUNSUPPORTED, "%s: the CUDA backend has no matmul for %s weights (F16, BF16 and F32 only)",
			      nd->name, ir_dtype_name(dt));
	/* K <= 12288: the GEMV keeps x in the 48 KiB of shared memory a launch gets by default */
	if (K <= 0 || V <= 0 || K % HEAD_KC != 0 || K > 12288 || V > INT32_MAX / 2)
		return bn_err(e, BN_EUNSUPPORTED, "%s: no CUDA kernel for a %s matmul of %lld x %lld",
			      nd->name, ir_dtype_name(dt), (long long)K, (long long)V);
	bool pick = nd->out[0] == c->g->logits, step = c->tmpl == 1;
	/* Metal, F16 weights: SIMD-group matrices (half weights, float x and sums) */
	bool sgmm = !step && c->S->flavor == SIMT_MSL && dt == IR_DT_F16 && K % HSG_KC == 0;
	char name[128], grid[96];
	snprintf(name, sizeof name, "mm_%s_k%lld_v%lld_%s%s", ir_dtype_name(dt), (long long)K, (long long)V,
		 step ? "gemv" : sgmm ? "sgmm" : "gemm", pick ? "_out" : "");
	CuLaunch *l;
	if (step) {
		if (!simt_has(c->S, name))
			build_head_gemv(c->S, name, dt, K, V, pick);
		/* grid: 32 rows per block (8 warps of 4 rows); x in shared memory */
		snprintf(grid, sizeof grid, "%lld", (long long)((V + HEAD_RPB - 1) / HEAD_RPB));
		if (!(l = cu_launch(L, nl, max, name, HEAD_THREADS, grid)))
			goto full;
		snprintf(l->smem, sizeof l->smem, "%lld", (long long)(K * 4));
	} else {
		if (!simt_has(c->S, name)) {
			if (sgmm)
				build_head_sgmm(c->S, name, K, V, pick);
			else
				build_head_gemm(c->S, name, dt, K, V, pick);
		}
		/* grid: 64 rows x 16 rows of x per block; blocks past n_out return at once */
		snprintf(grid, sizeof grid, "%lld", (long long)((V + GEMM_BO - 1) / GEMM_BO));
		if (!(l = cu_launch(L, nl, max, name, GEMM_THREADS, grid)))
			goto full;
		snprintf(l->grid[1], sizeof l->grid[1], "(n + %d) / %d", GEMM_BT - 1, GEMM_BT);
		snprintf(l->smem, sizeof l->smem, "%d", sgmm ? HSG_SMEM : HEAD_SMEM);
	}
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[0]));
	cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->in[1]));
	if (pick) {
		cu_arg(l, SIMT_P_PTR, "LOG");
		cu_arg(l, SIMT_P_I32, "n_out");
		cu_arg(l, SIMT_P_PTR, "OUTR");
	} else {
		cu_arg(l, SIMT_P_PTR, "%s", c->addr(c, nd->out[0]));
		cu_arg(l, SIMT_P_I32, "n");
	}
	return 0;
full:
	return bn_err(e, BN_EINVAL, "%s: too many kernel launches", nd->name);
}
