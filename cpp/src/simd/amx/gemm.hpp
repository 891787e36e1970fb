// GEMM on Intel AMX tiles (a layer's projections): C = A·op(B) + bias with B's planes packed
// once and row blocks of A on the pool. Used by gemm_kernel (simd/gemm.hpp) when AMX is on and
// the product is large enough; see amx/tiles.hpp for the accuracy and the layouts.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ruvector/simd.hpp"
#include "simd/amx/tiles.hpp"
#include "simd/kernels.hpp"
#include "simd/primitives.hpp"
#include "simd/run_blocks.hpp"
#include "simd/scratch.hpp"
#include "simd/vec.hpp"

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

namespace amx {

struct GemmJob {
  const GemmParams* p;
  const std::uint16_t* b;  // B planes: np/16 column groups × kp/32 depth chunks
  std::size_t np, kp;
  std::atomic<bool> failed{false};
  std::atomic<bool> nonfinite{false};  // some element of C is NaN or ±inf
};

void gemm_task(void* job_ptr, std::size_t block) noexcept {
  GemmJob& job = *static_cast<GemmJob*>(job_ptr);
  const GemmParams& p = *job.p;
  const std::size_t r0 = block * kRows, rows = std::min(kRows, p.m - r0), mp = padded(rows);
  const std::size_t a_units = 3 * mp * job.kp, floats = a_units / 2 + mp * job.np;
  Scratch<float> buf(floats);
  if (!buf.ok(floats)) {
    job.failed.store(true, std::memory_order_relaxed);
    return;
  }
  auto* a = reinterpret_cast<std::uint16_t*>(buf.ptr);
  float* acc = buf.ptr + a_units / 2;
  pack_a(p.a + r0 * p.lda, p.lda, rows, p.k, mp, job.kp / 32, a);
  {
    TileScope tiles;
    product(a, mp, job.kp / 32, job.b, job.np / 16, job.kp / 32, 0, 0, job.np, acc, job.np, false);
  }
  bool finite = true;
  for (std::size_t r = 0; r < rows; ++r) {
    float* c = p.c + (r0 + r) * p.ldc;
    const float* src = acc + r * job.np;
    if (p.bias == nullptr) {
      std::memcpy(c, src, p.n * sizeof(float));
    } else {
      std::size_t j = 0;
      for (; j + W <= p.n; j += W) Vec::store(c + j, Vec::add(Vec::load(src + j), Vec::load(p.bias + j)));
      for (; j < p.n; ++j) c[j] = src[j] + p.bias[j];
    }
    if (p.c_finite && finite) finite = all_finite_kernel(c, p.n);  // the row is in L1
  }
  if (!finite) job.nonfinite.store(true, std::memory_order_relaxed);
}

// Whether this product takes the tiles: large enough to pay for the planes, finite inputs,
// planes of B at most 16 MB.
bool gemm_eligible(const GemmParams& p) noexcept {
  if (!ruvector::amx_enabled() || p.accumulate || p.m == 0 || p.n == 0 || p.k == 0) return false;
  if (static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k) < 1 << 21) return false;
  if (6.0 * static_cast<double>(padded(p.n)) * static_cast<double>(padded(p.k)) > 16.0 * (1 << 20)) return false;
  return finite_rows(p.a, p.m, p.k, p.lda) &&
         (p.b_finite || (p.b_transposed ? finite_rows(p.b, p.n, p.k, p.ldb) : finite_rows(p.b, p.k, p.n, p.ldb)));
}

bool gemm(const GemmParams& p, const Parallel& par) noexcept {
  const std::size_t np = padded(p.n), kp = padded(p.k), groups = np / 16, chunks = kp / 32;
  const std::size_t floats = 3 * np * kp / 2;
  Scratch<float> planes(floats);
  if (!planes.ok(floats)) return false;
  auto* b = reinterpret_cast<std::uint16_t*>(planes.ptr);
  if (p.b_transposed) {
    PackBt job{p.b, p.ldb, p.k, p.n, groups, chunks, 1.0f, b};
    run_blocks(groups >= 8 ? par : Parallel{}, groups, &job, &pack_b_transposed_task);
  } else {
    PackB job{p.b, p.ldb, p.k, p.n, groups, chunks, b};
    run_blocks(chunks >= 8 ? par : Parallel{}, chunks, &job, &pack_b_rows_task);
  }
  GemmJob job{&p, b, np, kp};
  run_blocks(par, (p.m + kRows - 1) / kRows, &job, &gemm_task);
  if (p.c_finite) *p.c_finite = !job.nonfinite.load();
  return !job.failed.load();
}

}  // namespace amx
}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
