/* fuzz_model.c - libFuzzer harness: a GGUF that the reader accepts goes through what
 * `bitnetc build` does with it before the passes: the BitNet lowering (bnm_hparams,
 * bnm_load), the verifier, shape inference and the printer on the graph, and the tokenizer
 * metadata (bnm_tok_load: tokenizer.ggml.* into the runtime's blob), which the program's
 * loader (rt_tok_open) must then accept and use on a fixed text.
 *
 * An input that starts with the blob's magic ("BNTK") is a tokenizer blob instead, as a
 * program would find it in a corrupt payload: rt_tok_open either refuses it with a message or
 * gives a tokenizer that encodes and decodes without a bad access and with ids in range.
 * BN_FUZZ_BLOB_DIR=DIR writes the blob of each GGUF input there (how corpus-model got its
 * blob seeds). */
#include "frontend.h"
#include "rt_tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* UndefinedBehaviorSanitizer findings are crashes too (libFuzzer then keeps the input). */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

static FILE *devnull; /* the printers' output; opened once */

/* Every failure explains itself: a code and a message. */
static void explained(const BnErr *e)
{
	if (!e->code || !e->msg[0])
		abort();
}

static void check_graph(const GgufFile *f)
{
	BnErr e = {0};
	IrHparams hp;
	int hrc = bnm_hparams(f, &hp, &e);
	if (hrc)
		explained(&e);
	memset(&e, 0, sizeof e);
	IrGraph *g = bnm_load(f, &e);
	if (!g) {
		explained(&e);
		return;
	}
	/* A model that lowers has readable hyperparameters, the same ones. */
	if (hrc || g->hp.n_vocab != hp.n_vocab || g->hp.n_layer != hp.n_layer)
		abort();
	if (ir_verify(g, &e) != BN_OK)
		abort();
	int filled = -1;
	if (ir_infer_shapes(g, &filled, &e) != BN_OK || filled != 0)
		abort(); /* every output is typed, and as its rule says */
	ir_print(g, devnull);
	ir_graph_free(g);
}

/* The program's tokenizer on a fixed text: ids in range, pieces readable. */
static void use_tokenizer(const RtTok *t)
{
	static const char text[] = "Hello, world! 123 h\xc3\xa9llo \xff\xfe <|eot_id|><s></s> "
				   "\xe2\x96\x81x\n\n  end";
	int32_t n_vocab = rt_tok_n_vocab(t);
	if (n_vocab < 1 || rt_tok_bos(t) < -1 || rt_tok_bos(t) >= n_vocab)
		abort();
	for (int flags = 0; flags < 4; flags++) {
		int32_t *ids;
		int n;
		RtErr e = {0};
		if (rt_tok_encode(t, text, sizeof text - 1, flags, &ids, &n, &e) != RT_OK)
			abort(); /* any text encodes */
		for (int i = 0; i < n; i++)
			if (ids[i] < 0 || ids[i] >= n_vocab)
				abort();
		free(ids);
	}
	char buf[64];
	for (int32_t id = 0; id < n_vocab; id++)
		if (rt_tok_piece(t, id, true, buf, (int)sizeof buf) < 0 ||
		    rt_tok_piece(t, id, false, buf, 1) < 0)
			abort();
	if (rt_tok_piece(t, n_vocab, true, buf, (int)sizeof buf) != -1 ||
	    rt_tok_piece(t, -1, true, buf, (int)sizeof buf) != -1)
		abort();
	(void)rt_tok_is_eog(t, -1);
	(void)rt_tok_is_eog(t, n_vocab);
	(void)rt_tok_add_bos(t);
}

/* Keeps the blob for the corpus when BN_FUZZ_BLOB_DIR asks for it. */
static void dump_blob(const BnmTok *bt)
{
	const char *dir = getenv("BN_FUZZ_BLOB_DIR");
	if (!dir || !*dir)
		return;
	char path[1024];
	snprintf(path, sizeof path, "%s/blob-%s-%zu", dir, bt->kind, bt->size);
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(bt->blob, 1, bt->size, f);
		fclose(f);
	}
}

static void check_blob(const uint8_t *data, size_t size)
{
	RtErr e = {0};
	RtTok *t = rt_tok_open(data, size, &e);
	if (!t) {
		if (!e.code || !e.msg[0])
			abort();
		return;
	}
	use_tokenizer(t);
	rt_tok_free(t);
}

static void check_tokenizer(const GgufFile *f)
{
	BnErr e = {0};
	BnmTok bt;
	if (bnm_tok_load(f, &bt, &e) != BN_OK) {
		explained(&e);
		if (bt.blob)
			abort();
		return;
	}
	if (!bt.blob) {
		if (!bt.none_why[0])
			abort();
		return;
	}
	RtErr re = {0};
	RtTok *t = rt_tok_open(bt.blob, bt.size, &re);
	if (!t)
		abort(); /* a blob the builder made opens */
	if (rt_tok_n_vocab(t) != bt.n_tokens || rt_tok_bos(t) != bt.bos ||
	    rt_tok_add_bos(t) != bt.add_bos)
		abort();
	for (int i = 0; i < bt.n_eog; i++)
		if (!rt_tok_is_eog(t, bt.eog[i]))
			abort();
	if (bt.eos >= 0 && !rt_tok_is_eog(t, bt.eos))
		abort();
	use_tokenizer(t);
	dump_blob(&bt);
	if (bt.chat_template) {
		RtChatMsg m[2] = {{"system", "Be brief."}, {"user", "Hi <|eot_id|>"}};
		char *s = rt_chat_render((RtChatTemplate)bt.chat_template, m, 2, true);
		int32_t *ids;
		int n;
		if (!s || rt_tok_encode(t, s, strlen(s), RT_TOK_PARSE_SPECIAL | RT_TOK_ADD_BOS,
					&ids, &n, &re) != RT_OK)
			abort();
		free(ids);
		free(s);
	}
	rt_tok_free(t);
	bnm_tok_free(&bt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devnull && !(devnull = fopen("/dev/null", "w")))
		abort();
	if (size >= 4 && !memcmp(data, "BNTK", 4)) {
		check_blob(data, size);
		return 0;
	}
	BnErr e = {0};
	GgufFile *f = gguf_open_mem(data, size, "fuzz.gguf", &e);
	if (!f)
		return 0; /* fuzz_gguf covers the reader's errors */
	check_graph(f);
	check_tokenizer(f);
	gguf_close(f);
	return 0;
}
