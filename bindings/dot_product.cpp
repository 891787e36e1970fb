// DotProductAttention binding.
#include "ruvector/dot_product.hpp"
#include "common.hpp"

namespace ruvector::bindings {
namespace {

struct DotProductJob final : Job {
  py::object owner;  // keeps `self` alive while the job exists
  const DotProductAttention* self = nullptr;
  FloatArray q, k, v;
  MaskArray mask;
  DotProductOptions options;

  AttentionOutput run() override { return self->compute(q.matrix(), k.matrix(), v.matrix(), options); }
};

JobPtr prepare(py::handle self, py::handle query, py::handle key, py::handle value, py::handle mask, bool causal,
               bool need_weights, bool training) {
  auto job = std::make_unique<DotProductJob>();
  job->owner = py::reinterpret_borrow<py::object>(self);
  job->self = &self.cast<const DotProductAttention&>();
  job->q = to_matrix(query, "query", "[Lq, D]");
  job->k = to_matrix(key, "key", "[Lk, D]");
  job->v = to_matrix(value, "value", "[Lk, Dv]");
  job->mask = to_mask(mask, "mask");
  job->options = DotProductOptions{job->mask.mask, causal, need_weights, training};
  job->self->validate(job->q.matrix(), job->k.matrix(), job->v.matrix(), job->options);
  return job;
}

}  // namespace

void register_dot_product(py::module_& m) {
  py::class_<DotProductAttention>(m, "DotProductAttention",
                                  "softmax(scale·Q·Kᵀ + mask)·V, streaming when weights are not needed.")
      .def(py::init([](py::handle config) { return DotProductAttention(to_config(config)); }),
           py::arg("config") = py::none())
      .def_property_readonly("config", &DotProductAttention::config)
      .def(
          "compute",
          [](py::handle self, py::handle q, py::handle k, py::handle v, py::handle mask, bool causal, bool need_weights,
             bool training) { return run_job(*prepare(self, q, k, v, mask, causal, need_weights, training)); },
          py::arg("query"), py::arg("key"), py::arg("value"), py::kw_only(), py::arg("mask") = py::none(),
          py::arg("causal") = false, py::arg("need_weights") = true, py::arg("training") = false)
      .def(
          "_prepare",
          [](py::handle self, py::handle q, py::handle k, py::handle v, py::handle mask, bool causal, bool need_weights,
             bool training) { return JobHandle{prepare(self, q, k, v, mask, causal, need_weights, training)}; },
          py::arg("query"), py::arg("key"), py::arg("value"), py::kw_only(), py::arg("mask") = py::none(),
          py::arg("causal") = false, py::arg("need_weights") = true, py::arg("training") = false)
      .def(py::pickle([](const DotProductAttention& a) { return py::make_tuple(py::cast(a.config())); },
                      [](py::tuple t) { return DotProductAttention(t[0].cast<AttentionConfig>()); }));
}

}  // namespace ruvector::bindings
