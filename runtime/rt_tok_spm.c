/* rt_tok_spm.c - SentencePiece-style BPE by score ("llama" in GGUF): the text with a space
 * in front, split into characters, merged pairwise by the best-scoring vocabulary piece,
 * with characters outside the vocabulary falling back to <0xNN> byte tokens.
 *
 * The blob holds pieces with U+2581 already turned into a space, so the text is matched as
 * it is (spaces and all) instead of being rewritten with U+2581 first. On decoding, a
 * piece's leading space comes back as a space: llama.cpp drops it from the first piece
 * after BOS (the space this encoder adds); callers that want that drop it themselves. */
#include "rt_tok_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
	uint32_t off, len; /* bytes of the text; len 0: merged into its left neighbour */
	int32_t prev, next;
} Sym;

typedef struct {
	float score;
	int32_t left, right;
	uint32_t len; /* left.len + right.len when pushed: a mismatch later means stale */
} Bigram;

typedef struct {
	Sym *sym;
	Bigram *heap;
	size_t nheap;
	const uint8_t *text;
} Work;

static float score_of(const RtTok *t, int32_t id)
{
	uint32_t bits = rt_le32(t->scores + 4 * (size_t)id);
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

/* The better bigram: the higher score; among equals the leftmost. */
static bool better(const Bigram *a, const Bigram *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(Work *w, Bigram c)
{
	size_t i = w->nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!better(&c, &w->heap[p]))
			break;
		w->heap[i] = w->heap[p];
		i = p;
	}
	w->heap[i] = c;
}

static Bigram heap_pop(Work *w)
{
	Bigram top = w->heap[0], last = w->heap[--w->nheap];
	size_t i = 0, n = w->nheap;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && better(&w->heap[c + 1], &w->heap[c]))
			c++;
		if (!better(&w->heap[c], &last))
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	w->heap[i] = last;
	return top;
}

/* Queues the pair (left, left's next) if their text together is a piece. */
static void try_bigram(const RtTok *t, Work *w, int32_t left)
{
	if (left < 0 || w->sym[left].next < 0)
		return;
	const Sym *a = &w->sym[left], *b = &w->sym[a->next];
	int32_t id = rt_tok_lookup(t, w->text + a->off, a->len + b->len);
	if (id < 0)
		return;
	Bigram g = {score_of(t, id), left, a->next, a->len + b->len};
	heap_push(w, g);
}

/* A symbol's tokens: the piece, else its bytes' tokens, else unk per byte. */
static void emit(const RtTok *t, const Work *w, const Sym *s, RtIds *out)
{
	int32_t id = rt_tok_lookup(t, w->text + s->off, s->len);
	if (id >= 0) {
		rt_ids_push(out, id);
		return;
	}
	for (uint32_t i = 0; i < s->len; i++) {
		id = rt_tok_byte_id(t, w->text[s->off + i]);
		if (id < 0)
			id = t->unk;
		if (id >= 0)
			rt_ids_push(out, id);
	}
}

int rt_tok_spm_encode(const RtTok *t, const uint8_t *s, size_t n, bool space_prefix, RtIds *out)
{
	size_t len = n + (space_prefix ? 1 : 0);
	if (len > 0x7fffffffu)
		return RT_ENOMEM;
	uint8_t *text = malloc(len);
	Work w = {.sym = malloc(len * sizeof *w.sym), .heap = malloc(3 * len * sizeof *w.heap)};
	int rc = RT_ENOMEM;
	if (!text || !w.sym || !w.heap)
		goto out;
	text[0] = ' ';
	memcpy(text + (space_prefix ? 1 : 0), s, n);
	w.text = text;
	int32_t nsym = 0;
	for (size_t i = 0; i < len; nsym++) {
		uint32_t cp;
		size_t l = rt_utf8_next(text + i, len - i, &cp);
		w.sym[nsym] = (Sym){(uint32_t)i, (uint32_t)l, nsym - 1, -1};
		if (nsym)
			w.sym[nsym - 1].next = nsym;
		i += l;
	}
	/* At most nsym - 1 first bigrams, then two per merge, fewer than nsym merges: 3 len. */
	for (int32_t i = 0; i + 1 < nsym; i++)
		try_bigram(t, &w, i);
	while (w.nheap) {
		Bigram g = heap_pop(&w);
		Sym *a = &w.sym[g.left], *b = &w.sym[g.right];
		if (!a->len || !b->len || a->next != g.right || a->len + b->len != g.len)
			continue;
		a->len += b->len;
		b->len = 0;
		a->next = b->next;
		if (b->next >= 0)
			w.sym[b->next].prev = g.left;
		try_bigram(t, &w, a->prev);
		try_bigram(t, &w, g.left);
	}
	for (int32_t i = 0; i >= 0 && nsym; i = w.sym[i].next)
		emit(t, &w, &w.sym[i], out);
	rc = RT_OK;
out:
	free(text);
	free(w.sym);
	free(w.heap);
	return rc;
}
