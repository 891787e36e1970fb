// DotProductAttention::compute per backend: with the Lq×Lk weights ("weights"), streaming
// without them ("streaming"), and causal. Inputs are Eigen row-major matrices, as a C++ user
// passes them; the front end's validation and output allocation are part of the time.
//   ./bench_dot_product --benchmark_filter='dot_product/avx2/'
#include "bench_common.hpp"
#include "ruvector/dot_product.hpp"

namespace {

using ruvector_bench::random_matrix;
using ruvector_bench::register_per_backend;

void register_dot_product() {
  struct Variant {
    const char* name;
    bool need_weights, causal;
  };
  for (const Variant& var : {Variant{"weights", true, false}, Variant{"streaming", false, false},
                             Variant{"causal_streaming", false, true}}) {
    register_per_backend(
        "dot_product", var.name,
        [var](benchmark::State& state) {
          const auto lq = state.range(0), lk = state.range(1), d = state.range(2);
          const auto q = random_matrix(lq, d, 1), k = random_matrix(lk, d, 2), v = random_matrix(lk, d, 3);
          const ruvector::DotProductAttention attention;
          ruvector::DotProductOptions options;
          options.need_weights = var.need_weights;
          options.causal = var.causal;
          for (auto _ : state) {
            auto out = attention.compute(q, k, v, options);
            benchmark::DoNotOptimize(out.values.data());
          }
          ruvector_bench::set_flops(state, 4.0 * double(lq) * double(lk) * double(d) * (var.causal ? 0.5 : 1.0));
        },
        [](benchmark::internal::Benchmark* b) {
          b->ArgNames({"Lq", "Lk", "D"})->Args({64, 64, 32})->Args({512, 512, 64})->Args({2048, 2048, 64});
        });
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ruvector_bench::run_main(argc, argv, register_dot_product);
}
