/* cmd_run.c - bitnetc run: the model on token ids in the reference interpreter (the
 * prompt, then greedy generation), optionally writing the logits. */
#include "bitnetc_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

const char usage_run[] =
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
	"  --ignore-eos       keep generating after the end-of-text token\n"
	"  --attn-f64         sum the attention's q.K and .V in double, as the CUDA and Metal\n"
	"                     programs do (default: float, as the reference and the CPU\n"
	"                     programs)\n";

typedef struct {
	const char *path, *tokens, *logits_out;
	int64_t n_predict, n_ctx; /* n_ctx 0: default */
	int64_t n_threads;        /* 0: one per online CPU */
	bool step, ignore_eos, attn_f64;
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
	ir_interp_set_attn_f64(it, o->attn_f64);
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

int cmd_run(int argc, char **argv)
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
		} else if (flag(&a, NULL, "--attn-f64")) {
			o.attn_f64 = true;
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
