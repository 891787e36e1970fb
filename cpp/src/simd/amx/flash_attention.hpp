// The streaming attention on Intel AMX tiles: Q·Kᵀ and P·V on the tiles, the online softmax in
// float32 between them. Used by the fused attention kernel (simd/flash_attention.hpp) when AMX
// is on and the call is eligible; see amx/tiles.hpp for the accuracy and the layouts.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ruvector/simd.hpp"
#include "simd/amx/tiles.hpp"
#include "simd/flash_tile.hpp"
#include "simd/kernels.hpp"
#include "simd/run_blocks.hpp"
#include "simd/scratch.hpp"
#include "simd/vec.hpp"

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

namespace amx {

// Probabilities straight into A planes (softmax_tile's sink): each row's exponentials are cut
// into their three parts as they are made, with no float32 copy in between.
struct ProbsToPlanes {
  std::uint16_t* planes;  // mp rows × chunks of 32 keys
  std::size_t mp, chunks;

  void store(std::size_t r, std::size_t col, __m512 x) const noexcept {
    const std::size_t plane = mp / 16 * chunks * kTile;
    __m256i h, m, l;
    split(x, h, m, l);
    std::uint16_t* dst = planes + ((r / 16) * chunks + col / 32) * kTile + (r % 16) * 32 + col % 32;
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst), h);
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + plane), m);
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 2 * plane), l);
  }
  float exp(std::size_t r, float* row, std::size_t n, float max) const noexcept {
    const reg vmax(max);
    reg sum0(0.0f), sum1(0.0f);
    std::size_t col = 0;
    for (; col + 32 <= n; col += 32) {  // whole chunks: two independent exponentials at a time
      const reg e0 = Vec::exp_nonpositive(Vec::sub(Vec::load(row + col), vmax));
      const reg e1 = Vec::exp_nonpositive(Vec::sub(Vec::load(row + col + 16), vmax));
      sum0 = Vec::add(sum0, e0);
      sum1 = Vec::add(sum1, e1);
      store(r, col, e0);
      store(r, col + 16, e1);
    }
    for (; col < chunks * 32; col += 16) {  // the last keys, then zeros up to the chunk's end
      const std::size_t count = part(n, col);
      __m512 e = _mm512_setzero_ps();
      if (count) {
        const __mmask16 mask = count == 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << count) - 1);
        const reg x(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + col), vmax));
        e = _mm512_maskz_mov_ps(mask, static_cast<__m512>(Vec::exp_nonpositive(x)));
        sum0 = Vec::add(sum0, reg(e));
      }
      store(r, col, e);
    }
    return Vec::hsum(Vec::add(sum0, sum1));
  }
  void dead(std::size_t r, float* /*row*/, std::size_t /*n*/) const noexcept { zero_row(r); }
  void zero_row(std::size_t r) const noexcept {
    for (std::size_t col = 0; col < chunks * 32; col += 16) store(r, col, _mm512_setzero_ps());
  }
};

struct StreamJob {
  FlashJob* job;           // the streaming state (row max and sum) and the pass's key range
  const std::uint16_t* k;  // B planes of scale·Kᵀ for the pass: key groups × depth chunks
  const std::uint16_t* v;  // B planes of V for the pass: value groups × key chunks
  std::size_t k_groups, d_chunks, v_groups, key_chunks, dp, dvp;
};

// One block of kRows queries against the pass's keys, tile by tile: S = Q·Kᵀ on the tiles,
// the online softmax on S in float32 (softmax_tile), P cut into A planes, acc += P·V on the
// tiles. The accumulator (float32, padded) lives in scratch; between passes it waits in `out`.
void stream_task(void* job_ptr, std::size_t block) noexcept {
  const StreamJob& sj = *static_cast<const StreamJob*>(job_ptr);
  FlashJob& job = *sj.job;
  const FlashParams& p = *job.p;
  const std::size_t q0 = block * kRows, q1 = std::min(p.lq, q0 + kRows), qb = q1 - q0, mp = padded(qb);
  const std::size_t kend = std::min(job.k_end, key_end(p, q1));
  if (kend <= job.k_begin) return;
  constexpr std::size_t lds = kKeyBlock;  // a multiple of 32
  const std::size_t q_units = 3 * mp * sj.dp, p_units = 3 * mp * lds;
  const std::size_t floats = mp * lds + mp * sj.dvp + (q_units + p_units) / 2;
  Scratch<float> buf(floats);
  if (!buf.ok(floats)) {
    job.failed.store(true, std::memory_order_relaxed);
    return;
  }
  float* s = buf.ptr;
  float* acc = s + mp * lds;
  auto* qa = reinterpret_cast<std::uint16_t*>(acc + mp * sj.dvp);
  std::uint16_t* pa = qa + q_units;
  float* out = p.out + q0 * p.ldo;
  const bool resumed = job.k_begin > 0;  // an earlier pass left its sums in out
  if (resumed)
    for (std::size_t r = 0; r < qb; ++r) {
      std::memcpy(acc + r * sj.dvp, out + r * p.ldo, p.dv * sizeof(float));
      std::memset(acc + r * sj.dvp + p.dv, 0, (sj.dvp - p.dv) * sizeof(float));
    }
  pack_a(p.q + q0 * p.ldq, p.ldq, qb, p.d, mp, sj.d_chunks, qa);
  TileScope tiles;
  for (std::size_t k0 = job.k_begin; k0 < kend; k0 += kKeyBlock) {
    const std::size_t kb = std::min(kKeyBlock, kend - k0), kbp = padded(kb), local = k0 - job.k_begin;
    const bool first = k0 == 0;
    product(qa, mp, sj.d_chunks, sj.k, sj.k_groups, sj.d_chunks, local / 16, 0, kbp, s, lds, false);
    if (p.dropout.rate > 0.0f) {  // dropout works on the float32 probabilities
      softmax_tile(p, job, q0, qb, k0, kb, first, s, lds, acc, sj.dvp);
      pack_a(s, lds, qb, kb, mp, kbp / 32, pa);
    } else {
      const ProbsToPlanes probs{pa, mp, kbp / 32};
      softmax_tile(p, job, q0, qb, k0, kb, first, s, lds, acc, sj.dvp, probs);
      for (std::size_t r = qb; r < mp; ++r) probs.zero_row(r);
    }
    product(pa, mp, kbp / 32, sj.v, sj.v_groups, sj.key_chunks, 0, local / 32, sj.dvp, acc, sj.dvp, !first);
  }
  if (kend == key_end(p, q1)) {  // this block has seen all its keys
    for (std::size_t r = 0; r < qb; ++r) {
      std::memcpy(out + r * p.ldo, acc + r * sj.dvp, p.dv * sizeof(float));
      normalise_row(out + r * p.ldo, p.dv, job.row_sum[q0 + r]);
    }
  } else {
    for (std::size_t r = 0; r < qb; ++r) std::memcpy(out + r * p.ldo, acc + r * sj.dvp, p.dv * sizeof(float));
  }
}

// Whether this call may take the tiles: streaming (no weights), widths whose scratch stays
// small, finite queries (keys and values are checked as they are packed).
bool eligible(const FlashParams& p) noexcept {
  if (!ruvector::amx_enabled() || p.weights || p.d > 512 || p.dv > 512 || p.lk == 0) return false;
  return p.inputs_finite || finite_rows(p.q, p.lq, p.d, p.ldq);
}

enum class Outcome { done, failed, fma };  // fma: NaN/Inf found before any output, use the FMA path

// Without weights, one head, on the tiles: passes over key ranges whose planes stay ~kBudget.
// Keys and values are checked for NaN/Inf while the first pass packs them (the FMA path takes
// over if any, nothing written yet); with several passes they are checked beforehand.
Outcome stream_attention(const FlashParams& p, const Parallel& par) noexcept {
  constexpr std::size_t kBudget = 1024 * 1024;  // bytes of K and V planes at a time
  const std::size_t dp = padded(p.d), dvp = padded(p.dv);
  const std::size_t blocks = (p.lq + kRows - 1) / kRows;
  const std::size_t per_key = 3 * 2 * (dp + dvp);  // bytes of planes per key
  const std::size_t span = std::max<std::size_t>(kKeyBlock, kBudget / per_key / kKeyBlock * kKeyBlock);
  const std::size_t visible = key_end(p, p.lq);
  if (visible > span && !p.inputs_finite &&
      !(finite_rows(p.k, visible, p.d, p.ldk) && finite_rows(p.v, visible, p.dv, p.ldv)))
    return Outcome::fma;
  const std::size_t first_len = padded(std::min(span, visible));
  const std::size_t k_units = 3 * first_len * dp, v_units = 3 * first_len * dvp;
  const std::size_t floats = (k_units + v_units) / 2 + 2 * p.lq;
  Scratch<float> packed(floats);
  if (!packed.ok(floats)) return Outcome::failed;
  auto* kplanes = reinterpret_cast<std::uint16_t*>(packed.ptr);
  std::uint16_t* vplanes = kplanes + k_units;
  float* row_max = packed.ptr + (k_units + v_units) / 2;
  float* row_sum = row_max + p.lq;
  for (std::size_t i = 0; i < p.lq; ++i) {
    row_max[i] = kNegInf;
    row_sum[i] = 0.0f;
  }
  FlashJob job{&p, nullptr, nullptr, 0, 0, 0, row_max, row_sum, {false}};
  if (visible == 0)
    for (std::size_t i = 0; i < p.lq; ++i) std::memset(p.out + i * p.ldo, 0, p.dv * sizeof(float));
  for (std::size_t k_begin = 0; k_begin < visible; k_begin += span) {
    const std::size_t k_end = std::min(visible, k_begin + span), len = k_end - k_begin, lenp = padded(len);
    StreamJob sj{&job, kplanes, vplanes, lenp / 16, dp / 32, dvp / 16, lenp / 32, dp, dvp};
    PackBt kjob{p.k + k_begin * p.ldk, p.ldk, p.d, len, sj.k_groups, sj.d_chunks, p.scale, kplanes};
    run_blocks(sj.k_groups >= 8 ? par : Parallel{}, sj.k_groups, &kjob, &pack_b_transposed_task);
    PackB vjob{p.v + k_begin * p.ldv, p.ldv, len, p.dv, sj.v_groups, sj.key_chunks, vplanes};
    run_blocks(sj.key_chunks >= 8 ? par : Parallel{}, sj.key_chunks, &vjob, &pack_b_rows_task);
    if (kjob.nonfinite.load() || vjob.nonfinite.load()) return Outcome::fma;  // first pass only
    job.k_begin = k_begin;
    job.k_end = k_end;
    const std::size_t first_block = p.mask.causal ? std::min(blocks, k_begin / kRows) : 0;
    run_blocks_from(par, first_block, blocks - first_block, &sj, &stream_task, p.mask.causal);
    if (job.failed.load()) return Outcome::failed;
  }
  return Outcome::done;
}

}  // namespace amx
}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
