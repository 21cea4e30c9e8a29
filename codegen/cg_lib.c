/* cg_lib.c - a model as a library (bitnetc build --lib / --shared, bitnetc emit): its prefix,
 * the functions it exports (those bitnetc.h declares, named PREFIX_ in place of bn_), the
 * files that rename and declare them, and weights.c, which links the weights in. */
#include "cg.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the prefix ----------------------------------------------------------------- */

int cg_lib_prefix_check(const char *p, BnErr *e)
{
	size_t n = strlen(p);
	if (n == 0 || n > CG_LIB_PREFIX_MAX)
		return bn_err(e, BN_EINVAL, "--prefix '%s': 1 to %d characters", p,
			      CG_LIB_PREFIX_MAX);
	if (!isalpha((unsigned char)p[0]) && p[0] != '_')
		return bn_err(e, BN_EINVAL, "--prefix '%s': a C identifier begins with a letter or "
					    "'_'", p);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)p[i]) && p[i] != '_')
			return bn_err(e, BN_EINVAL, "--prefix '%s': only letters, digits and '_' "
						    "(a C identifier)", p);
	/* the runtime's internal names begin with rt_ */
	if (strcmp(p, "rt") == 0 || strncmp(p, "rt_", 3) == 0)
		return bn_err(e, BN_EINVAL, "--prefix %s: the runtime's internal names begin with "
					    "rt_; choose another", p);
	return 0;
}

void cg_lib_default_prefix(const char *out, char *buf, size_t n)
{
	const char *base = strrchr(out, '/');
	base = base ? base + 1 : out;
	if (strncmp(base, "lib", 3) == 0 && base[3] && base[3] != '.')
		base += 3;
	size_t len = strcspn(base, "."); /* libtiny.so.1 -> tiny */
	size_t k = 0;
	if (n == 0)
		return;
	if (len && isdigit((unsigned char)base[0]) && k + 1 < n)
		buf[k++] = '_';
	for (size_t i = 0; i < len && k + 1 < n && k < CG_LIB_PREFIX_MAX; i++)
		buf[k++] = isalnum((unsigned char)base[i]) ? base[i] : '_';
	buf[k] = 0;
	if (k == 0 || strcmp(buf, "rt") == 0 || strncmp(buf, "rt_", 3) == 0)
		snprintf(buf, n, "%s", "model");
}

/* ---- the API's functions, read from the runtime's bitnetc.h --------------------- */

static const CgSource *api_header(void)
{
	for (int i = 0; i < cg_n_runtime_sources; i++)
		if (strcmp(cg_runtime_sources[i].name, "bitnetc.h") == 0)
			return &cg_runtime_sources[i];
	return NULL;
}

static bool is_ident(int c)
{
	return isalnum(c) || c == '_';
}

/* Calls fn for every declaration of a function of the API in bitnetc.h: each top-level
 * statement outside comments and preprocessor lines, not a typedef, with an identifier bn_X
 * right before '(' (its whitespace collapsed to single spaces; name is bn_X). */
static int api_decls(void (*fn)(void *u, const char *decl, const char *name), void *u)
{
	const CgSource *h = api_header();
	if (!h)
		return -1;
	const char *s = (const char *)h->data, *end = s + h->size;
	char stmt[1024];
	size_t sl = 0;
	int depth = 0, count = 0;
	bool line_start = true;
	for (const char *p = s; p < end; p++) {
		if (p[0] == '/' && p + 1 < end && p[1] == '*') {
			const char *q = strstr(p + 2, "*/");
			p = q ? q + 1 : end - 1;
			continue;
		}
		if (p[0] == '/' && p + 1 < end && p[1] == '/') {
			while (p + 1 < end && p[1] != '\n')
				p++;
			continue;
		}
		if (line_start && *p == '#') { /* a preprocessor line, continued by '\' */
			while (p + 1 < end && !(p[1] == '\n' && p[0] != '\\'))
				p++;
			continue;
		}
		line_start = *p == '\n' || (line_start && (*p == ' ' || *p == '\t'));
		if (*p == '{') {
			/* extern "C" { ... } wraps the declarations: not a nesting level */
			stmt[sl] = 0;
			if (!strstr(stmt, "extern \"C\""))
				depth++;
			sl = 0;
			continue;
		}
		if (*p == '}') {
			if (depth > 0)
				depth--;
			sl = 0;
			continue;
		}
		if (*p == ';') {
			stmt[sl] = 0;
			const char *t = stmt + strspn(stmt, " ");
			if (depth == 0 && strncmp(t, "typedef", 7) != 0) {
				/* the function: bn_X followed by '(' */
				for (const char *q = t; *q; q++) {
					if (strncmp(q, "bn_", 3) != 0 || (q > t && is_ident((unsigned char)q[-1])))
						continue;
					size_t l = 3;
					while (is_ident((unsigned char)q[l]))
						l++;
					const char *r = q + l;
					while (*r == ' ')
						r++;
					if (*r != '(' || l >= 64)
						continue;
					char name[64];
					memcpy(name, q, l);
					name[l] = 0;
					fn(u, t, name);
					count++;
					break;
				}
			}
			sl = 0;
			continue;
		}
		if (depth > 0)
			continue;
		char c = (*p == '\n' || *p == '\t') ? ' ' : *p;
		if (c == ' ' && (sl == 0 || stmt[sl - 1] == ' '))
			continue;
		if (sl + 1 < sizeof stmt)
			stmt[sl++] = c;
	}
	return count;
}

typedef struct {
	const char *prefix;
	CgBuf *names, *decls, *list, *map;
} LibFiles;

static void put_decl(void *u, const char *decl, const char *name)
{
	LibFiles *f = u;
	const char *at = strstr(decl, name);
	size_t nl = strlen(name);
	/* the name after bn_ */
	cg_printf(f->names, "#define %s %s_%s\n", name, f->prefix, name + 3);
	cg_printf(f->decls, "%.*s%s_%s%s;\n", (int)(at - decl), decl, f->prefix, name + 3, at + nl);
	cg_printf(f->list, "%s_%s\n", f->prefix, name + 3);
	cg_printf(f->map, "\t\t%s_%s;\n", f->prefix, name + 3);
}

int cg_lib_files(const char *prefix, const char *about, CgLibFiles *out, BnErr *e)
{
	memset(out, 0, sizeof *out);
	CgBuf decls = {0};
	LibFiles f = {prefix, &out->names_h, &decls, &out->exports, &out->version_script};
	cg_printf(&out->names_h, "/* bn_names.h - generated by bitnetc %s: the API's functions "
				 "named %s_ in place of bn_\n * (compiled with BN_NAMES; see bitnetc.h). "
				 "*/\n",
		  BITNETC_VERSION, prefix);
	cg_printf(&out->version_script, "/* the symbols lib%s exports: the API's functions, "
					"nothing else */\n{\n\tglobal:\n",
		  prefix);
	int n = api_decls(put_decl, &f);
	cg_printf(&out->version_script, "\tlocal:\n\t\t*;\n};\n");
	char guard[CG_LIB_PREFIX_MAX + 32];
	snprintf(guard, sizeof guard, "BITNETC_LIB_%s_H", prefix);
	for (char *g = guard; *g; g++)
		*g = (char)toupper((unsigned char)*g);
	CgBuf *h = &out->header;
	cg_printf(h, "/* %s.h - generated by bitnetc %s: the API of %s:\n"
		     " * bitnetc.h's functions named %s_ in place of bn_ (bitnetc.h says what each "
		     "does).\n * Types, status codes and flags are bitnetc.h's, so the headers of "
		     "several models'\n * libraries can be included together. */\n",
		  prefix, BITNETC_VERSION, about, prefix);
	cg_printf(h, "#ifndef %s\n#define %s\n\n#include \"bitnetc.h\"\n\n#ifdef __cplusplus\n"
		     "extern \"C\" {\n#endif\n\n",
		  guard, guard);
	if (decls.data)
		cg_put(h, decls.data, decls.len);
	cg_printf(h, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
	bool oom = decls.oom || out->names_h.oom || out->exports.oom || out->version_script.oom ||
		   h->oom;
	cg_buf_free(&decls);
	if (n <= 0 || oom) {
		cg_lib_files_free(out);
		return bn_err(e, oom ? BN_ENOMEM : BN_EINVAL, "%s",
			      oom ? "out of memory" : "bitnetc.h declares no functions");
	}
	out->n_functions = n;
	return 0;
}

void cg_lib_files_free(CgLibFiles *f)
{
	cg_buf_free(&f->names_h);
	cg_buf_free(&f->header);
	cg_buf_free(&f->exports);
	cg_buf_free(&f->version_script);
}

/* ---- the weights linked in ------------------------------------------------------ */

void cg_lib_weights_c(CgBuf *b)
{
	cg_printf(b,
"/* weights.c - generated by bitnetc %s: the weights (weights.bin: the payload and its\n"
" * trailer, as --weights-file writes them) linked into the library: read-only data that\n"
" * the loader maps from the file and the OS pages in as it is read, never a heap copy.\n"
" * On x86-64 they sit in a large-data section (.lrodata) that code reaches only through\n"
" * the 64-bit addresses below, so the small code model's 2 GiB reach does not bound\n"
" * their size; elsewhere (AArch64: ADRP reaches +-4 GiB) the code, the\n"
" * weights and the data must fit that reach. Needs a compiler with GNU inline assembly\n"
" * (gcc, clang). BN_WEIGHTS_BIN: where weights.bin is, as the assembler sees it. */\n"
"#ifndef BN_WEIGHTS_BIN\n"
"#define BN_WEIGHTS_BIN \"weights.bin\"\n"
"#endif\n"
"#if defined(__x86_64__)\n"
"#define BN_WEIGHTS_SECTION \".pushsection .lrodata.bn_weights,\\\"al\\\"\\n\"\n"
"#else\n"
"#define BN_WEIGHTS_SECTION \".pushsection .rodata.bn_weights,\\\"a\\\"\\n\"\n"
"#endif\n"
"\n"
"__asm__(BN_WEIGHTS_SECTION\n"
"\t\".balign 4096\\n\"\n"
"\t\".Lbn_weights_begin:\\n\"\n"
"\t\".incbin \\\"\" BN_WEIGHTS_BIN \"\\\"\\n\"\n"
"\t\".Lbn_weights_end:\\n\"\n"
"\t\".popsection\\n\"\n"
"\t\".pushsection .data.rel.ro.bn_weights,\\\"aw\\\"\\n\"\n"
"\t\".balign 8\\n\"\n"
"\t\".globl rt_linked_weights\\n\"\n"
"\t\"rt_linked_weights:\\n\"\n"
"\t\".quad .Lbn_weights_begin\\n\"\n"
"\t\".quad .Lbn_weights_end\\n\"\n"
"\t\".popsection\\n\");\n",
		  BITNETC_VERSION);
}

/* ---- the names a library build writes into its source directory ----------------- */

const char *const cg_lib_file_names[] = {"bn_names.h",  "bn_lib.h",   "bn_exports.txt",
					 "bn_exports.map", "weights.c", "weights.bin",
					 "weights.o",   "bn_lib.o"};
const int cg_n_lib_file_names = sizeof cg_lib_file_names / sizeof cg_lib_file_names[0];

bool cg_lib_source(const char *name)
{
	size_t l = strlen(name);
	return l > 2 && strcmp(name + l - 2, ".c") == 0 && strcmp(name, "main.c") != 0 &&
	       strcmp(name, "rt_session.c") != 0;
}

const char *cg_lib_object_name(int i)
{
	/* runtime .c -> .o, made once */
	static char names[128][64];
	static int n = -1;
	if (n < 0) {
		n = 0;
		for (int k = 0; k < cg_n_runtime_sources && n < 128; k++) {
			const char *s = cg_runtime_sources[k].name;
			size_t l = strlen(s);
			if (l < 64 && cg_lib_source(s)) {
				snprintf(names[n], sizeof names[n], "%.*s.o", (int)(l - 2), s);
				n++;
			}
		}
	}
	return i >= 0 && i < n ? names[i] : NULL;
}

int cg_lib_add_artifacts(CgOutput *out, const char *prefix, const char *about,
			 const char *header, bool linked, BnErr *e)
{
	CgLibFiles f;
	if (cg_lib_files(prefix, about, &f, e))
		return e ? e->code : BN_EINVAL;
	struct {
		const char *name;
		CgArtifactKind kind;
		CgBuf *b;
	} arts[] = {{"bn_names.h", CG_ART_HEADER, &f.names_h},
		    {header, CG_ART_HEADER, &f.header},
		    {"bn_exports.txt", CG_ART_BINARY, &f.exports},
		    {"bn_exports.map", CG_ART_BINARY, &f.version_script}};
	int rc = 0;
	for (size_t i = 0; i < sizeof arts / sizeof arts[0] && !rc; i++) {
		CgBuf *b = cg_output_add(out, arts[i].name, arts[i].kind);
		if (!b || cg_put(b, arts[i].b->data, arts[i].b->len))
			rc = bn_err(e, BN_ENOMEM, "out of memory");
	}
	if (!rc && linked) {
		CgBuf *b = cg_output_add(out, "weights.c", CG_ART_SOURCE);
		if (!b)
			rc = bn_err(e, BN_ENOMEM, "out of memory");
		else
			cg_lib_weights_c(b);
		if (b && b->oom)
			rc = bn_err(e, BN_ENOMEM, "out of memory");
	}
	cg_lib_files_free(&f);
	return rc;
}
