#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "ruvector/config.hpp"
#include "ruvector/errors.hpp"

namespace ruvector {

void AttentionConfig::validate() const {
  if (num_heads < 1) throw InvalidConfig("num_heads must be >= 1, got " + std::to_string(num_heads));
  if (head_dim < 1) throw InvalidConfig("head_dim must be >= 1, got " + std::to_string(head_dim));
  if (!(dropout >= 0.0 && dropout < 1.0))
    throw InvalidConfig("dropout must be in [0, 1), got " + std::to_string(dropout));
  if (scale && !(std::isfinite(*scale) && *scale > 0.0))
    throw InvalidConfig("scale must be a finite number > 0 (or None for 1/sqrt(d)), got " + std::to_string(*scale));
  // The kernels compute in float32: a scale that rounds to 0 or inf there is no scale at all.
  if (scale && !(*scale >= std::numeric_limits<float>::min() && *scale <= std::numeric_limits<float>::max())) {
    std::ostringstream s;
    s << "scale must lie within float32's normal range [1.2e-38, 3.4e38], got " << *scale;
    throw InvalidConfig(s.str());
  }
}

double AttentionConfig::scale_for(std::int64_t d) const {
  if (scale) return *scale;
  return d > 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : 1.0;
}

}  // namespace ruvector
