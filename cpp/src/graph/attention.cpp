// GraphAttention's compute path: the checks, the node transform through the GAT transform
// kernel (GAT also takes its per-node score halves there), edge-feature scores through the GEMM,
// then the per-target edge kernel of the active backend in parallel over edge-balanced ranges of
// targets.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <new>
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

std::int64_t used_edges(const detail::GraphCsr& g, bool add_self_loops) {
  return add_self_loops ? g.num_ordinary_edges() + g.num_nodes : g.num_edges;
}

const char* variant_name(GraphVariant v) {
  return v == GraphVariant::Gat ? "gat" : "gatv2";
}

}  // namespace

void GraphAttention::validate(const MatrixRef& x, const GraphStructure& graph, const GraphOptions& options) const {
  const detail::GraphCsr& g = graph.csr();
  if (g.num_nodes != x.rows())
    throw DimensionMismatch("node_features has " + std::to_string(x.rows()) + " rows, but the graph has " +
                                std::to_string(g.num_nodes) + " nodes: give one feature row per node",
                            g.num_nodes, x.rows());
  auto p = snapshot();
  if (p && p->in_features != x.cols())
    throw DimensionMismatch("node_features has " + std::to_string(x.cols()) + " columns, but this layer takes " +
                                std::to_string(p->in_features) + " (in_features): give [N, " +
                                std::to_string(p->in_features) + "] features",
                            p->in_features, x.cols());
  if (graph.has_edge_features()) {
    if (!graph_config_.edge_dim)
      throw InvalidInput("the graph has edge features but this layer has edge_dim=None: create it with edge_dim=" +
                         std::to_string(graph.edge_feature_dim()) +
                         " to use them, or build the GraphStructure without edge_features");
    if (graph.edge_feature_dim() != *graph_config_.edge_dim)
      throw DimensionMismatch("edge_features has " + std::to_string(graph.edge_feature_dim()) +
                                  " columns, but this layer has edge_dim=" + std::to_string(*graph_config_.edge_dim) +
                                  ": give [E, " + std::to_string(*graph_config_.edge_dim) + "] edge features",
                              *graph_config_.edge_dim, graph.edge_feature_dim());
  }
  const std::int64_t hc = static_cast<std::int64_t>(config_.num_heads) * config_.head_dim;
  memory::checked_elements(x.rows(), hc, "transformed node features", "use fewer nodes, heads or channels");
  memory::checked_elements(x.rows(), out_features(), "output", "use fewer nodes, heads or channels");
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
  constexpr double kWorkPerRange = 4096.0;
  const double total = cost_before(n);
  const std::size_t ranges =
      std::max<std::size_t>(1, std::min<std::size_t>(n, static_cast<std::size_t>(total / kWorkPerRange)));
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

}  // namespace

AttentionOutput GraphAttention::compute(const MatrixRef& x, const GraphStructure& graph,
                                        const GraphOptions& options) const {
  validate(x, graph, options);
  const bool need_weights = options.need_weights;
  const auto params = parameters(x.cols());
  const detail::GraphParameters& P = *params;
  const detail::GraphCsr& g = graph.csr();
  const std::size_t N = static_cast<std::size_t>(x.rows()), F = static_cast<std::size_t>(x.cols());
  const std::size_t H = static_cast<std::size_t>(config_.num_heads), C = static_cast<std::size_t>(config_.head_dim);
  const std::size_t HC = H * C;
  const bool v2 = graph_config_.variant == GraphVariant::GatV2;
  const bool edge_terms = graph.has_edge_features();  // validate: then edge_dim matches

  AttentionOutput out;
  out.values = memory::output_matrix(x.rows(), out_features());
  memory::advise_huge_pages(out.values.data(), static_cast<std::size_t>(out.values.size()) * sizeof(float));

  simd::GatParams kp;
  kp.heads = H;
  kp.channels = C;
  kp.v2 = v2;
  kp.concat = graph_config_.concat;
  kp.negative_slope = static_cast<float>(graph_config_.negative_slope);
  kp.indptr = g.indptr.data();
  kp.source = g.source.data();
  kp.edge_id = g.edge_id.data();
  kp.add_self_loops = graph_config_.add_self_loops;
  if (!graph_config_.add_self_loops && g.num_self_loops > 0) {
    kp.loop_indptr = g.loop_indptr.data();
    kp.loop_edge_id = g.loop_edge_id.data();
  }
  kp.bias = config_.use_bias ? P.named.at("bias").data() : nullptr;
  kp.out = out.values.data();
  kp.ldo = static_cast<std::size_t>(out_features());

  const simd::GraphKernels& kernels = simd::active_kernels().graph;
  // The only [N, H·C] temporary: the transformed source rows, gathered by the edge kernel.
  memory::FloatBuffer transformed(N * HC);
  memory::FloatBuffer node_alpha(v2 ? 0 : 2 * N * H);
  memory::FloatBuffer edge_alpha(!v2 && edge_terms ? static_cast<std::size_t>(g.num_edges) * H : 0);
  memory::FloatBuffer loop_alpha(!v2 && edge_terms && graph_config_.add_self_loops ? N * H : 0);

  // x' = x·Wᵀ (GAT) or x·W_lᵀ + b_l (GATv2) by row blocks; GAT also takes the per-node halves
  // of its scores (α_src = x'·att_src, α_dst = x'·att_dst) while each block is in cache.
  simd::GatTransform t;
  t.x = x.data();
  t.ld_x = static_cast<std::size_t>(x.outerStride());
  t.weight = P.named.at(v2 ? "lin_l.weight" : "lin.weight").data();
  t.bias = v2 && config_.use_bias ? P.named.at("lin_l.bias").data() : nullptr;
  t.in_features = F;
  t.heads = H;
  t.channels = C;
  t.out = transformed.get();
  t.ld_out = HC;
  if (!v2) {
    t.att_src = P.named.at("att_src").data();
    t.att_dst = P.named.at("att_dst").data();
    t.alpha_src = node_alpha.get();
    t.alpha_dst = node_alpha.get() + N * H;
  }
  parallel_blocks(N, kTransformRows, [&](std::size_t r0, std::size_t r1) { return kernels.transform(t, r0, r1); });

  kp.x_src = transformed.get();
  kp.ld_src = HC;
  if (!v2) {
    kp.alpha_src = t.alpha_src;
    kp.alpha_dst = t.alpha_dst;
    if (edge_terms) {
      // α_edge = (f·W_eᵀ)·att_edge per head = f·(W_eᵀ att_edge): [E, H], never [E, H·C].
      const std::size_t de = static_cast<std::size_t>(*graph_config_.edge_dim);
      detail::gemm(graph.edge_features().data(), de, P.edge_att.data(), H, false, edge_alpha.get(), H,
                   static_cast<std::size_t>(g.num_edges), H, de, nullptr);
      if (graph_config_.add_self_loops)
        detail::gemm(graph.self_loop_features().data(), de, P.edge_att.data(), H, false, loop_alpha.get(), H, N, H, de,
                     nullptr);
      kp.edge_alpha = edge_alpha.get();
      kp.loop_alpha = loop_alpha.get();
    }
  } else {
    kp.att = P.named.at("att").data();
    kp.x = t.x;
    kp.ld_x = t.ld_x;
    kp.in_features = F;
    kp.w_dst = P.named.at("lin_r.weight").data();
    kp.b_dst = config_.use_bias ? P.named.at("lin_r.bias").data() : nullptr;
    if (edge_terms) {
      kp.edge_features = graph.edge_features().data();
      kp.ld_ef = static_cast<std::size_t>(*graph_config_.edge_dim);
      kp.loop_features = graph_config_.add_self_loops ? graph.self_loop_features().data() : nullptr;
      kp.edge_proj = P.edge_proj.data();
      kp.edge_dim = static_cast<std::size_t>(*graph_config_.edge_dim);
    }
  }

  const std::int64_t used = used_edges(g, graph_config_.add_self_loops);
  if (need_weights) {
    out.weights = memory::output_matrix(used, static_cast<Index>(H));
    memory::advise_huge_pages(out.weights.data(), static_cast<std::size_t>(out.weights.size()) * sizeof(float));
    out.weights_shape = {used, static_cast<Index>(H)};
    kp.weights = out.weights.data();
    kp.out_row = graph_config_.add_self_loops && !g.kept_rank.empty() ? g.kept_rank.data() : nullptr;
    kp.loop_row0 = static_cast<std::size_t>(g.num_ordinary_edges());
  }

  // A GATv2 target also costs its row's transform (F·H·C multiply-adds, ~F/4 edges' worth)
  // and H·C floats of task scratch: at most ~1 MiB of them per task.
  const std::vector<std::size_t> bounds =
      v2 ? target_ranges(g, 1.0 + static_cast<double>(F) / 4.0, std::max<std::size_t>(1, (std::size_t{1} << 18) / HC))
         : target_ranges(g, 1.0, N + 1);
  std::atomic<bool> failed{false};
  parallel_for(bounds.size() - 1, [&](std::size_t r) {
    if (!kernels.gat(kp, bounds[r], bounds[r + 1])) failed.store(true, std::memory_order_relaxed);
  });
  if (failed.load()) throw std::bad_alloc();  // a task's scratch could not be allocated

  if (need_weights) {
    // The edge list the coefficients belong to, in the same (PyG's) order.
    RowMatrixXi64 edges(used, 2);
    for (std::int64_t i = 0; i < g.num_nodes; ++i) {
      for (std::int64_t p = g.indptr[i]; p < g.indptr[i + 1]; ++p) {
        const std::int64_t row = kp.out_row ? kp.out_row[p] : g.edge_id[p];
        edges(row, 0) = g.source[p];
        edges(row, 1) = i;
      }
      if (kp.loop_indptr)
        for (std::int64_t p = g.loop_indptr[i]; p < g.loop_indptr[i + 1]; ++p)
          edges.row(g.loop_edge_id[p]).setConstant(i);
      if (graph_config_.add_self_loops) edges.row(g.num_ordinary_edges() + i).setConstant(i);
    }
    out.metadata["edges"] = std::move(edges);
  }
  out.metadata["attention_type"] = std::string("graph");
  out.metadata["num_nodes"] = static_cast<std::int64_t>(g.num_nodes);
  out.metadata["num_edges"] = static_cast<std::int64_t>(g.num_edges);
  out.metadata["num_heads"] = static_cast<std::int64_t>(H);
  out.metadata["variant"] = std::string(variant_name(graph_config_.variant));
  out.metadata["concat"] = graph_config_.concat;
  out.metadata["simd_backend"] = std::string(backend_name(simd_backend()));
  return out;
}


}  // namespace ruvector
