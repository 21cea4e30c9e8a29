/* pass.c - the pass registry and pass_run (run one pass, then the verifier). */
#include "pass.h"

#include <string.h>

static const PassInfo passes[] = {
	{"dce", pass_dce, "requires: a verified graph; produces: no unused values or nodes; "
			  "invalidates: value and node ids (compacted)",
	 "remove constants nothing reads and nodes whose outputs nothing reads"},
};

const PassInfo *pass_list(int *n)
{
	*n = (int)(sizeof passes / sizeof passes[0]);
	return passes;
}

const PassInfo *pass_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++)
		if (strcmp(passes[i].name, name) == 0)
			return &passes[i];
	return NULL;
}

int pass_run(IrGraph *g, const char *name, const PassOpts *opts, BnErr *e)
{
	const PassInfo *p = pass_find(name);
	if (!p)
		return bn_err(e, BN_EINVAL, "no pass named '%s'", name ? name : "(null)");
	static const PassOpts dflt;
	BnErr local = {0};
	BnErr *er = e ? e : &local;
	int rc = p->fn(g, opts ? opts : &dflt, er);
	if (rc) {
		bn_err_prefix(er, "pass %s", p->name);
		return rc;
	}
	/* The pass said it succeeded; the verifier decides whether the graph agrees. */
	rc = ir_verify(g, er);
	if (rc) {
		bn_err_prefix(er, "after pass %s the graph does not verify", p->name);
		return rc;
	}
	return BN_OK;
}
