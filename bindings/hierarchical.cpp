// hierarchical binding. Placeholder until its issue lands.
#include "common.hpp"

namespace ruvector::bindings {

void register_hierarchical(py::module_&) {}

}  // namespace ruvector::bindings
