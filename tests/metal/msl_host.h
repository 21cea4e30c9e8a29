/* msl_host.h - what the Metal Shading Language adds over C++17, for the tests: with it (and
 * BN_MSL_HOST defined) a generated model.metal compiles with clang++ -std=c++17 into a shared
 * object whose trampolines (NAME__host, the SimtKernelFn of codegen/simt/simt_abi.h) run the
 * kernels under the SIMT emulator (tests/simt/simt_emu.c). The address-space keywords and
 * attributes vanish; a kernel takes its thread indices as MSL's attributes give them (uint3)
 * and, last, the emulator's SimtThread *bn_th, through which threadgroup_barrier and the
 * SIMD-group shuffles (a SIMD-group is 32 threads, as a warp) go. half is IEEE binary16
 * in software (conversions from float round to nearest even, as Metal's). Only what the
 * translator writes is here. */
#ifndef BITNETC_MSL_HOST_H
#define BITNETC_MSL_HOST_H

#include <cmath>
#include <cstdint>
#include <cstring>

#include "simt_abi.h"

#define kernel static
#define device
#define threadgroup
#define constant const
#define thread
#define BN_ATTR(x)
#define BN_HOST_PARAMS , SimtThread *bn_th
#define BN_HOST_ARGS(th) bn_uint3((th)->tid), bn_uint3((th)->ntid), bn_uint3((th)->ctaid), \
	bn_uint3((th)->nctaid), (th)
#define BN_HOST_EXPORT __attribute__((visibility("default")))

typedef uint16_t ushort;

/* binary16: float -> half rounds to nearest even (overflow to infinity, NaN stays NaN) */
static inline uint16_t bn_f32_to_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
	if (ax >= 0x477ff000u) /* 65520 and above: infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (ax < 0x38800000u) { /* below 2^-14: a subnormal half, in units of 2^-24 */
		float af;
		memcpy(&af, &ax, 4);
		return (uint16_t)(sign | (uint32_t)std::rint(af * 16777216.0f));
	}
	uint32_t r = ax - 0x38000000u, h = r >> 13, rem = r & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
		h++;
	return (uint16_t)(sign | h);
}

static inline float bn_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
	if (e == 0) {
		float f = (float)m * 5.9604644775390625e-8f;
		return sign ? -f : f;
	}
	uint32_t bits = sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e + 112) << 23) | (m << 13));
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

struct half {
	uint16_t bits;
	half() = default;
	explicit half(float f) : bits(bn_f32_to_f16(f)) {}
	operator float() const { return bn_f16_to_f32(bits); }
};

struct uint3 {
	uint32_t x, y, z;
};

static inline uint3 bn_uint3(const uint32_t v[3])
{
	return uint3{v[0], v[1], v[2]};
}

struct char4 {
	int8_t x, y, z, w;
};

/* as_type<T>(x): the bits of x as a T of the same size */
template <typename T, typename F> static inline T as_type(F f)
{
	static_assert(sizeof(T) == sizeof(F), "as_type between types of different sizes");
	T t;
	memcpy(&t, &f, sizeof t);
	return t;
}

using std::fabs;
using std::fma;
using std::isfinite;
using std::isnan;
using std::fmax;
using std::fmin;
using std::rint;
using std::sqrt;

namespace precise {
static inline float exp(float x)
{
	return std::exp(x);
}
} // namespace precise

/* SIMD-group matrices (8x8, row-major e[row * 8 + col]). On the GPU the 32 threads of a
 * SIMD-group hold one together and every call is made by all of them with the same
 * arguments; here each thread holds a whole copy and does the whole operation, which gives
 * the same result because the arguments are the same in every thread (a store writes the
 * same values once per thread). The product sums in float, k in order, after c: for the
 * integer-valued operands the kernels use, every order gives the same exact sum. */
typedef uint64_t ulong;
struct ulong2 {
	ulong x, y;
	ulong2(ulong a, ulong b) : x(a), y(b) {}
};

template <typename T> struct bn_sg_matrix {
	T e[64];
};
typedef bn_sg_matrix<half> simdgroup_half8x8;
typedef bn_sg_matrix<float> simdgroup_float8x8;

template <typename T, int C, int R> static inline bn_sg_matrix<T> make_filled_simdgroup_matrix(T v)
{
	static_assert(C == 8 && R == 8, "8x8 SIMD-group matrices only");
	bn_sg_matrix<T> m;
	for (int i = 0; i < 64; i++)
		m.e[i] = v;
	return m;
}

/* m(r, c) = p[(o.y + r) * n + o.x + c]; transposed m(r, c) = p[(o.y + c) * n + o.x + r] */
template <typename T>
static inline void simdgroup_load(bn_sg_matrix<T> &m, const T *p, ulong n, ulong2 o, bool tr)
{
	for (int r = 0; r < 8; r++)
		for (int c = 0; c < 8; c++)
			m.e[r * 8 + c] = tr ? p[(o.y + c) * n + o.x + r] : p[(o.y + r) * n + o.x + c];
}

template <typename T>
static inline void simdgroup_store(const bn_sg_matrix<T> &m, T *p, ulong n, ulong2 o, bool tr)
{
	for (int r = 0; r < 8; r++)
		for (int c = 0; c < 8; c++)
			(tr ? p[(o.y + c) * n + o.x + r] : p[(o.y + r) * n + o.x + c]) = m.e[r * 8 + c];
}

/* d = a * b + c */
template <typename TD, typename TA, typename TB, typename TC>
static inline void simdgroup_multiply_accumulate(bn_sg_matrix<TD> &d, const bn_sg_matrix<TA> &a,
						 const bn_sg_matrix<TB> &b, const bn_sg_matrix<TC> &c)
{
	float fa[64], fb[64], r[64];
	for (int i = 0; i < 64; i++) {
		fa[i] = (float)a.e[i];
		fb[i] = (float)b.e[i];
	}
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 8; j++) {
			float s = (float)c.e[i * 8 + j];
			for (int k = 0; k < 8; k++)
				s += fa[i * 8 + k] * fb[k * 8 + j];
			r[i * 8 + j] = s;
		}
	for (int i = 0; i < 64; i++)
		d.e[i] = TD(r[i]);
}

/* the barrier: every thread of the threadgroup (the emulator's block) */
#define threadgroup_barrier(flags) bn_th->barrier(bn_th)

/* the shuffles: 32-bit values through the emulator's warp exchange */
template <typename T> static inline T bn_host_shfl(SimtThread *th, T v, uint32_t arg, uint32_t mode)
{
	static_assert(sizeof(T) == 4, "shuffles of 32-bit values only");
	uint32_t u;
	memcpy(&u, &v, 4);
	u = th->shfl(th, u, arg, mode);
	memcpy(&v, &u, 4);
	return v;
}
#define simd_shuffle(v, l) bn_host_shfl(bn_th, (v), (l), SIMT_SHFL_IDX)
#define simd_shuffle_up(v, d) bn_host_shfl(bn_th, (v), (d), SIMT_SHFL_UP)
#define simd_shuffle_down(v, d) bn_host_shfl(bn_th, (v), (d), SIMT_SHFL_DOWN)
#define simd_shuffle_xor(v, m) bn_host_shfl(bn_th, (v), (m), SIMT_SHFL_BFLY)

/* device atomics on int (relaxed) */
typedef int32_t atomic_int;
#define memory_order_relaxed 0
static inline int32_t atomic_fetch_min_explicit(int32_t *p, int32_t v, int order)
{
	(void)order;
	int32_t o = __atomic_load_n(p, __ATOMIC_RELAXED);
	while (v < o && !__atomic_compare_exchange_n(p, &o, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return o;
}
static inline int32_t atomic_fetch_add_explicit(int32_t *p, int32_t v, int order)
{
	(void)order;
	return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

#endif
