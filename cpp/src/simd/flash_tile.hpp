// The pieces of the fused ("flash" style) attention shared by its FMA path
// (flash_attention.hpp) and its AMX path (amx/flash_attention.hpp): block sizes, scoring a row
// (masks, decay, dropout), the per-call job state, and the online-softmax update of one tile.
// Part of the per-ISA kernels (see vec.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "gemm.hpp"
#include "kernels.hpp"
#include "primitives.hpp"
#include "vec.hpp"

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

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
  const std::uint64_t key = mix64(p.dropout.seed ^ mix64(p.dropout.stream));
  const std::uint32_t threshold = static_cast<std::uint32_t>(static_cast<double>(p.dropout.rate) * 16777216.0);
  const float keep_scale = 1.0f / (1.0f - p.dropout.rate);
  for (std::size_t j = 0; j < n; ++j) {
    const std::uint64_t h = mix64(key ^ (static_cast<std::uint64_t>(gi) * p.lk + j0 + j));
    row[j] = static_cast<std::uint32_t>(h >> 40) < threshold ? 0.0f : row[j] * keep_scale;
  }
}

// Turns scaled dot products row[0..n) (keys j0..j0+n) of query gi (the scale is folded into
// the packed keys) into scores: additive mask, temporal decay, then -inf where attending is
// not allowed.
void score_row(const FlashParams& p, std::size_t gi, std::size_t j0, float* row, std::size_t n) noexcept {
  const float* add = p.mask.additive ? p.mask.additive + gi * p.mask.ld + j0 : nullptr;
  const bool timed = p.time.stamps != nullptr;
  const float ti = timed ? p.time.stamps[gi] : 0.0f;
  const reg vti = Vec::broadcast(ti), vdecay = Vec::broadcast(-p.time.decay), vneg = Vec::broadcast(kNegInf),
            vwin = Vec::broadcast(p.time.window);
  const bool decay = timed && p.time.decay != 0.0f;
  const bool window = timed && p.time.window >= 0.0f;
  const bool self_here = p.time.always_self && gi >= j0 && gi < j0 + n;
  float self_score = 0.0f;

  std::size_t j = 0;
  for (; j + W <= n; j += W) {
    reg s = Vec::load(row + j);
    if (add) s = Vec::add(s, Vec::load(add + j));
    if (timed) {
      const reg tj = Vec::load(p.time.stamps + j0 + j);
      const reg dt = Vec::abs(Vec::sub(tj, vti));
      if (decay) s = Vec::fma(vdecay, dt, s);
      if (p.time.causal) s = Vec::where_gt(tj, vti, s, vneg);
      if (window) s = Vec::where_gt(dt, vwin, s, vneg);
    }
    Vec::store(row + j, s);
  }
  for (; j < n; ++j) {
    float s = row[j];
    if (add) s += add[j];
    if (timed) {
      const float tj = p.time.stamps[j0 + j];
      const float dt = std::fabs(tj - ti);
      if (decay) s += -p.time.decay * dt;
      if (p.time.causal && tj > ti) s = kNegInf;
      if (window && dt > p.time.window) s = kNegInf;
    }
    row[j] = s;
  }
  // Time masks never remove the self pair (t_i - t_i = 0); only the index masks below can.
  if (self_here) self_score = row[gi - j0];
  if (p.mask.boolean) {
    const std::uint8_t* bm = p.mask.boolean + gi * p.mask.ld + j0;
    for (std::size_t t = 0; t < n; ++t)
      if (!bm[t]) row[t] = kNegInf;
  }
  if (p.mask.causal && j0 + n > gi + 1) {
    const std::size_t first = gi + 1 > j0 ? gi + 1 - j0 : 0;
    for (std::size_t t = first; t < n; ++t) row[t] = kNegInf;
  }
  if (self_here) row[gi - j0] = self_score;
}

// Keys a query block can see at all: with index-causal masking, none past its last row.
std::size_t key_end(const FlashParams& p, std::size_t q1) noexcept {
  return p.mask.causal ? std::min(p.lk, q1) : p.lk;
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
  if (p.weights && !p.heads.average) v.weights += h * p.lq * p.ldw;
  v.dropout.stream = p.dropout.stream + h;
  v.heads.count = 1;
  v.heads.average = false;
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
  const bool full_scoring = p.mask.additive || p.mask.boolean || p.time.stamps || (p.mask.causal && k0 + kb > q0 + 1);
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
    if (p.dropout.rate > 0.0f) dropout_row(p, q0 + r, k0, row, kb);
    if (first) {
      l = sum;
    } else if (m_new != m) {  // the max grew: rescale what the row has gathered so far
      const float alpha = m == kNegInf ? 0.0f : scalar_exp(m - m_new);
      if (alpha != 1.0f) scale_kernel(acc + r * ldacc, p.dv, alpha);
      l = l * alpha + sum;
    } else {  // alpha = exp(0) = 1
      l += sum;
    }
    m = m_new;
  }
}

}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
