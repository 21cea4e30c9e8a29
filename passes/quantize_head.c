/* quantize_head.c - quantize the float output head (the tied token_embd.weight, or
 * output.weight) to Q8_0 or Q6_K, as bitnet.cpp's --quant-embd does: the head is the
 * largest tensor a decode step reads (657 MB in f16 for a 2B model), so this nearly halves
 * the bytes per token. It changes the logits (and, when the head is the tied embedding
 * table, the embeddings too, which read the same tensor): off by default.
 * requires: a verified graph whose logits come from a matmul with a constant f32/f16/bf16
 * weight; produces: that weight in the chosen type (layout gguf, data in the graph's
 * arena); invalidates: the weight's data pointer and dtype. */
#include "pass.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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
	float *row = malloc((size_t)k * sizeof *row);
	if (!d || !row) {
		free(row);
		return bn_err(e, BN_ENOMEM, "out of memory quantizing the head (%" PRIu64 " bytes)", nb);
	}
	uint64_t dst_row = nb / (uint64_t)rows;
	const uint8_t *src = w->data;
	for (int64_t r = 0; r < rows; r++) {
		ir_dequant(w->dtype, src + (uint64_t)r * src_row, row, k);
		ir_quant(to, row, d + (uint64_t)r * dst_row, k);
	}
	free(row);
	if (opts->verbose > 0)
		fprintf(stderr, "quantize_head: %s %s -> %s (%.1f -> %.1f MiB)\n",
			w->name ? w->name : "?", ir_dtype_name(w->dtype), type,
			(double)w->nbytes / (1 << 20), (double)nb / (1 << 20));
	w->dtype = to;
	w->data = d;
	w->nbytes = nb;
	w->layout = "gguf";
	return 0;
}
