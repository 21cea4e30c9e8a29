/* tune_kernels.c - choose the GEMM tile of each ternary matmul from measurements on this
 * machine: the SIMD register tile (kernel attribute "tile", read by codegen), or on a
 * target with AMX (cpu-amx; native on a host with it), whose multi-token forwards run the
 * AMX kernel, its block of tiles (attribute "amx_tile"); the target's backend says which
 * (its gemm_tile hook). With tune = 1 the candidates are compiled and timed by the
 * backend (its tune_tiles hook; the CPU's: codegen/cpu/cg_cpu_tune.c, built with the
 * build's --cflags), and the winners are appended to a tuning file that later builds
 * reuse without measuring; with tune = 0 only the file is read. AMX blocks are timed only
 * where the host has AMX and the OS grants the tile state, or on the software tiles of
 * --cflags -DBN_AMX_EMULATE (recorded under their own kind, amx_emu: a test of the
 * plumbing that a build of the instructions never reads); elsewhere the pass says so on
 * stderr and sets nothing from measurements.
 * Shapes without a recorded choice keep codegen's default (its cost model: the largest
 * register tile of the ISA; the AMX kernel's 32 x 32 block), as do nodes whose tile a
 * script set, and matmuls whose weights are in t5_x16 (the candidates are timed on
 * i2s_x16; t5_x16 takes the same tile attribute, set by a script, else the ISA's default).
 * requires: a verified graph with batch_sizes (batch_templates), weights repacked into
 * i2s_x16 (permute_weights), graph attribute "target" (set by bitnetc build; else native),
 * optionally "cc" and "cflags" (the build's compiler and --cflags);
 * produces: node attributes tile = {rows, tokens} or amx_tile = {rows, tokens}, graph
 * attribute tuned_tiles (count); invalidates: nothing. */
#include "pass.h"
#include "cg.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void pass_tune_cpu_model(char *out, size_t n)
{
	snprintf(out, n, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) == 0 && colon) {
			char *s = colon + 1;
			while (*s == ' ' || *s == '\t')
				s++;
			s[strcspn(s, "\n")] = 0;
			for (char *p = s; *p; p++)
				if (*p == '\t')
					*p = ' ';
			snprintf(out, n, "%s", s);
			break;
		}
	}
	fclose(f);
}

void pass_tune_path(const char *opt, char *out, size_t n)
{
	const char *env = getenv("BITNETC_TUNE_FILE"), *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	if (opt && *opt)
		snprintf(out, n, "%s", opt);
	else if (env && *env)
		snprintf(out, n, "%s", env);
	else if (xdg && *xdg)
		snprintf(out, n, "%s/bitnetc/tune.tsv", xdg);
	else
		snprintf(out, n, "%s/.cache/bitnetc/tune.tsv", home && *home ? home : "/tmp");
}

const char *pass_tune_line(char *line, const char *cpu, const char *target)
{
	char *tab1 = strchr(line, '\t');
	if (!tab1 || line[0] == '#')
		return NULL;
	*tab1 = 0;
	char *tab2 = strchr(tab1 + 1, '\t');
	if (!tab2 || strcmp(line, cpu) != 0)
		return NULL;
	*tab2 = 0;
	return strcmp(tab1 + 1, target) == 0 ? tab2 + 1 : NULL;
}

void pass_tune_make_parent(const char *path)
{
	char d[4096];
	snprintf(d, sizeof d, "%s", path);
	for (char *p = d + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(d, 0755);
			*p = '/';
		}
}

typedef struct {
	int64_t k, n;
	int rows, tokens; /* 0: no choice yet */
} Shape;

/* Whether the file may name tile {rows, tokens} for gt: one of its candidates, or (none
 * listed) a register tile in the range codegen takes. */
static bool tile_ok(const CgGemmTile *gt, int rows, int tokens)
{
	if (!gt->n_cand)
		return rows >= 16 && rows % 16 == 0 && rows <= 128 && tokens >= 1 && tokens <= 64;
	for (int i = 0; i < gt->n_cand; i++)
		if (gt->cand[i][0] == rows && gt->cand[i][1] == tokens)
			return true;
	return false;
}

/* Fills in the shapes the file has a choice of kind gt->kind for (the last valid line for
 * a key wins). Lines of the register tile, as before AMX tiles:
 *   cpu TAB target TAB k TAB n TAB tokens-in-flight TAB rows TAB tokens TAB ns
 * lines of another kind put it before the tile (where those lines have a number, so a
 * reader of one kind skips the other's lines, and lut_specialize skips both):
 *   cpu TAB target TAB k TAB n TAB tokens-in-flight TAB kind TAB rows TAB tokens TAB ns */
static void read_file(const char *path, const char *cpu, const char *target,
		      const CgGemmTile *gt, int nt, Shape *sh, int n_sh)
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
		int t, rows, tokens;
		char kind[16];
		if (gt->kind[0]) {
			if (sscanf(rest, "%" SCNd64 "\t%" SCNd64 "\t%d\t%15[^\t]\t%d\t%d", &k, &n, &t,
				   kind, &rows, &tokens) != 6 ||
			    strcmp(kind, gt->kind) != 0)
				continue;
		} else if (sscanf(rest, "%" SCNd64 "\t%" SCNd64 "\t%d\t%d\t%d", &k, &n, &t, &rows,
				  &tokens) != 5) {
			continue;
		}
		if (t != nt || !tile_ok(gt, rows, tokens))
			continue;
		for (int i = 0; i < n_sh; i++)
			if (sh[i].k == k && sh[i].n == n) {
				sh[i].rows = rows;
				sh[i].tokens = tokens;
			}
	}
	fclose(f);
}

int pass_tune_kernels(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	int64_t tune = pass_opt_int(opts, "tune", 0);
	const IrAttr *bs = pass_gattr_find(g, "batch_sizes");
	const IrAttr *ta = pass_gattr_find(g, "target"), *ca = pass_gattr_find(g, "cc");
	const IrAttr *fa = pass_gattr_find(g, "cflags");
	const char *target = ta && ta->type == IR_ATTR_STR ? ta->s : "native";
	const char *cc = ca && ca->type == IR_ATTR_STR ? ca->s : "cc";
	const char *cflags = fa && fa->type == IR_ATTR_STR ? fa->s : NULL;
	int nt = 1;
	for (int i = 0; bs && bs->type == IR_ATTR_INTS && i < bs->n_ints; i++)
		if (bs->ints[i] > nt)
			nt = (int)bs->ints[i];
	if (nt < 2)
		return 0; /* decode only: GEMV has no token tile */
	const CgBackend *be = cg_backend_of(target);
	CgGemmTile gt = {.attr = "tile", .kind = ""};
	if (be->gemm_tile)
		be->gemm_tile(target, cflags, &gt);
	bool amx = strcmp(gt.attr, "amx_tile") == 0;
	const char *what = amx ? "amx_tile" : "tile";
	/* the distinct shapes still to choose for */
	Shape *sh = calloc((size_t)g->n_nodes + 1, sizeof *sh);
	if (!sh)
		return bn_err(e, BN_ENOMEM, "out of memory");
	int n_sh = 0;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_TERNARY_MATMUL || n->n_in < 3 || ir_attr_find(n, gt.attr))
			continue;
		const IrValue *w = &g->values[n->in[2]];
		if (!w->layout || strcmp(w->layout, "i2s_x16") != 0)
			continue;
		int i = 0;
		while (i < n_sh && !(sh[i].k == w->ne[0] && sh[i].n == w->ne[1]))
			i++;
		if (i == n_sh)
			sh[n_sh++] = (Shape){w->ne[0], w->ne[1], 0, 0};
	}
	char cpu[256], path[4096];
	pass_tune_cpu_model(cpu, sizeof cpu);
	pass_tune_path(pass_opt_str(opts, "file", ""), path, sizeof path);
	read_file(path, cpu, target, &gt, nt, sh, n_sh);
	int rc = 0, measured = 0;
	bool emu = strcmp(gt.kind, "amx_emu") == 0;
	if (tune) {
		CgTuneShape *ts = calloc((size_t)n_sh + 1, sizeof *ts);
		int n_ts = 0;
		char note[256] = "";
		for (int i = 0; ts && i < n_sh; i++)
			if (!sh[i].rows)
				ts[n_ts++] = (CgTuneShape){.k = sh[i].k, .n = sh[i].n};
		if (!ts)
			rc = bn_err(e, BN_ENOMEM, "out of memory");
		else if (n_ts && be->tune_tiles)
			rc = be->tune_tiles(target, cc, cflags, ts, n_ts, nt, opts->verbose, note,
					    sizeof note, e);
		/* asked to measure and could not: said whatever the verbosity */
		if (!rc && note[0])
			fprintf(stderr, "tune_kernels: %s were not timed: %s; the matmuls keep %s\n",
				amx ? "AMX tiles" : "GEMM tiles", note,
				amx ? "the default 32 x 32 block (or the tuning file's choice)"
				    : "the default tile (or the tuning file's choice)");
		FILE *f = NULL;
		if (!rc && n_ts && ts[0].rows) {
			pass_tune_make_parent(path);
			f = fopen(path, "a");
			if (!f)
				rc = bn_err(e, BN_EIO, "tuning file %s: %s", path, strerror(errno));
		}
		for (int j = 0; !rc && f && j < n_ts; j++) {
			if (gt.kind[0])
				fprintf(f, "%s\t%s\t%" PRId64 "\t%" PRId64 "\t%d\t%s\t%d\t%d\t%.0f\n", cpu,
					target, ts[j].k, ts[j].n, nt, gt.kind, ts[j].rows, ts[j].tokens,
					ts[j].ns);
			else
				fprintf(f, "%s\t%s\t%" PRId64 "\t%" PRId64 "\t%d\t%d\t%d\t%.0f\n", cpu,
					target, ts[j].k, ts[j].n, nt, ts[j].rows, ts[j].tokens, ts[j].ns);
			for (int i = 0; i < n_sh; i++)
				if (sh[i].k == ts[j].k && sh[i].n == ts[j].n) {
					sh[i].rows = ts[j].rows;
					sh[i].tokens = ts[j].tokens;
				}
			measured++;
			if (opts->verbose > 0)
				fprintf(stderr, "tune_kernels: k %" PRId64 " n %" PRId64 ": %s %dx%d, "
						"%.2f ms for %d tokens (default %s %.2f ms)%s\n",
					ts[j].k, ts[j].n, what, ts[j].rows, ts[j].tokens, ts[j].ns / 1e6,
					nt, amx ? "block" : "tile", ts[j].ns_default / 1e6,
					emu ? "; emulated tiles: a test of the plumbing, recorded as "
					      "amx_emu, not a choice for AMX hardware"
					    : "");
		}
		if (f && fclose(f) && !rc)
			rc = bn_err(e, BN_EIO, "tuning file %s: write failed", path);
		free(ts);
	}
	int applied = 0;
	for (int ni = 0; !rc && ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		if (n->op != IR_OP_TERNARY_MATMUL || n->n_in < 3 || ir_attr_find(n, gt.attr))
			continue;
		const IrValue *w = &g->values[n->in[2]];
		for (int i = 0; i < n_sh; i++)
			if (sh[i].rows && sh[i].k == w->ne[0] && sh[i].n == w->ne[1] && w->layout &&
			    strcmp(w->layout, "i2s_x16") == 0) {
				int64_t tile[2] = {sh[i].rows, sh[i].tokens};
				ir_attr_set_ints(g, ni, gt.attr, tile, 2);
				applied++;
			}
	}
	if (!rc)
		rc = pass_gattr_set_int(g, "tuned_tiles", applied, e);
	if (!rc && opts->verbose > 0)
		fprintf(stderr, "tune_kernels: %d shapes, %d measured now, %s set on %d matmuls "
				"(file %s%s%s)\n",
			n_sh, measured, amx ? "amx_tile" : "tiles", applied, path, gt.kind[0] ? ", kind " : "",
			gt.kind);
	free(sh);
	return rc;
}
