/* rt_cuda_kernels.c - two kernels written by hand in the host kernel ABI (simt_abi.h), built as
 * the shared object the fake CUDA driver loads as a module ($BN_FAKE_CUDA_KERNELS), for
 * test_rt_cuda.c's launches. Each exports NAME__psize, the sizes of its parameters
 * (0-terminated), which the fake needs to copy them when a launch is captured. */
#include "simt_abi.h"

#include <stdint.h>

void rt_cuda_test_fill(SimtThread *th, void **params);
void rt_cuda_test_bad(SimtThread *th, void **params);
extern const uint8_t rt_cuda_test_fill__psize[], rt_cuda_test_bad__psize[];

/* (int32 *out, int32 base, int32 n): out[i] = base + i for the grid's i < n */
void rt_cuda_test_fill(SimtThread *th, void **params)
{
	int32_t *out = (int32_t *)(uintptr_t)*(uint64_t *)params[0];
	int32_t base = *(int32_t *)params[1], n = *(int32_t *)params[2];
	int64_t i = (int64_t)th->ctaid[0] * th->ntid[0] + th->tid[0];
	if (i < n)
		out[i] = base + (int32_t)i;
}
const uint8_t rt_cuda_test_fill__psize[] = {8, 4, 4, 0};

/* No parameters: half of each warp returns while the other half waits at a shuffle, which
 * the emulator reports as a deadlock (the launch fails, as a faulting kernel's would). */
void rt_cuda_test_bad(SimtThread *th, void **params)
{
	(void)params;
	if (th->tid[0] % 32 < 16)
		th->shfl(th, th->tid[0], 1, SIMT_SHFL_BFLY);
}
const uint8_t rt_cuda_test_bad__psize[] = {0};
