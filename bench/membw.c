/* membw.c - the read bandwidth of this machine: a timed sum over a 1 GiB anonymous
 * (huge-page) buffer on N threads (default 2), the best of 9 passes, in GB/s. The ceiling
 * that decode approaches: bandwidth / bytes read per token. Built and run by
 * bench/weights.sh; standalone: cc -O3 -march=native -pthread bench/membw.c. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define BYTES ((size_t)1 << 30)
#define PASSES 9

typedef struct {
	const uint64_t *p;
	size_t n;
	uint64_t sum;
} Part;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *sum_part(void *arg)
{
	Part *pt = arg;
	uint64_t a = 0, b = 0, c = 0, d = 0;
	for (size_t i = 0; i + 4 <= pt->n; i += 4) {
		a += pt->p[i];
		b += pt->p[i + 1];
		c += pt->p[i + 2];
		d += pt->p[i + 3];
	}
	pt->sum = a + b + c + d;
	return NULL;
}

static int cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
	int nth = argc > 1 ? atoi(argv[1]) : 2;
	if (nth < 1 || nth > 256)
		nth = 2;
	uint64_t *buf = mmap(NULL, BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		perror("membw: mmap");
		return 2;
	}
	madvise(buf, BYTES, MADV_HUGEPAGE);
	memset(buf, 1, BYTES);
	Part parts[256];
	pthread_t th[256];
	double gbs[PASSES];
	uint64_t total = 0;
	size_t words = BYTES / 8, per = words / (size_t)nth;
	for (int r = 0; r < PASSES; r++) {
		double t = now();
		for (int i = 0; i < nth; i++) {
			parts[i] = (Part){buf + (size_t)i * per, per, 0};
			pthread_create(&th[i], NULL, sum_part, &parts[i]);
		}
		for (int i = 0; i < nth; i++) {
			pthread_join(th[i], NULL);
			total += parts[i].sum;
		}
		gbs[r] = (double)(per * (size_t)nth * 8) / (now() - t) / 1e9;
	}
	qsort(gbs, PASSES, sizeof *gbs, cmp);
	printf("%.2f\n", gbs[PASSES - 1]); /* a ceiling: the best pass */
	return total == 0; /* keeps the sums */
}
