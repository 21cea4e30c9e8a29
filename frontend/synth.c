/* synth.c - seeded synthetic BitNet GGUFs: random ternary weights, synthetic or Llama 3 vocab. */
#include "frontend_int.h"
#include "rt.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- named shapes ------------------------------------------------------------- */

/* clang-format off */
static const struct {
	const char *name;
	BnmSynthSpec s;
} shapes[] = {
	/* the golden models (tests/data/golden/README.md; their context_length is 512) */
	{ "tiny", { .arch = "bitnet-b1.58", .n_layer = 4, .n_embd = 256, .n_ff = 768, .n_head = 4,
		    .n_head_kv = 2, .n_vocab = 512, .n_ctx = 512, .eps = 1e-5f, .rope_base = 500000.0f,
		    .wtype = IR_DT_I2_S, .embd_type = IR_DT_F16, .seed = 1 } },
	{ "tinyold", { .arch = "bitnet", .n_layer = 2, .n_embd = 256, .n_ff = 512, .n_head = 4,
		       .n_head_kv = 4, .n_vocab = 512, .n_ctx = 512, .eps = 1e-6f, .rope_base = 10000.0f,
		       .wtype = IR_DT_I2_S, .embd_type = IR_DT_F16, .seed = 1 } },
	/* llama arch (Llama3-8B-1.58, Falcon3 1.58-bit): no sub-norms, a separate F16 head */
	{ "tinyllama", { .arch = "llama", .n_layer = 4, .n_embd = 256, .n_ff = 768, .n_head = 4,
			 .n_head_kv = 2, .n_vocab = 512, .n_ctx = 512, .eps = 1e-5f,
			 .rope_base = 500000.0f, .wtype = IR_DT_I2_S, .embd_type = IR_DT_F16,
			 .seed = 1, .untied_head = true } },
	/* microsoft/bitnet-b1.58-2B-4T */
	{ "2b4t", { .arch = "bitnet-b1.58", .n_layer = 30, .n_embd = 2560, .n_ff = 6912, .n_head = 20,
		    .n_head_kv = 5, .n_vocab = 128256, .n_ctx = 4096, .eps = 1e-5f, .rope_base = 500000.0f,
		    .wtype = IR_DT_I2_S, .embd_type = IR_DT_F16, .seed = 1 } },
};
/* clang-format on */
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

int bnm_synth_shape(BnmSynthSpec *s, const char *shape, BnErr *e)
{
	for (int i = 0; i < N_SHAPES; i++)
		if (shape && strcmp(shapes[i].name, shape) == 0) {
			*s = shapes[i].s;
			return 0;
		}
	char list[128] = "";
	for (int i = 0; i < N_SHAPES; i++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
			 shapes[i].name);
	return bn_err(e, BN_EINVAL, "unknown synthetic model shape '%s' (known: %s)",
		      shape ? shape : "(null)", list);
}

/* The shape's name when s has one of the named shapes' dimensions, for general.name: the
 * one of s's arch if several have them. */
static const char *shape_name(const BnmSynthSpec *s)
{
	const char *found = NULL;
	for (int i = 0; i < N_SHAPES; i++) {
		const BnmSynthSpec *t = &shapes[i].s;
		if (s->n_layer == t->n_layer && s->n_embd == t->n_embd && s->n_ff == t->n_ff &&
		    s->n_head == t->n_head && s->n_head_kv == t->n_head_kv &&
		    s->n_vocab == t->n_vocab) {
			if (strcmp(s->arch ? s->arch : "bitnet-b1.58", t->arch) == 0)
				return shapes[i].name;
			if (!found)
				found = shapes[i].name;
		}
	}
	return found;
}

/* ---- random numbers: xoshiro256** seeded by splitmix64 ---------------------------- */

typedef struct {
	uint64_t s[4];
} Rng;

/* One stream per (seed, tensor name): a tensor's values do not depend on the order
 * tensors are made in, nor on the formats of the others. */
static Rng rng_for(uint64_t seed, const char *name)
{
	Rng r;
	uint64_t x = seed ^ bnm_fnv1a(BNM_FNV_BASIS, name);
	for (int i = 0; i < 4; i++)
		r.s[i] = rt_splitmix64(&x);
	return r;
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(Rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* uniform in [0, 1) */
static double rng_unit(Rng *r)
{
	return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* uniform in [0, n) */
static uint64_t rng_below(Rng *r, uint64_t n)
{
	return (uint64_t)(rng_unit(r) * (double)n);
}

/* Roughly N(0, 1) from one draw: the sum of four 16-bit uniforms, rescaled (range +-3.5). */
static float rng_normalish(Rng *r)
{
	uint64_t x = rng_next(r);
	double sum = 0;
	for (int i = 0; i < 4; i++, x >>= 16)
		sum += (double)(x & 0xffff) / 65536.0;
	return (float)((sum - 2.0) * 1.7320508075688772);
}

/* ---- the writer's buffers ----------------------------------------------------------- */

/* The GgufWriter keeps pointers to tensor data until it writes: all of it lives here. */
typedef struct {
	GgufWriter *w;
	const BnmSynthSpec *s;
	const BnmArch *arch;
	const char *path;
	BnErr *e;
	int rc;
	void **bufs;
	size_t n_bufs, cap_bufs;
	float *tmp; /* scratch floats for the largest tensor */
	size_t tmp_n;
} Synth;

static void *keep(Synth *sy, size_t n)
{
	if (sy->rc)
		return NULL;
	if (sy->n_bufs == sy->cap_bufs) {
		size_t cap = sy->cap_bufs ? sy->cap_bufs * 2 : 64;
		void **nb = realloc(sy->bufs, cap * sizeof *nb);
		if (!nb)
			goto oom;
		sy->bufs = nb;
		sy->cap_bufs = cap;
	}
	void *p = malloc(n ? n : 1);
	if (!p)
		goto oom;
	return sy->bufs[sy->n_bufs++] = p;
oom:
	sy->rc = bn_err(sy->e, BN_ENOMEM, "%s: out of memory (%zu bytes)", sy->path, n);
	return NULL;
}

static float *scratch(Synth *sy, size_t n)
{
	if (sy->rc)
		return NULL;
	if (n > sy->tmp_n) {
		free(sy->tmp);
		sy->tmp = malloc(n * sizeof(float));
		sy->tmp_n = sy->tmp ? n : 0;
		if (!sy->tmp)
			sy->rc = bn_err(sy->e, BN_ENOMEM, "%s: out of memory (%zu floats)",
					sy->path, n);
	}
	return sy->tmp;
}

static void add_tensor(Synth *sy, const char *name, IrDtype dt, int64_t ne0, int64_t ne1,
		       const void *data, uint64_t nbytes)
{
	if (sy->rc)
		return;
	int64_t ne[2] = { ne0, ne1 };
	sy->rc = gguf_writer_tensor(sy->w, name, (uint32_t)ir_dtype_info(dt)->ggml_id, ne1 ? 2 : 1,
				    ne, data, nbytes, sy->e);
}

/* ---- tensors -------------------------------------------------------------------------- */

/* A norm weight (or projection scale): uniform in [lo, hi], F32. */
static void gen_f32(Synth *sy, const char *name, int64_t n, float lo, float hi)
{
	float *p = keep(sy, (size_t)n * sizeof(float));
	if (!p)
		return;
	Rng r = rng_for(sy->s->seed, name);
	for (int64_t i = 0; i < n; i++)
		p[i] = lo + (hi - lo) * (float)rng_unit(&r);
	add_tensor(sy, name, IR_DT_F32, n, 0, p, (uint64_t)n * sizeof(float));
}

/* Ternary weights W = t * scale, t uniform in {-1, 0, +1}, scale in [0.5, 1.5] / sqrt(k)
 * so that a projection of a unit-RMS input stays near unit RMS. The values depend only
 * on (seed, name): the same model in I2_S, TQ1_0 and TQ2_0 has the same ternary weights.
 * The scale has 8 significant bits, so F32, F16 and BF16 hold it exactly: those files
 * ternarize (bnm_load) to the I2_S file's bytes. */
static void gen_ternary(Synth *sy, const char *name, int64_t k, int64_t rows)
{
	IrDtype dt = sy->s->wtype;
	uint64_t n = (uint64_t)k * (uint64_t)rows, nbytes = 0;
	float *src = scratch(sy, (size_t)n);
	if (!src)
		return;
	if (!ir_dtype_nbytes(dt, n, (uint64_t)k, &nbytes)) {
		sy->rc = bn_err(sy->e, BN_EINVAL,
				"%s: %s: rows of %" PRId64 " do not fit the %s block of %d",
				sy->path, name, k, ir_dtype_name(dt), ir_dtype_info(dt)->block);
		return;
	}
	Rng r = rng_for(sy->s->seed, name);
	float scale = (float)((0.5 + rng_unit(&r)) / sqrt((double)k));
	scale = bn_bf16_to_f32(bn_f32_to_bf16(scale)); /* >= 2^-10 for any k allowed: normal in f16 */
	const float vals[3] = { -scale, 0.0f, scale };
	for (uint64_t i = 0; i < n; i += 2) {
		/* two trits per draw: 32 bits each, reduced by multiply-high */
		uint64_t x = rng_next(&r);
		src[i] = vals[((x & 0xffffffffu) * 3) >> 32];
		if (i + 1 < n)
			src[i + 1] = vals[((x >> 32) * 3) >> 32];
	}
	src[0] = scale; /* the I2_S scale is max|W|: make sure it is this tensor's scale */
	void *dst = keep(sy, (size_t)nbytes);
	if (!dst)
		return;
	ir_quant(dt, src, dst, (int64_t)n);
	add_tensor(sy, name, dt, k, rows, dst, nbytes);
}

/* token_embd (or an untied output.weight): roughly normal, std 0.05 (like the golden
 * models), quantized a slab of rows at a time so that a 128k vocabulary never needs the
 * whole table in f32. */
static void gen_embd(Synth *sy, const char *name)
{
	const BnmSynthSpec *s = sy->s;
	IrDtype dt = s->embd_type;
	uint64_t n = (uint64_t)s->n_embd * (uint64_t)s->n_vocab, nbytes = 0, row_bytes = 0;
	if (!ir_dtype_nbytes(dt, n, (uint64_t)s->n_embd, &nbytes) ||
	    !ir_dtype_nbytes(dt, (uint64_t)s->n_embd, (uint64_t)s->n_embd, &row_bytes)) {
		sy->rc = bn_err(sy->e, BN_EINVAL,
				"%s: %s: n_embd %" PRId64 " does not fit the %s block of %d",
				sy->path, name, s->n_embd, ir_dtype_name(dt),
				ir_dtype_info(dt)->block);
		return;
	}
	int64_t slab = 1 + (1 << 20) / s->n_embd; /* rows per slab, ~4 MiB of floats */
	uint8_t *dst = keep(sy, (size_t)nbytes);
	float *src = scratch(sy, (size_t)(slab * s->n_embd));
	if (!dst || !src)
		return;
	Rng r = rng_for(s->seed, name);
	for (int64_t row = 0; row < s->n_vocab; row += slab) {
		int64_t nr = row + slab <= s->n_vocab ? slab : s->n_vocab - row;
		for (int64_t i = 0; i < nr * s->n_embd; i++)
			src[i] = 0.05f * rng_normalish(&r);
		ir_quant(dt, src, dst + (uint64_t)row * row_bytes, nr * s->n_embd);
	}
	add_tensor(sy, name, dt, s->n_embd, s->n_vocab, dst, nbytes);
}

static void gen_proj(Synth *sy, int layer, const char *proj, int64_t k, int64_t rows)
{
	char name[96];
	snprintf(name, sizeof name, "blk.%d.%s.weight", layer, proj);
	gen_ternary(sy, name, k, rows);
	if (sy->s->proj_scales) {
		snprintf(name, sizeof name, "blk.%d.%s.scale", layer, proj);
		gen_f32(sy, name, 1, 0.5f, 1.5f);
	}
	if (sy->s->proj_bias) {
		snprintf(name, sizeof name, "blk.%d.%s.bias", layer, proj);
		gen_f32(sy, name, rows, -0.25f, 0.25f);
	}
}

/* rope_freqs.weight, as Llama 3.1's converter writes it: per rotary pair i the factor that
 * divides theta_i, 1 for short wavelengths, 8 for long ones and a smooth step between
 * (scaling factor 8, low/high frequency factors 1 and 4, an original context of 8192). */
static void gen_rope_freqs(Synth *sy)
{
	const BnmSynthSpec *s = sy->s;
	int64_t hd = s->n_embd / s->n_head, n = hd / 2;
	float *p = keep(sy, (size_t)n * sizeof(float));
	if (!p)
		return;
	const double factor = 8, lo = 1, hi = 4, old_ctx = 8192;
	const double lo_wl = old_ctx / lo, hi_wl = old_ctx / hi, pi = 3.14159265358979323846;
	for (int64_t i = 0; i < n; i++) {
		double freq = pow((double)s->rope_base, -2.0 * (double)i / (double)hd);
		double wl = 2 * pi / freq, f;
		if (wl < hi_wl)
			f = 1;
		else if (wl > lo_wl)
			f = factor;
		else {
			double smooth = (old_ctx / wl - lo) / (hi - lo);
			f = 1 / ((1 - smooth) / factor + smooth);
		}
		p[i] = (float)f;
	}
	add_tensor(sy, "rope_freqs.weight", IR_DT_F32, n, 0, p, (uint64_t)n * sizeof(float));
}

static void gen_norm(Synth *sy, int layer, const char *what, int64_t n)
{
	char name[96];
	snprintf(name, sizeof name, "blk.%d.%s.weight", layer, what);
	gen_f32(sy, name, n, 0.8f, 1.2f);
}

/* In the golden files' order. */
static void gen_tensors(Synth *sy)
{
	const BnmSynthSpec *s = sy->s;
	int64_t hd = s->n_embd / s->n_head, kv = hd * s->n_head_kv;
	gen_embd(sy, "token_embd.weight");
	if (s->rope_freqs)
		gen_rope_freqs(sy);
	for (int L = 0; L < s->n_layer && !sy->rc; L++) {
		gen_norm(sy, L, "attn_norm", s->n_embd);
		gen_proj(sy, L, "attn_q", s->n_embd, s->n_embd);
		gen_proj(sy, L, "attn_k", s->n_embd, kv);
		gen_proj(sy, L, "attn_v", s->n_embd, kv);
		gen_proj(sy, L, "attn_output", s->n_embd, s->n_embd);
		if (sy->arch->sub_norms)
			gen_norm(sy, L, "attn_sub_norm", s->n_embd);
		gen_norm(sy, L, "ffn_norm", s->n_embd);
		gen_proj(sy, L, "ffn_gate", s->n_embd, s->n_ff);
		gen_proj(sy, L, "ffn_up", s->n_embd, s->n_ff);
		gen_proj(sy, L, "ffn_down", s->n_ff, s->n_embd);
		if (sy->arch->sub_norms)
			gen_norm(sy, L, "ffn_sub_norm", s->n_ff);
	}
	gen_f32(sy, "output_norm.weight", s->n_embd, 0.8f, 1.2f);
	if (s->untied_head)
		gen_embd(sy, "output.weight");
}

/* ---- vocabularies ----------------------------------------------------------------------- */

/* The BitNet 2B-4T chat template (tests/data/tokenizer/chat_template_bitnet_hf.jinja). */
static const char chat_template_bitnet[] =
	"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
	"message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}"
	"{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

typedef struct {
	char **tokens; /* n_vocab */
	int32_t *types; /* n_vocab */
	char **merges;
	uint64_t n_merges;
	uint32_t bos, eos;
	bool llama3;
	bool spm;      /* SentencePiece ("llama"): scores, byte tokens, U+2581 for spaces */
	float *scores; /* spm only */
	char *pool[3]; /* backing store of the strings */
} Vocab;

static void vocab_free(Vocab *v)
{
	free(v->tokens);
	free(v->types);
	free(v->merges);
	free(v->scores);
	for (int i = 0; i < 3; i++)
		free(v->pool[i]);
}

static int utf8_put(char *p, unsigned cp)
{
	if (cp < 0x80) {
		p[0] = (char)cp;
		return 1;
	}
	p[0] = (char)(0xC0 | (cp >> 6));
	p[1] = (char)(0x80 | (cp & 0x3F));
	return 2; /* byte-to-unicode code points stay below U+0800 */
}

/* GPT-2's byte-to-unicode map: printable bytes stand for themselves, the others get
 * the code points from U+0100 up, in byte order. */
static unsigned byte_cp(int b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
		return (unsigned)b;
	unsigned k = 0;
	for (int i = 0; i < b; i++)
		k += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255));
	return 256 + k;
}

/* String set for unique merge results: open addressing over token indices. */
typedef struct {
	int32_t *slot;
	uint64_t mask;
} StrSet;

static bool strset_add(StrSet *st, char **tokens, const char *s, int32_t id)
{
	uint64_t i = bnm_fnv1a(BNM_FNV_BASIS, s) & st->mask;
	for (; st->slot[i] >= 0; i = (i + 1) & st->mask)
		if (strcmp(tokens[st->slot[i]], s) == 0)
			return false;
	st->slot[i] = id;
	return true;
}

enum { TOK_MAX = 48, SYN_SPECIAL = 16, SYN_MAX_CHARS = 12 };

/* One side of merge m: a letter (or, on the left, the space 'Ġ'), or an earlier merge,
 * favouring early (short) ones; letter pairs first. NULL: try again. */
static const char *merge_piece(const Vocab *v, Rng *r, int64_t m, bool left, char buf[4])
{
	double p_merge = 0.6 * (double)m / (double)(m + 8);
	if (rng_unit(r) >= p_merge) {
		uint64_t c = rng_below(r, left ? 27 : 26);
		memset(buf, 0, 4);
		if (c == 26)
			utf8_put(buf, 0x120);
		else
			buf[0] = (char)('a' + c);
		return buf;
	}
	double x = rng_unit(r);
	const char *t = v->tokens[256 + (int64_t)(x * x * (double)m)];
	return !left && (unsigned char)t[0] == 0xC4 ? NULL : t; /* 'Ġ' only starts a token */
}

/* Merge tokens like the golden models': lower-case letters, some with a leading 'Ġ',
 * each the concatenation of two earlier tokens, with a merge "LEFT RIGHT". */
static int synth_merges(Vocab *v, uint64_t seed, int64_t n_merge, BnErr *e)
{
	StrSet st = { 0 };
	uint64_t cap = 64;
	while (cap < 2 * (uint64_t)(n_merge + 1))
		cap *= 2;
	st.slot = malloc(cap * sizeof *st.slot);
	if (!st.slot)
		return bn_err(e, BN_ENOMEM, "synthetic vocabulary: out of memory");
	memset(st.slot, 0xff, cap * sizeof *st.slot);
	st.mask = cap - 1;
	Rng r = rng_for(seed, "tokenizer.ggml.merges");
	int rc = 0;
	for (int64_t m = 0; m < n_merge && !rc; m++) {
		char *tok = v->tokens[256 + m], la[4], lb[4];
		for (int tries = 0;; tries++) {
			if (tries > 100000) { /* never seen: the space of strings is huge */
				rc = bn_err(e, BN_EINVAL,
					    "synthetic vocabulary: no new merge %" PRId64, m);
				break;
			}
			const char *a = merge_piece(v, &r, m, true, la);
			const char *b = merge_piece(v, &r, m, false, lb);
			if (!b || strlen(a) + strlen(b) > SYN_MAX_CHARS)
				continue;
			snprintf(tok, TOK_MAX, "%s%s", a, b);
			if (strset_add(&st, v->tokens, tok, (int32_t)(256 + m))) {
				snprintf(v->merges[m], 2 * TOK_MAX, "%s %s", a, b);
				break;
			}
		}
	}
	free(st.slot);
	return rc;
}

/* Bytes 0..255, merges, BOS, EOS, then reserved control tokens (the golden layout). */
static int synth_vocab(Vocab *v, const BnmSynthSpec *s, BnErr *e)
{
	int64_t n = s->n_vocab, n_merge = n - 256 - SYN_SPECIAL;
	if (n_merge < 0)
		return bn_err(e, BN_EINVAL,
			      "synthetic vocabulary: n_vocab %" PRId64
			      " is too small (at least %d: "
			      "256 byte tokens and %d special tokens)",
			      n, 256 + SYN_SPECIAL, SYN_SPECIAL);
	v->tokens = calloc((size_t)n, sizeof *v->tokens);
	v->types = calloc((size_t)n, sizeof *v->types);
	v->merges = calloc((size_t)n_merge + 1, sizeof *v->merges);
	v->pool[0] = calloc((size_t)n, TOK_MAX);
	v->pool[1] = calloc((size_t)n_merge + 1, 2 * TOK_MAX);
	if (!v->tokens || !v->types || !v->merges || !v->pool[0] || !v->pool[1])
		return bn_err(e, BN_ENOMEM, "synthetic vocabulary: out of memory");
	for (int64_t i = 0; i < n; i++) {
		v->tokens[i] = v->pool[0] + i * TOK_MAX;
		v->types[i] = 1;
	}
	for (int64_t i = 0; i < n_merge; i++)
		v->merges[i] = v->pool[1] + i * 2 * TOK_MAX;
	v->n_merges = (uint64_t)n_merge;
	for (int b = 0; b < 256; b++)
		utf8_put(v->tokens[b], byte_cp(b));
	int rc = synth_merges(v, s->seed, n_merge, e);
	if (rc)
		return rc;
	v->bos = (uint32_t)(256 + n_merge);
	v->eos = v->bos + 1;
	snprintf(v->tokens[v->bos], TOK_MAX, "<|begin_of_text|>");
	snprintf(v->tokens[v->eos], TOK_MAX, "<|end_of_text|>");
	for (int64_t i = v->bos; i < n; i++) {
		v->types[i] = 3;
		if (i > v->eos)
			snprintf(v->tokens[i], TOK_MAX, "<|reserved_special_token_%d|>",
				 (int)(i - v->eos - 1));
	}
	return 0;
}

/* path into a malloc'd NUL-terminated buffer whose lines are split into *lines. */
static int read_lines(const char *path, char **buf, char ***lines, uint64_t *n, BnErr *e)
{
	FILE *fp = fopen(path, "rb");
	long size = -1;
	if (!fp || fseek(fp, 0, SEEK_END) || (size = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET)) {
		if (fp)
			fclose(fp);
		return bn_err(e, BN_EIO, "%s: cannot read", path);
	}
	*buf = malloc((size_t)size + 1);
	if (!*buf || fread(*buf, 1, (size_t)size, fp) != (size_t)size) {
		fclose(fp);
		return bn_err(e, *buf ? BN_EIO : BN_ENOMEM, "%s: cannot read", path);
	}
	fclose(fp);
	char *p = *buf, *end = *buf + size;
	*end = 0;
	uint64_t count = 0;
	for (char *q = p; q < end; q++)
		count += *q == '\n';
	count += size > 0 && end[-1] != '\n';
	*lines = malloc((count + 1) * sizeof **lines);
	if (!*lines)
		return bn_err(e, BN_ENOMEM, "%s: out of memory", path);
	*n = 0;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *stop = nl ? nl : end;
		if (stop > p && stop[-1] == '\r')
			stop[-1] = 0;
		*stop = 0;
		(*lines)[(*n)++] = p;
		p = stop + 1;
	}
	return 0;
}

/* The tokens a vocabulary directory holds: tokens.txt's lines and special.tsv's. */
int bnm_synth_vocab_size(const char *dir, int64_t *n, BnErr *e)
{
	static const char *const files[] = {"tokens.txt", "special.tsv"};
	*n = 0;
	for (int f = 0; f < 2; f++) {
		char path[1024], *buf = NULL, **lines = NULL;
		uint64_t count = 0;
		snprintf(path, sizeof path, "%s/%s", dir, files[f]);
		int rc = read_lines(path, &buf, &lines, &count, e);
		free(buf);
		free(lines);
		if (rc)
			return rc;
		*n += (int64_t)count;
	}
	return BN_OK;
}

/* tokens.txt, then special.tsv's names; merges.txt. */
static int llama3_vocab(Vocab *v, const BnmSynthSpec *s, BnErr *e)
{
	char path[1024];
	char **tok = NULL, **spec = NULL;
	uint64_t n_tok = 0, n_spec = 0;
	int rc;
	v->llama3 = true;
	snprintf(path, sizeof path, "%s/tokens.txt", s->vocab_dir);
	if ((rc = read_lines(path, &v->pool[0], &tok, &n_tok, e)))
		goto out;
	snprintf(path, sizeof path, "%s/merges.txt", s->vocab_dir);
	if ((rc = read_lines(path, &v->pool[1], &v->merges, &v->n_merges, e)))
		goto out;
	for (uint64_t i = 0; i < v->n_merges; i++)
		if (!strchr(v->merges[i], ' ')) {
			rc = bn_err(e, BN_EFORMAT, "%s:%" PRIu64 ": expected 'LEFT RIGHT'", path,
				    i + 1);
			goto out;
		}
	snprintf(path, sizeof path, "%s/special.tsv", s->vocab_dir);
	if ((rc = read_lines(path, &v->pool[2], &spec, &n_spec, e)))
		goto out;
	if ((uint64_t)s->n_vocab != n_tok + n_spec || n_spec < 2) { /* BOS, EOS at least */
		rc = bn_err(e, BN_EINVAL,
			    "%s: the vocabulary has %" PRIu64 " tokens (%" PRIu64 " + %" PRIu64
			    " special), but n_vocab is %" PRId64,
			    s->vocab_dir, n_tok + n_spec, n_tok, n_spec, s->n_vocab);
		goto out;
	}
	v->tokens = malloc((size_t)s->n_vocab * sizeof *v->tokens);
	v->types = malloc((size_t)s->n_vocab * sizeof *v->types);
	if (!v->tokens || !v->types) {
		rc = bn_err(e, BN_ENOMEM, "%s: out of memory", s->vocab_dir);
		goto out;
	}
	for (uint64_t i = 0; i < n_tok; i++) {
		v->tokens[i] = tok[i];
		v->types[i] = 1;
	}
	for (uint64_t i = 0; i < n_spec && !rc; i++) {
		char *tab = strchr(spec[i], '\t');
		if (!tab || strtoull(spec[i], NULL, 10) != n_tok + i)
			rc = bn_err(e, BN_EFORMAT,
				    "%s:%" PRIu64 ": expected '%" PRIu64 "<TAB>NAME'", path, i + 1,
				    n_tok + i);
		else
			v->tokens[n_tok + i] = tab + 1;
		v->types[n_tok + i] = 3;
	}
	v->bos = (uint32_t)n_tok; /* <|begin_of_text|>, <|end_of_text|> */
	v->eos = (uint32_t)n_tok + 1;
out:
	free(tok);
	free(spec);
	return rc;
}

/* A SentencePiece vocabulary of the 1bitLLM kind ("llama" in GGUF), small and fixed:
 * <unk> <s> </s>, the 256 byte tokens <0xNN>, U+2581, letters with and without a leading
 * U+2581, a few English pieces that merge into words (each reachable by pairwise merges,
 * scored so longer pieces win), then unused pieces up to n_vocab. */
static int spm_vocab(Vocab *v, const BnmSynthSpec *s, BnErr *e)
{
	static const char *const words[] = {
		"he", "el", "ll", "lo", "or", "rl", "ld", "th", "in", "at", "er", "an", "on",
		"hel", "llo", "hello", "wor", "world", "the", "cat",
		"\xe2\x96\x81h", "\xe2\x96\x81he", "\xe2\x96\x81hel", "\xe2\x96\x81hello",
		"\xe2\x96\x81w", "\xe2\x96\x81wor", "\xe2\x96\x81world", "\xe2\x96\x81the",
		"\342\226\201cat", /* octal: a hex escape would swallow the "ca" */
	};
	enum { N_WORDS = sizeof words / sizeof words[0] };
	int64_t n = s->n_vocab, fixed = 3 + 256 + 1 + 26 + 26 + N_WORDS;
	if (n < fixed)
		return bn_err(e, BN_EINVAL, "SentencePiece vocabulary: n_vocab %" PRId64
			      " is too small (at least %" PRId64 ")", n, fixed);
	v->spm = true;
	v->tokens = calloc((size_t)n, sizeof *v->tokens);
	v->types = calloc((size_t)n, sizeof *v->types);
	v->scores = calloc((size_t)n, sizeof *v->scores);
	v->pool[0] = calloc((size_t)n, TOK_MAX);
	if (!v->tokens || !v->types || !v->scores || !v->pool[0])
		return bn_err(e, BN_ENOMEM, "SentencePiece vocabulary: out of memory");
	int64_t i = 0;
	for (int64_t k = 0; k < n; k++)
		v->tokens[k] = v->pool[0] + k * TOK_MAX;
	snprintf(v->tokens[i], TOK_MAX, "<unk>");
	v->types[i++] = 2;
	snprintf(v->tokens[i], TOK_MAX, "<s>");
	v->types[i++] = 3;
	snprintf(v->tokens[i], TOK_MAX, "</s>");
	v->types[i++] = 3;
	for (int b = 0; b < 256; b++) {
		snprintf(v->tokens[i], TOK_MAX, "<0x%02X>", b);
		v->types[i++] = 6;
	}
	int64_t first_piece = i;
	snprintf(v->tokens[i++], TOK_MAX, "\xe2\x96\x81");
	for (int c = 0; c < 26; c++)
		snprintf(v->tokens[i++], TOK_MAX, "%c", 'a' + c);
	for (int c = 0; c < 26; c++)
		snprintf(v->tokens[i++], TOK_MAX, "\xe2\x96\x81%c", 'a' + c);
	for (int w = 0; w < N_WORDS; w++)
		snprintf(v->tokens[i++], TOK_MAX, "%s", words[w]);
	for (int64_t k = first_piece; k < i; k++) {
		v->types[k] = 1;
		v->scores[k] = (float)strlen(v->tokens[k]) - 0.001f * (float)(k - first_piece);
	}
	for (; i < n; i++) {
		snprintf(v->tokens[i], TOK_MAX, "<unused%" PRId64 ">", i);
		v->types[i] = 5;
		v->scores[i] = -1e9f;
	}
	v->bos = 1;
	v->eos = 2;
	return 0;
}

static int vocab_load(Vocab *v, const BnmSynthSpec *s, BnErr *e)
{
	memset(v, 0, sizeof *v);
	if (s->spm_vocab)
		return spm_vocab(v, s, e);
	return s->vocab_dir ? llama3_vocab(v, s, e) : synth_vocab(v, s, e);
}

/* ---- metadata ------------------------------------------------------------------------- */

static uint32_t file_type(IrDtype wt)
{
	switch (wt) {
	case IR_DT_I2_S:
		return 40; /* what bitnet.cpp writes */
	case IR_DT_TQ1_0:
		return 36; /* llama.cpp's MOSTLY_TQ1_0 */
	case IR_DT_TQ2_0:
		return 37;
	case IR_DT_F32:
		return 0; /* ALL_F32 */
	case IR_DT_BF16:
		return 32; /* MOSTLY_BF16 */
	default:
		return 1; /* MOSTLY_F16 */
	}
}

static void put_arch_u32(GgufWriter *w, const char *arch, const char *suffix, int64_t v)
{
	char key[128];
	snprintf(key, sizeof key, "%s.%s", arch, suffix);
	gguf_writer_u32(w, key, (uint32_t)v);
}

static void put_arch_f32(GgufWriter *w, const char *arch, const char *suffix, float v)
{
	char key[128];
	snprintf(key, sizeof key, "%s.%s", arch, suffix);
	gguf_writer_f32(w, key, v);
}

static void put_meta(GgufWriter *w, const BnmSynthSpec *s, const char *arch)
{
	char name[128];
	const char *shape = shape_name(s);
	char dims[64];
	snprintf(dims, sizeof dims, "l%" PRId64 "-e%" PRId64 "-v%" PRId64, s->n_layer, s->n_embd,
		 s->n_vocab);
	snprintf(name, sizeof name, "synthetic-%s-%s-seed%" PRIu64, shape ? shape : dims,
		 ir_dtype_name(s->wtype), s->seed);
	gguf_writer_str(w, "general.architecture", arch);
	gguf_writer_str(w, "general.name", name);
	gguf_writer_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT);
	gguf_writer_u32(w, "general.file_type", file_type(s->wtype));
	put_arch_u32(w, arch, "vocab_size", s->n_vocab);
	put_arch_u32(w, arch, "context_length", s->n_ctx);
	put_arch_u32(w, arch, "embedding_length", s->n_embd);
	put_arch_u32(w, arch, "block_count", s->n_layer);
	put_arch_u32(w, arch, "feed_forward_length", s->n_ff);
	put_arch_u32(w, arch, "attention.head_count", s->n_head);
	put_arch_u32(w, arch, "attention.head_count_kv", s->n_head_kv);
	put_arch_f32(w, arch, "rope.freq_base", s->rope_base);
	put_arch_f32(w, arch, "attention.layer_norm_rms_epsilon", s->eps);
	put_arch_u32(w, arch, "rope.dimension_count", s->n_embd / s->n_head);
}

static void put_vocab(GgufWriter *w, const Vocab *v, int64_t n_vocab, const char *pre)
{
	if (v->spm) {
		gguf_writer_str(w, "tokenizer.ggml.model", "llama");
		gguf_writer_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens,
				    (uint64_t)n_vocab);
		gguf_writer_arr(w, "tokenizer.ggml.scores", GGUF_T_F32, v->scores, (uint64_t)n_vocab);
		gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_T_I32, v->types,
				(uint64_t)n_vocab);
		gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", v->bos);
		gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", v->eos);
		gguf_writer_u32(w, "tokenizer.ggml.unknown_token_id", 0);
		gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", true);
		gguf_writer_u32(w, "general.quantization_version", 2);
		return;
	}
	gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
	/* the official 2B-4T file has no pre key: readers take Llama 3's pre-tokenizer */
	if (pre)
		gguf_writer_str(w, "tokenizer.ggml.pre", pre);
	else if (!v->llama3)
		gguf_writer_str(w, "tokenizer.ggml.pre", "llama-bpe");
	gguf_writer_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens,
			    (uint64_t)n_vocab);
	gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_T_I32, v->types, (uint64_t)n_vocab);
	gguf_writer_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges,
			    v->n_merges);
	gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", v->bos);
	gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", v->eos);
	if (!pre)
		gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", true);
	if (v->llama3 && !pre)
		gguf_writer_str(w, "tokenizer.chat_template", chat_template_bitnet);
	gguf_writer_u32(w, "general.quantization_version", 2);
}

/* ---- the spec ------------------------------------------------------------------------- */

/* A ternary format, or a float type holding the ternary values unquantized. */
static bool is_weight_type(IrDtype dt)
{
	return dt == IR_DT_I2_S || dt == IR_DT_TQ1_0 || dt == IR_DT_TQ2_0 || dt == IR_DT_F16 ||
		dt == IR_DT_BF16 || dt == IR_DT_F32;
}

static bool is_embd_type(IrDtype dt)
{
	return dt == IR_DT_F32 || dt == IR_DT_F16 || dt == IR_DT_BF16 || dt == IR_DT_Q8_0 ||
		dt == IR_DT_Q6_K;
}

/* Float projections are written only for archs that ternarize them at load. */
static bool is_float_wtype_ok(const BnmSynthSpec *s, const BnmArch *arch)
{
	return arch->float_proj ||
	       !(s->wtype == IR_DT_F32 || s->wtype == IR_DT_F16 || s->wtype == IR_DT_BF16);
}

/* What the generator needs to produce a file; the loader's own checks (e.g. row
 * blocks) are left to the quantizer's and writer's errors. */
static int check_spec(const BnmSynthSpec *s, const BnmArch **arch, BnErr *e)
{
	const char *an = s->arch ? s->arch : "bitnet-b1.58";
	*arch = bnm_arch_find(an, strlen(an));
	if (!*arch)
		return bn_err(e, BN_EINVAL, "synthetic model: unknown arch '%s'", an);
	const struct {
		const char *what;
		int64_t v, max;
	} sizes[] = {
		{ "n_layer", s->n_layer, 4096 },        { "n_embd", s->n_embd, 1 << 16 },
		{ "n_ff", s->n_ff, 1 << 18 },           { "n_head", s->n_head, 1 << 12 },
		{ "n_head_kv", s->n_head_kv, 1 << 12 }, { "n_vocab", s->n_vocab, 1 << 22 },
		{ "n_ctx", s->n_ctx, 1 << 24 },
	};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		if (sizes[i].v < 1 || sizes[i].v > sizes[i].max)
			return bn_err(e, BN_EINVAL,
				      "synthetic model: %s = %" PRId64 ", expected 1..%" PRId64,
				      sizes[i].what, sizes[i].v, sizes[i].max);
	if (s->n_embd % s->n_head || s->n_head % s->n_head_kv)
		return bn_err(e, BN_EINVAL,
			      "synthetic model: n_embd %" PRId64 ", n_head %" PRId64
			      ", n_head_kv %" PRId64
			      ": need n_embd %% n_head == 0 and n_head %% n_head_kv == 0",
			      s->n_embd, s->n_head, s->n_head_kv);
	if (!is_weight_type(s->wtype) || !is_embd_type(s->embd_type))
		return bn_err(e, BN_EINVAL,
			      "synthetic model: wtype %s / embd_type %s: expected i2_s, tq1_0, "
			      "tq2_0, f16, bf16 or f32 / f32, f16, bf16, q8_0 or q6_k",
			      ir_dtype_name(s->wtype), ir_dtype_name(s->embd_type));
	if (s->proj_scales && !(*arch)->proj_scales)
		return bn_err(e, BN_EINVAL,
			      "synthetic model: proj_scales: arch %s has no projection scales",
			      (*arch)->name);
	if (s->proj_bias && !(*arch)->proj_bias)
		return bn_err(e, BN_EINVAL, "synthetic model: proj_bias: arch %s has no projection "
			      "biases", (*arch)->name);
	if (s->rope_freqs && !(*arch)->rope_freqs)
		return bn_err(e, BN_EINVAL, "synthetic model: rope_freqs: arch %s reads no "
			      "rope_freqs.weight", (*arch)->name);
	if (s->untied_head && (*arch)->head != BNM_HEAD_OUTPUT)
		return bn_err(e, BN_EINVAL,
			      "synthetic model: untied_head: arch %s always uses token_embd as its "
			      "head",
			      (*arch)->name);
	if (s->pre && s->spm_vocab)
		return bn_err(e, BN_EINVAL, "synthetic model: pre '%s': a SentencePiece vocabulary "
			      "has no pre-tokenizer", s->pre);
	if (!is_float_wtype_ok(s, *arch))
		return bn_err(e, BN_EINVAL,
			      "synthetic model: wtype %s: arch %s reads only ternary projections "
			      "(i2_s, tq1_0, tq2_0)",
			      ir_dtype_name(s->wtype), (*arch)->name);
	if (!(s->eps >= 0) || !isfinite(s->eps) || !(s->rope_base > 0) || !isfinite(s->rope_base))
		return bn_err(e, BN_EINVAL, "synthetic model: eps %g / rope_base %g out of range",
			      s->eps, s->rope_base);
	return 0;
}

int bnm_synth_write(const BnmSynthSpec *s, const char *path, BnErr *e)
{
	const BnmArch *arch;
	int rc = check_spec(s, &arch, e);
	if (rc) {
		bn_err_prefix(e, "%s", path);
		return rc;
	}
	Vocab v;
	if ((rc = vocab_load(&v, s, e))) {
		vocab_free(&v);
		bn_err_prefix(e, "%s", path);
		return rc;
	}
	Synth sy = { .s = s, .arch = arch, .path = path, .e = e };
	sy.w = gguf_writer_new();
	if (!sy.w) {
		sy.rc = bn_err(e, BN_ENOMEM, "%s: out of memory", path);
	} else {
		put_meta(sy.w, s, arch->name);
		put_vocab(sy.w, &v, s->n_vocab, s->pre);
		vocab_free(&v); /* the writer copied the metadata */
		memset(&v, 0, sizeof v);
		gen_tensors(&sy);
		if (!sy.rc)
			sy.rc = gguf_writer_write(sy.w, path, e);
	}
	vocab_free(&v);
	gguf_writer_free(sy.w);
	for (size_t i = 0; i < sy.n_bufs; i++)
		free(sy.bufs[i]);
	free(sy.bufs);
	free(sy.tmp);
	return sy.rc;
}
