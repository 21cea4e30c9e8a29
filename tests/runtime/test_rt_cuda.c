/* test_rt_cuda.c - the program's CUDA runtime (runtime/rt_cuda.c) without a GPU: the driver
 * library missing or not a driver, then (when the build has the fake driver of tests/simt,
 * BN_FAKE_CUDA_PATH) opening and describing the device, every reason for "no usable
 * device" through the fake's knobs, memory, copies with progress, streams, graphs, kernels
 * (rt_cuda_kernels.c) launched directly and from a graph, a failing kernel's sticky error,
 * two RtCuda open at once, in one thread and in two, and profile mode
 * ($BITNETC_CUDA_PROFILE: per-kernel times, no graphs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rt_cuda.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every knob this test sets, cleared before each test. */
static void clear_env(void)
{
	static const char *const vars[] = {
		RT_CUDA_ENV_LIB,         RT_CUDA_ENV_DEVICE,  "BN_FAKE_CUDA_DEVICES",
		"BN_FAKE_CUDA_CC",       "BN_FAKE_CUDA_MEM",  "BN_FAKE_CUDA_INIT_FAIL",
		"BN_FAKE_CUDA_NAME",     "BN_FAKE_CUDA_KERNELS", RT_CUDA_ENV_PROFILE,
	};
	for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
		unsetenv(vars[i]);
}

static int setup(void **state)
{
	(void)state;
	clear_env();
	return 0;
}

static void expect_has(const char *s, const char *frag)
{
	if (!strstr(s, frag))
		fail_msg("\"%s\" lacks \"%s\"", s, frag);
}

/* rt_cuda_open must refuse with RT_CUDA_ENODEV; its message, which rt_cuda_probe gives
 * too, contains every fragment. */
static void expect_nodev(int min_cc, uint64_t need, const char *const *frags, int n_frags)
{
	char err[1024] = "x", line[1024] = "";
	RtCuda *c = (RtCuda *)&err; /* must be cleared */
	assert_int_equal(rt_cuda_open(min_cc, need, &c, err, sizeof err), RT_CUDA_ENODEV);
	assert_null(c);
	assert_null(strchr(err, '\n'));
	for (int i = 0; i < n_frags; i++)
		expect_has(err, frags[i]);
	assert_int_equal(rt_cuda_probe(min_cc, need, line, sizeof line), RT_CUDA_ENODEV);
	assert_string_equal(line, err);
}

/* ---- without a driver -------------------------------------------------------- */

static void test_no_driver(void **state)
{
	(void)state;
	setenv(RT_CUDA_ENV_LIB, "/nonexistent/libcuda.so.1", 1);
	const char *frags[] = {"no CUDA driver", "/nonexistent/libcuda.so.1", "$BITNETC_LIBCUDA"};
	expect_nodev(80, 0, frags, 3);
	/* a short buffer still gets a terminated prefix, and none at all is fine */
	char small[8];
	RtCuda *c;
	assert_int_equal(rt_cuda_open(80, 0, &c, small, sizeof small), RT_CUDA_ENODEV);
	assert_int_equal(strlen(small), 7);
	assert_int_equal(rt_cuda_open(80, 0, &c, NULL, 0), RT_CUDA_ENODEV);
	assert_int_equal(rt_cuda_probe(80, 0, NULL, 0), RT_CUDA_ENODEV);
}

/* A library that loads but is no driver: the first missing function is named. */
static void test_not_a_driver(void **state)
{
	(void)state;
	setenv(RT_CUDA_ENV_LIB, "libm.so.6", 1);
	const char *frags[] = {"no usable CUDA driver", "libm.so.6", "lacks cuInit"};
	expect_nodev(80, 0, frags, 3);
}

/* ---- against the fake driver --------------------------------------------------- */

/* cmocka's skip() with the reason printed first. */
#define skip_msg(why)                         \
	do {                                  \
		fprintf(stderr, "%s\n", why); \
		skip();                       \
	} while (0)

/* The tests below run against the fake driver, or are skipped saying why. */
#ifdef BN_FAKE_CUDA_PATH
#define NEED_FAKE() setenv(RT_CUDA_ENV_LIB, BN_FAKE_CUDA_PATH, 1)
#else
#define NEED_FAKE() \
	skip_msg("skipped: no fake CUDA driver in this build (the bn_fake_cuda target of tests/simt)")
#endif

static RtCuda *open_fake(int min_cc, uint64_t need)
{
	char err[1024];
	RtCuda *c = NULL;
	int rc = rt_cuda_open(min_cc, need, &c, err, sizeof err);
	if (rc)
		fail_msg("rt_cuda_open: %d: %s", rc, err);
	return c;
}

static void test_open_describe(void **state)
{
	(void)state;
	NEED_FAKE();
	RtCuda *c = open_fake(80, 1 << 20);
	assert_string_equal(rt_cuda_describe(c),
			    "bitnetc SIMT emulator, compute capability 9.0, 16.0 GiB, driver 12.8");
	assert_int_equal(rt_cuda_cc(c), 90);
	assert_true(rt_cuda_has_graphs(c));
	assert_string_equal(rt_cuda_error(c), "");
	uint64_t fr = 0, total = 0;
	assert_int_equal(rt_cuda_mem_info(c, &fr, &total), 0);
	assert_true(total == (uint64_t)16 << 30);
	assert_true(fr > 0 && fr <= total);
	char line[512];
	assert_int_equal(rt_cuda_probe(80, 0, line, sizeof line), 0);
	assert_string_equal(line, rt_cuda_describe(c));
	rt_cuda_close(c);
	rt_cuda_close(NULL);
	/* the name and the device index */
	setenv("BN_FAKE_CUDA_NAME", "Fake A100", 1);
	setenv("BN_FAKE_CUDA_CC", "80", 1);
	setenv("BN_FAKE_CUDA_DEVICES", "2", 1);
	setenv(RT_CUDA_ENV_DEVICE, "1", 1);
	c = open_fake(80, 0);
	assert_string_equal(rt_cuda_describe(c),
			    "Fake A100, compute capability 8.0, 16.0 GiB, driver 12.8");
	rt_cuda_close(c);
}

static void test_bad_device_index(void **state)
{
	(void)state;
	NEED_FAKE();
	const char *frags[] = {"$BITNETC_CUDA_DEVICE=", "names no CUDA device", "has 1: 0 to 0"};
	setenv(RT_CUDA_ENV_DEVICE, "1", 1);
	expect_nodev(80, 0, frags, 3);
	setenv(RT_CUDA_ENV_DEVICE, "x", 1);
	expect_nodev(80, 0, frags, 3);
	setenv(RT_CUDA_ENV_DEVICE, "-1", 1);
	expect_nodev(80, 0, frags, 3);
}

static void test_cc_too_old(void **state)
{
	(void)state;
	NEED_FAKE();
	setenv("BN_FAKE_CUDA_CC", "75", 1);
	const char *frags[] = {"CUDA device 0 (bitnetc SIMT emulator)", "compute capability 7.5",
			       "built for sm_80"};
	expect_nodev(80, 0, frags, 3);
	/* new enough for a program built for sm_75 */
	rt_cuda_close(open_fake(75, 0));
}

static void test_too_little_memory(void **state)
{
	(void)state;
	NEED_FAKE();
	setenv("BN_FAKE_CUDA_MEM", "1073741824", 1); /* 1 GiB */
	const char *frags[] = {"too little memory", "needs 2.00 GiB", "of 1.00 GiB are free"};
	expect_nodev(80, (uint64_t)2 << 30, frags, 3);
	RtCuda *c = open_fake(80, (uint64_t)1 << 29);
	/* and an allocation beyond it: the call, the driver's error name, the size */
	char err[512];
	RtDevPtr p = 1;
	assert_int_equal(rt_cuda_alloc(c, (uint64_t)2 << 30, &p, err, sizeof err), RT_CUDA_EDRIVER);
	assert_true(p == 0);
	expect_has(err, "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY");
	expect_has(err, "(2.00 GiB)");
	assert_string_equal(rt_cuda_error(c), err);
	rt_cuda_close(c);
}

static void test_no_device(void **state)
{
	(void)state;
	NEED_FAKE();
	setenv("BN_FAKE_CUDA_DEVICES", "0", 1);
	const char *frags[] = {"no CUDA device", "sees none"};
	expect_nodev(80, 0, frags, 2);
}

static void test_init_fails(void **state)
{
	(void)state;
	NEED_FAKE();
	setenv("BN_FAKE_CUDA_INIT_FAIL", "1", 1);
	const char *frags[] = {"did not start", "cuInit: CUDA_ERROR_NO_DEVICE"};
	expect_nodev(80, 0, frags, 2);
}

/* Progress as an upload reports it. */
typedef struct {
	int calls;
	uint64_t last_done, total;
} Progress;

static void on_progress(uint64_t done, uint64_t total, void *ud)
{
	Progress *p = ud;
	if (done <= p->last_done || done > total)
		fail_msg("progress went from %llu to %llu of %llu", (unsigned long long)p->last_done,
			 (unsigned long long)done, (unsigned long long)total);
	p->calls++;
	p->last_done = done;
	p->total = total;
}

/* More than one 64 MiB chunk up, all of it back, byte for byte. */
static void test_round_trip(void **state)
{
	(void)state;
	NEED_FAKE();
	RtCuda *c = open_fake(80, 0);
	const uint64_t n = ((uint64_t)64 << 20) + 4097;
	unsigned char *src = malloc(n), *dst = malloc(n);
	assert_non_null(src);
	assert_non_null(dst);
	for (uint64_t i = 0; i < n; i++)
		src[i] = (unsigned char)(i * 7 + (i >> 13));
	memset(dst, 0, n);
	char err[512];
	RtDevPtr p = 0;
	assert_int_equal(rt_cuda_alloc(c, n, &p, err, sizeof err), 0);
	assert_true(p != 0);
	Progress pr = {0};
	assert_int_equal(rt_cuda_upload(c, p, src, n, on_progress, &pr, err, sizeof err), 0);
	assert_int_equal(pr.calls, 2);
	assert_true(pr.last_done == n && pr.total == n);
	assert_int_equal(rt_cuda_upload(c, p, src, 0, on_progress, &pr, err, sizeof err), 0);
	assert_int_equal(pr.calls, 2); /* nothing to copy, nothing to report */
	assert_int_equal(rt_cuda_download(c, dst, p, n, err, sizeof err), 0);
	assert_memory_equal(src, dst, n);
	/* a part, without progress */
	assert_int_equal(rt_cuda_upload(c, p + 10, src + 100, 50, NULL, NULL, err, sizeof err), 0);
	assert_int_equal(rt_cuda_download(c, dst, p + 10, 50, err, sizeof err), 0);
	assert_memory_equal(dst, src + 100, 50);
	rt_cuda_free(c, p);
	rt_cuda_free(c, 0);
	/* zero bytes is no allocation */
	assert_int_equal(rt_cuda_alloc(c, 0, &p, err, sizeof err), 0);
	assert_true(p == 0);
	free(src);
	free(dst);
	rt_cuda_close(c);
}

/* Copies and memset queued on the stream, through page-locked host memory. */
static void test_async(void **state)
{
	(void)state;
	NEED_FAKE();
	RtCuda *c = open_fake(80, 0);
	char err[512];
	unsigned char *h = rt_cuda_host_alloc(c, 4096);
	assert_non_null(h);
	for (int i = 0; i < 4096; i++)
		h[i] = (unsigned char)i;
	RtDevPtr p;
	assert_int_equal(rt_cuda_alloc(c, 4096, &p, err, sizeof err), 0);
	assert_int_equal(rt_cuda_upload_async(c, p, h, 4096), 0);
	assert_int_equal(rt_cuda_memset_async(c, p + 100, 0xEE, 28), 0);
	assert_int_equal(rt_cuda_sync(c, err, sizeof err), 0);
	memset(h, 0, 4096);
	assert_int_equal(rt_cuda_download_async(c, h, p, 4096), 0);
	assert_int_equal(rt_cuda_sync(c, err, sizeof err), 0);
	for (int i = 0; i < 4096; i++)
		if (h[i] != (i >= 100 && i < 128 ? 0xEE : (unsigned char)i))
			fail_msg("byte %d is %d", i, h[i]);
	rt_cuda_host_free(c, h);
	rt_cuda_host_free(c, NULL);
	rt_cuda_free(c, p);
	rt_cuda_close(c);
}

/* Work recorded into a graph runs when the graph is launched, each time, not before. */
static void test_graph(void **state)
{
	(void)state;
	NEED_FAKE();
	RtCuda *c = open_fake(80, 0);
	char err[512];
	RtDevPtr p;
	unsigned char buf[64], zero[64] = {0};
	assert_int_equal(rt_cuda_alloc(c, 64, &p, err, sizeof err), 0);
	assert_int_equal(rt_cuda_upload(c, p, zero, 64, NULL, NULL, err, sizeof err), 0);
	void *exec = NULL;
	assert_int_equal(rt_cuda_capture_end(c, &exec), RT_CUDA_EDRIVER); /* not capturing */
	expect_has(rt_cuda_error(c), "not capturing");
	assert_int_equal(rt_cuda_capture_begin(c), 0);
	assert_int_equal(rt_cuda_capture_begin(c), RT_CUDA_EDRIVER);
	assert_int_equal(rt_cuda_memset_async(c, p, 0x11, 32), 0);
	/* the synchronous copies would end the capture: refused */
	assert_int_equal(rt_cuda_download(c, buf, p, 64, err, sizeof err), RT_CUDA_EDRIVER);
	expect_has(err, "while the stream is captured");
	assert_int_equal(rt_cuda_capture_end(c, &exec), 0);
	assert_non_null(exec);
	assert_int_equal(rt_cuda_download(c, buf, p, 64, err, sizeof err), 0);
	assert_memory_equal(buf, zero, 64); /* recorded, not run */
	for (int rep = 0; rep < 2; rep++) {
		assert_int_equal(rt_cuda_upload(c, p, zero, 64, NULL, NULL, err, sizeof err), 0);
		assert_int_equal(rt_cuda_graph_launch(c, exec), 0);
		assert_int_equal(rt_cuda_download(c, buf, p, 64, err, sizeof err), 0);
		for (int i = 0; i < 64; i++)
			assert_int_equal(buf[i], i < 32 ? 0x11 : 0);
	}
	rt_cuda_graph_free(c, exec);
	rt_cuda_graph_free(c, NULL);
	rt_cuda_free(c, p);
	/* a capture left open is ended by close */
	assert_int_equal(rt_cuda_capture_begin(c), 0);
	rt_cuda_close(c);
}

/* The module and its kernels: errors name the call, the kernel and the driver's error. */
static void test_module_errors(void **state)
{
	(void)state;
	NEED_FAKE();
	RtCuda *c = open_fake(80, 0);
	char err[512];
	void *fn = (void *)&err;
	assert_int_equal(rt_cuda_func(c, "k", &fn, err, sizeof err), RT_CUDA_EDRIVER);
	assert_null(fn);
	expect_has(err, "rt_cuda_func k: no module loaded");
	/* no kernels for the fake to load ($BN_FAKE_CUDA_KERNELS unset) */
	assert_int_equal(rt_cuda_module(c, ".version 8.0\n", NULL, 0, 0, err, sizeof err),
			 RT_CUDA_EDRIVER);
	expect_has(err, "cuModuleLoadDataEx (PTX for sm_90): CUDA_ERROR_INVALID_IMAGE");
	assert_null(strchr(err, '\n'));
	/* a cubin for another device and no PTX */
	static const unsigned char cubin[16] = {0x7f, 'E', 'L', 'F'};
	assert_int_equal(rt_cuda_module(c, NULL, cubin, sizeof cubin, 80, err, sizeof err),
			 RT_CUDA_ENODEV);
	expect_has(err, "no PTX and its machine code is for sm_80, not this device's sm_90");
	rt_cuda_close(c);
}

/* Kernels of rt_cuda_kernels.c launched directly and from a graph, then one that fails:
 * the error is sticky until the context is let go. */
static void test_launch(void **state)
{
	(void)state;
	NEED_FAKE();
#ifndef BN_RT_CUDA_KERNELS
	skip_msg("skipped: no kernels library for the fake driver in this build");
#else
	setenv("BN_FAKE_CUDA_KERNELS", BN_RT_CUDA_KERNELS, 1);
	RtCuda *c = open_fake(80, 0);
	char err[512];
	const char *ptx = "// the fake driver loads $BN_FAKE_CUDA_KERNELS instead\n";
	assert_int_equal(rt_cuda_module(c, ptx, NULL, 0, 0, err, sizeof err), 0);
	assert_int_equal(rt_cuda_module(c, ptx, NULL, 0, 0, err, sizeof err), RT_CUDA_EDRIVER);
	expect_has(err, "a module is loaded already");
	void *fill = NULL, *bad = NULL, *none = &err;
	assert_int_equal(rt_cuda_func(c, "rt_cuda_test_fill", &fill, err, sizeof err), 0);
	assert_int_equal(rt_cuda_func(c, "rt_cuda_test_bad", &bad, err, sizeof err), 0);
	assert_int_equal(rt_cuda_func(c, "no_such_kernel", &none, err, sizeof err), RT_CUDA_EDRIVER);
	assert_null(none);
	expect_has(err, "cuModuleGetFunction no_such_kernel: CUDA_ERROR_NOT_FOUND");
	assert_int_equal(rt_cuda_func_smem(c, fill, 64 << 10, err, sizeof err), 0);

	enum { N = 1000 };
	int32_t out[N];
	RtDevPtr p;
	assert_int_equal(rt_cuda_alloc(c, sizeof out, &p, err, sizeof err), 0);
	uint64_t ptr = p;
	int32_t base = 100, n = N;
	void *params[] = {&ptr, &base, &n};
	assert_int_equal(rt_cuda_launch(c, fill, 4, 1, 1, 256, 0, params), 0);
	assert_int_equal(rt_cuda_sync(c, err, sizeof err), 0);
	assert_int_equal(rt_cuda_download(c, out, p, sizeof out, err, sizeof err), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(out[i], 100 + i);
	/* recorded: the parameters are those at the launch, not at the replay */
	void *exec = NULL;
	assert_int_equal(rt_cuda_capture_begin(c), 0);
	base = 7;
	assert_int_equal(rt_cuda_launch(c, fill, 4, 1, 1, 256, 32 << 10, params), 0);
	base = 9999;
	assert_int_equal(rt_cuda_capture_end(c, &exec), 0);
	assert_int_equal(rt_cuda_memset_async(c, p, 0, sizeof out), 0);
	assert_int_equal(rt_cuda_graph_launch(c, exec), 0);
	assert_int_equal(rt_cuda_download(c, out, p, sizeof out, err, sizeof err), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(out[i], 7 + i);
	rt_cuda_graph_free(c, exec);

	/* a kernel that fails (the emulator's deadlock, a fault on a GPU): every later call
	 * says so, nothing crashes */
	assert_int_equal(rt_cuda_launch(c, bad, 1, 1, 1, 32, 0, NULL), RT_CUDA_EDRIVER);
	expect_has(rt_cuda_error(c), "cuLaunchKernel (grid 1x1x1, block 32, 0 bytes shared): "
				     "CUDA_ERROR_LAUNCH_FAILED");
	assert_int_equal(rt_cuda_sync(c, err, sizeof err), RT_CUDA_EDRIVER);
	expect_has(err, "cuStreamSynchronize: CUDA_ERROR_LAUNCH_FAILED");
	assert_int_equal(rt_cuda_launch(c, fill, 4, 1, 1, 256, 0, params), RT_CUDA_EDRIVER);
	RtDevPtr q = 1;
	assert_int_equal(rt_cuda_alloc(c, 64, &q, err, sizeof err), RT_CUDA_EDRIVER);
	assert_true(q == 0);
	assert_int_equal(rt_cuda_download(c, out, p, sizeof out, err, sizeof err), RT_CUDA_EDRIVER);
	rt_cuda_free(c, p);
	rt_cuda_close(c);
	/* once the context is let go, the device works again */
	c = open_fake(80, 0);
	assert_int_equal(rt_cuda_alloc(c, 64, &q, err, sizeof err), 0);
	rt_cuda_free(c, q);
	rt_cuda_close(c);
#endif
}

/* Profile mode: graphs refused, launches still run, and rt_cuda_close prints one row per
 * launched kernel with its count (stderr captured in a temporary file). "0" is off. */
static void test_profile(void **state)
{
	(void)state;
	NEED_FAKE();
#ifndef BN_RT_CUDA_KERNELS
	skip_msg("skipped: no kernels library for the fake driver in this build");
#else
	setenv("BN_FAKE_CUDA_KERNELS", BN_RT_CUDA_KERNELS, 1);
	setenv(RT_CUDA_ENV_PROFILE, "0", 1);
	RtCuda *c = open_fake(80, 0);
	assert_false(rt_cuda_profiling(c));
	rt_cuda_close(c);
	setenv(RT_CUDA_ENV_PROFILE, "1", 1);
	c = open_fake(80, 0);
	assert_true(rt_cuda_profiling(c));
	char err[512];
	assert_int_equal(rt_cuda_module(c, "// fake\n", NULL, 0, 0, err, sizeof err), 0);
	void *fill = NULL, *bad = NULL;
	assert_int_equal(rt_cuda_func(c, "rt_cuda_test_fill", &fill, err, sizeof err), 0);
	assert_int_equal(rt_cuda_func(c, "rt_cuda_test_fill", &fill, err, sizeof err), 0);
	assert_int_equal(rt_cuda_func(c, "rt_cuda_test_bad", &bad, err, sizeof err), 0);
	assert_int_equal(rt_cuda_capture_begin(c), RT_CUDA_ENOTSUP);
	expect_has(rt_cuda_error(c), "no graphs in profile mode");
	enum { N = 300 };
	int32_t out[N];
	RtDevPtr p;
	assert_int_equal(rt_cuda_alloc(c, sizeof out, &p, err, sizeof err), 0);
	uint64_t ptr = p;
	int32_t base = 5, n = N;
	void *params[] = {&ptr, &base, &n};
	for (int i = 0; i < 3; i++)
		assert_int_equal(rt_cuda_launch(c, fill, 2, 1, 1, 256, 0, params), 0);
	assert_int_equal(rt_cuda_download(c, out, p, sizeof out, err, sizeof err), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(out[i], 5 + i);
	rt_cuda_free(c, p);

	char path[] = "/tmp/test_rt_cuda_profXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	assert_true(saved >= 0);
	assert_true(dup2(fd, 2) == 2);
	rt_cuda_close(c);
	fflush(stderr);
	assert_true(dup2(saved, 2) == 2);
	close(saved);
	char text[4096] = {0};
	assert_true(lseek(fd, 0, SEEK_SET) == 0);
	ssize_t got = read(fd, text, sizeof text - 1);
	close(fd);
	unlink(path);
	assert_true(got > 0);
	expect_has(text, "bitnetc CUDA profile");
	expect_has(text, "mean_us");
	/* one row for fill with 3 calls; none for bad, which never ran */
	const char *row = strstr(text, "\nrt_cuda_test_fill ");
	assert_non_null(row);
	unsigned long long calls = 0;
	double mean = -1;
	assert_int_equal(sscanf(row + 1, "rt_cuda_test_fill %llu %lf", &calls, &mean), 2);
	assert_int_equal(calls, 3);
	assert_true(mean > 0);
	assert_null(strstr(text, "rt_cuda_test_bad"));
#endif
}

/* Two RtCuda at once in one process: both hold the primary context, each its own stream
 * and memory, and closing one leaves the other working. */
static void test_two_open(void **state)
{
	(void)state;
	NEED_FAKE();
	RtCuda *a = open_fake(80, 0), *b = open_fake(80, 0);
	char err[512];
	RtDevPtr pa, pb;
	unsigned char x[256], y[256];
	for (int i = 0; i < 256; i++)
		x[i] = (unsigned char)(255 - i);
	assert_int_equal(rt_cuda_alloc(a, 256, &pa, err, sizeof err), 0);
	assert_int_equal(rt_cuda_alloc(b, 256, &pb, err, sizeof err), 0);
	assert_int_equal(rt_cuda_upload(a, pa, x, 256, NULL, NULL, err, sizeof err), 0);
	assert_int_equal(rt_cuda_memset_async(b, pb, 7, 256), 0);
	rt_cuda_free(a, pa);
	rt_cuda_close(a);
	assert_int_equal(rt_cuda_sync(b, err, sizeof err), 0);
	assert_int_equal(rt_cuda_download(b, y, pb, 256, err, sizeof err), 0);
	for (int i = 0; i < 256; i++)
		assert_int_equal(y[i], 7);
	rt_cuda_free(b, pb);
	rt_cuda_close(b);
}

/* One thread's work for test_two_threads: its own RtCuda, opened and closed again and
 * again, with copies of its own bytes. NULL, or what went wrong. */
static void *thread_job(void *arg)
{
	static char why[2][640];
	int id = *(int *)arg;
	enum { N = 1 << 16 };
	unsigned char *x = malloc(N), *y = malloc(N);
	const char *bad = x && y ? NULL : "out of memory";
	for (int rep = 0; rep < 20 && !bad; rep++) {
		RtCuda *c = NULL;
		RtDevPtr p = 0;
		char err[512] = "";
		for (int i = 0; i < N; i++)
			x[i] = (unsigned char)(i * (id + 3) + rep);
		if (rt_cuda_open(80, 0, &c, err, sizeof err) || rt_cuda_alloc(c, N, &p, err, sizeof err) ||
		    rt_cuda_upload(c, p, x, N, NULL, NULL, err, sizeof err) ||
		    rt_cuda_memset_async(c, p, (unsigned char)id, 100) ||
		    rt_cuda_download(c, y, p, N, err, sizeof err))
			bad = err[0] ? err : rt_cuda_error(c);
		memset(x, id, 100);
		if (!bad && memcmp(x, y, N))
			bad = "the bytes came back different";
		if (bad) {
			snprintf(why[id], sizeof why[id], "thread %d: %.600s", id, bad);
			bad = why[id];
		}
		rt_cuda_free(c, p);
		rt_cuda_close(c);
	}
	free(x);
	free(y);
	return (void *)bad;
}

/* Two threads, each with its RtCuda, at the same time. */
static void test_two_threads(void **state)
{
	(void)state;
	NEED_FAKE();
	pthread_t t[2];
	int ids[2] = {0, 1};
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, thread_job, &ids[i]), 0);
	void *why[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], &why[i]), 0);
	for (int i = 0; i < 2; i++)
		if (why[i])
			fail_msg("%s", (const char *)why[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_no_driver, setup),
		cmocka_unit_test_setup(test_not_a_driver, setup),
		cmocka_unit_test_setup(test_open_describe, setup),
		cmocka_unit_test_setup(test_bad_device_index, setup),
		cmocka_unit_test_setup(test_cc_too_old, setup),
		cmocka_unit_test_setup(test_too_little_memory, setup),
		cmocka_unit_test_setup(test_no_device, setup),
		cmocka_unit_test_setup(test_init_fails, setup),
		cmocka_unit_test_setup(test_round_trip, setup),
		cmocka_unit_test_setup(test_async, setup),
		cmocka_unit_test_setup(test_graph, setup),
		cmocka_unit_test_setup(test_profile, setup),
		cmocka_unit_test_setup(test_module_errors, setup),
		cmocka_unit_test_setup(test_launch, setup),
		cmocka_unit_test_setup(test_two_open, setup),
		cmocka_unit_test_setup(test_two_threads, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
