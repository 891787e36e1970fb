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
#include <type_traits>
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

// A benchmark probe's job: what `job` would return, without the arithmetic (Call::unwritten).
template <class Mechanism, class Call>
struct UnwrittenJob final : Job {
  explicit UnwrittenJob(const MechanismJob<Mechanism, Call>& j) : job(j) {}
  AttentionOutput run() override { return job.call.unwritten(job.mechanism, true); }
  const MechanismJob<Mechanism, Call>& job;
};

// Whether Call has `AttentionOutput unwritten(const Mechanism&, bool metadata) const`.
template <class Mechanism, class Call, class = void>
struct HasUnwritten : std::false_type {};
template <class Mechanism, class Call>
struct HasUnwritten<Mechanism, Call,
                    std::void_t<decltype(std::declval<const Call&>().unwritten(std::declval<const Mechanism&>(), true))>>
    : std::true_type {};

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
//                         (each array is converted once, not B times);
//   _probe_parse(...), _probe_output(...), _probe_metadata(...)  only when Call has
//                         `unwritten` (above): benchmark probes, compute stopped before the
//                         arithmetic, with compute's signature (no extra argument: a keyword
//                         takes pybind11's slower path), to measure what a call costs beyond the
//                         arithmetic (bench/compare_dot_product.py). _probe_parse converts and
//                         validates as compute does and returns None; _probe_output also
//                         allocates the output and returns it wrapped as NumPy arrays, (values,
//                         weights or None), unwritten; _probe_metadata returns the
//                         AttentionOutput as compute does (GIL released, metadata built), its
//                         values unwritten.
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
  if constexpr (HasUnwritten<Mechanism, Call>::value) {
    enum class Stage { Parse, Output, Metadata };
    const std::pair<const char*, Stage> probes[] = {
        {"_probe_parse", Stage::Parse}, {"_probe_output", Stage::Output}, {"_probe_metadata", Stage::Metadata}};
    for (const auto& [name, stage] : probes)
      cls.def(
          name,
          [prepare, stage = stage](py::handle self, Args... a) -> py::object {
            const JobPtr job = prepare(self, a...);
            if (stage == Stage::Parse) return py::none();
            const auto& prepared = static_cast<const MechanismJobT&>(*job);
            if (stage == Stage::Metadata) {
              UnwrittenJob<Mechanism, Call> unwritten(prepared);
              return run_job(unwritten);
            }
            AttentionOutput out = prepared.call.unwritten(prepared.mechanism, false);
            py::object values = to_numpy(std::move(out.values));
            if (!out.has_weights()) return py::make_tuple(values, py::none());
            return py::make_tuple(values, to_numpy(std::move(out.weights), out.weights_shape));
          },
          args..., "Benchmark probe (private): compute stopped before the arithmetic; see bindings/mechanism.hpp.");
  }
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
