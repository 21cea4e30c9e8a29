/* test_rt_api.c - the runtime API (bitnetc.h) in this process, on the hand-written model of
 * fake_model.c (linked in; see its header for its logits): opening, metadata, contexts,
 * the call split, decoding and its errors, contexts in two threads at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bitnetc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NV 16
#define WBYTES 5000

static char wpath[1024];

/* The fake's payload as a weights file: the bytes, then the trailer with hash 0 (what
 * fake_model.c expects without FAKE_HASH), which is not the bytes' real hash. */
static int write_weights(void **state)
{
	(void)state;
	const char *tmp = getenv("BN_TMP");
	snprintf(wpath, sizeof wpath, "%s/test_rt_api.weights", tmp && *tmp ? tmp : "/tmp");
	FILE *f = fopen(wpath, "wb");
	if (!f)
		return -1;
	for (int i = 0; i < WBYTES; i++)
		fputc((i * 31 + 7) & 255, f);
	unsigned char t[32] = "BNWEIGHT";
	uint64_t fields[3] = {0, WBYTES, 0};
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 8; i++)
			t[8 + 8 * k + i] = (unsigned char)(fields[k] >> (8 * i));
	fwrite(t, 1, sizeof t, f);
	return fclose(f);
}

static bn_model *open_model(void)
{
	char err[512];
	bn_model *m = bn_model_open(wpath, err, sizeof err);
	if (!m)
		fail_msg("bn_model_open: %s", err);
	return m;
}

static void test_open(void **state)
{
	(void)state;
	char err[512];
	assert_int_equal(bn_model_check(err, sizeof err), BN_OK);
	/* the linked model's description, nothing opened */
	assert_string_equal(bn_model_meta(NULL, "name"), "fake-16");
	assert_null(bn_model_meta(NULL, "no-such-key"));
	assert_int_equal(bn_model_n_vocab(NULL), NV);
	assert_int_equal(bn_model_n_ctx_train(NULL), 64);
	assert_int_equal(bn_model_meta_int(NULL, "max_batch"), 4);
	assert_int_equal(bn_model_meta_int(NULL, "eos"), 15);
	assert_int_equal(bn_model_meta_int(NULL, "no-such-key"), -1);
	int32_t sizes[8];
	assert_int_equal(bn_model_batch_sizes(NULL, sizes, 8), 3);
	assert_int_equal(sizes[2], 4);
	assert_int_equal(bn_model_kv_bytes(NULL, 10), 160);
	assert_int_equal(bn_model_default_ctx(NULL), 64);
	/* a missing file */
	int code = 0;
	assert_null(bn_model_open_ex("/nonexistent/w.bin", NULL, 0, &code, err, sizeof err));
	assert_int_equal(code, BN_E_WEIGHTS);
	assert_non_null(strstr(err, "/nonexistent/w.bin: cannot open weights"));
	/* the trailer's hash matches, the bytes do not: only bn_model_verify reads them */
	bn_model *m = open_model();
	assert_int_equal(bn_model_meta_int(m, "weights_embedded"), 0);
	assert_string_equal(bn_model_meta(m, "weights_path"), wpath);
	assert_int_equal(bn_model_verify(m, err, sizeof err), BN_E_WEIGHTS);
	assert_non_null(strstr(err, "the weights payload is damaged"));
	/* no tokenizer */
	int32_t ids[4];
	assert_int_equal(bn_model_tokenizer_status(m, NULL, 0), BN_E_NO_TOKENIZER);
	assert_int_equal(bn_tokenize(m, "hi", ids, 4, 1), BN_E_NO_TOKENIZER);
	assert_true(bn_token_is_eog(m, 15));
	assert_false(bn_token_is_eog(m, 14));
	assert_int_equal(bn_token_bos(m), 0);
	assert_null(bn_chat_template_name(m, "no-such"));
	assert_string_equal(bn_chat_template_name(m, NULL), "none");
	assert_string_equal(bn_chat_template_name(NULL, "llama-3"), "llama3");
	bn_model_close(m);
	/* opened for inspection: no contexts */
	m = bn_model_open_ex(wpath, NULL, BN_OPEN_INSPECT, &code, err, sizeof err);
	assert_non_null(m);
	assert_null(bn_ctx_new_ex(m, 8, 1, &code, err, sizeof err));
	assert_int_equal(code, BN_E_ARG);
	bn_model_close(m);
	for (int c = BN_E_DEVICE; c < BN_OK; c++)
		assert_string_not_equal(bn_strerror(c), bn_strerror(c + 1));
}

/* The row the fake writes for token t in a call of size call after token prev. */
static void check_row(const float *row, int t, int call, int prev)
{
	assert_true(row[(t + 1) % NV] == 10.0f);
	if (row[(t + 2) % NV] != (float)call)
		fail_msg("token %d: call size %g, want %d", t, row[(t + 2) % NV], call);
	assert_true(row[(t + 3) % NV] == 0.01f * (float)(prev + 1));
}

static void test_decode(void **state)
{
	(void)state;
	bn_model *m = open_model();
	char err[512];
	bn_ctx *c = bn_ctx_new(m, 16, 2, err, sizeof err);
	assert_non_null(c);
	assert_int_equal(bn_ctx_n_ctx(c), 16);
	assert_int_equal(bn_ctx_n_threads(c), 2);
	assert_int_equal(bn_ctx_ubatch(c), 4);
	/* the split: largest first, a rest below 4 in one call, never a last call of one */
	assert_int_equal(bn_decode_split(c, 9), 4);
	assert_int_equal(bn_decode_split(c, 5), 3);
	assert_int_equal(bn_decode_split(c, 3), 3);
	assert_int_equal(bn_decode_split(c, 1), 1);
	int32_t toks[16];
	for (int i = 0; i < 16; i++)
		toks[i] = (i * 5 + 1) % 15;
	float rows[9 * NV], last[NV];
	assert_int_equal(bn_decode(c, toks, 9, rows), BN_OK);
	assert_int_equal(bn_ctx_pos(c), 9);
	const int calls[9] = {4, 4, 4, 4, 3, 3, 3, 2, 2};
	for (int i = 0; i < 9; i++)
		check_row(rows + i * NV, toks[i], calls[i], i ? toks[i - 1] : -1);
	/* the last row alone: the same bits; appended after what is in the cache */
	bn_ctx_reset(c);
	assert_int_equal(bn_decode_ex(c, toks, 9, last, BN_DECODE_LAST), BN_OK);
	assert_memory_equal(last, rows + 8 * NV, sizeof last);
	assert_int_equal(bn_decode_ex(c, toks + 9, 1, last, BN_DECODE_LAST), BN_OK);
	check_row(last, toks[9], 1, toks[8]);
	assert_int_equal(bn_ctx_pos(c), 10);
	/* one call as given (the program's --logits-out path) */
	assert_int_equal(bn_decode_ex(c, toks + 10, 3, rows, BN_DECODE_ONE_CALL), BN_OK);
	check_row(rows + 2 * NV, toks[12], 3, toks[11]);
	assert_int_equal(bn_decode_ex(c, toks, 5, rows, BN_DECODE_ONE_CALL), BN_E_ARG);
	/* errors leave the context as it was */
	assert_int_equal(bn_decode(c, toks, 4, NULL), BN_E_CTX);
	assert_non_null(strstr(bn_ctx_last_error(c), "full"));
	int32_t bad[2] = {3, NV};
	assert_int_equal(bn_decode(c, bad, 2, NULL), BN_E_TOKEN);
	assert_non_null(strstr(bn_ctx_last_error(c), "token 16 (index 1) is out of range"));
	assert_int_equal(bn_decode(c, toks, 0, NULL), BN_E_ARG);
	assert_int_equal(bn_ctx_pos(c), 13);
	assert_int_equal(bn_ctx_nonfinite(c, NULL, NULL, NULL), BN_E_ARG);
	/* -ub 2 */
	assert_int_equal(bn_ctx_set_ubatch(c, 2), BN_OK);
	bn_ctx_reset(c);
	assert_int_equal(bn_decode(c, toks, 5, rows), BN_OK);
	const int calls2[5] = {2, 2, 1, 2, 2}; /* 5: 2, then 3 = 1 + 2 (the cap allows no 3) */
	for (int i = 0; i < 5; i++)
		check_row(rows + i * NV, toks[i], calls2[i], i ? toks[i - 1] : -1);
	assert_null(bn_ctx_new(m, -1, 1, err, sizeof err));
	bn_ctx_free(c);
	bn_model_close(m);
}

typedef struct {
	bn_ctx *c;
	float rows[12 * NV];
	int rc;
} Job;

static void *job(void *arg)
{
	Job *j = arg;
	int32_t toks[12];
	for (int i = 0; i < 12; i++)
		toks[i] = (i * 7 + 2) % 15;
	for (int rep = 0; rep < 50 && !j->rc; rep++) {
		bn_ctx_reset(j->c);
		j->rc = bn_decode(j->c, toks, 12, j->rows);
	}
	return NULL;
}

/* One model, two contexts decoding in two threads at once. */
static void test_threads(void **state)
{
	(void)state;
	bn_model *m = open_model();
	static Job jobs[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		jobs[i].c = bn_ctx_new(m, 32, 2 + i, NULL, 0);
		assert_non_null(jobs[i].c);
		jobs[i].rc = 0;
		assert_int_equal(pthread_create(&th[i], NULL, job, &jobs[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(jobs[0].rc, BN_OK);
	assert_int_equal(jobs[1].rc, BN_OK);
	assert_memory_equal(jobs[0].rows, jobs[1].rows, sizeof jobs[0].rows);
	for (int i = 0; i < 2; i++)
		bn_ctx_free(jobs[i].c);
	bn_model_close(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, write_weights, NULL);
}
