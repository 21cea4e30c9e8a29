/* cg.h - the code generation backend interface, in the spirit of QBE's struct Target: each
 * backend (cpu/, cuda/, metal/) describes itself in one CgBackend (its targets, what the
 * passes may ask of them, emit, build), and one registry (cg_backend.c) answers `bitnetc
 * targets`, `bitnetc build` and the passes alike. Also the backend-neutral pieces every
 * backend shares: the text buffer, the emitted artifacts, the weights payload plan and its
 * writer, the scratch plan (cg_plan.c). */
#ifndef BITNETC_CG_H
#define BITNETC_CG_H

#include "ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One --target name as `bitnetc targets` lists it. "usable" is about this host
 * (instruction set present, LLVM backend built in, OS); "buildable" says whether `bitnetc
 * build` makes a program for it today; note says what it needs or why not, in a few
 * words. */
typedef struct {
	const char *name;    /* e.g. "cpu-avx2"; a family as "cuda-sm<NN>" */
	const char *backend; /* "cpu", "cuda", "metal" */
	const char *desc;
	bool usable;
	bool buildable;
	char note[160];
} CgTargetInfo;

/* ---- the text buffer every source emitter writes through (cg_buf.c) ---- */

typedef struct {
	char *data; /* NUL-terminated while len > 0 */
	size_t len, cap;
	bool oom;   /* an append failed; the text is incomplete */
} CgBuf;

/* Appends printf-style text; on allocation failure sets b->oom and returns -1. */
int cg_printf(CgBuf *b, const char *fmt, ...) BN_PRINTF(2, 3);
/* Appends n bytes (binary artifacts); -1 and b->oom on allocation failure. */
int cg_put(CgBuf *b, const void *data, size_t n);
void cg_buf_free(CgBuf *b);

/* ---- options and results of one build ---------------------------------- */

/* What a build makes: a program, or the model as a static or shared library. */
typedef enum { CG_LIB_NONE, CG_LIB_STATIC, CG_LIB_SHARED } CgLib;

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
	/* device backends: also compile the kernels for this host (model_host.o, run by the
	 * tests' SIMT emulator), and embed SASS from ptxas when it is found (cubin) */
	bool host_kernels;
	bool cubin;
	/* a library instead of a program (bitnetc build --lib / --shared): every API function
	 * named prefix_ (cg_lib.c), the runtime less the program's files (main.c,
	 * rt_session.c), and with linked_weights the payload linked in (weights.c, from
	 * weights.bin in the source directory) */
	CgLib lib;
	const char *prefix;
	bool linked_weights;
	const char *soname; /* a shared library's file name (its DT_SONAME) */
	/* --server: the compiler and linker flags of libmicrohttpd and libcjson (pkg-config's,
	 * split at spaces); the link adds the server's sources and -DBN_SERVER. NULL: none */
	const char *server_libs;
	/* compiler runs at once (bitnetc build -j; 0: $BITNETC_JOBS, else one per online CPU),
	 * and no_cache: compile the runtime even when the cache of its objects has them */
	int jobs;
	bool no_cache;
	/* --emit-c DIR: leave only sources there, and a Makefile with the commands the build
	 * ran (the CPU backend) */
	bool emit_makefile;
	/* bitnetc build --weights-file: the file's name (its last component), which the
	 * program's --help, --info and "no trailer" error name; NULL: weights appended */
	const char *weights_file;
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
	/* the mapped model file the constants may come from unchanged (src_fd: that file open,
	 * -1 or src_size 0: none): such bytes are copied file to file (copy_file_range) */
	const void *src_base;
	uint64_t src_size;
	int src_fd;
} CgPayload;

/* ---- what emit produces (cg_output.c) ------------------------------------- */

/* One file a backend emits: a source the build compiles (model.c), a header beside it, or
 * a binary (PTX, a metallib) that the build or the program loads. */
typedef enum { CG_ART_SOURCE, CG_ART_HEADER, CG_ART_BINARY } CgArtifactKind;

typedef struct {
	char name[64]; /* a plain file name, written into the build's source directory */
	CgArtifactKind kind;
	CgBuf bytes;
} CgArtifact;

/* What emit produces: any number of named artifacts and the payload they expect. */
typedef struct {
	CgArtifact *art;
	int n_art, cap_art;
	CgPayload payload;
	uint64_t scratch_bytes;
	int n_kernels;
} CgOutput;

/* Adds an empty artifact called name (a plain file name: no '/', not "." or "..", unique in
 * o) and returns its buffer to append to; NULL when out of memory or name is not allowed. */
CgBuf *cg_output_add(CgOutput *o, const char *name, CgArtifactKind kind);
/* NULL if o has no artifact of that name. */
const CgArtifact *cg_output_find(const CgOutput *o, const char *name);
void cg_output_free(CgOutput *o);
/* The RtModel initializer's facts every backend writes alike, from ",\n\t.version" to
 * "\t.decode = decode,\n": what the model is, its payload, its batch templates (n_bs of
 * them, in batch_sizes) and scratch; the generated file defines model_info, MAX_BATCH,
 * batch_sizes, kv_bytes and decode. */
/* s[0..n) as a C string literal, escaped, split into lines after each newline. */
void cg_put_cstr(CgBuf *b, const char *s, size_t n);
/* The forward templates of a build: the pipeline's batch sizes (o->batch_sizes), or 1 and
 * max_batch (in two); checked: ascending, from 1 to max_batch, max_batch in range. */
int cg_batch_templates(const CgOpts *o, int two[2], const int **bs, int *n_bs, BnErr *e);
void cg_put_model_facts(CgBuf *b, const IrGraph *g, const CgOpts *o, const CgOutput *out,
			int n_bs);

/* One file embedded in bitnetc at its build (the runtime sources: cg_runtime_src.c,
 * generated). */
typedef struct {
	const char *name;
	const unsigned char *data;
	size_t size;
} CgSource;

/* The runtime sources every program compiles (runtime/ less rt_cuda.c and rt_cuda.h;
 * cg_runtime_src.c, generated). */
extern const CgSource cg_runtime_sources[];
extern const int cg_n_runtime_sources;
/* What a CUDA program compiles besides them: rt_cuda.c (the driver through dlopen; link
 * with -ldl) and rt_cuda.h (cg_runtime_cuda_src.c, generated). */
extern const CgSource cg_runtime_cuda_sources[];
extern const int cg_n_runtime_cuda_sources;
/* What a program built with --server writes and compiles besides them: the HTTP server
 * (runtime/rt_http*; cg_runtime_server_src.c, generated), linked with libmicrohttpd and
 * libcjson (CgOpts.server_libs). */
extern const CgSource cg_runtime_server_sources[];
extern const int cg_n_runtime_server_sources;

/* Creates dir/name (never through a symbolic link) holding data. Errors name the path. */
int cg_write_file(const char *dir, const char *name, const void *data, size_t n, BnErr *e);

/* ---- a model as a library (cg_lib.c) ---------------------------------------------- */

enum { CG_LIB_PREFIX_MAX = 48 };
/* Whether p may prefix a library's functions: a C identifier, not the runtime's rt. */
int cg_lib_prefix_check(const char *p, BnErr *e);
/* The prefix a library named out gets by default: its file name less "lib" and any
 * extension, made an identifier (libtiny-2b.so.1 -> tiny_2b). */
void cg_lib_default_prefix(const char *out, char *buf, size_t n);
/* The files that name the API's functions prefix_X (bitnetc.h's bn_X, read from the
 * runtime's copy): bn_names.h (#define bn_X prefix_X, for compiling the library with
 * BN_NAMES), the product's header prefix.h (about: what it is the API of, for its
 * comment), the exported names one per line (objcopy --keep-global-symbols) and a linker
 * version script exporting them alone. */
typedef struct {
	CgBuf names_h, header, exports, version_script;
	int n_functions;
} CgLibFiles;
int cg_lib_files(const char *prefix, const char *about, CgLibFiles *out, BnErr *e);
void cg_lib_files_free(CgLibFiles *f);
/* weights.c: weights.bin (payload and trailer) linked in with .incbin (cg_lib.c says where
 * and the size limits), rt_linked_weights its start and end for the runtime. */
void cg_lib_weights_c(CgBuf *b);
/* Adds those files to out as artifacts (bn_names.h, the product's header named header:
 * "bn_lib.h" in a build's source directory, PREFIX.h in an emitted tree, bn_exports.txt,
 * bn_exports.map) and with linked weights.c. */
int cg_lib_add_artifacts(CgOutput *out, const char *prefix, const char *about,
			 const char *header, bool linked, BnErr *e);
/* Whether runtime source name is compiled into a library: every .c less the program's
 * own (main.c, rt_session.c). */
bool cg_lib_source(const char *name);
/* The fixed names a library build writes into its source directory besides the runtime's
 * objects (cg_lib_object_name(i): rt_api.o, ...; NULL past the last). */
extern const char *const cg_lib_file_names[];
extern const int cg_n_lib_file_names;
const char *cg_lib_object_name(int i);

/* ---- the C compiler, for every backend whose program has C in it (codegen/cpu/) ---- */

/* Runs the compiler command argv (argv[0] the compiler) inside dir without a shell; a
 * failure is an error with the first lines of its output. */
int cg_run_cc(const CgOpts *o, const char *const *argv, const char *dir, BnErr *e);
/* Several compiler commands (cmds[i], each NULL-terminated) inside dir, up to cg_cc_jobs(o)
 * at once; secs[i] and ok[i] (either may be NULL) get each one's wall time and whether it
 * ran and exited 0. The first failing command (in cmds' order) is the error; no new one
 * starts after a failure. */
int cg_run_cc_all(const CgOpts *o, const char *const *const *cmds, int n, const char *dir,
		  double *secs, bool *ok, BnErr *e);
/* How many compiler runs a build starts at once: o->jobs, else $BITNETC_JOBS, else one per
 * online CPU (at least 1, at most the cleanup handler's limit). */
int cg_cc_jobs(const CgOpts *o);
/* Checks what the compiler cc wrote to path (named shown in messages): present,
 * non-empty, an object file (object) or an executable, ELF or Mach-O, for the
 * architecture of CPU target (cpu-generic: any). */
int cg_check_output(const char *path, const char *shown, const char *cc, const char *target,
		    bool object, BnErr *e);
/* Appends argv (NULL-terminated) to cmd as one shell-like line (for -v and messages). */
void cg_cmd_append(char *cmd, size_t cmd_n, const char *const *argv);
/* Splits o->cflags at spaces into words (in buf, pointers in w); returns how many. */
int cg_split_cflags(const CgOpts *o, char *buf, size_t bn, const char **w, int max);
/* ---- the plans every backend shares (cg_plan.c) ------------------------------- */

enum { CG_PAYLOAD_ALIGN = 64 };

/* Plans the weights payload of g: the constants some node reads, back to back at 64-byte
 * aligned offsets in value order, then the tokenizer blob (tok, tok_bytes; NULL: none);
 * woff (per value, may be NULL) gets each constant's offset. The hash covers the padding. */
int cg_plan_payload(const IrGraph *g, const void *tok, uint64_t tok_bytes, CgPayload *p,
		    uint64_t *woff, BnErr *e);
/* Static scratch offsets for every activation (but the logits) and each node's temporary,
 * sized for max_batch tokens: the pipeline's plan (plan_memory) when it was made for
 * max_batch tokens (checked first), else the same planner run here. soff per value, tmp per
 * node; bytes gets the arena's size. */
int cg_plan_scratch(const IrGraph *g, int64_t max_batch, uint64_t *soff, uint64_t *tmp,
		    uint64_t *bytes, BnErr *e);
/* Writes the payload (the graph's constants at p's offsets) and the 32-byte trailer:
 * appended to path after padding it to a multiple of 4096, or (append false) as the
 * whole file; then flushes it to disk. Errors name shown (NULL: path). */
int cg_payload_write(const IrGraph *g, const CgPayload *p, const char *path, bool append,
		     const char *shown, BnErr *e);

/* ---- what the passes may ask of a target -------------------------------------- */

/* A target as the passes see it (bitnetc.target in a pipeline script). */
typedef struct {
	const char *arch;          /* the program's machine: "x86_64", "aarch64", "nvptx64" */
	char features[256];        /* space-separated names the backend defines ("avx2 fma"),
				    * "" or "none" for none */
	int vector_bits;           /* the widest vector its kernels use; 0: scalar */
	const char *weight_layout; /* the ternary weight layout its kernels read best:
				    * "i2s_x16" or "gguf" (permute_weights' auto) */
} CgTargetDesc;

/* The cost model of one kernel family for the i2s_x16 layout: vector operations per
 * 64-byte chunk (16 rows x 16 k) and token, as decode / min(tokens, tile_tokens) +
 * per_token (decode: the work a tile's tokens share). */
typedef struct {
	double decode, per_token;
	int tile_tokens;
} CgKernelCost;

/* One ternary matmul shape to tune ([k, n] i2s_x16 weight) and what was measured. */
typedef struct {
	int64_t k, n;
	int rows, tokens;  /* the fastest tile */
	double ns;         /* its time for nt tokens, one thread */
	double ns_default; /* the default tile's, for the report */
} CgTuneShape;
/* The GEMM tile a target's multi-token forwards read, for tune_kernels: which node
 * attribute holds it and under which kind its choices go into the tuning file. */
enum { CG_GEMM_TILE_MAX_CAND = 8 };
typedef struct {
	const char *attr; /* "tile" (the SIMD register tile) or "amx_tile" (the AMX block) */
	const char *kind; /* its tuning-file kind: "" for the register tile (those lines name
			   * no kind, as files written before AMX tiles did), "amx", or
			   * "amx_emu" (timed on the software tiles of -DBN_AMX_EMULATE: a
			   * test of the plumbing, never read by a build of the instructions) */
	/* the tiles a file line may name ({rows, tokens}); 0: any rows 16..128 in steps of
	 * 16 with tokens 1..64 (the register tile's range) */
	int n_cand;
	int cand[CG_GEMM_TILE_MAX_CAND][2];
} CgGemmTile;

/* One kernel to time: a ternary matmul of an i2s_x16 weight [k, n] over nt tokens with
 * kernel kind ("simd", "lut", ...) and tile {rows, tokens} (0: the kind's default); ns gets
 * its best time on one thread. */
typedef struct {
	int64_t k, n;
	int nt;
	const char *kernel;
	int rows, tokens;
	double ns;
} CgTuneCase;

/* ---- the backend interface -------------------------------------------------- */

/* What a build makes: a program (the weights payload appended to it) today; a library
 * (the payload in a file of its own) later. */
typedef enum { CG_PRODUCT_EXECUTABLE, CG_PRODUCT_LIBRARY } CgProduct;

typedef struct CgBackend {
	const char *name; /* "cpu", "cuda", "metal" */
	const char *desc;

	/* -- targets -- */
	/* Writes its targets with their availability on this host; returns how many (at
	 * most max). */
	int (*targets)(CgTargetInfo *out, int max);
	/* Whether target name (a --target value) is one of its targets. */
	bool (*claims)(const char *name);
	/* Whether it builds target name today (false: listed, "not yet buildable"). */
	bool (*buildable)(const char *name);

	/* -- for the passes; any may be NULL (nothing to choose, nothing to measure) -- */
	/* Fills d for target name, or for this host when name is NULL. */
	void (*describe)(const char *name, CgTargetDesc *d);
	/* The cost of kernel family kind ("simd": multiply-add, "lut": table lookup) on target
	 * name; false when the target has no such family (why gets the reason). */
	bool (*kernel_cost)(const char *name, const char *kind, CgKernelCost *c, char *why,
			    size_t why_n);
	/* Times every case in one program built for target name with the compiler cc and the
	 * build's extra flags cflags (--cflags; NULL: none). */
	int (*tune_run)(const char *name, const char *cc, const char *cflags, CgTuneCase *cases,
			int n_cases, int verbose, BnErr *e);
	/* The GEMM tile of target name built with cflags: its attribute, tuning-file kind
	 * and valid choices. NULL hook: "tile", kind "", any register tile. */
	void (*gemm_tile)(const char *name, const char *cflags, CgGemmTile *t);
	/* Times every candidate GEMM tile (gemm_tile's kind) of each shape at nt tokens and
	 * fills in the fastest; a target without tiles to choose does nothing. When this
	 * host cannot time them (no AMX, the OS refuses the tile state) it times nothing,
	 * says why in note (note_n bytes; "" otherwise) and returns 0. */
	int (*tune_tiles)(const char *name, const char *cc, const char *cflags,
			  CgTuneShape *shapes, int n_shapes, int nt, int verbose, char *note,
			  size_t note_n, BnErr *e);

	/* -- emit and build (NULL: the backend cannot build yet) -- */
	/* Renders a (post-dce) graph into out's artifacts and plans the payload. */
	int (*emit)(const IrGraph *g, const CgOpts *o, CgOutput *out, BnErr *e);
	/* The runtime sources written beside the artifacts (and into --emit-c DIR); *n gets
	 * how many. */
	const CgSource *(*runtime)(int *n);
	/* Compiles and links what is in dir (the artifacts and the runtime) into out_path
	 * (absolute; its product), with the compiler and flags of o and the target, and checks
	 * what the compiler wrote (errors name shown). cmd gets the command lines. */
	int (*build)(const CgOpts *o, const char *dir, const char *out_path,
		     const char *shown, char *cmd, size_t cmd_n, BnErr *e);
	/* The names of the files emit and build write into the source directory, which
	 * --emit-c DIR keeps (the artifacts, what the compiler makes of them, the runtime
	 * sources): the first is the main source, beginning with the comment "NAME -
	 * generated by bitnetc" (cg_out.h). Returns how many were written (at most max);
	 * NULL: none. */
	int (*emit_files)(const char **names, int max);
	/* The build files of a source tree that builds the model as a library without
	 * bitnetc (bitnetc emit): added to out (Makefile, CMakeLists.txt, README.md) for
	 * o->prefix and o->target; about says what model it is. NULL: the backend has none. */
	int (*tree)(const CgOpts *o, const char *about, CgOutput *out, BnErr *e);
	CgProduct product;

	/* -- what `bitnetc version` says of this host; NULL: nothing -- */
	/* The tools it builds with as found here (libraries, assemblers), and the hardware of
	 * this host its targets run on: buf gets whole lines, each ending in '\n' ("" for
	 * none). Every backend's tools come first, then every backend's host lines, each in
	 * registry order (cg_host_info). */
	void (*tools_info)(char *buf, size_t n);
	void (*host_info)(char *buf, size_t n);
} CgBackend;

/* A --target resolved through the registry. */
typedef struct {
	const CgBackend *backend;
	const char *name;
	bool buildable;
} CgTarget;

/* ---- the registry (cg_backend.c) -------------------------------------------- */

/* Every backend: the built-in ones (cpu, cuda, metal, in that order), then any registered;
 * *n gets the count. */
const CgBackend *const *cg_backends(int *n);
/* Adds a backend after the built-in ones (tests); -1 when the table is full. */
int cg_backend_register(const CgBackend *b);
/* Removes a registered backend again. */
void cg_backend_unregister(const CgBackend *b);
/* Resolves a --target name: 0 and t filled, or -1 when no backend claims it. */
int cg_target_find(const char *name, CgTarget *t);
/* The backend of target name for the passes: its owner, else the first (the CPU backend,
 * whose hooks treat a name it does not know as its portable target). */
const CgBackend *cg_backend_of(const char *name);
/* Every backend's targets, in registry order; returns how many (at most max). */
int cg_targets_list(CgTargetInfo *out, int max);
/* The buildable targets, comma-separated ("cpu-generic, cpu-avx2, ..."), for messages. */
const char *cg_target_names(void);
/* What `bitnetc version` prints about this host: every backend's tools_info, then every
 * backend's host_info, in registry order, into buf (cut at n). */
void cg_host_info(char *buf, size_t n);
/* Writes every artifact of out and the backend's runtime sources into dir. */
int cg_sources_write(const CgBackend *b, const char *dir, const CgOutput *out, BnErr *e);

#endif
