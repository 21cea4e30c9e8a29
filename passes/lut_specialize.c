/* lut_specialize.c - choose, per ternary matmul and batch template, between the table-lookup
 * (LUT) kernels and the multiply-add (MAD) kernels of the i2s_x16 layout. Both read the same
 * bytes, so the choice costs no memory and can differ per forward: node attribute
 * kernel_t<S> = "lut" or "simd" for the forward of S tokens.
 *
 * mode = auto decides from, in order: a measurement in the tuning file for this CPU, target,
 * shape and S (tune = 1, i.e. `bitnetc build --tune`, measures the missing ones now: both
 * kernels timed on one thread by codegen's tuning program, and appends them); else the cost
 * model below. mode = lut or mad forces one everywhere the target has it.
 *
 * Cost model: the target's backend gives each family's cost (cg.h's kernel_cost hook):
 * vector operations per 64-byte chunk (16 rows x 16 k) and token, as decode / tile_tokens
 * + per_token, where decode is the work shared by a tile's tokens (unpacking codes, LUT
 * indices) and per_token the dot products or the lookups with their widening adds. Both
 * kinds read the same weight bytes, so memory does not decide. The CPU backend's counts
 * are its generated kernels' instruction counts; they pick MAD wherever the target has
 * int8 dot products (vpdpbusd, sdot) or maddubs, and LUT for portable C on i2s_x16 (the
 * portable target keeps the GGUF layout by default, whose kernel is faster than both).
 * Measured here (tune = 1) the choice follows the timings instead.
 *
 * requires: batch_sizes (batch_templates), i2s_x16 weights (permute_weights), graph
 * attribute target (bitnetc build sets it; else native); produces: node attributes
 * kernel_t<S> on i2s_x16 ternary matmuls (t5_x16 ones keep multiply-add: no LUT kernel reads
 * that layout), graph attribute lut_forwards (node x template
 * pairs that run LUT); invalidates: nothing. Nodes whose "kernel" or "kernel_t<S>" a script
 * set are left as they are; on a target without LUT kernels (AVX2, AVX-512 without VBMI)
 * nothing is set. */
#include "pass.h"
#include "cg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum { MEASURE_TOKENS = 16 };

static double cost_at(CgKernelCost c, int s)
{
	int tt = s < c.tile_tokens ? s : c.tile_tokens;
	return c.decode / tt + c.per_token;
}

typedef struct {
	int64_t k, n;
	int s;           /* template size */
	int lut;         /* -1: no choice yet; 0: MAD; 1: LUT */
	double ns[2];    /* measured: MAD, LUT */
} Choice;

/* Fills in choices the tuning file has (the last line for a key wins). Lines:
 * cpu TAB target TAB k TAB n TAB S TAB lut|simd TAB ns-mad TAB ns-lut */
static void read_file(const char *path, const char *cpu, const char *target, Choice *ch, int n_ch)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[1024];
	while (fgets(line, sizeof line, f)) {
		const char *rest = pass_tune_line(line, cpu, target);
		if (!rest)
			continue;
		int64_t k, n;
		int s;
		char kind[16];
		if (sscanf(rest, "%" SCNd64 "\t%" SCNd64 "\t%d\t%15s", &k, &n, &s, kind) != 4 ||
		    (strcmp(kind, "lut") != 0 && strcmp(kind, "simd") != 0))
			continue; /* another pass's line (tune_kernels: a tile) */
		for (int i = 0; i < n_ch; i++)
			if (ch[i].k == k && ch[i].n == n && ch[i].s == s)
				ch[i].lut = strcmp(kind, "lut") == 0;
	}
	fclose(f);
}

/* Measures the choices still open and appends them to the tuning file. */
static int measure(const CgBackend *be, Choice *ch, int n_ch, const char *target,
		   const char *cc, const char *cflags, const char *cpu, const char *path,
		   int verbose, BnErr *e)
{
	CgTuneCase *cs = calloc((size_t)n_ch * 2 + 1, sizeof *cs);
	int *who = calloc((size_t)n_ch + 1, sizeof *who);
	if (!cs || !who) {
		free(cs);
		free(who);
		return bn_err(e, BN_ENOMEM, "out of memory");
	}
	int n = 0, open_ = 0;
	for (int i = 0; i < n_ch; i++)
		if (ch[i].lut < 0) {
			who[open_++] = i;
			/* a large batch is timed at 16 tokens: past the register tiles a token
			 * costs the same, and the slow candidate would take long at 128 */
			int nt = ch[i].s < MEASURE_TOKENS ? ch[i].s : MEASURE_TOKENS;
			cs[n++] = (CgTuneCase){ch[i].k, ch[i].n, nt, "simd", 0, 0, 0};
			cs[n++] = (CgTuneCase){ch[i].k, ch[i].n, nt, "lut", 0, 0, 0};
		}
	int rc = 0;
	if (n && be->tune_run)
		rc = be->tune_run(target, cc, cflags, cs, n, verbose, e);
	else if (n)
		rc = bn_err(e, BN_EUNSUPPORTED, "target %s: its backend (%s) cannot time kernels",
			    target, be->name);
	FILE *f = NULL;
	if (!rc && n) {
		pass_tune_make_parent(path);
		if (!(f = fopen(path, "a")))
			rc = bn_err(e, BN_EIO, "tuning file %s: %s", path, strerror(errno));
	}
	for (int j = 0; !rc && j < open_; j++) {
		Choice *c = &ch[who[j]];
		c->ns[0] = cs[2 * j].ns;
		c->ns[1] = cs[2 * j + 1].ns;
		c->lut = c->ns[1] < c->ns[0];
		fprintf(f, "%s\t%s\t%" PRId64 "\t%" PRId64 "\t%d\t%s\t%.0f\t%.0f\n", cpu, target, c->k,
			c->n, c->s, c->lut ? "lut" : "simd", c->ns[0], c->ns[1]);
		if (verbose > 0)
			fprintf(stderr, "lut_specialize: k %" PRId64 " n %" PRId64 " %d tokens (timed at "
					"%d): multiply-add %.3f ms, LUT %.3f ms -> %s\n",
				c->k, c->n, c->s, cs[2 * j].nt, c->ns[0] / 1e6, c->ns[1] / 1e6,
				c->lut ? "lut" : "simd");
	}
	if (f && fclose(f) && !rc)
		rc = bn_err(e, BN_EIO, "tuning file %s: write failed", path);
	free(cs);
	free(who);
	return rc;
}

static bool x16_matmul(const IrGraph *g, const IrNode *n)
{
	if (n->op != IR_OP_TERNARY_MATMUL || n->n_in < 3)
		return false;
	const IrValue *w = &g->values[n->in[2]];
	return w->layout && strcmp(w->layout, "i2s_x16") == 0;
}

int pass_lut_specialize(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	const char *mode = pass_opt_str(opts, "mode", "auto");
	if (strcmp(mode, "auto") != 0 && strcmp(mode, "lut") != 0 && strcmp(mode, "mad") != 0)
		return bn_err(e, BN_EINVAL, "option mode is '%s'; expected auto, lut or mad", mode);
	int64_t tune = pass_opt_int(opts, "tune", 0);
	const IrAttr *bs = pass_gattr_find(g, "batch_sizes");
	const IrAttr *ta = pass_gattr_find(g, "target"), *ca = pass_gattr_find(g, "cc");
	const char *target = ta && ta->type == IR_ATTR_STR ? ta->s : "native";
	const char *cc = ca && ca->type == IR_ATTR_STR ? ca->s : "cc";
	const IrAttr *fa = pass_gattr_find(g, "cflags");
	const char *cflags = fa && fa->type == IR_ATTR_STR ? fa->s : NULL;
	if (!bs || bs->type != IR_ATTR_INTS || bs->n_ints < 1)
		return bn_err(e, BN_EINVAL, "no graph attribute batch_sizes: run batch_templates first");
	const CgBackend *be = cg_backend_of(target);
	CgKernelCost mc = {0, 0, 1}, lc = {0, -1, 1};
	char why[160] = "";
	bool has_mad = be->kernel_cost && be->kernel_cost(target, "simd", &mc, why, sizeof why);
	bool has_lut = be->kernel_cost && be->kernel_cost(target, "lut", &lc, why, sizeof why);
	if (!has_lut && strcmp(mode, "lut") == 0)
		return bn_err(e, BN_EUNSUPPORTED, "mode lut: target %s has no LUT kernels (%s)",
			      target, why[0] ? why : "its backend has none");
	/* the distinct (shape, template) pairs to decide */
	int nbs = bs->n_ints;
	Choice *ch = calloc((size_t)g->n_nodes * (size_t)nbs + 1, sizeof *ch);
	if (!ch)
		return bn_err(e, BN_ENOMEM, "out of memory");
	int n_ch = 0;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (!x16_matmul(g, n))
			continue;
		const IrValue *w = &g->values[n->in[2]];
		for (int b = 0; b < nbs; b++) {
			int s = (int)bs->ints[b], i = 0;
			while (i < n_ch && !(ch[i].k == w->ne[0] && ch[i].n == w->ne[1] && ch[i].s == s))
				i++;
			if (i == n_ch)
				ch[n_ch++] = (Choice){w->ne[0], w->ne[1], s, -1, {0, 0}};
		}
	}
	int rc = 0;
	if (strcmp(mode, "auto") == 0 && has_lut) {
		char cpu[256], path[4096];
		pass_tune_cpu_model(cpu, sizeof cpu);
		pass_tune_path(pass_opt_str(opts, "file", ""), path, sizeof path);
		read_file(path, cpu, target, ch, n_ch);
		if (tune)
			rc = measure(be, ch, n_ch, target, cc, cflags, cpu, path, opts->verbose, e);
		for (int i = 0; i < n_ch; i++)
			if (ch[i].lut < 0)
				ch[i].lut = !has_mad || cost_at(lc, ch[i].s) < cost_at(mc, ch[i].s);
	} else {
		for (int i = 0; i < n_ch; i++)
			ch[i].lut = strcmp(mode, "lut") == 0;
	}
	int n_lut = 0, n_set = 0;
	/* without LUT kernels there is nothing to choose: no attribute is set */
	for (int ni = 0; !rc && has_lut && ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (!x16_matmul(g, n) || ir_attr_find(n, "kernel"))
			continue;
		const IrValue *w = &g->values[n->in[2]];
		for (int i = 0; i < n_ch; i++) {
			if (ch[i].k != w->ne[0] || ch[i].n != w->ne[1])
				continue;
			char key[32];
			snprintf(key, sizeof key, "kernel_t%d", ch[i].s);
			if (ir_attr_find(&g->nodes[ni], key))
				continue;
			ir_attr_set_str(g, ni, key, ch[i].lut ? "lut" : "simd");
			n_lut += ch[i].lut;
			n_set++;
		}
	}
	if (!rc)
		rc = pass_gattr_set_int(g, "lut_forwards", n_lut, e);
	if (!rc && opts->verbose > 0)
		fprintf(stderr, "lut_specialize: target %s, mode %s: LUT on %d of %d matmul forwards\n",
			target, mode, n_lut, n_set);
	/* no LUT kernel reads t5_x16: those matmuls keep the multiply-add kernels */
	int n_t5 = 0;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		n_t5 += n->op == IR_OP_TERNARY_MATMUL && n->n_in >= 3 && g->values[n->in[2]].layout &&
			strcmp(g->values[n->in[2]].layout, "t5_x16") == 0;
	}
	if (!rc && n_t5 && opts->verbose > 0)
		fprintf(stderr, "lut_specialize: %d matmuls with t5_x16 weights keep multiply-add (no "
				"LUT kernel reads that layout)\n", n_t5);
	free(ch);
	return rc;
}
