/* fake_model.c - a tiny hand-written stand-in for a generated model.c, for testing the runtime's main().
 *
 * n_vocab 16, batch templates 1, 2 and 4, kv 16 bytes per position, a 5000-byte weights payload with
 * byte i = (i * 31 + 7) & 255 (tests/runtime/test_main.c writes the same). For token t at
 * position p in a call of n tokens, logits row v is
 *   10                       if v == (t + 1) % 16   (so greedy continues t+1, t+2, ...)
 *   n                        if v == (t + 2) % 16   (the call size, to check chunking)
 *   0.01 * (previous + 1)    if v == (t + 3) % 16   (the token at p - 1, read from the KV
 *                                                    cache; 0 at p = 0)
 *   w[(t * 16 + v) % 5000] / 10000   otherwise      (proves the payload is mapped)
 * Rows are filled by the thread pool, one slice of v per thread; with last_only only the
 * last token's row is written, as row 0.
 * Built with -DFAKE_FAULTS (a second program of test_main.c), some tokens break the run as a
 * model with broken weights would: token 12 has a NaN embedding row, token 13 overflows in
 * layer 1 (forward returns RT_FORWARD_NONFINITE for both), token 14 gets a NaN in its
 * logits row while forward reports success. */
#include "rt_model.h"

#include <math.h>
#include <stdlib.h>

#define FAKE_VOCAB 16
#define FAKE_WBYTES 5000
#ifndef FAKE_HASH
#define FAKE_HASH 0 /* the test passes rt_weights_hash of the payload */
#endif

static uint64_t fake_kv_bytes(int64_t n_ctx, int32_t n_seq)
{
	return (uint64_t)n_ctx * (uint64_t)(n_seq > 0 ? n_seq : 1) * 16;
}

typedef struct {
	const RtState *st;
	int32_t tok, prev, n;
	float *row;
} FakeRow;

static void fake_row(void *arg, int ith, int nth)
{
	const FakeRow *r = arg;
	for (int v = ith; v < FAKE_VOCAB; v += nth) {
		float x;
		if (v == (r->tok + 1) % FAKE_VOCAB)
			x = 10.0f;
		else if (v == (r->tok + 2) % FAKE_VOCAB)
			x = (float)r->n;
		else if (v == (r->tok + 3) % FAKE_VOCAB)
			x = 0.01f * (float)(r->prev + 1);
		else
			x = (float)r->st->w[(r->tok * FAKE_VOCAB + v) % FAKE_WBYTES] / 10000.0f;
		r->row[v] = x;
	}
}

static int fake_forward(RtState *st, const int32_t *tokens, int n, int64_t pos, float *logits,
			int last_only)
{
	if (n < 1 || n > 4 || pos < 0 || pos + n > st->n_ctx || ((uintptr_t)st->scratch & 63))
		abort(); /* the runtime broke the contract */
#if defined(FAKE_FAULTS)
	for (int i = 0; i < n; i++)
		if (tokens[i] == 12 || tokens[i] == 13) {
			st->bad_token = i;
			st->bad_layer = tokens[i] == 12 ? -1 : 1;
			return RT_FORWARD_NONFINITE;
		}
#endif
	for (int i = 0; i < n; i++) {
		int64_t p = pos + i;
		/* The KV "cache": token + 1 at the position's first slot (0 = never written). */
		st->kv[p * 8] = (uint16_t)(tokens[i] + 1);
		if (!logits || (last_only && i < n - 1))
			continue;
		FakeRow r = {st, tokens[i], p ? (int32_t)st->kv[(p - 1) * 8] - 1 : -1, n,
			     logits + (last_only ? 0 : (size_t)i * FAKE_VOCAB)};
		rt_pool_run(st->pool, fake_row, &r);
#if defined(FAKE_FAULTS)
		if (tokens[i] == 14)
			r.row[5] = NAN;
#endif
	}
	return 0;
}

static const int32_t fake_sizes[] = {1, 2, 4};

const RtModel BN_MODEL_SYMBOL = {
	.abi = RT_MODEL_ABI,
	.cpu_features = "",
	.name = "fake-16",
	.arch = "fake",
	.target = "cpu-generic",
	.pipeline = "none",
	.version = "test",
	.info = "a hand-written test model: 16 tokens, 4 per call\n",
	.n_vocab = FAKE_VOCAB,
	.n_ctx_train = 64,
	.n_layer = 1,
	.n_embd = 16,
	.bos = 0,
	.eos = 15,
	.weights_bytes = FAKE_WBYTES,
	.weights_hash = FAKE_HASH,
	.max_batch = 4,
	.batch_sizes = fake_sizes,
	.n_batch_sizes = 3,
	.scratch_bytes = 100,
	.kv_bytes = fake_kv_bytes,
	.forward = fake_forward,
};
