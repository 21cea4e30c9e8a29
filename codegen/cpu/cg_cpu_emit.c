/* cg_cpu_emit.c - the portable C emitter: renders a graph into one model.c whose kernels
 * carry every shape, stride and offset as a constant, and which computes exactly what the
 * reference interpreter (ir/ir_interp.c) computes, in the same float order. */
#include "cg_cpu_em.h"
#include "rt_batch.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const IrValue *V(const Em *m, IrId id)
{
	return &m->g->values[id];
}

/* ---- kernels -------------------------------------------------------------- */

/* The kernel called name; *fresh is true when its body still has to be written. NULL on
 * out of memory. */
static Kern *kern_get(Em *m, const char *name, bool *fresh)
{
	for (int i = 0; i < m->n_kern; i++)
		if (strcmp(m->kern[i].name, name) == 0) {
			*fresh = false;
			return &m->kern[i];
		}
	if (m->n_kern == m->cap_kern) {
		int cap = m->cap_kern ? 2 * m->cap_kern : 32;
		Kern *k = realloc(m->kern, (size_t)cap * sizeof *k);
		if (!k)
			return NULL;
		m->kern = k;
		m->cap_kern = cap;
	}
	Kern *k = &m->kern[m->n_kern++];
	memset(k, 0, sizeof *k);
	snprintf(k->name, sizeof k->name, "%s", name);
	k->nt = m->nt;
	*fresh = true;
	return k;
}

/* Text from the model file goes into comments: keep it from closing them. */
static void put_comment_text(CgBuf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '*' && s[1] == '/')
			cg_printf(b, "*_");
		else
			cg_printf(b, "%c", c >= 0x20 && c < 0x7f ? c : '?');
	}
}

static void put_shape(CgBuf *b, const IrValue *v)
{
	cg_printf(b, "[");
	for (int i = 0; i < v->n_dims; i++) {
		if (v->ne[i] == IR_DIM_T)
			cg_printf(b, "%sT", i ? ", " : "");
		else
			cg_printf(b, "%s%" PRId64, i ? ", " : "", v->ne[i]);
	}
	cg_printf(b, "]");
}

/* Records that node n uses kernel k: its name and the constant (weight) it reads, if any.
 * Every forward template walks the same nodes: the users are listed from the first forward
 * that used the kernel (a kernel may be specialized for one template's token count). */
static void kern_user(Em *m, Kern *k, const IrNode *n)
{
	if (k->nt != m->nt)
		return;
	cg_printf(&k->users, " *   ");
	put_comment_text(&k->users, n->name);
	cg_printf(&k->users, " (%s)", ir_op_name(n->op));
	for (int i = 0; i < n->n_in; i++) {
		const IrValue *v = V(m, n->in[i]);
		if (v->kind != IR_VAL_CONST)
			continue;
		cg_printf(&k->users, ": ");
		put_comment_text(&k->users, v->name);
		cg_printf(&k->users, " %s ", ir_dtype_name(v->dtype));
		put_shape(&k->users, v);
		cg_printf(&k->users, " layout=");
		put_comment_text(&k->users, v->layout ? v->layout : "gguf");
	}
	cg_printf(&k->users, "\n");
}

/* ---- operands --------------------------------------------------------------- */

/* The C expression of value id as a pointer of type ty: scratch, payload or the tokens. */
const char *ref(const Em *m, IrId id, const char *ty, char *buf, size_t n)
{
	const IrValue *v = V(m, id);
	if (id == m->g->tokens)
		snprintf(buf, n, "tok");
	else if (v->kind == IR_VAL_CONST)
		snprintf(buf, n, "(const %s *)(W + %" PRIu64 ")", ty, m->woff[id]);
	else
		snprintf(buf, n, "(%s *)(S + %" PRIu64 ")", ty, m->soff[id]);
	return buf;
}

/* Floats as exact hexadecimal literals: the binary must use the very float the
 * interpreter computes from the same attribute. */
const char *flit(float f, char *buf, size_t n)
{
	if (isinf(f))
		snprintf(buf, n, "%sINFINITY", f < 0 ? "-" : "");
	else
		snprintf(buf, n, "%af", (double)f);
	return buf;
}

/* ---- dense rows: dequantization shared by embed and the head ---------------- */

/* Emits (once) deq_<type>_k<K>(src, dst): one row of K elements, exactly as ir_dequant. */
int emit_deq(Em *m, IrDtype dt, int64_t k, char *name, size_t nn)
{
	snprintf(name, nn, "deq_%s_k%" PRId64, ir_dtype_name(dt), k);
	bool fresh;
	Kern *kn = kern_get(m, name, &fresh);
	if (!kn)
		return bn_err(m->e, BN_ENOMEM, "codegen: out of memory");
	if (!fresh)
		return 0;
	CgBuf *b = &kn->body;
	cg_printf(b, "static void %s(const uint8_t *src, float *dst)\n{\n", name);
	switch (dt) {
	case IR_DT_F32:
		cg_printf(b, "\tmemcpy(dst, src, %" PRId64 " * sizeof(float));\n", k);
		break;
	case IR_DT_F16:
		/* the head reads every row of the table each token: convert with F16C where the
		 * target has it, else through the 64K-entry table (both exact) */
		/* (a tail loop only where there is a tail: gcc warns about one that never runs) */
		cg_printf(b, "\tint i = 0;\n"
			     "#if defined(__F16C__) && defined(__AVX__)\n"
			     "\tfor (; i + 8 <= %" PRId64 "; i += 8)\n"
			     "\t\t_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));\n"
			     "%s"
			     "\tfor (; i < %" PRId64 "; i++)\n"
			     "\t\tdst[i] = f16_table[rd16(src + 2 * i)];\n"
			     "%s",
			  k, k % 8 ? "#endif\n" : "#else\n", k, k % 8 ? "" : "#endif\n");
		break;
	case IR_DT_BF16:
		cg_printf(b, "\tfor (int i = 0; i < %" PRId64 "; i++)\n"
			     "\t\tdst[i] = bf16_to_f32(rd16(src + 2 * i));\n",
			  k);
		break;
	case IR_DT_Q8_0:
		cg_printf(b, "\tfor (int b = 0; b < %" PRId64 "; b++, src += 34, dst += 32) {\n"
			     "\t\tfloat d = f16_to_f32(rd16(src));\n"
			     "\t\tfor (int i = 0; i < 32; i++)\n"
			     "\t\t\tdst[i] = d * (float)(int8_t)src[2 + i];\n"
			     "\t}\n",
			  k / 32);
		break;
	case IR_DT_Q6_K:
		/* element 128h + 32s + l: low nibble ql[64h + l + 32(s&1)] (>> 4 when s >= 2),
		 * high bits qh[32h + l] >> 2s, scale scales[8h + 2s + l/16] */
		cg_printf(b, "\tfor (int b = 0; b < %" PRId64 "; b++, src += 210, dst += 256) {\n"
			     "\t\tconst uint8_t *ql = src, *qh = src + 128;\n"
			     "\t\tconst int8_t *sc = (const int8_t *)(src + 192);\n"
			     "\t\tfloat d = f16_to_f32(rd16(src + 208));\n"
			     "\t\tfor (int h = 0; h < 2; h++)\n"
			     "\t\t\tfor (int s = 0; s < 4; s++)\n"
			     "\t\t\t\tfor (int l = 0; l < 32; l++) {\n"
			     "\t\t\t\t\tint lo = (ql[64 * h + l + 32 * (s & 1)] >> (s >= 2 ? 4 : 0)) & 0xf;\n"
			     "\t\t\t\t\tint code = lo | (((qh[32 * h + l] >> (2 * s)) & 3) << 4);\n"
			     "\t\t\t\t\tdst[128 * h + 32 * s + l] = d * (float)sc[8 * h + 2 * s + l / 16] * (float)(code - 32);\n"
			     "\t\t\t\t}\n"
			     "\t}\n",
			  k / 256);
		break;
	default:
		return bn_err(m->e, BN_EUNSUPPORTED, "codegen: no dense kernel for type %s",
			      ir_dtype_name(dt));
	}
	cg_printf(b, "}\n");
	return 0;
}

bool dense_ok(IrDtype dt, int64_t k)
{
	switch (dt) {
	case IR_DT_F32:
	case IR_DT_F16:
	case IR_DT_BF16:
		return true;
	case IR_DT_Q8_0:
		return k % 32 == 0;
	case IR_DT_Q6_K:
		return k % 256 == 0;
	default:
		return false;
	}
}

uint64_t dense_row_bytes(IrDtype dt, int64_t k)
{
	const IrDtypeInfo *d = ir_dtype_info(dt);
	return (uint64_t)(k / d->block) * (uint64_t)d->block_bytes;
}

/* ---- per-op emitters ---------------------------------------------------------- */

/* The kernels are RVV code (cg_cpu_rvv.c) where one exists for the op. */
static bool rvv(const Em *m)
{
	return m->isa.level == CG_ISA_RVV;
}

typedef int (*EmitFn)(Em *m, const IrNode *n);

int unsupported(Em *m, const IrNode *n, const char *why)
{
	return bn_err(m->e, BN_EUNSUPPORTED, "codegen (cpu): node '%s' (%s): %s", n->name,
		      ir_op_name(n->op), why);
}

/* Looks up (or starts) the kernel called name for node n; *body is NULL if it exists. */
int kern_for(Em *m, const IrNode *n, const char *name, CgBuf **body)
{
	bool fresh;
	*body = NULL;
	Kern *k = kern_get(m, name, &fresh);
	if (!k)
		return bn_err(m->e, BN_ENOMEM, "codegen: out of memory");
	kern_user(m, k, n);
	*body = fresh ? &k->body : NULL;
	return 0;
}

static int emit_embed(Em *m, const IrNode *n)
{
	const IrValue *tab = V(m, n->in[1]);
	int64_t k = tab->ne[0], vocab = tab->ne[1];
	if (tab->kind != IR_VAL_CONST || !dense_ok(tab->dtype, k))
		return unsupported(m, n, "the table must be a constant f32/f16/bf16/q8_0/q6_k");
	char deq[64], name[96], y[64];
	if (emit_deq(m, tab->dtype, k, deq, sizeof deq))
		return m->e->code;
	snprintf(name, sizeof name, "embed_%s_k%" PRId64 "_v%" PRId64, ir_dtype_name(tab->dtype), k,
		 vocab);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (b)
		/* the runtime checks token ids; a bad one reads as a zero row, never out of bounds */
		cg_printf(b, "static void %s(const uint8_t *w, const int32_t *tok, int n, float *y)\n{\n"
			     "\tfor (int t = 0; t < n; t++) {\n"
			     "\t\tif (tok[t] < 0 || tok[t] >= %" PRId64 ") {\n"
			     "\t\t\tmemset(y + (int64_t)t * %" PRId64 ", 0, %" PRId64 " * sizeof(float));\n"
			     "\t\t\tcontinue;\n"
			     "\t\t}\n"
			     "\t\t%s(w + (uint64_t)tok[t] * %" PRIu64 ", y + (int64_t)t * %" PRId64 ");\n"
			     "\t}\n}\n",
			  name, vocab, k, k, deq, dense_row_bytes(tab->dtype, k), k);
	cg_printf(m->fwd, "\t%s(W + %" PRIu64 ", tok, n, %s);\n", name, m->woff[n->in[1]],
		  ref(m, n->out[0], "float", y, sizeof y));
	return 0;
}

void rmsnorm_sig(CgBuf *b, const char *name, bool add)
{
	cg_printf(b, "static void %s(const float *x, %sconst float *w, float *y, int n, float eps)\n{\n",
		  name, add ? "const float *r, float *xs, " : "");
}

/* Vector width in floats of the elementwise loops the x86 and NEON targets write with
 * intrinsics (0: plain C, as cpu-generic and any other target). */
static int simd_floats(const Em *m)
{
	return m->isa.level == CG_ISA_AVX512 ? 16
	       : m->isa.level == CG_ISA_AVX2 ? 8
	       : m->isa.level == CG_ISA_NEON ? 4 : 0;
}

/* The header of those intrinsics, written before each kernel that uses them (a kernel may
 * come first in model.c); NEON's only on AArch64, where x16_common says what is wrong. */
static void simd_include(CgBuf *b, int vw)
{
	if (vw == 16 || vw == 8)
		cg_printf(b, "#include <immintrin.h>\n");
	else if (vw == 4)
		cg_printf(b, "#if defined(__aarch64__)\n#include <arm_neon.h>\n#endif\n");
}

/* y = x * v (v a vector of the scalar) and, with w, y = (x * v) * w: the two roundings of the
 * two passes the interpreter makes, vectorized; i runs on, the caller finishes the tail. */
static void simd_scale_loop(CgBuf *b, int vw, const char *ind)
{
	if (vw == 16 || vw == 8) {
		const char *v = vw == 16 ? "__m512" : "__m256", *p = vw == 16 ? "_mm512" : "_mm256";
		cg_printf(b, "%s%s sv = %s_set1_ps(scale);\n"
			     "%sif (w)\n"
			     "%s\tfor (; i + %d <= K; i += %d)\n"
			     "%s\t\t%s_storeu_ps(yr + i, %s_mul_ps(%s_mul_ps(%s_loadu_ps(xr + i), sv), %s_loadu_ps(w + i)));\n"
			     "%selse\n"
			     "%s\tfor (; i + %d <= K; i += %d)\n"
			     "%s\t\t%s_storeu_ps(yr + i, %s_mul_ps(%s_loadu_ps(xr + i), sv));\n",
			  ind, v, p, ind, ind, vw, vw, ind, p, p, p, p, p, ind, ind, vw, vw, ind, p, p, p);
	}
	else if (vw == 4)
		cg_printf(b, "#if defined(__aarch64__)\n"
			     "%sfloat32x4_t sv = vdupq_n_f32(scale);\n"
			     "%sif (w)\n"
			     "%s\tfor (; i + 4 <= K; i += 4)\n"
			     "%s\t\tvst1q_f32(yr + i, vmulq_f32(vmulq_f32(vld1q_f32(xr + i), sv), vld1q_f32(w + i)));\n"
			     "%selse\n"
			     "%s\tfor (; i + 4 <= K; i += 4)\n"
			     "%s\t\tvst1q_f32(yr + i, vmulq_f32(vld1q_f32(xr + i), sv));\n"
			     "#endif\n",
			  ind, ind, ind, ind, ind, ind, ind);
}

/* The rmsnorm of the targets without a kernel of their own (x86, NEON, portable C). The
 * reference sums each row's squares in double in index order, a chain of dependent adds
 * (~K x the add latency), and reads only the float mean = (float)(sum / K). The helper
 * sumsq_n<k> sums them in 16 lanes instead (vectorized; the float products are the same)
 * and keeps that sum only where it provably gives the in-order sum's mean: both sums are
 * within (K-1)u/(1-(K-1)u) x the exact sum of the exact one (u = 2^-53, nonnegative terms,
 * any order), so within 4Ku x the lane sum of each other; where both ends of that interval
 * give the same float mean (mean is monotonic in the sum), that is the mean. Else (a NaN
 * or an infinity, and of random Gaussian rows 1 in ~11000 at K 6912, ~29000 at 2560,
 * ~330000 at 256) the in-order chain runs: the bits are the interpreter's either way. Then scale = 1/sqrt(mean + eps), y = (x * scale) * w: the
 * helper rmsnorm_row_n<k>, vectorized where the target has intrinsics. With add, x + r is
 * summed into xs first, row by row (the floats the add kernel would store; xs may be x or
 * r: elementwise, in place is safe). */
static int rmsnorm_generic(Em *m, const IrNode *n, const char *name, int64_t k, bool add)
{
	char row[112], sq[112];
	snprintf(row, sizeof row, "rmsnorm_row_n%" PRId64, k);
	snprintf(sq, sizeof sq, "sumsq_n%" PRId64, k);
	int vw = simd_floats(m);
	CgBuf *h, *b;
	if (kern_for(m, n, row, &h))
		return m->e->code;
	if (h) {
		simd_include(h, vw);
		cg_printf(h, "static inline double %s(const float *x)\n{\n"
			     "\tenum { K = %" PRId64 " };\n"
			     "\tdouble a[16] = {0};\n"
			     "\tint i = 0;\n"
			     "\tfor (; i + 16 <= K; i += 16)\n"
			     "\t\tfor (int j = 0; j < 16; j++)\n"
			     "\t\t\ta[j] += (double)(x[i + j] * x[i + j]);\n"
			     "\tdouble s = 0.0;\n"
			     "\tfor (int j = 0; j < 16; j++)\n"
			     "\t\ts += a[j];\n"
			     "\tfor (; i < K; i++)\n"
			     "\t\ts += (double)(x[i] * x[i]);\n"
			     "\tdouble d = s * (4.0 * K * 0x1p-53);\n"
			     "\tif ((float)((s - d) / (double)K) == (float)((s + d) / (double)K))\n"
			     "\t\treturn s;\n"
			     "\ts = 0.0;\n"
			     "\tfor (i = 0; i < K; i++)\n"
			     "\t\ts += (double)(x[i] * x[i]);\n"
			     "\treturn s;\n"
			     "}\n\n",
			  sq, k);
		cg_printf(h, "static inline void %s(const float *xr, const float *w, float *yr, double sum, float eps)\n{\n"
			     "\tenum { K = %" PRId64 " };\n"
			     "\tfloat mean = (float)(sum / (double)K);\n"
			     "\tfloat scale = 1.0f / sqrtf(mean + eps);\n"
			     "\tint i = 0;\n",
			  row, k);
		simd_scale_loop(h, vw, "\t");
		cg_printf(h, "\tfor (; i < K; i++)\n"
			     "\t\tyr[i] = w ? xr[i] * scale * w[i] : xr[i] * scale;\n"
			     "}\n");
	}
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	simd_include(b, vw);
	rmsnorm_sig(b, name, add);
	cg_printf(b, "\tenum { K = %" PRId64 " };\n"
		     "\tfor (int t = 0; t < n; t++) {\n"
		     "\t\tint64_t o = (int64_t)t * K;\n",
		  k);
	if (add) {
		cg_printf(b, "\t\tfloat *d = xs + o;\n"
			     "\t\tconst float *ar = x + o, *rr = r + o, *xr = d;\n"
			     "\t\tint i = 0;\n");
		if (vw == 16)
			cg_printf(b, "\t\tfor (; i + 16 <= K; i += 16)\n"
				     "\t\t\t_mm512_storeu_ps(d + i, _mm512_add_ps(_mm512_loadu_ps(ar + i), _mm512_loadu_ps(rr + i)));\n");
		else if (vw == 8)
			cg_printf(b, "\t\tfor (; i + 8 <= K; i += 8)\n"
				     "\t\t\t_mm256_storeu_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(ar + i), _mm256_loadu_ps(rr + i)));\n");
		else if (vw == 4)
			cg_printf(b, "#if defined(__aarch64__)\n"
				     "\t\tfor (; i + 4 <= K; i += 4)\n"
				     "\t\t\tvst1q_f32(d + i, vaddq_f32(vld1q_f32(ar + i), vld1q_f32(rr + i)));\n"
				     "#endif\n");
		cg_printf(b, "\t\tfor (; i < K; i++)\n"
			     "\t\t\td[i] = ar[i] + rr[i];\n");
	} else {
		cg_printf(b, "\t\tconst float *xr = x + o;\n");
	}
	cg_printf(b, "\t\t%s(xr, w, y + o, %s(xr), eps);\n"
		     "\t}\n}\n",
		  row, sq);
	return 0;
}

/* The rmsnorm kernel for rows of k (written once); name gets its name. With add (node n is
 * an add_rmsnorm_quant), add_rmsnorm_n<k>(x, r, xs, w, y, n, eps) first sums x + r into xs,
 * in the loop that sums the squares, then norms xs: the floats the add kernel would store
 * and the plain kernel would read, so the same bits. */
static int rmsnorm_kern(Em *m, const IrNode *n, int64_t k, bool add, char *name, size_t nn)
{
	snprintf(name, nn, "%srmsnorm_n%" PRId64, add ? "add_" : "", k);
	int wi = add ? 2 : 1;
	if (n->n_in > wi && (V(m, n->in[wi])->dtype != IR_DT_F32 || ir_value_has_t(V(m, n->in[wi]))))
		return unsupported(m, n, "the weight must be f32 without a token dim");
	if (add && (!ir_value_has_t(V(m, n->in[1])) || ir_value_row(V(m, n->in[1])) != k))
		return unsupported(m, n, "b must be an activation of a's shape");
	bool sve = m->isa.level == CG_ISA_SVE;
	if (!rvv(m) && !sve)
		return rmsnorm_generic(m, n, name, k, add);
	CgBuf *b;
	if ((rvv(m) && rvv_float_common(m, n)) || (sve && sve_common(m, n)) ||
	    kern_for(m, n, name, &b))
		return m->e->code;
	if (b && sve)
		sve_rmsnorm_body(b, name, k, add);
	else if (b)
		rvv_rmsnorm_body(b, name, k, add);
	return 0;
}

static int emit_rmsnorm(Em *m, const IrNode *n)
{
	int64_t k = ir_value_row(V(m, n->in[0]));
	char name[96], x[64], w[64], y[64], eps[48];
	if (rmsnorm_kern(m, n, k, false, name, sizeof name))
		return m->e->code;
	cg_printf(m->fwd, "\t%s(%s, %s, %s, n, %s);\n", name, ref(m, n->in[0], "float", x, sizeof x),
		  n->n_in > 1 ? ref(m, n->in[1], "float", w, sizeof w) : "NULL",
		  ref(m, n->out[0], "float", y, sizeof y),
		  flit((float)ir_attr_float(n, "eps", 1e-5), eps, sizeof eps));
	return 0;
}

/* Q8_K per 256 inputs (for TQ1_0/TQ2_0 and Q6_K heads): the signed value of the first
 * largest |x| sets iscale = -127/xm; q = min(127, rint(iscale*x)); d = 1/iscale. */
void q8k_body(CgBuf *b, const char *name, int64_t k)
{
	cg_printf(b, "static void %s(const float *x, int8_t *q, float *d, int n)\n{\n"
		     "\tenum { K = %" PRId64 " };\n"
		     "\tfor (int64_t bi = 0; bi < (int64_t)n * (K / 256); bi++) {\n"
		     "\t\tconst float *xb = x + bi * 256;\n"
		     "\t\tint8_t *qb = q + bi * 256;\n"
		     "\t\tfloat amax = 0.0f, xm = 0.0f;\n"
		     "\t\tfor (int i = 0; i < 256; i++)\n"
		     "\t\t\tif (fabsf(xb[i]) > amax) {\n"
		     "\t\t\t\tamax = fabsf(xb[i]);\n"
		     "\t\t\t\txm = xb[i];\n"
		     "\t\t\t}\n"
		     "\t\tif (amax == 0.0f) {\n"
		     "\t\t\tmemset(qb, 0, 256);\n"
		     "\t\t\td[bi] = 0.0f;\n"
		     "\t\t\tcontinue;\n"
		     "\t\t}\n"
		     "\t\tfloat iscale = -127.0f / xm;\n"
		     "\t\tfor (int i = 0; i < 256; i++) {\n"
		     "\t\t\tfloat v = rintf(iscale * xb[i]);\n"
		     "\t\t\tqb[i] = (int8_t)(v > 127.0f ? 127.0f : v);\n"
		     "\t\t}\n"
		     "\t\td[bi] = 1.0f / iscale;\n"
		     "\t}\n}\n",
			  name, k);
}

/* Per token: amax = the largest |x| in double (a NaN never wins), s = (float)(127/amax),
 * q = rint(x*s) clamped to [-128, 127]. With vw (simd_floats) the max runs in float
 * vectors (|x| converts to double exactly, and a max does not depend on the order) and the
 * rounding in vectors: MINPS/MAXPS (and the NEON compare-select) keep a NaN where the plain
 * code's comparisons do, and its int32 conversion keeps the low byte, as (int8_t) does. */
static void quant_tok_body(CgBuf *b, const char *name, int64_t k, int vw)
{
	simd_include(b, vw);
	cg_printf(b, "static void %s(const float *x, int8_t *q, float *s, int n)\n{\n"
		     "\tenum { K = %" PRId64 " };\n"
		     "\tfor (int t = 0; t < n; t++) {\n"
		     "\t\tconst float *xr = x + (int64_t)t * K;\n"
		     "\t\tint8_t *qr = q + (int64_t)t * K;\n"
		     "\t\tint i = 0;\n",
		  name, k);
	if (vw == 16)
		cg_printf(b, "\t\t__m512 mv = _mm512_setzero_ps();\n"
			     "\t\tfor (; i + 16 <= K; i += 16)\n"
			     "\t\t\tmv = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xr + i)), mv);\n"
			     "\t\tdouble amax = (double)_mm512_reduce_max_ps(mv);\n");
	else if (vw == 8)
		cg_printf(b, "\t\t__m256 mv = _mm256_setzero_ps();\n"
			     "\t\tconst __m256 ab = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));\n"
			     "\t\tfor (; i + 8 <= K; i += 8)\n"
			     "\t\t\tmv = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xr + i), ab), mv);\n"
			     "\t\t__m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));\n"
			     "\t\tm4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));\n"
			     "\t\tm4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));\n"
			     "\t\tdouble amax = (double)_mm_cvtss_f32(m4);\n");
	else if (vw == 4)
		cg_printf(b, "#if defined(__aarch64__)\n"
			     "\t\tfloat32x4_t mv = vdupq_n_f32(0.0f);\n"
			     "\t\tfor (; i + 4 <= K; i += 4) {\n"
			     "\t\t\tfloat32x4_t a = vabsq_f32(vld1q_f32(xr + i));\n"
			     "\t\t\tmv = vbslq_f32(vcgtq_f32(a, mv), a, mv);\n"
			     "\t\t}\n"
			     "\t\tdouble amax = (double)vmaxvq_f32(mv);\n"
			     "#else\n"
			     "\t\tdouble amax = 0.0;\n"
			     "#endif\n");
	else
		cg_printf(b, "\t\tdouble amax = 0.0;\n");
	cg_printf(b, "\t\tfor (; i < K; i++) {\n"
		     /* fmax's value (amax is never NaN, a NaN x never wins) without fmax:
		      * GCC 12.2 for aarch64 (Debian 12) dies vectorizing an fmax reduction
		      * over widened floats (ICE in vect_transform_reduction) */
		     "\t\t\tdouble a = fabs((double)xr[i]);\n"
		     "\t\t\tamax = a > amax ? a : amax;\n"
		     "\t\t}\n"
		     "\t\tamax = fmax(amax, 1e-5);\n"
		     "\t\tfloat st = (float)(127.0 / amax);\n"
		     "\t\ti = 0;\n");
	if (vw == 16)
		cg_printf(b, "\t\tconst __m512 sv = _mm512_set1_ps(st), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-128.0f);\n"
			     "\t\tfor (; i + 16 <= K; i += 16) {\n"
			     "\t\t\t__m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(xr + i), sv), _MM_FROUND_CUR_DIRECTION);\n"
			     "\t\t\tv = _mm512_max_ps(lo, _mm512_min_ps(hi, v));\n"
			     "\t\t\t_mm_storeu_si128((__m128i *)(qr + i), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));\n"
			     "\t\t}\n");
	else if (vw == 8)
		cg_printf(b, "\t\tconst __m256 sv = _mm256_set1_ps(st), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-128.0f);\n"
			     "\t\tconst __m256i lb = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);\n"
			     "\t\tfor (; i + 8 <= K; i += 8) {\n"
			     "\t\t\t__m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), sv), _MM_FROUND_CUR_DIRECTION);\n"
			     "\t\t\tv = _mm256_max_ps(lo, _mm256_min_ps(hi, v));\n"
			     "\t\t\t__m256i d = _mm256_shuffle_epi8(_mm256_cvttps_epi32(v), lb);\n"
			     "\t\t\t_mm_storel_epi64((__m128i *)(qr + i), _mm_unpacklo_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1)));\n"
			     "\t\t}\n");
	else if (vw == 4)
		cg_printf(b, "#if defined(__aarch64__)\n"
			     "\t\tconst float32x4_t sv = vdupq_n_f32(st), hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-128.0f);\n"
			     "\t\tfor (; i + 8 <= K; i += 8) {\n"
			     "\t\t\tfloat32x4_t v0 = vrndiq_f32(vmulq_f32(vld1q_f32(xr + i), sv));\n"
			     "\t\t\tfloat32x4_t v1 = vrndiq_f32(vmulq_f32(vld1q_f32(xr + i + 4), sv));\n"
			     "\t\t\tv0 = vmaxq_f32(vminq_f32(v0, hi), lo);\n"
			     "\t\t\tv1 = vmaxq_f32(vminq_f32(v1, hi), lo);\n"
			     "\t\t\tint16x8_t h = vcombine_s16(vmovn_s32(vcvtq_s32_f32(v0)), vmovn_s32(vcvtq_s32_f32(v1)));\n"
			     "\t\t\tvst1_s8(qr + i, vmovn_s16(h));\n"
			     "\t\t}\n"
			     "#endif\n");
	cg_printf(b, "\t\tfor (; i < K; i++) {\n"
		     "\t\t\tfloat v = rintf(xr[i] * st);\n"
		     "\t\t\tqr[i] = (int8_t)(v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v);\n"
		     "\t\t}\n"
		     "\t\ts[t] = st;\n"
		     "\t}\n}\n");
}

/* The quantizer kernel of node n (quant_act or rmsnorm_quant) for rows of k (written
 * once); name gets its name. */
static int quant_kern(Em *m, const IrNode *n, int64_t k, char *name, size_t nn)
{
	bool block = strcmp(ir_attr_str(n, "mode", "token"), "block256") == 0;
	if (!block && strcmp(ir_attr_str(n, "mode", "token"), "token") != 0)
		return unsupported(m, n, "unknown mode (token or block256)");
	if (block && k % 256)
		return unsupported(m, n, "block256 needs a row that is a multiple of 256");
	snprintf(name, nn, "%s_k%" PRId64, block ? "quant_q8k" : "quant_tok", k);
	CgBuf *b;
	if ((rvv(m) && !block && rvv_common(m, n)) ||
	    (m->isa.level == CG_ISA_SVE && !block && sve_common(m, n)) || kern_for(m, n, name, &b))
		return m->e->code;
	if (b && !block && rvv(m))
		rvv_quant_tok_body(b, name, k);
	else if (b && !block && m->isa.level == CG_ISA_SVE)
		sve_quant_tok_body(b, name, k);
	else if (b && !block)
		quant_tok_body(b, name, k, simd_floats(m));
	if (b && block)
		q8k_body(b, name, k);
	return 0;
}

/* The start of a pool kernel over a call's tokens (RnqArg; K floats and NS scales a token,
 * the quantizer's mode deciding NS): each thread's tokens lo..hi. */
static void rnq_par_head(CgBuf *b, const IrNode *n, const char *par, int64_t k)
{
	bool block = strcmp(ir_attr_str(n, "mode", "token"), "block256") == 0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst RnqArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", NS = %" PRId64 " };\n"
		     "\tint lo = a->n * ith / nth, hi = a->n * (ith + 1) / nth;\n",
		  par, k, block ? k / 256 : (int64_t)1);
}

/* The quantizer alone (the input of a projection that no norm precedes: the llama and
 * bitnet archs' attention output and GLU): with several tokens split over the threads by
 * tokens from BN_ROWS_PAR_MIN floats, as rows_call splits glu and rope (per-token work, so
 * the same bits). */
static int emit_quant_act(Em *m, const IrNode *n)
{
	int64_t k = ir_value_row(V(m, n->in[0]));
	char name[96], x[64], q[64], s[64];
	if (quant_kern(m, n, k, name, sizeof name))
		return m->e->code;
	ref(m, n->in[0], "float", x, sizeof x);
	ref(m, n->out[0], "int8_t", q, sizeof q);
	ref(m, n->out[1], "float", s, sizeof s);
	if (m->nt == 1) {
		cg_printf(m->fwd, "\t%s(%s, %s, %s, n);\n", name, x, q, s);
		return 0;
	}
	char par[128];
	snprintf(par, sizeof par, "%s_par", name);
	CgBuf *b;
	if (kern_for(m, n, par, &b))
		return m->e->code;
	if (b) {
		rnq_par_head(b, n, par, k);
		cg_printf(b, "\tif (lo < hi)\n"
			     "\t\t%s(a->x + (int64_t)lo * K, a->q + (int64_t)lo * K, a->s + (int64_t)lo * NS, hi - lo);\n"
			     "}\n",
			  name);
	}
	cg_printf(m->fwd, "\t{\n"
			  "\t\tRnqArg a = {%s, NULL, NULL, NULL, NULL, %s, %s, n, 0.0f};\n"
			  "\t\tif ((int64_t)n * %" PRId64 " >= BN_ROWS_PAR_MIN)\n"
			  "\t\t\tpool_run(st, %s, &a);\n"
			  "\t\telse\n"
			  "\t\t\t%s(&a, 0, 1);\n"
			  "\t}\n",
		  x, q, s, k, par, par);
	return 0;
}

/* The unfused pair's kernels, through the node's scratch temporary (max_batch normed
 * rows): the same code on the same floats, so bit-identical to rmsnorm then quant_act. For
 * add_rmsnorm_quant the norm kernel also adds (rmsnorm_kern), storing the sum as it goes,
 * so each row is read once while it is in cache: bit-identical to add then rmsnorm_quant. */
static int emit_rmsnorm_quant(Em *m, const IrNode *n)
{
	bool add = n->op == IR_OP_ADD_RMSNORM_QUANT;
	int wi = add ? 2 : 1, qo = add ? 1 : 0; /* the weight's input, the codes' output */
	int64_t k = ir_value_row(V(m, n->in[0]));
	char norm[96], quant[96], x[64], r[64] = "NULL", xs[64] = "NULL", w[64] = "NULL", q[64],
		s[64], eps[48];
	if (rmsnorm_kern(m, n, k, add, norm, sizeof norm) ||
	    quant_kern(m, n, k, quant, sizeof quant))
		return m->e->code;
	flit((float)ir_attr_float(n, "eps", 1e-5), eps, sizeof eps);
	ref(m, n->in[0], "float", x, sizeof x);
	if (add) {
		ref(m, n->in[1], "float", r, sizeof r);
		ref(m, n->out[0], "float", xs, sizeof xs);
	}
	if (n->n_in > wi)
		ref(m, n->in[wi], "float", w, sizeof w);
	ref(m, n->out[qo], "int8_t", q, sizeof q);
	ref(m, n->out[qo + 1], "float", s, sizeof s);
	if (m->nt == 1) {
		cg_printf(m->fwd, "\t{\n"
				  "\t\tfloat *xn = (float *)(S + %" PRIu64 ");\n"
				  "\t\t%s(%s, ",
			  m->tmp[n - m->g->nodes], norm, x);
		if (add)
			cg_printf(m->fwd, "%s, %s, ", r, xs);
		cg_printf(m->fwd, "%s, xn, n, %s);\n"
				  "\t\t%s(xn, %s, %s, n);\n"
				  "\t}\n",
			  w, eps, quant, q, s);
		return 0;
	}
	/* several tokens: each thread norms and quantizes its own tokens (per-token work, so
	 * the same bits as one thread doing all) */
	char par[224];
	snprintf(par, sizeof par, "%s_%s_par", norm, quant);
	CgBuf *b;
	if (kern_for(m, n, par, &b))
		return m->e->code;
	if (b) {
		rnq_par_head(b, n, par, k);
		cg_printf(b, "\tif (lo == hi)\n"
			     "\t\treturn;\n"
			     "\t%s(a->x + (int64_t)lo * K, %sa->w, a->xn + (int64_t)lo * K, hi - lo, a->eps);\n"
			     "\t%s(a->xn + (int64_t)lo * K, a->q + (int64_t)lo * K, a->s + (int64_t)lo * NS, hi - lo);\n"
			     "}\n",
			  norm, add ? "a->r + (int64_t)lo * K, a->xs + (int64_t)lo * K, " : "", quant);
	}
	cg_printf(m->fwd, "\t{\n"
			  "\t\tRnqArg a = {%s, %s, %s, %s, (float *)(S + %" PRIu64 "), %s, %s, n, %s};\n"
			  "\t\tpool_run(st, %s, &a);\n"
			  "\t}\n",
		  x, r, w, xs, m->tmp[n - m->g->nodes], q, s, eps, par);
	return 0;
}

/* The call of row kernel kern (glu or rope: rows of row floats, each on its own) on args
 * (its arguments but the row count, each row pointer first: x, ff|u, y): with several
 * tokens, rows split over the threads by kern_par (a RowsArg), once n * row floats are
 * worth a pool launch (BN_ROWS_PAR_MIN, 16384: a few microseconds of work; a decode step's
 * one row and a few short rows stay on the calling thread). The same code per row, so the
 * same bits. pp128 on the 2B-4T shape, 2 threads, Zen 5: glu 22 -> 9 ms, rope 13 -> 4.5 ms
 * a forward (the glu's rows are read where the matmul's thread left them). */
static int rows_call(Em *m, const IrNode *n, const char *kern, int64_t row, bool rope,
		     const char *x, const char *b2, const char *y, const char *ts)
{
	if (m->nt == 1) {
		if (rope)
			cg_printf(m->fwd, "\t%s(%s, %s, %s, n, pos, %s);\n", kern, x, b2, y, ts);
		else
			cg_printf(m->fwd, "\t%s(%s, %s, %s, n);\n", kern, x, b2, y);
		return 0;
	}
	char par[128];
	snprintf(par, sizeof par, "%s_par", kern);
	CgBuf *b;
	if (kern_for(m, n, par, &b))
		return m->e->code;
	if (b)
		cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
			     "\tconst RowsArg *a = arg;\n"
			     "\tenum { ROW = %" PRId64 " };\n"
			     "\tint lo = a->n * ith / nth, hi = a->n * (ith + 1) / nth;\n"
			     "\tif (lo < hi)\n"
			     "\t\t%s(a->a + (int64_t)lo * ROW, %s, a->y + (int64_t)lo * ROW, hi - lo%s);\n"
			     "}\n",
			  par, row, kern, rope ? "a->b" : "a->b + (int64_t)lo * ROW",
			  rope ? ", a->pos + lo, a->f" : "");
	cg_printf(m->fwd, "\t{\n"
			  "\t\tRowsArg a = {%s, %s, %s, n, %s, %s};\n"
			  "\t\tif ((int64_t)n * %" PRId64 " >= BN_ROWS_PAR_MIN)\n"
			  "\t\t\tpool_run(st, %s, &a);\n"
			  "\t\telse\n"
			  "\t\t\t%s(&a, 0, 1);\n"
			  "\t}\n",
		  x, b2, y, rope ? "pos" : "NULL", rope ? ts : "0", row, par, par);
	return 0;
}

/* The rotation of position p: cos and sin of theta_i, theta_0 = p, theta_{i+1} = theta_i *
 * theta_scale iterated in float, divided by ff[i] where the model has frequency factors.
 * They are the same for every layer and head, q and k, so each position's row is kept once
 * computed (ROPE_POS positions, a process-wide table in .bss that only the positions used
 * touch): a decode step of n rows makes 2 * n_layer rope calls that would each compute
 * them again (2 * HALF sines and cosines a row). The table serves one (ff, theta_scale),
 * the first one asked for; other keys, and positions past the table, are computed into own
 * each time: the same floats either way. A row is published with release/acquire (state
 * 0 none, 1 being written by one thread, 2 ready), so contexts on other threads share it
 * safely. The helper is written once for all rope kernels of the same HALF, the nodes'
 * sizes and theta_scale being arguments. */
static int rope_angles(Em *m, const IrNode *n, int64_t half, const char *name)
{
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "#include <stdatomic.h>\n"
		     "enum { %s_POS = 8192 };\n"
		     "static float %s_tab[%s_POS][%" PRId64 "];\n"
		     "static atomic_int %s_ok[%s_POS]; /* words: RISC-V has no byte-wide compare-exchange without libatomic */\n"
		     "static atomic_int %s_key; /* 0 none, 1 being set, 2 set: */\n"
		     "static const float *%s_ff; /* the table's ff */\n"
		     "static uint32_t %s_ts; /* and theta_scale's bits */\n\n"
		     "static const float *%s(const float *ff, int32_t p, float theta_scale, float *own)\n{\n"
		     "\tenum { HALF = %" PRId64 " };\n"
		     "\tint key = atomic_load_explicit(&%s_key, memory_order_acquire), z = 0;\n"
		     "\tif (key == 0 && atomic_compare_exchange_strong(&%s_key, &z, 1)) {\n"
		     "\t\t%s_ff = ff;\n"
		     "\t\t%s_ts = f32_bits(theta_scale);\n"
		     "\t\tatomic_store_explicit(&%s_key, 2, memory_order_release);\n"
		     "\t\tkey = 2;\n"
		     "\t}\n"
		     "\tint keep = key == 2 && %s_ff == ff && %s_ts == f32_bits(theta_scale) && p >= 0 && p < %s_POS;\n"
		     "\tif (keep && atomic_load_explicit(&%s_ok[p], memory_order_acquire) == 2)\n"
		     "\t\treturn %s_tab[p];\n"
		     "\tfloat theta = (float)p;\n"
		     "\tfor (int i = 0; i < HALF; i++) {\n"
		     "\t\tfloat th = ff ? theta / ff[i] : theta;\n"
		     "\t\town[2 * i] = cosf(th);\n"
		     "\t\town[2 * i + 1] = sinf(th);\n"
		     "\t\ttheta *= theta_scale;\n"
		     "\t}\n"
		     "\tint none = 0;\n"
		     "\tif (keep && atomic_compare_exchange_strong(&%s_ok[p], &none, 1)) {\n"
		     "\t\tmemcpy(%s_tab[p], own, sizeof %s_tab[p]);\n"
		     "\t\tatomic_store_explicit(&%s_ok[p], 2, memory_order_release);\n"
		     "\t}\n"
		     "\treturn own;\n"
		     "}\n",
		  name, name, name, 2 * half, name, name, name, name, name, name, half, name, name,
		  name, name, name, name, name, name, name, name, name, name, name, name);
	return 0;
}

static int emit_rope(Em *m, const IrNode *n)
{
	int64_t row = ir_value_row(V(m, n->in[0]));
	int64_t hd = ir_attr_int(n, "head_dim", row), n_rot = ir_attr_int(n, "n_rot", hd);
	const char *mode = ir_attr_str(n, "mode", "neox");
	bool neox = strcmp(mode, "neox") == 0;
	if (!neox && strcmp(mode, "normal") != 0)
		return unsupported(m, n, "unknown rope mode (neox or normal)");
	if (hd <= 0 || row % hd || n_rot <= 0 || n_rot > hd || n_rot % 2)
		return unsupported(m, n, "head_dim must divide the row and n_rot be even, <= head_dim");
	if (n->n_in > 1 && (V(m, n->in[1])->dtype != IR_DT_F32 ||
			    ir_value_nelems(V(m, n->in[1]), 1) < n_rot / 2))
		return unsupported(m, n, "frequency factors must be f32 with n_rot/2 elements");
	float base = (float)ir_attr_float(n, "freq_base", 10000.0);
	float theta_scale = powf(base, -2.0f / (float)n_rot);
	char name[96], cs[96], x[64], ff[64], y[64], ts[48];
	snprintf(name, sizeof name, "rope_%s_hd%" PRId64 "_nrot%" PRId64 "_nh%" PRId64, mode, hd,
		 n_rot, row / hd);
	snprintf(cs, sizeof cs, "rope_angles_half%" PRId64, n_rot / 2);
	CgBuf *b;
	if ((rvv(m) && rvv_float_common(m, n)) || (!rvv(m) && rope_angles(m, n, n_rot / 2, cs)) ||
	    kern_for(m, n, name, &b))
		return m->e->code;
	if (b && rvv(m))
		rvv_rope_body(b, name, row, hd, n_rot / 2, neox);
	else if (b)
		cg_printf(b, "static void %s(const float *x, const float *ff, float *y, int n, const int32_t *pos, float theta_scale)\n{\n"
			     "\tenum { ROW = %" PRId64 ", HD = %" PRId64 ", HALF = %" PRId64 " };\n"
			     "\tfloat own[2 * HALF];\n"
			     "\tmemcpy(y, x, (size_t)n * ROW * sizeof(float));\n"
			     "\tfor (int t = 0; t < n; t++) {\n"
			     "\t\tconst float *cs = %s(ff, pos[t], theta_scale, own);\n"
			     "\t\tfor (int h = 0; h < ROW / HD; h++) {\n"
			     "\t\t\tconst float *xh = x + (int64_t)t * ROW + h * HD;\n"
			     "\t\t\tfloat *yh = y + (int64_t)t * ROW + h * HD;\n"
			     "\t\t\tfor (int i = 0; i < HALF; i++) {\n"
			     "\t\t\t\tint ia = %s, ib = %s;\n"
			     "\t\t\t\tfloat x0 = xh[ia], x1 = xh[ib], cv = cs[2 * i], sv = cs[2 * i + 1];\n"
			     "\t\t\t\tyh[ia] = x0 * cv - x1 * sv;\n"
			     "\t\t\t\tyh[ib] = x0 * sv + x1 * cv;\n"
			     "\t\t\t}\n"
			     "\t\t}\n"
			     "\t}\n}\n",
			  name, row, hd, n_rot / 2, cs, neox ? "i" : "2 * i", neox ? "i + HALF" : "2 * i + 1");
	return rows_call(m, n, name, row, true, ref(m, n->in[0], "float", x, sizeof x),
			 n->n_in > 1 ? ref(m, n->in[1], "float", ff, sizeof ff) : "NULL",
			 ref(m, n->out[0], "float", y, sizeof y), flit(theta_scale, ts, sizeof ts));
}

/* Attention per (row, q head), threaded over q heads; each head has its own row of n_ctx
 * scores after the KV cache. Float order as the interpreter's op_attention: q rounded to
 * f16; q.K in 16 float lanes (i % 16) reduced by a fixed tree (lane i plus lane i + 8,
 * then ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))): each product of two f16 values
 * (11 x 11 significant bits) is exact in float, so only the adds round and a fused
 * multiply-add rounds what the add of the product rounds; the softmax as the prelude's
 * softmax_row (exp by softmax_exp, the sum in 8 double lanes; vectors on AVX2 and
 * AVX-512), weights rounded to f16 in the rows in step mode (b->step; without it,
 * single-token calls); .V in float per output element, keys in order, each step one
 * fused multiply-add (fmaf; an f16 value times a float weight, 11 x 24 bits, is not exact
 * in float, so the one rounding is part of the definition). Row t attends to positions 0..pos[t] of its sequence seq[t]
 * (seq NULL: 0), whose K and V rows start seq[t] * n_ctx rows into the layer's cache.
 * With AVX-512 (head_dim a multiple of 16) the 16 lanes are one zmm and .V runs 16
 * dimensions per vector: the same operations, so the same bits. With head_dim
 * a multiple of 32 (the usual 64 and 128) AVX-512 runs attn_body_zg instead, and AVX2
 * (head_dim a multiple of 8) attn_body_yg: several heads' chains in flight, the
 * conversions shared. */
static void attn_body(CgBuf *b, const char *name, int64_t nh, int64_t nkv, int64_t hd, char vec)
{
	bool z = vec == 'z';
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst AttnArg *a = arg;\n"
		     "\tenum { NH = %" PRId64 ", HD = %" PRId64 ", KW = %" PRId64 ", QW = NH * HD, GROUP = NH / %" PRId64 " };\n"
		     "\tfloat qh[HD];\n",
		  name, nh, hd, nkv * hd, nkv);
	if (z)
		cg_printf(b, "\t__m512 acc[HD / 16];\n");
	else
		cg_printf(b, "\tfloat acc[HD];\n");
	cg_printf(b, "\tfor (int h = NH * ith / nth; h < NH * (ith + 1) / nth; h++) {\n"
		     "\t\tfloat *w = a->scores + (int64_t)h * a->n_ctx;\n"
		     "\t\tconst uint16_t *Kh = a->K + (h / GROUP) * HD, *Vh = a->V + (h / GROUP) * HD;\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tint64_t n_keys = (int64_t)a->pos[t] + 1;\n"
		     "\t\t\tint64_t sb = a->seq ? (int64_t)a->seq[t] * a->n_ctx * KW : 0;\n"
		     "\t\t\tconst uint16_t *Kg = Kh + sb, *Vg = Vh + sb;\n"
		     "\t\t\tround_f16_n(a->q + (int64_t)t * QW + h * HD, qh, HD);\n"
		     "\t\t\tfloat mx = -INFINITY;\n");
	if (z)
		cg_printf(b, "\t\t\tfor (int64_t j = 0; j < n_keys; j++) {\n"
			     "\t\t\t\tconst uint16_t *kj = Kg + j * KW;\n"
			     "\t\t\t\t__m512 s = _mm512_setzero_ps();\n"
			     "\t\t\t\tfor (int i = 0; i < HD; i += 16)\n"
			     "\t\t\t\t\ts = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kj + i))), _mm512_loadu_ps(qh + i), s);\n"
			     "\t\t\t\tw[j] = qk_lanes16(s) * a->scale;\n"
			     "\t\t\t\tmx = max_score(mx, w[j]);\n"
			     "\t\t\t}\n");
	else
		cg_printf(b, "\t\t\tfor (int64_t j = 0; j < n_keys; j++) {\n"
			     "\t\t\t\tconst uint16_t *kj = Kg + j * KW;\n"
			     "\t\t\t\tfloat l[16] = {0};\n"
			     "\t\t\t\tfor (int i = 0; i < HD; i++)\n"
			     "\t\t\t\t\tl[i %% 16] += f16_to_f32(kj[i]) * qh[i];\n"
			     "\t\t\t\tfor (int i = 0; i < 8; i++)\n"
			     "\t\t\t\t\tl[i] += l[i + 8];\n"
			     "\t\t\t\tw[j] = (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))) * a->scale;\n"
			     "\t\t\t\tmx = max_score(mx, w[j]);\n"
			     "\t\t\t}\n");
	cg_printf(b, "\t\t\tint step = a->step ? a->step[t] != 0 : a->n == 1;\n"
		     "\t\t\tsoftmax_row(w, n_keys, mx, step);\n"
		     "\t\t\tfloat *o = a->y + (int64_t)t * QW + h * HD;\n");
	if (z)
		cg_printf(b, "\t\t\tfor (int i = 0; i < HD / 16; i++)\n"
			     "\t\t\t\tacc[i] = _mm512_setzero_ps();\n"
			     "\t\t\tfor (int64_t j = 0; j < n_keys; j++) {\n"
			     "\t\t\t\tconst uint16_t *vj = Vg + j * KW;\n"
			     "\t\t\t\tconst __m512 wj = _mm512_set1_ps(w[j]);\n"
			     "\t\t\t\tfor (int i = 0; i < HD; i += 16)\n"
			     "\t\t\t\t\tacc[i / 16] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vj + i))), wj, acc[i / 16]);\n"
			     "\t\t\t}\n"
			     "\t\t\tfor (int i = 0; i < HD; i += 16)\n"
			     "\t\t\t\t_mm512_storeu_ps(o + i, acc[i / 16]);\n");
	else
		cg_printf(b, "\t\t\tfor (int i = 0; i < HD; i++)\n"
			     "\t\t\t\tacc[i] = 0.0f;\n"
			     "\t\t\tfor (int64_t j = 0; j < n_keys; j++) {\n"
			     "\t\t\t\tconst uint16_t *vj = Vg + j * KW;\n"
			     "\t\t\t\tfor (int i = 0; i < HD; i++)\n"
			     "\t\t\t\t\tacc[i] = fmaf(f16_to_f32(vj[i]), w[j], acc[i]);\n"
			     "\t\t\t}\n"
			     "\t\t\tfor (int i = 0; i < HD; i++)\n"
			     "\t\t\t\to[i] = acc[i];\n");
	cg_printf(b, "\t\t}\n"
		     "\t}\n}\n");
}

/* The grouped kernels' entry (AVX-512 attn_body_zg, AVX2 attn_body_yg): the q heads a thread
 * owns of one KV head, up to 4 at a time, through <name>_qk<k> and <name>_v<k>; q rounded to
 * f16 once per row and head (qf); the softmax per head in key order. */
static void attn_group_main(CgBuf *b, const char *name, int64_t nh, int64_t nkv, int64_t hd)
{
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst AttnArg *a = arg;\n"
		     "\tenum { NH = %" PRId64 ", HD = %" PRId64 ", KW = %" PRId64 ", QW = NH * HD, GROUP = NH / %" PRId64 " };\n"
		     "\tfloat qf[4 * HD];\n"
		     "\tint hend = NH * (ith + 1) / nth;\n"
		     "\tfor (int h0 = NH * ith / nth; h0 < hend;) {\n"
		     "\t\t/* this thread's heads h0..h1-1 of KV head h0 / GROUP */\n"
		     "\t\tint h1 = (h0 / GROUP + 1) * GROUP < hend ? (h0 / GROUP + 1) * GROUP : hend;\n"
		     "\t\tconst uint16_t *Kh = a->K + (h0 / GROUP) * HD, *Vh = a->V + (h0 / GROUP) * HD;\n"
		     "\t\tfor (int t = 0; t < a->n; t++) {\n"
		     "\t\t\tint64_t n_keys = (int64_t)a->pos[t] + 1;\n"
		     "\t\t\tint64_t sb = a->seq ? (int64_t)a->seq[t] * a->n_ctx * KW : 0;\n"
		     "\t\t\tconst uint16_t *Kg = Kh + sb, *Vg = Vh + sb;\n"
		     "\t\t\tint step = a->step ? a->step[t] != 0 : a->n == 1;\n"
		     "\t\t\t/* the first row of a sequence in this call finds its keys cold */\n"
		     "\t\t\tint pf = t == 0 || (a->seq && a->seq[t] != a->seq[t - 1]);\n"
		     "\t\t\tfor (int h = h0; h < h1; h += 4) {\n"
		     "\t\t\t\tfloat *w[4], *o[4], mx[4];\n"
		     "\t\t\t\tint k = h1 - h < 4 ? h1 - h : 4;\n"
		     "\t\t\t\tfor (int u = 0; u < k; u++) {\n"
		     "\t\t\t\t\tw[u] = a->scores + (int64_t)(h + u) * a->n_ctx;\n"
		     "\t\t\t\t\to[u] = a->y + (int64_t)t * QW + (h + u) * HD;\n"
		     "\t\t\t\t\tmx[u] = -INFINITY;\n"
		     "\t\t\t\t\tround_f16_n(a->q + (int64_t)t * QW + (h + u) * HD, qf + u * HD, HD);\n"
		     "\t\t\t\t}\n"
		     "\t\t\t\tswitch (k) {\n"
		     "\t\t\t\tcase 4: %s_qk4(Kg, qf, n_keys, w, mx, a->scale, pf); break;\n"
		     "\t\t\t\tcase 3: %s_qk3(Kg, qf, n_keys, w, mx, a->scale, pf); break;\n"
		     "\t\t\t\tcase 2: %s_qk2(Kg, qf, n_keys, w, mx, a->scale, pf); break;\n"
		     "\t\t\t\tdefault: %s_qk1(Kg, qf, n_keys, w, mx, a->scale, pf); break;\n"
		     "\t\t\t\t}\n"
		     "\t\t\t\tfor (int u = 0; u < k; u++)\n"
		     "\t\t\t\t\tsoftmax_row(w[u], n_keys, mx[u], step);\n"
		     "\t\t\t\tswitch (k) {\n"
		     "\t\t\t\tcase 4: %s_v4(Vg, w, n_keys, o, pf); break;\n"
		     "\t\t\t\tcase 3: %s_v3(Vg, w, n_keys, o, pf); break;\n"
		     "\t\t\t\tcase 2: %s_v2(Vg, w, n_keys, o, pf); break;\n"
		     "\t\t\t\tdefault: %s_v1(Vg, w, n_keys, o, pf); break;\n"
		     "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\t}\n"
		     "\t\th0 = h1;\n"
		     "\t}\n}\n",
		  name, nh, hd, nkv * hd, nkv, name, name, name, name, name, name, name, name);
}

/* The AVX-512 attention when head_dim is a multiple of 32: the q heads of one KV head
 * together (up to 4 at a time; the heads a thread owns of one group), so that each key's
 * K row (q.K, four keys at a time) and V row (.V, 32 or 64 dimensions at a time) is
 * converted once for them all instead of once per head: .V was ~9.5 and q.K ~7
 * of the ~17.5 ms of decode attention at 1024 positions of the 2B-4T shape, bound by those
 * conversions; with this, ~11 ms. The softmax stays per head. Each q.K is the same chain
 * as attn_body's, each .V sum the same chain in key order: the same bits. */
static void attn_body_zg(CgBuf *b, const char *name, int64_t nh, int64_t nkv, int64_t hd)
{
	/* four keys' q.K by qk_lanes16's tree, reduced side by side: lanes i + (i + 8) of a
	 * and b (then c and d) in one add; then, for all four, lanes i + (i + 4) of those;
	 * then i + (i + 2), then i + (i + 1), each key's sum in lane 0 of its 128-bit block
	 * (a sum and its mirror are the same float). ~13 operations for the four instead of
	 * ~6 each, plus the scale done four at a time. */
	cg_printf(b, "static inline __m128 %s_lanes4(__m512 a, __m512 b, __m512 c, __m512 d, float scale)\n{\n"
		     "\tconst __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));\n"
		     "\tconst __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));\n"
		     "\tconst __m512 z = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));\n"
		     "\tconst __m512 y = _mm512_add_ps(z, _mm512_permute_ps(z, 0x4e));\n"
		     "\tconst __m512 s = _mm512_add_ps(y, _mm512_permute_ps(y, 0xb1));\n"
		     "\tconst __m512 r = _mm512_permutexvar_ps(_mm512_set_epi32(15, 14, 13, 11, 10, 9, 7, 6, 5, 3, 2, 1, 12, 8, 4, 0), s);\n"
		     "\treturn _mm_mul_ps(_mm512_castps512_ps128(r), _mm_set1_ps(scale));\n"
		     "}\n\n",
		  name);
	/* In a decode step the K and V rows come from memory, one position's 2 * HD bytes of
	 * each every KW * 2 (1280 on the 2B-4T shape): the hardware prefetchers, which stop
	 * at 4 KiB pages, leave each key a miss. The first row of each sequence in a call
	 * asks for them ATTN_PF keys ahead (later rows of that sequence find them in cache):
	 * 30 layers of 2B-4T attention at 1024 positions, one thread, KV not in cache, 20.3
	 * -> 12.5-14 ms a step; in cache ~5% slower, hence not for the later rows. ATTN_PF:
	 * the prelude. */
	/* q.K of k heads, four keys at a time: the k x 4 sums s<h>_<u>, each the chain of
	 * attn_body's (16 float lanes over i, then the tree) */
	for (int k = 1; k <= 4; k++) {
		cg_printf(b, "static inline void %s_qk%d(const uint16_t *Kg, const float *qf, int64_t n_keys, float *const *w, float *mx, float scale, int pf)\n{\n"
			     "\tenum { HD = %" PRId64 ", KW = %" PRId64 " };\n"
			     "\tint64_t j = 0;\n"
			     "\t__m128 mv[%d];\n"
			     "\tfor (int h = 0; h < %d; h++)\n"
			     "\t\tmv[h] = _mm_set1_ps(-INFINITY);\n"
			     "\tfor (; j + 4 <= n_keys; j += 4) {\n"
			     "\t\tconst uint16_t *kj = Kg + j * KW;\n"
			     "\t\tif (pf)\n"
			     "\t\t\tfor (int u = 0; u < 4; u++)\n"
			     "\t\t\t\tfor (int i = 0; i < HD; i += 32)\n"
			     "\t\t\t\t\t_mm_prefetch((const char *)(kj + (ATTN_PF + u) * KW + i), _MM_HINT_T0);\n",
			  name, k, hd, nkv * hd, k, k);
		for (int h = 0; h < k; h++)
			cg_printf(b, "\t\t__m512 s%d_0 = _mm512_setzero_ps(), s%d_1 = s%d_0, s%d_2 = s%d_0, s%d_3 = s%d_0;\n",
				  h, h, h, h, h, h, h);
		cg_printf(b, "\t\tfor (int i = 0; i < HD; i += 16) {\n");
		for (int u = 0; u < 4; u++)
			cg_printf(b, "\t\t\tconst __m512 k%d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kj + %d * KW + i)));\n",
				  u, u);
		for (int h = 0; h < k; h++) {
			cg_printf(b, "\t\t\tconst __m512 q%d = _mm512_loadu_ps(qf + %d * HD + i);\n", h, h);
			for (int u = 0; u < 4; u++)
				cg_printf(b, "\t\t\ts%d_%d = _mm512_fmadd_ps(k%d, q%d, s%d_%d);\n",
					  h, u, u, h, h, u);
		}
		cg_printf(b, "\t\t}\n");
		for (int h = 0; h < k; h++)
			cg_printf(b, "\t\t{\n"
				     "\t\t\tconst __m128 r = %s_lanes4(s%d_0, s%d_1, s%d_2, s%d_3, scale);\n"
				     "\t\t\t_mm_storeu_ps(w[%d] + j, r);\n"
				     "\t\t\tmv[%d] = _mm_max_ps(r, mv[%d]);\n"
				     "\t\t}\n",
				  name, h, h, h, h, h, h, h);
		/* each lane keeps max_score's maximum of its keys (maxps: r > mv ? r : mv, so a
		 * NaN never wins), then the lanes' maximum: the same as in key order but for
		 * which zero wins a tie of +0 and -0, which w - mx does not tell apart */
		cg_printf(b, "\t}\n"
			     "\tfor (int h = 0; h < %d; h++) {\n"
			     "\t\tfloat t[4];\n"
			     "\t\t_mm_storeu_ps(t, mv[h]);\n"
			     "\t\tfor (int u = 0; u < 4; u++)\n"
			     "\t\t\tmx[h] = max_score(mx[h], t[u]);\n"
			     "\t}\n",
			  k);
		cg_printf(b, "\tfor (; j < n_keys; j++) {\n"
			     "\t\tconst uint16_t *kj = Kg + j * KW;\n"
			     "\t\tfor (int h = 0; h < %d; h++) {\n"
			     "\t\t\t__m512 s = _mm512_setzero_ps();\n"
			     "\t\t\tfor (int i = 0; i < HD; i += 16)\n"
			     "\t\t\t\ts = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kj + i))), _mm512_loadu_ps(qf + h * HD + i), s);\n"
			     "\t\t\tw[h][j] = qk_lanes16(s) * scale;\n"
			     "\t\t\tmx[h] = max_score(mx[h], w[h][j]);\n"
			     "\t\t}\n"
			     "\t}\n"
			     "}\n\n",
			  k);
	}
	/* .V of k heads over blocks of 64 keys, DW dimensions at a time (acc a<h>_<i>, 16 floats
	 * each, carried from block to block in memory, exactly), so that the passes over a
	 * block's V rows find them in L1. With pf the V rows are asked for a block ahead, in
	 * the block's first pass (the first block on entry): ATTN_PF keys of one pass had left
	 * each line a miss from memory. */
	int dw = hd % 64 == 0 ? 64 : 32;
	for (int k = 1; k <= 4; k++) {
		cg_printf(b, "static inline void %s_v%d(const uint16_t *Vg, float *const *w, int64_t n_keys, float *const *o, int pf)\n{\n"
			     "\tenum { HD = %" PRId64 ", KW = %" PRId64 ", JB = 64, DW = %d };\n"
			     "\t__m512 acc[%d * HD / 16];\n"
			     "\tfor (int i = 0; i < %d * HD / 16; i++)\n"
			     "\t\tacc[i] = _mm512_setzero_ps();\n"
			     "\tif (pf)\n"
			     "\t\tfor (int64_t j = 0; j < JB && j < n_keys; j++)\n"
			     "\t\t\tfor (int i = 0; i < HD; i += 32)\n"
			     "\t\t\t\t_mm_prefetch((const char *)(Vg + j * KW + i), _MM_HINT_T0);\n"
			     "\tfor (int64_t j0 = 0; j0 < n_keys; j0 += JB) {\n"
			     "\t\tconst int64_t j1 = n_keys - j0 < JB ? n_keys : j0 + JB;\n"
			     "\t\tfor (int d = 0; d < HD; d += DW) {\n",
			  name, k, hd, nkv * hd, dw, k, k);
		for (int h = 0; h < k; h++)
			for (int i = 0; i < dw / 16; i++)
				cg_printf(b, "\t\t\t__m512 a%d_%d = acc[%d * HD / 16 + d / 16 + %d];\n", h, i, h, i);
		cg_printf(b, "\t\t\tfor (int64_t j = j0; j < j1; j++) {\n"
			     "\t\t\t\tconst uint16_t *vj = Vg + j * KW + d;\n"
			     "\t\t\t\tif (pf && d == 0)\n"
			     "\t\t\t\t\tfor (int i = 0; i < HD; i += 32)\n"
			     "\t\t\t\t\t\t_mm_prefetch((const char *)(vj + JB * KW + i), _MM_HINT_T0);\n");
		for (int i = 0; i < dw / 16; i++)
			cg_printf(b, "\t\t\t\tconst __m512 v%d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vj + %d)));\n",
				  i, 16 * i);
		for (int h = 0; h < k; h++) {
			cg_printf(b, "\t\t\t\tconst __m512 w%d = _mm512_set1_ps(w[%d][j]);\n", h, h);
			for (int i = 0; i < dw / 16; i++)
				cg_printf(b, "\t\t\t\ta%d_%d = _mm512_fmadd_ps(v%d, w%d, a%d_%d);\n",
					  h, i, i, h, h, i);
		}
		cg_printf(b, "\t\t\t}\n");
		for (int h = 0; h < k; h++)
			for (int i = 0; i < dw / 16; i++)
				cg_printf(b, "\t\t\tacc[%d * HD / 16 + d / 16 + %d] = a%d_%d;\n", h, i, h, i);
		cg_printf(b, "\t\t}\n"
			     "\t}\n"
			     "\tfor (int h = 0; h < %d; h++)\n"
			     "\t\tfor (int i = 0; i < HD; i += 16)\n"
			     "\t\t\t_mm512_storeu_ps(o[h] + i, acc[h * HD / 16 + i / 16]);\n"
			     "}\n\n",
			  k);
	}
	attn_group_main(b, name, nh, nkv, hd);
}

/* The AVX2 attention when head_dim is a multiple of 8: attn_body's 16 float lanes of q.K
 * as two ymm (lanes 0..7 and 8..15; their sum is the tree's first level, qk_lanes8x2), the
 * q heads of one KV head together (up to 4 at a time, as attn_body_zg), each key's K and V
 * row converted once for them all, and attn_body_zg's prefetch in the first row of each
 * sequence in a call. 16 ymm registers: q.K one key at a time (two chains per head), .V
 * 16 dimensions at a time (8 if head_dim is not a multiple of 16; two accumulators per
 * head) over blocks of 64 keys, so that the passes over a block's V rows find them in
 * L1; the accumulators carry from block to block in memory, exactly. The same chains in the same order: the
 * same bits. */
static void attn_body_yg(CgBuf *b, const char *name, int64_t nh, int64_t nkv, int64_t hd)
{
	for (int k = 1; k <= 4; k++) {
		cg_printf(b, "static inline void %s_qk%d(const uint16_t *Kg, const float *qf, int64_t n_keys, float *const *w, float *mx, float scale, int pf)\n{\n"
			     "\tenum { HD = %" PRId64 ", KW = %" PRId64 " };\n"
			     "\tfor (int64_t j = 0; j < n_keys; j++) {\n"
			     "\t\tconst uint16_t *kj = Kg + j * KW;\n"
			     "\t\tif (pf)\n"
			     "\t\t\tfor (int i = 0; i < HD; i += 32)\n"
			     "\t\t\t\t_mm_prefetch((const char *)(kj + ATTN_PF * KW + i), _MM_HINT_T0);\n",
			  name, k, hd, nkv * hd);
		for (int h = 0; h < k; h++)
			cg_printf(b, "\t\t__m256 a%d = _mm256_setzero_ps(), b%d = a%d;\n", h, h, h);
		cg_printf(b, "\t\tfor (int i = 0; i + 16 <= HD; i += 16) {\n"
			     "\t\t\tconst __m256 kl = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + i)));\n"
			     "\t\t\tconst __m256 kh = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + i + 8)));\n");
		for (int h = 0; h < k; h++)
			cg_printf(b, "\t\t\ta%d = _mm256_fmadd_ps(kl, _mm256_loadu_ps(qf + %d * HD + i), a%d);\n"
				     "\t\t\tb%d = _mm256_fmadd_ps(kh, _mm256_loadu_ps(qf + %d * HD + i + 8), b%d);\n",
				  h, h, h, h, h, h);
		cg_printf(b, "\t\t}\n");
		if (hd % 16) {
			/* the last 8 elements: lanes 0..7 */
			cg_printf(b, "\t\t{\n"
				     "\t\t\tconst __m256 kl = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + HD - 8)));\n");
			for (int h = 0; h < k; h++)
				cg_printf(b, "\t\t\ta%d = _mm256_fmadd_ps(kl, _mm256_loadu_ps(qf + %d * HD + HD - 8), a%d);\n",
					  h, h, h);
			cg_printf(b, "\t\t}\n");
		}
		for (int h = 0; h < k; h++)
			cg_printf(b, "\t\tw[%d][j] = qk_lanes8x2(a%d, b%d) * scale;\n"
				     "\t\tmx[%d] = max_score(mx[%d], w[%d][j]);\n",
				  h, h, h, h, h, h);
		cg_printf(b, "\t}\n}\n\n");
	}
	/* .V: DW dimensions a pass, 8 floats a vector */
	int dw = hd % 16 == 0 ? 16 : 8;
	for (int k = 1; k <= 4; k++) {
		cg_printf(b, "static inline void %s_v%d(const uint16_t *Vg, float *const *w, int64_t n_keys, float *const *o, int pf)\n{\n"
			     "\tenum { HD = %" PRId64 ", KW = %" PRId64 ", JB = 64, DW = %d };\n"
			     "\tfloat acc[%d * HD];\n"
			     "\tfor (int i = 0; i < %d * HD; i++)\n"
			     "\t\tacc[i] = 0.0f;\n"
			     "\tfor (int64_t j0 = 0; j0 < n_keys; j0 += JB) {\n"
			     "\t\tconst int64_t j1 = n_keys - j0 < JB ? n_keys : j0 + JB;\n"
			     "\t\tfor (int d = 0; d < HD; d += DW) {\n",
			  name, k, hd, nkv * hd, dw, k, k);
		for (int h = 0; h < k; h++)
			for (int i = 0; i < dw / 8; i++)
				cg_printf(b, "\t\t\t__m256 a%d_%d = _mm256_loadu_ps(acc + %d * HD + d + %d);\n", h, i, h, 8 * i);
		cg_printf(b, "\t\t\tfor (int64_t j = j0; j < j1; j++) {\n"
			     "\t\t\t\tconst uint16_t *vj = Vg + j * KW + d;\n"
			     "\t\t\t\tif (pf && d %% 32 == 0)\n"
			     "\t\t\t\t\t_mm_prefetch((const char *)(vj + ATTN_PF * KW), _MM_HINT_T0);\n");
		for (int i = 0; i < dw / 8; i++)
			cg_printf(b, "\t\t\t\tconst __m256 v%d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vj + %d)));\n",
				  i, 8 * i);
		for (int h = 0; h < k; h++) {
			cg_printf(b, "\t\t\t\tconst __m256 w%d = _mm256_broadcast_ss(&w[%d][j]);\n", h, h);
			for (int i = 0; i < dw / 8; i++)
				cg_printf(b, "\t\t\t\ta%d_%d = _mm256_fmadd_ps(v%d, w%d, a%d_%d);\n", h, i, i, h, h, i);
		}
		cg_printf(b, "\t\t\t}\n");
		for (int h = 0; h < k; h++)
			for (int i = 0; i < dw / 8; i++)
				cg_printf(b, "\t\t\t_mm256_storeu_ps(acc + %d * HD + d + %d, a%d_%d);\n", h, 8 * i, h, i);
		cg_printf(b, "\t\t}\n"
			     "\t}\n"
			     "\tfor (int h = 0; h < %d; h++)\n"
			     "\t\tmemcpy(o[h], acc + h * HD, sizeof(float) * HD);\n"
			     "}\n\n",
			  k);
	}
	attn_group_main(b, name, nh, nkv, hd);
}

static int emit_attention(Em *m, const IrNode *n)
{
	int64_t nh = ir_attr_int(n, "n_head", 1), nkv = ir_attr_int(n, "n_head_kv", nh);
	int64_t hd = ir_attr_int(n, "head_dim", 1), layer = ir_attr_int(n, "layer", 0);
	if (nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0 || layer < 0 || layer >= m->n_layer ||
	    ir_value_row(V(m, n->in[0])) != nh * hd || ir_value_row(V(m, n->in[1])) != nkv * hd ||
	    ir_value_row(V(m, n->in[2])) != nkv * hd)
		return unsupported(m, n, "inconsistent heads, head_dim or layer");
	float scale = (float)ir_attr_float(n, "scale", 1.0 / sqrt((double)hd));
	char name[96], store[96], q[64], k[64], v[64], y[64], sc[48];
	int64_t kw = nkv * hd;
	snprintf(store, sizeof store, "kv_store_w%" PRId64, kw);
	CgBuf *b;
	if (kern_for(m, n, store, &b))
		return m->e->code;
	if (b)
		/* row t goes to row seq[t] * n_ctx + pos[t] of the layer's K and V */
		cg_printf(b, "static void %s(const float *k, const float *v, uint16_t *K, uint16_t *V, int n, const int32_t *pos, const int32_t *seq, int64_t n_ctx)\n{\n"
			     "\tenum { KW = %" PRId64 " };\n"
			     "\tfor (int t = 0; t < n; t++) {\n"
			     "\t\tint64_t at = ((seq ? (int64_t)seq[t] * n_ctx : 0) + pos[t]) * KW;\n"
			     "\t\tf32_to_f16_n(k + (int64_t)t * KW, K + at, KW);\n"
			     "\t\tf32_to_f16_n(v + (int64_t)t * KW, V + at, KW);\n"
			     "\t}\n}\n",
			  store, kw);
	bool z = m->isa.level == CG_ISA_AVX512 && hd % 16 == 0;
	bool yv = m->isa.level == CG_ISA_AVX2 && hd % 8 == 0;
	snprintf(name, sizeof name, "attn%s_h%" PRId64 "_kv%" PRId64 "_hd%" PRId64,
		 z ? "z" : yv ? "y" : rvv(m) ? "v" : "", nh, nkv, hd);
	if ((rvv(m) && rvv_float_common(m, n)) || kern_for(m, n, name, &b))
		return m->e->code;
	if (b && rvv(m))
		rvv_attn_body(b, name, nh, nkv, hd);
	else if (b && z && hd % 32 == 0)
		attn_body_zg(b, name, nh, nkv, hd);
	else if (b && yv)
		attn_body_yg(b, name, nh, nkv, hd);
	else if (b)
		attn_body(b, name, nh, nkv, hd, z ? 'z' : 0);
	/* kvs: n_ctx * n_seq, the rows of one layer's K (or V) */
	cg_printf(m->fwd, "\t{\n"
			  "\t\tuint16_t *K = st->kv + kvs * %" PRId64 ", *V = K + kvs * %" PRId64 ";\n"
			  "\t\t%s(%s, %s, K, V, n, pos, seq, st->n_ctx);\n"
			  "\t\tAttnArg a = {%s, K, V, (float *)(st->kv + kvs * KV_ELEMS), %s, n, pos, seq, st->n_ctx, %s, b->step};\n"
			  "\t\tpool_run(st, %s, &a);\n"
			  "\t}\n",
		  m->kv_off[layer], kw, store, ref(m, n->in[1], "float", k, sizeof k),
		  ref(m, n->in[2], "float", v, sizeof v), ref(m, n->in[0], "float", q, sizeof q),
		  ref(m, n->out[0], "float", y, sizeof y), flit(scale, sc, sizeof sc), name);
	return 0;
}

static int emit_glu(Em *m, const IrNode *n, bool silu)
{
	int64_t k = ir_value_row(V(m, n->in[0]));
	if (ir_value_row(V(m, n->in[1])) != k || !ir_value_has_t(V(m, n->in[1])))
		return unsupported(m, n, "gate and up must be activations of one shape");
	char name[96], g[64], u[64], y[64];
	snprintf(name, sizeof name, "%s_glu_n%" PRId64, silu ? "silu" : "relu2", k);
	CgBuf *b;
	if ((rvv(m) && !silu && rvv_float_common(m, n)) || kern_for(m, n, name, &b))
		return m->e->code;
	if (b && rvv(m) && !silu)
		rvv_relu2_glu_body(b, name, k);
	else if (b && silu)
		/* the prelude's silu_glu: its exp is the softmax's, in vectors where the target
		 * has them */
		cg_printf(b, "static void %s(const float *g, const float *u, float *y, int n)\n{\n"
			     "\tsilu_glu(g, u, y, (int64_t)n * %" PRId64 ");\n"
			     "}\n",
			  name, k);
	else if (b)
		/* g > 0 ? g : +0 as a mask, without a branch: the loop vectorizes (a branch on the
		 * gate's sign mispredicts half the time) */
		cg_printf(b, "static void %s(const float *g, const float *u, float *y, int n)\n{\n"
			     "\tfor (int64_t i = 0; i < (int64_t)n * %" PRId64 "; i++) {\n"
			     "\t\tfloat a = bits_f32(f32_bits(g[i]) & (g[i] > 0.0f ? 0xffffffffu : 0u));\n"
			     "\t\ta = a * a; /* in f32: relu(gate)^2 overflows f16 */\n"
			     "\t\ty[i] = a * u[i];\n"
			     "\t}\n}\n",
			  name, k);
	return rows_call(m, n, name, k, false, ref(m, n->in[0], "float", g, sizeof g),
			 ref(m, n->in[1], "float", u, sizeof u), ref(m, n->out[0], "float", y, sizeof y),
			 NULL);
}

static int emit_relu2_glu(Em *m, const IrNode *n)
{
	return emit_glu(m, n, false);
}

static int emit_silu_glu(Em *m, const IrNode *n)
{
	return emit_glu(m, n, true);
}

/* a (+|*) b: b per element, per row position (no token dim) or one scalar. */
static int emit_binary(Em *m, const IrNode *n, bool mul)
{
	const IrValue *a = V(m, n->in[0]), *bv = V(m, n->in[1]);
	int64_t row = ir_value_row(a);
	if (!ir_value_has_t(a))
		return unsupported(m, n, "the first operand must be an activation");
	const char *form, *idx;
	if (ir_value_has_t(bv) && ir_value_row(bv) == row) {
		form = "";
		idx = "t * ROW + i";
	} else if (!ir_value_has_t(bv) && ir_value_nelems(bv, 1) == 1) {
		form = "_b1";
		idx = "0";
	} else if (!ir_value_has_t(bv) && ir_value_nelems(bv, 1) == row) {
		form = "_row";
		idx = "i";
	} else {
		return unsupported(m, n, "b must match a, be one row or one element");
	}
	char name[96], x[64], y[64], o[64];
	snprintf(name, sizeof name, "%s_n%" PRId64 "%s", mul ? "mul" : "add", row, form);
	CgBuf *b;
	if ((rvv(m) && rvv_float_common(m, n)) || kern_for(m, n, name, &b))
		return m->e->code;
	if (b && rvv(m))
		rvv_binary_body(b, name, row, form, mul);
	else if (b)
		cg_printf(b, "static void %s(const float *a, const float *b, float *y, int n)\n{\n"
			     "\tenum { ROW = %" PRId64 " };\n"
			     "\tfor (int64_t t = 0; t < n; t++)\n"
			     "\t\tfor (int64_t i = 0; i < ROW; i++)\n"
			     "\t\t\ty[t * ROW + i] = a[t * ROW + i] %c b[%s];\n"
			     "}\n",
			  name, row, mul ? '*' : '+', idx);
	cg_printf(m->fwd, "\t%s(%s, %s, %s, n);\n", name, ref(m, n->in[0], "float", x, sizeof x),
		  ref(m, n->in[1], "float", y, sizeof y), ref(m, n->out[0], "float", o, sizeof o));
	return 0;
}

static int emit_add(Em *m, const IrNode *n)
{
	return emit_binary(m, n, false);
}

static int emit_mul(Em *m, const IrNode *n)
{
	return emit_binary(m, n, true);
}

/* ORDER IR_OP */
static const EmitFn emit_fn[] = {
	emit_embed, emit_rmsnorm, emit_quant_act, emit_ternary_matmul, emit_matmul, emit_rope,
	emit_attention, emit_relu2_glu, emit_silu_glu, emit_add, emit_mul, emit_rmsnorm_quant,
	emit_rmsnorm_quant,
};
_Static_assert(sizeof emit_fn / sizeof emit_fn[0] == IR_OP_COUNT, "emit_fn must cover every op");

/* ---- planning: the KV cache (payload and scratch: cg_plan.c) ------------------- */

/* The KV cache layout (ir_kv.c): the plan_kv pass's, checked, when it ran; else the same
 * planner run here, so the program is the same either way. Per layer K then V, each
 * [n_seq][n_ctx][kv_width] f16; then a row of n_ctx float scores per q head for the
 * attention kernels. */
static int plan_kv(Em *m)
{
	IrKvPlan p;
	bool found;
	int rc = ir_kv_read(m->g, &p, &found, m->e);
	if (!rc && !found)
		rc = ir_kv_plan(m->g, &p, m->e);
	if (rc)
		return bn_err_prefix(m->e, "codegen (cpu)");
	m->n_layer = p.n_layer;
	m->kv_off = p.off;
	m->kv_w = p.width;
	m->kv_elems = p.elems;
	m->max_heads = p.max_heads;
	return 0;
}

/* ---- the file ------------------------------------------------------------------- */

/* cg_cpu_prelude (codegen/cpu/cg_cpu_prelude.h, embedded at build time) starts the file. */

static void put_cstr(CgBuf *b, const char *s)
{
	cg_put_cstr(b, s, strlen(s));
}

/* The residual stream is what every layer adds to: the embedding rows, then each add of
 * two activations of n_embd (plain or fused with the next norm). After each, the forward
 * checks its n_embd floats per token for NaN or infinity and returns
 * RT_FORWARD_NONFINITE at the first, so the runtime can name the token and the layer.
 * Whether it emitted one. */
static bool emit_finite_check(Em *m, const IrNode *n, int64_t layer)
{
	const IrValue *y = V(m, n->out[0]);
	int64_t k = m->g->hp.n_embd;
	bool residual = n->op == IR_OP_EMBED || n->op == IR_OP_ADD_RMSNORM_QUANT ||
			(n->op == IR_OP_ADD && ir_value_has_t(V(m, n->in[1])));
	if (!residual || k <= 0 || !ir_value_has_t(y) || ir_value_row(y) != k ||
	    m->soff[n->out[0]] == NO_OFF)
		return false;
	char x[64];
	cg_printf(m->fwd, "\tif (nonfinite_rows(st, %s, %" PRId64 ", n, %d))\n"
			  "\t\treturn RT_FORWARD_NONFINITE;\n",
		  ref(m, n->out[0], "float", x, sizeof x), k,
		  n->op == IR_OP_EMBED ? -1 : (int)layer);
	return true;
}

/* The profile family (RT_PROF_*) of node n, whose code was just emitted; amx: it runs
 * on the AMX tiles. */
static const char *prof_family(const Em *m, const IrNode *n, bool amx)
{
	switch (n->op) {
	case IR_OP_EMBED:
		return "RT_PROF_EMBED";
	case IR_OP_RMSNORM:
	case IR_OP_RMSNORM_QUANT:
	case IR_OP_ADD_RMSNORM_QUANT:
		return "RT_PROF_NORM";
	case IR_OP_QUANT_ACT:
		return "RT_PROF_QUANT";
	case IR_OP_TERNARY_MATMUL:
		return amx ? "RT_PROF_AMX" : m->nt == 1 ? "RT_PROF_GEMV" : "RT_PROF_GEMM";
	case IR_OP_MATMUL:
		return "RT_PROF_HEAD";
	case IR_OP_ROPE:
		return "RT_PROF_ROPE";
	case IR_OP_ATTENTION:
		return "RT_PROF_ATTN";
	case IR_OP_RELU2_GLU:
	case IR_OP_SILU_GLU:
		return "RT_PROF_GLU";
	case IR_OP_ADD:
		return "RT_PROF_ADD";
	default:
		return "RT_PROF_OTHER";
	}
}

/* Whether value a's and value b's scratch bytes overlap (either not in scratch: no). */
static bool scratch_overlap(const Em *m, IrId a, IrId b)
{
	uint64_t na, nb, oa = m->soff[a], ob = m->soff[b];
	if (oa == NO_OFF || ob == NO_OFF || !ir_mem_value_bytes(V(m, a), m->nt, &na) ||
	    !ir_mem_value_bytes(V(m, b), m->nt, &nb))
		return oa != NO_OFF && ob != NO_OFF; /* unknown sizes: assume they do */
	return oa < ob + nb && ob < oa + na;
}

/* How many ternary matmuls from node ni on run as one launch: those right after it that
 * read the same codes and scales (a layer's q, k, v; its gate and up), none of them
 * reading another's output or writing over one or over the codes, none with node
 * attribute own_launch = 1. Each matmul's threads write only their own rows, so the
 * launch needs no join between them: a thread goes from its rows of q to its rows of k
 * while the other is still in q, and the forward waits once instead of once per matmul. */
static int launch_group(const Em *m, int ni)
{
	const IrNode *n0 = &m->g->nodes[ni];
	if (n0->op != IR_OP_TERNARY_MATMUL || n0->n_in < 3 || ir_attr_int(n0, "own_launch", 0))
		return 1;
	int k = 1;
	while (ni + k < m->g->n_nodes && k < CG_LAUNCH_MAX) {
		const IrNode *n = &m->g->nodes[ni + k];
		if (n->op != IR_OP_TERNARY_MATMUL || n->n_in < 3 || n->in[0] != n0->in[0] ||
		    n->in[1] != n0->in[1] || ir_attr_int(n, "own_launch", 0))
			break;
		bool ok = !scratch_overlap(m, n->out[0], n0->in[0]) &&
			  !scratch_overlap(m, n->out[0], n0->in[1]);
		for (int j = 0; ok && j < k; j++) {
			const IrNode *p = &m->g->nodes[ni + j];
			ok = p->out[0] != n->in[2] && !scratch_overlap(m, n->out[0], p->out[0]);
		}
		if (!ok)
			break;
		k++;
	}
	return k;
}

/* Emits nodes ni..ni+k-1 (launch_group) as one launch: their TmmArgs, then one
 * pool_run_jobs. */
static int emit_launch(Em *m, CgBuf *b, int ni, int k)
{
	cg_printf(b, "\t/* %d..%d: one launch */\n\t{\n", ni, ni + k - 1);
	m->launch_open = true;
	m->launch_n = 0;
	for (int j = 0; j < k; j++) {
		const IrNode *n = &m->g->nodes[ni + j];
		cg_printf(b, "\t\t/* %d: ", ni + j);
		put_comment_text(b, n->name);
		cg_printf(b, " (%s) */\n", ir_op_name(n->op));
		int before = m->launch_n;
		if (emit_fn[n->op](m, n)) {
			m->launch_open = false;
			return m->e->code;
		}
		if (m->launch_n != before + 1) {
			m->launch_open = false;
			return bn_err(m->e, BN_EUNSUPPORTED, "codegen (cpu): node '%s': its matmul "
							     "was not written as a launch job", n->name);
		}
	}
	m->launch_open = false;
	cg_printf(b, "\t\tconst PoolJob jobs[] = {");
	for (int j = 0; j < k; j++)
		cg_printf(b, "%s{%s, &a%d}", j ? ", " : "", m->launch_fn[j], j);
	cg_printf(b, "};\n\t\tpool_run_jobs(st, jobs, %d);\n\t}\n", k);
	return 0;
}

/* The forward function of template size nt: forward_t1 (one token, step mode) or
 * forward_t<nt> for lo..nt tokens, in which the kernels may rely on n <= nt. Profiled
 * (st->prof), each node's code and each non-finite check ends with a lap (prof_lap) to
 * its family; otherwise that costs one test per lap (PROFILED: none with -DBN_NO_PROFILE). */
static int emit_forward(Em *m, CgBuf *b, int nt, int lo)
{
	m->fwd = b;
	m->t1 = nt == 1;
	m->nt = nt;
	if (m->t1)
		cg_printf(b, "/* one token: the reference's step mode (f16 roundings of the softmax\n"
			     " * weights and of the head input) */\n"
			     "static int forward_t1(RtState *st, const RtBatch *b, float *logits)\n"
			     "{\n"
			     "\tconst int n = 1;\n");
	else
		cg_printf(b, "/* %d..%d rows in one call (batch mode); the head computes the rows b->out\n"
			     " * asks for alone */\n"
			     "static int forward_t%d(RtState *st, const RtBatch *b, float *logits)\n"
			     "{\n"
			     "\tconst int n = b->n;\n",
			  lo, nt, nt);
	/* kvs: positions of all sequences, the rows of one layer's K */
	cg_printf(b, "\tconst int32_t *tok = b->token, *pos = b->pos, *seq = b->seq;\n"
		     "\tconst int64_t kvs = st->n_ctx * (st->n_seq > 0 ? st->n_seq : 1);\n"
		     "\tuint8_t *S = st->scratch;\n"
		     "\tconst uint8_t *W = st->w;\n"
		     "\tShare sh[%d]; /* the work sharing of a launch's matmuls (or the head) */\n"
		     "\t(void)pos;\n"
		     "\t(void)seq;\n"
		     "\t(void)kvs;\n"
		     "\t(void)sh;\n"
		     "\tdouble pt0 = 0, pt = 0, pw = 0; /* profiled: the start, the last lap, its wait */\n"
		     "\tif (PROFILED(st)) {\n"
		     "\t\tpt0 = pt = rt_pool_clock();\n"
		     "\t\tpw = st->prof->sec[RT_PROF_WAIT];\n"
		     "\t}\n",
		  CG_LAUNCH_MAX);
	int64_t layer = -1; /* that of the last attention node: the layer being computed */
	for (int ni = 0; ni < m->g->n_nodes; ni++) {
		const IrNode *n = &m->g->nodes[ni];
		if ((unsigned)n->op >= IR_OP_COUNT)
			return bn_err(m->e, BN_EUNSUPPORTED, "codegen (cpu): node '%s': unknown op %d",
				      n->name, (int)n->op);
		if (n->op == IR_OP_ATTENTION)
			layer = ir_attr_int(n, "layer", layer);
		int amx = m->kcount[CG_KERN_AMX], k = launch_group(m, ni);
		if (k > 1) {
			if (emit_launch(m, b, ni, k))
				return m->e->code;
			ni += k - 1; /* the lap below is the last one's (the same family) */
			n = &m->g->nodes[ni];
		} else {
			cg_printf(b, "\t/* %d: ", ni);
			put_comment_text(b, n->name);
			cg_printf(b, " (%s) */\n", ir_op_name(n->op));
			if (emit_fn[n->op](m, n))
				return m->e->code;
		}
		cg_printf(b, "\tif (PROFILED(st))\n"
			     "\t\tprof_lap(st, %s, &pt, &pw);\n",
			  prof_family(m, n, m->kcount[CG_KERN_AMX] != amx));
		if (emit_finite_check(m, n, layer))
			cg_printf(b, "\tif (PROFILED(st))\n"
				     "\t\tprof_lap(st, RT_PROF_OTHER, &pt, &pw);\n");
	}
	cg_printf(b, "\tif (PROFILED(st)) {\n"
		     "\t\tst->prof->forward_sec += rt_pool_clock() - pt0;\n"
		     "\t\tst->prof->forwards++;\n"
		     "\t}\n"
		     "\treturn 0;\n"
		     "}\n\n");
	return 0;
}

/* Removes the space-separated word w from the list s (and one space beside it). */
void cg_cpu_strip_word(char *s, const char *w)
{
	size_t wl = strlen(w);
	for (char *p = s; (p = strstr(p, w)) != NULL; p++) {
		bool start = p == s || p[-1] == ' ', end = p[wl] == 0 || p[wl] == ' ';
		if (!start || !end)
			continue;
		char *from = p + wl;
		if (*from == ' ')
			from++;
		else if (p > s)
			p--; /* the last word: drop the space before it */
		memmove(p, from, strlen(from) + 1);
		return;
	}
}

static void emit_info(Em *m, CgBuf *b, uint64_t scratch, const int *bs, int n_bs)
{
	const IrGraph *g = m->g;
	const IrHparams *hp = &g->hp;
	CgBuf s = {0};
	cg_printf(&s, "model %s, arch %s\n", g->name ? g->name : "?", g->arch ? g->arch : "?");
	cg_printf(&s, "n_layer %" PRId64 ", n_embd %" PRId64 ", n_ff %" PRId64 ", heads %" PRId64
		      "/%" PRId64 ", head_dim %" PRId64 ", n_vocab %" PRId64 ", n_ctx_train %" PRId64
		      "\n",
		  hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head, hp->n_head_kv, hp->head_dim,
		  hp->n_vocab, hp->n_ctx_train);
	cg_printf(&s, "target %s, forward templates: 1 token (step)",
		  m->o->target ? m->o->target : "cpu-generic");
	for (int i = 1; i < n_bs; i++)
		cg_printf(&s, ", %d", bs[i]);
	cg_printf(&s, "%s\n", n_bs > 1 ? " tokens (batch)" : "");
	cg_printf(&s, "scratch %" PRIu64 " bytes, KV %" PRId64 " bytes per position\n", scratch,
		  m->kv_elems * 2 + m->max_heads * 4);
	if (m->kinfo.data)
		cg_printf(&s, "%s\n", m->kinfo.data);
	if (m->isa.level == CG_ISA_RVV)
		cg_printf(&s, "rvv kernels: the i2_s ternary matmuls (gguf layout), the activation "
			      "quantizer, the rmsnorms, attention (q.K, .V), rope, the relu2 glu, "
			      "the adds and muls, the f16/bf16/f32 head; portable C: the softmax's "
			      "exp, the silu glu, the q8_0/q6_k heads and the other weight "
			      "layouts\n");
	if (m->isa.level == CG_ISA_SVE)
		cg_printf(&s, "sve kernels: the i2_s ternary matmuls (gguf layout), the activation "
			      "quantizer, the rmsnorms, the f16/bf16/f32 head; portable C: the other norms, attention, "
			      "rope, q8_0/q6_k heads and the other weight layouts\n");
	cg_printf(&s, "kernels (%d):", m->n_kern);
	for (int i = 0; i < m->n_kern; i++)
		cg_printf(&s, " %s", m->kern[i].name);
	cg_printf(&s, "\n");
	cg_printf(b, "static const char model_info[] =\n\t");
	put_cstr(b, s.data ? s.data : "");
	if (m->isa.amx)
		cg_printf(b, " BN_AMX_INFO");
	cg_printf(b, ";\n\n");
	if (s.oom)
		b->oom = true;
	cg_buf_free(&s);
}

void em_free(Em *m)
{
	for (int i = 0; i < m->n_kern; i++) {
		cg_buf_free(&m->kern[i].users);
		cg_buf_free(&m->kern[i].body);
	}
	free(m->kern);
	cg_buf_free(&m->kinfo);
	free(m->soff);
	free(m->woff);
	free(m->tmp);
	free(m->kv_off);
	free(m->kv_w);
}

int cg_cpu_emit(const IrGraph *g, const CgOpts *o, CgOutput *out, BnErr *e)
{
	memset(out, 0, sizeof *out);
	/* the forward templates: the pipeline's batch sizes, or 1 and max_batch */
	int two[2], n_bs;
	const int *bs;
	if (cg_batch_templates(o, two, &bs, &n_bs, e))
		return e ? e->code : BN_EINVAL;
	Em m = {.g = g, .o = o, .e = e};
	char isa_features[256];
	cg_cpu_target_isa(o->target, &m.isa, isa_features, sizeof isa_features);
	CgBuf fwd = {0};
	int rc = BN_ENOMEM;
	size_t nv = (size_t)g->n_values + 1, nn = (size_t)g->n_nodes + 1;
	m.soff = malloc(nv * sizeof *m.soff);
	m.woff = malloc(nv * sizeof *m.woff);
	m.tmp = malloc(nn * sizeof *m.tmp);
	if (!m.soff || !m.woff || !m.tmp) {
		bn_err(e, BN_ENOMEM, "codegen: out of memory");
		goto out;
	}
	for (size_t i = 0; i < nv; i++)
		m.soff[i] = m.woff[i] = NO_OFF;
	for (size_t i = 0; i < nn; i++)
		m.tmp[i] = NO_OFF;
	if (g->tokens < 0 || g->logits < 0 || g->n_nodes == 0) {
		rc = bn_err(e, BN_EUNSUPPORTED, "codegen (cpu): the graph has no tokens input, "
						"logits output or nodes");
		goto out;
	}
	/* the head writes straight into the caller's logits: only when nothing else reads them */
	const IrNode *last = &g->nodes[g->n_nodes - 1];
	m.logits_direct = last->op == IR_OP_MATMUL && last->out[0] == g->logits;
	if (!m.logits_direct) {
		rc = bn_err(e, BN_EUNSUPPORTED, "codegen (cpu): node '%s' (%s): the logits must come "
						"from a float matmul (the head) as the last node",
			    last->name, ir_op_name(last->op));
		goto out;
	}
	if ((rc = cg_plan_payload(g, o->tok_blob, o->tok_bytes, &out->payload, m.woff, e)) ||
	    (rc = plan_kv(&m)) ||
	    (rc = cg_plan_scratch(g, o->max_batch, m.soff, m.tmp, &out->scratch_bytes, e)))
		goto out;

	/* one forward per template; sizes {1} (a decode-only build): forward_t1 alone */
	m.record = true;
	int n_amx = 0; /* AMX kernels in all forwards: then decode() asks for the tile state */
	for (int i = 0; i < n_bs; i++) {
		memset(m.kcount, 0, sizeof m.kcount);
		if ((rc = emit_forward(&m, &fwd, bs[i], i ? bs[i - 1] + 1 : 1)))
			goto out;
		cg_printf(&m.kinfo, "%s%d: %d simd, %d lut, %d portable, %d lut_portable",
			  i ? "; t" : "ternary matmul kernels per forward: t", bs[i],
			  m.kcount[CG_KERN_SIMD], m.kcount[CG_KERN_LUT], m.kcount[CG_KERN_PORTABLE],
			  m.kcount[CG_KERN_LUT_PORTABLE]);
		if (m.isa.amx)
			cg_printf(&m.kinfo, ", %d amx", m.kcount[CG_KERN_AMX]);
		n_amx += m.kcount[CG_KERN_AMX];
		m.record = false;
	}

	CgBuf *b = cg_output_add(out, "model.c", CG_ART_SOURCE);
	if (!b) {
		rc = bn_err(e, BN_ENOMEM, "codegen: out of memory");
		goto out;
	}
	cg_printf(b, "/* model.c - generated by bitnetc %s from ", BITNETC_VERSION);
	put_comment_text(b, g->name ? g->name : "?");
	cg_printf(b, " (");
	put_comment_text(b, g->arch ? g->arch : "?");
	cg_printf(b, "), target %s. Do not edit.\n"
		     " * Every shape, stride and offset is a constant; the kernels compute what the\n"
		     " * reference interpreter computes, in its float order (build with\n"
		     " * -ffp-contract=off, without -ffast-math). */\n",
		  o->target ? o->target : "cpu-generic");
	cg_printf(b, "%s\n", cg_cpu_prelude);
	cg_printf(b, "#define MAX_BATCH %d\n", o->max_batch);
	cg_printf(b, "#define KV_ELEMS %" PRId64 " /* f16 K and V elements per position of a sequence, all layers */\n",
		  m.kv_elems);
	cg_printf(b, "#define N_SCORE_ROWS %" PRId64 " /* float score rows (one per q head) after the cache */\n\n",
		  m.max_heads);
	for (int i = 0; i < m.n_kern; i++) {
		Kern *k = &m.kern[i];
		/* a kernel no node runs is a helper the kernels after it call */
		if (k->users.data && k->users.len)
			cg_printf(b, "/* %s, used by:\n%s */\n%s\n", k->name, k->users.data,
				  k->body.data ? k->body.data : "");
		else
			cg_printf(b, "/* %s: a helper of the kernels after it */\n%s\n", k->name,
				  k->body.data ? k->body.data : "");
	}
	cg_printf(b, "%s", fwd.data);
	/* decode checks the batch, then runs the smallest template that holds its rows */
	cg_printf(b, "/* The rows of one call run in the smallest template that holds them. A malformed\n"
		     " * batch (RT_FORWARD_BATCH) is refused before anything is computed. */\n"
		     "static int decode(RtState *st, const RtBatch *b, float *logits)\n"
		     "{\n"
		     "\tif (!b || b->n < 1 || b->n > MAX_BATCH || !b->token || !b->pos)\n"
		     "\t\treturn RT_FORWARD_BATCH;\n"
		     "\tconst int n = b->n;\n"
		     "\tconst int64_t n_seq = st->n_seq > 0 ? st->n_seq : 1;\n"
		     "\tfor (int t = 0; t < n; t++)\n"
		     "\t\tif (b->pos[t] < 0 || b->pos[t] >= st->n_ctx || (b->seq && (b->seq[t] < 0 || b->seq[t] >= n_seq)))\n"
		     "\t\t\treturn RT_FORWARD_BATCH;\n"
		     "\tif (b->out && (b->n_out < 0 || b->n_out > n))\n"
		     "\t\treturn RT_FORWARD_BATCH;\n"
		     "\tfor (int r = 0; b->out && r < b->n_out; r++)\n"
		     "\t\tif (b->out[r] < (r ? b->out[r - 1] + 1 : 0) || b->out[r] >= n)\n"
		     "\t\t\treturn RT_FORWARD_BATCH;\n");
	if (n_amx)
		cg_printf(b, "\tif (n > 1 && bn_amx_state() != 1)\n"
			     "\t\treturn RT_FORWARD_CPU; /* the OS refused the AMX tile state */\n");
	if (n_bs > 1) {
		cg_printf(b, "\tif (n == 1)\n"
			     "\t\treturn forward_t1(st, b, logits);\n");
		for (int i = 1; i < n_bs; i++) {
			if (i < n_bs - 1)
				cg_printf(b, "\telse if (n <= %d)\n", bs[i]);
			else
				cg_printf(b, "\telse\n");
			cg_printf(b, "\t\treturn forward_t%d(st, b, logits);\n", bs[i]);
		}
	} else {
		cg_printf(b, "\treturn forward_t1(st, b, logits); /* max_batch 1: n is 1 */\n");
	}
	cg_printf(b, "}\n\n"
		     "static const int32_t batch_sizes[] = {");
	for (int i = 0; i < n_bs; i++)
		cg_printf(b, "%s%d", i ? ", " : "", bs[i]);
	cg_printf(b, "};\n\n"
		     "static uint64_t kv_bytes(int64_t n_ctx, int32_t n_seq)\n"
		     "{\n"
		     "\tuint64_t ns = n_seq > 0 ? (uint64_t)n_seq : 1;\n"
		     "\treturn (uint64_t)n_ctx * (ns * KV_ELEMS * 2 + N_SCORE_ROWS * 4);\n"
		     "}\n\n"
		     "/* Once per model: the f16 table (once per process); no per-model data. */\n"
		     "static int init(const uint8_t *w, uint64_t w_bytes, void **inst, char *err, size_t err_len)\n"
		     "{\n"
		     "\t(void)w;\n"
		     "\t(void)w_bytes;\n"
		     "\t(void)err;\n"
		     "\t(void)err_len;\n"
		     "\t*inst = NULL;\n"
		     "\treturn pthread_once(&f16_table_once, f16_table_fill) == 0 ? 0 : -1;\n"
		     "}\n\n");
	if (m.isa.amx) {
		/* the tiles may run in software (-DBN_AMX_EMULATE, for hosts without AMX): then
		 * the program must not ask the CPU for them, nor the OS for their state */
		cg_cpu_strip_word(isa_features, "amx_tile");
		cg_cpu_strip_word(isa_features, "amx_int8");
		cg_printf(b, "#if defined(BN_AMX_EMULATE)\n"
			     "#define BN_AMX_FEATURES \"\"\n"
			     "#define BN_AMX_INFO \"AMX tiles: emulated in software (BN_AMX_EMULATE)\\n\"\n"
			     "#else\n"
			     "#define BN_AMX_FEATURES \" amx_tile amx_int8\"\n"
			     "#define BN_AMX_INFO \"AMX tiles: the instructions\\n\"\n"
			     "#endif\n\n");
	}
	emit_info(&m, b, out->scratch_bytes, bs, n_bs);
	cg_printf(b, "#ifndef BN_MODEL_SYMBOL\n"
		     "#define BN_MODEL_SYMBOL rt_model\n"
		     "#endif\n"
		     "const RtModel BN_MODEL_SYMBOL = {\n"
		     "\t.abi = RT_MODEL_ABI,\n"
		     "\t.name = ");
	put_cstr(b, g->name ? g->name : "");
	cg_printf(b, ",\n\t.arch = ");
	put_cstr(b, g->arch ? g->arch : "");
	cg_printf(b, ",\n\t.target = ");
	put_cstr(b, o->target ? o->target : "cpu-generic");
	cg_printf(b, ",\n\t.cpu_features = ");
	put_cstr(b, isa_features);
	if (m.isa.amx)
		cg_printf(b, " BN_AMX_FEATURES");
	cg_printf(b, ",\n\t.pipeline = ");
	put_cstr(b, o->pipeline ? o->pipeline : "dce");
	cg_put_model_facts(b, g, o, out, n_bs);
	cg_printf(b, "\t.init = init, /* kv, scratch: host memory (no state_init); synchronous */\n"
		     "};\n");
	out->n_kernels = m.n_kern;
	rc = 0;
	if (b->oom || fwd.oom)
		rc = bn_err(e, BN_ENOMEM, "codegen: out of memory");
	for (int i = 0; i < m.n_kern && !rc; i++)
		if (m.kern[i].users.oom || m.kern[i].body.oom)
			rc = bn_err(e, BN_ENOMEM, "codegen: out of memory");
out:
	em_free(&m);
	cg_buf_free(&fwd);
	if (rc)
		cg_output_free(out);
	return rc;
}
