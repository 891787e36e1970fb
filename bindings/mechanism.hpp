// What every mechanism's binding shares: the one job type, and def_calls, the
// template that registers compute / _prepare / _prepare_stacked from one argument list.
//
// A mechanism binding writes a `Call`: its converted arguments, with
//   void validate(const Mechanism&) const;        // with the GIL, before any work starts
//   AttentionOutput run(const Mechanism&) const;  // without the GIL, on any thread
// and a `convert(...)` function from the Python arguments to a Call (GIL held). The C++ calls
// into the mechanism are those two methods; everything else here is the same for all of them.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "job_runner.hpp"

namespace ruvector::bindings {

// A call of `Mechanism` on `self` (kept alive by `owner`) with its converted arguments.
template <class Mechanism, class Call>
struct MechanismJob final : Job {
  MechanismJob(py::handle self, Call&& converted)
      : owner(py::reinterpret_borrow<py::object>(self)),
        mechanism(self.cast<const Mechanism&>()),
        call(std::move(converted)) {}

  AttentionOutput run() override { return call.run(mechanism); }

  py::object owner;  // keeps `mechanism` alive while the job exists
  const Mechanism& mechanism;
  Call call;
};

// T, in a parameter its argument does not deduce (so that `nullptr` can be passed).
template <class T>
struct NotDeduced {
  using type = T;
};

// Registers on `cls`, each taking the arguments of `convert` named once by `args` (py::arg,
// py::kw_only, defaults):
//   compute(...)          prepare, then run with the GIL released;
//   _prepare(...)         prepare only: a _Job for the batch and async runners;
//   _prepare_stacked(...) only when `convert_stacked` is not null: the same arguments with
//                         the arrays stacked [B, ...]; it returns one Call per item, sharing
//                         shapes and options, so validating the first validates them all
//                         (each array is converted once, not B times).
template <class Mechanism, class Call, class... Args, class... Extra>
void def_calls(py::class_<Mechanism>& cls, Call (*convert)(Args...),
               typename NotDeduced<std::vector<Call> (*)(Args...)>::type convert_stacked, const Extra&... args) {
  using MechanismJobT = MechanismJob<Mechanism, Call>;
  const auto prepare = [convert](py::handle self, Args... a) -> JobPtr {
    auto job = std::make_unique<MechanismJobT>(self, convert(a...));
    job->call.validate(job->mechanism);
    return job;
  };
  cls.def(
      "compute", [prepare](py::handle self, Args... a) { return run_job(*prepare(self, a...)); }, args...);
  cls.def(
      "_prepare", [prepare](py::handle self, Args... a) { return JobHandle{prepare(self, a...)}; }, args...);
  if (convert_stacked == nullptr) return;
  cls.def(
      "_prepare_stacked",
      [convert_stacked](py::handle self, Args... a) {
        std::vector<Call> calls = convert_stacked(a...);
        py::list jobs(calls.size());
        for (std::size_t i = 0; i < calls.size(); ++i) {
          auto job = std::make_unique<MechanismJobT>(self, std::move(calls[i]));
          if (i == 0) job->call.validate(job->mechanism);  // every item's shapes
          jobs[i] = py::cast(JobHandle{std::move(job)});
        }
        return jobs;
      },
      args...);
}

}  // namespace ruvector::bindings
