#include "ruvector/hierarchical.hpp"
