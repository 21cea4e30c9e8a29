/* simt_emu_check.c - a self-checking program for the SIMT emulator on another architecture
 * (test_simt_emu cross-compiles it for aarch64 and runs it under qemu-user): barriers through
 * shared memory, every shuffle mode, early returns, floating-point values kept in registers
 * across switches, and a deadlock report. Prints "simt_emu_check: ok (SWITCH)" and exits 0, or
 * names the first wrong value and exits 1. */
#include <stdio.h>
#include <string.h>

#include "simt_emu.h"

enum { NT = 128, NB = 3 };
static uint32_t out[NB * NT];
static double fout[NB * NT];

static uint32_t value_of(uint32_t i)
{
	return i * 2654435761u + 17;
}

static uint32_t src_lane(uint32_t lane, uint32_t arg, uint32_t mode)
{
	int64_t s = mode == SIMT_SHFL_IDX ? (int64_t)arg
		     : mode == SIMT_SHFL_UP ? (int64_t)lane - arg
		     : mode == SIMT_SHFL_DOWN ? (int64_t)lane + arg : (int64_t)(lane ^ arg);
	return s < 0 || s > 31 ? lane : (uint32_t)s;
}

/* Every round: a shuffle of each mode with a lane operand that changes per round, then an
 * exchange with the next thread through shared memory; a double stays live throughout.
 * Threads of the last warp return after round 3. */
static void k_check(SimtThread *th, void **params)
{
	(void)params;
	uint32_t i = th->tid[0], lane = i % 32, b = th->ctaid[0], *sm = th->smem;
	uint32_t acc = 0;
	double f = 0.25 * (i + 1);
	for (uint32_t r = 0; r < 8; r++) {
		uint32_t mode = r % 4, arg = (r * 5 + 1) % 32;
		uint32_t got = th->shfl(th, value_of(i + r), arg, mode);
		if (got != value_of(i - lane + src_lane(lane, arg, mode) + r))
			acc |= 1u << 31;
		f = f * 1.5 + got % 3;
		sm[i] = got + b;
		th->barrier(th);
		acc += sm[(i + 1) % NT];
		th->barrier(th);
		if (i >= NT - 32 && r == 3)
			break;
	}
	out[b * NT + i] = acc;
	fout[b * NT + i] = f;
}

static void k_split(SimtThread *th, void **params)
{
	(void)params;
	if (th->tid[0] < 40)
		(void)th->shfl(th, 1, 0, SIMT_SHFL_IDX);
	th->barrier(th);
}

int main(void)
{
	const unsigned grid[3] = {NB, 1, 1}, block[3] = {NT, 1, 1};
	char err[256];
	if (simt_emu_launch(k_check, grid, block, NT * 4, NULL, err, sizeof err) != 0) {
		printf("simt_emu_check: %s\n", err);
		return 1;
	}
	for (uint32_t b = 0; b < NB; b++)
		for (uint32_t i = 0; i < NT; i++) {
			uint32_t acc = 0, rounds = i >= NT - 32 ? 4 : 8;
			double f = 0.25 * (i + 1);
			for (uint32_t r = 0; r < 8; r++) {
				uint32_t mode = r % 4, arg = (r * 5 + 1) % 32, lane = i % 32;
				uint32_t got = value_of(i - lane + src_lane(lane, arg, mode) + r);
				/* the last warp's slots keep what they had in round 3 */
				uint32_t j = (i + 1) % NT, lj = j % 32, rj = j >= NT - 32 && r > 3 ? 3 : r;
				uint32_t aj = (rj * 5 + 1) % 32;
				f = f * 1.5 + got % 3;
				acc += value_of(j - lj + src_lane(lj, aj, rj % 4) + rj) + b;
				if (r + 1 == rounds)
					break;
			}
			if (out[b * NT + i] != acc || fout[b * NT + i] != f) {
				printf("simt_emu_check: block %u thread %u: %u %.17g, want %u %.17g\n", b,
				       i, out[b * NT + i], fout[b * NT + i], acc, f);
				return 1;
			}
		}
	if (simt_emu_launch(k_split, grid, block, 0, NULL, err, sizeof err) == 0 ||
	    !strstr(err, "warp 1 has 8 of its 32 lanes at a shuffle, 24 at the barrier")) {
		printf("simt_emu_check: want a deadlock in warp 1, got \"%s\"\n", err);
		return 1;
	}
	printf("simt_emu_check: ok (%s)\n", simt_emu_switch_kind());
	return 0;
}
