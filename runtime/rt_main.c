/* rt_main.c - main() of every generated program: CLI, weights, KV cache, prompt, generation, chat, bench, stats.
 *
 * Compiled into each built model (never into bitnetc itself). Exit codes: 0 ok, 1 usage
 * error, 2 runtime error; every error is one line "PROG: message" on stderr. */
/* POSIX (pread, mmap, sysconf, clock_gettime) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt.h"
#include "rt_batch.h"
#include "rt_tok.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RT_EXIT_USAGE 1
#define RT_EXIT_RUNTIME 2

static const char *rt_prog = "model";

typedef struct {
	const char *prompt;      /* -p: text (token ids when the program has no tokenizer) */
	const char *prompt_file; /* -f */
	const char *tokens;      /* --tokens */
	int64_t n_predict;       /* -n: tokens to generate (stops early at end of text) */
	int n_given;             /* -n was given (the default 128 shrinks to fit instead) */
	int threads;             /* -t */
	int64_t n_ctx;           /* -c; 0 = the model's, capped by memory */
	int64_t ubatch;          /* -ub: tokens per forward call; 0 = the model's max_batch */
	RtSamplerParams sp;
	int seed_given;
	int64_t repeat_last_n; /* -1 = n_ctx */
	int ignore_eos;
	const char *logits_out;
	const char *weights_file;
	int bench, json;
	int64_t pp, tg, reps;
	int info, help, version;
	int verify;                /* --verify: hash the whole payload */
	int no_special;            /* --no-parse-special: <|eot_id|> in a prompt is plain text */
	int show_ids;              /* --show-ids: print ids even with a tokenizer */
	int special;               /* -sp: print the text of control tokens */
	int cnv;                   /* -cnv: interactive chat */
	const char *system;        /* -sys */
	const char *chat_template; /* --chat-template: overrides the built-in one */
	int verbose;               /* -v */
} RtOpts;

/* Everything a run holds; rt_run_free releases what was set. */
typedef struct {
	RtWeights w;
	RtState st;
	float *logits; /* max_batch rows of n_vocab */
	int64_t ubatch; /* tokens per forward call, 1..max_batch */
	/* the sizes a prompt is split into (ascending): the model's batch templates below
	 * ubatch, then ubatch */
	int64_t *calls;
	int n_calls;
	FILE *lf;
	RtSampler *smp;
	int32_t *prompt;
	int64_t n_prompt;
	RtTok *tok;     /* the tokenizer in the payload, or NULL */
	int text_out;   /* print tokens as text (else ids) */
	RtDetok detok;  /* holds a UTF-8 character split across tokens */
	int64_t n_out;  /* tokens printed so far (for the ids' separators) */
	double t_start, t_load_ms;
} RtRun;

static int rt_complain(int rc, const char *fmt, ...) RT_PRINTF(2, 3);

static int rt_complain(int rc, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", rt_prog, msg);
	return rc;
}

#define rt_usage(...) rt_complain(RT_EXIT_USAGE, __VA_ARGS__)
#define rt_fail(...) rt_complain(RT_EXIT_RUNTIME, __VA_ARGS__)

static double rt_now(void)
{
	struct timespec ts;
#if defined(CLOCK_MONOTONIC)
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
		return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
	timespec_get(&ts, TIME_UTC);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double rt_mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

/* ---- command line ------------------------------------------------------ */

static void rt_help(void)
{
	printf("usage: %s [options]\n"
	       "\n"
	       "Runs %s (%s, built by bitnetc %s for %s). The weights travel inside this file.\n"
	       "\n"
	       "prompt (with a tokenizer, text: encoded as the model's own tokenizer does,\n"
	       "special-token text such as <|eot_id|> included, BOS added when the model says\n"
	       "so; an empty prompt or none is BOS alone. A program built without a tokenizer\n"
	       "takes token ids, \"1,2,3\" or \"1 2 3\", used as given):\n"
	       "  -p, --prompt TEXT       the prompt\n"
	       "  -f, --file FILE         read the prompt from FILE (any bytes but NUL, which\n"
	       "                          text cannot hold: refused, as in -cnv)\n"
	       "      --tokens 1,2,3      the prompt as token ids, used as given (no BOS); the\n"
	       "                          output is then ids too\n"
	       "      --no-parse-special  special-token text in the prompt stays plain text\n"
	       "\n"
	       "chat:\n"
	       "  -cnv, --conversation    interactive chat: one user turn per line on stdin\n"
	       "                          (/reset starts over, /exit or end of input quits); the\n"
	       "                          KV cache keeps the conversation, so a turn costs only\n"
	       "                          its own tokens; -n caps each reply (default: until\n"
	       "                          the end of the turn)\n"
	       "  -sys, --system-prompt T the system message of the conversation\n"
	       "      --chat-template N   bitnet or llama3 (default: the one built in)\n"
	       "\n"
	       "generation:\n"
	       "  -n, --n-predict N       tokens to generate (default 128, or fewer if the context\n"
	       "                          fills up; stops early at end of text; 0 = only\n"
	       "                          evaluate the prompt)\n"
	       "  -c, --ctx-size N        context (KV cache) size in tokens (default: the model's\n"
	       "                          training context, capped so the KV cache stays under\n"
	       "                          25%% of RAM)\n"
	       "  -t, --threads N         threads (default: online CPUs)\n"
	       "  -ub, --ubatch-size N    at most N prompt tokens per forward call (default and\n"
	       "                          maximum: the largest batch template the program was\n"
	       "                          built for, see --info; 1 feeds the prompt token by\n"
	       "                          token, the reference's step mode)\n"
	       "      --ignore-eos        keep going past the end-of-generation tokens\n"
	       "\n"
	       "sampling (llama.cpp's chain and defaults; order: repeat penalty -> top-k ->\n"
	       "top-p -> min-p -> temperature -> draw):\n"
	       "      --temp T            temperature (default 0.8; <= 0 = greedy)\n"
	       "      --top-k K           keep the K most likely (default 40; 0 = off)\n"
	       "      --top-p P           keep the smallest set with probability >= P\n"
	       "                          (default 0.95; 1 = off)\n"
	       "      --min-p P           drop tokens below P x the best one's probability\n"
	       "                          (default 0.05; 0 = off)\n"
	       "      --repeat-penalty R  penalize tokens seen in the window (default 1.0 = off)\n"
	       "      --repeat-last-n N   the penalty's window (default 64; 0 = off, -1 = context)\n"
	       "      --seed S            random seed (default -1 = pick one, printed to stderr)\n"
	       "\n"
	       "output:\n"
	       "  (stdout gets the generated text as it comes; ids, space-separated, without a\n"
	       "  tokenizer, for --tokens prompts and with --show-ids)\n"
	       "      --show-ids          print token ids instead of text\n"
	       "  -sp, --special          print the text of control tokens\n"
	       "  -v, --verbose           the prompt's ids and per-turn token counts on stderr\n"
	       "      --logits-out FILE   write float32 little-endian logits rows of n_vocab: one\n"
	       "                          per prompt token, then one per generated token (the\n"
	       "                          logits after feeding it)\n"
	       "\n"
	       "other modes:\n"
	       "      --bench             time prefill and decode; --pp N (default 128),\n"
	       "                          --tg M (default 128), --reps R (default 5), --json\n"
	       "      --info              what this program was compiled from, its tokenizer and\n"
	       "                          chat template\n"
	       "      --weights-file FILE take the weights from FILE instead of this executable\n"
	       "      --verify            read the whole weights payload and check its hash (a\n"
	       "                          normal start only checks the trailer): exit 0 and\n"
	       "                          \"weights OK\", or 2 if a byte changed\n"
	       "  -h, --help              this text\n"
	       "      --version           versions\n"
	       "\n"
	       "exit codes: 0 ok, 1 usage error, 2 runtime error\n",
	       rt_prog, rt_model.name, rt_model.arch, rt_model.version, rt_model.target);
}

static int rt_parse_i64(const char *flag, const char *s, int64_t lo, int64_t hi, const char *what,
			int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (end == s || *end || *s == ' ')
		return rt_usage("%s: \"%s\" is not an integer (expected %s)", flag, s, what);
	if (errno == ERANGE || v < lo || v > hi)
		return rt_usage("%s: %s is out of range (expected %s)", flag, s, what);
	*out = v;
	return 0;
}

static int rt_parse_int(const char *flag, const char *s, int64_t lo, int64_t hi, const char *what,
			int *out)
{
	int64_t v;
	int rc = rt_parse_i64(flag, s, lo, hi, what, &v);
	if (!rc)
		*out = (int)v;
	return rc;
}

static int rt_parse_f32(const char *flag, const char *s, double lo, double hi, const char *what,
			float *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || *s == ' ' || v != v)
		return rt_usage("%s: \"%s\" is not a number (expected %s)", flag, s, what);
	if (errno == ERANGE || v < lo || v > hi)
		return rt_usage("%s: %s is out of range (expected %s)", flag, s, what);
	*out = (float)v;
	return 0;
}

static int rt_parse_seed(const char *s, RtOpts *o)
{
	if (strcmp(s, "-1") == 0) {
		o->seed_given = 0;
		return 0;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || *end || *s < '0' || *s > '9' || errno == ERANGE)
		return rt_usage("--seed: \"%s\" is not a seed (expected -1 = random, or 0 to %llu)",
				s, (unsigned long long)UINT64_MAX);
	o->sp.seed = v;
	o->seed_given = 1;
	return 0;
}

static int rt_default_threads(void)
{
#if defined(_SC_NPROCESSORS_ONLN)
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n > 0)
		return n > 512 ? 512 : (int)n;
#endif
	return 1;
}

/* The flags that take a value, one handler each; returns 0 or an exit code. */
static int rt_parse_value(const char *a, const char *v, RtOpts *o)
{
	if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
		o->prompt = v;
	else if (!strcmp(a, "-f") || !strcmp(a, "--file"))
		o->prompt_file = v;
	else if (!strcmp(a, "--tokens"))
		o->tokens = v;
	else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
		o->n_given = 1;
		return rt_parse_i64(a, v, 0, INT32_MAX, "a count >= 0", &o->n_predict);
	}
	else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
		return rt_parse_int(a, v, 1, 512, "1 to 512 threads", &o->threads);
	else if (!strcmp(a, "-ub") || !strcmp(a, "--ubatch-size"))
		return rt_parse_i64(a, v, 1, INT32_MAX, "a count >= 1", &o->ubatch);
	else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size"))
		return rt_parse_i64(a, v, 1, INT32_MAX, "a context size >= 1", &o->n_ctx);
	else if (!strcmp(a, "--temp"))
		return rt_parse_f32(a, v, -1e30, 1e30, "a temperature; <= 0 = greedy", &o->sp.temp);
	else if (!strcmp(a, "--top-k"))
		return rt_parse_int(a, v, 0, INT32_MAX, "a count >= 0; 0 = off", &o->sp.top_k);
	else if (!strcmp(a, "--top-p"))
		return rt_parse_f32(a, v, 0, 1, "0 to 1; 1 = off", &o->sp.top_p);
	else if (!strcmp(a, "--min-p"))
		return rt_parse_f32(a, v, 0, 1, "0 to 1; 0 = off", &o->sp.min_p);
	else if (!strcmp(a, "--repeat-penalty"))
		return rt_parse_f32(a, v, 1e-6, 1e30, "a penalty > 0; 1 = off",
				    &o->sp.repeat_penalty);
	else if (!strcmp(a, "--repeat-last-n"))
		return rt_parse_i64(a, v, -1, INT32_MAX, "-1 (the context), 0 (off) or a count",
				    &o->repeat_last_n);
	else if (!strcmp(a, "--seed"))
		return rt_parse_seed(v, o);
	else if (!strcmp(a, "--logits-out"))
		o->logits_out = v;
	else if (!strcmp(a, "--weights-file"))
		o->weights_file = v;
	else if (!strcmp(a, "--pp"))
		return rt_parse_i64(a, v, 0, INT32_MAX, "a prompt length >= 0", &o->pp);
	else if (!strcmp(a, "--tg"))
		return rt_parse_i64(a, v, 0, INT32_MAX, "a token count >= 0", &o->tg);
	else if (!strcmp(a, "--reps"))
		return rt_parse_i64(a, v, 1, 100000, "1 or more repetitions", &o->reps);
	else if (!strcmp(a, "-sys") || !strcmp(a, "--system-prompt"))
		o->system = v;
	else if (!strcmp(a, "--chat-template")) {
		if (rt_chat_from_name(v) == RT_CHAT_NONE)
			return rt_usage("--chat-template: unknown template \"%s\" (bitnet or llama3)",
					v);
		o->chat_template = v;
	} else
		return -1; /* not a flag with a value */
	return 0;
}

static int rt_parse_switch(const char *a, RtOpts *o)
{
	if (!strcmp(a, "-h") || !strcmp(a, "--help"))
		o->help = 1;
	else if (!strcmp(a, "--version"))
		o->version = 1;
	else if (!strcmp(a, "--info"))
		o->info = 1;
	else if (!strcmp(a, "--verify"))
		o->verify = 1;
	else if (!strcmp(a, "--bench"))
		o->bench = 1;
	else if (!strcmp(a, "--json"))
		o->json = 1;
	else if (!strcmp(a, "--ignore-eos"))
		o->ignore_eos = 1;
	else if (!strcmp(a, "--no-parse-special") || !strcmp(a, "--no-special"))
		o->no_special = 1;
	else if (!strcmp(a, "--show-ids"))
		o->show_ids = 1;
	else if (!strcmp(a, "-sp") || !strcmp(a, "--special"))
		o->special = 1;
	else if (!strcmp(a, "-cnv") || !strcmp(a, "--conversation") || !strcmp(a, "--chat"))
		o->cnv = 1;
	else if (!strcmp(a, "-v") || !strcmp(a, "--verbose"))
		o->verbose = 1;
	else
		return -1;
	return 0;
}

static const char *const rt_value_flags[] = {
	"-p", "--prompt", "-f", "--file", "--tokens", "-n", "--n-predict", "-t", "--threads",
	"-c", "--ctx-size", "-ub", "--ubatch-size", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
	"--repeat-last-n", "--seed", "--logits-out", "--weights-file", "--pp", "--tg", "--reps",
	"-sys", "--system-prompt", "--chat-template",
};

static int rt_takes_value(const char *a)
{
	for (size_t i = 0; i < sizeof rt_value_flags / sizeof *rt_value_flags; i++)
		if (!strcmp(a, rt_value_flags[i]))
			return 1;
	return 0;
}

static int rt_parse_args(int argc, char **argv, RtOpts *o)
{
	memset(o, 0, sizeof *o);
	o->n_predict = 128;
	o->threads = rt_default_threads();
	o->sp = rt_sampler_defaults();
	o->repeat_last_n = o->sp.repeat_last_n;
	o->pp = 128;
	o->tg = 128;
	o->reps = 5;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (rt_takes_value(a)) {
			if (i + 1 >= argc)
				return rt_usage("%s needs a value (see --help)", a);
			int rc = rt_parse_value(a, argv[++i], o);
			if (rc)
				return rc;
		} else if (rt_parse_switch(a, o) != 0) {
			if (a[0] == '-')
				return rt_usage("unknown flag %s (see --help)", a);
			return rt_usage("unexpected argument \"%s\" (prompts go after -p; see --help)",
					a);
		}
	}
	int sources = !!o->prompt + !!o->prompt_file + !!o->tokens;
	if (sources > 1)
		return rt_usage("give only one of -p, -f and --tokens");
	if (o->cnv && sources)
		return rt_usage("-cnv reads the conversation from stdin: give a system prompt with "
				"-sys, not -p, -f or --tokens");
	if (o->cnv && (o->logits_out || o->bench))
		return rt_usage("-cnv does not go with %s", o->bench ? "--bench" : "--logits-out");
	if (o->bench && o->pp + o->tg == 0)
		return rt_usage("--bench: --pp and --tg are both 0: nothing to time");
	return 0;
}

/* ---- the prompt -------------------------------------------------------- */

/* Token ids from prompt text: "1,2,3" or whitespace-separated ids. text_src says whether the
 * source could have been text (-p, -f): then a letter means a program without a tokenizer
 * was given text; otherwise (--tokens, or digits and signs) the list parser names the
 * item that is wrong. */
static int rt_prompt_ids(const char *src, int text_src, const char *text, int32_t **ids,
			 int64_t *n)
{
	int commas = 0, numeric = 1;
	for (const char *c = text; *c; c++) {
		if (*c == ',')
			commas = 1;
		else if (!(*c >= '0' && *c <= '9') && !strchr(" \t\r\n+-", *c))
			numeric = 0;
	}
	if (text_src && !numeric)
		return rt_usage("%s: this program was built without a tokenizer: give the prompt "
				"as token ids (\"1,2,3\" or \"1 2 3\"), not text",
				src);
	/* Whitespace-separated: join the items with commas for the shared list parser. */
	char *buf = malloc(strlen(text) + 1);
	if (!buf)
		return rt_fail("out of memory");
	if (commas) {
		strcpy(buf, text);
	} else {
		size_t len = 0;
		for (const char *c = text; *c;) {
			while (*c && strchr(" \t\r\n", *c))
				c++;
			if (!*c)
				break;
			if (len)
				buf[len++] = ',';
			while (*c && !strchr(" \t\r\n", *c))
				buf[len++] = *c++;
		}
		buf[len] = 0;
	}
	int32_t *out;
	int cnt;
	RtErr e = {0};
	int rc = rt_parse_tokens(buf, &out, &cnt, &e);
	free(buf);
	if (rc)
		return rt_usage("%s: %s (expected token ids: \"1,2,3\" or \"1 2 3\", each 0 to "
				"%lld)",
				src, e.msg, (long long)rt_model.n_vocab - 1);
	*ids = out;
	*n = cnt;
	return 0;
}

/* The whole file (any bytes; *len excludes the NUL added after them). */
static int rt_read_text(const char *path, char **out, size_t *out_len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return rt_usage("-f %s: cannot read: %s", path, strerror(errno));
	size_t cap = 4096, len = 0, got;
	char *buf = malloc(cap);
	while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += got;
		if (len + 1 == cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	int bad = ferror(f);
	fclose(f);
	if (!buf)
		return rt_fail("-f %s: out of memory", path);
	if (bad) {
		free(buf);
		return rt_usage("-f %s: cannot read: read error", path);
	}
	buf[len] = 0;
	*out = buf;
	*out_len = len;
	return 0;
}

/* Text through the tokenizer: special-token text parsed unless --no-parse-special, BOS
 * when the model adds one (so an empty text is BOS alone). */
static int rt_prompt_encode(const RtOpts *o, RtRun *run, const char *src, const char *text,
			    size_t len)
{
	int flags = o->no_special ? 0 : RT_TOK_PARSE_SPECIAL;
	if (rt_tok_add_bos(run->tok))
		flags |= RT_TOK_ADD_BOS;
	int32_t *ids = NULL;
	int n = 0;
	RtErr e = {0};
	if (rt_tok_encode(run->tok, text, len, flags, &ids, &n, &e))
		return rt_fail("%s: %s", src, e.msg);
	if (n == 0) {
		free(ids);
		return rt_usage("%s: the prompt is empty and this model adds no BOS token: give "
				"some text",
				src);
	}
	run->prompt = ids;
	run->n_prompt = n;
	return 0;
}

static int rt_prompt_file(const RtOpts *o, RtRun *run)
{
	char *text = NULL, src[600];
	size_t len = 0;
	int rc = rt_read_text(o->prompt_file, &text, &len);
	if (rc)
		return rc;
	snprintf(src, sizeof src, "-f %s", o->prompt_file);
	const char *nul = memchr(text, 0, len);
	if (run->tok && nul)
		rc = rt_usage("%s: byte %lld is a NUL: a text prompt cannot hold NUL bytes (-cnv "
			      "refuses them too)",
			      src, (long long)(nul - text));
	else if (run->tok)
		rc = rt_prompt_encode(o, run, src, text, len);
	else if (strlen(text) != len)
		rc = rt_usage("%s: this program has no tokenizer: the file must hold token ids "
			      "(\"1,2,3\" or \"1 2 3\"), not binary data",
			      src);
	else
		rc = rt_prompt_ids(src, 1, text, &run->prompt, &run->n_prompt);
	free(text);
	return rc;
}

/* Fills run->prompt from -p / -f / --tokens, or BOS when none is given. */
static int rt_prompt_load(const RtOpts *o, RtRun *run)
{
	int rc = 0;
	if (o->tokens) {
		rc = rt_prompt_ids("--tokens", 0, o->tokens, &run->prompt, &run->n_prompt);
	} else if (o->prompt && run->tok) {
		rc = rt_prompt_encode(o, run, "-p", o->prompt, strlen(o->prompt));
	} else if (o->prompt) {
		rc = rt_prompt_ids("-p", 1, o->prompt, &run->prompt, &run->n_prompt);
	} else if (o->prompt_file) {
		rc = rt_prompt_file(o, run);
	} else if (rt_model.bos >= 0) {
		run->prompt = malloc(sizeof *run->prompt);
		if (!run->prompt)
			return rt_fail("out of memory");
		run->prompt[0] = (int32_t)rt_model.bos;
		run->n_prompt = 1;
	} else {
		return rt_usage("no prompt: give one with -p or --tokens (this model has no BOS "
				"token to start from)");
	}
	if (rc)
		return rc;
	for (int64_t i = 0; i < run->n_prompt; i++)
		if (run->prompt[i] >= rt_model.n_vocab)
			return rt_usage("prompt token %lld (position %lld) is out of range: the "
					"vocabulary has %lld tokens",
					(long long)run->prompt[i], (long long)i,
					(long long)rt_model.n_vocab);
	/* Text in, text out; ids in (or no tokenizer), ids out. */
	run->text_out = run->tok && !o->tokens && !o->show_ids;
	if (o->verbose) {
		fprintf(stderr, "%s: prompt: %lld tokens:", rt_prog, (long long)run->n_prompt);
		for (int64_t i = 0; i < run->n_prompt; i++)
			fprintf(stderr, "%s%d", i ? "," : " ", (int)run->prompt[i]);
		fprintf(stderr, "\n");
	}
	return 0;
}

/* ---- context size ------------------------------------------------------ */

static uint64_t rt_phys_ram(void)
{
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	if (pages > 0 && psz > 0)
		return (uint64_t)pages * (uint64_t)psz;
#endif
	return 0;
}

/* The model's training context, capped so that the KV cache stays under a quarter of RAM
 * (a long-context model would otherwise ask for more cache than the machine has). */
static int64_t rt_default_ctx(void)
{
	int64_t want = rt_model.n_ctx_train > 0 ? rt_model.n_ctx_train : 4096;
	uint64_t ram = rt_phys_ram(), budget = ram / 4;
	if (!ram || rt_model.kv_bytes(want, 1) <= budget)
		return want;
	int64_t lo = 1, hi = want; /* kv_bytes grows with n_ctx: largest lo that fits */
	while (lo < hi) {
		int64_t mid = lo + (hi - lo + 1) / 2;
		if (rt_model.kv_bytes(mid, 1) <= budget)
			lo = mid;
		else
			hi = mid - 1;
	}
	fprintf(stderr,
		"%s: context capped at %lld tokens (the model was trained on %lld) so that the "
		"KV cache (%.1f MiB) stays under 25%% of RAM (%.0f MiB); -c sets it\n",
		rt_prog, (long long)lo, (long long)want, rt_mib(rt_model.kv_bytes(lo, 1)), rt_mib(ram));
	return lo;
}

/* ---- setting up and tearing down --------------------------------------- */

/* The tokenizer blob inside the mapped payload; NULL (and no error) when there is none. */
static RtTok *rt_tok_from_payload(const uint8_t *w, RtErr *e)
{
	uint64_t off = rt_model.tok_offset, n = rt_model.tok_bytes;
	if (!n)
		return NULL;
	if (off > rt_model.weights_bytes || n > rt_model.weights_bytes - off || (off & 7)) {
		rt_err(e, RT_EINVAL, "the tokenizer (%llu bytes at %llu) lies outside the %llu-byte "
		       "weights payload", (unsigned long long)n, (unsigned long long)off,
		       (unsigned long long)rt_model.weights_bytes);
		return NULL;
	}
	return rt_tok_open(w + off, (size_t)n, e);
}

/* Maps the weights and opens the tokenizer in them (once). */
static int rt_run_map(const RtOpts *o, const char *argv0, RtRun *run)
{
	RtErr e = {0};
	if (run->w.data)
		return 0;
	if (rt_weights_map(&run->w, o->weights_file, argv0, rt_model.weights_bytes,
			   rt_model.weights_hash, &e))
		return rt_fail("%s", e.msg);
	run->st.w = run->w.data;
	if (!(run->tok = rt_tok_from_payload(run->w.data, &e)) && rt_model.tok_bytes)
		return rt_fail("the tokenizer in %s is unusable: %s", run->w.path, e.msg);
	return 0;
}

static int rt_run_setup(const RtOpts *o, const char *argv0, int64_t n_ctx, RtRun *run)
{
	int rc = rt_run_map(o, argv0, run);
	if (rc)
		return rc;
	run->st.n_ctx = n_ctx;
	run->ubatch = o->ubatch && o->ubatch < rt_model.max_batch ? o->ubatch : rt_model.max_batch;
	run->calls = malloc(((size_t)rt_model.n_batch_sizes + 1) * sizeof *run->calls);
	if (!run->calls)
		return rt_fail("out of memory");
	run->n_calls = 0;
	for (int i = 0; i < rt_model.n_batch_sizes; i++)
		if (rt_model.batch_sizes[i] < run->ubatch)
			run->calls[run->n_calls++] = rt_model.batch_sizes[i];
	run->calls[run->n_calls++] = run->ubatch;
	uint64_t kvb = rt_model.kv_bytes(n_ctx, 1);
	/* calloc of a large block is fresh zero pages from the OS: nothing is touched yet. */
	run->st.kv = kvb > SIZE_MAX ? NULL : calloc(1, kvb ? (size_t)kvb : 1);
	if (!run->st.kv)
		return rt_fail("cannot allocate the KV cache: %.1f MiB for %lld tokens (try a "
			       "smaller -c)",
			       rt_mib(kvb), (long long)n_ctx);
	uint64_t sb = (rt_model.scratch_bytes + 63) / 64 * 64;
	run->st.scratch = sb > SIZE_MAX ? NULL : aligned_alloc(64, sb ? (size_t)sb : 64);
	if (!run->st.scratch)
		return rt_fail("cannot allocate %.1f MiB of activation scratch", rt_mib(sb));
	size_t rows = (size_t)rt_model.max_batch * (size_t)rt_model.n_vocab;
	run->logits = malloc(rows * sizeof *run->logits);
	if (!run->logits)
		return rt_fail("cannot allocate logits (%.1f MiB)", rt_mib(rows * sizeof(float)));
	run->st.pool = rt_pool_new(o->threads);
	if (!run->st.pool)
		return rt_fail("cannot start %d threads", o->threads);
	return 0;
}

static void rt_run_free(RtRun *run)
{
	rt_pool_free(run->st.pool);
	free(run->calls);
	free(run->logits);
	free(run->st.scratch);
	free(run->st.kv);
	rt_weights_unmap(&run->w);
	rt_sampler_free(run->smp);
	rt_tok_free(run->tok);
	free(run->prompt);
	if (run->lf)
		fclose(run->lf);
}

/* ---- evaluation -------------------------------------------------------- */

/* The first logits row of rows (n_vocab floats each) holding a NaN or an infinity; -1 if
 * none. */
static int64_t rt_nonfinite_row(const float *x, int64_t rows)
{
	int64_t nv = rt_model.n_vocab;
	for (int64_t r = 0; r < rows; r++) {
		/* the exponent bits all set (NaN, both infinities), as the model's check: an
		 * integer test that vectorizes and that no float option (-ffast-math) folds away */
		uint32_t bad = 0;
		for (int64_t i = 0; i < nv; i++) {
			uint32_t u;
			memcpy(&u, &x[r * nv + i], sizeof u);
			bad |= (u & 0x7f800000u) == 0x7f800000u;
		}
		if (bad)
			return r;
	}
	return -1;
}

/* One forward call. An activation (the model checks the residual stream after the
 * embedding and each layer) or a logit that is NaN or infinite stops the run: the weights
 * are broken or overflow float, and every token after it would be noise. */
static int rt_forward(RtRun *run, const int32_t *toks, int n, int64_t pos, float *logits,
		      int last_only)
{
	RtState *st = &run->st;
	st->bad_token = 0;
	st->bad_layer = INT_MIN; /* the model did not say */
	int s = rt_model.forward(st, toks, n, pos, logits, last_only);
	if (s == RT_FORWARD_NONFINITE) {
		int t = st->bad_token >= 0 && st->bad_token < n ? st->bad_token : 0;
		if (st->bad_layer == INT_MIN)
			return rt_fail("activations went NaN or Inf at position %lld (token %d): the "
				       "weights overflow float; stopping",
				       (long long)(pos + t), (int)toks[t]);
		if (st->bad_layer < 0)
			return rt_fail("the embedding row of token %d (position %lld) is not finite "
				       "(NaN or Inf): the model's weights are broken; stopping",
				       (int)toks[t], (long long)(pos + t));
		return rt_fail("activations went NaN or Inf in layer %d at position %lld (token "
			       "%d): the weights overflow float there; stopping",
			       st->bad_layer, (long long)(pos + t), (int)toks[t]);
	}
	if (s == RT_FORWARD_CPU)
		return rt_fail("the OS refused the AMX tile state the model's kernels need "
			       "(arch_prctl ARCH_REQ_XCOMP_PERM; Linux 5.16 or newer)");
	if (s != 0)
		return rt_fail("the model's forward call failed (status %d) at positions "
			       "%lld..%lld",
			       s, (long long)pos, (long long)(pos + n - 1));
	int64_t rows = !logits ? 0 : last_only ? 1 : n;
	int64_t r = rt_nonfinite_row(logits, rows);
	if (r >= 0) {
		int t = last_only ? n - 1 : (int)r;
		return rt_fail("the logits of position %lld (token %d) are NaN or Inf: the "
			       "model's weights overflow float; stopping",
			       (long long)(pos + t), (int)toks[t]);
	}
	return 0;
}

/* The size of the next forward call for rem tokens, given the call sizes (ascending, the
 * largest is the cap): greedily the largest size that fits, as bitnet.cpp splits a batch
 * over its kernel templates, so most calls run a template at its full size. A rest below
 * every multi-token size goes in one call (a partial call of the smallest template), never
 * as a trail of one-token calls, and no call leaves exactly one token for the last: one
 * token is the reference's step mode, which rounds differently (sizes up to 32 and 33
 * tokens: 31 + 2; 9 tokens over 8 and 32: 7 + 2). */
static int rt_chunk(int64_t rem, const int64_t *calls, int n_calls)
{
	int64_t cap = calls[n_calls - 1], m = 1;
	for (int i = 0; i < n_calls; i++)
		if (calls[i] <= rem)
			m = calls[i];
	if (m == 1)
		m = rem < cap ? rem : cap;
	/* two tokens left after a call of two: one call of three if the cap allows it */
	if (rem - m == 1 && m > 1)
		m = m > 2 ? m - 1 : m + 1 <= cap ? m + 1 : 1;
	return (int)m;
}

/* Evaluates toks[0..n) at positions pos0.. in chunks; rows go to lf when it is open, the
 * last row stays in run->logits at *last. Without lf only the final call computes logits,
 * and only its last row (last_only: the head runs for one row). Returns seconds spent in
 * forward calls. */
static int rt_eval_at(RtRun *run, const char *lpath, const int32_t *toks, int64_t n, int64_t pos0,
		      float **last, double *secs)
{
	int64_t nv = rt_model.n_vocab;
	double t = rt_now();
	for (int64_t off = 0; off < n;) {
		int m = rt_chunk(n - off, run->calls, run->n_calls);
		int final = off + m == n, all_rows = run->lf != NULL;
		float *out = all_rows || final ? run->logits : NULL;
		if (rt_forward(run, toks + off, m, pos0 + off, out, !all_rows))
			return RT_EXIT_RUNTIME;
		RtErr e = {0};
		if (all_rows && rt_write_f32(run->lf, lpath, run->logits, (size_t)m * (size_t)nv, &e))
			return rt_fail("%s", e.msg);
		if (final)
			*last = run->logits + (all_rows ? (size_t)(m - 1) * (size_t)nv : 0);
		off += m;
	}
	*secs = rt_now() - t;
	return 0;
}

static int rt_eval_prompt(RtRun *run, const char *lpath, const int32_t *toks, int64_t n,
			  float **last, double *secs)
{
	return rt_eval_at(run, lpath, toks, n, 0, last, secs);
}

/* ---- output ------------------------------------------------------------ */

/* stdout after a write: 0, or an error (a full disk, a closed pipe) that stops the run,
 * since what follows would be lost too. */
static int rt_stdout_ok(void)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		return rt_fail("cannot write to standard output: %s", strerror(errno));
	return 0;
}

/* Prints a generated token: its text (a UTF-8 character split across tokens waits for
 * its end) or its id. 0, or an exit code when the output cannot be written. */
static int rt_put_token(const RtOpts *o, RtRun *run, int32_t tok)
{
	if (!run->text_out) {
		printf("%s%d", run->n_out++ ? " " : "", (int)tok);
		return rt_stdout_ok();
	}
	char small[256], *piece = small, *out = NULL;
	int n = rt_tok_piece(run->tok, tok, o->special != 0, small, (int)sizeof small);
	if (n > (int)sizeof small && (piece = malloc((size_t)n)) != NULL)
		n = rt_tok_piece(run->tok, tok, o->special != 0, piece, n);
	if (n > 0 && piece && (out = malloc((size_t)n + 8)) != NULL) {
		size_t k = rt_detok_push(&run->detok, piece, (size_t)n, out);
		fwrite(out, 1, k, stdout);
	}
	int oom = n > 0 && (!piece || !out);
	free(out);
	if (piece != small)
		free(piece);
	run->n_out++;
	if (oom)
		return rt_fail("out of memory for the text of token %d", (int)tok);
	return rt_stdout_ok();
}

/* Ends the output: what the detokenizer held back, then a newline. */
static int rt_put_end(RtRun *run)
{
	char out[8];
	size_t k = rt_detok_flush(&run->detok, out);
	fwrite(out, 1, k, stdout);
	printf("\n");
	run->n_out = 0;
	return rt_stdout_ok();
}

/* Whether generation stops at tok: any end-of-generation id of the tokenizer, else EOS. */
static int rt_is_stop(const RtRun *run, int32_t tok)
{
	if (run->tok)
		return rt_tok_is_eog(run->tok, tok);
	return tok == rt_model.eos;
}

static void rt_print_stats(const RtRun *run, double pp_s, int64_t pp_n, double tg_s, int64_t tg_n)
{
	fprintf(stderr, "\n%s: load time        = %10.2f ms\n", rt_prog, run->t_load_ms);
	fprintf(stderr,
		"%s: prompt eval time = %10.2f ms / %5lld tokens (%8.2f ms per token, %8.2f tokens "
		"per second)\n",
		rt_prog, pp_s * 1e3, (long long)pp_n, pp_n ? pp_s * 1e3 / (double)pp_n : 0.0,
		pp_s > 0 ? (double)pp_n / pp_s : 0.0);
	fprintf(stderr,
		"%s: eval time        = %10.2f ms / %5lld runs   (%8.2f ms per token, %8.2f tokens "
		"per second)\n",
		rt_prog, tg_s * 1e3, (long long)tg_n, tg_n ? tg_s * 1e3 / (double)tg_n : 0.0,
		tg_s > 0 ? (double)tg_n / tg_s : 0.0);
	fprintf(stderr, "%s: total time       = %10.2f ms\n", rt_prog,
		(rt_now() - run->t_start) * 1e3);
}

/* The sampler of a run, its settings reported on stderr. */
static int rt_sampler_setup(const RtOpts *o, RtRun *run)
{
	int64_t nv = rt_model.n_vocab, n_ctx = run->st.n_ctx;
	RtSamplerParams sp = o->sp;
	sp.repeat_last_n = (int32_t)(o->repeat_last_n < 0 || o->repeat_last_n > n_ctx
					     ? n_ctx : o->repeat_last_n);
	if (!o->seed_given)
		sp.seed = rt_seed_random();
	if (sp.temp > 0)
		fprintf(stderr,
			"%s: sampling: seed %llu, temp %.2f, top_k %d, top_p %.2f, min_p %.2f, "
			"repeat_penalty %.2f (last %d)\n",
			rt_prog, (unsigned long long)sp.seed, sp.temp, sp.top_k, sp.top_p, sp.min_p,
			sp.repeat_penalty, sp.repeat_last_n);
	else
		fprintf(stderr, "%s: sampling: greedy (temp <= 0), repeat_penalty %.2f (last %d)\n",
			rt_prog, sp.repeat_penalty, sp.repeat_last_n);
	/* Embedding rows past the tokenizer's last token (a padded vocabulary) have no text:
	 * the sampler sees only the rows that do, so they are never picked. */
	if (run->tok && rt_tok_n_vocab(run->tok) > 0 && rt_tok_n_vocab(run->tok) < nv)
		nv = rt_tok_n_vocab(run->tok);
	if (!(run->smp = rt_sampler_new(&sp, nv)))
		return rt_fail("out of memory for the sampler");
	return 0;
}

static int rt_generate(const RtOpts *o, RtRun *run)
{
	RtErr e = {0};
	int64_t nv = rt_model.n_vocab, n_ctx = run->st.n_ctx;
	int rc = rt_sampler_setup(o, run);
	if (rc)
		return rc;
	for (int64_t i = 0; i < run->n_prompt; i++)
		rt_sampler_accept(run->smp, run->prompt[i]);

	float *last = NULL;
	double pp_s = 0, tg_s = 0;
	rc = rt_eval_prompt(run, o->logits_out, run->prompt, run->n_prompt, &last, &pp_s);
	if (rc)
		return rc;
	int64_t pos = run->n_prompt, runs = 0;
	for (int64_t gen = 0; gen < o->n_predict; gen++) {
		if (pos >= n_ctx)
			break; /* the context is full */
		int32_t tok = rt_sampler_sample(run->smp, last);
		if (!o->ignore_eos && rt_is_stop(run, tok))
			break;
		if ((rc = rt_put_token(o, run, tok)))
			return rc;
		rt_sampler_accept(run->smp, tok);
		/* The last token needs feeding only for its logits row. */
		if (!run->lf && gen + 1 == o->n_predict)
			break;
		double t = rt_now();
		if ((rc = rt_forward(run, &tok, 1, pos, run->logits, 1))) {
			rt_put_end(run); /* what was printed keeps its line */
			return rc;
		}
		tg_s += rt_now() - t;
		runs++;
		pos++;
		last = run->logits;
		if (run->lf && rt_write_f32(run->lf, o->logits_out, last, (size_t)nv, &e))
			return rt_fail("%s", e.msg);
	}
	if ((rc = rt_put_end(run)))
		return rc;
	if (run->lf) {
		FILE *f = run->lf;
		run->lf = NULL;
		if (rt_f32_close(f, o->logits_out, &e))
			return rt_fail("%s", e.msg);
	}
	rt_print_stats(run, pp_s, run->n_prompt, tg_s, runs);
	return 0;
}

/* ---- -cnv: interactive chat -------------------------------------------- */

/* One conversation. The KV cache holds positions [0, pos); a turn evaluates only its own
 * tokens there. A reply ends at an end-of-generation token that is not fed back, or at
 * -n: either way the template's end of message goes in front of the next turn. */
typedef struct {
	RtChatTemplate tmpl;
	int64_t pos;
	int started;    /* BOS and the system message are in the cache */
	int reply_open; /* a reply is in the cache without its end of message */
	int turn;
	double pp_s, tg_s;
	int64_t pp_n, tg_n;
} RtChat;

/* The text that closes an assistant message ("<|eot_id|>" in both known formats), found
 * by rendering one around a marker so that it follows the template; malloc'd. */
static char *rt_chat_closing(RtChatTemplate t)
{
	static const char mark[] = "\x01reply\x01";
	RtChatMsg m = {"assistant", mark};
	char *r = rt_chat_render(t, &m, 1, false), *c = NULL;
	char *at = r ? strstr(r, mark) : NULL;
	if (at) {
		at += strlen(mark);
		if ((c = malloc(strlen(at) + 1)) != NULL)
			strcpy(c, at);
	}
	free(r);
	return c;
}

/* A user turn as tokens: the open reply's end of message, at the start BOS and the system
 * message, the user message, the assistant prefix. */
static int rt_chat_tokens(const RtOpts *o, RtRun *run, const RtChat *c, const char *user,
			  int32_t **ids, int *n)
{
	RtChatMsg msgs[2];
	int k = 0;
	if (!c->started && o->system && *o->system)
		msgs[k++] = (RtChatMsg){"system", o->system};
	msgs[k++] = (RtChatMsg){"user", user};
	char *text = rt_chat_render(c->tmpl, msgs, k, true);
	char *close = c->reply_open ? rt_chat_closing(c->tmpl) : NULL;
	char *all = text ? malloc(strlen(text) + (close ? strlen(close) : 0) + 1) : NULL;
	int rc = 0;
	if (!all || (c->reply_open && !close)) {
		rc = rt_fail("out of memory for the chat turn");
	} else {
		strcpy(all, close ? close : "");
		strcat(all, text);
		int flags = RT_TOK_PARSE_SPECIAL;
		if (!c->started && rt_tok_add_bos(run->tok))
			flags |= RT_TOK_ADD_BOS;
		RtErr e = {0};
		if (rt_tok_encode(run->tok, all, strlen(all), flags, ids, n, &e))
			rc = rt_fail("%s", e.msg);
	}
	free(all);
	free(close);
	free(text);
	return rc;
}

static void rt_chat_reset(RtRun *run, RtChat *c)
{
	c->pos = 0;
	c->started = c->reply_open = 0;
	rt_sampler_reset(run->smp);
}

/* Evaluates the turn at the end of the cache (starting over when it does not fit). */
static int rt_chat_feed(const RtOpts *o, RtRun *run, RtChat *c, const char *user, float **last)
{
	int32_t *ids = NULL;
	int n = 0, rc = rt_chat_tokens(o, run, c, user, &ids, &n);
	int64_t n_ctx = run->st.n_ctx;
	if (!rc && c->pos + n + 1 > n_ctx && c->started) {
		fprintf(stderr, "%s: the context (%lld tokens) is full: starting a new conversation\n",
			rt_prog, (long long)n_ctx);
		rt_chat_reset(run, c);
		free(ids);
		ids = NULL;
		rc = rt_chat_tokens(o, run, c, user, &ids, &n);
	}
	if (!rc && n + 1 > n_ctx) {
		fprintf(stderr, "%s: this message (%d tokens) does not fit the context of %lld "
			"tokens (-c): skipped\n", rt_prog, n, (long long)n_ctx);
		rc = -1;
	}
	if (rc) {
		free(ids);
		return rc;
	}
	for (int i = 0; i < n; i++)
		rt_sampler_accept(run->smp, ids[i]);
	double secs = 0;
	rc = rt_eval_at(run, NULL, ids, n, c->pos, last, &secs);
	free(ids);
	if (o->verbose)
		fprintf(stderr, "%s: turn %d: evaluated %d tokens at positions %lld..%lld\n", rt_prog,
			c->turn + 1, n, (long long)c->pos, (long long)(c->pos + n - 1));
	c->pos += n;
	c->pp_s += secs;
	c->pp_n += n;
	c->started = c->reply_open = 1;
	c->turn++;
	return rc;
}

/* One user turn and the reply, printed as it comes. */
static int rt_chat_turn(const RtOpts *o, RtRun *run, RtChat *c, const char *user)
{
	float *last = NULL;
	int rc = rt_chat_feed(o, run, c, user, &last);
	if (rc)
		return rc < 0 ? 0 : rc; /* -1: the turn was skipped */
	int64_t gen = 0, n_ctx = run->st.n_ctx;
	int full = 0;
	for (; !o->n_given || gen < o->n_predict; gen++) {
		int32_t tok = rt_sampler_sample(run->smp, last);
		if (!o->ignore_eos && rt_is_stop(run, tok))
			break;
		if ((rc = rt_put_token(o, run, tok)))
			return rc;
		rt_sampler_accept(run->smp, tok);
		if (c->pos >= n_ctx) {
			full = 1;
			break;
		}
		double t = rt_now();
		if ((rc = rt_forward(run, &tok, 1, c->pos, run->logits, 1))) {
			rt_put_end(run);
			return rc;
		}
		c->tg_s += rt_now() - t;
		c->tg_n++;
		c->pos++;
		last = run->logits;
	}
	if ((rc = rt_put_end(run)))
		return rc;
	if (o->verbose)
		fprintf(stderr, "%s: turn %d: generated %lld tokens, %lld of %lld positions used\n",
			rt_prog, c->turn, (long long)gen, (long long)c->pos, (long long)n_ctx);
	if (full) {
		fprintf(stderr, "%s: the context (%lld tokens) is full: starting a new conversation\n",
			rt_prog, (long long)n_ctx);
		rt_chat_reset(run, c);
	}
	return 0;
}

/* The template -cnv uses: --chat-template, else the one built in. */
static RtChatTemplate rt_chat_pick(const RtOpts *o)
{
	if (o->chat_template)
		return rt_chat_from_name(o->chat_template);
	return (RtChatTemplate)rt_model.chat_template;
}

static int rt_chat_check(const RtOpts *o)
{
	if (!rt_model.tok_bytes)
		return rt_usage("-cnv needs a tokenizer, and this program was built without one");
	if (rt_chat_pick(o) == RT_CHAT_NONE)
		return rt_usage("-cnv: this model has no chat template that bitnetc knows: name one "
				"with --chat-template bitnet|llama3");
	return 0;
}

/* Reads user turns, one per line, until /exit or the end of input. */
static int rt_chat(const RtOpts *o, RtRun *run)
{
	RtChat c = {.tmpl = rt_chat_pick(o)};
	char why[256];
	if (!rt_chat_tokens_ok(c.tmpl, run->tok, why, sizeof why))
		return rt_fail("-cnv: %s; pick the template the model was trained with "
			       "(--chat-template)", why);
	int rc = rt_sampler_setup(o, run);
	if (rc)
		return rc;
	run->text_out = !o->show_ids;
	int tty = isatty(0);
	if (tty)
		fprintf(stderr, "%s: chat (%s template); /reset starts over, /exit quits\n", rt_prog,
			rt_chat_name(c.tmpl));
	char *line = NULL;
	size_t cap = 0;
	for (long long lineno = 1;; lineno++) {
		if (tty) {
			fprintf(stderr, "> ");
			fflush(stderr);
		}
		errno = 0;
		ssize_t len = getline(&line, &cap, stdin);
		if (len < 0) {
			if (ferror(stdin))
				rc = rt_fail("cannot read the conversation from standard input: %s",
					     errno ? strerror(errno) : "read error");
			break;
		}
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		/* the chat template renders C strings: a NUL would silently cut the message */
		const char *nul = memchr(line, 0, (size_t)len);
		if (nul) {
			rc = rt_usage("-cnv: input line %lld has a NUL at byte %lld: a message cannot "
				      "hold NUL bytes (-f refuses them too)",
				      lineno, (long long)(nul - line));
			break;
		}
		if (!strcmp(line, "/exit"))
			break;
		if (!strcmp(line, "/reset")) {
			rt_chat_reset(run, &c);
			fprintf(stderr, "%s: conversation reset\n", rt_prog);
			continue;
		}
		if (!len)
			continue;
		if ((rc = rt_chat_turn(o, run, &c, line)))
			break;
	}
	free(line);
	if (!rc)
		rt_print_stats(run, c.pp_s, c.pp_n, c.tg_s, c.tg_n);
	return rc;
}

/* ---- --bench ----------------------------------------------------------- */

static int rt_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void rt_stats(const double *v, int64_t n, double *median, double *sd)
{
	double *s = malloc((size_t)n * sizeof *s), mean = 0, var = 0;
	if (!s) {
		*median = v[0];
		*sd = 0;
		return;
	}
	memcpy(s, v, (size_t)n * sizeof *s);
	qsort(s, (size_t)n, sizeof *s, rt_cmp_double);
	*median = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
	for (int64_t i = 0; i < n; i++)
		mean += v[i] / (double)n;
	for (int64_t i = 0; i < n; i++)
		var += (v[i] - mean) * (v[i] - mean);
	*sd = n > 1 ? sqrt(var / (double)(n - 1)) : 0.0;
	free(s);
}

static void rt_json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void rt_json_samples(const char *key, const double *v, int64_t n)
{
	printf(", \"%s\": [", key);
	for (int64_t i = 0; i < n; i++)
		printf("%s%.3f", i ? ", " : "", v[i]);
	printf("]");
}

static void rt_bench_report(const RtOpts *o, const RtRun *run, const double *pp, const double *tg)
{
	double ppm = 0, pps = 0, tgm = 0, tgs = 0;
	if (o->pp)
		rt_stats(pp, o->reps, &ppm, &pps);
	if (o->tg)
		rt_stats(tg, o->reps, &tgm, &tgs);
	int th = rt_pool_threads(run->st.pool);
	if (o->json) {
		printf("{\"model\": ");
		rt_json_str(rt_model.name);
		printf(", \"arch\": ");
		rt_json_str(rt_model.arch);
		printf(", \"target\": ");
		rt_json_str(rt_model.target);
		printf(", \"pipeline\": ");
		rt_json_str(rt_model.pipeline);
		printf(", \"version\": ");
		rt_json_str(rt_model.version);
		printf(", \"weights_bytes\": %llu, \"threads\": %d, \"n_ctx\": %lld, "
		       "\"n_prompt\": %lld, \"n_gen\": %lld, \"reps\": %lld, "
		       "\"pp_tok_s\": %.3f, \"pp_tok_s_sd\": %.3f, \"tg_tok_s\": %.3f, "
		       "\"tg_tok_s_sd\": %.3f",
		       (unsigned long long)rt_model.weights_bytes, th, (long long)run->st.n_ctx,
		       (long long)o->pp, (long long)o->tg, (long long)o->reps, ppm, pps, tgm, tgs);
		rt_json_samples("pp_samples", pp, o->pp ? o->reps : 0);
		rt_json_samples("tg_samples", tg, o->tg ? o->reps : 0);
		printf("}\n");
		return;
	}
	printf("| %-24s | %10s | %7s | %8s | %20s |\n", "model", "size", "threads", "test",
	       "t/s (median ± sd)");
	printf("| %.24s | %.10s | %.7s | %.8s | %.20s |\n", "------------------------",
	       "---------:", "------:", "-------:", "-------------------:");
	char size[32], test[32];
	snprintf(size, sizeof size, "%.2f MiB", rt_mib(rt_model.weights_bytes));
	if (o->pp) {
		snprintf(test, sizeof test, "pp%lld", (long long)o->pp);
		printf("| %-24.24s | %10s | %7d | %8s | %11.2f ± %6.2f |\n", rt_model.name, size, th,
		       test, ppm, pps);
	}
	if (o->tg) {
		snprintf(test, sizeof test, "tg%lld", (long long)o->tg);
		printf("| %-24.24s | %10s | %7d | %8s | %11.2f ± %6.2f |\n", rt_model.name, size, th,
		       test, tgm, tgs);
	}
	printf("(%lld reps; weights %s)\n", (long long)o->reps,
	       run->w.embedded ? "embedded" : run->w.path);
}

/* One prefill of pp tokens (logits only for the last chunk) and tg decode steps per rep,
 * each rep from position 0; reports tokens/s per rep. */
static int rt_bench(const RtOpts *o, RtRun *run)
{
	int64_t nv = rt_model.n_vocab, total = o->pp + o->tg;
	int32_t *toks = malloc((size_t)(total ? total : 1) * sizeof *toks);
	double *pp = calloc((size_t)o->reps, sizeof *pp), *tg = calloc((size_t)o->reps, sizeof *tg);
	if (!toks || !pp || !tg) {
		free(toks);
		free(pp);
		free(tg);
		return rt_fail("out of memory for --bench");
	}
	uint64_t s = 12345;
	for (int64_t i = 0; i < total; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		toks[i] = (int32_t)((s >> 33) % (uint64_t)nv);
	}
	/* One untimed warm-up: pages the weights in and wakes the threads. */
	int rc = 0;
	for (int r = -1; r < o->reps && !rc; r++) {
		float *last = NULL;
		double secs = 0;
		if (o->pp && (rc = rt_eval_prompt(run, NULL, toks, o->pp, &last, &secs)))
			break;
		if (r >= 0 && o->pp)
			pp[r] = (double)o->pp / (secs > 0 ? secs : 1e-9);
		int64_t steps = r < 0 ? (o->tg ? 1 : 0) : o->tg;
		double t = rt_now();
		for (int64_t j = 0; j < steps && !rc; j++)
			rc = rt_forward(run, &toks[o->pp + j], 1, o->pp + j, run->logits, 1);
		secs = rt_now() - t;
		if (r >= 0 && o->tg)
			tg[r] = (double)o->tg / (secs > 0 ? secs : 1e-9);
	}
	if (!rc)
		rt_bench_report(o, run, pp, tg);
	free(toks);
	free(pp);
	free(tg);
	return rc;
}

/* ---- --info / --version ------------------------------------------------ */

/* The tokenizer and chat template lines of --info. */
static int rt_info_tok(const RtOpts *o, const uint8_t *w)
{
	RtErr e = {0};
	RtTok *t = rt_tok_from_payload(w, &e);
	const char *tmpl = rt_chat_name(rt_chat_pick(o));
	if (!t && rt_model.tok_bytes) {
		printf("tokenizer:   NOT USABLE: %s\n", e.msg);
		return RT_EXIT_RUNTIME;
	}
	if (!t) {
		printf("tokenizer:   none (prompts are token ids)\n");
		printf("chat:        %s\n", tmpl);
		return 0;
	}
	printf("tokenizer:   %d tokens, %llu bytes in the payload\n", (int)rt_tok_n_vocab(t),
	       (unsigned long long)rt_model.tok_bytes);
	printf("bos:         %d%s\n", (int)rt_tok_bos(t),
	       rt_tok_add_bos(t) ? " (added to prompts)" : " (not added)");
	printf("eog:        ");
	for (int32_t id = 0; id < rt_tok_n_vocab(t); id++)
		if (rt_tok_is_eog(t, id)) {
			char buf[64];
			int n = rt_tok_piece(t, id, true, buf, (int)sizeof buf);
			printf(" %d %.*s", (int)id, n < 0 ? 0 : n > 64 ? 64 : n, buf);
		}
	printf("\n");
	printf("chat:        %s%s\n", tmpl, o->chat_template ? " (--chat-template)" : "");
	rt_tok_free(t);
	return 0;
}

static int rt_info(const RtOpts *o, const char *argv0)
{
	const RtModel *m = &rt_model;
	printf("model:       %s\n", m->name);
	printf("arch:        %s\n", m->arch);
	printf("target:      %s\n", m->target);
	printf("pipeline:    %s\n", m->pipeline);
	printf("bitnetc:     %s\n", m->version);
	printf("n_vocab:     %lld\n", (long long)m->n_vocab);
	printf("n_ctx_train: %lld\n", (long long)m->n_ctx_train);
	printf("n_layer:     %lld\n", (long long)m->n_layer);
	printf("n_embd:      %lld\n", (long long)m->n_embd);
	printf("bos, eos:    %lld, %lld\n", (long long)m->bos, (long long)m->eos);
	printf("cpu:         %s\n", rt_model.cpu_features[0] ? rt_model.cpu_features : "baseline");
	printf("max_batch:   %lld\n", (long long)m->max_batch);
	printf("templates:  ");
	for (int i = 0; i < m->n_batch_sizes; i++)
		printf(" %d", (int)m->batch_sizes[i]);
	printf(" (tokens per forward function; 1 is the step mode)\n");
	printf("scratch:     %llu bytes\n", (unsigned long long)m->scratch_bytes);
	printf("weights:     %llu bytes (%.2f MiB), hash %016llx\n",
	       (unsigned long long)m->weights_bytes, rt_mib(m->weights_bytes),
	       (unsigned long long)m->weights_hash);
	RtWeights w;
	RtErr e = {0};
	int rc = rt_weights_map(&w, o->weights_file, argv0, m->weights_bytes, m->weights_hash, &e);
	if (rc == RT_OK) {
		printf("weights in:  %s (%s), ok\n", w.path, w.embedded ? "embedded" : "file");
		rc = rt_info_tok(o, w.data);
		rt_weights_unmap(&w);
	} else {
		printf("weights in:  %s, NOT USABLE: %s\n", o->weights_file ? "file" : "embedded",
		       e.msg);
	}
	if (m->info && *m->info)
		printf("\n%s%s", m->info, m->info[strlen(m->info) - 1] == '\n' ? "" : "\n");
	return rc == RT_OK ? 0 : RT_EXIT_RUNTIME;
}

/* ---- --verify ---------------------------------------------------------- */

/* Hashes every byte of the payload (a normal start compares only the trailer's hash, so
 * that it stays lazy: pages are read as the forward first touches them) and compares it
 * with the hash the program was built with. */
static int rt_verify(const RtOpts *o, const char *argv0)
{
	RtWeights w;
	RtErr e = {0};
	uint64_t want = rt_model.weights_hash;
	if (rt_weights_map(&w, o->weights_file, argv0, rt_model.weights_bytes, want, &e))
		return rt_fail("%s", e.msg);
	double t = rt_now();
	uint64_t got = rt_weights_hash(w.data, w.size);
	t = rt_now() - t;
	int rc = 0;
	if (got != want)
		rc = rt_fail("%s: the weights payload is damaged: its %llu bytes hash to %016llx, "
			     "but the program and the trailer say %016llx (rebuild it, or copy it "
			     "again)",
			     w.path, (unsigned long long)w.size, (unsigned long long)got,
			     (unsigned long long)want);
	else
		printf("weights OK (%.1f MiB, %.2f GB/s)\n", rt_mib(w.size),
		       (double)w.size / (t > 0 ? t : 1e-9) / 1e9);
	rt_weights_unmap(&w);
	return rc;
}

/* ---- main -------------------------------------------------------------- */

/* The batch templates obey rt_batch.h's rule: 1 first, ascending, the largest max_batch
 * (rt_chunk relies on it). */
static int rt_check_sizes(void)
{
	const RtModel *m = &rt_model;
	if (!rt_batch_sizes_ok(m->batch_sizes, m->n_batch_sizes, m->max_batch))
		return rt_fail("model description is broken: batch_sizes must start at 1, ascend and "
			       "end at max_batch %lld (%d sizes)",
			       (long long)m->max_batch, m->n_batch_sizes);
	return 0;
}

static int rt_main(int argc, char **argv, RtRun *run)
{
	RtOpts o;
	int rc = rt_parse_args(argc, argv, &o);
	if (rc)
		return rc;
	if (o.help) {
		rt_help();
		return 0;
	}
	if (o.version) {
		printf("%s: %s (%s) built by bitnetc %s for %s\n", rt_prog, rt_model.name,
		       rt_model.arch, rt_model.version, rt_model.target);
		return 0;
	}
	if (rt_model.abi != RT_MODEL_ABI)
		return rt_fail("model code has ABI %d but the runtime expects %d: rebuild with a "
			       "matching bitnetc",
			       rt_model.abi, RT_MODEL_ABI);
	if (rt_model.n_vocab < 1 || rt_model.max_batch < 1 || !rt_model.forward ||
	    !rt_model.kv_bytes)
		return rt_fail("model description is broken (n_vocab %lld, max_batch %lld)",
			       (long long)rt_model.n_vocab, (long long)rt_model.max_batch);
	if ((rc = rt_check_sizes()))
		return rc;
	char missing[256];
	const char *mask;
	if (rt_cpu_mask(&mask, missing, sizeof missing))
		return rt_usage("%s", missing);
	if (rt_cpu_require(rt_model.cpu_features, missing, sizeof missing))
		return rt_fail("this program was built for CPU features this machine lacks: %s "
			       "(rebuild it with bitnetc build --target cpu-generic, or a target "
			       "`bitnetc targets` marks usable here)%s%s",
			       missing, mask ? "; host features masked by " RT_CPU_MASK_ENV "=" : "",
			       mask ? mask : "");
	if (o.info)
		return rt_info(&o, argv[0]);
	if (o.verify)
		return rt_verify(&o, argv[0]);
	char why[256];
	if (rt_cpu_enable(rt_model.cpu_features, why, sizeof why))
		return rt_fail("the OS refused this program the CPU state it was built for: %s", why);

	int64_t n_ctx = o.n_ctx;
	if (o.bench) {
		/* as generation: without -c the context is the model's (capped by RAM); the
		 * cache then holds just the tokens timed */
		int64_t limit = n_ctx ? n_ctx : rt_default_ctx();
		if (o.pp + o.tg > limit)
			return rt_usage("--bench: --pp %lld + --tg %lld tokens do not fit the context "
					"of %lld tokens (%s)",
					(long long)o.pp, (long long)o.tg, (long long)limit,
					n_ctx ? "-c" : "the model's; -c raises it");
		if (!n_ctx)
			n_ctx = o.pp + o.tg;
	} else if (o.cnv) {
		if ((rc = rt_chat_check(&o)) || (rc = rt_run_map(&o, argv[0], run)))
			return rc;
		if (!n_ctx)
			n_ctx = rt_default_ctx();
	} else {
		/* a text prompt needs the tokenizer, which travels in the weights */
		if (rt_model.tok_bytes && !o.tokens && (rc = rt_run_map(&o, argv[0], run)))
			return rc;
		if ((rc = rt_prompt_load(&o, run)))
			return rc;
		if (!n_ctx)
			n_ctx = rt_default_ctx();
		if (run->n_prompt > n_ctx)
			return rt_usage("the prompt has %lld tokens but the context holds %lld (-c)",
					(long long)run->n_prompt, (long long)n_ctx);
		if (!o.n_given && run->n_prompt + o.n_predict > n_ctx)
			o.n_predict = n_ctx - run->n_prompt; /* the default: stop when full */
		if (run->n_prompt + o.n_predict > n_ctx)
			return rt_usage("context overflow: %lld prompt tokens + -n %lld exceed the "
					"context of %lld tokens (raise -c or lower -n)",
					(long long)run->n_prompt, (long long)o.n_predict,
					(long long)n_ctx);
		if (o.logits_out) {
			RtErr e = {0};
			if (!(run->lf = rt_f32_open(o.logits_out, &e)))
				return rt_usage("--logits-out %s", e.msg);
		}
	}
	if (o.n_ctx > rt_model.n_ctx_train && rt_model.n_ctx_train > 0)
		fprintf(stderr, "%s: warning: -c %lld is beyond the model's training context %lld\n",
			rt_prog, (long long)o.n_ctx, (long long)rt_model.n_ctx_train);
	if ((rc = rt_run_setup(&o, argv[0], n_ctx, run)))
		return rc;
	run->t_load_ms = (rt_now() - run->t_start) * 1e3;
	if (o.bench)
		return rt_bench(&o, run);
	return o.cnv ? rt_chat(&o, run) : rt_generate(&o, run);
}

int main(int argc, char **argv)
{
	RtRun run;
	memset(&run, 0, sizeof run);
	run.t_start = rt_now();
	if (argc > 0 && argv[0] && *argv[0]) {
		const char *slash = strrchr(argv[0], '/');
		rt_prog = slash ? slash + 1 : argv[0];
	}
	/* A closed stdout would be the first file the run opens (the weights, --logits-out),
	 * which would then get the output: refuse before opening anything. */
	if (fcntl(1, F_GETFD) == -1 && errno == EBADF)
		return rt_fail("standard output is closed: nothing could be printed");
	int rc = rt_main(argc, argv, &run);
	rt_run_free(&run);
	/* stdout may be a full disk or a closed pipe: say so instead of exiting 0 */
	return rc ? rc : rt_stdout_ok();
}
