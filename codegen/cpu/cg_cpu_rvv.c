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
 * float. The activation quantizer is here too; everything else on cpu-rvv is the portable
 * C (docs/targets.md). */
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
	CgBuf *b;
	if (kern_for(m, n, driver, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 ", KB = K / 4, TT = %d };\n"
		     "%s"
		     "\tint64_t lo = (int64_t)N * ith / nth, hi = (int64_t)N * (ith + 1) / nth;\n"
		     "\tif (lo >= hi)\n"
		     "\t\treturn;\n"
		     "\tint8_t qp[TT * K]; /* the tile's tokens, each as four planes of KB bytes */\n"
		     "\tint32_t d[TT];\n"
		     "\tfor (int t0 = 0; t0 < a->n; t0 += TT) {\n"
		     "\t\tint tt = a->n - t0 < TT ? a->n - t0 : TT;\n"
		     "\t\tfor (int t = 0; t < tt; t++)\n"
		     "\t\t\tfor (int bl = 0; bl < K / 128; bl++)\n"
		     "\t\t\t\tfor (int p = 0; p < 4; p++)\n"
		     "\t\t\t\t\tmemcpy(qp + t * K + p * KB + 32 * bl,\n"
		     "\t\t\t\t\t       a->q + (int64_t)(t0 + t) * K + 128 * bl + 32 * p, 32);\n"
		     "\t\tfor (int64_t o = lo; o < hi; o++) {\n"
		     "\t\t\tconst uint8_t *wr = a->w + o * KB;\n",
		  driver, k, nr, tiles, tmm_prologue);
	if (tiles == 1) {
		cg_printf(b, "\t\t\t%s(wr, qp, KB, d);\n", mk[0]);
	} else {
		cg_printf(b, "\t\t\tswitch (tt) {\n");
		for (int tt = 1; tt <= tiles; tt++)
			cg_printf(b, "\t\t\tcase %d: %s(wr, qp, KB, d); break;\n", tt, mk[tt - 1]);
		cg_printf(b, "\t\t\t}\n");
	}
	cg_printf(b, "\t\t\tfor (int t = 0; t < tt; t++)\n");
	tmm_epilogue(b, "\t\t\t\t", "a->y[(int64_t)(t0 + t) * N + o]", "d[t]", "qsum[t0 + t]",
		     "a->s[t0 + t]");
	cg_printf(b, "\t\t}\n"
		     "\t}\n"
		     "}\n");
	return 0;
}

int emit_tmm_rvv_call(Em *m, const IrNode *n, int64_t k, int64_t nr)
{
	char drv[96], q[64], s[64], y[64];
	if (emit_tmm_rvv(m, n, k, nr, drv, sizeof drv))
		return m->e->code;
	m->kcount[CG_KERN_SIMD]++;
	cg_printf(m->fwd, "\t{\n\t\tTmmArg a = {W + %" PRIu64 ", %s, %s, %s, n};\n"
			  "\t\tpool_run(st, %s, &a);\n\t}\n",
		  m->woff[n->in[2]], ref(m, n->in[0], "int8_t", q, sizeof q),
		  ref(m, n->in[1], "float", s, sizeof s), ref(m, n->out[0], "float", y, sizeof y),
		  drv);
	return 0;
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
