/* cg_cpu_tune.c - measuring ternary matmul kernels of the i2s_x16 layout on this machine:
 * one generated program holds every case's kernel (shape, tokens, kind, tile) exactly as a
 * model would get it, compiled with the target's flags and the build's --cflags, times
 * each on one thread, and prints the times. Used for the GEMM tile (tune_kernels: the
 * fastest tile per shape wins; on a target with AMX the block of AMX tiles) and for LUT
 * versus multiply-add (lut_specialize). */
#include "cg_cpu_em.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
	int rows, tokens;
} Cand;

/* Tiles worth timing per ISA (their accumulators fit the register file). */
static const Cand cand_avx512[] = {{16, 8}, {16, 16}, {32, 4}, {32, 8}, {32, 12},
				   {48, 8}, {64, 4}, {64, 6}};
static const Cand cand_avx2[] = {{16, 2}, {16, 4}, {16, 6}, {32, 2}, {32, 3}, {48, 2}};
/* AMX blocks {rows, tokens} = RG groups of 16 rows x TB token tiles of 16: the kernel holds
 * RG B tiles, TB A tiles and RG x TB C tiles at once, and there are 8 tiles, so RG + TB +
 * RG x TB <= 8 (cg_cpu_amx.c): RG 1 with TB 1..3, RG 2 with TB 1..2, RG 3 with TB 1. These
 * six are all of them; RG 4 (4 + 1 + 4) is one tile too many. A block with more token
 * tiles than a forward needs runs as the one with just enough (the kernel clamps TB), so a
 * forward of nt tokens times only those with TB <= ceil(nt / 16). The default (codegen's,
 * with no amx_tile) is 32 x 32. */
static const Cand cand_amx[] = {{16, 16}, {16, 32}, {16, 48}, {32, 16}, {32, 32}, {48, 16}};
enum { N_CAND_AMX = sizeof cand_amx / sizeof cand_amx[0], AMX_DEFAULT_ROWS = 32,
       AMX_DEFAULT_TOKENS = 32 };
_Static_assert((int)N_CAND_AMX <= (int)CG_GEMM_TILE_MAX_CAND, "CgGemmTile holds every AMX candidate");

/* Whether cflags (--cflags words) define macro name (-DNAME, -DNAME=..., -D NAME; a later
 * -UNAME undefines it): the build's emulation switches. */
static bool cflags_define(const char *cflags, const char *name)
{
	char buf[1024];
	const char *w[64];
	CgOpts o = {.cflags = cflags};
	int n = cg_split_cflags(&o, buf, sizeof buf, w, 64);
	bool on = false;
	size_t len = strlen(name);
	for (int i = 0; i < n; i++) {
		const char *d = w[i];
		char op = 0;
		if ((strcmp(d, "-D") == 0 || strcmp(d, "-U") == 0) && i + 1 < n) {
			op = d[1];
			d = w[++i];
		} else if (strncmp(d, "-D", 2) == 0 || strncmp(d, "-U", 2) == 0) {
			op = d[1];
			d += 2;
		} else {
			continue;
		}
		if (strncmp(d, name, len) == 0 && (d[len] == 0 || (op == 'D' && d[len] == '=')))
			on = op == 'D';
	}
	return on;
}

static int write_text(const char *dir, const char *name, const void *data, size_t n, BnErr *e)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, n, f) != n) {
		if (f)
			fclose(f);
		return bn_err(e, BN_EIO, "%s: cannot write: %s", path, strerror(errno));
	}
	return fclose(f) ? bn_err(e, BN_EIO, "%s: cannot write", path) : 0;
}

/* The tuning program's source: every case's kernel, then a main() that times them. */
static int tune_source(const CgIsa *isa, const CgTuneCase *cs, int n_cs, CgBuf *out, BnErr *e)
{
	IrGraph *g = ir_graph_new("tune", "bitnet-b1.58");
	if (!g)
		return bn_err(e, BN_ENOMEM, "out of memory");
	static const uint8_t dummy[1];
	Em m = {.g = g, .e = e, .isa = *isa};
	CgBuf fwd = {0}, table = {0};
	int rc = 0, max_nt = 1;
	/* the graph: per case an input pair, a weight and one node */
	for (int c = 0; c < n_cs; c++) {
		int64_t neq[2] = {cs[c].k, IR_DIM_T}, nes[2] = {1, IR_DIM_T}, new_[2] = {cs[c].k, cs[c].n};
		int64_t ney[2] = {cs[c].n, IR_DIM_T};
		IrId in[3] = {ir_value_input(g, "q", IR_DT_I8, 2, neq),
			      ir_value_input(g, "s", IR_DT_F32, 2, nes),
			      ir_value_const(g, "w", IR_DT_I2_S, 2, new_, dummy, 1)};
		g->values[in[2]].layout = "i2s_x16";
		ir_node1(g, IR_OP_TERNARY_MATMUL, "tune", in, 3, IR_DT_F32, 2, ney);
		IrId nd = g->n_nodes - 1; /* ir_node1 returns the output value */
		ir_attr_set_str(g, nd, "kernel", cs[c].kernel);
		if (cs[c].rows) {
			/* with AMX the multiply-add GEMM is the AMX kernel (cg_cpu_tmm.c) */
			bool lut = strncmp(cs[c].kernel, "lut", 3) == 0;
			bool amx = isa->amx && !lut && cs[c].nt > 1 &&
				   strcmp(cs[c].kernel, "simd") == 0;
			int64_t tile[2] = {cs[c].rows, cs[c].tokens};
			ir_attr_set_ints(g, nd, lut ? "lut_tile" : amx ? "amx_tile" : "tile", tile, 2);
		}
		if (cs[c].nt > max_nt)
			max_nt = cs[c].nt;
	}
	size_t nv = (size_t)g->n_values + 1;
	m.soff = calloc(nv, sizeof *m.soff);
	m.woff = calloc(nv, sizeof *m.woff);
	m.fwd = &fwd;
	if (g->n_nodes != n_cs || !m.soff || !m.woff) {
		rc = bn_err(e, BN_ENOMEM, "out of memory");
		goto out;
	}
	cg_printf(&table, "static const Case cases[] = {\n");
	for (int c = 0; c < n_cs && !rc; c++) {
		char drv[160];
		m.nt = cs[c].nt;
		rc = emit_tmm_x16_named(&m, &g->nodes[c], cs[c].k, cs[c].n, drv, sizeof drv);
		cg_printf(&table, "\t{%s, %" PRId64 ", %" PRId64 ", %d},\n", drv, cs[c].k, cs[c].n,
			  cs[c].nt);
	}
	cg_printf(&table, "};\n");
	if (rc)
		goto out;
	cg_printf(out, "/* tune.c - generated by bitnetc to time ternary matmul kernels; not part of a model */\n"
		       "%s\n#define MAX_BATCH %d\n\n",
		  cg_cpu_prelude, max_nt);
	for (int i = 0; i < m.n_kern; i++)
		cg_printf(out, "%s\n", m.kern[i].body.data ? m.kern[i].body.data : "");
	/* AMX kernels ask the OS for the tile state by themselves (cg_cpu_amx.c), and abort
	 * when refused: main asks first and says so on a line of its own instead */
	const char *amx_check = m.kcount[CG_KERN_AMX]
					? "\tif (bn_amx_state() != 1) {\n"
					  "\t\tprintf(\"amx-refused %d\\n\", -bn_amx_state());\n"
					  "\t\treturn 0;\n"
					  "\t}\n"
					: "";
	cg_printf(out, "#include <stdio.h>\n"
		       "#include <stdlib.h>\n"
		       "#include <time.h>\n\n"
		       "typedef struct {\n"
		       "\tvoid (*fn)(void *, int, int);\n"
		       "\tint64_t k, n;\n"
		       "\tint nt;\n"
		       "} Case;\n"
		       "%s\n"
		       "static double now_ns(void)\n"
		       "{\n"
		       "\tstruct timespec t;\n"
		       "\tclock_gettime(CLOCK_MONOTONIC, &t);\n"
		       "\treturn (double)t.tv_sec * 1e9 + (double)t.tv_nsec;\n"
		       "}\n\n"
		       "int main(void)\n"
		       "{\n"
		       "%s"
		       "\tfor (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {\n"
		       "\t\tint64_t k = cases[c].k, n = cases[c].n;\n"
		       "\t\tuint8_t *w = malloc((size_t)(k * n / 4 + 32));\n"
		       "\t\tint8_t *q = malloc((size_t)(MAX_BATCH * k));\n"
		       "\t\tfloat *y = malloc((size_t)(MAX_BATCH * n) * sizeof(float)), s[MAX_BATCH];\n"
		       "\t\tif (!w || !q || !y)\n"
		       "\t\t\treturn 1;\n"
		       "\t\tmemset(w, 0x55, (size_t)(k * n / 4)); /* codes 1: any valid weights time alike */\n"
		       "\t\tfloat one = 1.0f;\n"
		       "\t\tmemcpy(w + k * n / 4, &one, sizeof one);\n"
		       "\t\tfor (int64_t i = 0; i < MAX_BATCH * k; i++)\n"
		       "\t\t\tq[i] = (int8_t)(i %% 255 - 127);\n"
		       "\t\tfor (int t = 0; t < MAX_BATCH; t++)\n"
		       "\t\t\ts[t] = 1.0f + (float)t;\n"
		       "\t\tTmmArg a = {w, q, s, y, cases[c].nt};\n"
		       "\t\tdouble best = 1e300, spent = 0;\n"
		       "\t\t/* the first run warms the caches; the best of up to five more, fewer\n"
		       "\t\t * (at least two) once 0.3 s went to this case */\n"
		       "\t\tfor (int r = 0; r < 6; r++) {\n"
		       "\t\t\tdouble t0 = now_ns();\n"
		       "\t\t\tcases[c].fn(&a, 0, 1);\n"
		       "\t\t\tdouble t = now_ns() - t0;\n"
		       "\t\t\tif (r > 0 && t < best)\n"
		       "\t\t\t\tbest = t;\n"
		       "\t\t\tspent += t;\n"
		       "\t\t\tif (r >= 2 && spent > 3e8)\n"
		       "\t\t\t\tbreak;\n"
		       "\t\t}\n"
		       "\t\tprintf(\"%%zu %%.0f\\n\", c, best);\n"
		       "\t\tfree(w);\n"
		       "\t\tfree(q);\n"
		       "\t\tfree(y);\n"
		       "\t}\n"
		       "\treturn 0;\n"
		       "}\n",
		  table.data ? table.data : "", amx_check);
	if (out->oom || table.oom || fwd.oom)
		rc = bn_err(e, BN_ENOMEM, "out of memory");
out:
	em_free(&m);
	cg_buf_free(&fwd);
	cg_buf_free(&table);
	ir_graph_free(g);
	return rc;
}

/* cg_cpu_tune_run; *refused (when not NULL) tells a program whose AMX kernels the OS
 * refused the tile state (errno in *err_no): then nothing was timed and 0 is returned. */
static int tune_run(const char *target, const char *cc, const char *cflags, CgTuneCase *cases,
		    int n_cases, int verbose, bool *refused, int *err_no, BnErr *e)
{
	CgIsa isa;
	char feats[256];
	cg_cpu_target_isa(target, &isa, feats, sizeof feats);
	const CgCpuTarget *t = cg_cpu_target(target);
	if (!t)
		return bn_err(e, BN_EINVAL, "tuning: unknown target '%s'", target);
	if (n_cases == 0)
		return 0;
	CgBuf src = {0};
	int rc = tune_source(&isa, cases, n_cases, &src, e);
	if (rc) {
		cg_buf_free(&src);
		return rc;
	}
	/* $TMPDIR as the build's own sources; removed by the build's signal handler too */
	const char *td = getenv("TMPDIR");
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/bitnetc-tune-XXXXXX", td && *td ? td : "/tmp");
	if (!mkdtemp(dir)) {
		cg_buf_free(&src);
		return bn_err(e, BN_EIO, "cannot create a temporary directory in %s: %s",
			      td && *td ? td : "/tmp", strerror(errno));
	}
	static const char *const tune_files[] = {"tune.c", "tune"};
	cg_cleanup_names(tune_files, 2);
	int slot = cg_cleanup_add(dir, true);
	const CgSource *hdr = NULL;
	for (int i = 0; i < cg_n_runtime_sources; i++)
		if (strcmp(cg_runtime_sources[i].name, "rt_model.h") == 0)
			hdr = &cg_runtime_sources[i];
	rc = write_text(dir, "tune.c", src.data, src.len, e);
	if (!rc && hdr)
		rc = write_text(dir, "rt_model.h", hdr->data, hdr->size, e);
	cg_buf_free(&src);
	if (!rc) {
		enum { MAX_EXTRA = 16 };
		const char *argv[32 + MAX_EXTRA], *extra[MAX_EXTRA];
		char extra_buf[1024];
		CgOpts fo = {.cflags = cflags};
		int n = 0, n_extra = cg_split_cflags(&fo, extra_buf, sizeof extra_buf, extra, MAX_EXTRA);
		argv[n++] = cc ? cc : "cc";
		argv[n++] = "-std=c11";
		argv[n++] = "-O2";
		argv[n++] = "-ffp-contract=off";
		argv[n++] = "-D_GNU_SOURCE";
		for (int i = 0; t->cflags && t->cflags[i] && n < 24; i++)
			argv[n++] = t->cflags[i];
		/* the build's own (-DBN_AMX_EMULATE: the tiles in software, as in the model) */
		for (int i = 0; i < n_extra; i++)
			argv[n++] = extra[i];
		argv[n++] = "-o";
		argv[n++] = "tune";
		argv[n++] = "tune.c";
		argv[n++] = "-lm";
		argv[n] = NULL;
		CgOpts o = {.cc = cc, .verbose = verbose};
		rc = cg_run_cc(&o, argv, dir, e);
	}
	if (!rc) {
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "'%s/tune'", dir);
		FILE *p = popen(cmd, "r");
		int got = 0, no_amx = 0;
		bool said_no = false;
		for (int c = 0; c < n_cases; c++)
			cases[c].ns = 0;
		char line[256];
		while (p && fgets(line, sizeof line, p)) {
			size_t c;
			double v;
			if (sscanf(line, "amx-refused %d", &no_amx) == 1)
				said_no = true;
			else if (sscanf(line, "%zu %lf", &c, &v) == 2 && c < (size_t)n_cases) {
				cases[c].ns = v;
				got++;
			}
		}
		int st = p ? pclose(p) : -1;
		if (p && st == 0 && said_no && got == 0) {
			if (refused)
				*refused = true;
			if (err_no)
				*err_no = no_amx;
			if (!refused)
				rc = bn_err(e, BN_EUNSUPPORTED, "the tuning program: the OS refused the "
								"AMX tile state: %s", strerror(no_amx));
		} else if (!p || st != 0 || got != n_cases)
			rc = bn_err(e, BN_EIO, "the tuning program failed (%d of %d timings)", got,
				    n_cases);
	}
	if (slot >= 0)
		cg_cleanup_remove(slot);
	else
		cg_remove_sources(dir);
	return rc;
}

int cg_cpu_tune_run(const char *target, const char *cc, const char *cflags, CgTuneCase *cases,
		    int n_cases, int verbose, BnErr *e)
{
	return tune_run(target, cc, cflags, cases, n_cases, verbose, NULL, NULL, e);
}

void cg_cpu_gemm_tile(const char *target, const char *cflags, CgGemmTile *t)
{
	CgIsa isa;
	char feats[256];
	cg_cpu_target_isa(target, &isa, feats, sizeof feats);
	*t = (CgGemmTile){.attr = "tile", .kind = ""};
	if (!isa.amx)
		return;
	t->attr = "amx_tile";
	t->kind = cflags_define(cflags, "BN_AMX_EMULATE") ? "amx_emu" : "amx";
	t->n_cand = N_CAND_AMX;
	for (int c = 0; c < N_CAND_AMX; c++) {
		t->cand[c][0] = cand_amx[c].rows;
		t->cand[c][1] = cand_amx[c].tokens;
	}
}

/* The shape's choice: the fastest of its n timed cases (the first of equals). */
static void take_fastest(CgTuneShape *sh, const CgTuneCase *sc, int n)
{
	int best = 0;
	for (int c = 1; c < n; c++)
		if (sc[c].ns < sc[best].ns)
			best = c;
	sh->rows = sc[best].rows;
	sh->tokens = sc[best].tokens;
	sh->ns = sc[best].ns;
}

/* The AMX blocks of each shape at nt tokens: timed where the host runs them (the
 * instructions with the OS's tile state, or the software tiles of -DBN_AMX_EMULATE on an
 * AVX-512 VNNI CPU), else nothing timed and note says why. */
static int tune_amx(const char *target, const char *cc, const char *cflags, CgTuneShape *shapes,
		    int n_shapes, int nt, int verbose, char *note, size_t note_n, BnErr *e)
{
	CgIsa isa;
	char feats[256], missing[256];
	cg_cpu_target_isa(target, &isa, feats, sizeof feats);
	bool emu = cflags_define(cflags, "BN_AMX_EMULATE");
	/* what the tuning program needs of this CPU: the target's features (the AVX-512
	 * kernels that unpack B tiles), less the tiles when they run in software */
	if (emu) {
		cg_cpu_strip_word(feats, "amx_tile");
		cg_cpu_strip_word(feats, "amx_int8");
	}
	if (rt_cpu_require(feats, missing, sizeof missing) != 0) {
		if (!emu && strstr(missing, "amx_") && !strstr(missing, "avx"))
			snprintf(note, note_n, "this host has no AMX (it lacks %s); --cflags "
					       "-DBN_AMX_EMULATE times the software tiles instead, as "
					       "a test of the plumbing only", missing);
		else
			snprintf(note, note_n, "this host lacks %s, which the %s kernels need%s",
				 missing, target, emu ? " besides the (emulated) tiles" : "");
		return 0;
	}
	/* the candidates a forward of nt tokens tells apart (cand_amx's comment) */
	int need = (nt + 15) / 16, idx[N_CAND_AMX], n_cand = 0, dflt = -1;
	int dt = AMX_DEFAULT_TOKENS / 16 < need ? AMX_DEFAULT_TOKENS / 16 : need;
	for (int c = 0; c < N_CAND_AMX; c++)
		if (cand_amx[c].tokens / 16 <= need) {
			if (cand_amx[c].rows == AMX_DEFAULT_ROWS && cand_amx[c].tokens / 16 == dt)
				dflt = n_cand;
			idx[n_cand++] = c;
		}
	CgTuneCase *cs = calloc((size_t)(n_shapes * n_cand), sizeof *cs);
	if (!cs)
		return bn_err(e, BN_ENOMEM, "out of memory");
	for (int s = 0; s < n_shapes; s++)
		for (int c = 0; c < n_cand; c++)
			cs[s * n_cand + c] = (CgTuneCase){shapes[s].k, shapes[s].n, nt, "simd",
							  cand_amx[idx[c]].rows,
							  cand_amx[idx[c]].tokens, 0};
	bool refused = false;
	int err_no = 0;
	int rc = tune_run(target, cc, cflags, cs, n_shapes * n_cand, verbose, &refused, &err_no,
			  e);
	if (!rc && refused) {
		snprintf(note, note_n, "the OS refused the AMX tile state to the tuning program "
				       "(arch_prctl ARCH_REQ_XCOMP_PERM: %s; it needs a CPU with AMX "
				       "and Linux 5.16 or newer)", strerror(err_no));
		free(cs);
		return 0;
	}
	for (int s = 0; s < n_shapes && !rc; s++) {
		const CgTuneCase *sc = cs + s * n_cand;
		take_fastest(&shapes[s], sc, n_cand);
		shapes[s].ns_default = dflt >= 0 ? sc[dflt].ns : 0;
		if (verbose > 0) {
			fprintf(stderr, "tune k %" PRId64 " n %" PRId64 " (%d tokens, AMX blocks%s):",
				shapes[s].k, shapes[s].n, nt, emu ? ", emulated tiles" : "");
			for (int c = 0; c < n_cand; c++)
				fprintf(stderr, " %dx%d %.2fms", sc[c].rows, sc[c].tokens, sc[c].ns / 1e6);
			fprintf(stderr, "\n");
		}
	}
	free(cs);
	return rc;
}

int cg_cpu_tune_tiles(const char *target, const char *cc, const char *cflags,
		      CgTuneShape *shapes, int n_shapes, int nt, int verbose, char *note,
		      size_t note_n, BnErr *e)
{
	CgIsa isa;
	char feats[256];
	if (note_n)
		note[0] = 0;
	cg_cpu_target_isa(target, &isa, feats, sizeof feats);
	const Cand *cand = isa.level == CG_ISA_AVX512 ? cand_avx512
			   : isa.level == CG_ISA_AVX2 ? cand_avx2
						     : NULL;
	int n_cand = isa.level == CG_ISA_AVX512 ? (int)(sizeof cand_avx512 / sizeof cand_avx512[0])
		     : isa.level == CG_ISA_AVX2 ? (int)(sizeof cand_avx2 / sizeof cand_avx2[0])
						: 0;
	/* portable kernels have one tile; GEMV has no token tile */
	if (!cand || !cg_cpu_target(target) || n_shapes == 0 || nt < 2)
		return 0;
	/* with AMX the multi-token forwards run the tile kernel: its blocks are the choice */
	if (isa.amx)
		return tune_amx(target, cc, cflags, shapes, n_shapes, nt, verbose, note, note_n, e);
	CgTuneCase *cs = calloc((size_t)(n_shapes * n_cand), sizeof *cs);
	if (!cs)
		return bn_err(e, BN_ENOMEM, "out of memory");
	for (int s = 0; s < n_shapes; s++)
		for (int c = 0; c < n_cand; c++)
			cs[s * n_cand + c] = (CgTuneCase){shapes[s].k, shapes[s].n, nt, "simd",
							  cand[c].rows, cand[c].tokens, 0};
	int rc = cg_cpu_tune_run(target, cc, cflags, cs, n_shapes * n_cand, verbose, e);
	for (int s = 0; s < n_shapes && !rc; s++) {
		const CgTuneCase *sc = cs + s * n_cand;
		take_fastest(&shapes[s], sc, n_cand);
		/* the ISA's default tile (x16_tile) is among the candidates */
		int dr = isa.level == CG_ISA_AVX512 ? 32 : 16, dt = isa.level == CG_ISA_AVX512 ? 8 : 4;
		for (int c = 0; c < n_cand; c++)
			if (cand[c].rows == dr && cand[c].tokens == dt)
				shapes[s].ns_default = sc[c].ns;
		if (verbose > 0) {
			fprintf(stderr, "tune k %" PRId64 " n %" PRId64 " (%d tokens):", shapes[s].k,
				shapes[s].n, nt);
			for (int c = 0; c < n_cand; c++)
				fprintf(stderr, " %dx%d %.2fms", cand[c].rows, cand[c].tokens, sc[c].ns / 1e6);
			fprintf(stderr, "\n");
		}
	}
	free(cs);
	return rc;
}
