/* simt_emu.c - the SIMT emulator (simt_emu.h): one fiber per thread of a block, a run queue,
 * barriers and warp shuffles that suspend a fiber until its block or warp has arrived, and
 * the context switch itself (hand-written for x86-64 and aarch64 ELF, ucontext elsewhere or
 * with -DSIMT_EMU_UCONTEXT). A suspended fiber hands over straight to the next runnable one,
 * so a barrier costs one switch per thread and no system call. */
#if defined(__APPLE__)
#define _XOPEN_SOURCE 700 /* the ucontext routines */
#define _DARWIN_C_SOURCE
#endif
#include "simt_emu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(SIMT_EMU_UCONTEXT) && defined(__ELF__) && defined(__x86_64__)
#define EMU_SWITCH_X86 1
#elif !defined(SIMT_EMU_UCONTEXT) && defined(__ELF__) && defined(__aarch64__)
#define EMU_SWITCH_A64 1
#else
#define EMU_SWITCH_UC 1
#include <ucontext.h>
#if defined(__APPLE__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* macOS keeps them, deprecated */
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* Kernels keep small locals; ASan's redzones make frames several times larger. */
#ifdef EMU_ASAN
#define EMU_STACK (256u << 10)
#else
#define EMU_STACK (64u << 10)
#endif

/* ---- contexts and the switch ---- */

typedef struct {
#ifdef EMU_SWITCH_UC
	ucontext_t uc;
#else
	void *sp; /* saved stack pointer: callee-saved registers and the resume address on top */
#endif
	void *stack_lo; /* lowest byte of the fiber's stack; the OS thread's own as ASan saw it */
	size_t stack_n;
#ifdef EMU_ASAN
	void *fake; /* ASan's fake stack of this context while it is switched out */
#endif
} EmuCtx;

#ifndef EMU_SWITCH_UC
/* Saves the callee-saved registers on the current stack, stores the stack pointer in *save,
 * loads new_sp and restores the registers saved there; returns into the other context. */
void simt_emu__switch(void **save, void *new_sp) __attribute__((visibility("hidden")));
#endif

#if defined(EMU_SWITCH_X86)
__asm__(".text\n"
	".p2align 4\n"
	".globl simt_emu__switch\n"
	".hidden simt_emu__switch\n"
	".type simt_emu__switch,%function\n"
	"simt_emu__switch:\n"
	"\tpushq %rbp\n"
	"\tpushq %rbx\n"
	"\tpushq %r12\n"
	"\tpushq %r13\n"
	"\tpushq %r14\n"
	"\tpushq %r15\n"
	"\tmovq %rsp, (%rdi)\n"
	"\tmovq %rsi, %rsp\n"
	"\tpopq %r15\n"
	"\tpopq %r14\n"
	"\tpopq %r13\n"
	"\tpopq %r12\n"
	"\tpopq %rbx\n"
	"\tpopq %rbp\n"
	"\tret\n"
	".size simt_emu__switch,.-simt_emu__switch\n");
enum { EMU_FRAME_WORDS = 6 }; /* rbp rbx r12-r15 */
#elif defined(EMU_SWITCH_A64)
__asm__(".text\n"
	".p2align 4\n"
	".globl simt_emu__switch\n"
	".hidden simt_emu__switch\n"
	".type simt_emu__switch,%function\n"
	"simt_emu__switch:\n"
	"\tsub sp, sp, #160\n"
	"\tstp x19, x20, [sp, #0]\n"
	"\tstp x21, x22, [sp, #16]\n"
	"\tstp x23, x24, [sp, #32]\n"
	"\tstp x25, x26, [sp, #48]\n"
	"\tstp x27, x28, [sp, #64]\n"
	"\tstp x29, x30, [sp, #80]\n"
	"\tstp d8, d9, [sp, #96]\n"
	"\tstp d10, d11, [sp, #112]\n"
	"\tstp d12, d13, [sp, #128]\n"
	"\tstp d14, d15, [sp, #144]\n"
	"\tmov x9, sp\n"
	"\tstr x9, [x0]\n"
	"\tmov sp, x1\n"
	"\tldp x19, x20, [sp, #0]\n"
	"\tldp x21, x22, [sp, #16]\n"
	"\tldp x23, x24, [sp, #32]\n"
	"\tldp x25, x26, [sp, #48]\n"
	"\tldp x27, x28, [sp, #64]\n"
	"\tldp x29, x30, [sp, #80]\n"
	"\tldp d8, d9, [sp, #96]\n"
	"\tldp d10, d11, [sp, #112]\n"
	"\tldp d12, d13, [sp, #128]\n"
	"\tldp d14, d15, [sp, #144]\n"
	"\tadd sp, sp, #160\n"
	"\tret\n"
	".size simt_emu__switch,.-simt_emu__switch\n");
enum { EMU_FRAME_WORDS = 20 }; /* x19-x30 and d8-d15; x30 (the resume address) at word 11 */
#endif

/* Makes c start entry() on its own stack when first switched to. entry never returns. */
static void ctx_make(EmuCtx *c, void (*entry)(void))
{
#ifdef EMU_SWITCH_UC
	getcontext(&c->uc);
	c->uc.uc_stack.ss_sp = c->stack_lo;
	c->uc.uc_stack.ss_size = c->stack_n;
	c->uc.uc_link = NULL;
	makecontext(&c->uc, entry, 0);
#else
	uintptr_t top = ((uintptr_t)c->stack_lo + c->stack_n) & ~(uintptr_t)15;
	void **sp = (void **)top;
#if defined(EMU_SWITCH_X86)
	*--sp = NULL;                     /* entry's own return address: it never returns */
	*--sp = (void *)(uintptr_t)entry; /* where the switch's ret goes */
	for (int i = 0; i < EMU_FRAME_WORDS; i++)
		*--sp = NULL;
#else
	sp -= EMU_FRAME_WORDS;
	for (int i = 0; i < EMU_FRAME_WORDS; i++)
		sp[i] = NULL;
	sp[11] = (void *)(uintptr_t)entry; /* x30: where the switch's ret goes */
#endif
	c->sp = sp;
#endif
#ifdef EMU_ASAN
	c->fake = NULL;
#endif
}

/* ---- the block ---- */

enum { ST_RUN, ST_BAR, ST_SHFL, ST_DONE };

typedef struct {
	SimtThread th; /* first: the kernel's SimtThread * is its EmuThread * */
	EmuCtx ctx;
	uint32_t lin, warp, lane;
	uint32_t state;
	uint32_t shfl_v, shfl_arg, shfl_mode; /* deposited at a shuffle; shfl_v gets the result */
} EmuThread;

typedef struct {
	uint32_t n;       /* lanes (32, fewer in a last partial warp) */
	uint32_t at_shfl; /* lanes waiting at a shuffle */
	uint32_t done;    /* lanes that have returned */
} EmuWarp;

typedef struct {
	/* what the calling thread keeps between launches */
	EmuThread *thr;
	EmuWarp *warps;
	uint32_t *queue; /* ring of runnable thread indices, at most n */
	uint32_t cap;    /* threads with a stack */
	unsigned char *stacks;
	size_t stacks_n, stack_stride, guard;
	unsigned char *smem;
	size_t smem_cap, smem_n; /* allocated; this launch's */
	SimtEmuStats stats;
	int in_launch;
	/* the block running now */
	uint32_t n, nwarps, qhead, qlen, live, at_bar, ndone;
	unsigned ctaid[3];
	SimtKernelFn fn;
	void **params;
	EmuThread *cur;
	EmuCtx main; /* the launch's own context */
	EmuCtx *prev; /* the context that switched last (ASan's bookkeeping) */
	int failed;
	char err[256];
} EmuState;

static _Thread_local EmuState *emu_tls;

static void emu_fiber_main(void);

#ifdef EMU_ASAN
/* After arriving in a context that left with fake stack `fake`: tell ASan, and learn the OS
 * thread's stack when arriving from the launch. */
static void emu_asan_arrived(EmuState *s, void *fake)
{
	const void *lo = NULL;
	size_t n = 0;
	__sanitizer_finish_switch_fiber(fake, &lo, &n);
	if (s->prev == &s->main) {
		s->main.stack_lo = (void *)lo;
		s->main.stack_n = n;
	}
}
#endif

static void ctx_switch(EmuState *s, EmuCtx *from, EmuCtx *to, int exiting)
{
	s->stats.switches++;
#ifdef EMU_ASAN
	s->prev = from;
	__sanitizer_start_switch_fiber(exiting ? NULL : &from->fake, to->stack_lo, to->stack_n);
#else
	(void)exiting;
#endif
#ifdef EMU_SWITCH_UC
	swapcontext(&from->uc, &to->uc);
#else
	simt_emu__switch(&from->sp, to->sp);
#endif
#ifdef EMU_ASAN
	emu_asan_arrived(s, from->fake);
#endif
}

/* Hands over from `from` to the next runnable thread, or back to the launch when none is left
 * (the block is over or stuck). Returns when `from` is resumed. */
static void emu_yield(EmuState *s, EmuCtx *from, int exiting)
{
	EmuCtx *to = &s->main;
	s->cur = NULL;
	if (s->qlen) {
		EmuThread *t = &s->thr[s->queue[s->qhead]];
		if (++s->qhead == s->n)
			s->qhead = 0;
		s->qlen--;
		s->cur = t;
		to = &t->ctx;
	}
	if (to != from)
		ctx_switch(s, from, to, exiting);
}

static void emu_enqueue(EmuState *s, EmuThread *t)
{
	uint32_t i = s->qhead + s->qlen;
	if (i >= s->n)
		i -= s->n;
	s->queue[i] = t->lin;
	s->qlen++;
	t->state = ST_RUN;
}

/* Stops the block from inside a fiber: the launch returns -1 with the message. */
static void emu_fail(EmuState *s, EmuThread *t, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
static void emu_fail(EmuState *s, EmuThread *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof s->err, fmt, ap);
	va_end(ap);
	s->failed = 1;
	s->cur = NULL;
	ctx_switch(s, &t->ctx, &s->main, 1);
	abort(); /* a failed block's fibers are never resumed */
}

static void emu_release_barrier(EmuState *s)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (s->thr[i].state == ST_BAR)
			emu_enqueue(s, &s->thr[i]);
	s->at_bar = 0;
}

static void emu_barrier(SimtThread *th)
{
	EmuThread *t = (EmuThread *)th;
	EmuState *s = th->emu;
	t->state = ST_BAR;
	if (++s->at_bar == s->live)
		emu_release_barrier(s);
	emu_yield(s, &t->ctx, 0);
}

/* The source lane of a shuffle as PTX shfl.sync (width 32) picks it; own lane when none. */
static uint32_t emu_shfl_src(uint32_t lane, uint32_t arg, uint32_t mode, uint32_t nlanes)
{
	uint32_t b = arg & 31u, j = lane;
	switch (mode) {
	case SIMT_SHFL_IDX: j = b; break;
	case SIMT_SHFL_UP: j = lane >= b ? lane - b : lane; break;
	case SIMT_SHFL_DOWN: j = lane + b; break;
	case SIMT_SHFL_BFLY: j = lane ^ b; break;
	}
	return j < nlanes ? j : lane;
}

/* Every lane of warp w has deposited its value: each takes its source lane's. */
static void emu_release_shfl(EmuState *s, uint32_t w)
{
	EmuWarp *wp = &s->warps[w];
	EmuThread *lanes = &s->thr[w * 32u];
	uint32_t got[32];
	for (uint32_t l = 0; l < wp->n; l++)
		got[l] = lanes[emu_shfl_src(l, lanes[l].shfl_arg, lanes[l].shfl_mode, wp->n)].shfl_v;
	for (uint32_t l = 0; l < wp->n; l++) {
		lanes[l].shfl_v = got[l];
		emu_enqueue(s, &lanes[l]);
	}
	wp->at_shfl = 0;
}

static uint32_t emu_shfl(SimtThread *th, uint32_t v, uint32_t arg, uint32_t mode)
{
	EmuThread *t = (EmuThread *)th;
	EmuState *s = th->emu;
	EmuWarp *w = &s->warps[t->warp];
	if (mode > SIMT_SHFL_BFLY)
		emu_fail(s, t, "simt: block (%u,%u,%u) thread %u: shuffle mode %u is not one of SIMT_SHFL_*",
			 s->ctaid[0], s->ctaid[1], s->ctaid[2], t->lin, mode);
	t->shfl_v = v;
	t->shfl_arg = arg;
	t->shfl_mode = mode;
	t->state = ST_SHFL;
	if (++w->at_shfl == w->n)
		emu_release_shfl(s, t->warp);
	emu_yield(s, &t->ctx, 0);
	return t->shfl_v;
}

static void emu_thread_exit(EmuState *s, EmuThread *t) __attribute__((noreturn));
static void emu_thread_exit(EmuState *s, EmuThread *t)
{
	t->state = ST_DONE;
	s->live--;
	s->ndone++;
	s->warps[t->warp].done++;
	if (s->at_bar && s->at_bar == s->live)
		emu_release_barrier(s);
	emu_yield(s, &t->ctx, 1);
	abort(); /* a finished fiber is never resumed */
}

/* Where every fiber starts: the kernel for the thread the scheduler picked, then exit. */
static void emu_fiber_main(void)
{
	EmuState *s = emu_tls;
#ifdef EMU_ASAN
	emu_asan_arrived(s, NULL);
#endif
	EmuThread *t = s->cur;
	s->fn(&t->th, s->params);
	emu_thread_exit(s, t);
}

/* ---- memory kept between launches ---- */

static void emu_free_threads(EmuState *s)
{
	if (s->stacks)
		munmap(s->stacks, s->stacks_n);
	free(s->thr);
	free(s->warps);
	free(s->queue);
	s->stacks = NULL;
	s->thr = NULL;
	s->warps = NULL;
	s->queue = NULL;
	s->cap = 0;
}

/* Room for n threads: records, warps, the queue, and stacks with a guard page below each. */
static int emu_reserve_threads(EmuState *s, uint32_t n)
{
	if (n <= s->cap)
		return 0;
	emu_free_threads(s);
	long page = sysconf(_SC_PAGESIZE);
	s->guard = page > 0 ? (size_t)page : 4096;
	s->stack_stride = s->guard + EMU_STACK;
	s->stacks_n = s->stack_stride * n;
	void *m = mmap(NULL, s->stacks_n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON, -1, 0);
	if (m == MAP_FAILED)
		return -1;
	s->stacks = m;
	for (uint32_t i = 0; i < n; i++)
		if (mprotect(s->stacks + i * s->stack_stride, s->guard, PROT_NONE) != 0)
			goto fail;
	s->thr = aligned_alloc(64, ((n * sizeof *s->thr + 63) / 64) * 64);
	s->warps = calloc((n + 31) / 32, sizeof *s->warps);
	s->queue = calloc(n, sizeof *s->queue);
	if (!s->thr || !s->warps || !s->queue)
		goto fail;
	memset(s->thr, 0, n * sizeof *s->thr);
	for (uint32_t i = 0; i < n; i++) {
		s->thr[i].ctx.stack_lo = s->stacks + i * s->stack_stride + s->guard;
		s->thr[i].ctx.stack_n = EMU_STACK;
	}
	s->cap = n;
	return 0;
fail:
	emu_free_threads(s);
	return -1;
}

/* Exactly the launch's bytes (none: no buffer at all), so that a kernel reaching past what
 * its launch asked for fails here (a NULL access, or AddressSanitizer's report) as it would
 * on a GPU, rather than reading what an earlier launch left. */
static int emu_reserve_smem(EmuState *s, size_t n)
{
	if (n == s->smem_cap)
		return 0;
	free(s->smem);
	s->smem = n ? aligned_alloc(16, (n + 15) / 16 * 16) : NULL;
	s->smem_cap = s->smem ? n : 0;
	return s->smem || !n ? 0 : -1;
}

/* ---- launch ---- */

static int emu_errf(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int emu_errf(char *err, size_t n, const char *fmt, ...)
{
	if (err && n) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* The block stopped with threads left: name the warp that cannot go on. */
static void emu_deadlock(EmuState *s, char *err, size_t n)
{
	for (uint32_t w = 0; w < s->nwarps; w++) {
		EmuWarp *wp = &s->warps[w];
		if (!wp->at_shfl)
			continue;
		uint32_t bar = 0;
		for (uint32_t l = 0; l < wp->n; l++)
			bar += s->thr[w * 32 + l].state == ST_BAR;
		emu_errf(err, n, "simt: deadlock in block (%u,%u,%u): warp %u has %u of its %u lanes "
			 "at a shuffle, %u at the barrier, %u returned",
			 s->ctaid[0], s->ctaid[1], s->ctaid[2], w, wp->at_shfl, wp->n, bar, wp->done);
		return;
	}
	emu_errf(err, n, "simt: deadlock in block (%u,%u,%u): %u threads at the barrier, %u running",
		 s->ctaid[0], s->ctaid[1], s->ctaid[2], s->at_bar, s->live);
}

/* A failed block leaves fibers suspended in the middle of their stacks. */
static void emu_forget_fibers(EmuState *s)
{
#ifdef EMU_ASAN
	for (uint32_t i = 0; i < s->n; i++)
		ASAN_UNPOISON_MEMORY_REGION(s->thr[i].ctx.stack_lo, s->thr[i].ctx.stack_n);
#else
	(void)s;
#endif
}

static int emu_block(EmuState *s, char *err, size_t err_n)
{
	for (uint32_t i = 0; i < s->n; i++) {
		EmuThread *t = &s->thr[i];
		t->th.ctaid[0] = s->ctaid[0];
		t->th.ctaid[1] = s->ctaid[1];
		t->th.ctaid[2] = s->ctaid[2];
		t->state = ST_RUN;
		ctx_make(&t->ctx, emu_fiber_main);
		s->queue[i] = i;
	}
	for (uint32_t w = 0; w < s->nwarps; w++) {
		s->warps[w].n = s->n - w * 32 < 32 ? s->n - w * 32 : 32;
		s->warps[w].at_shfl = 0;
		s->warps[w].done = 0;
	}
	s->qhead = 0;
	s->qlen = s->n;
	s->live = s->n;
	s->at_bar = 0;
	s->ndone = 0;
	s->failed = 0;
	if (s->smem_n)
		memset(s->smem, SIMT_EMU_SMEM_FILL, s->smem_n);
	emu_yield(s, &s->main, 0);
	s->stats.blocks++;
	s->stats.threads += s->n;
	if (s->failed) {
		emu_forget_fibers(s);
		return emu_errf(err, err_n, "%s", s->err);
	}
	if (s->ndone != s->n) {
		emu_deadlock(s, err, err_n);
		emu_forget_fibers(s);
		return -1;
	}
	return 0;
}

static EmuState *emu_state(void)
{
	if (!emu_tls)
		emu_tls = calloc(1, sizeof *emu_tls);
	return emu_tls;
}

int simt_emu_launch(SimtKernelFn fn, const unsigned grid[3], const unsigned block[3],
                    unsigned smem_bytes, void **params, char *err, size_t err_n)
{
	if (!fn || !grid || !block)
		return emu_errf(err, err_n, "simt: launch without a kernel or dimensions");
	uint64_t nthr = (uint64_t)block[0] * block[1] * block[2];
	if (!grid[0] || !grid[1] || !grid[2] || !nthr)
		return emu_errf(err, err_n, "simt: launch of grid %ux%ux%u, block %ux%ux%u: a dimension is 0",
				grid[0], grid[1], grid[2], block[0], block[1], block[2]);
	if (nthr > SIMT_EMU_MAX_THREADS)
		return emu_errf(err, err_n, "simt: block %ux%ux%u has %llu threads, more than %u",
				block[0], block[1], block[2], (unsigned long long)nthr, SIMT_EMU_MAX_THREADS);
	EmuState *s = emu_state();
	if (!s)
		return emu_errf(err, err_n, "simt: out of memory");
	if (s->in_launch)
		return emu_errf(err, err_n, "simt: launch from inside a kernel");
	if (emu_reserve_threads(s, (uint32_t)nthr) != 0 || emu_reserve_smem(s, smem_bytes) != 0)
		return emu_errf(err, err_n, "simt: no memory for %llu threads and %u bytes of shared memory",
				(unsigned long long)nthr, smem_bytes);
	s->n = (uint32_t)nthr;
	s->smem_n = smem_bytes;
	s->nwarps = (s->n + 31) / 32;
	s->fn = fn;
	s->params = params;
	for (uint32_t i = 0; i < s->n; i++) {
		SimtThread *th = &s->thr[i].th;
		th->tid[0] = i % block[0];
		th->tid[1] = i / block[0] % block[1];
		th->tid[2] = i / (block[0] * block[1]);
		for (int d = 0; d < 3; d++) {
			th->ntid[d] = block[d];
			th->nctaid[d] = grid[d];
		}
		th->smem = s->smem;
		th->barrier = emu_barrier;
		th->shfl = emu_shfl;
		th->emu = s;
		s->thr[i].lin = i;
		s->thr[i].warp = i / 32;
		s->thr[i].lane = i % 32;
	}
	s->in_launch = 1;
	s->stats.launches++;
	int rc = 0;
	for (unsigned z = 0; z < grid[2] && !rc; z++)
		for (unsigned y = 0; y < grid[1] && !rc; y++)
			for (unsigned x = 0; x < grid[0] && !rc; x++) {
				s->ctaid[0] = x;
				s->ctaid[1] = y;
				s->ctaid[2] = z;
				rc = emu_block(s, err, err_n);
			}
	s->in_launch = 0;
	return rc;
}

void simt_emu_stats(SimtEmuStats *out)
{
	if (emu_tls)
		*out = emu_tls->stats;
	else
		memset(out, 0, sizeof *out);
}

const char *simt_emu_switch_kind(void)
{
#if defined(EMU_SWITCH_X86)
	return "x86-64 asm";
#elif defined(EMU_SWITCH_A64)
	return "aarch64 asm";
#else
	return "ucontext";
#endif
}

void simt_emu_release(void)
{
	EmuState *s = emu_tls;
	if (!s || s->in_launch)
		return;
	emu_free_threads(s);
	free(s->smem);
	free(s);
	emu_tls = NULL;
}
