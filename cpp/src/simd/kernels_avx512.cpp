// AVX-512 (F/BW/DQ/VL) kernels; this file alone is compiled with the AVX-512 flags.
// xsimd is renamed into a namespace of this file's own so none of its inline functions,
// compiled here with AVX-512, can be merged by the linker with another ISA's copy.
//
// Why not xsimd's own dispatch pattern (kernel templates on the architecture, explicitly
// instantiated here): its architectures inherit from each other (avx512bw → … → avx2 → avx),
// so this file also instantiates xsimd templates of the older architectures, under the very
// names kernels_avx2.cpp gives them. Where the compiler keeps one out of line (at -O0, for
// one, simd_register<float, avx2>'s constructor and simd_register<float, avx>'s conversion,
// found in both objects) the linker keeps a single copy for both files, perhaps this one's,
// built with AVX-512 flags. Templates on the architecture would not separate those; the rename
// does. (At -O3 the two objects emit no xsimd symbol at all, with or without the rename, and
// .ci/slow-checks isa-scan passes either way: the rename guards the builds it does not scan.)
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
