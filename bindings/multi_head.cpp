// MultiHeadAttention binding: compute/_prepare (def_calls), plus torch-named
// weights (dicts of NumPy arrays) and pickling with config and weights.
#include <pybind11/stl.h>

#include <limits>
#include <optional>
#include <string>

#include "mechanism.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/multi_head.hpp"

namespace ruvector::bindings {
namespace {

struct MultiHeadCall {
  FloatArray q, k, v;
  MaskArray mask;
  MultiHeadOptions options;

  void validate(const MultiHeadAttention& a) const { a.validate(q.matrix(), k.matrix(), v.matrix(), options); }
  AttentionOutput run(const MultiHeadAttention& a) const {
    return a.compute(q.matrix(), k.matrix(), v.matrix(), options);
  }
};

MultiHeadCall convert(py::handle query, py::handle key, py::handle value, py::handle mask, bool causal,
                      bool need_weights, bool average_weights, bool training) {
  MultiHeadCall c{to_matrix(query, "query", "[Lq, embed_dim]"), to_matrix(key, "key", "[Lk, kdim]"),
                  to_matrix(value, "value", "[Lk, vdim]"), to_mask(mask, "mask"), {}};
  c.options = MultiHeadOptions{c.mask.mask, causal, need_weights, average_weights, training};
  return c;
}

std::string shape_hint(const std::vector<Index>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

py::dict get_weights(const MultiHeadAttention& a) {
  StateDict state = a.get_weights();
  py::dict d;
  for (const auto& [name, shape] : a.weight_shapes()) {  // torch's state_dict order
    Parameter& p = state.at(name);
    d[py::str(name)] = to_numpy(std::move(p.data), p.shape);
  }
  return d;
}

// A mapping of name → array-like, read with the ranks this layer expects (unknown names are
// passed on as they are, so that set_weights reports them with the list of valid names).
StateDict to_state_dict(const MultiHeadAttention& a, py::handle obj) {
  const auto shapes = a.weight_shapes();
  StateDict state;
  for (const py::tuple& pair : weight_items(obj, "get_weights() or torch's state_dict()")) {
    const std::string name = py::str(pair[0]);
    std::vector<Index> expected;
    for (const auto& [n, s] : shapes)
      if (n == name) expected = s;
    if (expected.empty()) {  // unknown: set_weights names the valid keys
      state[name] = Parameter{};
      continue;
    }
    const std::string hint = shape_hint(expected);
    FloatArray arr = to_float_array(pair[1], name.c_str(), static_cast<int>(expected.size()), hint.c_str());
    Parameter p;
    p.shape = arr.shape;
    const Index rows = arr.shape.size() == 1 ? 1 : arr.shape[0];
    p.data = Eigen::Map<const RowMatrixXf>(arr.data, rows, arr.shape.back());
    state[name] = std::move(p);
  }
  return state;
}

}  // namespace

void register_multi_head(py::module_& m) {
  py::class_<MultiHeadAttention> cls(m, "MultiHeadAttention",
                                     "torch.nn.MultiheadAttention's layer: in-projections, per-head fused "
                                     "attention, out-projection; weights under torch's state_dict names.");
  cls.def(py::init(
              [](py::handle config, py::handle embed_dim, py::handle kdim, py::handle vdim) {
                const auto width = [](py::handle v, const char* name) -> std::optional<Index> {
                  if (v.is_none()) return std::nullopt;
                  if (py::isinstance<py::bool_>(v) || !PyIndex_Check(v.ptr()))  // as the signature says
                    throw py::type_error(std::string(name) + " must be an int or None, got " + type_name(v));
                  // an integer out of range: InvalidConfigError naming it (pybind11 gave a TypeError)
                  return int_field(v, name, std::numeric_limits<Index>::min(), std::numeric_limits<Index>::max());
                };
                return MultiHeadAttention(to_config(config), width(embed_dim, "embed_dim"), width(kdim, "kdim"),
                                          width(vdim, "vdim"));
              }),
          py::arg("config") = py::none(), py::kw_only(), py::arg("embed_dim") = py::none(),
          py::arg("kdim") = py::none(), py::arg("vdim") = py::none())
      .def_property_readonly("config", &MultiHeadAttention::config)
      .def_property_readonly("embed_dim", &MultiHeadAttention::embed_dim)
      .def_property_readonly("kdim", &MultiHeadAttention::kdim)
      .def_property_readonly("vdim", &MultiHeadAttention::vdim)
      .def_property_readonly("num_heads", &MultiHeadAttention::num_heads)
      .def_property_readonly("head_dim", &MultiHeadAttention::head_dim)
      .def("get_weights", &get_weights, "A copy of the weights: {torch state_dict name: float32 ndarray}.")
      .def(
          "set_weights", [](MultiHeadAttention& a, py::handle weights) { a.set_weights(to_state_dict(a, weights)); },
          py::arg("weights"),
          "Replace all weights from {name: array} with torch's names and shapes "
          "(e.g. {k: v.numpy() for k, v in torch_mha.state_dict().items()}).")
      .def("__repr__",
           [](const MultiHeadAttention& a) {
             return "MultiHeadAttention(embed_dim=" + std::to_string(a.embed_dim()) +
                    ", num_heads=" + std::to_string(a.num_heads()) + ", kdim=" + std::to_string(a.kdim()) +
                    ", vdim=" + std::to_string(a.vdim()) + ", use_bias=" + (a.config().use_bias ? "True" : "False") +
                    ")";
           })
      .def(py::pickle(
          [](const MultiHeadAttention& a) {
            return py::make_tuple(py::cast(a.config()), a.embed_dim(), a.kdim(), a.vdim(), get_weights(a));
          },
          [](const py::object& state) {
            return from_pickle_state("MultiHeadAttention", state, 5, [](const py::tuple& t) {
              MultiHeadAttention a(t[0].cast<AttentionConfig>(), t[1].cast<Index>(), t[2].cast<Index>(),
                                   t[3].cast<Index>());
              a.set_weights(to_state_dict(a, t[4]));
              return a;
            });
          }));
  def_calls(cls, &convert, nullptr, py::arg("query"), py::arg("key"), py::arg("value"), py::kw_only(),
            py::arg("mask") = py::none(), py::arg("causal") = false, py::arg("need_weights") = true,
            py::arg("average_weights") = true, py::arg("training") = false);
}

}  // namespace ruvector::bindings
