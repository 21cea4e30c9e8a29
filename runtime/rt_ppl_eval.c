/* rt_ppl_eval.c - a text through a context for --perplexity (rt_ppl.h): each chunk from an
 * empty cache, the logits of its scored positions alone, each scored token into the sums,
 * the base file or the comparison. Over bitnetc.h; apart from rt_ppl.c so that the
 * arithmetic links without a model (the tests). */
#include "rt_ppl.h"
#include "bitnetc.h"

#include <stdlib.h>
#include <string.h>

/* A group's rows: tokens, positions, sequences and which rows are scored. */
typedef struct {
	int32_t *tok, *pos, *seq;
	int8_t *want;
} RtPplRows;

/* One scored token: its logits row and the token that follows it. */
static int rt_ppl_score(RtPplRun *r, const float *row, int32_t n_vocab, int32_t tok, RtErr *e)
{
	double nll;
	int rc;
	if (r->out) {
		nll = rt_ppl_base_row(row, n_vocab, tok, r->row);
		if ((rc = rt_ppl_out_row(r->out, r->row, rt_ppl_row_u16(n_vocab), e)))
			return rc;
	} else if (r->base) {
		if ((rc = rt_ppl_base_read(r->base, r->row, e)))
			return rc;
		nll = rt_kld_row(r->kld, row, n_vocab, r->row, tok);
	} else {
		nll = rt_ppl_nll(row, n_vocab, tok);
	}
	rt_ppl_add(&r->sum, nll);
	return RT_OK;
}

/* One chunk (its tokens in toks, BOS first when asked), positions 0..n_ctx-1. */
static int rt_ppl_chunk(bn_ctx *c, RtPplRun *r, int64_t ch, int32_t *toks, const int32_t *pos,
			const int8_t *want, RtErr *e)
{
	int32_t n_ctx = r->n_ctx, ub = bn_ctx_ubatch(c), nv = bn_model_n_vocab(bn_ctx_model(c));
	const int32_t *text = r->tokens + (size_t)ch * (size_t)n_ctx;
	memcpy(toks, text, (size_t)n_ctx * sizeof *toks);
	if (r->bos >= 0)
		toks[0] = r->bos;
	bn_ctx_reset(c);
	for (int32_t off = 0, m; off < n_ctx; off += m) {
		int32_t rem = n_ctx - off, n_out = 0;
		m = rem < ub ? rem : ub;
		if (rem - m == 1 && m > 1) /* no last call of one row: that is the step mode */
			m--;
		for (int32_t i = 0; i < m; i++)
			n_out += want[off + i];
		bn_batch b = {.n = m, .token = toks + off, .pos = pos + off, .logits = want + off};
		int rc = bn_decode_batch(c, &b, n_out ? r->logits : NULL);
		if (rc)
			return rt_err(e, rc, "%s", bn_ctx_last_error(c));
		for (int32_t i = 0, j = 0; i < m; i++) {
			if (!want[off + i])
				continue;
			const float *row = r->logits + (size_t)j++ * (size_t)nv;
			if ((rc = rt_ppl_score(r, row, nv, text[off + i + 1], e)))
				return rc;
		}
	}
	return RT_OK;
}

/* Chunks ch..ch+k-1 side by side, chunk j as sequence j, in one bn_decode_batch (calls of
 * up to bn_ctx_ubatch rows, none of one row): a row's logits have the bits they have when
 * its chunk runs alone, and the scored rows come back in chunk order. */
static int rt_ppl_chunks(bn_ctx *c, RtPplRun *r, int64_t ch, int32_t k, RtPplRows *w, RtErr *e)
{
	int32_t n_ctx = r->n_ctx, nv = bn_model_n_vocab(bn_ctx_model(c));
	int32_t first = rt_ppl_first(n_ctx), n = k * n_ctx;
	for (int32_t j = 0; j < k; j++) {
		const int32_t *text = r->tokens + (size_t)(ch + j) * (size_t)n_ctx;
		int32_t *t = w->tok + (size_t)j * (size_t)n_ctx;
		memcpy(t, text, (size_t)n_ctx * sizeof *t);
		if (r->bos >= 0)
			t[0] = r->bos;
		for (int32_t p = 0; p < n_ctx; p++)
			w->seq[(size_t)j * (size_t)n_ctx + (size_t)p] = j;
	}
	bn_ctx_reset(c);
	bn_batch b = {.n = n, .token = w->tok, .pos = w->pos, .seq = w->seq, .logits = w->want};
	int rc = bn_decode_batch(c, &b, r->logits);
	if (rc)
		return rt_err(e, rc, "%s", bn_ctx_last_error(c));
	const float *row = r->logits;
	for (int32_t j = 0; j < k; j++) {
		const int32_t *text = r->tokens + (size_t)(ch + j) * (size_t)n_ctx;
		for (int32_t p = first; p <= n_ctx - 2; p++, row += nv)
			if ((rc = rt_ppl_score(r, row, nv, text[p + 1], e)))
				return rc;
	}
	return RT_OK;
}

int rt_ppl_eval(bn_ctx *c, RtPplRun *r, RtErr *e)
{
	int32_t n_ctx = r->n_ctx, first = rt_ppl_first(n_ctx);
	if (n_ctx < 2 || n_ctx > bn_ctx_n_ctx(c))
		return rt_err(e, BN_E_ARG, "rt_ppl_eval: n_ctx %d (the context holds %d)", (int)n_ctx,
			      (int)bn_ctx_n_ctx(c));
	/* chunks at a time: one per sequence, as many as fill a forward call */
	int32_t k = rt_ppl_per_call(bn_ctx_ubatch(c), n_ctx, r->n_chunk, bn_ctx_n_seq(c));
	size_t n = (size_t)k * (size_t)n_ctx;
	RtPplRows w = {malloc(n * sizeof *w.tok), malloc(n * sizeof *w.pos),
		       malloc(n * sizeof *w.seq), malloc(n)};
	int rc = RT_OK;
	if (!w.tok || !w.pos || !w.seq || !w.want)
		rc = rt_err(e, BN_E_NOMEM, "out of memory for %d chunks of %d tokens", (int)k,
			    (int)n_ctx);
	for (size_t i = 0; !rc && i < n; i++) {
		int32_t p = (int32_t)(i % (size_t)n_ctx);
		w.pos[i] = p;
		w.want[i] = p >= first && p <= n_ctx - 2; /* the last position predicts nothing */
	}
	for (int64_t ch = 0; !rc && ch < r->n_chunk; ch += k) {
		int32_t kk = r->n_chunk - ch < k ? (int32_t)(r->n_chunk - ch) : k;
		double t = rt_now();
		rc = kk > 1 ? rt_ppl_chunks(c, r, ch, kk, &w, e)
			    : rt_ppl_chunk(c, r, ch, w.tok, w.pos, w.want, e);
		double each = (rt_now() - t) / kk;
		for (int32_t j = 0; !rc && j < kk; j++)
			if (r->on_chunk && (rc = r->on_chunk(r->user, ch + j, each)))
				rt_err(e, rc, "stopped after chunk %lld", (long long)(ch + j) + 1);
	}
	free(w.tok);
	free(w.pos);
	free(w.seq);
	free(w.want);
	return rc;
}
