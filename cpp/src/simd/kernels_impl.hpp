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
  // exp(x) for float32, relative error ~2 ulp: x = n·ln2 + r, |r| <= ln2/2, e^r by a degree-6
  // polynomial, 2^n by exponent bits. Faster than a general libm exp; exp(-inf) = 0,
  // exp(+inf) = +inf, NaN stays NaN.
  static reg exp(reg x) noexcept {
    using ireg = xsimd::batch<std::int32_t, arch>;
    const reg hi(88.3762626647949f), lo(-87.3365447505531f);
    reg xc = xsimd::min(xsimd::max(x, lo), hi);
    reg n = xsimd::nearbyint(xc * reg(1.44269504088896341f));
    reg r = xsimd::fma(n, reg(-0.693359375f), xc);
    r = xsimd::fma(n, reg(2.12194440e-4f), r);
    reg p(1.9875691500e-4f);
    p = xsimd::fma(p, r, reg(1.3981999507e-3f));
    p = xsimd::fma(p, r, reg(8.3334519073e-3f));
    p = xsimd::fma(p, r, reg(4.1665795894e-2f));
    p = xsimd::fma(p, r, reg(1.6666665459e-1f));
    p = xsimd::fma(p, r, reg(5.0000001201e-1f));
    p = xsimd::fma(p * r, r, r) + reg(1.0f);
    ireg e = (xsimd::to_int(n) + ireg(127)) << 23;
#if XSIMD_VERSION_MAJOR >= 10
    reg y = p * xsimd::bitwise_cast<float>(e);
#else
    reg y = p * xsimd::bitwise_cast<reg>(e);  // xsimd 8.1 takes the batch type
#endif
    y = xsimd::select(x < lo, reg(0.0f), y);
    y = xsimd::select(x > hi, reg(std::numeric_limits<float>::infinity()), y);
    return xsimd::select(xsimd::isnan(x), x, y);
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

float exp_shift_sum_kernel(float* x, std::size_t n, float shift) noexcept {
  const reg vs = Vec::broadcast(shift);
  reg acc = Vec::zero();
  std::size_t i = 0;
  for (; i + W <= n; i += W) {
    reg e = Vec::exp(Vec::sub(Vec::load(x + i), vs));
    Vec::store(x + i, e);
    acc = Vec::add(acc, e);
  }
  float s = Vec::hsum(acc);
  for (; i < n; ++i) {
    x[i] = scalar_exp(x[i] - shift);
    s += x[i];
  }
  return s;
}

void softmax_kernel(float* x, std::size_t n) noexcept {
  if (n == 0) return;
  const float m = max_kernel(x, n);
  if (m == kNegInf) {  // nothing to attend to: zeros, never NaN
    std::memset(x, 0, n * sizeof(float));
    return;
  }
  const float s = exp_shift_sum_kernel(x, n, m);
  scale_kernel(x, n, 1.0f / s);
}

// ---------------------------------------------------------------------------------------------
// GEMM micro-kernel: C[m×n] (= or +=) A[m×kc] · Bp[kc×NR], m <= MR, n <= NR.
// A is read in place (row stride lda); B is packed in panels of NR columns, row after row.
// Rows past m re-read row m-1, so the hot loop has no bounds; their results are dropped.

template <bool Accumulate>
void micro_kernel(std::size_t kc, const float* a, std::size_t lda, const float* bp, float* c,
                  std::size_t ldc, std::size_t m, std::size_t n, const float* bias) noexcept {
  reg acc[MR][NV];
  for (std::size_t i = 0; i < MR; ++i)
    for (std::size_t j = 0; j < NV; ++j) acc[i][j] = Vec::zero();

  const float* rows[MR];
  for (std::size_t i = 0; i < MR; ++i) rows[i] = a + (i < m ? i : m - 1) * lda;

  for (std::size_t p = 0; p < kc; ++p) {
    reg b[NV];
    for (std::size_t j = 0; j < NV; ++j) b[j] = Vec::load(bp + p * NR + j * W);
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

// Packs columns [col0, col0 + NR) of op(B) (k rows) into bp[k][NR], zero-padding past n.
void pack_b_panel(const float* b, std::size_t ldb, bool transposed, std::size_t k, std::size_t n,
                  std::size_t col0, float* bp) noexcept {
  const std::size_t cols = std::min(NR, n - col0);
  if (!transposed) {
    for (std::size_t p = 0; p < k; ++p) {
      const float* src = b + p * ldb + col0;
      float* dst = bp + p * NR;
      std::size_t j = 0;
      for (; j < cols; ++j) dst[j] = src[j];
      for (; j < NR; ++j) dst[j] = 0.0f;
    }
  } else {
    // op(B)[p][col] = B[col][p]
    for (std::size_t p = 0; p < k; ++p) {
      float* dst = bp + p * NR;
      std::size_t j = 0;
      for (; j < cols; ++j) dst[j] = b[(col0 + j) * ldb + p];
      for (; j < NR; ++j) dst[j] = 0.0f;
    }
  }
}

template <class T>
struct Scratch {  // nothrow array: kernels report allocation failure, they never throw
  T* ptr = nullptr;
  explicit Scratch(std::size_t n) noexcept : ptr(n ? new (std::nothrow) T[n] : nullptr) {}
  ~Scratch() { delete[] ptr; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  bool ok(std::size_t n) const noexcept { return n == 0 || ptr != nullptr; }
};

struct GemmJob {
  const GemmParams* p;
  const float* packed;  // [panels][k][NR]
  std::size_t row_block;
};

void gemm_rows(void* job_ptr, std::size_t block) noexcept {
  const GemmJob& job = *static_cast<const GemmJob*>(job_ptr);
  const GemmParams& p = *job.p;
  const std::size_t r0 = block * job.row_block;
  const std::size_t r1 = std::min(p.m, r0 + job.row_block);
  const std::size_t panels = (p.n + NR - 1) / NR;
  for (std::size_t jp = 0; jp < panels; ++jp) {
    const std::size_t col0 = jp * NR;
    const std::size_t n = std::min(NR, p.n - col0);
    const float* bp = job.packed + jp * p.k * NR;
    const float* bias = p.bias ? p.bias + col0 : nullptr;
    for (std::size_t i = r0; i < r1; i += MR) {
      const std::size_t m = std::min(MR, r1 - i);
      float* c = p.c + i * p.ldc + col0;
      if (p.accumulate)
        micro_kernel<true>(p.k, p.a + i * p.lda, p.lda, bp, c, p.ldc, m, n, bias);
      else
        micro_kernel<false>(p.k, p.a + i * p.lda, p.lda, bp, c, p.ldc, m, n, bias);
    }
  }
}

bool gemm_kernel(const GemmParams& p, const Parallel& par) noexcept {
  if (p.m == 0 || p.n == 0) return true;
  if (p.k == 0) {  // C = bias (or unchanged when accumulating)
    for (std::size_t i = 0; i < p.m; ++i)
      for (std::size_t j = 0; j < p.n; ++j)
        if (!p.accumulate) p.c[i * p.ldc + j] = p.bias ? p.bias[j] : 0.0f;
        else if (p.bias) p.c[i * p.ldc + j] += p.bias[j];
    return true;
  }
  const std::size_t panels = (p.n + NR - 1) / NR;
  Scratch<float> packed(panels * p.k * NR);
  if (!packed.ok(panels * p.k * NR)) return false;
  for (std::size_t jp = 0; jp < panels; ++jp)
    pack_b_panel(p.b, p.ldb, p.b_transposed, p.k, p.n, jp * NR, packed.ptr + jp * p.k * NR);
  GemmJob job{&p, packed.ptr, MR * 8};
  const std::size_t blocks = (p.m + job.row_block - 1) / job.row_block;
  if (blocks == 1 || par.for_each == nullptr) {
    for (std::size_t b = 0; b < blocks; ++b) gemm_rows(&job, b);
  } else {
    par.for_each(par.context, blocks, &job, &gemm_rows);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Fused attention ("flash" style): blocks of queries against blocks of keys.

constexpr std::size_t kQueryBlock = MR * ((64 + MR - 1) / MR);  // ~64 query rows per task
constexpr std::size_t kKeyBlock = NR * ((256 + NR - 1) / NR);    // ~256 keys per tile

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

// Turns raw dot products row[0..n) (keys j0..j0+n) of query gi into scores: scale, additive
// mask, temporal decay, then -inf where attending is not allowed.
void score_row(const FlashParams& p, std::size_t gi, std::size_t j0, float* row, std::size_t n) noexcept {
  const reg vscale = Vec::broadcast(p.scale);
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
    reg s = Vec::mul(Vec::load(row + j), vscale);
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
    float s = row[j] * p.scale;
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

bool has_score_work(const FlashParams& p) noexcept {
  return p.scale != 1.0f || p.additive_mask || p.bool_mask || p.causal || p.times;
}

struct FlashJob {
  const FlashParams* p;
  const float* kp;  // packed keys: [ceil(lk/NR)][d][NR]
  const float* vp;  // packed values: [ceil(dv/NR)][lk][NR]
  std::size_t dv_pad;
  std::atomic<bool> failed;
};

// Rows of S = Q_blk·K_blkᵀ for keys [k0, k0+kb) into s (row stride lds).
void score_tile(const FlashParams& p, const float* kp, std::size_t q0, std::size_t qb, std::size_t k0,
                std::size_t kb, float* s, std::size_t lds) noexcept {
  for (std::size_t i0 = 0; i0 < qb; i0 += MR) {
    const std::size_t m = std::min(MR, qb - i0);
    for (std::size_t c0 = 0; c0 < kb; c0 += NR) {
      const std::size_t n = std::min(NR, kb - c0);
      micro_kernel<false>(p.d, p.q + (q0 + i0) * p.ldq, p.ldq, kp + ((k0 + c0) / NR) * p.d * NR,
                          s + i0 * lds + c0, lds, m, n, nullptr);
    }
  }
}

// out rows (stride ldo) (=|+=) P[qb × kb] (stride ldp) · V[k0 .. k0+kb)
template <bool Accumulate>
void value_tile(const FlashParams& p, const float* vp, std::size_t qb, std::size_t k0, std::size_t kb,
                const float* pm, std::size_t ldp, float* out, std::size_t ldo, std::size_t ncols) noexcept {
  const std::size_t panels = (ncols + NR - 1) / NR;
  for (std::size_t i0 = 0; i0 < qb; i0 += MR) {
    const std::size_t m = std::min(MR, qb - i0);
    for (std::size_t jp = 0; jp < panels; ++jp) {
      const std::size_t n = std::min(NR, ncols - jp * NR);
      micro_kernel<Accumulate>(kb, pm + i0 * ldp, ldp, vp + jp * p.lk * NR + k0 * NR, out + i0 * ldo + jp * NR,
                               ldo, m, n, nullptr);
    }
  }
}

// Keys a query block can see at all: with index-causal masking, none past its last row.
std::size_t key_end(const FlashParams& p, std::size_t q1) noexcept {
  return p.causal ? std::min(p.lk, q1) : p.lk;
}

// With weights: the block's full rows of S are the weights themselves; softmax in place, then
// one GEMM with V. No second pass over Q·Kᵀ.
void flash_block_weights(FlashJob& job, std::size_t q0, std::size_t q1) noexcept {
  const FlashParams& p = *job.p;
  const std::size_t qb = q1 - q0, kend = key_end(p, q1);
  float* w = p.weights + q0 * p.ldw;
  for (std::size_t k0 = 0; k0 < kend; k0 += kKeyBlock)
    score_tile(p, job.kp, q0, qb, k0, std::min(kKeyBlock, kend - k0), w + k0, p.ldw);
  const bool scoring = has_score_work(p);
  for (std::size_t r = 0; r < qb; ++r) {
    float* row = w + r * p.ldw;
    if (scoring) score_row(p, q0 + r, 0, row, kend);
    softmax_kernel(row, kend);
    if (kend < p.lk) std::memset(row + kend, 0, (p.lk - kend) * sizeof(float));
    if (p.dropout > 0.0f) dropout_row(p, q0 + r, 0, row, kend);
  }
  if (kend == 0) {
    for (std::size_t r = 0; r < qb; ++r) std::memset(p.out + (q0 + r) * p.ldo, 0, p.dv * sizeof(float));
    return;
  }
  value_tile<false>(p, job.vp, qb, 0, kend, w, p.ldw, p.out + q0 * p.ldo, p.ldo, p.dv);
}

// Streaming: online softmax over key tiles, O(block) memory.
void flash_block_stream(FlashJob& job, std::size_t q0, std::size_t q1) noexcept {
  const FlashParams& p = *job.p;
  const std::size_t qb = q1 - q0, kend = key_end(p, q1);
  const std::size_t lds = kKeyBlock, ldacc = job.dv_pad;
  Scratch<float> buf(qb * lds + qb * ldacc + 2 * qb);
  if (!buf.ok(1)) {
    job.failed.store(true, std::memory_order_relaxed);
    return;
  }
  float* s = buf.ptr;
  float* acc = s + qb * lds;
  float* mrow = acc + qb * ldacc;
  float* lrow = mrow + qb;
  std::memset(acc, 0, qb * ldacc * sizeof(float));
  for (std::size_t r = 0; r < qb; ++r) {
    mrow[r] = kNegInf;
    lrow[r] = 0.0f;
  }
  const bool scoring = has_score_work(p);
  for (std::size_t k0 = 0; k0 < kend; k0 += kKeyBlock) {
    const std::size_t kb = std::min(kKeyBlock, kend - k0);
    score_tile(p, job.kp, q0, qb, k0, kb, s, lds);
    for (std::size_t r = 0; r < qb; ++r) {
      float* row = s + r * lds;
      if (scoring) score_row(p, q0 + r, k0, row, kb);
      const float m_new = std::max(mrow[r], max_kernel(row, kb));
      if (m_new == kNegInf) {  // nothing allowed yet: contributes nothing
        std::memset(row, 0, kb * sizeof(float));
        continue;
      }
      const float alpha = mrow[r] == kNegInf ? 0.0f : scalar_exp(mrow[r] - m_new);
      const float sum = exp_shift_sum_kernel(row, kb, m_new);
      if (p.dropout > 0.0f) dropout_row(p, q0 + r, k0, row, kb);
      if (alpha != 1.0f) scale_kernel(acc + r * ldacc, ldacc, alpha);
      lrow[r] = lrow[r] * alpha + sum;
      mrow[r] = m_new;
    }
    value_tile<true>(p, job.vp, qb, k0, kb, s, lds, acc, ldacc, job.dv_pad);
  }
  for (std::size_t r = 0; r < qb; ++r) {
    float* dst = p.out + (q0 + r) * p.ldo;
    const float* src = acc + r * ldacc;
    if (lrow[r] > 0.0f) {
      const float inv = 1.0f / lrow[r];
      for (std::size_t c = 0; c < p.dv; ++c) dst[c] = src[c] * inv;
    } else if (lrow[r] != lrow[r]) {  // NaN scores propagate, as in NumPy/PyTorch
      for (std::size_t c = 0; c < p.dv; ++c) dst[c] = lrow[r];
    } else {
      std::memset(dst, 0, p.dv * sizeof(float));
    }
  }
}

void flash_task(void* job_ptr, std::size_t block) noexcept {
  FlashJob& job = *static_cast<FlashJob*>(job_ptr);
  const FlashParams& p = *job.p;
  const std::size_t q0 = block * kQueryBlock, q1 = std::min(p.lq, q0 + kQueryBlock);
  if (p.weights)
    flash_block_weights(job, q0, q1);
  else
    flash_block_stream(job, q0, q1);
}

bool flash_attention_kernel(const FlashParams& p, const Parallel& par) noexcept {
  if (p.lq == 0) return true;
  if (p.lk == 0) {
    for (std::size_t i = 0; i < p.lq; ++i) std::memset(p.out + i * p.ldo, 0, p.dv * sizeof(float));
    return true;
  }
  const std::size_t kpanels = (p.lk + NR - 1) / NR, vpanels = (p.dv + NR - 1) / NR;
  const std::size_t kp_size = kpanels * p.d * NR, vp_size = vpanels * p.lk * NR;
  Scratch<float> packed(kp_size + vp_size);
  if (!packed.ok(kp_size + vp_size)) return false;
  float* kp = packed.ptr;
  float* vp = packed.ptr + kp_size;
  // Keys as op(B) = Kᵀ (d × lk): panels of NR keys. Values as B (lk × dv): panels of NR columns.
  for (std::size_t jp = 0; jp < kpanels; ++jp) pack_b_panel(p.k, p.ldk, true, p.d, p.lk, jp * NR, kp + jp * p.d * NR);
  for (std::size_t jp = 0; jp < vpanels; ++jp) pack_b_panel(p.v, p.ldv, false, p.lk, p.dv, jp * NR, vp + jp * p.lk * NR);

  FlashJob job{&p, kp, vp, vpanels * NR, {false}};
  const std::size_t blocks = (p.lq + kQueryBlock - 1) / kQueryBlock;
  if (blocks == 1 || par.for_each == nullptr) {
    for (std::size_t b = 0; b < blocks; ++b) flash_task(&job, b);
  } else {
    par.for_each(par.context, blocks, &job, &flash_task);
  }
  return !job.failed.load();
}

}  // namespace

const KernelTable& table() noexcept {
  static const KernelTable t{
      RUVECTOR_ISA_NAME, &dot_kernel, &axpy_kernel, &max_kernel, &exp_shift_sum_kernel, &scale_kernel,
      &softmax_kernel,   &gemm_kernel, &flash_attention_kernel,
  };
  return t;
}

}  // namespace RUVECTOR_ISA_NS
}  // namespace ruvector::simd

#include "graph_kernels_impl.hpp"
