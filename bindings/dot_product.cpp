// DotProductAttention binding.
#include "ruvector/dot_product.hpp"

#include <algorithm>

#include "attention_core.hpp"
#include "mechanism.hpp"
#include "memory/memory.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"

namespace ruvector::bindings {
namespace {

struct DotProductCall {
  FloatArray q, k, v;  // 2-D, or stacked [B, L, D] arrays shared by a batch's calls
  Index item = 0;      // which matrix of stacked arrays
  MaskArray mask;
  DotProductOptions options;

  DotProductCall(FloatArray q_, FloatArray k_, FloatArray v_, Index item_, MaskArray mask_, bool causal,
                 bool need_weights, bool training)
      : q(std::move(q_)), k(std::move(k_)), v(std::move(v_)), item(item_), mask(std::move(mask_)) {
    options = DotProductOptions{mask.mask, causal, need_weights, training};
  }
  void validate(const DotProductAttention& a) const {
    a.validate(q.matrix(item), k.matrix(item), v.matrix(item), options);
  }
  AttentionOutput run(const DotProductAttention& a) const {
    return a.compute(q.matrix(item), k.matrix(item), v.matrix(item), options);
  }
  // run() without the arithmetic, for the benchmark probe _probe_call (mechanism.hpp): the
  // output allocated as compute allocates it, left unwritten, and its metadata when asked.
  AttentionOutput unwritten(const DotProductAttention& a, bool metadata) const {
    AttentionOutput out = detail::dot_product_output(q.rows(), k.rows(), v.cols(), options.need_weights);
    if (metadata) detail::describe_dot_product(out, a.config(), q.cols(), backend_name(simd_backend()));
    return out;
  }
};

DotProductCall convert(py::handle query, py::handle key, py::handle value, py::handle mask, bool causal,
                       bool need_weights, bool training) {
  return DotProductCall(to_matrix(query, "query", "[Lq, D]"), to_matrix(key, "key", "[Lk, D]"),
                        to_matrix(value, "value", "[Lk, Dv]"), 0, to_mask(mask, "mask"), causal, need_weights,
                        training);
}

// compute_batch on stacked [B, L, D] arrays: each array converted once, then one call per item
// reading its matrix of the stacks. The per-item Python path costs ~5 µs an item on the
// calling thread before the pool starts.
std::vector<DotProductCall> convert_stacked(py::handle queries, py::handle keys, py::handle values, py::handle mask,
                                            bool causal, bool need_weights, bool training) {
  const FloatArray q = to_float_array(queries, "queries", 3, "[B, Lq, D]");
  const FloatArray k = to_float_array(keys, "keys", 3, "[B, Lk, D]");
  const FloatArray v = to_float_array(values, "values", 3, "[B, Lk, Dv]");
  const Index b = q.shape[0];
  if (k.shape[0] != b || v.shape[0] != b)
    throw InvalidInput("batch inputs have different lengths queries=" + std::to_string(b) +
                       ", keys=" + std::to_string(k.shape[0]) + ", values=" + std::to_string(v.shape[0]) +
                       ": give one entry per item in each");
  // The whole batch before any of it is allocated: per item a job, its Python handle and
  // output (~2 KB measured) plus its values and weights (issue 19: 10^6 tiny items took 2 GB).
  const Index lq = q.shape[1], lk = k.shape[1];
  const double per_item = 512.0 + static_cast<double>(lq) * static_cast<double>(v.shape[2]) +
                          (need_weights ? static_cast<double>(lq) * static_cast<double>(lk) : 0.0);
  memory::checked_elements(b, static_cast<std::int64_t>(std::min(per_item, 4e18)),
                           "compute_batch on stacked inputs (every item's output and bookkeeping)",
                           "split the batch into several calls, or pass need_weights=False");
  const MaskArray shared_mask = to_mask(mask, "mask");
  std::vector<DotProductCall> calls;
  calls.reserve(static_cast<std::size_t>(b));
  for (Index i = 0; i < b; ++i) calls.emplace_back(q, k, v, i, shared_mask, causal, need_weights, training);
  return calls;
}

}  // namespace

void register_dot_product(py::module_& m) {
  py::class_<DotProductAttention> cls(m, "DotProductAttention",
                                      "softmax(scale·Q·Kᵀ + mask)·V, streaming when weights are not needed.");
  cls.def(py::init([](py::handle config) { return DotProductAttention(to_config(config)); }),
          py::arg("config") = py::none())
      .def_property_readonly("config", &DotProductAttention::config)
      .def(py::pickle([](const DotProductAttention& a) { return py::make_tuple(py::cast(a.config())); },
                      [](const py::object& state) {
                        return from_pickle_state("DotProductAttention", state, 1, [](const py::tuple& t) {
                          return DotProductAttention(t[0].cast<AttentionConfig>());
                        });
                      }));
  def_calls(cls, &convert, &convert_stacked, py::arg("query"), py::arg("key"), py::arg("value"), py::kw_only(),
            py::arg("mask") = py::none(), py::arg("causal") = false, py::arg("need_weights") = true,
            py::arg("training") = false);
}

}  // namespace ruvector::bindings
