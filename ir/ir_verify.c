/* ir_verify.c - the IR checker: ids, definition before use, arity, dtypes, shapes, sizes; and
 * shape inference, which is the same walk filling in what the per-op rules say. */
#include "ir.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* The verifier stops at the first problem. It walks the nodes' structure (arity, ids,
 * output links), then each value on its own, then the nodes in execution order, so
 * when a node's op rules run every node before it is known to be sound: per-op
 * checks may rely on their producers' attributes.
 *
 * A per-op rule checks the node's inputs and attributes and says what type each output
 * must have (want); the walk then compares the outputs with that, or, when inferring
 * shapes, fills in the outputs whose type is unset. One rule per op serves both. */

typedef struct {
	const IrGraph *g;
	BnErr *e;
	IrId id; /* the node being checked */
	const IrNode *n;
	IrType *want; /* per output: what the rule says it must be */
} Ver;

#define TRY(x) \
	do { \
		int rc_ = (x); \
		if (rc_) \
			return rc_; \
	} while (0)

/* Operand slots: inputs are 0..n_in-1, output j is OUT(j). */
#define OUT(j) (-1 - (j))

/* ---- messages ------------------------------------------------------------------- */

static const char *str_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

static const char *dt_name(IrDtype dt)
{
	return (unsigned)dt < IR_DT_COUNT ? ir_dtype_name(dt) : "?";
}

/* "[256, T]"; a short buffer truncates the text, never overruns. */
static void fmt_dims(int n_dims, const int64_t *ne, char *buf, size_t n)
{
	size_t k = 0;
	buf[0] = 0;
	k += (size_t)snprintf(buf + k, n - k, "[");
	for (int i = 0; i < n_dims && i < IR_MAX_DIMS && k < n; i++) {
		const char *sep = i ? ", " : "";
		if (ne[i] == IR_DIM_T)
			k += (size_t)snprintf(buf + k, n - k, "%sT", sep);
		else
			k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, sep, ne[i]);
	}
	if (k < n)
		snprintf(buf + k, n - k, "]");
}

static void fmt_shape(const IrValue *x, char *buf, size_t n)
{
	fmt_dims(x->n_dims, x->ne, buf, n);
}

static int vfail_at(BnErr *e, const char *prefix, const char *fmt, va_list ap)
	BN_PRINTF(3, 0);
static int vfail_at(BnErr *e, const char *prefix, const char *fmt, va_list ap)
{
	char msg[384];
	vsnprintf(msg, sizeof msg, fmt, ap);
	return bn_err(e, BN_EVERIFY, "%s: %s", prefix, msg);
}

/* A problem with node v->id: "node 12 'blk.0.attn_q' (ternary_matmul): ..." */
static int fail(Ver *v, const char *fmt, ...) BN_PRINTF(2, 3);
static int fail(Ver *v, const char *fmt, ...)
{
	char pre[256];
	snprintf(pre, sizeof pre, "node %d '%s' (%s)", v->id, str_or(v->n->name, "?"),
		 ir_op_name(v->n->op));
	va_list ap;
	va_start(ap, fmt);
	int rc = vfail_at(v->e, pre, fmt, ap);
	va_end(ap);
	return rc;
}

/* A problem with one value on its own: "value 3 'blk.0.attn_q.weight': ...", or for
 * an activation "value 9 'x' (output of node 4 'x' (rope)): ...", since passes think
 * in nodes. */
static int fail_value(const IrGraph *g, IrId id, BnErr *e, const char *fmt, ...)
	BN_PRINTF(4, 5);
static int fail_value(const IrGraph *g, IrId id, BnErr *e, const char *fmt, ...)
{
	char pre[256];
	const IrValue *x = &g->values[id];
	if (x->kind == IR_VAL_ACT && x->producer >= 0 && x->producer < g->n_nodes) {
		const IrNode *p = &g->nodes[x->producer];
		snprintf(pre, sizeof pre, "value %d '%s' (output of node %d '%s' (%s))", id,
			 str_or(x->name, "?"), x->producer, str_or(p->name, "?"), ir_op_name(p->op));
	} else {
		snprintf(pre, sizeof pre, "value %d '%s'", id, str_or(x->name, "?"));
	}
	va_list ap;
	va_start(ap, fmt);
	int rc = vfail_at(e, pre, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- operand helpers (ids already checked) ------------------------------------ */

static IrId slot_id(const Ver *v, int slot)
{
	return slot >= 0 ? v->n->in[slot] : v->n->out[OUT(slot)];
}

static const IrValue *val(const Ver *v, int slot)
{
	return &v->g->values[slot_id(v, slot)];
}

/* "input 2 'blk.0.attn_q.weight'" */
static void slot_desc(const Ver *v, int slot, char *buf, size_t n)
{
	snprintf(buf, n, "%s %d '%s'", slot >= 0 ? "input" : "output", slot >= 0 ? slot : OUT(slot),
		 str_or(val(v, slot)->name, "?"));
}

typedef struct {
	int n;
	IrDtype dt[6];
} DtSet;

/* Weights a float matmul or an embedding can read, and those a ternary matmul can. */
static const DtSet DT_FLOATW = { 5, { IR_DT_F32, IR_DT_F16, IR_DT_BF16, IR_DT_Q8_0, IR_DT_Q6_K } };
static const DtSet DT_TERNARY = { 3, { IR_DT_I2_S, IR_DT_TQ1_0, IR_DT_TQ2_0 } };

static int need_dts(Ver *v, int slot, const DtSet *set)
{
	const IrValue *x = val(v, slot);
	for (int i = 0; i < set->n; i++)
		if (x->dtype == set->dt[i])
			return 0;
	char what[160], exp[96] = "";
	size_t k = 0;
	for (int i = 0; i < set->n && k < sizeof exp; i++) {
		const char *sep = i == 0 ? "" : i == set->n - 1 ? " or " : ", ";
		k += (size_t)snprintf(exp + k, sizeof exp - k, "%s%s", sep, dt_name(set->dt[i]));
	}
	slot_desc(v, slot, what, sizeof what);
	return fail(v, "%s has dtype %s, expected %s", what, dt_name(x->dtype), exp);
}

static int need_dt(Ver *v, int slot, IrDtype dt)
{
	DtSet one = { 1, { dt } };
	return need_dts(v, slot, &one);
}

static int need_const(Ver *v, int slot)
{
	const IrValue *x = val(v, slot);
	if (x->kind == IR_VAL_CONST)
		return 0;
	char what[160];
	slot_desc(v, slot, what, sizeof what);
	return fail(v, "%s must be a constant (weights), got %s", what,
		    x->kind == IR_VAL_INPUT ? "a graph input" : "an activation");
}

static bool is_rows(const IrValue *x, int64_t n)
{
	return x->n_dims == 2 && x->ne[1] == IR_DIM_T && x->ne[0] > 0 && (n < 0 || x->ne[0] == n);
}

static bool is_vec(const IrValue *x, int64_t n)
{
	return x->n_dims == 1 && x->ne[0] == n;
}

static int shape_fail(Ver *v, int slot, const char *expected)
{
	char what[160], shape[96];
	slot_desc(v, slot, what, sizeof what);
	fmt_shape(val(v, slot), shape, sizeof shape);
	return fail(v, "%s has shape %s, expected %s", what, shape, expected);
}

/* Shape [n, T]; n < 0: any row size. */
static int need_rows(Ver *v, int slot, int64_t n)
{
	if (is_rows(val(v, slot), n))
		return 0;
	char exp[48];
	if (n < 0)
		snprintf(exp, sizeof exp, "[n, T]");
	else
		snprintf(exp, sizeof exp, "[%" PRId64 ", T]", n);
	return shape_fail(v, slot, exp);
}

static int need_f32_rows(Ver *v, int slot, int64_t n)
{
	TRY(need_dt(v, slot, IR_DT_F32));
	return need_rows(v, slot, n);
}

/* The rule's verdict: output j is dt[n, T]. Returns 0 so rules can end with it. */
static int out_rows(Ver *v, int j, IrDtype dt, int64_t n)
{
	v->want[j] = (IrType){ .dtype = dt, .n_dims = 2, .ne = { n, IR_DIM_T } };
	return 0;
}

static int need_vec(Ver *v, int slot, int64_t n)
{
	if (is_vec(val(v, slot), n))
		return 0;
	char exp[48];
	snprintf(exp, sizeof exp, "[%" PRId64 "]", n);
	return shape_fail(v, slot, exp);
}

/* A weight matrix [k, n] whose rows (k) match the activation's row size. */
static int need_weight(Ver *v, int slot, int64_t k)
{
	TRY(need_const(v, slot));
	const IrValue *w = val(v, slot);
	if (w->n_dims != 2 || w->ne[0] != k) {
		char exp[48];
		snprintf(exp, sizeof exp, "[%" PRId64 ", n] (rows of input 0)", k);
		return shape_fail(v, slot, exp);
	}
	int block = ir_dtype_info(w->dtype)->block;
	if (k % block != 0) {
		char what[160];
		slot_desc(v, slot, what, sizeof what);
		return fail(v, "%s has rows of %" PRId64 " elements; %s needs a multiple of %d", what,
			    k, dt_name(w->dtype), block);
	}
	return 0;
}

/* ---- attribute helpers ----------------------------------------------------------- */

static const char *const attr_type_name[] = { "int", "float", "string", "int list" };
_Static_assert(sizeof attr_type_name / sizeof attr_type_name[0] == IR_ATTR_INTS + 1,
	       "attr_type_name out of sync with IrAttrType");

static int need_attr(Ver *v, const char *key, IrAttrType t, const IrAttr **out)
{
	const IrAttr *a = ir_attr_find(v->n, key);
	if (!a)
		return fail(v, "missing attribute %s (%s)", key, attr_type_name[t]);
	if (a->type != t)
		return fail(v, "attribute %s has type %s, expected %s", key,
			    (unsigned)a->type <= IR_ATTR_INTS ? attr_type_name[a->type] : "?",
			    attr_type_name[t]);
	*out = a;
	return 0;
}

static int attr_int_min(Ver *v, const char *key, int64_t lo, int64_t *out)
{
	const IrAttr *a = NULL;
	TRY(need_attr(v, key, IR_ATTR_INT, &a));
	if (a->i < lo)
		return fail(v, "attribute %s = %" PRId64 ", expected >= %" PRId64, key, a->i, lo);
	*out = a->i;
	return 0;
}

static int attr_pos_float(Ver *v, const char *key, double *out)
{
	const IrAttr *a = NULL;
	TRY(need_attr(v, key, IR_ATTR_FLOAT, &a));
	if (!(a->f > 0) || !isfinite(a->f))
		return fail(v, "attribute %s = %g, expected a finite value > 0", key, a->f);
	*out = a->f;
	return 0;
}

/* A string attribute that must be one of two words. */
static int attr_enum2(Ver *v, const char *key, const char *w0, const char *w1, const char **out)
{
	const IrAttr *a = NULL;
	TRY(need_attr(v, key, IR_ATTR_STR, &a));
	if (!a->s || (strcmp(a->s, w0) != 0 && strcmp(a->s, w1) != 0))
		return fail(v, "attribute %s = \"%s\", expected \"%s\" or \"%s\"", key,
			    str_or(a->s, "(null)"), w0, w1);
	*out = a->s;
	return 0;
}

/* ---- per-op checks ------------------------------------------------------------------ */

typedef int (*OpCheck)(Ver *v);

static int check_embed(Ver *v)
{
	TRY(need_dt(v, 0, IR_DT_I32));
	const IrValue *tok = val(v, 0);
	if (tok->n_dims != 1 || tok->ne[0] != IR_DIM_T)
		TRY(shape_fail(v, 0, "[T] (token ids)"));
	TRY(need_const(v, 1));
	TRY(need_dts(v, 1, &DT_FLOATW));
	if (val(v, 1)->n_dims != 2)
		TRY(shape_fail(v, 1, "[n_embd, n_vocab]"));
	return out_rows(v, 0, IR_DT_F32, val(v, 1)->ne[0]);
}

/* Input 0 [n, T] f32 and the optional weight [n] f32 in slot w of a norm, and its eps; *n
 * gets n. */
static int check_norm_in(Ver *v, int w, int64_t *n)
{
	TRY(need_f32_rows(v, 0, -1));
	*n = val(v, 0)->ne[0];
	if (v->n->n_in > w) {
		TRY(need_const(v, w));
		TRY(need_dt(v, w, IR_DT_F32));
		TRY(need_vec(v, w, *n));
	}
	double eps;
	return attr_pos_float(v, "eps", &eps);
}

/* The mode and the outputs j, j + 1 (codes [k, T] i8, scales [1 or k/256, T] f32) of a
 * quantizer. */
static int check_quant_out(Ver *v, int j, int64_t k)
{
	const char *mode = NULL;
	TRY(attr_enum2(v, "mode", "token", "block256", &mode));
	out_rows(v, j, IR_DT_I8, k);
	if (strcmp(mode, "token") == 0)
		return out_rows(v, j + 1, IR_DT_F32, 1);
	if (k % 256 != 0)
		return fail(v, "mode=block256 needs rows that are a multiple of 256, input 0 has %" PRId64,
			    k);
	return out_rows(v, j + 1, IR_DT_F32, k / 256);
}

static int check_rmsnorm(Ver *v)
{
	int64_t n;
	TRY(check_norm_in(v, 1, &n));
	return out_rows(v, 0, IR_DT_F32, n);
}

static int check_quant_act(Ver *v)
{
	TRY(need_f32_rows(v, 0, -1));
	return check_quant_out(v, 0, val(v, 0)->ne[0]);
}

static int check_rmsnorm_quant(Ver *v)
{
	int64_t n;
	TRY(check_norm_in(v, 1, &n));
	return check_quant_out(v, 0, n);
}

/* a + b of one shape (no broadcast: the sum is a residual stream), then as rmsnorm_quant. */
static int check_add_rmsnorm_quant(Ver *v)
{
	int64_t n;
	TRY(check_norm_in(v, 2, &n));
	TRY(need_f32_rows(v, 1, n));
	out_rows(v, 0, IR_DT_F32, n);
	return check_quant_out(v, 1, n);
}

/* Where a quantizer's codes and scales are among its outputs: 0 and 1, after the sum for
 * add_rmsnorm_quant; -1 for a node that is no quantizer. */
static int quant_out0(const IrNode *n)
{
	switch (n->op) {
	case IR_OP_QUANT_ACT:
	case IR_OP_RMSNORM_QUANT:
		return 0;
	case IR_OP_ADD_RMSNORM_QUANT:
		return 1;
	default:
		return -1;
	}
}

static int check_ternary_matmul(Ver *v)
{
	const IrGraph *g = v->g;
	TRY(need_dt(v, 0, IR_DT_I8));
	TRY(need_rows(v, 0, -1));
	TRY(need_dt(v, 1, IR_DT_F32));
	TRY(need_rows(v, 1, -1));
	/* Codes and scales only make sense as the pair one quantization produced. */
	const IrValue *q = val(v, 0), *s = val(v, 1);
	const IrNode *qa = q->kind == IR_VAL_ACT ? &g->nodes[q->producer] : NULL;
	int j = qa ? quant_out0(qa) : -1;
	if (j < 0 || s->kind != IR_VAL_ACT || s->producer != q->producer ||
	    qa->out[j] != v->n->in[0] || qa->out[j + 1] != v->n->in[1])
		return fail(v, "inputs 0 '%s' and 1 '%s' must be outputs 0 and 1 of one quant_act node "
			       "(or rmsnorm_quant node; outputs 1 and 2 of an add_rmsnorm_quant node)",
			    str_or(q->name, "?"), str_or(s->name, "?"));
	int64_t k = q->ne[0];
	TRY(need_dts(v, 2, &DT_TERNARY));
	TRY(need_weight(v, 2, k));
	const IrValue *w = val(v, 2);
	/* I2_S kernels take one scale per token, TQ* kernels one per 256 inputs (Q8_K). */
	const char *want = w->dtype == IR_DT_I2_S ? "token" : "block256";
	const char *mode = ir_attr_str(qa, "mode", "?");
	if (strcmp(mode, want) != 0)
		return fail(v, "input 2 '%s' is %s, which needs activations quantized with mode=%s, "
			       "but node %d '%s' (%s) has mode=%s",
			    str_or(w->name, "?"), dt_name(w->dtype), want, q->producer,
			    str_or(qa->name, "?"), ir_op_name(qa->op), mode);
	return out_rows(v, 0, IR_DT_F32, w->ne[1]);
}

static int check_matmul(Ver *v)
{
	TRY(need_f32_rows(v, 0, -1));
	TRY(need_dts(v, 1, &DT_FLOATW));
	TRY(need_weight(v, 1, val(v, 0)->ne[0]));
	return out_rows(v, 0, IR_DT_F32, val(v, 1)->ne[1]);
}

static int check_rope(Ver *v)
{
	int64_t hd = 0, n_rot = 0;
	double base = 0;
	const char *mode = NULL;
	TRY(attr_int_min(v, "head_dim", 1, &hd));
	TRY(attr_int_min(v, "n_rot", 2, &n_rot));
	TRY(attr_pos_float(v, "freq_base", &base));
	TRY(attr_enum2(v, "mode", "neox", "normal", &mode));
	if (n_rot % 2 != 0 || n_rot > hd)
		return fail(v, "attribute n_rot = %" PRId64 " must be even and <= head_dim (%" PRId64 ")",
			    n_rot, hd);
	TRY(need_f32_rows(v, 0, -1));
	int64_t m = val(v, 0)->ne[0];
	if (m % hd != 0)
		return fail(v, "input 0 '%s' has rows of %" PRId64 ", not a multiple of head_dim %" PRId64,
			    str_or(val(v, 0)->name, "?"), m, hd);
	if (v->n->n_in > 1) {
		TRY(need_const(v, 1));
		TRY(need_dt(v, 1, IR_DT_F32));
		TRY(need_vec(v, 1, n_rot / 2));
	}
	return out_rows(v, 0, IR_DT_F32, m);
}

static int check_attention(Ver *v)
{
	const IrGraph *g = v->g;
	int64_t nh = 0, nkv = 0, hd = 0, layer = 0;
	const IrAttr *scale = NULL;
	TRY(attr_int_min(v, "n_head", 1, &nh));
	TRY(attr_int_min(v, "n_head_kv", 1, &nkv));
	TRY(attr_int_min(v, "head_dim", 1, &hd));
	TRY(attr_int_min(v, "layer", 0, &layer));
	TRY(need_attr(v, "scale", IR_ATTR_FLOAT, &scale));
	if (!isfinite(scale->f))
		return fail(v, "attribute scale = %g, expected a finite value", scale->f);
	if (nh % nkv != 0)
		return fail(v, "n_head %" PRId64 " is not a multiple of n_head_kv %" PRId64, nh, nkv);
	uint64_t qw, kvw;
	if (!bn_mul_ok((uint64_t)hd, (uint64_t)nh, &qw) || qw > INT64_MAX ||
	    !bn_mul_ok((uint64_t)hd, (uint64_t)nkv, &kvw))
		return fail(v, "head_dim * n_head overflows");
	TRY(need_f32_rows(v, 0, (int64_t)qw));
	TRY(need_f32_rows(v, 1, (int64_t)kvw));
	TRY(need_f32_rows(v, 2, (int64_t)kvw));
	out_rows(v, 0, IR_DT_F32, (int64_t)qw);
	/* The layer picks the KV cache slot: two attentions on one slot would overwrite
	 * each other's keys, and the cache has hp.n_layer slots. */
	if (g->hp.n_layer > 0 && layer >= g->hp.n_layer)
		return fail(v, "attribute layer = %" PRId64 " is out of range: the KV cache has %" PRId64
			       " layers",
			    layer, g->hp.n_layer);
	for (IrId i = 0; i < v->id; i++) {
		const IrNode *o = &g->nodes[i];
		if (o->op == IR_OP_ATTENTION && ir_attr_int(o, "layer", -1) == layer)
			return fail(v, "attribute layer = %" PRId64 " is already used by node %d '%s'; "
				       "each attention needs its own KV cache slot",
				    layer, i, str_or(o->name, "?"));
	}
	return 0;
}

static int check_glu(Ver *v)
{
	TRY(need_f32_rows(v, 0, -1));
	int64_t n = val(v, 0)->ne[0];
	TRY(need_f32_rows(v, 1, n));
	return out_rows(v, 0, IR_DT_F32, n);
}

/* ADD and MUL: b is a full [n, T], or broadcast over tokens ([n]); MUL also takes a
 * single scale ([1]). */
static int check_binary(Ver *v, bool scalar_ok)
{
	TRY(need_f32_rows(v, 0, -1));
	int64_t n = val(v, 0)->ne[0];
	TRY(need_dt(v, 1, IR_DT_F32));
	const IrValue *b = val(v, 1);
	if (!is_rows(b, n) && !is_vec(b, n) && !(scalar_ok && is_vec(b, 1))) {
		char exp[80];
		snprintf(exp, sizeof exp, "[%" PRId64 ", T] or [%" PRId64 "]%s", n, n,
			 scalar_ok ? " or [1]" : "");
		return shape_fail(v, 1, exp);
	}
	return out_rows(v, 0, IR_DT_F32, n);
}

static int check_add(Ver *v)
{
	return check_binary(v, false);
}

static int check_mul(Ver *v)
{
	return check_binary(v, true);
}

static const OpCheck op_check[] = { /* ORDER IR_OP */
	check_embed,	     /* EMBED */
	check_rmsnorm,	     /* RMSNORM */
	check_quant_act,     /* QUANT_ACT */
	check_ternary_matmul, /* TERNARY_MATMUL */
	check_matmul,	     /* MATMUL */
	check_rope,	     /* ROPE */
	check_attention,     /* ATTENTION */
	check_glu,	     /* RELU2_GLU */
	check_glu,	     /* SILU_GLU */
	check_add,	     /* ADD */
	check_mul,	     /* MUL */
	check_rmsnorm_quant, /* RMSNORM_QUANT */
	check_add_rmsnorm_quant, /* ADD_RMSNORM_QUANT */
};
_Static_assert(sizeof op_check / sizeof op_check[0] == IR_OP_COUNT,
	       "op_check out of sync with ir_ops.def");

/* Arity, from the same list as the enum. */
static const struct {
	int nin_min, nin_max, nout;
} op_arity[] = { /* ORDER IR_OP */
#define X(id, name, nin_min, nin_max, nout, meaning) { nin_min, nin_max, nout },
#include "ir_ops.def"
#undef X
};
_Static_assert(sizeof op_arity / sizeof op_arity[0] == IR_OP_COUNT,
	       "op_arity out of sync with ir_ops.def");

/* ---- values on their own ------------------------------------------------------------ */

/* unset_ok: an activation whose type is unset (n_dims 0) passes; its node fills it. */
static int check_value(const IrGraph *g, IrId id, bool unset_ok, BnErr *e)
{
	const IrValue *x = &g->values[id];
	bool unset = x->n_dims == 0 && x->kind == IR_VAL_ACT;
	if (!x->name)
		return bn_err(e, BN_EVERIFY, "value %d has no name", id);
	if ((unsigned)x->kind > IR_VAL_ACT)
		return fail_value(g, id, e, "unknown kind %d", (int)x->kind);
	if (unset && !unset_ok)
		return fail_value(g, id, e, "has no type yet (n_dims 0): run infer_shapes after the "
					    "pass that made it");
	if ((unsigned)x->dtype >= IR_DT_COUNT && !unset)
		return fail_value(g, id, e, "unknown dtype %d", (int)x->dtype);
	if (!unset && (x->n_dims < 1 || x->n_dims > IR_MAX_DIMS))
		return fail_value(g, id, e, "has %d dims, expected 1 to %d", x->n_dims, IR_MAX_DIMS);
	char shape[96];
	fmt_shape(x, shape, sizeof shape);
	for (int i = 0; i < x->n_dims; i++) {
		/* T outermost means a token's row is contiguous, which every kernel assumes;
		 * it also makes "at most one T" follow. */
		if (x->ne[i] == IR_DIM_T && i != x->n_dims - 1)
			return fail_value(g, id, e, "shape %s: the token dim T must be the outermost dim",
					  shape);
		if (x->ne[i] != IR_DIM_T && x->ne[i] <= 0)
			return fail_value(g, id, e, "shape %s: dim %d is %" PRId64 ", expected > 0",
					  shape, i, x->ne[i]);
	}
	if (!x->layout)
		return fail_value(g, id, e, "has no layout tag");
	if (x->kind != IR_VAL_ACT && x->producer != IR_NONE)
		return fail_value(g, id, e, "is a %s but names producer node %d",
				  x->kind == IR_VAL_CONST ? "constant" : "graph input", x->producer);
	switch (x->kind) {
	case IR_VAL_CONST: {
		if (ir_value_has_t(x))
			return fail_value(g, id, e, "constant with shape %s: only activations and inputs "
						    "have the token dim T",
					  shape);
		if (!x->data)
			return fail_value(g, id, e, "constant has no data");
		const char *why = ir_layout_check(x->layout, x->dtype, x->n_dims, x->ne);
		if (why)
			return fail_value(g, id, e, "%s%s layout=%s: %s", dt_name(x->dtype), shape,
					  x->layout, why);
		int64_t n = ir_value_nelems(x, 0);
		uint64_t want;
		if (n < 0 || !ir_dtype_nbytes(x->dtype, (uint64_t)n, (uint64_t)x->ne[0], &want))
			return fail_value(g, id, e, "%s%s: rows of %" PRId64 " elements do not fit the "
						    "%d-element blocks (or the size overflows)",
					  dt_name(x->dtype), shape, x->ne[0],
					  ir_dtype_info(x->dtype)->block);
		want = ir_layout_nbytes(x->layout, x->dtype, x->ne, want);
		if (x->nbytes != want)
			return fail_value(g, id, e, "constant %s%s has %" PRIu64 " bytes, expected %" PRIu64,
					  dt_name(x->dtype), shape, x->nbytes, want);
		return 0;
	}
	case IR_VAL_INPUT:
		return 0;
	case IR_VAL_ACT: {
		if (x->producer < 0 || x->producer >= g->n_nodes)
			return fail_value(g, id, e, "activation without a producing node (producer %d)",
					  x->producer);
		const IrNode *p = &g->nodes[x->producer];
		for (int j = 0; j < p->n_out && j < IR_MAX_OUT; j++)
			if (p->out[j] == id)
				return 0;
		return fail_value(g, id, e, "names producer node %d '%s', which does not list it as an "
					    "output",
				  x->producer, str_or(p->name, "?"));
	}
	}
	return 0;
}

/* ---- nodes -------------------------------------------------------------------------- */

/* A node's own structure: op, name, arity, ids in range, and outputs that name it as
 * their producer. Checked for every node before the values, so a node that lost or
 * mislabels an output is reported as the node's problem. */
static int check_node_shape(Ver *v)
{
	const IrGraph *g = v->g;
	const IrNode *n = v->n;
	if ((unsigned)n->op >= IR_OP_COUNT)
		return bn_err(v->e, BN_EVERIFY, "node %d '%s': unknown op %d", v->id,
			      str_or(n->name, "?"), (int)n->op);
	if (!n->name)
		return bn_err(v->e, BN_EVERIFY, "node %d (%s) has no name", v->id, ir_op_name(n->op));
	int lo = op_arity[n->op].nin_min, hi = op_arity[n->op].nin_max;
	if (n->n_in < lo || n->n_in > hi || n->n_in > IR_MAX_IN) {
		if (lo == hi)
			return fail(v, "has %d inputs, expected %d", n->n_in, lo);
		return fail(v, "has %d inputs, expected %d to %d", n->n_in, lo, hi);
	}
	if (n->n_out != op_arity[n->op].nout || n->n_out > IR_MAX_OUT)
		return fail(v, "has %d outputs, expected %d", n->n_out, op_arity[n->op].nout);
	for (int i = 0; i < n->n_in; i++) {
		IrId id = n->in[i];
		if (id < 0 || id >= g->n_values)
			return fail(v, "input %d is value %d, which does not exist (the graph has %d "
				       "values)",
				    i, id, g->n_values);
	}
	for (int j = 0; j < n->n_out; j++) {
		IrId id = n->out[j];
		if (id < 0 || id >= g->n_values)
			return fail(v, "output %d is value %d, which does not exist (the graph has %d "
				       "values)",
				    j, id, g->n_values);
		const IrValue *x = &g->values[id];
		const char *nm = str_or(x->name, "?");
		if (x->kind != IR_VAL_ACT)
			return fail(v, "output %d '%s' is a %s, not an activation", j, nm,
				    x->kind == IR_VAL_CONST ? "constant" : "graph input");
		for (int k = 0; k < j; k++)
			if (n->out[k] == id)
				return fail(v, "outputs %d and %d are the same value '%s'", k, j, nm);
		/* With this, no value is the output of two nodes: only one matches. */
		if (x->producer != v->id)
			return fail(v, "output %d '%s' is produced by node %d, not by this node", j, nm,
				    x->producer);
	}
	return 0;
}

static bool same_type(const IrValue *x, const IrType *t)
{
	if (x->dtype != t->dtype || x->n_dims != t->n_dims)
		return false;
	for (int i = 0; i < t->n_dims; i++)
		if (x->ne[i] != t->ne[i])
			return false;
	return true;
}

/* Output j against the rule's type: dtype, then shape. */
static int check_out(Ver *v, int j)
{
	const IrValue *x = val(v, OUT(j));
	const IrType *t = &v->want[j];
	if (same_type(x, t))
		return 0;
	char what[160], shape[96], exp[96];
	slot_desc(v, OUT(j), what, sizeof what);
	if (x->dtype != t->dtype)
		return fail(v, "%s has dtype %s, expected %s", what, dt_name(x->dtype),
			    dt_name(t->dtype));
	fmt_shape(x, shape, sizeof shape);
	fmt_dims(t->n_dims, t->ne, exp, sizeof exp);
	return fail(v, "%s has shape %s, expected %s", what, shape, exp);
}

/* Definition before use (and typed inputs), then the op's rule; want gets the output
 * types. Every value and every earlier node has passed by now. */
static int check_rule(Ver *v, IrType want[IR_MAX_OUT])
{
	const IrGraph *g = v->g;
	const IrNode *n = v->n;
	for (int i = 0; i < n->n_in; i++) {
		const IrValue *x = &g->values[n->in[i]];
		if (x->kind == IR_VAL_ACT && x->producer >= v->id)
			return fail(v, "input %d '%s' is used before it is defined (by node %d '%s')", i,
				    x->name, x->producer, str_or(g->nodes[x->producer].name, "?"));
		if (x->n_dims == 0)
			return fail(v, "input %d '%s' has no type yet", i, str_or(x->name, "?"));
	}
	memset(want, 0, IR_MAX_OUT * sizeof *want);
	v->want = want;
	return op_check[n->op](v);
}

/* The rule, then each output against it; with fill (the graph being checked, writable), an
 * output whose type is unset takes the rule's instead, and is then checked as a value. */
static int check_node(Ver *v, IrGraph *fill, int *n_filled)
{
	IrType want[IR_MAX_OUT];
	TRY(check_rule(v, want));
	for (int j = 0; j < v->n->n_out; j++) {
		IrId id = v->n->out[j];
		if (fill && fill->values[id].n_dims == 0) {
			IrValue *x = &fill->values[id];
			x->dtype = want[j].dtype;
			x->n_dims = want[j].n_dims;
			memcpy(x->ne, want[j].ne, sizeof x->ne);
			(*n_filled)++;
			TRY(check_value(v->g, id, false, v->e));
			continue;
		}
		TRY(check_out(v, j));
	}
	return 0;
}

/* ---- the graph's ends ------------------------------------------------------------- */

static int check_ends(const IrGraph *g, BnErr *e)
{
	char shape[96];
	IrId t = g->tokens;
	if (t < 0 || t >= g->n_values)
		return bn_err(e, BN_EVERIFY, "graph: tokens is value %d, which does not exist", t);
	const IrValue *x = &g->values[t];
	fmt_shape(x, shape, sizeof shape);
	if (x->kind != IR_VAL_INPUT || x->dtype != IR_DT_I32 || x->n_dims != 1 ||
	    x->ne[0] != IR_DIM_T)
		return bn_err(e, BN_EVERIFY, "graph: tokens value %d '%s' is %s %s%s, expected an input "
					    "i32[T]",
			      t, x->name, x->kind == IR_VAL_INPUT ? "an input" : "not an input",
			      dt_name(x->dtype), shape);
	IrId l = g->logits;
	if (l < 0 || l >= g->n_values)
		return bn_err(e, BN_EVERIFY, "graph: logits is value %d, which does not exist", l);
	x = &g->values[l];
	fmt_shape(x, shape, sizeof shape);
	int64_t nv = g->hp.n_vocab;
	if (x->kind != IR_VAL_ACT || x->dtype != IR_DT_F32 || !is_rows(x, nv > 0 ? nv : -1)) {
		char exp[48];
		if (nv > 0)
			snprintf(exp, sizeof exp, "[%" PRId64 ", T]", nv);
		else
			snprintf(exp, sizeof exp, "[n_vocab, T]");
		return bn_err(e, BN_EVERIFY, "graph: logits value %d '%s' is %s %s%s, expected an "
					    "activation f32%s",
			      l, x->name, x->kind == IR_VAL_ACT ? "an activation" : "not an activation",
			      dt_name(x->dtype), shape, exp);
	}
	return 0;
}

static int graph_ok(const IrGraph *g, BnErr *e)
{
	if (!g)
		return bn_err(e, BN_EVERIFY, "graph: NULL");
	if (g->n_values < 0 || g->n_nodes < 0 || (g->n_values && !g->values) ||
	    (g->n_nodes && !g->nodes))
		return bn_err(e, BN_EVERIFY, "graph: bad value or node vectors (%d values, %d nodes)",
			      g->n_values, g->n_nodes);
	return 0;
}

/* ir_verify, and with fill (== g) ir_infer_shapes. */
static int walk(const IrGraph *g, IrGraph *fill, int *n_filled, BnErr *e)
{
	TRY(graph_ok(g, e));
	for (IrId i = 0; i < g->n_nodes; i++) {
		Ver v = { g, e, i, &g->nodes[i], NULL };
		TRY(check_node_shape(&v));
	}
	for (IrId i = 0; i < g->n_values; i++)
		TRY(check_value(g, i, fill != NULL, e));
	for (IrId i = 0; i < g->n_nodes; i++) {
		Ver v = { g, e, i, &g->nodes[i], NULL };
		TRY(check_node(&v, fill, n_filled));
	}
	TRY(check_ends(g, e));
	TRY(ir_mem_check(g, e));
	/* the KV plan, when plan_kv recorded one */
	IrKvPlan kv;
	bool found;
	TRY(ir_kv_read(g, &kv, &found, e));
	if (found)
		ir_kv_plan_free(&kv);
	return 0;
}

int ir_verify(const IrGraph *g, BnErr *e)
{
	return walk(g, NULL, NULL, e);
}

int ir_infer_shapes(IrGraph *g, int *n_filled, BnErr *e)
{
	int n = 0;
	int rc = walk(g, g, &n, e);
	if (n_filled)
		*n_filled = n;
	return rc;
}

int ir_node_infer(const IrGraph *g, IrId id, IrType out[IR_MAX_OUT], BnErr *e)
{
	TRY(graph_ok(g, e));
	if (id < 0 || id >= g->n_nodes)
		return bn_err(e, BN_EVERIFY, "node %d does not exist (the graph has %d nodes)", id,
			      g->n_nodes);
	Ver v = { g, e, id, &g->nodes[id], NULL };
	TRY(check_node_shape(&v));
	for (int i = 0; i < v.n->n_in; i++) /* an untyped one: check_rule names the node */
		TRY(check_value(g, v.n->in[i], true, e));
	return check_rule(&v, out);
}
