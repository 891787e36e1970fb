// The process-wide pool. Workers take tasks from one queue; parallel_for hands out indices
// through an atomic counter and the calling thread claims indices too, so a caller never waits
// on a helper that has not started (no deadlock when called from a worker), and only pool
// workers plus the caller are ever busy. Sized by set_num_threads / RUVECTOR_NUM_THREADS,
// default the CPUs this process may run on. No OpenMP anywhere: a forked child gets a new pool.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ruvector/errors.hpp"
#include "ruvector/thread_pool.hpp"

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace ruvector {
namespace {

class Pool;
thread_local const Pool* t_worker_of = nullptr;

class Pool {
 public:
  explicit Pool(std::size_t threads) : size_(threads) {
    workers_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) {
      if (w.get_id() == std::this_thread::get_id())
        w.detach();
      else if (w.joinable())
        w.join();
    }
  }

  std::size_t size() const noexcept { return size_; }

  void push(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    t_worker_of = this;
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping and drained
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::size_t size_;
  std::vector<std::thread> workers_;
  std::deque<std::function<void()>> queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
};

std::size_t default_threads() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<std::size_t>(n);
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

std::mutex g_pool_mutex;
// Never destroyed: at process exit a worker may still be finishing an async call (and be
// waiting for Python's GIL); joining it from a static destructor could hang the exit.
std::shared_ptr<Pool>& g_pool = *new std::shared_ptr<Pool>();
std::size_t g_requested = 0;  // 0: default

#if defined(__unix__) || defined(__APPLE__)
// In a forked child the workers do not exist; forget the pool (without running its
// destructor, whose threads and mutex belong to the parent) and build a new one on demand.
void after_fork_in_child() {
  new (&g_pool_mutex) std::mutex();
  auto* leaked = new std::shared_ptr<Pool>(std::move(g_pool));
  (void)leaked;
  g_pool = nullptr;
}
const bool g_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr, &after_fork_in_child);
  return true;
}();
#endif

std::shared_ptr<Pool> pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = std::make_shared<Pool>(g_requested ? g_requested : default_threads());
  return g_pool;
}

struct ForState {
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::size_t n = 0;
  const std::function<void(std::size_t)>* fn = nullptr;
  std::mutex mutex;
  std::condition_variable cv;
  std::exception_ptr error;
};

void work_on(ForState& s) {
  for (;;) {
    const std::size_t i = s.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= s.n) return;
    try {
      (*s.fn)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (!s.error) s.error = std::current_exception();
    }
    if (s.done.fetch_add(1, std::memory_order_acq_rel) + 1 == s.n) {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.cv.notify_all();
    }
  }
}

}  // namespace

std::size_t get_num_threads() { return pool()->size(); }

void set_num_threads(std::size_t n) {
  if (n < 1) throw InvalidConfig("num_threads must be >= 1, got " + std::to_string(n));
  if (n > 4096) throw InvalidConfig("num_threads must be <= 4096, got " + std::to_string(n));
  std::shared_ptr<Pool> old;
  {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    g_requested = n;
    if (g_pool && g_pool->size() == n) return;
    old = std::move(g_pool);
    g_pool = std::make_shared<Pool>(n);
  }
  // `old` finishes its queued tasks and joins when the last holder lets go.
}

void init_threads_from_env() {
  const char* env = std::getenv("RUVECTOR_NUM_THREADS");
  if (env == nullptr || *env == '\0') return;
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  if (end == env || *end != '\0' || n < 1 || n > 4096)
    throw InvalidConfig(std::string("RUVECTOR_NUM_THREADS=") + env +
                        " is not a thread count: set it to an integer from 1 to 4096, or unset it");
  set_num_threads(static_cast<std::size_t>(n));
}

bool in_pool_worker() noexcept { return t_worker_of != nullptr; }

void submit(std::function<void()> task) { pool()->push(std::move(task)); }

void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn, std::size_t max_workers) {
  if (n == 0) return;
  std::shared_ptr<Pool> p = pool();
  std::size_t threads = std::min(n, p->size());
  if (max_workers > 0) threads = std::min(threads, max_workers);
  if (threads <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto state = std::make_shared<ForState>();
  state->n = n;
  state->fn = &fn;
  // Helpers that start after every index is claimed return at once, so `fn` outliving this
  // call is never touched: they only read `next`.
  for (std::size_t h = 0; h + 1 < threads; ++h) p->push([state] { work_on(*state); });
  work_on(*state);
  {
    std::unique_lock<std::mutex> lock(state->mutex);
    state->cv.wait(lock, [&] { return state->done.load(std::memory_order_acquire) == n; });
  }
  if (state->error) std::rethrow_exception(state->error);
}

}  // namespace ruvector
