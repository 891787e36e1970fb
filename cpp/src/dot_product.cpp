// DotProductAttention front end: validate shapes once, then one fused kernel call.
#include "ruvector/dot_product.hpp"

#include <string>

#include "attention_core.hpp"
#include "memory/memory.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"

namespace ruvector {

DotProductAttention::DotProductAttention(AttentionConfig config) : config_(config) {
  config_.validate();
}

DotProductAttention::DotProductAttention(const DotProductAttention& other)
    : config_(other.config_), calls_(other.calls_.load()) {}

DotProductAttention& DotProductAttention::operator=(const DotProductAttention& other) {
  config_ = other.config_;
  calls_.store(other.calls_.load());
  return *this;
}

void DotProductAttention::validate(const MatrixRef& q, const MatrixRef& k, const MatrixRef& v,
                                   const DotProductOptions& opt) const {
  const Index lq = q.rows(), d = q.cols(), lk = k.rows();
  if (k.cols() != d)
    throw DimensionMismatch("key has " + std::to_string(k.cols()) + " columns, query has " + std::to_string(d) +
                                ": query and key must share their last dimension",
                            d, k.cols());
  detail::check_value_rows(lk, v.rows());
  detail::check_mask_shape(opt.mask, lq, lk);
  memory::checked_elements(lq, v.cols(), "attention values", "split the queries into smaller calls");
  if (opt.need_weights)
    memory::checked_elements(lq, lk, "attention weights", "pass need_weights=False to stream without them");
}

AttentionOutput DotProductAttention::compute(const MatrixRef& q, const MatrixRef& k, const MatrixRef& v,
                                             const DotProductOptions& opt) const {
  validate(q, k, v, opt);
  const Index lq = q.rows(), d = q.cols(), lk = k.rows(), dv = v.cols();
  AttentionOutput out = detail::dot_product_output(lq, lk, dv, opt.need_weights);

  simd::FlashParams p;
  p.q = q.data();
  p.ldq = static_cast<std::size_t>(q.outerStride());
  p.k = k.data();
  p.ldk = static_cast<std::size_t>(k.outerStride());
  p.v = v.data();
  p.ldv = static_cast<std::size_t>(v.outerStride());
  p.out = out.values.data();
  p.ldo = static_cast<std::size_t>(dv);
  p.weights = opt.need_weights ? out.weights.data() : nullptr;
  p.ldw = static_cast<std::size_t>(lk);
  p.lq = static_cast<std::size_t>(lq);
  p.lk = static_cast<std::size_t>(lk);
  p.d = static_cast<std::size_t>(d);
  p.dv = static_cast<std::size_t>(dv);
  p.scale = static_cast<float>(config_.scale_for(d));
  p.mask = detail::flash_mask(opt.mask, opt.causal);
  if (opt.training && config_.dropout > 0.0)
    p.dropout = detail::flash_dropout(config_, calls_.fetch_add(1, std::memory_order_relaxed));
  // Values of width 0 and no weights: the result is empty, whatever the scores; no O(Lq·Lk) pass
  // (and no scratch sized by the rows) for nothing (issue 19).
  const bool empty = dv == 0 && !opt.need_weights;
  const char* backend = empty ? backend_name(simd_backend()) : detail::run_flash(p);

  detail::describe_dot_product(out, config_, d, backend);
  return out;
}

namespace detail {

AttentionOutput dot_product_output(Index lq, Index lk, Index dv, bool need_weights) {
  AttentionOutput out;
  out.values = memory::output_matrix(lq, dv);
  if (need_weights) {
    out.weights = memory::output_matrix(lq, lk);
    out.weights_shape = {lq, lk};
  }
  return out;
}

void describe_dot_product(AttentionOutput& out, const AttentionConfig& config, Index d, const char* backend) {
  out.metadata["attention_type"] = std::string("dot_product");
  out.metadata["scale"] = config.scale_for(d);
  out.metadata["simd_backend"] = std::string(backend);
}

}  // namespace detail

}  // namespace ruvector
