/* cg_cpu_build.c - the CPU build step: target table, the C compiler run without a shell
 * (model.c with the target's flags, then the runtime and the link). */
#include "cg_cpu.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- targets ------------------------------------------------------------------ */

static const char *const avx2_flags[] = {"-mavx2", "-mfma", "-mf16c", NULL};
static const char *const avx512_flags[] = {"-mavx2", "-mfma", "-mf16c", "-mavx512f",
					   "-mavx512bw", "-mavx512vl", "-mavx512vnni", NULL};
static const char *const amx_flags[] = {"-mavx2", "-mfma", "-mf16c", "-mavx512f",
					"-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mamx-tile",
					"-mamx-int8", NULL};
/* AArch64: the v8.0 baseline pinned (a compiler defaulting to a newer -march must not put
 * v8.2+ instructions into cpu-neon), and v8.2 with the dot product for cpu-neon-dot. */
static const char *const neon_flags[] = {"-march=armv8-a", NULL};
static const char *const neon_dot_flags[] = {"-march=armv8.2-a+dotprod", NULL};
static const char *const native_flags[] = {"-march=native", NULL};

/* One emitter; the target decides the kernels' instruction set (cg_cpu_target_isa) and
 * the flags model.c is compiled with. The runtime is always compiled for the baseline,
 * so the program can check the CPU before it runs any model code. */
static const CgCpuTarget cpu_targets[] = {
	{"cpu-generic", "portable C11, any CPU the C compiler targets", NULL},
	{"cpu-avx2", "x86-64 AVX2 + FMA + F16C kernels", avx2_flags},
	{"cpu-avx512", "x86-64 AVX-512 (F, BW, VL) + VNNI kernels", avx512_flags},
	{"cpu-amx", "x86-64 AVX-512 VNNI kernels, AMX-INT8 tiles for multi-token forwards",
	 amx_flags},
	{"cpu-neon", "AArch64 NEON kernels (armv8-a)", neon_flags},
	{"cpu-neon-dot", "AArch64 NEON + dot product (sdot) kernels (armv8.2-a+dotprod)",
	 neon_dot_flags},
	{"native", "the best kernels for this host, compiled with -march=native", native_flags},
};

const CgCpuTarget *cg_cpu_target(const char *name)
{
	for (size_t i = 0; i < sizeof cpu_targets / sizeof cpu_targets[0]; i++)
		if (strcmp(cpu_targets[i].name, name) == 0)
			return &cpu_targets[i];
	return NULL;
}

void cg_cpu_target_isa(const char *name, CgIsa *isa, char *features, size_t n)
{
	static const char f_avx2[] = "avx2 fma f16c";
	static const char f_avx512[] = "avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni";
	isa->level = CG_ISA_GENERIC;
	isa->vnni = false;
	isa->vbmi = false;
	isa->amx = false;
	snprintf(features, n, "%s", "");
	if (!name)
		return;
	if (strcmp(name, "cpu-avx2") == 0) {
		isa->level = CG_ISA_AVX2;
		snprintf(features, n, "%s", f_avx2);
	} else if (strcmp(name, "cpu-avx512") == 0) {
		isa->level = CG_ISA_AVX512;
		isa->vnni = true;
		snprintf(features, n, "%s", f_avx512);
	} else if (strcmp(name, "cpu-amx") == 0) {
		isa->level = CG_ISA_AVX512;
		isa->vnni = true;
		isa->amx = true;
		/* a build with -DBN_AMX_EMULATE drops the amx names again (cg_cpu_emit) */
		snprintf(features, n, "%s amx_tile amx_int8", f_avx512);
	} else if (strcmp(name, "cpu-neon") == 0) {
		isa->level = CG_ISA_NEON;
		snprintf(features, n, "%s", "neon");
	} else if (strcmp(name, "cpu-neon-dot") == 0) {
		isa->level = CG_ISA_NEON;
		isa->vnni = true;
		snprintf(features, n, "%s", "neon dotprod");
	} else if (strcmp(name, "native") == 0) {
		CgCpuFeatures f;
		cg_cpu_detect(&f);
		if (f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl &&
		    f.avx512_vnni) {
			isa->level = CG_ISA_AVX512;
			isa->vnni = true;
			isa->vbmi = f.avx512_vbmi;
			isa->amx = f.amx_tile && f.amx_int8;
		} else if (f.avx2 && f.fma && f.f16c) {
			isa->level = CG_ISA_AVX2;
			isa->vnni = f.avx_vnni;
		} else if (f.neon) {
			isa->level = CG_ISA_NEON;
			isa->vnni = f.dotprod;
		}
		/* -march=native lets the compiler use anything the host has: the program asks
		 * for every feature it can check */
		cg_cpu_features_str(&f, features, n);
		if (strcmp(features, "none") == 0)
			features[0] = 0;
	}
}

/* ---- the compiler ------------------------------------------------------------- */

/* Whether prog runs: a path is checked as is, a bare name against $PATH. */
static bool cc_exists(const char *prog)
{
	if (strchr(prog, '/'))
		return access(prog, X_OK) == 0;
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/bin:/bin";
	while (*path) {
		const char *end = strchr(path, ':');
		size_t len = end ? (size_t)(end - path) : strlen(path);
		char full[4096];
		snprintf(full, sizeof full, "%.*s/%s", (int)len, len ? path : ".", prog);
		if (access(full, X_OK) == 0)
			return true;
		path += len + (end ? 1 : 0);
	}
	return false;
}

/* The first lines of the compiler's output, for the error message. */
static void first_lines(const char *log, char *out, size_t n, int max_lines)
{
	size_t len = 0;
	int lines = 0;
	out[0] = 0;
	for (const char *p = log; *p && lines < max_lines && len + 1 < n; p++) {
		out[len++] = *p;
		if (*p == '\n')
			lines++;
	}
	while (len && out[len - 1] == '\n')
		len--;
	out[len] = 0;
}

/* Runs argv[0] with argv inside dir (no shell); its output becomes the error message. */
int cg_run_cc(const CgOpts *o, const char *const *argv, const char *dir, BnErr *e)
{
	const char *cc = argv[0];
	if (!cc_exists(cc))
		return bn_err(e, BN_EIO, "C compiler '%s' not found (install one, or name it with --cc)",
			      cc);

	/* the child runs inside dir so that every source path is relative: a relative
	 * compiler path (./mycc) is made absolute first */
	enum { MAX_ARGV = 128 };
	const char *av[MAX_ARGV];
	char abs_cc[4096], cwd[4096];
	int n = 0;
	for (; argv[n] && n < MAX_ARGV - 1; n++)
		av[n] = argv[n];
	av[n] = NULL;
	if (strchr(cc, '/') && cc[0] != '/' && getcwd(cwd, sizeof cwd) &&
	    (size_t)snprintf(abs_cc, sizeof abs_cc, "%s/%s", cwd, cc) < sizeof abs_cc)
		av[0] = abs_cc;
	int fds[2];
	if (pipe(fds) != 0)
		return bn_err(e, BN_EIO, "cannot create a pipe: %s", strerror(errno));
	pid_t pid = cg_cleanup_spawn(av, dir, fds[1], fds[0]);
	if (pid < 0) {
		int err = errno;
		close(fds[0]);
		close(fds[1]);
		return bn_err(e, BN_EIO, "cannot start %s: %s", cc, strerror(err));
	}
	close(fds[1]);
	char *log = NULL;
	size_t log_n = 0, log_cap = 0;
	for (;;) {
		char buf[4096];
		ssize_t r = read(fds[0], buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (log_n + (size_t)r + 1 > log_cap) {
			size_t cap = log_cap ? 2 * log_cap : 8192;
			while (cap < log_n + (size_t)r + 1)
				cap *= 2;
			char *p = realloc(log, cap);
			if (!p)
				continue; /* keep draining; the message just gets shorter */
			log = p;
			log_cap = cap;
		}
		memcpy(log + log_n, buf, (size_t)r);
		log_n += (size_t)r;
	}
	close(fds[0]);
	if (log)
		log[log_n] = 0;
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	cg_cleanup_reaped(pid);
	int rc = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char head[400];
		first_lines(log ? log : "", head, sizeof head, 6);
		if (WIFEXITED(st))
			rc = bn_err(e, BN_EIO, "the C compiler failed (exit %d): %s%s", WEXITSTATUS(st),
				    head[0] ? "\n" : "", head);
		else
			rc = bn_err(e, BN_EIO, "the C compiler was killed by signal %d%s%s",
				    WIFSIGNALED(st) ? WTERMSIG(st) : 0, head[0] ? ": " : "", head);
	} else if (o->verbose && log && log_n) {
		fputs(log, stderr); /* warnings, shown on request */
	}
	free(log);
	return rc;
}


void cg_cmd_append(char *cmd, size_t cmd_n, const char *const *argv)
{
	size_t len = strlen(cmd);
	for (int i = 0; argv[i] && len < cmd_n; i++) {
		int k = snprintf(cmd + len, cmd_n - len, "%s%s", len ? " " : "", argv[i]);
		if (k < 0)
			break;
		len += (size_t)k;
	}
}

int cg_split_cflags(const CgOpts *o, char *buf, size_t bn, const char **w, int max)
{
	int n = 0;
	snprintf(buf, bn, "%s", o->cflags ? o->cflags : "");
	for (char *p = buf; *p && n < max;) {
		while (*p == ' ' || *p == '\t')
			*p++ = 0;
		if (!*p)
			break;
		w[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
	return n;
}

/* " && " and argv after the command lines in cmd. */
static void cmd_and(char *cmd, size_t cmd_n, const char *const *argv)
{
	size_t l = strlen(cmd);
	if (l && l + 3 < cmd_n)
		strcat(cmd, " &&"); /* cg_cmd_append puts a space before argv */
	cg_cmd_append(cmd, cmd_n, argv);
}

/* Runs a binutils tool (objcopy, ar) like the compiler; env names the variable that picks
 * another. */
static int run_tool(const CgOpts *o, const char *const *argv, const char *dir, const char *env,
		    char *cmd, size_t cmd_n, BnErr *e)
{
	cmd_and(cmd, cmd_n, argv);
	if (!cc_exists(argv[0]))
		return bn_err(e, BN_EIO, "'%s' not found: a static library needs it (binutils; "
					 "set %s to name another)", argv[0], env);
	if (cg_run_cc(o, argv, dir, e))
		return bn_err_prefix(e, "%s", argv[0]);
	return 0;
}

/* A binutils tool for the compiler cc: the cross prefix of its name with tool
 * (aarch64-linux-gnu-gcc-12 -> aarch64-linux-gnu-objcopy, in cc's directory when cc is a
 * path), or $ENV (OBJCOPY, AR) when set. */
static const char *binutil(const char *cc, const char *tool, const char *env, char *buf, size_t n)
{
	const char *v = getenv(env);
	if (v && *v)
		return v;
	const char *base = strrchr(cc, '/');
	size_t dir_len = base ? (size_t)(base - cc + 1) : 0;
	base = base ? base + 1 : cc;
	size_t l = strlen(base);
	while (l && (isdigit((unsigned char)base[l - 1]) || base[l - 1] == '.'))
		l--; /* gcc-12, clang-19 */
	if (l && base[l - 1] == '-')
		l--;
	static const char *const drivers[] = {"gcc", "clang", "cc"};
	size_t pre = 0;
	for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++) {
		size_t dl = strlen(drivers[i]);
		if (l >= dl && strncmp(base + l - dl, drivers[i], dl) == 0) {
			pre = l - dl;
			break;
		}
	}
	snprintf(buf, n, "%.*s%.*s%s", (int)dir_len, cc, (int)pre, base, tool);
	if (dir_len && !cc_exists(buf))
		snprintf(buf, n, "%.*s%s", (int)pre, base, tool); /* on $PATH instead */
	return buf;
}

/* The library: the runtime less the program's own files (main.c, rt_session.c) and the
 * linked weights compiled like model.o (argv[0..n_common): the compiler and the common
 * flags), then one relocatable object whose only global symbols are the API's (ld -r,
 * objcopy --keep-global-symbols) archived, or a shared library exporting those alone (a
 * version script). */
static int cc_lib(const CgOpts *o, const char **argv, int n_common, const char *const *extra,
		  int n_extra, const char *dir, const char *out_path, char *cmd, size_t cmd_n,
		  BnErr *e)
{
	enum { MAX_ARGS = 96 };
	int n = n_common;
	argv[n++] = "-fPIC";
	argv[n++] = "-DBN_NAMES";
	argv[n++] = "-DBN_LIBRARY";
	if (o->linked_weights)
		argv[n++] = "-DBN_LINKED_WEIGHTS";
	for (int i = 0; i < n_extra; i++)
		argv[n++] = extra[i];
	argv[n++] = "-c";
	int first = n;
	for (int i = 0; i < cg_n_runtime_sources && n < MAX_ARGS - 2; i++) {
		if (cg_lib_source(cg_runtime_sources[i].name))
			argv[n++] = cg_runtime_sources[i].name;
	}
	if (o->linked_weights)
		argv[n++] = "weights.c";
	argv[n] = NULL;
	int last = n;
	cmd_and(cmd, cmd_n, argv);
	int rc = cg_run_cc(o, argv, dir, e);
	if (rc)
		return rc;
	/* the objects: model.o, then one per source compiled above */
	static char objs[MAX_ARGS][64];
	const char *ov[MAX_ARGS + 16];
	int no = 0;
	ov[no++] = "model.o";
	for (int i = first; i < last; i++) {
		snprintf(objs[i], sizeof objs[i], "%.*s.o", (int)(strlen(argv[i]) - 2), argv[i]);
		ov[no++] = objs[i];
	}
	const char *cc = argv[0];
	const char *lv[MAX_ARGS + 32];
	int k = 0;
	char tool[4200], soname[300];
	if (o->lib == CG_LIB_SHARED) {
		const char *name = o->soname ? o->soname : out_path, *base = strrchr(name, '/');
		snprintf(soname, sizeof soname, "-Wl,-soname,%s", base ? base + 1 : name);
		lv[k++] = cc;
		lv[k++] = "-shared";
		for (int i = 0; i < n_extra; i++)
			lv[k++] = extra[i];
		lv[k++] = "-o";
		lv[k++] = out_path;
		for (int i = 0; i < no; i++)
			lv[k++] = ov[i];
		lv[k++] = "-Wl,--version-script=bn_exports.map";
		lv[k++] = soname;
		lv[k++] = "-lm";
		lv[k++] = "-lpthread";
		lv[k] = NULL;
		cmd_and(cmd, cmd_n, lv);
		return cg_run_cc(o, lv, dir, e);
	}
	/* static: one object with the API global and everything else local, in an archive */
	lv[k++] = cc;
	lv[k++] = "-r";
	lv[k++] = "-nostdlib";
	lv[k++] = "-o";
	lv[k++] = "bn_lib.o";
	for (int i = 0; i < no; i++)
		lv[k++] = ov[i];
	lv[k] = NULL;
	cmd_and(cmd, cmd_n, lv);
	if ((rc = cg_run_cc(o, lv, dir, e)))
		return rc;
	const char *oc[] = {binutil(cc, "objcopy", "OBJCOPY", tool, sizeof tool),
			    "--keep-global-symbols=bn_exports.txt", "bn_lib.o", NULL};
	if ((rc = run_tool(o, oc, dir, "OBJCOPY", cmd, cmd_n, e)))
		return rc;
	unlink(out_path); /* ar adds to an archive that is there: the temporary is empty */
	const char *ar[] = {binutil(cc, "ar", "AR", tool, sizeof tool), "rcsD", out_path,
			    "bn_lib.o", NULL};
	return run_tool(o, ar, dir, "AR", cmd, cmd_n, e);
	return 0;
}

int cg_cc(const CgOpts *o, const CgCpuTarget *t, const char *dir, const char *out_path, char *cmd,
	  size_t cmd_n, BnErr *e)
{
	enum { MAX_ARGS = 96, MAX_EXTRA = 16 };
	const char *argv[MAX_ARGS], *extra[MAX_EXTRA];
	char extra_buf[1024];
	int n = 0, n_extra = cg_split_cflags(o, extra_buf, sizeof extra_buf, extra, MAX_EXTRA);
	const char *cc = o->cc ? o->cc : "cc";
	cmd[0] = 0;
	/* model.c with the target's flags... */
	argv[n++] = cc;
	argv[n++] = "-std=c11";
	argv[n++] = o->opt ? o->opt : "-O2";
	/* the generated kernels reproduce the interpreter's float order: no fused a*b+c */
	argv[n++] = "-ffp-contract=off";
	argv[n++] = "-D_GNU_SOURCE";
	int n_common = n;
	for (int i = 0; t->cflags && t->cflags[i] && n < MAX_ARGS - 16 - MAX_EXTRA; i++)
		argv[n++] = t->cflags[i];
	if (o->lib) {
		/* every object of a library is position-independent (a product may be a PIE, or
		 * this a shared library) and names the API's functions prefix_ */
		argv[n++] = "-fPIC";
		argv[n++] = "-DBN_NAMES";
	}
	for (int i = 0; i < n_extra; i++)
		argv[n++] = extra[i];
	argv[n++] = "-c";
	argv[n++] = "-o";
	argv[n++] = "model.o";
	argv[n++] = "model.c";
	argv[n] = NULL;
	cg_cmd_append(cmd, cmd_n, argv);
	char obj[4200];
	snprintf(obj, sizeof obj, "%s/model.o", dir);
	unlink(obj); /* an earlier --emit-c's must not pass for this one */
	int rc = cg_run_cc(o, argv, dir, e);
	if (!rc)
		rc = cg_check_output(obj, "model.o", cc, t->name, true, e);
	if (rc) {
		/* the likeliest cause: the host's own compiler given AArch64 flags (a name
		 * that says aarch64 or arm64 is taken to be a cross compiler) */
		CgIsa isa;
		char feat[64];
		cg_cpu_target_isa(t->name, &isa, feat, sizeof feat);
		if (isa.level == CG_ISA_NEON && strcmp(cg_cpu_arch(), "aarch64") != 0 &&
		    !strstr(cc, "aarch64") && !strstr(cc, "arm64") && e) {
			/* first, so that the compiler's output cannot crowd it out */
			char log[sizeof e->msg];
			snprintf(log, sizeof log, "%s", e->msg);
			bn_err(e, rc, "%s is AArch64 code and this host is %s: is '%s' a cross "
				      "compiler? (e.g. --cc aarch64-linux-gnu-gcc)\n%s",
			       t->name, cg_cpu_arch(), cc, log);
		}
		return rc;
	}
	if (o->lib)
		return cc_lib(o, argv, n_common, extra, n_extra, dir, out_path, cmd, cmd_n, e);
	/* ...and the runtime for the architecture's baseline: main() checks the CPU has what
	 * model.o needs before calling into it, and must not use those instructions itself */
	n = 5;
	for (int i = 0; i < n_extra; i++)
		argv[n++] = extra[i];
	argv[n++] = "-o";
	argv[n++] = out_path;
	argv[n++] = "model.o";
	for (int i = 0; i < cg_n_runtime_sources && n < MAX_ARGS - 3; i++) {
		const char *s = cg_runtime_sources[i].name;
		size_t l = strlen(s);
		if (l > 2 && strcmp(s + l - 2, ".c") == 0)
			argv[n++] = s;
	}
	/* --server: the HTTP server's sources, its define and libraries */
	char server_buf[1024];
	const char *server[MAX_EXTRA];
	CgOpts so = {.cflags = o->server_libs};
	int n_server = cg_split_cflags(&so, server_buf, sizeof server_buf, server, MAX_EXTRA);
	if (o->server_libs && n + n_server + cg_n_runtime_server_sources + 4 < MAX_ARGS) {
		argv[n++] = "-DBN_SERVER";
		for (int i = 0; i < cg_n_runtime_server_sources; i++) {
			const char *s = cg_runtime_server_sources[i].name;
			size_t l = strlen(s);
			if (l > 2 && strcmp(s + l - 2, ".c") == 0)
				argv[n++] = s;
		}
		for (int i = 0; i < n_server; i++)
			argv[n++] = server[i];
	}
	argv[n++] = "-lm";
	argv[n++] = "-lpthread";
	argv[n] = NULL;
	cmd_and(cmd, cmd_n, argv);
	return cg_run_cc(o, argv, dir, e);
}
