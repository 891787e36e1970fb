// Fills this ISA's kernel table (kernels.hpp) from the per-ISA kernels (see vec.hpp): the one
// place that lists them.
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
      &flash_attention_kernel, &all_finite_kernel, &fma_peak_kernel,
      &microkernel_peak_kernel, GraphKernels{&transform_packed_size, &pack_transform, &transform_kernel, &gat_kernel},
  };
  return t;
}

}  // namespace ruvector::simd::RUVECTOR_ISA_NS
