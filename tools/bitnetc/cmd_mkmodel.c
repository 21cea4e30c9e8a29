/* cmd_mkmodel.c - bitnetc mkmodel: a seeded synthetic BitNet model written as GGUF. */
#include "bitnetc_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


const char usage_mkmodel[] =
	"usage: bitnetc mkmodel -o FILE [options]\n"
	"\n"
	"Writes a synthetic BitNet model (seeded random ternary weights) as GGUF.\n"
	"  --shape tiny|tinyllama|2b4t\n"
	"                        base shape (default tiny: the golden test shape; tinyllama:\n"
	"                        the golden llama-arch shape, with a separate output.weight;\n"
	"                        2b4t: the full BitNet b1.58 2B-4T shape)\n"
	"  --arch A              bitnet-b1.58 (default), bitnet-25, bitnet or llama\n"
	"  --layers N --hidden N --ffn N --heads N --kv-heads N --vocab N --ctx N\n"
	"                        override the shape\n"
	"  --type T              ternary weight format: i2_s (default), tq1_0, tq2_0; or f16,\n"
	"                        bf16, f32: the same ternary values unquantized (bitnetc\n"
	"                        ternarizes them back when it loads the model)\n"
	"  --embd-type T         token embedding type: f16 (default), f32, bf16, q8_0, q6_k\n"
	"  --scales              arch bitnet: write per-projection .scale tensors\n"
	"  --biases              write a bias (F32) after every projection (archs llama,\n"
	"                        bitnet-b1.58, bitnet-25, bitnet)\n"
	"  --rope-freqs          write rope_freqs.weight (Llama 3.1's long-context factors)\n"
	"  --spm-vocab           a small SentencePiece (\"llama\") vocabulary, as 1bitLLM models\n"
	"                        carry, instead of the byte-level BPE one\n"
	"  --seed N              random seed (default 1)\n"
	"  --vocab-dir DIR       vocabulary from DIR (tokens.txt, merges.txt, special.tsv)\n"
	"  --pre NAME            byte-level BPE: tokenizer.ggml.pre NAME (e.g. falcon3), and\n"
	"                        then no add_bos_token nor chat template: readers' defaults\n"
	"                        for NAME apply\n"
	"  --llama3-vocab        the Llama 3 vocabulary shipped with bitnetc (n_vocab 128256)\n"
	"                        (from $BITNETC_DATA_DIR/llama3, else beside bitnetc: data/\n"
	"                        in its build tree, ../share/bitnetc when installed)\n"
	"  -o, --output FILE     where to write (required)\n";

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int cmd_mkmodel(int argc, char **argv)
{
	Args a = {.cmd = "mkmodel", .argc = argc, .argv = argv};
	const char *shape = "tiny", *arch = NULL, *type = NULL, *embd = NULL, *vocab_dir = NULL;
	const char *out = NULL, *pre = NULL;
	bool llama3 = false, scales = false, spm = false, biases = false, rope_freqs = false;
	int64_t seed = 1;
	/* Shape overrides: -1 = keep the shape's value. ORDER ov_names */
	static const char *const ov_names[] = {"--layers", "--hidden", "--ffn", "--heads",
					       "--kv-heads", "--vocab", "--ctx"};
	enum { N_OV = sizeof ov_names / sizeof ov_names[0] };
	int64_t ov[N_OV];
	for (int k = 0; k < N_OV; k++)
		ov[k] = -1;

	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r = 0;
		if (is_help(argv[a.i]))
			return show_usage(usage_mkmodel);
		if (flag(&a, NULL, "--llama3-vocab")) {
			llama3 = true;
			continue;
		}
		if (flag(&a, NULL, "--scales")) {
			scales = true;
			continue;
		}
		if (flag(&a, NULL, "--biases")) {
			biases = true;
			continue;
		}
		if (flag(&a, NULL, "--rope-freqs")) {
			rope_freqs = true;
			continue;
		}
		if (flag(&a, NULL, "--spm-vocab")) {
			spm = true;
			continue;
		}
		const char **dst = NULL;
		if ((r = opt(&a, NULL, "--shape", &v)) != 0)
			dst = &shape;
		else if ((r = opt(&a, NULL, "--arch", &v)) != 0)
			dst = &arch;
		else if ((r = opt(&a, NULL, "--type", &v)) != 0)
			dst = &type;
		else if ((r = opt(&a, NULL, "--embd-type", &v)) != 0)
			dst = &embd;
		else if ((r = opt(&a, NULL, "--vocab-dir", &v)) != 0)
			dst = &vocab_dir;
		else if ((r = opt(&a, NULL, "--pre", &v)) != 0)
			dst = &pre;
		else if ((r = opt(&a, "-o", "--output", &v)) != 0)
			dst = &out;
		if (r < 0)
			return EXIT_USAGE;
		if (dst) {
			*dst = v;
			continue;
		}
		if ((r = opt(&a, NULL, "--seed", &v)) != 0) {
			if (r < 0 || !parse_int(a.cmd, "--seed", v, 0, INT64_MAX, &seed))
				return EXIT_USAGE;
			continue;
		}
		int k = 0;
		for (; k < N_OV; k++)
			if ((r = opt(&a, NULL, ov_names[k], &v)) != 0)
				break;
		if (r < 0)
			return EXIT_USAGE;
		if (k < N_OV) {
			if (!parse_int(a.cmd, ov_names[k], v, 1, INT32_MAX, &ov[k]))
				return EXIT_USAGE;
			continue;
		}
		if (!positional(&a, 0))
			return EXIT_USAGE;
	}
	if (!out)
		return usage_err(a.cmd, "missing -o FILE");
	if (llama3 && vocab_dir)
		return usage_err(a.cmd, "--vocab-dir and --llama3-vocab exclude each other");
	if (spm && (llama3 || vocab_dir))
		return usage_err(a.cmd, "--spm-vocab excludes --llama3-vocab and --vocab-dir");
	if (pre && (spm || !*pre || strlen(pre) >= 64))
		return usage_err(a.cmd, "--pre: %s", spm ? "a SentencePiece vocabulary (--spm-vocab) "
				 "has no pre-tokenizer" : "expected a name of 1 to 63 characters");

	BnmSynthSpec s;
	BnErr e = {0};
	memset(&s, 0, sizeof s);
	if (strcmp(shape, "tiny") != 0 && strcmp(shape, "tinyllama") != 0 &&
	    strcmp(shape, "2b4t") != 0)
		return usage_err(a.cmd, "--shape: unknown shape '%s' (tiny, tinyllama or 2b4t)",
				 shape);
	if (bnm_synth_shape(&s, shape, &e) != BN_OK)
		return usage_err(a.cmd, "--shape: %s", e.msg);
	if (arch) {
		if (!arch_supported(arch)) {
			char archs[256];
			archs_list(archs, sizeof archs);
			return usage_err(a.cmd, "--arch: unknown architecture '%s' (%s)", arch, archs);
		}
		s.arch = arch;
	}
	if (type) {
		static const IrDtype ok[] = {IR_DT_I2_S, IR_DT_TQ1_0, IR_DT_TQ2_0, IR_DT_F16,
					     IR_DT_BF16, IR_DT_F32};
		if (!parse_dtype(type, ok, 6, &s.wtype))
			return usage_err(a.cmd, "--type: unknown ternary format '%s' "
						"(i2_s, tq1_0, tq2_0, f16, bf16, f32)", type);
	}
	if (embd) {
		static const IrDtype ok[] = {IR_DT_F16, IR_DT_F32, IR_DT_BF16, IR_DT_Q8_0,
					     IR_DT_Q6_K};
		if (!parse_dtype(embd, ok, 5, &s.embd_type))
			return usage_err(a.cmd, "--embd-type: unknown type '%s' "
						"(f16, f32, bf16, q8_0, q6_k)", embd);
	}
	int64_t *fields[N_OV] = {&s.n_layer, &s.n_embd, &s.n_ff, &s.n_head, &s.n_head_kv,
				 &s.n_vocab, &s.n_ctx};
	for (int k = 0; k < N_OV; k++)
		if (ov[k] > 0)
			*fields[k] = ov[k];
	s.seed = (uint64_t)seed;
	s.proj_scales = scales;
	s.spm_vocab = spm;
	s.proj_bias = biases;
	s.rope_freqs = rope_freqs;
	s.pre = pre;

	char vdir[4096];
	if (llama3) {
		char where[4096];
		if (!data_dir("llama3/tokens.txt", vdir, sizeof vdir, where, sizeof where))
			return fail(EXIT_RUNTIME, "the Llama 3 vocabulary is not installed (looked in "
						  "%s; set BITNETC_DATA_DIR to the folder holding "
						  "llama3/)", where);
		size_t l = strlen(vdir);
		snprintf(vdir + l, sizeof vdir - l, "/llama3");
		vocab_dir = vdir;
	}
	if (vocab_dir && !is_dir(vocab_dir))
		return fail(EXIT_RUNTIME, "%s: not a directory (--vocab-dir)", vocab_dir);
	s.vocab_dir = vocab_dir;
	/* A vocabulary directory sets n_vocab unless --vocab does (then they must agree). */
	if (vocab_dir && ov[5] <= 0 && bnm_synth_vocab_size(vocab_dir, &s.n_vocab, &e) != BN_OK)
		return fail_err(vocab_dir, &e);

	if (bnm_synth_write(&s, out, &e) != BN_OK)
		return fail_err(out, &e);
	struct stat st;
	long long size = stat(out, &st) == 0 ? (long long)st.st_size : -1;
	printf("wrote %s: %s, %" PRId64 " layers, n_embd %" PRId64 ", n_ff %" PRId64
	       ", heads %" PRId64 "/%" PRId64 ", vocab %" PRId64 ", %s weights, seed %" PRId64
	       ", %.1f MiB\n",
	       out, s.arch ? s.arch : "bitnet-b1.58", s.n_layer, s.n_embd, s.n_ff, s.n_head,
	       s.n_head_kv, s.n_vocab, ir_dtype_name(s.wtype), seed, (double)size / 1048576.0);
	return finish(0);
}
