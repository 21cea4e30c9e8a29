/* rt_weights.c - finding the weights payload (appended to the executable or in a file) and
 * holding it read-only: copied into anonymous (huge-page) memory, or mapped lazily. */
/* POSIX (pread, mmap, mlock, sysconf, clock_gettime), and MAP_ANONYMOUS and madvise (BSD
 * and Linux: _DEFAULT_SOURCE), under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1
#endif
#include "rt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif

#define RT_TRAILER_BYTES 32
#define RT_PAYLOAD_ALIGN 4096

/* ---- the payload hash (rt_model.h) --------------------------------------- */

#define RT_HASH_MUL 0x9fb21c651e98df25ull  /* odd: the multiply is a bijection */
#define RT_HASH_SEED 0x6a09e667f3bcc909ull

static uint64_t rt_get_le64(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
#else
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
#endif
}

/* One word into a lane: each step is a bijection of the lane for a fixed word and of the
 * word for a fixed lane, so changing any one word always changes the lane. */
static inline uint64_t rt_hash_round(uint64_t a, uint64_t w)
{
	a = (a ^ w) * RT_HASH_MUL;
	return a ^ (a >> 29);
}

static uint64_t rt_hash_mix(uint64_t x)
{
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ull;
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ull;
	return x ^ (x >> 32);
}

static void rt_hash_stripe(uint64_t lane[4], const unsigned char *p)
{
	for (int i = 0; i < 4; i++)
		lane[i] = rt_hash_round(lane[i], rt_get_le64(p + 8 * i));
}

void rt_hash_init(RtHash *h)
{
	memset(h, 0, sizeof *h);
	for (int i = 0; i < 4; i++)
		h->lane[i] = RT_HASH_SEED + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
}

void rt_hash_update(RtHash *h, const void *data, uint64_t n)
{
	const unsigned char *p = data;
	if (!n)
		return;
	h->total += n;
	if (h->nbuf) {
		uint64_t k = 32 - h->nbuf < n ? 32 - h->nbuf : n;
		memcpy(h->buf + h->nbuf, p, (size_t)k);
		h->nbuf += (unsigned)k;
		p += k;
		n -= k;
		if (h->nbuf < 32)
			return;
		rt_hash_stripe(h->lane, h->buf);
		h->nbuf = 0;
	}
	/* the lanes in locals: four independent chains the CPU overlaps */
	uint64_t a = h->lane[0], b = h->lane[1], c = h->lane[2], d = h->lane[3];
	for (; n >= 32; p += 32, n -= 32) {
		a = rt_hash_round(a, rt_get_le64(p));
		b = rt_hash_round(b, rt_get_le64(p + 8));
		c = rt_hash_round(c, rt_get_le64(p + 16));
		d = rt_hash_round(d, rt_get_le64(p + 24));
	}
	h->lane[0] = a, h->lane[1] = b, h->lane[2] = c, h->lane[3] = d;
	memcpy(h->buf, p, (size_t)n);
	h->nbuf = (unsigned)n;
}

uint64_t rt_hash_final(const RtHash *h)
{
	uint64_t x = h->total * RT_HASH_MUL;
	for (int i = 0; i < 4; i++)
		x = rt_hash_round(x, rt_hash_mix(h->lane[i]));
	/* the tail: whole words, then the last bytes as one zero-padded word and their count
	 * (the total above already separates "ab" from "ab\0") */
	unsigned i = 0;
	for (; i + 8 <= h->nbuf; i += 8)
		x = rt_hash_round(x, rt_get_le64(h->buf + i));
	if (i < h->nbuf) {
		unsigned char w[8] = {0};
		memcpy(w, h->buf + i, h->nbuf - i);
		x = rt_hash_round(x, rt_get_le64(w) ^ (uint64_t)(h->nbuf - i) << 59);
	}
	return rt_hash_mix(x);
}

uint64_t rt_weights_hash(const void *data, uint64_t n)
{
	RtHash h;
	rt_hash_init(&h);
	rt_hash_update(&h, data, n);
	return rt_hash_final(&h);
}

static void rt_put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

void rt_weights_trailer_pack(unsigned char out[32], uint64_t offset, uint64_t size, uint64_t hash)
{
	memcpy(out, RT_WEIGHTS_MAGIC, 8);
	rt_put_le64(out + 8, offset);
	rt_put_le64(out + 16, size);
	rt_put_le64(out + 24, hash);
}

/* ---- where the running executable is ---------------------------------- */

static int rt_is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int rt_exe_search_path(const char *argv0, const char *path_env, char *out, size_t n)
{
	if (!argv0 || !*argv0 || n == 0)
		return -1;
	/* A name with a slash was run by path (relative to the cwd, which has not changed). */
	if (strchr(argv0, '/')) {
		if (strlen(argv0) >= n || !rt_is_file(argv0))
			return -1;
		strcpy(out, argv0);
		return 0;
	}
	/* A bare name came from $PATH: the first directory holding it is what the shell ran. */
	const char *p = path_env ? path_env : "";
	for (;;) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		/* An empty PATH entry means the current directory. */
		int w = len ? snprintf(out, n, "%.*s/%s", (int)len, p, argv0)
			    : snprintf(out, n, "./%s", argv0);
		if (w > 0 && (size_t)w < n && rt_is_file(out) && access(out, X_OK) == 0)
			return 0;
		if (!end)
			break;
		p = end + 1;
	}
	return -1;
}

int rt_exe_path(const char *argv0, char *out, size_t n, RtErr *e)
{
#if defined(__linux__)
	/* The kernel's link names the file actually running, wherever it was moved; opening
	 * the link itself works even if a path component changed since exec. */
	if (access("/proc/self/exe", R_OK) == 0) {
		if (n < sizeof "/proc/self/exe")
			return rt_err(e, RT_EINVAL, "path buffer too small");
		strcpy(out, "/proc/self/exe");
		return RT_OK;
	}
#endif
	if (rt_exe_search_path(argv0, getenv("PATH"), out, n) == 0)
		return RT_OK;
	return rt_err(e, RT_EIO,
		      "cannot find the running executable (\"%s\" not found via PATH and "
		      "/proc/self/exe unavailable): give --weights-file",
		      argv0 ? argv0 : "?");
}

/* ---- mapping ----------------------------------------------------------- */

/* The hint after "no trailer" and "truncated": what the weights were supposed to be. */
static const char *rt_weights_hint(int embedded)
{
#ifdef BN_WEIGHTS_FILE
	/* built with bitnetc build --weights-file: the program never held them */
	if (embedded)
		return ": this program was built to take its weights from a file: give "
		       "--weights-file FILE (bitnetc build wrote " BN_WEIGHTS_FILE ")";
#endif
	return embedded ? ": was the binary stripped or truncated? rebuild it with bitnetc build, "
			  "or give --weights-file"
			: ": is it a weights file written by bitnetc build?";
}

/* Checks the 32 trailer bytes t (nt of them there) at the end of something of fsize bytes
 * and reads off, size, hash from them. */
static int rt_trailer_parse(const unsigned char *t, size_t nt, uint64_t fsize, const char *name,
			    const char *hint, uint64_t *off, uint64_t *size, uint64_t *hash,
			    RtErr *e)
{
	if (fsize < RT_TRAILER_BYTES || nt != RT_TRAILER_BYTES ||
	    memcmp(t, RT_WEIGHTS_MAGIC, 8) != 0)
		return rt_err(e, RT_EINVAL, "%s: weights payload not found (no trailer)%s", name,
			      hint);
	*off = rt_get_le64(t + 8);
	*size = rt_get_le64(t + 16);
	*hash = rt_get_le64(t + 24);
	if (*off % RT_PAYLOAD_ALIGN != 0)
		return rt_err(e, RT_EINVAL,
			      "%s: bad weights trailer: payload offset %llu is not a multiple of %d",
			      name, (unsigned long long)*off, RT_PAYLOAD_ALIGN);
	if (*off > fsize || *size > fsize - *off || fsize - *off - *size < RT_TRAILER_BYTES)
		return rt_err(e, RT_EINVAL,
			      "%s: weights payload truncated: trailer says %llu bytes at offset %llu "
			      "but the file has %llu bytes%s",
			      name, (unsigned long long)*size, (unsigned long long)*off,
			      (unsigned long long)fsize, hint);
	return RT_OK;
}

/* The payload of the trailer is the one this model code was built with. */
static int rt_payload_match(const RtWeights *w, uint64_t size, uint64_t hash, uint64_t want_bytes,
			    uint64_t want_hash, RtErr *e)
{
	const char *what = w->embedded ? "the weights payload" : "the weights file";
	if (size != want_bytes)
		return rt_err(e, RT_EINVAL,
			      "%s: weights payload has %llu bytes but this program expects %llu: "
			      "%s belongs to another model",
			      w->path, (unsigned long long)size, (unsigned long long)want_bytes, what);
	if (hash != want_hash)
		return rt_err(e, RT_EINVAL,
			      "%s: %s belongs to another model (hash %016llx, this program expects "
			      "%016llx)",
			      w->path, what, (unsigned long long)hash, (unsigned long long)want_hash);
	return RT_OK;
}

int rt_weights_mem(RtWeights *w, const void *blob, uint64_t n, const char *name,
		   uint64_t want_bytes, uint64_t want_hash, RtErr *e)
{
	memset(w, 0, sizeof *w);
	w->embedded = 1;
	snprintf(w->path, sizeof w->path, "%s", name);
	uint64_t off = 0, size = 0, hash = 0;
	const unsigned char *p = blob;
	int rc = rt_trailer_parse(n >= RT_TRAILER_BYTES ? p + n - RT_TRAILER_BYTES : p,
				  n >= RT_TRAILER_BYTES ? RT_TRAILER_BYTES : 0, n, name,
				  ": the library's weights are damaged; build it again", &off, &size,
				  &hash, e);
	if (rc == RT_OK)
		rc = rt_payload_match(w, size, hash, want_bytes, want_hash, e);
	if (rc != RT_OK)
		return rc;
	w->size = size;
	w->data = p + off;
	if ((uintptr_t)w->data % 64 != 0)
		return rt_err(e, RT_EINVAL, "%s: the linked weights are not 64-byte aligned", name);
	return RT_OK;
}

/* Opens path (NULL: the running executable) and checks its trailer against the model:
 * the open fd, and the payload's file offset in *off (w->size its size). */
static int rt_weights_open_fd(RtWeights *w, const char *path, const char *argv0,
			      uint64_t want_bytes, uint64_t want_hash, int *fdp, uint64_t *offp,
			      RtErr *e)
{
	memset(w, 0, sizeof *w);
	char exe[4096];
	const char *file = path, *name = path;
	w->embedded = path == NULL;
	if (!path) {
		if (rt_exe_path(argv0, exe, sizeof exe, e))
			return e ? e->code : RT_EIO;
		file = exe;
		name = argv0 && *argv0 ? argv0 : exe;
	}
	snprintf(w->path, sizeof w->path, "%s", name);

	int fd = open(file, O_RDONLY);
	if (fd < 0)
		return rt_err(e, RT_EIO, "%s: cannot open weights: %s", name, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return rt_err(e, RT_EIO, "%s: not a regular file", name);
	}
	uint64_t off = 0, size = 0, hash = 0, fsize = (uint64_t)st.st_size;
	unsigned char t[RT_TRAILER_BYTES];
	ssize_t got = fsize < RT_TRAILER_BYTES ? 0
		      : pread(fd, t, sizeof t, (off_t)(fsize - RT_TRAILER_BYTES));
	int rc = rt_trailer_parse(t, got > 0 ? (size_t)got : 0, fsize, name,
				  rt_weights_hint(w->embedded), &off, &size, &hash, e);
	if (rc == RT_OK)
		rc = rt_payload_match(w, size, hash, want_bytes, want_hash, e);
	if (rc != RT_OK) {
		close(fd);
		return rc;
	}
	w->size = size;
	*fdp = fd;
	*offp = off;
	return RT_OK;
}

/* The lazy mapping of the payload at off in fd (closed here). */
static int rt_weights_mmap_fd(RtWeights *w, int fd, uint64_t off, RtErr *e)
{
	const char *name = w->path;
	uint64_t size = w->size;
	if (size == 0) {
		static const uint8_t empty[1];
		w->data = empty;
		close(fd);
		return RT_OK;
	}
	/* mmap needs a page-aligned offset; the payload is 4096-aligned, which pages larger
	 * than that (16K, 64K) need not divide, so map from the page boundary below it. */
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t page = pg > 0 ? (uint64_t)pg : RT_PAYLOAD_ALIGN;
	uint64_t base = off / page * page, lead = off - base;
	if (size + lead > (uint64_t)SIZE_MAX) {
		close(fd);
		return rt_err(e, RT_ENOMEM, "%s: weights payload of %llu bytes does not fit the "
				       "address space", name, (unsigned long long)size);
	}
	w->map_len = (size_t)(size + lead);
	void *m = mmap(NULL, w->map_len, PROT_READ, MAP_PRIVATE, fd, (off_t)base);
	int err = errno;
	close(fd); /* the mapping keeps the file alive */
	if (m == MAP_FAILED) {
		w->map_len = 0;
		return rt_err(e, RT_ENOMEM, "%s: cannot map %llu bytes of weights: %s", name,
			      (unsigned long long)size, strerror(err));
	}
#if defined(MADV_WILLNEED)
	madvise(m, w->map_len, MADV_WILLNEED); /* only a hint: start reading ahead */
#endif
	w->map = m;
	w->data = (const uint8_t *)m + lead;
	return RT_OK;
}

int rt_weights_map(RtWeights *w, const char *path, const char *argv0, uint64_t want_bytes,
		   uint64_t want_hash, RtErr *e)
{
	int fd = -1;
	uint64_t off = 0;
	int rc = rt_weights_open_fd(w, path, argv0, want_bytes, want_hash, &fd, &off, e);
	return rc ? rc : rt_weights_mmap_fd(w, fd, off, e);
}

/* ---- the copy into anonymous memory ------------------------------------ */

#define RT_HUGE (2u << 20)        /* the x86-64 / arm64 (4K granule) huge page */
#define RT_CHUNK (16u << 20)      /* bytes one reader takes at a time */

typedef struct {
	int fd;                /* read from fd at off ... */
	uint64_t off;
	const uint8_t *src;    /* ... or copy from src */
	uint8_t *dst;
	uint64_t size;
	atomic_uint_fast64_t next; /* the next chunk's offset */
	atomic_uint_fast64_t done; /* bytes read */
	atomic_int err;        /* errno of the first failure; -1: the file ended early */
	int drop_src;          /* RT_WEIGHTS_DROP_BLOB */
	RtProgressFn progress;
	void *user;
} RtFill;

/* One chunk [at, at + n): pread until it is whole (short reads, EINTR), or memcpy. */
static int rt_fill_chunk(RtFill *f, uint64_t at, uint64_t n)
{
	if (f->src) {
		memcpy(f->dst + at, f->src + at, (size_t)n);
#if defined(MADV_DONTNEED)
		/* only the pages wholly inside the blob: its neighbours may be written data */
		long pg = sysconf(_SC_PAGESIZE);
		uintptr_t page = pg > 0 ? (uintptr_t)pg : 4096;
		uintptr_t lo = ((uintptr_t)(f->src + at) + page - 1) / page * page;
		uintptr_t hi = (uintptr_t)(f->src + at + n) / page * page;
		if (f->drop_src && hi > lo)
			madvise((void *)lo, hi - lo, MADV_DONTNEED);
#endif
		return 0;
	}
	while (n) {
		size_t want = n > (1u << 30) ? (1u << 30) : (size_t)n;
		ssize_t r = pread(f->fd, f->dst + at, want, (off_t)(f->off + at));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno ? errno : EIO;
		if (r == 0)
			return -1; /* the file shrank after its trailer was read */
		at += (uint64_t)r;
		n -= (uint64_t)r;
	}
	return 0;
}

static void rt_fill_run(RtFill *f, int report)
{
	for (;;) {
		if (atomic_load(&f->err))
			return;
		uint64_t at = atomic_fetch_add(&f->next, RT_CHUNK);
		if (at >= f->size)
			return;
		uint64_t n = f->size - at < RT_CHUNK ? f->size - at : RT_CHUNK;
		int err = rt_fill_chunk(f, at, n);
		if (err) {
			int zero = 0;
			atomic_compare_exchange_strong(&f->err, &zero, err);
			return;
		}
		uint64_t done = atomic_fetch_add(&f->done, n) + n;
		if (report && f->progress)
			f->progress(f->user, done, f->size);
	}
}

static void *rt_fill_thread(void *arg)
{
	rt_fill_run(arg, 0);
	return NULL;
}

/* Fills f->dst on nth threads (the caller's included, which reports the progress). */
static int rt_fill(RtFill *f, int nth)
{
	pthread_t th[16];
	int started = 0;
	for (int i = 1; i < nth && i < 16; i++)
		if (pthread_create(&th[started], NULL, rt_fill_thread, f) == 0)
			started++;
	rt_fill_run(f, 1);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (!atomic_load(&f->err) && f->progress)
		f->progress(f->user, f->size, f->size);
	return atomic_load(&f->err);
}

/* The mode in /sys/kernel/mm/transparent_hugepage/enabled: the word in brackets. */
static void rt_thp_mode(char *out, size_t n)
{
	out[0] = 0;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return;
	char line[256];
	if (fgets(line, sizeof line, f)) {
		char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
		if (a && b && (size_t)(b - a - 1) < n)
			snprintf(out, n, "%.*s", (int)(b - a - 1), a + 1);
	}
	fclose(f);
}

int64_t rt_smaps_kb(const void *addr, const char *field)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[512];
	size_t fl = strlen(field);
	int in = 0;
	int64_t kb = -1;
	while (fgets(line, sizeof line, f)) {
		unsigned long long lo, hi;
		char dash;
		if (sscanf(line, "%llx%c%llx ", &lo, &dash, &hi) == 3 && dash == '-') {
			if (in)
				break;
			in = lo == (unsigned long long)(uintptr_t)addr;
		} else if (in && !strncmp(line, field, fl) && line[fl] == ':' &&
			   sscanf(line + fl + 1, "%llu kB", &lo) == 1) {
			kb = (int64_t)lo;
			break;
		}
	}
	fclose(f);
	return kb;
}

/* The huge pages backing the mapping that starts at addr, in 2 MiB pages; 0 if unknown. */
static uint64_t rt_huge_pages(const void *addr)
{
	int64_t kb = rt_smaps_kb(addr, "AnonHugePages");
	return kb > 0 ? (uint64_t)kb / (RT_HUGE >> 10) : 0;
}

/* 2 MiB-aligned anonymous memory for n bytes (a multiple of 2 MiB when n is over one
 * huge page, so that the last one can be huge too), MADV_HUGEPAGE. */
static void *rt_anon_alloc(uint64_t n, size_t *len)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t page = pg > 0 ? (uint64_t)pg : 4096;
	if (n < RT_HUGE) {
		*len = (size_t)((n + page - 1) / page * page);
		void *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);
		return m == MAP_FAILED ? NULL : m;
	}
	uint64_t l = (n + RT_HUGE - 1) / RT_HUGE * RT_HUGE;
	if (l + RT_HUGE > (uint64_t)SIZE_MAX)
		return NULL;
	size_t raw_len = (size_t)l + RT_HUGE;
	uint8_t *raw = mmap(NULL, raw_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uint8_t *a = (uint8_t *)(((uintptr_t)raw + RT_HUGE - 1) / RT_HUGE * RT_HUGE);
	if (a > raw)
		munmap(raw, (size_t)(a - raw));
	if (raw + raw_len > a + l)
		munmap(a + l, (size_t)(raw + raw_len - (a + l)));
#if defined(MADV_HUGEPAGE)
	madvise(a, (size_t)l, MADV_HUGEPAGE);
#endif
	*len = (size_t)l;
	return a;
}

static int rt_load_threads(const RtLoadOpts *lo)
{
	if (lo && lo->threads > 0)
		return lo->threads < 16 ? lo->threads : 16;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 4 ? 4 : (int)n;
}

/* Copies the payload (from fd at off, or from src) into new anonymous memory that becomes
 * w->map, read-only. */
static int rt_weights_copy(RtWeights *w, int fd, uint64_t off, const uint8_t *src,
			   const RtLoadOpts *lo, RtErr *e)
{
	size_t len = 0;
	uint8_t *dst = w->size ? rt_anon_alloc(w->size, &len) : NULL;
	if (w->size && !dst)
		return rt_err(e, RT_ENOMEM, "%s: cannot allocate %.1f MiB for the weights (%s)",
			      w->path, (double)w->size / 1048576.0,
			      "try --mmap, which maps them from the file instead");
	RtFill f = {.fd = fd, .off = off, .src = src, .dst = dst, .size = w->size,
		    .progress = lo ? lo->progress : NULL, .user = lo ? lo->user : NULL,
		    .drop_src = src && lo && (lo->flags & RT_WEIGHTS_DROP_BLOB)};
	atomic_init(&f.next, 0);
	atomic_init(&f.done, 0);
	atomic_init(&f.err, 0);
	int err = w->size ? rt_fill(&f, rt_load_threads(lo)) : 0;
	if (err) {
		munmap(dst, len);
		if (err < 0)
			return rt_err(e, RT_EINVAL, "%s: weights payload truncated: the file ended "
						    "while reading its %llu bytes%s",
				      w->path, (unsigned long long)w->size,
				      rt_weights_hint(w->embedded));
		return rt_err(e, RT_EIO, "%s: cannot read the weights: %s", w->path,
			      strerror(err));
	}
	if (dst) {
		mprotect(dst, len, PROT_READ);
		w->map = dst;
		w->map_len = len;
		w->data = dst;
		w->huge_pages = rt_huge_pages(dst);
	} else {
		static const uint8_t empty[1];
		w->data = empty;
	}
	w->copied = 1;
	return RT_OK;
}

/* mlock()s the memory that holds the payload, after checking RLIMIT_MEMLOCK (which a
 * privileged process could exceed: refused the same everywhere). */
static int rt_weights_lock(RtWeights *w, RtErr *e)
{
	const void *addr = w->map ? w->map : w->data;
	size_t len = w->map ? w->map_len : (size_t)w->size;
	if (!len)
		return RT_OK;
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (uint64_t)rl.rlim_cur < (uint64_t)len)
		return rt_err(e, RT_ENOMEM,
			      "%s: cannot lock the weights in memory (mlock): they need %.1f MiB "
			      "but the locked-memory limit (RLIMIT_MEMLOCK, ulimit -l) is %.1f MiB: "
			      "raise it (ulimit -l unlimited) or leave out --mlock",
			      w->path, (double)len / 1048576.0, (double)rl.rlim_cur / 1048576.0);
	if (mlock(addr, len) != 0)
		return rt_err(e, RT_ENOMEM, "%s: cannot lock %.1f MiB of weights in memory "
					    "(mlock): %s", w->path, (double)len / 1048576.0,
			      strerror(errno));
	w->locked = 1;
	if (!w->map) { /* linked weights: munlock them at close */
		w->lock_addr = addr;
		w->lock_len = len;
	}
	return RT_OK;
}

int rt_weights_load(RtWeights *w, const char *path, const char *argv0, const void *blob,
		    uint64_t blob_n, const char *blob_name, uint64_t want_bytes,
		    uint64_t want_hash, const RtLoadOpts *lo, RtErr *e)
{
	int flags = lo ? lo->flags : 0, rc;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!path && blob) {
		rc = rt_weights_mem(w, blob, blob_n, blob_name, want_bytes, want_hash, e);
		if (rc == RT_OK && !(flags & RT_WEIGHTS_MMAP))
			rc = rt_weights_copy(w, -1, 0, w->data, lo, e);
	} else {
		int fd = -1;
		uint64_t off = 0;
		rc = rt_weights_open_fd(w, path, argv0, want_bytes, want_hash, &fd, &off, e);
		if (rc == RT_OK && (flags & RT_WEIGHTS_MMAP))
			rc = rt_weights_mmap_fd(w, fd, off, e);
		else if (rc == RT_OK) {
			rc = rt_weights_copy(w, fd, off, NULL, lo, e);
			close(fd);
		}
	}
	if (rc == RT_OK && (flags & RT_WEIGHTS_MLOCK))
		rc = rt_weights_lock(w, e);
	if (rc != RT_OK) {
		rt_weights_unmap(w);
		return rc;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	w->load_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	rt_thp_mode(w->thp, sizeof w->thp);
	return RT_OK;
}

void rt_weights_describe(const RtWeights *w, char *buf, size_t n)
{
	const char *lock = w->locked ? ", locked" : "";
	if (w->copied)
		snprintf(buf, n, "copied into %.0f MiB of anonymous memory, %llu huge pages "
				 "(transparent huge pages: %s), %.2f s%s",
			 (double)w->map_len / 1048576.0, (unsigned long long)w->huge_pages,
			 w->thp[0] ? w->thp : "unknown", w->load_s, lock);
	else if (w->embedded && !w->map && w->size)
		snprintf(buf, n, "linked into the library, left where the loader put them%s", lock);
	else
		snprintf(buf, n, "mapped lazily from %s%s", w->path, lock);
}

void rt_weights_unmap(RtWeights *w)
{
	if (w->lock_len)
		munlock(w->lock_addr, w->lock_len);
	if (w->map) /* linked weights have none; unmapping unlocks */
		munmap(w->map, w->map_len);
	w->map = NULL;
	w->map_len = 0;
	w->lock_addr = NULL;
	w->lock_len = 0;
	w->data = NULL;
	w->size = 0;
}
