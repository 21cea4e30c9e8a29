/* ir_util.c - errors, checked size arithmetic and the per-graph arena. */
#include "ir.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int bn_err(BnErr *e, int code, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof e->msg, fmt, ap);
		va_end(ap);
		e->code = code;
	}
	return code;
}

int bn_err_prefix(BnErr *e, const char *fmt, ...)
{
	if (!e)
		return BN_EINVAL;
	char pre[256], old[sizeof e->msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof old);
	/* truncation is fine: the message is for people */
	size_t n = strlen(pre);
	if (n > sizeof e->msg - 3)
		n = sizeof e->msg - 3;
	memcpy(e->msg, pre, n);
	memcpy(e->msg + n, ": ", 2);
	size_t room = sizeof e->msg - n - 3;
	size_t ol = strnlen(old, sizeof old);
	if (ol > room)
		ol = room;
	memcpy(e->msg + n + 2, old, ol);
	e->msg[n + 2 + ol] = 0;
	return e->code;
}

void bn_assert_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "bitnetc: internal error at %s:%d: %s\n", file, line, what);
	abort();
}

bool bn_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	if (a && b > UINT64_MAX / a)
		return false;
	*out = a * b;
	return true;
}

bool bn_add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	if (b > UINT64_MAX - a)
		return false;
	*out = a + b;
	return true;
}

/* Arena: a list of chunks, zeroed when allocated; big requests get a chunk of their own. */
typedef struct Chunk {
	struct Chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char mem[];
} Chunk;

struct BnArena {
	Chunk *head;
};

enum { ARENA_CHUNK = 64 * 1024 };

BnArena *bn_arena_new(void)
{
	return calloc(1, sizeof(BnArena));
}

void bn_arena_free(BnArena *a)
{
	if (!a)
		return;
	for (Chunk *c = a->head, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	free(a);
}

void *bn_arena_alloc(BnArena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (n == 0)
		n = 16;
	Chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
		/* zeroed once here (a big block's fresh pages already are, at no cost); the
		 * bump pointer never hands out a byte twice */
		c = calloc(1, sizeof(Chunk) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		if (cap == n && a->head) {
			/* a big block: keep the current chunk at the head for small requests */
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	void *p = c->mem + c->used;
	c->used += n;
	return p;
}

char *bn_arena_strdup(BnArena *a, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = bn_arena_alloc(a, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

char *bn_arena_printf(BnArena *a, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *p = n >= 0 ? bn_arena_alloc(a, (size_t)n + 1) : NULL;
	if (p)
		vsnprintf(p, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return p;
}
