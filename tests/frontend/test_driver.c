/* test_driver.c - the frontend's refusals as the driver reports them: exit status and
 * message of inspect, ir, run, build and tokenize on models with non-finite weights,
 * truncated or overlapping data, an unknown pre-tokenizer, or a chat template whose
 * special tokens the vocabulary lacks. */
#include "testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN "golden/models/tiny-b158-i2_s.gguf"

/* Runs the driver with args; asserts the exit status and that the output holds every
 * fragment (NULL-terminated). Returns the output (caller frees). */
static char *expect_run(int want_rc, const char *const *frags, const char *args)
{
	char *out = NULL;
	int rc = tu_run(&out, "'%s' %s", tu_bitnetc(), args);
	if (rc != want_rc)
		fail_msg("bitnetc %s: exit %d, expected %d\n%s", args, rc, want_rc, out ? out : "");
	for (const char *const *f = frags; f && *f; f++)
		if (!strstr(out, *f))
			fail_msg("bitnetc %s: output lacks \"%s\":\n%s", args, *f, out);
	return out;
}

#define FRAGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_cmd(int want_rc, const char *const *frags, const char *fmt, ...)
	BN_PRINTF(3, 4);
static void expect_cmd(int want_rc, const char *const *frags, const char *fmt, ...)
{
	char args[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	free(expect_run(want_rc, frags, args));
}

/* A model the graph cannot be built from: ir, run and build exit 2 with msg (build before
 * compiling anything); inspect still shows the whole file, then says why (exit 2, as for
 * any model whose graph cannot be built). */
static void refused(const char *path, const char *msg)
{
	expect_cmd(2, FRAGS("bitnetc: ", path, msg), "ir '%s'", path);
	expect_cmd(2, FRAGS("bitnetc: ", path, msg), "run '%s' --tokens 1 -n 1", path);
	char args[2048];
	snprintf(args, sizeof args, "build '%s' -o '%s'", path, tu_tmp("never"));
	free(expect_run(2, FRAGS("bitnetc: ", path, msg), args));
	expect_cmd(2, FRAGS("tensors:", "total tensor bytes:", "graph: error: ", msg),
		   "inspect '%s'", path);
}

/* The bytes of file src with n bytes at byte off of tensor name's data replaced, written
 * to a temporary file. */
static const char *patched(const char *src, const char *name, uint64_t off, const void *bytes,
			   size_t n, const char *dst)
{
	BnErr e = {0};
	GgufFile *f = gguf_open(src, &e);
	if (!f)
		fail_msg("%s", e.msg);
	const GgufTensor *t = gguf_find_tensor(f, name);
	assert_non_null(t);
	uint64_t at = f->data_offset + t->offset + off;
	gguf_close(f);
	size_t size;
	uint8_t *b = tu_read_file(src, &size);
	assert_non_null(b);
	assert_true(at + n <= size);
	memcpy(b + at, bytes, n);
	const char *path = tu_tmp(dst);
	assert_int_equal(tu_write_file(path, b, size), 0);
	free(b);
	return path;
}

static void test_nonfinite(void **state)
{
	(void)state;
	const char *src = tu_data(GOLDEN);
	const uint8_t f32_nan[4] = {0, 0, 0xc0, 0x7f}, f16_inf[2] = {0x00, 0x7c};
	refused(patched(src, "output_norm.weight", 4 * 3, f32_nan, 4, "nan-norm.gguf"),
		"output_norm.weight: f32 element 3 is NaN");
	refused(patched(src, "token_embd.weight", 2 * (5 * 256 + 1), f16_inf, 2, "inf-embd.gguf"),
		"token_embd.weight: f16 element 1281 (row 5, column 1) is infinite");
}

/* Where tensor info name's offset field is in the file image. */
static size_t offset_field(const uint8_t *b, size_t n, const char *name)
{
	size_t l = strlen(name);
	for (size_t i = 0; i + 8 + l + 4 <= n; i++) {
		if (tu_le64(b + i) != l || memcmp(b + i + 8, name, l))
			continue;
		size_t p = i + 8 + l;
		uint32_t nd = b[p] | (uint32_t)b[p + 1] << 8;
		return p + 4 + 8 * nd + 4;
	}
	fail_msg("tensor info %s not found", name);
	return 0;
}

static void test_truncated_and_overlapping(void **state)
{
	(void)state;
	size_t n;
	uint8_t *b = tu_read_file(tu_data(GOLDEN), &n);
	assert_non_null(b);
	BnErr e = {0};
	GgufFile *f = gguf_open_mem(b, n, "golden", &e);
	assert_non_null(f);
	uint64_t data_off = f->data_offset, embd_off = gguf_find_tensor(f, "token_embd.weight")->offset;
	gguf_close(f);

	/* cut inside the header's counts, the metadata, and the data */
	const char *p = tu_tmp("cut-30.gguf");
	assert_int_equal(tu_write_file(p, b, 30), 0);
	expect_cmd(2, FRAGS(p, "header n_tensors: file is truncated: the header says"),
		   "run '%s' --tokens 1 -n 1", p);
	expect_cmd(2, FRAGS(p, "header n_tensors: file is truncated"), "inspect '%s'", p);
	p = tu_tmp("cut-data.gguf");
	assert_int_equal(tu_write_file(p, b, (size_t)data_off + 1000), 0);
	expect_cmd(2, FRAGS(p, "offset: file is truncated: the tensor needs bytes",
			    "but the data runs past the end of the file at byte"),
		   "run '%s' --tokens 1 -n 1", p);
	expect_cmd(2, FRAGS(p, "file is truncated"), "inspect '%s'", p);

	/* output_norm.weight moved onto the embedding's bytes */
	size_t at = offset_field(b, n, "output_norm.weight");
	for (int k = 0; k < 8; k++)
		b[at + k] = (uint8_t)(embd_off >> 8 * k);
	p = tu_tmp("overlap.gguf");
	assert_int_equal(tu_write_file(p, b, n), 0);
	expect_cmd(2, FRAGS(p, "'output_norm.weight' offset: data at offsets", "overlaps tensor",
			    "'token_embd.weight'"),
		   "run '%s' --tokens 1 -n 1", p);
	expect_cmd(2, FRAGS(p, "overlaps tensor"), "inspect '%s'", p);
	free(b);
}

/* The golden model with tokenizer.ggml.pre set to pre and, when jinja is set, a
 * tokenizer.chat_template. */
static const char *with_tokenizer_keys(const char *dst, const char *pre, const char *jinja)
{
	BnErr e = {0};
	GgufFile *f = gguf_open(tu_data(GOLDEN), &e);
	if (!f)
		fail_msg("%s", e.msg);
	GgufWriter *w = gguf_writer_new();
	for (uint64_t i = 0; i < f->n_kv; i++) {
		const GgufValue *v = &f->kv[i].val;
		if (v->type == GGUF_T_ARRAY) /* the element type and count precede the elements */
			gguf_writer_raw(w, f->kv[i].key, v->type, v->data - 12, v->size + 12);
		else
			gguf_writer_raw(w, f->kv[i].key, v->type, v->data, v->size);
	}
	gguf_writer_str(w, "tokenizer.ggml.pre", pre);
	if (jinja)
		gguf_writer_str(w, "tokenizer.chat_template", jinja);
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		if (gguf_writer_tensor(w, t->name, t->ggml_type, t->n_dims, t->ne, t->data, t->nbytes,
				       &e))
			fail_msg("%s", e.msg);
	}
	const char *path = tu_tmp(dst);
	if (gguf_writer_write(w, path, &e))
		fail_msg("%s", e.msg);
	gguf_writer_free(w);
	gguf_close(f);
	return path;
}

/* The output of a command that must succeed. */
static char *ids_of(const char *fmt, ...) BN_PRINTF(1, 2);
static char *ids_of(const char *fmt, ...)
{
	char args[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	return expect_run(0, NULL, args);
}

static void test_pre_tokenizer(void **state)
{
	(void)state;
	const char *p = with_tokenizer_keys("pre-stablelm2.gguf", "stablelm2", NULL);
	expect_cmd(2, FRAGS(p, "tokenizer.ggml.pre: unknown pre-tokenizer 'stablelm2'",
			    "llama3, llama-bpe", "--tokenizer-pre llama3"),
		   "tokenize '%s' 'Hello, world'", p);
	expect_cmd(2, FRAGS(p, "unknown pre-tokenizer 'stablelm2'"), "build '%s' -o never", p);
	expect_cmd(1, FRAGS("--tokenizer-pre: unknown pre-tokenizer 'bogus'", "llama3, llama-bpe",
			    "bitnetc has the Llama 3 and Falcon 3 splits", "falcon3, falcon_e"),
		   "tokenize '%s' x --tokenizer-pre bogus", p);
	expect_cmd(1, FRAGS("--tokenizer-pre: unknown pre-tokenizer 'default'"),
		   "build '%s' -o never --tokenizer-pre default", p);
	/* forced: the ids the file's own llama-bpe gives */
	char *want = ids_of("tokenize '%s' 'Hello, world  42'", tu_data(GOLDEN));
	char *got = ids_of("tokenize '%s' 'Hello, world  42' --tokenizer-pre llama3", p);
	assert_string_equal(got, want);
	free(want);
	free(got);
}

static void test_chat_template(void **state)
{
	(void)state;
	/* the golden vocabulary has none of the Llama 3 chat tokens */
	const char *g = tu_data(GOLDEN);
	expect_cmd(2, FRAGS(g, "--chat-template llama3: the llama3 chat template needs "
			    "<|start_header_id|>, <|end_header_id|> and <|eot_id|>, which are not "
			    "special tokens of this vocabulary"),
		   "build '%s' -o never --chat-template llama3", g);
	expect_cmd(2, FRAGS(g, "--chat-template bitnet: the bitnet chat template needs "
			    "<|eot_id|>, which is not a special token of this vocabulary"),
		   "build '%s' -o never --chat-template bitnet", g);
	/* the file's own template (recognized as bitnet) is dropped with a note; the build
	 * goes on, and -v says which split the tokenizer uses (forced here) */
	const char *p = with_tokenizer_keys(
		"chat-bitnet.gguf", "stablelm2",
		"{% for message in messages %}{{ message['role'] | capitalize + ': ' + "
		"message['content'] | trim + '<|eot_id|>' }}{% endfor %}{{ 'Assistant: ' }}");
	char args[2048];
	snprintf(args, sizeof args, "build '%s' -o '%s' --target cpu-generic -O0 -v "
		 "--tokenizer-pre llama3", p, tu_tmp("chat-bitnet"));
	free(expect_run(0, FRAGS("; chat template none; the file's template is not used: the "
				 "bitnet chat template needs <|eot_id|>",
				 "text is split into words by the Llama 3 split (--tokenizer-pre "
				 "llama3; the file says 'stablelm2')"),
			args));
	char *out = NULL;
	assert_int_equal(tu_run(&out, "'%s' --info", tu_tmp("chat-bitnet")), 0);
	if (!strstr(out, "chat:        none"))
		fail_msg("%s", out);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_truncated_and_overlapping),
		cmocka_unit_test(test_pre_tokenizer),
		cmocka_unit_test(test_chat_template),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
