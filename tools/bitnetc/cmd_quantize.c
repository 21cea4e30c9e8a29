/* cmd_quantize.c - bitnetc quantize: a model written again with its projection weights
 * ternarized and packed in one ternary format. */
#include "bitnetc_int.h"

const char usage_quantize[] =
	"usage: bitnetc quantize IN.gguf OUT.gguf [--type i2_s|tq1_0|tq2_0]\n"
	"\n"
	"Writes IN again with its projection weights ternarized and packed in one ternary\n"
	"format: f32, f16 or bf16 ones as run and build ternarize them (a tensor of 0 and\n"
	"+-m keeps its values, any other gets BitNet b1.58's absmean rule), ternary ones\n"
	"repacked (i2_s has one scale per tensor: tq blocks of several scales take the\n"
	"absmean rule). All metadata (general.file_type updated) and every other tensor\n"
	"are kept as they are. OUT is written beside itself and renamed into place, so a\n"
	"failure leaves no half file; it may not be IN.\n"
	"  --type T   i2_s (default: the reference's format), tq1_0 or tq2_0\n";

int cmd_quantize(int argc, char **argv)
{
	Args a = {.cmd = "quantize", .argc = argc, .argv = argv};
	const char *type = "i2_s";
	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r;
		if (is_help(argv[a.i]))
			return show_usage(usage_quantize);
		if ((r = opt(&a, NULL, "--type", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			type = v;
			continue;
		}
		if (!positional(&a, 2))
			return EXIT_USAGE;
	}
	if (a.n_pos < 2)
		return usage_err(a.cmd, "missing %s", a.n_pos ? "OUT.gguf" : "IN.gguf and OUT.gguf");
	static const IrDtype ok[] = {IR_DT_I2_S, IR_DT_TQ1_0, IR_DT_TQ2_0};
	IrDtype to;
	if (!parse_dtype(type, ok, 3, &to))
		return usage_err(a.cmd, "--type: unknown ternary format '%s' (i2_s, tq1_0, tq2_0)",
				 type);
	const char *in = a.pos[0], *out = a.pos[1];
	if (bnm_same_file(in, out))
		return usage_err(a.cmd, "%s is the same file as %s: write to another file", out, in);

	BnErr e = {0};
	GgufFile *f = gguf_open(in, &e);
	if (!f)
		return fail_err(in, &e);
	BnmQuantStats st;
	int rc = bnm_quantize(f, out, to, &st, &e);
	gguf_close(f);
	if (rc)
		return fail_err(in, &e);
	printf("wrote %s: %d projection weights as %s (%d were float, %d took the absmean rule), "
	       "%d tensors copied\n",
	       out, st.n_proj, ir_dtype_name(to), st.n_float, st.n_absmean, st.n_copied);
	return finish(0);
}
