// GraphAttention's parameters: PyG's state_dict names and shapes, seeded Glorot initialisation
// (lazy until in_features is known), get/set_weights, and the kernel-ready forms of the edge
// terms, replaced whole under the layer's mutex.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "graph/internal.hpp"
#include "memory/memory.hpp"
#include "messages.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/graph.hpp"
#include "state_dict.hpp"

namespace ruvector {

void GraphConfig::validate() const {
  if (in_features && *in_features < 1)  // a layer over no features is a mistake, not a layer
    throw InvalidConfig("in_features must be >= 1 (or None to take it from the first call), got " +
                        std::to_string(*in_features));
  if (!std::isfinite(negative_slope))
    throw InvalidConfig("negative_slope must be a finite number, got " + std::to_string(negative_slope));
  if (edge_dim && *edge_dim < 1)
    throw InvalidConfig("edge_dim must be >= 1 (or None without edge features), got " + std::to_string(*edge_dim));
  if (in_features_dst && !in_features)
    throw InvalidConfig("in_features_dst is set without in_features: give in_features as a pair (F_src, F_dst)");
  if (in_features_dst && *in_features_dst < 0)
    throw InvalidConfig("in_features (F_src, F_dst) must be >= 0, got F_dst=" + std::to_string(*in_features_dst));
  if (share_weights && variant != GraphVariant::GatV2)
    throw InvalidConfig("share_weights is a GATv2 option (GATv2Conv's lin_r = lin_l): use variant=\"gatv2\" or "
                        "share_weights=False");
  if (share_weights && in_features_dst && *in_features_dst != *in_features)
    throw InvalidConfig("share_weights=True applies lin_l to both x_src and x_dst, so in_features (" +
                        std::to_string(*in_features) + ", " + std::to_string(*in_features_dst) +
                        ") must have equal widths: give one int or share_weights=False");
}

namespace {

using Parameters = detail::GraphParameters;
using Matrices = std::map<std::string, RowMatrixXf>;  // PyG names → the matrices a layer keeps

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

// The matrix shape [rows, cols] of every parameter this layer has.
// (With share_weights, lin_r.* are not among them: they name lin_l.*, see alias_of.)
std::map<std::string, std::pair<Index, Index>> expected_shapes(const AttentionConfig& c, const GraphConfig& o,
                                                               std::int64_t in_src, std::int64_t in_dst) {
  const Index H = c.num_heads, C = c.head_dim, HC = H * C, out = o.concat ? HC : C;
  std::map<std::string, std::pair<Index, Index>> s;
  if (o.variant == GraphVariant::Gat) {
    if (o.in_features_dst) {
      s["lin_src.weight"] = {HC, in_src};
      s["lin_dst.weight"] = {HC, in_dst};
    } else {
      s["lin.weight"] = {HC, in_src};
    }
    s["att_src"] = {H, C};
    s["att_dst"] = {H, C};
    if (o.edge_dim) s["att_edge"] = {H, C};
  } else {
    s["lin_l.weight"] = {HC, in_src};
    if (c.use_bias) s["lin_l.bias"] = {1, HC};
    if (!o.share_weights) {
      s["lin_r.weight"] = {HC, in_dst};
      if (c.use_bias) s["lin_r.bias"] = {1, HC};
    }
    s["att"] = {H, C};
  }
  if (o.edge_dim) s["lin_edge.weight"] = {HC, *o.edge_dim};
  if (o.residual) s["res.weight"] = {out, in_dst};
  if (c.use_bias) s["bias"] = {1, out};
  return s;
}

// With share_weights, GATv2Conv's lin_r is lin_l: its state_dict holds both names.
std::string alias_of(const GraphConfig& o, const std::string& name) {
  if (o.share_weights && name.rfind("lin_r.", 0) == 0) return "lin_l." + name.substr(6);
  return name;
}

std::int64_t dst_width(const GraphConfig& o, std::int64_t in_src) {
  return o.in_features_dst.value_or(in_src);
}

bool is_head_tensor(const std::string& name) {
  return name == "att" || name.rfind("att_", 0) == 0;
}
bool is_vector(const std::string& name) {
  return name == "bias" || (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

// PyG's shape of a parameter kept as a [rows, cols] matrix: [1, H, C], [n] or [out, in].
std::vector<Index> pyg_shape(const std::string& name, Index rows, Index cols) {
  if (is_head_tensor(name)) return {1, rows, cols};
  if (is_vector(name)) return {cols};
  return {rows, cols};
}

// Glorot weights as PyG's reset_parameters (att and Linear weights glorot, Linear biases
// uniform(±1/√in), output bias zeros), drawn from the seed.
Matrices initial_weights(const AttentionConfig& c, const GraphConfig& o, std::int64_t in_features) {
  Matrices w;
  const auto shapes = expected_shapes(c, o, in_features, dst_width(o, in_features));
  double total = 0;  // all of them together, before the first is allocated
  for (const auto& [name, shape] : shapes) total += static_cast<double>(shape.first) * static_cast<double>(shape.second);
  memory::checked_elements(1, static_cast<std::int64_t>(std::min(total, 4e18)), "the weights (all together)",
                           "use a smaller in_features (input width), or fewer heads or channels");
  for (const auto& [name, shape] : shapes) {
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

std::shared_ptr<const Parameters> make_parameters(const AttentionConfig& c, const GraphConfig& o,
                                                  std::int64_t in_features, Matrices named) {
  auto p = std::make_shared<Parameters>();
  p->in_features = in_features;
  p->in_features_dst = dst_width(o, in_features);
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

}  // namespace

// ---------------------------------------------------------------------------------------------
// GraphAttention

GraphAttention::GraphAttention(AttentionConfig config, GraphConfig graph_config)
    : config_(config), graph_config_(graph_config) {
  config_.validate();
  graph_config_.validate();
  const double hc = static_cast<double>(config_.num_heads) * static_cast<double>(config_.head_dim);
  if (hc > static_cast<double>(std::numeric_limits<std::int32_t>::max()))
    throw InvalidConfig("num_heads * head_dim = " + std::to_string(static_cast<long long>(hc)) +
                        " is too large: use fewer heads or channels");
  if (graph_config_.in_features) initialize(*graph_config_.in_features);
}

GraphAttention::GraphAttention(const GraphAttention& other)
    : config_(other.config_), graph_config_(other.graph_config_), params_(other.snapshot()) {}

GraphAttention& GraphAttention::operator=(const GraphAttention& other) {
  if (this == &other) return *this;
  auto p = other.snapshot();
  std::lock_guard<std::mutex> lock(mutex_);
  config_ = other.config_;
  graph_config_ = other.graph_config_;
  params_ = std::move(p);
  return *this;
}

std::int64_t GraphAttention::out_features() const noexcept {
  return graph_config_.concat ? static_cast<std::int64_t>(config_.num_heads) * config_.head_dim : config_.head_dim;
}

std::shared_ptr<const detail::GraphParameters> GraphAttention::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return params_;
}

std::optional<std::int64_t> GraphAttention::in_features() const {
  auto p = snapshot();
  if (p) return p->in_features;
  return std::nullopt;
}

std::optional<std::int64_t> GraphAttention::in_features_dst() const {
  auto p = snapshot();
  if (p) return p->in_features_dst;
  return std::nullopt;
}

std::shared_ptr<const detail::GraphParameters> GraphAttention::parameters(std::int64_t in_features) const {
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
  params_ = make_parameters(config_, graph_config_, in_features, initial_weights(config_, graph_config_, in_features));
  return params_;
}

void GraphAttention::initialize(std::int64_t in_features) const {
  if (in_features < 1)
    throw InvalidConfig("in_features must be >= 1 (node features with no columns are no input), got " +
                        std::to_string(in_features));
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
  for (const auto& [name, shape] : expected_shapes(config_, graph_config_, 0, 0)) {
    names.push_back(name);
    if (graph_config_.share_weights && name.rfind("lin_l.", 0) == 0) names.push_back("lin_r." + name.substr(6));
  }
  std::sort(names.begin(), names.end());
  return names;
}

StateDict GraphAttention::get_weights() const {
  StateDict d;
  if (const auto p = snapshot())
    for (const auto& [name, m] : p->named) {
      d[name] = Parameter{pyg_shape(name, m.rows(), m.cols()), m};
      if (graph_config_.share_weights && name.rfind("lin_l.", 0) == 0)
        d["lin_r." + name.substr(6)] = Parameter{pyg_shape(name, m.rows(), m.cols()), m};
    }
  return d;
}

void GraphAttention::set_weights(const StateDict& given) {
  const auto known = expected_shapes(config_, graph_config_, 0, 0);  // names do not depend on in_features
  StateDict weights;  // by canonical name (share_weights: lin_r.* is lin_l.*)
  for (const auto& [given_name, value] : given) {
    const std::string name = alias_of(graph_config_, given_name);
    if (known.find(name) == known.end()) {
      std::string all;
      for (const auto& n : weight_names()) all += (all.empty() ? "" : ", ") + n;
      throw InvalidInput("unknown weight '" + given_name + "': this " +
                         (graph_config_.variant == GraphVariant::Gat ? "GATConv" : "GATv2Conv") + "-style layer has " +
                         all);
    }
    auto [it, fresh] = weights.emplace(name, value);
    if (!fresh && (it->second.shape != value.shape || it->second.data.rows() != value.data.rows() ||
                   it->second.data.cols() != value.data.cols() || it->second.data != value.data))
      throw InvalidInput("share_weights=True: " + given_name + " must equal " + name +
                         " (GATv2Conv's lin_r is lin_l), got different values");
  }
  std::lock_guard<std::mutex> update(update_mutex_);
  auto current = snapshot();
  // in_features: fixed already, or taken from the input projection(s) given here.
  std::optional<std::int64_t> in;
  if (current) in = current->in_features;
  if (graph_config_.in_features) in = *graph_config_.in_features;  // a pair fixes both widths up front
  // Without a pair the destination side has the same width, so every projection fixes it.
  const bool pair = graph_config_.in_features_dst.has_value();
  const char* const projections[] = {"lin.weight", "lin_src.weight", "lin_l.weight", "lin_r.weight", "res.weight"};
  for (const char* name : projections) {
    if (pair && std::string(name) != "lin_src.weight" && std::string(name) != "lin_l.weight") continue;
    auto it = weights.find(name);
    if (it == weights.end()) continue;
    const std::int64_t cols = it->second.shape.empty() ? 0 : it->second.shape.back();
    if (in && *in != cols)
      throw DimensionMismatch(std::string(name) + " has " + std::to_string(cols) + " columns, but this layer takes " +
                                  std::to_string(*in) + " input features (in_features): give [" +
                                  std::to_string(static_cast<long long>(config_.num_heads) * config_.head_dim) + ", " +
                                  std::to_string(*in) + "]",
                              *in, cols);
    in = cols;
  }
  const std::int64_t in_src = in.value_or(0);
  const auto shapes = expected_shapes(config_, graph_config_, in_src, dst_width(graph_config_, in_src));
  for (const auto& [name, value] : weights) {
    const auto& [rows, cols] = shapes.at(name);
    const std::vector<Index> expected = pyg_shape(name, rows, cols);
    if (value.shape != expected)
      throw DimensionMismatch(name + " has shape " + detail::shape_str(value.shape) + ", expected " +
                                  detail::shape_str(expected),
                              rows * cols, detail::shape_elements(value.shape));
    detail::check_parameter_data(name, value);
  }
  if (!in)
    throw InvalidInput(std::string("this layer has no weights yet (in_features=None and never called): include ") +
                       (graph_config_.variant == GraphVariant::Gat ? "lin.weight" : "lin_l.weight and lin_r.weight") +
                       ", which fix in_features (or create it with in_features=F)");
  Matrices named = current ? current->named : initial_weights(config_, graph_config_, *in);
  for (const auto& [name, value] : weights) named[name] = detail::parameter_matrix(value);
  auto fresh = make_parameters(config_, graph_config_, *in, std::move(named));
  std::lock_guard<std::mutex> lock(mutex_);
  // Another set_weights or a first call may have fixed in_features since the snapshot.
  if (params_ && params_->in_features != *in)
    throw DimensionMismatch("this layer's in_features changed to " + std::to_string(params_->in_features) +
                                " while these weights were set; set them again",
                            params_->in_features, *in);
  params_ = std::move(fresh);
}

}  // namespace ruvector
