// Kernels of GraphAttention (GAT/GATv2 edge scoring, softmax and aggregation), the `graph`
// part of each ISA's KernelTable (kernels.hpp). The front end (graph.cpp) validates everything,
// runs the linear transforms with the GEMM kernel, then calls these on ranges of target nodes
// in parallel.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ruvector::simd {

// One GAT/GATv2 layer pass over the targets [node_begin, node_end) of a CSR-by-target graph.
// For each target the edges are: its ordinary in-edges, then (when the layer keeps given
// self-loops) its given self-loops, then (add_self_loops) one added self-loop.
struct GatParams {
  std::size_t heads = 0, channels = 0;  // H, C
  bool v2 = false;                      // GATv2 scoring
  bool concat = true;                   // out rows [H·C], else the head mean [C]
  float negative_slope = 0.2f;

  // Graph.
  const std::int64_t* indptr = nullptr;       // [N + 1]
  const std::int64_t* source = nullptr;       // [nnz]
  const std::int64_t* edge_id = nullptr;      // [nnz] row of the given edge (edge features, weights)
  const std::int64_t* loop_indptr = nullptr;  // given self-loops kept (null: none)
  const std::int64_t* loop_edge_id = nullptr;
  bool add_self_loops = true;
  // Targets i < loop_nodes have an added self-loop (bipartite: ids below min(N_src, N_dst)).
  std::size_t loop_nodes = static_cast<std::size_t>(-1);
  // The source row of target i's self-loops (given or added), for i < loop_nodes; null: i.
  const std::int64_t* loop_source = nullptr;

  // Node terms. GAT: x_src = x·Wᵀ [N, ld_src]; alpha_src/alpha_dst [N, H] its per-head scores.
  // GATv2: x_src = x·W_lᵀ + b_l; att [H·C]; the target rows x·W_rᵀ + b_r are computed per
  // task from x [N, ld_x] (in_features columns), w_dst [H·C, in_features] and b_dst (or null),
  // so the layer never holds a second [N, H·C] array.
  const float* x_src = nullptr;
  std::size_t ld_src = 0;
  const float* alpha_src = nullptr;
  const float* alpha_dst = nullptr;
  const float* att = nullptr;
  const float* x = nullptr;
  std::size_t ld_x = 0;
  std::size_t in_features = 0;
  const float* w_dst = nullptr;
  const float* b_dst = nullptr;

  // Edge terms (optional). GAT: edge_alpha [E, H] by edge_id, loop_alpha [N, H] for added
  // self-loops. GATv2: edge_features [E, edge_dim] (row stride ld_ef) by edge_id,
  // loop_features [N, edge_dim], edge_proj = W_eᵀ [edge_dim, H·C].
  const float* edge_alpha = nullptr;
  const float* loop_alpha = nullptr;
  const float* edge_features = nullptr;
  std::size_t ld_ef = 0;
  const float* loop_features = nullptr;
  const float* edge_proj = nullptr;
  std::size_t edge_dim = 0;

  const float* bias = nullptr;  // [out columns] or null
  float* out = nullptr;
  std::size_t ldo = 0;
  const std::int64_t* out_index = nullptr;  // target i's row of out: out_index[i] (null: i)

  // Attention coefficients (null: not wanted). Row of an ordinary edge: out_row[p] (null:
  // edge_id[p]); of a kept given self-loop: its edge id; of node i's added self-loop:
  // loop_row0 + i (i < loop_nodes).
  float* weights = nullptr;
  const std::int64_t* out_row = nullptr;
  std::size_t loop_row0 = 0;
};

// The linear transform of rows [row_begin, row_end): out = x·Wᵀ (+ bias), and for GAT the
// per-head scores of those rows while they are in cache:
//   alpha_src[i, h] = out[i, hC:(h+1)C]·att_src[h], likewise alpha_dst.
// Row i of x is x + rows[i]·ld_x when `rows` is given (the source rows some targets read,
// taken in place: no gathered copy of them), else x + i·ld_x; out and alpha are indexed by i.
struct GatTransform {
  const float* x = nullptr;
  std::size_t ld_x = 0;
  const std::int64_t* rows = nullptr;
  const float* weight = nullptr;  // [H·C, in_features] (torch Linear layout)
  // W as the kernel's GEMM reads it (pack_transform), shared by the tasks of a call; null:
  // each task packs its own.
  const float* packed_weight = nullptr;
  const float* bias = nullptr;    // [H·C] or null
  std::size_t in_features = 0, heads = 0, channels = 0;
  float* out = nullptr;
  std::size_t ld_out = 0;
  const float* att_src = nullptr;  // null: no scores
  const float* att_dst = nullptr;
  float* alpha_src = nullptr;
  float* alpha_dst = nullptr;
};

struct GraphKernels {
  // Floats of the packed weight of a transform, and the packing itself (into that many).
  std::size_t (*transform_packed_size)(const GatTransform& t) noexcept;
  void (*pack_transform)(const GatTransform& t, float* packed) noexcept;
  // Returns false when scratch memory could not be allocated.
  bool (*transform)(const GatTransform& t, std::size_t row_begin, std::size_t row_end) noexcept;
  // Scores, softmax and aggregation for targets [node_begin, node_end). Returns false when
  // scratch memory could not be allocated.
  bool (*gat)(const GatParams& p, std::size_t node_begin, std::size_t node_end) noexcept;
};

}  // namespace ruvector::simd
