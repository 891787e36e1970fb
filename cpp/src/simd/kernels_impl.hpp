// The kernels, written once on a small vector abstraction `Vec` and compiled once per ISA.
//
// Each kernels_<isa>.cpp defines, before including this file:
//   RUVECTOR_ISA_NS       a namespace name unique to the ISA (every symbol here lives in it, so
//                         no AVX-512 copy of a shared inline function can be picked by the
//                         linker for another ISA's caller)
//   RUVECTOR_MR, RUVECTOR_NV  micro-kernel shape: MR rows × NV vectors of columns
//   RUVECTOR_SCALAR       for the portable version (plain loops, no intrinsics), or
//   RUVECTOR_XSIMD_ARCH   the xsimd architecture tag, with xsimd renamed into a per-ISA
//                         namespace by `#define xsimd ...` before <xsimd/xsimd.hpp>.
// Nothing here allocates through exceptions, touches Eigen or knows about Python.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>

#include "kernels.hpp"
#include "scratch.hpp"

#if defined(RUVECTOR_AMX)
#include <immintrin.h>

#include <chrono>

#include "ruvector/simd.hpp"
#endif

namespace ruvector::simd {
namespace RUVECTOR_ISA_NS {
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
  static reg max(reg a, reg b) noexcept { return a > b ? a : b; }
  static reg abs(reg a) noexcept { return std::fabs(a); }
  static reg exp(reg a) noexcept { return std::exp(a); }
  static reg exp_nonpositive(reg a) noexcept { return std::exp(a); }
  // a > b ? fill : value
  static reg where_gt(reg a, reg b, reg value, reg fill) noexcept { return a > b ? fill : value; }
  static float hsum(reg a) noexcept { return a; }
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
constexpr std::size_t MR = RUVECTOR_MR;
constexpr std::size_t NV = RUVECTOR_NV;
constexpr std::size_t NR = NV * W;

using reg = Vec::reg;

// ---------------------------------------------------------------------------------------------
// Vector primitives

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

float max_kernel(const float* x, std::size_t n) noexcept {
  reg m = Vec::broadcast(kNegInf);
  std::size_t i = 0;
  for (; i + W <= n; i += W) m = Vec::max(m, Vec::load(x + i));
  float r = Vec::hmax(m);
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

// max_kernel skips NaN (comparisons with NaN are false): a row it finds all -inf may still
// hold NaN scores, which must propagate (as in NumPy) rather than read as "nothing allowed".
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
  alignas(64) float t[W] = {};
  t[0] = x;
  Vec::exp(Vec::load(t)).store_aligned(t);
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
  if (m == kNegInf) {  // nothing to attend to: zeros, never NaN (unless NaN scores)
    const bool nan = has_nan(x, n);
    for (std::size_t i = 0; i < n; ++i) x[i] = nan && x[i] != kNegInf ? x[i] : 0.0f;
    return;
  }
  const float s = exp_max_shift_sum_kernel(x, n, m);
  scale_kernel(x, n, 1.0f / s);
}

// ---------------------------------------------------------------------------------------------
// GEMM micro-kernel: C[m×n] (= or +=) A[m×kc] · Bp[kc×NR], m <= MR, n <= NR.
// A is read in place (row stride lda); B is a panel of NR columns, rows ldb apart (NR when
// packed). Rows past m re-read row m-1, so the hot loop has no bounds; their results are dropped.

template <bool Accumulate>
void micro_kernel(std::size_t kc, const float* a, std::size_t lda, const float* bp, std::size_t ldb, float* c,
                  std::size_t ldc, std::size_t m, std::size_t n, const float* bias) noexcept {
  reg acc[MR][NV];
  for (std::size_t i = 0; i < MR; ++i)
    for (std::size_t j = 0; j < NV; ++j) acc[i][j] = Vec::zero();

  const float* rows[MR];
  for (std::size_t i = 0; i < MR; ++i) rows[i] = a + (i < m ? i : m - 1) * lda;

  for (std::size_t p = 0; p < kc; ++p) {
    reg b[NV];
    for (std::size_t j = 0; j < NV; ++j) b[j] = Vec::load(bp + p * ldb + j * W);
    for (std::size_t i = 0; i < MR; ++i) {
      const reg ai = Vec::broadcast(rows[i][p]);
      for (std::size_t j = 0; j < NV; ++j) acc[i][j] = Vec::fma(ai, b[j], acc[i][j]);
    }
  }

  if (m == MR && n == NR) {
    for (std::size_t i = 0; i < MR; ++i)
      for (std::size_t j = 0; j < NV; ++j) {
        float* dst = c + i * ldc + j * W;
        reg v = acc[i][j];
        if (Accumulate) v = Vec::add(v, Vec::load(dst));
        if (bias) v = Vec::add(v, Vec::load(bias + j * W));
        Vec::store(dst, v);
      }
    return;
  }
  alignas(64) float tile[MR * NR];
  for (std::size_t i = 0; i < MR; ++i)
    for (std::size_t j = 0; j < NV; ++j) Vec::store(tile + i * NR + j * W, acc[i][j]);
  for (std::size_t i = 0; i < m; ++i) {
    float* dst = c + i * ldc;
    for (std::size_t j = 0; j < n; ++j) {
      float v = tile[i * NR + j];
      if (Accumulate) v += dst[j];
      if (bias) v += bias[j];
      dst[j] = v;
    }
  }
}

// Packs columns [col0, col0 + NR) of op(B) (k rows) into bp[k][NR], zero-padding past n,
// multiplied by `scale` (the attention scale is folded into the packed keys, so scores come
// out of the GEMM already scaled and the softmax needs no multiply).
void pack_b_panel(const float* b, std::size_t ldb, bool transposed, std::size_t k, std::size_t n, std::size_t col0,
                  float* bp, float scale = 1.0f) noexcept {
  const std::size_t cols = std::min(NR, n - col0);
  if (!transposed) {
    for (std::size_t p = 0; p < k; ++p) {
      const float* src = b + p * ldb + col0;
      float* dst = bp + p * NR;
      std::size_t j = 0;
      for (; j < cols; ++j) dst[j] = src[j] * scale;
      for (; j < NR; ++j) dst[j] = 0.0f;
    }
  } else {
    // op(B)[p][col] = B[col][p]: read rows of B contiguously, 64 depths at a time (that
    // 64×NR part of the panel stays in L1 while its columns are written); measured ~4×
    // faster than reading B column-wise, which made packing the keys ~1/7 of a 256×256
    // attention call.
    constexpr std::size_t kDepthChunk = 64;
    for (std::size_t p0 = 0; p0 < k; p0 += kDepthChunk) {
      const std::size_t p1 = std::min(k, p0 + kDepthChunk);
      for (std::size_t j = 0; j < cols; ++j) {
        const float* src = b + (col0 + j) * ldb;
        for (std::size_t p = p0; p < p1; ++p) bp[p * NR + j] = src[p] * scale;
      }
      for (std::size_t j = cols; j < NR; ++j)
        for (std::size_t p = p0; p < p1; ++p) bp[p * NR + j] = 0.0f;
    }
  }
}

// Scratch<T> (scratch.hpp): per-thread reusable, nothrow scratch arrays.

constexpr std::size_t KC = 256;  // GEMM depth per pass: a KC×NR slice of B stays in L1

// C[m×n] (=|+=) A[m×k] · B (+ bias), B in NR-column panels of k rows, panel p at
// bp + p·panel_stride, its rows ldb apart (NR when packed; a row-major B whose width is a
// multiple of NR serves in place with ldb = its row stride and panel_stride = NR). Blocked
// over depth so every row group reuses a B slice from L1.
void gemm_packed(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* bp,
                 std::size_t panel_stride, std::size_t ldb, float* c, std::size_t ldc, bool accumulate,
                 const float* bias) noexcept {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        const float b = bias ? bias[j] : 0.0f;
        c[i * ldc + j] = accumulate ? c[i * ldc + j] + b : b;
      }
    return;
  }
  const std::size_t panels = (n + NR - 1) / NR;
  for (std::size_t k0 = 0; k0 < k; k0 += KC) {
    const std::size_t kc = std::min(KC, k - k0);
    const bool acc = accumulate || k0 > 0;
    const bool last = k0 + kc == k;
    for (std::size_t jp = 0; jp < panels; ++jp) {
      const float* b = bp + jp * panel_stride + k0 * ldb;
      const std::size_t nn = std::min(NR, n - jp * NR);
      const float* bias_p = (bias && last) ? bias + jp * NR : nullptr;
      for (std::size_t i = 0; i < m; i += MR) {
        const std::size_t mm = std::min(MR, m - i);
        float* cij = c + i * ldc + jp * NR;
        if (acc)
          micro_kernel<true>(kc, a + i * lda + k0, lda, b, ldb, cij, ldc, mm, nn, bias_p);
        else
          micro_kernel<false>(kc, a + i * lda + k0, lda, b, ldb, cij, ldc, mm, nn, bias_p);
      }
    }
  }
}

struct GemmJob {
  const GemmParams* p;
  const float* packed;  // [panels][k][NR]
  std::size_t row_block, row_blocks, panel_group;
};

void gemm_task(void* job_ptr, std::size_t task) noexcept {
  const GemmJob& job = *static_cast<const GemmJob*>(job_ptr);
  const GemmParams& p = *job.p;
  const std::size_t rb = task % job.row_blocks, cg = task / job.row_blocks;
  const std::size_t r0 = rb * job.row_block, r1 = std::min(p.m, r0 + job.row_block);
  const std::size_t c0 = cg * job.panel_group * NR, c1 = std::min(p.n, c0 + job.panel_group * NR);
  gemm_packed(r1 - r0, c1 - c0, p.k, p.a + r0 * p.lda, p.lda, job.packed + (c0 / NR) * p.k * NR, p.k * NR, NR,
              p.c + r0 * p.ldc + c0, p.ldc, p.accumulate, p.bias ? p.bias + c0 : nullptr);
}

// fn(job, b) for every block b, on the pool when `par` allows it.
void run_blocks(const Parallel& par, std::size_t blocks, void* job, void (*fn)(void*, std::size_t)) noexcept {
  if (blocks == 1 || par.for_each == nullptr) {
    for (std::size_t b = 0; b < blocks; ++b) fn(job, b);
  } else {
    par.for_each(par.context, blocks, job, fn);
  }
}

// fn(job, first + b) for the blocks b < blocks (a causal pass skips the query blocks before
// `first`, which see none of its keys).
void run_blocks_from(const Parallel& par, std::size_t first, std::size_t blocks, void* job,
                     void (*fn)(void*, std::size_t)) noexcept {
  struct Shifted {
    void* job;
    std::size_t first;
    void (*fn)(void*, std::size_t);
  } shifted{job, first, fn};
  run_blocks(par, blocks, &shifted, [](void* s, std::size_t b) noexcept {
    const auto* sh = static_cast<const Shifted*>(s);
    sh->fn(sh->job, sh->first + b);
  });
}

#if defined(RUVECTOR_AMX)
namespace amx {  // amx_impl.hpp
bool gemm_eligible(const GemmParams& p) noexcept;
bool gemm(const GemmParams& p, const Parallel& par) noexcept;
}  // namespace amx
#endif

bool gemm_kernel(const GemmParams& p, const Parallel& par) noexcept {
  if (p.c_finite) *p.c_finite = true;
  if (p.m == 0 || p.n == 0) return true;
#if defined(RUVECTOR_AMX)
  if (amx::gemm_eligible(p)) return amx::gemm(p, par);
#endif
  const std::size_t panels = (p.n + NR - 1) / NR;
  const std::size_t packed_size = panels * p.k * NR;
  Scratch<float> packed(packed_size);
  if (!packed.ok(packed_size)) return false;
  struct PanelsJob {
    const GemmParams* p;
    float* packed;
  } pack{&p, packed.ptr};
  auto pack_panel = [](void* job_ptr, std::size_t jp) noexcept {
    const auto& j = *static_cast<const PanelsJob*>(job_ptr);
    const GemmParams& g = *j.p;
    pack_b_panel(g.b, g.ldb, g.b_transposed, g.k, g.n, jp * NR, j.packed + jp * g.k * NR);
  };
  // A large B (a layer's weights: 3 MB for a 512×1536 in-projection) packs on every thread.
  run_blocks(packed_size >= (std::size_t{1} << 18) ? par : Parallel{}, panels, &pack, pack_panel);
  // Tasks: row blocks × groups of column panels, so both tall (many nodes) and wide
  // (few rows, many outputs) products spread over the pool.
  GemmJob job{&p, packed.ptr, MR * 8, 0, 8};
  job.row_blocks = (p.m + job.row_block - 1) / job.row_block;
  const std::size_t groups = (panels + job.panel_group - 1) / job.panel_group;
  const std::size_t tasks = job.row_blocks * groups;
  run_blocks(par, tasks, &job, &gemm_task);
  if (p.c_finite) {
    *p.c_finite = true;
    for (std::size_t r = 0; r < p.m && *p.c_finite; ++r) *p.c_finite = all_finite_kernel(p.c + r * p.ldc, p.n);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Fused attention ("flash" style): blocks of queries against tiles of keys.

constexpr std::size_t kQueryBlock = MR * ((64 + MR - 1) / MR);  // ~64 query rows per task
constexpr std::size_t kKeyBlock = NR * ((256 + NR - 1) / NR);   // ~256 keys per tile
constexpr std::size_t kPackBudget = 512 * 1024;                 // bytes of packed K+V at a time

inline std::uint64_t mix64(std::uint64_t x) noexcept {  // SplitMix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Dropout on one row of weights: the same (seed, stream, i, j) drops the same entry on every
// backend, so a seeded object replays its masks.
void dropout_row(const FlashParams& p, std::size_t gi, std::size_t j0, float* row, std::size_t n) noexcept {
  const std::uint64_t key = mix64(p.seed ^ mix64(p.stream));
  const std::uint32_t threshold = static_cast<std::uint32_t>(static_cast<double>(p.dropout) * 16777216.0);
  const float keep_scale = 1.0f / (1.0f - p.dropout);
  for (std::size_t j = 0; j < n; ++j) {
    const std::uint64_t h = mix64(key ^ (static_cast<std::uint64_t>(gi) * p.lk + j0 + j));
    row[j] = static_cast<std::uint32_t>(h >> 40) < threshold ? 0.0f : row[j] * keep_scale;
  }
}

// Turns scaled dot products row[0..n) (keys j0..j0+n) of query gi (the scale is folded into
// the packed keys) into scores: additive mask, temporal decay, then -inf where attending is
// not allowed.
void score_row(const FlashParams& p, std::size_t gi, std::size_t j0, float* row, std::size_t n) noexcept {
  const float* add = p.additive_mask ? p.additive_mask + gi * p.ldm + j0 : nullptr;
  const bool timed = p.times != nullptr;
  const float ti = timed ? p.times[gi] : 0.0f;
  const reg vti = Vec::broadcast(ti), vdecay = Vec::broadcast(-p.decay), vneg = Vec::broadcast(kNegInf),
            vwin = Vec::broadcast(p.window);
  const bool decay = timed && p.decay != 0.0f;
  const bool window = timed && p.window >= 0.0f;
  const bool self_here = p.always_self && gi >= j0 && gi < j0 + n;
  float self_score = 0.0f;

  std::size_t j = 0;
  for (; j + W <= n; j += W) {
    reg s = Vec::load(row + j);
    if (add) s = Vec::add(s, Vec::load(add + j));
    if (timed) {
      const reg tj = Vec::load(p.times + j0 + j);
      const reg dt = Vec::abs(Vec::sub(tj, vti));
      if (decay) s = Vec::fma(vdecay, dt, s);
      if (p.time_causal) s = Vec::where_gt(tj, vti, s, vneg);
      if (window) s = Vec::where_gt(dt, vwin, s, vneg);
    }
    Vec::store(row + j, s);
  }
  for (; j < n; ++j) {
    float s = row[j];
    if (add) s += add[j];
    if (timed) {
      const float tj = p.times[j0 + j];
      const float dt = std::fabs(tj - ti);
      if (decay) s += -p.decay * dt;
      if (p.time_causal && tj > ti) s = kNegInf;
      if (window && dt > p.window) s = kNegInf;
    }
    row[j] = s;
  }
  // Time masks never remove the self pair (t_i - t_i = 0); only the index masks below can.
  if (self_here) self_score = row[gi - j0];
  if (p.bool_mask) {
    const std::uint8_t* bm = p.bool_mask + gi * p.ldm + j0;
    for (std::size_t t = 0; t < n; ++t)
      if (!bm[t]) row[t] = kNegInf;
  }
  if (p.causal && j0 + n > gi + 1) {
    const std::size_t first = gi + 1 > j0 ? gi + 1 - j0 : 0;
    for (std::size_t t = first; t < n; ++t) row[t] = kNegInf;
  }
  if (self_here) row[gi - j0] = self_score;
}

// Keys a query block can see at all: with index-causal masking, none past its last row.
std::size_t key_end(const FlashParams& p, std::size_t q1) noexcept {
  return p.causal ? std::min(p.lk, q1) : p.lk;
}

// Values serve the P·V product in place when their rows are contiguous, a whole number of
// panels wide and at most 128 floats apart: a packed copy would only repeat them. Rows further
// apart (wide values, or one head's columns of a wide matrix) are packed: the product walks a
// panel down a tile's rows, and at strides of 1 KB and more those rows crowd into a few L1
// sets. (A cautious bound: D=512 in place measured the same as packed on this machine.)
bool values_in_place(const FlashParams& p) noexcept {
  return p.dv % NR == 0 && p.ldv == p.dv && p.dv <= 128;
}

struct FlashJob {
  const FlashParams* p;
  float* kp;        // packed keys of [k_begin, k_end): panels of NR keys, d rows each
  const float* vp;  // values of [k_begin, k_end) in panels of NR columns: packed, or V in place
  std::size_t k_begin, k_end, vp_stride;
  float* row_max;  // streaming state per query row (m, l); out holds the accumulator
  float* row_sum;
  std::atomic<bool> failed;
  std::size_t vp_ld = NR;                // row stride of the value panels
  std::size_t kp_head = 0, vp_head = 0;  // with weights: offset of head h's packing is h·kp_head
  float* vpack = nullptr;                // with weights: where values are packed (none in place)
};

// Head h of a multi-head call as a single-head problem (its columns, its weights block, its
// dropout stream).
FlashParams head_view(const FlashParams& p, std::size_t h) noexcept {
  FlashParams v = p;
  v.q += h * p.d;
  v.k += h * p.d;
  v.v += h * p.dv;
  v.out += h * p.dv;
  if (p.weights && !p.average_heads) v.weights += h * p.lq * p.ldw;
  v.stream = p.stream + h;
  v.heads = 1;
  v.average_heads = false;
  return v;
}

// Divides a finished output row by its softmax sum l: zeros when nothing was allowed (l = 0),
// NaN when NaN scores made l NaN (as in NumPy/PyTorch).
void normalise_row(float* dst, std::size_t n, float l) noexcept {
  if (l > 0.0f) {
    scale_kernel(dst, n, 1.0f / l);
  } else if (l != l) {
    for (std::size_t c = 0; c < n; ++c) dst[c] = l;
  } else {
    std::memset(dst, 0, n * sizeof(float));
  }
}

// Online-softmax update of query rows [q0, q0 + qb) for the key tile [k0, k0 + kb), whose
// scores are in s (row stride lds): the scores become unnormalised probabilities in place, each
// row's running max and sum move on, and its accumulator row (acc + r·ldacc, dv floats) is
// rescaled when the max grew. `first`: the accumulators hold nothing yet (the next product
// writes them).
// Where a row's probabilities go: by default back into the row (for the FMA products, and for
// dropout, which needs them there).
struct ProbsInPlace {
  float exp(std::size_t /*r*/, float* row, std::size_t n, float max) const noexcept {
    return exp_max_shift_sum_kernel(row, n, max);
  }
  void dead(std::size_t /*r*/, float* row, std::size_t n) const noexcept { std::memset(row, 0, n * sizeof(float)); }
};

template <class Probs = ProbsInPlace>
void softmax_tile(const FlashParams& p, FlashJob& job, std::size_t q0, std::size_t qb, std::size_t k0, std::size_t kb,
                  bool first, float* s, std::size_t lds, float* acc, std::size_t ldacc,
                  const Probs& probs = {}) noexcept {
  // Only the diagonal tiles need the causal mask; plain tiles fold the scale into exp.
  const bool full_scoring = p.additive_mask || p.bool_mask || p.times || (p.causal && k0 + kb > q0 + 1);
  for (std::size_t r = 0; r < qb; ++r) {
    float* row = s + r * lds;
    float& m = job.row_max[q0 + r];
    float& l = job.row_sum[q0 + r];
    float m_new, sum;
    if (full_scoring) {
      score_row(p, q0 + r, k0, row, kb);
      m_new = std::max(m, max_kernel(row, kb));
      if (m_new == kNegInf) {  // nothing allowed yet: contributes nothing
        if (has_nan(row, kb)) l = std::numeric_limits<float>::quiet_NaN();
        probs.dead(r, row, kb);
        continue;
      }
      sum = probs.exp(r, row, kb, m_new);
    } else {
      m_new = std::max(m, max_kernel(row, kb));
      sum = probs.exp(r, row, kb, m_new);
    }
    if (p.dropout > 0.0f) dropout_row(p, q0 + r, k0, row, kb);
    if (first) {
      l = sum;
    } else {
      const float alpha = m == kNegInf ? 0.0f : scalar_exp(m - m_new);
      if (alpha != 1.0f) scale_kernel(acc + r * ldacc, p.dv, alpha);
      l = l * alpha + sum;
    }
    m = m_new;
  }
}

// Online softmax over one query block and the keys [k_begin, k_end) of this pass; `out`
// rows accumulate unnormalised sums, rescaled whenever a row's running max grows. The first
// key tile writes `out` (no zeroing beforehand); the block's last tile divides by the sums
// while its rows are still in cache.
void stream_task(void* job_ptr, std::size_t block) noexcept {
  FlashJob& job = *static_cast<FlashJob*>(job_ptr);
  const FlashParams& p = *job.p;
  const std::size_t q0 = block * kQueryBlock, q1 = std::min(p.lq, q0 + kQueryBlock), qb = q1 - q0;
  const std::size_t kend = std::min(job.k_end, key_end(p, q1));
  if (kend <= job.k_begin) return;
  constexpr std::size_t lds = kKeyBlock;
  Scratch<float> buf(kQueryBlock * lds);
  if (!buf.ok(1)) {
    job.failed.store(true, std::memory_order_relaxed);
    return;
  }
  float* s = buf.ptr;
  float* out = p.out + q0 * p.ldo;
  for (std::size_t k0 = job.k_begin; k0 < kend; k0 += kKeyBlock) {
    const std::size_t kb = std::min(kKeyBlock, kend - k0), local = k0 - job.k_begin;
    const bool first = k0 == 0;  // out holds nothing yet: no rescaling, the product writes it
    gemm_packed(qb, kb, p.d, p.q + q0 * p.ldq, p.ldq, job.kp + (local / NR) * p.d * NR, p.d * NR, NR, s, lds, false,
                nullptr);
    softmax_tile(p, job, q0, qb, k0, kb, first, s, lds, out, p.ldo);
    gemm_packed(qb, p.dv, kb, s, lds, job.vp + local * job.vp_ld, job.vp_stride, job.vp_ld, out, p.ldo, !first,
                nullptr);
  }
  if (kend == key_end(p, q1))  // this block has seen all its keys
    for (std::size_t r = 0; r < qb; ++r) normalise_row(out + r * p.ldo, p.dv, job.row_sum[q0 + r]);
}

// With weights: the block's full rows of S (rows q0..q1 of one head, written to w with row
// stride ldw) are the weights themselves; softmax in place, then one GEMM with V. No second
// pass over Q·Kᵀ.
void weights_block(const FlashParams& p, const float* kp, const float* vp, std::size_t vp_stride, std::size_t vp_ld,
                   std::size_t q0, std::size_t q1, float* w, std::size_t ldw) noexcept {
  const std::size_t qb = q1 - q0;
  const std::size_t kend = key_end(p, q1);
  gemm_packed(qb, kend, p.d, p.q + q0 * p.ldq, p.ldq, kp, p.d * NR, NR, w, ldw, false, nullptr);
  const bool full_scoring = p.additive_mask || p.bool_mask || p.times || p.causal;
  // Rows with nothing to attend to: their values are zeros, set after the V product (0·inf in
  // V would otherwise give NaN there).
  bool dead[kQueryBlock] = {};
  for (std::size_t r = 0; r < qb; ++r) {
    float* row = w + r * ldw;
    if (kend < p.lk) std::memset(row + kend, 0, (p.lk - kend) * sizeof(float));
    if (kend == 0) continue;
    float m, sum;
    if (full_scoring) {
      score_row(p, q0 + r, 0, row, kend);
      m = max_kernel(row, kend);
      if (m == kNegInf) {  // nothing to attend to: zeros, never NaN (unless NaN scores)
        const bool nan = has_nan(row, kend);
        for (std::size_t j = 0; j < kend; ++j) row[j] = nan && row[j] != kNegInf ? row[j] : 0.0f;
        dead[r] = !nan;
        continue;
      }
      sum = exp_max_shift_sum_kernel(row, kend, m);
    } else {
      m = max_kernel(row, kend);
      sum = exp_max_shift_sum_kernel(row, kend, m);
    }
    scale_kernel(row, kend, 1.0f / sum);
    if (p.dropout > 0.0f) dropout_row(p, q0 + r, 0, row, kend);
  }
  gemm_packed(qb, p.dv, kend, w, ldw, vp, vp_stride, vp_ld, p.out + q0 * p.ldo, p.ldo, false, nullptr);
  for (std::size_t r = 0; r < qb; ++r)
    if (dead[r] || kend == 0) std::memset(p.out + (q0 + r) * p.ldo, 0, p.dv * sizeof(float));
}

// Running mean over heads of one block of weights: dst = src for the first head, += src for
// the next ones, and the sum times 1/heads after the last.
void accumulate_head_mean(float* dst, std::size_t ldd, const float* src, std::size_t lds, std::size_t rows,
                          std::size_t n, std::size_t h, std::size_t heads) noexcept {
  const bool last = h + 1 == heads;
  const float inv = 1.0f / static_cast<float>(heads);
  const reg vinv = Vec::broadcast(inv);
  for (std::size_t r = 0; r < rows; ++r) {
    float* d = dst + r * ldd;
    const float* s = src + r * lds;
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
      reg v = Vec::load(s + j);
      if (h > 0) v = Vec::add(v, Vec::load(d + j));
      if (last) v = Vec::mul(v, vinv);
      Vec::store(d + j, v);
    }
    for (; j < n; ++j) {
      float v = s[j];
      if (h > 0) v += d[j];
      d[j] = last ? v * inv : v;
    }
  }
}

// One query block through every head. Averaged weights: each head's probabilities go to a
// block-sized scratch and are folded into the mean at once, so the [heads, lq, lk] per-head
// weights never exist and the block's mean rows stay in cache across heads.
void weights_task(void* job_ptr, std::size_t block) noexcept {
  FlashJob& job = *static_cast<FlashJob*>(job_ptr);
  const FlashParams& p = *job.p;
  const std::size_t q0 = block * kQueryBlock, q1 = std::min(p.lq, q0 + kQueryBlock), qb = q1 - q0;
  const std::size_t ld_probs = (p.lk + 15) / 16 * 16;  // rows start on cache lines
  const std::size_t probs_size = p.average_heads ? qb * ld_probs : 0;
  Scratch<float> probs(probs_size);
  if (!probs.ok(probs_size)) {
    job.failed.store(true, std::memory_order_relaxed);
    return;
  }
  for (std::size_t h = 0; h < p.heads; ++h) {
    const FlashParams ph = head_view(p, h);
    const float* kp = job.kp + h * job.kp_head;
    const float* vp = job.vp + h * job.vp_head;
    if (!p.average_heads) {
      weights_block(ph, kp, vp, job.vp_stride, job.vp_ld, q0, q1, ph.weights + q0 * p.ldw, p.ldw);
      continue;
    }
    weights_block(ph, kp, vp, job.vp_stride, job.vp_ld, q0, q1, probs.ptr, ld_probs);
    accumulate_head_mean(p.weights + q0 * p.ldw, p.ldw, probs.ptr, ld_probs, qb, p.lk, h, p.heads);
  }
}

struct PackJob {
  const FlashParams* p;
  std::size_t k_begin, len, kpanels;
  float* kp;
  float* vp;
};

// Panel t of a key range: keys as op(B) = Kᵀ (d × len, panels of NR keys) for t < kpanels,
// then values as B (len × dv, panels of NR columns).
void pack_panel_task(void* job_ptr, std::size_t t) noexcept {
  const PackJob& j = *static_cast<const PackJob*>(job_ptr);
  const FlashParams& p = *j.p;
  if (t < j.kpanels) {
    pack_b_panel(p.k + j.k_begin * p.ldk, p.ldk, true, p.d, j.len, t * NR, j.kp + t * p.d * NR, p.scale);
  } else {
    const std::size_t jp = t - j.kpanels;
    pack_b_panel(p.v + j.k_begin * p.ldv, p.ldv, false, j.len, p.dv, jp * NR, j.vp + jp * j.len * NR);
  }
}

// Packs keys [k_begin, k_end) and (unless vp is null: values used in place) their values, a
// panel per task when `par` may split (a single long attention: 4 MB of K and V at L=1000,
// D=512 took ~1 ms on one thread while the other waited).
void pack_keys_values(const FlashParams& p, std::size_t k_begin, std::size_t k_end, float* kp, float* vp,
                      const Parallel& par = {}) noexcept {
  const std::size_t len = k_end - k_begin;
  const std::size_t kpanels = (len + NR - 1) / NR, vpanels = vp ? (p.dv + NR - 1) / NR : 0;
  PackJob job{&p, k_begin, len, kpanels, kp, vp};
  run_blocks(kpanels + vpanels >= 8 ? par : Parallel{}, kpanels + vpanels, &job, &pack_panel_task);
}

void pack_head_task(void* job_ptr, std::size_t h) noexcept {
  FlashJob& job = *static_cast<FlashJob*>(job_ptr);
  pack_keys_values(head_view(*job.p, h), 0, job.p->lk, job.kp + h * job.kp_head,
                   job.vpack ? job.vpack + h * job.vp_head : nullptr);
}

// Asks for rows [0, rows) of a row-major matrix (n floats each, ld apart) to be brought into
// L2 (a hint; nothing waits for it).
void prefetch_rows(const float* x, std::size_t rows, std::size_t n, std::size_t ld) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  for (std::size_t i = 0; i < rows; ++i) {
    const char* row = reinterpret_cast<const char*>(x + i * ld);
    for (std::size_t b = 0; b < n * sizeof(float); b += 64) __builtin_prefetch(row + b, 0, 2);
  }
#else
  (void)x, (void)rows, (void)n, (void)ld;
#endif
}

#if defined(RUVECTOR_AMX)
#include "amx_impl.hpp"
#endif

// Without weights, one head: passes over key ranges small enough that their packed copy stays
// ~kPackBudget, so memory is O((Lq + Lk)·D) at most and O(Lq) beyond the output in practice.
bool stream_attention(const FlashParams& p, const Parallel& par) noexcept {
#if defined(RUVECTOR_AMX)
  if (amx::eligible(p)) {
    const amx::Outcome outcome = amx::stream_attention(p, par);
    if (outcome != amx::Outcome::fma) return outcome == amx::Outcome::done;
  }
#endif
  const std::size_t blocks = (p.lq + kQueryBlock - 1) / kQueryBlock;
  const bool in_place = values_in_place(p);
  const std::size_t vpanels = in_place ? 0 : (p.dv + NR - 1) / NR;
  const std::size_t per_tile = kKeyBlock * (p.d + vpanels * NR) * sizeof(float);
  const std::size_t span = kKeyBlock * std::max<std::size_t>(1, kPackBudget / std::max<std::size_t>(per_tile, 1));
  const std::size_t first_len = std::min(span, p.lk);
  const std::size_t kp_size = ((first_len + NR - 1) / NR) * p.d * NR, vp_size = vpanels * first_len * NR;
  Scratch<float> packed(kp_size + vp_size + 2 * p.lq);
  if (!packed.ok(1)) return false;
  float* vpack = packed.ptr + kp_size;
  float* row_max = vpack + vp_size;
  float* row_sum = row_max + p.lq;
  for (std::size_t i = 0; i < p.lq; ++i) {
    row_max[i] = kNegInf;
    row_sum[i] = 0.0f;
  }
  FlashJob job{&p, packed.ptr, vpack, 0, 0, 0, row_max, row_sum, {false}};
  job.vp_ld = in_place ? p.ldv : NR;
  const std::size_t visible = key_end(p, p.lq);  // causal: keys past the last query are unseen
  if (visible == 0)                              // no keys: every row attends to nothing
    for (std::size_t i = 0; i < p.lq; ++i) std::memset(p.out + i * p.ldo, 0, p.dv * sizeof(float));
  for (std::size_t k_begin = 0; k_begin < visible; k_begin += span) {
    const std::size_t k_end = std::min(visible, k_begin + span);
    // Inputs fresh from memory (a batch item): the queries and values load while keys pack.
    if (k_begin == 0 && (p.lq * p.d + (k_end - k_begin) * p.dv) * sizeof(float) <= kPackBudget) {
      prefetch_rows(p.q, p.lq, p.d, p.ldq);
      if (in_place) prefetch_rows(p.v, k_end, p.dv, p.ldv);
    }
    pack_keys_values(p, k_begin, k_end, packed.ptr, in_place ? nullptr : vpack, par);
    job.k_begin = k_begin;
    job.k_end = k_end;
    job.vp = in_place ? p.v + k_begin * p.ldv : vpack;
    job.vp_stride = in_place ? NR : (k_end - k_begin) * NR;
    // causal: query blocks that end before this key range see none of it
    const std::size_t first_block = p.causal ? std::min(blocks, k_begin / kQueryBlock) : 0;
    run_blocks_from(par, first_block, blocks - first_block, &job, &stream_task);
    if (job.failed.load()) return false;
  }
  return true;
}

bool flash_attention_kernel(const FlashParams& p, const Parallel& par) noexcept {
  if (p.lq == 0 || p.heads == 0) return true;
  const std::size_t blocks = (p.lq + kQueryBlock - 1) / kQueryBlock;
  const std::size_t vpanels = (p.dv + NR - 1) / NR;
  if (p.weights) {  // the weights dominate memory: pack all keys of every head once
    const bool in_place = p.heads == 1 && values_in_place(p);
    const std::size_t kp_size = ((p.lk + NR - 1) / NR) * p.d * NR, vp_size = in_place ? 0 : vpanels * p.lk * NR;
    Scratch<float> packed(p.heads * (kp_size + vp_size));
    if (!packed.ok(p.heads * (kp_size + vp_size))) return false;
    float* vpack = packed.ptr + p.heads * kp_size;
    FlashJob job{&p, packed.ptr, in_place ? p.v : vpack, 0, p.lk, in_place ? NR : p.lk * NR, nullptr, nullptr, {false}};
    job.vp_ld = in_place ? p.ldv : NR;
    job.vpack = in_place ? nullptr : vpack;
    job.kp_head = kp_size;
    job.vp_head = vp_size;
    if (p.heads == 1)
      pack_keys_values(p, 0, p.lk, job.kp, job.vpack, par);
    else
      run_blocks(par, p.heads, &job, &pack_head_task);
    run_blocks(par, blocks, &job, &weights_task);
    return !job.failed.load();
  }
  if (p.heads == 1) return stream_attention(p, par);
  // Heads in parallel, each streaming with its keys and values packed in L2; a head's own
  // query blocks still spread over workers left idle (fewer heads than threads).
  struct HeadsJob {
    const FlashParams* p;
    const Parallel* par;
    std::atomic<bool> failed;
  } job{&p, &par, {false}};
  auto stream_head = [](void* job_ptr, std::size_t h) noexcept {
    auto& j = *static_cast<HeadsJob*>(job_ptr);
    if (!stream_attention(head_view(*j.p, h), *j.par)) j.failed.store(true, std::memory_order_relaxed);
  };
  run_blocks(par, p.heads, &job, stream_head);
  return !job.failed.load();
}

}  // namespace

const KernelTable& table() noexcept {
  static const KernelTable t{
      RUVECTOR_ISA_NAME,       &dot_kernel,        &axpy_kernel,    &max_kernel,
      &exp_shift_sum_kernel,   &scale_kernel,      &softmax_kernel, &gemm_kernel,
      &flash_attention_kernel, &all_finite_kernel,
  };
  return t;
}

}  // namespace RUVECTOR_ISA_NS
}  // namespace ruvector::simd

#include "graph_kernels_impl.hpp"
