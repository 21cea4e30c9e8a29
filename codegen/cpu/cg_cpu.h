/* cg_cpu.h - the CPU backend: host feature detection, its targets, the C emitter and the
 * build step (runtime sources, the C compiler). Outside codegen/cpu/ it is reached through
 * cg_backend_cpu (cg.h's interface); this header is for the backend's own files and tests. */
#ifndef BITNETC_CG_CPU_H
#define BITNETC_CG_CPU_H

#include "../cg.h"
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
 * native) with their availability on a host with features f. Returns how many were
 * written (at most max). */
int cg_cpu_targets(const CgCpuFeatures *f, CgTargetInfo *out, int max);

/* ---- cg_cpu_emit.c ---- */

/* Renders a (post-dce) graph into the artifact "model.c" (one C file defining rt_model) and plans
 * the weights payload. A node it cannot handle: BN_EUNSUPPORTED naming the node. */
int cg_cpu_emit(const IrGraph *g, const CgOpts *o, CgOutput *out, BnErr *e);

/* ---- cg_cpu_build.c ---- */

/* The instruction set a target's kernels are written for. */
enum { CG_ISA_GENERIC, CG_ISA_AVX2, CG_ISA_AVX512, CG_ISA_NEON };
typedef struct {
	int level; /* CG_ISA_* */
	bool vnni; /* AVX2: AVX-VNNI (vpdpbusd on ymm); AVX512: AVX512_VNNI; NEON: dotprod
		    * (sdot), the same 4-byte dot product into int32 lanes */
	bool vbmi; /* AVX512: AVX512_VBMI (vpermb, the 64-entry byte lookup of the LUT kernels) */
	bool amx;  /* AVX512: AMX-TILE + AMX-INT8 (TDPBSSD), the GEMM of multi-token forwards */
} CgIsa;
/* The ISA of target name (native: the best this host has) and the CPU features the
 * program checks at start (rt_cpu_require: space-separated, "" for none). */
void cg_cpu_target_isa(const char *name, CgIsa *isa, char *features, size_t n);

/* One CPU target: one emitter for all of them; the target decides the kernels' instruction
 * set (cg_cpu_target_isa) and the extra flags model.c is compiled with (NULL-terminated). */
typedef struct {
	const char *name;
	const char *desc;
	const char *const *cflags;
} CgCpuTarget;

/* The buildable CPU targets (cpu-generic, cpu-avx2, cpu-avx512, cpu-amx, cpu-neon,
 * cpu-neon-dot, native); NULL if name is none of them. Any of them builds on any host: the C compiler
 * (--cc, e.g. a cross compiler) decides what the program runs on. */
const CgCpuTarget *cg_cpu_target(const char *name);

/* The runtime sources, embedded in bitnetc at its build (cg_runtime_src.c, generated). */
extern const CgSource cg_runtime_sources[];
extern const int cg_n_runtime_sources;

/* Removes what the build wrote into a private source directory, then dir itself. */
void cg_remove_sources(const char *dir);
/* Compiles and links the sources in dir into out_path (absolute) with the target's flags,
 * running the compiler inside dir with relative source paths (reproducible). cmd gets the
 * command line. A missing compiler or a failed compile: an error with the first lines
 * of its output. */
int cg_cc(const CgOpts *o, const CgCpuTarget *t, const char *dir, const char *out_path, char *cmd,
	  size_t cmd_n, BnErr *e);
/* Runs the compiler command argv (argv[0] the compiler) inside dir without a shell; a
 * failure is an error with the first lines of its output. */
int cg_run_cc(const CgOpts *o, const char *const *argv, const char *dir, BnErr *e);

/* ---- cg_cpu_out.c ---- */

/* The files one build reads and writes (NULL: not used). */
typedef struct {
	const char *model, *pipeline;           /* read */
	const char *out, *weights, *tune_file; /* written (replaced, or appended to) */
	const char *emit_dir;                   /* --emit-c: model.c and the runtime sources */
} CgBuildFiles;
/* Refuses a build that would destroy data: an output that is not a regular file (or a new
 * one in an existing directory; emit_dir is made first, as the build would), one that is an input or another output (compared as
 * files: device and inode, or directory and name for one not there yet), and an --emit-c
 * directory holding files of the names it writes that an earlier --emit-c did not write.
 * The message names the file and the problem. */
int cg_build_files_check(const CgBuildFiles *f, BnErr *e);
/* The -o / --weights-file check alone: path (shown with role) is a regular file or a
 * new name in an existing directory. */
int cg_out_check(const char *path, const char *role, BnErr *e);
/* A symbolic link's target (the file a build replaces); anything else as is. */
void cg_out_resolve(const char *path, char *buf, size_t n);
/* Creates an empty temporary file beside dest (tmp gets its name) and registers it for
 * removal (*slot, for cg_cleanup_remove or cg_out_commit). */
int cg_out_temp(const char *dest, char *tmp, size_t n, int *slot, BnErr *e);
/* Replaces dest with the complete temporary file tmp (mode set first); dest is checked
 * again. Errors name shown. */
int cg_out_commit(int slot, const char *tmp, const char *dest, const char *shown,
		  const char *role, mode_t mode, BnErr *e);
/* Installs the handler of SIGINT, SIGTERM, SIGHUP and SIGPIPE (those not ignored): it stops the
 * running compiler, removes every registered path and lets the signal kill the process. */
void cg_cleanup_install(void);
/* Registers a temporary file (or with dir, a private source directory: its sources, then
 * itself) for removal; returns its slot, -1 when the table is full. */
int cg_cleanup_add(const char *path, bool dir);
/* Forgets a slot (renamed into place); cg_cleanup_remove removes what it names now. */
void cg_cleanup_drop(int slot);
void cg_cleanup_remove(int slot);
/* Holds the signals back (cg_cleanup_release delivers them): around steps that must
 * happen together, such as the renames of the program and its weights file. */
void cg_cleanup_hold(void);
void cg_cleanup_release(void);
/* Forks argv (execvp) inside dir, stdout and stderr to out_fd, close_fd closed; with the
 * handler installed in its own process group, stopped by it. cg_cleanup_reaped once
 * waited for. Returns the pid, -1 on failure (errno). */
pid_t cg_cleanup_spawn(const char *const *argv, const char *dir, int out_fd, int close_fd);
void cg_cleanup_reaped(pid_t pid);
/* Checks what the compiler cc wrote to path (named shown in messages): present,
 * non-empty, an object file (object) or an executable, ELF or Mach-O, for the
 * architecture of target (cpu-generic: any). */
int cg_check_output(const char *path, const char *shown, const char *cc, const char *target,
		    bool object, BnErr *e);

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

/* Times every case in one generated program compiled for target with cc. */
int cg_cpu_tune_run(const char *target, const char *cc, CgTuneCase *cases, int n_cases,
		    int verbose, BnErr *e);
/* Times every candidate tile of the i2s_x16 GEMM for each shape at nt tokens on this
 * machine (one generated program compiled for target with cc, run once) and fills in the
 * fastest. Only targets with SIMD kernels have tiles to tune (others: nothing to do). */
int cg_cpu_tune_tiles(const char *target, const char *cc, CgTuneShape *shapes, int n_shapes,
		      int nt, int verbose, BnErr *e);

#endif
