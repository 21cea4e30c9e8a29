/* bench_simt_emu.c - how fast the SIMT emulator switches: blocks of 128 and 256 threads that
 * do little but barriers and warp shuffles, timed; prints context switches per second.
 * Usage: bench_simt_emu [rounds] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "simt_emu.h"

static void k_sync_heavy(SimtThread *th, void **params)
{
	unsigned rounds = *(const unsigned *)params[0];
	unsigned *sink = *(unsigned **)params[1];
	unsigned *sm = th->smem, i = th->tid[0], v = i;
	for (unsigned r = 0; r < rounds; r++) {
		v += th->shfl(th, v, 1, SIMT_SHFL_BFLY);
		sm[i] = v;
		th->barrier(th);
		v += sm[(i + 1) % th->ntid[0]];
		th->barrier(th);
	}
	if (i == 0)
		sink[th->ctaid[0]] = v;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 200;
	unsigned sink[64];
	void *params[] = {&rounds, &(unsigned *){sink}};
	printf("switch: %s\n", simt_emu_switch_kind());
	for (unsigned nt = 128; nt <= 256; nt *= 2) {
		const unsigned grid[3] = {64, 1, 1}, block[3] = {nt, 1, 1};
		char err[256];
		SimtEmuStats a, b;
		simt_emu_stats(&a);
		double t0 = now();
		if (simt_emu_launch(k_sync_heavy, grid, block, nt * 4, params, err, sizeof err) != 0) {
			fprintf(stderr, "bench_simt_emu: %s\n", err);
			return 2;
		}
		double dt = now() - t0;
		simt_emu_stats(&b);
		double sw = (double)(b.switches - a.switches);
		printf("block %u: %.0f switches in %.3f s: %.1f M switches/s, %.0f blocks/s\n", nt, sw,
		       dt, sw / dt / 1e6, (double)(b.blocks - a.blocks) / dt);
	}
	return 0;
}
