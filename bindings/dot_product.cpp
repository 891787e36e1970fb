// DotProductAttention binding.
#include "common.hpp"
#include "ruvector/dot_product.hpp"

namespace ruvector::bindings {
namespace {

py::object compute(const DotProductAttention& self, py::handle query, py::handle key, py::handle value,
                   py::handle mask, bool causal, bool need_weights, bool training) {
  const FloatArray q = to_matrix(query, "query", "[Lq, D]");
  const FloatArray k = to_matrix(key, "key", "[Lk, D]");
  const FloatArray v = to_matrix(value, "value", "[Lk, Dv]");
  const MaskArray m = to_mask(mask, "mask");
  const DotProductOptions options{m.mask, causal, need_weights, training};
  AttentionOutput out;
  {
    // Safe without the GIL: every Python object was read above; q, k, v and m keep the
    // buffers alive and the kernels touch only those buffers and memory of our own.
    py::gil_scoped_release release;
    out = self.compute(q.matrix(), k.matrix(), v.matrix(), options);
  }
  return to_python(std::move(out));
}

}  // namespace

void register_dot_product(py::module_& m) {
  py::class_<DotProductAttention>(m, "DotProductAttention",
                                  "softmax(scale·Q·Kᵀ + mask)·V, streaming when weights are not needed.")
      .def(py::init([](py::handle config) { return DotProductAttention(to_config(config)); }),
           py::arg("config") = py::none())
      .def_property_readonly("config", &DotProductAttention::config)
      .def("compute", &compute, py::arg("query"), py::arg("key"), py::arg("value"), py::kw_only(),
           py::arg("mask") = py::none(), py::arg("causal") = false, py::arg("need_weights") = true,
           py::arg("training") = false)
      .def(py::pickle([](const DotProductAttention& a) { return py::make_tuple(py::cast(a.config())); },
                      [](py::tuple t) { return DotProductAttention(t[0].cast<AttentionConfig>()); }));
}

}  // namespace ruvector::bindings
