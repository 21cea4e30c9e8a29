/* test_backend.c - the backend registry (cg_backend.c): every target `bitnetc targets` lists
 * resolves in build's lookup and the other way round, targets that do not build yet say so,
 * a backend registered here (two artifacts and a runtime file) goes through the build's
 * writing of the sources, its host lines and --emit-c names go through `bitnetc version`'s
 * and the build's file checks, and the passes see a target through its backend. */
#include "testutil.h"
#include "cg.h"
#include "cg_out.h"
#include "pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_T = 64 };

/* A listed name as --target takes it: a family "cuda-sm<NN>" as one of its members. */
static void member(const char *listed, char *buf, size_t n)
{
	const char *nn = strstr(listed, "<NN>");
	if (nn)
		snprintf(buf, n, "%.*s80", (int)(nn - listed), listed);
	else
		snprintf(buf, n, "%s", listed);
}

static void test_listed_targets_resolve(void **state)
{
	(void)state;
	CgTargetInfo t[MAX_T];
	int n = cg_targets_list(t, MAX_T);
	assert_true(n >= 9); /* 7 CPU, cuda, metal */
	for (int i = 0; i < n; i++) {
		char name[64];
		member(t[i].name, name, sizeof name);
		CgTarget r;
		if (cg_target_find(name, &r) != 0)
			fail_msg("'%s' is listed but build's lookup does not know it", name);
		assert_string_equal(r.backend->name, t[i].backend);
		assert_string_equal(r.name, name);
		if (r.buildable != t[i].buildable)
			fail_msg("%s: listed as %sbuildable, the lookup says the opposite", name,
				 t[i].buildable ? "" : "not ");
	}
	assert_int_equal(cg_targets_list(t, 2), 2); /* honours max */
}

/* Every name build's messages offer builds, and is listed as buildable. */
static void test_buildable_names_listed(void **state)
{
	(void)state;
	CgTargetInfo t[MAX_T];
	int n = cg_targets_list(t, MAX_T);
	char names[1024];
	snprintf(names, sizeof names, "%s", cg_target_names());
	int seen = 0;
	for (char *save = NULL, *w = strtok_r(names, ", ", &save); w;
	     w = strtok_r(NULL, ", ", &save), seen++) {
		CgTarget r;
		assert_int_equal(cg_target_find(w, &r), 0);
		assert_true(r.buildable);
		bool listed = false;
		for (int i = 0; i < n; i++)
			listed |= strcmp(t[i].name, w) == 0 && t[i].buildable;
		if (!listed)
			fail_msg("'%s' builds but 'bitnetc targets' does not list it as buildable", w);
	}
	int want = 0;
	for (int i = 0; i < n; i++)
		want += t[i].buildable;
	assert_int_equal(seen, want);
	assert_string_equal(cg_target_names(), "cpu-generic, cpu-avx2, cpu-avx512, cpu-amx, "
					       "cpu-neon, cpu-neon-dot, cpu-sve, cpu-rv64, cpu-rvv, native, "
					       "cuda-sm80, cuda-sm86, "
					       "cuda-sm89, cuda-sm90, cuda, metal");
}

static void test_lookup(void **state)
{
	(void)state;
	CgTarget r;
	static const char *const unknown[] = {"cpu-quantum", "", "cuda-sm", "cuda-sm8",
					      "cuda-sm80x", "cuda-sm1000", "metal2", "host"};
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
		if (cg_target_find(unknown[i], &r) == 0)
			fail_msg("'%s' resolved to backend %s", unknown[i], r.backend->name);
	assert_int_equal(cg_target_find(NULL, &r), -1);
	/* the CUDA backend builds the capabilities LLVM 19 has PTX for; it claims later ones
	 * (cuda-sm100) without building them; Metal claims and builds its target (linked on
	 * macOS alone) */
	static const struct {
		const char *name, *backend;
		bool buildable;
	} gpu[] = {{"cuda-sm80", "cuda", true}, {"cuda-sm90", "cuda", true}, {"cuda", "cuda", true},
		   {"cuda-sm100", "cuda", false}, {"cuda-sm75", "cuda", false},
		   {"metal", "metal", true}};
	for (size_t i = 0; i < sizeof gpu / sizeof gpu[0]; i++) {
		assert_int_equal(cg_target_find(gpu[i].name, &r), 0);
		assert_string_equal(r.backend->name, gpu[i].backend);
		assert_int_equal(r.buildable, gpu[i].buildable);
	}
	assert_non_null(strstr(cg_target_names(), "metal"));
	assert_int_equal(cg_target_find("cpu-avx2", &r), 0);
	assert_string_equal(r.backend->name, "cpu");
	assert_true(r.buildable);
	assert_non_null(r.backend->emit);
	assert_non_null(r.backend->build);
	assert_int_equal(r.backend->product, CG_PRODUCT_EXECUTABLE);
	/* the passes get the CPU backend for a name nobody claims */
	int nb;
	const CgBackend *const *all = cg_backends(&nb);
	assert_true(nb >= 3);
	assert_string_equal(all[0]->name, "cpu");
	assert_ptr_equal(cg_backend_of("cpu-quantum"), all[0]);
	assert_string_equal(cg_backend_of("cuda-sm80")->name, "cuda");
}

/* ---- a backend of the test's own ------------------------------------------------------- */

static const char fake_bin[] = {'P', 'T', 'X', 0, 1, 2, 0, 3};
static const unsigned char fake_rt_text[] = "int fake_runtime;\n";
static const CgSource fake_rt[] = {{"fake_rt.c", fake_rt_text, sizeof fake_rt_text - 1}};

static int fake_targets(CgTargetInfo *out, int max)
{
	static const char *const names[] = {"fake-a", "fake-b"};
	int n = 0;
	for (; n < 2 && n < max; n++) {
		memset(&out[n], 0, sizeof out[n]);
		out[n].name = names[n];
		out[n].backend = "fake";
		out[n].desc = "a test backend";
		out[n].usable = true;
		out[n].buildable = n == 0;
	}
	return n;
}

static bool fake_claims(const char *name)
{
	return name && (strcmp(name, "fake-a") == 0 || strcmp(name, "fake-b") == 0);
}

static bool fake_buildable(const char *name)
{
	return strcmp(name, "fake-a") == 0;
}

static int fake_emit(const IrGraph *g, const CgOpts *o, CgOutput *out, BnErr *e)
{
	(void)g;
	memset(out, 0, sizeof *out);
	CgBuf *src = cg_output_add(out, "kernels.fk", CG_ART_SOURCE);
	CgBuf *bin = cg_output_add(out, "kernels.bin", CG_ART_BINARY);
	if (!src || !bin)
		return bn_err(e, BN_ENOMEM, "out of memory");
	cg_printf(src, "target %s\n", o->target);
	for (size_t i = 0; i < sizeof fake_bin; i++)
		cg_printf(bin, "%c", fake_bin[i]);
	return src->oom || bin->oom ? bn_err(e, BN_ENOMEM, "out of memory") : 0;
}

static const CgSource *fake_runtime(int *n)
{
	*n = 1;
	return fake_rt;
}

static int fake_build(const CgOpts *o, const char *dir, const char *out_path, const char *shown,
		      char *cmd, size_t cmd_n, BnErr *e)
{
	(void)o, (void)dir, (void)out_path, (void)shown, (void)cmd, (void)cmd_n;
	return bn_err(e, BN_EUNSUPPORTED, "not called here");
}

static int fake_emit_files(const char **names, int max)
{
	static const char *const mine[] = {"kernels.fk", "kernels.bin", "fake_rt.c"};
	int n = 0;
	for (; n < 3 && n < max; n++)
		names[n] = mine[n];
	return n;
}

static void fake_tools_info(char *buf, size_t n)
{
	snprintf(buf, n, "fake tools: 1\n");
}

static void fake_host_info(char *buf, size_t n)
{
	snprintf(buf, n, "fake host: 2\n");
}

static const CgBackend fake = {
	.name = "fake",
	.desc = "a test backend",
	.targets = fake_targets,
	.claims = fake_claims,
	.buildable = fake_buildable,
	.emit = fake_emit,
	.runtime = fake_runtime,
	.build = fake_build,
	.emit_files = fake_emit_files,
	.product = CG_PRODUCT_EXECUTABLE,
	.tools_info = fake_tools_info,
	.host_info = fake_host_info,
};

static void expect_file(const char *dir, const char *name, const void *want, size_t n)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	size_t got_n;
	char *got = tu_read_file(path, &got_n);
	if (!got)
		fail_msg("%s was not written", path);
	assert_int_equal(got_n, n);
	assert_memory_equal(got, want, n);
	free(got);
}

static void test_fake_backend(void **state)
{
	(void)state;
	assert_int_equal(cg_backend_register(&fake), 0);
	CgTarget r;
	assert_int_equal(cg_target_find("fake-a", &r), 0);
	assert_ptr_equal(r.backend, &fake);
	assert_true(r.buildable);
	assert_int_equal(cg_target_find("fake-b", &r), 0);
	assert_false(r.buildable);
	/* listed after the built-in ones; only fake-a builds */
	CgTargetInfo t[MAX_T];
	int n = cg_targets_list(t, MAX_T);
	assert_string_equal(t[n - 2].name, "fake-a");
	assert_string_equal(t[n - 1].name, "fake-b");
	assert_non_null(strstr(cg_target_names(), "fake-a"));
	assert_null(strstr(cg_target_names(), "fake-b"));

	/* emit, then the build's writing of the sources: both artifacts byte for byte, and the
	 * backend's runtime beside them */
	CgOpts o = {.target = "fake-a", .max_batch = 1};
	CgOutput out;
	BnErr e = {0};
	assert_int_equal(cg_target_find("fake-a", &r), 0);
	assert_int_equal(r.backend->emit(NULL, &o, &out, &e), 0);
	assert_int_equal(out.n_art, 2);
	assert_int_equal(cg_output_find(&out, "kernels.bin")->kind, CG_ART_BINARY);
	const char *dir = tu_tmp("fake-backend");
	char cmd[1300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	assert_int_equal(system(cmd), 0);
	if (cg_sources_write(r.backend, dir, &out, &e))
		fail_msg("%s", e.msg);
	expect_file(dir, "kernels.fk", "target fake-a\n", 14);
	expect_file(dir, "kernels.bin", fake_bin, sizeof fake_bin);
	expect_file(dir, "fake_rt.c", fake_rt_text, sizeof fake_rt_text - 1);
	/* an artifact that cannot be written: the error names the file */
	snprintf(cmd, sizeof cmd, "rm -f '%s/kernels.bin' && mkdir '%s/kernels.bin'", dir, dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(cg_sources_write(r.backend, dir, &out, &e), BN_EIO);
	assert_non_null(strstr(e.msg, "kernels.bin"));
	cg_output_free(&out);
	assert_int_equal(out.n_art, 0);

	cg_backend_unregister(&fake);
	assert_int_equal(cg_target_find("fake-a", &r), -1);
	assert_int_equal(cg_targets_list(t, MAX_T), n - 2);
}

/* `bitnetc version`'s host lines: every backend's tools, then every backend's host, each in
 * registry order (a registered backend last in both). */
static void test_host_info(void **state)
{
	(void)state;
	char buf[8192];
	cg_host_info(buf, sizeof buf);
	assert_null(strstr(buf, "fake"));
	assert_int_equal(cg_backend_register(&fake), 0);
	cg_host_info(buf, sizeof buf);
	cg_backend_unregister(&fake);
	const char *llvm = strstr(buf, "LLVM "), *tools = strstr(buf, "fake tools: 1\n");
	const char *cpu = strstr(buf, "host: "), *host = strstr(buf, "fake host: 2\n");
	if (!llvm || !tools || !cpu || !host)
		fail_msg("a line is missing:\n%s", buf);
	assert_ptr_equal(llvm, buf); /* the CPU backend has no tools line */
	assert_true(llvm < tools && tools < cpu && cpu < host);
	assert_string_equal(host, "fake host: 2\n");
	/* cut at n: a prefix, NUL-terminated */
	char small[8];
	cg_host_info(small, sizeof small);
	assert_int_equal(strlen(small), sizeof small - 1);
	assert_memory_equal(small, buf, sizeof small - 1);
}

static void put_file(const char *dir, const char *name, const char *text)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* --emit-c DIR refuses to overwrite files of the names the backend writes there
 * (emit_files) that an earlier --emit-c did not write, whatever the backend: here the
 * registered one's, whose main source is kernels.fk. */
static void test_emit_files(void **state)
{
	(void)state;
	const char *dir = tu_tmp("fake-emit");
	char cmd[1300], out[1200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(out, sizeof out, "%s.prog", dir);
	CgBuildFiles f = {.out = out, .emit_dir = dir, .backend = &fake};
	BnErr e = {0};
	/* another backend's names are not this one's */
	put_file(dir, "model.c", "int x;\n");
	if (cg_build_files_check(&f, &e))
		fail_msg("%s", e.msg);
	put_file(dir, "kernels.bin", "x");
	assert_int_equal(cg_build_files_check(&f, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "kernels.bin: --emit-c would overwrite this file, which "
				      "bitnetc did not write"));
	/* an earlier --emit-c's output (its main source says so) is written again */
	put_file(dir, "kernels.fk", "/* kernels.fk - generated by bitnetc 0.1.0 */\n");
	if (cg_build_files_check(&f, &e))
		fail_msg("%s", e.msg);
	/* -o naming one of them */
	snprintf(out, sizeof out, "%s/fake_rt.c", dir);
	assert_int_equal(cg_build_files_check(&f, &e), BN_EINVAL);
	assert_non_null(strstr(e.msg, "fake_rt.c: --emit-c names the same file as -o"));
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* Artifact names are plain file names, each once. */
static void test_artifact_names(void **state)
{
	(void)state;
	CgOutput out = {0};
	assert_non_null(cg_output_add(&out, "model.c", CG_ART_SOURCE));
	static const char *const bad[] = {"", ".", "..", "a/b", "/etc/passwd", "model.c",
					  "a-name-longer-than-the-sixty-four-bytes-an-artifact-name-may-hold"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (cg_output_add(&out, bad[i], CG_ART_HEADER))
			fail_msg("artifact name '%s' was accepted", bad[i]);
	for (int i = 0; i < 10; i++) { /* grows */
		char name[16];
		snprintf(name, sizeof name, "h%d.h", i);
		CgBuf *b = cg_output_add(&out, name, CG_ART_HEADER);
		assert_non_null(b);
		cg_printf(b, "%d", i);
	}
	assert_int_equal(out.n_art, 11);
	assert_string_equal(cg_output_find(&out, "h7.h")->bytes.data, "7");
	assert_null(cg_output_find(&out, "h10.h"));
	cg_output_free(&out);
}

/* The passes see a target through its backend: what it is, its features and vectors. */
static void test_pass_target(void **state)
{
	(void)state;
	const PassTarget *t = pass_target_for("cpu-avx2");
	assert_string_equal(t->name, "cpu-avx2");
	assert_string_equal(t->backend, "cpu");
	assert_string_equal(t->features, "avx2 fma f16c");
	assert_int_equal(t->vector_bits, 256);
	t = pass_target_for("cpu-neon-dot");
	assert_string_equal(t->arch, "aarch64");
	assert_int_equal(t->vector_bits, 128);
	t = pass_target_for("cpu-generic");
	assert_string_equal(t->features, "");
	assert_int_equal(t->vector_bits, 0);
	t = pass_target_for("cuda-sm80");
	assert_string_equal(t->backend, "cuda");
	assert_string_equal(t->arch, "nvptx64");
	assert_string_equal(t->features, "sm_80 dp4a");
	assert_string_equal(pass_target_host()->backend, "cpu");

	/* the cost model the passes read through the backend */
	CgTarget r;
	CgKernelCost c;
	char why[160] = "";
	assert_int_equal(cg_target_find("cpu-generic", &r), 0);
	assert_true(r.backend->kernel_cost("cpu-generic", "lut", &c, why, sizeof why));
	CgKernelCost mad;
	assert_true(r.backend->kernel_cost("cpu-generic", "simd", &mad, why, sizeof why));
	assert_true(c.per_token < mad.per_token); /* portable C: the lookups win */
	assert_false(r.backend->kernel_cost("cpu-avx2", "lut", &c, why, sizeof why));
	assert_non_null(strstr(why, "AVX2 has none"));
	assert_false(r.backend->kernel_cost("cpu-avx2", "no-such-kind", &c, why, sizeof why));
	CgTargetDesc d;
	r.backend->describe("cpu-generic", &d);
	assert_string_equal(d.weight_layout, "gguf");
	r.backend->describe("cpu-avx512", &d);
	assert_string_equal(d.weight_layout, "i2s_x16");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listed_targets_resolve),
		cmocka_unit_test(test_buildable_names_listed),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_fake_backend),
		cmocka_unit_test(test_host_info),
		cmocka_unit_test(test_emit_files),
		cmocka_unit_test(test_artifact_names),
		cmocka_unit_test(test_pass_target),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
