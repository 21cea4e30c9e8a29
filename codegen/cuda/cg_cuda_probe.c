/* cg_cuda_probe.c - finding LLVM's NVPTX backend and the CUDA toolkit's ptxas. */
#include "cg_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dlfcn.h>

#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

static bool try_ptxas(CgCudaInfo *ci, const char *dir, size_t dir_len)
{
	if (dir_len == 0 || dir_len > sizeof ci->ptxas - 8)
		return false;
	char path[sizeof ci->ptxas];
	snprintf(path, sizeof path, "%.*s/ptxas", (int)dir_len, dir);
	if (access(path, X_OK) != 0)
		return false;
	snprintf(ci->ptxas, sizeof ci->ptxas, "%s", path);
	return true;
}

static void find_ptxas(CgCudaInfo *ci)
{
	char buf[1024];
	const char *cuda = getenv("CUDA_PATH");
	if (cuda && *cuda) {
		snprintf(buf, sizeof buf, "%s/bin", cuda);
		if (try_ptxas(ci, buf, strlen(buf)))
			return;
	}
	/* The toolkit's default install location is often not on PATH. */
	if (try_ptxas(ci, "/usr/local/cuda/bin", strlen("/usr/local/cuda/bin")))
		return;
	const char *path = getenv("PATH");
	for (const char *p = path; p && *p;) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (try_ptxas(ci, p, len))
			return;
		p = end ? end + 1 : p + len;
	}
}

void cg_cuda_probe(CgCudaInfo *ci)
{
	memset(ci, 0, sizeof *ci);
	LLVMGetVersion(&ci->llvm_major, &ci->llvm_minor, &ci->llvm_patch);

	/* Only the NVPTX pieces: initializing every target would cost start-up time for
	 * nothing. These return void and are idempotent. */
	LLVMInitializeNVPTXTargetInfo();
	LLVMInitializeNVPTXTarget();
	LLVMInitializeNVPTXTargetMC();
	LLVMTargetRef t = NULL;
	char *msg = NULL;
	if (LLVMGetTargetFromTriple(CG_CUDA_TRIPLE, &t, &msg) == 0 && t) {
		ci->nvptx = LLVMTargetHasTargetMachine(t);
		if (!ci->nvptx)
			snprintf(ci->nvptx_note, sizeof ci->nvptx_note,
				 "LLVM's NVPTX target has no code generator");
	} else {
		snprintf(ci->nvptx_note, sizeof ci->nvptx_note, "LLVM has no NVPTX backend: %s",
			 msg ? msg : "unknown target");
	}
	if (msg)
		LLVMDisposeMessage(msg);
	find_ptxas(ci);
}

/* The first GPU's compute capability through the driver, if this host has one: a few
 * driver calls, no context. */
int cg_cuda_host_cc(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return 0;
	typedef int (*init_fn)(unsigned);
	typedef int (*get_fn)(int *, int);
	typedef int (*attr_fn)(int *, int, int);
	init_fn cu_init = (init_fn)dlsym(h, "cuInit");
	get_fn cu_get = (get_fn)dlsym(h, "cuDeviceGet");
	attr_fn cu_attr = (attr_fn)dlsym(h, "cuDeviceGetAttribute");
	int dev = 0, major = 0, minor = 0, cc = 0;
	/* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75, _MINOR 76 */
	if (cu_init && cu_get && cu_attr && cu_init(0) == 0 && cu_get(&dev, 0) == 0 &&
	    cu_attr(&major, 75, dev) == 0 && cu_attr(&minor, 76, dev) == 0)
		cc = major * 10 + minor;
	dlclose(h);
	return cc;
}

int cg_cuda_targets(const CgCudaInfo *ci, CgTargetInfo *out, int max)
{
	int n = 0;
	for (int k = 0; k < 2 && n < max; k++) {
		CgTargetInfo *t = &out[n++];
		memset(t, 0, sizeof *t);
		t->backend = "cuda";
		t->usable = ci->nvptx;
		t->buildable = ci->nvptx;
		if (k == 0) {
			t->name = "cuda-sm<NN>";
			t->desc = "NVIDIA GPUs of compute capability NN (cuda-sm80, -sm86, -sm89, "
				  "-sm90): PTX from LLVM NVPTX";
		} else {
			t->name = "cuda";
			t->desc = "the GPU found at build time (else sm80)";
		}
		if (ci->nvptx)
			snprintf(t->note, sizeof t->note, "LLVM %u.%u.%u NVPTX; ptxas %s; runs "
				 "where libcuda.so.1 and a GPU are", ci->llvm_major, ci->llvm_minor,
				 ci->llvm_patch, ci->ptxas[0] ? "found" : "not found");
		else
			snprintf(t->note, sizeof t->note, "%.150s", ci->nvptx_note);
	}
	return n;
}
