/* test_tok_spm.c - the SentencePiece-style tokenizer on a vocabulary built here, with the
 * expected ids worked out by hand from the algorithm (merge the best-scoring pair). */
#include "testutil.h"
#include "rt_tok.h"

#include <stdlib.h>
#include <string.h>

/* Ids: 0 <unk>, 1 <s>, 2 </s>, 3 + b for the byte token <0xb>, then the pieces below
 * (U+2581 "▁" is a space). Scores are what the merge order follows: higher first. */
enum { UNK, BOS, EOS, BYTE0 = 3, P0 = BYTE0 + 256 };
static const struct {
	const char *text;
	float score;
} pieces[] = {
	{"\xe2\x96\x81", -5},      /* P0+0  ▁ */
	{"h", -6},                 /* P0+1 */
	{"e", -6},                 /* P0+2 */
	{"l", -6},                 /* P0+3 */
	{"o", -6},                 /* P0+4 */
	{"\xe2\x96\x81h", -3},     /* P0+5  ▁h */
	{"he", -2.5f},             /* P0+6 */
	{"el", -4},                /* P0+7 */
	{"ll", -2},                /* P0+8 */
	{"lo", -3.5f},             /* P0+9 */
	{"llo", -1.5f},            /* P0+10 */
	{"\xe2\x96\x81hel", -1},   /* P0+11 ▁hel: never reached from "hello" (see below) */
	{"w", -6},                 /* P0+12 */
	{"\xe2\x96\x81w", -2},     /* P0+13 ▁w */
};
enum { SP, H, E, Lp, O, SP_H, HE, EL, LL, LO, LLO, SP_HEL, W, SP_W };
#define NP ((int)(sizeof pieces / sizeof *pieces))
#define NT (P0 + NP)

static char bytes_text[256][8];
static const char *toks[NT];
static uint32_t lens[NT];
static int32_t types[NT];
static float scores[NT];
static RtTok *T;
static void *blob;

static int setup(void **state)
{
	(void)state;
	toks[UNK] = "<unk>", types[UNK] = RT_TT_UNKNOWN;
	toks[BOS] = "<s>", types[BOS] = RT_TT_CONTROL;
	toks[EOS] = "</s>", types[EOS] = RT_TT_CONTROL;
	for (int b = 0; b < 256; b++) {
		snprintf(bytes_text[b], sizeof bytes_text[b], "<0x%02X>", b);
		toks[BYTE0 + b] = bytes_text[b];
		types[BYTE0 + b] = RT_TT_BYTE;
	}
	for (int i = 0; i < NP; i++) {
		toks[P0 + i] = pieces[i].text;
		types[P0 + i] = RT_TT_NORMAL;
		scores[P0 + i] = pieces[i].score;
	}
	for (int i = 0; i < NT; i++)
		lens[i] = (uint32_t)strlen(toks[i]);
	RtTokSpec s = {.kind = RT_TOK_SPM, .n_tokens = NT, .tokens = toks, .token_len = lens,
		       .types = types, .scores = scores, .bos = BOS, .eos = EOS, .unk = UNK,
		       .add_bos = true};
	size_t size;
	RtErr e = {0};
	if (rt_tok_build(&s, &blob, &size, &e))
		fail_msg("build: %s", e.msg);
	T = rt_tok_open(blob, size, &e);
	if (!T)
		fail_msg("open: %s", e.msg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rt_tok_free(T);
	free(blob);
	return 0;
}

/* Encodes s and compares with the n expected ids (given as P0-relative or absolute). */
static void expect(const char *s, int flags, const int32_t *want, int n)
{
	int32_t *ids;
	int k;
	RtErr e = {0};
	assert_int_equal(rt_tok_encode(T, s, strlen(s), flags, &ids, &k, &e), 0);
	if (k != n || (n && memcmp(ids, want, (size_t)n * sizeof *ids))) {
		printf("\"%s\": got", s);
		for (int i = 0; i < k; i++)
			printf(" %d", ids[i]);
		printf("\n");
		fail_msg("\"%s\" encodes wrong", s);
	}
	free(ids);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__})
#define N(...) ((int)(sizeof(IDS(__VA_ARGS__)) / sizeof(int32_t)))
#define EXPECT(s, flags, ...) expect(s, flags, IDS(__VA_ARGS__), N(__VA_ARGS__))

static void test_merge_order(void **state)
{
	(void)state;
	/* " hello" = ▁ h e l l o. Pairs: ▁h -3, he -2.5, el -4, ll -2, lo -3.5.
	 * ll (-2) first: ▁ h e [ll] o; new pairs e+ll (no piece), ll+o = llo -1.5.
	 * llo (-1.5): ▁ h e [llo]; e+llo no piece.
	 * he (-2.5): ▁ [he] [llo]; ▁+he and he+llo are no pieces; ▁h is stale.
	 * So ▁hel (-1, the best score of all) never forms: merging is by pairs. */
	EXPECT("hello", 0, P0 + SP, P0 + HE, P0 + LLO);
	/* " lll" = ▁ l l l: two equal ll pairs, the leftmost merges: ▁ [ll] l. */
	EXPECT("lll", 0, P0 + SP, P0 + LL, P0 + Lp);
	/* " he llo": ll, then llo, then he as above; the inner space stays a lone ▁. */
	EXPECT("he llo", 0, P0 + SP, P0 + HE, P0 + SP, P0 + LLO);
	/* " w": ▁w (-2) is the only pair. */
	EXPECT("w", 0, P0 + SP_W);
	/* "  w" = ▁ ▁ w: ▁▁ is no piece, ▁w is: ▁ [▁w]. */
	EXPECT(" w", 0, P0 + SP, P0 + SP_W);
}

static void test_byte_fallback(void **state)
{
	(void)state;
	/* " hé" = ▁ h é: ▁h merges; é (C3 A9) is no piece, so its two bytes' tokens. */
	EXPECT("h\xc3\xa9", 0, P0 + SP_H, BYTE0 + 0xc3, BYTE0 + 0xa9);
	/* "x" is not in the vocabulary either: ▁ then <0x78>. */
	EXPECT("x", 0, P0 + SP, BYTE0 + 'x');
	/* An invalid byte is one character of its own, then its byte token. */
	EXPECT("\xff", 0, P0 + SP, BYTE0 + 0xff);
}

static void test_special_and_bos(void **state)
{
	(void)state;
	int32_t *ids;
	int k;
	RtErr e = {0};
	/* Empty text: nothing, not even the space prefix; BOS only when asked. */
	assert_int_equal(rt_tok_encode(T, "", 0, 0, &ids, &k, &e), 0);
	assert_int_equal(k, 0);
	free(ids);
	EXPECT("", RT_TOK_ADD_BOS, BOS);
	EXPECT("w", RT_TOK_ADD_BOS, BOS, P0 + SP_W);
	/* "<s>" as text: " <s>he" = ▁ < s > h e; only he merges, the rest are bytes. */
	EXPECT("<s>he", 0, P0 + SP, BYTE0 + '<', BYTE0 + 's', BYTE0 + '>', P0 + HE);
	/* Parsed: <s>, then " he" (a run after a special token gets the space prefix too, as
	 * llama.cpp does): ▁ h e -> he (-2.5) beats ▁h (-3): ▁ he. */
	EXPECT("<s>he", RT_TOK_PARSE_SPECIAL, BOS, P0 + SP, P0 + HE);
	assert_true(rt_tok_is_eog(T, EOS));
	assert_false(rt_tok_is_eog(T, BOS));
	assert_true(rt_tok_add_bos(T));
}

static void test_decode(void **state)
{
	(void)state;
	char buf[16];
	assert_int_equal(rt_tok_piece(T, P0 + SP_H, false, buf, sizeof buf), 2);
	assert_memory_equal(buf, " h", 2);
	assert_int_equal(rt_tok_piece(T, BYTE0 + 0xc3, false, buf, sizeof buf), 1);
	assert_int_equal((unsigned char)buf[0], 0xc3);
	assert_int_equal(rt_tok_piece(T, BOS, false, buf, sizeof buf), 0);
	assert_int_equal(rt_tok_piece(T, BOS, true, buf, sizeof buf), 3);
	assert_memory_equal(buf, "<s>", 3);
	/* A round trip gives the text back with the prefix space in front. */
	const char *s = "hello w\xc3\xa9 \xf0\x9f\x98\x80";
	int32_t *ids;
	int k;
	RtErr e = {0};
	assert_int_equal(rt_tok_encode(T, s, strlen(s), 0, &ids, &k, &e), 0);
	char out[64];
	size_t o = 0;
	for (int i = 0; i < k; i++)
		o += (size_t)rt_tok_piece(T, ids[i], false, out + o, (int)(sizeof out - o));
	assert_int_equal(o, strlen(s) + 1);
	assert_true(out[0] == ' ');
	assert_memory_equal(out + 1, s, strlen(s));
	free(ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_order),
		cmocka_unit_test(test_byte_fallback),
		cmocka_unit_test(test_special_and_bos),
		cmocka_unit_test(test_decode),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
