/* rt.h - the runtime every generated binary links: token lists, sampling, logits output.
 * Depends on libc and pthreads only, so it carries its own error type (same shape as BnErr). */
#ifndef BITNETC_RT_H
#define BITNETC_RT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
	RT_OK = 0,
	RT_EIO,    /* cannot open or write a file */
	RT_EINVAL, /* bad argument (a malformed token list) */
	RT_ENOMEM, /* allocation failed */
} RtCode;

#if defined(__GNUC__)
#define RT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RT_PRINTF(a, b)
#endif

/* Mirrors BnErr so that a driver can hand either to the same reporting code. */
typedef struct {
	int code;
	char msg[512];
} RtErr;

/* Sets e (if non-NULL) and returns code (rt_err.c). */
int rt_err(RtErr *e, int code, const char *fmt, ...) RT_PRINTF(3, 4);

/* ---- token lists (rt_tokens.c) ----------------------------------------- */

/* Parses "1,2,3" (spaces around items allowed) into a malloc'd array of ids in
 * [0, INT32_MAX]; *n gets the count (at least 1). Errors name the item by position and
 * text: empty list, empty item ("1,,2"), not a non-negative integer, out of range. */
int rt_parse_tokens(const char *s, int32_t **ids, int *n, RtErr *e);

/* ---- sampling (rt_sample.c) -------------------------------------------- */

/* Index of the largest of x[0..n); ties go to the lowest index (as the reference's greedy
 * sampler). NaNs never win; all-NaN or n <= 0 gives 0. */
int64_t rt_argmax(const float *x, int64_t n);

/* ---- float output (rt_io.c) -------------------------------------------- */

/* Opens path for writing raw float rows; errors name the path. */
FILE *rt_f32_open(const char *path, RtErr *e);
/* Appends n floats as little-endian float32 (byte-swapped on big-endian hosts). */
int rt_write_f32(FILE *f, const char *path, const float *x, size_t n, RtErr *e);
/* Flushes and closes; a failed flush (disk full) is an error naming the path. */
int rt_f32_close(FILE *f, const char *path, RtErr *e);

#endif
