#include <cmath>
#include <string>

#include "ruvector/config.hpp"
#include "ruvector/errors.hpp"

namespace ruvector {

void AttentionConfig::validate() const {
  if (num_heads < 1)
    throw InvalidConfig("num_heads must be >= 1, got " + std::to_string(num_heads));
  if (head_dim < 1)
    throw InvalidConfig("head_dim must be >= 1, got " + std::to_string(head_dim));
  if (!(dropout >= 0.0 && dropout < 1.0))
    throw InvalidConfig("dropout must be in [0, 1), got " + std::to_string(dropout));
  if (scale && !(std::isfinite(*scale) && *scale > 0.0))
    throw InvalidConfig("scale must be a finite number > 0 (or None for 1/sqrt(d)), got " +
                        std::to_string(*scale));
}

float AttentionConfig::scale_for(std::int64_t d) const {
  if (scale) return static_cast<float>(*scale);
  return d > 0 ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(d))) : 1.0f;
}

}  // namespace ruvector
