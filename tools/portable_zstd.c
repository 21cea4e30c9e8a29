/* portable_zstd.c - the zstd functions LLVM's support library names, for bitnetc-portable
 * (CMake's BITNETC_PORTABLE), which links LLVM statically where no static libzstd exists.
 * bitnetc never compresses or reads compressed object sections, so nothing calls these;
 * should anything do so, every call fails with a message instead of a missing symbol. */
#include <stddef.h>

size_t ZSTD_compressBound(size_t n);
unsigned ZSTD_isError(size_t code);
const char *ZSTD_getErrorName(size_t code);
void *ZSTD_createCCtx(void);
size_t ZSTD_freeCCtx(void *cctx);
size_t ZSTD_CCtx_setParameter(void *cctx, int param, int value);
size_t ZSTD_compress2(void *cctx, void *dst, size_t dst_n, const void *src, size_t src_n);
size_t ZSTD_decompress(void *dst, size_t dst_n, const void *src, size_t src_n);

size_t ZSTD_compressBound(size_t n)
{
	return n + 64;
}

unsigned ZSTD_isError(size_t code)
{
	return code == (size_t)-1;
}

const char *ZSTD_getErrorName(size_t code)
{
	(void)code;
	return "this bitnetc has no zstd (a portable build)";
}

void *ZSTD_createCCtx(void)
{
	return NULL;
}

size_t ZSTD_freeCCtx(void *cctx)
{
	(void)cctx;
	return 0;
}

size_t ZSTD_CCtx_setParameter(void *cctx, int param, int value)
{
	(void)cctx, (void)param, (void)value;
	return (size_t)-1;
}

size_t ZSTD_compress2(void *cctx, void *dst, size_t dst_n, const void *src, size_t src_n)
{
	(void)cctx, (void)dst, (void)dst_n, (void)src, (void)src_n;
	return (size_t)-1;
}

size_t ZSTD_decompress(void *dst, size_t dst_n, const void *src, size_t src_n)
{
	(void)dst, (void)dst_n, (void)src, (void)src_n;
	return (size_t)-1;
}
