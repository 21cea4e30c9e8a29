/* ir_graph.c - the graph IR: op tables, values, nodes and attributes in a per-graph arena. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

/* ---- ops ------------------------------------------------------------------ */

typedef struct {
	const char *name;
	int nin_min, nin_max, nout;
	const char *meaning;
} OpInfo;

static const OpInfo op_info[] = { /* ORDER IR_OP */
#define X(id, name, nin_min, nin_max, nout, meaning) { name, nin_min, nin_max, nout, meaning },
#include "ir_ops.def"
#undef X
};
_Static_assert(sizeof op_info / sizeof op_info[0] == IR_OP_COUNT,
	       "op_info out of sync with ir_ops.def");

static bool op_ok(IrOp op)
{
	return (unsigned)op < IR_OP_COUNT;
}

/* Out-of-range ops give "?" so a printer or an error message about a broken graph
 * never crashes. */
const char *ir_op_name(IrOp op)
{
	return op_ok(op) ? op_info[op].name : "?";
}

const char *ir_op_meaning(IrOp op)
{
	return op_ok(op) ? op_info[op].meaning : "?";
}

bool ir_op_from_name(const char *name, IrOp *out)
{
	if (!name)
		return false;
	for (int i = 0; i < IR_OP_COUNT; i++) {
		if (strcmp(op_info[i].name, name) == 0) {
			if (out)
				*out = (IrOp)i;
			return true;
		}
	}
	return false;
}

/* ---- graph ------------------------------------------------------------------ */

IrGraph *ir_graph_new(const char *name, const char *arch)
{
	IrGraph *g = calloc(1, sizeof *g);
	if (!g)
		return NULL;
	g->arena = bn_arena_new();
	if (!g->arena) {
		free(g);
		return NULL;
	}
	g->name = bn_arena_strdup(g->arena, name ? name : "");
	g->arch = bn_arena_strdup(g->arena, arch ? arch : "");
	if (!g->name || !g->arch) {
		ir_graph_free(g);
		return NULL;
	}
	g->tokens = IR_NONE;
	g->logits = IR_NONE;
	return g;
}

void ir_graph_free(IrGraph *g)
{
	if (!g)
		return;
	free(g->values);
	free(g->nodes);
	bn_arena_free(g->arena);
	free(g);
}

/* Grows a heap vector of elem-sized items so that one more fits; false if out of memory. */
static bool vec_reserve(void **p, int *cap, int n, size_t elem)
{
	if (n < *cap)
		return true;
	int ncap = *cap ? *cap * 2 : 64;
	if (ncap <= *cap || (size_t)ncap > SIZE_MAX / elem)
		return false;
	void *np = realloc(*p, (size_t)ncap * elem);
	if (!np)
		return false;
	*p = np;
	*cap = ncap;
	return true;
}

/* ---- values ------------------------------------------------------------------ */

static IrId value_new(IrGraph *g, IrValKind kind, const char *name, IrDtype dt, int n_dims,
		      const int64_t *ne, const char *layout)
{
	/* Shapes come from code, not from files: a bad rank is a programming error. */
	BN_ASSERT(n_dims >= 0 && n_dims <= IR_MAX_DIMS);
	BN_ASSERT(n_dims == 0 || ne);
	if (!vec_reserve((void **)&g->values, &g->cap_values, g->n_values, sizeof(IrValue)))
		return IR_NONE;
	const char *nm = name ? bn_arena_strdup(g->arena, name) : NULL;
	if (name && !nm)
		return IR_NONE;
	IrValue *v = &g->values[g->n_values];
	memset(v, 0, sizeof *v);
	v->name = nm;
	v->kind = kind;
	v->dtype = dt;
	v->n_dims = n_dims;
	for (int i = 0; i < n_dims; i++)
		v->ne[i] = ne[i];
	v->layout = layout; /* a string literal: lives as long as the program */
	v->producer = IR_NONE;
	v->mem_off = IR_NO_OFF;
	return g->n_values++;
}

IrId ir_value_const(IrGraph *g, const char *name, IrDtype dt, int n_dims, const int64_t *ne,
		    const void *data, uint64_t nbytes)
{
	IrId id = value_new(g, IR_VAL_CONST, name, dt, n_dims, ne, "gguf");
	if (id != IR_NONE) {
		g->values[id].data = data;
		g->values[id].nbytes = nbytes;
	}
	return id;
}

IrId ir_value_input(IrGraph *g, const char *name, IrDtype dt, int n_dims, const int64_t *ne)
{
	return value_new(g, IR_VAL_INPUT, name, dt, n_dims, ne, "rows");
}

/* ---- nodes ------------------------------------------------------------------- */

IrId ir_node_add(IrGraph *g, IrOp op, const char *name, const IrId *in, int n_in)
{
	/* Arity against ir_ops.def is the builder's promise; the verifier checks graphs
	 * that were edited afterwards. */
	BN_ASSERT(op_ok(op));
	BN_ASSERT(n_in >= op_info[op].nin_min && n_in <= op_info[op].nin_max);
	BN_ASSERT(n_in <= IR_MAX_IN && (n_in == 0 || in));
	if (!vec_reserve((void **)&g->nodes, &g->cap_nodes, g->n_nodes, sizeof(IrNode)))
		return IR_NONE;
	const char *nm = name ? bn_arena_strdup(g->arena, name) : NULL;
	if (name && !nm)
		return IR_NONE;
	IrNode *n = &g->nodes[g->n_nodes];
	memset(n, 0, sizeof *n);
	n->op = op;
	n->name = nm;
	n->n_in = n_in;
	for (int i = 0; i < IR_MAX_IN; i++)
		n->in[i] = i < n_in ? in[i] : IR_NONE;
	for (int i = 0; i < IR_MAX_OUT; i++)
		n->out[i] = IR_NONE;
	n->tmp_off = IR_NO_OFF;
	return g->n_nodes++;
}

IrId ir_node_insert(IrGraph *g, IrId at, IrOp op, const char *name, const IrId *in, int n_in)
{
	BN_ASSERT(at >= 0 && at <= g->n_nodes);
	IrId id = ir_node_add(g, op, name, in, n_in);
	if (id == IR_NONE)
		return IR_NONE;
	IrNode n = g->nodes[id];
	memmove(&g->nodes[at + 1], &g->nodes[at], (size_t)(id - at) * sizeof n);
	g->nodes[at] = n;
	for (IrId v = 0; v < g->n_values; v++)
		if (g->values[v].producer >= at)
			g->values[v].producer++;
	return at;
}

void ir_node_remove(IrGraph *g, IrId at)
{
	BN_ASSERT(at >= 0 && at < g->n_nodes);
	memmove(&g->nodes[at], &g->nodes[at + 1], (size_t)(g->n_nodes - at - 1) * sizeof *g->nodes);
	g->n_nodes--;
	for (IrId v = 0; v < g->n_values; v++) {
		BN_ASSERT(g->values[v].producer != at);
		if (g->values[v].producer > at)
			g->values[v].producer--;
	}
}

IrId ir_node_output(IrGraph *g, IrId node, const char *name, IrDtype dt, int n_dims,
		    const int64_t *ne)
{
	BN_ASSERT(node >= 0 && node < g->n_nodes);
	IrNode *n = &g->nodes[node];
	BN_ASSERT(n->n_out < op_info[n->op].nout && n->n_out < IR_MAX_OUT);
	IrId id = value_new(g, IR_VAL_ACT, name, dt, n_dims, ne, "rows");
	if (id == IR_NONE)
		return IR_NONE;
	g->values[id].producer = node;
	n->out[n->n_out++] = id;
	return id;
}

IrId ir_node1(IrGraph *g, IrOp op, const char *name, const IrId *in, int n_in, IrDtype dt,
	      int n_dims, const int64_t *ne)
{
	IrId node = ir_node_add(g, op, name, in, n_in);
	if (node == IR_NONE)
		return IR_NONE;
	return ir_node_output(g, node, name, dt, n_dims, ne);
}

/* ---- attributes ----------------------------------------------------------------- */

/* Copy-on-write: every set builds a fresh array in the arena, so a node copied by
 * struct assignment (passes do that) never sees its twin's later edits. Returns the
 * slot for key, with the key already stored. Attribute sets cannot report errors, so
 * running out of memory for a few bytes is treated as fatal. */
static IrAttr *attr_slot(IrGraph *g, IrId node, const char *key)
{
	BN_ASSERT(node >= 0 && node < g->n_nodes && key);
	IrNode *n = &g->nodes[node];
	int at = n->n_attrs;
	for (int i = 0; i < n->n_attrs; i++) {
		if (strcmp(n->attrs[i].key, key) == 0) {
			at = i;
			break;
		}
	}
	int cnt = at == n->n_attrs ? n->n_attrs + 1 : n->n_attrs;
	IrAttr *a = bn_arena_alloc(g->arena, (size_t)cnt * sizeof *a);
	BN_ASSERT(a);
	if (n->n_attrs)
		memcpy(a, n->attrs, (size_t)n->n_attrs * sizeof *a);
	IrAttr *s = &a[at];
	const char *k = at == n->n_attrs ? bn_arena_strdup(g->arena, key) : s->key;
	BN_ASSERT(k);
	memset(s, 0, sizeof *s);
	s->key = k;
	n->attrs = a;
	n->n_attrs = cnt;
	return s;
}

void ir_attr_set_int(IrGraph *g, IrId node, const char *key, int64_t v)
{
	IrAttr *a = attr_slot(g, node, key);
	a->type = IR_ATTR_INT;
	a->i = v;
}

void ir_attr_set_float(IrGraph *g, IrId node, const char *key, double v)
{
	IrAttr *a = attr_slot(g, node, key);
	a->type = IR_ATTR_FLOAT;
	a->f = v;
}

void ir_attr_set_str(IrGraph *g, IrId node, const char *key, const char *v)
{
	BN_ASSERT(v);
	char *s = bn_arena_strdup(g->arena, v);
	BN_ASSERT(s);
	IrAttr *a = attr_slot(g, node, key);
	a->type = IR_ATTR_STR;
	a->s = s;
}

void ir_attr_set_ints(IrGraph *g, IrId node, const char *key, const int64_t *v, int n)
{
	BN_ASSERT(n >= 0 && (n == 0 || v));
	int64_t *p = bn_arena_alloc(g->arena, (size_t)n * sizeof *p);
	BN_ASSERT(p);
	if (n)
		memcpy(p, v, (size_t)n * sizeof *p);
	IrAttr *a = attr_slot(g, node, key);
	a->type = IR_ATTR_INTS;
	a->ints = p;
	a->n_ints = n;
}

const IrAttr *ir_attr_find(const IrNode *n, const char *key)
{
	if (!n || !key)
		return NULL;
	for (int i = 0; i < n->n_attrs; i++)
		if (n->attrs[i].key && strcmp(n->attrs[i].key, key) == 0)
			return &n->attrs[i];
	return NULL;
}

/* The typed getters are strict: a key of another type reads as missing (dflt), the
 * same way the verifier sees it. */
int64_t ir_attr_int(const IrNode *n, const char *key, int64_t dflt)
{
	const IrAttr *a = ir_attr_find(n, key);
	return a && a->type == IR_ATTR_INT ? a->i : dflt;
}

double ir_attr_float(const IrNode *n, const char *key, double dflt)
{
	const IrAttr *a = ir_attr_find(n, key);
	return a && a->type == IR_ATTR_FLOAT ? a->f : dflt;
}

const char *ir_attr_str(const IrNode *n, const char *key, const char *dflt)
{
	const IrAttr *a = ir_attr_find(n, key);
	return a && a->type == IR_ATTR_STR ? a->s : dflt;
}

/* ---- shapes ------------------------------------------------------------------ */

/* -1 if a dim is negative (other than T) or the product overflows int64. */
int64_t ir_value_nelems(const IrValue *v, int64_t T)
{
	uint64_t p = 1;
	for (int i = 0; i < v->n_dims; i++) {
		int64_t d = v->ne[i] == IR_DIM_T ? T : v->ne[i];
		if (d < 0 || !bn_mul_ok(p, (uint64_t)d, &p) || p > INT64_MAX)
			return -1;
	}
	return (int64_t)p;
}

int64_t ir_value_row(const IrValue *v)
{
	uint64_t p = 1;
	for (int i = 0; i < v->n_dims; i++) {
		if (v->ne[i] == IR_DIM_T)
			continue;
		if (v->ne[i] < 0 || !bn_mul_ok(p, (uint64_t)v->ne[i], &p) || p > INT64_MAX)
			return -1;
	}
	return (int64_t)p;
}

bool ir_value_has_t(const IrValue *v)
{
	for (int i = 0; i < v->n_dims; i++)
		if (v->ne[i] == IR_DIM_T)
			return true;
	return false;
}
