// The streaming attention on Intel AMX tiles, part of the avx512 kernels (kernels_impl.hpp
// includes this inside its ISA namespace when RUVECTOR_AMX is defined, i.e. for the avx512
// translation unit built with -mamx-tile -mamx-bf16). Used only when simd_dispatch.cpp found
// AMX-BF16 usable and the caller did not turn it off.
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
// Padding rows, columns and depth are zeros. (<immintrin.h> and ruvector/simd.hpp come from
// kernels_impl.hpp, outside the namespaces.)

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

// Probabilities straight into A planes (softmax_tile's sink): each row's exponentials are cut
// into their three parts as they are made, with no float32 copy in between.
struct ProbsToPlanes {
  std::uint16_t* planes;  // mp rows × chunks of 32 keys
  std::size_t mp, chunks;

  void store(std::size_t r, std::size_t col, __m512 x) const noexcept {
    const std::size_t plane = mp / 16 * chunks * kTile;
    __m256i h, m, l;
    split(x, h, m, l);
    std::uint16_t* dst = planes + ((r / 16) * chunks + col / 32) * kTile + (r % 16) * 32 + col % 32;
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst), h);
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + plane), m);
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 2 * plane), l);
  }
  float exp(std::size_t r, float* row, std::size_t n, float max) const noexcept {
    const reg vmax(max);
    reg sum0(0.0f), sum1(0.0f);
    std::size_t col = 0;
    for (; col + 32 <= n; col += 32) {  // whole chunks: two independent exponentials at a time
      const reg e0 = Vec::exp_nonpositive(Vec::sub(Vec::load(row + col), vmax));
      const reg e1 = Vec::exp_nonpositive(Vec::sub(Vec::load(row + col + 16), vmax));
      sum0 = Vec::add(sum0, e0);
      sum1 = Vec::add(sum1, e1);
      store(r, col, e0);
      store(r, col + 16, e1);
    }
    for (; col < chunks * 32; col += 16) {  // the last keys, then zeros up to the chunk's end
      const std::size_t count = part(n, col);
      __m512 e = _mm512_setzero_ps();
      if (count) {
        const __mmask16 mask = count == 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << count) - 1);
        const reg x(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + col), vmax));
        e = _mm512_maskz_mov_ps(mask, static_cast<__m512>(Vec::exp_nonpositive(x)));
        sum0 = Vec::add(sum0, reg(e));
      }
      store(r, col, e);
    }
    return Vec::hsum(Vec::add(sum0, sum1));
  }
  void dead(std::size_t r, float* /*row*/, std::size_t /*n*/) const noexcept { zero_row(r); }
  void zero_row(std::size_t r) const noexcept {
    for (std::size_t col = 0; col < chunks * 32; col += 16) store(r, col, _mm512_setzero_ps());
  }
};

struct StreamJob {
  FlashJob* job;           // the streaming state (row max and sum) and the pass's key range
  const std::uint16_t* k;  // B planes of scale·Kᵀ for the pass: key groups × depth chunks
  const std::uint16_t* v;  // B planes of V for the pass: value groups × key chunks
  std::size_t k_groups, d_chunks, v_groups, key_chunks, dp, dvp;
};

// One block of kRows queries against the pass's keys, tile by tile: S = Q·Kᵀ on the tiles,
// the online softmax on S in float32 (softmax_tile), P cut into A planes, acc += P·V on the
// tiles. The accumulator (float32, padded) lives in scratch; between passes it waits in `out`.
void stream_task(void* job_ptr, std::size_t block) noexcept {
  const StreamJob& sj = *static_cast<const StreamJob*>(job_ptr);
  FlashJob& job = *sj.job;
  const FlashParams& p = *job.p;
  const std::size_t q0 = block * kRows, q1 = std::min(p.lq, q0 + kRows), qb = q1 - q0, mp = padded(qb);
  const std::size_t kend = std::min(job.k_end, key_end(p, q1));
  if (kend <= job.k_begin) return;
  constexpr std::size_t lds = kKeyBlock;  // a multiple of 32
  const std::size_t q_units = 3 * mp * sj.dp, p_units = 3 * mp * lds;
  const std::size_t floats = mp * lds + mp * sj.dvp + (q_units + p_units) / 2;
  Scratch<float> buf(floats);
  if (!buf.ok(floats)) {
    job.failed.store(true, std::memory_order_relaxed);
    return;
  }
  float* s = buf.ptr;
  float* acc = s + mp * lds;
  auto* qa = reinterpret_cast<std::uint16_t*>(acc + mp * sj.dvp);
  std::uint16_t* pa = qa + q_units;
  float* out = p.out + q0 * p.ldo;
  const bool resumed = job.k_begin > 0;  // an earlier pass left its sums in out
  if (resumed)
    for (std::size_t r = 0; r < qb; ++r) {
      std::memcpy(acc + r * sj.dvp, out + r * p.ldo, p.dv * sizeof(float));
      std::memset(acc + r * sj.dvp + p.dv, 0, (sj.dvp - p.dv) * sizeof(float));
    }
  pack_a(p.q + q0 * p.ldq, p.ldq, qb, p.d, mp, sj.d_chunks, qa);
  TileScope tiles;
  for (std::size_t k0 = job.k_begin; k0 < kend; k0 += kKeyBlock) {
    const std::size_t kb = std::min(kKeyBlock, kend - k0), kbp = padded(kb), local = k0 - job.k_begin;
    const bool first = k0 == 0;
    product(qa, mp, sj.d_chunks, sj.k, sj.k_groups, sj.d_chunks, local / 16, 0, kbp, s, lds, false);
    if (p.dropout > 0.0f) {  // dropout works on the float32 probabilities
      softmax_tile(p, job, q0, qb, k0, kb, first, s, lds, acc, sj.dvp);
      pack_a(s, lds, qb, kb, mp, kbp / 32, pa);
    } else {
      const ProbsToPlanes probs{pa, mp, kbp / 32};
      softmax_tile(p, job, q0, qb, k0, kb, first, s, lds, acc, sj.dvp, probs);
      for (std::size_t r = qb; r < mp; ++r) probs.zero_row(r);
    }
    product(pa, mp, kbp / 32, sj.v, sj.v_groups, sj.key_chunks, 0, local / 32, sj.dvp, acc, sj.dvp, !first);
  }
  if (kend == key_end(p, q1)) {  // this block has seen all its keys
    for (std::size_t r = 0; r < qb; ++r) {
      std::memcpy(out + r * p.ldo, acc + r * sj.dvp, p.dv * sizeof(float));
      normalise_row(out + r * p.ldo, p.dv, job.row_sum[q0 + r]);
    }
  } else {
    for (std::size_t r = 0; r < qb; ++r) std::memcpy(out + r * p.ldo, acc + r * sj.dvp, p.dv * sizeof(float));
  }
}

// ---------------------------------------------------------------------------------------------
// GEMM (a layer's projections): C = A·op(B) + bias with B's planes packed once and row blocks
// of A on the pool.

struct GemmJob {
  const GemmParams* p;
  const std::uint16_t* b;  // B planes: np/16 column groups × kp/32 depth chunks
  std::size_t np, kp;
  std::atomic<bool> failed{false};
  std::atomic<bool> nonfinite{false};  // some element of C is NaN or ±inf
};

void gemm_task(void* job_ptr, std::size_t block) noexcept {
  GemmJob& job = *static_cast<GemmJob*>(job_ptr);
  const GemmParams& p = *job.p;
  const std::size_t r0 = block * kRows, rows = std::min(kRows, p.m - r0), mp = padded(rows);
  const std::size_t a_units = 3 * mp * job.kp, floats = a_units / 2 + mp * job.np;
  Scratch<float> buf(floats);
  if (!buf.ok(floats)) {
    job.failed.store(true, std::memory_order_relaxed);
    return;
  }
  auto* a = reinterpret_cast<std::uint16_t*>(buf.ptr);
  float* acc = buf.ptr + a_units / 2;
  pack_a(p.a + r0 * p.lda, p.lda, rows, p.k, mp, job.kp / 32, a);
  {
    TileScope tiles;
    product(a, mp, job.kp / 32, job.b, job.np / 16, job.kp / 32, 0, 0, job.np, acc, job.np, false);
  }
  bool finite = true;
  for (std::size_t r = 0; r < rows; ++r) {
    float* c = p.c + (r0 + r) * p.ldc;
    const float* src = acc + r * job.np;
    if (p.bias == nullptr) {
      std::memcpy(c, src, p.n * sizeof(float));
    } else {
      std::size_t j = 0;
      for (; j + W <= p.n; j += W) Vec::store(c + j, Vec::add(Vec::load(src + j), Vec::load(p.bias + j)));
      for (; j < p.n; ++j) c[j] = src[j] + p.bias[j];
    }
    if (p.c_finite && finite) finite = all_finite_kernel(c, p.n);  // the row is in L1
  }
  if (!finite) job.nonfinite.store(true, std::memory_order_relaxed);
}

// Rows [0, rows) of x (stride ld, n floats each) hold no NaN or ±inf.
bool finite_rows(const float* x, std::size_t rows, std::size_t n, std::size_t ld) noexcept {
  if (ld == n) return all_finite_kernel(x, rows * n);  // one contiguous block
  for (std::size_t r = 0; r < rows; ++r)
    if (!all_finite_kernel(x + r * ld, n)) return false;
  return true;
}

// Whether this call may take the tiles: streaming (no weights), widths whose scratch stays
// small, finite queries (keys and values are checked as they are packed).
bool eligible(const FlashParams& p) noexcept {
  if (!ruvector::amx_enabled() || p.weights || p.d > 512 || p.dv > 512 || p.lk == 0) return false;
  return p.inputs_finite || finite_rows(p.q, p.lq, p.d, p.ldq);
}

enum class Outcome { done, failed, fma };  // fma: NaN/Inf found before any output, use the FMA path

// Without weights, one head, on the tiles: passes over key ranges whose planes stay ~kBudget.
// Keys and values are checked for NaN/Inf while the first pass packs them (the FMA path takes
// over if any, nothing written yet); with several passes they are checked beforehand.
Outcome stream_attention(const FlashParams& p, const Parallel& par) noexcept {
  constexpr std::size_t kBudget = 1024 * 1024;  // bytes of K and V planes at a time
  const std::size_t dp = padded(p.d), dvp = padded(p.dv);
  const std::size_t blocks = (p.lq + kRows - 1) / kRows;
  const std::size_t per_key = 3 * 2 * (dp + dvp);  // bytes of planes per key
  const std::size_t span = std::max<std::size_t>(kKeyBlock, kBudget / per_key / kKeyBlock * kKeyBlock);
  const std::size_t visible = key_end(p, p.lq);
  if (visible > span && !p.inputs_finite &&
      !(finite_rows(p.k, visible, p.d, p.ldk) && finite_rows(p.v, visible, p.dv, p.ldv)))
    return Outcome::fma;
  const std::size_t first_len = padded(std::min(span, visible));
  const std::size_t k_units = 3 * first_len * dp, v_units = 3 * first_len * dvp;
  const std::size_t floats = (k_units + v_units) / 2 + 2 * p.lq;
  Scratch<float> packed(floats);
  if (!packed.ok(floats)) return Outcome::failed;
  auto* kplanes = reinterpret_cast<std::uint16_t*>(packed.ptr);
  std::uint16_t* vplanes = kplanes + k_units;
  float* row_max = packed.ptr + (k_units + v_units) / 2;
  float* row_sum = row_max + p.lq;
  for (std::size_t i = 0; i < p.lq; ++i) {
    row_max[i] = kNegInf;
    row_sum[i] = 0.0f;
  }
  FlashJob job{&p, nullptr, nullptr, 0, 0, 0, row_max, row_sum, {false}};
  if (visible == 0)
    for (std::size_t i = 0; i < p.lq; ++i) std::memset(p.out + i * p.ldo, 0, p.dv * sizeof(float));
  for (std::size_t k_begin = 0; k_begin < visible; k_begin += span) {
    const std::size_t k_end = std::min(visible, k_begin + span), len = k_end - k_begin, lenp = padded(len);
    StreamJob sj{&job, kplanes, vplanes, lenp / 16, dp / 32, dvp / 16, lenp / 32, dp, dvp};
    PackBt kjob{p.k + k_begin * p.ldk, p.ldk, p.d, len, sj.k_groups, sj.d_chunks, p.scale, kplanes};
    run_blocks(sj.k_groups >= 8 ? par : Parallel{}, sj.k_groups, &kjob, &pack_b_transposed_task);
    PackB vjob{p.v + k_begin * p.ldv, p.ldv, len, p.dv, sj.v_groups, sj.key_chunks, vplanes};
    run_blocks(sj.key_chunks >= 8 ? par : Parallel{}, sj.key_chunks, &vjob, &pack_b_rows_task);
    if (kjob.nonfinite.load() || vjob.nonfinite.load()) return Outcome::fma;  // first pass only
    job.k_begin = k_begin;
    job.k_end = k_end;
    const std::size_t first_block = p.causal ? std::min(blocks, k_begin / kRows) : 0;
    run_blocks_from(par, first_block, blocks - first_block, &sj, &stream_task);
    if (job.failed.load()) return Outcome::failed;
  }
  return Outcome::done;
}

}  // namespace amx

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

// Whether this product takes the tiles: large enough to pay for the planes, finite inputs,
// planes of B at most 16 MB.
bool gemm_eligible(const GemmParams& p) noexcept {
  if (!ruvector::amx_enabled() || p.accumulate || p.m == 0 || p.n == 0 || p.k == 0) return false;
  if (static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k) < 1 << 21) return false;
  if (6.0 * static_cast<double>(padded(p.n)) * static_cast<double>(padded(p.k)) > 16.0 * (1 << 20)) return false;
  return finite_rows(p.a, p.m, p.k, p.lda) &&
         (p.b_finite || (p.b_transposed ? finite_rows(p.b, p.n, p.k, p.ldb) : finite_rows(p.b, p.k, p.n, p.ldb)));
}

bool gemm(const GemmParams& p, const Parallel& par) noexcept {
  const std::size_t np = padded(p.n), kp = padded(p.k), groups = np / 16, chunks = kp / 32;
  const std::size_t floats = 3 * np * kp / 2;
  Scratch<float> planes(floats);
  if (!planes.ok(floats)) return false;
  auto* b = reinterpret_cast<std::uint16_t*>(planes.ptr);
  if (p.b_transposed) {
    PackBt job{p.b, p.ldb, p.k, p.n, groups, chunks, 1.0f, b};
    run_blocks(groups >= 8 ? par : Parallel{}, groups, &job, &pack_b_transposed_task);
  } else {
    PackB job{p.b, p.ldb, p.k, p.n, groups, chunks, b};
    run_blocks(chunks >= 8 ? par : Parallel{}, chunks, &job, &pack_b_rows_task);
  }
  GemmJob job{&p, b, np, kp};
  run_blocks(par, (p.m + kRows - 1) / kRows, &job, &gemm_task);
  if (p.c_finite) *p.c_finite = !job.nonfinite.load();
  return !job.failed.load();
}

}  // namespace amx
