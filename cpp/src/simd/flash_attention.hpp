// The fused attention kernel ("flash" style) of the per-ISA kernels (see vec.hpp): blocks of
// queries against tiles of keys, streaming (online softmax, no Lq×Lk matrix) or with weights,
// one head or several; AMX tiles instead when enabled and eligible.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <limits>

#include "flash_tile.hpp"
#include "gemm.hpp"
#include "kernels.hpp"
#include "primitives.hpp"
#include "run_blocks.hpp"
#include "scratch.hpp"
#include "vec.hpp"
#if defined(RUVECTOR_AMX)
#include "amx/flash_attention.hpp"
#endif

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

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
  const bool full_scoring = p.mask.additive || p.mask.boolean || p.time.stamps || p.mask.causal;
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
      if (m == kNegInf) {  // nothing to attend to: zeros; NaN scores make the row NaN (as softmax_kernel)
        const bool nan = has_nan(row, kend);
        const float fill = nan ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
        for (std::size_t j = 0; j < kend; ++j) row[j] = fill;
        dead[r] = !nan;
        continue;
      }
      sum = exp_max_shift_sum_kernel(row, kend, m);
    } else {
      m = max_kernel(row, kend);
      sum = exp_max_shift_sum_kernel(row, kend, m);
    }
    scale_kernel(row, kend, 1.0f / sum);
    if (p.dropout.rate > 0.0f) dropout_row(p, q0 + r, 0, row, kend);
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
  const std::size_t probs_size = p.heads.average ? qb * ld_probs : 0;
  Scratch<float> probs(probs_size);
  if (!probs.ok(probs_size)) {
    job.failed.store(true, std::memory_order_relaxed);
    return;
  }
  for (std::size_t h = 0; h < p.heads.count; ++h) {
    const FlashParams ph = head_view(p, h);
    const float* kp = job.kp + h * job.kp_head;
    const float* vp = job.vp + h * job.vp_head;
    if (!p.heads.average) {
      weights_block(ph, kp, vp, job.vp_stride, job.vp_ld, q0, q1, ph.weights + q0 * p.ldw, p.ldw);
      continue;
    }
    weights_block(ph, kp, vp, job.vp_stride, job.vp_ld, q0, q1, probs.ptr, ld_probs);
    accumulate_head_mean(p.weights + q0 * p.ldw, p.ldw, probs.ptr, ld_probs, qb, p.lk, h, p.heads.count);
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
  for (std::size_t i = 0; i < rows; ++i) prefetch_floats<2>(x + i * ld, n);
}

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
  if (visible == 0 && p.dv > 0)  // no keys: every row attends to nothing (dv = 0: out may be null)
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
    const std::size_t first_block = p.mask.causal ? std::min(blocks, k_begin / kQueryBlock) : 0;
    run_blocks_from(par, first_block, blocks - first_block, &job, &stream_task, p.mask.causal);
    if (job.failed.load()) return false;
  }
  return true;
}

bool flash_attention_kernel(const FlashParams& p, const Parallel& par) noexcept {
  if (p.lq == 0 || p.heads.count == 0) return true;
  const std::size_t blocks = (p.lq + kQueryBlock - 1) / kQueryBlock;
  const std::size_t vpanels = (p.dv + NR - 1) / NR;
  if (p.weights) {  // the weights dominate memory: pack all keys of every head once
    const bool in_place = p.heads.count == 1 && values_in_place(p);
    const std::size_t kp_size = ((p.lk + NR - 1) / NR) * p.d * NR, vp_size = in_place ? 0 : vpanels * p.lk * NR;
    Scratch<float> packed(p.heads.count * (kp_size + vp_size));
    if (!packed.ok(p.heads.count * (kp_size + vp_size))) return false;
    float* vpack = packed.ptr + p.heads.count * kp_size;
    FlashJob job{&p, packed.ptr, in_place ? p.v : vpack, 0, p.lk, in_place ? NR : p.lk * NR, nullptr, nullptr, {false}};
    job.vp_ld = in_place ? p.ldv : NR;
    job.vpack = in_place ? nullptr : vpack;
    job.kp_head = kp_size;
    job.vp_head = vp_size;
    if (p.heads.count == 1)
      pack_keys_values(p, 0, p.lk, job.kp, job.vpack, par);
    else
      run_blocks(par, p.heads.count, &job, &pack_head_task);
    run_blocks(par, blocks, &job, &weights_task);
    return !job.failed.load();
  }
  if (p.heads.count == 1) return stream_attention(p, par);
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
  run_blocks(par, p.heads.count, &job, stream_head);
  return !job.failed.load();
}

}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
