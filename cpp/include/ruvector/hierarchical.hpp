// Hierarchical attention pooling (docs/contract.md §4), parameter-free, in the manner of hierarchical
// attention networks (Yang et al. 2016). For L levels X_l [N_l, D]:
//   within level l:  u_l = query, or the mean of X_l's rows
//                    α_l = softmax(scale · X_l · u_l),   s_l = α_lᵀ X_l        (S = [s_1..s_L], [L, D])
//   across levels:   β = level_weights / Σ level_weights, or softmax(scale · S · ū)
//                    with ū = query, or the mean of the s_l
//   values [1, D] = βᵀ S,  weights [L, max N_l] = the α_l, zero-padded.
// Levels are pooled in row chunks on the pool (online softmax per chunk, so every row is read
// once from memory after the mean), with the SIMD kernels of the active backend.
#pragma once

#include <optional>
#include <vector>

#include "ruvector/config.hpp"
#include "ruvector/types.hpp"

namespace ruvector {

struct HierarchicalOptions {
  std::optional<std::vector<double>> level_weights;  // [L], >= 0, finite, positive sum
  std::optional<Eigen::VectorXf> query;              // [D]
  bool need_weights = true;
};

class HierarchicalAttention {
 public:
  explicit HierarchicalAttention(AttentionConfig config = {});

  const AttentionConfig& config() const noexcept { return config_; }

  // levels: L matrices [N_l, D] (ragged N_l, common D) → values [1, D], weights [L, max N_l].
  // Metadata: level_weights (β), level_summaries (S, [L, D]), num_levels, has_level_weights.
  AttentionOutput compute(const std::vector<MatrixRef>& levels, const HierarchicalOptions& options = {}) const;

  // The checks compute makes before any work: batches run them on every item first.
  void validate(const std::vector<MatrixRef>& levels, const HierarchicalOptions& options = {}) const;

 private:
  AttentionConfig config_;
};

}  // namespace ruvector
