// The C++ API of TemporalAttention and HierarchicalAttention (docs/contract.md §4, §7), on every backend
// this machine supports, against plain double-precision Eigen references written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ruvector/ruvector.hpp"

namespace {

using ruvector::Backend;
using ruvector::Index;
using ruvector::RowMatrixXf;
using MatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

std::vector<Backend> supported_backends() {
  std::vector<Backend> out;
  for (Backend b : {Backend::Scalar, Backend::Avx2, Backend::Avx512, Backend::Neon})
    if (ruvector::backend_supported(b)) out.push_back(b);
  return out;
}

RowMatrixXf random_matrix(Index rows, Index cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  RowMatrixXf m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
  return m;
}

// Softmax of each row over `allowed` entries (zeros for a row with none).
MatrixXd softmax_rows(const MatrixXd& s, const Eigen::Matrix<bool, -1, -1, Eigen::RowMajor>& allowed) {
  MatrixXd w = MatrixXd::Zero(s.rows(), s.cols());
  for (Index i = 0; i < s.rows(); ++i) {
    double m = -std::numeric_limits<double>::infinity();
    for (Index j = 0; j < s.cols(); ++j)
      if (allowed(i, j)) m = std::max(m, s(i, j));
    double sum = 0.0;
    for (Index j = 0; j < s.cols(); ++j)
      if (allowed(i, j)) sum += (w(i, j) = std::exp(s(i, j) - m));
    if (sum > 0) w.row(i) /= sum;
  }
  return w;
}

struct TemporalRef {
  MatrixXd values, weights;
};

TemporalRef temporal_reference(const RowMatrixXf& x, const Eigen::VectorXd& t, double lambda, bool causal,
                               double window) {
  const MatrixXd xd = x.cast<double>();
  const Index n = x.rows();
  const double scale = 1.0 / std::sqrt(static_cast<double>(x.cols()));
  MatrixXd s = scale * xd * xd.transpose();
  Eigen::Matrix<bool, -1, -1, Eigen::RowMajor> allowed(n, n);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) {
      const double dt = std::abs(t[i] - t[j]);
      s(i, j) -= lambda * dt;
      allowed(i, j) = i == j || ((!causal || t[j] <= t[i]) && (window < 0 || dt <= window));
    }
  TemporalRef r;
  r.weights = softmax_rows(s, allowed);
  r.values = r.weights * xd;
  return r;
}

double max_abs(const MatrixXd& a, const MatrixXd& b) {
  return (a - b).cwiseAbs().maxCoeff();
}

class OnEveryBackend : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { ruvector::set_simd_backend(ruvector::backend_name(GetParam())); }
  void TearDown() override { ruvector::set_simd_backend("auto"); }
};

std::string backend_label(const ::testing::TestParamInfo<Backend>& info) {
  return ruvector::backend_name(info.param);
}

TEST_P(OnEveryBackend, TemporalMatchesReference) {
  const RowMatrixXf x = random_matrix(150, 24, 1);
  std::mt19937 gen(2);
  std::uniform_real_distribution<double> uniform(0.0, 20.0);
  Eigen::VectorXd t(x.rows());
  for (Index i = 0; i < t.size(); ++i) t[i] = std::round(uniform(gen) * 4) / 4;  // unsorted, with ties
  for (bool causal : {true, false})
    for (double window : {-1.0, 3.0})
      for (double lambda : {0.0, 0.3}) {
        ruvector::TemporalConfig o;
        o.causal = causal;
        o.decay_rate = lambda;
        if (window >= 0) o.window = window;
        ruvector::TemporalAttention attn({}, o);
        const TemporalRef ref = temporal_reference(x, t, lambda, causal, window);
        const auto out = attn.compute(x, t);
        EXPECT_LT(max_abs(out.values.cast<double>(), ref.values), 2e-5);
        EXPECT_LT(max_abs(out.weights.cast<double>(), ref.weights), 2e-6);
        const auto streamed = attn.compute(x, t, ruvector::TemporalOptions{false});
        EXPECT_FALSE(streamed.has_weights());
        EXPECT_LT(max_abs(streamed.values.cast<double>(), ref.values), 2e-5);
      }
}

// Sorted times take the index-causal path of the kernel; a permutation of the same events
// takes the time-causal path. Both must give the same (permuted) answer.
TEST_P(OnEveryBackend, TemporalSortedAndShuffledAgree) {
  const Index n = 300;
  const RowMatrixXf x = random_matrix(n, 16, 3);
  Eigen::VectorXd t(n);
  for (Index i = 0; i < n; ++i) t[i] = 1.7e9 + 0.5 * static_cast<double>(i);  // Unix-like seconds
  std::vector<Index> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), Index{0});
  std::shuffle(perm.begin(), perm.end(), std::mt19937(4));
  RowMatrixXf xp(n, x.cols());
  Eigen::VectorXd tp(n);
  for (Index i = 0; i < n; ++i) {
    xp.row(i) = x.row(perm[i]);
    tp[i] = t[perm[i]];
  }
  ruvector::TemporalConfig o;
  o.half_life = 20.0;
  ruvector::TemporalAttention attn({}, o);
  const auto sorted = attn.compute(x, t), shuffled = attn.compute(xp, tp, ruvector::TemporalOptions{false});
  for (Index i = 0; i < n; ++i)
    EXPECT_LT((sorted.values.row(perm[i]) - shuffled.values.row(i)).cwiseAbs().maxCoeff(), 1e-5);
  const TemporalRef ref = temporal_reference(x, t, std::log(2.0) / 20.0, true, -1);
  EXPECT_LT(max_abs(sorted.values.cast<double>(), ref.values), 2e-5);
  EXPECT_DOUBLE_EQ(std::get<double>(sorted.metadata.at("decay_rate")), std::log(2.0) / 20.0);
}

TEST_P(OnEveryBackend, TemporalDefaultTimesAreIndices) {
  const RowMatrixXf x = random_matrix(70, 8, 5);
  ruvector::TemporalConfig o;
  o.decay_rate = 0.1;
  o.window = 10;
  ruvector::TemporalAttention attn({}, o);
  Eigen::VectorXd t(70);
  for (Index i = 0; i < 70; ++i) t[i] = static_cast<double>(i);
  const auto out = attn.compute(x);
  const TemporalRef ref = temporal_reference(x, t, 0.1, true, 10);
  EXPECT_LT(max_abs(out.weights.cast<double>(), ref.weights), 2e-6);
  EXPECT_FALSE(std::get<bool>(out.metadata.at("has_timestamps")));
  EXPECT_EQ(std::get<std::int64_t>(out.metadata.at("sequence_length")), 70);
}

struct HierRef {
  MatrixXd values, weights, summaries;
  Eigen::VectorXd beta;
};

HierRef hierarchical_reference(const std::vector<RowMatrixXf>& levels, const Eigen::VectorXd* level_weights,
                               const Eigen::VectorXd* query) {
  const Index l_count = static_cast<Index>(levels.size()), d = levels[0].cols();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  Index max_rows = 0;
  for (const auto& x : levels) max_rows = std::max(max_rows, x.rows());
  HierRef r;
  r.weights = MatrixXd::Zero(l_count, max_rows);
  r.summaries = MatrixXd::Zero(l_count, d);
  auto softmax = [](Eigen::VectorXd s) {
    s = (s.array() - s.maxCoeff()).exp();
    return Eigen::VectorXd(s / s.sum());
  };
  for (Index l = 0; l < l_count; ++l) {
    const MatrixXd x = levels[static_cast<std::size_t>(l)].cast<double>();
    const Eigen::VectorXd u = query ? *query : Eigen::VectorXd(x.colwise().mean().transpose());
    const Eigen::VectorXd alpha = softmax(scale * x * u);
    r.weights.row(l).head(x.rows()) = alpha.transpose();
    r.summaries.row(l) = alpha.transpose() * x;
  }
  if (level_weights) {
    r.beta = *level_weights / level_weights->sum();
  } else {
    const Eigen::VectorXd ubar = query ? *query : Eigen::VectorXd(r.summaries.colwise().mean().transpose());
    r.beta = softmax(scale * r.summaries * ubar);
  }
  r.values = r.beta.transpose() * r.summaries;
  return r;
}

TEST_P(OnEveryBackend, HierarchicalMatchesReference) {
  // Ragged levels, one longer than a row chunk, so chunk merging is exercised.
  std::vector<RowMatrixXf> data = {random_matrix(5, 40, 6), random_matrix(1, 40, 7), random_matrix(900, 40, 8),
                                   random_matrix(33, 40, 9)};
  std::vector<ruvector::MatrixRef> levels(data.begin(), data.end());
  const Eigen::VectorXd query = random_matrix(40, 1, 10).cast<double>();
  Eigen::VectorXd lw(4);
  lw << 0.5, 2.0, 0.0, 1.5;
  ruvector::HierarchicalAttention attn;
  for (int variant = 0; variant < 4; ++variant) {
    ruvector::HierarchicalOptions o;
    if (variant & 1) o.level_weights = std::vector<double>(lw.data(), lw.data() + lw.size());
    if (variant & 2) o.query = query.cast<float>();
    const HierRef ref = hierarchical_reference(data, (variant & 1) ? &lw : nullptr, (variant & 2) ? &query : nullptr);
    const auto out = attn.compute(levels, o);
    EXPECT_LT(max_abs(out.values.cast<double>(), ref.values), 2e-5) << variant;
    EXPECT_LT(max_abs(out.weights.cast<double>(), ref.weights), 2e-6) << variant;
    EXPECT_LT(max_abs(std::get<RowMatrixXf>(out.metadata.at("level_summaries")).cast<double>(), ref.summaries), 2e-5);
    const auto& beta = std::get<std::vector<double>>(out.metadata.at("level_weights"));
    ASSERT_EQ(beta.size(), 4u);
    for (std::size_t l = 0; l < 4; ++l) EXPECT_NEAR(beta[l], ref.beta[static_cast<Index>(l)], 2e-6);
    o.need_weights = false;
    const auto light = attn.compute(levels, o);
    EXPECT_FALSE(light.has_weights());
    EXPECT_LT(max_abs(light.values.cast<double>(), ref.values), 2e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(AllBackends, OnEveryBackend, ::testing::ValuesIn(supported_backends()), backend_label);

TEST(Temporal, TypedErrors) {
  ruvector::TemporalAttention attn;
  const RowMatrixXf x = random_matrix(5, 3, 11);
  Eigen::VectorXd short_t(4);
  short_t << 0, 1, 2, 3;
  try {
    attn.compute(x, short_t);
    FAIL() << "expected DimensionMismatch";
  } catch (const ruvector::DimensionMismatch& e) {
    EXPECT_EQ(e.expected(), 5);
    EXPECT_EQ(e.actual(), 4);
  }
  Eigen::VectorXd bad_t(5);
  bad_t << 0, 1, std::nan(""), 3, 4;
  EXPECT_THROW(attn.compute(x, bad_t), ruvector::InvalidInput);
  bad_t[2] = std::numeric_limits<double>::infinity();
  EXPECT_THROW(attn.compute(x, bad_t), ruvector::InvalidInput);
  bad_t << -3e38, 0, 1, 2, 3e38;  // finite, but their span overflows float32
  EXPECT_THROW(attn.compute(x, bad_t), ruvector::InvalidInput);

  auto make = [](auto set) {
    ruvector::TemporalConfig o;
    set(o);
    return ruvector::TemporalAttention({}, o);
  };
  EXPECT_THROW(make([](auto& o) { o.decay_rate = 0.1, o.half_life = 2.0; }), ruvector::InvalidConfig);
  EXPECT_THROW(make([](auto& o) { o.decay_rate = -0.1; }), ruvector::InvalidConfig);
  EXPECT_THROW(make([](auto& o) { o.decay_rate = std::nan(""); }), ruvector::InvalidConfig);
  EXPECT_THROW(make([](auto& o) { o.half_life = 0.0; }), ruvector::InvalidConfig);
  EXPECT_THROW(make([](auto& o) { o.window = -1.0; }), ruvector::InvalidConfig);
  EXPECT_THROW(make([](auto& o) { o.window = std::numeric_limits<double>::infinity(); }), ruvector::InvalidConfig);
  EXPECT_NO_THROW(make([](auto& o) { o.half_life = 2.0, o.window = 0.0; }));
}

TEST(Hierarchical, TypedErrors) {
  ruvector::HierarchicalAttention attn;
  const RowMatrixXf a = random_matrix(4, 3, 12), b = random_matrix(2, 5, 13), empty(0, 3);
  EXPECT_THROW(attn.compute({}), ruvector::InvalidInput);
  EXPECT_THROW(attn.compute({a, empty}), ruvector::InvalidInput);
  try {
    attn.compute({a, b});
    FAIL() << "expected DimensionMismatch";
  } catch (const ruvector::DimensionMismatch& e) {
    EXPECT_EQ(e.expected(), 3);
    EXPECT_EQ(e.actual(), 5);
    EXPECT_NE(std::string(e.what()).find("level 1 has 5 columns, level 0 has 3"), std::string::npos);
  }
  auto with_weights = [&](std::vector<double> w) {
    ruvector::HierarchicalOptions o;
    o.level_weights = std::move(w);
    return attn.compute({a, a}, o);
  };
  EXPECT_THROW(with_weights({1.0}), ruvector::DimensionMismatch);
  EXPECT_THROW(with_weights({1.0, -1.0}), ruvector::InvalidInput);
  EXPECT_THROW(with_weights({0.0, 0.0}), ruvector::InvalidInput);
  EXPECT_THROW(with_weights({1.0, std::nan("")}), ruvector::InvalidInput);
  // Huge finite weights are normalised without overflowing.
  const auto out = with_weights({1e308, 1e308});
  EXPECT_NEAR(std::get<std::vector<double>>(out.metadata.at("level_weights"))[0], 0.5, 1e-12);
  ruvector::HierarchicalOptions o;
  o.query = Eigen::VectorXf::Ones(4);
  EXPECT_THROW(attn.compute({a}, o), ruvector::DimensionMismatch);
}

}  // namespace
