// NumPy input and output. The fast path takes a float32 C-contiguous array as it is; anything
// else array-like and real is converted once (documented in the README).
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <sstream>

#include "common.hpp"
#include "memory/memory.hpp"
#include "ruvector/errors.hpp"

namespace ruvector::bindings {

py::module_& numpy() {
  // Leaked on purpose: a static py::object would be released after the interpreter is gone.
  static py::module_* np = new py::module_(py::module_::import("numpy"));
  return *np;
}

std::string shape_of(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

bool is_non_array(py::handle obj) {
  return obj.is_none() || py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) ||
         py::isinstance<py::dict>(obj) || PyComplex_Check(obj.ptr());
}

namespace {

bool is_plain_float32(py::handle obj) {
  if (!py::isinstance<py::array_t<float>>(obj)) return false;
  auto a = py::reinterpret_borrow<py::array>(obj);
  return (a.flags() & py::array::c_style) && (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_);
}

}  // namespace

// Any array-like as a NumPy array, without a copy where NumPy can view it. ndarrays, buffer
// and __array_interface__ objects go to numpy.asarray; __dlpack__ producers (torch tensors,
// JAX/CuPy arrays, ...) are checked to be on the CPU and viewed with numpy.from_dlpack. A torch
// tensor that requires grad is read as .detach() would give it (the same memory): serving
// reads values, it never differentiates, and torch's own __dlpack__ refuses such tensors.
py::array as_numpy(py::handle obj, const char* name, const char* shape_hint) {
  if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
  try {
    py::object source = py::reinterpret_borrow<py::object>(obj);
    if (py::hasattr(source, "__dlpack_device__") && py::hasattr(source, "__dlpack__")) {
      const py::tuple device = source.attr("__dlpack_device__")();
      constexpr int kDLCPU = 1;
      if (device.size() < 1 || device[0].cast<int>() != kDLCPU) {
        std::string where = py::hasattr(source, "device") ? std::string(py::str(source.attr("device")))
                                                          : "DLPack device " + std::string(py::str(device));
        throw InvalidInput(std::string(name) + " is on " + where +
                           "; ruvector computes on the CPU: move it there first (e.g. tensor.cpu())");
      }
      if (py::hasattr(source, "requires_grad") && py::hasattr(source, "detach") &&
          py::bool_(source.attr("requires_grad")))
        source = source.attr("detach")();
      try {
        return py::reinterpret_borrow<py::array>(numpy().attr("from_dlpack")(source));
      } catch (py::error_already_set& e) {
        // a layout DLPack cannot export (e.g. a torch tensor with negative strides or the
        // conjugate bit): NumPy's own conversion below copies it
        if (!e.matches(PyExc_BufferError) && !e.matches(PyExc_TypeError) && !e.matches(PyExc_RuntimeError)) throw;
      }
    }
    return py::reinterpret_borrow<py::array>(numpy().attr("asarray")(source));
  } catch (py::error_already_set& e) {
    // KeyboardInterrupt, MemoryError and other BaseExceptions that are not about the input pass
    if (!e.matches(PyExc_Exception) || e.matches(PyExc_MemoryError)) throw;
    throw InvalidInput(std::string(name) + " could not be read as an array " + shape_hint +
                       " (ragged nested lists?): " + e.what());
  }
}

template <class T>
py::array_t<T> contiguous_as(const py::array& a, const char* name, const char* dtype_name, const char* shape_hint) {
  auto arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
  if (arr) return arr;
  double bytes = static_cast<double>(sizeof(T));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) bytes *= static_cast<double>(a.shape(i));
  std::ostringstream s;
  s << name << " of shape " << shape_of(a) << " and dtype " << std::string(py::str(a.dtype()))
    << " could not be converted to a contiguous " << dtype_name << " array " << shape_hint << ": that copy needs "
    << bytes / (1024.0 * 1024.0) << " MB; pass a smaller input (broadcast and zero-stride views are copied in full)";
  throw InvalidInput(s.str());
}
template py::array_t<float> contiguous_as<float>(const py::array&, const char*, const char*, const char*);
template py::array_t<bool> contiguous_as<bool>(const py::array&, const char*, const char*, const char*);
template py::array_t<double> contiguous_as<double>(const py::array&, const char*, const char*, const char*);
template py::array_t<std::int64_t> contiguous_as<std::int64_t>(const py::array&, const char*, const char*, const char*);
template py::array_t<std::uint64_t> contiguous_as<std::uint64_t>(const py::array&, const char*, const char*,
                                                                 const char*);

std::string type_name(py::handle obj) {
  return py::str(py::type::handle_of(obj).attr("__name__"));
}

FloatArray to_float_array(py::handle obj, const char* name, int ndim, const char* shape_hint) {
  py::array arr;
  if (is_plain_float32(obj)) {
    arr = py::reinterpret_borrow<py::array>(obj);
  } else {
    if (is_non_array(obj))
      throw InvalidInput(std::string(name) + " must be a float array " + shape_hint + ", got " + type_name(obj));
    py::array a = as_numpy(obj, name, shape_hint);
    const char kind = a.dtype().kind();
    if (kind == 'c')
      throw InvalidInput(std::string(name) + " is complex; pass real values (e.g. x.real) as a float array " +
                         shape_hint);
    if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
      throw InvalidInput(std::string(name) + " must hold real numbers " + shape_hint + ", got dtype " +
                         std::string(py::str(a.dtype())) + (kind == 'O' ? " (ragged or mixed nested sequences?)" : ""));
    arr = contiguous_as<float>(a, name, "float32", shape_hint);
  }
  const int nd = static_cast<int>(arr.ndim());
  const bool rank_ok = ndim < 0 ? (nd == 2 || nd == 3) : nd == ndim;
  if (!rank_ok)
    throw DimensionMismatch(std::string(name) + " must be " + (ndim < 0 ? "2-D or 3-D" : std::to_string(ndim) + "-D") +
                                " " + shape_hint + ", got a " + std::to_string(nd) + "-D array of shape " +
                                shape_of(arr),
                            ndim < 0 ? 2 : ndim, nd);
  FloatArray out;
  out.data = static_cast<const float*>(arr.data());
  out.shape.assign(arr.shape(), arr.shape() + nd);
  out.array = std::move(arr);
  return out;
}

FloatArray to_matrix(py::handle obj, const char* name, const char* shape_hint) {
  return to_float_array(obj, name, 2, shape_hint);
}

FloatArray to_vector(py::handle obj, const char* name, const char* shape_hint) {
  return to_float_array(obj, name, 1, shape_hint);
}

py::array_t<double> to_double_vector(py::handle obj, const char* name, const char* shape_hint, bool shift_integers) {
  if (is_non_array(obj))
    throw InvalidInput(std::string(name) + " must be a float array " + shape_hint + ", got " + type_name(obj));
  py::array a = as_numpy(obj, name, shape_hint);
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    throw InvalidInput(std::string(name) + " must hold real numbers " + shape_hint + ", got dtype " +
                       std::string(py::str(a.dtype())));
  if (a.ndim() != 1)
    throw DimensionMismatch(std::string(name) + " must be 1-D " + shape_hint + ", got a " + std::to_string(a.ndim()) +
                                "-D array of shape " + shape_of(a),
                            1, a.ndim());
  if (shift_integers && (kind == 'i' || kind == 'u') && a.size() > 0) {
    // x - min as unsigned 64-bit: exact for any int64 or uint64 pair with x >= min
    const auto shifted = [&](auto values) {
      const auto* x = values.data();
      const auto n = static_cast<std::size_t>(values.size());
      const auto lo = *std::min_element(x, x + n);
      py::array_t<double> out(static_cast<py::ssize_t>(n));
      double* dst = out.mutable_data();
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = static_cast<double>(static_cast<std::uint64_t>(x[i]) - static_cast<std::uint64_t>(lo));
      return out;
    };
    if (kind == 'u') return shifted(contiguous_as<std::uint64_t>(a, name, "uint64", shape_hint));
    return shifted(contiguous_as<std::int64_t>(a, name, "int64", shape_hint));
  }
  return contiguous_as<double>(a, name, "float64", shape_hint);
}

py::array_t<float> to_numpy(RowMatrixXf&& m, const std::vector<Index>& shape) {
  auto* owned = new RowMatrixXf(std::move(m));
  py::capsule free_when_done(owned, [](void* p) {
    auto* matrix = static_cast<RowMatrixXf*>(p);
    memory::recycle_output(std::move(*matrix));  // large buffers serve the next call of that size
    delete matrix;
  });
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  std::vector<py::ssize_t> strides(dims.size());
  py::ssize_t stride = sizeof(float);
  for (std::size_t i = dims.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= dims[i];
  }
  return py::array_t<float>(dims, strides, owned->data(), free_when_done);
}

py::array_t<float> to_numpy(RowMatrixXf&& m) {
  const std::vector<Index> shape{m.rows(), m.cols()};
  return to_numpy(std::move(m), shape);
}

py::array_t<std::int64_t> to_numpy(RowMatrixXi64&& m) {
  auto* owned = new RowMatrixXi64(std::move(m));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<RowMatrixXi64*>(p); });
  return py::array_t<std::int64_t>({owned->rows(), owned->cols()}, owned->data(), free_when_done);
}

namespace {
struct MetaToPython {
  py::object operator()(bool v) const { return py::bool_(v); }
  py::object operator()(std::int64_t v) const { return py::int_(v); }
  py::object operator()(double v) const { return py::float_(v); }
  py::object operator()(const std::string& v) const { return py::str(v); }
  py::object operator()(const std::vector<double>& v) const { return py::cast(v); }
  py::object operator()(RowMatrixXf& v) const { return to_numpy(std::move(v)); }
  py::object operator()(RowMatrixXi64& v) const { return to_numpy(std::move(v)); }
};
}  // namespace

py::object to_python(AttentionOutput&& out) {
  auto result = std::make_unique<PyAttentionOutput>();
  result->values = to_numpy(std::move(out.values));
  result->weights = out.has_weights() ? py::object(to_numpy(std::move(out.weights), out.weights_shape)) : py::none();
  for (auto& [key, value] : out.metadata) result->metadata[py::str(key)] = std::visit(MetaToPython{}, value);
  return py::cast(std::move(result));
}

}  // namespace ruvector::bindings

namespace ruvector::bindings {

MaskArray to_mask(py::handle obj, const char* name) {
  MaskArray out;
  if (obj.is_none()) return out;
  if (py::isinstance<py::str>(obj) || py::isinstance<py::dict>(obj))
    throw InvalidInput(std::string(name) + " must be a boolean or float array [Lq, Lk], got " + type_name(obj));
  py::array a = as_numpy(obj, name, "[Lq, Lk]");
  if (a.ndim() != 2)
    throw DimensionMismatch(std::string(name) + " must be 2-D [Lq, Lk], got a " + std::to_string(a.ndim()) +
                                "-D array of shape " + shape_of(a),
                            2, a.ndim());
  const char kind = a.dtype().kind();
  if (kind == 'b') {
    out.array = contiguous_as<bool>(a, name, "bool", "[Lq, Lk]");
    out.mask.kind = AttentionMask::Kind::Boolean;
    out.mask.boolean = static_cast<const std::uint8_t*>(out.array.data());
  } else if (kind == 'f') {
    out.array = contiguous_as<float>(a, name, "float32", "[Lq, Lk]");
    out.mask.kind = AttentionMask::Kind::Additive;
    out.mask.additive = static_cast<const float*>(out.array.data());
  } else {
    throw InvalidInput(std::string(name) +
                       " must be boolean (True = may attend) or float (added to the scores), got dtype " +
                       std::string(py::str(a.dtype())) + "; use mask.astype(bool) for a 0/1 mask");
  }
  out.mask.rows = a.shape(0);
  out.mask.cols = a.shape(1);
  out.mask.stride = a.shape(1);
  return out;
}

}  // namespace ruvector::bindings
