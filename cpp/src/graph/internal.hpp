// What the graph sources share and the public header leaves out: the layer's parameters in
// kernel-ready form (graph/parameters.cpp builds them, graph/attention.cpp reads them).
#pragma once

#include <cstdint>

#include "ruvector/graph.hpp"
#include "ruvector/types.hpp"

namespace ruvector {

struct GraphAttention::Parameters {
  std::int64_t in_features = 0;
  GraphWeights named;  // PyG names → [H, C] / [1, n] / [out, in] matrices
  // Kernel-ready forms of the edge terms.
  RowMatrixXf edge_att;   // GAT: [edge_dim, H], column h = W_e[h·C:(h+1)·C]ᵀ·att_edge[h]
  RowMatrixXf edge_proj;  // GATv2: W_eᵀ [edge_dim, H·C]
};

}  // namespace ruvector
