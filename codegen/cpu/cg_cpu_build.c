/* cg_cpu_build.c - the CPU build step: target table, the C compiler run without a shell
 * (model.c with the target's flags, then the runtime and the link). */
#include "cg_cpu.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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
/* SVE came with v8.2, and its int8 dot product (sdot on Z registers) is SVE's own: no
 * +dotprod, so an SVE CPU without the Advanced SIMD dot product still runs cpu-sve. */
static const char *const sve_flags[] = {"-march=armv8.2-a+sve", NULL};
static const char *const native_flags[] = {"-march=native", NULL};
/* RISC-V: the rv64gc baseline pinned for cpu-rv64 (a compiler defaulting to more must not
 * put vector code into it), rv64gcv (the vector extension 1.0, any VLEN) for cpu-rvv. */
static const char *const rv64_flags[] = {"-march=rv64gc", NULL};
static const char *const rvv_flags[] = {"-march=rv64gcv", NULL};

#define F_AVX2 "avx2 fma f16c"
#define F_AVX512 F_AVX2 " avx512f avx512bw avx512vl avx512_vnni"
#define X86 "x86-64", "--cc x86_64-linux-gnu-gcc", "x86_64 x86-64 amd64"
#define ARM64 "aarch64", "--cc aarch64-linux-gnu-gcc", "aarch64 arm64"
/* clang names the machine with --target; gcc 12 has no <riscv_vector.h> (gcc 13 has) */
#define RV64 "riscv", "--cc riscv64-linux-gnu-gcc", "riscv"
#define RVV "riscv", "--cc clang-19 --cflags --target=riscv64-linux-gnu (clang 16+)", "riscv"

/* One emitter; the target's row decides the kernels' instruction set, the features the
 * program checks and the flags model.c is compiled with. The runtime is always compiled
 * for the baseline, so the program can check the CPU before it runs any model code.
 * Adding a target: docs/targets.md. */
static const CgCpuTarget cpu_targets[] = {
	{"cpu-generic", "portable C11, any CPU the C compiler targets", NULL,
	 {CG_ISA_GENERIC, false, false, false}, "", NULL, NULL, ""},
	{"cpu-avx2", "x86-64 AVX2 + FMA + F16C kernels", avx2_flags,
	 {CG_ISA_AVX2, false, false, false}, F_AVX2, X86},
	{"cpu-avx512", "x86-64 AVX-512 (F, BW, VL) + VNNI kernels", avx512_flags,
	 {CG_ISA_AVX512, true, false, false}, F_AVX512, X86},
	/* a build with -DBN_AMX_EMULATE drops the amx names again (cg_cpu_emit) */
	{"cpu-amx", "x86-64 AVX-512 VNNI kernels, AMX-INT8 tiles for multi-token forwards",
	 amx_flags, {CG_ISA_AVX512, true, false, true}, F_AVX512 " amx_tile amx_int8", X86},
	{"cpu-neon", "AArch64 NEON kernels (armv8-a)", neon_flags,
	 {CG_ISA_NEON, false, false, false}, "neon", ARM64},
	{"cpu-neon-dot", "AArch64 NEON + dot product (sdot) kernels (armv8.2-a+dotprod)",
	 neon_dot_flags, {CG_ISA_NEON, true, false, false}, "neon dotprod", ARM64},
	{"cpu-sve", "AArch64 SVE kernels (armv8.2-a+sve, any vector length; ACLE intrinsics)",
	 sve_flags, {CG_ISA_SVE, false, false, false}, "neon sve", ARM64},
	{"cpu-rv64", "RISC-V rv64gc, the portable kernels (no vector extension)", rv64_flags,
	 {CG_ISA_GENERIC, false, false, false}, "", RV64},
	{"cpu-rvv", "RISC-V vector 1.0 kernels (rv64gcv, any VLEN; RVV intrinsics)", rvv_flags,
	 {CG_ISA_RVV, false, false, false}, "rvv", RVV},
	{"native", "the best kernels for this host, compiled with -march=native", native_flags,
	 {CG_ISA_GENERIC, false, false, false}, "", NULL, NULL, ""},
};

const CgCpuTarget *cg_cpu_target(const char *name)
{
	for (size_t i = 0; name && i < sizeof cpu_targets / sizeof cpu_targets[0]; i++)
		if (strcmp(cpu_targets[i].name, name) == 0)
			return &cpu_targets[i];
	return NULL;
}

void cg_cpu_target_isa(const char *name, CgIsa *isa, char *features, size_t n)
{
	const CgCpuTarget *t = cg_cpu_target(name);
	*isa = (CgIsa){CG_ISA_GENERIC, false, false, false};
	snprintf(features, n, "%s", t ? t->features : "");
	if (t && strcmp(name, "native") != 0) {
		*isa = t->isa;
		return;
	}
	if (!t)
		return;
	CgCpuFeatures f;
	cg_cpu_detect(&f);
	if (f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni) {
		isa->level = CG_ISA_AVX512;
		isa->vnni = true;
		isa->vbmi = f.avx512_vbmi;
		isa->amx = f.amx_tile && f.amx_int8;
	} else if (f.avx2 && f.fma && f.f16c) {
		isa->level = CG_ISA_AVX2;
		isa->vnni = f.avx_vnni;
	} else if (f.sve && f.sve_bits > 128) { /* at 128 bits, NEON's tiles: cg_cpu_targets */
		isa->level = CG_ISA_SVE;
	} else if (f.neon) {
		isa->level = CG_ISA_NEON;
		isa->vnni = f.dotprod;
	} else if (f.rvv) {
		isa->level = CG_ISA_RVV;
	}
	/* -march=native lets the compiler use anything the host has: the program asks for
	 * every feature it can check */
	cg_cpu_features_str(&f, features, n);
	if (strcmp(features, "none") == 0)
		features[0] = 0;
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

/* One compiler run of cg_run_cc_all: its command (argv[0] absolute when it was a relative
 * path: the child runs inside dir), the pipe of its output and what it wrote. */
typedef struct {
	const char *av[128];
	char abs_cc[4096];
	pid_t pid;
	int fd;
	char *log;
	size_t log_n, log_cap;
	int st;
	double t0;
	bool run, done;
} CcJob;

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cg_cc_jobs(const CgOpts *o)
{
	long j = o ? o->jobs : 0;
	const char *env = getenv("BITNETC_JOBS");
	if (j <= 0 && env && *env)
		j = strtol(env, NULL, 10);
	if (j <= 0)
		j = sysconf(_SC_NPROCESSORS_ONLN);
	if (j < 1)
		j = 1;
	if (j > cg_cleanup_max_children())
		j = cg_cleanup_max_children();
	return (int)j;
}

static void job_prepare(CcJob *j, const char *const *argv)
{
	memset(j, 0, sizeof *j);
	j->fd = -1;
	int n = 0;
	for (; argv[n] && n < (int)(sizeof j->av / sizeof j->av[0]) - 1; n++)
		j->av[n] = argv[n];
	j->av[n] = NULL;
	char cwd[4096];
	const char *cc = argv[0];
	if (strchr(cc, '/') && cc[0] != '/' && getcwd(cwd, sizeof cwd) &&
	    (size_t)snprintf(j->abs_cc, sizeof j->abs_cc, "%s/%s", cwd, cc) < sizeof j->abs_cc)
		j->av[0] = j->abs_cc;
}

static int job_start(CcJob *j, const char *dir, BnErr *e)
{
	int fds[2];
	if (pipe(fds) != 0)
		return bn_err(e, BN_EIO, "cannot create a pipe: %s", strerror(errno));
	/* the read end stays out of the other compilers (each sees its own EOF) */
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	pid_t pid = cg_cleanup_spawn(j->av, dir, fds[1], fds[0]);
	if (pid < 0) {
		int err = errno;
		close(fds[0]);
		close(fds[1]);
		return bn_err(e, BN_EIO, "cannot start %s: %s", j->av[0], strerror(err));
	}
	close(fds[1]);
	j->pid = pid;
	j->fd = fds[0];
	j->run = true;
	j->t0 = mono_s();
	return 0;
}

/* Reads what is there of j's output; at its end, waits for j. Returns whether it ended. */
static bool job_read(CcJob *j)
{
	char buf[4096];
	ssize_t r = read(j->fd, buf, sizeof buf);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return false;
	if (r > 0) {
		if (j->log_n + (size_t)r + 1 > j->log_cap) {
			size_t cap = j->log_cap ? 2 * j->log_cap : 8192;
			while (cap < j->log_n + (size_t)r + 1)
				cap *= 2;
			char *p = realloc(j->log, cap);
			if (!p)
				return false; /* keep draining; the message just gets shorter */
			j->log = p;
			j->log_cap = cap;
		}
		memcpy(j->log + j->log_n, buf, (size_t)r);
		j->log_n += (size_t)r;
		j->log[j->log_n] = 0;
		return false;
	}
	close(j->fd);
	j->fd = -1;
	while (waitpid(j->pid, &j->st, 0) < 0 && errno == EINTR)
		;
	cg_cleanup_reaped(j->pid);
	j->done = true;
	return true;
}

static int job_result(const CgOpts *o, const CcJob *j, BnErr *e)
{
	int st = j->st;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char head[400];
		first_lines(j->log ? j->log : "", head, sizeof head, 6);
		if (WIFEXITED(st))
			return bn_err(e, BN_EIO, "the C compiler failed (exit %d): %s%s",
				      WEXITSTATUS(st), head[0] ? "\n" : "", head);
		return bn_err(e, BN_EIO, "the C compiler was killed by signal %d%s%s",
			      WIFSIGNALED(st) ? WTERMSIG(st) : 0, head[0] ? ": " : "", head);
	}
	if (o->verbose && j->log && j->log_n)
		fputs(j->log, stderr); /* warnings, shown on request */
	return 0;
}

int cg_run_cc_all(const CgOpts *o, const char *const *const *cmds, int n, const char *dir,
		  double *secs, bool *ok, BnErr *e)
{
	for (int i = 0; ok && i < n; i++)
		ok[i] = false;
	for (int i = 0; i < n; i++)
		if (!cc_exists(cmds[i][0]))
			return bn_err(e, BN_EIO, "C compiler '%s' not found (install one, or name it "
						 "with --cc)", cmds[i][0]);
	CcJob *jobs = calloc((size_t)(n ? n : 1), sizeof *jobs);
	if (!jobs)
		return bn_err(e, BN_ENOMEM, "out of memory");
	int max = cg_cc_jobs(o), next = 0, running = 0, rc = 0;
	for (;;) {
		while (!rc && next < n && running < max) {
			job_prepare(&jobs[next], cmds[next]);
			if ((rc = job_start(&jobs[next], dir, e)))
				break;
			next++;
			running++;
		}
		if (!running)
			break;
		/* one poll over every running compiler's output */
		struct pollfd pf[64];
		int who[64], np = 0;
		for (int i = 0; i < next && np < 64; i++)
			if (jobs[i].run && !jobs[i].done) {
				pf[np].fd = jobs[i].fd;
				pf[np].events = POLLIN;
				pf[np].revents = 0;
				who[np++] = i;
			}
		if (poll(pf, (nfds_t)np, -1) < 0 && errno != EINTR)
			rc = rc ? rc : bn_err(e, BN_EIO, "poll: %s", strerror(errno));
		for (int k = 0; k < np; k++) {
			CcJob *j = &jobs[who[k]];
			if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)) || !job_read(j))
				continue;
			running--;
			if (secs)
				secs[who[k]] = mono_s() - j->t0;
			if (ok)
				ok[who[k]] = WIFEXITED(j->st) && WEXITSTATUS(j->st) == 0;
			/* no new compiler after a failure; the running ones finish */
			if (!rc && (!WIFEXITED(j->st) || WEXITSTATUS(j->st) != 0))
				rc = BN_EIO;
		}
	}
	/* the first failure in the commands' order is the message (else a failed start's) */
	int first = rc;
	rc = 0;
	for (int i = 0; i < next && !rc; i++)
		if (jobs[i].done)
			rc = job_result(o, &jobs[i], e);
	if (!rc)
		rc = first;
	for (int i = 0; i < next; i++)
		free(jobs[i].log);
	free(jobs);
	return rc;
}

/* Runs argv[0] with argv inside dir (no shell); its output becomes the error message. */
int cg_run_cc(const CgOpts *o, const char *const *argv, const char *dir, BnErr *e)
{
	const char *const *cmds[1] = {argv};
	return cg_run_cc_all(o, cmds, 1, dir, NULL, NULL, e);
}

/* argv as a shell reads it back: a word of anything but plain characters single-quoted
 * (a ' inside as '\''), so that the -v line and --emit-c's Makefile can be run as they are. */
void cg_cmd_append(char *cmd, size_t cmd_n, const char *const *argv)
{
	size_t len = strlen(cmd);
	for (int i = 0; argv[i] && len + 1 < cmd_n; i++) {
		const char *a = argv[i];
		bool plain = *a != 0;
		for (const char *c = a; *c && plain; c++)
			plain = isalnum((unsigned char)*c) || strchr("_./=+,:-@%", *c);
		char word[4096];
		size_t w = 0;
		if (!plain)
			word[w++] = '\'';
		for (const char *c = a; *c && w + 6 < sizeof word; c++)
			if (*c == '\'') {
				memcpy(word + w, "'\\''", 4);
				w += 4;
			} else {
				word[w++] = *c;
			}
		if (!plain)
			word[w++] = '\'';
		word[w] = 0;
		int k = snprintf(cmd + len, cmd_n - len, "%s%s", len ? " " : "", word);
		if (k < 0)
			break;
		len += (size_t)k < cmd_n - len ? (size_t)k : cmd_n - len - 1;
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

/* Whether the space-separated words of marks has one that is part of s. */
static bool has_mark(const char *s, const char *marks)
{
	for (const char *p = marks; *p;) {
		size_t k = strcspn(p, " ");
		char w[32];
		snprintf(w, sizeof w, "%.*s", (int)(k < sizeof w ? k : sizeof w - 1), p);
		if (k && strstr(s, w))
			return true;
		p += k + (p[k] == ' ');
	}
	return false;
}

/* The hint for a failed compile of a target for another machine by a compiler that does
 * not say it makes code for that machine (its name or --cflags name it: a cross compiler),
 * put first so that the compiler's output cannot crowd it out. */
static int cross_hint(const CgOpts *o, const CgCpuTarget *t, const char *cc, int rc, BnErr *e)
{
	const char *host = cg_cpu_arch();
	bool here = t->arch && (has_mark(host, t->cc_marks) ||
				(!strcmp(host, "x86_64") && !strcmp(t->arch, "x86-64")));
	if (!t->arch || here || has_mark(cc, t->cc_marks) ||
	    (o->cflags && has_mark(o->cflags, t->cc_marks)) || !e)
		return rc;
	char log[sizeof e->msg];
	snprintf(log, sizeof log, "%s", e->msg);
	bn_err(e, rc, "%s is %s code and this host is %s: is '%s' a cross compiler? (e.g. %s)\n%s",
	       t->name, !strcmp(t->arch, "aarch64") ? "AArch64" : !strcmp(t->arch, "riscv") ? "RISC-V"
							  : t->arch,
	       host, cc, t->cross, log);
	return rc;
}

/* The runtime's objects, in the runtime's order: main.o, rt_api.o, ... (static names the
 * signal handler may remove). */
enum { MAX_RT = 64 };
static int runtime_objects(const char **src, const char **obj, bool server)
{
	static char names[MAX_RT][64];
	int n = 0;
	int n_all = cg_n_runtime_sources + (server ? cg_n_runtime_server_sources : 0);
	for (int i = 0; i < n_all && n < MAX_RT; i++) {
		const char *s = i < cg_n_runtime_sources
					? cg_runtime_sources[i].name
					: cg_runtime_server_sources[i - cg_n_runtime_sources].name;
		size_t l = strlen(s);
		if (l < 2 || l >= 60 || strcmp(s + l - 2, ".c") != 0)
			continue;
		snprintf(names[n], sizeof names[n], "%.*s.o", (int)(l - 2), s);
		src[n] = s;
		obj[n] = names[n];
		n++;
	}
	cg_cleanup_names(obj, n);
	return n;
}

/* cmd (for -v): a line per compiler run with its time, after the commands. */
static void cmd_times(char *cmd, size_t cmd_n, const char *const *what, const double *secs,
		      int n)
{
	for (int i = 0; i < n; i++) {
		size_t l = strlen(cmd);
		if (l + 1 < cmd_n)
			snprintf(cmd + l, cmd_n - l, "\n  %-28s %8.3f s", what[i], secs[i]);
	}
}

/* One Makefile recipe line: argv as cg_cmd_append writes it, '$' doubled for make. */
static void mk_line(FILE *f, const char *const *argv)
{
	char line[16384] = "";
	cg_cmd_append(line, sizeof line, argv);
	fputc('\t', f);
	for (const char *c = line; *c; c++)
		fputs(*c == '$' ? "$$" : (char[2]){*c, 0}, f);
	fputc('\n', f);
}

/* --emit-c DIR: DIR/Makefile with the commands the build ran (model.c's, each runtime
 * source's, the link to `program`), then the objects removed, so that DIR holds sources.
 * The weights are not in DIR: bitnetc build appends them to its program; `make` gives a
 * program that takes them with --weights-file. */
static int emit_makefile(const char *dir, const char *const *model_argv, const char *const *src,
			 const char *const *objs, int n_rt, const char *const *rt_flags, int n_flags,
			 const char *cc, const char *const *link, BnErr *e)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/Makefile", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return bn_err(e, BN_EIO, "%s: cannot write: %s", path, strerror(errno));
	fprintf(f, "# Makefile - written by bitnetc build --emit-c: the commands that compiled and\n"
		   "# linked the program from these sources. `make` builds ./program without its\n"
		   "# weights (bitnetc build appends them to the program it writes): run it with\n"
		   "# --weights-file FILE, as `bitnetc build --weights-file FILE` writes them.\n\n"
		   "OBJS = model.o");
	for (int i = 0; i < n_rt; i++)
		fprintf(f, " %s", objs[i]);
	fprintf(f, "\n\nprogram: $(OBJS)\n");
	const char *lv[256];
	int n = 0;
	for (int i = 0; link[i] && n < 250; i++)
		lv[n++] = i > 0 && !strcmp(link[i - 1], "-o") ? "program" : link[i];
	lv[n] = NULL;
	mk_line(f, lv);
	fprintf(f, "\nmodel.o: model.c\n");
	mk_line(f, model_argv);
	for (int i = 0; i < n_rt; i++) {
		const char *rv[64];
		int k = 0;
		rv[k++] = cc;
		for (int j = 0; j < n_flags && k < 58; j++)
			rv[k++] = rt_flags[j];
		rv[k++] = "-c";
		rv[k++] = "-o";
		rv[k++] = objs[i];
		rv[k++] = src[i];
		rv[k] = NULL;
		fprintf(f, "\n%s: %s\n", objs[i], src[i]);
		mk_line(f, rv);
	}
	fprintf(f, "\nclean:\n\trm -f $(OBJS) program\n\n.PHONY: clean\n");
	if (fclose(f) != 0)
		return bn_err(e, BN_EIO, "%s: cannot write: %s", path, strerror(errno));
	char obj[4200];
	snprintf(obj, sizeof obj, "%s/model.o", dir);
	unlink(obj);
	for (int i = 0; i < n_rt; i++) {
		snprintf(obj, sizeof obj, "%s/%s", dir, objs[i]);
		unlink(obj);
	}
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
	if (o->lib) {
		int rc = cg_run_cc(o, argv, dir, e);
		if (!rc)
			rc = cg_check_output(obj, "model.o", cc, t->name, true, e);
		if (rc)
			return cross_hint(o, t, cc, rc, e);
		return cc_lib(o, argv, n_common, extra, n_extra, dir, out_path, cmd, cmd_n, e);
	}

	/* ...and each runtime source for the architecture's baseline (main() checks the CPU
	 * has what model.o needs before calling into it, and must not use those instructions
	 * itself), at the same time, unless the cache has their objects */
	const char *src[MAX_RT], *objs[MAX_RT], *rv[MAX_RT][2 * MAX_EXTRA + 12];
	int n_rt = runtime_objects(src, objs, o->server_libs != NULL), n_flags = 0;
	const char *flags[2 * MAX_EXTRA + 8];
	for (int i = 1; i < n_common; i++)
		flags[n_flags++] = argv[i];
	for (int i = 0; i < n_extra; i++)
		flags[n_flags++] = extra[i];
	/* --server: the HTTP server's sources (above), its define and its libraries' compiler
	 * flags (-I, -D) for every runtime object; the rest of those flags at the link */
	char server_buf[1024];
	const char *server[MAX_EXTRA], *server_link[MAX_EXTRA];
	CgOpts so = {.cflags = o->server_libs};
	int n_server = o->server_libs ? cg_split_cflags(&so, server_buf, sizeof server_buf, server,
							MAX_EXTRA)
				      : 0,
	    n_server_link = 0;
	/* a program whose weights are in a file of their own names it (a name only of
	 * characters that need no quoting in a C string) */
	char wdef[300];
	if (o->weights_file) {
		const char *b = strrchr(o->weights_file, '/');
		b = b ? b + 1 : o->weights_file;
		bool plain = *b && strlen(b) < 200;
		for (const char *c = b; *c && plain; c++)
			plain = isalnum((unsigned char)*c) || strchr("._-+", *c);
		snprintf(wdef, sizeof wdef, "-DBN_WEIGHTS_FILE=\"%s\"", plain ? b : "a weights file");
		flags[n_flags++] = wdef;
	}
	if (o->server_libs) {
		flags[n_flags++] = "-DBN_SERVER";
		for (int i = 0; i < n_server; i++)
			if (!strncmp(server[i], "-I", 2) || !strncmp(server[i], "-D", 2))
				flags[n_flags++] = server[i];
			else
				server_link[n_server_link++] = server[i];
	}
	CgRtCache cache;
	char why[200] = "";
	bool cached = cg_rt_cache_key(o, flags, n_flags, &cache);
	bool hit = cached && cg_rt_cache_get(&cache, dir, objs, n_rt, why, sizeof why);
	const char *const *cmds[MAX_RT + 1];
	const char *what[MAX_RT + 1];
	double secs[MAX_RT + 1];
	bool ok[MAX_RT + 1];
	int n_cmds = 0;
	cmds[n_cmds] = argv;
	what[n_cmds++] = "model.c";
	for (int i = 0; !hit && i < n_rt; i++) {
		int k = 0;
		rv[i][k++] = cc;
		for (int f = 0; f < n_flags; f++)
			rv[i][k++] = flags[f];
		rv[i][k++] = "-c";
		rv[i][k++] = "-o";
		rv[i][k++] = objs[i];
		rv[i][k++] = src[i];
		rv[i][k] = NULL;
		cmd_and(cmd, cmd_n, rv[i]);
		cmds[n_cmds] = rv[i];
		what[n_cmds++] = src[i];
	}
	int rc = cg_run_cc_all(o, cmds, n_cmds, dir, secs, ok, e);
	if (ok[0]) {
		/* what model.c's compiler made comes first: a runtime failure may follow from it */
		BnErr e2 = {0};
		int rc2 = cg_check_output(obj, "model.o", cc, t->name, true, &e2);
		if (rc2) {
			if (e)
				*e = e2;
			rc = rc2;
		}
	}
	if (rc)
		return cross_hint(o, t, cc, rc, e);
	bool stored = cached && !hit && cg_rt_cache_put(&cache, dir, objs, n_rt);

	/* the link: model.o and the runtime's objects, in the runtime's order */
	const char *lv[MAX_ARGS + MAX_RT + MAX_EXTRA];
	n = 0;
	for (int i = 0; i < n_common; i++)
		lv[n++] = argv[i];
	for (int i = 0; i < n_extra; i++)
		lv[n++] = extra[i];
	lv[n++] = "-o";
	lv[n++] = out_path;
	lv[n++] = "model.o";
	for (int i = 0; i < n_rt; i++)
		lv[n++] = objs[i];
	for (int i = 0; i < n_server_link; i++)
		lv[n++] = server_link[i];
	lv[n++] = "-lm";
	lv[n++] = "-lpthread";
	lv[n] = NULL;
	cmd_and(cmd, cmd_n, lv);
	double t0 = mono_s();
	if ((rc = cg_run_cc(o, lv, dir, e)))
		return rc;
	if (o->emit_makefile &&
	    (rc = emit_makefile(dir, argv, src, objs, n_rt, flags, n_flags, cc, lv, e)))
		return rc;
	secs[n_cmds] = mono_s() - t0;
	what[n_cmds] = "link";
	if (o->verbose) {
		size_t l = strlen(cmd);
		if (hit)
			snprintf(cmd + l, cmd_n - l, "\n  runtime objects from the cache: %s",
				 cache.path);
		else if (cached)
			snprintf(cmd + l, cmd_n - l, "\n  runtime compiled (cache %s: %s)%s",
				 cache.path, why, stored ? ", stored" : ", not stored");
		else
			snprintf(cmd + l, cmd_n - l, "\n  runtime compiled (no cache)");
		l = strlen(cmd);
		snprintf(cmd + l, cmd_n - l, "\n  %d compiler runs at once", cg_cc_jobs(o));
		cmd_times(cmd, cmd_n, what, secs, n_cmds + 1);
	}
	return 0;
}
