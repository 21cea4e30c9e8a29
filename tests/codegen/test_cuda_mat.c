/* test_cuda_mat.c - the CUDA matrix kernels (codegen/cuda/cg_cuda_k_mat.c): the PTX of every
 * kernel verifies, has its .entry and assembles with ptxas for sm_80 and sm_90 (when the CUDA
 * toolkit is here); the host flavour of the same kernels, run under the SIMT emulator, gives
 * the reference interpreter's results: exactly for ternary_matmul (I2_S, TQ2_0, TQ1_0), within
 * 1e-5 of the largest |value| for the float head. The same kernels translated to MSL by the
 * Metal backend (tests/metal/msl_kernels.h) give the same results (test_msl_*), the Metal
 * build's own batch kernels (simdgroup_matrix GEMMs for I2_S and the F16 head) included. */
#include "testutil.h"

#include "cg_cuda.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef BN_HAVE_SIMT_EMU
#include "simt_emu.h"
#endif
#include "msl_kernels.h"

#ifndef BN_CC
#define BN_CC "cc"
#endif

enum { MAX_LAUNCH = 8, MAX_BATCH = 20, MAX_TOK = 128 };

/* ---- a graph with one node under test ------------------------------------------------------
 * tokens -> embed (an F32 table whose row t is x row t) -> [quant_act ->] the node, whose
 * output is the logits (the head) or feeds an add that is (a plain matmul). */
typedef struct {
	IrGraph *g;
	IrId node;   /* the node under test */
	IrId out;    /* its output value */
	float *x;    /* [rows][k] */
	void *w;     /* the weight bytes (64-aligned) */
	int64_t k, n_out_rows;
} Case;

static void case_free(Case *c)
{
	ir_graph_free(c->g);
	free(c->x);
	free(c->w);
}

static IrId case_embed(Case *c, int64_t k, int rows, uint64_t *rng)
{
	c->g = ir_graph_new("mat", "test");
	int64_t tne[1] = {IR_DIM_T};
	c->g->tokens = ir_value_input(c->g, "tokens", IR_DT_I32, 1, tne);
	c->x = malloc((size_t)(k * rows) * sizeof(float));
	for (int64_t i = 0; i < k * rows; i++)
		c->x[i] = tu_randf(rng) * 3.0f;
	/* an outlier per row, as real activations have */
	for (int r = 0; r < rows; r++)
		c->x[r * k + (r * 37) % k] = 9.0f + (float)r;
	int64_t ne[2] = {k, rows};
	IrId tab = ir_value_const(c->g, "table", IR_DT_F32, 2, ne, c->x, (uint64_t)(k * rows) * sizeof(float));
	IrId in[2] = {c->g->tokens, tab};
	int64_t one[2] = {k, IR_DIM_T};
	c->k = k;
	return ir_node1(c->g, IR_OP_EMBED, "embed", in, 2, IR_DT_F32, 2, one);
}

/* ternary weights of dtype dt, [k, n]: per 256 (TQ) or per tensor (I2_S) magnitudes */
static void *ternary_weights(IrDtype dt, int64_t k, int64_t n, uint64_t *rng, uint64_t *nb)
{
	float *wf = malloc((size_t)(k * n) * sizeof(float));
	for (int64_t i = 0; i < k * n; i++) {
		float m = dt == IR_DT_I2_S ? 0.37f : 0.05f + 0.01f * (float)((i / 256) % 13);
		float u = tu_randf(rng);
		wf[i] = u < -0.33f ? -m : u > 0.33f ? m : 0.0f;
	}
	assert_true(ir_dtype_nbytes(dt, (uint64_t)(k * n), (uint64_t)k, nb));
	void *w = aligned_alloc(64, (*nb + 63) / 64 * 64);
	ir_quant(dt, wf, w, k * n);
	free(wf);
	return w;
}

static void case_ternary(Case *c, IrDtype dt, int64_t k, int64_t n, int rows, uint64_t seed)
{
	uint64_t rng = seed;
	IrId x = case_embed(c, k, rows, &rng);
	bool block = dt != IR_DT_I2_S;
	IrId qa = ir_node_add(c->g, IR_OP_QUANT_ACT, "q8", &x, 1);
	int64_t qne[2] = {k, IR_DIM_T}, sne[2] = {block ? k / 256 : 1, IR_DIM_T};
	int64_t wne[2] = {k, n}, yne[2] = {n, IR_DIM_T};
	IrId q = ir_node_output(c->g, qa, "q", IR_DT_I8, 2, qne);
	IrId s = ir_node_output(c->g, qa, "s", IR_DT_F32, 2, sne);
	ir_attr_set_str(c->g, qa, "mode", block ? "block256" : "token");
	uint64_t nb;
	c->w = ternary_weights(dt, k, n, &rng, &nb);
	IrId wv = ir_value_const(c->g, "w", dt, 2, wne, c->w, nb);
	IrId mm[3] = {q, s, wv};
	c->out = ir_node1(c->g, IR_OP_TERNARY_MATMUL, "blk.0.ffn_up", mm, 3, IR_DT_F32, 2, yne);
	c->node = c->g->values[c->out].producer;
	c->g->logits = c->out;
	c->n_out_rows = n;
}

/* The float head [k, v] of dtype dt; as the logits (pick) or feeding an add. */
static void case_head(Case *c, IrDtype dt, int64_t k, int64_t v, int rows, bool pick, uint64_t seed)
{
	uint64_t rng = seed;
	IrId x = case_embed(c, k, rows, &rng);
	float *wf = malloc((size_t)(k * v) * sizeof(float));
	for (int64_t i = 0; i < k * v; i++)
		wf[i] = tu_randf(&rng) * 0.125f;
	uint64_t nb;
	assert_true(ir_dtype_nbytes(dt, (uint64_t)(k * v), (uint64_t)k, &nb));
	c->w = aligned_alloc(64, (nb + 63) / 64 * 64);
	ir_quant(dt, wf, c->w, k * v);
	free(wf);
	int64_t wne[2] = {k, v}, yne[2] = {v, IR_DIM_T};
	IrId wv = ir_value_const(c->g, "output.weight", dt, 2, wne, c->w, nb);
	IrId in[2] = {x, wv};
	c->out = ir_node1(c->g, IR_OP_MATMUL, "output", in, 2, IR_DT_F32, 2, yne);
	c->node = c->g->values[c->out].producer;
	if (pick) {
		c->g->logits = c->out;
	} else {
		IrId ab[2] = {c->out, c->out};
		c->g->logits = ir_node1(c->g, IR_OP_ADD, "twice", ab, 2, IR_DT_F32, 2, yne);
	}
	c->n_out_rows = v;
	BnErr e = {0};
	if (ir_verify(c->g, &e))
		fail_msg("%s", e.msg);
}

/* ---- the op functions on a test context ----------------------------------------------------
 * addr(value) is "P<id>"; a launch's pointer arguments are those, LOG and OUTR. */
static const char *test_addr(CuCtx *c, IrId v)
{
	static char buf[4][32];
	static int slot;
	(void)c;
	char *b = buf[slot++ % 4];
	snprintf(b, sizeof buf[0], "P%d", v);
	return b;
}

static int build_node(Simt *S, const Case *c, int tmpl, CuLaunch *L, int *nl, BnErr *e)
{
	CuCtx ctx = {.S = S, .g = c->g, .cc = 80, .max_batch = MAX_BATCH, .tmpl = tmpl, .addr = test_addr};
	const IrNode *nd = &c->g->nodes[c->node];
	*nl = 0;
	return nd->op == IR_OP_TERNARY_MATMUL ? cu_op_ternary_matmul(&ctx, nd, L, nl, MAX_LAUNCH, e)
					      : cu_op_matmul(&ctx, nd, L, nl, MAX_LAUNCH, e);
}

/* ---- PTX ------------------------------------------------------------------------------------ */

static CgCudaInfo cuda_info;

static void need_nvptx(void)
{
	if (!cuda_info.nvptx) {
		print_message("skipped: this LLVM cannot emit PTX (%s)\n", cuda_info.nvptx_note);
		skip();
	}
}

/* The PTX of the cases' kernels for sm: every launch's .entry is there; ptxas (when found)
 * assembles it. verbose: ptxas -v's output is returned (malloc'd), else NULL. */
static char *ptx_check(Case *cs, int ncs, const int *tmpls, int ntm, const char *sm, bool verbose,
		       bool *assembled)
{
	Simt *S = simt_new(SIMT_PTX, "mat");
	CuLaunch L[MAX_LAUNCH];
	char names[64][128];
	int nn = 0;
	for (int i = 0; i < ncs; i++)
		for (int t = 0; t < ntm; t++) {
			int nl;
			BnErr e = {0};
			if (build_node(S, &cs[i], tmpls[t], L, &nl, &e))
				fail_msg("%s", e.msg);
			assert_int_equal(nl, 1);
			BN_ASSERT(nn < 64);
			snprintf(names[nn++], sizeof names[0], "%s", L[0].kernel);
		}
	CgBuf ptx = {0};
	BnErr e = {0};
	if (simt_emit_ptx(S, sm, &ptx, NULL, &e))
		fail_msg("%s", e.msg);
	simt_free(S);
	for (int i = 0; i < nn; i++) {
		char want[192];
		snprintf(want, sizeof want, ".entry %.127s(", names[i]);
		if (!strstr(ptx.data, want))
			fail_msg("the PTX for %s has no '%s'", sm, want);
	}
	char *out = NULL;
	*assembled = false;
	if (cuda_info.ptxas[0]) {
		char path[256], bin[256];
		snprintf(path, sizeof path, "%s", tu_tmp("mat.ptx"));
		snprintf(path + strlen(path) - 4, 64, "_%d_%s.ptx", (int)getpid(), sm);
		snprintf(bin, sizeof bin, "%.*s.cubin", (int)strlen(path) - 4, path);
		assert_int_equal(tu_write_file(path, ptx.data, ptx.len), 0);
		char *log = NULL;
		int rc = tu_run(&log, "'%s' %s -arch=%s '%s' -o '%s'", cuda_info.ptxas, verbose ? "-v" : "",
				sm, path, bin);
		if (rc != 0)
			tu_fail_log(log, "ptxas -arch=%s failed on %s", sm, path);
		out = log;
		*assembled = true;
		unlink(bin);
		unlink(path);
	}
	cg_buf_free(&ptx);
	if (!verbose) {
		free(out);
		out = NULL;
	}
	return out;
}

static void ptx_both(Case *cs, int ncs, const int *tmpls, int ntm)
{
	bool as80, as90;
	ptx_check(cs, ncs, tmpls, ntm, "sm_80", false, &as80);
	ptx_check(cs, ncs, tmpls, ntm, "sm_90", false, &as90);
	for (int i = 0; i < ncs; i++)
		case_free(&cs[i]);
	if (!as80 || !as90) {
		print_message("skipped: ptxas (no CUDA toolkit found: $CUDA_PATH/bin, /usr/local/cuda/bin, "
			      "$PATH); the PTX was emitted and checked for its entries only\n");
		skip();
	}
}

static const int both_tmpls[2] = {1, MAX_BATCH};

static void test_ptx_i2s(void **state)
{
	(void)state;
	need_nvptx();
	static const int64_t shapes[][2] = {{128, 32}, {640, 96}, {256, 320}, {384, 4160}};
	Case cs[4];
	for (int i = 0; i < 4; i++)
		case_ternary(&cs[i], IR_DT_I2_S, shapes[i][0], shapes[i][1], 1, 1 + (uint64_t)i);
	ptx_both(cs, 4, both_tmpls, 2);
}

static void test_ptx_tq(void **state)
{
	(void)state;
	need_nvptx();
	Case cs[4];
	case_ternary(&cs[0], IR_DT_TQ2_0, 256, 32, 1, 5);
	case_ternary(&cs[1], IR_DT_TQ2_0, 512, 4096, 1, 6);
	case_ternary(&cs[2], IR_DT_TQ1_0, 256, 320, 1, 7);
	case_ternary(&cs[3], IR_DT_TQ1_0, 768, 4096, 1, 8);
	/* one kernel serves both templates: build each once */
	static const int one[1] = {1};
	ptx_both(cs, 4, one, 1);
}

static void test_ptx_head(void **state)
{
	(void)state;
	need_nvptx();
	static const IrDtype dts[3] = {IR_DT_F16, IR_DT_BF16, IR_DT_F32};
	Case cs[6];
	for (int i = 0; i < 3; i++) {
		case_head(&cs[2 * i], dts[i], 640, 4099, 1, true, 10 + (uint64_t)i);
		case_head(&cs[2 * i + 1], dts[i], 128, 320, 1, false, 20 + (uint64_t)i);
	}
	ptx_both(cs, 6, both_tmpls, 2);
}

/* The numerics on the GPU: TQ must keep dot_tq's float order (no fused multiply-adds), I2_S
 * divides by the scale correctly rounded. */
static void test_ptx_rounding(void **state)
{
	(void)state;
	need_nvptx();
	Case cs[2];
	case_ternary(&cs[0], IR_DT_TQ2_0, 256, 32, 1, 5);
	case_ternary(&cs[1], IR_DT_I2_S, 256, 32, 1, 5);
	for (int i = 0; i < 2; i++) {
		Simt *S = simt_new(SIMT_PTX, "mat");
		CuLaunch L[MAX_LAUNCH];
		int nl;
		BnErr e = {0};
		for (int t = 0; t < 2; t++)
			if (build_node(S, &cs[i], both_tmpls[t], L, &nl, &e))
				fail_msg("%s", e.msg);
		CgBuf ptx = {0};
		if (simt_emit_ptx(S, "sm_90", &ptx, NULL, &e))
			fail_msg("%s", e.msg);
		simt_free(S);
		assert_null(strstr(ptx.data, "fma."));
		assert_null(strstr(ptx.data, "mad.f32"));
		if (i == 1)
			assert_non_null(strstr(ptx.data, "div.rn.f32"));
		else
			assert_non_null(strstr(ptx.data, "mul.rn.f32"));
		cg_buf_free(&ptx);
		case_free(&cs[i]);
	}
}

/* BitNet b1.58 2B-4T's shapes: every kernel assembles for sm_90 without spilling (ptxas -v). */
static void test_ptx_2b4t(void **state)
{
	(void)state;
	need_nvptx();
	static const int64_t shapes[][2] = {{2560, 2560}, {2560, 640}, {2560, 6912}, {6912, 2560}};
	Case cs[5];
	for (int i = 0; i < 4; i++) {
		int64_t k = shapes[i][0], n = shapes[i][1];
		/* the weights' bytes matter not here: the shape makes the kernel */
		memset(&cs[i], 0, sizeof cs[i]);
		uint64_t rng = 1;
		IrId x = case_embed(&cs[i], k, 1, &rng);
		IrId qa = ir_node_add(cs[i].g, IR_OP_QUANT_ACT, "q8", &x, 1);
		int64_t qne[2] = {k, IR_DIM_T}, sne[2] = {1, IR_DIM_T}, wne[2] = {k, n}, yne[2] = {n, IR_DIM_T};
		IrId q = ir_node_output(cs[i].g, qa, "q", IR_DT_I8, 2, qne);
		IrId s = ir_node_output(cs[i].g, qa, "s", IR_DT_F32, 2, sne);
		uint64_t nb = (uint64_t)(k * n / 4 + 32);
		cs[i].w = calloc(1, nb);
		IrId wv = ir_value_const(cs[i].g, "w", IR_DT_I2_S, 2, wne, cs[i].w, nb);
		IrId mm[3] = {q, s, wv};
		cs[i].out = ir_node1(cs[i].g, IR_OP_TERNARY_MATMUL, "mm", mm, 3, IR_DT_F32, 2, yne);
		cs[i].node = cs[i].g->values[cs[i].out].producer;
		cs[i].g->logits = cs[i].out;
	}
	{
		memset(&cs[4], 0, sizeof cs[4]);
		uint64_t rng = 1;
		int64_t k = 2560, v = 128256;
		IrId x = case_embed(&cs[4], k, 1, &rng);
		/* 656 MB of weights nothing reads: the value only names its size */
		static const uint8_t none[64];
		int64_t wne[2] = {k, v}, yne[2] = {v, IR_DIM_T};
		IrId wv = ir_value_const(cs[4].g, "output.weight", IR_DT_F16, 2, wne, none, (uint64_t)(k * v * 2));
		IrId in[2] = {x, wv};
		cs[4].out = ir_node1(cs[4].g, IR_OP_MATMUL, "output", in, 2, IR_DT_F32, 2, yne);
		cs[4].node = cs[4].g->values[cs[4].out].producer;
		cs[4].g->logits = cs[4].out;
	}
	bool as;
	char *log = ptx_check(cs, 5, both_tmpls, 2, "sm_90", true, &as);
	for (int i = 0; i < 5; i++)
		case_free(&cs[i]);
	if (!as) {
		print_message("skipped: ptxas -v (no CUDA toolkit found)\n");
		skip();
	}
	if (getenv("BN_TEST_VERBOSE"))
		for (const char *p = log; *p;) {
			const char *nl = strchr(p, '\n');
			int len = nl ? (int)(nl - p) : (int)strlen(p);
			print_message("%.*s\n", len, p);
			p += len + (nl != NULL);
		}
	/* every function: "0 bytes spill stores, 0 bytes spill loads" */
	int fns = 0;
	for (const char *p = log; (p = strstr(p, "Compiling entry function")); p++)
		fns++;
	assert_int_equal(fns, 10);
	int clean = 0;
	for (const char *p = log; (p = strstr(p, "0 bytes spill stores, 0 bytes spill loads")); p++)
		clean++;
	if (clean != fns)
		tu_fail_log(log, "a 2B-4T kernel spills registers");
	free(log);
}

/* ---- the host flavour under the emulator ------------------------------------------------------ */

#ifdef BN_HAVE_SIMT_EMU

typedef struct {
	void *so;
	SimtKernelFn fn;
	char path[256];
} HostKernel;

/* Builds the case's kernel for template tmpl as a host shared object and loads it. */
/* the kernels are built as MSL and run through their trampolines (test_msl_*) */
static bool use_msl;

static void host_kernel(const Case *c, int tmpl, HostKernel *hk, CuLaunch *l)
{
	static int seq;
	Simt *S = simt_new(use_msl ? SIMT_MSL : SIMT_HOST, "mat");
	CuLaunch L[MAX_LAUNCH];
	int nl;
	BnErr e = {0};
	if (build_node(S, c, tmpl, L, &nl, &e))
		fail_msg("%s", e.msg);
	assert_int_equal(nl, 1);
	*l = L[0];
	char obj[256];
	snprintf(obj, sizeof obj, "%s", tu_tmp("mat"));
	snprintf(obj + strlen(obj), 64, "_%d_%d.o", (int)getpid(), seq);
	snprintf(hk->path, sizeof hk->path, "%.*s.so", (int)strlen(obj) - 2, obj);
	seq++;
	if (use_msl) {
		hk->so = msl_so(S, hk->path);
		hk->fn = (SimtKernelFn)(uintptr_t)msl_sym(hk->so, l->kernel, true);
		assert_non_null(hk->fn);
		return;
	}
	CgBuf ob = {0};
	if (simt_emit_host_object(S, &ob, &e))
		fail_msg("%s", e.msg);
	simt_free(S);
	assert_int_equal(tu_write_file(obj, ob.data, ob.len), 0);
	cg_buf_free(&ob);
	char *log = NULL;
	if (tu_run(&log, "%s -shared -o '%s' '%s'", BN_CC, hk->path, obj) != 0)
		tu_fail_log(log, "linking %s failed", obj);
	free(log);
	unlink(obj);
	hk->so = dlopen(hk->path, RTLD_NOW | RTLD_LOCAL);
	if (!hk->so)
		fail_msg("dlopen %s: %s", hk->path, dlerror());
	hk->fn = (SimtKernelFn)(uintptr_t)dlsym(hk->so, l->kernel);
	assert_non_null(hk->fn);
}

static void host_kernel_free(HostKernel *hk)
{
	dlclose(hk->so);
	unlink(hk->path);
}

/* The launch's C expressions as the generated host code would evaluate them: integers, n,
 * n_out, and (n + A) / B. */
static long eval_expr(const char *s, int n, int n_out)
{
	long a, b;
	char var[8];
	if (sscanf(s, "(%7[a-z_] + %ld) / %ld", var, &a, &b) == 3)
		return ((strcmp(var, "n") == 0 ? n : n_out) + a) / b;
	if (strcmp(s, "n") == 0)
		return n;
	if (strcmp(s, "n_out") == 0)
		return n_out;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end)
		fail_msg("cannot evaluate '%s'", s);
	return v;
}

typedef struct {
	IrId id[4];
	void *p[4];
	int n;
	void *log, *outr;
} Binding;

/* Runs launch l of kernel fn with pointers bound by name, n rows (n_out of them wanted). */
static void run_launch(const CuLaunch *l, SimtKernelFn fn, const Binding *bd, int n, int n_out)
{
	void *ptrs[SIMT_MAX_PARAMS];
	int32_t ints[SIMT_MAX_PARAMS];
	void *params[SIMT_MAX_PARAMS];
	for (int i = 0; i < l->n_args; i++) {
		const char *a = l->arg[i];
		if (l->type[i] == SIMT_P_I32) {
			ints[i] = (int32_t)eval_expr(a, n, n_out);
			params[i] = &ints[i];
			continue;
		}
		assert_int_equal(l->type[i], SIMT_P_PTR);
		ptrs[i] = NULL;
		if (strcmp(a, "LOG") == 0)
			ptrs[i] = bd->log;
		else if (strcmp(a, "OUTR") == 0)
			ptrs[i] = bd->outr;
		else
			for (int j = 0; j < bd->n; j++)
				if (a[0] == 'P' && atoi(a + 1) == bd->id[j])
					ptrs[i] = bd->p[j];
		if (!ptrs[i])
			fail_msg("argument %d of %s: nothing bound to '%s'", i, l->kernel, a);
		params[i] = &ptrs[i];
	}
	unsigned grid[3], block[3] = {l->block, 1, 1};
	for (int d = 0; d < 3; d++)
		grid[d] = (unsigned)eval_expr(l->grid[d], n, n_out);
	char err[256];
	if (simt_emu_launch(fn, grid, block, (unsigned)eval_expr(l->smem, n, n_out), params, err, sizeof err))
		fail_msg("%s: %s", l->kernel, err);
}

/* FORMATS.md section 5 and Q8_K: the activations the quant_act kernels hand over */
static void quant_rows(const float *x, int64_t k, int rows, bool block, int8_t *q, float *s)
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + r * k;
		int8_t *qr = q + r * k;
		if (!block) {
			double amax = 1e-5;
			for (int64_t i = 0; i < k; i++)
				amax = fmax(amax, fabs((double)xr[i]));
			float sc = (float)(127.0 / amax);
			for (int64_t i = 0; i < k; i++) {
				float v = rintf(xr[i] * sc);
				qr[i] = (int8_t)(v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v);
			}
			s[r] = sc;
			continue;
		}
		for (int64_t b = 0; b < k / 256; b++) {
			float amax = 0.0f, xm = 0.0f;
			for (int i = 0; i < 256; i++)
				if (fabsf(xr[b * 256 + i]) > amax) {
					amax = fabsf(xr[b * 256 + i]);
					xm = xr[b * 256 + i];
				}
			float iscale = -127.0f / xm;
			for (int i = 0; i < 256; i++) {
				float v = rintf(iscale * xr[b * 256 + i]);
				qr[b * 256 + i] = (int8_t)(v > 127.0f ? 127.0f : v);
			}
			s[r * (k / 256) + b] = 1.0f / iscale;
		}
	}
}

/* The interpreter on rows 0..n-1 (tokens t = x row t), wanting rows out (NULL: all). */
static float *reference(Case *c, int n, const int32_t *out, int n_out, int64_t row)
{
	BnErr e = {0};
	IrInterp *it = ir_interp_new(c->g, MAX_TOK, &e);
	if (!it)
		fail_msg("%s", e.msg);
	int32_t tok[MAX_TOK], pos[MAX_TOK];
	BN_ASSERT(n <= MAX_TOK);
	for (int i = 0; i < n; i++)
		tok[i] = pos[i] = i;
	IrBatch b = {.n = n, .token = tok, .pos = pos, .out = out, .n_out = out ? n_out : n};
	float *y = malloc((size_t)(b.n_out ? b.n_out : 1) * (size_t)row * sizeof(float));
	if (ir_interp_decode(it, &b, y, &e))
		fail_msg("%s", e.msg);
	ir_interp_free(it);
	return y;
}

/* the first nns of n rows 1, 7, 2 and MAX_BATCH (fewer for the big shapes: emulator time) */
static void check_ternary(IrDtype dt, int64_t k, int64_t nn, int nns, uint64_t seed)
{
	static const int ns[] = {1, 7, 2, MAX_BATCH};
	for (int ni = 0; ni < nns; ni++) {
		int n = ns[ni];
		Case c;
		case_ternary(&c, dt, k, nn, n, seed + (uint64_t)n);
		float *ref = reference(&c, n, NULL, 0, nn);
		bool block = dt != IR_DT_I2_S;
		int8_t *q = aligned_alloc(64, (size_t)(k * n));
		float *s = malloc((size_t)(n * (block ? k / 256 : 1)) * sizeof(float));
		quant_rows(c.x, k, n, block, q, s);
		float *y = malloc((size_t)(nn * n) * sizeof(float));
		const IrNode *nd = &c.g->nodes[c.node];
		Binding bd = {{nd->in[0], nd->in[1], nd->in[2], nd->out[0]}, {q, s, c.w, y}, 4, NULL, NULL};
		/* the step template for one row, the batch template for all */
		for (int tmpl = n == 1 ? 1 : MAX_BATCH; tmpl <= MAX_BATCH; tmpl += MAX_BATCH - 1) {
			HostKernel hk;
			CuLaunch l;
			host_kernel(&c, tmpl, &hk, &l);
			memset(y, 0xff, (size_t)(nn * n) * sizeof(float));
			run_launch(&l, hk.fn, &bd, n, n);
			for (int64_t i = 0; i < nn * n; i++)
				if (memcmp(&y[i], &ref[i], sizeof(float)) != 0)
					fail_msg("%s k=%lld n_rows=%lld n=%d tmpl=%d: y[%lld][%lld] = %.9g, the "
						 "interpreter %.9g", l.kernel, (long long)k, (long long)nn, n, tmpl,
						 (long long)(i / nn), (long long)(i % nn), (double)y[i], (double)ref[i]);
			host_kernel_free(&hk);
		}
		free(q);
		free(s);
		free(y);
		free(ref);
		case_free(&c);
	}
}

static void test_emu_i2s(void **state)
{
	(void)state;
	check_ternary(IR_DT_I2_S, 128, 32, 4, 100);
	check_ternary(IR_DT_I2_S, 640, 96, 4, 200);
	check_ternary(IR_DT_I2_S, 256, 320, 4, 300);
	check_ternary(IR_DT_I2_S, 384, 4160, 2, 400);
}

static void test_emu_tq(void **state)
{
	(void)state;
	check_ternary(IR_DT_TQ2_0, 256, 32, 4, 500);
	check_ternary(IR_DT_TQ2_0, 512, 320, 4, 600);
	check_ternary(IR_DT_TQ1_0, 256, 96, 4, 700);
	check_ternary(IR_DT_TQ1_0, 768, 4096, 1, 800);
}

/* When set, the part of the head kernel's name that tells which kernel it is. */
static const char *head_want;

/* The head: n rows, out rows (NULL: the plain matmul, all rows, in step or batch mode). */
static void check_head(IrDtype dt, int64_t k, int64_t v, int n, const int32_t *out, int n_out, bool pick,
		       uint64_t seed)
{
	Case c;
	case_head(&c, dt, k, v, n, pick, seed);
	int rows = pick ? n_out : n;
	float *ref;
	if (pick) {
		ref = reference(&c, n, out, n_out, v);
	} else {
		/* the logits are the matmul's output added to itself: halving is exact */
		ref = reference(&c, n, NULL, 0, v);
		for (int64_t i = 0; i < v * n; i++)
			ref[i] *= 0.5f;
	}
	float *y = malloc((size_t)((rows ? rows : 1) * v) * sizeof(float));
	memset(y, 0xff, (size_t)((rows ? rows : 1) * v) * sizeof(float));
	const IrNode *nd = &c.g->nodes[c.node];
	int32_t *outr = malloc((size_t)(n_out ? n_out : 1) * sizeof(int32_t));
	if (out)
		memcpy(outr, out, (size_t)n_out * sizeof(int32_t));
	Binding bd = {{nd->in[0], nd->in[1], nd->out[0]}, {c.x, c.w, y}, 3, y, outr};
	HostKernel hk;
	CuLaunch l;
	int tmpl = n == 1 ? 1 : MAX_BATCH;
	host_kernel(&c, tmpl, &hk, &l);
	if (head_want && !strstr(l.kernel, head_want))
		fail_msg("k=%lld v=%lld n=%d: the head kernel is %s, not a '%s' one", (long long)k, (long long)v, n,
			 l.kernel, head_want);
	run_launch(&l, hk.fn, &bd, n, n_out);
	double amax = 0.0;
	for (int64_t i = 0; i < v * rows; i++)
		amax = fmax(amax, fabs((double)ref[i]));
	double dmax = 0.0;
	for (int64_t i = 0; i < v * rows; i++)
		dmax = fmax(dmax, fabs((double)y[i] - (double)ref[i]));
	if (getenv("BN_TEST_VERBOSE"))
		print_message("%s k=%lld n=%d: max |y - ref| %.3g of max |ref| %.3g\n", l.kernel, (long long)k, n,
			      dmax, amax);
	for (int64_t i = 0; i < v * rows; i++)
		if (!(fabs((double)y[i] - (double)ref[i]) <= 1e-5 * amax))
			fail_msg("%s k=%lld n=%d: y[%lld][%lld] = %.9g, the interpreter %.9g (max |ref| %g)",
				 l.kernel, (long long)k, n, (long long)(i / v), (long long)(i % v), (double)y[i],
				 (double)ref[i], amax);
	/* rows past n_out are not written */
	host_kernel_free(&hk);
	free(outr);
	free(y);
	free(ref);
	case_free(&c);
}

static void test_emu_head(void **state)
{
	(void)state;
	static const IrDtype dts[3] = {IR_DT_F16, IR_DT_BF16, IR_DT_F32};
	static const int32_t out0[1] = {0}, out7[3] = {1, 4, 6}, out2[1] = {1};
	static const int32_t all[MAX_BATCH] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
	for (int i = 0; i < 3; i++) {
		uint64_t sd = 1000 * (uint64_t)(i + 1);
		check_head(dts[i], 128, 320, 1, out0, 1, true, sd + 1);
		check_head(dts[i], 128, 320, 1, out0, 0, true, sd + 2);
		check_head(dts[i], 640, 4099, 1, out0, 1, true, sd + 3);
		check_head(dts[i], 256, 320, 7, out7, 3, true, sd + 4);
		check_head(dts[i], 128, 96, 2, out2, 1, true, sd + 5);
		check_head(dts[i], 256, 4099, MAX_BATCH, all, MAX_BATCH, true, sd + 6);
		check_head(dts[i], 128, 320, 1, NULL, 0, false, sd + 7);
		check_head(dts[i], 256, 96, 7, NULL, 0, false, sd + 8);
	}
}

/* The same cases with the kernels in MSL (skipped without a clang++ for msl_host.h). */
static bool msl_start(void)
{
	if (!msl_available()) {
		printf("skipped: no clang++ found at configure time: the MSL kernels are not compiled here\n");
		skip();
		return false;
	}
	use_msl = true;
	return true;
}

static void test_msl_i2s(void **state)
{
	(void)state;
	if (!msl_start())
		return;
	check_ternary(IR_DT_I2_S, 640, 96, 4, 200);
	use_msl = false;
}

/* The batch kernel of an I2_S matmul of k x nn on n tokens in MSL (msl) or the host flavour:
 * its name ends in want ("_sgmm": the SIMD-group matrix GEMM, "_gemm": dp4a) and its output
 * is the interpreter's, bit for bit. */
static void check_i2s_batch(int64_t k, int64_t nn, int n, bool msl, const char *want, uint64_t seed)
{
	Case c;
	case_ternary(&c, IR_DT_I2_S, k, nn, n, seed);
	float *ref = reference(&c, n, NULL, 0, nn);
	int8_t *q = aligned_alloc(64, (size_t)(k * n + 63) / 64 * 64);
	float *s = malloc((size_t)n * sizeof(float));
	quant_rows(c.x, k, n, false, q, s);
	float *y = malloc((size_t)(nn * n) * sizeof(float));
	const IrNode *nd = &c.g->nodes[c.node];
	Binding bd = {{nd->in[0], nd->in[1], nd->in[2], nd->out[0]}, {q, s, c.w, y}, 4, NULL, NULL};
	use_msl = msl;
	HostKernel hk;
	CuLaunch l;
	host_kernel(&c, MAX_BATCH, &hk, &l);
	use_msl = false;
	size_t ln = strlen(l.kernel), wn = strlen(want);
	if (ln < wn || strcmp(l.kernel + ln - wn, want) != 0)
		fail_msg("k=%lld n_rows=%lld: the batch kernel is %s, not a '%s' one", (long long)k,
			 (long long)nn, l.kernel, want);
	memset(y, 0xff, (size_t)(nn * n) * sizeof(float));
	run_launch(&l, hk.fn, &bd, n, n);
	for (int64_t i = 0; i < nn * n; i++)
		if (memcmp(&y[i], &ref[i], sizeof(float)) != 0)
			fail_msg("%s k=%lld n_rows=%lld n=%d: y[%lld][%lld] = %.9g, the interpreter %.9g", l.kernel,
				 (long long)k, (long long)nn, n, (long long)(i / nn), (long long)(i % nn),
				 (double)y[i], (double)ref[i]);
	host_kernel_free(&hk);
	free(q);
	free(s);
	free(y);
	free(ref);
	case_free(&c);
}

/* The Metal batch kernel for I2_S (simdgroup_matrix, codegen/cuda/cg_cuda_k_mat.c) on shapes
 * whose rows and tokens are not multiples of its 64 x 16 tile, 2..128 tokens, K from one
 * block to thousands: the interpreter's bits, as the dp4a kernel (run on the same cases)
 * gives them. Past the K where its float sums could round (131071), the dp4a kernel. */
static void test_msl_i2s_sgmm(void **state)
{
	(void)state;
	if (!msl_available()) {
		printf("skipped: no clang++ found at configure time: the MSL kernels are not compiled here\n");
		skip();
		return;
	}
	static const struct {
		int64_t k, nn;
		int n;
	} cs[] = {{128, 32, 2}, {128, 8, 3}, {256, 72, 16}, {640, 96, 17}, {384, 130, 33},
		  {1280, 64, 5}, {2560, 200, 24}, {4096, 40, 128}, {6912, 24, 9}, {768, 96, 127}};
	for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
		check_i2s_batch(cs[i].k, cs[i].nn, cs[i].n, true, "_sgmm", 900 + (uint64_t)i);
		check_i2s_batch(cs[i].k, cs[i].nn, cs[i].n, false, "_gemm", 900 + (uint64_t)i);
	}
	/* the largest K it takes, and the next one (the dp4a kernel in MSL) */
	check_i2s_batch(130944, 8, 3, true, "_sgmm", 950);
	check_i2s_batch(131072, 8, 2, true, "_gemm", 951);
}

static void test_msl_tq(void **state)
{
	(void)state;
	if (!msl_start())
		return;
	check_ternary(IR_DT_TQ2_0, 256, 32, 2, 500);
	check_ternary(IR_DT_TQ1_0, 256, 96, 2, 700);
	use_msl = false;
}

static void test_msl_head(void **state)
{
	(void)state;
	if (!msl_start())
		return;
	static const int32_t out0[1] = {0}, out7[3] = {1, 4, 6}, last[1] = {16};
	static const int32_t all[MAX_BATCH] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
	check_head(IR_DT_F16, 256, 320, 7, out7, 3, true, 1004);
	check_head(IR_DT_BF16, 640, 4099, 1, out0, 1, true, 2003);
	check_head(IR_DT_F32, 256, 96, 7, NULL, 0, false, 3008);
	/* the F16 batches: the SIMD-group matrix GEMM where K is a multiple of 64 */
	head_want = "_sgmm";
	check_head(IR_DT_F16, 640, 4099, MAX_BATCH, all, MAX_BATCH, true, 1010);
	check_head(IR_DT_F16, 2560, 200, 17, last, 1, true, 1011);
	check_head(IR_DT_F16, 128, 96, 7, NULL, 0, false, 1012);
	check_head(IR_DT_F16, 1024, 72, 2, NULL, 0, false, 1013);
	head_want = "_gemm";
	check_head(IR_DT_F16, 160, 96, 3, NULL, 0, false, 1014);
	head_want = NULL;
	use_msl = false;
}

#else

static void no_emu(void)
{
	print_message("skipped: the SIMT emulator (tests/simt/simt_emu.c) is not in this tree, so the "
		      "host flavour of the kernels cannot run\n");
	skip();
}

static void test_emu_i2s(void **state)
{
	(void)state;
	no_emu();
}

static void test_emu_tq(void **state)
{
	(void)state;
	no_emu();
}

static void test_emu_head(void **state)
{
	(void)state;
	no_emu();
}

static void test_msl_i2s(void **state)
{
	(void)state;
	no_emu();
}

static void test_msl_tq(void **state)
{
	(void)state;
	no_emu();
}

static void test_msl_i2s_sgmm(void **state)
{
	(void)state;
	no_emu();
}

static void test_msl_head(void **state)
{
	(void)state;
	no_emu();
}

#endif

/* ---- what the op functions refuse ------------------------------------------------------------- */

static void test_refused(void **state)
{
	(void)state;
	Simt *S = simt_new(SIMT_HOST, "mat");
	CuLaunch L[MAX_LAUNCH];
	int nl;
	BnErr e = {0};
	/* Q8_0 head */
	Case c;
	case_head(&c, IR_DT_Q8_0, 128, 64, 1, true, 1);
	assert_int_equal(build_node(S, &c, 1, L, &nl, &e), BN_EUNSUPPORTED);
	tu_expect_has(e.msg, "output");
	tu_expect_has(e.msg, "q8_0");
	case_free(&c);
	/* an I2_S weight repacked for CPUs */
	case_ternary(&c, IR_DT_I2_S, 128, 32, 1, 2);
	c.g->values[c.g->nodes[c.node].in[2]].layout = "i2s_x16";
	e = (BnErr){0};
	assert_int_equal(build_node(S, &c, 1, L, &nl, &e), BN_EUNSUPPORTED);
	tu_expect_has(e.msg, "blk.0.ffn_up");
	tu_expect_has(e.msg, "i2s_x16");
	case_free(&c);
	/* a full launch list */
	case_ternary(&c, IR_DT_I2_S, 128, 32, 1, 2);
	CuCtx ctx = {.S = S, .g = c.g, .cc = 80, .max_batch = MAX_BATCH, .tmpl = 1, .addr = test_addr};
	nl = 0;
	e = (BnErr){0};
	assert_int_not_equal(cu_op_ternary_matmul(&ctx, &c.g->nodes[c.node], L, &nl, 0, &e), 0);
	tu_expect_has(e.msg, "blk.0.ffn_up");
	case_free(&c);
	simt_free(S);
}

static int setup(void **state)
{
	(void)state;
	cg_cuda_probe(&cuda_info);
	return 0;
}

int main(void)
{
	/* BN_TEST_FILTER: run only the tests whose names match (cmocka's pattern) */
	if (getenv("BN_TEST_FILTER"))
		cmocka_set_test_filter(getenv("BN_TEST_FILTER"));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ptx_i2s),	     cmocka_unit_test(test_ptx_tq),
		cmocka_unit_test(test_ptx_head),     cmocka_unit_test(test_ptx_rounding),
		cmocka_unit_test(test_ptx_2b4t),     cmocka_unit_test(test_emu_i2s),
		cmocka_unit_test(test_emu_tq),	     cmocka_unit_test(test_emu_head),
		cmocka_unit_test(test_refused),	     cmocka_unit_test(test_msl_i2s),
		cmocka_unit_test(test_msl_tq),	     cmocka_unit_test(test_msl_head),
		cmocka_unit_test(test_msl_i2s_sgmm),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
