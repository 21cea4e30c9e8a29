/* fuzz_tok.c - libFuzzer harness: arbitrary bytes (up to 4 KiB) through the program's
 * tokenizer, encoded and decoded with three vocabularies: the Llama 3 byte-level BPE one
 * (tests/data/tokenizer, as `bitnetc mkmodel --llama3-vocab` writes it), the same split as
 * Falcon 3 (`--pre falcon3`) and the small SentencePiece one of `bitnetc mkmodel
 * --spm-vocab`. All are built once, at start-up, the way `bitnetc build` builds them: a
 * GGUF's tokenizer.ggml.* through bnm_tok_load into the blob, opened with rt_tok_open.
 *
 * Encoding never fails on content, and its ids are in range. Round trips, for any bytes s
 * (valid UTF-8 or not: both vocabularies have a token for every byte, so no byte is lost),
 * where decode concatenates rt_tok_piece of each id:
 *   1. decode(encode(s, no flags), control text off) == P(s)
 *   2. decode(encode(s, RT_TOK_PARSE_SPECIAL), control text on) == P(s)
 *   3. encode(s, RT_TOK_ADD_BOS | RT_TOK_PARSE_SPECIAL) is BOS followed by 2.'s ids
 *   4. the streaming decoder (rt_detok_push per piece, then rt_detok_flush) gives 2.'s bytes
 * P(s) is s for BPE. SentencePiece puts a space in front of each run of text between
 * special tokens (and at the start), as llama.cpp does (add_space_prefix): the first piece of
 * each run must start with that space, and P drops it, so P(s) is s again. Without
 * RT_TOK_PARSE_SPECIAL, text like <|eot_id|> or </s> is plain text and comes back as such;
 * with it, it becomes the control token, whose text comes back only with control text on. */
#include "frontend.h"
#include "rt_tok_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef BN_FUZZ_DATA_DIR
#define BN_FUZZ_DATA_DIR "build/data"
#endif

enum { MAX_TEXT = 4096, MAX_PIECE = 1024 };

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* UndefinedBehaviorSanitizer findings are crashes too (libFuzzer then keeps the input). */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

typedef struct {
	const char *name;
	void *blob;
	RtTok *t;
} Vocab;

static Vocab vocabs[3];

static void die(const char *what, const char *why)
{
	fprintf(stderr, "fuzz_tok: %s: %s\n", what, why);
	exit(2);
}

/* Writes a one-layer synthetic model with the vocabulary s asks for, reads its tokenizer
 * back as `bitnetc build` does, and opens the blob. */
static void load(Vocab *v, const char *name, BnmSynthSpec *s)
{
	const char *tmp = getenv("TMPDIR");
	char path[1024];
	snprintf(path, sizeof path, "%s/fuzz_tok_XXXXXX", tmp && *tmp ? tmp : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		die(path, "cannot create a temporary file");
	close(fd);
	BnErr e = {0};
	RtErr re = {0};
	BnmTok bt;
	GgufFile *f = NULL;
	s->n_layer = 1, s->n_embd = 32, s->n_ff = 32, s->n_head = 2, s->n_head_kv = 1;
	s->n_ctx = 16, s->wtype = IR_DT_F16, s->embd_type = IR_DT_Q8_0;
	if (bnm_synth_write(s, path, &e) || !(f = gguf_open(path, &e)) ||
	    bnm_tok_load(f, &bt, &e)) {
		unlink(path);
		die(name, e.msg);
	}
	gguf_close(f);
	unlink(path);
	if (!bt.blob)
		die(name, bt.none_why);
	v->name = name;
	v->blob = bt.blob;
	if (!(v->t = rt_tok_open(bt.blob, bt.size, &re)))
		die(name, re.msg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char dir[1024];
	const char *d = getenv("BITNETC_DATA_DIR");
	snprintf(dir, sizeof dir, "%s/llama3", d && *d ? d : BN_FUZZ_DATA_DIR);
	BnmSynthSpec s;
	BnErr e = {0};
	if (bnm_synth_shape(&s, "tiny", &e))
		die("tiny", e.msg);
	BnmSynthSpec bpe = s, spm = s;
	bpe.vocab_dir = dir;
	bpe.n_vocab = 128256;
	spm.spm_vocab = true;
	BnmSynthSpec falcon = bpe;
	falcon.pre = "falcon3";
	load(&vocabs[0], "Llama 3 BPE", &bpe);
	load(&vocabs[1], "SentencePiece", &spm);
	load(&vocabs[2], "Falcon 3 BPE", &falcon);
	return 0;
}

/* Where a check fails: what, for which vocabulary, then a crash for libFuzzer. */
static void broken(const Vocab *v, const char *what)
{
	fprintf(stderr, "fuzz_tok: %s: %s\n", v->name, what);
	abort();
}

static int32_t *encode(const Vocab *v, const uint8_t *s, size_t n, int flags, int *k)
{
	int32_t *ids;
	RtErr e = {0};
	if (rt_tok_encode(v->t, (const char *)s, n, flags, &ids, k, &e) != RT_OK)
		broken(v, "encode failed");
	for (int i = 0; i < *k; i++)
		if (ids[i] < 0 || ids[i] >= rt_tok_n_vocab(v->t))
			broken(v, "an id out of range");
	return ids;
}

static bool is_special(const RtTok *t, int32_t id)
{
	return t->types[id] == RT_TT_CONTROL || t->types[id] == RT_TT_USER;
}

/* P(decode(ids)) into out (see the header); compares with s. Returns the decoded length
 * before P (what the streaming decoder must give) into *raw when raw is not NULL. */
static void round_trip(const Vocab *v, const int32_t *ids, int k, bool special, const uint8_t *s,
		       size_t n, uint8_t *out, uint8_t *raw, size_t *raw_n)
{
	bool spm = v->t->kind == RT_TOK_SPM && (v->t->flags & RT_TOKF_SPACE_PREFIX);
	bool run_start = true;
	size_t o = 0, r = 0;
	char piece[MAX_PIECE];
	for (int i = 0; i < k; i++) {
		int len = rt_tok_piece(v->t, ids[i], special, piece, MAX_PIECE);
		if (len < 0 || len > MAX_PIECE || r + (size_t)len > 2 * MAX_TEXT)
			broken(v, "a piece out of bounds");
		if (raw)
			memcpy(raw + r, piece, (size_t)len);
		r += (size_t)len;
		int skip = 0;
		if (is_special(v->t, ids[i])) {
			run_start = true;
		} else if (run_start) {
			run_start = false;
			if (spm) {
				if (len < 1 || piece[0] != ' ')
					broken(v, "a run of text without its space prefix");
				skip = 1;
			}
		}
		memcpy(out + o, piece + skip, (size_t)(len - skip));
		o += (size_t)(len - skip);
	}
	if (raw_n)
		*raw_n = r;
	if (o != n || memcmp(out, s, n) != 0)
		broken(v, special ? "decode(encode(s, parse special)) != s" : "decode(encode(s)) != s");
}

static void check(const Vocab *v, const uint8_t *s, size_t n)
{
	static uint8_t out[2 * MAX_TEXT], raw[2 * MAX_TEXT], stream[2 * MAX_TEXT + MAX_PIECE];
	int k1, k2, k3;
	int32_t *plain = encode(v, s, n, 0, &k1);
	for (int i = 0; i < k1; i++)
		if (v->t->types[plain[i]] == RT_TT_CONTROL)
			broken(v, "a control token without special parsing");
	round_trip(v, plain, k1, false, s, n, out, NULL, NULL);
	free(plain);

	int32_t *sp = encode(v, s, n, RT_TOK_PARSE_SPECIAL, &k2);
	size_t raw_n;
	round_trip(v, sp, k2, true, s, n, out, raw, &raw_n);

	int32_t *bos = encode(v, s, n, RT_TOK_PARSE_SPECIAL | RT_TOK_ADD_BOS, &k3);
	int32_t b = rt_tok_bos(v->t);
	int lead = b >= 0;
	if (k3 != k2 + lead || (lead && bos[0] != b) ||
	    (k2 && memcmp(bos + lead, sp, (size_t)k2 * sizeof *sp) != 0))
		broken(v, "ADD_BOS is not BOS + the same ids");
	free(bos);

	RtDetok d = {0};
	size_t o = 0;
	char piece[MAX_PIECE];
	for (int i = 0; i < k2; i++) {
		int len = rt_tok_piece(v->t, sp[i], true, piece, MAX_PIECE);
		o += rt_detok_push(&d, piece, (size_t)len, (char *)stream + o);
	}
	o += rt_detok_flush(&d, (char *)stream + o);
	if (o != raw_n || memcmp(stream, raw, o) != 0)
		broken(v, "the streaming decoder differs from the pieces");
	free(sp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_TEXT)
		return 0;
	for (int i = 0; i < 3; i++)
		check(&vocabs[i], data, size);
	return 0;
}
