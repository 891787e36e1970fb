// GraphAttention's compute path: the checks, the node transform through the GAT transform
// kernel (GAT also takes its per-node score halves there), edge-feature scores through the GEMM,
// then the per-target edge kernel of the active backend in parallel over edge-balanced ranges of
// targets.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "attention_core.hpp"
#include "graph/internal.hpp"
#include "memory/memory.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/graph.hpp"
#include "ruvector/simd.hpp"
#include "thread_pool_internal.hpp"
#include "simd/kernels.hpp"

namespace ruvector {
namespace {

// Targets with an added self-loop: ids below min(N_src, N_dst) (all N without a bipartite graph).
std::int64_t loop_nodes_of(const detail::GraphCsr& g) {
  return std::min(g.num_sources, g.num_nodes);
}

std::int64_t used_edges(const detail::GraphCsr& g, bool add_self_loops) {
  return add_self_loops ? g.num_ordinary_edges() + loop_nodes_of(g) : g.num_edges;
}

const char* variant_name(GraphVariant v) {
  return v == GraphVariant::Gat ? "gat" : "gatv2";
}

std::string n_str(std::int64_t v) {
  return std::to_string(v);
}

}  // namespace

void GraphAttention::validate(const MatrixRef& x, const GraphStructure& graph, const GraphOptions& options) const {
  check(x, x, graph, options, false);
}

void GraphAttention::validate(const MatrixRef& x_src, const MatrixRef& x_dst, const GraphStructure& graph,
                              const GraphOptions& options) const {
  check(x_src, x_dst, graph, options, true);
}

void GraphAttention::check(const MatrixRef& xs, const MatrixRef& xd, const GraphStructure& graph,
                           const GraphOptions& options, bool bipartite) const {
  const detail::GraphCsr& g = graph.csr();
  if (!bipartite) {
    if (g.num_sources != g.num_nodes)
      throw InvalidInput("this graph is bipartite (num_nodes=(" + n_str(g.num_sources) + ", " + n_str(g.num_nodes) +
                         ")): pass the node features as a pair (x_src, x_dst)");
    if (g.num_nodes != xs.rows())
      throw DimensionMismatch("node_features has " + n_str(xs.rows()) + " rows, but the graph has " +
                                  n_str(g.num_nodes) + " nodes: give one feature row per node",
                              g.num_nodes, xs.rows());
  } else {
    if (g.num_sources != xs.rows())
      throw DimensionMismatch("x_src has " + n_str(xs.rows()) + " rows, but the graph has " + n_str(g.num_sources) +
                                  " source nodes: give one row per source node (num_nodes=(N_src, N_dst))",
                              g.num_sources, xs.rows());
    if (g.num_nodes != xd.rows())
      throw DimensionMismatch("x_dst has " + n_str(xd.rows()) + " rows, but the graph has " + n_str(g.num_nodes) +
                                  " target nodes: give one row per target node (num_nodes=(N_src, N_dst))",
                              g.num_nodes, xd.rows());
  }
  auto p = snapshot();
  const auto width_error = [](const char* what, std::int64_t expected, std::int64_t got, const char* which) {
    return DimensionMismatch(std::string(what) + " has " + n_str(got) + " columns, but this layer takes " +
                                 n_str(expected) + " (" + which + "): give [N, " + n_str(expected) + "] features",
                             expected, got);
  };
  if (p) {
    if (p->in_features != xs.cols())
      throw width_error(bipartite ? "x_src" : "node_features", p->in_features, xs.cols(),
                        graph_config_.in_features_dst ? "in_features[0]" : "in_features");
    if (p->in_features_dst != xd.cols()) {
      if (!bipartite)
        throw InvalidInput("this layer takes in_features=(" + n_str(p->in_features) + ", " +
                           n_str(p->in_features_dst) + "): pass the node features as a pair (x_src, x_dst)");
      throw width_error("x_dst", p->in_features_dst, xd.cols(),
                        graph_config_.in_features_dst ? "in_features[1]" : "in_features");
    }
  } else if (bipartite && xs.cols() != xd.cols()) {
    throw DimensionMismatch("x_src has " + n_str(xs.cols()) + " columns and x_dst " + n_str(xd.cols()) +
                                ": a layer with one in_features applies the same projection to both; create it with "
                                "in_features=(F_src, F_dst)",
                            xs.cols(), xd.cols());
  }
  if (graph.has_edge_features()) {
    if (!graph_config_.edge_dim)
      throw InvalidInput("the graph has edge features but this layer has edge_dim=None: create it with edge_dim=" +
                         n_str(graph.edge_feature_dim()) +
                         " to use them, or build the GraphStructure without edge_features");
    if (graph.edge_feature_dim() != *graph_config_.edge_dim)
      throw DimensionMismatch("edge_features has " + n_str(graph.edge_feature_dim()) +
                                  " columns, but this layer has edge_dim=" + n_str(*graph_config_.edge_dim) +
                                  ": give [E, " + n_str(*graph_config_.edge_dim) + "] edge features",
                              *graph_config_.edge_dim, graph.edge_feature_dim());
  }
  if (options.has_targets)
    for (std::size_t k = 0; k < options.targets.size(); ++k) {
      const std::int64_t t = options.targets[k];
      if (t < 0 || t >= g.num_nodes)
        throw InvalidInput("targets[" + std::to_string(k) + "] = " + n_str(t) +
                           " is out of range: target ids must be in [0, " + n_str(g.num_nodes) + ")");
    }
  const std::int64_t hc = static_cast<std::int64_t>(config_.num_heads) * config_.head_dim;
  memory::checked_elements(xs.rows(), hc, "transformed node features", "use fewer nodes, heads or channels");
  memory::checked_elements(options.has_targets ? static_cast<std::int64_t>(options.targets.size()) : xd.rows(),
                           out_features(), "output", "use fewer nodes, heads or channels");
  if (graph.has_edge_features() && graph_config_.variant == GraphVariant::Gat)
    memory::checked_elements(g.num_edges, config_.num_heads, "edge scores", "use fewer edges or heads");
  if (options.need_weights)
    memory::checked_elements(used_edges(g, graph_config_.add_self_loops), config_.num_heads + 4, "attention weights",
                             "pass need_weights=False to compute without them");
}

namespace {

// Splits targets [0, N) into ranges of about equal work, enough of them for the pool to
// balance skewed degrees. A target costs `node_cost` edges' worth of work (GATv2 also
// transforms its row per task) and a range holds at most `max_targets` of them (bounding that
// task's scratch).
std::vector<std::size_t> target_ranges(const detail::GraphCsr& g, double node_cost, std::size_t max_targets) {
  const std::size_t n = static_cast<std::size_t>(g.num_nodes);
  const auto cost_before = [&](std::size_t i) {
    return static_cast<double>(g.indptr[i]) + node_cost * static_cast<double>(i);
  };
  constexpr double kWorkPerRange = 4096.0, kMinWorkPerRange = 256.0;
  const double total = cost_before(n);
  // A small call (a few thousand edges: targets=) still gets a few ranges per thread, so that
  // a worker starting late does not leave its half of the call to the end.
  const double threads = static_cast<double>(std::max<std::size_t>(1, get_num_threads()));
  const double wanted = std::max(total / kWorkPerRange, std::min(4.0 * threads, total / kMinWorkPerRange));
  const std::size_t ranges = std::max<std::size_t>(1, std::min<std::size_t>(n, static_cast<std::size_t>(wanted)));
  std::vector<std::size_t> bounds{0};
  for (std::size_t r = 1; r <= ranges; ++r) {
    std::size_t next = n;
    if (r < ranges) {
      const double goal = total * static_cast<double>(r) / static_cast<double>(ranges);
      std::size_t lo = bounds.back(), hi = n;  // first i with cost_before(i) >= goal
      while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (cost_before(mid) < goal)
          lo = mid + 1;
        else
          hi = mid;
      }
      next = lo;
    }
    while (next - bounds.back() > max_targets) bounds.push_back(bounds.back() + max_targets);
    if (next > bounds.back() || r == ranges) bounds.push_back(next);
  }
  if (bounds.size() == 1) bounds.push_back(n);
  return bounds;
}

constexpr std::size_t kTransformRows = 1024;  // rows per transform task (its x' block stays in L2)

// Rows per transform task: at most kTransformRows, in about a multiple of the pool's threads
// of tasks, so that they finish together (9 blocks of 1024 on 2 threads left one thread idle
// for a ninth of a targets= call).
std::size_t transform_block(std::size_t rows) {
  const std::size_t threads = std::max<std::size_t>(1, get_num_threads());
  const std::size_t rounds = (rows + threads * kTransformRows - 1) / (threads * kTransformRows);
  const std::size_t tasks = std::max<std::size_t>(1, rounds * threads);
  return std::max<std::size_t>(1, (rows + tasks - 1) / tasks);
}

// Runs fn(begin, end) -> bool over row blocks of [0, rows) on the pool; false (a kernel out
// of scratch memory) becomes std::bad_alloc.
template <class Fn>
void parallel_blocks(std::size_t rows, std::size_t block, Fn fn) {
  const std::size_t blocks = (rows + block - 1) / block;
  std::atomic<bool> failed{false};
  parallel_for(blocks, [&](std::size_t b) {
    if (!fn(b * block, std::min(rows, (b + 1) * block))) failed.store(true, std::memory_order_relaxed);
  });
  if (failed.load()) throw std::bad_alloc();
}

// The edge features of each target's added self-loop, [n, de], as PyG's add_self_loops
// (fill_value): a reduction over the target's ordinary in-edges (CSR order, summed in double),
// 0 for a target with none (1 for Mul), or the constant.
void fill_loop_features(const detail::GraphCsr& g, const float* features, std::size_t de, FillMode mode,
                        double constant, float* out) {
  const std::size_t n = static_cast<std::size_t>(g.num_nodes);
  std::vector<double> acc(de);
  for (std::size_t i = 0; i < n; ++i) {
    float* row = out + i * de;
    const std::int64_t begin = g.indptr[i], end = g.indptr[i + 1];
    if (mode == FillMode::Constant) {
      std::fill(row, row + de, static_cast<float>(constant));
      continue;
    }
    if (begin == end) {
      std::fill(row, row + de, mode == FillMode::Mul ? 1.0f : 0.0f);
      continue;
    }
    const float* first = features + static_cast<std::size_t>(g.edge_id[static_cast<std::size_t>(begin)]) * de;
    for (std::size_t c = 0; c < de; ++c) acc[c] = mode == FillMode::Mean || mode == FillMode::Add ? 0.0 : first[c];
    for (std::int64_t p = mode == FillMode::Mean || mode == FillMode::Add ? begin : begin + 1; p < end; ++p) {
      const float* f = features + static_cast<std::size_t>(g.edge_id[static_cast<std::size_t>(p)]) * de;
      for (std::size_t c = 0; c < de; ++c) switch (mode) {
          case FillMode::Max: acc[c] = std::max(acc[c], static_cast<double>(f[c])); break;
          case FillMode::Min: acc[c] = std::min(acc[c], static_cast<double>(f[c])); break;
          case FillMode::Mul: acc[c] *= f[c]; break;
          default: acc[c] += f[c]; break;
        }
    }
    const double count = mode == FillMode::Mean ? static_cast<double>(end - begin) : 1.0;
    for (std::size_t c = 0; c < de; ++c) row[c] = static_cast<float>(acc[c] / count);
  }
}

// The index of the lowest set bit of a non-zero word.
int lowest_bit(std::uint64_t bits) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(bits);
#else
  int b = 0;
  for (; (bits & 1) == 0; bits >>= 1) ++b;
  return b;
#endif
}

// Local ids of source nodes in first-use order (appended to `sources`), through an
// open-addressing table sized by the targets' edges, never by N: the cost follows the targets
// (an N-sized map took a fill of N entries per call, and on a graph of 10⁸ nodes as many
// bytes times eight). A thread reuses its table between calls, a stamp per slot telling
// which call wrote it, so a call neither clears a table nor faults fresh pages in (the pages
// of a new 0.5 MB table cost ~30 µs of a 1 ms targets= call); tables above kKeptSlots are
// the call's own.
class SourceIds {
 public:
  SourceIds(std::size_t expected, std::vector<std::int64_t>& sources) : sources_(sources) {
    std::size_t slots = 16;
    while (slots < 2 * expected) slots *= 2, --shift_;
    mask_ = slots - 1;
    Table& table = slots <= kKeptSlots ? kept() : own_;
    if (table.slots.size() < slots) table.slots.resize(slots);  // new slots: stamp 0, unused
    if (++table.stamp == 0) {  // the stamps went round: forget every slot once
      for (Slot& slot : table.slots) slot.stamp = 0;
      table.stamp = 1;
    }
    slots_ = table.slots.data();
    stamp_ = table.stamp;
  }

  std::int64_t operator()(std::int64_t s) {
    // Fibonacci hashing (the top bits of s·2⁶⁴/φ): nearby ids spread over the table
    std::size_t h = static_cast<std::size_t>((static_cast<std::uint64_t>(s) * 0x9e3779b97f4a7c15ULL) >> shift_);
    while (slots_[h].stamp == stamp_ && slots_[h].key != s) h = (h + 1) & mask_;
    Slot& slot = slots_[h];
    if (slot.stamp != stamp_) {
      slot = Slot{s, static_cast<std::uint32_t>(sources_.size()), stamp_};
      sources_.push_back(s);
    }
    return static_cast<std::int64_t>(slot.value);
  }

 private:
  static constexpr std::size_t kKeptSlots = std::size_t{1} << 17;  // 2 MB per thread at most
  struct Slot {  // 16 bytes: local ids fit 32 bits (the caller checks)
    std::int64_t key = 0;
    std::uint32_t value = 0, stamp = 0;
  };
  struct Table {
    std::vector<Slot> slots;
    std::uint32_t stamp = 0;
  };
  static Table& kept() {
    thread_local Table table;
    return table;
  }

  std::vector<std::int64_t>& sources_;
  Table own_;
  Slot* slots_ = nullptr;
  std::size_t mask_ = 0;
  unsigned shift_ = 60;  // 64 - log2(slots)
  std::uint32_t stamp_ = 0;
};

// The part of a graph some targets need: their in-edges, renumbered. Targets are the distinct
// ids in ascending order (so those with an added self-loop, ids below min(N_src, N_dst), come
// first); sources the distinct source rows their edges read, in first-use order for a few
// targets, ascending for many.
struct TargetGraph {
  detail::GraphCsr csr;
  std::vector<std::int64_t> targets;      // local target → global id
  std::vector<std::int64_t> asked_local;  // the k-th target asked for → its local id
  std::vector<std::int64_t> sources;      // local source → global id
  std::vector<std::int64_t> loop_source;  // [loop_nodes] local source row of target i's self-loops
  std::vector<std::int64_t> edge_global;  // compact edge id → given edge id
  std::size_t loop_nodes = 0;
  RowMatrixXf edge_features;  // compact rows, [edges, de] (with edge features)
};

TargetGraph target_graph(const GraphStructure& graph, const std::vector<std::int64_t>& wanted, bool add_self_loops) {
  const detail::GraphCsr& g = graph.csr();
  TargetGraph t;
  std::vector<std::pair<std::int64_t, std::size_t>> asked(wanted.size());  // (id, place)
  for (std::size_t k = 0; k < wanted.size(); ++k) asked[k] = {wanted[k], k};
  std::sort(asked.begin(), asked.end());
  t.asked_local.resize(wanted.size());
  for (const auto& [id, k] : asked) {
    if (t.targets.empty() || t.targets.back() != id) t.targets.push_back(id);
    t.asked_local[k] = static_cast<std::int64_t>(t.targets.size() - 1);
  }
  const std::size_t n = t.targets.size();
  t.loop_nodes = static_cast<std::size_t>(
      std::lower_bound(t.targets.begin(), t.targets.end(), loop_nodes_of(g)) - t.targets.begin());
  const bool keep_loops = !add_self_loops && g.num_self_loops > 0;
  const bool self_rows = add_self_loops || keep_loops;
  detail::GraphCsr& c = t.csr;
  c.num_nodes = static_cast<std::int64_t>(n);
  // 1. Each target's edges: where they start in the graph, and in the part (independent
  //    loads, many in flight).
  c.indptr.resize(n + 1);
  c.indptr[0] = 0;
  std::vector<std::int64_t> first(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t u = t.targets[i];
    first[i] = g.indptr[u];
    c.indptr[i + 1] = c.indptr[i] + (g.indptr[u + 1] - g.indptr[u]);
  }
  const std::size_t edges = static_cast<std::size_t>(c.indptr[n]);
  if (edges + n >= (std::size_t{1} << 32))
    throw InvalidInput("targets= reads " + std::to_string(edges) +
                       " edges: more than 2^32 - 1; pass fewer targets per call");
  // 2. Their source ids and edge ids, copied on the pool: random lines of the graph, a later
  //    target's requested while this one's are copied.
  std::vector<std::int64_t> global_source(edges);
  t.edge_global.resize(edges);
  constexpr std::size_t kTargetsPerTask = 256, kAheadTargets = 8;
  const auto copy_edges = [&](std::size_t chunk) {
    const std::size_t end = std::min(n, (chunk + 1) * kTargetsPerTask);
    for (std::size_t i = chunk * kTargetsPerTask; i < end; ++i) {
#if defined(__GNUC__) || defined(__clang__)
      if (i + kAheadTargets < end) {
        __builtin_prefetch(g.source.data() + first[i + kAheadTargets]);
        __builtin_prefetch(g.edge_id.data() + first[i + kAheadTargets]);
      }
#endif
      const std::size_t count = static_cast<std::size_t>(c.indptr[i + 1] - c.indptr[i]);
      const std::size_t at = static_cast<std::size_t>(c.indptr[i]), from = static_cast<std::size_t>(first[i]);
      std::copy_n(g.source.data() + from, count, global_source.data() + at);
      std::copy_n(g.edge_id.data() + from, count, t.edge_global.data() + at);
    }
  };
  const std::size_t chunks = (n + kTargetsPerTask - 1) / kTargetsPerTask;
  if (chunks > 1)
    parallel_for(chunks, copy_edges);
  else if (chunks == 1)
    copy_edges(0);
  // 3. Local source ids (the part's edges are numbered in CSR order).
  c.source.resize(edges);
  const std::size_t N = static_cast<std::size_t>(g.num_sources);
  if ((edges + n) * 8 >= N) {
    // Many targets (their edges at least N/8): ascending ids through a bitmap of the N
    // sources, so the transform reads x in address order as the full call does (in first-use
    // order it read x at random: targets= of every node took 3x the full call). O(N/64 + edges).
    std::vector<std::uint64_t> used((N + 63) / 64, 0);
    const auto mark = [&used](std::int64_t s) {
      used[static_cast<std::size_t>(s) >> 6] |= std::uint64_t{1} << (static_cast<std::size_t>(s) & 63);
    };
    for (std::size_t k = 0; k < edges; ++k) mark(global_source[k]);
    if (self_rows)
      for (std::size_t i = 0; i < t.loop_nodes; ++i) mark(t.targets[i]);
    std::unique_ptr<std::uint32_t[]> id_of(new std::uint32_t[N]);  // read only where marked
    for (std::size_t w = 0; w < used.size(); ++w)
      for (std::uint64_t bits = used[w]; bits != 0; bits &= bits - 1) {
        const std::size_t s = w * 64 + lowest_bit(bits);
        id_of[s] = static_cast<std::uint32_t>(t.sources.size());
        t.sources.push_back(static_cast<std::int64_t>(s));
      }
    for (std::size_t k = 0; k < edges; ++k) c.source[k] = id_of[static_cast<std::size_t>(global_source[k])];
    if (self_rows)
      for (std::size_t i = 0; i < t.loop_nodes; ++i) t.loop_source.push_back(id_of[static_cast<std::size_t>(t.targets[i])]);
  } else {
    // Few: first-use order through a table sized by their edges.
    SourceIds local(edges + n, t.sources);
    t.sources.reserve(std::min(edges + n, N));
    for (std::size_t k = 0; k < edges; ++k) c.source[k] = local(global_source[k]);
    if (self_rows)
      for (std::size_t i = 0; i < t.loop_nodes; ++i) t.loop_source.push_back(local(t.targets[i]));
  }
  c.edge_id.resize(edges);
  std::iota(c.edge_id.begin(), c.edge_id.end(), std::int64_t{0});
  if (keep_loops) {
    c.loop_indptr.assign(n + 1, 0);
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t u = t.targets[i];
      for (std::int64_t p = g.loop_indptr[u]; p < g.loop_indptr[u + 1]; ++p) {
        c.loop_edge_id.push_back(static_cast<std::int64_t>(t.edge_global.size()));
        t.edge_global.push_back(g.loop_edge_id[p]);
      }
      c.loop_indptr[i + 1] = static_cast<std::int64_t>(c.loop_edge_id.size());
    }
    c.num_self_loops = static_cast<std::int64_t>(c.loop_edge_id.size());
  }
  c.num_edges = static_cast<std::int64_t>(t.edge_global.size());
  c.num_sources = static_cast<std::int64_t>(t.sources.size());
  if (graph.has_edge_features()) {
    const RowMatrixXf& f = graph.edge_features();
    t.edge_features.resize(c.num_edges, f.cols());
    for (std::int64_t k = 0; k < c.num_edges; ++k) t.edge_features.row(k) = f.row(t.edge_global[k]);
  }
  return t;
}

// Rows `ids` of x, [ids.size(), x.cols()], in parallel blocks, each row requested a few rows
// ahead (random rows of a large x miss the cache).
RowMatrixXf gather_rows(const MatrixRef& x, const std::vector<std::int64_t>& ids) {
  const std::size_t f = static_cast<std::size_t>(x.cols()), ld = static_cast<std::size_t>(x.outerStride());
  RowMatrixXf out(static_cast<Index>(ids.size()), x.cols());
  const float* base = x.data();
  float* dst = out.data();
  constexpr std::size_t kAhead = 8, kBlock = 512;
  parallel_for((ids.size() + kBlock - 1) / kBlock, [&](std::size_t b) {
    const std::size_t end = std::min(ids.size(), (b + 1) * kBlock);
    for (std::size_t k = b * kBlock; k < end; ++k) {
#if defined(__GNUC__) || defined(__clang__)
      if (k + kAhead < end) {
        const char* row = reinterpret_cast<const char*>(base + static_cast<std::size_t>(ids[k + kAhead]) * ld);
        for (std::size_t byte = 0; byte < f * sizeof(float); byte += 64) __builtin_prefetch(row + byte, 0, 1);
      }
#endif
      std::copy_n(base + static_cast<std::size_t>(ids[k]) * ld, f, dst + k * f);
    }
  });
  return out;
}

}  // namespace

AttentionOutput GraphAttention::compute(const MatrixRef& x, const GraphStructure& graph,
                                        const GraphOptions& options) const {
  return run(x, x, graph, options, false);
}

AttentionOutput GraphAttention::compute(const MatrixRef& x_src, const MatrixRef& x_dst, const GraphStructure& graph,
                                        const GraphOptions& options) const {
  return run(x_src, x_dst, graph, options, true);
}

AttentionOutput GraphAttention::run(const MatrixRef& x_src, const MatrixRef& x_dst, const GraphStructure& graph,
                                    const GraphOptions& options, bool bipartite) const {
  check(x_src, x_dst, graph, options, bipartite);
  const bool need_weights = options.need_weights;
  const auto params = parameters(x_src.cols());
  const detail::GraphParameters& P = *params;
  if (P.in_features_dst != x_dst.cols()) check(x_src, x_dst, graph, options, bipartite);  // fixed meanwhile
  const GraphConfig& o = graph_config_;
  const std::size_t H = static_cast<std::size_t>(config_.num_heads), C = static_cast<std::size_t>(config_.head_dim);
  const std::size_t HC = H * C, out_cols = static_cast<std::size_t>(out_features());
  const bool v2 = o.variant == GraphVariant::GatV2;
  const bool pair = o.in_features_dst.has_value();
  const bool edge_terms = graph.has_edge_features();  // check: then edge_dim matches

  // Only some targets: the part of the graph they need, with the rows it reads gathered, so
  // that the cost follows their in-edges (never N).
  std::optional<TargetGraph> part;
  RowMatrixXf xd_part;
  std::optional<MatrixRef> xd_ref;
  // GAT's target halves: from the same transform when the targets are the source rows and
  // share its projection, else from the targets' own rows (x_dst·W_dstᵀ, then ·att_dst).
  // (Some targets of a layer with self-loops: each target is also a source row, its own
  // self-loop's, so its half is there already.)
  const bool reuse_dst = !v2 && options.has_targets && !bipartite && !pair && o.add_self_loops;
  if (options.has_targets) {
    part = target_graph(graph, options.targets, o.add_self_loops);
    // the targets' own rows, where anything reads them (GATv2 scores, a residual, GAT's
    // target halves when not reused)
    if (v2 || o.residual || !reuse_dst)
      xd_part = gather_rows(x_dst, part->targets);
    else
      xd_part.resize(0, x_dst.cols());
    xd_ref.emplace(xd_part);
  }
  const MatrixRef& xs = x_src;  // with targets, the transform reads part->sources' rows in place
  const MatrixRef& xd = part ? *xd_ref : x_dst;
  const detail::GraphCsr& g = part ? part->csr : graph.csr();
  const std::size_t Ns = static_cast<std::size_t>(g.num_sources), Nt = static_cast<std::size_t>(g.num_nodes);
  const std::size_t Fs = static_cast<std::size_t>(xs.cols()), Fd = static_cast<std::size_t>(xd.cols());
  const std::size_t loop_nodes = part ? part->loop_nodes : static_cast<std::size_t>(loop_nodes_of(g));

  AttentionOutput out;
  out.values = memory::output_matrix(part ? static_cast<Index>(options.targets.size()) : static_cast<Index>(Nt),
                                     static_cast<Index>(out_cols));
  memory::advise_huge_pages(out.values.data(), static_cast<std::size_t>(out.values.size()) * sizeof(float));
  // Target i's row of the output: with targets=, the first place the asked order has it
  // (repeats are copied from there at the end).
  std::vector<std::int64_t> out_index;
  if (part) {
    out_index.assign(Nt, -1);
    for (std::size_t k = options.targets.size(); k-- > 0;)
      out_index[static_cast<std::size_t>(part->asked_local[k])] = static_cast<std::int64_t>(k);
  }
  const auto out_row = [&](std::size_t i) {
    return out.values.data() + (part ? static_cast<std::size_t>(out_index[i]) : i) * out_cols;
  };

  simd::GatParams kp;
  kp.heads = H;
  kp.channels = C;
  kp.v2 = v2;
  kp.concat = o.concat;
  kp.negative_slope = static_cast<float>(o.negative_slope);
  kp.indptr = g.indptr.data();
  kp.source = g.source.data();
  kp.edge_id = g.edge_id.data();
  kp.add_self_loops = o.add_self_loops;
  kp.loop_nodes = loop_nodes;
  kp.loop_source = part && !part->loop_source.empty() ? part->loop_source.data() : nullptr;
  if (!o.add_self_loops && g.num_self_loops > 0) {
    kp.loop_indptr = g.loop_indptr.data();
    kp.loop_edge_id = g.loop_edge_id.data();
  }
  const float* bias = config_.use_bias ? P.named.at("bias").data() : nullptr;
  kp.bias = o.residual ? nullptr : bias;  // with a residual, added after it (PyG's order)
  kp.out = out.values.data();
  kp.out_index = part ? out_index.data() : nullptr;
  kp.ldo = out_cols;

  const simd::GraphKernels& kernels = simd::active_kernels().graph;
  // The only [N, H·C] temporary: the transformed source rows, gathered by the edge kernel.
  memory::FloatBuffer transformed(Ns * HC);
  memory::FloatBuffer node_alpha(v2 ? 0 : 2 * Ns * H);
  memory::FloatBuffer edge_alpha(!v2 && edge_terms ? static_cast<std::size_t>(g.num_edges) * H : 0);
  memory::FloatBuffer loop_alpha(!v2 && edge_terms && o.add_self_loops ? Nt * H : 0);

  // x' = x·Wᵀ (GAT) or x·W_lᵀ + b_l (GATv2) by row blocks; GAT also takes the per-node halves
  // of its scores (α_src = x'·att_src, α_dst = x'·att_dst) while each block is in cache.
  simd::GatTransform t;
  t.x = xs.data();
  t.ld_x = static_cast<std::size_t>(xs.outerStride());
  t.rows = part ? part->sources.data() : nullptr;
  t.weight = P.named.at(v2 ? "lin_l.weight" : pair ? "lin_src.weight" : "lin.weight").data();
  t.bias = v2 && config_.use_bias ? P.named.at("lin_l.bias").data() : nullptr;
  t.in_features = Fs;
  t.heads = H;
  t.channels = C;
  t.out = transformed.get();
  t.ld_out = HC;
  if (!v2) {
    t.att_src = P.named.at("att_src").data();
    t.att_dst = P.named.at("att_dst").data();
    t.alpha_src = node_alpha.get();
    t.alpha_dst = node_alpha.get() + Ns * H;
  }
  // W packed once for every task (each packing its own cost ~1/20 of a targets= call)
  memory::FloatBuffer packed_weight(kernels.transform_packed_size(t));
  kernels.pack_transform(t, packed_weight.get());
  t.packed_weight = packed_weight.get();
  parallel_blocks(Ns, transform_block(Ns), [&](std::size_t r0, std::size_t r1) { return kernels.transform(t, r0, r1); });

  kp.x_src = transformed.get();
  kp.ld_src = HC;
  const bool own_dst = !v2 && (bipartite || pair || part) && !reuse_dst;
  memory::FloatBuffer dst_rows(own_dst ? Nt * HC : 0);
  memory::FloatBuffer dst_alpha(own_dst ? 2 * Nt * H : reuse_dst ? Nt * H : 0);
  // Self-loop edge features for other fill modes, or for some targets only.
  RowMatrixXf loop_features;
  const float* edge_rows = nullptr;
  const float* loop_rows = nullptr;
  if (edge_terms) {
    edge_rows = part ? part->edge_features.data() : graph.edge_features().data();
    if (o.add_self_loops) {
      if (!part && o.fill_mode == FillMode::Mean) {
        loop_rows = graph.self_loop_features().data();
      } else {
        const std::size_t de = static_cast<std::size_t>(*o.edge_dim);
        loop_features.resize(static_cast<Index>(Nt), static_cast<Index>(de));
        fill_loop_features(g, edge_rows, de, o.fill_mode, o.fill_value, loop_features.data());
        loop_rows = loop_features.data();
      }
    }
  }
  if (!v2) {
    kp.alpha_src = t.alpha_src;
    kp.alpha_dst = t.alpha_dst;
    if (reuse_dst) {
      for (std::size_t i = 0; i < Nt; ++i)
        std::copy_n(t.alpha_dst + static_cast<std::size_t>(part->loop_source[i]) * H, H, dst_alpha.get() + i * H);
      kp.alpha_dst = dst_alpha.get();
    } else if (own_dst) {
      simd::GatTransform d = t;
      d.x = xd.data();
      d.ld_x = static_cast<std::size_t>(xd.outerStride());
      d.rows = nullptr;
      d.packed_weight = nullptr;
      d.weight = P.named.at(pair ? "lin_dst.weight" : "lin.weight").data();
      d.in_features = Fd;
      d.out = dst_rows.get();
      d.alpha_src = dst_alpha.get() + Nt * H;  // unused
      d.alpha_dst = dst_alpha.get();
      parallel_blocks(Nt, transform_block(Nt), [&](std::size_t r0, std::size_t r1) { return kernels.transform(d, r0, r1); });
      kp.alpha_dst = d.alpha_dst;
    }
    if (edge_terms) {
      // α_edge = (f·W_eᵀ)·att_edge per head = f·(W_eᵀ att_edge): [E, H], never [E, H·C].
      const std::size_t de = static_cast<std::size_t>(*o.edge_dim);
      detail::gemm(edge_rows, de, P.edge_att.data(), H, false, edge_alpha.get(), H,
                   static_cast<std::size_t>(g.num_edges), H, de, nullptr);
      if (o.add_self_loops)
        detail::gemm(loop_rows, de, P.edge_att.data(), H, false, loop_alpha.get(), H, Nt, H, de, nullptr);
      kp.edge_alpha = edge_alpha.get();
      kp.loop_alpha = loop_alpha.get();
    }
  } else {
    kp.att = P.named.at("att").data();
    kp.x = xd.data();
    kp.ld_x = static_cast<std::size_t>(xd.outerStride());
    kp.in_features = Fd;
    const char* right = o.share_weights ? "lin_l" : "lin_r";
    kp.w_dst = P.named.at(std::string(right) + ".weight").data();
    kp.b_dst = config_.use_bias ? P.named.at(std::string(right) + ".bias").data() : nullptr;
    if (edge_terms) {
      kp.edge_features = edge_rows;
      kp.ld_ef = static_cast<std::size_t>(*o.edge_dim);
      kp.loop_features = o.add_self_loops ? loop_rows : nullptr;
      kp.edge_proj = P.edge_proj.data();
      kp.edge_dim = static_cast<std::size_t>(*o.edge_dim);
    }
  }

  const std::int64_t used = o.add_self_loops ? g.num_ordinary_edges() + static_cast<std::int64_t>(loop_nodes)
                                             : g.num_edges;
  if (need_weights) {
    out.weights = memory::output_matrix(used, static_cast<Index>(H));
    memory::advise_huge_pages(out.weights.data(), static_cast<std::size_t>(out.weights.size()) * sizeof(float));
    out.weights_shape = {used, static_cast<Index>(H)};
    kp.weights = out.weights.data();
    kp.out_row = o.add_self_loops && !g.kept_rank.empty() ? g.kept_rank.data() : nullptr;
    kp.loop_row0 = static_cast<std::size_t>(g.num_ordinary_edges());
  }

  // A GATv2 target also costs its row's transform (F·H·C multiply-adds, ~F/4 edges' worth)
  // and H·C floats of task scratch: at most ~1 MiB of them per task.
  const std::vector<std::size_t> bounds =
      v2 ? target_ranges(g, 1.0 + static_cast<double>(Fd) / 4.0, std::max<std::size_t>(1, (std::size_t{1} << 18) / HC))
         : target_ranges(g, 1.0, Nt + 1);
  std::atomic<bool> failed{false};
  parallel_for(bounds.size() - 1, [&](std::size_t r) {
    if (!kernels.gat(kp, bounds[r], bounds[r + 1])) failed.store(true, std::memory_order_relaxed);
  });
  if (failed.load()) throw std::bad_alloc();  // a task's scratch could not be allocated

  if (o.residual) {  // out = aggregation + x_dst·resᵀ (+ bias), PyG's order
    memory::FloatBuffer res(Nt * out_cols);
    detail::gemm(xd.data(), static_cast<std::size_t>(xd.outerStride()), P.named.at("res.weight").data(), Fd, true,
                 res.get(), out_cols, Nt, out_cols, Fd, nullptr);
    for (std::size_t i = 0; i < Nt; ++i) {
      float* row = out_row(i);
      const float* r = res.get() + i * out_cols;
      for (std::size_t c = 0; c < out_cols; ++c) row[c] = bias ? (row[c] + r[c]) + bias[c] : row[c] + r[c];
    }
  }
  if (part)  // repeated targets: copies of the first row
    for (std::size_t k = 0; k < options.targets.size(); ++k) {
      const auto i = static_cast<std::size_t>(part->asked_local[k]);
      if (out_index[i] != static_cast<std::int64_t>(k))
        std::copy_n(out_row(i), out_cols, out.values.data() + k * out_cols);
    }

  if (need_weights) {
    // The edge list the coefficients belong to, in the same order (PyG's for the whole graph).
    RowMatrixXi64 edges(used, 2);
    for (std::int64_t i = 0; i < g.num_nodes; ++i) {
      const std::int64_t node = part ? part->targets[static_cast<std::size_t>(i)] : i;
      for (std::int64_t p = g.indptr[i]; p < g.indptr[i + 1]; ++p) {
        const std::int64_t row = kp.out_row ? kp.out_row[p] : g.edge_id[p];
        edges(row, 0) = part ? part->sources[static_cast<std::size_t>(g.source[p])] : g.source[p];
        edges(row, 1) = node;
      }
      if (kp.loop_indptr)
        for (std::int64_t p = g.loop_indptr[i]; p < g.loop_indptr[i + 1]; ++p)
          edges.row(g.loop_edge_id[p]).setConstant(node);
      if (o.add_self_loops && static_cast<std::size_t>(i) < loop_nodes)
        edges.row(g.num_ordinary_edges() + i).setConstant(node);
    }
    out.metadata["edges"] = std::move(edges);
  }
  const detail::GraphCsr& whole = graph.csr();
  out.metadata["attention_type"] = std::string("graph");
  out.metadata["num_nodes"] = static_cast<std::int64_t>(whole.num_nodes);
  out.metadata["num_edges"] = static_cast<std::int64_t>(whole.num_edges);
  out.metadata["num_heads"] = static_cast<std::int64_t>(H);
  out.metadata["variant"] = std::string(variant_name(o.variant));
  out.metadata["concat"] = o.concat;
  out.metadata["simd_backend"] = std::string(backend_name(simd_backend()));
  return out;
}

}  // namespace ruvector
