// GraphStructure (validated once, CSR by target) and the GraphAttention front end: checks,
// lazy Glorot weights, the linear transforms through the GEMM kernel, then the per-target
// edge kernel of the active backend in parallel over edge-balanced ranges of targets.
#include "ruvector/graph.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "attention_core.hpp"
#include "memory/memory.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"
#include "ruvector/thread_pool.hpp"
#include "simd/graph_kernels.hpp"

namespace ruvector {

// ---------------------------------------------------------------------------------------------
// GraphStructure

struct GraphStructure::Data {
  GraphCsr csr;
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
                                           std::int64_t feature_dim, std::int64_t feature_stride) {
  if (num_nodes < 0) throw InvalidInput("num_nodes must be >= 0, got " + std::to_string(num_nodes));
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
  GraphCsr& g = data->csr;
  g.num_nodes = num_nodes;
  g.num_edges = num_edges;
  const std::size_t n = static_cast<std::size_t>(num_nodes);

  // Pass 1: validate and count in-edges (ordinary) and self-loops per node.
  g.indptr.assign(n + 1, 0);
  std::vector<std::int64_t> loop_count;
  for (std::int64_t e = 0; e < num_edges; ++e) {
    const std::int64_t s = sources[e * source_stride], t = targets[e * target_stride];
    check_index(s, e, "source", num_nodes);
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

  // Pass 2: stable placement (edges of one target keep their given order).
  const std::size_t nnz = static_cast<std::size_t>(g.indptr[n]);
  g.source.resize(nnz);
  g.edge_id.resize(nnz);
  if (g.num_self_loops > 0) {
    g.kept_rank.resize(nnz);
    for (std::size_t i = 0; i < n; ++i) loop_count[i + 1] += loop_count[i];
    g.loop_indptr = loop_count;
    g.loop_edge_id.resize(static_cast<std::size_t>(g.num_self_loops));
  }
  std::vector<std::int64_t> next(g.indptr.begin(), g.indptr.end() - 1);
  std::int64_t rank = 0;
  for (std::int64_t e = 0; e < num_edges; ++e) {
    const std::int64_t s = sources[e * source_stride], t = targets[e * target_stride];
    if (s == t) {
      g.loop_edge_id[static_cast<std::size_t>(loop_count[static_cast<std::size_t>(t)]++)] = e;
    } else {
      const std::size_t pos = static_cast<std::size_t>(next[static_cast<std::size_t>(t)]++);
      g.source[pos] = s;
      g.edge_id[pos] = e;
      if (!g.kept_rank.empty()) g.kept_rank[pos] = rank;
      ++rank;
    }
  }

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
        std::string(edge_index ? "edge_index" : "edges") + " has shape " + detail::shape_str(m.rows(), m.cols()) +
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
const GraphCsr& GraphStructure::csr() const noexcept {
  return data_->csr;
}

RowMatrixXi64 GraphStructure::edges() const {
  const GraphCsr& g = data_->csr;
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

// ---------------------------------------------------------------------------------------------
// Options and parameters

void GraphAttentionOptions::validate() const {
  if (in_features && *in_features < 0)
    throw InvalidConfig("in_features must be >= 0 (or None to take it from the first call), got " +
                        std::to_string(*in_features));
  if (!std::isfinite(negative_slope))
    throw InvalidConfig("negative_slope must be a finite number, got " + std::to_string(negative_slope));
  if (edge_dim && *edge_dim < 1)
    throw InvalidConfig("edge_dim must be >= 1 (or None without edge features), got " + std::to_string(*edge_dim));
}

struct GraphAttention::Parameters {
  std::int64_t in_features = 0;
  GraphWeights named;  // PyG names → [H, C] / [1, n] / [out, in] matrices
  // Kernel-ready forms of the edge terms.
  RowMatrixXf edge_att;   // GAT: [edge_dim, H], column h = W_e[h·C:(h+1)·C]ᵀ·att_edge[h]
  RowMatrixXf edge_proj;  // GATv2: W_eᵀ [edge_dim, H·C]
};

namespace {

using Parameters = GraphAttention::Parameters;

std::uint64_t mix64(std::uint64_t x) noexcept {  // SplitMix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t name_hash(const std::string& s) noexcept {  // FNV-1a: a stream per parameter name
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Uniform in [-bound, bound], a function of (seed, name, index) only: reproducible anywhere.
RowMatrixXf uniform(Index rows, Index cols, double bound, std::uint64_t seed, const std::string& name) {
  RowMatrixXf m(rows, cols);
  const std::uint64_t key = mix64(seed ^ mix64(name_hash(name)));
  for (Index i = 0; i < m.size(); ++i) {
    const double u = static_cast<double>(mix64(key ^ static_cast<std::uint64_t>(i)) >> 11) * 0x1.0p-53;
    m.data()[i] = static_cast<float>((2.0 * u - 1.0) * bound);
  }
  return m;
}

double glorot_bound(Index a, Index b) {
  return a + b > 0 ? std::sqrt(6.0 / static_cast<double>(a + b)) : 0.0;
}

// The expected C++ shape of every parameter this layer has.
std::map<std::string, std::pair<Index, Index>> expected_shapes(const AttentionConfig& c, const GraphAttentionOptions& o,
                                                               std::int64_t in_features) {
  const Index H = c.num_heads, C = c.head_dim, HC = H * C, out = o.concat ? HC : C;
  std::map<std::string, std::pair<Index, Index>> s;
  if (o.variant == GraphVariant::Gat) {
    s["lin.weight"] = {HC, in_features};
    s["att_src"] = {H, C};
    s["att_dst"] = {H, C};
    if (o.edge_dim) s["att_edge"] = {H, C};
  } else {
    s["lin_l.weight"] = {HC, in_features};
    s["lin_r.weight"] = {HC, in_features};
    if (c.use_bias) {
      s["lin_l.bias"] = {1, HC};
      s["lin_r.bias"] = {1, HC};
    }
    s["att"] = {H, C};
  }
  if (o.edge_dim) s["lin_edge.weight"] = {HC, *o.edge_dim};
  if (c.use_bias) s["bias"] = {1, out};
  return s;
}

bool is_head_tensor(const std::string& name) {
  return name == "att" || name.rfind("att_", 0) == 0;
}
bool is_vector(const std::string& name) {
  return name == "bias" || (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

// PyG's shape of a parameter, for messages: [1, H, C], [n] or [out, in].
std::string pyg_shape(const std::string& name, Index rows, Index cols) {
  if (is_head_tensor(name)) return "[1, " + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  if (is_vector(name)) return "[" + std::to_string(cols) + "]";
  return detail::shape_str(rows, cols);
}

std::string names_of(const std::map<std::string, std::pair<Index, Index>>& shapes) {
  std::string s;
  for (const auto& [name, shape] : shapes) s += (s.empty() ? "" : ", ") + name;
  return s;
}

// Glorot weights as PyG's reset_parameters (att and Linear weights glorot, Linear biases
// uniform(±1/√in), output bias zeros), drawn from the seed.
GraphWeights initial_weights(const AttentionConfig& c, const GraphAttentionOptions& o, std::int64_t in_features) {
  GraphWeights w;
  for (const auto& [name, shape] : expected_shapes(c, o, in_features)) {
    memory::checked_elements(shape.first, shape.second, ("weight " + name).c_str(),
                             "use a smaller in_features (input width), or fewer heads or channels");
    if (name == "bias")
      w[name] = RowMatrixXf::Zero(shape.first, shape.second);
    else if (is_vector(name))
      w[name] = uniform(shape.first, shape.second,
                        in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0, c.seed, name);
    else
      w[name] = uniform(shape.first, shape.second, glorot_bound(shape.first, shape.second), c.seed, name);
  }
  return w;
}

std::shared_ptr<const Parameters> make_parameters(const AttentionConfig& c, const GraphAttentionOptions& o,
                                                  std::int64_t in_features, GraphWeights named) {
  auto p = std::make_shared<Parameters>();
  p->in_features = in_features;
  p->named = std::move(named);
  const Index H = c.num_heads, C = c.head_dim;
  if (o.edge_dim) {
    const RowMatrixXf& we = p->named.at("lin_edge.weight");  // [HC, edge_dim]
    if (o.variant == GraphVariant::Gat) {
      const RowMatrixXf& att = p->named.at("att_edge");
      p->edge_att.resize(*o.edge_dim, H);
      for (Index d = 0; d < *o.edge_dim; ++d)
        for (Index h = 0; h < H; ++h) {
          double s = 0.0;
          for (Index ch = 0; ch < C; ++ch) s += static_cast<double>(we(h * C + ch, d)) * att(h, ch);
          p->edge_att(d, h) = static_cast<float>(s);
        }
    } else {
      p->edge_proj = we.transpose();
    }
  }
  return p;
}

const char* variant_name(GraphVariant v) {
  return v == GraphVariant::Gat ? "gat" : "gatv2";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GraphAttention

GraphAttention::GraphAttention(AttentionConfig config, GraphAttentionOptions options)
    : config_(config), options_(options) {
  config_.validate();
  options_.validate();
  const double hc = static_cast<double>(config_.num_heads) * static_cast<double>(config_.head_dim);
  if (hc > static_cast<double>(std::numeric_limits<std::int32_t>::max()))
    throw InvalidConfig("num_heads * head_dim = " + std::to_string(static_cast<long long>(hc)) +
                        " is too large: use fewer heads or channels");
  if (options_.in_features) initialize(*options_.in_features);
}

GraphAttention::GraphAttention(const GraphAttention& other)
    : config_(other.config_), options_(other.options_), params_(other.snapshot()) {}

GraphAttention& GraphAttention::operator=(const GraphAttention& other) {
  if (this == &other) return *this;
  auto p = other.snapshot();
  std::lock_guard<std::mutex> lock(mutex_);
  config_ = other.config_;
  options_ = other.options_;
  params_ = std::move(p);
  return *this;
}

std::int64_t GraphAttention::out_features() const noexcept {
  return options_.concat ? static_cast<std::int64_t>(config_.num_heads) * config_.head_dim : config_.head_dim;
}

std::shared_ptr<const GraphAttention::Parameters> GraphAttention::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return params_;
}

std::optional<std::int64_t> GraphAttention::in_features() const {
  auto p = snapshot();
  if (p) return p->in_features;
  return std::nullopt;
}

std::shared_ptr<const GraphAttention::Parameters> GraphAttention::parameters(std::int64_t in_features) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (params_) {
    if (params_->in_features != in_features)
      throw DimensionMismatch("node_features has " + std::to_string(in_features) + " columns, but this layer takes " +
                                  std::to_string(params_->in_features) +
                                  " (in_features, fixed by its weights or first call): give [N, " +
                                  std::to_string(params_->in_features) + "] features",
                              params_->in_features, in_features);
    return params_;
  }
  // Lazy initialisation, once, under the lock: concurrent first calls agree on one set.
  params_ = make_parameters(config_, options_, in_features, initial_weights(config_, options_, in_features));
  return params_;
}

void GraphAttention::initialize(std::int64_t in_features) const {
  if (in_features < 0) throw InvalidConfig("in_features must be >= 0, got " + std::to_string(in_features));
  const auto p = snapshot();
  if (p && p->in_features != in_features)
    throw InvalidConfig("initialize(" + std::to_string(in_features) + "): this layer's in_features is already " +
                        std::to_string(p->in_features) +
                        " (fixed by its weights, an earlier initialize or its first call); make a new layer for "
                        "another input width");
  parameters(in_features);
}

std::vector<std::string> GraphAttention::weight_names() const {
  std::vector<std::string> names;
  for (const auto& [name, shape] : expected_shapes(config_, options_, 0)) names.push_back(name);
  return names;
}

GraphWeights GraphAttention::get_weights() const {
  auto p = snapshot();
  return p ? p->named : GraphWeights{};
}

void GraphAttention::set_weights(const GraphWeights& weights) {
  const auto known = expected_shapes(config_, options_, 0);  // names do not depend on in_features
  for (const auto& [name, value] : weights)
    if (known.find(name) == known.end())
      throw InvalidInput("unknown weight '" + name + "': this " +
                         (options_.variant == GraphVariant::Gat ? "GATConv" : "GATv2Conv") + "-style layer has " +
                         names_of(known));
  std::lock_guard<std::mutex> update(update_mutex_);
  auto current = snapshot();
  // in_features: fixed already, or taken from the input projection(s) given here.
  std::optional<std::int64_t> in;
  if (current) in = current->in_features;
  const char* const projections[] = {"lin.weight", "lin_l.weight", "lin_r.weight"};
  for (const char* name : projections) {
    auto it = weights.find(name);
    if (it == weights.end()) continue;
    const std::int64_t cols = it->second.cols();
    if (in && *in != cols)
      throw DimensionMismatch(std::string(name) + " has " + std::to_string(cols) + " columns, but this layer takes " +
                                  std::to_string(*in) + " input features (in_features): give [" +
                                  std::to_string(static_cast<long long>(config_.num_heads) * config_.head_dim) + ", " +
                                  std::to_string(*in) + "]",
                              *in, cols);
    in = cols;
  }
  const auto shapes = expected_shapes(config_, options_, in.value_or(0));
  for (const auto& [name, value] : weights) {
    auto it = shapes.find(name);
    if (value.rows() != it->second.first || value.cols() != it->second.second)
      throw DimensionMismatch(name + " has shape " + pyg_shape(name, value.rows(), value.cols()) + ", expected " +
                                  pyg_shape(name, it->second.first, it->second.second),
                              it->second.first * it->second.second, value.rows() * value.cols());
  }
  if (!in)
    throw InvalidInput(std::string("this layer has no weights yet (in_features=None and never called): include ") +
                       (options_.variant == GraphVariant::Gat ? "lin.weight" : "lin_l.weight and lin_r.weight") +
                       ", which fix in_features");
  GraphWeights named = current ? current->named : initial_weights(config_, options_, *in);
  for (const auto& [name, value] : weights) named[name] = value;
  auto fresh = make_parameters(config_, options_, *in, std::move(named));
  std::lock_guard<std::mutex> lock(mutex_);
  // Another set_weights or a first call may have fixed in_features since the snapshot.
  if (params_ && params_->in_features != *in)
    throw DimensionMismatch("this layer's in_features changed to " + std::to_string(params_->in_features) +
                                " while these weights were set; set them again",
                            params_->in_features, *in);
  params_ = std::move(fresh);
}

namespace {

std::int64_t used_edges(const GraphCsr& g, bool add_self_loops) {
  return add_self_loops ? g.num_ordinary_edges() + g.num_nodes : g.num_edges;
}

}  // namespace

void GraphAttention::validate(const MatrixRef& x, const GraphStructure& graph, bool need_weights) const {
  const GraphCsr& g = graph.csr();
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
    if (!options_.edge_dim)
      throw InvalidInput("the graph has edge features but this layer has edge_dim=None: create it with edge_dim=" +
                         std::to_string(graph.edge_feature_dim()) +
                         " to use them, or build the GraphStructure without edge_features");
    if (graph.edge_feature_dim() != *options_.edge_dim)
      throw DimensionMismatch("edge_features has " + std::to_string(graph.edge_feature_dim()) +
                                  " columns, but this layer has edge_dim=" + std::to_string(*options_.edge_dim) +
                                  ": give [E, " + std::to_string(*options_.edge_dim) + "] edge features",
                              *options_.edge_dim, graph.edge_feature_dim());
  }
  const std::int64_t hc = static_cast<std::int64_t>(config_.num_heads) * config_.head_dim;
  memory::checked_elements(x.rows(), hc, "transformed node features", "use fewer nodes, heads or channels");
  memory::checked_elements(x.rows(), out_features(), "output", "use fewer nodes, heads or channels");
  if (graph.has_edge_features() && options_.variant == GraphVariant::Gat)
    memory::checked_elements(g.num_edges, config_.num_heads, "edge scores", "use fewer edges or heads");
  if (need_weights)
    memory::checked_elements(used_edges(g, options_.add_self_loops), config_.num_heads + 4, "attention weights",
                             "pass need_weights=False to compute without them");
}

namespace {

// Splits targets [0, N) into ranges of about equal work, enough of them for the pool to
// balance skewed degrees. A target costs `node_cost` edges' worth of work (GATv2 also
// transforms its row per task) and a range holds at most `max_targets` of them (bounding that
// task's scratch).
std::vector<std::size_t> target_ranges(const GraphCsr& g, double node_cost, std::size_t max_targets) {
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

AttentionOutput GraphAttention::compute(const MatrixRef& x, const GraphStructure& graph, bool need_weights) const {
  validate(x, graph, need_weights);
  const auto params = parameters(x.cols());
  const Parameters& P = *params;
  const GraphCsr& g = graph.csr();
  const std::size_t N = static_cast<std::size_t>(x.rows()), F = static_cast<std::size_t>(x.cols());
  const std::size_t H = static_cast<std::size_t>(config_.num_heads), C = static_cast<std::size_t>(config_.head_dim);
  const std::size_t HC = H * C;
  const bool v2 = options_.variant == GraphVariant::GatV2;
  const bool edge_terms = graph.has_edge_features();  // validate: then edge_dim matches

  AttentionOutput out;
  out.values = memory::output_matrix(x.rows(), out_features());
  memory::advise_huge_pages(out.values.data(), static_cast<std::size_t>(out.values.size()) * sizeof(float));

  simd::GatParams kp;
  kp.heads = H;
  kp.channels = C;
  kp.v2 = v2;
  kp.concat = options_.concat;
  kp.negative_slope = static_cast<float>(options_.negative_slope);
  kp.indptr = g.indptr.data();
  kp.source = g.source.data();
  kp.edge_id = g.edge_id.data();
  kp.add_self_loops = options_.add_self_loops;
  if (!options_.add_self_loops && g.num_self_loops > 0) {
    kp.loop_indptr = g.loop_indptr.data();
    kp.loop_edge_id = g.loop_edge_id.data();
  }
  kp.bias = config_.use_bias ? P.named.at("bias").data() : nullptr;
  kp.out = out.values.data();
  kp.ldo = static_cast<std::size_t>(out_features());

  const simd::GraphKernelTable& kernels = simd::active_graph_kernels();
  // The only [N, H·C] temporary: the transformed source rows, gathered by the edge kernel.
  memory::FloatBuffer transformed(N * HC);
  memory::FloatBuffer node_alpha(v2 ? 0 : 2 * N * H);
  memory::FloatBuffer edge_alpha(!v2 && edge_terms ? static_cast<std::size_t>(g.num_edges) * H : 0);
  memory::FloatBuffer loop_alpha(!v2 && edge_terms && options_.add_self_loops ? N * H : 0);

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
      const std::size_t de = static_cast<std::size_t>(*options_.edge_dim);
      detail::gemm(graph.edge_features().data(), de, P.edge_att.data(), H, false, edge_alpha.get(), H,
                   static_cast<std::size_t>(g.num_edges), H, de, nullptr);
      if (options_.add_self_loops)
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
      kp.ld_ef = static_cast<std::size_t>(*options_.edge_dim);
      kp.loop_features = options_.add_self_loops ? graph.self_loop_features().data() : nullptr;
      kp.edge_proj = P.edge_proj.data();
      kp.edge_dim = static_cast<std::size_t>(*options_.edge_dim);
    }
  }

  const std::int64_t used = used_edges(g, options_.add_self_loops);
  if (need_weights) {
    out.weights = memory::output_matrix(used, static_cast<Index>(H));
    memory::advise_huge_pages(out.weights.data(), static_cast<std::size_t>(out.weights.size()) * sizeof(float));
    out.weights_shape = {used, static_cast<Index>(H)};
    kp.weights = out.weights.data();
    kp.out_row = options_.add_self_loops && !g.kept_rank.empty() ? g.kept_rank.data() : nullptr;
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
      if (options_.add_self_loops) edges.row(g.num_ordinary_edges() + i).setConstant(i);
    }
    out.metadata["edges"] = std::move(edges);
  }
  out.metadata["attention_type"] = std::string("graph");
  out.metadata["num_nodes"] = static_cast<std::int64_t>(g.num_nodes);
  out.metadata["num_edges"] = static_cast<std::int64_t>(g.num_edges);
  out.metadata["num_heads"] = static_cast<std::int64_t>(H);
  out.metadata["variant"] = std::string(variant_name(options_.variant));
  out.metadata["concat"] = options_.concat;
  out.metadata["simd_backend"] = std::string(backend_name(simd_backend()));
  return out;
}

}  // namespace ruvector
