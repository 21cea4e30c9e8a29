/* test_fake_cuda.c - the fake CUDA driver (libbn_fake_cuda.so) through dlopen, as the program's
 * runtime meets it: initialization, devices and attributes, the environment knobs, memory,
 * modules from $BN_FAKE_CUDA_KERNELS (the hand-written kernels of fake_cuda_kernels.c),
 * launches, sticky launch failures, and stream capture into graphs that are replayed. */
#include "testutil.h"
#include "cuda_api.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#ifndef BN_FAKE_CUDA_PATH
#error "BN_FAKE_CUDA_PATH: the path of libbn_fake_cuda.so (tests/CMakeLists.txt)"
#endif
#ifndef BN_FAKE_CUDA_KERNELS_PATH
#error "BN_FAKE_CUDA_KERNELS_PATH: the path of the test kernels (tests/CMakeLists.txt)"
#endif

/* The entry points, resolved by name from the fake. ORDER CU_FNS */
#define CU_FNS(X)                                                                         \
	X(cuInit) X(cuDriverGetVersion) X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName)  \
	X(cuDeviceGetAttribute) X(cuDeviceTotalMem_v2) X(cuDevicePrimaryCtxRetain)             \
	X(cuDevicePrimaryCtxRelease_v2) X(cuCtxSetCurrent) X(cuCtxSynchronize)                 \
	X(cuMemGetInfo_v2) X(cuModuleLoadDataEx) X(cuModuleUnload) X(cuModuleGetFunction)      \
	X(cuFuncSetAttribute) X(cuMemAlloc_v2) X(cuMemFree_v2) X(cuMemcpyHtoD_v2)              \
	X(cuMemcpyDtoH_v2) X(cuMemcpyHtoDAsync_v2) X(cuMemcpyDtoHAsync_v2) X(cuMemsetD8Async)  \
	X(cuMemAllocHost_v2) X(cuMemFreeHost) X(cuStreamCreate) X(cuStreamDestroy_v2)          \
	X(cuStreamSynchronize) X(cuLaunchKernel) X(cuStreamBeginCapture_v2)                    \
	X(cuStreamEndCapture) X(cuGraphInstantiateWithFlags) X(cuGraphLaunch)                  \
	X(cuGraphExecDestroy) X(cuGraphDestroy) X(cuGetErrorName) X(cuGetErrorString)

static struct {
#define CU_FIELD(f) __typeof__(f) *f;
	CU_FNS(CU_FIELD)
#undef CU_FIELD
} cu;
static void *cu_dl;

static const char *const knobs[] = {"BN_FAKE_CUDA_DEVICES", "BN_FAKE_CUDA_CC", "BN_FAKE_CUDA_MEM",
				    "BN_FAKE_CUDA_NAME", "BN_FAKE_CUDA_INIT_FAIL"};

static void knobs_clear(void)
{
	for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++)
		unsetenv(knobs[i]);
	setenv("BN_FAKE_CUDA_KERNELS", BN_FAKE_CUDA_KERNELS_PATH, 1);
}

static int load_fake(void **state)
{
	(void)state;
	cu_dl = dlopen(BN_FAKE_CUDA_PATH, RTLD_NOW | RTLD_LOCAL);
	if (!cu_dl) {
		fprintf(stderr, "dlopen %s: %s\n", BN_FAKE_CUDA_PATH, dlerror());
		return -1;
	}
#define CU_LOAD(f)                                                     \
	{                                                              \
		void *sym = dlsym(cu_dl, #f);                          \
		if (!sym) {                                            \
			fprintf(stderr, "%s: no %s\n", BN_FAKE_CUDA_PATH, #f); \
			return -1;                                     \
		}                                                      \
		memcpy(&cu.f, &sym, sizeof sym);                       \
	}
	CU_FNS(CU_LOAD)
#undef CU_LOAD
	return 0;
}

static int unload_fake(void **state)
{
	(void)state;
	return cu_dl ? dlclose(cu_dl) : 0;
}

#define CU_OK(call) assert_int_equal((call), CUDA_SUCCESS)

static CUdevice dev0;

/* cuInit with the knobs as they are, device 0's primary context current. */
static void ctx_open(void)
{
	CU_OK(cu.cuInit(0));
	CUcontext ctx = NULL;
	CU_OK(cu.cuDeviceGet(&dev0, 0));
	CU_OK(cu.cuDevicePrimaryCtxRetain(&ctx, dev0));
	assert_non_null(ctx);
	CU_OK(cu.cuCtxSetCurrent(ctx));
}

/* Releases the context: whatever a test left in it goes with it. */
static void ctx_close(void)
{
	CU_OK(cu.cuDevicePrimaryCtxRelease_v2(dev0));
	CU_OK(cu.cuCtxSetCurrent(NULL));
}

static int fresh(void **state)
{
	(void)state;
	knobs_clear();
	ctx_open();
	return 0;
}

static int done(void **state)
{
	(void)state;
	ctx_close();
	knobs_clear();
	return 0;
}

static int attr(int a)
{
	int v = -1;
	CU_OK(cu.cuDeviceGetAttribute(&v, a, dev0));
	return v;
}

static void test_init_devices_attributes(void **state)
{
	(void)state;
	knobs_clear();
	int v = 0, n = -1;
	CU_OK(cu.cuDriverGetVersion(&v));
	assert_int_equal(v, 12080);
	setenv("BN_FAKE_CUDA_INIT_FAIL", "1", 1);
	assert_int_equal(cu.cuInit(0), CUDA_ERROR_NO_DEVICE);
	assert_int_equal(cu.cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
	unsetenv("BN_FAKE_CUDA_INIT_FAIL");
	assert_int_equal(cu.cuInit(1), CUDA_ERROR_INVALID_VALUE);
	CU_OK(cu.cuInit(0));
	CU_OK(cu.cuDeviceGetCount(&n));
	assert_int_equal(n, 1);
	CUdevice d = -1;
	CU_OK(cu.cuDeviceGet(&d, 0));
	assert_int_equal(d, 0);
	assert_int_equal(cu.cuDeviceGet(&d, 1), CUDA_ERROR_INVALID_DEVICE);
	char name[64];
	CU_OK(cu.cuDeviceGetName(name, sizeof name, 0));
	assert_string_equal(name, "bitnetc SIMT emulator");
	CU_OK(cu.cuDeviceGetName(name, 8, 0));
	assert_string_equal(name, "bitnetc");
	dev0 = 0;
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), 9);
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR), 0);
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK), 1024);
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_WARP_SIZE), 32);
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN), 227 * 1024);
	assert_true(attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT) > 0);
	assert_true(attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE) > 0);
	assert_true(attr(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE) > 0);
	assert_true(attr(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH) > 0);
	assert_int_equal(cu.cuDeviceGetAttribute(&v, 100000, 0), CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(cu.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 3),
			 CUDA_ERROR_INVALID_DEVICE);
	size_t total = 0;
	CU_OK(cu.cuDeviceTotalMem_v2(&total, 0));
	assert_true(total == (size_t)16 << 30);
}

static void test_error_names(void **state)
{
	(void)state;
	const char *s = NULL;
	CU_OK(cu.cuGetErrorName(CUDA_ERROR_NO_DEVICE, &s));
	assert_string_equal(s, "CUDA_ERROR_NO_DEVICE");
	CU_OK(cu.cuGetErrorName(CUDA_ERROR_LAUNCH_FAILED, &s));
	assert_string_equal(s, "CUDA_ERROR_LAUNCH_FAILED");
	CU_OK(cu.cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &s));
	assert_string_equal(s, "CUDA_ERROR_OUT_OF_MEMORY");
	CU_OK(cu.cuGetErrorName(CUDA_SUCCESS, &s));
	assert_string_equal(s, "CUDA_SUCCESS");
	CU_OK(cu.cuGetErrorString(CUDA_ERROR_OUT_OF_MEMORY, &s));
	assert_string_equal(s, "out of memory");
	assert_int_equal(cu.cuGetErrorName(12345, &s), CUDA_ERROR_INVALID_VALUE);
	assert_null(s);
	assert_int_equal(cu.cuGetErrorString(12345, &s), CUDA_ERROR_INVALID_VALUE);
}

static void test_env_knobs(void **state)
{
	(void)state;
	int n = -1;
	CUdevice d;
	knobs_clear();
	setenv("BN_FAKE_CUDA_DEVICES", "0", 1);
	CU_OK(cu.cuInit(0));
	CU_OK(cu.cuDeviceGetCount(&n));
	assert_int_equal(n, 0);
	assert_int_equal(cu.cuDeviceGet(&d, 0), CUDA_ERROR_INVALID_DEVICE);
	setenv("BN_FAKE_CUDA_DEVICES", "3", 1);
	CU_OK(cu.cuInit(0));
	CU_OK(cu.cuDeviceGetCount(&n));
	assert_int_equal(n, 3);
	CU_OK(cu.cuDeviceGet(&d, 2));
	setenv("BN_FAKE_CUDA_DEVICES", "many", 1);
	assert_int_equal(cu.cuInit(0), CUDA_ERROR_INVALID_VALUE);
	unsetenv("BN_FAKE_CUDA_DEVICES");

	setenv("BN_FAKE_CUDA_CC", "86", 1);
	setenv("BN_FAKE_CUDA_NAME", "NVIDIA Fake 86", 1);
	CU_OK(cu.cuInit(0));
	dev0 = 0;
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), 8);
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR), 6);
	char name[64];
	CU_OK(cu.cuDeviceGetName(name, sizeof name, 0));
	assert_string_equal(name, "NVIDIA Fake 86");
	setenv("BN_FAKE_CUDA_CC", "80", 1);
	CU_OK(cu.cuInit(0));
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), 8);
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR), 0);
	assert_int_equal(attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN), 163 * 1024);

	/* 1 MiB of device memory */
	knobs_clear();
	setenv("BN_FAKE_CUDA_MEM", "1m", 1);
	ctx_open();
	size_t total = 0, free_ = 0;
	CU_OK(cu.cuDeviceTotalMem_v2(&total, dev0));
	assert_true(total == 1 << 20);
	CUdeviceptr a = 0, b = 0;
	assert_int_equal(cu.cuMemAlloc_v2(&a, 2 << 20), CUDA_ERROR_OUT_OF_MEMORY);
	CU_OK(cu.cuMemAlloc_v2(&a, 512 << 10));
	CU_OK(cu.cuMemGetInfo_v2(&free_, &total));
	assert_true(free_ == 512 << 10 && total == 1 << 20);
	assert_int_equal(cu.cuMemAlloc_v2(&b, 600 << 10), CUDA_ERROR_OUT_OF_MEMORY);
	CU_OK(cu.cuMemFree_v2(a));
	CU_OK(cu.cuMemAlloc_v2(&b, 600 << 10));
	CU_OK(cu.cuMemFree_v2(b));
	ctx_close();
	knobs_clear();
}

static void test_no_context(void **state)
{
	(void)state;
	knobs_clear();
	CU_OK(cu.cuInit(0));
	CU_OK(cu.cuCtxSetCurrent(NULL));
	CUdeviceptr p;
	assert_int_equal(cu.cuMemAlloc_v2(&p, 16), CUDA_ERROR_INVALID_CONTEXT);
	assert_int_equal(cu.cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
	assert_int_equal(cu.cuCtxSetCurrent((CUcontext)&p), CUDA_ERROR_INVALID_CONTEXT);
	assert_int_equal(cu.cuDevicePrimaryCtxRelease_v2(0), CUDA_ERROR_INVALID_CONTEXT);
}

static void test_memcpy_round_trip(void **state)
{
	(void)state;
	enum { N = 10000 };
	unsigned char *src = malloc(N), *dst = malloc(N), *pinned = NULL;
	for (int i = 0; i < N; i++)
		src[i] = (unsigned char)(i * 7 + 3);
	CUdeviceptr d = 0;
	CU_OK(cu.cuMemAlloc_v2(&d, N));
	assert_int_equal(d % 256, 0);
	CU_OK(cu.cuMemcpyHtoD_v2(d, src, N));
	memset(dst, 0, N);
	CU_OK(cu.cuMemcpyDtoH_v2(dst, d, N));
	assert_memory_equal(src, dst, N);
	/* on a stream, through page-locked host memory, with a memset in the middle */
	CUstream s = NULL;
	CU_OK(cu.cuStreamCreate(&s, 0));
	CU_OK(cu.cuMemAllocHost_v2((void **)&pinned, N));
	CU_OK(cu.cuMemsetD8Async(d + 100, 0x5c, 50, s));
	CU_OK(cu.cuMemcpyDtoHAsync_v2(pinned, d, N, s));
	CU_OK(cu.cuStreamSynchronize(s));
	for (int i = 0; i < N; i++)
		assert_int_equal(pinned[i], i >= 100 && i < 150 ? 0x5c : src[i]);
	CU_OK(cu.cuMemcpyHtoDAsync_v2(d + 1, src, N - 1, s));
	CU_OK(cu.cuMemcpyDtoH_v2(dst, d + 1, N - 1));
	assert_memory_equal(src, dst, N - 1);
	/* outside the allocation, unknown pointers, empty allocations */
	assert_int_equal(cu.cuMemcpyHtoD_v2(d + 1, src, N), CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(cu.cuMemcpyDtoH_v2(dst, d - 16, 32), CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(cu.cuMemFree_v2(d + 8), CUDA_ERROR_INVALID_VALUE);
	CUdeviceptr z;
	assert_int_equal(cu.cuMemAlloc_v2(&z, 0), CUDA_ERROR_INVALID_VALUE);
	CU_OK(cu.cuMemFreeHost(pinned));
	assert_int_equal(cu.cuMemFreeHost(pinned), CUDA_ERROR_INVALID_VALUE);
	CU_OK(cu.cuStreamDestroy_v2(s));
	CU_OK(cu.cuMemFree_v2(d));
	assert_int_equal(cu.cuMemFree_v2(d), CUDA_ERROR_INVALID_VALUE);
	free(src);
	free(dst);
}

static const char ptx[] = "//\n.version 8.0\n.target sm_90\n.address_size 64\n";

static void test_module_load(void **state)
{
	(void)state;
	CUmodule m = NULL;
	char log[512] = "untouched";
	CUjit_option opt[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
	void *val[2] = {log, (void *)(uintptr_t)sizeof log};
	unsetenv("BN_FAKE_CUDA_KERNELS");
	assert_int_equal(cu.cuModuleLoadDataEx(&m, ptx, 2, opt, val), CUDA_ERROR_INVALID_IMAGE);
	tu_expect_has(log, "BN_FAKE_CUDA_KERNELS is not set");
	assert_int_equal((size_t)(uintptr_t)val[1], strlen(log) + 1);
	setenv("BN_FAKE_CUDA_KERNELS", "/nonexistent/kernels.so", 1);
	val[1] = (void *)(uintptr_t)sizeof log;
	assert_int_equal(cu.cuModuleLoadDataEx(&m, ptx, 2, opt, val), CUDA_ERROR_INVALID_IMAGE);
	tu_expect_has(log, "/nonexistent/kernels.so");
	setenv("BN_FAKE_CUDA_KERNELS", BN_FAKE_CUDA_KERNELS_PATH, 1);
	assert_int_equal(cu.cuModuleLoadDataEx(&m, NULL, 0, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
	CU_OK(cu.cuModuleLoadDataEx(&m, ptx, 0, NULL, NULL));
	CUfunction f = NULL, g = NULL;
	CU_OK(cu.cuModuleGetFunction(&f, m, "k_axpy"));
	CU_OK(cu.cuModuleGetFunction(&g, m, "k_axpy"));
	assert_ptr_equal(f, g);
	CU_OK(cu.cuModuleGetFunction(&g, m, "k_block_sum"));
	assert_ptr_not_equal(f, g);
	assert_int_equal(cu.cuModuleGetFunction(&g, m, "k_missing"), CUDA_ERROR_NOT_FOUND);
	CU_OK(cu.cuModuleUnload(m));
	assert_int_equal(cu.cuModuleUnload(m), CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(cu.cuModuleGetFunction(&g, m, "k_axpy"), CUDA_ERROR_INVALID_HANDLE);
}

static CUfunction func(CUmodule *m, const char *name)
{
	if (!*m)
		CU_OK(cu.cuModuleLoadDataEx(m, ptx, 0, NULL, NULL));
	CUfunction f = NULL;
	CU_OK(cu.cuModuleGetFunction(&f, *m, name));
	return f;
}

static CUdeviceptr upload(const void *p, size_t n)
{
	CUdeviceptr d = 0;
	CU_OK(cu.cuMemAlloc_v2(&d, n));
	CU_OK(cu.cuMemcpyHtoD_v2(d, p, n));
	return d;
}

static void test_launch(void **state)
{
	(void)state;
	enum { N = 1000 };
	CUmodule m = NULL;
	CUfunction axpy = func(&m, "k_axpy"), sum = func(&m, "k_block_sum");
	uint32_t x[N], y[N], out[N];
	for (uint32_t i = 0; i < N; i++) {
		x[i] = i * 3 + 1;
		y[i] = 1000 - i;
	}
	CUdeviceptr dx = upload(x, sizeof x), dy = upload(y, sizeof y), dsum = upload(y, 4 * 4);
	uint32_t a = 5, n = N;
	void *params[] = {&dy, &dx, &a, &n};
	CU_OK(cu.cuLaunchKernel(axpy, (N + 255) / 256, 1, 1, 256, 1, 1, 0, NULL, params, NULL));
	CU_OK(cu.cuCtxSynchronize());
	CU_OK(cu.cuMemcpyDtoH_v2(out, dy, sizeof out));
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(out[i], 5 * x[i] + y[i]);
	/* a reduction with shuffles and shared memory, 4 blocks of 256 */
	void *sparams[] = {&dx, &dsum, &n};
	CU_OK(cu.cuLaunchKernel(sum, 4, 1, 1, 256, 1, 1, 8 * 4, NULL, sparams, NULL));
	CU_OK(cu.cuMemcpyDtoH_v2(out, dsum, 4 * 4));
	for (uint32_t b = 0; b < 4; b++) {
		uint32_t want = 0;
		for (uint32_t i = b * 256; i < (b + 1) * 256 && i < N; i++)
			want += x[i];
		assert_int_equal(out[b], want);
	}
	/* bad launches */
	assert_int_equal(cu.cuLaunchKernel(axpy, 1, 1, 1, 2048, 1, 1, 0, NULL, params, NULL),
			 CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(cu.cuLaunchKernel(axpy, 0, 1, 1, 32, 1, 1, 0, NULL, params, NULL),
			 CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(cu.cuLaunchKernel(axpy, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL),
			 CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(cu.cuLaunchKernel((CUfunction)&a, 1, 1, 1, 32, 1, 1, 0, NULL, params, NULL),
			 CUDA_ERROR_INVALID_HANDLE);
	CU_OK(cu.cuMemFree_v2(dx));
	CU_OK(cu.cuMemFree_v2(dy));
	CU_OK(cu.cuMemFree_v2(dsum));
	CU_OK(cu.cuModuleUnload(m));
}

/* More than 48 KiB of dynamic shared memory needs the function's attribute raised first, up to
 * the device's opt-in limit. */
static void test_shared_memory_limit(void **state)
{
	(void)state;
	CUmodule m = NULL;
	CUfunction f = func(&m, "k_smem_ends");
	uint8_t got[2] = {0, 0};
	CUdeviceptr d = upload(got, 2);
	uint32_t bytes = 100 << 10;
	void *params[] = {&d, &bytes};
	assert_int_equal(cu.cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, bytes, NULL, params, NULL),
			 CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(cu.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
					       228 << 10), CUDA_ERROR_INVALID_VALUE);
	CU_OK(cu.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)bytes));
	CU_OK(cu.cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, bytes, NULL, params, NULL));
	CU_OK(cu.cuMemcpyDtoH_v2(got, d, 2));
	assert_int_equal(got[0], 1);
	assert_int_equal(got[1], 2);
	assert_int_equal(cu.cuFuncSetAttribute(f, 12345, 0), CUDA_ERROR_INVALID_VALUE);
}

/* A kernel that deadlocks fails its launch; the context's error sticks until it is released. */
static void test_launch_failure_sticks(void **state)
{
	(void)state;
	CUmodule m = NULL;
	CUfunction f = func(&m, "k_deadlock");
	CUdeviceptr d = 0;
	CU_OK(cu.cuMemAlloc_v2(&d, 64));
	assert_int_equal(cu.cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL),
			 CUDA_ERROR_LAUNCH_FAILED);
	assert_int_equal(cu.cuCtxSynchronize(), CUDA_ERROR_LAUNCH_FAILED);
	CUdeviceptr e = 0;
	assert_int_equal(cu.cuMemAlloc_v2(&e, 64), CUDA_ERROR_LAUNCH_FAILED);
	assert_int_equal(cu.cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL),
			 CUDA_ERROR_LAUNCH_FAILED);
	assert_int_equal(cu.cuMemFree_v2(d), CUDA_ERROR_LAUNCH_FAILED); /* freed all the same */
	assert_int_equal(cu.cuMemFree_v2(d), CUDA_ERROR_INVALID_VALUE);
	/* a fresh context works again */
	ctx_close();
	ctx_open();
	CU_OK(cu.cuMemAlloc_v2(&e, 64));
	CU_OK(cu.cuMemFree_v2(e));
}

/* A capture of an upload, two memsets, two launches and a download, replayed with new input:
 * nothing runs while capturing, parameters are the values at capture time, and every replay
 * starts again from the memsets. */
static void test_capture_and_replay(void **state)
{
	(void)state;
	enum { N = 700 };
	CUmodule m = NULL;
	CUfunction axpy = func(&m, "k_axpy");
	uint32_t *in = malloc(N * 4), *res = malloc(N * 4), sentinel[N];
	for (uint32_t i = 0; i < N; i++) {
		in[i] = i + 1;
		sentinel[i] = 77;
	}
	memset(res, 0, N * 4);
	CUdeviceptr dx = upload(sentinel, sizeof sentinel), dy = upload(sentinel, sizeof sentinel);
	CUdeviceptr dz = upload(sentinel, sizeof sentinel);
	CUstream s = NULL;
	CU_OK(cu.cuStreamCreate(&s, 0));
	uint32_t a1 = 3, a2 = 2, n = N;
	void *p1[] = {&dy, &dx, &a1, &n}, *p2[] = {&dz, &dy, &a2, &n};
	CU_OK(cu.cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CU_OK(cu.cuMemcpyHtoDAsync_v2(dx, in, N * 4, s));
	CU_OK(cu.cuMemsetD8Async(dy, 0, N * 4, s));
	CU_OK(cu.cuMemsetD8Async(dz, 0, N * 4, s));
	CU_OK(cu.cuLaunchKernel(axpy, (N + 127) / 128, 1, 1, 128, 1, 1, 0, s, p1, NULL));
	CU_OK(cu.cuLaunchKernel(axpy, (N + 127) / 128, 1, 1, 128, 1, 1, 0, s, p2, NULL));
	CU_OK(cu.cuMemcpyDtoHAsync_v2(res, dz, N * 4, s));
	CUgraph g = NULL;
	CU_OK(cu.cuStreamEndCapture(s, &g));
	assert_non_null(g);
	/* nothing ran */
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(res[i], 0);
	uint32_t back[N];
	CU_OK(cu.cuMemcpyDtoH_v2(back, dy, sizeof back));
	assert_memory_equal(back, sentinel, sizeof back);
	a1 = 1000; /* the graph keeps the values of capture time */
	CUgraphExec e = NULL;
	CU_OK(cu.cuGraphInstantiateWithFlags(&e, g, 0));
	CU_OK(cu.cuGraphDestroy(g)); /* the executable graph is a copy */
	for (int round = 0; round < 3; round++) {
		for (uint32_t i = 0; i < N; i++)
			in[i] = i * (uint32_t)(round + 1) + 5;
		CU_OK(cu.cuGraphLaunch(e, s));
		CU_OK(cu.cuStreamSynchronize(s));
		for (uint32_t i = 0; i < N; i++)
			if (res[i] != 2 * 3 * in[i])
				fail_msg("round %d element %u: %u, want %u", round, i, res[i], 6 * in[i]);
	}
	CU_OK(cu.cuGraphExecDestroy(e));
	assert_int_equal(cu.cuGraphExecDestroy(e), CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(cu.cuGraphLaunch(e, s), CUDA_ERROR_INVALID_HANDLE);
	CU_OK(cu.cuStreamDestroy_v2(s));
	free(in);
	free(res);
}

/* What a capture forbids, and how it ends then. */
static void test_capture_rules(void **state)
{
	(void)state;
	CUmodule m = NULL;
	CUfunction nometa = func(&m, "k_nometa"), axpy = func(&m, "k_axpy");
	CUstream s = NULL;
	CUgraph g = (CUgraph)&s;
	CUdeviceptr d = 0, e = 0;
	CU_OK(cu.cuMemAlloc_v2(&d, 4 * 32));
	CU_OK(cu.cuStreamCreate(&s, 0));
	assert_int_equal(cu.cuStreamBeginCapture_v2(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL),
			 CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	assert_int_equal(cu.cuStreamEndCapture(s, &g), CUDA_ERROR_ILLEGAL_STATE);
	/* an allocation during a global capture invalidates it */
	CU_OK(cu.cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	assert_int_equal(cu.cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL),
			 CUDA_ERROR_ILLEGAL_STATE);
	assert_int_equal(cu.cuMemAlloc_v2(&e, 64), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	assert_int_equal(cu.cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	assert_null(g);
	/* so does work on the default stream, or synchronizing the capturing stream */
	uint32_t one = 1, n = 32;
	void *params[] = {&d, &d, &one, &n};
	CU_OK(cu.cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	assert_int_equal(cu.cuLaunchKernel(axpy, 1, 1, 1, 32, 1, 1, 0, NULL, params, NULL),
			 CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
	assert_int_equal(cu.cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	CU_OK(cu.cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	assert_int_equal(cu.cuStreamSynchronize(s), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	assert_int_equal(cu.cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	/* a kernel without its parameter sizes cannot be captured */
	void *nparams[] = {&d};
	CU_OK(cu.cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	assert_int_equal(cu.cuLaunchKernel(nometa, 1, 1, 1, 32, 1, 1, 0, s, nparams, NULL),
			 CUDA_ERROR_NOT_SUPPORTED);
	assert_int_equal(cu.cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	/* but runs outside one */
	CU_OK(cu.cuMemsetD8Async(d, 0, 4 * 32, s));
	CU_OK(cu.cuLaunchKernel(nometa, 1, 1, 1, 32, 1, 1, 0, s, nparams, NULL));
	uint32_t got[32];
	CU_OK(cu.cuMemcpyDtoH_v2(got, d, sizeof got));
	for (int i = 0; i < 32; i++)
		assert_int_equal(got[i], 1);
	/* a relaxed capture allows allocations; an empty graph replays to nothing */
	CU_OK(cu.cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CU_OK(cu.cuMemAlloc_v2(&e, 64));
	CU_OK(cu.cuStreamEndCapture(s, &g));
	CUgraphExec x = NULL;
	CU_OK(cu.cuGraphInstantiateWithFlags(&x, g, 0));
	CU_OK(cu.cuGraphLaunch(x, s));
	CU_OK(cu.cuMemFree_v2(e));
	/* graphs, execs, streams and memory left behind go with the context (done()) */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_devices_attributes),
		cmocka_unit_test(test_error_names),
		cmocka_unit_test(test_env_knobs),
		cmocka_unit_test(test_no_context),
		cmocka_unit_test_setup_teardown(test_memcpy_round_trip, fresh, done),
		cmocka_unit_test_setup_teardown(test_module_load, fresh, done),
		cmocka_unit_test_setup_teardown(test_launch, fresh, done),
		cmocka_unit_test_setup_teardown(test_shared_memory_limit, fresh, done),
		cmocka_unit_test_setup_teardown(test_launch_failure_sticks, fresh, done),
		cmocka_unit_test_setup_teardown(test_capture_and_replay, fresh, done),
		cmocka_unit_test_setup_teardown(test_capture_rules, fresh, done),
	};
	return cmocka_run_group_tests(tests, load_fake, unload_fake);
}
