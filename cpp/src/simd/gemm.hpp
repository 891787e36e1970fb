// The GEMM of the per-ISA kernels (see vec.hpp): register-blocked micro-kernel, panel packing,
// depth blocking, and the table's gemm (AMX tiles instead when enabled and worth it).
// C[m×n] (= or +=) A[m×kc] · Bp[kc×NR], m <= MR, n <= NR in the micro-kernel. A's rows are
// read in place, one pointer each; B is a panel of NR columns, rows ldb apart (NR when packed).
// Rows past m re-read row m-1, so the hot loop has no bounds; their results are dropped.
#pragma once

#include <algorithm>
#include <cstddef>
#if defined(_MSC_VER)
#include <intrin.h>  // _ReadWriteBarrier
#endif

#include "kernels.hpp"
#include "primitives.hpp"
#include "run_blocks.hpp"
#include "scratch.hpp"
#include "vec.hpp"
#if defined(RUVECTOR_AMX)
#include "amx/gemm.hpp"
#endif

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

constexpr std::size_t MR = RUVECTOR_MR;
constexpr std::size_t NV = RUVECTOR_NV;
constexpr std::size_t NR = NV * W;

// Row i of A is rows[i] (MR of them: rows past m repeat row m-1).
template <bool Accumulate>
void micro_kernel(std::size_t kc, const float* const* rows, const float* bp, std::size_t ldb, float* c,
                       std::size_t ldc, std::size_t m, std::size_t n, const float* bias) noexcept {
  reg acc[MR][NV];
  for (std::size_t i = 0; i < MR; ++i)
    for (std::size_t j = 0; j < NV; ++j) acc[i][j] = Vec::zero();

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

// The micro-kernel alone on operands in L1 (microkernel_gflops): `rounds` products of an
// MR×KC block of A and a KC×NR panel of B into a tile, the shape every GEMM of this ISA is made
// of. What the kernel can reach with no cache misses and no packing: the ceiling of its
// instruction mix, below the FMA units' peak by what its loads and broadcasts cost. Returns
// the flops done.
std::size_t microkernel_peak_kernel(std::size_t rounds, float* sink) noexcept {
  constexpr std::size_t kDepth = 128;  // A 6-24 KB, B 8-16 KB: both stay in L1 across rounds
  alignas(64) float a[MR * kDepth], b[kDepth * NR], c[MR * NR] = {};
  const float* rows[MR];
  for (std::size_t i = 0; i < MR; ++i) rows[i] = a + i * kDepth;
  for (std::size_t i = 0; i < MR * kDepth; ++i) a[i] = 1e-3f * static_cast<float>(i % 97);
  for (std::size_t i = 0; i < kDepth * NR; ++i) b[i] = 1e-3f * static_cast<float>(i % 89);
  // Accumulating into the same tile, and (GCC, Clang) telling the compiler that A and B may have
  // changed and the tile been read between rounds: else it computes the product once, or only
  // the part of the tile it sees used.
  for (std::size_t r = 0; r < rounds; ++r) {
    micro_kernel<true>(kDepth, rows, b, NR, c, NR, MR, NR, nullptr);
#if defined(__GNUC__) || defined(__clang__)
    asm volatile("" : : "r"(a), "r"(b), "r"(c) : "memory");
#elif defined(_MSC_VER)
    _ReadWriteBarrier();
#endif
  }
  float total = 0.0f;  // every element of the tile is used
  for (std::size_t i = 0; i < MR * NR; ++i) total += c[i];
  *sink = total;
  return rounds * 2 * MR * NR * kDepth;
}

// Packs columns [col0, col0 + NR) of op(B) (k rows) into bp[k][NR], zero-padding past n,
// multiplied by `scale` (the attention scale is folded into the packed keys, so scores come
// out of the GEMM already scaled and the softmax needs no multiply).
void pack_b_panel(const float* b, std::size_t ldb, bool transposed, std::size_t k, std::size_t n, std::size_t col0,
                  float* bp, float scale = 1.0f) noexcept {
  const std::size_t cols = std::min(NR, n - col0);
  if (!transposed) {
    constexpr std::size_t kAhead = 16;  // rows: the source rows lie ldb apart, often far
    for (std::size_t p = 0; p < k; ++p) {
      const float* src = b + p * ldb + col0;
      if (p + kAhead < k)
        for (std::size_t j = 0; j < cols; j += 16) prefetch_line(src + kAhead * ldb + j);
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
    // Each chunk asks for the next one's lines (rows ldb apart, a few lines each: a pattern
    // the hardware prefetchers do not follow; the loads had been waiting on L3 or memory).
    for (std::size_t j = 0; j < cols; ++j)
      for (std::size_t p = 0; p < std::min(k, kDepthChunk); p += 16) prefetch_line(b + (col0 + j) * ldb + p);
    for (std::size_t p0 = 0; p0 < k; p0 += kDepthChunk) {
      const std::size_t p1 = std::min(k, p0 + kDepthChunk), p2 = std::min(k, p1 + kDepthChunk);
      for (std::size_t j = 0; j < cols; ++j) {
        const float* src = b + (col0 + j) * ldb;
        for (std::size_t p = p1; p < p2; p += 16) prefetch_line(src + p);
        for (std::size_t p = p0; p < p1; ++p) bp[p * NR + j] = src[p] * scale;
      }
      for (std::size_t j = cols; j < NR; ++j)
        for (std::size_t p = p0; p < p1; ++p) bp[p * NR + j] = 0.0f;
    }
  }
}
constexpr std::size_t KC = 256;  // GEMM depth per pass: a KC×NR slice of B stays in L1

// C[m×n] (=|+=) A[m×k] · B (+ bias), B in NR-column panels of k rows, panel p at
// bp + p·panel_stride, its rows ldb apart (NR when packed; a row-major B whose width is a
// multiple of NR serves in place with ldb = its row stride and panel_stride = NR). Row i of A
// starts at row_of(i). Blocked over depth so every row group reuses a B slice from L1.
template <class RowOf>
void gemm_blocked(std::size_t m, std::size_t n, std::size_t k, RowOf row_of, const float* bp, std::size_t panel_stride,
                  std::size_t ldb, float* c, std::size_t ldc, bool accumulate, const float* bias) noexcept {
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
        const float* rows[MR];
        for (std::size_t r = 0; r < MR; ++r) rows[r] = row_of(i + (r < mm ? r : mm - 1)) + k0;
        float* cij = c + i * ldc + jp * NR;
        if (acc)
          micro_kernel<true>(kc, rows, b, ldb, cij, ldc, mm, nn, bias_p);
        else
          micro_kernel<false>(kc, rows, b, ldb, cij, ldc, mm, nn, bias_p);
      }
    }
  }
}

// gemm_blocked on a row-major A (row stride lda).
void gemm_packed(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* bp,
                 std::size_t panel_stride, std::size_t ldb, float* c, std::size_t ldc, bool accumulate,
                 const float* bias) noexcept {
  gemm_blocked(
      m, n, k, [a, lda](std::size_t i) { return a + i * lda; }, bp, panel_stride, ldb, c, ldc, accumulate, bias);
}

// gemm_blocked on rows of A given by pointer (rows[i], m of them), wherever they lie.
void gemm_rows(std::size_t m, std::size_t n, std::size_t k, const float* const* rows, const float* bp,
               std::size_t panel_stride, std::size_t ldb, float* c, std::size_t ldc, const float* bias) noexcept {
  gemm_blocked(
      m, n, k, [rows](std::size_t i) { return rows[i]; }, bp, panel_stride, ldb, c, ldc, false, bias);
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

}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
