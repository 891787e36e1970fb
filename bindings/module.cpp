// The native module: registrations only; each API family lives in its own file.
#include "job_runner.hpp"

PYBIND11_MODULE(_native, m) {
  m.doc() = "ruvector native core: attention mechanisms on SIMD kernels chosen at run time.";
  using namespace ruvector::bindings;
  register_errors(m);
  register_core(m);
  register_types(m);
  register_job_runner(m);
  register_async_channel(m);
  register_dot_product(m);
  register_multi_head(m);
  register_graph(m);
  register_temporal(m);
  register_hierarchical(m);
}
