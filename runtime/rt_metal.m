/* rt_metal.m - rt_metal.h over the Metal framework (Objective-C with ARC, macOS): the
 * default device and a queue, the library and its pipelines, shared-storage buffers in a
 * table (an RtDevPtr is (slot + 1) << 40 plus an offset), and one serial compute encoder per
 * command buffer, committed and waited for by the next host copy. */
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include "rt_metal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SLOT_SHIFT 40
#define OFF_MASK ((1ull << SLOT_SHIFT) - 1)

@interface BnKernel : NSObject {
@public
	id<MTLComputePipelineState> pipe;
	const RtMetalKernel *desc;
}
@end
@implementation BnKernel
@end

@interface BnMetal : NSObject {
@public
	id<MTLDevice> dev;
	id<MTLCommandQueue> queue;
	id<MTLLibrary> lib;
	const RtMetalKernel *kernels;
	int n_kernels;
	NSMutableArray *bufs;    /* id<MTLBuffer> or NSNull, by slot */
	NSMutableArray *funcs;   /* BnKernel, kept for the pipelines' lifetime */
	id<MTLBuffer> dummy;     /* bound for a pointer parameter of address 0 */
	id<MTLCommandBuffer> cmd;
	id<MTLComputeCommandEncoder> enc;
	char error[512];
}
@end
@implementation BnMetal
@end

static int fail(char *err, size_t n, int rc, const char *what, NSError *e)
{
	if (err && n)
		snprintf(err, n, "metal: %s%s%s", what, e ? ": " : "",
			 e ? [[e localizedDescription] UTF8String] : "");
	return rc;
}

static BnMetal *M(RtMetal *c)
{
	return (__bridge BnMetal *)(void *)c;
}

int rt_metal_probe(int min_cc, uint64_t need_bytes, char *line, size_t n)
{
	(void)min_cc;
	@autoreleasepool {
		id<MTLDevice> d = MTLCreateSystemDefaultDevice();
		if (!d)
			return fail(line, n, RT_METAL_ENODEV, "no Metal device", nil);
		uint64_t ws = [d recommendedMaxWorkingSetSize];
		snprintf(line, n, "%s, %.1f GiB working set", [[d name] UTF8String], (double)ws / 1073741824.0);
		if (need_bytes && need_bytes > ws)
			return fail(line, n, RT_METAL_ENODEV, "the weights exceed the device's working set", nil);
		return 0;
	}
}

int rt_metal_open(int min_cc, uint64_t need_bytes, RtMetal **out, char *err, size_t n)
{
	*out = NULL;
	char line[256];
	int rc = rt_metal_probe(min_cc, need_bytes, line, sizeof line);
	if (rc) {
		if (err && n)
			snprintf(err, n, "%s", line);
		return rc;
	}
	BnMetal *m = [BnMetal new];
	m->dev = MTLCreateSystemDefaultDevice();
	m->queue = [m->dev newCommandQueue];
	m->bufs = [NSMutableArray new];
	m->funcs = [NSMutableArray new];
	m->dummy = [m->dev newBufferWithLength:64 options:MTLResourceStorageModeShared];
	if (!m->queue || !m->dummy)
		return fail(err, n, RT_METAL_EDEVICE, "cannot create the command queue", nil);
	*out = (__bridge_retained RtMetal *)m;
	return 0;
}

int rt_metal_sync(RtMetal *c, char *err, size_t n)
{
	BnMetal *m = M(c);
	if (!m->cmd)
		return 0;
	[m->enc endEncoding];
	[m->cmd commit];
	[m->cmd waitUntilCompleted];
	int rc = 0;
	if ([m->cmd status] == MTLCommandBufferStatusError)
		rc = fail(err, n, RT_METAL_EDEVICE, "a command buffer failed", [m->cmd error]);
	m->enc = nil;
	m->cmd = nil;
	return rc;
}

void rt_metal_close(RtMetal *c)
{
	if (!c)
		return;
	rt_metal_sync(c, NULL, 0);
	BnMetal *m = (__bridge_transfer BnMetal *)(void *)c;
	m->bufs = nil;
	m->funcs = nil;
	m = nil;
}

int rt_metal_module(RtMetal *c, const char *msl, const RtMetalKernel *kernels, int n_kernels,
		    const void *lib, size_t lib_n, char *err, size_t n)
{
	BnMetal *m = M(c);
	NSError *e = nil;
	m->kernels = kernels;
	m->n_kernels = n_kernels;
	if (lib && lib_n) {
		dispatch_data_t data = dispatch_data_create(lib, lib_n, NULL, DISPATCH_DATA_DESTRUCTOR_DEFAULT);
		m->lib = [m->dev newLibraryWithData:data error:&e];
		if (!m->lib)
			return fail(err, n, RT_METAL_EDEVICE, "loading the metallib", e);
		return 0;
	}
	MTLCompileOptions *o = [MTLCompileOptions new];
	/* the numerics of the CPU path: no fast math, no reassociation */
#if defined(__MAC_OS_X_VERSION_MAX_ALLOWED) && __MAC_OS_X_VERSION_MAX_ALLOWED >= 150000
	if (@available(macOS 15.0, *)) {
		o.mathMode = MTLMathModeSafe;
		o.mathFloatingPointFunctions = MTLMathFloatingPointFunctionsPrecise;
	} else
#endif
	{
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
		o.fastMathEnabled = NO;
#pragma clang diagnostic pop
	}
	m->lib = [m->dev newLibraryWithSource:[NSString stringWithUTF8String:msl] options:o error:&e];
	if (!m->lib)
		return fail(err, n, RT_METAL_EDEVICE, "compiling the kernels' MSL", e);
	return 0;
}

int rt_metal_func(RtMetal *c, const char *name, void **fn, char *err, size_t n)
{
	BnMetal *m = M(c);
	const RtMetalKernel *k = NULL;
	for (int i = 0; i < m->n_kernels; i++)
		if (strcmp(m->kernels[i].name, name) == 0)
			k = &m->kernels[i];
	id<MTLFunction> f = [m->lib newFunctionWithName:[NSString stringWithUTF8String:name]];
	if (!k || !f) {
		if (err && n)
			snprintf(err, n, "metal: the library has no kernel %s", name);
		return RT_METAL_EDEVICE;
	}
	NSError *e = nil;
	BnKernel *bk = [BnKernel new];
	bk->desc = k;
	bk->pipe = [m->dev newComputePipelineStateWithFunction:f error:&e];
	if (!bk->pipe)
		return fail(err, n, RT_METAL_EDEVICE, "making a compute pipeline", e);
	if ([bk->pipe threadExecutionWidth] != 32) {
		if (err && n)
			snprintf(err, n, "metal: kernel %s: SIMD-groups of %lu threads (the kernels need 32)",
				 name, (unsigned long)[bk->pipe threadExecutionWidth]);
		return RT_METAL_ENODEV;
	}
	[m->funcs addObject:bk];
	*fn = (__bridge void *)bk;
	return 0;
}

static RtDevPtr add_buffer(BnMetal *m, id<MTLBuffer> b)
{
	[m->bufs addObject:b];
	return (RtDevPtr)[m->bufs count] << SLOT_SHIFT;
}

/* The buffer holding address p, and p's offset in it; nil for none. */
static id<MTLBuffer> find(BnMetal *m, RtDevPtr p, uint64_t *off)
{
	uint64_t slot = p >> SLOT_SHIFT;
	*off = p & OFF_MASK;
	if (slot < 1 || slot > [m->bufs count])
		return nil;
	id b = m->bufs[slot - 1];
	return b == [NSNull null] ? nil : (id<MTLBuffer>)b;
}

int rt_metal_alloc(RtMetal *c, uint64_t bytes, RtDevPtr *p, char *err, size_t n)
{
	BnMetal *m = M(c);
	id<MTLBuffer> b = [m->dev newBufferWithLength:bytes ? bytes : 16 options:MTLResourceStorageModeShared];
	if (!b) {
		if (err && n)
			snprintf(err, n, "metal: cannot allocate a buffer of %llu bytes", (unsigned long long)bytes);
		return RT_METAL_EDEVICE;
	}
	memset([b contents], 0, [b length]);
	*p = add_buffer(m, b);
	return 0;
}

int rt_metal_wrap(RtMetal *c, const void *host, uint64_t bytes, RtMetalProgress progress,
		  void *ud, RtDevPtr *p, char *err, size_t n)
{
	BnMetal *m = M(c);
	uint64_t page = (uint64_t)getpagesize();
	id<MTLBuffer> b = nil;
	if ((uintptr_t)host % page == 0)
		b = [m->dev newBufferWithBytesNoCopy:(void *)host length:(bytes + page - 1) / page * page
					     options:MTLResourceStorageModeShared deallocator:nil];
	if (!b) {
		b = [m->dev newBufferWithBytes:host length:bytes ? bytes : 16 options:MTLResourceStorageModeShared];
		if (b && progress)
			progress(bytes, bytes, ud);
	}
	if (!b) {
		if (err && n)
			snprintf(err, n, "metal: cannot make a buffer of the weights (%llu bytes)", (unsigned long long)bytes);
		return RT_METAL_EDEVICE;
	}
	*p = add_buffer(m, b);
	return 0;
}

void rt_metal_free(RtMetal *c, RtDevPtr p)
{
	BnMetal *m = M(c);
	uint64_t slot = p >> SLOT_SHIFT;
	if (!p || slot < 1 || slot > [m->bufs count])
		return;
	rt_metal_sync(c, NULL, 0);
	m->bufs[slot - 1] = [NSNull null];
}

static int copy(RtMetal *c, void *host, RtDevPtr dev, uint64_t len, bool up, char *err, size_t n)
{
	BnMetal *m = M(c);
	int rc = rt_metal_sync(c, err, n);
	if (rc)
		return rc;
	uint64_t off;
	id<MTLBuffer> b = find(m, dev, &off);
	if (!b || off + len > [b length]) {
		if (err && n)
			snprintf(err, n, "metal: a copy of %llu bytes outside every buffer", (unsigned long long)len);
		return RT_METAL_EDEVICE;
	}
	uint8_t *d = (uint8_t *)[b contents] + off;
	if (up)
		memcpy(d, host, len);
	else
		memcpy(host, d, len);
	return 0;
}

int rt_metal_upload(RtMetal *c, RtDevPtr dst, const void *src, uint64_t n,
		    RtMetalProgress progress, void *ud, char *err, size_t en)
{
	int rc = copy(c, (void *)src, dst, n, true, err, en);
	if (!rc && progress)
		progress(n, n, ud);
	return rc;
}

int rt_metal_download(RtMetal *c, void *dst, RtDevPtr src, uint64_t n, char *err, size_t en)
{
	return copy(c, dst, src, n, false, err, en);
}

int rt_metal_launch(RtMetal *c, void *fn, unsigned gx, unsigned gy, unsigned gz,
		    unsigned block, unsigned smem, void **params)
{
	BnMetal *m = M(c);
	BnKernel *k = (__bridge BnKernel *)fn;
	if (k->desc->smem && smem < k->desc->smem)
		smem = k->desc->smem;
	if (block > [k->pipe maxTotalThreadsPerThreadgroup] || smem > [m->dev maxThreadgroupMemoryLength]) {
		snprintf(m->error, sizeof m->error, "metal: kernel %s: %u threads and %u bytes of "
			 "threadgroup memory exceed the device's limits", k->desc->name, block, smem);
		return RT_METAL_EDEVICE;
	}
	if (!m->cmd) {
		m->cmd = [m->queue commandBuffer];
		m->enc = [m->cmd computeCommandEncoder]; /* serial: each dispatch sees the last */
	}
	[m->enc setComputePipelineState:k->pipe];
	const char *ps = k->desc->params;
	for (NSUInteger i = 0; ps[i]; i++) {
		if (ps[i] == 'p') {
			uint64_t off;
			RtDevPtr a = *(const RtDevPtr *)params[i];
			id<MTLBuffer> b = a ? find(m, a, &off) : nil;
			if (!b)
				[m->enc setBuffer:m->dummy offset:0 atIndex:i];
			else
				[m->enc setBuffer:b offset:off atIndex:i];
		} else {
			[m->enc setBytes:params[i] length:ps[i] == 'l' ? 8 : 4 atIndex:i];
		}
	}
	if (k->desc->smem)
		[m->enc setThreadgroupMemoryLength:(smem + 15) / 16 * 16 atIndex:0];
	[m->enc dispatchThreadgroups:MTLSizeMake(gx, gy, gz) threadsPerThreadgroup:MTLSizeMake(block, 1, 1)];
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
