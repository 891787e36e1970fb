// Prepared calls (jobs) and how they run: one job with the GIL released on the
// calling thread, or many in parallel on the process-wide pool. Every mechanism's `_prepare`
// makes a job (mechanism.hpp); job_runner.cpp runs them synchronously, async_channel.cpp hands
// async ones back to their event loop.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <vector>

#include "common.hpp"

namespace ruvector::bindings {

// One prepared call: arguments converted and validated with the GIL held, `run` computes
// without it (on the calling thread or a pool worker). A Job owns Python references, so it
// is created and destroyed with the GIL held.
struct Job {
  virtual ~Job() = default;
  virtual AttentionOutput run() = 0;
};
using JobPtr = std::unique_ptr<Job>;

// Python handle of a Job (class ruvector._native._Job), what `_prepare` methods return.
struct JobHandle {
  JobPtr job;
};

// Runs one job with the GIL released and converts its output.
py::object run_job(Job& job);

// The jobs of one call. Holding the Python handles (not the caller's list, which the caller
// could change meanwhile) keeps every job, and through it every input buffer, alive.
struct JobList {
  std::vector<py::object> handles;
  std::vector<Job*> jobs;
};

// The jobs of a sequence of _Job handles (GIL held); anything else raises InvalidInput.
JobList jobs_of(const py::sequence& seq);

struct Results {
  std::vector<AttentionOutput> outputs;
  std::vector<std::exception_ptr> errors;
};

// Runs every job, in parallel over items on at most `max_workers` threads (0: the pool);
// called without the GIL. Items not yet started when `cancelled` turns true are skipped.
void run_all(const std::vector<Job*>& jobs, std::size_t max_workers, Results& r,
             const std::atomic<bool>* cancelled = nullptr);

// The outputs as a list of AttentionOutput; the first failed item's error (by index) is raised.
py::list to_python_list(Results& r);

void register_job_runner(py::module_& m);
void register_async_channel(py::module_& m);

}  // namespace ruvector::bindings
