/* test_readme.c - the README's command synopses match the --help texts: every flag the
 * code block of "## The `bitnetc` command" lists for a command is in that command's
 * --help, and every flag of the generated program's block ("### The generated program")
 * is in a built program's --help. A flag renamed or dropped in one place and not the
 * other fails here, naming it. */
#include "testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first ``` block after the line starting with heading, NUL-terminated in place. */
static char *code_block(char *readme, const char *heading)
{
	char *h = strstr(readme, heading);
	if (!h)
		fail_msg("README.md: no section \"%s\"", heading);
	char *open = strstr(h, "\n```");
	char *body = open ? strchr(open + 1, '\n') : NULL;
	char *close = body ? strstr(body, "\n```") : NULL;
	if (!close)
		fail_msg("README.md: no code block after \"%s\"", heading);
	close[1] = 0;
	return body + 1;
}

/* Every "--flag" (and "-x" short flag) on line that help does not contain: fails. */
static int check_flags(const char *line, size_t len, const char *help, const char *what)
{
	int n = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (line[i] != '-' || (i && !strchr(" [(|/", line[i - 1])))
			continue;
		size_t j = i + 1;
		if (line[j] == '-')
			j++;
		if (!isalpha((unsigned char)line[j]))
			continue;
		while (j < len && (isalnum((unsigned char)line[j]) || line[j] == '-'))
			j++;
		char flag[64];
		size_t fl = j - i < sizeof flag ? j - i : sizeof flag - 1;
		memcpy(flag, line + i, fl);
		flag[fl] = 0;
		/* "-O0..-O3" is a range, --help is every command's; the rest are spelled out */
		if (!strncmp(flag, "-O", 2) || !strcmp(flag, "--help"))
			continue;
		char pat[80];
		snprintf(pat, sizeof pat, "%s", flag);
		const char *at = help;
		int found = 0;
		while ((at = strstr(at, pat))) {
			char after = at[fl];
			if (!isalnum((unsigned char)after) && after != '-') {
				found = 1;
				break;
			}
			at++;
		}
		if (!found)
			fail_msg("README.md lists %s for %s, which its --help does not know", flag,
				 what);
		n++;
		i = j;
	}
	return n;
}

static void test_bitnetc_synopsis(void **state)
{
	(void)state;
	size_t n;
	char *readme = tu_read_file(tu_data("../../README.md"), &n);
	assert_non_null(readme);
	char *block = code_block(readme, "## The `bitnetc` command");
	int checked = 0;
	char cmd[32] = "";
	for (char *line = block; *line;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		/* "bitnetc CMD ..." starts a command; indented lines go on with it */
		if (!strncmp(line, "bitnetc ", 8))
			sscanf(line + 8, "%31[a-z]", cmd);
		if (cmd[0]) {
			char *help = tu_run_ok(0, "'%s' %s --help", tu_bitnetc(), cmd);
			char what[64];
			snprintf(what, sizeof what, "bitnetc %s", cmd);
			/* the build options emit takes are build's */
			if (!strcmp(cmd, "emit")) {
				char *b = tu_run_ok(0, "'%s' build --help", tu_bitnetc());
				size_t hl = strlen(help);
				help = realloc(help, hl + strlen(b) + 1);
				strcpy(help + hl, b);
				free(b);
			}
			checked += check_flags(line, len, help, what);
			free(help);
		}
		line = nl ? nl + 1 : line + len;
	}
	assert_true(checked > 20);
	free(readme);
}

static void test_program_synopsis(void **state)
{
	(void)state;
	const char *prog = tu_tmp("readme_prog");
	free(tu_run_ok(0, "'%s' build '%s' -o '%s' --target cpu-generic -O1", tu_bitnetc(),
		       tu_data("golden/models/tiny-b158-i2_s.gguf"), prog));
	char *help = tu_run_ok(0, "'%s' --help", prog);
	size_t n;
	char *readme = tu_read_file(tu_data("../../README.md"), &n);
	assert_non_null(readme);
	char *block = code_block(readme, "### The generated program");
	int checked = 0;
	for (char *line = block; *line;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		/* the comment after '#' is prose */
		char *hash = memchr(line, '#', len);
		checked += check_flags(line, hash ? (size_t)(hash - line) : len, help,
				       "the generated program");
		line = nl ? nl + 1 : line + len;
	}
	assert_true(checked > 30);
	free(readme);
	free(help);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bitnetc_synopsis, tu_teardown),
		cmocka_unit_test_teardown(test_program_synopsis, tu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
