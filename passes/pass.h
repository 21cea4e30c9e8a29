/* pass.h - graph passes: one file per pass, one registry the driver and (later) the Lua
 * pipeline walk, and pass_run, which verifies the graph after every pass. */
#ifndef BITNETC_PASS_H
#define BITNETC_PASS_H

#include "ir.h"

/* Options every pass receives; a pass ignores what it does not use. */
typedef struct PassOpts {
	int verbose; /* > 0: a pass reports what it changed on stderr */
} PassOpts;

typedef int (*PassFn)(IrGraph *g, const PassOpts *opts, BnErr *e);

typedef struct {
	const char *name;
	PassFn fn;
	const char *contract; /* requires / produces / invalidates, one line */
	const char *summary;
} PassInfo;

/* ---- pass.c ---- */

/* The registry, in pipeline order; *n gets the count. */
const PassInfo *pass_list(int *n);
/* NULL if there is no pass of that name. */
const PassInfo *pass_find(const char *name);
/* Runs the named pass, then ir_verify. A failure names the pass: "pass NAME: ..." for the
 * pass's own error, "after pass NAME the graph does not verify: ..." for the verifier's.
 * opts may be NULL. */
int pass_run(IrGraph *g, const char *name, const PassOpts *opts, BnErr *e);

/* ---- the passes, one per file ---- */

/* dce.c */
int pass_dce(IrGraph *g, const PassOpts *opts, BnErr *e);

#endif
