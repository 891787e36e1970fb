#include "ruvector/graph.hpp"
