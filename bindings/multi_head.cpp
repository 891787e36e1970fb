// multi_head binding. Placeholder until its issue lands.
#include "common.hpp"

namespace ruvector::bindings {

void register_multi_head(py::module_&) {}

}  // namespace ruvector::bindings
