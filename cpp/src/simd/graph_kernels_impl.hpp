// GAT/GATv2 kernels, written once on `Vec` (kernels_impl.hpp includes this file at its end,
// inside each per-ISA translation unit; everything here lives in RUVECTOR_ISA_NS).
//
// One target node at a time, one pass over its incoming edges: each edge's scores fold into a
// running (online) softmax per head, and its source row into accumulators rescaled when a
// head's maximum rises, so the gathers of scores and rows overlap with no barrier between
// them. Memory: the target's raw scores [edges × H] (for the coefficients) and one row of
// accumulators per task; never an E·H·C temporary.
#include "graph_kernels.hpp"

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

namespace ruvector::simd {
namespace RUVECTOR_ISA_NS {
namespace {

// Gathers of source rows miss the cache (random graphs): rows are requested this many edges
// ahead in the CSR order, across target boundaries, into L2 (more misses in flight than L1).
constexpr std::int64_t kRowsAhead = RUVECTOR_GAT_AHEAD;
constexpr std::int64_t kScoresAhead = 16;  // GAT: the per-node score halves (one line each)

RUVECTOR_GAT_INLINE void prefetch_lines(const float* first, std::size_t n) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  const char* p = reinterpret_cast<const char*>(first);
  const char* end = reinterpret_cast<const char*>(first + n);
  for (; p < end; p += 64) __builtin_prefetch(p, 0, RUVECTOR_GAT_LOCALITY);
  __builtin_prefetch(end - 1, 0, RUVECTOR_GAT_LOCALITY);
#else
  (void)first;
  (void)n;
#endif
}

// Requests row source[pos + ahead] of `base` when that edge is in this task's range.
RUVECTOR_GAT_INLINE void prefetch_ahead(const GatParams& p, std::int64_t pos, std::int64_t ahead, std::int64_t end,
                           const float* base, std::size_t ld, std::size_t n) noexcept {
  if (pos >= 0 && pos + ahead < end) prefetch_lines(base + static_cast<std::size_t>(p.source[pos + ahead]) * ld, n);
}

inline float leaky_relu(float x, float slope) noexcept { return x > 0.0f ? x : x * slope; }

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

bool transform_kernel(const GatTransform& t, std::size_t row_begin, std::size_t row_end) noexcept {
  if (row_begin >= row_end) return true;
  const std::size_t H = t.heads, C = t.channels, HC = H * C;
  GemmParams g;
  g.a = t.x + row_begin * t.ld_x;
  g.lda = t.ld_x;
  g.b = t.weight;
  g.ldb = t.in_features;
  g.b_transposed = true;
  g.c = t.out + row_begin * t.ld_out;
  g.ldc = t.ld_out;
  g.bias = t.bias;
  g.m = row_end - row_begin;
  g.n = HC;
  g.k = t.in_features;
  if (!gemm_kernel(g, Parallel{})) return false;
  if (t.att_src == nullptr) return true;
  for (std::size_t i = row_begin; i < row_end; ++i) {
    const float* row = t.out + i * t.ld_out;
    for (std::size_t h = 0; h < H; ++h) {
      t.alpha_src[i * H + h] = dot_kernel(row + h * C, t.att_src + h * C, C);
      t.alpha_dst[i * H + h] = dot_kernel(row + h * C, t.att_dst + h * C, C);
    }
  }
  return true;
}

// Per-task scratch.
struct GatScratch {
  float* scores;   // [max_edges × H]: raw scores of the current target's edges
  float* acc;      // [H·C]: Σ exp(s − m)·x_j per head, rescaled as m rises
  float* proj;     // [H·C]: GATv2 projected edge features of the current edge
  float* terms;    // [H·C]: GATv2 per-channel terms when C is not a multiple of the width
  float* cur;      // [Hp]: current edge's scores, padded to whole vectors (pad lanes 0)
  float* head_max; // [Hp]: running maximum per head (−inf before any edge)
  float* head_sum; // [Hp]: running Σ exp(s − max) per head
  float* scale;    // [Hp]: exp(old max − new max) of the current edge
  float* prob;     // [Hp]: exp(s − new max) of the current edge
  float* pattern;  // [lcm(H, W)]: per-head values repeated, for whole-buffer vector passes
  float* x_dst;    // GATv2: the task's target rows x·W_rᵀ + b_r, [targets × H·C]
  std::size_t first_target;
  std::size_t padded_heads;  // Hp
  std::size_t period;        // lcm(H, W)
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
  for (; t < total; ++t, ++phase) x[t] = sop(x[t], pattern[phase]);  // phase < period here
}

// pattern[u] = values[u mod H] for u < period (a running counter: no division per element).
void fill_pattern(float* pattern, std::size_t period, const float* values, std::size_t heads) noexcept {
  for (std::size_t u = 0, h = 0; u < period; ++u) {
    pattern[u] = values[h];
    if (++h == heads) h = 0;
  }
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
  if (p.loop_indptr)
    for (std::int64_t e = p.loop_indptr[i]; e < p.loop_indptr[i + 1]; ++e)
      fn(k++, EdgeRef{static_cast<std::int64_t>(i), p.loop_edge_id[e], -1});
  if (p.add_self_loops) fn(k++, EdgeRef{static_cast<std::int64_t>(i), -1, -1});
}

std::size_t edges_of(const GatParams& p, std::size_t i) noexcept {
  std::size_t n = static_cast<std::size_t>(p.indptr[i + 1] - p.indptr[i]);
  if (p.loop_indptr) n += static_cast<std::size_t>(p.loop_indptr[i + 1] - p.loop_indptr[i]);
  return n + (p.add_self_loops ? 1 : 0);
}

// GAT: e = LeakyReLU(α_src[j] + α_dst[i] (+ α_edge)), per head, into sk[H].
void score_gat(const GatParams& p, std::size_t i, EdgeRef e, float* sk) noexcept {
  const std::size_t H = p.heads;
  const float* as = p.alpha_src + static_cast<std::size_t>(e.source) * H;
  const float* ad = p.alpha_dst + i * H;
  const float* ae = nullptr;
  if (p.edge_alpha)
    ae = e.feature_row >= 0 ? p.edge_alpha + static_cast<std::size_t>(e.feature_row) * H : p.loop_alpha + i * H;
  for (std::size_t h = 0; h < H; ++h) {
    float v = as[h] + ad[h];
    if (ae) v += ae[h];
    sk[h] = leaky_relu(v, p.negative_slope);
  }
}

// GATv2: e = att·LeakyReLU(x_l[j] + x_r[i] (+ W_e f)), per head, into sk[H].
void score_gatv2(const GatParams& p, std::size_t i, EdgeRef e, const float* xl, const float* xr, float* sk,
                 GatScratch& w) noexcept {
  const std::size_t H = p.heads, C = p.channels, HC = H * C;
  const float* proj = nullptr;
  if (p.edge_features) {
    const float* f = e.feature_row >= 0 ? p.edge_features + static_cast<std::size_t>(e.feature_row) * p.ld_ef
                                        : p.loop_features + i * p.edge_dim;
    std::memset(w.proj, 0, HC * sizeof(float));
    for (std::size_t d = 0; d < p.edge_dim; ++d) axpy_kernel(f[d], p.edge_proj + d * HC, w.proj, HC);
    proj = w.proj;
  }
  const reg vslope = Vec::broadcast(p.negative_slope);
  if (C % W == 0) {
    for (std::size_t h = 0; h < H; ++h) {
      reg acc = Vec::zero();
      for (std::size_t c = h * C; c < (h + 1) * C; c += W) {
        reg t = Vec::add(Vec::load(xr + c), Vec::load(xl + c));
        if (proj) t = Vec::add(t, Vec::load(proj + c));
        acc = Vec::fma(leaky_relu_vec(t, vslope), Vec::load(p.att + c), acc);
      }
      sk[h] = Vec::hsum(acc);
    }
    return;
  }
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

// The shift exp() is taken against: the running maximum, or 0 while it is −inf (so a −inf
// score contributes exp(−inf) = 0 instead of NaN, as in a two-pass softmax).
inline reg safe_shift(reg m) noexcept { return Vec::where_gt(m, Vec::broadcast(kNegInf), Vec::zero(), m); }

// Folds one edge (scores sk[H], source row xj) into the target's running softmax and sums.
void fold_edge(const GatParams& p, const float* sk, const float* xj, GatScratch& w) noexcept {
  const std::size_t H = p.heads, C = p.channels;
  std::memcpy(w.cur, sk, H * sizeof(float));
  for (std::size_t hv = 0; hv < w.padded_heads; hv += W) {
    const reg s = Vec::load(w.cur + hv), m_old = Vec::load(w.head_max + hv);
    const reg m_new = Vec::max(m_old, s);
    const reg shift = safe_shift(m_new);
    const reg scale = Vec::exp(Vec::sub(safe_shift(m_old), shift));
    const reg prob = Vec::exp(Vec::sub(s, shift));
    Vec::store(w.head_max + hv, m_new);
    Vec::store(w.scale + hv, scale);
    Vec::store(w.prob + hv, prob);
    Vec::store(w.head_sum + hv, Vec::fma(Vec::load(w.head_sum + hv), scale, prob));
  }
  for (std::size_t h = 0; h < H; ++h) {
    const float sc = w.scale[h], pr = w.prob[h];
    float* acc = w.acc + h * C;
    const float* x = xj + h * C;
    if (C % W == 0) {
      const reg vp = Vec::broadcast(pr);
      if (sc == 1.0f) {  // the usual case: the maximum did not move
        for (std::size_t c = 0; c < C; c += W) Vec::store(acc + c, Vec::fma(vp, Vec::load(x + c), Vec::load(acc + c)));
      } else {
        const reg vs = Vec::broadcast(sc);
        for (std::size_t c = 0; c < C; c += W)
          Vec::store(acc + c, Vec::fma(vp, Vec::load(x + c), Vec::mul(Vec::load(acc + c), vs)));
      }
    } else {
      for (std::size_t c = 0; c < C; ++c) acc[c] = acc[c] * sc + pr * x[c];
    }
  }
}

// out_i = acc / (Σ + 1e-16) per head (PyG's softmax epsilon), concatenated or averaged, + bias.
void write_output(const GatParams& p, std::size_t i, GatScratch& w) noexcept {
  const std::size_t H = p.heads, C = p.channels;
  for (std::size_t h = 0; h < H; ++h) w.scale[h] = 1.0f / (w.head_sum[h] + 1e-16f);  // reused: 1 / Σ
  float* out = p.out + i * p.ldo;
  if (p.concat) {
    for (std::size_t h = 0; h < H; ++h) {
      const float inv = w.scale[h];
      for (std::size_t c = h * C; c < (h + 1) * C; ++c) out[c] = p.bias ? w.acc[c] * inv + p.bias[c] : w.acc[c] * inv;
    }
    return;
  }
  const float inv_heads = 1.0f / static_cast<float>(H);
  for (std::size_t c = 0; c < C; ++c) {
    float v = 0.0f;
    for (std::size_t h = 0; h < H; ++h) v += w.acc[h * C + c] * w.scale[h];
    v *= inv_heads;
    out[c] = p.bias ? v + p.bias[c] : v;
  }
}

// Coefficients exp(s − max) / (Σ + 1e-16) of target i's n edges, to their rows.
void write_weights(const GatParams& p, std::size_t i, std::size_t n, GatScratch& w) noexcept {
  const std::size_t H = p.heads;
  float* s = w.scores;
  for (std::size_t hv = 0; hv < w.padded_heads; hv += W)
    Vec::store(w.head_max + hv, safe_shift(Vec::load(w.head_max + hv)));
  fill_pattern(w.pattern, w.period, w.head_max, H);
  per_head_pass(
      s, n * H, w.pattern, w.period, [](reg x, reg m) { return Vec::exp(Vec::sub(x, m)); },
      [](float x, float m) { return scalar_exp(x - m); });
  fill_pattern(w.pattern, w.period, w.scale, H);  // 1 / Σ, from write_output
  per_head_pass(
      s, n * H, w.pattern, w.period, [](reg x, reg inv) { return Vec::mul(x, inv); },
      [](float x, float inv) { return x * inv; });
  auto put = [&](std::size_t row, std::size_t k) { std::memcpy(p.weights + row * H, s + k * H, H * sizeof(float)); };
  std::size_t k = 0;
  for (std::int64_t e = p.indptr[i]; e < p.indptr[i + 1]; ++e)
    put(static_cast<std::size_t>(p.out_row ? p.out_row[e] : p.edge_id[e]), k++);
  if (p.loop_indptr)
    for (std::int64_t e = p.loop_indptr[i]; e < p.loop_indptr[i + 1]; ++e)
      put(static_cast<std::size_t>(p.loop_edge_id[e]), k++);
  if (p.add_self_loops) put(p.loop_row0 + i, k);
}

bool gat_kernel(const GatParams& p, std::size_t node_begin, std::size_t node_end) noexcept {
  if (node_begin >= node_end) return true;
  const std::size_t H = p.heads, C = p.channels, HC = H * C;
  std::size_t max_edges = 1;
  if (p.weights)
    for (std::size_t i = node_begin; i < node_end; ++i) max_edges = std::max(max_edges, edges_of(p, i));
  const std::size_t period = H / gcd_size(H, W) * W;
  const std::size_t hp = (H + W - 1) / W * W;
  const std::size_t padded = (HC + W - 1) / W * W;
  const std::size_t targets = p.v2 ? node_end - node_begin : 0;
  const std::size_t size = max_edges * H + 3 * padded + 5 * hp + period + targets * HC;
  Scratch<float> buf(size);
  if (!buf.ok(size)) return false;
  GatScratch w;
  w.scores = buf.ptr;
  w.acc = w.scores + max_edges * H;
  w.proj = w.acc + padded;
  w.terms = w.proj + padded;
  w.cur = w.terms + padded;
  w.head_max = w.cur + hp;
  w.head_sum = w.head_max + hp;
  w.scale = w.head_sum + hp;
  w.prob = w.scale + hp;
  w.pattern = w.prob + hp;
  w.x_dst = w.pattern + period;
  w.first_target = node_begin;
  w.padded_heads = hp;
  w.period = period;
  std::memset(w.cur, 0, hp * sizeof(float));  // pad lanes stay 0
  if (p.v2) {  // this task's target rows, while they are needed: L2-sized, never [N, H·C]
    GatTransform t;
    t.x = p.x + node_begin * p.ld_x;
    t.ld_x = p.ld_x;
    t.weight = p.w_dst;
    t.bias = p.b_dst;
    t.in_features = p.in_features;
    t.heads = H;
    t.channels = C;
    t.out = w.x_dst;
    t.ld_out = HC;
    if (!transform_kernel(t, 0, targets)) return false;
  }
  const std::int64_t end = p.indptr[node_end];
  float edge_scores[64];  // one edge's scores when the coefficients are not kept
  float* one_edge = H <= 64 ? edge_scores : w.scores;

  for (std::size_t i = node_begin; i < node_end; ++i) {
    for (std::size_t h = 0; h < hp; ++h) {
      w.head_max[h] = kNegInf;
      w.head_sum[h] = 0.0f;
    }
    std::memset(w.acc, 0, HC * sizeof(float));
    const float* xr = p.v2 ? w.x_dst + (i - node_begin) * HC : nullptr;
    std::size_t n = 0;
    for_each_edge(p, i, [&](std::size_t k, EdgeRef e) {
      // gathers miss the cache on large graphs: request them ahead, across target boundaries
      prefetch_ahead(p, e.pos, kRowsAhead, end, p.x_src, p.ld_src, HC);
      if (!p.v2) prefetch_ahead(p, e.pos, kScoresAhead, end, p.alpha_src, H, H);
      const float* xj = p.x_src + static_cast<std::size_t>(e.source) * p.ld_src;
      float* sk = p.weights ? w.scores + k * H : one_edge;
      if (p.v2)
        score_gatv2(p, i, e, xj, xr, sk, w);
      else
        score_gat(p, i, e, sk);
      fold_edge(p, sk, xj, w);
      n = k + 1;
    });
    write_output(p, i, w);
    if (p.weights) write_weights(p, i, n, w);
  }
  return true;
}

}  // namespace

const GraphKernelTable& graph_table() noexcept {
  static const GraphKernelTable t{RUVECTOR_ISA_NAME, &transform_kernel, &gat_kernel};
  return t;
}

}  // namespace RUVECTOR_ISA_NS
}  // namespace ruvector::simd
