/* cg_metal.c - the Metal target descriptor: Metal binaries need macOS to build and run. */
#include "cg_metal.h"

#include <stdio.h>
#include <string.h>

int cg_metal_targets(CgTargetInfo *out, int max)
{
	if (max < 1)
		return 0;
	memset(out, 0, sizeof *out);
	out->name = "metal";
	out->backend = "metal";
	out->desc = "Apple GPUs: MSL kernels plus a thin macOS host";
#if defined(__APPLE__)
	out->usable = true;
	snprintf(out->note, sizeof out->note, "macOS host");
#else
	out->usable = false;
	snprintf(out->note, sizeof out->note, "not available on this host (needs macOS)");
#endif
	return 1;
}
