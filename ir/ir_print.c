/* ir_print.c - the stable text form of a graph (`bitnetc ir`, golden tests).
 *
 * Format (one item per line; same graph, same bytes):
 *
 *   graph "tiny" arch=bitnet-b1.58
 *   hparams n_ctx_train=4096 n_embd=256 n_layer=1 n_head=4 n_head_kv=2 head_dim=64 n_ff=768 n_vocab=512 eps=1e-05 rope_base=500000
 *   input  %0 tokens : i32[T]
 *   const  %1 token_embd.weight : f16[256, 512] layout=gguf
 *   const  %2 output_norm.weight : f32[256] layout=gguf
 *   %4 = embed(%0, %1)                              : f32[256, T]              # node 0 'inp_embd'
 *   %5 = rmsnorm(%4, %2) eps=1e-05                  : f32[256, T]              # node 1 'blk.0.attn_norm'
 *   %6, %7 = quant_act(%5) mode="token"             : i8[256, T], f32[1, T]    # node 2 'blk.0.attn_qa'
 *   ...
 *   output %11 result_output
 *
 * - Graph inputs and constants come first, in value id order; inputs show
 *   layout= only when it is not "rows", constants always.
 * - Then one line per node in execution order: outputs, op, operand ids, then the
 *   attributes in insertion order as key=value, padded to 47 columns; then " : " and
 *   the output types padded to 24 columns; then the node index and name (lines that
 *   outgrow a column just push on, one space apart). An output whose layout
 *   is not "rows" gets "@layout" after its type.
 * - Types are dtype[ne0, ne1, ...] in ggml order (ne0 fastest), T the token dim.
 * - Ints print in decimal, int lists as [1, 8, 32], strings double-quoted with C
 *   escapes. Floats print as the shortest decimal that reads back (strtof) to the
 *   same float when the value is a float, else (strtod) to the same double, so
 *   1e-5f prints as 1e-05 and values round-trip exactly; exponent form only
 *   below 1e-4 or from 1e16 up (500000, not 5e+05).
 * - Then a line naming the graph output (the logits value: id and name).
 * - A graph with a memory plan (plan_memory) ends with "memory B bytes for T tokens" and
 *   per node that has one the arena offsets of its outputs and its temporary:
 *   "  node 3: %8 @0, temp @40960".
 * The printer never fails on a broken graph (it is how one looks at a graph the
 * verifier rejected): bad ids print as %<id>? and unknown types as ?. */
#include "ir.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A growable line buffer; printf-checked appends. Allocation failure truncates
 * (printing is best effort and has no error channel). */
typedef struct {
	char *p;
	size_t len, cap;
	char fixed[256];
} Line;

static void line_init(Line *l)
{
	l->p = l->fixed;
	l->len = 0;
	l->cap = sizeof l->fixed;
	l->fixed[0] = 0;
}

static void line_free(Line *l)
{
	if (l->p != l->fixed)
		free(l->p);
}

static void lprintf(Line *l, const char *fmt, ...) BN_PRINTF(2, 3);
static void lprintf(Line *l, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		va_end(ap2);
		return;
	}
	if ((size_t)n >= l->cap - l->len) {
		size_t cap = l->cap * 2;
		while (cap - l->len <= (size_t)n)
			cap *= 2;
		char *np = l->p == l->fixed ? malloc(cap) : realloc(l->p, cap);
		if (np) {
			if (l->p == l->fixed)
				memcpy(np, l->fixed, l->len + 1);
			l->p = np;
			l->cap = cap;
			vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap2);
		} else {
			n = (int)(l->cap - l->len - 1); /* keep what fitted */
		}
	}
	va_end(ap2);
	l->len += (size_t)n;
}

static void lpad(Line *l, size_t col)
{
	while (l->len < col)
		lprintf(l, " ");
}

/* Shortest decimal that reads back exactly (see the format above). */
static void put_float(Line *l, double f)
{
	if (isnan(f)) {
		lprintf(l, "nan"); /* printf may say -nan: keep the bytes portable */
		return;
	}
	if (isinf(f)) {
		lprintf(l, "%s", f < 0 ? "-inf" : "inf");
		return;
	}
	char buf[40];
	/* (float) of a double beyond FLT_MAX is undefined: such a value is no float */
	bool fits = fabs(f) <= FLT_MAX;
	float ff = fits ? (float)f : 0;
	bool is_float = fits && (double)ff == f;
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, f);
		if (is_float ? strtof(buf, NULL) == ff : strtod(buf, NULL) == f)
			break;
	}
	/* %g goes to exponent form as soon as the exponent reaches the precision
	 * (500000 -> 5e+05); integers and moderate values read better in full. */
	const char *ex = strchr(buf, 'e');
	if (ex) {
		int x = atoi(ex + 1);
		if (x >= 0 && x < 16)
			snprintf(buf, sizeof buf, "%.*g", x + 1, f);
	}
	lprintf(l, "%s", buf);
}

static void put_str(Line *l, const char *s)
{
	if (!s) {
		lprintf(l, "null");
		return;
	}
	lprintf(l, "\"");
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			lprintf(l, "\\%c", *c);
		else if (*c == '\n')
			lprintf(l, "\\n");
		else if (*c == '\t')
			lprintf(l, "\\t");
		else if (*c < 0x20 || *c == 0x7f)
			lprintf(l, "\\x%02x", *c);
		else
			lprintf(l, "%c", *c);
	}
	lprintf(l, "\"");
}

static const char *name_or(const char *s)
{
	return s ? s : "?";
}

static void put_type(Line *l, const IrValue *v)
{
	lprintf(l, "%s[", (unsigned)v->dtype < IR_DT_COUNT ? ir_dtype_name(v->dtype) : "?");
	for (int i = 0; i < v->n_dims && i < IR_MAX_DIMS; i++) {
		if (i)
			lprintf(l, ", ");
		if (v->ne[i] == IR_DIM_T)
			lprintf(l, "T");
		else
			lprintf(l, "%" PRId64, v->ne[i]);
	}
	lprintf(l, "]");
}

static bool id_ok(const IrGraph *g, IrId id)
{
	return id >= 0 && id < g->n_values;
}

static void put_id(Line *l, const IrGraph *g, IrId id)
{
	lprintf(l, "%%%d%s", id, id_ok(g, id) ? "" : "?");
}

static void put_attr(Line *l, const IrAttr *a)
{
	lprintf(l, " %s=", name_or(a->key));
	switch (a->type) {
	case IR_ATTR_INT:
		lprintf(l, "%" PRId64, a->i);
		break;
	case IR_ATTR_FLOAT:
		put_float(l, a->f);
		break;
	case IR_ATTR_STR:
		put_str(l, a->s);
		break;
	case IR_ATTR_INTS:
		lprintf(l, "[");
		for (int i = 0; i < a->n_ints; i++)
			lprintf(l, "%s%" PRId64, i ? ", " : "", a->ints[i]);
		lprintf(l, "]");
		break;
	default:
		lprintf(l, "?");
	}
}

static void print_header(const IrGraph *g, FILE *out)
{
	Line l;
	line_init(&l);
	const IrHparams *h = &g->hp;
	lprintf(&l, "graph ");
	put_str(&l, g->name ? g->name : "");
	lprintf(&l, " arch=%s\n", name_or(g->arch));
	lprintf(&l, "hparams n_ctx_train=%" PRId64 " n_embd=%" PRId64 " n_layer=%" PRId64
		    " n_head=%" PRId64 " n_head_kv=%" PRId64 " head_dim=%" PRId64 " n_ff=%" PRId64
		    " n_vocab=%" PRId64 " eps=",
		h->n_ctx_train, h->n_embd, h->n_layer, h->n_head, h->n_head_kv, h->head_dim, h->n_ff,
		h->n_vocab);
	put_float(&l, h->eps);
	lprintf(&l, " rope_base=");
	put_float(&l, h->rope_base);
	lprintf(&l, "\n");
	fputs(l.p, out);
	line_free(&l);
}

static void print_leaf(const IrGraph *g, IrId id, FILE *out)
{
	const IrValue *v = &g->values[id];
	Line l;
	line_init(&l);
	lprintf(&l, "%-6s %%%d %s : ", v->kind == IR_VAL_CONST ? "const" : "input", id, name_or(v->name));
	put_type(&l, v);
	if (v->kind == IR_VAL_CONST || !v->layout || strcmp(v->layout, "rows") != 0)
		lprintf(&l, " layout=%s", name_or(v->layout));
	lprintf(&l, "\n");
	fputs(l.p, out);
	line_free(&l);
}

static void print_node(const IrGraph *g, IrId id, FILE *out)
{
	const IrNode *n = &g->nodes[id];
	int n_out = n->n_out < 0 ? 0 : n->n_out > IR_MAX_OUT ? IR_MAX_OUT : n->n_out;
	int n_in = n->n_in < 0 ? 0 : n->n_in > IR_MAX_IN ? IR_MAX_IN : n->n_in;
	Line l;
	line_init(&l);
	for (int j = 0; j < n_out; j++) {
		if (j)
			lprintf(&l, ", ");
		put_id(&l, g, n->out[j]);
	}
	lprintf(&l, "%s%s(", n_out ? " = " : "", ir_op_name(n->op));
	for (int i = 0; i < n_in; i++) {
		if (i)
			lprintf(&l, ", ");
		put_id(&l, g, n->in[i]);
	}
	lprintf(&l, ")");
	for (int i = 0; i < n->n_attrs; i++)
		put_attr(&l, &n->attrs[i]);
	lpad(&l, 47);
	lprintf(&l, " : ");
	size_t types_at = l.len;
	for (int j = 0; j < n_out; j++) {
		if (j)
			lprintf(&l, ", ");
		if (!id_ok(g, n->out[j])) {
			lprintf(&l, "?");
			continue;
		}
		const IrValue *v = &g->values[n->out[j]];
		put_type(&l, v);
		if (!v->layout || strcmp(v->layout, "rows") != 0)
			lprintf(&l, "@%s", name_or(v->layout));
	}
	lpad(&l, types_at + 24);
	lprintf(&l, " # node %d '%s'\n", id, name_or(n->name));
	fputs(l.p, out);
	line_free(&l);
}

void ir_print(const IrGraph *g, FILE *out)
{
	print_header(g, out);
	for (IrId i = 0; i < g->n_values; i++)
		if (g->values[i].kind == IR_VAL_INPUT || g->values[i].kind == IR_VAL_CONST)
			print_leaf(g, i, out);
	for (IrId i = 0; i < g->n_nodes; i++)
		print_node(g, i, out);
	if (id_ok(g, g->logits))
		fprintf(out, "output %%%d %s\n", g->logits, name_or(g->values[g->logits].name));
	else
		fprintf(out, "output %%%d?\n", g->logits);
	if (g->mem.tokens <= 0)
		return;
	fprintf(out, "memory %" PRIu64 " bytes for %" PRId64 " tokens\n", g->mem.bytes, g->mem.tokens);
	for (IrId i = 0; i < g->n_nodes; i++) {
		const IrNode *n = &g->nodes[i];
		int n_out = n->n_out < 0 ? 0 : n->n_out > IR_MAX_OUT ? IR_MAX_OUT : n->n_out;
		bool any = n->tmp_off != IR_NO_OFF;
		for (int j = 0; j < n_out; j++)
			any |= id_ok(g, n->out[j]) && g->values[n->out[j]].mem_off != IR_NO_OFF;
		if (!any)
			continue;
		fprintf(out, "  node %d:", i);
		const char *sep = " ";
		for (int j = 0; j < n_out; j++)
			if (id_ok(g, n->out[j]) && g->values[n->out[j]].mem_off != IR_NO_OFF) {
				fprintf(out, "%s%%%d @%" PRIu64, sep, n->out[j], g->values[n->out[j]].mem_off);
				sep = ", ";
			}
		if (n->tmp_off != IR_NO_OFF)
			fprintf(out, "%stemp @%" PRIu64, sep, n->tmp_off);
		fprintf(out, "\n");
	}
}
