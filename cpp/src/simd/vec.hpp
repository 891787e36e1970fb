// The small vector abstraction `Vec` every kernel is written on, and its exp. Part of the
// per-ISA kernels: every header of cpp/src/simd except kernels.hpp, graph_kernels.hpp and
// scratch.hpp is compiled once per ISA, included by kernels_<isa>.cpp, which defines first:
//   RUVECTOR_ISA_NS       a namespace name unique to the ISA (every symbol here lives in it, so
//                         no AVX-512 copy of a shared inline function can be picked by the
//                         linker for another ISA's caller)
//   RUVECTOR_MR, RUVECTOR_NV  GEMM micro-kernel shape: MR rows × NV vectors of columns
//   RUVECTOR_SCALAR       for the portable version (plain loops, no intrinsics), or
//   RUVECTOR_XSIMD_ARCH   the xsimd architecture tag, with xsimd renamed into a per-ISA
//                         namespace by `#define xsimd ...` before <xsimd/xsimd.hpp>.
// Nothing in the per-ISA kernels throws, touches Eigen or knows about Python.
#pragma once

#if !defined(RUVECTOR_ISA_NS)
#error "per-ISA kernel code: include it from a kernels_<isa>.cpp, which defines the ISA (see simd/vec.hpp)"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#ifndef RUVECTOR_SCALAR
#include <xsimd/xsimd.hpp>  // kernels_<isa>.cpp included it first, under its renamed namespace
#endif

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

#ifdef RUVECTOR_SCALAR
// Portable version: width-1 "vectors" that are plain floats.
struct Vec {
  using reg = float;
  static constexpr std::size_t width = 1;
  static reg load(const float* p) noexcept { return *p; }
  static void store(float* p, reg v) noexcept { *p = v; }
  static reg broadcast(float x) noexcept { return x; }
  static reg zero() noexcept { return 0.0f; }
  static reg fma(reg a, reg b, reg c) noexcept { return a * b + c; }
  static reg add(reg a, reg b) noexcept { return a + b; }
  static reg sub(reg a, reg b) noexcept { return a - b; }
  static reg mul(reg a, reg b) noexcept { return a * b; }
  static reg div(reg a, reg b) noexcept { return a / b; }
  static reg max(reg a, reg b) noexcept { return a > b ? a : b; }
  static reg abs(reg a) noexcept { return std::fabs(a); }
  static reg exp(reg a) noexcept { return std::exp(a); }
  static reg exp_nonpositive(reg a) noexcept { return std::exp(a); }
  // a > b ? fill : value
  static reg where_gt(reg a, reg b, reg value, reg fill) noexcept { return a > b ? fill : value; }
  static float hsum(reg a) noexcept { return a; }
  static reg hsum_each(const reg* v) noexcept { return v[0]; }
  static const std::size_t* hsum_slots() noexcept {
    static const std::size_t slots[1] = {0};
    return slots;
  }
  static float hmax(reg a) noexcept { return a; }
};
#else
struct Vec {
  using arch = RUVECTOR_XSIMD_ARCH;
  using reg = xsimd::batch<float, arch>;
  static constexpr std::size_t width = reg::size;
  static reg load(const float* p) noexcept { return reg::load_unaligned(p); }
  static void store(float* p, reg v) noexcept { v.store_unaligned(p); }
  static reg broadcast(float x) noexcept { return reg(x); }
  static reg zero() noexcept { return reg(0.0f); }
  static reg fma(reg a, reg b, reg c) noexcept { return xsimd::fma(a, b, c); }
  static reg add(reg a, reg b) noexcept { return a + b; }
  static reg sub(reg a, reg b) noexcept { return a - b; }
  static reg mul(reg a, reg b) noexcept { return a * b; }
  static reg div(reg a, reg b) noexcept { return a / b; }
  static reg max(reg a, reg b) noexcept { return xsimd::max(a, b); }
  static reg abs(reg a) noexcept { return xsimd::abs(a); }
  static reg where_gt(reg a, reg b, reg value, reg fill) noexcept { return xsimd::select(a > b, fill, value); }
  static float hsum(reg a) noexcept {
#if XSIMD_VERSION_MAJOR >= 11
    return xsimd::reduce_add(a);
#else
    return xsimd::hadd(a);  // xsimd 8.1 (Debian 12) has hadd, later releases reduce_add
#endif
  }
  // width sums at once: lane j of hsum_each(v) is the sum of the lanes of v[m] for the m with
  // hsum_slots()[m] == j. (xsimd documents m = j, but the AVX-512 version in xsimd 8.1,
  // Debian 12's, returns its lanes permuted: the order is found once by trying it.) Null from
  // hsum_slots() if the order were no permutation at all: sum one vector at a time then.
  static reg hsum_each(const reg* v) noexcept { return xsimd::haddp(v); }
  static const std::size_t* hsum_slots() noexcept {
    static const struct Slots {
      std::size_t of[width];
      bool ok = true;
      Slots() noexcept {
        // Lane l of vector m holds (m + 1)·2^l, so the vector sums to (m + 1)·(2^width − 1),
        // exactly (below 2^24): a lane holding anything but one whole vector's sum shows.
        alignas(64) float lanes[width][width];
        reg v[width];
        for (std::size_t m = 0; m < width; ++m) {
          for (std::size_t l = 0; l < width; ++l) lanes[m][l] = static_cast<float>((m + 1) << l);
          v[m] = reg::load_aligned(lanes[m]);
        }
        alignas(64) float sums[width];
        hsum_each(v).store_aligned(sums);
        const float whole = static_cast<float>((std::size_t{1} << width) - 1);
        bool seen[width] = {};
        for (std::size_t j = 0; j < width && ok; ++j) {
          const float m = sums[j] / whole - 1.0f;
          ok = m >= 0.0f && m < static_cast<float>(width);  // (false for NaN) before the cast
          const auto mi = ok ? static_cast<std::size_t>(m) : 0;
          ok = ok && static_cast<float>(mi) == m && !seen[mi];
          if (ok) {
            seen[mi] = true;
            of[mi] = j;
          }
        }
      }
    } slots;
    return slots.ok ? slots.of : nullptr;
  }
  static float hmax(reg a) noexcept {  // xsimd 8.1 has no reduce_max
    alignas(64) float t[width];
    a.store_aligned(t);
    float m = t[0];
    for (std::size_t i = 1; i < width; ++i) m = t[i] > m ? t[i] : m;
    return m;
  }
  // e^r for r = x - n·ln2 (n = round(x·log2 e), so |r| <= ln2/2): ln2 in two parts (Cody-Waite)
  // and a degree-7 polynomial.
  static reg exp_reduced(reg x, reg n) noexcept {
    reg r = xsimd::fma(n, reg(-0.693359375f), x);
    r = xsimd::fma(n, reg(2.12194440e-4f), r);
    reg p(1.9875691500e-4f);
    p = xsimd::fma(p, r, reg(1.3981999507e-3f));
    p = xsimd::fma(p, r, reg(8.3334519073e-3f));
    p = xsimd::fma(p, r, reg(4.1665795894e-2f));
    p = xsimd::fma(p, r, reg(1.6666665459e-1f));
    p = xsimd::fma(p, r, reg(5.0000001201e-1f));
    return xsimd::fma(p * r, r, r) + reg(1.0f);
  }
  // exp(x) for float32, relative error ~2 ulp: x = n·ln2 + r, |r| <= ln2/2, e^r by
  // exp_reduced, 2^n by exponent bits. Faster than a general libm exp; exp(-inf) = 0,
  // exp(+inf) = +inf, NaN stays NaN.
  static reg exp(reg x) noexcept {
    using ireg = xsimd::batch<std::int32_t, arch>;
    const reg hi(88.3762626647949f), lo(-87.3365447505531f);
    const auto below = x < lo;
    // Lanes below lo (masked scores, -inf) are replaced by 0 at the end; computing them at
    // xc = 0 instead of lo keeps p·2^n normal: a subnormal product costs ~100 cycles per lane.
    reg xc = xsimd::select(below, reg(0.0f), xsimd::min(xsimd::max(x, lo), hi));
    reg n = xsimd::nearbyint(xc * reg(1.44269504088896341f));
    const reg p = exp_reduced(xc, n);
    ireg e = (xsimd::to_int(n) + ireg(127)) << 23;
#if XSIMD_VERSION_MAJOR >= 10
    reg y = p * xsimd::bitwise_cast<float>(e);
#else
    reg y = p * xsimd::bitwise_cast<reg>(e);  // xsimd 8.1 takes the batch type
#endif
    y = xsimd::select(below, reg(0.0f), y);
    y = xsimd::select(x > hi, reg(std::numeric_limits<float>::infinity()), y);
    return xsimd::select(xsimd::isnan(x), x, y);
  }
  // exp(x) for x <= 0, -inf or NaN only (scores minus their row's max, the softmax hot loop):
  // the same polynomial with fewer steps. 2^n comes from rounding by a magic constant, whose
  // float bits then hold n + 127 in the low mantissa bits; x < -87 gives 0 (exp(-87) = 1.6e-38
  // is above the smallest normal float, 1.2e-38, so no lane ever costs a subnormal multiply);
  // NaN passes through (max(lo, x) returns x when x is NaN on x86 and NEON).
  static reg exp_nonpositive(reg x) noexcept {
    using ireg = xsimd::batch<std::int32_t, arch>;
    const reg lo(-87.0f), magic(12582912.0f + 127.0f);  // 1.5·2^23 + exponent bias
    const reg xc = xsimd::max(lo, x);
    const reg t = xsimd::fma(xc, reg(1.44269504088896341f), magic);
    const reg n = t - magic;  // round(x·log2 e), exactly
    const reg p = exp_reduced(xc, n);
#if XSIMD_VERSION_MAJOR >= 10
    const ireg e = xsimd::bitwise_cast<std::int32_t>(t) << 23;
    const reg y = p * xsimd::bitwise_cast<float>(e);
#else
    const ireg e = xsimd::bitwise_cast<ireg>(t) << 23;
    const reg y = p * xsimd::bitwise_cast<reg>(e);
#endif
    return xsimd::select(x < lo, reg(0.0f), y);
  }
};
#endif

constexpr std::size_t W = Vec::width;

using reg = Vec::reg;

}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
