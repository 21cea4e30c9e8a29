/* test_pool.c - the runtime's thread pool: every thread runs each job once, back to back, concurrently. */
#include "testutil.h"
#include "rt_model.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAXT = 8 };

typedef struct {
	int64_t runs[MAXT]; /* each slot written only by its own thread */
	int nth_seen[MAXT];
	int64_t job;        /* which job this is (changes every run) */
	int64_t seen[MAXT]; /* the job number each thread saw */
} Count;

static void count_job(void *arg, int ith, int nth)
{
	Count *c = arg;
	c->runs[ith]++;
	c->nth_seen[ith] = nth;
	c->seen[ith] = c->job;
}

static void run_many(int n, int64_t jobs)
{
	RtPool *p = rt_pool_new(n);
	assert_non_null(p);
	assert_int_equal(rt_pool_threads(p), n);
	Count c;
	memset(&c, 0, sizeof c);
	for (int64_t j = 0; j < jobs; j++) {
		c.job = j;
		rt_pool_run(p, count_job, &c);
		/* The run is over when it returns: every thread has seen this job. */
		for (int t = 0; t < n; t++)
			if (c.seen[t] != j)
				fail_msg("n=%d job %lld: thread %d saw job %lld", n, (long long)j, t,
					 (long long)c.seen[t]);
	}
	for (int t = 0; t < n; t++) {
		assert_int_equal(c.runs[t], jobs);
		assert_int_equal(c.nth_seen[t], n);
	}
	rt_pool_free(p);
}

static void test_one_thread(void **state)
{
	(void)state;
	run_many(1, 1000);
	assert_null(rt_pool_new(0));
	assert_null(rt_pool_new(-3));
	rt_pool_free(NULL);
}

static void test_many_rapid_runs(void **state)
{
	(void)state;
	run_many(2, 100000);
	run_many(4, 20000); /* more threads than this machine may have cores */
}

/* A parallel sum split by ith/nth, with different data on every run. */
typedef struct {
	const int32_t *x;
	int64_t n;
	int64_t part[MAXT];
} Sum;

static void sum_job(void *arg, int ith, int nth)
{
	Sum *s = arg;
	int64_t lo = s->n * ith / nth, hi = s->n * (ith + 1) / nth, acc = 0;
	for (int64_t i = lo; i < hi; i++)
		acc += s->x[i];
	s->part[ith] = acc;
}

static void test_split_work(void **state)
{
	(void)state;
	enum { N = 10007 };
	int32_t *x = malloc(N * sizeof *x);
	RtPool *p = rt_pool_new(3);
	uint64_t st = 9;
	for (int r = 0; r < 300; r++) {
		for (int i = 0; i < N; i++)
			x[i] = (int32_t)(tu_rand(&st) % 1000);
		Sum s = {x, N - r, {0}};
		int64_t want = 0;
		for (int i = 0; i < N - r; i++)
			want += x[i];
		rt_pool_run(p, sum_job, &s);
		int64_t got = 0;
		for (int t = 0; t < 3; t++)
			got += s.part[t];
		assert_int_equal(got, want);
	}
	rt_pool_free(p);
	free(x);
}

/* Every thread waits for all the others inside the job: passes only if the pool really
 * runs them at the same time. Bounded, so a broken pool fails instead of hanging. */
typedef struct {
	atomic_int arrived;
	atomic_int timeouts;
} Meet;

static void meet_job(void *arg, int ith, int nth)
{
	Meet *m = arg;
	atomic_fetch_add(&m->arrived, 1);
	time_t t0 = time(NULL);
	while (atomic_load(&m->arrived) < nth) {
		if (time(NULL) - t0 > 20) {
			atomic_fetch_add(&m->timeouts, 1);
			return;
		}
	}
}

static void test_concurrent(void **state)
{
	(void)state;
	RtPool *p = rt_pool_new(4);
	for (int r = 0; r < 50; r++) {
		Meet m;
		atomic_init(&m.arrived, 0);
		atomic_init(&m.timeouts, 0);
		rt_pool_run(p, meet_job, &m);
		assert_int_equal(atomic_load(&m.arrived), 4);
		assert_int_equal(atomic_load(&m.timeouts), 0);
	}
	rt_pool_free(p);
}

/* Pools come and go (one per program run, but tests and benches make many). */
static void test_new_free(void **state)
{
	(void)state;
	for (int i = 0; i < 100; i++) {
		RtPool *p = rt_pool_new(1 + i % 4);
		Count c;
		memset(&c, 0, sizeof c);
		if (i % 2)
			rt_pool_run(p, count_job, &c); /* freed right after a job, or idle */
		rt_pool_free(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_thread),
		cmocka_unit_test(test_many_rapid_runs),
		cmocka_unit_test(test_split_work),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_new_free),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
