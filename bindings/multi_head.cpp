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
  py::object key_padding;  // None, or a bool array [Lk] that keeps key_padding_mask's flags alive
  MultiHeadOptions options;

  void validate(const MultiHeadAttention& a) const { a.validate(q.matrix(), k.matrix(), v.matrix(), options); }
  AttentionOutput run(const MultiHeadAttention& a) const {
    return a.compute(q.matrix(), k.matrix(), v.matrix(), options);
  }
};

// torch's key_padding_mask: None or boolean [Lk], True = ignore that key.
py::object to_key_padding(py::handle obj) {
  const char* name = "key_padding_mask";
  if (obj.is_none()) return py::none();
  if (is_non_array(obj))
    throw InvalidInput(std::string(name) + " must be a boolean array [Lk] (True = ignore that key), got " +
                       type_name(obj));
  py::array a = as_numpy(obj, name, "[Lk]");
  if (a.ndim() != 1)
    throw DimensionMismatch(std::string(name) + " must be 1-D [Lk] (one flag per key, True = ignore it), got a " +
                                std::to_string(a.ndim()) + "-D array of shape " + shape_of(a) +
                                (a.ndim() == 2 ? "; in compute_batch give one [Lk] per item" : ""),
                            1, a.ndim());
  const char kind = a.dtype().kind();
  if (kind == 'f')
    throw InvalidInput(std::string(name) + " must be boolean (True = ignore that key, torch's convention), got dtype " +
                       std::string(py::str(a.dtype())) +
                       "; for a float padding mask (added to the scores) add it to every row of an additive mask "
                       "[Lq, Lk] instead");
  if (kind != 'b')
    throw InvalidInput(std::string(name) + " must be boolean (True = ignore that key), got dtype " +
                       std::string(py::str(a.dtype())) + "; use key_padding_mask.astype(bool) for a 0/1 mask");
  return contiguous_as<bool>(a, name, "bool", "[Lk]");
}

MultiHeadCall convert(py::handle query, py::handle key, py::handle value, py::handle mask, py::handle key_padding_mask,
                      bool causal, bool need_weights, bool average_weights, bool training) {
  MultiHeadCall c{to_matrix(query, "query", "[Lq, embed_dim]"),
                  to_matrix(key, "key", "[Lk, kdim]"),
                  to_matrix(value, "value", "[Lk, vdim]"),
                  to_mask(mask, "mask"),
                  to_key_padding(key_padding_mask),
                  {}};
  c.options = MultiHeadOptions{c.mask.mask, causal, need_weights, average_weights, training, {}};
  if (!c.key_padding.is_none()) {
    const auto flags = py::reinterpret_borrow<py::array>(c.key_padding);
    c.options.key_padding_mask = {static_cast<const std::uint8_t*>(flags.data()), flags.shape(0)};
  }
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
  cls.def(py::init([](py::handle config, py::handle embed_dim, py::handle kdim, py::handle vdim, bool add_bias_kv,
                      bool add_zero_attn) {
            const auto width = [](py::handle v, const char* name) -> std::optional<Index> {
              if (v.is_none()) return std::nullopt;
              if (py::isinstance<py::bool_>(v) || !PyIndex_Check(v.ptr()))  // as the signature says
                throw py::type_error(std::string(name) + " must be an int or None, got " + type_name(v));
              // an integer out of range: InvalidConfigError naming it (pybind11 gave a TypeError)
              return int_field(v, name, std::numeric_limits<Index>::min(), std::numeric_limits<Index>::max());
            };
            return MultiHeadAttention(to_config(config), width(embed_dim, "embed_dim"), width(kdim, "kdim"),
                                      width(vdim, "vdim"), add_bias_kv, add_zero_attn);
          }),
          py::arg("config") = py::none(), py::kw_only(), py::arg("embed_dim") = py::none(),
          py::arg("kdim") = py::none(), py::arg("vdim") = py::none(), py::arg("add_bias_kv") = false,
          py::arg("add_zero_attn") = false)
      .def_property_readonly("config", &MultiHeadAttention::config)
      .def_property_readonly("embed_dim", &MultiHeadAttention::embed_dim)
      .def_property_readonly("kdim", &MultiHeadAttention::kdim)
      .def_property_readonly("vdim", &MultiHeadAttention::vdim)
      .def_property_readonly("num_heads", &MultiHeadAttention::num_heads)
      .def_property_readonly("head_dim", &MultiHeadAttention::head_dim)
      .def_property_readonly("add_bias_kv", &MultiHeadAttention::add_bias_kv)
      .def_property_readonly("add_zero_attn", &MultiHeadAttention::add_zero_attn)
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
                    ", add_bias_kv=" + (a.add_bias_kv() ? "True" : "False") +
                    ", add_zero_attn=" + (a.add_zero_attn() ? "True" : "False") + ")";
           })
      .def(py::pickle(
          [](const MultiHeadAttention& a) {
            return py::make_tuple(py::cast(a.config()), a.embed_dim(), a.kdim(), a.vdim(), get_weights(a),
                                  a.add_bias_kv(), a.add_zero_attn());
          },
          [](const py::object& state) {
            // 7 entries; pickles made before add_bias_kv / add_zero_attn existed have the first 5
            const std::size_t size = py::isinstance<py::tuple>(state) && py::len(state) == 5 ? 5 : 7;
            return from_pickle_state("MultiHeadAttention", state, size, [size](const py::tuple& t) {
              const bool bias_kv = size == 7 && t[5].cast<bool>(), zero_attn = size == 7 && t[6].cast<bool>();
              MultiHeadAttention a(t[0].cast<AttentionConfig>(), t[1].cast<Index>(), t[2].cast<Index>(),
                                   t[3].cast<Index>(), bias_kv, zero_attn);
              a.set_weights(to_state_dict(a, t[4]));
              return a;
            });
          }));
  def_calls(cls, &convert, nullptr, py::arg("query"), py::arg("key"), py::arg("value"), py::kw_only(),
            py::arg("mask") = py::none(), py::arg("key_padding_mask") = py::none(), py::arg("causal") = false,
            py::arg("need_weights") = true, py::arg("average_weights") = true, py::arg("training") = false);
}

}  // namespace ruvector::bindings
