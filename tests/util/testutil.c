/* testutil.c - helpers shared by the cmocka tests. */
#include "testutil.h"

#include "pass.h"
#include "rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char *env_or(const char *k, const char *dflt)
{
	const char *v = getenv(k);
	return v && *v ? v : dflt;
}

const char *tu_data(const char *rel)
{
	static char buf[8][1024];
	static int slot;
	char *b = buf[slot++ % 8];
	snprintf(b, sizeof buf[0], "%s/%s", env_or("BN_TEST_DATA", "tests/data"), rel);
	return b;
}

const char *tu_tmp(const char *name)
{
	static char buf[8][1024];
	static int slot;
	char *b = buf[slot++ % 8];
	snprintf(b, sizeof buf[0], "%s/%s", env_or("BN_TMP", "/tmp"), name);
	return b;
}

const char *tu_bitnetc(void)
{
	return env_or("BITNETC", "bitnetc");
}

void *tu_read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	size_t got;
	while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
		len += got;
		if (len == cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				buf = NULL;
			}
			buf = nb;
		}
	}
	fclose(f);
	if (n)
		*n = len;
	return buf;
}

int tu_write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(data, 1, n, f);
	return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int tu_run(char **out, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	char full[8300];
	snprintf(full, sizeof full, "%s 2>&1", cmd);
	FILE *p = popen(full, "r");
	if (!p)
		return -1;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	size_t got;
	while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
		len += got;
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = 0;
	int st = pclose(p);
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int tu_json_ints(const char *json, const char *key, int32_t *out, int max)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\": [", key);
	const char *p = strstr(json, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	int n = 0;
	while (*p && *p != ']' && n < max) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p)
			break;
		out[n++] = (int32_t)v;
		p = end;
		while (*p == ',' || *p == ' ' || *p == '\n')
			p++;
	}
	return n;
}

float tu_margin(const float *row, int nv)
{
	int64_t best = rt_argmax(row, nv);
	float second = -INFINITY;
	for (int i = 0; i < nv; i++)
		if (i != best && row[i] > second)
			second = row[i];
	return row[best] - second;
}

void tu_golden_row(TuGolden *s, const float *got, const float *ref, int nv)
{
	double md = 0;
	for (int i = 0; i < nv; i++)
		md = fmax(md, fabs((double)got[i] - (double)ref[i]));
	bool same = rt_argmax(ref, nv) == rt_argmax(got, nv);
	if (s->rows < 1024)
		s->row_d[s->rows] = md;
	s->rows++;
	s->agree += same;
	s->max_d = fmax(s->max_d, md);
	assert_true(md <= 0.15);
	if (tu_margin(ref, nv) > 0.2f) {
		s->margin_rows++;
		s->margin_ok += same;
		assert_true(same);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double tu_golden_median(TuGolden *s)
{
	int n = s->rows < 1024 ? s->rows : 1024;
	if (n == 0)
		return 0;
	double *d = malloc((size_t)n * sizeof *d);
	memcpy(d, s->row_d, (size_t)n * sizeof *d);
	qsort(d, (size_t)n, sizeof *d, cmp_double);
	double m = d[n / 2];
	free(d);
	return m;
}

uint64_t tu_rand(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

float tu_randf(uint64_t *s)
{
	return (float)((double)(tu_rand(s) >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

IrGraph *tu_golden_graph(const char *model, GgufFile **f)
{
	char rel[256];
	snprintf(rel, sizeof rel, "golden/models/%s.gguf", model);
	BnErr e = {0};
	*f = gguf_open(tu_data(rel), &e);
	if (!*f)
		fail_msg("%s", e.msg);
	IrGraph *g = bnm_load(*f, &e);
	if (!g)
		fail_msg("%s", e.msg);
	return g;
}

void tu_golden_graph_free(IrGraph *g, GgufFile *f)
{
	pass_gattr_clear(g);
	ir_graph_free(g);
	gguf_close(f);
}

char *tu_print_graph(const IrGraph *g)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	assert_non_null(f);
	ir_print(g, f);
	fclose(f);
	return buf;
}
