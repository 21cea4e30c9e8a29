/* rt_api_text.c - bitnetc.h: tokens and text (the tokenizer in the weights), chat
 * formatting (rt_chat.c) and sampling (rt_sample.c) for a model of the API. */
#include "bitnetc.h"
#include "rt.h"
#include "rt_tok.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tokens ----------------------------------------------------------------------- */

int bn_model_tokenizer_status(const bn_model *m, char *err, size_t err_len)
{
	const RtModel *rm = rt_api_model(m);
	if (err && err_len)
		err[0] = 0;
	if (!rm->tok_bytes)
		return BN_E_NO_TOKENIZER;
	if (!m || rt_api_tok(m))
		return BN_OK;
	/* opened for inspection with an unusable tokenizer: rt_api.c kept why */
	char why[512];
	int rc = rt_api_tok_error(m, why, sizeof why);
	if (err && err_len)
		snprintf(err, err_len, "%s", why);
	return rc;
}

int32_t bn_tokenize_ex(const bn_model *m, const char *text, size_t len, int32_t *ids,
		       int32_t cap, int flags)
{
	const RtTok *t = rt_api_tok(m);
	if (!t)
		return m && !rt_api_model(m)->tok_bytes ? BN_E_NO_TOKENIZER
			: m ? BN_E_TOKENIZER : BN_E_ARG;
	if ((!text && len) || cap < 0 || (cap && !ids) ||
	    (flags & ~(BN_TOKENIZE_ADD_BOS | BN_TOKENIZE_PARSE_SPECIAL)))
		return BN_E_ARG;
	int f = 0;
	if (flags & BN_TOKENIZE_ADD_BOS)
		f |= RT_TOK_ADD_BOS;
	if (flags & BN_TOKENIZE_PARSE_SPECIAL)
		f |= RT_TOK_PARSE_SPECIAL;
	int32_t *out = NULL;
	int n = 0;
	RtErr e = {0};
	if (rt_tok_encode(t, text ? text : "", len, f, &out, &n, &e))
		return e.code == RT_ENOMEM ? BN_E_NOMEM : BN_E_ARG;
	memcpy(ids, out, (size_t)(n < cap ? n : cap) * sizeof *ids);
	free(out);
	return n;
}

int32_t bn_tokenize(const bn_model *m, const char *text, int32_t *ids, int32_t cap, int add_bos)
{
	if (!text)
		return BN_E_ARG;
	return bn_tokenize_ex(m, text, strlen(text), ids, cap,
			      BN_TOKENIZE_PARSE_SPECIAL | (add_bos ? BN_TOKENIZE_ADD_BOS : 0));
}

int32_t bn_token_to_piece_ex(const bn_model *m, int32_t id, int special, char *buf, int32_t cap)
{
	const RtTok *t = rt_api_tok(m);
	if (!t)
		return m && !rt_api_model(m)->tok_bytes ? BN_E_NO_TOKENIZER
			: m ? BN_E_TOKENIZER : BN_E_ARG;
	if (cap < 0 || (cap && !buf))
		return BN_E_ARG;
	int n = rt_tok_piece(t, id, special != 0, buf, cap);
	return n < 0 ? BN_E_TOKEN : n;
}

int32_t bn_token_to_piece(const bn_model *m, int32_t id, char *buf, int32_t cap)
{
	return bn_token_to_piece_ex(m, id, 1, buf, cap);
}

int32_t bn_model_n_tokens(const bn_model *m)
{
	const RtTok *t = rt_api_tok(m);
	return t ? rt_tok_n_vocab(t) : 0;
}

int32_t bn_token_bos(const bn_model *m)
{
	const RtTok *t = rt_api_tok(m);
	return t ? rt_tok_bos(t) : (int32_t)rt_api_model(m)->bos;
}

int32_t bn_token_eos(const bn_model *m)
{
	return (int32_t)rt_api_model(m)->eos;
}

int bn_model_add_bos(const bn_model *m)
{
	const RtTok *t = rt_api_tok(m);
	return t ? rt_tok_add_bos(t) : 0;
}

int bn_token_is_eog(const bn_model *m, int32_t id)
{
	const RtTok *t = rt_api_tok(m);
	if (t)
		return rt_tok_is_eog(t, id);
	return id == rt_api_model(m)->eos;
}

/* ---- chat ------------------------------------------------------------------------- */

/* The template tmpl names; NULL: the model's; RT_CHAT_NONE when unknown. */
static RtChatTemplate rt_tmpl(const bn_model *m, const char *tmpl)
{
	if (!tmpl)
		return (RtChatTemplate)rt_api_model(m)->chat_template;
	return rt_chat_from_name(tmpl);
}

const char *bn_chat_template_name(const bn_model *m, const char *tmpl)
{
	RtChatTemplate t = rt_tmpl(m, tmpl);
	if (tmpl && t == RT_CHAT_NONE)
		return NULL;
	return rt_chat_name(t);
}

int bn_chat_check(const bn_model *m, const char *tmpl, char *err, size_t err_len)
{
	const RtTok *t = rt_api_tok(m);
	RtChatTemplate ct = rt_tmpl(m, tmpl);
	if (err && err_len)
		err[0] = 0;
	if (!t) {
		if (err && err_len)
			snprintf(err, err_len, "the model has no tokenizer");
		return BN_E_NO_TOKENIZER;
	}
	if (ct == RT_CHAT_NONE) {
		if (err && err_len)
			snprintf(err, err_len, "no chat template%s%s", tmpl ? " named " : "",
				 tmpl ? tmpl : "");
		return BN_E_TEMPLATE;
	}
	char why[256] = "";
	if (!rt_chat_tokens_ok(ct, t, why, sizeof why)) {
		if (err && err_len)
			snprintf(err, err_len, "%s", why);
		return BN_E_TEMPLATE;
	}
	return BN_OK;
}

/* The text that closes an assistant message ("<|eot_id|>" in both known formats), found
 * by rendering one around a marker so that it follows the template; malloc'd. */
static char *rt_chat_closing(RtChatTemplate t)
{
	static const char mark[] = "\x01reply\x01";
	RtChatMsg msg = {"assistant", mark};
	char *r = rt_chat_render(t, &msg, 1, false), *c = NULL;
	char *at = r ? strstr(r, mark) : NULL;
	if (at) {
		at += strlen(mark);
		if ((c = malloc(strlen(at) + 1)) != NULL)
			strcpy(c, at);
	}
	free(r);
	return c;
}

int32_t bn_chat_format(const bn_model *m, const char *tmpl, const bn_chat_msg *msgs, int32_t n,
		       int flags, char *buf, int32_t cap)
{
	RtChatTemplate t = rt_tmpl(m, tmpl);
	if (t == RT_CHAT_NONE)
		return BN_E_TEMPLATE;
	if (n < 0 || (n && !msgs) || cap < 0 || (cap && !buf) ||
	    (flags & ~(BN_CHAT_ADD_ASSISTANT | BN_CHAT_CLOSE_REPLY)))
		return BN_E_ARG;
	RtChatMsg *rm = malloc(((size_t)n + 1) * sizeof *rm);
	if (!rm)
		return BN_E_NOMEM;
	for (int32_t i = 0; i < n; i++) {
		if (!msgs[i].role || !msgs[i].content) {
			free(rm);
			return BN_E_ARG;
		}
		rm[i] = (RtChatMsg){msgs[i].role, msgs[i].content};
	}
	char *text = rt_chat_render(t, rm, (int)n, (flags & BN_CHAT_ADD_ASSISTANT) != 0);
	char *close = flags & BN_CHAT_CLOSE_REPLY ? rt_chat_closing(t) : NULL;
	free(rm);
	int32_t rc = BN_E_NOMEM;
	if (text && (close || !(flags & BN_CHAT_CLOSE_REPLY))) {
		size_t lc = close ? strlen(close) : 0, lt = strlen(text);
		if (lc + lt >= INT32_MAX) {
			rc = BN_E_ARG;
		} else {
			rc = (int32_t)(lc + lt);
			if ((size_t)cap > lc + lt) {
				memcpy(buf, close ? close : "", lc);
				memcpy(buf + lc, text, lt + 1);
			} else if (cap) {
				memcpy(buf, close ? close : "", lc < (size_t)cap ? lc : (size_t)cap);
				if (lc < (size_t)cap)
					memcpy(buf + lc, text, (size_t)cap - lc);
			}
		}
	}
	free(close);
	free(text);
	return rc;
}

/* ---- sampling --------------------------------------------------------------------- */

struct bn_sampler {
	RtSampler *s;
};

bn_sampler_params bn_sampler_defaults(void)
{
	RtSamplerParams d = rt_sampler_defaults();
	return (bn_sampler_params){d.temp, d.top_k, d.top_p, d.min_p, d.repeat_penalty,
				   d.repeat_last_n, d.seed, d.presence_penalty,
				   d.frequency_penalty};
}

uint64_t bn_seed_random(void)
{
	return rt_seed_random();
}

bn_sampler *bn_sampler_new(const bn_model *m, const bn_sampler_params *p)
{
	if (!p)
		return NULL;
	RtSamplerParams sp = {p->temp, p->top_k, p->top_p, p->min_p, p->repeat_penalty,
			      p->repeat_last_n, p->seed, p->presence_penalty, p->frequency_penalty};
	/* Embedding rows past the tokenizer's last token (a padded vocabulary) have no text:
	 * the sampler sees only the rows that do, so they are never picked. */
	int64_t nv = rt_api_model(m)->n_vocab;
	int32_t nt = bn_model_n_tokens(m);
	if (nt > 0 && nt < nv)
		nv = nt;
	bn_sampler *s = malloc(sizeof *s);
	if (s && !(s->s = rt_sampler_new(&sp, nv))) {
		free(s);
		s = NULL;
	}
	return s;
}

void bn_sampler_free(bn_sampler *s)
{
	if (!s)
		return;
	rt_sampler_free(s->s);
	free(s);
}

int32_t bn_sampler_sample(bn_sampler *s, const float *logits)
{
	return rt_sampler_sample(s->s, logits);
}

void bn_sampler_accept(bn_sampler *s, int32_t token)
{
	rt_sampler_accept(s->s, token);
}

void bn_sampler_reset(bn_sampler *s)
{
	rt_sampler_reset(s->s);
}
