/* rt_generate.c - bitnetc.h: generation (sample, record, emit and decode one token a
 * step, the text streamed as it is decided, stop strings) and chat turns over one KV
 * cache. The generated program's -p and -cnv run through here. Prints nothing. */
/* POSIX (clock_gettime) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "bitnetc.h"
#include "rt.h"
#include "rt_tok.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the text stream -------------------------------------------------------------- */

static int rt_pend_add(RtGenText *t, const char *b, size_t n)
{
	if (!n)
		return 0;
	if (t->n_pend + n > t->cap_pend) {
		size_t cap = t->cap_pend ? t->cap_pend : 64;
		while (cap < t->n_pend + n)
			cap *= 2;
		char *p = realloc(t->pend, cap);
		if (!p)
			return BN_E_NOMEM;
		t->pend = p;
		t->cap_pend = cap;
	}
	memcpy(t->pend + t->n_pend, b, n);
	t->n_pend += n;
	return 0;
}

static int rt_pend_fffd(RtGenText *t)
{
	return rt_pend_add(t, "\xef\xbf\xbd", 3);
}

/* The bytes a UTF-8 character starting with c has (0: c starts none). */
static int rt_u8_len(unsigned char c)
{
	return c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
	       : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
}

/* Whether c may follow the k bytes of u (k >= 1) in a character: no overlong forms, no
 * surrogates, nothing past U+10FFFF. */
static int rt_u8_next_ok(const unsigned char *u, int k, unsigned char c)
{
	unsigned char lo = 0x80, hi = 0xbf;
	if (k == 1 && u[0] == 0xe0)
		lo = 0xa0;
	else if (k == 1 && u[0] == 0xed)
		hi = 0x9f;
	else if (k == 1 && u[0] == 0xf0)
		lo = 0x90;
	else if (k == 1 && u[0] == 0xf4)
		hi = 0x8f;
	return c >= lo && c <= hi;
}

/* Valid UTF-8 into pend: a character once complete, U+FFFD for each invalid part (the
 * longest start of a character that cannot go on), an unfinished one held. */
static int rt_u8_push(RtGenText *t, const unsigned char *b, size_t n, int end)
{
	int rc = 0;
	for (size_t i = 0; i < n && !rc;) {
		unsigned char c = b[i];
		if (t->n_u8 == 0) {
			int len = rt_u8_len(c);
			i++;
			if (len == 1)
				rc = rt_pend_add(t, (const char *)&c, 1);
			else if (len == 0)
				rc = rt_pend_fffd(t);
			else {
				t->u8[0] = c;
				t->n_u8 = 1;
				t->len_u8 = len;
			}
		} else if (rt_u8_next_ok(t->u8, t->n_u8, c)) {
			i++;
			t->u8[t->n_u8++] = c;
			if (t->n_u8 == t->len_u8) {
				rc = rt_pend_add(t, (const char *)t->u8, (size_t)t->n_u8);
				t->n_u8 = 0;
			}
		} else {
			t->n_u8 = 0; /* c starts over */
			rc = rt_pend_fffd(t);
		}
	}
	if (!rc && end && t->n_u8) {
		t->n_u8 = 0;
		rc = rt_pend_fffd(t);
	}
	return rc;
}

static const char *rt_find(const char *h, size_t hn, const char *s, size_t sn)
{
	for (size_t i = 0; sn <= hn && i <= hn - sn; i++)
		if (!memcmp(h + i, s, sn))
			return h + i;
	return NULL;
}

/* Gives pend to on_text up to the first stop string, or less what may begin one. */
static int rt_pend_emit(RtGenText *t, int end)
{
	size_t give = t->n_pend, hold = 0;
	int stop = 0;
	if (!t->n_pend)
		return 0;
	for (int32_t i = 0; i < t->n_stop; i++) {
		const char *s = t->stop[i];
		size_t sn = s ? strlen(s) : 0;
		if (!sn)
			continue;
		const char *at = rt_find(t->pend, t->n_pend, s, sn);
		if (at && (size_t)(at - t->pend) <= give) {
			give = (size_t)(at - t->pend);
			stop = 1;
		}
		/* the longest end of pend that begins s */
		for (size_t k = sn - 1 < t->n_pend ? sn - 1 : t->n_pend; !end && k > hold; k--)
			if (!memcmp(t->pend + t->n_pend - k, s, k)) {
				hold = k;
				break;
			}
	}
	if (!stop)
		give = t->n_pend - hold;
	int cb = give && t->on_text && t->on_text(t->user, t->pend, give);
	if (stop)
		t->n_pend = 0;
	else {
		memmove(t->pend, t->pend + give, t->n_pend - give);
		t->n_pend -= give;
	}
	return cb ? RT_GEN_TEXT_CALLBACK : stop ? RT_GEN_TEXT_STOP : 0;
}

int rt_gen_text_push(RtGenText *t, const char *bytes, size_t n, int end)
{
	int rc;
	if (t->raw) {
		char small[260], *out = n + 8 <= sizeof small ? small : malloc(n + 8);
		if (!out)
			return BN_E_NOMEM;
		size_t k = rt_detok_push(&t->detok, bytes, n, out);
		if (end)
			k += rt_detok_flush(&t->detok, out + k);
		rc = rt_pend_add(t, out, k);
		if (out != small)
			free(out);
	} else {
		rc = rt_u8_push(t, (const unsigned char *)bytes, n, end);
	}
	return rc ? rc : rt_pend_emit(t, end);
}

void rt_gen_text_free(RtGenText *t)
{
	free(t->pend);
	t->pend = NULL;
	t->n_pend = t->cap_pend = 0;
}

/* ---- generation ------------------------------------------------------------------- */

bn_generate_params bn_generate_defaults(void)
{
	bn_generate_params p;
	memset(&p, 0, sizeof p);
	p.max_tokens = -1;
	return p;
}

/* A generation's working state. */
typedef struct {
	bn_ctx *c;
	const bn_model *m;
	const bn_generate_params *p;
	RtGenPick pick;
	float *logits;
	size_t nv;
} RtGen;

/* The token's text into the stream: 0, an RT_GEN_TEXT_* stop, or a code. */
static int rt_gen_piece(RtGenPick *g, int32_t tok)
{
	char small[256], *piece = small;
	int special = (g->flags & BN_GEN_SPECIAL) != 0;
	int32_t n = bn_token_to_piece_ex(g->m, tok, special, small, (int32_t)sizeof small);
	if (n > (int32_t)sizeof small) {
		if (!(piece = malloc((size_t)n)))
			return rt_api_ctx_say(g->c, BN_E_NOMEM, "out of memory for the text of token %d",
					      (int)tok);
		n = bn_token_to_piece_ex(g->m, tok, special, piece, n);
	}
	int rc = n > 0 ? rt_gen_text_push(&g->text, piece, (size_t)n, 0) : 0;
	if (piece != small)
		free(piece);
	if (rc == BN_E_NOMEM)
		return rt_api_ctx_say(g->c, rc, "out of memory for the text of token %d", (int)tok);
	return rc;
}

/* Decodes the prompt; its last logits row in g->logits. 0, BN_STOP_CALLBACK or a code. */
static int rt_gen_prompt(RtGen *g, const int32_t *prompt, int32_t n, bn_generate_result *r)
{
	const bn_generate_params *p = g->p;
	int32_t pos0 = bn_ctx_pos(g->c);
	double t = rt_now();
	int rc = 0;
	if (!(p->flags & BN_GEN_PROMPT_LOGITS)) {
		rc = bn_decode_ex(g->c, prompt, n, g->logits, BN_DECODE_LAST);
		if (!rc && p->on_logits && p->on_logits(p->user, g->logits, 1))
			rc = BN_STOP_CALLBACK;
	}
	for (int32_t off = 0; (p->flags & BN_GEN_PROMPT_LOGITS) && off < n && !rc;) {
		int32_t k = bn_decode_split(g->c, n - off);
		rc = bn_decode_ex(g->c, prompt + off, k, g->logits, BN_DECODE_ONE_CALL);
		if (!rc && p->on_logits && p->on_logits(p->user, g->logits, k))
			rc = BN_STOP_CALLBACK;
		if (!rc && off + k == n && k > 1) /* the last row is the one to sample from */
			memmove(g->logits, g->logits + (size_t)(k - 1) * g->nv, g->nv * sizeof(float));
		off += k;
	}
	r->prompt_s = rt_now() - t;
	r->n_prompt = bn_ctx_pos(g->c) - pos0;
	return rc;
}

int rt_gen_pick(RtGenPick *g, const float *logits, int32_t *tok)
{
	int32_t t = *tok = bn_sampler_sample(g->s, logits);
	if (!(g->flags & BN_GEN_IGNORE_EOG) && bn_token_is_eog(g->m, t))
		return BN_STOP_EOG;
	bn_sampler_accept(g->s, t);
	g->n_generated++;
	if (g->on_token && g->on_token(g->user, t))
		return BN_STOP_CALLBACK;
	if (g->use_text) {
		int rc = rt_gen_piece(g, t);
		if (rc)
			return rc == RT_GEN_TEXT_STOP ? BN_STOP_STRING
			       : rc == RT_GEN_TEXT_CALLBACK ? BN_STOP_CALLBACK : rc;
	}
	return 0;
}

int rt_gen_pick_end(RtGenPick *g, int stop)
{
	if (!g->use_text || stop == BN_STOP_CALLBACK || stop == BN_STOP_STRING)
		return 0;
	int e = rt_gen_text_push(&g->text, NULL, 0, 1);
	return e == BN_E_NOMEM ? e : 0;
}

/* One step: sample, record, emit, decode. 0 to go on, a BN_STOP_* reason (> 0), or a
 * code (< 0). */
static int rt_gen_step(RtGen *g, int last, bn_generate_result *r)
{
	const bn_generate_params *p = g->p;
	int32_t tok;
	int rc = rt_gen_pick(&g->pick, g->logits, &tok);
	r->n_generated = g->pick.n_generated;
	if (rc)
		return rc;
	if (last && (p->flags & BN_GEN_SKIP_LAST))
		return BN_STOP_MAX_TOKENS;
	if (bn_ctx_pos(g->c) >= bn_ctx_n_ctx(g->c))
		return BN_STOP_CTX_FULL;
	double t = rt_now();
	rc = bn_decode_ex(g->c, &tok, 1, g->logits, BN_DECODE_LAST);
	r->gen_s += rt_now() - t;
	if (rc)
		return rc;
	r->n_decoded++;
	if (p->on_logits && p->on_logits(p->user, g->logits, 1))
		return BN_STOP_CALLBACK;
	return last ? BN_STOP_MAX_TOKENS : 0;
}

static int rt_gen_check(bn_ctx *c, bn_sampler *s, const int32_t *prompt, int32_t n_prompt,
			const bn_generate_params *p, int use_text)
{
	int all = BN_GEN_IGNORE_EOG | BN_GEN_SPECIAL | BN_GEN_RAW_TEXT | BN_GEN_SKIP_LAST |
		  BN_GEN_PROMPT_LOGITS;
	if (!s || !prompt || n_prompt < 1 || (p->flags & ~all) || p->n_stop < 0 ||
	    (p->n_stop && !p->stop) || p->max_tokens < -1)
		return rt_api_ctx_say(c, BN_E_ARG,
				      "bn_generate: a bad argument (sampler %s, %d prompt tokens, "
				      "flags %#x, %d stop strings, max_tokens %d)",
				      s ? "given" : "NULL", (int)n_prompt, (unsigned)p->flags,
				      (int)p->n_stop, (int)p->max_tokens);
	char why[512];
	int st = use_text ? bn_model_tokenizer_status(bn_ctx_model(c), why, sizeof why) : BN_OK;
	if (st)
		return rt_api_ctx_say(c, st, "bn_generate: text needs a tokenizer: %s",
				      why[0] ? why : bn_strerror(st));
	return BN_OK;
}

int bn_generate(bn_ctx *c, bn_sampler *s, const int32_t *prompt, int32_t n_prompt,
		const bn_generate_params *p, bn_generate_result *r)
{
	bn_generate_params dp = bn_generate_defaults();
	bn_generate_result dr;
	if (!p)
		p = &dp;
	if (!r)
		r = &dr;
	memset(r, 0, sizeof *r);
	r->stop = BN_STOP_ERROR;
	if (!c)
		return BN_E_ARG;
	int use_text = p->on_text || p->n_stop > 0;
	int rc = rt_gen_check(c, s, prompt, n_prompt, p, use_text);
	if (rc)
		return rc;
	RtGen g = {c, bn_ctx_model(c), p, {0}, NULL, 0};
	g.nv = (size_t)bn_model_n_vocab(g.m);
	g.pick = (RtGenPick){.c = c, .m = g.m, .s = s, .flags = p->flags, .use_text = use_text,
			     .on_token = p->on_token, .user = p->user};
	size_t rows = p->flags & BN_GEN_PROMPT_LOGITS ? (size_t)bn_ctx_ubatch(c) : 1;
	if (!(g.logits = malloc(rows * g.nv * sizeof(float))))
		return rt_api_ctx_say(c, BN_E_NOMEM, "out of memory for %zu logits rows", rows);
	g.pick.text = (RtGenText){.on_text = p->on_text, .user = p->user, .stop = p->stop,
				  .n_stop = p->n_stop, .raw = (p->flags & BN_GEN_RAW_TEXT) != 0};
	for (int32_t i = 0; i < n_prompt; i++)
		bn_sampler_accept(s, prompt[i]);
	rc = rt_gen_prompt(&g, prompt, n_prompt, r);
	int32_t max = p->max_tokens;
	for (int32_t gen = 0; !rc && (max < 0 || gen < max); gen++)
		rc = rt_gen_step(&g, max >= 0 && gen + 1 == max, r);
	if (rc == 0)
		rc = BN_STOP_MAX_TOKENS; /* max_tokens 0 */
	r->stop = rc > 0 ? rc : rc == BN_E_CANCELLED ? BN_STOP_CANCELLED : BN_STOP_ERROR;
	/* the end of the text: what was held back is decided */
	if (rt_gen_pick_end(&g.pick, r->stop) == BN_E_NOMEM && rc > 0)
		rc = rt_api_ctx_say(c, BN_E_NOMEM, "out of memory for the generated text");
	rt_gen_text_free(&g.pick.text);
	free(g.logits);
	return rc > 0 ? BN_OK : rc;
}

/* ---- chat turns ------------------------------------------------------------------- */

struct bn_chat {
	bn_ctx *c;
	bn_sampler *s;
	const char *tmpl; /* canonical name, or NULL: the built-in one */
	char *system;     /* NULL: none */
	int started;      /* BOS and the system message are in the cache */
	int reply_open;   /* a reply is in the cache without its end of message */
	int restart;      /* the context filled up: the next turn starts a new conversation */
	int32_t pos;      /* bn_ctx_pos after the last turn */
	int32_t *ids;     /* the prepared turn */
	int32_t n_ids;
};

bn_chat *bn_chat_new(bn_ctx *c, bn_sampler *s, const char *tmpl, const char *system,
		     int *code, char *err, size_t err_len)
{
	int rc = BN_OK;
	bn_chat *ch = NULL;
	if (err && err_len)
		err[0] = 0;
	if (!c || !s) {
		rc = BN_E_ARG;
		if (err && err_len)
			snprintf(err, err_len, "bn_chat_new: no %s", c ? "sampler" : "context");
	} else if ((rc = bn_chat_check(bn_ctx_model(c), tmpl, err, err_len)) == BN_OK) {
		ch = calloc(1, sizeof *ch);
		size_t sl = system && *system ? strlen(system) + 1 : 0;
		if (ch && sl && (ch->system = malloc(sl)) != NULL)
			memcpy(ch->system, system, sl);
		if (!ch || (sl && !ch->system)) {
			rc = BN_E_NOMEM;
			if (err && err_len)
				snprintf(err, err_len, "out of memory");
		}
	}
	if (code)
		*code = rc;
	if (rc) {
		bn_chat_free(ch);
		return NULL;
	}
	ch->c = c;
	ch->s = s;
	ch->tmpl = tmpl ? bn_chat_template_name(bn_ctx_model(c), tmpl) : NULL;
	ch->restart = 1; /* the first turn starts at position 0 */
	return ch;
}

void bn_chat_free(bn_chat *ch)
{
	if (!ch)
		return;
	free(ch->system);
	free(ch->ids);
	free(ch);
}

void bn_chat_reset(bn_chat *ch)
{
	bn_ctx_reset(ch->c);
	bn_sampler_reset(ch->s);
	ch->started = ch->reply_open = ch->restart = 0;
	ch->pos = 0;
	free(ch->ids);
	ch->ids = NULL;
	ch->n_ids = 0;
}

/* The turn as tokens into ch->ids: the open reply's end of message, at the start BOS
 * and the system message, the user message, the assistant prefix. */
static int rt_chat_encode(bn_chat *ch, const char *user)
{
	const bn_model *m = bn_ctx_model(ch->c);
	bn_chat_msg msgs[2];
	int k = 0;
	if (!ch->started && ch->system)
		msgs[k++] = (bn_chat_msg){"system", ch->system};
	msgs[k++] = (bn_chat_msg){"user", user};
	int flags = BN_CHAT_ADD_ASSISTANT | (ch->reply_open ? BN_CHAT_CLOSE_REPLY : 0);
	int32_t len = bn_chat_format(m, ch->tmpl, msgs, k, flags, NULL, 0);
	if (len < 0)
		return rt_api_ctx_say(ch->c, len, "chat template: %s", bn_strerror(len));
	char *all = len < INT32_MAX ? malloc((size_t)len + 1) : NULL;
	if (!all || bn_chat_format(m, ch->tmpl, msgs, k, flags, all, len + 1) != len) {
		free(all);
		return rt_api_ctx_say(ch->c, BN_E_NOMEM, "out of memory for the chat turn");
	}
	int tf = BN_TOKENIZE_PARSE_SPECIAL;
	if (!ch->started && bn_model_add_bos(m))
		tf |= BN_TOKENIZE_ADD_BOS;
	int32_t cap = len + 2 < INT32_MAX ? len + 2 : INT32_MAX, got = BN_E_NOMEM;
	free(ch->ids);
	ch->ids = NULL;
	ch->n_ids = 0;
	for (int pass = 0; pass < 2; pass++) {
		int32_t *buf = malloc((size_t)cap * sizeof *buf);
		if (!buf) {
			got = BN_E_NOMEM;
			break;
		}
		got = bn_tokenize_ex(m, all, (size_t)len, buf, cap, tf);
		if (got >= 0 && got <= cap) {
			ch->ids = buf;
			ch->n_ids = got;
			break;
		}
		free(buf);
		if (got < 0)
			break;
		cap = got;
	}
	free(all);
	if (!ch->ids)
		return rt_api_ctx_say(ch->c, got < 0 ? got : BN_E_NOMEM, "tokenizer: %s",
				      bn_strerror(got < 0 ? got : BN_E_NOMEM));
	return BN_OK;
}

int bn_chat_prepare(bn_chat *ch, const char *user, int32_t *n_tokens, int *restarted)
{
	if (n_tokens)
		*n_tokens = 0;
	if (restarted)
		*restarted = 0;
	if (!ch || !user)
		return ch ? rt_api_ctx_say(ch->c, BN_E_ARG, "bn_chat_prepare: no message") : BN_E_ARG;
	int64_t n_ctx = bn_ctx_n_ctx(ch->c);
	if (ch->restart) {
		bn_chat_reset(ch); /* the context filled up in the last reply */
	} else if (bn_ctx_pos(ch->c) != ch->pos) {
		/* the caller moved the cache: at 0 a new conversation begins */
		if (bn_ctx_pos(ch->c) == 0)
			ch->started = ch->reply_open = 0;
		ch->pos = bn_ctx_pos(ch->c);
	}
	int rc = rt_chat_encode(ch, user);
	if (!rc && ch->pos + (int64_t)ch->n_ids + 1 > n_ctx && ch->started) {
		bn_chat_reset(ch);
		if (restarted)
			*restarted = 1;
		rc = rt_chat_encode(ch, user);
	}
	if (n_tokens)
		*n_tokens = ch->n_ids;
	if (!rc && (int64_t)ch->n_ids + 1 > n_ctx)
		rc = rt_api_ctx_say(ch->c, BN_E_CTX,
				    "the message (%d tokens) does not fit the context of %lld tokens",
				    (int)ch->n_ids, (long long)n_ctx);
	if (rc) {
		free(ch->ids);
		ch->ids = NULL;
		ch->n_ids = 0;
	}
	return rc;
}

int bn_chat_reply(bn_chat *ch, const bn_generate_params *p, bn_generate_result *r)
{
	bn_generate_result dr;
	if (!r)
		r = &dr;
	memset(r, 0, sizeof *r);
	r->stop = BN_STOP_ERROR;
	if (!ch)
		return BN_E_ARG;
	if (!ch->ids)
		return rt_api_ctx_say(ch->c, BN_E_ARG, "bn_chat_reply: no turn prepared");
	int32_t pos0 = bn_ctx_pos(ch->c), n = ch->n_ids;
	int rc = bn_generate(ch->c, ch->s, ch->ids, n, p, r);
	free(ch->ids);
	ch->ids = NULL;
	ch->n_ids = 0;
	if (r->n_prompt < n) { /* the turn is taken back */
		bn_ctx_trim(ch->c, pos0);
		return rc;
	}
	ch->started = ch->reply_open = 1;
	ch->restart = r->stop == BN_STOP_CTX_FULL;
	ch->pos = bn_ctx_pos(ch->c);
	return rc;
}

int bn_chat_turn(bn_chat *ch, const char *user, const bn_generate_params *p,
		 bn_generate_result *r)
{
	if (r) {
		memset(r, 0, sizeof *r);
		r->stop = BN_STOP_ERROR;
	}
	int rc = bn_chat_prepare(ch, user, NULL, NULL);
	return rc ? rc : bn_chat_reply(ch, p, r);
}
