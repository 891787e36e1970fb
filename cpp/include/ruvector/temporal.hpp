// Temporal self-attention over a sequence of events (docs/contract.md §4):
//   s_ij = scale · (x_i · x_j) − λ · |t_i − t_j|,   values = softmax_j(s_ij) · X
// with λ = decay_rate (or ln 2 / half_life), causal by time (j only where t_j <= t_i, so
// unsorted timestamps work), an optional window (|t_i − t_j| <= w) and i always attending to
// itself. The decay and the time masks are computed inside the fused attention tiles: with
// need_weights=false no T×T matrix exists, only O(T·D) memory.
//
// Timestamps are float64 at the API. The kernel works in float32 on the timestamps shifted
// by their minimum (|t_i − t_j|, the causal order and the window are shift-invariant), so
// large absolute times (Unix seconds) keep their differences: the resolution is that of
// float32 over the span max(t) − min(t) (about 6e-8 of it).
#pragma once

#include <optional>

#include "ruvector/config.hpp"
#include "ruvector/types.hpp"

namespace ruvector {

// How a layer attends, fixed when it is built.
struct TemporalConfig {
  bool causal = true;               // keep t_j <= t_i
  double decay_rate = 0.0;          // λ >= 0
  std::optional<double> half_life;  // > 0: λ = ln 2 / half_life (exclusive with decay_rate != 0)
  std::optional<double> window;     // >= 0: drop |t_i − t_j| > window

  // Throws InvalidConfig naming the field when a value is out of range.
  void validate() const;
  // The λ in use.
  double lambda() const;
};

// What one call asks for.
struct TemporalOptions {
  bool need_weights = true;  // false: streaming, no T×T matrix
};

class TemporalAttention {
 public:
  explicit TemporalAttention(AttentionConfig config = {}, TemporalConfig temporal = {});

  const AttentionConfig& config() const noexcept { return config_; }
  const TemporalConfig& temporal_config() const noexcept { return options_; }
  // λ in use (ln 2 / half_life when half_life was given).
  double decay_rate() const noexcept { return lambda_; }

  // sequence [T, D] with t_i = i → values [T, D], weights [T, T] (when need_weights).
  AttentionOutput compute(const MatrixRef& sequence, const TemporalOptions& options = {}) const;
  // sequence [T, D] with timestamps [T] (finite; any order).
  AttentionOutput compute(const MatrixRef& sequence, const Eigen::Ref<const Eigen::VectorXd>& timestamps,
                          const TemporalOptions& options = {}) const;

  // The checks compute makes before any work: batches run them on every item first.
  void validate(const MatrixRef& sequence, const TemporalOptions& options = {}) const;
  void validate(const MatrixRef& sequence, const Eigen::Ref<const Eigen::VectorXd>& timestamps,
                const TemporalOptions& options = {}) const;

 private:
  AttentionOutput run(const MatrixRef& sequence, const double* timestamps, bool has_timestamps,
                      bool need_weights) const;

  AttentionConfig config_;
  TemporalConfig options_;  // how this layer attends
  double lambda_ = 0.0;
};

}  // namespace ruvector
