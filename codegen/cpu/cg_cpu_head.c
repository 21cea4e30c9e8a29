/* cg_cpu_head.c - the float output head (f32/f16/bf16/q8_0/q6_k weight, float x): its x
 * preparation and the matmul that writes the logits. */
#include "cg_cpu_em.h"

/* The head's x preparation, exactly as the interpreter's head_prepare. */
static void head_prep_body(CgBuf *b, const char *name, IrDtype dt, int64_t k)
{
	cg_printf(b, "static void %s(const float *x, float *xr, int n)\n{\n"
		     "\tenum { K = %" PRId64 " };\n"
		     "\tfor (int t = 0; t < n; t++) {\n"
		     "\t\tconst float *xt = x + (int64_t)t * K;\n"
		     "\t\tfloat *xo = xr + (int64_t)t * K;\n",
		  name, k);
	switch (dt) {
	case IR_DT_F16:
	case IR_DT_BF16:
		/* single-token steps round x to the weight's half type first */
		cg_printf(b, "\t\tfor (int i = 0; i < K; i++)\n"
			     "\t\t\txo[i] = n == 1 ? %s : xt[i];\n",
			  dt == IR_DT_F16 ? "round_f16(xt[i])" : "bf16_to_f32(f32_to_bf16(xt[i]))");
		break;
	case IR_DT_Q8_0:
		cg_printf(b, "\t\tfor (int b = 0; b < K; b += 32) {\n"
			     "\t\t\tfloat amax = 0.0f;\n"
			     "\t\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\t\tamax = fmaxf(amax, fabsf(xt[b + i]));\n"
			     "\t\t\tfloat d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;\n"
			     "\t\t\tfloat dh = round_f16(d);\n"
			     "\t\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\t\txo[b + i] = dh * roundf(xt[b + i] * id);\n"
			     "\t\t}\n");
		break;
	case IR_DT_Q6_K:
		cg_printf(b, "\t\tfor (int b = 0; b < K; b += 256) {\n"
			     "\t\t\tint8_t q[256];\n"
			     "\t\t\tfloat d;\n"
			     "\t\t\tquant_q8k_k256(xt + b, q, &d, 1);\n"
			     "\t\t\tfor (int i = 0; i < 256; i++)\n"
			     "\t\t\t\txo[b + i] = d * (float)q[i];\n"
			     "\t\t}\n");
		break;
	default:
		cg_printf(b, "\t\tmemcpy(xo, xt, K * sizeof(float));\n");
		break;
	}
	cg_printf(b, "\t}\n}\n");
}

/* The float head: nothing is quantized after it, so it may sum in float with 16 partial
 * sums (~1e-7 relative from the interpreter's double dot). */
static void head_body(CgBuf *b, const char *name, const char *deq, IrDtype dt, int64_t k,
		      int64_t nr)
{
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst HeadArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", K16 = K / 16 * 16 };\n"
		     "\tconst int64_t N = %" PRId64 ";\n"
		     "\tfloat wr[K];\n"
		     "\tint64_t lo = N * ith / nth, hi = N * (ith + 1) / nth;\n"
		     "\tfor (int64_t o = lo; o < hi; o++) {\n"
		     "\t\t%s(a->w + (uint64_t)o * %" PRIu64 ", wr);\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tconst float *x = a->x + (int64_t)t * K;\n"
		     "\t\t\tfloat p[16] = {0};\n"
		     "\t\t\tfor (int i = 0; i < K16; i += 16)\n"
		     "\t\t\t\tfor (int l = 0; l < 16; l++)\n"
		     "\t\t\t\t\tp[l] += wr[i + l] * x[i + l];\n"
		     "\t\t\tfloat s = 0.0f;\n"
		     "\t\t\tfor (int i = K16; i < K; i++)\n"
		     "\t\t\t\ts += wr[i] * x[i];\n"
		     "\t\t\tfor (int l = 0; l < 16; l++)\n"
		     "\t\t\t\ts += p[l];\n"
		     "\t\t\ta->y[(int64_t)t * N + o] = s;\n"
		     "\t\t}\n"
		     "\t}\n}\n",
		  name, k, nr, deq, dense_row_bytes(dt, k));
}

int emit_matmul(Em *m, const IrNode *n)
{
	const IrValue *w = V(m, n->in[1]);
	int64_t k = w->ne[0], nr = w->ne[1];
	if (w->kind != IR_VAL_CONST || !dense_ok(w->dtype, k))
		return unsupported(m, n, "the weight must be a constant f32/f16/bf16/q8_0/q6_k");
	if (n->out[0] != m->g->logits)
		return unsupported(m, n, "a float matmul is only supported as the output head");
	char deq[64], prep[96], name[96], x[64];
	if (emit_deq(m, w->dtype, k, deq, sizeof deq))
		return m->e->code;
	if (w->dtype == IR_DT_Q6_K) { /* its x preparation is the Q8_K quantizer */
		CgBuf *qb;
		if (kern_for(m, n, "quant_q8k_k256", &qb))
			return m->e->code;
		if (qb)
			q8k_body(qb, "quant_q8k_k256", 256);
	}
	snprintf(prep, sizeof prep, "head_prep_%s_k%" PRId64, ir_dtype_name(w->dtype), k);
	CgBuf *b;
	if (kern_for(m, n, prep, &b))
		return m->e->code;
	if (b)
		head_prep_body(b, prep, w->dtype, k);
	snprintf(name, sizeof name, "head_%s_k%" PRId64 "_n%" PRId64, ir_dtype_name(w->dtype), k, nr);
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (b)
		head_body(b, name, deq, w->dtype, k, nr);
	/* without a logits buffer nothing reads the head: skip the largest matmul */
	cg_printf(m->fwd, "\tif (logits) {\n"
			  "\t\tfloat *xr = (float *)(S + %" PRIu64 ");\n"
			  "\t\t%s(%s, xr, n);\n"
			  "\t\tHeadArg a = {W + %" PRIu64 ", xr, logits, n};\n"
			  "\t\trt_pool_run(st->pool, %s, &a);\n"
			  "\t}\n",
		  m->tmp[n - m->g->nodes], prep, ref(m, n->in[0], "float", x, sizeof x),
		  m->woff[n->in[1]], name);
	return 0;
}

