/* test_share.c - the work sharing of the generated matmul and head drivers (the prelude's
 * Share, share_begin, share_next, and share_begin_ns, share_next_ns for several streams a
 * thread, as `bitnetc emit` writes them into model.c), in a small threaded program: for
 * 1..17 threads (more than SHARE_LANES), 1, 2 and 4 streams, job sizes from 0 units to
 * tens of thousands and unit sizes from a byte to megabytes, every unit is handed out
 * exactly once and every chunk lies inside the job; a thread with several streams gets
 * that many chunks at once while its lanes last; without a Share (the tuning program's
 * calls) the static shares cover the job once too; a thread that starts only after the
 * others finished finds its lanes taken by them (stealing), and a reset Share hands out a
 * job again. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char harness_main[] =
	"#include <pthread.h>\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <time.h>\n"
	"typedef struct {\n"
	"\tShare *sh;\n"
	"\tint64_t nu, ub;\n"
	"\tint ith, nth, ns, late;\n"
	"\tatomic_int *count; /* [nu] times each unit was handed out */\n"
	"\tint *owner;        /* [nu] the thread that got it */\n"
	"\tatomic_int *done;  /* threads finished */\n"
	"\tint bad;\n"
	"} Job;\n"
	"static void *run(void *arg)\n"
	"{\n"
	"\tJob *j = arg;\n"
	"\t/* late: starts once every other thread has finished (so the others took its lane) */\n"
	"\twhile (j->late && atomic_load(j->done) < j->nth - 1) {\n"
	"\t\tstruct timespec ts = {0, 1000000};\n"
	"\t\tnanosleep(&ts, NULL);\n"
	"\t}\n"
	"\tShareIt it = j->ns ? share_begin_ns(j->sh, j->nu, j->ub, j->ith, j->nth, j->ns)\n"
	"\t\t\t   : share_begin(j->sh, j->nu, j->ub, j->ith, j->nth);\n"
	"\tint64_t lo[8], hi[8];\n"
	"\tfor (int c, n = 0; (c = j->ns ? share_next_ns(&it, lo, hi) : share_next(&it, lo, hi)); n++) {\n"
	"\t\t/* its own lanes side by side: alone on a job, a chunk of each at first */\n"
	"\t\tif (c < 1 || c > it.ns || (n == 0 && j->sh && j->nth == 1 && j->nu >= SHARE_LANES &&\n"
	"\t\t\t\t\t\t    c != it.ns) || n > j->nu)\n"
	"\t\t\tj->bad = 1;\n"
	"\t\tfor (int i = 0; i < c && !j->bad; i++) {\n"
	"\t\t\tif (lo[i] < 0 || hi[i] > j->nu || lo[i] >= hi[i])\n"
	"\t\t\t\tj->bad = 1;\n"
	"\t\t\tfor (int64_t u = lo[i]; u < hi[i] && !j->bad; u++) {\n"
	"\t\t\t\tatomic_fetch_add(&j->count[u], 1);\n"
	"\t\t\t\tj->owner[u] = j->ith;\n"
	"\t\t\t}\n"
	"\t\t}\n"
	"\t}\n"
	"\tatomic_fetch_add(j->done, 1);\n"
	"\treturn NULL;\n"
	"}\n"
	"/* Runs a job of nu units on nth threads of ns streams (0: share_begin, share_next;\n"
	" * thread 0 late when late); 0 when every unit went out exactly once; with late,\n"
	" * *stolen: whether another thread took some of thread 0's first lane. */\n"
	"static int job(Share *sh, int64_t nu, int64_t ub, int nth, int ns, int late, int *stolen)\n"
	"{\n"
	"\tatomic_int *count = calloc((size_t)nu + 1, sizeof *count);\n"
	"\tint *owner = calloc((size_t)nu + 1, sizeof *owner);\n"
	"\tJob js[32];\n"
	"\tpthread_t th[32];\n"
	"\tatomic_int done = 0;\n"
	"\tif (!count || !owner)\n"
	"\t\treturn 2;\n"
	"\tfor (int i = 0; i < nth; i++) {\n"
	"\t\tjs[i] = (Job){sh, nu, ub, i, nth, ns, late && i == 0, count, owner, &done, 0};\n"
	"\t\tif (pthread_create(&th[i], NULL, run, &js[i]) != 0)\n"
	"\t\t\treturn 2;\n"
	"\t}\n"
	"\tint rc = 0;\n"
	"\tfor (int i = 0; i < nth; i++) {\n"
	"\t\tpthread_join(th[i], NULL);\n"
	"\t\trc |= js[i].bad;\n"
	"\t}\n"
	"\tfor (int64_t u = 0; u < nu; u++)\n"
	"\t\tif (atomic_load(&count[u]) != 1) {\n"
	"\t\t\tfprintf(stderr, \"nu %%lld ub %%lld threads %%d streams %%d%%s: unit %%lld handed out %%d times\\n\",\n"
	"\t\t\t\t(long long)nu, (long long)ub, nth, ns, sh ? \"\" : \" (static)\", (long long)u,\n"
	"\t\t\t\tatomic_load(&count[u]));\n"
	"\t\t\trc = 1;\n"
	"\t\t\tbreak;\n"
	"\t\t}\n"
	"\tfor (int i = 0; i < nth; i++)\n"
	"\t\tif (js[i].bad && !rc) {\n"
	"\t\t\tfprintf(stderr, \"nu %%lld ub %%lld threads %%d streams %%d%%s: thread %%d got a bad chunk\\n\",\n"
	"\t\t\t\t(long long)nu, (long long)ub, nth, ns, sh ? \"\" : \" (static)\", i);\n"
	"\t\t\trc = 1;\n"
	"\t\t}\n"
	"\tif (stolen) {\n"
	"\t\tShareIt it = share_begin_ns(sh, nu, ub, 0, nth, ns ? ns : 1);\n"
	"\t\t*stolen = 0;\n"
	"\t\tfor (int64_t u = 0; u < nu / it.nl; u++)\n"
	"\t\t\t*stolen |= owner[u] != 0;\n"
	"\t}\n"
	"\tfree(count);\n"
	"\tfree(owner);\n"
	"\treturn rc;\n"
	"}\n"
	"int main(void)\n"
	"{\n"
	"\tstatic const int64_t nus[] = {0, 1, 2, 3, 7, 8, 9, 16, 17, 100, 1000, 8017, 54321};\n"
	"\tstatic const int64_t ubs[] = {1, 97, 10240, 1 << 20, 5 << 20};\n"
	"\tstatic const int nths[] = {1, 2, 3, 4, 7, 8, 9, 17};\n"
	"\tstatic const int nss[] = {0, 1, 2, 4};\n"
	"\tShare sh;\n"
	"\tint bad = 0;\n"
	"\tfor (size_t a = 0; a < sizeof nus / sizeof nus[0]; a++)\n"
	"\t\tfor (size_t b = 0; b < sizeof ubs / sizeof ubs[0]; b++)\n"
	"\t\t\tfor (size_t c = 0; c < sizeof nths / sizeof nths[0]; c++)\n"
	"\t\t\t\tfor (size_t d = 0; d < sizeof nss / sizeof nss[0]; d++) {\n"
	"\t\t\t\t\tbad |= job(share_reset(&sh), nus[a], ubs[b], nths[c], nss[d], 0, NULL);\n"
	"\t\t\t\t\tbad |= job(NULL, nus[a], ubs[b], nths[c], nss[d], 0, NULL);\n"
	"\t\t\t\t}\n"
	"\t/* a slow thread: its lanes are taken over */\n"
	"\tfor (int nth = 2; nth <= 9; nth += 7)\n"
	"\t\tfor (int ns = 0; ns <= 4; ns += 2) {\n"
	"\t\t\tint stolen = 0;\n"
	"\t\t\tbad |= job(share_reset(&sh), 20000, 1, nth, ns, 1, &stolen);\n"
	"\t\t\tif (!stolen) {\n"
	"\t\t\t\tfprintf(stderr, \"threads %%d streams %%d: the late thread's lane was not taken over\\n\",\n"
	"\t\t\t\t\tnth, ns);\n"
	"\t\t\t\tbad = 1;\n"
	"\t\t\t}\n"
	"\t\t}\n"
	"\t/* handed out: nothing more without a reset, all of it again after one */\n"
	"\tShareIt it = share_begin(&sh, 100, 1, 0, 2);\n"
	"\tint64_t lo, hi;\n"
	"\tif (share_next(&it, &lo, &hi)) {\n"
	"\t\tfprintf(stderr, \"a used Share handed out [%%lld, %%lld) again\\n\", (long long)lo, (long long)hi);\n"
	"\t\tbad = 1;\n"
	"\t}\n"
	"\tbad |= job(share_reset(&sh), 100, 1, 2, 0, 0, NULL);\n"
	"\treturn bad;\n"
	"}\n";

/* The text of src from the line that starts with from up to (not including) to. */
static char *text_between(const char *src, const char *from, const char *to)
{
	const char *a = strstr(src, from);
	const char *b = a ? strstr(a, to) : NULL;
	if (!b)
		return NULL;
	size_t n = (size_t)(b - a);
	char *t = malloc(n + 1);
	memcpy(t, a, n);
	t[n] = 0;
	return t;
}

static void test_share_hands_out_each_unit_once(void **state)
{
	(void)state;
	const char *dir = tu_tmp("share");
	char *src = tu_emit_model_c("share", "golden/models/tiny-b158-i2_s.gguf", "native");
	/* the matmul drivers and the head take their rows through it */
	assert_non_null(strstr(src, "share_next(&it, &lo, &hi)"));
	/* the one-token AVX-512 matmuls read several streams a thread */
	if (strstr(src, "_mm512_dpbusd_epi32"))
		assert_non_null(strstr(src, "share_next_ns(&it, lo, hi)"));
	else
		printf("# skipped: the streams of the one-token matmuls (this host's native target "
		       "has no AVX-512 VNNI)\n");
	assert_non_null(strstr(src, "share_reset(&sh[0])"));
	char *share = tu_hold(text_between(src, "enum { SHARE_LANES", "/* ternary matmul:"));
	assert_non_null(share);

	char hs[1300], prog[1300];
	snprintf(hs, sizeof hs, "%s/share_test.c", dir);
	snprintf(prog, sizeof prog, "%s/share_test", dir);
	FILE *f = fopen(hs, "w");
	assert_non_null(f);
	fprintf(f, "#include <stdatomic.h>\n#include <stdint.h>\n"
		   "#define MAYBE_UNUSED __attribute__((unused))\n%s%s",
		share, harness_main);
	assert_int_equal(fclose(f), 0);
	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	char *log = tu_run_ok(0, "%s -std=c11 -O2 -D_GNU_SOURCE -pthread -o '%s' '%s' && '%s'", cc, prog,
			hs, prog);
	free(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_share_hands_out_each_unit_once, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
