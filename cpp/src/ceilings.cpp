// The machine's practical limits as ruvector's own kernels reach them, for benchmarks that
// print how close each workload comes (bench/compare.py). A library GEMM is the usual
// reference, but on some CPUs the libraries here are not at the FMA units' rate (NumPy's
// OpenBLAS and torch's MKL reach ~100 GFLOP/s on a 2-core AVX-512 AMD EPYC where our GEMM
// reaches ~350): the limit printed beside a row must be at least what any candidate reached.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "attention_core.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"
#include "thread_pool_internal.hpp"
#include "simd/kernels.hpp"

namespace ruvector {
namespace {

void check_seconds(const char* what, double seconds) {
  if (!(seconds > 0.0 && seconds <= 10.0))
    throw InvalidInput(std::string(what) + ": seconds must be in (0, 10], got " + std::to_string(seconds));
}

// Calls `step` (which does `work` units) until `seconds` have passed; the best rate of its
// rounds, in units per second (the best, since other programs only ever slow a round down).
template <class Step>
double best_rate(double seconds, double work, Step step) {
  using clock = std::chrono::steady_clock;
  step();  // warm-up: pages touched, pool threads awake
  const auto end = clock::now() + std::chrono::duration<double>(seconds);
  double best = 0.0;
  do {
    const auto t0 = clock::now();
    step();
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    if (dt > 0.0) best = std::max(best, work / dt);
  } while (clock::now() < end);
  return best;
}

}  // namespace

double gemm_gflops(double seconds) {
  check_seconds("gemm_gflops", seconds);
  constexpr std::size_t n = 1024;  // large enough for the packed path, small enough to be quick
  std::vector<float> a(n * n), b(n * n), c(n * n);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = std::sin(0.001f * static_cast<float>(i));
    b[i] = std::cos(0.002f * static_cast<float>(i));
  }
  const double flops = 2.0 * n * n * n;
  return best_rate(seconds, flops, [&] {
           detail::gemm(a.data(), n, b.data(), n, false, c.data(), n, n, n, n, nullptr);
         }) /
         1e9;
}

namespace {

// GFLOP/s of `kernel(rounds, sink)` run on every thread of the pool at once.
double pool_gflops(double seconds, std::size_t (*kernel)(std::size_t, float*) noexcept, std::size_t rounds) {
  const std::size_t threads = get_num_threads();
  std::vector<float> sinks(threads * 16);  // a cache line apart
  std::vector<std::size_t> flops(threads);
  const auto step = [&] {
    parallel_for(threads, [&](std::size_t t) { flops[t] = kernel(rounds, &sinks[t * 16]); });
  };
  step();
  double work = 0;
  for (std::size_t f : flops) work += static_cast<double>(f);
  return best_rate(seconds, work, step) / 1e9;
}

}  // namespace

double fma_peak_gflops(double seconds) {
  check_seconds("fma_peak_gflops", seconds);
  return pool_gflops(seconds, simd::active_kernels().fma_peak, std::size_t{1} << 16);
}

double microkernel_gflops(double seconds) {
  check_seconds("microkernel_gflops", seconds);
  return pool_gflops(seconds, simd::active_kernels().microkernel_peak, 256);
}

double exp_per_second(double seconds) {
  check_seconds("exp_per_second", seconds);
  const simd::KernelTable& kernels = simd::active_kernels();
  const std::size_t threads = get_num_threads();
  constexpr std::size_t n = 4096;  // 16 KB per thread: in L1
  std::vector<std::vector<float>> buffers(threads, std::vector<float>(n));
  for (auto& x : buffers)
    for (std::size_t i = 0; i < n; ++i) x[i] = -8.0f * static_cast<float>(i) / static_cast<float>(n);
  // In place, round after round: x ← exp(x − 1) keeps every value in (0, 1], so no round
  // meets an overflow or a subnormal, and nothing but the kernel runs in the timed loop.
  const auto step = [&] {
    parallel_for(threads, [&](std::size_t t) {
      float* x = buffers[t].data();
      for (int round = 0; round < 16; ++round) kernels.exp_shift_sum(x, n, 1.0f);
    });
  };
  return best_rate(seconds, 16.0 * static_cast<double>(n * threads), step);
}

}  // namespace ruvector
