// The cache of large output matrices behind output_matrix() / recycle_output() (types.hpp).
#include <cstddef>
#include <deque>
#include <mutex>
#include <new>
#include <utility>

#include "ruvector/types.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace ruvector {
namespace {

constexpr std::size_t kMinBytes = std::size_t{1} << 20;    // smaller ones come cheap from malloc
constexpr std::size_t kMaxBytes = std::size_t{256} << 20;  // kept in all
constexpr std::size_t kMaxOne = std::size_t{128} << 20;    // larger ones go back to the system
// Two: a loop `out = layer.compute(...)` frees call N-2's outputs (values, weights) while
// call N-1's are alive, and call N takes them.
constexpr std::size_t kMaxKept = 2;

std::size_t bytes_of(Index elements) {
  return static_cast<std::size_t>(elements) * sizeof(float);
}

struct Cache {
  std::mutex mutex;
  std::deque<RowMatrixXf> kept;  // oldest first
  std::size_t bytes = 0;
};

// Never destroyed: outputs may be freed during static destruction.
Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

#if defined(__unix__) || defined(__APPLE__)
// fork() happens between two uses of the cache, never in the middle of one, so a forked child
// never inherits a half-updated list (or a mutex held by a thread it does not have).
const bool g_atfork_registered = [] {
  pthread_atfork([] { cache().mutex.lock(); }, [] { cache().mutex.unlock(); }, [] { cache().mutex.unlock(); });
  return true;
}();
#endif

}  // namespace

RowMatrixXf output_matrix(Index rows, Index cols) {
  const Index n = rows * cols;
  if (bytes_of(n) >= kMinBytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    for (auto it = c.kept.rbegin(); it != c.kept.rend(); ++it) {
      if (it->size() != n) continue;
      RowMatrixXf m = std::move(*it);
      c.kept.erase(std::next(it).base());
      c.bytes -= bytes_of(n);
      m.resize(rows, cols);  // same size: keeps the buffer
      return m;
    }
  }
  return RowMatrixXf(rows, cols);
}

void recycle_output(RowMatrixXf&& m) noexcept {
  const std::size_t bytes = bytes_of(m.size());
  if (bytes < kMinBytes || bytes > kMaxOne) return;  // `m` frees itself with its owner
  Cache& c = cache();
  try {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.kept.push_back(std::move(m));
    c.bytes += bytes;
    while (c.bytes > kMaxBytes || c.kept.size() > kMaxKept) {
      c.bytes -= bytes_of(c.kept.front().size());
      c.kept.pop_front();
    }
  } catch (...) {  // no memory for the bookkeeping: let the matrix go
  }
}

}  // namespace ruvector
