// GraphAttention per backend on random graphs (average in-degree 16): GAT and GATv2 layers on
// a GraphStructure built once, and the GraphStructure construction itself (validation + CSR).
//   ./bench_graph --benchmark_filter='graph_gat/avx2/'
#include <random>

#include "bench_common.hpp"
#include "ruvector/graph.hpp"

namespace {

using ruvector_bench::random_matrix;
using ruvector_bench::register_per_backend;

constexpr std::int64_t kDegree = 16;

ruvector::RowMatrixXi64 random_edges(std::int64_t nodes, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<std::int64_t> node(0, nodes - 1);
  ruvector::RowMatrixXi64 edges(nodes * kDegree, 2);
  for (Eigen::Index e = 0; e < edges.rows(); ++e) {
    edges(e, 0) = node(gen);
    edges(e, 1) = node(gen);
  }
  return edges;
}

void register_graph() {
  const auto shapes = [](benchmark::internal::Benchmark* b) {
    b->ArgNames({"N", "F", "H", "C"})->Args({100, 16, 2, 8})->Args({2000, 64, 4, 16})->Args({20000, 128, 8, 16});
  };
  for (auto variant : {ruvector::GraphVariant::Gat, ruvector::GraphVariant::GatV2}) {
    for (bool need_weights : {true, false}) {
      const char* family = variant == ruvector::GraphVariant::Gat ? "graph_gat" : "graph_gatv2";
      register_per_backend(
          family, need_weights ? "weights" : "values_only",
          [variant, need_weights](benchmark::State& state) {
            const auto n = state.range(0), f = state.range(1), heads = state.range(2), c = state.range(3);
            const ruvector::GraphStructure graph(random_edges(n, 1), n);
            ruvector::AttentionConfig config;
            config.num_heads = static_cast<int>(heads);
            config.head_dim = static_cast<int>(c);
            ruvector::GraphConfig options;
            options.in_features = f;
            options.variant = variant;
            const ruvector::GraphAttention layer(config, options);
            const auto x = random_matrix(n, f, 2);
            for (auto _ : state) {
              auto out = layer.compute(x, graph, ruvector::GraphOptions{need_weights});
              benchmark::DoNotOptimize(out.values.data());
            }
            // linear transform(s) (2·N·F·H·C each; GATv2 has two) + scoring and aggregation per edge
            const double lin =
                2.0 * double(n) * double(f) * double(heads * c) * (variant == ruvector::GraphVariant::Gat ? 1 : 2);
            ruvector_bench::set_flops(state, lin + 4.0 * double(n * (kDegree + 1)) * double(heads * c));
          },
          shapes);
    }
  }

  // Construction does not depend on the backend but runs per backend like the rest, so a
  // filter on the backend keeps it in the table.
  register_per_backend(
      "graph_structure", "build",
      [](benchmark::State& state) {
        const auto n = state.range(0);
        const auto edges = random_edges(n, 3);
        for (auto _ : state) {
          ruvector::GraphStructure graph(edges, n);
          benchmark::DoNotOptimize(graph.num_edges());
        }
        state.SetItemsProcessed(state.iterations() * edges.rows());
      },
      [](benchmark::internal::Benchmark* b) { b->ArgName("N")->Arg(100)->Arg(20000)->Arg(200000); });
}

}  // namespace

int main(int argc, char** argv) {
  return ruvector_bench::run_main(argc, argv, register_graph);
}
