// The async completion channel (docs/contract.md §5): compute_async / compute_batch_async hand prepared
// jobs to the process-wide pool and get their outputs back on their event loop's thread
// (through a socket the loop watches) or through a callback, without a worker ever waiting
// for the GIL or racing the interpreter's finalisation.
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "job_runner.hpp"
#include "ruvector/errors.hpp"
#include "thread_pool_internal.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#define RUVECTOR_HAS_COMPLETION_CHANNEL 1
#endif

namespace ruvector::bindings {
namespace {

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// The Python exception object for the error being handled, translated as if raised to Python
// (so ruvector::InvalidInput becomes InvalidInputError, std::bad_alloc MemoryError, ...).
py::object current_python_error() {
  try {
    throw;
  } catch (py::error_already_set& e) {
    return e.value();
  } catch (...) {
    try {
      py::detail::try_translate_exceptions();
    } catch (...) {
    }
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "ruvector: unknown error in an async call");
    py::error_already_set e;
    return e.value();
  }
}

// Pool workers enter Python only to hand a finished async call back. At interpreter exit an
// atexit hook closes this gate and waits for the hand-overs in progress; after that workers
// leave Python alone (the late call's references are leaked), so no worker ever races the
// interpreter's finalisation (which would kill it in the middle of a Python call).
class DeliveryGate {
 public:
  bool enter() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_ || interpreter_finalizing()) return false;
    ++active_;
    return true;
  }
  void leave() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--active_ == 0) cv_.notify_all();
  }
  void close_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    closed_ = true;
    cv_.wait(lock, [this] { return active_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool closed_ = false;
  int active_ = 0;
};

// Never destroyed (workers may use it during static destruction); replaced in a forked child,
// which has no hand-overs in progress whatever the parent's state was.
DeliveryGate* g_gate = new DeliveryGate();

#if defined(__unix__) || defined(__APPLE__)
const bool g_gate_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr, [] { g_gate = new DeliveryGate(); });
  return true;
}();
#endif

class CompletionChannel;
struct AsyncCall;

// Finished calls that nobody awaits any more (cancelled, or their loop is gone). A worker
// cannot drop their Python references (inputs, outputs) without the GIL and must never wait
// for it, so it parks them here and asks the interpreter (Py_AddPendingCall) to release them
// soon on the main thread; every submit releases them too. Never destroyed, like g_gate, and
// replaced in a forked child (a worker may have held the mutex at the fork).
struct Orphans {
  std::mutex mutex;
  std::vector<std::shared_ptr<AsyncCall>> calls;
};
Orphans* g_orphans = new Orphans();

// GIL held: drops the parked calls (their inputs, outputs and channels).
int release_orphans(void* = nullptr) {
  std::vector<std::shared_ptr<AsyncCall>> calls;
  {
    std::lock_guard<std::mutex> lock(g_orphans->mutex);
    calls.swap(g_orphans->calls);
  }
  return 0;  // `calls` goes here, with the GIL
}

// Without the GIL (a pool worker): parks `call` for release_orphans.
void release_later(std::shared_ptr<AsyncCall>&& call) noexcept;

#if defined(__unix__) || defined(__APPLE__)
const bool g_orphans_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr, [] { g_orphans = new Orphans(); });
  return true;
}();
#endif

// One compute_async / compute_batch_async chunk in flight. Shared by the pool task, the
// Python ticket and (once done) a completion channel; its Python references are dropped only
// with the GIL held: by the event loop's thread after the hand-over, by a worker holding the
// GIL (callback path), or by the ticket's deallocation.
struct AsyncCall {
  JobList list;
  Results results;
  std::size_t max_workers = 0;
  std::atomic<bool> cancelled{false};
  // Either `future` (an asyncio.Future of the loop that `channel` wakes) or `callback`
  // (callback(results, error), called on a pool thread with the GIL held).
  std::shared_ptr<CompletionChannel> channel;
  py::object future;
  py::object callback;
  bool single = false;  // compute_async: the future's result is the one output, not a list

  void drop_python_references() {  // GIL held
    list = JobList();
    future = py::object();
    callback = py::object();
  }
};

void release_later(std::shared_ptr<AsyncCall>&& call) noexcept {
  bool first = false;
  try {
    std::lock_guard<std::mutex> lock(g_orphans->mutex);
    first = g_orphans->calls.empty();
    g_orphans->calls.push_back(std::move(call));
  } catch (...) {  // no memory to park it: leak it rather than touch Python without the GIL
    new (std::nothrow) std::shared_ptr<AsyncCall>(std::move(call));
    return;
  }
  // At exit nobody runs pending calls: the parked calls are left to the process's end. When
  // the pending-call queue is full, the next submit releases them.
  if (first && !python_exiting() && !interpreter_finalizing()) Py_AddPendingCall(&release_orphans, nullptr);
}

// Ticket of an async call (ruvector._native._AsyncTicket): cancel() skips the items that have
// not started and drops the result; the work in progress finishes harmlessly.
struct AsyncTicket {
  std::shared_ptr<AsyncCall> call;
};

// The outputs of a finished call, or the error its first failed item raised (GIL held).
std::pair<py::object, py::object> outcome(AsyncCall& call) {
  try {
    if (call.single && call.results.outputs.size() == 1) {
      if (call.results.errors[0]) std::rethrow_exception(call.results.errors[0]);
      return {to_python(std::move(call.results.outputs[0])), py::none()};
    }
    return {to_python_list(call.results), py::none()};
  } catch (...) {
    return {py::none(), current_python_error()};
  }
}

// Callback path: runs on the pool worker, GIL held.
void hand_over(AsyncCall& call) {
  if (call.cancelled.load()) return;  // nobody awaits the result
  auto [results, error] = outcome(call);
  try {
    call.callback(results, error);
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("ruvector async completion callback");
  }
}

// Hands finished calls back to one event loop without the GIL: the worker queues the call and
// writes one byte to a socket pair whose read end the loop watches (only when the queue was
// empty, so a burst of completions wakes the loop once); the loop's reader, drain(), empties
// the queue on the loop's thread, converts the outputs and resolves the futures. Workers never
// wait for the GIL (which the loop's thread may hold for a while), and never run Python (nor
// race its finalisation).
class CompletionChannel {
 public:
  CompletionChannel() {
#if defined(RUVECTOR_HAS_COMPLETION_CHANNEL)
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
      throw ComputationError(std::string("cannot create the async completion socket pair: ") + std::strerror(errno));
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    for (int fd : fds) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
#if defined(SO_NOSIGPIPE)
      const int on = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof(on));
#endif
    }
    owner_ = ::getpid();
#else
    throw ComputationError("async completion channels need POSIX sockets; use the callback path");
#endif
  }
  ~CompletionChannel() {
    close_reader();
#if defined(RUVECTOR_HAS_COMPLETION_CHANNEL)
    if (write_fd_ >= 0) ::close(write_fd_);
#endif
  }
  CompletionChannel(const CompletionChannel&) = delete;
  CompletionChannel& operator=(const CompletionChannel&) = delete;

  // The descriptor the event loop watches.
  int fileno() const { return read_fd_; }

  // When the loop is gone (GIL held): the calls finished meanwhile are dropped, the ones
  // still running are released when they finish. The write end stays open while calls in
  // flight may write to it (until the last of them lets go of the channel), so its number is
  // never reused meanwhile.
  void close_reader() {
#if defined(RUVECTOR_HAS_COMPLETION_CHANNEL)
    if (read_fd_ >= 0) ::close(read_fd_);
#endif
    read_fd_ = -1;
    std::vector<std::shared_ptr<AsyncCall>> done;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      done.swap(done_);
    }
  }

  // On a pool worker, without the GIL. Takes the worker's reference to the call; a call
  // nobody awaits (cancelled, or its loop gone) is released instead of queued.
  void push(std::shared_ptr<AsyncCall>&& call, bool cancelled) noexcept {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!closed_ && !cancelled) {
        done_.push_back(std::move(call));
        wake = !signaled_;
        signaled_ = true;
      }
    }
    if (call) release_later(std::move(call));
    if (wake) signal();
  }

  // The loop's reader callback: on its thread, GIL held.
  void drain() {
#if defined(RUVECTOR_HAS_COMPLETION_CHANNEL)
    char bytes[256];
    // In a forked child that still runs the parent's loop, the socket is the parent's: reading
    // it would take the parent's wake-ups (the child's calls use a channel of their own).
    if (read_fd_ >= 0 && ::getpid() == owner_)
      while (::recv(read_fd_, bytes, sizeof(bytes), 0) == static_cast<ssize_t>(sizeof(bytes))) {
      }
#endif
    std::vector<std::shared_ptr<AsyncCall>> done;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done.swap(done_);
      signaled_ = false;
    }
    for (auto& call : done) {
      resolve(*call);
      call->drop_python_references();
    }
  }

 private:
  void signal() noexcept {
#if defined(RUVECTOR_HAS_COMPLETION_CHANNEL)
    const char byte = 1;
    for (;;) {
#if defined(MSG_NOSIGNAL)
      const auto n = ::send(write_fd_, &byte, 1, MSG_NOSIGNAL);
#else
      const auto n = ::send(write_fd_, &byte, 1, 0);
#endif
      // EAGAIN: the socket is full of wake-ups the loop has not read yet, so it will wake.
      // Anything else (the loop's end is gone) leaves nobody to wake.
      if (n >= 0 || errno != EINTR) return;
    }
#endif
  }

  static void resolve(AsyncCall& call) {
    if (call.cancelled.load() || !call.future) return;
    try {
      if (call.future.attr("done")().cast<bool>()) return;  // cancelled meanwhile
      auto [results, error] = outcome(call);
      if (error.is_none())
        call.future.attr("set_result")(results);
      else
        call.future.attr("set_exception")(error);
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("ruvector async completion");
    }
  }

  std::mutex mutex_;
  std::vector<std::shared_ptr<AsyncCall>> done_;
  bool signaled_ = false;
  bool closed_ = false;
  int read_fd_ = -1;
  int write_fd_ = -1;
#if defined(RUVECTOR_HAS_COMPLETION_CHANNEL)
  pid_t owner_ = 0;
#endif
};

// Runs on a pool worker: computes, then hands the call back (through its channel, or with
// the GIL through its callback). Consumes the worker's reference to the call.
void finish_async_call(std::shared_ptr<AsyncCall> call) {
  try {
    run_all(call->list.jobs, call->max_workers, call->results, &call->cancelled);
  } catch (...) {  // the pool itself failed (no memory for its bookkeeping): the call fails
    call->results.errors.assign(1, std::current_exception());
  }
  if (CompletionChannel* channel = call->channel.get()) {
    // The call keeps its channel alive until the loop drained it; a channel holds no Python
    // object, so this worker may be the one that destroys it.
    const std::shared_ptr<CompletionChannel> keep = call->channel;
    const bool cancelled = call->cancelled.load();
    channel->push(std::move(call), cancelled);
    return;
  }
  if (!g_gate->enter()) {  // the interpreter is exiting: nobody awaits; leak
    new std::shared_ptr<AsyncCall>(std::move(call));
    return;
  }
  {
    py::gil_scoped_acquire gil;
    hand_over(*call);
    call->drop_python_references();
  }
  g_gate->leave();
}

std::shared_ptr<AsyncCall> new_async_call(const py::sequence& handles, std::size_t max_workers) {
  auto call = std::make_shared<AsyncCall>();
  call->list = jobs_of(handles);
  call->max_workers = max_workers;
  return call;
}

AsyncTicket start(std::shared_ptr<AsyncCall> call) {
  release_orphans();
  AsyncTicket ticket{call};
  submit([call = std::move(call)]() mutable { finish_async_call(std::move(call)); });
  return ticket;
}

}  // namespace

void register_async_channel(py::module_& m) {
  py::class_<AsyncTicket>(m, "_AsyncTicket", "An async call in flight (internal).")
      .def("cancel",
           [](AsyncTicket& t) {  // GIL held, as every user of the future and the callback
             t.call->cancelled.store(true);
             // Nobody awaits the result: let the future (and through it the loop) go now.
             t.call->future = py::object();
             t.call->callback = py::object();
           })
      .def_property_readonly("cancelled", [](const AsyncTicket& t) { return t.call->cancelled.load(); });

  m.def(
      "_submit_jobs",
      [](const py::sequence& handles, std::size_t max_workers, py::function callback) {
        auto call = new_async_call(handles, max_workers);
        call->callback = std::move(callback);
        return start(std::move(call));
      },
      py::arg("jobs"), py::arg("max_workers"), py::arg("callback"),
      "Runs prepared jobs on the pool and calls callback(results, error) from a pool thread "
      "(GIL held) when they are done; returns a ticket whose cancel() drops the call.");

  py::class_<CompletionChannel, std::shared_ptr<CompletionChannel>>(
      m, "_CompletionChannel",
      "Hands finished async calls back to one event loop (internal): the loop watches "
      "fileno() and calls drain() when it is readable; workers write to it without the GIL.")
      .def(py::init<>())
      .def("fileno", &CompletionChannel::fileno)
      .def(
          "submit",
          [](const std::shared_ptr<CompletionChannel>& self, const py::sequence& handles, std::size_t max_workers,
             py::object future) {
            auto call = new_async_call(handles, max_workers);
            call->channel = self;
            call->future = std::move(future);
            return start(std::move(call));
          },
          py::arg("jobs"), py::arg("max_workers"), py::arg("future"),
          "Runs prepared jobs on the pool; drain() later resolves `future` with their outputs.")
      .def(
          "submit_one",
          [](const std::shared_ptr<CompletionChannel>& self, py::object handle, py::object future) {
            auto call = std::make_shared<AsyncCall>();
            auto& job = handle.cast<JobHandle&>();
            if (!job.job) throw InvalidInput("this _Job is empty: prepare it again");
            call->list.jobs.push_back(job.job.get());
            call->list.handles.push_back(std::move(handle));
            call->single = true;
            call->channel = self;
            call->future = std::move(future);
            return start(std::move(call));
          },
          py::arg("job"), py::arg("future"),
          "Runs one prepared job (compute_async); drain() later resolves `future` with its output.")
      .def("drain", &CompletionChannel::drain,
           "Resolves the futures of the calls finished so far (on the loop's thread).")
      .def("close_reader", &CompletionChannel::close_reader, "Closes the watched end (the loop is gone).");

  // Closes the hand-over gate before the interpreter finalises (see DeliveryGate), and from
  // then on parks threads that come back from a synchronous call (see ReleaseGil).
  py::module_::import("atexit").attr("register")(py::cpp_function([] {
    set_python_exiting();
    // The hand-overs in progress need the GIL to finish.
    py::gil_scoped_release release;
    g_gate->close_and_wait();
  }));
}

}  // namespace ruvector::bindings
