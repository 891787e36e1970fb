// C++ exceptions → the Python classes of python/ruvector/_errors.py (docs/contract.md §6).
#include "ruvector/errors.hpp"
#include "common.hpp"

namespace ruvector::bindings {
namespace {

py::object error_class(const char* name) {
  return py::module_::import("ruvector._errors").attr(name);
}

void raise(const char* cls_name, const char* message) {
  py::object cls = error_class(cls_name);
  PyErr_SetObject(cls.ptr(), cls(message).ptr());
}

}  // namespace

void register_errors(py::module_&) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const DimensionMismatch& e) {
      py::object cls = error_class("DimensionMismatchError");
      py::object inst = cls(e.what(), e.expected(), e.actual());
      PyErr_SetObject(cls.ptr(), inst.ptr());
    } catch (const InvalidInput& e) {
      raise("InvalidInputError", e.what());
    } catch (const InvalidConfig& e) {
      raise("InvalidConfigError", e.what());
    } catch (const ComputationError& e) {
      raise("ComputationError", e.what());
    } catch (const Error& e) {
      raise("RuVectorError", e.what());
    }
  });
}

}  // namespace ruvector::bindings
