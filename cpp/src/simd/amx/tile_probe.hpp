// The AMX tiles' own throughput (amx_tile_gflops in ruvector/simd.hpp), measured on operands in
// L1; kernels_avx512.cpp exports it in AMX builds.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "simd/amx/tiles.hpp"

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

namespace amx {

// Tile operands for the speed probes below: 12 tiles of 2^-10 in L1 (A: part·2 + row tile; B:
// 6 + part·2 + column tile).
using ProbeTiles = std::uint16_t[12][kTile];
const ProbeTiles& probe_tiles() noexcept {
  alignas(64) static ProbeTiles tiles;
  static const bool filled = [] {
    for (auto& tile : tiles) std::fill(tile, tile + kTile, static_cast<std::uint16_t>(0x3A80));
    return true;
  }();
  (void)filled;
  return tiles;
}

// product()'s inner step on the probe operands: 16 tile loads and 24 products into tiles 0-3,
// the parts in product()'s order (hi, hi) (hi, mid) (hi, lo) (mid, mid) (mid, hi) (lo, hi).
inline void probe_chunk(const ProbeTiles& t) noexcept {
  const auto load_a = [&](int part) {
    _tile_loadd(4, t[2 * part], 64);
    _tile_loadd(5, t[2 * part + 1], 64);
  };
  const auto load_b = [&](int part) {
    _tile_loadd(6, t[6 + 2 * part], 64);
    _tile_loadd(7, t[6 + 2 * part + 1], 64);
  };
  const auto products = [] {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  };
  load_a(0);
  load_b(0);
  products();
  load_b(1);
  products();
  load_b(2);
  products();
  load_a(1);
  load_b(1);
  products();
  load_b(0);
  products();
  load_a(2);
  products();
}

constexpr double kChunkFlops = 24.0 * 16 * 16 * 32 * 2 / 6;  // float32-equivalent flops of a chunk

// The tiles' throughput on this thread now, in float32-equivalent GFLOP/s of the six-product
// scheme (probe_chunk, operands in L1), measured for about `seconds`. compare.py prints it beside
// the FMA GEMM ceiling: on a shared host another guest on the same physical core can slow the
// tiles ~3× for seconds at a time (measured here: ~380 GFLOP/s free, 95-130 loaded).
double tile_gflops(double seconds) noexcept {
  const ProbeTiles& operands = probe_tiles();
  alignas(64) float sink[256];
  using clock = std::chrono::steady_clock;
  TileScope tiles;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  std::size_t chunks = 0;
  const auto start = clock::now();
  double elapsed = 0.0;
  do {
    for (int i = 0; i < 64; ++i) probe_chunk(operands);
    chunks += 64;
    _tile_stored(0, sink, 64);  // waits for the products so far
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  } while (elapsed < seconds);
  _tile_stored(3, sink, 64);
  return static_cast<double>(chunks) * kChunkFlops / elapsed / 1e9;
}

}  // namespace amx
}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
