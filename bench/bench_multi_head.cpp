// MultiHeadAttention::compute per backend (identity default weights; the projections are GEMMs
// either way): averaged weights, per-head weights, and streaming without weights.
//   ./bench_multi_head --benchmark_filter='multi_head/.*/streaming'
#include "bench_common.hpp"
#include "ruvector/multi_head.hpp"

namespace {

using ruvector_bench::random_matrix;
using ruvector_bench::register_per_backend;

void register_multi_head() {
  struct Variant {
    const char* name;
    bool need_weights, average_weights;
  };
  for (const Variant& var : {Variant{"weights_avg", true, true}, Variant{"weights_per_head", true, false},
                             Variant{"streaming", false, true}}) {
    register_per_backend(
        "multi_head", var.name,
        [var](benchmark::State& state) {
          const auto l = state.range(0), e = state.range(1), heads = state.range(2);
          ruvector::AttentionConfig config;
          config.num_heads = static_cast<int>(heads);
          config.head_dim = static_cast<int>(e / heads);
          const ruvector::MultiHeadAttention attention(config);
          const auto q = random_matrix(l, e, 1), k = random_matrix(l, e, 2), v = random_matrix(l, e, 3);
          ruvector::MultiHeadOptions options;
          options.need_weights = var.need_weights;
          options.average_weights = var.average_weights;
          for (auto _ : state) {
            auto out = attention.compute(q, k, v, options);
            benchmark::DoNotOptimize(out.values.data());
          }
          // 4 projections (L·E·E each) + attention (4·L·L·E over all heads)
          ruvector_bench::set_flops(state,
                                    8.0 * double(l) * double(e) * double(e) + 4.0 * double(l) * double(l) * double(e));
        },
        [](benchmark::internal::Benchmark* b) {
          b->ArgNames({"L", "E", "H"})->Args({32, 64, 4})->Args({256, 256, 8})->Args({1024, 512, 8});
        });
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ruvector_bench::run_main(argc, argv, register_multi_head);
}
