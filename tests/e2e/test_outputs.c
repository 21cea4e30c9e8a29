/* test_outputs.c - `bitnetc build` never destroys data: an output that is the model or
 * another output, one that is not a regular file, a compiler that makes nothing usable, a
 * full disk and a killed build each end in a clear error (exit 2, or death by the signal)
 * with every file as it was and nothing left behind. Runs the real driver ($BITNETC). */
#include "testutil.h"
#include "rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MODEL "golden/models/tinyold-bitnet-i2_s.gguf"

/* One test's directories: W (the working directory the build runs in, which must hold
 * nothing new afterwards) and T (its $TMPDIR, which must end empty). */
static char root[1024], W[1100], T[1100];

static void fresh(const char *name)
{
	snprintf(root, sizeof root, "%s", tu_tmp(name));
	snprintf(W, sizeof W, "%s/w", root);
	snprintf(T, sizeof T, "%s/tmp", root);
	assert_int_equal(tu_run(NULL, "rm -rf '%s' && mkdir -p '%s' '%s'", root, W, T), 0);
}

static const char *in_w(const char *name)
{
	static char buf[4][1200];
	static int slot;
	char *b = buf[slot++ % 4];
	snprintf(b, sizeof buf[0], "%s/%s", W, name);
	return b;
}

static void put(const char *name, const char *text)
{
	assert_int_equal(tu_write_file(in_w(name), text, strlen(text)), 0);
}

/* W/in.gguf: a copy of the golden model. */
static void copy_model(const char *name)
{
	size_t n;
	void *m = tu_read_file(tu_data(MODEL), &n);
	assert_non_null(m);
	assert_int_equal(tu_write_file(in_w(name), m, n), 0);
	free(m);
}

/* A whole file as a NUL-terminated string ("" if unreadable). */
static char *read_text(const char *path)
{
	size_t n = 0;
	char *b = tu_read_file(path, &n);
	char *s = calloc(1, n + 1);
	if (b && n)
		memcpy(s, b, n);
	free(b);
	return s;
}

/* What W holds: name, type, size and content hash of every entry, sorted (one level,
 * and one more into subdirectories). */
static void list_into(const char *dir, const char *prefix, char *out, size_t n, int depth)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	char names[128][256];
	int k = 0;
	struct dirent *de;
	while ((de = readdir(d)) && k < 128)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			snprintf(names[k++], 256, "%s", de->d_name);
	closedir(d);
	qsort(names, (size_t)k, 256, (int (*)(const void *, const void *))strcmp);
	for (int i = 0; i < k; i++) {
		char p[2048];
		struct stat st;
		assert_true(snprintf(p, sizeof p, "%s/%s", dir, names[i]) < (int)sizeof p);
		assert_int_equal(lstat(p, &st), 0);
		uint64_t h = 0; /* the content's hash: a file's bytes, a link's target */
		if (S_ISREG(st.st_mode)) {
			size_t len;
			unsigned char *b = tu_read_file(p, &len);
			h = rt_weights_hash(b, b ? len : 0);
			free(b);
		} else if (S_ISLNK(st.st_mode)) {
			char t[1024];
			ssize_t r = readlink(p, t, sizeof t);
			h = rt_weights_hash(t, r > 0 ? (uint64_t)r : 0);
		}
		size_t len = strlen(out);
		snprintf(out + len, n - len, "%s%s %o %lld %016llx\n", prefix, names[i],
			 (unsigned)st.st_mode, (long long)st.st_size, (unsigned long long)h);
		if (S_ISDIR(st.st_mode) && depth > 0) {
			char pre[600];
			assert_true(snprintf(pre, sizeof pre, "%s%s/", prefix, names[i]) <
				    (int)sizeof pre);
			list_into(p, pre, out, n, depth - 1);
		}
	}
}

static char *listing(const char *dir)
{
	size_t n = 1 << 16;
	char *out = calloc(1, n);
	list_into(dir, "", out, n, 1);
	return out;
}

static bool empty_dir(const char *dir)
{
	char *l = listing(dir);
	bool e = l[0] == 0;
	if (!e)
		print_message("%s holds:\n%s", dir, l);
	free(l);
	return e;
}

/* Runs `bitnetc build ARGS` inside W with TMPDIR=T; returns the status, *log the output. */
static int build(char **log, const char *fmt, ...) BN_PRINTF(2, 3);
static int build(char **log, const char *fmt, ...)
{
	char args[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	return tu_run(log, "cd '%s' && TMPDIR='%s' '%s' build %s", W, T, tu_bitnetc(), args);
}

/* The build is refused: exit 2, one "bitnetc:" line holding both fragments, W and T as
 * before. */
static void refused(const char *frag1, const char *frag2, const char *args)
{
	char *before = listing(W), *log = NULL;
	int rc = build(&log, "%s", args);
	if (rc != 2)
		fail_msg("build %s: exit %d, expected 2:\n%s", args, rc, log ? log : "");
	int lines = 0;
	const char *line = NULL;
	for (const char *p = log; (p = strstr(p, "bitnetc:")); p++)
		if (p == log || p[-1] == '\n') {
			lines++;
			line = p;
		}
	if (lines != 1)
		fail_msg("build %s: %d error lines, expected one:\n%s", args, lines, log);
	size_t ll = strcspn(line, "\n");
	char msg[1024];
	snprintf(msg, sizeof msg, "%.*s", (int)(ll < 1000 ? ll : 1000), line);
	if (!strstr(msg, frag1) || (frag2 && !strstr(msg, frag2)))
		fail_msg("build %s: the message lacks \"%s\" / \"%s\":\n%s", args, frag1,
			 frag2 ? frag2 : "", msg);
	char *after = listing(W);
	if (strcmp(before, after) != 0)
		fail_msg("build %s changed the directory:\nbefore:\n%safter:\n%s", args, before,
			 after);
	assert_true(empty_dir(T));
	free(before);
	free(after);
	free(log);
}

/* ---- an output that is the model ---------------------------------------------------- */

static void test_out_is_model(void **state)
{
	(void)state;
	fresh("outputs-same");
	copy_model("in.gguf");
	assert_int_equal(symlink("in.gguf", in_w("link")), 0);
	assert_int_equal(link(in_w("in.gguf"), in_w("hard")), 0);
	assert_int_equal(mkdir(in_w("sub"), 0777), 0);
	const char *same = "names the same file as the model";
	refused("in.gguf: -o", same, "in.gguf -o in.gguf");
	refused("./in.gguf: -o", same, "in.gguf -o ./in.gguf");
	char args[4096];
	snprintf(args, sizeof args, "in.gguf -o '%s'", in_w("in.gguf"));
	refused(in_w("in.gguf"), same, args);
	snprintf(args, sizeof args, "'%s' -o in.gguf", in_w("in.gguf"));
	refused("in.gguf: -o", same, args);
	refused("link: -o", same, "in.gguf -o link");
	refused("hard: -o", same, "in.gguf -o hard");
	refused("sub/../in.gguf: -o", same, "in.gguf -o sub/../in.gguf");
	refused("in.gguf: -o", same, "link -o in.gguf --weights-file w");
}

/* --weights-file (and --tune-file, --emit-c) may not be the model either. */
static void test_weights_is_model(void **state)
{
	(void)state;
	fresh("outputs-wsame");
	copy_model("in.gguf");
	assert_int_equal(symlink("in.gguf", in_w("link")), 0);
	assert_int_equal(link(in_w("in.gguf"), in_w("hard")), 0);
	const char *same = "names the same file as the model";
	refused("in.gguf: --weights-file", same, "in.gguf -o p --weights-file in.gguf");
	refused("./link: --weights-file", same, "in.gguf -o p --weights-file ./link");
	refused("hard: --weights-file", same, "in.gguf -o p --weights-file hard");
	refused("in.gguf: --tune-file", same, "in.gguf -o p --tune --tune-file in.gguf");
	/* a model named model.c inside the --emit-c directory */
	assert_int_equal(mkdir(in_w("em"), 0777), 0);
	copy_model("em/model.c");
	refused("em/model.c", "--emit-c would overwrite", "em/model.c -o p --emit-c em");
}

/* Two outputs that are one file, however they are spelled. */
static void test_outputs_same_file(void **state)
{
	(void)state;
	fresh("outputs-two");
	copy_model("in.gguf");
	assert_int_equal(mkdir(in_w("sub"), 0777), 0);
	assert_int_equal(mkdir(in_w("e"), 0777), 0);
	const char *same = "names the same file as -o";
	/* neither exists yet: compared by directory and name */
	refused("s: --weights-file", same, "in.gguf -o ./s --weights-file s");
	refused("sub/../s: --weights-file", same, "in.gguf -o s --weights-file sub/../s");
	char args[4096];
	snprintf(args, sizeof args, "in.gguf -o s --weights-file '%s'", in_w("s"));
	refused("--weights-file", same, args);
	/* both exist */
	put("s", "an old program\n");
	refused("s: --weights-file", same, "in.gguf -o ./s --weights-file s");
	assert_int_equal(symlink("s", in_w("slink")), 0);
	refused("slink: --weights-file", same, "in.gguf -o s --weights-file slink");
	/* an output that --emit-c would write */
	refused("e/model.c: --emit-c", "-o e/model.c", "in.gguf -o e/model.c --emit-c e");
	refused("e/main.c: --emit-c", "--weights-file e/main.c",
		"in.gguf -o p --weights-file e/main.c --emit-c e");
}

/* ---- outputs that are not regular files ---------------------------------------------- */

static void test_special_outputs(void **state)
{
	(void)state;
	fresh("outputs-special");
	copy_model("in.gguf");
	assert_int_equal(mkfifo(in_w("fifo"), 0666), 0);
	assert_int_equal(mkdir(in_w("dir"), 0777), 0);
	assert_int_equal(symlink("fifo", in_w("fifolink")), 0);
	assert_int_equal(symlink("missing", in_w("dangling")), 0);
	int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(sfd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", "sock");
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(W), 0);
	int brc = bind(sfd, (struct sockaddr *)&sa, sizeof sa);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(brc, 0);

	const char *kinds[][2] = {{"fifo", "is a FIFO"},         {"dir", "is a directory"},
				  {"sock", "is a socket"},        {"fifolink", "is a FIFO"}};
	for (int i = 0; i < 4; i++) {
		char args[256], who[64];
		snprintf(args, sizeof args, "in.gguf -o %s", kinds[i][0]);
		snprintf(who, sizeof who, "%s: -o", kinds[i][0]);
		refused(who, kinds[i][1], args);
		snprintf(args, sizeof args, "in.gguf -o p --weights-file %s", kinds[i][0]);
		snprintf(who, sizeof who, "%s: --weights-file", kinds[i][0]);
		refused(who, kinds[i][1], args);
	}
	refused("dir/: -o", "names a directory", "in.gguf -o dir/");
	refused("new/: -o", "names a directory", "in.gguf -o new/");
	refused("nodir/p: -o", "no such directory", "in.gguf -o nodir/p");
	refused("dangling: -o", "symbolic link to a missing file", "in.gguf -o dangling");
	refused("fifo: --emit-c", "not a directory", "in.gguf -o p --emit-c fifo");
	struct stat st;
	assert_int_equal(lstat(in_w("fifo"), &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(lstat(in_w("sock"), &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	close(sfd);
}

/* Device nodes (made here, never the system's): neither replaced nor removed, also when
 * writing to them would fail (a copy of /dev/full) or succeed (of /dev/null). */
static void test_device_outputs(void **state)
{
	(void)state;
	fresh("outputs-dev");
	copy_model("in.gguf");
	if (mknod(in_w("full"), S_IFCHR | 0666, makedev(1, 7)) != 0 ||
	    mknod(in_w("null"), S_IFCHR | 0666, makedev(1, 3)) != 0) {
		skip(); /* device nodes need CAP_MKNOD: the fifo, socket and directory cases
			 * of test_special_outputs check the same rule */
	}
	const char *dev = "is a character device";
	refused("full: --weights-file", dev, "in.gguf -o p --weights-file full");
	refused("null: --weights-file", dev, "in.gguf -o p --weights-file null");
	refused("full: -o", dev, "in.gguf -o full");
	refused("null: -o", dev, "in.gguf -o null");
	struct stat st;
	assert_int_equal(lstat(in_w("full"), &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(lstat(in_w("null"), &st), 0);
	assert_true(S_ISCHR(st.st_mode));
}

/* ---- what the compiler made ---------------------------------------------------------- */

/* A stand-in compiler: the real one for model.o (unless obj_text), text or an ELF
 * header of another architecture for the program. */
static void fake_cc(const char *name, const char *obj, const char *prog)
{
	char s[2048];
	snprintf(s, sizeof s,
		 "#!/bin/sh\n"
		 "out=; prev=\n"
		 "for a in \"$@\"; do [ \"$prev\" = -o ] && out=$a; prev=$a; done\n"
		 "case \"$out\" in\n"
		 "model.o) %s ;;\n"
		 "*) %s ;;\n"
		 "esac\n",
		 obj, prog);
	char path[1200];
	snprintf(path, sizeof path, "%s/%s", root, name);
	assert_int_equal(tu_write_file(path, s, strlen(s)), 0);
	assert_int_equal(chmod(path, 0755), 0);
}

static void test_cc_makes_nothing(void **state)
{
	(void)state;
	fresh("outputs-cc");
	copy_model("in.gguf");
	put("p", "an old program\n");
	char args[4096];
	refused("model.o: the C compiler '/bin/true'", "did not write it",
		"in.gguf -o p --cc /bin/true");
	refused("model.o: the C compiler '/bin/true'", "did not write it",
		"in.gguf -o new --cc /bin/true");

	fake_cc("cc-obj-text", "echo 'not an object' > model.o", "exit 1");
	snprintf(args, sizeof args, "in.gguf -o p --cc '%s/cc-obj-text'", root);
	refused("model.o: the C compiler", "not an object file", args);

	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	char real[600];
	snprintf(real, sizeof real, "exec %s \"$@\"", cc);
	fake_cc("cc-prog-text", real, "echo '#!/bin/sh' > \"$out\"");
	snprintf(args, sizeof args, "in.gguf -o p --cc '%s/cc-prog-text'", root);
	refused("p: the C compiler", "not an executable", args);

	/* an executable for the other architecture than the target's */
#if defined(__x86_64__) || defined(__aarch64__)
#if defined(__x86_64__)
	const char *other = "\\267", *arch = "for aarch64", *target = "cpu-avx2";
#else
	const char *other = "\\076", *arch = "for x86-64", *target = "cpu-neon";
#endif
	char prog[600];
	snprintf(prog, sizeof prog,
		 "printf '\\177ELF\\002\\001\\001\\000\\000\\000\\000\\000\\000\\000\\000\\000"
		 "\\002\\000%s\\000' > \"$out\"; head -c 64 /dev/zero >> \"$out\"",
		 other);
	fake_cc("cc-prog-arch", real, prog);
	snprintf(args, sizeof args, "in.gguf -o p --target %s --cc '%s/cc-prog-arch'", target,
		 root);
	refused("p: the C compiler", arch, args);
#endif
}

/* ---- a full disk ----------------------------------------------------------------------- */

/* Runs argv inside W (TMPDIR=T) with files limited to fsize bytes (writes past it fail
 * with EFBIG, as on a full disk); returns the exit status. */
static int run_limited(const char *const *argv, rlim_t fsize, const char *log)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {fsize, fsize};
		signal(SIGXFSZ, SIG_IGN);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		if (fd < 0 || chdir(W) != 0 || setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(125);
		dup2(fd, 1);
		dup2(fd, 2);
		setenv("TMPDIR", T, 1);
		execv(argv[0], (char *const *)argv);
		_exit(126);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_disk_full(void **state)
{
	(void)state;
	fresh("outputs-full");
	/* 8 MiB of embedding: far more than the 4 MiB limit, while every file the compiler
	 * writes stays far below it */
	assert_int_equal(tu_run(NULL, "cd '%s' && '%s' mkmodel -o big.gguf --shape tiny --layers 1 "
				"--vocab 16384 --embd-type f16 >/dev/null", W, tu_bitnetc()), 0);
	put("p", "an old program\n");
	put("w", "old weights\n");
	char log[1200];
	snprintf(log, sizeof log, "%s/log", root);
	const char *cases[][8] = {
		{tu_bitnetc(), "build", "big.gguf", "-o", "p", NULL},
		{tu_bitnetc(), "build", "big.gguf", "-o", "p", "--weights-file", "w", NULL},
		{tu_bitnetc(), "build", "big.gguf", "-o", "q", "--weights-file", "w", NULL},
	};
	for (int i = 0; i < 3; i++) {
		char *before = listing(W);
		int rc = run_limited(cases[i], 4 << 20, log);
		char *out = read_text(log);
		if (rc != 2 || !strstr(out, "cannot write the weights payload") ||
		    !strstr(out, cases[i][6] ? "bitnetc: w:" : "bitnetc: p:"))
			fail_msg("case %d: exit %d:\n%s", i, rc, out);
		char *after = listing(W);
		if (strcmp(before, after) != 0)
			fail_msg("case %d changed the directory:\nbefore:\n%safter:\n%s", i, before,
				 after);
		assert_true(empty_dir(T));
		free(before);
		free(after);
		free(out);
	}
}

/* ---- a killed build ---------------------------------------------------------------------- */

static bool pid_alive(pid_t pid)
{
	char p[64], buf[512];
	snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return kill(pid, 0) == 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *rp = strrchr(buf, ')');
	return !(rp && rp[1] == ' ' && rp[2] == 'Z'); /* a zombie no longer runs */
}

/* Starts a build whose compiler (a script) records its pid and waits; sends sig once the
 * build is inside it (compile: the first call, which is the tuning program's with tune;
 * else the link), and checks that the build died of sig, the compiler is gone and W and T
 * hold nothing new. With par > 1 the build runs -j par with an empty cache of the runtime's
 * objects (root/cache): the signal comes once par compilers run at once, and every one of
 * them must be gone, and the cache hold no temporary. */
static void killed_in_cc_par(int sig, bool at_link, const char *extra, bool tune, int par)
{
	char pidf[1200], allf[1300], ccp[1200], cache[1200], s[4096];
	snprintf(pidf, sizeof pidf, "%s/cc.pid", root);
	snprintf(allf, sizeof allf, "%s/cc.pids", root);
	snprintf(ccp, sizeof ccp, "%s/cc-wait", root);
	snprintf(cache, sizeof cache, "%s/cache", root);
	unlink(pidf);
	unlink(allf);
	assert_int_equal(tu_run(NULL, "rm -rf '%s' && mkdir '%s'", cache, cache), 0);
	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	assert_true(snprintf(s, sizeof s,
		 "#!/bin/sh\n"
		 "[ \"$1\" = --version ] && exec %s --version\n"
		 "for a in \"$@\"; do [ \"$a\" = -c ] && [ %d = 1 ] && exec %s \"$@\"; done\n"
		 "echo $$ >> '%s'\n"
		 "echo $$ > '%s.new' && mv '%s.new' '%s'\n"
		 "exec sleep 300\n",
		 cc, at_link ? 1 : 0, cc, allf, pidf, pidf, pidf) < (int)sizeof s);
	assert_int_equal(tu_write_file(ccp, s, strlen(s)), 0);
	assert_int_equal(chmod(ccp, 0755), 0);
	char *before = listing(W);
	char log[1200];
	snprintf(log, sizeof log, "%s/log", root);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the signals as a terminal would deliver them, whatever this test inherited */
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		if (fd < 0 || chdir(W) != 0)
			_exit(125);
		dup2(fd, 1);
		dup2(fd, 2);
		setenv("TMPDIR", T, 1);
		const char *argv[16] = {tu_bitnetc(), "build", "in.gguf", "-o", "p", "--cc", ccp};
		int n = 7;
		char jobs[16];
		if (par > 1) {
			snprintf(jobs, sizeof jobs, "-j%d", par);
			argv[n++] = jobs;
			setenv("XDG_CACHE_HOME", cache, 1);
		}
		if (extra) {
			argv[n++] = "--weights-file";
			argv[n++] = extra;
		}
		if (tune)
			argv[n++] = "--tune";
		argv[n] = NULL;
		execv(argv[0], (char *const *)argv);
		_exit(126);
	}
	/* wait (without a deadline that could fail a slow machine) for the compiler, unless
	 * the build ended first */
	pid_t cc_pid = 0;
	int st = 0;
	bool ended = false;
	for (;;) {
		char *txt = read_text(par > 1 ? allf : pidf);
		int lines = 0;
		for (const char *p = txt; (p = strchr(p, '\n')); p++)
			lines++;
		if (lines >= (par > 1 ? par : 1)) {
			cc_pid = (pid_t)atoi(txt);
			free(txt);
			break;
		}
		free(txt);
		if (waitpid(pid, &st, WNOHANG) == pid) {
			ended = true;
			break;
		}
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (ended)
		fail_msg("the build ended before its compiler ran:\n%s", read_text(log));
	assert_int_equal(kill(pid, sig), 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != sig)
		fail_msg("signal %d: the build %s %d", sig,
			 WIFSIGNALED(st) ? "died of signal" : "exited", WIFSIGNALED(st) ? WTERMSIG(st)
											  : WEXITSTATUS(st));
	if (pid_alive(cc_pid)) {
		kill(cc_pid, SIGKILL);
		fail_msg("signal %d: the compiler (pid %d) still runs", sig, (int)cc_pid);
	}
	/* every compiler that ran at once */
	char *all = read_text(allf);
	int n_all = 0;
	for (char *p = all; *p; n_all++) {
		pid_t q = (pid_t)atoi(p);
		if (pid_alive(q)) {
			kill(q, SIGKILL);
			fail_msg("signal %d: compiler %d of %d (pid %d) still runs", sig, n_all + 1,
				 par, (int)q);
		}
		p += strcspn(p, "\n");
		p += *p == '\n';
	}
	free(all);
	if (par > 1) {
		assert_true(n_all >= par);
		char rt[1300];
		snprintf(rt, sizeof rt, "%s/bitnetc/runtime", cache);
		struct stat cst;
		if (stat(rt, &cst) == 0)
			assert_true(empty_dir(rt));
	}
	char *after = listing(W);
	if (strcmp(before, after) != 0)
		fail_msg("signal %d changed the directory:\nbefore:\n%safter:\n%s", sig, before,
			 after);
	assert_true(empty_dir(T));
	free(before);
	free(after);
}

/* stdout a pipe that its reader closes while the build is in the compiler: the next
 * progress line raises SIGPIPE, which must clean up as the other signals do. */
static void killed_in_cc(int sig, bool at_link, const char *extra, bool tune)
{
	killed_in_cc_par(sig, at_link, extra, tune, 1);
}

static void test_closed_stdout(void **state)
{
	(void)state;
	fresh("outputs-pipe");
	copy_model("in.gguf");
	put("p", "an old program\n");
	char ready[1200], go[1200], ccp[1200], s[4096];
	snprintf(ready, sizeof ready, "%s/ready", root);
	snprintf(go, sizeof go, "%s/go", root);
	snprintf(ccp, sizeof ccp, "%s/cc-gate", root);
	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	assert_true(snprintf(s, sizeof s,
			     "#!/bin/sh\n"
			     "touch '%s'\n"
			     "while [ ! -e '%s' ]; do sleep 0.05; done\n"
			     "exec %s \"$@\"\n",
			     ready, go, cc) < (int)sizeof s);
	assert_int_equal(tu_write_file(ccp, s, strlen(s)), 0);
	assert_int_equal(chmod(ccp, 0755), 0);
	char *before = listing(W);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		if (chdir(W) != 0)
			_exit(125);
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		setenv("TMPDIR", T, 1);
		execl(tu_bitnetc(), tu_bitnetc(), "build", "in.gguf", "-o", "p", "--cc", ccp,
		      (char *)NULL);
		_exit(126);
	}
	close(fds[1]);
	int st;
	struct stat sst;
	while (stat(ready, &sst) != 0) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("the build ended before its compiler ran (status %d)", st);
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	close(fds[0]);
	assert_int_equal(tu_write_file(go, "", 0), 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGPIPE)
		fail_msg("the build %s %d, not SIGPIPE", WIFSIGNALED(st) ? "died of signal"
			 : "exited", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	char *after = listing(W);
	if (strcmp(before, after) != 0)
		fail_msg("the directory changed:\nbefore:\n%safter:\n%s", before, after);
	assert_true(empty_dir(T));
	free(before);
	free(after);
}

static void test_killed_build(void **state)
{
	(void)state;
	fresh("outputs-kill");
	copy_model("in.gguf");
	put("p", "an old program\n");
	put("w", "old weights\n");
	killed_in_cc(SIGINT, false, NULL, false);
	killed_in_cc(SIGTERM, false, "w", false);
	killed_in_cc(SIGTERM, true, NULL, false);
	killed_in_cc(SIGHUP, true, "w", false);
	killed_in_cc(SIGTERM, false, NULL, true); /* in the tuning program's compiler */
	/* model.c and runtime sources compiled at once: every compiler stopped */
	killed_in_cc_par(SIGINT, false, NULL, false, 4);
	killed_in_cc_par(SIGTERM, false, "w", false, 3);
}

/* ---- --emit-c ------------------------------------------------------------------------ */

static void test_emit_dir(void **state)
{
	(void)state;
	fresh("outputs-emit");
	copy_model("in.gguf");
	/* files of the names it writes that an earlier --emit-c did not write */
	assert_int_equal(mkdir(in_w("mine"), 0777), 0);
	put("mine/model.c", "int main(void) { return 0; }\n");
	put("mine/notes.txt", "mine\n");
	refused("mine/model.c: --emit-c", "bitnetc did not write", "in.gguf -o p --emit-c mine");
	assert_int_equal(mkdir(in_w("ln"), 0777), 0);
	put("secret", "not to be overwritten\n");
	assert_int_equal(symlink("../secret", in_w("ln/main.c")), 0);
	refused("ln/main.c: --emit-c", "symbolic link", "in.gguf -o p --emit-c ln");

	/* unrelated files stay; an earlier --emit-c output is written again; a symbolic
	 * link as -o: the file it names gets the program, the link stays */
	assert_int_equal(mkdir(in_w("src"), 0777), 0);
	put("src/notes.txt", "mine\n");
	put("old", "an old program\n");
	assert_int_equal(symlink("old", in_w("plink")), 0);
	char *log = NULL;
	for (int i = 0; i < 2; i++) {
		int rc = build(&log, "in.gguf -o plink --emit-c src");
		if (rc != 0)
			fail_msg("build %d: exit %d:\n%s", i, rc, log);
		free(log);
	}
	char *notes = read_text(in_w("src/notes.txt"));
	assert_string_equal(notes, "mine\n");
	free(notes);
	struct stat st;
	assert_int_equal(lstat(in_w("plink"), &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(stat(in_w("old"), &st), 0);
	assert_true(st.st_size > 4096 && (st.st_mode & 0100));
	assert_int_equal(tu_run(NULL, "'%s' --tokens 1,2 -n 1 --temp 0 -t 1 >/dev/null 2>&1",
				in_w("plink")),
			 0);
	assert_true(empty_dir(T));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_out_is_model),     cmocka_unit_test(test_weights_is_model),
		cmocka_unit_test(test_outputs_same_file), cmocka_unit_test(test_special_outputs),
		cmocka_unit_test(test_device_outputs),   cmocka_unit_test(test_cc_makes_nothing),
		cmocka_unit_test(test_disk_full),        cmocka_unit_test(test_killed_build),
		cmocka_unit_test(test_closed_stdout),    cmocka_unit_test(test_emit_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
