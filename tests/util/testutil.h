/* testutil.h - helpers shared by the cmocka tests: data paths, files, running the driver. */
#ifndef BITNETC_TESTUTIL_H
#define BITNETC_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "frontend.h"
#include "ir.h"

/* $BN_TEST_DATA/rel (tests/data in the source tree); static buffer per call slot. */
const char *tu_data(const char *rel);
/* A fresh path under $BN_TMP (the build's tests/tmp) for name. */
const char *tu_tmp(const char *name);
/* The driver binary ($BITNETC). */
const char *tu_bitnetc(void);
/* What a test holds when an assertion fails (cmocka longjmps out of it) is freed by
 * tu_teardown, the teardown of the tests that use these: register the test with
 * cmocka_unit_test_teardown(fn, tu_teardown). tu_hold(p) keeps the malloc'd p (returned)
 * for it; tu_free(p) frees p now (held or not, NULL is fine). Open TuModels are held too. */
void *tu_hold(void *p);
void tu_free(void *p);
int tu_teardown(void **state);
/* fail_msg("MESSAGE: LOG") with MESSAGE from fmt, after freeing log (tu_run's output). */
void tu_fail_log(char *log, const char *fmt, ...) BN_PRINTF(2, 3);
/* Whole file into a malloc'd buffer (NULL if unreadable); *n gets the size. */
void *tu_read_file(const char *path, size_t *n);
int tu_write_file(const char *path, const void *data, size_t n);
/* Writes text to tu_tmp(name), failing the test if it cannot; returns that path (a tu_tmp
 * slot). */
const char *tu_tmp_text(const char *name, const char *text);
/* `bitnetc emit` of the golden model rel (under tests/data; an absolute path as it is) for
 * target into the fresh directory tu_tmp(dir); its model.c as a NUL-terminated string
 * (held: tu_teardown). */
char *tu_emit_model_c(const char *dir, const char *rel, const char *target);
/* The interpreter's output of graph g (which it frees) fed the tokens 0..t-1, each row of
 * the embedding tables a test built: a malloc'd t x row floats; fails the test on an error. */
float *tu_interp_rows(IrGraph *g, int t, int64_t row);
/* C text: the runtime functions a model.c names (rt_model.h), each aborting, for a test
 * program that includes model.c (and <stdlib.h>) to call its kernels directly: no forward
 * runs there. */
extern const char tu_model_c_stubs[];
/* A malloc'd copy of the function in src that starts with head, through the "}" that closes
 * it at the start of a line (emitted C: a kernel to compile alone); NULL if none. */
char *tu_function_text(const char *src, const char *head);
/* Runs a shell command; returns its exit status (-1 if it did not exit normally) and,
 * if out is non-NULL, a malloc'd NUL-terminated copy of stdout+stderr. */
int tu_run(char **out, const char *fmt, ...) BN_PRINTF(2, 3);
/* Runs the command (in { ...; }, so that its own redirections win); fails the test unless
 * it exits with want. Returns its output (tu_run's; the caller frees it). */
char *tu_run_ok(int want, const char *fmt, ...) BN_PRINTF(2, 3);
/* Fails the test unless out contains frag. */
void tu_expect_has(const char *out, const char *frag);
/* The integers of the list after "key": [ in a JSON text (the golden files' layout);
 * at most max; -1 if the key is missing. */
int tu_json_ints(const char *json, const char *key, int32_t *out, int max);
/* The golden acceptance rule (../shared/golden/README.md), in one place: per row max |d|
 * <= 0.15 and exact argmax where the reference's top-2 margin > 0.2 (asserted by
 * tu_golden_row); argmax agreement counted for the >= 97% gate the callers apply. */
typedef struct {
	int rows, agree, margin_rows, margin_ok;
	double max_d;
	double row_d[1024]; /* per-row max |d| of the first 1024 rows, for the median */
} TuGolden;
void tu_golden_row(TuGolden *s, const float *got, const float *ref, int nv);
/* Median of the per-row max |d| seen so far. */
double tu_golden_median(TuGolden *s);
/* Gap between the best and the second-best logit of a row. */
float tu_margin(const float *row, int nv);
/* tests/data/golden/models/MODEL.gguf opened and lowered (fails the test on error); free
 * with tu_golden_graph_free, which also drops the graph's pass attributes. */
IrGraph *tu_golden_graph(const char *model, GgufFile **f);
void tu_golden_graph_free(IrGraph *g, GgufFile *f);
/* A model file opened and lowered, dce run (what a program is built from); nv its vocab.
 * Held (tu_hold) until tu_model_close. */
typedef struct {
	GgufFile *f;
	IrGraph *g;
	int nv;
	bool attn_f64; /* tu_vs_interp's interpreter sums attention in double (the GPU kernels') */
} TuModel;
void tu_model_open(TuModel *m, const char *path);
void tu_model_close(TuModel *m);
/* The sizes a program splits a prompt into (ascending): its batch templates below -ub,
 * then -ub (the largest template without it). */
typedef struct {
	int n;
	int s[8];
} TuCalls;
/* The program's call split (runtime/rt_api.c, bn_decode_split) of rem prompt tokens. */
int tu_chunk(int rem, const TuCalls *c);
/* Runs program prog (after env, e.g. "VAR=x", may be NULL) on the token ids, teacher-forced,
 * then gen greedy tokens, 2 threads, extra flags (may be NULL); fails the test unless it
 * exits 0. Returns its --logits-out rows (held: tu_free; *rows gets the number of floats). */
float *tu_run_logits(const char *env, const char *prog, const int32_t *tok, int n, int gen,
		     int *rows, const char *extra);
/* The RISC-V tools here: qemu-riscv64, the riscv64 cross libc (TU_RV_SYSROOT) and a C
 * compiler with the RVV 1.0 intrinsics (clang 16+, --target=riscv64-linux-gnu; gcc 12 has
 * none): its name, or NULL with why saying what is missing. Looked up once. */
#define TU_RV_SYSROOT "/usr/riscv64-linux-gnu"
const char *tu_rvv_cc(char *why, size_t n);
/* max |d| / max(1, max |ref|) over one row of nv logits. */
double tu_rel_diff(const float *got, const float *ref, int nv);
/* A program's logits rows (n prompt rows, then rows - n generated, each from the token the
 * program chose) against the interpreter run the same way: the prompt in the program's
 * calls, then one token per call. Fails the test past 1e-4 relative per row; returns the
 * worst. */
double tu_vs_interp(TuModel *m, const float *got, int rows, const int32_t *tok, int n,
		    const TuCalls *calls);
/* The graph as ir_print writes it, malloc'd. */
char *tu_print_graph(const IrGraph *g);
/* The little-endian u64 at p. */
uint64_t tu_le64(const uint8_t *p);
/* " (BITNETC_CPU_MASK=F hides the rest)" while the host features are masked, else "":
 * for the message of a test skipped for want of a feature. */
const char *tu_mask_note(void);

/* Deterministic random numbers for tests. */
uint64_t tu_rand(uint64_t *state);
float tu_randf(uint64_t *state); /* uniform in [-1, 1) */

#endif
