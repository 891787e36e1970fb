// HierarchicalAttention binding.
#include <string>
#include <vector>

#include "common.hpp"
#include "ruvector/hierarchical.hpp"

namespace ruvector::bindings {
namespace {

struct HierarchicalJob final : Job {
  py::object owner;  // keeps `self` alive while the job exists
  const HierarchicalAttention* self = nullptr;
  std::vector<FloatArray> arrays;  // one [L, N, D] array, or one [N, D] array per level
  std::vector<MatrixRef> levels;   // views into `arrays`
  HierarchicalOptions options;

  AttentionOutput run() override { return self->compute(levels, options); }
};

// levels: a list/tuple of [N_l, D] arrays (ragged N_l) or one [L, N, D] array-like.
void convert_levels(py::handle obj, HierarchicalJob& job) {
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    auto items = py::reinterpret_borrow<py::sequence>(obj);
    job.arrays.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      const std::string name = "levels[" + std::to_string(i) + "]";
      job.arrays.push_back(to_matrix(items[i], name.c_str(), "[N, D] (levels is a list of [N, D] arrays)"));
    }
    job.levels.reserve(job.arrays.size());
    for (const FloatArray& a : job.arrays) job.levels.emplace_back(a.matrix());
    return;
  }
  job.arrays.push_back(to_float_array(obj, "levels", 3, "[L, N, D] (or a list of [N, D] arrays)"));
  const FloatArray& a = job.arrays.back();
  job.levels.reserve(static_cast<std::size_t>(a.shape[0]));
  for (Index l = 0; l < a.shape[0]; ++l) job.levels.emplace_back(a.matrix(l));
}

JobPtr prepare(py::handle self, py::handle levels, py::handle level_weights, py::handle query, bool need_weights) {
  auto job = std::make_unique<HierarchicalJob>();
  job->owner = py::reinterpret_borrow<py::object>(self);
  job->self = &self.cast<const HierarchicalAttention&>();
  convert_levels(levels, *job);
  if (!level_weights.is_none()) {
    const py::array_t<double> w = to_double_vector(level_weights, "level_weights", "[L]");
    job->options.level_weights.emplace(w.data(), w.data() + w.size());
  }
  if (!query.is_none()) {
    const FloatArray q = to_vector(query, "query", "[D]");
    job->options.query = Eigen::Map<const Eigen::VectorXf>(q.data, q.shape[0]);
  }
  job->options.need_weights = need_weights;
  job->self->validate(job->levels, job->options);
  return job;
}

}  // namespace

void register_hierarchical(py::module_& m) {
  py::class_<HierarchicalAttention>(
      m, "HierarchicalAttention",
      "Parameter-free hierarchical attention pooling: attention within each level, then across levels.")
      .def(py::init([](py::handle config) { return HierarchicalAttention(to_config(config)); }),
           py::arg("config") = py::none())
      .def_property_readonly("config", &HierarchicalAttention::config)
      .def(
          "compute",
          [](py::handle self, py::handle levels, py::handle level_weights, py::handle query, bool need_weights) {
            return run_job(*prepare(self, levels, level_weights, query, need_weights));
          },
          py::arg("levels"), py::arg("level_weights") = py::none(), py::kw_only(), py::arg("query") = py::none(),
          py::arg("need_weights") = true)
      .def(
          "_prepare",
          [](py::handle self, py::handle levels, py::handle level_weights, py::handle query, bool need_weights) {
            return JobHandle{prepare(self, levels, level_weights, query, need_weights)};
          },
          py::arg("levels"), py::arg("level_weights") = py::none(), py::kw_only(), py::arg("query") = py::none(),
          py::arg("need_weights") = true)
      .def(py::pickle([](const HierarchicalAttention& a) { return py::make_tuple(py::cast(a.config())); },
                      [](const py::object& state) {
                        return from_pickle_state("HierarchicalAttention", state, 1, [](const py::tuple& t) {
                          return HierarchicalAttention(t[0].cast<AttentionConfig>());
                        });
                      }));
}

}  // namespace ruvector::bindings
