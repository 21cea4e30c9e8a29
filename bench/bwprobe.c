/* bwprobe.c - this machine's read bandwidth, the ceiling of memory-bound decode: a 1 GiB
 * anonymous buffer (huge pages asked for), touched once, then summed by T threads, each its
 * own slice; the best of R timed passes, in GB/s (1e9 bytes). bench/run.sh compiles it.
 *   bwprobe [THREADS [MIB [REPS]]]   -> "read_gbs 31.2 threads 2 mib 1024"
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef struct {
	const uint64_t *p;
	size_t n;
	uint64_t sum;
} Slice;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *sum(void *arg)
{
	Slice *s = arg;
	/* eight independent chains: the loads, not the adds, set the pace */
	uint64_t a[8] = {0};
	for (size_t i = 0; i + 8 <= s->n; i += 8)
		for (int k = 0; k < 8; k++)
			a[k] += s->p[i + k];
	s->sum = a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 2;
	size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
	int reps = argc > 3 ? atoi(argv[3]) : 5;
	if (threads < 1 || threads > 256 || mib < 16 || reps < 1) {
		fprintf(stderr, "usage: bwprobe [THREADS [MIB [REPS]]]\n");
		return 2;
	}
	size_t bytes = mib << 20, words = bytes / 8;
	uint64_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		perror("bwprobe: mmap");
		return 1;
	}
#ifdef MADV_HUGEPAGE
	madvise(buf, bytes, MADV_HUGEPAGE);
#endif
	for (size_t i = 0; i < words; i++)
		buf[i] = i * 0x9e3779b97f4a7c15ull;
	double best = 0;
	uint64_t check = 0;
	for (int r = 0; r < reps; r++) {
		pthread_t th[256];
		Slice s[256];
		size_t per = words / (size_t)threads / 8 * 8;
		double t0 = now();
		for (int t = 0; t < threads; t++) {
			s[t] = (Slice){buf + (size_t)t * per, per, 0};
			pthread_create(&th[t], NULL, sum, &s[t]);
		}
		for (int t = 0; t < threads; t++) {
			pthread_join(th[t], NULL);
			check ^= s[t].sum;
		}
		double gbs = (double)(per * (size_t)threads * 8) / (now() - t0) / 1e9;
		if (gbs > best)
			best = gbs;
	}
	printf("read_gbs %.1f threads %d mib %zu check %llx\n", best, threads, mib,
	       (unsigned long long)(check & 0xf));
	munmap(buf, bytes);
	return 0;
}
