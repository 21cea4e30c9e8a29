/* fake_cuda_kernels.c - hand-written kernels following simt_abi.h, built as the shared object
 * that test_fake_cuda points $BN_FAKE_CUDA_KERNELS at (what bitnetc's host object is for a
 * model). Each exports NAME__psize, the sizes of its parameters, except k_nometa. */
#include <stdint.h>

#include "simt_abi.h"

void k_axpy(SimtThread *th, void **params);
void k_block_sum(SimtThread *th, void **params);
void k_smem_ends(SimtThread *th, void **params);
void k_deadlock(SimtThread *th, void **params);
void k_nometa(SimtThread *th, void **params);
extern const uint8_t k_axpy__psize[], k_block_sum__psize[], k_smem_ends__psize[],
	k_deadlock__psize[];

static uint32_t global_index(const SimtThread *th)
{
	return th->ctaid[0] * th->ntid[0] + th->tid[0];
}

/* y[i] = a * x[i] + y[i] for i < n: (uint32_t *y, const uint32_t *x, uint32_t a, uint32_t n) */
void k_axpy(SimtThread *th, void **params)
{
	uint32_t *y = *(uint32_t **)params[0];
	const uint32_t *x = *(const uint32_t **)params[1];
	uint32_t a = *(const uint32_t *)params[2], n = *(const uint32_t *)params[3];
	uint32_t i = global_index(th);
	if (i < n)
		y[i] = a * x[i] + y[i];
}
const uint8_t k_axpy__psize[] = {8, 8, 4, 4, 0};

/* out[block] = the sum of the block's part of x (zeros past n): a warp sum by shuffles, then
 * across warps through shared memory (ntid / 32 words): (const uint32_t *x, uint32_t *out,
 * uint32_t n) */
void k_block_sum(SimtThread *th, void **params)
{
	const uint32_t *x = *(const uint32_t **)params[0];
	uint32_t *out = *(uint32_t **)params[1];
	uint32_t n = *(const uint32_t *)params[2];
	uint32_t *sm = th->smem;
	uint32_t i = global_index(th), lane = th->tid[0] % 32, warp = th->tid[0] / 32;
	uint32_t v = i < n ? x[i] : 0;
	for (uint32_t o = 16; o; o /= 2)
		v += th->shfl(th, v, o, SIMT_SHFL_DOWN);
	if (lane == 0)
		sm[warp] = v;
	th->barrier(th);
	if (th->tid[0] == 0) {
		uint32_t s = 0;
		for (uint32_t w = 0; w < th->ntid[0] / 32; w++)
			s += sm[w];
		out[th->ctaid[0]] = s;
	}
}
const uint8_t k_block_sum__psize[] = {8, 8, 4, 0};

/* Writes the first and last byte of shared memory and reads them back: (uint8_t *out,
 * uint32_t bytes) */
void k_smem_ends(SimtThread *th, void **params)
{
	uint8_t *out = *(uint8_t **)params[0];
	uint32_t bytes = *(const uint32_t *)params[1];
	uint8_t *sm = th->smem;
	if (th->tid[0] == 0) {
		sm[0] = 1;
		sm[bytes - 1] = 2;
	}
	th->barrier(th);
	if (th->tid[0] == 1) {
		out[0] = sm[0];
		out[1] = sm[bytes - 1];
	}
}
const uint8_t k_smem_ends__psize[] = {8, 4, 0};

/* Half of the warp shuffles while the other half waits at the barrier: (no parameters) */
void k_deadlock(SimtThread *th, void **params)
{
	(void)params;
	if (th->tid[0] < 16)
		(void)th->shfl(th, 1, 0, SIMT_SHFL_IDX);
	th->barrier(th);
}
const uint8_t k_deadlock__psize[] = {0};

/* Like k_axpy with a = 1, but without NAME__psize: it cannot be captured. */
void k_nometa(SimtThread *th, void **params)
{
	uint32_t *y = *(uint32_t **)params[0];
	y[global_index(th)] += 1;
}
