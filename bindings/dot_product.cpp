// DotProductAttention binding.
#include "ruvector/dot_product.hpp"
#include "common.hpp"
#include "ruvector/errors.hpp"

namespace ruvector::bindings {
namespace {

struct DotProductJob final : Job {
  py::object owner;  // keeps `self` alive while the job exists
  const DotProductAttention* self = nullptr;
  FloatArray q, k, v;  // 2-D, or stacked [B, L, D] arrays shared by a batch's jobs
  Index item = 0;      // which matrix of stacked arrays
  MaskArray mask;
  DotProductOptions options;

  AttentionOutput run() override { return self->compute(q.matrix(item), k.matrix(item), v.matrix(item), options); }
};

// A job on converted arrays (item `item` of stacked ones), not yet validated.
std::unique_ptr<DotProductJob> make_job(py::handle self, const FloatArray& q, const FloatArray& k, const FloatArray& v,
                                        Index item, const MaskArray& mask, bool causal, bool need_weights,
                                        bool training) {
  auto job = std::make_unique<DotProductJob>();
  job->owner = py::reinterpret_borrow<py::object>(self);
  job->self = &self.cast<const DotProductAttention&>();
  job->q = q;
  job->k = k;
  job->v = v;
  job->item = item;
  job->mask = mask;
  job->options = DotProductOptions{job->mask.mask, causal, need_weights, training};
  return job;
}

JobPtr prepare(py::handle self, py::handle query, py::handle key, py::handle value, py::handle mask, bool causal,
               bool need_weights, bool training) {
  auto job = make_job(self, to_matrix(query, "query", "[Lq, D]"), to_matrix(key, "key", "[Lk, D]"),
                      to_matrix(value, "value", "[Lk, Dv]"), 0, to_mask(mask, "mask"), causal, need_weights, training);
  job->self->validate(job->q.matrix(), job->k.matrix(), job->v.matrix(), job->options);
  return job;
}

// compute_batch on stacked [B, L, D] arrays: each array converted once, the shapes (shared by
// every item) validated once, then one job per item reading its matrix of the stacks. The
// per-item Python path costs ~5 µs an item on the calling thread before the pool starts.
py::list prepare_stacked(py::handle self, py::handle queries, py::handle keys, py::handle values, py::handle mask,
                         bool causal, bool need_weights, bool training) {
  const FloatArray q = to_float_array(queries, "queries", 3, "[B, Lq, D]");
  const FloatArray k = to_float_array(keys, "keys", 3, "[B, Lk, D]");
  const FloatArray v = to_float_array(values, "values", 3, "[B, Lk, Dv]");
  const Index b = q.shape[0];
  if (k.shape[0] != b || v.shape[0] != b)
    throw InvalidInput("batch inputs have different lengths queries=" + std::to_string(b) +
                       ", keys=" + std::to_string(k.shape[0]) + ", values=" + std::to_string(v.shape[0]) +
                       ": give one entry per item in each");
  const MaskArray shared_mask = to_mask(mask, "mask");
  py::list jobs(static_cast<std::size_t>(b));
  for (Index i = 0; i < b; ++i) {
    auto job = make_job(self, q, k, v, i, shared_mask, causal, need_weights, training);
    if (i == 0) job->self->validate(q.matrix(), k.matrix(), v.matrix(), job->options);  // every item's shapes
    jobs[static_cast<std::size_t>(i)] = py::cast(JobHandle{std::move(job)});
  }
  return jobs;
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
      .def("_prepare_stacked", &prepare_stacked, py::arg("queries"), py::arg("keys"), py::arg("values"), py::kw_only(),
           py::arg("mask") = py::none(), py::arg("causal") = false, py::arg("need_weights") = true,
           py::arg("training") = false)
      .def(py::pickle([](const DotProductAttention& a) { return py::make_tuple(py::cast(a.config())); },
                      [](const py::object& state) {
                        return from_pickle_state("DotProductAttention", state, 1, [](const py::tuple& t) {
                          return DotProductAttention(t[0].cast<AttentionConfig>());
                        });
                      }));
}

}  // namespace ruvector::bindings
