// TemporalAttention front end: validate once, then one fused kernel call whose tiles add the
// decay and apply the time masks (no T×T bias is ever built).
#include "ruvector/temporal.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "attention_core.hpp"
#include "memory/memory.hpp"
#include "messages.hpp"
#include "ruvector/errors.hpp"

namespace ruvector {
namespace {

constexpr double kFloatMax = static_cast<double>(std::numeric_limits<float>::max());

}  // namespace

void TemporalConfig::validate() const {
  if (!std::isfinite(decay_rate) || decay_rate < 0.0)
    throw InvalidConfig("decay_rate must be a finite number >= 0 (0 = no decay), got " +
                        detail::number_str(decay_rate));
  if (decay_rate > kFloatMax)
    throw InvalidConfig("decay_rate " + detail::number_str(decay_rate) +
                        " does not fit in float32 (max 3.4e38): rescale the timestamps");
  if (half_life) {
    if (!std::isfinite(*half_life) || *half_life <= 0.0)
      throw InvalidConfig("half_life must be a finite number > 0 (or None), got " + detail::number_str(*half_life));
    if (decay_rate != 0.0)
      throw InvalidConfig("give decay_rate or half_life, not both (decay_rate = ln 2 / half_life): got decay_rate=" +
                          detail::number_str(decay_rate) + " and half_life=" + detail::number_str(*half_life));
    if (std::log(2.0) / *half_life > kFloatMax)
      throw InvalidConfig(
          "half_life " + detail::number_str(*half_life) +
          " is too small: its decay rate ln 2 / half_life does not fit in float32; rescale the timestamps");
  }
  if (window && (!std::isfinite(*window) || *window < 0.0))
    throw InvalidConfig("window must be a finite number >= 0 (or None for no window), got " +
                        detail::number_str(*window));
}

double TemporalConfig::lambda() const {
  return half_life ? std::log(2.0) / *half_life : decay_rate;
}

TemporalAttention::TemporalAttention(AttentionConfig config, TemporalConfig temporal)
    : config_(config), options_(temporal) {
  config_.validate();
  options_.validate();
  lambda_ = options_.lambda();
}

void TemporalAttention::validate(const MatrixRef& seq, const TemporalOptions& options) const {
  if (options.need_weights)
    memory::checked_elements(seq.rows(), seq.rows(), "attention weights",
                             "pass need_weights=False to stream without them");
}

void TemporalAttention::validate(const MatrixRef& seq, const Eigen::Ref<const Eigen::VectorXd>& ts,
                                 const TemporalOptions& options) const {
  const Index t = seq.rows();
  if (ts.size() != t)
    throw DimensionMismatch("timestamps has " + std::to_string(ts.size()) + " entries, sequence has " +
                                std::to_string(t) + " rows: give one timestamp per row (or None for t_i = i)",
                            t, ts.size());
  double lo = 0.0, hi = 0.0;
  for (Index i = 0; i < t; ++i) {
    const double x = ts[i];
    if (!std::isfinite(x))
      throw InvalidInput("timestamps[" + std::to_string(i) + "] is " + detail::number_str(x) +
                         ": timestamps must be finite numbers (drop or fill that event)");
    lo = i == 0 ? x : std::min(lo, x);
    hi = i == 0 ? x : std::max(hi, x);
  }
  if (!(hi - lo <= kFloatMax))
    throw InvalidInput("timestamps span " + detail::number_str(hi - lo) +
                       ", more than float32 can hold (3.4e38): rescale them (e.g. to larger time units)");
  validate(seq, options);
}

AttentionOutput TemporalAttention::compute(const MatrixRef& seq, const TemporalOptions& options) const {
  validate(seq, options);
  return run(seq, nullptr, false, options.need_weights);
}

AttentionOutput TemporalAttention::compute(const MatrixRef& seq, const Eigen::Ref<const Eigen::VectorXd>& ts,
                                           const TemporalOptions& options) const {
  validate(seq, ts, options);
  // A strided Ref is copied once into contiguous memory (T doubles).
  const Eigen::VectorXd contiguous = ts;
  return run(seq, contiguous.data(), true, options.need_weights);
}

AttentionOutput TemporalAttention::run(const MatrixRef& seq, const double* ts, bool has_timestamps,
                                       bool need_weights) const {
  const Index t = seq.rows(), d = seq.cols();
  AttentionOutput out;
  out.values = memory::output_matrix(t, d);
  if (need_weights) {
    out.weights = memory::output_matrix(t, t);
    out.weights_shape = {t, t};
  }

  // float32 times relative to the earliest event: differences keep float32 resolution over
  // the span instead of over the absolute values.
  std::vector<float> times(static_cast<std::size_t>(t));
  if (has_timestamps && t > 0) {
    const double t0 = *std::min_element(ts, ts + t);
    for (Index i = 0; i < t; ++i) times[i] = static_cast<float>(ts[i] - t0);
  } else {
    for (Index i = 0; i < t; ++i) times[i] = static_cast<float>(i);
  }
  bool strictly_increasing = true;
  for (Index i = 1; i < t && strictly_increasing; ++i) strictly_increasing = times[i] > times[i - 1];

  simd::FlashParams p;
  p.q = p.k = p.v = seq.data();
  p.ldq = p.ldk = p.ldv = static_cast<std::size_t>(seq.outerStride());
  p.out = out.values.data();
  p.ldo = static_cast<std::size_t>(d);
  p.weights = need_weights ? out.weights.data() : nullptr;
  p.ldw = static_cast<std::size_t>(t);
  p.lq = p.lk = static_cast<std::size_t>(t);
  p.d = p.dv = static_cast<std::size_t>(d);
  p.scale = static_cast<float>(config_.scale_for(d));
  p.time.decay = static_cast<float>(lambda_);
  p.time.window = options_.window ? static_cast<float>(*options_.window) : -1.0f;
  p.time.always_self = true;
  if (options_.causal && strictly_increasing) {
    // In time order, "t_j <= t_i" is exactly "j <= i": the index-causal form lets the kernel
    // skip the key tiles past each query block (half the work).
    p.mask.causal = true;
  } else {
    p.time.causal = options_.causal;
  }
  // Without decay, window or time-causal masking the times change nothing: plain attention.
  if (p.time.decay != 0.0f || p.time.window >= 0.0f || p.time.causal) p.time.stamps = times.data();
  detail::run_flash(p);

  out.metadata["attention_type"] = std::string("temporal");
  out.metadata["sequence_length"] = static_cast<std::int64_t>(t);
  out.metadata["has_timestamps"] = has_timestamps;
  out.metadata["causal"] = options_.causal;
  out.metadata["decay_rate"] = lambda_;
  return out;
}

}  // namespace ruvector
