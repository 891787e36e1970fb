// Everything of the C++ API in one include.
#pragma once

#include "ruvector/config.hpp"
#include "ruvector/dot_product.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"
#include "ruvector/thread_pool.hpp"
#include "ruvector/types.hpp"
