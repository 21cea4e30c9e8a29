/* embed_models.c - a product with the four golden models linked into one process
 * (tests/e2e/test_embed.c): libg1.a and libg2.a (static), libg3.so and libg4.so (shared),
 * each called through its own header (g1_decode, g2_decode, ...). For each model it writes
 * the logits of every position of the token ids to OUTDIR/gN.f32 (one context, decoded as
 * bn_decode splits it), then decodes again in five threads at once (each model in its own
 * thread, and a second context of g1) and checks those logits are the same bits.
 * Usage: embed_models IDS OUTDIR   (IDS: "1,2,3"). Prints "ok ..." lines; exit 0 if all ok. */
#include "g1.h"
#include "g2.h"
#include "g3.h"
#include "g4.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	const char *name;
	bn_model *(*open)(const char *, char *, size_t);
	void (*close)(bn_model *);
	bn_ctx *(*ctx_new)(bn_model *, int32_t, int32_t, char *, size_t);
	void (*ctx_free)(bn_ctx *);
	int (*decode)(bn_ctx *, const int32_t *, int32_t, float *);
	int32_t (*n_vocab)(const bn_model *);
	const char *(*meta)(const bn_model *, const char *);
} Api;

#define API(P)                                                                              \
	{                                                                                   \
		#P, P##_model_open, P##_model_close, P##_ctx_new, P##_ctx_free, P##_decode, \
			P##_model_n_vocab, P##_model_meta                                   \
	}

static const Api apis[] = {API(g1), API(g2), API(g3), API(g4)};
enum { N_MODELS = sizeof apis / sizeof apis[0] };

static int32_t ids[256];
static int n_ids;

typedef struct {
	const Api *api;
	bn_model *m;
	float *ref; /* the sequential run's rows */
	int nv;
	int rc;     /* the threaded run: 0 same bits */
	char why[300];
} Job;

/* All rows of the ids in a fresh context of two threads; NULL on failure (why). */
static float *run(const Api *a, bn_model *m, int nv, char *why, size_t why_n)
{
	char err[512];
	bn_ctx *c = a->ctx_new(m, 64, 2, err, sizeof err);
	if (!c) {
		snprintf(why, why_n, "%s: ctx_new: %s", a->name, err);
		return NULL;
	}
	float *l = malloc(sizeof(float) * (size_t)nv * (size_t)n_ids);
	int rc = l ? a->decode(c, ids, n_ids, l) : -2;
	a->ctx_free(c);
	if (rc) {
		snprintf(why, why_n, "%s: decode: %d", a->name, rc);
		free(l);
		return NULL;
	}
	return l;
}

static void *job(void *p)
{
	Job *j = p;
	float *l = run(j->api, j->m, j->nv, j->why, sizeof j->why);
	j->rc = !l ? 1 : memcmp(l, j->ref, sizeof(float) * (size_t)j->nv * (size_t)n_ids) != 0;
	if (l && j->rc)
		snprintf(j->why, sizeof j->why, "%s: other bits when run beside other models",
			 j->api->name);
	free(l);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: embed_models IDS OUTDIR\n");
		return 2;
	}
	for (char *p = argv[1]; *p && n_ids < 256; p++) {
		ids[n_ids++] = (int32_t)strtol(p, &p, 10);
		if (*p != ',')
			break;
	}
	Job jobs[N_MODELS + 1];
	int bad = 0;
	for (int i = 0; i < N_MODELS; i++) {
		const Api *a = &apis[i];
		char err[512];
		bn_model *m = a->open(NULL, err, sizeof err);
		if (!m) {
			printf("FAIL %s: open: %s\n", a->name, err);
			return 1;
		}
		jobs[i] = (Job){.api = a, .m = m, .nv = a->n_vocab(m)};
		jobs[i].ref = run(a, m, jobs[i].nv, jobs[i].why, sizeof jobs[i].why);
		if (!jobs[i].ref) {
			printf("FAIL %s\n", jobs[i].why);
			return 1;
		}
		char path[4096];
		snprintf(path, sizeof path, "%s/%s.f32", argv[2], a->name);
		FILE *f = fopen(path, "wb");
		size_t k = (size_t)jobs[i].nv * (size_t)n_ids;
		if (!f || fwrite(jobs[i].ref, sizeof(float), k, f) != k || fclose(f) != 0) {
			printf("FAIL %s: cannot write %s\n", a->name, path);
			return 1;
		}
		printf("ok %s: %d rows of %d logits (arch %s)\n", a->name, n_ids, jobs[i].nv,
		       a->meta(m, "arch"));
	}
	jobs[N_MODELS] = jobs[0]; /* a second context of g1 */
	pthread_t th[N_MODELS + 1];
	for (int i = 0; i <= N_MODELS; i++)
		if (pthread_create(&th[i], NULL, job, &jobs[i]) != 0) {
			printf("FAIL cannot start a thread\n");
			return 1;
		}
	for (int i = 0; i <= N_MODELS; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].rc) {
			printf("FAIL %s\n", jobs[i].why);
			bad = 1;
		}
	}
	if (!bad)
		printf("ok the same bits in %d threads at once\n", N_MODELS + 1);
	for (int i = 0; i < N_MODELS; i++) {
		apis[i].close(jobs[i].m);
		free(jobs[i].ref);
	}
	return bad;
}
