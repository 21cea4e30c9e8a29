/* rt_chat.c - chat templates of the generated program: names, recognizing a GGUF's Jinja
 * template, rendering a conversation as text holding special-token text. libc only. */
#include "rt_tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The templates as the reference files spell them (tests/data/tokenizer/chat_template_
 * bitnet_hf.jinja, chat_template_llama3_instruct.jinja); detection compares with whitespace
 * removed, so re-indented copies match too. */
static const char rt_jinja_bitnet[] =
	"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
	"message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}"
	"{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";
static const char rt_jinja_llama3[] =
	"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
	"'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
	"trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
	"{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

/* ORDER RtChatTemplate */
static const char *const rt_chat_names[] = {"none", "bitnet", "llama3", "falcon3"};

const char *rt_chat_name(RtChatTemplate t)
{
	if ((unsigned)t >= sizeof rt_chat_names / sizeof *rt_chat_names)
		return "none";
	return rt_chat_names[t];
}

RtChatTemplate rt_chat_from_name(const char *name)
{
	if (!name)
		return RT_CHAT_NONE;
	for (int i = 1; i < (int)(sizeof rt_chat_names / sizeof *rt_chat_names); i++)
		if (!strcmp(name, rt_chat_names[i]))
			return (RtChatTemplate)i;
	/* the names other tools use for the same formats */
	if (!strcmp(name, "bitnet-25") || !strcmp(name, "bitnet_hf"))
		return RT_CHAT_BITNET;
	if (!strcmp(name, "llama-3") || !strcmp(name, "llama3_instruct"))
		return RT_CHAT_LLAMA3;
	return RT_CHAT_NONE;
}

static int rt_is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Whether a (len bytes) equals b once all whitespace is dropped from both. */
static int rt_same_but_space(const char *a, size_t len, const char *b)
{
	size_t i = 0;
	for (;;) {
		while (i < len && rt_is_space((unsigned char)a[i]))
			i++;
		while (*b && rt_is_space((unsigned char)*b))
			b++;
		if (i == len || !*b)
			return i == len && !*b;
		if (a[i++] != *b++)
			return 0;
	}
}

static int rt_has(const char *s, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(s + i, needle, n))
			return 1;
	return 0;
}

RtChatTemplate rt_chat_detect(const char *jinja, size_t len)
{
	if (!jinja || !len)
		return RT_CHAT_NONE;
	if (rt_same_but_space(jinja, len, rt_jinja_bitnet))
		return RT_CHAT_BITNET;
	if (rt_same_but_space(jinja, len, rt_jinja_llama3))
		return RT_CHAT_LLAMA3;
	/* Falcon 3's role markers, as the reference recognizes them (after ChatML's
	 * <|im_start|>, Llama 2's [INST] and Phi 3's <|end|>, formats bitnetc does not have). */
	if (rt_has(jinja, len, "<|assistant|>") && rt_has(jinja, len, "<|user|>"))
		return rt_has(jinja, len, "<|im_start|>") || rt_has(jinja, len, "[INST]") ||
				       rt_has(jinja, len, "<|end|>")
			       ? RT_CHAT_NONE
			       : RT_CHAT_FALCON3;
	/* Variants of the same formats (the official Llama 3 template, edited copies). */
	if (rt_has(jinja, len, "<|start_header_id|>") && rt_has(jinja, len, "<|eot_id|>"))
		return RT_CHAT_LLAMA3;
	if (rt_has(jinja, len, "'Assistant: '") && rt_has(jinja, len, "capitalize"))
		return RT_CHAT_BITNET;
	/* The official 2B-4T GGUF carries its converter's "Human: ... BITNETAssistant: " template,
	 * which ends the prompt with EOS; the model was trained on (and llama.cpp renders)
	 * the "Role: content<|eot_id|>" format, so that is what such a file gets. */
	if (rt_has(jinja, len, "BITNETAssistant"))
		return RT_CHAT_BITNET;
	return RT_CHAT_NONE;
}

/* ---- rendering --------------------------------------------------------- */

typedef struct {
	char *s;
	size_t len, cap;
	int oom;
} RtStr;

static void rt_str_put(RtStr *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

static void rt_str_cat(RtStr *b, const char *s)
{
	rt_str_put(b, s, strlen(s));
}

/* Jinja's trim: leading and trailing whitespace dropped (ASCII whitespace only). */
static void rt_str_trimmed(RtStr *b, const char *s)
{
	size_t n = strlen(s);
	while (n && rt_is_space((unsigned char)*s))
		s++, n--;
	while (n && rt_is_space((unsigned char)s[n - 1]))
		n--;
	rt_str_put(b, s, n);
}

/* Jinja's capitalize: first character upper case, the rest lower case (ASCII). */
static void rt_str_capitalized(RtStr *b, const char *s)
{
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		if (i == 0 && c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		else if (i > 0 && c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		rt_str_put(b, &c, 1);
	}
}

/* "Role: content<|eot_id|>" per message, "Assistant: " to ask for a reply. */
static void rt_render_bitnet(RtStr *b, const RtChatMsg *msgs, int n, bool add_assistant)
{
	for (int i = 0; i < n; i++) {
		rt_str_capitalized(b, msgs[i].role ? msgs[i].role : "");
		rt_str_cat(b, ": ");
		rt_str_trimmed(b, msgs[i].content ? msgs[i].content : "");
		rt_str_cat(b, "<|eot_id|>");
	}
	if (add_assistant)
		rt_str_cat(b, "Assistant: ");
}

/* The header format. The reference template puts bos_token before the first message;
 * the text here never holds BOS: the program adds it once, at the conversation's start,
 * so that a turn rendered on its own continues the cached conversation. */
static void rt_render_llama3(RtStr *b, const RtChatMsg *msgs, int n, bool add_assistant)
{
	for (int i = 0; i < n; i++) {
		rt_str_cat(b, "<|start_header_id|>");
		rt_str_cat(b, msgs[i].role ? msgs[i].role : "");
		rt_str_cat(b, "<|end_header_id|>\n\n");
		rt_str_trimmed(b, msgs[i].content ? msgs[i].content : "");
		rt_str_cat(b, "<|eot_id|>");
	}
	if (add_assistant)
		rt_str_cat(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* "<|role|>\ncontent\n" per message (content as it is), "<|assistant|>\n" to ask for a
 * reply: the reference's "falcon3" format. */
static void rt_render_falcon3(RtStr *b, const RtChatMsg *msgs, int n, bool add_assistant)
{
	for (int i = 0; i < n; i++) {
		rt_str_cat(b, "<|");
		rt_str_cat(b, msgs[i].role ? msgs[i].role : "");
		rt_str_cat(b, "|>\n");
		rt_str_cat(b, msgs[i].content ? msgs[i].content : "");
		rt_str_cat(b, "\n");
	}
	if (add_assistant)
		rt_str_cat(b, "<|assistant|>\n");
}

char *rt_chat_render(RtChatTemplate t, const RtChatMsg *msgs, int n, bool add_assistant)
{
	RtStr b = {0};
	rt_str_put(&b, "", 0); /* an empty conversation is "", not NULL */
	if (t == RT_CHAT_BITNET)
		rt_render_bitnet(&b, msgs, n, add_assistant);
	else if (t == RT_CHAT_LLAMA3)
		rt_render_llama3(&b, msgs, n, add_assistant);
	else if (t == RT_CHAT_FALCON3)
		rt_render_falcon3(&b, msgs, n, add_assistant);
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

/* The special tokens each template's text holds. ORDER RtChatTemplate */
static const char *const chat_needs[][4] = {
	[RT_CHAT_NONE] = {NULL},
	[RT_CHAT_BITNET] = {"<|eot_id|>", NULL},
	[RT_CHAT_LLAMA3] = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", NULL},
	/* the role markers are special tokens in some vocabularies, plain text in others */
	[RT_CHAT_FALCON3] = {NULL},
};

/* Whether text is one token when special-token text is parsed: the way a rendered
 * conversation is encoded. */
static bool one_special(const RtTok *tok, const char *text)
{
	int32_t *ids = NULL;
	int n = 0;
	RtErr e = {0};
	bool ok = rt_tok_encode(tok, text, strlen(text), RT_TOK_PARSE_SPECIAL, &ids, &n, &e) ==
			  RT_OK &&
		  n == 1;
	free(ids);
	return ok;
}

int rt_chat_tokens_ok(RtChatTemplate t, const RtTok *tok, char *why, size_t n)
{
	if (n)
		why[0] = 0;
	if ((int)t <= RT_CHAT_NONE || (int)t >= (int)(sizeof chat_needs / sizeof chat_needs[0]))
		return 1;
	const char *missing[4];
	int k = 0;
	for (const char *const *p = chat_needs[t]; *p; p++)
		if (!one_special(tok, *p))
			missing[k++] = *p;
	if (!k)
		return 1;
	size_t len = (size_t)snprintf(why, n, "the %s chat template needs ", rt_chat_name(t));
	for (int i = 0; i < k && len < n; i++)
		len += (size_t)snprintf(why + len, n - len, "%s%s",
					i == 0 ? "" : i + 1 < k ? ", " : " and ", missing[i]);
	if (len < n)
		snprintf(why + len, n - len,
			 ", which %s not %s of this vocabulary (its text would be encoded as plain "
			 "text)",
			 k > 1 ? "are" : "is", k > 1 ? "special tokens" : "a special token");
	return 0;
}
