/* rt_session.c - what the generated program runs once main.c has parsed its flags: the
 * prompt, generation and chat (bn_generate, bn_chat: this file prints what they give),
 * bench, --info and --verify, all through bitnetc.h (and the runtime's helpers that no
 * model owns: token lists, float output). The weights are opened only when needed, so
 * usage errors come first. */
/* POSIX (getline, isatty, clock_gettime) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt_ppl.h"
#include "rt_session.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *rt_prog = "model";

int rt_complain(int rc, const char *fmt, ...)
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


static double rt_mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
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
				src, e.msg, (long long)bn_model_n_vocab(NULL) - 1);
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

/* Whether the run has the model's tokenizer (opened with the model). */
static int rt_has_tok(const RtRun *run)
{
	return run->m && bn_model_tokenizer_status(run->m, NULL, 0) == BN_OK;
}

/* len bytes of text as token ids (malloc'd in *ids, *n of them) with flags BN_TOKENIZE_*;
 * 0 or a code. */
static int rt_encode(const bn_model *m, const char *text, size_t len, int flags, int32_t **ids,
		     int *n)
{
	int32_t cap = len + 2 < (size_t)INT32_MAX ? (int32_t)len + 2 : INT32_MAX, got;
	for (int pass = 0; pass < 2; pass++) {
		int32_t *buf = malloc((size_t)cap * sizeof *buf);
		if (!buf)
			return BN_E_NOMEM;
		got = bn_tokenize_ex(m, text, len, buf, cap, flags);
		if (got >= 0 && got <= cap) {
			*ids = buf;
			*n = got;
			return 0;
		}
		free(buf);
		if (got < 0)
			return got;
		cap = got;
	}
	return BN_E_NOMEM;
}

/* Text through the tokenizer: special-token text parsed unless --no-parse-special, BOS
 * when the model adds one (so an empty text is BOS alone). */
static int rt_prompt_encode(const RtOpts *o, RtRun *run, const char *src, const char *text,
			    size_t len)
{
	int flags = o->no_special ? 0 : BN_TOKENIZE_PARSE_SPECIAL;
	if (bn_model_add_bos(run->m))
		flags |= BN_TOKENIZE_ADD_BOS;
	int32_t *ids = NULL;
	int n = 0, rc = rt_encode(run->m, text, len, flags, &ids, &n);
	if (rc)
		return rt_fail("%s: tokenizer: %s", src, bn_strerror(rc));
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
	if (rt_has_tok(run) && nul)
		rc = rt_usage("%s: byte %lld is a NUL: a text prompt cannot hold NUL bytes (-cnv "
			      "refuses them too)",
			      src, (long long)(nul - text));
	else if (rt_has_tok(run))
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
int rt_prompt_load(const RtOpts *o, RtRun *run)
{
	int rc = 0;
	if (o->tokens) {
		rc = rt_prompt_ids("--tokens", 0, o->tokens, &run->prompt, &run->n_prompt);
	} else if (o->prompt && rt_has_tok(run)) {
		rc = rt_prompt_encode(o, run, "-p", o->prompt, strlen(o->prompt));
	} else if (o->prompt) {
		rc = rt_prompt_ids("-p", 1, o->prompt, &run->prompt, &run->n_prompt);
	} else if (o->prompt_file) {
		rc = rt_prompt_file(o, run);
	} else if (bn_model_meta_int(NULL, "bos") >= 0) {
		run->prompt = malloc(sizeof *run->prompt);
		if (!run->prompt)
			return rt_fail("out of memory");
		run->prompt[0] = (int32_t)bn_model_meta_int(NULL, "bos");
		run->n_prompt = 1;
	} else {
		return rt_usage("no prompt: give one with -p or --tokens (this model has no BOS "
				"token to start from)");
	}
	if (rc)
		return rc;
	for (int64_t i = 0; i < run->n_prompt; i++)
		if (run->prompt[i] >= bn_model_n_vocab(NULL))
			return rt_usage("prompt token %lld (position %lld) is out of range: the "
					"vocabulary has %lld tokens",
					(long long)run->prompt[i], (long long)i,
					(long long)bn_model_n_vocab(NULL));
	/* Text in, text out; ids in (or no tokenizer), ids out. */
	run->text_out = rt_has_tok(run) && !o->tokens && !o->show_ids;
	if (o->verbose) {
		fprintf(stderr, "%s: prompt: %lld tokens:", rt_prog, (long long)run->n_prompt);
		for (int64_t i = 0; i < run->n_prompt; i++)
			fprintf(stderr, "%s%d", i ? "," : " ", (int)run->prompt[i]);
		fprintf(stderr, "\n");
	}
	return 0;
}

/* ---- context size ------------------------------------------------------ */

/* The model's training context, capped so that the KV cache stays under a quarter of RAM
 * (a long-context model would otherwise ask for more cache than the machine has). */
static int64_t rt_default_ctx(void)
{
	int64_t want = bn_model_n_ctx_train(NULL) > 0 ? bn_model_n_ctx_train(NULL) : 4096;
	int64_t lo = bn_model_default_ctx(NULL);
	if (lo < want)
		fprintf(stderr,
			"%s: context capped at %lld tokens (the model was trained on %lld) so that "
			"the KV cache (%.1f MiB) stays under 25%% of RAM (%.0f MiB); -c sets it\n",
			rt_prog, (long long)lo, (long long)want,
			rt_mib(bn_model_kv_bytes(NULL, (int32_t)lo)), rt_mib(rt_phys_ram()));
	return lo;
}

/* ---- setting up and tearing down --------------------------------------- */

int rt_open_flags(const RtOpts *o)
{
	return (o->mmap ? BN_OPEN_MMAP : 0) | (o->mlock ? BN_OPEN_MLOCK : 0);
}

void rt_progress_line(void *user, uint64_t done, uint64_t total)
{
	RtProgress *p = user;
	double t = rt_now() - p->t0;
	if (t < 1.0 || (!p->tty && done < total))
		return;
	if (p->tty) {
		fprintf(stderr, "\r%s: loading the weights: %3d%% (%.0f of %.0f MiB, %.1f s)", rt_prog,
			total ? (int)(done * 100 / total) : 100, rt_mib(done), rt_mib(total), t);
		p->shown = 1;
		if (done < total)
			return;
	} else {
		fprintf(stderr, "%s: loaded the weights: %.0f MiB in %.1f s", rt_prog,
			rt_mib(total), t);
	}
	fprintf(stderr, "\n");
	p->shown = 0;
}

/* bn_model_open_progress with the progress line, for the runs that decode, --info and
 * --verify. */
static bn_model *rt_open_model(const RtOpts *o, const char *argv0, int flags, int *code,
			       char *err, size_t err_len)
{
	RtProgress p = {.t0 = rt_now(), .tty = isatty(2)};
	bn_model *m = bn_model_open_progress(o->weights_file, argv0, flags | rt_open_flags(o),
					     rt_progress_line, &p, code, err, err_len);
	if (p.shown) /* the copy failed half way */
		fprintf(stderr, "\n");
	return m;
}

/* Opens the model: the CPU state, the weights and the tokenizer in them (once). */
static int rt_run_map(const RtOpts *o, const char *argv0, RtRun *run)
{
	char err[1024];
	int code = 0;
	if (run->m)
		return 0;
	if (!(run->m = rt_open_model(o, argv0, 0, &code, err, sizeof err)))
		return code == BN_E_CPU_MASK ? rt_usage("%s", err)
		       : code == BN_E_DEVICE ? rt_complain(RT_EXIT_DEVICE, "%s", err)
					     : rt_fail("%s", err);
	return 0;
}

/* The context: n_seq sequences of n_ctx positions each (1 but for --perplexity). */
static int rt_run_setup(const RtOpts *o, const char *argv0, int64_t n_ctx, int32_t n_seq,
			RtRun *run)
{
	int rc = rt_run_map(o, argv0, run);
	if (rc)
		return rc;
	char err[1024];
	int code = 0;
	run->ctx = bn_ctx_new_seq(run->m, (int32_t)n_ctx, n_seq, o->threads, &code, err,
				  sizeof err);
	if (!run->ctx)
		return code == BN_E_CTX ? rt_fail("%s (try a smaller -c)", err) : rt_fail("%s", err);
	bn_ctx_set_ubatch(run->ctx, (int32_t)o->ubatch);
	size_t rows = (size_t)bn_ctx_ubatch(run->ctx) * (size_t)bn_model_n_vocab(run->m);
	run->logits = malloc(rows * sizeof *run->logits);
	if (!run->logits)
		return rt_fail("cannot allocate logits (%.1f MiB)", rt_mib(rows * sizeof(float)));
	return 0;
}

static void rt_run_free(RtRun *run)
{
	bn_ctx_free(run->ctx);
	free(run->logits);
	bn_sampler_free(run->smp);
	bn_model_close(run->m);
	free(run->prompt);
	if (run->lf)
		fclose(run->lf);
}

/* ---- evaluation -------------------------------------------------------- */

/* One decode (bn_decode_ex with flags). A failure stops the run: an activation or a logit
 * that is NaN or infinite (the weights are broken or overflow float, and every token after
 * it would be noise), the OS refusing the model's CPU state. */
static int rt_decode(RtRun *run, const int32_t *toks, int64_t n, float *logits, int flags)
{
	if (bn_decode_ex(run->ctx, toks, (int32_t)n, logits, flags))
		return rt_fail("%s", bn_ctx_last_error(run->ctx));
	return 0;
}

/* Evaluates toks[0..n) at the end of the context in calls of bn_decode_split's sizes, only
 * the final call computing logits (its last row, into run->logits). Returns seconds spent
 * in forward calls. */
static int rt_eval(RtRun *run, const int32_t *toks, int64_t n, double *secs)
{
	double t = rt_now();
	if (rt_decode(run, toks, n, run->logits, BN_DECODE_LAST))
		return RT_EXIT_RUNTIME;
	*secs = rt_now() - t;
	return 0;
}

/* ---- output ------------------------------------------------------------ */

/* stdout after a write: 0, or an error (a full disk, a closed pipe) that stops the run,
 * since what follows would be lost too. */
int rt_stdout_ok(void)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		return rt_fail("cannot write to standard output: %s", strerror(errno));
	return 0;
}

/* Where the generation's output goes: stdout (text or ids) and --logits-out. */
typedef struct {
	const RtOpts *o;
	RtRun *run;
	int rc; /* an exit code once the output failed (the message printed) */
} RtOut;

static int rt_out_text(void *user, const char *text, size_t len)
{
	RtOut *w = user;
	fwrite(text, 1, len, stdout);
	return (w->rc = rt_stdout_ok()) != 0;
}

static int rt_out_id(void *user, int32_t tok)
{
	RtOut *w = user;
	printf("%s%d", w->run->n_out++ ? " " : "", (int)tok);
	return (w->rc = rt_stdout_ok()) != 0;
}

static int rt_out_logits(void *user, const float *rows, int32_t n)
{
	RtOut *w = user;
	RtErr e = {0};
	if (rt_write_f32(w->run->lf, w->o->logits_out, rows,
			 (size_t)n * (size_t)bn_model_n_vocab(w->run->m), &e))
		w->rc = rt_fail("%s", e.msg);
	return w->rc != 0;
}

/* The generation parameters of a run: text or ids to stdout, rows to --logits-out. */
static bn_generate_params rt_out_params(const RtOpts *o, RtRun *run, RtOut *w)
{
	bn_generate_params p = bn_generate_defaults();
	*w = (RtOut){o, run, 0};
	p.user = w;
	/* whole UTF-8 characters: a broken one, or one unfinished at the end, is U+FFFD */
	p.flags = (o->ignore_eos ? BN_GEN_IGNORE_EOG : 0) |
		  (o->special ? BN_GEN_SPECIAL : 0);
	if (run->text_out)
		p.on_text = rt_out_text;
	else
		p.on_token = rt_out_id;
	if (run->lf) {
		p.on_logits = rt_out_logits;
		p.flags |= BN_GEN_PROMPT_LOGITS;
	}
	return p;
}

/* Ends the output: a newline (bn_generate gave what the text held back). */
static int rt_put_end(RtRun *run)
{
	printf("\n");
	run->n_out = 0;
	return rt_stdout_ok();
}

/* After bn_generate: 0, or the exit code of a failure, printed. What was printed keeps
 * its line when the failure came after a token. */
static int rt_gen_done(RtRun *run, const RtOut *w, int rc, const bn_generate_result *r)
{
	if (w->rc)
		return w->rc;
	if (rc && r->n_generated)
		rt_put_end(run);
	if (rc)
		return rt_fail("%s", bn_ctx_last_error(run->ctx));
	return rt_put_end(run);
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
	int64_t n_ctx = bn_ctx_n_ctx(run->ctx);
	bn_sampler_params sp = o->sp;
	sp.repeat_last_n = (int32_t)(o->repeat_last_n < 0 || o->repeat_last_n > n_ctx
					     ? n_ctx : o->repeat_last_n);
	if (!o->seed_given)
		sp.seed = bn_seed_random();
	if (sp.temp > 0)
		fprintf(stderr,
			"%s: sampling: seed %llu, temp %.2f, top_k %d, top_p %.2f, min_p %.2f, "
			"repeat_penalty %.2f, presence %.2f, frequency %.2f (last %d)\n",
			rt_prog, (unsigned long long)sp.seed, sp.temp, sp.top_k, sp.top_p, sp.min_p,
			sp.repeat_penalty, sp.presence_penalty, sp.frequency_penalty,
			sp.repeat_last_n);
	else
		fprintf(stderr, "%s: sampling: greedy (temp <= 0), repeat_penalty %.2f, presence "
			"%.2f, frequency %.2f (last %d)\n",
			rt_prog, sp.repeat_penalty, sp.presence_penalty, sp.frequency_penalty,
			sp.repeat_last_n);
	/* the sampler never picks the rows of a padded vocabulary, which have no text */
	if (!(run->smp = bn_sampler_new(run->m, &sp)))
		return rt_fail("out of memory for the sampler");
	return 0;
}

/* ---- Ctrl-C ------------------------------------------------------------- */

/* llama-cli's habit: Ctrl-C during a reply stops it (the context keeps what was decoded);
 * in -cnv and -i that returns to the input line, where (or with a second Ctrl-C before the
 * reply stopped) it exits with the timings. The handler only sets flags and asks the
 * context to stop (bn_ctx_cancel is safe in a signal handler). */
static bn_ctx *volatile rt_sig_ctx;
static volatile sig_atomic_t rt_sig_busy, rt_sig_count, rt_sig_exit;

#define RT_EXIT_SIGINT 130

static void rt_on_sigint(int sig)
{
	(void)sig;
	if (!rt_sig_busy || rt_sig_count++ > 0)
		rt_sig_exit = 1;
	if (rt_sig_ctx)
		bn_ctx_cancel(rt_sig_ctx, 1);
}

/* Installs the handler for run's context (without SA_RESTART, so that a read of the next
 * input line returns); NULL puts the default back. */
static void rt_sigint_install(RtRun *run)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = run ? rt_on_sigint : SIG_DFL;
	rt_sig_ctx = run ? run->ctx : NULL;
	rt_sig_busy = rt_sig_count = rt_sig_exit = 0;
	sigaction(SIGINT, &sa, NULL);
}

/* A reply starts (busy) or ends; the Ctrl-Cs counted so far are forgotten when it starts. */
static void rt_sig_reply(int busy)
{
	if (busy)
		rt_sig_count = 0;
	rt_sig_busy = busy;
}

/* ---- generation ---------------------------------------------------------- */

/* The prompt as llama-cli shows it before the reply: its tokens' text (control tokens only
 * with -sp). */
static int rt_echo_prompt(const RtOpts *o, RtRun *run)
{
	if (!run->text_out || o->no_display_prompt || (!o->prompt && !o->prompt_file))
		return 0;
	char piece[256];
	for (int64_t i = 0; i < run->n_prompt; i++) {
		int32_t n = bn_token_to_piece_ex(run->m, run->prompt[i], o->special, piece,
						 (int32_t)sizeof piece);
		if (n > 0)
			fwrite(piece, 1, (size_t)(n < (int32_t)sizeof piece ? n : (int32_t)sizeof piece),
			       stdout);
	}
	return rt_stdout_ok();
}

static int rt_generate(const RtOpts *o, RtRun *run)
{
	RtErr e = {0};
	int rc = rt_sampler_setup(o, run);
	if (rc)
		return rc;
	RtOut w;
	bn_generate_params p = rt_out_params(o, run, &w);
	p.max_tokens = (int32_t)o->n_predict;
	if (!run->lf) /* the last token needs feeding only for its logits row */
		p.flags |= BN_GEN_SKIP_LAST;
	bn_generate_result r;
	if ((rc = rt_echo_prompt(o, run)))
		return rc;
	rt_sig_reply(1);
	rc = bn_generate(run->ctx, run->smp, run->prompt, (int32_t)run->n_prompt, &p, &r);
	rt_sig_reply(0);
	if (rc == BN_E_CANCELLED) { /* Ctrl-C: what came so far, then the timings */
		rt_put_end(run);
		rt_print_stats(run, r.prompt_s, r.n_prompt, r.gen_s, r.n_decoded);
		return RT_EXIT_SIGINT;
	}
	if ((rc = rt_gen_done(run, &w, rc, &r)))
		return rc;
	if (run->lf) {
		FILE *f = run->lf;
		run->lf = NULL;
		if (rt_f32_close(f, o->logits_out, &e))
			return rt_fail("%s", e.msg);
	}
	rt_print_stats(run, r.prompt_s, run->n_prompt, r.gen_s, r.n_decoded);
	return 0;
}

/* ---- -i: interactive text ----------------------------------------------- */

/* One reply of -i: the text printed as it comes, its last bytes kept to spot a reverse
 * prompt, and the last token generated (a stop leaves it undecoded: it goes first next). */
typedef struct {
	RtOut out; /* first: the RtOut callbacks take it */
	char tail[1024];
	size_t n_tail;
	int32_t last;
} RtInter;

static int rt_inter_token(void *user, int32_t tok)
{
	((RtInter *)user)->last = tok;
	return 0;
}

/* Prints the text; nonzero (stop, the text stays printed) once it holds a reverse prompt
 * that the new text completed. */
static int rt_inter_text(void *user, const char *text, size_t len)
{
	RtInter *it = user;
	if (rt_out_text(&it->out, text, len))
		return 1;
	if (len >= sizeof it->tail) {
		text += len - (sizeof it->tail - 1);
		len = sizeof it->tail - 1;
	}
	if (it->n_tail + len >= sizeof it->tail) {
		size_t drop = it->n_tail + len - (sizeof it->tail - 1);
		memmove(it->tail, it->tail + drop, it->n_tail - drop);
		it->n_tail -= drop;
	}
	memcpy(it->tail + it->n_tail, text, len);
	it->n_tail += len;
	it->tail[it->n_tail] = 0;
	const RtOpts *o = it->out.o;
	for (int k = 0; k < o->n_rev; k++) {
		size_t rl = strlen(o->rev[k]);
		/* where a match would end in the new text: start at most rl - 1 bytes before it */
		size_t from = it->n_tail > len + rl ? it->n_tail - len - rl + 1 : 0;
		if (rl < sizeof it->tail && strstr(it->tail + from, o->rev[k]))
			return 1;
	}
	return 0;
}

/* The user's next line as tokens (after the token a stop left undecoded, if any), with
 * --in-prefix / --in-suffix around it and its newline. 0 with *n tokens; -1 at the end of
 * input; or an exit code. */
static int rt_inter_read(const RtOpts *o, RtRun *run, int32_t pending, int32_t **toks,
			 int64_t *n, char **line, size_t *cap)
{
	if (isatty(0)) {
		fprintf(stderr, "\n> ");
		fflush(stderr);
	}
	if (o->in_prefix && (fputs(o->in_prefix, stdout), rt_stdout_ok()))
		return RT_EXIT_RUNTIME;
	errno = 0;
	ssize_t len = rt_sig_exit ? -1 : getline(line, cap, stdin);
	if (len < 0 && rt_sig_exit)
		return RT_EXIT_SIGINT;
	if (len < 0)
		return ferror(stdin) ? rt_fail("cannot read from standard input: %s",
					       errno ? strerror(errno) : "read error")
				     : -1;
	while (len && ((*line)[len - 1] == '\n' || (*line)[len - 1] == '\r'))
		(*line)[--len] = 0;
	if (memchr(*line, 0, (size_t)len))
		return rt_usage("-i: an input line holds a NUL byte: text cannot hold NUL bytes");
	if (o->in_suffix && (fputs(o->in_suffix, stdout), rt_stdout_ok()))
		return RT_EXIT_RUNTIME;
	const char *pre = o->in_prefix ? o->in_prefix : "", *suf = o->in_suffix ? o->in_suffix : "";
	size_t tl = strlen(pre) + (size_t)len + 1 + strlen(suf);
	char *text = malloc(tl + 1);
	if (!text)
		return rt_fail("out of memory");
	snprintf(text, tl + 1, "%s%s\n%s", pre, *line, suf);
	int32_t *ids = NULL;
	int k = 0, rc = rt_encode(run->m, text, tl, o->no_special ? 0 : BN_TOKENIZE_PARSE_SPECIAL,
				  &ids, &k);
	free(text);
	if (rc)
		return rt_fail("-i: tokenizer: %s", bn_strerror(rc));
	int32_t *all = malloc(((size_t)k + 1) * sizeof *all);
	if (!all) {
		free(ids);
		return rt_fail("out of memory");
	}
	*n = 0;
	if (pending >= 0)
		all[(*n)++] = pending;
	memcpy(all + *n, ids, (size_t)k * sizeof *ids);
	*n += k;
	free(ids);
	free(*toks);
	*toks = all;
	return 0;
}

/* -i: the prompt's reply, then turn by turn the user's line and the text that follows it,
 * all in one context, until the end of input, a full context or Ctrl-C at the input. */
static int rt_interact(const RtOpts *o, RtRun *run)
{
	int rc = rt_sampler_setup(o, run);
	if (rc || (rc = rt_echo_prompt(o, run)))
		return rc;
	int64_t n_ctx = bn_ctx_n_ctx(run->ctx), n = run->n_prompt;
	int32_t *toks = NULL, pending = -1;
	const int32_t *cur = run->prompt;
	double pp_s = 0, tg_s = 0;
	int64_t pp_n = 0, tg_n = 0;
	char *line = NULL;
	size_t cap = 0;
	for (;;) {
		RtInter it = {.last = -1};
		bn_generate_params p = rt_out_params(o, run, &it.out);
		p.user = &it;
		p.on_text = rt_inter_text;
		p.on_token = rt_inter_token;
		p.max_tokens = o->n_given ? (int32_t)o->n_predict : -1;
		bn_generate_result r;
		rt_sig_reply(1);
		rc = bn_generate(run->ctx, run->smp, cur, (int32_t)n, &p, &r);
		rt_sig_reply(0);
		pp_s += r.prompt_s;
		pp_n += r.n_prompt;
		tg_s += r.gen_s;
		tg_n += r.n_decoded;
		if (it.out.rc) {
			rc = it.out.rc;
			break;
		}
		if (rc == BN_E_CANCELLED) {
			rc = rt_sig_exit ? RT_EXIT_SIGINT : 0;
			if (rc)
				break;
		} else if (rc) {
			rc = rt_fail("%s", bn_ctx_last_error(run->ctx));
			break;
		}
		if (r.stop == BN_STOP_CTX_FULL) {
			fprintf(stderr, "\n%s: the context (%lld tokens) is full\n", rt_prog,
				(long long)n_ctx);
			break;
		}
		pending = r.n_generated > r.n_decoded && it.last >= 0 ? it.last : -1;
		do
			rc = rt_inter_read(o, run, pending, &toks, &n, &line, &cap);
		while (!rc && n == 0);
		if (rc)
			break;
		if (bn_ctx_pos(run->ctx) + n + 1 > n_ctx) {
			fprintf(stderr, "%s: this input (%lld tokens) does not fit the context of %lld "
				"tokens (-c)\n", rt_prog, (long long)n, (long long)n_ctx);
			break;
		}
		cur = toks;
	}
	free(line);
	free(toks);
	if (rc == -1)
		rc = 0; /* the end of input */
	if (rc == 0 || rc == RT_EXIT_SIGINT) {
		rt_put_end(run);
		rt_print_stats(run, pp_s, pp_n, tg_s, tg_n);
	}
	return rc;
}

/* ---- -cnv: interactive chat -------------------------------------------- */

/* One conversation (bn_chat: each turn evaluates only its own tokens after the ones
 * before) and what the program reports about it. */
typedef struct {
	bn_chat *ch;
	int turn;
	double pp_s, tg_s;
	int64_t pp_n, tg_n;
} RtChat;

/* One user turn and the reply, printed as it comes. */
static int rt_chat_turn(const RtOpts *o, RtRun *run, RtChat *c, const char *user)
{
	int64_t n_ctx = bn_ctx_n_ctx(run->ctx);
	int32_t n = 0;
	int restarted = 0;
	int rc = bn_chat_prepare(c->ch, user, &n, &restarted);
	if (restarted)
		fprintf(stderr, "%s: the context (%lld tokens) is full: starting a new conversation\n",
			rt_prog, (long long)n_ctx);
	if (rc == BN_E_CTX) {
		fprintf(stderr, "%s: this message (%d tokens) does not fit the context of %lld "
			"tokens (-c): skipped\n", rt_prog, (int)n, (long long)n_ctx);
		return 0;
	}
	if (rc)
		return rt_fail("%s", bn_ctx_last_error(run->ctx));
	int64_t pos = bn_ctx_pos(run->ctx);
	if (o->verbose)
		fprintf(stderr, "%s: turn %d: evaluated %d tokens at positions %lld..%lld\n", rt_prog,
			c->turn + 1, (int)n, (long long)pos, (long long)(pos + n - 1));
	c->turn++;
	RtOut w;
	bn_generate_params p = rt_out_params(o, run, &w);
	p.max_tokens = o->n_given ? (int32_t)o->n_predict : -1;
	bn_generate_result r;
	rt_sig_reply(1);
	rc = bn_chat_reply(c->ch, &p, &r);
	rt_sig_reply(0);
	c->pp_s += r.prompt_s;
	c->pp_n += r.n_prompt;
	c->tg_s += r.gen_s;
	c->tg_n += r.n_decoded;
	if (rc == BN_E_CANCELLED) { /* Ctrl-C: the reply stops, the conversation goes on */
		rt_put_end(run);
		return rt_sig_exit ? RT_EXIT_SIGINT : 0;
	}
	if ((rc = rt_gen_done(run, &w, rc, &r)))
		return rc;
	if (o->verbose)
		fprintf(stderr, "%s: turn %d: generated %lld tokens, %lld of %lld positions used\n",
			rt_prog, c->turn, (long long)r.n_decoded, (long long)bn_ctx_pos(run->ctx),
			(long long)n_ctx);
	if (r.stop == BN_STOP_CTX_FULL) /* bn_chat starts the next turn over */
		fprintf(stderr, "%s: the context (%lld tokens) is full: starting a new conversation\n",
			rt_prog, (long long)n_ctx);
	return 0;
}

/* The name of the template -cnv uses: --chat-template, else the one built in ("none"). */
static const char *rt_chat_pick(const RtOpts *o)
{
	const char *name = bn_chat_template_name(NULL, o->chat_template);
	return name ? name : "none";
}

int rt_chat_check(const RtOpts *o)
{
	if (bn_model_tokenizer_status(NULL, NULL, 0) != BN_OK)
		return rt_usage("-cnv needs a tokenizer, and this program was built without one");
	if (!strcmp(rt_chat_pick(o), "none"))
		return rt_usage("-cnv: this model has no chat template that bitnetc knows: name one "
				"with --chat-template bitnet|llama3");
	return 0;
}

/* Reads user turns, one per line, until /exit or the end of input. */
static int rt_chat(const RtOpts *o, RtRun *run)
{
	RtChat c = {0};
	char why[256];
	if (bn_chat_check(run->m, o->chat_template, why, sizeof why) != BN_OK)
		return rt_fail("-cnv: %s; pick the template the model was trained with "
			       "(--chat-template)", why);
	int rc = rt_sampler_setup(o, run);
	if (rc)
		return rc;
	if (!(c.ch = bn_chat_new(run->ctx, run->smp, o->chat_template, o->system, &rc, why,
				 sizeof why)))
		return rt_fail("-cnv: %s", why);
	run->text_out = !o->show_ids;
	int tty = isatty(0);
	if (tty)
		fprintf(stderr, "%s: chat (%s template); /reset starts over, /exit quits\n", rt_prog,
			rt_chat_pick(o));
	char *line = NULL;
	size_t cap = 0;
	for (long long lineno = 1;; lineno++) {
		if (tty) {
			fprintf(stderr, "> ");
			fflush(stderr);
		}
		errno = 0;
		ssize_t len = rt_sig_exit ? -1 : getline(&line, &cap, stdin);
		if (len < 0 && rt_sig_exit) { /* Ctrl-C at the input line */
			fputc('\n', stderr);
			rc = RT_EXIT_SIGINT;
			break;
		}
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
			bn_chat_reset(c.ch);
			fprintf(stderr, "%s: conversation reset\n", rt_prog);
			continue;
		}
		if (!len)
			continue;
		if ((rc = rt_chat_turn(o, run, &c, line)))
			break;
	}
	free(line);
	bn_chat_free(c.ch);
	if (!rc || rc == RT_EXIT_SIGINT)
		rt_print_stats(run, c.pp_s, c.pp_n, c.tg_s, c.tg_n);
	return rc;
}

/* ---- --bench ----------------------------------------------------------- */

/* The resident set now (/proc/self/statm) and its peak (getrusage), in bytes; 0 unknown. */
static void rt_rss(uint64_t *rss, uint64_t *peak)
{
	*rss = *peak = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long long size, res;
	long pg = sysconf(_SC_PAGESIZE);
	if (f && fscanf(f, "%llu %llu", &size, &res) == 2 && pg > 0)
		*rss = res * (uint64_t)pg;
	if (f)
		fclose(f);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		*peak = (uint64_t)ru.ru_maxrss * 1024; /* kilobytes on Linux */
	if (*peak < *rss)
		*peak = *rss;
}

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

/* --bench --profile: one phase's counters (bn_ctx_profile_read), summed over the reps */
typedef struct {
	bn_profile_row row[BN_PROFILE_FAMILIES];
	double fwd_s;
	int64_t fwds;
} RtProf;

static void rt_prof_add(const RtRun *run, RtProf *acc)
{
	bn_profile_row r[BN_PROFILE_FAMILIES];
	double s;
	int64_t n;
	if (bn_ctx_profile_read(run->ctx, r, &s, &n))
		return;
	for (int i = 0; i < BN_PROFILE_FAMILIES; i++) {
		acc->row[i].family = r[i].family;
		acc->row[i].seconds += r[i].seconds;
		acc->row[i].calls += r[i].calls;
	}
	acc->fwd_s += s;
	acc->fwds += n;
}

static int rt_cmp_prof(const void *a, const void *b)
{
	double x = ((const bn_profile_row *)a)->seconds, y = ((const bn_profile_row *)b)->seconds;
	return x > y ? -1 : x < y;
}

static int rt_max_int(int a, int b)
{
	return a > b ? a : b;
}

/* A markdown table's rule of n columns, right-aligned (ending in ':') or not. */
static void rt_dashes(int n, int right)
{
	for (int i = 0; i < n - right; i++)
		putchar('-');
	if (right)
		putchar(':');
}

/* One phase's table (test: "pp128", "tg32"): per family, largest first, ms per forward,
 * its share of the forward's time and calls per forward; or its JSON object. */
static void rt_prof_report(const RtOpts *o, const char *test, const RtProf *pr)
{
	bn_profile_row r[BN_PROFILE_FAMILIES];
	memcpy(r, pr->row, sizeof r);
	qsort(r, BN_PROFILE_FAMILIES, sizeof r[0], rt_cmp_prof);
	double fwds = pr->fwds > 0 ? (double)pr->fwds : 1, sum = 0;
	for (int i = 0; i < BN_PROFILE_FAMILIES; i++)
		sum += r[i].seconds;
	if (o->json) {
		printf("\"%s\": {\"forwards\": %lld, \"forward_ms\": %.4f, \"families_ms\": %.4f, "
		       "\"families\": [",
		       test, (long long)pr->fwds, pr->fwd_s * 1e3 / fwds, sum * 1e3 / fwds);
		for (int i = 0, k = 0; i < BN_PROFILE_FAMILIES; i++) {
			if (!r[i].calls)
				continue;
			printf("%s{\"family\": \"%s\", \"ms\": %.4f, \"pct\": %.2f, \"calls\": %.2f}",
			       k++ ? ", " : "", r[i].family, r[i].seconds * 1e3 / fwds,
			       pr->fwd_s > 0 ? 100 * r[i].seconds / pr->fwd_s : 0.0,
			       (double)r[i].calls / fwds);
		}
		printf("]}");
		return;
	}
	if (!pr->fwds) {
		printf("\nprofile %s: no forward was timed (the model's backend does not time its "
		       "kernels)\n", test);
		return;
	}
	printf("\nprofile %s: %lld forwards, %.3f ms per forward (the families: %.3f ms)\n", test,
	       (long long)pr->fwds, pr->fwd_s * 1e3 / fwds, sum * 1e3 / fwds);
	printf("| %-10s | %10s | %6s | %8s |\n", "family", "ms/forward", "%", "calls");
	printf("| ---------- | ---------: | -----: | -------: |\n");
	for (int i = 0; i < BN_PROFILE_FAMILIES; i++)
		if (r[i].calls)
			printf("| %-10s | %10.3f | %5.1f%% | %8.1f |\n", r[i].family,
			       r[i].seconds * 1e3 / fwds,
			       pr->fwd_s > 0 ? 100 * r[i].seconds / pr->fwd_s : 0.0,
			       (double)r[i].calls / fwds);
}

static void rt_bench_report(const RtOpts *o, const RtRun *run, const double *pp, const double *tg,
			    const RtProf *prof)
{
	double ppm = 0, pps = 0, tgm = 0, tgs = 0;
	if (o->pp)
		rt_stats(pp, o->reps, &ppm, &pps);
	if (o->tg)
		rt_stats(tg, o->reps, &tgm, &tgs);
	int th = bn_ctx_n_threads(run->ctx);
	const char *name = bn_model_meta(run->m, "name");
	uint64_t rss_end, peak;
	rt_rss(&rss_end, &peak); /* after decoding: a lazy mapping's pages are in by now */
	uint64_t wbytes = (uint64_t)bn_model_meta_int(run->m, "weights_bytes");
	if (o->json) {
		printf("{\"model\": ");
		rt_json_str(name);
		printf(", \"arch\": ");
		rt_json_str(bn_model_meta(run->m, "arch"));
		printf(", \"target\": ");
		rt_json_str(bn_model_meta(run->m, "target"));
		printf(", \"pipeline\": ");
		rt_json_str(bn_model_meta(run->m, "pipeline"));
		printf(", \"version\": ");
		rt_json_str(bn_model_meta(run->m, "version"));
		printf(", \"weights_bytes\": %llu, \"threads\": %d, \"n_ctx\": %lld, "
		       "\"n_prompt\": %lld, \"n_gen\": %lld, \"reps\": %lld, "
		       "\"pp_tok_s\": %.3f, \"pp_tok_s_sd\": %.3f, \"tg_tok_s\": %.3f, "
		       "\"tg_tok_s_sd\": %.3f",
		       (unsigned long long)wbytes, th, (long long)bn_ctx_n_ctx(run->ctx),
		       (long long)o->pp, (long long)o->tg, (long long)o->reps, ppm, pps, tgm, tgs);
		rt_json_samples("pp_samples", pp, o->pp ? o->reps : 0);
		rt_json_samples("tg_samples", tg, o->tg ? o->reps : 0);
		printf(", \"weights_held\": ");
		rt_json_str(bn_model_meta(run->m, "weights_held"));
		printf(", \"weights_copied\": %d, \"weights_huge_pages\": %lld, "
		       "\"weights_load_s\": %.3f, \"load_ms\": %.1f, \"rss_mib\": %.1f, "
		       "\"peak_rss_mib\": %.1f",
		       (int)bn_model_meta_int(run->m, "weights_copied"),
		       (long long)bn_model_meta_int(run->m, "weights_huge_pages"),
		       (double)bn_model_meta_int(run->m, "weights_load_us") * 1e-6, run->t_load_ms,
		       rt_mib(run->rss), rt_mib(peak));
		if (o->profile) {
			printf(", \"profile\": {");
			if (o->pp)
				rt_prof_report(o, "pp", &prof[0]);
			if (o->tg) {
				printf("%s", o->pp ? ", " : "");
				rt_prof_report(o, "tg", &prof[1]);
			}
			printf("}");
		}
		printf("}\n");
		return;
	}
	/* llama-bench's table, its columns as wide as their widest cell */
	char size[32], test[2][32], tps[2][64];
	snprintf(size, sizeof size, "%.2f MiB", rt_mib(wbytes));
	snprintf(test[0], sizeof test[0], "pp%lld", (long long)o->pp);
	snprintf(test[1], sizeof test[1], "tg%lld", (long long)o->tg);
	snprintf(tps[0], sizeof tps[0], "%.2f ± %.2f", ppm, pps);
	snprintf(tps[1], sizeof tps[1], "%.2f ± %.2f", tgm, tgs);
	int wn = rt_max_int(24, (int)strlen(name)), ws = rt_max_int(10, (int)strlen(size));
	int wt = rt_max_int(8, rt_max_int((int)strlen(test[0]), (int)strlen(test[1])));
	/* "±" is two bytes and one column */
	int wr = rt_max_int(20, rt_max_int((int)strlen(tps[0]), (int)strlen(tps[1])) - 1);
	printf("| %-*s | %*s | %7s | %*s | %*s |\n", wn, "model", ws, "size", "threads", wt,
	       "test", wr + 1, "t/s (median ± sd)");
	printf("| ");
	rt_dashes(wn, 0);
	printf(" | ");
	rt_dashes(ws, 1);
	printf(" | ------: | ");
	rt_dashes(wt, 1);
	printf(" | ");
	rt_dashes(wr, 1);
	printf(" |\n");
	for (int k = 0; k < 2; k++)
		if (k ? o->tg : o->pp)
			printf("| %-*s | %*s | %7d | %*s | %*s |\n", wn, name, ws, size, th, wt,
			       test[k], wr + 1, tps[k]);
	printf("(%lld reps; weights %s)\n", (long long)o->reps,
	       bn_model_meta_int(run->m, "weights_embedded") == 1
		       ? "embedded" : bn_model_meta(run->m, "weights_path"));
	printf("(weights %s; ready in %.0f ms, RSS %.0f MiB when ready, peak %.0f MiB)\n",
	       bn_model_meta(run->m, "weights_held"), run->t_load_ms, rt_mib(run->rss),
	       rt_mib(peak));
	if (o->profile && o->pp)
		rt_prof_report(o, test[0], &prof[0]);
	if (o->profile && o->tg)
		rt_prof_report(o, test[1], &prof[1]);
}

/* One prefill of pp tokens (logits only for the last chunk) and tg decode steps per rep,
 * each rep from position 0; reports tokens/s per rep. */
static int rt_bench(const RtOpts *o, RtRun *run)
{
	int64_t nv = bn_model_n_vocab(run->m), total = o->pp + o->tg;
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
	/* One untimed warm-up: pages the weights in and wakes the threads. --profile: the
	 * timed reps' prefill and decode forwards, each phase apart (prof[0], prof[1]). */
	int rc = 0;
	RtProf prof[2];
	memset(prof, 0, sizeof prof);
	for (int r = -1; r < o->reps && !rc; r++) {
		double secs = 0;
		bn_ctx_reset(run->ctx);
		if (o->profile && r >= 0 && (rc = bn_ctx_profile(run->ctx, 1)))
			break;
		if (o->pp && (rc = rt_eval(run, toks, o->pp, &secs)))
			break;
		if (r >= 0 && o->pp)
			pp[r] = (double)o->pp / (secs > 0 ? secs : 1e-9);
		if (o->profile && r >= 0) {
			rt_prof_add(run, &prof[0]);
			if ((rc = bn_ctx_profile(run->ctx, 1)))
				break;
		}
		int64_t steps = r < 0 ? (o->tg ? 1 : 0) : o->tg;
		double t = rt_now();
		for (int64_t j = 0; j < steps && !rc; j++)
			rc = rt_decode(run, &toks[o->pp + j], 1, run->logits, BN_DECODE_LAST);
		secs = rt_now() - t;
		if (r >= 0 && o->tg)
			tg[r] = (double)o->tg / (secs > 0 ? secs : 1e-9);
		if (o->profile && r >= 0)
			rt_prof_add(run, &prof[1]);
	}
	bn_ctx_profile(run->ctx, 0);
	if (rc == BN_E_NOMEM)
		rc = rt_fail("out of memory for --profile");
	if (!rc)
		rt_bench_report(o, run, pp, tg, prof);
	free(toks);
	free(pp);
	free(tg);
	return rc;
}

/* ---- --info ------------------------------------------------------------ */

/* The tokenizer and chat template lines of --info. */
static int rt_info_tok(const RtOpts *o, const bn_model *m)
{
	char why[512];
	int st = bn_model_tokenizer_status(m, why, sizeof why);
	const char *tmpl = rt_chat_pick(o);
	if (st == BN_E_TOKENIZER) {
		printf("tokenizer:   NOT USABLE: %s\n", why);
		return RT_EXIT_RUNTIME;
	}
	if (st != BN_OK) {
		printf("tokenizer:   none (prompts are token ids)\n");
		printf("chat:        %s\n", tmpl);
		return 0;
	}
	int32_t n = bn_model_n_tokens(m);
	printf("tokenizer:   %d tokens, %llu bytes in the payload\n", (int)n,
	       (unsigned long long)bn_model_meta_int(m, "tok_bytes"));
	printf("bos:         %d%s\n", (int)bn_token_bos(m),
	       bn_model_add_bos(m) ? " (added to prompts)" : " (not added)");
	printf("eog:        ");
	for (int32_t id = 0; id < n; id++)
		if (bn_token_is_eog(m, id)) {
			char buf[64];
			int k = bn_token_to_piece_ex(m, id, 1, buf, (int32_t)sizeof buf);
			printf(" %d %.*s", (int)id, k < 0 ? 0 : k > 64 ? 64 : k, buf);
		}
	printf("\n");
	printf("chat:        %s%s\n", tmpl, o->chat_template ? " (--chat-template)" : "");
	return 0;
}

static int rt_info(const RtOpts *o, const char *argv0)
{
	printf("model:       %s\n", bn_model_meta(NULL, "name"));
	printf("arch:        %s\n", bn_model_meta(NULL, "arch"));
	printf("target:      %s\n", bn_model_meta(NULL, "target"));
	printf("pipeline:    %s\n", bn_model_meta(NULL, "pipeline"));
	printf("bitnetc:     %s\n", bn_model_meta(NULL, "version"));
	printf("n_vocab:     %lld\n", (long long)bn_model_meta_int(NULL, "n_vocab"));
	printf("n_ctx_train: %lld\n", (long long)bn_model_meta_int(NULL, "n_ctx_train"));
	printf("n_layer:     %lld\n", (long long)bn_model_meta_int(NULL, "n_layer"));
	printf("n_embd:      %lld\n", (long long)bn_model_meta_int(NULL, "n_embd"));
	printf("bos, eos:    %lld, %lld\n", (long long)bn_model_meta_int(NULL, "bos"),
	       (long long)bn_model_meta_int(NULL, "eos"));
	const char *cpu = bn_model_meta(NULL, "cpu_features");
	printf("cpu:         %s\n", cpu[0] ? cpu : "baseline");
	char dev[512];
	if (bn_model_device_info(dev, sizeof dev))
		printf("device:      %s\n", dev);
	printf("max_batch:   %lld\n", (long long)bn_model_meta_int(NULL, "max_batch"));
#ifdef BN_SERVER
	printf("server:      --server (built in: needs the shared libraries libmicrohttpd and "
	       "libcjson)\n");
#endif
	printf("templates:  ");
	int32_t sizes[64];
	int32_t ns = bn_model_batch_sizes(NULL, sizes, 64);
	for (int32_t i = 0; i < ns && i < 64; i++)
		printf(" %d", (int)sizes[i]);
	printf(" (tokens per forward function; 1 is the step mode)\n");
	printf("scratch:     %llu bytes\n",
	       (unsigned long long)bn_model_meta_int(NULL, "scratch_bytes"));
	uint64_t wb = (uint64_t)bn_model_meta_int(NULL, "weights_bytes");
	printf("weights:     %llu bytes (%.2f MiB), hash %016llx\n", (unsigned long long)wb,
	       rt_mib(wb), (unsigned long long)bn_model_meta_int(NULL, "weights_hash"));
	char err[1024];
	int rc = RT_EXIT_RUNTIME;
	bn_model *m = rt_open_model(o, argv0, BN_OPEN_INSPECT, NULL, err, sizeof err);
	if (m) {
		printf("weights in:  %s (%s), ok\n", bn_model_meta(m, "weights_path"),
		       bn_model_meta_int(m, "weights_embedded") == 1 ? "embedded" : "file");
		printf("weights:     %s\n", bn_model_meta(m, "weights_held"));
		rc = rt_info_tok(o, m);
		bn_model_close(m);
	} else {
		printf("weights in:  %s, NOT USABLE: %s\n", o->weights_file ? "file" : "embedded",
		       err);
	}
#ifdef BN_WEIGHTS_FILE
	if (!o->weights_file)
		printf("weights in:  expected in a file of their own (--weights-file FILE; bitnetc "
		       "build wrote " BN_WEIGHTS_FILE ")\n");
#endif
	const char *info = bn_model_meta(NULL, "info");
	if (*info)
		printf("\n%s%s", info, info[strlen(info) - 1] == '\n' ? "" : "\n");
	return rc;
}

/* ---- --verify ---------------------------------------------------------- */

/* Hashes every byte of the payload (a normal start compares only the trailer's hash, so
 * that it stays lazy: pages are read as the forward first touches them) and compares it
 * with the hash the program was built with. */
static int rt_verify(const RtOpts *o, const char *argv0)
{
	char err[1024];
	bn_model *m = rt_open_model(o, argv0, BN_OPEN_INSPECT, NULL, err, sizeof err);
	if (!m)
		return rt_fail("%s", err);
	uint64_t size = (uint64_t)bn_model_meta_int(m, "weights_bytes");
	double t = rt_now();
	int rc = bn_model_verify(m, err, sizeof err);
	t = rt_now() - t;
	if (rc)
		rc = rt_fail("%s", err);
	else
		printf("weights OK (%.1f MiB, %.2f GB/s)\n", rt_mib(size),
		       (double)size / (t > 0 ? t : 1e-9) / 1e9);
	bn_model_close(m);
	return rc;
}

/* ---- --perplexity --------------------------------------------------------- */

/* llama-perplexity's default context (its -c), not the model's. */
#define RT_PPL_CTX 512

/* The text of -f as llama-perplexity reads it: one final newline dropped, tokenized once
 * with BOS when the model adds one, special-token text kept as text. A program without a
 * tokenizer reads token ids, as -f does. */
static int rt_ppl_text(const RtOpts *o, RtRun *run)
{
	if (!rt_has_tok(run))
		return rt_prompt_load(o, run);
	char *text = NULL;
	size_t len = 0;
	int rc = rt_read_text(o->prompt_file, &text, &len);
	if (rc)
		return rc;
	const char *nul = memchr(text, 0, len);
	int32_t *ids = NULL;
	int n = 0, code = 0;
	if (nul) {
		rc = rt_usage("-f %s: byte %lld is a NUL: a text cannot hold NUL bytes",
			      o->prompt_file, (long long)(nul - text));
	} else {
		if (len && text[len - 1] == '\n')
			len--;
		code = rt_encode(run->m, text, len, bn_model_add_bos(run->m) ? BN_TOKENIZE_ADD_BOS : 0,
				 &ids, &n);
		if (code)
			rc = rt_fail("-f %s: tokenizer: %s", o->prompt_file, bn_strerror(code));
	}
	free(text);
	run->prompt = ids;
	run->n_prompt = n;
	if (!rc && o->verbose)
		fprintf(stderr, "%s: -f %s: %d tokens\n", rt_prog, o->prompt_file, n);
	return rc;
}

/* Whether a and b name one file (through any link). */
static int rt_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* The file --kl-base writes may not be the text, the weights or this program. */
static int rt_ppl_out_check(const RtOpts *o)
{
	const char *what = rt_same_file(o->kl_base, o->prompt_file)  ? "the text of -f"
			   : rt_same_file(o->kl_base, o->weights_file) ? "the weights file"
			   : rt_same_file(o->kl_base, "/proc/self/exe") ? "this program"
									: NULL;
	if (what)
		return rt_usage("--kl-base %s is %s: the base file is written there (give "
				"--kl-divergence to read it)",
				o->kl_base, what);
	return 0;
}

typedef struct {
	const RtOpts *o;
	RtPplRun *r;
} RtPplShow;

/* After each chunk, on stderr: llama-perplexity's [1]PPL,[2]PPL,... or, comparing, its
 * table row; the time of a pass and the ETA after the first. */
static int rt_ppl_on_chunk(void *user, int64_t ch, double secs)
{
	RtPplShow *s = user;
	RtPplRun *r = s->r;
	if (ch == 0) {
		double eta = secs * (double)r->n_chunk;
		fprintf(stderr, "%s: %.2f seconds per pass - ETA ", rt_prog, secs);
		if (eta >= 3600)
			fprintf(stderr, "%d hours ", (int)(eta / 3600));
		fprintf(stderr, "%.2f minutes\n", fmod((double)(int)eta, 3600) / 60.0);
		if (r->kld)
			fprintf(stderr, "chunk             PPL               ln(PPL(Q)/PPL(base))    "
					"      KL Divergence              Δp RMS            Same top p\n");
	}
	if (!r->kld) {
		fprintf(stderr, "[%lld]%.4f,", (long long)ch + 1, rt_ppl_value(&r->sum));
	} else {
		RtKldStats k;
		rt_kld_stats(r->kld, 0, &k);
		fprintf(stderr, "%4lld    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    "
				"%6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
			(long long)ch + 1, k.ppl, k.ppl_err, k.ln_ratio, k.ln_ratio_err, k.kld, k.kld_err,
			100.0 * k.dp_rms, 100.0 * k.dp_rms_err, 100.0 * k.same_top,
			100.0 * k.same_top_err);
	}
	fflush(stderr);
	return 0;
}

/* A JSON number (null for what JSON cannot hold). */
static void rt_ppl_jnum(const char *key, double v, int comma)
{
	if (isfinite(v))
		printf("\"%s\": %.9g%s", key, v, comma ? ", " : "");
	else
		printf("\"%s\": null%s", key, comma ? ", " : "");
}

/* The comparison's statistics as llama-perplexity prints them. */
static void rt_ppl_kld_report(const RtKldStats *k)
{
	printf("====== Perplexity statistics ======\n");
	printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", k->ppl, k->ppl_err);
	printf("Mean PPL(base)                : %10.6f ± %10.6f\n", k->ppl_base, k->ppl_base_err);
	printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * k->cor);
	printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", k->ln_ratio, k->ln_ratio_err);
	printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", k->ratio, k->ratio_err);
	printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", k->diff, k->diff_err);
	printf("\n====== KL divergence statistics ======\n");
	printf("Mean    KLD: %10.6f ± %10.6f\n", k->kld, k->kld_err);
	printf("Maximum KLD: %10.6f\n", k->kld_max);
	printf("99.9%%   KLD: %10.6f\n", k->kld_p999);
	printf("99.0%%   KLD: %10.6f\n", k->kld_p99);
	printf("Median  KLD: %10.6f\n", k->kld_median);
	printf("10.0%%   KLD: %10.6f\n", k->kld_p10);
	printf(" 5.0%%   KLD: %10.6f\n", k->kld_p05);
	printf(" 1.0%%   KLD: %10.6f\n", k->kld_p01);
	printf("Minimum KLD: %10.6f\n", k->kld_min);
	printf("\n====== Token probability statistics ======\n");
	printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100.0 * k->dp_mean, 100.0 * k->dp_mean_err);
	printf("Maximum Δp: %6.3f%%\n", 100.0 * k->dp_max);
	printf("99.9%%   Δp: %6.3f%%\n", 100.0 * k->dp_p999);
	printf("99.0%%   Δp: %6.3f%%\n", 100.0 * k->dp_p99);
	printf("95.0%%   Δp: %6.3f%%\n", 100.0 * k->dp_p95);
	printf("90.0%%   Δp: %6.3f%%\n", 100.0 * k->dp_p90);
	printf("75.0%%   Δp: %6.3f%%\n", 100.0 * k->dp_p75);
	printf("Median  Δp: %6.3f%%\n", 100.0 * k->dp_median);
	printf("25.0%%   Δp: %6.3f%%\n", 100.0 * k->dp_p25);
	printf("10.0%%   Δp: %6.3f%%\n", 100.0 * k->dp_p10);
	printf(" 5.0%%   Δp: %6.3f%%\n", 100.0 * k->dp_p05);
	printf(" 1.0%%   Δp: %6.3f%%\n", 100.0 * k->dp_p01);
	printf(" 0.1%%   Δp: %6.3f%%\n", 100.0 * k->dp_p001);
	printf("Minimum Δp: %6.3f%%\n", 100.0 * k->dp_min);
	printf("Max   |Δp|: %6.3f%%\n", 100.0 * k->dp_abs_max);
	printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100.0 * k->dp_rms, 100.0 * k->dp_rms_err);
	printf("Same top p: %6.3f ± %5.3f %%\n", 100.0 * k->same_top, 100.0 * k->same_top_err);
}

/* The result: "Final estimate: PPL = X +/- Y" (stdout; stderr with --json, whose object
 * goes to stdout), and the comparison's statistics. */
static int rt_ppl_report(const RtOpts *o, RtPplRun *r, double secs)
{
	double ppl, err;
	if (rt_ppl_final(&r->sum, &ppl, &err))
		fprintf(stderr, "%s: the log-probabilities do not spread (variance <= 0): no error "
				"estimate\n",
			rt_prog);
	FILE *fin = o->json ? stderr : stdout;
	fprintf(fin, "Final estimate: PPL = %.4f +/- %.5f\n", ppl, err);
	RtKldStats k;
	if (r->kld)
		rt_kld_stats(r->kld, 1, &k);
	if (r->kld && !o->json)
		rt_ppl_kld_report(&k);
	if (o->json) {
		printf("{");
		rt_ppl_jnum("ppl", ppl, 1);
		rt_ppl_jnum("ppl_err", err, 1);
		printf("\"chunks\": %lld, \"n_ctx\": %d, \"tokens\": %lld, ", (long long)r->n_chunk,
		       (int)r->n_ctx, (long long)r->sum.count);
		if (r->kld) {
			rt_ppl_jnum("ppl_base", k.ppl_base, 1);
			rt_ppl_jnum("ppl_base_err", k.ppl_base_err, 1);
			rt_ppl_jnum("ln_ppl_ratio", k.ln_ratio, 1);
			rt_ppl_jnum("kld", k.kld, 1);
			rt_ppl_jnum("kld_err", k.kld_err, 1);
			rt_ppl_jnum("kld_median", k.kld_median, 1);
			rt_ppl_jnum("kld_p99", k.kld_p99, 1);
			rt_ppl_jnum("kld_max", k.kld_max, 1);
			rt_ppl_jnum("same_top_pct", 100.0 * k.same_top, 1);
			rt_ppl_jnum("max_dp_pct", 100.0 * k.dp_abs_max, 1);
			rt_ppl_jnum("rms_dp_pct", 100.0 * k.dp_rms, 1);
		}
		if (o->kl_base) {
			printf("\"kl_base\": ");
			rt_json_str(o->kl_base);
			printf(", ");
		}
		rt_ppl_jnum("seconds", secs, 0);
		printf("}\n");
	}
	return rt_stdout_ok();
}

/* The chunks' count and the base file: opened and checked against this text (comparing),
 * or the text long enough (measuring). 0 or an exit code. */
static int rt_ppl_plan(const RtOpts *o, RtRun *run, int32_t n_ctx, int64_t *n_chunk,
		       RtPplBase *base)
{
	*n_chunk = rt_ppl_n_chunk(run->n_prompt, n_ctx, o->chunks);
	if (o->kl_divergence) {
		RtErr e = {0};
		int rc = rt_ppl_base_open(base, o->kl_base, n_ctx, bn_model_n_vocab(run->m),
					  o->chunks_given ? *n_chunk : -1, run->prompt,
					  run->n_prompt, &e);
		if (rc)
			return rc == RT_PPL_BAD || rc == RT_ENOMEM ? rt_fail("--kl-base %s", e.msg)
								    : rt_usage("--kl-base %s", e.msg);
		*n_chunk = base->n_chunk;
		return 0;
	}
	if (run->n_prompt < 2 * (int64_t)n_ctx)
		return rt_usage("-f %s: the text is %lld tokens; perplexity with a context of %d "
				"needs at least %lld (2 x -c, as llama-perplexity asks): give a "
				"longer text or a smaller -c",
				o->prompt_file, (long long)run->n_prompt, (int)n_ctx,
				2 * (long long)n_ctx);
	return o->kl_base ? rt_ppl_out_check(o) : 0;
}

/* --perplexity: the text of -f in chunks of -c, as llama-perplexity; with --kl-base, the
 * scored log-probabilities written to that file, or (--kl-divergence) compared with it. */
static int rt_ppl_session(const RtOpts *o, const char *argv0, RtRun *run)
{
	int32_t n_ctx = o->n_ctx ? (int32_t)o->n_ctx : RT_PPL_CTX;
	int64_t n_chunk = 0;
	RtPplBase base = {0};
	RtPplOut out = {0};
	RtKld kld = {0};
	int rc = rt_run_map(o, argv0, run);
	if (rc || (rc = rt_ppl_text(o, run)) || (rc = rt_ppl_plan(o, run, n_ctx, &n_chunk, &base)))
		return rc;
	int64_t train = bn_model_n_ctx_train(NULL);
	if (n_ctx > train && train > 0)
		fprintf(stderr, "%s: warning: -c %d is beyond the model's training context %lld\n",
			rt_prog, (int)n_ctx, (long long)train);
	int32_t nv = bn_model_n_vocab(run->m);
	uint16_t *row = malloc(rt_ppl_row_u16(nv) * sizeof *row);
	RtErr e = {0};
	if (!row || (o->kl_divergence &&
		     rt_kld_init(&kld, n_chunk * rt_ppl_scored(n_ctx)) != RT_OK))
		rc = rt_fail("out of memory for --perplexity");
	/* chunks side by side, one sequence each, as many as fill a forward call */
	int64_t ub = bn_model_meta_int(run->m, "max_batch");
	if (o->ubatch > 0 && o->ubatch < ub)
		ub = o->ubatch;
	int32_t per_call = rt_ppl_per_call((int32_t)ub, n_ctx, n_chunk, BN_MAX_SEQ);
	if (!rc)
		rc = rt_run_setup(o, argv0, n_ctx, per_call, run);
	if (!rc && o->kl_base && !o->kl_divergence &&
	    rt_ppl_out_open(&out, o->kl_base, n_ctx, nv, (int32_t)n_chunk, run->prompt, &e))
		rc = e.code == RT_EINVAL ? rt_usage("--kl-base %s", e.msg) : rt_fail("%s", e.msg);
	RtPplRun r = {.tokens = run->prompt,
		      .n_ctx = n_ctx,
		      .n_chunk = n_chunk,
		      .bos = bn_model_add_bos(run->m) ? bn_token_bos(run->m) : -1,
		      .logits = run->logits,
		      .row = row,
		      .out = out.f ? &out : NULL,
		      .base = base.f ? &base : NULL,
		      .kld = base.f ? &kld : NULL};
	RtPplShow show = {o, &r};
	r.on_chunk = rt_ppl_on_chunk;
	r.user = &show;
	double t = rt_now();
	if (!rc) {
		fprintf(stderr, "%s: perplexity over %lld chunks of %d tokens (%d scored each), "
				"forward calls of up to %d tokens, %d chunk%s at a time\n",
			rt_prog, (long long)n_chunk, (int)n_ctx, (int)rt_ppl_scored(n_ctx),
			(int)bn_ctx_ubatch(run->ctx), (int)per_call, per_call > 1 ? "s" : "");
		rt_sigint_install(run);
		int code = rt_ppl_eval(run->ctx, &r, &e);
		rt_sigint_install(NULL);
		if (!r.kld)
			fprintf(stderr, "\n");
		if (code == BN_E_CANCELLED)
			rc = rt_complain(RT_EXIT_SIGINT, "interrupted after %lld of %lld chunks",
					 (long long)(r.sum.count / rt_ppl_scored(n_ctx)),
					 (long long)n_chunk);
		else if (code)
			rc = rt_fail("%s", e.msg);
	}
	if (out.f && rt_ppl_out_close(&out, !rc, &e) && !rc)
		rc = rt_fail("%s", e.msg);
	if (!rc)
		rc = rt_ppl_report(o, &r, rt_now() - t);
	rt_ppl_base_close(&base);
	rt_kld_free(&kld);
	free(row);
	return rc;
}

/* ---- the session ------------------------------------------------------- */

static int rt_session(RtOpts o, const char *argv0, RtRun *run)
{
	char err[1024];
	int rc = bn_model_check(err, sizeof err);
	if (rc)
		return rc == BN_E_CPU_MASK ? rt_usage("%s", err) : rt_fail("%s", err);
	if (o.info)
		return rt_info(&o, argv0);
	if (o.verify)
		return rt_verify(&o, argv0);
	if (o.perplexity)
		return rt_ppl_session(&o, argv0, run);

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
		if ((rc = rt_chat_check(&o)) || (rc = rt_run_map(&o, argv0, run)))
			return rc;
		if (!n_ctx)
			n_ctx = rt_default_ctx();
	} else {
		/* a text prompt needs the tokenizer, which travels in the weights */
		if (bn_model_tokenizer_status(NULL, NULL, 0) == BN_OK && !o.tokens &&
		    (rc = rt_run_map(&o, argv0, run)))
			return rc;
		if ((rc = rt_prompt_load(&o, run)))
			return rc;
		if (!n_ctx)
			n_ctx = rt_default_ctx();
		if (run->n_prompt > n_ctx)
			return rt_usage("the prompt has %lld tokens but the context holds %lld (-c)",
					(long long)run->n_prompt, (long long)n_ctx);
		/* -n -1, or more than the context holds: generate until it is full (or the
		 * end of text), as llama.cpp does */
		if (o.n_predict < 0 || run->n_prompt + o.n_predict > n_ctx)
			o.n_predict = n_ctx - run->n_prompt;
		if (o.logits_out) {
			RtErr e = {0};
			if (!(run->lf = rt_f32_open(o.logits_out, &e)))
				return rt_usage("--logits-out %s", e.msg);
		}
	}
	int64_t train = bn_model_n_ctx_train(NULL);
	if (o.n_ctx > train && train > 0)
		fprintf(stderr, "%s: warning: -c %lld is beyond the model's training context %lld\n",
			rt_prog, (long long)o.n_ctx, (long long)train);
	if ((rc = rt_run_setup(&o, argv0, n_ctx, 1, run)))
		return rc;
	run->t_load_ms = (rt_now() - run->t_start) * 1e3;
	if (o.bench) {
		uint64_t peak;
		rt_rss(&run->rss, &peak);
		return rt_bench(&o, run);
	}
	rt_sigint_install(run);
	rc = o.cnv ? rt_chat(&o, run) : o.interactive ? rt_interact(&o, run) : rt_generate(&o, run);
	rt_sigint_install(NULL);
	return rc;
}

int rt_session_run(const RtOpts *o, const char *argv0, double t_start)
{
	RtRun run;
	memset(&run, 0, sizeof run);
	run.t_start = t_start;
	int rc = rt_session(*o, argv0, &run);
	rt_run_free(&run);
	return rc;
}
