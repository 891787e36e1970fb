// GAT/GATv2 kernels of the per-ISA kernels (see vec.hpp), written once on `Vec`.
//
// Per task (a range of target nodes with ~4k edges): score the incoming edges of each target
// into a small [edges × H] buffer, softmax each head over them, then gather the source rows
// to aggregate. Memory is that buffer plus one row of accumulators per task: never an E·H·C
// temporary.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "gemm.hpp"
#include "graph_kernels.hpp"
#include "scratch.hpp"
#include "vec.hpp"

// Prefetch helpers must be inlined: GCC finds a function whose only effect is a prefetch
// "const" and deletes the calls to it.
#if defined(__GNUC__) || defined(__clang__)
#define RUVECTOR_GAT_INLINE inline __attribute__((always_inline))
#else
#define RUVECTOR_GAT_INLINE inline
#endif

#ifndef RUVECTOR_GAT_AHEAD
#define RUVECTOR_GAT_AHEAD 8
#endif
#ifndef RUVECTOR_GAT_LOCALITY
#define RUVECTOR_GAT_LOCALITY 2
#endif

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

// Gathers of source rows miss the cache (random graphs): rows are requested this many edges
// ahead in the CSR order, across target boundaries, into L2 (more misses in flight than L1).
constexpr std::int64_t kRowsAhead = RUVECTOR_GAT_AHEAD;
constexpr std::int64_t kScoresAhead = 16;  // GAT: the α_src rows (H floats) of the scoring sweep

// The lines of the n floats at first, and the line of the last one (first need not be aligned).
RUVECTOR_GAT_INLINE void prefetch_lines(const float* first, std::size_t n) noexcept {
  prefetch_floats<RUVECTOR_GAT_LOCALITY>(first, n);
  prefetch_line<RUVECTOR_GAT_LOCALITY>(first + n - 1);
}

// Requests row source[pos + ahead] of `base` when that edge is in this task's range.
RUVECTOR_GAT_INLINE void prefetch_ahead(const GatParams& p, std::int64_t pos, std::int64_t ahead, std::int64_t end,
                                        const float* base, std::size_t ld, std::size_t n) noexcept {
  if (pos >= 0 && pos + ahead < end) prefetch_lines(base + static_cast<std::size_t>(p.source[pos + ahead]) * ld, n);
}

inline float leaky_relu(float x, float slope) noexcept {
  return x > 0.0f ? x : x * slope;
}

inline reg leaky_relu_vec(reg x, reg slope) noexcept {
  return Vec::where_gt(x, Vec::zero(), Vec::mul(x, slope), x);  // x > 0 ? x : slope·x
}

std::size_t gcd_size(std::size_t a, std::size_t b) noexcept {
  while (b != 0) {
    const std::size_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// *s = x·a, *d = x·b over n values, each summed exactly as dot_kernel does, reading x once.
RUVECTOR_GAT_INLINE void dot2(const float* x, const float* a, const float* b, std::size_t n, float* s,
                              float* d) noexcept {
  reg s0 = Vec::zero(), s1 = Vec::zero(), d0 = Vec::zero(), d1 = Vec::zero();
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const reg x0 = Vec::load(x + i), x1 = Vec::load(x + i + W);
    s0 = Vec::fma(x0, Vec::load(a + i), s0);
    s1 = Vec::fma(x1, Vec::load(a + i + W), s1);
    d0 = Vec::fma(x0, Vec::load(b + i), d0);
    d1 = Vec::fma(x1, Vec::load(b + i + W), d1);
  }
  for (; i + W <= n; i += W) {
    const reg x0 = Vec::load(x + i);
    s0 = Vec::fma(x0, Vec::load(a + i), s0);
    d0 = Vec::fma(x0, Vec::load(b + i), d0);
  }
  float vs = Vec::hsum(Vec::add(s0, s1)), vd = Vec::hsum(Vec::add(d0, d1));
  for (; i < n; ++i) {
    vs += x[i] * a[i];
    vd += x[i] * b[i];
  }
  *s = vs;
  *d = vd;
}

// GAT's per-head scores of one transformed row, C a multiple of W: the 2H products (src heads,
// then dst heads) summed down to vectors, whose horizontal sums come W at a time from one
// reduction (Vec::hsum_each; for H = 8 with AVX-512, one of sixteen vectors where a reduction
// per head took a tenth of a targets= call). `sums`: scratch of 2H floats rounded up to W.
RUVECTOR_GAT_INLINE void head_scores(const float* row, const GatTransform& t, const std::size_t* slots, float* sums,
                                     float* alpha_src, float* alpha_dst) noexcept {
  const std::size_t H = t.heads, C = t.channels;
  for (std::size_t first = 0; first < 2 * H; first += W) {
    reg group[W];
    for (std::size_t m = 0; m < W; ++m) {
      const std::size_t slot = first + slots[m];
      if (slot >= 2 * H) {
        group[m] = Vec::zero();
        continue;
      }
      const std::size_t h = slot < H ? slot : slot - H;
      const float* x = row + h * C;
      const float* a = (slot < H ? t.att_src : t.att_dst) + h * C;
      reg acc = Vec::mul(Vec::load(x), Vec::load(a));
      for (std::size_t c = W; c < C; c += W) acc = Vec::fma(Vec::load(x + c), Vec::load(a + c), acc);
      group[m] = acc;
    }
    Vec::store(sums + first, Vec::hsum_each(group));
  }
  std::memcpy(alpha_src, sums, H * sizeof(float));
  std::memcpy(alpha_dst, sums + H, H * sizeof(float));
}

// Rows per GEMM call of the transform: their x rows (and x' rows) stay in L1 across the column
// panels of the product and for the α dot products that follow.
constexpr std::size_t kTransformSubRows = MR * 4;
// Rows read in place at random (GatTransform::rows) go by half as many: their block is read
// once per column panel, and 48 of them (24 KB at 128 features) beside a 16 KB panel filled
// L1 (24 measured ~5 % faster on a targets= call).
constexpr std::size_t kGatherSubRows = MR * 2;

// Asks for the n floats at p to be brought into L2 (for writing when `write`): a hint.
RUVECTOR_GAT_INLINE void prefetch_row(const float* p, std::size_t n, int write) noexcept {
  if (write)
    prefetch_floats<2, 1>(p, n);
  else
    prefetch_floats<2, 0>(p, n);
}

std::size_t transform_packed_size(const GatTransform& t) noexcept {
  return (t.heads * t.channels + NR - 1) / NR * t.in_features * NR;
}

// W in NR-column panels of Wᵀ, as gemm_kernel packs a B operand.
void pack_transform(const GatTransform& t, float* packed) noexcept {
  const std::size_t HC = t.heads * t.channels, K = t.in_features;
  for (std::size_t jp = 0; jp < (HC + NR - 1) / NR; ++jp)
    pack_b_panel(t.weight, K, true, K, HC, jp * NR, packed + jp * K * NR);
}

bool transform_kernel(const GatTransform& t, std::size_t row_begin, std::size_t row_end) noexcept {
  if (row_begin >= row_end) return true;
  const std::size_t H = t.heads, C = t.channels, HC = H * C, K = t.in_features;
  // W packed (once per call when the caller did it), then the rows by small blocks.
  const std::size_t panels = (HC + NR - 1) / NR;
  const std::size_t packed_size = t.packed_weight ? 0 : transform_packed_size(t);
  // GAT's per-head scores W at a time where the channels fill whole vectors
  const std::size_t* slots = t.att_src && C % W == 0 ? Vec::hsum_slots() : nullptr;
  const std::size_t sums_size = slots ? (2 * H + W - 1) / W * W : 0;
  Scratch<float> scratch(packed_size + sums_size);
  if (!scratch.ok(packed_size + sums_size)) return false;
  float* sums = scratch.ptr + packed_size;
  if (!t.packed_weight) pack_transform(t, scratch.ptr);
  const float* weight = t.packed_weight ? t.packed_weight : scratch.ptr;
  const auto x_row = [&t](std::size_t i) {
    return t.x + (t.rows ? static_cast<std::size_t>(t.rows[i]) : i) * t.ld_x;
  };
  const std::size_t sub_rows = t.rows ? kGatherSubRows : kTransformSubRows;
  for (std::size_t r0 = row_begin; r0 < row_end; r0 += sub_rows) {
    const std::size_t r1 = std::min(row_end, r0 + sub_rows);
    const std::size_t n1 = std::min(row_end, r1 + sub_rows);
    float* out = t.out + r0 * t.ld_out;
    if (t.rows == nullptr) {
#if defined(__GNUC__) || defined(__clang__)
      // the next block's x rows (read) and x' rows (written) into L2 while this one computes
      for (std::size_t i = r1; i < n1; ++i) {
        prefetch_row(x_row(i), K, 0);
        prefetch_row(t.out + i * t.ld_out, HC, 1);
      }
#endif
      gemm_packed(r1 - r0, HC, K, t.x + r0 * t.ld_x, t.ld_x, weight, K * NR, NR, out, t.ld_out, false, t.bias);
    } else {
      // Rows in place at random, read where they lie (prefetched a block ago), the product a
      // panel of columns at a time with a share of the next block's rows requested before each,
      // so the requests come in small groups while the products run (the whole next block at
      // once, 384 lines, stalled on the CPU's outstanding-miss slots).
      const float* rows[kGatherSubRows];
      for (std::size_t i = r0; i < r1; ++i) rows[i - r0] = x_row(i);
#if defined(__GNUC__) || defined(__clang__)
      if (r0 == row_begin)  // the first block: all its requests in flight at once
        for (std::size_t i = r0; i < r1; ++i) prefetch_row(x_row(i), K, 0);
#endif
      const std::size_t share = (n1 - r1 + panels - 1) / panels;
      for (std::size_t jp = 0; jp < panels; ++jp) {
#if defined(__GNUC__) || defined(__clang__)
        for (std::size_t i = r1 + jp * share; i < std::min(n1, r1 + (jp + 1) * share); ++i) prefetch_row(x_row(i), K, 0);
#endif
        const std::size_t c0 = jp * NR;
        gemm_rows(r1 - r0, std::min(NR, HC - c0), K, rows, weight + jp * K * NR, K * NR, NR, out + c0, t.ld_out,
                  t.bias ? t.bias + c0 : nullptr);
      }
    }
    if (t.att_src == nullptr) continue;
    for (std::size_t i = r0; i < r1; ++i) {
      const float* row = t.out + i * t.ld_out;
      if (slots) {
        head_scores(row, t, slots, sums, t.alpha_src + i * H, t.alpha_dst + i * H);
        continue;
      }
      for (std::size_t h = 0; h < H; ++h)
        dot2(row + h * C, t.att_src + h * C, t.att_dst + h * C, C, t.alpha_src + i * H + h, t.alpha_dst + i * H + h);
    }
  }
  return true;
}

// Per-task scratch: edge scores, accumulators and small per-head rows.
struct GatScratch {
  float* scores;     // [edges × H]: GAT all the task's edges, GATv2 one target's
  float* acc;        // [H·C] (padded)
  float* row;        // [H·C]: an expanded coefficient row (GAT) or projected edge features (v2)
  float* terms;      // [H·C]: v2 per-channel terms when C is not a multiple of the width
  float* pattern;    // [lcm(H, W)]: per-head values repeated, for whole-buffer vector passes
  float* phase_acc;  // [lcm(H, W)]: per-phase accumulators of reduce_heads
  float* x_dst;      // GATv2: the task's target rows x·W_rᵀ + b_r, [targets × H·C]
  std::size_t first_target;
  float* head_max;     // [H]
  float* head_inv;     // [H]
  std::size_t period;  // lcm(H, W)
};

// x[k·H + h] = f(x[k·H + h], pattern[h]) over n·H values with vectors: the head of each lane
// repeats with period lcm(H, W), so vector t uses pattern[(t·W) mod period].
template <class VecOp, class ScalarOp>
void per_head_pass(float* x, std::size_t total, const float* pattern, std::size_t period, VecOp vop,
                   ScalarOp sop) noexcept {
  std::size_t t = 0, phase = 0;
  for (; t + W <= total; t += W) {
    Vec::store(x + t, vop(Vec::load(x + t), Vec::load(pattern + phase)));
    phase += W;
    if (phase == period) phase = 0;
  }
  if (t == total) return;
  // Fewer than W left: one vector on a padded copy (a scalar exp costs a whole vector one).
  const std::size_t left = total - t;
  alignas(64) float tail[W], pat[W];
  for (std::size_t u = 0; u < W; ++u) {
    tail[u] = u < left ? x[t + u] : 0.0f;
    pat[u] = pattern[phase];
    if (++phase == period) phase = 0;
  }
  Vec::store(tail, vop(Vec::load(tail), Vec::load(pat)));
  for (std::size_t u = 0; u < left; ++u) x[t + u] = tail[u];
  (void)sop;
}

// out[h] = fold of column h of s[total / H × H] (row-major) with `vop` / `sop`, by vectors:
// vector t sees the heads of phase (t·W) mod period, so one accumulator per phase suffices.
template <class VecOp, class ScalarOp>
void reduce_heads(const float* s, std::size_t total, std::size_t heads, GatScratch& w, float init, VecOp vop,
                  ScalarOp sop, float* out) noexcept {
  for (std::size_t h = 0; h < heads; ++h) out[h] = init;
  std::size_t t = 0;
  if (w.period == W) {  // H divides the width: one register accumulator
    reg acc = Vec::broadcast(init);
    for (; t + W <= total; t += W) acc = vop(acc, Vec::load(s + t));
    Vec::store(w.phase_acc, acc);
  } else {
    for (std::size_t u = 0; u < w.period; u += W) Vec::store(w.phase_acc + u, Vec::broadcast(init));
    std::size_t phase = 0;
    for (; t + W <= total; t += W) {
      Vec::store(w.phase_acc + phase, vop(Vec::load(w.phase_acc + phase), Vec::load(s + t)));
      phase += W;
      if (phase == w.period) phase = 0;
    }
  }
  // (running head counters: an integer division per element would cost more than the rest)
  for (std::size_t u = 0, h = 0; u < w.period; ++u) {
    out[h] = sop(out[h], w.phase_acc[u]);
    if (++h == heads) h = 0;
  }
  for (std::size_t h = t % heads; t < total; ++t) {  // fewer than W left
    out[h] = sop(out[h], s[t]);
    if (++h == heads) h = 0;
  }
}

// pattern[u] = values[u mod H] for u < period.
void fill_pattern(float* pattern, std::size_t period, const float* values, std::size_t heads) noexcept {
  for (std::size_t u = 0, h = 0; u < period; ++u) {
    pattern[u] = values[h];
    if (++h == heads) h = 0;
  }
}

// Folds the lanes of one head together when H divides W (lane u holds head u mod H): after
// log2(W/H) rotations by H, 2H, ... every lane holds its head's fold, which is then the
// per-head pattern vector itself.
template <class Op>
RUVECTOR_GAT_INLINE reg fold_heads(reg acc, std::size_t heads, Op op) noexcept {
  alignas(64) float twice[2 * W];
  for (std::size_t shift = heads; shift < W; shift *= 2) {
    Vec::store(twice, acc);
    Vec::store(twice + W, acc);
    acc = op(acc, Vec::load(twice + shift));  // acc[u] with acc[(u + shift) mod W]
  }
  return acc;
}

// softmax_heads where H divides W: the maxima and sums stay in one register each, folded by
// rotations, instead of going through per-phase memory and a scalar fold per head (with 8
// heads and ~8 edges a target, those took most of the softmax: 14 % of a full GAT call).
// The last total mod W values (whole rows of heads) go through a padded vector.
RUVECTOR_GAT_INLINE void softmax_heads_in_registers(float* s, std::size_t total, std::size_t heads) noexcept {
  const std::size_t whole = total / W * W, left = total - whole;
  alignas(64) float tail[W];
  const auto load_tail = [&](float pad) {
    for (std::size_t u = 0; u < W; ++u) tail[u] = u < left ? s[whole + u] : pad;
    return Vec::load(tail);
  };
  const auto store_tail = [&](reg v) {
    Vec::store(tail, v);
    for (std::size_t u = 0; u < left; ++u) s[whole + u] = tail[u];
  };
  reg m = Vec::broadcast(kNegInf);
  for (std::size_t t = 0; t < whole; t += W) m = Vec::max(m, Vec::load(s + t));
  if (left) m = Vec::max(m, load_tail(kNegInf));
  m = fold_heads(m, heads, [](reg a, reg b) { return Vec::max(a, b); });
  reg sum = Vec::zero();
  for (std::size_t t = 0; t < whole; t += W) {
    const reg e = Vec::exp(Vec::sub(Vec::load(s + t), m));
    Vec::store(s + t, e);
    sum = Vec::add(sum, e);
  }
  if (left) {
    store_tail(Vec::exp(Vec::sub(load_tail(0.0f), m)));
    for (std::size_t u = left; u < W; ++u) tail[u] = 0.0f;  // padding adds nothing
    sum = Vec::add(sum, Vec::load(tail));
  }
  sum = fold_heads(sum, heads, [](reg a, reg b) { return Vec::add(a, b); });
  const reg inv = Vec::div(Vec::broadcast(1.0f), Vec::add(sum, Vec::broadcast(1e-16f)));
  for (std::size_t t = 0; t < whole; t += W) Vec::store(s + t, Vec::mul(Vec::load(s + t), inv));
  if (left) store_tail(Vec::mul(load_tail(0.0f), inv));
}

// Softmax of each head (column) of s[n × H] in place, as PyG: exp(s − max) / (Σ + 1e-16).
// (A NaN score makes its head's sum, hence all its coefficients, NaN whatever the max.)
void softmax_heads(float* s, std::size_t n, std::size_t heads, GatScratch& w) noexcept {
  const std::size_t total = n * heads;
  if (w.period == W) {
    softmax_heads_in_registers(s, total, heads);
    return;
  }
  reduce_heads(
      s, total, heads, w, kNegInf, [](reg a, reg b) { return Vec::max(a, b); },
      [](float a, float b) { return b > a ? b : a; }, w.head_max);
  fill_pattern(w.pattern, w.period, w.head_max, heads);
  per_head_pass(
      s, total, w.pattern, w.period, [](reg x, reg m) { return Vec::exp(Vec::sub(x, m)); },
      [](float x, float m) { return scalar_exp(x - m); });
  reduce_heads(
      s, total, heads, w, 0.0f, [](reg a, reg b) { return Vec::add(a, b); }, [](float a, float b) { return a + b; },
      w.head_inv);
  for (std::size_t h = 0; h < heads; ++h) w.head_inv[h] = 1.0f / (w.head_inv[h] + 1e-16f);
  fill_pattern(w.pattern, w.period, w.head_inv, heads);
  per_head_pass(
      s, total, w.pattern, w.period, [](reg x, reg inv) { return Vec::mul(x, inv); },
      [](float x, float inv) { return x * inv; });
}

// The source row and edge-feature row of the k-th edge of target i.
struct EdgeRef {
  std::int64_t source;
  std::int64_t feature_row;  // row in edge_features / edge_alpha, or -1: the added self-loop
  std::int64_t pos;          // CSR position of an ordinary edge, else -1
};

template <class Fn>
inline void for_each_edge(const GatParams& p, std::size_t i, Fn fn) noexcept {
  std::size_t k = 0;
  for (std::int64_t e = p.indptr[i]; e < p.indptr[i + 1]; ++e) fn(k++, EdgeRef{p.source[e], p.edge_id[e], e});
  const std::int64_t self = p.loop_source ? p.loop_source[i] : static_cast<std::int64_t>(i);
  if (p.loop_indptr)
    for (std::int64_t e = p.loop_indptr[i]; e < p.loop_indptr[i + 1]; ++e)
      fn(k++, EdgeRef{self, p.loop_edge_id[e], -1});
  if (p.add_self_loops && i < p.loop_nodes) fn(k++, EdgeRef{self, -1, -1});
}

std::size_t edges_of(const GatParams& p, std::size_t i) noexcept {
  std::size_t n = static_cast<std::size_t>(p.indptr[i + 1] - p.indptr[i]);
  if (p.loop_indptr) n += static_cast<std::size_t>(p.loop_indptr[i + 1] - p.loop_indptr[i]);
  return n + (p.add_self_loops && i < p.loop_nodes ? 1 : 0);
}

// GAT: e = LeakyReLU(α_src[j] + α_dst[i] (+ α_edge)), per head.
void score_gat(const GatParams& p, std::size_t i, float* s, std::int64_t end) noexcept {
  const std::size_t H = p.heads;
  const float* ad = p.alpha_dst + i * H;
  for_each_edge(p, i, [&](std::size_t k, EdgeRef e) {
    prefetch_ahead(p, e.pos, kScoresAhead, end, p.alpha_src, H, H);
    const float* as = p.alpha_src + static_cast<std::size_t>(e.source) * H;
    const float* ae = nullptr;
    if (p.edge_alpha)
      ae = e.feature_row >= 0 ? p.edge_alpha + static_cast<std::size_t>(e.feature_row) * H : p.loop_alpha + i * H;
    float* sk = s + k * H;
    for (std::size_t h = 0; h < H; ++h) {
      float v = as[h] + ad[h];
      if (ae) v += ae[h];
      sk[h] = leaky_relu(v, p.negative_slope);
    }
  });
}

// GATv2: e = att·LeakyReLU(x_l[j] + x_r[i] (+ W_e f)), per head.
void score_gatv2(const GatParams& p, std::size_t i, float* s, GatScratch& w, std::int64_t end) noexcept {
  const std::size_t H = p.heads, C = p.channels, HC = H * C;
  const float* xr = w.x_dst + (i - w.first_target) * HC;
  const reg vslope = Vec::broadcast(p.negative_slope);
  const bool whole_vectors = C % W == 0;
  for_each_edge(p, i, [&](std::size_t k, EdgeRef e) {
    prefetch_ahead(p, e.pos, kRowsAhead, end, p.x_src, p.ld_src, HC);
    const float* xl = p.x_src + static_cast<std::size_t>(e.source) * p.ld_src;
    const float* proj = nullptr;
    if (p.edge_features) {
      const float* f = e.feature_row >= 0 ? p.edge_features + static_cast<std::size_t>(e.feature_row) * p.ld_ef
                                          : p.loop_features + i * p.edge_dim;
      std::memset(w.row, 0, HC * sizeof(float));
      for (std::size_t d = 0; d < p.edge_dim; ++d) axpy_kernel(f[d], p.edge_proj + d * HC, w.row, HC);
      proj = w.row;
    }
    float* sk = s + k * H;
    if (whole_vectors) {
      for (std::size_t h = 0; h < H; ++h) {
        reg acc = Vec::zero();
        for (std::size_t c = h * C; c < (h + 1) * C; c += W) {
          reg t = Vec::add(Vec::load(xr + c), Vec::load(xl + c));
          if (proj) t = Vec::add(t, Vec::load(proj + c));
          acc = Vec::fma(leaky_relu_vec(t, vslope), Vec::load(p.att + c), acc);
        }
        sk[h] = Vec::hsum(acc);
      }
    } else {
      std::size_t c = 0;
      for (; c + W <= HC; c += W) {
        reg t = Vec::add(Vec::load(xr + c), Vec::load(xl + c));
        if (proj) t = Vec::add(t, Vec::load(proj + c));
        Vec::store(w.terms + c, Vec::mul(leaky_relu_vec(t, vslope), Vec::load(p.att + c)));
      }
      for (; c < HC; ++c) {
        float t = xr[c] + xl[c];
        if (proj) t += proj[c];
        w.terms[c] = leaky_relu(t, p.negative_slope) * p.att[c];
      }
      for (std::size_t h = 0; h < H; ++h) {
        float v = 0.0f;
        for (std::size_t cc = h * C; cc < (h + 1) * C; ++cc) v += w.terms[cc];
        sk[h] = v;
      }
    }
  });
}

constexpr std::size_t kAccVectors = 8;  // accumulators kept in registers over one pass of edges

// acc[H·C] = Σ_k α[k, h] · x_src[source_k, h·C:(h+1)·C]. When C is a multiple of the width,
// columns are taken kAccVectors vectors at a time with the sums in registers across all edges
// (a second pass re-reads rows the first brought into L1); otherwise through memory.
void aggregate(const GatParams& p, std::size_t i, const float* s, GatScratch& w, std::int64_t end) noexcept {
  const std::size_t H = p.heads, C = p.channels, HC = H * C;
  std::size_t c0 = 0;
  if (C % W == 0) {
    for (; c0 + kAccVectors * W <= HC; c0 += kAccVectors * W) {
      reg acc[kAccVectors];
      std::size_t head[kAccVectors];
      for (std::size_t v = 0; v < kAccVectors; ++v) {
        acc[v] = Vec::zero();
        head[v] = (c0 + v * W) / C;
      }
      const bool first = c0 == 0;
      for_each_edge(p, i, [&](std::size_t k, EdgeRef e) {
        if (first && !p.v2) prefetch_ahead(p, e.pos, kRowsAhead, end, p.x_src, p.ld_src, HC);  // v2: scoring did
        const float* xj = p.x_src + static_cast<std::size_t>(e.source) * p.ld_src + c0;
        const float* a = s + k * H;
        for (std::size_t v = 0; v < kAccVectors; ++v)
          acc[v] = Vec::fma(Vec::broadcast(a[head[v]]), Vec::load(xj + v * W), acc[v]);
      });
      for (std::size_t v = 0; v < kAccVectors; ++v) Vec::store(w.acc + c0 + v * W, acc[v]);
    }
    if (c0 == HC) return;
  }
  // The remaining columns [c0, H·C), accumulated in memory.
  std::memset(w.acc + c0, 0, (HC - c0) * sizeof(float));
  const bool first = c0 == 0;
  for_each_edge(p, i, [&](std::size_t k, EdgeRef e) {
    if (first && !p.v2) prefetch_ahead(p, e.pos, kRowsAhead, end, p.x_src, p.ld_src, HC);
    const float* xj = p.x_src + static_cast<std::size_t>(e.source) * p.ld_src;
    const float* a = s + k * H;
    for (std::size_t h = c0 / C; h < H; ++h)
      for (std::size_t c = std::max(c0, h * C); c < (h + 1) * C; ++c) w.row[c] = a[h];
    std::size_t c = c0;
    for (; c + W <= HC; c += W)
      Vec::store(w.acc + c, Vec::fma(Vec::load(w.row + c), Vec::load(xj + c), Vec::load(w.acc + c)));
    for (; c < HC; ++c) w.acc[c] += w.row[c] * xj[c];
  });
}

void write_output(const GatParams& p, std::size_t i, const GatScratch& w) noexcept {
  const std::size_t H = p.heads, C = p.channels;
  float* out = p.out + (p.out_index ? static_cast<std::size_t>(p.out_index[i]) : i) * p.ldo;
  if (p.concat) {
    for (std::size_t c = 0; c < H * C; ++c) out[c] = p.bias ? w.acc[c] + p.bias[c] : w.acc[c];
    return;
  }
  const float inv_heads = 1.0f / static_cast<float>(H);
  for (std::size_t c = 0; c < C; ++c) {
    float v = 0.0f;
    for (std::size_t h = 0; h < H; ++h) v += w.acc[h * C + c];
    v *= inv_heads;
    out[c] = p.bias ? v + p.bias[c] : v;
  }
}

void write_weights(const GatParams& p, std::size_t i, const float* s) noexcept {
  const std::size_t H = p.heads;
  auto put = [&](std::size_t row, std::size_t k) { std::memcpy(p.weights + row * H, s + k * H, H * sizeof(float)); };
  std::size_t k = 0;
  for (std::int64_t e = p.indptr[i]; e < p.indptr[i + 1]; ++e)
    put(static_cast<std::size_t>(p.out_row ? p.out_row[e] : p.edge_id[e]), k++);
  if (p.loop_indptr)
    for (std::int64_t e = p.loop_indptr[i]; e < p.loop_indptr[i + 1]; ++e)
      put(static_cast<std::size_t>(p.loop_edge_id[e]), k++);
  if (p.add_self_loops && i < p.loop_nodes) put(p.loop_row0 + i, k);
}

bool gat_kernel(const GatParams& p, std::size_t node_begin, std::size_t node_end) noexcept {
  if (node_begin >= node_end) return true;
  const std::size_t H = p.heads, HC = p.heads * p.channels;
  // GAT keeps the coefficients of the whole task (its edges × H, L2-sized: tasks are ~4k
  // edges), GATv2 those of one target at a time.
  std::size_t score_rows = 1;
  for (std::size_t i = node_begin; i < node_end; ++i)
    score_rows = p.v2 ? std::max(score_rows, edges_of(p, i)) : score_rows + edges_of(p, i);
  const std::size_t period = H / gcd_size(H, W) * W;
  const std::size_t padded = (HC + W - 1) / W * W;
  const std::size_t targets = p.v2 ? node_end - node_begin : 0;
  const std::size_t size = score_rows * H + 3 * padded + 2 * period + 2 * H + targets * HC;
  Scratch<float> buf(size);
  if (!buf.ok(size)) return false;
  GatScratch w;
  w.scores = buf.ptr;
  w.acc = w.scores + score_rows * H;
  w.row = w.acc + padded;
  w.terms = w.row + padded;
  w.pattern = w.terms + padded;
  w.phase_acc = w.pattern + period;
  w.head_max = w.phase_acc + period;
  w.head_inv = w.head_max + H;
  w.x_dst = w.head_inv + H;
  w.first_target = node_begin;
  w.period = period;
  const std::int64_t end = p.indptr[node_end];

  if (!p.v2) {
    // Two sweeps over the task: all scores and softmaxes (gathers of the small α_src rows),
    // then all aggregations (gathers of the source rows). Each sweep's loads are independent
    // of each other, so many misses are in flight at once; interleaving the two per target
    // put a softmax between them and left the memory idle.
    float* s = w.scores;
    for (std::size_t i = node_begin; i < node_end; ++i) {
      const std::size_t n = edges_of(p, i);
      score_gat(p, i, s, end);
      if (n > 0) softmax_heads(s, n, H, w);
      s += n * H;
    }
    s = w.scores;
    for (std::size_t i = node_begin; i < node_end; ++i) {
      aggregate(p, i, s, w, end);
      write_output(p, i, w);
      if (p.weights) write_weights(p, i, s);
      s += edges_of(p, i) * H;
    }
    return true;
  }

  {  // this task's target rows, while they are needed: L2-sized, never [N, H·C]
    GatTransform t;
    t.x = p.x + node_begin * p.ld_x;
    t.ld_x = p.ld_x;
    t.weight = p.w_dst;
    t.bias = p.b_dst;
    t.in_features = p.in_features;
    t.heads = H;
    t.channels = p.channels;
    t.out = w.x_dst;
    t.ld_out = HC;
    if (!transform_kernel(t, 0, targets)) return false;
  }
  // GATv2 scores need the source rows themselves: score, softmax and aggregate per target,
  // the second read of each row hitting L1.
  for (std::size_t i = node_begin; i < node_end; ++i) {
    const std::size_t n = edges_of(p, i);
    score_gatv2(p, i, w.scores, w, end);
    if (n > 0) softmax_heads(w.scores, n, H, w);
    aggregate(p, i, w.scores, w, end);
    write_output(p, i, w);
    if (p.weights) write_weights(p, i, w.scores);
  }
  return true;
}

}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
