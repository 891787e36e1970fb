// Intel AMX tiles for the avx512 kernels: the float32-through-bfloat16 scheme, the operand
// planes and the tile product that amx/gemm.hpp and amx/flash_attention.hpp are built on.
// Compiled only into the avx512 translation unit built with -mamx-tile -mamx-bf16
// (RUVECTOR_AMX); used only when simd_dispatch.cpp found AMX-BF16 usable and the caller did not
// turn it off.
//
// Accuracy: a tile multiplies bfloat16 numbers (8 significant bits) into float32 sums. Each
// float32 operand x is cut into three bfloat16 parts: hi = x truncated to its top 8 significant
// bits (truncation never rounds up to infinity), mid = r = x - hi rounded to nearest, lo =
// r - mid rounded to nearest; x - (hi + mid + lo) is below 2^-25·|x|. The product of two
// operands is the sum of the six part products hi·hi, hi·mid, mid·hi, hi·lo, mid·mid, lo·hi;
// the dropped mid·lo and lo·mid are below 2^-23 of it and of either sign (mid and lo are
// rounding residuals). Each part product is exact and the tile adds them in float32. The
// results match the float32 FMA path to within a few float32 roundings (the tests hold every
// backend to the same tolerances). A non-finite input would make NaN parts (inf - inf), so
// calls with NaN/Inf inputs take the FMA path, which spreads them as IEEE arithmetic does.
//
// Layouts, in 16-bit units; a tile is 16 rows of 64 bytes (512 units):
//   A planes (left operand, m × depth): three planes, each of (m/16) × (depth/32) tiles; tile
//     (rt, c) at (rt·C + c)·512 holds rows rt·16.. and depth c·32.., row-major.
//   B planes (right operand, depth × n, "VNNI"): three planes of (n/16) × chunks tiles; tile
//     (g, c) at (g·chunks + c)·512, its row i holding for the 16 columns g·16 + j the pairs
//     (B[c·32 + 2i][col], B[c·32 + 2i + 1][col]).
// Padding rows, columns and depth are zeros.
#pragma once

#if !defined(RUVECTOR_AMX)
#error "AMX code: only the avx512 kernels built with the AMX flags (-DRUVECTOR_AMX) include it"
#endif

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "simd/primitives.hpp"
#include "simd/vec.hpp"

namespace ruvector::simd::RUVECTOR_ISA_NS {
namespace {

namespace amx {

constexpr std::size_t kTile = 512;  // 16-bit units in a tile
constexpr std::size_t kRows = 64;   // query rows per task (a multiple of 32)
constexpr std::size_t kPad = 32;    // m, n and depth are padded to multiples of this

inline std::size_t padded(std::size_t n) noexcept {
  return (n + kPad - 1) / kPad * kPad;
}

struct alignas(64) TileConfig {
  std::uint8_t palette_id;
  std::uint8_t start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};

// Tiles 0-3: a 2 × 2 block of 16 × 16 float32 accumulators; 4-5: two A tiles (16 × 32
// bfloat16); 6-7: two B tiles. Loaded by each task (the configuration is per thread and other
// libraries set their own), released at its end.
class TileScope {
 public:
  TileScope() noexcept {
    TileConfig c{};
    c.palette_id = 1;
    for (int t = 0; t < 8; ++t) {
      c.rows[t] = 16;
      c.colsb[t] = 64;
    }
    _tile_loadconfig(&c);
  }
  ~TileScope() { _tile_release(); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

// The three bfloat16 parts of 16 floats (see the top of this file); returns the lanes holding
// NaN or ±inf (whose parts are NaN).
inline __mmask16 split(__m512 x, __m256i& hi, __m256i& mid, __m256i& lo) noexcept {
  const __m512i h = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
  const __m512 r = _mm512_sub_ps(x, _mm512_castsi512_ps(h));  // exact; NaN when x is not finite
  mid = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(r));
  const __m512 m = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(mid), 16));
  lo = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(r, m)));  // r - m exact
  hi = _mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16));
  return _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q);
}

// Up to 16 floats of x (n of them, the rest zeros), times `scale`.
inline __m512 load_part(const float* x, std::size_t n, float scale = 1.0f) noexcept {
  const __mmask16 mask = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
  __m512 v = _mm512_maskz_loadu_ps(mask, x);
  return scale == 1.0f ? v : _mm512_mul_ps(v, _mm512_set1_ps(scale));
}

inline std::size_t part(std::size_t n, std::size_t from) noexcept {  // floats of n left at `from`, ≤ 16
  return n > from ? std::min<std::size_t>(16, n - from) : 0;
}

// Rows [0, m) of x (row stride ldx, `depth` floats each) as A planes of mp rows (a multiple of
// 32) and C = depth_p/32 chunks.
void pack_a(const float* x, std::size_t ldx, std::size_t m, std::size_t depth, std::size_t mp, std::size_t chunks,
            std::uint16_t* planes) noexcept {
  const std::size_t plane = mp / 16 * chunks * kTile;
  for (std::size_t r = 0; r < mp; ++r) {
    const float* row = x + r * ldx;
    for (std::size_t c = 0; c < chunks; ++c)
      for (std::size_t half = 0; half < 2; ++half) {
        const std::size_t col = c * 32 + half * 16;
        const __m512 v = r < m ? load_part(row + col, part(depth, col)) : _mm512_setzero_ps();
        __m256i h, mi, lo;
        split(v, h, mi, lo);
        std::uint16_t* dst = planes + ((r / 16) * chunks + c) * kTile + (r % 16) * 32 + half * 16;
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst), h);
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst + plane), mi);
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 2 * plane), lo);
      }
  }
}

// Interleaves the parts of two depth rows into the 32-bit pairs of a B tile row.
inline __m512i pairs(__m256i even, __m256i odd) noexcept {
  return _mm512_or_si512(_mm512_cvtepu16_epi32(even), _mm512_slli_epi32(_mm512_cvtepu16_epi32(odd), 16));
}

// B planes of a row-major right operand: rows [0, depth) of x (stride ldx, n floats each),
// the values; groups = np/16 column groups, chunks = depth_p/32. One task per chunk.
struct PackB {
  const float* x;
  std::size_t ldx, depth, n, groups, chunks;
  std::uint16_t* planes;
  std::atomic<bool> nonfinite{false};  // x held NaN or ±inf
};

void pack_b_rows_task(void* job, std::size_t c) noexcept {
  PackB& j = *static_cast<PackB*>(job);
  __mmask16 bad = 0;
  const std::size_t plane = j.groups * j.chunks * kTile;
  for (std::size_t g = 0; g < j.groups; ++g)
    for (std::size_t i = 0; i < 16; ++i) {
      const std::size_t k = c * 32 + 2 * i, col = g * 16;
      const std::size_t cols = part(j.n, col);
      const __m512 a = k < j.depth && cols ? load_part(j.x + k * j.ldx + col, cols) : _mm512_setzero_ps();
      const __m512 b = k + 1 < j.depth && cols ? load_part(j.x + (k + 1) * j.ldx + col, cols) : _mm512_setzero_ps();
      __m256i ah, am, al, bh, bm, bl;
      bad |= split(a, ah, am, al);
      bad |= split(b, bh, bm, bl);
      std::uint16_t* dst = j.planes + (g * j.chunks + c) * kTile + i * 32;
      _mm512_store_si512(dst, pairs(ah, bh));
      _mm512_store_si512(dst + plane, pairs(am, bm));
      _mm512_store_si512(dst + 2 * plane, pairs(al, bl));
    }
  if (bad) j.nonfinite.store(true, std::memory_order_relaxed);
}

// Transposes 16 × 16 32-bit elements: c[i] lane n = r[n] lane i.
inline void transpose16(const __m512i r[16], __m512i c[16]) noexcept {
  __m512i t[16], u[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 4; ++k) {  // u[4k + j], 128-bit lane L: column 4L + j of rows 4k..4k+3
    u[4 * k] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
    u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
    u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
    u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i v01 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44), v23 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
    const __m512i w01 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
    const __m512i w23 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
    c[j] = _mm512_shuffle_i32x4(v01, w01, 0x88);
    c[4 + j] = _mm512_shuffle_i32x4(v01, w01, 0xDD);
    c[8 + j] = _mm512_shuffle_i32x4(v23, w23, 0x88);
    c[12 + j] = _mm512_shuffle_i32x4(v23, w23, 0xDD);
  }
}

// B planes of a transposed right operand: B = scale·xᵀ for x holding n rows (the keys, stride
// ldx) of `depth` floats; groups = np/16, chunks = depth_p/32. One task per group of 16 rows:
// each row's 32-float chunk gives 16 pairs per plane, and a tile row takes pair i of all 16.
struct PackBt {
  const float* x;
  std::size_t ldx, depth, n, groups, chunks;
  float scale;
  std::uint16_t* planes;
  std::atomic<bool> nonfinite{false};  // scale·x held NaN or ±inf
};

void pack_b_transposed_task(void* job, std::size_t g) noexcept {
  PackBt& j = *static_cast<PackBt*>(job);
  __mmask16 bad = 0;
  const std::size_t plane = j.groups * j.chunks * kTile;
  for (std::size_t c = 0; c < j.chunks; ++c) {
    __m512i rows[3][16], cols[16];  // [plane][row of x]: its 16 pairs of this chunk
    for (std::size_t n = 0; n < 16; ++n) {
      const std::size_t key = g * 16 + n, col = c * 32;
      __m512 first = _mm512_setzero_ps(), second = _mm512_setzero_ps();
      if (key < j.n) {
        const float* row = j.x + key * j.ldx + col;
        first = load_part(row, part(j.depth, col), j.scale);
        second = load_part(row + 16, part(j.depth, col + 16), j.scale);
      }
      __m256i h0, m0, l0, h1, m1, l1;  // consecutive bfloat16: pairs (2i, 2i + 1) as 32 bits
      bad |= split(first, h0, m0, l0);
      bad |= split(second, h1, m1, l1);
      rows[0][n] = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
      rows[1][n] = _mm512_inserti64x4(_mm512_castsi256_si512(m0), m1, 1);
      rows[2][n] = _mm512_inserti64x4(_mm512_castsi256_si512(l0), l1, 1);
    }
    std::uint16_t* tile = j.planes + (g * j.chunks + c) * kTile;
    for (int pl = 0; pl < 3; ++pl) {
      transpose16(rows[pl], cols);
      for (std::size_t i = 0; i < 16; ++i) _mm512_store_si512(tile + pl * plane + i * 32, cols[i]);
    }
  }
  if (bad) j.nonfinite.store(true, std::memory_order_relaxed);
}

// acc[mp × np] (row stride ldacc) = (or += when `accumulate`) A · B over `chunks` depth chunks:
// A planes of mp rows, B planes with b_chunks chunks per column group, read from column group
// g0 and chunk c0 on.
void product(const std::uint16_t* a, std::size_t mp, std::size_t chunks, const std::uint16_t* b, std::size_t b_groups,
             std::size_t b_chunks, std::size_t g0, std::size_t c0, std::size_t np, float* acc, std::size_t ldacc,
             bool accumulate) noexcept {
  const std::size_t a_plane = mp / 16 * chunks * kTile, b_plane = b_groups * b_chunks * kTile;
  const std::size_t stride = ldacc * sizeof(float);
  for (std::size_t rt = 0; rt < mp / 16; rt += 2)
    for (std::size_t g = 0; g < np / 16; g += 2) {
      float* c = acc + rt * 16 * ldacc + g * 16;
      if (accumulate) {
        _tile_loadd(0, c, stride);
        _tile_loadd(1, c + 16, stride);
        _tile_loadd(2, c + 16 * ldacc, stride);
        _tile_loadd(3, c + 16 * ldacc + 16, stride);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      for (std::size_t kc = 0; kc < chunks; ++kc) {
        const std::uint16_t* at = a + (rt * chunks + kc) * kTile;
        const std::uint16_t* bt = b + ((g0 + g) * b_chunks + c0 + kc) * kTile;
#define RUVECTOR_AMX_LOAD_A(pl)            \
  _tile_loadd(4, at + (pl) * a_plane, 64); \
  _tile_loadd(5, at + (pl) * a_plane + chunks * kTile, 64);
#define RUVECTOR_AMX_LOAD_B(pl)            \
  _tile_loadd(6, bt + (pl) * b_plane, 64); \
  _tile_loadd(7, bt + (pl) * b_plane + b_chunks * kTile, 64);
#define RUVECTOR_AMX_PRODUCTS \
  _tile_dpbf16ps(0, 4, 6);    \
  _tile_dpbf16ps(1, 4, 7);    \
  _tile_dpbf16ps(2, 5, 6);    \
  _tile_dpbf16ps(3, 5, 7);
        // (hi, hi) (hi, mid) (hi, lo) (mid, mid) (mid, hi) (lo, hi): 16 tile loads for 24 products
        RUVECTOR_AMX_LOAD_A(0)
        RUVECTOR_AMX_LOAD_B(0)
        RUVECTOR_AMX_PRODUCTS
        RUVECTOR_AMX_LOAD_B(1)
        RUVECTOR_AMX_PRODUCTS
        RUVECTOR_AMX_LOAD_B(2)
        RUVECTOR_AMX_PRODUCTS
        RUVECTOR_AMX_LOAD_A(1)
        RUVECTOR_AMX_LOAD_B(1)
        RUVECTOR_AMX_PRODUCTS
        RUVECTOR_AMX_LOAD_B(0)
        RUVECTOR_AMX_PRODUCTS
        RUVECTOR_AMX_LOAD_A(2)
        RUVECTOR_AMX_PRODUCTS
#undef RUVECTOR_AMX_LOAD_A
#undef RUVECTOR_AMX_LOAD_B
#undef RUVECTOR_AMX_PRODUCTS
      }
      _tile_stored(0, c, stride);
      _tile_stored(1, c + 16, stride);
      _tile_stored(2, c + 16 * ldacc, stride);
      _tile_stored(3, c + 16 * ldacc + 16, stride);
    }
}

// Rows [0, rows) of x (stride ld, n floats each) hold no NaN or ±inf.
bool finite_rows(const float* x, std::size_t rows, std::size_t n, std::size_t ld) noexcept {
  if (ld == n) return all_finite_kernel(x, rows * n);  // one contiguous block
  for (std::size_t r = 0; r < rows; ++r)
    if (!all_finite_kernel(x + r * ld, n)) return false;
  return true;
}

}  // namespace amx
}  // namespace
}  // namespace ruvector::simd::RUVECTOR_ISA_NS
