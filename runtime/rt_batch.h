/* rt_batch.h - the rule a model's batch templates (RtModel.batch_sizes: the token counts it
 * has a forward function for) and max_batch obey: the sizes ascending and distinct, the
 * first 1 (the decode step), the last max_batch, max_batch in 1..RT_MAX_BATCH. Header-only,
 * so that the compiler (batch_templates, codegen, the driver) and the runtime, which links
 * nothing of the compiler, check the same rule. */
#ifndef BITNETC_RT_BATCH_H
#define BITNETC_RT_BATCH_H

#include <stdbool.h>
#include <stdint.h>

/* The most tokens one forward call takes: larger templates only grow the program (no
 * kernel tiles beyond this). */
#define RT_MAX_BATCH 4096

static inline bool rt_max_batch_ok(int64_t max_batch)
{
	return max_batch >= 1 && max_batch <= RT_MAX_BATCH;
}

static inline bool rt_batch_sizes_ok(const int32_t *sizes, int n, int64_t max_batch)
{
	if (!rt_max_batch_ok(max_batch) || !sizes || n < 1 || sizes[0] != 1 ||
	    sizes[n - 1] != max_batch)
		return false;
	for (int i = 1; i < n; i++)
		if (sizes[i] <= sizes[i - 1])
			return false;
	return true;
}

#endif
