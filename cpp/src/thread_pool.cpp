// The process-wide pool. Workers take tasks from one queue; parallel_for hands out indices
// through an atomic counter and the calling thread claims indices too, so a caller never waits
// on a helper that has not started (no deadlock when called from a worker), and only pool
// workers plus the caller are ever busy. Sized by set_num_threads / RUVECTOR_NUM_THREADS,
// default the CPUs this process may run on. No OpenMP anywhere: a forked child gets a new pool.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "ruvector/errors.hpp"
#include "thread_pool_internal.hpp"

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ruvector {
namespace {

// How long an idle thread keeps polling for work before it sleeps on a condition variable.
// Waking a sleeping thread costs tens of microseconds on a virtual machine (measured here:
// a batch of eight 1×1 items took ~90 µs instead of ~25 µs), which is as long as a small call
// itself; polling a little first lets bursts of small calls (async calls, batches, the helper
// of a split kernel) start at once. Polling never oversubscribes the CPUs: a poller stops as
// soon as more threads are running than the pool has (see Pool::running_).
constexpr std::chrono::microseconds kSpinBeforeSleep{200};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Polls `ready` for up to kSpinBeforeSleep, or until `give_up`; true as soon as it holds.
template <class Ready, class GiveUp>
bool spin_until(Ready ready, GiveUp give_up) {
  const auto start = std::chrono::steady_clock::now();
  for (unsigned i = 1;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if (i % 64 == 0) {
      if (give_up() || std::chrono::steady_clock::now() - start > kSpinBeforeSleep) return ready();
      std::this_thread::yield();
    }
  }
}

class Pool;
thread_local const Pool* t_worker_of = nullptr;
std::size_t default_threads();

class Pool {
 public:
  // Throws InvalidConfig when the system will not start `threads` threads (a pids or thread
  // limit, or an address-space limit too small for their stacks); the threads that did start
  // are stopped and joined first, so nothing refers to the half-made pool.
  explicit Pool(std::size_t threads)
      : size_(threads), busy_limit_(static_cast<std::ptrdiff_t>(std::min(threads, default_threads()))) {
    try {
      workers_.reserve(threads);
      for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
    } catch (const std::exception& e) {
      const std::size_t started = workers_.size();
      stop_and_join();
      throw InvalidConfig("could not start " + std::to_string(threads) + " threads (" + std::to_string(started) +
                          " started, then: " + e.what() +
                          "); the process's thread or memory limits (ulimit -u, ulimit -v, a pids cgroup) "
                          "allow fewer: choose a smaller num_threads");
    }
  }

  ~Pool() { stop_and_join(); }

  std::size_t size() const noexcept { return size_; }

  void push(std::function<void()> task) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(task));
      queued_.fetch_add(1, std::memory_order_release);
      // Polling workers take queued tasks without a system call; wake a sleeper only for
      // the tasks beyond them (a woken worker that finds nothing left costs a CPU for nothing).
      wake = sleepers_ > 0 && static_cast<std::ptrdiff_t>(queue_.size()) > pollers_.load(std::memory_order_acquire);
    }
    if (wake) cv_.notify_one();
  }

  // Threads of this pool's work that are on a CPU: workers not asleep (running a task or
  // polling) plus callers inside parallel_for. Pollers give up while it exceeds the CPUs the
  // pool may use (its size, or fewer CPUs when it was made larger than the machine).
  std::atomic<std::ptrdiff_t> running_{0};

  bool oversubscribed() const noexcept { return running_.load(std::memory_order_relaxed) > busy_limit_; }

 private:
  // Whether this idle worker may poll: pollers leave a CPU to the thread feeding the pool
  // (the caller, the event loop), so at most min(size, CPUs - 1) of them, none on one CPU.
  bool start_polling() noexcept {
    const std::ptrdiff_t cpus = static_cast<std::ptrdiff_t>(default_threads());
    const std::ptrdiff_t cap = std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(size_), cpus - 1);
    std::ptrdiff_t n = pollers_.load(std::memory_order_relaxed);
    while (n < cap)
      if (pollers_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return true;
    return false;
  }

  void run() {
    t_worker_of = this;
    running_.fetch_add(1, std::memory_order_relaxed);
    for (;;) {
      if (queued_.load(std::memory_order_acquire) == 0 && start_polling()) {
        spin_until([this] { return queued_.load(std::memory_order_acquire) > 0 || stopping_.load(); },
                   [this] { return oversubscribed(); });
        pollers_.fetch_sub(1, std::memory_order_relaxed);
      }
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (queue_.empty() && !stop_) {
          ++sleepers_;  // under the lock, so a push that follows sees it and notifies
          running_.fetch_sub(1, std::memory_order_relaxed);
          cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
          running_.fetch_add(1, std::memory_order_relaxed);
          --sleepers_;
        }
        if (queue_.empty()) {
          if (stop_) return;  // stopping and drained
          continue;           // another worker took it
        }
        task = std::move(queue_.front());
        queue_.pop_front();
        queued_.fetch_sub(1, std::memory_order_relaxed);
      }
      task();
    }
  }

  void stop_and_join() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) {
      if (w.get_id() == std::this_thread::get_id())
        w.detach();
      else if (w.joinable())
        w.join();
    }
  }

  std::size_t size_;
  std::ptrdiff_t busy_limit_;
  std::vector<std::thread> workers_;
  std::deque<std::function<void()>> queue_;
  std::atomic<std::size_t> queued_{0};  // queue_.size(), readable without the lock
  std::mutex mutex_;
  std::condition_variable cv_;
  int sleepers_ = 0;  // workers waiting on cv_ (guarded by mutex_)
  std::atomic<std::ptrdiff_t> pollers_{0};
  bool stop_ = false;
  std::atomic<bool> stopping_{false};
};

std::size_t affinity_cpus() {
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

// The CPUs this process may run on, read once (a system call; pools are made rarely, but
// pollers ask often).
std::size_t default_threads() {
  static const std::size_t n = affinity_cpus();
  return n;
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

// A retired pool finishes its queued tasks and joins its workers when the last holder lets go.
// That holder may be one of its own workers (which cannot join itself, and whose pool must
// outlive the task it is running) or a thread holding Python's GIL, which a queued async call
// needs in order to finish (a deadlock). So the join always happens on a short-lived thread.
std::shared_ptr<Pool> make_pool(std::size_t threads) {
  auto made = std::make_unique<Pool>(threads);  // throws InvalidConfig with nothing left running
  return std::shared_ptr<Pool>(made.release(), [](Pool* retired) {
    try {
      std::thread([retired] { delete retired; }).detach();
    } catch (const std::system_error&) {
      // No thread to spare: leak the retired pool (idle workers) rather than risk the hang.
    }
  });
}

std::shared_ptr<Pool> pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool) return g_pool;
  if (g_requested) {
    g_pool = make_pool(g_requested);
    return g_pool;
  }
  // The default size is a wish, not a request: where the system will not start that many
  // threads, a smaller pool works (a forked child under a tighter limit, say). One worker is
  // the least there is; if even that fails the error reaches the caller.
  for (std::size_t n = default_threads();; n = (n + 1) / 2) {
    try {
      g_pool = make_pool(n);
      return g_pool;
    } catch (const InvalidConfig&) {
      if (n == 1) throw;
    }
  }
}

// The helper slots left to one capped region (a parallel_for given max_workers, with everything
// nested inside it, e.g. a batch's items and each item's own parallel kernels). Whoever runs
// part of the region points t_budget at it, so nested calls recruit helpers only with a slot.
struct Budget : std::enable_shared_from_this<Budget> {
  std::atomic<std::ptrdiff_t> free_slots{0};

  bool try_take() noexcept {
    std::ptrdiff_t n = free_slots.load(std::memory_order_relaxed);
    while (n > 0)
      if (free_slots.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel)) return true;
    return false;
  }
  void give_back() noexcept { free_slots.fetch_add(1, std::memory_order_acq_rel); }
};
// Set while this thread runs inside a capped region; the region's owner keeps it alive.
thread_local Budget* t_budget = nullptr;

class BudgetScope {
 public:
  explicit BudgetScope(Budget* b) noexcept : saved_(t_budget) { t_budget = b; }
  ~BudgetScope() { t_budget = saved_; }
  BudgetScope(const BudgetScope&) = delete;
  BudgetScope& operator=(const BudgetScope&) = delete;

 private:
  Budget* saved_;
};

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

std::size_t get_num_threads() {
  return pool()->size();
}

void set_num_threads(std::size_t n) {
  if (n < 1) throw InvalidConfig("num_threads must be >= 1, got " + std::to_string(n));
  if (n > 4096) throw InvalidConfig("num_threads must be <= 4096, got " + std::to_string(n));
  std::shared_ptr<Pool> old;
  {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    if (g_pool && g_pool->size() == n) {
      g_requested = n;
      return;
    }
    // The new pool is made before the old one is let go: when its threads cannot start, the
    // error leaves the previous pool (and setting) as they were.
    std::shared_ptr<Pool> made = make_pool(n);
    g_requested = n;
    old = std::exchange(g_pool, std::move(made));
  }
  // `old` finishes its queued tasks and joins when the last holder lets go (see make_pool).
}

void init_threads_from_env() {
  const char* env = std::getenv("RUVECTOR_NUM_THREADS");
  if (env == nullptr || *env == '\0') return;
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  if (end == env || *end != '\0' || n < 1 || n > 4096)
    throw InvalidConfig(std::string("RUVECTOR_NUM_THREADS=") + env +
                        " is not a thread count: set it to an integer from 1 to 4096, or unset it");
  try {
    set_num_threads(static_cast<std::size_t>(n));
  } catch (const InvalidConfig& e) {  // the system would not start that many threads
    throw InvalidConfig(std::string("RUVECTOR_NUM_THREADS=") + env + ": " + e.what() + ", or unset it");
  }
}

bool in_pool_worker() noexcept {
  return t_worker_of != nullptr;
}

void submit(std::function<void()> task) {
  // An exception escaping a pool thread would end the process (std::terminate): it is caught
  // here and reported on stderr instead; tasks report their own errors (see the header).
  pool()->push([task = std::move(task)]() noexcept {
    try {
      task();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ruvector: a task given to submit() threw and was dropped: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "ruvector: a task given to submit() threw and was dropped\n");
    }
  });
}

void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn, std::size_t max_workers) {
  if (n == 0) return;
  std::shared_ptr<Pool> p = pool();
  std::size_t threads = std::min(n, p->size());
  if (max_workers > 0) threads = std::min(threads, max_workers);
  // A cap binds everything nested inside this call too: the outermost call opens a budget of
  // helper slots (the caller counts as one thread), nested calls draw on the open one. A
  // caller from outside the pool always opens one (cap: the pool size), else it and every
  // pool worker could be busy at once. Pool workers are the pool, uncapped they need none.
  std::shared_ptr<Budget> budget;
  if (t_budget != nullptr) {
    budget = t_budget->shared_from_this();
  } else if (max_workers > 0 || t_worker_of != p.get()) {
    budget = std::make_shared<Budget>();
    const std::size_t cap = max_workers > 0 ? std::min(max_workers, p->size()) : p->size();
    budget->free_slots = static_cast<std::ptrdiff_t>(cap) - 1;
  }
  if (budget) {
    const std::ptrdiff_t slots = std::max<std::ptrdiff_t>(budget->free_slots.load(std::memory_order_relaxed), 0);
    threads = std::min(threads, static_cast<std::size_t>(slots) + 1);
  }
  BudgetScope caller_scope(budget.get());
  // A caller from outside the pool is one more thread on a CPU for this pool's work.
  struct Running {
    Pool* pool;
    explicit Running(Pool* p) : pool(p) {
      if (pool) pool->running_.fetch_add(1, std::memory_order_relaxed);
    }
    ~Running() {
      if (pool) pool->running_.fetch_sub(1, std::memory_order_relaxed);
    }
  } running(t_worker_of == p.get() ? nullptr : p.get());
  if (threads <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto state = std::make_shared<ForState>();
  state->n = n;
  state->fn = &fn;
  // Helpers that start after every index is claimed return at once, so `fn` outliving this
  // call is never touched: they only read `next`. In a capped region a helper works only
  // while it holds a slot of the budget.
  std::exception_ptr push_failed;  // no memory to queue a helper: the ones queued may still run
  try {
    for (std::size_t h = 0; h + 1 < threads; ++h)
      p->push([state, budget] {
        if (state->next.load(std::memory_order_relaxed) >= state->n) return;
        if (!budget) {
          work_on(*state);
          return;
        }
        if (!budget->try_take()) return;
        {
          BudgetScope scope(budget.get());
          work_on(*state);
        }
        budget->give_back();
      });
  } catch (...) {
    push_failed = std::current_exception();
  }
  work_on(*state);  // whatever happened above, `fn` must outlive every helper that starts
  if (!spin_until([&] { return state->done.load(std::memory_order_acquire) == n; },
                  [&] { return p->oversubscribed(); })) {
    std::unique_lock<std::mutex> lock(state->mutex);
    state->cv.wait(lock, [&] { return state->done.load(std::memory_order_acquire) == n; });
  }
  if (state->error) std::rethrow_exception(state->error);
  if (push_failed) std::rethrow_exception(push_failed);
}

}  // namespace ruvector
