/* fake_cuda.c - a stand-in for libcuda.so.1 in the tests (libbn_fake_cuda.so): the driver API
 * entry points of cuda_api.h with CUDA's signatures, result codes and error names, over host
 * memory and the SIMT emulator. Device memory is malloc'd (a CUdeviceptr is its address,
 * 256-aligned, filled with 0xA5 garbage); copies are memcpy; every stream runs its work at
 * once, in the calling thread. A module is the shared object named by $BN_FAKE_CUDA_KERNELS
 * whatever image (PTX or cubin) is passed; its functions are the kernels compiled for the host
 * (simt_abi.h), found with dlsym and run with simt_emu_launch.
 * Stream capture records launches, async copies and memsets instead of running them; a
 * launch's parameters are copied at capture time, each by the size the kernels library
 * exports in NAME__psize (SIMT_PSIZE_SUFFIX): a kernel without it cannot be captured.
 * As CUDA does: calls before cuInit give CUDA_ERROR_NOT_INITIALIZED, calls without a current
 * context CUDA_ERROR_INVALID_CONTEXT; a failed launch (the emulator's error goes to stderr)
 * makes the context's error sticky: every later call on it gives CUDA_ERROR_LAUNCH_FAILED
 * (the calls that free still free) until its primary context is released for the last time,
 * which frees everything it holds. A launch's dynamic shared memory must fit the function's
 * limit (48 KiB unless raised with cuFuncSetAttribute up to the device's opt-in maximum).
 * Under a capture (not RELAXED) the calls that would synchronize (cuMemAlloc_v2, cuMemFree_v2,
 * the synchronous copies, cuCtxSynchronize, cuStreamSynchronize of the capturing stream) fail
 * with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidate the capture, and work on the
 * default stream fails with CUDA_ERROR_STREAM_CAPTURE_IMPLICIT.
 * Knobs, read by every cuInit (a test may change them between calls while it holds no
 * context): BN_FAKE_CUDA_DEVICES (count, default 1, at most 16), BN_FAKE_CUDA_CC (compute
 * capability as 10 * major + minor, default 90), BN_FAKE_CUDA_MEM (bytes of memory per device,
 * default 16 GiB; a k, m or g suffix multiplies by 1024, 1024^2, 1024^3), BN_FAKE_CUDA_NAME
 * (default "bitnetc SIMT emulator"), BN_FAKE_CUDA_INIT_FAIL=1 (cuInit gives
 * CUDA_ERROR_NO_DEVICE). */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC visibility push(default)
#include "cuda_api.h"
#pragma GCC visibility pop
#include "simt_emu.h"

enum { FC_MAX_DEVICES = 16, FC_ALIGN = 256, FC_DEFAULT_DYN_SMEM = 48 << 10 };
#define FC_DRIVER_VERSION 12080
#define FC_DEFAULT_NAME "bitnetc SIMT emulator"

/* ---- objects ---- */

typedef struct FcAlloc {
	struct FcAlloc *next;
	unsigned char *p;
	size_t n;
	int host; /* cuMemAllocHost: not device memory */
} FcAlloc;

struct CUfunc_st {
	struct CUfunc_st *next;
	SimtKernelFn fn;
	const uint8_t *psize; /* NAME__psize, or NULL */
	int max_dyn_smem;
	char name[];
};

struct CUmod_st {
	struct CUmod_st *next;
	void *dl;
	struct CUfunc_st *funcs;
};

enum { FC_NODE_KERNEL, FC_NODE_HTOD, FC_NODE_DTOH, FC_NODE_MEMSET };

typedef struct {
	int kind;
	/* kernel */
	struct CUfunc_st *f;
	unsigned grid[3], block[3], smem;
	int nparams;
	void **params;         /* pointers into args */
	unsigned char *args;   /* the parameter values, each 8-aligned */
	/* copies and memsets */
	CUdeviceptr dev;
	void *host;
	size_t n;
	unsigned char byte;
} FcNode;

struct CUgraph_st {
	struct CUgraph_st *next;
	FcNode *nodes;
	size_t n, cap;
};

struct CUgraphExec_st {
	struct CUgraphExec_st *next;
	FcNode *nodes;
	size_t n;
};

struct CUstream_st {
	struct CUstream_st *next;
	int capturing, invalidated, mode;
	struct CUgraph_st *graph; /* what the capture has recorded */
};

struct CUctx_st {
	int dev, refs, active;
	CUresult sticky;
	size_t used;
	FcAlloc *allocs;
	struct CUmod_st *mods;
	struct CUstream_st *streams;
	struct CUgraph_st *graphs;
	struct CUgraphExec_st *execs;
};

static struct {
	pthread_mutex_t mu;
	int inited, ndev, cc;
	unsigned long long mem;
	char name[256];
	struct CUctx_st ctx[FC_MAX_DEVICES];
} fc = {.mu = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local struct CUctx_st *fc_cur;

static void fc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fc_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fake libcuda: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void fc_enter(void)
{
	pthread_mutex_lock(&fc.mu);
}

static CUresult fc_leave(CUresult r)
{
	pthread_mutex_unlock(&fc.mu);
	return r;
}

/* ---- error names ---- */

static const struct {
	CUresult code;
	const char *name, *text;
} fc_errors[] = {
	{CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
	{CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
	{CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	{CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU",
	 "no kernel image is available for execution on the device"},
	{CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	{CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	{CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE",
	 "the operation cannot be performed in the present state"},
	{CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	{CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
	{CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS",
	 "an illegal memory access was encountered"},
	{CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
	 "too many resources requested for launch"},
	{CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
	{CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
	{CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
	 "operation not permitted when stream is capturing"},
	{CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
	 "operation failed due to a previous error during capture"},
	{CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT",
	 "operation would make the legacy stream depend on a capturing blocking stream"},
	{CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static CUresult fc_error_lookup(CUresult e, const char **out, int text)
{
	if (!out)
		return CUDA_ERROR_INVALID_VALUE;
	for (size_t i = 0; i < sizeof fc_errors / sizeof fc_errors[0]; i++)
		if (fc_errors[i].code == e) {
			*out = text ? fc_errors[i].text : fc_errors[i].name;
			return CUDA_SUCCESS;
		}
	*out = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorName(CUresult error, const char **pStr)
{
	return fc_error_lookup(error, pStr, 0);
}

CUresult cuGetErrorString(CUresult error, const char **pStr)
{
	return fc_error_lookup(error, pStr, 1);
}

/* ---- initialization and devices ---- */

/* $name as an unsigned number (an optional k/m/g suffix when scaled), def when unset. */
static int fc_env_num(const char *name, unsigned long long def, unsigned long long lo,
		      unsigned long long hi, int scaled, unsigned long long *out)
{
	const char *v = getenv(name);
	*out = def;
	if (!v || !*v)
		return 0;
	char *end = NULL;
	errno = 0;
	unsigned long long x = isdigit((unsigned char)v[0]) ? strtoull(v, &end, 10) : 0;
	int shift = 0;
	if (end && scaled && *end) {
		const char *u = "kmg", *at = strchr(u, tolower((unsigned char)*end));
		if (at && end[1] == 0) {
			shift = 10 * (int)(at - u + 1);
			end++;
		}
	}
	if (!end || errno || *end || x > (hi >> shift) || (x << shift) < lo) {
		fc_log("%s=%s: want a number from %llu to %llu", name, v, lo, hi);
		return -1;
	}
	*out = x << shift;
	return 0;
}

CUresult cuInit(unsigned int Flags)
{
	fc_enter();
	fc.inited = 0;
	if (Flags != 0)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	const char *fail = getenv("BN_FAKE_CUDA_INIT_FAIL");
	if (fail && strcmp(fail, "1") == 0)
		return fc_leave(CUDA_ERROR_NO_DEVICE);
	unsigned long long ndev, cc, mem;
	if (fc_env_num("BN_FAKE_CUDA_DEVICES", 1, 0, FC_MAX_DEVICES, 0, &ndev) != 0 ||
	    fc_env_num("BN_FAKE_CUDA_CC", 90, 10, 199, 0, &cc) != 0 ||
	    fc_env_num("BN_FAKE_CUDA_MEM", 16ull << 30, 1, 1ull << 50, 1, &mem) != 0)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	const char *name = getenv("BN_FAKE_CUDA_NAME");
	snprintf(fc.name, sizeof fc.name, "%s", name && *name ? name : FC_DEFAULT_NAME);
	fc.ndev = (int)ndev;
	fc.cc = (int)cc;
	fc.mem = mem;
	for (int d = 0; d < FC_MAX_DEVICES; d++)
		fc.ctx[d].dev = d;
	fc.inited = 1;
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuDriverGetVersion(int *driverVersion)
{
	if (!driverVersion)
		return CUDA_ERROR_INVALID_VALUE;
	*driverVersion = FC_DRIVER_VERSION;
	return CUDA_SUCCESS;
}

static CUresult fc_dev(CUdevice dev)
{
	if (!fc.inited)
		return CUDA_ERROR_NOT_INITIALIZED;
	return dev >= 0 && dev < fc.ndev ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

CUresult cuDeviceGetCount(int *count)
{
	fc_enter();
	if (!fc.inited)
		return fc_leave(CUDA_ERROR_NOT_INITIALIZED);
	if (!count)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	*count = fc.ndev;
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
	fc_enter();
	if (!fc.inited)
		return fc_leave(CUDA_ERROR_NOT_INITIALIZED);
	if (!device)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	CUresult r = fc_dev(ordinal);
	if (r == CUDA_SUCCESS)
		*device = ordinal;
	return fc_leave(r);
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
	fc_enter();
	CUresult r = fc_dev(dev);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!name || len <= 0)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	snprintf(name, (size_t)len, "%s", fc.name);
	return fc_leave(CUDA_SUCCESS);
}

/* The most dynamic shared memory a block may opt in to, by compute capability. */
static int fc_smem_optin(int cc)
{
	if (cc >= 90)
		return 227 << 10;
	if (cc == 80 || cc == 87)
		return 163 << 10;
	if (cc >= 86)
		return 99 << 10;
	if (cc == 75)
		return 64 << 10;
	if (cc >= 70)
		return 96 << 10;
	return 48 << 10;
}

/* The attributes the fake knows: H100-like numbers, the compute capability of the knob. */
static int fc_attribute(CUdevice_attribute a, int *v)
{
	switch (a) {
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: *v = 1024; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: *v = 1024; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: *v = 64; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: *v = 2147483647; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: *v = 65535; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: *v = 65535; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *v = 48 << 10; return 0;
	case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; return 0;
	case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: *v = 1980000; return 0;        /* kHz */
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = fc.cc >= 90 ? 132 : 108; return 0;
	case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: *v = 2619000; return 0; /* kHz */
	case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: *v = 5120; return 0;
	case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: *v = 50 << 20; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: *v = 2048; return 0;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = fc.cc / 10; return 0;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = fc.cc % 10; return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = fc_smem_optin(fc.cc); return 0;
	default: return -1;
	}
}

CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
	fc_enter();
	CUresult r = fc_dev(dev);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!pi || fc_attribute(attrib, pi) != 0)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
	fc_enter();
	CUresult r = fc_dev(dev);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!bytes)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	*bytes = (size_t)fc.mem;
	return fc_leave(CUDA_SUCCESS);
}

/* ---- contexts ---- */

static void fc_node_free(FcNode *n)
{
	if (n->kind == FC_NODE_KERNEL) {
		free(n->params);
		free(n->args);
	}
}

static void fc_nodes_free(FcNode *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fc_node_free(&nodes[i]);
	free(nodes);
}

static void fc_graph_free(struct CUgraph_st *g)
{
	if (g) {
		fc_nodes_free(g->nodes, g->n);
		free(g);
	}
}

static void fc_module_free(struct CUmod_st *m)
{
	while (m->funcs) {
		struct CUfunc_st *f = m->funcs;
		m->funcs = f->next;
		free(f);
	}
	dlclose(m->dl);
	free(m);
}

/* The last release of a primary context: everything it holds goes. */
static void fc_ctx_destroy(struct CUctx_st *c)
{
	while (c->allocs) {
		FcAlloc *a = c->allocs;
		c->allocs = a->next;
		free(a->p);
		free(a);
	}
	while (c->execs) {
		struct CUgraphExec_st *e = c->execs;
		c->execs = e->next;
		fc_nodes_free(e->nodes, e->n);
		free(e);
	}
	while (c->graphs) {
		struct CUgraph_st *g = c->graphs;
		c->graphs = g->next;
		fc_graph_free(g);
	}
	while (c->streams) {
		struct CUstream_st *s = c->streams;
		c->streams = s->next;
		fc_graph_free(s->graph);
		free(s);
	}
	while (c->mods) {
		struct CUmod_st *m = c->mods;
		c->mods = m->next;
		fc_module_free(m);
	}
	c->used = 0;
	c->sticky = CUDA_SUCCESS;
	c->active = 0;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
	fc_enter();
	CUresult r = fc_dev(dev);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!pctx)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	struct CUctx_st *c = &fc.ctx[dev];
	if (c->refs++ == 0) {
		c->active = 1;
		c->sticky = CUDA_SUCCESS;
	}
	*pctx = c;
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
	fc_enter();
	CUresult r = fc_dev(dev);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	struct CUctx_st *c = &fc.ctx[dev];
	if (c->refs == 0)
		return fc_leave(CUDA_ERROR_INVALID_CONTEXT);
	if (--c->refs == 0)
		fc_ctx_destroy(c);
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuCtxSetCurrent(CUcontext ctx)
{
	fc_enter();
	if (!fc.inited)
		return fc_leave(CUDA_ERROR_NOT_INITIALIZED);
	int known = ctx == NULL;
	for (int d = 0; d < fc.ndev; d++)
		known |= ctx == &fc.ctx[d] && ctx->active;
	if (!known)
		return fc_leave(CUDA_ERROR_INVALID_CONTEXT);
	fc_cur = ctx;
	return fc_leave(CUDA_SUCCESS);
}

/* The current context of a call that needs one. sticky_ok: the calls that free go on after a
 * sticky error (they still return it). */
static CUresult fc_ctx(struct CUctx_st **out, int sticky_ok)
{
	if (!fc.inited)
		return CUDA_ERROR_NOT_INITIALIZED;
	struct CUctx_st *c = fc_cur;
	if (!c || !c->active)
		return CUDA_ERROR_INVALID_CONTEXT;
	*out = c;
	return sticky_ok ? CUDA_SUCCESS : c->sticky;
}

/* A capture that forbids unsafe calls (any but RELAXED) is under way in c. */
static int fc_strict_capture(struct CUctx_st *c)
{
	for (struct CUstream_st *s = c->streams; s; s = s->next)
		if (s->capturing && s->mode != CU_STREAM_CAPTURE_MODE_RELAXED)
			return 1;
	return 0;
}

/* An unsafe call during a strict capture: it fails and the captures are invalidated. */
static CUresult fc_unsafe_call(struct CUctx_st *c, const char *what)
{
	if (!fc_strict_capture(c))
		return CUDA_SUCCESS;
	fc_log("%s during a stream capture", what);
	for (struct CUstream_st *s = c->streams; s; s = s->next)
		if (s->capturing && s->mode != CU_STREAM_CAPTURE_MODE_RELAXED)
			s->invalidated = 1;
	return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

CUresult cuCtxSynchronize(void)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r == CUDA_SUCCESS)
		r = fc_unsafe_call(c, "cuCtxSynchronize");
	return fc_leave(r);
}

CUresult cuMemGetInfo_v2(size_t *free_, size_t *total)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!free_ || !total)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	*total = (size_t)fc.mem;
	*free_ = (size_t)(fc.mem - c->used);
	return fc_leave(CUDA_SUCCESS);
}

/* ---- memory ---- */

CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r == CUDA_SUCCESS)
		r = fc_unsafe_call(c, "cuMemAlloc_v2");
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!dptr || bytesize == 0)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	if (bytesize > fc.mem - c->used)
		return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
	size_t n = (bytesize + FC_ALIGN - 1) / FC_ALIGN * FC_ALIGN;
	FcAlloc *a = calloc(1, sizeof *a);
	unsigned char *p = n >= bytesize ? aligned_alloc(FC_ALIGN, n) : NULL;
	if (!a || !p) {
		free(a);
		free(p);
		return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
	}
	memset(p, 0xA5, n); /* device memory starts as garbage */
	a->p = p;
	a->n = bytesize;
	a->next = c->allocs;
	c->allocs = a;
	c->used += bytesize;
	*dptr = (CUdeviceptr)(uintptr_t)p;
	return fc_leave(CUDA_SUCCESS);
}

/* Unlinks and returns the allocation that starts at p (host or device), or NULL. */
static FcAlloc *fc_alloc_take(struct CUctx_st *c, const void *p, int host)
{
	for (FcAlloc **pp = &c->allocs; *pp; pp = &(*pp)->next)
		if ((*pp)->p == p && (*pp)->host == host) {
			FcAlloc *a = *pp;
			*pp = a->next;
			return a;
		}
	return NULL;
}

CUresult cuMemFree_v2(CUdeviceptr dptr)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 1);
	if (r == CUDA_SUCCESS)
		r = fc_unsafe_call(c, "cuMemFree_v2");
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	FcAlloc *a = fc_alloc_take(c, (void *)(uintptr_t)dptr, 0);
	if (!a)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	c->used -= a->n;
	free(a->p);
	free(a);
	return fc_leave(c->sticky);
}

CUresult cuMemAllocHost_v2(void **pp, size_t bytesize)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!pp || bytesize == 0)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	size_t n = (bytesize + FC_ALIGN - 1) / FC_ALIGN * FC_ALIGN;
	FcAlloc *a = calloc(1, sizeof *a);
	unsigned char *p = n >= bytesize ? aligned_alloc(FC_ALIGN, n) : NULL;
	if (!a || !p) {
		free(a);
		free(p);
		return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
	}
	a->p = p;
	a->n = bytesize;
	a->host = 1;
	a->next = c->allocs;
	c->allocs = a;
	*pp = p;
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuMemFreeHost(void *p)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 1);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	FcAlloc *a = fc_alloc_take(c, p, 1);
	if (!a)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	free(a->p);
	free(a);
	return fc_leave(c->sticky);
}

/* [p, p + n) lies inside one device allocation of c: its address, or NULL (logged). */
static unsigned char *fc_dev_range(struct CUctx_st *c, CUdeviceptr p, size_t n, const char *what)
{
	for (FcAlloc *a = c->allocs; a; a = a->next) {
		uintptr_t lo = (uintptr_t)a->p;
		if (!a->host && p >= lo && n <= a->n && p - lo <= a->n - n)
			return (unsigned char *)(uintptr_t)p;
	}
	fc_log("%s: device range 0x%llx + %zu is not inside one allocation", what, p, n);
	return NULL;
}

/* The default stream (NULL) or a stream of c. Work on the default stream while a strict
 * capture is under way fails and invalidates it. */
static CUresult fc_stream(struct CUctx_st *c, CUstream h, struct CUstream_st **out)
{
	*out = NULL;
	if (h == NULL || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD) {
		if (!fc_strict_capture(c))
			return CUDA_SUCCESS;
		fc_unsafe_call(c, "work on the default stream");
		return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
	}
	for (struct CUstream_st *s = c->streams; s; s = s->next)
		if (s == h) {
			*out = s;
			return CUDA_SUCCESS;
		}
	return CUDA_ERROR_INVALID_HANDLE;
}

/* An error in a call on a capturing stream invalidates the capture. */
static CUresult fc_capture_fail(struct CUstream_st *s, CUresult r)
{
	if (r != CUDA_SUCCESS && s && s->capturing)
		s->invalidated = 1;
	return r;
}

static FcNode *fc_node_add(struct CUstream_st *s)
{
	struct CUgraph_st *g = s->graph;
	if (g->n == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 16;
		FcNode *nodes = realloc(g->nodes, cap * sizeof *nodes);
		if (!nodes)
			return NULL;
		g->nodes = nodes;
		g->cap = cap;
	}
	FcNode *n = &g->nodes[g->n++];
	memset(n, 0, sizeof *n);
	return n;
}

/* A copy or memset, run now or recorded. */
static CUresult fc_transfer(struct CUctx_st *c, struct CUstream_st *s, int kind, CUdeviceptr dev,
			    void *host, size_t n, unsigned char byte, const char *what)
{
	if (n == 0)
		return CUDA_SUCCESS;
	if (kind != FC_NODE_MEMSET && !host)
		return fc_capture_fail(s, CUDA_ERROR_INVALID_VALUE);
	unsigned char *d = fc_dev_range(c, dev, n, what);
	if (!d)
		return fc_capture_fail(s, CUDA_ERROR_INVALID_VALUE);
	if (s && s->capturing) {
		FcNode *node = fc_node_add(s);
		if (!node)
			return fc_capture_fail(s, CUDA_ERROR_OUT_OF_MEMORY);
		node->kind = kind;
		node->dev = dev;
		node->host = host;
		node->n = n;
		node->byte = byte;
		return CUDA_SUCCESS;
	}
	switch (kind) {
	case FC_NODE_HTOD: memcpy(d, host, n); break;
	case FC_NODE_DTOH: memcpy(host, d, n); break;
	default: memset(d, byte, n); break;
	}
	return CUDA_SUCCESS;
}

static CUresult fc_copy(CUstream h, int sync, int kind, CUdeviceptr dev, void *host, size_t n,
			unsigned char byte, const char *what)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	struct CUstream_st *s = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r == CUDA_SUCCESS)
		r = sync ? fc_unsafe_call(c, what) : fc_stream(c, h, &s);
	if (r == CUDA_SUCCESS)
		r = fc_transfer(c, s, kind, dev, host, n, byte, what);
	return fc_leave(r);
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
	return fc_copy(NULL, 1, FC_NODE_HTOD, dstDevice, (void *)(uintptr_t)srcHost, ByteCount, 0,
		       "cuMemcpyHtoD_v2");
}

CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
	return fc_copy(NULL, 1, FC_NODE_DTOH, srcDevice, dstHost, ByteCount, 0, "cuMemcpyDtoH_v2");
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount,
                              CUstream hStream)
{
	return fc_copy(hStream, 0, FC_NODE_HTOD, dstDevice, (void *)(uintptr_t)srcHost, ByteCount, 0,
		       "cuMemcpyHtoDAsync_v2");
}

CUresult cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount,
                              CUstream hStream)
{
	return fc_copy(hStream, 0, FC_NODE_DTOH, srcDevice, dstHost, ByteCount, 0,
		       "cuMemcpyDtoHAsync_v2");
}

CUresult cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream)
{
	return fc_copy(hStream, 0, FC_NODE_MEMSET, dstDevice, NULL, N, uc, "cuMemsetD8Async");
}

/* ---- modules and functions ---- */

/* Writes msg into the JIT error log the caller passed (CU_JIT_ERROR_LOG_BUFFER and its size),
 * and the size used back, as the driver does. */
static void fc_jit_log(unsigned n, const CUjit_option *opt, void **val, const char *msg)
{
	char *buf = NULL;
	int size_at = -1;
	for (unsigned i = 0; i < n; i++) {
		if (opt[i] == CU_JIT_ERROR_LOG_BUFFER)
			buf = val[i];
		else if (opt[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
			size_at = (int)i;
	}
	if (!buf || size_at < 0)
		return;
	size_t cap = (size_t)(uintptr_t)val[size_at];
	if (cap == 0)
		return;
	snprintf(buf, cap, "%s", msg);
	val[size_at] = (void *)(uintptr_t)(strlen(buf) + 1);
}

CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
                            CUjit_option *options, void **optionValues)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!module || !image || (numOptions && (!options || !optionValues)))
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	char msg[512];
	const char *path = getenv("BN_FAKE_CUDA_KERNELS");
	void *dl = path && *path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
	if (!dl) {
		if (path && *path)
			snprintf(msg, sizeof msg, "fake libcuda: cannot load the kernels %s: %s", path,
				 dlerror());
		else
			snprintf(msg, sizeof msg, "fake libcuda: BN_FAKE_CUDA_KERNELS is not set (the "
				 "shared object of the kernels compiled for the host)");
		fputs(msg, stderr);
		fputc('\n', stderr);
		fc_jit_log(numOptions, options, optionValues, msg);
		return fc_leave(CUDA_ERROR_INVALID_IMAGE);
	}
	struct CUmod_st *m = calloc(1, sizeof *m);
	if (!m) {
		dlclose(dl);
		return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
	}
	m->dl = dl;
	m->next = c->mods;
	c->mods = m;
	fc_jit_log(numOptions, options, optionValues, "");
	*module = m;
	return fc_leave(CUDA_SUCCESS);
}

/* fc_unlink_T(&head, h): unlinks h from a list of T; 1 when it was there. */
#define FC_UNLINK_FN(name, type)                                    \
	static int name(type **pp, const type *h)                   \
	{                                                           \
		for (; *pp; pp = &(*pp)->next)                      \
			if (*pp == h) {                             \
				*pp = (*pp)->next;                  \
				return 1;                           \
			}                                           \
		return 0;                                           \
	}
FC_UNLINK_FN(fc_unlink_mod, struct CUmod_st)
FC_UNLINK_FN(fc_unlink_stream, struct CUstream_st)
FC_UNLINK_FN(fc_unlink_graph, struct CUgraph_st)
FC_UNLINK_FN(fc_unlink_exec, struct CUgraphExec_st)

CUresult cuModuleUnload(CUmodule hmod)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 1);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!hmod || !fc_unlink_mod(&c->mods, hmod))
		return fc_leave(CUDA_ERROR_INVALID_HANDLE);
	fc_module_free(hmod);
	return fc_leave(c->sticky);
}

static struct CUmod_st *fc_module_of(struct CUctx_st *c, CUmodule h)
{
	for (struct CUmod_st *m = c->mods; m; m = m->next)
		if (m == h)
			return m;
	return NULL;
}

CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	struct CUmod_st *m = fc_module_of(c, hmod);
	if (!m)
		return fc_leave(CUDA_ERROR_INVALID_HANDLE);
	if (!hfunc || !name)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	for (struct CUfunc_st *f = m->funcs; f; f = f->next)
		if (strcmp(f->name, name) == 0) {
			*hfunc = f;
			return fc_leave(CUDA_SUCCESS);
		}
	void *sym = dlsym(m->dl, name);
	if (!sym)
		return fc_leave(CUDA_ERROR_NOT_FOUND);
	size_t len = strlen(name);
	char *meta = malloc(len + sizeof SIMT_PSIZE_SUFFIX);
	struct CUfunc_st *f = calloc(1, sizeof *f + len + 1);
	if (!meta || !f) {
		free(meta);
		free(f);
		return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
	}
	memcpy(meta, name, len);
	memcpy(meta + len, SIMT_PSIZE_SUFFIX, sizeof SIMT_PSIZE_SUFFIX);
	f->psize = dlsym(m->dl, meta);
	free(meta);
	memcpy(&f->fn, &sym, sizeof sym); /* POSIX: a function's address from dlsym */
	f->max_dyn_smem = FC_DEFAULT_DYN_SMEM;
	memcpy(f->name, name, len + 1);
	f->next = m->funcs;
	m->funcs = f;
	*hfunc = f;
	return fc_leave(CUDA_SUCCESS);
}

static struct CUfunc_st *fc_func_of(struct CUctx_st *c, CUfunction h)
{
	for (struct CUmod_st *m = c->mods; m; m = m->next)
		for (struct CUfunc_st *f = m->funcs; f; f = f->next)
			if (f == h)
				return f;
	return NULL;
}

CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	struct CUfunc_st *f = fc_func_of(c, hfunc);
	if (!f)
		return fc_leave(CUDA_ERROR_INVALID_HANDLE);
	switch (attrib) {
	case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
		if (value < 0 || value > fc_smem_optin(fc.cc))
			return fc_leave(CUDA_ERROR_INVALID_VALUE);
		f->max_dyn_smem = value;
		return fc_leave(CUDA_SUCCESS);
	case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
		return fc_leave(value >= -1 && value <= 100 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
	default:
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	}
}

/* ---- streams, launches, capture, graphs ---- */

CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!phStream || Flags > 1)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	struct CUstream_st *s = calloc(1, sizeof *s);
	if (!s)
		return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
	s->next = c->streams;
	c->streams = s;
	*phStream = s;
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuStreamDestroy_v2(CUstream hStream)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 1);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!hStream || !fc_unlink_stream(&c->streams, hStream))
		return fc_leave(CUDA_ERROR_INVALID_HANDLE);
	fc_graph_free(hStream->graph);
	free(hStream);
	return fc_leave(c->sticky);
}

CUresult cuStreamSynchronize(CUstream hStream)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	struct CUstream_st *s = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r == CUDA_SUCCESS)
		r = fc_stream(c, hStream, &s);
	if (r == CUDA_SUCCESS && s && s->capturing) {
		fc_log("cuStreamSynchronize of a capturing stream");
		s->invalidated = 1;
		r = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	}
	return fc_leave(r);
}

static CUresult fc_launch_check(const struct CUfunc_st *f, const unsigned g[3],
				const unsigned b[3], unsigned smem, void **params, void **extra)
{
	uint64_t threads = (uint64_t)b[0] * b[1] * b[2];
	if (extra) {
		fc_log("cuLaunchKernel(%s): only kernelParams are supported, not extra", f->name);
		return CUDA_ERROR_NOT_SUPPORTED;
	}
	if (!g[0] || !g[1] || !g[2] || g[0] > 2147483647u || g[1] > 65535 || g[2] > 65535 ||
	    !threads || threads > 1024 || b[2] > 64) {
		fc_log("cuLaunchKernel(%s): grid %ux%ux%u, block %ux%ux%u out of range", f->name, g[0],
		       g[1], g[2], b[0], b[1], b[2]);
		return CUDA_ERROR_INVALID_VALUE;
	}
	if (smem > (unsigned)f->max_dyn_smem) {
		fc_log("cuLaunchKernel(%s): %u bytes of dynamic shared memory, more than the %d the "
		       "function allows (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)",
		       f->name, smem, f->max_dyn_smem);
		return CUDA_ERROR_INVALID_VALUE;
	}
	if (f->psize && f->psize[0] && !params) {
		fc_log("cuLaunchKernel(%s): no kernelParams for a kernel with parameters", f->name);
		return CUDA_ERROR_INVALID_VALUE;
	}
	return CUDA_SUCCESS;
}

static CUresult fc_run_kernel(struct CUctx_st *c, const FcNode *k, void **params)
{
	char err[320];
	if (simt_emu_launch(k->f->fn, k->grid, k->block, k->smem, params, err, sizeof err) == 0)
		return CUDA_SUCCESS;
	fc_log("cuLaunchKernel(%s): %s", k->f->name, err);
	c->sticky = CUDA_ERROR_LAUNCH_FAILED;
	return CUDA_ERROR_LAUNCH_FAILED;
}

/* The kernel node's own copy of the parameters, by the sizes in NAME__psize. */
static CUresult fc_node_params(FcNode *k, void *const *params)
{
	const uint8_t *ps = k->f->psize;
	size_t total = 0;
	int n = 0;
	while (ps[n])
		total += (ps[n++] + 7u) & ~7u;
	k->nparams = n;
	k->params = calloc(n ? (size_t)n : 1, sizeof *k->params);
	k->args = malloc(total ? total : 1);
	if (!k->params || !k->args)
		return CUDA_ERROR_OUT_OF_MEMORY;
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		k->params[i] = k->args + off;
		memcpy(k->args + off, params[i], ps[i]);
		off += (ps[i] + 7u) & ~7u;
	}
	return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                        unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                        unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                        void **kernelParams, void **extra)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	struct CUstream_st *s = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r == CUDA_SUCCESS)
		r = fc_stream(c, hStream, &s);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	FcNode k = {.kind = FC_NODE_KERNEL, .f = fc_func_of(c, f), .smem = sharedMemBytes,
		    .grid = {gridDimX, gridDimY, gridDimZ}, .block = {blockDimX, blockDimY, blockDimZ}};
	if (!k.f)
		return fc_leave(fc_capture_fail(s, CUDA_ERROR_INVALID_HANDLE));
	r = fc_launch_check(k.f, k.grid, k.block, k.smem, kernelParams, extra);
	if (r != CUDA_SUCCESS)
		return fc_leave(fc_capture_fail(s, r));
	if (!s || !s->capturing)
		return fc_leave(fc_run_kernel(c, &k, kernelParams));
	if (!k.f->psize) {
		fc_log("cuLaunchKernel(%s) during a stream capture: the kernels have no %s%s (the "
		       "sizes of its parameters)", k.f->name, k.f->name, SIMT_PSIZE_SUFFIX);
		return fc_leave(fc_capture_fail(s, CUDA_ERROR_NOT_SUPPORTED));
	}
	FcNode *node = fc_node_add(s);
	if (!node)
		return fc_leave(fc_capture_fail(s, CUDA_ERROR_OUT_OF_MEMORY));
	*node = k;
	r = fc_node_params(node, kernelParams);
	if (r != CUDA_SUCCESS) {
		fc_node_free(node);
		s->graph->n--;
	}
	return fc_leave(fc_capture_fail(s, r));
}

CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	struct CUstream_st *s = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r == CUDA_SUCCESS)
		r = fc_stream(c, hStream, &s);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!s)
		return fc_leave(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED); /* not the legacy stream */
	if (mode < CU_STREAM_CAPTURE_MODE_GLOBAL || mode > CU_STREAM_CAPTURE_MODE_RELAXED)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	if (s->capturing)
		return fc_leave(CUDA_ERROR_ILLEGAL_STATE);
	s->graph = calloc(1, sizeof *s->graph);
	if (!s->graph)
		return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
	s->capturing = 1;
	s->invalidated = 0;
	s->mode = mode;
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	struct CUstream_st *s = NULL;
	for (s = c->streams; s && s != hStream; s = s->next)
		;
	if (!phGraph)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	if (!s || !s->capturing)
		return fc_leave(CUDA_ERROR_ILLEGAL_STATE);
	struct CUgraph_st *g = s->graph;
	s->graph = NULL;
	s->capturing = 0;
	if (s->invalidated) {
		fc_graph_free(g);
		*phGraph = NULL;
		return fc_leave(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	}
	g->next = c->graphs;
	c->graphs = g;
	*phGraph = g;
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph,
                                     unsigned long long flags)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	struct CUgraph_st *g = c->graphs;
	while (g && g != hGraph)
		g = g->next;
	if (!g)
		return fc_leave(CUDA_ERROR_INVALID_HANDLE);
	if (!phGraphExec)
		return fc_leave(CUDA_ERROR_INVALID_VALUE);
	(void)flags;
	struct CUgraphExec_st *e = calloc(1, sizeof *e);
	FcNode *nodes = calloc(g->n ? g->n : 1, sizeof *nodes);
	if (!e || !nodes) {
		free(e);
		free(nodes);
		return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
	}
	e->nodes = nodes;
	for (size_t i = 0; i < g->n; i++) {
		nodes[i] = g->nodes[i];
		if (nodes[i].kind != FC_NODE_KERNEL)
			continue;
		nodes[i].params = NULL;
		nodes[i].args = NULL;
		if (fc_node_params(&nodes[i], g->nodes[i].params) != CUDA_SUCCESS) {
			fc_node_free(&nodes[i]);
			fc_nodes_free(nodes, i);
			free(e);
			return fc_leave(CUDA_ERROR_OUT_OF_MEMORY);
		}
	}
	e->n = g->n;
	e->next = c->execs;
	c->execs = e;
	*phGraphExec = e;
	return fc_leave(CUDA_SUCCESS);
}

CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	struct CUstream_st *s = NULL;
	CUresult r = fc_ctx(&c, 0);
	if (r == CUDA_SUCCESS)
		r = fc_stream(c, hStream, &s);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	struct CUgraphExec_st *e = c->execs;
	while (e && e != hGraphExec)
		e = e->next;
	if (!e)
		return fc_leave(fc_capture_fail(s, CUDA_ERROR_INVALID_HANDLE));
	if (s && s->capturing) {
		fc_log("cuGraphLaunch into a capturing stream is not supported");
		return fc_leave(fc_capture_fail(s, CUDA_ERROR_NOT_SUPPORTED));
	}
	for (size_t i = 0; i < e->n && r == CUDA_SUCCESS; i++) {
		FcNode *k = &e->nodes[i];
		if (k->kind == FC_NODE_KERNEL)
			r = fc_run_kernel(c, k, k->params);
		else
			r = fc_transfer(c, NULL, k->kind, k->dev, k->host, k->n, k->byte, "cuGraphLaunch");
	}
	return fc_leave(r);
}

CUresult cuGraphExecDestroy(CUgraphExec hGraphExec)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 1);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!hGraphExec || !fc_unlink_exec(&c->execs, hGraphExec))
		return fc_leave(CUDA_ERROR_INVALID_HANDLE);
	fc_nodes_free(hGraphExec->nodes, hGraphExec->n);
	free(hGraphExec);
	return fc_leave(c->sticky);
}

CUresult cuGraphDestroy(CUgraph hGraph)
{
	fc_enter();
	struct CUctx_st *c = NULL;
	CUresult r = fc_ctx(&c, 1);
	if (r != CUDA_SUCCESS)
		return fc_leave(r);
	if (!hGraph || !fc_unlink_graph(&c->graphs, hGraph))
		return fc_leave(CUDA_ERROR_INVALID_HANDLE);
	fc_graph_free(hGraph);
	return fc_leave(c->sticky);
}
