/* cg_cuda_backend.c - the CUDA backend behind cg.h's interface. Its targets (cuda-smNN)
 * are listed with whether this host's LLVM can emit PTX for them; none builds yet (the
 * PTX emitter and the device runtime come later), and `bitnetc build` says so. */
#include "cg_cuda.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int cuda_targets(CgTargetInfo *out, int max)
{
	CgCudaInfo ci;
	cg_cuda_probe(&ci);
	return cg_cuda_targets(&ci, out, max);
}

/* cuda-sm followed by a compute capability of two or three digits (cuda-sm80, cuda-sm100). */
static bool cuda_claims(const char *name)
{
	if (!name || strncmp(name, "cuda-sm", 7) != 0)
		return false;
	size_t n = strlen(name + 7);
	if (n < 2 || n > 3)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)name[7 + i]))
			return false;
	return true;
}

static bool cuda_buildable(const char *name)
{
	(void)name;
	return false;
}

static void cuda_describe(const char *name, CgTargetDesc *d)
{
	memset(d, 0, sizeof *d);
	d->arch = "nvptx64";
	if (cuda_claims(name))
		snprintf(d->features, sizeof d->features, "sm_%s", name + 7);
	d->weight_layout = "gguf";
}

/* `bitnetc version`: the LLVM linked in, whether it has NVPTX, and ptxas. */
static void cuda_tools_info(char *buf, size_t n)
{
	CgCudaInfo ci;
	cg_cuda_probe(&ci);
	snprintf(buf, n, "LLVM %u.%u.%u, NVPTX backend: %s\nptxas: %s\n", ci.llvm_major,
		 ci.llvm_minor, ci.llvm_patch, ci.nvptx ? "yes" : ci.nvptx_note,
		 ci.ptxas[0] ? ci.ptxas : "not found");
}

const CgBackend cg_backend_cuda = {
	.name = "cuda",
	.desc = "NVIDIA GPUs: PTX from LLVM's NVPTX backend (not yet buildable)",
	.targets = cuda_targets,
	.claims = cuda_claims,
	.buildable = cuda_buildable,
	.describe = cuda_describe,
	.product = CG_PRODUCT_EXECUTABLE,
	.tools_info = cuda_tools_info,
};
