// Shared pieces of the google-benchmark binaries (bench/bench_*.cpp).
//
// Every benchmark is registered once per SIMD backend this CPU and build support, and the
// backend is part of its name ("dot_product/avx512/weights/Lq:512/Lk:512/D:64"), so one run
// compares the kernel sets side by side and --benchmark_filter=avx2 picks one of them. Each
// benchmark forces its backend with ruvector::set_simd_backend before timing. Times are wall
// clock (UseRealTime): the work runs on the library's thread pool, not only on the timing thread.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ruvector/simd.hpp"
#include "ruvector/thread_pool.hpp"
#include "ruvector/types.hpp"

namespace ruvector_bench {

inline std::vector<ruvector::Backend> supported_backends() {
  std::vector<ruvector::Backend> out;
  for (ruvector::Backend b :
       {ruvector::Backend::Scalar, ruvector::Backend::Avx2, ruvector::Backend::Avx512, ruvector::Backend::Neon})
    if (ruvector::backend_supported(b)) out.push_back(b);
  return out;
}

inline std::string join(const std::vector<std::string>& parts, const char* sep = ",") {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : sep) + p;
  return s;
}

// Random N(0,1) data (never zeros), reproducible by seed.
inline ruvector::RowMatrixXf random_matrix(ruvector::Index rows, ruvector::Index cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  ruvector::RowMatrixXf m(rows, cols);
  for (ruvector::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
  return m;
}

inline std::vector<float> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// Registers `body(state)` as "<family>/<backend>/<variant>" for every supported backend; the
// returned benchmarks get `configure` applied (Args, ArgNames, ...). `body` runs with the
// backend already forced. Flop counts go to state.counters by the body.
inline void register_per_backend(const std::string& family, const std::string& variant,
                                 std::function<void(benchmark::State&)> body,
                                 const std::function<void(benchmark::internal::Benchmark*)>& configure) {
  for (ruvector::Backend b : supported_backends()) {
    const std::string backend = ruvector::backend_name(b);
    std::string name = family + "/" + backend;
    if (!variant.empty()) name += "/" + variant;
    auto* bm = benchmark::RegisterBenchmark(name.c_str(), [backend, body](benchmark::State& state) {
      ruvector::set_simd_backend(backend);
      body(state);
      ruvector::set_simd_backend("auto");
    });
    bm->UseRealTime()->Unit(benchmark::kMicrosecond);
    configure(bm);
  }
}

// Floating-point operations per iteration, reported as a rate (FLOP/s).
inline void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
}

// main() of every binary: the backends, threads and CPU features go into the context block that
// google-benchmark prints first (and into --benchmark_out JSON). RUVECTOR_NUM_THREADS sizes the
// pool as it does for Python.
inline int run_main(int argc, char** argv, const std::function<void()>& register_all) {
  ruvector::init_threads_from_env();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::vector<std::string> backends;
  for (ruvector::Backend b : supported_backends()) backends.emplace_back(ruvector::backend_name(b));
  benchmark::AddCustomContext("ruvector_simd_backends", join(backends));
  benchmark::AddCustomContext("ruvector_default_backend", ruvector::backend_name(ruvector::simd_backend()));
  benchmark::AddCustomContext("ruvector_cpu_features", join(ruvector::cpu_features()));
  benchmark::AddCustomContext("ruvector_num_threads", std::to_string(ruvector::get_num_threads()));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace ruvector_bench
