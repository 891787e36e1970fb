// How work reaches the process-wide pool (ruvector/thread_pool.hpp sets its size): the
// front ends split kernels with parallel_for, the bindings queue async calls with submit.
// Not installed: these are the library's own plumbing.
#pragma once

#include <cstddef>
#include <functional>

#include "ruvector/thread_pool.hpp"

namespace ruvector {

// Runs fn(i) for i in [0, n) on up to `max_workers` threads (0 = all) and returns when all
// are done. The calling thread takes part and helpers are pool tasks, so a call made from
// inside a pool task (a batch inside an async call) only borrows idle workers: the busy
// threads never outnumber the pool. A cap (max_workers > 0) also binds every parallel_for
// nested inside fn: the whole region keeps at most max_workers threads busy. The first
// exception thrown by fn is rethrown here.
void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn, std::size_t max_workers = 0);

// Runs `task` on a pool thread, later. Used by the asynchronous Python calls. The task should
// report its own errors (e.g. through a promise): one that throws is caught, reported on stderr
// and dropped, never allowed to end the process.
void submit(std::function<void()> task);

// True when the calling thread is one of the pool's workers.
bool in_pool_worker() noexcept;

}  // namespace ruvector
