/* cg_cpu.h - the CPU backend: host feature detection, its targets, the C emitter and the
 * build step (runtime sources, the C compiler, a look at what it wrote). Outside codegen/cpu/ it is reached through
 * cg_backend_cpu (cg.h's interface); this header is for the backend's own files and tests. */
#ifndef BITNETC_CG_CPU_H
#define BITNETC_CG_CPU_H

#include "../cg.h"
#include "../cg_out.h"
#include "rt.h"

#include <sys/types.h>

/* Instruction set features the CPU kernels may use (runtime/rt.h: the program checks
 * them with the same detection). */
typedef RtCpuFeatures CgCpuFeatures;

/* ---- cg_cpu_detect.c ---- */

/* Fills f for the host (cpuid + xgetbv on x86-64; NEON on aarch64; nothing elsewhere). */
void cg_cpu_detect(CgCpuFeatures *f);
/* Space-separated names of the present features ("sse4.2 avx2 fma ...", or "none"). */
void cg_cpu_features_str(const CgCpuFeatures *f, char *buf, size_t n);
/* "x86_64", "aarch64", ... as compiled. */
const char *cg_cpu_arch(void);

/* ---- cg_cpu_backend.c ---- */

/* The CPU backend as the registry holds it. */
extern const CgBackend cg_backend_cpu;

/* ---- cg_cpu_targets.c ---- */

/* The CPU targets (cpu-generic, cpu-avx2, cpu-avx512, cpu-amx, cpu-neon, cpu-neon-dot,
 * cpu-sve, cpu-rv64, cpu-rvv, native) with their availability on a host with features f. Returns how many were
 * written (at most max). */
int cg_cpu_targets(const CgCpuFeatures *f, CgTargetInfo *out, int max);

/* ---- cg_cpu_tree.c ---- */

/* The Makefile, CMakeLists.txt and README.md of a `bitnetc emit` tree (CgBackend.tree). */
int cg_cpu_tree(const CgOpts *o, const char *about, CgOutput *out, BnErr *e);

/* ---- cg_cpu_emit.c ---- */

/* Renders a (post-dce) graph into the artifact "model.c" (one C file defining rt_model) and plans
 * the weights payload. A node it cannot handle: BN_EUNSUPPORTED naming the node. */
int cg_cpu_emit(const IrGraph *g, const CgOpts *o, CgOutput *out, BnErr *e);

/* ---- cg_cpu_build.c ---- */

/* The instruction set a target's kernels are written for. */
enum { CG_ISA_GENERIC, CG_ISA_AVX2, CG_ISA_AVX512, CG_ISA_NEON, CG_ISA_RVV, CG_ISA_SVE };
typedef struct {
	int level; /* CG_ISA_* */
	bool vnni; /* AVX2: AVX-VNNI (vpdpbusd on ymm); AVX512: AVX512_VNNI; NEON: dotprod
		    * (sdot), the same 4-byte dot product into int32 lanes. RVV (the vector
		    * extension 1.0, any VLEN): none of these; its kernel widens (vwmul). SVE
		    * (any vector length): none; its sdot is part of SVE itself */
	bool vbmi; /* AVX512: AVX512_VBMI (vpermb, the 64-entry byte lookup of the LUT kernels) */
	bool amx;  /* AVX512: AMX-TILE + AMX-INT8 (TDPBSSD), the GEMM of multi-token forwards */
} CgIsa;
/* The ISA of target name (native: the best this host has) and the CPU features the
 * program checks at start (rt_cpu_require: space-separated, "" for none). */
void cg_cpu_target_isa(const char *name, CgIsa *isa, char *features, size_t n);

/* One CPU target: one emitter for all of them; the target's row says everything else
 * (docs/targets.md): the kernels' instruction set, the CPU features its program checks at
 * start, the extra flags model.c is compiled with (NULL-terminated) and the machine its
 * programs run on, with a cross compiler that builds them elsewhere. */
typedef struct {
	const char *name;
	const char *desc;
	const char *const *cflags;
	CgIsa isa;
	const char *features; /* rt_cpu_require's list ("" none) */
	const char *arch;     /* the ELF machine of its programs ("x86-64", "aarch64",
			       * "riscv"); NULL: whatever the compiler makes */
	const char *cross;    /* how to build it on another host: the --cc (and --cflags) of a
			       * cross compiler; NULL where arch is NULL */
	const char *cc_marks; /* words in a compiler's name or --cflags that say it targets
			       * arch (space-separated) */
} CgCpuTarget;

/* The buildable CPU targets (cpu-generic, cpu-avx2, cpu-avx512, cpu-amx, cpu-neon,
 * cpu-neon-dot, cpu-sve, cpu-rv64, cpu-rvv, native); NULL if name is none of them. Any of them builds
 * on any host: the C compiler (--cc, e.g. a cross compiler) decides what the program runs
 * on. */
const CgCpuTarget *cg_cpu_target(const char *name);

/* Compiles and links the sources in dir into out_path (absolute) with the target's flags,
 * running the compiler inside dir with relative source paths (reproducible). cmd gets the
 * command line. A missing compiler or a failed compile: an error with the first lines
 * of its output. */
int cg_cc(const CgOpts *o, const CgCpuTarget *t, const char *dir, const char *out_path, char *cmd,
	  size_t cmd_n, BnErr *e);

/* ---- cg_cpu_cache.c ---- */

/* One entry of the cache of the runtime's compiled objects ($XDG_CACHE_HOME/bitnetc/runtime,
 * else ~/.cache/bitnetc/runtime): path "" when there is none to use. */
typedef struct {
	char key[33]; /* 128-bit hex */
	char path[4200];
} CgRtCache;
/* The entry for the runtime compiled with flags (the command less the compiler, the
 * sources and outputs) by o->cc: keyed by those, the compiler's path, size, time and
 * --version output, the runtime sources and bitnetc's version. False (path "") with
 * o->no_cache or when there is no cache directory or compiler. */
bool cg_rt_cache_key(const CgOpts *o, const char *const *flags, int n_flags, CgRtCache *c);
/* Writes the entry's objects names[0..n) into dir: 1 when it held exactly them, intact; 0
 * when missing, damaged or foreign (why says which). */
int cg_rt_cache_get(const CgRtCache *c, const char *dir, const char *const *names, int n,
		    char *why, size_t why_n);
/* Stores dir's objects names[0..n) as the entry (written beside it, renamed into place;
 * nothing when one is not an object file). Returns whether it did. */
bool cg_rt_cache_put(const CgRtCache *c, const char *dir, const char *const *names, int n);

/* ---- cg_cpu_out.c ---- */

/* cg_check_output: cg.h */

/* ---- cg_cpu_lut.c ---- */

/* Whether target ISA isa has a table-lookup family for i2s_x16 weights (AVX-512 with
 * VBMI, NEON, portable C; not AVX2), and its largest micro tile (groups of 16, tokens). */
bool cg_lut_available(const CgIsa *isa);
void cg_lut_max_tile(const CgIsa *isa, int *rg, int *tt);

/* ---- cg_cpu_amx.c ---- */

/* C text of the AMX tile layer every AMX kernel uses: BnTileCfg (the 64-byte palette-1
 * configuration) and the BN_TILE_* macros (LOADCONFIG, RELEASE, ZERO, LOADD, STORED,
 * DPBSSD), which are the intrinsics, or with -DBN_AMX_EMULATE a per-thread software tile
 * file. Needs <stdint.h>, <string.h> and (real tiles) <immintrin.h> before it. */
extern const char cg_amx_tiles_src[];

/* ---- cg_cpu_tune.c ---- */

/* Times every case in one generated program compiled for target with cc and cflags. */
int cg_cpu_tune_run(const char *target, const char *cc, const char *cflags, CgTuneCase *cases,
		    int n_cases, int verbose, BnErr *e);
/* The GEMM tile of target built with cflags: the AMX block (amx_tile; kind amx, or amx_emu
 * with -DBN_AMX_EMULATE) on a target with AMX, else the register tile. */
void cg_cpu_gemm_tile(const char *target, const char *cflags, CgGemmTile *t);
/* Times every candidate tile of the i2s_x16 GEMM (the AMX block on a target with AMX) for
 * each shape at nt tokens on this machine (one generated program compiled for target with
 * cc and cflags, run once) and fills in the fastest. Only targets with SIMD kernels have
 * tiles to tune (others: nothing to do); AMX blocks are timed only where the host has AMX
 * and the OS grants the tile state, or in software with -DBN_AMX_EMULATE (else note says
 * why not). */
int cg_cpu_tune_tiles(const char *target, const char *cc, const char *cflags,
		      CgTuneShape *shapes, int n_shapes, int nt, int verbose, char *note,
		      size_t note_n, BnErr *e);

#endif
