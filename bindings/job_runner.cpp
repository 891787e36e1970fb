// The job runner: runs prepared jobs with the GIL released, one on the calling thread
// (compute) or many in parallel on the process-wide pool (compute_batch), and keeps threads
// that come back from a call during interpreter shutdown out of Python (ReleaseGil).
#include "job_runner.hpp"

#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "ruvector/errors.hpp"
#include "thread_pool_internal.hpp"

namespace ruvector::bindings {

JobList jobs_of(const py::sequence& seq) {
  JobList list;
  const std::size_t n = seq.size();
  list.handles.reserve(n);
  list.jobs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    py::object h = seq[i];
    if (!py::isinstance<JobHandle>(h))
      throw InvalidInput("jobs must be _Job objects returned by a mechanism's _prepare(...), item " +
                         std::to_string(i) + " is " + type_name(h));
    auto& handle = h.cast<JobHandle&>();
    if (!handle.job) throw InvalidInput("item " + std::to_string(i) + " is an empty _Job: prepare it again");
    list.jobs.push_back(handle.job.get());
    list.handles.push_back(std::move(h));
  }
  return list;
}

void run_all(const std::vector<Job*>& jobs, std::size_t max_workers, Results& r,
             const std::atomic<bool>* cancelled) {
  r.outputs.resize(jobs.size());
  r.errors.resize(jobs.size());
  parallel_for(
      jobs.size(),
      [&](std::size_t i) {
        if (cancelled != nullptr && cancelled->load(std::memory_order_relaxed)) return;
        try {
          r.outputs[i] = jobs[i]->run();
        } catch (...) {
          r.errors[i] = std::current_exception();
        }
      },
      max_workers);
}

py::list to_python_list(Results& r) {
  for (auto& e : r.errors)
    if (e) std::rethrow_exception(e);
  py::list out(r.outputs.size());
  for (std::size_t i = 0; i < r.outputs.size(); ++i) out[i] = to_python(std::move(r.outputs[i]));
  return out;
}

namespace {
std::atomic<bool> g_python_exiting{false};
std::atomic<unsigned long> g_main_thread{0};  // threading.main_thread().ident, read at import
}  // namespace

bool python_exiting() noexcept {
  return g_python_exiting.load(std::memory_order_acquire);
}

void set_python_exiting() noexcept {
  g_python_exiting.store(true, std::memory_order_release);
}

ReleaseGil::~ReleaseGil() noexcept(false) {
  // Only once the interpreter finalises, not from ruvector's atexit hook on: atexit handlers
  // registered before `import ruvector` run after that hook and may call ruvector on threads
  // (issue 19). A thread that comes back between the two checks is ended by CPython's
  // pthread_exit, which this destructor lets through.
#if PY_VERSION_HEX >= 0x030D0000
  const bool finalizing = Py_IsFinalizing();
#else
  const bool finalizing = _Py_IsFinalizing();
#endif
  // Never the main thread: it is the one shutting Python down (or running atexit handlers).
  if (finalizing && PyThread_get_thread_ident() != g_main_thread.load(std::memory_order_relaxed))
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  PyEval_RestoreThread(state_);
}

py::object run_job(Job& job) {
  AttentionOutput out;
  {
    // Safe without the GIL: the job converted every argument when it was prepared and only
    // reads the buffers it holds.
    ReleaseGil release;
    out = job.run();
  }
  return to_python(std::move(out));
}

void register_job_runner(py::module_& m) {
  py::class_<JobHandle>(m, "_Job", "A prepared call (internal): arguments validated, ready to run.")
      .def("run", [](JobHandle& h) {
        if (!h.job) throw InvalidInput("this _Job is empty: prepare it again");
        return run_job(*h.job);
      });

  m.def(
      "_run_jobs",
      [](const py::sequence& handles, std::size_t max_workers) {
        const JobList list = jobs_of(handles);
        Results r;
        {
          // Safe without the GIL: `list` holds a reference to every job, and jobs touch only
          // buffers they own references to.
          ReleaseGil release;
          run_all(list.jobs, max_workers, r);
        }
        return to_python_list(r);
      },
      py::arg("jobs"), py::arg("max_workers") = 0,
      "Runs prepared jobs in parallel on the pool (at most max_workers threads, 0 = all) and "
      "returns their outputs; the GIL is released meanwhile.");

  g_main_thread.store(py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>());
}

}  // namespace ruvector::bindings
