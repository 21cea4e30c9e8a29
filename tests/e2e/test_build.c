/* test_build.c - `bitnetc build` end to end: the generated program against the golden
 * reference logits and against the interpreter (same numerics, <= 1e-4 relative per row),
 * synthetic variants, prompt splits, reproducibility, relocation and bad builds. A test
 * for a target the host cannot run (or BITNETC_CPU_MASK hides) is skipped with skip() and
 * a message. */
#include "testutil.h"

#include "frontend.h"
#include "rt.h"
#include "pass.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const goldens[] = {
	"tiny-b158-i2_s", "tiny-b158-tq2_0", "tiny-b158-tq1_0", "tinyold-bitnet-i2_s",
	"tinyllama-i2_s", "tinyllama-tq1_0", "tinyllama-rf-i2_s",
};
static const char *const prompts[] = {"p1", "p2", "p3"};

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* bitnetc build MODEL -o OUT EXTRA; asserts success. */
static void build(const char *model, const char *out, const char *extra)
{
	char *log = NULL;
	int rc = tu_run(&log, "'%s' build '%s' -o '%s' %s", tu_bitnetc(), model, out, extra);
	if (rc != 0)
		tu_fail_log(log, "build of %s failed (%d)", model, rc);
	free(log);
	assert_true(exists(out));
}

/* Runs prog on the tokens (teacher-forced, -n gen greedy); returns the logits rows
 * (*rows floats). */
static float *run_prog(const char *prog, const int32_t *tok, int n, int gen, int *rows,
		       const char *extra)
{
	return tu_run_logits(NULL, prog, tok, n, gen, rows, extra);
}

static const TuCalls calls_default = {4, {1, 8, 32, 128}}; /* passes/default.lua */
static const TuCalls calls_step = {1, {1}};                /* -ub 1, decode-only builds */

/* Tokens (prompt then continuation) and the step reference rows of one golden prompt. */
static int load_ref(const char *m, const char *p, const char *mode, int32_t *tok, int *n_prompt_out,
		    float **ref, int nv)
{
	char rel[256];
	snprintf(rel, sizeof rel, "golden/logits/%s.%s.%s.json", m, p, mode);
	size_t jn;
	char *raw = tu_read_file(tu_data(rel), &jn);
	assert_non_null(raw);
	char *json = calloc(1, jn + 1);
	memcpy(json, raw, jn);
	free(raw);
	int n_prompt = tu_json_ints(json, "prompt_tokens", tok, 64);
	int n_gen = n_prompt >= 0 ? tu_json_ints(json, "generated_tokens", tok + n_prompt, 64) : -1;
	free(json);
	assert_true(n_prompt > 0 && n_gen > 0);
	*n_prompt_out = n_prompt;
	int n = n_prompt + n_gen;
	*ref = tu_hold(malloc((size_t)n * (size_t)nv * sizeof(float)));
	size_t sz;
	snprintf(rel, sizeof rel, "golden/logits/%s.%s.%s.prompt.f32", m, p, mode);
	float *a = tu_hold(tu_read_file(tu_data(rel), &sz));
	assert_int_equal(sz, (size_t)n_prompt * (size_t)nv * sizeof(float));
	snprintf(rel, sizeof rel, "golden/logits/%s.%s.%s.gen.f32", m, p, mode);
	float *b = tu_hold(tu_read_file(tu_data(rel), &sz));
	assert_int_equal(sz, (size_t)n_gen * (size_t)nv * sizeof(float));
	memcpy(*ref, a, (size_t)n_prompt * (size_t)nv * sizeof(float));
	memcpy(*ref + (size_t)n_prompt * (size_t)nv, b, (size_t)n_gen * (size_t)nv * sizeof(float));
	tu_free(a);
	tu_free(b);
	return n;
}

/* Every golden model, built once:
 * - teacher-forced over prompt + reference continuation one token per call (-ub 1, the
 *   reference's step mode): the per-row bounds and >= 97% argmax agreement against the
 *   step reference, as the interpreter's golden test;
 * - the same in multi-token calls: the per-row bounds; and for both, the interpreter run
 *   with the same calls agrees to <= 1e-4 relative on every row;
 * - the prompt, then 32 greedy tokens one per call (the step-mode forward), as the
 *   reference's batch files were made: the per-row bounds and >= 97% argmax agreement
 *   while the continuation follows the reference's (it may part only at a margin < 0.05).
 * Teacher-forcing the continuation in batch calls is held to the row bounds only: batch
 * and step rounding differ enough to move a few near-tie argmaxes (the interpreter too). */
static void golden_check(size_t mi, const char *extra);
/* What golden_check runs its programs under (an emulator and its options; NULL: natively)
 * and on how many of the prompts (0: all). */
static const char *golden_env;
static size_t golden_n_prompts;

static void test_golden_models(void **state)
{
	(void)state;
	for (size_t mi = 0; mi < sizeof goldens / sizeof goldens[0]; mi++)
		golden_check(mi, "");
}

/* Golden model mi built with the build options extra, held to the golden bounds (step,
 * batch and free-running) and to the interpreter. */
static void golden_check(size_t mi, const char *extra)
{
	{
		char rel[256];
		snprintf(rel, sizeof rel, "golden/models/%s.gguf", goldens[mi]);
		char gguf[4096], prog[4096];
		snprintf(gguf, sizeof gguf, "%s", tu_data(rel));
		snprintf(prog, sizeof prog, "%s", tu_tmp(goldens[mi]));
		build(gguf, prog, extra);
		TuModel m;
		tu_model_open(&m, gguf);
		TuGolden forced = {0}, forced_step = {0}, free_run = {0};
		double worst_rel = 0;
		size_t np = sizeof prompts / sizeof prompts[0];
		if (golden_n_prompts && golden_n_prompts < np)
			np = golden_n_prompts;
		for (size_t pi = 0; pi < np; pi++) {
			int32_t tok[128];
			float *ref;
			int n_prompt;
			int n = load_ref(goldens[mi], prompts[pi], "step", tok, &n_prompt, &ref, m.nv);
			int rows;
			float *got = tu_run_logits(golden_env, prog, tok, n, 0, &rows, NULL);
			assert_int_equal(rows, n * m.nv);
			for (int r = 0; r < n; r++)
				tu_golden_row(&forced, got + (size_t)r * (size_t)m.nv, ref + (size_t)r * (size_t)m.nv, m.nv);
			worst_rel = fmax(worst_rel, tu_vs_interp(&m, got, n, tok, n, &calls_default));
			tu_free(got);

			/* the same, one token per call (-ub 1): the reference's step mode */
			got = tu_run_logits(golden_env, prog, tok, n, 0, &rows, "-ub 1");
			assert_int_equal(rows, n * m.nv);
			for (int r = 0; r < n; r++)
				tu_golden_row(&forced_step, got + (size_t)r * (size_t)m.nv, ref + (size_t)r * (size_t)m.nv, m.nv);
			worst_rel = fmax(worst_rel, tu_vs_interp(&m, got, n, tok, n, &calls_step));
			tu_free(got);
			tu_free(ref);

			n = load_ref(goldens[mi], prompts[pi], "batch", tok, &n_prompt, &ref, m.nv);
			got = tu_run_logits(golden_env, prog, tok, n_prompt, n - n_prompt, &rows, NULL);
			assert_int_equal(rows, n * m.nv);
			for (int r = 0; r < n; r++) {
				if (r >= n_prompt) { /* row r: after feeding the token chosen from row r - 1 */
					int chosen = (int)rt_argmax(got + (size_t)(r - 1) * (size_t)m.nv, m.nv);
					if (chosen != tok[r]) {
						assert_true(tu_margin(ref + (size_t)(r - 1) * (size_t)m.nv, m.nv) < 0.05f);
						break;
					}
				}
				tu_golden_row(&free_run, got + (size_t)r * (size_t)m.nv, ref + (size_t)r * (size_t)m.nv, m.nv);
			}
			worst_rel = fmax(worst_rel, tu_vs_interp(&m, got, n, tok, n_prompt, &calls_default));
			tu_free(got);
			tu_free(ref);
		}
		printf("build %-20s%s forced batch: rows %3d max|d| %.3g argmax %d  forced step: max|d| %.3g argmax %d  free: rows %3d max|d| %.3g argmax %d  vs interpreter %.2g rel\n",
		       goldens[mi], extra, forced.rows, forced.max_d, forced.agree, forced_step.max_d,
		       forced_step.agree, free_run.rows, free_run.max_d, free_run.agree, worst_rel);
		/* the 97% argmax gate holds mode for mode (forced: multi-token calls, the
		 * reference's batch mode, against its step rows, is bounded per row by
		 * tu_golden_row only) */
		assert_true(forced_step.agree * 100 >= forced_step.rows * 97);
		assert_true(free_run.agree * 100 >= free_run.rows * 97);
		tu_model_close(&m);
	}
}

static const int32_t prompt13[] = {496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114};

/* Synthetic variants the golden files do not cover: binary against interpreter, prompt
 * then a few generated tokens (single-token calls: the step-mode forward). */
static void test_variants(void **state)
{
	(void)state;
	static const struct {
		const char *name, *args;
	} v[] = {
		{"v-bitnet-scales", "--arch bitnet --scales --layers 2"},
		{"v-q8_0", "--embd-type q8_0 --layers 2"},
		{"v-q6_k", "--embd-type q6_k --layers 2"},
		{"v-bf16", "--embd-type bf16 --layers 1"},
		{"v-tq1_0", "--type tq1_0 --layers 2"},
		{"v-tq2_0", "--type tq2_0 --layers 2"},
		{"v-ff512-h8", "--ffn 512 --heads 8 --kv-heads 2 --layers 2"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char gguf[4096], prog[4096];
		snprintf(gguf, sizeof gguf, "%s.gguf", tu_tmp(v[i].name));
		snprintf(prog, sizeof prog, "%s", tu_tmp(v[i].name));
		char *log = NULL;
		if (tu_run(&log, "'%s' mkmodel --seed 7 %s -o '%s'", tu_bitnetc(), v[i].args, gguf))
			tu_fail_log(log, "mkmodel %s", v[i].args);
		free(log);
		build(gguf, prog, "");
		TuModel m;
		tu_model_open(&m, gguf);
		int rows;
		float *got = run_prog(prog, prompt13, 13, 4, &rows, NULL);
		assert_int_equal(rows, 17 * m.nv);
		double d = tu_vs_interp(&m, got, 17, prompt13, 13, &calls_default);
		printf("build %-16s (%s): vs interpreter %.2g rel\n", v[i].name, v[i].args, d);
		tu_free(got);
		tu_model_close(&m);
	}
}

/* A prompt split across calls: --max-batch 4 gives templates 1 and 4 and chunks 4+4+3+2,
 * which must match the interpreter run with those calls, and the default build (8+5). */
static void test_split(void **state)
{
	(void)state;
	char gguf[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	char p4[4096], p32[4096];
	snprintf(p4, sizeof p4, "%s", tu_tmp("split-mb4"));
	snprintf(p32, sizeof p32, "%s", tu_tmp("split-mb32"));
	build(gguf, p4, "--max-batch 4");
	build(gguf, p32, "");
	TuModel m;
	tu_model_open(&m, gguf);
	int r4, r32;
	float *a = run_prog(p4, prompt13, 13, 2, &r4, NULL);
	float *b = run_prog(p32, prompt13, 13, 0, &r32, NULL);
	assert_int_equal(r4, 15 * m.nv);
	tu_vs_interp(&m, a, 15, prompt13, 13, &(TuCalls){2, {1, 4}});
	for (int r = 0; r < 13; r++)
		assert_true(tu_rel_diff(a + (size_t)r * (size_t)m.nv, b + (size_t)r * (size_t)m.nv, m.nv) <= 1e-4);
	tu_free(a);
	tu_free(b);
	tu_model_close(&m);
}

/* Programs a and b (run with extra flags ea, eb) give the same logits bit for bit on
 * prompt13 and 4 greedy steps (multi-token calls, then single-token steps). */
static void same_logits(const char *a, const char *ea, const char *b, const char *eb)
{
	int ra, rb;
	float *la = run_prog(a, prompt13, 13, 4, &ra, ea);
	float *lb = run_prog(b, prompt13, 13, 4, &rb, eb);
	assert_int_equal(ra, rb);
	assert_memory_equal(la, lb, (size_t)ra * sizeof(float));
	tu_free(la);
	tu_free(lb);
}

/* The residual adds fused into the next norm (the default pipeline) against the same
 * model with norms fused alone (fuse.match="*.q8*" names no add): the same logits, bit for
 * bit, in multi-token calls and in single-token steps, on two threads; per token and per
 * 256 inputs. */
static void test_fused_adds(void **state)
{
	(void)state;
	static const char *const models[] = {"tinyold-bitnet-i2_s", "tiny-b158-tq1_0"};
	for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
		char rel[256], gguf[4096], a[4096], b[4096], ca[4096], cb[4096], extra[4200];
		snprintf(rel, sizeof rel, "golden/models/%s.gguf", models[mi]);
		snprintf(gguf, sizeof gguf, "%s", tu_data(rel));
		snprintf(a, sizeof a, "%s", tu_tmp("fused-adds"));
		snprintf(b, sizeof b, "%s", tu_tmp("fused-norms"));
		snprintf(ca, sizeof ca, "%s", tu_tmp("fused-adds-c"));
		snprintf(cb, sizeof cb, "%s", tu_tmp("fused-norms-c"));
		snprintf(extra, sizeof extra, "--emit-c '%s'", ca);
		build(gguf, a, extra);
		snprintf(extra, sizeof extra, "--emit-c '%s' --pass-opt 'fuse.match=*.q8*'", cb);
		build(gguf, b, extra);
		assert_int_equal(tu_run(NULL, "grep -q 'static void add_rmsnorm_n' '%s/model.c'", ca), 0);
		assert_int_not_equal(tu_run(NULL, "grep -q 'add_rmsnorm_n' '%s/model.c'", cb), 0);
		same_logits(a, NULL, b, NULL);
	}
}

/* The matmuls that read the same codes (q, k, v; gate, up) run as one launch of the pool
 * (codegen's launch groups): the emitted forward has launches of 3 and of 2, and with
 * node attribute own_launch = 1 on every matmul (set from Lua) none; the logits are the
 * same bits either way, in multi-token calls and in steps, on two threads. */
static void test_launch_groups(void **state)
{
	(void)state;
	static const char *const models[] = {"tiny-b158-i2_s", "tiny-b158-tq1_0"};
	char pl[4096];
	snprintf(pl, sizeof pl, "%s", tu_tmp("own_launch.lua"));
	static const char script[] =
		"local p = require('bitnetc').pipeline()\n"
		"p:add('infer_shapes')\np:add('dce')\np:add('fuse')\np:add('dce')\n"
		"p:add('permute_weights')\np:add('batch_templates', {sizes = {1, 8, 32, 128}})\n"
		"p:add(function(g)\n"
		"\tfor _, n in ipairs(g:match_nodes('*')) do\n"
		"\t\tif n.op == 'ternary_matmul' then n:set_attr('own_launch', 1) end\n"
		"\tend\n"
		"end, 'own_launch')\n"
		"p:add('plan_kv')\np:add('plan_memory')\nreturn p\n";
	assert_int_equal(tu_write_file(pl, script, sizeof script - 1), 0);
	for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
		char rel[256], gguf[4096], a[4096], b[4096], ca[4096], cb[4096], extra[8400];
		snprintf(rel, sizeof rel, "golden/models/%s.gguf", models[mi]);
		snprintf(gguf, sizeof gguf, "%s", tu_data(rel));
		snprintf(a, sizeof a, "%s", tu_tmp("launch-groups"));
		snprintf(b, sizeof b, "%s", tu_tmp("launch-own"));
		snprintf(ca, sizeof ca, "%s", tu_tmp("launch-groups-c"));
		snprintf(cb, sizeof cb, "%s", tu_tmp("launch-own-c"));
		snprintf(extra, sizeof extra, "--emit-c '%s' --pipeline '%s/../../passes/default.lua'",
			 ca, tu_data(""));
		build(gguf, a, extra);
		snprintf(extra, sizeof extra, "--emit-c '%s' --pipeline '%s'", cb, pl);
		build(gguf, b, extra);
		assert_int_equal(tu_run(NULL, "grep -q 'pool_run_jobs(st, jobs, 3);' '%s/model.c'", ca), 0);
		assert_int_equal(tu_run(NULL, "grep -q 'pool_run_jobs(st, jobs, 2);' '%s/model.c'", ca), 0);
		assert_int_not_equal(tu_run(NULL, "grep -q 'pool_run_jobs(st,' '%s/model.c'", cb), 0);
		same_logits(a, NULL, b, NULL);
	}
}

/* The thread count never changes a bit: a program's logits with 1, 2 and 3 threads, in
 * multi-token calls and in steps, for the default target. 3 threads split the q heads of
 * tinyllama-rf (4 heads, 2 KV heads) 1 / 1 / 2, so that a thread owns part of a KV head's
 * group (the AVX-512 attention runs .V per group), and the matmuls' rows unevenly. The
 * row kernels (glu, rope, tinyllama's quantizer alone) split a call's rows over the threads
 * only from BN_ROWS_PAR_MIN floats, more than these models' calls have: built again with it
 * at 1, every multi-token call splits, and must give the default build's bits. */
static void test_thread_counts(void **state)
{
	(void)state;
	static const char *const models[] = {"tinyllama-rf-i2_s", "tiny-b158-i2_s"};
	for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
		char rel[256], gguf[4096], prog[4096];
		snprintf(rel, sizeof rel, "golden/models/%s.gguf", models[mi]);
		snprintf(gguf, sizeof gguf, "%s", tu_data(rel));
		snprintf(prog, sizeof prog, "%s", tu_tmp("thread-counts"));
		build(gguf, prog, "");
		same_logits(prog, "-t 1", prog, "-t 2");
		same_logits(prog, "-t 1", prog, "-t 3");
		char split[4096];
		snprintf(split, sizeof split, "%s", tu_tmp("thread-counts-split"));
		build(gguf, split, "--cflags -DBN_ROWS_PAR_MIN=1");
		same_logits(prog, "-t 1", split, "-t 2");
		same_logits(prog, "-t 1", split, "-t 3");
	}
}

/* Every example pipeline builds a golden model into a program whose logits match the
 * interpreter run with the same calls (decode_only: one token per call); a broken pipeline
 * is an error naming the script line, and leaves no program behind. */
static void test_pipelines(void **state)
{
	(void)state;
	static const struct {
		const char *script;
		const TuCalls *calls; /* the calls the program then makes */
		const char *head;     /* the head type the script quantizes to, else NULL */
	} ex[] = {
		{"decode_only.lua", &calls_step, NULL},
		{"per_layer.lua", &calls_default, NULL},
		{"sparsity_report.lua", &calls_default, NULL},
		{"quantized_head.lua", &calls_default, "q6_k"},
	};
	char gguf[4096], src[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	snprintf(src, sizeof src, "%s/../../examples/pipelines", tu_data(""));
	TuModel m, mq;
	tu_model_open(&m, gguf);
	tu_model_open(&mq, gguf); /* the interpreter's graph for a quantized head */
	BnErr e = {0};
	PassOpts qo = {0};
	int prc = pass_opts_set(&qo, "quantize_head", "type", "q6_k", &e) ||
		  pass_run(mq.g, "quantize_head", &qo, &e);
	pass_opts_free(&qo);
	if (prc)
		fail_msg("%s", e.msg);
	for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
		char prog[4096], extra[8192];
		snprintf(prog, sizeof prog, "%s", tu_tmp(ex[i].script));
		snprintf(extra, sizeof extra, "--pipeline '%s/%s' 2>/dev/null", src, ex[i].script);
		build(gguf, prog, extra);
		int rows;
		float *got = run_prog(prog, prompt13, 13, 2, &rows, NULL);
		assert_int_equal(rows, 15 * m.nv);
		tu_vs_interp(ex[i].head ? &mq : &m, got, 15, prompt13, 13, ex[i].calls);
		tu_free(got);
	}
	tu_model_close(&m);
	tu_model_close(&mq);

	const char *bad = tu_tmp("bad_pipeline.lua"), *out = tu_tmp("bad_pipeline_prog");
	const char *text = "local p = require('bitnetc').pipeline()\np:add('dce')\np:add(\n";
	assert_int_equal(tu_write_file(bad, text, strlen(text)), 0);
	unlink(out);
	char *log = NULL;
	int rc = tu_run(&log, "'%s' build '%s' -o '%s' --pipeline '%s'", tu_bitnetc(), gguf, out, bad);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(log, "bad_pipeline.lua:"));
	assert_false(exists(out));
	free(log);
	rc = tu_run(&log, "'%s' build '%s' -o '%s' --pass-opt nosuch.x=1", tu_bitnetc(), gguf, out);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(log, "nosuch"));
	assert_false(exists(out));
	free(log);
}

/* n tokens at positions pos..pos+n-1 of sequence 0 (n <= 64), as the runtime calls decode;
 * last_only: out = {n-1}, the last row alone. */
#define FWD_SRC \
	"static int fwd(RtState *st, const int32_t *tok, int n, int32_t pos, float *y, int last_only)\n" \
	"{\n" \
	"\tint32_t p[64], last = n - 1;\n" \
	"\tfor (int t = 0; t < n; t++)\n" \
	"\t\tp[t] = pos + t;\n" \
	"\tRtBatch b = {n, tok, p, NULL, last_only ? &last : NULL, 1, NULL};\n" \
	"\treturn rt_model.decode(st, &b, y);\n" \
	"}\n"

/* The opening of main() in the mains below: the weights file argv[1] mapped (at least
 * ARGC arguments), the model initialized (inst), nv its vocabulary size. */
#define MAIN_OPEN(ARGC) \
	"int main(int argc, char **argv)\n" \
	"{\n" \
	"\tRtWeights w;\n" \
	"\tRtErr e = {0};\n" \
	"\tif (argc < " #ARGC " || rt_weights_map(&w, argv[1], argv[0], rt_model.weights_bytes, rt_model.weights_hash, &e)) {\n" \
	"\t\tfprintf(stderr, \"weights: %s\\n\", e.msg);\n" \
	"\t\treturn 2;\n" \
	"\t}\n" \
	"\tvoid *inst = NULL;\n" \
	"\tchar ierr[256] = \"\";\n" \
	"\tif (rt_model.init && rt_model.init(w.data, w.size, &inst, ierr, sizeof ierr)) {\n" \
	"\t\tfprintf(stderr, \"init: %s\\n\", ierr);\n" \
	"\t\treturn 2;\n" \
	"\t}\n" \
	"\tsize_t nv = (size_t)rt_model.n_vocab;\n"

/* A main() that calls the model's init and decode directly (model.o and the runtime of a
 * build with --emit-c and --weights-file, without main.c): for every n up to 40 (full and partial templates,
 * and n == 1), a call of n contiguous rows with out = {n-1} (the runtime's last-only call)
 * writes one row, bit for bit the last row of the same call with all rows, and nothing
 * after it. */
static const char last_only_main[] =
	"#include \"rt.h\"\n"
	"#include \"rt_model.h\"\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	FWD_SRC
	MAIN_OPEN(2)
	"\tint64_t n_ctx = 64;\n"
	"\tRtState st = {.w = w.data, .kv = calloc(1, (size_t)rt_model.kv_bytes(n_ctx, 1)),\n"
	"\t\t      .scratch = aligned_alloc(64, (size_t)(rt_model.scratch_bytes + 63) / 64 * 64),\n"
	"\t\t      .n_ctx = n_ctx, .pool = rt_pool_new(2), .inst = inst};\n"
	"\tfloat *all = malloc((size_t)rt_model.max_batch * nv * sizeof(float));\n"
	"\tfloat *one = malloc(2 * nv * sizeof(float));\n"
	"\tint32_t tok[64];\n"
	"\tfor (int i = 0; i < 64; i++)\n"
	"\t\ttok[i] = (int32_t)((i * 37 + 11) % (int)nv);\n"
	"\tint fails = 0, checked = 0;\n"
	"\tfor (int n = 1; n <= 40 && n <= rt_model.max_batch; n++, checked++) {\n"
	"\t\tfwd(&st, tok, n, 0, all, 0);\n"
	"\t\tfor (size_t i = 0; i < 2 * nv; i++)\n"
	"\t\t\tone[i] = -12345.0f;\n"
	"\t\tfwd(&st, tok, n, 0, one, 1);\n"
	"\t\tif (memcmp(one, all + (size_t)(n - 1) * nv, nv * sizeof(float)) != 0) {\n"
	"\t\t\tfprintf(stderr, \"n %d: the last_only row differs from row %d of all rows\\n\", n, n - 1);\n"
	"\t\t\tfails++;\n"
	"\t\t}\n"
	"\t\tfor (size_t i = nv; i < 2 * nv; i++)\n"
	"\t\t\tif (one[i] != -12345.0f) {\n"
	"\t\t\t\tfprintf(stderr, \"n %d: last_only wrote past one row\\n\", n);\n"
	"\t\t\t\tfails++;\n"
	"\t\t\t\tbreak;\n"
	"\t\t\t}\n"
	"\t}\n"
	"\tprintf(\"checked %d call sizes, %d failed\\n\", checked, fails);\n"
	"\treturn fails != 0;\n"
	"}\n";

/* A main() that calls the model's decode directly (as last_only_main): two sequences, A
 * (8 tokens) and B (6), fed each alone as the runtime feeds a prompt (contiguous rows of
 * sequence 0: a prompt call and a continuation call each, on a state of one sequence), and
 * together on a state of two:
 * the prompts' rows interleaved in one call, then the continuations' rows in another order,
 * that call again with out rows {1, 3}, then one row (step mode) of B. Each decode row must
 * be bit for bit its sequence's own row; the decode rows (17) go to the file argv[2] for
 * the test to hold against the interpreter. Malformed batches must be refused. */
static const char decode_main[] =
	"#include \"rt.h\"\n"
	"#include \"rt_model.h\"\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	FWD_SRC
	"static RtState state(const RtWeights *w, int32_t n_seq)\n"
	"{\n"
	"\tRtState st = {.w = w->data, .kv = calloc(1, (size_t)rt_model.kv_bytes(32, n_seq)),\n"
	"\t\t      .scratch = aligned_alloc(64, (size_t)(rt_model.scratch_bytes + 63) / 64 * 64),\n"
	"\t\t      .n_ctx = 32, .pool = rt_pool_new(2), .n_seq = n_seq};\n"
	"\treturn st;\n"
	"}\n"
	"static int fails;\n"
	"static void same(const float *got, const float *want, size_t nv, const char *what, int r)\n"
	"{\n"
	"\tif (memcmp(got, want, nv * sizeof(float)) != 0) {\n"
	"\t\tfprintf(stderr, \"%s row %d differs from its sequence alone\\n\", what, r);\n"
	"\t\tfails++;\n"
	"\t}\n"
	"}\n"
	MAIN_OPEN(3)
	"\tconst int32_t A[8] = {496, 84, 104, 101, 32, 113, 117, 105}, B[7] = {12, 250, 7, 99, 31, 200, 77};\n"
	"\tRtState s1 = state(&w, 1), s2 = state(&w, 2);\n"
	"\tfloat *ya = malloc(8 * nv * sizeof(float)), *yb = malloc(7 * nv * sizeof(float));\n"
	"\tfloat *y = malloc(18 * nv * sizeof(float));\n"
	"\tint rc = fwd(&s1, A, 5, 0, ya, 0) | fwd(&s1, A + 5, 3, 5, ya + 5 * nv, 0) |\n"
	"\t\t fwd(&s1, B, 4, 0, yb, 0) | fwd(&s1, B + 4, 2, 4, yb + 4 * nv, 0) |\n"
	"\t\t fwd(&s1, B + 6, 1, 6, yb + 6 * nv, 0);\n"
	"\t/* the prompts: A0 B0 A1 B1 A2 B2 A3 B3 A4 */\n"
	"\tconst int32_t t1[9] = {A[0], B[0], A[1], B[1], A[2], B[2], A[3], B[3], A[4]};\n"
	"\tconst int32_t p1[9] = {0, 0, 1, 1, 2, 2, 3, 3, 4}, q1[9] = {0, 1, 0, 1, 0, 1, 0, 1, 0};\n"
	"\tRtBatch b = {9, t1, p1, q1, NULL, 0, NULL};\n"
	"\trc |= rt_model.decode(&s2, &b, y);\n"
	"\tfor (int r = 0; r < 9; r++)\n"
	"\t\tsame(y + r * nv, (q1[r] ? yb : ya) + p1[r] * nv, nv, \"prompt\", r);\n"
	"\t/* the continuations: B4 A5 A6 B5 A7 */\n"
	"\tconst int32_t t2[5] = {B[4], A[5], A[6], B[5], A[7]};\n"
	"\tconst int32_t p2[5] = {4, 5, 6, 5, 7}, q2[5] = {1, 0, 0, 1, 0}, out[2] = {1, 3};\n"
	"\tb = (RtBatch){5, t2, p2, q2, NULL, 0, NULL};\n"
	"\trc |= rt_model.decode(&s2, &b, y + 9 * nv);\n"
	"\tfor (int r = 0; r < 5; r++)\n"
	"\t\tsame(y + (9 + r) * nv, (q2[r] ? yb : ya) + p2[r] * nv, nv, \"continuation\", r);\n"
	"\tb.out = out;\n"
	"\tb.n_out = 2;\n"
	"\ty[16 * nv] = -12345.0f;\n"
	"\trc |= rt_model.decode(&s2, &b, y + 14 * nv);\n"
	"\tsame(y + 14 * nv, ya + 5 * nv, nv, \"out\", 0);\n"
	"\tsame(y + 15 * nv, yb + 5 * nv, nv, \"out\", 1);\n"
	"\tif (y[16 * nv] != -12345.0f) {\n"
	"\t\tfprintf(stderr, \"out rows: written past n_out rows\\n\");\n"
	"\t\tfails++;\n"
	"\t}\n"
	"\tconst int32_t p3 = 6, q3 = 1;\n"
	"\tb = (RtBatch){1, B + 6, &p3, &q3, NULL, 0, NULL};\n"
	"\trc |= rt_model.decode(&s2, &b, y + 16 * nv);\n"
	"\tsame(y + 16 * nv, yb + 6 * nv, nv, \"step\", 0);\n"
	"\t/* malformed: a position past the context, a sequence past n_seq, out rows not ascending */\n"
	"\tconst int32_t bad_p = 32, bad_q = 2, bad_out[2] = {3, 1};\n"
	"\tRtBatch bad[3] = {{1, A, &bad_p, NULL, NULL, 0, NULL}, {1, A, &p3, &bad_q, NULL, 0, NULL}, {5, t2, p2, q2, bad_out, 2, NULL}};\n"
	"\tfor (int i = 0; i < 3; i++)\n"
	"\t\tif (rt_model.decode(&s2, &bad[i], y + 17 * nv) != RT_FORWARD_BATCH) {\n"
	"\t\t\tfprintf(stderr, \"malformed batch %d was not refused\\n\", i);\n"
	"\t\t\tfails++;\n"
	"\t\t}\n"
	"\tFILE *f = fopen(argv[2], \"wb\");\n"
	"\tif (rc || !f || fwrite(y, sizeof(float), 17 * nv, f) != 17 * nv || fclose(f)) {\n"
	"\t\tfprintf(stderr, \"decode failed (%d) or the logits could not be written\\n\", rc);\n"
	"\t\treturn 2;\n"
	"\t}\n"
	"\tprintf(\"decode: 17 rows checked, %d failed\\n\", fails);\n"
	"\treturn fails != 0;\n"
	"}\n";

/* A main() that calls the model's decode directly (as last_only_main): rows in the step
 * mode (RtBatch.step) beside rows in the batch mode, in calls of many sizes up to
 * max_batch. Three sequences read a prompt of 3 rows, then generate: one row each a call,
 * flagged step, in calls with the rows of a fourth sequence (unflagged, 0 to 40 a call,
 * between and after them; some calls a single row of either mode). Each
 * flagged row must be bit for bit its sequence alone in one-row calls (step NULL: the step
 * mode), which also holds its KV entries to those of the one-row calls; each unflagged row
 * the fourth sequence alone in calls of max_batch rows (the batch mode), a prompt row its
 * prompt alone in one call. */
static const char step_main[] =
	"#include \"rt.h\"\n"
	"#include \"rt_model.h\"\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	"enum { CTX = 96, NG = 3, NP = 3, STEPS = 16, NF = 90 };\n"
	"static RtState state(const RtWeights *w, void *inst, int32_t n_seq)\n"
	"{\n"
	"\tRtState st = {.w = w->data, .kv = calloc(1, (size_t)rt_model.kv_bytes(CTX, n_seq)),\n"
	"\t\t      .scratch = aligned_alloc(64, (size_t)(rt_model.scratch_bytes + 63) / 64 * 64),\n"
	"\t\t      .n_ctx = CTX, .pool = rt_pool_new(2), .inst = inst, .n_seq = n_seq};\n"
	"\treturn st;\n"
	"}\n"
	"static int fails, rc;\n"
	"static void same(const float *got, const float *want, size_t nv, const char *what, int s, int p)\n"
	"{\n"
	"\tif (memcmp(got, want, nv * sizeof(float)) != 0) {\n"
	"\t\tfprintf(stderr, \"%s row (sequence %d, position %d) differs from its reference\\n\", what, s, p);\n"
	"\t\tfails++;\n"
	"\t}\n"
	"}\n"
	"/* n rows of one sequence at pos.. in one call, all logits; step NULL */\n"
	"static void run(RtState *st, const int32_t *tok, int n, int32_t pos, float *y)\n"
	"{\n"
	"\tint32_t p[128];\n"
	"\tfor (int t = 0; t < n; t++)\n"
	"\t\tp[t] = pos + t;\n"
	"\tRtBatch b = {n, tok, p, NULL, NULL, 0, NULL};\n"
	"\trc |= rt_model.decode(st, &b, y);\n"
	"}\n"
	MAIN_OPEN(2)
	"\tint mb = (int)rt_model.max_batch;\n"
	"\tint32_t tok[NG + 1][CTX];\n"
	"\tfor (int s = 0; s <= NG; s++)\n"
	"\t\tfor (int i = 0; i < CTX; i++)\n"
	"\t\t\ttok[s][i] = (int32_t)((i * 37 + s * 101 + 11) % (int)nv);\n"
	"\t/* the references, each sequence alone: a generator's prompt in one call (the batch\n"
	"\t * mode), its tokens in one-row calls (the step mode); the fourth in calls of mb */\n"
	"\tfloat *ref[NG + 1];\n"
	"\tfor (int s = 0; s <= NG; s++) {\n"
	"\t\tref[s] = malloc(CTX * nv * sizeof(float));\n"
	"\t\tRtState a = state(&w, inst, 1);\n"
	"\t\tif (s == NG) {\n"
	"\t\t\tfor (int p = 0; p < NF; p += mb)\n"
	"\t\t\t\trun(&a, tok[s] + p, NF - p < mb ? NF - p : mb, p, ref[s] + p * nv);\n"
	"\t\t} else {\n"
	"\t\t\trun(&a, tok[s], NP, 0, ref[s]);\n"
	"\t\t\tfor (int p = NP; p < NP + STEPS; p++)\n"
	"\t\t\t\trun(&a, tok[s] + p, 1, p, ref[s] + p * nv);\n"
	"\t\t}\n"
	"\t}\n"
	"\t/* together: a state of NG + 1 sequences; call c: the prompt of generator c (c < NG),\n"
	"\t * then a row of each generator active in it (flagged step), rows of the fourth\n"
	"\t * (fill[c] of them) between and after them */\n"
	"\tRtState st = state(&w, inst, NG + 1);\n"
	"\tfloat *y = malloc((size_t)mb * nv * sizeof(float));\n"
	"\tint32_t bt[128], bp[128], bs[128];\n"
	"\tint8_t step[128];\n"
	"\tint fed[NG + 1] = {0}, checked = 0, sizes[129] = {0};\n"
	"\tstatic const int fill[] = {1, 0, 3, 0, 1, 7, 0, 2, 12, 37, 5, 1, 30, 4, 9, 6, 0, 40, 1, 3};\n"
	"\tint calls = (int)(sizeof fill / sizeof fill[0]);\n"
	"\tfor (int c = 0; c < calls; c++) {\n"
	"\t\tint n = 0, f = fill[c];\n"
	"\t\tfor (int s = 0; s < NG; s++) {\n"
	"\t\t\tint rows = c < NG ? (s == c ? NP : 0) : c == 18 ? 0 : c == 3 || c == 16 ? s == 1 : (c + s) % 4 != 0;\n"
	"\t\t\tfor (int r = 0; r < rows && n < mb && fed[s] < NP + STEPS; r++) {\n"
	"\t\t\t\tif (f > 0 && n % 2 == 1 && n < mb - 1 && fed[NG] < NF) {\n"
	"\t\t\t\t\tbt[n] = tok[NG][fed[NG]], bp[n] = fed[NG]++, bs[n] = NG, step[n++] = 0;\n"
	"\t\t\t\t\tf--;\n"
	"\t\t\t\t}\n"
	"\t\t\t\tbt[n] = tok[s][fed[s]], bp[n] = fed[s], bs[n] = s, step[n++] = fed[s] >= NP;\n"
	"\t\t\t\tfed[s]++;\n"
	"\t\t\t}\n"
	"\t\t}\n"
	"\t\tfor (; f > 0 && n < mb && fed[NG] < NF; f--)\n"
	"\t\t\tbt[n] = tok[NG][fed[NG]], bp[n] = fed[NG]++, bs[n] = NG, step[n++] = 0;\n"
	"\t\tif (!n)\n"
	"\t\t\tcontinue;\n"
	"\t\tRtBatch b = {n, bt, bp, bs, NULL, 0, step};\n"
	"\t\trc |= rt_model.decode(&st, &b, y);\n"
	"\t\tsizes[n]++;\n"
	"\t\tfor (int r = 0; r < n; r++, checked++)\n"
	"\t\t\tsame(y + r * nv, ref[bs[r]] + bp[r] * nv, nv, step[r] ? \"step\" : \"batch\", bs[r], bp[r]);\n"
	"\t}\n"
	"\tprintf(\"step: %d rows checked in calls of\", checked);\n"
	"\tfor (int i = 1; i <= 128; i++)\n"
	"\t\tif (sizes[i])\n"
	"\t\t\tprintf(\" %d\", i);\n"
	"\tprintf(\" rows, %d failed\\n\", fails);\n"
	"\tif (rc)\n"
	"\t\tfprintf(stderr, \"decode failed (%d)\\n\", rc);\n"
	"\treturn fails != 0 || rc != 0;\n"
	"}\n";

/* A main() that calls the model's decode directly (as step_main) with every row count n
 * = 1..16: a state of n sequences, RC_P calls of n rows, one per sequence, each flagged
 * step (the serving engine's decode step: the multi-row ternary GEMM tiles and token
 * tails, the head's blocked path, attention per sequence). Every row must be bit for bit
 * its sequence alone in one-row calls; all rows go to argv[2] in call order (n, then
 * position, then sequence) for the test to hold against the interpreter. */
static const char rows_main[] =
	"#include \"rt.h\"\n"
	"#include \"rt_model.h\"\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	"enum { CTX = 8, NS = 16, P = 3 };\n"
	"static RtState state(const RtWeights *w, void *inst, int32_t n_seq)\n"
	"{\n"
	"\tRtState st = {.w = w->data, .kv = calloc(1, (size_t)rt_model.kv_bytes(CTX, n_seq)),\n"
	"\t\t      .scratch = aligned_alloc(64, (size_t)(rt_model.scratch_bytes + 63) / 64 * 64),\n"
	"\t\t      .n_ctx = CTX, .pool = rt_pool_new(2), .inst = inst, .n_seq = n_seq};\n"
	"\treturn st;\n"
	"}\n"
	"static void state_free(RtState *st)\n"
	"{\n"
	"\tfree(st->kv);\n"
	"\tfree(st->scratch);\n"
	"\trt_pool_free(st->pool);\n"
	"}\n"
	MAIN_OPEN(3)
	"\tint32_t tok[NS][P];\n"
	"\tfor (int s = 0; s < NS; s++)\n"
	"\t\tfor (int p = 0; p < P; p++)\n"
	"\t\t\ttok[s][p] = (int32_t)((p * 53 + s * 97 + 5) % (int)nv);\n"
	"\tfloat *ref = malloc((size_t)NS * P * nv * sizeof(float));\n"
	"\tfloat *y = malloc((size_t)NS * nv * sizeof(float));\n"
	"\tint rc = 0, fails = 0, checked = 0;\n"
	"\tfor (int s = 0; s < NS; s++) {\n"
	"\t\tRtState a = state(&w, inst, 1);\n"
	"\t\tfor (int32_t p = 0; p < P; p++) {\n"
	"\t\t\tRtBatch b = {1, &tok[s][p], &p, NULL, NULL, 0, NULL};\n"
	"\t\t\trc |= rt_model.decode(&a, &b, ref + ((size_t)s * P + (size_t)p) * nv);\n"
	"\t\t}\n"
	"\t\tstate_free(&a);\n"
	"\t}\n"
	"\tFILE *f = fopen(argv[2], \"wb\");\n"
	"\tif (!f)\n"
	"\t\treturn 2;\n"
	"\tfor (int n = 1; n <= NS && n <= rt_model.max_batch; n++) {\n"
	"\t\tRtState st = state(&w, inst, n);\n"
	"\t\tfor (int32_t p = 0; p < P; p++) {\n"
	"\t\t\tint32_t bt[NS], bp[NS], bs[NS];\n"
	"\t\t\tint8_t step[NS];\n"
	"\t\t\tfor (int s = 0; s < n; s++)\n"
	"\t\t\t\tbt[s] = tok[s][p], bp[s] = p, bs[s] = s, step[s] = 1;\n"
	"\t\t\tRtBatch b = {n, bt, bp, bs, NULL, 0, step};\n"
	"\t\t\trc |= rt_model.decode(&st, &b, y);\n"
	"\t\t\tfor (int s = 0; s < n; s++, checked++)\n"
	"\t\t\t\tif (memcmp(y + (size_t)s * nv, ref + ((size_t)s * P + (size_t)p) * nv, nv * sizeof(float)) != 0) {\n"
	"\t\t\t\t\tfprintf(stderr, \"%d rows: sequence %d at %d differs from its one-row call\\n\", n, s, (int)p);\n"
	"\t\t\t\t\tfails++;\n"
	"\t\t\t\t}\n"
	"\t\t\tfwrite(y, sizeof(float), (size_t)n * nv, f);\n"
	"\t\t}\n"
	"\t\tstate_free(&st);\n"
	"\t}\n"
	"\tfclose(f);\n"
	"\tprintf(\"row counts: %d rows checked, %d failed\\n\", checked, fails);\n"
	"\tif (rc)\n"
	"\t\tfprintf(stderr, \"decode failed (%d)\\n\", rc);\n"
	"\treturn fails != 0 || rc != 0;\n"
	"}\n";

/* The interpreter on decode_main's calls (a cache of two sequences): 17 rows. */
static float *decode_want(TuModel *m)
{
	BnErr e = {0};
	IrInterp *it = ir_interp_new_seq(m->g, 32, 2, &e);
	if (!it)
		fail_msg("%s", e.msg);
	const int32_t A[8] = {496, 84, 104, 101, 32, 113, 117, 105}, B[7] = {12, 250, 7, 99, 31, 200, 77};
	const int32_t t1[9] = {A[0], B[0], A[1], B[1], A[2], B[2], A[3], B[3], A[4]};
	const int32_t p1[9] = {0, 0, 1, 1, 2, 2, 3, 3, 4}, q1[9] = {0, 1, 0, 1, 0, 1, 0, 1, 0};
	const int32_t t2[5] = {B[4], A[5], A[6], B[5], A[7]};
	const int32_t p2[5] = {4, 5, 6, 5, 7}, q2[5] = {1, 0, 0, 1, 0}, out[2] = {1, 3};
	const int32_t p3 = 6, q3 = 1;
	size_t nv = (size_t)m->nv;
	float *y = tu_hold(malloc(17 * nv * sizeof(float)));
	IrBatch b1 = {9, t1, p1, q1, NULL, 0}, b2 = {5, t2, p2, q2, NULL, 0};
	IrBatch b2o = {5, t2, p2, q2, out, 2}, b3 = {1, B + 6, &p3, &q3, NULL, 0};
	if (ir_interp_decode(it, &b1, y, &e) || ir_interp_decode(it, &b2, y + 9 * nv, &e) ||
	    ir_interp_decode(it, &b2o, y + 14 * nv, &e) || ir_interp_decode(it, &b3, y + 16 * nv, &e))
		fail_msg("%s", e.msg);
	ir_interp_free(it);
	return y;
}

/* What the host runs, as native and the programs see it (rt_cpu_detect: BITNETC_CPU_MASK
 * may hide some). */
typedef enum { NEED_ANY, NEED_AVX2, NEED_AVX512, NEED_AMX } Need;

static bool host_has(Need n)
{
	RtCpuFeatures f;
	rt_cpu_detect(&f);
	bool avx2 = f.avx2 && f.fma && f.f16c;
	bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
	return n == NEED_ANY || (n == NEED_AVX2 && avx2) || (n == NEED_AVX512 && avx512) ||
	       (n == NEED_AMX && avx512 && f.amx_tile && f.amx_int8);
}

/* Skips the calling test, saying what and why, unless the host has n. */
static void need(Need n, const char *what)
{
	static const char *const names[] = {"", "AVX2 + FMA + F16C", "AVX-512 (F, BW, VL) + VNNI",
					    "AVX-512 VNNI + AMX-INT8"};
	if (host_has(n))
		return;
	const char *fam;
	char why[160];
	bool masked = !rt_cpu_mask(&fam, why, sizeof why) && fam;
	print_message("skipped: %s: no %s here%s%s%s\n", what, names[n],
		      masked ? " (" RT_CPU_MASK_ENV "=" : "", masked ? fam : "", masked ? ")" : "");
	skip();
}

/* The targets the build tests run: a name for the messages, the build's options, what the
 * host needs for it. cpu-amx with -DBN_AMX_EMULATE runs the tiles in software. */
typedef struct {
	const char *name, *opts;
	Need need;
} Target;
static const Target t_generic = {"cpu-generic", "--target cpu-generic", NEED_ANY};
static const Target t_native = {"native", "--target native", NEED_ANY};
static const Target t_avx2 = {"cpu-avx2", "--target cpu-avx2", NEED_AVX2};
static const Target t_avx512 = {"cpu-avx512", "--target cpu-avx512", NEED_AVX512};
static const Target t_amx_emu = {"cpu-amx-emulated", "--target cpu-amx --cflags -DBN_AMX_EMULATE",
				 NEED_AVX512};
static const Target t_amx = {"cpu-amx", "--target cpu-amx", NEED_AMX};

/* Builds gguf for target t with --emit-c and --weights-file, writes the harness main()
 * text as DIR/NAME.c and compiles it with model.o (made by DIR's Makefile, as the build
 * made it) and the runtime (no main.c) into hb; wf
 * gets the weights file. tag names the case in the temporary paths. */
static void harness_build(const char *gguf, const char *tag, const Target *t, const char *name,
			  const char *text, char *hb, char *wf)
{
	char dir[4096], prog[4096], extra[8400];
	snprintf(dir, sizeof dir, "%s-%s-%s-src", tu_tmp(name), tag, t->name);
	snprintf(prog, sizeof prog, "%s-%s-%s-prog", tu_tmp(name), tag, t->name);
	snprintf(wf, 4096, "%s-%s-%s.weights", tu_tmp(name), tag, t->name);
	snprintf(hb, 4096, "%s-%s-%s-main", tu_tmp(name), tag, t->name);
	assert_int_equal(tu_run(NULL, "rm -rf '%s'", dir), 0);
	snprintf(extra, sizeof extra, "%s --emit-c '%s' --weights-file '%s'", t->opts, dir, wf);
	build(gguf, prog, extra);
	char src[4200];
	snprintf(src, sizeof src, "%s/%s.c", dir, name);
	assert_int_equal(tu_write_file(src, text, strlen(text)), 0);
	char *log = NULL;
	/* model.o as the build compiled it: --emit-c's Makefile has the command */
	int rc = tu_run(&log, "cd '%s' && make -s model.o && cc -std=c11 -O2 -ffp-contract=off "
			      "-D_GNU_SOURCE -o '%s' model.o %s.c rt_*.c -lm -lpthread",
			dir, hb, name);
	if (rc != 0)
		tu_fail_log(log, "compiling the %s harness failed", name);
	free(log);
}

/* Builds last_only_main for target t and runs it. The harness never asks the OS for
 * anything: with cpu-amx the generated kernels must ask for the tile state themselves
 * (the emulation faults like the hardware without it). */
static void last_only_check(const char *gguf, const char *tag, const Target *t)
{
	char hb[4096], wf[4096];
	harness_build(gguf, tag, t, "last_only_main", last_only_main, hb, wf);
	char *log = NULL;
	int rc = tu_run(&log, "'%s' '%s'", hb, wf);
	if (rc != 0 || !strstr(log, "checked 40 call sizes, 0 failed"))
		tu_fail_log(log, "%s (%s %s): exit %d", hb, tag, t->name, rc);
	printf("last_only (%s %s): %s", tag, t->name, log);
	free(log);
}

/* decode with out = {n-1} (last only) under a main() of its own, per target (state). */
static void test_last_only(void **state)
{
	const Target *t = *state;
	char what[128];
	snprintf(what, sizeof what, "last_only under its own main(), %s", t->name);
	need(t->need, what);
	char gguf[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	last_only_check(gguf, "f16", t);
}

/* Builds gguf for target with --emit-c, compiles decode_main against it and runs it: its
 * rows must equal each sequence alone bit for bit (checked inside) and the interpreter's
 * decode to 1e-4 relative per row. */
static void test_decode(void **state)
{
	const Target *t = *state;
	char what[128];
	snprintf(what, sizeof what, "decode under its own main(), %s", t->name);
	need(t->need, what);
	const char *gguf = tu_data("golden/models/tiny-b158-i2_s.gguf");
	char wf[4096], hb[4096], lf[4096];
	harness_build(gguf, "f16", t, "decode_main", decode_main, hb, wf);
	snprintf(lf, sizeof lf, "%s-%s", tu_tmp("decode.logits"), t->name);
	char *log = NULL;
	int rc;
	rc = tu_run(&log, "'%s' '%s' '%s'", hb, wf, lf);
	if (rc != 0 || !strstr(log, "decode: 17 rows checked, 0 failed"))
		tu_fail_log(log, "%s (%s): exit %d", hb, t->name, rc);
	printf("decode (%s): %s", t->name, log);
	free(log);
	TuModel m;
	tu_model_open(&m, gguf);
	float *want = decode_want(&m);
	size_t n = 0;
	float *got = tu_hold(tu_read_file(lf, &n));
	assert_non_null(got);
	assert_int_equal(n, 17 * (size_t)m.nv * sizeof(float));
	double worst = 0;
	for (int r = 0; r < 17; r++) {
		double d = tu_rel_diff(got + (size_t)r * m.nv, want + (size_t)r * m.nv, m.nv);
		if (d > 1e-4)
			fail_msg("decode row %d (%s): %.3g relative to the interpreter", r, t->name, d);
		worst = d > worst ? d : worst;
	}
	printf("decode (%s): 17 rows within %.2g of the interpreter\n", t->name, worst);
	tu_free(got);
	tu_free(want);
	tu_model_close(&m);
}

/* Builds step_main for target t on gguf and runs it. */
static void step_check(const char *gguf, const char *tag, const Target *t, const char *extra)
{
	char hb[4096], wf[4096];
	Target te = *t;
	char opts[256];
	snprintf(opts, sizeof opts, "%s%s", t->opts, extra);
	te.opts = opts;
	harness_build(gguf, tag, &te, "step_main", step_main, hb, wf);
	char *log = NULL;
	int rc = tu_run(&log, "'%s' '%s'", hb, wf);
	if (rc != 0 || !strstr(log, " 0 failed"))
		tu_fail_log(log, "%s (%s %s): exit %d", hb, tag, t->name, rc);
	printf("step rows (%s %s%s): %s", tag, t->name, extra, log);
	free(log);
}

/* Rows flagged step (RtBatch.step) in calls of several rows: bit for bit one-row calls;
 * rows not flagged: bit for bit the batch mode (step_main), per target (state): the f16
 * golden model in the default templates and in --max-batch 4; the bf16, f32, q8_0 and q6_k
 * heads (mkmodel) in the default templates. */
static void test_step_rows(void **state)
{
	const Target *t = *state;
	char what[128];
	snprintf(what, sizeof what, "step-mode rows under their own main(), %s", t->name);
	need(t->need, what);
	const char *gguf = tu_data("golden/models/tiny-b158-i2_s.gguf");
	step_check(gguf, "f16", t, "");
	step_check(gguf, "f16-mb4", t, " --max-batch 4");
	static const char *const types[] = {"bf16", "f32", "q8_0", "q6_k"};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		char g[4096], name[64];
		snprintf(name, sizeof name, "stephead-%s", types[i]);
		snprintf(g, sizeof g, "%s-%s.gguf", tu_tmp(name), t->name);
		char *log = NULL;
		if (tu_run(&log, "'%s' mkmodel --seed 5 --layers 1 --hidden 512 --vocab 517 --embd-type %s -o '%s'",
			   tu_bitnetc(), types[i], g))
			tu_fail_log(log, "mkmodel --embd-type %s", types[i]);
		free(log);
		step_check(g, types[i], t, "");
	}
}

/* rows_main for target t on gguf, then its rows against the interpreter: each sequence
 * alone in one-row calls (the step mode), <= 1e-4 relative per row. */
static void row_counts_check(const char *gguf, const char *tag, const Target *t)
{
	char hb[4096], wf[4096], lf[4096];
	harness_build(gguf, tag, t, "rows_main", rows_main, hb, wf);
	snprintf(lf, sizeof lf, "%s-%s-%s", tu_tmp("rows.logits"), tag, t->name);
	char *log = NULL;
	int rc = tu_run(&log, "'%s' '%s' '%s'", hb, wf, lf);
	if (rc != 0 || !strstr(log, " 0 failed"))
		tu_fail_log(log, "%s (%s %s): exit %d", hb, tag, t->name, rc);
	free(log);
	enum { NS = 16, P = 3 };
	TuModel m;
	tu_model_open(&m, gguf);
	size_t nv = (size_t)m.nv;
	BnErr e = {0};
	IrInterp *it = ir_interp_new_seq(m.g, 8, NS, &e);
	if (!it)
		fail_msg("%s", e.msg);
	float *want = tu_hold(malloc((size_t)NS * P * nv * sizeof(float)));
	for (int s = 0; s < NS; s++)
		for (int32_t p = 0; p < P; p++) {
			int32_t tk = (int32_t)((p * 53 + s * 97 + 5) % (int)nv), sq = s;
			IrBatch b = {1, &tk, &p, &sq, NULL, 0};
			if (ir_interp_decode(it, &b, want + ((size_t)s * P + (size_t)p) * nv, &e))
				fail_msg("%s", e.msg);
		}
	ir_interp_free(it);
	size_t sz = 0;
	float *got = tu_hold(tu_read_file(lf, &sz));
	assert_non_null(got);
	assert_int_equal(sz, (size_t)NS * (NS + 1) / 2 * P * nv * sizeof(float));
	double worst = 0;
	const float *g = got;
	for (int n = 1; n <= NS; n++)
		for (int p = 0; p < P; p++)
			for (int s = 0; s < n; s++, g += nv) {
				double d = tu_rel_diff(g, want + ((size_t)s * P + (size_t)p) * nv, (int)nv);
				if (d > 1e-4)
					fail_msg("%s %s: %d rows, sequence %d at %d: %.3g relative to the "
						 "interpreter", tag, t->name, n, s, p, d);
				worst = d > worst ? d : worst;
			}
	printf("row counts 1..16 (%s %s): every row bit for bit its one-row call, within %.2g "
	       "of the interpreter\n", tag, t->name, worst);
	tu_free(got);
	tu_free(want);
	tu_model_close(&m);
}

/* Decode steps of every row count 1..16 (rows_main), per target (state): the f16 golden
 * model, and an f16 head over rows of 1280 (the head's blocked path in chunks of 512, the
 * last one partial; 517 rows: some left over after the 4-row groups). */
static void test_step_row_counts(void **state)
{
	const Target *t = *state;
	char what[128];
	snprintf(what, sizeof what, "decode steps of 1..16 rows, %s", t->name);
	need(t->need, what);
	row_counts_check(tu_data("golden/models/tiny-b158-i2_s.gguf"), "f16", t);
	char g[4096];
	snprintf(g, sizeof g, "%s-%s.gguf", tu_tmp("rows-k1280"), t->name);
	char *log = NULL;
	if (tu_run(&log, "'%s' mkmodel --seed 7 --layers 1 --hidden 1280 --vocab 517 -o '%s'",
		   tu_bitnetc(), g))
		tu_fail_log(log, "mkmodel --hidden 1280");
	free(log);
	row_counts_check(g, "k1280", t);
}

/* The head's SIMD paths (AVX-512, AVX2+F16C+FMA where the host has them; any host runs
 * the portable one) for f16, bf16 and f32 weights, against the interpreter: prompt rows
 * in multi-token calls (the rows x tokens tiles and their token tails), generated rows
 * one token at a time (the GEMV), a vocabulary that leaves rows over (517 = 8 * 64 + 5).
 * One test per target (state). */
static void test_simd_heads(void **state)
{
	const Target *t = *state;
	char what[128];
	snprintf(what, sizeof what, "SIMD heads, %s", t->name);
	need(t->need, what);
	static const char *const embd[] = {"f16", "bf16", "f32"};
	for (size_t i = 0; i < sizeof embd / sizeof embd[0]; i++) {
		char gguf[4096], name[64];
		snprintf(name, sizeof name, "simd-%s", embd[i]);
		snprintf(gguf, sizeof gguf, "%s.gguf", tu_tmp(name));
		char *log = NULL;
		if (tu_run(&log, "'%s' mkmodel --seed 3 --layers 1 --vocab 517 --embd-type %s -o '%s'",
			   tu_bitnetc(), embd[i], gguf))
			tu_fail_log(log, "mkmodel --embd-type %s", embd[i]);
		free(log);
		TuModel m;
		tu_model_open(&m, gguf);
		char prog[4096];
		snprintf(prog, sizeof prog, "%s-%s", tu_tmp(name), t->name);
		build(gguf, prog, t->opts);
		int rows;
		float *got = run_prog(prog, prompt13, 13, 4, &rows, NULL);
		assert_int_equal(rows, 17 * m.nv);
		double d = tu_vs_interp(&m, got, 17, prompt13, 13, &calls_default);
		printf("head %-4s %-8s: vs interpreter %.2g rel\n", embd[i], t->name, d);
		tu_free(got);
		tu_model_close(&m);
	}
}

/* The q8_0 and q6_k heads' SIMD paths (integer dots per block: AVX-512 VNNI, AVX2 maddubs;
 * the portable one on cpu-generic) against the interpreter, rows of 512 (several blocks
 * per row): prompt rows in multi-token calls of the default split (8 + 5) and of
 * --max-batch 4 (4 + 4 + 3 + 2: every token tail of the tiles), generated rows one token
 * per call (the row stream), a vocabulary that leaves rows over (517: 129 * 4 + 1,
 * 258 * 2 + 1); last_only (one row through the row stream) bit for bit the last row of the
 * call with all rows (the tiles), except on cpu-generic. One test per target (state). */
static void test_quant_heads(void **state)
{
	const Target *t = *state;
	char what[128];
	snprintf(what, sizeof what, "quantized heads, %s", t->name);
	need(t->need, what);
	static const char *const types[] = {"q8_0", "q6_k"};
	static const struct {
		const char *tag, *extra;
		TuCalls calls;
	} builds[] = {{"", "", {4, {1, 8, 32, 128}}}, {"-mb4", " --max-batch 4", {2, {1, 4}}}};
	for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
		char gguf[4096], name[64];
		snprintf(name, sizeof name, "qhead-%s", types[ti]);
		snprintf(gguf, sizeof gguf, "%s-%s.gguf", tu_tmp(name), t->name);
		char *log = NULL;
		if (tu_run(&log, "'%s' mkmodel --seed 3 --layers 1 --hidden 512 --vocab 517 --embd-type %s -o '%s'",
			   tu_bitnetc(), types[ti], gguf))
			tu_fail_log(log, "mkmodel --embd-type %s", types[ti]);
		free(log);
		TuModel m;
		tu_model_open(&m, gguf);
		for (size_t bi = 0; bi < sizeof builds / sizeof builds[0]; bi++) {
			char prog[4096], extra[128];
			snprintf(prog, sizeof prog, "%s-%s%s", tu_tmp(name), t->name, builds[bi].tag);
			snprintf(extra, sizeof extra, "%s%s", t->opts, builds[bi].extra);
			build(gguf, prog, extra);
			int rows;
			float *got = run_prog(prog, prompt13, 13, 4, &rows, NULL);
			assert_int_equal(rows, 17 * m.nv);
			double d = tu_vs_interp(&m, got, 17, prompt13, 13, &builds[bi].calls);
			printf("head %s %-11s%-4s: vs interpreter %.2g rel\n", types[ti], t->name,
			       builds[bi].tag, d);
			tu_free(got);
		}
		if (t != &t_generic)
			last_only_check(gguf, types[ti], t);
		tu_model_close(&m);
	}
}

/* The same heads made by the quantize_head pass from an f16 model (the default pipeline
 * plus quantize_head; its graph quantized the same way for the interpreter), native. */
static void test_quant_heads_pass(void **state)
{
	(void)state;
	static const char *const types[] = {"q8_0", "q6_k"};
	char f16[4096];
	snprintf(f16, sizeof f16, "%s", tu_tmp("qhead-f16.gguf"));
	char *log = NULL;
	if (tu_run(&log, "'%s' mkmodel --seed 3 --layers 1 --hidden 512 --vocab 517 -o '%s'", tu_bitnetc(),
		   f16))
		tu_fail_log(log, "mkmodel");
	free(log);
	for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
		char name[64];
		snprintf(name, sizeof name, "qhead-%s", types[ti]);
		TuModel m;
		tu_model_open(&m, f16);
		BnErr e = {0};
		PassOpts o = {0};
		int prc = pass_opts_set(&o, "quantize_head", "type", types[ti], &e) ||
			  pass_run(m.g, "quantize_head", &o, &e);
		pass_opts_free(&o);
		if (prc)
			fail_msg("%s", e.msg);
		char pl[4096], prog[4096], extra[8400];
		snprintf(pl, sizeof pl, "%s.lua", tu_tmp(name));
		assert_int_equal(tu_run(NULL, "sed 's/^p:add(\"plan_memory\")/p:add(\"quantize_head\")\\np:add(\"plan_memory\")/' "
					      "'%s/../../passes/default.lua' > '%s' && grep -q quantize_head '%s'",
					tu_data(""), pl, pl),
				 0);
		snprintf(prog, sizeof prog, "%s-pass", tu_tmp(name));
		snprintf(extra, sizeof extra, "--pipeline '%s' --pass-opt quantize_head.type=%s", pl, types[ti]);
		build(f16, prog, extra);
		int rows;
		float *got = run_prog(prog, prompt13, 13, 4, &rows, NULL);
		assert_int_equal(rows, 17 * m.nv);
		double d = tu_vs_interp(&m, got, 17, prompt13, 13, &calls_default);
		printf("head %s by quantize_head (native): vs interpreter %.2g rel\n", types[ti], d);
		tu_free(got);
		tu_model_close(&m);
	}
}

/* Same input, byte-identical program; the program runs from another directory; the
 * weights can live in a file of their own. */
static void test_reproducible_and_relocatable(void **state)
{
	(void)state;
	char gguf[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tinyold-bitnet-i2_s.gguf"));
	char a[4096], b[4096], dir[4096], wf[4096], sep[4096];
	snprintf(a, sizeof a, "%s", tu_tmp("repro-a"));
	snprintf(b, sizeof b, "%s", tu_tmp("repro-b"));
	build(gguf, a, "");
	build(gguf, b, "");
	assert_int_equal(tu_run(NULL, "cmp -s '%s' '%s'", a, b), 0);

	snprintf(dir, sizeof dir, "%s", tu_tmp("moved"));
	assert_int_equal(tu_run(NULL, "rm -rf '%s' && mkdir -p '%s/x' && cp '%s' '%s/x/prog'", dir, dir,
				a, dir),
			 0);
	char *out = NULL;
	assert_int_equal(tu_run(&out, "cd / && '%s/x/prog' --tokens 1,2,3 -n 2 --temp 0 -t 1", dir), 0);
	free(out);
	int ra, rb;
	float *la = run_prog(a, prompt13, 13, 0, &ra, NULL);

	snprintf(wf, sizeof wf, "%s", tu_tmp("sep.weights"));
	snprintf(sep, sizeof sep, "%s", tu_tmp("sep-prog"));
	char extra[4200];
	snprintf(extra, sizeof extra, "--weights-file '%s'", wf);
	build(gguf, sep, extra);
	assert_true(exists(wf));
	float *lb = run_prog(sep, prompt13, 13, 0, &rb, extra);
	assert_int_equal(ra, rb);
	assert_memory_equal(la, lb, (size_t)ra * sizeof(float));
	/* without its weights file the program says so and fails */
	assert_int_not_equal(tu_run(NULL, "'%s' --tokens 1,2 -n 0 2>/dev/null", sep), 0);
	tu_free(la);
	tu_free(lb);
}

/* Bad builds: a clear message, a non-zero exit, and no output file left behind. */
static void test_bad_builds(void **state)
{
	(void)state;
	char gguf[4096];
	snprintf(gguf, sizeof gguf, "%s", tu_data("golden/models/tiny-b158-i2_s.gguf"));
	char out[4096];
	snprintf(out, sizeof out, "%s", tu_tmp("bad-out"));
	unlink(out);
	char *log = NULL;
	int rc = tu_run(&log, "'%s' build /nonexistent/model.gguf -o '%s'", tu_bitnetc(), out);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(log, "/nonexistent/model.gguf"));
	free(log);
	assert_false(exists(out));

	rc = tu_run(&log, "'%s' build '%s' -o '%s' --target cpu-quantum", tu_bitnetc(), gguf, out);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(log, "cpu-quantum"));
	free(log);
	assert_false(exists(out));

	rc = tu_run(&log, "'%s' build '%s' -o '%s' --cc /nonexistent/cc", tu_bitnetc(), gguf, out);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(log, "/nonexistent/cc"));
	assert_non_null(strstr(log, "not found"));
	free(log);
	assert_false(exists(out));

	/* --cflags reach the compiler (split at spaces): an unknown flag makes it fail, and
	 * its message names the flag */
	rc = tu_run(&log, "'%s' build '%s' -o '%s' --cflags ' -DBN_UNUSED=1  -fno-such-flag-bitnetc'",
		    tu_bitnetc(), gguf, out);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(log, "no-such-flag-bitnetc"));
	free(log);
	assert_false(exists(out));

	/* a compiler that runs and fails: its message is shown */
	rc = tu_run(&log, "'%s' build '%s' -o '%s' --cc false", tu_bitnetc(), gguf, out);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(log, "compiler failed"));
	free(log);
	assert_false(exists(out));
	/* no temporary files left beside the output */
	rc = tu_run(&log, "ls -a \"$(dirname '%s')\" | grep -c '^\\.bad-out\\.' || true", out);
	assert_int_equal(atoi(log), 0);
	free(log);

	rc = tu_run(&log, "'%s' build '%s'", tu_bitnetc(), gguf);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(log, "-o"));
	free(log);
}

/* The i2_s golden models with their ternary weights in t5_x16 (5 trits per byte), per
 * target (state): the same bounds as the default layout. */
static void test_golden_t5(void **state)
{
	const Target *t = *state;
	char what[128], extra[256];
	snprintf(what, sizeof what, "golden models in t5_x16, %s", t->name);
	need(t->need, what);
	snprintf(extra, sizeof extra, " %s --pass-opt permute_weights.layout=t5_x16", t->opts);
	for (size_t mi = 0; mi < sizeof goldens / sizeof goldens[0]; mi++)
		if (strstr(goldens[mi], "i2_s"))
			golden_check(mi, extra);
}

/* Native runs again after a test that set golden_env, failed or not. */
static int golden_env_reset(void **state)
{
	golden_env = NULL;
	golden_n_prompts = 0;
	return tu_teardown(state);
}

/* The golden check of two i2_s models built for cpu-rvv (clang: tu_rvv_cc) and run under
 * qemu-riscv64, one at VLEN 128 and one at 256, on the first prompt (qemu runs vector code
 * slowly; test_kernels checks the kernels in more call shapes). Skipped without the RISC-V
 * tools. */
static void test_golden_rvv(void **state)
{
	(void)state;
	char why[256], extra[300], env[300];
	const char *cc = tu_rvv_cc(why, sizeof why);
	if (!cc) {
		print_message("skipped: golden models for cpu-rvv under qemu: %s\n", why);
		skip();
	}
	snprintf(extra, sizeof extra, "--target cpu-rvv --cc %s --cflags --target=riscv64-linux-gnu",
		 cc);
	static const struct {
		const char *model;
		int vlen;
	} v[] = {{"tiny-b158-i2_s", 128}, {"tinyllama-i2_s", 256}};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		snprintf(env, sizeof env, "qemu-riscv64 -cpu rv64,v=true,vlen=%d,vext_spec=v1.0 -L %s",
			 v[i].vlen, TU_RV_SYSROOT);
		golden_env = env;
		golden_n_prompts = 1;
		size_t mi = 0;
		while (strcmp(goldens[mi], v[i].model) != 0)
			mi++;
		golden_check(mi, extra);
		golden_env = NULL;
		golden_n_prompts = 0;
	}
}

/* The golden check of three i2_s models built for cpu-sve (Debian's aarch64-linux-gnu-gcc)
 * and run under qemu-aarch64 at vector lengths of 128, 256 and 512 bits, on the first
 * prompt. Skipped without the tools. */
static void test_golden_sve(void **state)
{
	(void)state;
	static const char sysroot[] = "/usr/aarch64-linux-gnu";
	char env[300];
	if (tu_run(NULL, "command -v qemu-aarch64 && test -e %s/lib/ld-linux-aarch64.so.1 && "
			 "echo '#include <arm_sve.h>' | aarch64-linux-gnu-gcc -march=armv8.2-a+sve "
			 "-x c -c -o /dev/null -", sysroot) != 0) {
		print_message("skipped: golden models for cpu-sve under qemu: needs qemu-aarch64, %s "
			      "and an aarch64-linux-gnu-gcc with <arm_sve.h> (tools/setup.sh)\n", sysroot);
		skip();
	}
	static const struct {
		const char *model;
		int bits;
	} v[] = {{"tiny-b158-i2_s", 128}, {"tinyllama-i2_s", 256}, {"tinyold-bitnet-i2_s", 512}};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		snprintf(env, sizeof env, "qemu-aarch64 -cpu max,sve%d=on -L %s", v[i].bits, sysroot);
		golden_env = env;
		golden_n_prompts = 1;
		size_t mi = 0;
		while (strcmp(goldens[mi], v[i].model) != 0)
			mi++;
		golden_check(mi, "--target cpu-sve --cc aarch64-linux-gnu-gcc");
		golden_env = NULL;
		golden_n_prompts = 0;
	}
}

/* cmocka test NAME of fn with state target t, freed by tu_teardown on failure */
#define TARGET_TEST(name, fn, t) {name, fn, NULL, tu_teardown, (void *)(uintptr_t)(t)}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_golden_models, tu_teardown),
		cmocka_unit_test_teardown(test_golden_sve, golden_env_reset),
		cmocka_unit_test_teardown(test_golden_rvv, golden_env_reset),
		cmocka_unit_test_teardown(test_variants, tu_teardown),
		cmocka_unit_test_teardown(test_split, tu_teardown),
		cmocka_unit_test_teardown(test_fused_adds, tu_teardown),
		cmocka_unit_test_teardown(test_launch_groups, tu_teardown),
		cmocka_unit_test_teardown(test_thread_counts, tu_teardown),
		cmocka_unit_test_teardown(test_pipelines, tu_teardown),
		cmocka_unit_test_teardown(test_reproducible_and_relocatable, tu_teardown),
		TARGET_TEST("test_last_only cpu-generic", test_last_only, &t_generic),
		TARGET_TEST("test_last_only native", test_last_only, &t_native),
		TARGET_TEST("test_last_only cpu-amx emulated", test_last_only, &t_amx_emu),
		TARGET_TEST("test_last_only cpu-amx", test_last_only, &t_amx),
		TARGET_TEST("test_golden_t5 cpu-generic", test_golden_t5, &t_generic),
		TARGET_TEST("test_golden_t5 cpu-avx2", test_golden_t5, &t_avx2),
		TARGET_TEST("test_golden_t5 cpu-avx512", test_golden_t5, &t_avx512),
		TARGET_TEST("test_step_rows cpu-generic", test_step_rows, &t_generic),
		TARGET_TEST("test_step_rows native", test_step_rows, &t_native),
		TARGET_TEST("test_step_rows cpu-avx2", test_step_rows, &t_avx2),
		TARGET_TEST("test_step_rows cpu-amx emulated", test_step_rows, &t_amx_emu),
		TARGET_TEST("test_step_row_counts cpu-generic", test_step_row_counts, &t_generic),
		TARGET_TEST("test_step_row_counts native", test_step_row_counts, &t_native),
		TARGET_TEST("test_step_row_counts cpu-avx2", test_step_row_counts, &t_avx2),
		TARGET_TEST("test_step_row_counts cpu-amx emulated", test_step_row_counts, &t_amx_emu),
		TARGET_TEST("test_decode cpu-generic", test_decode, &t_generic),
		TARGET_TEST("test_decode native", test_decode, &t_native),
		TARGET_TEST("test_simd_heads native", test_simd_heads, &t_native),
		TARGET_TEST("test_simd_heads cpu-avx2", test_simd_heads, &t_avx2),
		TARGET_TEST("test_quant_heads native", test_quant_heads, &t_native),
		TARGET_TEST("test_quant_heads cpu-avx2", test_quant_heads, &t_avx2),
		TARGET_TEST("test_quant_heads cpu-generic", test_quant_heads, &t_generic),
		cmocka_unit_test_teardown(test_quant_heads_pass, tu_teardown),
		cmocka_unit_test_teardown(test_bad_builds, tu_teardown),
	};
	if (getenv("BN_TEST_FILTER")) /* a pattern of test names to run ("test_step_rows*") */
		cmocka_set_test_filter(getenv("BN_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
