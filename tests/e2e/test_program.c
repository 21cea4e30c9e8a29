/* test_program.c - a built program meets broken inputs: damaged weights (--verify), weights that overflow to NaN/Inf, a tokenizer smaller than the vocabulary, NUL bytes in text, output that cannot be written. */
#include "testutil.h"
#include "frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_VOCAB 600
#define N_TOK 590 /* the padded model's tokenizer: its last 10 embedding rows have no token */

static char gguf[1200], prog[1200], src[1200];
static char pgguf[1200], pprog[1200]; /* the padded vocabulary */

/* The Llama 3 chat tokens where Llama 3 has them, counted from BOS (the synthetic
 * vocabulary's control tokens after BOS and EOS are reserved ones until renamed). */
static const struct {
	int at;
	const char *name;
} chat_tokens[] = {{6, "<|start_header_id|>"}, {7, "<|end_header_id|>"}, {9, "<|eot_id|>"}};

/* A copy of in whose tokenizer keeps its first n tokens (the reserved control tokens at
 * the end go; with chat, the Llama 3 chat tokens renamed in at their places after bos),
 * every other key and tensor as they are. */
static int write_vocab(const char *in, const char *out, uint64_t n, int64_t chat_bos)
{
	BnErr e = {0};
	GgufFile *f = gguf_open(in, &e);
	if (!f)
		return -1;
	GgufWriter *w = gguf_writer_new();
	char **strs = calloc(n, sizeof *strs);
	int rc = 0;
	for (uint64_t i = 0; i < f->n_kv && !rc; i++) {
		const GgufKV *kv = &f->kv[i];
		const GgufValue *v = &kv->val;
		if (!strcmp(kv->key, "tokenizer.ggml.tokens")) {
			for (uint64_t j = 0; j < n; j++) {
				GgufValue el;
				GgufStr s;
				if (!gguf_value_elem(v, j, &el) || !gguf_value_str(&el, &s))
					return -1;
				strs[j] = strndup(s.ptr, (size_t)s.len);
			}
			for (size_t c = 0; chat_bos >= 0 && c < sizeof chat_tokens / sizeof chat_tokens[0];
			     c++)
				if ((uint64_t)(chat_bos + chat_tokens[c].at) < n) {
					free(strs[chat_bos + chat_tokens[c].at]);
					strs[chat_bos + chat_tokens[c].at] = strdup(chat_tokens[c].name);
				}
			gguf_writer_arr_str(w, kv->key, (const char *const *)strs, n);
		} else if (!strcmp(kv->key, "tokenizer.ggml.token_type") ||
			   !strcmp(kv->key, "tokenizer.ggml.scores")) {
			gguf_writer_arr(w, kv->key, v->arr_type, v->data, n); /* 4-byte elements */
		} else if (v->type == GGUF_T_ARRAY) {
			gguf_writer_raw(w, kv->key, v->type, v->data - 12, v->size + 12);
		} else {
			gguf_writer_raw(w, kv->key, v->type, v->data, v->size);
		}
	}
	for (uint64_t i = 0; i < f->n_tensors && !rc; i++) {
		const GgufTensor *t = &f->tensors[i];
		rc = gguf_writer_tensor(w, t->name, t->ggml_type, t->n_dims, t->ne, t->data, t->nbytes,
					&e);
	}
	if (!rc)
		rc = gguf_writer_write(w, out, &e);
	if (rc)
		fprintf(stderr, "writing %s: %s\n", out, e.msg);
	for (uint64_t j = 0; j < n; j++)
		free(strs[j]);
	free(strs);
	gguf_writer_free(w);
	gguf_close(f);
	return rc;
}

/* 2 layers and a 600-token vocabulary with the Llama 3 chat tokens (model.c kept in src);
 * the same with a 590-token tokenizer. */
static int setup(void **state)
{
	(void)state;
	snprintf(gguf, sizeof gguf, "%s", tu_tmp("prog_v600.gguf"));
	snprintf(prog, sizeof prog, "%s", tu_tmp("prog_v600"));
	snprintf(src, sizeof src, "%s", tu_tmp("prog_v600_src"));
	snprintf(pgguf, sizeof pgguf, "%s", tu_tmp("prog_v600_t590.gguf"));
	snprintf(pprog, sizeof pprog, "%s", tu_tmp("prog_v600_t590"));
	char *log = NULL;
	char raw[1200];
	snprintf(raw, sizeof raw, "%s", tu_tmp("prog_v600_raw.gguf"));
	int rc = tu_run(&log, "rm -rf '%s' && '%s' mkmodel --layers 2 --vocab %d --seed 5 -o '%s'",
			src, tu_bitnetc(), N_VOCAB, raw);
	/* BOS is the first control token: 600 - 16 reserved at the end of the vocabulary */
	if (!rc)
		rc = write_vocab(raw, gguf, N_VOCAB, N_VOCAB - 16);
	if (!rc) {
		free(log);
		log = NULL;
		rc = tu_run(&log, "'%s' build '%s' -o '%s' --emit-c '%s'", tu_bitnetc(), gguf, prog,
			    src);
	}
	if (rc) {
		fprintf(stderr, "making the model failed:\n%s\n", log ? log : "");
		free(log);
		return -1;
	}
	free(log);
	return write_vocab(gguf, pgguf, N_TOK, -1) ? -1 : 0;
}

/* Runs a shell command; fails the test unless it exits with want. Returns its output
 * (stdout and stderr). */
/* The program's bytes; *pay gets the payload's file offset (from the trailer). */
static uint8_t *read_prog(const char *path, size_t *n, uint64_t *pay, uint64_t *size)
{
	uint8_t *b = tu_read_file(path, n);
	assert_non_null(b);
	assert_true(*n > 32 && memcmp(b + *n - 32, "BNWEIGHT", 8) == 0);
	*pay = tu_le64(b + *n - 24);
	*size = tu_le64(b + *n - 16);
	return b;
}

static void write_prog(const char *path, const uint8_t *b, size_t n)
{
	assert_int_equal(tu_write_file(path, b, n), 0);
	assert_int_equal(chmod(path, 0755), 0);
}

/* The payload offset in the first call text after the forward's comment naming node
 * (from the kept model.c): the weight that node reads. */
static uint64_t weight_after(const char *node, const char *call)
{
	size_t n;
	char path[1300], *c;
	snprintf(path, sizeof path, "%s/model.c", src);
	char *text = tu_read_file(path, &n);
	assert_non_null(text);
	char *t = realloc(text, n + 1);
	assert_non_null(t);
	t[n] = 0;
	/* the forward's comment lines: a tab, then "8: NODE (op)" in a comment */
	char *at = NULL;
	for (char *l = strstr(t, "\n\t/* "); l && !at; l = strstr(l + 1, "\n\t/* ")) {
		char *eol = strchr(l + 1, '\n'), *hit = strstr(l, node);
		if (hit && (!eol || hit < eol))
			at = hit;
	}
	if (!at || !(c = strstr(at, call)))
		fail_msg("model.c: no \"%s\" after \"%s\"", call, node);
	unsigned long long off = strtoull(c + strlen(call), NULL, 10);
	free(t);
	return off;
}

/* --verify hashes the whole payload: OK as built, exit 2 after one flipped byte, in the
 * program and in a weights file; a normal start stays lazy. */
static void test_verify(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "'%s' --verify", prog);
	if (strncmp(out, "weights OK (", 12) != 0 || !strstr(out, " MiB, ") || !strstr(out, "GB/s)"))
		fail_msg("--verify: %s", out);
	free(out);
	size_t n;
	uint64_t pay, size;
	uint8_t *b = read_prog(prog, &n, &pay, &size);
	/* the payload alone, as a weights file (payload at 0, its trailer) */
	const char *wf = tu_tmp("prog_v600_weights.bin"), *wbad = tu_tmp("prog_v600_weights_bad.bin");
	uint8_t *w = malloc(size + 32);
	memcpy(w, b + pay, size);
	memcpy(w + size, b + n - 32, 32);
	memset(w + size + 8, 0, 8); /* offset 0 */
	assert_int_equal(tu_write_file(wf, w, size + 32), 0);
	out = tu_run_ok(0, "'%s' --weights-file '%s' --verify", prog, wf);
	tu_expect_has(out, "weights OK");
	free(out);
	w[size / 2] ^= 0x01;
	assert_int_equal(tu_write_file(wbad, w, size + 32), 0);
	out = tu_run_ok(2, "'%s' --weights-file '%s' --verify", prog, wbad);
	tu_expect_has(out, "prog_v600_weights_bad.bin: the weights payload is damaged");
	free(out);
	free(w);
	/* a flipped byte in the middle of the appended payload */
	const char *bad = tu_tmp("prog_v600_flipped");
	b[pay + size / 3] ^= 0x80;
	write_prog(bad, b, n);
	free(b);
	out = tu_run_ok(0, "'%s' --tokens 1,2 -n 2 --temp 0 2>/dev/null", bad);
	free(out);
	out = tu_run_ok(2, "'%s' --verify", bad);
	tu_expect_has(out, "the weights payload is damaged");
	if (strstr(out, "weights OK"))
		fail_msg("--verify passed a flipped byte: %s", out);
	free(out);
}

/* A NaN in an embedding row, and norm weights that make layer 1 overflow: exit 2 naming
 * the token, its position and the layer, instead of ids sampled from NaN logits. */
static void test_nonfinite(void **state)
{
	(void)state;
	size_t n;
	uint64_t pay, size;
	uint8_t *b = read_prog(prog, &n, &pay, &size);
	/* embed_f16_k256_v600(W + OFF, ...): row 7 gets an f16 NaN */
	uint64_t emb = weight_after("(embed)", "(W + ");
	b[pay + emb + 7 * 256 * 2 + 20] = 0x00;
	b[pay + emb + 7 * 256 * 2 + 21] = 0x7e;
	const char *nan = tu_tmp("prog_v600_nan");
	write_prog(nan, b, n);
	char *out = tu_run_ok(2, "'%s' --tokens 3,7,5 -n 4 --temp 0", nan);
	tu_expect_has(out, "the embedding row of token 7 (position 1) is not finite");
	free(out);
	out = tu_run_ok(2, "'%s' --tokens 3,7,5 -n 4 --temp 0 -ub 1", nan);
	tu_expect_has(out, "token 7 (position 1)");
	free(out);
	/* the head shares the embedding table (no output.weight): row 7 makes logit 7 NaN
	 * for every token, which the runtime's check of the logits rows catches */
	out = tu_run_ok(2, "'%s' --tokens 3,5 -n 2 --temp 0", nan);
	tu_expect_has(out, "the logits of position 1 (token 5) are NaN or Inf");
	free(out);
	free(b);

	/* layer 1's attention sub-norm weights at 3e38: its normed rows overflow to Inf, so
	 * the attention output and the residual after it go NaN/Inf in layer 1 */
	b = read_prog(prog, &n, &pay, &size);
	uint64_t sub = weight_after(": blk.1.attn_sub_norm", "(const float *)(W + ");
	float big = 3e38f;
	for (int i = 0; i < 256; i++)
		memcpy(b + pay + sub + 4 * i, &big, 4);
	const char *ovf = tu_tmp("prog_v600_overflow");
	write_prog(ovf, b, n);
	free(b);
	out = tu_run_ok(2, "'%s' --tokens 3 -n 2 --temp 0", ovf);
	tu_expect_has(out, "activations went NaN or Inf in layer 1 at position 0 (token 3)");
	free(out);
	out = tu_run_ok(2, "'%s' --tokens 3,4,5,6 -n 2 --temp 0 --logits-out /dev/null", ovf);
	tu_expect_has(out, "in layer 1 at position 0 (token 3)");
	free(out);
	out = tu_run_ok(2, "'%s' -p hello -n 2 --temp 0", ovf);
	tu_expect_has(out, "in layer 1 at position 0");
	free(out);
	out = tu_run_ok(2, "'%s' --bench --pp 8 --tg 8 --reps 1", ovf);
	tu_expect_has(out, "in layer 1");
	free(out);
	out = tu_run_ok(2, "echo hello | '%s' -cnv --chat-template llama3", ovf);
	tu_expect_has(out, "in layer 1");
	free(out);
}

/* A tokenizer smaller than the embedding: accepted with a note; its missing ids are never
 * sampled, however flat the distribution. */
static void test_padded_vocab(void **state)
{
	(void)state;
	char *out = tu_run_ok(0, "'%s' build '%s' -o '%s' --target cpu-generic -O1", tu_bitnetc(),
			   pgguf, pprog);
	tu_expect_has(out, "tokenizer gpt2: 590 tokens");
	tu_expect_has(out, "note: 10 embedding rows have no token; they are never sampled");
	free(out);
	out = tu_run_ok(0, "'%s' --info", pprog);
	tu_expect_has(out, "n_vocab:     600");
	tu_expect_has(out, "tokenizer:   590 tokens");
	free(out);
	/* near-uniform draws (temperature 1000, no truncation): 1500 of them would hit one of
	 * the 10 padded ids with probability 1 - (590/600)^1500 (> 0.9999999) */
	out = tu_run_ok(0, "'%s' -p hi --show-ids -n 1500 -c 1600 --ignore-eos --temp 1000 "
			"--top-k 0 --top-p 1 --min-p 0 --seed 11 -t 2 2>/dev/null",
		     pprog);
	int count = 0, max = -1;
	for (char *p = out; *p;) {
		char *end;
		long id = strtol(p, &end, 10);
		if (end == p)
			break;
		count++;
		max = id > max ? (int)id : max;
		p = end;
	}
	if (count != 1500 || max >= N_TOK || max < N_TOK - 100)
		fail_msg("%d ids, largest %d (want 1500, all below %d):\n%.300s", count, max, N_TOK,
			 out);
	free(out);
}

/* --bench's table keeps its columns aligned for a model name longer than the column's
 * 24 characters (mkmodel's "synthetic-l1-e128-...") : every row as wide as the header. */
static void test_bench_table(void **state)
{
	(void)state;
	char g[1200], p[1200];
	snprintf(g, sizeof g, "%s", tu_tmp("bench-long.gguf"));
	snprintf(p, sizeof p, "%s", tu_tmp("bench-long"));
	free(tu_run_ok(0, "'%s' mkmodel --layers 1 --hidden 128 --ffn 128 --heads 2 --kv-heads 1 "
			  "-o '%s' && '%s' build '%s' -o '%s' --target cpu-generic -O1",
		       tu_bitnetc(), g, tu_bitnetc(), g, p));
	char *out = tu_run_ok(0, "'%s' --bench --pp 4 --tg 4 --reps 1 -t 1", p);
	tu_expect_has(out, "| synthetic-l1-");
	int rows = 0, width = -1;
	for (char *line = out; line && *line == '|';) {
		char *nl = strchr(line, '\n');
		int cols = 0; /* display columns: UTF-8 continuation bytes take none */
		for (char *c = line; c < (nl ? nl : line + strlen(line)); c++)
			cols += ((unsigned char)*c & 0xC0) != 0x80;
		if (width < 0)
			width = cols;
		if (cols != width)
			fail_msg("row %d is %d columns wide, the header %d:\n%s", rows, cols, width,
				 out);
		rows++;
		line = nl ? nl + 1 : NULL;
	}
	assert_int_equal(rows, 4);
	free(out);
	unlink(g);
	unlink(p);
}

/* --emit-c DIR keeps sources only, with a Makefile of the build's commands: `make` there
 * gives a program that, with the weights of a --weights-file build, says what the built
 * program says; that program names its weights file where it is asked. */
static void test_emit_makefile(void **state)
{
	(void)state;
	char d[1200], p[1200], w[1200];
	snprintf(d, sizeof d, "%s", tu_tmp("emitmk"));
	snprintf(p, sizeof p, "%s", tu_tmp("emitmk-prog"));
	snprintf(w, sizeof w, "%s", tu_tmp("emitmk.weights"));
	free(tu_run_ok(0, "rm -rf '%s' && '%s' build '%s' -o '%s' --emit-c '%s' --weights-file '%s' "
			  "--target cpu-generic -O1", d, tu_bitnetc(),
		       tu_data("golden/models/tiny-b158-i2_s.gguf"), p, d, w));
	char *objs = tu_run_ok(0, "ls '%s' | grep -c '\\.o$' || true", d);
	assert_string_equal(objs, "0\n");
	free(objs);
	free(tu_run_ok(0, "make -s -C '%s' program", d));
	char *want = tu_run_ok(0, "'%s' --weights-file '%s' --tokens 1,2,3 -n 6 --temp 0 "
			       "2>/dev/null", p, w);
	char *got = tu_run_ok(0, "'%s/program' --weights-file '%s' --tokens 1,2,3 -n 6 --temp 0 "
			      "2>/dev/null", d, w);
	assert_string_equal(got, want);
	free(want);
	free(got);
	/* a program built with --weights-file says so: in --help, --info and when run alone */
	char *out = tu_run_ok(0, "'%s' --help", p);
	tu_expect_has(out, "give --weights-file FILE (bitnetc build wrote emitmk.weights)");
	free(out);
	out = tu_run_ok(2, "'%s' --info", p);
	tu_expect_has(out, "expected in a file of their own");
	free(out);
	out = tu_run_ok(2, "'%s' --tokens 1 -n 1 2>&1", p);
	tu_expect_has(out, "built to take its weights from a file: give --weights-file FILE");
	free(out);
	tu_run(NULL, "rm -rf '%s' '%s' '%s'", d, p, w);
}

/* NUL bytes cannot be text: -f and -cnv both refuse them (exit 1, naming where). */
static void test_nul(void **state)
{
	(void)state;
	const char *f = tu_tmp("prog_nul.txt");
	assert_int_equal(tu_write_file(f, "ab\0cd", 5), 0);
	char *out = tu_run_ok(1, "'%s' -f '%s' -n 1", prog, f);
	tu_expect_has(out, "prog_nul.txt: byte 2 is a NUL");
	free(out);
	out = tu_run_ok(1, "printf 'hello\\nab\\000cd\\n' | '%s' -cnv --chat-template llama3 -n 2 "
			"--temp 0", prog);
	tu_expect_has(out, "-cnv: input line 2 has a NUL at byte 2");
	free(out);
	/* without NUL, both run */
	assert_int_equal(tu_write_file(f, "abcd", 4), 0);
	free(tu_run_ok(0, "'%s' -f '%s' -n 1 --temp 0 2>/dev/null", prog, f));
	free(tu_run_ok(0, "printf 'hello\\n' | '%s' -cnv --chat-template llama3 -n 2 --temp 0 "
		       "2>/dev/null", prog));	/* stdin that cannot be read is an error, not the end of the conversation */
	out = tu_run_ok(2, "'%s' -cnv --chat-template llama3 < /", prog);
	tu_expect_has(out, "cannot read the conversation from standard input: Is a directory");
	free(out);
}

/* -cnv with a template whose special tokens the vocabulary lacks (the padded model's
 * tokenizer ends before them) is refused, naming them; the full vocabulary chats. */
static void test_chat_tokens(void **state)
{
	(void)state;
	char *out = tu_run_ok(2, "printf 'hello\\n' | '%s' -cnv --chat-template llama3 -n 2", pprog);
	tu_expect_has(out, "-cnv: the llama3 chat template needs <|start_header_id|>, "
			"<|end_header_id|> and <|eot_id|>, which are not special tokens");
	free(out);
	out = tu_run_ok(2, "printf 'hello\\n' | '%s' -cnv --chat-template bitnet -n 2", pprog);
	tu_expect_has(out, "the bitnet chat template needs <|eot_id|>");
	free(out);
	free(tu_run_ok(0, "printf 'hello\\n' | '%s' -cnv --chat-template bitnet -n 2 --temp 0 "
		       "2>/dev/null", prog));
}

/* Output to a full disk is an error in text mode and with a tokenizer, too. */
static void test_output_full(void **state)
{
	(void)state;
	if (tu_run(NULL, "test -c /dev/full && ! echo x > /dev/full") != 0)
		skip(); /* no /dev/full on this host */
	char *out = tu_run_ok(2, "'%s' -p hello -n 4 --temp 0 2>&1 >/dev/full", prog);
	tu_expect_has(out, "cannot write to standard output");
	free(out);
	out = tu_run_ok(2, "echo hello | '%s' -cnv --chat-template llama3 -n 4 --temp 0 2>&1 "
			">/dev/full", prog);
	tu_expect_has(out, "cannot write to standard output");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_padded_vocab),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_chat_tokens),
		cmocka_unit_test(test_output_full),
		cmocka_unit_test(test_bench_table),
		cmocka_unit_test(test_emit_makefile),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
