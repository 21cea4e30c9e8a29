/* rt_metal.h - the Metal runtime as a program built for --target metal uses it: the device
 * and its queue, the kernels' library (a metallib built in, else the MSL source compiled at
 * start) and a pipeline per kernel, buffers, and the launches the generated model.c encodes
 * in the graph's order. The same calls, with the same signatures, as the subset of
 * rt_cuda.h that model.c makes (the CUDA and Metal backends write the same host code), so
 * RtDevPtr is an address in the runtime's own space: a buffer and an offset into it.
 *
 * rt_metal.m implements it with the Metal framework (Objective-C, macOS). Launches go into a
 * command buffer that is committed, and waited for, by the next copy to or from the host.
 * Every failure is a status (RT_METAL_*) and one line in the caller's err where there is one.
 * An RtMetal is used by one thread at a time. */
#ifndef BITNETC_RT_METAL_H
#define BITNETC_RT_METAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RT_METAL_EDEVICE (-1) /* a Metal call failed (or host memory ran out) */
#define RT_METAL_ENODEV (-2)  /* no usable device (rt_model.h's RT_INIT_DEVICE) */
#define RT_METAL_ENOTSUP (-3) /* not offered (graphs: model.c then launches one by one) */

typedef struct RtMetal RtMetal;
typedef unsigned long long RtDevPtr;

/* A kernel of the library: its name, its parameters in order (p: a pointer, bound as a
 * buffer and offset; i, l, f: an int32, int64 or float, bound as bytes) and the least
 * threadgroup memory it takes in bytes (0: none; else the launch gets the larger of this
 * and its smem bytes, at threadgroup index 0). */
typedef struct {
	const char *name;
	const char *params;
	unsigned smem;
} RtMetalKernel;

typedef void (*RtMetalProgress)(uint64_t done, uint64_t total, void *ud);

/* The system's default device and a command queue; min_cc is unused (0), need_bytes is
 * checked against the device's recommended working set. 0 and *out, or RT_METAL_ENODEV
 * with why in err. */
int rt_metal_open(int min_cc, uint64_t need_bytes, RtMetal **out, char *err, size_t n);
/* Waits for the work queued, then releases everything. NULL: nothing. */
void rt_metal_close(RtMetal *c);
/* "Apple M2 Pro, 21.3 GiB working set" or why there is none. 0 or RT_METAL_ENODEV. */
int rt_metal_probe(int min_cc, uint64_t need_bytes, char *line, size_t n);

/* The library: the metallib when lib_n > 0, else the MSL source (compiled with fast math
 * off, the compiler's log in err on failure); kernels[0..n_kernels) describe its
 * functions. */
int rt_metal_module(RtMetal *c, const char *msl, const RtMetalKernel *kernels, int n_kernels,
		    const void *lib, size_t lib_n, char *err, size_t n);
/* The pipeline of kernel name (*fn for rt_metal_launch); checks that its SIMD-group is 32
 * threads wide, as the kernels' shuffles assume. */
int rt_metal_func(RtMetal *c, const char *name, void **fn, char *err, size_t n);

/* bytes of shared (CPU and GPU) memory, zero-filled. */
int rt_metal_alloc(RtMetal *c, uint64_t bytes, RtDevPtr *p, char *err, size_t n);
/* host[0..bytes) as a buffer: without a copy (newBufferWithBytesNoCopy) when host is
 * page-aligned (it must then stay mapped, unchanged, until rt_metal_free), else copied
 * (progress called as for rt_metal_upload). */
int rt_metal_wrap(RtMetal *c, const void *host, uint64_t bytes, RtMetalProgress progress,
		  void *ud, RtDevPtr *p, char *err, size_t n);
void rt_metal_free(RtMetal *c, RtDevPtr p); /* 0: nothing */
/* Copies to or from a buffer after the work queued before has run. */
int rt_metal_upload(RtMetal *c, RtDevPtr dst, const void *src, uint64_t n,
		    RtMetalProgress progress, void *ud, char *err, size_t en);
int rt_metal_download(RtMetal *c, void *dst, RtDevPtr src, uint64_t n, char *err, size_t en);
/* Encodes fn on a grid of gx x gy x gz threadgroups of block threads (1-D) with smem bytes of
 * threadgroup memory; params[i] points at parameter i's value (an RtDevPtr for a pointer). */
int rt_metal_launch(RtMetal *c, void *fn, unsigned gx, unsigned gy, unsigned gz,
		    unsigned block, unsigned smem, void **params);
/* Commits the queued work and waits for it: 0, or RT_METAL_EDEVICE with its error. */
int rt_metal_sync(RtMetal *c, char *err, size_t n);

/* No graphs: capture_begin says RT_METAL_ENOTSUP (model.c then launches directly). */
int rt_metal_capture_begin(RtMetal *c);
int rt_metal_capture_end(RtMetal *c, void **exec);
int rt_metal_graph_launch(RtMetal *c, void *exec);
void rt_metal_graph_free(RtMetal *c, void *exec);

#ifdef __cplusplus
}
#endif

#endif
