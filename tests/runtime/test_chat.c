/* test_chat.c - chat templates (rt_chat.c): names, detection, and every line of chat_vectors.jsonl rendered and encoded. */
#include "testutil.h"
#include "rt_tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the Llama 3 tokenizer from $BN_DATA_DIR/llama3 -------------------- */

#define L3_BOS 128000

static RtTok *l3_tok;
static void *l3_blob;

/* Splits buf (n bytes) into lines in place; returns how many (at most max). */
static int split_lines(char *buf, size_t n, char **line, uint32_t *len, int max)
{
	int k = 0;
	for (size_t i = 0, start = 0; i <= n && k < max; i++) {
		if (i < n && buf[i] != '\n')
			continue;
		if (i > start || i < n) {
			line[k] = buf + start;
			len[k++] = (uint32_t)(i - start);
		}
		start = i + 1;
	}
	return k;
}

static char *data_file(const char *name, size_t *n)
{
	char path[2048];
	const char *dir = getenv("BN_DATA_DIR");
	snprintf(path, sizeof path, "%s/llama3/%s", dir && *dir ? dir : "data", name);
	char *buf = tu_read_file(path, n);
	if (!buf)
		fprintf(stderr, "cannot read %s\n", path);
	return buf;
}

/* tokens.txt, then special.tsv's names, as the GGUF holds them; merges.txt by rank. */
static int load_llama3(void **state)
{
	(void)state;
	enum { NT = 128256, NM = 300000 };
	size_t tn, mn, sn;
	char *tb = data_file("tokens.txt", &tn), *mb = data_file("merges.txt", &mn);
	char *sb = data_file("special.tsv", &sn);
	char **tok = calloc(NT, sizeof *tok), **mer = calloc(NM, sizeof *mer);
	uint32_t *tlen = calloc(NT, sizeof *tlen), *mlen = calloc(NM, sizeof *mlen);
	int32_t *types = calloc(NT, sizeof *types);
	if (!tb || !mb || !sb || !tok || !mer || !tlen || !mlen || !types)
		return -1;
	int n = split_lines(tb, tn, tok, tlen, 128000);
	int nm = split_lines(mb, mn, mer, mlen, NM);
	char *sl[256];
	uint32_t sll[256];
	int ns = split_lines(sb, sn, sl, sll, 256);
	for (int i = 0; i < n; i++)
		types[i] = RT_TT_NORMAL;
	for (int i = 0; i < ns; i++) {
		char *tab = memchr(sl[i], '\t', sll[i]);
		if (!tab)
			return -1;
		tok[n] = tab + 1;
		tlen[n] = (uint32_t)(sll[i] - (uint32_t)(tab + 1 - sl[i]));
		types[n++] = RT_TT_CONTROL;
	}
	int32_t eog[] = {128009};
	RtTokSpec spec = {.kind = RT_TOK_BPE, .n_tokens = n, .tokens = (const char *const *)tok,
			  .token_len = tlen, .types = types, .n_merges = nm,
			  .merges = (const char *const *)mer, .merge_len = mlen, .bos = L3_BOS,
			  .eos = 128001, .unk = -1, .eog = eog, .n_eog = 1, .add_bos = true};
	size_t size = 0;
	RtErr e = {0};
	int rc = rt_tok_build(&spec, &l3_blob, &size, &e);
	if (!rc && !(l3_tok = rt_tok_open(l3_blob, size, &e)))
		rc = -1;
	if (rc)
		fprintf(stderr, "the Llama 3 tokenizer: %s\n", e.msg);
	free(tb);
	free(mb);
	free(sb);
	free(tok);
	free(mer);
	free(tlen);
	free(mlen);
	free(types);
	return rc ? -1 : 0;
}

static int free_llama3(void **state)
{
	(void)state;
	rt_tok_free(l3_tok);
	free(l3_blob);
	return 0;
}

/* ---- just enough JSON for chat_vectors.jsonl ---------------------------- */

static void ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static void put_utf8(char **o, unsigned cp)
{
	unsigned char *u = (unsigned char *)*o;
	if (cp < 0x80) {
		*u++ = (unsigned char)cp;
	} else if (cp < 0x800) {
		*u++ = (unsigned char)(0xc0 | cp >> 6);
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*u++ = (unsigned char)(0xe0 | cp >> 12);
		*u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else {
		*u++ = (unsigned char)(0xf0 | cp >> 18);
		*u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		*u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	}
	*o = (char *)u;
}

/* A JSON string at *p, decoded into a malloc'd buffer. */
static char *jstr(const char **p)
{
	ws(p);
	assert_int_equal(**p, '"');
	const char *s = ++*p;
	char *out = malloc(strlen(s) * 2 + 1), *o = out;
	while (*s != '"') {
		assert_int_not_equal(*s, 0);
		if (*s != '\\') {
			*o++ = *s++;
			continue;
		}
		s++;
		char c = *s++;
		const char *esc = strchr("\"\"\\\\//b\bf\fn\nr\rt\t", c);
		if (c != 'u') {
			assert_non_null(esc);
			*o++ = esc[1];
			continue;
		}
		unsigned cp = (unsigned)strtoul((char[5]){s[0], s[1], s[2], s[3], 0}, NULL, 16);
		s += 4;
		if (cp >= 0xd800 && cp < 0xdc00 && s[0] == '\\' && s[1] == 'u') {
			unsigned lo = (unsigned)strtoul((char[5]){s[2], s[3], s[4], s[5], 0}, NULL, 16);
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			s += 6;
		}
		put_utf8(&o, cp);
	}
	*o = 0;
	*p = s + 1;
	return out;
}

/* Skips any JSON value. */
static void jskip(const char **p)
{
	ws(p);
	if (**p == '"') {
		free(jstr(p));
		return;
	}
	int depth = 0;
	do {
		if (**p == '[' || **p == '{')
			depth++;
		else if (**p == ']' || **p == '}')
			depth--;
		else if (**p == '"') {
			free(jstr(p));
			continue;
		}
		(*p)++;
	} while (depth > 0 || (**p && !strchr(",]}", **p)));
}

typedef struct {
	char *tmpl, *text;
	RtChatMsg msg[8];
	int n_msg;
	bool add_gen;
	int32_t ids[512];
	int n_ids;
} ChatVec;

static void jmessages(const char **p, ChatVec *v)
{
	ws(p);
	assert_int_equal(*(*p)++, '[');
	for (ws(p); **p != ']'; ws(p)) {
		assert_int_equal(*(*p)++, '{');
		RtChatMsg *m = &v->msg[v->n_msg++];
		for (ws(p); **p != '}'; ws(p)) {
			char *k = jstr(p);
			ws(p);
			(*p)++; /* : */
			char *val = jstr(p);
			if (!strcmp(k, "role"))
				m->role = val;
			else
				m->content = val;
			free(k);
			ws(p);
			if (**p == ',')
				(*p)++;
		}
		(*p)++;
		ws(p);
		if (**p == ',')
			(*p)++;
	}
	(*p)++;
}

static void jvec(const char *line, ChatVec *v)
{
	memset(v, 0, sizeof *v);
	const char *p = line;
	ws(&p);
	assert_int_equal(*p++, '{');
	for (ws(&p); *p != '}'; ws(&p)) {
		char *k = jstr(&p);
		ws(&p);
		p++; /* : */
		ws(&p);
		if (!strcmp(k, "template")) {
			v->tmpl = jstr(&p);
		} else if (!strcmp(k, "text")) {
			v->text = jstr(&p);
		} else if (!strcmp(k, "messages")) {
			jmessages(&p, v);
		} else if (!strcmp(k, "add_generation_prompt")) {
			v->add_gen = !strncmp(p, "true", 4);
			jskip(&p);
		} else if (!strcmp(k, "ids")) {
			p++;
			for (ws(&p); *p != ']'; ws(&p)) {
				char *end;
				v->ids[v->n_ids++] = (int32_t)strtol(p, &end, 10);
				p = end;
				ws(&p);
				if (*p == ',')
					p++;
			}
			p++;
		} else {
			jskip(&p);
		}
		free(k);
		ws(&p);
		if (*p == ',')
			p++;
	}
}

static void jvec_free(ChatVec *v)
{
	free(v->tmpl);
	free(v->text);
	for (int i = 0; i < v->n_msg; i++) {
		free((char *)v->msg[i].role);
		free((char *)v->msg[i].content);
	}
}

/* ---- tests --------------------------------------------------------------- */

static void expect_ids(const char *text, int flags, const int32_t *want, int n_want,
		       const char *what)
{
	int32_t *ids = NULL;
	int n = 0;
	RtErr e = {0};
	assert_int_equal(rt_tok_encode(l3_tok, text, strlen(text), flags, &ids, &n, &e), RT_OK);
	int same = n == n_want;
	for (int i = 0; same && i < n; i++)
		same = ids[i] == want[i];
	if (!same) {
		fprintf(stderr, "%s: \"%s\": %d ids, want %d:", what, text, n, n_want);
		for (int i = 0; i < n; i++)
			fprintf(stderr, " %d%s", (int)ids[i],
				i < n_want && ids[i] == want[i] ? "" : "(!)");
		fprintf(stderr, "\n");
	}
	free(ids);
	assert_true(same);
}

/* Every line: the rendering equals "text" and encoding it gives "ids".
 *  - bitnet_hf: rendered as is.
 *  - llama3_instruct: that template puts bos_token first and opens the assistant's turn
 *    whatever add_generation_prompt says; the rendering leaves BOS to the program (added
 *    once per conversation), so it must equal the text after <|begin_of_text|>, and
 *    encoding with RT_TOK_ADD_BOS must give all the ids.
 *  - bitnet_gguf_converter (the official GGUF's "Human: ... BITNETAssistant: " template,
 *    which ends the prompt with EOS) is not a format the program renders: a file carrying
 *    it gets the bitnet format (see rt_chat_detect); its texts are still encoded. */
static void test_vectors(void **state)
{
	(void)state;
	size_t n;
	char *raw = tu_read_file(tu_data("tokenizer/chat_vectors.jsonl"), &n);
	assert_non_null(raw);
	char *buf = malloc(n + 1); /* tu_read_file does not terminate the text */
	memcpy(buf, raw, n);
	buf[n] = 0;
	free(raw);
	int lines = 0, rendered = 0, encoded = 0;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		ChatVec v;
		jvec(line, &v);
		lines++;
		RtChatTemplate t = RT_CHAT_NONE;
		const char *want = v.text;
		bool add = v.add_gen;
		if (!strcmp(v.tmpl, "bitnet_hf")) {
			t = RT_CHAT_BITNET;
		} else if (!strcmp(v.tmpl, "llama3_instruct")) {
			t = RT_CHAT_LLAMA3;
			add = true;
			assert_memory_equal(want, "<|begin_of_text|>", 17);
			want += 17;
			assert_int_equal(v.ids[0], L3_BOS);
		} else {
			assert_string_equal(v.tmpl, "bitnet_gguf_converter");
		}
		if (t != RT_CHAT_NONE) {
			char *r = rt_chat_render(t, v.msg, v.n_msg, add);
			assert_non_null(r);
			if (strcmp(r, want))
				fail_msg("line %d (%s): rendered \"%s\", want \"%s\"", lines, v.tmpl, r,
					 want);
			expect_ids(r, RT_TOK_PARSE_SPECIAL | (t == RT_CHAT_LLAMA3 ? RT_TOK_ADD_BOS : 0),
				   v.ids, v.n_ids, v.tmpl);
			free(r);
			rendered++;
		}
		expect_ids(v.text, RT_TOK_PARSE_SPECIAL, v.ids, v.n_ids, v.tmpl);
		encoded++;
		jvec_free(&v);
	}
	free(buf);
	assert_int_equal(lines, 18);
	assert_int_equal(rendered, 12);
	assert_int_equal(encoded, 18);
}

static RtChatTemplate detect_file(const char *name)
{
	size_t n;
	char *s = tu_read_file(tu_data(name), &n);
	assert_non_null(s);
	RtChatTemplate t = rt_chat_detect(s, n);
	free(s);
	return t;
}

static RtChatTemplate detect(const char *s)
{
	return rt_chat_detect(s, strlen(s));
}

static void test_detect(void **state)
{
	(void)state;
	assert_int_equal(detect_file("tokenizer/chat_template_bitnet_hf.jinja"), RT_CHAT_BITNET);
	assert_int_equal(detect_file("tokenizer/chat_template_llama3_instruct.jinja"),
			 RT_CHAT_LLAMA3);
	/* re-indented and with a trailing newline: still the same template */
	assert_int_equal(detect("{% set loop_messages = messages %}\n{% for message in "
				"loop_messages %}\n  {% set content = message['role'] | capitalize + "
				"': ' + message['content'] | trim + '<|eot_id|>' %}\n  {{ content }}\n"
				"{% endfor %}\n{% if add_generation_prompt %}{{ 'Assistant: ' }}"
				"{% endif %}\n"),
			 RT_CHAT_BITNET);
	/* the official Llama 3 Instruct template differs in its details, not its markers */
	assert_int_equal(detect("{{ bos_token }}{% for message in messages %}{{ "
				"'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
				"message['content'] | trim + '<|eot_id|>' }}{% endfor %}"),
			 RT_CHAT_LLAMA3);
	/* the official 2B-4T GGUF's converter template: the model's own format instead */
	assert_int_equal(detect("{% for message in messages %}{% if message['role'] == 'user' "
				"%}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + "
				"eos_token }}{% endif %}{% endfor %}"),
			 RT_CHAT_BITNET);
	/* junk, other formats, nothing */
	assert_int_equal(detect("hello {{ world }}"), RT_CHAT_NONE);
	assert_int_equal(detect("{% for message in messages %}{{'<|im_start|>' + message['role'] "
				"+ '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"),
			 RT_CHAT_NONE);
	assert_int_equal(detect(""), RT_CHAT_NONE);
	assert_int_equal(rt_chat_detect(NULL, 0), RT_CHAT_NONE);
	/* length-bounded: the template's first bytes alone are not the template */
	const char *bt = "{% set loop_messages = messages %}";
	assert_int_equal(rt_chat_detect(bt, strlen(bt)), RT_CHAT_NONE);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(rt_chat_name(RT_CHAT_NONE), "none");
	assert_string_equal(rt_chat_name(RT_CHAT_BITNET), "bitnet");
	assert_string_equal(rt_chat_name(RT_CHAT_LLAMA3), "llama3");
	assert_string_equal(rt_chat_name((RtChatTemplate)42), "none");
	assert_int_equal(rt_chat_from_name("bitnet"), RT_CHAT_BITNET);
	assert_int_equal(rt_chat_from_name("llama3"), RT_CHAT_LLAMA3);
	assert_int_equal(rt_chat_from_name("llama-3"), RT_CHAT_LLAMA3);
	assert_int_equal(rt_chat_from_name("chatml"), RT_CHAT_NONE);
	assert_string_equal(rt_chat_name(RT_CHAT_FALCON3), "falcon3");
	assert_int_equal(rt_chat_from_name("falcon3"), RT_CHAT_FALCON3);
	assert_int_equal(rt_chat_from_name("falcon_e"), RT_CHAT_NONE); /* the reference: -1 too */
	assert_int_equal(rt_chat_from_name("none"), RT_CHAT_NONE);
	assert_int_equal(rt_chat_from_name(NULL), RT_CHAT_NONE);
}

static void expect_render(RtChatTemplate t, const RtChatMsg *m, int n, bool add, const char *want)
{
	char *r = rt_chat_render(t, m, n, add);
	assert_non_null(r);
	assert_string_equal(r, want);
	free(r);
}

/* What the vectors do not cover: roles in any case, empty and NULL content, a turn on its
 * own (what -cnv renders), no messages. */
static void test_render(void **state)
{
	(void)state;
	RtChatMsg m[] = {{"USER", " \t hi\n"}, {"assistant", NULL}, {"tool", "x  y"}};
	expect_render(RT_CHAT_BITNET, m, 3, false,
		      "User: hi<|eot_id|>Assistant: <|eot_id|>Tool: x  y<|eot_id|>");
	expect_render(RT_CHAT_BITNET, NULL, 0, true, "Assistant: ");
	expect_render(RT_CHAT_BITNET, NULL, 0, false, "");
	expect_render(RT_CHAT_LLAMA3, m, 1, true,
		      "<|start_header_id|>USER<|end_header_id|>\n\nhi<|eot_id|>"
		      "<|start_header_id|>assistant<|end_header_id|>\n\n");
	expect_render(RT_CHAT_LLAMA3, m + 1, 1, false,
		      "<|start_header_id|>assistant<|end_header_id|>\n\n<|eot_id|>");
	expect_render(RT_CHAT_NONE, m, 3, true, "");
}

/* Falcon 3: recognized by its role markers where the reference recognizes them, rendered as
 * the reference's llama_chat_apply_template renders "falcon3" (its 6-message test
 * conversation, content as it is), plain text where the vocabulary lacks the markers. */
static void test_falcon3(void **state)
{
	(void)state;
	assert_int_equal(detect("{%- for message in messages %}{%- if message['role'] == 'system' "
				"%}{{- '<|system|>\\n' + message['content'] + '\\n' }}{%- elif "
				"message['role'] == 'user' %}{{- '<|user|>\\n' + message['content'] + "
				"'\\n' }}{%- elif message['role'] == 'assistant' %}{{- '<|assistant|>"
				"\\n' + message['content'] + eos_token }}{%- endif %}{%- endfor %}"),
			 RT_CHAT_FALCON3);
	/* Phi 3's <|end|>, ChatML, Llama 2: other formats with the same markers */
	assert_int_equal(detect("{{ '<|user|>\n' + m + '<|end|>\n<|assistant|>\n' }}"),
			 RT_CHAT_NONE);
	assert_int_equal(detect("<|im_start|><|user|><|assistant|>"), RT_CHAT_NONE);
	assert_int_equal(detect("[INST] <|user|><|assistant|>"), RT_CHAT_NONE);
	assert_int_equal(detect("{{ '<|user|>\n' + m + eos_token }}"), RT_CHAT_NONE); /* zephyr */
	RtChatMsg c[] = {{"system", "You are a helpful assistant"}, {"user", "Hello"},
			 {"assistant", "Hi there"}, {"user", "Who are you"},
			 {"assistant", "   I am an assistant   "}, {"user", "Another question"}};
	expect_render(RT_CHAT_FALCON3, c, 6, true,
		      "<|system|>\nYou are a helpful assistant\n<|user|>\nHello\n<|assistant|>\n"
		      "Hi there\n<|user|>\nWho are you\n<|assistant|>\n   I am an assistant   \n"
		      "<|user|>\nAnother question\n<|assistant|>\n");
	expect_render(RT_CHAT_FALCON3, c + 4, 1, false, "<|assistant|>\n   I am an assistant   \n");
	RtChatMsg odd[] = {{NULL, NULL}};
	expect_render(RT_CHAT_FALCON3, odd, 1, false, "<||>\n\n");
	/* the Llama 3 vocabulary has no <|user|>: the text is encoded as text, and that is fine */
	char why[256];
	assert_int_equal(rt_chat_tokens_ok(RT_CHAT_FALCON3, l3_tok, why, sizeof why), 1);
	assert_string_equal(why, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_falcon3),
		cmocka_unit_test(test_vectors),
	};
	return cmocka_run_group_tests(tests, load_llama3, free_llama3);
}
