/* rt_sample.c - choosing the next token from a row of logits (greedy, and llama.cpp's sampler chain). */
/* POSIX (pread, mmap, sysconf, clock_gettime) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t rt_argmax(const float *x, int64_t n)
{
	int64_t best = -1;
	for (int64_t i = 0; i < n; i++) {
		if (x[i] != x[i])
			continue; /* NaN: never chosen */
		/* Strictly greater, so the first of equal maxima wins (the reference's tie rule). */
		if (best < 0 || x[i] > x[best])
			best = i;
	}
	return best < 0 ? 0 : best;
}

/* ---- the sampler ------------------------------------------------------- */

typedef struct {
	float logit;
	int32_t id;
} RtCand;

struct RtSampler {
	RtSamplerParams p;
	int64_t n_vocab;
	RtCand *cand;   /* n_vocab working candidates */
	float *pen;     /* n_vocab penalized logits (greedy path) */
	int32_t *count; /* occurrences of each token in the window */
	int32_t *ring;  /* the last repeat_last_n accepted tokens */
	int ring_len, ring_head;
	uint64_t rng[4]; /* xoshiro256** state */
};

RtSamplerParams rt_sampler_defaults(void)
{
	RtSamplerParams p = {
		.temp = 0.8f,
		.top_k = 40,
		.top_p = 0.95f,
		.min_p = 0.05f,
		.repeat_penalty = 1.0f,
		.repeat_last_n = 64,
		.seed = 0,
		.presence_penalty = 0.0f,
		.frequency_penalty = 0.0f,
	};
	return p;
}

uint64_t rt_splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

uint64_t rt_seed_random(void)
{
	struct timespec ts;
	timespec_get(&ts, TIME_UTC);
	uint64_t s = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
	s ^= (uint64_t)getpid() << 32;
	s ^= (uint64_t)(uintptr_t)&ts; /* address-space randomization adds a little more */
	/* Seeds are printed and typed back in, so keep them to 32 bits like llama.cpp. */
	return rt_splitmix64(&s) & 0xffffffffull;
}

static uint64_t rt_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rt_xoshiro_next(uint64_t *s)
{
	uint64_t r = rt_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rt_rotl(s[3], 45);
	return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rt_rand01(RtSampler *s)
{
	return (double)(rt_xoshiro_next(s->rng) >> 11) * (1.0 / 9007199254740992.0);
}

RtSampler *rt_sampler_new(const RtSamplerParams *p, int64_t n_vocab)
{
	if (n_vocab < 1 || n_vocab > INT32_MAX)
		return NULL;
	RtSampler *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->p = *p;
	if (s->p.repeat_last_n < 0)
		s->p.repeat_last_n = 0;
	s->n_vocab = n_vocab;
	size_t nv = (size_t)n_vocab;
	s->cand = malloc(nv * sizeof *s->cand);
	s->pen = malloc(nv * sizeof *s->pen);
	s->count = calloc(nv, sizeof *s->count);
	s->ring = malloc(((size_t)s->p.repeat_last_n + 1) * sizeof *s->ring);
	if (!s->cand || !s->pen || !s->count || !s->ring) {
		rt_sampler_free(s);
		return NULL;
	}
	uint64_t sm = p->seed;
	for (int i = 0; i < 4; i++)
		s->rng[i] = rt_splitmix64(&sm); /* never all zero: splitmix64 is a bijection */
	return s;
}

void rt_sampler_free(RtSampler *s)
{
	if (!s)
		return;
	free(s->cand);
	free(s->pen);
	free(s->count);
	free(s->ring);
	free(s);
}

void rt_sampler_reset(RtSampler *s)
{
	for (int i = 0; i < s->ring_len; i++)
		s->count[s->ring[i]] = 0;
	s->ring_len = 0;
	s->ring_head = 0;
}

void rt_sampler_accept(RtSampler *s, int32_t token)
{
	int cap = s->p.repeat_last_n;
	if (cap <= 0 || token < 0 || token >= s->n_vocab)
		return;
	if (s->ring_len == cap) {
		/* Full: the oldest (at head) leaves the window. */
		s->count[s->ring[s->ring_head]]--;
		s->ring[s->ring_head] = token;
		s->ring_head = (s->ring_head + 1) % cap;
	} else {
		s->ring[(s->ring_head + s->ring_len) % cap] = token;
		s->ring_len++;
	}
	s->count[token]++;
}

/* Copies logits into out with the repeat penalty applied once per distinct token of the
 * window (llama.cpp's rule, whatever the count), then the presence and frequency
 * penalties (logit -= count * frequency + presence, count the token's occurrences in the
 * window); NaN becomes -inf so it never wins. */
static void rt_penalize(RtSampler *s, const float *logits, float *out)
{
	for (int64_t i = 0; i < s->n_vocab; i++)
		out[i] = logits[i] != logits[i] ? -INFINITY : logits[i];
	float pen = s->p.repeat_penalty, pres = s->p.presence_penalty;
	float freq = s->p.frequency_penalty;
	if ((pen == 1.0f && pres == 0.0f && freq == 0.0f) || s->ring_len == 0)
		return;
	/* Negating count marks a token as done; the second loop restores it. */
	for (int i = 0; i < s->ring_len; i++) {
		int32_t t = s->ring[i];
		if (s->count[t] > 0) {
			if (pen != 1.0f)
				out[t] = out[t] > 0 ? out[t] / pen : out[t] * pen;
			if (pres != 0.0f || freq != 0.0f)
				out[t] -= (float)s->count[t] * freq + pres;
			s->count[t] = -s->count[t];
		}
	}
	for (int i = 0; i < s->ring_len; i++)
		if (s->count[s->ring[i]] < 0)
			s->count[s->ring[i]] = -s->count[s->ring[i]];
}

/* The candidates' total order: higher logit first, then lower id (deterministic ties). */
static int rt_cand_before(const RtCand *a, const RtCand *b)
{
	return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int rt_cand_cmp(const void *va, const void *vb)
{
	const RtCand *a = va, *b = vb;
	return rt_cand_before(a, b) ? -1 : rt_cand_before(b, a) ? 1 : 0;
}

static void rt_cand_swap(RtCand *a, RtCand *b)
{
	RtCand t = *a;
	*a = *b;
	*b = t;
}

/* Moves the k best of c[0..n) to c[0..k), sorted best first, in O(n + k log k): a
 * quickselect with median-of-three pivots, then a sort of the prefix only. 128k logits
 * per token make a full sort the sampler's main cost otherwise. */
static void rt_cand_top(RtCand *c, int64_t n, int64_t k)
{
	if (k <= 0)
		return;
	if (k > n)
		k = n;
	int64_t lo = 0, hi = n - 1;
	while (hi - lo > 16) {
		int64_t mid = lo + (hi - lo) / 2;
		/* median of three into c[mid], then park it at hi */
		if (rt_cand_before(&c[mid], &c[lo]))
			rt_cand_swap(&c[mid], &c[lo]);
		if (rt_cand_before(&c[hi], &c[lo]))
			rt_cand_swap(&c[hi], &c[lo]);
		if (rt_cand_before(&c[hi], &c[mid]))
			rt_cand_swap(&c[hi], &c[mid]);
		rt_cand_swap(&c[mid], &c[hi]);
		RtCand piv = c[hi];
		int64_t store = lo;
		for (int64_t i = lo; i < hi; i++)
			if (rt_cand_before(&c[i], &piv))
				rt_cand_swap(&c[i], &c[store++]);
		rt_cand_swap(&c[store], &c[hi]);
		/* c[lo..store) beat the pivot, c[store] is the pivot, the rest lose to it */
		if (store == k - 1 || store == k) {
			hi = k - 1; /* c[0..k) holds exactly the k best */
			break;
		}
		if (store > k)
			hi = store - 1;
		else
			lo = store + 1;
	}
	/* Invariant: lo <= k-1 <= hi, everything in [0, lo) beats [lo, n) and everything
	 * past hi loses to [lo, hi]; so sorting [0, hi] (at most k + 16 items) finishes. */
	int64_t m = hi + 1;
	qsort(c, (size_t)m, sizeof *c, rt_cand_cmp);
}

/* The k best of x[0..n) into c[0..k), sorted best first, through a heap of the k best so
 * far with the worst at its root: most logits lose to the root at one comparison, so for
 * the usual k (40) this is one pass over the row. */
static void rt_heap_sift(RtCand *h, int64_t k, int64_t i)
{
	for (;;) {
		int64_t w = i, l = 2 * i + 1, r = l + 1;
		if (l < k && rt_cand_before(&h[w], &h[l]))
			w = l;
		if (r < k && rt_cand_before(&h[w], &h[r]))
			w = r;
		if (w == i)
			return;
		rt_cand_swap(&h[i], &h[w]);
		i = w;
	}
}

static void rt_heap_top(const float *x, int64_t n, int64_t k, RtCand *c)
{
	for (int64_t i = 0; i < k; i++) {
		c[i].logit = x[i];
		c[i].id = (int32_t)i;
	}
	for (int64_t i = k / 2 - 1; i >= 0; i--)
		rt_heap_sift(c, k, i);
	for (int64_t i = k; i < n; i++) {
		/* Strictly greater: on equal logits the kept one has the lower id and wins. */
		if (x[i] > c[0].logit) {
			c[0].logit = x[i];
			c[0].id = (int32_t)i;
			rt_heap_sift(c, k, 0);
		}
	}
	qsort(c, (size_t)k, sizeof *c, rt_cand_cmp);
}

/* top-p over sorted-or-not candidates: keeps the shortest best-first prefix whose
 * probability (softmax over the current candidates) reaches p. Sorts lazily: the prefix
 * is usually short, so grow a partial selection instead of sorting everything. */
static int64_t rt_top_p(RtCand *c, int64_t n, int sorted, float p)
{
	float max = c[0].logit;
	for (int64_t i = 1; i < n; i++)
		if (c[i].logit > max)
			max = c[i].logit;
	double sum = 0;
	for (int64_t i = 0; i < n; i++)
		sum += exp((double)c[i].logit - max);
	double want = (double)p * sum;
	int64_t k = sorted ? n : (n < 256 ? n : 256);
	for (;;) {
		if (!sorted)
			rt_cand_top(c, n, k);
		double cum = 0;
		for (int64_t i = 0; i < k; i++) {
			cum += exp((double)c[i].logit - max);
			if (cum >= want)
				return i + 1;
		}
		if (k == n)
			return n; /* rounding: the whole sum fell a hair short of p * sum */
		k = k * 8 < n ? k * 8 : n;
	}
}

/* min-p: keeps candidates whose probability is at least min_p times the best one's,
 * i.e. logit >= max + ln(min_p) (temperature comes later, as in llama.cpp). */
static int64_t rt_min_p(RtCand *c, int64_t n, int sorted, float min_p)
{
	float max = c[0].logit;
	for (int64_t i = 1; i < n; i++)
		if (c[i].logit > max)
			max = c[i].logit;
	float thr = max + logf(min_p);
	if (thr > max)
		thr = max; /* min_p > 1 still keeps the best (and its ties) */
	int64_t m = 0;
	if (sorted) {
		while (m < n && c[m].logit >= thr)
			m++;
		return m;
	}
	for (int64_t i = 0; i < n; i++)
		if (c[i].logit >= thr)
			c[m++] = c[i];
	return m;
}

/* Draws from the softmax of c[0..n)/temp. */
static int32_t rt_draw(RtSampler *s, RtCand *c, int64_t n, float temp)
{
	int64_t best = 0;
	for (int64_t i = 1; i < n; i++)
		if (rt_cand_before(&c[i], &c[best]))
			best = i;
	float max = c[best].logit;
	if (!(max > -INFINITY))
		return c[best].id; /* nothing has any probability: fall back to greedy */
	double sum = 0;
	for (int64_t i = 0; i < n; i++)
		sum += exp(((double)c[i].logit - max) / temp);
	double u = rt_rand01(s) * sum, cum = 0;
	for (int64_t i = 0; i < n; i++) {
		cum += exp(((double)c[i].logit - max) / temp);
		if (u < cum)
			return c[i].id;
	}
	return c[best].id; /* u landed in the rounding gap at the very end */
}

int32_t rt_sampler_sample(RtSampler *s, const float *logits)
{
	int64_t n = s->n_vocab;
	rt_penalize(s, logits, s->pen);
	if (!(s->p.temp > 0))
		return (int32_t)rt_argmax(s->pen, n);

	RtCand *c = s->cand;
	for (int64_t i = 0; i < n; i++)
		if (s->pen[i] > FLT_MAX)
			s->pen[i] = FLT_MAX; /* +inf would make every softmax NaN */
	int sorted = 0;
	if (s->p.top_k > 0 && s->p.top_k < n) {
		/* A large k is cheaper by quickselect than by heap. */
		if (s->p.top_k <= 1024) {
			rt_heap_top(s->pen, n, s->p.top_k, c);
		} else {
			for (int64_t i = 0; i < n; i++) {
				c[i].logit = s->pen[i];
				c[i].id = (int32_t)i;
			}
			rt_cand_top(c, n, s->p.top_k);
		}
		n = s->p.top_k;
		sorted = 1;
	} else {
		for (int64_t i = 0; i < n; i++) {
			c[i].logit = s->pen[i];
			c[i].id = (int32_t)i;
		}
	}
	if (s->p.top_p < 1.0f) {
		n = rt_top_p(c, n, sorted, s->p.top_p);
		sorted = 1; /* rt_top_p leaves the kept prefix sorted */
	}
	if (s->p.min_p > 0.0f)
		n = rt_min_p(c, n, sorted, s->p.min_p);
	return rt_draw(s, c, n, s->p.temp);
}
