/* cmd_info.c - bitnetc version, targets, passes and help: what bitnetc and this host
 * offer. */
#include "bitnetc_int.h"
#include "cg.h"

#include <string.h>

const char usage_version[] =
	"usage: bitnetc version\n"
	"\n"
	"Prints the bitnetc version, the LLVM it uses (and whether LLVM has the NVPTX\n"
	"backend), ptxas if found, and the host CPU's features (less those the environment\n"
	"variable BITNETC_CPU_MASK=generic|avx2|avx512|amx|neon|neon-dot|sve|rvv hides, for\n"
	"tests).\n";

const char usage_targets[] =
	"usage: bitnetc targets\n"
	"\n"
	"Lists the code generation targets and whether each is usable on this host.\n";

const char usage_passes[] =
	"usage: bitnetc passes [--default]\n"
	"\n"
	"Lists every registered pass with its contract (requires / produces / invalidates)\n"
	"and its options; --default prints the default pipeline script (passes/default.lua),\n"
	"the one 'bitnetc build' runs without --pipeline, to copy and edit.\n";

const char usage_help[] = "usage: bitnetc help [COMMAND]\n";

static bool no_args(const char *cmd, const char *usage, int argc, char **argv, int *rc)
{
	for (int i = 0; i < argc; i++) {
		if (is_help(argv[i])) {
			*rc = show_usage(usage);
			return false;
		}
		*rc = usage_err(cmd, "%s '%s'", argv[i][0] == '-' ? "unknown option" :
				"unexpected argument", argv[i]);
		return false;
	}
	return true;
}

int cmd_version(int argc, char **argv)
{
	int rc;
	if (!no_args("version", usage_version, argc, argv, &rc))
		return rc;
	char host[4096], feats[256];
	cg_host_info(host, sizeof host);
	printf("bitnetc %s\n", BITNETC_VERSION);
	fputs(host, stdout);
	const char *mask;
	if (!rt_cpu_mask(&mask, feats, sizeof feats) && mask)
		printf("host features masked by %s=%s\n", RT_CPU_MASK_ENV, mask);
	char archs[256];
	archs_list(archs, sizeof archs);
	printf("model architectures: %s\n", archs);
	return finish(0);
}

int cmd_passes(int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "--default") == 0) {
		size_t n;
		const char *text = pass_default_pipeline(&n);
		fwrite(text, 1, n, stdout);
		return finish(0);
	}
	int rc;
	if (!no_args("passes", usage_passes, argc, argv, &rc))
		return rc;
	pass_pipeline_describe(stdout);
	return finish(0);
}

int cmd_targets(int argc, char **argv)
{
	int rc;
	if (!no_args("targets", usage_targets, argc, argv, &rc))
		return rc;
	CgTargetInfo t[64];
	int n = cg_targets_list(t, 64);
	const char *mask;
	char why[160];
	if (!rt_cpu_mask(&mask, why, sizeof why) && mask)
		printf("host features masked by %s=%s\n", RT_CPU_MASK_ENV, mask);
	printf("%-12s %-6s %s\n", "target", "usable", "description / on this host");
	/* a target bitnetc cannot build yet is not usable, whatever this host has; a GPU
	 * target is usable where its GPU is */
	for (int i = 0; i < n; i++)
		printf("%-12s %-6s %s\n%-19s %s%s\n", t[i].name,
		       t[i].usable && t[i].buildable ? "yes" : "no", t[i].desc, "",
		       t[i].buildable ? "" : "not yet buildable; ", t[i].note);
	printf("\n'usable' is about this machine. 'bitnetc build --target T' builds for\n"
	       "%s today, usable here or not\n"
	       "(another machine's with a cross compiler: --cc); 'bitnetc run' uses the reference\n"
	       "interpreter.\n", cg_target_names());
	return finish(0);
}

int cmd_help(int argc, char **argv)
{
	if (argc == 0) {
		print_help(stdout);
		return finish(0);
	}
	if (argc > 1)
		return usage_err("help", "unexpected argument '%s'", argv[1]);
	const Command *c = is_help(argv[0]) ? find_command("help") : find_command(argv[0]);
	if (!c)
		return usage_err("help", "unknown command '%s'", argv[0]);
	return show_usage(c->usage);
}
