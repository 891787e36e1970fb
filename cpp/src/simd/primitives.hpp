// Vector primitives of the per-ISA kernels (see vec.hpp): dot, axpy, scale, max, the
// finiteness check, exp with a shift and its sum, softmax.
#pragma once

#include <cstddef>
#include <limits>

#include "vec.hpp"

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

// Prefetch hints (nothing waits for them): the line holding p, or the lines of the n floats at
// p, brought into L1 (Locality 3) or L2 (2), for reading or (Write) for writing. Always inlined:
// GCC finds a function whose only effect is a prefetch "const" and deletes the calls to it.
#if defined(__GNUC__) || defined(__clang__)
#define RUVECTOR_PREFETCH_INLINE inline __attribute__((always_inline))
#else
#define RUVECTOR_PREFETCH_INLINE inline
#endif
template <int Locality = 3, int Write = 0>
RUVECTOR_PREFETCH_INLINE void prefetch_line(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, Write, Locality);
#else
  (void)p;
#endif
}
template <int Locality = 2, int Write = 0>
RUVECTOR_PREFETCH_INLINE void prefetch_floats(const float* p, std::size_t n) noexcept {
  const char* c = reinterpret_cast<const char*>(p);
  const char* end = reinterpret_cast<const char*>(p + n);
  for (; c < end; c += 64) prefetch_line<Locality, Write>(c);
}

float dot_kernel(const float* x, const float* y, std::size_t n) noexcept {
  reg a0 = Vec::zero(), a1 = Vec::zero();
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    a0 = Vec::fma(Vec::load(x + i), Vec::load(y + i), a0);
    a1 = Vec::fma(Vec::load(x + i + W), Vec::load(y + i + W), a1);
  }
  for (; i + W <= n; i += W) a0 = Vec::fma(Vec::load(x + i), Vec::load(y + i), a0);
  float s = Vec::hsum(Vec::add(a0, a1));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

void axpy_kernel(float a, const float* x, float* y, std::size_t n) noexcept {
  const reg va = Vec::broadcast(a);
  std::size_t i = 0;
  for (; i + W <= n; i += W) Vec::store(y + i, Vec::fma(va, Vec::load(x + i), Vec::load(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

void scale_kernel(float* x, std::size_t n, float a) noexcept {
  const reg va = Vec::broadcast(a);
  std::size_t i = 0;
  for (; i + W <= n; i += W) Vec::store(x + i, Vec::mul(Vec::load(x + i), va));
  for (; i < n; ++i) x[i] *= a;
}

// Four running maxima: one chain would wait on each max's latency (2-4 cycles) where the loads
// allow two a cycle; the row max of every softmax tile goes through here.
float max_kernel(const float* x, std::size_t n) noexcept {
  reg m0 = Vec::broadcast(kNegInf), m1 = m0, m2 = m0, m3 = m0;
  std::size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    m0 = Vec::max(m0, Vec::load(x + i));
    m1 = Vec::max(m1, Vec::load(x + i + W));
    m2 = Vec::max(m2, Vec::load(x + i + 2 * W));
    m3 = Vec::max(m3, Vec::load(x + i + 3 * W));
  }
  for (; i + W <= n; i += W) m0 = Vec::max(m0, Vec::load(x + i));
  float r = Vec::hmax(Vec::max(Vec::max(m0, m1), Vec::max(m2, m3)));
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

// max_kernel may skip NaN (x86's max returns its second operand when either is NaN, and
// which lane ends up holding the NaN depends on the row's length): a row it finds all -inf may
// still hold NaN scores, which must propagate (as in NumPy) rather than read as "nothing
// allowed".
bool has_nan(const float* x, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (x[i] != x[i]) return true;
  return false;
}

// x - x is 0 for every finite x and NaN for NaN and ±inf; the sums stay 0 or turn NaN.
bool all_finite_kernel(const float* x, std::size_t n) noexcept {
  reg a0 = Vec::zero(), a1 = Vec::zero();
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const reg u = Vec::load(x + i), v = Vec::load(x + i + W);
    a0 = Vec::add(a0, Vec::sub(u, u));
    a1 = Vec::add(a1, Vec::sub(v, v));
  }
  for (; i + W <= n; i += W) {
    const reg u = Vec::load(x + i);
    a0 = Vec::add(a0, Vec::sub(u, u));
  }
  float s = Vec::hsum(Vec::add(a0, a1));
  for (; i < n; ++i) s += x[i] - x[i];
  return s == 0.0f;
}

float scalar_exp(float x) noexcept {
#ifdef RUVECTOR_SCALAR
  return std::exp(x);
#else
  // Broadcast in registers, not through memory: a scalar store read back by a vector load
  // cannot be forwarded and stalls (~5% of a causal D=64 call, in perf's samples).
  alignas(64) float t[W];
  Vec::exp(Vec::broadcast(x)).store_aligned(t);
  return t[0];
#endif
}

// x[i] = exp(x[i] - shift), returning the sum. MaxShift: `shift` is the max of x (every
// x - shift <= 0, -inf or NaN: the softmax case), which takes the leaner exp.
template <bool MaxShift>
float exp_shift_sum(float* x, std::size_t n, float shift) noexcept {
  const auto vexp = [](reg v) noexcept { return MaxShift ? Vec::exp_nonpositive(v) : Vec::exp(v); };
  const reg vs = Vec::broadcast(shift);
  reg acc0 = Vec::zero(), acc1 = Vec::zero();
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const reg e0 = vexp(Vec::sub(Vec::load(x + i), vs));
    const reg e1 = vexp(Vec::sub(Vec::load(x + i + W), vs));
    Vec::store(x + i, e0);
    Vec::store(x + i + W, e1);
    acc0 = Vec::add(acc0, e0);
    acc1 = Vec::add(acc1, e1);
  }
  for (; i + W <= n; i += W) {
    const reg e = vexp(Vec::sub(Vec::load(x + i), vs));
    Vec::store(x + i, e);
    acc0 = Vec::add(acc0, e);
  }
  float s = Vec::hsum(Vec::add(acc0, acc1));
  for (; i < n; ++i) {
    x[i] = scalar_exp(x[i] - shift);
    s += x[i];
  }
  return s;
}

float exp_shift_sum_kernel(float* x, std::size_t n, float shift) noexcept {
  return exp_shift_sum<false>(x, n, shift);
}

float exp_max_shift_sum_kernel(float* x, std::size_t n, float max) noexcept {
  return exp_shift_sum<true>(x, n, max);
}

void softmax_kernel(float* x, std::size_t n) noexcept {
  if (n == 0) return;
  const float m = max_kernel(x, n);
  if (m == kNegInf) {  // nothing to attend to: zeros; NaN scores make the whole row NaN, as
    // they do through exp and the sum when the max is finite (and in NumPy/PyTorch)
    const float fill = has_nan(x, n) ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
    for (std::size_t i = 0; i < n; ++i) x[i] = fill;
    return;
  }
  const float s = exp_max_shift_sum_kernel(x, n, m);
  scale_kernel(x, n, 1.0f / s);
}

// The FMA units' peak: `rounds` steps of 12 independent multiply-add chains held in registers
// (more chains than an FMA's latency times its ports, so the units never wait). Returns the
// flops done. The chains start from *sink, a value the compiler cannot see: started from
// constants, GCC 12 proved the chain starting at 1 a fixed point (0.999999·1 + 1e-6 rounds to
// 1), dropped its FMAs and so reported 12/11 of the peak. A millionth of the chains' sum goes
// back to *sink: every chain is used, and a caller that passes the same sink again starts
// near 0 again (the sum itself would grow call after call, to infinity).
std::size_t fma_peak_kernel(std::size_t rounds, float* sink) noexcept {
  constexpr int kChains = 12;
  using reg = Vec::reg;
  const reg m = Vec::broadcast(0.999999f), c = Vec::broadcast(1e-6f);  // x ← 0.999999·x + 1e-6 stays bounded
  const float seed = *sink;
  reg acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = Vec::broadcast(seed + static_cast<float>(i));
  for (std::size_t r = 0; r < rounds; ++r)
    for (int i = 0; i < kChains; ++i) acc[i] = Vec::fma(acc[i], m, c);
  reg total = acc[0];
  for (int i = 1; i < kChains; ++i) total = Vec::add(total, acc[i]);
  *sink = Vec::hsum(total) * 1e-6f;
  return rounds * kChains * Vec::width * 2;
}

}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
