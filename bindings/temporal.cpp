// TemporalAttention binding.
#include <pybind11/stl.h>

#include <optional>

#include "mechanism.hpp"
#include "ruvector/temporal.hpp"

namespace ruvector::bindings {
namespace {

struct TemporalCall {
  FloatArray sequence;
  py::array_t<double> timestamps;  // the (converted) timestamps, or empty when not given
  bool has_timestamps = false;
  bool need_weights = true;

  Eigen::Map<const Eigen::VectorXd> times() const {
    return Eigen::Map<const Eigen::VectorXd>(timestamps.data(), static_cast<Index>(timestamps.size()));
  }
  void validate(const TemporalAttention& a) const {
    if (has_timestamps)
      a.validate(sequence.matrix(), times(), TemporalOptions{need_weights});
    else
      a.validate(sequence.matrix(), TemporalOptions{need_weights});
  }
  AttentionOutput run(const TemporalAttention& a) const {
    return has_timestamps ? a.compute(sequence.matrix(), times(), TemporalOptions{need_weights})
                          : a.compute(sequence.matrix(), TemporalOptions{need_weights});
  }
};

TemporalCall convert(py::handle sequence, py::handle timestamps, bool need_weights) {
  TemporalCall c;
  c.sequence = to_matrix(sequence, "sequence", "[T, D]");
  c.need_weights = need_weights;
  if (!timestamps.is_none()) {
    c.timestamps = to_double_vector(timestamps, "timestamps", "[T]", /*shift_integers=*/true);
    c.has_timestamps = true;
  }
  return c;
}

// decay_rate is None unless given, so that giving it together with half_life is refused even
// when it is 0 (docs/contract.md §4: "giving both is an error"); not given, λ is 0 or ln 2 / half_life.
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
  py::class_<TemporalAttention> cls(
      m, "TemporalAttention",
      "Self-attention over events: softmax(scale·xᵢ·xⱼ − λ|tᵢ − tⱼ|) over the allowed j (causal by time, window).");
  cls.def(py::init(&make), py::arg("config") = py::none(), py::kw_only(), py::arg("causal") = true,
          py::arg("decay_rate") = py::none(), py::arg("half_life") = py::none(), py::arg("window") = py::none())
      .def_property_readonly("config", &TemporalAttention::config)
      .def_property_readonly("causal", [](const TemporalAttention& a) { return a.temporal_config().causal; })
      .def_property_readonly("decay_rate", &TemporalAttention::decay_rate,
                             "λ in use (ln 2 / half_life when half_life was given).")
      .def_property_readonly("half_life", [](const TemporalAttention& a) { return a.temporal_config().half_life; })
      .def_property_readonly("window", [](const TemporalAttention& a) { return a.temporal_config().window; })
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
  def_calls(cls, &convert, nullptr, py::arg("sequence"), py::arg("timestamps") = py::none(), py::kw_only(),
            py::arg("need_weights") = true);
}

}  // namespace ruvector::bindings
