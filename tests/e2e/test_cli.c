/* test_cli.c - the bitnetc driver end to end: every command on the golden models, usage
 * errors, and hostile or broken files (each a clear message and exit 2, never a crash). */
#include "testutil.h"
#include "frontend.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define P1 "496,84,104,101,32,113,117,105,99,107,32,98,114,111,119,110"
enum { P1_LEN = 16, VOCAB = 512 };

static const char *model(const char *name)
{
	static char buf[4][1024];
	static int slot;
	char *b = buf[slot++ % 4];
	snprintf(b, sizeof buf[0], "%s", tu_data(name));
	return b;
}

/* Runs the driver; asserts its exit status and that the output holds every fragment
 * (NULL-terminated list). Returns the output (caller frees). */
static char *expect(int want_rc, const char *const *frags, const char *fmt, ...) BN_PRINTF(3, 4);
static char *expect(int want_rc, const char *const *frags, const char *fmt, ...)
{
	char args[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	char *out = NULL;
	int rc = tu_run(&out, "%s %s", tu_bitnetc(), args);
	if (rc < 0)
		fail_msg("bitnetc %s: killed by a signal\n%s", args, out ? out : "");
	if (rc != want_rc)
		fail_msg("bitnetc %s: exit %d, expected %d\n%s", args, rc, want_rc, out ? out : "");
	for (const char *const *f = frags; f && *f; f++)
		if (!strstr(out, *f))
			fail_msg("bitnetc %s: output lacks \"%s\":\n%s", args, *f, out);
	return out;
}

/* EXPECT(status, FRAGS("a", "b"), "fmt", args...) */
#define FRAGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define EXPECT(rc, frags, ...) free(expect(rc, frags, __VA_ARGS__))
#define RUN_OK(...) free(expect(0, NULL, __VA_ARGS__))

/* The golden models (sorted paths); returns the count. */
static int golden_models(char paths[][1024], int max)
{
	const char *dir = tu_data("golden/models");
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < max) {
		size_t l = strlen(de->d_name);
		if (l > 5 && strcmp(de->d_name + l - 5, ".gguf") == 0)
			snprintf(paths[n++], 1024, "%s/%s", dir, de->d_name);
	}
	closedir(d);
	qsort(paths, (size_t)n, 1024, (int (*)(const void *, const void *))strcmp);
	return n;
}

/* stdout only (stderr to a file), as a malloc'd string; status in *rc. */
static char *run_stdout(int *rc, const char *fmt, ...) BN_PRINTF(2, 3);
static char *run_stdout(int *rc, const char *fmt, ...)
{
	char args[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	char *out = NULL;
	*rc = tu_run(&out, "{ %s %s 2>'%s'; }", tu_bitnetc(), args, tu_tmp("cli_stderr.txt"));
	return out;
}

static int count_ids(const char *s, int32_t *ids, int max)
{
	int n = 0;
	while (*s && *s != '\n') {
		char *end;
		long v = strtol(s, &end, 10);
		if (end == s)
			return -1;
		if (n < max)
			ids[n] = (int32_t)v;
		n++;
		s = end;
		while (*s == ' ')
			s++;
	}
	return n;
}

/* ---- commands on good models ----------------------------------------------------- */

static void test_golden_models(void **state)
{
	(void)state;
	char m[16][1024];
	int n = golden_models(m, 16);
	assert_true(n >= 4);
	for (int i = 0; i < n; i++) {
		char *out = expect(0, (const char *const[]){"gguf version: 3", "alignment:",
							    "data offset:", "metadata:",
							    "general.architecture", "tensors:",
							    "token_embd.weight", "blk.0.attn_q.weight",
							    "total tensor bytes:", "hyperparameters:",
							    "n_vocab      512", "graph: ok", NULL},
				   "inspect '%s'", m[i]);
		/* Long arrays are abbreviated, not dumped in full. */
		assert_true(strlen(out) < 64 * 1024);
		free(out);
		out = expect(0, (const char *const[]){"graph ", "hparams ", "embed(", "attention(",
						      "ternary_matmul(", "output %", NULL},
			     "ir '%s'", m[i]);
		free(out);

		int rc;
		out = run_stdout(&rc, "run '%s' --tokens 496,84,104 -n 4", m[i]);
		assert_int_equal(rc, 0);
		int32_t ids[8];
		int k = count_ids(out, ids, 8);
		if (k != 4)
			fail_msg("%s: expected 4 ids, got \"%s\"", m[i], out);
		for (int j = 0; j < 4; j++)
			assert_true(ids[j] >= 0 && ids[j] < VOCAB);
		free(out);
		char *err = tu_read_file(tu_tmp("cli_stderr.txt"), NULL);
		assert_non_null(strstr(err, "tok/s"));
		free(err);
	}
}

/* Greedy continuations agree with the reference where its choice is clear (top-2
 * margin > 0.27 for the first three steps of p1), in batch and step prompt modes. */
static void test_run_matches_reference(void **state)
{
	(void)state;
	const char *names[] = {"golden/models/tiny-b158-i2_s.gguf", "golden/models/tiny-b158-tq2_0.gguf"};
	for (int i = 0; i < 2; i++) {
		for (int step = 0; step < 2; step++) {
			int rc;
			char *out = run_stdout(&rc, "run '%s' --tokens " P1 " -n 3%s",
					       model(names[i]), step ? " --step" : "");
			assert_int_equal(rc, 0);
			assert_string_equal(out, "28 28 28\n");
			free(out);
		}
	}
	/* -n 0: evaluate only, print nothing. */
	int rc;
	char *out = run_stdout(&rc, "run '%s' --tokens 496,1 -n 0", model(names[0]));
	assert_int_equal(rc, 0);
	assert_string_equal(out, "");
	free(out);
}

/* --logits-out: prompt rows then one row per generated token, as in ../shared/golden. */
static void test_logits_out(void **state)
{
	(void)state;
	const char *lpath = tu_tmp("cli_logits.f32");
	int rc;
	char *out = run_stdout(&rc, "run '%s' --tokens " P1 " -n 3 --step --logits-out '%s'",
			       model("golden/models/tiny-b158-i2_s.gguf"), lpath);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "28 28 28\n");
	free(out);
	size_t n;
	float *got = tu_read_file(lpath, &n);
	assert_non_null(got);
	assert_int_equal(n, (size_t)(P1_LEN + 3) * VOCAB * sizeof(float));
	size_t np, ng;
	float *pr = tu_read_file(tu_data("golden/logits/tiny-b158-i2_s.p1.step.prompt.f32"), &np);
	float *gr = tu_read_file(tu_data("golden/logits/tiny-b158-i2_s.p1.step.gen.f32"), &ng);
	assert_non_null(pr);
	assert_non_null(gr);
	assert_int_equal(np, (size_t)P1_LEN * VOCAB * sizeof(float));
	/* Row r of the file against the reference's row r (prompt, then generated). */
	for (int r = 0; r < P1_LEN + 3; r++) {
		const float *ref = r < P1_LEN ? pr + (size_t)r * VOCAB : gr + (size_t)(r - P1_LEN) * VOCAB;
		float md = 0;
		for (int j = 0; j < VOCAB; j++) {
			float d = got[(size_t)r * VOCAB + j] - ref[j];
			md = d < 0 ? (-d > md ? -d : md) : (d > md ? d : md);
		}
		if (!(md <= 0.15f))
			fail_msg("row %d: max |d| %g against the reference", r, (double)md);
	}
	free(got);
	free(pr);
	free(gr);

	/* An unwritable --logits-out is a runtime error naming the path. */
	EXPECT(2, FRAGS("no/such/dir/x.f32", "cannot open"),
	       "run '%s' --tokens 1 -n 1 --logits-out '%s'",
	       model("golden/models/tiny-b158-i2_s.gguf"), tu_tmp("no/such/dir/x.f32"));
}

static void test_info_commands(void **state)
{
	(void)state;
	EXPECT(0, FRAGS("bitnetc 0.1.0", "LLVM 19.", "NVPTX backend: yes", "CPU features:"), "version");
	EXPECT(0, FRAGS("bitnetc 0.1.0"), "--version");
	EXPECT(0, FRAGS("cpu-generic", "cpu-avx2", "cpu-avx512", "native", "cuda-sm", "metal",
	       "needs macOS"), "targets");
	/* the CUDA targets build here (usable only where their GPU is); Metal builds its
	 * project, linked on macOS alone */
#if defined(__APPLE__)
	EXPECT(0, FRAGS("cuda-sm80 ", "cuda-sm90 ", "cuda ", "NVPTX", "metal        yes ", "macOS host"),
	       "targets");
#else
	EXPECT(0, FRAGS("cuda-sm80 ", "cuda-sm90 ", "cuda ", "NVPTX", "metal        no ",
	       "needs macOS to link and run"), "targets");
#endif
	EXPECT(0, FRAGS("usage: bitnetc COMMAND", "inspect", "mkmodel"), "help");
	EXPECT(0, FRAGS("usage: bitnetc COMMAND"), "--help");
	EXPECT(0, FRAGS("usage: bitnetc run", "--logits-out", "--step"), "help run");
	EXPECT(0, FRAGS("usage: bitnetc help"), "help --help");
	const char *cmds[] = {"inspect", "ir", "run", "mkmodel", "version", "targets"};
	for (int i = 0; i < 6; i++)
		EXPECT(0, FRAGS("usage: bitnetc ", cmds[i]), "%s --help", cmds[i]);
	EXPECT(0, FRAGS("dce", "requires"), "ir --list-passes");
	/* ir --pass dce: output.weight-free graph that still verifies and prints. */
	EXPECT(0, FRAGS("output %"), "ir '%s' --pass dce", model("golden/models/tiny-b158-i2_s.gguf"));
	/* ir takes build's --pass-opt, --dump-after and --target: the options reach the passes */
	const char *g = model("golden/models/tiny-b158-i2_s.gguf");
	char *out = expect(0, FRAGS("layout=i2s_x16"), "ir '%s' --pass permute_weights --target "
			   "cpu-avx2", g);
	free(out);
	out = expect(0, FRAGS("layout=gguf"), "ir '%s' --pass permute_weights --target cpu-avx2 "
		     "--pass-opt permute_weights.layout=gguf", g);
	assert_null(strstr(out, "i2s_x16"));
	free(out);
	out = expect(0, FRAGS("# after permute_weights", "layout=gguf"), "ir '%s' --pipeline "
		     "default --target cpu-avx2 --pass-opt permute_weights.layout=gguf --dump-after "
		     "permute_weights", g);
	assert_null(strstr(out, "i2s_x16"));
	free(out);
}

/* ---- usage errors (exit 1) ----------------------------------------------------------- */

static void test_usage_errors(void **state)
{
	(void)state;
	const char *m = model("golden/models/tiny-b158-i2_s.gguf");
	EXPECT(1, FRAGS("usage: bitnetc COMMAND"), "%s", "");
	EXPECT(1, FRAGS("bitnetc: unknown command 'frobnicate'"), "frobnicate");
	EXPECT(1, FRAGS("unknown option '--frob'"), "--frob");
	EXPECT(1, FRAGS("bitnetc: run: unknown option '--frob'"), "run '%s' --frob", m);
	EXPECT(1, FRAGS("bitnetc: inspect: unknown option '-x'"), "inspect -x '%s'", m);
	EXPECT(1, FRAGS("inspect: missing MODEL.gguf"), "inspect");
	EXPECT(1, FRAGS("ir: missing MODEL.gguf"), "ir");
	EXPECT(1, FRAGS("inspect: unexpected argument 'b.gguf'"), "inspect a.gguf b.gguf");
	EXPECT(1, FRAGS("run: missing --tokens"), "run '%s'", m);
	EXPECT(1, FRAGS("run: missing MODEL.gguf"), "run --tokens 1");
	EXPECT(1, FRAGS("--tokens", "item 2", "empty"), "run '%s' --tokens 1,,2", m);
	EXPECT(1, FRAGS("--tokens", "item 2", "\"x\""), "run '%s' --tokens 1,x", m);
	EXPECT(1, FRAGS("--tokens", "out of range"), "run '%s' --tokens 99999999999", m);
	EXPECT(1, FRAGS("option --tokens needs a value"), "run '%s' --tokens", m);
	EXPECT(1, FRAGS("-n: 'abc' is not a number"), "run '%s' --tokens 1 -n abc", m);
	EXPECT(1, FRAGS("-n: -2 is out of range"), "run '%s' --tokens 1 -n -2", m);
	EXPECT(1, FRAGS("option -n needs a value"), "run '%s' --tokens 1 -n", m);
	EXPECT(1, FRAGS("-c: '12x' is not a number"), "run '%s' --tokens 1 -c 12x", m);
	EXPECT(1, FRAGS("-c: 0 is out of range"), "run '%s' --tokens 1 -c 0", m);
	/* Token ids are checked against the model's vocabulary. */
	EXPECT(1, FRAGS("item 3 is token id 512", "512 tokens", "ids 0..511"),
	       "run '%s' --tokens 496,1,512", m);
	/* Prompt + generation must fit the context. */
	EXPECT(1, FRAGS("needs 12 positions", "context is 8"),
	       "run '%s' --tokens 1,2 -n 10 -c 8", m);
	EXPECT(1, FRAGS("version: unexpected argument 'x'"), "version x");
	EXPECT(1, FRAGS("targets: unknown option '--all'"), "targets --all");
	/* a target that is listed but does not build yet, and one nobody knows: usage errors
	 * that say which, before any work */
	const char *prog = tu_tmp("cli-gpu-prog");
	unlink(prog);
	EXPECT(1, FRAGS("build: --target cuda-sm100: the cuda backend cannot build programs for it yet",
	       "not yet buildable", "buildable: cpu-generic,", "cuda-sm90"),
	       "build '%s' -o '%s' --target cuda-sm100", m, prog);
	EXPECT(1, FRAGS("--cubin: only for cuda targets"), "build '%s' -o '%s' --cubin", m, prog);
	EXPECT(1, FRAGS("--host-kernels: only for cuda targets"),
	       "build '%s' -o '%s' --target cpu-generic --host-kernels", m, prog);
#if !defined(__APPLE__)
	EXPECT(2, FRAGS("--target metal: linking a Metal program needs macOS", "--emit-c DIR"),
	       "build '%s' -o '%s' --target metal", m, prog);
#endif
	EXPECT(1, FRAGS("--target: unknown target 'cuda-smx'", "see 'bitnetc targets'"),
	       "build '%s' -o '%s' --target cuda-smx", m, prog);
	assert_int_equal(access(prog, F_OK), -1);
	EXPECT(1, FRAGS("help: unknown command 'nope'"), "help nope");
	EXPECT(1, FRAGS("--pass: no pass named 'nope'"), "ir '%s' --pass nope", m);
	EXPECT(1, FRAGS("--target: unknown target 'cpu-zz'"), "ir '%s' --target cpu-zz", m);
	EXPECT(1, FRAGS("--dump-after: no pass named 'nope'"), "ir '%s' --dump-after nope", m);
	EXPECT(1, FRAGS("--pass-opt", "no pass named 'nope'"), "ir '%s' --pass-opt nope.x=1", m);
	EXPECT(1, FRAGS("mkmodel: missing -o FILE"), "mkmodel --shape tiny");
	EXPECT(1, FRAGS("--shape: unknown shape 'huge'"), "mkmodel --shape huge -o x.gguf");
	EXPECT(1, FRAGS("--type: unknown ternary format 'q4_0'"), "mkmodel --type q4_0 -o x.gguf");
	EXPECT(1, FRAGS("--embd-type: unknown type 'q4_k'"), "mkmodel --embd-type q4_k -o x.gguf");
	EXPECT(1, FRAGS("--arch: unknown architecture 'gemma'"), "mkmodel --arch gemma -o x.gguf");
	EXPECT(1, FRAGS("--layers: 'two' is not a number"), "mkmodel --layers two -o x.gguf");
	EXPECT(1, FRAGS("--hidden: 0 is out of range"), "mkmodel --hidden 0 -o x.gguf");
	EXPECT(1, FRAGS("mkmodel: unexpected argument 'extra'"), "mkmodel -o x.gguf extra");
	/* a vocabulary directory sets n_vocab; a --vocab that disagrees is named */
	const char *vm = tu_tmp("cli-l3v.gguf");
	EXPECT(0, FRAGS("vocab 128256"), "mkmodel --shape tiny --llama3-vocab --layers 1 --hidden 128 "
	       "--ffn 128 --heads 2 --kv-heads 1 -o '%s'", vm);
	EXPECT(2, FRAGS("the vocabulary has 128256 tokens", "n_vocab is 512"),
	       "mkmodel --shape tiny --llama3-vocab --layers 1 --vocab 512 -o '%s'", vm);
	unlink(vm);
}

/* ---- bad files (exit 2, message naming the file and the problem) -------------------- */

/* Every model command on path fails with exit 2 and a message holding path and what. */
static void bad_file(const char *path, const char *what, const char *what2)
{
	const char *cmds[][2] = {{"inspect", ""}, {"ir", ""}, {"run", " --tokens 1 -n 1"}};
	for (int i = 0; i < 3; i++) {
		char args[2048];
		snprintf(args, sizeof args, "%s '%s'%s", cmds[i][0], path, cmds[i][1]);
		free(expect(2, (const char *const[]){"bitnetc: ", path, what, what2, NULL}, "%s",
			    args));
	}
}

static unsigned char *golden_bytes(size_t *n)
{
	unsigned char *b = tu_read_file(model("golden/models/tiny-b158-i2_s.gguf"), n);
	assert_non_null(b);
	assert_true(*n > 4096);
	return b;
}

static const char *write_tmp(const char *name, const void *data, size_t n)
{
	const char *p = tu_tmp(name);
	assert_int_equal(tu_write_file(p, data, n), 0);
	return p;
}

static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Offset just past the name of tensor info `name` (where n_dims starts). */
static size_t tensor_info_at(const unsigned char *b, size_t n, const char *name)
{
	size_t l = strlen(name);
	unsigned char pat[128];
	put_le64(pat, l);
	memcpy(pat + 8, name, l);
	for (size_t i = 0; i + 8 + l <= n; i++)
		if (memcmp(b + i, pat, 8 + l) == 0)
			return i + 8 + l;
	fail_msg("tensor info for %s not found", name);
	return 0;
}

static void test_missing_and_truncated(void **state)
{
	(void)state;
	bad_file(tu_tmp("does-not-exist.gguf"), "No such file", NULL);
	size_t n;
	unsigned char *b = golden_bytes(&n);
	bad_file(write_tmp("cut-half.gguf", b, n / 2), "offset", "runs past the end of the file");
	/* Cut inside the metadata and inside the tensor table. */
	bad_file(write_tmp("cut-100.gguf", b, 100), "truncated", NULL);
	BnErr e = {0};
	GgufFile *f = gguf_open(model("golden/models/tiny-b158-i2_s.gguf"), &e);
	assert_non_null(f);
	size_t cut = (size_t)f->data_offset - 40; /* alignment padding is < 32 bytes */
	gguf_close(f);
	bad_file(write_tmp("cut-header.gguf", b, cut), "truncated", NULL);
	bad_file(write_tmp("cut-magic.gguf", b, 3), "truncated", NULL);
	bad_file(write_tmp("empty.gguf", b, 0), "truncated", NULL);
	free(b);
}

static void test_hostile_headers(void **state)
{
	(void)state;
	size_t n;
	unsigned char *b = golden_bytes(&n);
	unsigned char *c = malloc(n);

	memcpy(c, b, n);
	memcpy(c, "GGUX", 4);
	bad_file(write_tmp("bad-magic.gguf", c, n), "magic", "GGUX");

	memcpy(c, b, n);
	put_le64(c + 8, UINT64_C(0x7fffffffffffffff));
	bad_file(write_tmp("huge-tensors.gguf", c, n), "n_tensors", "huge tensor count");

	memcpy(c, b, n);
	put_le64(c + 16, UINT64_MAX);
	bad_file(write_tmp("huge-kv.gguf", c, n), "n_kv", NULL);

	memcpy(c, b, n);
	put_le32(c + 4, 99);
	bad_file(write_tmp("bad-version.gguf", c, n), "version", "99");

	/* The last tensor's offset far beyond the end (still aligned). */
	const char *tname = "output_norm.weight";
	size_t at = tensor_info_at(b, n, tname);
	uint32_t nd = (uint32_t)b[at] | (uint32_t)b[at + 1] << 8;
	size_t type_at = at + 4 + 8 * nd, off_at = type_at + 4;
	memcpy(c, b, n);
	put_le64(c + off_at, UINT64_C(1) << 40);
	bad_file(write_tmp("bad-offset.gguf", c, n), tname, "runs past the end of the file");

	/* An offset so large that offset + size overflows. */
	memcpy(c, b, n);
	put_le64(c + off_at, UINT64_MAX - 31);
	bad_file(write_tmp("wrap-offset.gguf", c, n), tname, "offset");

	memcpy(c, b, n);
	put_le32(c + type_at, 99);
	bad_file(write_tmp("bad-type.gguf", c, n), tname, "type 99");

	/* Type 39: TL2 in the BitNet fork, MXFP4 upstream; named, not decoded. */
	memcpy(c, b, n);
	put_le32(c + type_at, 39);
	bad_file(write_tmp("type-39.gguf", c, n), tname, "not supported");

	/* A huge dimension. */
	memcpy(c, b, n);
	put_le64(c + at + 4, UINT64_C(1) << 62);
	bad_file(write_tmp("huge-dim.gguf", c, n), tname, NULL);
	free(c);
	free(b);
}

/* A valid GGUF of an architecture bitnetc does not know: inspect shows it and says so
 * (exit 0); ir and run refuse it. Written with the GGUF writer, keys renamed. */
static void test_unknown_arch(void **state)
{
	(void)state;
	BnErr e = {0};
	GgufFile *f = gguf_open(model("golden/models/tiny-b158-i2_s.gguf"), &e);
	if (!f)
		fail_msg("%s", e.msg);
	GgufWriter *w = gguf_writer_new();
	const char *old = "bitnet-b1.58.";
	for (uint64_t i = 0; i < f->n_kv; i++) {
		const GgufKV *kv = &f->kv[i];
		char key[512];
		if (strncmp(kv->key, old, strlen(old)) == 0)
			snprintf(key, sizeof key, "llama2000.%s", kv->key + strlen(old));
		else
			snprintf(key, sizeof key, "%s", kv->key);
		if (strcmp(key, "general.architecture") == 0) {
			gguf_writer_str(w, key, "llama2000");
		} else if (kv->val.type == GGUF_T_ARRAY) {
			/* In the file an array is elem type (u32) + count (u64) + elements. */
			gguf_writer_raw(w, key, GGUF_T_ARRAY, kv->val.data - 12, kv->val.size + 12);
		} else {
			gguf_writer_raw(w, key, kv->val.type, kv->val.data, kv->val.size);
		}
	}
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		assert_int_equal(gguf_writer_tensor(w, t->name, t->ggml_type, t->n_dims, t->ne, t->data,
						    t->nbytes, &e),
				 BN_OK);
	}
	const char *path = tu_tmp("llama2000.gguf");
	if (gguf_writer_write(w, path, &e))
		fail_msg("%s", e.msg);
	gguf_writer_free(w);
	gguf_close(f);

	EXPECT(0, FRAGS("llama2000.context_length", "tensors:", "token_embd.weight",
	       "architecture: llama2000 is not supported"), "inspect '%s'", path);
	const char *cmds[][2] = {{"ir", ""}, {"run", " --tokens 1 -n 1"}};
	for (int i = 0; i < 2; i++) {
		char args[2048];
		snprintf(args, sizeof args, "%s '%s'%s", cmds[i][0], path, cmds[i][1]);
		EXPECT(2, FRAGS(path, "unknown architecture 'llama2000'"), "%s", args);
	}
}

/* A model whose arch is known but a tensor is missing: inspect says so and exits 2. */
static void test_broken_model(void **state)
{
	(void)state;
	size_t n;
	unsigned char *b = golden_bytes(&n);
	/* Rename a tensor in place (same length), so the frontend cannot find it. */
	const char *tname = "blk.1.ffn_up.weight";
	size_t at = tensor_info_at(b, n, tname);
	memcpy(b + at - strlen(tname), "blk.1.ffn_UP.weight", strlen(tname));
	const char *path = write_tmp("missing-tensor.gguf", b, n);
	EXPECT(2, FRAGS("graph: error:", "blk.1.ffn_up.weight"), "inspect '%s'", path);
	EXPECT(2, FRAGS(path, "blk.1.ffn_up.weight"), "run '%s' --tokens 1", path);
	free(b);
}

/* Generation stops at the end-of-text id (here patched to the model's first greedy choice,
 * 28) unless --ignore-eos; with --logits-out the stopping token still gets its row. */
static void test_eos(void **state)
{
	(void)state;
	size_t n;
	unsigned char *b = golden_bytes(&n);
	const char *key = "tokenizer.ggml.eos_token_id";
	size_t kl = strlen(key), at = 0;
	for (size_t i = 0; i + kl + 8 <= n && !at; i++)
		if (memcmp(b + i, key, kl) == 0)
			at = i + kl;
	assert_true(at > 0);
	assert_int_equal(b[at], GGUF_T_U32); /* value type u32, then the value */
	assert_int_equal(b[at + 4] | b[at + 5] << 8, 497);
	put_le32(b + at + 4, 28);
	const char *path = write_tmp("eos28.gguf", b, n);
	free(b);

	int rc;
	char *out = run_stdout(&rc, "run '%s' --tokens " P1 " -n 5", path);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "28\n");
	free(out);
	char *err = tu_read_file(tu_tmp("cli_stderr.txt"), NULL);
	assert_non_null(strstr(err, "stopped at end-of-text"));
	free(err);
	out = run_stdout(&rc, "run '%s' --tokens " P1 " -n 3 --ignore-eos", path);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "28 28 28\n");
	free(out);
	const char *lpath = tu_tmp("cli_eos.f32");
	out = run_stdout(&rc, "run '%s' --tokens " P1 " -n 5 --logits-out '%s'", path, lpath);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "28\n");
	free(out);
	void *l = tu_read_file(lpath, &n);
	assert_non_null(l);
	assert_int_equal(n, (size_t)(P1_LEN + 1) * VOCAB * sizeof(float));
	free(l);
}

/* ---- mkmodel ------------------------------------------------------------------------ */

static void test_mkmodel(void **state)
{
	(void)state;
	const struct {
		const char *args, *file;
	} cases[] = {
		{"--shape tiny --type i2_s --seed 1", "mk-i2s.gguf"},
		{"--shape tiny --type tq1_0 --seed 2 --layers 1", "mk-tq1.gguf"},
		{"--shape tiny --type tq2_0 --seed 3 --layers 1 --embd-type q8_0", "mk-tq2.gguf"},
		{"--arch bitnet --type i2_s --scales --seed 4 --layers 2", "mk-old.gguf"},
		{"--layers 1 --hidden 256 --ffn 512 --heads 4 --kv-heads 4 --vocab 300 --embd-type q6_k",
		 "mk-shape.gguf"},
		{"--shape tinyllama --type tq2_0 --seed 5 --layers 2", "mk-llama.gguf"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *p = tu_tmp(cases[i].file);
		EXPECT(0, FRAGS("wrote "), "mkmodel %s -o '%s'", cases[i].args, p);
		EXPECT(0, FRAGS("graph: ok"), "inspect '%s'", p);
		int rc;
		char *out = run_stdout(&rc, "run '%s' --tokens 1,2,3 -n 2 --ignore-eos", p);
		assert_int_equal(rc, 0);
		int32_t ids[4];
		if (count_ids(out, ids, 4) != 2)
			fail_msg("%s: expected 2 ids, got \"%s\"", cases[i].file, out);
		free(out);
	}
	/* F16 (unquantized ternary) files are written for other tools; the interpreter's
	 * projections are int8 x ternary, so bitnetc itself may refuse them, but clearly. */
	const char *f16 = tu_tmp("mk-f16.gguf");
	EXPECT(0, FRAGS("wrote ", "f16 weights"), "mkmodel --type f16 --layers 1 -o '%s'", f16);
	char *out = NULL;
	int rc = tu_run(&out, "%s inspect '%s'", tu_bitnetc(), f16);
	assert_non_null(strstr(out, "blk.0.attn_q.weight"));
	if (rc != 0 && !(rc == 2 && strstr(out, "f16")))
		fail_msg("inspect of an F16 model: exit %d\n%s", rc, out);
	free(out);

	/* arch llama reads only ternary projections: the generator does not write others */
	EXPECT(2, FRAGS("arch llama reads only ternary projections"),
	       "mkmodel --shape tinyllama --type f16 -o '%s'", tu_tmp("mk-llama-f16.gguf"));

	/* Same seed, same bytes. */
	const char *a = tu_tmp("mk-same-a.gguf"), *b = tu_tmp("mk-same-b.gguf");
	RUN_OK("mkmodel --seed 9 --layers 1 -o '%s'", a);
	RUN_OK("mkmodel --seed 9 --layers 1 -o '%s'", b);
	size_t na, nb;
	void *da = tu_read_file(a, &na), *db = tu_read_file(b, &nb);
	assert_int_equal(na, nb);
	assert_memory_equal(da, db, na);
	free(da);
	free(db);
	/* An unwritable output is a runtime error naming it. */
	EXPECT(2, FRAGS("no/such/dir/m.gguf"), "mkmodel -o '%s'", tu_tmp("no/such/dir/m.gguf"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_models),
		cmocka_unit_test(test_run_matches_reference),
		cmocka_unit_test(test_logits_out),
		cmocka_unit_test(test_info_commands),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_missing_and_truncated),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_unknown_arch),
		cmocka_unit_test(test_broken_model),
		cmocka_unit_test(test_eos),
		cmocka_unit_test(test_mkmodel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
