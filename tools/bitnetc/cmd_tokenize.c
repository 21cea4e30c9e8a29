/* cmd_tokenize.c - bitnetc tokenize: text encoded with the model's tokenizer as the
 * built program encodes it. */
#include "bitnetc_int.h"
#include "rt_tok.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char usage_tokenize[] =
	"usage: bitnetc tokenize MODEL.gguf TEXT [options]\n"
	"\n"
	"Encodes TEXT with the model's tokenizer, as the built program does, and prints the\n"
	"ids comma-separated (ready for --tokens).\n"
	"\n"
	"  --no-special   text such as <|eot_id|> stays text (default: the special token)\n"
	"  --no-bos       no BOS (default: added when the model says so)\n"
	"  --pieces       one line per token: id, then its bytes as a C string\n"
	"  --tokenizer-pre NAME\n"
	"                 split text as NAME (llama3, falcon3) whatever the file's\n"
	"                 tokenizer.ggml.pre says (default: an unknown pre-tokenizer is\n"
	"                 refused)\n";

/* A token's bytes as a C string literal body. */
static void print_piece(const char *p, int n)
{
	for (int i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\\' || c == '"')
			printf("\\%c", c);
		else if (c == '\n')
			printf("\\n");
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static int tokenize_text(const char *path, const char *text, int flags, bool pieces,
			 const char *pre)
{
	BnErr e = {0};
	RtErr re = {0};
	BnmTok tok = {0};
	RtTok *t = NULL;
	int32_t *ids = NULL;
	int n = 0, rc = 0;
	GgufFile *f = gguf_open(path, &e);
	if (!f)
		return fail_err(path, &e);
	if (bnm_tok_load_pre(f, pre, &tok, &e) != BN_OK) {
		rc = fail_err(path, &e);
	} else if (!tok.blob) {
		rc = fail(EXIT_RUNTIME, "%s: no tokenizer (%s)", path, tok.none_why);
	} else if (!(t = rt_tok_open(tok.blob, tok.size, &re)) ||
		   rt_tok_encode(t, text, strlen(text), rt_tok_add_bos(t) ? flags
				 : flags & ~RT_TOK_ADD_BOS, &ids, &n, &re) != RT_OK) {
		rc = fail(EXIT_RUNTIME, "%s: tokenizer: %s", path, re.msg);
	} else {
		for (int i = 0; i < n; i++) {
			if (!pieces) {
				printf("%s%" PRId32, i ? "," : "", ids[i]);
				continue;
			}
			char buf[256];
			int len = rt_tok_piece(t, ids[i], true, buf, (int)sizeof buf);
			printf("%" PRId32 "\t\"", ids[i]);
			print_piece(buf, len < 0 ? 0 : len > (int)sizeof buf ? (int)sizeof buf : len);
			printf("\"\n");
		}
		if (!pieces)
			putchar('\n');
	}
	free(ids);
	rt_tok_free(t);
	bnm_tok_free(&tok);
	gguf_close(f);
	return finish(rc);
}

int cmd_tokenize(int argc, char **argv)
{
	Args a = {.cmd = "tokenize", .argc = argc, .argv = argv};
	int flags = RT_TOK_PARSE_SPECIAL | RT_TOK_ADD_BOS;
	bool pieces = false;
	const char *pre = NULL;
	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r;
		if (is_help(argv[a.i]))
			return show_usage(usage_tokenize);
		if ((r = opt(&a, NULL, "--tokenizer-pre", &v)) != 0) {
			if (r < 0 || !tokenizer_pre_ok(a.cmd, v))
				return EXIT_USAGE;
			pre = v;
		} else if (flag(&a, NULL, "--no-special"))
			flags &= ~RT_TOK_PARSE_SPECIAL;
		else if (flag(&a, NULL, "--no-bos"))
			flags &= ~RT_TOK_ADD_BOS;
		else if (flag(&a, NULL, "--pieces"))
			pieces = true;
		else if (!positional(&a, 2))
			return EXIT_USAGE;
	}
	if (!need_model(&a))
		return EXIT_USAGE;
	if (a.n_pos < 2)
		return usage_err(a.cmd, "missing TEXT (quote it: bitnetc tokenize MODEL.gguf "
					"\"Hello, world\")");
	return tokenize_text(a.pos[0], a.pos[1], flags, pieces, pre);
}
