/* rt_pool.c - the persistent thread pool that generated kernels split their work over. */
/* POSIX (clock_gettime) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt.h"
#include "rt_model.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/*
 * One job at a time. rt_pool_run stores (fn, arg), sets pending = n-1 and bumps the
 * generation counter; workers notice the new generation, run their slice, and count
 * pending down. Both waits (workers for a job, the caller for the last worker) spin
 * briefly first, because kernels come back to back during a forward call, and then sleep
 * on a condition variable so that an idle program does not burn cores.
 *
 * Lost wake-ups are ruled out Dekker-style with sequentially consistent atomics: a
 * sleeper announces itself (sleepers / caller_waiting) under the mutex and then re-checks
 * the condition; the waker changes the condition and then looks at the announcement, and
 * signals under the mutex only if someone is (or is about to be) asleep. Each side's write
 * before its read is a read-modify-write (fetch_add, fetch_sub, exchange), not a plain
 * store: C11 orders a seq_cst store before a later seq_cst load too, but an emulator may
 * not (qemu-user translates AArch64's store-release / load-acquire pair on an x86 host
 * without the fence between them, and a 2-thread program under it hung with the caller
 * waiting for the worker and the worker for a job), while an atomic read-modify-write is
 * a full barrier there as on every host.
 */

/* Spin iterations before sleeping: about tens of microseconds, enough to bridge two
 * kernels, short enough not to matter when threads outnumber cores. */
#define RT_POOL_SPIN 4096

struct RtPool {
	int n;
	pthread_t *th;  /* n-1 workers */
	struct RtWorker *ws;
	double *busy; /* [n] each thread's time in the job (rt_pool_run_prof) */
	pthread_mutex_t mu;
	pthread_cond_t cv_job;  /* workers sleep here waiting for a new generation */
	pthread_cond_t cv_done; /* the caller sleeps here waiting for pending == 0 */
	void (*fn)(void *arg, int ith, int nth);
	void *arg;
	atomic_uint_fast64_t gen; /* bumped once per job (after fn/arg are stored) */
	atomic_int pending;       /* workers that have not finished the current job */
	atomic_int sleepers;      /* workers asleep (or going to sleep) on cv_job */
	atomic_int caller_waiting;
	atomic_int quit;
};

typedef struct RtWorker {
	RtPool *p;
	int ith;
} RtWorker;

/* One spin iteration. Every 1024th yields the core, so that when threads outnumber cores
 * a spinning thread lets the one it waits for run. */
static void rt_cpu_relax(int i)
{
	if ((i & 1023) == 1023) {
		sched_yield();
		return;
	}
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) && defined(__GNUC__)
	__asm__ __volatile__("yield");
#endif
}

/* Waits until gen differs from seen; returns the new generation. */
static uint_fast64_t rt_pool_wait_job(RtPool *p, uint_fast64_t seen)
{
	for (int i = 0; i < RT_POOL_SPIN; i++) {
		uint_fast64_t g = atomic_load(&p->gen);
		if (g != seen || atomic_load(&p->quit))
			return g;
		rt_cpu_relax(i);
	}
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add(&p->sleepers, 1);
	while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
		pthread_cond_wait(&p->cv_job, &p->mu);
	atomic_fetch_sub(&p->sleepers, 1);
	pthread_mutex_unlock(&p->mu);
	return atomic_load(&p->gen);
}

static void *rt_pool_worker(void *varg)
{
	RtWorker *w = varg;
	RtPool *p = w->p;
	uint_fast64_t seen = 0;
	for (;;) {
		seen = rt_pool_wait_job(p, seen);
		if (atomic_load(&p->quit))
			break;
		/* fn/arg were stored before gen was bumped (seq_cst), so they are visible. */
		p->fn(p->arg, w->ith, p->n);
		if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting)) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_signal(&p->cv_done);
			pthread_mutex_unlock(&p->mu);
		}
	}
	return NULL;
}

static void rt_pool_wait_done(RtPool *p)
{
	for (int i = 0; i < RT_POOL_SPIN; i++) {
		if (atomic_load(&p->pending) == 0)
			return;
		rt_cpu_relax(i);
	}
	pthread_mutex_lock(&p->mu);
	atomic_exchange(&p->caller_waiting, 1);
	while (atomic_load(&p->pending) != 0)
		pthread_cond_wait(&p->cv_done, &p->mu);
	atomic_store(&p->caller_waiting, 0);
	pthread_mutex_unlock(&p->mu);
}

/* Frees what rt_pool_new allocated once no worker runs any more. */
static void rt_pool_destroy(RtPool *p)
{
	if (p->n > 1) {
		pthread_cond_destroy(&p->cv_job);
		pthread_cond_destroy(&p->cv_done);
		pthread_mutex_destroy(&p->mu);
	}
	free(p->ws);
	free(p->th);
	free(p->busy);
	free(p);
}

/* Stops and joins the first `started` workers. */
static void rt_pool_stop(RtPool *p, int started)
{
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->quit, 1);
	pthread_cond_broadcast(&p->cv_job);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < started; i++)
		pthread_join(p->th[i], NULL);
}

RtPool *rt_pool_new(int n)
{
	if (n < 1)
		return NULL;
	RtPool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->n = n;
	atomic_init(&p->gen, 0);
	atomic_init(&p->pending, 0);
	atomic_init(&p->sleepers, 0);
	atomic_init(&p->caller_waiting, 0);
	atomic_init(&p->quit, 0);
	if (n == 1)
		return p; /* no workers: rt_pool_run calls fn directly */
	p->ws = calloc((size_t)n - 1, sizeof *p->ws);
	p->th = calloc((size_t)n - 1, sizeof *p->th);
	p->busy = calloc((size_t)n, sizeof *p->busy);
	if (!p->ws || !p->th || !p->busy || pthread_mutex_init(&p->mu, NULL) != 0) {
		free(p->ws);
		free(p->th);
		free(p->busy);
		free(p);
		return NULL;
	}
	pthread_cond_init(&p->cv_job, NULL);
	pthread_cond_init(&p->cv_done, NULL);
	for (int i = 0; i < n - 1; i++) {
		p->ws[i].p = p;
		p->ws[i].ith = i + 1;
		if (pthread_create(&p->th[i], NULL, rt_pool_worker, &p->ws[i]) != 0) {
			rt_pool_stop(p, i);
			rt_pool_destroy(p);
			return NULL;
		}
	}
	return p;
}

void rt_pool_free(RtPool *p)
{
	if (!p)
		return;
	if (p->n > 1)
		rt_pool_stop(p, p->n - 1);
	rt_pool_destroy(p);
}

int rt_pool_threads(const RtPool *p)
{
	return p ? p->n : 1;
}

void rt_pool_run(RtPool *p, void (*fn)(void *arg, int ith, int nth), void *arg)
{
	if (!p || p->n == 1) {
		fn(arg, 0, 1);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	atomic_store(&p->pending, p->n - 1);
	atomic_fetch_add(&p->gen, 1);
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv_job);
		pthread_mutex_unlock(&p->mu);
	}
	fn(arg, 0, p->n);
	rt_pool_wait_done(p);
}

double rt_now(void)
{
	struct timespec ts;
#if defined(CLOCK_MONOTONIC)
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
		return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
	timespec_get(&ts, TIME_UTC);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double rt_pool_clock(void)
{
	return rt_now(); /* the model code's name for the runtime's clock (rt_model.h) */
}

typedef struct {
	void (*fn)(void *arg, int ith, int nth);
	void *arg;
	double *busy;
} RtTimedJob;

static void rt_pool_timed(void *arg, int ith, int nth)
{
	RtTimedJob *j = arg;
	double t = rt_pool_clock();
	j->fn(j->arg, ith, nth);
	j->busy[ith] = rt_pool_clock() - t;
}

void rt_pool_run_prof(RtPool *p, void (*fn)(void *arg, int ith, int nth), void *arg,
		      struct RtProfile *prof)
{
	if (!prof || !p || p->n == 1) {
		rt_pool_run(p, fn, arg); /* one thread: nothing waits */
		return;
	}
	RtTimedJob j = {fn, arg, p->busy};
	double t = rt_pool_clock();
	rt_pool_run(p, rt_pool_timed, &j);
	double wall = rt_pool_clock() - t, busy = 0;
	/* the workers' stores happen before their pending count-down, which rt_pool_run
	 * waited for */
	for (int i = 0; i < p->n; i++)
		busy += p->busy[i];
	prof->sec[RT_PROF_WAIT] += wall - busy / p->n;
	prof->calls[RT_PROF_WAIT]++;
}
