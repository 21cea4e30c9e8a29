/* test_bitnet.c - the BitNet frontend: golden models to graphs, each rejection and its message. */
#include "testutil.h"

#include "frontend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------- */

/* A loaded model: the graph's constants point into the file's mapping. */
typedef struct {
	GgufFile *f;
	IrGraph *g;
} Model;

static Model load(const char *path, BnErr *e)
{
	Model m = { 0 };
	m.f = gguf_open(path, e);
	if (m.f)
		m.g = bnm_load(m.f, e);
	return m;
}

static void model_free(Model *m)
{
	ir_graph_free(m->g);
	gguf_close(m->f);
}

static int count_op(const IrGraph *g, IrOp op)
{
	int n = 0;
	for (int i = 0; i < g->n_nodes; i++)
		n += g->nodes[i].op == op;
	return n;
}

static const IrNode *find_node(const IrGraph *g, const char *name)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (strcmp(g->nodes[i].name, name) == 0)
			return &g->nodes[i];
	return NULL;
}

static void assert_has(const char *msg, const char *what)
{
	if (!strstr(msg, what))
		fail_msg("error message \"%s\" does not mention \"%s\"", msg, what);
}

/* Writes a small synthetic model (2 layers of the tiny shape) and returns its path. */
static const char *synth(const char *name, void (*tweak)(BnmSynthSpec *))
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tiny", &e), 0);
	s.n_layer = 2;
	if (tweak)
		tweak(&s);
	const char *path = tu_tmp(name);
	if (bnm_synth_write(&s, path, &e))
		fail_msg("synth %s: %s", name, e.msg);
	return path;
}

/* Copying a GGUF with edits: the way to build files the generator would never write. */
typedef struct Edit Edit;
struct Edit {
	const char *drop_key;
	const char *drop_tensor;
	/* may change a tensor's type/shape/data; false drops it */
	bool (*tensor)(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims,
		       int64_t *ne, const void **data, uint64_t *nbytes);
	/* extra keys and tensors, after the copy (setting a key replaces it) */
	void (*extra)(const Edit *ed, GgufWriter *w);
	const GgufFile *other; /* a second model edits may take tensors from */
	void *buf; /* data an edit allocated, freed after writing */
};

static void copy_kv(GgufWriter *w, const GgufKV *kv)
{
	const GgufValue *v = &kv->val;
	if (v->type == GGUF_T_ARRAY) /* the element type and count precede the elements */
		gguf_writer_raw(w, kv->key, v->type, v->data - 12, v->size + 12);
	else
		gguf_writer_raw(w, kv->key, v->type, v->data, v->size);
}

static const char *edited(const char *src, const char *name, Edit *ed)
{
	BnErr e = { 0 };
	GgufFile *f = gguf_open(src, &e);
	if (!f)
		fail_msg("%s", e.msg);
	GgufWriter *w = gguf_writer_new();
	for (uint64_t i = 0; i < f->n_kv; i++)
		if (!ed->drop_key || strcmp(f->kv[i].key, ed->drop_key))
			copy_kv(w, &f->kv[i]);
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		uint32_t type = t->ggml_type;
		int n_dims = t->n_dims;
		int64_t ne[GGUF_MAX_DIMS];
		memcpy(ne, t->ne, sizeof ne);
		const void *data = t->data;
		uint64_t nbytes = t->nbytes;
		if (ed->drop_tensor && strcmp(t->name, ed->drop_tensor) == 0)
			continue;
		if (ed->tensor && !ed->tensor(ed, t, &type, &n_dims, ne, &data, &nbytes))
			continue;
		if (gguf_writer_tensor(w, t->name, type, n_dims, ne, data, nbytes, &e))
			fail_msg("%s", e.msg);
	}
	if (ed->extra)
		ed->extra(ed, w);
	const char *path = tu_tmp(name);
	if (gguf_writer_write(w, path, &e))
		fail_msg("%s", e.msg);
	gguf_writer_free(w);
	gguf_close(f);
	free(ed->buf);
	ed->buf = NULL;
	return path;
}

/* Loading path must fail with code, and the message must name the file and what. */
static void expect_fail(const char *path, int code, const char *what)
{
	BnErr e = { 0 };
	Model m = load(path, &e);
	if (m.g)
		fail_msg("%s loaded, expected an error about %s", path, what);
	if (getenv("BN_TEST_VERBOSE"))
		print_message("%s\n", e.msg);
	assert_int_equal(e.code, code);
	assert_has(e.msg, path);
	assert_has(e.msg, what);
	model_free(&m);
}

/* ---- golden models ------------------------------------------------------------- */

/* Per layer: 4 norms, 4 QUANT_ACT (q/k/v share one), 7 matmuls, 2 ropes, attention,
 * GLU, 2 residual adds; plus embed, final norm and head. */
static int expected_nodes(int n_layer)
{
	return 21 * n_layer + 3;
}

static void check_tiny(const char *file, const char *mode, IrDtype wt)
{
	BnErr e = { 0 };
	Model m = load(tu_data(file), &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	IrGraph *g = m.g;
	assert_string_equal(g->arch, "bitnet-b1.58");
	assert_string_equal(g->name, "tiny-b158-f32.gguf"); /* general.name as the file has it */
	assert_int_equal(g->hp.n_layer, 4);
	assert_int_equal(g->hp.n_embd, 256);
	assert_int_equal(g->hp.n_ff, 768);
	assert_int_equal(g->hp.n_head, 4);
	assert_int_equal(g->hp.n_head_kv, 2);
	assert_int_equal(g->hp.head_dim, 64);
	assert_int_equal(g->hp.n_vocab, 512);
	assert_int_equal(g->hp.n_ctx_train, 512);
	assert_true(g->hp.eps == 1e-5f);
	assert_true(g->hp.rope_base == 500000.0f);
	assert_int_equal(g->n_nodes, expected_nodes(4));
	assert_int_equal(count_op(g, IR_OP_TERNARY_MATMUL), 28);
	assert_int_equal(count_op(g, IR_OP_QUANT_ACT), 16);
	assert_int_equal(count_op(g, IR_OP_RELU2_GLU), 4);
	assert_int_equal(count_op(g, IR_OP_SILU_GLU), 0);
	assert_int_equal(count_op(g, IR_OP_MUL), 0);
	int n_const = 0;
	for (int i = 0; i < g->n_values; i++)
		n_const += g->values[i].kind == IR_VAL_CONST;
	assert_int_equal(n_const, (int)m.f->n_tensors);

	/* tokens and logits */
	const IrValue *tok = &g->values[g->tokens], *lg = &g->values[g->logits];
	assert_int_equal(tok->dtype, IR_DT_I32);
	assert_int_equal(tok->ne[0], IR_DIM_T);
	assert_int_equal(lg->ne[0], 512);
	assert_int_equal(lg->ne[1], IR_DIM_T);
	const IrNode *head = find_node(g, "result_output");
	assert_non_null(head);
	assert_int_equal(head->op, IR_OP_MATMUL);
	assert_string_equal(g->values[head->in[1]].name, "token_embd.weight");
	assert_string_equal(g->values[head->in[1]].layout, "gguf");
	assert_non_null(find_node(g, "inp_embd"));
	assert_non_null(find_node(g, "result_norm"));

	/* a layer's conventions */
	const IrNode *q = find_node(g, "blk.2.attn_q");
	assert_non_null(q);
	const IrValue *w = &g->values[q->in[2]];
	assert_string_equal(w->name, "blk.2.attn_q.weight");
	assert_int_equal(w->dtype, wt);
	const IrNode *qa = &g->nodes[g->values[q->in[0]].producer];
	assert_int_equal(qa->op, IR_OP_QUANT_ACT);
	assert_string_equal(ir_attr_str(qa, "mode", ""), mode);
	const IrNode *k = find_node(g, "blk.2.attn_k");
	assert_int_equal(k->in[0], q->in[0]); /* q, k, v share one quantization */
	assert_int_equal(g->values[q->in[1]].ne[0],
			 1); /* one scale per token, or per 256 of K = 256 */
	const IrNode *down = find_node(g, "blk.2.ffn_down");
	assert_int_equal(g->values[down->in[1]].ne[0], wt == IR_DT_I2_S ? 1 : 3); /* 768 / 256 */
	const IrNode *att = find_node(g, "blk.2.kqv_out");
	assert_int_equal(att->op, IR_OP_ATTENTION);
	assert_int_equal(ir_attr_int(att, "layer", -1), 2);
	assert_int_equal(ir_attr_int(att, "n_head", 0), 4);
	assert_int_equal(ir_attr_int(att, "n_head_kv", 0), 2);
	assert_int_equal(ir_attr_int(att, "head_dim", 0), 64);
	assert_true((float)ir_attr_float(att, "scale", 0) == 0.125f);
	const IrNode *rq = find_node(g, "blk.2.attn_q.rope");
	assert_string_equal(ir_attr_str(rq, "mode", ""), "neox");
	assert_int_equal(ir_attr_int(rq, "n_rot", 0), 64);
	assert_true(ir_attr_float(rq, "freq_base", 0) == 500000.0);
	assert_int_equal(rq->n_in, 1);
	const IrNode *sub = find_node(g, "blk.2.ffn_sub_norm");
	assert_int_equal(sub->op, IR_OP_RMSNORM);
	assert_int_equal(g->values[sub->out[0]].ne[0], 768);
	assert_true((float)ir_attr_float(sub, "eps", 0) == 1e-5f);
	assert_int_equal(find_node(g, "blk.3.l_out")->op, IR_OP_ADD);
	assert_int_equal(find_node(g, "blk.3.ffn_inp")->op, IR_OP_ADD);
	assert_int_equal(ir_verify(g, &e), 0);

	IrHparams hp;
	assert_int_equal(bnm_hparams(m.f, &hp, &e), 0);
	assert_memory_equal(&hp, &g->hp, sizeof hp);
	model_free(&m);
}

static void test_golden_i2s(void **st)
{
	check_tiny("golden/models/tiny-b158-i2_s.gguf", "token", IR_DT_I2_S);
}

static void test_golden_tq1(void **st)
{
	check_tiny("golden/models/tiny-b158-tq1_0.gguf", "block256", IR_DT_TQ1_0);
}

static void test_golden_tq2(void **st)
{
	check_tiny("golden/models/tiny-b158-tq2_0.gguf", "block256", IR_DT_TQ2_0);
}

static void test_golden_old(void **st)
{
	BnErr e = { 0 };
	Model m = load(tu_data("golden/models/tinyold-bitnet-i2_s.gguf"), &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	IrGraph *g = m.g;
	assert_string_equal(g->arch, "bitnet");
	assert_int_equal(g->hp.n_layer, 2);
	assert_int_equal(g->hp.n_ff, 512);
	assert_int_equal(g->hp.n_head, 4);
	assert_int_equal(g->hp.n_head_kv, 4);
	assert_true(g->hp.rope_base == 10000.0f);
	assert_true(g->hp.eps == 1e-6f);
	assert_int_equal(g->n_nodes, expected_nodes(2));
	assert_int_equal(count_op(g, IR_OP_SILU_GLU), 2);
	assert_int_equal(count_op(g, IR_OP_RELU2_GLU), 0);
	assert_int_equal(count_op(g, IR_OP_MUL), 0); /* no .scale tensors in this file */
	model_free(&m);
}

static void test_archs(void **st)
{
	const char *const *a = bnm_archs();
	assert_string_equal(a[0], "bitnet-b1.58");
	assert_string_equal(a[1], "bitnet-25");
	assert_string_equal(a[2], "bitnet");
	assert_string_equal(a[3], "llama");
	assert_null(a[4]);
}

/* ---- error paths ------------------------------------------------------------------- */

static void set_arch_gemma(const Edit *ed, GgufWriter *w)
{
	gguf_writer_str(w, "general.architecture", "gemma");
}

static void test_unknown_arch(void **st)
{
	Edit ed = { .extra = set_arch_gemma };
	const char *p = edited(synth("ua.src.gguf", NULL), "ua.gguf", &ed);
	expect_fail(p, BN_EUNSUPPORTED,
		    "unknown architecture 'gemma' (supported: bitnet-b1.58, bitnet-25, bitnet, "
		    "llama)");
	expect_fail(p, BN_EUNSUPPORTED, "general.architecture");
	expect_fail(p, BN_EUNSUPPORTED, "type 36 is read as I2_S only");
	BnErr e = { 0 };
	GgufFile *f = gguf_open(p, &e);
	IrHparams hp;
	assert_int_equal(bnm_hparams(f, &hp, &e), BN_EUNSUPPORTED);
	gguf_close(f);
}

static void test_bitnet25(void **st)
{
	/* the same graph under the other name: keys renamed with the arch */
	BnErr e = { 0 };
	GgufFile *f = gguf_open(synth("b25.src.gguf", NULL), &e);
	GgufWriter *w = gguf_writer_new();
	for (uint64_t i = 0; i < f->n_kv; i++) {
		char key[160];
		const char *k = f->kv[i].key;
		if (strncmp(k, "bitnet-b1.58.", 13) == 0) {
			snprintf(key, sizeof key, "bitnet-25.%s", k + 13);
			GgufKV kv = f->kv[i];
			kv.key = key;
			copy_kv(w, &kv);
		} else {
			copy_kv(w, &f->kv[i]);
		}
	}
	gguf_writer_str(w, "general.architecture", "bitnet-25");
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		assert_int_equal(gguf_writer_tensor(w, t->name, t->ggml_type, t->n_dims, t->ne,
						    t->data, t->nbytes, &e),
				 0);
	}
	const char *p = tu_tmp("b25.gguf");
	assert_int_equal(gguf_writer_write(w, p, &e), 0);
	gguf_writer_free(w);
	gguf_close(f);
	Model m = load(p, &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	assert_string_equal(m.g->arch, "bitnet-25");
	assert_int_equal(m.g->n_nodes, expected_nodes(2));
	assert_int_equal(count_op(m.g, IR_OP_RELU2_GLU), 2);
	model_free(&m);
}

static void test_missing_tensor(void **st)
{
	Edit ed = { .drop_tensor = "blk.1.ffn_up.weight" };
	expect_fail(edited(synth("mt.src.gguf", NULL), "mt.gguf", &ed), BN_EFORMAT,
		    "blk.1.ffn_up.weight: missing tensor");
	Edit ed2 = { .drop_tensor = "output_norm.weight" };
	expect_fail(edited(synth("mt2.src.gguf", NULL), "mt2.gguf", &ed2), BN_EFORMAT,
		    "output_norm.weight");
}

static bool halve_output_norm(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims,
			      int64_t *ne, const void **data, uint64_t *nbytes)
{
	if (strcmp(t->name, "output_norm.weight") == 0) {
		ne[0] /= 2;
		*nbytes /= 2;
	}
	return true;
}

static bool transpose_k(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims,
			int64_t *ne, const void **data, uint64_t *nbytes)
{
	if (strcmp(t->name, "blk.0.attn_k.weight") == 0) {
		/* [256, 128] -> [128, 256]: same bytes, wrong orientation */
		int64_t x = ne[0];
		ne[0] = ne[1];
		ne[1] = x;
	}
	return true;
}

static void test_wrong_shape(void **st)
{
	Edit ed = { .tensor = halve_output_norm };
	expect_fail(edited(synth("ws.src.gguf", NULL), "ws.gguf", &ed), BN_EFORMAT,
		    "output_norm.weight: shape [128], expected [256] (n_embd 256, n_ff 768, "
		    "n_head 4 and n_head_kv 2 of head_dim 64, n_vocab 512)");
	Edit ed2 = { .tensor = transpose_k };
	expect_fail(edited(synth("ws2.src.gguf", NULL), "ws2.gguf", &ed2), BN_EFORMAT,
		    "blk.0.attn_k.weight: shape [128, 256], expected [256, 128] (layer 0: n_embd");
}

static void wtype_f16(BnmSynthSpec *s)
{
	s->wtype = IR_DT_F16;
}

/* F16 projections are ternarized into I2_S constants (test_ternarize.c checks the values). */
static void test_f16_projection(void **st)
{
	BnErr e = { 0 };
	Model m = load(synth("f16.gguf", wtype_f16), &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	int n_i2s = 0;
	for (int i = 0; i < m.g->n_values; i++)
		n_i2s += m.g->values[i].kind == IR_VAL_CONST && m.g->values[i].dtype == IR_DT_I2_S;
	assert_int_equal(n_i2s, 2 * 7);
	model_free(&m);
}

static bool f16_norm(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims, int64_t *ne,
		     const void **data, uint64_t *nbytes)
{
	if (strcmp(t->name, "blk.1.ffn_norm.weight") == 0) {
		*type = 1; /* F16: half the bytes */
		*nbytes /= 2;
	}
	return true;
}

static void test_norm_type(void **st)
{
	Edit ed = { .tensor = f16_norm };
	expect_fail(edited(synth("nt.src.gguf", NULL), "nt.gguf", &ed), BN_EUNSUPPORTED,
		    "blk.1.ffn_norm.weight: unsupported type f16 (expected f32)");
}

static void embd192(BnmSynthSpec *s)
{
	s->wtype = IR_DT_F16;
	s->n_embd = 192;
	s->n_head = 3;
	s->n_head_kv = 3;
	s->n_ff = 256;
}

static bool as_i8_blob(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims,
		       int64_t *ne, const void **data, uint64_t *nbytes)
{
	if (strcmp(t->name, "blk.0.attn_q.weight") == 0) {
		/* I2_S bytes of a 192 x 192 tensor, stored for now as an opaque I8 row */
		*type = 24;
		*n_dims = 2;
		ne[0] = 192 * 192 / 4 + 32;
		ne[1] = 1;
		*data = ed->buf;
		*nbytes = (uint64_t)ne[0];
	}
	return true;
}

/* Finds the tensor info of name in a GGUF image and rewrites its dims and type. */
static void patch_info(uint8_t *img, size_t n, const char *name, int64_t ne0, int64_t ne1,
		       uint32_t type)
{
	size_t len = strlen(name);
	for (size_t i = 8; i + len + 32 < n; i++) {
		uint64_t l;
		memcpy(&l, img + i - 8, 8);
		if (l == len && memcmp(img + i, name, len) == 0) {
			uint8_t *p = img + i + len;
			uint32_t nd = 2;
			memcpy(p, &nd, 4);
			memcpy(p + 4, &ne0, 8);
			memcpy(p + 12, &ne1, 8);
			memcpy(p + 20, &type, 4);
			return;
		}
	}
	fail_msg("tensor %s not found", name);
}

static void test_k_not_block(void **st)
{
	/* A bitnet.cpp I2_S file may hold any row length; ours needs K % 128 == 0. Such a
	 * file cannot come out of our writer, so patch one in: I2_S, K = 192. */
	float *src = calloc(192 * 192, sizeof(float));
	for (int i = 0; i < 192 * 192; i++)
		src[i] = (float)(i % 3) - 1;
	Edit ed = { .tensor = as_i8_blob, .buf = malloc(192 * 192 / 4 + 32) };
	ir_quant(IR_DT_I2_S, src, ed.buf, 192 * 192);
	free(src);
	const char *p = edited(synth("k192.src.gguf", embd192), "k192.gguf", &ed);
	size_t n;
	uint8_t *img = tu_read_file(p, &n);
	assert_non_null(img);
	patch_info(img, n, "blk.0.attn_q.weight", 192, 192, 36);
	assert_int_equal(tu_write_file(p, img, n), 0);
	free(img);
	BnErr e = { 0 };
	Model m = load(p, &e);
	assert_null(m.g);
	if (getenv("BN_TEST_VERBOSE"))
		print_message("%s\n", e.msg);
	assert_has(e.msg, p);
	assert_has(e.msg, "blk.0.attn_q.weight");
	assert_has(e.msg, "128");
	model_free(&m);
}

static void set_rope_dim(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "bitnet-b1.58.rope.dimension_count", 32);
}

static void test_rope_dim(void **st)
{
	Edit ed = { .extra = set_rope_dim };
	expect_fail(edited(synth("rd.src.gguf", NULL), "rd.gguf", &ed), BN_EUNSUPPORTED,
		    "bitnet-b1.58.rope.dimension_count: 32, expected the head size 64");
}

static void set_heads3(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "bitnet-b1.58.attention.head_count", 3);
	gguf_writer_u32(w, "bitnet-b1.58.attention.head_count_kv", 3);
}

static void set_kv3(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "bitnet-b1.58.attention.head_count_kv", 3);
}

static void set_heads256(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "bitnet-b1.58.attention.head_count", 256);
	gguf_writer_u32(w, "bitnet-b1.58.attention.head_count_kv", 256);
}

static void test_heads(void **st)
{
	Edit ed = { .extra = set_heads3 };
	const char *src = synth("hd.src.gguf", NULL);
	expect_fail(edited(src, "hd.gguf", &ed), BN_EFORMAT,
		    "bitnet-b1.58.embedding_length (256) is not a multiple of "
		    "bitnet-b1.58.attention.head_count (3)");
	Edit ed3 = { .extra = set_heads256 };
	expect_fail(edited(src, "hd3.gguf", &ed3), BN_EUNSUPPORTED,
		    "bitnet-b1.58.embedding_length / bitnet-b1.58.attention.head_count = 1: an odd "
		    "head size is not supported");
	Edit ed2 = { .extra = set_kv3 };
	expect_fail(edited(src, "hd2.gguf", &ed2), BN_EFORMAT,
		    "bitnet-b1.58.attention.head_count (4) is not a multiple of "
		    "bitnet-b1.58.attention.head_count_kv (3)");
}

static void set_vocab600(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "bitnet-b1.58.vocab_size", 600);
}

static void set_vocab500(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "bitnet-b1.58.vocab_size", 500);
}

static void test_vocab(void **st)
{
	const char *src = synth("vo.src.gguf", NULL);
	Edit ed = { .extra = set_vocab600 };
	expect_fail(edited(src, "vo.gguf", &ed), BN_EFORMAT,
		    "token_embd.weight: 512 rows, but the vocabulary has 600 tokens");
	Edit ed2 = { .extra = set_vocab500 };
	expect_fail(edited(src, "vo2.gguf", &ed2), BN_EFORMAT,
		    "tokenizer.ggml.tokens: 512 tokens but the vocabulary size "
		    "(bitnet-b1.58.vocab_size) is 500");
	/* without the key, the tokenizer's count is the vocabulary size */
	Edit ed3 = { .drop_key = "bitnet-b1.58.vocab_size" };
	BnErr e = { 0 };
	Model m = load(edited(src, "vo3.gguf", &ed3), &e);
	assert_non_null(m.g);
	assert_int_equal(m.g->hp.n_vocab, 512);
	model_free(&m);
}

static void test_missing_key(void **st)
{
	Edit ed = { .drop_key = "bitnet-b1.58.embedding_length" };
	expect_fail(edited(synth("mk.src.gguf", NULL), "mk.gguf", &ed), BN_EFORMAT,
		    "bitnet-b1.58.embedding_length: missing");
	Edit ed2 = { .drop_key = "bitnet-b1.58.attention.layer_norm_rms_epsilon" };
	expect_fail(edited(synth("mk2.src.gguf", NULL), "mk2.gguf", &ed2), BN_EFORMAT,
		    "layer_norm_rms_epsilon: missing");
	Edit ed3 = { .drop_key = "general.architecture" };
	expect_fail(edited(synth("mk3.src.gguf", NULL), "mk3.gguf", &ed3), BN_EFORMAT,
		    "general.architecture: missing (supported: bitnet-b1.58, bitnet-25, bitnet, "
		    "llama)");
}

static void set_absurd(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "bitnet-b1.58.block_count", 100000);
}

static void set_str_embd(const Edit *ed, GgufWriter *w)
{
	gguf_writer_str(w, "bitnet-b1.58.embedding_length", "256");
}

static void set_neg_ctx(const Edit *ed, GgufWriter *w)
{
	gguf_writer_i32(w, "bitnet-b1.58.context_length", -1);
}

static void test_absurd_values(void **st)
{
	const char *src = synth("ab.src.gguf", NULL);
	Edit ed = { .extra = set_absurd };
	expect_fail(edited(src, "ab.gguf", &ed), BN_EFORMAT,
		    "bitnet-b1.58.block_count: 100000 is out of range (expected 1..4096)");
	Edit ed2 = { .extra = set_str_embd };
	expect_fail(edited(src, "ab2.gguf", &ed2), BN_EFORMAT,
		    "bitnet-b1.58.embedding_length: expected an integer, found string");
	Edit ed3 = { .extra = set_neg_ctx };
	expect_fail(edited(src, "ab3.gguf", &ed3), BN_EFORMAT,
		    "bitnet-b1.58.context_length: -1 is out of range");
}

/* Per-layer arrays: layer 1 takes its FFN and K/V tensors from a wider model. */
static void wide(BnmSynthSpec *s)
{
	s->n_ff = 512;
	s->n_head_kv = 4;
}

static bool from_other(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims,
		       int64_t *ne, const void **data, uint64_t *nbytes)
{
	static const char *const swap[] = { "blk.1.ffn_gate.weight", "blk.1.ffn_up.weight",
					    "blk.1.ffn_down.weight", "blk.1.ffn_sub_norm.weight",
					    "blk.1.attn_k.weight",   "blk.1.attn_v.weight" };
	for (size_t i = 0; i < sizeof swap / sizeof swap[0]; i++)
		if (strcmp(t->name, swap[i]) == 0) {
			const GgufTensor *o = gguf_find_tensor(ed->other, t->name);
			*type = o->ggml_type;
			*n_dims = o->n_dims;
			memcpy(ne, o->ne, sizeof o->ne);
			*data = o->data;
			*nbytes = o->nbytes;
		}
	return true;
}

static void set_layer_arrays(const Edit *ed, GgufWriter *w)
{
	const int32_t ff[2] = { 768, 512 }, kv[2] = { 2, 4 };
	gguf_writer_arr(w, "bitnet-b1.58.feed_forward_length", GGUF_T_I32, ff, 2);
	gguf_writer_arr(w, "bitnet-b1.58.attention.head_count_kv", GGUF_T_I32, kv, 2);
}

static void set_bad_array(const Edit *ed, GgufWriter *w)
{
	const uint32_t ff[3] = { 768, 512, 512 };
	gguf_writer_arr(w, "bitnet-b1.58.feed_forward_length", GGUF_T_U32, ff, 3);
}

static void set_zero_in_array(const Edit *ed, GgufWriter *w)
{
	const uint32_t ff[2] = { 768, 0 };
	gguf_writer_arr(w, "bitnet-b1.58.feed_forward_length", GGUF_T_U32, ff, 2);
}

static void test_per_layer(void **st)
{
	BnErr e = { 0 };
	const char *src = synth("pl.src.gguf", NULL);
	GgufFile *other = gguf_open(synth("pl.wide.gguf", wide), &e);
	assert_non_null(other);
	Edit ed = { .tensor = from_other, .extra = set_layer_arrays, .other = other };
	const char *p = edited(src, "pl.gguf", &ed);
	gguf_close(other);
	Model m = load(p, &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	assert_int_equal(m.g->hp.n_ff, 768); /* layer 0's */
	assert_int_equal(m.g->hp.n_head_kv, 2);
	assert_int_equal(m.g->values[find_node(m.g, "blk.0.ffn_gate")->out[0]].ne[0], 768);
	assert_int_equal(m.g->values[find_node(m.g, "blk.1.ffn_gate")->out[0]].ne[0], 512);
	assert_int_equal(m.g->values[find_node(m.g, "blk.1.attn_k")->out[0]].ne[0], 256);
	assert_int_equal(ir_attr_int(find_node(m.g, "blk.0.kqv_out"), "n_head_kv", 0), 2);
	assert_int_equal(ir_attr_int(find_node(m.g, "blk.1.kqv_out"), "n_head_kv", 0), 4);
	model_free(&m);

	Edit ed2 = { .extra = set_bad_array };
	expect_fail(
		edited(src, "pl2.gguf", &ed2), BN_EFORMAT,
		"bitnet-b1.58.feed_forward_length: array of 3 values, expected one per layer (2)");
	Edit ed3 = { .extra = set_zero_in_array };
	expect_fail(edited(src, "pl3.gguf", &ed3), BN_EFORMAT,
		    "bitnet-b1.58.feed_forward_length[1]: 0 is out of range");
}

/* Optional tensors: biases (added), output.weight (ignored: the head is token_embd),
 * rope_freqs (a second ROPE input); and tensors the arch does not know. */
static float ones[1024];

static void add_bias(const Edit *ed, GgufWriter *w)
{
	int64_t ne[1] = { 128 };
	assert_int_equal(gguf_writer_tensor(w, "blk.1.attn_v.bias", 0, 1, ne, ones,
					    sizeof(float) * 128, NULL),
			 0);
}

static void add_output(const Edit *ed, GgufWriter *w)
{
	int64_t ne[2] = { 256, 512 };
	const GgufTensor *t = gguf_find_tensor(ed->other, "token_embd.weight");
	assert_int_equal(gguf_writer_tensor(w, "output.weight", t->ggml_type, 2, ne, t->data,
					    t->nbytes, NULL),
			 0);
}

static void add_rope_freqs(const Edit *ed, GgufWriter *w)
{
	int64_t ne[1] = { 32 };
	assert_int_equal(gguf_writer_tensor(w, "rope_freqs.weight", 0, 1, ne, ones,
					    sizeof(float) * 32, NULL),
			 0);
}

static void add_scale(const Edit *ed, GgufWriter *w)
{
	int64_t ne[1] = { 1 };
	assert_int_equal(
		gguf_writer_tensor(w, "blk.0.attn_q.scale", 0, 1, ne, ones, sizeof(float), NULL),
		0);
}

static void test_optional_tensors(void **st)
{
	for (int i = 0; i < 1024; i++)
		ones[i] = 1.0f;
	BnErr e = { 0 };
	const char *src = synth("op.src.gguf", NULL);
	Edit ed = { .extra = add_bias };
	Model m = load(edited(src, "op.gguf", &ed), &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	assert_int_equal(m.g->n_nodes, expected_nodes(2) + 1);
	const IrNode *b = find_node(m.g, "blk.1.attn_v.biased");
	assert_non_null(b);
	assert_int_equal(b->op, IR_OP_ADD);
	assert_string_equal(m.g->values[b->in[1]].name, "blk.1.attn_v.bias");
	assert_int_equal(find_node(m.g, "blk.1.kqv_out")->in[2], b->out[0]);
	model_free(&m);

	GgufFile *f = gguf_open(src, &e);
	Edit ed2 = { .extra = add_output, .other = f };
	m = load(edited(src, "op2.gguf", &ed2), &e);
	gguf_close(f);
	if (!m.g)
		fail_msg("%s", e.msg);
	assert_int_equal(m.g->n_nodes, expected_nodes(2));
	const IrNode *head = find_node(m.g, "result_output");
	assert_string_equal(m.g->values[head->in[1]].name, "token_embd.weight");
	model_free(&m);

	Edit ed3 = { .extra = add_rope_freqs };
	m = load(edited(src, "op3.gguf", &ed3), &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	const IrNode *r = find_node(m.g, "blk.1.attn_k.rope");
	assert_int_equal(r->n_in, 2);
	assert_string_equal(m.g->values[r->in[1]].name, "rope_freqs.weight");
	model_free(&m);

	Edit ed4 = { .extra = add_scale };
	expect_fail(edited(src, "op4.gguf", &ed4), BN_EUNSUPPORTED,
		    "blk.0.attn_q.scale: unexpected tensor (arch bitnet-b1.58 does not use it)");
}

static void arch_bitnet(BnmSynthSpec *s)
{
	s->arch = "bitnet";
}

static void test_bitnet_arch_output(void **st)
{
	/* arch bitnet has no output.weight and no rope_freqs: either is an error */
	for (int i = 0; i < 1024; i++)
		ones[i] = 1.0f;
	BnErr e = { 0 };
	const char *src = synth("bo.src.gguf", arch_bitnet);
	GgufFile *f = gguf_open(src, &e);
	Edit ed = { .extra = add_output, .other = f };
	expect_fail(edited(src, "bo.gguf", &ed), BN_EUNSUPPORTED,
		    "output.weight: unexpected tensor (arch bitnet");
	gguf_close(f);
	Edit ed2 = { .extra = add_rope_freqs };
	expect_fail(edited(src, "bo2.gguf", &ed2), BN_EUNSUPPORTED,
		    "rope_freqs.weight: unexpected tensor");
	/* but a .scale is welcome, and multiplies the projection */
	Edit ed3 = { .extra = add_scale };
	Model m = load(edited(src, "bo3.gguf", &ed3), &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	const IrNode *s = find_node(m.g, "blk.0.attn_q.scaled");
	assert_non_null(s);
	assert_int_equal(s->op, IR_OP_MUL);
	assert_int_equal(find_node(m.g, "blk.0.attn_q.rope")->in[0], s->out[0]);
	model_free(&m);
}

static bool nan_scale(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims, int64_t *ne,
		      const void **data, uint64_t *nbytes)
{
	if (strcmp(t->name, "blk.1.attn_output.weight") == 0) {
		Edit *m = (Edit *)ed;
		m->buf = malloc(*nbytes);
		memcpy(m->buf, *data, *nbytes);
		float nan = NAN;
		memcpy((uint8_t *)m->buf + 256 * 256 / 4, &nan, 4);
		*data = m->buf;
	}
	return true;
}

static void test_i2s_scale(void **st)
{
	Edit ed = { .tensor = nan_scale };
	expect_fail(edited(synth("sc.src.gguf", NULL), "sc.gguf", &ed), BN_EFORMAT,
		    "blk.1.attn_output.weight: the i2_s scale is nan");
}

/* Non-finite values: the bytes pz.bytes written at byte pz.off of tensor pz.name. */
static struct {
	const char *name;
	uint64_t off;
	uint8_t bytes[4];
	int n;
} pz;

static bool poison(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims, int64_t *ne,
		   const void **data, uint64_t *nbytes)
{
	if (strcmp(t->name, pz.name) == 0) {
		Edit *m = (Edit *)ed;
		assert_true(pz.off + (uint64_t)pz.n <= *nbytes);
		m->buf = malloc(*nbytes);
		memcpy(m->buf, *data, *nbytes);
		memcpy((uint8_t *)m->buf + pz.off, pz.bytes, (size_t)pz.n);
		*data = m->buf;
	}
	return true;
}

/* src with n bytes at byte off of tensor name replaced; must fail naming what. */
static void expect_poisoned(const char *src, const char *name, uint64_t off, const char *bytes,
			    int n, const char *what)
{
	pz.name = name;
	pz.off = off;
	pz.n = n;
	memcpy(pz.bytes, bytes, (size_t)n);
	Edit ed = { .tensor = poison };
	expect_fail(edited(src, "nf.gguf", &ed), BN_EFORMAT, what);
}

static const char F32_NAN[] = "\x00\x00\xc0\x7f", F32_INF[] = "\x00\x00\x80\x7f",
		  F32_NINF[] = "\x00\x00\x80\xff", F16_NAN[] = "\x00\x7e", F16_INF[] = "\x00\x7c",
		  BF16_NAN[] = "\xc0\x7f", BF16_NINF[] = "\x80\xff";

static void embd_f32(BnmSynthSpec *s)
{
	s->embd_type = IR_DT_F32;
}

static void embd_bf16(BnmSynthSpec *s)
{
	s->embd_type = IR_DT_BF16;
}

static void embd_q8_0(BnmSynthSpec *s)
{
	s->embd_type = IR_DT_Q8_0;
}

static void embd_q6_k(BnmSynthSpec *s)
{
	s->embd_type = IR_DT_Q6_K;
}

static void wtype_tq1(BnmSynthSpec *s)
{
	s->wtype = IR_DT_TQ1_0;
}

static void wtype_tq2(BnmSynthSpec *s)
{
	s->wtype = IR_DT_TQ2_0;
}

static void arch_bitnet_scales(BnmSynthSpec *s)
{
	s->arch = "bitnet";
	s->proj_scales = true;
}

static void test_nonfinite_norms(void **st)
{
	const char *src = synth("nf.src.gguf", NULL);
	expect_poisoned(src, "blk.1.ffn_norm.weight", 4 * 5, F32_NAN, 4,
			"blk.1.ffn_norm.weight: f32 element 5 is NaN");
	expect_poisoned(src, "output_norm.weight", 4 * 255, F32_INF, 4,
			"output_norm.weight: f32 element 255 is infinite");
	expect_poisoned(src, "blk.0.attn_sub_norm.weight", 0, F32_NINF, 4,
			"blk.0.attn_sub_norm.weight: f32 element 0 is infinite");
	/* the I2_S scale, Inf as well as NaN */
	expect_poisoned(src, "blk.0.ffn_up.weight", 256 * 768 / 4, F32_INF, 4,
			"blk.0.ffn_up.weight: the i2_s scale is inf");
	/* the bitnet arch's per-projection scales */
	const char *sc = synth("nf.sc.gguf", arch_bitnet_scales);
	expect_poisoned(sc, "blk.1.ffn_down.scale", 0, F32_NAN, 4,
			"blk.1.ffn_down.scale: f32 element 0 is NaN");
}

static void test_nonfinite_embd(void **st)
{
	/* f16 (the default): element 3 * 256 + 7 */
	const char *src = synth("nf.src.gguf", NULL);
	expect_poisoned(src, "token_embd.weight", 2 * (3 * 256 + 7), F16_NAN, 2,
			"token_embd.weight: f16 element 775 (row 3, column 7) is NaN");
	expect_poisoned(src, "token_embd.weight", 2 * (511 * 256 + 255), F16_INF, 2,
			"token_embd.weight: f16 element 131071 (row 511, column 255) is infinite");
	expect_poisoned(synth("nf.f32.gguf", embd_f32), "token_embd.weight", 4 * 4100, F32_NAN, 4,
			"token_embd.weight: f32 element 4100 (row 16, column 4) is NaN");
	const char *bf = synth("nf.bf16.gguf", embd_bf16);
	expect_poisoned(bf, "token_embd.weight", 2 * 9, BF16_NAN, 2,
			"token_embd.weight: bf16 element 9 (row 0, column 9) is NaN");
	expect_poisoned(bf, "token_embd.weight", 2 * 4096, BF16_NINF, 2,
			"token_embd.weight: bf16 element 4096 (row 16, column 0) is infinite");
	/* block types: the f16 scale d, first in a Q8_0 block of 34 bytes, last in Q6_K's 210 */
	expect_poisoned(synth("nf.q8.gguf", embd_q8_0), "token_embd.weight", 34 * 9, F16_NAN, 2,
			"token_embd.weight: the f16 scale of q8_0 block 9 (from element 288 (row 1, "
			"column 32)) is NaN");
	expect_poisoned(synth("nf.q6.gguf", embd_q6_k), "token_embd.weight", 210 * 2 + 208,
			F16_INF, 2, "the f16 scale of q6_k block 2 (from element 512 (row 2, column 0))"
			" is infinite");
	/* a value with the exponent bits of a NaN in the quants of a block is just a quant */
	const char *q8 = synth("nf.q8b.gguf", embd_q8_0);
	pz.name = "token_embd.weight";
	pz.off = 34 * 9 + 2;
	pz.n = 2;
	memcpy(pz.bytes, F16_NAN, 2);
	Edit ed = { .tensor = poison };
	BnErr e = { 0 };
	Model m = load(edited(q8, "nf.ok.gguf", &ed), &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	model_free(&m);
}

static void test_nonfinite_ternary_scales(void **st)
{
	/* TQ1_0 blocks: 54 bytes, d last; TQ2_0: 66 bytes */
	expect_poisoned(synth("nf.tq1.gguf", wtype_tq1), "blk.0.attn_k.weight", 54 * 3 + 52,
			F16_NAN, 2, "blk.0.attn_k.weight: the f16 scale of tq1_0 block 3 (from "
			"element 768 (row 3, column 0)) is NaN");
	expect_poisoned(synth("nf.tq2.gguf", wtype_tq2), "blk.1.ffn_down.weight", 66 + 64,
			F16_INF, 2, "blk.1.ffn_down.weight: the f16 scale of tq2_0 block 1");
}

/* A tensor the graph never reads (the tied arch's output.weight) is not scanned. */
static void add_nan_output(const Edit *ed, GgufWriter *w)
{
	int64_t ne[2] = { 256, 512 };
	static uint16_t nan_embd[256 * 512];
	for (size_t i = 0; i < sizeof nan_embd / sizeof nan_embd[0]; i++)
		nan_embd[i] = 0x7e00;
	assert_int_equal(gguf_writer_tensor(w, "output.weight", 1, 2, ne, nan_embd,
					    sizeof nan_embd, NULL),
			 0);
}

static void test_nonfinite_unread(void **st)
{
	Edit ed = { .extra = add_nan_output };
	BnErr e = { 0 };
	Model m = load(edited(synth("nf.out.src.gguf", NULL), "nf.out.gguf", &ed), &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	model_free(&m);
}

static void test_embd_types(void **st)
{
	/* the head reads token_embd in whatever type it has */
	static const IrDtype types[] = { IR_DT_F32, IR_DT_BF16, IR_DT_Q8_0, IR_DT_Q6_K };
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		BnmSynthSpec s;
		BnErr e = { 0 };
		bnm_synth_shape(&s, "tiny", &e);
		s.n_layer = 1;
		s.embd_type = types[i];
		const char *p = tu_tmp("embd.gguf");
		assert_int_equal(bnm_synth_write(&s, p, &e), 0);
		Model m = load(p, &e);
		if (!m.g)
			fail_msg("%s: %s", ir_dtype_name(types[i]), e.msg);
		const IrNode *head = find_node(m.g, "result_output");
		assert_int_equal(m.g->values[head->in[1]].dtype, types[i]);
		model_free(&m);
	}
}

static void test_graph_name(void **st)
{
	Edit ed = { .drop_key = "general.name" };
	BnErr e = { 0 };
	Model m = load(edited(synth("gn.src.gguf", NULL), "my-model.gguf", &ed), &e);
	assert_non_null(m.g);
	assert_string_equal(m.g->name, "my-model");
	model_free(&m);
}

/* ---- arch llama ------------------------------------------------------------------ */

/* The llama golden shape, 2 layers. */
static const char *synth_llama(const char *name)
{
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tinyllama", &e), 0);
	s.n_layer = 2;
	const char *path = tu_tmp(name);
	if (bnm_synth_write(&s, path, &e))
		fail_msg("synth %s: %s", name, e.msg);
	return path;
}

static void check_llama(const char *path, int n_layer, const char *head_name)
{
	BnErr e = { 0 };
	Model m = load(path, &e);
	if (!m.g)
		fail_msg("%s", e.msg);
	IrGraph *g = m.g;
	assert_string_equal(g->arch, "llama");
	assert_int_equal(g->hp.n_layer, n_layer);
	/* no sub-norms: 2 norms per layer fewer than the bitnet archs */
	assert_int_equal(g->n_nodes, expected_nodes(n_layer) - 2 * n_layer);
	assert_int_equal(count_op(g, IR_OP_RMSNORM), 2 * n_layer + 1);
	assert_int_equal(count_op(g, IR_OP_SILU_GLU), n_layer);
	assert_int_equal(count_op(g, IR_OP_RELU2_GLU), 0);
	assert_int_equal(count_op(g, IR_OP_TERNARY_MATMUL), 7 * n_layer);
	assert_null(find_node(g, "blk.0.attn_sub_norm"));
	assert_null(find_node(g, "blk.0.ffn_sub_norm"));
	/* attention output straight into attn_output, the GLU straight into ffn_down */
	const IrNode *o = find_node(g, "blk.1.attn_output");
	const IrNode *qa = &g->nodes[g->values[o->in[0]].producer];
	assert_int_equal(g->nodes[g->values[qa->in[0]].producer].op, IR_OP_ATTENTION);
	const IrNode *d = find_node(g, "blk.1.ffn_down");
	qa = &g->nodes[g->values[d->in[0]].producer];
	assert_int_equal(g->nodes[g->values[qa->in[0]].producer].op, IR_OP_SILU_GLU);
	const IrNode *rq = find_node(g, "blk.1.attn_k.rope");
	assert_string_equal(ir_attr_str(rq, "mode", ""), "normal");
	const IrNode *head = find_node(g, "result_output");
	assert_string_equal(g->values[head->in[1]].name, head_name);
	assert_int_equal(ir_verify(g, &e), 0);
	model_free(&m);
}

static void test_llama(void **st)
{
	check_llama(synth_llama("ll.gguf"), 2, "output.weight");
	/* without output.weight the head is token_embd, as the reference falls back */
	Edit ed = { .drop_tensor = "output.weight" };
	check_llama(edited(synth_llama("ll2.src.gguf"), "ll2.gguf", &ed), 2, "token_embd.weight");
}

/* blk.1.attn_k.weight retyped to ggml type retype_id, zero data (the reader itself refuses
 * the types bitnetc has no format for, e.g. Q4_0) */
static uint32_t retype_id;
static bool retype_k(const Edit *ed, const GgufTensor *t, uint32_t *type, int *n_dims,
		     int64_t *ne, const void **data, uint64_t *nbytes)
{
	if (strcmp(t->name, "blk.1.attn_k.weight") == 0) {
		Edit *m = (Edit *)ed;
		uint64_t n = (uint64_t)ne[0] * (uint64_t)ne[1];
		*type = retype_id;
		*nbytes = retype_id == 8	? n / 32 * 34
			  : retype_id == 14 ? n / 256 * 210
					    : n * (retype_id == 0 ? 4 : 2);
		m->buf = calloc(1, *nbytes);
		*data = m->buf;
	}
	return true;
}

static void test_llama_float_proj(void **st)
{
	/* The reference runs float or other quantized projections of arch llama as they are,
	 * not ternary: refused, naming the tensor and its type. */
	static const struct {
		uint32_t id;
		const char *msg;
	} cases[] = {
		{ 1, "blk.1.attn_k.weight: unsupported type f16 for arch llama (expected i2_s" },
		{ 0, "blk.1.attn_k.weight: unsupported type f32 for arch llama" },
		{ 30, "blk.1.attn_k.weight: unsupported type bf16 for arch llama" },
		{ 8, "blk.1.attn_k.weight: unsupported type q8_0 for arch llama" },
		{ 14, "blk.1.attn_k.weight: unsupported type q6_k for arch llama" },
	};
	const char *src = synth_llama("lf.src.gguf");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		retype_id = cases[i].id;
		Edit ed = { .tensor = retype_k };
		expect_fail(edited(src, "lf.gguf", &ed), BN_EUNSUPPORTED, cases[i].msg);
	}
}

static void add_experts(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "llama.expert_count", 8);
}

static void add_rope_scaling(const Edit *ed, GgufWriter *w)
{
	gguf_writer_f32(w, "llama.rope.scaling.factor", 8.0f);
}

static void add_rope_scaling_one(const Edit *ed, GgufWriter *w)
{
	gguf_writer_f32(w, "llama.rope.scaling.factor", 1.0f);
	gguf_writer_u32(w, "llama.expert_count", 0);
}

static void add_key_length(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "llama.attention.key_length", 128);
}

static void add_value_length_same(const Edit *ed, GgufWriter *w)
{
	gguf_writer_u32(w, "llama.attention.value_length", 64);
}

static void test_llama_unsupported_keys(void **st)
{
	const char *src = synth_llama("lk.src.gguf");
	Edit ed = { .extra = add_experts };
	expect_fail(edited(src, "lk.gguf", &ed), BN_EUNSUPPORTED,
		    "llama.expert_count: 8: mixture-of-experts models are not supported");
	Edit ed2 = { .extra = add_rope_scaling };
	expect_fail(edited(src, "lk2.gguf", &ed2), BN_EUNSUPPORTED,
		    "llama.rope.scaling.factor: 8: RoPE frequency scaling is not supported");
	Edit ed4 = { .extra = add_key_length };
	expect_fail(edited(src, "lk4.gguf", &ed4), BN_EUNSUPPORTED,
		    "llama.attention.key_length: 128, expected the head size 64");
	Edit ed5 = { .extra = add_value_length_same };
	check_llama(edited(src, "lk5.gguf", &ed5), 2, "output.weight");
	/* the neutral values are accepted */
	Edit ed3 = { .extra = add_rope_scaling_one };
	check_llama(edited(src, "lk3.gguf", &ed3), 2, "output.weight");
}

static void test_llama_synth_spec(void **st)
{
	/* the generator refuses what the loader would refuse */
	BnmSynthSpec s;
	BnErr e = { 0 };
	assert_int_equal(bnm_synth_shape(&s, "tinyllama", &e), 0);
	s.wtype = IR_DT_F16;
	assert_int_equal(bnm_synth_write(&s, tu_tmp("lbad.gguf"), &e), BN_EINVAL);
	assert_has(e.msg, "arch llama reads only ternary projections");
	assert_int_equal(bnm_synth_shape(&s, "tinyllama", &e), 0);
	s.arch = "bitnet-b1.58";
	assert_int_equal(bnm_synth_write(&s, tu_tmp("lbad.gguf"), &e), BN_EINVAL);
	assert_has(e.msg, "untied_head");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_i2s),
		cmocka_unit_test(test_golden_tq1),
		cmocka_unit_test(test_golden_tq2),
		cmocka_unit_test(test_golden_old),
		cmocka_unit_test(test_archs),
		cmocka_unit_test(test_unknown_arch),
		cmocka_unit_test(test_bitnet25),
		cmocka_unit_test(test_missing_tensor),
		cmocka_unit_test(test_wrong_shape),
		cmocka_unit_test(test_f16_projection),
		cmocka_unit_test(test_norm_type),
		cmocka_unit_test(test_k_not_block),
		cmocka_unit_test(test_rope_dim),
		cmocka_unit_test(test_heads),
		cmocka_unit_test(test_vocab),
		cmocka_unit_test(test_missing_key),
		cmocka_unit_test(test_absurd_values),
		cmocka_unit_test(test_per_layer),
		cmocka_unit_test(test_optional_tensors),
		cmocka_unit_test(test_bitnet_arch_output),
		cmocka_unit_test(test_i2s_scale),
		cmocka_unit_test(test_nonfinite_norms),
		cmocka_unit_test(test_nonfinite_embd),
		cmocka_unit_test(test_nonfinite_ternary_scales),
		cmocka_unit_test(test_nonfinite_unread),
		cmocka_unit_test(test_embd_types),
		cmocka_unit_test(test_graph_name),
		cmocka_unit_test(test_llama),
		cmocka_unit_test(test_llama_float_proj),
		cmocka_unit_test(test_llama_unsupported_keys),
		cmocka_unit_test(test_llama_synth_spec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
