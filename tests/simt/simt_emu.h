/* simt_emu.h - a SIMT emulator for kernels compiled for the host (codegen/simt/simt_abi.h):
 * every thread of a block is a fiber with its own stack on the calling OS thread; barriers and
 * warp shuffles switch between them. Blocks run one after another. Target-neutral: the CUDA
 * fake driver and the Metal tests both run their kernels through it. */
#ifndef BITNETC_SIMT_EMU_H
#define BITNETC_SIMT_EMU_H

#include <stddef.h>
#include <stdint.h>

#include "simt_abi.h"

/* The most threads one block may have. */
#define SIMT_EMU_MAX_THREADS 1024u
/* The byte every block's shared memory is filled with before it starts, so that a kernel that
 * reads shared memory before writing it computes garbage. */
#define SIMT_EMU_SMEM_FILL 0xA5

/* Runs fn over grid[0] x grid[1] x grid[2] blocks of block[0] x block[1] x block[2] threads,
 * each block with smem_bytes of shared memory (16-aligned, garbage-filled), params passed to
 * every thread as they are. Semantics:
 * - barrier: every thread of the block that has not returned arrives, then all go on;
 * - shuffle: all lanes of the warp (the 32 threads with the same linear index / 32; fewer in
 *   a last, partial warp) deposit their value, then each reads its source lane. The lane
 *   operand is taken modulo 32 as PTX's shfl.sync does (b[4:0]); UP and DOWN give the
 *   caller's own value when the source lane falls outside the warp, IDX and BFLY when it
 *   falls beyond a partial warp.
 * A block that cannot go on (part of a warp at a shuffle while the rest of it waits at the
 * barrier or has returned) is a deadlock: the launch stops and reports it.
 * Returns 0, or -1 with one line in err (bad dimensions, no memory, a deadlock naming the
 * block and warp). Reentrant per OS thread (the fibers and stacks are the calling thread's);
 * must not be called from inside a kernel. */
int simt_emu_launch(SimtKernelFn fn, const unsigned grid[3], const unsigned block[3],
                    unsigned smem_bytes, void **params, char *err, size_t err_n);

/* Counters of the calling OS thread since it first launched. */
typedef struct {
	uint64_t launches, blocks, threads;
	uint64_t switches; /* fiber context switches (one per suspension of a thread) */
} SimtEmuStats;
void simt_emu_stats(SimtEmuStats *out);

/* The way fibers switch in this build: "x86-64 asm", "aarch64 asm" or "ucontext". */
const char *simt_emu_switch_kind(void);

/* Frees the calling OS thread's fiber stacks and buffers (they are kept between launches);
 * the next launch makes them again. */
void simt_emu_release(void);

#endif
