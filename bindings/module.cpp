// The native module: registrations only; each API family lives in its own file.
#include "common.hpp"

PYBIND11_MODULE(_native, m) {
  m.doc() = "ruvector native core: attention mechanisms on SIMD kernels chosen at run time.";
  using namespace ruvector::bindings;
  register_errors(m);
  register_core(m);
  register_types(m);
  register_dot_product(m);
}
