/* quantize_head.c - quantize the float output head (the tied token_embd.weight, or
 * output.weight) to Q8_0 or Q6_K, as bitnet.cpp's --quant-embd does: the head is the
 * largest tensor a decode step reads (657 MB in f16 for a 2B model), so this nearly halves
 * the bytes per token. It changes the logits (and, when the head is the tied embedding
 * table, the embeddings too, which read the same tensor): off by default.
 * requires: a verified graph whose logits come from a matmul with a constant f32/f16/bf16
 * weight; produces: that weight in the chosen type (layout gguf, data in the graph's
 * arena); invalidates: the weight's data pointer and dtype. Rows are independent: they
 * are split over threads (option threads; default the online CPUs), the bytes the same for
 * any count. */
#include "pass.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { QH_MAX_THREADS = 256 };

/* Rows [lo, hi) of the head, dequantized one at a time and quantized into dst. */
typedef struct {
	IrDtype from, to;
	const uint8_t *src;
	uint8_t *dst;
	uint64_t src_row, dst_row;
	int64_t k, lo, hi;
	bool oom;
} QhSlice;

static void *qh_rows(void *p)
{
	QhSlice *s = p;
	float *row = malloc((size_t)s->k * sizeof *row);
	if (!row) {
		s->oom = true;
		return NULL;
	}
	for (int64_t r = s->lo; r < s->hi; r++) {
		ir_dequant(s->from, s->src + (uint64_t)r * s->src_row, row, s->k);
		ir_quant(s->to, row, s->dst + (uint64_t)r * s->dst_row, s->k);
	}
	free(row);
	return NULL;
}

/* The rows split into nt contiguous slices, each on its own thread (the first on the
 * calling thread, as is any whose thread does not start); false if out of memory. */
static bool qh_run(const QhSlice *all, int nt)
{
	QhSlice sl[QH_MAX_THREADS];
	pthread_t th[QH_MAX_THREADS];
	bool started[QH_MAX_THREADS] = {0};
	int64_t n = all->hi - all->lo;
	for (int i = 0; i < nt; i++) {
		sl[i] = *all;
		sl[i].lo = all->lo + n * i / nt;
		sl[i].hi = all->lo + n * (i + 1) / nt;
		started[i] = i > 0 && pthread_create(&th[i], NULL, qh_rows, &sl[i]) == 0;
	}
	for (int i = 0; i < nt; i++)
		if (!started[i])
			qh_rows(&sl[i]);
	bool ok = true;
	for (int i = 0; i < nt; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		ok = ok && !sl[i].oom;
	}
	return ok;
}

int pass_quantize_head(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	const char *type = pass_opt_str(opts, "type", "q8_0");
	IrDtype to;
	if (strcmp(type, "q8_0") == 0)
		to = IR_DT_Q8_0;
	else if (strcmp(type, "q6_k") == 0)
		to = IR_DT_Q6_K;
	else
		return bn_err(e, BN_EINVAL, "option type is '%s'; expected q8_0 or q6_k", type);
	int64_t threads = pass_opt_int(opts, "threads", 0);
	if (threads < 0 || threads > QH_MAX_THREADS)
		return bn_err(e, BN_EINVAL, "option threads is %" PRId64 "; expected 0 (the online "
					    "CPUs) to %d", threads, QH_MAX_THREADS);
	if (threads == 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		threads = ncpu < 1 ? 1 : ncpu > QH_MAX_THREADS ? QH_MAX_THREADS : ncpu;
	}
	const IrNode *head = NULL;
	for (int ni = 0; ni < g->n_nodes; ni++)
		if (g->nodes[ni].op == IR_OP_MATMUL && g->nodes[ni].out[0] == g->logits)
			head = &g->nodes[ni];
	if (!head)
		return bn_err(e, BN_EUNSUPPORTED, "the logits do not come from a matmul (the head)");
	IrValue *w = &g->values[head->in[1]];
	if (w->kind != IR_VAL_CONST || w->n_dims != 2)
		return bn_err(e, BN_EUNSUPPORTED, "head '%s': its weight '%s' is not a 2-d constant",
			      head->name, w->name ? w->name : "?");
	if (w->dtype == to)
		return 0;
	if (w->dtype != IR_DT_F32 && w->dtype != IR_DT_F16 && w->dtype != IR_DT_BF16)
		return bn_err(e, BN_EUNSUPPORTED, "head weight '%s' is %s; only f32, f16 and bf16 heads "
						  "are quantized",
			      w->name ? w->name : "?", ir_dtype_name(w->dtype));
	int64_t k = w->ne[0], rows = w->ne[1];
	uint64_t nb, src_row;
	if (!ir_dtype_nbytes(to, (uint64_t)k * (uint64_t)rows, (uint64_t)k, &nb) ||
	    !ir_dtype_nbytes(w->dtype, (uint64_t)k, (uint64_t)k, &src_row))
		return bn_err(e, BN_EUNSUPPORTED, "head weight '%s': rows of %" PRId64 " elements do not "
						  "fit %s blocks",
			      w->name ? w->name : "?", k, type);
	uint8_t *d = bn_arena_alloc(g->arena, (size_t)nb);
	if (!d)
		return bn_err(e, BN_ENOMEM, "out of memory quantizing the head (%" PRIu64 " bytes)", nb);
	QhSlice all = {.from = w->dtype, .to = to, .src = w->data, .dst = d, .src_row = src_row,
		       .dst_row = nb / (uint64_t)rows, .k = k, .lo = 0, .hi = rows};
	if (threads > rows)
		threads = rows > 0 ? rows : 1;
	if (!qh_run(&all, (int)threads))
		return bn_err(e, BN_ENOMEM, "out of memory quantizing the head (a row of %" PRId64
					    " floats)", k);
	if (opts->verbose > 0)
		fprintf(stderr, "quantize_head: %s %s -> %s (%.1f -> %.1f MiB, %d thread%s)\n",
			w->name ? w->name : "?", ir_dtype_name(w->dtype), type,
			(double)w->nbytes / (1 << 20), (double)nb / (1 << 20), (int)threads,
			threads == 1 ? "" : "s");
	w->dtype = to;
	w->data = d;
	w->nbytes = nb;
	w->layout = "gguf";
	return 0;
}
