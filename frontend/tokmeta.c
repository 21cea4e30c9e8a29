/* tokmeta.c - a GGUF's tokenizer metadata (tokenizer.ggml.*, tokenizer.chat_template) read,
 * checked and turned into the runtime's tokenizer blob (rt_tok_build). */
#include "frontend.h"
#include "rt_tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything read from the file, owned here until the blob is built. */
typedef struct {
	RtTokSpec spec;
	const char **tokens;
	uint32_t *token_len;
	int32_t *types;
	float *scores;
	const char **merges;
	uint32_t *merge_len;
	int32_t eog[8];
	char pre[64];
} TokMeta;

static void tokmeta_free(TokMeta *m)
{
	free(m->tokens);
	free(m->token_len);
	free(m->types);
	free(m->scores);
	free(m->merges);
	free(m->merge_len);
}

/* The tokenizer.ggml.pre values whose split the runtime has (rt_tok_pre_split says which):
 * first those split as Llama 3 does (llama.cpp's LLAMA3 group: the same regex, whole words
 * looked up before merging, BOS added), then Falcon 3's, as the reference (bitnet.cpp's
 * fork) splits "falcon3" and "falcon_e": punctuation runs, then GPT-2's regex, then single
 * digits, always merged, no BOS unless the file asks (upstream llama.cpp splits those two
 * as Llama 3, which gives other ids: e.g. "123" whole vs "1", "2", "3"). ORDER: the first
 * is the name --tokenizer-pre suggests. */
static const char *const known_pres[] = {
	"llama3", "llama-bpe", "llama-v3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
	"falcon3", "falcon_e", NULL,
};

const char *const *bnm_tok_pres(void)
{
	return known_pres;
}

bool bnm_tok_pre_supported(const char *pre)
{
	for (const char *const *p = known_pres; pre && *p; p++)
		if (!strcmp(*p, pre))
			return true;
	return false;
}

const char *bnm_tok_split_name(const char *pre)
{
	return rt_tok_pre_split(pre) == RT_TOK_SPLIT_FALCON3 ? "Falcon 3" : "Llama 3";
}

void bnm_tok_pres_list(char *buf, size_t n)
{
	size_t len = 0;
	buf[0] = 0;
	for (const char *const *p = known_pres; *p && len < n; p++) {
		int k = snprintf(buf + len, n - len, "%s%s", len ? ", " : "", *p);
		if (k < 0)
			break;
		len += (size_t)k;
	}
}

/* The array at key with its element count; errors name the file and key. */
static int meta_array(const GgufFile *f, const char *key, GgufType want, bool any_int,
		      const GgufValue **v, BnErr *e)
{
	const GgufKV *kv = gguf_find(f, key);
	*v = NULL;
	if (!kv)
		return 0;
	const GgufValue *a = &kv->val;
	bool ok = a->type == GGUF_T_ARRAY && (a->arr_type == want ||
		  (any_int && a->arr_type != GGUF_T_STRING && a->arr_type != GGUF_T_ARRAY &&
		   a->arr_type != GGUF_T_F32 && a->arr_type != GGUF_T_F64));
	if (!ok)
		return bn_err(e, BN_EFORMAT, "%s: %s: expected an array of %s, got %s%s%s", f->path,
			      key, gguf_type_name(want), a->type == GGUF_T_ARRAY ? "an array of " : "a ",
			      gguf_type_name(a->type == GGUF_T_ARRAY ? a->arr_type : a->type),
			      a->type == GGUF_T_ARRAY ? "" : " value");
	if (a->arr_n > INT32_MAX)
		return bn_err(e, BN_EFORMAT, "%s: %s: %llu entries (at most %d)", f->path, key,
			      (unsigned long long)a->arr_n, INT32_MAX);
	*v = a;
	return 0;
}

/* An array of strings as pointers into the mapping. */
static int meta_strings(const GgufFile *f, const char *key, const GgufValue *a, const char ***s,
			uint32_t **len, BnErr *e)
{
	size_t n = (size_t)a->arr_n;
	*s = malloc((n ? n : 1) * sizeof **s);
	*len = malloc((n ? n : 1) * sizeof **len);
	if (!*s || !*len)
		return bn_err(e, BN_ENOMEM, "%s: %s: out of memory", f->path, key);
	for (size_t i = 0; i < n; i++) {
		GgufValue el;
		GgufStr str;
		if (!gguf_value_elem(a, i, &el) || !gguf_value_str(&el, &str) ||
		    str.len > UINT32_MAX)
			return bn_err(e, BN_EFORMAT, "%s: %s[%zu]: not a readable string", f->path, key,
				      i);
		(*s)[i] = str.ptr;
		(*len)[i] = (uint32_t)str.len;
	}
	return 0;
}

/* The per-token integer or float array at key, which must have n entries. */
static int meta_per_token(const GgufFile *f, const char *key, int32_t n, bool floats,
			  int32_t **iv, float **fv, BnErr *e)
{
	const GgufValue *a;
	int rc = meta_array(f, key, floats ? GGUF_T_F32 : GGUF_T_I32, !floats, &a, e);
	if (rc || !a)
		return rc;
	if (a->arr_n != (uint64_t)n)
		return bn_err(e, BN_EFORMAT, "%s: %s has %llu entries but tokenizer.ggml.tokens has "
			      "%d", f->path, key, (unsigned long long)a->arr_n, n);
	if (floats)
		*fv = malloc((size_t)(n ? n : 1) * sizeof **fv);
	else
		*iv = malloc((size_t)(n ? n : 1) * sizeof **iv);
	if (floats ? !*fv : !*iv)
		return bn_err(e, BN_ENOMEM, "%s: %s: out of memory", f->path, key);
	for (int32_t i = 0; i < n; i++) {
		GgufValue el;
		int64_t x = 0;
		double d = 0;
		bool ok = gguf_value_elem(a, (uint64_t)i, &el) &&
			  (floats ? gguf_value_float(&el, &d) : gguf_value_int(&el, &x));
		if (!ok || (!floats && (x < INT32_MIN || x > INT32_MAX)))
			return bn_err(e, BN_EFORMAT, "%s: %s[%d]: not a readable %s", f->path, key, i,
				      floats ? "number" : "32-bit integer");
		if (floats)
			(*fv)[i] = (float)d;
		else
			(*iv)[i] = (int32_t)x;
	}
	return 0;
}

/* A token id at key (-1 when missing); it must name a token. */
static int meta_id(const GgufFile *f, const char *key, int32_t n, int32_t *id, BnErr *e)
{
	int64_t v;
	*id = -1;
	if (!gguf_find(f, key))
		return 0;
	if (!gguf_get_int(f, key, &v))
		return bn_err(e, BN_EFORMAT, "%s: %s: expected an integer token id", f->path, key);
	if (v < 0 || v >= n)
		return bn_err(e, BN_EFORMAT, "%s: %s: token id %lld is out of range (the vocabulary "
			      "has %d tokens)", f->path, key, (long long)v, n);
	*id = (int32_t)v;
	return 0;
}

static void eog_add(TokMeta *m, int32_t id)
{
	if (id < 0 || id == m->spec.eos || m->spec.n_eog >= (int)(sizeof m->eog / sizeof *m->eog))
		return;
	for (int i = 0; i < m->spec.n_eog; i++)
		if (m->eog[i] == id)
			return;
	m->eog[m->spec.n_eog++] = id;
}

static bool tok_is(const TokMeta *m, int32_t i, const char *name)
{
	size_t n = strlen(name);
	return m->token_len[i] == n && !memcmp(m->tokens[i], name, n);
}

/* End of generation: EOS, the eot/eom keys, and the control tokens that end a turn in the
 * known chat formats (<|eot_id|> is what the 2B-4T model emits after a reply). */
static int meta_eog(const GgufFile *f, TokMeta *m, BnErr *e)
{
	static const char *const names[] = {"<|eot_id|>", "<|end_of_text|>", "<|eom_id|>",
					    "<|im_end|>", "<|endoftext|>", "<end_of_turn>"};
	static const char *const keys[] = {"tokenizer.ggml.eot_token_id",
					   "tokenizer.ggml.eom_token_id"};
	int32_t n = m->spec.n_tokens;
	for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
		int32_t id;
		if (meta_id(f, keys[k], n, &id, e))
			return e->code;
		eog_add(m, id);
	}
	for (int32_t i = 0; i < n; i++) {
		if (m->types && m->types[i] != RT_TT_CONTROL)
			continue;
		for (size_t k = 0; k < sizeof names / sizeof *names; k++)
			if (tok_is(m, i, names[k]))
				eog_add(m, i);
	}
	m->spec.eog = m->eog;
	return 0;
}

/* tokenizer.ggml.add_bos_token, or what llama.cpp assumes without it: yes for
 * SentencePiece and for Llama 3's BPE (the official 2B-4T file says nothing), no for the
 * Falcon 3 split (the reference sets no BOS for "falcon3" and "falcon_e"). */
static int meta_add_bos(const GgufFile *f, TokMeta *m, BnErr *e)
{
	const char *key = "tokenizer.ggml.add_bos_token";
	const GgufKV *kv = gguf_find(f, key);
	if (!kv) {
		m->spec.add_bos = m->spec.kind == RT_TOK_SPM || !m->spec.pre ||
				  (bnm_tok_pre_supported(m->spec.pre) &&
				   rt_tok_pre_split(m->spec.pre) == RT_TOK_SPLIT_LLAMA3);
		return 0;
	}
	int64_t v;
	if (kv->val.type != GGUF_T_BOOL || !gguf_value_int(&kv->val, &v))
		return bn_err(e, BN_EFORMAT, "%s: %s: expected a bool, got %s", f->path, key,
			      gguf_type_name(kv->val.type));
	m->spec.add_bos = v != 0;
	return 0;
}

static int meta_kind(const GgufFile *f, TokMeta *m, const char **why, BnErr *e)
{
	GgufStr s;
	const char *key = "tokenizer.ggml.model";
	if (!gguf_find(f, key)) {
		*why = "the file has no tokenizer.ggml.model";
		return 0;
	}
	if (!gguf_get_str(f, key, &s))
		return bn_err(e, BN_EFORMAT, "%s: %s: expected a string", f->path, key);
	if (s.len == 4 && !memcmp(s.ptr, "gpt2", 4))
		m->spec.kind = RT_TOK_BPE;
	else if (s.len == 5 && !memcmp(s.ptr, "llama", 5))
		m->spec.kind = RT_TOK_SPM;
	else
		*why = "tokenizer.ggml.model is neither \"gpt2\" nor \"llama\"";
	if (gguf_find(f, "tokenizer.ggml.pre")) {
		if (!gguf_get_str(f, "tokenizer.ggml.pre", &s) || s.len >= sizeof m->pre)
			return bn_err(e, BN_EFORMAT, "%s: tokenizer.ggml.pre: expected a short string",
				      f->path);
		memcpy(m->pre, s.ptr, s.len);
		m->pre[s.len] = 0;
		m->spec.pre = m->pre;
	}
	return 0;
}

/* A byte-level BPE vocabulary is split into words before merging, and how is named by
 * tokenizer.ggml.pre; the runtime splits as Llama 3 or as Falcon 3 does. Another split
 * would give other ids without a word of warning, so an unknown pre is refused unless
 * force_pre (a supported name) says which split to use anyway. A missing pre keeps the
 * Llama 3 split (what the 2B-4T conversions need). SentencePiece has no split: pre is not
 * read. */
static int meta_pre(const GgufFile *f, TokMeta *m, const char *force_pre, char *note, size_t n,
		    BnErr *e)
{
	if (m->spec.kind != RT_TOK_BPE)
		return 0;
	const char *file_pre = m->spec.pre;
	if (force_pre) {
		snprintf(note, n, "the %s split (--tokenizer-pre %s; the file says %s%s%s)",
			 bnm_tok_split_name(force_pre), force_pre, file_pre ? "'" : "",
			 file_pre ? file_pre : "nothing", file_pre ? "'" : "");
		m->spec.pre = force_pre;
		return 0;
	}
	if (!file_pre) {
		snprintf(note, n, "the Llama 3 split (the file has no tokenizer.ggml.pre)");
		return 0;
	}
	if (bnm_tok_pre_supported(file_pre)) {
		snprintf(note, n, "the %s split (tokenizer.ggml.pre '%s')",
			 bnm_tok_split_name(file_pre), file_pre);
		return 0;
	}
	char list[256];
	bnm_tok_pres_list(list, sizeof list);
	return bn_err(e, BN_EUNSUPPORTED,
		      "%s: tokenizer.ggml.pre: unknown pre-tokenizer '%s': bitnetc splits text as "
		      "Llama 3 or Falcon 3 does, which is right only for %s (--tokenizer-pre %s "
		      "forces the Llama 3 split; --no-tokenizer builds without a tokenizer)",
		      f->path, file_pre, list, known_pres[0]);
}

/* The vocabulary, types, scores and merges. */
static int meta_vocab(const GgufFile *f, TokMeta *m, BnErr *e)
{
	const GgufValue *a;
	int rc = meta_array(f, "tokenizer.ggml.tokens", GGUF_T_STRING, false, &a, e);
	if (rc)
		return rc;
	if (!a || !a->arr_n)
		return bn_err(e, BN_EFORMAT, "%s: tokenizer.ggml.tokens: %s", f->path,
			      a ? "empty" : "missing (tokenizer.ggml.model is set)");
	m->spec.n_tokens = (int32_t)a->arr_n;
	if ((rc = meta_strings(f, "tokenizer.ggml.tokens", a, &m->tokens, &m->token_len, e)))
		return rc;
	m->spec.tokens = m->tokens;
	m->spec.token_len = m->token_len;
	if ((rc = meta_per_token(f, "tokenizer.ggml.token_type", m->spec.n_tokens, false,
				 &m->types, NULL, e)))
		return rc;
	m->spec.types = m->types;
	if (m->spec.kind == RT_TOK_SPM) {
		if ((rc = meta_per_token(f, "tokenizer.ggml.scores", m->spec.n_tokens, true, NULL,
					 &m->scores, e)))
			return rc;
		if (!m->scores)
			return bn_err(e, BN_EFORMAT, "%s: tokenizer.ggml.scores: missing (a \"llama\" "
				      "tokenizer merges by score)", f->path);
		m->spec.scores = m->scores;
		return 0;
	}
	if ((rc = meta_array(f, "tokenizer.ggml.merges", GGUF_T_STRING, false, &a, e)))
		return rc;
	if (!a)
		return bn_err(e, BN_EFORMAT, "%s: tokenizer.ggml.merges: missing (a \"gpt2\" "
			      "tokenizer needs its merges)", f->path);
	m->spec.n_merges = (int32_t)a->arr_n;
	if ((rc = meta_strings(f, "tokenizer.ggml.merges", a, &m->merges, &m->merge_len, e)))
		return rc;
	m->spec.merges = m->merges;
	m->spec.merge_len = m->merge_len;
	return 0;
}

static int tokmeta_read(const GgufFile *f, TokMeta *m, const char *force_pre, BnmTok *t,
			const char **why, BnErr *e)
{
	int rc;
	m->spec.bos = m->spec.eos = m->spec.unk = -1;
	if ((rc = meta_kind(f, m, why, e)) || *why)
		return rc;
	if ((rc = meta_pre(f, m, force_pre, t->split, sizeof t->split, e)))
		return rc;
	if ((rc = meta_vocab(f, m, e)))
		return rc;
	int32_t n = m->spec.n_tokens;
	if ((rc = meta_id(f, "tokenizer.ggml.bos_token_id", n, &m->spec.bos, e)) ||
	    (rc = meta_id(f, "tokenizer.ggml.eos_token_id", n, &m->spec.eos, e)) ||
	    (rc = meta_id(f, "tokenizer.ggml.unknown_token_id", n, &m->spec.unk, e)))
		return rc;
	if ((rc = meta_add_bos(f, m, e)))
		return rc;
	return meta_eog(f, m, e);
}

int bnm_tok_load(const GgufFile *f, BnmTok *t, BnErr *e)
{
	return bnm_tok_load_pre(f, NULL, t, e);
}

int bnm_tok_load_pre(const GgufFile *f, const char *force_pre, BnmTok *t, BnErr *e)
{
	memset(t, 0, sizeof *t);
	t->bos = t->eos = -1;
	if (force_pre && !bnm_tok_pre_supported(force_pre)) {
		char list[256];
		bnm_tok_pres_list(list, sizeof list);
		return bn_err(e, BN_EINVAL, "unknown pre-tokenizer '%s' (supported: %s)", force_pre,
			      list);
	}
	TokMeta m;
	memset(&m, 0, sizeof m);
	const char *why = NULL;
	bool falcon = false;
	int rc = tokmeta_read(f, &m, force_pre, t, &why, e);
	if (!rc && why) {
		snprintf(t->none_why, sizeof t->none_why, "%s", why);
	} else if (!rc) {
		RtErr re = {0};
		if (rt_tok_build(&m.spec, &t->blob, &t->size, &re) != RT_OK)
			rc = bn_err(e, re.code == RT_ENOMEM ? BN_ENOMEM : BN_EFORMAT,
				    "%s: %s", f->path, re.msg);
		t->kind = m.spec.kind == RT_TOK_BPE ? "gpt2" : "llama";
		t->n_tokens = m.spec.n_tokens;
		t->bos = m.spec.bos;
		t->eos = m.spec.eos;
		t->add_bos = m.spec.add_bos;
		t->n_eog = m.spec.n_eog;
		memcpy(t->eog, m.eog, sizeof m.eog);
		falcon = m.spec.kind == RT_TOK_BPE &&
			 rt_tok_pre_split(m.spec.pre) == RT_TOK_SPLIT_FALCON3;
	}
	tokmeta_free(&m);
	if (!rc) {
		GgufStr s;
		if (gguf_find(f, "tokenizer.chat_template")) {
			if (!gguf_get_str(f, "tokenizer.chat_template", &s))
				rc = bn_err(e, BN_EFORMAT, "%s: tokenizer.chat_template: expected a "
					    "string", f->path);
			else
				t->chat_template = (int)rt_chat_detect(s.ptr, (size_t)s.len);
			t->has_chat_jinja = true;
		} else if (falcon) {
			/* a Falcon 3 / Falcon-E vocabulary without a template: their format */
			t->chat_template = RT_CHAT_FALCON3;
			t->chat_from_pre = true;
		}
	}
	if (rc)
		bnm_tok_free(t);
	return rc;
}

int bnm_tok_chat_check(const BnmTok *t, int chat_template, char *why, size_t n)
{
	why[0] = 0;
	if (!t->blob || chat_template <= RT_CHAT_NONE)
		return 0;
	RtErr re = { 0 };
	RtTok *rt = rt_tok_open(t->blob, t->size, &re);
	if (!rt) {
		snprintf(why, n, "the tokenizer does not open: %s", re.msg);
		return BN_EFORMAT;
	}
	int ok = rt_chat_tokens_ok((RtChatTemplate)chat_template, rt, why, n);
	rt_tok_free(rt);
	return ok ? 0 : BN_EUNSUPPORTED;
}

void bnm_tok_free(BnmTok *t)
{
	free(t->blob);
	t->blob = NULL;
	t->size = 0;
}
