/* cg_cpu_targets.c - the CPU --target names and whether this host can run their code. */
#include "cg_cpu.h"

#include <stdio.h>
#include <string.h>

static void put(CgTargetInfo *t, const char *name, const char *desc, bool usable,
		const char *note)
{
	memset(t, 0, sizeof *t);
	t->name = name;
	t->backend = "cpu";
	t->desc = desc;
	t->usable = usable;
	t->buildable = true; /* every CPU target builds anywhere with a C compiler for it */
	snprintf(t->note, sizeof t->note, "%s", note);
}

int cg_cpu_targets(const CgCpuFeatures *f, CgTargetInfo *out, int max)
{
	enum { NT = 10 };
	CgTargetInfo t[NT];
	bool avx2 = f->avx2 && f->fma && f->f16c;
	bool avx512 = f->avx512f && f->avx512bw && f->avx512vl;
	bool amx = avx2 && avx512 && f->avx512_vnni && f->amx_tile && f->amx_int8;
	const char *not_x86 = "needs an x86-64 host";
	/* usable means runnable here; every target builds anywhere with a C compiler for it */
	const char *not_arm = "needs an aarch64 host (build it here with a cross compiler: "
			      "--cc aarch64-linux-gnu-gcc)";

	put(&t[0], "cpu-generic", "portable C, any CPU the C compiler targets", true,
	    "no special instructions");
	put(&t[1], "cpu-avx2", "x86-64 AVX2 kernels", avx2,
	    !f->x86 ? not_x86 : avx2 ? "avx2 fma f16c present" : "host lacks avx2/fma/f16c");
	put(&t[2], "cpu-avx512", "x86-64 AVX-512 kernels (VNNI when present)", avx512,
	    !f->x86 ? not_x86
	    : avx512 ? (f->avx512_vnni ? "avx512f/bw/vl + avx512_vnni present"
				       : "avx512f/bw/vl present, no VNNI")
		     : "host lacks avx512f/bw/vl (or the OS does not enable them)");
	/* without AMX the target still builds, to run its tiles in software (the tests do) */
	const char *amx_note = !f->x86 ? not_x86
			       : amx   ? "avx512 vnni + amx_tile amx_int8 present"
			       : !(avx2 && avx512 && f->avx512_vnni)
				       ? "host lacks avx512f/bw/vl + avx512_vnni (and amx_tile/amx_int8)"
				       : "host lacks amx_tile/amx_int8 (--cflags -DBN_AMX_EMULATE runs "
					 "the tiles in software, for tests)";
	put(&t[3], "cpu-amx", "x86-64 AVX-512 VNNI kernels + AMX-INT8 tiles for multi-token forwards",
	    amx, amx_note);
	put(&t[4], "cpu-neon", "AArch64 NEON kernels (armv8-a, any aarch64 CPU)", f->neon,
	    f->neon ? "neon present" : not_arm);
	put(&t[5], "cpu-neon-dot", "AArch64 NEON + dot product (sdot) kernels (armv8.2-a)",
	    f->neon && f->dotprod,
	    !f->neon ? not_arm : f->dotprod ? "neon dotprod present" : "host lacks dotprod");
	put(&t[6], "cpu-sve", "AArch64 SVE kernels (armv8.2-a+sve, any vector length)", f->sve,
	    !f->neon ? not_arm : f->sve ? "sve present" : "host lacks sve");
	const char *not_rv = "needs a riscv64 host (build it here with a cross compiler: ";
	char rv_note[sizeof t[0].note], rvv_note[sizeof t[0].note];
	snprintf(rv_note, sizeof rv_note, "%s%s)", not_rv, cg_cpu_target("cpu-rv64")->cross);
	snprintf(rvv_note, sizeof rvv_note, "%s%s)", not_rv, cg_cpu_target("cpu-rvv")->cross);
	put(&t[7], "cpu-rv64", "RISC-V rv64gc, the portable kernels", f->rv64,
	    f->rv64 ? "riscv64 host" : rv_note);
	put(&t[8], "cpu-rvv", "RISC-V vector 1.0 kernels (rv64gcv, any VLEN)", f->rvv,
	    f->rvv ? "rvv present" : f->rv64 ? "host lacks the vector extension (rvv)" : rvv_note);
	/* native resolves to the best variant this host runs. SVE only where its vectors are
	 * wider than NEON's: at 128 bits both do 16 byte products per sdot, and the NEON
	 * kernels read the i2s_x16 layout in register tiles the SVE ones do not have. */
	const char *best = amx			   ? "cpu-amx"
			   : avx512		   ? "cpu-avx512"
			   : avx2		   ? "cpu-avx2"
			   : f->sve && f->sve_bits > 128 ? "cpu-sve"
			   : f->neon && f->dotprod ? "cpu-neon-dot"
			   : f->neon		   ? "cpu-neon"
			   : f->rvv		   ? "cpu-rvv"
						   : "cpu-generic";
	put(&t[9], "native", "the best CPU variant for this host", true, "");
	snprintf(t[9].note, sizeof t[9].note, "here: %s", best);

	int n = 0;
	for (; n < NT && n < max; n++)
		out[n] = t[n];
	return n;
}
