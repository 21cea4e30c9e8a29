/* testutil.c - helpers shared by the cmocka tests. */
#include "testutil.h"

#include <unistd.h>

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

char *tu_run_ok(int want, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	char *out = NULL;
	int rc = tu_run(&out, "{ %s; }", cmd); /* so that the command's own 2>... win */
	if (rc != want)
		fail_msg("%s: exit %d (want %d):\n%s", cmd, rc, want, out ? out : "");
	return out;
}

void tu_expect_has(const char *out, const char *frag)
{
	if (!strstr(out, frag))
		fail_msg("output lacks \"%s\":\n%s", frag, out);
}

/* ---- what a test holds, freed by tu_teardown after a failed assertion ---- */

typedef struct {
	void *p;       /* a malloc'd block, or NULL */
	GgufFile *f;   /* or an open model */
	IrGraph *g;
} TuHeld;
static TuHeld *held;
static size_t n_held, cap_held;

static void hold(TuHeld h)
{
	if (n_held == cap_held) {
		size_t cap = cap_held ? 2 * cap_held : 16;
		TuHeld *nh = realloc(held, cap * sizeof *nh);
		if (!nh)
			fail_msg("testutil: out of memory");
		held = nh;
		cap_held = cap;
	}
	held[n_held++] = h;
}

/* Drops the entry of p (or of model g) from the held list; false if it is not there. */
static bool unhold(const void *p, const IrGraph *g)
{
	for (size_t i = n_held; i-- > 0;)
		if ((p && held[i].p == p) || (g && held[i].g == g)) {
			held[i] = held[--n_held];
			return true;
		}
	return false;
}

void *tu_hold(void *p)
{
	if (p)
		hold((TuHeld){.p = p});
	return p;
}

void tu_free(void *p)
{
	if (p)
		unhold(p, NULL);
	free(p);
}

int tu_teardown(void **state)
{
	(void)state;
	while (n_held) {
		TuHeld h = held[--n_held];
		free(h.p);
		if (h.g || h.f) {
			ir_graph_free(h.g);
			gguf_close(h.f);
		}
	}
	free(held);
	held = NULL;
	cap_held = 0;
	return 0;
}

void tu_fail_log(char *log, const char *fmt, ...)
{
	static char msg[16384];
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (k >= 0 && (size_t)k < sizeof msg)
		snprintf(msg + k, sizeof msg - (size_t)k, ": %s", log ? log : "");
	free(log);
	fail_msg("%s", msg);
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

uint64_t tu_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

const char *tu_tmp_text(const char *name, const char *text)
{
	const char *path = tu_tmp(name);
	assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
	return path;
}

char *tu_emit_model_c(const char *dir, const char *rel, const char *target)
{
	const char *d = tu_tmp(dir);
	char *log = tu_run_ok(0, "rm -rf '%s' && '%s' emit '%s' '%s' --target %s", d, tu_bitnetc(),
			      rel[0] == '/' ? rel : tu_data(rel), d, target);
	free(log);
	char path[1200];
	snprintf(path, sizeof path, "%s/model.c", d);
	size_t n;
	char *raw = tu_read_file(path, &n);
	assert_non_null(raw);
	char *src = tu_hold(calloc(1, n + 1));
	assert_non_null(src);
	memcpy(src, raw, n);
	free(raw);
	return src;
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
	return rt_splitmix64(s);
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
	if (!g) {
		gguf_close(*f);
		*f = NULL;
		fail_msg("%s", e.msg);
	}
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

void tu_model_open(TuModel *m, const char *path)
{
	BnErr e = {0};
	m->attn_f64 = false;
	m->f = gguf_open(path, &e);
	if (!m->f)
		fail_msg("%s", e.msg);
	m->g = bnm_load(m->f, &e);
	if (!m->g) {
		gguf_close(m->f);
		fail_msg("%s", e.msg);
	}
	if (pass_run(m->g, "dce", NULL, &e)) {
		ir_graph_free(m->g);
		gguf_close(m->f);
		fail_msg("%s", e.msg);
	}
	m->nv = (int)m->g->hp.n_vocab;
	hold((TuHeld){.f = m->f, .g = m->g});
}

void tu_model_close(TuModel *m)
{
	unhold(NULL, m->g);
	ir_graph_free(m->g);
	gguf_close(m->f);
	m->g = NULL;
	m->f = NULL;
}


/* The program's call split (runtime/rt_api.c, bn_decode_split): the largest size that fits; a
 * rest below every multi-token size in one call; never a last call of one token. */
int tu_chunk(int rem, const TuCalls *c)
{
	int cap = c->s[c->n - 1], m = 1;
	for (int i = 0; i < c->n; i++)
		if (c->s[i] <= rem)
			m = c->s[i];
	if (m == 1)
		m = rem < cap ? rem : cap;
	if (rem - m == 1 && m > 1)
		m = m > 2 ? m - 1 : m + 1 <= cap ? m + 1 : 1;
	return m;
}


/* max |d| / max(1, max |ref|) over one row */
double tu_rel_diff(const float *got, const float *ref, int nv)
{
	double md = 0, mx = 1;
	for (int i = 0; i < nv; i++) {
		md = fmax(md, fabs((double)got[i] - (double)ref[i]));
		mx = fmax(mx, fabs((double)ref[i]));
	}
	return md / mx;
}

/* The binary's rows (n prompt rows, then generated rows) against the interpreter run the
 * same way: the prompt in the program's chunks, then one token per call, each the
 * token the program chose. Returns the worst relative difference. */
double tu_vs_interp(TuModel *m, const float *got, int rows, const int32_t *tok, int n,
			const TuCalls *calls)
{
	BnErr e = {0};
	IrInterp *it = ir_interp_new(m->g, 256, &e);
	if (!it)
		fail_msg("%s", e.msg);
	ir_interp_set_threads(it, 2);
	ir_interp_set_attn_f64(it, m->attn_f64);
	float *ref = malloc((size_t)calls->s[calls->n - 1] * (size_t)m->nv * sizeof(float));
	double worst = 0;
	char msg[512] = "";
	if (!ref)
		snprintf(msg, sizeof msg, "out of memory");
	for (int off = 0; off < n && !msg[0];) {
		int c = tu_chunk(n - off, calls);
		if (ir_interp_eval(it, tok + off, c, ref, &e)) {
			snprintf(msg, sizeof msg, "%s", e.msg);
			break;
		}
		for (int r = 0; r < c && !msg[0]; r++) {
			double d = tu_rel_diff(got + (size_t)(off + r) * (size_t)m->nv,
					    ref + (size_t)r * (size_t)m->nv, m->nv);
			if (d > 1e-4)
				snprintf(msg, sizeof msg, "row %d: binary vs interpreter %.3g relative (> 1e-4)",
					 off + r, d);
			worst = fmax(worst, d);
		}
		off += c;
	}
	for (int r = n; r < rows && !msg[0]; r++) { /* generated: single-token (step) calls */
		int32_t t = (int)rt_argmax(got + (size_t)(r - 1) * (size_t)m->nv, m->nv);
		if (ir_interp_eval(it, &t, 1, ref, &e)) {
			snprintf(msg, sizeof msg, "%s", e.msg);
			break;
		}
		double d = tu_rel_diff(got + (size_t)r * (size_t)m->nv, ref, m->nv);
		if (d > 1e-4)
			snprintf(msg, sizeof msg, "generated row %d: binary vs interpreter %.3g relative (> 1e-4)",
				 r, d);
		worst = fmax(worst, d);
	}
	free(ref);
	ir_interp_free(it);
	if (msg[0])
		fail_msg("%s", msg);
	return worst;
}

float *tu_run_logits(const char *env, const char *prog, const int32_t *tok, int n, int gen,
		     int *rows, const char *extra)
{
	char name[64];
	snprintf(name, sizeof name, "run_logits.%d.f32", (int)getpid()); /* tests run in parallel */
	const char *lf = tu_tmp(name);
	unlink(lf);
	char *ids = malloc((size_t)n * 12 + 1);
	assert_non_null(ids);
	size_t len = 0;
	ids[0] = 0;
	for (int i = 0; i < n; i++)
		len += (size_t)sprintf(ids + len, "%s%d", i ? "," : "", tok[i]);
	char *log = NULL;
	int rc = tu_run(&log, "%s '%s' --tokens %s -n %d --temp 0 --ignore-eos -t 2 --logits-out '%s' %s",
			env ? env : "", prog, ids, gen, lf, extra ? extra : "");
	free(ids);
	if (rc != 0)
		tu_fail_log(log, "%s failed (%d)", prog, rc);
	free(log);
	size_t sz;
	float *x = tu_hold(tu_read_file(lf, &sz));
	unlink(lf);
	assert_non_null(x);
	*rows = (int)(sz / sizeof(float));
	return x;
}

const char *tu_rvv_cc(char *why, size_t n)
{
	static const char *const cands[] = {"clang", "clang-21", "clang-20", "clang-19",
					    "clang-18", "clang-17", "clang-16"};
	static int found = -2; /* -2: not looked yet; -1: none */
	snprintf(why, n, "needs qemu-riscv64, %s (libc6-dev-riscv64-cross) and clang 16 or newer "
			 "with the RISC-V target", TU_RV_SYSROOT);
	if (found == -2) {
		found = -1;
		if (tu_run(NULL, "command -v qemu-riscv64 && test -e %s/lib/ld-linux-riscv64-lp64d.so.1",
			   TU_RV_SYSROOT) != 0)
			return NULL;
		char src[1024], out[1024], name[64];
		snprintf(name, sizeof name, "rvv_probe.%d.c", (int)getpid()); /* tests run at once */
		snprintf(src, sizeof src, "%s", tu_tmp_text(name, "#include <riscv_vector.h>\n"
					      "int main(void) { return (int)__riscv_vsetvlmax_e8m1() == 0; }\n"));
		snprintf(name, sizeof name, "rvv_probe.%d", (int)getpid());
		snprintf(out, sizeof out, "%s", tu_tmp(name));
		for (int i = 0; found < 0 && i < (int)(sizeof cands / sizeof cands[0]); i++)
			if (tu_run(NULL, "%s --target=riscv64-linux-gnu -march=rv64gcv -o '%s' '%s'",
				   cands[i], out, src) == 0)
				found = i;
	}
	return found >= 0 ? cands[found] : NULL;
}

/* " (BITNETC_CPU_MASK=F hides the rest)" while the mask is on, else "". */
const char *tu_mask_note(void)
{
	static char note[96];
	const char *fam;
	char why[160];
	note[0] = 0;
	if (!rt_cpu_mask(&fam, why, sizeof why) && fam)
		snprintf(note, sizeof note, " (%s=%s hides the rest)", RT_CPU_MASK_ENV, fam);
	return note;
}

const char tu_model_c_stubs[] =
	"void rt_pool_run(RtPool *p, void (*fn)(void *, int, int), void *arg)\n{\n"
	"\t(void)p, (void)fn, (void)arg;\n\tabort();\n}\n"
	"void rt_pool_run_prof(RtPool *p, void (*fn)(void *, int, int), void *arg, struct RtProfile *prof)\n{\n"
	"\t(void)p, (void)fn, (void)arg, (void)prof;\n\tabort();\n}\n"
	"double rt_pool_clock(void)\n{\n\tabort();\n}\n";

char *tu_function_text(const char *src, const char *head)
{
	const char *a = strstr(src, head);
	if (!a)
		return NULL;
	const char *b = strstr(a, "\n}\n");
	if (!b)
		return NULL;
	size_t n = (size_t)(b + 3 - a);
	char *t = malloc(n + 1);
	if (!t)
		return NULL;
	memcpy(t, a, n);
	t[n] = 0;
	return t;
}

float *tu_interp_rows(IrGraph *g, int t, int64_t row)
{
	BnErr e = {0};
	IrInterp *it = ir_interp_new(g, t, &e);
	float *y = malloc((size_t)(row * t) * sizeof(float));
	int32_t *tok = malloc((size_t)t * sizeof(int32_t));
	bool ok = it && y && tok;
	for (int i = 0; ok && i < t; i++)
		tok[i] = i;
	if (ok && ir_interp_eval(it, tok, t, y, &e))
		ok = false;
	ir_interp_free(it);
	ir_graph_free(g);
	free(tok);
	if (!ok) {
		free(y);
		fail_msg("interpreter: %s", e.msg[0] ? e.msg : "out of memory");
	}
	return y;
}
