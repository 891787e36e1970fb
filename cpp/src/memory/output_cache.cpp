// The cache of output matrices behind output_matrix() / recycle_output() (memory.hpp).
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <utility>

#include "memory/memory.hpp"
#include "ruvector/errors.hpp"
#include "ruvector/types.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace ruvector::memory {
namespace {

// Large outputs: a few, each of 1-128 MB.
constexpr std::size_t kMinBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxBytes = std::size_t{256} << 20;  // kept in all
constexpr std::size_t kMaxOne = std::size_t{128} << 20;    // larger ones go back to the system
// Two: a loop `out = layer.compute(...)` frees call N-2's outputs (values, weights) while
// call N-1's are alive, and call N takes them.
constexpr std::size_t kMaxKept = 2;

// Small outputs (16 KB to 1 MB): many, as a batch makes them. A batch's items are computed on
// pool workers, whose malloc arenas hand freed pages back to the system at once, so every
// batch faulted its outputs in again (measured here: ~670 page faults and 1.0-1.4 ms of system
// time in a 9.5 ms batch of 100 items of 256x64). Outputs smaller than 16 KB stay in pages that
// malloc keeps.
constexpr std::size_t kMinSmallBytes = std::size_t{16} << 10;
constexpr std::size_t kMaxSmallBytes = std::size_t{64} << 20;  // kept in all

std::size_t bytes_of(Index elements) {
  return static_cast<std::size_t>(elements) * sizeof(float);
}

struct Kept {
  std::uint64_t stamp;  // order of recycling: the oldest are let go first
  RowMatrixXf matrix;
};

struct Cache {
  std::mutex mutex;
  std::deque<RowMatrixXf> kept;  // large ones, oldest first
  std::size_t bytes = 0;
  std::map<Index, std::deque<Kept>> small;  // by element count, oldest first in each
  std::size_t small_bytes = 0;
  std::uint64_t next_stamp = 0;

  // Keeps a small matrix (mutex held); may throw std::bad_alloc, keeping nothing then.
  void keep_small(RowMatrixXf&& m) {
    const Index n = m.size();
    auto& same_size = small[n];
    try {
      same_size.push_back(Kept{next_stamp++, std::move(m)});
    } catch (...) {
      if (same_size.empty()) small.erase(n);  // every list in the map holds one at least
      throw;
    }
    small_bytes += bytes_of(n);
    while (small_bytes > kMaxSmallBytes) drop_oldest_small();
  }

  // Lets the oldest small matrix go (there is one).
  void drop_oldest_small() {
    auto oldest = small.begin();
    for (auto it = small.begin(); it != small.end(); ++it)
      if (it->second.front().stamp < oldest->second.front().stamp) oldest = it;
    small_bytes -= bytes_of(oldest->first);
    oldest->second.pop_front();
    if (oldest->second.empty()) small.erase(oldest);
  }
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
  if (rows < 0 || cols < 0)
    throw InvalidInput("output_matrix: rows and cols must be >= 0, got " + std::to_string(rows) + " x " +
                       std::to_string(cols));
  const Index n = rows * cols;
  const std::size_t bytes = bytes_of(n);
  if (bytes >= kMinSmallBytes && bytes < kMinBytes) {
    Cache& c = cache();
    std::unique_lock<std::mutex> lock(c.mutex);
    const auto it = c.small.find(n);
    if (it != c.small.end()) {
      RowMatrixXf m = std::move(it->second.back().matrix);  // the newest: likeliest in cache
      it->second.pop_back();
      if (it->second.empty()) c.small.erase(it);
      c.small_bytes -= bytes;
      lock.unlock();
      m.resize(rows, cols);  // same size: keeps the buffer
      return m;
    }
  } else if (bytes >= kMinBytes) {
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
  if (bytes < kMinSmallBytes || bytes > kMaxOne) return;  // `m` frees itself with its owner
  Cache& c = cache();
  if (bytes < kMinBytes) {
    try {
      std::lock_guard<std::mutex> lock(c.mutex);
      c.keep_small(std::move(m));
    } catch (...) {  // no memory for the bookkeeping: let the matrix go
    }
    return;
  }
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

}  // namespace ruvector::memory
