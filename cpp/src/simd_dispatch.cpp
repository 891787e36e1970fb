// The one place that chooses the kernel set: CPU features are read once (cpuid + XCR0 on
// x86-64, so an OS that did not enable the AVX register state is not trusted), the best
// supported backend is picked, and RUVECTOR_SIMD / set_simd_backend can force another.
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"
#include "simd/kernels.hpp"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define RUVECTOR_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

#if defined(RUVECTOR_AMX_BUILT) && defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#define RUVECTOR_AMX_LINUX 1
#endif

namespace ruvector {
namespace {

struct CpuInfo {
  bool sse2 = false, avx = false, avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512dq = false,
       avx512vl = false, neon = false, amx_tile = false, amx_bf16 = false, avx512_bf16 = false;
  bool os_avx = false, os_avx512 = false, os_amx = false;
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
    c.os_avx = (xcr0 & 0x6) == 0x6;          // XMM and YMM state
    c.os_avx512 = (xcr0 & 0xe6) == 0xe6;     // plus opmask, ZMM_Hi256, Hi16_ZMM
    c.os_amx = (xcr0 & 0x60000) == 0x60000;  // XTILECFG, XTILEDATA
  }
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    c.avx2 = (r[1] >> 5) & 1;
    c.avx512f = (r[1] >> 16) & 1;
    c.avx512dq = (r[1] >> 17) & 1;
    c.avx512bw = (r[1] >> 30) & 1;
    c.avx512vl = (r[1] >> 31) & 1;
    c.amx_bf16 = (r[3] >> 22) & 1;
    c.amx_tile = (r[3] >> 24) & 1;
    const unsigned subleaves = r[0];
    if (subleaves >= 1) {
      cpuid(7, 1, r);
      c.avx512_bf16 = (r[0] >> 5) & 1;
    }
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
  return simd::built_kernels(b) != nullptr;
}

Backend best_backend() {
  for (Backend b : {Backend::Avx512, Backend::Avx2, Backend::Neon})
    if (backend_supported(b)) return b;
  return Backend::Scalar;
}

// Linux hands a process the AMX tile state only on request (arch_prctl), once for all its
// threads; without it the first tile instruction kills the process.
bool request_amx_state() {
#if defined(RUVECTOR_AMX_LINUX)
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return ::syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

bool amx_usable() {
  static const bool ok = [] {
    const CpuInfo& c = cpu();
    return c.amx_tile && c.amx_bf16 && c.avx512_bf16 && c.os_amx && backend_supported(Backend::Avx512) &&
           request_amx_state();
  }();
  return ok;
}

std::atomic<int> g_amx{-1};  // -1: not decided yet (on when usable)

std::atomic<const simd::KernelTable*> g_table{nullptr};
std::atomic<int> g_backend{-1};
std::mutex g_select_mutex;

void activate(Backend b) {
  g_table.store(simd::built_kernels(b), std::memory_order_release);
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
  if (amx_usable()) f.emplace_back("amx_bf16");
  return f;
}

bool amx_available() {
  return amx_usable();
}

bool amx_enabled() noexcept {
  int on = g_amx.load(std::memory_order_relaxed);
  if (on < 0) {
    on = amx_usable() ? 1 : 0;
    int expected = -1;
    if (!g_amx.compare_exchange_strong(expected, on)) on = expected;
  }
  return on == 1;
}

void set_amx_enabled(bool on) {
  if (on && !amx_usable())
    throw InvalidConfig(
        "AMX is not available: it needs a CPU with AMX-BF16, an OS that grants the tile state "
        "(Linux >= 5.16) and a build with AMX support");
  g_amx.store(on ? 1 : 0);
}

double amx_tile_gflops(double seconds) {
  if (!(seconds > 0.0 && seconds <= 10.0))
    throw InvalidInput("amx_tile_gflops: seconds must be in (0, 10], got " + std::to_string(seconds));
#if defined(RUVECTOR_AMX_LINUX)
  if (amx_usable()) return simd::avx512_tile_gflops(seconds);
#endif
  return 0.0;
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
  return "unknown";
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
                        "; get_features() (Python) or cpu_features() (C++) lists what the CPU has, "
                        "use \"auto\" or \"scalar\"");
  activate(b);
}

void init_simd_from_env() {
  if (const char* amx = std::getenv("RUVECTOR_AMX"); amx != nullptr && *amx != '\0') {
    const std::string v = amx;
    if (v == "0")
      set_amx_enabled(false);
    else if (v != "1" && v != "auto")
      throw InvalidConfig("RUVECTOR_AMX=" + v +
                          " is not understood: set it to 0 (off) or 1 / auto (on when available)");
  }
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
const KernelTable* built_kernels(Backend b) noexcept {
  using Getter = const KernelTable& (*)() noexcept;
  // Indexed by Backend; null where this build lacks the ISA.
  static constexpr Getter kBuilt[] = {
      &kernels_scalar,
#ifdef RUVECTOR_HAVE_AVX2
      &kernels_avx2,
#else
      nullptr,
#endif
#ifdef RUVECTOR_HAVE_AVX512
      &kernels_avx512,
#else
      nullptr,
#endif
#ifdef RUVECTOR_HAVE_NEON
      &kernels_neon,
#else
      nullptr,
#endif
  };
  static_assert(static_cast<int>(Backend::Scalar) == 0 && static_cast<int>(Backend::Avx2) == 1 &&
                    static_cast<int>(Backend::Avx512) == 2 && static_cast<int>(Backend::Neon) == 3,
                "kBuilt follows the order of Backend");
  const auto i = static_cast<std::size_t>(b);
  return i < std::size(kBuilt) && kBuilt[i] != nullptr ? &kBuilt[i]() : nullptr;
}

const KernelTable& active_kernels() noexcept {
  const KernelTable* t = g_table.load(std::memory_order_acquire);
  if (t == nullptr) {
    simd_backend();
    t = g_table.load(std::memory_order_acquire);
  }
  return *t;
}
}  // namespace simd

}  // namespace ruvector
