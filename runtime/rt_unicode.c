/* rt_unicode.c - strict UTF-8 decoding and the letter/number/space/punctuation classes of code
 * points. */
#include "rt_tok_int.h"
#include "rt_unicode_tab.h"

static bool cont(uint8_t b)
{
	return (b & 0xc0) == 0x80;
}

size_t rt_utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t b = s[0];
	*cp = RT_UTF8_INVALID;
	if (b < 0x80) {
		*cp = b;
		return 1;
	}
	/* The second byte's range rules out overlongs (E0, F0), surrogates (ED) and code
	 * points past U+10FFFF (F4) in one test, as in the Unicode standard's table 3-7. */
	uint8_t lo = 0x80, hi = 0xbf;
	size_t len;
	if (b >= 0xc2 && b <= 0xdf)
		len = 2;
	else if (b >= 0xe0 && b <= 0xef)
		len = 3, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
	else if (b >= 0xf0 && b <= 0xf4)
		len = 4, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
	else
		return 1;
	if (n < len || s[1] < lo || s[1] > hi)
		return 1;
	for (size_t i = 2; i < len; i++)
		if (!cont(s[i]))
			return 1;
	uint32_t c = b & (0x7fu >> len);
	for (size_t i = 1; i < len; i++)
		c = c << 6 | (s[i] & 0x3fu);
	*cp = c;
	return len;
}

int rt_utf8_len(uint8_t lead)
{
	if (lead >= 0xc2 && lead <= 0xdf)
		return 2;
	if (lead >= 0xe0 && lead <= 0xef)
		return 3;
	if (lead >= 0xf0 && lead <= 0xf4)
		return 4;
	return 1;
}

int rt_uc_class(uint32_t cp)
{
	int c = rt_uc_class_p(cp);
	return c == RT_UC_PUNCT ? RT_UC_OTHER : c;
}

int rt_uc_class_p(uint32_t cp)
{
	if (cp < 256)
		return rt_uc_latin1[cp];
	if (cp > 0x10ffff)
		return RT_UC_OTHER;
	size_t lo = 0, hi = RT_UC_N_RANGES; /* first range with start > cp, minus one */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if ((rt_uc_ranges[mid][0] >> 8) <= cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || cp > rt_uc_ranges[lo - 1][1])
		return RT_UC_OTHER;
	return (int)(rt_uc_ranges[lo - 1][0] & 0xff);
}
