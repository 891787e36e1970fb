#include "attention_core.hpp"

#include <atomic>
#include <functional>
#include <limits>
#include <new>
#include <string>

#include "messages.hpp"
#include "ruvector/errors.hpp"
#include "thread_pool_internal.hpp"

namespace ruvector::detail {
namespace {

// Below this many flops a call runs on the calling thread: handing work to the pool costs
// more than it saves (tiny calls are latency-bound).
constexpr double kParallelFlops = 8.0e6;  // L=128, D=64 self-attention (4.2e6) stays on one thread

// The kernels are noexcept, so a pool that cannot take the work (no memory for its bookkeeping)
// must not end the process. parallel_for then either has run every index (a helper could not
// be queued: the caller did the rest) or, failing before it started, none: those run here.
void pool_for_each(void*, std::size_t n, void* job, void (*fn)(void*, std::size_t)) noexcept {
  std::atomic<std::size_t> ran{0};
  try {
    parallel_for(n, [&](std::size_t i) {
      fn(job, i);
      ran.fetch_add(1, std::memory_order_relaxed);
    });
  } catch (...) {
    if (ran.load() == 0)
      for (std::size_t i = 0; i < n; ++i) fn(job, i);
  }
}

simd::Parallel parallel_if(double flops) {
  simd::Parallel par;
  if (flops >= kParallelFlops) par.for_each = &pool_for_each;
  return par;
}

}  // namespace

const char* run_flash(const simd::FlashParams& p) {
  const double flops = 2.0 * static_cast<double>(p.heads.count) * static_cast<double>(p.lq) *
                       static_cast<double>(p.lk) * static_cast<double>(p.d + p.dv);
  const simd::KernelTable& kernels = simd::active_kernels();
  if (!kernels.flash_attention(p, parallel_if(flops))) throw std::bad_alloc();
  return kernels.name;
}

void run_gemm(const simd::GemmParams& p) {
  const double flops = 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
  if (!simd::active_kernels().gemm(p, parallel_if(flops))) throw std::bad_alloc();
}

simd::FlashMask flash_mask(const AttentionMask& mask, bool causal) {
  simd::FlashMask m;
  m.boolean = mask.boolean;
  m.additive = mask.additive;
  m.ld = static_cast<std::size_t>(mask.stride);
  m.causal = causal;
  return m;
}

simd::FlashDropout flash_dropout(const AttentionConfig& config, std::uint64_t stream) {
  simd::FlashDropout d;
  d.rate = static_cast<float>(config.dropout);
  d.seed = config.seed;
  d.stream = stream;
  return d;
}

void gemm(const float* a, std::size_t lda, const float* b, std::size_t ldb, bool b_transposed, float* c,
          std::size_t ldc, std::size_t m, std::size_t n, std::size_t k, const float* bias) {
  simd::GemmParams g;
  g.a = a;
  g.lda = lda;
  g.b = b;
  g.ldb = ldb;
  g.b_transposed = b_transposed;
  g.c = c;
  g.ldc = ldc;
  g.m = m;
  g.n = n;
  g.k = k;
  g.bias = bias;
  run_gemm(g);
}

void check_value_rows(std::int64_t keys, std::int64_t value_rows) {
  if (value_rows != keys)
    throw DimensionMismatch("value has " + std::to_string(value_rows) + " rows, key has " + std::to_string(keys) +
                                ": give one value row per key",
                            keys, value_rows);
}

void check_mask_shape(const AttentionMask& mask, std::int64_t lq, std::int64_t lk, const char* note) {
  using Kind = AttentionMask::Kind;
  if (mask.kind != Kind::None && mask.kind != Kind::Boolean && mask.kind != Kind::Additive)
    throw InvalidInput("mask has an unknown kind " + std::to_string(static_cast<int>(mask.kind)) +
                       ": make it with AttentionMask::from_bool, from_additive or none()");
  if (mask.kind == Kind::None) return;
  const bool has_data = mask.kind == Kind::Boolean ? mask.boolean != nullptr : mask.additive != nullptr;
  if (!has_data && mask.rows > 0 && mask.cols > 0)
    throw InvalidInput(std::string("a ") + (mask.kind == Kind::Boolean ? "boolean" : "additive") +
                       " mask needs its data pointer (got a null one): make it with AttentionMask::from_bool / "
                       "from_additive from a matrix or buffer that outlives the call");
  if (mask.rows > 1 && mask.stride < mask.cols)
    throw InvalidInput("mask stride " + std::to_string(mask.stride) + " is smaller than its " +
                       std::to_string(mask.cols) + " columns: pass the number of elements between rows");
  // Element counts for the error, saturated: shapes of 2^33 x 2^33 overflow int64 (UBSan).
  const auto count = [](Index a, Index b) {
    constexpr Index kMax = std::numeric_limits<Index>::max();
    return a <= 0 || b <= 0 ? Index{0} : a > kMax / b ? kMax : a * b;
  };
  if (mask.rows != lq || mask.cols != lk)
    throw DimensionMismatch(
        "mask has shape " + shape_str({mask.rows, mask.cols}) + ", expected [Lq, Lk] = " + shape_str({lq, lk}) + note,
        count(lq, lk), count(mask.rows, mask.cols));
}

}  // namespace ruvector::detail
