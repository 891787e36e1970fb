#include "ruvector/multi_head.hpp"
