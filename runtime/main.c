/* main.c - main() of every generated program: its command line (the flags, --help,
 * --version) and the exit code of what rt_session.c then runs through bitnetc.h.
 *
 * Compiled into each built model (never into bitnetc itself), the only runtime file that
 * defines main(). Exit codes: 0 ok, 1 usage error, 2 runtime error, 3 no usable GPU (a
 * program built for one); every error is one line "PROG: message" on stderr. */
/* POSIX (sysconf) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt_ppl.h"
#include "rt_session.h"
#ifdef BN_SERVER
#include "rt_http.h"
#endif

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --server: the HTTP server of a program built with it (rt_http.c), else why not. */
static int rt_server_run(const RtOpts *o, const char *argv0)
{
#ifdef BN_SERVER
	return rt_http_main(o, argv0);
#else
	(void)o;
	(void)argv0;
	return rt_usage("this program was built without the server: build it with `bitnetc "
			"build MODEL --server -o PROG` (needs libmicrohttpd and libcjson)");
#endif
}

/* ---- command line ------------------------------------------------------ */

/* A one-line note on stderr about a flag taken from llama.cpp that changes nothing here. */
static void rt_note(const char *fmt, ...) RT_PRINTF(1, 2);
static void rt_note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: note: ", rt_prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void rt_help(void)
{
	printf("usage: %s [options]\n"
	       "\n"
	       "Runs %s (%s, built by bitnetc %s for %s). %s\n"
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
	       "      --chat-template N   bitnet, llama3 or falcon3 (default: the one built in)\n"
	       "\n"
	       "generation:\n"
	       "  -n, --n-predict N       tokens to generate (default 128; -1 = until the end of\n"
	       "                          text; either way no more than the context holds, and\n"
	       "                          fewer at end of text; 0 = only evaluate the prompt)\n"
	       "  -c, --ctx-size N        context (KV cache) size in tokens (default: the model's\n"
	       "                          training context, capped so the KV cache stays under\n"
	       "                          25%% of RAM)\n"
	       "  -t, --threads N         threads (default: online CPUs)\n"
	       "  -ub, --ubatch-size N    at most N prompt tokens per forward call (default and\n"
	       "                          maximum: the largest batch template the program was\n"
	       "                          built for, see --info; 1 feeds the prompt token by\n"
	       "                          token, the reference's step mode)\n"
	       "      --ignore-eos        keep going past the end-of-generation tokens\n"
	       "  -i, --interactive       after the prompt's reply, read a line from stdin and go\n"
	       "                          on with it as more text (no chat template; -cnv is the\n"
	       "                          chat), until end of input; Ctrl-C stops a reply and\n"
	       "                          returns to the input, a second Ctrl-C exits\n"
	       "  -r, --reverse-prompt T  stop generating once the text ends with T and hand over\n"
	       "                          to the user (-i; else generation ends there); repeatable\n"
	       "      --in-prefix T, --in-suffix T   text put before / after each -i input line\n"
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
	       "      --presence-penalty P   subtract P from tokens in the window (default 0 = off)\n"
	       "      --frequency-penalty F  subtract F x their count in the window (default 0)\n"
	       "  -s, --seed S            random seed (default -1 = pick one, printed to stderr)\n"
	       "\n"
	       "output:\n"
	       "  (stdout gets the prompt's text, then the generated text as it comes; ids,\n"
	       "  space-separated, without a tokenizer, for --tokens prompts and with\n"
	       "  --show-ids; Ctrl-C stops, prints the timings and exits 130)\n"
	       "      --no-display-prompt don't print the prompt first\n"
	       "  -e, --escape            (default) \\n \\t \\r \\\\ \\' \\\" \\xHH in -p, -r, -sys,\n"
	       "                          --in-prefix and --in-suffix are their characters\n"
	       "      --no-escape         take those texts as given\n"
	       "      --show-ids          print token ids instead of text\n"
	       "  -sp, --special          print the text of control tokens\n"
	       "  -v, --verbose           the prompt's ids and per-turn token counts on stderr\n"
	       "      --logits-out FILE   write float32 little-endian logits rows of n_vocab: one\n"
	       "                          per prompt token, then one per generated token (the\n"
	       "                          logits after feeding it)\n"
	       "\n"
	       "server (a program built with bitnetc build --server; see README: Serving):\n"
	       "      --server            serve the OpenAI API over HTTP (/v1/chat/completions,\n"
	       "                          /v1/completions, /v1/models, /health, /metrics)\n"
	       "                          until SIGTERM or SIGINT, which drains\n"
	       "      --host H            the address to bind (default 127.0.0.1)\n"
	       "      --port P            the port (default 8080; 0: a free one, printed)\n"
	       "  -np, --parallel N       slots: requests decoded together (default 4); -c is\n"
	       "                          the total context, split evenly over the slots\n"
	       "      --queue N           requests that may wait for a slot (default 64; more:\n"
	       "                          503)\n"
	       "      --api-key K         require \"Authorization: Bearer K\" (not /health)\n"
	       "      --drain-timeout S   seconds running requests get to finish after SIGTERM\n"
	       "                          (default 10)\n"
	       "      --timeout S         close a connection idle for S seconds (default 600)\n"
	       "      --body-limit N      the largest request body in bytes (default 4 MiB;\n"
	       "                          larger: 413)\n"
	       "\n"
	       "other modes:\n"
	       "      --bench             time prefill and decode; --pp N (default 128),\n"
	       "                          --tg M (default 128), --reps R (default 5), --json;\n"
	       "                          --profile: where a forward's time goes, per kernel\n"
	       "                          family, for prefill and for decode\n"
	       "      --perplexity        llama-perplexity's measure over the text of -f FILE:\n"
	       "                          chunks of -c tokens (default 512 here), each from an\n"
	       "                          empty cache, the second half of each scored; --chunks N\n"
	       "                          at most N chunks (default -1 = all); -ub as above;\n"
	       "                          [1]PPL,[2]... on stderr, then \"Final estimate: PPL = X\n"
	       "                          +/- Y\" (--json: one JSON object)\n"
	       "      --kl-base FILE      with --perplexity: write the scored tokens' log-\n"
	       "                          probabilities to FILE (llama-perplexity's format; also\n"
	       "                          --kl-divergence-base, --save-all-logits)\n"
	       "      --kl-divergence     with --kl-base FILE: compare with that file instead (of\n"
	       "                          the same text, -c and vocabulary): KL divergence, top-1\n"
	       "                          agreement, delta p and both PPLs\n"
	       "      --info              what this program was compiled from, its tokenizer and\n"
	       "                          chat template (and the GPU it would run on, for a\n"
	       "                          program built for one)\n"
	       "      --weights-file FILE take the weights from FILE instead of this executable\n"
	       "      --no-mmap           (default) copy the weights into anonymous huge-page\n"
	       "                          memory at start (progress on stderr past 1 s), so\n"
	       "                          the decode speed does not depend on where the page\n"
	       "                          cache put the file\n"
	       "      --mmap              map the weights lazily from the file instead (faster\n"
	       "                          start, shared page cache)\n"
	       "      --mlock             lock the weights in memory (needs ulimit -l >= their\n"
	       "                          size)\n"
	       "      --verify            read the whole weights payload and check its hash (a\n"
	       "                          normal start only checks the trailer): exit 0 and\n"
	       "                          \"weights OK\", or 2 if a byte changed\n"
	       "\n"
	       "accepted from llama.cpp command lines, with a note that they change nothing here:\n"
	       "  -m FILE (the model is built in), -ngl N, -fa, -b N, --keep N, --color,\n"
	       "  --log-disable, -no-cnv; --temperature is --temp\n"
	       "  -h, --help              this text\n"
	       "      --version           versions\n"
	       "\n"
	       "exit codes: 0 ok, 1 usage error, 2 runtime error%s\n",
	       rt_prog, bn_model_meta(NULL, "name"), bn_model_meta(NULL, "arch"),
	       bn_model_meta(NULL, "version"), bn_model_meta(NULL, "target"),
#ifdef BN_WEIGHTS_FILE
	       "Its weights are in a file\nof their own: give --weights-file FILE (bitnetc build "
	       "wrote " BN_WEIGHTS_FILE ").",
#else
	       "The weights travel inside this file.",
#endif
	       bn_model_device_info(NULL, 0)
		       ? ", 3 no usable GPU (no driver, no device, one older than\n"
			 "the program was built for, too little device memory)"
		       : "");
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
		int rc = rt_parse_i64(a, v, -2, INT32_MAX, "a count >= 0, or -1 = until the end",
				      &o->n_predict);
		if (!rc && o->n_predict < 0)
			o->n_predict = -1; /* llama.cpp's -2 (until the context is full) too */
		return rc;
	}
	else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
		return rt_parse_int(a, v, 1, 512, "1 to 512 threads", &o->threads);
	else if (!strcmp(a, "-ub") || !strcmp(a, "--ubatch-size"))
		return rt_parse_i64(a, v, 1, INT32_MAX, "a count >= 1", &o->ubatch);
	else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size"))
		return rt_parse_i64(a, v, 1, INT32_MAX, "a context size >= 1", &o->n_ctx);
	else if (!strcmp(a, "--temp") || !strcmp(a, "--temperature"))
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
	else if (!strcmp(a, "--seed") || !strcmp(a, "-s"))
		return rt_parse_seed(v, o);
	else if (!strcmp(a, "--presence-penalty"))
		return rt_parse_f32(a, v, -1e30, 1e30, "a penalty; 0 = off", &o->sp.presence_penalty);
	else if (!strcmp(a, "--frequency-penalty"))
		return rt_parse_f32(a, v, -1e30, 1e30, "a penalty; 0 = off", &o->sp.frequency_penalty);
	else if (!strcmp(a, "-r") || !strcmp(a, "--reverse-prompt")) {
		if (!*v)
			return rt_usage("%s: an empty reverse prompt would stop at once", a);
		if (o->n_rev == (int)(sizeof o->rev / sizeof o->rev[0]))
			return rt_usage("%s: at most %d reverse prompts", a,
					(int)(sizeof o->rev / sizeof o->rev[0]));
		o->rev[o->n_rev++] = v;
	} else if (!strcmp(a, "--in-prefix"))
		o->in_prefix = v;
	else if (!strcmp(a, "--in-suffix"))
		o->in_suffix = v;
	else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
		rt_note("%s: the model is built into this program; the file is not read", a);
	else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers") || !strcmp(a, "--gpu-layers"))
		rt_note("%s: this program decides its device when it is built (its target: %s)", a,
			bn_model_meta(NULL, "target"));
	else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size"))
		rt_note("%s: no effect; -ub sets the tokens of one forward call", a);
	else if (!strcmp(a, "--keep"))
		rt_note("--keep: no effect; generation stops when the context is full (no context "
			"shift)");
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
	else if (!strcmp(a, "--host"))
		o->host = v;
	else if (!strcmp(a, "--port"))
		return rt_parse_int(a, v, 0, 65535, "a port, 0 to 65535", &o->port);
	else if (!strcmp(a, "-np") || !strcmp(a, "--parallel"))
		return rt_parse_int(a, v, 1, 256, "1 to 256 slots", &o->parallel);
	else if (!strcmp(a, "--queue"))
		return rt_parse_int(a, v, 0, 100000, "0 to 100000 requests", &o->queue);
	else if (!strcmp(a, "--api-key")) {
		if (!*v)
			return rt_usage("--api-key: empty key");
		o->api_key = v;
	} else if (!strcmp(a, "--drain-timeout")) {
		float t;
		int rc = rt_parse_f32(a, v, 0, 86400, "0 to 86400 seconds", &t);
		o->drain_timeout = t;
		return rc;
	} else if (!strcmp(a, "--timeout"))
		return rt_parse_int(a, v, 1, 86400, "1 to 86400 seconds", &o->http_timeout);
	else if (!strcmp(a, "--body-limit"))
		return rt_parse_i64(a, v, 1024, (int64_t)1 << 30, "1024 bytes to 1 GiB", &o->body_max);
	else if (!strcmp(a, "--chunks")) {
		o->chunks_given = 1;
		int rc = rt_parse_i64(a, v, -1, INT32_MAX, "a count >= 1, or -1 = all", &o->chunks);
		if (!rc && o->chunks == 0)
			return rt_usage("--chunks 0: nothing to evaluate (a count >= 1, or -1 = all)");
		return rc;
	} else if (!strcmp(a, "--kl-base") || !strcmp(a, "--kl-divergence-base") ||
		   !strcmp(a, "--save-all-logits")) {
		if (!*v)
			return rt_usage("%s: empty file name", a);
		o->kl_base = v;
	} else if (!strcmp(a, "--chat-template")) {
		if (!bn_chat_template_name(NULL, v))
			return rt_usage("--chat-template: unknown template \"%s\" (bitnet, llama3 "
					"or falcon3)", v);
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
	else if (!strcmp(a, "--profile"))
		o->profile = 1;
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
	else if (!strcmp(a, "--mmap"))
		o->mmap = 1;
	else if (!strcmp(a, "--no-mmap"))
		o->mmap = 0;
	else if (!strcmp(a, "--mlock"))
		o->mlock = 1;
	else if (!strcmp(a, "--server"))
		o->server = 1;
	else if (!strcmp(a, "--perplexity"))
		o->perplexity = 1;
	else if (!strcmp(a, "--kl-divergence"))
		o->kl_divergence = 1;
	else if (!strcmp(a, "--no-display-prompt"))
		o->no_display_prompt = 1;
	else if (!strcmp(a, "--display-prompt"))
		o->no_display_prompt = 0;
	else if (!strcmp(a, "-e") || !strcmp(a, "--escape"))
		o->no_escape = 0;
	else if (!strcmp(a, "--no-escape"))
		o->no_escape = 1;
	else if (!strcmp(a, "-i") || !strcmp(a, "--interactive"))
		o->interactive = 1;
	else if (!strcmp(a, "-no-cnv") || !strcmp(a, "--no-conversation"))
		o->cnv = 0;
	else if (!strcmp(a, "--color") || !strcmp(a, "--log-disable"))
		rt_note("%s: no effect here", a);
	else
		return -1;
	return 0;
}

static const char *const rt_value_flags[] = {
	"-p", "--prompt", "-f", "--file", "--tokens", "-n", "--n-predict", "-t", "--threads",
	"-c", "--ctx-size", "-ub", "--ubatch-size", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
	"--repeat-last-n", "--seed", "--logits-out", "--weights-file", "--pp", "--tg", "--reps",
	"-sys", "--system-prompt", "--chat-template",
	"--host", "--port", "-np", "--parallel", "--queue", "--api-key", "--drain-timeout",
	"--timeout", "--body-limit",
	"-sys", "--system-prompt", "--chat-template", "--temperature", "-s", "--presence-penalty",
	"--frequency-penalty", "-r", "--reverse-prompt", "--in-prefix", "--in-suffix", "-m",
	"--model", "-ngl", "--n-gpu-layers", "--gpu-layers", "-b", "--batch-size", "--keep",
	"--chunks", "--kl-base", "--kl-divergence-base", "--save-all-logits",
};

/* -fa / --flash-attn: a switch in older llama.cpp, on|off|auto in newer: either is accepted
 * (attention here is what the program was built with). Returns the arguments it used. */
static int rt_flash_attn(int argc, char **argv, int i)
{
	if (strcmp(argv[i], "-fa") && strcmp(argv[i], "--flash-attn"))
		return 0;
	int val = i + 1 < argc && (!strcmp(argv[i + 1], "on") || !strcmp(argv[i + 1], "off") ||
				   !strcmp(argv[i + 1], "auto"));
	rt_note("%s: no effect; attention is the kernel the program was built with", argv[i]);
	return 1 + val;
}

/* llama.cpp's escapes, in place (the text only shrinks): \n \r \t \\ \' \" and \xHH;
 * any other backslash stays. */
static void rt_unescape(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++) {
		if (*r != '\\' || !r[1]) {
			*w++ = *r;
			continue;
		}
		char c = *++r;
		if (c == 'n' || c == 'r' || c == 't')
			*w++ = c == 'n' ? '\n' : c == 'r' ? '\r' : '\t';
		else if (c == '\\' || c == '\'' || c == '"')
			*w++ = c;
		else if (c == 'x' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
			char hex[3] = {r[1], r[2], 0};
			long v = strtol(hex, NULL, 16);
			if (v > 0) {
				*w++ = (char)v;
				r += 2;
			} else {
				*w++ = '\\';
				*w++ = c;
			}
		} else {
			*w++ = '\\';
			*w++ = c;
		}
	}
	*w = 0;
}

static int rt_takes_value(const char *a)
{
	for (size_t i = 0; i < sizeof rt_value_flags / sizeof *rt_value_flags; i++)
		if (!strcmp(a, rt_value_flags[i]))
			return 1;
	return 0;
}

/* --perplexity and the flags that go with it. */
static int rt_ppl_args(const RtOpts *o)
{
	if (!o->perplexity) {
		const char *f = o->kl_base ? "--kl-base" : o->kl_divergence ? "--kl-divergence"
				: o->chunks_given ? "--chunks" : NULL;
		return f ? rt_usage("%s goes with --perplexity (see --help)", f) : 0;
	}
	const char *other = o->prompt ? "-p" : o->tokens ? "--tokens" : o->cnv ? "-cnv"
			    : o->interactive ? "-i" : o->bench ? "--bench" : o->server ? "--server"
			    : o->logits_out ? "--logits-out" : NULL;
	if (other)
		return rt_usage("--perplexity reads its text from -f FILE: not with %s", other);
	if (!o->prompt_file)
		return rt_usage("--perplexity needs a text: -f FILE (llama-perplexity's -f)");
	if (o->n_ctx && o->n_ctx < RT_PPL_MIN_CTX)
		return rt_usage("-c %lld is too small for --perplexity: at least %d (a chunk scores "
				"its second half)",
				(long long)o->n_ctx, RT_PPL_MIN_CTX);
	if (o->kl_divergence && !o->kl_base)
		return rt_usage("--kl-divergence compares with a base file: give it with --kl-base "
				"FILE (written by --perplexity --kl-base FILE without "
				"--kl-divergence)");
	return 0;
}

int rt_parse_args(int argc, char **argv, RtOpts *o)
{
	memset(o, 0, sizeof *o);
	o->n_predict = 128;
	o->threads = bn_default_threads();
	o->sp = bn_sampler_defaults();
	o->repeat_last_n = o->sp.repeat_last_n;
	o->pp = 128;
	o->tg = 128;
	o->reps = 5;
	o->port = 8080;
	o->parallel = 4;
	o->queue = 64;
	o->drain_timeout = 10;
	o->http_timeout = 600;
	o->chunks = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int fa = rt_flash_attn(argc, argv, i);
		if (fa) {
			i += fa - 1;
		} else if (rt_takes_value(a)) {
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
	if (!o->no_escape) {
		/* argv's strings are the program's to change; -f's text is taken as it is */
		char *texts[4] = {(char *)o->prompt, (char *)o->system, (char *)o->in_prefix,
				  (char *)o->in_suffix};
		for (int k = 0; k < 4; k++)
			if (texts[k])
				rt_unescape(texts[k]);
		for (int k = 0; k < o->n_rev; k++)
			rt_unescape((char *)o->rev[k]);
	}
	int sources = !!o->prompt + !!o->prompt_file + !!o->tokens;
	if (sources > 1)
		return rt_usage("give only one of -p, -f and --tokens");
	if (o->cnv && sources)
		return rt_usage("-cnv reads the conversation from stdin: give a system prompt with "
				"-sys, not -p, -f or --tokens");
	if (o->system && !o->cnv)
		return rt_usage("-sys: a system message goes with -cnv (the chat template places "
				"it); for plain text put it in the prompt");
	if (o->interactive && o->cnv)
		o->interactive = 0; /* -cnv is the interactive chat */
	if (o->interactive && (o->logits_out || o->bench || o->tokens || o->show_ids))
		return rt_usage("-i does not go with %s", o->bench ? "--bench"
					: o->logits_out ? "--logits-out" : o->tokens ? "--tokens"
					: "--show-ids");
	if ((o->in_prefix || o->in_suffix) && !o->interactive && !o->cnv)
		return rt_usage("--in-prefix and --in-suffix go with -i");
	if (o->cnv && (o->logits_out || o->bench))
		return rt_usage("-cnv does not go with %s", o->bench ? "--bench" : "--logits-out");
	int ppl_rc = rt_ppl_args(o);
	if (ppl_rc)
		return ppl_rc;
	if (o->server && (sources || o->cnv || o->interactive || o->bench || o->logits_out))
		return rt_usage("--server takes its prompts over HTTP: not with -p, -f, --tokens, "
				"-cnv, -i, --bench or --logits-out");
	if (o->profile && !o->bench)
		return rt_usage("--profile goes with --bench");
	if (o->bench && o->pp + o->tg == 0)
		return rt_usage("--bench: --pp and --tg are both 0: nothing to time");
	return 0;
}

int main(int argc, char **argv)
{
	double t_start = rt_now();
	if (argc > 0 && argv[0] && *argv[0]) {
		const char *slash = strrchr(argv[0], '/');
		rt_prog = slash ? slash + 1 : argv[0];
	}
	/* A closed stdout would be the first file the run opens (the weights, --logits-out),
	 * which would then get the output: refuse before opening anything. */
	if (fcntl(1, F_GETFD) == -1 && errno == EBADF)
		return rt_fail("standard output is closed: nothing could be printed");
	RtOpts o;
	int rc = rt_parse_args(argc, argv, &o);
	if (!rc && o.help)
		rt_help();
	else if (!rc && o.version)
		printf("%s: %s (%s) built by bitnetc %s for %s\n", rt_prog, bn_model_meta(NULL, "name"),
		       bn_model_meta(NULL, "arch"), bn_model_meta(NULL, "version"),
		       bn_model_meta(NULL, "target"));
	else if (!rc && o.server)
		rc = rt_server_run(&o, argv[0]);
	else if (!rc)
		rc = rt_session_run(&o, argv[0], t_start);
	/* stdout may be a full disk or a closed pipe: say so instead of exiting 0 */
	return rc ? rc : rt_stdout_ok();
}
