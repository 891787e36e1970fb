// How values are written into error messages, one way everywhere: shapes as "[2, 3]" (NumPy's
// and torch's order, a vector as "[7]") and doubles with all 17 significant digits, so that a
// message shows the very value that was refused.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "ruvector/types.hpp"

namespace ruvector::detail {

inline std::string shape_str(const std::vector<Index>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

inline std::string number_str(double x) {
  std::ostringstream s;
  s.precision(17);
  s << x;
  return s.str();
}

}  // namespace ruvector::detail
