// Shared by the binding files: NumPy ⇄ Eigen without copies, config parsing, outputs.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "ruvector/config.hpp"
#include "ruvector/types.hpp"

namespace ruvector::bindings {

namespace py = pybind11;

// A float32, C-contiguous view of a NumPy array. When the caller passed exactly that, `array`
// is the caller's own object (no copy); otherwise it holds the one conversion we made.
struct FloatArray {
  py::array array;
  const float* data = nullptr;
  std::vector<Index> shape;

  Index rows() const { return shape.size() >= 2 ? shape[shape.size() - 2] : 0; }
  Index cols() const { return shape.empty() ? 0 : shape.back(); }
  // The i-th [rows, cols] matrix of a 3-D array, or the matrix of a 2-D one.
  Eigen::Map<const RowMatrixXf> matrix(Index i = 0) const {
    return Eigen::Map<const RowMatrixXf>(data + i * rows() * cols(), rows(), cols());
  }
};

// Converts `obj` to float32 (only when needed) and checks its rank (ndim = -1: any of 2, 3).
// None, strings, dicts, complex, object and ragged input raise InvalidInput naming `name`.
FloatArray to_float_array(py::handle obj, const char* name, int ndim, const char* shape_hint);

// Matrix views kept alive by their arrays.
FloatArray to_matrix(py::handle obj, const char* name, const char* shape_hint);

// A 1-D float array (vector), converted as above.
FloatArray to_vector(py::handle obj, const char* name, const char* shape_hint);

// A 1-D float64 array (timestamps, level weights), converted once when needed, with the same
// type checks: float64 keeps large values (Unix times) exact enough to subtract.
py::array_t<double> to_double_vector(py::handle obj, const char* name, const char* shape_hint);

// The config argument of every constructor: AttentionConfig, dict or None.
AttentionConfig to_config(py::handle obj);

// Takes ownership of `m` (moved to the heap, freed with the array): no copy on the way out.
py::array_t<float> to_numpy(RowMatrixXf&& m);
py::array_t<float> to_numpy(RowMatrixXf&& m, const std::vector<Index>& shape);
py::array_t<std::int64_t> to_numpy(RowMatrixXi64&& m);

// AttentionOutput (Python side): values, weights (or None), metadata dict.
struct PyAttentionOutput {
  py::object values;
  py::object weights;
  py::dict metadata;
};
py::object to_python(AttentionOutput&& out);

// Name of a Python object's type, for error messages.
std::string type_name(py::handle obj);

// The numpy module (imported once, never released).
py::module_& numpy();
// "(3, 4)": an array's shape as NumPy prints it, for error messages.
std::string shape_of(const py::array& a);
// None, str, bytes, dict or a complex scalar: never an array argument.
bool is_non_array(py::handle obj);

void register_errors(py::module_& m);
void register_core(py::module_& m);
void register_types(py::module_& m);
void register_dot_product(py::module_& m);
void register_multi_head(py::module_& m);
void register_graph(py::module_& m);
void register_temporal(py::module_& m);
void register_hierarchical(py::module_& m);

}  // namespace ruvector::bindings

#include "ruvector/dot_product.hpp"

namespace ruvector::bindings {

// A mask argument: None, boolean (True = may attend) or float (additive), 2-D.
struct MaskArray {
  py::array array;
  AttentionMask mask;
};
MaskArray to_mask(py::handle obj, const char* name);

}  // namespace ruvector::bindings

namespace ruvector::bindings {

// One prepared call: arguments converted and validated with the GIL held, `run` computes
// without it (on the calling thread or a pool worker). A Job owns Python references, so it
// is created and destroyed with the GIL held.
struct Job {
  virtual ~Job() = default;
  virtual AttentionOutput run() = 0;
};
using JobPtr = std::unique_ptr<Job>;

// Python handle of a Job (class ruvector._native._Job), what `_prepare` methods return.
struct JobHandle {
  JobPtr job;
};

// Runs one job with the GIL released and converts its output.
py::object run_job(Job& job);

void register_batch(py::module_& m);

}  // namespace ruvector::bindings
