// How the per-ISA kernels (see vec.hpp) hand independent blocks of work to the pool.
#pragma once

#include <cstddef>

#include "kernels.hpp"
#include "vec.hpp"

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

// fn(job, b) for every block b, on the pool when `par` allows it.
void run_blocks(const Parallel& par, std::size_t blocks, void* job, void (*fn)(void*, std::size_t)) noexcept {
  if (blocks == 1 || par.for_each == nullptr) {
    for (std::size_t b = 0; b < blocks; ++b) fn(job, b);
  } else {
    par.for_each(par.context, blocks, job, fn);
  }
}

// fn(job, first + b) for the blocks b < blocks (a causal pass skips the query blocks before
// `first`, which see none of its keys); `last_first`: handed out from the last block down (a
// causal pass's blocks cost more the later they are: the costliest first, so no thread is
// left with one of them at the end while the others wait).
void run_blocks_from(const Parallel& par, std::size_t first, std::size_t blocks, void* job,
                     void (*fn)(void*, std::size_t), bool last_first = false) noexcept {
  struct Shifted {
    void* job;
    std::size_t first, blocks;
    bool last_first;
    void (*fn)(void*, std::size_t);
  } shifted{job, first, blocks, last_first, fn};
  run_blocks(par, blocks, &shifted, [](void* s, std::size_t b) noexcept {
    const auto* sh = static_cast<const Shifted*>(s);
    sh->fn(sh->job, sh->first + (sh->last_first ? sh->blocks - 1 - b : b));
  });
}

}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
