// Batch and async execution of prepared jobs on the process-wide pool (SPEC §5).
// Every mechanism's `_prepare(...)` returns a _Job; the Python layer (ruvector/_async.py)
// validates all items first, then runs chunks here with the GIL released.
#include <pybind11/functional.h>

#include <exception>
#include <memory>
#include <vector>

#include "common.hpp"
#include "ruvector/thread_pool.hpp"

namespace ruvector::bindings {
namespace {

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

std::vector<Job*> jobs_of(const py::list& handles) {
  std::vector<Job*> jobs;
  jobs.reserve(handles.size());
  for (py::handle h : handles) {
    auto& handle = h.cast<JobHandle&>();
    if (!handle.job) throw std::invalid_argument("a _Job can run once per batch list; prepare it again");
    jobs.push_back(handle.job.get());
  }
  return jobs;
}

struct Results {
  std::vector<AttentionOutput> outputs;
  std::vector<std::exception_ptr> errors;
};

// Runs every job, in parallel over items; called without the GIL.
void run_all(const std::vector<Job*>& jobs, std::size_t max_workers, Results& r) {
  r.outputs.resize(jobs.size());
  r.errors.resize(jobs.size());
  parallel_for(
      jobs.size(),
      [&](std::size_t i) {
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

// The Python exception object for the error being handled (translated as if raised here).
py::object current_python_error() {
  try {
    throw;
  } catch (py::error_already_set& e) {
    return e.value();
  } catch (...) {
    py::detail::try_translate_exceptions();
    py::error_already_set e;
    return e.value();
  }
}

struct AsyncCall {
  py::list handles;      // keeps the jobs (and through them the inputs) alive
  py::function callback;  // callback(results, error) from a pool thread, GIL held
  std::vector<Job*> jobs;
  std::size_t max_workers = 0;
};

}  // namespace

py::object run_job(Job& job) {
  AttentionOutput out;
  {
    // Safe without the GIL: the job converted every argument when it was prepared and only
    // reads the buffers it holds.
    py::gil_scoped_release release;
    out = job.run();
  }
  return to_python(std::move(out));
}

void register_batch(py::module_& m) {
  py::class_<JobHandle>(m, "_Job", "A prepared call (internal): arguments validated, ready to run.")
      .def("run", [](JobHandle& h) {
        if (!h.job) throw std::invalid_argument("this _Job was already consumed");
        return run_job(*h.job);
      });

  m.def(
      "_run_jobs",
      [](const py::list& handles, std::size_t max_workers) {
        const std::vector<Job*> jobs = jobs_of(handles);
        Results r;
        {
          // Safe without the GIL: `handles` (held by the caller) keeps every job alive and
          // jobs touch only buffers they own references to.
          py::gil_scoped_release release;
          run_all(jobs, max_workers, r);
        }
        return to_python_list(r);
      },
      py::arg("jobs"), py::arg("max_workers") = 0);

  m.def(
      "_submit_jobs",
      [](const py::list& handles, std::size_t max_workers, py::function callback) {
        auto call = std::make_shared<AsyncCall>();
        call->handles = handles;
        call->callback = std::move(callback);
        call->jobs = jobs_of(handles);
        call->max_workers = max_workers;
        submit([call]() mutable {
          Results r;
          run_all(call->jobs, call->max_workers, r);
          if (interpreter_finalizing()) {  // the interpreter is going away: nobody awaits; leak
            new std::shared_ptr<AsyncCall>(std::move(call));
            return;
          }
          py::gil_scoped_acquire gil;
          try {
            py::list out = to_python_list(r);
            call->callback(out, py::none());
          } catch (...) {
            try {
              call->callback(py::none(), current_python_error());
            } catch (py::error_already_set& e) {
              e.discard_as_unraisable("ruvector async callback");
            }
          }
          // Drop the Python references while the GIL is held.
          call->handles = py::list();
          call->callback = py::function();
          call.reset();
        });
      },
      py::arg("jobs"), py::arg("max_workers"), py::arg("callback"));
}

}  // namespace ruvector::bindings
