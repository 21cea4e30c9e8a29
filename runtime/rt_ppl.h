/* rt_ppl.h - perplexity and KL divergence as llama.cpp's llama-perplexity computes them
 * (examples/perplexity/perplexity.cpp): the chunks of a text, each token's negative
 * log-likelihood, the final estimate and its error, the file of a base model's scored
 * log-probabilities (llama-perplexity's --kl-divergence-base layout) and the statistics of
 * a comparison against it (rt_ppl.c), and the chunks of a text run through a context
 * (rt_ppl_eval.c, over bitnetc.h). rt_ppl.c is arithmetic and a file layout, so that the
 * program's --perplexity (rt_session.c prints what rt_ppl_eval gives) and the tests (over
 * the interpreter's logits) share it. libc and libm.
 *
 * A text of n tokens makes n_chunk = min(--chunks, n / n_ctx) chunks of n_ctx tokens; each
 * is evaluated from an empty cache (its first token replaced by BOS when the model adds
 * one) and only its second half is scored: the logits at positions first = n_ctx / 2 ..
 * n_ctx - 2, each predicting the token after it (n_ctx - 1 - n_ctx / 2 tokens a chunk). */
#ifndef BITNETC_RT_PPL_H
#define BITNETC_RT_PPL_H

#include <stdint.h>
#include <stdio.h>

#include "rt.h"

struct bn_ctx; /* bitnetc.h's context (rt_ppl_eval), which this header does not include so
		* that the compiler's own headers go with it in the tests */

/* The smallest -c that --perplexity takes (a chunk then scores 7 tokens). */
#define RT_PPL_MIN_CTX 16

/* The first position of a chunk whose logits are scored, and how many are. */
int32_t rt_ppl_first(int32_t n_ctx);
int32_t rt_ppl_scored(int32_t n_ctx);
/* Chunks evaluated side by side, one sequence each: as many of the n_chunk as calls of up
 * to ub rows hold whole (at least 1, at most max_seq). */
int32_t rt_ppl_per_call(int32_t ub, int32_t n_ctx, int64_t n_chunk, int32_t max_seq);
/* The chunks a text of n_tokens gives: n_tokens / n_ctx, at most max_chunks (< 0: all). */
int64_t rt_ppl_n_chunk(int64_t n_tokens, int32_t n_ctx, int64_t max_chunks);

/* ---- perplexity --------------------------------------------------------------------- */

/* The sums of the scored tokens' negative log-likelihoods. */
typedef struct {
	double nll, nll2;
	int64_t count;
} RtPplSum;

/* -log p(tok) of one row of n_vocab logits, as llama-perplexity: the maximum in float,
 * the sum of expf(l - max) in double, then max + log(sum) - l[tok] with the float
 * difference l[tok] - max taken first. */
double rt_ppl_nll(const float *logits, int32_t n_vocab, int32_t tok);
void rt_ppl_add(RtPplSum *s, double nll);
/* exp(mean nll): the perplexity so far (the per-chunk progress line). */
double rt_ppl_value(const RtPplSum *s);
/* The final estimate: ppl = exp(mean nll) and its error ppl * sqrt(var / (count - 1)),
 * var = mean(nll^2) - mean(nll)^2. Returns 0, or -1 when var is not positive (the reference
 * then prints no estimate; *err is 0). */
int rt_ppl_final(const RtPplSum *s, double *ppl, double *err);

/* ---- the base file ------------------------------------------------------------------ */
/* llama-perplexity's layout (--kl-divergence-base FILE), little-endian:
 *   "_logits_"            8 bytes
 *   n_ctx                 uint32
 *   n_vocab, n_chunk      int32 each
 *   tokens                int32 [n_chunk * n_ctx]: the text's first n_chunk chunks, as
 *                         tokenized (BOS first when the model adds one)
 *   rows                  per chunk, per scored token (rt_ppl_scored(n_ctx) of them):
 *                         rt_ppl_row_u16(n_vocab) uint16: two float32 (scale, min_log_prob)
 *                         in the first four, then one uint16 q per token of the vocabulary
 *                         (an odd n_vocab gets one padding 0): log p = scale * q +
 *                         min_log_prob, with log-probabilities below max - 16 stored as 0. */
#define RT_PPL_MAGIC "_logits_"
#define RT_PPL_HEADER 20

/* uint16 per scored row: 2 * ((n_vocab + 1) / 2) + 4. */
size_t rt_ppl_row_u16(int32_t n_vocab);
/* The size of a base file, or 0 when it would not fit in 64 bits. */
uint64_t rt_ppl_base_size(int32_t n_ctx, int32_t n_vocab, int32_t n_chunk);
/* One row of logits into row (rt_ppl_row_u16(n_vocab) uint16, host order) as the
 * reference's writer quantizes it; returns -log p(tok) as the writer computes it (in float:
 * the reference's own PPL while it writes a base file). */
double rt_ppl_base_row(const float *logits, int32_t n_vocab, int32_t tok, uint16_t *row);

/* A base file being written: FILE.tmp, renamed onto FILE by rt_ppl_out_close. */
typedef struct {
	FILE *f;
	char path[4096], tmp[4104];
} RtPplOut;
/* Refuses (RT_EINVAL) a path that exists and is not a regular file; opens FILE.tmp and
 * writes the header. */
int rt_ppl_out_open(RtPplOut *o, const char *path, int32_t n_ctx, int32_t n_vocab,
		    int32_t n_chunk, const int32_t *tokens, RtErr *e);
/* Appends one row (host order; written little-endian). */
int rt_ppl_out_row(RtPplOut *o, const uint16_t *row, size_t n, RtErr *e);
/* keep 1: flushes, closes and renames the file into place (an error leaves FILE as it
 * was); keep 0: closes and removes FILE.tmp. Returns the first error. */
int rt_ppl_out_close(RtPplOut *o, int keep, RtErr *e);

/* A base file being read. */
typedef struct {
	FILE *f;
	char path[4096];
	int32_t n_ctx, n_vocab, n_chunk;
	int64_t row; /* rows read so far */
} RtPplBase;
/* Error codes of rt_ppl_base_open beyond RT_EIO (unreadable) and RT_ENOMEM: */
enum {
	RT_PPL_BAD = 100,  /* not a base file, or damaged: its size, its header, a row */
	RT_PPL_OTHER = 101 /* a good file of another run: n_vocab, n_ctx, chunks or text */
};
/* Opens path (a regular file), checks its header and size and that it belongs to this run:
 * n_vocab, n_ctx, the chunk count (chunks < 0: the file's; the text must then hold that
 * many) and its tokens equal to the text's (tokens[0..n_tokens)). Errors name the file and
 * the field; on success the file is at its first row and b->n_chunk is the count. */
int rt_ppl_base_open(RtPplBase *b, const char *path, int32_t n_ctx, int32_t n_vocab,
		     int64_t chunks, const int32_t *tokens, int64_t n_tokens, RtErr *e);
/* The next row into row (rt_ppl_row_u16(n_vocab) uint16, host order); RT_PPL_BAD for a
 * scale or minimum that is not finite, a negative scale or a positive minimum. */
int rt_ppl_base_read(RtPplBase *b, uint16_t *row, RtErr *e);
void rt_ppl_base_close(RtPplBase *b);

/* ---- KL divergence ------------------------------------------------------------------ */

/* The sums of a comparison, and each scored token's KL divergence and delta p. */
typedef struct {
	double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
	double sum_kld, sum_kld2, sum_p_diff, sum_p_diff2, sum_p_diff4;
	float max_p_diff;
	int64_t n_same_top, count;
	float *kld, *p_diff; /* [cap] */
	int64_t cap;
} RtKld;

/* Room for n scored tokens. RT_OK or RT_ENOMEM. */
int rt_kld_init(RtKld *k, int64_t n);
void rt_kld_free(RtKld *k);
/* One scored token: this model's logits row against the base row (as rt_ppl_base_read
 * gives it), tok the token that follows, as llama-perplexity's --kl-divergence (KL(base ||
 * this) summed over the base's log-probabilities above -16; the values are kept while
 * count < cap). Returns this model's -log p(tok), in float as the reference's comparison
 * computes it. */
double rt_kld_row(RtKld *k, const float *logits, int32_t n_vocab, const uint16_t *base,
		int32_t tok);

typedef struct {
	double ppl, ppl_err, ppl_base, ppl_base_err, cor; /* cor: of ln PPL and ln PPL(base) */
	double ln_ratio, ln_ratio_err, ratio, ratio_err, diff, diff_err;
	double kld, kld_err;
	double dp_mean, dp_mean_err, dp_rms, dp_rms_err; /* delta p = p - p_base of the token */
	double same_top, same_top_err;                   /* the same argmax: a fraction */
	/* from the sorted values (rt_kld_stats with sorted 1) */
	double kld_max, kld_p999, kld_p99, kld_median, kld_p10, kld_p05, kld_p01, kld_min;
	double dp_max, dp_p999, dp_p99, dp_p95, dp_p90, dp_p75, dp_median, dp_p25, dp_p10, dp_p05,
		dp_p01, dp_p001, dp_min;
	double dp_abs_max; /* max |delta p| */
} RtKldStats;
/* The statistics as llama-perplexity prints them; sorted 1 also sorts k's values and
 * fills the percentiles (the end of a run), 0 leaves them 0 (a chunk's line). */
void rt_kld_stats(RtKld *k, int sorted, RtKldStats *s);

/* ---- a text through a context -------------------------------------------------------- */

typedef struct {
	const int32_t *tokens; /* the text's: chunk i is tokens[i * n_ctx, (i + 1) * n_ctx) */
	int32_t n_ctx;
	int64_t n_chunk;
	int32_t bos;           /* what replaces each chunk's first token; -1: nothing */
	float *logits;         /* room for bn_ctx_ubatch rows of n_vocab */
	uint16_t *row;         /* room for rt_ppl_row_u16(n_vocab), with out or base */
	RtPplOut *out;         /* NULL, or the base file the scored rows go to */
	RtPplBase *base;       /* NULL, or the base file compared against (with kld) */
	RtKld *kld;
	/* called after each chunk (0-based) with the seconds it took; nonzero stops the run
	 * with that code */
	int (*on_chunk)(void *user, int64_t chunk, double secs);
	void *user;
	RtPplSum sum;          /* the scored tokens so far */
} RtPplRun;

/* Each chunk from an empty cache (bn_ctx_reset), in forward calls of up to bn_ctx_ubatch
 * rows (none of one row unless the cap is 1), with the logits of the scored positions
 * alone; as many chunks side by side as the context has sequences and a call has room for
 * (llama-perplexity's n_seq), which changes no logit; each scored token goes into r->sum and, with r->out, the base file, or, with
 * r->base, the comparison r->kld. The context must hold n_ctx positions. Returns RT_OK; a
 * bn_decode_batch code (BN_E_CANCELLED, BN_E_NONFINITE, ...) or the base file's code, the
 * message in e. */
int rt_ppl_eval(struct bn_ctx *c, RtPplRun *r, RtErr *e);

#endif
