// AVX-512 (F/BW/DQ/VL) kernels; this file alone is compiled with the AVX-512 flags.
// xsimd is renamed into a namespace of this file's own so none of its inline functions,
// compiled here with AVX-512, can be merged by the linker with another ISA's copy.
#define xsimd ruvector_xsimd_avx512
#include <xsimd/xsimd.hpp>

#define RUVECTOR_ISA_NS isa_avx512
#define RUVECTOR_ISA_NAME "avx512"
#define RUVECTOR_XSIMD_ARCH xsimd::avx512bw
#define RUVECTOR_MR 12
#define RUVECTOR_NV 2
#include "isa_table.hpp"
#if defined(RUVECTOR_AMX)
#include "amx/tile_probe.hpp"
#endif

namespace ruvector::simd {
const KernelTable& kernels_avx512() noexcept {
  return isa_avx512::table();
}
#if defined(RUVECTOR_AMX)
double avx512_tile_gflops(double seconds) noexcept {
  return isa_avx512::amx::tile_gflops(seconds);
}
#endif
}  // namespace ruvector::simd
