// What the graph sources share and the public header leaves out: the compressed form of a
// graph (graph/structure.cpp builds it, the compute path reads it) and a layer's parameters
// in kernel-ready form (graph/parameters.cpp builds them, graph/attention.cpp reads them).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ruvector/graph.hpp"
#include "ruvector/types.hpp"

namespace ruvector::detail {

// The compressed, target-major (CSR) form of a graph, built once by GraphStructure. Edges
// are split into ordinary edges (source != target) and given self-loops, so that a layer may
// drop the latter (add_self_loops) or keep them, without rebuilding anything.
struct GraphCsr {
  std::int64_t num_nodes = 0;    // targets (N_dst)
  std::int64_t num_sources = 0;  // N_src (= num_nodes unless bipartite)
  bool bipartite = false;        // built with a pair of node counts
  std::int64_t num_edges = 0;    // as given, self-loops included
  // Ordinary edges grouped by target: those of node i are [indptr[i], indptr[i+1]), in the
  // order they were given.
  std::vector<std::int64_t> indptr;   // [N + 1]
  std::vector<std::int64_t> source;   // [nnz]
  std::vector<std::int64_t> edge_id;  // [nnz] position in the given edge list
  // Rank of each ordinary edge among the ordinary edges (its row once self-loops are
  // removed); empty when the graph has no self-loops (then it equals edge_id).
  std::vector<std::int64_t> kept_rank;
  // Given self-loops grouped by node (empty when there are none).
  std::vector<std::int64_t> loop_indptr;  // [N + 1]
  std::vector<std::int64_t> loop_edge_id;
  std::int64_t num_self_loops = 0;

  std::int64_t num_ordinary_edges() const noexcept { return num_edges - num_self_loops; }
};


struct GraphParameters {
  std::int64_t in_features = 0;      // F_src
  std::int64_t in_features_dst = 0;  // F_dst (= F_src unless a pair was given)
  // By PyG's names, each as a matrix of its last dimension's width: [H, C] for a [1, H, C]
  // attention vector, [1, n] for a vector [n], [out, in] for a Linear weight.
  std::map<std::string, RowMatrixXf> named;
  // Kernel-ready forms of the edge terms.
  RowMatrixXf edge_att;   // GAT: [edge_dim, H], column h = W_e[h·C:(h+1)·C]ᵀ·att_edge[h]
  RowMatrixXf edge_proj;  // GATv2: W_eᵀ [edge_dim, H·C]
};

}  // namespace ruvector::detail
