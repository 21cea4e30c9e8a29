/* rt_session.h - the generated program: its options (parsed by main.c) and the session
 * that runs them (rt_session.c: prompt, generation, chat, bench, info, verify), a client
 * of bitnetc.h. Exit codes and the one-line complaints both print. */
#ifndef BITNETC_RT_SESSION_H
#define BITNETC_RT_SESSION_H

#include "bitnetc.h"
#include "rt.h"
#include "rt_tok.h"

#include <stdint.h>
#include <stdio.h>

#define RT_EXIT_USAGE 1
#define RT_EXIT_RUNTIME 2
#define RT_EXIT_DEVICE 3 /* a program built for a GPU found no usable one (BN_E_DEVICE) */

typedef struct {
	const char *prompt;      /* -p: text (token ids when the program has no tokenizer) */
	const char *prompt_file; /* -f */
	const char *tokens;      /* --tokens */
	int64_t n_predict;       /* -n: tokens to generate (stops early at end of text) */
	int n_given;             /* -n was given (the default 128 shrinks to fit instead) */
	int threads;             /* -t */
	int64_t n_ctx;           /* -c; 0 = the model's, capped by memory */
	int64_t ubatch;          /* -ub: tokens per forward call; 0 = the model's max_batch */
	bn_sampler_params sp;
	int seed_given;
	int64_t repeat_last_n; /* -1 = n_ctx */
	int ignore_eos;
	const char *logits_out;
	const char *weights_file;
	int bench, json;
	int profile;               /* --profile: per kernel family (with --bench) */
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
	int mmap;                  /* --mmap: map the weights lazily (else --no-mmap: copied) */
	int mlock;                 /* --mlock */
	/* --server (a program built with it: rt_http.c) */
	int server;
	const char *host;          /* --host (default 127.0.0.1) */
	int port;                  /* --port (default 8080; 0: any free one) */
	int parallel;              /* --parallel, -np: slots (default 4) */
	int queue;                 /* --queue: requests waiting for a slot (default 64) */
	const char *api_key;       /* --api-key */
	double drain_timeout;      /* --drain-timeout seconds (default 10) */
	int http_timeout;          /* --timeout: idle connection seconds (default 600) */
	int64_t body_max;          /* --body-limit bytes (default 4 MiB) */
	int no_display_prompt;     /* --no-display-prompt: the prompt is not echoed */
	int no_escape;             /* --no-escape: -p, -r, --in-prefix/suffix, -sys as given */
	int interactive;           /* -i: the user continues the text after each stop */
	const char *rev[16];       /* -r: reverse prompts (-i: generation stops after one) */
	int n_rev;
	const char *in_prefix, *in_suffix; /* -i: around each user line */
	int perplexity;            /* --perplexity: llama-perplexity over the text of -f */
	int64_t chunks;            /* --chunks: at most this many chunks (-1: all) */
	int chunks_given;
	const char *kl_base;       /* --kl-base FILE: the scored log-probabilities' file */
	int kl_divergence;         /* --kl-divergence: compare against kl_base, not write it */
} RtOpts;

/* What a session holds; rt_session_run releases it. */
typedef struct {
	bn_model *m;    /* opened when first needed */
	bn_ctx *ctx;
	float *logits;  /* ubatch rows of n_vocab */
	FILE *lf;
	bn_sampler *smp;
	int32_t *prompt;
	int64_t n_prompt;
	int text_out;   /* print tokens as text (else ids) */
	int64_t n_out;  /* tokens printed so far (for the ids' separators) */
	double t_start, t_load_ms;
	uint64_t rss;   /* resident bytes when ready (--bench) */
} RtRun;

/* The program's name in messages (argv[0]'s last component; "model" before main sets it). */
extern const char *rt_prog;
/* Prints "PROG: message" on stderr; returns rc. */
int rt_complain(int rc, const char *fmt, ...) RT_PRINTF(2, 3);
#define rt_usage(...) rt_complain(RT_EXIT_USAGE, __VA_ARGS__)
#define rt_fail(...) rt_complain(RT_EXIT_RUNTIME, __VA_ARGS__)
/* stdout after a write: 0, or an error (a full disk, a closed pipe). */
int rt_stdout_ok(void);

/* main.c: argv into o (defaults first); 0 or an exit code, the error printed. */
int rt_parse_args(int argc, char **argv, RtOpts *o);

/* rt_session.c: runs what o asks for (t_start: when the program started); an exit code. */
int rt_session_run(const RtOpts *o, const char *argv0, double t_start);
/* Steps of it that open nothing: the prompt from -p or --tokens (a tokenizer's text needs
 * run->m open), and -cnv's check of the model. 0 or an exit code, the error printed. */
int rt_prompt_load(const RtOpts *o, RtRun *run);
int rt_chat_check(const RtOpts *o);
/* The BN_OPEN_* flags of --mmap and --mlock. */
int rt_open_flags(const RtOpts *o);
/* The progress of the weights' copy on stderr (user: an RtProgress): nothing for the first
 * second; then, on a terminal, one line rewritten in place, and elsewhere one line when the
 * copy ends. */
typedef struct {
	double t0;  /* when the open began (rt_now) */
	int tty;    /* stderr is a terminal */
	int shown;  /* a line is on the terminal, to end with a newline */
} RtProgress;
void rt_progress_line(void *user, uint64_t done, uint64_t total);

#endif
