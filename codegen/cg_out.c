/* cg_out.c - what a build may write and what it leaves behind, for every backend: the
 * checks that no output is an input, another output or anything but a regular file;
 * temporary files replaced into place by rename; removal of them (and a stop of the
 * compiler) on failure and on SIGINT, SIGTERM, SIGHUP or SIGPIPE. Which files a backend
 * writes into its source directory (--emit-c DIR) it says itself (CgBackend.emit_files). */
#include "cg_out.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- cleanup on failure and on a signal ---------------------------------------- */

/* The registry is written with the signals blocked and read by the handler, which only
 * calls async-signal-safe functions: kill, waitid, waitpid, nanosleep, unlink, rmdir,
 * sigaction, sigprocmask, raise. */
enum { CLEAN_MAX = 8, CLEAN_FILE = 1, CLEAN_DIR = 2, CLEAN_NAMES = 160 };
typedef struct {
	int kind;
	char path[4096];
} CleanEntry;
static CleanEntry clean[CLEAN_MAX];
/* the names the handler removes from a private directory (cg_cleanup_names) */
static const char *clean_names[CLEAN_NAMES];
static int n_clean_names;
/* the running compilers (each in its own process group); 0: a free slot */
enum { CLEAN_KIDS = 64 };
static volatile pid_t clean_kids[CLEAN_KIDS];
static pid_t clean_owner;          /* the process that registered (not a forked child) */
/* SIGPIPE: `bitnetc build ... | head` ends the build at its next progress line */
static const int clean_sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
enum { N_CLEAN_SIGS = sizeof clean_sigs / sizeof clean_sigs[0] };

static void sigs_block(sigset_t *old)
{
	sigset_t s;
	sigemptyset(&s);
	for (int i = 0; i < N_CLEAN_SIGS; i++)
		sigaddset(&s, clean_sigs[i]);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

static void sigs_restore(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* dir/name into buf without stdio (safe in the handler). */
static void path_cat(char *buf, size_t n, const char *dir, const char *name)
{
	size_t i = 0;
	for (; dir[i] && i + 2 < n; i++)
		buf[i] = dir[i];
	buf[i++] = '/';
	for (size_t j = 0; name[j] && i + 1 < n; j++)
		buf[i++] = name[j];
	buf[i] = 0;
}

/* Whether child pid has exited (a zombie, not reaped: WNOWAIT keeps its group id from
 * being reused until the kill below). */
static bool child_exited(pid_t pid)
{
	siginfo_t si;
	si.si_pid = 0;
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
	       si.si_pid == pid;
}

/* Stops every running compiler: SIGTERM to each one's process group, up to 3 s for all of
 * them to exit, then SIGKILL to what is left of each group (their own children), and
 * reaps them. */
static void stop_children(void)
{
	bool any = false;
	for (int k = 0; k < CLEAN_KIDS; k++)
		if (clean_kids[k] > 0) {
			kill(-clean_kids[k], SIGTERM);
			any = true;
		}
	for (int i = 0; any && i < 300; i++) {
		bool all = true;
		for (int k = 0; k < CLEAN_KIDS && all; k++)
			all = clean_kids[k] <= 0 || child_exited(clean_kids[k]);
		if (all)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	for (int k = 0; k < CLEAN_KIDS; k++) {
		pid_t pid = clean_kids[k];
		if (pid <= 0)
			continue;
		kill(-pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		clean_kids[k] = 0;
	}
}

static void remove_entry(CleanEntry *c)
{
	if (c->kind == CLEAN_FILE) {
		unlink(c->path);
	} else if (c->kind == CLEAN_DIR) {
		char p[4200];
		/* the build's sources and objects, and the tuning program's */
		for (int i = 0; i < n_clean_names; i++) {
			path_cat(p, sizeof p, c->path, clean_names[i]);
			unlink(p);
		}
		rmdir(c->path);
	}
	c->kind = 0;
}

static void on_signal(int sig)
{
	int saved = errno;
	if (getpid() == clean_owner) {
		stop_children();
		for (int i = CLEAN_MAX - 1; i >= 0; i--)
			remove_entry(&clean[i]);
	}
	/* die of the same signal, so that the exit status says so */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	raise(sig);
	errno = saved;
}

static bool handled(int sig)
{
	struct sigaction sa;
	return sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == on_signal;
}

void cg_cleanup_names(const char *const *names, int n)
{
	sigset_t old;
	sigs_block(&old);
	for (int i = 0; i < n; i++) {
		bool have = false;
		for (int k = 0; k < n_clean_names && !have; k++)
			have = strcmp(clean_names[k], names[i]) == 0;
		if (!have && n_clean_names < CLEAN_NAMES)
			clean_names[n_clean_names++] = names[i];
	}
	sigs_restore(&old);
}

void cg_cleanup_install(const CgBackend *b)
{
	const char *names[CLEAN_NAMES];
	cg_cleanup_names(names, b && b->emit_files ? b->emit_files(names, CLEAN_NAMES) : 0);
	clean_owner = getpid();
	for (int i = 0; i < N_CLEAN_SIGS; i++) {
		struct sigaction sa, old;
		/* a signal the caller ignores (nohup, a background job) stays ignored */
		if (sigaction(clean_sigs[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN)
			continue;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		for (int k = 0; k < N_CLEAN_SIGS; k++)
			sigaddset(&sa.sa_mask, clean_sigs[k]);
		sigaction(clean_sigs[i], &sa, NULL);
	}
}

int cg_cleanup_add(const char *path, bool dir)
{
	sigset_t old;
	int slot = -1;
	sigs_block(&old);
	for (int i = 0; i < CLEAN_MAX && slot < 0; i++)
		if (!clean[i].kind && strlen(path) < sizeof clean[i].path) {
			snprintf(clean[i].path, sizeof clean[i].path, "%s", path);
			clean[i].kind = dir ? CLEAN_DIR : CLEAN_FILE;
			slot = i;
		}
	sigs_restore(&old);
	return slot;
}

void cg_cleanup_drop(int slot)
{
	if (slot < 0 || slot >= CLEAN_MAX)
		return;
	sigset_t old;
	sigs_block(&old);
	clean[slot].kind = 0;
	sigs_restore(&old);
}

void cg_cleanup_remove(int slot)
{
	if (slot < 0 || slot >= CLEAN_MAX)
		return;
	sigset_t old;
	sigs_block(&old);
	if (clean[slot].kind == CLEAN_DIR)
		cg_remove_sources(clean[slot].path);
	else if (clean[slot].kind == CLEAN_FILE)
		unlink(clean[slot].path);
	clean[slot].kind = 0;
	sigs_restore(&old);
}

static sigset_t hold_old;

void cg_cleanup_hold(void)
{
	sigs_block(&hold_old);
}

void cg_cleanup_release(void)
{
	sigs_restore(&hold_old);
}

pid_t cg_cleanup_spawn(const char *const *argv, const char *dir, int out_fd, int close_fd)
{
	sigset_t old;
	sigs_block(&old);
	/* with the handler in place the compiler gets its own process group, which the
	 * handler stops as a whole; without it, it stays in ours (a terminal's ^C reaches it) */
	bool own_group = false;
	for (int i = 0; i < N_CLEAN_SIGS; i++)
		own_group |= handled(clean_sigs[i]);
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 0; i < N_CLEAN_SIGS; i++)
			if (handled(clean_sigs[i]))
				signal(clean_sigs[i], SIG_DFL);
		sigs_restore(&old);
		if (own_group)
			setpgid(0, 0);
		dup2(out_fd, 1);
		dup2(out_fd, 2);
		close(out_fd);
		close(close_fd);
		if (chdir(dir) != 0) {
			fprintf(stderr, "cannot enter %s: %s\n", dir, strerror(errno));
			_exit(127);
		}
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (pid > 0 && own_group) {
		setpgid(pid, pid); /* also here: the handler may run before the child does */
		int k = 0;
		while (k < CLEAN_KIDS && clean_kids[k] > 0)
			k++;
		if (k < CLEAN_KIDS) {
			clean_kids[k] = pid;
		} else {
			/* callers run at most CLEAN_KIDS at once (cg_cleanup_max_children) */
			kill(-pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			pid = -1;
			errno = EAGAIN;
		}
	}
	sigs_restore(&old);
	return pid;
}

int cg_cleanup_max_children(void)
{
	return CLEAN_KIDS;
}

void cg_cleanup_reaped(pid_t pid)
{
	sigset_t old;
	sigs_block(&old);
	for (int k = 0; k < CLEAN_KIDS; k++)
		if (clean_kids[k] == pid)
			clean_kids[k] = 0;
	sigs_restore(&old);
}

/* ---- outputs replaced by rename -------------------------------------------------- */

/* path's directory into dir: "." for a bare name, "/" for a name at the root. Returns its
 * last component (a pointer into path). */
static const char *path_dir(const char *path, char *dir, size_t n)
{
	snprintf(dir, n, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash) {
		snprintf(dir, n, ".");
		return path;
	}
	const char *base = path + (slash - dir) + 1;
	slash[slash == dir] = 0;
	return base;
}

int cg_out_temp(const char *dest, char *tmp, size_t n, int *slot, BnErr *e)
{
	char b[4096];
	const char *base = path_dir(dest, b, sizeof b);
	/* absolute: the compiler runs in another directory */
	char *abs = realpath(b, NULL);
	if (!abs)
		return bn_err(e, BN_EIO, "%s: cannot write there: %s", dest, strerror(errno));
	size_t k = (size_t)snprintf(tmp, n, "%s/.%s.XXXXXX", strcmp(abs, "/") ? abs : "", base);
	free(abs);
	if (k >= n)
		return bn_err(e, BN_EIO, "%s: the path is too long", dest);
	sigset_t old;
	sigs_block(&old);
	int fd = mkstemp(tmp);
	*slot = fd >= 0 ? cg_cleanup_add(tmp, false) : -1;
	sigs_restore(&old);
	if (fd < 0) {
		int err = errno;
		tmp[0] = 0;
		return bn_err(e, BN_EIO, "%s: cannot create a file in %s: %s", dest, b,
			      strerror(err));
	}
	close(fd);
	return 0;
}

int cg_out_commit(int slot, const char *tmp, const char *dest, const char *shown,
		  const char *role, mode_t mode, BnErr *e)
{
	sigset_t old;
	int rc = 0;
	sigs_block(&old);
	/* once more: the path may have become something else while the build ran */
	if ((rc = cg_out_check(dest, role, e)) == 0) {
		if (chmod(tmp, mode) != 0 || rename(tmp, dest) != 0)
			rc = bn_err(e, BN_EIO, "%s: cannot write: %s", shown, strerror(errno));
		else
			cg_cleanup_drop(slot);
	}
	sigs_restore(&old);
	return rc;
}

void cg_out_resolve(const char *path, char *buf, size_t n)
{
	struct stat st;
	char *r = NULL;
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		r = realpath(path, NULL);
	snprintf(buf, n, "%s", r ? r : path);
	free(r);
}

/* ---- which files a build touches ---------------------------------------------------- */

/* A file's identity: an existing file's device and inode (through symbolic links); for one
 * that does not exist yet, its directory's and its name. */
typedef struct {
	bool exists;
	dev_t dev;
	ino_t ino;
	char name[NAME_MAX + 1];
} FileId;

static bool file_id(const char *path, FileId *id)
{
	struct stat st;
	memset(id, 0, sizeof *id);
	if (stat(path, &st) == 0) {
		id->exists = true;
		id->dev = st.st_dev;
		id->ino = st.st_ino;
		return true;
	}
	char a[4096], b[4096];
	snprintf(a, sizeof a, "%s", path);
	size_t l = strlen(a);
	while (l > 1 && a[l - 1] == '/')
		a[--l] = 0;
	const char *base = path_dir(a, b, sizeof b);
	if (stat(b, &st) != 0 || !S_ISDIR(st.st_mode))
		return false;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	/* a longer name cannot be created there */
	return snprintf(id->name, sizeof id->name, "%s", base) < (int)sizeof id->name;
}

static bool file_same(const FileId *a, const FileId *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       (a->exists || strcmp(a->name, b->name) == 0);
}

static const char *kind_name(mode_t m)
{
	return S_ISDIR(m)    ? "directory"
	       : S_ISCHR(m)  ? "character device"
	       : S_ISBLK(m)  ? "block device"
	       : S_ISFIFO(m) ? "FIFO"
	       : S_ISSOCK(m) ? "socket"
	       : S_ISLNK(m)  ? "symbolic link"
			     : "special file";
}

int cg_out_check(const char *path, const char *role, BnErr *e)
{
	struct stat st;
	size_t l = strlen(path);
	if (!l)
		return bn_err(e, BN_EINVAL, "%s: an empty file name", role);
	if (path[l - 1] == '/')
		return bn_err(e, BN_EINVAL, "%s: %s names a directory (ends in '/'), not a file to "
					    "write", path, role);
	if (lstat(path, &st) == 0) {
		if (S_ISLNK(st.st_mode) && stat(path, &st) != 0)
			return bn_err(e, BN_EINVAL, "%s: %s is a symbolic link to a missing file",
				      path, role);
		if (!S_ISREG(st.st_mode))
			return bn_err(e, BN_EINVAL, "%s: %s is a %s, not a regular file (bitnetc build "
						    "only replaces regular files)", path, role,
				      kind_name(st.st_mode));
		return 0;
	}
	FileId id;
	if (!file_id(path, &id))
		return bn_err(e, BN_EIO, "%s: %s: cannot write there: no such directory", path,
			      role);
	return 0;
}

/* Whether dir holds an earlier --emit-c output: a main source (main, the first of the
 * names) that bitnetc generated. */
static bool emitted_before(const char *dir, const char *main)
{
	char sig[128], p[4200], head[sizeof sig];
	int l = snprintf(sig, sizeof sig, "/* %s - generated by bitnetc ", main);
	if (l < 0 || l >= (int)sizeof sig)
		return false;
	snprintf(p, sizeof p, "%s/%s", dir, main);
	int fd = open(p, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return false;
	ssize_t r = read(fd, head, (size_t)l);
	close(fd);
	return r == l && memcmp(head, sig, (size_t)l) == 0;
}

static int emit_dir_check(const char *dir, const char *role, const char *const *names, int n,
			  BnErr *e)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return 0; /* made by the build */
	if (!S_ISDIR(st.st_mode))
		return bn_err(e, BN_EINVAL, "%s: %s names a %s, not a directory", dir, role,
			      kind_name(st.st_mode));
	bool ours = n > 0 && emitted_before(dir, names[0]);
	for (int i = 0; i < n; i++) {
		char p[4200];
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		if (lstat(p, &st) != 0)
			continue;
		if (!S_ISREG(st.st_mode))
			return bn_err(e, BN_EINVAL, "%s: %s would replace this %s (name a new or "
						    "empty directory)", p, role, kind_name(st.st_mode));
		if (!ours)
			return bn_err(e, BN_EINVAL, "%s: %s would overwrite this file, which bitnetc "
						    "did not write (name a new or empty directory)", p,
				      role);
	}
	return 0;
}

int cg_build_files_check(const CgBuildFiles *f, BnErr *e)
{
	enum { MAX_EMIT = 128 };
	const char *names[MAX_EMIT];
	int n_names = f->emit_dir && f->backend && f->backend->emit_files
			      ? f->backend->emit_files(names, MAX_EMIT) : 0;
	for (int i = 0; f->emit_dir && i < f->n_extra && n_names < MAX_EMIT; i++)
		names[n_names++] = f->extra[i];
	const char *role = f->emit_role ? f->emit_role : "--emit-c";
	int rc;
	/* made first, as the build would: -o may name a file inside it */
	struct stat st;
	if (f->emit_dir && stat(f->emit_dir, &st) != 0 && errno == ENOENT &&
	    mkdir(f->emit_dir, 0777) != 0)
		return bn_err(e, BN_EIO, "%s: cannot create the directory: %s", f->emit_dir,
			      strerror(errno));
	if (f->out && (rc = cg_out_check(f->out, "-o", e)))
		return rc;
	if (f->weights && (rc = cg_out_check(f->weights, "--weights-file", e)))
		return rc;
	if (f->emit_dir && (rc = emit_dir_check(f->emit_dir, role, names, n_names, e)))
		return rc;

	/* every file read or written, readers first; no writer may be any earlier one */
	enum { MAX = 8 };
	struct {
		const char *path, *role;
		bool writes;
		FileId id;
	} fs[MAX + MAX_EMIT];
	int n = 0;
	const char *paths[] = {f->model, f->pipeline, f->out, f->weights, f->tune_file};
	const char *roles[] = {"the model", "--pipeline", "-o", "--weights-file", "--tune-file"};
	const bool writes[] = {false, false, true, true, true};
	for (int i = 0; i < 5; i++) {
		if (!paths[i] || !file_id(paths[i], &fs[n].id))
			continue;
		if (!writes[i] && !fs[n].id.exists)
			continue; /* a missing input is reported where it is read */
		fs[n].path = paths[i];
		fs[n].role = roles[i];
		fs[n].writes = writes[i];
		n++;
	}
	static char emitted[MAX_EMIT][4200];
	for (int i = 0; i < n_names; i++) {
		snprintf(emitted[i], sizeof emitted[i], "%s/%s", f->emit_dir, names[i]);
		if (!file_id(emitted[i], &fs[n].id))
			continue; /* the directory is made by the build: nothing there yet */
		fs[n].path = emitted[i];
		fs[n].role = role;
		fs[n].writes = true;
		n++;
	}
	for (int j = 1; j < n; j++)
		for (int i = 0; i < j; i++) {
			if (!fs[j].writes || !file_same(&fs[i].id, &fs[j].id))
				continue;
			if (strcmp(fs[i].role, fs[j].role) == 0)
				continue; /* --emit-c's own names differ */
			return bn_err(e, BN_EINVAL, "%s: %s names the same file as %s %s; refusing "
						    "to overwrite it", fs[j].path, fs[j].role,
				      fs[i].role, fs[i].path);
		}
	return 0;
}

/* ---- a private source directory ------------------------------------------------------ */

void cg_remove_sources(const char *dir)
{
	/* a private directory: whatever the compiler left there too (-save-temps) */
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char path[4400];
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}
