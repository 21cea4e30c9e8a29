/* cg_cpu_build.c - the CPU build step: target table, the C compiler run without a shell
 * (model.c with the target's flags, then the runtime and the link). */
#include "cg_cpu.h"

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
	for (int i = 0; t->cflags && t->cflags[i] && n < MAX_ARGS - 16 - MAX_EXTRA; i++)
		argv[n++] = t->cflags[i];
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
	argv[n++] = "-lm";
	argv[n++] = "-lpthread";
	argv[n] = NULL;
	if (strlen(cmd) + 4 < cmd_n)
		strcat(cmd, " && ");
	cg_cmd_append(cmd, cmd_n, argv);
	return cg_run_cc(o, argv, dir, e);
}
