/* rt_cuda.h - the CUDA driver as a program built for a cuda-* target uses it: loads
 * libcuda.so.1 at run time (dlopen; nothing links CUDA, and no cuda.h is needed), picks and
 * checks the device, and wraps the driver calls the generated model.c makes (memory,
 * copies, the module and its kernels, launches, stream capture into graphs).
 *
 * Only device programs compile rt_cuda.c (with -ldl); CPU programs never do. C11, usable
 * from generated C. Every failure is a status (RT_CUDA_*) and one line naming the driver
 * call and the driver's error name ("cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (out of
 * memory)"), written into the caller's err buffer where there is one and always kept as
 * rt_cuda_error(c). After a sticky error (a kernel that faulted) every later call returns
 * its code; nothing aborts.
 *
 * Threads: an RtCuda is used by one thread at a time, but any thread (each call makes the
 * device's context current in the calling thread). Several RtCuda may be open in one
 * process, in one thread or several: they share the device's primary context and each has
 * its own stream. */
#ifndef BITNETC_RT_CUDA_H
#define BITNETC_RT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes (0: success). RT_CUDA_ENODEV has the value of rt_model.h's RT_INIT_DEVICE,
 * so a model's init can return what rt_cuda_open returned. */
#define RT_CUDA_EDRIVER (-1) /* a driver call failed (or host memory ran out) */
#define RT_CUDA_ENODEV (-2)  /* no usable device: no driver, no device, too old, too small */
#define RT_CUDA_ENOTSUP (-3) /* the driver lacks an optional feature (graphs) */

/* The environment: the driver library's path (default libcuda.so.1; for tests and unusual
 * installs) and the device's index (default 0). */
#define RT_CUDA_ENV_LIB "BITNETC_LIBCUDA"
#define RT_CUDA_ENV_DEVICE "BITNETC_CUDA_DEVICE"
/* Profile mode (set and not "0"): each launch synchronized and timed on the host per kernel
 * name, graphs refused (RT_CUDA_ENOTSUP), the table printed to stderr by rt_cuda_close. */
#define RT_CUDA_ENV_PROFILE "BITNETC_CUDA_PROFILE"

typedef struct RtCuda RtCuda;
typedef unsigned long long RtDevPtr; /* a device address (CUdeviceptr) */

/* Called after each chunk of an upload: done of total bytes copied. */
typedef void (*RtCudaProgress)(uint64_t done, uint64_t total, void *ud);

/* ---- the device ------------------------------------------------------------- */

/* Loads the driver, initializes it, picks device $BITNETC_CUDA_DEVICE (default 0), checks
 * that its compute capability (major * 10 + minor) is at least min_cc and that it has at
 * least need_bytes free, makes its primary context current and creates the stream every
 * asynchronous call below runs on. 0 and *out, or RT_CUDA_ENODEV with one line in err
 * saying which: no driver (the path and dlopen's message), a library that lacks a driver
 * function, cuInit failed (the driver's error name), no device, a bad
 * $BITNETC_CUDA_DEVICE, a compute capability older than the program's (built for sm_NN),
 * too little memory (need X GiB, Y free); RT_CUDA_EDRIVER for another failed call. */
int rt_cuda_open(int min_cc, uint64_t need_bytes, RtCuda **out, char *err, size_t n);
/* Waits for the stream, then releases everything the RtCuda holds (its module, stream and
 * its hold on the primary context). Allocations not freed go with the context once no
 * RtCuda holds it. NULL: nothing. */
void rt_cuda_close(RtCuda *c);
/* What rt_cuda_open would find, without keeping anything open: 0 with the device's
 * description (rt_cuda_describe) in line, or RT_CUDA_ENODEV with why in line. For the
 * model's device_info (the program's --info). */
int rt_cuda_probe(int min_cc, uint64_t need_bytes, char *line, size_t n);
/* "NVIDIA H100 80GB HBM3, compute capability 9.0, 79.1 GiB, driver 12.8" */
const char *rt_cuda_describe(const RtCuda *c);
/* The device's compute capability, major * 10 + minor (90). */
int rt_cuda_cc(const RtCuda *c);
/* Free and total device memory now, in bytes. 0 or RT_CUDA_EDRIVER. */
int rt_cuda_mem_info(RtCuda *c, uint64_t *free_bytes, uint64_t *total_bytes);
/* The message of the last failed call on c ("" if none). */
const char *rt_cuda_error(const RtCuda *c);

/* ---- code ------------------------------------------------------------------- */

/* Loads the program's kernels, one module per RtCuda: the cubin when one is given
 * (cubin_n > 0) and built for exactly this device's compute capability (cubin_cc), else
 * the PTX (NUL-terminated; compiled by the driver, whose error log goes into err). 0,
 * RT_CUDA_EDRIVER, or RT_CUDA_ENODEV when there is no PTX and the cubin is for another
 * device. */
int rt_cuda_module(RtCuda *c, const char *ptx, const void *cubin, size_t cubin_n, int cubin_cc,
		   char *err, size_t n);
/* The kernel called name in the module: *fn (a CUfunction) for rt_cuda_launch. */
int rt_cuda_func(RtCuda *c, const char *name, void **fn, char *err, size_t n);
/* Lets fn use up to bytes of dynamic shared memory per block (needed above 48 KiB). */
int rt_cuda_func_smem(RtCuda *c, void *fn, unsigned bytes, char *err, size_t n);

/* ---- memory and synchronous copies ----------------------------------------- */

/* bytes of device memory (*p 0 for bytes 0). 0 or RT_CUDA_EDRIVER (out of memory). */
int rt_cuda_alloc(RtCuda *c, uint64_t bytes, RtDevPtr *p, char *err, size_t n);
/* Frees what rt_cuda_alloc gave (0: nothing); errors are ignored (a sticky error). */
void rt_cuda_free(RtCuda *c, RtDevPtr p);
/* Copies n bytes to the device and returns when they are there, after the work queued on
 * the stream before it; in chunks, calling progress(done, n, ud) after each when progress
 * is not NULL. Not while the stream is being captured. */
int rt_cuda_upload(RtCuda *c, RtDevPtr dst, const void *src, uint64_t n, RtCudaProgress progress,
		   void *ud, char *err, size_t en);
/* Copies n bytes from the device once the work queued on the stream has run. */
int rt_cuda_download(RtCuda *c, void *dst, RtDevPtr src, uint64_t n, char *err, size_t en);

/* ---- the stream: queued in order, returns at once ------------------------- */

/* Copies and memset on the stream (src and dst must stay valid until rt_cuda_sync; host
 * memory from rt_cuda_host_alloc makes them truly asynchronous). 0 or RT_CUDA_EDRIVER,
 * the message in rt_cuda_error. */
int rt_cuda_upload_async(RtCuda *c, RtDevPtr dst, const void *src, uint64_t n);
int rt_cuda_download_async(RtCuda *c, void *dst, RtDevPtr src, uint64_t n);
int rt_cuda_memset_async(RtCuda *c, RtDevPtr dst, unsigned char value, uint64_t n);
/* Launches fn on a grid of gx x gy x gz blocks of block threads (1-D) with smem bytes of
 * dynamic shared memory; params[i] points at the value of the kernel's parameter i. 0 or
 * RT_CUDA_EDRIVER, the message in rt_cuda_error. */
int rt_cuda_launch(RtCuda *c, void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned block,
		   unsigned smem, void **params);
/* Waits until everything queued on the stream has run: 0, or RT_CUDA_EDRIVER with the
 * first error of the queued work (a faulting kernel's, say). */
int rt_cuda_sync(RtCuda *c, char *err, size_t n);

/* ---- graphs: a sequence of stream work recorded once, replayed in one call ----- */

/* Whether the driver has the graph functions (else capture_begin says RT_CUDA_ENOTSUP and
 * the caller launches directly). */
int rt_cuda_has_graphs(const RtCuda *c);
/* Whether $BITNETC_CUDA_PROFILE turned profile mode on for c. */
int rt_cuda_profiling(const RtCuda *c);
/* Starts recording the stream: until rt_cuda_capture_end, launches, async copies and
 * memsets are recorded, not run (the synchronous calls are not allowed). 0,
 * RT_CUDA_ENOTSUP or RT_CUDA_EDRIVER. */
int rt_cuda_capture_begin(RtCuda *c);
/* Ends the recording into *exec, an executable graph for rt_cuda_graph_launch. Kernel
 * parameters are copied when recorded, device memory is read when replayed. */
int rt_cuda_capture_end(RtCuda *c, void **exec);
/* Queues the recorded work on the stream. 0 or RT_CUDA_EDRIVER. */
int rt_cuda_graph_launch(RtCuda *c, void *exec);
void rt_cuda_graph_free(RtCuda *c, void *exec); /* NULL: nothing */

/* ---- page-locked host memory (for asynchronous copies) --------------------- */

/* n bytes, or NULL with the message in rt_cuda_error. */
void *rt_cuda_host_alloc(RtCuda *c, size_t n);
void rt_cuda_host_free(RtCuda *c, void *p); /* NULL: nothing */

#ifdef __cplusplus
}
#endif

#endif
