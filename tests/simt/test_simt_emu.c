/* test_simt_emu.c - the SIMT emulator on hand-written kernels that follow simt_abi.h:
 * barrier ordering through shared memory, every shuffle mode and its edges, a block
 * reduction, grid indices, many blocks, threads that return early, deadlocks and bad
 * launches reported as errors. */
#include "testutil.h"
#include "simt_emu.h"

#include <stdlib.h>
#include <string.h>

static uint32_t lin_of(const SimtThread *th)
{
	return th->tid[0] + th->ntid[0] * (th->tid[1] + th->ntid[1] * th->tid[2]);
}

static uint32_t nthreads_of(const SimtThread *th)
{
	return th->ntid[0] * th->ntid[1] * th->ntid[2];
}

static uint32_t block_of(const SimtThread *th)
{
	return th->ctaid[0] + th->nctaid[0] * (th->ctaid[1] + th->nctaid[1] * th->ctaid[2]);
}

static void launch_ok(SimtKernelFn fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
		      unsigned by, unsigned bz, unsigned smem, void **params)
{
	const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
	char err[256] = "";
	if (simt_emu_launch(fn, grid, block, smem, params, err, sizeof err) != 0)
		fail_msg("launch failed: %s", err);
}

/* ---- barrier ordering ---- */

/* Each thread writes its slot, and after the barrier reads its neighbour's; then the same the
 * other way round with new values: without a barrier that waits, a thread reads a slot that
 * its owner has not written yet (0xA5 garbage) or already overwritten. */
static void k_neighbours(SimtThread *th, void **params)
{
	uint32_t *out = *(uint32_t **)params[0];
	uint32_t *sm = th->smem;
	uint32_t i = lin_of(th), n = nthreads_of(th), b = block_of(th);
	sm[i] = i * 3 + 1 + b;
	th->barrier(th);
	uint32_t right = sm[(i + 1) % n];
	th->barrier(th);
	sm[i] = right * 2;
	th->barrier(th);
	uint32_t left = sm[(i + n - 1) % n];
	out[b * n + i] = left;
}

static void test_barrier_order(void **state)
{
	(void)state;
	enum { N = 256, B = 3 };
	uint32_t *out = calloc(N * B, sizeof *out);
	void *params[] = {&out};
	launch_ok(k_neighbours, B, 1, 1, N, 1, 1, N * 4, params);
	for (uint32_t b = 0; b < B; b++)
		for (uint32_t i = 0; i < N; i++) {
			/* left neighbour j = i-1 stored 2 * (slot j+1 = i) = 2 * (3i + 1 + b) */
			uint32_t want = 2 * (i * 3 + 1 + b);
			if (out[b * N + i] != want)
				fail_msg("block %u thread %u: got %u, want %u", b, i, out[b * N + i], want);
		}
	free(out);
}

/* Shared memory starts as garbage, 16-aligned, in every block. */
static void k_smem_peek(SimtThread *th, void **params)
{
	uint32_t *out = *(uint32_t **)params[0];
	uint32_t *sm = th->smem;
	uint32_t i = lin_of(th);
	out[block_of(th) * 64 + i] = sm[i];
	out[1024 + block_of(th)] = (uint32_t)((uintptr_t)th->smem % 16);
	th->barrier(th);
	sm[i] = 0; /* the next block must see garbage again */
}

static void test_smem_garbage(void **state)
{
	(void)state;
	uint32_t *out = calloc(2048, sizeof *out);
	void *params[] = {&out};
	launch_ok(k_smem_peek, 4, 1, 1, 64, 1, 1, 256, params);
	for (int i = 0; i < 4 * 64; i++)
		assert_int_equal(out[i], 0xA5A5A5A5u);
	for (int b = 0; b < 4; b++)
		assert_int_equal(out[1024 + b], 0);
	free(out);
}

/* ---- shuffles ---- */

typedef struct {
	uint32_t mode, arg;
	int per_lane; /* IDX: each lane asks for a lane of its own: (lane * 7 + arg) % 32 */
} ShflCase;

static uint32_t value_of(uint32_t lin)
{
	return lin * 2654435761u + 17;
}

static void k_shfl(SimtThread *th, void **params)
{
	uint32_t *out = *(uint32_t **)params[0];
	const ShflCase *c = *(const ShflCase **)params[1];
	uint32_t i = lin_of(th), lane = i % 32;
	uint32_t arg = c->per_lane ? (lane * 7 + c->arg) % 32 : c->arg;
	out[i] = th->shfl(th, value_of(i), arg, c->mode);
}

/* What shfl.sync with a full warp of 32 gives lane `lane` of a warp starting at base. */
static uint32_t shfl_want(const ShflCase *c, uint32_t base, uint32_t lane)
{
	uint32_t arg = c->per_lane ? (lane * 7 + c->arg) % 32 : c->arg;
	int64_t src;
	switch (c->mode) {
	case SIMT_SHFL_IDX: src = arg; break;
	case SIMT_SHFL_UP: src = (int64_t)lane - arg; break;
	case SIMT_SHFL_DOWN: src = (int64_t)lane + arg; break;
	default: src = lane ^ arg; break;
	}
	if (src < 0 || src > 31)
		src = lane;
	return value_of(base + (uint32_t)src);
}

static void check_shfl(const ShflCase *c, uint32_t n)
{
	uint32_t *out = calloc(n, sizeof *out);
	void *params[] = {&out, &c};
	launch_ok(k_shfl, 1, 1, 1, n, 1, 1, 0, params);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t want = shfl_want(c, i / 32 * 32, i % 32);
		if (out[i] != want)
			fail_msg("mode %u arg %u%s thread %u: got %u, want %u", c->mode, c->arg,
				 c->per_lane ? " per lane" : "", i, out[i], want);
	}
	free(out);
}

static void test_shfl_modes(void **state)
{
	(void)state;
	static const ShflCase cases[] = {
		{SIMT_SHFL_IDX, 0, 0},   {SIMT_SHFL_IDX, 31, 0},  {SIMT_SHFL_IDX, 5, 1},
		{SIMT_SHFL_UP, 0, 0},    {SIMT_SHFL_UP, 1, 0},    {SIMT_SHFL_UP, 5, 0},
		{SIMT_SHFL_UP, 16, 0},   {SIMT_SHFL_UP, 31, 0},   {SIMT_SHFL_DOWN, 0, 0},
		{SIMT_SHFL_DOWN, 1, 0},  {SIMT_SHFL_DOWN, 5, 0},  {SIMT_SHFL_DOWN, 16, 0},
		{SIMT_SHFL_DOWN, 31, 0}, {SIMT_SHFL_BFLY, 1, 0},  {SIMT_SHFL_BFLY, 16, 0},
		{SIMT_SHFL_BFLY, 31, 0}, {SIMT_SHFL_BFLY, 0, 0},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		check_shfl(&cases[k], 32);
		check_shfl(&cases[k], 128); /* four warps, each on its own */
	}
}

/* Lanes at the edge: UP by 3 leaves lanes 0-2 their own value, DOWN by 3 lanes 29-31. */
static void test_shfl_edges(void **state)
{
	(void)state;
	ShflCase up = {SIMT_SHFL_UP, 3, 0}, down = {SIMT_SHFL_DOWN, 3, 0};
	const ShflCase *cp = &up;
	uint32_t out[64];
	void *params[] = {&(uint32_t *){out}, &cp};
	launch_ok(k_shfl, 1, 1, 1, 64, 1, 1, 0, params);
	for (uint32_t i = 0; i < 64; i++)
		assert_int_equal(out[i], value_of(i % 32 < 3 ? i : i - 3));
	cp = &down;
	launch_ok(k_shfl, 1, 1, 1, 64, 1, 1, 0, params);
	for (uint32_t i = 0; i < 64; i++)
		assert_int_equal(out[i], value_of(i % 32 > 28 ? i : i + 3));
}

/* A last, partial warp of 16 lanes: DOWN 8 from lanes 8-15 has no source lane. */
static void test_shfl_partial_warp(void **state)
{
	(void)state;
	ShflCase down = {SIMT_SHFL_DOWN, 8, 0};
	const ShflCase *cp = &down;
	uint32_t out[48];
	void *params[] = {&(uint32_t *){out}, &cp};
	launch_ok(k_shfl, 1, 1, 1, 48, 1, 1, 0, params);
	for (uint32_t i = 0; i < 32; i++)
		assert_int_equal(out[i], value_of(i % 32 > 23 ? i : i + 8));
	for (uint32_t i = 32; i < 48; i++)
		assert_int_equal(out[i], value_of(i - 32 >= 8 ? i : i + 8));
}

/* Shuffles back to back: every lane must read the value of this round, never the next one
 * that a faster lane has already deposited. 5 rotations by one lane. */
static void k_rotate(SimtThread *th, void **params)
{
	uint32_t *out = *(uint32_t **)params[0];
	uint32_t i = lin_of(th), lane = i % 32, v = value_of(i);
	for (int r = 0; r < 5; r++)
		v = th->shfl(th, v, (lane + 1) % 32, SIMT_SHFL_IDX);
	out[i] = v;
}

static void test_shfl_back_to_back(void **state)
{
	(void)state;
	uint32_t out[96];
	void *params[] = {&(uint32_t *){out}};
	launch_ok(k_rotate, 1, 1, 1, 96, 1, 1, 0, params);
	for (uint32_t i = 0; i < 96; i++)
		assert_int_equal(out[i], value_of(i / 32 * 32 + (i % 32 + 5) % 32));
}

/* ---- a block reduction: shuffles within warps, shared memory across them ---- */

static uint32_t warp_sum_down(SimtThread *th, uint32_t v)
{
	for (uint32_t o = 16; o; o /= 2)
		v += th->shfl(th, v, o, SIMT_SHFL_DOWN);
	return v;
}

static uint32_t warp_sum_bfly(SimtThread *th, uint32_t v)
{
	for (uint32_t o = 16; o; o /= 2)
		v += th->shfl(th, v, o, SIMT_SHFL_BFLY);
	return v;
}

static void k_reduce(SimtThread *th, void **params)
{
	const uint32_t *x = *(const uint32_t **)params[0];
	uint32_t *out = *(uint32_t **)params[1];
	uint32_t n = *(const uint32_t *)params[2];
	uint32_t *sm = th->smem;
	uint32_t i = lin_of(th), nt = nthreads_of(th), lane = i % 32, warp = i / 32;
	uint32_t acc = 0;
	for (uint32_t k = block_of(th) * nt + i; k < n; k += nt * th->nctaid[0])
		acc += x[k];
	acc = warp_sum_down(th, acc);
	if (lane == 0)
		sm[warp] = acc;
	th->barrier(th);
	if (warp == 0) {
		uint32_t v = lane < nt / 32 ? sm[lane] : 0;
		v = warp_sum_bfly(th, v);
		if (lane == 0)
			out[block_of(th)] = v;
	}
}

static void test_block_reduction_many_blocks(void **state)
{
	(void)state;
	enum { NB = 200, NT = 256 };
	uint32_t n = 1000003;
	uint32_t *x = malloc(n * sizeof *x), *out = calloc(NB, sizeof *out);
	uint64_t seed = 7;
	for (uint32_t k = 0; k < n; k++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		x[k] = (uint32_t)(seed >> 40);
	}
	void *params[] = {&x, &out, &n};
	launch_ok(k_reduce, NB, 1, 1, NT, 1, 1, 32 * 4, params);
	for (uint32_t b = 0; b < NB; b++) {
		uint32_t want = 0;
		for (uint32_t k = b * NT; k < n; k += NT * NB)
			for (uint32_t t = 0; t < NT && k + t < n; t++)
				want += x[k + t];
		if (out[b] != want)
			fail_msg("block %u: sum %u, want %u", b, out[b], want);
	}
	free(x);
	free(out);
}

/* ---- indices ---- */

static void k_indices(SimtThread *th, void **params)
{
	uint32_t *out = *(uint32_t **)params[0];
	uint32_t slot = (block_of(th) * nthreads_of(th) + lin_of(th)) * 12;
	for (int d = 0; d < 3; d++) {
		out[slot + d] = th->tid[d];
		out[slot + 3 + d] = th->ntid[d];
		out[slot + 6 + d] = th->ctaid[d];
		out[slot + 9 + d] = th->nctaid[d];
	}
}

static void check_indices(const unsigned g[3], const unsigned b[3])
{
	uint32_t nb = g[0] * g[1] * g[2], nt = b[0] * b[1] * b[2];
	uint32_t *out = calloc((size_t)nb * nt * 12, sizeof *out);
	memset(out, 0xff, (size_t)nb * nt * 12 * sizeof *out);
	void *params[] = {&out};
	launch_ok(k_indices, g[0], g[1], g[2], b[0], b[1], b[2], 0, params);
	for (uint32_t bz = 0; bz < g[2]; bz++)
		for (uint32_t by = 0; by < g[1]; by++)
			for (uint32_t bx = 0; bx < g[0]; bx++)
				for (uint32_t tz = 0; tz < b[2]; tz++)
					for (uint32_t ty = 0; ty < b[1]; ty++)
						for (uint32_t tx = 0; tx < b[0]; tx++) {
							uint32_t blk = bx + g[0] * (by + g[1] * bz);
							uint32_t t = tx + b[0] * (ty + b[1] * tz);
							const uint32_t *o = out + (blk * nt + t) * 12;
							uint32_t want[12] = {tx, ty, tz, b[0], b[1], b[2],
									     bx, by, bz, g[0], g[1], g[2]};
							if (memcmp(o, want, sizeof want) != 0)
								fail_msg("block (%u,%u,%u) thread (%u,%u,%u): "
									 "wrong indices", bx, by, bz, tx, ty, tz);
						}
	free(out);
}

static void test_grid_indices(void **state)
{
	(void)state;
	check_indices((const unsigned[3]){5, 3, 1}, (const unsigned[3]){64, 1, 1});
	check_indices((const unsigned[3]){3, 4, 5}, (const unsigned[3]){32, 1, 1});
	check_indices((const unsigned[3]){2, 2, 2}, (const unsigned[3]){8, 2, 2});
}

/* ---- threads that return early ---- */

/* Threads 100 and up return at once; the others pass three barriers, exchanging through
 * shared memory; threads 50-99 return after the first. The barriers must not wait for
 * the threads that have returned. */
static void k_early_return(SimtThread *th, void **params)
{
	uint32_t *out = *(uint32_t **)params[0];
	uint32_t *sm = th->smem;
	uint32_t i = lin_of(th);
	if (i >= 100)
		return;
	sm[i] = i + 1000;
	th->barrier(th);
	uint32_t a = sm[99 - i];
	if (i >= 50) {
		out[i] = a;
		return;
	}
	th->barrier(th);
	sm[i] = a * 2;
	th->barrier(th);
	out[i] = sm[49 - i];
}

static void test_early_return(void **state)
{
	(void)state;
	uint32_t out[256];
	memset(out, 0, sizeof out);
	void *params[] = {&(uint32_t *){out}};
	launch_ok(k_early_return, 2, 1, 1, 256, 1, 1, 1024, params);
	for (uint32_t i = 50; i < 100; i++)
		assert_int_equal(out[i], 99 - i + 1000);
	for (uint32_t i = 0; i < 50; i++)
		assert_int_equal(out[i], 2 * ((99 - (49 - i)) + 1000));
	for (uint32_t i = 100; i < 256; i++)
		assert_int_equal(out[i], 0);
}

/* ---- deadlocks and bad launches: errors, never a hang ---- */

/* Half of warp 1 shuffles while the other half waits at the barrier. */
static void k_split_warp(SimtThread *th, void **params)
{
	(void)params;
	uint32_t i = lin_of(th);
	if (i >= 32 && i < 48)
		(void)th->shfl(th, i, 0, SIMT_SHFL_IDX);
	th->barrier(th);
}

/* Lanes 0-7 return while the rest of the warp shuffles. */
static void k_shfl_after_return(SimtThread *th, void **params)
{
	(void)params;
	if (lin_of(th) < 8)
		return;
	(void)th->shfl(th, 1, 1, SIMT_SHFL_DOWN);
}

static void k_bad_mode(SimtThread *th, void **params)
{
	(void)params;
	(void)th->shfl(th, 1, 1, 7);
}

static void k_noop(SimtThread *th, void **params)
{
	uint32_t *out = *(uint32_t **)params[0];
	out[lin_of(th)] = lin_of(th) + 1;
}

static int launch_err(SimtKernelFn fn, unsigned gx, unsigned bx, unsigned by, char *err, size_t n)
{
	const unsigned grid[3] = {gx, 1, 1}, block[3] = {bx, by, 1};
	uint32_t scratch[1024];
	void *params[] = {&(uint32_t *){scratch}};
	err[0] = 0;
	return simt_emu_launch(fn, grid, block, 64, params, err, n);
}

/* After a failed launch the emulator runs the next one normally. */
static void check_still_works(void)
{
	uint32_t out[128];
	memset(out, 0, sizeof out);
	void *params[] = {&(uint32_t *){out}};
	launch_ok(k_noop, 1, 1, 1, 128, 1, 1, 0, params);
	for (uint32_t i = 0; i < 128; i++)
		assert_int_equal(out[i], i + 1);
}

static void test_deadlock_reported(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(launch_err(k_split_warp, 2, 64, 1, err, sizeof err), -1);
	tu_expect_has(err, "deadlock in block (0,0,0)");
	tu_expect_has(err, "warp 1 has 16 of its 32 lanes at a shuffle, 16 at the barrier, 0 returned");
	check_still_works();
	assert_int_equal(launch_err(k_shfl_after_return, 1, 32, 1, err, sizeof err), -1);
	tu_expect_has(err, "warp 0 has 24 of its 32 lanes at a shuffle, 0 at the barrier, 8 returned");
	check_still_works();
	assert_int_equal(launch_err(k_bad_mode, 1, 32, 1, err, sizeof err), -1);
	tu_expect_has(err, "shuffle mode 7");
	check_still_works();
}

static void test_bad_launches(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(launch_err(k_noop, 1, 1025, 1, err, sizeof err), -1);
	tu_expect_has(err, "1025 threads, more than 1024");
	assert_int_equal(launch_err(k_noop, 1, 512, 4, err, sizeof err), -1);
	tu_expect_has(err, "2048 threads");
	assert_int_equal(launch_err(k_noop, 0, 32, 1, err, sizeof err), -1);
	tu_expect_has(err, "a dimension is 0");
	assert_int_equal(launch_err(NULL, 1, 32, 1, err, sizeof err), -1);
	tu_expect_has(err, "without a kernel");
	check_still_works();
}

/* A kernel that launches: refused, the outer launch goes on. */
static void k_nested(SimtThread *th, void **params)
{
	int *rc = *(int **)params[0];
	const unsigned g[3] = {1, 1, 1}, b[3] = {32, 1, 1};
	char err[128];
	if (lin_of(th) == 0)
		rc[0] = simt_emu_launch(k_noop, g, b, 0, params, err, sizeof err);
	th->barrier(th);
	rc[1 + lin_of(th)] = 1;
}

static void test_nested_launch_refused(void **state)
{
	(void)state;
	int rc[33] = {0};
	void *params[] = {&(int *){rc}};
	launch_ok(k_nested, 1, 1, 1, 32, 1, 1, 0, params);
	assert_int_equal(rc[0], -1);
	for (int i = 1; i <= 32; i++)
		assert_int_equal(rc[i], 1);
}

/* Block sizes that grow and shrink between launches reuse the kept stacks; the counters count. */
static void test_sizes_and_stats(void **state)
{
	(void)state;
	SimtEmuStats a, b;
	simt_emu_stats(&a);
	static const unsigned sizes[] = {32, 1024, 64, 512, 96, 1024};
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		uint32_t *out = calloc(sizes[k] * 2, sizeof *out);
		void *params[] = {&out};
		launch_ok(k_neighbours, 2, 1, 1, sizes[k], 1, 1, sizes[k] * 4, params);
		for (uint32_t i = 0; i < sizes[k]; i++)
			assert_int_equal(out[sizes[k] + i], 2 * (i * 3 + 1 + 1));
		free(out);
	}
	simt_emu_stats(&b);
	assert_int_equal(b.launches - a.launches, 6);
	assert_int_equal(b.blocks - a.blocks, 12);
	uint64_t threads = 2 * (32 + 1024 + 64 + 512 + 96 + 1024);
	assert_int_equal(b.threads - a.threads, threads);
	/* every thread waits at 3 barriers and switches away once more when it returns */
	assert_true(b.switches - a.switches >= 4 * threads);
	assert_non_null(strstr("x86-64 asm|aarch64 asm|ucontext", simt_emu_switch_kind()));
	simt_emu_release();
	check_still_works();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_barrier_order),
		cmocka_unit_test(test_smem_garbage),
		cmocka_unit_test(test_shfl_modes),
		cmocka_unit_test(test_shfl_edges),
		cmocka_unit_test(test_shfl_partial_warp),
		cmocka_unit_test(test_shfl_back_to_back),
		cmocka_unit_test(test_block_reduction_many_blocks),
		cmocka_unit_test(test_grid_indices),
		cmocka_unit_test(test_early_return),
		cmocka_unit_test(test_deadlock_reported),
		cmocka_unit_test(test_bad_launches),
		cmocka_unit_test(test_nested_launch_refused),
		cmocka_unit_test(test_sizes_and_stats),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	simt_emu_release();
	return rc;
}
