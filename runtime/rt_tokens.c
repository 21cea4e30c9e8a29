/* rt_tokens.c - parsing token id lists given on a command line ("496,84,104"). */
#include "rt.h"

#include <stdlib.h>
#include <string.h>

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int rt_parse_tokens(const char *s, int32_t **ids, int *n, RtErr *e)
{
	*ids = NULL;
	*n = 0;
	if (!s)
		return rt_err(e, RT_EINVAL, "token list is missing");
	const char *p = s;
	while (is_space(*p))
		p++;
	if (!*p)
		return rt_err(e, RT_EINVAL, "token list is empty (expected ids like 1,2,3)");

	/* Items = commas + 1; bounds the allocation before parsing. */
	size_t cap = 1;
	for (const char *q = s; *q; q++)
		cap += *q == ',';
	if (cap > INT32_MAX)
		return rt_err(e, RT_EINVAL, "token list has too many items");
	int32_t *out = malloc(cap * sizeof *out);
	if (!out)
		return rt_err(e, RT_ENOMEM, "out of memory for %zu token ids", cap);

	int count = 0;
	p = s;
	for (;;) {
		const char *b = p, *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		while (b < end && is_space(*b))
			b++;
		const char *t = end;
		while (t > b && is_space(t[-1]))
			t--;
		int item = count + 1;
		int len = (int)(t - b > 40 ? 40 : t - b); /* quote at most 40 chars */
		if (b == t) {
			free(out);
			return rt_err(e, RT_EINVAL, "token list item %d is empty (in \"%.60s\")", item, s);
		}
		uint64_t v = 0;
		for (const char *c = b; c < t; c++) {
			if (*c < '0' || *c > '9') {
				free(out);
				return rt_err(e, RT_EINVAL,
					       "token list item %d \"%.*s\" is not a non-negative integer",
					       item, len, b);
			}
			v = v * 10 + (uint64_t)(*c - '0');
			if (v > INT32_MAX) {
				free(out);
				return rt_err(e, RT_EINVAL,
					       "token list item %d \"%.*s\" is out of range (max %d)", item,
					       len, b, INT32_MAX);
			}
		}
		out[count++] = (int32_t)v;
		if (!*end)
			break;
		p = end + 1;
	}
	*ids = out;
	*n = count;
	return RT_OK;
}
