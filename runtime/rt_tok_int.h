/* rt_tok_int.h - internal to the tokenizer files (rt_tok*.c, rt_unicode.c): the blob layout,
 * the opened tokenizer, checked accessors, Unicode classes. Not part of the runtime's API. */
#ifndef BITNETC_RT_TOK_INT_H
#define BITNETC_RT_TOK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_tok.h"

/* ---- the blob ------------------------------------------------------------------
 * Little-endian u32 words throughout, read byte by byte (the blob may sit at any address).
 * Header: RT_TOKH_WORDS words, then the sections, each 8-byte aligned:
 *   OFFS    u32[n_tokens + 1]  start of token k's bytes in BYTES (k+1's start = its end)
 *   BYTES   u8[]               token bytes, decoded: GPT-2 characters mapped back to bytes
 *                              (BPE normal tokens), U+2581 -> ' ' and <0xNN> -> the byte
 *                              (SPM); control and user tokens as their text
 *   TYPES   u8[n_tokens]       RT_TT_*
 *   SCORES  f32[n_tokens]      SPM only (size 0 for BPE)
 *   HASH    u32[hash_size]     open addressing over BYTES, id + 1 (0 = empty); holds the
 *                              tokens text can turn into (not control/unknown/byte ones)
 *   MERGES  u32[4 * msize]     BPE: {left, right, rank, result}, left = ~0u empty; size 0
 *                              for SPM
 *   SPECIAL u32[n_special]     control and user tokens, longest text first (then by id)
 *   EOG     u32[n_eog]         end-of-generation ids besides eos
 *   BYTEID  u32[256]           the token of each single byte (~0u: none)
 *   SPFIRST u8[32]             bit set of the first bytes of SPECIAL texts
 * Every size is checked at open; every offset read from OFFS, HASH, MERGES, SPECIAL is
 * checked where it is used, so a corrupt blob gives wrong tokens, never a bad access. */
#define RT_TOK_MAGIC 0x4b544e42u /* "BNTK" */
#define RT_TOK_VERSION 1u

enum {
	RT_TOKH_MAGIC, RT_TOKH_VERSION, RT_TOKH_KIND, RT_TOKH_N_TOKENS, RT_TOKH_N_MERGES,
	RT_TOKH_BOS, RT_TOKH_EOS, RT_TOKH_UNK, RT_TOKH_FLAGS, RT_TOKH_N_EOG, RT_TOKH_N_SPECIAL,
	RT_TOKH_HASH_SIZE, RT_TOKH_MERGE_SIZE, RT_TOKH_TOTAL,
	RT_TOKH_SPLIT, /* BPE: RtTokSplit, how text is split into words (0 in older blobs) */
	RT_TOKH_SECT = 16, /* RT_TOKS_COUNT (offset, size) pairs from here */
	RT_TOKH_WORDS = 40,
};

/* ORDER RT_TOKS */
enum {
	RT_TOKS_OFFS, RT_TOKS_BYTES, RT_TOKS_TYPES, RT_TOKS_SCORES, RT_TOKS_HASH, RT_TOKS_MERGES,
	RT_TOKS_SPECIAL, RT_TOKS_EOG, RT_TOKS_BYTEID, RT_TOKS_SPFIRST, RT_TOKS_COUNT
};
_Static_assert(RT_TOKH_SECT + 2 * RT_TOKS_COUNT <= RT_TOKH_WORDS, "header too small");

/* RT_TOKH_FLAGS bits */
enum {
	RT_TOKF_ADD_BOS = 1,
	RT_TOKF_SPACE_PREFIX = 2, /* SPM: prefix each text run with a space (add_space_prefix) */
	RT_TOKF_HAS_USER = 4,     /* some user-defined token: special matching always on */
};

static inline uint32_t rt_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void rt_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* The fixed hash functions of the blob's tables (changing one changes RT_TOK_VERSION). */
static inline uint32_t rt_tok_hash_bytes(const uint8_t *s, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h ^ (h >> 16);
}

static inline uint32_t rt_tok_hash_pair(uint32_t a, uint32_t b)
{
	uint32_t h = a * 0x9e3779b1u ^ (b + 0x7f4a7c15u) * 0x85ebca77u;
	return h ^ (h >> 15);
}

struct RtTok {
	RtTokKind kind;
	RtTokSplit split;
	int32_t n_tokens, n_merges, bos, eos, unk;
	uint32_t flags, n_eog, n_special, hash_mask, merge_mask, bytes_size;
	const uint8_t *offs, *bytes, *types, *scores, *hash, *merges, *special, *eog, *byteid,
		*spfirst;
};

/* rt_tok.c: checked accessors. */
const uint8_t *rt_tok_bytes(const RtTok *t, int32_t id, uint32_t *len); /* bad: len 0 */
int32_t rt_tok_lookup(const RtTok *t, const uint8_t *s, size_t n);      /* -1: none */
int32_t rt_tok_byte_id(const RtTok *t, uint8_t b);                       /* -1: none */
/* The merge of (left, right): true with its rank and result. */
bool rt_tok_merge(const RtTok *t, int32_t left, int32_t right, uint32_t *rank, int32_t *result);

/* A growing list of ids; oom is sticky. */
typedef struct {
	int32_t *v;
	size_t n, cap;
	bool oom;
} RtIds;
void rt_ids_push(RtIds *o, int32_t id);

/* rt_tok_bpe.c, rt_tok_spm.c: one run of text without special tokens. Return RT_OK or
 * RT_ENOMEM. */
int rt_tok_bpe_encode(const RtTok *t, const uint8_t *s, size_t n, RtIds *out);
/* End of the Llama 3 pre-token that starts at i < n. */
size_t rt_tok_pretok_next(const uint8_t *s, size_t n, size_t i);
/* End of the piece of GPT-2's split that starts at i < n, n being the end of the text. */
size_t rt_tok_gpt2_next(const uint8_t *s, size_t n, size_t i);
/* End of the run that starts at i < n of characters that are all, or all not, punctuation
 * as Falcon 3's first regex has it (ASCII symbols and \p{P}). */
size_t rt_tok_punct_run(const uint8_t *s, size_t n, size_t i, bool *punct);
int rt_tok_spm_encode(const RtTok *t, const uint8_t *s, size_t n, bool space_prefix, RtIds *out);

/* ---- Unicode (rt_unicode.c) --------------------------------------------------- */

enum { RT_UC_OTHER, RT_UC_LETTER, RT_UC_NUMBER, RT_UC_SPACE, RT_UC_PUNCT };
#define RT_UTF8_INVALID 0xffffffffu

/* Decodes the character at s[0..n) (n >= 1): returns its length; an invalid or truncated
 * sequence is one byte long with *cp = RT_UTF8_INVALID. Strict: no overlongs, surrogates
 * or code points past U+10FFFF. */
size_t rt_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* RT_UC_* of a code point (RT_UTF8_INVALID: other). Letters are L*, numbers N*, spaces
 * White_Space; punctuation (P*), marks and the rest are other. */
int rt_uc_class(uint32_t cp);
/* The same with punctuation told apart: RT_UC_PUNCT for General_Category P*. */
int rt_uc_class_p(uint32_t cp);
/* Length of the UTF-8 sequence a lead byte starts (1 for a continuation or invalid byte). */
int rt_utf8_len(uint8_t lead);

#endif
