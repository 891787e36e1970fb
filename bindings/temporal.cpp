// TemporalAttention binding.
#include <pybind11/stl.h>

#include <optional>

#include "common.hpp"
#include "ruvector/temporal.hpp"

namespace ruvector::bindings {
namespace {

struct TemporalJob final : Job {
  py::object owner;  // keeps `self` alive while the job exists
  const TemporalAttention* self = nullptr;
  FloatArray sequence;
  py::array_t<double> timestamps;  // holds the (converted) timestamps when given
  const double* ts_data = nullptr;
  Index ts_size = 0;
  bool has_timestamps = false;
  bool need_weights = true;

  AttentionOutput run() override {
    if (!has_timestamps) return self->compute(sequence.matrix(), TemporalOptions{need_weights});
    return self->compute(sequence.matrix(), Eigen::Map<const Eigen::VectorXd>(ts_data, ts_size),
                         TemporalOptions{need_weights});
  }
};

JobPtr prepare(py::handle self, py::handle sequence, py::handle timestamps, bool need_weights) {
  auto job = std::make_unique<TemporalJob>();
  job->owner = py::reinterpret_borrow<py::object>(self);
  job->self = &self.cast<const TemporalAttention&>();
  job->sequence = to_matrix(sequence, "sequence", "[T, D]");
  job->need_weights = need_weights;
  if (timestamps.is_none()) {
    job->self->validate(job->sequence.matrix(), TemporalOptions{need_weights});
  } else {
    job->timestamps = to_double_vector(timestamps, "timestamps", "[T]", /*shift_integers=*/true);
    job->ts_data = job->timestamps.data();
    job->ts_size = static_cast<Index>(job->timestamps.size());
    job->has_timestamps = true;
    job->self->validate(job->sequence.matrix(), Eigen::Map<const Eigen::VectorXd>(job->ts_data, job->ts_size),
                        TemporalOptions{need_weights});
  }
  return job;
}

// decay_rate is None unless given, so that giving it together with half_life is refused even
// when it is 0 (SPEC: "giving both is an error"); not given, λ is 0 or ln 2 / half_life.
TemporalAttention make(py::handle config, bool causal, std::optional<double> decay_rate,
                       std::optional<double> half_life, std::optional<double> window) {
  if (decay_rate && half_life)
    throw InvalidConfig("give decay_rate or half_life, not both (decay_rate = ln 2 / half_life): got decay_rate=" +
                        std::string(py::str(py::float_(*decay_rate))) +
                        " and half_life=" + std::string(py::str(py::float_(*half_life))));
  TemporalConfig o;
  o.causal = causal;
  o.decay_rate = decay_rate.value_or(0.0);
  o.half_life = half_life;
  o.window = window;
  return TemporalAttention(to_config(config), o);
}

}  // namespace

void register_temporal(py::module_& m) {
  py::class_<TemporalAttention>(
      m, "TemporalAttention",
      "Self-attention over events: softmax(scale·xᵢ·xⱼ − λ|tᵢ − tⱼ|) over the allowed j (causal by time, window).")
      .def(py::init(&make), py::arg("config") = py::none(), py::kw_only(), py::arg("causal") = true,
           py::arg("decay_rate") = py::none(), py::arg("half_life") = py::none(), py::arg("window") = py::none())
      .def_property_readonly("config", &TemporalAttention::config)
      .def_property_readonly("causal", [](const TemporalAttention& a) { return a.temporal_config().causal; })
      .def_property_readonly("decay_rate", &TemporalAttention::decay_rate,
                             "λ in use (ln 2 / half_life when half_life was given).")
      .def_property_readonly("half_life", [](const TemporalAttention& a) { return a.temporal_config().half_life; })
      .def_property_readonly("window", [](const TemporalAttention& a) { return a.temporal_config().window; })
      .def(
          "compute",
          [](py::handle self, py::handle sequence, py::handle timestamps, bool need_weights) {
            return run_job(*prepare(self, sequence, timestamps, need_weights));
          },
          py::arg("sequence"), py::arg("timestamps") = py::none(), py::kw_only(), py::arg("need_weights") = true)
      .def(
          "_prepare",
          [](py::handle self, py::handle sequence, py::handle timestamps, bool need_weights) {
            return JobHandle{prepare(self, sequence, timestamps, need_weights)};
          },
          py::arg("sequence"), py::arg("timestamps") = py::none(), py::kw_only(), py::arg("need_weights") = true)
      .def(py::pickle(
          [](const TemporalAttention& a) {
            const TemporalConfig& o = a.temporal_config();
            return py::make_tuple(py::cast(a.config()), o.causal, o.decay_rate, o.half_life, o.window);
          },
          [](const py::object& state) {
            return from_pickle_state("TemporalAttention", state, 5, [](const py::tuple& t) {
              TemporalConfig o;
              o.causal = t[1].cast<bool>();
              o.decay_rate = t[2].cast<double>();
              o.half_life = t[3].cast<std::optional<double>>();
              o.window = t[4].cast<std::optional<double>>();
              return TemporalAttention(t[0].cast<AttentionConfig>(), o);
            });
          }));
}

}  // namespace ruvector::bindings
