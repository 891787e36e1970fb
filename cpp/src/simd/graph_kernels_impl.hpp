// GAT/GATv2 kernels, written once on `Vec` (see kernels_impl.hpp, which includes this file at
// its end inside the same per-ISA namespace rules). Filled in by the graph attention issue.
#include "graph_kernels.hpp"

namespace ruvector::simd {
namespace RUVECTOR_ISA_NS {

const GraphKernelTable& graph_table() noexcept {
  static const GraphKernelTable t{RUVECTOR_ISA_NAME};
  return t;
}

}  // namespace RUVECTOR_ISA_NS
}  // namespace ruvector::simd
