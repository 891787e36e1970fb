#include "scratch.hpp"

#include <new>

namespace ruvector::simd {
namespace {

constexpr std::align_val_t kAlign{64};
constexpr std::size_t kSlots = 4;                       // blocks kept per thread
constexpr std::size_t kMaxKept = std::size_t{4} << 20;  // larger blocks go back to the heap
constexpr std::size_t kGranule = std::size_t{4} << 10;  // sizes rounded to pages

std::size_t rounded(std::size_t bytes) noexcept {
  return (bytes + kGranule - 1) / kGranule * kGranule;
}

struct Cache {
  void* block[kSlots] = {};
  std::size_t size[kSlots] = {};
  ~Cache() {
    for (std::size_t i = 0; i < kSlots; ++i)
      if (block[i]) ::operator delete(block[i], kAlign);
  }
};
thread_local Cache t_cache;

}  // namespace

void* scratch_acquire(std::size_t bytes) noexcept {
  if (bytes > kMaxKept && bytes > (~std::size_t{0}) / 2) return nullptr;  // cannot exist (and would wrap)
  const std::size_t want = rounded(bytes);
  Cache& c = t_cache;
  std::size_t best = kSlots;
  for (std::size_t i = 0; i < kSlots; ++i)
    if (c.block[i] && c.size[i] >= want && (best == kSlots || c.size[i] < c.size[best])) best = i;
  if (best != kSlots) {
    void* p = c.block[best];
    c.block[best] = nullptr;
    return p;
  }
  return ::operator new(want, kAlign, std::nothrow);
}

void scratch_release(void* p, std::size_t bytes) noexcept {
  const std::size_t size = rounded(bytes);
  Cache& c = t_cache;
  if (size <= kMaxKept) {
    // An empty slot, else the smallest kept block if it is smaller than this one.
    std::size_t slot = kSlots;
    for (std::size_t i = 0; i < kSlots && slot == kSlots; ++i)
      if (!c.block[i]) slot = i;
    if (slot == kSlots) {
      std::size_t smallest = 0;
      for (std::size_t i = 1; i < kSlots; ++i)
        if (c.size[i] < c.size[smallest]) smallest = i;
      if (c.size[smallest] < size) {
        ::operator delete(c.block[smallest], kAlign);
        c.block[smallest] = nullptr;
        slot = smallest;
      }
    }
    if (slot != kSlots) {
      c.block[slot] = p;
      c.size[slot] = size;
      return;
    }
  }
  ::operator delete(p, kAlign);
}

}  // namespace ruvector::simd
