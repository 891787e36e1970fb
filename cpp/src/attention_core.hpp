// Internal glue between front ends and kernels: runs the fused attention and GEMM kernels on
// the process-wide pool, and holds the input checks the (query, key, value) front ends share.
// How much memory a call may take is memory/memory.hpp's business.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ruvector/dot_product.hpp"
#include "simd/kernels.hpp"

namespace ruvector::detail {

// Runs the fused attention kernel of the active backend; splits query blocks over the pool
// when the work is large enough to pay for it. Throws std::bad_alloc on scratch failure.
// Returns the name of the backend that ran (a concurrent set_simd_backend cannot make a
// result's metadata name another).
const char* run_flash(const simd::FlashParams& p);
// C = A·op(B) (+bias) with the active backend's GEMM.
void run_gemm(const simd::GemmParams& p);
// The fused kernel's mask group from a checked mask and the index-causal flag.
simd::FlashMask flash_mask(const AttentionMask& mask, bool causal);
// The fused kernel's dropout group at the configured rate and seed, for one training call's
// stream (head h of a multi-head call drops with stream + h).
simd::FlashDropout flash_dropout(const AttentionConfig& config, std::uint64_t stream);
// The same for row-major operands: C[m, n] = A[m, k]·B[k, n], or A·Bᵀ with B [n, k] when
// b_transposed, plus bias[n] when given.
void gemm(const float* a, std::size_t lda, const float* b, std::size_t ldb, bool b_transposed, float* c,
          std::size_t ldc, std::size_t m, std::size_t n, std::size_t k, const float* bias);

// The checks every (query, key, value) front end shares: one value row per key, and a mask
// of shape [Lq, Lk] (`note` is appended to the message). Throw DimensionMismatch.
void check_value_rows(std::int64_t keys, std::int64_t value_rows);
void check_mask_shape(const AttentionMask& mask, std::int64_t lq, std::int64_t lk, const char* note = "");

// DotProductAttention::compute's output around the kernel (dot_product.cpp): the values (and
// weights) allocated, not written, and the metadata naming the backend that ran. The binding's
// benchmark probe (_probe_call) builds them alone, to measure what a call costs beyond the
// arithmetic.
AttentionOutput dot_product_output(Index lq, Index lk, Index dv, bool need_weights);
void describe_dot_product(AttentionOutput& out, const AttentionConfig& config, Index d, const char* backend);

}  // namespace ruvector::detail
