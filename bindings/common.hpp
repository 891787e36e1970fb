// Shared by the binding files: NumPy ⇄ Eigen without copies, config parsing, outputs.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "ruvector/config.hpp"
#include "ruvector/dot_product.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/types.hpp"

namespace ruvector::bindings {

namespace py = pybind11;

// Set by the module's atexit hook (async_channel.cpp): Python is shutting down.
bool python_exiting() noexcept;
void set_python_exiting() noexcept;

// py::gil_scoped_release around a synchronous C++ call, safe for daemon threads at exit. Such a
// thread, still inside the call when Python shuts down, is ended by CPython (3.11-3.13) with
// pthread_exit as it takes the GIL back: a forced unwind, which the implicitly noexcept
// destructor of py::gil_scoped_release turned into std::terminate ("terminate called without
// an active exception", exit status 134; torch's calls do the same). This destructor lets the
// unwind through (pybind11's dispatcher rethrows it), and a thread that comes back once the
// shutdown has begun does not try: it sleeps until the process ends, as CPython 3.14 parks
// such threads itself.
class ReleaseGil {
 public:
  ReleaseGil() noexcept : state_(PyEval_SaveThread()) {}
  ~ReleaseGil() noexcept(false);
  ReleaseGil(const ReleaseGil&) = delete;
  ReleaseGil& operator=(const ReleaseGil&) = delete;

 private:
  PyThreadState* state_;
};

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
// type checks: float64 keeps large values (Unix times) exact enough to subtract. With
// `shift_integers`, an integer array comes back minus its minimum, subtracted in integer
// arithmetic before the conversion (for shift-invariant uses such as timestamps: epoch
// nanoseconds, ~1.7e18, are 256 ns apart in float64, their differences are exact up to 2^53).
py::array_t<double> to_double_vector(py::handle obj, const char* name, const char* shape_hint,
                                     bool shift_integers = false);

// An integer field (Python ints, NumPy integers) in [low, high]: anything else, and a huge
// value, is an InvalidConfigError naming the field rather than pybind11's TypeError.
long long int_field(py::handle value, const char* field, long long low, long long high);

// Whether a Python error raised while reading an argument is the argument's fault (to report
// as InvalidInput / InvalidConfig); KeyboardInterrupt, MemoryError, SystemExit, ... are not and
// pass through unchanged.
bool is_input_error(const py::error_already_set& e);

// The (name, array) pairs of a set_weights mapping, names checked to be strings; a non-mapping,
// an items() that raises or gives anything but pairs is InvalidInput. `what`: the method whose
// output it should look like ("get_weights()").
std::vector<py::tuple> weight_items(py::handle obj, const char* what);

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
// Any array-like as a NumPy array, without a copy where NumPy can view it (ndarrays, buffers,
// __array_interface__, CPU __dlpack__ producers; a tensor on another device raises
// InvalidInput naming `name`). Dtype and rank are the caller's to check.
py::array as_numpy(py::handle obj, const char* name, const char* shape_hint);
// None, str, bytes, dict or a complex scalar: never an array argument.
bool is_non_array(py::handle obj);
// `a` as a C-contiguous array of T (a view when it already is one). When NumPy cannot make the
// copy (out of memory: e.g. a broadcast or zero-stride view of a huge shape) the error names
// the argument, its shape and the bytes the copy needs, instead of pybind11's bare failure.
template <class T>
py::array_t<T> contiguous_as(const py::array& a, const char* name, const char* dtype_name, const char* shape_hint);

// A pickle's state that is not what __getstate__ makes (a corrupt or foreign pickle), as
// InvalidInput naming the class.
inline InvalidInput corrupt_pickle_state(const char* cls, const std::string& why) {
  return InvalidInput(std::string("corrupt ") + cls + " pickle state (" + why +
                      "): pickle the object with this version of ruvector and load it again");
}

// A pickle's __setstate__: `make(state)` with the state checked to be a tuple of `size`
// entries, and a state of the wrong type, shape or contents reported as InvalidInput naming
// the class; errors the class's own constructor raises pass through.
template <class Make>
auto from_pickle_state(const char* cls, const py::object& state_obj, std::size_t size, Make make) {
  const auto corrupt = [&](const std::string& why) { return corrupt_pickle_state(cls, why); };
  if (!py::isinstance<py::tuple>(state_obj))
    throw corrupt("a " + type_name(state_obj) + ", expected a tuple of " + std::to_string(size));
  const auto state = py::reinterpret_borrow<py::tuple>(state_obj);
  if (state.size() != size) throw corrupt(std::to_string(state.size()) + " entries, expected " + std::to_string(size));
  try {
    return make(state);
  } catch (py::cast_error& e) {
    throw corrupt(e.what());
  } catch (py::reference_cast_error& e) {  // None where an object is needed (not a cast_error)
    throw corrupt(e.what()[0] ? e.what() : "None where a value is needed");
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_KeyError) && !e.matches(PyExc_IndexError) && !e.matches(PyExc_TypeError) &&
        !e.matches(PyExc_ValueError))
      throw;
    throw corrupt(e.what());
  }
}

void register_errors(py::module_& m);
void register_core(py::module_& m);
void register_types(py::module_& m);
void register_dot_product(py::module_& m);
void register_multi_head(py::module_& m);
void register_graph(py::module_& m);
void register_temporal(py::module_& m);
void register_hierarchical(py::module_& m);

// A mask argument: None, boolean (True = may attend) or float (additive), 2-D.
struct MaskArray {
  py::array array;
  AttentionMask mask;
};
MaskArray to_mask(py::handle obj, const char* name);

}  // namespace ruvector::bindings

