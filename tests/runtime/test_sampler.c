/* test_sampler.c - the runtime's sampler: greedy, the llama.cpp chain's filters, repeat penalty,
 * presence and frequency penalties, seeds. */
#include "testutil.h"
#include "rt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* All filters off: plain softmax sampling at temp. */
static RtSamplerParams plain(float temp, uint64_t seed)
{
	RtSamplerParams p = rt_sampler_defaults();
	p.temp = temp;
	p.top_k = 0;
	p.top_p = 1.0f;
	p.min_p = 0.0f;
	p.seed = seed;
	return p;
}

/* Draws n tokens from the same logits; counts[v] gets how often v came up. */
static void draw(const RtSamplerParams *p, const float *logits, int64_t nv, int n, int *counts)
{
	RtSampler *s = rt_sampler_new(p, nv);
	assert_non_null(s);
	memset(counts, 0, (size_t)nv * sizeof *counts);
	for (int i = 0; i < n; i++) {
		int32_t t = rt_sampler_sample(s, logits);
		assert_true(t >= 0 && t < nv);
		counts[t]++;
	}
	rt_sampler_free(s);
}

/* The set of tokens that come up at all over n draws (as a bit mask, nv <= 32). */
static uint32_t support(const RtSamplerParams *p, const float *logits, int64_t nv, int n)
{
	int counts[32];
	draw(p, logits, nv, n, counts);
	uint32_t m = 0;
	for (int v = 0; v < nv; v++)
		if (counts[v])
			m |= 1u << v;
	return m;
}

static void test_defaults(void **state)
{
	(void)state;
	RtSamplerParams p = rt_sampler_defaults();
	assert_float_equal(p.temp, 0.8f, 0);
	assert_int_equal(p.top_k, 40);
	assert_float_equal(p.top_p, 0.95f, 0);
	assert_float_equal(p.min_p, 0.05f, 0);
	assert_float_equal(p.repeat_penalty, 1.0f, 0);
	assert_int_equal(p.repeat_last_n, 64);
	assert_float_equal(p.presence_penalty, 0.0f, 0);
	assert_float_equal(p.frequency_penalty, 0.0f, 0);
	assert_null(rt_sampler_new(&p, 0));
	/* Random seeds differ from call to call (almost surely) and stay 32-bit. */
	uint64_t a = rt_seed_random(), b = rt_seed_random();
	assert_true(a <= 0xffffffffull && b <= 0xffffffffull);
	assert_true(a != b);
}

static void test_greedy(void **state)
{
	(void)state;
	const float l[] = {0.5f, 2.0f, -1.0f, 2.0f, NAN};
	for (int i = 0; i < 2; i++) {
		RtSamplerParams p = rt_sampler_defaults();
		p.temp = i ? -1.0f : 0.0f; /* 0 and negative are both greedy */
		RtSampler *s = rt_sampler_new(&p, 5);
		for (int k = 0; k < 10; k++)
			assert_int_equal(rt_sampler_sample(s, l), 1); /* tie 1 vs 3: the lower id */
		rt_sampler_free(s);
	}
	/* top-k 1 is greedy too, at any temperature and seed. */
	float big[1000];
	uint64_t st = 7;
	for (int i = 0; i < 1000; i++)
		big[i] = tu_randf(&st) * 5;
	int64_t best = rt_argmax(big, 1000);
	RtSamplerParams p = plain(1.5f, 99);
	p.top_k = 1;
	RtSampler *s = rt_sampler_new(&p, 1000);
	for (int k = 0; k < 200; k++)
		assert_int_equal(rt_sampler_sample(s, big), best);
	rt_sampler_free(s);
	/* The logits row is not modified. */
	float copy[1000];
	memcpy(copy, big, sizeof big);
	p = rt_sampler_defaults();
	p.repeat_penalty = 2.0f;
	s = rt_sampler_new(&p, 1000);
	rt_sampler_accept(s, 5);
	rt_sampler_sample(s, big);
	assert_memory_equal(copy, big, sizeof big);
	rt_sampler_free(s);
}

static void test_seed_determinism(void **state)
{
	(void)state;
	enum { NV = 128256, N = 64 };
	float *l = malloc(NV * sizeof *l);
	uint64_t st = 3;
	for (int i = 0; i < NV; i++)
		l[i] = tu_randf(&st) * 4;
	int32_t a[N], b[N], c[N];
	int32_t *runs[] = {a, b, c};
	const uint64_t seeds[] = {42, 42, 43};
	for (int r = 0; r < 3; r++) {
		RtSamplerParams p = rt_sampler_defaults(); /* the full default chain */
		p.seed = seeds[r];
		p.repeat_penalty = 1.1f;
		RtSampler *s = rt_sampler_new(&p, NV);
		for (int i = 0; i < N; i++) {
			runs[r][i] = rt_sampler_sample(s, l);
			rt_sampler_accept(s, runs[r][i]);
		}
		rt_sampler_free(s);
	}
	assert_memory_equal(a, b, sizeof a);
	assert_true(memcmp(a, c, sizeof a) != 0);
	/* With the defaults, only the top 40 can come up. */
	for (int i = 0; i < N; i++) {
		int above = 0;
		for (int v = 0; v < NV; v++)
			above += l[v] > l[a[i]];
		assert_true(above < 40 + i); /* at most i tokens were penalized down */
	}
	free(l);
}

static void test_distribution(void **state)
{
	(void)state;
	/* softmax([0, ln 2, ln 3]) = 1/6, 2/6, 3/6 */
	const float l[] = {0.0f, logf(2.0f), logf(3.0f)};
	enum { N = 60000 };
	int counts[3];
	RtSamplerParams p = plain(1.0f, 1234);
	draw(&p, l, 3, N, counts);
	for (int v = 0; v < 3; v++)
		assert_float_equal((double)counts[v] / N, (v + 1) / 6.0, 0.01);
	/* Temperature 2 flattens: p ~ sqrt(1), sqrt(2), sqrt(3). */
	p = plain(2.0f, 99);
	draw(&p, l, 3, N, counts);
	double z = 1 + sqrt(2.0) + sqrt(3.0);
	assert_float_equal((double)counts[0] / N, 1 / z, 0.01);
	assert_float_equal((double)counts[2] / N, sqrt(3.0) / z, 0.01);
	/* -inf and NaN never come up. */
	const float m[] = {1.0f, -INFINITY, NAN, 1.0f};
	p = plain(1.0f, 5);
	assert_int_equal(support(&p, m, 4, 2000), 0x9u);
	/* All -inf: falls back to the lowest id. */
	const float none[] = {-INFINITY, -INFINITY, -INFINITY};
	assert_int_equal(support(&p, none, 3, 10), 0x1u);
}

static void test_top_k(void **state)
{
	(void)state;
	const float l[] = {1.0f, 3.0f, 2.0f, 0.5f, 2.9f, 2.95f};
	RtSamplerParams p = plain(1.0f, 11);
	p.top_k = 3; /* 1, 5, 4 */
	assert_int_equal(support(&p, l, 6, 3000), (1u << 1) | (1u << 5) | (1u << 4));
	p.top_k = 100; /* k > n: everything */
	assert_int_equal(support(&p, l, 6, 5000), 0x3fu);
	p.top_k = 0; /* off */
	assert_int_equal(support(&p, l, 6, 5000), 0x3fu);
	p.top_k = 6; /* k == n */
	assert_int_equal(support(&p, l, 6, 5000), 0x3fu);
	/* Ties at the cut go to the lower ids. */
	const float t[] = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f};
	p.top_k = 2;
	assert_int_equal(support(&p, t, 5, 2000), 0x6u);

	/* A large vocabulary: the k drawn are exactly the k largest (a small k goes through
	 * a heap, a large one through quickselect). */
	enum { NV = 128256 };
	float *big = malloc(NV * sizeof *big);
	uint64_t st = 77;
	for (int i = 0; i < NV; i++)
		big[i] = tu_randf(&st);
	const int ks[] = {40, 5000};
	for (int j = 0; j < 2; j++) {
		p = plain(100.0f, 8); /* hot: spread over all k */
		p.top_k = ks[j];
		RtSampler *s = rt_sampler_new(&p, NV);
		int beyond_half = 0;
		for (int i = 0; i < 300; i++) {
			int32_t tok = rt_sampler_sample(s, big);
			int above = 0;
			for (int v = 0; v < NV; v++)
				above += big[v] > big[tok];
			assert_true(above < ks[j]);
			beyond_half += above >= ks[j] / 2;
		}
		assert_true(beyond_half > 50); /* and they are spread over all k */
		rt_sampler_free(s);
	}
	free(big);
}

static void test_top_p(void **state)
{
	(void)state;
	/* probabilities 0.5, 0.25, 0.125, 0.125 */
	const float l[] = {logf(4), logf(2), 0.0f, 0.0f};
	RtSamplerParams p = plain(1.0f, 21);
	p.top_p = 1e-6f; /* tiny: only the best */
	assert_int_equal(support(&p, l, 4, 2000), 0x1u);
	p.top_p = 0.0f;
	assert_int_equal(support(&p, l, 4, 2000), 0x1u);
	p.top_p = 0.5f; /* the first token reaches 0.5 exactly */
	assert_int_equal(support(&p, l, 4, 2000), 0x1u);
	p.top_p = 0.6f; /* needs the second (0.75) */
	assert_int_equal(support(&p, l, 4, 4000), 0x3u);
	p.top_p = 0.8f; /* 0.875: the third; the tie 2 vs 3 goes to the lower id */
	assert_int_equal(support(&p, l, 4, 4000), 0x7u);
	p.top_p = 1.0f; /* off: all */
	assert_int_equal(support(&p, l, 4, 8000), 0xfu);
	/* After top-k, top-p works on the renormalized remainder (as llama.cpp):
	 * top-2 leaves 2/3, 1/3; top-p 0.7 needs both. */
	p.top_k = 2;
	p.top_p = 0.7f;
	assert_int_equal(support(&p, l, 4, 4000), 0x3u);

	/* Unsorted large vocab without top-k: the kept set is the best prefix. */
	enum { NV = 50000 };
	float *big = malloc(NV * sizeof *big);
	uint64_t st = 5;
	for (int i = 0; i < NV; i++)
		big[i] = tu_randf(&st) * 3;
	p = plain(1.0f, 3);
	p.top_p = 0.9f;
	RtSampler *s = rt_sampler_new(&p, NV);
	double sum = 0;
	float mx = big[rt_argmax(big, NV)];
	for (int v = 0; v < NV; v++)
		sum += exp((double)big[v] - mx);
	for (int i = 0; i < 300; i++) {
		int32_t tok = rt_sampler_sample(s, big);
		/* everything better than tok must hold less than 0.9 of the mass */
		double better = 0;
		for (int v = 0; v < NV; v++)
			if (big[v] > big[tok])
				better += exp((double)big[v] - mx);
		assert_true(better / sum < 0.9);
	}
	rt_sampler_free(s);
	free(big);
}

static void test_min_p(void **state)
{
	(void)state;
	/* probabilities relative to the best: 1, 0.5, 0.25, 1 (a tie for the best) */
	const float l[] = {0.0f, -logf(2), -logf(4), 0.0f};
	RtSamplerParams p = plain(1.0f, 31);
	p.min_p = 1.0f; /* only the best and its ties */
	assert_int_equal(support(&p, l, 4, 2000), 0x9u);
	p.min_p = 0.4f;
	assert_int_equal(support(&p, l, 4, 4000), 0xbu);
	p.min_p = 0.2f;
	assert_int_equal(support(&p, l, 4, 8000), 0xfu);
	p.min_p = 0.0f;
	assert_int_equal(support(&p, l, 4, 8000), 0xfu);
	/* Min-p looks at the logits before temperature: a hot temperature does not bring
	 * back what it dropped. */
	p.min_p = 0.4f;
	p.temp = 50.0f;
	assert_int_equal(support(&p, l, 4, 4000), 0xbu);
}

static void test_repeat_penalty(void **state)
{
	(void)state;
	RtSamplerParams p = rt_sampler_defaults();
	p.temp = 0.0f;
	p.repeat_penalty = 2.0f;
	p.repeat_last_n = 3;
	/* positive logit 3 -> 1.5 loses to 2; negative -0.4 -> -0.8 loses to -0.6 */
	const float pos[] = {3.0f, 2.0f, 0.0f};
	const float neg[] = {-0.4f, -0.6f, -5.0f};
	RtSampler *s = rt_sampler_new(&p, 3);
	assert_int_equal(rt_sampler_sample(s, pos), 0);
	assert_int_equal(rt_sampler_sample(s, neg), 0);
	rt_sampler_accept(s, 0);
	rt_sampler_accept(s, 0); /* applied once per token, however often it occurred */
	assert_int_equal(rt_sampler_sample(s, pos), 1);
	assert_int_equal(rt_sampler_sample(s, neg), 1);
	const float once[] = {3.0f, 1.6f, 0.0f}; /* 3/2 = 1.5 < 1.6 but 3/4 would be too */
	assert_int_equal(rt_sampler_sample(s, once), 1);
	const float twice[] = {3.0f, 1.4f, 0.0f}; /* 1.5 > 1.4: penalized only once */
	assert_int_equal(rt_sampler_sample(s, twice), 0);

	/* The window holds only the last 3: after 0 0 1 2 2, token 0 is out of it. */
	const float probe[] = {3.0f, 0.0f, 2.0f}; /* 2 wins only while 0 is penalized */
	rt_sampler_accept(s, 1); /* window: 0 0 1 */
	assert_int_equal(rt_sampler_sample(s, probe), 2);
	rt_sampler_accept(s, 2);
	assert_int_equal(rt_sampler_sample(s, probe), 0); /* window 0 1 2: 2 -> 1.0 < 1.5 */
	rt_sampler_accept(s, 2); /* window: 1 2 2 */
	assert_int_equal(rt_sampler_sample(s, probe), 0);
	const float b[] = {0.0f, 3.0f, 2.0f}; /* 1 -> 1.5, 2 -> 1.0 */
	assert_int_equal(rt_sampler_sample(s, b), 1);
	/* Reset empties the window. */
	rt_sampler_reset(s);
	const float c[] = {0.0f, 1.0f, 1.9f};
	assert_int_equal(rt_sampler_sample(s, c), 2);
	rt_sampler_free(s);

	/* Penalty 1 and window 0 are off. */
	p.repeat_penalty = 1.0f;
	s = rt_sampler_new(&p, 3);
	rt_sampler_accept(s, 0);
	assert_int_equal(rt_sampler_sample(s, pos), 0);
	rt_sampler_free(s);
	p.repeat_penalty = 2.0f;
	p.repeat_last_n = 0;
	s = rt_sampler_new(&p, 3);
	rt_sampler_accept(s, 0);
	assert_int_equal(rt_sampler_sample(s, pos), 0);
	rt_sampler_accept(s, 7); /* out of range: ignored */
	rt_sampler_free(s);
}

/* OpenAI's penalties over the repeat window: logit -= count * frequency + presence for a
 * token the window holds (count its occurrences there), after the repeat penalty. */
static void test_presence_frequency(void **state)
{
	(void)state;
	RtSamplerParams p = rt_sampler_defaults();
	p.temp = 0.0f;
	p.repeat_last_n = 4;
	p.presence_penalty = 1.0f;
	RtSampler *s = rt_sampler_new(&p, 3);
	const float a[] = {3.0f, 2.5f, 0.0f}, b[] = {3.0f, 1.9f, 0.0f};
	assert_int_equal(rt_sampler_sample(s, a), 0);
	rt_sampler_accept(s, 0);
	assert_int_equal(rt_sampler_sample(s, a), 1); /* 3 - 1 = 2 < 2.5 */
	rt_sampler_accept(s, 0);
	assert_int_equal(rt_sampler_sample(s, b), 0); /* presence: once, whatever the count */
	rt_sampler_free(s);

	p.presence_penalty = 0.0f;
	p.frequency_penalty = 0.5f;
	s = rt_sampler_new(&p, 3);
	const float c[] = {3.0f, 2.1f, 0.0f}, d[] = {3.0f, 2.4f, 0.0f};
	rt_sampler_accept(s, 0);
	assert_int_equal(rt_sampler_sample(s, c), 0); /* 3 - 0.5 = 2.5 > 2.1 */
	rt_sampler_accept(s, 0);
	assert_int_equal(rt_sampler_sample(s, c), 1); /* 3 - 2 * 0.5 = 2 < 2.1 */
	rt_sampler_accept(s, 1);
	rt_sampler_accept(s, 1);
	rt_sampler_accept(s, 2); /* the window (4) is 0 1 1 2: token 0 once, 1 twice */
	assert_int_equal(rt_sampler_sample(s, d), 0); /* 2.5 against 2.4 - 1 */
	rt_sampler_reset(s);
	assert_int_equal(rt_sampler_sample(s, c), 0);
	rt_sampler_free(s);

	/* after the repeat penalty, on negative logits too */
	p.repeat_penalty = 2.0f;
	p.presence_penalty = 0.5f;
	p.frequency_penalty = 0.25f;
	s = rt_sampler_new(&p, 3);
	rt_sampler_accept(s, 0);
	rt_sampler_accept(s, 0);
	const float e[] = {3.0f, 0.6f, 0.0f}, f[] = {3.0f, 0.4f, 0.0f}; /* 3/2 - 1 = 0.5 */
	assert_int_equal(rt_sampler_sample(s, e), 1);
	assert_int_equal(rt_sampler_sample(s, f), 0);
	const float g[] = {-1.0f, -2.9f, -9.0f}, h[] = {-1.0f, -3.1f, -9.0f}; /* -2 - 1 = -3 */
	assert_int_equal(rt_sampler_sample(s, g), 1);
	assert_int_equal(rt_sampler_sample(s, h), 0);
	rt_sampler_free(s);

	/* no window, no penalties */
	p.repeat_last_n = 0;
	s = rt_sampler_new(&p, 3);
	rt_sampler_accept(s, 0);
	assert_int_equal(rt_sampler_sample(s, e), 0);
	rt_sampler_free(s);

	/* sampled: the penalized token's share is that of its shifted logit (1 - 1 = 0 against
	 * 0: half the draws of two tokens) */
	RtSamplerParams q = plain(1.0f, 5);
	q.repeat_last_n = 8;
	q.presence_penalty = 1.0f;
	s = rt_sampler_new(&q, 2);
	rt_sampler_accept(s, 0);
	const float two[] = {1.0f, 0.0f};
	int n0 = 0;
	for (int i = 0; i < 4000; i++)
		n0 += rt_sampler_sample(s, two) == 0;
	assert_in_range(n0, 1800, 2200);
	rt_sampler_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_greedy),
		cmocka_unit_test(test_seed_determinism),
		cmocka_unit_test(test_distribution),
		cmocka_unit_test(test_top_k),
		cmocka_unit_test(test_top_p),
		cmocka_unit_test(test_min_p),
		cmocka_unit_test(test_repeat_penalty),
		cmocka_unit_test(test_presence_frequency),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
