// The kernel table: raw-pointer, noexcept kernels compiled once per ISA (kernels_<isa>.cpp,
// all from the headers isa_table.hpp gathers). Front ends validate everything first; kernels
// know nothing of Python, Eigen or errors.
#pragma once

#include <cstddef>
#include <cstdint>

#include "graph_kernels.hpp"
#include "ruvector/simd.hpp"

namespace ruvector::simd {

// How a kernel spreads independent tasks over the pool without knowing about it.
struct Parallel {
  void* context = nullptr;
  // Calls fn(job, i) for i in [0, n), possibly concurrently, and returns when all are done.
  void (*for_each)(void* context, std::size_t n, void* job, void (*fn)(void* job, std::size_t i)) = nullptr;
};

// The fused attention kernel's operands: q [lq, d], k [lk, d], v [lk, dv] into out [lq, dv],
// each row-major with its row stride, and optionally the weights [lq, lk].
struct FlashOperands {
  const float* q = nullptr;
  std::size_t ldq = 0;
  const float* k = nullptr;
  std::size_t ldk = 0;
  const float* v = nullptr;
  std::size_t ldv = 0;
  float* out = nullptr;
  std::size_t ldo = 0;
  float* weights = nullptr;
  std::size_t ldw = 0;  // null: streaming, no Lq×Lk matrix
  std::size_t lq = 0, lk = 0, d = 0, dv = 0;
  float scale = 1.0f;
};

// Which pairs may attend, and the additive mask. Every mask is [lq, lk] with row stride ld.
struct FlashMask {
  const std::uint8_t* boolean = nullptr;  // nonzero = may attend
  const float* additive = nullptr;
  std::size_t ld = 0;
  bool causal = false;  // keep j <= i (top-left aligned)
};

// Temporal decay and time masks (TemporalAttention).
struct FlashTime {
  const float* stamps = nullptr;  // [lq] == [lk]: self-attention only
  float decay = 0.0f;
  bool causal = false;       // keep t_j <= t_i
  float window = -1.0f;      // keep |t_i - t_j| <= window when >= 0
  bool always_self = false;  // i always attends to itself
};

// Dropout on attention weights (training only): drop with probability `rate`, rescale by
// 1/(1-rate).
struct FlashDropout {
  float rate = 0.0f;
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;  // per call: (object id, call counter) mixed; head h uses stream + h
};

// Several heads in one call (MultiHeadAttention): head h reads columns [h·d, (h+1)·d) of q
// and k and [h·dv, (h+1)·dv) of v, and writes those columns of out; all heads share the
// masks. Weights are per-head blocks [count, lq, lk] (head h at weights + h·lq·ldw) or, with
// `average`, their mean [lq, lk], accumulated per query block while it is in cache.
struct FlashHeads {
  std::size_t count = 1;
  bool average = false;
};

// Everything the fused attention kernel needs: the operands, and the options a front end
// turns on by group. Scores are
//   s_ij = scale * q_i·k_j + additive_ij − decay * |t_i − t_j|
// restricted to allowed pairs (bool mask, causal by index, causal by time, window), then
// softmax over j and out_i = Σ_j p_ij v_j.
struct FlashParams : FlashOperands {
  FlashMask mask;
  FlashTime time;
  FlashDropout dropout;
  FlashHeads heads;
  // The caller knows q, k and v hold no NaN/Inf (the AMX path then skips its own check).
  bool inputs_finite = false;

  // Dense row-major q [lq, d], k [lk, d], v [lk, dv] into out [lq, dv]: no weights, no mask
  // (the kernel tests and benchmarks).
  static FlashParams dense(const float* q, const float* k, const float* v, float* out, std::size_t lq, std::size_t lk,
                           std::size_t d, std::size_t dv, float scale) noexcept {
    FlashParams p;
    p.q = q;
    p.ldq = d;
    p.k = k;
    p.ldk = d;
    p.v = v;
    p.ldv = dv;
    p.out = out;
    p.ldo = dv;
    p.lq = lq;
    p.lk = lk;
    p.d = d;
    p.dv = dv;
    p.scale = scale;
    return p;
  }
};

struct GemmParams {
  // C[m,n] = A[m,k] · op(B) (+ C when accumulate) (+ bias[n] when bias).
  // op(B) = B [k,n] row-major with ldb, or Bᵀ where B is [n,k] row-major (b_transposed).
  const float* a = nullptr;
  std::size_t lda = 0;
  const float* b = nullptr;
  std::size_t ldb = 0;
  bool b_transposed = false;
  float* c = nullptr;
  std::size_t ldc = 0;
  const float* bias = nullptr;
  std::size_t m = 0, n = 0, k = 0;
  bool accumulate = false;
  // The caller knows B holds no NaN/Inf (the AMX path then skips its own check of B).
  bool b_finite = false;
  // When set, the kernel stores whether every element of C it wrote is finite.
  bool* c_finite = nullptr;
};

struct KernelTable {
  const char* name;
  float (*dot)(const float* x, const float* y, std::size_t n) noexcept;
  void (*axpy)(float a, const float* x, float* y, std::size_t n) noexcept;
  float (*max)(const float* x, std::size_t n) noexcept;
  // x[i] = exp(x[i] - shift); returns the sum.
  float (*exp_shift_sum)(float* x, std::size_t n, float shift) noexcept;
  void (*scale)(float* x, std::size_t n, float a) noexcept;
  // Numerically safe softmax in place; a row of -inf becomes zeros.
  void (*softmax)(float* x, std::size_t n) noexcept;
  // Returns false when scratch memory could not be allocated.
  bool (*gemm)(const GemmParams& p, const Parallel& par) noexcept;
  bool (*flash_attention)(const FlashParams& p, const Parallel& par) noexcept;
  // Whether x holds no NaN and no ±inf.
  bool (*all_finite)(const float* x, std::size_t n) noexcept;
  // The FMA units' peak on registers (fma_peak_gflops): the chains start from *sink (read,
  // then overwritten with a millionth of their sum); returns the flops done.
  std::size_t (*fma_peak)(std::size_t rounds, float* sink) noexcept;
  // The GEMM micro-kernel on operands in L1 (microkernel_gflops): returns the flops done.
  std::size_t (*microkernel_peak)(std::size_t rounds, float* sink) noexcept;
  GraphKernels graph;
};

// Each ISA's table, filled in isa_table.hpp; defined in kernels_<isa>.cpp when that ISA is
// built (built_kernels looks them up).
const KernelTable& kernels_scalar() noexcept;
const KernelTable& kernels_avx2() noexcept;
const KernelTable& kernels_avx512() noexcept;
const KernelTable& kernels_neon() noexcept;
// amx_tile_gflops (ruvector/simd.hpp); defined in AMX builds of kernels_avx512.cpp.
double avx512_tile_gflops(double seconds) noexcept;

// The table of backend b, or null when this build lacks it (whatever the CPU supports).
const KernelTable* built_kernels(Backend b) noexcept;
// The table of the backend in use (simd_dispatch.cpp).
const KernelTable& active_kernels() noexcept;

}  // namespace ruvector::simd
