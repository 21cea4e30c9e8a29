/* cmd_ir.c - bitnetc ir: the model's graph, verified (after passes, if asked), printed
 * in its stable text form. */
#include "bitnetc_int.h"

#include <string.h>

const char usage_ir[] =
	"usage: bitnetc ir MODEL.gguf [--pipeline FILE.lua|default] [--pass NAME]...\n"
	"\n"
	"Builds the model's graph, verifies it and prints its stable text form.\n"
	"  --pipeline F   run a pass pipeline first (\"default\": passes/default.lua), with\n"
	"                 the verifier after every pass\n"
	"  --lua-timeout S, --lua-memory MIB, --lua-unsafe   as for build\n"
	"  --pass NAME    run a pass (the graph is verified afterwards) before printing;\n"
	"                 repeatable, applied in order\n"
	"  --list-passes  print the registered passes and exit\n";

int cmd_ir(int argc, char **argv)
{
	Args a = {.cmd = "ir", .argc = argc, .argv = argv};
	const char *passes[32], *pipeline = NULL;
	int n_passes = 0;
	PassLuaOpts lua = {0};
	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r;
		if (is_help(argv[a.i]))
			return show_usage(usage_ir);
		if ((r = opt(&a, NULL, "--pipeline", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			pipeline = v;
			continue;
		}
		if ((r = lua_opt(&a, &lua)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			continue;
		}
		if (flag(&a, NULL, "--list-passes")) {
			int n;
			const PassInfo *p = pass_list(&n);
			for (int i = 0; i < n; i++)
				printf("%-8s %s\n         %s\n", p[i].name, p[i].summary, p[i].contract);
			return finish(0);
		}
		if ((r = opt(&a, NULL, "--pass", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (!pass_find(v))
				return usage_err(a.cmd, "--pass: no pass named '%s' (see --list-passes)",
						 v);
			if (n_passes == (int)(sizeof passes / sizeof passes[0]))
				return usage_err(a.cmd, "--pass: too many passes");
			passes[n_passes++] = v;
		} else if (!positional(&a, 1)) {
			return EXIT_USAGE;
		}
	}
	if (!need_model(&a))
		return EXIT_USAGE;
	const char *path = a.pos[0];
	GgufFile *f;
	IrGraph *g;
	int rc = load_model(path, &f, &g);
	if (rc)
		return rc;
	if (pipeline) {
		BnErr e = {0};
		PassRunOpts ro = {.verify_each = true, .lua = lua};
		if (pass_pipeline_run(g, strcmp(pipeline, "default") ? pipeline : NULL, &ro, &e))
			rc = fail(EXIT_RUNTIME, "%s", e.msg);
	}
	for (int i = 0; i < n_passes && !rc; i++) {
		BnErr e = {0};
		if (pass_run(g, passes[i], NULL, &e) != BN_OK)
			rc = fail_err(path, &e);
	}
	if (!rc)
		ir_print(g, stdout);
	pass_gattr_clear(g);
	ir_graph_free(g);
	gguf_close(f);
	return finish(rc);
}
