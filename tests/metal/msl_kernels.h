/* msl_kernels.h - the Metal flavour of the CUDA kernel tests (tests/codegen/test_cuda_*.c):
 * a module built in the SIMT builder's MSL flavour is translated by the Metal backend
 * (cg_msl_module) and compiled as C++17 with tests/metal/msl_host.h into a shared object,
 * whose NAME__host trampolines run under the SIMT emulator as the host flavour's NAME do,
 * so the same cases check each MSL kernel against the interpreter. Needs BN_MSL_CXX (a
 * clang++) and BN_SRC_DIR from the build; msl_available() says whether it is there. */
#ifndef BITNETC_TEST_MSL_KERNELS_H
#define BITNETC_TEST_MSL_KERNELS_H

#include "testutil.h"

#include "cg_metal.h"
#include "simt.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BN_MSL_CXX
#define BN_MSL_CXX ""
#endif
#ifndef BN_SRC_DIR
#define BN_SRC_DIR "."
#endif

static inline bool msl_available(void)
{
	return BN_MSL_CXX[0] != 0;
}

/* S's kernels as MSL in so_path less ".so" plus ".metal", compiled into so_path and
 * loaded; fails the test on any error. S is freed. */
static inline void *msl_so(Simt *S, const char *so_path)
{
	CgBuf msl = {0}, sigs = {0};
	BnErr e = {0};
	if (cg_msl_module(S->mod, &msl, &sigs, &e))
		fail_msg("MSL: %s", e.msg);
	simt_free(S);
	char src[1024];
	snprintf(src, sizeof src, "%.*s.metal", (int)strlen(so_path) - 3, so_path);
	assert_int_equal(tu_write_file(src, msl.data, msl.len), 0);
	cg_buf_free(&msl);
	cg_buf_free(&sigs);
	char *log = NULL;
	if (tu_run(&log, "'%s' -std=c++17 -O1 -ffp-contract=off -fPIC -shared -DBN_MSL_HOST "
			 "-I'%s/tests/metal' -I'%s/codegen/simt' -x c++ '%s' -o '%s'",
		   BN_MSL_CXX, BN_SRC_DIR, BN_SRC_DIR, src, so_path) != 0)
		tu_fail_log(log, "%s does not compile", src);
	free(log);
	void *so = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
	if (!so)
		fail_msg("dlopen %s: %s", so_path, dlerror());
	return so;
}

/* The kernel called name in so: the MSL trampoline NAME__host (msl) or NAME. */
static inline void *msl_sym(void *so, const char *name, bool msl)
{
	char sym[300];
	snprintf(sym, sizeof sym, "%s%s", name, msl ? "__host" : "");
	return dlsym(so, sym);
}

#endif
