// GraphStructure: a graph validated once and held in compressed, target-major (CSR) form.
// PyG's edge_index [2, E] or an [E, 2] edge list, with optional edge features.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graph/internal.hpp"
#include "memory/memory.hpp"
#include "messages.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/graph.hpp"

namespace ruvector {

struct GraphStructure::Data {
  detail::GraphCsr csr;
  bool has_features = false;
  RowMatrixXf edge_features;  // [E, F]
  RowMatrixXf loop_features;  // [N, F]: mean of incoming ordinary edge features
};

namespace {

std::string node_range(std::int64_t n) {
  return "[0, num_nodes) = [0, " + std::to_string(n) + ")";
}

void check_index(std::int64_t value, std::int64_t edge, const char* role, std::int64_t num_nodes) {
  if (value < 0)
    throw InvalidInput("edge " + std::to_string(edge) + " has a negative " + role + " (" + std::to_string(value) +
                       "): node indices must be in " + node_range(num_nodes));
  if (value >= num_nodes)
    throw InvalidInput("edge " + std::to_string(edge) + " has " + role + " " + std::to_string(value) +
                       ", out of range for num_nodes=" + std::to_string(num_nodes) + ": node indices must be in " +
                       node_range(num_nodes) + " (raise num_nodes or fix the edge)");
}

}  // namespace

GraphStructure::GraphStructure() {
  auto d = std::make_shared<Data>();
  d->csr.indptr.assign(1, 0);
  data_ = std::move(d);
}

GraphStructure GraphStructure::from_arrays(const std::int64_t* sources, std::ptrdiff_t source_stride,
                                           const std::int64_t* targets, std::ptrdiff_t target_stride,
                                           std::int64_t num_edges, std::int64_t num_nodes, const float* edge_features,
                                           std::int64_t feature_dim, std::int64_t feature_stride,
                                           std::int64_t num_sources) {
  if (num_nodes < 0) throw InvalidInput("num_nodes must be >= 0, got " + std::to_string(num_nodes));
  const bool bipartite = num_sources >= 0;
  if (num_sources < -1)
    throw InvalidInput("the number of source nodes must be >= 0, got " + std::to_string(num_sources));
  if (!bipartite) num_sources = num_nodes;
  if (num_sources > std::numeric_limits<std::int64_t>::max() / 16)
    throw InvalidInput("num_nodes " + std::to_string(num_sources) + " is too large for a graph index; check num_nodes");
  if (num_edges < 0) throw InvalidInput("the number of edges must be >= 0, got " + std::to_string(num_edges));
  if (num_edges > 0 && (sources == nullptr || targets == nullptr))
    throw InvalidInput("from_arrays: sources and targets must point to num_edges indices, got a null pointer for " +
                       std::to_string(num_edges) + " edges");
  if (edge_features && feature_dim < 0)
    throw InvalidInput("edge_features must have >= 0 columns, got " + std::to_string(feature_dim));
  if (edge_features && feature_stride < feature_dim)
    throw InvalidInput("edge_features: feature_stride " + std::to_string(feature_stride) +
                       " is smaller than feature_dim " + std::to_string(feature_dim) +
                       " (rows would overlap): pass the distance between rows in floats");
  // Index arrays take 8 bytes (two floats' worth) per entry; refuse what cannot fit (and
  // counts whose arithmetic below would overflow).
  if (num_nodes > std::numeric_limits<std::int64_t>::max() / 16)
    throw InvalidInput("num_nodes " + std::to_string(num_nodes) + " is too large for a graph index; check num_nodes");
  memory::checked_elements(num_nodes + 1, 4, "graph index", "check num_nodes");
  memory::checked_elements(num_edges, 6, "graph index", "the graph has too many edges for this machine");
  if (edge_features) {  // the features' copy and the self-loop means, before any allocation
    memory::checked_elements(num_edges, feature_dim, "edge_features", "use fewer edge feature columns");
    memory::checked_elements(num_nodes, feature_dim, "self-loop edge features", "use fewer edge feature columns");
  }

  auto data = std::make_shared<Data>();
  detail::GraphCsr& g = data->csr;
  g.num_nodes = num_nodes;
  g.num_sources = num_sources;
  g.bipartite = bipartite;
  g.num_edges = num_edges;
  const std::size_t n = static_cast<std::size_t>(num_nodes);

  // Pass 1: validate and count in-edges (ordinary) and self-loops per node.
  g.indptr.assign(n + 1, 0);
  std::vector<std::int64_t> loop_count;
  for (std::int64_t e = 0; e < num_edges; ++e) {
    const std::int64_t s = sources[e * source_stride], t = targets[e * target_stride];
    check_index(s, e, "source", num_sources);
    check_index(t, e, "target", num_nodes);
    if (s == t) {
      if (loop_count.empty()) loop_count.assign(n + 1, 0);
      ++loop_count[static_cast<std::size_t>(t) + 1];
      ++g.num_self_loops;
    } else {
      ++g.indptr[static_cast<std::size_t>(t) + 1];
    }
  }
  for (std::size_t i = 0; i < n; ++i) g.indptr[i + 1] += g.indptr[i];

  // Pass 2: stable placement (edges of one target keep their given order). The indices are
  // read again, and the caller may have changed them since pass 1 (another thread writing
  // the array while the GIL is released): every value and slot is checked again, so that a
  // change gives an error, never a write out of bounds.
  const std::size_t nnz = static_cast<std::size_t>(g.indptr[n]);
  g.source.resize(nnz);
  g.edge_id.resize(nnz);
  if (g.num_self_loops > 0) {
    g.kept_rank.resize(nnz);
    for (std::size_t i = 0; i < n; ++i) loop_count[i + 1] += loop_count[i];
    g.loop_indptr = loop_count;
    g.loop_edge_id.resize(static_cast<std::size_t>(g.num_self_loops));
  }
  const auto changed = [] {
    return InvalidInput(
        "the edge array changed during the call (another thread wrote it while the graph was built): "
        "do not modify an array while ruvector reads it");
  };
  std::vector<std::int64_t> next(g.indptr.begin(), g.indptr.end() - 1);
  std::int64_t rank = 0, loops = 0;
  for (std::int64_t e = 0; e < num_edges; ++e) {
    const std::int64_t s = sources[e * source_stride], t = targets[e * target_stride];
    if (s < 0 || s >= num_sources || t < 0 || t >= num_nodes) throw changed();
    const std::size_t ti = static_cast<std::size_t>(t);
    if (s == t) {
      if (g.loop_indptr.empty() || loop_count[ti] >= g.loop_indptr[ti + 1]) throw changed();
      g.loop_edge_id[static_cast<std::size_t>(loop_count[ti]++)] = e;
      ++loops;
    } else {
      if (next[ti] >= g.indptr[ti + 1]) throw changed();
      const std::size_t pos = static_cast<std::size_t>(next[ti]++);
      g.source[pos] = s;
      g.edge_id[pos] = e;
      if (!g.kept_rank.empty()) g.kept_rank[pos] = rank;
      ++rank;
    }
  }
  if (loops != g.num_self_loops || static_cast<std::size_t>(rank) != nnz) throw changed();

  if (edge_features) {
    data->has_features = true;
    const Index f = feature_dim;
    data->edge_features.resize(num_edges, f);
    for (std::int64_t e = 0; e < num_edges; ++e)
      std::copy(edge_features + e * feature_stride, edge_features + e * feature_stride + f,
                data->edge_features.data() + e * f);
    // Self-loop features: the mean of each node's incoming ordinary edge features (zeros
    // for a node with none), as PyG's add_self_loops(fill_value="mean") after remove_self_loops.
    data->loop_features.setZero(num_nodes, f);
    std::vector<double> sum(static_cast<std::size_t>(f));
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t begin = g.indptr[i], end = g.indptr[i + 1];
      if (begin == end) continue;
      std::fill(sum.begin(), sum.end(), 0.0);
      for (std::int64_t p = begin; p < end; ++p) {
        const float* row = data->edge_features.data() + g.edge_id[static_cast<std::size_t>(p)] * f;
        for (Index c = 0; c < f; ++c) sum[static_cast<std::size_t>(c)] += row[c];
      }
      const double count = static_cast<double>(end - begin);
      for (Index c = 0; c < f; ++c)
        data->loop_features(static_cast<Index>(i), c) = static_cast<float>(sum[static_cast<std::size_t>(c)] / count);
    }
  }
  GraphStructure out;
  out.data_ = std::move(data);
  return out;
}

namespace {

void check_edge_matrix(const Eigen::Ref<const RowMatrixXi64>& m, bool edge_index) {
  if (edge_index ? m.rows() != 2 : m.cols() != 2)
    throw DimensionMismatch(
        std::string(edge_index ? "edge_index" : "edges") + " has shape " + detail::shape_str({m.rows(), m.cols()}) +
            ", expected " +
            (edge_index ? "[2, E] (row 0 sources, row 1 targets)" : "[E, 2] (one (source, target) row per edge)"),
        2, edge_index ? m.rows() : m.cols());
}

// A 0×0 feature matrix means "no edge features", as the header says (an [E, 0] one has no data
// pointer and means the same to from_arrays).
bool no_features(const MatrixRef& f) {
  return f.rows() == 0 && f.cols() == 0;
}

void check_feature_rows(const MatrixRef& f, std::int64_t num_edges) {
  if (f.rows() != num_edges)
    throw DimensionMismatch("edge_features has " + std::to_string(f.rows()) + " rows for " + std::to_string(num_edges) +
                                " edges: give one feature row per edge, [E, F]",
                            num_edges, f.rows());
}

}  // namespace

GraphStructure::GraphStructure(const Eigen::Ref<const RowMatrixXi64>& edges, std::int64_t num_nodes) {
  check_edge_matrix(edges, false);
  *this = from_arrays(edges.data(), edges.outerStride(), edges.data() + 1, edges.outerStride(), edges.rows(), num_nodes,
                      nullptr, 0, 0);
}

GraphStructure::GraphStructure(const Eigen::Ref<const RowMatrixXi64>& edges, std::int64_t num_nodes,
                               const MatrixRef& edge_features) {
  check_edge_matrix(edges, false);
  const bool none = no_features(edge_features);
  if (!none) check_feature_rows(edge_features, edges.rows());
  *this = from_arrays(edges.data(), edges.outerStride(), edges.data() + 1, edges.outerStride(), edges.rows(), num_nodes,
                      none ? nullptr : edge_features.data(), edge_features.cols(), edge_features.outerStride());
}

GraphStructure GraphStructure::from_edge_index(const Eigen::Ref<const RowMatrixXi64>& ei, std::int64_t num_nodes) {
  check_edge_matrix(ei, true);
  return from_arrays(ei.data(), 1, ei.data() + ei.outerStride(), 1, ei.cols(), num_nodes, nullptr, 0, 0);
}

GraphStructure GraphStructure::from_edge_index(const Eigen::Ref<const RowMatrixXi64>& ei, std::int64_t num_nodes,
                                               const MatrixRef& edge_features) {
  check_edge_matrix(ei, true);
  const bool none = no_features(edge_features);
  if (!none) check_feature_rows(edge_features, ei.cols());
  return from_arrays(ei.data(), 1, ei.data() + ei.outerStride(), 1, ei.cols(), num_nodes,
                     none ? nullptr : edge_features.data(), edge_features.cols(), edge_features.outerStride());
}

std::int64_t GraphStructure::num_nodes() const noexcept {
  return data_->csr.num_nodes;
}
std::int64_t GraphStructure::num_sources() const noexcept {
  return data_->csr.num_sources;
}
bool GraphStructure::bipartite() const noexcept {
  return data_->csr.bipartite;
}
std::int64_t GraphStructure::num_edges() const noexcept {
  return data_->csr.num_edges;
}
bool GraphStructure::has_edge_features() const noexcept {
  return data_->has_features;
}
std::int64_t GraphStructure::edge_feature_dim() const noexcept {
  return data_->edge_features.cols();
}
bool GraphStructure::has_self_loops() const noexcept {
  return data_->csr.num_self_loops > 0;
}
const RowMatrixXf& GraphStructure::edge_features() const noexcept {
  return data_->edge_features;
}
const RowMatrixXf& GraphStructure::self_loop_features() const noexcept {
  return data_->loop_features;
}
const detail::GraphCsr& GraphStructure::csr() const noexcept {
  return data_->csr;
}

RowMatrixXi64 GraphStructure::edges() const {
  const detail::GraphCsr& g = data_->csr;
  RowMatrixXi64 out(g.num_edges, 2);
  for (std::int64_t i = 0; i < g.num_nodes; ++i) {
    for (std::int64_t p = g.indptr[i]; p < g.indptr[i + 1]; ++p) {
      out(g.edge_id[p], 0) = g.source[p];
      out(g.edge_id[p], 1) = i;
    }
    if (g.num_self_loops > 0)
      for (std::int64_t p = g.loop_indptr[i]; p < g.loop_indptr[i + 1]; ++p) out.row(g.loop_edge_id[p]).setConstant(i);
  }
  return out;
}

}  // namespace ruvector
