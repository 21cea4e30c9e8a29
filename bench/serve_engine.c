/* serve_engine.c - throughput of the serving engine (runtime/rt_serve.c): 1, 2, 4, 8 and 16
 * concurrent greedy requests of TOKENS generated tokens each through an engine of as many
 * slots, aggregate generated tokens/s (median of REPS runs) and its ratio to one stream;
 * then what one bn_decode_batch step of k single-token rows (k sequences) costs against a
 * step of one row. Built by bench/serve.sh with the files `bitnetc build --emit-c` writes
 * (less main.c). Usage: serve_engine WEIGHTS [TOKENS [REPS [THREADS]]] (TOKENS 0: only the
 * step costs; PROFILE=1 in the environment: each step size's time by kernel family). A
 * step's cost is also given as the process's CPU time (the least of the REPS): with
 * THREADS 1 on a busy machine, where the wall time measures the other programs too, the
 * fairer figure for comparing builds. */
#include "bitnetc.h"
#include "rt_serve.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_done;
static long long n_gen;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_done(void *user, const RtServeResult *r)
{
	(void)user;
	pthread_mutex_lock(&mu);
	n_done++;
	n_gen += r->n_generated;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Generated tokens/s of n concurrent requests through n slots (one run). */
static double run(bn_model *m, int n, int tokens, int threads, long long *gen)
{
	char err[512];
	int code = 0;
	RtServeConfig cfg = {n, 128, threads, n, 0};
	RtServe *s = rt_serve_new(m, &cfg, &code, err, sizeof err);
	if (!s) {
		fprintf(stderr, "rt_serve_new: %s\n", err);
		exit(1);
	}
	int32_t prompt[8];
	int32_t bos = bn_token_bos(m) >= 0 ? bn_token_bos(m) : 1;
	n_done = 0;
	n_gen = 0;
	double t0 = now();
	for (int i = 0; i < n; i++) {
		prompt[0] = bos;
		for (int k = 1; k < 8; k++)
			prompt[k] = (i * 31 + k * 7) % 200 + 10;
		RtServeRequest rq;
		memset(&rq, 0, sizeof rq);
		rq.prompt = prompt;
		rq.n_prompt = 8;
		rq.sampling = bn_sampler_defaults();
		rq.sampling.temp = 0;
		rq.max_tokens = tokens;
		rq.on_done = on_done;
		if (rt_serve_submit(s, &rq, NULL) != RT_SERVE_OK) {
			fprintf(stderr, "rt_serve_submit refused a request\n");
			exit(1);
		}
	}
	pthread_mutex_lock(&mu);
	while (n_done < n)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	double dt = now() - t0;
	*gen = n_gen;
	rt_serve_free(s);
	return (double)n_gen / dt;
}

/* Seconds of one bn_decode_batch of k single-token rows, one per sequence (median); *cpu:
 * the least CPU time of the process for one. */
static double step_cost(bn_model *m, int k, int threads, int reps, double *cpu)
{
	char err[512];
	int code = 0;
	bn_ctx *c = bn_ctx_new_seq(m, 64, k, threads, &code, err, sizeof err);
	if (!c) {
		fprintf(stderr, "bn_ctx_new_seq: %s\n", err);
		exit(1);
	}
	int32_t nv = bn_model_n_vocab(m), tok[64], pos[64], seq[64];
	int8_t want[64], step[64];
	float *l = malloc(sizeof(float) * (size_t)nv * (size_t)k);
	double t[64], ct[64];
	for (int r = 0; r < reps + 1; r++) {
		for (int i = 0; i < k; i++) {
			tok[i] = (i * 13 + r) % 200 + 10;
			pos[i] = r;
			seq[i] = i;
			want[i] = 1;
			step[i] = 1; /* generated tokens, as the engine decodes them */
		}
		bn_batch b = {k, tok, pos, seq, want, step};
		double t0 = now(), c0 = cpu_now();
		if (bn_decode_batch(c, &b, l)) {
			fprintf(stderr, "bn_decode_batch: %s\n", bn_ctx_last_error(c));
			exit(1);
		}
		if (r) {
			t[r - 1] = now() - t0;
			ct[r - 1] = cpu_now() - c0;
		}
	}
	qsort(t, (size_t)reps, sizeof *t, cmp_d);
	qsort(ct, (size_t)reps, sizeof *ct, cmp_d);
	*cpu = ct[0];
	if (getenv("PROFILE")) { /* where one more step's time goes, by kernel family */
		bn_profile_row rows[BN_PROFILE_FAMILIES];
		double fwd = 0;
		bn_ctx_profile(c, 1);
		for (int i = 0; i < k; i++)
			pos[i] = reps + 1;
		bn_batch b = {k, tok, pos, seq, want, step};
		bn_decode_batch(c, &b, l);
		bn_ctx_profile_read(c, rows, &fwd, NULL);
		printf("  %d rows:", k);
		for (int f = 0; f < BN_PROFILE_FAMILIES; f++)
			if (rows[f].seconds > fwd * 0.02)
				printf(" %s %.1f ms", rows[f].family, rows[f].seconds * 1e3);
		printf("\n");
	}
	free(l);
	bn_ctx_free(c);
	return t[reps / 2];
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: serve_engine WEIGHTS [TOKENS [REPS [THREADS]]]\n");
		return 2;
	}
	int tokens = argc > 2 ? atoi(argv[2]) : 64, reps = argc > 3 ? atoi(argv[3]) : 3;
	int threads = argc > 4 ? atoi(argv[4]) : 0;
	if (reps < 1 || reps > 50)
		reps = 3;
	char err[512];
	bn_model *m = bn_model_open(argv[1], err, sizeof err);
	if (!m) {
		fprintf(stderr, "bn_model_open: %s\n", err);
		return 1;
	}
	int32_t sizes[64];
	int nb = bn_model_batch_sizes(m, sizes, 64);
	printf("model %s, batch templates", bn_model_meta(m, "name"));
	for (int i = 0; i < nb && i < 64; i++)
		printf(" %d", sizes[i]);
	printf(", %d threads, %d tokens a request, median of %d\n\n",
	       threads ? threads : bn_default_threads(), tokens, reps);
	printf("| streams | generated tok/s | x 1 stream |\n|---|---|---|\n");
	static const int ns[] = {1, 2, 4, 8, 16};
	double base = 0;
	for (int j = 0; j < 5 && tokens > 0; j++) { /* TOKENS 0: the step costs alone */
		double v[50];
		long long gen = 0;
		for (int r = 0; r < reps; r++)
			v[r] = run(m, ns[j], tokens, threads, &gen);
		qsort(v, (size_t)reps, sizeof *v, cmp_d);
		double med = v[reps / 2];
		if (j == 0)
			base = med;
		printf("| %d | %.1f | %.2f |\n", ns[j], med, med / base);
		fflush(stdout);
	}
	printf("\n| rows in one step | ms a step | x one row | CPU ms | x one row |\n"
	       "|---|---|---|---|---|\n");
	static const int ks[] = {1, 2, 4, 8, 9, 16, 32};
	double one = 0, cone = 0;
	for (int j = 0; j < 7; j++) {
		double ct = 0, t = step_cost(m, ks[j], threads, reps * 3, &ct);
		if (j == 0) {
			one = t;
			cone = ct;
		}
		printf("| %d | %.2f | %.2f | %.2f | %.2f |\n", ks[j], t * 1e3, t / one, ct * 1e3,
		       ct / cone);
		fflush(stdout);
	}
	bn_model_close(m);
	return 0;
}
