// Run-time SIMD backend selection (docs/contract.md §8). The kernels are compiled once per ISA; the best
// one this CPU and build support is chosen once, at first use, and can be forced.
#pragma once

#include <string>
#include <vector>

namespace ruvector {

enum class Backend { Scalar, Avx2, Avx512, Neon };

// CPU SIMD features detected at run time (e.g. "sse2","avx2","fma","avx512f","avx512bw").
std::vector<std::string> cpu_features();
// Whether this CPU (and the OS, for the AVX register state) and this build support `b`.
bool backend_supported(Backend b);
// The backend in use.
Backend simd_backend();
const char* backend_name(Backend b);
// Force a backend by name ("avx512", "avx2", "neon", "scalar") or "auto" for detection.
// Throws InvalidConfig when the name is unknown or this CPU/build lacks it.
void set_simd_backend(const std::string& name);
// Applies RUVECTOR_SIMD when set; throws InvalidConfig naming the variable when its value
// is unknown or unsupported. RUVECTOR_AMX=0 turns AMX off (see below).
void init_simd_from_env();

// Intel AMX (bfloat16 tiles). Where the CPU has AMX-BF16 and the OS grants the tile state, the
// avx512 backend runs the streaming attention's two products on the tiles at float32 accuracy
// (each float32 operand cut exactly into three bfloat16 parts). On by default when available;
// set_amx_enabled(false) or RUVECTOR_AMX=0 keeps the AVX-512 FMA path. Asking for it where
// it is not available throws InvalidConfig.
bool amx_available();
bool amx_enabled() noexcept;
void set_amx_enabled(bool on);
// The AMX tiles' throughput on the calling thread now, in float32-equivalent GFLOP/s of that
// three-part scheme (six bfloat16 tile products per float32 product, operands in L1), measured
// for about `seconds` (0 < seconds <= 10, else InvalidInput); 0 where AMX is not available.
// A reference for benchmarks, as a large GEMM is for the FMA units: on a shared host another
// program on the same physical core can slow the tiles ~3× for seconds at a time.
double amx_tile_gflops(double seconds = 0.002);

// References for benchmarks, measured on the backend in use and the whole pool for about
// `seconds` (0 < seconds <= 10, else InvalidInput): the GEMM kernel's float32 rate on a
// 1024³ product (GFLOP/s), and the exp kernel's rate on data in L1 (exponentials per second,
// with the loads and stores of a softmax row around them). Best round of the period.
double gemm_gflops(double seconds = 0.2);
// The FMA units' peak float32 rate over the pool (GFLOP/s): multiply-add chains on registers,
// no memory traffic. The physical limit every product is measured against.
double fma_peak_gflops(double seconds = 0.1);
// The GEMM micro-kernel's float32 rate over the pool (GFLOP/s) on operands in L1: what every
// product of this backend can reach at best, its loads and broadcasts included.
double microkernel_gflops(double seconds = 0.1);
double exp_per_second(double seconds = 0.05);

}  // namespace ruvector
