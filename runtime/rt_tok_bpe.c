/* rt_tok_bpe.c - byte-level BPE: Llama 3's pre-tokenizer regex written out by hand, each
 * pre-token whole if it is a token (ignore_merges), else merged bytes; or the reference's
 * Falcon 3 split (three regexes in turn), every word merged from its bytes. */
#include "rt_tok_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- the pre-tokenizer -------------------------------------------------------------
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
 *   |\s*[\r\n]+|\s+(?!\S)|\s+
 * Every character matches some alternative (letters the 2nd, numbers the 3rd, spaces the
 * last, the rest the 4th), so the next match always starts where the last one ended and
 * the first alternative that matches there wins. An invalid UTF-8 byte is one character of
 * class other. */

typedef struct {
	uint32_t cp;
	uint8_t len, cls;
} Ch;

static Ch ch_at(const uint8_t *s, size_t n, size_t i)
{
	Ch c = {0, 0, RT_UC_OTHER};
	if (i >= n)
		return c; /* len 0, class other: "end" for the callers below */
	if (s[i] < 0x80) {
		c.cp = s[i];
		c.len = 1;
	} else {
		c.len = (uint8_t)rt_utf8_next(s + i, n - i, &c.cp);
	}
	c.cls = (uint8_t)rt_uc_class(c.cp);
	return c;
}

static bool is_crlf(uint32_t cp)
{
	return cp == '\r' || cp == '\n';
}

static uint8_t ascii_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d), ASCII letters only: end or 0. */
static size_t contraction(const uint8_t *s, size_t n, size_t i)
{
	if (s[i] != '\'' || i + 1 >= n)
		return 0;
	uint8_t a = ascii_lower(s[i + 1]);
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return i + 2;
	if (i + 2 >= n)
		return 0;
	uint8_t b = ascii_lower(s[i + 2]);
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
		return i + 3;
	return 0;
}

static size_t skip_class(const uint8_t *s, size_t n, size_t j, int cls)
{
	for (;;) {
		Ch c = ch_at(s, n, j);
		if (!c.len || c.cls != cls)
			return j;
		j += c.len;
	}
}

/* \s*[\r\n]+ | \s+(?!\S) | \s+ for a run of spaces starting at i. */
static size_t spaces(const uint8_t *s, size_t n, size_t i)
{
	size_t j = i, last = i, after_crlf = 0;
	int count = 0;
	for (;;) {
		Ch c = ch_at(s, n, j);
		if (!c.len || c.cls != RT_UC_SPACE)
			break;
		last = j;
		j += c.len;
		count++;
		if (is_crlf(c.cp))
			after_crlf = j;
	}
	/* \s* gives back characters until [\r\n]+ can match: the match ends after the last
	 * CR/LF of the run (a later one would have been found first by the backtracking). */
	if (after_crlf)
		return after_crlf;
	/* \s+(?!\S): the whole run at the end of the text; before a non-space, all but the
	 * last space (which then leads the next pre-token), if that leaves any. */
	if (j >= n)
		return j;
	if (count >= 2)
		return last;
	return j; /* \s+ */
}

size_t rt_tok_pretok_next(const uint8_t *s, size_t n, size_t i)
{
	size_t j = contraction(s, n, i);
	if (j)
		return j;
	Ch c0 = ch_at(s, n, i);
	if (c0.cls == RT_UC_LETTER)
		return skip_class(s, n, i + c0.len, RT_UC_LETTER);
	if (c0.cls == RT_UC_NUMBER) {
		j = i + c0.len;
		for (int k = 1; k < 3; k++) {
			Ch c = ch_at(s, n, j);
			if (!c.len || c.cls != RT_UC_NUMBER)
				break;
			j += c.len;
		}
		return j;
	}
	Ch c1 = ch_at(s, n, i + c0.len);
	/* [^\r\n\p{L}\p{N}]\p{L}+: one space or other character leading a word */
	if (!is_crlf(c0.cp) && c1.len && c1.cls == RT_UC_LETTER)
		return skip_class(s, n, i + c0.len + c1.len, RT_UC_LETTER);
	/* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
	j = c0.cls == RT_UC_OTHER ? i : c0.cp == ' ' && c1.len && c1.cls == RT_UC_OTHER ? i + 1 : 0;
	if (j || c0.cls == RT_UC_OTHER) {
		j = skip_class(s, n, j, RT_UC_OTHER);
		while (j < n && is_crlf(s[j]))
			j++;
		return j;
	}
	return spaces(s, n, i);
}

/* ---- Falcon 3's split -----------------------------------------------------------------
 * The reference (bitnet.cpp's llama.cpp, pre "falcon3" and "falcon_e") applies three regexes
 * in turn, each to the pieces the one before left, a piece's end acting as the text's end:
 *   [\p{P}\$\+<=>\^~\|`]+  a run of punctuation or ASCII symbols is a piece, and so is
 *                          what lies between two runs;
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
 *                          GPT-2's regex, with |\s+ last as the reference's hand-written
 *                          version has it (white space at a piece's end stays whole);
 *   [0-9]                  each ASCII digit alone.
 * A punctuation run stays whole: all of it is [^\s\p{L}\p{N}], and no apostrophe in it can
 * be followed by a letter. Outside ASCII, punctuation is General_Category P*; the other
 * ASCII characters of the first regex are all of !-/ :-@ [-` {-~. */

static bool falcon_punct(const Ch *c)
{
	if (c->cp < 0x80)
		return (c->cp >= 0x21 && c->cp <= 0x2f) || (c->cp >= 0x3a && c->cp <= 0x40) ||
		       (c->cp >= 0x5b && c->cp <= 0x60) || (c->cp >= 0x7b && c->cp <= 0x7e);
	return c->len && c->cp != RT_UTF8_INVALID && rt_uc_class_p(c->cp) == RT_UC_PUNCT;
}

size_t rt_tok_punct_run(const uint8_t *s, size_t n, size_t i, bool *punct)
{
	Ch c = ch_at(s, n, i);
	*punct = falcon_punct(&c);
	for (i += c.len; i < n; i += c.len) {
		c = ch_at(s, n, i);
		if (falcon_punct(&c) != *punct)
			break;
	}
	return i;
}

size_t rt_tok_gpt2_next(const uint8_t *s, size_t n, size_t i)
{
	/* 's|'t|'re|'ve|'m|'ll|'d (lower case only) */
	if (s[i] == '\'' && i + 1 < n) {
		uint8_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
		if (a == 's' || a == 't' || a == 'm' || a == 'd')
			return i + 2;
		if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
			return i + 3;
	}
	/* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': a space leads a run of one class */
	Ch c0 = ch_at(s, n, i);
	size_t j = c0.cp == ' ' ? i + 1 : i;
	Ch c = ch_at(s, n, j);
	if (c.len && c.cls != RT_UC_SPACE)
		return skip_class(s, n, j, c.cls);
	/* \s+(?!\S): before a non-space, all but the last space if that leaves any; else \s+ */
	size_t k = i, last = i;
	int count = 0;
	for (Ch w = c0; w.len && w.cls == RT_UC_SPACE; w = ch_at(s, n, k)) {
		last = k;
		k += w.len;
		count++;
	}
	if (count > 1 && k < n)
		return last;
	return count ? k : i + c0.len;
}

/* ---- merging -----------------------------------------------------------------------
 * The symbols of a pre-token start as its bytes; the pair with the lowest merge rank (the
 * leftmost among equals) merges first, until no pair has a merge. A min-heap of candidate
 * pairs keeps this O(n log n) for long pre-tokens (a run of CJK letters is one); stale
 * candidates are dropped when popped, by checking the two ids are still neighbours. */

typedef struct {
	int32_t id, prev, next; /* id -1: merged away */
} Sym;

typedef struct {
	uint32_t rank;
	int32_t pos, left, right;
} Cand;

typedef struct {
	Sym *sym;
	Cand *heap;
	size_t cap, nheap;
} Work;

static bool cand_less(const Cand *a, const Cand *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(Work *w, Cand c)
{
	size_t i = w->nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!cand_less(&c, &w->heap[p]))
			break;
		w->heap[i] = w->heap[p];
		i = p;
	}
	w->heap[i] = c;
}

static Cand heap_pop(Work *w)
{
	Cand top = w->heap[0], last = w->heap[--w->nheap];
	size_t i = 0, n = w->nheap;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c]))
			c++;
		if (!cand_less(&w->heap[c], &last))
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	w->heap[i] = last;
	return top;
}

static void try_pair(const RtTok *t, Work *w, int32_t pos)
{
	if (pos < 0 || w->sym[pos].next < 0)
		return;
	Cand c = {.pos = pos, .left = w->sym[pos].id, .right = w->sym[w->sym[pos].next].id};
	int32_t res;
	if (rt_tok_merge(t, c.left, c.right, &c.rank, &res))
		heap_push(w, c);
}

static int work_reserve(Work *w, size_t n)
{
	if (n <= w->cap)
		return RT_OK;
	size_t cap = n < 256 ? 256 : 2 * n;
	/* At most one candidate per pair is live, but stale ones stay in the heap: each merge
	 * adds two, so n - 1 + 2 (n - 1) bounds it. */
	Sym *s = realloc(w->sym, cap * sizeof *s);
	if (s)
		w->sym = s;
	Cand *h = realloc(w->heap, 3 * cap * sizeof *h);
	if (h)
		w->heap = h;
	if (!s || !h)
		return RT_ENOMEM;
	w->cap = cap;
	return RT_OK;
}

static int merge_word(const RtTok *t, Work *w, const uint8_t *s, size_t n, RtIds *out)
{
	if (work_reserve(w, n))
		return RT_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		w->sym[i].id = rt_tok_byte_id(t, s[i]);
		w->sym[i].prev = (int32_t)i - 1;
		w->sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
	}
	w->nheap = 0;
	for (size_t i = 0; i + 1 < n; i++)
		try_pair(t, w, (int32_t)i);
	while (w->nheap) {
		Cand c = heap_pop(w);
		Sym *a = &w->sym[c.pos];
		if (a->id != c.left || a->next < 0 || w->sym[a->next].id != c.right)
			continue;
		uint32_t rank;
		int32_t res;
		if (!rt_tok_merge(t, c.left, c.right, &rank, &res))
			continue;
		Sym *b = &w->sym[a->next];
		a->id = res;
		a->next = b->next;
		if (b->next >= 0)
			w->sym[b->next].prev = c.pos;
		b->id = -1;
		try_pair(t, w, a->prev);
		try_pair(t, w, c.pos);
	}
	for (int32_t i = 0; i >= 0; i = w->sym[i].next)
		if (w->sym[i].id >= 0)
			rt_ids_push(out, w->sym[i].id);
	return RT_OK;
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* One piece of GPT-2's split, each ASCII digit a word of its own. */
static int falcon_piece(const RtTok *t, Work *w, const uint8_t *s, size_t n, RtIds *out)
{
	int rc = RT_OK;
	for (size_t i = 0, j; i < n && !rc; i = j) {
		j = i + 1;
		if (!is_digit(s[i]))
			while (j < n && !is_digit(s[j]))
				j++;
		rc = merge_word(t, w, s + i, j - i, out);
	}
	return rc;
}

static int falcon_encode(const RtTok *t, Work *w, const uint8_t *s, size_t n, RtIds *out)
{
	int rc = RT_OK;
	for (size_t i = 0, end; i < n && !rc; i = end) {
		bool punct;
		end = rt_tok_punct_run(s, n, i, &punct);
		if (punct) {
			rc = merge_word(t, w, s + i, end - i, out);
			continue;
		}
		for (size_t j = i, k; j < end && !rc; j = k) {
			k = rt_tok_gpt2_next(s, end, j);
			rc = falcon_piece(t, w, s + j, k - j, out);
		}
	}
	return rc;
}

static int llama3_encode(const RtTok *t, Work *w, const uint8_t *s, size_t n, RtIds *out)
{
	int rc = RT_OK;
	for (size_t i = 0; i < n && !rc;) {
		size_t j = rt_tok_pretok_next(s, n, i);
		int32_t id = rt_tok_lookup(t, s + i, j - i);
		if (id >= 0)
			rt_ids_push(out, id);
		else
			rc = merge_word(t, w, s + i, j - i, out);
		i = j;
	}
	return rc;
}

int rt_tok_bpe_encode(const RtTok *t, const uint8_t *s, size_t n, RtIds *out)
{
	Work w = {0};
	int rc = t->split == RT_TOK_SPLIT_FALCON3 ? falcon_encode(t, &w, s, n, out)
						  : llama3_encode(t, &w, s, n, out);
	free(w.sym);
	free(w.heap);
	return rc;
}
