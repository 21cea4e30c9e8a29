/* pass_gattr.c - graph-level attributes (batch sizes, chosen layouts): a side table keyed by
 * the graph's address, because the IR has attributes on nodes only. */
#include "pass.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
	const IrGraph *g;
	IrAttr *a; /* keys, strings and int lists malloc'd */
	int n, cap;
} Entry;

/* One compile at a time, few graphs: a small array searched linearly. */
static Entry *table;
static int n_table, cap_table;

static Entry *entry(const IrGraph *g, bool create)
{
	for (int i = 0; i < n_table; i++)
		if (table[i].g == g)
			return &table[i];
	if (!create)
		return NULL;
	if (n_table == cap_table) {
		int nc = cap_table ? 2 * cap_table : 4;
		Entry *nt = realloc(table, (size_t)nc * sizeof *nt);
		if (!nt)
			return NULL;
		table = nt;
		cap_table = nc;
	}
	table[n_table] = (Entry){.g = g};
	return &table[n_table++];
}

static void attr_free(IrAttr *a)
{
	free((void *)a->key);
	free((void *)a->s);
	free((void *)a->ints);
}

/* The slot for key (an existing one is emptied), key stored; NULL if out of memory. */
static IrAttr *slot(const IrGraph *g, const char *key)
{
	Entry *en = entry(g, true);
	if (!en)
		return NULL;
	for (int i = 0; i < en->n; i++) {
		if (strcmp(en->a[i].key, key) == 0) {
			free((void *)en->a[i].s);
			free((void *)en->a[i].ints);
			const char *k = en->a[i].key;
			memset(&en->a[i], 0, sizeof en->a[i]);
			en->a[i].key = k;
			return &en->a[i];
		}
	}
	if (en->n == en->cap) {
		int nc = en->cap ? 2 * en->cap : 8;
		IrAttr *na = realloc(en->a, (size_t)nc * sizeof *na);
		if (!na)
			return NULL;
		en->a = na;
		en->cap = nc;
	}
	char *k = strdup(key);
	if (!k)
		return NULL;
	IrAttr *a = &en->a[en->n++];
	memset(a, 0, sizeof *a);
	a->key = k;
	return a;
}

static int oom(BnErr *e, const char *key)
{
	return bn_err(e, BN_ENOMEM, "out of memory for graph attribute %s", key);
}

int pass_gattr_set_int(const IrGraph *g, const char *key, int64_t v, BnErr *e)
{
	IrAttr *a = slot(g, key);
	if (!a)
		return oom(e, key);
	a->type = IR_ATTR_INT;
	a->i = v;
	return BN_OK;
}

int pass_gattr_set_float(const IrGraph *g, const char *key, double v, BnErr *e)
{
	IrAttr *a = slot(g, key);
	if (!a)
		return oom(e, key);
	a->type = IR_ATTR_FLOAT;
	a->f = v;
	return BN_OK;
}

int pass_gattr_set_str(const IrGraph *g, const char *key, const char *v, BnErr *e)
{
	char *s = strdup(v ? v : "");
	IrAttr *a = s ? slot(g, key) : NULL;
	if (!a) {
		free(s);
		return oom(e, key);
	}
	a->type = IR_ATTR_STR;
	a->s = s;
	return BN_OK;
}

int pass_gattr_set_ints(const IrGraph *g, const char *key, const int64_t *v, int n, BnErr *e)
{
	int64_t *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
	IrAttr *a = p ? slot(g, key) : NULL;
	if (!a) {
		free(p);
		return oom(e, key);
	}
	if (n > 0)
		memcpy(p, v, (size_t)n * sizeof *p);
	a->type = IR_ATTR_INTS;
	a->ints = p;
	a->n_ints = n;
	return BN_OK;
}

const IrAttr *pass_gattr_find(const IrGraph *g, const char *key)
{
	Entry *en = entry(g, false);
	for (int i = 0; en && i < en->n; i++)
		if (strcmp(en->a[i].key, key) == 0)
			return &en->a[i];
	return NULL;
}

const IrAttr *pass_gattr_list(const IrGraph *g, int *n)
{
	Entry *en = entry(g, false);
	*n = en ? en->n : 0;
	return en ? en->a : NULL;
}

void pass_gattr_clear(const IrGraph *g)
{
	Entry *en = entry(g, false);
	if (!en)
		return;
	for (int i = 0; i < en->n; i++)
		attr_free(&en->a[i]);
	free(en->a);
	*en = table[--n_table];
	if (n_table == 0) {
		free(table);
		table = NULL;
		cap_table = 0;
	}
}
