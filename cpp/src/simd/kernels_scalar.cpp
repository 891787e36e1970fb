// Portable kernels: plain C++ loops, baseline compiler flags, no intrinsics.
#define RUVECTOR_ISA_NS isa_scalar
#define RUVECTOR_ISA_NAME "scalar"
#define RUVECTOR_SCALAR 1
#define RUVECTOR_MR 4
#define RUVECTOR_NV 8
#include "isa_table.hpp"

namespace ruvector::simd {
const KernelTable& kernels_scalar() noexcept {
  return isa_scalar::table();
}
}  // namespace ruvector::simd
