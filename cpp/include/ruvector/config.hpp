// AttentionConfig: the settings every mechanism takes (docs/contract.md §3).
#pragma once

#include <cstdint>
#include <optional>

namespace ruvector {

struct AttentionConfig {
  int num_heads = 8;
  int head_dim = 64;
  double dropout = 0.1;  // acts only on calls with training=true
  bool use_bias = true;
  // Multiplies Q·Kᵀ (PyTorch's convention). Unset means 1/sqrt(d), d the key dimension.
  std::optional<double> scale;
  std::uint64_t seed = 0;

  // Throws InvalidConfig naming the field when a value is out of range.
  void validate() const;
  // The scale in use for key dimension `d` (kernels take it as float; it is validated to fit).
  double scale_for(std::int64_t d) const;
};

}  // namespace ruvector
