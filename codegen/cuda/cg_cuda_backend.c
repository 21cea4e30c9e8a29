/* cg_cuda_backend.c - the CUDA backend behind cg.h's interface: its targets (cuda-smNN and
 * cuda), the kernels through LLVM's NVPTX backend (cg_cuda_emit.c), and the build: model.c
 * (the host side) and the runtime compiled with the C compiler into one program that loads
 * the CUDA driver at run time. Neither bitnetc nor the program links against CUDA. */
#include "cg_cuda.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The compute capabilities the PTX is made for (LLVM 19 has them all; sm_90 code runs on
 * sm_90 only, sm_80 code on every later GPU through the driver's JIT). */
static const int known_cc[] = {80, 86, 89, 90};

static bool cc_known(int cc)
{
	for (size_t i = 0; i < sizeof known_cc / sizeof known_cc[0]; i++)
		if (known_cc[i] == cc)
			return true;
	return false;
}

/* cuda-sm followed by a compute capability of two or three digits (cuda-sm80, cuda-sm100),
 * or plain cuda. */
static bool cuda_claims(const char *name)
{
	if (name && strcmp(name, "cuda") == 0)
		return true;
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

int cg_cuda_target_cc(const char *name)
{
	if (!cuda_claims(name))
		return 0;
	if (strcmp(name, "cuda") == 0) {
		int cc = cg_cuda_host_cc();
		return cc_known(cc) ? cc : cc > 90 ? 90 : 80;
	}
	int cc = atoi(name + 7);
	return cc_known(cc) ? cc : 0;
}

static bool cuda_buildable(const char *name)
{
	CgCudaInfo ci;
	cg_cuda_probe(&ci);
	return ci.nvptx && cg_cuda_target_cc(name) > 0;
}

static int cuda_targets(CgTargetInfo *out, int max)
{
	CgCudaInfo ci;
	cg_cuda_probe(&ci);
	return cg_cuda_targets(&ci, out, max);
}

static void cuda_describe(const char *name, CgTargetDesc *d)
{
	memset(d, 0, sizeof *d);
	d->arch = "nvptx64";
	int cc = cg_cuda_target_cc(name);
	if (cc)
		snprintf(d->features, sizeof d->features, "sm_%d dp4a", cc);
	/* the kernels read I2_S as stored: a 32-bit load of 4 bytes holds 4 consecutive codes
	 * of each of the block's 4 groups, what dp4a takes */
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

static const CgSource *cuda_runtime(int *n)
{
	*n = cg_n_runtime_sources;
	return cg_runtime_sources;
}

static int cuda_emit_files(const char **names, int max)
{
	static const char *const own[] = {"model.c", "model_ptx.h", "model.ptx", "model.ll",
					  "model_host.o"};
	int n = 0;
	for (size_t i = 0; i < sizeof own / sizeof own[0] && n < max; i++)
		names[n++] = own[i];
	for (int i = 0; i < cg_n_runtime_sources && n < max; i++)
		names[n++] = cg_runtime_sources[i].name;
	return n;
}

/* Appends argv to cmd as one line (for -v and messages). */
static void put_cmd(char *cmd, size_t cmd_n, const char *const *argv)
{
	size_t len = strlen(cmd);
	for (int i = 0; argv[i] && len < cmd_n; i++) {
		int k = snprintf(cmd + len, cmd_n - len, "%s%s", len ? " " : "", argv[i]);
		if (k < 0)
			break;
		len += (size_t)k;
	}
}

/* The host code is plain C for this host: model.c and the runtime in one compiler run,
 * linked with libdl (rt_cuda.c loads the driver). */
static int cuda_build(const CgOpts *o, const char *dir, const char *out_path, const char *shown,
		      char *cmd, size_t cmd_n, BnErr *e)
{
	enum { MAX_ARGS = 128 };
	const char *argv[MAX_ARGS];
	char flags[1024];
	int n = 0;
	const char *cc = o->cc ? o->cc : "cc";
	argv[n++] = cc;
	argv[n++] = "-std=c11";
	argv[n++] = o->opt ? o->opt : "-O2";
	argv[n++] = "-ffp-contract=off";
	argv[n++] = "-D_GNU_SOURCE";
	snprintf(flags, sizeof flags, "%s", o->cflags ? o->cflags : "");
	for (char *p = flags; *p && n < MAX_ARGS - 48;) {
		while (*p == ' ' || *p == '\t')
			*p++ = 0;
		if (!*p)
			break;
		argv[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
	argv[n++] = "-o";
	argv[n++] = out_path;
	argv[n++] = "model.c";
	for (int i = 0; i < cg_n_runtime_sources && n < MAX_ARGS - 4; i++) {
		const char *s = cg_runtime_sources[i].name;
		size_t l = strlen(s);
		if (l > 2 && strcmp(s + l - 2, ".c") == 0)
			argv[n++] = s;
	}
	argv[n++] = "-lm";
	argv[n++] = "-lpthread";
	argv[n++] = "-ldl";
	argv[n] = NULL;
	cmd[0] = 0;
	put_cmd(cmd, cmd_n, argv);
	int rc = cg_run_cc(o, argv, dir, e);
	if (rc)
		return bn_err_prefix(e, "build");
	return cg_check_output(out_path, shown, cc, "native", false, e);
}

const CgBackend cg_backend_cuda = {
	.name = "cuda",
	.desc = "NVIDIA GPUs: PTX from LLVM's NVPTX backend, a host program that loads the driver",
	.targets = cuda_targets,
	.claims = cuda_claims,
	.buildable = cuda_buildable,
	.describe = cuda_describe,
	.emit = cg_cuda_emit,
	.runtime = cuda_runtime,
	.build = cuda_build,
	.emit_files = cuda_emit_files,
	.product = CG_PRODUCT_EXECUTABLE,
	.tools_info = cuda_tools_info,
};
