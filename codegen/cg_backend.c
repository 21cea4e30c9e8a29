/* cg_backend.c - the registry of code generation backends: the one list that `bitnetc
 * targets`, `bitnetc build` and the passes read. The built-in backends come first (cpu,
 * cuda, metal); tests may register more. */
#include "cg.h"
#include "cg_cpu.h"
#include "cg_cuda.h"
#include "cg_metal.h"

#include <stdio.h>
#include <string.h>

enum { MAX_BACKENDS = 16, MAX_TARGETS = 64, N_BUILTIN = 3 };

static const CgBackend *backends[MAX_BACKENDS] = {&cg_backend_cpu, &cg_backend_cuda,
						  &cg_backend_metal};
static int n_backends = N_BUILTIN;

const CgBackend *const *cg_backends(int *n)
{
	*n = n_backends;
	return backends;
}

int cg_backend_register(const CgBackend *b)
{
	if (!b || n_backends == MAX_BACKENDS)
		return -1;
	backends[n_backends++] = b;
	return 0;
}

void cg_backend_unregister(const CgBackend *b)
{
	for (int i = N_BUILTIN; i < n_backends; i++) /* the built-in ones stay */
		if (backends[i] == b) {
			memmove(&backends[i], &backends[i + 1],
				(size_t)(n_backends - i - 1) * sizeof backends[0]);
			n_backends--;
			return;
		}
}

int cg_target_find(const char *name, CgTarget *t)
{
	for (int i = 0; name && i < n_backends; i++)
		if (backends[i]->claims && backends[i]->claims(name)) {
			const CgBackend *b = backends[i];
			t->backend = b;
			t->name = name;
			t->buildable = b->emit && b->build && b->buildable && b->buildable(name);
			return 0;
		}
	return -1;
}

const CgBackend *cg_backend_of(const char *name)
{
	CgTarget t;
	return cg_target_find(name, &t) == 0 ? t.backend : backends[0];
}

int cg_targets_list(CgTargetInfo *out, int max)
{
	int n = 0;
	for (int i = 0; i < n_backends && n < max; i++)
		if (backends[i]->targets)
			n += backends[i]->targets(out + n, max - n);
	return n;
}

const char *cg_target_names(void)
{
	static char names[1024];
	CgTargetInfo t[MAX_TARGETS];
	int n = cg_targets_list(t, MAX_TARGETS);
	size_t len = 0;
	names[0] = 0;
	for (int i = 0; i < n && len < sizeof names; i++)
		if (t[i].buildable)
			len += (size_t)snprintf(names + len, sizeof names - len, "%s%s",
						len ? ", " : "", t[i].name);
	return names;
}

void cg_host_info(char *buf, size_t n)
{
	size_t len = 0;
	if (n)
		buf[0] = 0;
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < n_backends && len + 1 < n; i++) {
			void (*info)(char *, size_t) = pass ? backends[i]->host_info
							    : backends[i]->tools_info;
			if (!info)
				continue;
			info(buf + len, n - len);
			len += strlen(buf + len);
		}
}
