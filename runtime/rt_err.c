/* rt_err.c - the runtime's error reporting (RtErr, same shape as the compiler's BnErr). */
#include "rt.h"

#include <stdarg.h>

int rt_err(RtErr *e, int code, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof e->msg, fmt, ap);
		va_end(ap);
		e->code = code;
	}
	return code;
}
