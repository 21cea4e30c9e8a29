/* cmd_ir.c - bitnetc ir: the model's graph, verified (after passes, if asked), printed
 * in its stable text form. */
#include "bitnetc_int.h"
#include "cg.h"

#include <string.h>

const char usage_ir[] =
	"usage: bitnetc ir MODEL.gguf [--pipeline FILE.lua|default] [--pass NAME]...\n"
	"                 [--pass-opt P.K=V]... [--dump-after PASS] [--target T]\n"
	"\n"
	"Builds the model's graph, verifies it and prints its stable text form.\n"
	"  --pipeline F   run a pass pipeline first (\"default\": passes/default.lua), with\n"
	"                 the verifier after every pass\n"
	"  --lua-timeout S, --lua-memory MIB, --lua-unsafe   as for build\n"
	"  --pass NAME    run a pass (the graph is verified afterwards) before printing;\n"
	"                 repeatable, applied in order\n"
	"  --pass-opt P.K=V  set option K of pass P, for the pipeline and --pass alike\n"
	"                 (e.g. batch_templates.sizes=1,16)\n"
	"  --dump-after PASS  print the IR after PASS too ('lua': after every Lua pass)\n"
	"  --target T     the target the passes plan for (as for build; default native)\n"
	"  --list-passes  print the registered passes and exit\n";

/* The options of one `bitnetc ir` run. */
typedef struct {
	const char *passes[32], *pipeline, *dump_after, *target;
	int n_passes;
	PassLuaOpts lua;
	PassOpts popts;
} IrOpts;

/* Parses argv into o: 0, a usage error's exit code, or -1 after --list-passes. */
static int ir_args(Args *a, IrOpts *o)
{
	for (a->i = 0; a->i < a->argc; a->i++) {
		const char *v;
		int r;
		if (is_help(a->argv[a->i])) {
			fputs(usage_ir, stdout);
			return -1;
		}
		if (flag(a, NULL, "--list-passes")) {
			int n;
			const PassInfo *p = pass_list(&n);
			for (int i = 0; i < n; i++)
				printf("%-8s %s\n         %s\n", p[i].name, p[i].summary, p[i].contract);
			return -1;
		}
		if ((r = lua_opt(a, &o->lua)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
		} else if ((r = opt(a, NULL, "--pipeline", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o->pipeline = v;
		} else if ((r = opt(a, NULL, "--pass-opt", &v)) != 0) {
			BnErr pe = {0};
			if (r < 0)
				return EXIT_USAGE;
			if (pass_opts_parse(&o->popts, v, &pe) != BN_OK)
				return usage_err(a->cmd, "--pass-opt: %s", pe.msg);
		} else if ((r = opt(a, NULL, "--dump-after", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o->dump_after = v;
		} else if ((r = opt(a, NULL, "--target", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			CgTarget t;
			if (cg_target_find(v, &t) != 0)
				return usage_err(a->cmd, "--target: unknown target '%s' (see 'bitnetc "
							 "targets')", v);
			o->target = v;
		} else if ((r = opt(a, NULL, "--pass", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (!pass_find(v))
				return usage_err(a->cmd, "--pass: no pass named '%s' (see --list-passes)",
						 v);
			if (o->n_passes == (int)(sizeof o->passes / sizeof o->passes[0]))
				return usage_err(a->cmd, "--pass: too many passes");
			o->passes[o->n_passes++] = v;
		} else if (!positional(a, 1)) {
			return EXIT_USAGE;
		}
	}
	if (o->dump_after && strcmp(o->dump_after, "lua") != 0 && !pass_find(o->dump_after))
		return usage_err(a->cmd, "--dump-after: no pass named '%s' (see --list-passes)",
				 o->dump_after);
	return need_model(a) ? 0 : EXIT_USAGE;
}

/* The pipeline, then each --pass, on g; 0 or an exit code. */
static int ir_run(IrGraph *g, const char *path, const IrOpts *o)
{
	BnErr e = {0};
	const PassTarget *t = pass_target_for(o->target);
	/* the graph's target, as build sets it, for the passes --pass runs alone */
	if (o->target && pass_gattr_set_str(g, "target", t->name, &e) != BN_OK)
		return fail(EXIT_RUNTIME, "%s", e.msg);
	if (o->pipeline) {
		PassRunOpts ro = {.verify_each = true, .lua = o->lua, .cli_opts = &o->popts,
				  .dump_after = o->dump_after, .dump_file = stdout, .target = t};
		if (pass_pipeline_run(g, strcmp(o->pipeline, "default") ? o->pipeline : NULL, &ro,
				      &e))
			return fail(EXIT_RUNTIME, "%s", e.msg);
	}
	for (int i = 0; i < o->n_passes; i++) {
		if (pass_run(g, o->passes[i], &o->popts, &e) != BN_OK)
			return fail_err(path, &e);
		if (o->dump_after && strcmp(o->dump_after, o->passes[i]) == 0) {
			printf("# after %s\n", o->passes[i]);
			ir_print(g, stdout);
		}
	}
	return 0;
}

int cmd_ir(int argc, char **argv)
{
	Args a = {.cmd = "ir", .argc = argc, .argv = argv};
	IrOpts o = {0};
	int rc = ir_args(&a, &o);
	if (rc) {
		pass_opts_free(&o.popts);
		return rc < 0 ? finish(0) : rc;
	}
	const char *path = a.pos[0];
	GgufFile *f;
	IrGraph *g;
	rc = load_model(path, &f, &g);
	if (!rc) {
		if (!(rc = ir_run(g, path, &o)))
			ir_print(g, stdout);
		pass_gattr_clear(g);
		ir_graph_free(g);
		gguf_close(f);
	}
	pass_opts_free(&o.popts);
	return finish(rc);
}
