/* cg_cuda_emit.c - the CUDA emitter: every node's kernels into one LLVM module (PTX for the
 * target, and on request the same kernels for this host), and model.c, the host side: the
 * model ABI implemented with launches through the driver API (rt_cuda.h). The payload,
 * scratch and KV plans are the CPU backend's (cg_plan.c, ir_kv.c), so the device memory
 * holds the same bytes at the same offsets. */
#include "cg_cuda.h"

#include "rt_batch.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_OFF UINT64_MAX
enum { MAX_LAUNCH = 16 };

typedef struct {
	int64_t half;       /* n_rot / 2 */
	float theta_scale;  /* powf(base, -2 / n_rot) */
	IrId ff;            /* frequency divisors (a constant), IR_NONE: none */
	uint64_t off;       /* bytes per position before this table */
} RopeTab;

typedef struct {
	CuCtx c;
	const CgOpts *o;
	const CgGpuApi *api;
	uint64_t *woff, *soff, *tmp;
	IrKvPlan kv;
	char ab[8][96];     /* addr() results, round robin */
	int ab_i;
	RopeTab rope[16];
	int n_rope;
	uint64_t rope_bytes; /* per position, all tables */
	char (*kname)[128];  /* kernel names in first-use order */
	int n_kname, cap_kname;
	int *check_layer;   /* per check index: the layer (-1: the embedding) */
	int n_check, cap_check;
	BnErr *e;
} CuEm;

static const char *em_addr(CuCtx *c, IrId id)
{
	CuEm *m = c->ud;
	char *b = m->ab[m->ab_i++ % 8];
	const IrValue *v = &c->g->values[id];
	if (id == c->g->tokens)
		snprintf(b, 96, "TOK");
	else if (id == c->g->logits)
		snprintf(b, 96, "LOG");
	else if (v->kind == IR_VAL_CONST && m->woff[id] != NO_OFF)
		snprintf(b, 96, "W + %" PRIu64, m->woff[id]);
	else if (m->soff[id] != NO_OFF)
		snprintf(b, 96, "S + %" PRIu64, m->soff[id]);
	else
		snprintf(b, 96, "0 /* %s: nowhere */", v->name ? v->name : "?");
	return b;
}

static uint64_t em_rope(CuCtx *c, const IrNode *nd)
{
	CuEm *m = c->ud;
	int64_t row = ir_value_row(&c->g->values[nd->in[0]]);
	int64_t hd = ir_attr_int(nd, "head_dim", row);
	int64_t n_rot = ir_attr_int(nd, "n_rot", hd);
	float base = (float)ir_attr_float(nd, "freq_base", 10000.0);
	float ts = powf(base, -2.0f / (float)n_rot);
	IrId ff = nd->n_in > 1 ? nd->in[1] : IR_NONE;
	for (int i = 0; i < m->n_rope; i++)
		if (m->rope[i].half == n_rot / 2 && m->rope[i].theta_scale == ts && m->rope[i].ff == ff)
			return m->rope[i].off;
	BN_ASSERT(m->n_rope < 16);
	RopeTab *t = &m->rope[m->n_rope++];
	*t = (RopeTab){n_rot / 2, ts, ff, m->rope_bytes};
	m->rope_bytes += (uint64_t)(n_rot / 2) * 8;
	return t->off;
}

static int kname_index(CuEm *m, const char *name)
{
	for (int i = 0; i < m->n_kname; i++)
		if (strcmp(m->kname[i], name) == 0)
			return i;
	if (m->n_kname == m->cap_kname) {
		int cap = m->cap_kname ? 2 * m->cap_kname : 64;
		void *p = realloc(m->kname, (size_t)cap * sizeof *m->kname);
		if (!p)
			return -1;
		m->kname = p;
		m->cap_kname = cap;
	}
	size_t len = strnlen(name, sizeof m->kname[0] - 1);
	memcpy(m->kname[m->n_kname], name, len);
	m->kname[m->n_kname][len] = 0;
	return m->n_kname++;
}

static CuOpFn op_fn(IrOp op)
{
	switch (op) {
	case IR_OP_EMBED: return cu_op_embed;
	case IR_OP_RMSNORM: return cu_op_rmsnorm;
	case IR_OP_QUANT_ACT: return cu_op_quant_act;
	case IR_OP_TERNARY_MATMUL: return cu_op_ternary_matmul;
	case IR_OP_MATMUL: return cu_op_matmul;
	case IR_OP_ROPE: return cu_op_rope;
	case IR_OP_ATTENTION: return cu_op_attention;
	case IR_OP_RELU2_GLU:
	case IR_OP_SILU_GLU: return cu_op_glu;
	case IR_OP_ADD:
	case IR_OP_MUL: return cu_op_binary;
	case IR_OP_RMSNORM_QUANT: return cu_op_rmsnorm_quant;
	case IR_OP_ADD_RMSNORM_QUANT: return cu_op_add_rmsnorm_quant;
	default: return NULL;
	}
}

/* The residual stream (as the CPU backend checks it): the embedding rows and every add of
 * two activations of n_embd, plain or fused. */
static bool residual(const CuEm *m, const IrNode *n)
{
	const IrGraph *g = m->c.g;
	const IrValue *y = &g->values[n->out[0]];
	bool res = n->op == IR_OP_EMBED || n->op == IR_OP_ADD_RMSNORM_QUANT ||
		   (n->op == IR_OP_ADD && ir_value_has_t(&g->values[n->in[1]]));
	return res && g->hp.n_embd > 0 && ir_value_has_t(y) && ir_value_row(y) == g->hp.n_embd &&
	       m->soff[n->out[0]] != NO_OFF;
}

static const char *c_type(SimtParam t)
{
	switch (t) {
	case SIMT_P_PTR: return "RtDevPtr";
	case SIMT_P_I32: return "int32_t";
	case SIMT_P_I64: return "int64_t";
	case SIMT_P_F32: return "float";
	}
	return "int";
}

static void put_launch(CgBuf *b, const CuLaunch *l, int k)
{
	cg_printf(b, "\t{\n");
	for (int i = 0; i < l->n_args; i++)
		cg_printf(b, "\t\t%s a%d = %s;\n", c_type(l->type[i]), i, l->arg[i]);
	cg_printf(b, "\t\tvoid *p[] = {");
	for (int i = 0; i < l->n_args; i++)
		cg_printf(b, "%s&a%d", i ? ", " : "", i);
	cg_printf(b, "};\n"
		     "\t\tif (launch(d, %d /* %s */, %s, %s, %s, %u, %s, p))\n"
		     "\t\t\treturn RT_FORWARD_DEVICE;\n"
		     "\t}\n",
		  k, l->kernel, l->grid[0], l->grid[1], l->grid[2], l->block, l->smem);
}

/* Every node's launches for template nt into b (NULL: kernels only, the host flavour). */
static int walk(CuEm *m, CgBuf *b, int nt)
{
	const IrGraph *g = m->c.g;
	m->c.tmpl = nt;
	int check = 0;
	int64_t layer = -1;
	for (int ni = 0; ni < g->n_nodes; ni++) {
		const IrNode *n = &g->nodes[ni];
		CuOpFn fn = op_fn(n->op);
		if (!fn)
			return bn_err(m->e, BN_EUNSUPPORTED, "codegen (%s): node '%s': op %s has no "
				      "GPU kernel", m->api->backend, n->name, ir_op_name(n->op));
		if (n->op == IR_OP_ATTENTION)
			layer = ir_attr_int(n, "layer", layer);
		CuLaunch L[MAX_LAUNCH];
		int nl = 0;
		if (fn(&m->c, n, L, &nl, MAX_LAUNCH, m->e))
			return m->e->code;
		if (residual(m, n)) {
			if (cu_op_check(&m->c, n->out[0], check, L, &nl, MAX_LAUNCH, m->e))
				return m->e->code;
			if (b && nt == 1) {
				if (m->n_check == m->cap_check) {
					int cap = m->cap_check ? 2 * m->cap_check : 64;
					int *p = realloc(m->check_layer, (size_t)cap * sizeof *p);
					if (!p)
						return bn_err(m->e, BN_ENOMEM, "codegen: out of memory");
					m->check_layer = p;
					m->cap_check = cap;
				}
				m->check_layer[m->n_check++] = n->op == IR_OP_EMBED ? -1 : (int)layer;
			}
			check++;
		}
		if (!b)
			continue;
		cg_printf(b, "\t/* %d: %s (%s) */\n", ni, n->name ? n->name : "", ir_op_name(n->op));
		for (int i = 0; i < nl; i++) {
			int k = kname_index(m, L[i].kernel);
			if (k < 0)
				return bn_err(m->e, BN_ENOMEM, "codegen: out of memory");
			put_launch(b, &L[i], k);
		}
	}
	return 0;
}

static void put_cstr(CgBuf *b, const char *s, size_t n)
{
	cg_put_cstr(b, s, n);
}

static void put_hexf(CgBuf *b, float f)
{
	cg_printf(b, "%af", (double)f);
}

/* ---- model.c --------------------------------------------------------------------- */

static void put_head(CuEm *m, CgBuf *b)
{
	const IrGraph *g = m->c.g;
	cg_printf(b, "/* model.c - generated by bitnetc %s from %s (%s), target %s. Do not edit.\n"
		     " * %s Every shape, stride\n"
		     " * and offset is a constant. */\n"
		     "#define _POSIX_C_SOURCE 200809L /* clock_gettime */\n"
		     "#include \"rt_model.h\"\n"
		     "#include \"%s\"\n\n"
		     "#include <limits.h>\n"
		     "#include <stdio.h>\n"
		     "#include <time.h>\n"
		     "#include <unistd.h>\n"
		     "#include <math.h>\n"
		     "#include <stdint.h>\n"
		     "#include <stdlib.h>\n"
		     "#include <string.h>\n\n"
		     "%s\n",
		  BITNETC_VERSION, g->name ? g->name : "?", g->arch ? g->arch : "?", m->o->target,
		  m->api->about, m->api->header, m->api->head);
	cg_printf(b, "#define MAX_BATCH %d\n"
		     "#define N_VOCAB %" PRId64 "\n"
		     "#define MIN_CC %d /* %s */\n"
		     "#define KV_ELEMS %" PRId64 " /* f16 K and V elements per position of a sequence, all layers */\n"
		     "#define ROPE_BYTES %" PRIu64 " /* rope tables per position */\n"
		     "#define N_KERNELS %d\n"
		     "/* the step attention's scratch (SCORES) for n_ctx positions */\n"
		     "#define SCORES_BYTES(n_ctx) ((uint64_t)(n_ctx) * %" PRIu64 "u + %" PRIu64 "u)\n\n",
		  m->o->max_batch, g->hp.n_vocab, m->c.cc, m->api->cc_about, m->kv.elems, m->rope_bytes, m->n_kname,
		  cu_attention_scores_bytes(g, 1) - cu_attention_scores_bytes(g, 0),
		  cu_attention_scores_bytes(g, 0) ? cu_attention_scores_bytes(g, 0) : 64);
	cg_printf(b, "static const char *const kernel_names[N_KERNELS] = {\n");
	for (int i = 0; i < m->n_kname; i++)
		cg_printf(b, "\t\"%s\",\n", m->kname[i]);
	cg_printf(b, "};\n\n");
	cg_printf(b, "/* which layer each residual check (FLAG's high half) belongs to; -1: the embedding */\n"
		     "static const int check_layer[%d] = {", m->n_check ? m->n_check : 1);
	for (int i = 0; i < m->n_check; i++)
		cg_printf(b, "%s%d", i ? ", " : "", m->check_layer[i]);
	cg_printf(b, "%s};\n\n", m->n_check ? "" : "0");
	cg_printf(b,
		  "/* per model: the device, the module, the weights */\n"
		  "typedef struct {\n"
		  "\tGpuDev *cu;\n"
		  "\tvoid *fn[N_KERNELS];\n"
		  "\tRtDevPtr w;\n"
		  "} Inst;\n\n"
		  "/* per context: activations, KV cache, rope tables, the batch, the logits */\n"
		  "typedef struct {\n"
		  "\tInst *inst;\n"
		  "\tRtDevPtr s, kv, rope, batch, log, scores;\n"
		  "\tint32_t *stage; /* host copy of the batch: tok, pos, seq, out (MAX_BATCH each), flag */\n"
		  "\tvoid *step;     /* the one-token forward with its logits row, captured once as a graph */\n"
		  "\tint no_graph;   /* the driver cannot capture: launch one by one */\n"
		  "} Dev;\n\n"
		  "static double now_s(void)\n"
		  "{\n"
		  "\tstruct timespec ts;\n"
		  "\tclock_gettime(CLOCK_MONOTONIC, &ts);\n"
		  "\treturn (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;\n"
		  "}\n\n"
		  "/* the weights' copy to the device, on a terminal once it takes over a second */\n"
		  "static void progress(uint64_t done, uint64_t total, void *ud)\n"
		  "{\n"
		  "\tdouble t = now_s() - *(double *)ud;\n"
		  "\tif (t < 1.0)\n"
		  "\t\treturn;\n"
		  "\tfprintf(stderr, \"\\rcopying the weights to the GPU: %%.0f / %%.0f MiB (%%.1f s)%%s\",\n"
		  "\t\t(double)done / 1048576.0, (double)total / 1048576.0, t, done == total ? \"\\n\" : \"\");\n"
		  "}\n\n"
		  "static int launch(Dev *d, int k, int64_t gx, int64_t gy, int64_t gz, unsigned block, int64_t smem, void **p)\n"
		  "{\n"
		  "\tif (gx <= 0 || gy <= 0 || gz <= 0)\n"
		  "\t\treturn 0; /* nothing to do (no logits wanted) */\n"
		  "\treturn GPU(launch)(d->inst->cu, d->inst->fn[k], (unsigned)gx, (unsigned)gy, (unsigned)gz, block, (unsigned)smem, p);\n"
		  "}\n\n"
		  "%s\n", m->api->helpers);
}

static void put_forward_head(CgBuf *b, int nt, int lo)
{
	if (nt == 1)
		cg_printf(b, "/* one token: the reference's step mode (f16 roundings of the softmax\n"
			     " * weights and of the head input) */\n");
	else
		cg_printf(b, "/* %d..%d rows in one call (batch mode) */\n", lo, nt);
	cg_printf(b, "static int forward_t%d(RtState *st, Dev *d, int n, int n_out)\n"
		     "{\n"
		     "\tconst int64_t n_ctx = st->n_ctx;\n"
		     "\tconst int64_t kvs = n_ctx * (st->n_seq > 0 ? st->n_seq : 1);\n"
		     "\tconst RtDevPtr W = d->inst->w, S = d->s, KV = d->kv, ROPE = d->rope, LOG = d->log;\n"
		     "\tconst RtDevPtr SCORES = d->scores;\n"
		     "\tconst RtDevPtr TOK = d->batch, POS = TOK + 4 * MAX_BATCH, SEQ = POS + 4 * MAX_BATCH;\n"
		     "\tconst RtDevPtr OUTR = SEQ + 4 * MAX_BATCH, FLAG = OUTR + 4 * MAX_BATCH;\n"
		     "\t(void)n_ctx, (void)kvs, (void)W, (void)S, (void)KV, (void)ROPE, (void)LOG;\n"
		     "\t(void)TOK, (void)POS, (void)SEQ, (void)OUTR, (void)FLAG, (void)n, (void)n_out;\n"
		     "\t(void)SCORES;\n",
		  nt);
}

static void put_rest(CuEm *m, CgBuf *b, const int *bs, int n_bs, const CgOutput *out)
{
	const IrGraph *g = m->c.g;
	const CgOpts *o = m->o;
	/* the rope tables */
	cg_printf(b, "/* cos and sin of every position's angles, as the interpreter computes them */\n"
		     "static void rope_fill(float *t, int64_t n_ctx, const uint8_t *w)\n"
		     "{\n"
		     "\t(void)w;\n");
	for (int i = 0; i < m->n_rope; i++) {
		const RopeTab *r = &m->rope[i];
		cg_printf(b, "\t{\n"
			     "\t\tfloat *tab = t + n_ctx * %" PRIu64 " / 4;\n", r->off);
		if (r->ff != IR_NONE)
			cg_printf(b, "\t\tconst float *ff = (const float *)(w + %" PRIu64 ");\n", m->woff[r->ff]);
		cg_printf(b, "\t\tfor (int64_t p = 0; p < n_ctx; p++) {\n"
			     "\t\t\tfloat theta = (float)p;\n"
			     "\t\t\tfor (int64_t i = 0; i < %" PRId64 "; i++) {\n"
			     "\t\t\t\tfloat th = %s;\n"
			     "\t\t\t\ttab[(p * %" PRId64 " + i) * 2] = cosf(th);\n"
			     "\t\t\t\ttab[(p * %" PRId64 " + i) * 2 + 1] = sinf(th);\n"
			     "\t\t\t\ttheta *= ",
			  r->half, r->ff != IR_NONE ? "theta / ff[i]" : "theta", r->half, r->half);
		put_hexf(b, r->theta_scale);
		cg_printf(b, ";\n\t\t\t}\n\t\t}\n\t}\n");
	}
	cg_printf(b, "}\n\n");

	cg_printf(b,
		  "static uint64_t kv_bytes(int64_t n_ctx, int32_t n_seq)\n"
		  "{\n"
		  "\tuint64_t ns = n_seq > 0 ? (uint64_t)n_seq : 1;\n"
		  "\treturn (uint64_t)n_ctx * ns * KV_ELEMS * 2;\n"
		  "}\n\n"
		  "static int init(const uint8_t *w, uint64_t w_bytes, void **inst, char *err, size_t err_len)\n"
		  "{\n"
		  "\tInst *in = calloc(1, sizeof *in);\n"
		  "\tif (!in)\n"
		  "\t\treturn -1;\n"
		  "\tint rc = GPU(open)(MIN_CC, w_bytes, &in->cu, err, err_len);\n"
		  "\tif (rc) {\n"
		  "\t\tfree(in);\n"
		  "\t\treturn rc == GPU_ENODEV ? RT_INIT_DEVICE : -1;\n"
		  "\t}\n"
		  "\tif (kernels_load(in->cu, err, err_len))\n"
		  "\t\tgoto fail;\n"
		  "\tfor (int i = 0; i < N_KERNELS; i++)\n"
		  "\t\tif (GPU(func)(in->cu, kernel_names[i], &in->fn[i], err, err_len))\n"
		  "\t\t\tgoto fail;\n"
		  "\tif (weights_to_device(in->cu, w, w_bytes, &in->w, err, err_len))\n"
		  "\t\tgoto fail;\n"
		  "\t*inst = in;\n"
		  "\treturn 0;\n"
		  "fail:\n"
		  "\tif (in->w)\n"
		  "\t\tGPU(free)(in->cu, in->w);\n"
		  "\tGPU(close)(in->cu);\n"
		  "\tfree(in);\n"
		  "\treturn -1;\n"
		  "}\n\n"
		  "static void fini(void *p)\n"
		  "{\n"
		  "\tInst *in = p;\n"
		  "\tif (!in)\n"
		  "\t\treturn;\n"
		  "\tGPU(free)(in->cu, in->w);\n"
		  "\tGPU(close)(in->cu);\n"
		  "\tfree(in);\n"
		  "}\n\n"
		  "static void state_fini(RtState *st)\n"
		  "{\n"
		  "\tDev *d = st->dev;\n"
		  "\tif (!d)\n"
		  "\t\treturn;\n"
		  "\tGpuDev *cu = d->inst->cu;\n"
		  "\tGPU(graph_free)(cu, d->step);\n"
		  "\tRtDevPtr bufs[6] = {d->s, d->kv, d->rope, d->batch, d->log, d->scores};\n"
		  "\tfor (int i = 0; i < 6; i++)\n"
		  "\t\tif (bufs[i])\n"
		  "\t\t\tGPU(free)(cu, bufs[i]);\n"
		  "\tfree(d->stage);\n"
		  "\tfree(d);\n"
		  "\tst->dev = NULL;\n"
		  "}\n\n"
		  "static int state_init(RtState *st, char *err, size_t err_len)\n"
		  "{\n"
		  "\tDev *d = calloc(1, sizeof *d);\n"
		  "\tif (!d)\n"
		  "\t\treturn -1;\n"
		  "\td->inst = st->inst;\n"
		  "\tst->dev = d;\n"
		  "\tGpuDev *cu = d->inst->cu;\n"
		  "\tuint64_t rope_bytes = (uint64_t)st->n_ctx * ROPE_BYTES;\n"
		  "\tfloat *rope = malloc(rope_bytes ? rope_bytes : 1);\n"
		  "\td->stage = malloc((4 * MAX_BATCH + 1) * sizeof(int32_t));\n"
		  "\tif (!rope || !d->stage ||\n"
		  "\t    GPU(alloc)(cu, %" PRIu64 "u ? %" PRIu64 "u : 64, &d->s, err, err_len) ||\n"
		  "\t    GPU(alloc)(cu, kv_bytes(st->n_ctx, st->n_seq), &d->kv, err, err_len) ||\n"
		  "\t    GPU(alloc)(cu, rope_bytes ? rope_bytes : 64, &d->rope, err, err_len) ||\n"
		  "\t    GPU(alloc)(cu, (4 * MAX_BATCH + 1) * sizeof(int32_t), &d->batch, err, err_len) ||\n"
		  "\t    GPU(alloc)(cu, (uint64_t)MAX_BATCH * N_VOCAB * sizeof(float), &d->log, err, err_len) ||\n"
		  "\t    GPU(alloc)(cu, SCORES_BYTES(st->n_ctx), &d->scores, err, err_len)) {\n"
		  "\t\tfree(rope);\n"
		  "\t\tstate_fini(st);\n"
		  "\t\treturn -1;\n"
		  "\t}\n"
		  "\trope_fill(rope, st->n_ctx, st->w);\n"
		  "\tint rc = rope_bytes ? GPU(upload)(cu, d->rope, rope, rope_bytes, NULL, NULL, err, err_len) : 0;\n"
		  "\tfree(rope);\n"
		  "\tif (rc) {\n"
		  "\t\tstate_fini(st);\n"
		  "\t\treturn -1;\n"
		  "\t}\n"
		  "\treturn 0;\n"
		  "}\n\n",
		  out->scratch_bytes, out->scratch_bytes);
	/* decode */
	cg_printf(b,
		  "/* Whether the batch is well formed (else RT_FORWARD_BATCH, nothing computed). */\n"
		  "static int batch_ok(const RtState *st, const RtBatch *b)\n"
		  "{\n"
		  "\tif (!st->dev || !b || b->n < 1 || b->n > MAX_BATCH || !b->token || !b->pos)\n"
		  "\t\treturn 0;\n"
		  "\tconst int n = b->n;\n"
		  "\tconst int64_t n_seq = st->n_seq > 0 ? st->n_seq : 1;\n"
		  "\tfor (int t = 0; t < n; t++)\n"
		  "\t\tif (b->pos[t] < 0 || b->pos[t] >= st->n_ctx || (b->seq && (b->seq[t] < 0 || b->seq[t] >= n_seq)) ||\n"
		  "\t\t    b->token[t] < 0 || b->token[t] >= N_VOCAB)\n"
		  "\t\t\treturn 0;\n"
		  "\tif (b->out && (b->n_out < 0 || b->n_out > n))\n"
		  "\t\treturn 0;\n"
		  "\tfor (int r = 0; b->out && r < b->n_out; r++)\n"
		  "\t\tif (b->out[r] < (r ? b->out[r - 1] + 1 : 0) || b->out[r] >= n)\n"
		  "\t\t\treturn 0;\n"
		  "\treturn 1;\n"
		  "}\n\n"
		  "/* The rows of one well-formed call, all in one mode, in the smallest template that\n"
		  " * holds them; batch: a call of one row in the batch mode (a template of several). */\n"
		  "static int decode_call(RtState *st, const RtBatch *b, float *logits, int batch)\n"
		  "{\n"
		  "\tDev *d = st->dev;\n"
		  "\tconst int n = b->n;\n"
		  "\tint n_out = !logits ? 0 : b->out ? b->n_out : n;\n"
		  "\tint32_t *sg = d->stage;\n"
		  "\tfor (int t = 0; t < n; t++) {\n"
		  "\t\tsg[t] = b->token[t];\n"
		  "\t\tsg[MAX_BATCH + t] = b->pos[t];\n"
		  "\t\tsg[2 * MAX_BATCH + t] = b->seq ? b->seq[t] : 0;\n"
		  "\t}\n"
		  "\tfor (int r = 0; r < n_out; r++)\n"
		  "\t\tsg[3 * MAX_BATCH + r] = b->out ? b->out[r] : r;\n"
		  "\tsg[4 * MAX_BATCH] = INT_MAX;\n"
		  "\tGpuDev *cu = d->inst->cu;\n"
		  "\tif (GPU(upload)(cu, d->batch, sg, (4 * MAX_BATCH + 1) * sizeof(int32_t), NULL, NULL, NULL, 0))\n"
		  "\t\treturn RT_FORWARD_DEVICE;\n"
		  "\tint rc;\n");
	/* a step with its logits row (the decode loop) replays the captured graph: its
	 * launches read the token, position and sequence from device memory */
	cg_printf(b, "\t(void)batch;\n"
		     "\tif (n == 1 && n_out == 1 && !batch && !d->no_graph) {\n"
		     "\t\tif (!d->step) {\n"
		     "\t\t\tif (GPU(capture_begin)(cu)) {\n"
		     "\t\t\t\td->no_graph = 1;\n"
		     "\t\t\t\trc = forward_t1(st, d, n, n_out);\n"
		     "\t\t\t} else {\n"
		     "\t\t\t\trc = forward_t1(st, d, n, n_out);\n"
		     "\t\t\t\tif (GPU(capture_end)(cu, &d->step) || rc) {\n"
		     "\t\t\t\t\tGPU(graph_free)(cu, d->step);\n"
		     "\t\t\t\t\td->step = NULL;\n"
		     "\t\t\t\t\td->no_graph = 1;\n"
		     "\t\t\t\t\trc = forward_t1(st, d, n, n_out);\n"
		     "\t\t\t\t}\n"
		     "\t\t\t}\n"
		     "\t\t}\n"
		     "\t\tif (d->step)\n"
		     "\t\t\trc = GPU(graph_launch)(cu, d->step) ? RT_FORWARD_DEVICE : 0;\n"
		     "\t} else if (n == 1%s)\n"
		     "\t\trc = forward_t1(st, d, n, n_out);\n",
		  n_bs > 1 ? " && !batch" : "");
	for (int i = 1; i < n_bs; i++) {
		if (i < n_bs - 1)
			cg_printf(b, "\telse if (n <= %d)\n", bs[i]);
		else
			cg_printf(b, "\telse\n");
		cg_printf(b, "\t\trc = forward_t%d(st, d, n, n_out);\n", bs[i]);
	}
	cg_printf(b,
		  "\tif (rc)\n"
		  "\t\treturn rc;\n"
		  "\tif (GPU(download)(cu, &sg[4 * MAX_BATCH], d->batch + 16 * MAX_BATCH, sizeof(int32_t), NULL, 0))\n"
		  "\t\treturn RT_FORWARD_DEVICE;\n"
		  "\tif (sg[4 * MAX_BATCH] != INT_MAX) {\n"
		  "\t\tint key = sg[4 * MAX_BATCH];\n"
		  "\t\tint c = key >> 16;\n"
		  "\t\tst->bad_token = key & 0xffff;\n"
		  "\t\tst->bad_layer = c >= 0 && c < (int)(sizeof check_layer / sizeof check_layer[0]) ? check_layer[c] : -1;\n"
		  "\t\treturn RT_FORWARD_NONFINITE;\n"
		  "\t}\n"
		  "\tif (n_out && GPU(download)(cu, logits, d->log, (uint64_t)n_out * N_VOCAB * sizeof(float), NULL, 0))\n"
		  "\t\treturn RT_FORWARD_DEVICE;\n"
		  "\treturn 0;\n"
		  "}\n\n"
		  "/* A row's mode is b->step's (NULL: the step mode iff the call has one row); the\n"
		  " * templates of several rows compute the batch mode, the one-row template the step\n"
		  " * mode. A call of both runs as calls of one mode each, in row order (a row attends\n"
		  " * to the rows of its sequence before it, which the calls before store): each\n"
		  " * step-mode row a one-row call, each run of batch-mode rows a call of a template\n"
		  " * of several, so every row has the bits of its mode's call. */\n"
		  "static int decode(RtState *st, const RtBatch *b, float *logits)\n"
		  "{\n"
		  "\tif (!batch_ok(st, b))\n"
		  "\t\treturn RT_FORWARD_BATCH;\n"
		  "\tconst int n = b->n;\n"
		  "\tint mixed = 0;\n"
		  "\tfor (int t = 0; b->step && t < n; t++)\n"
		  "\t\tmixed |= (b->step[t] != 0) != (n == 1);\n"
		  "\tif (!mixed)\n"
		  "\t\treturn decode_call(st, b, logits, 0);\n"
		  "\tint32_t out[MAX_BATCH];\n"
		  "\tint done = 0; /* logits rows written */\n"
		  "\tfor (int lo = 0, hi; lo < n; lo = hi) {\n"
		  "\t\tint step = b->step[lo] != 0;\n"
		  "\t\tfor (hi = lo + 1; !step && hi < n && !b->step[hi]; hi++)\n"
		  "\t\t\t;\n"
		  "\t\tint n_out = 0;\n"
		  "\t\tfor (int r = 0; b->out && r < b->n_out; r++)\n"
		  "\t\t\tif (b->out[r] >= lo && b->out[r] < hi)\n"
		  "\t\t\t\tout[n_out++] = b->out[r] - lo;\n"
		  "\t\tif (!b->out)\n"
		  "\t\t\tfor (int t = lo; t < hi; t++)\n"
		  "\t\t\t\tout[n_out++] = t - lo;\n"
		  "\t\tRtBatch sb = {hi - lo, b->token + lo, b->pos + lo, b->seq ? b->seq + lo : NULL, out, n_out, NULL};\n"
		  "\t\tint rc = decode_call(st, &sb, logits && n_out ? logits + (size_t)done * N_VOCAB : NULL, !step);\n"
		  "\t\tif (rc == RT_FORWARD_NONFINITE)\n"
		  "\t\t\tst->bad_token += lo;\n"
		  "\t\tif (rc)\n"
		  "\t\t\treturn rc;\n"
		  "\t\tif (logits)\n"
		  "\t\t\tdone += n_out;\n"
		  "\t}\n"
		  "\treturn 0;\n"
		  "}\n\n"
		  "/* --info: the device this program would run on, or why none */\n"
		  "static void device_info(char *buf, size_t n)\n"
		  "{\n"
		  "\tGPU(probe)(MIN_CC, 0, buf, n);\n"
		  "}\n\n");
	cg_printf(b, "static const int32_t batch_sizes[] = {");
	for (int i = 0; i < n_bs; i++)
		cg_printf(b, "%s%d", i ? ", " : "", bs[i]);
	cg_printf(b, "};\n\n");
	/* info */
	CgBuf s = {0};
	const IrHparams *hp = &g->hp;
	cg_printf(&s, "model %s, arch %s\n", g->name ? g->name : "?", g->arch ? g->arch : "?");
	cg_printf(&s, "n_layer %" PRId64 ", n_embd %" PRId64 ", n_ff %" PRId64 ", heads %" PRId64
		      "/%" PRId64 ", head_dim %" PRId64 ", n_vocab %" PRId64 ", n_ctx_train %" PRId64 "\n",
		  hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head, hp->n_head_kv, hp->head_dim,
		  hp->n_vocab, hp->n_ctx_train);
	cg_printf(&s, "target %s (%s", o->target, m->api->info);
	if (m->api->flavor == SIMT_PTX)
		cg_printf(&s, "%d", m->c.cc);
	cg_printf(&s, "), forward templates: 1 token (step)");
	for (int i = 1; i < n_bs; i++)
		cg_printf(&s, ", %d", bs[i]);
	cg_printf(&s, "%s\n", n_bs > 1 ? " tokens (batch)" : "");
	cg_printf(&s, "device memory: weights %" PRIu64 " bytes, scratch %" PRIu64 " bytes, KV %" PRId64
		      " bytes per position\n", out->payload.size, out->scratch_bytes, m->kv.elems * 2);
	cg_printf(&s, "kernels (%d):", m->n_kname);
	for (int i = 0; i < m->n_kname; i++)
		cg_printf(&s, " %s", m->kname[i]);
	cg_printf(&s, "\n");
	cg_printf(b, "static const char model_info[] =\n\t");
	put_cstr(b, s.data ? s.data : "", s.len);
	cg_printf(b, ";\n\n");
	if (s.oom)
		b->oom = true;
	cg_buf_free(&s);
	cg_printf(b, "#ifndef BN_MODEL_SYMBOL\n"
		     "#define BN_MODEL_SYMBOL rt_model\n"
		     "#endif\n"
		     "const RtModel BN_MODEL_SYMBOL = {\n"
		     "\t.abi = RT_MODEL_ABI,\n"
		     "\t.name = ");
	put_cstr(b, g->name ? g->name : "", strlen(g->name ? g->name : ""));
	cg_printf(b, ",\n\t.arch = ");
	put_cstr(b, g->arch ? g->arch : "", strlen(g->arch ? g->arch : ""));
	cg_printf(b, ",\n\t.target = \"%s\",\n\t.cpu_features = \"\",\n\t.pipeline = ", o->target);
	put_cstr(b, o->pipeline ? o->pipeline : "dce", strlen(o->pipeline ? o->pipeline : "dce"));
	cg_put_model_facts(b, g, o, out, n_bs);
	cg_printf(b, "\t.init = init,\n"
		     "\t.fini = fini,\n"
		     "\t.state_init = state_init,\n"
		     "\t.state_fini = state_fini,\n"
		     "\t.device_info = device_info,\n"
		     "};\n");
}

/* The PTX as a C string for model.c (model_ptx.h) and as files to read (model.ptx, .ll).
 * Each artifact is written as soon as it is added: adding one may move the others. */
static int put_ptx(CgOutput *out, const CgBuf *ptx, const CgBuf *ll, BnErr *e)
{
	CgBuf *h = cg_output_add(out, "model_ptx.h", CG_ART_HEADER);
	if (!h)
		return bn_err(e, BN_ENOMEM, "codegen: out of memory");
	cg_printf(h, "/* model_ptx.h - generated by bitnetc: the kernels' PTX (model.ptx), for model.c */\n"
		     "static const char model_ptx[] =\n\t");
	put_cstr(h, ptx->data, ptx->len);
	cg_printf(h, ";\n");
	if (h->oom)
		return bn_err(e, BN_ENOMEM, "codegen: out of memory");
	CgBuf *p = cg_output_add(out, "model.ptx", CG_ART_BINARY);
	if (!p || cg_put(p, ptx->data, ptx->len))
		return bn_err(e, BN_ENOMEM, "codegen: out of memory");
	CgBuf *l = cg_output_add(out, "model.ll", CG_ART_BINARY);
	if (!l || cg_put(l, ll->data ? ll->data : "", ll->len))
		return bn_err(e, BN_ENOMEM, "codegen: out of memory");
	return 0;
}

static int plan_kv(CuEm *m)
{
	bool found;
	int rc = ir_kv_read(m->c.g, &m->kv, &found, m->e);
	if (!rc && !found)
		rc = ir_kv_plan(m->c.g, &m->kv, m->e);
	return rc ? bn_err_prefix(m->e, m->api->backend[0] == 'm' ? "codegen (metal)" : "codegen (cuda)") : 0;
}

int cg_gpu_emit(const IrGraph *g, const CgOpts *o, const CgGpuApi *api, int cc, CgOutput *out,
		BnErr *e)
{
	memset(out, 0, sizeof *out);
	int two[2], n_bs;
	const int *bs;
	if (cg_batch_templates(o, two, &bs, &n_bs, e))
		return e ? e->code : BN_EINVAL;
	CuEm m = {.o = o, .api = api, .e = e};
	m.c = (CuCtx){.g = g, .cc = cc, .max_batch = o->max_batch, .addr = em_addr,
		      .rope_table = em_rope, .ud = &m};
	CgBuf fwd = {0}, kb[2] = {{0}}, host = {0};
	Simt *S = NULL;
	int rc = BN_ENOMEM;
	size_t nv = (size_t)g->n_values + 1, nn = (size_t)g->n_nodes + 1;
	m.woff = malloc(nv * sizeof *m.woff);
	m.soff = malloc(nv * sizeof *m.soff);
	m.tmp = malloc(nn * sizeof *m.tmp);
	if (!m.woff || !m.soff || !m.tmp) {
		bn_err(e, BN_ENOMEM, "codegen: out of memory");
		goto out;
	}
	for (size_t i = 0; i < nv; i++)
		m.woff[i] = m.soff[i] = NO_OFF;
	if (g->tokens < 0 || g->logits < 0 || g->n_nodes == 0) {
		rc = bn_err(e, BN_EUNSUPPORTED, "codegen (%s): the graph has no tokens input, "
				"logits output or nodes", api->backend);
		goto out;
	}
	if ((rc = cg_plan_payload(g, o->tok_blob, o->tok_bytes, &out->payload, m.woff, e)) ||
	    (rc = plan_kv(&m)) ||
	    (rc = cg_plan_scratch(g, o->max_batch, m.soff, m.tmp, &out->scratch_bytes, e)))
		goto out;
	rc = BN_ENOMEM;
	if (!(S = simt_new(api->flavor, "model"))) {
		bn_err(e, BN_ENOMEM, "codegen: out of memory");
		goto out;
	}
	m.c.S = S;
	for (int i = 0; i < n_bs; i++) {
		put_forward_head(&fwd, bs[i], i ? bs[i - 1] + 1 : 1);
		if ((rc = walk(&m, &fwd, bs[i])))
			goto out;
		cg_printf(&fwd, "\treturn 0;\n}\n\n");
	}
	if ((rc = api->kernels(S, cc, kb, e)))
		goto out;
	out->n_kernels = S->n_kernels;
	if (o->host_kernels && api->flavor == SIMT_PTX) {
		/* the same kernels for this host, for the SIMT emulator */
		simt_free(S);
		if (!(S = simt_new(SIMT_HOST, "model_host"))) {
			rc = bn_err(e, BN_ENOMEM, "codegen: out of memory");
			goto out;
		}
		m.c.S = S;
		for (int i = 0; i < n_bs; i++)
			if ((rc = walk(&m, NULL, bs[i])))
				goto out;
		if ((rc = simt_emit_host_object(S, &host, e)))
			goto out;
	}
	/* each artifact filled before the next is added (adding may move them) */
	CgBuf *b = cg_output_add(out, "model.c", CG_ART_SOURCE);
	if (!b) {
		rc = bn_err(e, BN_ENOMEM, "codegen: out of memory");
		goto out;
	}
	put_head(&m, b);
	cg_printf(b, "%s", fwd.data ? fwd.data : "");
	put_rest(&m, b, bs, n_bs, out);
	if (b->oom || fwd.oom) {
		rc = bn_err(e, BN_ENOMEM, "codegen: out of memory");
		goto out;
	}
	if ((rc = api->artifacts(out, kb, e)))
		goto out;
	if (o->host_kernels && api->flavor == SIMT_PTX) {
		CgBuf *h = cg_output_add(out, "model_host.o", CG_ART_BINARY);
		if (!h || cg_put(h, host.data, host.len)) {
			rc = bn_err(e, BN_ENOMEM, "codegen: out of memory");
			goto out;
		}
	}
	rc = 0;
out:
	simt_free(S);
	cg_buf_free(&fwd);
	cg_buf_free(&kb[0]);
	cg_buf_free(&kb[1]);
	cg_buf_free(&host);
	free(m.woff);
	free(m.soff);
	free(m.tmp);
	free(m.kname);
	free(m.check_layer);
	ir_kv_plan_free(&m.kv);
	if (rc)
		cg_output_free(out);
	return rc;
}

/* ---- the CUDA flavour --------------------------------------------------------------- */

static int cuda_kernels(Simt *S, int cc, CgBuf kb[2], BnErr *e)
{
	char sm[16];
	snprintf(sm, sizeof sm, "sm_%d", cc);
	return simt_emit_ptx(S, sm, &kb[0], &kb[1], e);
}

static int cuda_artifacts(CgOutput *out, const CgBuf kb[2], BnErr *e)
{
	return put_ptx(out, &kb[0], &kb[1], e);
}

static const CgGpuApi cuda_api = {
	.backend = "cuda",
	.flavor = SIMT_PTX,
	.about = "The host side of a CUDA program: the kernels are PTX (model_ptx.h, built from\n"
		 " * LLVM IR by bitnetc), launched in the graph's order through the CUDA driver\n"
		 " * API (rt_cuda.h, which loads libcuda.so.1 at run time).",
	.header = "rt_cuda.h",
	.head = "#include \"model_ptx.h\"\n"
		"#include \"model_cubin.h\" /* written by the build: SASS from ptxas, or none */\n\n"
		"/* the driver calls, by what they do */\n"
		"#define GPU(f) rt_cuda_##f\n"
		"#define GPU_ENODEV RT_CUDA_ENODEV\n"
		"typedef RtCuda GpuDev;\n",
	.helpers = "/* the module: the SASS when it is for this device, else the PTX */\n"
		   "static int kernels_load(GpuDev *cu, char *err, size_t err_len)\n"
		   "{\n"
		   "\treturn rt_cuda_module(cu, model_ptx, MODEL_CUBIN_N ? model_cubin : NULL, MODEL_CUBIN_N, MODEL_CUBIN_CC, err, err_len);\n"
		   "}\n\n"
		   "/* the weights copied to device memory once */\n"
		   "static int weights_to_device(GpuDev *cu, const uint8_t *w, uint64_t w_bytes, RtDevPtr *p, char *err, size_t err_len)\n"
		   "{\n"
		   "\treturn rt_cuda_alloc(cu, w_bytes, p, err, err_len) ||\n"
		   "\t       rt_cuda_upload(cu, *p, w, w_bytes, isatty(2) ? progress : NULL, &(double){now_s()}, err, err_len);\n"
		   "}\n",
	.cc_about = "the compute capability the PTX was built for",
	.info = "PTX for sm_",
	.kernels = cuda_kernels,
	.artifacts = cuda_artifacts,
};

int cg_cuda_emit(const IrGraph *g, const CgOpts *o, CgOutput *out, BnErr *e)
{
	int cc = cg_cuda_target_cc(o->target);
	if (cc <= 0) {
		memset(out, 0, sizeof *out);
		return bn_err(e, BN_EINVAL, "codegen: '%s' is not a CUDA target", o->target ? o->target : "");
	}
	return cg_gpu_emit(g, o, &cuda_api, cc, out, e);
}
