/* cg.h - what every code generation backend describes about itself: its targets and
 * whether this host can use them. Included by cpu/cg_cpu.h, cuda/cg_cuda.h, metal/cg_metal.h. */
#ifndef BITNETC_CG_H
#define BITNETC_CG_H

#include "ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One --target name. "usable" is about this host (instruction set present, LLVM backend
 * built in, OS); note says what it needs or why it is not usable, in a few words. */
typedef struct {
	const char *name;    /* e.g. "cpu-avx2" */
	const char *backend; /* "cpu", "cuda", "metal" */
	const char *desc;
	bool usable;
	char note[160];
} CgTargetInfo;

/* ---- the text buffer every source emitter writes through (cpu/cg_buf.c) ---- */

typedef struct {
	char *data; /* NUL-terminated while len > 0 */
	size_t len, cap;
	bool oom;   /* an append failed; the text is incomplete */
} CgBuf;

/* Appends printf-style text; on allocation failure sets b->oom and returns -1. */
int cg_printf(CgBuf *b, const char *fmt, ...) BN_PRINTF(2, 3);
void cg_buf_free(CgBuf *b);

/* ---- options and results of one build ---------------------------------- */

typedef struct {
	const char *target;   /* --target name */
	const char *cc;       /* C compiler (default "cc") */
	/* extra flags for every compiler command (model.c, and the runtime with the link),
	 * split at spaces (--cflags, e.g. "-DBN_AMX_EMULATE"); NULL: none */
	const char *cflags;
	const char *opt;      /* "-O0".."-O3" (default "-O2") */
	int max_batch;        /* tokens per multi-token forward call (default 32) */
	/* the forward functions to emit, by token count (batch_templates' batch_sizes):
	 * ascending, distinct, starting at 1, the last == max_batch; NULL: {1, max_batch} */
	const int *batch_sizes;
	int n_batch_sizes;
	const char *pipeline; /* the passes that ran, for --info */
	int64_t bos, eos;     /* special token ids from the model file, -1 if none */
	/* the tokenizer blob (rt_tok_build), placed after the constants in the payload;
	 * NULL: the program takes token ids only */
	const void *tok_blob;
	uint64_t tok_bytes;
	int chat_template;    /* RtChatTemplate to bake in; 0: none */
	int verbose;
} CgOpts;

/* Where each constant of the graph lives in the weights payload: back to back, each at a
 * 64-byte aligned offset, in its GGUF byte layout. */
typedef struct {
	int n;
	IrId *ids;        /* constant values, in payload order */
	uint64_t *off;    /* their offsets */
	const void *tok;  /* the tokenizer blob after the constants (CgOpts.tok_blob), or NULL */
	uint64_t tok_off, tok_bytes;
	uint64_t size;    /* payload bytes */
	uint64_t hash;    /* rt_weights_hash of the payload */
} CgPayload;

/* What emit produces: the generated sources and the payload they expect. */
typedef struct {
	CgBuf model_c;
	CgPayload payload;
	uint64_t scratch_bytes;
	int n_kernels;
} CgOutput;

void cg_output_free(CgOutput *o);

/* One code generation target: emit renders the graph, build compiles the sources in dir
 * (written by cg_write_sources) and links the program at out_path. */
typedef struct CgTarget {
	const char *name;
	const char *desc;
	int (*emit)(const IrGraph *g, const CgOpts *o, CgOutput *out, BnErr *e);
	/* extra compiler flags of the target, NULL-terminated */
	const char *const *cflags;
} CgTarget;

#endif
