// Reading a StateDict (types.hpp) into a layer: the checks and the conversion MultiHeadAttention
// and GraphAttention share once a parameter's name and shape are known to be right.
#pragma once

#include <string>
#include <vector>

#include "messages.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/types.hpp"

namespace ruvector::detail {

// The number of elements of a tensor of shape `dims` (1 for a scalar).
inline Index shape_elements(const std::vector<Index>& dims) {
  Index n = 1;
  for (Index d : dims) n *= d;
  return n;
}

// Throws InvalidInput naming the weight when p.data does not hold exactly the elements p.shape
// says.
inline void check_parameter_data(const std::string& name, const Parameter& p) {
  const Index count = shape_elements(p.shape);
  if (p.data.size() != count)
    throw InvalidInput("weight '" + name + "' holds " + std::to_string(p.data.size()) + " numbers, its shape " +
                       shape_str(p.shape) + " needs " + std::to_string(count));
}

// p's numbers as a layer keeps them: a row-major matrix of the last dimension's width ([1, n]
// for a vector [n], [H, C] for [1, H, C]). p must have passed check_parameter_data.
inline RowMatrixXf parameter_matrix(const Parameter& p) {
  const Index cols = p.shape.empty() ? 1 : p.shape.back();
  const Index rows = p.shape.empty() ? 1 : shape_elements(std::vector<Index>(p.shape.begin(), p.shape.end() - 1));
  return Eigen::Map<const RowMatrixXf>(p.data.data(), rows, cols);
}

}  // namespace ruvector::detail
