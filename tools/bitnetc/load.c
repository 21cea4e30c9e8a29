/* load.c - bitnetc's model loading: the architectures the frontend knows, and a model
 * opened, lowered and verified for build, ir and run. */
#include "bitnetc_int.h"

#include <string.h>

bool arch_supported(const char *arch)
{
	for (const char *const *p = bnm_archs(); *p; p++)
		if (strcmp(*p, arch) == 0)
			return true;
	return false;
}

void archs_list(char *buf, size_t n)
{
	size_t len = 0;
	buf[0] = 0;
	for (const char *const *p = bnm_archs(); *p && len < n; p++) {
		int k = snprintf(buf + len, n - len, "%s%s", len ? ", " : "", *p);
		if (k < 0)
			break;
		len += (size_t)k;
	}
}

/* Opens and lowers a model, verifying the graph. On failure prints the error. */
int load_model(const char *path, GgufFile **fp, IrGraph **gp)
{
	BnErr e = {0};
	*fp = NULL;
	*gp = NULL;
	GgufFile *f = gguf_open(path, &e);
	if (!f)
		return fail_err(path, &e);
	IrGraph *g = bnm_load(f, &e);
	if (!g) {
		gguf_close(f);
		return fail_err(path, &e);
	}
	if (ir_verify(g, &e) != BN_OK) {
		ir_graph_free(g);
		gguf_close(f);
		return fail(EXIT_RUNTIME, "%s: the graph built from this model does not verify: %s",
			    path, e.msg);
	}
	*fp = f;
	*gp = g;
	return 0;
}
