/* fuzz_cli.c - libFuzzer harness: the generated program's command line. The input, split at
 * NUL bytes, is argv[1..] of a program (main.c, compiled in here with its main renamed, its
 * session rt_session.c and the hand-written fake model of tests/runtime) that has no
 * tokenizer. It goes through
 * rt_parse_args and every value parser; when parsing succeeds, through the prompt's token-id
 * parser (-p, --tokens) and the chat check (-cnv). Nothing runs a model or opens a file:
 * -f's file is never read.
 *
 * It checks what the parser promises: exit code 0 or 1 (usage), a usage error printed as
 * one "model: ..." message and nothing printed on success; the options it accepts are in
 * their documented ranges, and only one prompt source is set. */
int bn_fuzz_program_main(int argc, char **argv);
#define main bn_fuzz_program_main
#include "main.c"
#undef main

#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* UndefinedBehaviorSanitizer findings are crashes too (libFuzzer then keeps the input). */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

enum { MAX_ARGS = 256, ERR_CAP = 1 << 16 };

static char err_buf[ERR_CAP];
static FILE *err_f; /* what the program prints on stderr, into err_buf */

/* The options accepted: every value within the range its flag documents. */
static void check_opts(const RtOpts *o)
{
	if (!!o->prompt + !!o->prompt_file + !!o->tokens > 1)
		abort();
	if (o->n_predict < -1 || o->n_predict > INT32_MAX || o->threads < 1 || o->threads > 512 ||
	    o->ubatch < 0 || o->ubatch > INT32_MAX || o->n_ctx < 0 || o->n_ctx > INT32_MAX)
		abort();
	if (!(o->sp.top_p >= 0 && o->sp.top_p <= 1) || !(o->sp.min_p >= 0 && o->sp.min_p <= 1) ||
	    !(o->sp.repeat_penalty > 0) || o->sp.top_k < 0 || o->sp.temp != o->sp.temp)
		abort();
	if (o->repeat_last_n < -1 || o->pp < 0 || o->tg < 0 || o->reps < 1 || o->reps > 100000)
		abort();
	if (o->chat_template && !bn_chat_template_name(NULL, o->chat_template))
		abort();
	if (o->cnv && (o->prompt || o->prompt_file || o->tokens || o->bench || o->logits_out))
		abort();
	/* -1: until the end of text or a full context; -sys only with -cnv; -i alone */
	if ((o->system && !o->cnv) || (o->interactive && (o->cnv || o->bench || o->tokens)))
		abort();
	/* --perplexity: a text, a count of chunks (-1: all), -c 0 (its default) or >= 16; the
	 * base-file flags only with it */
	if (o->perplexity && (!o->prompt_file || o->prompt || o->tokens || o->bench ||
			      o->logits_out || o->chunks == 0 || o->chunks < -1 ||
			      (o->n_ctx && o->n_ctx < RT_PPL_MIN_CTX) || (o->kl_divergence && !o->kl_base)))
		abort();
	if (!o->perplexity && (o->kl_base || o->kl_divergence || o->chunks_given))
		abort();
	if (!(o->sp.presence_penalty == o->sp.presence_penalty) ||
	    !(o->sp.frequency_penalty == o->sp.frequency_penalty))
		abort();
}

/* What the program would do next without opening anything: the prompt's ids, the chat check. */
static int after_parse(const RtOpts *o)
{
	RtRun run;
	memset(&run, 0, sizeof run);
	int rc = 0;
	if (o->cnv)
		rc = rt_chat_check(o);
	else if (!o->prompt_file && !o->bench)
		rc = rt_prompt_load(o, &run);
	if (!rc && run.n_prompt && !run.prompt)
		abort();
	for (int64_t i = 0; !rc && i < run.n_prompt; i++)
		if (run.prompt[i] < 0 || run.prompt[i] >= bn_model_n_vocab(NULL))
			abort();
	free(run.prompt);
	return rc;
}

/* Whether the n bytes of text are whole lines "model: note: ..." only. */
static int only_notes(const char *text, long n)
{
	for (long i = 0; i < n;) {
		if (n - i < 13 || strncmp(text + i, "model: note: ", 13) != 0)
			return 0;
		const char *nl = memchr(text + i, '\n', (size_t)(n - i));
		if (!nl)
			return 0;
		i = nl - text + 1;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!err_f && !(err_f = fmemopen(err_buf, sizeof err_buf, "w")))
		abort();
	char *buf = malloc(size + 1);
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	static char prog[] = "model";
	argv[argc++] = prog;
	for (size_t i = 0; i <= size && argc < MAX_ARGS; i++) {
		argv[argc++] = buf + i;
		i += strlen(buf + i);
	}
	argv[argc] = NULL;

	FILE *saved = stderr;
	rewind(err_f);
	stderr = err_f;
	RtOpts o;
	int rc = rt_parse_args(argc, argv, &o);
	if (!rc) {
		check_opts(&o);
		rc = after_parse(&o);
	}
	fflush(err_f);
	long n = ftell(err_f);
	stderr = saved;

	if (rc != 0 && rc != RT_EXIT_USAGE)
		abort(); /* only usage errors: nothing here needs memory to speak of */
	if (rc && (n < 9 || strncmp(err_buf, "model: ", 7) != 0 || err_buf[n - 1] != '\n'))
		abort(); /* an error says so, as "model: message" */
	if (!rc && n && !o.verbose && !only_notes(err_buf, n))
		abort(); /* success is silent (-v prints the prompt's ids), but for notes about
			  * llama.cpp flags that change nothing here */
	free(buf);
	return 0;
}
