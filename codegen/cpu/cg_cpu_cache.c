/* cg_cpu_cache.c - the cache of the runtime's compiled objects: they depend only on the
 * runtime sources (embedded in bitnetc), the compiler (its path, the file's size and
 * time, and its --version output) and the flags, so one entry per hash of all that
 * ($XDG_CACHE_HOME/bitnetc/runtime/KEY.objs, else ~/.cache/...) holds every object. An
 * entry is one file written beside itself and renamed into place, checked whole (magic,
 * key, names, sizes, a hash of it all, each object an object file) before it is used; a
 * damaged or foreign one is compiled again and replaced. */
#include "cg_cpu.h"

#include "rt_model.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ENTRY_MAGIC "BNRTOBJ1"
enum { ENTRY_MAX = 64 << 20 }; /* far above the runtime's objects */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The cache's directory (made when missing); false when there is none to use. */
static bool cache_dir(char *out, size_t n)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	int k = xdg && *xdg ? snprintf(out, n, "%s/bitnetc/runtime", xdg)
			    : snprintf(out, n, "%s/.cache/bitnetc/runtime",
				       home && *home ? home : "/tmp");
	if (k < 0 || (size_t)k >= n - 64)
		return false;
	for (char *p = out + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(out, 0755);
			*p = '/';
		}
	mkdir(out, 0700);
	struct stat st;
	return stat(out, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The compiler as a file: its absolute path (a bare name found on $PATH). */
static bool cc_file(const char *cc, char *out, size_t n)
{
	char cand[4096];
	if (strchr(cc, '/')) {
		snprintf(cand, sizeof cand, "%s", cc);
	} else {
		const char *path = getenv("PATH");
		if (!path || !*path)
			path = "/usr/bin:/bin";
		cand[0] = 0;
		while (*path) {
			const char *end = strchr(path, ':');
			size_t len = end ? (size_t)(end - path) : strlen(path);
			snprintf(cand, sizeof cand, "%.*s/%s", (int)len, len ? path : ".", cc);
			if (access(cand, X_OK) == 0)
				break;
			cand[0] = 0;
			path += len + (end ? 1 : 0);
		}
		if (!cand[0])
			return false;
	}
	char *r = realpath(cand, NULL);
	if (!r)
		return false;
	snprintf(out, n, "%s", r);
	free(r);
	return true;
}

/* What `cc --version` prints (and its exit status) into both hashes. */
static bool hash_version(RtHash *h, const char *cc)
{
	int fds[2];
	if (pipe(fds) != 0)
		return false;
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	const char *argv[] = {cc, "--version", NULL};
	pid_t pid = cg_cleanup_spawn(argv, "/", fds[1], fds[0]);
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		return false;
	}
	char buf[4096];
	uint64_t total = 0;
	for (;;) {
		ssize_t r = read(fds[0], buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int k = 0; k < 2 && total < (1u << 20); k++)
			rt_hash_update(&h[k], buf, (uint64_t)r);
		total += (uint64_t)r;
	}
	close(fds[0]);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	cg_cleanup_reaped(pid);
	for (int k = 0; k < 2; k++)
		rt_hash_update(&h[k], &st, sizeof st);
	return true;
}

bool cg_rt_cache_key(const CgOpts *o, const char *const *flags, int n_flags, CgRtCache *c)
{
	memset(c, 0, sizeof *c);
	if (o->no_cache)
		return false;
	char dir[4096], exe[4096];
	const char *cc = o->cc ? o->cc : "cc";
	struct stat st;
	if (!cc_file(cc, exe, sizeof exe) || stat(exe, &st) != 0 || !cache_dir(dir, sizeof dir))
		return false;
	/* two hashes of everything (the second seeded apart): a 128-bit key */
	RtHash h[2];
	for (int k = 0; k < 2; k++) {
		rt_hash_init(&h[k]);
		rt_hash_update(&h[k], k ? "runtime objects #2" : "runtime objects #1", 19);
	}
	uint64_t file[2] = {(uint64_t)st.st_size, (uint64_t)st.st_mtime};
	for (int k = 0; k < 2; k++) {
		rt_hash_update(&h[k], BITNETC_VERSION, sizeof BITNETC_VERSION);
		rt_hash_update(&h[k], exe, strlen(exe) + 1);
		rt_hash_update(&h[k], file, sizeof file);
		for (int i = 0; i < n_flags; i++)
			rt_hash_update(&h[k], flags[i], strlen(flags[i]) + 1);
		int n_src = cg_n_runtime_sources + (o->server_libs ? cg_n_runtime_server_sources : 0);
		for (int i = 0; i < n_src; i++) {
			const CgSource *s = i < cg_n_runtime_sources
						    ? &cg_runtime_sources[i]
						    : &cg_runtime_server_sources[i - cg_n_runtime_sources];
			uint8_t len[8];
			put_le(len, s->size, 8);
			rt_hash_update(&h[k], s->name, strlen(s->name) + 1);
			rt_hash_update(&h[k], len, sizeof len);
			rt_hash_update(&h[k], s->data, s->size);
		}
	}
	if (!hash_version(h, exe))
		return false;
	snprintf(c->key, sizeof c->key, "%016" PRIx64 "%016" PRIx64, rt_hash_final(&h[0]),
		 rt_hash_final(&h[1]));
	snprintf(c->path, sizeof c->path, "%s/%s.objs", dir, c->key);
	return true;
}

/* The whole entry, when it is ours: a regular file of this user that no one else may
 * write, of a sane size. NULL otherwise (why says what). */
static uint8_t *read_entry(const char *path, size_t *n, char *why, size_t why_n)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW);
	struct stat st;
	if (fd < 0) {
		snprintf(why, why_n, "%s", errno == ENOENT ? "not there" : strerror(errno));
		return NULL;
	}
	uint8_t *b = NULL;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 022) || st.st_size <= 0 || st.st_size > ENTRY_MAX) {
		snprintf(why, why_n, "foreign (not a private file of this user, or of a size no "
				     "entry has)");
	} else if ((b = malloc((size_t)st.st_size))) {
		size_t got = 0;
		while (got < (size_t)st.st_size) {
			ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		if (got != (size_t)st.st_size) {
			snprintf(why, why_n, "cannot be read");
			free(b);
			b = NULL;
		}
		*n = got;
	}
	close(fd);
	return b;
}

/* Whether entry b (n bytes) is intact and holds exactly names[0..n_names) for key; each
 * object's bytes and size into obj/size. */
static bool parse_entry(const uint8_t *b, size_t n, const char *key, const char *const *names,
			int n_names, const uint8_t **obj, uint64_t *size, char *why, size_t why_n)
{
	size_t at = 8 + 32 + 4;
	if (n < at + 8 || memcmp(b, ENTRY_MAGIC, 8) != 0 || memcmp(b + 8, key, 32) != 0) {
		snprintf(why, why_n, "foreign (another format or key)");
		return false;
	}
	if (get_le(b + n - 8, 8) != rt_weights_hash(b, n - 8)) {
		snprintf(why, why_n, "damaged (its hash does not match)");
		return false;
	}
	if (get_le(b + 40, 4) != (uint64_t)n_names) {
		snprintf(why, why_n, "foreign (another set of objects)");
		return false;
	}
	for (int i = 0; i < n_names; i++) {
		if (at + 4 > n - 8)
			goto bad;
		uint64_t l = get_le(b + at, 4);
		at += 4;
		if (l != strlen(names[i]) || l > n - 8 - at || memcmp(b + at, names[i], l) != 0)
			goto bad;
		at += l;
		if (at + 8 > n - 8)
			goto bad;
		size[i] = get_le(b + at, 8);
		at += 8;
		if (size[i] > n - 8 - at)
			goto bad;
		obj[i] = b + at;
		at += size[i];
	}
	if (at == n - 8)
		return true;
bad:
	snprintf(why, why_n, "foreign (its objects are not the runtime's)");
	return false;
}

int cg_rt_cache_get(const CgRtCache *c, const char *dir, const char *const *names, int n,
		    char *why, size_t why_n)
{
	snprintf(why, why_n, "no cache");
	if (!c->path[0] || n > 128)
		return 0;
	size_t len = 0;
	uint8_t *b = read_entry(c->path, &len, why, why_n);
	if (!b)
		return 0;
	const uint8_t *obj[128];
	uint64_t size[128];
	int ok = parse_entry(b, len, c->key, names, n, obj, size, why, why_n);
	for (int i = 0; ok && i < n; i++) {
		char p[4200];
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		ok = cg_write_file(dir, names[i], obj[i], (size_t)size[i], NULL) == 0 &&
		     cg_check_output(p, names[i], "cc", NULL, true, NULL) == 0;
		if (!ok)
			snprintf(why, why_n, "unusable (%s is not an object file)", names[i]);
	}
	free(b);
	return ok;
}

/* Writes all of n bytes; false on any failure. */
static bool write_all(int fd, const void *data, size_t n)
{
	const uint8_t *p = data;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

bool cg_rt_cache_put(const CgRtCache *c, const char *dir, const char *const *names, int n)
{
	if (!c->path[0])
		return false;
	/* the whole entry in memory: the objects are a few hundred KiB */
	size_t cap = 8 + 32 + 4, len = 0;
	uint8_t *b = NULL;
	bool ok = true;
	for (int i = 0; i < n && ok; i++) {
		char p[4200];
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		/* only what the compiler made as an object file (a stand-in compiler's text is
		 * not kept) */
		ok = stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < ENTRY_MAX &&
		     cg_check_output(p, names[i], "cc", NULL, true, NULL) == 0;
		cap += ok ? 4 + strlen(names[i]) + 8 + (size_t)st.st_size : 0;
	}
	if (ok && (cap += 8) <= ENTRY_MAX && (b = malloc(cap))) {
		memcpy(b, ENTRY_MAGIC, 8);
		memcpy(b + 8, c->key, 32);
		put_le(b + 40, (uint64_t)n, 4);
		len = 44;
		for (int i = 0; i < n && ok; i++) {
			char p[4200];
			size_t l = strlen(names[i]), got = 0;
			snprintf(p, sizeof p, "%s/%s", dir, names[i]);
			int fd = open(p, O_RDONLY | O_NOFOLLOW);
			struct stat st;
			ok = fd >= 0 && fstat(fd, &st) == 0 &&
			     len + 12 + l + (size_t)st.st_size + 8 <= cap;
			if (ok) {
				put_le(b + len, l, 4);
				memcpy(b + len + 4, names[i], l);
				put_le(b + len + 4 + l, (uint64_t)st.st_size, 8);
				len += 12 + l;
				while (got < (size_t)st.st_size) {
					ssize_t r = read(fd, b + len + got, (size_t)st.st_size - got);
					if (r < 0 && errno == EINTR)
						continue;
					if (r <= 0)
						break;
					got += (size_t)r;
				}
				ok = got == (size_t)st.st_size;
				len += got;
			}
			if (fd >= 0)
				close(fd);
		}
		if (ok) {
			put_le(b + len, rt_weights_hash(b, len), 8);
			len += 8;
		}
	}
	ok = ok && b;
	char tmp[4300];
	int fd = -1, slot = -1;
	if (ok) {
		/* beside the entry, renamed over it once whole; removed on a signal */
		snprintf(tmp, sizeof tmp, "%s.XXXXXX", c->path);
		cg_cleanup_hold();
		fd = mkstemp(tmp);
		slot = fd >= 0 ? cg_cleanup_add(tmp, false) : -1;
		cg_cleanup_release();
		ok = fd >= 0;
	}
	if (ok) {
		ok = write_all(fd, b, len);
		ok = close(fd) == 0 && ok;
		if (ok) {
			cg_cleanup_hold();
			ok = rename(tmp, c->path) == 0;
			if (ok)
				cg_cleanup_drop(slot);
			cg_cleanup_release();
		}
		if (!ok)
			cg_cleanup_remove(slot);
		if (slot < 0 && !ok)
			unlink(tmp);
	}
	free(b);
	return ok;
}
