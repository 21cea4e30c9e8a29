/* cg_metal.h - the Metal backend (Apple GPUs): its target and whether this host can use it.
 * The MSL emitter arrives with the code generator. */
#ifndef BITNETC_CG_METAL_H
#define BITNETC_CG_METAL_H

#include "../cg.h"

/* ---- cg_metal.c ---- */

/* The Metal backend as the registry holds it: its target lists, it does not build yet. */
extern const CgBackend cg_backend_metal;

/* The Metal target and its availability here. Returns how many were written. */
int cg_metal_targets(CgTargetInfo *out, int max);

#endif
