// AttentionConfig and AttentionOutput (docs/contract.md §3).
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <utility>

#include "common.hpp"
#include "ruvector/errors.hpp"

namespace ruvector::bindings {
namespace {

// An AttentionOutput made from Python (or a pickle): values an array, weights an array or None,
// metadata a dict or None.
PyAttentionOutput make_output(py::object values, py::object weights, py::object metadata) {
  if (!py::isinstance<py::array>(values))
    throw InvalidInput("AttentionOutput values must be a numpy array, got " + type_name(values));
  if (!weights.is_none() && !py::isinstance<py::array>(weights))
    throw InvalidInput("AttentionOutput weights must be a numpy array or None, got " + type_name(weights));
  if (!metadata.is_none() && !py::isinstance<py::dict>(metadata))
    throw InvalidInput("AttentionOutput metadata must be a dict or None, got " + type_name(metadata));
  // A copy (the caller's dict is left alone) that holds "attention_type" as every output's does:
  // "custom" when the caller gave none.
  py::dict meta = metadata.is_none() ? py::dict() : py::reinterpret_steal<py::dict>(PyDict_Copy(metadata.ptr()));
  if (!meta.contains("attention_type")) meta["attention_type"] = "custom";
  return PyAttentionOutput{std::move(values), std::move(weights), std::move(meta)};
}

const char* const kConfigKeys[] = {"num_heads", "head_dim", "dropout", "use_bias", "scale", "seed"};

py::dict config_dict(const AttentionConfig& c) {
  py::dict d;
  d["num_heads"] = c.num_heads;
  d["head_dim"] = c.head_dim;
  d["dropout"] = c.dropout;
  d["use_bias"] = c.use_bias;
  d["scale"] = c.scale ? py::object(py::float_(*c.scale)) : py::none();
  d["seed"] = c.seed;
  return d;
}

}  // namespace

bool is_input_error(const py::error_already_set& e) {
  return !e.matches(PyExc_KeyboardInterrupt) && !e.matches(PyExc_MemoryError) && !e.matches(PyExc_SystemExit) &&
         !e.matches(PyExc_GeneratorExit) && !e.matches(PyExc_RecursionError);
}

long long int_field(py::handle value, const char* field, long long low, long long high) {
  if (py::isinstance<py::bool_>(value) || !PyIndex_Check(value.ptr()))
    throw InvalidConfig(std::string(field) + " must be an integer, got " + type_name(value));
  PyObject* as_index = PyNumber_Index(value.ptr());
  if (as_index == nullptr) {  // an __index__ that raised: Ctrl-C and MemoryError pass through
    py::error_already_set e;
    if (!is_input_error(e)) throw std::move(e);
    throw InvalidConfig(std::string(field) + " must be an integer, got " + type_name(value));
  }
  py::int_ index = py::reinterpret_steal<py::int_>(as_index);
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0 || v < low || v > high)
    throw InvalidConfig(std::string(field) + " must be in [" + std::to_string(low) + ", " + std::to_string(high) +
                        "], got " + std::string(py::str(index)));
  return v;
}

std::vector<py::tuple> weight_items(py::handle obj, const char* what) {
  if (!py::isinstance<py::dict>(obj) && !py::hasattr(obj, "items"))
    throw InvalidInput(std::string("weights must be a dict of name → array (as ") + what + " gives), got " +
                       type_name(obj));
  std::vector<py::tuple> pairs;
  try {
    for (py::handle item : obj.attr("items")()) {
      if (!py::isinstance<py::tuple>(item) || py::len(item) != 2)
        throw InvalidInput("weights.items() must give (name, array) pairs, got a " + type_name(item));
      auto pair = py::reinterpret_borrow<py::tuple>(item);
      if (!py::isinstance<py::str>(pair[0]))
        throw InvalidInput("weight names must be strings, got " + type_name(pair[0]));
      pairs.push_back(std::move(pair));
    }
  } catch (py::error_already_set& e) {  // items() that raised, or gave no iterable
    if (!is_input_error(e)) throw;
    throw InvalidInput(std::string("weights must be a dict of name → array (as ") + what +
                       " gives): reading its items failed with " + e.what());
  }
  return pairs;
}

namespace {

std::uint64_t seed_field(py::handle value) {
  if (py::isinstance<py::bool_>(value) || !PyIndex_Check(value.ptr()))
    throw InvalidConfig("seed must be an integer, got " + type_name(value));
  PyObject* as_index = PyNumber_Index(value.ptr());
  if (as_index == nullptr) {  // an __index__ that raised: Ctrl-C and MemoryError pass through
    py::error_already_set e;
    if (!is_input_error(e)) throw std::move(e);
    throw InvalidConfig("seed must be an integer, got " + type_name(value));
  }
  py::int_ index = py::reinterpret_steal<py::int_>(as_index);
  if (index < py::int_(0) || index > py::int_(std::numeric_limits<std::uint64_t>::max()))
    throw InvalidConfig("seed must be in [0, 2**64 - 1], got " + std::string(py::str(index)));
  return index.cast<std::uint64_t>();
}

// A real-number field: Python and NumPy reals (not bool, not str).
double real_field(py::handle value, const char* field) {
  if (py::isinstance<py::bool_>(value) || py::isinstance<py::str>(value) || py::isinstance<py::bytes>(value) ||
      PyNumber_Check(value.ptr()) == 0 || PyComplex_Check(value.ptr()))
    throw InvalidConfig(std::string(field) + " must be a real number, got " + type_name(value));
  const double v = PyFloat_AsDouble(value.ptr());
  if (v == -1.0 && PyErr_Occurred()) {  // no __float__, one that raised, or beyond float range
    py::error_already_set e;
    if (!is_input_error(e)) throw std::move(e);
    throw InvalidConfig(std::string(field) + " must be a real number within float range, got " + type_name(value));
  }
  return v;
}

// use_bias: True/False or a NumPy bool.
bool bool_field(py::handle value, const char* field) {
  if (py::isinstance<py::bool_>(value)) return value.cast<bool>();
  if (py::hasattr(value, "ndim") && py::int_(value.attr("ndim")).cast<long>() != 0)
    throw InvalidConfig(std::string(field) + " must be True or False, got an array of shape " +
                        std::string(py::str(value.attr("shape"))));
  if (py::hasattr(value, "dtype") && py::hasattr(value, "item") &&
      py::str(value.attr("dtype")).cast<std::string>() == "bool")
    return value.attr("item")().cast<bool>();
  throw InvalidConfig(std::string(field) + " must be True or False, got " + type_name(value));
}

// The constructor: keyword arguments other than the six fields are refused like a dict's unknown
// keys (a TypeError from the argument parser would not say which keys exist).
AttentionConfig make_config(py::handle num_heads, py::handle head_dim, py::handle dropout, py::handle use_bias,
                            py::handle scale, py::handle seed, const py::kwargs& extra) {
  for (auto item : extra)
    throw InvalidConfig("unknown config key '" + std::string(py::str(item.first)) +
                        "': use num_heads, head_dim, dropout, use_bias, scale, seed");
  AttentionConfig c;
  constexpr long long kIntMax = std::numeric_limits<int>::max();
  c.num_heads = static_cast<int>(int_field(num_heads, "num_heads", 1, kIntMax));
  c.head_dim = static_cast<int>(int_field(head_dim, "head_dim", 1, kIntMax));
  c.dropout = real_field(dropout, "dropout");
  c.use_bias = bool_field(use_bias, "use_bias");
  if (!scale.is_none()) c.scale = real_field(scale, "scale (or None for 1/sqrt(d))");
  c.seed = seed_field(seed);
  c.validate();
  return c;
}

std::string describe_array(py::handle obj) {
  if (obj.is_none()) return "None";
  if (!py::isinstance<py::array>(obj)) return type_name(obj);
  auto a = py::reinterpret_borrow<py::array>(obj);
  std::ostringstream s;
  s << py::str(a.dtype()).cast<std::string>() << "[";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << "]";
  return s.str();
}

}  // namespace

AttentionConfig to_config(py::handle obj) {
  if (obj.is_none()) return AttentionConfig{};
  if (py::isinstance<AttentionConfig>(obj)) {
    AttentionConfig c = obj.cast<AttentionConfig>();
    c.validate();
    return c;
  }
  if (py::isinstance<py::dict>(obj)) {
    auto d = py::reinterpret_borrow<py::dict>(obj);
    for (auto item : d) {
      const std::string key = py::str(item.first);
      bool known = false;
      for (const char* k : kConfigKeys) known = known || key == k;
      if (!known)
        throw InvalidConfig("unknown config key '" + key +
                            "': use num_heads, head_dim, dropout, use_bias, scale, seed");
    }
    py::object cls = py::module_::import("ruvector._native").attr("AttentionConfig");
    return cls(**d).cast<AttentionConfig>();
  }
  throw InvalidConfig("config must be an AttentionConfig, a dict with its keys, or None; got " + type_name(obj));
}

void register_types(py::module_& m) {
  py::class_<AttentionConfig>(m, "AttentionConfig", "Settings shared by every mechanism (docs/contract.md §3).")
      .def(py::init(&make_config), py::arg("num_heads") = 8, py::arg("head_dim") = 64, py::arg("dropout") = 0.1,
           py::arg("use_bias") = true, py::arg("scale") = py::none(), py::arg("seed") = 0)
      .def_readonly("num_heads", &AttentionConfig::num_heads)
      .def_readonly("head_dim", &AttentionConfig::head_dim)
      .def_readonly("dropout", &AttentionConfig::dropout)
      .def_readonly("use_bias", &AttentionConfig::use_bias)
      .def_readonly("scale", &AttentionConfig::scale)
      .def_readonly("seed", &AttentionConfig::seed)
      .def("to_dict", &config_dict, "The config as a dict (the same keys the constructors take).")
      .def("__eq__",
           [](const AttentionConfig& a, py::object b) {
             if (!py::isinstance<AttentionConfig>(b)) return false;
             return config_dict(a).equal(config_dict(b.cast<AttentionConfig>()));
           })
      .def("__hash__", [](const AttentionConfig& a) { return py::hash(py::tuple(config_dict(a).attr("values")())); })
      .def("__repr__",
           [](const AttentionConfig& c) {
             std::ostringstream s;
             s << "AttentionConfig(num_heads=" << c.num_heads << ", head_dim=" << c.head_dim
               << ", dropout=" << py::repr(py::float_(c.dropout)).cast<std::string>()
               << ", use_bias=" << (c.use_bias ? "True" : "False")
               << ", scale=" << (c.scale ? py::repr(py::float_(*c.scale)).cast<std::string>() : std::string("None"))
               << ", seed=" << c.seed << ")";
             return s.str();
           })
      .def(py::pickle([](const AttentionConfig& c) { return config_dict(c); },
                      [](const py::object& state) {
                        if (!py::isinstance<py::dict>(state))
                          throw corrupt_pickle_state("AttentionConfig",
                                                     "a " + type_name(state) + ", expected a dict of its fields");
                        try {
                          return to_config(state);
                        } catch (const InvalidConfig& e) {
                          throw corrupt_pickle_state("AttentionConfig", e.what());
                        } catch (py::error_already_set& e) {  // a field the constructor refused
                          throw corrupt_pickle_state("AttentionConfig", e.what());
                        }
                      }));

  py::class_<PyAttentionOutput>(m, "AttentionOutput",
                                "Result of a compute call: values, weights (or None) and metadata.")
      .def(py::init(&make_output), py::arg("values"), py::arg("weights") = py::none(), py::arg("metadata") = py::none())
      .def_readonly("values", &PyAttentionOutput::values)
      .def_readonly("weights", &PyAttentionOutput::weights)
      .def_readonly("metadata", &PyAttentionOutput::metadata)
      .def("__repr__",
           [](const PyAttentionOutput& o) {
             std::string type = "?";
             if (o.metadata.contains("attention_type")) type = py::str(o.metadata["attention_type"]);
             return "AttentionOutput(attention_type='" + type + "', values=" + describe_array(o.values) +
                    ", weights=" + describe_array(o.weights) + ")";
           })
      .def(py::pickle([](const PyAttentionOutput& o) { return py::make_tuple(o.values, o.weights, o.metadata); },
                      [](const py::object& state) {
                        return from_pickle_state("AttentionOutput", state, 3,
                                                 [](const py::tuple& t) { return make_output(t[0], t[1], t[2]); });
                      }));
}

}  // namespace ruvector::bindings
