// Scratch memory for the kernels, reused per thread. A call's packed panels and score tiles
// are freed and allocated again on every call; through malloc each such cycle of a block
// above its trim threshold gave the pages back and faulted them in again (measured: page
// clearing and faults were ~7% of a batch of 256×256 attention calls). Each thread keeps a few
// freed blocks (bounded) and hands them out again. Compiled with baseline flags, shared by
// every ISA's kernels.
#pragma once

#include <cstddef>

namespace ruvector::simd {

// At least `bytes` bytes aligned to 64, from this thread's cache or the heap; null when
// memory is exhausted. Give it back with scratch_release(p, bytes) on the same thread.
void* scratch_acquire(std::size_t bytes) noexcept;
void scratch_release(void* p, std::size_t bytes) noexcept;

// Nothrow array (kernels report allocation failure, they never throw) of a trivial type.
template <class T>
struct Scratch {
  T* ptr = nullptr;
  std::size_t bytes = 0;
  explicit Scratch(std::size_t n) noexcept
      : ptr(n ? static_cast<T*>(scratch_acquire(n * sizeof(T))) : nullptr), bytes(n * sizeof(T)) {}
  ~Scratch() {
    if (ptr) scratch_release(ptr, bytes);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  bool ok(std::size_t n) const noexcept { return n == 0 || ptr != nullptr; }
};

}  // namespace ruvector::simd
