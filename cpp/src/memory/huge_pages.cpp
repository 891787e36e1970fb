// Huge-page backed float scratch (FloatBuffer) and the pool that keeps its large blocks between
// calls. Used by graph attention for its [N, H·C] temporaries, whose rows the edge kernel
// gathers at random.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "memory/memory.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace ruvector::memory {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kPooledStep = std::size_t{64} << 10;  // smaller blocks: malloc's own

// Scratch blocks kept between calls: a fresh page costs the kernel a fault and a clear before
// first use (~1/5 of a large layer call went to zeroing 2 MiB pages; the 4 KiB pages of a
// targets= call's 0.6 MB of per-node scores, freed to the system by malloc after each call,
// ~0.1 ms of its 1 ms), so the blocks of the last calls are reused instead, up to kPoolBytes
// and kPoolBlocks in total (the newest kept first). Blocks of 4 MiB and more are huge-page
// backed, smaller ones come in steps of 64 KiB.
class HugeBlockPool {
 public:
  static HugeBlockPool& instance() {
    static HugeBlockPool* pool = [] {
      auto* p = new HugeBlockPool;  // never destroyed: usable until exit
#if defined(__unix__) || defined(__APPLE__)
      // As the output cache: fork() happens between two uses of the pool, never inside one.
      pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                     [] { instance().mutex_.unlock(); });
#endif
      return p;
    }();
    return *pool;
  }
  // A cached block of at least `bytes` (and not wastefully larger), huge-page backed or not as
  // asked, or null.
  void* take(std::size_t bytes, bool huge, std::size_t& capacity) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t best = blocks_.size();
    for (std::size_t b = 0; b < blocks_.size(); ++b)
      if (blocks_[b].huge == huge && blocks_[b].capacity >= bytes && blocks_[b].capacity / 2 <= bytes &&
          (best == blocks_.size() || blocks_[b].capacity < blocks_[best].capacity))
        best = b;
    if (best == blocks_.size()) return nullptr;
    void* p = blocks_[best].p;
    capacity = blocks_[best].capacity;
    cached_ -= capacity;
    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(best));
    return p;
  }
  void give(void* p, std::size_t capacity, bool huge) noexcept {
    if (capacity > kPoolBytes) {
      std::free(p);
      return;
    }
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (!blocks_.empty() && (cached_ + capacity > kPoolBytes || blocks_.size() >= kPoolBlocks)) {  // drop the oldest
        evicted.push_back(blocks_.front().p);
        cached_ -= blocks_.front().capacity;
        blocks_.erase(blocks_.begin());
      }
      try {
        blocks_.push_back(Block{p, capacity, huge});
        cached_ += capacity;
        p = nullptr;
      } catch (...) {
      }
    }
    for (void* e : evicted) std::free(e);
    std::free(p);
  }

 private:
  static constexpr std::size_t kPoolBytes = std::size_t{128} << 20;  // at most 128 MB kept for reuse
  static constexpr std::size_t kPoolBlocks = 64;                      // in at most this many blocks
  struct Block {
    void* p;
    std::size_t capacity;
    bool huge;  // huge-page aligned and advised
  };
  std::mutex mutex_;
  std::vector<Block> blocks_;  // oldest first
  std::size_t cached_ = 0;
};

}  // namespace

void advise_huge_pages(void* p, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + kHugePage - 1) / kHugePage * kHugePage;
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + bytes) / kHugePage * kHugePage;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // advice only
#else
  (void)p;
  (void)bytes;
#endif
}

FloatBuffer::FloatBuffer(std::size_t n) {
  if (n == 0) return;
  const std::size_t bytes = n * sizeof(float);
  if (bytes >= kPooledStep) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const bool huge = bytes >= 2 * kHugePage;
#else
    const bool huge = false;
#endif
    const std::size_t step = huge ? kHugePage : kPooledStep;
    const std::size_t rounded = (bytes + step - 1) / step * step;
    if (void* cached = HugeBlockPool::instance().take(rounded, huge, capacity_)) {
      ptr_ = static_cast<float*>(cached);
      huge_ = huge;
      return;
    }
    void* p = nullptr;
#if defined(__unix__) || defined(__APPLE__)
    if (posix_memalign(&p, huge ? kHugePage : 64, rounded) != 0) throw std::bad_alloc();
#else
    p = std::malloc(rounded);  // (no huge pages here) malloc's alignment is enough
    if (p == nullptr) throw std::bad_alloc();
#endif
    if (huge) advise_huge_pages(p, rounded);
    ptr_ = static_cast<float*>(p);
    capacity_ = rounded;
    huge_ = huge;
    return;
  }
  ptr_ = static_cast<float*>(std::malloc(bytes));
  if (ptr_ == nullptr) throw std::bad_alloc();
}

FloatBuffer::~FloatBuffer() {
  if (capacity_ > 0)
    HugeBlockPool::instance().give(ptr_, capacity_, huge_);
  else
    std::free(ptr_);
}

}  // namespace ruvector::memory
