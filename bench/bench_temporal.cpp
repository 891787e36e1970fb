// TemporalAttention::compute per backend: causal by time with exponential decay (half-life),
// on unsorted timestamps, with and without the T×T weights.
//   ./bench_temporal --benchmark_filter='temporal/avx512/'
#include <algorithm>
#include <random>

#include "bench_common.hpp"
#include "ruvector/temporal.hpp"

namespace {

using ruvector_bench::random_matrix;
using ruvector_bench::register_per_backend;

void register_temporal() {
  for (bool need_weights : {true, false}) {
    register_per_backend(
        "temporal", need_weights ? "weights" : "streaming",
        [need_weights](benchmark::State& state) {
          const auto t = state.range(0), d = state.range(1);
          ruvector::TemporalConfig options;
          options.causal = true;
          options.half_life = 50.0;
          const ruvector::TemporalAttention attention({}, options);
          const auto x = random_matrix(t, d, 1);
          Eigen::VectorXd times(t);
          for (Eigen::Index i = 0; i < t; ++i) times(i) = 1.7e9 + 0.5 * static_cast<double>(i);  // Unix seconds
          std::shuffle(times.data(), times.data() + t, std::mt19937(2));
          for (auto _ : state) {
            auto out = attention.compute(x, times, ruvector::TemporalOptions{need_weights});
            benchmark::DoNotOptimize(out.values.data());
          }
          ruvector_bench::set_flops(state,
                                    4.0 * double(t) * double(t) * double(d) * 0.5);  // about half the pairs are causal
        },
        [](benchmark::internal::Benchmark* b) {
          b->ArgNames({"T", "D"})->Args({64, 32})->Args({512, 64})->Args({4096, 64});
        });
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ruvector_bench::run_main(argc, argv, register_temporal);
}
