/* pass.h - graph passes: one file per pass, one registry (pass.c) that the driver and the
 * Lua pipeline walk, typed pass options, graph-level attributes, and the Lua pipeline
 * runner (passes/default.lua when no script is given). */
#ifndef BITNETC_PASS_H
#define BITNETC_PASS_H

#include "ir.h"

#include <stdbool.h>
#include <stdio.h>

/* ---- options --------------------------------------------------------------------- */

typedef enum { PASS_OPT_INT, PASS_OPT_FLOAT, PASS_OPT_STR, PASS_OPT_INTS } PassOptType;

/* One option a pass declares in the registry. */
typedef struct {
	const char *name;
	PassOptType type;
	const char *dflt; /* the default, written as on the command line ("1,8,32,128") */
	const char *help; /* one line */
} PassOptInfo;

/* One option value. pass and key point into the registry; s and ints are malloc'd. */
typedef struct {
	const char *pass;
	const char *key;
	PassOptType type;
	int64_t i;
	double f;
	char *s;
	int64_t *ints;
	int n_ints;
} PassOptVal;

/* A typed key/value list. As a pass's argument it holds that pass's options only, defaults
 * filled in (pass_run and the pipeline build that view), so accessors look up by key. As a
 * command-line list (--pass-opt) it holds "pass.key" entries for any pass. */
typedef struct PassOpts {
	int verbose; /* > 0: a pass reports what it changed on stderr */
	PassOptVal *v;
	int n, cap;
} PassOpts;

typedef int (*PassFn)(IrGraph *g, const PassOpts *opts, BnErr *e);

typedef struct {
	const char *name;
	PassFn fn;
	const char *contract; /* requires / produces / invalidates, one line */
	const char *summary;
	const PassOptInfo *opts; /* ends with {NULL}; NULL if none */
} PassInfo;

/* ---- pass.c: the registry and running one pass ------------------------------------- */

/* The registry, in pipeline order; *n gets the count. */
const PassInfo *pass_list(int *n);
/* NULL if there is no pass of that name. */
const PassInfo *pass_find(const char *name);
/* NULL if p has no option of that name. */
const PassOptInfo *pass_opt_info(const PassInfo *p, const char *key);
/* Runs the named pass with its defaults overridden by opts' entries (any opts entry with a
 * NULL pass or this pass's name; may be NULL), then ir_verify. A failure names the pass:
 * "pass NAME: ..." for the pass's own error, "after pass NAME the graph does not verify: ..."
 * for the verifier's. */
int pass_run(IrGraph *g, const char *name, const PassOpts *opts, BnErr *e);
/* Prints every pass with its contract, summary and options (for `bitnetc passes`). */
void pass_pipeline_describe(FILE *out);

/* ---- pass_opts.c: option lists ------------------------------------------------------ */

void pass_opts_free(PassOpts *o);
/* Parses "pass.key=value" (e.g. "batch_templates.sizes=1,16") against the registry and
 * adds it to o, replacing an earlier value of the same option. Errors name the unknown
 * pass, the unknown option (listing the pass's options) or the expected type. */
int pass_opts_parse(PassOpts *o, const char *spec, BnErr *e);
/* Sets pass.key from text written as on the command line. */
int pass_opts_set(PassOpts *o, const char *pass, const char *key, const char *value, BnErr *e);
/* Adds a typed value (v->pass and v->key are looked up in the registry; its s/ints are
 * copied). A type that does not match the declaration: BN_EINVAL naming both. */
int pass_opts_put(PassOpts *o, const PassOptVal *v, BnErr *e);
/* Builds p's view: its declared defaults, then the entries of each list in srcs (later
 * lists win) for p. dst is reset first; on failure it is left empty. */
int pass_opts_view(PassOpts *dst, const PassInfo *p, const PassOpts *const *srcs, int n_srcs,
		   BnErr *e);
/* Accessors for a pass's view: the value of key, or dflt if absent or of another type. */
int64_t pass_opt_int(const PassOpts *o, const char *key, int64_t dflt);
double pass_opt_float(const PassOpts *o, const char *key, double dflt);
const char *pass_opt_str(const PassOpts *o, const char *key, const char *dflt);
/* NULL (and *n = 0) if absent. */
const int64_t *pass_opt_ints(const PassOpts *o, const char *key, int *n);
/* "int", "float", "string", "int list" */
const char *pass_opt_type_name(PassOptType t);

/* ---- pass_gattr.c: graph-level attributes -------------------------------------------- */

/* Attributes of a whole graph (batch sizes, the weight layout chosen) that passes record and
 * codegen reads. The IR has no home for them, so they live in a side table keyed by the
 * graph's address: pass_pipeline_run clears a graph's entry when it starts, and the owner
 * calls pass_gattr_clear before ir_graph_free (a later graph at the same address must not
 * inherit them). Not thread-safe: one compile at a time per process. Keys and values are
 * copied. Setting fails only when out of memory. */
int pass_gattr_set_int(const IrGraph *g, const char *key, int64_t v, BnErr *e);
int pass_gattr_set_float(const IrGraph *g, const char *key, double v, BnErr *e);
int pass_gattr_set_str(const IrGraph *g, const char *key, const char *v, BnErr *e);
int pass_gattr_set_ints(const IrGraph *g, const char *key, const int64_t *v, int n, BnErr *e);
/* NULL if the graph has no such attribute. */
const IrAttr *pass_gattr_find(const IrGraph *g, const char *key);
/* All of a graph's attributes, in the order first set; *n gets the count. */
const IrAttr *pass_gattr_list(const IrGraph *g, int *n);
void pass_gattr_clear(const IrGraph *g);

/* ---- pass_target.c: what a pipeline script may branch on ----------------------------- */

typedef struct {
	const char *name;     /* e.g. "host", "cpu-avx2" */
	const char *backend;  /* the backend that builds it: "cpu", "cuda", "metal" */
	const char *arch;     /* the program's machine: "x86_64", "aarch64" */
	const char *features; /* space-separated names its backend defines (the CPU's:
			       * cg_cpu_features_str, "avx2 fma avx512_vnni") */
	int vector_bits;      /* the widest vector its kernels use; 0: scalar */
	int64_t l1d, l2, l3;  /* data cache sizes in bytes; 0 if unknown */
	int ncpu;             /* online CPUs; 0 if unknown */
} PassTarget;

/* The machine bitnetc runs on (as the first backend, the CPU's, describes the host;
 * sysconf/sysfs). The strings are static. */
const PassTarget *pass_target_host(void);
/* What a build for --target name may use: its name, what its backend says of it (the CPU:
 * the features its code is compiled for, none for cpu-generic, the host's for native) and
 * the host's caches (the program is expected to run on a machine like this one). NULL
 * name: the host. */
const PassTarget *pass_target_for(const char *name);

/* ---- pass_lua.c: pipelines ---------------------------------------------------------- */

/* Per-pass wall times of one pipeline run, in run order. */
typedef struct {
	char name[192]; /* "dce", "lua pass at mine.lua:12" */
	double seconds;
} PassTime;

typedef struct {
	PassTime *t;
	int n, cap;
} PassStats;

void pass_stats_free(PassStats *s);
/* "  NAME  12.345 ms" lines and a total, for -v. */
void pass_stats_print(const PassStats *s, FILE *out);

/* How a pipeline's Lua runs. Sandboxed unless unsafe: the base library without dofile and
 * loadfile, load of text chunks only, setmetatable without __gc, require of bitnetc and
 * the libraries present; string (no dump), table, math, utf8; io.write, io.stdout:write
 * and io.stderr:write only. No os, package, debug or coroutine. unsafe: Lua's standard
 * libraries, all of them, except that os.exit raises an error. Either way under two
 * limits, each an error naming the script's line: the seconds the script and its Lua
 * passes run (a count hook looks at the clock; C passes do not count) and the bytes the
 * Lua state holds (its allocator refuses more). pcall cannot catch either. */
enum { PASS_LUA_TIMEOUT = 60 };               /* seconds */
#define PASS_LUA_MEMORY ((int64_t)1 << 30)    /* bytes */

typedef struct {
	bool unsafe;    /* the full standard libraries: the script is trusted */
	double timeout; /* seconds; 0: PASS_LUA_TIMEOUT; < 0: no limit */
	int64_t memory; /* bytes; 0: PASS_LUA_MEMORY; < 0: no limit */
} PassLuaOpts;

typedef struct {
	bool verify_each;          /* verify after every pass (always when NDEBUG is undefined;
				    * Lua passes are always verified; the end of a pipeline too) */
	const char *dump_after;    /* pass name ("lua": every Lua pass): ir_print after it */
	FILE *dump_file;           /* where dump_after prints; NULL: stderr */
	int verbose;               /* handed to the passes */
	const PassOpts *cli_opts;  /* --pass-opt values: override the script's; may be NULL */
	const PassTarget *target;  /* bitnetc.target, and graph attribute "target" unless it is
				    * the host's; NULL: pass_target_host() */
	const char *cc;            /* graph attribute "cc": the C compiler of the build; may be NULL */
	const char *cflags;        /* graph attribute "cflags": the build's --cflags, which the
				    * timing programs get too; may be NULL */
	PassStats *stats;          /* NULL or where per-pass times are appended */
	FILE *progress;            /* NULL, or a terminal: the running pass's name on a line
				    * erased when it ends, and a line for each pass that took
				    * a second or more */
	PassLuaOpts lua;           /* the sandbox and its limits */
} PassRunOpts;

/* Runs a Lua pipeline script (NULL: the embedded passes/default.lua) on g: one lua_State,
 * set up inside lua_pcall; the script returns bitnetc.pipeline() with its steps, which then
 * run in order. Errors: Lua's "file:line: message" plus a traceback, or the failing pass by
 * name ("pass dce: ...", "after lua pass at mine.lua:12 the graph does not verify: ..."), or
 * a limit in one line ("mine.lua:7: time limit: ..."; BN_ENOMEM for memory).
 * opts may be NULL. On failure g may be partly transformed: emit nothing from it. */
int pass_pipeline_run(IrGraph *g, const char *script, const PassRunOpts *opts, BnErr *e);
/* The embedded default pipeline's source (passes/default.lua), NUL-terminated. */
const char *pass_default_pipeline(size_t *len);

/* ---- the passes, one per file ---------------------------------------------------- */

/* dce.c */
int pass_dce(IrGraph *g, const PassOpts *opts, BnErr *e);
/* verify.c */
int pass_verify(IrGraph *g, const PassOpts *opts, BnErr *e);
/* fuse.c */
int pass_fuse(IrGraph *g, const PassOpts *opts, BnErr *e);
/* One fusion: quant_act node j with the rmsnorm it alone reads (ids kept), or rmsnorm_quant
 * node j into the add whose sum it reads (the add's node becomes the add_rmsnorm_quant, node
 * j is removed and the nodes after it move down). And back: rmsnorm_quant node j split into
 * an rmsnorm inserted at j and the quant_act at j + 1; add_rmsnorm_quant node j into the add
 * at j and an rmsnorm_quant inserted at j + 1. Both refuse a graph with a memory plan where
 * the change needs a new one. */
int pass_fuse_node(IrGraph *g, IrId j, BnErr *e);
int pass_unfuse_node(IrGraph *g, IrId j, BnErr *e);
/* batch_templates.c */
int pass_batch_templates(IrGraph *g, const PassOpts *opts, BnErr *e);
/* tune_kernels.c */
int pass_tune_kernels(IrGraph *g, const PassOpts *opts, BnErr *e);
/* The tuning file shared by the passes that measure: lines "cpu TAB target TAB ..." keyed
 * by the CPU's model name (pass_tune_cpu_model) and the build target. pass_tune_path: the
 * option opt, else $BITNETC_TUNE_FILE, else $XDG_CACHE_HOME/bitnetc/tune.tsv, else
 * ~/.cache/bitnetc/tune.tsv; pass_tune_make_parent: mkdir -p of its directory. */
void pass_tune_cpu_model(char *out, size_t n);
void pass_tune_path(const char *opt, char *out, size_t n);
void pass_tune_make_parent(const char *path);
/* The rest of a tuning file line after "cpu TAB target TAB" when both match (line is cut
 * up); NULL for another machine or target, or a comment. */
const char *pass_tune_line(char *line, const char *cpu, const char *target);
/* lut_specialize.c */
int pass_lut_specialize(IrGraph *g, const PassOpts *opts, BnErr *e);
/* quantize_head.c */
int pass_quantize_head(IrGraph *g, const PassOpts *opts, BnErr *e);
/* infer_shapes.c */
int pass_infer_shapes(IrGraph *g, const PassOpts *opts, BnErr *e);
/* plan_memory.c */
int pass_plan_memory(IrGraph *g, const PassOpts *opts, BnErr *e);
/* plan_kv.c */
int pass_plan_kv(IrGraph *g, const PassOpts *opts, BnErr *e);
/* permute_weights.c */
int pass_permute_weights(IrGraph *g, const PassOpts *opts, BnErr *e);
/* Repacks constant id from its GGUF layout into layout (ir.h "weight layouts"), the data
 * in g's arena; a no-op if it is in that layout already. Errors name the value. */
int pass_relayout(IrGraph *g, IrId id, const char *layout, BnErr *e);

#endif
