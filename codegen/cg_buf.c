/* cg_buf.c - the growable buffer all emitters append to: text through cg_printf, bytes
 * through cg_put. */
#include "cg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for more than n bytes after len: grows geometrically, so that emitting a large
 * model stays linear. -1 and b->oom when memory runs out. */
static int reserve(CgBuf *b, size_t n)
{
	if (b->oom)
		return -1;
	if (b->data && b->cap - b->len > n)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len <= n)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int cg_printf(CgBuf *b, const char *fmt, ...)
{
	if (b->oom)
		return -1;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		size_t room = b->cap - b->len;
		int k = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? room : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->oom = true;
			return -1;
		}
		if (b->data && (size_t)k < room) {
			b->len += (size_t)k;
			return k;
		}
		if (reserve(b, (size_t)k))
			return -1;
	}
}

int cg_put(CgBuf *b, const void *data, size_t n)
{
	if (reserve(b, n))
		return -1;
	memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

void cg_buf_free(CgBuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}
