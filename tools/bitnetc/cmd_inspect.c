/* cmd_inspect.c - bitnetc inspect: a GGUF file's header, metadata, tensors and, for a
 * supported architecture, its hyperparameters and whether the graph builds. */
#include "bitnetc_int.h"

#include <inttypes.h>
#include <string.h>

const char usage_inspect[] =
	"usage: bitnetc inspect MODEL.gguf\n"
	"\n"
	"Prints the GGUF header (version, alignment, data offset), every metadata key with\n"
	"its type and value (long arrays abbreviated), the tensor table (index, name, type,\n"
	"shape, offset in the data section, bytes), and for a supported architecture the\n"
	"hyperparameters and whether bitnetc can build the model's graph. Works on any GGUF\n"
	"file the reader accepts; an unsupported architecture is noted, not an error.\n";

static void print_kv_type(const GgufValue *v, char *buf, size_t n)
{
	if (v->type == GGUF_T_ARRAY)
		snprintf(buf, n, "%s[%" PRIu64 "]", gguf_type_name(v->arr_type), v->arr_n);
	else
		snprintf(buf, n, "%s", gguf_type_name(v->type));
}

static const char *tensor_type(const GgufTensor *t)
{
	IrDtype dt;
	return ir_dtype_from_ggml(t->ggml_type, &dt) ? ir_dtype_name(dt)
						     : ir_ggml_type_desc(t->ggml_type);
}

/* Projection weights stored as floats: say that loading ternarizes them. */
static void inspect_float_projections(const GgufFile *f)
{
	int n[IR_DT_COUNT] = {0}, total = 0;
	for (uint64_t i = 0; i < f->n_tensors; i++)
		if (bnm_float_projection(&f->tensors[i])) {
			n[f->tensors[i].dtype]++;
			total++;
		}
	if (!total)
		return;
	printf("ternarized: %d projection weights are float (", total);
	for (int dt = 0, k = 0; dt < IR_DT_COUNT; dt++)
		if (n[dt])
			printf("%s%d %s", k++ ? ", " : "", n[dt], ir_dtype_name((IrDtype)dt));
	printf("), made i2_s when the model is loaded\n"
	       "  (a tensor of 0 and +-m keeps its values, any other gets BitNet b1.58's absmean rule)\n");
}

int cmd_inspect(int argc, char **argv)
{
	Args a = {.cmd = "inspect", .argc = argc, .argv = argv};
	for (a.i = 0; a.i < argc; a.i++) {
		if (is_help(argv[a.i]))
			return show_usage(usage_inspect);
		if (!positional(&a, 1))
			return EXIT_USAGE;
	}
	if (!need_model(&a))
		return EXIT_USAGE;
	const char *path = a.pos[0];

	BnErr e = {0};
	GgufFile *f = gguf_open(path, &e);
	if (!f)
		return fail_err(path, &e);

	printf("file:         %s\n", path);
	printf("size:         %" PRIu64 " bytes\n", f->size);
	printf("gguf version: %u\n", f->version);
	printf("alignment:    %" PRIu64 "\n", f->alignment);
	printf("data offset:  %" PRIu64 " (0x%" PRIx64 ")\n", f->data_offset, f->data_offset);

	printf("\nmetadata: %" PRIu64 " keys\n", f->n_kv);
	int kw = 8;
	for (uint64_t i = 0; i < f->n_kv; i++) {
		int l = (int)strlen(f->kv[i].key);
		kw = l > kw ? (l > 48 ? 48 : l) : kw;
	}
	for (uint64_t i = 0; i < f->n_kv; i++) {
		char ty[48];
		print_kv_type(&f->kv[i].val, ty, sizeof ty);
		printf("  %-*s %-14s ", kw, f->kv[i].key, ty);
		gguf_value_print(&f->kv[i].val, stdout, 8);
		putchar('\n');
	}

	printf("\ntensors: %" PRIu64 "\n", f->n_tensors);
	int nw = 4;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		int l = (int)strlen(f->tensors[i].name);
		nw = l > nw ? (l > 48 ? 48 : l) : nw;
	}
	printf("  %5s  %-*s %-6s %-22s %12s %12s\n", "index", nw, "name", "type", "shape", "offset",
	       "bytes");
	uint64_t total = 0;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		char shape[96];
		size_t len = 0;
		shape[len++] = '[';
		for (int d = 0; d < t->n_dims && len < sizeof shape - 24; d++)
			len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%" PRId64,
						d ? ", " : "", t->ne[d]);
		snprintf(shape + len, sizeof shape - len, "]");
		printf("  %5" PRIu64 "  %-*s %-6s %-22s %12" PRIu64 " %12" PRIu64 "\n", i, nw, t->name,
		       tensor_type(t), shape, t->offset, t->nbytes);
		total += t->nbytes; /* each fits in the file, so the sum cannot overflow */
	}
	printf("total tensor bytes: %" PRIu64 " (%.2f MiB)\n", total, (double)total / 1048576.0);

	/* What bitnetc makes of it: only for the architectures the frontend knows. */
	int rc = 0;
	GgufStr as;
	char arch[128] = "";
	if (gguf_get_str(f, "general.architecture", &as))
		snprintf(arch, sizeof arch, "%.*s", (int)(as.len > 100 ? 100 : as.len), as.ptr);
	char archs[256];
	archs_list(archs, sizeof archs);
	putchar('\n');
	if (!arch[0]) {
		printf("architecture: none (general.architecture is missing); bitnetc supports %s\n",
		       archs);
	} else if (!arch_supported(arch)) {
		printf("architecture: %s is not supported by bitnetc (supported: %s)\n", arch, archs);
	} else {
		IrHparams hp;
		printf("architecture: %s (supported)\n", arch);
		if (bnm_hparams(f, &hp, &e) != BN_OK) {
			printf("hyperparameters: error: %s\n", e.msg);
			rc = fail_err(path, &e);
		} else {
			printf("hyperparameters:\n");
			printf("  n_ctx_train  %" PRId64 "\n", hp.n_ctx_train);
			printf("  n_embd       %" PRId64 "\n", hp.n_embd);
			printf("  n_layer      %" PRId64 "\n", hp.n_layer);
			printf("  n_head       %" PRId64 "\n", hp.n_head);
			printf("  n_head_kv    %" PRId64 "\n", hp.n_head_kv);
			printf("  head_dim     %" PRId64 "\n", hp.head_dim);
			printf("  n_ff         %" PRId64 "\n", hp.n_ff);
			printf("  n_vocab      %" PRId64 "\n", hp.n_vocab);
			printf("  rms_eps      %g\n", (double)hp.eps);
			printf("  rope_base    %g\n", (double)hp.rope_base);
			/* Building the graph checks every tensor's presence, shape and type. */
			IrGraph *g = bnm_load(f, &e);
			if (!g) {
				printf("graph: error: %s\n", e.msg);
				rc = fail_err(path, &e);
			} else {
				printf("graph: ok (%d nodes, %d values)\n", g->n_nodes, g->n_values);
				ir_graph_free(g);
				inspect_float_projections(f);
			}
		}
	}
	gguf_close(f);
	return finish(rc);
}
