/* cg_cpu_amx.c - AMX-INT8 GEMM kernels for I2_S weights in the i2s_x16 layout: the
 * multi-token forwards of a target with AMX (cpu-amx; native on a host with it).
 *
 * A 64-byte chunk c of group g holds, at byte 4r + j, the codes of row 16g + r at
 * k = 16c + 4s + j in bits 2s+1:2s, so (chunk >> 2s) & 3 per byte is one row of a
 * TDPBSSD B tile: 16 output columns (the group's rows) x 4 consecutive k. Four chunks x
 * four shifts make the 16 rows of a B tile (64 k), unpacked with AVX-512 into a 1 KiB
 * buffer and tile-loaded from it. The A tile is up to 16 tokens x 64 k of the int8
 * activations, loaded in place (row stride K). TDPBSSD sums code * q exactly in int32;
 * the C tiles go to memory and the epilogue is the other families' ((float)(D - qsum) /
 * s) * wscale, so the logits are the same bits.
 *
 * Blocking: RG groups (B tiles) x TB token tiles of 16 (A tiles) -> RG x TB C tiles held
 * over all of K (RG + TB + RG x TB <= 8 tiles; default 2 x 2). A thread takes units of RG
 * groups as the x16 driver does, and for each runs the token blocks of 16 TB. Every
 * forward of more than one token uses it (M = the tokens left, up to 16 per A tile); the
 * one-token forward keeps the AVX-512 VNNI GEMV.
 *
 * The tile instructions are written as BN_TILE_* macros: the intrinsics, or with
 * -DBN_AMX_EMULATE a per-thread software register file that implements them, shape checks
 * included, so that a host without AMX can run (and test) the same code. Each driver asks
 * the OS for the tile state first (once per process: bn_amx_ensure), so the generated code
 * needs no help from main(); the emulation faults on a tile instruction before that, as
 * the hardware does. */
#include "cg_cpu_em.h"

enum { AMX_TILES = 8 };

/* The tile configuration, the BN_TILE_* macros and their emulation: once per file. */
const char cg_amx_tiles_src[] =
	"/* palette 1: rows and bytes per row (colsb) of each of the 8 tiles */\n"
	"typedef struct {\n"
	"\tuint8_t palette, start_row, rsv[14];\n"
	"\tuint16_t colsb[16];\n"
	"\tuint8_t rows[16];\n"
	"} BnTileCfg;\n"
	"_Static_assert(sizeof(BnTileCfg) == 64, \"the tile configuration is 64 bytes\");\n"
	"/* Linux gives a process the tile data state only when it asks (arch_prctl\n"
	" * ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); until then the first tile instruction is\n"
	" * SIGILL. The kernels ask once per process before their first tile instruction\n"
	" * (bn_amx_ensure), so the model runs under any main(); the emulation below holds the\n"
	" * same permission and faults without it. */\n"
	"#include <stdatomic.h>\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"static atomic_int bn_amx_perm; /* 0: not asked yet, 1: granted, < 0: refused (-errno) */\n"
	"#if !defined(BN_AMX_EMULATE) && defined(__linux__)\n"
	"/* the system call itself (x86-64 Linux's ABI): libc's syscall() wants _GNU_SOURCE */\n"
	"static int bn_amx_request(void)\n"
	"{\n"
	"\tlong r;\n"
	"\t__asm__ volatile(\"syscall\"\n"
	"\t\t\t : \"=a\"(r)\n"
	"\t\t\t : \"0\"(158L /* arch_prctl */), \"D\"(0x1023L /* ARCH_REQ_XCOMP_PERM */),\n"
	"\t\t\t   \"S\"(18L /* XFEATURE_XTILEDATA */)\n"
	"\t\t\t : \"rcx\", \"r11\", \"memory\");\n"
	"\treturn r == 0 ? 1 : (int)r; /* -errno */\n"
	"}\n"
	"#else\n"
	"/* the software tiles need nothing of the OS; elsewhere there is no such request.\n"
	" * -DBN_AMX_EMULATE_DENY plays an OS that refuses it (EPERM), for tests. */\n"
	"static int bn_amx_request(void)\n"
	"{\n"
	"#if defined(BN_AMX_EMULATE_DENY)\n"
	"\treturn -1;\n"
	"#else\n"
	"\treturn 1;\n"
	"#endif\n"
	"}\n"
	"#endif\n"
	"/* 1: the tile state is granted; < 0: refused (-errno). decode() asks first and\n"
	" * returns RT_FORWARD_CPU when refused; the kernels ask again as a last guard. */\n"
	"static int bn_amx_state(void)\n"
	"{\n"
	"\tint s = atomic_load_explicit(&bn_amx_perm, memory_order_acquire);\n"
	"\tif (s == 0) { /* threads that meet here all ask; the OS answers them alike */\n"
	"\t\ts = bn_amx_request();\n"
	"\t\tatomic_store_explicit(&bn_amx_perm, s, memory_order_release);\n"
	"\t}\n"
	"\treturn s;\n"
	"}\n"
	"static void bn_amx_ensure(void)\n"
	"{\n"
	"\tint s = bn_amx_state();\n"
	"\tif (s < 0) {\n"
	"\t\tfprintf(stderr, \"model code (AMX kernels): the OS refused the tile state: \"\n"
	"\t\t\t\t\"arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA): %s (it needs a CPU with \"\n"
	"\t\t\t\t\"AMX and Linux 5.16 or newer)\\n\", strerror(-s));\n"
	"\t\tabort();\n"
	"\t}\n"
	"}\n"
	"#if defined(BN_AMX_EMULATE)\n"
	"/* The tile registers of this thread in software, with the checks the instructions\n"
	" * make (a fault here is a #UD, #GP or, without the permission, SIGILL on the\n"
	" * hardware). */\n"
	"static _Thread_local struct {\n"
	"\tBnTileCfg cfg;\n"
	"\tuint8_t t[8][16][64];\n"
	"} bn_amx;\n"
	"static void bn_amx_fault(const char *what, int t)\n"
	"{\n"
	"\tfprintf(stderr, \"emulated AMX: %s (tile %d)\\n\", what, t);\n"
	"\tabort();\n"
	"}\n"
	"static void bn_tile_perm(int t)\n"
	"{\n"
	"\tif (atomic_load_explicit(&bn_amx_perm, memory_order_acquire) != 1)\n"
	"\t\tbn_amx_fault(\"tile instruction before the process asked for the tile state \"\n"
	"\t\t\t     \"(arch_prctl ARCH_REQ_XCOMP_PERM): SIGILL on the hardware\", t);\n"
	"}\n"
	"static void bn_tile_check(int t)\n"
	"{\n"
	"\tbn_tile_perm(t);\n"
	"\tif (bn_amx.cfg.palette != 1)\n"
	"\t\tbn_amx_fault(\"no tile configuration loaded in this thread\", t);\n"
	"\tif (t < 0 || t > 7 || !bn_amx.cfg.rows[t])\n"
	"\t\tbn_amx_fault(\"tile not configured\", t);\n"
	"}\n"
	"static void bn_tile_loadconfig(const void *p)\n"
	"{\n"
	"\tBnTileCfg c;\n"
	"\tbn_tile_perm(-1);\n"
	"\tmemcpy(&c, p, sizeof c);\n"
	"\tif (c.palette != 1 || c.start_row)\n"
	"\t\tbn_amx_fault(\"palette must be 1, start_row 0\", -1);\n"
	"\tfor (int t = 0; t < 16; t++)\n"
	"\t\tif (t >= 8 ? c.rows[t] || c.colsb[t]\n"
	"\t\t\t   : c.rows[t] > 16 || c.colsb[t] > 64 || !c.rows[t] != !c.colsb[t])\n"
	"\t\t\tbn_amx_fault(\"bad tile shape\", t);\n"
	"\tbn_amx.cfg = c;\n"
	"\tmemset(bn_amx.t, 0, sizeof bn_amx.t);\n"
	"}\n"
	"static void bn_tile_release(void)\n"
	"{\n"
	"\tbn_tile_perm(-1);\n"
	"\tmemset(&bn_amx, 0, sizeof bn_amx);\n"
	"}\n"
	"static void bn_tile_zero(int t)\n"
	"{\n"
	"\tbn_tile_check(t);\n"
	"\tmemset(bn_amx.t[t], 0, sizeof bn_amx.t[t]);\n"
	"}\n"
	"/* rows x colsb bytes from base (row stride bytes); the rest of the tile zeroed */\n"
	"static void bn_tile_loadd(int t, const void *base, int64_t stride)\n"
	"{\n"
	"\tbn_tile_check(t);\n"
	"\tmemset(bn_amx.t[t], 0, sizeof bn_amx.t[t]);\n"
	"\tfor (int r = 0; r < bn_amx.cfg.rows[t]; r++)\n"
	"\t\tmemcpy(bn_amx.t[t][r], (const uint8_t *)base + r * stride, bn_amx.cfg.colsb[t]);\n"
	"}\n"
	"static void bn_tile_stored(int t, void *base, int64_t stride)\n"
	"{\n"
	"\tbn_tile_check(t);\n"
	"\tfor (int r = 0; r < bn_amx.cfg.rows[t]; r++)\n"
	"\t\tmemcpy((uint8_t *)base + r * stride, bn_amx.t[t][r], bn_amx.cfg.colsb[t]);\n"
	"}\n"
	"/* TDPBSSD: for m < rows(C), n < colsb(C) / 4, k < colsb(A) / 4:\n"
	" * C[m][n] += sum_{i<4} A[m][4k + i] * B[k][4n + i], signed bytes, int32 lanes that\n"
	" * wrap; the shapes must agree (rows(A) = rows(C), colsb(A) = 4 rows(B), colsb(B) =\n"
	" * colsb(C)) and the three tiles differ. The rest of C is zeroed. */\n"
	"static void bn_tile_dpbssd(int c, int a, int b)\n"
	"{\n"
	"\tbn_tile_check(c);\n"
	"\tbn_tile_check(a);\n"
	"\tbn_tile_check(b);\n"
	"\tconst BnTileCfg *g = &bn_amx.cfg;\n"
	"\tif (c == a || c == b || a == b)\n"
	"\t\tbn_amx_fault(\"TDPBSSD needs three different tiles\", c);\n"
	"\tif (g->rows[a] != g->rows[c] || g->colsb[a] != 4 * g->rows[b] ||\n"
	"\t    g->colsb[b] != g->colsb[c] || g->colsb[a] % 4 || g->colsb[c] % 4)\n"
	"\t\tbn_amx_fault(\"TDPBSSD: tile shapes do not agree\", c);\n"
	"\tuint8_t out[16][64] = {{0}};\n"
	"\tfor (int i = 0; i < g->rows[c]; i++)\n"
	"\t\tfor (int n = 0; n < g->colsb[c] / 4; n++) {\n"
	"\t\t\tint32_t v;\n"
	"\t\t\tmemcpy(&v, &bn_amx.t[c][i][4 * n], sizeof v);\n"
	"\t\t\tuint32_t acc = (uint32_t)v;\n"
	"\t\t\tfor (int k = 0; k < g->colsb[a] / 4; k++)\n"
	"\t\t\t\tfor (int j = 0; j < 4; j++)\n"
	"\t\t\t\t\tacc += (uint32_t)((int32_t)(int8_t)bn_amx.t[a][i][4 * k + j] *\n"
	"\t\t\t\t\t\t\t  (int32_t)(int8_t)bn_amx.t[b][k][4 * n + j]);\n"
	"\t\t\tv = (int32_t)acc;\n"
	"\t\t\tmemcpy(&out[i][4 * n], &v, sizeof v);\n"
	"\t\t}\n"
	"\tmemcpy(bn_amx.t[c], out, sizeof out);\n"
	"}\n"
	"#define BN_TILE_LOADCONFIG(p) bn_tile_loadconfig(p)\n"
	"#define BN_TILE_RELEASE() bn_tile_release()\n"
	"#define BN_TILE_ZERO(t) bn_tile_zero(t)\n"
	"#define BN_TILE_LOADD(t, p, s) bn_tile_loadd(t, p, s)\n"
	"#define BN_TILE_STORED(t, p, s) bn_tile_stored(t, p, s)\n"
	"#define BN_TILE_DPBSSD(c, a, b) bn_tile_dpbssd(c, a, b)\n"
	"#else\n"
	"/* gcc: __AMX_TILE__, clang: __AMXTILE__ */\n"
	"#if !(defined(__AMX_TILE__) || defined(__AMXTILE__)) || \\\n"
	"\t!(defined(__AMX_INT8__) || defined(__AMXINT8__))\n"
	"#error \"the AMX kernels need -mamx-tile -mamx-int8 (bitnetc build --target cpu-amx), or -DBN_AMX_EMULATE\"\n"
	"#endif\n"
	"/* tile numbers must be literals: the intrinsics paste them into the instruction */\n"
	"#define BN_TILE_LOADCONFIG(p) _tile_loadconfig(p)\n"
	"#define BN_TILE_RELEASE() _tile_release()\n"
	"#define BN_TILE_ZERO(t) _tile_zero(t)\n"
	"#define BN_TILE_LOADD(t, p, s) _tile_loadd(t, p, s)\n"
	"#define BN_TILE_STORED(t, p, s) _tile_stored(t, p, s)\n"
	"#define BN_TILE_DPBSSD(c, a, b) _tile_dpbssd(c, a, b)\n"
	"#endif\n";

static int amx_common(Em *m, const IrNode *n)
{
	CgBuf *b;
	if (kern_for(m, n, "amx_common", &b))
		return m->e->code;
	if (b)
		cg_printf(b, "%s", cg_amx_tiles_src);
	return 0;
}

/* Tile numbers of the layout RG x TB: C tiles first (token tile i, group r), then the A
 * tiles, then the B tiles. */
static int tile_c(int rgx, int i, int r)
{
	return i * rgx + r;
}
static int tile_a(int rgx, int tbx, int i)
{
	return rgx * tbx + i;
}
static int tile_b(int rgx, int tbx, int r)
{
	return rgx * tbx + tbx + r;
}

/* The configuration of layout RG x TB for tb token tiles, the last of them holding last
 * tokens (the others 16); the tiles of unused token tiles stay unconfigured. */
static int amx_cfg(Em *m, const IrNode *n, int rgx, int tbx, char *name, size_t nn)
{
	snprintf(name, nn, "amx%dx%d_cfg", rgx, tbx);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "static void %s(BnTileCfg *c, int tb, int last)\n"
		     "{\n"
		     "\tmemset(c, 0, sizeof *c);\n"
		     "\tc->palette = 1;\n"
		     "\tfor (int i = 0; i < tb; i++) {\n"
		     "\t\tuint8_t rows = (uint8_t)(i == tb - 1 ? last : 16);\n"
		     "\t\tfor (int r = 0; r < %d; r++) {\n"
		     "\t\t\tc->rows[i * %d + r] = rows; /* C */\n"
		     "\t\t\tc->colsb[i * %d + r] = 64;\n"
		     "\t\t}\n"
		     "\t\tc->rows[%d + i] = rows; /* A */\n"
		     "\t\tc->colsb[%d + i] = 64;\n"
		     "\t}\n"
		     "\tfor (int r = 0; r < %d; r++) {\n"
		     "\t\tc->rows[%d + r] = 16; /* B: 16 rows of 4 k, 64 k in all */\n"
		     "\t\tc->colsb[%d + r] = 64;\n"
		     "\t}\n"
		     "}\n",
		  name, rgx, rgx, rgx, tile_a(rgx, tbx, 0), tile_a(rgx, tbx, 0), rgx,
		  tile_b(rgx, tbx, 0), tile_b(rgx, tbx, 0));
	return 0;
}

static void amx_micro_name(int rgx, int tbx, int rg, int tb, char *name, size_t nn)
{
	snprintf(name, nn, "amx%dx%d_r%d_t%d", rgx, tbx, rg, tb);
}

/* Micro kernel of layout RG x TB computing rg groups x tb token tiles over all of K:
 * the C tiles end in cb ([token tile][group][16][16] int32, of the layout's RG). */
static int amx_micro(Em *m, const IrNode *n, int rgx, int tbx, int rg, int tb, char *name,
		     size_t nn)
{
	amx_micro_name(rgx, tbx, rg, tb, name, nn);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "static inline void %s(const uint8_t *w, int64_t gs, int64_t nkb, const int8_t *q,\n"
		     "\t\t\t\t  int64_t K, uint8_t *bt, int32_t *cb)\n"
		     "{\n"
		     "\tconst __m512i m3 = _mm512_set1_epi8(3);\n",
		  name);
	for (int i = 0; i < tb; i++)
		for (int r = 0; r < rg; r++)
			cg_printf(b, "\tBN_TILE_ZERO(%d);\n", tile_c(rgx, i, r));
	/* two unpack buffers: a step's stores need not wait for the last step's tile loads */
	cg_printf(b, "\tfor (int64_t kb = 0; kb < nkb; kb++) {\n"
		     "\t\tuint8_t *bb = bt + %d * (kb & 1);\n"
		     "\t\tfor (int c = 0; c < 4; c++) {\n",
		  1024 * rgx);
	for (int r = 0; r < rg; r++) {
		cg_printf(b, "\t\t\tconst __m512i v%d = _mm512_loadu_si512((const void *)(w + %d * gs + 256 * kb + 64 * c));\n",
			  r, r);
		for (int s = 0; s < 4; s++)
			if (s == 0)
				cg_printf(b, "\t\t\t_mm512_store_si512((void *)(bb + %d + 256 * c), _mm512_and_si512(v%d, m3));\n",
					  1024 * r, r);
			else
				cg_printf(b, "\t\t\t_mm512_store_si512((void *)(bb + %d + 256 * c), _mm512_and_si512(_mm512_srli_epi16(v%d, %d), m3));\n",
					  1024 * r + 64 * s, r, 2 * s);
	}
	cg_printf(b, "\t\t}\n");
	for (int i = 0; i < tb; i++)
		cg_printf(b, "\t\tBN_TILE_LOADD(%d, q + %d * K + 64 * kb, K);\n", tile_a(rgx, tbx, i), 16 * i);
	for (int r = 0; r < rg; r++)
		cg_printf(b, "\t\tBN_TILE_LOADD(%d, bb + %d, 64);\n", tile_b(rgx, tbx, r), 1024 * r);
	for (int i = 0; i < tb; i++)
		for (int r = 0; r < rg; r++)
			cg_printf(b, "\t\tBN_TILE_DPBSSD(%d, %d, %d);\n", tile_c(rgx, i, r), tile_a(rgx, tbx, i),
				  tile_b(rgx, tbx, r));
	cg_printf(b, "\t}\n");
	for (int i = 0; i < tb; i++)
		for (int r = 0; r < rg; r++)
			cg_printf(b, "\tBN_TILE_STORED(%d, cb + %d, 64);\n", tile_c(rgx, i, r),
				  256 * tile_c(rgx, i, r));
	cg_printf(b, "}\n");
	return 0;
}

/* The AMX block of node n: attribute amx_tile {rows, tokens} (multiples of 16), else 32 x
 * 32; token tiles no more than the forward needs. */
static int amx_tile(Em *m, const IrNode *n, int *rg, int *tb)
{
	*rg = 2;
	*tb = 2;
	const IrAttr *a = ir_attr_find(n, "amx_tile");
	if (a) {
		if (a->type != IR_ATTR_INTS || a->n_ints != 2 || a->ints[0] < 16 || a->ints[0] % 16 ||
		    a->ints[1] < 16 || a->ints[1] % 16 || a->ints[0] > 128 || a->ints[1] > 128 ||
		    a->ints[0] / 16 + a->ints[1] / 16 + (a->ints[0] / 16) * (a->ints[1] / 16) > AMX_TILES)
			return unsupported(m, n, "attribute amx_tile must be {rows, tokens}, multiples "
						 "of 16 with rows/16 + tokens/16 + both multiplied <= 8 "
						 "tiles ({16, 16}, {32, 16}, {48, 16}, {16, 32}, {32, 32}, "
						 "{16, 48})");
		*rg = (int)(a->ints[0] / 16);
		*tb = (int)(a->ints[1] / 16);
	}
	int need = (m->nt + 15) / 16;
	if (*tb > need)
		*tb = need;
	return 0;
}

int emit_tmm_amx(Em *m, const IrNode *n, int64_t k, int64_t nr, char *driver, size_t dn)
{
	if (!m->isa.amx || m->isa.level != CG_ISA_AVX512)
		return unsupported(m, n, "the AMX kernels need a target with AMX (cpu-amx)");
	if (m->nt < 2)
		return unsupported(m, n, "the AMX kernels are for forwards of several tokens");
	if (k % 64 || nr % 16)
		return unsupported(m, n, "the AMX kernels need K % 64 == 0 and rows % 16 == 0");
	int rgx, tbx;
	if (amx_tile(m, n, &rgx, &tbx))
		return m->e->code;
	char cfg[32], mk[64], name[128];
	if (amx_common(m, n) || amx_cfg(m, n, rgx, tbx, cfg, sizeof cfg))
		return m->e->code;
	for (int r = 1; r <= rgx; r++)
		for (int t = 1; t <= tbx; t++)
			if (amx_micro(m, n, rgx, tbx, r, t, mk, sizeof mk))
				return m->e->code;
	snprintf(name, sizeof name, "tmm_amx_k%" PRId64 "_n%" PRId64 "_r%d_t%d", k, nr, rgx,
		 16 * tbx);
	snprintf(driver, dn, "%s", name);
	CgBuf *b;
	if (kern_for(m, n, name, &b))
		return m->e->code;
	if (!b)
		return 0;
	cg_printf(b, "static void %s(void *arg, int ith, int nth)\n{\n"
		     "\tconst TmmArg *a = arg;\n"
		     "\tenum { K = %" PRId64 ", N = %" PRId64 ", NG = N / 16, RG = %d, TB = %d };\n"
		     "%s"
		     "\tconst int64_t gs = (int64_t)K * 4; /* bytes per group of 16 rows */\n"
		     "\tint64_t nu = (NG + RG - 1) / RG;\n"
		     "\tint64_t lo = nu * ith / nth, hi = nu * (ith + 1) / nth;\n"
		     "\tif (lo == hi)\n"
		     "\t\treturn;\n"
		     "\tbn_amx_ensure(); /* the tile state, whatever main() did */\n"
		     "\t_Alignas(64) uint8_t bt[2 * RG * 1024]; /* unpacked B tiles, two steps */\n"
		     "\t_Alignas(64) int32_t cb[TB * RG * 256]; /* the C tiles, for the epilogue */\n"
		     "\t_Alignas(64) BnTileCfg cfg;\n"
		     "\tint shape = -1; /* token tiles and last tile's rows the tiles are configured for */\n"
		     "\tfor (int64_t u = lo; u < hi; u++) {\n"
		     "\t\tint64_t g = u * RG;\n"
		     "\t\tint rg = NG - g < RG ? (int)(NG - g) : RG;\n"
		     "\t\tconst uint8_t *w = a->w + g * gs;\n"
		     "\t\tfor (int t0 = 0; t0 < a->n; t0 += 16 * TB) {\n"
		     "\t\t\tint left = a->n - t0;\n"
		     "\t\t\tint tb = left >= 16 * TB ? TB : (left + 15) / 16;\n"
		     "\t\t\tint last = left >= 16 * TB ? 16 : left - 16 * (tb - 1);\n"
		     "\t\t\tif (tb * 100 + last != shape) {\n"
		     "\t\t\t\t%s(&cfg, tb, last);\n"
		     "\t\t\t\tBN_TILE_LOADCONFIG(&cfg);\n"
		     "\t\t\t\tshape = tb * 100 + last;\n"
		     "\t\t\t}\n"
		     "\t\t\tconst int8_t *q = a->q + (int64_t)t0 * K;\n"
		     "\t\t\tswitch (rg * 1000 + tb) {\n",
		  name, k, nr, rgx, tbx, tmm_prologue, cfg);
	for (int r = 1; r <= rgx; r++)
		for (int t = 1; t <= tbx; t++) {
			amx_micro_name(rgx, tbx, r, t, mk, sizeof mk);
			cg_printf(b, "\t\t\tcase %d: %s(w, gs, K / 64, q, K, bt, cb); break;\n",
				  r * 1000 + t, mk);
		}
	/* the epilogue of the AVX-512 kernels, row by row of the stored C tiles */
	cg_printf(b, "\t\t\t}\n"
		     "\t\t\tfor (int i = 0; i < tb; i++)\n"
		     "\t\t\t\tfor (int r = 0; r < rg; r++)\n"
		     "\t\t\t\t\tfor (int j = 0; j < (i == tb - 1 ? last : 16); j++) {\n"
		     "\t\t\t\t\t\tint t = t0 + 16 * i + j;\n"
		     "\t\t\t\t\t\tconst __m512i d = _mm512_load_si512((const void *)(cb + 256 * (i * RG + r) + 16 * j));\n");
	tmm_epilogue_vec(b, CG_ISA_AVX512, "\t\t\t\t\t\t", "d", "qsum[t]", "a->s[t]",
			 "a->y + (int64_t)t * N + 16 * (g + r)");
	cg_printf(b, "\t\t\t\t\t}\n"
		     "\t\t}\n"
		     "\t}\n"
		     "\tBN_TILE_RELEASE();\n"
		     "}\n");
	return 0;
}
