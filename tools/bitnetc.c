/* bitnetc.c - the driver: build (model -> executable), inspect, ir, run (reference
 * interpreter), tokenize, mkmodel, version, targets.
 * Exit codes: 0 ok, 1 usage error, 2 runtime or input error; errors go to stderr as
 * "bitnetc: <message>". */
#include "frontend.h"
#include "ir.h"
#include "pass.h"
#include "rt.h"
#include "rt_tok.h"
#include "cg_cpu.h"
#include "cg_cuda.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <libgen.h>
#include <sys/stat.h>
#include <time.h>

#ifndef BITNETC_DATA_DIR
#define BITNETC_DATA_DIR "data"
#endif

enum { EXIT_USAGE = 1, EXIT_RUNTIME = 2 };

/* ---- messages -------------------------------------------------------------- */

static int fail(int code, const char *fmt, ...) BN_PRINTF(2, 3);
static int fail(int code, const char *fmt, ...)
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
static int usage_err(const char *cmd, const char *fmt, ...) BN_PRINTF(2, 3);
static int usage_err(const char *cmd, const char *fmt, ...)
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
static int fail_err(const char *path, const BnErr *e)
{
	if (path && !strstr(e->msg, path))
		return fail(EXIT_RUNTIME, "%s: %s", path, e->msg);
	return fail(EXIT_RUNTIME, "%s", e->msg);
}

/* stdout may be a closed pipe or a full disk: say so instead of exiting 0. */
static int finish(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		return rc ? rc : fail(EXIT_RUNTIME, "cannot write to standard output: %s",
				      strerror(errno));
	return rc;
}

/* `bitnetc CMD --help`: the usage on stdout, exit 0. */
static int show_usage(const char *usage)
{
	fputs(usage, stdout);
	return finish(0);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- usage text -------------------------------------------------------------- */

typedef struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
	const char *usage;
} Command;

static const char usage_build[] =
	"usage: bitnetc build MODEL.gguf -o OUT [options]\n"
	"\n"
	"Compiles a model into one standalone executable: frontend, the pass pipeline (a Lua\n"
	"script; default: the embedded passes/default.lua, see 'bitnetc passes'), code\n"
	"generation (one C file, every shape a constant), the C compiler (model + the\n"
	"runtime), then the weights payload appended to the executable (mapped read-only at\n"
	"run time). One progress line per stage.\n"
	"  -o, --output OUT      the program to write (required)\n"
	"  --target T            native (default: the best kernels for this host, compiled with\n"
	"                        -march=native), cpu-generic (portable C, runs anywhere),\n"
	"                        cpu-avx2, cpu-avx512, cpu-amx, cpu-neon or cpu-neon-dot (see\n"
	"                        bitnetc targets). Any target builds on any host: the program\n"
	"                        checks its CPU when it starts\n"
	"  --cc CC               the C compiler (default: $CC, else cc); a cross compiler\n"
	"                        builds for another machine, e.g. --target cpu-neon-dot\n"
	"                        --cc aarch64-linux-gnu-gcc on x86-64\n"
	"  --cflags \"FLAGS\"      extra flags for every compiler command (model.c, and the\n"
	"                        runtime with the link), split at spaces; e.g. --target\n"
	"                        cpu-amx --cflags -DBN_AMX_EMULATE runs the AMX tiles in\n"
	"                        software (hosts without AMX: for tests, not for speed)\n"
	"  -O0 | -O1 | -O2 | -O3 optimization level of the generated code (default -O2)\n"
	"  --max-batch N         most tokens per forward call (default: the largest size of\n"
	"                        the pipeline's batch_templates, else 32; 1..4096): the\n"
	"                        largest forward template, the pipeline's smaller ones kept\n"
	"  --emit-c DIR          write (and keep) model.c and the runtime sources in DIR (new,\n"
	"                        or without files of those names but an earlier --emit-c's)\n"
	"  --weights-file FILE   write the weights to FILE instead of appending them; the\n"
	"                        program then needs --weights-file FILE at run time. OUT\n"
	"                        and FILE are replaced whole once complete, never in place;\n"
	"                        neither may be the model, the other or a special file\n"
	"  --chat-template NAME  the chat format baked into the program: bitnet, llama3 or\n"
	"                        none (default: recognized from tokenizer.chat_template)\n"
	"  --no-tokenizer        leave the tokenizer out: the program takes token ids only\n"
	"  --tokenizer-pre NAME  split text as NAME (llama3: the one split bitnetc has) whatever\n"
	"                        the file's tokenizer.ggml.pre says; without it an unknown\n"
	"                        pre-tokenizer is refused (-v says which split is used)\n"
	"  --pipeline FILE.lua   run this pass pipeline instead of the default one\n"
	"  --lua-timeout S       seconds the pipeline's Lua may run (default 60; 0: no limit)\n"
	"  --lua-memory MIB      MiB the pipeline's Lua may hold (default 1024; 0: no limit)\n"
	"  --lua-unsafe          give the pipeline Lua's full standard libraries (io, os,\n"
	"                        package, debug): only for scripts you trust\n"
	"  --pass-opt P.K=V      set option K of pass P (e.g. batch_templates.sizes=1,16);\n"
	"                        overrides the script's value\n"
	"  --dump-after PASS     print the IR after PASS ('lua': after every Lua pass)\n"
	"  --verify-each         run the IR verifier after every pass\n"
	"  --tune                time the candidate kernels on this machine (seconds): LUT vs\n"
	"                        multiply-add per shape and batch size, and the GEMM tiles;\n"
	"                        record the winners in the tuning file, which later builds\n"
	"                        read (passes lut_specialize, tune_kernels)\n"
	"  --tune-file F         the tuning file (default ~/.cache/bitnetc/tune.tsv)\n"
	"  -v, --verbose         per-pass detail, the full compiler command line\n";

static const char usage_inspect[] =
	"usage: bitnetc inspect MODEL.gguf\n"
	"\n"
	"Prints the GGUF header (version, alignment, data offset), every metadata key with\n"
	"its type and value (long arrays abbreviated), the tensor table (index, name, type,\n"
	"shape, offset in the data section, bytes), and for a supported architecture the\n"
	"hyperparameters and whether bitnetc can build the model's graph. Works on any GGUF\n"
	"file the reader accepts; an unsupported architecture is noted, not an error.\n";

static const char usage_ir[] =
	"usage: bitnetc ir MODEL.gguf [--pipeline FILE.lua|default] [--pass NAME]...\n"
	"\n"
	"Builds the model's graph, verifies it and prints its stable text form.\n"
	"  --pipeline F   run a pass pipeline first (\"default\": passes/default.lua), with\n"
	"                 the verifier after every pass\n"
	"  --lua-timeout S, --lua-memory MIB, --lua-unsafe   as for build\n"
	"  --pass NAME    run a pass (the graph is verified afterwards) before printing;\n"
	"                 repeatable, applied in order\n"
	"  --list-passes  print the registered passes and exit\n";

static const char usage_run[] =
	"usage: bitnetc run MODEL.gguf --tokens ID,ID,... [options]\n"
	"\n"
	"Runs the model in the reference interpreter: evaluates the prompt, then generates\n"
	"greedily (argmax, ties to the lowest id), one token per call. Prints the generated\n"
	"ids on one line; a timing line goes to stderr.\n"
	"  --tokens LIST      prompt token ids, comma separated (required)\n"
	"  -n, --n-predict N  tokens to generate (default 16; 0: only evaluate the prompt)\n"
	"  -c, --ctx-size N   context (KV cache) size (default: min(training context, 4096))\n"
	"  -t, --threads N    threads splitting the matmuls (default: one per CPU; results\n"
	"                     do not depend on it)\n"
	"  --logits-out FILE  write little-endian float32 logits, one row of n_vocab per\n"
	"                     position: the prompt's rows, then one row per generated token\n"
	"                     (the logits after feeding it)\n"
	"  --step             feed the prompt one token per call (the reference's step mode)\n"
	"                     instead of one batch\n"
	"  --ignore-eos       keep generating after the end-of-text token\n";

static const char usage_tokenize[] =
	"usage: bitnetc tokenize MODEL.gguf TEXT [options]\n"
	"\n"
	"Encodes TEXT with the model's tokenizer, as the built program does, and prints the\n"
	"ids comma-separated (ready for --tokens).\n"
	"\n"
	"  --no-special   text such as <|eot_id|> stays text (default: the special token)\n"
	"  --no-bos       no BOS (default: added when the model says so)\n"
	"  --pieces       one line per token: id, then its bytes as a C string\n"
	"  --tokenizer-pre NAME\n"
	"                 split text as NAME (llama3) whatever the file's tokenizer.ggml.pre\n"
	"                 says (default: an unknown pre-tokenizer is refused)\n";

static const char usage_mkmodel[] =
	"usage: bitnetc mkmodel -o FILE [options]\n"
	"\n"
	"Writes a synthetic BitNet model (seeded random ternary weights) as GGUF.\n"
	"  --shape tiny|2b4t     base shape (default tiny: the golden test shape; 2b4t: the\n"
	"                        full BitNet b1.58 2B-4T shape)\n"
	"  --arch A              bitnet-b1.58 (default), bitnet-25 or bitnet\n"
	"  --layers N --hidden N --ffn N --heads N --kv-heads N --vocab N --ctx N\n"
	"                        override the shape\n"
	"  --type T              ternary weight format: i2_s (default), tq1_0, tq2_0; or f16,\n"
	"                        bf16, f32: the same ternary values unquantized (bitnetc\n"
	"                        ternarizes them back when it loads the model)\n"
	"  --embd-type T         token embedding type: f16 (default), f32, bf16, q8_0, q6_k\n"
	"  --scales              arch bitnet: write per-projection .scale tensors\n"
	"  --spm-vocab           a small SentencePiece (\"llama\") vocabulary, as 1bitLLM models\n"
	"                        carry, instead of the byte-level BPE one\n"
	"  --seed N              random seed (default 1)\n"
	"  --vocab-dir DIR       vocabulary from DIR (tokens.txt, merges.txt, special.tsv)\n"
	"  --llama3-vocab        the Llama 3 vocabulary shipped with bitnetc\n"
	"                        ($BITNETC_DATA_DIR/llama3 overrides the built-in path)\n"
	"  -o, --output FILE     where to write (required)\n";

static const char usage_quantize[] =
	"usage: bitnetc quantize IN.gguf OUT.gguf [--type i2_s|tq1_0|tq2_0]\n"
	"\n"
	"Writes IN again with its projection weights ternarized and packed in one ternary\n"
	"format: f32, f16 or bf16 ones as run and build ternarize them (a tensor of 0 and\n"
	"+-m keeps its values, any other gets BitNet b1.58's absmean rule), ternary ones\n"
	"repacked (i2_s has one scale per tensor: tq blocks of several scales take the\n"
	"absmean rule). All metadata (general.file_type updated) and every other tensor\n"
	"are kept as they are. OUT is written beside itself and renamed into place, so a\n"
	"failure leaves no half file; it may not be IN.\n"
	"  --type T   i2_s (default: the reference's format), tq1_0 or tq2_0\n";

static const char usage_version[] =
	"usage: bitnetc version\n"
	"\n"
	"Prints the bitnetc version, the LLVM it uses (and whether LLVM has the NVPTX\n"
	"backend), ptxas if found, and the host CPU's features (less those the environment\n"
	"variable BITNETC_CPU_MASK=generic|avx2|avx512|amx|neon|neon-dot hides, for tests).\n";

static const char usage_targets[] =
	"usage: bitnetc targets\n"
	"\n"
	"Lists the code generation targets and whether each is usable on this host.\n";

static const char usage_passes[] =
	"usage: bitnetc passes [--default]\n"
	"\n"
	"Lists every registered pass with its contract (requires / produces / invalidates)\n"
	"and its options; --default prints the default pipeline script (passes/default.lua),\n"
	"the one 'bitnetc build' runs without --pipeline, to copy and edit.\n";

static const char usage_help[] = "usage: bitnetc help [COMMAND]\n";

static int cmd_build(int argc, char **argv);
static int cmd_inspect(int argc, char **argv);
static int cmd_ir(int argc, char **argv);
static int cmd_run(int argc, char **argv);
static int cmd_tokenize(int argc, char **argv);
static int cmd_mkmodel(int argc, char **argv);
static int cmd_quantize(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_targets(int argc, char **argv);
static int cmd_passes(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const Command commands[] = {
	{"build", cmd_build, "compile a model into a standalone executable", usage_build},
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

static const Command *find_command(const char *name)
{
	for (int i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void print_help(FILE *out)
{
	fprintf(out, "bitnetc %s - ahead-of-time compiler for ternary (BitNet b1.58) models\n\n"
		     "usage: bitnetc COMMAND [ARGS]\n\ncommands:\n",
		BITNETC_VERSION);
	for (int i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'bitnetc COMMAND --help' shows a command's options.\n"
		     "exit codes: 0 ok, 1 usage error, 2 runtime or input error\n");
}

/* ---- argument parsing ----------------------------------------------------------- */

typedef struct {
	const char *cmd; /* for messages */
	int argc;
	char **argv;
	int i;           /* index of the argument being looked at */
	const char *opt; /* the spelling of the option opt() last matched, for messages */
	const char *pos[4];
	int n_pos;
} Args;

static bool is_help(const char *a)
{
	return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* Matches the current argument against a flag without a value. */
static bool flag(const Args *a, const char *s, const char *l)
{
	const char *x = a->argv[a->i];
	return (s && strcmp(x, s) == 0) || (l && strcmp(x, l) == 0);
}

/* Matches the current argument against a flag with a value, as "-f V", "--flag V" or
 * "--flag=V". Returns 1 (matched, *val set), 0 (no match), -1 (value missing: the
 * usage error is printed). */
static int opt(Args *a, const char *s, const char *l, const char **val)
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
static bool positional(Args *a, int max)
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
static bool parse_int(const char *cmd, const char *name, const char *s, int64_t lo, int64_t hi,
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
static int lua_opt(Args *a, PassLuaOpts *lo)
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
static bool need_model(const Args *a)
{
	if (a->n_pos == 0) {
		usage_err(a->cmd, "missing MODEL.gguf");
		return false;
	}
	return true;
}

/* ---- model loading -------------------------------------------------------------- */

static bool arch_supported(const char *arch)
{
	for (const char *const *p = bnm_archs(); *p; p++)
		if (strcmp(*p, arch) == 0)
			return true;
	return false;
}

static void archs_list(char *buf, size_t n)
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
static int load_model(const char *path, GgufFile **fp, IrGraph **gp)
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

/* ---- build ---------------------------------------------------------------------- */

typedef struct {
	const char *path, *out, *target, *cc, *cflags, *opt, *emit_dir, *weights_file;
	const char *tune_file;     /* --tune-file (appended to by --tune) */
	const char *chat_template; /* --chat-template, or NULL: the file's */
	bool no_tokenizer;
	const char *tokenizer_pre; /* --tokenizer-pre, or NULL: the file's */
	int64_t max_batch;
	int verbose;
	const char *pipeline;   /* --pipeline FILE; NULL: the embedded passes/default.lua */
	PassOpts pass_opts;     /* --pass-opt PASS.KEY=VALUE */
	const char *dump_after; /* --dump-after PASS */
	bool verify_each;       /* --verify-each */
	PassLuaOpts lua;        /* --lua-timeout, --lua-memory, --lua-unsafe */
} BuildOpts;

enum { N_STAGES = 5 };

static void stage(int i, const char *name, double secs, const char *fmt, ...) BN_PRINTF(4, 5);
static void stage(int i, const char *name, double secs, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("[%d/%d] %-9s %6.2f s  ", i, N_STAGES, name, secs);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	va_end(ap);
}

/* The --chat-template name as an RtChatTemplate; -1 if unknown. */
static int chat_template_id(const char *name)
{
	if (!strcmp(name, "none"))
		return RT_CHAT_NONE;
	RtChatTemplate t = rt_chat_from_name(name);
	return t == RT_CHAT_NONE ? -1 : (int)t;
}

/* --tokenizer-pre NAME: a pre-tokenizer bitnetc implements, else a usage error listing them. */
static bool tokenizer_pre_ok(const char *cmd, const char *name)
{
	char list[256];
	if (bnm_tok_pre_supported(name))
		return true;
	bnm_tok_pres_list(list, sizeof list);
	usage_err(cmd, "--tokenizer-pre: unknown pre-tokenizer '%s' (bitnetc has the Llama 3 "
		  "split, named %s)", name, list);
	return false;
}

/* The tokenizer and chat template the program gets; prints a line about them. */
static int build_tokenizer(const BuildOpts *o, const GgufFile *f, const IrGraph *g, BnmTok *tok)
{
	BnErr e = {0};
	if (o->no_tokenizer) {
		memset(tok, 0, sizeof *tok);
		snprintf(tok->none_why, sizeof tok->none_why, "--no-tokenizer");
	} else if (bnm_tok_load_pre(f, o->tokenizer_pre, tok, &e) != BN_OK) {
		return fail_err(o->path, &e);
	}
	if (tok->blob && tok->n_tokens > g->hp.n_vocab)
		return fail(EXIT_RUNTIME, "%s: the tokenizer has %" PRId32 " tokens but the model's "
			    "vocabulary only %" PRId64 " (use --no-tokenizer to build without it)",
			    o->path, tok->n_tokens, g->hp.n_vocab);
	if (o->chat_template)
		tok->chat_template = chat_template_id(o->chat_template);
	/* A template whose special tokens the vocabulary lacks would be encoded as plain
	 * text: refused when asked for, dropped (with a note) when the file's metadata chose it. */
	char why[256], note[300] = "";
	if (bnm_tok_chat_check(tok, tok->chat_template, why, sizeof why)) {
		if (o->chat_template)
			return fail(EXIT_RUNTIME, "%s: --chat-template %s: %s", o->path,
				    o->chat_template, why);
		snprintf(note, sizeof note, "; the file's template is not used: %s", why);
		tok->chat_template = RT_CHAT_NONE;
	}
	if (!tok->blob) {
		printf("          no tokenizer (%s): the program takes token ids\n", tok->none_why);
		return 0;
	}
	printf("          tokenizer %s: %" PRId32 " tokens, bos %" PRId32 "%s, eos %" PRId32
	       ", end of generation", tok->kind, tok->n_tokens, tok->bos,
	       tok->add_bos ? " (added)" : "", tok->eos);
	for (int i = 0; i < tok->n_eog; i++)
		printf(" %" PRId32, tok->eog[i]);
	const char *from = o->chat_template ? " (--chat-template)" : note[0] ? ""
			   : !tok->has_chat_jinja ? " (the file has none)"
			   : tok->chat_template ? " (recognized)" : " (not recognized)";
	printf("; chat template %s%s%s\n", rt_chat_name((RtChatTemplate)tok->chat_template), from,
	       note);
	if (o->verbose && tok->split[0])
		printf("          text is split into words by %s\n", tok->split);
	/* a vocabulary padded past the tokenizer (common): the program masks those ids */
	if (tok->n_tokens < g->hp.n_vocab)
		printf("          note: %" PRId64 " embedding rows have no token; they are never "
		       "sampled\n", g->hp.n_vocab - tok->n_tokens);
	return 0;
}

static int build_model(const BuildOpts *o, const CgTarget *t)
{
	const CgBackend *be = t->backend;
	GgufFile *f = NULL;
	IrGraph *g = NULL;
	BnmTok tok = {0};
	CgOutput out = {0};
	BnErr e = {0};
	char srcdir[4096] = "", tmp_out[6144] = "", tmp_w[6144] = "", cmd[8192];
	char out_path[4096], w_path[4096];
	int slot_src = -1, slot_out = -1, slot_w = -1; /* temporaries, removed unless renamed */
	int rc = 0;

	/* [1] frontend */
	double t0 = now_s();
	if ((rc = load_model(o->path, &f, &g)))
		return rc;
	int64_t bos = -1, eos = -1;
	if (!gguf_get_int(f, "tokenizer.ggml.bos_token_id", &bos))
		bos = -1;
	if (!gguf_get_int(f, "tokenizer.ggml.eos_token_id", &eos))
		eos = -1;
	stage(1, "frontend", now_s() - t0, "%s: %s, %" PRId64 " layers, n_embd %" PRId64
	      ", n_vocab %" PRId64 ", %d nodes", o->path, g->arch, g->hp.n_layer, g->hp.n_embd,
	      g->hp.n_vocab, g->n_nodes);
	if ((rc = build_tokenizer(o, f, g, &tok)))
		goto out;

	/* [2] passes */
	t0 = now_s();
	int nodes0 = g->n_nodes, values0 = g->n_values;
	PassStats stats = {0};
	PassRunOpts ro = {.verify_each = o->verify_each, .dump_after = o->dump_after,
			  .dump_file = stdout, .verbose = o->verbose, .cli_opts = &o->pass_opts,
			  .stats = &stats, .target = pass_target_for(o->target), .cc = o->cc,
			  .lua = o->lua};
	if (pass_pipeline_run(g, o->pipeline, &ro, &e) != BN_OK) {
		pass_stats_free(&stats);
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	stage(2, "passes", now_s() - t0, "%s: %d -> %d nodes, %d -> %d values",
	      o->pipeline ? o->pipeline : "default.lua", nodes0, g->n_nodes, values0, g->n_values);
	if (o->verbose)
		pass_stats_print(&stats, stdout);
	pass_stats_free(&stats);

	/* [3] codegen: one forward function per batch template the pipeline chose
	 * (batch_templates; without it 1 and 32); --max-batch N makes N the largest, keeping
	 * the pipeline's smaller ones */
	t0 = now_s();
	int64_t max_batch = o->max_batch;
	const IrAttr *sizes = pass_gattr_find(g, "batch_sizes");
	bool have_sizes = sizes && sizes->type == IR_ATTR_INTS && sizes->n_ints > 0;
	int bsz[66], n_bsz = 1;
	bsz[0] = 1;
	for (int i = 0; have_sizes && i < sizes->n_ints && n_bsz < 64; i++) {
		int64_t s = sizes->ints[i]; /* ascending and distinct from the pass; kept so */
		if (s > bsz[n_bsz - 1] && s <= 4096 && (!max_batch || s < max_batch))
			bsz[n_bsz++] = (int)s;
	}
	if (!max_batch)
		max_batch = have_sizes ? bsz[n_bsz - 1] : 32;
	if (max_batch > bsz[n_bsz - 1])
		bsz[n_bsz++] = (int)max_batch;
	CgOpts co = {.target = t->name, .cc = o->cc, .cflags = o->cflags, .opt = o->opt, .max_batch = (int)max_batch,
		     .batch_sizes = bsz, .n_batch_sizes = n_bsz,
		     .pipeline = o->pipeline ? o->pipeline : "default.lua", .bos = bos, .eos = eos, .tok_blob = tok.blob,
		     .tok_bytes = tok.size, .chat_template = tok.chat_template,
		     .verbose = o->verbose};
	if (be->emit(g, &co, &out, &e) != BN_OK) {
		rc = fail_err(o->path, &e);
		goto out;
	}
	if (o->emit_dir) {
		snprintf(srcdir, sizeof srcdir, "%s", o->emit_dir);
		if (mkdir(srcdir, 0777) != 0 && errno != EEXIST) {
			rc = fail(EXIT_RUNTIME, "%s: cannot create the directory: %s", srcdir,
				  strerror(errno));
			goto out;
		}
	} else {
		const char *td = getenv("TMPDIR");
		snprintf(srcdir, sizeof srcdir, "%s/bitnetc-XXXXXX", td && *td ? td : "/tmp");
		if (!mkdtemp(srcdir)) {
			rc = fail(EXIT_RUNTIME, "cannot create a temporary directory %s: %s", srcdir,
				  strerror(errno));
			srcdir[0] = 0;
			goto out;
		}
		slot_src = cg_cleanup_add(srcdir, true);
	}
	if (cg_sources_write(be, srcdir, &out, &e) != BN_OK) {
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	char tmpl[64 * 6] = "";
	for (int i = 0, l = 0; i < n_bsz && l < (int)sizeof tmpl; i++)
		l += snprintf(tmpl + l, sizeof tmpl - (size_t)l, "%s%d", i ? "," : "", bsz[i]);
	const CgArtifact *art = out.n_art ? &out.art[0] : NULL; /* the main one: model.c */
	stage(3, "codegen", now_s() - t0, "%s %.0f KiB, %d kernels, scratch %.1f KiB, "
	      "max batch %d (templates %s)%s%s", art ? art->name : "nothing",
	      art ? (double)art->bytes.len / 1024.0 : 0.0, out.n_kernels,
	      (double)out.scratch_bytes / 1024.0, co.max_batch, tmpl,
	      o->emit_dir ? ", sources in " : "", o->emit_dir ? o->emit_dir : "");

	/* [4] cc: link next to OUT (a symbolic link: the file it names) under a temporary
	 * name, renamed once complete */
	t0 = now_s();
	cg_out_resolve(o->out, out_path, sizeof out_path);
	if (cg_out_temp(out_path, tmp_out, sizeof tmp_out, &slot_out, &e) != BN_OK) {
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	cmd[0] = 0;
	if (be->build(&co, srcdir, tmp_out, o->out, cmd, sizeof cmd, &e) != BN_OK) {
		if (o->verbose && cmd[0])
			fprintf(stderr, "bitnetc: build: %s\n", cmd);
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	if (o->verbose)
		stage(4, "cc", now_s() - t0, "%s", cmd);
	else
		stage(4, "cc", now_s() - t0, "%s %s%s%s (%s)", co.cc, co.opt, co.cflags ? " " : "",
		      co.cflags ? co.cflags : "", t->name);

	/* [5] payload */
	t0 = now_s();
	mode_t um = umask(0), wmode = 0666 & ~um;
	umask(um);
	if (o->weights_file) {
		/* FILE too is written beside itself and renamed: the old one stays whole until
		 * the new one is */
		struct stat wst;
		cg_out_resolve(o->weights_file, w_path, sizeof w_path);
		if (stat(w_path, &wst) == 0)
			wmode = wst.st_mode & 07777;
		if (cg_out_temp(w_path, tmp_w, sizeof tmp_w, &slot_w, &e) != BN_OK ||
		    cg_payload_write(g, &out.payload, tmp_w, false, o->weights_file, &e) != BN_OK) {
			rc = fail(EXIT_RUNTIME, "%s", e.msg);
			goto out;
		}
	} else if (cg_payload_write(g, &out.payload, tmp_out, true, o->out, &e) != BN_OK) {
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	/* both renames or neither (a signal waits until they are done) */
	cg_cleanup_hold();
	if (cg_out_check(out_path, "-o", &e) != BN_OK ||
	    (o->weights_file && cg_out_commit(slot_w, tmp_w, w_path, o->weights_file,
					      "--weights-file", wmode, &e) != BN_OK) ||
	    cg_out_commit(slot_out, tmp_out, out_path, o->out, "-o", 0777 & ~um, &e) != BN_OK) {
		cg_cleanup_release();
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	slot_w = slot_out = -1;
	cg_cleanup_release();
	stage(5, "payload", now_s() - t0, "%.1f MiB of weights %s %s (hash %016" PRIx64 ")",
	      (double)out.payload.size / 1048576.0, o->weights_file ? "written to" : "appended to",
	      o->weights_file ? o->weights_file : o->out, out.payload.hash);
	struct stat st;
	printf("wrote %s (%.1f MiB)\n", o->out,
	       stat(o->out, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0);
out:
	/* only what this run created */
	cg_cleanup_remove(slot_w);
	cg_cleanup_remove(slot_out);
	cg_cleanup_remove(slot_src);
	cg_output_free(&out);
	bnm_tok_free(&tok);
	if (g)
		pass_gattr_clear(g);
	ir_graph_free(g);
	gguf_close(f);
	return finish(rc);
}

static int cmd_build(int argc, char **argv)
{
	Args a = {.cmd = "build", .argc = argc, .argv = argv};
	const char *cc_env = getenv("CC");
	BuildOpts o = {.target = "native", .cc = cc_env && *cc_env ? cc_env : "cc",
		       .opt = "-O2", .max_batch = 0 /* from the pipeline */};
	static const char *const levels[] = {"-O0", "-O1", "-O2", "-O3"};
	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r;
		if (is_help(argv[a.i]))
			return show_usage(usage_build);
		bool level = false;
		for (int k = 0; k < 4; k++)
			if (strcmp(argv[a.i], levels[k]) == 0) {
				o.opt = levels[k];
				level = true;
			}
		if (level)
			continue;
		if (flag(&a, "-v", "--verbose")) {
			o.verbose++;
		} else if ((r = opt(&a, "-o", "--output", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.out = v;
		} else if ((r = opt(&a, NULL, "--target", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.target = v;
		} else if ((r = opt(&a, NULL, "--cc", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (!*v)
				return usage_err(a.cmd, "--cc: empty compiler name");
			o.cc = v;
		} else if ((r = opt(&a, NULL, "--cflags", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.cflags = v;
		} else if ((r = opt(&a, NULL, "--max-batch", &v)) != 0) {
			if (r < 0 || !parse_int(a.cmd, a.opt, v, 1, 4096, &o.max_batch))
				return EXIT_USAGE;
		} else if ((r = opt(&a, NULL, "--emit-c", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.emit_dir = v;
		} else if ((r = opt(&a, NULL, "--weights-file", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.weights_file = v;
		} else if ((r = opt(&a, NULL, "--chat-template", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (chat_template_id(v) < 0)
				return usage_err(a.cmd, "--chat-template: unknown template '%s' "
							"(bitnet, llama3 or none)", v);
			o.chat_template = v;
		} else if (flag(&a, NULL, "--no-tokenizer")) {
			o.no_tokenizer = true;
		} else if ((r = opt(&a, NULL, "--tokenizer-pre", &v)) != 0) {
			if (r < 0 || !tokenizer_pre_ok(a.cmd, v))
				return EXIT_USAGE;
			o.tokenizer_pre = v;
		} else if (flag(&a, NULL, "--verify-each")) {
			o.verify_each = true;
		} else if (flag(&a, NULL, "--tune")) {
			BnErr pe = {0};
			if (pass_opts_parse(&o.pass_opts, "tune_kernels.tune=1", &pe) != BN_OK ||
			    pass_opts_parse(&o.pass_opts, "lut_specialize.tune=1", &pe) != BN_OK) {
				pass_opts_free(&o.pass_opts);
				return usage_err(a.cmd, "--tune: %s", pe.msg);
			}
		} else if ((r = opt(&a, NULL, "--tune-file", &v)) != 0) {
			BnErr pe = {0};
			if (r > 0)
				o.tune_file = v;
			if (r < 0 || pass_opts_set(&o.pass_opts, "tune_kernels", "file", v, &pe) != BN_OK ||
			    pass_opts_set(&o.pass_opts, "lut_specialize", "file", v, &pe) != BN_OK) {
				pass_opts_free(&o.pass_opts);
				return r < 0 ? EXIT_USAGE : usage_err(a.cmd, "--tune-file: %s", pe.msg);
			}
		} else if ((r = opt(&a, NULL, "--pipeline", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.pipeline = v;
		} else if ((r = lua_opt(&a, &o.lua)) != 0) {
			if (r < 0) {
				pass_opts_free(&o.pass_opts);
				return EXIT_USAGE;
			}
		} else if ((r = opt(&a, NULL, "--dump-after", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.dump_after = v;
		} else if ((r = opt(&a, NULL, "--pass-opt", &v)) != 0) {
			BnErr pe = {0};
			if (r < 0)
				return EXIT_USAGE;
			if (pass_opts_parse(&o.pass_opts, v, &pe) != BN_OK) {
				pass_opts_free(&o.pass_opts);
				return usage_err(a.cmd, "--pass-opt: %s", pe.msg);
			}
		} else if (!positional(&a, 1)) {
			pass_opts_free(&o.pass_opts);
			return EXIT_USAGE;
		}
	}
	int urc = !need_model(&a) ? EXIT_USAGE
		  : !o.out ? usage_err(a.cmd, "missing -o OUT (the program to write)") : 0;
	if (urc) {
		pass_opts_free(&o.pass_opts);
		return urc;
	}
	o.path = a.pos[0];
	CgTarget t;
	if (cg_target_find(o.target, &t) != 0) {
		pass_opts_free(&o.pass_opts);
		return usage_err(a.cmd, "--target: unknown target '%s' (buildable: %s; see "
					"'bitnetc targets')", o.target, cg_target_names());
	}
	if (!t.buildable) {
		pass_opts_free(&o.pass_opts);
		return usage_err(a.cmd, "--target %s: the %s backend cannot build programs yet "
					"(not yet buildable; buildable: %s; see 'bitnetc targets')",
				 o.target, t.backend->name, cg_target_names());
	}
	/* before any work: no output may be an input, another output or a special file */
	BnErr fe = {0};
	CgBuildFiles files = {.model = o.path, .pipeline = o.pipeline, .out = o.out,
			      .weights = o.weights_file, .tune_file = o.tune_file,
			      .emit_dir = o.emit_dir};
	if (cg_build_files_check(&files, &fe) != BN_OK) {
		pass_opts_free(&o.pass_opts);
		return fail(EXIT_RUNTIME, "%s", fe.msg);
	}
	cg_cleanup_install();
	int rc = build_model(&o, &t);
	pass_opts_free(&o.pass_opts);
	return rc;
}

/* ---- inspect -------------------------------------------------------------------- */

static void print_kv_type(const GgufValue *v, char *buf, size_t n)
{
	if (v->type == GGUF_T_ARRAY)
		snprintf(buf, n, "%s[%" PRIu64 "]", gguf_type_name(v->arr_type), v->arr_n);
	else
		snprintf(buf, n, "%s", gguf_type_name(v->type));
}

static const char *tensor_type(const GgufTensor *t)
{
	IrDtype dt;
	return ir_dtype_from_ggml(t->ggml_type, &dt) ? ir_dtype_name(dt)
						     : ir_ggml_type_desc(t->ggml_type);
}

/* Projection weights stored as floats: say that loading ternarizes them. */
static void inspect_float_projections(const GgufFile *f)
{
	int n[IR_DT_COUNT] = {0}, total = 0;
	for (uint64_t i = 0; i < f->n_tensors; i++)
		if (bnm_float_projection(&f->tensors[i])) {
			n[f->tensors[i].dtype]++;
			total++;
		}
	if (!total)
		return;
	printf("ternarized: %d projection weights are float (", total);
	for (int dt = 0, k = 0; dt < IR_DT_COUNT; dt++)
		if (n[dt])
			printf("%s%d %s", k++ ? ", " : "", n[dt], ir_dtype_name((IrDtype)dt));
	printf("), made i2_s when the model is loaded\n"
	       "  (a tensor of 0 and +-m keeps its values, any other gets BitNet b1.58's absmean rule)\n");
}

static int cmd_inspect(int argc, char **argv)
{
	Args a = {.cmd = "inspect", .argc = argc, .argv = argv};
	for (a.i = 0; a.i < argc; a.i++) {
		if (is_help(argv[a.i]))
			return show_usage(usage_inspect);
		if (!positional(&a, 1))
			return EXIT_USAGE;
	}
	if (!need_model(&a))
		return EXIT_USAGE;
	const char *path = a.pos[0];

	BnErr e = {0};
	GgufFile *f = gguf_open(path, &e);
	if (!f)
		return fail_err(path, &e);

	printf("file:         %s\n", path);
	printf("size:         %" PRIu64 " bytes\n", f->size);
	printf("gguf version: %u\n", f->version);
	printf("alignment:    %" PRIu64 "\n", f->alignment);
	printf("data offset:  %" PRIu64 " (0x%" PRIx64 ")\n", f->data_offset, f->data_offset);

	printf("\nmetadata: %" PRIu64 " keys\n", f->n_kv);
	int kw = 8;
	for (uint64_t i = 0; i < f->n_kv; i++) {
		int l = (int)strlen(f->kv[i].key);
		kw = l > kw ? (l > 48 ? 48 : l) : kw;
	}
	for (uint64_t i = 0; i < f->n_kv; i++) {
		char ty[48];
		print_kv_type(&f->kv[i].val, ty, sizeof ty);
		printf("  %-*s %-14s ", kw, f->kv[i].key, ty);
		gguf_value_print(&f->kv[i].val, stdout, 8);
		putchar('\n');
	}

	printf("\ntensors: %" PRIu64 "\n", f->n_tensors);
	int nw = 4;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		int l = (int)strlen(f->tensors[i].name);
		nw = l > nw ? (l > 48 ? 48 : l) : nw;
	}
	printf("  %5s  %-*s %-6s %-22s %12s %12s\n", "index", nw, "name", "type", "shape", "offset",
	       "bytes");
	uint64_t total = 0;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		char shape[96];
		size_t len = 0;
		shape[len++] = '[';
		for (int d = 0; d < t->n_dims && len < sizeof shape - 24; d++)
			len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%" PRId64,
						d ? ", " : "", t->ne[d]);
		snprintf(shape + len, sizeof shape - len, "]");
		printf("  %5" PRIu64 "  %-*s %-6s %-22s %12" PRIu64 " %12" PRIu64 "\n", i, nw, t->name,
		       tensor_type(t), shape, t->offset, t->nbytes);
		total += t->nbytes; /* each fits in the file, so the sum cannot overflow */
	}
	printf("total tensor bytes: %" PRIu64 " (%.2f MiB)\n", total, (double)total / 1048576.0);

	/* What bitnetc makes of it: only for the architectures the frontend knows. */
	int rc = 0;
	GgufStr as;
	char arch[128] = "";
	if (gguf_get_str(f, "general.architecture", &as))
		snprintf(arch, sizeof arch, "%.*s", (int)(as.len > 100 ? 100 : as.len), as.ptr);
	char archs[256];
	archs_list(archs, sizeof archs);
	putchar('\n');
	if (!arch[0]) {
		printf("architecture: none (general.architecture is missing); bitnetc supports %s\n",
		       archs);
	} else if (!arch_supported(arch)) {
		printf("architecture: %s is not supported by bitnetc (supported: %s)\n", arch, archs);
	} else {
		IrHparams hp;
		printf("architecture: %s (supported)\n", arch);
		if (bnm_hparams(f, &hp, &e) != BN_OK) {
			printf("hyperparameters: error: %s\n", e.msg);
			rc = fail_err(path, &e);
		} else {
			printf("hyperparameters:\n");
			printf("  n_ctx_train  %" PRId64 "\n", hp.n_ctx_train);
			printf("  n_embd       %" PRId64 "\n", hp.n_embd);
			printf("  n_layer      %" PRId64 "\n", hp.n_layer);
			printf("  n_head       %" PRId64 "\n", hp.n_head);
			printf("  n_head_kv    %" PRId64 "\n", hp.n_head_kv);
			printf("  head_dim     %" PRId64 "\n", hp.head_dim);
			printf("  n_ff         %" PRId64 "\n", hp.n_ff);
			printf("  n_vocab      %" PRId64 "\n", hp.n_vocab);
			printf("  rms_eps      %g\n", (double)hp.eps);
			printf("  rope_base    %g\n", (double)hp.rope_base);
			/* Building the graph checks every tensor's presence, shape and type. */
			IrGraph *g = bnm_load(f, &e);
			if (!g) {
				printf("graph: error: %s\n", e.msg);
				rc = fail_err(path, &e);
			} else {
				printf("graph: ok (%d nodes, %d values)\n", g->n_nodes, g->n_values);
				ir_graph_free(g);
				inspect_float_projections(f);
			}
		}
	}
	gguf_close(f);
	return finish(rc);
}

/* ---- ir ---------------------------------------------------------------------------- */

static int cmd_ir(int argc, char **argv)
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

/* ---- run --------------------------------------------------------------------------- */

typedef struct {
	const char *path, *tokens, *logits_out;
	int64_t n_predict, n_ctx; /* n_ctx 0: default */
	int64_t n_threads;        /* 0: one per online CPU */
	bool step, ignore_eos;
} RunOpts;

/* Evaluates n tokens (one call, or one call per token in step mode) into rows. */
static int run_eval(IrInterp *it, const int32_t *toks, int n, bool step, int64_t n_vocab,
		    float *rows, BnErr *e)
{
	if (!step)
		return ir_interp_eval(it, toks, n, rows, e);
	for (int i = 0; i < n; i++) {
		int rc = ir_interp_eval(it, toks + i, 1, rows + (int64_t)i * n_vocab, e);
		if (rc)
			return rc;
	}
	return BN_OK;
}

static int run_model(const RunOpts *o, const int32_t *prompt, int n_prompt)
{
	GgufFile *f;
	IrGraph *g;
	int rc = load_model(o->path, &f, &g);
	if (rc)
		return rc;
	const int64_t n_vocab = g->hp.n_vocab;
	IrInterp *it = NULL;
	float *rows = NULL;
	FILE *lf = NULL;
	BnErr e = {0};
	RtErr re = {0};

	for (int i = 0; i < n_prompt; i++) {
		if (prompt[i] >= n_vocab) {
			rc = usage_err("run", "--tokens: item %d is token id %d, but %s has %" PRId64
					      " tokens (ids 0..%" PRId64 ")",
				       i + 1, prompt[i], o->path, n_vocab, n_vocab - 1);
			goto out;
		}
	}
	int64_t n_ctx = o->n_ctx;
	if (n_ctx == 0)
		n_ctx = g->hp.n_ctx_train > 0 && g->hp.n_ctx_train < 4096 ? g->hp.n_ctx_train : 4096;
	/* Every generated token is fed back (the last one only for its logits row), so the
	 * cache must hold prompt + n positions. */
	if ((int64_t)n_prompt + o->n_predict > n_ctx) {
		rc = usage_err("run", "the prompt (%d token%s) plus -n %" PRId64
				      " needs %" PRId64 " positions, but the context is %" PRId64
				      "%s",
			       n_prompt, n_prompt == 1 ? "" : "s", o->n_predict,
			       (int64_t)n_prompt + o->n_predict, n_ctx,
			       o->n_ctx ? " (-c)" : " (raise it with -c)");
		goto out;
	}
	if (g->hp.n_ctx_train > 0 && n_ctx > g->hp.n_ctx_train)
		fprintf(stderr, "bitnetc: warning: context %" PRId64 " exceeds the model's training "
				"context %" PRId64 "\n", n_ctx, g->hp.n_ctx_train);

	int64_t eos = -1;
	if (!gguf_get_int(f, "tokenizer.ggml.eos_token_id", &eos))
		eos = -1;

	uint64_t nrow_bytes;
	if (!bn_mul_ok((uint64_t)n_prompt, (uint64_t)n_vocab * sizeof(float), &nrow_bytes) ||
	    nrow_bytes > SIZE_MAX) {
		rc = fail(EXIT_RUNTIME, "%s: logits for %d tokens do not fit in memory", o->path,
			  n_prompt);
		goto out;
	}
	rows = malloc((size_t)nrow_bytes);
	if (!rows) {
		rc = fail(EXIT_RUNTIME, "out of memory for the logits of %d tokens x %" PRId64,
			  n_prompt, n_vocab);
		goto out;
	}
	it = ir_interp_new(g, n_ctx, &e);
	if (!it) {
		rc = fail_err(o->path, &e);
		goto out;
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	ir_interp_set_threads(it, o->n_threads ? (int)o->n_threads : ncpu > 0 ? (int)ncpu : 1);
	if (o->logits_out && !(lf = rt_f32_open(o->logits_out, &re))) {
		rc = fail(EXIT_RUNTIME, "%s", re.msg);
		goto out;
	}

	double t0 = now_s();
	if (run_eval(it, prompt, n_prompt, o->step, n_vocab, rows, &e) != BN_OK) {
		rc = fail_err(o->path, &e);
		goto out;
	}
	double t_prompt = now_s() - t0;
	if (lf && rt_write_f32(lf, o->logits_out, rows, (size_t)n_prompt * (size_t)n_vocab, &re)) {
		rc = fail(EXIT_RUNTIME, "%s", re.msg);
		goto out;
	}

	/* Greedy decoding, printing each id as it is chosen (a big model is slow in the
	 * interpreter). rows' first row is reused for each step's logits. */
	const float *last = rows + (int64_t)(n_prompt - 1) * n_vocab;
	int n_gen = 0, n_fed = 0;
	double t1 = now_s();
	for (int64_t i = 0; i < o->n_predict; i++) {
		int32_t tok = (int32_t)rt_argmax(last, n_vocab);
		printf("%s%d", n_gen++ ? " " : "", tok);
		fflush(stdout);
		bool stop = !o->ignore_eos && tok == eos;
		/* Feed it when another token follows, or for its logits row. */
		if ((i + 1 < o->n_predict && !stop) || lf) {
			if (ir_interp_eval(it, &tok, 1, rows, &e) != BN_OK) {
				rc = fail_err(o->path, &e);
				goto out;
			}
			n_fed++;
			last = rows;
			if (lf && rt_write_f32(lf, o->logits_out, rows, (size_t)n_vocab, &re)) {
				rc = fail(EXIT_RUNTIME, "%s", re.msg);
				goto out;
			}
		}
		if (stop)
			break;
	}
	double t_gen = now_s() - t1;
	if (lf) {
		FILE *tmp = lf;
		lf = NULL;
		if (rt_f32_close(tmp, o->logits_out, &re)) {
			rc = fail(EXIT_RUNTIME, "%s", re.msg);
			goto out;
		}
	}

	if (n_gen)
		putchar('\n');
	fflush(stdout); /* ids before the timing line when both go to one terminal or file */
	fprintf(stderr, "bitnetc: prompt: %d tokens in %.3f s (%.1f tok/s, %s); decode: %d calls "
			"in %.3f s (%.1f tok/s)%s\n",
		n_prompt, t_prompt, t_prompt > 0 ? n_prompt / t_prompt : 0.0,
		o->step ? "step" : "batch", n_fed, t_gen, t_gen > 0 ? n_fed / t_gen : 0.0,
		n_gen < o->n_predict ? "; stopped at end-of-text" : "");
out:
	if (lf)
		fclose(lf);
	ir_interp_free(it);
	free(rows);
	ir_graph_free(g);
	gguf_close(f);
	return finish(rc);
}

static int cmd_run(int argc, char **argv)
{
	Args a = {.cmd = "run", .argc = argc, .argv = argv};
	RunOpts o = {.n_predict = 16};
	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r;
		if (is_help(argv[a.i]))
			return show_usage(usage_run);
		if (flag(&a, NULL, "--step")) {
			o.step = true;
		} else if (flag(&a, NULL, "--ignore-eos")) {
			o.ignore_eos = true;
		} else if ((r = opt(&a, NULL, "--tokens", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.tokens = v;
		} else if ((r = opt(&a, "-n", "--n-predict", &v)) != 0) {
			if (r < 0 || !parse_int(a.cmd, a.opt, v, 0, INT32_MAX - 1,
						&o.n_predict))
				return EXIT_USAGE;
		} else if ((r = opt(&a, "-c", "--ctx-size", &v)) != 0) {
			if (r < 0 || !parse_int(a.cmd, a.opt, v, 1, INT32_MAX, &o.n_ctx))
				return EXIT_USAGE;
		} else if ((r = opt(&a, "-t", "--threads", &v)) != 0) {
			if (r < 0 || !parse_int(a.cmd, a.opt, v, 1, 256, &o.n_threads))
				return EXIT_USAGE;
		} else if ((r = opt(&a, NULL, "--logits-out", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.logits_out = v;
		} else if (!positional(&a, 1)) {
			return EXIT_USAGE;
		}
	}
	if (!need_model(&a))
		return EXIT_USAGE;
	o.path = a.pos[0];
	if (!o.tokens)
		return usage_err(a.cmd, "missing --tokens (the prompt as token ids, e.g. "
					"--tokens 496,84,104)");
	int32_t *prompt;
	int n_prompt;
	RtErr re = {0};
	if (rt_parse_tokens(o.tokens, &prompt, &n_prompt, &re) != RT_OK)
		return usage_err(a.cmd, "--tokens: %s", re.msg);
	int rc = run_model(&o, prompt, n_prompt);
	free(prompt);
	return rc;
}

/* ---- tokenize ------------------------------------------------------------------ */

/* A token's bytes as a C string literal body. */
static void print_piece(const char *p, int n)
{
	for (int i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\\' || c == '"')
			printf("\\%c", c);
		else if (c == '\n')
			printf("\\n");
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static int tokenize_text(const char *path, const char *text, int flags, bool pieces,
			 const char *pre)
{
	BnErr e = {0};
	RtErr re = {0};
	BnmTok tok = {0};
	RtTok *t = NULL;
	int32_t *ids = NULL;
	int n = 0, rc = 0;
	GgufFile *f = gguf_open(path, &e);
	if (!f)
		return fail_err(path, &e);
	if (bnm_tok_load_pre(f, pre, &tok, &e) != BN_OK) {
		rc = fail_err(path, &e);
	} else if (!tok.blob) {
		rc = fail(EXIT_RUNTIME, "%s: no tokenizer (%s)", path, tok.none_why);
	} else if (!(t = rt_tok_open(tok.blob, tok.size, &re)) ||
		   rt_tok_encode(t, text, strlen(text), rt_tok_add_bos(t) ? flags
				 : flags & ~RT_TOK_ADD_BOS, &ids, &n, &re) != RT_OK) {
		rc = fail(EXIT_RUNTIME, "%s: tokenizer: %s", path, re.msg);
	} else {
		for (int i = 0; i < n; i++) {
			if (!pieces) {
				printf("%s%" PRId32, i ? "," : "", ids[i]);
				continue;
			}
			char buf[256];
			int len = rt_tok_piece(t, ids[i], true, buf, (int)sizeof buf);
			printf("%" PRId32 "\t\"", ids[i]);
			print_piece(buf, len < 0 ? 0 : len > (int)sizeof buf ? (int)sizeof buf : len);
			printf("\"\n");
		}
		if (!pieces)
			putchar('\n');
	}
	free(ids);
	rt_tok_free(t);
	bnm_tok_free(&tok);
	gguf_close(f);
	return finish(rc);
}

static int cmd_tokenize(int argc, char **argv)
{
	Args a = {.cmd = "tokenize", .argc = argc, .argv = argv};
	int flags = RT_TOK_PARSE_SPECIAL | RT_TOK_ADD_BOS;
	bool pieces = false;
	const char *pre = NULL;
	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r;
		if (is_help(argv[a.i]))
			return show_usage(usage_tokenize);
		if ((r = opt(&a, NULL, "--tokenizer-pre", &v)) != 0) {
			if (r < 0 || !tokenizer_pre_ok(a.cmd, v))
				return EXIT_USAGE;
			pre = v;
		} else if (flag(&a, NULL, "--no-special"))
			flags &= ~RT_TOK_PARSE_SPECIAL;
		else if (flag(&a, NULL, "--no-bos"))
			flags &= ~RT_TOK_ADD_BOS;
		else if (flag(&a, NULL, "--pieces"))
			pieces = true;
		else if (!positional(&a, 2))
			return EXIT_USAGE;
	}
	if (!need_model(&a))
		return EXIT_USAGE;
	if (a.n_pos < 2)
		return usage_err(a.cmd, "missing TEXT (quote it: bitnetc tokenize MODEL.gguf "
					"\"Hello, world\")");
	return tokenize_text(a.pos[0], a.pos[1], flags, pieces, pre);
}

/* ---- mkmodel ----------------------------------------------------------------------- */

/* A dtype by name from a list of allowed ones ("i2_s" or "I2_S"). */
static bool parse_dtype(const char *s, const IrDtype *allowed, int n, IrDtype *out)
{
	for (int i = 0; i < n; i++) {
		if (strcasecmp(s, ir_dtype_name(allowed[i])) == 0) {
			*out = allowed[i];
			return true;
		}
	}
	return false;
}

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmd_mkmodel(int argc, char **argv)
{
	Args a = {.cmd = "mkmodel", .argc = argc, .argv = argv};
	const char *shape = "tiny", *arch = NULL, *type = NULL, *embd = NULL, *vocab_dir = NULL;
	const char *out = NULL;
	bool llama3 = false, scales = false, spm = false;
	int64_t seed = 1;
	/* Shape overrides: -1 = keep the shape's value. ORDER ov_names */
	static const char *const ov_names[] = {"--layers", "--hidden", "--ffn", "--heads",
					       "--kv-heads", "--vocab", "--ctx"};
	enum { N_OV = sizeof ov_names / sizeof ov_names[0] };
	int64_t ov[N_OV];
	for (int k = 0; k < N_OV; k++)
		ov[k] = -1;

	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r = 0;
		if (is_help(argv[a.i]))
			return show_usage(usage_mkmodel);
		if (flag(&a, NULL, "--llama3-vocab")) {
			llama3 = true;
			continue;
		}
		if (flag(&a, NULL, "--scales")) {
			scales = true;
			continue;
		}
		if (flag(&a, NULL, "--spm-vocab")) {
			spm = true;
			continue;
		}
		const char **dst = NULL;
		if ((r = opt(&a, NULL, "--shape", &v)) != 0)
			dst = &shape;
		else if ((r = opt(&a, NULL, "--arch", &v)) != 0)
			dst = &arch;
		else if ((r = opt(&a, NULL, "--type", &v)) != 0)
			dst = &type;
		else if ((r = opt(&a, NULL, "--embd-type", &v)) != 0)
			dst = &embd;
		else if ((r = opt(&a, NULL, "--vocab-dir", &v)) != 0)
			dst = &vocab_dir;
		else if ((r = opt(&a, "-o", "--output", &v)) != 0)
			dst = &out;
		if (r < 0)
			return EXIT_USAGE;
		if (dst) {
			*dst = v;
			continue;
		}
		if ((r = opt(&a, NULL, "--seed", &v)) != 0) {
			if (r < 0 || !parse_int(a.cmd, "--seed", v, 0, INT64_MAX, &seed))
				return EXIT_USAGE;
			continue;
		}
		int k = 0;
		for (; k < N_OV; k++)
			if ((r = opt(&a, NULL, ov_names[k], &v)) != 0)
				break;
		if (r < 0)
			return EXIT_USAGE;
		if (k < N_OV) {
			if (!parse_int(a.cmd, ov_names[k], v, 1, INT32_MAX, &ov[k]))
				return EXIT_USAGE;
			continue;
		}
		if (!positional(&a, 0))
			return EXIT_USAGE;
	}
	if (!out)
		return usage_err(a.cmd, "missing -o FILE");
	if (llama3 && vocab_dir)
		return usage_err(a.cmd, "--vocab-dir and --llama3-vocab exclude each other");
	if (spm && (llama3 || vocab_dir))
		return usage_err(a.cmd, "--spm-vocab excludes --llama3-vocab and --vocab-dir");

	BnmSynthSpec s;
	BnErr e = {0};
	memset(&s, 0, sizeof s);
	if (strcmp(shape, "tiny") != 0 && strcmp(shape, "2b4t") != 0)
		return usage_err(a.cmd, "--shape: unknown shape '%s' (tiny or 2b4t)", shape);
	if (bnm_synth_shape(&s, shape, &e) != BN_OK)
		return usage_err(a.cmd, "--shape: %s", e.msg);
	if (arch) {
		if (!arch_supported(arch)) {
			char archs[256];
			archs_list(archs, sizeof archs);
			return usage_err(a.cmd, "--arch: unknown architecture '%s' (%s)", arch, archs);
		}
		s.arch = arch;
	}
	if (type) {
		static const IrDtype ok[] = {IR_DT_I2_S, IR_DT_TQ1_0, IR_DT_TQ2_0, IR_DT_F16,
					     IR_DT_BF16, IR_DT_F32};
		if (!parse_dtype(type, ok, 6, &s.wtype))
			return usage_err(a.cmd, "--type: unknown ternary format '%s' "
						"(i2_s, tq1_0, tq2_0, f16, bf16, f32)", type);
	}
	if (embd) {
		static const IrDtype ok[] = {IR_DT_F16, IR_DT_F32, IR_DT_BF16, IR_DT_Q8_0,
					     IR_DT_Q6_K};
		if (!parse_dtype(embd, ok, 5, &s.embd_type))
			return usage_err(a.cmd, "--embd-type: unknown type '%s' "
						"(f16, f32, bf16, q8_0, q6_k)", embd);
	}
	int64_t *fields[N_OV] = {&s.n_layer, &s.n_embd, &s.n_ff, &s.n_head, &s.n_head_kv,
				 &s.n_vocab, &s.n_ctx};
	for (int k = 0; k < N_OV; k++)
		if (ov[k] > 0)
			*fields[k] = ov[k];
	s.seed = (uint64_t)seed;
	s.proj_scales = scales;
	s.spm_vocab = spm;

	char vdir[4096];
	if (llama3) {
		const char *base = getenv("BITNETC_DATA_DIR");
		snprintf(vdir, sizeof vdir, "%s/llama3", base && *base ? base : BITNETC_DATA_DIR);
		if (!is_dir(vdir))
			return fail(EXIT_RUNTIME, "the Llama 3 vocabulary is not at %s (build the "
						  "bn_data target, or set BITNETC_DATA_DIR)", vdir);
		vocab_dir = vdir;
	}
	if (vocab_dir && !is_dir(vocab_dir))
		return fail(EXIT_RUNTIME, "%s: not a directory (--vocab-dir)", vocab_dir);
	s.vocab_dir = vocab_dir;

	if (bnm_synth_write(&s, out, &e) != BN_OK)
		return fail_err(out, &e);
	struct stat st;
	long long size = stat(out, &st) == 0 ? (long long)st.st_size : -1;
	printf("wrote %s: %s, %" PRId64 " layers, n_embd %" PRId64 ", n_ff %" PRId64
	       ", heads %" PRId64 "/%" PRId64 ", vocab %" PRId64 ", %s weights, seed %" PRId64
	       ", %.1f MiB\n",
	       out, s.arch ? s.arch : "bitnet-b1.58", s.n_layer, s.n_embd, s.n_ff, s.n_head,
	       s.n_head_kv, s.n_vocab, ir_dtype_name(s.wtype), seed, (double)size / 1048576.0);
	return finish(0);
}

/* ---- quantize ---------------------------------------------------------------------- */

static int cmd_quantize(int argc, char **argv)
{
	Args a = {.cmd = "quantize", .argc = argc, .argv = argv};
	const char *type = "i2_s";
	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r;
		if (is_help(argv[a.i]))
			return show_usage(usage_quantize);
		if ((r = opt(&a, NULL, "--type", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			type = v;
			continue;
		}
		if (!positional(&a, 2))
			return EXIT_USAGE;
	}
	if (a.n_pos < 2)
		return usage_err(a.cmd, "missing %s", a.n_pos ? "OUT.gguf" : "IN.gguf and OUT.gguf");
	static const IrDtype ok[] = {IR_DT_I2_S, IR_DT_TQ1_0, IR_DT_TQ2_0};
	IrDtype to;
	if (!parse_dtype(type, ok, 3, &to))
		return usage_err(a.cmd, "--type: unknown ternary format '%s' (i2_s, tq1_0, tq2_0)",
				 type);
	const char *in = a.pos[0], *out = a.pos[1];
	if (bnm_same_file(in, out))
		return usage_err(a.cmd, "%s is the same file as %s: write to another file", out, in);

	BnErr e = {0};
	GgufFile *f = gguf_open(in, &e);
	if (!f)
		return fail_err(in, &e);
	BnmQuantStats st;
	int rc = bnm_quantize(f, out, to, &st, &e);
	gguf_close(f);
	if (rc)
		return fail_err(in, &e);
	printf("wrote %s: %d projection weights as %s (%d were float, %d took the absmean rule), "
	       "%d tensors copied\n",
	       out, st.n_proj, ir_dtype_name(to), st.n_float, st.n_absmean, st.n_copied);
	return finish(0);
}

/* ---- version, targets, help ------------------------------------------------------ */

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

static int cmd_version(int argc, char **argv)
{
	int rc;
	if (!no_args("version", usage_version, argc, argv, &rc))
		return rc;
	CgCudaInfo ci;
	CgCpuFeatures cf;
	char feats[256];
	cg_cuda_probe(&ci);
	cg_cpu_detect(&cf);
	cg_cpu_features_str(&cf, feats, sizeof feats);
	printf("bitnetc %s\n", BITNETC_VERSION);
	printf("LLVM %u.%u.%u, NVPTX backend: %s\n", ci.llvm_major, ci.llvm_minor, ci.llvm_patch,
	       ci.nvptx ? "yes" : ci.nvptx_note);
	printf("ptxas: %s\n", ci.ptxas[0] ? ci.ptxas : "not found");
	printf("host: %s, CPU features: %s\n", cg_cpu_arch(), feats);
	const char *mask;
	if (!rt_cpu_mask(&mask, feats, sizeof feats) && mask)
		printf("host features masked by %s=%s\n", RT_CPU_MASK_ENV, mask);
	char archs[256];
	archs_list(archs, sizeof archs);
	printf("model architectures: %s\n", archs);
	return finish(0);
}

static int cmd_passes(int argc, char **argv)
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

static int cmd_targets(int argc, char **argv)
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
	/* a target bitnetc cannot build yet is not usable, whatever this host has */
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

static int cmd_help(int argc, char **argv)
{
	if (argc == 0) {
		print_help(stdout);
		return finish(0);
	}
	if (argc > 1)
		return usage_err("help", "unexpected argument '%s'", argv[1]);
	const Command *c = find_command(argv[0]);
	if (!c)
		return usage_err("help", "unknown command '%s'", argv[0]);
	return show_usage(c->usage);
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
