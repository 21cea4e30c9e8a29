/* bitnetc_int.h - what the files of the bitnetc driver share (one file per command, main.c
 * the dispatch): the messages and exit codes, the argument parser, model loading, and the
 * commands with their usage texts. Internal to tools/bitnetc/. */
#ifndef BITNETC_INT_H
#define BITNETC_INT_H

#include "frontend.h"
#include "ir.h"
#include "pass.h"
#include "rt.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { EXIT_USAGE = 1, EXIT_RUNTIME = 2 };

/* main.c: messages. fail prints "bitnetc: <message>" and returns code; usage_err prints the
 * message and where to read the usage, and returns EXIT_USAGE; fail_err a library error
 * (naming path unless the message does); finish the exit status, or EXIT_RUNTIME when
 * stdout could not be written; show_usage a command's usage on stdout (--help). */
int fail(int code, const char *fmt, ...) BN_PRINTF(2, 3);
int usage_err(const char *cmd, const char *fmt, ...) BN_PRINTF(2, 3);
int fail_err(const char *path, const BnErr *e);
int finish(int rc);
int show_usage(const char *usage);
double now_s(void);
/* main.c: the folder of bitnetc's data holding file rel ("llama3/tokens.txt"):
 * $BITNETC_DATA_DIR, else found from where the running bitnetc is: data/ beside it (its
 * build tree), ../share/bitnetc (installed). No path of the build is compiled in. Fills
 * dir and returns true; false with the places looked in, in where. */
bool data_dir(const char *rel, char *dir, size_t n, char *where, size_t where_n);

/* main.c: the commands */
typedef struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
	const char *usage;
} Command;

const Command *find_command(const char *name);
void print_help(FILE *out);

/* args.c: one command's arguments, looked at one by one (a.i) */
typedef struct {
	const char *cmd; /* for messages */
	int argc;
	char **argv;
	int i;           /* index of the argument being looked at */
	const char *opt; /* the spelling of the option opt() last matched, for messages */
	const char *pos[4];
	int n_pos;
} Args;

bool is_help(const char *a);
bool flag(const Args *a, const char *s, const char *l);
int opt(Args *a, const char *s, const char *l, const char **val);
bool positional(Args *a, int max);
bool parse_int(const char *cmd, const char *name, const char *s, int64_t lo, int64_t hi,
	       int64_t *out);
int lua_opt(Args *a, PassLuaOpts *lo);
bool need_model(const Args *a);
bool tokenizer_pre_ok(const char *cmd, const char *name);
bool parse_dtype(const char *s, const IrDtype *allowed, int n, IrDtype *out);

/* load.c */
bool arch_supported(const char *arch);
void archs_list(char *buf, size_t n);
int load_model(const char *path, GgufFile **fp, IrGraph **gp);

/* cmd_*.c: each command and its usage text */
int cmd_build(int argc, char **argv);
int cmd_emit(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_ir(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_targets(int argc, char **argv);
int cmd_passes(int argc, char **argv);
int cmd_help(int argc, char **argv);

extern const char usage_build[], usage_emit[], usage_inspect[], usage_ir[], usage_run[], usage_tokenize[],
	usage_mkmodel[], usage_quantize[], usage_version[], usage_targets[], usage_passes[],
	usage_help[];

#endif
