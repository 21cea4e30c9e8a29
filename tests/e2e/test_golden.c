/* test_golden.c - the reference interpreter against bitnet.cpp's logits in tests/data/golden.
 *
 * Acceptance (../shared/golden/README.md): teacher-forced over prompt + reference
 * continuation in step mode, per row max |d| <= 0.15, argmax agreement >= 97% of rows,
 * exact argmax wherever the reference's top-2 margin > 0.2. Batch mode (the whole
 * prompt in one call) is held to the same bounds against the batch files. */
#include "testutil.h"

#include "frontend.h"
#include "rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const models[] = {
	"tiny-b158-i2_s", "tiny-b158-tq2_0", "tiny-b158-tq1_0", "tinyold-bitnet-i2_s",
	"tinyllama-i2_s", "tinyllama-tq2_0", "tinyllama-tq1_0", "tinyllama-rf-i2_s",
};
static const char *const prompts[] = {"p1", "p2", "p3"};


typedef struct {
	GgufFile *f;
	IrGraph *g;
	int nv;
} Model;

static void model_open(Model *m, const char *name)
{
	char rel[256];
	BnErr e = {0};
	snprintf(rel, sizeof rel, "golden/models/%s.gguf", name);
	m->f = gguf_open(tu_data(rel), &e);
	if (!m->f)
		fail_msg("%s", e.msg);
	m->g = bnm_load(m->f, &e);
	if (!m->g)
		fail_msg("%s", e.msg);
	m->nv = (int)m->g->hp.n_vocab;
}

static void model_close(Model *m)
{
	ir_graph_free(m->g);
	gguf_close(m->f);
}

/* Loads M.P.mode.{json,prompt.f32,gen.f32}: tokens (prompt then generated) and ref rows. */
static int load_ref(const char *m, const char *p, const char *mode, int32_t *tok, int *n_prompt,
		    float **ref, int nv)
{
	char rel[256];
	snprintf(rel, sizeof rel, "golden/logits/%s.%s.%s.json", m, p, mode);
	size_t jn;
	char *raw = tu_read_file(tu_data(rel), &jn);
	assert_non_null(raw);
	char *json = calloc(1, jn + 1); /* tu_read_file does not terminate */
	memcpy(json, raw, jn);
	free(raw);
	*n_prompt = tu_json_ints(json, "prompt_tokens", tok, 64);
	int n_gen = tu_json_ints(json, "generated_tokens", tok + *n_prompt, 64);
	free(json);
	assert_true(*n_prompt > 0 && n_gen == 32);
	int n = *n_prompt + n_gen;
	*ref = malloc((size_t)n * (size_t)nv * sizeof(float));
	size_t sz;
	snprintf(rel, sizeof rel, "golden/logits/%s.%s.%s.prompt.f32", m, p, mode);
	float *a = tu_read_file(tu_data(rel), &sz);
	assert_int_equal(sz, (size_t)*n_prompt * (size_t)nv * sizeof(float));
	snprintf(rel, sizeof rel, "golden/logits/%s.%s.%s.gen.f32", m, p, mode);
	float *b = tu_read_file(tu_data(rel), &sz);
	assert_int_equal(sz, (size_t)n_gen * (size_t)nv * sizeof(float));
	memcpy(*ref, a, (size_t)*n_prompt * (size_t)nv * sizeof(float));
	memcpy(*ref + (size_t)*n_prompt * (size_t)nv, b, (size_t)n_gen * (size_t)nv * sizeof(float));
	free(a);
	free(b);
	return n;
}

static void run_model(const char *name, bool batch_prompt)
{
	Model m;
	model_open(&m, name);
	TuGolden all = {0};
	for (size_t pi = 0; pi < sizeof prompts / sizeof prompts[0]; pi++) {
		int32_t tok[128];
		int n_prompt;
		float *ref;
		int n = load_ref(name, prompts[pi], batch_prompt ? "batch" : "step", tok, &n_prompt, &ref,
				 m.nv);
		BnErr e = {0};
		IrInterp *it = ir_interp_new(m.g, 256, &e);
		if (!it)
			fail_msg("%s", e.msg);
		float *got = malloc((size_t)n * (size_t)m.nv * sizeof(float));
		int i = 0;
		if (batch_prompt) {
			if (ir_interp_eval(it, tok, n_prompt, got, &e))
				fail_msg("%s", e.msg);
			i = n_prompt;
		}
		for (; i < n; i++)
			if (ir_interp_eval(it, tok + i, 1, got + (size_t)i * (size_t)m.nv, &e))
				fail_msg("%s", e.msg);
		for (i = 0; i < n; i++)
			tu_golden_row(&all, got + (size_t)i * (size_t)m.nv, ref + (size_t)i * (size_t)m.nv, m.nv);
		ir_interp_free(it);
		free(got);
		free(ref);
	}
	printf("golden %-20s %-5s rows %3d  max|d| %.3g  median row max|d| %.2g  argmax %d/%d (%.1f%%)  margin>0.2 rows %d/%d\n",
	       name, batch_prompt ? "batch" : "step", all.rows, all.max_d, tu_golden_median(&all), all.agree, all.rows,
	       100.0 * all.agree / all.rows, all.margin_ok, all.margin_rows);
	assert_true(all.agree * 100 >= all.rows * 97);
	model_close(&m);
}

static void test_step(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
		run_model(models[i], false);
}

static void test_batch(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
		run_model(models[i], true);
}

/* A prompt split across multi-token calls (5 + 2 + rest) gives exactly the logits of
 * the whole prompt in one call (single-token calls would differ by the step mode's
 * f16 roundings), whatever the thread count. */
static void test_split_prompt(void **state)
{
	(void)state;
	Model m;
	model_open(&m, "tiny-b158-i2_s");
	int32_t tok[] = {496, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98};
	int n = 12;
	BnErr e = {0};
	IrInterp *a = ir_interp_new(m.g, 64, &e), *b = ir_interp_new(m.g, 64, &e);
	assert_non_null(a);
	assert_non_null(b);
	float *la = malloc((size_t)n * (size_t)m.nv * sizeof(float));
	float *lb = malloc((size_t)n * (size_t)m.nv * sizeof(float));
	ir_interp_set_threads(b, 3); /* row splitting must not change a single bit */
	assert_int_equal(ir_interp_eval(a, tok, n, la, &e), 0);
	assert_int_equal(ir_interp_eval(b, tok, 5, lb, &e), 0);
	assert_int_equal(ir_interp_eval(b, tok + 5, 2, lb + 5 * m.nv, &e), 0);
	assert_int_equal(ir_interp_eval(b, tok + 7, n - 7, lb + 7 * m.nv, &e), 0);
	assert_int_equal(ir_interp_pos(b), n);
	assert_memory_equal(la, lb, (size_t)n * (size_t)m.nv * sizeof(float));
	/* a full context is an error, not an overflow */
	ir_interp_reset(a);
	int32_t many[65] = {0};
	assert_int_not_equal(ir_interp_eval(a, many, 65, NULL, &e), 0);
	assert_non_null(strstr(e.msg, "context"));
	ir_interp_free(a);
	ir_interp_free(b);
	free(la);
	free(lb);
	model_close(&m);
}

/* Free-running greedy generation in step mode reproduces the reference's continuation;
 * it may part from it only at a step whose top-2 margin is small (< 0.05), where a
 * last-ulp difference may legitimately pick the other token. */
static void test_greedy(void **state)
{
	(void)state;
	for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
		Model m;
		model_open(&m, models[mi]);
		for (size_t pi = 0; pi < sizeof prompts / sizeof prompts[0]; pi++) {
			char rel[256];
			snprintf(rel, sizeof rel, "golden/logits/%s.%s.step.json", models[mi], prompts[pi]);
			size_t jn;
			char *raw = tu_read_file(tu_data(rel), &jn);
			assert_non_null(raw);
			char *json = calloc(1, jn + 1);
			memcpy(json, raw, jn);
			free(raw);
			int32_t prompt[64], gen[64];
			int np = tu_json_ints(json, "prompt_tokens", prompt, 64);
			int ng = tu_json_ints(json, "generated_tokens", gen, 64);
			/* the margins are floats; read them with strtod */
			double margin[64];
			const char *p = strstr(json, "\"top2_margin_at_choice\": [");
			assert_non_null(p);
			p = strchr(p, '[') + 1;
			for (int i = 0; i < ng; i++) {
				char *end;
				margin[i] = strtod(p, &end);
				p = end + 1;
			}
			free(json);
			BnErr e = {0};
			IrInterp *it = ir_interp_new(m.g, 256, &e);
			assert_non_null(it);
			float *lg = malloc((size_t)m.nv * sizeof(float));
			int32_t t = 0;
			for (int i = 0; i < np; i++)
				assert_int_equal(ir_interp_eval(it, prompt + i, 1, lg, &e), 0);
			int matched = 0;
			for (int i = 0; i < ng; i++) {
				t = (int32_t)rt_argmax(lg, m.nv);
				if (t != gen[i]) {
					/* a divergence is only allowed where the reference itself was unsure */
					assert_true(margin[i] < 0.05);
					break;
				}
				matched++;
				assert_int_equal(ir_interp_eval(it, &t, 1, lg, &e), 0);
			}
			printf("greedy %-20s %s: %d/%d tokens match the reference\n", models[mi],
			       prompts[pi], matched, ng);
			free(lg);
			ir_interp_free(it);
		}
		model_close(&m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_step),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_split_prompt),
		cmocka_unit_test(test_greedy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
