// HierarchicalAttention binding.
#include <string>
#include <vector>

#include "mechanism.hpp"
#include "ruvector/hierarchical.hpp"

namespace ruvector::bindings {
namespace {

struct HierarchicalCall {
  std::vector<FloatArray> arrays;  // one [L, N, D] array, or one [N, D] array per level
  std::vector<MatrixRef> levels;   // views into `arrays`
  HierarchicalOptions options;

  void validate(const HierarchicalAttention& a) const { a.validate(levels, options); }
  AttentionOutput run(const HierarchicalAttention& a) const { return a.compute(levels, options); }
};

// levels: a list/tuple of [N_l, D] arrays (ragged N_l) or one [L, N, D] array-like.
void convert_levels(py::handle obj, HierarchicalCall& call) {
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    auto items = py::reinterpret_borrow<py::sequence>(obj);
    call.arrays.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      const std::string name = "levels[" + std::to_string(i) + "]";
      call.arrays.push_back(to_matrix(items[i], name.c_str(), "[N, D] (levels is a list of [N, D] arrays)"));
    }
    call.levels.reserve(call.arrays.size());
    for (const FloatArray& a : call.arrays) call.levels.emplace_back(a.matrix());
    return;
  }
  call.arrays.push_back(to_float_array(obj, "levels", 3, "[L, N, D] (or a list of [N, D] arrays)"));
  const FloatArray& a = call.arrays.back();
  call.levels.reserve(static_cast<std::size_t>(a.shape[0]));
  for (Index l = 0; l < a.shape[0]; ++l) call.levels.emplace_back(a.matrix(l));
}

HierarchicalCall convert(py::handle levels, py::handle level_weights, py::handle query, bool need_weights) {
  HierarchicalCall c;
  convert_levels(levels, c);
  if (!level_weights.is_none()) {
    const py::array_t<double> w = to_double_vector(level_weights, "level_weights", "[L]");
    c.options.level_weights.emplace(w.data(), w.data() + w.size());
  }
  if (!query.is_none()) {
    const FloatArray q = to_vector(query, "query", "[D]");
    c.options.query = Eigen::Map<const Eigen::VectorXf>(q.data, q.shape[0]);
  }
  c.options.need_weights = need_weights;
  return c;
}

}  // namespace

void register_hierarchical(py::module_& m) {
  py::class_<HierarchicalAttention> cls(
      m, "HierarchicalAttention",
      "Parameter-free hierarchical attention pooling: attention within each level, then across levels.");
  cls.def(py::init([](py::handle config) { return HierarchicalAttention(to_config(config)); }),
          py::arg("config") = py::none())
      .def_property_readonly("config", &HierarchicalAttention::config)
      .def(py::pickle([](const HierarchicalAttention& a) { return py::make_tuple(py::cast(a.config())); },
                      [](const py::object& state) {
                        return from_pickle_state("HierarchicalAttention", state, 1, [](const py::tuple& t) {
                          return HierarchicalAttention(t[0].cast<AttentionConfig>());
                        });
                      }));
  def_calls(cls, &convert, nullptr, py::arg("levels"), py::arg("level_weights") = py::none(), py::kw_only(),
            py::arg("query") = py::none(), py::arg("need_weights") = true);
}

}  // namespace ruvector::bindings
