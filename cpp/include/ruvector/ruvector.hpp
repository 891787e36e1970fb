// Everything of the C++ API in one include.
#pragma once

#include "ruvector/config.hpp"
#include "ruvector/dot_product.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/graph.hpp"
#include "ruvector/hierarchical.hpp"
#include "ruvector/multi_head.hpp"
#include "ruvector/simd.hpp"
#include "ruvector/temporal.hpp"
#include "ruvector/thread_pool.hpp"
#include "ruvector/types.hpp"
