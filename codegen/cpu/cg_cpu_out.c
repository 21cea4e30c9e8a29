/* cg_cpu_out.c - the check that the C compiler made what it was asked for: an object file
 * or an executable, ELF or Mach-O, for the target's architecture. */
#include "cg_cpu.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- what the compiler made ------------------------------------------------------------- */

static uint32_t rd(const unsigned char *p, int n, bool be)
{
	uint32_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint32_t)p[i] << (8 * (be ? n - 1 - i : i));
	return v;
}

static const char *elf_machine(uint32_t m)
{
	switch (m) {
	case 62: return "x86-64";
	case 183: return "aarch64";
	case 3: return "i386";
	case 40: return "arm";
	case 243: return "riscv";
	default: return NULL;
	}
}

/* The architecture a target's program is for (its row's); NULL: any (the compiler
 * decides). */
static const char *target_arch(const char *target)
{
	if (target && !strcmp(target, "native")) {
		const char *a = cg_cpu_arch();
		return !strcmp(a, "x86_64") ? "x86-64" : !strcmp(a, "aarch64") ? "aarch64"
						: !strcmp(a, "riscv64") ? "riscv" : NULL;
	}
	const CgCpuTarget *t = cg_cpu_target(target);
	return t ? t->arch : NULL;
}

int cg_check_output(const char *path, const char *shown, const char *cc, const char *target,
		    bool object, BnErr *e)
{
	const char *what = object ? "an object file" : "an executable";
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return bn_err(e, BN_EIO, "%s: the C compiler '%s' exited 0 but did not write it "
					 "(%s expected)", shown, cc, what);
	unsigned char h[64];
	ssize_t r = read(fd, h, sizeof h);
	close(fd);
	if (r <= 0)
		return bn_err(e, BN_EIO, "%s: the C compiler '%s' exited 0 but left it empty (%s "
					 "expected)", shown, cc, what);
	const char *arch = NULL, *kind = NULL;
	char mbuf[32];
	bool ok_kind = false;
	if (r >= 20 && !memcmp(h, "\177ELF", 4) && (h[5] == 1 || h[5] == 2)) {
		bool be = h[5] == 2;
		uint32_t type = rd(h + 16, 2, be), mach = rd(h + 18, 2, be);
		arch = elf_machine(mach);
		if (arch && h[4] != 2 && (mach == 62 || mach == 183))
			arch = "32-bit"; /* x32 or ILP32: not what the 64-bit targets run */
		if (!arch) {
			snprintf(mbuf, sizeof mbuf, "machine %u", mach);
			arch = mbuf;
		}
		kind = type == 1 ? "an ELF object file" : type == 2 ? "an ELF executable"
		       : type == 3 ? "an ELF shared object or executable" : "an ELF file";
		ok_kind = object ? type == 1 : type == 2 || type == 3;
	} else if (r >= 16 && rd(h, 4, false) == 0xfeedfacfu) {
		uint32_t cpu = rd(h + 4, 4, false), type = rd(h + 12, 4, false);
		arch = cpu == 0x01000007u ? "x86-64" : cpu == 0x0100000cu ? "aarch64" : "other";
		kind = type == 1 ? "a Mach-O object file" : type == 2 ? "a Mach-O executable"
							     : "a Mach-O file";
		ok_kind = object ? type == 1 : type == 2;
	} else if (object && r >= 4 && (!memcmp(h, "BC\xc0\xde", 4) ||
					 rd(h, 4, false) == 0x0b17c0deu)) {
		return 0; /* LLVM bitcode (clang -flto): the link checks it */
	} else {
		return bn_err(e, BN_EIO, "%s: the C compiler '%s' exited 0 but wrote something that "
					 "is not %s (neither ELF nor Mach-O)", shown, cc, what);
	}
	if (!ok_kind)
		return bn_err(e, BN_EIO, "%s: the C compiler '%s' wrote %s, not %s", shown, cc,
			      kind, what);
	const char *want = target_arch(target);
	if (want && strcmp(arch, want) != 0)
		return bn_err(e, BN_EIO, "%s: the C compiler '%s' wrote %s for %s, but target %s "
					 "needs %s", shown, cc, kind, arch, target, want);
	return 0;
}
