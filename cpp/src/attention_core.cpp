#include "attention_core.hpp"

#include <functional>
#include <limits>
#include <new>

#include "ruvector/errors.hpp"
#include "ruvector/thread_pool.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace ruvector::detail {
namespace {

// Below this many flops a call runs on the calling thread: handing work to the pool costs
// more than it saves (tiny calls are latency-bound).
constexpr double kParallelFlops = 8.0e6;  // L=128, D=64 self-attention (4.2e6) stays on one thread

void pool_for_each(void*, std::size_t n, void* job, void (*fn)(void*, std::size_t)) {
  parallel_for(n, [&](std::size_t i) { fn(job, i); });
}

simd::Parallel parallel_if(double flops) {
  simd::Parallel par;
  if (flops >= kParallelFlops) par.for_each = &pool_for_each;
  return par;
}

std::uint64_t read_physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
#endif
  return std::numeric_limits<std::uint64_t>::max();
}

// Read once: sysconf(_SC_PHYS_PAGES) is a system call, too slow for every tiny call.
std::uint64_t physical_memory_bytes() {
  static const std::uint64_t bytes = read_physical_memory();
  return bytes;
}

}  // namespace

void run_flash(const simd::FlashParams& p) {
  const double flops = 2.0 * static_cast<double>(p.lq) * static_cast<double>(p.lk) * static_cast<double>(p.d + p.dv);
  if (!simd::active_kernels().flash_attention(p, parallel_if(flops))) throw std::bad_alloc();
}

void run_gemm(const simd::GemmParams& p) {
  const double flops = 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
  if (!simd::active_kernels().gemm(p, parallel_if(flops))) throw std::bad_alloc();
}

std::string shape_str(std::int64_t rows, std::int64_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

std::size_t checked_elements(std::int64_t rows, std::int64_t cols, const char* what, const char* hint) {
  const double bytes = static_cast<double>(rows) * static_cast<double>(cols) * sizeof(float);
  if (rows < 0 || cols < 0 || bytes > static_cast<double>(physical_memory_bytes()))
    throw InvalidInput(std::string(what) + " of shape " + shape_str(rows, cols) + " needs " +
                       std::to_string(static_cast<long long>(bytes / 1e6)) +
                       " MB, more than this machine's memory; " + hint);
  return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
}

}  // namespace ruvector::detail
