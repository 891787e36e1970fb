// GraphStructure and GraphAttention bindings (docs/contract.md §3–§4).
#include <pybind11/stl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "mechanism.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/graph.hpp"

namespace ruvector::bindings {
namespace {

std::int64_t to_num_nodes(py::handle obj) {
  if (py::isinstance<py::bool_>(obj) || !PyIndex_Check(obj.ptr()))
    throw InvalidInput("num_nodes must be an integer >= 0, got " + type_name(obj));
  PyObject* index = PyNumber_Index(obj.ptr());
  if (index == nullptr) {  // an __index__ that raised: Ctrl-C and MemoryError pass through
    if (py::error_already_set e; !is_input_error(e)) throw std::move(e);
    throw InvalidInput("num_nodes must be an integer >= 0, got " + type_name(obj));
  }
  const long long n = PyLong_AsLongLong(py::reinterpret_steal<py::object>(index).ptr());
  if (n == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw InvalidInput("num_nodes is too large for a 64-bit index");
  }
  if (n < 0) throw InvalidInput("num_nodes must be >= 0, got " + std::to_string(n));
  return n;
}

// num_nodes: an int, or a pair (N_src, N_dst) for a bipartite graph (then `sources` is set).
struct NodeCounts {
  std::int64_t targets = 0;
  std::int64_t sources = -1;  // -1: one node set
};

NodeCounts to_node_counts(py::handle obj) {
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    auto seq = py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != 2)
      throw InvalidInput("num_nodes must be an integer or a pair (N_src, N_dst), got a sequence of " +
                         std::to_string(seq.size()));
    return NodeCounts{to_num_nodes(seq[1]), to_num_nodes(seq[0])};
  }
  return NodeCounts{to_num_nodes(obj), -1};
}

py::object node_counts_of(const GraphStructure& g) {
  if (g.bipartite()) return py::make_tuple(g.num_sources(), g.num_nodes());
  return py::int_(g.num_nodes());
}

// Node indices as an int64, C-contiguous array (converted when needed). Floats, bools,
// complex and non-arrays raise InvalidInput naming `name`.
py::array_t<std::int64_t> to_index_array(py::handle obj, const char* name, const char* shape_hint) {
  if (is_non_array(obj))
    throw InvalidInput(std::string(name) + " must be an integer array " + shape_hint +
                       " or a sequence of (source, target) pairs, got " + type_name(obj));
  py::array a;
  try {
    a = py::reinterpret_borrow<py::array>(numpy().attr("asarray")(obj));
  } catch (py::error_already_set& e) {
    if (!is_input_error(e)) throw;
    throw InvalidInput(std::string(name) + " could not be read as an integer array " + shape_hint + ": " + e.what());
  }
  const char kind = a.dtype().kind();
  if (kind == 'u' && a.itemsize() == 8 && a.size() > 0 &&
      py::int_(a.attr("max")()).cast<unsigned long long>() >
          static_cast<unsigned long long>(std::numeric_limits<std::int64_t>::max()))
    throw InvalidInput(std::string(name) + " holds an index too large for a 64-bit node index");
  const bool empty_float = a.size() == 0 && kind == 'f';  // [] reads as float64
  if (kind != 'i' && kind != 'u' && !empty_float)
    throw InvalidInput(std::string(name) + " must hold integer node indices " + shape_hint + ", got dtype " +
                       std::string(py::str(a.dtype())) +
                       (kind == 'f'   ? "; convert with .astype(np.int64)"
                        : kind == 'O' ? " (ragged or mixed pairs?)"
                                      : ""));
  return contiguous_as<std::int64_t>(a, name, "int64", shape_hint);
}

// [E, F] float edge features (a 1-D [E] array counts as [E, 1], as PyG's edge_attr).
FloatArray to_edge_features(py::handle obj) {
  py::object src = py::reinterpret_borrow<py::object>(obj);
  if (py::isinstance<py::array>(obj) || py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    try {
      py::array a = py::reinterpret_borrow<py::array>(numpy().attr("asarray")(obj));
      const char kind = a.dtype().kind();
      if (a.ndim() == 1 && (kind == 'f' || kind == 'i' || kind == 'u' || kind == 'b')) src = a.attr("reshape")(-1, 1);
    } catch (py::error_already_set& e) {
      if (!is_input_error(e)) throw;  // Ctrl-C, MemoryError: not the input's fault
      // ragged and other malformed input: to_float_array below reports it
    }
  }
  return to_float_array(src, "edge_features", 2, "[E, F]");
}

// Graphs given to compute() as raw [E, 2] arrays, built into their CSR form once. PyG code
// passes the same edge_index on every call (PyG's own GCNConv offers `cached=True` for this);
// the CSR of the last few raw graphs is kept with a copy of their edges, and a call whose edges
// equal one of them element for element (checked in full, no hashing) reuses its CSR. Bounded:
// at most kKept graphs, each holding at most kMaxBytes (its edges' copy and its CSR).
class RawGraphCache {
 public:
  static RawGraphCache& instance() {
    static RawGraphCache* cache = new RawGraphCache();  // never destroyed: usable until exit
    return *cache;
  }

  // The CSR built earlier from exactly these [E, 2] edges and num_nodes, if kept.
  // (Comparing reads the caller's array without the GIL: a change during the call can only
  // make it match a kept graph of other valid edges, never corrupt anything.)
  std::optional<GraphStructure> find(const std::int64_t* edges, std::int64_t num_edges, NodeCounts nodes) {
    const std::size_t words = 2 * static_cast<std::size_t>(num_edges);
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
      if (it->nodes.targets != nodes.targets || it->nodes.sources != nodes.sources || it->edges.size() != words)
        continue;
      if (words > 0 && std::memcmp(it->edges.data(), edges, words * sizeof(std::int64_t)) != 0) continue;
      Entry hit = std::move(*it);  // most recently used last
      kept_.erase(it);
      kept_.push_back(std::move(hit));
      return kept_.back().graph;
    }
    return std::nullopt;
  }

  // Whether a graph of this size is kept: small ones rebuild in microseconds, huge ones are
  // not worth holding on to.
  static bool worth_keeping(std::int64_t num_edges, NodeCounts nodes) {
    const double bytes = 40.0 * static_cast<double>(num_edges) + 8.0 * static_cast<double>(nodes.targets);
    return num_edges >= kMinEdges && bytes <= kMaxBytes;
  }

  // `edges` is the copy the graph was built from (so the two always agree).
  void add(std::vector<std::int64_t>&& edges, NodeCounts nodes, const GraphStructure& graph) {
    try {
      Entry e{nodes, std::move(edges), graph};
      std::lock_guard<std::mutex> lock(mutex_);
      kept_.push_back(std::move(e));
      while (kept_.size() > kKept) kept_.pop_front();
    } catch (const std::bad_alloc&) {  // no room: nothing kept
    }
  }

 private:
  RawGraphCache() {
#if defined(__unix__) || defined(__APPLE__)
    // fork() happens between two uses of the cache, never in the middle of one.
    pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                   [] { instance().mutex_.unlock(); });
#endif
  }

  struct Entry {
    NodeCounts nodes;
    std::vector<std::int64_t> edges;  // [E, 2] as given
    GraphStructure graph;
  };
  static constexpr std::size_t kKept = 2;
  static constexpr std::int64_t kMinEdges = 4096;
  static constexpr double kMaxBytes = 128.0 * 1024 * 1024;  // ogbn-arxiv's 1.2 M edges: ~48 MB
  std::mutex mutex_;
  std::deque<Entry> kept_;
};

GraphStructure make_graph(py::handle edges, NodeCounts nodes, py::handle edge_features, bool edge_index,
                          const char* name, bool reuse_raw = false) {
  const std::int64_t num_nodes = nodes.targets;
  const char* hint = edge_index ? "[2, E]" : "[E, 2]";
  py::array_t<std::int64_t> idx = to_index_array(edges, name, hint);
  std::int64_t num_edges = 0;
  if (idx.size() > 0) {
    const bool ok = idx.ndim() == 2 && (edge_index ? idx.shape(0) == 2 : idx.shape(1) == 2);
    if (!ok) {
      std::string fix =
          edge_index ? "give row 0 the sources and row 1 the targets" : "give one (source, target) row per edge";
      if (!edge_index && idx.ndim() == 2 && idx.shape(0) == 2)
        fix = "for PyG's [2, E] layout use GraphStructure.from_edge_index";
      else if (edge_index && idx.ndim() == 2 && idx.shape(1) == 2)
        fix = "for an [E, 2] list of pairs use GraphStructure(edges, num_nodes)";
      throw DimensionMismatch(std::string(name) + " must be " + hint + ", got shape " + shape_of(idx) + ": " + fix, 2,
                              idx.ndim() == 2 ? (edge_index ? idx.shape(0) : idx.shape(1)) : idx.ndim());
    }
    num_edges = edge_index ? idx.shape(1) : idx.shape(0);
  }
  FloatArray features;
  const bool has_features = !edge_features.is_none();
  if (has_features) {
    features = to_edge_features(edge_features);
    if (features.rows() != num_edges)
      throw DimensionMismatch("edge_features has " + std::to_string(features.rows()) + " rows for " +
                                  std::to_string(num_edges) + " edges: give one feature row per edge, [E, F]",
                              num_edges, features.rows());
  }
  const std::int64_t* data = idx.data();
  const std::int64_t* src = data;
  const std::int64_t* dst = data == nullptr ? nullptr : (edge_index ? data + num_edges : data + 1);
  const std::ptrdiff_t stride = edge_index ? 1 : 2;
  // Safe without the GIL: `idx` and `features` hold references to the buffers read here, and
  // building the CSR is plain C++ (O(E) work that should not block other Python threads).
  // from_arrays re-checks every index it reads twice, so another thread writing the array
  // meanwhile gets an error, never memory corruption.
  ReleaseGil release;
  reuse_raw = reuse_raw && !edge_index && !has_features;
  if (reuse_raw) {
    if (auto kept = RawGraphCache::instance().find(data, num_edges, nodes)) return *kept;
    if (RawGraphCache::worth_keeping(num_edges, nodes)) {
      // Built from one copy, which is what the cache keeps: the two cannot disagree.
      std::vector<std::int64_t> copy(data, data + 2 * num_edges);
      GraphStructure graph =
          GraphStructure::from_arrays(copy.data(), 2, copy.data() + 1, 2, num_edges, num_nodes, nullptr, 0, 0,
                                      nodes.sources);
      RawGraphCache::instance().add(std::move(copy), nodes, graph);
      return graph;
    }
  }
  return GraphStructure::from_arrays(src, stride, dst, stride, num_edges, num_nodes,
                                     has_features ? features.data : nullptr, has_features ? features.cols() : 0,
                                     has_features ? features.cols() : 0, nodes.sources);
}

// compute's `graph` argument: a GraphStructure, pairs or an [E, 2] array over the nodes.
GraphStructure to_graph(py::handle obj, NodeCounts nodes) {
  if (py::isinstance<GraphStructure>(obj)) return obj.cast<GraphStructure>();
  if (is_non_array(obj))
    throw InvalidInput(
        "graph must be a GraphStructure, a sequence of (source, target) pairs or an integer array "
        "[E, 2], got " +
        type_name(obj));
  return make_graph(obj, nodes, py::none(), false, "graph", /*reuse_raw=*/true);
}

py::object optional_int(const std::optional<std::int64_t>& v) {
  return v ? py::object(py::int_(*v)) : py::none();
}

const char* variant_name(GraphVariant v) {
  return v == GraphVariant::Gat ? "gat" : "gatv2";
}

GraphVariant parse_variant(const std::string& name) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (s == "gat") return GraphVariant::Gat;
  if (s == "gatv2") return GraphVariant::GatV2;
  throw InvalidConfig("variant must be \"gat\" (GATConv) or \"gatv2\" (GATv2Conv), got \"" + name + "\"");
}

std::optional<std::int64_t> to_optional_count(py::handle obj, const char* name) {
  if (obj.is_none()) return std::nullopt;
  if (py::isinstance<py::bool_>(obj) || !PyIndex_Check(obj.ptr()))
    throw InvalidConfig(std::string(name) + " must be an integer or None, got " + type_name(obj));
  PyObject* index = PyNumber_Index(obj.ptr());
  if (index == nullptr) {  // an __index__ that raised: Ctrl-C and MemoryError pass through
    if (py::error_already_set e; !is_input_error(e)) throw std::move(e);
    throw InvalidConfig(std::string(name) + " must be an integer or None, got " + type_name(obj));
  }
  const long long v = PyLong_AsLongLong(py::reinterpret_steal<py::object>(index).ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw InvalidConfig(std::string(name) + " is out of range");
  }
  return v;
}

const char* const kFillModes[] = {"mean", "add", "max", "min", "mul"};

// fill_value: a number (the constant) or one of PyG's reductions by name.
void parse_fill_value(py::handle obj, GraphConfig& o) {
  if (py::isinstance<py::str>(obj)) {
    const std::string s = obj.cast<std::string>();
    for (int m = 0; m < 5; ++m)
      if (s == kFillModes[m]) {
        o.fill_mode = static_cast<FillMode>(m);
        return;
      }
    throw InvalidConfig("fill_value must be a number or one of \"mean\", \"add\", \"max\", \"min\", \"mul\" "
                        "(as PyG's add_self_loops), got \"" + s + "\"");
  }
  if (py::isinstance<py::bool_>(obj) || !(py::isinstance<py::float_>(obj) || PyIndex_Check(obj.ptr())))
    throw InvalidConfig("fill_value must be a number or one of \"mean\", \"add\", \"max\", \"min\", \"mul\", got " +
                        type_name(obj));
  o.fill_mode = FillMode::Constant;
  o.fill_value = PyFloat_AsDouble(obj.ptr());
  if (o.fill_value == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw InvalidConfig("fill_value is out of range for a float");
  }
}

py::object fill_value_of(const GraphConfig& o) {
  if (o.fill_mode == FillMode::Constant) return py::float_(o.fill_value);
  return py::str(kFillModes[static_cast<int>(o.fill_mode)]);
}

// in_features: None, an int, or a pair (F_src, F_dst).
void parse_in_features(py::handle obj, GraphConfig& o) {
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    auto seq = py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != 2)
      throw InvalidConfig("in_features must be an int, None or a pair (F_src, F_dst), got a sequence of " +
                          std::to_string(seq.size()));
    o.in_features = to_optional_count(seq[0], "in_features[0]");
    o.in_features_dst = to_optional_count(seq[1], "in_features[1]");
    if (!o.in_features || !o.in_features_dst)
      throw InvalidConfig("in_features as a pair (F_src, F_dst) must hold two integers, got None");
    return;
  }
  o.in_features = to_optional_count(obj, "in_features");
}

py::object in_features_of(const GraphConfig& o, const std::optional<std::int64_t>& src,
                          const std::optional<std::int64_t>& dst) {
  if (o.in_features_dst) return py::make_tuple(*src, *dst);
  return optional_int(src);
}

GraphAttention make_layer(py::handle config, py::handle in_features, bool concat, double negative_slope,
                          bool add_self_loops, py::handle edge_dim, const std::string& variant, py::handle fill_value,
                          bool residual, bool share_weights) {
  GraphConfig o;
  parse_in_features(in_features, o);
  o.concat = concat;
  o.negative_slope = negative_slope;
  o.add_self_loops = add_self_loops;
  o.edge_dim = to_optional_count(edge_dim, "edge_dim");
  o.variant = parse_variant(variant);
  parse_fill_value(fill_value, o);
  o.residual = residual;
  o.share_weights = share_weights;
  return GraphAttention(to_config(config), o);
}

py::dict options_dict(const GraphAttention& a) {
  const GraphConfig& o = a.graph_config();
  py::dict d;
  d["in_features"] = in_features_of(o, o.in_features, o.in_features_dst);
  d["concat"] = o.concat;
  d["negative_slope"] = o.negative_slope;
  d["add_self_loops"] = o.add_self_loops;
  d["edge_dim"] = optional_int(o.edge_dim);
  d["variant"] = variant_name(o.variant);
  d["fill_value"] = fill_value_of(o);
  d["residual"] = o.residual;
  d["share_weights"] = o.share_weights;
  return d;
}

bool is_head_tensor(const std::string& name) {
  return name == "att" || name.rfind("att_", 0) == 0;
}
bool is_vector(const std::string& name) {
  return name == "bias" || (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

py::dict weights_to_python(StateDict&& w) {
  py::dict d;
  for (auto& [name, p] : w) d[py::str(name)] = to_numpy(std::move(p.data), p.shape);
  return d;
}

// PyG's shapes ([1, H, C], [n], [out, in]); [H, C] and [1, n] are taken as [1, H, C] and [n].
Parameter weight_from_python(const std::string& name, py::handle value) {
  const bool head = is_head_tensor(name), vector = is_vector(name);
  const int preferred = head ? 3 : vector ? 1 : 2;
  const char* hint = head ? "[1, H, C]" : vector ? "[n]" : "[out, in]";
  int ndim = preferred;
  if (py::isinstance<py::array>(value)) ndim = static_cast<int>(py::reinterpret_borrow<py::array>(value).ndim());
  if (ndim != 2 || preferred == 2) ndim = preferred;  // [H, C] and [1, n] are accepted too
  FloatArray a = to_float_array(value, name.c_str(), ndim, hint);
  if (head) {
    if (a.shape.size() == 3 && a.shape[0] != 1)
      throw DimensionMismatch(name + " must be [1, H, C], got a first dimension of " + std::to_string(a.shape[0]), 1,
                              a.shape[0]);
    const Index rows = a.shape[a.shape.size() - 2], cols = a.shape.back();
    return Parameter{{1, rows, cols}, Eigen::Map<const RowMatrixXf>(a.data, rows, cols)};
  }
  if (vector && a.shape.size() == 1) return Parameter{a.shape, Eigen::Map<const RowMatrixXf>(a.data, 1, a.shape[0])};
  if (vector && a.shape[0] == 1) return Parameter{{a.shape[1]}, a.matrix()};
  return Parameter{a.shape, a.matrix()};
}

StateDict weights_from_python(const GraphAttention& layer, py::handle obj) {
  StateDict w;
  for (const py::tuple& pair : weight_items(obj, "get_weights()")) {
    const std::string name = pair[0].cast<std::string>();
    const auto names = layer.weight_names();
    // An unknown name goes through unconverted: set_weights reports it, listing the names.
    w[name] =
        std::find(names.begin(), names.end(), name) != names.end() ? weight_from_python(name, pair[1]) : Parameter();
  }
  return w;
}

struct GraphCall {
  FloatArray x;      // node features, or x_src
  FloatArray x_dst;  // bipartite: x_dst
  bool bipartite = false;
  GraphStructure graph;
  GraphOptions options;

  void validate(const GraphAttention& a) const {
    if (bipartite)
      a.validate(x.matrix(), x_dst.matrix(), graph, options);
    else
      a.validate(x.matrix(), graph, options);
    // A lazy layer fixes in_features here, at its first call, so that the other items of a
    // batch are checked against it before any work starts.
    a.initialize(x.cols());
  }
  AttentionOutput run(const GraphAttention& a) const {
    return bipartite ? a.compute(x.matrix(), x_dst.matrix(), graph, options) : a.compute(x.matrix(), graph, options);
  }
};

// targets: a 1-D integer array of node ids, copied once (read once, whatever the caller does).
std::vector<std::int64_t> to_targets(py::handle obj) {
  py::array_t<std::int64_t> ids = to_index_array(obj, "targets", "[T]");
  if (ids.ndim() != 1 && !(ids.size() == 0 && ids.ndim() <= 1))
    throw InvalidInput("targets must be a 1-D array of target node ids [T], got shape " + shape_of(ids));
  return std::vector<std::int64_t>(ids.data(), ids.data() + ids.size());
}

GraphCall convert(py::handle node_features, py::handle graph, bool need_weights, py::handle targets) {
  GraphCall c;
  if (py::isinstance<py::tuple>(node_features)) {  // PyG's (x_src, x_dst)
    auto pair = py::reinterpret_borrow<py::tuple>(node_features);
    if (pair.size() != 2)
      throw InvalidInput("bipartite node features must be a pair (x_src, x_dst), got a tuple of " +
                         std::to_string(pair.size()));
    c.x = to_matrix(pair[0], "x_src", "[N_src, F_src]");
    c.x_dst = to_matrix(pair[1], "x_dst", "[N_dst, F_dst]");
    c.bipartite = true;
    c.graph = to_graph(graph, NodeCounts{c.x_dst.rows(), c.x.rows()});
  } else {
    c.x = to_matrix(node_features, "node_features", "[N, F]");
    c.graph = to_graph(graph, NodeCounts{c.x.rows(), -1});
  }
  c.options.need_weights = need_weights;
  if (!targets.is_none()) {
    c.options.has_targets = true;
    c.options.targets = to_targets(targets);
  }
  return c;
}

std::string graph_repr(const GraphStructure& g) {
  std::string s = "GraphStructure(num_nodes=" +
                  (g.bipartite() ? "(" + std::to_string(g.num_sources()) + ", " + std::to_string(g.num_nodes()) + ")"
                                 : std::to_string(g.num_nodes())) +
                  ", num_edges=" + std::to_string(g.num_edges());
  if (g.has_edge_features()) s += ", edge_feature_dim=" + std::to_string(g.edge_feature_dim());
  return s + ")";
}

py::object edge_features_of(const GraphStructure& g) {
  if (!g.has_edge_features()) return py::none();
  RowMatrixXf copy = g.edge_features();
  return to_numpy(std::move(copy));
}

}  // namespace

void register_graph(py::module_& m) {
  py::class_<GraphStructure>(m, "GraphStructure",
                             "A validated graph (source → target edges, optional edge features) held in "
                             "compressed form (CSR by target), built once for any number of compute calls.")
      .def(py::init([](py::handle edges, py::handle num_nodes, py::handle edge_features) {
             return make_graph(edges, to_node_counts(num_nodes), edge_features, false, "edges");
           }),
           py::arg("edges"), py::arg("num_nodes"), py::arg("edge_features") = py::none())
      .def_static(
          "from_edge_index",
          [](py::handle ei, py::handle num_nodes, py::handle edge_features) {
            return make_graph(ei, to_node_counts(num_nodes), edge_features, true, "edge_index");
          },
          py::arg("ei"), py::arg("num_nodes"), py::arg("edge_features") = py::none(),
          "From PyG's edge_index [2, E] (row 0 sources, row 1 targets).")
      .def_static(  // the same, with PyG's name for the array as a keyword: from_edge_index(edge_index=...)
          "from_edge_index",
          [](py::handle edge_index, py::handle num_nodes, py::handle edge_features) {
            return make_graph(edge_index, to_node_counts(num_nodes), edge_features, true, "edge_index");
          },
          py::kw_only(), py::arg("edge_index"), py::arg("num_nodes"), py::arg("edge_features") = py::none())
      .def_property_readonly("num_nodes", &node_counts_of,
                             "The node count, or the pair (N_src, N_dst) of a bipartite graph.")
      .def_property_readonly("num_edges", &GraphStructure::num_edges)
      .def_property_readonly("edge_feature_dim",
                             [](const GraphStructure& g) -> py::object {
                               return g.has_edge_features() ? py::object(py::int_(g.edge_feature_dim())) : py::none();
                             })
      .def_property_readonly("has_self_loops", &GraphStructure::has_self_loops)
      .def_property_readonly(
          "edges", [](const GraphStructure& g) { return to_numpy(g.edges()); },
          "The edges as given, [E, 2] int64 (a new array).")
      .def_property_readonly(
          "edge_index",
          [](const GraphStructure& g) {
            return py::array(numpy().attr("ascontiguousarray")(to_numpy(g.edges()).attr("T")));
          },
          "The edges as PyG's edge_index, [2, E] int64 (a new array).")
      .def_property_readonly("edge_features", &edge_features_of, "[E, F] float32 (a new array) or None.")
      .def("__repr__", &graph_repr)
      .def(py::pickle(
          [](const GraphStructure& g) {
            return py::make_tuple(to_numpy(g.edges()), node_counts_of(g), edge_features_of(g));
          },
          [](const py::object& state) {
            return from_pickle_state("GraphStructure", state, 3,
                                     [](const py::tuple& t) {
                                       return make_graph(t[0], to_node_counts(t[1]), t[2], false, "edges");
                                     });
          }));

  py::class_<GraphAttention> layer(m, "GraphAttention",
                                   "GAT / GATv2 layer with the semantics and parameter names of PyG's GATConv / "
                                   "GATv2Conv.");
  layer
      .def(py::init(&make_layer), py::arg("config") = py::none(), py::kw_only(), py::arg("in_features") = py::none(),
           py::arg("concat") = true, py::arg("negative_slope") = 0.2, py::arg("add_self_loops") = true,
           py::arg("edge_dim") = py::none(), py::arg("variant") = "gat", py::arg("fill_value") = "mean",
           py::arg("residual") = false, py::arg("share_weights") = false)
      .def_property_readonly("config", &GraphAttention::config)
      .def_property_readonly(
          "in_features",
          [](const GraphAttention& a) {
            return in_features_of(a.graph_config(), a.in_features(), a.in_features_dst());
          },
          "Input width (a pair (F_src, F_dst) when given so), or None until fixed by set_weights or the first call.")
      .def_property_readonly("out_features", &GraphAttention::out_features)
      .def_property_readonly("num_heads", &GraphAttention::num_heads)
      .def_property_readonly("head_dim", &GraphAttention::head_dim)
      .def_property_readonly("concat", [](const GraphAttention& a) { return a.graph_config().concat; })
      .def_property_readonly("negative_slope", [](const GraphAttention& a) { return a.graph_config().negative_slope; })
      .def_property_readonly("add_self_loops", [](const GraphAttention& a) { return a.graph_config().add_self_loops; })
      .def_property_readonly("edge_dim",
                             [](const GraphAttention& a) { return optional_int(a.graph_config().edge_dim); })
      .def_property_readonly("variant", [](const GraphAttention& a) { return variant_name(a.graph_config().variant); })
      .def_property_readonly(
          "fill_value", [](const GraphAttention& a) { return fill_value_of(a.graph_config()); },
          "The added self-loops' edge features: a reduction name or a constant (PyG's fill_value).")
      .def_property_readonly("residual", [](const GraphAttention& a) { return a.graph_config().residual; })
      .def_property_readonly("share_weights", [](const GraphAttention& a) { return a.graph_config().share_weights; })
      .def(
          "get_weights", [](const GraphAttention& a) { return weights_to_python(a.get_weights()); },
          "The parameters by PyG's names and shapes (new arrays); empty before they exist.")
      .def(
          "set_weights", [](GraphAttention& a, py::handle w) { a.set_weights(weights_from_python(a, w)); },
          py::arg("weights"),
          "Replace parameters (all or some) by PyG's names and shapes; a rejected call changes nothing.")
      .def("__repr__",
           [](const GraphAttention& a) {
             const auto& o = a.graph_config();
             std::string s = std::string("GraphAttention(variant='") + variant_name(o.variant) +
                             "', num_heads=" + std::to_string(a.num_heads()) +
                             ", head_dim=" + std::to_string(a.head_dim()) + ", in_features=" +
                             py::repr(in_features_of(o, a.in_features(), a.in_features_dst())).cast<std::string>() +
                             ", concat=" + (o.concat ? "True" : "False") +
                             ", edge_dim=" + (o.edge_dim ? std::to_string(*o.edge_dim) : "None");
             if (o.fill_mode != FillMode::Mean) s += ", fill_value=" + py::repr(fill_value_of(o)).cast<std::string>();
             if (o.residual) s += ", residual=True";
             if (o.share_weights) s += ", share_weights=True";
             return s + ")";
           })
      .def(py::pickle(
          [](const GraphAttention& a) {
            const auto in = a.in_features();
            py::object weights = in ? py::object(weights_to_python(a.get_weights())) : py::none();
            return py::make_tuple(py::cast(a.config()), options_dict(a), weights);
          },
          [](const py::object& state) {
            return from_pickle_state("GraphAttention", state, 3, [](const py::tuple& t) {
              py::dict o = t[1].cast<py::dict>();
              // (pickles from before fill_value, residual and share_weights have their defaults)
              const auto get = [&](const char* key, py::object fallback) {
                return o.contains(key) ? py::object(o[key]) : fallback;
              };
              GraphAttention a = make_layer(
                  t[0], o["in_features"], o["concat"].cast<bool>(), o["negative_slope"].cast<double>(),
                  o["add_self_loops"].cast<bool>(), o["edge_dim"], o["variant"].cast<std::string>(),
                  get("fill_value", py::str("mean")), get("residual", py::bool_(false)).cast<bool>(),
                  get("share_weights", py::bool_(false)).cast<bool>());
              if (!t[2].is_none()) a.set_weights(weights_from_python(a, t[2]));
              return a;
            });
          }));
  def_calls(layer, &convert, nullptr, py::arg("node_features"), py::arg("graph"), py::kw_only(),
            py::arg("need_weights") = true, py::arg("targets") = py::none());
}

}  // namespace ruvector::bindings
