/* verify.c - a pass that only runs the IR verifier, so a pipeline can check the graph at any
 * point (and the default pipeline checks what the frontend built before anything else runs).
 * requires: nothing; produces: nothing; invalidates: nothing. */
#include "pass.h"

int pass_verify(IrGraph *g, const PassOpts *opts, BnErr *e)
{
	(void)opts;
	return ir_verify(g, e);
}
