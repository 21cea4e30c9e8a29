/* pass_target.c - the target as a pipeline script sees it (bitnetc.target): what the
 * target's backend says of it (through the registry, cg.h), cache sizes from sysconf or
 * sysfs. */
#include "pass.h"
#include "cg.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* sysfs gives "48K" or "2048K" where glibc's sysconf reports 0 (e.g. on aarch64). */
static int64_t sysfs_cache(int index)
{
	char path[96], buf[32];
	snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int64_t v = 0;
	if (fgets(buf, sizeof buf, f)) {
		char *end;
		v = strtoll(buf, &end, 10);
		if (*end == 'K')
			v *= 1024;
		else if (*end == 'M')
			v *= 1024 * 1024;
	}
	fclose(f);
	return v > 0 ? v : 0;
}

static int64_t cache_size(int sc, int sysfs_index)
{
	long v = -1;
#ifdef _SC_LEVEL1_DCACHE_SIZE
	v = sysconf(sc);
#else
	(void)sc;
#endif
	return v > 0 ? (int64_t)v : sysfs_cache(sysfs_index);
}

const PassTarget *pass_target_host(void)
{
	static PassTarget t;
	static CgTargetDesc d;
	if (t.name)
		return &t;
	int nb;
	const CgBackend *b = cg_backends(&nb)[0];
	b->describe(NULL, &d);
	t.backend = b->name;
	t.arch = d.arch;
	t.features = d.features;
	t.vector_bits = d.vector_bits;
#ifdef _SC_LEVEL1_DCACHE_SIZE
	/* sysfs index 0 is usually L1d, 2 L2, 3 L3 (1 is L1i) */
	t.l1d = cache_size(_SC_LEVEL1_DCACHE_SIZE, 0);
	t.l2 = cache_size(_SC_LEVEL2_CACHE_SIZE, 2);
	t.l3 = cache_size(_SC_LEVEL3_CACHE_SIZE, 3);
#else
	t.l1d = cache_size(0, 0);
	t.l2 = cache_size(0, 2);
	t.l3 = cache_size(0, 3);
#endif
	long nc = sysconf(_SC_NPROCESSORS_ONLN);
	t.ncpu = nc > 0 ? (int)nc : 0;
	t.name = "host";
	return &t;
}

const PassTarget *pass_target_for(const char *name)
{
	static PassTarget t;
	static char name_buf[64];
	static CgTargetDesc d;
	const PassTarget *h = pass_target_host();
	if (!name)
		return h;
	t = *h;
	snprintf(name_buf, sizeof name_buf, "%s", name);
	const CgBackend *b = cg_backend_of(name);
	memset(&d, 0, sizeof d);
	if (b->describe)
		b->describe(name, &d);
	t.name = name_buf;
	t.backend = b->name;
	t.arch = d.arch ? d.arch : h->arch;
	t.features = d.features;
	t.vector_bits = d.vector_bits;
	return &t;
}
