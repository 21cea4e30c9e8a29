/* cg_cuda.h - the CUDA backend: what this host's LLVM and CUDA toolkit offer for emitting
 * and validating PTX (the NVPTX kernel emitter arrives with the code generator). */
#ifndef BITNETC_CG_CUDA_H
#define BITNETC_CG_CUDA_H

#include "../cg.h"

#define CG_CUDA_TRIPLE "nvptx64-nvidia-cuda"

typedef struct {
	unsigned llvm_major, llvm_minor, llvm_patch; /* the LLVM library linked at run time */
	bool nvptx;            /* LLVM has the NVPTX backend (PTX can be emitted here) */
	char nvptx_note[256];  /* why not, when !nvptx */
	char ptxas[1024];      /* path of ptxas (validates PTX in tests), "" if not found */
} CgCudaInfo;

/* ---- cg_cuda_backend.c ---- */

/* The CUDA backend as the registry holds it: its targets list, none builds yet. */
extern const CgBackend cg_backend_cuda;

/* ---- cg_cuda_probe.c ---- */

/* Initializes LLVM's NVPTX target, looks it up by triple and searches for ptxas
 * ($CUDA_PATH/bin, /usr/local/cuda/bin, then $PATH). Cannot fail: absence is reported. */
void cg_cuda_probe(CgCudaInfo *ci);
/* The CUDA targets and whether this host can emit them (usable: LLVM has NVPTX); none is
 * buildable yet. Returns how many were written. */
int cg_cuda_targets(const CgCudaInfo *ci, CgTargetInfo *out, int max);

#endif
