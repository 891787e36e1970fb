// AVX2 + FMA kernels; this file alone is compiled with -mavx2 -mfma.
// xsimd is renamed into a namespace of this file's own so none of its inline functions,
// compiled here with AVX2, can be merged by the linker with another ISA's copy.
// (kernels_avx512.cpp says why a rename rather than templates on the architecture.)
#define xsimd ruvector_xsimd_avx2
#include <xsimd/xsimd.hpp>

#define RUVECTOR_ISA_NS isa_avx2
#define RUVECTOR_ISA_NAME "avx2"
#define RUVECTOR_XSIMD_ARCH xsimd::fma3<xsimd::avx2>
#define RUVECTOR_MR 6
#define RUVECTOR_NV 2
#include "isa_table.hpp"

namespace ruvector::simd {
const KernelTable& kernels_avx2() noexcept {
  return isa_avx2::table();
}
}  // namespace ruvector::simd
