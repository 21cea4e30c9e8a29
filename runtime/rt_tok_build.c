/* rt_tok_build.c - lays out a tokenizer blob from GGUF-style vocabulary arrays (at compile
 * time): tokens decoded to bytes, hash tables for tokens and merges, specials, ids. */
#include "rt_tok_int.h"

#include <stdlib.h>
#include <string.h>

/* GPT-2's byte-to-unicode map, inverted: code point (< 324) -> byte, -1 if none. The
 * printable bytes stand for themselves; the other 68 become U+0100.. in byte order. */
static void gpt2_inverse(int16_t inv[324])
{
	int k = 0;
	for (int cp = 0; cp < 324; cp++)
		inv[cp] = -1;
	for (int b = 0; b < 256; b++) {
		bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
		if (self)
			inv[b] = (int16_t)b;
		else
			inv[256 + k++] = (int16_t)b;
	}
}

/* GPT-2 form -> bytes; a character outside the map is kept as its UTF-8 bytes (lenient:
 * such a token could only ever come out of decoding, never be matched). */
static size_t decode_gpt2(const int16_t inv[324], const uint8_t *s, size_t n, uint8_t *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = rt_utf8_next(s + i, n - i, &cp);
		if (cp < 324 && inv[cp] >= 0) {
			out[o++] = (uint8_t)inv[cp];
		} else {
			memcpy(out + o, s + i, l);
			o += l;
		}
		i += l;
	}
	return o;
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* "<0xNN>" -> NN, else -1. */
static int spm_byte(const uint8_t *s, size_t n)
{
	if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return -1;
	int h = hexval(s[3]), l = hexval(s[4]);
	return h < 0 || l < 0 ? -1 : h << 4 | l;
}

/* SPM form -> bytes: U+2581 is a space, a byte token its byte. */
static size_t decode_spm(const uint8_t *s, size_t n, int type, uint8_t *out)
{
	int b = type == RT_TT_BYTE ? spm_byte(s, n) : -1;
	if (b >= 0) {
		out[0] = (uint8_t)b;
		return 1;
	}
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		if (i + 3 <= n && s[i] == 0xe2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
			out[o++] = ' ';
			i += 3;
		} else {
			out[o++] = s[i++];
		}
	}
	return o;
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

/* Whether text can turn into the token (so it belongs in the hash table). */
static bool hashable(int type)
{
	return type != RT_TT_CONTROL && type != RT_TT_UNKNOWN && type != RT_TT_BYTE;
}

/* What the build works on: the blob being filled and views of its sections. */
typedef struct {
	const RtTokSpec *spec;
	uint8_t *blob;
	uint8_t *offs, *bytes, *types, *hash, *merges;
	uint32_t hash_mask, merge_mask;
} Build;

static const uint8_t *tok_at(const Build *b, int32_t id, uint32_t *len)
{
	uint32_t o = rt_le32(b->offs + 4 * (size_t)id);
	*len = rt_le32(b->offs + 4 * (size_t)id + 4) - o;
	return b->bytes + o;
}

static int32_t build_lookup(const Build *b, const uint8_t *s, size_t n)
{
	for (uint32_t h = rt_tok_hash_bytes(s, n);; h++) {
		uint32_t v = rt_le32(b->hash + 4 * (size_t)(h & b->hash_mask));
		if (!v)
			return -1;
		uint32_t len;
		const uint8_t *p = tok_at(b, (int32_t)(v - 1), &len);
		if (len == n && memcmp(p, s, n) == 0)
			return (int32_t)(v - 1);
	}
}

static void build_hash(Build *b)
{
	for (int32_t id = 0; id < b->spec->n_tokens; id++) {
		uint32_t len;
		const uint8_t *p = tok_at(b, id, &len);
		if (!len || !hashable(b->types[id]) || build_lookup(b, p, len) >= 0)
			continue; /* a duplicate keeps the lowest id */
		uint32_t h = rt_tok_hash_bytes(p, len);
		while (rt_le32(b->hash + 4 * (size_t)(h & b->hash_mask)))
			h++;
		rt_put_le32(b->hash + 4 * (size_t)(h & b->hash_mask), (uint32_t)id + 1);
	}
}

/* Parses merge k ("LEFT RIGHT", GPT-2 form) and enters it; a pair seen before keeps its
 * lower rank. */
static int build_merge(Build *b, const int16_t inv[324], int32_t k, uint8_t *scratch, RtErr *e)
{
	const uint8_t *m = (const uint8_t *)b->spec->merges[k];
	size_t n = b->spec->merge_len[k], sp = 1;
	while (m && sp < n && m[sp] != ' ')
		sp++;
	if (!m || sp >= n)
		return rt_err(e, RT_EINVAL, "tokenizer: merge %d (\"%.*s\") is not \"LEFT RIGHT\"", k,
			      (int)n, m ? (const char *)m : "");
	size_t ln = decode_gpt2(inv, m, sp, scratch);
	size_t rn = decode_gpt2(inv, m + sp + 1, n - sp - 1, scratch + ln);
	int32_t l = build_lookup(b, scratch, ln), r = build_lookup(b, scratch + ln, rn);
	int32_t res = build_lookup(b, scratch, ln + rn);
	if (l < 0 || r < 0 || res < 0)
		return rt_err(e, RT_EINVAL, "tokenizer: merge %d (\"%.*s\"): %s is not a token", k,
			      (int)n, (const char *)m, l < 0 ? "the left part" : r < 0 ? "the right part"
										: "the result");
	for (uint32_t h = rt_tok_hash_pair((uint32_t)l, (uint32_t)r);; h++) {
		uint8_t *slot = b->merges + 16 * (size_t)(h & b->merge_mask);
		uint32_t sl = rt_le32(slot);
		if (sl == ~0u) {
			rt_put_le32(slot, (uint32_t)l);
			rt_put_le32(slot + 4, (uint32_t)r);
			rt_put_le32(slot + 8, (uint32_t)k);
			rt_put_le32(slot + 12, (uint32_t)res);
			return RT_OK;
		}
		if (sl == (uint32_t)l && rt_le32(slot + 4) == (uint32_t)r)
			return RT_OK;
	}
}

RtTokSplit rt_tok_pre_split(const char *pre)
{
	if (pre && (!strcmp(pre, "falcon3") || !strcmp(pre, "falcon_e")))
		return RT_TOK_SPLIT_FALCON3;
	return RT_TOK_SPLIT_LLAMA3;
}

static int check_spec(const RtTokSpec *s, RtErr *e)
{
	if (s->kind != RT_TOK_BPE && s->kind != RT_TOK_SPM)
		return rt_err(e, RT_EINVAL, "tokenizer: unknown kind %d", (int)s->kind);
	if (s->n_tokens < 1 || s->n_tokens > (1 << 28) || !s->tokens || !s->token_len)
		return rt_err(e, RT_EINVAL, "tokenizer: no tokens (or %d, too many)", s->n_tokens);
	if (s->kind == RT_TOK_SPM && !s->scores)
		return rt_err(e, RT_EINVAL, "tokenizer: a SentencePiece vocabulary needs scores");
	if (s->n_merges < 0 || (s->n_merges > 0 && (!s->merges || !s->merge_len)))
		return rt_err(e, RT_EINVAL, "tokenizer: bad merge list (%d merges)", s->n_merges);
	const int32_t ids[3] = {s->bos, s->eos, s->unk};
	const char *names[3] = {"bos", "eos", "unk"};
	for (int i = 0; i < 3; i++)
		if (ids[i] < -1 || ids[i] >= s->n_tokens)
			return rt_err(e, RT_EINVAL, "tokenizer: %s id %d out of range [0, %d)", names[i],
				      ids[i], s->n_tokens);
	if (s->n_eog > 0 && !s->eog)
		return rt_err(e, RT_EINVAL, "tokenizer: %d end-of-generation ids, no list", s->n_eog);
	for (int i = 0; i < s->n_eog; i++)
		if (s->eog[i] < 0 || s->eog[i] >= s->n_tokens)
			return rt_err(e, RT_EINVAL, "tokenizer: end-of-generation id %d out of range",
				      s->eog[i]);
	for (int32_t i = 0; i < s->n_tokens; i++) {
		if (s->token_len[i] && !s->tokens[i])
			return rt_err(e, RT_EINVAL, "tokenizer: token %d has no text", i);
		if (s->types && (s->types[i] < RT_TT_NORMAL || s->types[i] > RT_TT_BYTE))
			return rt_err(e, RT_EINVAL, "tokenizer: token %d (\"%.*s\") has type %d", i,
				      (int)s->token_len[i], s->tokens[i] ? s->tokens[i] : "", s->types[i]);
	}
	return RT_OK;
}

/* The special list's order: longest text first, so that the first match is the longest. */
typedef struct {
	uint32_t len;
	int32_t id;
} Special;

static int cmp_special(const void *a, const void *b)
{
	const Special *x = a, *y = b;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* Decodes every token into dec/offs (malloc'd; the caller frees). */
static int decode_tokens(const RtTokSpec *s, uint8_t **dec, uint32_t **offs, RtErr *e)
{
	uint64_t total = 0;
	for (int32_t i = 0; i < s->n_tokens; i++)
		total += s->token_len[i];
	if (total > 0x7fffffffu)
		return rt_err(e, RT_EINVAL, "tokenizer: %llu bytes of token text is too much",
			      (unsigned long long)total);
	*dec = malloc(total + 1);
	*offs = malloc(((size_t)s->n_tokens + 1) * sizeof **offs);
	if (!*dec || !*offs)
		return rt_err(e, RT_ENOMEM, "tokenizer: out of memory decoding tokens");
	int16_t inv[324];
	gpt2_inverse(inv);
	uint32_t o = 0;
	for (int32_t i = 0; i < s->n_tokens; i++) {
		const uint8_t *p = (const uint8_t *)s->tokens[i];
		size_t n = s->token_len[i];
		int type = s->types ? s->types[i] : RT_TT_NORMAL;
		(*offs)[i] = o;
		if (!n)
			continue;
		if (type == RT_TT_CONTROL || type == RT_TT_USER) {
			memcpy(*dec + o, p, n); /* their text as it is written */
			o += (uint32_t)n;
		} else if (s->kind == RT_TOK_BPE) {
			o += (uint32_t)decode_gpt2(inv, p, n, *dec + o);
		} else {
			o += (uint32_t)decode_spm(p, n, type, *dec + o);
		}
	}
	(*offs)[s->n_tokens] = o;
	return RT_OK;
}

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static int fill_byteid(Build *b, uint8_t *byteid, RtErr *e)
{
	const RtTokSpec *s = b->spec;
	memset(byteid, 0xff, 1024);
	if (s->kind == RT_TOK_BPE) {
		for (int c = 0; c < 256; c++) {
			uint8_t ch = (uint8_t)c;
			int32_t id = build_lookup(b, &ch, 1);
			if (id < 0)
				return rt_err(e, RT_EINVAL, "tokenizer: byte-level vocabulary has no "
					      "token for byte 0x%02x", c);
			rt_put_le32(byteid + 4 * c, (uint32_t)id);
		}
		return RT_OK;
	}
	for (int32_t id = s->n_tokens - 1; id >= 0; id--) { /* the lowest id wins */
		int c = b->types[id] == RT_TT_BYTE
				? spm_byte((const uint8_t *)s->tokens[id], s->token_len[id]) : -1;
		if (c >= 0)
			rt_put_le32(byteid + 4 * c, (uint32_t)id);
	}
	return RT_OK;
}

int rt_tok_build(const RtTokSpec *spec, void **blob, size_t *size, RtErr *e)
{
	*blob = NULL;
	*size = 0;
	int rc = check_spec(spec, e);
	if (rc)
		return rc;
	uint8_t *dec = NULL;
	uint32_t *doffs = NULL;
	Special *special = NULL;
	uint8_t *scratch = NULL;
	Build b = {.spec = spec};
	if ((rc = decode_tokens(spec, &dec, &doffs, e)))
		goto out;

	int32_t n = spec->n_tokens;
	int32_t n_merges = spec->kind == RT_TOK_BPE ? spec->n_merges : 0;
	uint32_t hsize = pow2_at_least(2 * (uint64_t)n);
	uint32_t msize = n_merges ? pow2_at_least((uint64_t)n_merges * 4 / 3 + 1) : 0;
	size_t ssize[RT_TOKS_COUNT] = {
		[RT_TOKS_OFFS] = 4 * ((size_t)n + 1),
		[RT_TOKS_BYTES] = doffs[n],
		[RT_TOKS_TYPES] = (size_t)n,
		[RT_TOKS_SCORES] = spec->kind == RT_TOK_SPM ? 4 * (size_t)n : 0,
		[RT_TOKS_HASH] = 4 * (size_t)hsize,
		[RT_TOKS_MERGES] = 16 * (size_t)msize,
		[RT_TOKS_SPECIAL] = 0, /* below */
		[RT_TOKS_EOG] = 4 * (size_t)(spec->n_eog > 0 ? spec->n_eog : 0),
		[RT_TOKS_BYTEID] = 1024,
		[RT_TOKS_SPFIRST] = 32,
	};
	int32_t n_special = 0;
	bool has_user = false;
	for (int32_t i = 0; i < n; i++) {
		int type = spec->types ? spec->types[i] : RT_TT_NORMAL;
		if ((type == RT_TT_CONTROL || type == RT_TT_USER) && doffs[i + 1] > doffs[i])
			n_special++;
		has_user |= type == RT_TT_USER;
	}
	ssize[RT_TOKS_SPECIAL] = 4 * (size_t)n_special;
	size_t soff[RT_TOKS_COUNT], total = 4 * RT_TOKH_WORDS;
	for (int k = 0; k < RT_TOKS_COUNT; k++) {
		soff[k] = total;
		total = align8(total + ssize[k]);
	}
	if (total > 0xffffffffu) {
		rc = rt_err(e, RT_EINVAL, "tokenizer: blob of %zu bytes is too large", total);
		goto out;
	}
	b.blob = calloc(1, total);
	if (!b.blob) {
		rc = rt_err(e, RT_ENOMEM, "tokenizer: out of memory (%zu bytes)", total);
		goto out;
	}
	b.offs = b.blob + soff[RT_TOKS_OFFS];
	b.bytes = b.blob + soff[RT_TOKS_BYTES];
	b.types = b.blob + soff[RT_TOKS_TYPES];
	b.hash = b.blob + soff[RT_TOKS_HASH];
	b.merges = b.blob + soff[RT_TOKS_MERGES];
	b.hash_mask = hsize - 1;
	b.merge_mask = msize ? msize - 1 : 0;
	for (int32_t i = 0; i <= n; i++)
		rt_put_le32(b.offs + 4 * (size_t)i, doffs[i]);
	memcpy(b.bytes, dec, doffs[n]);
	for (int32_t i = 0; i < n; i++) {
		b.types[i] = (uint8_t)(spec->types ? spec->types[i] : RT_TT_NORMAL);
		if (spec->kind == RT_TOK_SPM) {
			uint32_t bits;
			memcpy(&bits, &spec->scores[i], 4);
			rt_put_le32(b.blob + soff[RT_TOKS_SCORES] + 4 * (size_t)i, bits);
		}
	}
	build_hash(&b);
	if ((rc = fill_byteid(&b, b.blob + soff[RT_TOKS_BYTEID], e)))
		goto out;

	/* Merges: the scratch holds one decoded merge (never longer than its text). */
	size_t max_merge = 1;
	for (int32_t k = 0; k < n_merges; k++)
		if (spec->merge_len[k] > max_merge)
			max_merge = spec->merge_len[k];
	memset(b.merges, 0xff, ssize[RT_TOKS_MERGES]);
	scratch = malloc(max_merge);
	if (!scratch) {
		rc = rt_err(e, RT_ENOMEM, "tokenizer: out of memory");
		goto out;
	}
	int16_t inv[324];
	gpt2_inverse(inv);
	for (int32_t k = 0; k < n_merges; k++)
		if ((rc = build_merge(&b, inv, k, scratch, e)))
			goto out;

	special = malloc(((size_t)n_special + 1) * sizeof *special);
	if (!special) {
		rc = rt_err(e, RT_ENOMEM, "tokenizer: out of memory");
		goto out;
	}
	int32_t ns = 0;
	for (int32_t i = 0; i < n; i++)
		if ((b.types[i] == RT_TT_CONTROL || b.types[i] == RT_TT_USER) && doffs[i + 1] > doffs[i])
			special[ns++] = (Special){doffs[i + 1] - doffs[i], i};
	qsort(special, (size_t)ns, sizeof *special, cmp_special);
	uint8_t *spfirst = b.blob + soff[RT_TOKS_SPFIRST];
	for (int32_t i = 0; i < ns; i++) {
		rt_put_le32(b.blob + soff[RT_TOKS_SPECIAL] + 4 * (size_t)i, (uint32_t)special[i].id);
		uint8_t c = dec[doffs[special[i].id]];
		spfirst[c >> 3] |= (uint8_t)(1u << (c & 7));
	}
	for (int i = 0; i < spec->n_eog; i++)
		rt_put_le32(b.blob + soff[RT_TOKS_EOG] + 4 * (size_t)i, (uint32_t)spec->eog[i]);

	/* The header last: of pre, only the split it names is stored. */
	uint32_t hdr[RT_TOKH_WORDS] = {
		[RT_TOKH_MAGIC] = RT_TOK_MAGIC,
		[RT_TOKH_VERSION] = RT_TOK_VERSION,
		[RT_TOKH_KIND] = (uint32_t)spec->kind,
		[RT_TOKH_N_TOKENS] = (uint32_t)n,
		[RT_TOKH_N_MERGES] = (uint32_t)n_merges,
		[RT_TOKH_BOS] = (uint32_t)spec->bos,
		[RT_TOKH_EOS] = (uint32_t)spec->eos,
		[RT_TOKH_UNK] = (uint32_t)spec->unk,
		/* add_space_prefix is not in the GGUF spec we get: SPM always has it, which is
		 * the default of llama.cpp's "llama" vocabularies. */
		[RT_TOKH_FLAGS] = (spec->add_bos ? RT_TOKF_ADD_BOS : 0u) |
				  (spec->kind == RT_TOK_SPM ? RT_TOKF_SPACE_PREFIX : 0u) |
				  (has_user ? RT_TOKF_HAS_USER : 0u),
		[RT_TOKH_N_EOG] = (uint32_t)(spec->n_eog > 0 ? spec->n_eog : 0),
		[RT_TOKH_N_SPECIAL] = (uint32_t)ns,
		[RT_TOKH_HASH_SIZE] = hsize,
		[RT_TOKH_MERGE_SIZE] = msize,
		[RT_TOKH_TOTAL] = (uint32_t)total,
		[RT_TOKH_SPLIT] = spec->kind == RT_TOK_BPE ? (uint32_t)rt_tok_pre_split(spec->pre)
							  : RT_TOK_SPLIT_LLAMA3,
	};
	for (int k = 0; k < RT_TOKS_COUNT; k++) {
		hdr[RT_TOKH_SECT + 2 * k] = (uint32_t)soff[k];
		hdr[RT_TOKH_SECT + 2 * k + 1] = (uint32_t)ssize[k];
	}
	for (int i = 0; i < RT_TOKH_WORDS; i++)
		rt_put_le32(b.blob + 4 * i, hdr[i]);
	*blob = b.blob;
	*size = total;
	b.blob = NULL;
out:
	free(b.blob);
	free(dec);
	free(doffs);
	free(special);
	free(scratch);
	return rc;
}
