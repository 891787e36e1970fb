// NEON (AArch64) kernels. NEON is part of the AArch64 baseline, so no extra flags.
#define xsimd ruvector_xsimd_neon
#include <xsimd/xsimd.hpp>

#define RUVECTOR_ISA_NS isa_neon
#define RUVECTOR_ISA_NAME "neon"
#define RUVECTOR_XSIMD_ARCH xsimd::neon64
#define RUVECTOR_MR 8
#define RUVECTOR_NV 3
#include "isa_table.hpp"

namespace ruvector::simd {
const KernelTable& kernels_neon() noexcept {
  return isa_neon::table();
}
}  // namespace ruvector::simd
