// HierarchicalAttention::compute per backend: L levels of N rows each (the levels are pooled
// in row chunks on the pool), with mean contexts or a given query.
//   ./bench_hierarchical --benchmark_filter='hierarchical/scalar/'
#include <vector>

#include "bench_common.hpp"
#include "ruvector/hierarchical.hpp"

namespace {

using ruvector_bench::random_matrix;
using ruvector_bench::register_per_backend;

void register_hierarchical() {
  for (bool with_query : {false, true}) {
    register_per_backend(
        "hierarchical", with_query ? "query" : "mean_context",
        [with_query](benchmark::State& state) {
          const auto levels = state.range(0), n = state.range(1), d = state.range(2);
          std::vector<ruvector::RowMatrixXf> data;
          for (Eigen::Index l = 0; l < levels; ++l) data.push_back(random_matrix(n, d, static_cast<unsigned>(l + 1)));
          const std::vector<ruvector::MatrixRef> refs(data.begin(), data.end());
          ruvector::HierarchicalOptions options;
          if (with_query) options.query = Eigen::VectorXf(random_matrix(1, d, 99).transpose());
          const ruvector::HierarchicalAttention attention;
          for (auto _ : state) {
            auto out = attention.compute(refs, options);
            benchmark::DoNotOptimize(out.values.data());
          }
          // mean (N·D) + scores (2·N·D) + weighted sum (2·N·D) per level
          ruvector_bench::set_flops(state, 5.0 * double(levels) * double(n) * double(d));
        },
        [](benchmark::internal::Benchmark* b) {
          b->ArgNames({"L", "N", "D"})->Args({3, 64, 32})->Args({4, 4096, 128})->Args({8, 65536, 64});
        });
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ruvector_bench::run_main(argc, argv, register_hierarchical);
}
