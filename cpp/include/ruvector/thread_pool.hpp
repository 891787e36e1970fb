// The process-wide thread pool every mechanism runs on. One pool serves sync calls, batches
// and async calls, so nested parallelism never starts more busy threads than it has. Its size
// is all a user sets; how work reaches it is internal (cpp/src/thread_pool_internal.hpp).
#pragma once

#include <cstddef>

namespace ruvector {

// Number of threads that compute at once (the caller counts as one).
std::size_t get_num_threads();
// Resize the pool (1 <= n <= 4096). Throws InvalidConfig for n out of range, or when the system
// will not start n threads; the previous pool then stays in use.
void set_num_threads(std::size_t n);
// Reads RUVECTOR_NUM_THREADS when set; throws InvalidConfig naming the variable when invalid.
void init_threads_from_env();

}  // namespace ruvector
