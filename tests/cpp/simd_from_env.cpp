// Linked into the C++ test binary: applies RUVECTOR_SIMD before any test runs, so one binary
// tests the mechanisms on the backend the environment names (the kernel tests cover every
// backend regardless). An unknown or unsupported value fails loudly, as the Python import does.
#include <cstdio>
#include <cstdlib>

#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"

namespace {

const bool g_simd_from_env = [] {
  try {
    ruvector::init_simd_from_env();
  } catch (const ruvector::InvalidConfig& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::exit(2);
  }
  return true;
}();

}  // namespace
