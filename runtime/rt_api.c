/* rt_api.c - bitnetc.h: the model (weights, tokenizer, the model code's init) and its
 * contexts (KV cache, scratch, thread pool each), and decoding with the program's call
 * split and checks. Prints nothing; every failure is a status and a message. */
/* POSIX (sysconf) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "bitnetc.h"
#include "rt.h"
#include "rt_batch.h"
#include "rt_tok.h"

#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RT_MODEL (&BN_MODEL_SYMBOL)

struct bn_model {
	const RtModel *rm;
	RtWeights w;
	RtTok *tok;        /* NULL: none, or unusable (tok_status) */
	int tok_status;    /* BN_OK, BN_E_NO_TOKENIZER, BN_E_TOKENIZER */
	char tok_err[512]; /* why the tokenizer is unusable */
	void *inst;        /* what init returned */
	int inited, inspect;
	char held[4200];   /* how the weights are held (rt_weights_describe) */
};

struct bn_ctx {
	bn_model *m;
	RtState st;
	int own_mem;  /* kv and scratch allocated here (no state_init) */
	int dev_init; /* the model's state_init succeeded: state_fini releases it */
	int32_t ubatch;
	int32_t calls[64]; /* the call sizes (ascending): batch sizes below ubatch, then ubatch */
	int n_calls;
	/* per sequence (st.n_seq of each): the positions it holds; bn_decode_batch's first
	 * position and next one (-1: no row) */
	int32_t *len, *bstart, *bnext;
	/* the last BN_E_NONFINITE: position, token, layer */
	int bad_set;
	int32_t bad_pos, bad_tok, bad_layer;
	atomic_int cancel; /* bn_ctx_cancel's request (lock-free: set from signal handlers) */
	RtProfile *prof;   /* bn_ctx_profile's counters (st.prof points here while on) */
	char err[512];
};

static int rt_say(char *err, size_t n, int code, const char *fmt, ...) RT_PRINTF(4, 5);

static int rt_say(char *err, size_t n, int code, const char *fmt, ...)
{
	if (err && n) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, n, fmt, ap);
		va_end(ap);
	}
	return code;
}

static const RtModel *rt_rm(const bn_model *m)
{
	return m ? m->rm : RT_MODEL;
}

const char *bn_strerror(int code)
{
	switch (code) {
	case BN_OK: return "ok";
	case BN_E_ARG: return "bad argument";
	case BN_E_NOMEM: return "out of memory";
	case BN_E_WEIGHTS: return "weights missing, damaged or another model's";
	case BN_E_CPU: return "this CPU or OS will not run the model's code";
	case BN_E_CPU_MASK: return "BITNETC_CPU_MASK names no CPU family";
	case BN_E_MODEL: return "the model code is broken or of another ABI";
	case BN_E_CTX: return "the context is full or too large";
	case BN_E_TOKEN: return "token id outside the vocabulary";
	case BN_E_NONFINITE: return "activations or logits went NaN or Inf";
	case BN_E_NO_TOKENIZER: return "the model has no tokenizer";
	case BN_E_TOKENIZER: return "the tokenizer is unusable";
	case BN_E_THREADS: return "cannot start threads";
	case BN_E_TEMPLATE: return "unknown or unusable chat template";
	case BN_E_DEVICE: return "no usable GPU";
	case BN_E_CANCELLED: return "cancelled";
	default: return "unknown error";
	}
}

const char *bn_version(void)
{
	return RT_MODEL->version;
}

/* ---- opening ---------------------------------------------------------------------- */

/* The batch sizes obey rt_batch.h's rule: 1 first, ascending, the largest max_batch (the
 * call split relies on it); at most 63 of them (the call split's table). */
static int rt_sizes_ok(const RtModel *m)
{
	return m->n_batch_sizes < 64 &&
	       rt_batch_sizes_ok(m->batch_sizes, m->n_batch_sizes, m->max_batch);
}

int bn_model_check(char *err, size_t err_len)
{
	const RtModel *m = RT_MODEL;
	if (m->abi != RT_MODEL_ABI)
		return rt_say(err, err_len, BN_E_MODEL,
			      "model code has ABI %d but the runtime expects %d: rebuild with a "
			      "matching bitnetc",
			      m->abi, RT_MODEL_ABI);
	if (m->n_vocab < 1 || m->n_vocab > INT32_MAX || m->max_batch < 1 || !m->decode ||
	    !m->kv_bytes)
		return rt_say(err, err_len, BN_E_MODEL,
			      "model description is broken (n_vocab %lld, max_batch %lld)",
			      (long long)m->n_vocab, (long long)m->max_batch);
	if (!rt_sizes_ok(m))
		return rt_say(err, err_len, BN_E_MODEL,
			      "model description is broken: batch_sizes must start at 1, ascend and "
			      "end at max_batch %lld (%d sizes)",
			      (long long)m->max_batch, m->n_batch_sizes);
	char missing[256];
	const char *mask;
	if (rt_cpu_mask(&mask, missing, sizeof missing))
		return rt_say(err, err_len, BN_E_CPU_MASK, "%s", missing);
	if (rt_cpu_require(m->cpu_features, missing, sizeof missing))
		return rt_say(err, err_len, BN_E_CPU,
			      "this program was built for CPU features this machine lacks: %s "
			      "(rebuild it with bitnetc build --target cpu-generic, or a target "
			      "`bitnetc targets` marks usable here)%s%s",
			      missing, mask ? "; host features masked by " RT_CPU_MASK_ENV "=" : "",
			      mask ? mask : "");
	return BN_OK;
}

/* The tokenizer blob inside the mapped payload; none (BN_E_NO_TOKENIZER) or unusable
 * (BN_E_TOKENIZER, why in m->tok_err). */
static int rt_open_tok(bn_model *m)
{
	const RtModel *rm = m->rm;
	uint64_t off = rm->tok_offset, n = rm->tok_bytes;
	RtErr e = {0};
	if (!n)
		return m->tok_status = BN_E_NO_TOKENIZER;
	if (off > rm->weights_bytes || n > rm->weights_bytes - off || (off & 7))
		rt_err(&e, RT_EINVAL, "the tokenizer (%llu bytes at %llu) lies outside the %llu-byte "
		       "weights payload", (unsigned long long)n, (unsigned long long)off,
		       (unsigned long long)rm->weights_bytes);
	else
		m->tok = rt_tok_open(m->w.data + off, (size_t)n, &e);
	if (m->tok)
		return m->tok_status = BN_OK;
	snprintf(m->tok_err, sizeof m->tok_err, "%s", e.msg);
	return m->tok_status = BN_E_TOKENIZER;
}

#ifdef BN_LINKED_WEIGHTS
/* The weights linked into this library (weights.c, generated): where they begin and end. */
extern const unsigned char *const rt_linked_weights[2];
#endif

/* The weights: the file at path; else those linked into a library (BN_LINKED_WEIGHTS); else
 * the payload appended to the running executable. A library built with --weights-file has
 * no executable of its own to look in. Copied into anonymous memory unless BN_OPEN_MMAP. */
static int rt_weights_open(RtWeights *w, const char *path, const char *argv0,
			   const RtModel *rm, const RtLoadOpts *lo, RtErr *e)
{
	const void *blob = NULL;
	uint64_t blob_n = 0;
	RtLoadOpts o = *lo;
#if defined(BN_LINKED_WEIGHTS)
	blob = rt_linked_weights[0];
	blob_n = (uint64_t)(rt_linked_weights[1] - rt_linked_weights[0]);
	o.flags |= RT_WEIGHTS_DROP_BLOB; /* the library file's read-only pages */
#elif defined(BN_LIBRARY)
	if (!path)
		return rt_err(e, RT_EINVAL, "this library was built with --weights-file: give "
					    "bn_model_open the path of that weights file");
#endif
	return rt_weights_load(w, path, argv0, blob, blob_n, "the weights linked into the library",
			       rm->weights_bytes, rm->weights_hash, &o, e);
}

static int rt_open(bn_model *m, const char *path, const char *argv0, int flags,
		   bn_progress_fn progress, void *user, char *err, size_t err_len)
{
	const RtModel *rm = m->rm;
	int rc = bn_model_check(err, err_len);
	if (rc)
		return rc;
	m->inspect = (flags & BN_OPEN_INSPECT) != 0;
	char why[256];
	if (!m->inspect && rt_cpu_enable(rm->cpu_features, why, sizeof why))
		return rt_say(err, err_len, BN_E_CPU,
			      "the OS refused this program the CPU state it was built for: %s", why);
	RtErr e = {0};
	RtLoadOpts lo = {.flags = ((flags & BN_OPEN_MMAP) ? RT_WEIGHTS_MMAP : 0) |
				  ((flags & BN_OPEN_MLOCK) ? RT_WEIGHTS_MLOCK : 0),
			 .progress = progress, .user = user};
	if (rt_weights_open(&m->w, path, argv0, rm, &lo, &e)) {
		m->w.data = NULL;
		return rt_say(err, err_len, e.code == RT_ENOMEM ? BN_E_NOMEM : BN_E_WEIGHTS, "%s",
			      e.msg);
	}
	rt_weights_describe(&m->w, m->held, sizeof m->held);
	if (rt_open_tok(m) == BN_E_TOKENIZER && !m->inspect)
		return rt_say(err, err_len, BN_E_TOKENIZER, "the tokenizer in %s is unusable: %s",
			      m->w.path, m->tok_err);
	if (m->inspect || !rm->init)
		return BN_OK;
	char ierr[512] = "";
	rc = rm->init(m->w.data, m->w.size, &m->inst, ierr, sizeof ierr);
	if (rc == RT_INIT_DEVICE) /* the model's message says which device and why */
		return rt_say(err, err_len, BN_E_DEVICE, "%s", ierr[0] ? ierr : "no usable GPU");
	if (rc)
		return rt_say(err, err_len, BN_E_MODEL, "the model's init failed%s%s",
			      ierr[0] ? ": " : "", ierr);
	m->inited = 1;
	return BN_OK;
}

bn_model *bn_model_open_progress(const char *weights_path, const char *argv0, int flags,
				 bn_progress_fn progress, void *user, int *code, char *err,
				 size_t err_len)
{
	if (err && err_len)
		err[0] = 0;
	bn_model *m = calloc(1, sizeof *m);
	if (m)
		m->rm = RT_MODEL;
	int rc = m ? rt_open(m, weights_path, argv0, flags, progress, user, err, err_len)
		   : rt_say(err, err_len, BN_E_NOMEM, "out of memory");
	if (code)
		*code = rc;
	if (rc && m) {
		bn_model_close(m);
		m = NULL;
	}
	return m;
}

bn_model *bn_model_open_ex(const char *weights_path, const char *argv0, int flags, int *code,
			   char *err, size_t err_len)
{
	return bn_model_open_progress(weights_path, argv0, flags, NULL, NULL, code, err, err_len);
}

bn_model *bn_model_open(const char *weights_path, char *err, size_t err_len)
{
	return bn_model_open_ex(weights_path, NULL, 0, NULL, err, err_len);
}

void bn_model_close(bn_model *m)
{
	if (!m)
		return;
	if (m->inited && m->rm->fini)
		m->rm->fini(m->inst);
	rt_tok_free(m->tok);
	if (m->w.data)
		rt_weights_unmap(&m->w);
	free(m);
}

int bn_model_verify(const bn_model *m, char *err, size_t err_len)
{
	if (!m)
		return rt_say(err, err_len, BN_E_ARG, "no model");
	uint64_t want = m->rm->weights_hash, got = rt_weights_hash(m->w.data, m->w.size);
	if (got != want)
		return rt_say(err, err_len, BN_E_WEIGHTS,
			      "%s: the weights payload is damaged: its %llu bytes hash to %016llx, "
			      "but the program and the trailer say %016llx (rebuild it, or copy it "
			      "again)",
			      m->w.path, (unsigned long long)m->w.size, (unsigned long long)got,
			      (unsigned long long)want);
	return BN_OK;
}

int bn_model_device_info(char *buf, size_t n)
{
	const RtModel *rm = RT_MODEL;
	if (buf && n)
		buf[0] = 0;
	if (!rm->device_info)
		return 0;
	if (buf && n)
		rm->device_info(buf, n);
	return 1;
}

const RtModel *rt_api_model(const bn_model *m)
{
	return rt_rm(m);
}

const RtTok *rt_api_tok(const bn_model *m)
{
	return m ? m->tok : NULL;
}

int rt_api_tok_error(const bn_model *m, char *why, size_t n)
{
	snprintf(why, n, "%s", m->tok_err);
	return m->tok_status;
}

/* ---- what the model says ---------------------------------------------------------- */

int32_t bn_model_n_vocab(const bn_model *m)
{
	return (int32_t)rt_rm(m)->n_vocab;
}

int32_t bn_model_n_ctx_train(const bn_model *m)
{
	int64_t n = rt_rm(m)->n_ctx_train;
	return n > INT32_MAX ? INT32_MAX : n < 0 ? 0 : (int32_t)n;
}

const char *bn_model_meta(const bn_model *m, const char *key)
{
	const RtModel *rm = rt_rm(m);
	if (!key)
		return NULL;
	if (!strcmp(key, "name"))
		return rm->name;
	if (!strcmp(key, "arch"))
		return rm->arch;
	if (!strcmp(key, "target"))
		return rm->target;
	if (!strcmp(key, "pipeline"))
		return rm->pipeline;
	if (!strcmp(key, "version"))
		return rm->version;
	if (!strcmp(key, "cpu_features"))
		return rm->cpu_features;
	if (!strcmp(key, "info"))
		return rm->info ? rm->info : "";
	if (!strcmp(key, "chat_template"))
		return rt_chat_name((RtChatTemplate)rm->chat_template);
	if (!strcmp(key, "weights_path"))
		return m ? m->w.path : NULL;
	if (!strcmp(key, "weights_held"))
		return m ? m->held : NULL;
	if (!strcmp(key, "thp"))
		return m ? m->w.thp : NULL;
	return NULL;
}

int64_t bn_model_meta_int(const bn_model *m, const char *key)
{
	const RtModel *rm = rt_rm(m);
	static const struct {
		const char *key;
		size_t off;
	} fields[] = {
		{"n_vocab", offsetof(RtModel, n_vocab)},
		{"n_ctx_train", offsetof(RtModel, n_ctx_train)},
		{"n_layer", offsetof(RtModel, n_layer)},
		{"n_embd", offsetof(RtModel, n_embd)},
		{"bos", offsetof(RtModel, bos)},
		{"eos", offsetof(RtModel, eos)},
		{"max_batch", offsetof(RtModel, max_batch)},
	};
	if (!key)
		return -1;
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
		if (!strcmp(key, fields[i].key)) {
			int64_t v;
			memcpy(&v, (const char *)rm + fields[i].off, sizeof v);
			return v;
		}
	if (!strcmp(key, "scratch_bytes"))
		return (int64_t)rm->scratch_bytes;
	if (!strcmp(key, "weights_bytes"))
		return (int64_t)rm->weights_bytes;
	if (!strcmp(key, "weights_hash"))
		return (int64_t)rm->weights_hash;
	if (!strcmp(key, "tok_bytes"))
		return (int64_t)rm->tok_bytes;
	if (!strcmp(key, "weights_embedded"))
		return m ? m->w.embedded : -1;
	if (!strcmp(key, "weights_copied"))
		return m ? m->w.copied : -1;
	if (!strcmp(key, "weights_locked"))
		return m ? m->w.locked : -1;
	if (!strcmp(key, "weights_huge_pages"))
		return m ? (int64_t)m->w.huge_pages : -1;
	if (!strcmp(key, "weights_held_bytes"))
		return m ? (int64_t)(m->w.copied ? m->w.map_len : 0) : -1;
	if (!strcmp(key, "weights_load_us"))
		return m ? (int64_t)(m->w.load_s * 1e6) : -1;
	return -1;
}

int32_t bn_model_batch_sizes(const bn_model *m, int32_t *sizes, int32_t cap)
{
	const RtModel *rm = rt_rm(m);
	for (int i = 0; i < rm->n_batch_sizes && i < cap; i++)
		sizes[i] = rm->batch_sizes[i];
	return rm->n_batch_sizes;
}

uint64_t bn_model_kv_bytes(const bn_model *m, int32_t n_ctx)
{
	return rt_rm(m)->kv_bytes(n_ctx, 1);
}

int32_t bn_model_default_ctx(const bn_model *m)
{
	const RtModel *rm = rt_rm(m);
	int64_t want = rm->n_ctx_train > 0 ? rm->n_ctx_train : 4096;
	if (want > INT32_MAX)
		want = INT32_MAX;
	uint64_t ram = rt_phys_ram(), budget = ram / 4;
	if (!ram || rm->kv_bytes(want, 1) <= budget)
		return (int32_t)want;
	int64_t lo = 1, hi = want; /* kv_bytes grows with n_ctx: the largest lo that fits */
	while (lo < hi) {
		int64_t mid = lo + (hi - lo + 1) / 2;
		if (rm->kv_bytes(mid, 1) <= budget)
			lo = mid;
		else
			hi = mid - 1;
	}
	return (int32_t)lo;
}

/* ---- contexts --------------------------------------------------------------------- */

int32_t bn_default_threads(void)
{
#if defined(_SC_NPROCESSORS_ONLN)
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n > 0)
		return n > 512 ? 512 : (int)n;
#endif
	return 1;
}

static int rt_ctx_alloc(bn_ctx *c, char *err, size_t err_len)
{
	const RtModel *rm = c->m->rm;
	if (rm->state_init) {
		char e[256] = "";
		if (rm->state_init(&c->st, e, sizeof e))
			return rt_say(err, err_len, BN_E_CTX, "%s",
				      e[0] ? e : "the model's state_init failed");
		c->dev_init = 1;
		return BN_OK;
	}
	c->own_mem = 1;
	uint64_t kvb = rm->kv_bytes(c->st.n_ctx, c->st.n_seq);
	/* calloc of a large block is fresh zero pages from the OS: nothing is touched yet. */
	c->st.kv = kvb > SIZE_MAX ? NULL : calloc(1, kvb ? (size_t)kvb : 1);
	if (!c->st.kv && c->st.n_seq > 1)
		return rt_say(err, err_len, BN_E_CTX,
			      "cannot allocate the KV cache: %.1f MiB for %d sequences of %lld "
			      "tokens",
			      (double)kvb / (1024.0 * 1024.0), (int)c->st.n_seq,
			      (long long)c->st.n_ctx);
	if (!c->st.kv)
		return rt_say(err, err_len, BN_E_CTX,
			      "cannot allocate the KV cache: %.1f MiB for %lld tokens",
			      (double)kvb / (1024.0 * 1024.0), (long long)c->st.n_ctx);
	uint64_t sb = (rm->scratch_bytes + 63) / 64 * 64;
	c->st.scratch = sb > SIZE_MAX ? NULL : aligned_alloc(64, sb ? (size_t)sb : 64);
	if (!c->st.scratch)
		return rt_say(err, err_len, BN_E_NOMEM, "cannot allocate %.1f MiB of activation scratch",
			      (double)sb / (1024.0 * 1024.0));
	return BN_OK;
}

bn_ctx *bn_ctx_new_seq(bn_model *m, int32_t n_ctx, int32_t n_seq, int32_t n_threads, int *code,
		       char *err, size_t err_len)
{
	int rc = BN_OK;
	bn_ctx *c = NULL;
	if (err && err_len)
		err[0] = 0;
	if (!m || m->inspect)
		rc = rt_say(err, err_len, BN_E_ARG, "%s", m ? "the model was opened for inspection only"
							    : "no model");
	else if (n_ctx < 0 || n_threads < 0 || n_threads > 512)
		rc = rt_say(err, err_len, BN_E_ARG, "bad context size %d or thread count %d",
			    (int)n_ctx, (int)n_threads);
	else if (n_seq < 1 || n_seq > BN_MAX_SEQ)
		rc = rt_say(err, err_len, BN_E_ARG, "bad sequence count %d (1 to %d)", (int)n_seq,
			    BN_MAX_SEQ);
	else if (!(c = calloc(1, sizeof *c)) ||
		 !(c->len = calloc(3 * (size_t)n_seq, sizeof *c->len)))
		rc = rt_say(err, err_len, BN_E_NOMEM, "out of memory");
	if (c && !rc) {
		c->m = m;
		atomic_init(&c->cancel, 0);
		c->bstart = c->len + n_seq;
		c->bnext = c->bstart + n_seq;
		c->st.w = m->w.data;
		c->st.inst = m->inst;
		if (!n_ctx && (n_ctx = bn_model_default_ctx(m) / n_seq) < 1)
			n_ctx = 1;
		c->st.n_ctx = n_ctx;
		c->st.n_seq = n_seq;
		bn_ctx_set_ubatch(c, 0);
		int th = n_threads ? n_threads : bn_default_threads();
		rc = rt_ctx_alloc(c, err, err_len);
		if (!rc && !(c->st.pool = rt_pool_new(th)))
			rc = rt_say(err, err_len, BN_E_THREADS, "cannot start %d threads", th);
	}
	if (code)
		*code = rc;
	if (rc) {
		bn_ctx_free(c);
		return NULL;
	}
	return c;
}

bn_ctx *bn_ctx_new_ex(bn_model *m, int32_t n_ctx, int32_t n_threads, int *code, char *err,
		      size_t err_len)
{
	return bn_ctx_new_seq(m, n_ctx, 1, n_threads, code, err, err_len);
}

bn_ctx *bn_ctx_new(bn_model *m, int32_t n_ctx, int32_t n_threads, char *err, size_t err_len)
{
	return bn_ctx_new_ex(m, n_ctx, n_threads, NULL, err, err_len);
}

void bn_ctx_free(bn_ctx *c)
{
	if (!c)
		return;
	rt_pool_free(c->st.pool);
	free(c->prof);
	if (c->own_mem) {
		free(c->st.scratch);
		free(c->st.kv);
	} else if (c->dev_init && c->m->rm->state_fini) {
		c->m->rm->state_fini(&c->st);
	}
	free(c->len);
	free(c);
}

const bn_model *bn_ctx_model(const bn_ctx *c)
{
	return c->m;
}

int32_t bn_ctx_n_ctx(const bn_ctx *c)
{
	return (int32_t)c->st.n_ctx;
}

int32_t bn_ctx_n_threads(const bn_ctx *c)
{
	return rt_pool_threads(c->st.pool);
}

int bn_ctx_set_ubatch(bn_ctx *c, int32_t n)
{
	const RtModel *rm = c->m->rm;
	if (n < 0)
		return BN_E_ARG;
	c->ubatch = n && n < rm->max_batch ? n : (int32_t)rm->max_batch;
	c->n_calls = 0;
	for (int i = 0; i < rm->n_batch_sizes; i++)
		if (rm->batch_sizes[i] < c->ubatch)
			c->calls[c->n_calls++] = rm->batch_sizes[i];
	c->calls[c->n_calls++] = c->ubatch;
	return BN_OK;
}

int32_t bn_ctx_ubatch(const bn_ctx *c)
{
	return c->ubatch;
}

int32_t bn_ctx_n_seq(const bn_ctx *c)
{
	return c->st.n_seq;
}

int32_t bn_ctx_pos(const bn_ctx *c)
{
	return c->len[0];
}

int32_t bn_ctx_seq_pos(const bn_ctx *c, int32_t seq)
{
	return seq >= 0 && seq < c->st.n_seq ? c->len[seq] : BN_E_ARG;
}

void bn_ctx_reset(bn_ctx *c)
{
	for (int32_t s = 0; s < c->st.n_seq; s++)
		c->len[s] = 0;
}

/* The cache needs no clearing: position p is read only after a decode wrote it (each row
 * attends to 0..pos of its own sequence), so what lies past n_keep is overwritten first. */
int bn_ctx_trim(bn_ctx *c, int32_t n_keep)
{
	if (n_keep < 0 || n_keep > c->len[0])
		return rt_say(c->err, sizeof c->err, BN_E_ARG,
			      "bn_ctx_trim: %d positions (the cache holds %d)", (int)n_keep,
			      (int)c->len[0]);
	c->len[0] = n_keep;
	return BN_OK;
}

int bn_ctx_seq_trim(bn_ctx *c, int32_t seq, int32_t n_keep)
{
	if (seq < -1 || seq >= c->st.n_seq || n_keep < 0 || (seq >= 0 && n_keep > c->len[seq]))
		return rt_say(c->err, sizeof c->err, BN_E_ARG,
			      "bn_ctx_seq_trim: sequence %d, %d positions (the context has %d "
			      "sequences; that one holds %d positions)",
			      (int)seq, (int)n_keep, (int)c->st.n_seq,
			      seq >= 0 && seq < c->st.n_seq ? (int)c->len[seq] : 0);
	for (int32_t s = seq < 0 ? 0 : seq; s < (seq < 0 ? c->st.n_seq : seq + 1); s++)
		if (c->len[s] > n_keep)
			c->len[s] = n_keep;
	return BN_OK;
}

void bn_ctx_cancel(bn_ctx *c, int on)
{
	atomic_store(&c->cancel, on != 0);
}

/* ORDER RT_PROF */
static const char *const rt_prof_names[RT_PROF_FAMILIES] = {
	"gemv", "gemm", "amx", "quant", "rmsnorm", "rope", "attention", "glu", "add", "embed",
	"head", "other", "wait",
};
_Static_assert(RT_PROF_FAMILIES == BN_PROFILE_FAMILIES, "bitnetc.h counts the families");

int bn_ctx_profile(bn_ctx *c, int on)
{
	if (!on) {
		c->st.prof = NULL;
		return BN_OK;
	}
	if (!c->prof && !(c->prof = malloc(sizeof *c->prof)))
		return rt_say(c->err, sizeof c->err, BN_E_NOMEM, "bn_ctx_profile: out of memory");
	memset(c->prof, 0, sizeof *c->prof);
	c->st.prof = c->prof;
	return BN_OK;
}

int bn_ctx_profile_read(const bn_ctx *c, bn_profile_row *rows, double *forward_s,
			int64_t *forwards)
{
	const RtProfile *p = c->prof;
	if (!p)
		return BN_E_ARG;
	for (int i = 0; rows && i < RT_PROF_FAMILIES; i++)
		rows[i] = (bn_profile_row){rt_prof_names[i], p->sec[i], p->calls[i]};
	if (forward_s)
		*forward_s = p->forward_sec;
	if (forwards)
		*forwards = p->forwards;
	return BN_OK;
}

int rt_api_ctx_say(bn_ctx *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
	return code;
}

const char *bn_ctx_last_error(const bn_ctx *c)
{
	return c->err;
}

int bn_ctx_nonfinite(const bn_ctx *c, int32_t *pos, int32_t *token, int32_t *layer)
{
	if (!c->bad_set)
		return BN_E_ARG;
	if (pos)
		*pos = c->bad_pos;
	if (token)
		*token = c->bad_tok;
	if (layer)
		*layer = c->bad_layer;
	return BN_OK;
}

/* ---- decoding --------------------------------------------------------------------- */

int32_t bn_decode_split(const bn_ctx *c, int32_t rem)
{
	const int32_t *calls = c->calls;
	int32_t cap = calls[c->n_calls - 1], m = 1;
	for (int i = 0; i < c->n_calls; i++)
		if (calls[i] <= rem)
			m = calls[i];
	if (m == 1)
		m = rem < cap ? rem : cap;
	/* two tokens left after a call of two: one call of three if the cap allows it */
	if (rem - m == 1 && m > 1)
		m = m > 2 ? m - 1 : m + 1 <= cap ? m + 1 : 1;
	return m;
}

/* The first logits row of rows (n_vocab floats each) holding a NaN or an infinity; -1 if
 * none. */
static int64_t rt_nonfinite_row(const float *x, int64_t rows, int64_t nv)
{
	for (int64_t r = 0; r < rows; r++) {
		/* the exponent bits all set (NaN, both infinities), as the model's check: an
		 * integer test that vectorizes and that no float option (-ffast-math) folds away */
		uint32_t bad = 0;
		for (int64_t i = 0; i < nv; i++) {
			uint32_t u;
			memcpy(&u, &x[r * nv + i], sizeof u);
			bad |= (u & 0x7f800000u) == 0x7f800000u;
		}
		if (bad)
			return r;
	}
	return -1;
}

static int rt_bad(bn_ctx *c, int64_t pos, int32_t tok, int32_t layer)
{
	c->bad_set = 1;
	c->bad_pos = (int32_t)pos;
	c->bad_tok = tok;
	c->bad_layer = layer;
	return BN_E_NONFINITE;
}

/* "position P" of a one-sequence context, "position P of sequence S" of a larger one. */
static const char *rt_where(const bn_ctx *c, char *buf, size_t n, int64_t pos, int32_t seq)
{
	if (c->st.n_seq > 1)
		snprintf(buf, n, "position %lld of sequence %d", (long long)pos, (int)seq);
	else
		snprintf(buf, n, "position %lld", (long long)pos);
	return buf;
}

/* One forward call of the rows of b (1..max_batch, checked by bn_model_check against
 * RT_MAX_BATCH). An activation (the model checks the residual stream after the embedding
 * and each layer) or a logit that is NaN or infinite fails it: the weights are broken or
 * overflow float, and every token after it would be noise. */
static int rt_forward(bn_ctx *c, const RtBatch *b, float *logits)
{
	const RtModel *rm = c->m->rm;
	RtState *st = &c->st;
	size_t msz = sizeof c->err;
	char at[96];
	int n = b->n;
	st->bad_token = 0;
	st->bad_layer = INT_MIN; /* the model did not say */
	int s = rm->decode(st, b, logits);
	if (!s && rm->sync)
		s = rm->sync(st);
	if (s == RT_FORWARD_NONFINITE) {
		int t = st->bad_token >= 0 && st->bad_token < n ? st->bad_token : 0;
		int32_t seq = b->seq ? b->seq[t] : 0, tok = b->token[t];
		int64_t pos = b->pos[t];
		rt_where(c, at, sizeof at, pos, seq);
		if (st->bad_layer == INT_MIN) {
			rt_bad(c, pos, tok, BN_LAYER_UNKNOWN);
			return rt_say(c->err, msz, BN_E_NONFINITE,
				      "activations went NaN or Inf at %s (token %d): the weights "
				      "overflow float; stopping",
				      at, (int)tok);
		}
		rt_bad(c, pos, tok, st->bad_layer < 0 ? -1 : st->bad_layer);
		if (st->bad_layer < 0)
			return rt_say(c->err, msz, BN_E_NONFINITE,
				      "the embedding row of token %d (%s) is not finite (NaN or Inf): "
				      "the model's weights are broken; stopping",
				      (int)tok, at);
		return rt_say(c->err, msz, BN_E_NONFINITE,
			      "activations went NaN or Inf in layer %d at %s (token %d): the "
			      "weights overflow float there; stopping",
			      st->bad_layer, at, (int)tok);
	}
	if (s == RT_FORWARD_DEVICE)
		return rt_say(c->err, msz, BN_E_DEVICE,
			      "the GPU failed the forward call at positions %lld..%lld (a launch, a "
			      "copy or a kernel fault reported by the driver)",
			      (long long)b->pos[0], (long long)b->pos[n - 1]);
	if (s == RT_FORWARD_CPU)
		return rt_say(c->err, msz, BN_E_CPU,
			      "the OS refused the AMX tile state the model's kernels need "
			      "(arch_prctl ARCH_REQ_XCOMP_PERM; Linux 5.16 or newer)");
	if (s != 0)
		return rt_say(c->err, msz, BN_E_MODEL,
			      "the model's forward call failed (status %d) at positions "
			      "%lld..%lld",
			      s, (long long)b->pos[0], (long long)b->pos[n - 1]);
	int64_t rows = !logits ? 0 : b->out ? b->n_out : n;
	int64_t r = rt_nonfinite_row(logits, rows, rm->n_vocab);
	if (r >= 0) {
		int t = b->out ? b->out[r] : (int)r;
		int32_t seq = b->seq ? b->seq[t] : 0;
		rt_bad(c, b->pos[t], b->token[t], BN_LAYER_LOGITS);
		return rt_say(c->err, msz, BN_E_NONFINITE,
			      "the logits of %s (token %d) are NaN or Inf: the model's weights "
			      "overflow float; stopping",
			      rt_where(c, at, sizeof at, b->pos[t], seq), (int)b->token[t]);
	}
	return BN_OK;
}

/* One forward call of n tokens at sequence 0's end; last_only: the last row's logits
 * alone. */
static int rt_call(bn_ctx *c, const int32_t *toks, int n, float *logits, int last_only)
{
	int32_t p[RT_MAX_BATCH], last = n - 1;
	int64_t pos = c->len[0];
	if (n < 1 || n > c->m->rm->max_batch || n > RT_MAX_BATCH || pos > INT32_MAX - n)
		return rt_say(c->err, sizeof c->err, BN_E_MODEL,
			      "the model's forward call failed (status %d) at positions "
			      "%lld..%lld",
			      RT_FORWARD_BATCH, (long long)pos, (long long)(pos + n - 1));
	for (int t = 0; t < n; t++)
		p[t] = (int32_t)pos + t;
	RtBatch b = {n, toks, p, NULL, last_only ? &last : NULL, 1, NULL};
	int rc = rt_forward(c, &b, logits);
	if (!rc)
		c->len[0] += n;
	return rc;
}

int bn_decode_ex(bn_ctx *c, const int32_t *tokens, int32_t n, float *logits, int flags)
{
	const RtModel *rm = c->m->rm;
	size_t msz = sizeof c->err;
	c->err[0] = 0;
	c->bad_set = 0;
	if (n < 1 || !tokens || (flags & ~(BN_DECODE_LAST | BN_DECODE_ONE_CALL)) ||
	    ((flags & BN_DECODE_ONE_CALL) && n > c->ubatch))
		return rt_say(c->err, msz, BN_E_ARG, "bn_decode: %d tokens (one call holds 1 to %d)",
			      (int)n, (int)c->ubatch);
	if ((int64_t)c->len[0] + n > c->st.n_ctx)
		return rt_say(c->err, msz, BN_E_CTX,
			      "the context is full: %d tokens at position %d do not fit its %lld",
			      (int)n, (int)c->len[0], (long long)c->st.n_ctx);
	for (int32_t i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= rm->n_vocab)
			return rt_say(c->err, msz, BN_E_TOKEN,
				      "token %d (index %d) is out of range: the vocabulary has %lld "
				      "tokens",
				      (int)tokens[i], (int)i, (long long)rm->n_vocab);
	int last = (flags & BN_DECODE_LAST) != 0;
	size_t nv = (size_t)rm->n_vocab;
	for (int32_t off = 0; off < n;) {
		int32_t m = flags & BN_DECODE_ONE_CALL ? n : bn_decode_split(c, n - off);
		int final = off + m == n;
		float *out = !logits ? NULL : !last ? logits + (size_t)off * nv : final ? logits : NULL;
		if (atomic_exchange(&c->cancel, 0))
			return rt_say(c->err, msz, BN_E_CANCELLED,
				      "cancelled at position %d (%d of %d tokens decoded)", (int)c->len[0],
				      (int)off, (int)n);
		int rc = rt_call(c, tokens + off, m, out, last);
		if (rc)
			return rc;
		off += m;
	}
	return BN_OK;
}

int bn_decode(bn_ctx *c, const int32_t *tokens, int32_t n, float *logits)
{
	return bn_decode_ex(c, tokens, n, logits, 0);
}

/* The rows of bn_decode_batch's next forward call: up to ubatch, never leaving a last call
 * of one row behind (a one-row call is the step mode: only a one-row batch gets one). */
static int32_t rt_batch_split(const bn_ctx *c, int32_t rem)
{
	int32_t m = rem < c->ubatch ? rem : c->ubatch;
	if (rem - m == 1 && m > 1)
		m--;
	return m;
}

/* bn_decode_batch's checks, before anything runs: every row's sequence, token and
 * position (each sequence's rows consecutive positions from at most its length); fills
 * c->bstart and c->bnext (-1: the sequence has no row). */
static int rt_batch_check(bn_ctx *c, const bn_batch *b, const float *logits)
{
	const RtModel *rm = c->m->rm;
	size_t msz = sizeof c->err;
	if (!b || b->n < 1 || !b->token || !b->pos)
		return rt_say(c->err, msz, BN_E_ARG, "bn_decode_batch: %s",
			      !b ? "no batch" : b->n < 1 ? "no rows" : "no token or pos array");
	for (int32_t s = 0; s < c->st.n_seq; s++)
		c->bnext[s] = -1;
	int32_t n_out = 0;
	for (int32_t i = 0; i < b->n; i++) {
		int32_t s = b->seq ? b->seq[i] : 0, p = b->pos[i], t = b->token[i];
		if (s < 0 || s >= c->st.n_seq)
			return rt_say(c->err, msz, BN_E_ARG,
				      "bn_decode_batch: row %d: sequence %d is outside 0..%d", (int)i,
				      (int)s, (int)c->st.n_seq - 1);
		if (t < 0 || t >= rm->n_vocab)
			return rt_say(c->err, msz, BN_E_TOKEN,
				      "token %d (row %d) is out of range: the vocabulary has %lld "
				      "tokens",
				      (int)t, (int)i, (long long)rm->n_vocab);
		if (c->bnext[s] < 0 && (p < 0 || p > c->len[s]))
			return rt_say(c->err, msz, BN_E_ARG,
				      "bn_decode_batch: row %d: position %d of sequence %d: it holds %d "
				      "positions (its rows append at its end or overwrite from a "
				      "position below it)",
				      (int)i, (int)p, (int)s, (int)c->len[s]);
		if (c->bnext[s] >= 0 && p != c->bnext[s])
			return rt_say(c->err, msz, BN_E_ARG,
				      "bn_decode_batch: row %d: position %d of sequence %d does not "
				      "follow its row before (position %d): a sequence's rows are "
				      "consecutive positions",
				      (int)i, (int)p, (int)s, (int)c->bnext[s] - 1);
		if (p >= c->st.n_ctx)
			return rt_say(c->err, msz, BN_E_CTX,
				      "the context is full: row %d (position %d of sequence %d) does "
				      "not fit its %lld positions",
				      (int)i, (int)p, (int)s, (long long)c->st.n_ctx);
		if (c->bnext[s] < 0)
			c->bstart[s] = p;
		c->bnext[s] = p + 1;
		n_out += b->logits && b->logits[i];
	}
	if (n_out && !logits)
		return rt_say(c->err, msz, BN_E_ARG,
			      "bn_decode_batch: %d rows want logits and the logits buffer is NULL",
			      (int)n_out);
	return BN_OK;
}

int bn_decode_batch(bn_ctx *c, const bn_batch *b, float *logits)
{
	size_t nv = (size_t)c->m->rm->n_vocab, done = 0;
	c->err[0] = 0;
	c->bad_set = 0;
	int rc = rt_batch_check(c, b, logits);
	if (rc)
		return rc;
	for (int32_t s = 0; s < c->st.n_seq; s++)
		if (c->bnext[s] >= 0)
			c->len[s] = c->bstart[s]; /* an overwrite trims the sequence first */
	int32_t out[RT_MAX_BATCH];
	for (int32_t off = 0; off < b->n;) {
		int32_t m = rt_batch_split(c, b->n - off), n_out = 0;
		if (atomic_exchange(&c->cancel, 0))
			return rt_say(c->err, sizeof c->err, BN_E_CANCELLED,
				      "cancelled (%d of %d rows decoded)", (int)off, (int)b->n);
		for (int32_t i = 0; b->logits && i < m; i++)
			if (b->logits[off + i])
				out[n_out++] = i;
		RtBatch rb = {m, b->token + off, b->pos + off, b->seq ? b->seq + off : NULL, out,
			      n_out, b->step ? b->step + off : NULL};
		rc = rt_forward(c, &rb, n_out ? logits + done * nv : NULL);
		if (rc)
			return rc;
		for (int32_t i = 0; i < m; i++)
			c->len[b->seq ? b->seq[off + i] : 0] = b->pos[off + i] + 1;
		done += (size_t)n_out;
		off += m;
	}
	return BN_OK;
}

uint64_t rt_phys_ram(void)
{
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	if (pages > 0 && psz > 0)
		return (uint64_t)pages * (uint64_t)psz;
#endif
	return 0;
}
