// The memory runtime every mechanism shares: where large buffers come from, which of them are
// kept for reuse between calls, and how much this process may allocate at all.
//
//   output cache (output_cache.cpp)  output matrices handed back by their owner serve the next
//                                    call of the same size;
//   huge pages   (huge_pages.cpp)    large scratch blocks backed by transparent huge pages and
//                                    kept in a small pool;
//   limits       (limits.cpp)        a request is refused, with a message, when it cannot fit in
//                                    the machine, the cgroup, the rlimits or (Linux) what is free.
//
// The caches are process-wide, never destroyed (outputs may be freed during static destruction)
// and fork-safe: each one's lock is held across fork(), so a child never inherits a half-updated
// list or a mutex held by a thread it does not have.
//
// Not here: the kernels' per-thread scratch blocks live with the kernels (simd/scratch.hpp,
// compiled with baseline flags for every ISA), and the Python bindings keep their own cache of
// converted graphs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ruvector/types.hpp"

namespace ruvector::memory {

// --- output cache -----------------------------------------------------------------------------
// Large output matrices are reused between calls. A freshly mapped page costs the kernel a
// clear on first touch, and far more on a virtual machine that hands freed pages back to its
// host. Mechanisms take their outputs from output_matrix(); whoever frees an output may hand it
// back with recycle_output() (the Python bindings do, when NumPy frees the array), and the next
// call of the same element count reuses it. At most two matrices of 1-128 MB, 256 MB in all, are
// kept, and matrices of 16 KB to 1 MB (a batch's items) up to 64 MB in all, the oldest let go
// first. Throws InvalidInput for a negative size.
RowMatrixXf output_matrix(Index rows, Index cols);
void recycle_output(RowMatrixXf&& m) noexcept;

// --- huge pages -------------------------------------------------------------------------------
// Asks Linux to back the whole 2 MiB pages inside [p, p + bytes) with transparent huge pages,
// before the memory is first touched (advice only; a no-op elsewhere).
void advise_huge_pages(void* p, std::size_t bytes) noexcept;

// An uninitialised float scratch buffer (its users write every element before reading it).
// Buffers of 64 KiB and more come from, and go back to, a pool of the blocks of the last calls
// (at most 64 blocks, 128 MB): a fresh page costs a fault and a clear before first use. Those
// of 4 MiB and more are huge-page backed (with 4 KiB pages nearly every random row gather is
// also a TLB miss). Throws std::bad_alloc.
class FloatBuffer {
 public:
  explicit FloatBuffer(std::size_t n);
  ~FloatBuffer();
  FloatBuffer(const FloatBuffer&) = delete;
  FloatBuffer& operator=(const FloatBuffer&) = delete;
  float* get() const noexcept { return ptr_; }

 private:
  float* ptr_ = nullptr;
  std::size_t capacity_ = 0;  // > 0: a pooled block of that many bytes
  bool huge_ = false;         // the pooled block is huge-page backed
};

// --- limits -----------------------------------------------------------------------------------
// rows·cols floats, or InvalidInput (with `hint` on how to avoid it) when they cannot possibly
// be allocated on this machine now, or when rows·cols overflows. `what` names the buffer.
std::size_t checked_elements(std::int64_t rows, std::int64_t cols, const char* what, const char* hint);

namespace detail {
// Linux: the smallest memory limit (cgroup v2 memory.max, v1 memory.limit_in_bytes) of the
// cgroup named in `proc_cgroup` (as /proc/self/cgroup) and its parents, under the cgroup file
// system mounted at `cgroup_fs`; UINT64_MAX when none is set. Parameters for tests.
std::uint64_t cgroup_memory_limit(const std::string& cgroup_fs, const std::string& proc_cgroup);
}  // namespace detail

}  // namespace ruvector::memory
