/* main.c - bitnetc's entry: the command table and dispatch, the help text, and the
 * messages every command prints (errors on stderr as "bitnetc: <message>").
 * Exit codes: 0 ok, 1 usage error, 2 runtime or input error. */
#include "bitnetc_int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- messages -------------------------------------------------------------- */

int fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bitnetc: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

/* A usage error: the message, then where to read the usage. */
int usage_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bitnetc: %s%s", cmd ? cmd : "", cmd ? ": " : "");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fprintf(stderr, "bitnetc: try 'bitnetc %s%s'\n", cmd ? cmd : "help", cmd ? " --help" : "");
	return EXIT_USAGE;
}

/* A library error. Messages from the frontend name the file already; the rest get it. */
int fail_err(const char *path, const BnErr *e)
{
	if (path && !strstr(e->msg, path))
		return fail(EXIT_RUNTIME, "%s: %s", path, e->msg);
	return fail(EXIT_RUNTIME, "%s", e->msg);
}

bool data_dir(const char *rel, char *dir, size_t n, char *where, size_t where_n)
{
	char cand[3][PATH_MAX + 32];
	int nc = 0;
	const char *env = getenv("BITNETC_DATA_DIR");
	if (env && *env) {
		snprintf(cand[nc++], sizeof cand[0], "%s", env);
	} else {
		char exe[PATH_MAX];
		ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
		char *slash = l > 0 ? (exe[l] = 0, strrchr(exe, '/')) : NULL;
		if (slash) {
			*slash = 0;
			snprintf(cand[nc++], sizeof cand[0], "%s/data", exe);
			snprintf(cand[nc++], sizeof cand[0], "%s/../share/bitnetc", exe);
		}
	}
	size_t w = 0;
	if (where_n)
		where[0] = 0;
	for (int i = 0; i < nc; i++) {
		char path[PATH_MAX + 320];
		int k = snprintf(path, sizeof path, "%s/%s", cand[i], rel);
		if (k > 0 && (size_t)k < sizeof path && access(path, R_OK) == 0) {
			snprintf(dir, n, "%s", cand[i]);
			return true;
		}
		if (w < where_n)
			w += (size_t)snprintf(where + w, where_n - w, "%s%s", i ? ", " : "", cand[i]);
	}
	if (!nc && where_n)
		snprintf(where, where_n, "nowhere: the path of bitnetc is unknown");
	return false;
}

/* stdout may be a closed pipe or a full disk: say so instead of exiting 0. */
int finish(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		return rc ? rc : fail(EXIT_RUNTIME, "cannot write to standard output: %s",
				      strerror(errno));
	return rc;
}

/* `bitnetc CMD --help`: the usage on stdout, exit 0. */
int show_usage(const char *usage)
{
	fputs(usage, stdout);
	return finish(0);
}

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- commands ---------------------------------------------------------------- */

static const Command commands[] = {
	{"build", cmd_build, "compile a model into a standalone executable", usage_build},
	{"emit", cmd_emit, "write a model as a C source tree a product can vendor", usage_emit},
	{"inspect", cmd_inspect, "print a GGUF file's header, metadata, tensors, hyperparameters",
	 usage_inspect},
	{"ir", cmd_ir, "print the model's graph IR", usage_ir},
	{"run", cmd_run, "run a model on token ids in the reference interpreter", usage_run},
	{"tokenize", cmd_tokenize, "encode text with the model's tokenizer, print the ids",
	 usage_tokenize},
	{"mkmodel", cmd_mkmodel, "write a synthetic BitNet model", usage_mkmodel},
	{"quantize", cmd_quantize, "ternarize a model's projection weights into i2_s, tq1_0 or tq2_0",
	 usage_quantize},
	{"version", cmd_version, "version, LLVM, host CPU features", usage_version},
	{"targets", cmd_targets, "code generation targets and their availability here",
	 usage_targets},
	{"passes", cmd_passes, "the passes, their contracts and options; the default pipeline",
	 usage_passes},
	{"help", cmd_help, "this text, or a command's usage", usage_help},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

const Command *find_command(const char *name)
{
	for (int i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

void print_help(FILE *out)
{
	fprintf(out, "bitnetc %s - ahead-of-time compiler for ternary (BitNet b1.58) models\n\n"
		     "usage: bitnetc COMMAND [ARGS]\n\ncommands:\n",
		BITNETC_VERSION);
	for (int i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'bitnetc COMMAND --help' shows a command's options.\n"
		     "exit codes: 0 ok, 1 usage error, 2 runtime or input error\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_help(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (is_help(cmd))
		return cmd_help(0, NULL);
	const char *mask;
	char why[160];
	if (rt_cpu_mask(&mask, why, sizeof why))
		return usage_err(NULL, "%s", why); /* the host's features would be wrong */
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0)
		return cmd_version(0, NULL);
	const Command *c = find_command(cmd);
	if (!c) {
		if (cmd[0] == '-')
			return usage_err(NULL, "unknown option '%s' (a command comes first)", cmd);
		return usage_err(NULL, "unknown command '%s'", cmd);
	}
	return c->fn(argc - 2, argv + 2);
}
