/* rt_weights.c - finding the weights payload (appended to the executable or in a file) and mapping it read-only. */
/* POSIX (pread, mmap, sysconf, clock_gettime) under a strict -std=c11 as well. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "rt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

int rt_weights_map(RtWeights *w, const char *path, const char *argv0, uint64_t want_bytes,
		   uint64_t want_hash, RtErr *e)
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

void rt_weights_unmap(RtWeights *w)
{
	if (w->map) /* linked weights have none */
		munmap(w->map, w->map_len);
	w->map = NULL;
	w->map_len = 0;
	w->data = NULL;
	w->size = 0;
}
