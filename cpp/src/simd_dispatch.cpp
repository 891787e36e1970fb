// The one place that chooses the kernel set: CPU features are read once (cpuid + XCR0 on
// x86-64, so an OS that did not enable the AVX register state is not trusted), the best
// supported backend is picked, and RUVECTOR_SIMD / set_simd_backend can force another.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"
#include "simd/graph_kernels.hpp"
#include "simd/kernels.hpp"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define RUVECTOR_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace ruvector {
namespace {

struct CpuInfo {
  bool sse2 = false, avx = false, avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512dq = false,
       avx512vl = false, neon = false;
  bool os_avx = false, os_avx512 = false;
};

#ifdef RUVECTOR_X86
void cpuid(unsigned leaf, unsigned sub, unsigned regs[4]) {
#if defined(_MSC_VER)
  int r[4];
  __cpuidex(r, static_cast<int>(leaf), static_cast<int>(sub));
  for (int i = 0; i < 4; ++i) regs[i] = static_cast<unsigned>(r[i]);
#else
  __cpuid_count(leaf, sub, regs[0], regs[1], regs[2], regs[3]);
#endif
}

unsigned long long xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
#endif
}
#endif

CpuInfo detect_cpu() {
  CpuInfo c;
#ifdef RUVECTOR_X86
  unsigned r[4] = {0, 0, 0, 0};
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
  cpuid(1, 0, r);
  c.sse2 = (r[3] >> 26) & 1;
  c.fma = (r[2] >> 12) & 1;
  const bool osxsave = (r[2] >> 27) & 1;
  c.avx = (r[2] >> 28) & 1;
  if (osxsave) {
    const unsigned long long xcr0 = xgetbv0();
    c.os_avx = (xcr0 & 0x6) == 0x6;       // XMM and YMM state
    c.os_avx512 = (xcr0 & 0xe6) == 0xe6;  // plus opmask, ZMM_Hi256, Hi16_ZMM
  }
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    c.avx2 = (r[1] >> 5) & 1;
    c.avx512f = (r[1] >> 16) & 1;
    c.avx512dq = (r[1] >> 17) & 1;
    c.avx512bw = (r[1] >> 30) & 1;
    c.avx512vl = (r[1] >> 31) & 1;
  }
#elif defined(__aarch64__) || defined(_M_ARM64)
  c.neon = true;  // part of the AArch64 baseline
#endif
  return c;
}

const CpuInfo& cpu() {
  static const CpuInfo info = detect_cpu();
  return info;
}

bool built(Backend b) {
  switch (b) {
    case Backend::Scalar:
      return true;
#ifdef RUVECTOR_HAVE_AVX2
    case Backend::Avx2:
      return true;
#endif
#ifdef RUVECTOR_HAVE_AVX512
    case Backend::Avx512:
      return true;
#endif
#ifdef RUVECTOR_HAVE_NEON
    case Backend::Neon:
      return true;
#endif
    default:
      return false;
  }
}

const simd::KernelTable& table_for(Backend b) {
  switch (b) {
#ifdef RUVECTOR_HAVE_AVX2
    case Backend::Avx2:
      return simd::kernels_avx2();
#endif
#ifdef RUVECTOR_HAVE_AVX512
    case Backend::Avx512:
      return simd::kernels_avx512();
#endif
#ifdef RUVECTOR_HAVE_NEON
    case Backend::Neon:
      return simd::kernels_neon();
#endif
    default:
      return simd::kernels_scalar();
  }
}

Backend best_backend() {
  for (Backend b : {Backend::Avx512, Backend::Avx2, Backend::Neon})
    if (backend_supported(b)) return b;
  return Backend::Scalar;
}

const simd::GraphKernelTable& graph_table_for(Backend b) {
  switch (b) {
#ifdef RUVECTOR_HAVE_AVX2
    case Backend::Avx2:
      return simd::graph_kernels_avx2();
#endif
#ifdef RUVECTOR_HAVE_AVX512
    case Backend::Avx512:
      return simd::graph_kernels_avx512();
#endif
#ifdef RUVECTOR_HAVE_NEON
    case Backend::Neon:
      return simd::graph_kernels_neon();
#endif
    default:
      return simd::graph_kernels_scalar();
  }
}

std::atomic<const simd::KernelTable*> g_table{nullptr};
std::atomic<const simd::GraphKernelTable*> g_graph_table{nullptr};
std::atomic<int> g_backend{-1};
std::mutex g_select_mutex;

void activate(Backend b) {
  g_table.store(&table_for(b), std::memory_order_release);
  g_graph_table.store(&graph_table_for(b), std::memory_order_release);
  g_backend.store(static_cast<int>(b), std::memory_order_release);
}

bool parse_backend(const std::string& name, Backend& out) {
  if (name == "scalar")
    out = Backend::Scalar;
  else if (name == "avx2")
    out = Backend::Avx2;
  else if (name == "avx512")
    out = Backend::Avx512;
  else if (name == "neon")
    out = Backend::Neon;
  else
    return false;
  return true;
}

}  // namespace

std::vector<std::string> cpu_features() {
  const CpuInfo& c = cpu();
  std::vector<std::string> f;
  if (c.sse2) f.emplace_back("sse2");
  if (c.avx && c.os_avx) f.emplace_back("avx");
  if (c.avx2 && c.os_avx) f.emplace_back("avx2");
  if (c.fma && c.os_avx) f.emplace_back("fma");
  if (c.avx512f && c.os_avx512) f.emplace_back("avx512f");
  if (c.avx512bw && c.os_avx512) f.emplace_back("avx512bw");
  if (c.avx512dq && c.os_avx512) f.emplace_back("avx512dq");
  if (c.avx512vl && c.os_avx512) f.emplace_back("avx512vl");
  if (c.neon) f.emplace_back("neon");
  return f;
}

bool backend_supported(Backend b) {
  if (!built(b)) return false;
  const CpuInfo& c = cpu();
  switch (b) {
    case Backend::Scalar:
      return true;
    case Backend::Avx2:
      return c.avx2 && c.fma && c.os_avx;
    case Backend::Avx512:
      return c.avx512f && c.avx512bw && c.avx512dq && c.avx512vl && c.os_avx512 && c.avx2 && c.fma;
    case Backend::Neon:
      return c.neon;
  }
  return false;
}

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::Scalar:
      return "scalar";
    case Backend::Avx2:
      return "avx2";
    case Backend::Avx512:
      return "avx512";
    case Backend::Neon:
      return "neon";
  }
  return "scalar";
}

Backend simd_backend() {
  int b = g_backend.load(std::memory_order_acquire);
  if (b < 0) {
    std::lock_guard<std::mutex> lock(g_select_mutex);
    b = g_backend.load(std::memory_order_acquire);
    if (b < 0) {
      activate(best_backend());
      b = g_backend.load();
    }
  }
  return static_cast<Backend>(b);
}

void set_simd_backend(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_select_mutex);
  if (name == "auto") {
    activate(best_backend());
    return;
  }
  Backend b;
  if (!parse_backend(name, b))
    throw InvalidConfig("unknown SIMD backend '" + name +
                        "': use one of \"auto\", \"avx512\", \"avx2\", \"neon\", \"scalar\"");
  if (!backend_supported(b))
    throw InvalidConfig("SIMD backend '" + name + "' is not supported by this " + (built(b) ? "CPU" : "build") +
                        "; get_features() lists what the CPU has, "
                        "use \"auto\" or \"scalar\"");
  activate(b);
}

void init_simd_from_env() {
  const char* env = std::getenv("RUVECTOR_SIMD");
  if (env == nullptr || *env == '\0') return;
  try {
    set_simd_backend(env);
  } catch (const InvalidConfig& e) {
    throw InvalidConfig(std::string("RUVECTOR_SIMD=") + env + ": " + e.what() +
                        " (unset RUVECTOR_SIMD or set it to a supported backend)");
  }
}

namespace simd {
const KernelTable& active_kernels() noexcept {
  const KernelTable* t = g_table.load(std::memory_order_acquire);
  if (t == nullptr) {
    simd_backend();
    t = g_table.load(std::memory_order_acquire);
  }
  return *t;
}

const GraphKernelTable& active_graph_kernels() noexcept {
  const GraphKernelTable* t = g_graph_table.load(std::memory_order_acquire);
  if (t == nullptr) {
    simd_backend();
    t = g_graph_table.load(std::memory_order_acquire);
  }
  return *t;
}
}  // namespace simd

}  // namespace ruvector
