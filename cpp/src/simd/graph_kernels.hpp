// Kernels of GraphAttention (GAT/GATv2 edge scoring and aggregation), one table per ISA like
// kernels.hpp. Filled in by the graph attention issue.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels.hpp"

namespace ruvector::simd {

struct GraphKernelTable {
  const char* name;
};

const GraphKernelTable& graph_kernels_scalar() noexcept;
const GraphKernelTable& graph_kernels_avx2() noexcept;
const GraphKernelTable& graph_kernels_avx512() noexcept;
const GraphKernelTable& graph_kernels_neon() noexcept;

// The table of the backend in use (simd_dispatch.cpp).
const GraphKernelTable& active_graph_kernels() noexcept;

}  // namespace ruvector::simd
