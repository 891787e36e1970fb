// Multi-head attention as torch.nn.MultiheadAttention (docs/contract.md §4):
//   Q = query·Wqᵀ + bq,  K = key·Wkᵀ + bk,  V = value·Wvᵀ + bv
//   head_h = softmax(scale · Q_h·K_hᵀ + mask) · V_h        (Q_h: columns h·d .. (h+1)·d, d = E/H)
//   out = concat(head_0 .. head_{H-1})·Woᵀ + bo
// The weights use torch's state_dict names and shapes, so a torch module's weights load as
// they are. Default weights are identity projections with zero bias (plain split-heads
// attention). Masks follow this library's convention (true = may attend); a query row that
// may attend to no key gives zeros in values and weights (torch gives NaN there).
// torch's add_bias_kv and add_zero_attn append, after the projected keys and values, the rows
// bias_k / bias_v and then a zero row: the keys gain one column each in that order, which
// every mask allows (torch pads its masks so).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ruvector/config.hpp"
#include "ruvector/dot_product.hpp"
#include "ruvector/types.hpp"

namespace ruvector {

// torch's key_padding_mask of one sequence: [Lk] flags, true = ignore that key (torch's
// convention, the opposite of AttentionMask's). A view: the caller keeps the memory alive.
struct KeyPaddingMask {
  const std::uint8_t* ignore = nullptr;  // null: no key padding
  Index size = 0;

  static KeyPaddingMask none() { return {}; }
  static KeyPaddingMask from_bool(const bool* data, Index size) {
    static_assert(sizeof(bool) == 1, "bool masks are read as bytes");
    return {reinterpret_cast<const std::uint8_t*>(data), size};
  }
};

struct MultiHeadOptions {
  AttentionMask mask;               // [Lq, Lk], shared by every head (Lk: the keys given)
  bool causal = false;              // keep j <= i, top-left aligned (torch's is_causal); the
                                    // bias_k / zero columns stay allowed, as in torch's padded mask
  bool need_weights = true;         // false: every head streams, no Lq×Lk matrix
  bool average_weights = true;      // weights [Lq, Lk] (mean over heads) or [H, Lq, Lk]
  bool training = false;            // dropout acts only then
  KeyPaddingMask key_padding_mask;  // [Lk], combined with mask and causal (all must allow)
};

class MultiHeadAttention {
 public:
  // embed_dim defaults to num_heads·head_dim and must be divisible by num_heads; kdim and
  // vdim (the widths of key and value) default to embed_dim. Throws InvalidConfig naming the
  // field. add_bias_kv adds the weights bias_k and bias_v [1, 1, E] (zeros until set_weights;
  // torch draws them at random), add_zero_attn a zero key and value, as torch's options.
  explicit MultiHeadAttention(AttentionConfig config = {}, std::optional<Index> embed_dim = std::nullopt,
                              std::optional<Index> kdim = std::nullopt, std::optional<Index> vdim = std::nullopt,
                              bool add_bias_kv = false, bool add_zero_attn = false);
  MultiHeadAttention(const MultiHeadAttention& other);
  MultiHeadAttention& operator=(const MultiHeadAttention& other);
  ~MultiHeadAttention();

  const AttentionConfig& config() const noexcept { return config_; }
  Index embed_dim() const noexcept { return embed_dim_; }
  Index kdim() const noexcept { return kdim_; }
  Index vdim() const noexcept { return vdim_; }
  Index num_heads() const noexcept { return config_.num_heads; }
  Index head_dim() const noexcept { return embed_dim_ / config_.num_heads; }
  bool add_bias_kv() const noexcept { return add_bias_kv_; }
  bool add_zero_attn() const noexcept { return add_zero_attn_; }
  // Key columns a call adds after the Lk keys given (bias_k, then the zero key).
  Index added_keys() const noexcept { return static_cast<Index>(add_bias_kv_) + static_cast<Index>(add_zero_attn_); }
  // True when q/k/v projections are packed in one in_proj_weight [3E, E] (kdim == vdim == E),
  // as torch does.
  bool packed() const noexcept { return kdim_ == embed_dim_ && vdim_ == embed_dim_; }

  // The parameter names this layer has, with torch's shapes, in state_dict order.
  std::vector<std::pair<std::string, std::vector<Index>>> weight_shapes() const;
  // A copy of the weights under torch's state_dict names.
  StateDict get_weights() const;
  // Replaces every weight at once. The names must be exactly those of weight_shapes(); an
  // unknown or missing name or a wrong shape throws InvalidInput naming the key and the
  // expected shape, and leaves the layer unchanged.
  void set_weights(const StateDict& weights);

  // query [Lq, E], key [Lk, kdim], value [Lk, vdim] → values [Lq, E], weights [Lq, S]
  // (head average) or [H, Lq, S] (stored as [H·Lq, S]), S = Lk + added_keys().
  AttentionOutput compute(const MatrixRef& query, const MatrixRef& key, const MatrixRef& value,
                          const MultiHeadOptions& options = {}) const;

  // The checks compute makes before any work, on their own (batches run them on every item
  // before starting the first).
  void validate(const MatrixRef& query, const MatrixRef& key, const MatrixRef& value,
                const MultiHeadOptions& options = {}) const;

 private:
  struct Weights;
  std::shared_ptr<const Weights> weights() const;

  AttentionConfig config_;
  Index embed_dim_ = 0, kdim_ = 0, vdim_ = 0;
  bool add_bias_kv_ = false, add_zero_attn_ = false;
  // Replaced whole by set_weights; compute works on the snapshot it copied under the mutex,
  // so a concurrent set_weights never changes a running call's numbers.
  mutable std::mutex weights_mutex_;
  std::shared_ptr<const Weights> weights_;
  mutable std::atomic<std::uint64_t> calls_{0};  // dropout streams: replayable per object
};

}  // namespace ruvector
