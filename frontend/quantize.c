/* quantize.c - a model rewritten with its projection weights ternarized and packed in one
 * ternary format (bitnetc quantize); everything else is copied as it is. */
#include "frontend_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The writer keeps pointers to tensor data until it writes: the packed tensors live here. */
typedef struct {
	const GgufFile *f;
	const IrGraph *g;
	IrDtype to;
	BnmQuantStats *st;
	BnErr *e;
	void **bufs;
	size_t n_bufs;
	float *fbuf; /* one tensor's values */
	size_t fbuf_n;
	int8_t *row; /* one row's ternary values */
	float *row_sc;
	int64_t row_n;
} Quant;

static const char *qpath(const Quant *q)
{
	return q->f->path ? q->f->path : "<gguf>";
}

bool bnm_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* The graph's constant for tensor t if it is a ternary projection (a float one was made
 * I2_S by bnm_load), else NULL. */
static const IrValue *projection(const Quant *q, const GgufTensor *t)
{
	for (int i = 0; i < q->g->n_values; i++) {
		const IrValue *v = &q->g->values[i];
		if (v->kind == IR_VAL_CONST && ir_dtype_info(v->dtype)->ternary &&
		    strcmp(v->name, t->name) == 0)
			return v;
	}
	return NULL;
}

static bool grow(Quant *q, int64_t n, int64_t k)
{
	if ((size_t)n > q->fbuf_n) {
		free(q->fbuf);
		q->fbuf = malloc((size_t)n * sizeof(float));
		q->fbuf_n = q->fbuf ? (size_t)n : 0;
	}
	if (k > q->row_n) {
		free(q->row);
		free(q->row_sc);
		q->row = malloc((size_t)k);
		q->row_sc = malloc((size_t)(k / 128 + 1) * sizeof(float));
		q->row_n = q->row && q->row_sc ? k : 0;
	}
	return q->fbuf && q->row_n >= k;
}

/* A ternary-format tensor's values (code times its block's or the tensor's scale). */
static void ternary_values(Quant *q, const GgufTensor *t, int64_t k, int64_t rows)
{
	for (int64_t r = 0; r < rows; r++) {
		int ns = ir_ternary_row(t->dtype, t->data, k, rows, r, q->row, q->row_sc);
		int64_t per = k / ns;
		float *dst = q->fbuf + r * k;
		for (int64_t j = 0; j < k; j++)
			dst[j] = (float)q->row[j] * q->row_sc[j / per];
	}
}

/* TQ1_0/TQ2_0 keep one f16 scale per block: a magnitude f16 cannot hold is refused. */
static int check_f16_scale(Quant *q, const GgufTensor *t, int64_t n)
{
	float m = 0;
	for (int64_t i = 0; i < n; i++)
		m = fmaxf(m, fabsf(q->fbuf[i]));
	if (isfinite(bn_f16_to_f32(bn_f32_to_f16(m))))
		return 0;
	return bn_err(q->e, BN_EUNSUPPORTED,
		      "%s: %s: weight magnitude %g does not fit %s's f16 block scale", qpath(q),
		      t->name, (double)m, ir_dtype_name(q->to));
}

/* Tensor t (a projection, checked by bnm_load) packed in q->to; the bytes are kept in q. */
static int pack(Quant *q, const GgufTensor *t, const IrValue *v, void **out, uint64_t *nbytes)
{
	int64_t k = v->ne[0], rows = v->ne[1], n = k * rows, bad = 0;
	if (!ir_dtype_nbytes(q->to, (uint64_t)n, (uint64_t)k, nbytes))
		return bn_err(q->e, BN_EUNSUPPORTED,
			      "%s: %s: rows of %" PRId64 " elements do not fit %s's blocks of %d",
			      qpath(q), t->name, k, ir_dtype_name(q->to), ir_dtype_info(q->to)->block);
	void *dst = malloc((size_t)*nbytes);
	if (dst)
		q->bufs[q->n_bufs++] = dst;
	if (!dst || !grow(q, n, k))
		return bn_err(q->e, BN_ENOMEM, "%s: %s: out of memory", qpath(q), t->name);
	float scale;
	IrTernRule rule = IR_TERN_KEPT;
	if (ir_dtype_info(t->dtype)->ternary) {
		ternary_values(q, t, k, rows);
		/* one scale per tensor in I2_S: TQ blocks of several scales take the rule */
		if (q->to == IR_DT_I2_S)
			rule = ir_ternarize(q->fbuf, n, IR_DT_F32, &scale, &bad);
	} else {
		/* the same rule bnm_load applied to build v */
		ir_dequant(t->dtype, t->data, q->fbuf, n);
		rule = ir_ternarize(q->fbuf, n, t->dtype, &scale, &bad);
	}
	BN_ASSERT(rule != IR_TERN_NONFINITE); /* bnm_load refused those */
	if (q->to != IR_DT_I2_S && check_f16_scale(q, t, n))
		return q->e->code;
	q->st->n_absmean += rule == IR_TERN_ABSMEAN;
	q->st->n_float += !ir_dtype_info(t->dtype)->ternary;
	ir_quant(q->to, q->fbuf, dst, n);
	*out = dst;
	return 0;
}

/* Every metadata pair, as stored; general.file_type then says what the file now is. */
static void copy_meta(GgufWriter *w, const GgufFile *f, IrDtype to)
{
	for (uint64_t i = 0; i < f->n_kv; i++) {
		const GgufValue *v = &f->kv[i].val;
		/* an array's payload starts with its element type and count, before data */
		uint64_t head = v->type == GGUF_T_ARRAY ? 12 : 0;
		gguf_writer_raw(w, f->kv[i].key, v->type, v->data - head, v->size + head);
	}
	gguf_writer_u32(w, "general.file_type",
			to == IR_DT_I2_S ? 40 : to == IR_DT_TQ1_0 ? 36 : 37);
}

static int add_tensors(Quant *q, GgufWriter *w)
{
	for (uint64_t i = 0; i < q->f->n_tensors; i++) {
		const GgufTensor *t = &q->f->tensors[i];
		const IrValue *v = projection(q, t);
		const void *data = t->data;
		uint64_t nbytes = t->nbytes;
		uint32_t type = t->ggml_type;
		if (v) {
			void *p = NULL;
			if (pack(q, t, v, &p, &nbytes))
				return q->e->code;
			data = p;
			type = (uint32_t)ir_dtype_info(q->to)->ggml_id;
			q->st->n_proj++;
		} else {
			q->st->n_copied++;
		}
		int rc = gguf_writer_tensor(w, t->name, type, t->n_dims, t->ne, data, nbytes, q->e);
		if (rc)
			return bn_err_prefix(q->e, "%s", qpath(q));
	}
	return 0;
}

int bnm_quantize(const GgufFile *f, const char *out, IrDtype to, BnmQuantStats *st, BnErr *e)
{
	memset(st, 0, sizeof *st);
	if (to != IR_DT_I2_S && to != IR_DT_TQ1_0 && to != IR_DT_TQ2_0)
		return bn_err(e, BN_EINVAL, "quantize: %s is not a ternary format (i2_s, tq1_0, tq2_0)",
			      ir_dtype_name(to));
	/* The input stays mapped while the output is written (the writer goes through
	 * OUT.tmp): neither may be the input. */
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", out);
	if (f->path && (bnm_same_file(f->path, out) || bnm_same_file(f->path, tmp)))
		return bn_err(e, BN_EINVAL, "quantize: %s is the input file %s", out, f->path);
	/* Building the graph checks every tensor (and refuses NaN or infinite weights). */
	IrGraph *g = bnm_load(f, e);
	if (!g)
		return e->code;
	Quant q = { .f = f, .g = g, .to = to, .st = st, .e = e };
	GgufWriter *w = gguf_writer_new();
	q.bufs = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *q.bufs);
	int rc;
	if (!w || !q.bufs) {
		rc = bn_err(e, BN_ENOMEM, "%s: out of memory", qpath(&q));
	} else {
		copy_meta(w, f, to);
		rc = add_tensors(&q, w);
		if (!rc)
			rc = gguf_writer_write(w, out, e);
	}
	gguf_writer_free(w);
	for (size_t i = 0; i < q.n_bufs; i++)
		free(q.bufs[i]);
	free(q.bufs);
	free(q.fbuf);
	free(q.row);
	free(q.row_sc);
	ir_graph_free(g);
	return rc;
}
