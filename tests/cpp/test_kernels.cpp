// Every kernel of every backend this machine supports, against plain double-precision loops.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <future>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ruvector/errors.hpp"
#include "ruvector/simd.hpp"
#include "thread_pool_internal.hpp"
#include "simd/kernels.hpp"

using ruvector::Backend;
using ruvector::simd::KernelTable;

namespace {

std::vector<Backend> supported_backends() {
  std::vector<Backend> out;
  for (Backend b : {Backend::Scalar, Backend::Avx2, Backend::Avx512, Backend::Neon})
    if (ruvector::backend_supported(b)) out.push_back(b);
  return out;
}

const KernelTable& table(Backend b) {
  return *ruvector::simd::built_kernels(b);  // the tests run only supported (hence built) backends
}

std::vector<float> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// Dense row-major q [lq, d], k [lk, d], v [lk, dv] into out [lq, dv] (no weights, no mask).
ruvector::simd::FlashParams flash_params(const std::vector<float>& q, const std::vector<float>& k,
                                         const std::vector<float>& v, std::vector<float>& out, std::size_t lq,
                                         std::size_t lk, std::size_t d, std::size_t dv, float scale) {
  return ruvector::simd::FlashParams::dense(q.data(), k.data(), v.data(), out.data(), lq, lk, d, dv, scale);
}

class Kernels : public ::testing::TestWithParam<Backend> {
 protected:
  const KernelTable& k() const { return table(GetParam()); }
};

const std::size_t kSizes[] = {0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 257};

TEST_P(Kernels, TableNameMatchesBackend) {
  EXPECT_EQ(std::string(k().name), ruvector::backend_name(GetParam()));
}

TEST_P(Kernels, DotAxpyScaleMax) {
  for (std::size_t n : kSizes) {
    auto x = random_vector(n, 1), y = random_vector(n, 2);
    double dot = 0;
    for (std::size_t i = 0; i < n; ++i) dot += double(x[i]) * y[i];
    EXPECT_NEAR(k().dot(x.data(), y.data(), n), dot, 1e-4 * (1 + std::abs(dot))) << n;

    auto y2 = y;
    k().axpy(0.5f, x.data(), y2.data(), n);
    for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(y2[i], y[i] + 0.5 * x[i], 1e-6) << n;

    auto x2 = x;
    k().scale(x2.data(), n, -3.0f);
    for (std::size_t i = 0; i < n; ++i) EXPECT_FLOAT_EQ(x2[i], -3.0f * x[i]);

    float mx = -std::numeric_limits<float>::infinity();
    for (float v : x) mx = std::max(mx, v);
    EXPECT_EQ(k().max(x.data(), n), mx) << n;
  }
}

TEST_P(Kernels, AllFinite) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (std::size_t n : kSizes) {
    auto x = random_vector(n, 4);
    if (n > 0) x[n / 2] = std::numeric_limits<float>::max();  // large but finite
    EXPECT_TRUE(k().all_finite(x.data(), n)) << n;
    for (float special : specials)
      for (std::size_t at : {std::size_t{0}, n / 2, n - 1}) {  // vector body and scalar tail
        if (n == 0) continue;
        auto y = x;
        y[at] = special;
        EXPECT_FALSE(k().all_finite(y.data(), n)) << n << " " << at << " " << special;
      }
  }
}

TEST_P(Kernels, ExpAndSoftmax) {
  for (std::size_t n : kSizes) {
    auto x = random_vector(n, 3);
    for (auto& v : x) v *= 10.0f;
    auto e = x;
    const float sum = k().exp_shift_sum(e.data(), n, 1.5f);
    double ref_sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double ref = std::exp(double(x[i] - 1.5f));  // the kernel shifts in float
      ref_sum += ref;
      EXPECT_NEAR(e[i], ref, 3e-7 * ref + 1e-30) << "n=" << n << " x=" << x[i];
    }
    EXPECT_NEAR(sum, ref_sum, 1e-5 * ref_sum);

    auto s = x;
    k().softmax(s.data(), n);
    double total = 0;
    for (float v : s) total += v;
    if (n) EXPECT_NEAR(total, 1.0, 1e-5);
    // each probability against float64 (softmax takes the max-shifted exp, its own kernel)
    float mx = -std::numeric_limits<float>::infinity();
    double ref_total = 0;
    for (float v : x) mx = std::max(mx, v);
    for (float v : x) ref_total += std::exp(double(v - mx));  // the kernel shifts in float
    for (std::size_t i = 0; i < n; ++i) {
      const double ref = std::exp(double(x[i] - mx)) / ref_total;
      EXPECT_NEAR(s[i], ref, 2e-6 * ref + 1e-37) << "n=" << n << " x=" << x[i];
    }
  }
  // extremes: exp(-inf) = 0, a row of -inf gives zeros, NaN stays NaN
  std::vector<float> row(20, -std::numeric_limits<float>::infinity());
  k().softmax(row.data(), row.size());
  for (float v : row) EXPECT_EQ(v, 0.0f);
  std::vector<float> big = {-200.f, -100.f, 0.f, 80.f, 88.f,  -87.f,  1e-8f, -1e-8f, -90.f,
                            3.f,    2.f,    1.f, 0.5f, 0.25f, 0.125f, 7.f,   9.f};
  auto eb = big;
  k().exp_shift_sum(eb.data(), eb.size(), 0.0f);
  for (std::size_t i = 0; i < big.size(); ++i) {
    const double ref = std::exp(double(big[i]));
    if (ref < 1e-37)
      EXPECT_LT(eb[i], 1e-37f);
    else
      EXPECT_NEAR(eb[i], ref, 4e-7 * ref) << big[i];
  }
  // max-shifted exps over the whole range, down to where the result flushes to zero
  std::vector<float> wide;
  for (float v = 0.0f; v > -120.0f; v -= 0.37f) wide.push_back(v);
  wide.push_back(-std::numeric_limits<float>::infinity());
  auto ew = wide;
  k().softmax(ew.data(), ew.size());
  double wide_total = 0;
  for (float v : wide) wide_total += std::exp(double(v));
  for (std::size_t i = 0; i < wide.size(); ++i) {
    const double ref = std::exp(double(wide[i])) / wide_total;
    if (ref < 1.6e-38)
      EXPECT_LE(ew[i], 1.6e-38f) << wide[i];
    else
      EXPECT_NEAR(ew[i], ref, 4e-7 * ref) << wide[i];
  }
  std::vector<float> nan(17, 1.0f);
  nan[3] = std::numeric_limits<float>::quiet_NaN();
  k().softmax(nan.data(), nan.size());
  for (float v : nan) EXPECT_TRUE(std::isnan(v));
}

TEST_P(Kernels, Gemm) {
  const std::size_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {13, 33, 17}, {64, 64, 64}, {100, 70, 129}, {250, 48, 512}};
  for (auto& s : shapes) {
    const std::size_t m = s[0], n = s[1], kk = s[2];
    auto a = random_vector(m * kk, 4), b = random_vector(kk * n, 5), bias = random_vector(n, 6);
    for (bool transposed : {false, true}) {
      for (bool accumulate : {false, true}) {
        std::vector<float> c(m * n, 0.25f);
        ruvector::simd::GemmParams p;
        p.a = a.data();
        p.lda = kk;
        p.b = b.data();
        p.ldb = transposed ? kk : n;
        p.b_transposed = transposed;
        p.c = c.data();
        p.ldc = n;
        p.bias = bias.data();
        p.m = m;
        p.n = n;
        p.k = kk;
        p.accumulate = accumulate;
        ASSERT_TRUE(k().gemm(p, {}));
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j) {
            double ref = bias[j] + (accumulate ? 0.25 : 0.0);
            for (std::size_t t = 0; t < kk; ++t)
              ref += double(a[i * kk + t]) * (transposed ? b[j * kk + t] : b[t * n + j]);
            ASSERT_NEAR(c[i * n + j], ref, 1e-4 * (1 + std::abs(ref))) << m << "x" << n << "x" << kk;
          }
      }
    }
  }
}

// On avx512 where AMX is available: once on the tiles (streaming calls) and once on FMA alone.
std::vector<bool> amx_modes(Backend b) {
  if (b == Backend::Avx512 && ruvector::amx_available()) return {true, false};
  return {ruvector::amx_enabled()};
}

class AmxMode {  // sets AMX on or off for a scope, when it is available
 public:
  explicit AmxMode(bool on) : before_(ruvector::amx_enabled()) {
    if (ruvector::amx_available()) ruvector::set_amx_enabled(on);
  }
  ~AmxMode() {
    if (ruvector::amx_available()) ruvector::set_amx_enabled(before_);
  }
  AmxMode(const AmxMode&) = delete;
  AmxMode& operator=(const AmxMode&) = delete;

 private:
  bool before_;
};

TEST_P(Kernels, FlashAttentionMatchesNaive) {
  // {40, 3000, ...}: the streaming kernels take several passes over the keys
  const std::size_t shapes[][4] = {
      {1, 1, 1, 1}, {3, 5, 7, 2}, {70, 300, 33, 17}, {130, 129, 64, 64}, {40, 3000, 64, 48}};
  for (bool amx : amx_modes(GetParam()))
    for (auto& s : shapes) {
      AmxMode mode(amx);
      const std::size_t lq = s[0], lk = s[1], d = s[2], dv = s[3];
      auto q = random_vector(lq * d, 7), kk = random_vector(lk * d, 8), v = random_vector(lk * dv, 9);
      for (bool causal : {false, true}) {
        for (bool weights : {false, true}) {
          std::vector<float> out(lq * dv), w(lq * lk);
          ruvector::simd::FlashParams p = flash_params(q, kk, v, out, lq, lk, d, dv, 0.3f);
          p.weights = weights ? w.data() : nullptr;
          p.ldw = lk;
          p.mask.causal = causal;
          ASSERT_TRUE(k().flash_attention(p, {}));
          for (std::size_t i = 0; i < lq; ++i) {
            std::vector<double> sc(lk);
            double mx = -INFINITY;
            for (std::size_t j = 0; j < lk; ++j) {
              double dot = 0;
              for (std::size_t t = 0; t < d; ++t) dot += double(q[i * d + t]) * kk[j * d + t];
              sc[j] = (causal && j > i) ? -INFINITY : 0.3 * dot;
              mx = std::max(mx, sc[j]);
            }
            double z = 0;
            for (auto& x : sc) z += (x = (mx == -INFINITY ? 0.0 : std::exp(x - mx)));
            for (std::size_t c = 0; c < dv; ++c) {
              double ref = 0;
              for (std::size_t j = 0; j < lk; ++j) ref += (z > 0 ? sc[j] / z : 0) * v[j * dv + c];
              ASSERT_NEAR(out[i * dv + c], ref, 2e-5) << lq << "," << lk << " row " << i << " amx " << amx;
            }
            if (weights)
              for (std::size_t j = 0; j < lk; ++j) ASSERT_NEAR(w[i * lk + j], z > 0 ? sc[j] / z : 0, 2e-6);
          }
        }
      }
    }
}

// NaN/Inf inputs never reach the tiles (their three-part split would turn inf into NaN): the
// call takes the FMA path, bit for bit.
TEST(Amx, NonFiniteInputsTakeTheFmaPath) {
  if (!ruvector::backend_supported(Backend::Avx512) || !ruvector::amx_available()) GTEST_SKIP() << "no AMX here";
  // one pass over the keys (checked while packing), and several (checked beforehand; the inf
  // sits in the last pass)
  for (const std::size_t lk : {std::size_t{80}, std::size_t{3000}}) {
    const std::size_t lq = 50, d = 64, dv = 32;
    auto q = random_vector(lq * d, 1), kk = random_vector(lk * d, 2), v = random_vector(lk * dv, 3);
    v[(lk - 5) * dv + 3] = std::numeric_limits<float>::infinity();
    if (lk < 100) kk[7 * d + 1] = -std::numeric_limits<float>::infinity();
    std::vector<float> on(lq * dv), off(lq * dv);
    for (bool amx : {true, false}) {
      AmxMode mode(amx);
      const ruvector::simd::FlashParams p = flash_params(q, kk, v, amx ? on : off, lq, lk, d, dv, 0.125f);
      ASSERT_TRUE(table(Backend::Avx512).flash_attention(p, {}));
    }
    for (std::size_t i = 0; i < on.size(); ++i)
      if (!(std::isnan(on[i]) && std::isnan(off[i]))) ASSERT_EQ(on[i], off[i]) << lk << " " << i;
  }
}

// amx_tile_gflops: a positive rate where AMX is available (the float32-equivalent figure of
// six bfloat16 tile products can't reach 10 TFLOP/s on one core), 0 where not; a bad duration
// is refused.
TEST(Amx, TileRate) {
  const double rate = ruvector::amx_tile_gflops(0.002);
  if (ruvector::amx_available()) {
    EXPECT_GT(rate, 1.0);
    EXPECT_LT(rate, 10000.0);
  } else {
    EXPECT_EQ(rate, 0.0);
  }
  for (const double bad : {0.0, -1.0, 11.0, std::numeric_limits<double>::quiet_NaN()})
    EXPECT_THROW(ruvector::amx_tile_gflops(bad), ruvector::InvalidInput) << bad;
}

std::string backend_label(const ::testing::TestParamInfo<Backend>& info) {
  return ruvector::backend_name(info.param);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Kernels, ::testing::ValuesIn(supported_backends()), backend_label);

TEST(Dispatch, ForcingAndErrors) {
  EXPECT_NO_THROW(ruvector::set_simd_backend("scalar"));
  EXPECT_EQ(ruvector::simd_backend(), Backend::Scalar);
  EXPECT_STREQ(ruvector::simd::active_kernels().name, "scalar");
  EXPECT_THROW(ruvector::set_simd_backend("sse9"), ruvector::InvalidConfig);
  EXPECT_NO_THROW(ruvector::set_simd_backend("auto"));
  for (Backend b : {Backend::Avx2, Backend::Avx512, Backend::Neon})
    if (!ruvector::backend_supported(b))
      EXPECT_THROW(ruvector::set_simd_backend(ruvector::backend_name(b)), ruvector::InvalidConfig);
}

// One table per built backend, found by Backend (the lookup follows the enum's order); a
// backend the build lacks has none, and a value outside the enum finds none.
TEST(Dispatch, BuiltKernelsAreTheBackends) {
  for (Backend b : {Backend::Scalar, Backend::Avx2, Backend::Avx512, Backend::Neon}) {
    const ruvector::simd::KernelTable* t = ruvector::simd::built_kernels(b);
    if (ruvector::backend_supported(b)) ASSERT_NE(t, nullptr) << ruvector::backend_name(b);
    if (t == nullptr) continue;
    EXPECT_STREQ(t->name, ruvector::backend_name(b));
    EXPECT_NE(t->graph.gat, nullptr);
    EXPECT_NE(t->graph.transform, nullptr);
  }
  EXPECT_NE(ruvector::simd::built_kernels(Backend::Scalar), nullptr);
  EXPECT_EQ(ruvector::simd::built_kernels(static_cast<Backend>(99)), nullptr);
}

}  // namespace

// submit(): a task that throws is caught and dropped (reported on stderr), the process and the
// pool go on; backend_name of a value outside the enum is "unknown".
TEST(Pool, SubmittedTaskThatThrowsDoesNotEndTheProcess) {
  std::promise<void> ran;
  ruvector::submit([] { throw std::runtime_error("boom"); });
  ruvector::submit([&ran] { ran.set_value(); });
  EXPECT_EQ(ran.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_STREQ(ruvector::backend_name(static_cast<ruvector::Backend>(99)), "unknown");
}
