/* rt_io.c - writing float rows (logits) to files in a fixed little-endian layout. */
#include "rt.h"

#include <errno.h>
#include <string.h>

FILE *rt_f32_open(const char *path, RtErr *e)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		rt_err(e, RT_EIO, "%s: cannot open for writing: %s", path, strerror(errno));
	return f;
}

static int host_is_le(void)
{
	const uint16_t one = 1;
	return *(const uint8_t *)&one == 1;
}

int rt_write_f32(FILE *f, const char *path, const float *x, size_t n, RtErr *e)
{
	if (host_is_le()) {
		if (fwrite(x, sizeof *x, n, f) != n)
			return rt_err(e, RT_EIO, "%s: write failed: %s", path, strerror(errno));
		return RT_OK;
	}
	/* Big-endian host: swap through a small buffer so the file layout never depends on it. */
	unsigned char buf[4096];
	size_t done = 0;
	while (done < n) {
		size_t k = n - done > sizeof buf / 4 ? sizeof buf / 4 : n - done;
		for (size_t i = 0; i < k; i++) {
			uint32_t u;
			memcpy(&u, &x[done + i], 4);
			buf[4 * i + 0] = (unsigned char)u;
			buf[4 * i + 1] = (unsigned char)(u >> 8);
			buf[4 * i + 2] = (unsigned char)(u >> 16);
			buf[4 * i + 3] = (unsigned char)(u >> 24);
		}
		if (fwrite(buf, 4, k, f) != k)
			return rt_err(e, RT_EIO, "%s: write failed: %s", path, strerror(errno));
		done += k;
	}
	return RT_OK;
}

int rt_f32_close(FILE *f, const char *path, RtErr *e)
{
	int bad = ferror(f);
	if (fclose(f) != 0 || bad)
		return rt_err(e, RT_EIO, "%s: write failed: %s", path,
			       bad ? "stream error" : strerror(errno));
	return RT_OK;
}
