// Scaled dot-product attention (docs/contract.md §4):
//   out = softmax(scale · Q·Kᵀ + mask) · V
// with a boolean mask (true = may attend) or an additive float mask, optional top-left causal
// masking (j <= i), and zeros for a row with nothing to attend to. Without weights the kernel
// streams over key blocks (online softmax), never holding the Lq×Lk matrix.
#pragma once

#include <atomic>
#include <cstdint>

#include "ruvector/config.hpp"
#include "ruvector/types.hpp"

namespace ruvector {

// A view of an attention mask over [Lq, Lk]; the caller keeps the memory alive during compute.
struct AttentionMask {
  enum class Kind { None, Boolean, Additive };
  Kind kind = Kind::None;
  const std::uint8_t* boolean = nullptr;  // nonzero = may attend
  const float* additive = nullptr;
  Index rows = 0, cols = 0, stride = 0;  // stride: elements between rows

  static AttentionMask none() { return {}; }
  // The mask views memory the caller owns: a row-major matrix (an lvalue: a temporary, such as
  // a column-major matrix converted on the fly, would be gone before compute runs) ...
  static AttentionMask from_bool(const RowMatrixXb& m) { return from_bool(m.data(), m.rows(), m.cols(), m.cols()); }
  static AttentionMask from_bool(RowMatrixXb&&) = delete;
  static AttentionMask from_additive(const RowMatrixXf& m) {
    return from_additive(m.data(), m.rows(), m.cols(), m.cols());
  }
  static AttentionMask from_additive(RowMatrixXf&&) = delete;
  // ... or a raw row-major buffer with `stride` elements between rows.
  static AttentionMask from_bool(const bool* data, Index rows, Index cols, Index stride) {
    static_assert(sizeof(bool) == 1, "bool masks are read as bytes");
    AttentionMask r;
    r.kind = Kind::Boolean;
    r.boolean = reinterpret_cast<const std::uint8_t*>(data);
    r.rows = rows;
    r.cols = cols;
    r.stride = stride;
    return r;
  }
  static AttentionMask from_additive(const float* data, Index rows, Index cols, Index stride) {
    AttentionMask r;
    r.kind = Kind::Additive;
    r.additive = data;
    r.rows = rows;
    r.cols = cols;
    r.stride = stride;
    return r;
  }
};

struct DotProductOptions {
  AttentionMask mask;
  bool causal = false;       // keep j <= i, top-left aligned (torch's is_causal)
  bool need_weights = true;  // false: streaming, memory O((Lq+Lk)·D)
  bool training = false;     // dropout acts only then
};

class DotProductAttention {
 public:
  explicit DotProductAttention(AttentionConfig config = {});
  DotProductAttention(const DotProductAttention& other);
  DotProductAttention& operator=(const DotProductAttention& other);

  const AttentionConfig& config() const noexcept { return config_; }

  // query [Lq, D], key [Lk, D], value [Lk, Dv] → values [Lq, Dv], weights [Lq, Lk].
  // Throws DimensionMismatch / InvalidInput naming the offending argument.
  AttentionOutput compute(const MatrixRef& query, const MatrixRef& key, const MatrixRef& value,
                          const DotProductOptions& options = {}) const;

  // The checks compute makes before any work, on their own: batches run them on every item
  // before starting the first.
  void validate(const MatrixRef& query, const MatrixRef& key, const MatrixRef& value,
                const DotProductOptions& options = {}) const;

 private:
  AttentionConfig config_;
  mutable std::atomic<std::uint64_t> calls_{0};  // dropout stream: replayable per object
};

}  // namespace ruvector
