/* cg_cpu_rvv.c - the RISC-V vector (RVV 1.0) ternary matmul: I2_S weights in the GGUF
 * layout times int8 activations, vector-length agnostic (a vsetvl per loop step, nothing
 * assumes a VLEN), written with the v1.0 intrinsics of <riscv_vector.h>.
 *
 * A GGUF I2_S row is K/4 bytes; byte 32b + j holds elements 128b + j + 32p (p = 0..3) in
 * bits 7-2p..6-2p. The driver rearranges each token's activations once per call into four
 * planes of K/4 bytes (plane p, byte 32b + j: element 128b + 32p + j), so that byte i of
 * the row and byte i of every plane meet: the row streams through vle8, each shift-and-mask
 * gives the codes 0..2 that one plane multiplies (vwmul/vwmacc into int16: four products
 * of |.| <= 256 per lane), vwadd.wv adds them into int32 lanes, and vredsum ends the row.
 * The integer sum is exact, so y = ((float)(D - qsum) / s) * wscale is the interpreter's
 * float. The activation quantizer is here too, and the float kernels between the matmuls
 * (RMSNorm, attention, RoPE, the relu^2 GLU, the adds), each in the portable kernel's float
 * order; the rest of cpu-rvv is the portable C (docs/targets.md). */
#include "cg_cpu_em.h"

/* Tokens per tile of a multi-token forward: four int32 accumulators of LMUL 4 (e8m1 rows). */
enum { RVV_TT = 4 };

int rvv_common(Em *m, const IrNode *n)
{
	CgBuf *b;
	if (kern_for(m, n, "rvv_common", &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "#if !defined(__riscv)\n"
		     "#error \"the RVV kernels are RISC-V code: compile with a RISC-V C compiler "
		     "(bitnetc build --target cpu-rvv --cc clang-19 --cflags --target=riscv64-linux-gnu)\"\n"
		     "#elif !defined(__riscv_vector)\n"
		     "#error \"the RVV kernels need the vector extension: -march=rv64gcv\"\n"
		     "#elif !defined(__riscv_v_intrinsic) || __riscv_v_intrinsic < 12000\n"
		     "#error \"the RVV kernels need the v1.0 intrinsics of <riscv_vector.h> (__riscv_ "
		     "names): clang 16 or newer, gcc 13 or newer (e.g. --cc clang-19 --cflags "
		     "--target=riscv64-linux-gnu)\"\n"
		     "#endif\n"
		     "#include <riscv_vector.h>\n");
	return 0;
}

/* The codes of vl weight bytes at wr + i as four int8 vectors c0..c3 (plane order). */
static void rvv_codes(CgBuf *b, const char *ind, const char *l8)
{
	cg_printf(b, "%sconst vuint8%s_t v = __riscv_vle8_v_u8%s(wr + i, vl);\n"
		     "%sconst vint8%s_t c0 = __riscv_vreinterpret_v_u8%s_i8%s(__riscv_vsrl_vx_u8%s(v, 6, vl));\n",
		  ind, l8, l8, ind, l8, l8, l8, l8);
	for (int s = 1; s < 3; s++)
		cg_printf(b, "%sconst vint8%s_t c%d = __riscv_vreinterpret_v_u8%s_i8%s("
			     "__riscv_vand_vx_u8%s(__riscv_vsrl_vx_u8%s(v, %d, vl), 3, vl));\n",
			  ind, l8, s, l8, l8, l8, l8, 6 - 2 * s);
	cg_printf(b, "%sconst vint8%s_t c3 = __riscv_vreinterpret_v_u8%s_i8%s(__riscv_vand_vx_u8%s(v, 3, vl));\n",
		  ind, l8, l8, l8, l8);
}

/* The products of token t's planes (at q) and the codes, summed in int16 lanes: into h
 * (h = NULL: a fresh sum p). */
static void rvv_products(CgBuf *b, const char *ind, const char *l8, const char *l16,
			 const char *h, const char *vl)
{
	for (int s = 0; s < 4; s++) {
		if (s == 0 && !h)
			cg_printf(b, "%svint16%s_t p = __riscv_vwmul_vv_i16%s(c0, __riscv_vle8_v_i8%s(q, %s), %s);\n",
				  ind, l16, l16, l8, vl, vl);
		else
			cg_printf(b, "%s%s = __riscv_vwmacc_vv_i16%s(%s, c%d, __riscv_vle8_v_i8%s(q + %d * kb, %s), %s);\n",
				  ind, h ? h : "p", l16, h ? h : "p", s, l8, s, vl, vl);
	}
}

/* The micro kernel for tt tokens: name(wr, qp, kb, d), d[t] = sum over the row of code *
 * activation for token t (planes at qp + 4 * kb * t). The whole steps (VLMAX bytes, read
 * at run time: any VLEN) run with no tail; the last, partial step, if any, is summed on
 * its own (vwredsum) into the row's sum, so no accumulator needs a tail-undisturbed
 * policy. One token streams LMUL 2 and sums the products straight into int16 lanes
 * (vwmacc) for blocks of at most 32 steps, widened into int32 once per block: a step adds
 * four products code * q, code 0..2 and q -128..127, so -1024..1016 to a lane, and 32
 * steps stay within -32768..32512, int16's range. Several tokens keep LMUL 1 so that tt
 * int32 accumulators of LMUL 4 fit, and widen every step. */
static void rvv_micro(CgBuf *b, const char *name, int tt)
{
	bool one = tt == 1;
	const char *l8 = one ? "m2" : "m1", *l16 = one ? "m4" : "m2", *l32 = one ? "m8" : "m4";
	cg_printf(b, "static inline void %s(const uint8_t *wr, const int8_t *qp, int64_t kb, int32_t *d)\n"
		     "{\n"
		     "\tconst size_t vx = __riscv_vsetvlmax_e8%s(), vm = __riscv_vsetvlmax_e32%s();\n"
		     "\tconst int64_t full = kb - kb %% (int64_t)vx; /* the bytes of whole steps */\n",
		  name, l8, l32);
	for (int t = 0; t < tt; t++)
		cg_printf(b, "\tvint32%s_t a%d = __riscv_vmv_v_x_i32%s(0, vm);\n", l32, t, l32);
	const char *ind = "\t\t";
	if (one) {
		cg_printf(b, "\tfor (int64_t i0 = 0; i0 < full; i0 += 32 * (int64_t)vx) {\n"
			     "\t\tconst int64_t end = full - i0 < 32 * (int64_t)vx ? full : i0 + 32 * (int64_t)vx;\n"
			     "\t\tvint16m4_t h = __riscv_vmv_v_x_i16m4(0, vx);\n"
			     "\t\tfor (int64_t i = i0; i < end; i += (int64_t)vx) {\n"
			     "\t\t\tconst size_t vl = vx;\n"
			     "\t\t\tconst int8_t *q = qp + i;\n");
		ind = "\t\t\t";
	} else {
		cg_printf(b, "\tfor (int64_t i = 0; i < full; i += (int64_t)vx) {\n"
			     "\t\tconst size_t vl = vx;\n");
	}
	rvv_codes(b, ind, l8);
	if (one) {
		rvv_products(b, ind, l8, l16, "h", "vl");
		cg_printf(b, "\t\t}\n"
			     "\t\ta0 = __riscv_vwadd_wv_i32m8(a0, h, vm);\n"
			     "\t}\n");
	} else {
		for (int t = 0; t < tt; t++) {
			cg_printf(b, "\t\t{\n"
				     "\t\t\tconst int8_t *q = qp + %d * kb + i;\n", 4 * t);
			rvv_products(b, "\t\t\t", l8, l16, NULL, "vl");
			cg_printf(b, "\t\t\ta%d = __riscv_vwadd_wv_i32%s(a%d, p, vl);\n"
				     "\t\t}\n",
				  t, l32, t);
		}
		cg_printf(b, "\t}\n");
	}
	for (int t = 0; t < tt; t++)
		cg_printf(b, "\tvint32m1_t s%d = __riscv_vredsum_vs_i32%s_i32m1(a%d, __riscv_vmv_s_x_i32m1(0, 1), vm);\n",
			  t, l32, t);
	cg_printf(b, "\tif (full < kb) { /* the last, partial step */\n"
		     "\t\tconst int64_t i = full;\n"
		     "\t\tconst size_t vl = __riscv_vsetvl_e8%s((size_t)(kb - full));\n",
		  l8);
	rvv_codes(b, "\t\t", l8);
	for (int t = 0; t < tt; t++) {
		cg_printf(b, "\t\t{\n"
			     "\t\t\tconst int8_t *q = qp + %d * kb + i;\n", 4 * t);
		rvv_products(b, "\t\t\t", l8, l16, NULL, "vl");
		cg_printf(b, "\t\t\ts%d = __riscv_vwredsum_vs_i16%s_i32m1(p, s%d, vl);\n"
			     "\t\t}\n",
			  t, l16, t);
	}
	cg_printf(b, "\t}\n");
	for (int t = 0; t < tt; t++)
		cg_printf(b, "\td[%d] = __riscv_vmv_x_s_i32m1_i32(s%d);\n", t, t);
	cg_printf(b, "}\n");
}

int emit_tmm_rvv(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn)
{
	int tiles = m->nt > 1 ? RVV_TT : 1;
	if (rvv_common(m, n))
		return m->e->code;
	char mk[RVV_TT][48];
	for (int tt = 1; tt <= tiles; tt++) {
		snprintf(mk[tt - 1], sizeof mk[tt - 1], "rvv_i2s_t%d", tt);
		CgBuf *b;
		if (kern_for(m, n, mk[tt - 1], &b))
			return m->e->code;
		if (b)
			rvv_micro(b, mk[tt - 1], tt);
	}
	snprintf(driver, dn, "tmm_i2sv_k%" PRId64 "_n%" PRId64 "_t%d", k, nr, tiles);
	return tmm_planes_driver(m, n, driver, k, nr, tiles, mk, NULL);
}

void rvv_quant_tok_body(CgBuf *b, const char *name, int64_t k)
{
	/* amax: |x| never rounds, and the largest float widened is the largest widened float;
	 * vfredmax, like amax = a > amax ? a : amax, never lets a NaN win. vfcvt.x.f rounds with
	 * the dynamic mode, to nearest even as rintf, and saturates to int32, so the integer
	 * clamp gives the float clamp's value; the narrowings then drop nothing. */
	cg_printf(b, "static void %s(const float *x, int8_t *q, float *s, int n)\n{\n"
		     "\tenum { K = %" PRId64 " };\n"
		     "\tfor (int t = 0; t < n; t++) {\n"
		     "\t\tconst float *xr = x + (int64_t)t * K;\n"
		     "\t\tint8_t *qr = q + (int64_t)t * K;\n"
		     "\t\tvfloat32m1_t mx = __riscv_vfmv_s_f_f32m1(0.0f, 1);\n"
		     "\t\tfor (int i = 0; i < K;) {\n"
		     "\t\t\tconst size_t vl = __riscv_vsetvl_e32m4((size_t)(K - i));\n"
		     "\t\t\tmx = __riscv_vfredmax_vs_f32m4_f32m1(__riscv_vfabs_v_f32m4(__riscv_vle32_v_f32m4(xr + i, vl), vl), mx, vl);\n"
		     "\t\t\ti += (int)vl;\n"
		     "\t\t}\n"
		     "\t\tdouble amax = fmax((double)__riscv_vfmv_f_s_f32m1_f32(mx), 1e-5);\n"
		     "\t\tfloat st = (float)(127.0 / amax);\n"
		     "\t\tfor (int i = 0; i < K;) {\n"
		     "\t\t\tconst size_t vl = __riscv_vsetvl_e32m4((size_t)(K - i));\n"
		     "\t\t\tvint32m4_t r = __riscv_vfcvt_x_f_v_i32m4(__riscv_vfmul_vf_f32m4(__riscv_vle32_v_f32m4(xr + i, vl), st, vl), vl);\n"
		     "\t\t\tr = __riscv_vmin_vx_i32m4(__riscv_vmax_vx_i32m4(r, -128, vl), 127, vl);\n"
		     "\t\t\t__riscv_vse8_v_i8m1(qr + i, __riscv_vncvt_x_x_w_i8m1(__riscv_vncvt_x_x_w_i16m2(r, vl), vl), vl);\n"
		     "\t\t\ti += (int)vl;\n"
		     "\t\t}\n"
		     "\t\ts[t] = st;\n"
		     "\t}\n}\n",
		  name, k);
}

/* ---- the float kernels: norms, attention, rope, the GLU and the residual adds ---------- */

/* Helpers for the float kernels (once per file, after rvv_common): rvv_h2f_m1/_m2(u, vl),
 * f16 bits zero-extended to 32 as floats, with integer and float ops of rv64gcv (the
 * vfwcvt from f16 needs Zvfhmin, which rv64gcv lacks): the magnitude's bits moved into
 * float's place and scaled by 2^112 (exact for normal and subnormal halves: RVV has no
 * flush to zero), infinities and NaNs given the largest exponent, then the sign, so the
 * prelude's f16_to_f32 bit for bit. */
int rvv_float_common(Em *m, const IrNode *n)
{
	CgBuf *b;
	if (rvv_common(m, n) || kern_for(m, n, "rvv_h2f", &b))
		return m->e->code;
	if (!b)
		return 0;
	static const struct {
		const char *l, *mb;
	} lm[] = {{"m1", "32"}, {"m2", "16"}};
	for (int i = 0; i < 2; i++) {
		const char *l = lm[i].l;
		cg_printf(b, "static inline vfloat32%s_t rvv_h2f_%s(vuint32%s_t u, size_t vl)\n{\n"
			     "\tvuint32%s_t em = __riscv_vand_vx_u32%s(u, 0x7fff, vl);\n",
			  l, l, l, l, l);
		cg_printf(b, "\tvuint32%s_t m = __riscv_vreinterpret_v_f32%s_u32%s(__riscv_vfmul_vf_f32%s("
			     "__riscv_vreinterpret_v_u32%s_f32%s(__riscv_vsll_vx_u32%s(em, 13, vl)), 0x1p112f, vl));\n",
			  l, l, l, l, l, l, l);
		cg_printf(b, "\tvbool%s_t big = __riscv_vmsgtu_vx_u32%s_b%s(em, 0x7bff, vl);\n"
			     "\tm = __riscv_vor_vx_u32%s_mu(big, m, m, 0x7f800000, vl);\n",
			  lm[i].mb, l, lm[i].mb, l);
		cg_printf(b, "\tm = __riscv_vor_vv_u32%s(m, __riscv_vsll_vx_u32%s(__riscv_vand_vx_u32%s(u, 0x8000, vl), 16, vl), vl);\n"
			     "\treturn __riscv_vreinterpret_v_u32%s_f32%s(m);\n"
			     "}\n",
			  l, l, l, l, l);
	}
	return 0;
}

/* RMSNorm (add: x + r stored into xs first, as the portable add_rmsnorm): the squares
 * rounded to float, widened and summed in element order by the ordered reduction
 * vfwredosum (each add rounded in double, as the interpreter's loop); then x * scale and
 * a separate * w, rounded as the portable kernel rounds them: the interpreter's bits. The
 * ordered reduction is sequential in hardware, which the norm's O(K) per token affords. */
void rvv_rmsnorm_body(CgBuf *b, const char *name, int64_t k, bool add)
{
	rmsnorm_sig(b, name, add);
	if (add)
		cg_printf(b, "\tenum { K = %" PRId64 " };\n"
			     "\tfor (int t = 0; t < n; t++) {\n"
			     "\t\tconst float *ar = x + (int64_t)t * K, *rr = r + (int64_t)t * K;\n"
			     "\t\tfloat *xr = xs + (int64_t)t * K;\n"
			     "\t\tfloat *yr = y + (int64_t)t * K;\n"
			     "\t\tvfloat64m1_t s = __riscv_vfmv_s_f_f64m1(0.0, 1);\n"
			     "\t\tfor (int i = 0; i < K;) {\n"
			     "\t\t\tconst size_t vl = __riscv_vsetvl_e32m4((size_t)(K - i));\n"
			     "\t\t\tvfloat32m4_t v = __riscv_vfadd_vv_f32m4(__riscv_vle32_v_f32m4(ar + i, vl), __riscv_vle32_v_f32m4(rr + i, vl), vl);\n"
			     "\t\t\t__riscv_vse32_v_f32m4(xr + i, v, vl);\n",
			  k);
	else
		cg_printf(b, "\tenum { K = %" PRId64 " };\n"
			     "\tfor (int t = 0; t < n; t++) {\n"
			     "\t\tconst float *xr = x + (int64_t)t * K;\n"
			     "\t\tfloat *yr = y + (int64_t)t * K;\n"
			     "\t\tvfloat64m1_t s = __riscv_vfmv_s_f_f64m1(0.0, 1);\n"
			     "\t\tfor (int i = 0; i < K;) {\n"
			     "\t\t\tconst size_t vl = __riscv_vsetvl_e32m4((size_t)(K - i));\n"
			     "\t\t\tvfloat32m4_t v = __riscv_vle32_v_f32m4(xr + i, vl);\n",
			  k);
	cg_printf(b, "\t\t\ts = __riscv_vfwredosum_vs_f32m4_f64m1(__riscv_vfmul_vv_f32m4(v, v, vl), s, vl);\n"
		     "\t\t\ti += (int)vl;\n"
		     "\t\t}\n"
		     "\t\tfloat mean = (float)(__riscv_vfmv_f_s_f64m1_f64(s) / (double)K);\n"
		     "\t\tfloat scale = 1.0f / sqrtf(mean + eps);\n"
		     "\t\tfor (int i = 0; i < K;) {\n"
		     "\t\t\tconst size_t vl = __riscv_vsetvl_e32m4((size_t)(K - i));\n"
		     "\t\t\tvfloat32m4_t v = __riscv_vfmul_vf_f32m4(__riscv_vle32_v_f32m4(xr + i, vl), scale, vl);\n"
		     "\t\t\tif (w)\n"
		     "\t\t\t\tv = __riscv_vfmul_vv_f32m4(v, __riscv_vle32_v_f32m4(w + i, vl), vl);\n"
		     "\t\t\t__riscv_vse32_v_f32m4(yr + i, v, vl);\n"
		     "\t\t\ti += (int)vl;\n"
		     "\t\t}\n"
		     "\t}\n}\n");
}

/* Element at of every key in the step, as floats (from kj + at, a row of KW halves apart),
 * then the end of the vfmacc that takes it. */
static void rvv_key_el(CgBuf *b, const char *at)
{
	cg_printf(b, "rvv_h2f_m1(__riscv_vzext_vf2_u32m1(__riscv_vlse16_v_u16mf2(kj + %s, "
		     "(ptrdiff_t)(2 * KW), vl), vl), vl), vl);\n", at);
}

/* Attention as attn_body computes it, the interpreter's bits. q.K runs keys across the
 * lanes (as many as a vector of floats at LMUL 1 holds: any VLEN): the keys' elements i
 * are read with a strided load (vlse16, one K row apart), converted (rvv_h2f) and
 * multiply-added into sixteen float accumulators l[i % 16] (vfmacc: the product of two
 * f16 values is exact in float, so fused or not the same sum), reduced by the
 * interpreter's tree; the scores' max by vfredmax (fmaxf's: a NaN never wins). The softmax
 * is the prelude's softmax_row (scalar here). .V runs dimensions across the lanes (float
 * accumulators at LMUL 2, vfmacc: fused, as the interpreter's fmaf), keys in order. */
void rvv_attn_body(CgBuf *b, const char *name, int64_t nh, int64_t nkv, int64_t hd)
{
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst AttnArg *a = arg;\n"
		     "\tenum { NH = %" PRId64 ", HD = %" PRId64 ", KW = %" PRId64 ", QW = NH * HD, GROUP = NH / %" PRId64 " };\n"
		     "\tfloat qh[HD];\n"
		     "\tfor (int h = NH * ith / nth; h < NH * (ith + 1) / nth; h++) {\n"
		     "\t\tfloat *w = a->scores + (int64_t)h * a->n_ctx;\n"
		     "\t\tconst uint16_t *Kh = a->K + (h / GROUP) * HD, *Vh = a->V + (h / GROUP) * HD;\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tint64_t n_keys = (int64_t)a->pos[t] + 1;\n"
		     "\t\t\tint64_t sb = a->seq ? (int64_t)a->seq[t] * a->n_ctx * KW : 0;\n"
		     "\t\t\tconst uint16_t *Kg = Kh + sb, *Vg = Vh + sb;\n"
		     "\t\t\tfor (int i = 0; i < HD; i++)\n"
		     "\t\t\t\tqh[i] = round_f16(a->q[(int64_t)t * QW + h * HD + i]);\n"
		     "\t\t\tvfloat32m1_t vmx = __riscv_vfmv_s_f_f32m1(-INFINITY, 1);\n"
		     "\t\t\tfor (int64_t j = 0; j < n_keys;) {\n"
		     "\t\t\t\tconst size_t vl = __riscv_vsetvl_e32m1((size_t)(n_keys - j));\n"
		     "\t\t\t\tconst uint16_t *kj = Kg + j * KW;\n",
		  name, nh, hd, nkv * hd, nkv);
	for (int l = 0; l < 16; l++)
		cg_printf(b, "\t\t\t\tvfloat32m1_t l%d = __riscv_vfmv_v_f_f32m1(0.0f, vl);\n", l);
	if (hd >= 16) {
		cg_printf(b, "\t\t\t\tfor (int i = 0; i < %" PRId64 "; i += 16) {\n", hd / 16 * 16);
		for (int l = 0; l < 16; l++) {
			char at[16];
			snprintf(at, sizeof at, "i + %d", l);
			cg_printf(b, "\t\t\t\t\tl%d = __riscv_vfmacc_vf_f32m1(l%d, qh[i + %d], ", l, l, l);
			rvv_key_el(b, at);
		}
		cg_printf(b, "\t\t\t\t}\n");
	}
	for (int64_t i = hd / 16 * 16; i < hd; i++) { /* the head's last elements, if HD % 16 */
		char at[24];
		snprintf(at, sizeof at, "%" PRId64, i);
		cg_printf(b, "\t\t\t\tl%d = __riscv_vfmacc_vf_f32m1(l%d, qh[%" PRId64 "], ", (int)(i % 16),
			  (int)(i % 16), i);
		rvv_key_el(b, at);
	}
	for (int l = 0; l < 8; l++)
		cg_printf(b, "\t\t\t\tl%d = __riscv_vfadd_vv_f32m1(l%d, l%d, vl);\n", l, l, l + 8);
	cg_printf(b, "\t\t\t\tvfloat32m1_t d = __riscv_vfadd_vv_f32m1(\n"
		     "\t\t\t\t\t__riscv_vfadd_vv_f32m1(__riscv_vfadd_vv_f32m1(l0, l4, vl), __riscv_vfadd_vv_f32m1(l2, l6, vl), vl),\n"
		     "\t\t\t\t\t__riscv_vfadd_vv_f32m1(__riscv_vfadd_vv_f32m1(l1, l5, vl), __riscv_vfadd_vv_f32m1(l3, l7, vl), vl), vl);\n"
		     "\t\t\t\tvfloat32m1_t s = __riscv_vfmul_vf_f32m1(d, a->scale, vl);\n"
		     "\t\t\t\t__riscv_vse32_v_f32m1(w + j, s, vl);\n"
		     "\t\t\t\tvmx = __riscv_vfredmax_vs_f32m1_f32m1(s, vmx, vl);\n"
		     "\t\t\t\tj += (int64_t)vl;\n"
		     "\t\t\t}\n"
		     "\t\t\tfloat mx = __riscv_vfmv_f_s_f32m1_f32(vmx);\n"
		     "\t\t\tint step = a->step ? a->step[t] != 0 : a->n == 1;\n"
		     "\t\t\tsoftmax_row(w, n_keys, mx, step);\n"
		     "\t\t\tfloat *o = a->y + (int64_t)t * QW + h * HD;\n"
		     "\t\t\tfor (int i = 0; i < HD;) {\n"
		     "\t\t\t\tconst size_t vl = __riscv_vsetvl_e32m2((size_t)(HD - i));\n"
		     "\t\t\t\tvfloat32m2_t acc = __riscv_vfmv_v_f_f32m2(0.0f, vl);\n"
		     "\t\t\t\tfor (int64_t j = 0; j < n_keys; j++)\n"
		     "\t\t\t\t\tacc = __riscv_vfmacc_vf_f32m2(acc, w[j], rvv_h2f_m2(__riscv_vzext_vf2_u32m2("
		     "__riscv_vle16_v_u16m1(Vg + j * KW + i, vl), vl), vl), vl);\n"
		     "\t\t\t\t__riscv_vse32_v_f32m2(o + i, acc, vl);\n"
		     "\t\t\t\ti += (int)vl;\n"
		     "\t\t\t}\n"
		     "\t\t}\n"
		     "\t}\n}\n");
}

/* RoPE as the portable kernel: the angles' cosines and sines in scalar float (libm), in
 * the same order; the rotation in vectors, a product each and then the difference or the
 * sum (no fused multiply-add): the same roundings. neox pairs i and i + HALF (unit
 * stride); normal pairs 2i and 2i + 1 (stride 2). */
void rvv_rope_body(CgBuf *b, const char *name, int64_t row, int64_t hd, int64_t half, bool neox)
{
	cg_printf(b, "static void %s(const float *x, const float *ff, float *y, int n, const int32_t *pos, float theta_scale)\n{\n"
		     "\tenum { ROW = %" PRId64 ", HD = %" PRId64 ", HALF = %" PRId64 " };\n"
		     "\tfloat cs[HALF], sn[HALF];\n"
		     "\tmemcpy(y, x, (size_t)n * ROW * sizeof(float));\n"
		     "\tfor (int t = 0; t < n; t++) {\n"
		     "\t\tfloat theta = (float)pos[t];\n"
		     "\t\tfor (int i = 0; i < HALF; i++) {\n"
		     "\t\t\tfloat th = ff ? theta / ff[i] : theta;\n"
		     "\t\t\tcs[i] = cosf(th);\n"
		     "\t\t\tsn[i] = sinf(th);\n"
		     "\t\t\ttheta *= theta_scale;\n"
		     "\t\t}\n"
		     "\t\tfor (int h = 0; h < ROW / HD; h++) {\n"
		     "\t\t\tconst float *xh = x + (int64_t)t * ROW + h * HD;\n"
		     "\t\t\tfloat *yh = y + (int64_t)t * ROW + h * HD;\n"
		     "\t\t\tfor (int i = 0; i < HALF;) {\n"
		     "\t\t\t\tconst size_t vl = __riscv_vsetvl_e32m4((size_t)(HALF - i));\n"
		     "\t\t\t\tvfloat32m4_t cv = __riscv_vle32_v_f32m4(cs + i, vl), sv = __riscv_vle32_v_f32m4(sn + i, vl);\n",
		  name, row, hd, half);
	if (neox)
		cg_printf(b, "\t\t\t\tvfloat32m4_t x0 = __riscv_vle32_v_f32m4(xh + i, vl), x1 = __riscv_vle32_v_f32m4(xh + HALF + i, vl);\n");
	else
		cg_printf(b, "\t\t\t\tvfloat32m4_t x0 = __riscv_vlse32_v_f32m4(xh + 2 * i, 8, vl), x1 = __riscv_vlse32_v_f32m4(xh + 2 * i + 1, 8, vl);\n");
	cg_printf(b, "\t\t\t\tvfloat32m4_t y0 = __riscv_vfsub_vv_f32m4(__riscv_vfmul_vv_f32m4(x0, cv, vl), __riscv_vfmul_vv_f32m4(x1, sv, vl), vl);\n"
		     "\t\t\t\tvfloat32m4_t y1 = __riscv_vfadd_vv_f32m4(__riscv_vfmul_vv_f32m4(x0, sv, vl), __riscv_vfmul_vv_f32m4(x1, cv, vl), vl);\n");
	if (neox)
		cg_printf(b, "\t\t\t\t__riscv_vse32_v_f32m4(yh + i, y0, vl);\n"
			     "\t\t\t\t__riscv_vse32_v_f32m4(yh + HALF + i, y1, vl);\n");
	else
		cg_printf(b, "\t\t\t\t__riscv_vsse32_v_f32m4(yh + 2 * i, 8, y0, vl);\n"
			     "\t\t\t\t__riscv_vsse32_v_f32m4(yh + 2 * i + 1, 8, y1, vl);\n");
	cg_printf(b, "\t\t\t\ti += (int)vl;\n"
		     "\t\t\t}\n"
		     "\t\t}\n"
		     "\t}\n}\n");
}

/* relu(g)^2 * u: vfmax(g, +0) is g > 0 ? g : +0 (RVV's fmax orders -0 below +0 and never
 * lets a NaN win), squared and multiplied in float as the portable kernel. */
void rvv_relu2_glu_body(CgBuf *b, const char *name, int64_t k)
{
	cg_printf(b, "static void %s(const float *g, const float *u, float *y, int n)\n{\n"
		     "\tconst int64_t total = (int64_t)n * %" PRId64 ";\n"
		     "\tfor (int64_t i = 0; i < total;) {\n"
		     "\t\tconst size_t vl = __riscv_vsetvl_e32m8((size_t)(total - i));\n"
		     "\t\tvfloat32m8_t a = __riscv_vfmax_vf_f32m8(__riscv_vle32_v_f32m8(g + i, vl), 0.0f, vl);\n"
		     "\t\ta = __riscv_vfmul_vv_f32m8(a, a, vl);\n"
		     "\t\t__riscv_vse32_v_f32m8(y + i, __riscv_vfmul_vv_f32m8(a, __riscv_vle32_v_f32m8(u + i, vl), vl), vl);\n"
		     "\t\ti += (int64_t)vl;\n"
		     "\t}\n}\n",
		  name, k);
}

/* a (+|*) b per element (form ""), with one row of b (form "_row") or one scalar ("_b1"). */
void rvv_binary_body(CgBuf *b, const char *name, int64_t row, const char *form, bool mul)
{
	const char *op = mul ? "vfmul" : "vfadd";
	bool b1 = strcmp(form, "_b1") == 0, brow = strcmp(form, "_row") == 0;
	cg_printf(b, "static void %s(const float *a, const float *b, float *y, int n)\n{\n"
		     "\tenum { ROW = %" PRId64 " };\n"
		     "\tfor (int64_t t = 0; t < n; t++)\n"
		     "\t\tfor (int64_t i = 0; i < ROW;) {\n"
		     "\t\t\tconst size_t vl = __riscv_vsetvl_e32m8((size_t)(ROW - i));\n"
		     "\t\t\tvfloat32m8_t x = __riscv_vle32_v_f32m8(a + t * ROW + i, vl);\n",
		  name, row);
	if (b1)
		cg_printf(b, "\t\t\tx = __riscv_%s_vf_f32m8(x, b[0], vl);\n", op);
	else
		cg_printf(b, "\t\t\tx = __riscv_%s_vv_f32m8(x, __riscv_vle32_v_f32m8(b + %s, vl), vl);\n",
			  op, brow ? "i" : "t * ROW + i");
	cg_printf(b, "\t\t\t__riscv_vse32_v_f32m8(y + t * ROW + i, x, vl);\n"
		     "\t\t\ti += (int64_t)vl;\n"
		     "\t\t}\n"
		     "}\n");
}
