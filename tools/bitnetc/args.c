/* args.c - bitnetc's argument parsing: flags and options with values, positional
 * arguments, integers in a range, the Lua limits, and the option values more than one
 * command takes (--tokenizer-pre, a dtype by name). */
#include "bitnetc_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool is_help(const char *a)
{
	return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* Matches the current argument against a flag without a value. */
bool flag(const Args *a, const char *s, const char *l)
{
	const char *x = a->argv[a->i];
	return (s && strcmp(x, s) == 0) || (l && strcmp(x, l) == 0);
}

/* Matches the current argument against a flag with a value, as "-f V", "--flag V" or
 * "--flag=V". Returns 1 (matched, *val set), 0 (no match), -1 (value missing: the
 * usage error is printed). */
int opt(Args *a, const char *s, const char *l, const char **val)
{
	const char *x = a->argv[a->i];
	if (l) {
		size_t n = strlen(l);
		if (strncmp(x, l, n) == 0 && x[n] == '=') {
			a->opt = l;
			*val = x + n + 1;
			return 1;
		}
	}
	if (!flag(a, s, l))
		return 0;
	a->opt = x;
	if (a->i + 1 >= a->argc) {
		usage_err(a->cmd, "option %s needs a value", x);
		return -1;
	}
	*val = a->argv[++a->i];
	return 1;
}

/* A positional argument or an unknown option (usage error, returns false). */
bool positional(Args *a, int max)
{
	const char *x = a->argv[a->i];
	if (x[0] == '-' && x[1] != 0) {
		usage_err(a->cmd, "unknown option '%s'", x);
		return false;
	}
	if (a->n_pos < 0 || a->n_pos >= max || a->n_pos >= 4) {
		usage_err(a->cmd, "unexpected argument '%s'", x);
		return false;
	}
	a->pos[a->n_pos++] = x;
	return true;
}

/* A decimal integer in [lo, hi] for option name; usage error otherwise. */
bool parse_int(const char *cmd, const char *name, const char *s, int64_t lo, int64_t hi,
		      int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!*s || *end || end == s) {
		usage_err(cmd, "%s: '%s' is not a number", name, s);
		return false;
	}
	if (errno == ERANGE || v < lo || v > hi) {
		usage_err(cmd, "%s: %s is out of range (%" PRId64 "..%" PRId64 ")", name, s, lo, hi);
		return false;
	}
	*out = v;
	return true;
}

/* --lua-timeout S, --lua-memory MIB, --lua-unsafe (build, ir): 1 matched, 0 not, -1 usage
 * error (printed). */
int lua_opt(Args *a, PassLuaOpts *lo)
{
	const char *v;
	int64_t n;
	int r;
	if (flag(a, NULL, "--lua-unsafe")) {
		lo->unsafe = true;
		return 1;
	}
	if ((r = opt(a, NULL, "--lua-timeout", &v)) != 0) {
		if (r < 0 || !parse_int(a->cmd, a->opt, v, 0, 1000000, &n))
			return -1;
		lo->timeout = n ? (double)n : -1;
		return 1;
	}
	if ((r = opt(a, NULL, "--lua-memory", &v)) != 0) {
		if (r < 0 || !parse_int(a->cmd, a->opt, v, 0, (int64_t)1 << 24, &n))
			return -1;
		lo->memory = n ? n << 20 : -1;
		return 1;
	}
	return 0;
}

/* The one model path of inspect/ir/run. */
bool need_model(const Args *a)
{
	if (a->n_pos == 0) {
		usage_err(a->cmd, "missing MODEL.gguf");
		return false;
	}
	return true;
}

/* --tokenizer-pre NAME: a pre-tokenizer bitnetc implements, else a usage error listing them. */
bool tokenizer_pre_ok(const char *cmd, const char *name)
{
	char list[256];
	if (bnm_tok_pre_supported(name))
		return true;
	bnm_tok_pres_list(list, sizeof list);
	usage_err(cmd, "--tokenizer-pre: unknown pre-tokenizer '%s' (bitnetc has the Llama 3 "
		  "and Falcon 3 splits, named %s)", name, list);
	return false;
}

/* A dtype by name from a list of allowed ones ("i2_s" or "I2_S"). */
bool parse_dtype(const char *s, const IrDtype *allowed, int n, IrDtype *out)
{
	for (int i = 0; i < n; i++) {
		if (strcasecmp(s, ir_dtype_name(allowed[i])) == 0) {
			*out = allowed[i];
			return true;
		}
	}
	return false;
}
