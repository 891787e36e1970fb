#include "ruvector/temporal.hpp"
