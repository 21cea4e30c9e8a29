/* rt_ppl.c - perplexity and KL divergence as llama.cpp's llama-perplexity computes them
 * (rt_ppl.h): per-token negative log-likelihoods, the final estimate, the base file of
 * scored log-probabilities and the comparison against it (the chunks of a text run through
 * a context are rt_ppl_eval.c's, so that this file links without a model). Float and
 * double are used where the reference uses them, so that the figures are its own; the
 * runtime is compiled with -ffp-contract=off, so no product is fused into a sum the
 * reference rounds apart. */
/* POSIX (fileno, fdopen, fstat, rename) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt_ppl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- chunks ------------------------------------------------------------------------- */

int32_t rt_ppl_first(int32_t n_ctx)
{
	return n_ctx / 2;
}

int32_t rt_ppl_scored(int32_t n_ctx)
{
	return n_ctx - 1 - n_ctx / 2;
}

int32_t rt_ppl_per_call(int32_t ub, int32_t n_ctx, int64_t n_chunk, int32_t max_seq)
{
	int64_t k = n_ctx > 0 ? ub / n_ctx : 1;
	k = k < n_chunk ? k : n_chunk;
	k = k < max_seq ? k : max_seq;
	return k > 1 ? (int32_t)k : 1;
}

int64_t rt_ppl_n_chunk(int64_t n_tokens, int32_t n_ctx, int64_t max_chunks)
{
	int64_t n = n_ctx > 0 ? n_tokens / n_ctx : 0;
	return max_chunks < 0 || max_chunks > n ? n : max_chunks;
}

/* ---- perplexity ----------------------------------------------------------------------- */

/* The largest logit, as std::max keeps the first of equals. */
static float rt_max_logit(const float *l, int32_t n)
{
	float m = l[0];
	for (int32_t i = 1; i < n; i++)
		m = m < l[i] ? l[i] : m;
	return m;
}

/* sum of expf(l - max) in double, the reference's order */
static double rt_sum_exp(const float *l, int32_t n, float max)
{
	double s = 0.0;
	for (int32_t i = 0; i < n; i++)
		s += expf(l[i] - max);
	return s;
}

double rt_ppl_nll(const float *logits, int32_t n_vocab, int32_t tok)
{
	float max = rt_max_logit(logits, n_vocab);
	double sum = rt_sum_exp(logits, n_vocab, max);
	float d = logits[tok] - max;
	return -((double)d - log(sum));
}

void rt_ppl_add(RtPplSum *s, double nll)
{
	s->nll += nll;
	s->nll2 += nll * nll;
	s->count++;
}

double rt_ppl_value(const RtPplSum *s)
{
	return s->count ? exp(s->nll / (double)s->count) : 0.0;
}

int rt_ppl_final(const RtPplSum *s, double *ppl, double *err)
{
	*ppl = rt_ppl_value(s);
	*err = 0.0;
	if (s->count < 2)
		return -1;
	double nll = s->nll / (double)s->count, nll2 = s->nll2 / (double)s->count;
	nll2 -= nll * nll;
	if (!(nll2 > 0))
		return -1;
	*err = sqrt(nll2 / (double)(s->count - 1)) * *ppl;
	return 0;
}

/* ---- the base file ---------------------------------------------------------------------- */

size_t rt_ppl_row_u16(int32_t n_vocab)
{
	return 2 * (((size_t)n_vocab + 1) / 2) + 4;
}

uint64_t rt_ppl_base_size(int32_t n_ctx, int32_t n_vocab, int32_t n_chunk)
{
	if (n_ctx < 2 || n_vocab < 1 || n_chunk < 1)
		return 0;
	/* every factor is below 2^31: each product below fits 64 bits until the last sums */
	uint64_t toks = (uint64_t)n_chunk * (uint64_t)n_ctx * 4;
	uint64_t row = (uint64_t)rt_ppl_row_u16(n_vocab) * 2;
	uint64_t rows = (uint64_t)n_chunk * (uint64_t)rt_ppl_scored(n_ctx);
	if (rows && row > UINT64_MAX / rows)
		return 0;
	uint64_t body = rows * row;
	if (body > UINT64_MAX - toks - RT_PPL_HEADER)
		return 0;
	return RT_PPL_HEADER + toks + body;
}

/* The reference's rounding to the nearest integer (|f| < 2^22): the float's own rounding,
 * ties to even. */
static int rt_nearest_int(float f)
{
	float v = f + 12582912.f;
	int32_t i;
	memcpy(&i, &v, sizeof i);
	return (i & 0x007fffff) - 0x00400000;
}

static void rt_put_f32(uint16_t *two, float v)
{
	uint32_t u;
	memcpy(&u, &v, sizeof u);
	two[0] = (uint16_t)(u & 0xffff);
	two[1] = (uint16_t)(u >> 16);
}

static float rt_get_f32(const uint16_t *two)
{
	uint32_t u = (uint32_t)two[0] | (uint32_t)two[1] << 16;
	float v;
	memcpy(&v, &u, sizeof v);
	return v;
}

double rt_ppl_base_row(const float *logits, int32_t n_vocab, int32_t tok, uint16_t *row)
{
	float max = logits[0], min = logits[0];
	for (int32_t i = 1; i < n_vocab; i++) {
		max = max < logits[i] ? logits[i] : max;
		min = logits[i] < min ? logits[i] : min;
	}
	min = min < max - 16 ? max - 16 : min;
	double sum = rt_sum_exp(logits, n_vocab, max);
	const float log_sum_exp = (float)log(sum);
	const float min_log_prob = min - max - log_sum_exp;
	const float scale = (max - min) / 65535.f;
	/* the two floats as the reference stores them: host order in memory, which on a
	 * little-endian host is low half first (rt_ppl_out_row writes little-endian) */
	rt_put_f32(row, scale);
	rt_put_f32(row + 2, min_log_prob);
	uint16_t *q = row + 4;
	size_t n = rt_ppl_row_u16(n_vocab) - 4;
	memset(q, 0, n * sizeof *q);
	if (scale != 0) {
		const float inv = 1 / scale;
		for (int32_t i = 0; i < n_vocab; i++)
			q[i] = logits[i] > min ? (uint16_t)rt_nearest_int(inv * (logits[i] - min))
					       : 0;
	}
	float nll = max + log_sum_exp - logits[tok];
	return nll;
}

/* p + suffix into buf (n bytes); -1 if it does not fit. */
static int rt_path_join(char *buf, size_t n, const char *p, const char *suffix)
{
	int k = snprintf(buf, n, "%s%s", p, suffix);
	return k < 0 || (size_t)k >= n ? -1 : 0;
}

/* n uint16 little-endian */
static int rt_write_u16(FILE *f, const char *path, const uint16_t *x, size_t n, RtErr *e)
{
	unsigned char buf[4096];
	for (size_t done = 0; done < n;) {
		size_t k = n - done > sizeof buf / 2 ? sizeof buf / 2 : n - done;
		for (size_t i = 0; i < k; i++) {
			buf[2 * i] = (unsigned char)(x[done + i] & 0xff);
			buf[2 * i + 1] = (unsigned char)(x[done + i] >> 8);
		}
		if (fwrite(buf, 2, k, f) != k)
			return rt_err(e, RT_EIO, "%s: write failed: %s", path, strerror(errno));
		done += k;
	}
	return RT_OK;
}

static void rt_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t rt_rd32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int rt_ppl_out_open(RtPplOut *o, const char *path, int32_t n_ctx, int32_t n_vocab,
		    int32_t n_chunk, const int32_t *tokens, RtErr *e)
{
	memset(o, 0, sizeof *o);
	struct stat st;
	if (rt_path_join(o->path, sizeof o->path, path, "") ||
	    rt_path_join(o->tmp, sizeof o->tmp, path, ".tmp"))
		return rt_err(e, RT_EINVAL, "%s: the path is too long", path);
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
		return rt_err(e, RT_EINVAL,
			      "%s exists and is not a regular file: the base file is written as a "
			      "new file in its place",
			      path);
	/* a link or a file of another kind at FILE.tmp is not followed or truncated */
	int fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0666);
	if (fd >= 0 && (fstat(fd, &st) || !S_ISREG(st.st_mode))) {
		close(fd);
		return rt_err(e, RT_EIO, "%s: not a regular file", o->tmp);
	}
	if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return rt_err(e, RT_EIO, "%s: cannot open for writing: %s", o->tmp, strerror(err));
	}
	unsigned char h[RT_PPL_HEADER];
	memcpy(h, RT_PPL_MAGIC, 8);
	rt_le32(h + 8, (uint32_t)n_ctx);
	rt_le32(h + 12, (uint32_t)n_vocab);
	rt_le32(h + 16, (uint32_t)n_chunk);
	int rc = fwrite(h, 1, sizeof h, o->f) == sizeof h ? RT_OK
		 : rt_err(e, RT_EIO, "%s: write failed: %s", o->tmp, strerror(errno));
	unsigned char buf[4096];
	size_t n = (size_t)n_chunk * (size_t)n_ctx;
	for (size_t done = 0; !rc && done < n;) {
		size_t k = n - done > sizeof buf / 4 ? sizeof buf / 4 : n - done;
		for (size_t i = 0; i < k; i++)
			rt_le32(buf + 4 * i, (uint32_t)tokens[done + i]);
		if (fwrite(buf, 4, k, o->f) != k)
			rc = rt_err(e, RT_EIO, "%s: write failed: %s", o->tmp, strerror(errno));
		done += k;
	}
	if (rc)
		rt_ppl_out_close(o, 0, NULL);
	return rc;
}

int rt_ppl_out_row(RtPplOut *o, const uint16_t *row, size_t n, RtErr *e)
{
	return rt_write_u16(o->f, o->tmp, row, n, e);
}

int rt_ppl_out_close(RtPplOut *o, int keep, RtErr *e)
{
	int rc = RT_OK;
	if (!o->f)
		return rc;
	int bad = ferror(o->f);
	if (fclose(o->f) != 0 || bad)
		rc = rt_err(e, RT_EIO, "%s: write failed: %s", o->tmp,
			    bad ? "stream error" : strerror(errno));
	o->f = NULL;
	if (keep && !rc && rename(o->tmp, o->path) != 0)
		rc = rt_err(e, RT_EIO, "%s: cannot rename to %s: %s", o->tmp, o->path,
			    strerror(errno));
	if (!keep || rc)
		unlink(o->tmp);
	return rc;
}

/* Opens path read-only as a regular file (a FIFO or a device is refused before any read
 * could block). */
static FILE *rt_open_regular(const char *path, uint64_t *size, RtErr *e)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK);
	struct stat st;
	if (fd < 0) {
		rt_err(e, RT_EIO, "%s: cannot read: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		rt_err(e, RT_EIO, "%s: not a regular file", path);
		return NULL;
	}
	int fl = fcntl(fd, F_GETFL);
	FILE *f = fl == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1 ? NULL : fdopen(fd, "rb");
	if (!f) {
		rt_err(e, RT_EIO, "%s: cannot read: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	*size = (uint64_t)st.st_size;
	return f;
}

/* The header's fields against this run. */
static int rt_base_header(RtPplBase *b, const unsigned char *h, uint64_t size, int32_t n_ctx,
			  int32_t n_vocab, int64_t chunks, int64_t n_tokens, RtErr *e)
{
	const char *p = b->path;
	if (memcmp(h, RT_PPL_MAGIC, 8) != 0)
		return rt_err(e, RT_PPL_BAD,
			      "%s does not look like a file of log-probabilities (no \"%s\" at its "
			      "start): give a file written by --kl-base (or llama-perplexity's "
			      "--kl-divergence-base)",
			      p, RT_PPL_MAGIC);
	uint32_t f_ctx = rt_rd32(h + 8);
	int32_t f_vocab = (int32_t)rt_rd32(h + 12), f_chunk = (int32_t)rt_rd32(h + 16);
	if (f_ctx < 2 || f_ctx > INT32_MAX || f_vocab < 1 || f_chunk < 1)
		return rt_err(e, RT_PPL_BAD,
			      "%s: damaged header: n_ctx %lu, n_vocab %ld, n_chunk %ld (each must "
			      "be positive)",
			      p, (unsigned long)f_ctx, (long)f_vocab, (long)f_chunk);
	uint64_t want = rt_ppl_base_size((int32_t)f_ctx, f_vocab, f_chunk);
	if (want != size)
		return rt_err(e, RT_PPL_BAD,
			      "%s is %llu bytes, but its header (n_ctx %lu, n_vocab %ld, %ld "
			      "chunks) makes it %llu: truncated or damaged",
			      p, (unsigned long long)size, (unsigned long)f_ctx, (long)f_vocab,
			      (long)f_chunk, (unsigned long long)want);
	if (f_vocab != n_vocab)
		return rt_err(e, RT_PPL_OTHER,
			      "%s was made by a model of %ld tokens (n_vocab); this model has %ld",
			      p, (long)f_vocab, (long)n_vocab);
	if ((int64_t)f_ctx != n_ctx)
		return rt_err(e, RT_PPL_OTHER,
			      "%s was made with a context of %lu tokens; this run has -c %ld: give "
			      "-c %lu",
			      p, (unsigned long)f_ctx, (long)n_ctx, (unsigned long)f_ctx);
	if (chunks >= 0 && chunks != f_chunk)
		return rt_err(e, RT_PPL_OTHER,
			      "%s holds %ld chunks; this run asks for %lld (--chunks and the text's "
			      "length): give the same text and --chunks %ld",
			      p, (long)f_chunk, (long long)chunks, (long)f_chunk);
	if ((int64_t)f_chunk * n_ctx > n_tokens)
		return rt_err(e, RT_PPL_OTHER,
			      "%s holds %ld chunks of %ld tokens, but the text has only %lld "
			      "tokens: it was made from another text",
			      p, (long)f_chunk, (long)n_ctx, (long long)n_tokens);
	b->n_ctx = n_ctx;
	b->n_vocab = n_vocab;
	b->n_chunk = f_chunk;
	return RT_OK;
}

/* The file's tokens against the text's. */
static int rt_base_tokens(RtPplBase *b, const int32_t *tokens, RtErr *e)
{
	unsigned char buf[4096];
	size_t n = (size_t)b->n_chunk * (size_t)b->n_ctx;
	for (size_t done = 0; done < n;) {
		size_t k = n - done > sizeof buf / 4 ? sizeof buf / 4 : n - done;
		if (fread(buf, 4, k, b->f) != k)
			return rt_err(e, RT_PPL_BAD, "%s: cannot read its tokens: %s", b->path,
				      ferror(b->f) ? strerror(errno) : "the file ends early");
		for (size_t i = 0; i < k; i++) {
			int32_t t = (int32_t)rt_rd32(buf + 4 * i);
			if (t != tokens[done + i])
				return rt_err(e, RT_PPL_OTHER,
					      "%s: token %zu (chunk %zu) is %ld, the text's is %ld: the "
					      "base file was made from another text or tokenizer",
					      b->path, done + i, (done + i) / (size_t)b->n_ctx + 1,
					      (long)t, (long)tokens[done + i]);
		}
		done += k;
	}
	return RT_OK;
}

int rt_ppl_base_open(RtPplBase *b, const char *path, int32_t n_ctx, int32_t n_vocab,
		     int64_t chunks, const int32_t *tokens, int64_t n_tokens, RtErr *e)
{
	memset(b, 0, sizeof *b);
	if (rt_path_join(b->path, sizeof b->path, path, ""))
		return rt_err(e, RT_EIO, "%s: the path is too long", path);
	uint64_t size = 0;
	if (!(b->f = rt_open_regular(path, &size, e)))
		return e ? e->code : RT_EIO;
	unsigned char h[RT_PPL_HEADER];
	int rc;
	if (size < RT_PPL_HEADER)
		rc = rt_err(e, RT_PPL_BAD,
			    "%s is %llu bytes: too short for the %d-byte header of a file of "
			    "log-probabilities",
			    path, (unsigned long long)size, RT_PPL_HEADER);
	else if (fread(h, 1, sizeof h, b->f) != sizeof h)
		rc = rt_err(e, RT_EIO, "%s: cannot read: %s", path, strerror(errno));
	else
		rc = rt_base_header(b, h, size, n_ctx, n_vocab, chunks, n_tokens, e);
	if (!rc)
		rc = rt_base_tokens(b, tokens, e);
	if (rc)
		rt_ppl_base_close(b);
	return rc;
}

int rt_ppl_base_read(RtPplBase *b, uint16_t *row, RtErr *e)
{
	size_t n = rt_ppl_row_u16(b->n_vocab);
	unsigned char buf[4096];
	int64_t r = b->row;
	int32_t per = rt_ppl_scored(b->n_ctx);
	for (size_t done = 0; done < n;) {
		size_t k = n - done > sizeof buf / 2 ? sizeof buf / 2 : n - done;
		if (fread(buf, 2, k, b->f) != k)
			return rt_err(e, RT_PPL_BAD, "%s: cannot read row %lld (chunk %lld): %s",
				      b->path, (long long)r, (long long)(r / per + 1),
				      ferror(b->f) ? strerror(errno) : "the file ends early");
		for (size_t i = 0; i < k; i++)
			row[done + i] = (uint16_t)(buf[2 * i] | buf[2 * i + 1] << 8);
		done += k;
	}
	float scale = rt_get_f32(row), min = rt_get_f32(row + 2);
	if (!isfinite(scale) || !isfinite(min) || scale < 0 || min > 0)
		return rt_err(e, RT_PPL_BAD,
			      "%s: row %lld (chunk %lld) is damaged: scale %g and minimum "
			      "log-probability %g (a scale >= 0 and a minimum <= 0, both finite)",
			      b->path, (long long)r, (long long)(r / per + 1), (double)scale,
			      (double)min);
	b->row++;
	return RT_OK;
}

void rt_ppl_base_close(RtPplBase *b)
{
	if (b->f)
		fclose(b->f);
	b->f = NULL;
}

/* ---- KL divergence ------------------------------------------------------------------------ */

int rt_kld_init(RtKld *k, int64_t n)
{
	memset(k, 0, sizeof *k);
	size_t m = n > 0 ? (size_t)n : 1;
	k->kld = malloc(m * sizeof *k->kld);
	k->p_diff = malloc(m * sizeof *k->p_diff);
	if (!k->kld || !k->p_diff) {
		rt_kld_free(k);
		return RT_ENOMEM;
	}
	k->cap = n;
	return RT_OK;
}

void rt_kld_free(RtKld *k)
{
	free(k->kld);
	free(k->p_diff);
	k->kld = k->p_diff = NULL;
	k->cap = 0;
}

double rt_kld_row(RtKld *k, const float *logits, int32_t n_vocab, const uint16_t *base,
		  int32_t tok)
{
	float max = logits[0];
	int32_t imax = 0;
	for (int32_t i = 1; i < n_vocab; i++)
		if (logits[i] > max) {
			max = logits[i];
			imax = i;
		}
	double sum_exp = rt_sum_exp(logits, n_vocab, max);
	const float log_sum_exp = (float)log(sum_exp);
	const float scale = rt_get_f32(base), min_log_prob = rt_get_f32(base + 2);
	const uint16_t *q = base + 4;

	const float nll = max + log_sum_exp - logits[tok];
	k->sum_nll += nll;
	k->sum_nll2 += nll * nll;
	const float nll_base = -(scale * q[tok] + min_log_prob);
	k->sum_nll_base += nll_base;
	k->sum_nll_base2 += nll_base * nll_base;
	k->sum_nll_nll_base += nll * nll_base;

	max += log_sum_exp;
	double sum = 0;
	int32_t imax_base = -1;
	float p_log_base_max = 0;
	for (int32_t i = 0; i < n_vocab; i++) {
		const float p_log_base = scale * q[i] + min_log_prob;
		if (i == 0 || p_log_base > p_log_base_max) {
			p_log_base_max = p_log_base;
			imax_base = i;
		}
		if (p_log_base > -16.f) {
			const float p_base = expf(p_log_base);
			sum += p_base * (p_log_base - logits[i] + max);
		}
	}
	k->sum_kld += sum;
	k->sum_kld2 += sum * sum;
	k->n_same_top += imax == imax_base;

	const float p_base = expf(-nll_base), p = expf(-nll), p_diff = p - p_base;
	k->sum_p_diff += p_diff;
	const double p_diff2 = p_diff * p_diff;
	k->sum_p_diff2 += p_diff2;
	k->sum_p_diff4 += p_diff2 * p_diff2;
	float ad = fabsf(p_diff);
	k->max_p_diff = k->max_p_diff < ad ? ad : k->max_p_diff;
	if (k->count < k->cap) {
		k->kld[k->count] = (float)sum;
		k->p_diff[k->count] = p_diff;
	}
	k->count++;
	return nll;
}

/* mean and its uncertainty, as the reference (none below 11 values) */
static void rt_mean_unc(double sum, double sum2, int64_t count, double *f, double *df)
{
	*f = *df = 0;
	if (count < 1)
		return;
	*f = sum / (double)count;
	double v = sum2 / (double)count - *f * *f;
	*df = v > 0 && count > 10 ? sqrt(v / (double)(count - 1)) : 0.;
}

static double rt_covariance(double a, double b, double ab, int64_t count)
{
	if (count < 10)
		return 0.0;
	double c = (double)count;
	return (ab / c - (a / c) * (b / c)) / (c - 1);
}

static int rt_cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* the reference's percentile (interpolated, in float) of sorted v[0..n) */
static double rt_percentile(const float *v, int64_t n, float fraction)
{
	if (fraction <= 0)
		return v[0];
	if (fraction >= 1)
		return v[n - 1];
	float p = fraction * (float)(n - 1);
	size_t ip = (size_t)p;
	p -= (float)ip;
	size_t next = ip + 1 < (size_t)n ? ip + 1 : (size_t)n - 1;
	return (1 - p) * v[ip] + p * v[next];
}

static double rt_median(const float *v, int64_t n)
{
	return n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
}

void rt_kld_stats(RtKld *k, int sorted, RtKldStats *s)
{
	memset(s, 0, sizeof *s);
	double lp, lpu, lb, lbu;
	rt_mean_unc(k->sum_nll, k->sum_nll2, k->count, &lp, &lpu);
	rt_mean_unc(k->sum_nll_base, k->sum_nll_base2, k->count, &lb, &lbu);
	s->ppl = exp(lp);
	s->ppl_err = s->ppl * lpu;
	s->ppl_base = exp(lb);
	s->ppl_base_err = s->ppl_base * lbu;
	double cov = rt_covariance(k->sum_nll, k->sum_nll_base, k->sum_nll_nll_base, k->count);
	s->cor = lpu * lbu > 0 ? cov / (lpu * lbu) : 0;
	s->ln_ratio = lp - lb;
	double v = lpu * lpu + lbu * lbu - 2.0 * cov;
	s->ln_ratio_err = v > 0 ? sqrt(v) : 0;
	s->ratio = exp(s->ln_ratio);
	s->ratio_err = s->ratio * s->ln_ratio_err;
	s->diff = s->ppl - s->ppl_base;
	v = s->ppl_err * s->ppl_err + s->ppl_base_err * s->ppl_base_err -
	    2.0 * s->ppl * s->ppl_base * cov;
	s->diff_err = v > 0 ? sqrt(v) : 0;
	rt_mean_unc(k->sum_kld, k->sum_kld2, k->count, &s->kld, &s->kld_err);
	rt_mean_unc(k->sum_p_diff, k->sum_p_diff2, k->count, &s->dp_mean, &s->dp_mean_err);
	double mse, mse_u;
	rt_mean_unc(k->sum_p_diff2, k->sum_p_diff4, k->count, &mse, &mse_u);
	s->dp_rms = sqrt(mse);
	s->dp_rms_err = s->dp_rms > 0 ? 0.5 / s->dp_rms * mse_u : 0;
	if (k->count > 0) {
		s->same_top = (double)k->n_same_top / (double)k->count;
		s->same_top_err = k->count > 1 ? sqrt(s->same_top * (1 - s->same_top) /
						      (double)(k->count - 1))
						: 0;
	}
	s->dp_abs_max = k->max_p_diff;
	int64_t n = k->count < k->cap ? k->count : k->cap;
	if (!sorted || n < 1)
		return;
	qsort(k->kld, (size_t)n, sizeof *k->kld, rt_cmp_float);
	qsort(k->p_diff, (size_t)n, sizeof *k->p_diff, rt_cmp_float);
	const float *a = k->kld, *d = k->p_diff;
	s->kld_max = a[n - 1];
	s->kld_p999 = rt_percentile(a, n, 0.999f);
	s->kld_p99 = rt_percentile(a, n, 0.990f);
	s->kld_median = rt_median(a, n);
	s->kld_p10 = rt_percentile(a, n, 0.100f);
	s->kld_p05 = rt_percentile(a, n, 0.050f);
	s->kld_p01 = rt_percentile(a, n, 0.010f);
	s->kld_min = a[0];
	s->dp_max = d[n - 1];
	s->dp_p999 = rt_percentile(d, n, 0.999f);
	s->dp_p99 = rt_percentile(d, n, 0.990f);
	s->dp_p95 = rt_percentile(d, n, 0.950f);
	s->dp_p90 = rt_percentile(d, n, 0.900f);
	s->dp_p75 = rt_percentile(d, n, 0.750f);
	s->dp_median = rt_median(d, n);
	s->dp_p25 = rt_percentile(d, n, 0.250f);
	s->dp_p10 = rt_percentile(d, n, 0.100f);
	s->dp_p05 = rt_percentile(d, n, 0.050f);
	s->dp_p01 = rt_percentile(d, n, 0.010f);
	s->dp_p001 = rt_percentile(d, n, 0.001f);
	s->dp_min = d[0];
}
