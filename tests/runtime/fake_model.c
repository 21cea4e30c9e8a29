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
 * (previous: of the row's own sequence). Rows are filled by the thread pool, one slice of v
 * per thread; decode writes the batch's out rows only (the runtime's last-only call: out =
 * {n-1}, the last token's row as row 0), in out's order. A malformed batch aborts.
 * Built with -DFAKE_FAULTS (a second program of test_main.c), some tokens break the run as a
 * model with broken weights would: token 12 has a NaN embedding row, token 13 overflows in
 * layer 1 (decode returns RT_FORWARD_NONFINITE for both), token 14 gets a NaN in its
 * logits row while decode reports success.
 * Built with -DFAKE_DEVICE and runtime/rt_cuda.c (a third program), it stands in for a model
 * built for a GPU: init opens the CUDA driver (rt_cuda_open, compute capability 8.0 or
 * newer) and returns what it says, RT_INIT_DEVICE included, and device_info probes it;
 * decode still runs on the CPU. */
#include "rt_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(FAKE_DEVICE)
#include "rt_cuda.h"
#endif

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

/* The runtime's calls: 1..4 rows, each row's position and sequence inside the state, out
 * rows ascending rows of the call, the scratch 64-byte aligned; anything else aborts. */
static void fake_check(const RtState *st, const RtBatch *b)
{
	int32_t n_seq = st->n_seq > 0 ? st->n_seq : 1;
	if (!b || b->n < 1 || b->n > 4 || !b->token || !b->pos || ((uintptr_t)st->scratch & 63))
		abort(); /* the runtime broke the contract */
	for (int i = 0; i < b->n; i++)
		if (b->pos[i] < 0 || b->pos[i] >= st->n_ctx ||
		    (b->seq && (b->seq[i] < 0 || b->seq[i] >= n_seq)))
			abort();
	if (b->out && (b->n_out < 0 || b->n_out > b->n))
		abort();
	for (int r = 0; b->out && r < b->n_out; r++)
		if (b->out[r] < (r ? b->out[r - 1] + 1 : 0) || b->out[r] >= b->n)
			abort();
}

/* The KV "cache" slot of row i: token + 1 at the first of the position's 8 (0 = never
 * written), in its sequence's region. */
static uint16_t *fake_slot(const RtState *st, const RtBatch *b, int i, int32_t pos)
{
	int64_t seq = b->seq ? b->seq[i] : 0;
	return &st->kv[(seq * st->n_ctx + pos) * 8];
}

static int fake_decode(RtState *st, const RtBatch *b, float *logits)
{
	fake_check(st, b);
	const int n = b->n;
#if defined(FAKE_FAULTS)
	for (int i = 0; i < n; i++)
		if (b->token[i] == 12 || b->token[i] == 13) {
			st->bad_token = i;
			st->bad_layer = b->token[i] == 12 ? -1 : 1;
			return RT_FORWARD_NONFINITE;
		}
#endif
	/* every row's K and V first, then the rows */
	for (int i = 0; i < n; i++)
		*fake_slot(st, b, i, b->pos[i]) = (uint16_t)(b->token[i] + 1);
	int n_out = b->out ? b->n_out : n;
	for (int r = 0; logits && r < n_out; r++) {
		int i = b->out ? b->out[r] : r;
		int32_t p = b->pos[i];
		FakeRow row = {st, b->token[i], p ? (int32_t)*fake_slot(st, b, i, p - 1) - 1 : -1, n,
			       logits + (size_t)r * FAKE_VOCAB};
		rt_pool_run(st->pool, fake_row, &row);
#if defined(FAKE_FAULTS)
		if (b->token[i] == 14)
			row.row[5] = NAN;
#endif
	}
	return 0;
}

static const int32_t fake_sizes[] = {1, 2, 4};

#if defined(FAKE_DEVICE)
#define FAKE_MIN_CC 80

static int fake_init(const uint8_t *w, uint64_t w_bytes, void **inst, char *err, size_t n)
{
	(void)w;
	(void)w_bytes;
	RtCuda *c = NULL;
	int rc = rt_cuda_open(FAKE_MIN_CC, 0, &c, err, n);
	*inst = c;
	return rc == RT_CUDA_ENODEV ? RT_INIT_DEVICE : rc ? -1 : 0;
}

static void fake_fini(void *inst)
{
	rt_cuda_close(inst);
}

static void fake_device_info(char *buf, size_t n)
{
	char line[512];
	if (rt_cuda_probe(FAKE_MIN_CC, 0, line, sizeof line))
		snprintf(buf, n, "none: %s", line);
	else
		snprintf(buf, n, "%s", line);
}
#endif

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
	.decode = fake_decode,
#if defined(FAKE_DEVICE)
	.init = fake_init,
	.fini = fake_fini,
	.device_info = fake_device_info,
#endif
};
