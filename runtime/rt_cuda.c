/* rt_cuda.c - rt_cuda.h: the CUDA driver API loaded with dlopen (libcuda.so.1, or
 * $BITNETC_LIBCUDA), its functions resolved by name, the device checked, and the calls a
 * generated model.c makes, each returning a status with a one-line message. libc + libdl.
 *
 * The few driver types and constants used are declared here (no cuda.h); their values are
 * cuda.h's. Copies run on the RtCuda's own non-blocking stream: the synchronous ones are
 * an asynchronous copy and a stream synchronize, since the driver's cuMemcpyHtoD runs on
 * the legacy stream, which a non-blocking stream does not wait for (and pageable copies may
 * return before the data has arrived).
 *
 * Profile mode ($BITNETC_CUDA_PROFILE=1): every launch waits for the stream before and
 * after it and is timed on the host (CLOCK_MONOTONIC: launch + run + synchronize), per
 * kernel name; rt_cuda_close prints the table to stderr. Graphs are refused then
 * (capture_begin says RT_CUDA_ENOTSUP, so model.c launches each kernel itself). */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt_cuda.h"
#include "rt_model.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(sizeof(size_t) == 8 && sizeof(void *) == 8, "CUDA programs are 64-bit");
_Static_assert(RT_CUDA_ENODEV == RT_INIT_DEVICE, "a model's init returns rt_cuda_open's code");

/* ---- the driver's types and constants (cuda.h's values) ---------------------- */

typedef int CUresult; /* CUDA_SUCCESS 0, else a CUDA_ERROR_* */
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;

enum {
	CUDA_SUCCESS = 0,
	CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
	CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
	CU_JIT_ERROR_LOG_BUFFER = 5,
	CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
	CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
	CU_STREAM_NON_BLOCKING = 1,
	/* only this thread's calls are checked while it captures: another RtCuda in another
	 * thread goes on as usual */
	CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
};

/* ---- the functions, resolved by name ----------------------------------------- */

typedef struct {
	CUresult (*cuInit)(unsigned flags);
	CUresult (*cuDriverGetVersion)(int *version);
	CUresult (*cuDeviceGetCount)(int *count);
	CUresult (*cuDeviceGet)(CUdevice *dev, int ordinal);
	CUresult (*cuDeviceGetName)(char *name, int len, CUdevice dev);
	CUresult (*cuDeviceGetAttribute)(int *v, int attrib, CUdevice dev);
	CUresult (*cuDeviceTotalMem)(size_t *bytes, CUdevice dev);
	CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice dev);
	CUresult (*cuDevicePrimaryCtxRelease)(CUdevice dev);
	CUresult (*cuCtxSetCurrent)(CUcontext ctx);
	CUresult (*cuMemGetInfo)(size_t *free_bytes, size_t *total_bytes);
	CUresult (*cuModuleLoadDataEx)(CUmodule *mod, const void *image, unsigned n_opts,
				       int *opts, void **vals);
	CUresult (*cuModuleUnload)(CUmodule mod);
	CUresult (*cuModuleGetFunction)(CUfunction *fn, CUmodule mod, const char *name);
	CUresult (*cuFuncSetAttribute)(CUfunction fn, int attrib, int v);
	CUresult (*cuMemAlloc)(CUdeviceptr *p, size_t bytes);
	CUresult (*cuMemFree)(CUdeviceptr p);
	CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t n, CUstream s);
	CUresult (*cuMemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t n, CUstream s);
	CUresult (*cuMemsetD8Async)(CUdeviceptr dst, unsigned char v, size_t n, CUstream s);
	CUresult (*cuMemAllocHost)(void **p, size_t bytes);
	CUresult (*cuMemFreeHost)(void *p);
	CUresult (*cuStreamCreate)(CUstream *s, unsigned flags);
	CUresult (*cuStreamDestroy)(CUstream s);
	CUresult (*cuStreamSynchronize)(CUstream s);
	CUresult (*cuLaunchKernel)(CUfunction fn, unsigned gx, unsigned gy, unsigned gz,
				   unsigned bx, unsigned by, unsigned bz, unsigned smem, CUstream s,
				   void **params, void **extra);
	/* optional: graphs (CUDA 11.4 on) */
	CUresult (*cuStreamBeginCapture)(CUstream s, int mode);
	CUresult (*cuStreamEndCapture)(CUstream s, CUgraph *g);
	CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *e, CUgraph g, unsigned long long flags);
	CUresult (*cuGraphLaunch)(CUgraphExec e, CUstream s);
	CUresult (*cuGraphExecDestroy)(CUgraphExec e);
	CUresult (*cuGraphDestroy)(CUgraph g);
	/* optional: messages */
	CUresult (*cuGetErrorName)(CUresult r, const char **name);
	CUresult (*cuGetErrorString)(CUresult r, const char **text);
} RtCuApi;

enum { RT_CU_REQUIRED, RT_CU_GRAPH, RT_CU_MESSAGE };

/* ORDER RtCuApi: the exported names (the _v2 ones where CUDA has them) */
static const struct {
	const char *name;
	size_t off;
	int kind;
} rt_cu_syms[] = {
#define RT_CU_SYM(field, name, kind) {name, offsetof(RtCuApi, field), kind}
	RT_CU_SYM(cuInit, "cuInit", RT_CU_REQUIRED),
	RT_CU_SYM(cuDriverGetVersion, "cuDriverGetVersion", RT_CU_REQUIRED),
	RT_CU_SYM(cuDeviceGetCount, "cuDeviceGetCount", RT_CU_REQUIRED),
	RT_CU_SYM(cuDeviceGet, "cuDeviceGet", RT_CU_REQUIRED),
	RT_CU_SYM(cuDeviceGetName, "cuDeviceGetName", RT_CU_REQUIRED),
	RT_CU_SYM(cuDeviceGetAttribute, "cuDeviceGetAttribute", RT_CU_REQUIRED),
	RT_CU_SYM(cuDeviceTotalMem, "cuDeviceTotalMem_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", RT_CU_REQUIRED),
	RT_CU_SYM(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuCtxSetCurrent, "cuCtxSetCurrent", RT_CU_REQUIRED),
	RT_CU_SYM(cuMemGetInfo, "cuMemGetInfo_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuModuleLoadDataEx, "cuModuleLoadDataEx", RT_CU_REQUIRED),
	RT_CU_SYM(cuModuleUnload, "cuModuleUnload", RT_CU_REQUIRED),
	RT_CU_SYM(cuModuleGetFunction, "cuModuleGetFunction", RT_CU_REQUIRED),
	RT_CU_SYM(cuFuncSetAttribute, "cuFuncSetAttribute", RT_CU_REQUIRED),
	RT_CU_SYM(cuMemAlloc, "cuMemAlloc_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuMemFree, "cuMemFree_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuMemsetD8Async, "cuMemsetD8Async", RT_CU_REQUIRED),
	RT_CU_SYM(cuMemAllocHost, "cuMemAllocHost_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuMemFreeHost, "cuMemFreeHost", RT_CU_REQUIRED),
	RT_CU_SYM(cuStreamCreate, "cuStreamCreate", RT_CU_REQUIRED),
	RT_CU_SYM(cuStreamDestroy, "cuStreamDestroy_v2", RT_CU_REQUIRED),
	RT_CU_SYM(cuStreamSynchronize, "cuStreamSynchronize", RT_CU_REQUIRED),
	RT_CU_SYM(cuLaunchKernel, "cuLaunchKernel", RT_CU_REQUIRED),
	RT_CU_SYM(cuStreamBeginCapture, "cuStreamBeginCapture_v2", RT_CU_GRAPH),
	RT_CU_SYM(cuStreamEndCapture, "cuStreamEndCapture", RT_CU_GRAPH),
	RT_CU_SYM(cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags", RT_CU_GRAPH),
	RT_CU_SYM(cuGraphLaunch, "cuGraphLaunch", RT_CU_GRAPH),
	RT_CU_SYM(cuGraphExecDestroy, "cuGraphExecDestroy", RT_CU_GRAPH),
	RT_CU_SYM(cuGraphDestroy, "cuGraphDestroy", RT_CU_GRAPH),
	RT_CU_SYM(cuGetErrorName, "cuGetErrorName", RT_CU_MESSAGE),
	RT_CU_SYM(cuGetErrorString, "cuGetErrorString", RT_CU_MESSAGE),
#undef RT_CU_SYM
};
_Static_assert(sizeof rt_cu_syms / sizeof *rt_cu_syms == sizeof(RtCuApi) / sizeof(void (*)(void)),
	       "ORDER RtCuApi: one name per function");

/* Uploads go in chunks of this size, so that progress is reported as they go. */
#define RT_CU_CHUNK ((uint64_t)64 << 20)

/* One kernel's launches in profile mode. */
typedef struct {
	void *fn;
	char name[128];
	uint64_t calls;
	double ns;
} RtCuProf;

struct RtCuda {
	void *lib;
	char path[512]; /* the driver library as loaded (for messages) */
	RtCuApi api;
	int graphs;  /* every graph function resolved */
	int version; /* cuDriverGetVersion: 12080 is 12.8 */
	int ordinal; /* the device's index */
	CUdevice dev;
	int cc;
	char name[256];
	CUcontext ctx; /* the primary context, retained (NULL: not yet) */
	CUstream stream;
	CUmodule mod;
	int capturing;
	char desc[512];
	char err[1024]; /* the last failed call's message */
	int prof;	/* $BITNETC_CUDA_PROFILE: time each launch */
	RtCuProf *pk;	/* the functions rt_cuda_func returned, with their times */
	int npk, cap_pk;
};

/* ---- messages ---------------------------------------------------------------- */

#if defined(__GNUC__)
static int rt_cu_say(RtCuda *c, char *err, size_t n, int code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
#endif

/* Formats into c->err and err (either may be missing); returns code. */
static int rt_cu_say(RtCuda *c, char *err, size_t n, int code, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (c)
		snprintf(c->err, sizeof c->err, "%s", buf);
	if (err && n)
		snprintf(err, n, "%s", buf);
	return code;
}

/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)", or the number when the driver cannot name it. */
static void rt_cu_errname(const RtCuda *c, CUresult r, char *buf, size_t n)
{
	const char *name = NULL, *text = NULL;
	if (c->api.cuGetErrorName && c->api.cuGetErrorName(r, &name) != CUDA_SUCCESS)
		name = NULL;
	if (c->api.cuGetErrorString && c->api.cuGetErrorString(r, &text) != CUDA_SUCCESS)
		text = NULL;
	if (name && text)
		snprintf(buf, n, "%s (%s)", name, text);
	else if (name)
		snprintf(buf, n, "%s", name);
	else
		snprintf(buf, n, "CUDA error %d", r);
}

/* r's message "call: NAME (text)" with code, or 0 when r is success. */
static int rt_cu_check(RtCuda *c, CUresult r, const char *call, char *err, size_t n, int code)
{
	if (r == CUDA_SUCCESS)
		return 0;
	char name[256];
	rt_cu_errname(c, r, name, sizeof name);
	return rt_cu_say(c, err, n, code, "%s: %s", call, name);
}

/* The exported name of the RtCuApi function at off ("cuMemAlloc_v2"). */
static const char *rt_cu_symname(size_t off)
{
	for (size_t i = 0; i < sizeof rt_cu_syms / sizeof *rt_cu_syms; i++)
		if (rt_cu_syms[i].off == off)
			return rt_cu_syms[i].name;
	return "?";
}

/* Calls c->api.call args; a failure is RT_CUDA_EDRIVER with the function's exported name. */
#define RT_CU_CALL(c, call, args, err, n)                                                    \
	rt_cu_check((c), (c)->api.call args, rt_cu_symname(offsetof(RtCuApi, call)), (err), (n), \
		    RT_CUDA_EDRIVER)

/* Makes the device's context current in the calling thread (cheap: a thread-local). */
static int rt_cu_bind(RtCuda *c, char *err, size_t n)
{
	return RT_CU_CALL(c, cuCtxSetCurrent, (c->ctx), err, n);
}

static double rt_cu_gib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0 * 1024.0);
}

/* ---- opening ----------------------------------------------------------------- */

/* dlopen and dlsym: RT_CUDA_ENODEV when there is no library or it is not a driver. */
static int rt_cu_load(RtCuda *c, char *err, size_t n)
{
	const char *env = getenv(RT_CUDA_ENV_LIB);
	const char *path = env && *env ? env : "libcuda.so.1";
	snprintf(c->path, sizeof c->path, "%s", path);
	int flags = RTLD_NOW | RTLD_LOCAL;
#ifdef RTLD_NODELETE
	flags |= RTLD_NODELETE; /* the driver stays mapped: a probe then an open start it once */
#endif
	c->lib = dlopen(path, flags);
	if (!c->lib) {
		const char *why = dlerror();
		why = why ? why : "cannot load it";
		/* dlerror names the file; say the path once */
		int named = strncmp(why, path, strlen(path)) == 0;
		return rt_cu_say(c, err, n, RT_CUDA_ENODEV, "no CUDA driver: %s%s%s%s", named ? "" : path,
				 named ? "" : ": ", why, env && *env ? " (from $" RT_CUDA_ENV_LIB ")" : "");
	}
	c->graphs = 1;
	for (size_t i = 0; i < sizeof rt_cu_syms / sizeof *rt_cu_syms; i++) {
		void *sym = dlsym(c->lib, rt_cu_syms[i].name);
		if (!sym && rt_cu_syms[i].kind == RT_CU_REQUIRED)
			return rt_cu_say(c, err, n, RT_CUDA_ENODEV,
					 "no usable CUDA driver: %s lacks %s (not a CUDA driver, or "
					 "one too old)",
					 path, rt_cu_syms[i].name);
		if (!sym && rt_cu_syms[i].kind == RT_CU_GRAPH)
			c->graphs = 0;
		/* POSIX: a function's address fits a void * */
		memcpy((char *)&c->api + rt_cu_syms[i].off, &sym, sizeof sym);
	}
	return 0;
}

/* The device's index: $BITNETC_CUDA_DEVICE, default 0, one of count. */
static int rt_cu_pick(RtCuda *c, int count, char *err, size_t n)
{
	const char *s = getenv(RT_CUDA_ENV_DEVICE);
	c->ordinal = 0;
	if (!s || !*s)
		return 0;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < 0 || v >= count)
		return rt_cu_say(c, err, n, RT_CUDA_ENODEV,
				 "$" RT_CUDA_ENV_DEVICE "=%s names no CUDA device (this machine has "
				 "%d: 0 to %d)",
				 s, count, count - 1);
	c->ordinal = (int)v;
	return 0;
}

/* The device: what it is, and whether it is new enough. */
static int rt_cu_device(RtCuda *c, int min_cc, char *err, size_t n)
{
	int count = 0, rc;
	if (rt_cu_check(c, c->api.cuDeviceGetCount(&count), "cuDeviceGetCount", err, n,
			RT_CUDA_ENODEV))
		return RT_CUDA_ENODEV;
	if (count < 1)
		return rt_cu_say(c, err, n, RT_CUDA_ENODEV,
				 "no CUDA device: the driver (%s, CUDA %d.%d) sees none", c->path,
				 c->version / 1000, c->version % 1000 / 10);
	if ((rc = rt_cu_pick(c, count, err, n)))
		return rc;
	int major = 0, minor = 0;
	if (RT_CU_CALL(c, cuDeviceGet, (&c->dev, c->ordinal), err, n) ||
	    RT_CU_CALL(c, cuDeviceGetName, (c->name, (int)sizeof c->name, c->dev), err, n) ||
	    RT_CU_CALL(c, cuDeviceGetAttribute,
		       (&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, c->dev), err, n) ||
	    RT_CU_CALL(c, cuDeviceGetAttribute,
		       (&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, c->dev), err, n))
		return RT_CUDA_EDRIVER;
	c->name[sizeof c->name - 1] = 0;
	c->cc = major * 10 + minor;
	if (c->cc < min_cc)
		return rt_cu_say(c, err, n, RT_CUDA_ENODEV,
				 "CUDA device %d (%s) has compute capability %d.%d, older than the "
				 "program's: it was built for sm_%d (compute capability %d.%d or newer)",
				 c->ordinal, c->name, major, minor, min_cc, min_cc / 10, min_cc % 10);
	size_t total = 0;
	if (RT_CU_CALL(c, cuDeviceTotalMem, (&total, c->dev), err, n))
		return RT_CUDA_EDRIVER;
	snprintf(c->desc, sizeof c->desc, "%s, compute capability %d.%d, %.1f GiB, driver %d.%d",
		 c->name, major, minor, rt_cu_gib(total), c->version / 1000, c->version % 1000 / 10);
	return 0;
}

/* The primary context, current; enough free memory; the stream. */
static int rt_cu_context(RtCuda *c, uint64_t need, char *err, size_t n)
{
	CUcontext ctx = NULL;
	if (RT_CU_CALL(c, cuDevicePrimaryCtxRetain, (&ctx, c->dev), err, n))
		return RT_CUDA_EDRIVER;
	c->ctx = ctx;
	if (rt_cu_bind(c, err, n))
		return RT_CUDA_EDRIVER;
	size_t free_b = 0, total = 0;
	if (RT_CU_CALL(c, cuMemGetInfo, (&free_b, &total), err, n))
		return RT_CUDA_EDRIVER;
	if (free_b < need)
		return rt_cu_say(c, err, n, RT_CUDA_ENODEV,
				 "CUDA device %d (%s) has too little memory: the program needs %.2f "
				 "GiB, %.2f GiB of %.2f GiB are free",
				 c->ordinal, c->name, rt_cu_gib(need), rt_cu_gib(free_b),
				 rt_cu_gib(total));
	return RT_CU_CALL(c, cuStreamCreate, (&c->stream, CU_STREAM_NON_BLOCKING), err, n);
}

/* ---- profile mode --------------------------------------------------------------- */

static double rt_cu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Remembers fn's name (once per function); out of memory only loses its row. */
static void rt_cu_prof_add(RtCuda *c, void *fn, const char *name)
{
	for (int i = 0; i < c->npk; i++)
		if (c->pk[i].fn == fn)
			return;
	if (c->npk == c->cap_pk) {
		int cap = c->cap_pk ? 2 * c->cap_pk : 64;
		RtCuProf *p = realloc(c->pk, (size_t)cap * sizeof *p);
		if (!p)
			return;
		c->pk = p;
		c->cap_pk = cap;
	}
	RtCuProf *k = &c->pk[c->npk++];
	memset(k, 0, sizeof *k);
	k->fn = fn;
	snprintf(k->name, sizeof k->name, "%s", name);
}

static RtCuProf *rt_cu_prof_find(RtCuda *c, void *fn)
{
	for (int i = 0; i < c->npk; i++)
		if (c->pk[i].fn == fn)
			return &c->pk[i];
	return NULL;
}

static int rt_cu_prof_cmp(const void *a, const void *b)
{
	double x = ((const RtCuProf *)a)->ns, y = ((const RtCuProf *)b)->ns;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The table, the most total time first: name, calls, mean and total. */
static void rt_cu_prof_print(RtCuda *c)
{
	qsort(c->pk, (size_t)c->npk, sizeof *c->pk, rt_cu_prof_cmp);
	double all = 0;
	for (int i = 0; i < c->npk; i++)
		all += c->pk[i].ns;
	fprintf(stderr, "bitnetc CUDA profile (%s): each launch synchronized and timed on the "
		"host (launch + run + sync)\n", c->desc[0] ? c->desc : "?");
	fprintf(stderr, "%-56s %10s %12s %12s %6s\n", "kernel", "calls", "mean_us", "total_ms",
		"share");
	for (int i = 0; i < c->npk; i++) {
		const RtCuProf *k = &c->pk[i];
		if (!k->calls)
			continue;
		fprintf(stderr, "%-56s %10llu %12.2f %12.3f %5.1f%%\n", k->name,
			(unsigned long long)k->calls, k->ns / 1e3 / (double)k->calls, k->ns / 1e6,
			all > 0 ? 100.0 * k->ns / all : 0.0);
	}
	fprintf(stderr, "%-56s %10s %12s %12.3f\n", "total", "", "", all / 1e6);
}

/* A launch in profile mode: the stream drained first, the time from the launch to the end
 * of the stream's work added to fn's row. */
static int rt_cu_prof_launch(RtCuda *c, void *fn, unsigned gx, unsigned gy, unsigned gz,
			     unsigned block, unsigned smem, void **params, CUresult *r)
{
	if (RT_CU_CALL(c, cuStreamSynchronize, (c->stream), NULL, 0))
		return RT_CUDA_EDRIVER;
	double t0 = rt_cu_now_ns();
	*r = c->api.cuLaunchKernel((CUfunction)fn, gx, gy, gz, block, 1, 1, smem, c->stream,
				   params, NULL);
	if (*r != CUDA_SUCCESS)
		return 0;
	if (RT_CU_CALL(c, cuStreamSynchronize, (c->stream), NULL, 0))
		return RT_CUDA_EDRIVER;
	RtCuProf *k = rt_cu_prof_find(c, fn);
	if (k) {
		k->calls++;
		k->ns += rt_cu_now_ns() - t0;
	}
	return 0;
}

int rt_cuda_profiling(const RtCuda *c)
{
	return c->prof;
}

int rt_cuda_open(int min_cc, uint64_t need_bytes, RtCuda **out, char *err, size_t n)
{
	*out = NULL;
	if (err && n)
		err[0] = 0;
	RtCuda *c = calloc(1, sizeof *c);
	if (!c)
		return rt_cu_say(NULL, err, n, RT_CUDA_EDRIVER, "rt_cuda_open: out of memory");
	const char *prof = getenv(RT_CUDA_ENV_PROFILE);
	c->prof = prof && *prof && strcmp(prof, "0") != 0;
	int rc = rt_cu_load(c, err, n);
	if (!rc && rt_cu_check(c, c->api.cuInit(0), "cuInit", NULL, 0, RT_CUDA_ENODEV))
		rc = rt_cu_say(c, err, n, RT_CUDA_ENODEV, "the CUDA driver (%s) did not start: %s",
			       c->path, c->err);
	if (!rc && c->api.cuDriverGetVersion(&c->version) != CUDA_SUCCESS)
		c->version = 0;
	if (!rc)
		rc = rt_cu_device(c, min_cc, err, n);
	if (!rc)
		rc = rt_cu_context(c, need_bytes, err, n);
	if (rc) {
		rt_cuda_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void rt_cuda_close(RtCuda *c)
{
	if (!c)
		return;
	if (c->prof)
		rt_cu_prof_print(c);
	free(c->pk);
	if (c->ctx && c->api.cuCtxSetCurrent(c->ctx) == CUDA_SUCCESS) {
		/* errors are ignored: after a sticky error every call fails, and all that is
		 * left to do is let go */
		if (c->capturing) {
			CUgraph g = NULL;
			if (c->api.cuStreamEndCapture(c->stream, &g) == CUDA_SUCCESS && g)
				c->api.cuGraphDestroy(g);
		}
		if (c->stream) {
			c->api.cuStreamSynchronize(c->stream);
			c->api.cuStreamDestroy(c->stream);
		}
		if (c->mod)
			c->api.cuModuleUnload(c->mod);
		c->api.cuCtxSetCurrent(NULL);
	}
	if (c->ctx)
		c->api.cuDevicePrimaryCtxRelease(c->dev);
	if (c->lib)
		dlclose(c->lib);
	free(c);
}

int rt_cuda_probe(int min_cc, uint64_t need_bytes, char *line, size_t n)
{
	RtCuda *c;
	int rc = rt_cuda_open(min_cc, need_bytes, &c, line, n);
	if (rc)
		return rc;
	if (line && n)
		snprintf(line, n, "%s", c->desc);
	rt_cuda_close(c);
	return 0;
}

const char *rt_cuda_describe(const RtCuda *c)
{
	return c->desc;
}

int rt_cuda_cc(const RtCuda *c)
{
	return c->cc;
}

int rt_cuda_mem_info(RtCuda *c, uint64_t *free_bytes, uint64_t *total_bytes)
{
	size_t f = 0, t = 0;
	int rc = rt_cu_bind(c, NULL, 0);
	if (!rc)
		rc = RT_CU_CALL(c, cuMemGetInfo, (&f, &t), NULL, 0);
	*free_bytes = f;
	*total_bytes = t;
	return rc;
}

const char *rt_cuda_error(const RtCuda *c)
{
	return c->err;
}

/* ---- code -------------------------------------------------------------------- */

/* The driver's JIT log as one line: newlines become "; ", trailing space goes. */
static void rt_cu_one_line(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		s[--n] = 0;
	for (char *p = s; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ';';
}

int rt_cuda_module(RtCuda *c, const char *ptx, const void *cubin, size_t cubin_n, int cubin_cc,
		   char *err, size_t n)
{
	if (c->mod)
		return rt_cu_say(c, err, n, RT_CUDA_EDRIVER, "rt_cuda_module: a module is loaded already");
	int rc = rt_cu_bind(c, err, n);
	if (rc)
		return rc;
	int use_cubin = cubin && cubin_n && cubin_cc == c->cc;
	if (use_cubin && c->api.cuModuleLoadDataEx(&c->mod, cubin, 0, NULL, NULL) == CUDA_SUCCESS)
		return 0;
	c->mod = NULL;
	if (!ptx) {
		if (use_cubin)
			return RT_CU_CALL(c, cuModuleLoadDataEx, (&c->mod, cubin, 0, NULL, NULL), err, n);
		return rt_cu_say(c, err, n, RT_CUDA_ENODEV,
				 "the program has no PTX and its machine code is for sm_%d, not this "
				 "device's sm_%d",
				 cubin_cc, c->cc);
	}
	char log[2048] = "";
	int opts[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
	void *vals[2] = {log, (void *)(uintptr_t)sizeof log};
	CUresult r = c->api.cuModuleLoadDataEx(&c->mod, ptx, 2, opts, vals);
	if (r == CUDA_SUCCESS)
		return 0;
	c->mod = NULL;
	char name[256];
	rt_cu_errname(c, r, name, sizeof name);
	log[sizeof log - 1] = 0;
	rt_cu_one_line(log);
	return rt_cu_say(c, err, n, RT_CUDA_EDRIVER, "cuModuleLoadDataEx (PTX for sm_%d): %s%s%s",
			 c->cc, name, log[0] ? ": " : "", log);
}

int rt_cuda_func(RtCuda *c, const char *name, void **fn, char *err, size_t n)
{
	*fn = NULL;
	if (!c->mod)
		return rt_cu_say(c, err, n, RT_CUDA_EDRIVER, "rt_cuda_func %s: no module loaded", name);
	int rc = rt_cu_bind(c, err, n);
	if (rc)
		return rc;
	CUfunction f = NULL;
	CUresult r = c->api.cuModuleGetFunction(&f, c->mod, name);
	if (r != CUDA_SUCCESS) {
		char en[256];
		rt_cu_errname(c, r, en, sizeof en);
		return rt_cu_say(c, err, n, RT_CUDA_EDRIVER, "cuModuleGetFunction %s: %s", name, en);
	}
	*fn = f;
	if (c->prof)
		rt_cu_prof_add(c, f, name);
	return 0;
}

int rt_cuda_func_smem(RtCuda *c, void *fn, unsigned bytes, char *err, size_t n)
{
	int rc = rt_cu_bind(c, err, n);
	return rc ? rc
		  : RT_CU_CALL(c, cuFuncSetAttribute,
			       ((CUfunction)fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
				(int)bytes),
			       err, n);
}

/* ---- memory and synchronous copies ------------------------------------------ */

int rt_cuda_alloc(RtCuda *c, uint64_t bytes, RtDevPtr *p, char *err, size_t n)
{
	*p = 0;
	if (!bytes)
		return 0;
	CUdeviceptr d = 0;
	int rc = rt_cu_bind(c, err, n);
	if (!rc)
		rc = RT_CU_CALL(c, cuMemAlloc, (&d, bytes), NULL, 0);
	if (rc)
		return rt_cu_say(c, err, n, rc, "%s (%.2f GiB)", c->err, rt_cu_gib(bytes));
	*p = d;
	return 0;
}

void rt_cuda_free(RtCuda *c, RtDevPtr p)
{
	if (p && !rt_cu_bind(c, NULL, 0))
		c->api.cuMemFree(p);
}

/* Not while the stream records: the synchronize would end the capture. */
static int rt_cu_not_capturing(RtCuda *c, const char *what, char *err, size_t n)
{
	if (!c->capturing)
		return 0;
	return rt_cu_say(c, err, n, RT_CUDA_EDRIVER, "%s: not allowed while the stream is captured",
			 what);
}

int rt_cuda_upload(RtCuda *c, RtDevPtr dst, const void *src, uint64_t n, RtCudaProgress progress,
		   void *ud, char *err, size_t en)
{
	int rc = rt_cu_not_capturing(c, "rt_cuda_upload", err, en);
	if (!rc)
		rc = rt_cu_bind(c, err, en);
	for (uint64_t done = 0; !rc && done < n;) {
		uint64_t k = n - done < RT_CU_CHUNK ? n - done : RT_CU_CHUNK;
		rc = RT_CU_CALL(c, cuMemcpyHtoDAsync,
				(dst + done, (const char *)src + done, k, c->stream), err, en);
		if (!rc)
			rc = RT_CU_CALL(c, cuStreamSynchronize, (c->stream), err, en);
		done += k;
		if (!rc && progress)
			progress(done, n, ud);
	}
	return rc;
}

int rt_cuda_download(RtCuda *c, void *dst, RtDevPtr src, uint64_t n, char *err, size_t en)
{
	int rc = rt_cu_not_capturing(c, "rt_cuda_download", err, en);
	if (!rc)
		rc = rt_cu_bind(c, err, en);
	if (!rc && n)
		rc = RT_CU_CALL(c, cuMemcpyDtoHAsync, (dst, src, n, c->stream), err, en);
	if (!rc)
		rc = RT_CU_CALL(c, cuStreamSynchronize, (c->stream), err, en);
	return rc;
}

/* ---- the stream --------------------------------------------------------------- */

int rt_cuda_upload_async(RtCuda *c, RtDevPtr dst, const void *src, uint64_t n)
{
	int rc = rt_cu_bind(c, NULL, 0);
	return rc || !n ? rc : RT_CU_CALL(c, cuMemcpyHtoDAsync, (dst, src, n, c->stream), NULL, 0);
}

int rt_cuda_download_async(RtCuda *c, void *dst, RtDevPtr src, uint64_t n)
{
	int rc = rt_cu_bind(c, NULL, 0);
	return rc || !n ? rc : RT_CU_CALL(c, cuMemcpyDtoHAsync, (dst, src, n, c->stream), NULL, 0);
}

int rt_cuda_memset_async(RtCuda *c, RtDevPtr dst, unsigned char value, uint64_t n)
{
	int rc = rt_cu_bind(c, NULL, 0);
	return rc || !n ? rc : RT_CU_CALL(c, cuMemsetD8Async, (dst, value, n, c->stream), NULL, 0);
}

int rt_cuda_launch(RtCuda *c, void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned block,
		   unsigned smem, void **params)
{
	int rc = rt_cu_bind(c, NULL, 0);
	if (rc)
		return rc;
	CUresult r;
	if (c->prof) {
		if ((rc = rt_cu_prof_launch(c, fn, gx, gy, gz, block, smem, params, &r)))
			return rc;
	} else {
		r = c->api.cuLaunchKernel((CUfunction)fn, gx, gy, gz, block, 1, 1, smem, c->stream,
					  params, NULL);
	}
	if (r == CUDA_SUCCESS)
		return 0;
	char name[256];
	rt_cu_errname(c, r, name, sizeof name);
	return rt_cu_say(c, NULL, 0, RT_CUDA_EDRIVER,
			 "cuLaunchKernel (grid %ux%ux%u, block %u, %u bytes shared): %s", gx, gy,
			 gz, block, smem, name);
}

int rt_cuda_sync(RtCuda *c, char *err, size_t n)
{
	int rc = rt_cu_bind(c, err, n);
	return rc ? rc : RT_CU_CALL(c, cuStreamSynchronize, (c->stream), err, n);
}

/* ---- graphs ------------------------------------------------------------------- */

int rt_cuda_has_graphs(const RtCuda *c)
{
	return c->graphs;
}

int rt_cuda_capture_begin(RtCuda *c)
{
	if (c->prof)
		return rt_cu_say(c, NULL, 0, RT_CUDA_ENOTSUP,
				 "no graphs in profile mode ($" RT_CUDA_ENV_PROFILE "): each launch "
				 "is timed by itself");
	if (!c->graphs)
		return rt_cu_say(c, NULL, 0, RT_CUDA_ENOTSUP,
				 "the CUDA driver (%s, CUDA %d.%d) has no graphs (CUDA 11.4 or newer "
				 "has them)",
				 c->path, c->version / 1000, c->version % 1000 / 10);
	if (c->capturing)
		return rt_cu_say(c, NULL, 0, RT_CUDA_EDRIVER, "rt_cuda_capture_begin: already capturing");
	int rc = rt_cu_bind(c, NULL, 0);
	if (!rc)
		rc = RT_CU_CALL(c, cuStreamBeginCapture,
				(c->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), NULL, 0);
	c->capturing = !rc;
	return rc;
}

int rt_cuda_capture_end(RtCuda *c, void **exec)
{
	*exec = NULL;
	if (!c->capturing)
		return rt_cu_say(c, NULL, 0, RT_CUDA_EDRIVER, "rt_cuda_capture_end: not capturing");
	CUgraph g = NULL;
	CUgraphExec e = NULL;
	int rc = rt_cu_bind(c, NULL, 0);
	if (!rc)
		rc = RT_CU_CALL(c, cuStreamEndCapture, (c->stream, &g), NULL, 0);
	c->capturing = 0;
	if (!rc)
		rc = RT_CU_CALL(c, cuGraphInstantiateWithFlags, (&e, g, 0), NULL, 0);
	if (g)
		c->api.cuGraphDestroy(g); /* the executable graph does not need it */
	if (!rc)
		*exec = e;
	return rc;
}

int rt_cuda_graph_launch(RtCuda *c, void *exec)
{
	int rc = rt_cu_bind(c, NULL, 0);
	return rc ? rc : RT_CU_CALL(c, cuGraphLaunch, ((CUgraphExec)exec, c->stream), NULL, 0);
}

void rt_cuda_graph_free(RtCuda *c, void *exec)
{
	if (exec && !rt_cu_bind(c, NULL, 0))
		c->api.cuGraphExecDestroy((CUgraphExec)exec);
}

/* ---- page-locked host memory ---------------------------------------------------- */

void *rt_cuda_host_alloc(RtCuda *c, size_t n)
{
	void *p = NULL;
	if (rt_cu_bind(c, NULL, 0) ||
	    RT_CU_CALL(c, cuMemAllocHost, (&p, n ? n : 1), NULL, 0))
		return NULL;
	return p;
}

void rt_cuda_host_free(RtCuda *c, void *p)
{
	if (p && !rt_cu_bind(c, NULL, 0))
		c->api.cuMemFreeHost(p);
}
