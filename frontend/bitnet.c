/* bitnet.c - ternary architectures (bitnet-b1.58, bitnet-25, bitnet, llama): GGUF lowered to
 * graph IR. */
#include "frontend_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- the architecture table ---------------------------------------------- */

/* ORDER BNM_ARCH: arch_names below lists the same names. */
/* clang-format off */
static const BnmArch arch_table[] = {
	{ .name = "bitnet-b1.58", .ffn_glu = IR_OP_RELU2_GLU, .rope_mode = "neox", .sub_norms = true,
	  .rope_freqs = true, .proj_bias = true, .output_weight = true, .head = BNM_HEAD_TIED,
	  .float_proj = true },
	/* bitnet-25 is the same graph under another name */
	{ .name = "bitnet-25", .ffn_glu = IR_OP_RELU2_GLU, .rope_mode = "neox", .sub_norms = true,
	  .rope_freqs = true, .proj_bias = true, .output_weight = true, .head = BNM_HEAD_TIED,
	  .float_proj = true },
	/* 1bitLLM-style models: SiLU gate, optional per-projection output scales */
	{ .name = "bitnet", .ffn_glu = IR_OP_SILU_GLU, .rope_mode = "neox", .sub_norms = true,
	  .proj_scales = true, .proj_bias = true, .head = BNM_HEAD_TIED, .float_proj = true },
	/* Llama3-8B-1.58 and Falcon3 1.58-bit: SiLU gate, no sub-norms, adjacent-pair RoPE, an
	 * untied head. The reference computes float projections of this arch in float, so
	 * only ternary ones (i2_s, tq1_0, tq2_0) are read. */
	{ .name = "llama", .ffn_glu = IR_OP_SILU_GLU, .rope_mode = "normal", .rope_freqs = true,
	  .proj_bias = true, .output_weight = true, .head = BNM_HEAD_OUTPUT },
};
/* clang-format on */
#define N_ARCH ((int)(sizeof arch_table / sizeof arch_table[0]))

static const char *const arch_names[] = { "bitnet-b1.58", "bitnet-25", "bitnet", "llama", NULL };
_Static_assert(sizeof arch_names / sizeof arch_names[0] == N_ARCH + 1, "ORDER BNM_ARCH");

const char *const *bnm_archs(void)
{
	return arch_names;
}

const BnmArch *bnm_arch_find(const char *name, size_t len)
{
	for (int i = 0; i < N_ARCH; i++)
		if (strlen(arch_table[i].name) == len && memcmp(arch_table[i].name, name, len) == 0)
			return &arch_table[i];
	return NULL;
}

/* Limits far above any real model: values beyond them are corrupt files, and we never
 * size an allocation from an unchecked count. */
#define MAX_LAYER INT64_C(4096)
#define MAX_EMBD (INT64_C(1) << 20)
#define MAX_FF (INT64_C(1) << 22)
#define MAX_HEAD (INT64_C(1) << 14)
#define MAX_VOCAB (INT64_C(1) << 24)
#define MAX_CTX (INT64_C(1) << 24)

static const char *fpath(const GgufFile *f)
{
	return f->path ? f->path : "<gguf>";
}

/* ---- hyperparameters -------------------------------------------------------- */

typedef struct {
	const BnmArch *arch;
	IrHparams hp; /* layer 0's values where a key is per layer */
	int64_t n_rot;
	int64_t *n_ff, *n_head, *n_head_kv; /* one per layer; one malloc'd block */
} Hparams;

static void hp_free(Hparams *h)
{
	free(h->n_ff);
	h->n_ff = h->n_head = h->n_head_kv = NULL;
}

/* "a, b, c" of the supported architectures, for a message. */
static const char *arch_list(char *buf, size_t n)
{
	buf[0] = 0;
	for (int i = 0; i < N_ARCH; i++)
		snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? ", " : "",
			 arch_table[i].name);
	return buf;
}

static int read_arch(const GgufFile *f, const BnmArch **out, BnErr *e)
{
	const char *key = "general.architecture";
	const GgufKV *kv = gguf_find(f, key);
	GgufStr s;
	char list[128];
	if (!kv)
		return bn_err(e, BN_EFORMAT, "%s: %s: missing (supported: %s)", fpath(f), key,
			      arch_list(list, sizeof list));
	if (!gguf_value_str(&kv->val, &s))
		return bn_err(e, BN_EFORMAT, "%s: %s: expected a string, found %s", fpath(f), key,
			      gguf_type_name(kv->val.type));
	*out = bnm_arch_find(s.ptr, (size_t)s.len);
	if (*out)
		return 0;
	/* GGUF type 36 is I2_S only in the BitNet fork; elsewhere it means something else */
	bool t36 = false;
	for (uint64_t i = 0; i < f->n_tensors; i++)
		t36 |= f->tensors[i].ggml_type == 36;
	return bn_err(e, BN_EUNSUPPORTED, "%s: %s: unknown architecture '%.*s' (supported: %s)%s",
		      fpath(f), key, s.len > 64 ? 64 : (int)s.len, s.ptr, arch_list(list, sizeof list),
		      t36 ? "; tensor type 36 is read as I2_S only for these" : "");
}

static int check_int(const GgufFile *f, const char *label, const GgufValue *v, int64_t lo,
		     int64_t hi, int64_t *out, BnErr *e)
{
	if (v->type == GGUF_T_BOOL || !gguf_value_int(v, out))
		return bn_err(e, BN_EFORMAT, "%s: %s: expected an integer, found %s", fpath(f),
			      label, gguf_type_name(v->type));
	if (*out < lo || *out > hi)
		return bn_err(e, BN_EFORMAT,
			      "%s: %s: %" PRId64 " is out of range (expected %" PRId64 "..%" PRId64
			      ")",
			      fpath(f), label, *out, lo, hi);
	return 0;
}

/* "<arch>.<suffix>" */
static const char *akey(char *buf, size_t n, const Hparams *h, const char *suffix)
{
	snprintf(buf, n, "%s.%s", h->arch->name, suffix);
	return buf;
}

/* An integer key in [lo, hi]; a missing optional key gives dflt. */
static int get_int(const GgufFile *f, const char *key, bool required, int64_t dflt, int64_t lo,
		   int64_t hi, int64_t *out, BnErr *e)
{
	const GgufKV *kv = gguf_find(f, key);
	if (kv)
		return check_int(f, key, &kv->val, lo, hi, out, e);
	if (required)
		return bn_err(e, BN_EFORMAT, "%s: %s: missing (required)", fpath(f), key);
	*out = dflt;
	return 0;
}

/* A key that is either one integer or an array of one per layer; a missing optional
 * key copies dflt (n values). */
static int get_layers(const GgufFile *f, const char *key, bool required, const int64_t *dflt,
		      int64_t n, int64_t lo, int64_t hi, int64_t *out, BnErr *e)
{
	const GgufKV *kv = gguf_find(f, key);
	if (!kv) {
		if (required)
			return bn_err(e, BN_EFORMAT, "%s: %s: missing (required)", fpath(f), key);
		memcpy(out, dflt, (size_t)n * sizeof *out);
		return 0;
	}
	if (kv->val.type != GGUF_T_ARRAY) {
		int rc = check_int(f, key, &kv->val, lo, hi, &out[0], e);
		if (rc)
			return rc;
		for (int64_t i = 1; i < n; i++)
			out[i] = out[0];
		return 0;
	}
	if (kv->val.arr_n != (uint64_t)n)
		return bn_err(e, BN_EFORMAT,
			      "%s: %s: array of %" PRIu64
			      " values, expected one per layer (%" PRId64 ")",
			      fpath(f), key, kv->val.arr_n, n);
	for (int64_t i = 0; i < n; i++) {
		GgufValue el;
		char label[160];
		snprintf(label, sizeof label, "%s[%" PRId64 "]", key, i);
		if (!gguf_value_elem(&kv->val, (uint64_t)i, &el))
			return bn_err(e, BN_EFORMAT, "%s: %s: unreadable", fpath(f), label);
		int rc = check_int(f, label, &el, lo, hi, &out[i], e);
		if (rc)
			return rc;
	}
	return 0;
}

/* A finite float key; a missing optional key gives dflt. */
static int get_float(const GgufFile *f, const char *key, bool required, double dflt, float *out,
		     BnErr *e)
{
	const GgufKV *kv = gguf_find(f, key);
	double d = dflt;
	if (!kv && required)
		return bn_err(e, BN_EFORMAT, "%s: %s: missing (required)", fpath(f), key);
	if (kv && (kv->val.type == GGUF_T_BOOL || !gguf_value_float(&kv->val, &d)))
		return bn_err(e, BN_EFORMAT, "%s: %s: expected a number, found %s", fpath(f), key,
			      gguf_type_name(kv->val.type));
	*out = (float)d;
	if (!isfinite(*out))
		return bn_err(e, BN_EFORMAT, "%s: %s: %g is not a finite f32", fpath(f), key, d);
	return 0;
}

/* vocab_size, else the tokenizer's token count, else token_embd's rows. */
static int read_vocab(const GgufFile *f, const Hparams *h, int64_t *n_vocab, BnErr *e)
{
	char key[128];
	const GgufKV *toks = gguf_find(f, "tokenizer.ggml.tokens");
	const GgufTensor *embd = gguf_find_tensor(f, "token_embd.weight");
	uint64_t n_toks = toks && toks->val.type == GGUF_T_ARRAY ? toks->val.arr_n : 0;
	akey(key, sizeof key, h, "vocab_size");
	if (gguf_find(f, key)) {
		int rc = get_int(f, key, true, 0, 1, MAX_VOCAB, n_vocab, e);
		if (rc)
			return rc;
	} else if (n_toks) {
		if (n_toks > (uint64_t)MAX_VOCAB)
			return bn_err(e, BN_EFORMAT,
				      "%s: tokenizer.ggml.tokens: %" PRIu64 " tokens, more "
				      "than the %" PRId64 " bitnetc accepts",
				      fpath(f), n_toks, MAX_VOCAB);
		*n_vocab = (int64_t)n_toks;
	} else if (embd && embd->ne[1] >= 1 && embd->ne[1] <= MAX_VOCAB) {
		*n_vocab = embd->ne[1];
	} else {
		return bn_err(e, BN_EFORMAT,
			      "%s: %s: missing, and neither tokenizer.ggml.tokens nor "
			      "token_embd.weight gives a usable vocabulary size",
			      fpath(f), key);
	}
	/* fewer embedding rows than tokens would let a token id index past the table */
	if (n_toks > (uint64_t)*n_vocab)
		return bn_err(e, BN_EFORMAT,
			      "%s: tokenizer.ggml.tokens: %" PRIu64 " tokens but the "
			      "vocabulary size (%s) is %" PRId64,
			      fpath(f), n_toks, key, *n_vocab);
	return 0;
}

/* Per-layer head counts: each kv head serves n_head / n_head_kv consecutive q heads. */
static int check_heads(const GgufFile *f, const Hparams *h, BnErr *e)
{
	char kh[128], kkv[128];
	akey(kh, sizeof kh, h, "attention.head_count");
	akey(kkv, sizeof kkv, h, "attention.head_count_kv");
	for (int64_t l = 0; l < h->hp.n_layer; l++)
		if (h->n_head[l] % h->n_head_kv[l])
			return bn_err(e, BN_EFORMAT,
				      "%s: layer %" PRId64 ": %s (%" PRId64 ") is not a "
				      "multiple of %s (%" PRId64 ")",
				      fpath(f), l, kh, h->n_head[l], kkv, h->n_head_kv[l]);
	return 0;
}

static int read_sizes(const GgufFile *f, Hparams *h, BnErr *e)
{
	char key[128];
	IrHparams *hp = &h->hp;
	int rc;
	if ((rc = get_int(f, akey(key, sizeof key, h, "context_length"), true, 0, 1, MAX_CTX,
			  &hp->n_ctx_train, e)) ||
	    (rc = get_int(f, akey(key, sizeof key, h, "embedding_length"), true, 0, 1, MAX_EMBD,
			  &hp->n_embd, e)) ||
	    (rc = get_int(f, akey(key, sizeof key, h, "block_count"), true, 0, 1, MAX_LAYER,
			  &hp->n_layer, e)))
		return rc;
	int64_t nl = hp->n_layer; /* <= MAX_LAYER: the allocation below is small */
	h->n_ff = calloc((size_t)nl * 3, sizeof(int64_t));
	if (!h->n_ff)
		return bn_err(e, BN_ENOMEM, "%s: out of memory", fpath(f));
	h->n_head = h->n_ff + nl;
	h->n_head_kv = h->n_head + nl;
	if ((rc = get_layers(f, akey(key, sizeof key, h, "feed_forward_length"), true, NULL, nl, 1,
			     MAX_FF, h->n_ff, e)) ||
	    (rc = get_layers(f, akey(key, sizeof key, h, "attention.head_count"), true, NULL, nl, 1,
			     MAX_HEAD, h->n_head, e)) ||
	    (rc = get_layers(f, akey(key, sizeof key, h, "attention.head_count_kv"), false,
			     h->n_head, nl, 1, MAX_HEAD, h->n_head_kv, e)))
		return rc;
	hp->n_ff = h->n_ff[0];
	hp->n_head = h->n_head[0];
	hp->n_head_kv = h->n_head_kv[0];
	return 0;
}

/* Keys the reference reads for every arch that change the graph in ways bitnetc does not
 * compute: experts (a llama-arch MoE), a head size other than n_embd / n_head, and RoPE
 * frequency scaling. */
static int check_unsupported(const GgufFile *f, const Hparams *h, BnErr *e)
{
	static const char *const scale_keys[] = { "rope.scaling.factor", "rope.scale_linear" };
	char key[128];
	int64_t n_expert = 0;
	int rc = get_int(f, akey(key, sizeof key, h, "expert_count"), false, 0, 0, MAX_HEAD,
			 &n_expert, e);
	if (rc)
		return rc;
	if (n_expert > 0)
		return bn_err(e, BN_EUNSUPPORTED,
			      "%s: %s: %" PRId64 ": mixture-of-experts models are not supported",
			      fpath(f), key, n_expert);
	static const char *const len_keys[] = { "attention.key_length", "attention.value_length" };
	for (int i = 0; i < 2; i++) {
		int64_t len = 0;
		if ((rc = get_int(f, akey(key, sizeof key, h, len_keys[i]), false, h->hp.head_dim, 1,
				  MAX_EMBD, &len, e)))
			return rc;
		if (len != h->hp.head_dim)
			return bn_err(e, BN_EUNSUPPORTED,
				      "%s: %s: %" PRId64 ", expected the head size %" PRId64
				      " (embedding_length / head_count)",
				      fpath(f), key, len, h->hp.head_dim);
	}
	for (int i = 0; i < 2; i++) {
		float factor = 0;
		if ((rc = get_float(f, akey(key, sizeof key, h, scale_keys[i]), false, 0, &factor, e)))
			return rc;
		if (factor != 0 && factor != 1)
			return bn_err(e, BN_EUNSUPPORTED,
				      "%s: %s: %g: RoPE frequency scaling is not supported", fpath(f),
				      key, factor);
	}
	return 0;
}

static int read_hparams(const GgufFile *f, Hparams *h, BnErr *e)
{
	char key[128], k2[128];
	IrHparams *hp = &h->hp;
	int rc;
	memset(h, 0, sizeof *h);
	if ((rc = read_arch(f, &h->arch, e)) || (rc = read_sizes(f, h, e)))
		return rc;
	if (hp->n_embd % hp->n_head)
		return bn_err(e, BN_EFORMAT,
			      "%s: %s (%" PRId64 ") is not a multiple of %s (%" PRId64 ")",
			      fpath(f), akey(key, sizeof key, h, "embedding_length"), hp->n_embd,
			      akey(k2, sizeof k2, h, "attention.head_count"), hp->n_head);
	hp->head_dim = hp->n_embd / hp->n_head;
	if (hp->head_dim % 2) /* RoPE rotates pairs of dimensions */
		return bn_err(e, BN_EUNSUPPORTED,
			      "%s: %s / %s = %" PRId64 ": an odd head size is not supported",
			      fpath(f), akey(key, sizeof key, h, "embedding_length"),
			      akey(k2, sizeof k2, h, "attention.head_count"), hp->head_dim);
	if ((rc = check_heads(f, h, e)))
		return rc;
	if ((rc = get_float(f, akey(key, sizeof key, h, "attention.layer_norm_rms_epsilon"), true,
			    0, &hp->eps, e)))
		return rc;
	if (hp->eps < 0 || hp->eps >= 1)
		return bn_err(e, BN_EFORMAT, "%s: %s: %g, expected 0 <= eps < 1", fpath(f), key,
			      hp->eps);
	if ((rc = get_float(f, akey(key, sizeof key, h, "rope.freq_base"), false, 10000.0,
			    &hp->rope_base, e)))
		return rc;
	if (hp->rope_base <= 0)
		return bn_err(e, BN_EFORMAT, "%s: %s: %g, expected > 0", fpath(f), key,
			      hp->rope_base);
	if ((rc = check_unsupported(f, h, e)))
		return rc;
	if ((rc = get_int(f, akey(key, sizeof key, h, "rope.dimension_count"), false, hp->head_dim,
			  1, MAX_EMBD, &h->n_rot, e)))
		return rc;
	/* partial rotary embeddings are not something these archs do */
	if (h->n_rot != hp->head_dim)
		return bn_err(e, BN_EUNSUPPORTED,
			      "%s: %s: %" PRId64 ", expected the head size %" PRId64
			      " (embedding_length / head_count)",
			      fpath(f), key, h->n_rot, hp->head_dim);
	return read_vocab(f, h, &hp->n_vocab, e);
}

int bnm_hparams(const GgufFile *f, IrHparams *hp, BnErr *e)
{
	Hparams h;
	int rc = read_hparams(f, &h, e);
	if (!rc)
		*hp = h.hp;
	hp_free(&h);
	return rc;
}

/* ---- tensors ------------------------------------------------------------------ */

typedef enum {
	TK_F32, /* norms, biases, scales, rope_freqs */
	TK_TERNARY, /* the projections: int8 x ternary kernels (float ones ternarized at load) */
	TK_EMBD, /* token_embd (and an untied output.weight) */
} TensorKind;

#define IGNORED (-2) /* cval of a tensor the arch allows but does not compute with */

typedef struct {
	const GgufFile *f;
	Hparams h;
	IrGraph *g;
	IrId *cval; /* per file tensor: its const value, IR_NONE until used */
	BnErr *e;
	int rc; /* first error; once set, builders do nothing */
	/* QUANT_ACT nodes of the current layer, shared per (input, mode) */
	struct {
		IrId in, codes, scales;
		bool block;
	} q[8];
	int n_q;
	float *fbuf; /* a float projection's values while it is ternarized */
	size_t fbuf_n;
} Ctx;

static int fail(Ctx *c, int code, const char *fmt, ...) BN_PRINTF(3, 4);

static int fail(Ctx *c, int code, const char *fmt, ...)
{
	if (c->rc)
		return c->rc;
	va_list ap;
	char msg[sizeof c->e->msg];
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return c->rc = bn_err(c->e, code, "%s", msg);
}

static const char *shape_str(char *buf, size_t n, int n_dims, const int64_t *ne)
{
	size_t len = (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < n_dims && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%" PRId64, i ? ", " : "", ne[i]);
	if (len < n)
		snprintf(buf + len, n - len, "]");
	return buf;
}

static const char *type_str(const GgufTensor *t)
{
	IrDtype dt;
	return ir_dtype_from_ggml(t->ggml_type, &dt) ? ir_dtype_name(dt)
						     : ir_ggml_type_desc(t->ggml_type);
}

/* Float types a projection may come in, to be ternarized. */
static bool float_dtype(IrDtype dt)
{
	return dt == IR_DT_F32 || dt == IR_DT_F16 || dt == IR_DT_BF16;
}

/* The projections bitlinear() is called with (attn_block, ffn_block). */
static const char *const proj_names[] = { "attn_q",   "attn_k", "attn_v",   "attn_output",
					  "ffn_gate", "ffn_up", "ffn_down" };

bool bnm_is_projection(const char *name)
{
	const char *p = name;
	if (strncmp(p, "blk.", 4) != 0)
		return false;
	p += 4;
	if (*p < '0' || *p > '9')
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p++ != '.')
		return false;
	for (size_t i = 0; i < sizeof proj_names / sizeof proj_names[0]; i++) {
		size_t n = strlen(proj_names[i]);
		if (strncmp(p, proj_names[i], n) == 0 && strcmp(p + n, ".weight") == 0)
			return true;
	}
	return false;
}

bool bnm_float_projection(const GgufTensor *t)
{
	return bnm_is_projection(t->name) && float_dtype(t->dtype);
}

static bool kind_accepts(TensorKind k, IrDtype dt)
{
	switch (k) {
	case TK_F32:
		return dt == IR_DT_F32;
	case TK_TERNARY:
		return dt == IR_DT_I2_S || dt == IR_DT_TQ1_0 || dt == IR_DT_TQ2_0 ||
			float_dtype(dt);
	case TK_EMBD:
		return dt == IR_DT_F32 || dt == IR_DT_F16 || dt == IR_DT_BF16 || dt == IR_DT_Q8_0 ||
			dt == IR_DT_Q6_K;
	}
	return false;
}

static const char *kind_expects(TensorKind k)
{
	switch (k) {
	case TK_F32:
		return "f32";
	case TK_TERNARY:
		return "i2_s, tq1_0 or tq2_0, or f32, f16 or bf16 to be ternarized: the projection "
		       "kernels are int8 x ternary";
	case TK_EMBD:
		return "f32, f16, bf16, q8_0 or q6_k";
	}
	return "?";
}

static int check_type(Ctx *c, const GgufTensor *t, TensorKind kind)
{
	IrDtype dt;
	bool known = ir_dtype_from_ggml(t->ggml_type, &dt);
	if (known && kind == TK_TERNARY && float_dtype(dt) && !c->h.arch->float_proj)
		return fail(c, BN_EUNSUPPORTED,
			    "%s: %s: unsupported type %s for arch %s (expected i2_s, tq1_0 or tq2_0: "
			    "only ternary projections are supported for this arch)",
			    fpath(c->f), t->name, type_str(t), c->h.arch->name);
	if (known && kind_accepts(kind, dt))
		return 0;
	if (kind == TK_TERNARY && !c->h.arch->float_proj)
		return fail(c, BN_EUNSUPPORTED,
			    "%s: %s: unsupported type %s for arch %s (expected i2_s, tq1_0 or tq2_0: "
			    "the projection kernels are int8 x ternary)",
			    fpath(c->f), t->name, type_str(t), c->h.arch->name);
	return fail(c, BN_EUNSUPPORTED, "%s: %s: unsupported type %s (expected %s)", fpath(c->f),
		    t->name, type_str(t), kind_expects(kind));
}

/* The hyperparameters the shapes of tensor name follow from (its layer's, for blk.L.*),
 * for a message about a shape that does not match them. */
static const char *shape_why(const Ctx *c, const char *name, char *buf, size_t n)
{
	const Hparams *h = &c->h;
	char *end = NULL;
	long L = strncmp(name, "blk.", 4) ? -1 : strtol(name + 4, &end, 10);
	if (L < 0 || L >= h->hp.n_layer || !end || *end != '.')
		L = -1;
	long l = L < 0 ? 0 : L;
	char layer[32] = "";
	if (L >= 0)
		snprintf(layer, sizeof layer, "layer %ld: ", L);
	snprintf(buf, n,
		 "%sn_embd %" PRId64 ", n_ff %" PRId64 ", n_head %" PRId64 " and n_head_kv %" PRId64
		 " of head_dim %" PRId64 ", n_vocab %" PRId64,
		 layer, h->hp.n_embd, h->n_ff[l], h->n_head[l], h->n_head_kv[l], h->hp.head_dim,
		 h->hp.n_vocab);
	return buf;
}

/* Exact shape (trailing dims of 1 aside), then what the kernels need of it. */
static int check_shape(Ctx *c, const GgufTensor *t, TensorKind kind, int n_dims, const int64_t *ne)
{
	char want[96], got[96];
	bool same = true;
	for (int i = 0; i < GGUF_MAX_DIMS; i++)
		same &= t->ne[i] == (i < n_dims ? ne[i] : 1);
	if (!same) {
		char why[192];
		return fail(c, BN_EFORMAT, "%s: %s: shape %s, expected %s (%s)", fpath(c->f), t->name,
			    shape_str(got, sizeof got, t->n_dims, t->ne),
			    shape_str(want, sizeof want, n_dims, ne), shape_why(c, t->name, why, sizeof why));
	}
	const IrDtypeInfo *ti = ir_dtype_info(t->dtype);
	/* float projections become I2_S: its rows are what the kernels see */
	bool tern = kind == TK_TERNARY && float_dtype(t->dtype);
	const IrDtypeInfo *ki = tern ? ir_dtype_info(IR_DT_I2_S) : ti;
	if (kind != TK_F32 && ne[0] % ki->block)
		return fail(c, BN_EUNSUPPORTED,
			    "%s: %s: unsupported shape %s: %s rows must be a multiple "
			    "of %d elements%s",
			    fpath(c->f), t->name, shape_str(got, sizeof got, n_dims, ne), ki->name,
			    ki->block, tern ? " (float projections are ternarized to i2_s)" : "");
	uint64_t n = 1, nbytes = 0;
	for (int i = 0; i < n_dims; i++)
		n *= (uint64_t)ne[i]; /* the reader checked the tensor fits the file */
	if (!ir_dtype_nbytes(t->dtype, n, (uint64_t)ne[0], &nbytes) || nbytes != t->nbytes ||
	    !t->data)
		return fail(c, BN_EFORMAT,
			    "%s: %s: %" PRIu64 " bytes of data, expected %" PRIu64 " for %s %s",
			    fpath(c->f), t->name, t->nbytes, nbytes, ti->name,
			    shape_str(got, sizeof got, n_dims, ne));
	if (t->dtype == IR_DT_I2_S && !isfinite(ir_i2s_scale(t->data, (int64_t)n)))
		return fail(c, BN_EFORMAT, "%s: %s: the i2_s scale is %g, expected a finite number",
			    fpath(c->f), t->name, ir_i2s_scale(t->data, (int64_t)n));
	return 0;
}

/* A NaN or an infinity in a weight would run through the graph into the logits (and into
 * int8 conversions, where it is undefined): refused at load, naming the element. */
static int check_values(Ctx *c, const GgufTensor *t)
{
	int rc = bnm_check_finite(c->f, t, c->e);
	if (rc)
		c->rc = rc;
	return rc;
}

/* A float projection (shape and size checked) as an I2_S constant in the graph's arena,
 * ternarized as the reference's converter and quantizer do (ir_ternarize). */
static IrId ternarized(Ctx *c, const GgufTensor *t, int n_dims, const int64_t *ne)
{
	int64_t n = ne[0] * ne[1];
	uint64_t nbytes = 0;
	if ((size_t)n > c->fbuf_n) {
		free(c->fbuf);
		c->fbuf = malloc((size_t)n * sizeof(float));
		c->fbuf_n = c->fbuf ? (size_t)n : 0;
	}
	void *dst = NULL;
	if (c->fbuf && ir_dtype_nbytes(IR_DT_I2_S, (uint64_t)n, (uint64_t)ne[0], &nbytes))
		dst = bn_arena_alloc(c->g->arena, (size_t)nbytes);
	if (!dst) {
		fail(c, BN_ENOMEM, "%s: %s: out of memory ternarizing it", fpath(c->f), t->name);
		return IR_NONE;
	}
	ir_dequant(t->dtype, t->data, c->fbuf, n);
	float scale;
	int64_t bad = 0;
	IrTernRule rule = ir_ternarize(c->fbuf, n, t->dtype, &scale, &bad);
	BN_ASSERT(rule != IR_TERN_NONFINITE); /* check_values refused those first */
	(void)rule;
	ir_quant(IR_DT_I2_S, c->fbuf, dst, n);
	IrId v = ir_value_const(c->g, t->name, IR_DT_I2_S, n_dims, ne, dst, nbytes);
	if (v == IR_NONE)
		fail(c, BN_ENOMEM, "%s: out of memory", fpath(c->f));
	return v;
}

/* The const value of a checked tensor; IR_NONE if it is optional and absent, or on
 * error (c->rc set). ne0/ne1: the expected shape (ne1 < 0: one dimension). */
static IrId weight(Ctx *c, const char *name, TensorKind kind, bool optional, int64_t ne0,
		   int64_t ne1)
{
	if (c->rc)
		return IR_NONE;
	const GgufTensor *t = gguf_find_tensor(c->f, name);
	if (!t) {
		if (!optional)
			fail(c, BN_EFORMAT, "%s: %s: missing tensor (required by arch %s)",
			     fpath(c->f), name, c->h.arch->name);
		return IR_NONE;
	}
	size_t idx = (size_t)(t - c->f->tensors);
	if (c->cval[idx] != IR_NONE)
		return c->cval[idx];
	int64_t ne[2] = { ne0, ne1 };
	int n_dims = ne1 < 0 ? 1 : 2;
	if (check_type(c, t, kind) || check_shape(c, t, kind, n_dims, ne) || check_values(c, t))
		return IR_NONE;
	if (kind == TK_TERNARY && float_dtype(t->dtype))
		return c->cval[idx] = ternarized(c, t, n_dims, ne);
	/* n_dims as expected: equal to the file's but for trailing dims of 1 */
	IrId v = ir_value_const(c->g, t->name, t->dtype, n_dims, ne, t->data, t->nbytes);
	if (v == IR_NONE)
		fail(c, BN_ENOMEM, "%s: out of memory", fpath(c->f));
	return c->cval[idx] = v;
}

/* ---- graph builders ------------------------------------------------------------- */

/* A node with one output of dtype dt, shape [width, T]; IR_NONE after any error. */
static IrId node(Ctx *c, IrOp op, const char *name, const IrId *in, int n_in, IrDtype dt,
		 int64_t width)
{
	if (c->rc)
		return IR_NONE;
	for (int i = 0; i < n_in; i++)
		BN_ASSERT(in[i] != IR_NONE);
	int64_t ne[2] = { width, IR_DIM_T };
	IrId v = ir_node1(c->g, op, name, in, n_in, dt, 2, ne);
	if (v == IR_NONE)
		fail(c, BN_ENOMEM, "%s: out of memory building node %s", fpath(c->f), name);
	return v;
}

static IrId node_of(const Ctx *c, IrId v)
{
	return c->g->values[v].producer;
}

static IrId rmsnorm(Ctx *c, IrId x, const char *wname, int64_t width, const char *name)
{
	IrId w = weight(c, wname, TK_F32, false, width, -1);
	IrId in[2] = { x, w };
	IrId y = node(c, IR_OP_RMSNORM, name, in, 2, IR_DT_F32, width);
	if (y != IR_NONE)
		ir_attr_set_float(c->g, node_of(c, y), "eps", c->h.hp.eps);
	return y;
}

static IrId binop(Ctx *c, IrOp op, IrId a, IrId b, int64_t width, const char *name)
{
	IrId in[2] = { a, b };
	return node(c, op, name, in, 2, IR_DT_F32, width);
}

/* int8 codes and scales of x for a weight of type wt: per token for I2_S, per 256 inputs
 * (Q8_K) for TQ1_0/TQ2_0. One QUANT_ACT per (input, mode), so q/k/v share theirs. */
static bool quant(Ctx *c, IrId x, int64_t k, IrDtype wt, IrId *codes, IrId *scales)
{
	bool block = wt != IR_DT_I2_S;
	for (int i = 0; i < c->n_q; i++)
		if (c->q[i].in == x && c->q[i].block == block) {
			*codes = c->q[i].codes;
			*scales = c->q[i].scales;
			return true;
		}
	if (c->rc)
		return false;
	char name[160], sname[168];
	snprintf(name, sizeof name, "%s.%s", c->g->values[x].name, block ? "q8k" : "q8");
	snprintf(sname, sizeof sname, "%s.scales", name);
	IrId n = ir_node_add(c->g, IR_OP_QUANT_ACT, name, &x, 1);
	int64_t ne_c[2] = { k, IR_DIM_T }, ne_s[2] = { block ? k / 256 : 1, IR_DIM_T };
	*codes = n == IR_NONE ? IR_NONE : ir_node_output(c->g, n, name, IR_DT_I8, 2, ne_c);
	*scales = *codes == IR_NONE ? IR_NONE : ir_node_output(c->g, n, sname, IR_DT_F32, 2, ne_s);
	if (*scales == IR_NONE) {
		fail(c, BN_ENOMEM, "%s: out of memory building node %s", fpath(c->f), name);
		return false;
	}
	ir_attr_set_str(c->g, n, "mode", block ? "block256" : "token");
	BN_ASSERT(c->n_q < (int)(sizeof c->q / sizeof c->q[0]));
	c->q[c->n_q].in = x;
	c->q[c->n_q].block = block;
	c->q[c->n_q].codes = *codes;
	c->q[c->n_q++].scales = *scales;
	return true;
}

/* BitLinear: blk.L.<proj>.weight [k, n_out] applied to x [k, T], then the optional
 * .scale multiply and .bias add the arch allows. */
static IrId bitlinear(Ctx *c, int layer, const char *proj, IrId x, int64_t k, int64_t n_out)
{
	char tn[160], nn[160];
	snprintf(tn, sizeof tn, "blk.%d.%s.weight", layer, proj);
	IrId w = weight(c, tn, TK_TERNARY, false, k, n_out);
	IrId codes, scales;
	if (w == IR_NONE || !quant(c, x, k, c->g->values[w].dtype, &codes, &scales))
		return IR_NONE;
	snprintf(nn, sizeof nn, "blk.%d.%s", layer, proj);
	IrId in[3] = { codes, scales, w };
	IrId y = node(c, IR_OP_TERNARY_MATMUL, nn, in, 3, IR_DT_F32, n_out);
	if (c->h.arch->proj_scales) {
		snprintf(tn, sizeof tn, "blk.%d.%s.scale", layer, proj);
		IrId s = weight(c, tn, TK_F32, true, 1, -1);
		snprintf(nn, sizeof nn, "blk.%d.%s.scaled", layer, proj);
		if (s != IR_NONE)
			y = binop(c, IR_OP_MUL, y, s, n_out, nn);
	}
	if (c->h.arch->proj_bias) {
		snprintf(tn, sizeof tn, "blk.%d.%s.bias", layer, proj);
		IrId b = weight(c, tn, TK_F32, true, n_out, -1);
		snprintf(nn, sizeof nn, "blk.%d.%s.biased", layer, proj);
		if (b != IR_NONE)
			y = binop(c, IR_OP_ADD, y, b, n_out, nn);
	}
	return y;
}

static IrId rope(Ctx *c, int layer, const char *proj, IrId x, int64_t width, IrId freqs)
{
	char nn[160];
	snprintf(nn, sizeof nn, "blk.%d.%s.rope", layer, proj);
	IrId in[2] = { x, freqs };
	IrId y = node(c, IR_OP_ROPE, nn, in, freqs == IR_NONE ? 1 : 2, IR_DT_F32, width);
	if (y == IR_NONE)
		return y;
	IrId n = node_of(c, y);
	ir_attr_set_int(c->g, n, "head_dim", c->h.hp.head_dim);
	ir_attr_set_int(c->g, n, "n_rot", c->h.n_rot);
	ir_attr_set_float(c->g, n, "freq_base", c->h.hp.rope_base);
	ir_attr_set_str(c->g, n, "mode", c->h.arch->rope_mode);
	return y;
}

/* x + attention(norm(x)) for one layer; returns the new residual ("blk.L.ffn_inp"). */
static IrId attn_block(Ctx *c, int L, IrId x, IrId freqs)
{
	const int64_t hd = c->h.hp.head_dim, n_embd = c->h.hp.n_embd;
	const int64_t nq = hd * c->h.n_head[L], nkv = hd * c->h.n_head_kv[L];
	char tn[160], nn[160];
	snprintf(tn, sizeof tn, "blk.%d.attn_norm.weight", L);
	snprintf(nn, sizeof nn, "blk.%d.attn_norm", L);
	IrId h = rmsnorm(c, x, tn, n_embd, nn);
	IrId q = bitlinear(c, L, "attn_q", h, n_embd, nq);
	IrId k = bitlinear(c, L, "attn_k", h, n_embd, nkv);
	IrId v = bitlinear(c, L, "attn_v", h, n_embd, nkv);
	q = rope(c, L, "attn_q", q, nq, freqs);
	k = rope(c, L, "attn_k", k, nkv, freqs);
	snprintf(nn, sizeof nn, "blk.%d.kqv_out", L);
	IrId in[3] = { q, k, v };
	IrId a = node(c, IR_OP_ATTENTION, nn, in, 3, IR_DT_F32, nq);
	if (a != IR_NONE) {
		IrId n = node_of(c, a);
		ir_attr_set_int(c->g, n, "n_head", c->h.n_head[L]);
		ir_attr_set_int(c->g, n, "n_head_kv", c->h.n_head_kv[L]);
		ir_attr_set_int(c->g, n, "head_dim", hd);
		ir_attr_set_int(c->g, n, "layer", L);
		ir_attr_set_float(c->g, n, "scale", 1.0f / sqrtf((float)hd));
	}
	if (c->h.arch->sub_norms) {
		snprintf(tn, sizeof tn, "blk.%d.attn_sub_norm.weight", L);
		snprintf(nn, sizeof nn, "blk.%d.attn_sub_norm", L);
		a = rmsnorm(c, a, tn, nq, nn);
	}
	IrId o = bitlinear(c, L, "attn_output", a, nq, n_embd);
	snprintf(nn, sizeof nn, "blk.%d.ffn_inp", L);
	return binop(c, IR_OP_ADD, x, o, n_embd, nn);
}

/* x + ffn(norm(x)); returns "blk.L.l_out". */
static IrId ffn_block(Ctx *c, int L, IrId x)
{
	const int64_t n_embd = c->h.hp.n_embd, n_ff = c->h.n_ff[L];
	char tn[160], nn[160];
	snprintf(tn, sizeof tn, "blk.%d.ffn_norm.weight", L);
	snprintf(nn, sizeof nn, "blk.%d.ffn_norm", L);
	IrId h = rmsnorm(c, x, tn, n_embd, nn);
	IrId gate = bitlinear(c, L, "ffn_gate", h, n_embd, n_ff);
	IrId up = bitlinear(c, L, "ffn_up", h, n_embd, n_ff);
	snprintf(nn, sizeof nn, "blk.%d.ffn_out", L);
	IrId m = binop(c, c->h.arch->ffn_glu, gate, up, n_ff, nn);
	if (c->h.arch->sub_norms) {
		snprintf(tn, sizeof tn, "blk.%d.ffn_sub_norm.weight", L);
		snprintf(nn, sizeof nn, "blk.%d.ffn_sub_norm", L);
		m = rmsnorm(c, m, tn, n_ff, nn);
	}
	IrId d = bitlinear(c, L, "ffn_down", m, n_ff, n_embd);
	snprintf(nn, sizeof nn, "blk.%d.l_out", L);
	return binop(c, IR_OP_ADD, x, d, n_embd, nn);
}

/* Token embedding weights, with the vocabulary size checked by name before the shape. */
static IrId embd_weight(Ctx *c)
{
	const GgufTensor *t = gguf_find_tensor(c->f, "token_embd.weight");
	if (t && t->n_dims == 2 && t->ne[0] == c->h.hp.n_embd && t->ne[1] != c->h.hp.n_vocab) {
		char key[128];
		fail(c, BN_EFORMAT,
		     "%s: token_embd.weight: %" PRId64 " rows, but the vocabulary has %" PRId64
		     " tokens (%s or tokenizer.ggml.tokens)",
		     fpath(c->f), t->ne[1], c->h.hp.n_vocab,
		     akey(key, sizeof key, &c->h, "vocab_size"));
		return IR_NONE;
	}
	return weight(c, "token_embd.weight", TK_EMBD, false, c->h.hp.n_embd, c->h.hp.n_vocab);
}

static int build(Ctx *c)
{
	const IrHparams *hp = &c->h.hp;
	int64_t ne_t[1] = { IR_DIM_T };
	IrId tokens = ir_value_input(c->g, "tokens", IR_DT_I32, 1, ne_t);
	if (tokens == IR_NONE)
		return fail(c, BN_ENOMEM, "%s: out of memory", fpath(c->f));
	c->g->tokens = tokens;
	IrId embd = embd_weight(c);
	IrId in[2] = { tokens, embd };
	IrId x = node(c, IR_OP_EMBED, "inp_embd", in, 2, IR_DT_F32, hp->n_embd);
	IrId freqs = IR_NONE;
	if (c->h.arch->rope_freqs) /* divides theta per rotary pair */
		freqs = weight(c, "rope_freqs.weight", TK_F32, true, c->h.n_rot / 2, -1);
	for (int L = 0; L < hp->n_layer && !c->rc; L++) {
		c->n_q = 0;
		x = attn_block(c, L, x, freqs);
		c->n_q = 0;
		x = ffn_block(c, L, x);
	}
	IrId h = rmsnorm(c, x, "output_norm.weight", hp->n_embd, "result_norm");
	IrId head = embd;
	if (c->h.arch->output_weight) {
		const GgufTensor *t = gguf_find_tensor(c->f, "output.weight");
		if (t && c->h.arch->head == BNM_HEAD_TIED) /* the reference never reads it */
			c->cval[t - c->f->tensors] = IGNORED;
		else if (t)
			head = weight(c, "output.weight", TK_EMBD, false, hp->n_embd, hp->n_vocab);
	}
	in[0] = h;
	in[1] = head;
	c->g->logits = node(c, IR_OP_MATMUL, "result_output", in, 2, IR_DT_F32, hp->n_vocab);
	return c->rc;
}

/* Every tensor must be one the arch reads: an unknown one may change the model's meaning. */
static int check_all_used(Ctx *c)
{
	for (uint64_t i = 0; i < c->f->n_tensors && !c->rc; i++)
		if (c->cval[i] == IR_NONE)
			fail(c, BN_EUNSUPPORTED,
			     "%s: %s: unexpected tensor (arch %s does not use it)", fpath(c->f),
			     c->f->tensors[i].name, c->h.arch->name);
	return c->rc;
}

/* general.name, else the file's base name without .gguf. */
static IrGraph *graph_new(const GgufFile *f, const char *arch)
{
	GgufStr s;
	char buf[256];
	if (gguf_get_str(f, "general.name", &s) && s.len > 0) {
		snprintf(buf, sizeof buf, "%.*s", s.len > 255 ? 255 : (int)s.len, s.ptr);
	} else {
		const char *base = strrchr(fpath(f), '/');
		snprintf(buf, sizeof buf, "%s", base ? base + 1 : fpath(f));
		size_t n = strlen(buf);
		if (n > 5 && strcmp(buf + n - 5, ".gguf") == 0)
			buf[n - 5] = 0;
	}
	return ir_graph_new(buf, arch);
}

IrGraph *bnm_load(const GgufFile *f, BnErr *e)
{
	Ctx c = { .f = f, .e = e };
	if (read_hparams(f, &c.h, e)) {
		hp_free(&c.h);
		return NULL;
	}
	c.g = graph_new(f, c.h.arch->name);
	c.cval = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *c.cval);
	if (!c.g || !c.cval) {
		fail(&c, BN_ENOMEM, "%s: out of memory", fpath(f));
	} else {
		for (uint64_t i = 0; i < f->n_tensors; i++)
			c.cval[i] = IR_NONE;
		if (!build(&c) && !check_all_used(&c)) {
			c.g->hp = c.h.hp;
			if (ir_verify(c.g, e))
				c.rc = bn_err_prefix(
					e,
					"%s: internal error: the graph built for arch %s fails "
					"verification",
					fpath(f), c.h.arch->name);
		}
	}
	free(c.cval);
	free(c.fbuf);
	hp_free(&c.h);
	if (c.rc) {
		ir_graph_free(c.g);
		return NULL;
	}
	return c.g;
}
