/* rt_model.h - the contract between a generated model (model.c from codegen) and the runtime
 * it links with: what the model describes about itself, the state a decode call runs in,
 * and the thread pool its kernels split work over. libc + pthreads only. */
#ifndef BITNETC_RT_MODEL_H
#define BITNETC_RT_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* ---- thread pool (rt_pool.c) ------------------------------------------- */

typedef struct RtPool RtPool;

/* n threads in all, the caller's included (n >= 1); NULL if threads cannot start. */
RtPool *rt_pool_new(int n);
void rt_pool_free(RtPool *p);
int rt_pool_threads(const RtPool *p);
/* Runs fn(arg, ith, nth) on every thread (ith = 0..nth-1; the caller is ith 0) and returns
 * when all have finished. Cheap enough to call once per kernel. */
void rt_pool_run(RtPool *p, void (*fn)(void *arg, int ith, int nth), void *arg);
/* rt_pool_run timed for a profiled decode: each thread's time in fn, and their mean's
 * difference to the call's wall time (dispatch and idle threads) added to
 * prof->sec[RT_PROF_WAIT]. prof NULL: rt_pool_run. */
struct RtProfile;
void rt_pool_run_prof(RtPool *p, void (*fn)(void *arg, int ith, int nth), void *arg,
		      struct RtProfile *prof);
/* Seconds of a monotonic clock (the profile's). */
double rt_pool_clock(void);

/* ---- profiling (bn_ctx_profile) ----------------------------------------- */

/* The kernel families a profiled forward accounts its time to. Every stretch of a forward
 * goes to one family: a kernel's to its own, the pool's dispatch and the threads' idle time
 * at its end (their mean) to RT_PROF_WAIT. ORDER RT_PROF (rt_api.c names them) */
enum {
	RT_PROF_GEMV,  /* ternary matmul, one token */
	RT_PROF_GEMM,  /* ternary matmul, several tokens */
	RT_PROF_AMX,   /* ternary matmul on the AMX tiles */
	RT_PROF_QUANT, /* activation quantization */
	RT_PROF_NORM,  /* rmsnorm, alone or fused with the residual add and the quantization */
	RT_PROF_ROPE,
	RT_PROF_ATTN,  /* attention and the KV store */
	RT_PROF_GLU,   /* relu2 / silu gating */
	RT_PROF_ADD,   /* residual add */
	RT_PROF_EMBED,
	RT_PROF_HEAD,  /* the float output head */
	RT_PROF_OTHER, /* the non-finite checks, elementwise multiplies */
	RT_PROF_WAIT,  /* thread pool: dispatch and idle threads */
	RT_PROF_FAMILIES
};

/* What a profiled decode adds to (the runtime zeroes it; the model only adds). Seconds of
 * a monotonic clock: a pooled kernel counts its threads' mean busy time, the rest of its
 * wall time is wait. */
typedef struct RtProfile {
	double sec[RT_PROF_FAMILIES];
	int64_t calls[RT_PROF_FAMILIES];
	double forward_sec; /* the forwards' wall time, timed apart from the families */
	int64_t forwards;
} RtProfile;

/* ---- the state of one running model ------------------------------------ */

typedef struct {
	const uint8_t *w; /* the weights payload, mapped read-only (rt_weights.c) */
	uint16_t *kv;     /* f16 KV cache: model.kv_bytes(n_ctx, n_seq) bytes, laid out by the model */
	void *scratch;    /* activations: model.scratch_bytes bytes, 64-byte aligned */
	int64_t n_ctx;    /* positions the KV cache holds */
	RtPool *pool;
	void *inst; /* what the model's init returned (its per-model data; NULL allowed) */
	void *dev;  /* a backend's per-context device data (state_init); NULL on the CPU */
	/* Where a decode call that returned RT_FORWARD_NONFINITE found its first NaN or
	 * infinity: the row's index in the call (0..n-1) and the layer whose output (the
	 * residual stream) held it; -1: its token's embedding row. */
	int bad_token, bad_layer;
	/* sequences the KV cache holds (>= 1; 0 reads as 1, for states made before it existed) */
	int32_t n_seq;
	/* NULL: no profiling (the model's only cost is a test of it per kernel call); else
	 * the CPU backend's decode adds its kernels' times here. A device backend may ignore
	 * it. */
	RtProfile *prof;
} RtState;

/* The rows of one decode call (llama.cpp's llama_batch). */
typedef struct {
	int32_t n;            /* rows, 1..max_batch */
	const int32_t *token; /* [n] */
	const int32_t *pos;   /* [n] each row's position in its sequence, 0..n_ctx-1 */
	const int32_t *seq;   /* [n] each row's sequence, 0..n_seq-1; NULL: all 0 */
	const int32_t *out;   /* the rows whose logits are written (ascending, distinct),
	                       * n_out of them; NULL: all n rows */
	int32_t n_out;
	/* [n] nonzero: the row is in the reference's step mode (the f16 roundings of the
	 * softmax weights and the head's input), computed bit for bit as a one-row call
	 * computes it, in any template; zero: the batch mode. NULL: step mode iff n == 1. */
	const int8_t *step;
} RtBatch;

/* What decode returns: 0, or RT_FORWARD_NONFINITE when an activation of the residual
 * stream went NaN or infinite (st->bad_token, st->bad_layer say where); the call stops
 * there and its logits are not written. */
#define RT_FORWARD_NONFINITE 1
/* ... or RT_FORWARD_CPU when the CPU or the OS will not run the model's code (the OS
 * refused the AMX tile state); nothing was computed. */
#define RT_FORWARD_CPU 2
/* ... or RT_FORWARD_BATCH (decode) when the batch is malformed: n outside 1..max_batch, a
 * position outside 0..n_ctx-1, a sequence outside 0..n_seq-1, or out rows that are not
 * ascending rows of the call; nothing was computed. */
#define RT_FORWARD_BATCH 3
/* ... or RT_FORWARD_DEVICE when the device failed the call (a launch, a copy or a kernel
 * the driver reports as failed); the KV cache of the call's rows is undefined. */
#define RT_FORWARD_DEVICE 4

/* ---- what a generated model defines ------------------------------------ */

#define RT_MODEL_ABI 8 /* 2: tokenizer blob and chat template; 3: cpu_features, batch_sizes,
                        * forward(last_only); 4: forward returns a status (non-finite
                        * activations), the payload hash of rt_hash_*; 5: init, fini,
                        * state_init, state_fini, sync; RtState.inst, dev and n_seq;
                        * decode (RtBatch), the one entry point (forward removed);
                        * kv_bytes(n_ctx, n_seq); 6: init may return RT_INIT_DEVICE,
                        * device_info; 7: RtState.prof; 8: RtBatch.step */

/* What init returns when the model's device is missing or unusable: no driver, no device,
 * a device older than the code or with too little memory (the message in err says
 * which). The program exits 3 (bitnetc.h: BN_E_DEVICE). */
#define RT_INIT_DEVICE (-2)

typedef struct {
	int abi; /* RT_MODEL_ABI */
	/* what it was compiled from (printed by --info) */
	const char *name, *arch, *target, *pipeline, *version;
	const char *info; /* multi-line description: shapes, kernels, batch sizes */
	/* instruction set extensions the code was compiled for, space-separated ("avx2 fma
	 * f16c ..."; "" for none): checked before the first decode call (rt_cpu.c) */
	const char *cpu_features;
	int64_t n_vocab, n_ctx_train, n_layer, n_embd;
	int64_t bos, eos; /* -1 if the model has none */
	/* The tokenizer (rt_tok.h) as one blob inside the weights payload, covered by its
	 * hash: w + tok_offset, tok_bytes long (8-byte aligned); tok_bytes 0: no tokenizer,
	 * prompts are token ids. */
	uint64_t tok_offset, tok_bytes;
	int chat_template; /* RtChatTemplate baked in at build time; 0: none */
	/* the weights payload this code expects */
	uint64_t weights_bytes;
	uint64_t weights_hash; /* rt_weights_hash of the payload */
	/* a decode call takes 1..max_batch rows */
	int64_t max_batch;
	/* The token counts the model has a forward function for (ascending, batch_sizes[0] ==
	 * 1, the last == max_batch): a call of n tokens runs the smallest one >= n, so the
	 * runtime splits a prompt into calls of these sizes, largest first. */
	const int32_t *batch_sizes;
	int n_batch_sizes;
	uint64_t scratch_bytes;
	/* the KV cache for n_seq sequences of n_ctx positions each */
	uint64_t (*kv_bytes)(int64_t n_ctx, int32_t n_seq);
	/* The one forward entry point: evaluates the rows of b in one call, in the smallest
	 * batch template that holds its n rows (a row's mode, step or batch, is b->step's;
	 * without it n == 1 is the reference's step mode). Each
	 * row's K and V are stored at (its seq, its pos) before any attention runs; each row
	 * attends to positions 0..pos of its own sequence, which must all be in the cache
	 * after the stores. logits (may be NULL) gets n_out rows (n when out is NULL) of
	 * n_vocab, in out's order: the output head, the largest matmul, runs for those rows
	 * alone (their numerics stay those of an n-row call). A prompt's call is n contiguous
	 * positions of sequence 0, out = {n-1} when only the last row's logits are wanted.
	 * Returns 0, RT_FORWARD_NONFINITE (bad_token is the row), RT_FORWARD_CPU,
	 * RT_FORWARD_BATCH or RT_FORWARD_DEVICE. */
	int (*decode)(RtState *st, const RtBatch *b, float *logits);
	/* Once per model, after the weights are mapped and the CPU checked: 0, or -1 (or
	 * RT_INIT_DEVICE: no usable device) with a message in err. *inst gets the backend's per-model data (NULL allowed), which every
	 * RtState of the model carries. The CPU backend fills its f16 -> f32 table here (under
	 * pthread_once: two models or threads opening at once are safe); nothing in the model
	 * is initialized lazily by decode. NULL: nothing to do. */
	int (*init)(const uint8_t *w, uint64_t w_bytes, void **inst, char *err, size_t err_len);
	void (*fini)(void *inst); /* NULL: nothing to release */
	/* Per context (RtState): NULL means host memory the runtime allocates itself (kv_bytes
	 * and scratch_bytes), as on the CPU; a device backend allocates its KV cache and
	 * activations here and releases them in state_fini. 0, or -1 with a message in err. */
	int (*state_init)(RtState *st, char *err, size_t err_len);
	void (*state_fini)(RtState *st);
	/* Waits for queued device work so that the logits are readable; NULL: decode is
	 * synchronous. 0 or a decode status. */
	int (*sync)(RtState *st);
	/* A device backend's: one line about the device the program would run on ("NVIDIA
	 * H100 80GB HBM3, compute capability 9.0, ..."), or why there is none, into buf. It
	 * probes and keeps nothing open; --info prints it. NULL on the CPU. */
	void (*device_info)(char *buf, size_t n);
} RtModel;

/* The generated model.c defines the model under this name (default rt_model), and nothing
 * else with external linkage; the runtime refers to it through the same macro. */
#ifndef BN_MODEL_SYMBOL
#define BN_MODEL_SYMBOL rt_model
#endif
extern const RtModel BN_MODEL_SYMBOL;

/* ---- the weights payload (rt_weights.c) -------------------------------- */

/* The payload travels appended to the executable (or in a --weights-file), page-aligned,
 * followed by this trailer as the file's last bytes. */
#define RT_WEIGHTS_MAGIC "BNWEIGHT"
typedef struct {
	char magic[8];   /* RT_WEIGHTS_MAGIC */
	uint64_t offset; /* file offset of the payload (a multiple of 4096) */
	uint64_t size;   /* payload bytes */
	uint64_t hash;   /* rt_weights_hash(payload) */
} RtWeightsTrailer;  /* little-endian on disk, 32 bytes */

/* The payload's 64-bit hash, as the compiler computes it when it writes it and as --verify
 * recomputes it: four independent lanes of multiply-xorshift over little-endian 8-byte
 * words (32-byte stripes), then the tail and a finalizer. Portable C: the same value on
 * every host. Fed in pieces (rt_hash_update) or in one call (rt_weights_hash), the same. */
typedef struct {
	uint64_t lane[4];
	uint64_t total;         /* bytes fed so far */
	unsigned char buf[32];  /* a stripe not yet complete */
	unsigned nbuf;
} RtHash;

void rt_hash_init(RtHash *h);
void rt_hash_update(RtHash *h, const void *data, uint64_t n);
uint64_t rt_hash_final(const RtHash *h);
uint64_t rt_weights_hash(const void *data, uint64_t n);

#endif
