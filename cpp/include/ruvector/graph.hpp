// Graph attention (docs/contract.md §3–§4): GraphStructure, a validated graph held in compressed form,
// and GraphAttention, a GAT (Veličković et al.) or GATv2 (Brody et al.) layer with the
// semantics, parameter names and shapes of torch_geometric's GATConv / GATv2Conv.
//
// Messages flow source → target. For target i with incoming edges j → i (existing self-loops
// removed and one added per node when add_self_loops):
//   GAT:   e_ji = LeakyReLU(a_srcₕ·W xⱼ + a_dstₕ·W xᵢ [+ a_edgeₕ·W_e f_ji])
//   GATv2: e_ji = a ₕ·LeakyReLU(W_l xⱼ + W_r xᵢ [+ W_e f_ji])        (per head h)
//   α_ji = softmax over j of e_ji;  out_i = Σ_j α_ji · (W xⱼ | W_l xⱼ)
// heads concatenated [N, H·C] or averaged [N, C], plus bias. A self-loop's edge features are
// the mean of the node's incoming (non-self-loop) edge features (PyG's fill_value="mean").
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ruvector/config.hpp"
#include "ruvector/types.hpp"

namespace ruvector {

namespace detail {
struct GraphCsr;         // the compressed form GraphStructure builds (library sources only)
struct GraphParameters;  // a GraphAttention's weights in kernel-ready form (library sources only)
}  // namespace detail

// A graph, validated once and held in compressed, target-major (CSR) form: edges grouped by
// target, ordinary edges and given self-loops apart, so that a layer may drop the latter
// (add_self_loops) or keep them without rebuilding anything.
class GraphStructure {
 public:
  // An empty graph with no nodes.
  GraphStructure();
  // `edges` [E, 2]: one (source, target) row per edge, 0 <= index < num_nodes.
  // `edge_features` [E, F] (optional: pass a matrix with zero columns and zero rows for none).
  GraphStructure(const Eigen::Ref<const RowMatrixXi64>& edges, std::int64_t num_nodes);
  GraphStructure(const Eigen::Ref<const RowMatrixXi64>& edges, std::int64_t num_nodes, const MatrixRef& edge_features);
  // PyG's layout: `edge_index` [2, E], row 0 the sources, row 1 the targets.
  static GraphStructure from_edge_index(const Eigen::Ref<const RowMatrixXi64>& edge_index, std::int64_t num_nodes);
  static GraphStructure from_edge_index(const Eigen::Ref<const RowMatrixXi64>& edge_index, std::int64_t num_nodes,
                                        const MatrixRef& edge_features);
  // The general form behind the others: sources[e * source_stride], targets[e * target_stride]
  // for e < num_edges; edge_features may be null (then feature_dim is ignored).
  // `num_sources` >= 0 makes the graph bipartite (PyG's size=(N_src, N_dst)): sources index
  // [0, num_sources), targets [0, num_nodes); -1 means one node set of num_nodes nodes.
  // The indices are read once: a caller changing them during the call gets InvalidInput or a
  // graph of some of the values, never memory corruption.
  static GraphStructure from_arrays(const std::int64_t* sources, std::ptrdiff_t source_stride,
                                    const std::int64_t* targets, std::ptrdiff_t target_stride, std::int64_t num_edges,
                                    std::int64_t num_nodes, const float* edge_features, std::int64_t feature_dim,
                                    std::int64_t feature_stride, std::int64_t num_sources = -1);

  std::int64_t num_nodes() const noexcept;    // the targets' node count (N_dst when bipartite)
  std::int64_t num_sources() const noexcept;  // N_src when bipartite, else num_nodes()
  bool bipartite() const noexcept;            // built with num_sources (a pair of node counts)
  std::int64_t num_edges() const noexcept;
  bool has_edge_features() const noexcept;
  std::int64_t edge_feature_dim() const noexcept;  // 0 when there are none
  bool has_self_loops() const noexcept;

  // The edges as given, [E, 2] (source, target).
  RowMatrixXi64 edges() const;
  // [E, F] as given (empty when there are none).
  const RowMatrixXf& edge_features() const noexcept;
  // [N, F]: the mean of each node's incoming ordinary edge features, zeros for a node with
  // none (the features of the self-loop GraphAttention adds). Empty without edge features.
  const RowMatrixXf& self_loop_features() const noexcept;
  // The compressed form, for the library's compute path and tests.
  const detail::GraphCsr& csr() const noexcept;

 private:
  struct Data;
  std::shared_ptr<const Data> data_;  // immutable once built: copies share it, threads may too
};

enum class GraphVariant { Gat, GatV2 };

// The edge features of an added self-loop, as PyG's add_self_loops(fill_value=...): a
// reduction of the node's incoming (non-self-loop) edge features — 0 for a node with none,
// 1 for Mul — or a constant.
enum class FillMode { Mean, Add, Max, Min, Mul, Constant };

// How a layer is built (with AttentionConfig's num_heads = H, head_dim = C, use_bias, seed).
struct GraphConfig {
  std::optional<std::int64_t> in_features;  // unset: fixed by the first call (lazy)
  // Set: in_features is the pair (F_src, F_dst) (PyG's tuple in_channels: GAT's lin_src and
  // lin_dst, GATv2's lin_l and lin_r of those widths); in_features must be set too.
  std::optional<std::int64_t> in_features_dst;
  bool concat = true;                       // heads concatenated [N, H·C], else averaged [N, C]
  double negative_slope = 0.2;              // LeakyReLU slope
  bool add_self_loops = true;               // remove given self-loops, add one per node
  std::optional<std::int64_t> edge_dim;     // edge feature width (enables lin_edge / att_edge)
  GraphVariant variant = GraphVariant::Gat;
  FillMode fill_mode = FillMode::Mean;  // self-loop edge features (with edge_dim)
  double fill_value = 0.0;              // the constant of FillMode::Constant
  bool residual = false;                // out += x_dst·res.weightᵀ
  bool share_weights = false;           // GATv2: lin_r is lin_l

  // Throws InvalidConfig naming the field.
  void validate() const;
};

// What one call asks for.
struct GraphOptions {
  bool need_weights = true;  // false: no per-edge coefficients
  // Only these target rows (ids in [0, N_dst), any order, repeats allowed), when has_targets:
  // values [targets.size(), out]; weights cover the in-edges of the distinct targets once each.
  bool has_targets = false;
  std::vector<std::int64_t> targets;
};

class GraphAttention {
 public:
  explicit GraphAttention(AttentionConfig config = {}, GraphConfig graph_config = {});
  GraphAttention(const GraphAttention& other);
  GraphAttention& operator=(const GraphAttention& other);

  const AttentionConfig& config() const noexcept { return config_; }
  const GraphConfig& graph_config() const noexcept { return graph_config_; }
  std::int64_t num_heads() const noexcept { return config_.num_heads; }
  std::int64_t head_dim() const noexcept { return config_.head_dim; }
  // Width of the output rows: H·C with concat, C without.
  std::int64_t out_features() const noexcept;
  // Input width once fixed (given, set by set_weights, or by the first call); with a pair
  // in_features, F_src, and in_features_dst() F_dst (else the same as in_features()).
  std::optional<std::int64_t> in_features() const;
  std::optional<std::int64_t> in_features_dst() const;

  // node_features [N, F], graph with N nodes → values [N, H·C] or [N, C]; weights [E', H]
  // (the coefficient of each edge used, PyG's order: given edges without self-loops, then one
  // self-loop per node; or the given edges when add_self_loops is false) with their [E', 2]
  // list in metadata["edges"].
  AttentionOutput compute(const MatrixRef& node_features, const GraphStructure& graph,
                          const GraphOptions& options = {}) const;
  // Bipartite, as PyG's (x_src, x_dst): edges from rows of x_src to rows of x_dst, values
  // [N_dst, out]; added self-loops for node ids below min(N_src, N_dst); residual on x_dst.
  AttentionOutput compute(const MatrixRef& x_src, const MatrixRef& x_dst, const GraphStructure& graph,
                          const GraphOptions& options = {}) const;
  // The checks compute makes before any work (batches run them on every item first).
  void validate(const MatrixRef& node_features, const GraphStructure& graph, const GraphOptions& options = {}) const;
  void validate(const MatrixRef& x_src, const MatrixRef& x_dst, const GraphStructure& graph,
                const GraphOptions& options = {}) const;

  // Fixes in_features (Glorot weights from the seed) if it is not fixed yet; throws
  // DimensionMismatch when it already is, to another value.
  void initialize(std::int64_t in_features) const;

  // The parameter names of this layer (PyG's state_dict keys), sorted. GATConv: lin.weight
  // [H·C, F], att_src and att_dst [1, H, C], lin_edge.weight [H·C, edge_dim] and att_edge
  // [1, H, C] (with edge_dim), bias [H·C] or [C]; GATv2Conv: lin_l.weight, lin_r.weight
  // [H·C, F], lin_l.bias, lin_r.bias [H·C], att [1, H, C], lin_edge.weight, bias. A pair
  // in_features gives GAT lin_src.weight [H·C, F_src], lin_dst.weight [H·C, F_dst]; residual
  // res.weight [out, F_dst]. With share_weights, lin_r.* name lin_l.* (as PyG's state_dict).
  std::vector<std::string> weight_names() const;
  // PyG's shapes; empty before the weights exist (lazy layer not yet called).
  StateDict get_weights() const;
  // Replaces the given parameters (all or some); a layer without weights yet must be given
  // the input projection(s), which fix in_features. Throws (leaving the layer unchanged) on
  // an unknown name or a shape other than PyG's.
  void set_weights(const StateDict& weights);

 private:
  AttentionOutput run(const MatrixRef& x_src, const MatrixRef& x_dst, const GraphStructure& graph,
                      const GraphOptions& options, bool bipartite) const;
  void check(const MatrixRef& x_src, const MatrixRef& x_dst, const GraphStructure& graph,
             const GraphOptions& options, bool bipartite) const;
  std::shared_ptr<const detail::GraphParameters> parameters(std::int64_t in_features) const;
  std::shared_ptr<const detail::GraphParameters> snapshot() const;

  AttentionConfig config_;
  GraphConfig graph_config_;
  mutable std::mutex mutex_;  // guards params_ (lazy initialisation and set_weights)
  std::mutex update_mutex_;   // one set_weights at a time: its read-modify-write is atomic
  mutable std::shared_ptr<const detail::GraphParameters> params_;
};

}  // namespace ruvector
