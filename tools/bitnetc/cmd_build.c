/* cmd_build.c - bitnetc build: a model compiled into one standalone executable
 * (frontend, passes, codegen, the C compiler, the weights payload). */
#include "bitnetc_int.h"
#include "cg_out.h"
#include "metal/cg_metal.h"
#include "rt_batch.h"
#include "rt_tok.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char usage_build[] =
	"usage: bitnetc build MODEL.gguf -o OUT [options]\n"
	"\n"
	"Compiles a model into one standalone executable: frontend, the pass pipeline (a Lua\n"
	"script; default: the embedded passes/default.lua, see 'bitnetc passes'), code\n"
	"generation (one C file, every shape a constant), the C compiler (model + the\n"
	"runtime), then the weights payload appended to the executable (mapped read-only at\n"
	"run time). One progress line per stage; on a terminal the pass running too, and a\n"
	"line for each pass that took a second or more.\n"
	"  -o, --output OUT      the program to write (required)\n"
	"  --target T            native (default: the best kernels for this host, compiled with\n"
	"                        -march=native), cpu-generic (portable C, runs anywhere),\n"
	"                        cpu-avx2, cpu-avx512, cpu-amx, cpu-neon, cpu-neon-dot,\n"
	"                        cpu-sve (AArch64 SVE, any vector length), cpu-rv64 or\n"
	"                        cpu-rvv (see bitnetc targets). Any target builds\n"
	"                        on any host: the program checks its CPU when it starts\n"
	"  --cc CC               the C compiler (default: $CC, else cc); a cross compiler\n"
	"                        builds for another machine, e.g. --target cpu-neon-dot\n"
	"                        --cc aarch64-linux-gnu-gcc on x86-64 (cpu-sve too: gcc 10+\n"
	"                        has its intrinsics; cpu-rvv: --cc clang-19\n"
	"                        --cflags --target=riscv64-linux-gnu)\n"
	"  --cflags \"FLAGS\"      extra flags for every compiler command (model.c, the\n"
	"                        runtime with the link, --tune's timing programs), split\n"
	"                        at spaces; e.g. --target\n"
	"                        cpu-amx --cflags -DBN_AMX_EMULATE runs the AMX tiles in\n"
	"                        software (hosts without AMX: for tests, not for speed)\n"
	"  -O0 | -O1 | -O2 | -O3 optimization level of the generated code (default -O2)\n"
	"  --max-batch N         most tokens per forward call (default: the largest size of\n"
	"                        the pipeline's batch_templates, else 32; 1..4096): the\n"
	"                        largest forward template, the pipeline's smaller ones kept\n"
	"  --emit-c DIR          write (and keep) model.c and the runtime sources in DIR (new,\n"
	"                        or without files of those names but an earlier --emit-c's),\n"
	"                        with a Makefile of the commands the build ran (CPU targets).\n"
	"                        --target metal: the macOS project (model.metal, the host,\n"
	"                        a Makefile) and weights.bin; off macOS it is all a Metal\n"
	"                        build does (without --emit-c it stops, exit 2)\n"
	"  --weights-file FILE   write the weights to FILE instead of appending them; the\n"
	"                        program then needs --weights-file FILE at run time. OUT\n"
	"                        and FILE are replaced whole once complete, never in place;\n"
	"                        neither may be the model, the other or a special file\n"
	"  --chat-template NAME  the chat format baked into the program: bitnet, llama3,\n"
	"                        falcon3 or none (default: recognized from\n"
	"                        tokenizer.chat_template; without one, falcon3 for a falcon3\n"
	"                        or falcon_e pre-tokenizer)\n"
	"  --no-tokenizer        leave the tokenizer out: the program takes token ids only\n"
	"  --tokenizer-pre NAME  split text as NAME (llama3 or falcon3: the splits bitnetc has)\n"
	"                        whatever the file's tokenizer.ggml.pre says; without it an\n"
	"                        unknown pre-tokenizer is refused (-v says which split is used)\n"
	"  --pipeline FILE.lua   run this pass pipeline instead of the default one\n"
	"  --lua-timeout S       seconds the pipeline's Lua may run (default 60; 0: no limit)\n"
	"  --lua-memory MIB      MiB the pipeline's Lua may hold (default 1024; 0: no limit)\n"
	"  --lua-unsafe          give the pipeline Lua's full standard libraries (io, os,\n"
	"                        package, debug): only for scripts you trust\n"
	"  --pass-opt P.K=V      set option K of pass P (e.g. batch_templates.sizes=1,16);\n"
	"                        overrides the script's value\n"
	"  --dump-after PASS     print the IR after PASS ('lua': after every Lua pass)\n"
	"  --verify-each         run the IR verifier after every pass\n"
	"  --tune                time the candidate kernels on this machine (seconds): LUT vs\n"
	"                        multiply-add per shape and batch size, and the GEMM tiles\n"
	"                        (cpu-amx: the AMX blocks, where the host has AMX or with\n"
	"                        -DBN_AMX_EMULATE); record the winners in the tuning file,\n"
	"                        which later builds read (passes lut_specialize, tune_kernels)\n"
	"  --tune-file F         the tuning file (default ~/.cache/bitnetc/tune.tsv)\n"
	"  --cubin               cuda targets: also embed SASS from ptxas (the CUDA toolkit)\n"
	"                        for the target's GPU, so the program starts without the\n"
	"                        driver's PTX compilation on it\n"
	"  --host-kernels        cuda targets: also compile the kernels for this host\n"
	"                        (model_host.o in --emit-c DIR), which the tests run under a\n"
	"                        SIMT emulator in place of a GPU\n"
	"  --server              also build in the OpenAI-compatible HTTP server (PROG\n"
	"                        --server, see README: Serving); needs libmicrohttpd and\n"
	"                        libcjson (Debian: libmicrohttpd-dev libcjson-dev) found by\n"
	"                        pkg-config, and the program then needs their shared\n"
	"                        libraries\n"
	"  --lib                 write a static library (OUT: libNAME.a) instead of a program:\n"
	"                        the model, the runtime and the weights (linked in; with\n"
	"                        --weights-file opened from that file at run time), every\n"
	"                        function of bitnetc.h named PREFIX_ in place of bn_ and\n"
	"                        nothing else global; bitnetc.h and PREFIX.h are written\n"
	"                        beside OUT (see README: Embedding)\n"
	"  --shared              the same as a shared library (OUT: libNAME.so)\n"
	"  --prefix NAME         the library's function prefix (default: OUT's file name less\n"
	"                        lib and its extension: libtiny.a -> tiny_decode)\n"
	"  -v, --verbose         per-pass detail, the full compiler command line\n"
	"  -j, --jobs N          compiler runs at once: model.c and each runtime source\n"
	"                        (default: $BITNETC_JOBS, else one per online CPU)\n"
	"  --no-cache            compile the runtime even when the cache of its objects\n"
	"                        (~/.cache/bitnetc/runtime, or $XDG_CACHE_HOME/bitnetc/\n"
	"                        runtime) has them; the cache is left as it is\n";

const char usage_emit[] =
	"usage: bitnetc emit MODEL.gguf DIR [options]\n"
	"\n"
	"Writes a self-contained source tree that a product can vendor: the generated model.c,\n"
	"the runtime sources, the API header bitnetc.h and PREFIX.h (every function named\n"
	"PREFIX_ in place of bn_), the weights (weights.bin, linked in by weights.c), a\n"
	"Makefile and a CMakeLists.txt (the target bitnetc::PREFIX) that build the static and\n"
	"shared library and the command-line program with any C11 compiler (gcc, clang), and\n"
	"a README saying how; nothing there needs bitnetc. Cross builds: make CC=... DIR is\n"
	"made, or must be empty or an earlier emit's.\n"
	"  --prefix NAME         the functions' prefix (default: DIR's name as an identifier)\n"
	"  --target T            as for bitnetc build (default native: -march=native in the\n"
	"                        tree's flags; name a target for other machines)\n"
	"  --max-batch N, --pipeline F, --pass-opt P.K=V, --chat-template NAME,\n"
	"  --no-tokenizer, --tokenizer-pre NAME, --lua-*, --tune, --tune-file F,\n"
	"  --dump-after PASS, --verify-each, -v   as for bitnetc build\n";

/* --server: the HTTP server's sources beside model.c. */
static int server_sources(CgOutput *out, BnErr *e)
{
	for (int i = 0; i < cg_n_runtime_server_sources; i++) {
		const CgSource *src = &cg_runtime_server_sources[i];
		CgBuf *b = cg_output_add(out, src->name, CG_ART_SOURCE);
		if (!b || cg_put(b, src->data, src->size))
			return bn_err(e, BN_ENOMEM, "out of memory for the server's sources");
	}
	return 0;
}

/* Options of build that emit has no use for: a usage error naming it. */
static bool emit_refuses(const Args *a)
{
	static const char *const no[] = {"-o", "--output", "--emit-c", "--weights-file", "--lib",
					 "--shared", "--cubin", "--host-kernels", "--cc",
					 "--cflags", "-O0", "-O1", "-O2", "-O3", "-j", "--jobs",
					 "--no-cache"};
	const char *arg = a->argv[a->i];
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		size_t l = strlen(no[i]);
		if (!strncmp(arg, no[i], l) && (arg[l] == 0 || arg[l] == '=')) {
			usage_err(a->cmd, "%s: not an option of emit (the tree is compiled by its own "
					  "Makefile or CMakeLists.txt: CC, CFLAGS there)", no[i]);
			return true;
		}
	}
	return false;
}

typedef struct {
	const char *path, *out, *target, *cc, *cflags, *opt, *emit_dir, *weights_file;
	const char *tune_file;     /* --tune-file (appended to by --tune) */
	int jobs;                  /* -j N: compiler runs at once (0: cg_cc_jobs's default) */
	bool no_cache;             /* --no-cache: compile the runtime whatever the cache holds */
	const char *chat_template; /* --chat-template, or NULL: the file's */
	bool no_tokenizer;
	const char *tokenizer_pre; /* --tokenizer-pre, or NULL: the file's */
	int64_t max_batch;
	int verbose;
	const char *pipeline;   /* --pipeline FILE; NULL: the embedded passes/default.lua */
	PassOpts pass_opts;     /* --pass-opt PASS.KEY=VALUE */
	const char *dump_after; /* --dump-after PASS */
	bool verify_each;       /* --verify-each */
	bool host_kernels;      /* --host-kernels */
	bool cubin;             /* --cubin */
	bool server;            /* --server */
	char server_libs[1024]; /* pkg-config's flags for it */
	PassLuaOpts lua;        /* --lua-timeout, --lua-memory, --lua-unsafe */
	bool emit_tree;         /* bitnetc emit MODEL DIR (emit_dir) */
	CgLib lib;              /* --lib, --shared */
	char prefix[CG_LIB_PREFIX_MAX + 1]; /* --prefix, or from -o */
	char hdr_api[4200], hdr_lib[4200];  /* bitnetc.h and PREFIX.h beside OUT */
} BuildOpts;

static int n_stages = 5; /* bitnetc emit: 4 */

static void stage(int i, const char *name, double secs, const char *fmt, ...) BN_PRINTF(4, 5);
static void stage(int i, const char *name, double secs, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("[%d/%d] %-9s %6.2f s  ", i, n_stages, name, secs);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	va_end(ap);
}

/* The --chat-template name as an RtChatTemplate; -1 if unknown. */
static int chat_template_id(const char *name)
{
	if (!strcmp(name, "none"))
		return RT_CHAT_NONE;
	RtChatTemplate t = rt_chat_from_name(name);
	return t == RT_CHAT_NONE ? -1 : (int)t;
}


/* The tokenizer and chat template the program gets; prints a line about them. */
static int build_tokenizer(const BuildOpts *o, const GgufFile *f, const IrGraph *g, BnmTok *tok)
{
	BnErr e = {0};
	if (o->no_tokenizer) {
		memset(tok, 0, sizeof *tok);
		snprintf(tok->none_why, sizeof tok->none_why, "--no-tokenizer");
	} else if (bnm_tok_load_pre(f, o->tokenizer_pre, tok, &e) != BN_OK) {
		return fail_err(o->path, &e);
	}
	if (tok->blob && tok->n_tokens > g->hp.n_vocab)
		return fail(EXIT_RUNTIME, "%s: the tokenizer has %" PRId32 " tokens but the model's "
			    "vocabulary only %" PRId64 " (use --no-tokenizer to build without it)",
			    o->path, tok->n_tokens, g->hp.n_vocab);
	if (o->chat_template)
		tok->chat_template = chat_template_id(o->chat_template);
	/* A template whose special tokens the vocabulary lacks would be encoded as plain
	 * text: refused when asked for, dropped (with a note) when the file's metadata chose it. */
	char why[256], note[300] = "";
	if (bnm_tok_chat_check(tok, tok->chat_template, why, sizeof why)) {
		if (o->chat_template)
			return fail(EXIT_RUNTIME, "%s: --chat-template %s: %s", o->path,
				    o->chat_template, why);
		snprintf(note, sizeof note, "; the file's template is not used: %s", why);
		tok->chat_template = RT_CHAT_NONE;
	}
	if (!tok->blob) {
		printf("          no tokenizer (%s): the program takes token ids\n", tok->none_why);
		return 0;
	}
	printf("          tokenizer %s: %" PRId32 " tokens, bos %" PRId32 "%s, eos %" PRId32
	       ", end of generation", tok->kind, tok->n_tokens, tok->bos,
	       tok->add_bos ? " (added)" : "", tok->eos);
	for (int i = 0; i < tok->n_eog; i++)
		printf(" %" PRId32, tok->eog[i]);
	const char *from = o->chat_template ? " (--chat-template)" : note[0] ? ""
			   : tok->chat_from_pre ? " (the file has none; its pre-tokenizer's)"
			   : !tok->has_chat_jinja ? " (the file has none)"
			   : tok->chat_template ? " (recognized)" : " (not recognized)";
	printf("; chat template %s%s%s\n", rt_chat_name((RtChatTemplate)tok->chat_template), from,
	       note);
	if (o->verbose && tok->split[0])
		printf("          text is split into words by %s\n", tok->split);
	/* a vocabulary padded past the tokenizer (common): the program masks those ids */
	if (tok->n_tokens < g->hp.n_vocab)
		printf("          note: %" PRId64 " embedding rows have no token; they are never "
		       "sampled\n", g->hp.n_vocab - tok->n_tokens);
	return 0;
}

/* A header a library build writes beside OUT: new, or one bitnetc wrote (its first line
 * "NAME - " after the comment opener, and bitnetc), so that a product's own file of that name
 * is never replaced. */
static int lib_header_check(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISREG(st.st_mode))
		return fail(EXIT_RUNTIME, "%s: a library build writes its header here, and this is "
					  "not a regular file", path);
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	char want[300], head[512] = "";
	snprintf(want, sizeof want, "/* %s - ", base);
	FILE *f = fopen(path, "rb");
	size_t r = f ? fread(head, 1, sizeof head - 1, f) : 0;
	if (f)
		fclose(f);
	head[r] = 0;
	head[strcspn(head, "\n")] = 0;
	if (strncmp(head, want, strlen(want)) != 0 || !strstr(head, "bitnetc"))
		return fail(EXIT_RUNTIME, "%s: a library build would overwrite this file, which "
					  "bitnetc did not write (build into another directory, or "
					  "choose another --prefix)", path);
	return 0;
}

/* bitnetc.h and PREFIX.h beside OUT, as temporaries (renamed with OUT). */
static int lib_headers_temp(const BuildOpts *o, const CgOutput *out, char *tmp_api,
			    char *tmp_lib, int slot[2])
{
	BnErr e = {0};
	const CgArtifact *lib = cg_output_find(out, "bn_lib.h");
	const CgSource *api = NULL;
	for (int i = 0; i < cg_n_runtime_sources; i++)
		if (strcmp(cg_runtime_sources[i].name, "bitnetc.h") == 0)
			api = &cg_runtime_sources[i];
	if (!lib || !api)
		return fail(EXIT_RUNTIME, "%s: the library's headers are missing", o->out);
	const char *paths[2] = {o->hdr_api, o->hdr_lib};
	char *tmps[2] = {tmp_api, tmp_lib};
	const void *data[2] = {api->data, lib->bytes.data};
	size_t len[2] = {api->size, lib->bytes.len};
	for (int i = 0; i < 2; i++) {
		if (cg_out_temp(paths[i], tmps[i], 4300, &slot[i], &e) != BN_OK)
			return fail(EXIT_RUNTIME, "%s", e.msg);
		FILE *f = fopen(tmps[i], "wb");
		bool ok = f && fwrite(data[i], 1, len[i], f) == len[i];
		if (f && fclose(f) != 0)
			ok = false;
		if (!ok)
			return fail(EXIT_RUNTIME, "%s: cannot write: %s", tmps[i], strerror(errno));
	}
	return 0;
}

/* bitnetc emit: the payload and its trailer as DIR/weights.bin (written beside itself and
 * renamed), the last stage. */
static int emit_weights(const BuildOpts *o, const IrGraph *g, const CgOutput *out,
			const char *dir)
{
	BnErr e = {0};
	char path[4200], tmp[4400];
	int slot = -1;
	double t0 = now_s();
	snprintf(path, sizeof path, "%s/weights.bin", dir);
	mode_t um = umask(0);
	umask(um);
	if (cg_out_temp(path, tmp, sizeof tmp, &slot, &e) != BN_OK ||
	    cg_payload_write(g, &out->payload, tmp, false, path, &e) != BN_OK ||
	    cg_out_commit(slot, tmp, path, path, "weights.bin", 0666 & ~um, &e) != BN_OK) {
		cg_cleanup_remove(slot);
		return fail(EXIT_RUNTIME, "%s", e.msg);
	}
	stage(4, "payload", now_s() - t0, "%.1f MiB of weights written to %s (hash %016" PRIx64 ")",
	      (double)out->payload.size / 1048576.0, path, out->payload.hash);
	if (!o->emit_tree)
		printf("wrote %s: a Metal project, built with make on macOS; run the program with "
		       "--weights-file weights.bin (%s/Makefile)\n", dir, dir);
	else
		printf("wrote %s: lib%s.a with make or cmake, every API function %s_* (%s/README.md)\n",
		       dir, o->prefix, o->prefix, dir);
	return 0;
}

/* The model file again, for the payload's unchanged bytes to be copied from it (file to
 * file): when it is still the mapped file (device and inode). Returns the fd, -1: none. */
static int payload_source(const GgufFile *f, CgPayload *p)
{
	struct stat st;
	int fd = f->mapped ? open(f->path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd >= 0 && (fstat(fd, &st) != 0 || (uint64_t)st.st_dev != f->dev ||
			(uint64_t)st.st_ino != f->ino || (uint64_t)st.st_size != f->size)) {
		close(fd);
		fd = -1;
	}
	p->src_fd = fd;
	p->src_base = fd >= 0 ? f->base : NULL;
	p->src_size = fd >= 0 ? f->size : 0;
	return fd;
}

static int build_model(const BuildOpts *o, const CgTarget *t)
{
	const CgBackend *be = t->backend;
	GgufFile *f = NULL;
	IrGraph *g = NULL;
	BnmTok tok = {0};
	CgOutput out = {0};
	BnErr e = {0};
	char srcdir[4096] = "", tmp_out[6144] = "", tmp_w[6144] = "", cmd[8192];
	char out_path[4096], w_path[4096];
	int slot_src = -1, slot_out = -1, slot_w = -1; /* temporaries, removed unless renamed */
	int slot_hdr[2] = {-1, -1};
	char tmp_api[4300] = "", tmp_lib[4300] = "";
	int rc = 0, src_fd = -1;

	/* [1] frontend */
	double t0 = now_s();
	if ((rc = load_model(o->path, &f, &g)))
		return rc;
	int64_t bos = -1, eos = -1;
	if (!gguf_get_int(f, "tokenizer.ggml.bos_token_id", &bos))
		bos = -1;
	if (!gguf_get_int(f, "tokenizer.ggml.eos_token_id", &eos))
		eos = -1;
	stage(1, "frontend", now_s() - t0, "%s: %s, %" PRId64 " layers, n_embd %" PRId64
	      ", n_vocab %" PRId64 ", %d nodes", o->path, g->arch, g->hp.n_layer, g->hp.n_embd,
	      g->hp.n_vocab, g->n_nodes);
	if ((rc = build_tokenizer(o, f, g, &tok)))
		goto out;

	/* [2] passes */
	t0 = now_s();
	int nodes0 = g->n_nodes, values0 = g->n_values;
	PassStats stats = {0};
	PassRunOpts ro = {.verify_each = o->verify_each, .dump_after = o->dump_after,
			  .dump_file = stdout, .verbose = o->verbose, .cli_opts = &o->pass_opts,
			  .stats = &stats, .target = pass_target_for(o->target), .cc = o->cc,
			  .cflags = o->cflags, .lua = o->lua};
	if (!o->verbose && isatty(STDOUT_FILENO))
		ro.progress = stdout; /* -v prints every pass's time at the end */
	if (pass_pipeline_run(g, o->pipeline, &ro, &e) != BN_OK) {
		pass_stats_free(&stats);
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	stage(2, "passes", now_s() - t0, "%s: %d -> %d nodes, %d -> %d values",
	      o->pipeline ? o->pipeline : "default.lua", nodes0, g->n_nodes, values0, g->n_values);
	if (o->verbose)
		pass_stats_print(&stats, stdout);
	pass_stats_free(&stats);

	/* [3] codegen: one forward function per batch template the pipeline chose
	 * (batch_templates; without it 1 and 32); --max-batch N makes N the largest, keeping
	 * the pipeline's smaller ones */
	t0 = now_s();
	int64_t max_batch = o->max_batch;
	const IrAttr *sizes = pass_gattr_find(g, "batch_sizes");
	bool have_sizes = sizes && sizes->type == IR_ATTR_INTS && sizes->n_ints > 0;
	int bsz[66], n_bsz = 1;
	bsz[0] = 1;
	for (int i = 0; have_sizes && i < sizes->n_ints && n_bsz < 64; i++) {
		int64_t s = sizes->ints[i]; /* ascending and distinct from the pass; kept so */
		if (s > bsz[n_bsz - 1] && s <= RT_MAX_BATCH && (!max_batch || s < max_batch))
			bsz[n_bsz++] = (int)s;
	}
	if (!max_batch)
		max_batch = have_sizes ? bsz[n_bsz - 1] : 32;
	if (max_batch > bsz[n_bsz - 1])
		bsz[n_bsz++] = (int)max_batch;
	CgOpts co = {.target = t->name, .cc = o->cc, .cflags = o->cflags, .opt = o->opt, .max_batch = (int)max_batch,
		     .batch_sizes = bsz, .n_batch_sizes = n_bsz,
		     .pipeline = o->pipeline ? o->pipeline : "default.lua", .bos = bos, .eos = eos, .tok_blob = tok.blob,
		     .tok_bytes = tok.size, .chat_template = tok.chat_template,
		     .verbose = o->verbose, .host_kernels = o->host_kernels,
		     .cubin = o->cubin};
	if (o->server)
		co.server_libs = o->server_libs;
	co.jobs = o->jobs;
	co.emit_makefile = o->emit_dir && !o->emit_tree && !o->lib;
	co.weights_file = o->lib ? NULL : o->weights_file;
	co.no_cache = o->no_cache;
	if (o->lib) {
		co.lib = o->lib;
		co.prefix = o->prefix;
		co.linked_weights = !o->weights_file;
		const char *name = o->emit_tree ? o->emit_dir : o->out, *base = strrchr(name, '/');
		co.soname = base ? base + 1 : name;
	}
	char about[5000];
	if (o->emit_tree)
		snprintf(about, sizeof about, "The model %s (target %s)", o->path, t->name);
	else
		snprintf(about, sizeof about, "%s\n * (model %s, target %s)",
			 co.soname ? co.soname : o->out, o->path, t->name);
	if (be->emit(g, &co, &out, &e) != BN_OK || (o->server && server_sources(&out, &e)) ||
	    (o->lib && cg_lib_add_artifacts(&out, o->prefix, about,
					    o->emit_tree ? o->hdr_lib : "bn_lib.h",
					    co.linked_weights, &e)) ||
	    (o->emit_tree && be->tree(&co, about, &out, &e))) {
		rc = fail_err(o->path, &e);
		goto out;
	}
	src_fd = payload_source(f, &out.payload);
	if (o->emit_dir) {
		snprintf(srcdir, sizeof srcdir, "%s", o->emit_dir);
		if (mkdir(srcdir, 0777) != 0 && errno != EEXIST) {
			rc = fail(EXIT_RUNTIME, "%s: cannot create the directory: %s", srcdir,
				  strerror(errno));
			goto out;
		}
	} else {
		const char *td = getenv("TMPDIR");
		snprintf(srcdir, sizeof srcdir, "%s/bitnetc-XXXXXX", td && *td ? td : "/tmp");
		if (!mkdtemp(srcdir)) {
			rc = fail(EXIT_RUNTIME, "cannot create a temporary directory %s: %s", srcdir,
				  strerror(errno));
			srcdir[0] = 0;
			goto out;
		}
		slot_src = cg_cleanup_add(srcdir, true);
	}
	if (cg_sources_write(be, srcdir, &out, &e) != BN_OK) {
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	char tmpl[64 * 6] = "";
	for (int i = 0, l = 0; i < n_bsz && l < (int)sizeof tmpl; i++)
		l += snprintf(tmpl + l, sizeof tmpl - (size_t)l, "%s%d", i ? "," : "", bsz[i]);
	const CgArtifact *art = out.n_art ? &out.art[0] : NULL; /* the main one: model.c */
	stage(3, "codegen", now_s() - t0, "%s %.0f KiB, %d kernels, scratch %.1f KiB, "
	      "max batch %d (templates %s)%s%s", art ? art->name : "nothing",
	      art ? (double)art->bytes.len / 1024.0 : 0.0, out.n_kernels,
	      (double)out.scratch_bytes / 1024.0, co.max_batch, tmpl,
	      o->emit_dir ? ", sources in " : "", o->emit_dir ? o->emit_dir : "");
	if (o->emit_tree) {
		rc = emit_weights(o, g, &out, srcdir);
		goto out;
	}
	if (o->emit_dir && be == &cg_backend_metal && !cg_metal_can_link()) {
		/* no Metal here: the project (its Makefile) and weights.bin, for a Mac */
		rc = emit_weights(o, g, &out, srcdir);
		goto out;
	}

	/* [4] cc: link next to OUT (a symbolic link: the file it names) under a temporary
	 * name, renamed once complete */
	t0 = now_s();
	cg_out_resolve(o->out, out_path, sizeof out_path);
	if (cg_out_temp(out_path, tmp_out, sizeof tmp_out, &slot_out, &e) != BN_OK) {
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	cmd[0] = 0;
	double t_linked = 0;
	if (co.linked_weights) {
		/* the payload first: weights.c links it in */
		double t1 = now_s();
		char wb[4200];
		snprintf(wb, sizeof wb, "%s/weights.bin", srcdir);
		if (cg_payload_write(g, &out.payload, wb, false, wb, &e) != BN_OK) {
			rc = fail(EXIT_RUNTIME, "%s", e.msg);
			goto out;
		}
		t_linked = now_s() - t1;
		t0 += t_linked;
	}
	if (be->build(&co, srcdir, tmp_out, o->out, cmd, sizeof cmd, &e) != BN_OK) {
		if (o->verbose && cmd[0])
			fprintf(stderr, "bitnetc: build: %s\n", cmd);
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	if (o->verbose)
		stage(4, "cc", now_s() - t0, "%s", cmd);
	else
		stage(4, "cc", now_s() - t0, "%s %s%s%s (%s)", co.cc, co.opt, co.cflags ? " " : "",
		      co.cflags ? co.cflags : "", t->name);

	/* [5] payload */
	t0 = now_s() - t_linked;
	mode_t um = umask(0), wmode = 0666 & ~um;
	umask(um);
	if (o->lib && (rc = lib_headers_temp(o, &out, tmp_api, tmp_lib, slot_hdr)))
		goto out;
	if (co.linked_weights) {
		/* linked in by the build */
	} else if (o->weights_file) {
		/* FILE too is written beside itself and renamed: the old one stays whole until
		 * the new one is */
		struct stat wst;
		cg_out_resolve(o->weights_file, w_path, sizeof w_path);
		if (stat(w_path, &wst) == 0)
			wmode = wst.st_mode & 07777;
		if (cg_out_temp(w_path, tmp_w, sizeof tmp_w, &slot_w, &e) != BN_OK ||
		    cg_payload_write(g, &out.payload, tmp_w, false, o->weights_file, &e) != BN_OK) {
			rc = fail(EXIT_RUNTIME, "%s", e.msg);
			goto out;
		}
	} else if (cg_payload_write(g, &out.payload, tmp_out, true, o->out, &e) != BN_OK) {
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	/* all renames or none (a signal waits until they are done) */
	cg_cleanup_hold();
	if (cg_out_check(out_path, "-o", &e) != BN_OK ||
	    (o->weights_file && cg_out_commit(slot_w, tmp_w, w_path, o->weights_file,
					      "--weights-file", wmode, &e) != BN_OK) ||
	    (o->lib && (cg_out_commit(slot_hdr[0], tmp_api, o->hdr_api, o->hdr_api, "header",
				      0666 & ~um, &e) != BN_OK ||
			(slot_hdr[0] = -1, 0) ||
			cg_out_commit(slot_hdr[1], tmp_lib, o->hdr_lib, o->hdr_lib, "header",
				      0666 & ~um, &e) != BN_OK ||
			(slot_hdr[1] = -1, 0))) ||
	    cg_out_commit(slot_out, tmp_out, out_path, o->out, "-o",
			  (o->lib == CG_LIB_STATIC ? 0666 : 0777) & ~um, &e) != BN_OK) {
		cg_cleanup_release();
		rc = fail(EXIT_RUNTIME, "%s", e.msg);
		goto out;
	}
	slot_w = slot_out = -1;
	cg_cleanup_release();
	stage(5, "payload", now_s() - t0, "%.1f MiB of weights %s %s (hash %016" PRIx64 ")",
	      (double)out.payload.size / 1048576.0,
	      o->weights_file ? "written to" : o->lib ? "linked into" : "appended to",
	      o->weights_file ? o->weights_file : o->out, out.payload.hash);
	if (o->lib)
		printf("wrote %s and %s (the library's API: %s_* functions)\n", o->hdr_api,
		       o->hdr_lib, o->prefix);
	struct stat st;
	printf("wrote %s (%.1f MiB)\n", o->out,
	       stat(o->out, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0);
out:
	/* only what this run created */
	cg_cleanup_remove(slot_hdr[0]);
	cg_cleanup_remove(slot_hdr[1]);
	cg_cleanup_remove(slot_w);
	cg_cleanup_remove(slot_out);
	cg_cleanup_remove(slot_src);
	cg_output_free(&out);
	if (src_fd >= 0)
		close(src_fd);
	bnm_tok_free(&tok);
	if (g)
		pass_gattr_clear(g);
	ir_graph_free(g);
	gguf_close(f);
	return finish(rc);
}

/* --lib, --shared, --prefix: one kind, a CPU target, the prefix (checked, else from -o), and
 * the headers beside OUT (checked: new or bitnetc's). */
static int lib_opts(const Args *a, BuildOpts *o, const CgTarget *t, int n_lib, const char *prefix)
{
	if (n_lib > 1)
		return usage_err(a->cmd, "--lib and --shared: give one (a static or a shared library)");
	if (!o->lib) {
		if (prefix)
			return usage_err(a->cmd, "--prefix: only with --lib or --shared");
		return 0;
	}
	if (strcmp(t->backend->name, "cpu") != 0 || !t->backend->tree)
		return usage_err(a->cmd, "%s: a library is built for cpu targets (--target %s is a %s "
					 "target; build a program for it)",
				 o->emit_tree ? "emit" : o->lib == CG_LIB_STATIC ? "--lib" : "--shared",
				 o->target, t->backend->name);
	const char *from = o->emit_tree ? o->emit_dir : o->out;
	if (prefix) {
		snprintf(o->prefix, sizeof o->prefix, "%s", prefix);
	} else {
		BnErr pe = {0};
		char trimmed[4200];
		snprintf(trimmed, sizeof trimmed, "%s", from);
		for (size_t l = strlen(trimmed); l > 1 && trimmed[l - 1] == '/'; l--)
			trimmed[l - 1] = 0; /* DIR/ */
		cg_lib_default_prefix(trimmed, o->prefix, sizeof o->prefix);
		if (cg_lib_prefix_check(o->prefix, &pe))
			return usage_err(a->cmd, "%s: no prefix from that name (%s): give --prefix", from,
					 pe.msg);
	}
	if (strcmp(o->prefix, "bitnetc") == 0)
		return usage_err(a->cmd, "--prefix bitnetc: its header would be bitnetc.h, the API's "
					 "own; choose another");
	if (o->emit_tree) { /* in the tree, checked with its other files */
		snprintf(o->hdr_lib, sizeof o->hdr_lib, "%s.h", o->prefix);
		return 0;
	}
	const char *slash = strrchr(o->out, '/');
	int dl = slash ? (int)(slash - o->out + 1) : 0;
	snprintf(o->hdr_api, sizeof o->hdr_api, "%.*sbitnetc.h", dl, o->out);
	snprintf(o->hdr_lib, sizeof o->hdr_lib, "%.*s%s.h", dl, o->out, o->prefix);
	for (int i = 0; i < 2; i++) {
		const char *h = i ? o->hdr_lib : o->hdr_api;
		if (!strcmp(h, o->out) || (o->weights_file && !strcmp(h, o->weights_file)))
			return usage_err(a->cmd, "%s: the library's header goes there; name the %s "
						 "otherwise", h, !strcmp(h, o->out) ? "library (-o)"
										  : "weights file");
	}
	int rc = lib_header_check(o->hdr_api);
	return rc ? rc : lib_header_check(o->hdr_lib);
}

/* bitnetc build, or with emit bitnetc emit MODEL DIR (the same options less those about
 * the product: a library tree, never compiled here). */
/* --server: the flags of libmicrohttpd and libcjson from pkg-config into o->server_libs;
 * 0, or the exit code after saying what to install. */
static int server_libs(BuildOpts *o)
{
	FILE *p = popen("pkg-config --cflags --libs libmicrohttpd libcjson 2>/dev/null", "r");
	size_t n = p ? fread(o->server_libs, 1, sizeof o->server_libs - 1, p) : 0;
	int st = p ? pclose(p) : -1;
	o->server_libs[n] = 0;
	while (n && (o->server_libs[n - 1] == '\n' || o->server_libs[n - 1] == ' '))
		o->server_libs[--n] = 0;
	for (char *c = o->server_libs; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	if (st != 0 || !n)
		return fail(EXIT_RUNTIME, "--server needs libmicrohttpd and libcjson with their "
					  "headers, found through pkg-config: not found (Debian, "
					  "Ubuntu: apt-get install libmicrohttpd-dev libcjson-dev "
					  "pkg-config)");
	return 0;
}

static int build_main(int argc, char **argv, bool emit)
{
	Args a = {.cmd = emit ? "emit" : "build", .argc = argc, .argv = argv};
	const char *cc_env = getenv("CC");
	BuildOpts o = {.target = "native", .cc = cc_env && *cc_env ? cc_env : "cc",
		       .opt = "-O2", .max_batch = 0 /* from the pipeline */};
	static const char *const levels[] = {"-O0", "-O1", "-O2", "-O3"};
	int n_lib = 0;
	const char *prefix = NULL;
	for (a.i = 0; a.i < argc; a.i++) {
		const char *v;
		int r;
		if (is_help(argv[a.i]))
			return show_usage(emit ? usage_emit : usage_build);
		if (emit && emit_refuses(&a)) {
			pass_opts_free(&o.pass_opts);
			return EXIT_USAGE;
		}
		bool level = false;
		for (int k = 0; k < 4; k++)
			if (strcmp(argv[a.i], levels[k]) == 0) {
				o.opt = levels[k];
				level = true;
			}
		if (level)
			continue;
		if (flag(&a, "-v", "--verbose")) {
			o.verbose++;
		} else if ((r = opt(&a, "-o", "--output", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.out = v;
		} else if ((r = opt(&a, NULL, "--target", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.target = v;
		} else if ((r = opt(&a, NULL, "--cc", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (!*v)
				return usage_err(a.cmd, "--cc: empty compiler name");
			o.cc = v;
		} else if ((r = opt(&a, NULL, "--cflags", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.cflags = v;
		} else if ((r = opt(&a, NULL, "--max-batch", &v)) != 0) {
			if (r < 0 || !parse_int(a.cmd, a.opt, v, 1, RT_MAX_BATCH, &o.max_batch))
				return EXIT_USAGE;
		} else if ((r = opt(&a, "-j", "--jobs", &v)) != 0 ||
			   (!strncmp(a.argv[a.i], "-j", 2) && a.argv[a.i][2] >= '0' &&
			    a.argv[a.i][2] <= '9' && (a.opt = "-j", v = a.argv[a.i] + 2, r = 1))) {
			int64_t j; /* -j N, --jobs N or -jN */
			if (r < 0 || !parse_int(a.cmd, a.opt, v, 1, cg_cleanup_max_children(), &j))
				return EXIT_USAGE;
			o.jobs = (int)j;
		} else if (flag(&a, NULL, "--no-cache")) {
			o.no_cache = true;
		} else if ((r = opt(&a, NULL, "--emit-c", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.emit_dir = v;
		} else if ((r = opt(&a, NULL, "--weights-file", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.weights_file = v;
		} else if ((r = opt(&a, NULL, "--chat-template", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (chat_template_id(v) < 0)
				return usage_err(a.cmd, "--chat-template: unknown template '%s' "
							"(bitnet, llama3, falcon3 or none)", v);
			o.chat_template = v;
		} else if (flag(&a, NULL, "--no-tokenizer")) {
			o.no_tokenizer = true;
		} else if ((r = opt(&a, NULL, "--tokenizer-pre", &v)) != 0) {
			if (r < 0 || !tokenizer_pre_ok(a.cmd, v))
				return EXIT_USAGE;
			o.tokenizer_pre = v;
		} else if (flag(&a, NULL, "--verify-each")) {
			o.verify_each = true;
		} else if (flag(&a, NULL, "--host-kernels")) {
			o.host_kernels = true;
		} else if (flag(&a, NULL, "--server")) {
			o.server = true;
		} else if (flag(&a, NULL, "--cubin")) {
			o.cubin = true;
		} else if (flag(&a, NULL, "--lib")) {
			o.lib = CG_LIB_STATIC;
			n_lib++;
		} else if (flag(&a, NULL, "--shared")) {
			o.lib = CG_LIB_SHARED;
			n_lib++;
		} else if ((r = opt(&a, NULL, "--prefix", &v)) != 0) {
			BnErr pe = {0};
			if (r < 0)
				return EXIT_USAGE;
			if (cg_lib_prefix_check(v, &pe))
				return usage_err(a.cmd, "%s", pe.msg);
			prefix = v;
		} else if (flag(&a, NULL, "--tune")) {
			BnErr pe = {0};
			if (pass_opts_parse(&o.pass_opts, "tune_kernels.tune=1", &pe) != BN_OK ||
			    pass_opts_parse(&o.pass_opts, "lut_specialize.tune=1", &pe) != BN_OK) {
				pass_opts_free(&o.pass_opts);
				return usage_err(a.cmd, "--tune: %s", pe.msg);
			}
		} else if ((r = opt(&a, NULL, "--tune-file", &v)) != 0) {
			BnErr pe = {0};
			if (r > 0)
				o.tune_file = v;
			if (r < 0 || pass_opts_set(&o.pass_opts, "tune_kernels", "file", v, &pe) != BN_OK ||
			    pass_opts_set(&o.pass_opts, "lut_specialize", "file", v, &pe) != BN_OK) {
				pass_opts_free(&o.pass_opts);
				return r < 0 ? EXIT_USAGE : usage_err(a.cmd, "--tune-file: %s", pe.msg);
			}
		} else if ((r = opt(&a, NULL, "--pipeline", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.pipeline = v;
		} else if ((r = lua_opt(&a, &o.lua)) != 0) {
			if (r < 0) {
				pass_opts_free(&o.pass_opts);
				return EXIT_USAGE;
			}
		} else if ((r = opt(&a, NULL, "--dump-after", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			o.dump_after = v;
		} else if ((r = opt(&a, NULL, "--pass-opt", &v)) != 0) {
			BnErr pe = {0};
			if (r < 0)
				return EXIT_USAGE;
			if (pass_opts_parse(&o.pass_opts, v, &pe) != BN_OK) {
				pass_opts_free(&o.pass_opts);
				return usage_err(a.cmd, "--pass-opt: %s", pe.msg);
			}
		} else if (!positional(&a, emit ? 2 : 1)) {
			pass_opts_free(&o.pass_opts);
			return EXIT_USAGE;
		}
	}
	if (emit && a.n_pos == 2) {
		o.emit_tree = true;
		o.emit_dir = a.pos[1];
		o.lib = CG_LIB_STATIC;
		n_lib = 1;
		n_stages = 4;
	}
	int urc = !need_model(&a) ? EXIT_USAGE
		  : emit && a.n_pos < 2 ? usage_err(a.cmd, "missing DIR (where to write the tree)")
		  : !emit && !o.out ? usage_err(a.cmd, "missing -o OUT (the program to write)") : 0;
	if (urc) {
		pass_opts_free(&o.pass_opts);
		return urc;
	}
	o.path = a.pos[0];
	CgTarget t;
	if (cg_target_find(o.target, &t) != 0) {
		pass_opts_free(&o.pass_opts);
		return usage_err(a.cmd, "--target: unknown target '%s' (buildable: %s; see "
					"'bitnetc targets')", o.target, cg_target_names());
	}
	if (!t.buildable) {
		pass_opts_free(&o.pass_opts);
		return usage_err(a.cmd, "--target %s: the %s backend cannot build programs for it "
					"yet%s (not yet buildable; buildable: %s; see 'bitnetc targets')",
				 o.target, t.backend->name,
				 strcmp(t.backend->name, "cuda") == 0
					 ? ": LLVM 19's PTX goes up to sm_90, and cuda-sm80's runs on "
					   "every later GPU"
					 : "",
				 cg_target_names());
	}
	if ((urc = lib_opts(&a, &o, &t, n_lib, prefix))) {
		pass_opts_free(&o.pass_opts);
		return urc;
	}
	if ((o.cubin || o.host_kernels) && strcmp(t.backend->name, "cuda") != 0) {
		pass_opts_free(&o.pass_opts);
		return usage_err(a.cmd, "%s: only for cuda targets (--target %s is a %s target)",
				 o.cubin ? "--cubin" : "--host-kernels", o.target, t.backend->name);
	}
	if (o.server && (o.lib || strcmp(t.backend->name, "cpu") != 0)) {
		pass_opts_free(&o.pass_opts);
		return usage_err(a.cmd, "--server: only for a program of a CPU target (not %s)",
				 o.lib ? (o.emit_tree ? "emit" : "--lib or --shared") : o.target);
	}
	if (o.server && (urc = server_libs(&o))) {
		pass_opts_free(&o.pass_opts);
		return urc;
	}
	/* before any work: no output may be an input, another output or a special file */
	BnErr fe = {0};
	const char *tree_names[] = {"Makefile", "CMakeLists.txt", "README.md", o.hdr_lib};
	CgBuildFiles files = {.model = o.path, .pipeline = o.pipeline, .out = o.out,
			      .weights = o.weights_file, .tune_file = o.tune_file,
			      .emit_dir = o.emit_dir, .backend = t.backend,
			      .extra = o.emit_tree ? tree_names : NULL, .n_extra = o.emit_tree ? 4 : 0,
			      .emit_role = o.emit_tree ? "emit" : NULL};
	if (cg_build_files_check(&files, &fe) != BN_OK) {
		pass_opts_free(&o.pass_opts);
		return fail(EXIT_RUNTIME, "%s", fe.msg);
	}
	cg_cleanup_install(t.backend);
	int rc = build_model(&o, &t);
	pass_opts_free(&o.pass_opts);
	return rc;
}

int cmd_build(int argc, char **argv)
{
	return build_main(argc, argv, false);
}

int cmd_emit(int argc, char **argv)
{
	return build_main(argc, argv, true);
}
