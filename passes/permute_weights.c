/* permute_weights.c - repack ternary weights once, at compile time, into the layout the
 * selected kernel reads (ir.h: "weight layouts"), and record it in the value so codegen
 * picks the matching kernel and the verifier checks the bytes fit.
 * requires: a verified graph (graph attribute target, set by bitnetc build; else native);
 * produces: ternary_matmul weights in layout i2s_x16 (I2_S weights whose row count is a
 * multiple of 16, for a target with SIMD kernels; the others, and every weight for the
 * portable target, keep "gguf"; option layout = "t5_x16" packs 5 trits per byte instead,
 * 20% fewer weight bytes per token, nbytes updated), their data in the graph's arena; invalidates: the constants' data pointers (the GGUF mapping is no longer
 * what they point at). The repacks run on threads (option threads; default the online
 * CPUs), one weight at a time each, the bytes the same for any count. */
#include "pass.h"
#include "cg.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The checks of a repack of constant id into layout, and its destination in g's arena
 * (*dst, *name); *dst NULL: nothing to do (it is in that layout already). */
static int relayout_prepare(IrGraph *g, IrId id, const char *layout, void **dst,
			    const char **name, BnErr *e)
{
	IrValue *v = &g->values[id];
	*dst = NULL;
	if (v->kind != IR_VAL_CONST || !v->data)
		return bn_err(e, BN_EINVAL, "value '%s' is not a constant weight: only weights are "
					    "repacked", v->name ? v->name : "?");
	const char *cur = v->layout ? v->layout : "gguf";
	if (strcmp(cur, layout) == 0)
		return 0;
	const char *why = ir_layout_check(layout, v->dtype, v->n_dims, v->ne);
	if (why)
		return bn_err(e, BN_EINVAL, "value '%s' (%s): layout %s: %s", v->name ? v->name : "?",
			      ir_dtype_name(v->dtype), layout, why);
	if (strcmp(cur, "gguf") != 0 || strcmp(layout, "gguf") == 0)
		return bn_err(e, BN_EINVAL, "value '%s': cannot convert layout %s to %s (weights are "
					    "repacked from their GGUF layout once)",
			      v->name ? v->name : "?", cur, layout);
	*dst = bn_arena_alloc(g->arena, (size_t)ir_layout_nbytes(layout, v->dtype, v->ne, v->nbytes));
	*name = bn_arena_strdup(g->arena, layout);
	if (!*dst || !*name)
		return bn_err(e, BN_ENOMEM, "out of memory repacking '%s' (%" PRIu64 " bytes)",
			      v->name ? v->name : "?", v->nbytes);
	return 0;
}

/* The repack itself (ir_layout_pack: -2 out of memory); no graph state is touched. */
static int relayout_pack(const IrValue *v, const char *layout, void *dst)
{
	return ir_layout_pack(layout, v->dtype, v->data, dst, v->ne[0], v->ne[1]);
}

static int relayout_err(const IrValue *v, const char *layout, int rc, BnErr *e)
{
	return bn_err(e, rc == -2 ? BN_ENOMEM : BN_EINVAL, "value '%s': cannot repack into %s",
		      v->name ? v->name : "?", layout);
}

int pass_relayout(IrGraph *g, IrId id, const char *layout, BnErr *e)
{
	void *d;
	const char *name;
	int rc = relayout_prepare(g, id, layout, &d, &name, e);
	if (rc || !d)
		return rc;
	IrValue *v = &g->values[id];
	if ((rc = relayout_pack(v, layout, d)) != 0)
		return relayout_err(v, layout, rc, e);
	v->nbytes = ir_layout_nbytes(layout, v->dtype, v->ne, v->nbytes);
	v->data = d;
	v->layout = name;
	return 0;
}

/* One weight to repack: its value, layout and destination; rc its ir_layout_pack result. */
typedef struct {
	IrId id;
	IrId node;
	const char *to, *name;
	void *dst;
	int rc;
} PwJob;

typedef struct {
	const IrGraph *g;
	PwJob *jobs;
	int n;
	atomic_int next;
} PwQueue;

/* Takes weights off the queue until it is empty (sizes differ: no fixed split). */
static void *pw_worker(void *p)
{
	PwQueue *q = p;
	for (int i; (i = atomic_fetch_add(&q->next, 1)) < q->n;) {
		PwJob *j = &q->jobs[i];
		j->rc = relayout_pack(&q->g->values[j->id], j->to, j->dst);
	}
	return NULL;
}

/* The jobs packed on nt threads (the calling thread one of them; if none starts, all on it). */
static void pw_run(const IrGraph *g, PwJob *jobs, int n, int nt)
{
	enum { MAX = 256 };
	pthread_t th[MAX];
	bool started[MAX] = {0};
	PwQueue q = {.g = g, .jobs = jobs, .n = n};
	atomic_init(&q.next, 0);
	if (nt > MAX)
		nt = MAX;
	for (int i = 1; i < nt; i++)
		started[i] = pthread_create(&th[i], NULL, pw_worker, &q) == 0;
	pw_worker(&q);
	for (int i = 1; i < nt; i++)
		if (started[i])
			pthread_join(th[i], NULL);
}

int pass_permute_weights(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	const char *want = pass_opt_str(opts, "layout", "auto");
	const char *only = pass_opt_str(opts, "match", "*");
	bool auto_ = strcmp(want, "auto") == 0;
	if (!auto_ && strcmp(want, "gguf") != 0 && strcmp(want, "i2s_x16") != 0 &&
	    strcmp(want, "t5_x16") != 0)
		return bn_err(e, BN_EINVAL, "option layout is '%s'; expected auto, gguf, i2s_x16 or "
					    "t5_x16", want);
	/* auto where the target's kernels read the GGUF layout best (the backend says so:
	 * cpu-generic, whose portable kernel beats both i2s_x16 kernels) keeps it */
	if (auto_) {
		const IrAttr *ta = pass_gattr_find(g, "target");
		const char *target = ta && ta->type == IR_ATTR_STR ? ta->s : "native";
		const CgBackend *be = cg_backend_of(target);
		CgTargetDesc d = {0};
		if (be->describe)
			be->describe(target, &d);
		if (!d.weight_layout || strcmp(d.weight_layout, "gguf") == 0)
			want = "gguf";
	}
	int64_t threads = pass_opt_int(opts, "threads", 0);
	if (threads < 0 || threads > 256)
		return bn_err(e, BN_EINVAL, "option threads is %" PRId64 "; expected 0 (the online "
					    "CPUs) to 256", threads);
	if (threads == 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		threads = ncpu < 1 ? 1 : ncpu > 256 ? 256 : ncpu;
	}
	/* decided and allocated in node order here; packed (the time) on threads below */
	PwJob *jobs = malloc((size_t)(g->n_nodes > 0 ? g->n_nodes : 1) * sizeof *jobs);
	if (!jobs)
		return bn_err(e, BN_ENOMEM, "out of memory");
	int n_jobs = 0, n_done = 0, n_kept = 0;
	uint64_t bytes = 0;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_TERNARY_MATMUL || n->n_in < 3)
			continue;
		IrValue *w = &g->values[n->in[2]];
		if (w->kind != IR_VAL_CONST || !w->name || fnmatch(only, w->name, 0) != 0)
			continue;
		/* auto: the CPU kernels' layout where the weight fits it; a node attribute
		 * "layout" (set from Lua) overrides the choice for its weight */
		const char *to = ir_attr_str(n, "layout", auto_ && strcmp(want, "gguf") != 0 ? NULL : want);
		if (!to)
			to = ir_layout_check("i2s_x16", w->dtype, w->n_dims, w->ne) ? "gguf" : "i2s_x16";
		if (strcmp(to, w->layout ? w->layout : "gguf") == 0) {
			n_kept++;
			continue;
		}
		/* a weight two nodes read: the first one's repack stands (as if done already) */
		const PwJob *first = NULL;
		for (int i = 0; i < n_jobs && !first; i++)
			if (jobs[i].id == n->in[2])
				first = &jobs[i];
		if (first && strcmp(first->to, to) == 0) {
			n_kept++;
			continue;
		}
		if (first) {
			bn_err(e, BN_EINVAL, "node '%s': value '%s': cannot convert layout %s to %s "
					     "(weights are repacked from their GGUF layout once)",
			       n->name, w->name, first->to, to);
			free(jobs);
			return BN_EINVAL;
		}
		PwJob *j = &jobs[n_jobs];
		*j = (PwJob){.id = n->in[2], .node = ni, .to = to};
		int rc = relayout_prepare(g, n->in[2], to, &j->dst, &j->name, e);
		if (rc) {
			free(jobs);
			bn_err_prefix(e, "node '%s'", n->name);
			return rc;
		}
		if (!j->dst) {
			n_kept++;
			continue;
		}
		n_jobs++;
	}
	pw_run(g, jobs, n_jobs, (int)(threads < n_jobs ? threads : n_jobs > 0 ? n_jobs : 1));
	for (int i = 0; i < n_jobs; i++) {
		IrValue *w = &g->values[jobs[i].id];
		if (jobs[i].rc) {
			int rc = relayout_err(w, jobs[i].to, jobs[i].rc, e);
			bn_err_prefix(e, "node '%s'", g->nodes[jobs[i].node].name);
			free(jobs);
			return rc;
		}
		w->nbytes = ir_layout_nbytes(jobs[i].to, w->dtype, w->ne, w->nbytes);
		w->data = jobs[i].dst;
		w->layout = jobs[i].name;
		n_done++;
		bytes += w->nbytes;
	}
	free(jobs);
	if (opts->verbose > 0)
		fprintf(stderr, "permute_weights: %d weights repacked (%.1f MiB), %d kept\n", n_done,
			(double)bytes / (1 << 20), n_kept);
	return 0;
}
