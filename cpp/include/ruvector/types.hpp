// Value types shared by every mechanism: row-major float matrices at the edges, the
// AttentionOutput they return and the StateDict that carries a layer's weights.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace ruvector {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixXb = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixXi64 = Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixRef = Eigen::Ref<const RowMatrixXf>;
using Index = Eigen::Index;

// One metadata value: what a NumPy/PyTorch user finds in AttentionOutput.metadata.
using MetaValue =
    std::variant<bool, std::int64_t, double, std::string, std::vector<double>, RowMatrixXf, RowMatrixXi64>;
using Metadata = std::map<std::string, MetaValue>;

struct AttentionOutput {
  RowMatrixXf values;
  // Attention weights, row-major. `weights_shape` gives the logical shape: {Lq, Lk} for
  // most mechanisms, {H, Lq, Lk} for per-head multi-head weights (stored as [H*Lq, Lk]).
  // Empty when the caller asked for no weights.
  RowMatrixXf weights;
  std::vector<Index> weights_shape;
  Metadata metadata;

  bool has_weights() const noexcept { return !weights_shape.empty(); }
};

// One named parameter as torch's state_dict holds it. `shape` is torch's ({n} for a vector,
// {rows, cols} for a matrix, {1, H, C} for a GAT attention vector); `data` holds the numbers
// row-major as a matrix of the last dimension's width ([1, n] for a vector, [H, C] for
// {1, H, C}).
struct Parameter {
  std::vector<Index> shape;
  RowMatrixXf data;
};
// A layer's weights by torch / PyG state_dict name (MultiHeadAttention, GraphAttention).
using StateDict = std::map<std::string, Parameter>;

}  // namespace ruvector
