/* rt_tok.h - tokenizers of the generated program: byte-level BPE (Llama 3, "gpt2" in GGUF)
 * and SentencePiece-style ("llama" in GGUF), built at compile time into one flat blob
 * that the program maps and uses without parsing; chat templates. libc only. */
#ifndef BITNETC_RT_TOK_H
#define BITNETC_RT_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt.h"

/* ---- building the blob (rt_tok_build.c; run by bitnetc at compile time) ---- */

typedef enum { RT_TOK_BPE = 1, RT_TOK_SPM = 2 } RtTokKind;

/* How a byte-level BPE tokenizer splits text into words before merging. */
typedef enum {
	RT_TOK_SPLIT_LLAMA3 = 0,  /* Llama 3's regex; a word that is a token is not merged */
	RT_TOK_SPLIT_FALCON3 = 1, /* the reference's Falcon 3 / Falcon-E split: punctuation runs,
				   * then GPT-2's regex, then each ASCII digit alone; always
				   * merged */
} RtTokSplit;
/* The split of a tokenizer.ggml.pre value: Falcon 3's for "falcon3" and "falcon_e", Llama 3's
 * for anything else (NULL included: which names are known is the caller's to check). */
RtTokSplit rt_tok_pre_split(const char *pre);

/* GGUF tokenizer.ggml.token_type values */
enum { RT_TT_NORMAL = 1, RT_TT_UNKNOWN = 2, RT_TT_CONTROL = 3, RT_TT_USER = 4, RT_TT_UNUSED = 5,
       RT_TT_BYTE = 6 };

/* What the GGUF says (strings are not NUL-terminated: lengths given). */
typedef struct {
	RtTokKind kind;
	int32_t n_tokens;
	const char *const *tokens; /* as stored: GPT-2 byte-to-unicode form (BPE), U+2581 for
				    * spaces and <0xNN> byte tokens (SPM) */
	const uint32_t *token_len;
	const int32_t *types;      /* RT_TT_*; NULL: all normal */
	const float *scores;       /* SPM merge scores; NULL for BPE */
	int32_t n_merges;          /* BPE: "LEFT RIGHT", rank = index */
	const char *const *merges;
	const uint32_t *merge_len;
	int32_t bos, eos, unk;     /* -1: none */
	const int32_t *eog;        /* extra end-of-generation ids (e.g. <|eot_id|>) */
	int n_eog;
	bool add_bos;
	const char *pre;           /* tokenizer.ggml.pre, or NULL: picks the split
				    * (rt_tok_pre_split) */
} RtTokSpec;

/* Validates spec and lays out the blob (malloc'd, *size bytes; position independent,
 * little-endian, 8-byte aligned internally). Errors name the token or merge. */
int rt_tok_build(const RtTokSpec *spec, void **blob, size_t *size, RtErr *e);

/* ---- using it (rt_tok.c, rt_tok_bpe.c, rt_tok_spm.c) ---------------------- */

typedef struct RtTok RtTok;

/* Checks the blob's header and bounds (it may come from a corrupt file) and points into
 * it: no per-token work, so start-up cost does not grow with the vocabulary. */
RtTok *rt_tok_open(const void *blob, size_t size, RtErr *e);
void rt_tok_free(RtTok *t);

int32_t rt_tok_n_vocab(const RtTok *t);
int32_t rt_tok_bos(const RtTok *t);
bool rt_tok_add_bos(const RtTok *t);
/* eos or any other end-of-generation id */
bool rt_tok_is_eog(const RtTok *t, int32_t id);

enum {
	RT_TOK_ADD_BOS = 1,       /* prepend BOS (when the tokenizer has one) */
	RT_TOK_PARSE_SPECIAL = 2, /* text such as <|eot_id|> becomes the control token */
};

/* Encodes len bytes of text (any bytes: invalid UTF-8 falls back to byte tokens, never
 * fails on content); *ids is malloc'd. An empty text gives no ids (BOS only with
 * RT_TOK_ADD_BOS). */
int rt_tok_encode(const RtTok *t, const char *text, size_t len, int flags, int32_t **ids, int *n,
		  RtErr *e);

/* The bytes token id stands for (GPT-2 characters mapped back to bytes, U+2581 to a
 * space, <0xNN> to the byte). Control tokens give their text only when special is true.
 * Returns the length (may exceed cap: then only cap bytes were written); -1 for an id
 * out of range. */
int rt_tok_piece(const RtTok *t, int32_t id, bool special, char *buf, int cap);

/* Streaming-safe output: holds back an incomplete UTF-8 sequence split across tokens. */
typedef struct {
	unsigned char pend[4];
	int n;
} RtDetok;
/* Appends bytes; writes what can be printed now to out (cap >= n + 4) and returns its
 * length. rt_detok_flush emits what is held (e.g. at the end, invalid bytes as they are). */
size_t rt_detok_push(RtDetok *d, const char *bytes, size_t n, char *out);
size_t rt_detok_flush(RtDetok *d, char *out);

/* ---- chat templates (rt_chat.c) ------------------------------------------- */

typedef enum {
	RT_CHAT_NONE = 0,
	RT_CHAT_BITNET, /* "Role: content<|eot_id|>" per message, "Assistant: " to reply */
	RT_CHAT_LLAMA3, /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
	RT_CHAT_FALCON3, /* <|role|>\ncontent\n per message, <|assistant|>\n to reply */
} RtChatTemplate;

typedef struct {
	const char *role; /* "system", "user", "assistant" */
	const char *content;
} RtChatMsg;

const char *rt_chat_name(RtChatTemplate t);  /* "bitnet", "llama3", "falcon3", "none" */
RtChatTemplate rt_chat_from_name(const char *name);    /* RT_CHAT_NONE if unknown */
/* Recognizes a GGUF tokenizer.chat_template (Jinja text) as one of the known ones. */
RtChatTemplate rt_chat_detect(const char *jinja, size_t len);
/* Renders messages (and the assistant prefix when add_assistant) as text holding the
 * special-token text, to be encoded with RT_TOK_PARSE_SPECIAL; malloc'd. */
char *rt_chat_render(RtChatTemplate t, const RtChatMsg *msgs, int n, bool add_assistant);
/* Whether every special token template t's text holds is one token of tok when
 * special-token text is parsed (else its text would be encoded as plain text): 1, or 0
 * with why naming the missing ones. */
int rt_chat_tokens_ok(RtChatTemplate t, const RtTok *tok, char *why, size_t n);

/* ---- the API's model (rt_api.c), for rt_api_text.c ---------------------- */

struct bn_model;
/* The model code (the linked one for m NULL) and m's tokenizer (NULL: none or unusable). */
const RtModel *rt_api_model(const struct bn_model *m);
const RtTok *rt_api_tok(const struct bn_model *m);
/* Why m has no usable tokenizer: its status (BN_E_NO_TOKENIZER, BN_E_TOKENIZER) and the
 * tokenizer's own message. */
int rt_api_tok_error(const struct bn_model *m, char *why, size_t n);
struct bn_ctx;
/* Sets the context's bn_ctx_last_error (for rt_generate.c); returns code. */
int rt_api_ctx_say(struct bn_ctx *c, int code, const char *fmt, ...) RT_PRINTF(3, 4);

/* ---- generated text (rt_generate.c): bn_generate's text stream ------------ */

/* Bytes as tokens give them in, decided text out to on_text: whole UTF-8 characters
 * (U+FFFD for an invalid one; with raw, the bytes as RtDetok lets them through), with
 * what may begin a stop string held back until it cannot. */
typedef struct {
	int (*on_text)(void *user, const char *text, size_t len);
	void *user;
	const char *const *stop;
	int32_t n_stop;
	int raw;
	RtDetok detok;        /* raw: the character split across tokens */
	unsigned char u8[4];  /* else: the valid start of a character still waiting */
	int n_u8, len_u8;
	char *pend;           /* decided text not given to on_text yet */
	size_t n_pend, cap_pend;
} RtGenText;

enum { RT_GEN_TEXT_STOP = 1, RT_GEN_TEXT_CALLBACK = 2 };
/* Takes n bytes (end: also the end of the text, everything held is decided). 0,
 * RT_GEN_TEXT_STOP (a stop string: the text before it was given), RT_GEN_TEXT_CALLBACK
 * (on_text returned nonzero) or BN_E_NOMEM. */
int rt_gen_text_push(RtGenText *t, const char *bytes, size_t n, int end);
void rt_gen_text_free(RtGenText *t);

/* One generated token at a time, as bn_generate takes it (and the serving engine,
 * rt_serve.c, for each of its requests): sampled, checked for an end of generation,
 * recorded in the sampler's window, given to on_token, its text into the stream. */
typedef struct {
	struct bn_ctx *c;     /* where an out-of-memory message goes */
	const struct bn_model *m;
	struct bn_sampler *s;
	int flags;            /* BN_GEN_* */
	int use_text;         /* text is made (on_text or stop strings) */
	RtGenText text;
	int (*on_token)(void *user, int32_t token);
	void *user;
	int32_t n_generated;  /* tokens picked and emitted */
} RtGenPick;
/* Samples *tok from the logits row and emits it: 0 (the token is to be decoded next),
 * BN_STOP_EOG (not emitted), BN_STOP_STRING, BN_STOP_CALLBACK, or BN_E_NOMEM. */
int rt_gen_pick(RtGenPick *g, const float *logits, int32_t *tok);
/* The end of the generation (stop: its BN_STOP_*): the text held back is decided and
 * given, except after a stop string or a callback's stop. 0 or BN_E_NOMEM. */
int rt_gen_pick_end(RtGenPick *g, int stop);

#endif
