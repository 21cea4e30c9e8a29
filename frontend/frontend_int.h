/* frontend_int.h - what the files of frontend/ share: the architecture table (bitnet.c), the
 * finiteness checks (checks.c) and the string hash. */
#ifndef BITNETC_FRONTEND_INT_H
#define BITNETC_FRONTEND_INT_H

#include "frontend.h"

/* Where the logits come from. */
typedef enum {
	BNM_HEAD_TIED,   /* always token_embd; an output.weight in the file is ignored */
	BNM_HEAD_OUTPUT, /* output.weight when present, else token_embd */
} BnmHead;

/* One supported architecture: everything in which the archs' graphs differ. A new
 * ternary family that fits this mould (e.g. llama-arch 1.58-bit models: SiLU GLU, no
 * sub-norms, normal RoPE, untied head) is one more row in bitnet.c, not new code. */
typedef struct {
	const char *name;      /* general.architecture and the hparam key prefix */
	IrOp ffn_glu;          /* IR_OP_RELU2_GLU or IR_OP_SILU_GLU */
	const char *rope_mode; /* ROPE "mode" attr: "neox" or "normal" */
	bool sub_norms;        /* attn_sub_norm / ffn_sub_norm before attn_output / ffn_down */
	bool rope_freqs;       /* rope_freqs.weight may be present */
	bool proj_scales;      /* blk.N.<proj>.scale (F32 [1]) may multiply a projection */
	bool proj_bias;        /* blk.N.<proj>.bias (F32 [n_out]) may be added */
	bool output_weight;    /* output.weight may be present */
	BnmHead head;
	bool float_proj;       /* f32/f16/bf16 projections are ternarized at load (else refused) */
} BnmArch;

/* The table row for an architecture name (len bytes, not NUL-terminated), or NULL. */
const BnmArch *bnm_arch_find(const char *name, size_t len);

/* ---- checks.c ---- */

/* Fails (BN_EFORMAT, naming the tensor and its first bad element or block) if a float the
 * graph reads from t is NaN or infinite: f32/f16/bf16 elements, the f16 block scales of
 * q8_0, q6_k, tq1_0 and tq2_0. Other types pass. One pass over the data, vectorizable. */
int bnm_check_finite(const GgufFile *f, const GgufTensor *t, BnErr *e);

/* ---- the string hash ---- */

/* FNV-1a (64-bit) of the string s, starting from h: BNM_FNV_BASIS for the plain hash (synth.c:
 * each tensor's random stream, its string set), a per-index seed in gguf.c's name index. */
#define BNM_FNV_BASIS 0xcbf29ce484222325ull
static inline uint64_t bnm_fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

#endif
