// Module-level functions of docs/contract.md §2: features, SIMD backend, thread pool.
#include <pybind11/stl.h>

#include <limits>

#include "common.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"
#include "ruvector/thread_pool.hpp"

namespace ruvector::bindings {

namespace {

// A benchmark probe `double probe(double seconds)`: it runs for `seconds` with the GIL released
// (it touches no Python object, and other threads may run Python meanwhile).
template <double (*Probe)(double)>
void def_probe(py::module_& m, const char* name, double default_seconds, const char* doc) {
  m.def(
      name,
      [](double seconds) {
        ReleaseGil release;
        return Probe(seconds);
      },
      py::arg("seconds") = default_seconds, doc);
}

}  // namespace

void register_core(py::module_& m) {
  m.def("get_features", &cpu_features, "CPU SIMD features detected at run time.");
  m.def(
      "get_simd_backend", [] { return std::string(backend_name(simd_backend())); },
      "The kernel set in use: 'avx512', 'avx2', 'neon' or 'scalar'.");
  m.def("set_simd_backend", &set_simd_backend, py::arg("name"),
        "Force a kernel set ('avx512', 'avx2', 'neon', 'scalar'), or 'auto' for detection.");
  m.def("get_num_threads", &get_num_threads, "Size of the process-wide C++ thread pool.");
  m.def(
      "set_num_threads",
      [](py::handle n) {
        set_num_threads(static_cast<std::size_t>(int_field(n, "num_threads", 1, std::numeric_limits<int>::max())));
      },
      py::arg("n"), "Resize the process-wide C++ thread pool (n >= 1).");
  m.def("_init_from_env", [] {
    init_simd_from_env();
    init_threads_from_env();
  });
  m.def("_amx_available", &amx_available, "Whether the avx512 backend can use AMX tiles here.");
  m.def("_amx_enabled", &amx_enabled, "Whether the avx512 backend uses AMX tiles (RUVECTOR_AMX=0 turns it off).");
  m.def("_set_amx_enabled", &set_amx_enabled, py::arg("on"),
        "Turn the AMX tiles on or off (on raises InvalidConfigError where they are not available).");
  def_probe<&amx_tile_gflops>(
      m, "_amx_tile_gflops", 0.002,
      "The AMX tiles' float32-equivalent GFLOP/s on this thread now (0 without AMX); for benchmarks.");
  def_probe<&gemm_gflops>(m, "_gemm_gflops", 0.2,
                          "Our GEMM kernel's GFLOP/s on a 1024³ product on the pool now; for benchmarks.");
  def_probe<&fma_peak_gflops>(m, "_fma_peak_gflops", 0.1,
                              "The FMA units' float32 GFLOP/s on registers, on the pool now; for benchmarks.");
  def_probe<&microkernel_gflops>(
      m, "_microkernel_gflops", 0.1,
      "Our GEMM micro-kernel's GFLOP/s on operands in L1, on the pool now; for benchmarks.");
  def_probe<&exp_per_second>(m, "_exp_per_second", 0.05,
                             "Our exp kernel's exponentials per second, in L1, on the pool now; for benchmarks.");
  m.def("_available_backends", [] {
    std::vector<std::string> names;
    for (Backend b : {Backend::Avx512, Backend::Avx2, Backend::Neon, Backend::Scalar})
      if (backend_supported(b)) names.emplace_back(backend_name(b));
    return names;
  });
}

}  // namespace ruvector::bindings
