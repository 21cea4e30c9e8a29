/* rt_sample.c - choosing the next token from a row of logits. */
#include "rt.h"

int64_t rt_argmax(const float *x, int64_t n)
{
	int64_t best = -1;
	for (int64_t i = 0; i < n; i++) {
		if (x[i] != x[i])
			continue; /* NaN: never chosen */
		/* Strictly greater, so the first of equal maxima wins (the reference's tie rule). */
		if (best < 0 || x[i] > x[best])
			best = i;
	}
	return best < 0 ? 0 : best;
}
