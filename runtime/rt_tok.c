/* rt_tok.c - opening a tokenizer blob (checks only, no per-token work), checked lookups,
 * encoding with special tokens split out, token pieces and streaming-safe output. */
#include "rt_tok_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- opening ------------------------------------------------------------------ */

static bool is_pow2(uint32_t x)
{
	return x && !(x & (x - 1));
}

/* Checks section k against the blob and the size the counts call for. */
static int section(const uint8_t *p, size_t size, int k, uint64_t want, const uint8_t **out,
		   RtErr *e)
{
	uint32_t off = rt_le32(p + 4 * (RT_TOKH_SECT + 2 * k));
	uint32_t sz = rt_le32(p + 4 * (RT_TOKH_SECT + 2 * k + 1));
	if (off < 4 * RT_TOKH_WORDS || (uint64_t)off + sz > size)
		return rt_err(e, RT_EINVAL, "tokenizer blob: section %d [%u, +%u) outside the %zu "
			      "bytes", k, off, sz, size);
	if (want != (uint64_t)~0u && sz != want)
		return rt_err(e, RT_EINVAL, "tokenizer blob: section %d has %u bytes, expected %llu",
			      k, sz, (unsigned long long)want);
	*out = p + off;
	return RT_OK;
}

static int open_header(RtTok *t, const uint8_t *p, size_t size, RtErr *e)
{
	if (!p || size < 4 * RT_TOKH_WORDS)
		return rt_err(e, RT_EINVAL, "tokenizer blob: %zu bytes, shorter than its header", size);
	uint32_t h[RT_TOKH_WORDS];
	for (int i = 0; i < RT_TOKH_WORDS; i++)
		h[i] = rt_le32(p + 4 * i);
	if (h[RT_TOKH_MAGIC] != RT_TOK_MAGIC)
		return rt_err(e, RT_EINVAL, "tokenizer blob: bad magic 0x%08x", h[RT_TOKH_MAGIC]);
	if (h[RT_TOKH_VERSION] != RT_TOK_VERSION)
		return rt_err(e, RT_EINVAL, "tokenizer blob: version %u, this runtime reads %u",
			      h[RT_TOKH_VERSION], RT_TOK_VERSION);
	if (h[RT_TOKH_TOTAL] > size)
		return rt_err(e, RT_EINVAL, "tokenizer blob: truncated (%zu of %u bytes)", size,
			      h[RT_TOKH_TOTAL]);
	uint32_t kind = h[RT_TOKH_KIND], n = h[RT_TOKH_N_TOKENS];
	if (kind != RT_TOK_BPE && kind != RT_TOK_SPM)
		return rt_err(e, RT_EINVAL, "tokenizer blob: unknown kind %u", kind);
	if (n < 1 || n > (1u << 28))
		return rt_err(e, RT_EINVAL, "tokenizer blob: %u tokens", n);
	t->kind = (RtTokKind)kind;
	t->n_tokens = (int32_t)n;
	t->n_merges = (int32_t)h[RT_TOKH_N_MERGES];
	t->bos = (int32_t)h[RT_TOKH_BOS];
	t->eos = (int32_t)h[RT_TOKH_EOS];
	t->unk = (int32_t)h[RT_TOKH_UNK];
	const int32_t ids[3] = {t->bos, t->eos, t->unk};
	for (int i = 0; i < 3; i++)
		if (ids[i] < -1 || ids[i] >= t->n_tokens)
			return rt_err(e, RT_EINVAL, "tokenizer blob: bos/eos/unk id %d out of range",
				      ids[i]);
	if (h[RT_TOKH_SPLIT] > RT_TOK_SPLIT_FALCON3 ||
	    (kind == RT_TOK_SPM && h[RT_TOKH_SPLIT] != RT_TOK_SPLIT_LLAMA3))
		return rt_err(e, RT_EINVAL, "tokenizer blob: unknown split %u", h[RT_TOKH_SPLIT]);
	t->split = (RtTokSplit)h[RT_TOKH_SPLIT];
	t->flags = h[RT_TOKH_FLAGS];
	t->n_eog = h[RT_TOKH_N_EOG];
	t->n_special = h[RT_TOKH_N_SPECIAL];
	uint32_t hs = h[RT_TOKH_HASH_SIZE], ms = h[RT_TOKH_MERGE_SIZE];
	if (!is_pow2(hs) || (ms && !is_pow2(ms)) || (kind == RT_TOK_BPE && t->n_merges && !ms) ||
	    t->n_merges < 0)
		return rt_err(e, RT_EINVAL, "tokenizer blob: bad table sizes (%u, %u)", hs, ms);
	t->hash_mask = hs - 1;
	t->merge_mask = ms ? ms - 1 : 0;
	return RT_OK;
}

RtTok *rt_tok_open(const void *blob, size_t size, RtErr *e)
{
	RtTok *t = calloc(1, sizeof *t);
	if (!t) {
		rt_err(e, RT_ENOMEM, "tokenizer: out of memory");
		return NULL;
	}
	const uint8_t *p = blob;
	uint64_t n = 0;
	const uint64_t any = ~0u;
	int rc = open_header(t, p, size, e);
	if (!rc) {
		n = (uint64_t)t->n_tokens;
		rc = section(p, size, RT_TOKS_OFFS, 4 * (n + 1), &t->offs, e);
	}
	if (!rc)
		rc = section(p, size, RT_TOKS_BYTES, any, &t->bytes, e);
	if (!rc) {
		t->bytes_size = rt_le32(p + 4 * (RT_TOKH_SECT + 2 * RT_TOKS_BYTES + 1));
		rc = section(p, size, RT_TOKS_TYPES, n, &t->types, e);
	}
	if (!rc)
		rc = section(p, size, RT_TOKS_SCORES, t->kind == RT_TOK_SPM ? 4 * n : 0, &t->scores, e);
	if (!rc)
		rc = section(p, size, RT_TOKS_HASH, 4 * ((uint64_t)t->hash_mask + 1), &t->hash, e);
	if (!rc)
		rc = section(p, size, RT_TOKS_MERGES, t->merge_mask || t->n_merges
			     ? 16 * ((uint64_t)t->merge_mask + 1) : 0, &t->merges, e);
	if (!rc)
		rc = section(p, size, RT_TOKS_SPECIAL, 4 * (uint64_t)t->n_special, &t->special, e);
	if (!rc)
		rc = section(p, size, RT_TOKS_EOG, 4 * (uint64_t)t->n_eog, &t->eog, e);
	if (!rc)
		rc = section(p, size, RT_TOKS_BYTEID, 1024, &t->byteid, e);
	if (!rc)
		rc = section(p, size, RT_TOKS_SPFIRST, 32, &t->spfirst, e);
	if (rc) {
		free(t);
		return NULL;
	}
	return t;
}

void rt_tok_free(RtTok *t)
{
	free(t);
}

int32_t rt_tok_n_vocab(const RtTok *t)
{
	return t->n_tokens;
}

int32_t rt_tok_bos(const RtTok *t)
{
	return t->bos;
}

bool rt_tok_add_bos(const RtTok *t)
{
	return t->flags & RT_TOKF_ADD_BOS;
}

bool rt_tok_is_eog(const RtTok *t, int32_t id)
{
	if (id < 0)
		return false;
	if (id == t->eos)
		return true;
	for (uint32_t i = 0; i < t->n_eog; i++)
		if (rt_le32(t->eog + 4 * (size_t)i) == (uint32_t)id)
			return true;
	return false;
}

/* ---- checked lookups ---------------------------------------------------------- */

const uint8_t *rt_tok_bytes(const RtTok *t, int32_t id, uint32_t *len)
{
	*len = 0;
	if (id < 0 || id >= t->n_tokens)
		return t->bytes;
	uint32_t a = rt_le32(t->offs + 4 * (size_t)id), b = rt_le32(t->offs + 4 * (size_t)id + 4);
	if (a > b || b > t->bytes_size)
		return t->bytes;
	*len = b - a;
	return t->bytes + a;
}

int32_t rt_tok_lookup(const RtTok *t, const uint8_t *s, size_t n)
{
	uint32_t h = rt_tok_hash_bytes(s, n);
	/* At most one pass over the table: a corrupt blob may have no empty slot. */
	for (uint32_t probe = 0; probe <= t->hash_mask; probe++, h++) {
		uint32_t v = rt_le32(t->hash + 4 * (size_t)(h & t->hash_mask));
		if (!v)
			return -1;
		uint32_t len;
		const uint8_t *p = rt_tok_bytes(t, (int32_t)(v - 1), &len);
		if (len == n && memcmp(p, s, n) == 0)
			return (int32_t)(v - 1);
	}
	return -1;
}

int32_t rt_tok_byte_id(const RtTok *t, uint8_t b)
{
	uint32_t id = rt_le32(t->byteid + 4 * (size_t)b);
	return id < (uint32_t)t->n_tokens ? (int32_t)id : -1;
}

bool rt_tok_merge(const RtTok *t, int32_t left, int32_t right, uint32_t *rank, int32_t *result)
{
	if (!t->merge_mask && !t->n_merges)
		return false;
	uint32_t h = rt_tok_hash_pair((uint32_t)left, (uint32_t)right);
	for (uint32_t probe = 0; probe <= t->merge_mask; probe++, h++) {
		const uint8_t *s = t->merges + 16 * (size_t)(h & t->merge_mask);
		uint32_t l = rt_le32(s);
		if (l == ~0u)
			return false;
		if (l == (uint32_t)left && rt_le32(s + 4) == (uint32_t)right) {
			uint32_t res = rt_le32(s + 12);
			if (res >= (uint32_t)t->n_tokens)
				return false;
			*rank = rt_le32(s + 8);
			*result = (int32_t)res;
			return true;
		}
	}
	return false;
}

void rt_ids_push(RtIds *o, int32_t id)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 64;
		int32_t *v = realloc(o->v, cap * sizeof *v);
		if (!v) {
			o->oom = true;
			return;
		}
		o->v = v;
		o->cap = cap;
	}
	o->v[o->n++] = id;
}

/* ---- encoding ----------------------------------------------------------------- */

/* The special token whose text starts s (the longest: the list is sorted so), or -1.
 * Control tokens count only when asked for; user-defined ones always (as added tokens
 * do in llama.cpp and HF tokenizers). */
static int32_t match_special(const RtTok *t, const uint8_t *s, size_t n, bool control,
			     size_t *mlen)
{
	if (!(t->spfirst[s[0] >> 3] >> (s[0] & 7) & 1))
		return -1;
	for (uint32_t i = 0; i < t->n_special; i++) {
		int32_t id = (int32_t)rt_le32(t->special + 4 * (size_t)i);
		uint32_t len;
		const uint8_t *p = rt_tok_bytes(t, id, &len);
		if (!len || len > n || p[0] != s[0] || memcmp(p, s, len) != 0)
			continue;
		int type = t->types[id];
		if (type == RT_TT_USER || (control && type == RT_TT_CONTROL)) {
			*mlen = len;
			return id;
		}
	}
	return -1;
}

static int encode_run(const RtTok *t, const uint8_t *s, size_t n, bool after_special, RtIds *o)
{
	if (!n)
		return RT_OK;
	if (t->kind == RT_TOK_SPM)
		return rt_tok_spm_encode(t, s, n, after_special && (t->flags & RT_TOKF_SPACE_PREFIX),
					 o);
	return rt_tok_bpe_encode(t, s, n, o); /* split as t->split says */
}

int rt_tok_encode(const RtTok *t, const char *text, size_t len, int flags, int32_t **ids, int *n,
		  RtErr *e)
{
	*ids = NULL;
	*n = 0;
	if (!text && len)
		return rt_err(e, RT_EINVAL, "tokenizer: no text");
	const uint8_t *s = (const uint8_t *)text;
	RtIds o = {0};
	if ((flags & RT_TOK_ADD_BOS) && t->bos >= 0)
		rt_ids_push(&o, t->bos);
	bool control = flags & RT_TOK_PARSE_SPECIAL;
	bool look = control || (t->flags & RT_TOKF_HAS_USER);
	size_t seg = 0, i = 0;
	bool after_special = true;
	int rc = RT_OK;
	while (look && i < len && !rc) {
		size_t ml;
		int32_t id = match_special(t, s + i, len - i, control, &ml);
		if (id < 0) {
			i++;
			continue;
		}
		rc = encode_run(t, s + seg, i - seg, after_special, &o);
		rt_ids_push(&o, id);
		i += ml;
		seg = i;
		after_special = true;
	}
	if (!rc)
		rc = encode_run(t, s + seg, len - seg, after_special, &o);
	if (!rc && !o.v)
		o.v = malloc(sizeof *o.v); /* a real allocation even for no ids */
	if (rc || o.oom || !o.v || o.n > (size_t)INT32_MAX) {
		free(o.v);
		return rt_err(e, rc ? rc : RT_ENOMEM, "tokenizer: out of memory encoding %zu bytes",
			      len);
	}
	*ids = o.v;
	*n = (int)o.n;
	return RT_OK;
}

/* ---- decoding ----------------------------------------------------------------- */

int rt_tok_piece(const RtTok *t, int32_t id, bool special, char *buf, int cap)
{
	if (id < 0 || id >= t->n_tokens)
		return -1;
	int type = t->types[id];
	if (!special && (type == RT_TT_CONTROL || type == RT_TT_UNKNOWN))
		return 0;
	uint32_t len;
	const uint8_t *p = rt_tok_bytes(t, id, &len);
	if (cap > 0)
		memcpy(buf, p, len < (uint32_t)cap ? len : (size_t)cap);
	return (int)len;
}

/* Whether p[0..k) (k < its full length) can still become a valid character. */
static bool utf8_prefix_ok(const uint8_t *p, size_t k)
{
	uint8_t c[4] = {p[0], 0x80, 0x80, 0x80};
	int want = rt_utf8_len(p[0]);
	if (k == 1)
		return want > 1; /* every lead byte of a longer sequence has completions */
	memcpy(c, p, k);
	uint32_t cp;
	return rt_utf8_next(c, 4, &cp) == (size_t)want;
}

size_t rt_detok_push(RtDetok *d, const char *bytes, size_t n, char *out)
{
	uint8_t *u = (uint8_t *)out;
	size_t total = (size_t)d->n;
	memcpy(u, d->pend, total);
	if (n)
		memcpy(u + total, bytes, n);
	total += n;
	/* Hold back the last character if it is a valid start still waiting for bytes. */
	size_t keep = total;
	for (size_t k = 1; k <= 3 && k <= total; k++) {
		uint8_t c = u[total - k];
		if ((c & 0xc0) == 0x80)
			continue;
		if ((size_t)rt_utf8_len(c) > k && utf8_prefix_ok(u + total - k, k))
			keep = total - k;
		break;
	}
	d->n = (int)(total - keep);
	memcpy(d->pend, u + keep, (size_t)d->n);
	return keep;
}

size_t rt_detok_flush(RtDetok *d, char *out)
{
	size_t n = (size_t)d->n;
	memcpy(out, d->pend, n);
	d->n = 0;
	return n;
}
