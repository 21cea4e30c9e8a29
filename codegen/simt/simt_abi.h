/* simt_abi.h - how a kernel built for the host (SIMT_HOST, simt.h) meets the emulator that
 * runs it: the kernel's C signature and the per-thread record it reads its indices from and
 * calls back through for barriers and warp shuffles. Plain C, no LLVM: the code generator
 * (codegen/simt) and the emulator (tests/simt) both include it, and the generator takes its
 * field offsets from here. */
#ifndef BITNETC_SIMT_ABI_H
#define BITNETC_SIMT_ABI_H

#include <stdint.h>

typedef struct SimtThread SimtThread;

/* Warp shuffles as PTX shfl.sync with a full mask and width 32: IDX reads lane arg; UP lane
 * - arg; DOWN lane + arg; BFLY lane ^ arg; a source lane outside 0..31 (UP, DOWN) gives the
 * caller's own value. Every lane of the warp takes part. */
enum { SIMT_SHFL_IDX = 0, SIMT_SHFL_UP = 1, SIMT_SHFL_DOWN = 2, SIMT_SHFL_BFLY = 3 };

struct SimtThread {
	uint32_t tid[3];    /* threadIdx.{x,y,z} */
	uint32_t ntid[3];   /* blockDim */
	uint32_t ctaid[3];  /* blockIdx */
	uint32_t nctaid[3]; /* gridDim */
	void *smem;         /* the block's shared memory: the launch's dynamic bytes, 16-aligned */
	/* __syncthreads(): every live thread of the block reaches it before any goes on */
	void (*barrier)(SimtThread *th);
	/* a warp shuffle of 32 bits (SIMT_SHFL_*); the warp is the 32 threads of linear index
	 * tid.x + ntid.x * (tid.y + ntid.y * tid.z) that share index / 32 */
	uint32_t (*shfl)(SimtThread *th, uint32_t v, uint32_t arg, uint32_t mode);
	void *emu; /* the emulator's own */
};

/* A kernel compiled for the host: params[i] points at the value of parameter i, as in
 * cuLaunchKernel's kernelParams (pointers are 64-bit device addresses, integers int32 or
 * int64, floats float). */
typedef void (*SimtKernelFn)(SimtThread *th, void **params);

/* Beside each kernel NAME the host object exports `const uint8_t NAME__psize[]`: the size in
 * bytes of each parameter, then 0. A driver that keeps a launch's parameters for later (stream
 * capture into a graph) copies that many bytes of each, as CUDA does from a module's
 * metadata; the fake driver refuses to capture a kernel without it. */
#define SIMT_PSIZE_SUFFIX "__psize"

#endif
