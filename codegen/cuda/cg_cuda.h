/* cg_cuda.h - the CUDA backend: what this host's LLVM and CUDA toolkit offer for emitting
 * and validating PTX (the NVPTX kernel emitter arrives with the code generator). */
#ifndef BITNETC_CG_CUDA_H
#define BITNETC_CG_CUDA_H

#include "../cg.h"
#include "../simt/simt.h"

#define CG_CUDA_TRIPLE "nvptx64-nvidia-cuda"

typedef struct {
	unsigned llvm_major, llvm_minor, llvm_patch; /* the LLVM library linked at run time */
	bool nvptx;            /* LLVM has the NVPTX backend (PTX can be emitted here) */
	char nvptx_note[256];  /* why not, when !nvptx */
	char ptxas[1024];      /* path of ptxas (validates PTX in tests), "" if not found */
} CgCudaInfo;

/* ---- cg_cuda_emit.c ---- */

/* What the host code writer of cg_cuda_emit.c needs of a GPU runtime: model.c is the same
 * for every GPU backend (the kernel plan of the cu_op_* functions, the launches in the
 * graph's order, the batch staging, the scratch, KV and rope buffers), written against
 * GPU(f) names that the backend's head defines (rt_cuda_f, rt_metal_f: the subset of
 * rt_cuda.h's functions that model.c calls, with the same signatures). */
typedef struct CgGpuApi {
	const char *backend; /* "cuda", "metal": messages */
	SimtFlavor flavor;   /* the kernels' IR: SIMT_PTX or SIMT_MSL */
	const char *about;   /* model.c's head comment: what the program is */
	const char *header;  /* the runtime's header model.c includes ("rt_cuda.h") */
	/* lines after the includes: the kernel artifacts' headers, GPU(f), GPU_ENODEV and the
	 * GpuDev type */
	const char *head;
	/* after now_s and progress: kernels_load(GpuDev *, err, err_len) and
	 * weights_to_device(GpuDev *, w, w_bytes, RtDevPtr *, err, err_len) */
	const char *helpers;
	const char *cc_about; /* MIN_CC's comment */
	const char *info;     /* --info's kernels ("PTX for sm_", followed by the cc) */
	/* The kernels of module S into kb[0] and kb[1] (before model.c is written), then
	 * added to out as artifacts after it. */
	int (*kernels)(Simt *S, int cc, CgBuf kb[2], BnErr *e);
	int (*artifacts)(CgOutput *out, const CgBuf kb[2], BnErr *e);
} CgGpuApi;

/* model.c for api's runtime with the kernels of g built in api->flavor, cc the target's
 * (CuCtx.cc: 0 for a GPU without dp4a's PTX variants to pick), then the kernel artifacts. */
int cg_gpu_emit(const IrGraph *g, const CgOpts *o, const CgGpuApi *api, int cc, CgOutput *out,
		BnErr *e);

/* The backend's emit: model.c (host), model_ptx.h, model.ptx, model.ll, and with
 * o->host_kernels model_host.o (the kernels for this host). */
int cg_cuda_emit(const IrGraph *g, const CgOpts *o, CgOutput *out, BnErr *e);

/* ---- cg_cuda_backend.c ---- */

/* The compute capability of target name: cuda-smNN -> NN; "cuda": the GPU found here, else
 * 80; 0 for a name that is not a CUDA target or a capability the backend does not build. */
int cg_cuda_target_cc(const char *name);

/* The CUDA backend as the registry holds it. */
extern const CgBackend cg_backend_cuda;

/* ---- cg_cuda_probe.c ---- */

/* Initializes LLVM's NVPTX target, looks it up by triple and searches for ptxas
 * ($CUDA_PATH/bin, /usr/local/cuda/bin, then $PATH). Cannot fail: absence is reported. */
void cg_cuda_probe(CgCudaInfo *ci);
/* The CUDA targets: cuda-sm80, -sm86, -sm89, -sm90 and cuda; buildable when LLVM has
 * NVPTX, usable when this host also has a GPU that runs them. Returns how many were
 * written (at most max). */
int cg_cuda_targets(const CgCudaInfo *ci, CgTargetInfo *out, int max);
/* The compute capability of this host's first GPU (e.g. 90), 0 when there is none. */
int cg_cuda_host_cc(void);

/* ---- kernels (cg_cuda_k_*.c) -------------------------------------------------------
 * One function per op: it builds the kernels the node needs into c->S (once per name:
 * simt_has) and describes their launches, which the host code (cg_cuda_emit.c) writes into
 * model.c. Kernel names say what they do and for which shape (tmm_i2s_k2560_n640_gemv).
 *
 * The launch's C expressions may use these names of the generated host code:
 *   n      int: rows of this call (1 in the step template)
 *   n_out  int: rows whose logits are computed (the head), 0..n
 *   W, S   RtDevPtr: the weights payload and the scratch arena on the device
 *   KV     RtDevPtr: the KV cache (ir_kv.h's layout, f16: byte offset = 2 * element offset)
 *   kvs    int64_t: n_ctx * n_seq (a layer's K holds kvs rows of its width)
 *   n_ctx  int64_t: positions per sequence
 *   TOK, POS, SEQ  RtDevPtr: int32 [n] token ids, positions, sequence ids of the rows
 *   OUTR   RtDevPtr: int32 [n_out] the rows whose logits are computed (ascending)
 *   LOG    RtDevPtr: float [n_out][n_vocab], the logits
 *   FLAG   RtDevPtr: int32, the first non-finite activation (cu_op_check)
 *   ROPE   RtDevPtr: the rope tables; a node's starts at ROPE + n_ctx * c->rope_table()
 *   SCORES RtDevPtr: the attention's scratch in the step template, 8-aligned, of
 *          cu_attention_scores_bytes(g, n_ctx) bytes (cg_cuda_k_attn.c)
 * c->addr(value) gives a value's device address as such an expression ("S + 4096",
 * "W + 81920"). */

typedef struct {
	char kernel[128];
	unsigned block;                       /* threads per block (1-D) */
	char grid[3][96];                     /* C expressions */
	char smem[96];                        /* C expression: dynamic shared memory bytes */
	int n_args;
	SimtParam type[SIMT_MAX_PARAMS];
	char arg[SIMT_MAX_PARAMS][96];        /* C expressions of the parameter types */
} CuLaunch;

typedef struct CuCtx {
	Simt *S;
	const IrGraph *g;
	int cc;            /* the target's compute capability (80, 86, 89, 90) */
	int64_t max_batch; /* rows of the largest template */
	int tmpl;          /* rows of the template being written: 1 = the step mode */
	const char *(*addr)(struct CuCtx *c, IrId value);
	/* where rope node nd's cos/sin table starts in ROPE, in bytes per position (the table
	 * is at ROPE + n_ctx * this): [n_ctx][n_rot/2] float pairs (cos, sin) of the
	 * interpreter's angles, made by the host at state_init */
	uint64_t (*rope_table)(struct CuCtx *c, const IrNode *nd);
	void *ud;
} CuCtx;

/* Adds a launch to L (at most max): its kernel name, block, grid x (y, z "1"), no shared
 * memory, no arguments yet. NULL when L is full. */
CuLaunch *cu_launch(CuLaunch *L, int *nl, int max, const char *kernel, unsigned block,
		    const char *grid_x);
/* Appends an argument: its type and C expression (printf-style). */
void cu_arg(CuLaunch *l, SimtParam t, const char *fmt, ...) BN_PRINTF(3, 4);

/* The op functions: 0 and launches appended to L (*nl of max), or an error naming the node
 * (BN_EUNSUPPORTED for what the CUDA kernels do not cover). */
typedef int (*CuOpFn)(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_embed(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_rmsnorm(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_quant_act(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_rmsnorm_quant(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_add_rmsnorm_quant(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_binary(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_glu(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_rope(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_ternary_matmul(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_matmul(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
int cu_op_attention(CuCtx *c, const IrNode *nd, CuLaunch *L, int *nl, int max, BnErr *e);
/* Bytes of the SCORES scratch the step template's attention launches need for contexts of
 * n_ctx positions: 16 * H * (n_ctx + D), H and D the largest n_head and head_dim of g's
 * attention nodes (0 when it has none). */
uint64_t cu_attention_scores_bytes(const IrGraph *g, int64_t n_ctx);
/* A check of value v ([row, T] f32) for NaN/inf: the first bad (check, row) goes into FLAG
 * as atomicMin(check << 16 | row). */
int cu_op_check(CuCtx *c, IrId v, int check, CuLaunch *L, int *nl, int max, BnErr *e);

#endif
