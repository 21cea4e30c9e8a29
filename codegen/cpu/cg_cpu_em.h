/* cg_cpu_em.h - the CPU emitter's internal state and helpers, shared by cg_cpu_emit.c (the
 * graph walk, planning, the file) and the kernel-family files (cg_cpu_tmm.c: ternary
 * matmuls; cg_cpu_head.c: the float output head). Not part of the backend's interface. */
#ifndef BITNETC_CG_CPU_EM_H
#define BITNETC_CG_CPU_EM_H

#include "cg_cpu.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CG_ALIGN = 64 };
#define NO_OFF UINT64_MAX

/* One specialized kernel: emitted once, with the tensors that use it listed above it. */
typedef struct {
	char name[96];
	CgBuf users;
	CgBuf body;
	int nt; /* the template of the forward that first used it: its users come from that one */
} Kern;

/* The kernel kinds counted per forward (--info); the first CG_KERN_ATTR_KINDS are the
 * values of the attributes kernel / kernel_t<N>, amx is what "simd" runs in a multi-token
 * forward of a target with AMX. ORDER CG_KERN */
enum { CG_KERN_SIMD, CG_KERN_PORTABLE, CG_KERN_LUT, CG_KERN_LUT_PORTABLE, CG_KERN_AMX,
       CG_KERN_KINDS };
enum { CG_KERN_ATTR_KINDS = CG_KERN_AMX };

/* The most ternary matmuls one launch runs (emit_forward: siblings reading the same codes). */
enum { CG_LAUNCH_MAX = 8 };

/* The emitter's state for one graph. */
typedef struct {
	const IrGraph *g;
	const CgOpts *o;
	BnErr *e;
	CgBuf *fwd;       /* body of the forward function being emitted */
	bool t1;          /* emitting forward_t1 (T = 1), else a forward_t<nt> */
	bool record;      /* record kernel users (first forward only; see Kern.nt) */
	Kern *kern;
	int n_kern, cap_kern;
	uint64_t *soff;   /* per value: scratch offset (NO_OFF: none) */
	uint64_t *woff;   /* per value: payload offset of a constant (NO_OFF: none) */
	uint64_t *tmp;    /* per node: scratch offset of its temporary (NO_OFF: none) */
	int64_t n_layer;  /* KV layers (1 + the largest layer attr) */
	int64_t *kv_off;  /* per layer: element offset of its K cache, in units of n_ctx */
	int64_t *kv_w;    /* per layer: K/V row width (0: layer unused) */
	int64_t kv_elems; /* f16 elements per position over all layers, K and V */
	int64_t max_heads;
	bool logits_direct; /* the head writes the caller's logits */
	int nt;             /* token count of the forward being emitted: 1, or its template size */
	CgIsa isa;          /* the instruction set the kernels are written for */
	int kcount[CG_KERN_KINDS]; /* ternary matmuls of the forward being emitted, per kernel kind
				    * (CG_KERN_*) */
	CgBuf kinfo;        /* per forward: its kernel counts (for --info) */
	/* a shared launch being emitted (emit_forward, tmm_launch): its matmuls' drivers */
	bool launch_open;
	int launch_n;
	char launch_fn[CG_LAUNCH_MAX][160];
} Em;

const IrValue *V(const Em *m, IrId id);
/* The C expression of value id as a pointer of type ty: scratch, payload or the tokens. */
const char *ref(const Em *m, IrId id, const char *ty, char *buf, size_t n);
/* A float as an exact C literal. */
const char *flit(float f, char *buf, size_t n);
/* Emits (once) deq_<type>_k<K>(src, dst) for one dense row; name gets its name. */
int emit_deq(Em *m, IrDtype dt, int64_t k, char *name, size_t nn);
bool dense_ok(IrDtype dt, int64_t k);
uint64_t dense_row_bytes(IrDtype dt, int64_t k);
/* BN_EUNSUPPORTED naming node n and why. */
int unsupported(Em *m, const IrNode *n, const char *why);
/* Looks up (or starts) the kernel called name for node n; *body is NULL if it exists. */
int kern_for(Em *m, const IrNode *n, const char *name, CgBuf **body);
/* The first line of an rmsnorm kernel (add: add_rmsnorm's, which also takes r and xs),
 * through the opening brace: one signature for every target's body. */
void rmsnorm_sig(CgBuf *b, const char *name, bool add);
/* The Q8_K quantizer kernel body (256-element blocks). */
void q8k_body(CgBuf *b, const char *name, int64_t k);

/* Frees the kernels' texts and the emitter's per-value/node tables. */
void em_free(Em *m);

/* The text every generated file starts with: includes, f16 helpers, kernel arguments. */
extern const char cg_cpu_prelude[];

/* cg_cpu_tmm.c */
/* The call of ternary matmul node n's driver (a TmmArg of its weight, codes, scales and
 * output): a launch of its own, or one more job of the shared launch emit_forward has open
 * (m->launch_open). */
void tmm_launch(Em *m, const IrNode *n, const char *driver);
/* The start of every I2_S matmul driver (after its enum with K and N): wscale, the float
 * after the codes, and qsum[t], each token's sum of activations (D = sum(code * q) - qsum). */
extern const char tmm_prologue[];
/* The float epilogue every ternary kernel family emits through these (the only copies):
 * y = ((float)(D - qsum) / s) * wscale, which carries the interpreter's bits.
 * tmm_epilogue, scalar: "<ind><y> = ((float)(<d> - <qs>) / <s>) * wscale;", or with qs NULL
 * "((float)<d> / <s>)" where d already has qsum subtracted. tmm_epilogue_vec, one vector of
 * CG_ISA_AVX512, CG_ISA_AVX2 or CG_ISA_NEON int32 lanes acc: f, its float, stored at y.
 * tmm_epilogue_args: a micro kernel's (mk_params) qs, s and y for token t at row offset row. */
void tmm_epilogue(CgBuf *b, const char *ind, const char *y, const char *d, const char *qs,
		  const char *s);
void tmm_epilogue_vec(CgBuf *b, int level, const char *ind, const char *acc, const char *qs,
		      const char *s, const char *y);
void tmm_epilogue_args(int t, int row, char qs[16], char sc[16], char y[48]);
int emit_ternary_matmul(Em *m, const IrNode *n);
/* The i2s_x16 kernel of node n (a ternary_matmul over a [k, nr] weight in that layout)
 * with its micro kernels; *driver gets the kernel's name (the threaded entry point). */
int emit_tmm_x16_named(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn);
/* The i2s_x16 family's header (includes, helpers; once per file) and the tile of node n in
 * the forward of m->nt tokens (attribute tile, else the ISA's default): groups, tokens.
 * The t5_x16 family shares both. */
int x16_common(Em *m, const IrNode *n);
int x16_tile_of(Em *m, const IrNode *n, int *rg, int *tt);
/* The one-token path of an AVX-512 matmul driver (after its prologue and gs, the bytes of
 * a group of 16 rows): X16_STREAMS chunks side by side per share_next_ns, a group of each
 * per kernel call: four (then two) through the stream kernels four and two, of parameters
 * tmm_streams_params (w[j] -> y[j]), a last one through one, of the micro kernel's; kc: the
 * expression of a group's 64-byte chunks. The i2s_x16 and t5_x16 drivers share it. */
extern const char tmm_streams_params[];
/* How far ahead each stream of the stream kernels prefetches (bytes): a new stream starts
 * cold at every matmul (210 a decode step), and with the lines 2 KiB ahead asked for, the
 * one-token matmuls of the 2B-4T shape took 2-20% less time than without (ABBA pairs,
 * 2 threads, Zen 5; the most in the slower bandwidth regimes; t5_x16's 8% less), 1 KiB
 * 4-7% more than 2 (6 pairs). */
enum { X16_PFS = 2048 };
void tmm_streams_path(CgBuf *b, const char *kc, const char *one, const char *two, const char *four);
/* cg_cpu_t5.c: the t5_x16 kernel of node n (ternary_matmul over a [k, nr] weight in that
 * layout) for the forward of m->nt tokens, and its call in the forward. */
int emit_tmm_t5(Em *m, const IrNode *n, int64_t k, int64_t nr);
/* The kernel node n runs in a forward of nt tokens (attributes kernel_t<nt>, kernel). */
const char *cg_tmm_kernel(const IrNode *n, int nt);
/* cg_cpu_lut.c: the table-lookup kernel of node n (i2s_x16 weight [k, nr]) for the
 * forward of m->nt tokens; driver gets its name. */
int emit_tmm_lut(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn);
/* cg_cpu_amx.c: the AMX-INT8 GEMM of node n (i2s_x16 weight [k, nr]) for the forward of
 * m->nt > 1 tokens on a target with amx; driver gets its name. */
int emit_tmm_amx(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn);
/* cg_cpu_emit.c: removes the first word w (and a space beside it) from the
 * space-separated list s (a feature list: the AMX names of an emulated build). */
void cg_cpu_strip_word(char *s, const char *w);
/* cg_cpu_rvv.c: the RVV 1.0 kernel of node n (an I2_S weight [k, nr] in the GGUF layout)
 * for the forward of m->nt tokens; driver gets its name (its call: cg_cpu_tmm.c). */
int emit_tmm_rvv(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn);
/* cg_cpu_tmm.c: the driver the RVV and SVE kernels share (mk: their micro kernels by token
 * count; pair: a two-row one-token kernel, or NULL). */
int tmm_planes_driver(Em *m, const IrNode *n, const char *driver, int64_t k, int64_t nr,
		      int tiles, const char (*mk)[48], const char *pair);
/* The RVV kernels' header (once per file, through node n) and the per-token activation
 * quantizer's body in RVV (the portable one's values). */
int rvv_common(Em *m, const IrNode *n);
void rvv_quant_tok_body(CgBuf *b, const char *name, int64_t k);
/* The float kernels' helpers (rvv_common, then the exact f16 -> f32 conversions; once per
 * file, through node n) and the bodies of the float kernels in RVV, each computing the
 * portable kernel's bits: rmsnorm (add: add_rmsnorm), attention, rope, the relu^2 GLU and
 * the binary add/mul (form as emit_binary's). */
int rvv_float_common(Em *m, const IrNode *n);
void rvv_rmsnorm_body(CgBuf *b, const char *name, int64_t k, bool add);
void rvv_attn_body(CgBuf *b, const char *name, int64_t nh, int64_t nkv, int64_t hd);
void rvv_rope_body(CgBuf *b, const char *name, int64_t row, int64_t hd, int64_t half, bool neox);
void rvv_relu2_glu_body(CgBuf *b, const char *name, int64_t k);
void rvv_binary_body(CgBuf *b, const char *name, int64_t row, const char *form, bool mul);
/* cg_cpu_sve.c: the same for SVE (any vector length): the I2_S kernel on the GGUF layout,
 * the header and the per-token quantizer. */
int emit_tmm_sve(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn);
int sve_common(Em *m, const IrNode *n);
void sve_quant_tok_body(CgBuf *b, const char *name, int64_t k);
/* The rmsnorm kernel (add: add_rmsnorm, x + r stored first) in SVE: the portable one's bits. */
void sve_rmsnorm_body(CgBuf *b, const char *name, int64_t k, bool add);
/* cg_cpu_head.c */
int emit_matmul(Em *m, const IrNode *n);

#endif
