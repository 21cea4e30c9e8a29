/* batch_templates.c - choose the token counts to build forward functions for and record them
 * on the graph. The CPU backend builds one forward per size: forward_t1 (one token: GEMV,
 * the reference's step mode) and forward_tS for calls of up to S tokens, whose ternary
 * kernels tile tokens for S (tiled GEMM).
 * requires: a verified graph; produces: graph attributes batch_sizes (int list, ascending,
 * distinct, starting at 1) and batch_split ("greedy": the runtime splits a prompt of n tokens
 * into the largest sizes first, as bitnet.cpp does); invalidates: nothing. */
#include "pass.h"
#include "rt_batch.h"

#include <inttypes.h>
#include <stdlib.h>

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

int pass_batch_templates(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	int n = 0;
	const int64_t *in = pass_opt_ints(opts, "sizes", &n);
	if (!in || n < 1)
		return bn_err(e, BN_EINVAL, "option sizes is empty; expected e.g. 1,8,32,128");
	int64_t s[64];
	if (n > (int)(sizeof s / sizeof s[0]))
		return bn_err(e, BN_EINVAL, "option sizes has %d entries, at most %d", n,
			      (int)(sizeof s / sizeof s[0]));
	for (int i = 0; i < n; i++) {
		if (!rt_max_batch_ok(in[i]))
			return bn_err(e, BN_EINVAL, "option sizes: %" PRId64 " is out of range 1..%d",
				      in[i], RT_MAX_BATCH);
		s[i] = in[i];
	}
	/* Order does not matter to the user; duplicates would be the same template twice. */
	qsort(s, (size_t)n, sizeof s[0], cmp_i64);
	int k = 0;
	for (int i = 0; i < n; i++)
		if (k == 0 || s[i] != s[k - 1])
			s[k++] = s[i];
	/* Decoding is one token per step. */
	if (s[0] != 1)
		return bn_err(e, BN_EINVAL, "option sizes must include 1 (the decode step)");
	int rc = pass_gattr_set_ints(g, "batch_sizes", s, k, e);
	if (!rc)
		rc = pass_gattr_set_str(g, "batch_split", "greedy", e);
	if (!rc && opts->verbose > 0) {
		fprintf(stderr, "batch_templates: sizes");
		for (int i = 0; i < k; i++)
			fprintf(stderr, "%s%" PRId64, i ? "," : " ", s[i]);
		fprintf(stderr, "\n");
	}
	return rc;
}
