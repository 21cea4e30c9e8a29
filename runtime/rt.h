/* rt.h - the runtime every generated binary links: token lists, sampling, logits output.
 * Depends on libc and pthreads only, so it carries its own error type (same shape as BnErr). */
#ifndef BITNETC_RT_H
#define BITNETC_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rt_model.h"

typedef enum {
	RT_OK = 0,
	RT_EIO,    /* cannot open or write a file */
	RT_EINVAL, /* bad argument (a malformed token list) */
	RT_ENOMEM, /* allocation failed */
} RtCode;

#if defined(__GNUC__)
#define RT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RT_PRINTF(a, b)
#endif

/* Mirrors BnErr so that a driver can hand either to the same reporting code. */
typedef struct {
	int code;
	char msg[512];
} RtErr;

/* Sets e (if non-NULL) and returns code (rt_err.c). */
int rt_err(RtErr *e, int code, const char *fmt, ...) RT_PRINTF(3, 4);

/* ---- token lists (rt_tokens.c) ----------------------------------------- */

/* Parses "1,2,3" (spaces around items allowed) into a malloc'd array of ids in
 * [0, INT32_MAX]; *n gets the count (at least 1). Errors name the item by position and
 * text: empty list, empty item ("1,,2"), not a non-negative integer, out of range. */
int rt_parse_tokens(const char *s, int32_t **ids, int *n, RtErr *e);

/* ---- sampling (rt_sample.c) -------------------------------------------- */

/* Index of the largest of x[0..n); ties go to the lowest index (as the reference's greedy
 * sampler). NaNs never win; all-NaN or n <= 0 gives 0. */
int64_t rt_argmax(const float *x, int64_t n);

/* rt_cpu.c: the instruction set features code may use: present in the CPU and their
 * register state saved by the OS (XCR0). */
typedef struct {
	bool x86;
	bool sse4_2, avx2, fma, f16c;
	bool avx512f, avx512bw, avx512vl, avx512_vnni, avx512_vbmi;
	bool avx_vnni;
	bool amx_tile, amx_int8;
	bool neon;    /* aarch64: Advanced SIMD, part of the baseline */
	bool dotprod; /* aarch64: SDOT/UDOT (FEAT_DotProd; "asimddp" in /proc/cpuinfo) */
	bool rv64;    /* a riscv64 CPU (rv64gc: the baseline of Linux distributions) */
	bool rvv;     /* riscv64: the Vector extension 1.0 ("v" in the ISA string, HWCAP bit V) */
	bool sve;     /* aarch64: the Scalable Vector Extension (HWCAP_SVE; "sve" in /proc/cpuinfo) */
	int sve_bits; /* aarch64 with sve: this thread's vector length in bits (128..2048) */
} RtCpuFeatures;
/* What this CPU has, less what BITNETC_CPU_MASK hides (the compiler's native and targets
 * and the program's check all use it). */
void rt_cpu_detect(RtCpuFeatures *f);
/* What this CPU has, whatever BITNETC_CPU_MASK says. */
void rt_cpu_detect_unmasked(RtCpuFeatures *f);
/* BITNETC_CPU_MASK=FAMILY, a host-feature override for tests: rt_cpu_detect keeps only the
 * features of FAMILY and hides the rest: generic (none), avx2 (sse4.2 avx2 fma f16c
 * avx_vnni), avx512 (those and avx512f avx512bw avx512vl avx512_vnni avx512_vbmi), amx
 * (those and amx_tile amx_int8), neon, neon-dot (neon dotprod), sve (neon dotprod sve), rvv
 * (rvv). It only hides: a feature
 * the CPU lacks stays absent. Unset or empty: nothing hidden. rt_cpu_mask returns 0 with
 * *family the family (NULL when unset), or -1 for a value that names no family (then
 * rt_cpu_detect hides everything), with the reason in why. */
#define RT_CPU_MASK_ENV "BITNETC_CPU_MASK"
int rt_cpu_mask(const char **family, char *why, size_t n);
/* 0 if this CPU has every feature in the space-separated list (names as
 * cg_cpu_features_str writes them: "avx2 fma f16c avx512f ..."); else -1 with the missing
 * (or unknown) ones in missing. */
int rt_cpu_require(const char *features, char *missing, size_t n);
/* Asks the OS for what listed features need before their first use: the AMX tile state
 * (amx_tile) on Linux. 0 if nothing is needed or it was granted; else -1 with the reason
 * in why (also when rt_cpu_detect does not report amx_tile). The generated AMX kernels ask
 * by themselves too (cg_cpu_amx.c), so a program with its own main() runs them. */
int rt_cpu_enable(const char *features, char *why, size_t n);

/* A sampler with llama.cpp's defaults and semantics. Each step applies, in this order
 * (llama.cpp's common sampler chain):
 *   repeat penalty (tokens among the last repeat_last_n accepted: l > 0 ? l/pen : l*pen),
 *   then the presence and frequency penalties over the same window (l -= count * frequency
 *   + (count > 0) * presence, OpenAI's definition) -> top-k -> top-p (over the softmax of what is left) -> min-p (p >= min_p * p_max)
 *   -> temperature -> draw from the softmax.
 * temp <= 0 is greedy: the argmax of the penalized logits, ties to the lowest id. */
typedef struct {
	float temp;            /* 0.8; <= 0: greedy */
	int32_t top_k;         /* 40; <= 0: off */
	float top_p;           /* 0.95; >= 1: off */
	float min_p;           /* 0.05; <= 0: off */
	float repeat_penalty;  /* 1.0 (off) */
	int32_t repeat_last_n; /* 64; 0: off (the caller turns llama.cpp's -1 into n_ctx) */
	uint64_t seed;         /* the PRNG stream; same seed, same draws */
	float presence_penalty;  /* 0 (off) */
	float frequency_penalty; /* 0 (off) */
} RtSamplerParams;

typedef struct RtSampler RtSampler;

/* llama.cpp's defaults, with seed 0 (the caller picks a real one: rt_seed_random). */
RtSamplerParams rt_sampler_defaults(void);
/* A seed from the clock, the pid and an address, for runs without --seed. */
uint64_t rt_seed_random(void);
/* splitmix64: advances *s and returns the next 64-bit value, a bijection of *s (seeds the
 * sampler's stream, and mkmodel's per-tensor streams). */
uint64_t rt_splitmix64(uint64_t *s);
/* NULL on allocation failure or n_vocab < 1. */
RtSampler *rt_sampler_new(const RtSamplerParams *p, int64_t n_vocab);
void rt_sampler_free(RtSampler *s);
/* Picks a token from logits[0..n_vocab) (not modified; NaN counts as -inf). */
int32_t rt_sampler_sample(RtSampler *s, const float *logits);
/* Records a token (prompt or generated) in the repeat-penalty window. */
void rt_sampler_accept(RtSampler *s, int32_t token);
/* Empties the repeat-penalty window (the PRNG stream goes on). */
void rt_sampler_reset(RtSampler *s);

/* Seconds on a monotonic clock (rt_pool.c), for timings. */
double rt_now(void);

/* ---- the weights payload (rt_weights.c; hash and trailer in rt_model.h) ------ */

typedef struct {
	const uint8_t *data; /* the payload: read-only (a mapping, or the anonymous copy) */
	uint64_t size;
	int embedded;        /* 1: appended to the executable (or linked into a library),
	                      * 0: a --weights-file */
	char path[4096];     /* the file as named in messages */
	void *map;           /* what rt_weights_unmap releases */
	size_t map_len;
	/* how the payload is held (rt_weights_load) */
	int copied;          /* 1: copied into anonymous memory (map), 0: mapped or linked */
	int locked;          /* mlock()ed */
	const void *lock_addr; /* what rt_weights_unmap munlocks when map does not cover it */
	size_t lock_len;
	uint64_t huge_pages; /* 2 MiB pages backing the copy, from /proc/self/smaps */
	double load_s;       /* seconds to read (copy) or map the payload */
	char thp[16];        /* transparent huge pages mode (always, madvise, never; "" unknown) */
} RtWeights;

/* How rt_weights_load holds the payload. */
enum {
	RT_WEIGHTS_MMAP = 1,  /* keep the lazy mapping (or the library's linked bytes) */
	RT_WEIGHTS_MLOCK = 2, /* mlock() whichever memory holds the payload */
	/* The blob is a read-only file mapping (weights linked into a library): the pages of
	 * it the copy read are dropped from the process (MADV_DONTNEED; they stay in the page
	 * cache), so that the copy does not double the resident set. Never for heap memory. */
	RT_WEIGHTS_DROP_BLOB = 4,
};
/* Called in the loading thread as the copy proceeds (done of total bytes). */
typedef void (*RtProgressFn)(void *user, uint64_t done, uint64_t total);
typedef struct {
	int flags;       /* RT_WEIGHTS_* */
	int threads;     /* readers of the copy; 0: up to 4, one per online CPU */
	RtProgressFn progress; /* NULL: none */
	void *user;
} RtLoadOpts;

/* Maps the payload described by the trailer (RtWeightsTrailer) at the end of path, or of
 * the running executable when path is NULL (argv0 finds it where /proc/self/exe is
 * missing). The payload must have want_bytes bytes and the trailer's hash must equal
 * want_hash (compared, not recomputed). Errors name the file: no trailer (stripped?),
 * truncated, misaligned, another model's weights. */
int rt_weights_map(RtWeights *w, const char *path, const char *argv0, uint64_t want_bytes,
		   uint64_t want_hash, RtErr *e);
/* A field ("Rss", "AnonHugePages") of the mapping that starts at addr, in kB, from
 * /proc/self/smaps; -1 when unknown. */
int64_t rt_smaps_kb(const void *addr, const char *field);
/* The payload linked into a library: blob is n bytes, the payload then its trailer, as a
 * weights file holds them (bitnetc build --lib). Checked as rt_weights_map checks a file;
 * nothing is mapped or copied. name is how messages name it. */
int rt_weights_mem(RtWeights *w, const void *blob, uint64_t n, const char *name,
		   uint64_t want_bytes, uint64_t want_hash, RtErr *e);
void rt_weights_unmap(RtWeights *w);
/* rt_weights_map (path) or rt_weights_mem (blob, when path is NULL and blob is not), then
 * how lo says to hold the payload: by default copied into 2 MiB-aligned anonymous memory
 * (madvise MADV_HUGEPAGE) by a few threads reading large blocks, then made read-only, so
 * that where the page cache put the file does not decide the decode speed; or the lazy
 * mapping (RT_WEIGHTS_MMAP). RT_WEIGHTS_MLOCK locks it, refused (RT_ENOMEM) when
 * RLIMIT_MEMLOCK is smaller than the payload. */
int rt_weights_load(RtWeights *w, const char *path, const char *argv0, const void *blob,
		    uint64_t blob_n, const char *blob_name, uint64_t want_bytes,
		    uint64_t want_hash, const RtLoadOpts *lo, RtErr *e);
/* One line on how w holds the payload: "copied into 1178 MiB of anonymous memory, 589 huge
 * pages (transparent huge pages: madvise), 0.41 s" or "mapped lazily from FILE". */
void rt_weights_describe(const RtWeights *w, char *buf, size_t n);
/* The 32 on-disk trailer bytes (little-endian) for a payload at offset (4096-aligned). */
void rt_weights_trailer_pack(unsigned char out[32], uint64_t offset, uint64_t size,
			     uint64_t hash);
/* A path that opens the running executable: /proc/self/exe on Linux, else argv0 resolved
 * through $PATH. */
int rt_exe_path(const char *argv0, char *out, size_t n, RtErr *e);
/* argv0 resolved the way the shell did: as a path if it has a slash, else the first
 * executable file of that name in path_env (":"-separated). 0 if found, -1 if not. */
int rt_exe_search_path(const char *argv0, const char *path_env, char *out, size_t n);

/* ---- the machine (rt_api.c) --------------------------------------------- */

/* Bytes of physical memory; 0 if unknown. */
uint64_t rt_phys_ram(void);

/* ---- float output (rt_io.c) -------------------------------------------- */

/* Opens path for writing raw float rows; errors name the path. */
FILE *rt_f32_open(const char *path, RtErr *e);
/* Appends n floats as little-endian float32 (byte-swapped on big-endian hosts). */
int rt_write_f32(FILE *f, const char *path, const float *x, size_t n, RtErr *e);
/* Flushes and closes; a failed flush (disk full) is an error naming the path. */
int rt_f32_close(FILE *f, const char *path, RtErr *e);

#endif
