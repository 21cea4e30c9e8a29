/* cg_cuda_launch.c - the launch records the op functions hand to the host code writer. */
#include "cg_cuda.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

CuLaunch *cu_launch(CuLaunch *L, int *nl, int max, const char *kernel, unsigned block,
		    const char *grid_x)
{
	if (*nl >= max)
		return NULL;
	CuLaunch *l = &L[(*nl)++];
	memset(l, 0, sizeof *l);
	snprintf(l->kernel, sizeof l->kernel, "%s", kernel);
	l->block = block;
	snprintf(l->grid[0], sizeof l->grid[0], "%s", grid_x);
	snprintf(l->grid[1], sizeof l->grid[1], "1");
	snprintf(l->grid[2], sizeof l->grid[2], "1");
	snprintf(l->smem, sizeof l->smem, "0");
	return l;
}

void cu_arg(CuLaunch *l, SimtParam t, const char *fmt, ...)
{
	BN_ASSERT(l->n_args < SIMT_MAX_PARAMS);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(l->arg[l->n_args], sizeof l->arg[0], fmt, ap);
	va_end(ap);
	l->type[l->n_args++] = t;
}
