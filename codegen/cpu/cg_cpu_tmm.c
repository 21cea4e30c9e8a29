/* cg_cpu_tmm.c - ternary matmul kernels (I2_S, TQ1_0, TQ2_0 weights times int8 activations),
 * generated per weight shape and layout. */
#include "cg_cpu_em.h"

/* I2_S: D = sum(code*q) - sum(q) exactly in int32 (code = w + 1), y = ((float)D / s) * wscale.
 * Byte 32b + j of a row holds elements 128b + j, +32, +64, +96 in bits 7:6, 5:4, 3:2, 1:0. */
static void tmm_i2s_body(CgBuf *b, const char *name, int64_t k, int64_t nr)
{
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 " };\n"
		     "\tfloat wscale;\n"
		     "\tmemcpy(&wscale, a->w + (uint64_t)K * N / 4, sizeof wscale);\n"
		     "\tint32_t qsum[MAX_BATCH];\n"
		     "\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\tint32_t s = 0;\n"
		     "\t\tfor (int i = 0; i < K; i++)\n"
		     "\t\t\ts += a->q[(int64_t)t * K + i];\n"
		     "\t\tqsum[t] = s;\n"
		     "\t}\n"
		     "\tint64_t lo = (int64_t)N * ith / nth, hi = (int64_t)N * (ith + 1) / nth;\n"
		     "\tint8_t c[K]; /* a row's codes 0..2, decoded once for a multi-token call */\n"
		     "\tfor (int64_t o = lo; o < hi; o++) {\n"
		     "\t\tconst uint8_t *wr = a->w + o * (K / 4);\n"
		     "\t\tif (a->n == 1) {\n"
		     "\t\t\tint32_t acc[32] = {0};\n"
		     "\t\t\tfor (int bl = 0; bl < K / 128; bl++) {\n"
		     "\t\t\t\tconst uint8_t *p = wr + 32 * bl;\n"
		     "\t\t\t\tconst int8_t *qb = a->q + 128 * bl;\n"
		     "\t\t\t\tfor (int j = 0; j < 32; j++) {\n"
		     "\t\t\t\t\tint v = p[j];\n"
		     "\t\t\t\t\tacc[j] += (v >> 6) * qb[j] + ((v >> 4) & 3) * qb[32 + j] +\n"
		     "\t\t\t\t\t\t  ((v >> 2) & 3) * qb[64 + j] + (v & 3) * qb[96 + j];\n"
		     "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\t\tint32_t d = -qsum[0];\n"
		     "\t\t\tfor (int j = 0; j < 32; j++)\n"
		     "\t\t\t\td += acc[j];\n"
		     "\t\t\ta->y[o] = ((float)d / a->s[0]) * wscale;\n"
		     "\t\t\tcontinue;\n"
		     "\t\t}\n"
		     "\t\tfor (int bl = 0; bl < K / 128; bl++)\n"
		     "\t\t\tfor (int j = 0; j < 32; j++) {\n"
		     "\t\t\t\tint v = wr[32 * bl + j];\n"
		     "\t\t\t\tc[128 * bl + j] = (int8_t)(v >> 6);\n"
		     "\t\t\t\tc[128 * bl + 32 + j] = (int8_t)((v >> 4) & 3);\n"
		     "\t\t\t\tc[128 * bl + 64 + j] = (int8_t)((v >> 2) & 3);\n"
		     "\t\t\t\tc[128 * bl + 96 + j] = (int8_t)(v & 3);\n"
		     "\t\t\t}\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tconst int8_t *q = a->q + (int64_t)t * K;\n"
		     "\t\t\tint32_t d = -qsum[t];\n"
		     "\t\t\tfor (int i = 0; i < K; i++)\n"
		     "\t\t\t\td += c[i] * q[i];\n"
		     "\t\t\ta->y[(int64_t)t * N + o] = ((float)d / a->s[t]) * wscale;\n"
		     "\t\t}\n"
		     "\t}\n}\n",
		  name, k, nr);
}

/* TQ1_0/TQ2_0 with Q8_K activations in the reference's float order: per block 8 int32
 * lanes (lane L: codes*q over elements with e%32 in 4L..4L+3, minus q[32L..32L+31]),
 * each times d_a*d_w, summed per lane over blocks, then ((0+4)+(2+6)) + ((1+5)+(3+7)).
 * A row is decoded to codes 0..2 once and reused for every token. */
static void tmm_tq_body(CgBuf *b, const char *name, IrDtype dt, int64_t k, int64_t nr)
{
	bool tq1 = dt == IR_DT_TQ1_0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 ", NB = K / 256, BB = %d };\n"
		     "\tstatic const uint8_t pow3[5] = {1, 3, 9, 27, 81};\n"
		     "\t(void)pow3;\n"
		     "\tint32_t qls[MAX_BATCH][NB][8];\n"
		     "\tfor (int t = 0; t < a->n; t++)\n"
		     "\t\tfor (int bl = 0; bl < NB; bl++)\n"
		     "\t\t\tfor (int L = 0; L < 8; L++) {\n"
		     "\t\t\t\tint32_t s = 0;\n"
		     "\t\t\t\tfor (int i = 0; i < 32; i++)\n"
		     "\t\t\t\t\ts += a->q[(int64_t)t * K + 256 * bl + 32 * L + i];\n"
		     "\t\t\t\tqls[t][bl][L] = s;\n"
		     "\t\t\t}\n"
		     "\tint64_t lo = (int64_t)N * ith / nth, hi = (int64_t)N * (ith + 1) / nth;\n"
		     "\tuint8_t codes[K];\n"
		     "\tfloat wd[NB];\n"
		     "\tfor (int64_t o = lo; o < hi; o++) {\n"
		     "\t\tconst uint8_t *wr = a->w + o * (NB * BB);\n"
		     "\t\tfor (int bl = 0; bl < NB; bl++) {\n"
		     "\t\t\tconst uint8_t *p = wr + bl * BB;\n"
		     "\t\t\tuint8_t *c = codes + 256 * bl;\n",
		  name, k, nr, tq1 ? 54 : 66);
	if (tq1)
		/* five trits per byte, first most significant: trit n = ((uint8)(B*3^n) * 3) >> 8 */
		cg_printf(b, "\t\t\tfor (int e = 0; e < 5; e++)\n"
			     "\t\t\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\t\t\tc[32 * e + i] = (uint8_t)(((uint8_t)(p[i] * pow3[e]) * 3) >> 8);\n"
			     "\t\t\tfor (int e = 0; e < 5; e++)\n"
			     "\t\t\t\tfor (int i = 0; i < 16; i++)\n"
			     "\t\t\t\t\tc[160 + 16 * e + i] = (uint8_t)(((uint8_t)(p[32 + i] * pow3[e]) * 3) >> 8);\n"
			     "\t\t\tfor (int e = 0; e < 4; e++)\n"
			     "\t\t\t\tfor (int i = 0; i < 4; i++)\n"
			     "\t\t\t\t\tc[240 + 4 * e + i] = (uint8_t)(((uint8_t)(p[48 + i] * pow3[e]) * 3) >> 8);\n"
			     "\t\t\twd[bl] = f16_to_f32(rd16(p + 52));\n");
	else
		/* element 128j + 32s + m in qs[32j + m] bits 2s..2s+1 */
		cg_printf(b, "\t\t\tfor (int j = 0; j < 2; j++)\n"
			     "\t\t\t\tfor (int s = 0; s < 4; s++)\n"
			     "\t\t\t\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\t\t\t\tc[128 * j + 32 * s + i] = (uint8_t)((p[32 * j + i] >> (2 * s)) & 3);\n"
			     "\t\t\twd[bl] = f16_to_f32(rd16(p + 64));\n");
	cg_printf(b, "\t\t}\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tconst int8_t *q = a->q + (int64_t)t * K;\n"
		     "\t\t\tfloat acc[8] = {0};\n"
		     "\t\t\tfor (int bl = 0; bl < NB; bl++) {\n"
		     "\t\t\t\tconst uint8_t *c = codes + 256 * bl;\n"
		     "\t\t\t\tconst int8_t *qb = q + 256 * bl;\n"
		     "\t\t\t\tint32_t lm[32] = {0};\n"
		     "\t\t\t\tfor (int g = 0; g < 8; g++)\n"
		     "\t\t\t\t\tfor (int i = 0; i < 32; i++)\n"
		     "\t\t\t\t\t\tlm[i] += c[32 * g + i] * qb[32 * g + i];\n"
		     "\t\t\t\tfloat d = a->s[(int64_t)t * NB + bl] * wd[bl];\n"
		     "\t\t\t\tfor (int L = 0; L < 8; L++) {\n"
		     "\t\t\t\t\tint32_t lane = lm[4 * L] + lm[4 * L + 1] + lm[4 * L + 2] + lm[4 * L + 3] - qls[t][bl][L];\n"
		     "\t\t\t\t\tfloat p = (float)lane * d;\n"
		     "\t\t\t\t\tacc[L] = acc[L] + p;\n"
		     "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\t\ta->y[(int64_t)t * N + o] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));\n"
		     "\t\t}\n"
		     "\t}\n}\n");
}

int emit_ternary_matmul(Em *m, const IrNode *n)
{
	const IrValue *w = V(m, n->in[2]), *sc = V(m, n->in[1]);
	int64_t k = w->ne[0], nr = w->ne[1];
	if (w->kind != IR_VAL_CONST)
		return unsupported(m, n, "the ternary weight must be a constant");
	const char *tag;
	switch (w->dtype) {
	case IR_DT_I2_S:
		tag = "i2s";
		if (k % 128 || ir_value_row(sc) != 1)
			return unsupported(m, n, "i2_s needs K % 128 == 0 and per-token scales");
		break;
	case IR_DT_TQ1_0:
	case IR_DT_TQ2_0:
		tag = w->dtype == IR_DT_TQ1_0 ? "tq1" : "tq2";
		if (k % 256 || ir_value_row(sc) != k / 256)
			return unsupported(m, n, "tq1_0/tq2_0 need K % 256 == 0 and Q8_K (block256) scales");
		break;
	default:
		return unsupported(m, n, "the weight must be i2_s, tq1_0 or tq2_0");
	}
	char name[96], q[64], s[64], y[64];
	snprintf(name, sizeof name, "tmm_%s_k%" PRId64 "_n%" PRId64, tag, k, nr);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (b && w->dtype == IR_DT_I2_S)
		tmm_i2s_body(b, name, k, nr);
	else if (b)
		tmm_tq_body(b, name, w->dtype, k, nr);
	cg_printf(m->fwd, "\t{\n\t\tTmmArg a = {W + %" PRIu64 ", %s, %s, %s, n};\n"
			  "\t\trt_pool_run(st->pool, %s, &a);\n\t}\n",
		  m->woff[n->in[2]], ref(m, n->in[0], "int8_t", q, sizeof q),
		  ref(m, n->in[1], "float", s, sizeof s), ref(m, n->out[0], "float", y, sizeof y), name);
	return 0;
}

