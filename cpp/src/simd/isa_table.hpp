// Fills this ISA's kernel tables (kernels.hpp, graph_kernels.hpp) from the per-ISA kernels
// (see vec.hpp).
#pragma once

#include "flash_attention.hpp"
#include "gemm.hpp"
#include "graph_attention.hpp"
#include "graph_kernels.hpp"
#include "kernels.hpp"
#include "primitives.hpp"

namespace ruvector::simd::RUVECTOR_ISA_NS {

const KernelTable& table() noexcept {
  static const KernelTable t{
      RUVECTOR_ISA_NAME,       &dot_kernel,        &axpy_kernel,    &max_kernel,
      &exp_shift_sum_kernel,   &scale_kernel,      &softmax_kernel, &gemm_kernel,
      &flash_attention_kernel, &all_finite_kernel,
  };
  return t;
}

const GraphKernelTable& graph_table() noexcept {
  static const GraphKernelTable t{RUVECTOR_ISA_NAME, &transform_kernel, &gat_kernel};
  return t;
}

}  // namespace ruvector::simd::RUVECTOR_ISA_NS
