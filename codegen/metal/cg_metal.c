/* cg_metal.c - the Metal backend behind cg.h's interface: its one target and whether this
 * host can use it (Metal binaries need macOS to build and run); it does not build yet. */
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

static bool metal_claims(const char *name)
{
	return name && strcmp(name, "metal") == 0;
}

static bool metal_buildable(const char *name)
{
	(void)name;
	return false;
}

static void metal_describe(const char *name, CgTargetDesc *d)
{
	(void)name;
	memset(d, 0, sizeof *d);
	d->arch = "air64";
	d->weight_layout = "gguf";
}

const CgBackend cg_backend_metal = {
	.name = "metal",
	.desc = "Apple GPUs: MSL kernels plus a thin macOS host (not yet buildable)",
	.targets = cg_metal_targets,
	.claims = metal_claims,
	.buildable = metal_buildable,
	.describe = metal_describe,
	.product = CG_PRODUCT_EXECUTABLE,
};
