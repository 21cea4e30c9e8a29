/* fake_metal.c - runtime/rt_metal.h for the tests, on any host: a Metal program's generated
 * model.c linked with this file instead of rt_metal.m runs its kernels (model.metal compiled
 * with clang++ and tests/metal/msl_host.h into the shared object named by
 * $BN_FAKE_METAL_KERNELS) under the SIMT emulator. Buffers are host memory (an RtDevPtr is
 * the address); the weights are used in place when page-aligned, as newBufferWithBytesNoCopy
 * would, else copied; launches run at once, in the calling thread, with the threadgroup
 * memory rt_metal.m would give. A launch checks that the kernel is in the library's table
 * and that every pointer parameter names memory of a buffer. */
#include "rt_metal.h"

#include "simt_emu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_BUFS = 64 };

typedef struct {
	SimtKernelFn fn;
	const RtMetalKernel *desc;
} Kern;

struct RtMetal {
	void *so;
	const RtMetalKernel *kernels;
	int n_kernels;
	Kern fns[256];
	int n_fns;
	struct {
		uint8_t *p;
		uint64_t n;
		int owned;
	} buf[MAX_BUFS];
};

int rt_metal_probe(int min_cc, uint64_t need_bytes, char *line, size_t n)
{
	(void)min_cc, (void)need_bytes;
	snprintf(line, n, "fake Metal device (the SIMT emulator), kernels from %s",
		 getenv("BN_FAKE_METAL_KERNELS") ? getenv("BN_FAKE_METAL_KERNELS") : "nowhere");
	return 0;
}

int rt_metal_open(int min_cc, uint64_t need_bytes, RtMetal **out, char *err, size_t n)
{
	(void)min_cc, (void)need_bytes;
	*out = calloc(1, sizeof **out);
	if (!*out) {
		snprintf(err, n, "fake metal: out of memory");
		return RT_METAL_EDEVICE;
	}
	return 0;
}

void rt_metal_close(RtMetal *c)
{
	if (!c)
		return;
	for (int i = 0; i < MAX_BUFS; i++)
		if (c->buf[i].owned)
			free(c->buf[i].p);
	if (c->so)
		dlclose(c->so);
	free(c);
}

int rt_metal_module(RtMetal *c, const char *msl, const RtMetalKernel *kernels, int n_kernels,
		    const void *lib, size_t lib_n, char *err, size_t n)
{
	(void)lib, (void)lib_n;
	const char *path = getenv("BN_FAKE_METAL_KERNELS");
	if (!msl || !*msl || !path) {
		snprintf(err, n, "fake metal: no MSL, or BN_FAKE_METAL_KERNELS is not set");
		return RT_METAL_EDEVICE;
	}
	c->so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!c->so) {
		snprintf(err, n, "fake metal: %s", dlerror());
		return RT_METAL_EDEVICE;
	}
	c->kernels = kernels;
	c->n_kernels = n_kernels;
	return 0;
}

int rt_metal_func(RtMetal *c, const char *name, void **fn, char *err, size_t n)
{
	const RtMetalKernel *k = NULL;
	for (int i = 0; i < c->n_kernels; i++)
		if (strcmp(c->kernels[i].name, name) == 0)
			k = &c->kernels[i];
	char sym[300];
	snprintf(sym, sizeof sym, "%s__host", name);
	void *f = c->so ? dlsym(c->so, sym) : NULL;
	if (!k || !f || c->n_fns == 256) {
		snprintf(err, n, "fake metal: the library has no kernel %s", name);
		return RT_METAL_EDEVICE;
	}
	Kern *kk = &c->fns[c->n_fns++];
	*(void **)&kk->fn = f;
	kk->desc = k;
	*fn = kk;
	return 0;
}

static int add(RtMetal *c, uint8_t *p, uint64_t bytes, int owned, RtDevPtr *out, char *err, size_t n)
{
	for (int i = 0; i < MAX_BUFS; i++)
		if (!c->buf[i].p) {
			c->buf[i].p = p;
			c->buf[i].n = bytes;
			c->buf[i].owned = owned;
			*out = (RtDevPtr)(uintptr_t)p;
			return 0;
		}
	snprintf(err, n, "fake metal: too many buffers");
	if (owned)
		free(p);
	return RT_METAL_EDEVICE;
}

int rt_metal_alloc(RtMetal *c, uint64_t bytes, RtDevPtr *p, char *err, size_t n)
{
	uint8_t *m = calloc(1, bytes ? bytes : 16);
	if (!m) {
		snprintf(err, n, "fake metal: cannot allocate %llu bytes", (unsigned long long)bytes);
		return RT_METAL_EDEVICE;
	}
	return add(c, m, bytes, 1, p, err, n);
}

int rt_metal_wrap(RtMetal *c, const void *host, uint64_t bytes, RtMetalProgress progress,
		  void *ud, RtDevPtr *p, char *err, size_t n)
{
	long page = sysconf(_SC_PAGESIZE);
	if (page > 0 && (uintptr_t)host % (uintptr_t)page == 0)
		return add(c, (uint8_t *)(uintptr_t)host, bytes, 0, p, err, n);
	uint8_t *m = malloc(bytes ? bytes : 16);
	if (!m) {
		snprintf(err, n, "fake metal: cannot copy the weights");
		return RT_METAL_EDEVICE;
	}
	memcpy(m, host, bytes);
	if (progress)
		progress(bytes, bytes, ud);
	return add(c, m, bytes, 1, p, err, n);
}

void rt_metal_free(RtMetal *c, RtDevPtr p)
{
	for (int i = 0; p && i < MAX_BUFS; i++)
		if ((RtDevPtr)(uintptr_t)c->buf[i].p == p) {
			if (c->buf[i].owned)
				free(c->buf[i].p);
			c->buf[i].p = NULL;
		}
}

/* Whether [p, p + len) lies in one buffer. */
static int inside(const RtMetal *c, RtDevPtr p, uint64_t len)
{
	for (int i = 0; i < MAX_BUFS; i++) {
		RtDevPtr b = (RtDevPtr)(uintptr_t)c->buf[i].p;
		if (c->buf[i].p && p >= b && p + len <= b + c->buf[i].n)
			return 1;
	}
	return 0;
}

int rt_metal_upload(RtMetal *c, RtDevPtr dst, const void *src, uint64_t n,
		    RtMetalProgress progress, void *ud, char *err, size_t en)
{
	if (!inside(c, dst, n)) {
		snprintf(err, en, "fake metal: an upload outside every buffer");
		return RT_METAL_EDEVICE;
	}
	memcpy((void *)(uintptr_t)dst, src, n);
	if (progress)
		progress(n, n, ud);
	return 0;
}

int rt_metal_download(RtMetal *c, void *dst, RtDevPtr src, uint64_t n, char *err, size_t en)
{
	if (!inside(c, src, n)) {
		snprintf(err, en, "fake metal: a download outside every buffer");
		return RT_METAL_EDEVICE;
	}
	memcpy(dst, (const void *)(uintptr_t)src, n);
	return 0;
}

int rt_metal_launch(RtMetal *c, void *fn, unsigned gx, unsigned gy, unsigned gz,
		    unsigned block, unsigned smem, void **params)
{
	Kern *k = fn;
	const char *ps = k->desc->params;
	for (int i = 0; ps[i]; i++)
		if (ps[i] == 'p') {
			RtDevPtr a = *(const RtDevPtr *)params[i];
			if (a && !inside(c, a, 1)) {
				fprintf(stderr, "fake metal: kernel %s: parameter %d is outside every buffer\n",
					k->desc->name, i);
				return RT_METAL_EDEVICE;
			}
		}
	if (k->desc->smem && smem < k->desc->smem)
		smem = k->desc->smem;
	const unsigned grid[3] = {gx, gy, gz}, blk[3] = {block, 1, 1};
	char err[256];
	if (simt_emu_launch(k->fn, grid, blk, smem, params, err, sizeof err)) {
		fprintf(stderr, "fake metal: kernel %s: %s\n", k->desc->name, err);
		return RT_METAL_EDEVICE;
	}
	return 0;
}

int rt_metal_sync(RtMetal *c, char *err, size_t n)
{
	(void)c, (void)err, (void)n;
	return 0;
}

int rt_metal_capture_begin(RtMetal *c)
{
	(void)c;
	return RT_METAL_ENOTSUP;
}

int rt_metal_capture_end(RtMetal *c, void **exec)
{
	(void)c;
	*exec = NULL;
	return RT_METAL_ENOTSUP;
}

int rt_metal_graph_launch(RtMetal *c, void *exec)
{
	(void)c, (void)exec;
	return RT_METAL_ENOTSUP;
}

void rt_metal_graph_free(RtMetal *c, void *exec)
{
	(void)c, (void)exec;
}
