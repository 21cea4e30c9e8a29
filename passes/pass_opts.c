/* pass_opts.c - typed pass options: "pass.key=value" parsing against the registry, per-pass
 * views with defaults filled in, and the accessors passes read them through. */
#include "pass.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "an int", "an int list", "a float", "a string" */
#define ARTICLE(t) ((t) == PASS_OPT_INT || (t) == PASS_OPT_INTS ? "an" : "a")

static const char *const type_names[] = {"int", "float", "string", "int list"};
_Static_assert(sizeof type_names / sizeof type_names[0] == PASS_OPT_INTS + 1,
	       "type_names out of sync with PassOptType");

const char *pass_opt_type_name(PassOptType t)
{
	return (unsigned)t <= PASS_OPT_INTS ? type_names[t] : "?";
}

static void val_free(PassOptVal *v)
{
	free(v->s);
	free(v->ints);
	v->s = NULL;
	v->ints = NULL;
}

void pass_opts_free(PassOpts *o)
{
	if (!o)
		return;
	for (int i = 0; i < o->n; i++)
		val_free(&o->v[i]);
	free(o->v);
	o->v = NULL;
	o->n = o->cap = 0;
}

/* "options: a, b" or "it has no options", for messages. */
static void opt_names(const PassInfo *p, char *buf, size_t n)
{
	size_t k = 0;
	buf[0] = 0;
	for (const PassOptInfo *oi = p->opts; oi && oi->name && k < n; oi++)
		k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "options: ", oi->name);
	if (!buf[0])
		snprintf(buf, n, "it has no options");
}

/* Registry lookups with the messages users see. */
static int lookup(const char *pass, const char *key, const PassInfo **pp,
		  const PassOptInfo **op, BnErr *e)
{
	const PassInfo *p = pass_find(pass);
	if (!p) {
		char names[256];
		int np = 0;
		size_t k = 0;
		const PassInfo *all = pass_list(&np);
		names[0] = 0;
		for (int i = 0; i < np && k < sizeof names; i++)
			k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "",
					      all[i].name);
		return bn_err(e, BN_EINVAL, "no pass named '%s' (passes: %s)", pass ? pass : "",
			      names);
	}
	const PassOptInfo *oi = pass_opt_info(p, key);
	if (!oi) {
		char names[256];
		opt_names(p, names, sizeof names);
		return bn_err(e, BN_EINVAL, "pass %s has no option '%s' (%s)", p->name,
			      key ? key : "", names);
	}
	*pp = p;
	*op = oi;
	return BN_OK;
}

/* Stores v (taking its s/ints) in o, replacing the same pass.key. */
static int store(PassOpts *o, PassOptVal *v, BnErr *e)
{
	for (int i = 0; i < o->n; i++) {
		if (o->v[i].pass == v->pass && strcmp(o->v[i].key, v->key) == 0) {
			val_free(&o->v[i]);
			o->v[i] = *v;
			return BN_OK;
		}
	}
	if (o->n == o->cap) {
		int nc = o->cap ? 2 * o->cap : 8;
		PassOptVal *nv = realloc(o->v, (size_t)nc * sizeof *nv);
		if (!nv) {
			val_free(v);
			return bn_err(e, BN_ENOMEM, "out of memory for pass options");
		}
		o->v = nv;
		o->cap = nc;
	}
	o->v[o->n++] = *v;
	return BN_OK;
}

static bool parse_i64(const char *s, int64_t *out)
{
	while (*s == ' ')
		s++;
	if (!*s)
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	while (*end == ' ')
		end++;
	if (errno || *end)
		return false;
	*out = (int64_t)x;
	return true;
}

/* Parses text into v->type's value; v->pass/key/type are set. */
static int parse_value(PassOptVal *v, const char *text, BnErr *e)
{
	switch (v->type) {
	case PASS_OPT_INT:
		if (parse_i64(text, &v->i))
			return BN_OK;
		return bn_err(e, BN_EINVAL, "%s.%s: expected an int, got '%s'", v->pass, v->key, text);
	case PASS_OPT_FLOAT: {
		char *end;
		errno = 0;
		v->f = strtod(text, &end);
		if (*text && !*end && !errno && isfinite(v->f))
			return BN_OK;
		return bn_err(e, BN_EINVAL, "%s.%s: expected a float, got '%s'", v->pass, v->key,
			      text);
	}
	case PASS_OPT_STR:
		v->s = strdup(text);
		return v->s ? BN_OK : bn_err(e, BN_ENOMEM, "out of memory for pass options");
	case PASS_OPT_INTS: {
		size_t len = strlen(text);
		int n = 1;
		for (size_t i = 0; i < len; i++)
			n += text[i] == ',';
		v->ints = malloc((size_t)n * sizeof *v->ints);
		char *copy = strdup(text);
		if (!v->ints || !copy) {
			free(copy);
			val_free(v);
			return bn_err(e, BN_ENOMEM, "out of memory for pass options");
		}
		int k = 0;
		bool ok = len > 0;
		for (char *save = NULL, *tok = strtok_r(copy, ",", &save); ok && tok;
		     tok = strtok_r(NULL, ",", &save))
			ok = parse_i64(tok, &v->ints[k++]);
		free(copy);
		if (ok && k == n) {
			v->n_ints = k;
			return BN_OK;
		}
		val_free(v);
		return bn_err(e, BN_EINVAL, "%s.%s: expected an int list like 1,8,32, got '%s'",
			      v->pass, v->key, text);
	}
	}
	return bn_err(e, BN_EINVAL, "%s.%s: unknown option type", v->pass, v->key);
}

int pass_opts_set(PassOpts *o, const char *pass, const char *key, const char *value, BnErr *e)
{
	const PassInfo *p;
	const PassOptInfo *oi;
	int rc = lookup(pass, key, &p, &oi, e);
	if (rc)
		return rc;
	PassOptVal v = {.pass = p->name, .key = oi->name, .type = oi->type};
	rc = parse_value(&v, value ? value : "", e);
	return rc ? rc : store(o, &v, e);
}

int pass_opts_parse(PassOpts *o, const char *spec, BnErr *e)
{
	const char *dot = spec ? strchr(spec, '.') : NULL;
	const char *eq = dot ? strchr(dot, '=') : NULL;
	if (!dot || !eq || dot == spec || eq == dot + 1)
		return bn_err(e, BN_EINVAL, "pass option '%s': expected PASS.KEY=VALUE "
					    "(e.g. batch_templates.sizes=1,16)",
			      spec ? spec : "");
	char pass[64], key[64];
	if ((size_t)(dot - spec) >= sizeof pass || (size_t)(eq - dot - 1) >= sizeof key)
		return bn_err(e, BN_EINVAL, "pass option '%s': name too long", spec);
	memcpy(pass, spec, (size_t)(dot - spec));
	pass[dot - spec] = 0;
	memcpy(key, dot + 1, (size_t)(eq - dot - 1));
	key[eq - dot - 1] = 0;
	int rc = pass_opts_set(o, pass, key, eq + 1, e);
	if (rc)
		bn_err_prefix(e, "pass option '%s'", spec);
	return rc;
}

int pass_opts_put(PassOpts *o, const PassOptVal *in, BnErr *e)
{
	const PassInfo *p;
	const PassOptInfo *oi;
	int rc = lookup(in->pass, in->key, &p, &oi, e);
	if (rc)
		return rc;
	if (in->type != oi->type)
		return bn_err(e, BN_EINVAL, "%s.%s expects %s %s, got %s %s", p->name, oi->name,
			      ARTICLE(oi->type), pass_opt_type_name(oi->type),
			      ARTICLE(in->type), pass_opt_type_name(in->type));
	PassOptVal v = *in;
	v.pass = p->name;
	v.key = oi->name;
	v.s = NULL;
	v.ints = NULL;
	if (in->type == PASS_OPT_STR && !(v.s = strdup(in->s ? in->s : "")))
		return bn_err(e, BN_ENOMEM, "out of memory for pass options");
	if (in->type == PASS_OPT_INTS) {
		v.ints = malloc((size_t)(in->n_ints > 0 ? in->n_ints : 1) * sizeof *v.ints);
		if (!v.ints)
			return bn_err(e, BN_ENOMEM, "out of memory for pass options");
		if (in->n_ints > 0)
			memcpy(v.ints, in->ints, (size_t)in->n_ints * sizeof *v.ints);
	}
	return store(o, &v, e);
}

int pass_opts_view(PassOpts *dst, const PassInfo *p, const PassOpts *const *srcs, int n_srcs,
		   BnErr *e)
{
	pass_opts_free(dst);
	dst->verbose = 0;
	int rc = BN_OK;
	for (const PassOptInfo *oi = p->opts; !rc && oi && oi->name; oi++) {
		PassOptVal v = {.pass = p->name, .key = oi->name, .type = oi->type};
		rc = parse_value(&v, oi->dflt, e);
		if (!rc)
			rc = store(dst, &v, e);
		if (rc)
			bn_err_prefix(e, "default of %s.%s", p->name, oi->name);
	}
	for (int s = 0; !rc && s < n_srcs; s++) {
		const PassOpts *src = srcs[s];
		if (!src)
			continue;
		if (src->verbose > dst->verbose)
			dst->verbose = src->verbose;
		for (int i = 0; !rc && i < src->n; i++) {
			const PassOptVal *v = &src->v[i];
			if (v->pass && strcmp(v->pass, p->name) != 0)
				continue;
			PassOptVal mine = *v;
			mine.pass = p->name;
			rc = pass_opts_put(dst, &mine, e);
		}
	}
	if (rc)
		pass_opts_free(dst);
	return rc;
}

static const PassOptVal *find(const PassOpts *o, const char *key, PassOptType t)
{
	for (int i = 0; o && i < o->n; i++)
		if (o->v[i].type == t && strcmp(o->v[i].key, key) == 0)
			return &o->v[i];
	return NULL;
}

int64_t pass_opt_int(const PassOpts *o, const char *key, int64_t dflt)
{
	const PassOptVal *v = find(o, key, PASS_OPT_INT);
	return v ? v->i : dflt;
}

double pass_opt_float(const PassOpts *o, const char *key, double dflt)
{
	const PassOptVal *v = find(o, key, PASS_OPT_FLOAT);
	return v ? v->f : dflt;
}

const char *pass_opt_str(const PassOpts *o, const char *key, const char *dflt)
{
	const PassOptVal *v = find(o, key, PASS_OPT_STR);
	return v ? v->s : dflt;
}

const int64_t *pass_opt_ints(const PassOpts *o, const char *key, int *n)
{
	const PassOptVal *v = find(o, key, PASS_OPT_INTS);
	*n = v ? v->n_ints : 0;
	return v ? v->ints : NULL;
}
