/* test_cuda_attn.c - the CUDA attention kernels (codegen/cuda/cg_cuda_k_attn.c): their PTX
 * verifies and passes ptxas for sm_80 and sm_90, and their host build under the SIMT
 * emulator matches the interpreter's attention over prompts and steps, several sequences in
 * one call, positions up to n_ctx - 1, grouped heads and rows longer than a score tile.
 * The same kernels translated to MSL by the Metal backend (tests/metal/msl_kernels.h) pass
 * the same checks (test_msl_*). */
#include "testutil.h"
#include "cg_cuda.h"
#include "msl_kernels.h"

#include <dlfcn.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simt_emu.h"

enum { MAX_L = 16 };

/* Marks the test skipped, saying what was not checked and why. */
#define skip_msg(...)                          \
	do {                                   \
		print_message("skipped: ");    \
		print_message(__VA_ARGS__);    \
		print_message("\n");           \
		skip();                        \
	} while (0)

/* ---- a graph of one attention node over q, k, v rows taken from tables -------------- */

typedef struct {
	IrGraph *g;
	IrId att;
	int64_t nh, nkv, hd, rows;
	float *tab[3]; /* q, k, v: row r of the tables is token id r */
} AGraph;

static uint32_t rng_state = 12345;

static float frand(void)
{
	rng_state = rng_state * 1664525u + 1013904223u;
	return (float)(rng_state >> 8) / 16777216.0f * 2.0f - 1.0f;
}

/* Layer 0 of an unplanned graph (kv_off < 0), or layer 1 planned at kv_off (layer 0
 * absent: the kernels must honour the offset). */
static void ag_new(AGraph *a, int64_t nh, int64_t nkv, int64_t hd, int64_t rows, int64_t kv_off)
{
	bool planned = kv_off >= 0;
	memset(a, 0, sizeof *a);
	a->nh = nh, a->nkv = nkv, a->hd = hd, a->rows = rows;
	a->g = ir_graph_new("attn", "test");
	int64_t tne[1] = {IR_DIM_T};
	a->g->tokens = ir_value_input(a->g, "tokens", IR_DT_I32, 1, tne);
	IrId x[3];
	static const char *const names[3] = {"q", "k", "v"};
	for (int w = 0; w < 3; w++) {
		int64_t width = (w ? nkv : nh) * hd;
		a->tab[w] = tu_hold(malloc((size_t)(width * rows) * sizeof(float)));
		for (int64_t i = 0; i < width * rows; i++)
			a->tab[w][i] = frand() * (w == 2 ? 1.0f : 1.5f);
		int64_t ne[2] = {width, rows}, one[2] = {width, IR_DIM_T};
		IrId t = ir_value_const(a->g, names[w], IR_DT_F32, 2, ne, a->tab[w],
					(uint64_t)(width * rows) * sizeof(float));
		IrId in[2] = {a->g->tokens, t};
		x[w] = ir_node1(a->g, IR_OP_EMBED, names[w], in, 2, IR_DT_F32, 2, one);
	}
	int64_t ne[2] = {nh * hd, IR_DIM_T};
	a->att = ir_node_add(a->g, IR_OP_ATTENTION, "attn", x, 3);
	a->g->logits = ir_node_output(a->g, a->att, "o", IR_DT_F32, 2, ne);
	ir_attr_set_int(a->g, a->att, "n_head", nh);
	ir_attr_set_int(a->g, a->att, "n_head_kv", nkv);
	ir_attr_set_int(a->g, a->att, "head_dim", hd);
	ir_attr_set_int(a->g, a->att, "layer", planned ? 1 : 0);
	ir_attr_set_float(a->g, a->att, "scale", 1.0 / sqrt((double)hd));
	if (planned) {
		ir_attr_set_int(a->g, a->att, "kv_off", kv_off);
		ir_attr_set_int(a->g, a->att, "kv_width", nkv * hd);
	}
	BnErr e = {0};
	if (ir_verify(a->g, &e))
		fail_msg("%s", e.msg);
}

static void ag_free(AGraph *a)
{
	ir_graph_free(a->g);
	for (int w = 0; w < 3; w++)
		tu_free(a->tab[w]);
}

/* ---- the kernels of one template ---------------------------------------------------- */

static const char *addr_of(CuCtx *c, IrId v)
{
	const IrNode *n = &c->g->nodes[((AGraph *)c->ud)->att];
	return v == n->in[0] ? "Q" : v == n->in[1] ? "K" : v == n->in[2] ? "V" : v == n->out[0] ? "Y" : "?";
}

static void launches(Simt *S, AGraph *a, int tmpl, CuLaunch *L, int *nl)
{
	CuCtx c = {.S = S, .g = a->g, .cc = 90, .max_batch = 64, .tmpl = tmpl, .addr = addr_of, .ud = a};
	BnErr e = {0};
	*nl = 0;
	if (cu_op_attention(&c, &a->g->nodes[a->att], L, nl, MAX_L, &e))
		fail_msg("cu_op_attention: %s", e.msg);
	assert_true(*nl >= 2);
}

/* ---- PTX ---------------------------------------------------------------------------- */

static const char *ptxas_path(void)
{
	static CgCudaInfo ci;
	static bool done;
	if (!done) {
		cg_cuda_probe(&ci);
		done = true;
	}
	return ci.ptxas;
}

/* The PTX of both templates for sm; every launch's kernel is an entry; ptxas (when found)
 * accepts it. Returns ptxas -v's output when verbose (malloc'd) or NULL. */
static char *ptx_check(AGraph *a, const char *sm, bool verbose)
{
	Simt *S = simt_new(SIMT_PTX, "attn");
	assert_non_null(S);
	CuLaunch L[2][MAX_L];
	int nl[2];
	launches(S, a, 1, L[0], &nl[0]);
	launches(S, a, 16, L[1], &nl[1]);
	CgBuf ptx = {0};
	BnErr e = {0};
	if (simt_emit_ptx(S, sm, &ptx, NULL, &e))
		fail_msg("PTX for %s: %s", sm, e.msg);
	simt_free(S);
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < nl[t]; i++) {
			char want[160];
			snprintf(want, sizeof want, ".entry %s(", L[t][i].kernel);
			if (!strstr(ptx.data, want))
				fail_msg("%s: no '%s' in the PTX", sm, want);
		}
	const char *ptxas = ptxas_path();
	char *out = NULL;
	if (ptxas[0]) {
		char name[64];
		snprintf(name, sizeof name, "attn_%s.ptx", sm);
		const char *path = tu_tmp(name);
		assert_int_equal(tu_write_file(path, ptx.data, ptx.len), 0);
		char *log = NULL;
		int rc = tu_run(&log, "'%s' %s -arch=%s -o /dev/null '%s' 2>&1", ptxas,
				verbose ? "-v" : "", sm, path);
		if (rc != 0)
			tu_fail_log(log, "ptxas -arch=%s rejects the attention PTX", sm);
		if (verbose)
			out = log;
		else
			free(log);
	}
	cg_buf_free(&ptx);
	return out;
}

static void ptx_shape(int64_t nh, int64_t nkv, int64_t hd, int64_t kv_off)
{
	AGraph a;
	ag_new(&a, nh, nkv, hd, 4, kv_off);
	free(ptx_check(&a, "sm_80", false));
	free(ptx_check(&a, "sm_90", false));
	ag_free(&a);
}

static void test_ptx(void **state)
{
	(void)state;
	ptx_shape(4, 4, 64, -1);
	ptx_shape(20, 5, 128, 3 * 640);
	ptx_shape(8, 2, 32, -1);
	ptx_shape(2, 1, 256, 3 * 256 + 4); /* keys only 2-aligned */
	ptx_shape(2, 2, 8, -1);
	if (!ptxas_path()[0])
		skip_msg("ptxas not found ($CUDA_PATH/bin, /usr/local/cuda/bin, $PATH): the attention "
			 "PTX was built and its entries checked, not assembled");
}

/* The 2B-4T shape (20 heads, 5 KV heads, head_dim 128) through ptxas -v for sm_90: no
 * kernel spills; the registers per thread are printed. */
static void test_ptxas_2b4t(void **state)
{
	(void)state;
	if (!ptxas_path()[0]) {
		skip_msg("ptxas not found: registers and spills of the 2B-4T attention not measured");
		return;
	}
	AGraph a;
	ag_new(&a, 20, 5, 128, 4, 3 * 640);
	char *log = ptx_check(&a, "sm_90", true);
	ag_free(&a);
	assert_non_null(log);
	const char *fn = NULL;
	for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
		if (strstr(line, "Compiling entry function"))
			fn = strchr(line, '\'');
		if (strstr(line, "spill") || strstr(line, "Used"))
			print_message("ptxas sm_90 %.*s %s\n", fn ? (int)strcspn(fn + 1, "'") : 0,
				      fn ? fn + 1 : "", line);
		if (strstr(line, "spill stores") && !strstr(line, " 0 bytes spill stores"))
			fail_msg("a kernel spills: %s", line);
	}
	free(log);
}

/* Shapes the kernels do not cover are refused, naming the node. */
static void test_unsupported(void **state)
{
	(void)state;
	AGraph a;
	ag_new(&a, 2, 2, 48, 4, -1);
	Simt *S = simt_new(SIMT_PTX, "attn");
	assert_non_null(S);
	CuLaunch L[MAX_L];
	int nl = 0;
	CuCtx c = {.S = S, .g = a.g, .cc = 80, .max_batch = 8, .tmpl = 1, .addr = addr_of, .ud = &a};
	BnErr e = {0};
	assert_int_equal(cu_op_attention(&c, &a.g->nodes[a.att], L, &nl, MAX_L, &e), BN_EUNSUPPORTED);
	tu_expect_has(e.msg, "'attn'");
	tu_expect_has(e.msg, "head_dim");
	assert_int_equal(nl, 0);
	/* no room for the launches */
	ag_free(&a);
	ag_new(&a, 2, 2, 64, 4, -1);
	c.g = a.g;
	c.ud = &a;
	e = (BnErr){0};
	assert_int_equal(cu_op_attention(&c, &a.g->nodes[a.att], L, &nl, 3, &e), BN_EINVAL);
	tu_expect_has(e.msg, "too many launches");
	simt_free(S);
	ag_free(&a);
}

/* ---- numerics under the emulator ---------------------------------------------------- */

/* The kernels of both templates as a shared object, dlopened. */
typedef struct {
	void *so;
	CuLaunch L[2][MAX_L]; /* the step template's launches, the batch template's */
	int nl[2];
} Kern;

/* the kernels are built as MSL and run through their trampolines (test_msl_*) */
static bool use_msl;

static void kern_build(Kern *k, AGraph *a, const char *tag)
{
	Simt *S = simt_new(use_msl ? SIMT_MSL : SIMT_HOST, "attn");
	assert_non_null(S);
	launches(S, a, 1, k->L[0], &k->nl[0]);
	launches(S, a, 8, k->L[1], &k->nl[1]);
	if (use_msl) {
		char sn[64];
		snprintf(sn, sizeof sn, "attn_msl_%s.so", tag);
		k->so = msl_so(S, tu_tmp(sn));
		return;
	}
	CgBuf obj = {0};
	BnErr e = {0};
	if (simt_emit_host_object(S, &obj, &e))
		fail_msg("host object: %s", e.msg);
	simt_free(S);
	char on[64], sn[64];
	snprintf(on, sizeof on, "attn_%s.o", tag);
	snprintf(sn, sizeof sn, "attn_%s.so", tag);
	char op[1024], sp[1024];
	snprintf(op, sizeof op, "%s", tu_tmp(on));
	snprintf(sp, sizeof sp, "%s", tu_tmp(sn));
	assert_int_equal(tu_write_file(op, obj.data, obj.len), 0);
	cg_buf_free(&obj);
	free(tu_run_ok(0, "'%s' -shared -o '%s' '%s'", BN_CC, sp, op));
	k->so = dlopen(sp, RTLD_NOW | RTLD_LOCAL);
	if (!k->so)
		fail_msg("dlopen %s: %s", sp, dlerror());
}

/* The names a launch's expressions use, bound for one call. */
typedef struct {
	int64_t n, n_ctx, kvs;
	const void *ptr[8]; /* KV POS SEQ SCORES Q K V Y */
	int tile;           /* > 0: the batch kernel's tile of scores (its last argument) */
} Env;

static const char *const env_names[8] = {"KV", "POS", "SEQ", "SCORES", "Q", "K", "V", "Y"};

/* A tiny evaluator for the launch expressions: integers, names, + - * / and parentheses. */
typedef struct {
	const char *p;
	const Env *env;
} Ev;

static int64_t ev_sum(Ev *v);

static void ev_space(Ev *v)
{
	while (*v->p == ' ')
		v->p++;
}

static int64_t ev_atom(Ev *v)
{
	ev_space(v);
	if (*v->p == '(') {
		v->p++;
		int64_t r = ev_sum(v);
		ev_space(v);
		if (*v->p != ')')
			fail_msg("launch expression: ')' expected at '%s'", v->p);
		v->p++;
		return r;
	}
	if (isdigit((unsigned char)*v->p))
		return strtoll(v->p, (char **)&v->p, 10);
	const char *s = v->p;
	while (isalnum((unsigned char)*v->p) || *v->p == '_')
		v->p++;
	size_t len = (size_t)(v->p - s);
	const Env *e = v->env;
	if (len == 1 && *s == 'n')
		return e->n;
	if (len == 5 && !strncmp(s, "n_ctx", 5))
		return e->n_ctx;
	if (len == 3 && !strncmp(s, "kvs", 3))
		return e->kvs;
	for (int i = 0; i < 8; i++)
		if (strlen(env_names[i]) == len && !strncmp(s, env_names[i], len))
			return (int64_t)(intptr_t)e->ptr[i];
	fail_msg("launch expression: unknown name '%.*s'", (int)len, s);
	return 0;
}

static int64_t ev_prod(Ev *v)
{
	int64_t r = ev_atom(v);
	for (;;) {
		ev_space(v);
		char op = *v->p;
		if (op != '*' && op != '/')
			return r;
		v->p++;
		int64_t b = ev_atom(v);
		r = op == '*' ? r * b : r / b;
	}
}

static int64_t ev_sum(Ev *v)
{
	int64_t r = ev_prod(v);
	for (;;) {
		ev_space(v);
		char op = *v->p;
		if (op != '+' && op != '-')
			return r;
		v->p++;
		int64_t b = ev_prod(v);
		r = op == '+' ? r + b : r - b;
	}
}

static int64_t eval(const char *s, const Env *env)
{
	Ev v = {s, env};
	int64_t r = ev_sum(&v);
	ev_space(&v);
	if (*v.p)
		fail_msg("launch expression '%s': trailing '%s'", s, v.p);
	return r;
}

static void run_launches(Kern *k, int t, const Env *env)
{
	for (int i = 0; i < k->nl[t]; i++) {
		const CuLaunch *l = &k->L[t][i];
		union {
			uint64_t u;
			int64_t i64;
			int32_t i32;
		} val[SIMT_MAX_PARAMS];
		void *params[SIMT_MAX_PARAMS];
		int64_t smem = eval(l->smem, env);
		for (int a = 0; a < l->n_args; a++) {
			int64_t x = eval(l->arg[a], env);
			if (env->tile > 0 && t == 1 && a == l->n_args - 1 && !strncmp(l->kernel, "attn_b_", 7)) {
				/* a smaller tile of scores: the same kernel, more passes */
				smem += 4 * ((int64_t)env->tile - x);
				x = env->tile;
			}
			if (l->type[a] == SIMT_P_I32)
				val[a].i32 = (int32_t)x;
			else
				val[a].i64 = x;
			params[a] = &val[a];
		}
		unsigned grid[3], block[3] = {l->block, 1, 1};
		for (int d = 0; d < 3; d++)
			grid[d] = (unsigned)eval(l->grid[d], env);
		SimtKernelFn fn;
		void *sym = msl_sym(k->so, l->kernel, use_msl);
		if (!sym)
			fail_msg("kernel %s not in the host object", l->kernel);
		memcpy(&fn, &sym, sizeof fn);
		char err[256];
		if (simt_emu_launch(fn, grid, block, (unsigned)smem, params, err, sizeof err))
			fail_msg("%s: %s", l->kernel, err);
	}
}

/* Buffers with a guard after their n bytes: kernels that write past them are caught. */
enum { GUARD = 256 };

static void *guarded(size_t n)
{
	size_t r = (n + 255) / 256 * 256;
	uint8_t *p = tu_hold(aligned_alloc(256, r + GUARD));
	memset(p + n, 0x5a, r + GUARD - n);
	return p;
}

static void guard_check(const void *p, size_t n, const char *what)
{
	size_t r = (n + 255) / 256 * 256;
	for (size_t i = n; i < r + GUARD; i++)
		if (((const uint8_t *)p)[i] != 0x5a)
			fail_msg("a kernel wrote %zu bytes past the %zu of %s", i - n + 1, n, what);
}

/* One model state on both sides: the interpreter, and the device buffers of the kernels. */
typedef struct {
	AGraph *a;
	IrInterp *it;
	Kern k;
	int64_t n_ctx;
	int n_seq, next_row, tile;
	uint16_t *kv;
	void *scores;
	size_t kv_n, scores_n; /* bytes */
	double worst; /* the largest max|d| / max|ref| seen */
} Run;

static void run_new(Run *r, AGraph *a, int64_t n_ctx, int n_seq, const char *tag)
{
	memset(r, 0, sizeof *r);
	r->a = a;
	r->n_ctx = n_ctx;
	r->n_seq = n_seq;
	BnErr e = {0};
	r->it = ir_interp_new_seq(a->g, n_ctx, n_seq, &e);
	if (!r->it)
		fail_msg("%s", e.msg);
	ir_interp_set_attn_f64(r->it, true); /* the kernels' attention sums */
	kern_build(&r->k, a, tag);
	IrKvPlan p;
	bool found;
	if (ir_kv_read(a->g, &p, &found, &e) || (!found && ir_kv_plan(a->g, &p, &e)))
		fail_msg("%s", e.msg);
	size_t n = (size_t)(p.elems * n_ctx * n_seq);
	ir_kv_plan_free(&p);
	r->kv_n = n * 2;
	r->kv = guarded(r->kv_n);
	for (size_t i = 0; i < n; i++)
		r->kv[i] = 0x7e00; /* NaN: a key or value read before it is stored poisons the row */
	r->scores_n = cu_attention_scores_bytes(a->g, n_ctx);
	r->scores = guarded(r->scores_n);
	memset(r->scores, 0xff, r->scores_n);
}

static void run_free(Run *r)
{
	ir_interp_free(r->it);
	dlclose(r->k.so);
	tu_free(r->kv);
	tu_free(r->scores);
}

/* One call of rows (pos[i], seq[i]) on both sides; the outputs agree within 1e-5 of the
 * largest |ref|. */
static void run_call(Run *r, int n, const int32_t *pos, const int32_t *seq)
{
	AGraph *a = r->a;
	int64_t qw = a->nh * a->hd, kw = a->nkv * a->hd;
	assert_true(r->next_row + n <= a->rows);
	int32_t *tok = tu_hold(malloc((size_t)n * sizeof *tok));
	float *ref = tu_hold(malloc((size_t)(n * qw) * sizeof *ref));
	float *y = guarded((size_t)(n * qw) * sizeof *y);
	float *qkv[3];
	for (int w = 0; w < 3; w++)
		qkv[w] = tu_hold(malloc((size_t)(n * (w ? kw : qw)) * sizeof(float)));
	for (int t = 0; t < n; t++) {
		tok[t] = r->next_row++;
		for (int w = 0; w < 3; w++) {
			int64_t width = w ? kw : qw;
			memcpy(qkv[w] + t * width, a->tab[w] + tok[t] * width, (size_t)width * sizeof(float));
		}
	}
	IrBatch b = {.n = n, .token = tok, .pos = pos, .seq = seq};
	BnErr e = {0};
	if (ir_interp_decode(r->it, &b, ref, &e))
		fail_msg("%s", e.msg);
	for (int64_t i = 0; i < n * qw; i++)
		y[i] = NAN;
	Env env = {.n = n, .n_ctx = r->n_ctx, .kvs = r->n_ctx * r->n_seq, .tile = r->tile,
		   .ptr = {r->kv, pos, seq, r->scores, qkv[0], qkv[1], qkv[2], y}};
	run_launches(&r->k, n == 1 ? 0 : 1, &env);
	guard_check(y, (size_t)(n * qw) * sizeof *y, "the output");
	guard_check(r->kv, r->kv_n, "the KV cache");
	guard_check(r->scores, r->scores_n, "SCORES");
	double mref = 0, md = 0;
	for (int64_t i = 0; i < n * qw; i++) {
		mref = fmax(mref, fabs(ref[i]));
		double d = fabs((double)y[i] - ref[i]);
		if (!(d <= md))
			md = isnan(d) ? INFINITY : d;
	}
	double rel = md / (mref > 0 ? mref : 1);
	if (rel > r->worst)
		r->worst = rel;
	if (!(rel <= 1e-5))
		fail_msg("%d rows (first at seq %d pos %d): max |d| %g vs max |ref| %g", n,
			 seq[0], pos[0], md, mref);
	for (int w = 0; w < 3; w++)
		tu_free(qkv[w]);
	tu_free(tok);
	tu_free(ref);
	tu_free(y);
}

/* Sequence s gets positions from..to-1 in calls of up to chunk rows (1: steps). */
static void run_span(Run *r, int s, int from, int to, int chunk)
{
	int32_t pos[256], seq[256];
	for (int p = from; p < to;) {
		int n = to - p < chunk ? to - p : chunk;
		for (int t = 0; t < n; t++)
			pos[t] = p + t, seq[t] = s;
		run_call(r, n, pos, seq);
		p += n;
	}
}

/* A prompt, then steps, head_dim 64, one head per KV head. */
static void test_prompt_steps_hd64(void **state)
{
	(void)state;
	AGraph a;
	ag_new(&a, 4, 4, 64, 40, -1);
	Run r;
	run_new(&r, &a, 32, 1, "hd64");
	run_span(&r, 0, 0, 9, 9);
	run_span(&r, 0, 9, 14, 1);
	run_span(&r, 0, 14, 20, 3);
	run_span(&r, 0, 20, 22, 1);
	print_message("hd64: worst relative error %.3g\n", r.worst);
	run_free(&r);
	ag_free(&a);
}

/* Grouped heads (4 q heads on 2 KV heads), head_dim 128, a planned layer offset; steps
 * across the first chunk boundary of the step's split (128 keys). */
static void test_grouped_hd128(void **state)
{
	(void)state;
	AGraph a;
	ag_new(&a, 4, 2, 128, 140, 3 * 256);
	Run r;
	run_new(&r, &a, 160, 1, "gqa128");
	run_span(&r, 0, 0, 17, 17);
	run_span(&r, 0, 17, 21, 1);
	run_span(&r, 0, 21, 126, 35);
	run_span(&r, 0, 126, 131, 1);
	print_message("gqa hd128: worst relative error %.3g\n", r.worst);
	run_free(&r);
	ag_free(&a);
}

/* Two sequences: rows of both in one call (interleaved), then steps of each. */
static void test_two_sequences(void **state)
{
	(void)state;
	AGraph a;
	ag_new(&a, 4, 2, 64, 60, -1);
	Run r;
	run_new(&r, &a, 24, 2, "seq2");
	int32_t pos[12], seq[12];
	for (int t = 0; t < 12; t++)
		pos[t] = t / 2, seq[t] = t % 2; /* 6 positions of each */
	run_call(&r, 12, pos, seq);
	run_span(&r, 1, 6, 9, 1);
	run_span(&r, 0, 6, 8, 1);
	/* a call whose rows start at other positions in each sequence */
	int32_t p2[7] = {8, 9, 10, 9, 10, 11, 12}, s2[7] = {0, 0, 0, 1, 1, 1, 1};
	run_call(&r, 7, p2, s2);
	run_span(&r, 0, 11, 12, 1);
	run_span(&r, 1, 13, 14, 1);
	print_message("two sequences: worst relative error %.3g\n", r.worst);
	run_free(&r);
	ag_free(&a);
}

/* Positions up to n_ctx - 1 with several chunks of the step's split (head_dim 32: chunks
 * of 32 keys), grouped heads 4 to 1. */
static void test_context_end(void **state)
{
	(void)state;
	AGraph a;
	ag_new(&a, 4, 1, 32, 160, -1);
	Run r;
	run_new(&r, &a, 150, 1, "end");
	run_span(&r, 0, 0, 146, 73);
	run_span(&r, 0, 146, 150, 1);
	print_message("context end: worst relative error %.3g\n", r.worst);
	run_free(&r);
	ag_free(&a);
}

/* Rows with more keys than a tile of scores: the batch kernel's three passes over K
 * (the tile shrunk to 6 scores), then steps; a layer offset that leaves the keys 2-aligned. */
static void test_tiles(void **state)
{
	(void)state;
	AGraph a;
	ag_new(&a, 2, 1, 64, 40, 2 * 64 + 4);
	Run r;
	run_new(&r, &a, 40, 1, "tiles");
	r.tile = 6;
	run_span(&r, 0, 0, 5, 5);   /* one tile */
	run_span(&r, 0, 5, 30, 25); /* up to five */
	run_span(&r, 0, 30, 33, 1);
	print_message("tiles: worst relative error %.3g\n", r.worst);
	run_free(&r);
	ag_free(&a);
}

/* The 2B-4T shape (20 heads on 5 KV heads, head_dim 128) in a long context: the step's
 * grids cover 4100 positions, of which the first few hold keys. */
static void test_long_context_2b4t(void **state)
{
	(void)state;
	AGraph a;
	ag_new(&a, 20, 5, 128, 16, 2 * 640);
	Run r;
	run_new(&r, &a, 4100, 1, "long");
	run_span(&r, 0, 0, 11, 11);
	run_span(&r, 0, 11, 14, 1);
	print_message("2B-4T shape, n_ctx 4100: worst relative error %.3g\n", r.worst);
	run_free(&r);
	ag_free(&a);
}


/* The same cases with the kernels in MSL: prompt and steps, two sequences in one call,
 * the batch kernel's tiles (skipped without a clang++ for msl_host.h). */
static void test_msl(void **state)
{
	if (!msl_available()) {
		skip_msg("no clang++ found at configure time: the MSL kernels are not compiled here");
		return;
	}
	use_msl = true;
	test_prompt_steps_hd64(state);
	test_two_sequences(state);
	test_tiles(state);
	use_msl = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_ptx, tu_teardown),
		cmocka_unit_test_teardown(test_ptxas_2b4t, tu_teardown),
		cmocka_unit_test_teardown(test_unsupported, tu_teardown),
		cmocka_unit_test_teardown(test_prompt_steps_hd64, tu_teardown),
		cmocka_unit_test_teardown(test_grouped_hd128, tu_teardown),
		cmocka_unit_test_teardown(test_two_sequences, tu_teardown),
		cmocka_unit_test_teardown(test_context_end, tu_teardown),
		cmocka_unit_test_teardown(test_tiles, tu_teardown),
		cmocka_unit_test_teardown(test_long_context_2b4t, tu_teardown),
		cmocka_unit_test_teardown(test_msl, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
