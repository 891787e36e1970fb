// Run-time SIMD backend selection (SPEC §8). The kernels are compiled once per ISA; the best
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
// is unknown or unsupported.
void init_simd_from_env();

}  // namespace ruvector
