/* ir.h - bitnetc core: errors, arena, element types and weight codecs, the graph IR,
 * its verifier and printer, and the reference interpreter. Everything else builds on it. */
#ifndef BITNETC_IR_H
#define BITNETC_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BITNETC_VERSION "0.1.0"

/* ---- errors and small utilities (ir_util.c) ---------------------------- */

typedef enum {
	BN_OK = 0,
	BN_EIO,          /* cannot open/read/write/map a file */
	BN_EFORMAT,      /* malformed input (bad magic, truncated, out of range) */
	BN_EUNSUPPORTED, /* well-formed but not something bitnetc handles (arch, type, shape) */
	BN_EINVAL,       /* bad argument or option */
	BN_ENOMEM,       /* allocation failed */
	BN_EVERIFY,      /* the IR verifier rejected a graph */
} BnCode;

/* The one error type. Everything fallible takes a BnErr * (may be NULL) and
 * returns a non-zero BnCode (or NULL) on failure; msg names the file, tensor or
 * pass and what was expected. */
typedef struct {
	int code;
	char msg[512];
} BnErr;

#if defined(__GNUC__)
#define BN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BN_PRINTF(a, b)
#endif

/* Sets e (if non-NULL) and returns code. */
int bn_err(BnErr *e, int code, const char *fmt, ...) BN_PRINTF(3, 4);
/* Prepends "prefix: " to an error message already set. Returns e->code. */
int bn_err_prefix(BnErr *e, const char *fmt, ...) BN_PRINTF(2, 3);

/* Internal invariants only; bad input never reaches an assert. */
void bn_assert_fail(const char *file, int line, const char *what);
#define BN_ASSERT(c) ((c) ? (void)0 : bn_assert_fail(__FILE__, __LINE__, #c))

/* Overflow-checked size arithmetic: return false on overflow. */
bool bn_mul_ok(uint64_t a, uint64_t b, uint64_t *out);
bool bn_add_ok(uint64_t a, uint64_t b, uint64_t *out);

/* IEEE half and bfloat16; both conversions from f32 round to nearest even (as ggml). */
float bn_f16_to_f32(uint16_t h);
uint16_t bn_f32_to_f16(float f);
float bn_bf16_to_f32(uint16_t h);
uint16_t bn_f32_to_bf16(float f);
/* f32 -> f16 -> f32, the rounding the reference applies to some operands. */
float bn_round_f16(float f);
/* exp(x) of the attention's softmax and the SiLU gate: the same bits on every host and in
 * every vector width (ir_quant.c) */
float bn_softmax_exp(float x);

/* Per-graph bump allocator: memory is zeroed, 16-byte aligned, freed as a whole. */
typedef struct BnArena BnArena;
BnArena *bn_arena_new(void);
void bn_arena_free(BnArena *a);
void *bn_arena_alloc(BnArena *a, size_t n); /* NULL only if out of memory */
char *bn_arena_strdup(BnArena *a, const char *s);
char *bn_arena_printf(BnArena *a, const char *fmt, ...) BN_PRINTF(2, 3);

/* ---- element types and weight formats (ir_quant.c) --------------------- */

typedef enum {
#define X(id, name, ggml, blk, bytes, tern) IR_DT_##id,
#include "ir_types.def"
#undef X
	IR_DT_COUNT
} IrDtype;

typedef struct {
	const char *name;
	int ggml_id;     /* GGUF tensor type id, -1 if none */
	int block;       /* elements per block; rows must be a multiple */
	int block_bytes; /* bytes per block */
	bool ternary;
} IrDtypeInfo;

const IrDtypeInfo *ir_dtype_info(IrDtype dt);
const char *ir_dtype_name(IrDtype dt);
/* GGUF type id -> dtype; false if bitnetc does not know it. */
bool ir_dtype_from_ggml(uint32_t ggml_id, IrDtype *out);
/* What a GGUF type id is called (also ids bitnetc cannot read, e.g. "TL2 (bitnet.cpp fork)
 * or MXFP4 (upstream ggml)" for 39); never NULL. */
const char *ir_ggml_type_desc(uint32_t ggml_id);
/* Bytes of a tensor with n elements whose rows hold row_elems elements.
 * Fails (returns false) if row_elems is not a multiple of the block or on overflow.
 * I2_S: n/4 + 32. */
bool ir_dtype_nbytes(IrDtype dt, uint64_t n, uint64_t row_elems, uint64_t *out);

/* Dequantize n consecutive elements (n a multiple of the block) of a non-ternary
 * format (F32, F16, BF16, Q8_0, Q6_K, I8, I32) starting at src (a block boundary). */
void ir_dequant(IrDtype dt, const void *src, float *dst, int64_t n);
/* Quantize n floats into dt (F32, F16, BF16, Q8_0, Q6_K, TQ1_0, TQ2_0, I2_S) as the
 * reference quantizers do. For I2_S, n is the whole tensor and dst gets n/4 + 32 bytes
 * (scale = max|x| over the tensor, zero padding). */
void ir_quant(IrDtype dt, const float *src, void *dst, int64_t n);
/* Q6_K's quantizers, which write the same bytes: the reference (one 16-element group at
 * a time), the portable one (the 16 groups of a block side by side, as vectors of the
 * build's ISA) and that code compiled for AVX2 and for AVX-512, picked at run time;
 * a block the side-by-side code does not handle (a NaN, an infinity, a quotient of 2^22
 * or more) is done by the reference. ir_quant takes the widest this host runs; the tests
 * compare them all. ir_quant_q6_k_impl returns how many blocks the reference did, or -1
 * (and writes nothing) if this host cannot run impl. */
typedef enum { IR_Q6K_REF, IR_Q6K_PORTABLE, IR_Q6K_AVX2, IR_Q6K_AVX512, IR_Q6K_COUNT } IrQ6kImpl;
const char *ir_q6k_impl_name(IrQ6kImpl impl);
int64_t ir_quant_q6_k_impl(IrQ6kImpl impl, const float *src, void *dst, int64_t n);

/* Ternary weights, one row of a [k x rows] tensor (ggml ne = {k, rows}):
 * w[i] in {-1, 0, +1} for i < k, and the scales that multiply it: for I2_S one
 * per-tensor scale (scales[0]); for TQ1_0/TQ2_0 one f16-decoded d per 256 elements
 * (scales[0..k/256)). Returns the number of scales written. */
int ir_ternary_row(IrDtype dt, const void *data, int64_t k, int64_t rows, int64_t row,
		   int8_t *w, float *scales);
/* The per-tensor scale of an I2_S tensor of n elements. */
float ir_i2s_scale(const void *data, int64_t n);

/* Float weights made ternary as the reference's tools make them (FORMATS.md 6): a tensor
 * whose values are all 0 or +-m keeps them (IR_TERN_KEPT, scale m); any other gets BitNet
 * b1.58's absmean rule (IR_TERN_ABSMEAN): s = 1 / max(mean |w|, 1e-5), w = clamp(round(w *
 * s), -1, 1) / s, the magnitude 1/s rounded to src (F32, F16 or BF16: the type the weights
 * came in, as the converter casts its result back). w is rewritten in place to values in
 * {-scale, 0, +scale}, ready for ir_quant into a ternary format. A NaN or infinity leaves
 * w as it was: IR_TERN_NONFINITE and *bad = its index. */
typedef enum { IR_TERN_KEPT, IR_TERN_ABSMEAN, IR_TERN_NONFINITE } IrTernRule;
IrTernRule ir_ternarize(float *w, int64_t n, IrDtype src, float *scale, int64_t *bad);

/* ---- weight layouts (ir_layout.c) ---------------------------------------------------
 * A constant's bytes are in its GGUF layout ("gguf") unless a pass repacked them for a
 * kernel (permute_weights, or v:set_layout in Lua). Known layouts:
 *   i2s_x16  I2_S [K, N], N % 16 == 0: rows in groups of 16; group g is K/16 chunks of 64
 *            bytes; byte 4r + j of chunk c holds the codes (w + 1) of row 16g + r at
 *            k = 16c + 4s + j in bits 2s+1:2s (s = 0..3). Unpacking one chunk with the
 *            shifts 0, 2, 4, 6 gives four [16 rows][4 k] byte tiles: the operand order of
 *            vpdpbusd (and of an AMX B tile). Then the f32 scale and 28 zero bytes, as I2_S.
 *   t5_x16   I2_S [K, N], N % 16 == 0: 5 trits per byte (1.6 bits per weight, 20% fewer
 *            bytes than i2s_x16). Rows in groups of 16; group g is KC = ceil(K/20) chunks
 *            of 64 bytes; byte 4r + j of chunk c holds the codes t_i = w + 1 of row 16g + r
 *            at k = 20c + 4i + j (i = 0..4; a k >= K holds code 1) as
 *            x = ceil(q * 256 / 243), q = sum t_i * 3^(4-i) (TQ1_0's packing): t_i is the
 *            top of 3 * x_i, x_i = x * 3^i mod 256, i.e. t_i = (x_i >= 86) + (x_i >= 171).
 *            Each trit of a chunk is a [16 rows][4 k] byte tile, as a shift of i2s_x16 is.
 *            Then the f32 scale and 28 zero bytes (at N/16 * KC * 64).
 * ir_layout_check: NULL if the layout is known and fits value v's dtype and shape, else
 * why not. */
const char *ir_layout_check(const char *layout, IrDtype dt, int n_dims, const int64_t *ne);
/* The bytes of a [ne[0], ne[1]] weight of dtype dt in layout (checked), given its GGUF
 * size gguf_bytes: the same for every layout but t5_x16. */
uint64_t ir_layout_nbytes(const char *layout, IrDtype dt, const int64_t *ne, uint64_t gguf_bytes);
/* Repacks a GGUF-layout weight (dtype dt, [k, rows]) into layout `to` (another buffer of
 * ir_layout_nbytes bytes); 0, -1 if that conversion does not exist (ir_layout_check first and
 * skip "gguf"), -2 out of memory. */
int ir_layout_pack(const char *to, IrDtype dt, const void *src, void *dst, int64_t k,
		   int64_t rows);
/* ir_ternary_row for a constant in any known layout. */
int ir_ternary_row_at(const char *layout, IrDtype dt, const void *data, int64_t k,
		      int64_t rows, int64_t row, int8_t *w, float *scales);

/* ---- the graph IR (ir_graph.c) ----------------------------------------- */

typedef enum {
#define X(id, name, nin_min, nin_max, nout, meaning) IR_OP_##id,
#include "ir_ops.def"
#undef X
	IR_OP_COUNT
} IrOp;

const char *ir_op_name(IrOp op);
const char *ir_op_meaning(IrOp op);
bool ir_op_from_name(const char *name, IrOp *out);

typedef int32_t IrId; /* index of a value or node; IR_NONE for none */
#define IR_NONE (-1)
#define IR_MAX_DIMS 4
#define IR_MAX_IN 4
#define IR_MAX_OUT 3
#define IR_DIM_T (-1) /* the symbolic token dimension; only ever the outermost dim */
#define IR_NO_OFF UINT64_MAX /* no place in the scratch arena (IrValue.mem_off, IrNode.tmp_off) */

typedef enum {
	IR_VAL_CONST, /* weights: data points into the mapped GGUF or the arena */
	IR_VAL_INPUT, /* graph inputs (token ids) */
	IR_VAL_ACT,   /* produced by a node */
} IrValKind;

typedef struct {
	const char *name;
	IrValKind kind;
	IrDtype dtype;
	int n_dims;
	int64_t ne[IR_MAX_DIMS]; /* ggml order: ne[0] fastest; ne[n_dims-1] may be IR_DIM_T;
				  * n_dims 0: an output whose type (dtype and shape) is not set
				  * yet, which ir_infer_shapes fills and ir_verify rejects */
	const char *layout;      /* "gguf" for weights as stored, "rows" for activations */
	const void *data;        /* IR_VAL_CONST only */
	uint64_t nbytes;         /* size of data */
	IrId producer;           /* node id for IR_VAL_ACT, else IR_NONE */
	uint64_t mem_off;        /* byte offset in the scratch arena (IrMemPlan); IR_NO_OFF: none */
} IrValue;

typedef enum { IR_ATTR_INT, IR_ATTR_FLOAT, IR_ATTR_STR, IR_ATTR_INTS } IrAttrType;

typedef struct {
	const char *key;
	IrAttrType type;
	int64_t i;
	double f;
	const char *s;
	const int64_t *ints;
	int n_ints;
} IrAttr;

typedef struct {
	IrOp op;
	const char *name; /* e.g. "blk.0.attn_q" */
	int n_in, n_out;
	IrId in[IR_MAX_IN];
	IrId out[IR_MAX_OUT];
	IrAttr *attrs; /* arena; sorted by insertion */
	int n_attrs;
	uint64_t tmp_off; /* its temporary's offset in the scratch arena; IR_NO_OFF: none */
} IrNode;

/* Model hyperparameters the graph was built from (for printing, sizing the KV cache). */
typedef struct {
	int64_t n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab;
	float eps, rope_base;
} IrHparams;

/* Where activations live while a forward call runs (ir_mem.c; the plan_memory pass makes it):
 * one scratch arena of bytes, sized for up to tokens tokens, each value at its mem_off and each
 * node's temporary at its tmp_off. tokens 0: the graph has no plan (codegen makes one). */
typedef struct {
	int64_t tokens;
	uint64_t bytes;
} IrMemPlan;

typedef struct IrGraph {
	BnArena *arena;
	const char *name; /* model name (general.name or the file's base name) */
	const char *arch;
	IrHparams hp;
	IrValue *values;
	int n_values, cap_values;
	IrNode *nodes; /* in execution order */
	int n_nodes, cap_nodes;
	/* input: i32 [T]. A forward call binds T rows: each row's token id here, and with it
	 * the row's position and sequence (IrBatch, RtBatch): ROPE rotates a row by its
	 * position, ATTENTION stores its K and V at (sequence, position) and attends over its
	 * own sequence, and the head (the logits' matmul) runs for the rows the call wants. */
	IrId tokens;
	IrId logits; /* output: f32 [n_vocab, T] */
	IrMemPlan mem;
} IrGraph;

IrGraph *ir_graph_new(const char *name, const char *arch);
void ir_graph_free(IrGraph *g);

/* Values. Names are copied into the arena; data is not copied. */
IrId ir_value_const(IrGraph *g, const char *name, IrDtype dt, int n_dims, const int64_t *ne,
		    const void *data, uint64_t nbytes);
IrId ir_value_input(IrGraph *g, const char *name, IrDtype dt, int n_dims, const int64_t *ne);

/* Nodes: add the node, then its outputs (in order). */
IrId ir_node_add(IrGraph *g, IrOp op, const char *name, const IrId *in, int n_in);
/* A node inserted at index at (execution order): nodes at and after it move up by one and
 * their outputs' producer ids with them. Returns at. */
IrId ir_node_insert(IrGraph *g, IrId at, IrOp op, const char *name, const IrId *in, int n_in);
/* Removes node at from the execution order: nodes after it move down by one and their
 * outputs' producer ids with them. Its outputs must belong to another node by then (the
 * caller hands them over first); value ids do not change. */
void ir_node_remove(IrGraph *g, IrId at);
IrId ir_node_output(IrGraph *g, IrId node, const char *name, IrDtype dt, int n_dims,
		    const int64_t *ne);
/* Convenience: a node with one output; returns the output value id. */
IrId ir_node1(IrGraph *g, IrOp op, const char *name, const IrId *in, int n_in, IrDtype dt,
	      int n_dims, const int64_t *ne);

/* Attributes: set replaces an existing key. */
void ir_attr_set_int(IrGraph *g, IrId node, const char *key, int64_t v);
void ir_attr_set_float(IrGraph *g, IrId node, const char *key, double v);
void ir_attr_set_str(IrGraph *g, IrId node, const char *key, const char *v);
void ir_attr_set_ints(IrGraph *g, IrId node, const char *key, const int64_t *v, int n);
const IrAttr *ir_attr_find(const IrNode *n, const char *key);
int64_t ir_attr_int(const IrNode *n, const char *key, int64_t dflt);
double ir_attr_float(const IrNode *n, const char *key, double dflt);
const char *ir_attr_str(const IrNode *n, const char *key, const char *dflt);

/* Elements of a value with the token dim bound to T. */
int64_t ir_value_nelems(const IrValue *v, int64_t T);
/* Elements per token row (product of all dims but the token dim; all dims if none). */
int64_t ir_value_row(const IrValue *v);
bool ir_value_has_t(const IrValue *v);

/* ---- verifier and printer (ir_verify.c, ir_print.c) --------------------- */

/* Checks ids, definition before use, per-op arity, dtypes, shapes and constant sizes, and the
 * memory plan when there is one (ir_mem_check), and the KV plan when there is one (ir_kv_read).
 * On failure: BN_EVERIFY with a message naming the node and the problem. */
int ir_verify(const IrGraph *g, BnErr *e);

/* The type an output must have, by its op's rule. */
typedef struct {
	IrDtype dtype;
	int n_dims;
	int64_t ne[IR_MAX_DIMS];
} IrType;

/* The types of node id's outputs from its inputs (which must be typed) and attributes: the
 * verifier's per-op rules, so the two never disagree. BN_EVERIFY naming the node when its
 * inputs or attributes break the rules. */
int ir_node_infer(const IrGraph *g, IrId id, IrType out[IR_MAX_OUT], BnErr *e);
/* ir_verify that also fills every output whose type is unset (n_dims 0) from its node's rule,
 * in execution order; *n_filled (may be NULL) gets how many. A set type that disagrees with
 * the rule fails, naming the node, as in ir_verify. On failure some outputs may be filled. */
int ir_infer_shapes(IrGraph *g, int *n_filled, BnErr *e);

/* ---- activation memory planning (ir_mem.c) ------------------------------- */

enum { IR_MEM_ALIGN = 64 }; /* every offset in the arena is a multiple of this */

/* Whether the arena holds value id: activations other than the logits. The graph's ends are
 * the caller's buffers (the token ids in, the logits out); constants live in the weights. */
bool ir_mem_holds(const IrGraph *g, IrId id);
/* Bytes of value v for T tokens (its dtype's size per element); false on overflow. */
bool ir_mem_value_bytes(const IrValue *v, int64_t T, uint64_t *out);
/* Bytes of scratch node n needs while it runs besides its outputs, for T tokens; 0 if none.
 * The head's matmul: its prepared input, K floats per token; rmsnorm_quant and
 * add_rmsnorm_quant: the normed rows, row floats per token. */
uint64_t ir_mem_tmp_bytes(const IrGraph *g, const IrNode *n, int64_t T);
/* Plans the arena for up to T tokens: voff[value id] and toff[node id] get offsets (IR_NO_OFF
 * for values it does not hold and nodes without a temporary), *bytes its size. First fit in
 * execution order: a node's outputs, then its temporary, go in the lowest gap among the
 * values still to be read (its inputs among them), so outputs never alias inputs; a value
 * frees its space after its last reader (an unread one after its producer). Deterministic. */
int ir_mem_plan(const IrGraph *g, int64_t T, uint64_t *voff, uint64_t *toff, uint64_t *bytes,
		BnErr *e);
/* Checks g->mem and the offsets against it: every value the arena holds and every
 * temporary has an aligned place that fits in bytes for tokens tokens, and no two that are
 * live at the same node overlap. OK when the graph has no plan (tokens 0). */
int ir_mem_check(const IrGraph *g, BnErr *e);
/* ---- the KV cache layout (ir_kv.c; the plan_kv pass records it) --------------------
 * Per attention layer L, K then V, each [n_seq][n_ctx][width[L]] f16 (row (s, p) at
 * (s * n_ctx + p) * width[L]); the layers back to back, then one row of n_ctx float scores
 * per q head (max_heads of them) that the attention kernels work in. Offsets and elems are
 * in f16 elements per (sequence, position): layer L's K starts at n_ctx * n_seq * off[L]
 * elements, its V width[L] * n_ctx * n_seq elements later. */
typedef struct {
	int64_t n_layer;   /* 1 + the largest layer attribute of an attention node (0: none) */
	int64_t *off;      /* [n_layer] */
	int64_t *width;    /* [n_layer] K/V row width, n_head_kv * head_dim (0: unused layer) */
	int64_t elems;     /* K and V of every layer, rounded up to even (the scores are floats) */
	int64_t max_heads; /* the most q heads of one attention: score rows */
} IrKvPlan;

/* The layout: layers in order, each at the end of the last. BN_EVERIFY naming the node for
 * a layer attribute out of 0..65535 or two attentions of one layer with other widths. */
int ir_kv_plan(const IrGraph *g, IrKvPlan *p, BnErr *e);
/* The layout recorded in the attention nodes' attributes kv_off and kv_width (plan_kv):
 * *found false (and p untouched) when no node carries them; BN_EVERIFY naming the node when
 * some do and others do not, a width is not n_head_kv * head_dim, an offset is negative or
 * two layers overlap. */
int ir_kv_read(const IrGraph *g, IrKvPlan *p, bool *found, BnErr *e);
void ir_kv_plan_free(IrKvPlan *p);

/* Stable text form: same graph, same bytes (tests diff it). */
void ir_print(const IrGraph *g, FILE *out);

/* ---- reference interpreter (ir_interp.c) -------------------------------- */

typedef struct IrInterp IrInterp;

/* A KV cache of n_ctx positions (0: the model's training context) for one sequence. */
IrInterp *ir_interp_new(const IrGraph *g, int64_t n_ctx, BnErr *e);
/* ... for n_seq >= 1 sequences of n_ctx positions each. */
IrInterp *ir_interp_new_seq(const IrGraph *g, int64_t n_ctx, int n_seq, BnErr *e);
void ir_interp_free(IrInterp *it);
/* The rows of one call (llama.cpp's llama_batch): row t is token[t] at position pos[t] of
 * sequence seq[t] (seq NULL: all 0); the logits of the rows out[0..n_out) (ascending,
 * distinct; out NULL: all n rows) are wanted, in that order. */
typedef struct {
	int n;
	const int32_t *token, *pos, *seq;
	const int32_t *out;
	int n_out;
} IrBatch;
/* Evaluates the rows as one call: every row's K and V go into its sequence's cache at its
 * position first, then each row attends to positions 0..pos[t] of its own sequence (which
 * must all be in the cache by then); ROPE rotates each row by its position; the head runs
 * for the out rows only. n == 1 is the step mode, n > 1 the batch mode, whatever n_out.
 * logits (may be NULL) receives n_out rows (n without out) of n_vocab floats. Leaves
 * ir_interp_pos alone. BN_EINVAL for a position outside 0..n_ctx-1, a sequence outside
 * 0..n_seq-1 or out rows that are not ascending rows of the call. */
int ir_interp_decode(IrInterp *it, const IrBatch *b, float *logits, BnErr *e);
/* Evaluates n tokens at positions pos..pos+n-1 (pos = tokens already in the cache) of
 * sequence 0 as one call (ir_interp_decode of those rows, all wanted): n == 1 is the
 * reference's step mode (f16 roundings of the softmax weights and the head input), n > 1
 * its batch mode. logits (may be NULL) receives n rows of n_vocab floats. */
int ir_interp_eval(IrInterp *it, const int32_t *tokens, int n, float *logits, BnErr *e);
int64_t ir_interp_pos(const IrInterp *it);
/* Threads that split the matmuls' output rows (default 1); results are identical
 * for any count. */
void ir_interp_set_threads(IrInterp *it, int n);
/* The attention's q.K and .V summed in double (on: the CUDA and Metal kernels' numerics,
 * their tests' oracle) instead of float (off, the default: the reference's and the CPU
 * kernels'). */
void ir_interp_set_attn_f64(IrInterp *it, bool on);
void ir_interp_reset(IrInterp *it);
/* Optional: called after every node with its first f32 output (T rows); for
 * comparing intermediates against the reference. */
typedef void (*IrInterpTrace)(void *ud, const IrGraph *g, const IrNode *n, const float *data,
			      int64_t T);
void ir_interp_set_trace(IrInterp *it, IrInterpTrace fn, void *ud);

#endif
